//! Row counts and time bounds of a batch, as the sidecar and the answer report them.

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampNanosecondType;
use arrow_array::{Array, RecordBatch};

use super::CodecError;
use super::schema::{DATETIME, MISSING};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchFacts {
    pub rows: usize,
    pub real_rows: usize,
    pub placeholders: usize,
    /// Smallest and largest `datetime` (UTC nanoseconds), placeholders included.
    pub min: Option<i64>,
    pub max: Option<i64>,
}

/// The `datetime` column of a batch as nanoseconds, whatever its time zone.
pub fn datetimes(
    batch: &RecordBatch,
) -> Result<&arrow_array::TimestampNanosecondArray, CodecError> {
    let column = batch
        .column_by_name(DATETIME)
        .ok_or_else(|| CodecError::Shape("no 'datetime' column".into()))?;
    column
        .as_primitive_opt::<TimestampNanosecondType>()
        .ok_or_else(|| {
            CodecError::Shape(format!(
                "'datetime' is {}, expected timestamp[ns, UTC]",
                column.data_type()
            ))
        })
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
}
