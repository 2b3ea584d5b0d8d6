//! ThetaData: bars, quotes and end-of-day reports from a ThetaData Terminal v3, the local
//! Java process lumibot users run (`http://127.0.0.1:25503/v3` by default,
//! `THETADATA_BASE_URL` elsewhere).
//!
//! # What it serves
//!
//! | asset | intraday ohlc | intraday quote | day ohlc | day quote |
//! |---|---|---|---|---|
//! | stock | `/v3/stock/history/ohlc` | `/v3/stock/history/quote` | `/v3/stock/history/eod` | `/v3/stock/history/eod` (its NBBO) |
//! | option | `/v3/option/history/ohlc` | `/v3/option/history/quote` | `/v3/option/history/eod` | `/v3/option/history/eod` |
//! | index | `/v3/index/history/ohlc` | — (no quotes for indices) | `/v3/index/history/eod` | — |
//!
//! Intraday timespans map to v3 intervals: `minute`/`1m`, `5m`, `10m`, `15m`, `30m`,
//! `hour`/`1h`. Other providers' datasets and index quotes are refused with
//! [`ProviderError::Unsupported`] before anything is fetched.
//!
//! # Requests ([`request`])
//!
//! - Intraday: one request per session, `symbol`, `date=YYYYMMDD` (the index endpoint takes
//!   `start_date` = `end_date` instead), `interval`, `start_time`/`end_time` `04:00:00`–`20:00:00`
//!   (`09:30:00`–`16:00:00` without extended hours), `format=json`.
//! - End of day: `symbol`, `start_date`, `end_date` over runs of consecutive missing sessions
//!   of at most 365 days; prices come raw (no `adjust`) and the engine adjusts day bars from
//!   the split and dividend history (`events.rs`).
//! - Options add `expiration=YYYYMMDD`, `strike` in dollars (`275`, `412.5`) and
//!   `right=call|put`; SPX contracts off the third Friday use the `SPXW` root, and index
//!   history uses the index root (`SPXW` → `SPX`).
//! - Readiness: `/v3/terminal/mdds/status` answers `CONNECTED`; option chains come from
//!   `/v3/option/list/expirations` and `/v3/option/list/strikes`, and the sessions a
//!   contract has quotes on from `/v3/option/list/dates/quote`.
//!
//! # Responses ([`parse`], [`normalize`])
//!
//! Rows of objects, option history nested under `contract`/`data`, the older columnar
//! shape, v2's `header.format` with positional rows, and CSV are all read by column name.
//! Timestamps are New York wall-clock and become UTC bar opens; end-of-day rows take their
//! session from `created`. Every row is delivered; the row rules of `docs/FORMAT.md` (empty
//! bars, quotes without a side) are applied by the codec.
//!
//! # Faults ([`http`])
//!
//! 472 `NO_DATA` is an empty session (the engine writes a placeholder), 471 is
//! `NoPermission` at once, 429/474/570/571 and 5xx, connection failures, timeouts and
//! cut or malformed bodies are retried with exponential backoff and jitter (honouring
//! `Retry-After`) and then reported as `RateLimited`, `Unavailable` or `Protocol`; 410
//! (v2 parameter names) and other statuses are `Protocol` errors quoting the terminal.
//! At most [`ThetaDataConfig::concurrency`] requests are in flight at once.

pub mod chains;
pub mod events;
pub mod http;
mod json;
pub mod normalize;
pub mod parse;
pub mod request;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDate;

pub use http::RetryPolicy;

use super::{FetchRequest, Fetched, FetchedChain, FetchedEvents, Provider, ProviderError};
use crate::codec::Rows;
use crate::codec::schema::Layout;
use crate::dataset::Dataset;
use crate::reference::ChainSet;
use crate::reference::events::{Event, EventSet, EventType};
use crate::settings::{DEFAULT_THETADATA_BASE_URL, ProviderSettings, THETADATA_BASE_URL};
use http::{Reply, Terminal};
use parse::ParseError;

/// How to reach the terminal and how patient to be with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThetaDataConfig {
    /// Terminal address without `/v3`, e.g. `http://127.0.0.1:25503`.
    pub base_url: String,
    /// Requests in flight at once (4 suits ThetaData's STANDARD tier).
    pub concurrency: usize,
    /// Timeout of one request, body included.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
}

impl Default for ThetaDataConfig {
    fn default() -> Self {
        ThetaDataConfig {
            base_url: DEFAULT_THETADATA_BASE_URL.to_string(),
            concurrency: 4,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
        }
    }
}

impl ThetaDataConfig {
    /// Defaults with another terminal address (a trailing `/` or `/v3` is dropped).
    pub fn new(base_url: &str) -> Self {
        let trimmed = base_url.trim().trim_end_matches('/');
        let base = trimmed.strip_suffix("/v3").unwrap_or(trimmed);
        ThetaDataConfig {
            base_url: base.trim_end_matches('/').to_string(),
            ..Default::default()
        }
    }

    /// The terminal the settings name (`THETADATA_BASE_URL`), as patient as they say
    /// (`CACHE_FETCH_CONCURRENCY`, `CACHE_UPSTREAM_TIMEOUT_SECONDS`).
    pub fn from_settings(settings: &ProviderSettings) -> Self {
        ThetaDataConfig {
            concurrency: settings.fetch_concurrency,
            request_timeout: settings.upstream_timeout,
            ..ThetaDataConfig::new(&settings.thetadata_base_url)
        }
    }
}

/// Why a provider could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    #[error(
        "{THETADATA_BASE_URL} {0} uses https, but this build speaks plain http to the terminal \
         (it runs on this machine or a private network); use its http:// address"
    )]
    Https(String),
    #[error("cannot set up the HTTP client for {url}: {reason}")]
    Client { url: String, reason: String },
}

/// Answer of the terminal's readiness probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalStatus {
    /// The body as sent (`CONNECTED`, `DISCONNECTED`, …).
    pub text: String,
}

impl TerminalStatus {
    /// Whether the terminal is logged in to ThetaData's servers.
    pub fn is_connected(&self) -> bool {
        self.text.eq_ignore_ascii_case("CONNECTED")
    }
}

/// The ThetaData provider (see the module docs).
#[derive(Debug)]
pub struct ThetaDataProvider {
    terminal: Terminal,
    concurrency: usize,
    /// Each option root's listed expirations, asked once per process.
    expirations: std::sync::Mutex<std::collections::HashMap<String, Vec<NaiveDate>>>,
}

impl ThetaDataProvider {
    pub fn new(config: ThetaDataConfig) -> Result<Self, SetupError> {
        if config.base_url.to_ascii_lowercase().starts_with("https://") {
            return Err(SetupError::Https(config.base_url));
        }
        let terminal = Terminal::new(
            &config.base_url,
            config.concurrency,
            config.request_timeout,
            config.connect_timeout,
            config.retry.clone(),
        )
        .map_err(|reason| SetupError::Client {
            url: config.base_url.clone(),
            reason,
        })?;
        Ok(ThetaDataProvider {
            terminal,
            concurrency: config.concurrency.max(1),
            expirations: Default::default(),
        })
    }

    pub fn base_url(&self) -> &str {
        self.terminal.base_url()
    }

    /// The terminal's readiness probe (`/v3/terminal/mdds/status`).
    pub async fn status(&self) -> Result<TerminalStatus, ProviderError> {
        let mut requests = 0;
        let reply = self
            .terminal
            .get(&request::status_call(), &mut requests, |body| {
                Ok(String::from_utf8_lossy(body).trim().to_string())
            })
            .await?;
        Ok(TerminalStatus {
            text: match reply {
                Reply::Data(text) => text,
                Reply::NoData => String::new(),
            },
        })
    }

    /// Expirations listed for an option root, ascending.
    pub async fn expirations(&self, root: &str) -> Result<Vec<NaiveDate>, ProviderError> {
        let call = request::expirations_call(&root.to_ascii_uppercase());
        self.list(&call, normalize::expirations, NaiveDate::cmp)
            .await
    }

    /// Sessions on which a contract (root and expiration) has quotes, ascending.
    pub async fn quote_dates(
        &self,
        root: &str,
        expiration: NaiveDate,
    ) -> Result<Vec<NaiveDate>, ProviderError> {
        let call = request::quote_dates_call(&root.to_ascii_uppercase(), expiration);
        self.list(&call, normalize::dates, NaiveDate::cmp).await
    }

    /// Strikes (in dollars) listed for an option root and expiration, ascending.
    pub async fn strikes(
        &self,
        root: &str,
        expiration: NaiveDate,
    ) -> Result<Vec<f64>, ProviderError> {
        let call = request::strikes_call(&root.to_ascii_uppercase(), expiration);
        self.list(&call, normalize::strikes, f64::total_cmp).await
    }

    /// A list endpoint's values, sorted by `order` and without repeats; none on `NO_DATA`.
    async fn list<T: PartialEq + Send + 'static>(
        &self,
        call: &request::Call,
        parse: impl Fn(&[u8]) -> Result<Vec<T>, ParseError> + Send + Sync + 'static,
        order: impl FnMut(&T, &T) -> std::cmp::Ordering,
    ) -> Result<Vec<T>, ProviderError> {
        self.list_counted(call, parse, order, &mut 0).await
    }

    /// [`Self::list`], counting the requests made into `requests`.
    async fn list_counted<T: PartialEq + Send + 'static>(
        &self,
        call: &request::Call,
        parse: impl Fn(&[u8]) -> Result<Vec<T>, ParseError> + Send + Sync + 'static,
        order: impl FnMut(&T, &T) -> std::cmp::Ordering,
        requests: &mut u32,
    ) -> Result<Vec<T>, ProviderError> {
        match self.terminal.get(call, requests, parse).await? {
            Reply::Data(mut values) => {
                values.sort_by(order);
                values.dedup();
                Ok(values)
            }
            Reply::NoData => Ok(Vec::new()),
        }
    }
}

#[async_trait]
impl Provider for ThetaDataProvider {
    fn supports(&self, dataset: &Dataset) -> Result<(), ProviderError> {
        request::check_supported(dataset)
    }

    fn plan(&self, dataset: &Dataset, sessions: &[NaiveDate]) -> Vec<Vec<NaiveDate>> {
        request::plan(dataset, sessions)
    }

    async fn fetch(&self, unit: FetchRequest<'_>) -> Result<Fetched, ProviderError> {
        let dataset = unit.dataset;
        request::check_supported(dataset)?;
        let mut rows = Rows::empty_for(Layout::of(dataset));
        let mut requests = 0;
        let calls = request::history_calls(
            dataset,
            unit.sessions,
            unit.include_after_hours,
            unit.provider_expiration,
        );
        let owned = Arc::new(dataset.clone());
        for call in calls {
            let dataset = Arc::clone(&owned);
            let reply = self
                .terminal
                .get(&call, &mut requests, move |body| {
                    normalize::normalize(&dataset, body)
                })
                .await?;
            if let Reply::Data(more) = reply {
                rows.extend(more)
                    .map_err(|e| ProviderError::Protocol(e.to_string()))?;
            }
        }
        Ok(Fetched { rows, requests })
    }

    fn concurrency(&self, _dataset: &Dataset) -> usize {
        self.concurrency
    }

    fn serves_events(&self, set: &EventSet) -> bool {
        set.provider == crate::dataset::Provider::ThetaData
    }

    /// lumibot's corporate-event lookups: the v2 split or dividend history of a stock over
    /// `[from, to]`, normalized as lumibot normalizes it.
    async fn events(
        &self,
        set: &EventSet,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Option<FetchedEvents>, ProviderError> {
        let (path, parse): (_, fn(&[u8]) -> Result<Vec<Event>, ParseError>) = match set.event_type {
            EventType::Splits => (request::SPLITS_PATH, events::splits),
            EventType::Dividends => (request::DIVIDENDS_PATH, events::dividends),
        };
        let mut requests = 0;
        let reply = self
            .terminal
            .get(
                &request::events_call(path, &set.symbol, from, to),
                &mut requests,
                parse,
            )
            .await?;
        Ok(Some(FetchedEvents {
            events: reply.or_empty(),
            requests,
        }))
    }

    async fn chain(&self, set: &ChainSet) -> Result<Option<FetchedChain>, ProviderError> {
        self.build_chain(&set.symbol, set.asset_type, set.date)
            .await
    }

    /// The expiration a contract is filed under: `requested` when given; else the tradable
    /// (Friday) expiration when the root lists it, the OCC Saturday after it when the root
    /// lists that instead (older standard monthlies), and the tradable date otherwise. Asking
    /// with the wrong one answers "no data" for a contract that traded.
    async fn query_expiration(
        &self,
        dataset: &Dataset,
        requested: Option<NaiveDate>,
    ) -> Result<Option<NaiveDate>, ProviderError> {
        let Some(contract) = &dataset.contract else {
            return Ok(None);
        };
        if requested.is_some() {
            return Ok(requested);
        }
        let root = request::option_root(dataset);
        let cached = self
            .expirations
            .lock()
            .expect("expirations lock")
            .get(&root)
            .cloned();
        let listed = match cached {
            Some(listed) => listed,
            None => {
                let listed = match self.expirations(&root).await {
                    Ok(listed) => listed,
                    Err(e) if e.is_transient() => return Err(e),
                    // Without the list, lumibot's own rule decides (a third Friday maps to
                    // the next Saturday); the fetch itself reports a contract it cannot find.
                    Err(e) => {
                        tracing::warn!(root, error = %e, "expirations not listed; using the third-Friday rule");
                        Vec::new()
                    }
                };
                self.expirations
                    .lock()
                    .expect("expirations lock")
                    .insert(root.clone(), listed.clone());
                listed
            }
        };
        Ok(Some(request::query_expiration(
            contract.expiration,
            &listed,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_follows_the_provider_settings() {
        let settings = ProviderSettings {
            thetadata_base_url: "http://theta:25503".into(),
            fetch_concurrency: 2,
            upstream_timeout: Duration::from_secs(7),
            ..ProviderSettings::defaults(ProviderSettings::DEPLOYED)
        };
        let config = ThetaDataConfig::from_settings(&settings);
        assert_eq!(config.base_url, "http://theta:25503");
        assert_eq!(config.concurrency, 2);
        assert_eq!(config.request_timeout, Duration::from_secs(7));
        assert_eq!(
            ThetaDataConfig::from_settings(&ProviderSettings::defaults(ProviderSettings::DEPLOYED)),
            ThetaDataConfig::default()
        );
    }

    #[test]
    fn https_terminals_are_refused_with_a_reason() {
        let err =
            ThetaDataProvider::new(ThetaDataConfig::new("https://theta.example/v3")).unwrap_err();
        assert!(matches!(err, SetupError::Https(_)));
        let message = err.to_string();
        assert!(message.contains(THETADATA_BASE_URL), "{message}");
    }
}
