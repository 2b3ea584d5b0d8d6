//! The merge of freshly fetched rows into what a file already holds.
//!
//! Rules: rows are sorted by `datetime` with no duplicate timestamps, a newer row replaces
//! an older one at the same instant, a fetched session's placeholder disappears once it has
//! real rows, a fetched intraday session's edges are marked for lumibot, and rows another
//! writer added are kept.
//!
//! [`merge`] applies them to a whole file at once; a [`Merger`] applies them a span of time
//! at a time, so that a long fill never holds all its fetched rows decoded
//! (`docs/ARCHITECTURE.md` §6).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use arrow_array::{Array, RecordBatch, TimestampNanosecondArray, UInt32Array};
use arrow_buffer::BooleanBuffer;
use arrow_schema::{Schema, SchemaRef};
use chrono::{NaiveDate, NaiveTime};

use crate::calendar::{self, NyDates};
use crate::codec::facts::{datetimes, placeholder_mask};
use crate::codec::rows::{placeholder_batch, placeholder_instant, placeholders_at};
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
///
/// This merges a whole file at once; the fill engine merges long files piece by piece with
/// a [`Merger`], which gives the same rows.
pub fn merge(
    dataset: &Dataset,
    base: Option<&RecordBatch>,
    fresh: &RecordBatch,
    empty_sessions: &[NaiveDate],
) -> Result<RecordBatch, CodecError> {
    let schema = schema_of_merge(dataset, base, &fresh.schema());
    let mut dates = NyDates::new();
    let fetched: HashSet<NaiveDate> = datetimes(fresh)?
        .iter()
        .flatten()
        .map(|t| dates.date_of(t))
        .chain(empty_sessions.iter().copied())
        .collect();
    Ok(merge_part(dataset, &schema, base, fresh, empty_sessions, &fetched)?.batch)
}

/// The layout of a merge's result: the file's wins; a new file takes the fetched rows' (a
/// split adjustment makes `volume` a double, as lumibot's does).
fn schema_of_merge(dataset: &Dataset, base: Option<&RecordBatch>, fresh: &Schema) -> SchemaRef {
    match base {
        Some(base) => conform::merged_schema(dataset, &base.schema()),
        None => conform::merged_schema(dataset, fresh),
    }
}

/// Merged rows, and which of them are fetched rows (as opposed to the file's rows,
/// placeholders and edge markers).
#[derive(Debug, Clone)]
pub struct Part {
    pub batch: RecordBatch,
    pub fetched_rows: BooleanBuffer,
}

/// [`merge`] of rows that all fall in one span of time, under `schema`; `fetched` are all the
/// sessions the fill fetched (their placeholders in `base` are replaced).
fn merge_part(
    dataset: &Dataset,
    schema: &SchemaRef,
    base: Option<&RecordBatch>,
    fresh: &RecordBatch,
    empty_sessions: &[NaiveDate],
    fetched: &HashSet<NaiveDate>,
) -> Result<Part, CodecError> {
    let fresh_times = datetimes(fresh)?;
    let mut dates = NyDates::new();
    let fresh_sessions: BTreeSet<NaiveDate> = fresh_times
        .iter()
        .flatten()
        .map(|t| dates.date_of(t))
        .collect();
    let mut parts: Vec<RecordBatch> = vec![conform::adapt(
        &placeholder_batch(dataset, empty_sessions)?,
        schema,
    )?];
    if let Some(base) = base {
        parts.push(conform::adapt(
            &without_placeholders_of(base, fetched)?,
            schema,
        )?);
    }
    // Rows at and after this index of the concatenation are fetched rows.
    let first_fetched = parts.iter().map(RecordBatch::num_rows).sum::<usize>();
    parts.push(conform::adapt(fresh, schema)?);
    let all = arrow_select::concat::concat_batches(schema, &parts)?;
    drop(parts);
    let kept = newest_per_instant(&all)?;
    let is_fetched: Vec<bool> = kept.iter().map(|i| *i as usize >= first_fetched).collect();
    let merged = take(&all, kept)?;
    drop(all);
    if !coverage::checks_edges(dataset) {
        return Ok(Part {
            batch: merged,
            fetched_rows: BooleanBuffer::from(is_fetched),
        });
    }
    let markers = edge_markers(dataset, &merged, &fresh_sessions)?;
    if markers.num_rows() == 0 {
        return Ok(Part {
            batch: merged,
            fetched_rows: BooleanBuffer::from(is_fetched),
        });
    }
    // Markers first: at an instant that already has a row, the row wins.
    let markers = conform::adapt(&markers, schema)?;
    let n_markers = markers.num_rows();
    let all = arrow_select::concat::concat_batches(schema, [&markers, &merged])?;
    let kept = newest_per_instant(&all)?;
    let fetched_rows = kept
        .iter()
        .map(|i| {
            (*i as usize)
                .checked_sub(n_markers)
                .is_some_and(|row| is_fetched[row])
        })
        .collect();
    Ok(Part {
        batch: take(&all, kept)?,
        fetched_rows,
    })
}

/// The earliest instant (UTC nanoseconds) a row of `session` or of a later session can have
/// in a merge: its New York midnight, or its placeholder's instant when that comes first
/// (lumibot's Polygon placeholders sit at 04:56 UTC, the evening before in New York in
/// winter). Edge markers fall within the session's New York day.
pub fn first_instant(dataset: &Dataset, session: NaiveDate) -> i64 {
    let midnight = calendar::ny_wall_to_utc(session, NaiveTime::MIN)
        .timestamp_nanos_opt()
        .unwrap_or(i64::MIN);
    midnight.min(placeholder_instant(dataset, session))
}

/// A merge handed out in time order, part by part, so that a long fill holds one part of
/// decoded rows at a time rather than all of them: the file's rows are all there from the
/// start; fetched rows and sessions fetched without rows are added ([`Merger::add_rows`], [`Merger::add_empty`]) as they
/// come; [`Merger::take_before`] merges everything before an instant no later addition can
/// reach.
///
/// The parts, concatenated, are exactly [`merge`] of everything added, provided no addition
/// after a `take_before(cut)` has a row or a placeholder before `cut`, and (for datasets
/// with edge markers) every cut is a New York midnight, so that one part holds all the rows
/// of a session: [`first_instant`] of the next unit's first session is such a cut when
/// units are fetched in session order.
#[derive(Debug)]
pub struct Merger<'a> {
    dataset: &'a Dataset,
    schema: SchemaRef,
    fetched: HashSet<NaiveDate>,
    base: Option<SortedRows>,
    /// Fetched rows added but not handed out yet, in the order they came.
    carry: Vec<RecordBatch>,
    carry_rows: usize,
    /// Sessions fetched without rows whose placeholders are not handed out yet.
    empty: Vec<NaiveDate>,
}

/// The file's rows in stable `datetime` order, and how many were handed out.
#[derive(Debug)]
struct SortedRows {
    batch: RecordBatch,
    times: TimestampNanosecondArray,
    order: Vec<u32>,
    next: usize,
}

impl<'a> Merger<'a> {
    /// A merge into `base` (conformed, adjusted) of fetched rows of layout `fresh`, for a
    /// fill that fetched the sessions `fetched`.
    pub fn new(
        dataset: &'a Dataset,
        base: Option<RecordBatch>,
        fresh: &Schema,
        fetched: &[NaiveDate],
    ) -> Result<Self, CodecError> {
        let schema = schema_of_merge(dataset, base.as_ref(), fresh);
        let base = base
            .map(|batch| -> Result<SortedRows, CodecError> {
                let times = datetimes(&batch)?;
                if times.null_count() > 0 {
                    return Err(CodecError::Shape("a row has no datetime".into()));
                }
                let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
                order.sort_by_key(|i| times.value(*i as usize));
                Ok(SortedRows {
                    batch,
                    times,
                    order,
                    next: 0,
                })
            })
            .transpose()?;
        Ok(Merger {
            dataset,
            schema,
            fetched: fetched.iter().copied().collect(),
            base,
            carry: Vec::new(),
            carry_rows: 0,
            empty: Vec::new(),
        })
    }

    /// The layout of the merged rows.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Add fetched rows (in any layout [`conform::adapt`] takes to the merge's).
    pub fn add_rows(&mut self, fresh: &RecordBatch) -> Result<(), CodecError> {
        if fresh.num_rows() > 0 {
            self.carry_rows += fresh.num_rows();
            self.carry.push(conform::adapt(fresh, &self.schema)?);
        }
        Ok(())
    }

    /// Add sessions fetched without rows (they get placeholders).
    pub fn add_empty(&mut self, sessions: &[NaiveDate]) {
        self.empty.extend_from_slice(sessions);
    }

    /// Fetched rows added and not handed out yet.
    pub fn pending_rows(&self) -> usize {
        self.carry_rows
    }

    /// Merge and hand out every row before `cut` (UTC nanoseconds); `None`: all that is left.
    pub fn take_before(&mut self, cut: Option<i64>) -> Result<Part, CodecError> {
        let before = |t: i64| cut.is_none_or(|cut| t < cut);
        let carried = match self.carry.len() {
            1 => self.carry.pop().expect("one batch"),
            _ => arrow_select::concat::concat_batches(&self.schema, &self.carry)?,
        };
        self.carry.clear();
        let times = datetimes(&carried)?;
        let (now, later): (Vec<u32>, Vec<u32>) = (0..carried.num_rows() as u32)
            .partition(|i| !times.is_valid(*i as usize) || before(times.value(*i as usize)));
        self.carry_rows = later.len();
        let fresh = if later.is_empty() {
            carried
        } else {
            self.carry.push(take(&carried, later)?);
            take(&carried, now)?
        };
        let (empty, left): (Vec<NaiveDate>, Vec<NaiveDate>) = self
            .empty
            .iter()
            .partition(|d| before(placeholder_instant(self.dataset, **d)));
        self.empty = left;
        let base = match &mut self.base {
            Some(sorted) => {
                let end = sorted.next
                    + sorted.order[sorted.next..]
                        .partition_point(|i| before(sorted.times.value(*i as usize)));
                let rows = &sorted.order[sorted.next..end];
                sorted.next = end;
                // A file is usually sorted already: its span is then a slice, not a copy.
                let contiguous = rows.windows(2).all(|w| w[1] == w[0] + 1);
                Some(match rows.first() {
                    Some(first) if contiguous => sorted.batch.slice(*first as usize, rows.len()),
                    _ => take(&sorted.batch, rows.to_vec())?,
                })
            }
            None => None,
        };
        merge_part(
            self.dataset,
            &self.schema,
            base.as_ref(),
            &fresh,
            &empty,
            &self.fetched,
        )
    }
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

/// Which rows to keep, sorted by `datetime`, one per instant: of rows at the same instant
/// the last (newest part, later row) wins, as a stable sort keeps their order.
fn newest_per_instant(all: &RecordBatch) -> Result<Vec<u32>, CodecError> {
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
    Ok(kept)
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
    if keep.len() == batch.num_rows() {
        return Ok(batch.clone());
    }
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
