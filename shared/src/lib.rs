//! Core of cachefill: lumibot-compatible datasets and keys, the storage seam, the
//! parquet codec, upstream providers, validation rules and the fill engine the
//! miss-handler runs.
//!
//! | module | what lives there |
//! |---|---|
//! | [`dataset`], [`keys`] | lumibot's payload, relative paths, remote keys, reserved areas |
//! | [`settings`] | the `LUMIBOT_CACHE_*` and `CACHE_*` configuration contract |
//! | [`calendar`] | NYSE sessions, holidays, hours |
//! | [`storage`] | the object-store seam: local directory and S3 |
//! | [`codec`] | parquet schemas, rows, sidecars |
//! | [`providers`] | upstream sources (synthetic, ThetaData) |
//! | [`fill`] | coverage, merge, lease, the fill engine |
//! | [`validate`] | the rules every cached object must pass |
//! | [`reference`] | corporate events and option chains lumibot reads in a backtest |
//! | [`others`] | the other objects lumibot keeps beside the datasets |
//! | [`trades`] | Binance aggregate trades, one file per UTC day |
pub mod atomic_file;
pub mod calendar;
pub mod clock;
pub mod codec;
pub mod corporate;
pub mod coverage;
pub mod dataset;
pub mod errors;
pub mod fill;
pub mod format;
pub mod keys;
pub mod others;
pub mod providers;
pub mod pyfmt;
pub mod reference;
pub mod rules;
pub mod runtime;
pub mod settings;
pub mod storage;
pub mod trades;
pub mod validate;
