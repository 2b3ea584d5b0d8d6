//! lumibot's option-chain files (`docs/FORMAT.md`, "Other objects lumibot keeps"), as
//! lumibot 4.6.30 writes and reads them:
//!
//! ```text
//! thetadata/<asset>/option_chains/<SYM>_<YYYY-MM-DD>.parquet
//! ```
//!
//! lumibot writes `pd.DataFrame({"data": [chains_dict]}).to_parquet(path,
//! compression="snappy", engine="pyarrow")`, so the file has one column, `data`, and one row:
//! a struct pyarrow infers from the dict, its keys becoming field names in insertion order.
//!
//! ```text
//! data: struct<
//!     Multiplier: int64,                       100
//!     Exchange: string,                        "SMART"
//!     Chains: struct<
//!         CALL: struct<"2024-11-22": list<item: double>, ...>,   expirations ascending
//!         PUT:  struct<"2024-11-22": list<item: double>, ...>>,  the same expirations
//!     UnderlyingSymbol: string,                "SPY"
//!     _chain_cache_version: int64>             5
//! ```
//!
//! pyarrow infers an empty strike list as `list<item: null>`. lumibot reads the file back with
//! `pd.read_parquet(f)["data"][0]`, ignores it unless `_chain_cache_version` is at least
//! [`CHAIN_CACHE_VERSION`], and takes the latest CALL expiration as the chain's horizon.
//! [`encode`] writes the layout above (with `list<double>` even for an empty list);
//! [`decode`] reads it and the variants pyarrow produces.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{
    Array, ArrayRef, Float64Array, Int64Array, ListArray, RecordBatch, StringArray, StructArray,
};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Fields, Schema};
use bytes::Bytes;
use chrono::NaiveDate;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::codec;
use crate::format::{CHAIN_CACHE_VERSION, CHAIN_CACHE_VERSION_FIELD, CHAIN_DATA_COLUMN};

/// The chain struct's field holding the contract multiplier.
const MULTIPLIER_FIELD: &str = "Multiplier";
/// The chain struct's field holding the exchange.
const EXCHANGE_FIELD: &str = "Exchange";
/// The chain struct's field holding the CALL and PUT expirations.
const CHAINS_FIELD: &str = "Chains";
/// The field of `Chains` holding the call strikes per expiration.
const CALL_FIELD: &str = "CALL";
/// The field of `Chains` holding the put strikes per expiration.
const PUT_FIELD: &str = "PUT";
/// The chain struct's field holding the underlying's symbol.
const UNDERLYING_FIELD: &str = "UnderlyingSymbol";
/// How an expiration is spelled as a field name (`str(date)` in Python).
const EXPIRATION_FORMAT: &str = "%Y-%m-%d";

/// One option chain as lumibot keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Chain {
    /// Shares per contract (`Multiplier`, 100).
    pub multiplier: i64,
    /// `Exchange` (`SMART`).
    pub exchange: String,
    /// `UnderlyingSymbol` (`SPY`).
    pub underlying: String,
    /// `_chain_cache_version`; 0 when the file has none (as lumibot reads it).
    pub version: i64,
    /// CALL strikes per expiration, ascending.
    pub calls: BTreeMap<NaiveDate, Vec<f64>>,
    /// PUT strikes per expiration, ascending.
    pub puts: BTreeMap<NaiveDate, Vec<f64>>,
}

/// Why a chain could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The parquet file could not be written or read.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// The arrow arrays could not be built or cast.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// The chain, or the file, is not shaped as lumibot's chain; the message says how.
    #[error("{0}")]
    Shape(String),
    /// Writing the file (the shared parquet writer of `codec`).
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
}

/// A decoded chain file: the chain and the file's key-value metadata (every footer entry,
/// `ARROW:schema` and pandas' `pandas` included when present).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedChain {
    /// The chain in the file's first row.
    pub chain: Chain,
    /// The footer's key-value metadata.
    pub metadata: BTreeMap<String, String>,
}

fn shape(message: impl Into<String>) -> ChainError {
    ChainError::Shape(message.into())
}

/// `list<item: double>`, nullable as pyarrow infers every field.
fn strikes_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)))
}

/// One side (`CALL` or `PUT`): a one-row struct with a `list<double>` field per expiration,
/// in ascending order.
fn side_array(name: &str, side: &BTreeMap<NaiveDate, Vec<f64>>) -> Result<StructArray, ChainError> {
    if side.is_empty() {
        return Err(shape(format!(
            "the chain has no {name} expirations: parquet cannot store an empty struct"
        )));
    }
    let mut fields = Vec::with_capacity(side.len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(side.len());
    for (expiration, strikes) in side {
        let values = Float64Array::from(strikes.clone());
        let list = ListArray::try_new(
            Arc::new(Field::new_list_field(DataType::Float64, true)),
            OffsetBuffer::from_lengths([strikes.len()]),
            Arc::new(values),
            None,
        )?;
        fields.push(Field::new(
            expiration.format(EXPIRATION_FORMAT).to_string(),
            strikes_type(),
            true,
        ));
        columns.push(Arc::new(list));
    }
    Ok(StructArray::try_new(Fields::from(fields), columns, None)?)
}

fn struct_field(name: &str, array: &StructArray) -> Field {
    Field::new(name, array.data_type().clone(), true)
}

/// Encode a chain as lumibot's file: one `data` struct column, one row, snappy, one row
/// group, `metadata` in the footer. Refuses a chain whose CALL or PUT side has no
/// expiration (parquet cannot store an empty struct).
pub fn encode(chain: &Chain, metadata: &BTreeMap<String, String>) -> Result<Bytes, ChainError> {
    let calls = side_array(CALL_FIELD, &chain.calls)?;
    let puts = side_array(PUT_FIELD, &chain.puts)?;
    let chains = StructArray::try_new(
        Fields::from(vec![
            struct_field(CALL_FIELD, &calls),
            struct_field(PUT_FIELD, &puts),
        ]),
        vec![Arc::new(calls) as ArrayRef, Arc::new(puts)],
        None,
    )?;
    let data = StructArray::try_new(
        Fields::from(vec![
            Field::new(MULTIPLIER_FIELD, DataType::Int64, true),
            Field::new(EXCHANGE_FIELD, DataType::Utf8, true),
            struct_field(CHAINS_FIELD, &chains),
            Field::new(UNDERLYING_FIELD, DataType::Utf8, true),
            Field::new(CHAIN_CACHE_VERSION_FIELD, DataType::Int64, true),
        ]),
        vec![
            Arc::new(Int64Array::from(vec![chain.multiplier])) as ArrayRef,
            Arc::new(StringArray::from(vec![chain.exchange.as_str()])),
            Arc::new(chains),
            Arc::new(StringArray::from(vec![chain.underlying.as_str()])),
            Arc::new(Int64Array::from(vec![chain.version])),
        ],
        None,
    )?;
    let schema = Arc::new(Schema::new(vec![Field::new(
        CHAIN_DATA_COLUMN,
        data.data_type().clone(),
        true,
    )]));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(data)])?;
    Ok(codec::encode(&batch, metadata)?)
}

/// A field that must be there and not null at `row`.
fn required<'a>(
    parent: &'a StructArray,
    name: &str,
    path: &str,
    row: usize,
) -> Result<&'a ArrayRef, ChainError> {
    let column = parent
        .column_by_name(name)
        .ok_or_else(|| shape(format!("{path} has no field '{name}'")))?;
    if column.is_null(row) {
        return Err(shape(format!("{path}.{name} is null")));
    }
    Ok(column)
}

fn as_struct<'a>(array: &'a ArrayRef, path: &str) -> Result<&'a StructArray, ChainError> {
    array
        .as_struct_opt()
        .ok_or_else(|| shape(format!("{path} is {}, not a struct", array.data_type())))
}

/// An integer of any width or sign as `i64`.
fn integer(array: &ArrayRef, path: &str, row: usize) -> Result<i64, ChainError> {
    if !array.data_type().is_integer() {
        return Err(shape(format!(
            "{path} is {}, not an integer",
            array.data_type()
        )));
    }
    let cast = arrow_cast::cast(&array.slice(row, 1), &DataType::Int64)?;
    let cast = cast.as_primitive::<Int64Type>();
    if cast.is_null(0) {
        return Err(shape(format!("{path} does not fit in an int64")));
    }
    Ok(cast.value(0))
}

/// A string (`utf8`, `large_utf8` or a view).
fn string(array: &ArrayRef, path: &str, row: usize) -> Result<String, ChainError> {
    if !matches!(
        array.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    ) {
        return Err(shape(format!(
            "{path} is {}, not a string",
            array.data_type()
        )));
    }
    let cast = arrow_cast::cast(&array.slice(row, 1), &DataType::Utf8)?;
    Ok(cast.as_string::<i32>().value(0).to_string())
}

/// The strikes of one expiration: a `list` or `large_list` of numbers or nulls, the null
/// items skipped (a null list is no strikes).
fn strikes(array: &ArrayRef, path: &str, row: usize) -> Result<Vec<f64>, ChainError> {
    if array.is_null(row) {
        return Ok(Vec::new());
    }
    let items = match array.data_type() {
        DataType::List(_) => array.as_list::<i32>().value(row),
        DataType::LargeList(_) => array.as_list::<i64>().value(row),
        other => {
            return Err(shape(format!("{path} is {other}, not a list of strikes")));
        }
    };
    if !matches!(
        items.data_type(),
        DataType::Float64 | DataType::Float32 | DataType::Int64 | DataType::Int32 | DataType::Null
    ) {
        return Err(shape(format!(
            "{path} holds {} items, not float64, float32, int64, int32 or null",
            items.data_type()
        )));
    }
    let items = arrow_cast::cast(&items, &DataType::Float64)?;
    Ok(items
        .as_primitive::<Float64Type>()
        .iter()
        .flatten()
        .collect())
}

/// One side (`CALL` or `PUT`): expirations by field name, each spelled `YYYY-MM-DD`.
fn side(
    chains: &StructArray,
    name: &str,
    row: usize,
) -> Result<BTreeMap<NaiveDate, Vec<f64>>, ChainError> {
    let path = format!("{CHAIN_DATA_COLUMN}.{CHAINS_FIELD}");
    let array = required(chains, name, &path, row)?;
    let path = format!("{path}.{name}");
    let side = as_struct(array, &path)?;
    let mut out = BTreeMap::new();
    for (field, column) in side.fields().iter().zip(side.columns()) {
        let key = field.name();
        let field_path = format!("{path}.{key}");
        let expiration = NaiveDate::parse_from_str(key, EXPIRATION_FORMAT)
            .ok()
            .filter(|d| d.format(EXPIRATION_FORMAT).to_string() == *key)
            .ok_or_else(|| {
                shape(format!(
                    "{path} has a field '{key}' that is not an expiration date (YYYY-MM-DD)"
                ))
            })?;
        if out
            .insert(expiration, strikes(column, &field_path, row)?)
            .is_some()
        {
            return Err(shape(format!("{path} has the expiration '{key}' twice")));
        }
    }
    Ok(out)
}

/// The chain in the first row of a `data` column.
fn chain_of(data: &ArrayRef) -> Result<Chain, ChainError> {
    let row = 0;
    let data = as_struct(data, CHAIN_DATA_COLUMN)?;
    if data.is_null(row) {
        return Err(shape(format!(
            "the first '{CHAIN_DATA_COLUMN}' row is null"
        )));
    }
    let path = CHAIN_DATA_COLUMN;
    let multiplier = integer(
        required(data, MULTIPLIER_FIELD, path, row)?,
        &format!("{path}.{MULTIPLIER_FIELD}"),
        row,
    )?;
    let exchange = string(
        required(data, EXCHANGE_FIELD, path, row)?,
        &format!("{path}.{EXCHANGE_FIELD}"),
        row,
    )?;
    let underlying = string(
        required(data, UNDERLYING_FIELD, path, row)?,
        &format!("{path}.{UNDERLYING_FIELD}"),
        row,
    )?;
    // lumibot: `int(data.get("_chain_cache_version", 0) or 0)`.
    let version = match data.column_by_name(CHAIN_CACHE_VERSION_FIELD) {
        Some(v) if v.is_valid(row) => {
            integer(v, &format!("{path}.{CHAIN_CACHE_VERSION_FIELD}"), row)?
        }
        _ => 0,
    };
    let chains = as_struct(
        required(data, CHAINS_FIELD, path, row)?,
        &format!("{path}.{CHAINS_FIELD}"),
    )?;
    Ok(Chain {
        multiplier,
        exchange,
        underlying,
        version,
        calls: side(chains, CALL_FIELD, row)?,
        puts: side(chains, PUT_FIELD, row)?,
    })
}

/// Decode a chain file, ours or lumibot's: the chain in the first row of its `data` column
/// (as lumibot reads `["data"][0]`), fields looked up by name.
pub fn decode(bytes: Bytes) -> Result<DecodedChain, ChainError> {
    codec::guarded(|| decode_unguarded(bytes))
}

fn decode_unguarded(bytes: Bytes) -> Result<DecodedChain, ChainError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let metadata = codec::footer_metadata(builder.metadata());
    if builder
        .schema()
        .column_with_name(CHAIN_DATA_COLUMN)
        .is_none()
    {
        return Err(shape(format!(
            "no '{CHAIN_DATA_COLUMN}' column: not a chain file"
        )));
    }
    let reader = builder.with_limit(1).build()?;
    for batch in reader {
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        let data = batch
            .column_by_name(CHAIN_DATA_COLUMN)
            .ok_or_else(|| shape(format!("no '{CHAIN_DATA_COLUMN}' column")))?;
        return Ok(DecodedChain {
            chain: chain_of(data)?,
            metadata,
        });
    }
    Err(shape(format!(
        "the '{CHAIN_DATA_COLUMN}' column has no row: no chain"
    )))
}

/// The strikes of one expiration that break the rules.
fn strike_violations(name: &str, expiration: NaiveDate, strikes: &[f64], out: &mut Vec<String>) {
    let mut previous: Option<f64> = None;
    for &strike in strikes {
        if !strike.is_finite() || strike <= 0.0 {
            out.push(format!(
                "{name} {expiration}: strike {strike} is not a finite positive number"
            ));
        } else if let Some(before) = previous.filter(|&p| strike <= p) {
            out.push(format!(
                "{name} {expiration}: strike {strike} follows {before} (strikes must be strictly ascending)"
            ));
        }
        if strike.is_finite() {
            previous = Some(strike);
        }
    }
}

/// The rules a chain file must pass (as lumibot would use it): returns human-readable
/// violations, empty = valid. The version must be at least [`CHAIN_CACHE_VERSION`] (else
/// lumibot ignores the file), there must be a CALL expiration (lumibot takes the latest as
/// the chain's horizon), every strike finite, positive and strictly ascending, the
/// multiplier positive and the underlying named.
pub fn check(chain: &Chain) -> Vec<String> {
    let mut out = Vec::new();
    if chain.version < CHAIN_CACHE_VERSION {
        out.push(format!(
            "{CHAIN_CACHE_VERSION_FIELD} {} < {CHAIN_CACHE_VERSION}: lumibot ignores this chain",
            chain.version
        ));
    }
    if chain.calls.is_empty() {
        out.push(format!(
            "no {CALL_FIELD} expiration: lumibot cannot tell how far the chain reaches"
        ));
    }
    if chain.multiplier <= 0 {
        out.push(format!(
            "{MULTIPLIER_FIELD} {} is not positive",
            chain.multiplier
        ));
    }
    if chain.underlying.trim().is_empty() {
        out.push(format!("{UNDERLYING_FIELD} is empty"));
    }
    for (name, side) in [(CALL_FIELD, &chain.calls), (PUT_FIELD, &chain.puts)] {
        for (expiration, strikes) in side {
            strike_violations(name, *expiration, strikes, &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int32Array, NullArray};
    use parquet::arrow::ArrowWriter;
    use parquet::basic::Compression;

    fn d(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn spy() -> Chain {
        let calls: BTreeMap<NaiveDate, Vec<f64>> = [
            (d("2024-11-22"), vec![330.0, 335.0, 340.5]),
            (d("2024-11-29"), vec![320.0, 330.0]),
            (d("2024-12-20"), vec![300.0]),
        ]
        .into_iter()
        .collect();
        Chain {
            multiplier: 100,
            exchange: "SMART".into(),
            underlying: "SPY".into(),
            version: CHAIN_CACHE_VERSION,
            puts: calls.clone(),
            calls,
        }
    }

    fn write(batch: &RecordBatch) -> Bytes {
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
        writer.write(batch).unwrap();
        writer.close().unwrap();
        Bytes::from(out)
    }

    fn one_struct(fields: Vec<(&str, ArrayRef)>) -> StructArray {
        let (names, columns): (Vec<_>, Vec<_>) = fields.into_iter().unzip();
        let fields: Vec<Field> = names
            .iter()
            .zip(&columns)
            .map(|(n, c)| Field::new(*n, c.data_type().clone(), true))
            .collect();
        StructArray::try_new(Fields::from(fields), columns, None).unwrap()
    }

    fn batch_of(data: StructArray) -> RecordBatch {
        let schema = Schema::new(vec![Field::new(
            CHAIN_DATA_COLUMN,
            data.data_type().clone(),
            true,
        )]);
        RecordBatch::try_new(Arc::new(schema), vec![Arc::new(data)]).unwrap()
    }

    /// A one-row list of `values`, its items of the values' type.
    fn list_of(values: ArrayRef) -> ArrayRef {
        let field = Arc::new(Field::new_list_field(values.data_type().clone(), true));
        let len = values.len();
        Arc::new(
            ListArray::try_new(field, OffsetBuffer::from_lengths([len]), values, None).unwrap(),
        )
    }

    /// The chain as pyarrow infers it from lumibot's dict: an empty list as `list<null>`,
    /// here with an `Int32` version (any integer width must read) or no version at all.
    fn pyarrow_like(version: Option<ArrayRef>) -> Bytes {
        let side = || {
            Arc::new(one_struct(vec![
                (
                    "2024-11-22",
                    list_of(Arc::new(Float64Array::from(vec![330.0, 335.0]))),
                ),
                ("2024-11-29", list_of(Arc::new(NullArray::new(0)))),
            ])) as ArrayRef
        };
        let chains = Arc::new(one_struct(vec![("CALL", side()), ("PUT", side())])) as ArrayRef;
        let mut fields: Vec<(&str, ArrayRef)> = vec![
            ("Multiplier", Arc::new(Int64Array::from(vec![100]))),
            ("Exchange", Arc::new(StringArray::from(vec!["SMART"]))),
            ("Chains", chains),
            ("UnderlyingSymbol", Arc::new(StringArray::from(vec!["SPY"]))),
        ];
        if let Some(version) = version {
            fields.push((CHAIN_CACHE_VERSION_FIELD, version));
        }
        write(&batch_of(one_struct(fields)))
    }

    #[test]
    fn a_chain_round_trips_in_lumibots_layout() {
        let chain = spy();
        let bytes = encode(&chain, &BTreeMap::new()).unwrap();
        let decoded = decode(bytes.clone()).unwrap();
        assert_eq!(decoded.chain, chain);

        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
        assert_eq!(reader.metadata().num_row_groups(), 1);
        let column = reader.metadata().row_group(0).column(0);
        assert_eq!(column.compression(), Compression::SNAPPY);
        let schema = reader.schema().clone();
        let DataType::Struct(fields) = schema.field(0).data_type() else {
            panic!("data is a struct");
        };
        let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "Multiplier",
                "Exchange",
                "Chains",
                "UnderlyingSymbol",
                "_chain_cache_version"
            ]
        );
        assert_eq!(fields[0].data_type(), &DataType::Int64);
        assert_eq!(fields[1].data_type(), &DataType::Utf8);
        assert_eq!(fields[4].data_type(), &DataType::Int64);
        let DataType::Struct(sides) = fields[2].data_type() else {
            panic!("Chains is a struct");
        };
        assert_eq!(sides[0].name(), "CALL");
        assert_eq!(sides[1].name(), "PUT");
        let DataType::Struct(expirations) = sides[0].data_type() else {
            panic!("CALL is a struct");
        };
        let keys: Vec<&str> = expirations.iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            keys,
            ["2024-11-22", "2024-11-29", "2024-12-20"],
            "ascending"
        );
        assert_eq!(expirations[0].data_type(), &strikes_type());
    }

    #[test]
    fn an_empty_strike_list_round_trips() {
        let mut chain = spy();
        chain.calls.insert(d("2025-01-17"), Vec::new());
        chain.puts.insert(d("2025-01-17"), Vec::new());
        let decoded = decode(encode(&chain, &BTreeMap::new()).unwrap()).unwrap();
        assert_eq!(decoded.chain, chain);
        assert_eq!(decoded.chain.calls[&d("2025-01-17")], Vec::<f64>::new());
    }

    #[test]
    fn pyarrows_own_shape_decodes() {
        let bytes = pyarrow_like(Some(Arc::new(Int32Array::from(vec![5]))));
        let schema = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
            .unwrap()
            .schema()
            .clone();
        assert!(
            schema
                .field(0)
                .data_type()
                .to_string()
                .contains("List(Null"),
            "the empty list is stored as list<null>: {}",
            schema.field(0).data_type()
        );
        let decoded = decode(bytes).unwrap();
        let chain = decoded.chain;
        assert_eq!(chain.version, 5);
        assert_eq!(chain.multiplier, 100);
        assert_eq!(chain.exchange, "SMART");
        assert_eq!(chain.underlying, "SPY");
        assert_eq!(chain.calls[&d("2024-11-22")], vec![330.0, 335.0]);
        assert_eq!(chain.calls[&d("2024-11-29")], Vec::<f64>::new());
        assert_eq!(chain.puts, chain.calls);
        assert!(check(&chain).is_empty(), "{:?}", check(&chain));

        let unversioned = decode(pyarrow_like(None)).unwrap().chain;
        assert_eq!(unversioned.version, 0);
        let problems = check(&unversioned);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains(CHAIN_CACHE_VERSION_FIELD),
            "{problems:?}"
        );

        let null_version = decode(pyarrow_like(Some(Arc::new(Int64Array::from(vec![
            None::<i64>,
        ])))));
        assert_eq!(null_version.unwrap().chain.version, 0, "lumibot's `or 0`");
    }

    #[test]
    fn other_widths_and_null_items_decode() {
        let call = Arc::new(one_struct(vec![(
            "2024-11-22",
            list_of(Arc::new(Int32Array::from(vec![Some(330), None, Some(335)]))),
        )])) as ArrayRef;
        let put = Arc::new(one_struct(vec![(
            "2024-11-29",
            list_of(Arc::new(arrow_array::Float32Array::from(vec![1.5_f32]))),
        )])) as ArrayRef;
        let data = one_struct(vec![
            ("UnderlyingSymbol", Arc::new(StringArray::from(vec!["SPX"]))),
            (
                CHAIN_CACHE_VERSION_FIELD,
                Arc::new(arrow_array::UInt8Array::from(vec![6])),
            ),
            (
                "Chains",
                Arc::new(one_struct(vec![("PUT", put), ("CALL", call)])) as ArrayRef,
            ),
            (
                "Exchange",
                Arc::new(arrow_array::LargeStringArray::from(vec!["CBOE"])),
            ),
            (
                "Multiplier",
                Arc::new(arrow_array::Int16Array::from(vec![100])),
            ),
        ]);
        let chain = decode(write(&batch_of(data))).unwrap().chain;
        assert_eq!(chain.version, 6);
        assert_eq!(chain.exchange, "CBOE");
        assert_eq!(chain.underlying, "SPX");
        assert_eq!(chain.calls[&d("2024-11-22")], vec![330.0, 335.0]);
        assert_eq!(chain.puts[&d("2024-11-29")], vec![1.5]);
        assert!(
            !chain.calls.contains_key(&d("2024-11-29")),
            "sides keep their own keys"
        );
    }

    #[test]
    fn the_first_row_is_the_chain_and_bad_files_are_refused() {
        let first = spy();
        let mut second = spy();
        second.underlying = "QQQ".into();
        let one_row = |chain: &Chain| {
            ParquetRecordBatchReaderBuilder::try_new(encode(chain, &BTreeMap::new()).unwrap())
                .unwrap()
                .build()
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
        };
        let batch = one_row(&first);
        let two = arrow_select::concat::concat_batches(
            &batch.schema(),
            &[batch.clone(), one_row(&second)],
        )
        .unwrap();
        assert_eq!(two.num_rows(), 2);
        assert_eq!(
            decode(write(&two)).unwrap().chain,
            first,
            "the first row, as lumibot"
        );

        let empty = RecordBatch::new_empty(batch.schema());
        let err = decode(write(&empty)).unwrap_err();
        assert!(err.to_string().contains("no row"), "{err}");

        let bad_key = one_struct(vec![
            (
                "Multiplier",
                Arc::new(Int64Array::from(vec![100])) as ArrayRef,
            ),
            ("Exchange", Arc::new(StringArray::from(vec!["SMART"]))),
            (
                "Chains",
                Arc::new(one_struct(vec![
                    (
                        "CALL",
                        Arc::new(one_struct(vec![(
                            "2024-11-22x",
                            list_of(Arc::new(Float64Array::from(vec![1.0]))),
                        )])) as ArrayRef,
                    ),
                    (
                        "PUT",
                        Arc::new(one_struct(vec![(
                            "2024-11-22",
                            list_of(Arc::new(Float64Array::from(vec![1.0]))),
                        )])),
                    ),
                ])),
            ),
            ("UnderlyingSymbol", Arc::new(StringArray::from(vec!["SPY"]))),
        ]);
        let err = decode(write(&batch_of(bad_key))).unwrap_err();
        assert!(err.to_string().contains("'2024-11-22x'"), "{err}");

        let not_a_chain = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "close",
                DataType::Float64,
                true,
            )])),
            vec![Arc::new(Float64Array::from(vec![1.0]))],
        )
        .unwrap();
        let err = decode(write(&not_a_chain)).unwrap_err();
        assert!(err.to_string().contains("'data'"), "{err}");
    }

    /// A change that breaks one rule.
    type Breaker = fn(&mut Chain);

    #[test]
    fn check_catches_each_violation() {
        assert!(check(&spy()).is_empty(), "{:?}", check(&spy()));
        let cases: [(&str, Breaker); 10] = [
            ("_chain_cache_version 4 < 5", |c| c.version = 4),
            ("no CALL expiration", |c| c.calls.clear()),
            ("Multiplier 0 is not positive", |c| c.multiplier = 0),
            ("UnderlyingSymbol is empty", |c| c.underlying = " ".into()),
            ("strike NaN is not a finite", |c| {
                c.calls.insert(d("2025-01-17"), vec![1.0, f64::NAN]);
            }),
            ("strike inf is not a finite", |c| {
                c.puts.insert(d("2025-01-17"), vec![f64::INFINITY]);
            }),
            ("strike 0 is not a finite positive", |c| {
                c.calls.insert(d("2025-01-17"), vec![0.0]);
            }),
            ("strike -5 is not a finite positive", |c| {
                c.puts.insert(d("2025-01-17"), vec![-5.0]);
            }),
            ("strike 335 follows 335", |c| {
                c.calls.insert(d("2025-01-17"), vec![330.0, 335.0, 335.0]);
            }),
            ("PUT 2025-01-17: strike 330 follows 335", |c| {
                c.puts.insert(d("2025-01-17"), vec![335.0, 330.0]);
            }),
        ];
        for (expected, break_it) in cases {
            let mut chain = spy();
            break_it(&mut chain);
            let problems = check(&chain);
            assert_eq!(problems.len(), 1, "{expected}: {problems:?}");
            assert!(problems[0].contains(expected), "{expected}: {problems:?}");
        }
    }

    #[test]
    fn encode_refuses_an_empty_side() {
        let mut chain = spy();
        chain.calls.clear();
        chain.puts.clear();
        let err = encode(&chain, &BTreeMap::new()).unwrap_err();
        assert!(matches!(err, ChainError::Shape(_)), "{err}");
        assert!(err.to_string().contains("no CALL expirations"), "{err}");

        let mut chain = spy();
        chain.puts.clear();
        let err = encode(&chain, &BTreeMap::new()).unwrap_err();
        assert!(err.to_string().contains("no PUT expirations"), "{err}");
    }

    #[test]
    fn footer_metadata_round_trips() {
        let metadata: BTreeMap<String, String> = [
            ("cachefill.schema_version", "1"),
            (
                "cachefill.dataset",
                "thetadata/stock/option_chains/SPY_2024-11-15.parquet",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let decoded = decode(encode(&spy(), &metadata).unwrap()).unwrap();
        for (key, value) in &metadata {
            assert_eq!(decoded.metadata.get(key), Some(value), "{key}");
        }
        assert_eq!(decoded.chain, spy());
    }
}
