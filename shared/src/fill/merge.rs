//! The merge of freshly fetched rows into what a file already holds.
//!
//! Rules: rows are sorted by `datetime` with no duplicate timestamps, a newer row replaces
//! an older one at the same instant, a placeholder disappears once its session has real
//! rows, and rows another writer added are kept.

use std::collections::HashSet;

use arrow_array::{Array, RecordBatch, UInt32Array};
use chrono::NaiveDate;

use crate::calendar::NyDates;
use crate::codec::facts::{datetimes, placeholder_mask};
use crate::codec::rows::placeholder_batch;
use crate::codec::schema::schema_for;
use crate::codec::{CodecError, conform};
use crate::dataset::Dataset;

/// Merge `fresh` real rows and placeholders for `empty_sessions` (fetched, nothing there)
/// into `base`, a file already conformed ([`conform::conform`]). The result keeps the
/// file's layout (its columns, order and types) and adds the dataset's columns it lacks.
pub fn merge(
    dataset: &Dataset,
    base: Option<&RecordBatch>,
    fresh: &RecordBatch,
    empty_sessions: &[NaiveDate],
) -> Result<RecordBatch, CodecError> {
    let placeholders = placeholder_batch(dataset, empty_sessions)?;
    let schema = match base {
        Some(base) => conform::merged_schema(dataset, &base.schema()),
        None => schema_for(dataset),
    };
    let mut parts: Vec<RecordBatch> = Vec::with_capacity(3);
    if let Some(base) = base {
        parts.push(conform::adapt(base, &schema)?);
    }
    parts.push(conform::adapt(fresh, &schema)?);
    parts.push(conform::adapt(&placeholders, &schema)?);
    let all = arrow_select::concat::concat_batches(&schema, &parts)?;

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
