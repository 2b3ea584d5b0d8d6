//! The storage seam: a narrow async trait over an S3-like bucket, with semantic errors.
//!
//! Two real implementations exist: [`local::LocalStore`] (a directory on disk, the embedded
//! default) and `s3::S3Store` (feature `s3`, any S3 API). The fill engine, the validator and
//! the client only speak this trait, so every behaviour is testable on the local store and
//! proven against a real S3 API server by the same conformance suite
//! (`cachefill_testing::conformance`).
//!
//! The conditional-update loop every writer uses:
//!
//! ```
//! # use cachefill_core::storage::{ObjectStore, PutMode, PutOptions, StorageError, local::LocalStore};
//! # async fn demo(store: &dyn ObjectStore) -> Result<(), StorageError> {
//! loop {
//!     let (body, mode) = match store.get("counter", None).await {
//!         Ok(got) => (got.bytes.to_vec(), PutMode::IfMatch(got.meta.etag.clone())),
//!         Err(StorageError::NotFound { .. }) => (Vec::new(), PutMode::IfAbsent),
//!         Err(e) => return Err(e),
//!     };
//!     let next = [body, b"+1".to_vec()].concat();
//!     match store.put("counter", next.into(), PutOptions::with_mode(mode)).await {
//!         Ok(_) => return Ok(()),
//!         Err(StorageError::PreconditionFailed { .. }) => continue, // someone else won: re-read
//!         Err(e) => return Err(e),
//!     }
//! }
//! # }
//! # let dir = tempfile::tempdir().unwrap();
//! # let store = LocalStore::new(dir.path()).unwrap();
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo(&store)).unwrap();
//! ```

use std::collections::BTreeMap;
use std::fmt::Debug;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

pub mod guard;
pub mod local;
#[cfg(feature = "s3")]
pub mod s3;

/// User metadata of an object (S3 `x-amz-meta-*`), keys lower-case.
pub type Metadata = BTreeMap<String, String>;
/// Tags of one object version.
pub type Tags = BTreeMap<String, String>;

/// What a caller can do about a failed storage call.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The key (or the named version of it) does not exist.
    #[error("object not found: {key}")]
    NotFound { key: String },
    /// A conditional write lost: the object changed (or exists) since it was read.
    #[error("precondition failed for {key}: the object changed since it was read")]
    PreconditionFailed { key: String },
    /// Credentials or policy forbid this call; retrying will not help.
    #[error("access denied for {key}: {message}")]
    AccessDenied { key: String, message: String },
    /// This store refuses the operation by design (for example a read-only guard).
    #[error("{operation} is not permitted on this store: {reason}")]
    NotPermitted {
        operation: &'static str,
        reason: String,
    },
    /// The key is not acceptable to this store (empty, `..`, absolute, …).
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    /// The backend could not be reached or answered with a server error; retrying may help.
    #[error("storage unavailable ({operation} {key}): {message}")]
    Unavailable {
        operation: &'static str,
        key: String,
        message: String,
    },
    /// Anything else (corrupt local metadata, unexpected answers).
    #[error("storage error ({operation} {key}): {message}")]
    Other {
        operation: &'static str,
        key: String,
        message: String,
    },
}

impl StorageError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }

    pub fn is_precondition_failed(&self) -> bool {
        matches!(self, StorageError::PreconditionFailed { .. })
    }

    /// Whether the same call may succeed later: an outage or throttling of the backend, or a
    /// lost conditional write (re-read and try again). Everything else needs a person.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StorageError::Unavailable { .. } | StorageError::PreconditionFailed { .. }
        )
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Facts about one object version, as HEAD returns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// The entity tag, including its surrounding double quotes as S3 sends it.
    pub etag: String,
    /// `None` on a store without versioning.
    pub version_id: Option<String>,
    pub last_modified: DateTime<Utc>,
    /// User metadata; empty in `list` results (S3 does not return it there).
    pub metadata: Metadata,
}

/// An object's bytes and its facts.
#[derive(Debug, Clone)]
pub struct GetResult {
    pub bytes: Bytes,
    pub meta: ObjectMeta,
    /// The hex sha256 of `bytes`, when the store has it without hashing what it returned:
    /// the local store's versions answered from memory, whose bytes are the very ones it
    /// hashed when they were written. `None` otherwise (bytes read from a disk or a network
    /// are hashed by whoever needs their sha256).
    pub sha256: Option<String>,
}

impl GetResult {
    /// The hex sha256 of the bytes: [`GetResult::sha256`] when the store had it, otherwise
    /// computed.
    pub fn sha256_hex(&self) -> String {
        self.sha256
            .clone()
            .unwrap_or_else(|| crate::codec::sha256_hex(&self.bytes))
    }
}

/// The condition a write is made under.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PutMode {
    /// Unconditional: last writer wins.
    #[default]
    Overwrite,
    /// Only when no object exists at the key (`If-None-Match: *`).
    IfAbsent,
    /// Only when the current object's etag is this one (`If-Match`).
    IfMatch(String),
}

#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    pub mode: PutMode,
    pub metadata: Metadata,
    pub content_type: Option<String>,
    /// The body's sha256 (lowercase hex), when the writer has already computed it from these
    /// very bytes: a store that derives its etag from the content takes it instead of hashing
    /// the body a second time (the local directory store). A store that computes nothing
    /// from the body ignores it.
    pub sha256: Option<String>,
}

impl PutOptions {
    pub fn with_mode(mode: PutMode) -> Self {
        PutOptions {
            mode,
            ..Default::default()
        }
    }
}

/// What a successful write created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    pub etag: String,
    pub version_id: Option<String>,
}

/// One entry of a key's version history, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    pub version_id: String,
    pub etag: String,
    pub size: u64,
    pub last_modified: DateTime<Utc>,
    pub is_latest: bool,
    /// A delete marker rather than an object version.
    pub is_delete_marker: bool,
}

/// The narrow seam over an S3-like bucket.
///
/// Keys are `/`-separated, relative, without empty or `..` segments. Every method is a
/// single round trip on S3; implementations convert their own errors into [`StorageError`]
/// so callers branch on meaning, never on text.
#[async_trait]
pub trait ObjectStore: Send + Sync + Debug {
    /// Read an object (the current version, or the given one).
    async fn get(&self, key: &str, version: Option<&str>) -> Result<GetResult>;

    /// Read an object's facts without its body.
    async fn head(&self, key: &str, version: Option<&str>) -> Result<ObjectMeta>;

    /// Write an object under the given condition.
    async fn put(&self, key: &str, body: Bytes, options: PutOptions) -> Result<PutResult>;

    /// Server-side copy of `from` (the current version, or the given one) onto `to`,
    /// keeping the source's user metadata.
    async fn copy(&self, from: &str, from_version: Option<&str>, to: &str) -> Result<PutResult>;

    /// Delete the current object at `key` (on a versioned store this adds a delete marker).
    /// Deleting a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<()>;

    /// Every current object whose key starts with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;

    /// The versions of exactly `key`, newest first (empty when it never existed).
    async fn list_versions(&self, key: &str) -> Result<Vec<VersionInfo>>;

    /// The tags of an object version.
    async fn get_tags(&self, key: &str, version: Option<&str>) -> Result<Tags>;

    /// Replace the tags of an object version.
    async fn put_tags(&self, key: &str, version: Option<&str>, tags: &Tags) -> Result<()>;
}

/// Compare two etags ignoring the surrounding quotes and a weak prefix.
pub fn etags_equal(a: &str, b: &str) -> bool {
    fn bare(e: &str) -> &str {
        e.trim().trim_start_matches("W/").trim_matches('"')
    }
    bare(a) == bare(b)
}

/// Reject keys no backend should accept: empty, absolute, with empty, `.` or `..` segments,
/// or with control characters.
pub fn check_key(key: &str) -> Result<()> {
    let invalid = |reason: &str| StorageError::InvalidKey {
        key: key.to_string(),
        reason: reason.to_string(),
    };
    if key.is_empty() {
        return Err(invalid("empty key"));
    }
    if key.len() > 1024 {
        return Err(invalid("longer than 1024 bytes"));
    }
    if key.chars().any(char::is_control) {
        return Err(invalid("contains a control character"));
    }
    if key.starts_with('/') {
        return Err(invalid("absolute key"));
    }
    if key
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err(invalid("empty, '.' or '..' segment"));
    }
    Ok(())
}

#[async_trait]
impl<T: ObjectStore + ?Sized> ObjectStore for std::sync::Arc<T> {
    async fn get(&self, key: &str, version: Option<&str>) -> Result<GetResult> {
        (**self).get(key, version).await
    }
    async fn head(&self, key: &str, version: Option<&str>) -> Result<ObjectMeta> {
        (**self).head(key, version).await
    }
    async fn put(&self, key: &str, body: Bytes, options: PutOptions) -> Result<PutResult> {
        (**self).put(key, body, options).await
    }
    async fn copy(&self, from: &str, from_version: Option<&str>, to: &str) -> Result<PutResult> {
        (**self).copy(from, from_version, to).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        (**self).delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        (**self).list(prefix).await
    }
    async fn list_versions(&self, key: &str) -> Result<Vec<VersionInfo>> {
        (**self).list_versions(key).await
    }
    async fn get_tags(&self, key: &str, version: Option<&str>) -> Result<Tags> {
        (**self).get_tags(key, version).await
    }
    async fn put_tags(&self, key: &str, version: Option<&str>, tags: &Tags) -> Result<()> {
        (**self).put_tags(key, version, tags).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_compare_without_quotes() {
        assert!(etags_equal("\"abc\"", "abc"));
        assert!(etags_equal("W/\"abc\"", "\"abc\""));
        assert!(!etags_equal("\"abc\"", "\"abd\""));
    }

    #[test]
    fn bad_keys_are_rejected() {
        for key in ["", "/a", "a//b", "a/../b", "a/./b", "a/\nb", "a/"] {
            assert!(
                matches!(check_key(key), Err(StorageError::InvalidKey { .. })),
                "{key:?}"
            );
        }
        check_key("stage/cache/v1/thetadata/stock/minute/ohlc/x.parquet").unwrap();
    }
}
