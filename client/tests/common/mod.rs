//! Shared test helpers: real stores and invokers wrapped to observe or refuse calls.
#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use cachefill_client::embedded::Embedded;
use cachefill_client::{ClientConfig, DataRequest, InvokeError, Invoker};
use cachefill_core::dataset::Dataset;
use cachefill_core::dataset::Provider as ProviderName;
use cachefill_core::fill::{FillAnswer, MissRequest};
use cachefill_core::providers::ProviderSet;
use cachefill_core::providers::synthetic::SyntheticProvider;
use cachefill_core::storage::{
    GetResult, ObjectMeta, ObjectStore, PutOptions, PutResult, StorageError, Tags, VersionInfo,
};
use cachefill_testing::doubles::CountingProvider;

pub(crate) fn dataset(symbol: &str) -> Dataset {
    Dataset::from_json(&format!(
        r#"{{"provider":"synthetic","asset_type":"stock","symbol":"{symbol}","timespan":"day","datastyle":"ohlc"}}"#
    ))
    .unwrap()
}

pub(crate) fn request(symbol: &str, start: &str, end: &str) -> DataRequest {
    DataRequest::parse(dataset(symbol), start, end).unwrap()
}

/// The synthetic provider, counted, under the provider names the engine routes by.
pub(crate) fn counted_provider() -> (Arc<CountingProvider<SyntheticProvider>>, ProviderSet) {
    let counting = Arc::new(CountingProvider::new(SyntheticProvider::new()));
    let set = ProviderSet::new().with(ProviderName::Synthetic, counting.clone());
    (counting, set)
}

/// Fast retries and downloads for tests.
pub(crate) fn quick(mut config: ClientConfig) -> ClientConfig {
    config.retry.initial_backoff = std::time::Duration::from_millis(5);
    config.retry.max_backoff = std::time::Duration::from_millis(20);
    config.download.initial_backoff = std::time::Duration::from_millis(5);
    config.download.max_backoff = std::time::Duration::from_millis(20);
    config.poll.initial = std::time::Duration::from_millis(20);
    config.poll.max = std::time::Duration::from_millis(100);
    config
}

/// What a [`Watched`] store does with calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    PassThrough,
    /// `put`, `copy`, `delete` and `put_tags` fail.
    RefuseWrites,
    /// Every call fails.
    RefuseAll,
}

/// A real store that records every call (operation and key) and may refuse some.
#[derive(Debug)]
pub(crate) struct Watched<S> {
    inner: S,
    policy: Policy,
    calls: Mutex<Vec<(&'static str, String)>>,
}

pub(crate) const WRITES: [&str; 4] = ["put", "copy", "delete", "put_tags"];

impl<S> Watched<S> {
    pub(crate) fn new(inner: S, policy: Policy) -> Self {
        Watched {
            inner,
            policy,
            calls: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn calls(&self) -> Vec<(&'static str, String)> {
        self.calls.lock().unwrap().clone()
    }

    pub(crate) fn writes(&self) -> Vec<(&'static str, String)> {
        self.calls()
            .into_iter()
            .filter(|(op, _)| WRITES.contains(op))
            .collect()
    }

    pub(crate) fn count(&self, op: &str, key: &str) -> usize {
        self.calls()
            .iter()
            .filter(|(o, k)| *o == op && k == key)
            .count()
    }

    fn enter(&self, op: &'static str, key: String) -> Result<(), StorageError> {
        self.calls.lock().unwrap().push((op, key.clone()));
        let refused = match self.policy {
            Policy::PassThrough => false,
            Policy::RefuseWrites => WRITES.contains(&op),
            Policy::RefuseAll => true,
        };
        if refused {
            return Err(StorageError::AccessDenied {
                key,
                message: format!("this test store refuses {op}"),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for Watched<S> {
    async fn get(&self, key: &str, version: Option<&str>) -> Result<GetResult, StorageError> {
        self.enter("get", key.to_string())?;
        self.inner.get(key, version).await
    }
    async fn head(&self, key: &str, version: Option<&str>) -> Result<ObjectMeta, StorageError> {
        self.enter("head", key.to_string())?;
        self.inner.head(key, version).await
    }
    async fn put(
        &self,
        key: &str,
        body: Bytes,
        options: PutOptions,
    ) -> Result<PutResult, StorageError> {
        self.enter("put", key.to_string())?;
        self.inner.put(key, body, options).await
    }
    async fn copy(&self, from: &str, v: Option<&str>, to: &str) -> Result<PutResult, StorageError> {
        self.enter("copy", format!("{from} -> {to}"))?;
        self.inner.copy(from, v, to).await
    }
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.enter("delete", key.to_string())?;
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        self.enter("list", prefix.to_string())?;
        self.inner.list(prefix).await
    }
    async fn list_versions(&self, key: &str) -> Result<Vec<VersionInfo>, StorageError> {
        self.enter("list_versions", key.to_string())?;
        self.inner.list_versions(key).await
    }
    async fn get_tags(&self, key: &str, v: Option<&str>) -> Result<Tags, StorageError> {
        self.enter("get_tags", key.to_string())?;
        self.inner.get_tags(key, v).await
    }
    async fn put_tags(&self, key: &str, v: Option<&str>, tags: &Tags) -> Result<(), StorageError> {
        self.enter("put_tags", key.to_string())?;
        self.inner.put_tags(key, v, tags).await
    }
}

/// A real invoker whose invocations are counted.
#[derive(Debug)]
pub(crate) struct Counted<I> {
    pub inner: I,
    calls: AtomicUsize,
}

impl<I> Counted<I> {
    pub(crate) fn new(inner: I) -> Self {
        Counted {
            inner,
            calls: AtomicUsize::new(0),
        }
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl<I: Invoker> Invoker for Counted<I> {
    async fn invoke(&self, request: &MissRequest) -> Result<FillAnswer, InvokeError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.invoke(request).await
    }
}

/// Every file under `dir` (recursively), relative, sorted; hidden bookkeeping included.
pub(crate) fn files_under(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, base, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Dataset files (and anything that is not our bookkeeping) in a local cache folder.
pub(crate) fn cached_files(dir: &Path) -> Vec<String> {
    files_under(dir)
        .into_iter()
        .filter(|f| !f.starts_with(".cachefill-client"))
        .collect()
}

/// Fill `request` straight into the embedded bucket, as another job's miss would.
pub(crate) async fn prefill(embedded: &Embedded, request: &DataRequest) -> FillAnswer {
    let engine = embedded.engine(embedded.providers());
    engine
        .fill(&request.to_fill_request(request.start, request.end).unwrap())
        .await
        .unwrap()
}
