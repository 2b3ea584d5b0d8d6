//! Reading files by column name and kind, not by position or exact type: what lumibot writes
//! varies with its history and its pandas (`docs/FORMAT.md`, "What is accepted").
//!
//! lumibot 4.6.30's columns follow the provider's response; `missing` moves when placeholders
//! are added; integer columns become doubles once a placeholder (NaN) or a split adjustment
//! touches them; pandas 3 writes `timestamp[us]` and `large_string`; a placeholder-only file
//! has null-typed value columns. [`conform`] accepts all of that, checks each known column's
//! kind, and normalizes `datetime` to UTC nanoseconds (the one column every rule and
//! coverage decision reads). Other columns keep the file's own types and order, so a file
//! another writer made keeps its layout when it is extended ([`merged_schema`], [`adapt`]).

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, new_null_array};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use super::CodecError;
use super::facts::utc_nanos;
use super::schema::{DATETIME, UTC, schema_for};
use crate::dataset::Dataset;

/// What a column holds, whatever arrow type carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Number,
    Text,
    Flag,
    Time,
}

impl Kind {
    fn of(data_type: &DataType) -> Option<Kind> {
        match data_type {
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float16
            | DataType::Float32
            | DataType::Float64 => Some(Kind::Number),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Some(Kind::Text),
            DataType::Dictionary(_, value) => Kind::of(value).filter(|k| *k == Kind::Text),
            DataType::Boolean => Some(Kind::Flag),
            DataType::Timestamp(_, _) => Some(Kind::Time),
            _ => None,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Number => "a number",
            Kind::Text => "text",
            Kind::Flag => "a boolean",
            Kind::Time => "a timestamp",
        }
    }
}

/// The columns of a file that do not fit its dataset: each one a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct SchemaMismatch(pub Vec<String>);

/// Check a decoded file of `dataset` by column name and kind, and return it with `datetime`
/// as UTC nanoseconds. Columns the dataset does not know are kept as they are; columns it
/// knows but the file lacks are not required (a placeholder-only file has almost none).
pub fn conform(dataset: &Dataset, batch: &RecordBatch) -> Result<RecordBatch, SchemaMismatch> {
    let canonical = schema_for(dataset);
    let mut problems = Vec::new();
    let schema = batch.schema();
    if schema.field_with_name(DATETIME).is_err() {
        problems.push(format!("no '{DATETIME}' column"));
    }
    for field in schema.fields() {
        let Ok(expected) = canonical.field_with_name(field.name()) else {
            continue;
        };
        let want = Kind::of(expected.data_type()).expect("canonical columns have a kind");
        let null_allowed = field.name() != DATETIME;
        match (Kind::of(field.data_type()), field.data_type()) {
            (Some(kind), _) if kind == want => {}
            (_, DataType::Null) if null_allowed => {}
            (_, found) => problems.push(format!(
                "column '{}' is {found}, expected {}",
                field.name(),
                want.describe()
            )),
        }
    }
    if !problems.is_empty() {
        return Err(SchemaMismatch(problems));
    }
    let utc_ns = DataType::Timestamp(TimeUnit::Nanosecond, Some(UTC.into()));
    let index = schema.index_of(DATETIME).expect("checked above");
    if schema.field(index).data_type() == &utc_ns {
        return Ok(batch.clone());
    }
    // A naive `datetime` is UTC, as lumibot reads it; any zone names the same instants.
    let times: ArrayRef = Arc::new(utc_nanos(batch.column(index)).ok_or_else(|| {
        SchemaMismatch(vec![format!(
            "'{DATETIME}' has values outside the nanosecond range"
        )])
    })?);
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[index] = Field::new(DATETIME, utc_ns, true);
    let mut columns = batch.columns().to_vec();
    columns[index] = times;
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| SchemaMismatch(vec![e.to_string()]))
}

/// The schema a merge of `base` (a conformed file) with fresh rows of `dataset` writes: the
/// file's columns in the file's order and types (a null-typed column takes the dataset's
/// type), then the dataset's columns the file lacks, in the dataset's order.
pub fn merged_schema(dataset: &Dataset, base: &Schema) -> SchemaRef {
    let canonical = schema_for(dataset);
    let mut fields: Vec<Field> = base
        .fields()
        .iter()
        .map(
            |f| match (f.data_type(), canonical.field_with_name(f.name())) {
                (DataType::Null, Ok(known)) => {
                    Field::new(f.name(), known.data_type().clone(), true)
                }
                _ => Field::new(f.name(), f.data_type().clone(), true),
            },
        )
        .collect();
    fields.extend(
        canonical
            .fields()
            .iter()
            .filter(|f| base.field_with_name(f.name()).is_err())
            .map(|f| f.as_ref().clone()),
    );
    Arc::new(Schema::new(fields))
}

/// `batch` under `schema`: its columns by name, cast to the schema's types; columns it lacks
/// are null.
pub fn adapt(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, CodecError> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| -> Result<ArrayRef, CodecError> {
            match batch.column_by_name(field.name()) {
                None => Ok(new_null_array(field.data_type(), batch.num_rows())),
                Some(column) if column.data_type() == field.data_type() => Ok(column.clone()),
                Some(column) => arrow_cast::cast(column, field.data_type()).map_err(|e| {
                    CodecError::Shape(format!(
                        "column '{}' ({}) cannot be written as {}: {e}",
                        field.name(),
                        column.data_type(),
                        field.data_type()
                    ))
                }),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

#[cfg(test)]
mod tests {
    use arrow_array::{BooleanArray, Float64Array, Int64Array, LargeStringArray, NullArray};
    use arrow_array::{TimestampMicrosecondArray, TimestampNanosecondArray};

    use super::*;

    fn spy_minute() -> Dataset {
        Dataset::from_json(
            r#"{"provider":"thetadata","asset_type":"stock","symbol":"SPY","timespan":"minute","datastyle":"ohlc"}"#,
        )
        .unwrap()
    }

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(columns).unwrap()
    }

    #[test]
    fn microseconds_and_any_order_are_read_by_name() {
        let t = 1_731_681_000_000_000i64; // 2024-11-15T14:30:00Z in µs
        let file = batch(vec![
            ("close", Arc::new(Float64Array::from(vec![1.0])) as ArrayRef),
            (
                "datetime",
                Arc::new(TimestampMicrosecondArray::from(vec![t]).with_timezone("UTC")),
            ),
            ("volume", Arc::new(Float64Array::from(vec![10.0]))),
            ("note", Arc::new(LargeStringArray::from(vec!["kept"]))),
            ("missing", Arc::new(BooleanArray::from(vec![false]))),
        ]);
        let conformed = conform(&spy_minute(), &file).unwrap();
        let times = conformed
            .column_by_name("datetime")
            .unwrap()
            .as_any()
            .downcast_ref::<TimestampNanosecondArray>()
            .unwrap();
        assert_eq!(times.value(0), t * 1000);
        assert_eq!(times.timezone(), Some("UTC"));
        let names: Vec<_> = conformed
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["close", "datetime", "volume", "note", "missing"]);
    }

    #[test]
    fn null_typed_placeholder_columns_pass_and_take_the_dataset_type_on_merge() {
        let file = batch(vec![
            (
                "datetime",
                Arc::new(TimestampNanosecondArray::from(vec![0]).with_timezone("UTC")) as ArrayRef,
            ),
            ("open", Arc::new(NullArray::new(1))),
            ("volume", Arc::new(NullArray::new(1))),
            ("missing", Arc::new(BooleanArray::from(vec![true]))),
        ]);
        let conformed = conform(&spy_minute(), &file).unwrap();
        let schema = merged_schema(&spy_minute(), &conformed.schema());
        assert_eq!(
            schema.field_with_name("open").unwrap().data_type(),
            &DataType::Float64
        );
        assert_eq!(
            schema.field_with_name("volume").unwrap().data_type(),
            &DataType::Int64
        );
        // The file's columns first, then the dataset's others.
        assert_eq!(schema.field(3).name(), "missing");
        assert_eq!(schema.field(4).name(), "high");
        let adapted = adapt(&conformed, &schema).unwrap();
        assert_eq!(adapted.num_columns(), schema.fields().len());
        assert!(adapted.column_by_name("vwap").unwrap().is_null(0));
    }

    #[test]
    fn a_wrong_kind_or_no_datetime_is_a_mismatch_naming_the_column() {
        let file = batch(vec![
            ("datetime", Arc::new(Int64Array::from(vec![0])) as ArrayRef),
            ("open", Arc::new(LargeStringArray::from(vec!["1.0"]))),
        ]);
        let error = conform(&spy_minute(), &file).unwrap_err();
        assert_eq!(error.0.len(), 2, "{error}");
        assert!(error.0[0].contains("'datetime'"), "{error}");
        assert!(error.0[1].contains("'open'"), "{error}");
        let no_time = batch(vec![(
            "open",
            Arc::new(Float64Array::from(vec![1.0])) as ArrayRef,
        )]);
        assert_eq!(
            conform(&spy_minute(), &no_time).unwrap_err().0,
            ["no 'datetime' column"]
        );
    }
}
