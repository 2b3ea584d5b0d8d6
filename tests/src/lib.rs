//! End-to-end tests of cachefill against real stand-ins of AWS (`docs/ARCHITECTURE.md` §13).
//!
//! A [`Stack`] starts, for one test, `moto_server` (S3 and SQS) and cargo-lambda's Lambda
//! emulator on free loopback ports, from the project venv made by `scripts/setup-venv`;
//! creates a versioned bucket whose ObjectCreated notifications go to an SQS queue, as the
//! SAM template wires them to the validator; starts instances of the workspace's Lambda
//! binaries that serve the emulator's Invoke API; and stops every process it started when it
//! is dropped, on panic too. The [`relay`] carries moto's notifications from the queue to a
//! function, as S3 invokes the validator on AWS.
//!
//! Around it: [`Terminal`], the ThetaData replay server the functions fetch from;
//! [`Stack::readonly_client`], a backtest job's `CacheClient` on the stack;
//! [`Stack::aws`], the AWS CLI pointed at moto; and [`eventually`], to wait for what the
//! stack does asynchronously without fixed sleeps.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use cachefill_e2e::{MISS_HANDLER, Stack, StackConfig};
//! let Some(stack) = Stack::start_or_skip("demo", StackConfig::default()).await? else {
//!     return Ok(());
//! };
//! stack.start_function(MISS_HANDLER).await?;
//! let answer = stack
//!     .invoke(MISS_HANDLER, &serde_json::json!({"provider": "synthetic", "asset_type": "stock",
//!         "symbol": "SPY", "timespan": "minute", "datastyle": "ohlc",
//!         "start": "2024-01-02", "end": "2024-01-05"}))
//!     .await?;
//! assert!(answer.succeeded());
//! # Ok(()) }
//! ```
//!
//! `CACHEFILL_E2E=skip` skips the tests (they print that they did); otherwise a missing tool
//! fails them with a message naming `scripts/setup-venv`.

pub mod aws_cli;
pub mod client;
pub mod emulator;
pub mod error;
pub mod fault_proxy;
pub mod iam;
pub mod invoke;
pub mod lumibot;
pub mod moto;
pub mod process;
pub mod python;
pub mod relay;
pub mod sqs;
pub mod stack;
pub mod thetadata;
pub mod tools;
pub mod wait;

pub use error::StackError;
pub use invoke::Invocation;
pub use relay::{Notification, Relay, RelayError, RelayHandle, RelayReport, parse_notification};
pub use stack::{EVENT_RECORDER, Function, MISS_HANDLER, OBJECT_VALIDATOR, Stack, StackConfig};
pub use thetadata::Terminal;
pub use tools::Tools;
pub use wait::{Seen, eventually};
