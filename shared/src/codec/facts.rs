//! Row counts and time bounds of a batch, as the sidecar and the answer report them.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow_array::{Array, RecordBatch, TimestampNanosecondArray};
use arrow_schema::{DataType, TimeUnit};

use super::CodecError;
use super::schema::{DATETIME, MISSING, UTC};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchFacts {
    pub rows: usize,
    pub real_rows: usize,
    pub placeholders: usize,
    /// Smallest and largest `datetime` (UTC nanoseconds), placeholders included.
    pub min: Option<i64>,
    pub max: Option<i64>,
}

/// The `datetime` column of a batch as UTC nanoseconds, whatever its unit or time zone (a
/// naive one is UTC, as lumibot reads it). Free when it already is nanoseconds.
pub fn datetimes(batch: &RecordBatch) -> Result<TimestampNanosecondArray, CodecError> {
    let column = batch
        .column_by_name(DATETIME)
        .ok_or_else(|| CodecError::Shape("no 'datetime' column".into()))?;
    utc_nanos(column).ok_or_else(|| {
        CodecError::Shape(format!(
            "'datetime' is {}, expected a timestamp",
            column.data_type()
        ))
    })
}

/// A timestamp column of any unit as UTC nanoseconds; `None` when it is not a timestamp (or a
/// value does not fit). Arrow keeps instants as UTC epoch values in every zone, so only the
/// unit changes.
pub fn utc_nanos(column: &dyn Array) -> Option<TimestampNanosecondArray> {
    let scaled = |factor: i64, values: &dyn Fn() -> Vec<Option<i64>>| {
        values()
            .into_iter()
            .map(|v| match v {
                None => Some(None),
                Some(v) => v.checked_mul(factor).map(Some),
            })
            .collect::<Option<Vec<Option<i64>>>>()
            .map(TimestampNanosecondArray::from)
    };
    let array = match column.data_type() {
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            let times = column.as_primitive::<TimestampNanosecondType>();
            TimestampNanosecondArray::new(times.values().clone(), times.nulls().cloned())
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => scaled(1_000, &|| {
            column
                .as_primitive::<TimestampMicrosecondType>()
                .iter()
                .collect()
        })?,
        DataType::Timestamp(TimeUnit::Millisecond, _) => scaled(1_000_000, &|| {
            column
                .as_primitive::<TimestampMillisecondType>()
                .iter()
                .collect()
        })?,
        DataType::Timestamp(TimeUnit::Second, _) => scaled(1_000_000_000, &|| {
            column
                .as_primitive::<TimestampSecondType>()
                .iter()
                .collect()
        })?,
        _ => return None,
    };
    Some(array.with_timezone(UTC))
}

/// Whether each row is a placeholder (`missing` true); absent or null counts as real.
pub fn placeholder_mask(batch: &RecordBatch) -> Vec<bool> {
    match batch
        .column_by_name(MISSING)
        .and_then(|c| c.as_boolean_opt())
    {
        Some(missing) => (0..missing.len())
            .map(|i| missing.is_valid(i) && missing.value(i))
            .collect(),
        None => vec![false; batch.num_rows()],
    }
}

impl BatchFacts {
    pub fn of(batch: &RecordBatch) -> Result<Self, CodecError> {
        let times = datetimes(batch)?;
        let placeholders = placeholder_mask(batch).iter().filter(|m| **m).count();
        let valid = times.iter().flatten();
        Ok(BatchFacts {
            rows: batch.num_rows(),
            real_rows: batch.num_rows() - placeholders,
            placeholders,
            min: valid.clone().min(),
            max: valid.max(),
        })
    }

    /// The facts of a file made of the rows `self` describes followed by those `later`
    /// describes.
    pub fn followed_by(&self, later: &BatchFacts) -> BatchFacts {
        BatchFacts {
            rows: self.rows + later.rows,
            real_rows: self.real_rows + later.real_rows,
            placeholders: self.placeholders + later.placeholders,
            min: self.min.into_iter().chain(later.min).min(),
            max: self.max.into_iter().chain(later.max).max(),
        }
    }
}
