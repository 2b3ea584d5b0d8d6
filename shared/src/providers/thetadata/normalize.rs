//! From a parsed response to the rows of `docs/FORMAT.md`.
//!
//! - Intraday timestamps are New York wall-clock without offset (`2024-01-05T09:30:00`,
//!   sometimes `.SSS`, v2 `date` + `ms_of_day`); they become UTC nanoseconds of the bar's
//!   open. A timestamp with an explicit offset (`Z`, `-05:00`) is taken as that instant.
//! - End-of-day rows carry no session field: the session is the date of `created` (then
//!   `last_trade`, `timestamp`, v2 `date`), as lumibot reads it.
//! - All rows are delivered, empty bars included: [`crate::codec::rows::rows_to_batch`]
//!   applies the row rules once for every provider.
//! - Missing optional fields are nulls; a missing required field is an error naming it;
//!   option rows naming another contract than the one asked for are an error.

use chrono::{NaiveDate, NaiveTime};

use super::parse::{self, Field, ParseError, RowSink, Scalar};
use crate::calendar;
use crate::codec::schema::Layout;
use crate::codec::{EodBar, OhlcBar, QuoteBar, Rows};
use crate::dataset::{Dataset, Right};

const DAY_NS: i64 = 86_400_000_000_000;
/// Days from 0001-01-01 (chrono's day 1) to 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i64 = 719_163;

/// Parse and normalize a response body for `dataset`.
pub fn normalize(dataset: &Dataset, body: &[u8]) -> Result<Rows, ParseError> {
    let contract = ContractCheck::of(dataset);
    let estimate = body.len() / 100;
    match Layout::of(dataset) {
        Layout::IntradayOhlc => {
            let mut sink = IntradaySink::<OhlcBar>::new(estimate, contract);
            let rows = parse::parse(body, &mut sink)?;
            sink.finish(rows).map(Rows::Ohlc)
        }
        Layout::IntradayQuote => {
            let mut sink = IntradaySink::<QuoteBar>::new(estimate, contract);
            let rows = parse::parse(body, &mut sink)?;
            sink.finish(rows).map(Rows::Quote)
        }
        layout @ (Layout::DayOhlc | Layout::DayQuote) => {
            let mut sink = EodSink {
                table: Table::with_capacity(estimate / 4),
                contract,
                required: if layout == Layout::DayOhlc {
                    &[Field::Open, Field::High, Field::Low, Field::Close]
                } else {
                    &[Field::Bid, Field::Ask]
                },
            };
            let rows = parse::parse(body, &mut sink)?;
            sink.finish(rows).map(Rows::Eod)
        }
        Layout::Aggs => Err(content(format!(
            "{dataset} is kept in Polygon's layout, which ThetaData does not answer"
        ))),
    }
}

fn content(message: String) -> ParseError {
    ParseError::Content(message)
}

/// A New York wall-clock (or explicit-offset) timestamp, split into calendar day and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Days since 1970-01-01.
    pub days: i64,
    /// Nanoseconds since midnight.
    pub nanos: i64,
    /// Seconds east of UTC when the text carried an offset.
    pub offset_seconds: Option<i64>,
}

impl Stamp {
    pub fn date(&self) -> Option<NaiveDate> {
        date_of_days(self.days)
    }
}

fn date_of_days(days: i64) -> Option<NaiveDate> {
    i32::try_from(days + UNIX_EPOCH_DAYS_FROM_CE)
        .ok()
        .and_then(NaiveDate::from_num_days_from_ce_opt)
}

fn digits(bytes: &[u8]) -> Option<i64> {
    let mut value: i64 = 0;
    for b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i64::from(b - b'0');
    }
    Some(value)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        _ => 28,
    }
}

/// `YYYY-MM-DD` (or `YYYYMMDD`) at the start of `text`, as days since 1970-01-01.
fn parse_date_prefix(text: &[u8]) -> Option<(i64, usize)> {
    let (y, m, d, len) = if text.len() >= 10 && text[4] == b'-' && text[7] == b'-' {
        (&text[0..4], &text[5..7], &text[8..10], 10)
    } else if text.len() >= 8 && text[..8].iter().all(u8::is_ascii_digit) {
        (&text[0..4], &text[4..6], &text[6..8], 8)
    } else {
        return None;
    };
    let (year, month, day) = (digits(y)?, digits(m)?, digits(d)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    Some((days_from_civil(year, month, day), len))
}

/// Parse `YYYY-MM-DDTHH:MM:SS[.fraction][Z|±HH:MM]` (a space may replace the `T`).
pub fn parse_stamp(text: &str) -> Option<Stamp> {
    let b = text.as_bytes();
    let padded = |c: Option<&u8>| c.is_some_and(u8::is_ascii_whitespace);
    let b = if padded(b.first()) || padded(b.last()) {
        text.trim().as_bytes()
    } else {
        b
    };
    let (days, len) = parse_date_prefix(b)?;
    if len != 10 {
        return None;
    }
    parse_time_of_day(&b[10..], days)
}

/// The part of a timestamp after its `YYYY-MM-DD` date of `days`:
/// `THH:MM:SS[.fraction][Z|±HH:MM]` (a space may replace the `T`).
fn parse_time_of_day(b: &[u8], days: i64) -> Option<Stamp> {
    if b.len() < 9 || !matches!(b[0], b'T' | b' ') || b[3] != b':' || b[6] != b':' {
        return None;
    }
    let (hour, minute, second) = (digits(&b[1..3])?, digits(&b[4..6])?, digits(&b[7..9])?);
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut nanos = ((hour * 60 + minute) * 60 + second) * 1_000_000_000;
    let mut rest = &b[9..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        let kept = &fraction[..n.min(9)];
        nanos += digits(kept)? * 10_i64.pow(9 - kept.len() as u32);
        rest = &fraction[n..];
    }
    let offset_seconds = match rest {
        [] => None,
        [b'Z'] | [b'z'] => Some(0),
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = digits(&[*h1, *h2])?;
            let minutes = digits(&[*m1, *m2])?;
            let seconds = hours * 3600 + minutes * 60;
            Some(if *sign == b'-' { -seconds } else { seconds })
        }
        _ => return None,
    };
    Some(Stamp {
        days,
        nanos,
        offset_seconds,
    })
}

/// Converts New York wall-clock times to UTC. The offset is looked up once per calendar
/// day; days with a DST switch (always Sundays, so never sessions) take the exact path.
#[derive(Debug)]
pub struct NyClock {
    day: i64,
    /// UTC minus wall clock, in nanoseconds, valid all day when `uniform`.
    shift: i64,
    uniform: bool,
}

impl Default for NyClock {
    fn default() -> Self {
        NyClock {
            day: i64::MIN,
            shift: 0,
            uniform: false,
        }
    }
}

impl NyClock {
    /// UTC nanoseconds of a stamp; `None` outside the representable range.
    pub fn utc_nanos(&mut self, stamp: Stamp) -> Option<i64> {
        let local = stamp.days.checked_mul(DAY_NS)?.checked_add(stamp.nanos)?;
        if let Some(offset) = stamp.offset_seconds {
            return local.checked_sub(offset * 1_000_000_000);
        }
        if stamp.days != self.day {
            self.load(stamp.days)?;
        }
        if self.uniform {
            return local.checked_add(self.shift);
        }
        let date = stamp.date()?;
        let time = NaiveTime::from_num_seconds_from_midnight_opt(
            (stamp.nanos / 1_000_000_000) as u32,
            (stamp.nanos % 1_000_000_000) as u32,
        )?;
        calendar::ny_wall_to_utc(date, time).timestamp_nanos_opt()
    }

    fn load(&mut self, days: i64) -> Option<()> {
        let date = date_of_days(days)?;
        let local_midnight = days.checked_mul(DAY_NS)?;
        let shift_at = |time: NaiveTime, local: i64| {
            calendar::ny_wall_to_utc(date, time)
                .timestamp_nanos_opt()
                .map(|utc| utc - local)
        };
        let first = shift_at(NaiveTime::MIN, local_midnight)?;
        let last_local = local_midnight + DAY_NS - 1_000_000_000;
        let last = shift_at(NaiveTime::from_hms_opt(23, 59, 59)?, last_local)?;
        self.day = days;
        self.shift = first;
        self.uniform = first == last;
        Some(())
    }
}

fn not_a(kind: &str, field: Field, value: Scalar<'_>) -> String {
    match value {
        Scalar::Str(s) => format!("'{field}' is not {kind}: {s:?}"),
        other => format!("'{field}' is not {kind}: {other:?}"),
    }
}

/// A number cell. JSON numbers take the inlined path (most cells of a response); other
/// spellings go to [`float_of_any`].
#[inline(always)]
fn float(field: Field, value: Scalar<'_>) -> Result<Option<f64>, String> {
    match value {
        Scalar::Float(f) => Ok(Some(f)),
        Scalar::Int(i) => Ok(Some(i as f64)),
        Scalar::Null => Ok(None),
        other => float_of_any(field, other),
    }
}

/// Every spelling of a number cell: JSON numbers, numeric text, empty text (null).
#[cold]
fn float_of_any(field: Field, value: Scalar<'_>) -> Result<Option<f64>, String> {
    match value {
        Scalar::Float(f) => Ok(Some(f)),
        Scalar::Int(i) => Ok(Some(i as f64)),
        Scalar::Null => Ok(None),
        Scalar::Str(s) if s.trim().is_empty() => Ok(None),
        Scalar::Str(s) => s
            .trim()
            .parse::<f64>()
            .map(Some)
            .map_err(|_| not_a("a number", field, value)),
        Scalar::Bool(_) => Err(not_a("a number", field, value)),
    }
}

/// A whole-number cell; see [`float`].
#[inline(always)]
fn int(field: Field, value: Scalar<'_>) -> Result<Option<i64>, String> {
    match value {
        Scalar::Int(i) => Ok(Some(i)),
        Scalar::Null => Ok(None),
        other => int_of_any(field, other),
    }
}

/// Every spelling of a whole-number cell: integers, whole floats (`12.0`), numeric text.
#[cold]
fn int_of_any(field: Field, value: Scalar<'_>) -> Result<Option<i64>, String> {
    let whole = |f: f64| {
        if f.fract() == 0.0 && f.abs() < 9.0e18 {
            Ok(Some(f as i64))
        } else {
            Err(not_a("a whole number", field, value))
        }
    };
    match value {
        Scalar::Int(i) => Ok(Some(i)),
        Scalar::Float(f) => whole(f),
        Scalar::Null => Ok(None),
        Scalar::Str(s) if s.trim().is_empty() => Ok(None),
        Scalar::Str(s) => match s.trim().parse::<i64>() {
            Ok(i) => Ok(Some(i)),
            Err(_) => s
                .trim()
                .parse::<f64>()
                .map_err(|_| not_a("a whole number", field, value))
                .and_then(whole),
        },
        Scalar::Bool(_) => Err(not_a("a whole number", field, value)),
    }
}

fn text(field: Field, value: Scalar<'_>) -> Result<Option<String>, String> {
    match value {
        Scalar::Str(s) => Ok(Some(s.to_string())),
        Scalar::Null => Ok(None),
        other => Err(not_a("text", field, other)),
    }
}

fn stamp(field: Field, value: Scalar<'_>) -> Result<Option<Stamp>, String> {
    match value {
        Scalar::Null => Ok(None),
        Scalar::Str(s) => match parse_stamp(s) {
            Some(stamp) => Ok(Some(stamp)),
            None if s.trim().is_empty() => Ok(None),
            None => Err(not_a("a timestamp (YYYY-MM-DDTHH:MM:SS)", field, value)),
        },
        other => Err(not_a("a timestamp (YYYY-MM-DDTHH:MM:SS)", field, other)),
    }
}

/// A session date: `20240105` (number or text) or `2024-01-05`.
fn date_value(field: Field, value: Scalar<'_>) -> Result<Option<i64>, String> {
    let from_text = |s: &str| {
        let s = s.trim();
        parse_date_prefix(s.as_bytes())
            .filter(|(_, len)| *len == s.len())
            .map(|(days, _)| days)
    };
    match value {
        Scalar::Null => Ok(None),
        Scalar::Int(i) => from_text(&i.to_string())
            .map(Some)
            .ok_or_else(|| not_a("a date", field, value)),
        Scalar::Str(s) => from_text(s)
            .map(Some)
            .ok_or_else(|| not_a("a date", field, value)),
        other => Err(not_a("a date", field, other)),
    }
}

/// The option contract rows must belong to (where the terminal names it).
#[derive(Debug, Clone)]
pub struct ContractCheck {
    symbols: Vec<String>,
    expiration_days: i64,
    strike: f64,
    right: Right,
}

impl ContractCheck {
    pub fn of(dataset: &Dataset) -> Option<ContractCheck> {
        let contract = dataset.contract.as_ref()?;
        let exp = contract.expiration;
        let mut symbols = vec![dataset.symbol.clone()];
        let root = super::request::option_root(dataset);
        if root != dataset.symbol {
            symbols.push(root);
        }
        Some(ContractCheck {
            symbols,
            expiration_days: (exp - NaiveDate::from_ymd_opt(1970, 1, 1)?).num_days(),
            strike: contract.strike.value(),
            right: contract.right,
        })
    }

    fn check(&self, field: Field, value: Scalar<'_>) -> Result<(), String> {
        let ok = match (field, value) {
            (_, Scalar::Null) => true,
            (Field::Symbol, Scalar::Str(s)) => self
                .symbols
                .iter()
                .any(|x| x.eq_ignore_ascii_case(s.trim())),
            (Field::Expiration, _) => date_value(field, value)? == Some(self.expiration_days),
            (Field::Strike, _) => match float(field, value)? {
                // v2 terminals count strikes in tenths of a cent.
                Some(x) => {
                    (x - self.strike).abs() < 1e-6 || (x - self.strike * 1000.0).abs() < 1e-3
                }
                None => true,
            },
            (Field::Right, Scalar::Str(s)) => match s.trim().as_bytes().first() {
                Some(b'C' | b'c') => self.right == Right::Call,
                Some(b'P' | b'p') => self.right == Right::Put,
                _ => false,
            },
            (Field::Symbol | Field::Right, _) => false,
            _ => true,
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "the terminal answered for another contract ({field} {value:?}), not {} {} {} {}",
                self.symbols.join("/"),
                date_of_days(self.expiration_days).map_or_else(String::new, |d| d.to_string()),
                self.strike,
                self.right.as_str()
            ))
        }
    }
}

/// Rows being assembled in response order, with the fields each row has received.
#[derive(Debug)]
struct Table<R> {
    rows: Vec<R>,
    seen: Vec<u32>,
}

impl<R: Default> Table<R> {
    fn with_capacity(n: usize) -> Self {
        Table {
            rows: Vec::with_capacity(n),
            seen: Vec::with_capacity(n),
        }
    }

    #[inline(always)]
    fn at(&mut self, row: usize, field: Field) -> &mut R {
        if row == self.rows.len() {
            self.rows.push(R::default());
            self.seen.push(0);
        } else if row > self.rows.len() {
            self.rows.resize_with(row + 1, R::default);
            self.seen.resize(row + 1, 0);
        }
        self.seen[row] |= field.bit();
        &mut self.rows[row]
    }

    /// Size the table to `rows` and check every row has one of each group of `required`.
    fn check(&mut self, rows: usize, required: &[&[Field]]) -> Result<(), ParseError> {
        if self.rows.len() < rows {
            self.rows.resize_with(rows, R::default);
            self.seen.resize(rows, 0);
        }
        for group in required {
            let mask = group.iter().fold(0, |m, f| m | f.bit());
            let Some(row) = self.seen.iter().position(|s| s & mask == 0) else {
                continue;
            };
            let names = group
                .iter()
                .map(|f| format!("'{f}'"))
                .collect::<Vec<_>>()
                .join(" or ");
            let nowhere = self.seen.iter().all(|s| s & mask == 0);
            return Err(content(if nowhere {
                format!("the response has no {names} field")
            } else {
                format!("row {row} of the response has no {names}")
            }));
        }
        Ok(())
    }
}

/// Bar times of intraday rows: a `timestamp`, or v2's `date` plus `ms_of_day`.
#[derive(Debug, Default)]
struct Times {
    clock: NyClock,
    /// The `YYYY-MM-DD` text of the last timestamp and its day: the rows of a response share
    /// a few days, so each day's date is parsed once.
    last_day: Option<([u8; 10], i64)>,
    /// v2 (date days, ms of day) per row, allocated when a v2 field appears.
    v2: Vec<(Option<i64>, Option<i64>)>,
}

impl Times {
    fn v2_at(&mut self, row: usize) -> &mut (Option<i64>, Option<i64>) {
        if row >= self.v2.len() {
            self.v2.resize(row + 1, (None, None));
        }
        &mut self.v2[row]
    }

    /// A timestamp on the same day as the last one, without parsing its date again.
    #[inline]
    fn same_day_stamp(&self, text: &[u8]) -> Option<Stamp> {
        let (day_text, days) = self.last_day.as_ref()?;
        if text.get(..10)? == day_text.as_slice() {
            parse_time_of_day(&text[10..], *days)
        } else {
            None
        }
    }

    /// Set `time` from the raw text of a timestamp on the same day as the last one;
    /// `false` when the text needs [`Times::set`].
    #[inline(always)]
    fn set_same_day(&mut self, time: &mut i64, text: &[u8]) -> bool {
        match self
            .same_day_stamp(text)
            .and_then(|stamp| self.clock.utc_nanos(stamp))
        {
            Some(nanos) => {
                *time = nanos;
                true
            }
            None => false,
        }
    }

    /// Set `time` from a timestamp cell; `Ok(false)` when the cell is null.
    fn set(&mut self, time: &mut i64, field: Field, value: Scalar<'_>) -> Result<bool, String> {
        let known = match value {
            Scalar::Str(text) => self.same_day_stamp(text.as_bytes()),
            _ => None,
        };
        let stamp = match known {
            Some(stamp) => stamp,
            None => {
                let Some(stamp) = stamp(field, value)? else {
                    return Ok(false);
                };
                if let Scalar::Str(text) = value
                    && let Some(day_text) = text.as_bytes().get(..10)
                    && parse_date_prefix(day_text) == Some((stamp.days, 10))
                {
                    self.last_day = Some((day_text.try_into().expect("ten bytes"), stamp.days));
                }
                stamp
            }
        };
        *time = self
            .clock
            .utc_nanos(stamp)
            .ok_or_else(|| not_a("a timestamp in range", field, value))?;
        Ok(true)
    }

    /// Check every row has a time, and set the times of rows that had only v2 fields.
    fn finish<R: Timed>(&mut self, table: &mut Table<R>) -> Result<(), ParseError> {
        let both = Field::Date.bit() | Field::MsOfDay.bit();
        let timeless = |s: &u32| s & Field::Timestamp.bit() == 0 && s & both != both;
        if let Some(row) = table.seen.iter().position(timeless) {
            return Err(content(if table.seen.iter().all(timeless) {
                "the response has no 'timestamp' field".into()
            } else {
                format!("row {row} of the response has no 'timestamp'")
            }));
        }
        for (row, (bar, seen)) in table.rows.iter_mut().zip(&table.seen).enumerate() {
            if seen & Field::Timestamp.bit() != 0 {
                continue;
            }
            let Some(&(Some(days), Some(ms))) = self.v2.get(row) else {
                return Err(content(format!(
                    "row {row} of the response has no usable 'date' and 'ms_of_day'"
                )));
            };
            let stamp = Stamp {
                days,
                nanos: ms * 1_000_000,
                offset_seconds: None,
            };
            *bar.time_mut() = self.clock.utc_nanos(stamp).ok_or_else(|| {
                content(format!("row {row}: date and ms_of_day are out of range"))
            })?;
        }
        Ok(())
    }
}

/// Intraday rows, stamped at bar open: the fields of one bar kind, and which must be present.
trait Timed: Default {
    fn time_mut(&mut self) -> &mut i64;
    /// Sets `field` when it is one of this kind's values; ignores any other field.
    fn set(&mut self, field: Field, value: Scalar<'_>) -> Result<(), String>;
    /// Fields every row must have (beyond its timestamp); one of each group suffices.
    const REQUIRED: &'static [&'static [Field]];
}

impl Timed for OhlcBar {
    fn time_mut(&mut self) -> &mut i64 {
        &mut self.time
    }

    #[inline(always)]
    fn set(&mut self, field: Field, value: Scalar<'_>) -> Result<(), String> {
        match field {
            Field::Open => self.open = float(field, value)?,
            Field::High => self.high = float(field, value)?,
            Field::Low => self.low = float(field, value)?,
            Field::Close => self.close = float(field, value)?,
            Field::Vwap => self.vwap = float(field, value)?,
            Field::Volume => self.volume = int(field, value)?,
            Field::Count => self.count = int(field, value)?,
            _ => {}
        }
        Ok(())
    }

    const REQUIRED: &'static [&'static [Field]] = &[
        &[Field::Open],
        &[Field::High],
        &[Field::Low],
        &[Field::Close],
    ];
}

impl Timed for QuoteBar {
    fn time_mut(&mut self) -> &mut i64 {
        &mut self.time
    }

    #[inline(always)]
    fn set(&mut self, field: Field, value: Scalar<'_>) -> Result<(), String> {
        match field {
            Field::Bid => self.bid = float(field, value)?,
            Field::Ask => self.ask = float(field, value)?,
            Field::BidSize => self.bid_size = int(field, value)?,
            Field::AskSize => self.ask_size = int(field, value)?,
            Field::BidExchange => self.bid_exchange = int(field, value)?,
            Field::AskExchange => self.ask_exchange = int(field, value)?,
            Field::BidCondition => self.bid_condition = int(field, value)?,
            Field::AskCondition => self.ask_condition = int(field, value)?,
            _ => {}
        }
        Ok(())
    }

    const REQUIRED: &'static [&'static [Field]] = &[&[Field::Bid], &[Field::Ask]];
}

/// Collects intraday bars of one kind: timestamps (v3 text or v2 date + ms of day), the
/// kind's values, and the contract's fields checked against the dataset.
struct IntradaySink<B> {
    table: Table<B>,
    times: Times,
    contract: Option<ContractCheck>,
}

impl<B: Timed> IntradaySink<B> {
    fn new(capacity: usize, contract: Option<ContractCheck>) -> Self {
        IntradaySink {
            table: Table::with_capacity(capacity),
            times: Times::default(),
            contract,
        }
    }

    fn finish(mut self, rows: usize) -> Result<Vec<B>, ParseError> {
        self.table.check(rows, &[])?;
        self.times.finish(&mut self.table)?;
        self.table.check(rows, B::REQUIRED)?;
        Ok(self.table.rows)
    }
}

impl<B: Timed> RowSink for IntradaySink<B> {
    #[inline(always)]
    fn value(&mut self, row: usize, field: Field, value: Scalar<'_>) -> Result<(), String> {
        match field {
            Field::Timestamp => {
                let bar = self.table.at(row, field);
                if !self.times.set(bar.time_mut(), field, value)? {
                    self.table.seen[row] &= !field.bit();
                }
            }
            Field::Date => {
                self.table.at(row, field);
                self.times.v2_at(row).0 = date_value(field, value)?;
            }
            Field::MsOfDay => {
                self.table.at(row, field);
                self.times.v2_at(row).1 = int(field, value)?;
            }
            Field::Symbol | Field::Expiration | Field::Strike | Field::Right => {
                self.contract(field, value)?;
            }
            // A field of another kind is ignored by `set`.
            _ => {
                self.table.at(row, field).set(field, value)?;
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn raw_text(&mut self, row: usize, field: Field, text: &[u8]) -> bool {
        field == Field::Timestamp && {
            let bar = self.table.at(row, field);
            self.times.set_same_day(bar.time_mut(), text)
        }
    }

    fn contract(&mut self, field: Field, value: Scalar<'_>) -> Result<(), String> {
        match &self.contract {
            Some(c) => c.check(field, value),
            None => Ok(()),
        }
    }
}

/// An end-of-day row and the dates its fields imply, best first.
#[derive(Debug, Default)]
struct EodRow {
    bar: EodBar,
    created: Option<i64>,
    last_trade: Option<i64>,
    timestamp: Option<i64>,
    date: Option<i64>,
}

struct EodSink {
    table: Table<EodRow>,
    contract: Option<ContractCheck>,
    required: &'static [Field],
}

fn date_of_stamp(field: Field, value: Scalar<'_>) -> Result<Option<i64>, String> {
    Ok(stamp(field, value)?.map(|s| s.days))
}

impl RowSink for EodSink {
    fn value(&mut self, row: usize, field: Field, value: Scalar<'_>) -> Result<(), String> {
        match field {
            Field::Created => {
                let days = date_of_stamp(field, value)?;
                let r = self.table.at(row, field);
                r.created = days;
                r.bar.created = text(field, value)?;
            }
            Field::LastTrade => {
                let days = date_of_stamp(field, value)?;
                let r = self.table.at(row, field);
                r.last_trade = days;
                r.bar.last_trade = text(field, value)?;
            }
            Field::Timestamp => self.table.at(row, field).timestamp = date_of_stamp(field, value)?,
            Field::Date => self.table.at(row, field).date = date_value(field, value)?,
            Field::Open => self.table.at(row, field).bar.open = float(field, value)?,
            Field::High => self.table.at(row, field).bar.high = float(field, value)?,
            Field::Low => self.table.at(row, field).bar.low = float(field, value)?,
            Field::Close => self.table.at(row, field).bar.close = float(field, value)?,
            Field::Volume => self.table.at(row, field).bar.volume = int(field, value)?,
            Field::Count => self.table.at(row, field).bar.count = int(field, value)?,
            Field::Bid => self.table.at(row, field).bar.bid = float(field, value)?,
            Field::Ask => self.table.at(row, field).bar.ask = float(field, value)?,
            Field::BidSize => self.table.at(row, field).bar.bid_size = int(field, value)?,
            Field::AskSize => self.table.at(row, field).bar.ask_size = int(field, value)?,
            Field::BidExchange => self.table.at(row, field).bar.bid_exchange = int(field, value)?,
            Field::AskExchange => self.table.at(row, field).bar.ask_exchange = int(field, value)?,
            Field::BidCondition => self.table.at(row, field).bar.bid_condition = int(field, value)?,
            Field::AskCondition => self.table.at(row, field).bar.ask_condition = int(field, value)?,
            Field::Symbol | Field::Expiration | Field::Strike | Field::Right => {
                if let Some(c) = &self.contract {
                    c.check(field, value)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn contract(&mut self, field: Field, value: Scalar<'_>) -> Result<(), String> {
        match &self.contract {
            Some(c) => c.check(field, value),
            None => Ok(()),
        }
    }
}

impl EodSink {
    fn finish(mut self, rows: usize) -> Result<Vec<EodBar>, ParseError> {
        self.table.check(
            rows,
            &[&[
                Field::Created,
                Field::LastTrade,
                Field::Timestamp,
                Field::Date,
            ]],
        )?;
        let required: Vec<&[Field]> = self.required.iter().map(std::slice::from_ref).collect();
        self.table.check(rows, &required)?;
        self.table
            .rows
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let days = r.created.or(r.last_trade).or(r.timestamp).or(r.date);
                let session = days.and_then(date_of_days).ok_or_else(|| {
                    content(format!(
                        "row {i} of the response has no usable 'created' date (nor last_trade, timestamp or date)"
                    ))
                })?;
                Ok(EodBar { session, ..r.bar })
            })
            .collect()
    }
}

/// One column of a listing (`/v3/option/list/...`).
struct ListSink<T> {
    field: Field,
    values: Vec<Option<T>>,
    convert: fn(Field, Scalar<'_>) -> Result<Option<T>, String>,
}

impl<T: Clone> RowSink for ListSink<T> {
    fn value(&mut self, row: usize, field: Field, value: Scalar<'_>) -> Result<(), String> {
        if field == self.field {
            if row >= self.values.len() {
                self.values.resize(row + 1, None);
            }
            self.values[row] = (self.convert)(field, value)?;
        }
        Ok(())
    }

    fn contract(&mut self, _field: Field, _value: Scalar<'_>) -> Result<(), String> {
        Ok(())
    }
}

fn list<T: Clone>(
    body: &[u8],
    field: Field,
    convert: fn(Field, Scalar<'_>) -> Result<Option<T>, String>,
) -> Result<Vec<T>, ParseError> {
    let mut sink = ListSink {
        field,
        values: Vec::new(),
        convert,
    };
    let rows = parse::parse(body, &mut sink)?;
    if rows > 0 && sink.values.is_empty() {
        return Err(content(format!("the response has no '{field}' field")));
    }
    Ok(sink.values.into_iter().flatten().collect())
}

/// Expirations of `/v3/option/list/expirations`.
pub fn expirations(body: &[u8]) -> Result<Vec<NaiveDate>, ParseError> {
    list(body, Field::Expiration, date_value)?
        .into_iter()
        .map(|days| {
            date_of_days(days)
                .ok_or_else(|| content(format!("expiration day {days} is out of range")))
        })
        .collect()
}

/// Dates of `/v3/option/list/dates/<style>` (the sessions a contract has data on).
pub fn dates(body: &[u8]) -> Result<Vec<NaiveDate>, ParseError> {
    list(body, Field::Date, date_value)?
        .into_iter()
        .map(|days| {
            date_of_days(days).ok_or_else(|| content(format!("day {days} is out of range")))
        })
        .collect()
}

/// Strikes (dollars) of `/v3/option/list/strikes`.
pub fn strikes(body: &[u8]) -> Result<Vec<f64>, ParseError> {
    list(body, Field::Strike, float)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap()
    }

    #[test]
    fn stamps_parse_with_and_without_fractions_and_offsets() {
        let mut clock = NyClock::default();
        let mut at = |text: &str| clock.utc_nanos(parse_stamp(text).unwrap()).unwrap();
        assert_eq!(at("2024-01-05T09:30:00"), utc("2024-01-05T14:30:00Z"));
        assert_eq!(at("2024-07-05T09:30:00"), utc("2024-07-05T13:30:00Z"));
        assert_eq!(at("2024-07-05 09:30:00.5"), utc("2024-07-05T13:30:00.5Z"));
        assert_eq!(
            at("2024-11-18T17:15:34.35"),
            utc("2024-11-18T22:15:34.350Z")
        );
        assert_eq!(
            at("2024-01-05T09:30:00.123456789123"),
            utc("2024-01-05T14:30:00.123456789Z")
        );
        assert_eq!(at("2024-01-05T09:30:00Z"), utc("2024-01-05T09:30:00Z"));
        assert_eq!(at("2024-01-05T09:30:00-05:00"), utc("2024-01-05T14:30:00Z"));
        for bad in [
            "2024-13-05T09:30:00",
            "2023-02-29T09:30:00",
            "2024-01-05T24:00:00",
            "2024-01-05",
            "2024-01-05T09:30:00.",
            "2024-01-05T09:30:00+0500",
            "20240105T09:30:00",
        ] {
            assert_eq!(parse_stamp(bad), None, "{bad}");
        }
        assert!(parse_stamp("2024-02-29T09:30:00").is_some());
    }

    #[test]
    fn dst_switch_days_take_the_exact_path() {
        let mut clock = NyClock::default();
        let mut at = |text: &str| clock.utc_nanos(parse_stamp(text).unwrap()).unwrap();
        // 2024-03-10: 01:30 is EST, 03:30 is EDT; 02:30 does not exist and moves to 03:00 EDT.
        assert_eq!(at("2024-03-10T01:30:00"), utc("2024-03-10T06:30:00Z"));
        assert_eq!(at("2024-03-10T03:30:00"), utc("2024-03-10T07:30:00Z"));
        assert_eq!(at("2024-03-10T02:30:00"), utc("2024-03-10T07:00:00Z"));
        // 2024-11-03: 01:30 happens twice; the earlier instant (EDT) is taken.
        assert_eq!(at("2024-11-03T01:30:00"), utc("2024-11-03T05:30:00Z"));
        assert_eq!(at("2024-11-04T09:30:00"), utc("2024-11-04T14:30:00Z"));
    }

    fn minute_bars(body: &[u8]) -> Result<Vec<OhlcBar>, ParseError> {
        let dataset = Dataset::from_json(
            r#"{"provider":"thetadata","asset_type":"stock","symbol":"SPY","timespan":"minute","datastyle":"ohlc"}"#,
        )
        .unwrap();
        match normalize(&dataset, body)? {
            Rows::Ohlc(bars) => Ok(bars),
            other => panic!("{other:?}"),
        }
    }

    fn bars_at(stamps: &[&str]) -> String {
        let rows: Vec<String> = stamps
            .iter()
            .map(|t| format!(r#"{{"timestamp":"{t}","open":1,"high":1,"low":1,"close":1}}"#))
            .collect();
        format!(r#"{{"response":[{}]}}"#, rows.join(","))
    }

    #[test]
    fn timestamps_on_a_known_day_read_as_a_fresh_parse_reads_them() {
        let stamps = [
            "2024-03-08T09:30:00",
            "2024-03-08T09:31:00.250",
            "2024-03-08 09:32:00",
            "2024-03-08T09:33:00Z",
            "2024-03-08T09:34:00-05:00",
            "2024-03-10T01:30:00",
            "2024-03-10T03:30:00",
            "2024-03-10T02:30:00",
            "2024-03-11T09:30:00",
            " 2024-03-11T09:31:00 ",
            "2024-03-11T09:32:00.123456789",
            "2024-03-08T15:59:00",
        ];
        let bars = minute_bars(bars_at(&stamps).as_bytes()).unwrap();
        assert_eq!(bars.len(), stamps.len());
        for (bar, text) in bars.iter().zip(stamps) {
            let fresh = NyClock::default()
                .utc_nanos(parse_stamp(text).unwrap())
                .unwrap();
            assert_eq!(bar.time, fresh, "{text}");
        }
    }

    #[test]
    fn a_bad_timestamp_on_a_known_day_is_still_refused() {
        for bad in [
            "2024-03-08T24:00:00",
            "2024-03-08T09:30",
            "2024-03-08T09:30:00+0500",
            "2024-03-08T09:30:00x",
        ] {
            let body = bars_at(&["2024-03-08T09:30:00", bad]);
            let err = minute_bars(body.as_bytes()).unwrap_err();
            assert!(
                matches!(&err, ParseError::Content(m) if m.contains("'timestamp' is not a timestamp")),
                "{bad}: {err}"
            );
        }
        let mut body = bars_at(&["2024-03-08T09:30:00", "2024-03-08T09:3"]).into_bytes();
        let cut = body.len() - r#""open":1,"high":1,"low":1,"close":1}]}"#.len() - 2;
        body.splice(cut..cut, b"\xff0:00".iter().copied());
        let err = minute_bars(&body).unwrap_err();
        assert!(
            matches!(&err, ParseError::Malformed(m) if m.contains("not UTF-8")),
            "{err}"
        );
    }

    #[test]
    fn days_from_civil_matches_chrono() {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        for text in [
            "1970-01-01",
            "2000-02-29",
            "1969-12-31",
            "2099-12-31",
            "1600-03-01",
        ] {
            let d: NaiveDate = text.parse().unwrap();
            let (days, _) = parse_date_prefix(text.as_bytes()).unwrap();
            assert_eq!(days, (d - epoch).num_days(), "{text}");
            assert_eq!(date_of_days(days), Some(d));
        }
    }

    #[test]
    fn numbers_accept_every_spelling_a_terminal_uses() {
        assert_eq!(float(Field::Open, Scalar::Int(3)), Ok(Some(3.0)));
        assert_eq!(float(Field::Open, Scalar::Str(" 3.5 ")), Ok(Some(3.5)));
        assert_eq!(float(Field::Open, Scalar::Str("")), Ok(None));
        assert!(
            float(Field::Open, Scalar::Str("abc"))
                .unwrap_err()
                .contains("'open'")
        );
        assert_eq!(int(Field::Count, Scalar::Float(12.0)), Ok(Some(12)));
        assert_eq!(int(Field::Count, Scalar::Str("12.0")), Ok(Some(12)));
        assert!(int(Field::Count, Scalar::Float(1.5)).is_err());
        assert_eq!(
            date_value(Field::Date, Scalar::Int(20240105)),
            date_value(Field::Date, Scalar::Str("2024-01-05"))
        );
        assert!(date_value(Field::Date, Scalar::Int(2024010)).is_err());
    }
}
