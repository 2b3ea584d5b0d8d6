//! Polygon: aggregate bars of stocks, indices and options from Polygon's REST API
//! (`https://api.polygon.io` by default, `POLYGON_BASE_URL` elsewhere), as lumibot's Polygon
//! cache keeps them (`docs/POLYGON.md`).
//!
//! # What it serves
//!
//! Datastyle `ohlc` at the timespans lumibot's Polygon cache uses (`minute`, `hour`, `day`):
//! `GET /v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}` with
//! `adjusted=true&sort=asc&limit=50000`, tickers `AAPL`, `I:SPX` and OCC
//! `O:SPY241122C00340000` ([`request`]). Quotes are refused with
//! [`ProviderError::Unsupported`].
//!
//! # Requests, pages and faults
//!
//! Missing sessions are planned into runs of consecutive sessions whose bars fit in one page
//! ([`request::plan`]); every page's `next_url` is followed until there is none
//! ([`client::Client::pages`]). Bars are kept when their New York date is one of the unit's
//! sessions ([`parse`]). Statuses map to [`ProviderError`] in [`client`]; retries follow the
//! shared [`RetryPolicy`]. At most [`PolygonConfig::concurrency`] requests are in flight at
//! once. The API key travels only in the `Authorization` header and is redacted everywhere
//! else.

pub mod client;
pub mod parse;
pub mod request;

use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDate;
use serde::de::DeserializeOwned;

use super::{FetchRequest, Fetched, Provider, ProviderError};
use crate::calendar::NyDates;
use crate::codec::Rows;
use crate::dataset::Dataset;
pub use crate::providers::retry::RetryPolicy;
use crate::settings::{
    DEFAULT_POLYGON_BASE_URL, POLYGON_API_KEY, POLYGON_BASE_URL, ProviderSettings, Secret,
};
use client::{Client, ClientError};
use parse::Aggregate;

/// How to reach Polygon and how patient to be with it. `Debug` redacts the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolygonConfig {
    /// Without a trailing `/`, e.g. `https://api.polygon.io`.
    pub base_url: String,
    pub api_key: Secret,
    /// Requests in flight at once, retries included.
    pub concurrency: usize,
    /// Timeout of one request, body included.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
}

impl PolygonConfig {
    /// Defaults at another base URL (a trailing `/` is dropped).
    pub fn new(base_url: &str, api_key: Secret) -> Self {
        PolygonConfig {
            base_url: base_url.trim().trim_end_matches('/').to_string(),
            api_key,
            concurrency: 4,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
        }
    }

    /// Polygon as the settings name it (`POLYGON_BASE_URL`, `POLYGON_API_KEY`), as patient
    /// as they say (`CACHE_FETCH_CONCURRENCY`, `CACHE_UPSTREAM_TIMEOUT_SECONDS`).
    pub fn from_settings(settings: &ProviderSettings) -> Result<Self, SetupError> {
        let key = settings
            .polygon_api_key
            .clone()
            .ok_or(SetupError::MissingKey)?;
        Ok(PolygonConfig {
            concurrency: settings.fetch_concurrency,
            request_timeout: settings.upstream_timeout,
            ..PolygonConfig::new(&settings.polygon_base_url, key)
        })
    }
}

impl Default for PolygonConfig {
    /// Polygon's own API without a key: set `api_key` before [`PolygonProvider::new`], which
    /// refuses an empty one.
    fn default() -> Self {
        PolygonConfig::new(DEFAULT_POLYGON_BASE_URL, Secret::new(""))
    }
}

/// Why the provider could not be set up; names the setting, never quotes the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    #[error("{POLYGON_API_KEY} must be set to serve polygon")]
    MissingKey,
    #[error("{POLYGON_API_KEY}: {0}")]
    Key(ClientError),
    #[error("{POLYGON_BASE_URL}: {0}")]
    BaseUrl(ClientError),
    #[error("{0}")]
    Client(ClientError),
}

impl From<ClientError> for SetupError {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::Key => SetupError::Key(error),
            ClientError::BaseUrl { .. } => SetupError::BaseUrl(error),
            ClientError::Http(_) => SetupError::Client(error),
        }
    }
}

/// Every result of a listing, and what reading it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing<T> {
    /// In the order of the pages.
    pub results: Vec<T>,
    /// Requests made, pages and retries included.
    pub requests: u32,
}

/// The Polygon provider (see the module docs).
#[derive(Debug)]
pub struct PolygonProvider {
    client: Client,
    concurrency: usize,
}

impl PolygonProvider {
    pub fn new(config: PolygonConfig) -> Result<Self, SetupError> {
        if config.api_key.expose().is_empty() {
            return Err(SetupError::MissingKey);
        }
        let client = Client::new(
            &config.base_url,
            config.api_key,
            config.concurrency,
            config.request_timeout,
            config.connect_timeout,
            config.retry,
        )?;
        Ok(PolygonProvider {
            client,
            concurrency: config.concurrency.max(1),
        })
    }

    pub fn base_url(&self) -> &str {
        self.client.base_url()
    }

    /// Every result of the listing at `path` (`/v3/quotes/AAPL`) with `query`, page after
    /// page along `next_url`, each result read as a `T` (unknown fields ignored).
    pub async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Listing<T>, ProviderError> {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut results = Vec::new();
        let mut requests = 0;
        self.client
            .pages(self.client.url(&segments, query), &mut requests, |page| {
                results.extend(page);
                Ok(())
            })
            .await?;
        Ok(Listing { results, requests })
    }
}

#[async_trait]
impl Provider for PolygonProvider {
    fn supports(&self, dataset: &Dataset) -> Result<(), ProviderError> {
        request::check_supported(dataset)
    }

    fn plan(&self, dataset: &Dataset, sessions: &[NaiveDate]) -> Vec<Vec<NaiveDate>> {
        request::plan(dataset, sessions)
    }

    /// The aggregates from the unit's first to its last session, every page of them; bars
    /// of other New York dates are dropped.
    async fn fetch(&self, unit: FetchRequest<'_>) -> Result<Fetched, ProviderError> {
        let dataset = unit.dataset;
        request::check_supported(dataset)?;
        let mut bars = Vec::new();
        let mut requests = 0;
        let (Some(first), Some(last)) = (unit.sessions.first(), unit.sessions.last()) else {
            return Ok(Fetched {
                rows: Rows::Aggs(bars),
                requests,
            });
        };
        let ticker = request::ticker(dataset, unit.provider_expiration)?;
        let segments = request::aggs_segments(&ticker, dataset.timespan.interval(), *first, *last);
        let url = self.client.url(&segments, &request::aggs_query());
        let mut dates = NyDates::new();
        self.client
            .pages(url, &mut requests, |page: Vec<Aggregate>| {
                let kept =
                    parse::bars_in_sessions(&page, unit.sessions, &mut dates).map_err(|e| {
                        ProviderError::Protocol(format!("GET /v2/aggs/ticker/{ticker}: {e}"))
                    })?;
                bars.extend(kept);
                Ok(())
            })
            .await?;
        Ok(Fetched {
            rows: Rows::Aggs(bars),
            requests,
        })
    }

    fn concurrency(&self, _dataset: &Dataset) -> usize {
        self.concurrency
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_follows_the_provider_settings() {
        let settings = ProviderSettings {
            polygon_base_url: "http://127.0.0.1:8080".into(),
            polygon_api_key: Some(Secret::new("pk-1")),
            fetch_concurrency: 2,
            upstream_timeout: Duration::from_secs(7),
            ..ProviderSettings::defaults(ProviderSettings::DEPLOYED)
        };
        let config = PolygonConfig::from_settings(&settings).unwrap();
        assert_eq!(config.base_url, "http://127.0.0.1:8080");
        assert_eq!(config.api_key.expose(), "pk-1");
        assert_eq!(config.concurrency, 2);
        assert_eq!(config.request_timeout, Duration::from_secs(7));
        let without = ProviderSettings::defaults(ProviderSettings::DEPLOYED);
        let error = PolygonConfig::from_settings(&without).unwrap_err();
        assert_eq!(error, SetupError::MissingKey);
        assert!(error.to_string().contains(POLYGON_API_KEY), "{error}");
    }

    #[test]
    fn setup_errors_name_the_setting() {
        let error =
            PolygonProvider::new(PolygonConfig::new("ftp://x", Secret::new("pk"))).unwrap_err();
        assert!(error.to_string().starts_with(POLYGON_BASE_URL), "{error}");
        let error = PolygonProvider::new(PolygonConfig::default()).unwrap_err();
        assert_eq!(error, SetupError::MissingKey);
        let error = PolygonProvider::new(PolygonConfig::new(
            DEFAULT_POLYGON_BASE_URL,
            Secret::new("a\u{7f}b"),
        ))
        .unwrap_err();
        assert!(error.to_string().starts_with(POLYGON_API_KEY), "{error}");
    }
}
