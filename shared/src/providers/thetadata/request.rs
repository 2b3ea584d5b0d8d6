//! Which v3 endpoint serves a dataset, and with which query parameters.
//!
//! Parameter names are v3's (a v3 terminal answers 410 to v2 names such as `exp` or
//! `root`); dates are `YYYYMMDD`; every request asks for `format=json`.

use chrono::{Datelike, NaiveDate, Weekday};

use crate::codec::schema::Layout;
use crate::dataset::{AssetType, BarInterval, Dataset, Provider as ProviderName, Right};
use crate::providers::{self, ProviderError, one_per_session};

/// One end-of-day request may cover at most this many calendar days.
pub const MAX_EOD_WINDOW_DAYS: i64 = 365;

/// Readiness probe: answers `CONNECTED` once the terminal reaches ThetaData's servers.
pub const STATUS_PATH: &str = "/v3/terminal/mdds/status";
pub const EXPIRATIONS_PATH: &str = "/v3/option/list/expirations";
pub const STRIKES_PATH: &str = "/v3/option/list/strikes";
pub const QUOTE_DATES_PATH: &str = "/v3/option/list/dates/quote";
/// Corporate actions live on the terminal's legacy v2 surface only.
pub const SPLITS_PATH: &str = "/v2/hist/stock/split";
pub const DIVIDENDS_PATH: &str = "/v2/hist/stock/dividend";
/// lumibot pads the windows it asks corporate actions for by this many days.
pub const EVENT_PAD_DAYS: i64 = 60;

/// Extended-hours and regular-hours bounds of an intraday request (New York time).
pub const EXTENDED_HOURS: (&str, &str) = ("04:00:00", "20:00:00");
pub const REGULAR_HOURS: (&str, &str) = ("09:30:00", "16:00:00");

/// One GET to the terminal: a path under the base URL and its query parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub path: &'static str,
    pub query: Vec<(&'static str, String)>,
    /// An endpoint a terminal may not serve: 404 and 410 mean "nothing", as lumibot reads
    /// them for corporate events (`_download_corporate_events`).
    pub optional: bool,
}

impl Call {
    fn new(path: &'static str) -> Self {
        Call {
            path,
            query: Vec::new(),
            optional: false,
        }
    }

    fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    fn with(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.query.push((name, value.into()));
        self
    }

    /// `path?query` as sent (for messages).
    pub fn describe(&self) -> String {
        let query: Vec<String> = self.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        if query.is_empty() {
            self.path.to_string()
        } else {
            format!("{}?{}", self.path, query.join("&"))
        }
    }
}

fn yyyymmdd(date: NaiveDate) -> String {
    date.format("%Y%m%d").to_string()
}

/// A strike in dollars as v3 expects it: at most three decimals, no trailing zeros
/// (`250.0` → `250`, `412.5` → `412.5`, `0.125` → `0.125`), as lumibot's
/// `_format_option_strike` writes it.
pub fn format_strike(strike: f64) -> String {
    let text = format!("{strike:.3}");
    let trimmed = text.trim_end_matches('0').trim_end_matches('.');
    if trimmed.is_empty() || trimmed == "-" {
        "0".to_string()
    } else {
        trimmed.to_string()
    }
}

/// Option root ThetaData files a contract under: SPX contracts that do not expire on a
/// third Friday (weeklies, 0DTE) trade as `SPXW`.
pub fn option_root(dataset: &Dataset) -> String {
    match &dataset.contract {
        Some(c) if dataset.symbol == "SPX" => if is_third_friday(c.expiration) {
            "SPX"
        } else {
            "SPXW"
        }
        .to_string(),
        _ => dataset.symbol.clone(),
    }
}

/// Index history is filed under the index root, not under an option trading class.
pub fn index_root(symbol: &str) -> &str {
    match symbol {
        "SPXW" => "SPX",
        "RUTW" => "RUT",
        "VIXW" => "VIX",
        "NDXP" => "NDX",
        other => other,
    }
}

/// Whether the ThetaData provider can fill `dataset`: `Err(Unsupported)` says why not.
///
/// | asset | intraday (`1m` … `1h`) | day |
/// |---|---|---|
/// | stock | ohlc, quote | ohlc, quote (from end-of-day reports) |
/// | option | ohlc, quote | ohlc, quote (from end-of-day reports) |
/// | index | ohlc | ohlc |
pub fn check_supported(dataset: &Dataset) -> Result<(), ProviderError> {
    if dataset.provider != ProviderName::ThetaData {
        return Err(ProviderError::Unsupported(format!(
            "the ThetaData provider only fills 'thetadata' datasets, not '{}'",
            dataset.provider
        )));
    }
    let layout = Layout::of(dataset);
    if dataset.asset_type == AssetType::Index
        && matches!(layout, Layout::IntradayQuote | Layout::DayQuote)
    {
        return Err(ProviderError::Unsupported(
            "ThetaData has no quotes for indices; use datastyle 'ohlc'".into(),
        ));
    }
    if dataset.asset_type == AssetType::Option && dataset.contract.is_none() {
        return Err(ProviderError::Unsupported(
            "an option dataset needs expiration, strike and right".into(),
        ));
    }
    if dataset.is_intraday() && interval(dataset.timespan.interval()).is_none() {
        return Err(ProviderError::Unsupported(format!(
            "timespan '{}' has no ThetaData interval",
            dataset.timespan.as_str()
        )));
    }
    Ok(())
}

/// ThetaData's `interval` parameter for intraday bars; `None` for day bars.
pub fn interval(bars: BarInterval) -> Option<String> {
    match bars {
        BarInterval::Minutes(n) => Some(format!("{n}m")),
        BarInterval::Hour => Some("1h".into()),
        BarInterval::Day => None,
    }
}

/// Units of work: one session per request for intraday data; for end-of-day data, runs of
/// consecutive sessions (on the NYSE calendar) of at most [`MAX_EOD_WINDOW_DAYS`], so a
/// window never asks again for sessions the file already has.
pub fn plan(dataset: &Dataset, sessions: &[NaiveDate]) -> Vec<Vec<NaiveDate>> {
    if dataset.is_intraday() {
        one_per_session(sessions)
    } else {
        eod_windows(sessions)
    }
}

/// Split ascending sessions into runs of consecutive sessions spanning at most
/// [`MAX_EOD_WINDOW_DAYS`] calendar days.
pub fn eod_windows(sessions: &[NaiveDate]) -> Vec<Vec<NaiveDate>> {
    providers::group(sessions, |unit, session| {
        providers::spans_under(unit, session, MAX_EOD_WINDOW_DAYS)
            && providers::follows(unit, session)
    })
}

/// The expiration to query for a contract whose tradable expiration is `tradable`, given
/// the root's listed expirations: the tradable date when listed, else the Saturday after it
/// when that is listed, else lumibot's rule (a third Friday maps to the next Saturday) when
/// nothing is listed, else the tradable date.
pub fn query_expiration(tradable: NaiveDate, listed: &[NaiveDate]) -> NaiveDate {
    let saturday = tradable + chrono::Duration::days(1);
    if listed.binary_search(&tradable).is_ok() {
        tradable
    } else if (tradable.weekday() == Weekday::Fri && listed.binary_search(&saturday).is_ok())
        || (listed.is_empty() && is_third_friday(tradable))
    {
        saturday
    } else {
        tradable
    }
}

pub fn is_third_friday(date: NaiveDate) -> bool {
    date.weekday() == Weekday::Fri && (15..=21).contains(&date.day())
}

fn contract_params(call: Call, dataset: &Dataset, expiration: Option<NaiveDate>) -> Call {
    let Some(c) = &dataset.contract else {
        return call;
    };
    let right = match c.right {
        Right::Call => "call",
        Right::Put => "put",
    };
    call.with("expiration", yyyymmdd(expiration.unwrap_or(c.expiration)))
        .with("strike", format_strike(c.strike.value()))
        .with("right", right)
}

fn symbol_of(dataset: &Dataset) -> String {
    match dataset.asset_type {
        AssetType::Option => option_root(dataset),
        AssetType::Index => index_root(&dataset.symbol).to_string(),
        AssetType::Stock => dataset.symbol.clone(),
    }
}

fn history_path(dataset: &Dataset) -> &'static str {
    let intraday = dataset.is_intraday();
    match (dataset.asset_type, Layout::of(dataset).is_ohlc(), intraday) {
        (AssetType::Stock, true, true) => "/v3/stock/history/ohlc",
        (AssetType::Stock, false, true) => "/v3/stock/history/quote",
        (AssetType::Option, true, true) => "/v3/option/history/ohlc",
        (AssetType::Option, false, true) => "/v3/option/history/quote",
        // Index prices come as OHLC bars; `/v3/index/history/price` is the tick-level feed.
        (AssetType::Index, _, true) => "/v3/index/history/ohlc",
        (AssetType::Stock, _, false) => "/v3/stock/history/eod",
        (AssetType::Option, _, false) => "/v3/option/history/eod",
        (AssetType::Index, _, false) => "/v3/index/history/eod",
    }
}

/// The requests that fetch `sessions` of `dataset` (one per session intraday, one per
/// window for end-of-day data), options asked for `expiration` (else their tradable one).
/// The dataset must pass [`check_supported`].
pub fn history_calls(
    dataset: &Dataset,
    sessions: &[NaiveDate],
    include_after_hours: bool,
    expiration: Option<NaiveDate>,
) -> Vec<Call> {
    let path = history_path(dataset);
    let symbol = symbol_of(dataset);
    if !dataset.is_intraday() {
        return eod_windows(sessions)
            .iter()
            .map(|window| {
                let call = Call::new(path)
                    .with("symbol", symbol.clone())
                    .with("start_date", yyyymmdd(window[0]))
                    .with("end_date", yyyymmdd(*window.last().expect("never empty")));
                contract_params(call, dataset, expiration).with("format", "json")
            })
            .collect();
    }
    let interval = interval(dataset.timespan.interval()).unwrap_or_else(|| "1m".to_string());
    let (start_time, end_time) = if include_after_hours {
        EXTENDED_HOURS
    } else {
        REGULAR_HOURS
    };
    sessions
        .iter()
        .map(|session| {
            let day = yyyymmdd(*session);
            let call = Call::new(path).with("symbol", symbol.clone());
            // The index endpoint takes a date range only; a one-day range is one session.
            let call = if dataset.asset_type == AssetType::Index {
                call.with("start_date", day.clone()).with("end_date", day)
            } else {
                call.with("date", day)
            };
            contract_params(call, dataset, expiration)
                .with("interval", interval.clone())
                .with("start_time", start_time)
                .with("end_time", end_time)
                .with("format", "json")
        })
        .collect()
}

/// A v2 corporate-action call for `root` over `from..=to`, as lumibot sends it.
pub fn events_call(path: &'static str, root: &str, from: NaiveDate, to: NaiveDate) -> Call {
    Call::new(path)
        .with("root", root.to_string())
        .with("start_date", yyyymmdd(from))
        .with("end_date", yyyymmdd(to))
        .with("use_csv", "false")
        .with("pretty_time", "false")
        .optional()
}

pub fn status_call() -> Call {
    Call::new(STATUS_PATH)
}

pub fn expirations_call(root: &str) -> Call {
    Call::new(EXPIRATIONS_PATH)
        .with("symbol", root)
        .with("format", "json")
}

pub fn quote_dates_call(root: &str, expiration: NaiveDate) -> Call {
    Call::new(QUOTE_DATES_PATH)
        .with("symbol", root)
        .with("expiration", yyyymmdd(expiration))
        .with("format", "json")
}

pub fn strikes_call(root: &str, expiration: NaiveDate) -> Call {
    Call::new(STRIKES_PATH)
        .with("symbol", root)
        .with("expiration", yyyymmdd(expiration))
        .with("format", "json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_expirations_follow_the_listing_then_lumibots_rule() {
        let d = |t: &str| t.parse::<NaiveDate>().unwrap();
        let friday = d("2024-12-20");
        assert_eq!(query_expiration(friday, &[d("2024-12-20")]), friday);
        assert_eq!(
            query_expiration(friday, &[d("2024-12-21")]),
            d("2024-12-21")
        );
        // Nothing listed: a third Friday maps to the next Saturday, anything else stays.
        assert_eq!(query_expiration(friday, &[]), d("2024-12-21"));
        assert_eq!(query_expiration(d("2024-12-27"), &[]), d("2024-12-27"));
        // Listed, but neither date: ask for the tradable one (the fetch answers no data).
        assert_eq!(query_expiration(friday, &[d("2025-01-17")]), friday);
    }

    fn d(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn dataset(json: &str) -> Dataset {
        Dataset::from_json(json).unwrap()
    }

    #[test]
    fn strikes_are_formatted_like_lumibot() {
        for (value, text) in [
            (250.0, "250"),
            (100.0, "100"),
            (412.5, "412.5"),
            (0.125, "0.125"),
            (17.25, "17.25"),
            (340.0001, "340"),
            (2.0006, "2.001"),
        ] {
            assert_eq!(format_strike(value), text, "{value}");
        }
    }

    #[test]
    fn spx_weeklies_use_the_spxw_root() {
        let monthly = dataset(
            r#"{"provider":"thetadata","asset_type":"option","symbol":"SPX","timespan":"minute","datastyle":"ohlc","expiration":"2024-03-15","strike":5000,"right":"CALL"}"#,
        );
        let weekly = dataset(
            r#"{"provider":"thetadata","asset_type":"option","symbol":"SPX","timespan":"minute","datastyle":"ohlc","expiration":"2024-03-14","strike":5000,"right":"CALL"}"#,
        );
        assert_eq!(option_root(&monthly), "SPX");
        assert_eq!(option_root(&weekly), "SPXW");
    }

    #[test]
    fn eod_windows_stop_at_gaps_and_at_365_days() {
        let mut sessions =
            crate::calendar::sessions_between(d("2022-01-03"), d("2023-12-29")).unwrap();
        let units = eod_windows(&sessions);
        assert_eq!(units.len(), 2);
        for unit in &units {
            assert!((*unit.last().unwrap() - unit[0]).num_days() < MAX_EOD_WINDOW_DAYS);
        }
        // A covered session in the middle splits the run.
        sessions.retain(|s| *s != d("2022-06-15"));
        let units = eod_windows(&sessions);
        assert_eq!(units[0].last(), Some(&d("2022-06-14")));
        assert_eq!(units[1][0], d("2022-06-16"));
        assert_eq!(units.iter().map(Vec::len).sum::<usize>(), sessions.len());
        // Holidays and weekends do not break a run.
        let around_mlk =
            crate::calendar::sessions_between(d("2024-01-12"), d("2024-01-17")).unwrap();
        assert_eq!(eod_windows(&around_mlk).len(), 1);
    }
}
