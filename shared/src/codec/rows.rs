//! Normalized rows as providers deliver them, and their conversion into a dataset's
//! record batch (the row rules of `docs/FORMAT.md` applied once, here, for every provider).

use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampNanosecondArray,
};
use chrono::NaiveDate;

use super::CodecError;
use super::schema::{self, Layout, NEW_YORK, UTC};
use crate::calendar;
use crate::dataset::{AssetType, Dataset};

/// One intraday OHLC bar, stamped at bar open (UTC nanoseconds).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OhlcBar {
    pub time: i64,
    pub volume: Option<i64>,
    pub high: Option<f64>,
    pub low: Option<f64>,
    pub vwap: Option<f64>,
    pub count: Option<i64>,
    pub close: Option<f64>,
    pub open: Option<f64>,
}

/// One intraday quote (NBBO) bar, stamped at bar open (UTC nanoseconds).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuoteBar {
    pub time: i64,
    pub ask_size: Option<i64>,
    pub bid_size: Option<i64>,
    pub ask_exchange: Option<i64>,
    pub ask_condition: Option<i64>,
    pub bid_exchange: Option<i64>,
    pub ask: Option<f64>,
    pub bid: Option<f64>,
    pub bid_condition: Option<i64>,
}

/// One end-of-day record: trade summary and closing NBBO of a session.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EodBar {
    pub session: NaiveDate,
    pub last_trade: Option<String>,
    pub created: Option<String>,
    pub count: Option<i64>,
    pub volume: Option<i64>,
    pub high: Option<f64>,
    pub low: Option<f64>,
    pub close: Option<f64>,
    pub open: Option<f64>,
    pub ask_size: Option<i64>,
    pub bid_size: Option<i64>,
    pub ask_exchange: Option<i64>,
    pub ask_condition: Option<i64>,
    pub bid_exchange: Option<i64>,
    pub ask: Option<f64>,
    pub bid: Option<f64>,
    pub bid_condition: Option<i64>,
}

/// One aggregate bar as Polygon's v2 aggregates deliver it (`o h l c v vw t n otc`),
/// stamped at bar open (UTC nanoseconds; Polygon's `t` is milliseconds). Day bars open at
/// midnight New York of their session.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AggBar {
    pub time: i64,
    pub open: Option<f64>,
    pub high: Option<f64>,
    pub low: Option<f64>,
    pub close: Option<f64>,
    /// Fractional for some assets, so a float as Polygon sends it.
    pub volume: Option<f64>,
    pub vwap: Option<f64>,
    /// Polygon's `n`: trades in the bar.
    pub transactions: Option<i64>,
    /// Polygon's `otc`: present (true) only for over-the-counter bars.
    pub otc: Option<bool>,
}

/// What a provider returns for some sessions.
#[derive(Debug, Clone, PartialEq)]
pub enum Rows {
    Ohlc(Vec<OhlcBar>),
    Quote(Vec<QuoteBar>),
    Eod(Vec<EodBar>),
    Aggs(Vec<AggBar>),
}

impl Rows {
    pub fn empty_for(layout: Layout) -> Rows {
        match layout {
            Layout::IntradayOhlc => Rows::Ohlc(Vec::new()),
            Layout::IntradayQuote => Rows::Quote(Vec::new()),
            Layout::DayOhlc | Layout::DayQuote => Rows::Eod(Vec::new()),
            Layout::Aggs => Rows::Aggs(Vec::new()),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Rows::Ohlc(r) => r.len(),
            Rows::Quote(r) => r.len(),
            Rows::Eod(r) => r.len(),
            Rows::Aggs(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append another batch of rows of the same kind.
    pub fn extend(&mut self, other: Rows) -> Result<(), CodecError> {
        match (self, other) {
            (Rows::Ohlc(a), Rows::Ohlc(b)) => a.extend(b),
            (Rows::Quote(a), Rows::Quote(b)) => a.extend(b),
            (Rows::Eod(a), Rows::Eod(b)) => a.extend(b),
            (Rows::Aggs(a), Rows::Aggs(b)) => a.extend(b),
            _ => return Err(CodecError::Shape("rows of different kinds".into())),
        }
        Ok(())
    }
}

fn positive(v: Option<f64>) -> bool {
    v.is_some_and(|x| x.is_finite() && x > 0.0)
}

fn non_negative_or_null(v: Option<i64>) -> bool {
    v.is_none_or(|x| x >= 0)
}

fn sane_ohlc(open: Option<f64>, high: Option<f64>, low: Option<f64>, close: Option<f64>) -> bool {
    let (Some(o), Some(h), Some(l), Some(c)) = (open, high, low, close) else {
        return false;
    };
    [o, h, l, c].iter().all(|p| p.is_finite() && *p > 0.0) && l <= o.min(c) && o.max(c) <= h
}

fn sane_quote(bid: Option<f64>, ask: Option<f64>) -> bool {
    let ok = |v: Option<f64>| v.is_none_or(|x| x.is_finite() && x >= 0.0);
    ok(bid) && ok(ask) && (positive(bid) || positive(ask))
}

/// The row rules (`docs/FORMAT.md`): OHLC rows with `count == 0` are empty bars (kept for
/// indices, which have no trade count; a bar whose count is unknown is kept), quote rows
/// need a bid or an ask. Rows a validator would reject (non-positive prices, `high < low`,
/// negative sizes) are dropped here too, so one bad upstream bar cannot block a whole file.
pub fn keep_ohlc(asset: AssetType, bar: &OhlcBar) -> bool {
    let traded = asset == AssetType::Index || bar.count != Some(0);
    traded
        && sane_ohlc(bar.open, bar.high, bar.low, bar.close)
        && bar.vwap.is_none_or(|v| v.is_finite() && v >= 0.0)
        && non_negative_or_null(bar.volume)
        && non_negative_or_null(bar.count)
}

/// An aggregate bar needs sane prices (an index has no volume; others may not trade
/// negative amounts).
pub fn keep_agg(asset: AssetType, bar: &AggBar) -> bool {
    sane_ohlc(bar.open, bar.high, bar.low, bar.close)
        && bar.vwap.is_none_or(|v| v.is_finite() && v >= 0.0)
        && (asset == AssetType::Index || bar.volume.is_none_or(|v| v.is_finite() && v >= 0.0))
        && non_negative_or_null(bar.transactions)
}

pub fn keep_quote(bar: &QuoteBar) -> bool {
    sane_quote(bar.bid, bar.ask)
        && non_negative_or_null(bar.bid_size)
        && non_negative_or_null(bar.ask_size)
}

pub fn keep_eod(asset: AssetType, layout: Layout, bar: &EodBar) -> bool {
    match layout {
        Layout::DayQuote => {
            sane_quote(bar.bid, bar.ask)
                && non_negative_or_null(bar.bid_size)
                && non_negative_or_null(bar.ask_size)
        }
        _ => {
            (asset == AssetType::Index || bar.count != Some(0))
                && sane_ohlc(bar.open, bar.high, bar.low, bar.close)
                && non_negative_or_null(bar.volume)
                && non_negative_or_null(bar.count)
        }
    }
}

fn utc_times(values: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampNanosecondArray::from(values).with_timezone(UTC))
}

fn ny_times(values: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(TimestampNanosecondArray::from(values).with_timezone(NEW_YORK))
}

fn ints<T>(rows: &[T], f: impl Fn(&T) -> Option<i64>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<Int64Array>())
}

fn floats<T>(rows: &[T], f: impl Fn(&T) -> Option<f64>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<Float64Array>())
}

fn strings<T>(rows: &[T], f: impl Fn(&T) -> Option<&str>) -> ArrayRef {
    Arc::new(rows.iter().map(f).collect::<StringArray>())
}

fn constant_bool(value: bool, n: usize) -> ArrayRef {
    Arc::new(BooleanArray::from(vec![value; n]))
}

fn constant_f64(value: f64, n: usize) -> ArrayRef {
    Arc::new(Float64Array::from(vec![value; n]))
}

/// Contract columns of an option file: the same values on every real row.
fn option_columns(dataset: &Dataset, n: usize) -> Vec<ArrayRef> {
    let Some(c) = &dataset.contract else {
        return Vec::new();
    };
    let expiration = c.expiration.format("%Y-%m-%d").to_string();
    vec![
        Arc::new(StringArray::from(vec![dataset.symbol.as_str(); n])),
        constant_f64(c.strike.value(), n),
        Arc::new(StringArray::from(vec![expiration.as_str(); n])),
        Arc::new(StringArray::from(vec![c.right.as_str(); n])),
    ]
}

/// Filter provider rows by the row rules and build the dataset's record batch (in the
/// provider's order; sorting and de-duplication happen in the merge).
pub fn rows_to_batch(dataset: &Dataset, rows: Rows) -> Result<RecordBatch, CodecError> {
    let layout = Layout::of(dataset);
    let option = dataset.asset_type == AssetType::Option;
    let schema = schema::assembly_of(layout, option);
    let asset = dataset.asset_type;
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    let n;
    match (layout, rows) {
        (Layout::IntradayOhlc, Rows::Ohlc(mut bars)) => {
            bars.retain(|b| keep_ohlc(asset, b));
            n = bars.len();
            columns.push(utc_times(bars.iter().map(|b| b.time).collect()));
            columns.push(ints(&bars, |b| b.volume));
            columns.push(floats(&bars, |b| b.high));
            columns.push(floats(&bars, |b| b.low));
            columns.push(floats(&bars, |b| b.vwap));
            columns.push(ints(&bars, |b| b.count));
            columns.push(floats(&bars, |b| b.close));
            columns.push(floats(&bars, |b| b.open));
            columns.extend(option_columns(dataset, n));
            columns.push(ny_times(bars.iter().map(|b| Some(b.time)).collect()));
            columns.push(ny_times(vec![None; n]));
            columns.push(ny_times(vec![None; n]));
        }
        (Layout::IntradayQuote, Rows::Quote(mut bars)) => {
            bars.retain(keep_quote);
            n = bars.len();
            columns.push(utc_times(bars.iter().map(|b| b.time).collect()));
            columns.push(ints(&bars, |b| b.ask_size));
            columns.push(ints(&bars, |b| b.bid_size));
            columns.push(ints(&bars, |b| b.ask_exchange));
            columns.push(ints(&bars, |b| b.ask_condition));
            columns.push(ints(&bars, |b| b.bid_exchange));
            columns.push(floats(&bars, |b| b.ask));
            columns.push(floats(&bars, |b| b.bid));
            columns.push(ints(&bars, |b| b.bid_condition));
            columns.extend(option_columns(dataset, n));
            columns.push(ny_times(vec![None; n]));
            let times: Vec<Option<i64>> = bars.iter().map(|b| Some(b.time)).collect();
            columns.push(ny_times(times.clone()));
            columns.push(ny_times(times));
        }
        (Layout::DayOhlc, Rows::Eod(mut bars)) => {
            bars.retain(|b| keep_eod(asset, layout, b));
            n = bars.len();
            columns.push(utc_times(
                bars.iter()
                    .map(|b| {
                        calendar::session_close_utc(b.session)
                            .timestamp_nanos_opt()
                            .unwrap_or(0)
                    })
                    .collect(),
            ));
            columns.push(strings(&bars, |b| b.last_trade.as_deref()));
            columns.push(strings(&bars, |b| b.created.as_deref()));
            columns.push(ints(&bars, |b| b.count));
            columns.push(ints(&bars, |b| b.volume));
            columns.push(floats(&bars, |b| b.high));
            columns.push(floats(&bars, |b| b.low));
            columns.push(floats(&bars, |b| b.close));
            columns.push(floats(&bars, |b| b.open));
            columns.extend(option_columns(dataset, n));
            // Raw prices; the fill engine applies lumibot's corporate-action treatment.
            columns.push(constant_f64(0.0, n));
            columns.push(constant_f64(0.0, n));
            columns.push(constant_bool(false, n));
        }
        (Layout::DayQuote, Rows::Eod(mut bars)) => {
            bars.retain(|b| keep_eod(asset, layout, b));
            n = bars.len();
            columns.push(utc_times(
                bars.iter()
                    .map(|b| {
                        calendar::session_close_utc(b.session)
                            .timestamp_nanos_opt()
                            .unwrap_or(0)
                    })
                    .collect(),
            ));
            columns.push(strings(&bars, |b| b.created.as_deref()));
            columns.push(ints(&bars, |b| b.ask_size));
            columns.push(ints(&bars, |b| b.bid_size));
            columns.push(ints(&bars, |b| b.ask_exchange));
            columns.push(ints(&bars, |b| b.ask_condition));
            columns.push(ints(&bars, |b| b.bid_exchange));
            columns.push(floats(&bars, |b| b.ask));
            columns.push(floats(&bars, |b| b.bid));
            columns.push(ints(&bars, |b| b.bid_condition));
            columns.extend(option_columns(dataset, n));
        }
        (Layout::Aggs, Rows::Aggs(mut bars)) => {
            bars.retain(|b| keep_agg(asset, b));
            n = bars.len();
            columns.push(utc_times(bars.iter().map(|b| b.time).collect()));
            columns.push(floats(&bars, |b| b.open));
            columns.push(floats(&bars, |b| b.high));
            columns.push(floats(&bars, |b| b.low));
            columns.push(floats(&bars, |b| b.close));
            columns.push(floats(&bars, |b| b.volume));
            columns.push(floats(&bars, |b| b.vwap));
            columns.push(ints(&bars, |b| Some(b.time.div_euclid(1_000_000))));
            columns.push(ints(&bars, |b| b.transactions));
            columns.push(Arc::new(
                bars.iter().map(|b| b.otc).collect::<BooleanArray>(),
            ));
        }
        (layout, rows) => {
            return Err(CodecError::Shape(format!(
                "{layout:?} dataset {dataset} cannot hold {} rows",
                match rows {
                    Rows::Ohlc(_) => "OHLC",
                    Rows::Quote(_) => "quote",
                    Rows::Eod(_) => "end-of-day",
                    Rows::Aggs(_) => "aggregate",
                }
            )));
        }
    }
    // lumibot's Polygon files leave `missing` null on real rows (pandas' concat of the
    // placeholders' column); its ThetaData files say false.
    columns.push(match layout {
        Layout::Aggs => arrow_array::new_null_array(&arrow_schema::DataType::Boolean, n),
        _ => constant_bool(false, n),
    });
    let assembled = RecordBatch::try_new(schema, columns)?;
    Ok(assembled.project(&schema::projection(layout, option))?)
}

/// Where lumibot puts the placeholder of a session (UTC nanoseconds): 16:00 New York in its
/// ThetaData files; in its Polygon files [`POLYGON_PLACEHOLDER_UTC`] on the session's date
/// (lumibot builds that instant as `datetime(y, m, d, tzinfo=pytz New York)`, which is New
/// York's local mean time, UTC−4:56). Either way the instant falls on the session's UTC date.
pub fn placeholder_instant(dataset: &Dataset, session: NaiveDate) -> i64 {
    let at = match Layout::of(dataset) {
        Layout::Aggs => session.and_time(POLYGON_PLACEHOLDER_UTC).and_utc(),
        _ => calendar::session_close_utc(session),
    };
    at.timestamp_nanos_opt().unwrap_or(0)
}

/// The UTC time of day of lumibot's Polygon placeholders (see [`placeholder_instant`]).
pub const POLYGON_PLACEHOLDER_UTC: chrono::NaiveTime =
    match chrono::NaiveTime::from_hms_opt(4, 56, 0) {
        Some(t) => t,
        None => panic!("a valid time"),
    };

/// One placeholder row per session, at [`placeholder_instant`]: every value null,
/// `missing = true`.
pub fn placeholder_batch(
    dataset: &Dataset,
    sessions: &[NaiveDate],
) -> Result<RecordBatch, CodecError> {
    placeholders_at(
        dataset,
        sessions
            .iter()
            .map(|d| placeholder_instant(dataset, *d))
            .collect(),
    )
}

/// Placeholder rows at the given instants (UTC nanoseconds): every value null, `missing`.
pub fn placeholders_at(dataset: &Dataset, times: Vec<i64>) -> Result<RecordBatch, CodecError> {
    let schema = schema::schema_for(dataset);
    let n = times.len();
    let mut times = Some(times);
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            if i == 0 {
                utc_times(times.take().unwrap_or_default())
            } else if field.name() == schema::MISSING {
                constant_bool(true, n)
            } else {
                arrow_array::new_null_array(field.data_type(), n)
            }
        })
        .collect();
    Ok(RecordBatch::try_new(schema, columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(count: Option<i64>) -> OhlcBar {
        OhlcBar {
            time: 0,
            volume: Some(100),
            high: Some(2.0),
            low: Some(1.0),
            vwap: Some(1.5),
            count,
            close: Some(1.5),
            open: Some(1.5),
        }
    }

    #[test]
    fn only_a_zero_count_marks_an_empty_bar() {
        assert!(!keep_ohlc(AssetType::Stock, &bar(Some(0))));
        assert!(keep_ohlc(AssetType::Stock, &bar(Some(3))));
        assert!(keep_ohlc(AssetType::Stock, &bar(None)));
        assert!(keep_ohlc(AssetType::Index, &bar(Some(0))));
        assert!(!keep_ohlc(AssetType::Option, &bar(Some(-1))));
    }

    #[test]
    fn a_day_bar_with_an_unknown_count_is_kept() {
        let eod = |count| EodBar {
            session: NaiveDate::from_ymd_opt(2024, 1, 5).unwrap(),
            count,
            volume: Some(10),
            high: Some(2.0),
            low: Some(1.0),
            close: Some(1.5),
            open: Some(1.5),
            ..Default::default()
        };
        assert!(keep_eod(AssetType::Stock, Layout::DayOhlc, &eod(None)));
        assert!(!keep_eod(AssetType::Stock, Layout::DayOhlc, &eod(Some(0))));
    }
}
