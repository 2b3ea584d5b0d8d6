//! Binance spot: aggregate trades from `GET /api/v3/aggTrades` (`docs/BINANCE.md`).
//!
//! # A span to ids
//!
//! Aggregate trade ids are consecutive and their times never go back, so a span of trades
//! is a range of ids. An id bound is that id. A time bound `t` is the id of the first trade
//! at or after `t`, found with `startTime=t&endTime=t+3_599_999&limit=1` (Binance refuses a
//! window of an hour or more), hour after hour while the hour is empty and the symbol's most
//! recent trade (asked once, `limit=1`) is later. An `until` instant with no trade at or
//! after it yet (the present, the future) ends the span after the most recent trade, and
//! then the span's `next_id` is unknown.
//!
//! # The walk
//!
//! The ids are read as pages of 1,000 from `fromId`, one run of pages per 1,000 ids, at most
//! [`BinanceConfig::concurrency`] requests in flight. A page that does not reach the end of
//! its run (an overlap, missing ids) is followed by the next page from its last id; a short
//! page means there are no more trades. What comes back is kept inside the span, each id
//! once, ascending.
//!
//! # Weight, faults
//!
//! Every request waits for its weight in the provider's one [`limit::WeightLimiter`];
//! statuses map to [`ProviderError`] in [`client`], and retries follow the shared
//! [`RetryPolicy`].
//!
//! # Archives
//!
//! With [`BinanceConfig::archive_base_url`] set, a span that ends at a midnight at least a
//! day past and covers that day from its 00:00 (or from an id) is read from Binance's daily
//! archive ([`archive`]) in two requests and no weight; a day the archive lacks or gets
//! wrong goes the REST way above.

pub mod archive;
pub mod client;
pub mod limit;
pub mod parse;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDate;
use futures::{StreamExt, TryStreamExt};

use super::{FetchRequest, Fetched, Provider, ProviderError};
use crate::clock::{Clock, SystemClock};
use crate::dataset::Dataset;
pub use crate::providers::retry::RetryPolicy;
use crate::settings::{
    BINANCE_ARCHIVE_URL, BINANCE_BASE_URL, DEFAULT_BINANCE_BASE_URL, DEFAULT_BINANCE_WEIGHT_BUDGET,
    ProviderSettings,
};
use crate::trades::{AggTrade, FetchedTrades, TradeBound, TradeSpan};
use archive::Archive;
use client::{Client, ClientError, MAX_WINDOW_MS, PAGE_LIMIT, Query};

/// How to reach Binance and how much of its request weight to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinanceConfig {
    /// Without a trailing `/`, e.g. `https://data-api.binance.vision`.
    pub base_url: String,
    /// Binance's daily archives (`https://data.binance.vision`), read for whole past days;
    /// `None`: every day from the REST API.
    pub archive_base_url: Option<String>,
    /// Request weight this provider spends per `weight_window` (Binance counts per minute).
    pub weight_budget: u32,
    /// The window the budget is counted over: a minute, except in tests.
    pub weight_window: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Timeout of one request, body included.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
}

impl BinanceConfig {
    /// Defaults at another base URL (a trailing `/` is dropped), archives off.
    pub fn new(base_url: &str) -> Self {
        BinanceConfig {
            base_url: base_url.trim().trim_end_matches('/').to_string(),
            archive_base_url: None,
            weight_budget: u32::try_from(DEFAULT_BINANCE_WEIGHT_BUDGET).unwrap_or(u32::MAX),
            weight_window: Duration::from_secs(60),
            concurrency: 4,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
        }
    }

    pub fn from_settings(settings: &ProviderSettings) -> Self {
        BinanceConfig {
            archive_base_url: settings.binance_archive_url.clone(),
            weight_budget: settings.binance_weight_budget,
            concurrency: settings.fetch_concurrency,
            request_timeout: settings.upstream_timeout,
            ..BinanceConfig::new(&settings.binance_base_url)
        }
    }
}

impl Default for BinanceConfig {
    /// Binance's market-data-only host.
    fn default() -> Self {
        BinanceConfig::new(DEFAULT_BINANCE_BASE_URL)
    }
}

/// Why the provider could not be set up; names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    #[error("{BINANCE_BASE_URL}: {0}")]
    BaseUrl(ClientError),
    #[error("{BINANCE_ARCHIVE_URL}: {0}")]
    ArchiveUrl(ClientError),
    #[error("{0}")]
    Client(ClientError),
}

impl From<ClientError> for SetupError {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::BaseUrl { .. } => SetupError::BaseUrl(error),
            ClientError::Http(_) => SetupError::Client(error),
        }
    }
}

/// The Binance provider: aggregate trades only (see the module docs).
pub struct BinanceProvider {
    config: BinanceConfig,
    client: Client,
    archive: Option<Archive>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for BinanceProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BinanceProvider")
            .field("base_url", &self.config.base_url)
            .field("archive_base_url", &self.config.archive_base_url)
            .field("weight_budget", &self.config.weight_budget)
            .field("concurrency", &self.config.concurrency)
            .finish_non_exhaustive()
    }
}

impl BinanceProvider {
    pub fn new(config: BinanceConfig) -> Result<Self, SetupError> {
        let archive = Archive::new(&config).map_err(|e| match e {
            ClientError::BaseUrl { .. } => SetupError::ArchiveUrl(e),
            ClientError::Http(_) => SetupError::Client(e),
        })?;
        Ok(BinanceProvider {
            client: Client::new(&config)?,
            archive,
            config,
            clock: Arc::new(SystemClock),
        })
    }

    /// The clock that says whether an `until` instant is still to come (a test's server
    /// may live at another time).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn config(&self) -> &BinanceConfig {
        &self.config
    }

    pub fn base_url(&self) -> &str {
        self.client.base_url()
    }

    /// Request weight counted now by this provider's limiter.
    pub fn used_weight(&self) -> u32 {
        self.client.limiter().used()
    }
}

/// What resolving a span needs to remember across its requests.
#[derive(Debug)]
struct Resolve<'a> {
    client: &'a Client,
    symbol: &'a str,
    requests: u32,
    /// The symbol's most recent trade, once asked (`Some(None)`: it has none).
    latest: Option<Option<AggTrade>>,
}

impl Resolve<'_> {
    async fn latest(&mut self) -> Result<Option<AggTrade>, ProviderError> {
        if let Some(latest) = self.latest {
            return Ok(latest);
        }
        let query = Query::Latest {
            symbol: self.symbol,
        };
        let latest = self
            .client
            .agg_trades(&query, &mut self.requests)
            .await?
            .into_iter()
            .max_by_key(|t| t.id);
        self.latest = Some(latest);
        Ok(latest)
    }

    /// The first trade at or after `t`, if there is one yet.
    async fn first_at(&mut self, t: i64) -> Result<Option<AggTrade>, ProviderError> {
        let mut start = t;
        let mut asked_again = false;
        loop {
            let query = Query::FirstIn {
                symbol: self.symbol,
                start,
            };
            let page = self.client.agg_trades(&query, &mut self.requests).await?;
            if let Some(first) = page.into_iter().min_by_key(|t| t.id) {
                if first.time < start || first.time > start + MAX_WINDOW_MS {
                    return Err(ProviderError::Protocol(format!(
                        "GET /api/v3/aggTrades?symbol={}&startTime={start}: trade {} at {} is \
                         outside the window asked",
                        self.symbol, first.id, first.time
                    )));
                }
                return Ok(Some(first));
            }
            let Some(latest) = self.latest().await? else {
                return Ok(None);
            };
            if latest.time < start {
                return Ok(None);
            }
            if latest.time > start + MAX_WINDOW_MS {
                start += MAX_WINDOW_MS + 1;
                asked_again = false;
            } else if asked_again {
                return Err(ProviderError::Protocol(format!(
                    "symbol {}: the most recent trade {} at {} lies in the hour from {start}, \
                     which Binance answered empty twice",
                    self.symbol, latest.id, latest.time
                )));
            } else {
                // It arrived after the hour was asked: ask the hour again.
                asked_again = true;
            }
        }
    }
}

impl BinanceProvider {
    /// The trades with ids in `[start, end)`: pages from `fromId=start` until one reaches
    /// `end` or is short. `requests` counts every attempt.
    async fn run_of_pages(
        &self,
        symbol: &str,
        start: i64,
        end: i64,
    ) -> Result<(Vec<AggTrade>, u32), ProviderError> {
        let mut requests = 0;
        let mut trades = Vec::new();
        let mut from_id = start;
        while from_id < end {
            let query = Query::FromId {
                symbol,
                from_id,
                limit: PAGE_LIMIT,
            };
            let page = self.client.agg_trades(&query, &mut requests).await?;
            tracing::debug!(
                symbol,
                from_id,
                until_id = end,
                trades = page.len(),
                used_weight = self.client.limiter().used(),
                "binance aggTrades page"
            );
            let short = page.len() < PAGE_LIMIT as usize;
            let Some(last) = page.iter().map(|t| t.id).max() else {
                break;
            };
            trades.extend(page);
            if short || last + 1 >= end {
                break;
            }
            if last < from_id {
                return Err(ProviderError::Protocol(format!(
                    "GET /api/v3/aggTrades?symbol={symbol}&fromId={from_id}: a full page of \
                     trades before id {from_id} only"
                )));
            }
            from_id = last + 1;
        }
        Ok((trades, requests))
    }
}

fn no_bars() -> ProviderError {
    ProviderError::Unsupported(
        "provider 'binance' has no bars: ask for asset_type 'crypto', timespan 'tick', datastyle 'aggtrades'".into(),
    )
}

#[async_trait]
impl Provider for BinanceProvider {
    fn supports(&self, _dataset: &Dataset) -> Result<(), ProviderError> {
        Err(no_bars())
    }

    fn plan(&self, _dataset: &Dataset, sessions: &[NaiveDate]) -> Vec<Vec<NaiveDate>> {
        super::one_per_session(sessions)
    }

    async fn fetch(&self, _request: FetchRequest<'_>) -> Result<Fetched, ProviderError> {
        Err(no_bars())
    }

    fn concurrency(&self, _dataset: &Dataset) -> usize {
        self.config.concurrency.max(1)
    }

    async fn agg_trades(
        &self,
        symbol: &str,
        span: TradeSpan,
    ) -> Result<FetchedTrades, ProviderError> {
        let mut archive_requests = 0;
        if let Some(archive) = &self.archive
            && let Some(date) = archive::archived_day(&span, self.clock.now().timestamp_millis())
        {
            match from_archive(archive, symbol, date, span, &mut archive_requests).await {
                Ok(mut got) => {
                    got.requests = archive_requests;
                    return Ok(got);
                }
                Err(error) => tracing::warn!(
                    symbol,
                    %date,
                    %error,
                    "binance archive unusable; asking the REST API"
                ),
            }
        }
        let mut got = self.rest_agg_trades(symbol, span).await?;
        got.requests += archive_requests;
        Ok(got)
    }
}

/// A day's archive as the answer to `span` (its trades from `span.from` on); `requests`
/// counts every attempt.
async fn from_archive(
    archive: &Archive,
    symbol: &str,
    date: NaiveDate,
    span: TradeSpan,
    requests: &mut u32,
) -> Result<FetchedTrades, archive::ArchiveError> {
    let mut trades = archive.day(symbol, date, requests).await?;
    let invalid = |reason: String| archive::ArchiveError::Invalid {
        file: archive::ArchiveFiles::of(symbol, date).zip,
        reason,
    };
    let (Some(first), Some(last)) = (trades.first().map(|t| t.id), trades.last().map(|t| t.id))
    else {
        return Err(invalid("no trades".into()));
    };
    if let TradeBound::Id(from) = span.from {
        if from < first {
            return Err(invalid(format!(
                "the span starts at id {from}, before the day's first {first}"
            )));
        }
        trades.retain(|t| t.id >= from);
    }
    Ok(FetchedTrades {
        trades,
        // Ids are consecutive: the next day begins right after the day's last trade.
        next_id: Some(last + 1),
        requests: *requests,
    })
}

impl BinanceProvider {
    /// `span` from the REST API (see the module docs).
    async fn rest_agg_trades(
        &self,
        symbol: &str,
        span: TradeSpan,
    ) -> Result<FetchedTrades, ProviderError> {
        let mut resolve = Resolve {
            client: &self.client,
            symbol,
            requests: 0,
            latest: None,
        };
        let until_time = match span.until {
            TradeBound::Time(u) => Some(u),
            TradeBound::Id(_) => None,
        };
        let nothing = |next_id, requests| FetchedTrades {
            trades: Vec::new(),
            next_id,
            requests,
        };

        let (from_id, from_time) = match span.from {
            TradeBound::Id(id) => (id, None),
            TradeBound::Time(t) => match resolve.first_at(t).await? {
                // Past the end: that trade is also the first at or after `until`.
                Some(first) if until_time.is_some_and(|u| first.time >= u) => {
                    return Ok(nothing(Some(first.id), resolve.requests));
                }
                Some(first) => (first.id, Some(t)),
                None => {
                    let next_id = match span.until {
                        TradeBound::Id(id) => Some(id),
                        TradeBound::Time(_) => None,
                    };
                    return Ok(nothing(next_id, resolve.requests));
                }
            },
        };

        let (end, next_id) = match span.until {
            TradeBound::Id(id) => (Some(id), Some(id)),
            TradeBound::Time(u) => {
                let to_come = u > self.clock.now().timestamp_millis();
                let first = if to_come {
                    None
                } else {
                    resolve.first_at(u).await?
                };
                match first {
                    Some(first) => (Some(first.id), Some(first.id)),
                    None => (resolve.latest().await?.map(|t| t.id + 1), None),
                }
            }
        };
        let mut requests = resolve.requests;
        let Some(end) = end.filter(|end| *end > from_id) else {
            return Ok(nothing(next_id, requests));
        };

        let runs = (0..)
            .map(|k| from_id.saturating_add(k * i64::from(PAGE_LIMIT)))
            .take_while(|start| *start < end)
            .map(|start| {
                self.run_of_pages(symbol, start, (start + i64::from(PAGE_LIMIT)).min(end))
            });
        let runs: Vec<(Vec<AggTrade>, u32)> = futures::stream::iter(runs)
            .buffer_unordered(self.config.concurrency.max(1))
            .try_collect()
            .await?;

        let mut trades = Vec::with_capacity(usize::try_from(end - from_id).unwrap_or(0));
        for (run, run_requests) in runs {
            requests += run_requests;
            trades.extend(run.into_iter().filter(|t| {
                (from_id..end).contains(&t.id)
                    && from_time.is_none_or(|from| t.time >= from)
                    && until_time.is_none_or(|until| t.time < until)
            }));
        }
        trades.sort_unstable_by_key(|t| t.id);
        trades.dedup_by_key(|t| t.id);
        Ok(FetchedTrades {
            trades,
            next_id,
            requests,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_follows_the_provider_settings() {
        let settings = ProviderSettings {
            binance_base_url: "http://127.0.0.1:8080".into(),
            binance_weight_budget: 1200,
            fetch_concurrency: 2,
            upstream_timeout: Duration::from_secs(7),
            ..ProviderSettings::defaults(ProviderSettings::DEPLOYED)
        };
        let config = BinanceConfig::from_settings(&settings);
        assert_eq!(config.base_url, "http://127.0.0.1:8080");
        assert_eq!(config.weight_budget, 1200);
        assert_eq!(config.weight_window, Duration::from_secs(60));
        assert_eq!(config.concurrency, 2);
        assert_eq!(config.request_timeout, Duration::from_secs(7));
        assert_eq!(
            config.archive_base_url.as_deref(),
            Some(crate::settings::DEFAULT_BINANCE_ARCHIVE_URL)
        );
        let archive = |value: &str| {
            let settings = ProviderSettings::from_lookup(
                |name| (name == BINANCE_ARCHIVE_URL).then(|| value.to_string()),
                ProviderSettings::DEPLOYED,
            );
            settings.map(|s| BinanceConfig::from_settings(&s).archive_base_url)
        };
        assert_eq!(
            archive("http://127.0.0.1:9/"),
            Ok(Some("http://127.0.0.1:9".into()))
        );
        assert_eq!(archive(" "), Ok(None), "set but blank turns archives off");
        assert!(archive("data.binance.vision").is_err());
        let defaults = BinanceConfig::default();
        assert_eq!(defaults.archive_base_url, None);
        assert_eq!(defaults.base_url, DEFAULT_BINANCE_BASE_URL);
        assert_eq!(
            u64::from(defaults.weight_budget),
            DEFAULT_BINANCE_WEIGHT_BUDGET
        );
    }

    #[test]
    fn setup_errors_name_the_setting_and_debug_stays_small() {
        let error = BinanceProvider::new(BinanceConfig::new("ftp://x")).unwrap_err();
        assert!(error.to_string().starts_with(BINANCE_BASE_URL), "{error}");
        let provider = BinanceProvider::new(BinanceConfig::new("http://127.0.0.1:9/")).unwrap();
        assert_eq!(provider.base_url(), "http://127.0.0.1:9");
        let debug = format!("{provider:?}");
        assert_eq!(
            debug,
            "BinanceProvider { base_url: \"http://127.0.0.1:9\", archive_base_url: None, weight_budget: 6000, concurrency: 4, .. }"
        );
        let error = BinanceProvider::new(BinanceConfig {
            archive_base_url: Some("ftp://x".into()),
            ..BinanceConfig::new("http://127.0.0.1:9")
        })
        .unwrap_err();
        assert!(
            error.to_string().starts_with(BINANCE_ARCHIVE_URL),
            "{error}"
        );
    }
}
