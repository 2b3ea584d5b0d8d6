//! The merge of freshly fetched rows into what a file already holds.
//!
//! Rules: rows are sorted by `datetime` with no duplicate timestamps, a newer row replaces
//! an older one at the same instant, a placeholder disappears once its session has real
//! rows, and rows another writer added are kept.

use std::collections::HashSet;

use arrow_array::{Array, RecordBatch, UInt32Array};
use chrono::NaiveDate;

use crate::calendar::NyDates;
use crate::codec::CodecError;
use crate::codec::facts::{datetimes, placeholder_mask};
use crate::codec::rows::placeholder_batch;
use crate::codec::schema::schema_for;
use crate::dataset::Dataset;

/// Check that an existing file has the dataset's columns and types, and view it under the
/// dataset's schema (field nullability and metadata may differ in files written elsewhere).
pub fn conform(dataset: &Dataset, batch: &RecordBatch) -> Result<RecordBatch, CodecError> {
    let expected = schema_for(dataset);
    let actual = batch.schema();
    let same = expected.fields().len() == actual.fields().len()
        && expected
            .fields()
            .iter()
            .zip(actual.fields())
            .all(|(e, a)| e.name() == a.name() && e.data_type() == a.data_type());
    if !same {
        let describe = |s: &arrow_schema::Schema| {
            s.fields()
                .iter()
                .map(|f| format!("{} {}", f.name(), f.data_type()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(CodecError::Shape(format!(
            "the existing file's columns [{}] are not the dataset's [{}]",
            describe(&actual),
            describe(&expected)
        )));
    }
    Ok(RecordBatch::try_new(expected, batch.columns().to_vec())?)
}

/// Merge `fresh` real rows and placeholders for `empty_sessions` (fetched, nothing there)
/// into `base`. `base` must already conform to the dataset's schema.
pub fn merge(
    dataset: &Dataset,
    base: Option<&RecordBatch>,
    fresh: &RecordBatch,
    empty_sessions: &[NaiveDate],
) -> Result<RecordBatch, CodecError> {
    let placeholders = placeholder_batch(dataset, empty_sessions)?;
    let schema = schema_for(dataset);
    let mut parts: Vec<&RecordBatch> = Vec::with_capacity(3);
    if let Some(base) = base {
        parts.push(base);
    }
    parts.push(fresh);
    parts.push(&placeholders);
    let all = arrow_select::concat::concat_batches(&schema, parts.iter().copied())?;

    let times = datetimes(&all)?;
    if times.null_count() > 0 {
        return Err(CodecError::Shape("a row has no datetime".into()));
    }
    let times = times.values();
    let missing = placeholder_mask(&all);
    let mut dates = NyDates::new();
    let sessions: Vec<NaiveDate> = times.iter().map(|t| dates.date_of(*t)).collect();
    let real_sessions: HashSet<NaiveDate> = sessions
        .iter()
        .zip(&missing)
        .filter(|(_, m)| !**m)
        .map(|(s, _)| *s)
        .collect();

    // Later parts are newer: a stable sort by time keeps their order among equal times,
    // and keeping the last row of each run of equal times lets the newest win.
    let mut order: Vec<u32> = (0..all.num_rows() as u32)
        .filter(|i| {
            let i = *i as usize;
            !(missing[i] && real_sessions.contains(&sessions[i]))
        })
        .collect();
    order.sort_by_key(|i| times[*i as usize]);
    let mut kept: Vec<u32> = Vec::with_capacity(order.len());
    for (pos, i) in order.iter().enumerate() {
        let is_last_of_run = order
            .get(pos + 1)
            .is_none_or(|next| times[*next as usize] != times[*i as usize]);
        if is_last_of_run {
            kept.push(*i);
        }
    }
    let indices = UInt32Array::from(kept);
    let columns = all
        .columns()
        .iter()
        .map(|c| arrow_select::take::take(c.as_ref(), &indices, None))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema, columns)?)
}
