//! Generated ThetaData answers for any stock and session: minute OHLC bars in the shape and
//! number spellings of the recorded terminal answer
//! `tests/fixtures/thetadata-v3-columnar/stock_minute_ohlc.json` (the older columnar v3 JSON,
//! `{"volume":[…],"high":[…],"low":[…],"vwap":[…],"count":[…],"close":[…],"open":[…],
//! "timestamp":[…]}` in that key order), so that benchmarks can fill full-size sessions that
//! were never recorded.
//!
//! [`serve`] makes a [`ReplayServer`] answer, for any symbol:
//!
//! - `GET /v3/stock/history/ohlc` with `interval=1m` and either `date` (one session: what
//!   cachefill and lumibot 4.6.30 both send, one request per session) or
//!   `start_date`/`end_date` (every session of the range, one answer): a bar for every minute
//!   from `start_time` (included) to `end_time` (excluded), 04:00–20:00 New York being 960
//!   bars. Absent times are the terminal's defaults, 09:30 and 16:00. A date that is not an
//!   NYSE session gets the terminal's 472 NO_DATA; another interval or an unreadable
//!   parameter gets a 400 naming it, so a request this module does not understand fails
//!   loudly instead of looking like an empty session.
//! - the v2 corporate-action lookups (`/v2/hist/stock/split`, `/v2/hist/stock/dividend`) with
//!   472 NO_DATA, as the terminal answers a symbol without events (lumibot looks them up
//!   around every fill).
//! - `/v3/terminal/mdds/status` with `CONNECTED`.
//!
//! Every bar is traded (`count` > 0), so no row rule drops one and both sides of a comparison
//! keep every bar. The prices of a bar depend only on the symbol and the bar's minute
//! ([`crate::polygon::generated_bar`], the Polygon replay's generator, at the bar's instant),
//! so every answer for the same symbol and minute is the same whichever request asked.

use std::fmt::Write;

use chrono::{NaiveDate, NaiveTime, Timelike};

use cachefill_core::calendar;

use crate::polygon::generated_bar;
use crate::thetadata::{Query, ReplayServer, Reply};

/// Where stock minute OHLC is asked for.
pub const STOCK_OHLC: &str = "/v3/stock/history/ohlc";
/// The v2 corporate-action lookups, answered "no events".
pub const SPLITS: &str = "/v2/hist/stock/split";
pub const DIVIDENDS: &str = "/v2/hist/stock/dividend";
/// The terminal's readiness.
pub const STATUS: &str = "/v3/terminal/mdds/status";

/// Make `server` answer the requests of the module docs.
pub fn serve(server: &ReplayServer) {
    server.respond_with(STOCK_OHLC, |query| Some(stock_minute_ohlc(query)));
    for path in [SPLITS, DIVIDENDS] {
        server.respond_with(path, |_| Some(Reply::no_data()));
    }
    server.respond_with(STATUS, |_| {
        Some(Reply::text(200, "CONNECTED").with_content_type("text/plain"))
    });
}

/// The answer to one stock minute OHLC request (its query normalized by the server).
pub fn stock_minute_ohlc(query: &Query) -> Reply {
    match GeneratedRequest::parse(query) {
        Ok(request) => {
            let sessions: Vec<NaiveDate> = request
                .dates()
                .into_iter()
                .filter(|d| calendar::is_session(*d).unwrap_or(false))
                .collect();
            if sessions.is_empty() || request.start >= request.end {
                Reply::no_data()
            } else {
                Reply::json(minute_ohlc_body(
                    &request.symbol,
                    &sessions,
                    request.start,
                    request.end,
                ))
            }
        }
        Err(reason) => Reply::text(400, format!("generated ThetaData: {reason}")),
    }
}

/// The body of a minute OHLC answer: for each of `sessions` (ascending), a bar for every
/// minute of `[start, end)` New York.
pub fn minute_ohlc_body(
    symbol: &str,
    sessions: &[NaiveDate],
    start: NaiveTime,
    end: NaiveTime,
) -> String {
    let first = start.num_seconds_from_midnight() / 60;
    let last = end.num_seconds_from_midnight().div_ceil(60);
    let minutes = last.saturating_sub(first) as usize;
    let bars: Vec<(NaiveDate, u32)> = sessions
        .iter()
        .flat_map(|session| (first..last).map(move |m| (*session, m)))
        .collect();
    let generated: Vec<_> = bars
        .iter()
        .map(|(session, minute)| {
            let time = NaiveTime::from_num_seconds_from_midnight_opt(minute * 60, 0)
                .unwrap_or(NaiveTime::MIN);
            let at = calendar::ny_wall_to_utc(*session, time).timestamp_millis();
            generated_bar(symbol, at)
        })
        .collect();
    let mut out = String::with_capacity(sessions.len() * minutes * 64 + 128);
    // The recording's spellings: whole volumes and counts, vwap with 2 decimals, high and low
    // with 3, open and close with 4 (the prices are whole cents, so the trailing zeros are
    // the terminal's, not the price's).
    let column = |out: &mut String, name: &str, cell: &dyn Fn(&mut String, usize)| {
        write!(out, "\"{name}\":[").expect("write to a String");
        for i in 0..generated.len() {
            if i > 0 {
                out.push(',');
            }
            cell(out, i);
        }
        out.push(']');
    };
    out.push('{');
    column(&mut out, "volume", &|o, i| {
        write!(o, "{}", generated[i].v as i64).expect("write to a String")
    });
    out.push(',');
    column(&mut out, "high", &|o, i| {
        write!(o, "{:.3}", generated[i].h).expect("write to a String")
    });
    out.push(',');
    column(&mut out, "low", &|o, i| {
        write!(o, "{:.3}", generated[i].l).expect("write to a String")
    });
    out.push(',');
    column(&mut out, "vwap", &|o, i| {
        write!(o, "{:.2}", generated[i].vw).expect("write to a String")
    });
    out.push(',');
    column(&mut out, "count", &|o, i| {
        write!(o, "{}", generated[i].n).expect("write to a String")
    });
    out.push(',');
    column(&mut out, "close", &|o, i| {
        write!(o, "{:.4}", generated[i].c).expect("write to a String")
    });
    out.push(',');
    column(&mut out, "open", &|o, i| {
        write!(o, "{:.4}", generated[i].o).expect("write to a String")
    });
    out.push(',');
    column(&mut out, "timestamp", &|o, i| {
        let (session, minute) = bars[i];
        write!(o, "\"{session}T{:02}:{:02}:00\"", minute / 60, minute % 60)
            .expect("write to a String")
    });
    out.push('}');
    out
}

/// What a stock minute OHLC request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GeneratedRequest {
    symbol: String,
    from: NaiveDate,
    to: NaiveDate,
    start: NaiveTime,
    end: NaiveTime,
}

impl GeneratedRequest {
    fn parse(query: &Query) -> Result<GeneratedRequest, String> {
        let symbol = query.get("symbol").ok_or("no symbol")?.clone();
        match query.get("interval").map(String::as_str) {
            Some("1m") => {}
            other => return Err(format!("interval {other:?}: only 1m is generated")),
        }
        let date = |name: &str| -> Result<Option<NaiveDate>, String> {
            query
                .get(name)
                .map(|text| {
                    NaiveDate::parse_from_str(text, "%Y%m%d")
                        .map_err(|_| format!("{name} {text:?} is not a date"))
                })
                .transpose()
        };
        let (from, to) = match (date("date")?, date("start_date")?, date("end_date")?) {
            (Some(day), None, None) => (day, day),
            (None, Some(from), Some(to)) => (from, to),
            _ => return Err("give date, or start_date and end_date".into()),
        };
        // The server's normalization drops the terminal's defaults.
        let time = |name: &str, default: &str| -> Result<NaiveTime, String> {
            let text = query.get(name).map_or(default, String::as_str);
            NaiveTime::parse_from_str(text, "%H:%M:%S")
                .or_else(|_| NaiveTime::parse_from_str(text, "%H:%M:%S%.f"))
                .map_err(|_| format!("{name} {text:?} is not HH:MM:SS"))
        };
        Ok(GeneratedRequest {
            symbol,
            from,
            to,
            start: time("start_time", "09:30:00")?,
            end: time("end_time", "16:00:00")?,
        })
    }

    /// Every calendar date of the request (at most ten years: a range beyond is a mistake).
    fn dates(&self) -> Vec<NaiveDate> {
        self.from
            .iter_days()
            .take_while(|d| *d <= self.to)
            .take(3700)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thetadata::normalize_query;

    fn query(pairs: &[(&str, &str)]) -> Query {
        normalize_query(pairs.iter().copied())
    }

    #[test]
    fn the_body_has_the_recordings_shape_and_spellings() {
        let day = NaiveDate::from_ymd_opt(2024, 11, 15).unwrap();
        let body = minute_ohlc_body(
            "TSLA",
            &[day],
            NaiveTime::from_hms_opt(9, 30, 0).unwrap(),
            NaiveTime::from_hms_opt(9, 32, 0).unwrap(),
        );
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        let mut expected = vec![
            "volume",
            "high",
            "low",
            "vwap",
            "count",
            "close",
            "open",
            "timestamp",
        ];
        expected.sort_unstable();
        assert_eq!(
            keys, expected,
            "serde_json sorts keys; the names are the recording's"
        );
        assert!(body.starts_with("{\"volume\":["), "{body}");
        assert!(body.contains("\"open\":["), "{body}");
        assert!(
            body.ends_with(r#""timestamp":["2024-11-15T09:30:00","2024-11-15T09:31:00"]}"#),
            "{body}"
        );
        let high = body.split("\"high\":[").nth(1).unwrap();
        let first_high = high.split([',', ']']).next().unwrap();
        assert_eq!(
            first_high.split('.').nth(1).map(str::len),
            Some(3),
            "{body}"
        );
    }

    #[test]
    fn requests_by_date_and_by_range_give_the_same_bars() {
        let one = stock_minute_ohlc(&query(&[
            ("symbol", "spy"),
            ("date", "2024-11-15"),
            ("interval", "1m"),
            ("start_time", "04:00:00"),
            ("end_time", "20:00:00"),
        ]));
        let range = stock_minute_ohlc(&query(&[
            ("symbol", "SPY"),
            ("start_date", "20241115"),
            ("end_date", "20241117"),
            ("interval", "1m"),
            ("start_time", "04:00:00"),
            ("end_time", "20:00:00"),
        ]));
        assert_eq!(one.status, 200);
        assert_eq!(one.body, range.body, "the weekend adds nothing");
        let weekend = stock_minute_ohlc(&query(&[
            ("symbol", "SPY"),
            ("date", "20241116"),
            ("interval", "1m"),
        ]));
        assert_eq!(weekend.status, 472);
        let hourly = stock_minute_ohlc(&query(&[
            ("symbol", "SPY"),
            ("date", "20241115"),
            ("interval", "1h"),
        ]));
        assert_eq!(hourly.status, 400);
        assert!(String::from_utf8_lossy(&hourly.body).contains("interval"));
    }
}
