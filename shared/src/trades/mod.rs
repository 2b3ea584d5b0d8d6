//! Binance spot aggregate trades, kept one parquet file per UTC day
//! (`binance/crypto/tick/aggtrades/<SYMBOL>/<YYYY-MM-DD>.parquet`, `docs/BINANCE.md`).
//!
//! Unlike bars, a trade day is not a set of sessions: the market never closes and a day is
//! covered when its aggregate-trade ids run without a gap from the first trade at or after
//! 00:00 UTC to the one before the next day's first. Files record the ids they hold, so a
//! later fill resumes from the last id instead of refetching the day.

/// The largest id or time (milliseconds, or an archive's microseconds) the parsers take:
/// 2^53, the largest integer a JSON number holds exactly. Binance's ids are near 4·10^9 and
/// its times near 2·10^15 µs; anything larger is refused as malformed, so arithmetic on ids
/// and times (`id + 1`) never overflows.
pub const MAX_WIRE_INTEGER: i64 = 1 << 53;

/// One aggregate trade as Binance reports it (`GET /api/v3/aggTrades`), under its wire
/// names in the parquet (`T`, `a`, `p`, `q`, `f`, `l`, `m`, `M`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AggTrade {
    /// `T`: milliseconds since the Unix epoch, UTC.
    pub time: i64,
    /// `a`: the aggregate trade id; consecutive trades have consecutive ids.
    pub id: i64,
    /// `p`.
    pub price: f64,
    /// `q`.
    pub qty: f64,
    /// `f`: the first trade id aggregated.
    pub first_trade: i64,
    /// `l`: the last trade id aggregated.
    pub last_trade: i64,
    /// `m`: whether the buyer was the maker.
    pub buyer_maker: bool,
    /// `M`: whether the trade was the best price match.
    pub best_match: bool,
}

/// One end of a span of trades.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeBound {
    /// The trade with this aggregate id.
    Id(i64),
    /// The first trade at or after this instant (milliseconds since the epoch, UTC).
    Time(i64),
}

/// Trades from `from` (inclusive) until `until` (exclusive), as a fill asks a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TradeSpan {
    pub from: TradeBound,
    pub until: TradeBound,
}

/// What a provider returned for a span.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchedTrades {
    /// Ascending by id, each id once, every one inside the span.
    pub trades: Vec<AggTrade>,
    /// The id the span ends before, when it is known: `until` itself when it is an id, else
    /// the id of the first trade at or after `until`'s instant, when such a trade exists yet.
    /// A day whose last trade is `next_id - 1` ends where the next day begins.
    pub next_id: Option<i64>,
    /// Upstream requests made, retries included.
    pub requests: u32,
}

pub mod coverage;
pub mod file;

use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};

use crate::dataset::{DatasetError, RawFields};
use crate::format::PARQUET_SUFFIX;

/// The `datastyle` of trade requests and the folder their files live in.
pub const AGGTRADES_DATASTYLE: &str = "aggtrades";
/// The folder of every trade day: `<provider>/<asset>/<timespan>/<datastyle>`.
pub const TRADES_FOLDER: &str = "binance/crypto/tick/aggtrades";
/// The first day a request may name (Binance spot opened in July 2017).
pub const EARLIEST_DAY: NaiveDate = NaiveDate::from_ymd_opt(2017, 1, 1).expect("a date");
/// The last day a request may name.
pub const LATEST_DAY: NaiveDate = NaiveDate::from_ymd_opt(2099, 12, 31).expect("a date");
const MS_PER_DAY: i64 = 86_400_000;

fn bad(message: impl Into<String>) -> DatasetError {
    DatasetError(message.into())
}

/// A Binance symbol: `[A-Z0-9]{2,20}` (lower case is upper-cased).
pub fn normalize_symbol(text: &str) -> Result<String, DatasetError> {
    let upper = text.trim().to_ascii_uppercase();
    if !(2..=20).contains(&upper.len())
        || !upper
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        return Err(bad(format!(
            "symbol '{text}' is not a Binance spot symbol ([A-Z0-9]{{2,20}}, e.g. BTCUSDT)"
        )));
    }
    Ok(upper)
}

/// The milliseconds since the epoch of a UTC day's midnight.
pub fn day_start_ms(date: NaiveDate) -> i64 {
    Utc.from_utc_datetime(&date.and_time(chrono::NaiveTime::MIN))
        .timestamp_millis()
}

/// The UTC day an instant (milliseconds since the epoch) falls on.
pub fn day_of(ms: i64) -> NaiveDate {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.date_naive())
        .unwrap_or(NaiveDate::MIN)
}

/// One symbol's trades of one UTC day: one file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TradeDay {
    pub symbol: String,
    pub date: NaiveDate,
}

impl TradeDay {
    pub fn new(symbol: &str, date: NaiveDate) -> Result<Self, DatasetError> {
        if !(EARLIEST_DAY..=LATEST_DAY).contains(&date) {
            return Err(bad(format!(
                "{date} is outside {EARLIEST_DAY}..{LATEST_DAY}, the days trades are kept for"
            )));
        }
        Ok(TradeDay {
            symbol: normalize_symbol(symbol)?,
            date,
        })
    }

    /// `binance/crypto/tick/aggtrades/<SYMBOL>/<YYYY-MM-DD>.parquet`.
    pub fn relative_path(&self) -> String {
        format!(
            "{TRADES_FOLDER}/{}/{}{PARQUET_SUFFIX}",
            self.symbol, self.date
        )
    }

    /// The day a path names, when it names one exactly.
    pub fn parse_relative(path: &str) -> Option<TradeDay> {
        let rest = path.strip_prefix(TRADES_FOLDER)?.strip_prefix('/')?;
        let (symbol, file) = rest.split_once('/')?;
        let date = file.strip_suffix(PARQUET_SUFFIX)?;
        let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
        let day = TradeDay::new(symbol, date).ok()?;
        (day.relative_path() == path).then_some(day)
    }

    /// 00:00 of the day, in milliseconds since the epoch.
    pub fn start_ms(&self) -> i64 {
        day_start_ms(self.date)
    }

    /// 00:00 of the next day (exclusive end).
    pub fn end_ms(&self) -> i64 {
        self.start_ms() + MS_PER_DAY
    }

    /// The day after.
    pub fn next(&self) -> TradeDay {
        TradeDay {
            symbol: self.symbol.clone(),
            date: self.date + Days::new(1),
        }
    }
}

/// Trades of one symbol wanted over `[start, end)` (milliseconds since the epoch, UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradesRequest {
    pub symbol: String,
    pub start: i64,
    pub end: i64,
}

const TRADES_FIELDS: [&str; 7] = [
    "provider",
    "asset_type",
    "symbol",
    "timespan",
    "datastyle",
    "start",
    "end",
];

/// An instant as a request gives it: RFC 3339, or a date meaning its 00:00 UTC (an `end`
/// date includes its whole day: the next midnight).
fn parse_instant(name: &str, text: &str) -> Result<i64, DatasetError> {
    if text.len() == 10 {
        let date = crate::dataset::parse_date(name, text)?;
        let date = if name == "end" {
            date + Days::new(1)
        } else {
            date
        };
        return Ok(day_start_ms(date));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            bad(format!(
                "{name} '{text}' is neither a date (YYYY-MM-DD) nor an RFC 3339 instant (2025-11-07T00:00:00Z)"
            ))
        })
}

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

impl TradesRequest {
    pub fn new(symbol: &str, start: i64, end: i64) -> Result<Self, DatasetError> {
        if start >= end {
            return Err(bad(format!(
                "start {} is not before end {} (end is exclusive)",
                rfc3339(start),
                rfc3339(end)
            )));
        }
        for (name, ms) in [("start", start), ("end", end - 1)] {
            let day = day_of(ms);
            if !(EARLIEST_DAY..=LATEST_DAY).contains(&day) {
                return Err(bad(format!(
                    "{name} {} is outside {EARLIEST_DAY}..{LATEST_DAY}, the days trades are kept for",
                    rfc3339(ms)
                )));
            }
        }
        Ok(TradesRequest {
            symbol: normalize_symbol(symbol)?,
            start,
            end,
        })
    }

    /// `{"provider":"binance","asset_type":"crypto","symbol","timespan":"tick",
    /// "datastyle":"aggtrades","start","end"}`; `timespan` may be left out.
    pub fn from_fields(fields: &RawFields<'_>) -> Result<Self, DatasetError> {
        if let Some(unknown) = fields.names().find(|n| !TRADES_FIELDS.contains(n)) {
            return Err(bad(format!(
                "unknown field '{unknown}' for a trades request (expected: {})",
                TRADES_FIELDS.join(", ")
            )));
        }
        let expect = |name: &str, want: &str, required: bool| -> Result<(), DatasetError> {
            match fields.string(name)? {
                Some(v) if v.trim().eq_ignore_ascii_case(want) => Ok(()),
                None if !required => Ok(()),
                None => Err(bad(format!("{name} is required (\"{want}\")"))),
                Some(v) => Err(bad(format!(
                    "{name} '{v}' does not go with datastyle '{AGGTRADES_DATASTYLE}' (expected '{want}')"
                ))),
            }
        };
        expect("provider", "binance", true)?;
        expect("asset_type", "crypto", true)?;
        expect("timespan", "tick", false)?;
        let symbol = fields.required_string("symbol")?;
        let start = parse_instant("start", &fields.required_string("start")?)?;
        let end = parse_instant("end", &fields.required_string("end")?)?;
        TradesRequest::new(&symbol, start, end)
    }

    pub fn to_json(&self) -> String {
        serde_json::json!({
            "provider": "binance",
            "asset_type": "crypto",
            "symbol": self.symbol,
            "timespan": "tick",
            "datastyle": AGGTRADES_DATASTYLE,
            "start": rfc3339(self.start),
            "end": rfc3339(self.end),
        })
        .to_string()
    }

    /// The days of the range that have begun at `now` (ms): the days a fill fills and an
    /// answer lists (a day after the present has no trades to keep yet).
    pub fn days_begun(&self, now: i64) -> Vec<TradeDay> {
        self.days()
            .into_iter()
            .filter(|d| d.start_ms() <= now)
            .collect()
    }

    /// Where the range's trades can end at `now`: its end, or the present when that is
    /// earlier.
    pub fn reach(&self, now: i64) -> i64 {
        self.end.min(now)
    }

    /// The days the range touches, in order.
    pub fn days(&self) -> Vec<TradeDay> {
        let mut out = Vec::new();
        let mut date = day_of(self.start);
        let last = day_of(self.end - 1);
        while date <= last {
            out.push(TradeDay {
                symbol: self.symbol.clone(),
                date,
            });
            date = date + Days::new(1);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_paths_are_strict_and_parse_back() {
        let day = TradeDay::new("btcusdt", "2025-11-07".parse().unwrap()).unwrap();
        let path = day.relative_path();
        assert_eq!(
            path,
            "binance/crypto/tick/aggtrades/BTCUSDT/2025-11-07.parquet"
        );
        assert_eq!(TradeDay::parse_relative(&path), Some(day.clone()));
        for wrong in [
            "binance/crypto/tick/aggtrades/btcusdt/2025-11-07.parquet",
            "binance/crypto/tick/aggtrades/BTCUSDT/2025-11-7.parquet",
            "binance/crypto/tick/aggtrades/BTC-USDT/2025-11-07.parquet",
            "binance/crypto/tick/aggtrades/B/2025-11-07.parquet",
            "binance/crypto/tick/aggtrades/BTCUSDT/2025-11-07.parquet.meta.json",
            "binance/crypto/tick/aggtrades/BTCUSDT/x/2025-11-07.parquet",
            "binance/crypto/tick/aggtrades/BTCUSDT/2016-11-07.parquet",
        ] {
            assert_eq!(TradeDay::parse_relative(wrong), None, "{wrong}");
        }
        assert_eq!(day.end_ms() - day.start_ms(), MS_PER_DAY);
        assert_eq!(day.start_ms(), 1_762_473_600_000);
    }

    #[test]
    fn requests_parse_strictly_and_name_their_days() {
        let json = r#"{"provider":"binance","asset_type":"crypto","symbol":"btcusdt","timespan":"tick","datastyle":"aggtrades","start":"2025-11-07T22:00:00Z","end":"2025-11-09"}"#;
        let request = TradesRequest::from_fields(&RawFields::parse(json).unwrap()).unwrap();
        assert_eq!(request.symbol, "BTCUSDT");
        let days: Vec<String> = request.days().iter().map(|d| d.date.to_string()).collect();
        assert_eq!(days, ["2025-11-07", "2025-11-08", "2025-11-09"]);
        let again = TradesRequest::from_fields(&RawFields::parse(&request.to_json()).unwrap());
        assert_eq!(again.unwrap(), request);
        // An end at midnight excludes the day it starts.
        let cut = TradesRequest::new("ETHUSDT", 1_762_473_600_000, 1_762_560_000_000).unwrap();
        assert_eq!(cut.days().len(), 1);
        for (body, needle) in [
            (
                r#"{"provider":"polygon","asset_type":"crypto","symbol":"BTCUSDT","datastyle":"aggtrades","start":"2025-11-07","end":"2025-11-08"}"#,
                "provider",
            ),
            (
                r#"{"provider":"binance","asset_type":"stock","symbol":"BTCUSDT","datastyle":"aggtrades","start":"2025-11-07","end":"2025-11-08"}"#,
                "asset_type",
            ),
            (
                r#"{"provider":"binance","asset_type":"crypto","symbol":"BTC/USDT","datastyle":"aggtrades","start":"2025-11-07","end":"2025-11-08"}"#,
                "symbol",
            ),
            (
                r#"{"provider":"binance","asset_type":"crypto","symbol":"BTCUSDT","datastyle":"aggtrades","start":"2025-11-08","end":"2025-11-07"}"#,
                "not before",
            ),
            (
                r#"{"provider":"binance","asset_type":"crypto","symbol":"BTCUSDT","datastyle":"aggtrades","start":"yesterday","end":"2025-11-07"}"#,
                "start",
            ),
            (
                r#"{"provider":"binance","asset_type":"crypto","symbol":"BTCUSDT","datastyle":"aggtrades","start":"2025-11-07","end":"2025-11-08","strike":1}"#,
                "strike",
            ),
        ] {
            let err = TradesRequest::from_fields(&RawFields::parse(body).unwrap()).unwrap_err();
            assert!(err.0.contains(needle), "{body}: {err}");
        }
    }
}
