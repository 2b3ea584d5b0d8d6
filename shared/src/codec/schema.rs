//! lumibot's parquet schemas per dataset (`docs/FORMAT.md`), in one place.
//!
//! Column order follows ThetaData's response fields; option datasets add the contract
//! columns after the provider's value columns, before the columns lumibot derives.

use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::dataset::{AssetType, DataKind, Dataset};

pub const DATETIME: &str = "datetime";
pub const MISSING: &str = "missing";
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
}

impl Layout {
    pub fn of(dataset: &Dataset) -> Layout {
        match (dataset.is_intraday(), dataset.kind()) {
            (true, DataKind::Ohlc) => Layout::IntradayOhlc,
            (true, DataKind::Quote) => Layout::IntradayQuote,
            (false, DataKind::Ohlc) => Layout::DayOhlc,
            (false, DataKind::Quote) => Layout::DayQuote,
        }
    }

    pub fn is_ohlc(self) -> bool {
        matches!(self, Layout::IntradayOhlc | Layout::DayOhlc)
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

fn build(layout: Layout, option: bool) -> SchemaRef {
    let (values, derived) = columns(layout);
    let mut fields = vec![Field::new(DATETIME, utc_ns(), true)];
    fields.extend(values.into_iter().map(|(n, t)| Field::new(n, t, true)));
    if option {
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
