//! [`CacheClient`]: local cache → bucket → miss-handler, in the mode the settings name.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{NaiveDate, Utc};
use serde::Serialize;

use cachefill_core::clock::{Clock, SystemClock};
use cachefill_core::codec::Sidecar;
use cachefill_core::coverage::{self, Covered, wanted_sessions};
use cachefill_core::fill::{FillAnswer, MissRequest};
use cachefill_core::format::{PARQUET_SUFFIX, SIDECAR_SUFFIX};
use cachefill_core::keys::{KeyLayout, parse_relative_path, relative_path};
use cachefill_core::settings::{CacheMode, ClientSettings};
use cachefill_core::storage::guard::ReadOnlyStore;
use cachefill_core::storage::s3::connect;
use cachefill_core::storage::{ObjectStore, StorageError};

use crate::error::ClientError;
use crate::invoke::{InvokeError, Invoker, LambdaInvoker, LambdaOptions};
use crate::local_cache::{Entry, LocalCache, Receipt, SidecarState};
use crate::mode;
use crate::remote::{self, DownloadPolicy, Pair, Uploaded};
use crate::request::DataRequest;
use crate::single_flight::SingleFlight;
use crate::widen::{self, Widening};

/// Retries of a failed invocation whose error says retrying may help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Invocations in all, the first included.
    pub attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
        }
    }
}

/// Polling of the canonical key after an invocation timed out on the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollPolicy {
    pub initial: Duration,
    pub max: Duration,
    /// Give up this long after the timeout: the function's own timeout plus a margin.
    pub deadline: Duration,
}

impl Default for PollPolicy {
    fn default() -> Self {
        PollPolicy {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(5),
            deadline: Duration::from_secs(960),
        }
    }
}

/// Everything a [`CacheClient`] is told.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub mode: CacheMode,
    /// The local cache root (lumibot's cache folder).
    pub cache_root: PathBuf,
    pub layout: KeyLayout,
    /// The bucket's name, checked against the fill function's answers when known.
    pub bucket: Option<String>,
    pub widening: Widening,
    pub download: DownloadPolicy,
    pub retry: RetryPolicy,
    pub poll: PollPolicy,
    pub clock: Arc<dyn Clock>,
}

impl ClientConfig {
    pub fn new(mode: CacheMode, cache_root: impl Into<PathBuf>, layout: KeyLayout) -> Self {
        ClientConfig {
            mode,
            cache_root: cache_root.into(),
            layout,
            bucket: None,
            widening: Widening::default(),
            download: DownloadPolicy::default(),
            retry: RetryPolicy::default(),
            poll: PollPolicy::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

/// Where a [`LocalFile`] came from on this call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Already in the local cache, verified against its sidecar.
    LocalHit,
    /// Downloaded: the bucket already covered the range.
    RemoteHit,
    /// The miss-handler filled the range, then the version it wrote was downloaded.
    Filled,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::LocalHit => "local_hit",
            Source::RemoteHit => "remote_hit",
            Source::Filled => "filled",
        }
    }
}

/// A local parquet that covers the request, consistent with its sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalFile {
    pub path: PathBuf,
    /// The remote key it mirrors.
    pub key: String,
    pub rows: u64,
    pub min: Option<String>,
    pub max: Option<String>,
    /// The bucket version it was downloaded from, when known.
    pub version_id: Option<String>,
    pub sha256: String,
    pub source: Source,
    /// The day files of a day-partitioned answer (aggregate trades), in order; `path` and
    /// `key` are then the first day's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<crate::trades::LocalDay>,
}

/// What a client has done since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub requests: u64,
    pub local_hits: u64,
    pub remote_hits: u64,
    pub fills: u64,
    pub invocations: u64,
    /// Upstream requests the miss-handler reported in its answers.
    pub upstream_requests: u64,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    local_hits: AtomicU64,
    remote_hits: AtomicU64,
    fills: AtomicU64,
    invocations: AtomicU64,
    upstream_requests: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

#[derive(Debug)]
struct Inner {
    config: ClientConfig,
    store: Option<Arc<dyn ObjectStore>>,
    invoker: Option<Arc<dyn Invoker>>,
    cache: LocalCache,
    flights: SingleFlight,
    counters: Counters,
}

/// The cache as a backtest job sees it. Cheap to clone; clones share the single-flight
/// turns, the verified-file memory and the statistics.
#[derive(Debug, Clone)]
pub struct CacheClient {
    inner: Arc<Inner>,
}

/// How a local entry answers a request.
enum Hit<'e> {
    Ready(LocalFile),
    /// Covered, but its facts must be read from its rows (a sidecar-less file, disabled mode).
    NeedsRows(&'e Entry),
    Miss,
}

fn local_file(key: &str, entry: &Entry, facts: crate::local_cache::FileFacts) -> LocalFile {
    LocalFile {
        path: entry.path.clone(),
        key: key.to_string(),
        rows: facts.rows,
        min: facts.min,
        max: facts.max,
        version_id: entry.receipt.as_ref().and_then(|r| r.version_id.clone()),
        sha256: entry.sha256.clone(),
        source: Source::LocalHit,
        paths: Vec::new(),
    }
}

/// What the bucket said about a range.
enum Remote {
    Hit(LocalFile),
    /// Not covered; these wanted sessions are missing.
    Miss(Vec<NaiveDate>),
}

impl CacheClient {
    /// A client from lumibot's `LUMIBOT_CACHE_*` settings in the environment.
    pub async fn from_env() -> Result<Self, ClientError> {
        Self::from_settings(&ClientSettings::from_env()?).await
    }

    /// A client from the settings `get` returns by name, instead of the process environment
    /// (for several differently configured clients in one process).
    pub async fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ClientError> {
        Self::from_settings(&ClientSettings::from_lookup(get)?).await
    }

    /// A client from settings: S3 for the bucket, Lambda for the fill function.
    pub async fn from_settings(settings: &ClientSettings) -> Result<Self, ClientError> {
        let Some(remote) = settings
            .remote
            .as_ref()
            .filter(|_| mode::reads_remote(settings.mode()))
        else {
            let config = ClientConfig::new(
                CacheMode::Disabled,
                settings.cache_folder.clone(),
                KeyLayout::new("", "v1"),
            );
            return CacheClient::new(config, None, None);
        };
        let store: Arc<dyn ObjectStore> =
            Arc::new(connect(remote.bucket.clone(), &settings.s3()).await);
        let invoker: Option<Arc<dyn Invoker>> = match &settings.fill_function {
            Some(function) => Some(Arc::new(
                LambdaInvoker::connect(LambdaOptions::from_settings(settings, function)).await,
            )),
            None => None,
        };
        let mut config =
            ClientConfig::new(remote.mode, settings.cache_folder.clone(), remote.layout());
        config.bucket = Some(remote.bucket.clone());
        CacheClient::new(config, Some(store), invoker)
    }

    /// A client over any store and invoker (tests, the embedded default, embedding).
    ///
    /// `disabled` drops both, so nothing remote can be touched; `readonly` wraps the store
    /// in [`ReadOnlyStore`], so no write can reach the bucket; remote modes need a store.
    pub fn new(
        config: ClientConfig,
        store: Option<Arc<dyn ObjectStore>>,
        invoker: Option<Arc<dyn Invoker>>,
    ) -> Result<Self, ClientError> {
        let (store, invoker) = match config.mode {
            CacheMode::Disabled => (None, None),
            CacheMode::ReadOnly => {
                let store = store.ok_or(ClientError::NoBucket { mode: config.mode })?;
                let guarded: Arc<dyn ObjectStore> = Arc::new(ReadOnlyStore::new(store));
                (Some(guarded), invoker)
            }
            CacheMode::ReadWrite => (
                Some(store.ok_or(ClientError::NoBucket { mode: config.mode })?),
                invoker,
            ),
        };
        Ok(CacheClient {
            inner: Arc::new(Inner {
                cache: LocalCache::new(config.cache_root.clone()),
                config,
                store,
                invoker,
                flights: SingleFlight::new(),
                counters: Counters::default(),
            }),
        })
    }

    /// The time on the client's clock.
    pub fn now(&self) -> chrono::DateTime<Utc> {
        self.inner.config.clock.now()
    }

    pub fn mode(&self) -> CacheMode {
        self.inner.config.mode
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    pub fn layout(&self) -> &KeyLayout {
        &self.inner.config.layout
    }

    pub fn local_cache(&self) -> &LocalCache {
        &self.inner.cache
    }

    /// The store this client reads through (read-only guarded in `readonly`).
    pub fn store(&self) -> Option<&Arc<dyn ObjectStore>> {
        self.inner.store.as_ref()
    }

    pub(crate) fn count_request(&self) {
        bump(&self.inner.counters.requests, 1);
    }

    pub(crate) fn count_local_hit(&self) {
        bump(&self.inner.counters.local_hits, 1);
    }

    pub(crate) fn count_remote_hit(&self) {
        bump(&self.inner.counters.remote_hits, 1);
    }

    /// A fill whose answer reported `upstream_requests`.
    pub(crate) fn count_fill(&self, upstream_requests: u64) {
        bump(&self.inner.counters.fills, 1);
        bump(&self.inner.counters.upstream_requests, upstream_requests);
    }

    pub(crate) fn flights(&self) -> &SingleFlight {
        &self.inner.flights
    }

    pub(crate) fn invoker(&self) -> Option<&Arc<dyn Invoker>> {
        self.inner.invoker.as_ref()
    }

    pub fn stats(&self) -> Stats {
        let c = &self.inner.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            requests: get(&c.requests),
            local_hits: get(&c.local_hits),
            remote_hits: get(&c.remote_hits),
            fills: get(&c.fills),
            invocations: get(&c.invocations),
            upstream_requests: get(&c.upstream_requests),
        }
    }

    /// A local parquet that covers the request: from the local cache, else downloaded from
    /// the bucket when it covers the range, else (remote modes with a fill function) filled
    /// by the miss-handler and then downloaded.
    pub async fn get(&self, request: &DataRequest) -> Result<LocalFile, ClientError> {
        let config = &self.inner.config;
        bump(&self.inner.counters.requests, 1);
        let dataset = &request.dataset;
        let key = config.layout.data_key(dataset);
        let relative = relative_path(dataset);
        let now = config.clock.now();
        let wanted = wanted_sessions(dataset, request.start, request.end, now)
            .map_err(|e| ClientError::InvalidRequest(e.to_string()))?;

        let local = self.read_local(&relative).await?;
        if let Some(file) = self.local_hit(&key, local.as_ref(), &wanted).await? {
            bump(&self.inner.counters.local_hits, 1);
            return Ok(file);
        }
        let Some(store) = self.inner.store.clone() else {
            return Err(self.not_covered(&key, local.as_ref(), &wanted, request));
        };

        let mut turn = self.inner.flights.enter(&key).await;
        if let Some(error) = turn.failed_while_waiting() {
            return Err(ClientError::Invoke {
                key,
                source: error.clone(),
            });
        }
        // The turn before ours may have brought exactly what we need.
        let local = self.read_local(&relative).await?;
        if let Some(file) = self.local_hit(&key, local.as_ref(), &wanted).await? {
            bump(&self.inner.counters.local_hits, 1);
            return Ok(file);
        }
        let missing = match self.remote(&*store, &relative, &key, &wanted).await? {
            Remote::Hit(file) => {
                bump(&self.inner.counters.remote_hits, 1);
                return Ok(file);
            }
            Remote::Miss(missing) => missing,
        };
        let Some(invoker) = self.inner.invoker.clone() else {
            return Err(match config.mode {
                CacheMode::ReadOnly => ClientError::NoFillFunction { key },
                _ => self.not_covered(&key, local.as_ref(), &wanted, request),
            });
        };
        let Some((start, end)) = widen::widen(config.widening, dataset, &missing, now)? else {
            // Nothing settled is wanted and nothing is stored: there is nothing to serve.
            return Err(ClientError::NoData {
                key,
                start: request.start,
                end: request.end,
            });
        };
        let fill = request.to_fill_request(start, end)?;
        match self.invoke(&*invoker, &MissRequest::Bars(fill)).await {
            Ok(answer) => {
                let file = self
                    .take_answer(&*store, &relative, &key, &answer, request)
                    .await?;
                bump(&self.inner.counters.fills, 1);
                Ok(file)
            }
            Err(InvokeError::TimedOut { after }) => {
                tracing::info!(
                    key,
                    ?after,
                    "no answer from the fill function; polling the key"
                );
                let file = self
                    .poll_until_covered(&*store, &relative, &key, &wanted)
                    .await?;
                bump(&self.inner.counters.fills, 1);
                Ok(file)
            }
            Err(error) => {
                turn.record_failure(&error);
                Err(ClientError::Invoke { key, source: error })
            }
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&LocalCache) -> Result<T, ClientError> + Send + 'static,
    ) -> Result<T, ClientError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || work(&inner.cache))
            .await
            .map_err(|e| ClientError::local(self.inner.cache.root(), std::io::Error::other(e)))?
    }

    async fn read_local(&self, relative: &str) -> Result<Option<Entry>, ClientError> {
        let relative = relative.to_string();
        self.blocking(move |cache| cache.read(&relative)).await
    }

    /// The local entry as a hit, when it covers the wanted sessions and may be served.
    async fn local_hit(
        &self,
        key: &str,
        entry: Option<&Entry>,
        wanted: &[NaiveDate],
    ) -> Result<Option<LocalFile>, ClientError> {
        Ok(match self.hit_of(key, entry, wanted) {
            Hit::Ready(file) => Some(file),
            Hit::Miss => None,
            Hit::NeedsRows(entry) => {
                let path = entry.path.clone();
                let facts = self
                    .blocking(move |cache| cache.facts_from_rows(&path))
                    .await?;
                Some(local_file(key, entry, facts))
            }
        })
    }

    /// How the local entry answers the wanted sessions, without reading more than it holds.
    fn hit_of<'e>(&self, key: &str, entry: Option<&'e Entry>, wanted: &[NaiveDate]) -> Hit<'e> {
        // A marker naming another key says the file came from elsewhere (another bucket,
        // prefix or version): it is a different file, whatever it covers.
        let Some(entry) = entry
            .filter(|e| e.marker.as_deref().is_none_or(|m| m == key))
            .filter(|e| e.covered.covers(wanted))
        else {
            return Hit::Miss;
        };
        match entry.facts() {
            Some(facts) => Hit::Ready(local_file(key, entry, facts)),
            // With no bucket to refetch from, a file lumibot wrote without a sidecar is
            // the best there is; a sidecar that disagrees is never trusted.
            None if self.mode() == CacheMode::Disabled
                && entry.sidecar_state == SidecarState::Missing =>
            {
                Hit::NeedsRows(entry)
            }
            None => Hit::Miss,
        }
    }

    /// [`get`](Self::get) when the local cache already covers the request, answered on the
    /// calling thread without a runtime (the fast path of callers that block, such as the
    /// Python package); `None` when `get` has more to do.
    pub fn get_local(&self, request: &DataRequest) -> Result<Option<LocalFile>, ClientError> {
        let config = &self.inner.config;
        let dataset = &request.dataset;
        let wanted = wanted_sessions(dataset, request.start, request.end, config.clock.now())
            .map_err(|e| ClientError::InvalidRequest(e.to_string()))?;
        let key = config.layout.data_key(dataset);
        let entry = self.inner.cache.read(&relative_path(dataset))?;
        match self.hit_of(&key, entry.as_ref(), &wanted) {
            Hit::Ready(file) => {
                bump(&self.inner.counters.requests, 1);
                bump(&self.inner.counters.local_hits, 1);
                Ok(Some(file))
            }
            Hit::Miss | Hit::NeedsRows(_) => Ok(None),
        }
    }

    fn not_covered(
        &self,
        key: &str,
        local: Option<&Entry>,
        wanted: &[NaiveDate],
        request: &DataRequest,
    ) -> ClientError {
        if let Some(entry) = local.filter(|e| {
            e.covered.covers(wanted) && matches!(e.sidecar_state, SidecarState::Mismatch { .. })
        }) {
            return ClientError::Inconsistent {
                key: key.to_string(),
                attempts: 0,
                detail: format!(
                    "the local file {} disagrees with its sidecar and there is no bucket to download it from",
                    entry.path.display()
                ),
            };
        }
        let missing = match local {
            Some(entry) => entry.covered.missing(wanted),
            None => wanted.to_vec(),
        };
        ClientError::NotCovered {
            key: key.to_string(),
            mode: self.mode(),
            missing: missing.len(),
            first: missing.first().copied().unwrap_or(request.start),
            last: missing.last().copied().unwrap_or(request.end),
        }
    }

    /// Decide from the bucket, downloading a body only when it claims to cover the range.
    async fn remote(
        &self,
        store: &dyn ObjectStore,
        relative: &str,
        key: &str,
        wanted: &[NaiveDate],
    ) -> Result<Remote, ClientError> {
        let meta = match store.head(key, None).await {
            Ok(meta) => meta,
            Err(StorageError::NotFound { .. }) => return Ok(Remote::Miss(wanted.to_vec())),
            Err(e) => return Err(ClientError::storage(key, e)),
        };
        match coverage::claimed(&meta) {
            Some(claimed) if !coverage::claim_covers(&claimed, wanted) => {
                let missing = wanted
                    .iter()
                    .copied()
                    .filter(|d| !claimed.contains(d))
                    .collect();
                return Ok(Remote::Miss(missing));
            }
            Some(_) => {}
            None => {
                let sidecar_key = format!("{key}{SIDECAR_SUFFIX}");
                match store.get(&sidecar_key, None).await {
                    Ok(got) => {
                        if Sidecar::parse(&got.bytes)
                            .is_ok_and(|s| coverage::sidecar_rules_out(&s, wanted))
                        {
                            return Ok(Remote::Miss(wanted.to_vec()));
                        }
                    }
                    Err(StorageError::NotFound { .. }) => {}
                    Err(e) => return Err(ClientError::storage(&sidecar_key, e)),
                }
            }
        }
        let Some(pair) = remote::fetch_pair(store, key, None, &self.inner.config.download).await?
        else {
            return Ok(Remote::Miss(wanted.to_vec()));
        };
        let covered = self.covered_of(relative, key, &pair)?;
        if !covered.covers(wanted) {
            return Ok(Remote::Miss(covered.missing(wanted)));
        }
        let file = self
            .publish(relative, key, pair, Some(covered), Source::RemoteHit)
            .await?;
        Ok(Remote::Hit(file))
    }

    fn covered_of(&self, relative: &str, key: &str, pair: &Pair) -> Result<Covered, ClientError> {
        let dataset = parse_relative_path(relative)
            .map_err(|e| ClientError::InvalidRequest(format!("{relative}: {}", e.0)))?;
        coverage::of_parquet(&dataset, &pair.parquet, pair.meta.last_modified).map_err(|e| {
            ClientError::Inconsistent {
                key: key.to_string(),
                attempts: 1,
                detail: format!("the parquet does not decode: {e}"),
            }
        })
    }

    /// Invoke, retrying errors that say a retry may help (never `InvalidRequest`).
    pub(crate) async fn invoke(
        &self,
        invoker: &dyn Invoker,
        request: &MissRequest,
    ) -> Result<FillAnswer, InvokeError> {
        let what = request.relative_path();
        let policy = self.inner.config.retry;
        let mut backoff = policy.initial_backoff;
        let attempts = policy.attempts.max(1);
        for attempt in 1..=attempts {
            bump(&self.inner.counters.invocations, 1);
            match invoker.invoke(request).await {
                Ok(answer) => return Ok(answer),
                Err(error) if error.is_retryable() && attempt < attempts => {
                    tracing::warn!(object = %what, attempt, %error, "fill failed; retrying");
                    let jitter = 0.75 + fastrand::f64() * 0.5;
                    tokio::time::sleep(backoff.mul_f64(jitter)).await;
                    backoff = (backoff * 2).min(policy.max_backoff);
                }
                Err(error) => return Err(error),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Download exactly the version the miss-handler names.
    async fn take_answer(
        &self,
        store: &dyn ObjectStore,
        relative: &str,
        key: &str,
        answer: &FillAnswer,
        request: &DataRequest,
    ) -> Result<LocalFile, ClientError> {
        let config = &self.inner.config;
        let bucket_differs = config
            .bucket
            .as_deref()
            .is_some_and(|b| !answer.bucket.is_empty() && answer.bucket != b);
        if answer.key != key || bucket_differs {
            return Err(ClientError::WrongKey {
                bucket: answer.bucket.clone(),
                expected: key.to_string(),
                got: answer.key.clone(),
            });
        }
        bump(
            &self.inner.counters.upstream_requests,
            answer.upstream_requests,
        );
        if answer.version_id.is_none() && answer.etag.is_none() {
            return Err(ClientError::NoData {
                key: key.to_string(),
                start: request.start,
                end: request.end,
            });
        }
        let version = answer.version_id.as_deref();
        let pair = remote::fetch_pair(store, key, version, &config.download)
            .await?
            .ok_or_else(|| ClientError::Inconsistent {
                key: key.to_string(),
                attempts: 1,
                detail: format!(
                    "the version {} the fill function named is not in the bucket",
                    version.unwrap_or("(current)")
                ),
            })?;
        if let (Some(_), Some(expected)) = (version, answer.sha256.as_deref())
            && pair.sha256 != expected
        {
            return Err(ClientError::Inconsistent {
                key: key.to_string(),
                attempts: 1,
                detail: format!(
                    "the version the fill function named hashes to {}, not {expected}",
                    pair.sha256
                ),
            });
        }
        self.publish(relative, key, pair, None, Source::Filled)
            .await
    }

    /// After a timed-out invocation: HEAD the key until it covers the range or the deadline
    /// passes, then download it.
    async fn poll_until_covered(
        &self,
        store: &dyn ObjectStore,
        relative: &str,
        key: &str,
        wanted: &[NaiveDate],
    ) -> Result<LocalFile, ClientError> {
        let policy = self.inner.config.poll;
        let started = Instant::now();
        let mut delay = policy.initial;
        loop {
            let covered = match store.head(key, None).await {
                Ok(meta) => match coverage::claimed(&meta) {
                    Some(claimed) => coverage::claim_covers(&claimed, wanted),
                    None => match remote::fetch_pair(store, key, None, &self.inner.config.download)
                        .await?
                    {
                        Some(pair) => self.covered_of(relative, key, &pair)?.covers(wanted),
                        None => false,
                    },
                },
                Err(StorageError::NotFound { .. }) => false,
                Err(e) => return Err(ClientError::storage(key, e)),
            };
            if covered
                && let Some(pair) =
                    remote::fetch_pair(store, key, None, &self.inner.config.download).await?
            {
                return self
                    .publish(relative, key, pair, None, Source::Filled)
                    .await;
            }
            let waited = started.elapsed();
            if waited >= policy.deadline {
                return Err(ClientError::PollDeadline {
                    key: key.to_string(),
                    waited,
                });
            }
            let jitter = 0.75 + fastrand::f64() * 0.5;
            tokio::time::sleep(delay.mul_f64(jitter).min(policy.deadline - waited)).await;
            delay = delay.mul_f64(1.5).min(policy.max);
        }
    }

    async fn publish(
        &self,
        relative: &str,
        key: &str,
        pair: Pair,
        covered: Option<Covered>,
        source: Source,
    ) -> Result<LocalFile, ClientError> {
        let sidecar = Sidecar::parse(&pair.sidecar).map_err(|e| ClientError::Inconsistent {
            key: key.to_string(),
            attempts: 1,
            detail: format!("the sidecar is unreadable: {e}"),
        })?;
        let receipt = Receipt {
            key: key.to_string(),
            version_id: pair.meta.version_id.clone(),
            etag: Some(pair.meta.etag.clone()),
            sha256: pair.sha256.clone(),
            fetched_at: Utc::now(),
        };
        let relative_owned = relative.to_string();
        let (parquet, sidecar_bytes) = (pair.parquet.clone(), pair.sidecar.clone());
        let path = self
            .blocking(move |cache| {
                cache.publish(&relative_owned, &parquet, covered, &sidecar_bytes, &receipt)
            })
            .await?;
        Ok(LocalFile {
            path,
            key: key.to_string(),
            rows: sidecar.rows,
            min: sidecar.min,
            max: sidecar.max,
            version_id: pair.meta.version_id,
            sha256: pair.sha256,
            source,
            paths: Vec::new(),
        })
    }

    /// lumibot's `remote_key_for`: the remote key of a local path, `None` when the remote
    /// cache is off or the path is outside the cache root.
    pub fn remote_key_for(&self, path: impl AsRef<Path>) -> Option<String> {
        if !mode::reads_remote(self.mode()) {
            return None;
        }
        let relative = self.inner.cache.relative_of(path.as_ref())?;
        Some(self.inner.config.layout.key_for_relative(&relative))
    }

    /// [`ensure_local_file`](Self::ensure_local_file) when it needs nothing remote (no bucket,
    /// a path outside the cache root, or a local copy whose marker names its key), answered
    /// on the calling thread without a runtime; `None` when the bucket must be asked.
    pub fn ensure_local_file_here(&self, path: &Path) -> Result<Option<bool>, ClientError> {
        if self.inner.store.is_none() {
            return Ok(Some(false));
        }
        let Some(relative) = self.inner.cache.relative_of(path) else {
            tracing::debug!(path = %path.display(), "outside the cache root; not cached remotely");
            return Ok(Some(false));
        };
        let key = self.inner.config.layout.key_for_relative(&relative);
        let marked = self.inner.cache.marker(&relative)?;
        Ok((marked.as_deref() == Some(key.as_str()) && path.is_file()).then_some(false))
    }

    /// lumibot 4.6's `ensure_local_file`: in a remote mode, reuse a local copy whose `.s3key`
    /// marker names its remote key (`false`); otherwise download the remote object over the
    /// local copy, write the marker and return `true`; on a remote miss remove the local copy
    /// and its marker and return `false`; `false` as well when the cache is off or the path
    /// is outside the cache root. A dataset parquet comes with a sidecar that matches it.
    pub async fn ensure_local_file(&self, path: impl AsRef<Path>) -> Result<bool, ClientError> {
        if let Some(answer) = self.ensure_local_file_here(path.as_ref())? {
            return Ok(answer);
        }
        let Some(store) = self.inner.store.clone() else {
            return Ok(false);
        };
        let Some(relative) = self.inner.cache.relative_of(path.as_ref()) else {
            return Ok(false);
        };
        let key = self.inner.config.layout.key_for_relative(&relative);
        let is_dataset =
            relative.ends_with(PARQUET_SUFFIX) && parse_relative_path(&relative).is_ok();
        let fetched = if is_dataset {
            match remote::fetch_pair(&*store, &key, None, &self.inner.config.download).await {
                Ok(Some(pair)) => self
                    .publish(&relative, &key, pair, None, Source::RemoteHit)
                    .await
                    .map(|_| true),
                Ok(None) => Ok(false),
                Err(e) => Err(e),
            }
        } else {
            match store.get(&key, None).await {
                Ok(got) => {
                    let relative = relative.clone();
                    let key = key.clone();
                    self.blocking(move |cache| cache.publish_file(&relative, &got.bytes, &key))
                        .await
                        .map(|_| true)
                }
                Err(StorageError::NotFound { .. }) => Ok(false),
                Err(e) => Err(ClientError::storage(&key, e)),
            }
        };
        if !matches!(fetched, Ok(true)) {
            // The S3 cache is exclusive in lumibot: a local copy is never reused.
            let relative = relative.clone();
            self.blocking(move |cache| {
                if is_dataset {
                    cache.remove(&relative)
                } else {
                    cache.remove_file(&relative)
                }
            })
            .await?;
        }
        fetched
    }

    /// lumibot's `on_local_update`: in `readwrite`, upload a file written locally; `true`
    /// when it was uploaded.
    pub async fn on_local_update(&self, path: impl AsRef<Path>) -> Result<bool, ClientError> {
        Ok(self.upload(path).await?.is_some())
    }

    /// [`on_local_update`](Self::on_local_update) with what was written: the upload goes to
    /// `<key>.tmp-<secs>-<rand>`, is copied onto the key, and the temporary is deleted.
    pub async fn upload(&self, path: impl AsRef<Path>) -> Result<Option<Uploaded>, ClientError> {
        let path = path.as_ref();
        if !mode::uploads(self.mode()) {
            return Ok(None);
        }
        let Some(store) = self.inner.store.clone() else {
            return Ok(None);
        };
        let Some(relative) = self.inner.cache.relative_of(path) else {
            return Ok(None);
        };
        let bytes = match tokio::fs::read(path).await {
            Ok(bytes) => Bytes::from(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %path.display(), "local file does not exist; nothing to upload");
                return Ok(None);
            }
            Err(e) => return Err(ClientError::local(path, e)),
        };
        let key = self.inner.config.layout.key_for_relative(&relative);
        let uploaded = remote::upload_through_temporary(&*store, &key, bytes).await?;
        // As lumibot's own upload does: the local file is now the remote object.
        self.blocking(move |cache| cache.mark(&relative, &key))
            .await?;
        Ok(Some(uploaded))
    }
}
