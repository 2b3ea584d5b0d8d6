//! What the Polygon provider asks for: which datasets it serves, tickers, the aggregates
//! path and its parameters, and how missing sessions are planned into requests.

use chrono::NaiveDate;

use crate::dataset::{AssetType, BarInterval, DataKind, Dataset, Provider as ProviderName, Right};
use crate::providers::{ProviderError, runs};

/// The most results one aggregates page holds (Polygon's `limit` maximum).
pub const PAGE_LIMIT: u32 = 50_000;

/// Minutes of one session's extended hours (04:00–20:00 New York), which Polygon's
/// intraday aggregates cover.
const EXTENDED_MINUTES: u32 = 16 * 60;

/// Whether the Polygon provider can fill `dataset`: `Err(Unsupported)` says why not.
pub fn check_supported(dataset: &Dataset) -> Result<(), ProviderError> {
    if dataset.provider != ProviderName::Polygon {
        return Err(ProviderError::Unsupported(format!(
            "the Polygon provider only fills 'polygon' datasets, not '{}'",
            dataset.provider
        )));
    }
    if dataset.kind() != DataKind::Ohlc {
        return Err(ProviderError::Unsupported(format!(
            "the Polygon provider fetches aggregate bars (datastyle 'ohlc') only, not '{}'",
            dataset.datastyle.as_str()
        )));
    }
    if dataset.asset_type == AssetType::Option && dataset.contract.is_none() {
        return Err(ProviderError::Unsupported(
            "an option dataset needs its expiration, strike and right".into(),
        ));
    }
    Ok(())
}

/// Polygon's ticker of a dataset: `AAPL` for a stock, `I:SPX` for an index, the OCC
/// ticker `O:SPY241122C00340000` for an option (asked with `expiration` when given, else the
/// contract's own).
pub fn ticker(dataset: &Dataset, expiration: Option<NaiveDate>) -> Result<String, ProviderError> {
    match (dataset.asset_type, &dataset.contract) {
        (AssetType::Stock, _) => Ok(dataset.symbol.clone()),
        (AssetType::Index, _) => Ok(format!("I:{}", dataset.symbol)),
        (AssetType::Option, Some(contract)) => option_ticker(
            // The OCC root: SPX weeklies trade as SPXW, as ThetaData files them.
            &crate::providers::thetadata::request::option_root(dataset),
            expiration.unwrap_or(contract.expiration),
            contract.right,
            contract.strike.value(),
        ),
        (AssetType::Option, None) => Err(ProviderError::Unsupported(
            "an option dataset needs its expiration, strike and right".into(),
        )),
    }
}

/// `O:{root}{yymmdd}{C|P}{strike × 1000, 8 digits}`.
pub fn option_ticker(
    root: &str,
    expiration: NaiveDate,
    right: Right,
    strike: f64,
) -> Result<String, ProviderError> {
    let mills = strike * 1000.0;
    let rounded = mills.round();
    if !((1.0..=99_999_999.0).contains(&rounded) && (mills - rounded).abs() < 1e-6) {
        return Err(ProviderError::Unsupported(format!(
            "strike {strike} cannot be written in an OCC ticker (more than 3 decimals, or not \
             between 0.001 and 99999.999)"
        )));
    }
    let right = match right {
        Right::Call => 'C',
        Right::Put => 'P',
    };
    Ok(format!(
        "O:{root}{}{right}{:08}",
        expiration.format("%y%m%d"),
        rounded as u64
    ))
}

/// Polygon's `multiplier` and `timespan` of a bar interval.
pub fn timespan(interval: BarInterval) -> (u32, &'static str) {
    match interval {
        BarInterval::Minutes(n) => (n, "minute"),
        BarInterval::Hour => (1, "hour"),
        BarInterval::Day => (1, "day"),
    }
}

/// The path segments after the base URL: `v2/aggs/ticker/{ticker}/range/{multiplier}/
/// {timespan}/{from}/{to}`, dates as `YYYY-MM-DD`, both inclusive.
pub fn aggs_segments(
    ticker: &str,
    interval: BarInterval,
    from: NaiveDate,
    to: NaiveDate,
) -> Vec<String> {
    let (multiplier, timespan) = timespan(interval);
    [
        "v2",
        "aggs",
        "ticker",
        ticker,
        "range",
        &multiplier.to_string(),
        timespan,
        &from.to_string(),
        &to.to_string(),
    ]
    .map(str::to_string)
    .to_vec()
}

/// The aggregates query: split-adjusted bars, oldest first, full pages.
pub fn aggs_query() -> Vec<(&'static str, String)> {
    vec![
        ("adjusted", "true".to_string()),
        ("sort", "asc".to_string()),
        ("limit", PAGE_LIMIT.to_string()),
    ]
}

/// Bars one session can hold at most at `interval`.
pub fn bars_per_session(interval: BarInterval) -> u32 {
    match interval {
        BarInterval::Minutes(n) => EXTENDED_MINUTES.div_ceil(n.max(1)),
        BarInterval::Hour => EXTENDED_MINUTES / 60,
        BarInterval::Day => 1,
    }
}

/// Units of work: runs of consecutive sessions (on the NYSE calendar, so a unit never asks
/// again for sessions the file has) small enough that their bars fit in one page. The
/// provider still follows `next_url`, so a unit that does not fit costs one more request,
/// never a lost bar.
pub fn plan(dataset: &Dataset, sessions: &[NaiveDate]) -> Vec<Vec<NaiveDate>> {
    let per_unit = (PAGE_LIMIT / bars_per_session(dataset.timespan.interval())).max(1);
    runs(sessions, per_unit as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar;

    fn d(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn dataset(json: &str) -> Dataset {
        Dataset::from_json(json).unwrap()
    }

    #[test]
    fn tickers_of_each_asset_type() {
        let stock = dataset(
            r#"{"provider":"polygon","asset_type":"stock","symbol":"aapl","timespan":"minute","datastyle":"ohlc"}"#,
        );
        assert_eq!(ticker(&stock, None).unwrap(), "AAPL");
        let index = dataset(
            r#"{"provider":"polygon","asset_type":"index","symbol":"SPX","timespan":"day","datastyle":"ohlc"}"#,
        );
        assert_eq!(ticker(&index, None).unwrap(), "I:SPX");
        let option = dataset(
            r#"{"provider":"polygon","asset_type":"option","symbol":"SPY","timespan":"day","datastyle":"ohlc","expiration":"2024-11-22","strike":340,"right":"CALL"}"#,
        );
        assert_eq!(ticker(&option, None).unwrap(), "O:SPY241122C00340000");
        assert_eq!(
            ticker(&option, Some(d("2024-11-23"))).unwrap(),
            "O:SPY241123C00340000"
        );
    }

    #[test]
    fn option_tickers_carry_the_strike_in_mills() {
        let exp = d("2025-01-17");
        assert_eq!(
            option_ticker("AAPL", exp, Right::Put, 412.5).unwrap(),
            "O:AAPL250117P00412500"
        );
        assert_eq!(
            option_ticker("F", exp, Right::Call, 2.5).unwrap(),
            "O:F250117C00002500"
        );
        assert_eq!(
            option_ticker("NVR", exp, Right::Call, 99_999.999).unwrap(),
            "O:NVR250117C99999999"
        );
        for strike in [0.0001, 100_000.0, 1.23456] {
            let error = option_ticker("X", exp, Right::Call, strike).unwrap_err();
            assert!(matches!(error, ProviderError::Unsupported(_)), "{strike}");
        }
    }

    #[test]
    fn timespans_and_page_sized_units() {
        assert_eq!(timespan(BarInterval::Minutes(5)), (5, "minute"));
        assert_eq!(timespan(BarInterval::Hour), (1, "hour"));
        assert_eq!(timespan(BarInterval::Day), (1, "day"));
        assert_eq!(bars_per_session(BarInterval::Minutes(1)), 960);
        assert_eq!(bars_per_session(BarInterval::Minutes(15)), 64);
        assert_eq!(bars_per_session(BarInterval::Hour), 16);
        assert_eq!(bars_per_session(BarInterval::Day), 1);

        let minute = dataset(
            r#"{"provider":"polygon","asset_type":"stock","symbol":"AAPL","timespan":"minute","datastyle":"ohlc"}"#,
        );
        let year = calendar::sessions_between(d("2024-01-02"), d("2024-12-31")).unwrap();
        let units = plan(&minute, &year);
        // 50,000 / 960 = 52 sessions per unit.
        assert!(units.iter().all(|u| u.len() <= 52));
        assert_eq!(units.len(), year.len().div_ceil(52));
        assert_eq!(units.concat(), year);
    }

    #[test]
    fn quotes_and_other_providers_are_refused() {
        let mut quote = dataset(
            r#"{"provider":"polygon","asset_type":"stock","symbol":"AAPL","timespan":"minute","datastyle":"ohlc"}"#,
        );
        quote.datastyle = crate::dataset::Datastyle::parse("quote").unwrap();
        let error = check_supported(&quote).unwrap_err();
        assert!(matches!(error, ProviderError::Unsupported(_)));
        assert!(error.to_string().contains("'quote'"), "{error}");
        let theta = dataset(
            r#"{"provider":"thetadata","asset_type":"stock","symbol":"AAPL","timespan":"minute","datastyle":"ohlc"}"#,
        );
        assert!(check_supported(&theta).is_err());
    }
}
