//! Widening a missing range before asking the miss-handler for it.
//!
//! A sliding-window backtest misses one new session a day. Asking for exactly that session
//! would cost one invocation (and at least one upstream request) per day; asking for the
//! whole calendar month it falls in costs one per month, and the next days of the month
//! are then local hits.

use chrono::{DateTime, Datelike, NaiveDate, Utc};

use cachefill_core::coverage::wanted_sessions;
use cachefill_core::dataset::Dataset;

use crate::error::ClientError;

/// How far a missing range is widened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Widening {
    /// Ask for exactly the missing sessions' span.
    Off,
    /// Whole calendar months around the missing sessions (the default).
    #[default]
    Month,
    /// Whole calendar years: for daily data, whose upstream serves a year in one request.
    Year,
}

impl Widening {
    pub fn as_str(self) -> &'static str {
        match self {
            Widening::Off => "off",
            Widening::Month => "month",
            Widening::Year => "year",
        }
    }
}

impl std::str::FromStr for Widening {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "off" | "none" => Ok(Widening::Off),
            "month" | "months" => Ok(Widening::Month),
            "year" | "years" => Ok(Widening::Year),
            other => Err(format!(
                "unknown widening '{other}' (expected off, month or year)"
            )),
        }
    }
}

fn month_start(date: NaiveDate) -> NaiveDate {
    date.with_day(1).expect("every month has a first day")
}

fn month_end(date: NaiveDate) -> NaiveDate {
    let (year, month) = if date.month() == 12 {
        (date.year() + 1, 1)
    } else {
        (date.year(), date.month() + 1)
    };
    NaiveDate::from_ymd_opt(year, month, 1).expect("valid date") - chrono::Duration::days(1)
}

/// The first and last session to ask the miss-handler for, given the missing sessions
/// (ascending). Clamped to sessions `wanted_sessions` allows (settled by `now`, not past an
/// option's expiration), so the fill never asks for what the engine would not fetch.
/// `None` when nothing is missing.
pub fn widen(
    widening: Widening,
    dataset: &Dataset,
    missing: &[NaiveDate],
    now: DateTime<Utc>,
) -> Result<Option<(NaiveDate, NaiveDate)>, ClientError> {
    let (Some(first), Some(last)) = (missing.first().copied(), missing.last().copied()) else {
        return Ok(None);
    };
    let (start, end) = match widening {
        Widening::Off => (first, last),
        Widening::Month => (month_start(first), month_end(last)),
        Widening::Year => (
            NaiveDate::from_ymd_opt(first.year(), 1, 1).expect("valid date"),
            NaiveDate::from_ymd_opt(last.year(), 12, 31).expect("valid date"),
        ),
    };
    let sessions = wanted_sessions(dataset, start, end, now)
        .map_err(|e| ClientError::InvalidRequest(e.to_string()))?;
    // The missing sessions are wanted themselves, so the clamped span still contains them.
    let start = sessions.first().copied().unwrap_or(first).min(first);
    let end = sessions.last().copied().unwrap_or(last).max(last);
    Ok(Some((start, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn stock() -> Dataset {
        Dataset::from_json(
            r#"{"provider":"synthetic","asset_type":"stock","symbol":"AAPL","timespan":"day","datastyle":"ohlc"}"#,
        )
        .unwrap()
    }

    fn later() -> DateTime<Utc> {
        "2025-06-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn one_missing_day_becomes_its_month_of_sessions() {
        let span = widen(Widening::Month, &stock(), &[d("2024-05-15")], later()).unwrap();
        // May 2024: first session the 1st, last the 31st.
        assert_eq!(span, Some((d("2024-05-01"), d("2024-05-31"))));
        let span = widen(Widening::Month, &stock(), &[d("2024-03-28")], later()).unwrap();
        // March 2024 opens on Friday the 1st and closes on the 28th (Good Friday the 29th).
        assert_eq!(span, Some((d("2024-03-01"), d("2024-03-28"))));
    }

    #[test]
    fn off_keeps_the_missing_span_and_year_takes_whole_years() {
        let missing = [d("2024-05-15"), d("2024-06-03")];
        assert_eq!(
            widen(Widening::Off, &stock(), &missing, later()).unwrap(),
            Some((d("2024-05-15"), d("2024-06-03")))
        );
        assert_eq!(
            widen(Widening::Year, &stock(), &missing, later()).unwrap(),
            Some((d("2024-01-02"), d("2024-12-31")))
        );
        assert_eq!(
            widen(Widening::Month, &stock(), &[], later()).unwrap(),
            None
        );
    }

    #[test]
    fn never_reaches_past_the_settled_sessions_or_an_expiration() {
        // Now is the evening of 2024-05-15: sessions after it are not settled.
        let now: DateTime<Utc> = "2024-05-16T01:00:00Z".parse().unwrap();
        let span = widen(Widening::Month, &stock(), &[d("2024-05-15")], now).unwrap();
        assert_eq!(span, Some((d("2024-05-01"), d("2024-05-15"))));
        let option = Dataset::from_json(
            r#"{"provider":"synthetic","asset_type":"option","symbol":"AAPL","timespan":"day","datastyle":"ohlc","expiration":"2024-05-17","strike":180,"right":"CALL"}"#,
        )
        .unwrap();
        let span = widen(Widening::Month, &option, &[d("2024-05-15")], later()).unwrap();
        assert_eq!(span, Some((d("2024-05-01"), d("2024-05-17"))));
    }

    #[test]
    fn parses_its_names() {
        assert_eq!("Month".parse::<Widening>(), Ok(Widening::Month));
        assert_eq!("off".parse::<Widening>(), Ok(Widening::Off));
        assert!("week".parse::<Widening>().is_err());
    }
}
