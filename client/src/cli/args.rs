//! Flags shared by commands: a dataset, a date range, and the bucket to use.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::bucket::{self, Bucket};
use crate::embedded::Embedded;
use crate::embedded::STATE_DIR;
use crate::{CacheClient, ClientConfig, Invoker, LambdaInvoker, LambdaOptions, Widening};
use cachefill_core::calendar;
use cachefill_core::fill::MissRequest;
use cachefill_core::fill::request::parse_bound;
use cachefill_core::keys::KeyLayout;
use cachefill_core::reference::CHAINS_DATASTYLE;
use cachefill_core::reference::events::EventType;
use cachefill_core::settings::{CacheMode, ClientSettings, ProviderSettings};
use cachefill_core::trades::AGGTRADES_DATASTYLE;
use chrono::NaiveDate;
use clap::Args;

use super::output::Failure;

/// Which dataset (lumibot's payload as flags).
#[derive(Debug, Clone, Args)]
pub(super) struct DatasetArgs {
    /// Upstream provider: thetadata, polygon, binance (aggregate trades), or synthetic
    /// (generated data, not market data).
    #[arg(long)]
    pub provider: String,
    /// stock, option or index; crypto for binance.
    #[arg(long)]
    pub asset_type: String,
    #[arg(long)]
    pub symbol: String,
    /// minute, hour, day, 1m, 5m, 1h, 1D … (bars); tick (aggregate trades).
    #[arg(long)]
    pub timespan: Option<String>,
    /// Bars: ohlc or quote. Corporate events: splits or dividends. Option chains:
    /// option_chains (of the underlying `--symbol`, on `--start`). Binance: aggtrades (one file
    /// per UTC day; `--start`/`--end` are instants, `--end now` the present).
    #[arg(long)]
    pub datastyle: String,
    /// Option expiration, YYYY-MM-DD.
    #[arg(long)]
    pub expiration: Option<String>,
    /// Option strike as lumibot holds it (`250` and `250.0` are different files).
    #[arg(long)]
    pub strike: Option<String>,
    /// Option right: CALL or PUT.
    #[arg(long)]
    pub right: Option<String>,
    /// Quote asset of a polygon stock or index, as lumibot names the file
    /// (`stock_SPY_USD_minute.parquet`; lumibot's Polygon backtests pass USD).
    #[arg(long)]
    pub quote: Option<String>,
}

impl DatasetArgs {
    /// The payload JSON lumibot would send; the strike keeps its spelling (`250` and
    /// `250.0` are different files). A strike that is not a number stays a string, for the
    /// payload parser to refuse.
    pub(super) fn payload(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::Value;
        let mut fields = serde_json::Map::new();
        for (name, value) in [
            ("provider", Some(&self.provider)),
            ("asset_type", Some(&self.asset_type)),
            ("symbol", Some(&self.symbol)),
            ("timespan", self.timespan.as_ref()),
            ("datastyle", Some(&self.datastyle)),
            ("expiration", self.expiration.as_ref()),
            ("right", self.right.as_ref()),
            ("quote", self.quote.as_ref()),
        ] {
            if let Some(value) = value {
                fields.insert(name.to_string(), Value::String(value.clone()));
            }
        }
        if let Some(strike) = &self.strike {
            let value = serde_json::from_str::<serde_json::Number>(strike)
                .map_or_else(|_| Value::String(strike.clone()), Value::Number);
            fields.insert("strike".to_string(), value);
        }
        fields
    }
}

/// A range of dates (or RFC 3339 instants), inclusive.
#[derive(Debug, Clone, Args)]
pub(super) struct RangeArgs {
    /// First date wanted (YYYY-MM-DD or an RFC 3339 instant).
    #[arg(long)]
    pub start: String,
    /// Last date wanted, inclusive (bars and events; a chain is of one date).
    #[arg(long)]
    pub end: Option<String>,
    /// Only regular hours (09:30–16:00) for intraday bars.
    #[arg(long)]
    pub no_after_hours: bool,
}

impl RangeArgs {
    /// The miss-handler request for `dataset` over this range: bars and events over
    /// `--start..--end`, a chain on `--start` (with `--end` only when it is the same date).
    pub(super) fn request(&self, dataset: &DatasetArgs) -> Result<MissRequest, Failure> {
        let mut requests = self.requests(dataset)?;
        match requests.len() {
            1 => Ok(requests.remove(0)),
            n => Err(Failure::invalid(format!(
                "a chain is of one date but {}..{} holds {n} sessions: give --start alone, or use `cachefill warm`",
                self.start,
                self.end.as_deref().unwrap_or_default()
            ))),
        }
    }

    /// Every request the range names: one for bars and events, one per session for chains.
    pub(super) fn requests(&self, dataset: &DatasetArgs) -> Result<Vec<MissRequest>, Failure> {
        use serde_json::Value;
        let mut fields = dataset.payload();
        let chains = dataset
            .datastyle
            .trim()
            .eq_ignore_ascii_case(CHAINS_DATASTYLE);
        let events = EventType::parse(&dataset.datastyle).is_some();
        let trades = dataset
            .datastyle
            .trim()
            .eq_ignore_ascii_case(AGGTRADES_DATASTYLE);
        let end = match (&self.end, chains) {
            // Trades run to the instant of the call.
            (Some(end), _) if trades && end.trim().eq_ignore_ascii_case("now") => {
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            }
            (Some(end), _) => end.clone(),
            (None, true) => self.start.clone(),
            (None, false) => return Err(Failure::invalid("--end is required")),
        };
        let parse = |fields: serde_json::Map<String, Value>| {
            MissRequest::from_json(&Value::Object(fields).to_string())
                .map_err(|e| Failure::invalid(e.0))
        };
        if chains {
            let start = parse_bound("start", &self.start).map_err(|e| Failure::invalid(e.0))?;
            let end = parse_bound("end", &end).map_err(|e| Failure::invalid(e.0))?;
            if start > end {
                return Err(Failure::invalid(format!(
                    "start {start} is after end {end}"
                )));
            }
            let days: Vec<NaiveDate> = if start == end {
                vec![start]
            } else {
                calendar::sessions_between(start, end)
                    .map_err(|e| Failure::invalid(e.to_string()))?
            };
            return days
                .into_iter()
                .map(|day| {
                    let mut fields = fields.clone();
                    fields.insert("date".into(), Value::String(day.to_string()));
                    parse(fields)
                })
                .collect();
        }
        fields.insert("start".into(), Value::String(self.start.clone()));
        fields.insert("end".into(), Value::String(end));
        if !events && !trades {
            fields.insert(
                "include_after_hours".into(),
                Value::Bool(!self.no_after_hours),
            );
        }
        parse(fields).map(|r| vec![r])
    }
}

/// Which bucket: a local directory (the embedded default) or S3.
#[derive(Debug, Clone, Args)]
pub(super) struct BucketArgs {
    /// S3 bucket (default: LUMIBOT_CACHE_S3_BUCKET when LUMIBOT_CACHE_BACKEND=s3).
    #[arg(long, conflicts_with = "bucket_dir")]
    pub bucket: Option<String>,
    /// Local directory bucket of the embedded default.
    #[arg(long, value_name = "DIR")]
    pub bucket_dir: Option<PathBuf>,
    /// Key prefix (default: LUMIBOT_CACHE_S3_PREFIX, else none).
    #[arg(long)]
    pub prefix: Option<String>,
    /// Cache version segment (default: LUMIBOT_CACHE_S3_VERSION, else v1).
    #[arg(long)]
    pub version: Option<String>,
}

impl BucketArgs {
    /// Whether the flags and settings pick the embedded default (a local directory bucket).
    pub(super) fn is_embedded(&self, settings: &ClientSettings) -> bool {
        let remote_on = settings
            .remote
            .as_ref()
            .is_some_and(|r| r.mode != CacheMode::Disabled);
        self.bucket_dir.is_some() || (self.bucket.is_none() && !remote_on)
    }

    /// Open the bucket the flags and settings name.
    pub(super) async fn open(&self) -> Result<Bucket, Failure> {
        let settings = ClientSettings::from_env().map_err(|e| Failure::invalid(e.to_string()))?;
        let remote = settings
            .remote
            .as_ref()
            .filter(|r| r.mode != CacheMode::Disabled);
        let layout = KeyLayout::new(
            self.prefix
                .as_deref()
                .or(remote.map(|r| r.prefix.as_str()))
                .unwrap_or(""),
            self.version
                .as_deref()
                .or(remote.map(|r| r.version.as_str()))
                .unwrap_or("v1"),
        );
        let s3_bucket = match (&self.bucket, &self.bucket_dir) {
            (Some(name), _) => Some(name.clone()),
            (None, None) => remote.map(|r| r.bucket.clone()),
            (None, Some(_)) => None,
        };
        match s3_bucket {
            Some(name) => Ok(Bucket::s3(&name, &settings.s3(), layout).await),
            None => {
                let dir = self
                    .bucket_dir
                    .clone()
                    .unwrap_or_else(bucket::default_bucket_dir);
                Bucket::local(&dir, layout).map_err(|e| {
                    Failure::internal(format!(
                        "cannot open bucket directory {}: {e}",
                        dir.display()
                    ))
                })
            }
        }
    }
}

fn settings() -> Result<ClientSettings, Failure> {
    ClientSettings::from_env().map_err(|e| Failure::invalid(e.to_string()))
}

/// The providers in-process fills serve: every one unless `CACHE_PROVIDERS` says otherwise.
pub(super) fn embedded_providers() -> Result<ProviderSettings, Failure> {
    ProviderSettings::from_env(ProviderSettings::EMBEDDED)
        .map_err(|e| Failure::invalid(e.to_string()))
}

/// A bucket and the local cache folder that mirrors it.
#[derive(Debug, Clone, Args)]
pub(super) struct CacheArgs {
    #[command(flatten)]
    pub bucket: BucketArgs,
    /// Local cache folder (default: ./.cachefill/cache on the embedded default; with S3,
    /// LUMIBOT_CACHE_FOLDER or lumibot's own cache folder).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

impl CacheArgs {
    /// The local cache folder, decided without opening the bucket.
    pub(super) fn cache_root(&self) -> Result<PathBuf, Failure> {
        if let Some(dir) = &self.cache_dir {
            return Ok(dir.clone());
        }
        let settings = settings()?;
        Ok(if self.bucket.is_embedded(&settings) {
            Path::new(STATE_DIR).join("cache")
        } else {
            settings.cache_folder
        })
    }
}

/// A bucket, its local cache, and how misses are filled.
#[derive(Debug, Clone, Args)]
pub(super) struct ClientArgs {
    #[command(flatten)]
    pub cache: CacheArgs,
    /// Miss-handler Lambda name or ARN (default: LUMIBOT_CACHE_FILL_FUNCTION). On the
    /// embedded default the miss-handler runs in this process.
    #[arg(long)]
    pub function: Option<String>,
    /// Widen a missing range to whole months (default), whole years, or not at all (off).
    #[arg(long, default_value = "month", value_name = "month|year|off")]
    pub widen: Widening,
}

impl ClientArgs {
    /// The client the flags and settings describe: on the embedded default, readonly with
    /// the miss-handler (and validator) in-process; on S3, the settings' mode with the
    /// Lambda named by `--function` or LUMIBOT_CACHE_FILL_FUNCTION.
    pub(super) async fn open(&self) -> Result<(CacheClient, Bucket), Failure> {
        let settings = settings()?;
        let bucket = self.cache.bucket.open().await?;
        let cache_root = self.cache.cache_root()?;
        let client = match &bucket.local_dir {
            Some(dir) => {
                let embedded = Embedded::open_dirs(dir, &cache_root, bucket.layout.clone())?
                    .with_providers(&embedded_providers()?)
                    .map_err(|e| Failure::invalid(e.to_string()))?;
                let mut config = embedded.config();
                config.widening = self.widen;
                embedded.client_with(embedded.providers(), config)
            }
            None => {
                let mode = match settings.mode() {
                    // A bucket named by flags alone is read as lumibot's readonly jobs do.
                    CacheMode::Disabled => CacheMode::ReadOnly,
                    mode => mode,
                };
                let function = self.function.clone().or(settings.fill_function.clone());
                let invoker: Option<Arc<dyn Invoker>> = match function {
                    Some(function) => Some(Arc::new(
                        LambdaInvoker::connect(LambdaOptions::from_settings(&settings, function))
                            .await,
                    )),
                    None => None,
                };
                let mut config = ClientConfig::new(mode, cache_root, bucket.layout.clone());
                config.bucket = Some(bucket.name.clone());
                config.widening = self.widen;
                CacheClient::new(config, Some(bucket.store.clone()), invoker)?
            }
        };
        Ok((client, bucket))
    }
}
