//! The thin client of the cachefill cache: what a backtest job links to read lumibot's
//! market-data cache, in lumibot's three modes.
//!
//! | module | what lives there |
//! |---|---|
//! | [`client`] | [`CacheClient`]: local cache → bucket → miss-handler; lumibot's `ensure_local_file` / `on_local_update` |
//! | [`mode`] | what `disabled`, `readwrite` and `readonly` may do |
//! | [`request`] | [`DataRequest`]: a dataset over a range of dates |
//! | [`reference`] | corporate events and option chains: `get_events`, `get_chain` |
//! | [`local_cache`] | files under the cache root: atomic publish, sidecar verification, locks |
//! | [`remote`] | consistent parquet + sidecar downloads; lumibot's upload through a temporary key |
//! | [`invoke`] | the [`Invoker`] seam: AWS Lambda, or the fill engine in-process |
//! | [`single_flight`] | one fill per key however many tasks miss it |
//! | [`widen`] | missing ranges widened to whole months |
//! | [`embedded`] | the embedded default: local directory bucket, in-process miss-handler |
//! | `cli` | the `cachefill` command line (feature `cli`): its commands, the main job, bucket listings |
//!
//! The main loop of a readonly job:
//!
//! ```
//! # use cachefill_client::{CacheClient, ClientConfig, DataRequest, Source};
//! # use cachefill_client::embedded::Embedded;
//! # use cachefill_core::dataset::Dataset;
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! # let dir = tempfile::tempdir().unwrap();
//! // Production: `CacheClient::from_env().await?` (S3 + the Lambda from LUMIBOT_CACHE_*).
//! let client = Embedded::open(dir.path()).unwrap().client();
//! let aapl = Dataset::from_json(
//!     r#"{"provider":"synthetic","asset_type":"stock","symbol":"AAPL","timespan":"day","datastyle":"ohlc"}"#,
//! ).unwrap();
//! let request = DataRequest::parse(aapl, "2024-04-01", "2024-04-30").unwrap();
//! let first = client.get(&request).await.unwrap(); // miss: filled, then downloaded
//! assert_eq!(first.source, Source::Filled);
//! let again = client.get(&request).await.unwrap(); // verified local copy
//! assert_eq!(again.source, Source::LocalHit);
//! assert_eq!(again.path, first.path);
//! # });
//! ```

#[cfg(feature = "cli")]
pub mod cli;
pub mod client;
pub mod embedded;
pub mod error;
pub mod invoke;
pub mod local_cache;
pub mod mode;
pub mod reference;
pub mod remote;
pub mod request;
pub mod single_flight;
pub mod trades;
pub mod widen;

pub use client::{CacheClient, ClientConfig, LocalFile, PollPolicy, RetryPolicy, Source, Stats};
pub use error::ClientError;
pub use invoke::{InProcessInvoker, InvokeError, Invoker, LambdaInvoker, LambdaOptions};
pub use request::DataRequest;
pub use widen::Widening;
