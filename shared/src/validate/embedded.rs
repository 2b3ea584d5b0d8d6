//! The validator on the embedded default: a store that judges every dataset object written
//! through it before the write returns, as the S3 event would on AWS
//! (`docs/ARCHITECTURE.md` §13).
//!
//! The validator's own writes (manifest, quarantine, restores, tags, audit records) go to
//! the inner store, so they are never judged again and cannot recurse.

use async_trait::async_trait;
use bytes::Bytes;
use chrono::Utc;

use super::event::EventRecord;
use super::validator::{Validator, ValidatorConfig, Verdict};
use crate::keys::{KeyKind, KeyLayout};
use crate::storage::{
    GetResult, ObjectMeta, ObjectStore, PutOptions, PutResult, Result, Tags, VersionInfo,
};

/// Who the audit trail names as the writer of embedded writes.
pub const EMBEDDED_PRINCIPAL: &str = "embedded";

/// A store that runs the object-validator after every `put` and `copy` of a dataset's
/// parquet or sidecar.
#[derive(Debug)]
pub struct ValidatingStore<S> {
    validator: Validator<S>,
}

impl<S: ObjectStore> ValidatingStore<S> {
    pub fn new(inner: S, bucket: impl Into<String>, layout: KeyLayout) -> Self {
        ValidatingStore {
            validator: Validator::new(inner, ValidatorConfig::new(bucket, layout)),
        }
    }

    /// Wrap a validator built elsewhere (another clock or configuration).
    pub fn with_validator(validator: Validator<S>) -> Self {
        ValidatingStore { validator }
    }

    pub fn validator(&self) -> &Validator<S> {
        &self.validator
    }

    /// The store underneath, where writes land unjudged.
    pub fn inner(&self) -> &S {
        self.validator.store()
    }

    /// Judge a write as its S3 event would have. A failed judgement does not fail the write
    /// (the object is written either way, as on S3); it is logged for a person to rerun
    /// `cachefill validate`.
    async fn after_write(&self, key: &str, put: &PutResult, event_name: &str) -> Option<Verdict> {
        let layout = &self.validator.config().layout;
        if !matches!(
            layout.classify(key),
            Ok(KeyKind::Data(_) | KeyKind::Sidecar(_) | KeyKind::Other(_))
        ) {
            return None;
        }
        let event = EventRecord::new(&self.validator.config().bucket, key)
            .with_version(put.version_id.clone(), Some(put.etag.clone()))
            .with_event(event_name, Utc::now())
            .with_principal(EMBEDDED_PRINCIPAL);
        match self.validator.judge(&event).await {
            Ok(verdict) => Some(verdict),
            Err(e) => {
                tracing::error!(key, error = %e, "the validator could not judge this write; run `cachefill validate` on it");
                None
            }
        }
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for ValidatingStore<S> {
    async fn get(&self, key: &str, version: Option<&str>) -> Result<GetResult> {
        self.inner().get(key, version).await
    }

    async fn head(&self, key: &str, version: Option<&str>) -> Result<ObjectMeta> {
        self.inner().head(key, version).await
    }

    async fn put(&self, key: &str, body: Bytes, options: PutOptions) -> Result<PutResult> {
        let put = self.inner().put(key, body, options).await?;
        self.after_write(key, &put, "ObjectCreated:Put").await;
        Ok(put)
    }

    async fn copy(&self, from: &str, from_version: Option<&str>, to: &str) -> Result<PutResult> {
        let put = self.inner().copy(from, from_version, to).await?;
        self.after_write(to, &put, "ObjectCreated:Copy").await;
        Ok(put)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        self.inner().delete(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.inner().list(prefix).await
    }

    async fn list_versions(&self, key: &str) -> Result<Vec<VersionInfo>> {
        self.inner().list_versions(key).await
    }

    async fn get_tags(&self, key: &str, version: Option<&str>) -> Result<Tags> {
        self.inner().get_tags(key, version).await
    }

    async fn put_tags(&self, key: &str, version: Option<&str>, tags: &Tags) -> Result<()> {
        self.inner().put_tags(key, version, tags).await
    }
}
