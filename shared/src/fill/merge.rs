//! The merge of freshly fetched rows into what a file already holds.
//!
//! Rules: rows are sorted by `datetime` with no duplicate timestamps, a newer row replaces
//! an older one at the same instant, a fetched session's placeholder disappears once it has
//! real rows, a fetched intraday session's edges are marked for lumibot, and rows another
//! writer added are kept.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use arrow_array::{Array, RecordBatch, UInt32Array};
use chrono::NaiveDate;

use crate::calendar::{self, NyDates};
use crate::codec::facts::{datetimes, placeholder_mask};
use crate::codec::rows::{placeholder_batch, placeholders_at};
use crate::codec::{CodecError, conform};
use crate::coverage;
use crate::dataset::Dataset;

/// Merge `fresh` real rows and placeholders for `empty_sessions` (fetched, nothing there)
/// into `base`, a file already conformed ([`conform::conform`]). The result keeps the
/// file's layout (its columns, order and types) and adds the dataset's columns it lacks.
///
/// Placeholders of the fetched sessions are replaced: a session with rows now loses its
/// old placeholder, and a fetched intraday session gets [`coverage::edge_markers`] where its
/// rows stop short of the open or the close. Placeholders of sessions not fetched are kept
/// (lumibot leaves some beside real rows).
pub fn merge(
    dataset: &Dataset,
    base: Option<&RecordBatch>,
    fresh: &RecordBatch,
    empty_sessions: &[NaiveDate],
) -> Result<RecordBatch, CodecError> {
    // The file's layout wins; a new file takes the fetched rows' (a split adjustment makes
    // `volume` a double, as lumibot's does).
    let schema = conform::merged_schema(dataset, &base.unwrap_or(fresh).schema());
    let fresh_times = datetimes(fresh)?;
    let mut dates = NyDates::new();
    let fresh_sessions: BTreeSet<NaiveDate> = fresh_times
        .iter()
        .flatten()
        .map(|t| dates.date_of(t))
        .collect();
    let fetched: HashSet<NaiveDate> = fresh_sessions
        .iter()
        .chain(empty_sessions)
        .copied()
        .collect();
    let mut parts: Vec<RecordBatch> = vec![conform::adapt(
        &placeholder_batch(dataset, empty_sessions)?,
        &schema,
    )?];
    if let Some(base) = base {
        parts.push(conform::adapt(
            &without_placeholders_of(base, &fetched)?,
            &schema,
        )?);
    }
    parts.push(conform::adapt(fresh, &schema)?);
    let merged = newest_per_instant(&arrow_select::concat::concat_batches(&schema, &parts)?)?;
    if !coverage::checks_edges(dataset) {
        return Ok(merged);
    }
    let markers = edge_markers(dataset, &merged, &fresh_sessions)?;
    if markers.num_rows() == 0 {
        return Ok(merged);
    }
    // Markers first: at an instant that already has a row, the row wins.
    let markers = conform::adapt(&markers, &schema)?;
    newest_per_instant(&arrow_select::concat::concat_batches(
        &schema,
        [&markers, &merged],
    )?)
}

/// Placeholders at the edges the real rows of `sessions` in `batch` stop short of.
fn edge_markers(
    dataset: &Dataset,
    batch: &RecordBatch,
    sessions: &BTreeSet<NaiveDate>,
) -> Result<RecordBatch, CodecError> {
    let times = datetimes(batch)?;
    let missing = placeholder_mask(batch);
    let mut dates = NyDates::new();
    let mut spans: BTreeMap<NaiveDate, (i64, i64)> = BTreeMap::new();
    // Only rows within a day of the fetched sessions can belong to them: the others are not
    // dated at all (an extend touches a few sessions of a long file).
    let (Some(first), Some(last)) = (sessions.first(), sessions.last()) else {
        return placeholders_at(dataset, Vec::new());
    };
    let day = 86_400 * 1_000_000_000_i64;
    let window = calendar::session_close_utc(*first)
        .timestamp_nanos_opt()
        .unwrap_or(i64::MIN)
        .saturating_sub(day)
        ..=calendar::session_close_utc(*last)
            .timestamp_nanos_opt()
            .unwrap_or(i64::MAX)
            .saturating_add(day);
    for i in (0..batch.num_rows())
        .filter(|i| !missing[*i] && times.is_valid(*i) && window.contains(&times.value(*i)))
    {
        let t = times.value(i);
        let session = dates.date_of(t);
        if sessions.contains(&session) {
            let span = spans.entry(session).or_insert((t, t));
            span.0 = span.0.min(t);
            span.1 = span.1.max(t);
        }
    }
    let instants = spans
        .iter()
        .flat_map(|(session, (first, last))| coverage::edge_markers(*session, *first, *last))
        .collect();
    placeholders_at(dataset, instants)
}

/// The rows sorted by `datetime`, one per instant: of rows at the same instant the last
/// (newest part, later row) wins, as a stable sort keeps their order.
fn newest_per_instant(all: &RecordBatch) -> Result<RecordBatch, CodecError> {
    let times = datetimes(all)?;
    if times.null_count() > 0 {
        return Err(CodecError::Shape("a row has no datetime".into()));
    }
    let times = times.values();
    let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
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
    take(all, kept)
}

/// `batch` without the placeholders of `sessions`.
fn without_placeholders_of(
    batch: &RecordBatch,
    sessions: &HashSet<NaiveDate>,
) -> Result<RecordBatch, CodecError> {
    let times = datetimes(batch)?;
    let missing = placeholder_mask(batch);
    let mut dates = NyDates::new();
    let keep: Vec<u32> = (0..batch.num_rows())
        .filter(|i| {
            !(missing[*i]
                && times.is_valid(*i)
                && sessions.contains(&dates.date_of(times.value(*i))))
        })
        .map(|i| i as u32)
        .collect();
    take(batch, keep)
}

fn take(batch: &RecordBatch, rows: Vec<u32>) -> Result<RecordBatch, CodecError> {
    let indices = UInt32Array::from(rows);
    let columns = batch
        .columns()
        .iter()
        .map(|c| arrow_select::take::take(c.as_ref(), &indices, None))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}
