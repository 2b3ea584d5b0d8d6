//! Where rejected objects go, and why they went there.
//!
//! ```text
//! <prefix>/<version>/_quarantine/<relpath>/<id>.parquet              the rejected parquet
//! <prefix>/<version>/_quarantine/<relpath>/<id>.reason.json          why (every violation)
//! <prefix>/<version>/_quarantine/<relpath>/sidecar-<id>.meta.json    a rejected sidecar
//! <prefix>/<version>/_quarantine/<relpath>/sidecar-<id>.reason.json
//! ```
//!
//! `<id>` is the rejected version's id, or its sha256 on a store without versioning.
//! Sidecar copies carry a `sidecar-` prefix because a parquet and its sidecar are two keys
//! whose version ids may coincide.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::dataset::Dataset;
use crate::format::REASON_SUFFIX;
use crate::keys::KeyLayout;
use crate::rules::Violation;
use crate::storage::{ObjectStore, PutMode, PutOptions, StorageError};

/// Which of a dataset's two objects a judgement is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Parquet,
    Sidecar,
}

/// The keys a rejected version is kept under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineKeys {
    pub object: String,
    pub reason: String,
}

/// Quarantine keys of one rejected version of a dataset's parquet or sidecar.
pub fn keys(layout: &KeyLayout, dataset: &Dataset, kind: ObjectKind, id: &str) -> QuarantineKeys {
    keys_of(layout, &crate::keys::relative_path(dataset), kind, id)
}

/// Quarantine keys of one rejected version of the object at `relative` (a reference
/// object's parquet, or its `.meta.json` as a sidecar).
pub fn keys_of(layout: &KeyLayout, relative: &str, kind: ObjectKind, id: &str) -> QuarantineKeys {
    let folder = layout.quarantine_prefix_of(relative);
    let id = sanitize(id);
    match kind {
        ObjectKind::Parquet => QuarantineKeys {
            object: format!("{folder}{id}.parquet"),
            reason: format!("{folder}{id}{REASON_SUFFIX}"),
        },
        ObjectKind::Sidecar => QuarantineKeys {
            object: format!("{folder}sidecar-{id}.meta.json"),
            reason: format!("{folder}sidecar-{id}{REASON_SUFFIX}"),
        },
    }
}

/// Version ids are opaque; keep only characters that are safe in one key segment.
fn sanitize(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Who wrote the rejected object, as the event reported it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Writer {
    pub principal: Option<String>,
    pub source_ip: Option<String>,
    pub event_name: Option<String>,
    pub event_time: Option<DateTime<Utc>>,
}

/// The `.reason.json` beside a quarantined object.
#[derive(Debug, Clone, Serialize)]
pub struct Reason {
    pub bucket: String,
    pub key: String,
    pub kind: ObjectKind,
    pub version_id: Option<String>,
    pub etag: Option<String>,
    pub sha256: String,
    pub bytes: u64,
    pub violations: Vec<Violation>,
    pub writer: Writer,
    pub quarantined_at: DateTime<Utc>,
    /// Where the rejected bytes were copied.
    pub quarantined_as: String,
}

impl Reason {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a reason always serializes") + "\n"
    }
}

/// Copy the rejected version into quarantine and write its reason. Idempotent: a copy or
/// reason already there (an earlier delivery of the same event) is kept as it is.
pub async fn put_aside(
    store: &dyn ObjectStore,
    source_key: &str,
    source_version: Option<&str>,
    keys: &QuarantineKeys,
    reason: &Reason,
) -> Result<(), StorageError> {
    match store.head(&keys.object, None).await {
        Ok(_) => {}
        Err(StorageError::NotFound { .. }) => {
            store.copy(source_key, source_version, &keys.object).await?;
        }
        Err(e) => return Err(e),
    }
    let options = PutOptions {
        mode: PutMode::IfAbsent,
        content_type: Some(crate::format::JSON_CONTENT_TYPE.into()),
        ..Default::default()
    };
    match store
        .put(&keys.reason, Bytes::from(reason.to_json()), options)
        .await
    {
        Ok(_) | Err(StorageError::PreconditionFailed { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parquet_and_sidecar_copies_never_share_a_key() {
        let dataset = Dataset::from_json(
            r#"{"provider":"thetadata","asset_type":"stock","symbol":"SPY","timespan":"minute","datastyle":"ohlc"}"#,
        )
        .unwrap();
        let layout = KeyLayout::new("stage/cache", "v3");
        let p = keys(&layout, &dataset, ObjectKind::Parquet, "0001");
        let s = keys(&layout, &dataset, ObjectKind::Sidecar, "0001");
        assert_eq!(
            p.object,
            "stage/cache/v3/_quarantine/thetadata/stock/minute/ohlc/stock_SPY_minute_ohlc.parquet/0001.parquet"
        );
        assert_eq!(
            p.reason,
            "stage/cache/v3/_quarantine/thetadata/stock/minute/ohlc/stock_SPY_minute_ohlc.parquet/0001.reason.json"
        );
        assert_ne!(p.object, s.object);
        assert_ne!(p.reason, s.reason);
        let odd = keys(&layout, &dataset, ObjectKind::Parquet, "a/b c");
        assert!(odd.object.ends_with("/a_b_c.parquet"), "{}", odd.object);
    }
}
