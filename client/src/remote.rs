//! Talking to the bucket: downloading a parquet together with a sidecar that describes
//! exactly its bytes, and lumibot's readwrite upload through a temporary key.

use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;

use cachefill_core::codec::{self, BatchFacts, Sidecar};
use cachefill_core::format::{SIDECAR_SUFFIX, TEMP_MARKER};
use cachefill_core::storage::{ObjectMeta, ObjectStore, PutMode, PutOptions, StorageError};

use crate::error::ClientError;

/// How hard to try for a consistent parquet + sidecar pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownloadPolicy {
    /// Downloads of the pair before giving up (a writer in between needs one more).
    pub attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for DownloadPolicy {
    fn default() -> Self {
        DownloadPolicy {
            attempts: 5,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
        }
    }
}

/// A parquet and the sidecar that describes it.
#[derive(Debug, Clone)]
pub struct Pair {
    pub parquet: Bytes,
    pub sidecar: Bytes,
    pub meta: ObjectMeta,
    pub sha256: String,
    /// The bucket had no sidecar at all; this one was computed from the parquet.
    pub sidecar_derived: bool,
}

/// How far back a named version's sidecar is looked for in the sidecar's history.
const SIDECAR_HISTORY_DEPTH: usize = 10;

/// Download the parquet at `key` (the named version, or the current one) and a sidecar whose
/// checksum is its sha256. A mismatch (a writer between the two reads) downloads again,
/// up to the policy's attempts; a named version's sidecar is also looked for among the
/// sidecar's older versions. `None` when the parquet does not exist.
pub async fn fetch_pair(
    store: &dyn ObjectStore,
    key: &str,
    version: Option<&str>,
    policy: &DownloadPolicy,
) -> Result<Option<Pair>, ClientError> {
    let sidecar_key = format!("{key}{SIDECAR_SUFFIX}");
    let attempts = policy.attempts.max(1);
    let mut backoff = policy.initial_backoff;
    let mut detail = String::new();
    let mut ever_had_sidecar = false;
    let mut last = None;
    for attempt in 1..=attempts {
        let got = match store.get(key, version).await {
            Ok(got) => got,
            Err(StorageError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(ClientError::storage(key, e)),
        };
        let sha256 = got.sha256_hex();
        match store.get(&sidecar_key, None).await {
            Ok(sidecar) => {
                ever_had_sidecar = true;
                match Sidecar::parse(&sidecar.bytes) {
                    Ok(parsed) if parsed.checksum.as_deref() == Some(sha256.as_str()) => {
                        return Ok(Some(Pair {
                            parquet: got.bytes,
                            sidecar: sidecar.bytes,
                            meta: got.meta,
                            sha256,
                            sidecar_derived: false,
                        }));
                    }
                    Ok(parsed) => {
                        detail = format!(
                            "the sidecar's checksum is {} but the parquet's sha256 is {sha256}",
                            parsed.checksum.as_deref().unwrap_or("missing")
                        );
                    }
                    Err(e) => detail = format!("the sidecar is unreadable: {e}"),
                }
            }
            Err(StorageError::NotFound { .. }) => detail = "there is no sidecar".to_string(),
            Err(e) => return Err(ClientError::storage(&sidecar_key, e)),
        }
        if version.is_some()
            && let Some(sidecar) = sidecar_in_history(store, &sidecar_key, &sha256).await
        {
            return Ok(Some(Pair {
                parquet: got.bytes,
                sidecar,
                meta: got.meta,
                sha256,
                sidecar_derived: false,
            }));
        }
        tracing::debug!(key, attempt, %detail, "parquet and sidecar disagree; downloading again");
        last = Some((got, sha256));
        if attempt < attempts {
            let jitter = 0.75 + fastrand::f64() * 0.5;
            tokio::time::sleep(backoff.mul_f64(jitter)).await;
            backoff = (backoff * 2).min(policy.max_backoff);
        }
    }
    if !ever_had_sidecar && let Some((got, sha256)) = last {
        // An object without any sidecar (a writer stopped between its two PUTs, or an
        // upload that never had one): lumibot needs one, so describe the bytes ourselves.
        let decoded = codec::decode(got.bytes.clone()).map_err(|e| ClientError::Inconsistent {
            key: key.to_string(),
            attempts,
            detail: format!("there is no sidecar and the parquet does not decode: {e}"),
        })?;
        let facts = BatchFacts::of(&decoded.batch).map_err(|e| ClientError::Inconsistent {
            key: key.to_string(),
            attempts,
            detail: e.to_string(),
        })?;
        let sidecar = Sidecar::new(&facts, &sha256, got.meta.last_modified).to_json();
        return Ok(Some(Pair {
            parquet: got.bytes,
            sidecar: Bytes::from(sidecar),
            meta: got.meta,
            sha256,
            sidecar_derived: true,
        }));
    }
    Err(ClientError::Inconsistent {
        key: key.to_string(),
        attempts,
        detail,
    })
}

/// An older version of the sidecar whose checksum is `sha256`, on a versioned bucket.
async fn sidecar_in_history(
    store: &dyn ObjectStore,
    sidecar_key: &str,
    sha256: &str,
) -> Option<Bytes> {
    let versions = store.list_versions(sidecar_key).await.ok()?;
    for version in versions
        .iter()
        .filter(|v| !v.is_delete_marker)
        .take(SIDECAR_HISTORY_DEPTH)
    {
        let Ok(got) = store.get(sidecar_key, Some(&version.version_id)).await else {
            continue;
        };
        if Sidecar::parse(&got.bytes).is_ok_and(|s| s.checksum.as_deref() == Some(sha256)) {
            return Some(got.bytes);
        }
    }
    None
}

/// What a readwrite upload wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub key: String,
    /// The temporary key the bytes went to first (deleted again).
    pub temp_key: String,
    pub version_id: Option<String>,
}

/// lumibot's atomic upload: PUT to `<key>.tmp-<secs>-<rand>`, COPY onto the key, DELETE the
/// temporary (also when the copy fails), so readers never see a partly uploaded object.
pub async fn upload_through_temporary(
    store: &dyn ObjectStore,
    key: &str,
    bytes: Bytes,
) -> Result<Uploaded, ClientError> {
    let temp_key = format!(
        "{key}{TEMP_MARKER}{}-{}",
        Utc::now().timestamp(),
        fastrand::u32(1000..=9999)
    );
    store
        .put(&temp_key, bytes, PutOptions::with_mode(PutMode::Overwrite))
        .await
        .map_err(|e| ClientError::storage(&temp_key, e))?;
    let copied = store.copy(&temp_key, None, key).await;
    let deleted = store.delete(&temp_key).await;
    let put = copied.map_err(|e| ClientError::storage(key, e))?;
    if let Err(e) = deleted {
        tracing::warn!(temp_key, error = %e, "could not delete the temporary upload");
    }
    Ok(Uploaded {
        key: key.to_string(),
        temp_key,
        version_id: put.version_id,
    })
}
