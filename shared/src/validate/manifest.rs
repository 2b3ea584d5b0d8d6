//! The manifest of a dataset: which versions of its parquet passed validation.
//!
//! `<prefix>/<version>/_manifest/<relpath>.json`:
//!
//! ```json
//! {"current": {"version_id", "etag", "sha256", "rows", "min", "max", "validated_at", …},
//!  "history": [newest first, at most 50 entries, `current` first]}
//! ```
//!
//! Validations of different versions of one key run concurrently, so the manifest is
//! updated with a conditional write (`If-Match` on the etag read, `If-None-Match: *` when
//! new) and re-read and re-applied on 412: no entry is ever lost. Entries are ordered by the
//! versions' order on the key (S3 sequencers when both have one, else the key's version
//! list, else last-modified times), so a late event for an older version never displaces
//! a newer `current`.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::event::compare_sequencers;
use crate::format::MANIFEST_HISTORY;
use crate::storage::{ObjectStore, PutMode, PutOptions, StorageError};

/// One validated version of a dataset's parquet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// `None` on a store without versioning.
    pub version_id: Option<String>,
    pub etag: String,
    pub sha256: String,
    pub rows: u64,
    #[serde(default)]
    pub real_rows: u64,
    #[serde(default)]
    pub placeholders: u64,
    /// First and last `datetime`, as the sidecar writes them.
    pub min: Option<String>,
    pub max: Option<String>,
    pub bytes: u64,
    pub validated_at: DateTime<Utc>,
    /// When the version was written (the store's last-modified time).
    pub last_modified: DateTime<Utc>,
    /// S3's ordering token of the write, when the event carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequencer: Option<String>,
}

impl ManifestEntry {
    /// Whether this entry records the version `version_id` (or, without versioning, the
    /// object whose sha256 is `sha256`).
    fn is_version(&self, version_id: Option<&str>, sha256: &str) -> bool {
        match (self.version_id.as_deref(), version_id) {
            (Some(a), Some(b)) => a == b,
            _ => self.sha256 == sha256,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub current: Option<ManifestEntry>,
    #[serde(default)]
    pub history: Vec<ManifestEntry>,
}

/// How versions of one key are ordered; built from the key's version list.
#[derive(Debug, Clone, Default)]
pub struct VersionOrder {
    /// Position in the key's version list, newest first.
    positions: HashMap<String, usize>,
}

impl VersionOrder {
    /// From the key's version ids, newest first (as `list_versions` returns them).
    pub fn from_newest_first<'a>(version_ids: impl IntoIterator<Item = &'a str>) -> Self {
        VersionOrder {
            positions: version_ids
                .into_iter()
                .enumerate()
                .map(|(i, id)| (id.to_string(), i))
                .collect(),
        }
    }

    /// `Greater` when `a` was written after `b`.
    pub fn compare(&self, a: &ManifestEntry, b: &ManifestEntry) -> Ordering {
        if let (Some(sa), Some(sb)) = (&a.sequencer, &b.sequencer) {
            return compare_sequencers(sa, sb);
        }
        let position =
            |e: &ManifestEntry| e.version_id.as_ref().and_then(|id| self.positions.get(id));
        if let (Some(pa), Some(pb)) = (position(a), position(b)) {
            return pb.cmp(pa);
        }
        a.last_modified.cmp(&b.last_modified)
    }
}

impl Manifest {
    pub fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a manifest always serializes") + "\n"
    }

    /// Whether the version is recorded (a re-delivered event).
    pub fn contains(&self, version_id: Option<&str>, sha256: &str) -> bool {
        self.history
            .iter()
            .chain(self.current.as_ref())
            .any(|e| e.is_version(version_id, sha256))
    }

    /// Whether the version `version_id` is recorded; without a version id, nothing is.
    pub fn contains_version(&self, version_id: &str) -> bool {
        self.history
            .iter()
            .chain(self.current.as_ref())
            .any(|e| e.version_id.as_deref() == Some(version_id))
    }

    /// sha256 of every validated version, current first.
    pub fn validated_sha256s(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .current
            .iter()
            .chain(&self.history)
            .map(|e| e.sha256.as_str())
            .collect();
        out.dedup();
        out
    }

    /// The manifest with `entry` added in its place, or `None` when it is already there.
    pub fn with_entry(&self, entry: ManifestEntry, order: &VersionOrder) -> Option<Manifest> {
        if self.contains(entry.version_id.as_deref(), &entry.sha256) {
            return None;
        }
        let mut history = self.history.clone();
        if let Some(current) = &self.current
            && !history.iter().any(|e| e == current)
        {
            history.insert(0, current.clone());
        }
        let at = history
            .iter()
            .position(|e| order.compare(&entry, e) == Ordering::Greater)
            .unwrap_or(history.len());
        history.insert(at, entry);
        history.truncate(MANIFEST_HISTORY);
        Some(Manifest {
            current: history.first().cloned(),
            history,
        })
    }
}

/// Why the manifest could not be updated.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The stored manifest is not JSON we wrote; a person must look at it (the validator
    /// does not overwrite what it cannot read).
    #[error("manifest {key} is unreadable: {message}")]
    Corrupt { key: String, message: String },
    /// Other validators kept winning the conditional write; retrying the event later helps.
    #[error("manifest {key} kept changing during {attempts} conditional writes")]
    Contention { key: String, attempts: u32 },
}

/// The manifest at `key` and its etag; `None` when there is none yet.
pub async fn read(
    store: &dyn ObjectStore,
    key: &str,
) -> Result<Option<(Manifest, String)>, ManifestError> {
    match store.get(key, None).await {
        Ok(got) => Manifest::parse(&got.bytes)
            .map(|m| Some((m, got.meta.etag)))
            .map_err(|e| ManifestError::Corrupt {
                key: key.to_string(),
                message: e.to_string(),
            }),
        Err(StorageError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What [`record`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The entry was added; `current` says whether it became the manifest's current.
    Added { current: bool },
    /// Another delivery of the same event recorded it first.
    AlreadyThere,
}

/// Conditional writes attempted before giving up with [`ManifestError::Contention`].
pub const MAX_ATTEMPTS: u32 = 64;

/// Add `entry` to the manifest at `key`, retrying on 412 until it is in.
pub async fn record(
    store: &dyn ObjectStore,
    key: &str,
    entry: &ManifestEntry,
    order: &VersionOrder,
) -> Result<Recorded, ManifestError> {
    let mut delay = Duration::from_millis(2);
    for _ in 0..MAX_ATTEMPTS {
        let (manifest, mode) = match read(store, key).await? {
            Some((manifest, etag)) => (manifest, PutMode::IfMatch(etag)),
            None => (Manifest::default(), PutMode::IfAbsent),
        };
        let Some(next) = manifest.with_entry(entry.clone(), order) else {
            return Ok(Recorded::AlreadyThere);
        };
        let current = next.current.as_ref() == Some(entry);
        let options = PutOptions {
            mode,
            content_type: Some(crate::format::JSON_CONTENT_TYPE.into()),
            ..Default::default()
        };
        match store.put(key, Bytes::from(next.to_json()), options).await {
            Ok(_) => return Ok(Recorded::Added { current }),
            Err(StorageError::PreconditionFailed { .. }) => {
                // Jitter spreads the validators that lost together.
                let jitter = 0.5 + fastrand::f64();
                tokio::time::sleep(delay.mul_f64(jitter)).await;
                delay = (delay * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ManifestError::Contention {
        key: key.to_string(),
        attempts: MAX_ATTEMPTS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn entry(id: &str, second: u32) -> ManifestEntry {
        ManifestEntry {
            version_id: Some(id.to_string()),
            etag: format!("\"{id}\""),
            sha256: format!("sha-{id}"),
            rows: 1,
            real_rows: 1,
            placeholders: 0,
            min: None,
            max: None,
            bytes: 10,
            validated_at: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
            last_modified: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, second).unwrap(),
            sequencer: None,
        }
    }

    #[test]
    fn a_late_older_version_joins_history_without_becoming_current() {
        let order = VersionOrder::from_newest_first(["v3", "v2", "v1"]);
        let m = Manifest::default()
            .with_entry(entry("v3", 3), &order)
            .unwrap()
            .with_entry(entry("v1", 1), &order)
            .unwrap()
            .with_entry(entry("v2", 2), &order)
            .unwrap();
        assert_eq!(
            m.current.as_ref().unwrap().version_id.as_deref(),
            Some("v3")
        );
        let ids: Vec<_> = m
            .history
            .iter()
            .map(|e| e.version_id.clone().unwrap())
            .collect();
        assert_eq!(ids, ["v3", "v2", "v1"]);
        assert!(
            m.with_entry(entry("v2", 2), &order).is_none(),
            "already there"
        );
    }

    #[test]
    fn sequencers_win_over_list_positions_and_times() {
        let order = VersionOrder::from_newest_first(["a", "b"]);
        let mut a = entry("a", 9);
        let mut b = entry("b", 1);
        a.sequencer = Some("0055AED6DCD90281E5".into());
        b.sequencer = Some("0055AED6DCD90281E6".into());
        assert_eq!(order.compare(&b, &a), Ordering::Greater);
        a.sequencer = None;
        assert_eq!(order.compare(&a, &b), Ordering::Greater, "list position");
        let unlisted = VersionOrder::default();
        assert_eq!(unlisted.compare(&a, &b), Ordering::Greater, "last modified");
    }

    #[test]
    fn history_keeps_the_newest_fifty() {
        let ids: Vec<String> = (0..60).rev().map(|i| format!("v{i:02}")).collect();
        let order = VersionOrder::from_newest_first(ids.iter().map(String::as_str));
        let mut m = Manifest::default();
        for i in 0..60 {
            m = m.with_entry(entry(&format!("v{i:02}"), 0), &order).unwrap();
        }
        assert_eq!(m.history.len(), MANIFEST_HISTORY);
        assert_eq!(m.current.unwrap().version_id.as_deref(), Some("v59"));
        assert_eq!(m.history.last().unwrap().version_id.as_deref(), Some("v10"));
    }

    #[test]
    fn json_shape_has_current_and_history() {
        let order = VersionOrder::default();
        let m = Manifest::default()
            .with_entry(entry("v1", 1), &order)
            .unwrap();
        let json: serde_json::Value = serde_json::from_str(&m.to_json()).unwrap();
        for field in [
            "version_id",
            "etag",
            "sha256",
            "rows",
            "min",
            "max",
            "validated_at",
        ] {
            assert!(json["current"].get(field).is_some(), "{field}");
        }
        assert_eq!(json["history"].as_array().unwrap().len(), 1);
        assert_eq!(Manifest::parse(m.to_json().as_bytes()).unwrap(), m);
    }
}
