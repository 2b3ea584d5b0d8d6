//! lumibot's parquet schemas per dataset (`docs/FORMAT.md`), in one place.
//!
//! Column order is lumibot's for the same response: ThetaData v3's fields in the order the
//! terminal sends them (for intraday option files the contract columns fall among the
//! values), then the columns lumibot derives. Day option files add the contract columns
//! after the values.

use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::dataset::{AssetType, DataKind, Dataset, Provider};

pub const DATETIME: &str = "datetime";
pub const MISSING: &str = "missing";
/// Day bars: the rows lumibot adjusted for splits.
pub const SPLIT_ADJUSTED: &str = "_split_adjusted";
pub const UTC: &str = "UTC";
pub const NEW_YORK: &str = "America/New_York";

/// The shape of a dataset's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// Minute and hour bars.
    IntradayOhlc,
    IntradayQuote,
    /// One end-of-day bar per session.
    DayOhlc,
    /// One end-of-day NBBO per session.
    DayQuote,
    /// Polygon's aggregate bars at any timespan, as lumibot's `polygon_helper` keeps them.
    Aggs,
}

impl Layout {
    pub fn of(dataset: &Dataset) -> Layout {
        if dataset.provider == Provider::Polygon {
            return Layout::Aggs;
        }
        match (dataset.is_intraday(), dataset.kind()) {
            (true, DataKind::Ohlc) => Layout::IntradayOhlc,
            (true, DataKind::Quote) => Layout::IntradayQuote,
            (false, DataKind::Ohlc) => Layout::DayOhlc,
            (false, DataKind::Quote) => Layout::DayQuote,
        }
    }

    pub fn is_ohlc(self) -> bool {
        matches!(self, Layout::IntradayOhlc | Layout::DayOhlc | Layout::Aggs)
    }

    /// Whether an option file of this layout carries the contract's columns (lumibot's
    /// Polygon files do not).
    pub fn has_contract_columns(self) -> bool {
        self != Layout::Aggs
    }
}

/// Columns holding sizes, volumes and counts, which must be ≥ 0.
pub const SIZE_COLUMNS: [&str; 4] = ["volume", "count", "bid_size", "ask_size"];

const OPTION_COLUMNS: [(&str, DataType); 4] = [
    ("symbol", DataType::Utf8),
    ("strike", DataType::Float64),
    ("expiration", DataType::Utf8),
    ("right", DataType::Utf8),
];

fn utc_ns() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some(UTC.into()))
}

fn ny_ns() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, Some(NEW_YORK.into()))
}

type Columns = Vec<(&'static str, DataType)>;

/// (provider value columns, derived columns) of a layout, each after `datetime`.
fn columns(layout: Layout) -> (Columns, Columns) {
    use DataType::{Boolean, Float64, Int64, Utf8};
    let times = vec![
        ("last_trade_time", ny_ns()),
        ("last_bid_time", ny_ns()),
        ("last_ask_time", ny_ns()),
    ];
    match layout {
        Layout::IntradayOhlc => (
            vec![
                ("volume", Int64),
                ("high", Float64),
                ("low", Float64),
                ("vwap", Float64),
                ("count", Int64),
                ("close", Float64),
                ("open", Float64),
            ],
            times,
        ),
        Layout::IntradayQuote => (
            vec![
                ("ask_size", Int64),
                ("bid_size", Int64),
                ("ask_exchange", Int64),
                ("ask_condition", Int64),
                ("bid_exchange", Int64),
                ("ask", Float64),
                ("bid", Float64),
                ("bid_condition", Int64),
            ],
            times,
        ),
        Layout::DayOhlc => (
            vec![
                ("last_trade", Utf8),
                ("created", Utf8),
                ("count", Int64),
                ("volume", Int64),
                ("high", Float64),
                ("low", Float64),
                ("close", Float64),
                ("open", Float64),
            ],
            vec![
                ("dividend", Float64),
                ("stock_splits", Float64),
                ("_split_adjusted", Boolean),
            ],
        ),
        Layout::Aggs => (
            vec![
                ("open", Float64),
                ("high", Float64),
                ("low", Float64),
                ("close", Float64),
                ("volume", Float64),
                ("vwap", Float64),
                ("timestamp", Int64),
                ("transactions", Int64),
                ("otc", Boolean),
            ],
            Vec::new(),
        ),
        Layout::DayQuote => (
            vec![
                ("created", Utf8),
                ("ask_size", Int64),
                ("bid_size", Int64),
                ("ask_exchange", Int64),
                ("ask_condition", Int64),
                ("bid_exchange", Int64),
                ("ask", Float64),
                ("bid", Float64),
                ("bid_condition", Int64),
            ],
            Vec::new(),
        ),
    }
}

/// ThetaData v3's field order of an intraday option response, as lumibot keeps it
/// (`tests/fixtures/thetadata-v3-columnar/option_minute_*.json`).
const OPTION_INTRADAY_OHLC_ORDER: [&str; 11] = [
    "volume",
    "symbol",
    "high",
    "low",
    "strike",
    "vwap",
    "count",
    "expiration",
    "right",
    "close",
    "open",
];
const OPTION_INTRADAY_QUOTE_ORDER: [&str; 12] = [
    "symbol",
    "ask_size",
    "ask_condition",
    "strike",
    "right",
    "bid_size",
    "ask_exchange",
    "bid_exchange",
    "ask",
    "expiration",
    "bid",
    "bid_condition",
];

/// The order rows are assembled in: `datetime`, the values, the contract columns of an
/// option, the derived columns, `missing` ([`crate::codec::rows`] builds columns so).
pub(crate) fn assembly_of(layout: Layout, option: bool) -> SchemaRef {
    let (values, derived) = columns(layout);
    let mut fields = vec![Field::new(DATETIME, utc_ns(), true)];
    fields.extend(values.into_iter().map(|(n, t)| Field::new(n, t, true)));
    if option && layout.has_contract_columns() {
        fields.extend(
            OPTION_COLUMNS
                .iter()
                .map(|(n, t)| Field::new(*n, t.clone(), true)),
        );
    }
    fields.extend(derived.into_iter().map(|(n, t)| Field::new(n, t, true)));
    fields.push(Field::new(MISSING, DataType::Boolean, true));
    Arc::new(Schema::new(fields))
}

/// The assembled columns in lumibot's order.
fn build(layout: Layout, option: bool) -> SchemaRef {
    let assembled = assembly_of(layout, option);
    let order: &[&str] = match (layout, option) {
        (Layout::IntradayOhlc, true) => &OPTION_INTRADAY_OHLC_ORDER,
        (Layout::IntradayQuote, true) => &OPTION_INTRADAY_QUOTE_ORDER,
        _ => return assembled,
    };
    let field = |name: &str| {
        assembled
            .field_with_name(name)
            .expect("the order names assembled columns")
            .clone()
    };
    let mut fields = vec![field(DATETIME)];
    fields.extend(order.iter().map(|n| field(n)));
    fields.extend(
        assembled
            .fields()
            .iter()
            .filter(|f| f.name() != DATETIME && !order.contains(&f.name().as_str()))
            .map(|f| f.as_ref().clone()),
    );
    Arc::new(Schema::new(fields))
}

/// Positions in [`assembly_of`] of the columns of [`schema_of`], in its order.
pub(crate) fn projection(layout: Layout, option: bool) -> Vec<usize> {
    let assembled = assembly_of(layout, option);
    schema_of(layout, option)
        .fields()
        .iter()
        .map(|f| {
            assembled
                .index_of(f.name())
                .expect("same columns, another order")
        })
        .collect()
}

/// The exact arrow schema of a dataset's parquet.
pub fn schema_for(dataset: &Dataset) -> SchemaRef {
    schema_of(Layout::of(dataset), dataset.asset_type == AssetType::Option)
}

pub fn schema_of(layout: Layout, option: bool) -> SchemaRef {
    static CACHE: OnceLock<Vec<SchemaRef>> = OnceLock::new();
    let all = CACHE.get_or_init(|| {
        let layouts = [
            Layout::IntradayOhlc,
            Layout::IntradayQuote,
            Layout::DayOhlc,
            Layout::DayQuote,
            Layout::Aggs,
        ];
        layouts
            .iter()
            .flat_map(|l| [build(*l, false), build(*l, true)])
            .collect()
    });
    let index = match layout {
        Layout::IntradayOhlc => 0,
        Layout::IntradayQuote => 2,
        Layout::DayOhlc => 4,
        Layout::DayQuote => 6,
        Layout::Aggs => 8,
    } + usize::from(option);
    all[index].clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(schema: &Schema) -> Vec<&str> {
        schema.fields().iter().map(|f| f.name().as_str()).collect()
    }

    #[test]
    fn intraday_ohlc_columns_in_design_order() {
        let s = schema_of(Layout::IntradayOhlc, false);
        assert_eq!(
            names(&s),
            [
                "datetime",
                "volume",
                "high",
                "low",
                "vwap",
                "count",
                "close",
                "open",
                "last_trade_time",
                "last_bid_time",
                "last_ask_time",
                "missing"
            ]
        );
        assert_eq!(s.field(0).data_type(), &utc_ns());
        assert_eq!(s.field(8).data_type(), &ny_ns());
    }

    /// lumibot keeps ThetaData's field order, so an option file's contract columns fall among
    /// the values; the recorded responses are the reference.
    #[test]
    fn intraday_option_columns_follow_the_recorded_response_order() {
        for (layout, fixture) in [
            (Layout::IntradayOhlc, "option_minute_ohlc.json"),
            (Layout::IntradayQuote, "option_minute_quote.json"),
        ] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures/thetadata-v3-columnar")
                .join(fixture);
            let text = std::fs::read_to_string(&path).unwrap();
            // serde_json keeps the order of the object's keys (`preserve_order` is not
            // needed: the keys are read from the text).
            let mut keys = Vec::new();
            let top: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&text).unwrap();
            for key in top.keys() {
                keys.push((text.find(&format!("\"{key}\"")).unwrap(), key.clone()));
            }
            keys.sort();
            let response: Vec<String> = keys
                .into_iter()
                .map(|(_, k)| k)
                .filter(|k| k != "timestamp")
                .collect();
            let schema = schema_of(layout, true);
            let values: Vec<&str> = names(&schema)[1..=response.len()].to_vec();
            assert_eq!(values, response, "{fixture}");
            assert_eq!(names(&schema)[0], "datetime");
            assert_eq!(*names(&schema).last().unwrap(), "missing");
        }
        // Every column the assembly builds is there, once.
        for layout in [Layout::IntradayOhlc, Layout::IntradayQuote] {
            let mut built = names(&assembly_of(layout, true))
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>();
            let mut ordered = names(&schema_of(layout, true))
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>();
            built.sort();
            ordered.sort();
            assert_eq!(built, ordered);
        }
    }

    #[test]
    fn day_ohlc_and_option_columns() {
        let s = schema_of(Layout::DayOhlc, true);
        assert_eq!(
            names(&s),
            [
                "datetime",
                "last_trade",
                "created",
                "count",
                "volume",
                "high",
                "low",
                "close",
                "open",
                "symbol",
                "strike",
                "expiration",
                "right",
                "dividend",
                "stock_splits",
                "_split_adjusted",
                "missing"
            ]
        );
        let q = schema_of(Layout::IntradayQuote, false);
        assert_eq!(
            names(&q),
            [
                "datetime",
                "ask_size",
                "bid_size",
                "ask_exchange",
                "ask_condition",
                "bid_exchange",
                "ask",
                "bid",
                "bid_condition",
                "last_trade_time",
                "last_bid_time",
                "last_ask_time",
                "missing"
            ]
        );
    }
}
