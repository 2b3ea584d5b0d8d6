//! What a bucket holds, and how it agrees with itself and with the local cache: the
//! `ls` and `audit` commands' logic.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::Serialize;

use cachefill_core::codec::{self, BatchFacts, Sidecar};
use cachefill_core::dataset::Dataset;
use cachefill_core::format::{MANIFEST_AREA, SIDECAR_SUFFIX};
use cachefill_core::keys::{KeyKind, KeyLayout, join_key, relative_path};
use cachefill_core::others::{self, OtherKind};
use cachefill_core::reference::Reference;
use cachefill_core::rules;
use cachefill_core::storage::{ObjectMeta, ObjectStore, StorageError};
use cachefill_core::validate::manifest::{Manifest, ManifestEntry};

use crate::error::ClientError;
use crate::local_cache::{LocalCache, SidecarState};

async fn manifest(
    store: &dyn ObjectStore,
    layout: &KeyLayout,
    dataset: &Dataset,
) -> Result<Option<ManifestEntry>, ClientError> {
    manifest_at(store, &layout.manifest_key(dataset)).await
}

/// The current entry of the manifest at `key`.
async fn manifest_at(
    store: &dyn ObjectStore,
    key: &str,
) -> Result<Option<ManifestEntry>, ClientError> {
    let key = key.to_string();
    match store.get(&key, None).await {
        Ok(got) => Ok(serde_json::from_slice::<Manifest>(&got.bytes)
            .ok()
            .and_then(|m| m.current)),
        Err(StorageError::NotFound { .. }) => Ok(None),
        Err(e) => Err(ClientError::storage(&key, e)),
    }
}

/// The objects under a layout (optionally only relative paths starting with `filter`).
#[derive(Debug, Default)]
struct Objects {
    datasets: Vec<(ObjectMeta, Dataset)>,
    /// The other objects lumibot keeps there (chains, events, snapshots, …).
    others: Vec<(ObjectMeta, OtherKind)>,
    /// Whether the bucket has a manifest area (a validator runs on it).
    validated: bool,
}

async fn objects(
    store: &dyn ObjectStore,
    layout: &KeyLayout,
    filter: &str,
) -> Result<Objects, ClientError> {
    let root = layout.root();
    // A filter is a relative-path prefix, possibly ending mid-name.
    let prefix = if filter.trim_matches('/').is_empty() {
        format!("{root}/")
    } else {
        join_key(&[&root, filter.trim_start_matches('/')])
    };
    let listed = store
        .list(&prefix)
        .await
        .map_err(|e| ClientError::storage(&prefix, e))?;
    let manifests = format!("{}/", join_key(&[&root, MANIFEST_AREA]));
    let validated = !store
        .list(&manifests)
        .await
        .map_err(|e| ClientError::storage(&manifests, e))?
        .is_empty();
    let mut objects = Objects {
        validated,
        ..Objects::default()
    };
    for meta in listed {
        match layout.classify(&meta.key) {
            Ok(KeyKind::Data(dataset)) => objects.datasets.push((meta, dataset)),
            Ok(KeyKind::Other(kind)) => objects.others.push((meta, kind)),
            _ => {}
        }
    }
    Ok(objects)
}

/// Another object lumibot keeps, as `ls` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct ListedOther {
    pub key: String,
    pub kind: OtherKind,
    pub size: u64,
    pub version_id: Option<String>,
    /// Events, their ranges and chains: what the validator recorded of them (`None` for
    /// objects it only recognises, or before it judged them).
    pub validated: Option<Validated>,
}

/// The manifest's current entry of a reference object.
#[derive(Debug, Clone, Serialize)]
pub struct Validated {
    pub version_id: Option<String>,
    /// Events, ranges or expirations.
    pub rows: u64,
    pub min: Option<String>,
    pub max: Option<String>,
}

async fn listed_others(
    store: &dyn ObjectStore,
    layout: &KeyLayout,
    others: Vec<(ObjectMeta, OtherKind)>,
) -> Result<Vec<ListedOther>, ClientError> {
    let mut out = Vec::with_capacity(others.len());
    for (meta, kind) in others {
        let relative = layout.relative_of(&meta.key).unwrap_or_default();
        let validated = match Reference::of(relative) {
            Some(_) => manifest_at(store, &layout.manifest_key_of(relative))
                .await?
                .map(|entry| Validated {
                    version_id: entry.version_id,
                    rows: entry.rows,
                    min: entry.min,
                    max: entry.max,
                }),
            None => None,
        };
        out.push(ListedOther {
            key: meta.key,
            kind,
            size: meta.size,
            version_id: meta.version_id,
            validated,
        });
    }
    Ok(out)
}

/// How the local copy of an object relates to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LocalCopy {
    Absent,
    /// Same bytes as the object (by the remote sidecar's checksum).
    Current,
    /// Another version's bytes.
    Other,
    /// The local parquet disagrees with its local sidecar.
    Inconsistent,
}

/// One object of `ls`.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub key: String,
    pub relative_path: String,
    pub size: u64,
    pub rows: Option<u64>,
    pub min: Option<String>,
    pub max: Option<String>,
    pub version_id: Option<String>,
    /// The manifest's current (validated) version, when a validator recorded one.
    pub validated_version: Option<String>,
    pub local: LocalCopy,
}

/// What `ls` lists: the datasets and the other objects lumibot keeps, by kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Listing {
    pub objects: Vec<Listed>,
    pub others: Vec<ListedOther>,
}

/// The dataset objects in the bucket with their sidecar facts and validated version, and the
/// other objects lumibot keeps beside them, sorted by kind.
pub async fn list(
    store: &dyn ObjectStore,
    layout: &KeyLayout,
    cache: Option<&LocalCache>,
    filter: &str,
) -> Result<Listing, ClientError> {
    let Objects {
        datasets, others, ..
    } = objects(store, layout, filter).await?;
    let mut others = listed_others(store, layout, others).await?;
    others.sort_by(|a, b| (a.kind, &a.key).cmp(&(b.kind, &b.key)));
    let mut out = Vec::with_capacity(datasets.len());
    for (meta, dataset) in datasets {
        let sidecar_key = format!("{}{SIDECAR_SUFFIX}", meta.key);
        let sidecar = match store.get(&sidecar_key, None).await {
            Ok(got) => Sidecar::parse(&got.bytes).ok(),
            Err(StorageError::NotFound { .. }) => None,
            Err(e) => return Err(ClientError::storage(&sidecar_key, e)),
        };
        let relative = relative_path(&dataset);
        let local = match cache.map(|c| c.read(&relative)).transpose()?.flatten() {
            None => LocalCopy::Absent,
            Some(entry) if !entry.is_consistent() => LocalCopy::Inconsistent,
            Some(entry)
                if sidecar
                    .as_ref()
                    .and_then(|s| s.checksum.as_deref())
                    .is_some_and(|c| c == entry.sha256) =>
            {
                LocalCopy::Current
            }
            Some(_) => LocalCopy::Other,
        };
        let validated_version = manifest(store, layout, &dataset)
            .await?
            .and_then(|m| m.version_id);
        out.push(Listed {
            key: meta.key.clone(),
            relative_path: relative,
            size: meta.size,
            rows: sidecar.as_ref().map(|s| s.rows),
            min: sidecar.as_ref().and_then(|s| s.min.clone()),
            max: sidecar.as_ref().and_then(|s| s.max.clone()),
            version_id: meta.version_id,
            validated_version,
            local,
        });
    }
    Ok(Listing {
        objects: out,
        others,
    })
}

/// A kind of disagreement `audit` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DivergenceKind {
    /// The remote parquet does not decode.
    RemoteUnreadable,
    RemoteSidecarMissing,
    /// The remote sidecar disagrees with the remote parquet (rows, checksum, min, max…).
    RemoteSidecarMismatch,
    /// A validator runs on the bucket but recorded nothing for this object.
    ManifestMissing,
    /// The manifest's current version is not the object at the key.
    ManifestMismatch,
    /// The local copy is other bytes than the remote object.
    LocalStale,
    /// The local parquet disagrees with its local sidecar.
    LocalSidecarMismatch,
    /// A local dataset file with no object in the bucket.
    LocalOnly,
}

#[derive(Debug, Clone, Serialize)]
pub struct Divergence {
    pub key: String,
    pub kind: DivergenceKind,
    pub detail: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditReport {
    pub objects: usize,
    pub local_files: usize,
    pub divergences: Vec<Divergence>,
    /// The other objects lumibot keeps, counted by kind (never divergences).
    pub others: BTreeMap<OtherKind, usize>,
    /// What was noticed in them (a chain lumibot ignores, a parquet that does not decode).
    pub other_notes: Vec<OtherNote>,
}

/// What was noticed in another object lumibot keeps.
#[derive(Debug, Clone, Serialize)]
pub struct OtherNote {
    pub key: String,
    pub kind: OtherKind,
    pub notes: Vec<String>,
}

/// Compare every dataset object with its sidecar and manifest, and the local cache with the
/// bucket. `progress(done, total)` is called after each object.
pub async fn audit(
    store: &dyn ObjectStore,
    layout: &KeyLayout,
    cache: &LocalCache,
    progress: impl Fn(usize, usize),
) -> Result<AuditReport, ClientError> {
    let Objects {
        datasets: objects,
        others,
        validated,
    } = objects(store, layout, "").await?;
    let mut report = AuditReport {
        objects: objects.len(),
        ..Default::default()
    };
    for (meta, kind) in &others {
        *report.others.entry(*kind).or_default() += 1;
        let got = match store.get(&meta.key, None).await {
            Ok(got) => got,
            Err(StorageError::NotFound { .. }) => continue,
            Err(e) => return Err(ClientError::storage(&meta.key, e)),
        };
        let relative = layout.relative_of(&meta.key).unwrap_or(&meta.key);
        let seen = others::inspect(*kind, relative, &got.bytes);
        if !seen.notes.is_empty() {
            report.other_notes.push(OtherNote {
                key: meta.key.clone(),
                kind: *kind,
                notes: seen.notes,
            });
        }
    }
    let mut diverge = |key: &str, kind, detail: String| {
        report.divergences.push(Divergence {
            key: key.to_string(),
            kind,
            detail,
        });
    };
    let mut remote_relative = BTreeSet::new();
    for (i, (meta, dataset)) in objects.iter().enumerate() {
        let key = meta.key.as_str();
        let got = match store.get(key, None).await {
            Ok(got) => got,
            // Deleted while we listed: nothing left to compare.
            Err(StorageError::NotFound { .. }) => continue,
            Err(e) => return Err(ClientError::storage(key, e)),
        };
        let sha256 = got.sha256_hex();
        remote_relative.insert(relative_path(dataset));
        let sidecar_key = format!("{key}{SIDECAR_SUFFIX}");
        let sidecar = match store.get(&sidecar_key, None).await {
            Ok(got) => Some(got.bytes),
            Err(StorageError::NotFound { .. }) => None,
            Err(e) => return Err(ClientError::storage(&sidecar_key, e)),
        };
        match facts_of(&got.bytes) {
            Err(message) => diverge(key, DivergenceKind::RemoteUnreadable, message),
            Ok(facts) => match &sidecar {
                None => diverge(
                    key,
                    DivergenceKind::RemoteSidecarMissing,
                    format!("no {sidecar_key}"),
                ),
                Some(bytes) => {
                    let violations = rules::check_sidecar(bytes, &facts, &sha256);
                    if !violations.is_empty() {
                        let detail = violations
                            .iter()
                            .map(|v| v.message.clone())
                            .collect::<Vec<_>>()
                            .join("; ");
                        diverge(key, DivergenceKind::RemoteSidecarMismatch, detail);
                    }
                }
            },
        }
        match manifest(store, layout, dataset).await? {
            Some(entry) => {
                let version_differs = entry.version_id.is_some()
                    && got.meta.version_id.is_some()
                    && entry.version_id != got.meta.version_id;
                let sha_differs = entry.sha256 != sha256;
                if version_differs || sha_differs {
                    diverge(
                        key,
                        DivergenceKind::ManifestMismatch,
                        format!(
                            "the manifest's current version is {} (sha256 {}), the object is {} (sha256 {sha256})",
                            entry.version_id.as_deref().unwrap_or("-"),
                            entry.sha256,
                            got.meta.version_id.as_deref().unwrap_or("-"),
                        ),
                    );
                }
            }
            None if validated => diverge(
                key,
                DivergenceKind::ManifestMissing,
                format!("no {}", layout.manifest_key(dataset)),
            ),
            None => {}
        }
        if let Some(entry) = cache.read(&relative_path(dataset))? {
            if entry.sha256 != sha256 {
                diverge(
                    key,
                    DivergenceKind::LocalStale,
                    format!(
                        "{} has sha256 {}, the object {sha256}",
                        entry.path.display(),
                        entry.sha256
                    ),
                );
            }
            if !matches!(entry.sidecar_state, SidecarState::Matches) {
                diverge(
                    key,
                    DivergenceKind::LocalSidecarMismatch,
                    format!("{}: {:?}", entry.path.display(), entry.sidecar_state),
                );
            }
        }
        progress(i + 1, objects.len());
    }
    let local = cache.walk()?;
    report.local_files = local.len();
    let mut local_only = BTreeMap::new();
    for found in local {
        if !remote_relative.contains(&found.relative_path) {
            local_only.insert(layout.key_for_relative(&found.relative_path), found);
        }
    }
    for (key, found) in local_only {
        report.divergences.push(Divergence {
            key,
            kind: DivergenceKind::LocalOnly,
            detail: format!("{} has no object in the bucket", found.path.display()),
        });
    }
    report
        .divergences
        .sort_by(|a, b| (&a.key, a.kind).cmp(&(&b.key, b.kind)));
    Ok(report)
}

fn facts_of(bytes: &Bytes) -> Result<BatchFacts, String> {
    let decoded = codec::decode(bytes.clone()).map_err(|e| format!("does not decode: {e}"))?;
    BatchFacts::of(&decoded.batch).map_err(|e| e.to_string())
}
