//! A trade day's parquet file: the columns `T a p q f l m M` under Binance's own names and
//! types (`int64` ms, `int64`, `float64`, `float64`, `int64`, `int64`, `bool`, `bool`), rows
//! sorted by `a` with each `a` once, and the day's coverage in the footer
//! ([`FACT_COVERAGE`], [`DayCoverage`]).

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;

use super::coverage::{self, DayCoverage, DayFacts};
use super::{AggTrade, TradeDay};
use crate::codec::{self, CodecError};
use crate::format::FACT_COVERAGE;

/// The columns, in order, with their types.
pub const COLUMNS: [(&str, DataType); 8] = [
    ("T", DataType::Int64),
    ("a", DataType::Int64),
    ("p", DataType::Float64),
    ("q", DataType::Float64),
    ("f", DataType::Int64),
    ("l", DataType::Int64),
    ("m", DataType::Boolean),
    ("M", DataType::Boolean),
];

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(
        COLUMNS
            .iter()
            .map(|(name, kind)| Field::new(*name, kind.clone(), false))
            .collect::<Vec<_>>(),
    ))
});

/// The schema every trade day is written with.
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

/// The trades as one batch of [`schema`].
pub fn to_batch(trades: &[AggTrade]) -> Result<RecordBatch, CodecError> {
    let ints = |f: fn(&AggTrade) -> i64| -> ArrayRef {
        Arc::new(trades.iter().map(f).collect::<Int64Array>())
    };
    let floats = |f: fn(&AggTrade) -> f64| -> ArrayRef {
        Arc::new(trades.iter().map(f).collect::<Float64Array>())
    };
    let bools = |f: fn(&AggTrade) -> bool| -> ArrayRef {
        Arc::new(trades.iter().map(|t| Some(f(t))).collect::<BooleanArray>())
    };
    Ok(RecordBatch::try_new(
        schema(),
        vec![
            ints(|t| t.time),
            ints(|t| t.id),
            floats(|t| t.price),
            floats(|t| t.qty),
            ints(|t| t.first_trade),
            ints(|t| t.last_trade),
            bools(|t| t.buyer_maker),
            bools(|t| t.best_match),
        ],
    )?)
}

/// The file of `trades` (sorted by id, each once) with `coverage`, and the facts written.
pub fn encode(
    trades: &[AggTrade],
    coverage: DayCoverage,
    extra: &BTreeMap<String, String>,
) -> Result<(Bytes, DayFacts), CodecError> {
    let facts = DayFacts::of(coverage, trades);
    let mut metadata = extra.clone();
    metadata.insert(FACT_COVERAGE.to_string(), facts.to_json());
    let bytes = codec::encode(&to_batch(trades)?, &metadata)?;
    Ok((bytes, facts))
}

/// A decoded trade day: its trades and what its footer says.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedDay {
    pub trades: Vec<AggTrade>,
    /// What the footer records; a file without it (written elsewhere) knows nothing of its
    /// day's boundaries.
    pub coverage: DayCoverage,
}

fn column<'a>(batch: &'a RecordBatch, name: &str, kind: &DataType) -> Result<&'a ArrayRef, String> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| format!("column '{name}' is missing"))?;
    if col.data_type() != kind {
        return Err(format!(
            "column '{name}' is {}, not {kind}",
            col.data_type()
        ));
    }
    if col.null_count() > 0 {
        return Err(format!("column '{name}' has {} null(s)", col.null_count()));
    }
    Ok(col)
}

/// The trades of a batch, when it has the columns and types of [`COLUMNS`].
pub fn from_batch(batch: &RecordBatch) -> Result<Vec<AggTrade>, String> {
    if batch.num_columns() != COLUMNS.len() {
        let names: Vec<&str> = batch
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        return Err(format!(
            "columns are [{}], expected exactly [T, a, p, q, f, l, m, M]",
            names.join(", ")
        ));
    }
    let int = |name| column(batch, name, &DataType::Int64).map(|c| c.as_primitive::<Int64Type>());
    let float =
        |name| column(batch, name, &DataType::Float64).map(|c| c.as_primitive::<Float64Type>());
    let boolean = |name| column(batch, name, &DataType::Boolean).map(|c| c.as_boolean());
    let (time, id, first, last) = (int("T")?, int("a")?, int("f")?, int("l")?);
    let (price, qty) = (float("p")?, float("q")?);
    let (maker, best) = (boolean("m")?, boolean("M")?);
    Ok((0..batch.num_rows())
        .map(|i| AggTrade {
            time: time.value(i),
            id: id.value(i),
            price: price.value(i),
            qty: qty.value(i),
            first_trade: first.value(i),
            last_trade: last.value(i),
            buyer_maker: maker.value(i),
            best_match: best.value(i),
        })
        .collect())
}

/// Decode a trade day's file.
pub fn decode(bytes: Bytes) -> Result<DecodedDay, CodecError> {
    let decoded = codec::decode(bytes)?;
    let trades = from_batch(&decoded.batch).map_err(CodecError::Shape)?;
    let coverage = decoded
        .fact(FACT_COVERAGE)
        .and_then(DayFacts::parse)
        .map(|f| f.coverage)
        .unwrap_or_default();
    Ok(DecodedDay { trades, coverage })
}

/// Trades within `[start, end)` (milliseconds): the rows a reader of a time range keeps.
pub fn within(trades: &[AggTrade], start: i64, end: i64) -> &[AggTrade] {
    let from = trades.partition_point(|t| t.time < start);
    let to = trades.partition_point(|t| t.time < end);
    &trades[from..to.max(from)]
}

/// What is wrong with a trade day's file as the file of `day`: its columns, order, ids,
/// times and the coverage its footer claims. Empty when nothing is.
pub fn check(day: &TradeDay, bytes: Bytes) -> Result<(Vec<String>, DayFacts), CodecError> {
    let decoded = codec::decode(bytes)?;
    let trades = match from_batch(&decoded.batch) {
        Ok(trades) => trades,
        Err(why) => return Ok((vec![why], DayFacts::default())),
    };
    let mut problems = Vec::new();
    if let Some(pair) = trades.windows(2).find(|w| w[1].id <= w[0].id) {
        problems.push(format!(
            "aggregate ids are not strictly ascending: {} then {}",
            pair[0].id, pair[1].id
        ));
    }
    if let Some(pair) = trades.windows(2).find(|w| w[1].time < w[0].time) {
        problems.push(format!(
            "times go backwards: trade {} at {} then trade {} at {}",
            pair[0].id, pair[0].time, pair[1].id, pair[1].time
        ));
    }
    if let Some(t) = trades
        .iter()
        .find(|t| t.time < day.start_ms() || t.time >= day.end_ms())
    {
        problems.push(format!(
            "trade {} at {} ms is outside the file's day {}",
            t.id, t.time, day.date
        ));
    }
    if let Some(t) = trades.iter().find(|t| {
        !(t.price.is_finite() && t.price > 0.0 && t.qty.is_finite() && t.qty > 0.0)
            || t.first_trade > t.last_trade
    }) {
        problems.push(format!(
            "trade {} has price {}, quantity {}, trades {}..{}: prices and quantities must be finite and > 0, f <= l",
            t.id, t.price, t.qty, t.first_trade, t.last_trade
        ));
    }
    let facts = DayFacts::of(
        decoded
            .fact(FACT_COVERAGE)
            .and_then(DayFacts::parse)
            .map(|f| f.coverage)
            .unwrap_or_default(),
        &trades,
    );
    if let Some(written) = decoded.fact(FACT_COVERAGE) {
        match DayFacts::parse(written) {
            None => problems.push(format!("{FACT_COVERAGE} does not parse: {written}")),
            Some(claimed) if claimed != facts => problems.push(format!(
                "{FACT_COVERAGE} claims {} but the rows say {}",
                claimed.to_json(),
                facts.to_json()
            )),
            Some(_) => {}
        }
        problems.extend(coverage::contradictions(&facts, &trades));
    }
    Ok((problems, facts))
}

/// The facts a trade day's footer records, read without decoding its rows (from a file,
/// only its footer is read); `None` when it is not such a file or records none.
pub fn footer_facts<R: parquet::file::reader::ChunkReader + 'static>(
    reader: R,
) -> Option<DayFacts> {
    let builder = codec::guarded(|| {
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(reader)
    })
    .ok()?;
    let metadata = codec::footer_metadata(builder.metadata());
    metadata
        .get(FACT_COVERAGE)
        .and_then(|text| DayFacts::parse(text))
}
