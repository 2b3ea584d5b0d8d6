//! The local cache folder: lumibot's layout (`<root>/<relative path>` and its
//! `.meta.json` sidecar), shared safely by many threads and processes.
//!
//! - **Never a half-written file.** Every file is written to a hidden temporary file in its
//!   final directory and renamed over its final name (atomic on one file system).
//! - **A parquet and its sidecar change together.** Publishing a pair holds an exclusive OS
//!   lock on the pair's lock file; reading holds a shared one. When two processes publish
//!   different versions at once, the last one to finish wins, whole.
//! - **Nothing is served unverified.** A parquet is only served when its sha256 equals its
//!   sidecar's `checksum` (lumibot deletes and refetches files that disagree; so do we, by
//!   downloading again). What was verified is remembered per file identity (device, inode,
//!   size, mtime in ns), in memory and in a record on disk, so a hit, in this process or the
//!   next, costs a `stat` and a few small reads, not a re-hash (see [`Verified`]).
//!
//! Our own bookkeeping lives in `<root>/.cachefill-client/`: `locks/`, `receipts/` (which
//! object version a local file came from; a receipt counts only while its sha256 matches
//! the file, so a file replaced by lumibot itself is never misreported) and `verified/`.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use cachefill_core::atomic_file;
use cachefill_core::codec::{self, BatchFacts, Sidecar};
use cachefill_core::dataset::Dataset;
use cachefill_core::format::{PARQUET_SUFFIX, S3KEY_SUFFIX, SIDECAR_SUFFIX};
use cachefill_core::keys::parse_relative_path;
use cachefill_core::pyfmt;

use crate::error::ClientError;
use cachefill_core::coverage::{self, Covered};

/// Our bookkeeping folder under the cache root (hidden, so lumibot's walks ignore it).
pub const INTERNAL_DIR: &str = ".cachefill-client";
const LOCKS_DIR: &str = "locks";
const RECEIPTS_DIR: &str = "receipts";
const VERIFIED_DIR: &str = "verified";
/// Suffix of temporary files; they start with `.` as well.
pub const PARTIAL_SUFFIX: &str = ".partial";

/// Where a local file came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub key: String,
    pub version_id: Option<String>,
    pub etag: Option<String>,
    /// sha256 of the parquet this receipt describes.
    pub sha256: String,
    pub fetched_at: DateTime<Utc>,
}

/// How a local parquet relates to its local sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SidecarState {
    /// The sidecar's checksum is the parquet's sha256.
    Matches,
    Missing,
    Unreadable(String),
    /// A writer in between, or a torn copy: never served.
    Mismatch {
        sidecar_checksum: Option<String>,
    },
}

/// Rows and bounds of a file, as its sidecar (or its rows) state them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileFacts {
    pub rows: u64,
    pub real_rows: u64,
    pub placeholders: u64,
    pub min: Option<String>,
    pub max: Option<String>,
}

impl FileFacts {
    fn of_sidecar(sidecar: &Sidecar) -> Self {
        FileFacts {
            rows: sidecar.rows,
            real_rows: sidecar.real_rows,
            placeholders: sidecar.placeholders,
            min: sidecar.min.clone(),
            max: sidecar.max.clone(),
        }
    }

    fn of_batch(facts: &BatchFacts) -> Self {
        FileFacts {
            rows: facts.rows as u64,
            real_rows: facts.real_rows as u64,
            placeholders: facts.placeholders as u64,
            min: facts.min.map(pyfmt::pandas_utc_isoformat),
            max: facts.max.map(pyfmt::pandas_utc_isoformat),
        }
    }
}

/// A cached parquet as found on disk.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: PathBuf,
    pub size: u64,
    pub modified: SystemTime,
    pub sha256: String,
    pub sidecar: Option<Sidecar>,
    pub sidecar_state: SidecarState,
    /// Present only when it describes exactly these bytes.
    pub receipt: Option<Receipt>,
    pub covered: Covered,
    /// The remote key lumibot's `.s3key` marker names, when there is a marker.
    pub marker: Option<String>,
}

impl Entry {
    pub fn is_consistent(&self) -> bool {
        self.sidecar_state == SidecarState::Matches
    }

    /// Facts from the sidecar, when it matches the parquet.
    pub fn facts(&self) -> Option<FileFacts> {
        self.sidecar
            .as_ref()
            .filter(|_| self.is_consistent())
            .map(FileFacts::of_sidecar)
    }
}

/// What a verified parquet looked like on disk, what its bytes hashed to and what they cover.
///
/// Kept in memory per [`LocalCache`] and written to `.cachefill-client/verified/<hash of the
/// relative path>.json`, so a new process (each `cachefill get`) trusts it too. It lives in
/// our own hidden folder rather than in lumibot's sidecar (lumibot reads and rewrites that
/// JSON) or beside the parquet (lumibot's folder keeps only lumibot's files): lumibot's walks
/// skip dot-folders, and deleting the folder only costs one re-hash per file.
///
/// The record is trusted only while the file's identity is unchanged and the sidecar's
/// checksum is the recorded sha256; anything else re-hashes. The blind spot: a file rewritten
/// in place (same inode) to the same size within the same nanosecond of mtime, or with its
/// mtime set back, keeps its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Verified {
    /// The relative path, so a record read under another file's name is never used.
    relative: String,
    identity: Identity,
    sha256: String,
    sessions: Vec<NaiveDate>,
    untrusted: Vec<NaiveDate>,
}

impl Verified {
    fn covered(&self) -> Covered {
        Covered {
            sessions: self.sessions.iter().copied().collect(),
            untrusted: self.untrusted.iter().copied().collect(),
        }
    }
}

/// Which file on disk: a new inode (a rename over the name), device, length or mtime means a
/// different file. Elsewhere than unix only length and mtime are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Identity {
    dev: u64,
    inode: u64,
    len: u64,
    /// Nanoseconds since the epoch (negative before it).
    mtime_ns: i128,
}

impl Identity {
    fn of(meta: &fs::Metadata) -> Self {
        #[cfg(unix)]
        let (dev, inode, mtime_ns) = {
            use std::os::unix::fs::MetadataExt;
            (
                meta.dev(),
                meta.ino(),
                i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            )
        };
        #[cfg(not(unix))]
        let (dev, inode, mtime_ns) = (
            0,
            0,
            match modified_of(meta).duration_since(SystemTime::UNIX_EPOCH) {
                Ok(after) => after.as_nanos() as i128,
                Err(before) => -(before.duration().as_nanos() as i128),
            },
        );
        Identity {
            dev,
            inode,
            len: meta.len(),
            mtime_ns,
        }
    }
}

fn modified_of(meta: &fs::Metadata) -> SystemTime {
    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)
}

/// One dataset file found by walking the cache.
#[derive(Debug, Clone)]
pub struct Found {
    pub relative_path: String,
    pub dataset: Dataset,
    pub path: PathBuf,
    pub size: u64,
    pub modified: SystemTime,
}

/// A local cache folder.
#[derive(Debug)]
pub struct LocalCache {
    root: PathBuf,
    verified: Mutex<HashMap<PathBuf, Verified>>,
    bytes_hashed: AtomicU64,
}

/// What a parquet's bytes cover (its footer's facts when it has ours, else its rows); an
/// unreadable file covers nothing, and is replaced by the next download.
fn covered_of_bytes(relative: &str, bytes: &Bytes, modified: SystemTime) -> Covered {
    parse_relative_path(relative)
        .map_err(|e| e.0)
        .and_then(|dataset| {
            coverage::of_parquet(&dataset, bytes, modified.into()).map_err(|e| e.to_string())
        })
        .unwrap_or_default()
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ClientError + '_ {
    move |e| ClientError::local(path, e)
}

/// lumibot's `.s3key` marker of a file (`….parquet.s3key`).
pub fn marker_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(S3KEY_SUFFIX);
    PathBuf::from(name)
}

/// The sidecar path of a parquet path (`….parquet.meta.json`).
pub fn sidecar_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(SIDECAR_SUFFIX);
    PathBuf::from(name)
}

/// Write `bytes` to a hidden temporary file next to `target` and rename it over `target`.
fn write_atomically(target: &Path, bytes: &[u8]) -> io::Result<()> {
    atomic_file::write(target, &temp_name(target), |file| file.write_all(bytes))
}

/// [`write_atomically`] for a record this cache checks before it trusts it (a receipt or a
/// verification record must name the sha256 of the file it is about), so a power cut that
/// loses or tears it costs a hash, nothing else: no fsync.
fn write_record(target: &Path, bytes: &[u8]) -> io::Result<()> {
    atomic_file::write_with(
        target,
        &temp_name(target),
        atomic_file::Durability::Rebuildable,
        |file| file.write_all(bytes),
    )
}

fn write_temp(target: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
    atomic_file::write_temp(target, &temp_name(target), |file| file.write_all(bytes))
}

/// `.<name>.<pid>-<random>.partial`: hidden from listings, and reported by [`LocalCache::walk`] if left over.
fn temp_name(target: &Path) -> String {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(
        ".{name}.{}-{:08x}{PARTIAL_SUFFIX}",
        std::process::id(),
        fastrand::u32(..)
    )
}

fn read_marker(path: &Path) -> Result<Option<String>, ClientError> {
    let marker = marker_path(path);
    match fs::read_to_string(&marker) {
        Ok(key) => Ok(Some(key.trim().to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ClientError::local(marker, e)),
    }
}

/// lumibot's marker: the key, no newline, replaced atomically.
fn write_marker(path: &Path, key: &str) -> Result<(), ClientError> {
    let marker = marker_path(path);
    write_atomically(&marker, key.as_bytes()).map_err(io_error(&marker))
}

fn remove_if_present(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn short_hash(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..16])
}

/// Python's non-strict `Path.resolve()`: absolute, `.`/`..` removed, symlinks of the part
/// that exists resolved.
pub fn resolve(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    let mut lexical = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::ParentDir => {
                lexical.pop();
            }
            Component::CurDir => {}
            other => lexical.push(other),
        }
    }
    let mut existing = lexical.clone();
    let mut rest = Vec::new();
    loop {
        if let Ok(canonical) = existing.canonicalize() {
            let mut out = canonical;
            out.extend(rest.iter().rev());
            return out;
        }
        match (
            existing.file_name().map(|n| n.to_owned()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return lexical,
        }
    }
}

impl LocalCache {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalCache {
            root: root.into(),
            verified: Mutex::new(HashMap::new()),
            bytes_hashed: AtomicU64::new(0),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Bytes of parquet this instance has read and hashed to verify them: what a hit
    /// answered from a record does not add to (for tests and diagnostics).
    pub fn bytes_hashed(&self) -> u64 {
        self.bytes_hashed.load(Ordering::Relaxed)
    }

    /// The local path of a relative cache path (`thetadata/stock/…/x.parquet`).
    pub fn path_of(&self, relative: &str) -> PathBuf {
        relative
            .split('/')
            .fold(self.root.clone(), |path, part| path.join(part))
    }

    /// The cache-relative path of a local path, `None` outside the root (lumibot's
    /// `remote_key_for`: both sides resolved first).
    pub fn relative_of(&self, path: &Path) -> Option<String> {
        let resolved = resolve(path);
        let root = resolve(&self.root);
        let relative = resolved.strip_prefix(&root).ok()?;
        let parts: Option<Vec<&str>> = relative
            .components()
            .map(|c| match c {
                Component::Normal(part) => part.to_str(),
                _ => None,
            })
            .collect();
        let parts = parts?;
        (!parts.is_empty()).then(|| parts.join("/"))
    }

    fn internal(&self, area: &str, relative: &str, extension: &str) -> PathBuf {
        self.root
            .join(INTERNAL_DIR)
            .join(area)
            .join(format!("{}.{extension}", short_hash(relative)))
    }

    /// Hold the pair's OS lock: exclusive to change it, shared to read it.
    fn lock(&self, relative: &str, exclusive: bool) -> Result<File, ClientError> {
        let path = self.internal(LOCKS_DIR, relative, "lock");
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_error(dir))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error(&path))?;
        if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        }
        .map_err(io_error(&path))?;
        Ok(file)
    }

    /// Read a cached parquet, its sidecar and receipt, with the parquet's hash and coverage.
    /// `None` when there is no parquet.
    pub fn read(&self, relative: &str) -> Result<Option<Entry>, ClientError> {
        let path = self.path_of(relative);
        let _lock = self.lock(relative, false)?;
        let meta = match fs::metadata(&path) {
            Ok(meta) if meta.is_file() => meta,
            Ok(_) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ClientError::local(&path, e)),
        };
        let identity = Identity::of(&meta);
        let modified = modified_of(&meta);
        let sidecar = match fs::read(sidecar_path(&path)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(ClientError::local(sidecar_path(&path), e)),
            Ok(bytes) => Some(Sidecar::parse(&bytes)),
        };
        let sidecar_checksum = match &sidecar {
            Some(Ok(sidecar)) => sidecar.checksum.as_deref(),
            _ => None,
        };
        let verified = match self.remembered(relative, &path, identity, sidecar_checksum) {
            Some(verified) => verified,
            None => self.verify(relative, &path, identity, modified)?,
        };
        let (sidecar, sidecar_state) = match sidecar {
            None => (None, SidecarState::Missing),
            Some(Err(e)) => (None, SidecarState::Unreadable(e.to_string())),
            Some(Ok(sidecar)) => {
                let state = if sidecar.checksum.as_deref() == Some(verified.sha256.as_str()) {
                    SidecarState::Matches
                } else {
                    SidecarState::Mismatch {
                        sidecar_checksum: sidecar.checksum.clone(),
                    }
                };
                (Some(sidecar), state)
            }
        };
        let receipt = fs::read(self.internal(RECEIPTS_DIR, relative, "json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Receipt>(&bytes).ok())
            .filter(|r| r.sha256 == verified.sha256);
        let marker = read_marker(&path)?;
        Ok(Some(Entry {
            path,
            size: identity.len,
            modified,
            covered: verified.covered(),
            sha256: verified.sha256,
            sidecar,
            sidecar_state,
            receipt,
            marker,
        }))
    }

    /// What this file was verified as, from memory or its record, when the file is still the
    /// one verified and the sidecar, if it names a checksum, names the recorded sha256 (a
    /// sidecar naming another hash re-hashes, so a pair rewritten within one mtime tick is
    /// caught by its new sidecar). A missing or unreadable record means "not verified".
    fn remembered(
        &self,
        relative: &str,
        path: &Path,
        identity: Identity,
        sidecar_checksum: Option<&str>,
    ) -> Option<Verified> {
        let trusted = |v: &Verified| {
            v.identity == identity
                && v.relative == relative
                && sidecar_checksum.is_none_or(|c| c == v.sha256)
        };
        let memo = self.verified.lock().expect("memo lock").get(path).cloned();
        if let Some(v) = memo.filter(trusted) {
            return Some(v);
        }
        let record = fs::read(self.internal(VERIFIED_DIR, relative, "json")).ok()?;
        let v = serde_json::from_slice::<Verified>(&record)
            .ok()
            .filter(trusted)?;
        self.verified
            .lock()
            .expect("memo lock")
            .insert(path.to_path_buf(), v.clone());
        Some(v)
    }

    /// Read and hash the file, work out its coverage, and remember both.
    fn verify(
        &self,
        relative: &str,
        path: &Path,
        identity: Identity,
        modified: SystemTime,
    ) -> Result<Verified, ClientError> {
        let bytes = Bytes::from(fs::read(path).map_err(io_error(path))?);
        self.bytes_hashed
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let sha256 = codec::sha256_hex(&bytes);
        let covered = covered_of_bytes(relative, &bytes, modified);
        Ok(self.remember(relative, path, identity, sha256, covered))
    }

    /// Remember that the file at `path` (now `identity`), whose sha256 is `sha256`, covers
    /// `covered`: in memory and in a record for the next process.
    fn remember(
        &self,
        relative: &str,
        path: &Path,
        identity: Identity,
        sha256: String,
        covered: Covered,
    ) -> Verified {
        let verified = Verified {
            relative: relative.to_string(),
            identity,
            sha256,
            sessions: covered.sessions.into_iter().collect(),
            untrusted: covered.untrusted.into_iter().collect(),
        };
        self.verified
            .lock()
            .expect("memo lock")
            .insert(path.to_path_buf(), verified.clone());
        // The record only saves the next process a hash: failing to write it loses nothing.
        let record = self.internal(VERIFIED_DIR, relative, "json");
        let written = write_record(
            &record,
            &serde_json::to_vec(&verified).expect("a record serializes"),
        );
        if let Err(e) = written {
            tracing::debug!(record = %record.display(), error = %e, "could not record a verified file");
        }
        verified
    }

    /// Rows and bounds computed from a parquet's rows (for files without a sidecar).
    pub fn facts_from_rows(&self, path: &Path) -> Result<FileFacts, ClientError> {
        let bytes = Bytes::from(fs::read(path).map_err(io_error(path))?);
        let corrupt = |e: codec::CodecError| ClientError::Corrupt {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let decoded = codec::decode(bytes).map_err(corrupt)?;
        Ok(FileFacts::of_batch(
            &BatchFacts::of(&decoded.batch).map_err(corrupt)?,
        ))
    }

    /// Publish a parquet, its sidecar, its receipt and lumibot's markers naming the remote
    /// keys (`receipt.key` and its sidecar's) as one change, and remember the parquet as
    /// verified: its bytes are the ones whose sha256 the receipt names (the downloader hashed
    /// them), so the next read, in this process or another, does not hash them again.
    /// `covered`: what the parquet covers, when the caller has already worked it out (else
    /// it is read from the bytes).
    pub fn publish(
        &self,
        relative: &str,
        parquet: &Bytes,
        covered: Option<Covered>,
        sidecar: &[u8],
        receipt: &Receipt,
    ) -> Result<PathBuf, ClientError> {
        let path = self.path_of(relative);
        let side = sidecar_path(&path);
        let sidecar_key = format!("{}{SIDECAR_SUFFIX}", receipt.key);
        let receipt_path = self.internal(RECEIPTS_DIR, relative, "json");
        let receipt_bytes = serde_json::to_vec(receipt).expect("a receipt serializes");
        // The parquet, its sidecar and lumibot's markers of both, all in one directory, are
        // written before the lock (so the lock is held only for the renames) and published
        // with one directory fsync; the receipt is a record this cache checks.
        let files = [
            (path.clone(), parquet.as_ref()),
            (side.clone(), sidecar),
            (marker_path(&path), receipt.key.as_bytes()),
            (marker_path(&side), sidecar_key.as_bytes()),
        ];
        let mut temps: Vec<(PathBuf, &Path)> = Vec::with_capacity(files.len());
        let result = (|| {
            for (target, bytes) in &files {
                temps.push((write_temp(target, bytes).map_err(io_error(target))?, target));
            }
            let _lock = self.lock(relative, true)?;
            let renames: Vec<(&Path, &Path)> = temps
                .iter()
                .map(|(temp, target)| (temp.as_path(), *target))
                .collect();
            atomic_file::publish_together(&renames).map_err(io_error(&path))?;
            write_record(&receipt_path, &receipt_bytes).map_err(io_error(&receipt_path))?;
            debug_assert_eq!(
                hex::encode(Sha256::digest(parquet)),
                receipt.sha256,
                "the receipt's sha256"
            );
            let meta = fs::metadata(&path).map_err(io_error(&path))?;
            let covered =
                covered.unwrap_or_else(|| covered_of_bytes(relative, parquet, modified_of(&meta)));
            self.remember(
                relative,
                &path,
                Identity::of(&meta),
                receipt.sha256.clone(),
                covered,
            );
            Ok(())
        })();
        if result.is_err() {
            for (temp, _) in &temps {
                let _ = fs::remove_file(temp);
            }
        }
        result.map(|()| path)
    }

    /// Replace one file (any file under the root) downloaded from `key` atomically, under its
    /// lock, with lumibot's marker naming the key.
    pub fn publish_file(
        &self,
        relative: &str,
        bytes: &[u8],
        key: &str,
    ) -> Result<PathBuf, ClientError> {
        let path = self.path_of(relative);
        let temp = write_temp(&path, bytes).map_err(io_error(&path))?;
        let result = self.lock(relative, true).and_then(|_lock| {
            atomic_file::publish(&temp, &path).map_err(io_error(&path))?;
            write_marker(&path, key)
        });
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result.map(|()| path)
    }

    /// Remove one file under the root and its marker (lumibot's "leave no local copy on a
    /// miss").
    pub fn remove_file(&self, relative: &str) -> Result<bool, ClientError> {
        let path = self.path_of(relative);
        let marker = marker_path(&path);
        let _lock = self.lock(relative, true)?;
        remove_if_present(&marker).map_err(io_error(&marker))?;
        remove_if_present(&path).map_err(io_error(&path))
    }

    /// Write lumibot's marker beside a file: it now is the remote object at `key`.
    pub fn mark(&self, relative: &str, key: &str) -> Result<(), ClientError> {
        let _lock = self.lock(relative, true)?;
        write_marker(&self.path_of(relative), key)
    }

    /// The remote key lumibot's marker beside a file names, if there is one.
    pub fn marker(&self, relative: &str) -> Result<Option<String>, ClientError> {
        read_marker(&self.path_of(relative))
    }

    /// Remove a dataset's parquet, sidecar and receipt. `true` when anything was removed.
    pub fn remove(&self, relative: &str) -> Result<bool, ClientError> {
        let path = self.path_of(relative);
        let side = sidecar_path(&path);
        let receipt = self.internal(RECEIPTS_DIR, relative, "json");
        let record = self.internal(VERIFIED_DIR, relative, "json");
        let markers = [marker_path(&path), marker_path(&side)];
        let _lock = self.lock(relative, true)?;
        for bookkeeping in markers.iter().chain([&record]) {
            remove_if_present(bookkeeping).map_err(io_error(bookkeeping))?;
        }
        let mut removed = false;
        for file in [&path, &side, &receipt] {
            removed |= remove_if_present(file).map_err(io_error(file))?;
        }
        self.verified.lock().expect("memo lock").remove(&path);
        Ok(removed)
    }

    /// Every dataset parquet under the root (files whose path parses as a cache path),
    /// sorted by relative path. Other files are never listed, so never touched.
    pub fn walk(&self) -> Result<Vec<Found>, ClientError> {
        let mut out = Vec::new();
        self.walk_dir(&self.root, &mut Vec::new(), &mut out, &mut |_, _| {})?;
        out.sort_by(|a, b| a.relative_path.cmp(&b.relative_path));
        Ok(out)
    }

    fn walk_dir(
        &self,
        dir: &Path,
        parts: &mut Vec<String>,
        out: &mut Vec<Found>,
        partial: &mut dyn FnMut(&Path, &fs::Metadata),
    ) -> Result<(), ClientError> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(ClientError::local(dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_error(dir))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let path = entry.path();
            let meta = entry.metadata().map_err(io_error(&path))?;
            if name.starts_with('.') {
                if meta.is_file() && name.ends_with(PARTIAL_SUFFIX) {
                    partial(&path, &meta);
                }
                continue;
            }
            if meta.is_dir() {
                parts.push(name);
                self.walk_dir(&path, parts, out, partial)?;
                parts.pop();
            } else if meta.is_file() && name.ends_with(PARQUET_SUFFIX) {
                let relative = parts
                    .iter()
                    .map(String::as_str)
                    .chain([name.as_str()])
                    .collect::<Vec<_>>()
                    .join("/");
                if let Ok(dataset) = parse_relative_path(&relative) {
                    out.push(Found {
                        relative_path: relative,
                        dataset,
                        path,
                        size: meta.len(),
                        modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    });
                }
            }
        }
        Ok(())
    }

    /// Remove dataset files (and temporaries left by crashes) not modified for `max_age`.
    /// Returns the relative paths of the datasets removed.
    pub fn clear_older_than(
        &self,
        max_age: Duration,
        dry_run: bool,
    ) -> Result<Vec<Found>, ClientError> {
        let now = SystemTime::now();
        let old =
            |modified: SystemTime| now.duration_since(modified).is_ok_and(|age| age >= max_age);
        let mut found = Vec::new();
        let mut partials = Vec::new();
        self.walk_dir(
            &self.root,
            &mut Vec::new(),
            &mut found,
            &mut |path, meta| {
                if old(meta.modified().unwrap_or(now)) {
                    partials.push(path.to_path_buf());
                }
            },
        )?;
        let stale: Vec<Found> = found.into_iter().filter(|f| old(f.modified)).collect();
        if !dry_run {
            for file in &stale {
                self.remove(&file.relative_path)?;
            }
            for partial in &partials {
                remove_if_present(partial).map_err(io_error(partial))?;
            }
        }
        Ok(stale)
    }

    /// Remove the trade-day files (`binance/crypto/tick/aggtrades/<SYMBOL>/<DAY>.parquet`)
    /// of days before `cutoff`, with their markers: the keep-N-days cleanup. Returns each
    /// file's path relative to the root and its size, in path order.
    pub fn clear_trade_days_before(
        &self,
        cutoff: NaiveDate,
        dry_run: bool,
    ) -> Result<Vec<(String, u64)>, ClientError> {
        let folder = self.path_of(cachefill_core::trades::TRADES_FOLDER);
        let mut out = Vec::new();
        let symbols = match fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_error(&folder)(e)),
        };
        for symbol in symbols {
            let symbol = symbol.map_err(io_error(&folder))?;
            let dir = symbol.path();
            if !dir.is_dir() {
                continue;
            }
            for file in fs::read_dir(&dir).map_err(io_error(&dir))? {
                let file = file.map_err(io_error(&dir))?;
                let relative = format!(
                    "{}/{}/{}",
                    cachefill_core::trades::TRADES_FOLDER,
                    symbol.file_name().to_string_lossy(),
                    file.file_name().to_string_lossy()
                );
                let Some(day) = cachefill_core::trades::TradeDay::parse_relative(&relative) else {
                    continue;
                };
                if day.date < cutoff {
                    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
                    out.push((relative, size));
                }
            }
        }
        out.sort();
        if !dry_run {
            for (relative, _) in &out {
                self.remove_file(relative)?;
            }
        }
        Ok(out)
    }

    /// Remove the datasets `matches` picks. Returns what was removed.
    pub fn invalidate(
        &self,
        matches: impl Fn(&Dataset) -> bool,
        dry_run: bool,
    ) -> Result<Vec<Found>, ClientError> {
        let picked: Vec<Found> = self
            .walk()?
            .into_iter()
            .filter(|f| matches(&f.dataset))
            .collect();
        if !dry_run {
            for file in &picked {
                self.remove(&file.relative_path)?;
            }
        }
        Ok(picked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REL: &str = "synthetic/stock/day/ohlc/stock_AAPL_day_ohlc.parquet";

    fn receipt(sha256: &str) -> Receipt {
        Receipt {
            key: format!("v1/{REL}"),
            version_id: Some("v-1".into()),
            etag: None,
            sha256: sha256.into(),
            fetched_at: Utc::now(),
        }
    }

    fn sidecar_for(bytes: &[u8]) -> Vec<u8> {
        let facts = BatchFacts::default();
        Sidecar::new(&facts, &codec::sha256_hex(bytes), Utc::now())
            .to_json()
            .into_bytes()
    }

    #[test]
    fn publish_leaves_no_temporaries_and_reads_back_consistent() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LocalCache::new(dir.path());
        let body = b"not parquet, but hashed all the same";
        let sha = codec::sha256_hex(body);
        let path = cache
            .publish(
                REL,
                &Bytes::copy_from_slice(body),
                None,
                &sidecar_for(body),
                &receipt(&sha),
            )
            .unwrap();
        assert_eq!(fs::read(&path).unwrap(), body);
        let entry = cache.read(REL).unwrap().unwrap();
        assert!(entry.is_consistent());
        assert_eq!(entry.receipt.unwrap().version_id.as_deref(), Some("v-1"));
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(PARTIAL_SUFFIX))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn a_file_changed_behind_our_back_is_rehashed_and_its_receipt_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LocalCache::new(dir.path());
        let body = b"first body";
        let sha = codec::sha256_hex(body);
        let path = cache
            .publish(
                REL,
                &Bytes::copy_from_slice(body),
                None,
                &sidecar_for(body),
                &receipt(&sha),
            )
            .unwrap();
        assert!(cache.read(REL).unwrap().unwrap().is_consistent());
        // lumibot rewrites the parquet in place without touching the sidecar.
        fs::write(&path, b"second body, longer than the first").unwrap();
        let entry = cache.read(REL).unwrap().unwrap();
        assert!(matches!(entry.sidecar_state, SidecarState::Mismatch { .. }));
        assert!(entry.receipt.is_none());
        assert!(entry.facts().is_none());
    }

    #[test]
    fn relative_paths_are_resolved_like_lumibot() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LocalCache::new(dir.path().join("cache"));
        let inside = dir.path().join("cache/x/../thetadata/a.parquet");
        assert_eq!(
            cache.relative_of(&inside).as_deref(),
            Some("thetadata/a.parquet")
        );
        assert_eq!(
            cache.relative_of(&dir.path().join("elsewhere/a.parquet")),
            None
        );
        assert_eq!(cache.relative_of(&dir.path().join("cache")), None);
    }

    #[test]
    fn walk_lists_only_dataset_files() {
        let dir = tempfile::tempdir().unwrap();
        let cache = LocalCache::new(dir.path());
        let body = b"x";
        cache
            .publish(
                REL,
                &Bytes::copy_from_slice(body),
                None,
                &sidecar_for(body),
                &receipt(&codec::sha256_hex(body)),
            )
            .unwrap();
        fs::write(dir.path().join("notes.parquet"), b"y").unwrap();
        fs::create_dir_all(dir.path().join("thetadata/other")).unwrap();
        fs::write(dir.path().join("thetadata/other/z.parquet"), b"z").unwrap();
        let found = cache.walk().unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].relative_path, REL);
        assert_eq!(found[0].dataset.symbol, "AAPL");
    }
}
