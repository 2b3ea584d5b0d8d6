//! Test doubles that wrap real components: a provider that counts what it is asked for,
//! one that serves scripted rows, a store that fails chosen writes, and one that loses a
//! write race on purpose.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::NaiveDate;

use cachefill_core::codec::Rows;
use cachefill_core::dataset::Dataset;
use cachefill_core::providers::{
    FetchRequest, Fetched, FetchedChain, FetchedEvents, Provider, ProviderError,
};
use cachefill_core::reference::ChainSet;
use cachefill_core::reference::events::EventSet;
use cachefill_core::storage::{
    GetResult, ObjectMeta, ObjectStore, PutOptions, PutResult, Result, StorageError, Tags,
    VersionInfo,
};

/// Wraps a provider and counts, per session, how often it was fetched.
#[derive(Debug)]
pub struct CountingProvider<P> {
    inner: P,
    fetched: Mutex<BTreeMap<NaiveDate, usize>>,
    calls: AtomicUsize,
}

impl<P> CountingProvider<P> {
    pub fn new(inner: P) -> Self {
        CountingProvider {
            inner,
            fetched: Mutex::new(BTreeMap::new()),
            calls: AtomicUsize::new(0),
        }
    }

    /// How many times each session was fetched.
    pub fn per_session(&self) -> BTreeMap<NaiveDate, usize> {
        self.fetched.lock().expect("counter lock").clone()
    }

    /// Units fetched in all.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn reset(&self) {
        self.fetched.lock().expect("counter lock").clear();
        self.calls.store(0, Ordering::SeqCst);
    }
}

#[async_trait]
impl<P: Provider> Provider for CountingProvider<P> {
    fn supports(&self, dataset: &Dataset) -> std::result::Result<(), ProviderError> {
        self.inner.supports(dataset)
    }

    fn plan(&self, dataset: &Dataset, sessions: &[NaiveDate]) -> Vec<Vec<NaiveDate>> {
        self.inner.plan(dataset, sessions)
    }

    async fn fetch(
        &self,
        request: FetchRequest<'_>,
    ) -> std::result::Result<Fetched, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        {
            let mut fetched = self.fetched.lock().expect("counter lock");
            for session in request.sessions {
                *fetched.entry(*session).or_default() += 1;
            }
        }
        self.inner.fetch(request).await
    }

    fn concurrency(&self, dataset: &Dataset) -> usize {
        self.inner.concurrency(dataset)
    }

    async fn query_expiration(
        &self,
        dataset: &Dataset,
        requested: Option<NaiveDate>,
    ) -> std::result::Result<Option<NaiveDate>, ProviderError> {
        self.inner.query_expiration(dataset, requested).await
    }

    fn serves_events(&self, set: &EventSet) -> bool {
        self.inner.serves_events(set)
    }

    async fn events(
        &self,
        set: &EventSet,
        from: NaiveDate,
        to: NaiveDate,
    ) -> std::result::Result<Option<FetchedEvents>, ProviderError> {
        self.inner.events(set, from, to).await
    }

    async fn chain(
        &self,
        set: &ChainSet,
    ) -> std::result::Result<Option<FetchedChain>, ProviderError> {
        self.inner.chain(set).await
    }
}

/// Serves the rows it was given for each session, nothing for the others; or fails.
#[derive(Debug, Default)]
pub struct ScriptedProvider {
    rows: Mutex<BTreeMap<NaiveDate, Rows>>,
    failure: Mutex<Option<ProviderError>>,
}

impl ScriptedProvider {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&self, session: NaiveDate, rows: Rows) {
        self.rows.lock().expect("script lock").insert(session, rows);
    }

    pub fn fail_with(&self, error: Option<ProviderError>) {
        *self.failure.lock().expect("script lock") = error;
    }
}

#[async_trait]
impl Provider for ScriptedProvider {
    /// Serves any dataset: tests script its rows.
    fn supports(&self, _dataset: &Dataset) -> std::result::Result<(), ProviderError> {
        Ok(())
    }

    fn plan(&self, _dataset: &Dataset, sessions: &[NaiveDate]) -> Vec<Vec<NaiveDate>> {
        cachefill_core::providers::one_per_session(sessions)
    }

    async fn fetch(
        &self,
        request: FetchRequest<'_>,
    ) -> std::result::Result<Fetched, ProviderError> {
        if let Some(e) = self.failure.lock().expect("script lock").clone() {
            return Err(e);
        }
        let script = self.rows.lock().expect("script lock");
        let mut rows = Rows::empty_for(cachefill_core::codec::schema::Layout::of(request.dataset));
        for session in request.sessions {
            if let Some(r) = script.get(session) {
                rows.extend(r.clone())
                    .map_err(|e| ProviderError::Protocol(e.to_string()))?;
            }
        }
        Ok(Fetched { rows, requests: 1 })
    }
}

type WritePredicate = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// Wraps a real store and fails writes (`put`, `copy`) of keys the predicate picks, as a
/// crash or an outage between fetch and write would.
pub struct FailingStore<S> {
    inner: S,
    fail: Mutex<Option<WritePredicate>>,
    failed: AtomicUsize,
}

impl<S: std::fmt::Debug> std::fmt::Debug for FailingStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailingStore")
            .field("inner", &self.inner)
            .finish()
    }
}

impl<S> FailingStore<S> {
    pub fn new(inner: S) -> Self {
        FailingStore {
            inner,
            fail: Mutex::new(None),
            failed: AtomicUsize::new(0),
        }
    }

    pub fn fail_writes_where(&self, predicate: impl Fn(&str) -> bool + Send + Sync + 'static) {
        *self.fail.lock().expect("predicate lock") = Some(Box::new(predicate));
    }

    pub fn heal(&self) {
        *self.fail.lock().expect("predicate lock") = None;
    }

    /// Writes refused so far.
    pub fn failed(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }

    fn check(&self, operation: &'static str, key: &str) -> Result<()> {
        if self
            .fail
            .lock()
            .expect("predicate lock")
            .as_ref()
            .is_some_and(|p| p(key))
        {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(StorageError::Unavailable {
                operation,
                key: key.to_string(),
                message: "injected failure".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for FailingStore<S> {
    async fn get(&self, key: &str, version: Option<&str>) -> Result<GetResult> {
        self.inner.get(key, version).await
    }
    async fn head(&self, key: &str, version: Option<&str>) -> Result<ObjectMeta> {
        self.inner.head(key, version).await
    }
    async fn put(&self, key: &str, body: Bytes, options: PutOptions) -> Result<PutResult> {
        self.check("put", key)?;
        self.inner.put(key, body, options).await
    }
    async fn copy(&self, from: &str, from_version: Option<&str>, to: &str) -> Result<PutResult> {
        self.check("copy", to)?;
        self.inner.copy(from, from_version, to).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.check("delete", key)?;
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }
    async fn list_versions(&self, key: &str) -> Result<Vec<VersionInfo>> {
        self.inner.list_versions(key).await
    }
    async fn get_tags(&self, key: &str, version: Option<&str>) -> Result<Tags> {
        self.inner.get_tags(key, version).await
    }
    async fn put_tags(&self, key: &str, version: Option<&str>, tags: &Tags) -> Result<()> {
        self.inner.put_tags(key, version, tags).await
    }
}

/// Wraps a real store; when armed with another writer's object, writes it to `key` just
/// before the next put of that key, so the put loses its `If-Match` as it would against a
/// concurrent writer, and the engine must merge again. Armed to lose an answer, it lets the
/// next put of `key` land and then makes it again, as an S3 client retries a write whose
/// answer was cut off: the retry's `If-Match` meets the version the first one wrote.
#[derive(Debug)]
pub struct RacingStore<S> {
    inner: S,
    key: String,
    injected: Mutex<Option<Bytes>>,
    lose_answer: AtomicBool,
}

impl<S> RacingStore<S> {
    pub fn new(inner: S, key: impl Into<String>) -> Self {
        RacingStore {
            inner,
            key: key.into(),
            injected: Mutex::new(None),
            lose_answer: AtomicBool::new(false),
        }
    }

    /// The next put of the key lands, and its answer is lost to a retry of it.
    pub fn lose_next_answer(&self) {
        self.lose_answer.store(true, Ordering::SeqCst);
    }

    /// The object the other writer puts before our next put of the key.
    pub fn race_with(&self, other: Bytes) {
        *self.injected.lock().expect("race lock") = Some(other);
    }

    /// Whether the armed race has happened.
    pub fn raced(&self) -> bool {
        self.injected.lock().expect("race lock").is_none()
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for RacingStore<S> {
    async fn get(&self, key: &str, version: Option<&str>) -> Result<GetResult> {
        self.inner.get(key, version).await
    }
    async fn head(&self, key: &str, version: Option<&str>) -> Result<ObjectMeta> {
        self.inner.head(key, version).await
    }
    async fn put(&self, key: &str, body: Bytes, options: PutOptions) -> Result<PutResult> {
        let injected = if key == self.key {
            self.injected.lock().expect("race lock").take()
        } else {
            None
        };
        if let Some(other) = injected {
            self.inner.put(key, other, PutOptions::default()).await?;
        }
        if key == self.key && self.lose_answer.swap(false, Ordering::SeqCst) {
            self.inner.put(key, body.clone(), options.clone()).await?;
        }
        self.inner.put(key, body, options).await
    }
    async fn copy(&self, from: &str, from_version: Option<&str>, to: &str) -> Result<PutResult> {
        self.inner.copy(from, from_version, to).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }
    async fn list_versions(&self, key: &str) -> Result<Vec<VersionInfo>> {
        self.inner.list_versions(key).await
    }
    async fn get_tags(&self, key: &str, version: Option<&str>) -> Result<Tags> {
        self.inner.get_tags(key, version).await
    }
    async fn put_tags(&self, key: &str, version: Option<&str>, tags: &Tags) -> Result<()> {
        self.inner.put_tags(key, version, tags).await
    }
}

/// Wraps a real store and records every operation on it as `(operation, key)`, in order, so
/// a test can say what a call cost in requests ("a hit is one HEAD and one small GET").
#[derive(Debug, Default)]
pub struct CountingStore<S> {
    inner: S,
    calls: Mutex<Vec<(&'static str, String)>>,
}

impl<S> CountingStore<S> {
    pub fn new(inner: S) -> Self {
        CountingStore {
            inner,
            calls: Mutex::new(Vec::new()),
        }
    }

    /// The operations so far, and forget them.
    pub fn take_calls(&self) -> Vec<(&'static str, String)> {
        std::mem::take(&mut *self.calls.lock().expect("calls lock"))
    }

    fn record(&self, operation: &'static str, key: &str) {
        self.calls
            .lock()
            .expect("calls lock")
            .push((operation, key.to_string()));
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for CountingStore<S> {
    async fn get(&self, key: &str, version: Option<&str>) -> Result<GetResult> {
        self.record("get", key);
        self.inner.get(key, version).await
    }
    async fn head(&self, key: &str, version: Option<&str>) -> Result<ObjectMeta> {
        self.record("head", key);
        self.inner.head(key, version).await
    }
    async fn put(&self, key: &str, body: Bytes, options: PutOptions) -> Result<PutResult> {
        self.record("put", key);
        self.inner.put(key, body, options).await
    }
    async fn copy(&self, from: &str, from_version: Option<&str>, to: &str) -> Result<PutResult> {
        self.record("copy", to);
        self.inner.copy(from, from_version, to).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.record("delete", key);
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.record("list", prefix);
        self.inner.list(prefix).await
    }
    async fn list_versions(&self, key: &str) -> Result<Vec<VersionInfo>> {
        self.record("list_versions", key);
        self.inner.list_versions(key).await
    }
    async fn get_tags(&self, key: &str, version: Option<&str>) -> Result<Tags> {
        self.record("get_tags", key);
        self.inner.get_tags(key, version).await
    }
    async fn put_tags(&self, key: &str, version: Option<&str>, tags: &Tags) -> Result<()> {
        self.record("put_tags", key);
        self.inner.put_tags(key, version, tags).await
    }
}
