//! A guard that makes any store read-only, so a readonly backtest job cannot write to the
//! bucket even by mistake: every write is refused before it reaches the backend.

use async_trait::async_trait;
use bytes::Bytes;

use super::{
    GetResult, ObjectMeta, ObjectStore, PutOptions, PutResult, Result, StorageError, Tags,
    VersionInfo,
};

/// Wraps a store and refuses `put`, `copy`, `delete` and `put_tags` with
/// [`StorageError::NotPermitted`].
#[derive(Debug, Clone)]
pub struct ReadOnlyStore<S> {
    inner: S,
}

impl<S> ReadOnlyStore<S> {
    pub fn new(inner: S) -> Self {
        ReadOnlyStore { inner }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }
}

fn refused(operation: &'static str) -> StorageError {
    StorageError::NotPermitted {
        operation,
        reason: "the cache is in readonly mode; misses are filled by the miss-handler".into(),
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for ReadOnlyStore<S> {
    async fn get(&self, key: &str, version: Option<&str>) -> Result<GetResult> {
        self.inner.get(key, version).await
    }
    async fn head(&self, key: &str, version: Option<&str>) -> Result<ObjectMeta> {
        self.inner.head(key, version).await
    }
    async fn put(&self, _key: &str, _body: Bytes, _options: PutOptions) -> Result<PutResult> {
        Err(refused("put"))
    }
    async fn copy(&self, _from: &str, _v: Option<&str>, _to: &str) -> Result<PutResult> {
        Err(refused("copy"))
    }
    async fn delete(&self, _key: &str) -> Result<()> {
        Err(refused("delete"))
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
    async fn put_tags(&self, _key: &str, _v: Option<&str>, _tags: &Tags) -> Result<()> {
        Err(refused("put_tags"))
    }
}
