//! Validation of files a person has: parquets in a lumibot cache folder on disk, or a key
//! in a bucket (what `cachefill validate` runs).
//!
//! A file is judged with its sidecar beside it, the way lumibot reads the pair: a sidecar
//! that disagrees (checksum included) is a violation, because lumibot would delete the file.

use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use chrono::Utc;
use serde::Serialize;

use crate::dataset::Dataset;
use crate::format::{PARQUET_SUFFIX, SIDECAR_SUFFIX, TEMP_MARKER};
use crate::keys::{self, KeyKind, KeyLayout};
use crate::others::{self, OtherKind};
use crate::reference::Reference;
use crate::rules::{self, Violation};
use crate::storage::{ObjectStore, StorageError};

/// The verdict on one file or key.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    /// The file's path, or the key.
    pub path: String,
    /// The path relative to the cache root the dataset was read from.
    pub relative_path: String,
    pub dataset: String,
    /// The sidecar checked with it, when there is one.
    pub sidecar: Option<String>,
    pub valid: bool,
    pub sha256: String,
    pub bytes: u64,
    pub rows: Option<u64>,
    pub violations: Vec<Violation>,
}

/// Why a file or key could not be judged at all.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The path does not name a dataset; nothing says which schema applies.
    #[error("{path}: {why}")]
    NotACachePath { path: String, why: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{key}: no such object in the bucket")]
    NotFound { key: String },
    #[error(transparent)]
    Storage(StorageError),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn segments(path: &Path) -> Vec<String> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect()
}

/// The dataset of a parquet on disk and its path relative to the cache root: the path
/// under `cache_root`, or with `from_path` its last five segments
/// (`<provider>/<asset_type>/<timespan>/<datastyle>/<file>`) wherever it is.
pub fn dataset_of_path(
    path: &Path,
    cache_root: &Path,
    from_path: bool,
) -> Result<(Dataset, String), FileError> {
    let relative = relative_of_path(path, cache_root, from_path)?;
    let dataset = keys::parse_relative_path(&relative).map_err(|e| FileError::NotACachePath {
        path: path.display().to_string(),
        why: e.0,
    })?;
    Ok((dataset, relative))
}

/// What was seen in another object lumibot keeps under the cache root (an option chain,
/// corporate events, a snapshot, …): never judged by the dataset rules. Events, their ranges
/// and chains are judged by their own (`valid`, `violations`); the others only looked at.
#[derive(Debug, Clone, Serialize)]
pub struct OtherReport {
    pub path: String,
    pub relative_path: String,
    pub kind: OtherKind,
    pub rows: Option<u64>,
    pub notes: Vec<String>,
    /// `None` for objects only recognised (and for a chain lumibot ignores).
    pub valid: Option<bool>,
    pub violations: Vec<Violation>,
}

/// The other object lumibot keeps at `path` under `cache_root`, looked at; `None` when the
/// path names none.
pub fn inspect_other_file(
    path: &Path,
    cache_root: &Path,
) -> Result<Option<OtherReport>, FileError> {
    let Ok(relative) = relative_of_path(path, cache_root, false) else {
        return Ok(None);
    };
    let Some(kind) = OtherKind::of(&relative) else {
        return Ok(None);
    };
    let bytes = Bytes::from(std::fs::read(path).map_err(io_error(path))?);
    let mut report = OtherReport {
        path: path.display().to_string(),
        relative_path: relative.clone(),
        kind,
        rows: None,
        notes: Vec::new(),
        valid: None,
        violations: Vec::new(),
    };
    match Reference::of(&relative) {
        Some(reference) => {
            let (violations, facts) = rules::check_reference(&reference, &bytes);
            report.rows = facts.as_ref().map(|f| f.rows);
            match facts.and_then(|f| f.ignored) {
                Some(why) => report.notes.push(why),
                None => report.valid = Some(violations.is_empty()),
            }
            report.violations = violations;
        }
        None => {
            let seen = others::inspect(kind, &relative, &bytes);
            report.rows = seen.rows;
            report.notes = seen.notes;
        }
    }
    Ok(Some(report))
}

fn relative_of_path(path: &Path, cache_root: &Path, from_path: bool) -> Result<String, FileError> {
    let not_cache = |why: String| FileError::NotACachePath {
        path: path.display().to_string(),
        why,
    };
    let absolute = std::fs::canonicalize(path).map_err(io_error(path))?;
    let relative: Vec<String> = if from_path {
        let all = segments(&absolute);
        all[all.len().saturating_sub(5)..].to_vec()
    } else {
        let root = std::fs::canonicalize(cache_root).map_err(|_| {
            not_cache(format!(
                "the lumibot cache root {} does not exist; pass --dataset-from-path to read \
                 the dataset from the last five path segments",
                cache_root.display()
            ))
        })?;
        let under = absolute.strip_prefix(&root).map_err(|_| {
            not_cache(format!(
                "not under the lumibot cache root {} (LUMIBOT_CACHE_FOLDER); pass \
                 --dataset-from-path to read the dataset from the last five path segments",
                root.display()
            ))
        })?;
        segments(under)
    };
    Ok(relative.join("/"))
}

/// Every `*.parquet` under `dir`, and every `.meta.json` that is no parquet's sidecar (the
/// ranges files of corporate events), sorted; lumibot's in-flight `.tmp-` files are left out.
pub fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>, FileError> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).map_err(io_error(&folder))? {
            let entry = entry.map_err(io_error(&folder))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(io_error(&path))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if kind.is_dir() {
                pending.push(path);
            } else if !name.contains(TEMP_MARKER)
                && (name.ends_with(PARQUET_SUFFIX)
                    || name
                        .strip_suffix(SIDECAR_SUFFIX)
                        .is_some_and(|stem| !stem.ends_with(PARQUET_SUFFIX)))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn report(
    path: String,
    relative_path: String,
    dataset: &Dataset,
    bytes: &Bytes,
    sidecar: Option<(String, Vec<u8>)>,
) -> FileReport {
    let verdict = rules::check_object(
        dataset,
        bytes,
        sidecar.as_ref().map(|(_, b)| b.as_slice()),
        Utc::now(),
    );
    FileReport {
        path,
        relative_path,
        dataset: dataset.to_string(),
        sidecar: sidecar.map(|(p, _)| p),
        valid: verdict.is_valid(),
        sha256: verdict.sha256,
        bytes: bytes.len() as u64,
        rows: verdict.facts.map(|f| f.rows as u64),
        violations: verdict.violations,
    }
}

/// Judge a parquet on disk of `dataset`, with the `.meta.json` beside it when present.
pub fn check_file(
    path: &Path,
    dataset: &Dataset,
    relative_path: &str,
) -> Result<FileReport, FileError> {
    let bytes = Bytes::from(std::fs::read(path).map_err(io_error(path))?);
    let mut sidecar_path = path.as_os_str().to_owned();
    sidecar_path.push(SIDECAR_SUFFIX);
    let sidecar_path = PathBuf::from(sidecar_path);
    let sidecar = match std::fs::read(&sidecar_path) {
        Ok(b) => Some((sidecar_path.display().to_string(), b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_error(&sidecar_path)(e)),
    };
    Ok(report(
        path.display().to_string(),
        relative_path.to_string(),
        dataset,
        &bytes,
        sidecar,
    ))
}

/// Judge the current version of a dataset's parquet in a bucket, with its sidecar. `name`
/// is a full key, a sidecar key, or a path relative to the cache root.
pub async fn check_key(
    store: &dyn ObjectStore,
    layout: &KeyLayout,
    name: &str,
) -> Result<FileReport, FileError> {
    let not_cache = |why: String| FileError::NotACachePath {
        path: name.to_string(),
        why,
    };
    let kind = match layout.classify(name) {
        Ok(KeyKind::Foreign) => layout.classify(&layout.key_for_relative(name)),
        other => other,
    }
    .map_err(|e| not_cache(e.0))?;
    let dataset = match kind {
        KeyKind::Data(d) | KeyKind::Sidecar(d) => d,
        other => {
            return Err(not_cache(format!(
                "not a dataset's parquet under '{}/' ({other:?})",
                layout.root()
            )));
        }
    };
    let key = layout.data_key(&dataset);
    let got = match store.get(&key, None).await {
        Ok(got) => got,
        Err(StorageError::NotFound { .. }) => return Err(FileError::NotFound { key }),
        Err(e) => return Err(FileError::Storage(e)),
    };
    let sidecar_key = layout.sidecar_key(&dataset);
    let sidecar = match store.get(&sidecar_key, None).await {
        Ok(s) => Some((sidecar_key, s.bytes.to_vec())),
        Err(StorageError::NotFound { .. }) => None,
        Err(e) => return Err(FileError::Storage(e)),
    };
    Ok(report(
        key,
        keys::relative_path(&dataset),
        &dataset,
        &got.bytes,
        sidecar,
    ))
}
