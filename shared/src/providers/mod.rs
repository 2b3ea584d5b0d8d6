//! The providers seam: where upstream market data comes from.
//!
//! The fill engine asks a provider to [`plan`](Provider::plan) the missing sessions into
//! units of work (each one upstream request, or one per session), then runs the units with
//! bounded concurrency and merges what they return.

pub mod binance;
pub mod http;
pub mod polygon;
pub mod retry;
pub mod synthetic;
pub mod thetadata;

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::NaiveDate;

use crate::codec::Rows;
use crate::dataset::{Dataset, Provider as ProviderName};
use crate::reference::ChainSet;
use crate::reference::chain::Chain;
use crate::reference::events::{Event, EventSet};
use crate::settings::ProviderSettings;
use crate::trades::{FetchedTrades, TradeSpan};

/// What one unit of work asks for.
#[derive(Debug, Clone, Copy)]
pub struct FetchRequest<'a> {
    pub dataset: &'a Dataset,
    /// Sessions of this unit, ascending; never holidays or weekends.
    pub sessions: &'a [NaiveDate],
    /// Intraday bars from 04:00 to 20:00 New York instead of 09:30 to 16:00.
    pub include_after_hours: bool,
    /// For options: the expiration to ask for ([`Provider::query_expiration`]).
    pub provider_expiration: Option<NaiveDate>,
}

/// What one unit of work returned. Sessions without rows become placeholders.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub rows: Rows,
    /// Upstream requests made, retries included.
    pub requests: u32,
}

/// Corporate events a provider knows over a window, and what asking cost.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchedEvents {
    /// Ascending by date.
    pub events: Vec<Event>,
    /// Upstream requests made, retries included.
    pub requests: u32,
}

/// An option chain a provider built, and what building it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchedChain {
    pub chain: Chain,
    /// Expirations whose strikes were fetched (lumibot adjusts strikes for later splits only
    /// when there are some).
    pub strikes_fetched: usize,
    /// Upstream requests made, retries included.
    pub requests: u32,
}

/// Why an upstream could not deliver; each maps to one `errorType`
/// ([`ErrorType`](crate::errors::ErrorType)).
#[non_exhaustive]
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// The account may not access this data (not retried).
    #[error("upstream refused permission: {0}")]
    NoPermission(String),
    /// Still rate-limited after bounded retries.
    #[error("upstream rate limit: {0}")]
    RateLimited(String),
    /// Unreachable, timing out or failing after bounded retries.
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// This provider cannot serve this dataset at all.
    #[error("{0}")]
    Unsupported(String),
    /// The upstream answered something we cannot use (a protocol change, a bug).
    #[error("upstream protocol error: {0}")]
    Protocol(String),
}

impl ProviderError {
    /// Whether the same fetch may succeed later (after the provider's own bounded retries).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ProviderError::RateLimited(_) | ProviderError::Unavailable(_)
        )
    }
}

/// An upstream source of bars and quotes.
#[async_trait]
pub trait Provider: Send + Sync + Debug {
    /// Whether this provider serves `dataset` (its `provider` name, asset type, style).
    /// The engine asks before touching anything, so data never lands under another
    /// provider's key.
    fn supports(&self, dataset: &Dataset) -> Result<(), ProviderError>;

    /// Split missing sessions into units of work, each fetched by one [`Provider::fetch`].
    fn plan(&self, dataset: &Dataset, sessions: &[NaiveDate]) -> Vec<Vec<NaiveDate>>;

    /// Fetch one unit.
    async fn fetch(&self, request: FetchRequest<'_>) -> Result<Fetched, ProviderError>;

    /// How many units of this dataset may run at once.
    fn concurrency(&self, _dataset: &Dataset) -> usize {
        4
    }

    /// The expiration to ask the upstream for an option contract: `requested` when the caller
    /// knows it, else what the provider files the contract under. `None` for other datasets.
    async fn query_expiration(
        &self,
        dataset: &Dataset,
        requested: Option<NaiveDate>,
    ) -> Result<Option<NaiveDate>, ProviderError> {
        Ok(dataset
            .contract
            .as_ref()
            .map(|c| requested.unwrap_or(c.expiration)))
    }

    /// Whether this provider has corporate events for `set` (asked before any lease is
    /// taken for them).
    fn serves_events(&self, _set: &EventSet) -> bool {
        false
    }

    /// The events of `set` dated within `[from, to]`; `None` when this provider has no
    /// corporate events (its day bars are then left as they are).
    async fn events(
        &self,
        _set: &EventSet,
        _from: NaiveDate,
        _to: NaiveDate,
    ) -> Result<Option<FetchedEvents>, ProviderError> {
        Ok(None)
    }

    /// The option chain of `underlying` as of `as_of`, as lumibot builds it; `Ok(None)` when
    /// the provider lists nothing for it. Providers without chains refuse.
    async fn chain(&self, set: &ChainSet) -> Result<Option<FetchedChain>, ProviderError> {
        Err(ProviderError::Unsupported(format!(
            "provider '{}' has no option chains",
            set.provider
        )))
    }

    /// The aggregate trades of `symbol` within `span`. Providers without trades refuse.
    async fn agg_trades(
        &self,
        symbol: &str,
        _span: TradeSpan,
    ) -> Result<FetchedTrades, ProviderError> {
        Err(ProviderError::Unsupported(format!(
            "this provider has no aggregate trades (asked for {symbol})"
        )))
    }
}

/// One unit per session: the shape of intraday endpoints that take a single `date`.
pub fn one_per_session(sessions: &[NaiveDate]) -> Vec<Vec<NaiveDate>> {
    sessions.iter().map(|d| vec![*d]).collect()
}

/// Sessions grouped in order: each joins the unit before it while `joins(unit, session)`
/// says so, else starts a new one. Every planner below is one rule for `joins`.
pub fn group(
    sessions: &[NaiveDate],
    joins: impl Fn(&[NaiveDate], NaiveDate) -> bool,
) -> Vec<Vec<NaiveDate>> {
    let mut out: Vec<Vec<NaiveDate>> = Vec::new();
    for session in sessions {
        match out.last_mut() {
            Some(unit) if joins(unit, *session) => unit.push(*session),
            _ => out.push(vec![*session]),
        }
    }
    out
}

/// Units spanning at most `max_days` calendar days: the shape of end-of-day endpoints that
/// take a `start_date`/`end_date` window.
pub fn windows(sessions: &[NaiveDate], max_days: i64) -> Vec<Vec<NaiveDate>> {
    group(sessions, |unit, session| {
        spans_under(unit, session, max_days)
    })
}

/// Runs of consecutive sessions (consecutive on the NYSE calendar, so weekends and holidays
/// do not split a run) of at most `max_sessions` each: the shape of endpoints that take a
/// date range, when the sessions in between are already covered.
pub fn runs(sessions: &[NaiveDate], max_sessions: usize) -> Vec<Vec<NaiveDate>> {
    group(sessions, |unit, session| {
        unit.len() < max_sessions && follows(unit, session)
    })
}

/// Whether a unit with `session` added spans fewer than `max_days` calendar days.
pub fn spans_under(unit: &[NaiveDate], session: NaiveDate, max_days: i64) -> bool {
    unit.first()
        .is_some_and(|first| (session - *first).num_days() < max_days)
}

/// Whether `session` is the one right after the unit's last (on the NYSE calendar).
pub fn follows(unit: &[NaiveDate], session: NaiveDate) -> bool {
    unit.last()
        .is_some_and(|last| crate::calendar::next_session(*last).is_ok_and(|next| next == session))
}

/// Why a provider the settings serve could not be set up: its own setup error, naming the
/// setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    ThetaData(#[from] thetadata::SetupError),
    #[error(transparent)]
    Polygon(#[from] polygon::SetupError),
    #[error(transparent)]
    Binance(#[from] binance::SetupError),
}

/// Providers by name: the miss-handler serves every provider a dataset may name.
#[derive(Debug, Default)]
pub struct ProviderSet {
    providers: Vec<(ProviderName, Box<dyn Provider>)>,
}

impl ProviderSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// The providers `settings` serve (`CACHE_PROVIDERS`), each set up from them; a provider
    /// that cannot be set up fails here, at start, naming the setting.
    pub fn from_settings(settings: &ProviderSettings) -> Result<Self, SetupError> {
        let mut set = ProviderSet::new();
        for name in &settings.served {
            set = match name {
                ProviderName::ThetaData => set.with(
                    *name,
                    thetadata::ThetaDataProvider::new(thetadata::ThetaDataConfig::from_settings(
                        settings,
                    ))?,
                ),
                ProviderName::Synthetic => set.with(*name, synthetic::SyntheticProvider::new()),
                ProviderName::Binance => set.with(
                    *name,
                    binance::BinanceProvider::new(binance::BinanceConfig::from_settings(settings))?,
                ),
                ProviderName::Polygon => set.with(
                    *name,
                    polygon::PolygonConfig::from_settings(settings)
                        .and_then(polygon::PolygonProvider::new)?,
                ),
            };
        }
        Ok(set)
    }

    /// The names served, in order.
    pub fn served(&self) -> Vec<ProviderName> {
        self.providers.iter().map(|(name, _)| *name).collect()
    }

    pub fn with(mut self, name: ProviderName, provider: impl Provider + 'static) -> Self {
        self.providers.push((name, Box::new(provider)));
        self
    }

    fn get(&self, dataset: &Dataset) -> Result<&dyn Provider, ProviderError> {
        self.named(dataset.provider)
    }

    fn named(&self, name: ProviderName) -> Result<&dyn Provider, ProviderError> {
        self.providers
            .iter()
            .find(|(served, _)| *served == name)
            .map(|(_, p)| p.as_ref())
            .ok_or_else(|| {
                let hint = if name == ProviderName::Polygon {
                    "; serving polygon also needs POLYGON_API_KEY"
                } else {
                    ""
                };
                ProviderError::Unsupported(format!(
                    "provider '{}' is not served by this deployment (CACHE_PROVIDERS serves: {}{hint})",
                    name,
                    self.served()
                        .iter()
                        .map(|p| p.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }
}

#[async_trait]
impl Provider for ProviderSet {
    fn supports(&self, dataset: &Dataset) -> Result<(), ProviderError> {
        self.get(dataset)?.supports(dataset)
    }

    fn plan(&self, dataset: &Dataset, sessions: &[NaiveDate]) -> Vec<Vec<NaiveDate>> {
        match self.get(dataset) {
            Ok(p) => p.plan(dataset, sessions),
            Err(_) => one_per_session(sessions),
        }
    }

    async fn fetch(&self, request: FetchRequest<'_>) -> Result<Fetched, ProviderError> {
        self.get(request.dataset)?.fetch(request).await
    }

    fn concurrency(&self, dataset: &Dataset) -> usize {
        self.get(dataset).map_or(1, |p| p.concurrency(dataset))
    }

    async fn query_expiration(
        &self,
        dataset: &Dataset,
        requested: Option<NaiveDate>,
    ) -> Result<Option<NaiveDate>, ProviderError> {
        self.get(dataset)?
            .query_expiration(dataset, requested)
            .await
    }

    fn serves_events(&self, set: &EventSet) -> bool {
        self.named(set.provider).is_ok_and(|p| p.serves_events(set))
    }

    async fn events(
        &self,
        set: &EventSet,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Option<FetchedEvents>, ProviderError> {
        self.named(set.provider)?.events(set, from, to).await
    }

    async fn chain(&self, set: &ChainSet) -> Result<Option<FetchedChain>, ProviderError> {
        self.named(set.provider)?.chain(set).await
    }

    async fn agg_trades(
        &self,
        symbol: &str,
        span: TradeSpan,
    ) -> Result<FetchedTrades, ProviderError> {
        self.named(ProviderName::Binance)?
            .agg_trades(symbol, span)
            .await
    }
}

#[async_trait]
impl<P: Provider + ?Sized> Provider for std::sync::Arc<P> {
    fn supports(&self, dataset: &Dataset) -> Result<(), ProviderError> {
        (**self).supports(dataset)
    }
    fn plan(&self, dataset: &Dataset, sessions: &[NaiveDate]) -> Vec<Vec<NaiveDate>> {
        (**self).plan(dataset, sessions)
    }
    async fn fetch(&self, request: FetchRequest<'_>) -> Result<Fetched, ProviderError> {
        (**self).fetch(request).await
    }
    fn concurrency(&self, dataset: &Dataset) -> usize {
        (**self).concurrency(dataset)
    }
    async fn query_expiration(
        &self,
        dataset: &Dataset,
        requested: Option<NaiveDate>,
    ) -> Result<Option<NaiveDate>, ProviderError> {
        (**self).query_expiration(dataset, requested).await
    }
    fn serves_events(&self, set: &EventSet) -> bool {
        (**self).serves_events(set)
    }
    async fn events(
        &self,
        set: &EventSet,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Option<FetchedEvents>, ProviderError> {
        (**self).events(set, from, to).await
    }
    async fn chain(&self, set: &ChainSet) -> Result<Option<FetchedChain>, ProviderError> {
        (**self).chain(set).await
    }
    async fn agg_trades(
        &self,
        symbol: &str,
        span: TradeSpan,
    ) -> Result<FetchedTrades, ProviderError> {
        (**self).agg_trades(symbol, span).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_never_span_more_than_max_days() {
        let sessions = crate::calendar::sessions_between(
            "2023-01-03".parse().unwrap(),
            "2024-12-31".parse().unwrap(),
        )
        .unwrap();
        let units = windows(&sessions, 365);
        assert_eq!(units.len(), 2);
        for unit in &units {
            assert!((*unit.last().unwrap() - unit[0]).num_days() < 365);
        }
        assert_eq!(units.iter().map(Vec::len).sum::<usize>(), sessions.len());
    }

    #[test]
    fn runs_stop_at_gaps_and_at_the_size_limit() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        let mut sessions =
            crate::calendar::sessions_between(d("2024-01-02"), d("2024-01-31")).unwrap();
        // Weekends and the MLK holiday (2024-01-15) do not split a run.
        assert_eq!(runs(&sessions, 100), [sessions.clone()]);
        let units = runs(&sessions, 7);
        assert_eq!(units.len(), sessions.len().div_ceil(7));
        assert!(units.iter().all(|u| u.len() <= 7));
        // A session already covered splits the run.
        sessions.retain(|s| *s != d("2024-01-10"));
        let units = runs(&sessions, 100);
        assert_eq!(units.len(), 2);
        assert_eq!(units[0].last(), Some(&d("2024-01-09")));
        assert_eq!(units[1][0], d("2024-01-11"));
        assert!(runs(&[], 5).is_empty());
    }
}
