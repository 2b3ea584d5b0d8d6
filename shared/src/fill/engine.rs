//! The fill engine (`docs/ARCHITECTURE.md` §6, §7): coverage → missing sessions → lease →
//! re-read → fetch only the missing sessions → normalize → merge → self-validate →
//! conditional PUT of the parquet, then its sidecar → release the lease → answer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, TimestampNanosecondArray};
use arrow_buffer::{BooleanBuffer, BooleanBufferBuilder};
use arrow_schema::SchemaRef;
use bytes::Bytes;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use futures::{StreamExt, TryStreamExt};
use parquet::arrow::arrow_reader::ArrowReaderMetadata;

use super::answer::{FillAnswer, FillError, FillStatus};
use super::lease::{self, Acquire, Lease};
use super::merge::{self, Merger};
use super::reference::Actions;
use super::request::FillRequest;
use crate::calendar;
use crate::calendar::NyDates;
use crate::clock::{Clock, SystemClock};
use crate::codec::facts::datetimes;
use crate::codec::rows::rows_to_batch;
use crate::codec::schema::{DATETIME, Layout, MISSING, SPLIT_ADJUSTED, UTC};
use crate::codec::{self, BatchFacts, CodecError, Rows, Sidecar, conform};
use crate::corporate::{self, CorporateActions};
use crate::coverage::{self, Coverage, Outline};
use crate::dataset::{Dataset, Payload};
use crate::format::{self, JSON_CONTENT_TYPE, PARQUET_CONTENT_TYPE, SIDECAR_SUFFIX};
use crate::keys::KeyLayout;
use crate::providers::{FetchRequest, Provider};
use crate::pyfmt;
use crate::rules::{self, Rule, Violation};
use crate::storage::{
    ObjectMeta, ObjectStore, PutMode, PutOptions, PutResult, StorageError, etags_equal,
};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Bucket name reported in answers.
    pub bucket: String,
    pub layout: KeyLayout,
    /// How long a lease protects a fill in progress (function timeout plus a margin).
    pub lease_ttl: StdDuration,
    /// Upstream units in flight at once; `None` uses the provider's own limit.
    pub fetch_concurrency: Option<usize>,
    /// Conditional writes attempted before giving up with `StorageConflict`.
    pub max_write_attempts: u32,
    /// Backoff of a caller waiting for another invocation's fill.
    pub poll_initial: StdDuration,
    pub poll_max: StdDuration,
    /// Identifies this process in leases.
    pub owner: String,
}

impl EngineConfig {
    pub fn new(bucket: impl Into<String>, layout: KeyLayout) -> Self {
        EngineConfig {
            bucket: bucket.into(),
            layout,
            lease_ttl: StdDuration::from_secs(960),
            fetch_concurrency: None,
            max_write_attempts: 8,
            poll_initial: StdDuration::from_millis(50),
            poll_max: StdDuration::from_secs(1),
            owner: format!("pid-{}-{:08x}", std::process::id(), fastrand::u32(..)),
        }
    }
}

/// Fetched rows a fill merges and encodes at a time. Units are fetched in session order and
/// their rows gathered until they hold this many (or the fill has fetched everything), then
/// merged with the file's rows of the same span of time and encoded, so that a fill holds
/// about this many decoded fetched rows however long its range (`docs/ARCHITECTURE.md` §6).
const MERGE_CHUNK_ROWS: usize = 64 * 1024;

/// Tries at releasing a fill's lease before leaving it to expire.
const RELEASE_ATTEMPTS: usize = 3;

/// The object at a dataset's key, as read or as written: what an answer and a sidecar say.
#[derive(Debug, Clone)]
struct Stored {
    bytes: Bytes,
    /// The bytes' sha256, once computed (a written object's always is).
    sha256: Option<String>,
    meta: ObjectMeta,
    coverage: Coverage,
    facts: BatchFacts,
}

/// The object at a dataset's key as last read: its footer, and what coverage, facts and
/// adjustment are decided by (the [`Outline`] our footer records, or else the
/// [`OUTLINE_COLUMNS`] of every row, decoded); the other columns are decoded only when rows
/// are merged into them ([`Current::rows`]).
#[derive(Debug, Clone)]
struct Current {
    stored: Stored,
    footer: ArrowReaderMetadata,
    /// The file's schema conformed to its dataset (as its rows would be).
    conformed: SchemaRef,
    /// The NY session of the file's last row.
    last_session: Option<NaiveDate>,
    /// No row lacks a `datetime`.
    datetime_complete: bool,
    /// Written by cachefill (its footer facts are there).
    ours: bool,
    /// Day bars: the date the rows marked `_split_adjusted` were adjusted as of, and
    /// whether some real rows are not adjusted at all.
    adjusted_as_of: Option<NaiveDate>,
    unadjusted: bool,
}

/// What a fill under the lease carries from one write attempt to the next.
struct Job<'a> {
    request: &'a FillRequest,
    key: &'a str,
    missing: Vec<NaiveDate>,
    provider_expiration: Option<NaiveDate>,
    now: DateTime<Utc>,
    /// Corporate actions to adjust day bars with: `None` until the first rows are merged
    /// (which, for any fill shorter than a chunk, is after all its bars were fetched).
    actions: Option<Option<Actions>>,
    /// Upstream requests made, retries included.
    requests: u64,
    /// Fetched sessions without rows (placeholders), as the units came back.
    empty_sessions: Vec<NaiveDate>,
}

impl Current {
    /// Every column of every row, conformed.
    fn rows(&self, dataset: &Dataset, key: &str) -> Result<RecordBatch, FillError> {
        let decoded = codec::decode_columns(self.stored.bytes.clone(), &self.footer, None)
            .map_err(|source| FillError::Unreadable {
                key: key.to_string(),
                source,
            })?;
        conform::conform(dataset, &decoded.batch).map_err(|source| FillError::NotExtendable {
            key: key.to_string(),
            source,
        })
    }
}

/// The NY session of the last row of an outline batch.
fn last_session_of(outline: &RecordBatch) -> Option<NaiveDate> {
    let times = datetimes(outline).ok()?;
    let last = times.iter().flatten().max()?;
    let missing = codec::facts::placeholder_mask(outline);
    let index = times.iter().position(|t| t == Some(last))?;
    Some(coverage::row_session(
        &mut NyDates::new(),
        last,
        missing[index],
    ))
}

/// The columns of a file a fill reads before it knows whether it merges into the file.
const OUTLINE_COLUMNS: [&str; 3] = [DATETIME, MISSING, SPLIT_ADJUSTED];

impl Job<'_> {
    fn adjustment(&self) -> Option<&Actions> {
        self.actions.as_ref().and_then(Option::as_ref)
    }
}

/// A file a write attempt encoded, with what the next attempt needs when the conditional
/// write is lost: the same fetched rows are then merged into the newer object, and they are
/// taken back out of this file (kept encoded, so a retry costs no more memory than the
/// first attempt).
#[derive(Debug)]
struct Draft {
    bytes: Bytes,
    sha256: String,
    coverage: Coverage,
    facts: BatchFacts,
    /// Which rows of the file are fetched rows.
    fetched_rows: BooleanBuffer,
}

/// The merged parts of a file as they come: each self-checked, then encoded; of each row
/// only its `datetime` and `missing` are kept, for the coverage and the facts of the whole
/// file (9 bytes a row, against some 90 for a decoded minute bar).
struct Encoding {
    encoder: codec::Encoder,
    /// The coverage and facts of the row groups copied from the file, when it appends: of
    /// them, only the last `datetime` is kept ([`Encoding::last`]).
    kept: Option<(Coverage, BatchFacts)>,
    /// `datetime` and `missing` of the rows encoded (not the copied ones).
    times: Vec<i64>,
    missing: BooleanBufferBuilder,
    /// Which rows of the whole file (copied ones included) are fetched rows.
    fetched_rows: BooleanBufferBuilder,
}

impl Encoding {
    fn new(schema: SchemaRef) -> Result<Self, FillError> {
        Ok(Encoding {
            encoder: codec::Encoder::new(schema).map_err(FillError::codec("encoding"))?,
            kept: None,
            times: Vec::new(),
            missing: BooleanBufferBuilder::new(0),
            fetched_rows: BooleanBufferBuilder::new(0),
        })
    }

    /// A file that starts with `current`'s row groups, copied, and their coverage and facts.
    fn appending(schema: SchemaRef, current: &Current) -> Result<Self, FillError> {
        let encoder =
            codec::Encoder::appending(schema, &current.stored.bytes, current.footer.metadata())
                .map_err(FillError::codec("encoding"))?;
        let rows = current.stored.facts.rows;
        let mut fetched_rows = BooleanBufferBuilder::new(rows);
        fetched_rows.append_n(rows, false);
        Ok(Encoding {
            encoder,
            kept: Some((current.stored.coverage.clone(), current.stored.facts)),
            times: Vec::new(),
            missing: BooleanBufferBuilder::new(0),
            fetched_rows,
        })
    }

    /// The `datetime` of the last row in the file so far.
    fn last(&self) -> Option<i64> {
        self.times
            .last()
            .copied()
            .or_else(|| self.kept.as_ref().and_then(|(_, facts)| facts.max))
    }

    /// Check the rows of `part` by the validator's row rules and encode them; a violation
    /// fails the fill before anything is written.
    fn append(
        &mut self,
        dataset: &Dataset,
        key: &str,
        part: merge::Part,
        now: DateTime<Utc>,
    ) -> Result<(), FillError> {
        let mut violations = rules::check_batch(dataset, &part.batch, now);
        let times = datetimes(&part.batch).map_err(FillError::codec("merge"))?;
        // Within a part the rules see the order; across parts it is checked here.
        if let (Some(last), Some(first)) = (self.last(), times.values().first().copied())
            && first <= last
        {
            let rule = if first == last {
                Rule::DuplicateTimestamp
            } else {
                Rule::Unsorted
            };
            violations.push(Violation::new(
                rule,
                format!(
                    "a merged part starts at {}, not after the row before it at {}",
                    pyfmt::pandas_utc_isoformat(first),
                    pyfmt::pandas_utc_isoformat(last)
                ),
            ));
        }
        if !violations.is_empty() {
            return Err(FillError::SelfCheck {
                key: key.to_string(),
                violations,
            });
        }
        self.encoder
            .write(&part.batch)
            .map_err(FillError::codec("encoding"))?;
        // The merge leaves no row without a `datetime`.
        self.times.extend_from_slice(times.values());
        self.missing
            .append_slice(&codec::facts::placeholder_mask(&part.batch));
        self.fetched_rows.append_buffer(&part.fetched_rows);
        Ok(())
    }

    /// The encoder (the footer still to write), the coverage (`provisional` as in
    /// [`Coverage::of_batch`]) and facts of the whole file, and which rows are fetched rows.
    fn finish(
        mut self,
        dataset: &Dataset,
        provisional: BTreeSet<NaiveDate>,
    ) -> Result<(codec::Encoder, Coverage, BatchFacts, BooleanBuffer), FillError> {
        let times = TimestampNanosecondArray::from(self.times).with_timezone(UTC);
        let missing = BooleanArray::new(self.missing.finish(), None);
        let outline = RecordBatch::try_from_iter([
            (DATETIME, Arc::new(times) as ArrayRef),
            (MISSING, Arc::new(missing) as ArrayRef),
        ])
        .map_err(|e| FillError::codec("coverage")(e.into()))?;
        let edges = coverage::checks_edges(dataset);
        let facts = BatchFacts::of(&outline).map_err(FillError::codec("answer"))?;
        // An appending file's new rows are all on sessions after its copied rows' sessions.
        let (coverage, facts) = match self.kept {
            Some((kept, kept_facts)) => (
                kept.followed_by(
                    Coverage::of_batch(&outline, BTreeSet::new(), edges)
                        .map_err(FillError::codec("coverage"))?,
                    provisional,
                ),
                kept_facts.followed_by(&facts),
            ),
            None => (
                Coverage::of_batch(&outline, provisional, edges)
                    .map_err(FillError::codec("coverage"))?,
                facts,
            ),
        };
        Ok((self.encoder, coverage, facts, self.fetched_rows.finish()))
    }
}

/// An [`Encoding`] that encodes each part on the blocking pool while the fill's task goes on
/// fetching and merging the next one; at most one part is in flight, so parts are encoded in
/// order and a part's rows are held only until it is encoded.
struct EncodingAhead {
    ready: Option<Encoding>,
    busy: Option<tokio::task::JoinHandle<(Encoding, Result<(), FillError>)>>,
}

impl EncodingAhead {
    fn new(encoding: Encoding) -> Self {
        EncodingAhead {
            ready: Some(encoding),
            busy: None,
        }
    }

    /// Encode `part` ([`Encoding::append`]) once the part before it is encoded: on the
    /// blocking pool when more parts follow (its error is that of the next call or of
    /// [`EncodingAhead::finish`]), in place when it is the last, as nothing is left to do
    /// beside it.
    async fn append(
        &mut self,
        dataset: &Dataset,
        key: &str,
        part: merge::Part,
        now: DateTime<Utc>,
        more_follow: bool,
    ) -> Result<(), FillError> {
        let mut encoding = self.wait().await?;
        if !more_follow {
            encoding.append(dataset, key, part, now)?;
            self.ready = Some(encoding);
            return Ok(());
        }
        let (dataset, key) = (dataset.clone(), key.to_string());
        self.busy = Some(tokio::task::spawn_blocking(move || {
            let encoded = encoding.append(&dataset, &key, part, now);
            (encoding, encoded)
        }));
        Ok(())
    }

    /// The encoding, every part given to it encoded.
    async fn finish(mut self) -> Result<Encoding, FillError> {
        self.wait().await
    }

    async fn wait(&mut self) -> Result<Encoding, FillError> {
        if let Some(encoding) = self.ready.take() {
            return Ok(encoding);
        }
        let busy = self.busy.take().expect("an encoding is ready or busy");
        match busy.await {
            Ok((encoding, encoded)) => encoded.map(|()| encoding),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(FillError::codec("encoding")(CodecError::Shape(format!(
                "the encoding of a part did not finish: {e}"
            )))),
        }
    }
}

/// Units a fill fetches, in session order, and where its file may be cut after each.
struct Plan {
    units: Vec<Vec<NaiveDate>>,
    /// `cuts[i]`: the instant before which the file is complete once units `..=i` are in
    /// ([`merge::first_instant`] of the next unit's first session); `None` after the last
    /// unit, or where units overlap.
    cuts: Vec<Option<i64>>,
    /// Missing sessions no unit fetches: placeholders, as when a unit returns nothing.
    unplanned: Vec<NaiveDate>,
}

impl Plan {
    fn new(dataset: &Dataset, mut units: Vec<Vec<NaiveDate>>, missing: &[NaiveDate]) -> Plan {
        units.retain(|u| !u.is_empty());
        // In session order, so that the file is merged and encoded from its start while
        // later units are still being fetched.
        units.sort_by_key(|u| u[0]);
        let mut last_so_far: Option<NaiveDate> = None;
        let cuts = (0..units.len())
            .map(|i| {
                let last = units[i].iter().max().copied();
                last_so_far = last_so_far.max(last);
                let next = units.get(i + 1)?[0];
                last_so_far
                    .is_some_and(|l| l < next)
                    .then(|| merge::first_instant(dataset, next))
            })
            .collect();
        let planned: BTreeSet<NaiveDate> = units.iter().flatten().copied().collect();
        let unplanned = missing
            .iter()
            .copied()
            .filter(|d| !planned.contains(d))
            .collect();
        Plan {
            units,
            cuts,
            unplanned,
        }
    }
}

/// How far a fill has come, for progress displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Fetching `total` upstream units; `done` finished so far.
    Fetching { done: usize, total: usize },
    /// Merging, validating and writing.
    Writing,
}

type Observer = Arc<dyn Fn(Progress) + Send + Sync>;

/// Fills datasets in a store from a provider.
pub struct FillEngine<S, P> {
    store: S,
    provider: P,
    config: EngineConfig,
    clock: Arc<dyn Clock>,
    observer: Option<Observer>,
}

impl<S: std::fmt::Debug, P: std::fmt::Debug> std::fmt::Debug for FillEngine<S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FillEngine")
            .field("store", &self.store)
            .field("provider", &self.provider)
            .field("config", &self.config)
            .finish()
    }
}

impl<S: ObjectStore, P: Provider> FillEngine<S, P> {
    pub fn new(store: S, provider: P, config: EngineConfig) -> Self {
        FillEngine {
            store,
            provider,
            config,
            clock: Arc::new(SystemClock),
            observer: None,
        }
    }

    /// Report progress of every fill to `observer`.
    pub fn with_observer(mut self, observer: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    fn report(&self, progress: Progress) {
        if let Some(observer) = &self.observer {
            observer(progress);
        }
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn provider(&self) -> &P {
        &self.provider
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Make the object at the request's key cover the request's sessions.
    pub async fn fill(&self, request: &FillRequest) -> Result<FillAnswer, FillError> {
        let started = Instant::now();
        let dataset = &request.dataset;
        self.provider.supports(dataset)?;
        let key = self.config.layout.data_key(dataset);
        let wanted =
            coverage::wanted_sessions(dataset, request.start, request.end, self.clock.now())?;
        if let Some(hit) = self.hit_from_head(dataset, &key, &wanted, started).await? {
            return Ok(hit);
        }
        let mut current = self.read_current(dataset, &key).await?;
        let mut actions = None;
        if missing_of(current.as_ref(), &wanted).is_empty() {
            actions = self.stale_adjustment(dataset, current.as_ref()).await?;
            if actions.is_none() {
                return self
                    .answer_covered(request, &key, current.as_ref(), &wanted, started)
                    .await;
            }
        }
        let lease = match self
            .acquire_or_wait(dataset, &key, &wanted, &mut current)
            .await?
        {
            Some(lease) => lease,
            None => {
                return self
                    .answer_covered(request, &key, current.as_ref(), &wanted, started)
                    .await;
            }
        };
        let result = self
            .fill_holding(request, &key, &wanted, current, actions, started)
            .await;
        // A release lost to an outage leaves the next caller waiting out the lease's TTL:
        // tried a few times (a release that landed unanswered is then a 412, which is fine).
        for attempt in 1..=RELEASE_ATTEMPTS {
            match lease::release(&self.store, &lease, self.clock.now()).await {
                Ok(()) => break,
                Err(e) if attempt == RELEASE_ATTEMPTS => {
                    tracing::warn!(lease = %lease.key, error = %e, "could not release the lease; it will expire");
                }
                Err(_) => {}
            }
        }
        result
    }

    /// The fill proper, under the lease; `read` is the object as read before it.
    async fn fill_holding(
        &self,
        request: &FillRequest,
        key: &str,
        wanted: &[NaiveDate],
        read: Option<Current>,
        actions: Option<Actions>,
        started: Instant,
    ) -> Result<FillAnswer, FillError> {
        let dataset = &request.dataset;
        // A peer may have filled the range between our first read and the lease.
        let mut current = self.unless_changed(dataset, key, read).await?;
        let missing = missing_of(current.as_ref(), wanted);
        if missing.is_empty() && actions.is_none() {
            return self
                .answer_covered(request, key, current.as_ref(), wanted, started)
                .await;
        }
        let provider_expiration = if missing.is_empty() {
            request.provider_expiration
        } else {
            self.provider
                .query_expiration(dataset, request.provider_expiration)
                .await?
        };
        let mut job = Job {
            request,
            key,
            missing,
            provider_expiration,
            now: self.clock.now(),
            actions: actions.map(Some),
            requests: 0,
            empty_sessions: Vec::new(),
        };
        let mut attempts = 0;
        let mut previous: Option<Draft> = None;
        let (written, put) = loop {
            attempts += 1;
            let draft = match &previous {
                None => self.draft_from_upstream(&mut job, current.as_ref()).await?,
                Some(previous) => self.draft_again(&mut job, current.as_ref(), previous)?,
            };
            let mode = match &current {
                Some(c) => PutMode::IfMatch(c.stored.meta.etag.clone()),
                None => PutMode::IfAbsent,
            };
            let options = PutOptions {
                mode,
                metadata: coverage::object_metadata(&draft.coverage, &draft.sha256),
                content_type: Some(PARQUET_CONTENT_TYPE.into()),
                sha256: Some(draft.sha256.clone()),
            };
            match self.store.put(key, draft.bytes.clone(), options).await {
                Ok(put) => {
                    break (
                        Stored {
                            meta: ObjectMeta {
                                key: key.to_string(),
                                size: 0,
                                etag: put.etag.clone(),
                                version_id: put.version_id.clone(),
                                last_modified: job.now,
                                metadata: BTreeMap::new(),
                            },
                            bytes: draft.bytes,
                            sha256: Some(draft.sha256),
                            coverage: draft.coverage,
                            facts: draft.facts,
                        },
                        put,
                    );
                }
                Err(StorageError::PreconditionFailed { .. })
                    if attempts < self.config.max_write_attempts =>
                {
                    // The object read is dropped before the newer one is decoded.
                    drop(current.take());
                    current = self.read_current(dataset, key).await?;
                    // Our own write, landed with its answer lost (the retry of it then met the
                    // version it had written): it is the one written, not to be put again.
                    if let Some(ours) = current
                        .as_ref()
                        .filter(|c| sha256_of(&c.stored) == draft.sha256)
                    {
                        tracing::info!(key, attempts, "the write landed; its answer was lost");
                        let put = PutResult {
                            etag: ours.stored.meta.etag.clone(),
                            version_id: ours.stored.meta.version_id.clone(),
                        };
                        break (ours.stored.clone(), put);
                    }
                    tracing::info!(key, attempts, "object changed while filling; merging again");
                    previous = Some(draft);
                }
                Err(StorageError::PreconditionFailed { .. }) => {
                    return Err(FillError::Contended {
                        key: key.to_string(),
                        attempts,
                    });
                }
                Err(e) => return Err(e.into()),
            }
        };
        let payload = Payload {
            provider_expiration: job.provider_expiration,
            ..dataset.payload()
        };
        self.write_sidecar(key, &written, &put.etag, payload, job.now)
            .await?;
        let mut answer = self.answer(key, Some(&written), wanted, Some(job.requests), started)?;
        answer.sessions_fetched = job.missing.len() as u64;
        Ok(answer)
    }

    /// The first write attempt: run the provider's units for the missing sessions, at most
    /// the concurrency limit in flight, in session order, and merge and encode their rows
    /// into the file a chunk at a time. If any unit fails, the fill fails with nothing
    /// written.
    async fn draft_from_upstream<'a>(
        &self,
        job: &mut Job<'a>,
        current: Option<&Current>,
    ) -> Result<Draft, FillError> {
        let request = job.request;
        let dataset = &request.dataset;
        let plan = Plan::new(
            dataset,
            self.provider.plan(dataset, &job.missing),
            &job.missing,
        );
        let concurrency = self
            .config
            .fetch_concurrency
            .unwrap_or_else(|| self.provider.concurrency(dataset))
            .max(1);
        let missing: BTreeSet<NaiveDate> = job.missing.iter().copied().collect();
        // The futures are built first (they do nothing until polled) so the stream holds
        // no closure over borrowed data, which keeps the whole fill `Send`.
        let provider_expiration = job.provider_expiration;
        let pending: Vec<_> = plan
            .units
            .iter()
            .map(|sessions| {
                self.provider.fetch(FetchRequest {
                    dataset,
                    sessions,
                    include_after_hours: request.include_after_hours,
                    provider_expiration,
                })
            })
            .collect();
        let total = pending.len();
        self.report(Progress::Fetching { done: 0, total });
        // `buffered`, not `buffer_unordered`: units come back in plan order, so the rows of
        // finished units wait only for the units before them, never for the whole fill.
        let mut stream = futures::stream::iter(pending).buffered(concurrency);
        let mut writing: Option<(Merger<'a>, EncodingAhead)> = None;
        let mut waiting: Vec<RecordBatch> = Vec::new();
        let mut empty = plan.unplanned.clone();
        let mut done = 0;
        while let Some(unit) = stream.try_next().await? {
            let sessions: Vec<NaiveDate> = plan.units[done]
                .iter()
                .copied()
                .filter(|d| missing.contains(d))
                .collect();
            let cut = plan.cuts[done];
            done += 1;
            self.report(Progress::Fetching { done, total });
            job.requests += u64::from(unit.requests);
            let batch = rows_to_batch(dataset, unit.rows).map_err(FillError::codec("rows"))?;
            // A unit answers for its own sessions; rows it returns for others are dropped.
            let (batch, with_rows) = only_sessions(&batch, &sessions)?;
            empty.extend(sessions.iter().filter(|d| !with_rows.contains(d)));
            waiting.push(batch);
            let pending_rows = waiting.iter().map(RecordBatch::num_rows).sum::<usize>()
                + writing.as_ref().map_or(0, |(m, _)| m.pending_rows());
            if let Some(cut) = cut
                && pending_rows >= MERGE_CHUNK_ROWS
            {
                self.write_part(
                    job,
                    current,
                    &mut writing,
                    &mut waiting,
                    &mut empty,
                    Some(cut),
                )
                .await?;
            }
        }
        drop(stream);
        self.report(Progress::Writing);
        self.write_part(job, current, &mut writing, &mut waiting, &mut empty, None)
            .await?;
        let (_, encoding) = writing.expect("the last part starts the writing");
        let encoding = encoding.finish().await?;
        self.finish_draft(job, current, encoding)
    }

    /// Merge the rows waiting (and the file's rows) before `cut` and encode them; the first
    /// part also resolves the corporate actions and prepares the file's rows.
    async fn write_part<'a>(
        &self,
        job: &mut Job<'a>,
        current: Option<&Current>,
        writing: &mut Option<(Merger<'a>, EncodingAhead)>,
        waiting: &mut Vec<RecordBatch>,
        empty: &mut Vec<NaiveDate>,
        cut: Option<i64>,
    ) -> Result<(), FillError> {
        let dataset = &job.request.dataset;
        if writing.is_none() {
            if job.actions.is_none() {
                job.actions = Some(self.actions_for(job, current).await?);
            }
            let (merger, encoding) = self.start_writing(job, current)?;
            *writing = Some((merger, EncodingAhead::new(encoding)));
        }
        let (merger, encoding) = writing.as_mut().expect("started above");
        for batch in waiting.drain(..) {
            let batch = match job.adjustment() {
                Some(fetched) => corporate::adjust(dataset, &batch, &fetched.actions, None)
                    .map_err(FillError::codec("adjusting"))?,
                None => batch,
            };
            merger.add_rows(&batch).map_err(FillError::codec("merge"))?;
        }
        merger.add_empty(empty);
        job.empty_sessions.append(empty);
        let part = merger.take_before(cut).map_err(FillError::codec("merge"))?;
        encoding
            .append(dataset, job.key, part, job.now, cut.is_some())
            .await
    }

    /// A write attempt after a lost conditional write: the fetched rows of the previous
    /// attempt's file, merged into the object now at the key, a chunk at a time.
    fn draft_again(
        &self,
        job: &mut Job<'_>,
        current: Option<&Current>,
        previous: &Draft,
    ) -> Result<Draft, FillError> {
        let dataset = &job.request.dataset;
        let (mut merger, mut encoding) = self.start_writing(job, current)?;
        merger.add_empty(&job.empty_sessions);
        let batches = codec::decode_batches(previous.bytes.clone(), MERGE_CHUNK_ROWS)
            .map_err(FillError::codec("merge"))?;
        let mut offset = 0;
        let mut dates = NyDates::new();
        for batch in batches {
            let batch = batch.map_err(FillError::codec("merge"))?;
            let mask =
                BooleanArray::new(previous.fetched_rows.slice(offset, batch.num_rows()), None);
            offset += batch.num_rows();
            let fetched = arrow_select::filter::filter_record_batch(&batch, &mask)
                .map_err(|e| FillError::codec("merge")(e.into()))?;
            drop(batch);
            // The file is sorted: rows still to come are on this last row's session or later.
            let times = datetimes(&fetched).map_err(FillError::codec("merge"))?;
            let cut = times
                .iter()
                .flatten()
                .last()
                .map(|t| merge::first_instant(dataset, dates.date_of(t)));
            merger
                .add_rows(&fetched)
                .map_err(FillError::codec("merge"))?;
            if cut.is_some() {
                let part = merger.take_before(cut).map_err(FillError::codec("merge"))?;
                encoding.append(dataset, job.key, part, job.now)?;
            }
        }
        let part = merger
            .take_before(None)
            .map_err(FillError::codec("merge"))?;
        encoding.append(dataset, job.key, part, job.now)?;
        self.finish_draft(job, current, encoding)
    }

    /// The corporate actions a fill of day bars adjusts with (`None` for other datasets).
    async fn actions_for(
        &self,
        job: &mut Job<'_>,
        current: Option<&Current>,
    ) -> Result<Option<Actions>, FillError> {
        let dataset = &job.request.dataset;
        if !corporate::adjusts(dataset) {
            return Ok(None);
        }
        let from = current
            .and_then(|c| c.stored.coverage.real.first().copied())
            .into_iter()
            .chain(job.missing.first().copied())
            .min()
            .unwrap_or(job.request.start);
        let actions = self.corporate_actions(dataset, from, self.today()).await?;
        if let Some(fetched) = &actions {
            job.requests += fetched.requests;
        }
        Ok(actions)
    }

    /// A merge into `current` (adjusted when the fill adjusts) and an empty file to encode
    /// it into; or, when the fill [`appends`], a merge of the fetched sessions alone and a
    /// file that starts with `current`'s row groups, copied.
    fn start_writing<'a>(
        &self,
        job: &Job<'a>,
        current: Option<&Current>,
    ) -> Result<(Merger<'a>, Encoding), FillError> {
        let dataset = &job.request.dataset;
        let adjust = |batch: &RecordBatch, as_of| match job.adjustment() {
            Some(fetched) => corporate::adjust(dataset, batch, &fetched.actions, as_of)
                .map_err(FillError::codec("adjusting")),
            None => Ok(batch.clone()),
        };
        // The layout fetched rows come in (a new file takes it), from no rows at all.
        let fresh = rows_to_batch(dataset, Rows::empty_for(Layout::of(dataset)))
            .map_err(FillError::codec("rows"))?;
        let fresh = adjust(&fresh, None)?;
        if let Some(current) = current.filter(|c| appends(job, c)) {
            // No rows of the file are merged: the merge takes its layout from an empty batch.
            let base = RecordBatch::new_empty(current.footer.schema().clone());
            let merger = Merger::new(dataset, Some(base), &fresh.schema(), &job.missing)
                .map_err(FillError::codec("merge"))?;
            match Encoding::appending(merger.schema().clone(), current) {
                Ok(encoding) => return Ok((merger, encoding)),
                // A file whose parquet schema is not the one its rows would be encoded with
                // (another writer's) is rewritten whole.
                Err(e) => tracing::debug!(key = job.key, error = %e, "not appending; merging"),
            }
        }
        let base = current
            .map(|c| adjust(&c.rows(dataset, job.key)?, c.adjusted_as_of))
            .transpose()?;
        let merger = Merger::new(dataset, base, &fresh.schema(), &job.missing)
            .map_err(FillError::codec("merge"))?;
        let encoding = Encoding::new(merger.schema().clone())?;
        Ok((merger, encoding))
    }

    /// The footer facts of the encoded file, and the file.
    fn finish_draft(
        &self,
        job: &Job<'_>,
        current: Option<&Current>,
        encoding: Encoding,
    ) -> Result<Draft, FillError> {
        let dataset = &job.request.dataset;
        let provisional = provisional_after(current, &job.empty_sessions, job.now);
        let (encoder, coverage, facts, fetched_rows) = encoding.finish(dataset, provisional)?;
        let metadata = self.file_metadata(
            dataset,
            &coverage,
            &facts,
            job.adjustment().map(|a| &a.actions),
            job.now,
        );
        let bytes = encoder
            .finish(&metadata)
            .map_err(FillError::codec("encoding"))?;
        Ok(Draft {
            sha256: codec::sha256_hex(&bytes),
            bytes,
            coverage,
            facts,
            fetched_rows,
        })
    }

    /// A hit decided by the object's HEAD and its sidecar, without reading the body: the
    /// metadata cachefill wrote with it ([`coverage::Claim`]) covers every wanted session
    /// with trusted rows or placeholders, and the sidecar describes this very object (its
    /// checksum is the object's). `None`: the body decides (day bars lumibot adjusts always
    /// read it, for the adjustment they may need).
    async fn hit_from_head(
        &self,
        dataset: &Dataset,
        key: &str,
        wanted: &[NaiveDate],
        started: Instant,
    ) -> Result<Option<FillAnswer>, FillError> {
        if corporate::adjusts(dataset) {
            return Ok(None);
        }
        let meta = match self.store.head(key, None).await {
            Ok(meta) => meta,
            Err(StorageError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(claim) = coverage::Claim::of(&meta).filter(|c| c.covered.covers(wanted)) else {
            return Ok(None);
        };
        let sidecar = match self
            .store
            .get(&format!("{key}{SIDECAR_SUFFIX}"), None)
            .await
        {
            Ok(got) => got,
            Err(StorageError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(sidecar) = Sidecar::parse(&sidecar.bytes)
            .ok()
            .filter(|s| s.checksum.as_deref() == Some(claim.sha256.as_str()))
        else {
            return Ok(None);
        };
        let status = if claim.has_data(wanted) {
            FillStatus::Hit
        } else {
            FillStatus::NoData
        };
        Ok(Some(FillAnswer {
            status,
            bucket: self.config.bucket.clone(),
            key: key.to_string(),
            version_id: meta.version_id,
            etag: Some(meta.etag),
            sha256: Some(claim.sha256),
            rows: sidecar.rows,
            real_rows: sidecar.real_rows,
            placeholders: sidecar.placeholders,
            min: sidecar.min,
            max: sidecar.max,
            sessions_fetched: 0,
            upstream_requests: 0,
            elapsed_ms: started.elapsed().as_millis() as u64,
            parts: Vec::new(),
        }))
    }

    /// Take the lease, or wait until its holder has covered our range. `None`: covered.
    async fn acquire_or_wait(
        &self,
        dataset: &Dataset,
        key: &str,
        wanted: &[NaiveDate],
        current: &mut Option<Current>,
    ) -> Result<Option<Lease>, FillError> {
        let lease_key = self.config.layout.lease_key(dataset);
        let ttl = Duration::from_std(self.config.lease_ttl).unwrap_or(Duration::minutes(16));
        let owner = format!("{}-{:08x}", self.config.owner, fastrand::u32(..));
        let mut delay = self.config.poll_initial;
        loop {
            match lease::try_acquire(&self.store, &lease_key, &owner, ttl, self.clock.now()).await?
            {
                Acquire::Acquired(lease) => return Ok(Some(lease)),
                Acquire::Held { owner, expires_at } => {
                    tracing::debug!(key, holder = %owner, %expires_at, "lease held; waiting");
                }
            }
            let jitter = 0.75 + fastrand::f64() * 0.5;
            tokio::time::sleep(delay.mul_f64(jitter)).await;
            delay = delay.mul_f64(1.5).min(self.config.poll_max);
            let changed = match self.store.head(key, None).await {
                Ok(meta) => current
                    .as_ref()
                    .is_none_or(|c| !etags_equal(&c.stored.meta.etag, &meta.etag)),
                Err(StorageError::NotFound { .. }) => false,
                Err(e) => return Err(e.into()),
            };
            if changed {
                *current = self.read_current(dataset, key).await?;
                if missing_of(current.as_ref(), wanted).is_empty() {
                    return Ok(None);
                }
            }
        }
    }

    /// `read` when it is still the object at `key` (a HEAD says so), else the object read
    /// again: an extend decodes the file it extends once, not once before the lease and
    /// once after.
    async fn unless_changed(
        &self,
        dataset: &Dataset,
        key: &str,
        read: Option<Current>,
    ) -> Result<Option<Current>, FillError> {
        let now = match self.store.head(key, None).await {
            Ok(meta) => Some(meta),
            Err(StorageError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        match (read, now) {
            (None, None) => Ok(None),
            (Some(read), Some(now)) if etags_equal(&read.stored.meta.etag, &now.etag) => {
                Ok(Some(read))
            }
            (read, _) => {
                // The object read is dropped before the newer one is decoded.
                drop(read);
                self.read_current(dataset, key).await
            }
        }
    }

    /// Read the object at `key` and decode its [`OUTLINE_COLUMNS`]; `None` when there is
    /// none. Every column's kind is checked against the dataset's here, before any merge.
    async fn read_current(
        &self,
        dataset: &Dataset,
        key: &str,
    ) -> Result<Option<Current>, FillError> {
        let got = match self.store.get(key, None).await {
            Ok(got) => got,
            Err(StorageError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let unreadable = |source| FillError::Unreadable {
            key: key.to_string(),
            source,
        };
        let not_extendable = |source| FillError::NotExtendable {
            key: key.to_string(),
            source,
        };
        let footer = codec::read_footer(&got.bytes).map_err(unreadable)?;
        let conformed = conform::conform(dataset, &RecordBatch::new_empty(footer.schema().clone()))
            .map_err(not_extendable)?
            .schema();
        let metadata = codec::footer_metadata(footer.metadata());
        // Our footer's outline stands for the rows it describes; files with `_split_adjusted`
        // marks (day bars lumibot adjusts) are decoded for them.
        let recorded = Outline::in_footer(&metadata).filter(|o| {
            footer.schema().field_with_name(SPLIT_ADJUSTED).is_err()
                && i64::try_from(o.facts.rows).ok()
                    == Some(footer.metadata().file_metadata().num_rows())
        });
        let (coverage, facts, last_session, datetime_complete, (marked, unadjusted)) =
            match recorded {
                Some(outline) => (
                    outline.coverage_in(&metadata),
                    outline.facts,
                    outline.last_session(),
                    codec::recorded_without_nulls(&footer, DATETIME),
                    (false, outline.facts.real_rows > 0),
                ),
                None => {
                    let decoded =
                        codec::decode_columns(got.bytes.clone(), &footer, Some(&OUTLINE_COLUMNS))
                            .map_err(unreadable)?;
                    let outline =
                        conform::conform(dataset, &decoded.batch).map_err(not_extendable)?;
                    let coverage =
                        coverage::of_decoded(dataset, &decoded, &outline, got.meta.last_modified)
                            .map_err(FillError::codec("coverage"))?;
                    let facts = BatchFacts::of(&outline).map_err(FillError::codec("answer"))?;
                    let complete = outline
                        .column_by_name(DATETIME)
                        .is_some_and(|t| t.null_count() == 0);
                    (
                        coverage,
                        facts,
                        last_session_of(&outline),
                        complete,
                        adjustment_marks(&outline),
                    )
                }
            };
        // A file marked adjusted without our record of when (lumibot's) was adjusted as of
        // its writing.
        let adjusted_as_of = metadata
            .get(format::FACT_ADJUSTED_AS_OF)
            .and_then(|t| t.parse().ok())
            .or_else(|| marked.then(|| calendar::ny_date(got.meta.last_modified)));
        Ok(Some(Current {
            stored: Stored {
                bytes: got.bytes,
                sha256: got.sha256,
                meta: got.meta,
                coverage,
                facts,
            },
            footer,
            conformed,
            last_session,
            datetime_complete,
            ours: metadata.contains_key(format::FACT_SCHEMA_VERSION),
            adjusted_as_of,
            unadjusted,
        }))
    }

    /// The answer for a file that already covers the request, once its sidecar describes it.
    /// A fill whose parquet landed but whose sidecar write failed (an outage, a timeout) left
    /// the previous version's sidecar at the key, or none; lumibot deletes and refetches a
    /// file whose sidecar disagrees, and the validator waits for the writer's sidecar, so
    /// the next fill that finds the file covered writes it.
    async fn answer_covered(
        &self,
        request: &FillRequest,
        key: &str,
        current: Option<&Current>,
        wanted: &[NaiveDate],
        started: Instant,
    ) -> Result<FillAnswer, FillError> {
        let current = current.map(|c| &c.stored);
        if let Some(stored) = current {
            self.repair_sidecar(request, key, stored).await?;
        }
        self.answer(key, current, wanted, None, started)
    }

    /// Write the sidecar of `stored` when the one at its key names another parquet or none
    /// is there; the earlier sidecar's payload is kept.
    async fn repair_sidecar(
        &self,
        request: &FillRequest,
        key: &str,
        stored: &Stored,
    ) -> Result<(), FillError> {
        let earlier = match self
            .store
            .get(&format!("{key}{SIDECAR_SUFFIX}"), None)
            .await
        {
            Ok(got) => Sidecar::parse(&got.bytes).ok(),
            Err(StorageError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let sha256 = sha256_of(stored);
        if earlier.as_ref().and_then(|s| s.checksum.as_deref()) == Some(sha256.as_str()) {
            return Ok(());
        }
        tracing::warn!(
            key,
            "the sidecar does not describe the parquet at the key; writing it"
        );
        let payload = earlier
            .and_then(|s| s.cache_payload)
            .unwrap_or_else(|| Payload {
                provider_expiration: request.provider_expiration,
                ..request.dataset.payload()
            });
        self.write_sidecar(key, stored, &stored.meta.etag, payload, self.now())
            .await
    }

    /// Write the sidecar of the parquet we wrote, unless a newer writer replaced it.
    async fn write_sidecar(
        &self,
        key: &str,
        written: &Stored,
        etag: &str,
        payload: Payload,
        now: DateTime<Utc>,
    ) -> Result<(), FillError> {
        let sidecar_key = format!("{key}{SIDECAR_SUFFIX}");
        let json = Sidecar::new(&written.facts, &sha256_of(written), now)
            .with_payload(payload)
            .to_json();
        for _ in 0..self.config.max_write_attempts {
            let mode = match self.store.head(&sidecar_key, None).await {
                Ok(meta) => PutMode::IfMatch(meta.etag),
                Err(StorageError::NotFound { .. }) => PutMode::IfAbsent,
                Err(e) => return Err(e.into()),
            };
            match self.store.head(key, None).await {
                Ok(meta) if etags_equal(&meta.etag, etag) => {}
                // A newer parquet is there; its writer writes its sidecar.
                Ok(_) | Err(StorageError::NotFound { .. }) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            let options = PutOptions {
                mode,
                content_type: Some(JSON_CONTENT_TYPE.into()),
                ..Default::default()
            };
            match self
                .store
                .put(&sidecar_key, Bytes::from(json.clone()), options)
                .await
            {
                Ok(_) => return Ok(()),
                Err(StorageError::PreconditionFailed { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(FillError::SidecarContended { key: sidecar_key })
    }

    /// Now, by the engine's clock.
    pub(super) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Today, in New York: the date corporate actions are applied as of.
    fn today(&self) -> NaiveDate {
        calendar::ny_date(self.clock.now())
    }

    /// For day bars lumibot adjusts: the corporate actions to rewrite `current` with, when
    /// some rows are not adjusted or a split came after the date they were adjusted as of.
    async fn stale_adjustment(
        &self,
        dataset: &Dataset,
        current: Option<&Current>,
    ) -> Result<Option<Actions>, FillError> {
        let Some(current) = current.filter(|_| corporate::adjusts(dataset)) else {
            return Ok(None);
        };
        let today = self.today();
        let as_of = current.adjusted_as_of;
        if !current.unadjusted && as_of.is_none_or(|a| a >= today) {
            return Ok(None);
        }
        let Some(first) = current.stored.coverage.real.first().copied() else {
            return Ok(None);
        };
        let Some(fetched) = self.corporate_actions(dataset, first, today).await? else {
            return Ok(None);
        };
        let stale = current.unadjusted || as_of.is_none_or(|a| fetched.actions.has_splits_after(a));
        Ok(stale.then_some(fetched))
    }

    fn file_metadata(
        &self,
        dataset: &Dataset,
        coverage: &Coverage,
        facts: &BatchFacts,
        actions: Option<&CorporateActions>,
        now: DateTime<Utc>,
    ) -> BTreeMap<String, String> {
        let entries = [
            (
                format::FACT_SCHEMA_VERSION,
                format::SCHEMA_VERSION.to_string(),
            ),
            (format::FACT_PROVIDER, dataset.provider.to_string()),
            (format::FACT_DATASET, dataset.to_json()),
            (
                format::FACT_COVERAGE,
                coverage::format_ranges(&coverage.all_sessions()),
            ),
            (
                format::FACT_PROVISIONAL,
                coverage::format_dates(&coverage.provisional),
            ),
            (
                format::FACT_FILLED_AT,
                now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ),
        ];
        let adjustment = actions.into_iter().flat_map(|a| {
            [
                (format::FACT_ADJUSTED_AS_OF, a.as_of.to_string()),
                (format::FACT_SPLITS, a.describe_splits()),
            ]
        });
        let outline = Outline {
            coverage: Coverage {
                provisional: BTreeSet::new(),
                ..coverage.clone()
            },
            facts: *facts,
        };
        entries
            .into_iter()
            .chain(adjustment)
            .chain(outline.to_fact().map(|fact| (format::FACT_OUTLINE, fact)))
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    fn answer(
        &self,
        key: &str,
        current: Option<&Stored>,
        wanted: &[NaiveDate],
        upstream_requests: Option<u64>,
        started: Instant,
    ) -> Result<FillAnswer, FillError> {
        let facts = current.map(|c| c.facts).unwrap_or_default();
        let has_data = current.is_some_and(|c| wanted.iter().any(|d| c.coverage.real.contains(d)));
        let status = match (has_data, upstream_requests.is_some()) {
            (false, _) => FillStatus::NoData,
            (true, true) => FillStatus::Filled,
            (true, false) => FillStatus::Hit,
        };
        Ok(FillAnswer {
            status,
            bucket: self.config.bucket.clone(),
            key: key.to_string(),
            version_id: current.and_then(|c| c.meta.version_id.clone()),
            etag: current.map(|c| c.meta.etag.clone()),
            sha256: current.map(sha256_of),
            rows: facts.rows as u64,
            real_rows: facts.real_rows as u64,
            placeholders: facts.placeholders as u64,
            min: facts.min.map(pyfmt::pandas_utc_isoformat),
            max: facts.max.map(pyfmt::pandas_utc_isoformat),
            sessions_fetched: 0,
            upstream_requests: upstream_requests.unwrap_or(0),
            elapsed_ms: started.elapsed().as_millis() as u64,
            parts: Vec::new(),
        })
    }
}

/// Row groups under this many rows are small; a file [`appends`] while it has fewer than
/// [`MAX_SMALL_ROW_GROUPS`] of them, and the next extend merges and rewrites it whole, into
/// row groups of up to [`codec::MAX_ROW_GROUP_ROWS`] (`docs/ARCHITECTURE.md` §6).
const SMALL_ROW_GROUP_ROWS: i64 = MERGE_CHUNK_ROWS as i64;
const MAX_SMALL_ROW_GROUPS: usize = 16;

/// Whether a fill appends its rows to `current`'s row groups, copied as they are, instead of
/// merging them into its decoded rows: the file is cachefill's, already in the layout the
/// merge would give it, with no row lacking a `datetime`; no adjustment rewrites its rows;
/// every missing session comes after the session of its last row (so no row of the file is
/// replaced, and no placeholder or edge of it changes); and it has few small row groups.
fn appends(job: &Job<'_>, current: &Current) -> bool {
    let dataset = &job.request.dataset;
    let schema = current.footer.schema();
    let first_missing = job.missing.iter().min();
    let small = current
        .footer
        .metadata()
        .row_groups()
        .iter()
        .filter(|g| g.num_rows() < SMALL_ROW_GROUP_ROWS)
        .count();
    current.ours
        && job.adjustment().is_none()
        && conform::merged_schema(dataset, schema).fields() == schema.fields()
        && schema.field_with_name(DATETIME).ok().map(|f| f.data_type())
            == current
                .conformed
                .field_with_name(DATETIME)
                .ok()
                .map(|f| f.data_type())
        && current.datetime_complete
        && first_missing.is_some_and(|m| current.last_session.is_none_or(|l| *m > l))
        && small < MAX_SMALL_ROW_GROUPS
}

fn sha256_of(stored: &Stored) -> String {
    stored
        .sha256
        .clone()
        .unwrap_or_else(|| codec::sha256_hex(&stored.bytes))
}

/// Whether some rows are marked `_split_adjusted`, and whether some real rows are not.
fn adjustment_marks(batch: &RecordBatch) -> (bool, bool) {
    let missing = codec::facts::placeholder_mask(batch);
    let Some(marks) = batch
        .column_by_name(SPLIT_ADJUSTED)
        .and_then(|c| c.as_boolean_opt())
    else {
        return (false, missing.iter().any(|m| !m));
    };
    let mut marked = false;
    let mut unadjusted = false;
    for (i, placeholder) in missing.iter().enumerate() {
        let adjusted = marks.is_valid(i) && marks.value(i);
        marked |= adjusted;
        unadjusted |= !placeholder && !adjusted;
    }
    (marked, unadjusted)
}

fn missing_of(current: Option<&Current>, wanted: &[NaiveDate]) -> Vec<NaiveDate> {
    match current {
        Some(c) => c.stored.coverage.missing(wanted),
        None => wanted.to_vec(),
    }
}

/// Provisional placeholders after a write: earlier ones not refetched, plus new young ones.
fn provisional_after(
    base: Option<&Current>,
    empty_sessions: &[NaiveDate],
    now: DateTime<Utc>,
) -> BTreeSet<NaiveDate> {
    let refetched: BTreeSet<NaiveDate> = empty_sessions.iter().copied().collect();
    let mut out: BTreeSet<NaiveDate> = base
        .map(|b| {
            b.stored
                .coverage
                .provisional
                .difference(&refetched)
                .copied()
                .collect()
        })
        .unwrap_or_default();
    out.extend(
        empty_sessions
            .iter()
            .copied()
            .filter(|d| coverage::is_provisional(*d, now)),
    );
    out
}

/// Keep rows on the given sessions only; also say which sessions got rows.
fn only_sessions(
    batch: &RecordBatch,
    sessions: &[NaiveDate],
) -> Result<(RecordBatch, BTreeSet<NaiveDate>), FillError> {
    let wanted: BTreeSet<NaiveDate> = sessions.iter().copied().collect();
    let times = datetimes(batch).map_err(FillError::codec("rows"))?;
    let mut dates = NyDates::new();
    let mut with_rows = BTreeSet::new();
    let keep: BooleanArray = times
        .iter()
        .map(|t| {
            let keep = t.is_some_and(|t| {
                let d = dates.date_of(t);
                wanted.contains(&d) && with_rows.insert(d) | true
            });
            Some(keep)
        })
        .collect();
    let filtered = arrow_select::filter::filter_record_batch(batch, &keep)
        .map_err(|e| FillError::codec("rows")(e.into()))?;
    Ok((filtered, with_rows))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::rows::OhlcBar;

    const AAPL_MINUTE: &str = r#"{"provider":"synthetic","asset_type":"stock","symbol":"AAPL","timespan":"minute","datastyle":"ohlc"}"#;
    /// 2024-07-01 14:00 UTC (10:00 New York), in nanoseconds.
    const TEN: i64 = 1_719_842_400_000_000_000;
    const MINUTE: i64 = 60_000_000_000;

    fn part(dataset: &Dataset, minutes: &[i64]) -> merge::Part {
        let bars = minutes
            .iter()
            .map(|m| OhlcBar {
                time: TEN + m * MINUTE,
                volume: Some(100),
                high: Some(11.0),
                low: Some(9.0),
                vwap: Some(10.0),
                count: Some(3),
                close: Some(10.0),
                open: Some(10.0),
            })
            .collect();
        let batch = rows_to_batch(dataset, Rows::Ohlc(bars)).unwrap();
        let fetched_rows = BooleanBuffer::new_set(batch.num_rows());
        merge::Part {
            batch,
            fetched_rows,
        }
    }

    fn broken_rules(result: Result<Encoding, FillError>) -> Vec<Rule> {
        match result {
            Err(FillError::SelfCheck { violations, .. }) => {
                violations.iter().map(|v| v.rule).collect()
            }
            Err(other) => panic!("not the self-check: {other}"),
            Ok(_) => panic!("the parts were encoded"),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp_nanos(TEN + 24 * 60 * MINUTE)
    }

    /// Hand `parts` (minutes after 10:00) to a new encoding ahead, one after the other;
    /// the first error of a hand-over, else the encoding finished.
    async fn encode_ahead(dataset: &Dataset, parts: &[&[i64]]) -> Result<Encoding, FillError> {
        let schema = part(dataset, &[]).batch.schema();
        let mut ahead = EncodingAhead::new(Encoding::new(schema)?);
        for (i, minutes) in parts.iter().enumerate() {
            let part = part(dataset, minutes);
            let more_follow = i + 1 < parts.len();
            ahead
                .append(
                    dataset,
                    "stock_AAPL_minute_ohlc.parquet",
                    part,
                    now(),
                    more_follow,
                )
                .await?;
        }
        ahead.finish().await
    }

    /// A part is encoded while the next is prepared, so the rule a part breaks is reported
    /// at the hand-over after it; the last part is encoded in place.
    #[tokio::test]
    async fn a_part_encoded_ahead_reports_its_broken_rule_at_the_next_step() {
        let dataset = Dataset::from_json(AAPL_MINUTE).unwrap();
        let encoding = encode_ahead(&dataset, &[&[0, 1], &[2, 3]]).await.unwrap();
        assert_eq!(encoding.times.len(), 4);
        for parts in [&[&[0, 1][..], &[1, 2]][..], &[&[0, 1], &[1, 2], &[3]]] {
            assert_eq!(
                broken_rules(encode_ahead(&dataset, parts).await),
                [Rule::DuplicateTimestamp]
            );
        }
        // The first part breaks the order; the second is never encoded.
        assert_eq!(
            broken_rules(encode_ahead(&dataset, &[&[1, 0], &[2], &[3]]).await),
            [Rule::Unsorted]
        );
    }
}
