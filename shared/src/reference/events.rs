//! lumibot's corporate-event cache (`docs/FORMAT.md`, "Corporate events"), as lumibot 4.6.30
//! writes and reads it (`_ensure_event_cache` and the helpers around it):
//!
//! ```text
//! thetadata/stock/events/<type>/<SYM>_<type>.parquet     the events (absent when none)
//! thetadata/stock/events/<type>/<SYM>_<type>.meta.json   {"ranges": [["YYYY-MM-DD", "YYYY-MM-DD"], ...]}
//! ```
//!
//! `<type>` is `splits` or `dividends`; `<SYM>` the upper-cased symbol with every character
//! outside `[A-Za-z0-9_-]` replaced by `_`. The ranges are the date windows already asked of
//! the provider; a lookup of `[start, end]` asks only for the parts no range covers, each
//! padded by 60 days on both sides, then records the padded windows (merged where they touch).
//!
//! The parquet has lumibot's columns: `event_date` (UTC midnight of the ex-date or split
//! date, `timestamp[ns, UTC]`), `ratio` (splits: shares after per share before) or
//! `cash_amount`, `record_date`, `pay_date` (dividends), and `symbol`; sorted by date, one
//! row per date and value.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, Float64Array, RecordBatch, StringArray, TimestampNanosecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use bytes::Bytes;
use chrono::{Duration, NaiveDate};

use crate::codec::{self, CodecError};
use crate::corporate::{Dividend, Split};
use crate::dataset::{AssetType, DatasetError, Provider, normalize_symbol};
use crate::format::{EVENTS_FOLDER, EVENTS_RANGES_FIELD, PARQUET_SUFFIX, SIDECAR_SUFFIX};

/// Days each missing window is widened by on both sides (`EVENT_CACHE_PAD_DAYS`).
pub const PAD_DAYS: i64 = 60;
/// The earliest and latest dates lumibot asks events for (`EVENT_CACHE_MIN_DATE`, `…_MAX_DATE`).
pub fn earliest() -> NaiveDate {
    NaiveDate::from_ymd_opt(1950, 1, 1).expect("a date")
}
pub fn latest() -> NaiveDate {
    NaiveDate::from_ymd_opt(2100, 12, 31).expect("a date")
}

/// A kind of corporate event lumibot caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    Splits,
    Dividends,
}

impl EventType {
    pub const ALL: [EventType; 2] = [EventType::Splits, EventType::Dividends];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Splits => "splits",
            EventType::Dividends => "dividends",
        }
    }

    pub fn parse(text: &str) -> Option<EventType> {
        EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == text.trim().to_ascii_lowercase())
    }

    /// The column holding the event's value.
    pub fn value_column(self) -> &'static str {
        match self {
            EventType::Splits => "ratio",
            EventType::Dividends => "cash_amount",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One symbol's events of one type: what a pair of event files holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventSet {
    pub provider: Provider,
    /// Upper-cased, within `[A-Z0-9._-]`.
    pub symbol: String,
    pub event_type: EventType,
}

/// lumibot's `_symbol_cache_component`: upper case, anything outside `[A-Za-z0-9_-]` as `_`.
pub fn symbol_component(symbol: &str) -> String {
    let cleaned: String = symbol
        .to_ascii_uppercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "symbol".into()
    } else {
        cleaned
    }
}

impl EventSet {
    /// Events of `symbol`; lumibot keeps them for stocks only (an option's are its
    /// underlying's).
    pub fn new(
        provider: Provider,
        asset_type: AssetType,
        symbol: &str,
        event_type: EventType,
    ) -> Result<Self, DatasetError> {
        if asset_type != AssetType::Stock {
            return Err(DatasetError(format!(
                "{event_type} are kept for stocks only (asset_type '{asset_type}'; an option's are its underlying's)"
            )));
        }
        if provider != Provider::ThetaData {
            return Err(DatasetError(format!(
                "{event_type} are kept for provider thetadata only (got '{provider}')"
            )));
        }
        Ok(EventSet {
            provider,
            symbol: normalize_symbol(symbol)?,
            event_type,
        })
    }

    fn stem(&self) -> String {
        format!(
            "{}/{}/{EVENTS_FOLDER}/{}/{}_{}",
            self.provider,
            AssetType::Stock,
            self.event_type,
            symbol_component(&self.symbol),
            self.event_type
        )
    }

    /// The events parquet, relative to the cache root.
    pub fn relative_path(&self) -> String {
        format!("{}{PARQUET_SUFFIX}", self.stem())
    }

    /// The ranges file, relative to the cache root.
    pub fn ranges_path(&self) -> String {
        format!("{}{SIDECAR_SUFFIX}", self.stem())
    }

    /// The set a path names and whether the path is its ranges file; `None` when the path is
    /// not an event file.
    pub fn parse_relative(path: &str) -> Option<(EventSet, bool)> {
        let segments: Vec<&str> = path.split('/').collect();
        let [provider, asset, folder, event_type, file] = segments[..] else {
            return None;
        };
        let provider = Provider::parse(provider).ok()?;
        if asset != AssetType::Stock.as_str() || folder != EVENTS_FOLDER {
            return None;
        }
        let event_type = EventType::ALL
            .into_iter()
            .find(|t| t.as_str() == event_type)?;
        let (stem, ranges) = match file.strip_suffix(SIDECAR_SUFFIX) {
            Some(stem) => (stem, true),
            None => (file.strip_suffix(PARQUET_SUFFIX)?, false),
        };
        let symbol = stem
            .strip_suffix(event_type.as_str())?
            .strip_suffix('_')
            .filter(|s| !s.is_empty())?;
        let set = EventSet::new(provider, AssetType::Stock, symbol, event_type).ok()?;
        // Only the set's own spelling of the path names it (`thetadAta/…` is a foreign key).
        let exact = if ranges {
            set.ranges_path()
        } else {
            set.relative_path()
        };
        (exact == path).then_some((set, ranges))
    }
}

/// One event: a split (value = shares after per share before) or a cash dividend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    pub date: NaiveDate,
    pub value: f64,
    /// Dividends: the record and payment dates, when the provider gives them.
    pub record_date: Option<NaiveDate>,
    pub pay_date: Option<NaiveDate>,
}

impl Event {
    pub fn on(date: NaiveDate, value: f64) -> Self {
        Event {
            date,
            value,
            record_date: None,
            pay_date: None,
        }
    }
}

/// The splits among events, for the day-bar adjustment.
pub fn splits_of(events: &[Event]) -> Vec<Split> {
    events
        .iter()
        .map(|e| Split {
            date: e.date,
            ratio: e.value,
        })
        .collect()
}

/// The dividends among events, for the day-bar adjustment.
pub fn dividends_of(events: &[Event]) -> Vec<Dividend> {
    events
        .iter()
        .map(|e| Dividend {
            date: e.date,
            amount: e.value,
        })
        .collect()
}

/// lumibot's merge of cached and new events: concatenated, duplicates of (date, value)
/// dropped keeping the newer, sorted by date (stable, cached first).
pub fn merge_events(cached: &[Event], fresh: &[Event]) -> Vec<Event> {
    let mut last: BTreeMap<(NaiveDate, u64), usize> = BTreeMap::new();
    let all: Vec<Event> = cached.iter().chain(fresh).copied().collect();
    for (i, e) in all.iter().enumerate() {
        last.insert((e.date, e.value.to_bits()), i);
    }
    let mut kept: Vec<usize> = last.into_values().collect();
    kept.sort_by_key(|&i| (all[i].date, i));
    kept.into_iter().map(|i| all[i]).collect()
}

/// A closed range of dates.
pub type Range = (NaiveDate, NaiveDate);

/// lumibot's `_merge_coverage_ranges`: sorted, ranges that overlap or touch (a day apart)
/// joined.
pub fn merge_ranges(ranges: &[Range]) -> Vec<Range> {
    let mut sorted = ranges.to_vec();
    sorted.sort_by_key(|r| r.0);
    let mut out: Vec<Range> = Vec::new();
    for (start, end) in sorted {
        match out.last_mut() {
            Some(last) if start <= last.1 + Duration::days(1) => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

/// lumibot's `_calculate_missing_event_windows`: the parts of `[start, end]` no range covers.
pub fn missing_windows(ranges: &[Range], start: NaiveDate, end: NaiveDate) -> Vec<Range> {
    let (start, end) = (start.min(end), start.max(end));
    let mut missing = Vec::new();
    let mut cursor = start;
    for (from, to) in merge_ranges(ranges) {
        if to < cursor {
            continue;
        }
        if from > end {
            break;
        }
        if from > cursor {
            missing.push((cursor, end.min(from - Duration::days(1))));
        }
        cursor = cursor.max(to + Duration::days(1));
        if cursor > end {
            break;
        }
    }
    if cursor <= end {
        missing.push((cursor, end));
    }
    missing.retain(|(a, b)| a <= b);
    missing
}

/// lumibot's `_pad_event_window`: widened by [`PAD_DAYS`] within 1950-01-01..2100-12-31.
pub fn pad(window: Range) -> Range {
    let pad = Duration::days(PAD_DAYS);
    let start = earliest().max(window.0 - pad);
    let end = latest().min(window.1 + pad);
    (start.min(end), start.max(end))
}

/// The ranges a `.meta.json` lists, read as lumibot reads them: unreadable JSON is no
/// coverage, an unreadable pair is skipped, a reversed pair is turned around.
pub fn read_ranges(bytes: &[u8]) -> Vec<Range> {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Vec::new();
    };
    let Some(pairs) = value.get(EVENTS_RANGES_FIELD).and_then(|r| r.as_array()) else {
        return Vec::new();
    };
    pairs
        .iter()
        .filter_map(|pair| {
            let pair = pair.as_array().filter(|p| p.len() == 2)?;
            let date =
                |v: &serde_json::Value| NaiveDate::parse_from_str(v.as_str()?, "%Y-%m-%d").ok();
            let (a, b) = (date(&pair[0])?, date(&pair[1])?);
            Some((a.min(b), a.max(b)))
        })
        .collect()
}

/// What is wrong with a `.meta.json` as a ranges file: anything lumibot would silently read
/// as less coverage than the file claims. Empty when it is well formed.
pub fn check_ranges(bytes: &[u8]) -> Vec<String> {
    let value = match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(value) => value,
        Err(e) => return vec![format!("not JSON: {e}")],
    };
    let Some(pairs) = value.get(EVENTS_RANGES_FIELD) else {
        return vec![format!("no '{EVENTS_RANGES_FIELD}' member")];
    };
    let Some(pairs) = pairs.as_array() else {
        return vec![format!("'{EVENTS_RANGES_FIELD}' is not a list")];
    };
    let mut out = Vec::new();
    for (i, pair) in pairs.iter().enumerate() {
        let ok = pair.as_array().is_some_and(|p| {
            p.len() == 2
                && p.iter().all(|v| {
                    v.as_str()
                        .is_some_and(|t| NaiveDate::parse_from_str(t, "%Y-%m-%d").is_ok())
                })
        });
        if !ok {
            out.push(format!(
                "range {i} is not a pair of YYYY-MM-DD dates: {pair}"
            ));
        }
    }
    out
}

/// A ranges file as lumibot writes it (`json.dumps`): `{"ranges": [["a", "b"], ...]}`,
/// sorted by start.
pub fn ranges_json(ranges: &[Range]) -> String {
    let mut sorted = ranges.to_vec();
    sorted.sort_by_key(|r| r.0);
    let pairs: Vec<String> = sorted
        .iter()
        .map(|(a, b)| format!("[\"{a}\", \"{b}\"]"))
        .collect();
    format!("{{\"{EVENTS_RANGES_FIELD}\": [{}]}}", pairs.join(", "))
}

/// Whether the ranges cover every date of `[start, end]`.
pub fn covers(ranges: &[Range], start: NaiveDate, end: NaiveDate) -> bool {
    missing_windows(ranges, start, end).is_empty()
}

const NANOS_PER_DAY: i64 = 86_400 * 1_000_000_000;

fn utc_midnight_nanos(date: NaiveDate) -> i64 {
    (date - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() * NANOS_PER_DAY
}

fn timestamps(dates: impl Iterator<Item = Option<NaiveDate>>) -> ArrayRef {
    let values: TimestampNanosecondArray = dates.map(|d| d.map(utc_midnight_nanos)).collect();
    Arc::new(values.with_timezone("UTC"))
}

fn timestamp_field(name: &str) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
        true,
    )
}

/// The events as lumibot's frame: its columns, in its order.
pub fn to_batch(set: &EventSet, events: &[Event]) -> Result<RecordBatch, CodecError> {
    let mut fields = vec![
        timestamp_field("event_date"),
        Field::new(set.event_type.value_column(), DataType::Float64, true),
    ];
    let mut columns: Vec<ArrayRef> = vec![
        timestamps(events.iter().map(|e| Some(e.date))),
        Arc::new(
            events
                .iter()
                .map(|e| Some(e.value))
                .collect::<Float64Array>(),
        ),
    ];
    if set.event_type == EventType::Dividends {
        fields.push(timestamp_field("record_date"));
        columns.push(timestamps(events.iter().map(|e| e.record_date)));
        fields.push(timestamp_field("pay_date"));
        columns.push(timestamps(events.iter().map(|e| e.pay_date)));
    }
    fields.push(Field::new("symbol", DataType::Utf8, true));
    columns.push(Arc::new(StringArray::from_iter_values(
        events.iter().map(|_| set.symbol.as_str()),
    )));
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// Encode events as lumibot's parquet, with our footer facts.
pub fn encode(
    set: &EventSet,
    events: &[Event],
    metadata: &BTreeMap<String, String>,
) -> Result<Bytes, CodecError> {
    codec::encode(&to_batch(set, events)?, metadata)
}

fn dates_of(batch: &RecordBatch, name: &str) -> Result<Option<Vec<Option<NaiveDate>>>, CodecError> {
    let Some(column) = batch.column_by_name(name) else {
        return Ok(None);
    };
    // Days since the epoch per unit of the column (the UTC date of an instant).
    let per_day: i64 = match column.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => 86_400,
        DataType::Timestamp(TimeUnit::Millisecond, _) | DataType::Date64 => 86_400_000,
        DataType::Timestamp(TimeUnit::Microsecond, _) => 86_400_000_000,
        DataType::Timestamp(TimeUnit::Nanosecond, _) => NANOS_PER_DAY,
        DataType::Date32 => 1,
        DataType::Null => return Ok(Some(vec![None; column.len()])),
        other => {
            return Err(CodecError::Shape(format!(
                "column '{name}' is {other} (expected a timestamp)"
            )));
        }
    };
    let values = arrow_cast::cast(column, &DataType::Int64)?;
    let values = values.as_primitive::<Int64Type>();
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
    Ok(Some(
        (0..values.len())
            .map(|i| {
                values
                    .is_valid(i)
                    .then(|| {
                        epoch
                            .checked_add_signed(Duration::days(values.value(i).div_euclid(per_day)))
                    })
                    .flatten()
            })
            .collect(),
    ))
}

/// The events of a parquet lumibot or cachefill wrote (`decoded` as [`codec::decode`] reads
/// it). Rows without a date are skipped, as lumibot drops them.
pub fn from_batch(event_type: EventType, batch: &RecordBatch) -> Result<Vec<Event>, CodecError> {
    if batch.num_rows() == 0 && batch.num_columns() == 0 {
        return Ok(Vec::new());
    }
    let dates = dates_of(batch, "event_date")?
        .ok_or_else(|| CodecError::Shape("no 'event_date' column".into()))?;
    let value_name = event_type.value_column();
    let values = batch
        .column_by_name(value_name)
        .ok_or_else(|| CodecError::Shape(format!("no '{value_name}' column")))?;
    if !values.data_type().is_numeric() {
        return Err(CodecError::Shape(format!(
            "column '{value_name}' is {} (expected a number)",
            values.data_type()
        )));
    }
    let values = arrow_cast::cast(values, &DataType::Float64)?;
    let values = values.as_primitive::<Float64Type>();
    let record = dates_of(batch, "record_date")?;
    let pay = dates_of(batch, "pay_date")?;
    let at = |column: &Option<Vec<Option<NaiveDate>>>, i: usize| column.as_ref().and_then(|c| c[i]);
    Ok((0..batch.num_rows())
        .filter_map(|i| {
            Some(Event {
                date: dates[i]?,
                value: if values.is_valid(i) {
                    values.value(i)
                } else {
                    f64::NAN
                },
                record_date: at(&record, i),
                pay_date: at(&pay, i),
            })
        })
        .collect())
}

/// What is wrong with an events parquet's rows, as a person reads it; empty when lumibot can
/// use every row as the event it claims to be.
pub fn check_events(event_type: EventType, batch: &RecordBatch) -> Vec<String> {
    let events = match from_batch(event_type, batch) {
        Ok(events) => events,
        Err(e) => return vec![e.to_string()],
    };
    let mut out = Vec::new();
    if events.len() != batch.num_rows() {
        out.push(format!(
            "{} rows have no event_date",
            batch.num_rows() - events.len()
        ));
    }
    for e in &events {
        let bad = match event_type {
            EventType::Splits => !(e.value.is_finite() && e.value > 0.0) || e.value == 1.0,
            EventType::Dividends => !(e.value.is_finite() && e.value >= 0.0),
        };
        if bad {
            out.push(format!(
                "{} on {}: {} is not a valid {}",
                event_type,
                e.date,
                e.value,
                event_type.value_column()
            ));
        }
    }
    if events.windows(2).any(|w| w[0].date > w[1].date) {
        out.push("rows are not sorted by event_date".into());
    }
    out.truncate(20);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(t: &str) -> NaiveDate {
        t.parse().unwrap()
    }

    #[test]
    fn paths_are_lumibots_and_parse_back() {
        let set = EventSet::new(
            Provider::ThetaData,
            AssetType::Stock,
            "brk.b",
            EventType::Splits,
        )
        .unwrap();
        assert_eq!(
            set.relative_path(),
            "thetadata/stock/events/splits/BRK_B_splits.parquet"
        );
        assert_eq!(
            set.ranges_path(),
            "thetadata/stock/events/splits/BRK_B_splits.meta.json"
        );
        let aapl = EventSet::new(
            Provider::ThetaData,
            AssetType::Stock,
            "AAPL",
            EventType::Dividends,
        )
        .unwrap();
        assert_eq!(
            EventSet::parse_relative(&aapl.ranges_path()),
            Some((aapl.clone(), true))
        );
        assert_eq!(
            EventSet::parse_relative(&aapl.relative_path()),
            Some((aapl, false))
        );
        assert_eq!(
            EventSet::parse_relative("thetadata/stock/events/splits/AAPL_dividends.parquet"),
            None
        );
        // Found by the key_parser fuzz target: another spelling of the provider folder was
        // taken for the set's own path.
        assert_eq!(
            EventSet::parse_relative("thetadAta/stock/events/dividends/K_dividends.meta.json"),
            None
        );
        assert!(
            EventSet::new(
                Provider::ThetaData,
                AssetType::Option,
                "AAPL",
                EventType::Splits
            )
            .is_err()
        );
    }

    #[test]
    fn missing_windows_and_padding_are_lumibots() {
        let ranges = vec![
            (d("2024-01-01"), d("2024-03-31")),
            (d("2024-04-01"), d("2024-06-30")),
        ];
        assert_eq!(
            merge_ranges(&ranges),
            vec![(d("2024-01-01"), d("2024-06-30"))]
        );
        assert!(covers(&ranges, d("2024-02-01"), d("2024-06-30")));
        assert_eq!(
            missing_windows(&ranges, d("2023-12-01"), d("2024-07-02")),
            vec![
                (d("2023-12-01"), d("2023-12-31")),
                (d("2024-07-01"), d("2024-07-02"))
            ]
        );
        assert_eq!(
            missing_windows(&[], d("2024-07-02"), d("2024-07-01")),
            vec![(d("2024-07-01"), d("2024-07-02"))]
        );
        assert_eq!(
            pad((d("2024-07-01"), d("2024-07-01"))),
            (d("2024-05-02"), d("2024-08-30"))
        );
        assert_eq!(
            pad((d("1950-01-10"), d("2100-12-01"))),
            (earliest(), latest())
        );
    }

    #[test]
    fn ranges_files_read_and_write_as_lumibot_does() {
        let text = ranges_json(&[
            (d("2024-05-02"), d("2024-08-30")),
            (d("2020-01-01"), d("2020-02-01")),
        ]);
        assert_eq!(
            text,
            r#"{"ranges": [["2020-01-01", "2020-02-01"], ["2024-05-02", "2024-08-30"]]}"#
        );
        assert_eq!(read_ranges(text.as_bytes()).len(), 2);
        assert!(check_ranges(text.as_bytes()).is_empty());
        let odd = br#"{"ranges": [["2024-02-01", "2024-01-01"], ["x", "2024-01-01"], 3]}"#;
        assert_eq!(read_ranges(odd), vec![(d("2024-01-01"), d("2024-02-01"))]);
        assert_eq!(check_ranges(odd).len(), 2);
        assert!(read_ranges(b"not json").is_empty());
        assert_eq!(check_ranges(b"{}").len(), 1);
    }

    #[test]
    fn merging_keeps_one_row_per_date_and_value() {
        let cached = [Event::on(d("2020-08-31"), 4.0)];
        let fresh = [
            Event::on(d("2022-08-25"), 3.0),
            Event::on(d("2020-08-31"), 4.0),
        ];
        let merged = merge_events(&cached, &fresh);
        assert_eq!(
            merged,
            vec![
                Event::on(d("2020-08-31"), 4.0),
                Event::on(d("2022-08-25"), 3.0)
            ]
        );
    }

    #[test]
    fn files_round_trip_and_bad_rows_are_named() {
        let set = EventSet::new(
            Provider::ThetaData,
            AssetType::Stock,
            "AAPL",
            EventType::Dividends,
        )
        .unwrap();
        let events = vec![Event {
            date: d("2024-05-10"),
            value: 0.25,
            record_date: Some(d("2024-05-13")),
            pay_date: None,
        }];
        let bytes = encode(&set, &events, &BTreeMap::new()).unwrap();
        let decoded = codec::decode(bytes).unwrap();
        assert_eq!(
            decoded
                .batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>(),
            [
                "event_date",
                "cash_amount",
                "record_date",
                "pay_date",
                "symbol"
            ]
        );
        assert_eq!(
            from_batch(EventType::Dividends, &decoded.batch).unwrap(),
            events
        );
        assert!(check_events(EventType::Dividends, &decoded.batch).is_empty());
        let splits = EventSet {
            event_type: EventType::Splits,
            ..set
        };
        let bad = to_batch(
            &splits,
            &[
                Event::on(d("2024-01-02"), 1.0),
                Event::on(d("2023-01-02"), 2.0),
            ],
        )
        .unwrap();
        assert_eq!(check_events(EventType::Splits, &bad).len(), 2);
        assert!(from_batch(EventType::Dividends, &bad).is_err());
    }
}
