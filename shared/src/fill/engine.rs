//! The fill engine (`docs/ARCHITECTURE.md` §6, §7): coverage → missing sessions → lease →
//! re-read → fetch only the missing sessions → normalize → merge → self-validate →
//! conditional PUT of the parquet, then its sidecar → release the lease → answer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use arrow_array::cast::AsArray;
use arrow_array::{Array, BooleanArray, RecordBatch};
use bytes::Bytes;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use futures::{StreamExt, TryStreamExt};

use super::answer::{FillAnswer, FillError, FillStatus};
use super::lease::{self, Acquire, Lease};
use super::merge;
use super::reference::Actions;
use super::request::FillRequest;
use crate::calendar;
use crate::calendar::NyDates;
use crate::clock::{Clock, SystemClock};
use crate::codec::facts::datetimes;
use crate::codec::rows::rows_to_batch;
use crate::codec::schema::Layout;
use crate::codec::{self, BatchFacts, Rows, Sidecar, conform};
use crate::corporate::{self, CorporateActions};
use crate::coverage::{self, Coverage};
use crate::dataset::{Dataset, Payload};
use crate::format::{
    self, COVERAGE_METADATA, JSON_CONTENT_TYPE, MAX_COVERAGE_METADATA, PARQUET_CONTENT_TYPE,
    SHA256_METADATA, SIDECAR_SUFFIX,
};
use crate::keys::KeyLayout;
use crate::providers::{FetchRequest, Provider};
use crate::pyfmt;
use crate::rules;
use crate::storage::{ObjectMeta, ObjectStore, PutMode, PutOptions, StorageError, etags_equal};

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

/// The object at a dataset's key as last read.
#[derive(Debug, Clone)]
struct Current {
    bytes: Bytes,
    meta: ObjectMeta,
    batch: RecordBatch,
    coverage: Coverage,
    /// Day bars: the date the rows marked `_split_adjusted` were adjusted as of, and
    /// whether some real rows are not adjusted at all.
    adjusted_as_of: Option<NaiveDate>,
    unadjusted: bool,
}

/// Rows fetched for the missing sessions.
#[derive(Debug)]
struct Fresh {
    batch: RecordBatch,
    empty_sessions: Vec<NaiveDate>,
    requests: u64,
    /// For options: the expiration the provider was asked for.
    provider_expiration: Option<NaiveDate>,
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
        let mut current = self.read_current(dataset, &key).await?;
        let mut actions = None;
        if missing_of(current.as_ref(), &wanted).is_empty() {
            actions = self.stale_adjustment(dataset, current.as_ref()).await?;
            if actions.is_none() {
                return self.answer(&key, current.as_ref(), &wanted, None, started);
            }
        }
        let lease = match self
            .acquire_or_wait(dataset, &key, &wanted, &mut current)
            .await?
        {
            Some(lease) => lease,
            None => return self.answer(&key, current.as_ref(), &wanted, None, started),
        };
        let result = self
            .fill_holding(request, &key, &wanted, actions, started)
            .await;
        if let Err(e) = lease::release(&self.store, &lease, self.clock.now()).await {
            tracing::warn!(lease = %lease.key, error = %e, "could not release the lease; it will expire");
        }
        result
    }

    /// The fill proper, under the lease.
    async fn fill_holding(
        &self,
        request: &FillRequest,
        key: &str,
        wanted: &[NaiveDate],
        actions: Option<Actions>,
        started: Instant,
    ) -> Result<FillAnswer, FillError> {
        let dataset = &request.dataset;
        // A peer may have filled the range between our first read and the lease.
        let mut current = self.read_current(dataset, key).await?;
        let missing = missing_of(current.as_ref(), wanted);
        if missing.is_empty() && actions.is_none() {
            return self.answer(key, current.as_ref(), wanted, None, started);
        }
        let mut fresh = self.fetch(request, &missing).await?;
        let actions = match actions {
            Some(actions) => Some(actions),
            None if corporate::adjusts(dataset) => {
                let from = current
                    .as_ref()
                    .and_then(|c| c.coverage.real.first().copied())
                    .into_iter()
                    .chain(missing.first().copied())
                    .min()
                    .unwrap_or(request.start);
                self.corporate_actions(dataset, from, self.today()).await?
            }
            None => None,
        };
        if let Some(fetched) = &actions {
            fresh.requests += fetched.requests;
            fresh.batch = corporate::adjust(dataset, &fresh.batch, &fetched.actions, None)
                .map_err(FillError::codec("adjusting"))?;
        }
        let now = self.clock.now();
        let mut attempts = 0;
        let (written, put) = loop {
            attempts += 1;
            let base = match (&current, &actions) {
                (Some(c), Some(fetched)) => Some(
                    corporate::adjust(dataset, &c.batch, &fetched.actions, c.adjusted_as_of)
                        .map_err(FillError::codec("adjusting"))?,
                ),
                (Some(c), None) => Some(c.batch.clone()),
                (None, _) => None,
            };
            let merged = merge::merge(dataset, base.as_ref(), &fresh.batch, &fresh.empty_sessions)
                .map_err(FillError::codec("merge"))?;
            let violations = rules::check_batch(dataset, &merged, now);
            if !violations.is_empty() {
                return Err(FillError::SelfCheck {
                    key: key.to_string(),
                    violations,
                });
            }
            let provisional = provisional_after(current.as_ref(), &fresh.empty_sessions, now);
            let coverage =
                Coverage::of_batch(&merged, provisional, coverage::checks_edges(dataset))
                    .map_err(FillError::codec("coverage"))?;
            let metadata = self.file_metadata(
                dataset,
                &coverage,
                actions.as_ref().map(|a| &a.actions),
                now,
            );
            let bytes = codec::encode(&merged, &metadata).map_err(FillError::codec("encoding"))?;
            let sha256 = codec::sha256_hex(&bytes);
            let mode = match &current {
                Some(c) => PutMode::IfMatch(c.meta.etag.clone()),
                None => PutMode::IfAbsent,
            };
            let options = PutOptions {
                mode,
                metadata: object_metadata(&coverage, &sha256),
                content_type: Some(PARQUET_CONTENT_TYPE.into()),
            };
            match self.store.put(key, bytes.clone(), options).await {
                Ok(put) => {
                    break (
                        Current {
                            bytes,
                            meta: ObjectMeta {
                                key: key.to_string(),
                                size: 0,
                                etag: put.etag.clone(),
                                version_id: put.version_id.clone(),
                                last_modified: now,
                                metadata: BTreeMap::new(),
                            },
                            batch: merged,
                            coverage,
                            adjusted_as_of: actions.as_ref().map(|a| a.actions.as_of),
                            unadjusted: false,
                        },
                        put,
                    );
                }
                Err(StorageError::PreconditionFailed { .. })
                    if attempts < self.config.max_write_attempts =>
                {
                    tracing::info!(key, attempts, "object changed while filling; merging again");
                    current = self.read_current(dataset, key).await?;
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
            provider_expiration: fresh.provider_expiration,
            ..dataset.payload()
        };
        self.write_sidecar(key, &written, &put.etag, payload, now)
            .await?;
        let mut answer = self.answer(key, Some(&written), wanted, Some(&fresh), started)?;
        answer.sessions_fetched = missing.len() as u64;
        Ok(answer)
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
                    .is_none_or(|c| !etags_equal(&c.meta.etag, &meta.etag)),
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

    /// Run the provider's units for the missing sessions with bounded concurrency.
    async fn fetch(
        &self,
        request: &FillRequest,
        missing: &[NaiveDate],
    ) -> Result<Fresh, FillError> {
        let dataset = &request.dataset;
        let provider_expiration = if missing.is_empty() {
            request.provider_expiration
        } else {
            self.provider
                .query_expiration(dataset, request.provider_expiration)
                .await?
        };
        let units = self.provider.plan(dataset, missing);
        let concurrency = self
            .config
            .fetch_concurrency
            .unwrap_or_else(|| self.provider.concurrency(dataset))
            .max(1);
        // The futures are built first (they do nothing until polled) so the stream holds
        // no closure over borrowed data, which keeps the whole fill `Send`.
        let pending: Vec<_> = units
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
        let mut fetched = Vec::with_capacity(total);
        let mut stream = futures::stream::iter(pending).buffer_unordered(concurrency);
        while let Some(unit) = stream.try_next().await? {
            fetched.push(unit);
            self.report(Progress::Fetching {
                done: fetched.len(),
                total,
            });
        }
        self.report(Progress::Writing);
        let mut rows = Rows::empty_for(Layout::of(dataset));
        let mut requests = 0;
        for unit in fetched {
            requests += u64::from(unit.requests);
            rows.extend(unit.rows).map_err(FillError::codec("rows"))?;
        }
        let batch = rows_to_batch(dataset, rows).map_err(FillError::codec("rows"))?;
        let (batch, with_rows) = only_sessions(&batch, missing)?;
        let empty_sessions = missing
            .iter()
            .copied()
            .filter(|d| !with_rows.contains(d))
            .collect();
        Ok(Fresh {
            batch,
            empty_sessions,
            requests,
            provider_expiration,
        })
    }

    /// Read and decode the object at `key`; `None` when there is none.
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
        let decoded = codec::decode(got.bytes.clone()).map_err(|source| FillError::Unreadable {
            key: key.to_string(),
            source,
        })?;
        let batch = conform::conform(dataset, &decoded.batch).map_err(|source| {
            FillError::NotExtendable {
                key: key.to_string(),
                source,
            }
        })?;
        let coverage = coverage::of_decoded(dataset, &decoded, &batch, got.meta.last_modified)
            .map_err(FillError::codec("coverage"))?;
        let (marked, unadjusted) = adjustment_marks(&batch);
        // A file marked adjusted without our record of when (lumibot's) was adjusted as of
        // its writing.
        let adjusted_as_of = decoded
            .fact(format::FACT_ADJUSTED_AS_OF)
            .and_then(|t| t.parse().ok())
            .or_else(|| marked.then(|| calendar::ny_date(got.meta.last_modified)));
        Ok(Some(Current {
            bytes: got.bytes,
            meta: got.meta,
            batch,
            coverage,
            adjusted_as_of,
            unadjusted,
        }))
    }

    /// Write the sidecar of the parquet we wrote, unless a newer writer replaced it.
    async fn write_sidecar(
        &self,
        key: &str,
        written: &Current,
        etag: &str,
        payload: Payload,
        now: DateTime<Utc>,
    ) -> Result<(), FillError> {
        let sidecar_key = format!("{key}{SIDECAR_SUFFIX}");
        let facts = BatchFacts::of(&written.batch).map_err(FillError::codec("sidecar"))?;
        let json = Sidecar::new(&facts, &codec::sha256_hex(&written.bytes), now)
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
        let Some(first) = current.coverage.real.first().copied() else {
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
        entries
            .into_iter()
            .chain(adjustment)
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    fn answer(
        &self,
        key: &str,
        current: Option<&Current>,
        wanted: &[NaiveDate],
        fresh: Option<&Fresh>,
        started: Instant,
    ) -> Result<FillAnswer, FillError> {
        let facts = match current {
            Some(c) => BatchFacts::of(&c.batch).map_err(FillError::codec("answer"))?,
            None => BatchFacts::default(),
        };
        let has_data = current.is_some_and(|c| wanted.iter().any(|d| c.coverage.real.contains(d)));
        let status = match (has_data, fresh.is_some()) {
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
            sha256: current.map(|c| codec::sha256_hex(&c.bytes)),
            rows: facts.rows as u64,
            real_rows: facts.real_rows as u64,
            placeholders: facts.placeholders as u64,
            min: facts.min.map(pyfmt::pandas_utc_isoformat),
            max: facts.max.map(pyfmt::pandas_utc_isoformat),
            sessions_fetched: 0,
            upstream_requests: fresh.map_or(0, |f| f.requests),
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
    }
}

/// Whether some rows are marked `_split_adjusted`, and whether some real rows are not.
fn adjustment_marks(batch: &RecordBatch) -> (bool, bool) {
    let missing = codec::facts::placeholder_mask(batch);
    let Some(marks) = batch
        .column_by_name("_split_adjusted")
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
        Some(c) => c.coverage.missing(wanted),
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
            b.coverage
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

/// User metadata of a written parquet: its coverage (when short enough) and checksum, so a
/// HEAD tells readers what the object holds.
fn object_metadata(coverage: &Coverage, sha256: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::from([(SHA256_METADATA.to_string(), sha256.to_string())]);
    let ranges = coverage::format_ranges(&coverage.all_sessions());
    if ranges.len() <= MAX_COVERAGE_METADATA {
        out.insert(COVERAGE_METADATA.to_string(), ranges);
    }
    out
}
