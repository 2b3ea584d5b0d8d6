//! [`LocalStore`]: a versioned bucket in a local directory, the embedded default.
//!
//! Several processes may use the same directory at once (several `cachefill` commands on one
//! machine), so every mutation of a key is serialized by an exclusive OS lock on that key's
//! lock file, and every conditional write is evaluated under that lock.
//!
//! # On-disk layout
//!
//! ```text
//! <root>/objects/<h[0..2]>/<h>/        h = sha256 hex of the key
//!     lock                             empty; holds the OS lock serializing mutations of the key
//!     head.json                        {"key", "versions": [newest first: version_id, etag, size,
//!                                       last_modified, metadata, content_type, tags,
//!                                       delete_marker]}
//!     v-<version_id>                   the bytes of one version, immutable once in place
//!     .tmp-*                           writes in flight (or left by a crash); never read
//!     data/<version_id>                the bytes of a version written by an earlier layout;
//!                                      still read and copied, never written
//! ```
//!
//! Hashing the key into the directory name means no key can collide with another key's
//! internal files (keys `a` and `a/b` live in unrelated directories), and any S3-style key
//! maps to a short, portable path. `list` reads every `head.json` and filters by key.
//!
//! # Why a crash leaves either the old or the new state
//!
//! A write first puts the bytes in place at `v-<new version id>` (unreferenced, so
//! invisible; created exclusively and fsynced), then writes a new `head.json` that
//! references it as a temp file, fsyncs it, renames it over the old one and fsyncs the key
//! directory: that single rename is the commit point, and that one directory fsync makes
//! both new entries durable, the data file's and the head's, since both live in the key
//! directory. (A key's first write first makes the directories holding it durable; leases
//! and audit records get less, see [`durability_of`].) So a durable put costs three fsyncs,
//! five for a key's first.
//!
//! A crash before the rename leaves the old `head.json` and at most an orphan data file or
//! temp file, which reads never look at and the next mutation of the key sweeps away; a
//! crash after it leaves a head whose data bytes are already durable. Should a file system
//! keep the rename and lose the data file's entry (the two reach the disk together at the
//! directory fsync, and the rename was never reported done), the head names a newest
//! version whose file is missing: readers take it for the uncommitted write it is and see
//! the previous version ([`surviving`]). Data files that a head references are never
//! removed or rewritten, so readers need no lock: they read one `head.json` snapshot and
//! then immutable bytes. The OS releases a dead process's lock, so a crash never blocks
//! the key.
//!
//! A store written by an earlier layout keeps its versions in `data/`; they are found there
//! when no `v-` file is beside the head, and new versions are written beside it. A binary
//! older than this layout cannot read the versions written by a newer one.
//!
//! Since a version's bytes never change, a store and its clones keep the few largest
//! versions they lately wrote or read in memory ([`Recent`]) and answer a later get of the
//! same version from there: in one process, an extend's engine, the embedded validator and
//! the client read the object just written, and the version it extends, from disk once.
//! The head is read every time, so a deleted version is never served; a data file rewritten
//! in place by a foreign hand (no writer of this store ever rewrites one) is not seen by a
//! process that already holds its version.
//!
//! # Semantics beyond the trait
//!
//! Like a versioned S3 bucket: user metadata names are lower-cased; `copy` carries the
//! source version's bytes, etag, user metadata, content type and tags (S3's default `COPY`
//! directives); `IfAbsent` succeeds over a delete marker. Unlike S3, deleting a key that is
//! missing or already deleted adds no marker, so repeated deletes do not pile up history.

use std::collections::{HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::atomic_file::{self, Durability};
use crate::format::{AUDIT_AREA, LEASE_AREA};

use super::{
    GetResult, Metadata, ObjectMeta, ObjectStore, PutMode, PutOptions, PutResult, Result,
    StorageError, Tags, VersionInfo, check_key, etags_equal,
};

const OBJECTS_DIR: &str = "objects";
const HEAD_FILE: &str = "head.json";
const LOCK_FILE: &str = "lock";
const DATA_PREFIX: &str = "v-";
/// The directory that held every version's bytes in the earlier layout.
const LEGACY_DATA_DIR: &str = "data";
const TEMP_PREFIX: &str = ".tmp-";

/// A versioned bucket in a local directory, safe to share between threads and processes.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    recent: Arc<Mutex<Recent>>,
}

/// Versions lately written or read, by key and version id, newest last; bounded in count and
/// bytes. Only bodies of at least [`Recent::MIN_BYTES`] are kept: smaller ones cost less to
/// read again than to keep. A version kept as it was written carries the sha256 the write
/// hashed it with; one kept as it was read from disk does not (the disk may have changed it).
#[derive(Debug, Default)]
struct Recent {
    versions: VecDeque<Kept>,
    bytes: usize,
}

#[derive(Debug)]
struct Kept {
    key: String,
    version_id: String,
    bytes: Bytes,
    sha256: Option<String>,
}

impl Recent {
    const MIN_BYTES: usize = 64 << 10;
    const MAX_BYTES: usize = 128 << 20;
    const MAX_VERSIONS: usize = 8;

    /// The bytes of a kept version, and their sha256 when it was kept as written.
    fn get(&self, key: &str, version_id: &str) -> Option<(Bytes, Option<String>)> {
        self.versions
            .iter()
            .find(|kept| kept.key == key && kept.version_id == version_id)
            .map(|kept| (kept.bytes.clone(), kept.sha256.clone()))
    }

    fn keep(&mut self, key: &str, version_id: &str, bytes: &Bytes, sha256: Option<&str>) {
        if bytes.len() < Self::MIN_BYTES
            || bytes.len() > Self::MAX_BYTES / 2
            || self.get(key, version_id).is_some()
        {
            return;
        }
        self.versions.push_back(Kept {
            key: key.to_string(),
            version_id: version_id.to_string(),
            bytes: bytes.clone(),
            sha256: sha256.map(str::to_string),
        });
        self.bytes += bytes.len();
        while self.versions.len() > Self::MAX_VERSIONS || self.bytes > Self::MAX_BYTES {
            let dropped = self.versions.pop_front().expect("not empty");
            self.bytes -= dropped.bytes.len();
        }
    }
}

/// The `head.json` of one key: its whole version history, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct HeadFile {
    key: String,
    versions: Vec<VersionRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct VersionRecord {
    version_id: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    delete_marker: bool,
    #[serde(default)]
    etag: String,
    #[serde(default)]
    size: u64,
    last_modified: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    metadata: Metadata,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    tags: Tags,
}

impl VersionRecord {
    fn object_meta(&self, key: &str, with_metadata: bool) -> ObjectMeta {
        ObjectMeta {
            key: key.to_string(),
            size: self.size,
            etag: self.etag.clone(),
            version_id: Some(self.version_id.clone()),
            last_modified: self.last_modified,
            metadata: if with_metadata {
                self.metadata.clone()
            } else {
                Metadata::new()
            },
        }
    }
}

impl HeadFile {
    /// The current object, `None` when the key is deleted.
    fn current(&self) -> Option<&VersionRecord> {
        self.versions.first().filter(|v| !v.delete_marker)
    }

    /// The named version (or the current one) as long as it is an object, not a marker.
    fn object(&self, version: Option<&str>) -> Option<&VersionRecord> {
        match version {
            None => self.current(),
            Some(id) => self
                .versions
                .iter()
                .find(|v| v.version_id == id && !v.delete_marker),
        }
    }

    fn object_index(&self, version: Option<&str>) -> Option<usize> {
        match version {
            None => self.current().map(|_| 0),
            Some(id) => self
                .versions
                .iter()
                .position(|v| v.version_id == id && !v.delete_marker),
        }
    }
}

/// The operation and key an error is reported against.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    op: &'static str,
    key: &'a str,
}

impl Ctx<'_> {
    fn not_found(self) -> StorageError {
        StorageError::NotFound {
            key: self.key.to_string(),
        }
    }

    fn other(self, message: String) -> StorageError {
        StorageError::Other {
            operation: self.op,
            key: self.key.to_string(),
            message,
        }
    }

    /// Converts an io error on `path`: a missing file is `NotFound`, anything else `Other`.
    fn io(self, path: &Path) -> impl FnOnce(io::Error) -> StorageError {
        move |err| {
            if err.kind() == io::ErrorKind::NotFound {
                self.not_found()
            } else {
                self.other(format!("{}: {err}", path.display()))
            }
        }
    }
}

/// The paths of one key's directory.
struct KeyPaths {
    dir: PathBuf,
}

impl KeyPaths {
    fn head(&self) -> PathBuf {
        self.dir.join(HEAD_FILE)
    }
    fn lock(&self) -> PathBuf {
        self.dir.join(LOCK_FILE)
    }
    /// Where this layout writes a version's bytes.
    fn data(&self, version_id: &str) -> PathBuf {
        self.dir.join(format!("{DATA_PREFIX}{version_id}"))
    }
    fn legacy_data_dir(&self) -> PathBuf {
        self.dir.join(LEGACY_DATA_DIR)
    }
    /// `op` on a version's data file where it is: beside the head, else where the earlier
    /// layout put it; the path it succeeded on comes back with its answer. `NotFound` (of
    /// this layout's path) when the file is in neither place.
    fn at_data<T>(
        &self,
        version_id: &str,
        op: impl Fn(&Path) -> io::Result<T>,
    ) -> io::Result<(PathBuf, T)> {
        let path = self.data(version_id);
        match op(&path) {
            Ok(answer) => Ok((path, answer)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                let legacy = self.legacy_data_dir().join(version_id);
                match op(&legacy) {
                    Ok(answer) => Ok((legacy, answer)),
                    Err(legacy_err) if legacy_err.kind() == io::ErrorKind::NotFound => Err(err),
                    Err(legacy_err) => Err(legacy_err),
                }
            }
            Err(err) => Err(err),
        }
    }
}

impl LocalStore {
    /// Opens (creating it when needed) a store rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Result<LocalStore> {
        let root = root.into();
        let objects = root.join(OBJECTS_DIR);
        fs::create_dir_all(&objects).map_err(|err| StorageError::Other {
            operation: "open",
            key: String::new(),
            message: format!("{}: {err}", objects.display()),
        })?;
        Ok(LocalStore {
            root,
            recent: Arc::default(),
        })
    }

    /// The directory this store lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        // A panic while holding it leaves the memo consistent (each step is one push or pop).
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn objects_dir(&self) -> PathBuf {
        self.root.join(OBJECTS_DIR)
    }

    fn key_paths(&self, key: &str) -> KeyPaths {
        let hash = hex::encode(Sha256::digest(key.as_bytes()));
        KeyPaths {
            dir: self.objects_dir().join(&hash[..2]).join(hash),
        }
    }

    /// Runs blocking file I/O off the async worker threads, so many concurrent callers on a
    /// small runtime keep making progress; a started write runs to completion even if the
    /// caller stops waiting.
    async fn blocking<T, F>(&self, op: &'static str, key: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&LocalStore) -> Result<T> + Send + 'static,
    {
        let store = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle
                .spawn_blocking(move || f(&store))
                .await
                .map_err(|err| StorageError::Other {
                    operation: op,
                    key: key.to_string(),
                    message: format!("storage task failed: {err}"),
                })?,
            // Outside a Tokio runtime (another executor) there is no blocking pool to use.
            Err(_) => f(&store),
        }
    }

    /// Reads a key's head; `None` when the key never existed.
    fn read_head(&self, ctx: Ctx<'_>, paths: &KeyPaths) -> Result<Option<HeadFile>> {
        let path = paths.head();
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(ctx.io(&path)(err)),
        };
        let parsed = serde_json::from_slice::<HeadFile>(&text);
        if parsed.is_err() && durability_of(ctx.key) == Durability::ProcessCrash {
            // Only a foreign hand tears a head (its temp file is fsynced), but the key is one
            // that may be lost anyway: it reads as never written, and its next mutation
            // writes a fresh head over the wreck.
            tracing::warn!(path = %path.display(), "unreadable head of a key that need not survive; treating it as absent");
            return Ok(None);
        }
        let head =
            parsed.map_err(|err| ctx.other(format!("{}: corrupt head: {err}", path.display())))?;
        if head.key != ctx.key {
            return Err(ctx.other(format!("{}: belongs to key {:?}", path.display(), head.key)));
        }
        Ok(surviving(paths, head))
    }

    fn read_object(
        &self,
        ctx: Ctx<'_>,
        version: Option<&str>,
    ) -> Result<(KeyPaths, VersionRecord)> {
        let paths = self.key_paths(ctx.key);
        let head = self
            .read_head(ctx, &paths)?
            .ok_or_else(|| ctx.not_found())?;
        let record = head.object(version).ok_or_else(|| ctx.not_found())?.clone();
        Ok((paths, record))
    }

    fn get_sync(&self, key: &str, version: Option<&str>) -> Result<GetResult> {
        let ctx = Ctx { op: "get", key };
        let (paths, record) = self.read_object(ctx, version)?;
        let meta = record.object_meta(key, true);
        let recent = self.recent().get(key, &record.version_id);
        if let Some((bytes, sha256)) = recent.filter(|(b, _)| b.len() as u64 == record.size) {
            return Ok(GetResult {
                bytes,
                meta,
                sha256,
            });
        }
        let (path, bytes) = paths
            .at_data(&record.version_id, |path| fs::read(path))
            .map_err(ctx.io(&paths.data(&record.version_id)))?;
        let bytes = Bytes::from(bytes);
        if bytes.len() as u64 != record.size {
            return Err(ctx.other(format!(
                "{}: {} bytes on disk, {} recorded",
                path.display(),
                bytes.len(),
                record.size
            )));
        }
        self.recent().keep(key, &record.version_id, &bytes, None);
        Ok(GetResult {
            bytes,
            meta,
            sha256: None,
        })
    }

    /// Serializes a mutation of `key` with every other thread and process: takes the key's
    /// exclusive lock, sweeps what a crashed writer left, and hands `f` the current head.
    fn mutate<T>(
        &self,
        ctx: Ctx<'_>,
        f: impl FnOnce(&KeyPaths, Option<HeadFile>) -> Result<T>,
    ) -> Result<T> {
        let paths = self.key_paths(ctx.key);
        if !paths.dir.is_dir() {
            fs::create_dir_all(&paths.dir).map_err(ctx.io(&paths.dir))?;
        }
        let lock_path = paths.lock();
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(ctx.io(&lock_path))?;
        lock.lock().map_err(ctx.io(&lock_path))?;
        let result = self.read_head(ctx, &paths).and_then(|head| {
            sweep(&paths, head.as_ref());
            if head.is_none() && durability_of(ctx.key) == Durability::PowerLoss {
                self.sync_key_directories(ctx, &paths)?;
            }
            f(&paths, head)
        });
        // Closing the file releases the lock too; unlocking first just makes it prompt.
        let _ = lock.unlock();
        result
    }

    /// Makes the entries of a key's directories durable (the shard's in `objects/`, the key
    /// directory's in the shard) before its first head can commit inside them, or a power
    /// cut could keep nothing of a write reported done; the entries inside the key directory
    /// are made durable by the commit's own fsync of it. Done whenever the key has no head
    /// yet, not only when this writer created the directories: a writer that crashed after
    /// creating them may never have synced them.
    fn sync_key_directories(&self, ctx: Ctx<'_>, paths: &KeyPaths) -> Result<()> {
        let objects = self.objects_dir();
        let shard = paths.dir.parent().unwrap_or(&objects);
        for dir in [objects.as_path(), shard] {
            atomic_file::sync_dir(dir).map_err(ctx.io(dir))?;
        }
        Ok(())
    }

    fn put_sync(&self, key: &str, body: Bytes, options: PutOptions) -> Result<PutResult> {
        let ctx = Ctx { op: "put", key };
        let sha256 = match options.sha256 {
            Some(sha256) => {
                debug_assert_eq!(
                    hex::encode(Sha256::digest(&body)),
                    sha256,
                    "PutOptions::sha256 is the body's"
                );
                sha256
            }
            None => crate::codec::sha256_hex(&body),
        };
        let etag = etag_from_sha256(&sha256);
        let metadata = options
            .metadata
            .into_iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value))
            .collect();
        self.mutate(ctx, |paths, head| {
            let current = head.as_ref().and_then(HeadFile::current);
            let allowed = match &options.mode {
                PutMode::Overwrite => true,
                PutMode::IfAbsent => current.is_none(),
                PutMode::IfMatch(expected) => {
                    current.is_some_and(|c| etags_equal(&c.etag, expected))
                }
            };
            if !allowed {
                return Err(StorageError::PreconditionFailed {
                    key: key.to_string(),
                });
            }
            let version_id = next_version_id(head.as_ref());
            write_data(ctx, paths, &version_id, |file| file.write_all(&body))?;
            let record = VersionRecord {
                version_id,
                delete_marker: false,
                etag,
                size: body.len() as u64,
                last_modified: Utc::now(),
                metadata,
                content_type: options.content_type,
                tags: Tags::new(),
            };
            let version_id = record.version_id.clone();
            let put = self.commit(ctx, paths, head, record)?;
            self.recent().keep(key, &version_id, &body, Some(&sha256));
            Ok(put)
        })
    }

    fn copy_sync(&self, from: &str, from_version: Option<&str>, to: &str) -> Result<PutResult> {
        let source_ctx = Ctx {
            op: "copy",
            key: from,
        };
        let (source_paths, source) = self.read_object(source_ctx, from_version)?;
        let ctx = Ctx {
            op: "copy",
            key: to,
        };
        self.mutate(ctx, |paths, head| {
            let version_id = next_version_id(head.as_ref());
            let (_, mut reader) = source_paths
                .at_data(&source.version_id, |path| File::open(path))
                .map_err(source_ctx.io(&source_paths.data(&source.version_id)))?;
            write_data(ctx, paths, &version_id, |file| {
                io::copy(&mut reader, file).map(|_| ())
            })?;
            // Like S3's default copy directives: the content, user metadata and tags come along.
            let record = VersionRecord {
                version_id,
                last_modified: Utc::now(),
                ..source
            };
            self.commit(ctx, paths, head, record)
        })
    }

    /// Makes `record` the newest version of the key: the rename of `head.json` is the
    /// commit point.
    fn commit(
        &self,
        ctx: Ctx<'_>,
        paths: &KeyPaths,
        head: Option<HeadFile>,
        record: VersionRecord,
    ) -> Result<PutResult> {
        let result = PutResult {
            etag: record.etag.clone(),
            version_id: Some(record.version_id.clone()),
        };
        let mut head = head.unwrap_or_else(|| HeadFile {
            key: ctx.key.to_string(),
            versions: Vec::new(),
        });
        head.versions.insert(0, record);
        write_head(ctx, paths, &head)?;
        Ok(result)
    }

    fn delete_sync(&self, key: &str) -> Result<()> {
        let ctx = Ctx { op: "delete", key };
        self.mutate(ctx, |paths, head| {
            // Deleting a missing (or already deleted) key changes nothing.
            let Some(head) = head.filter(|h| h.current().is_some()) else {
                return Ok(());
            };
            let marker = VersionRecord {
                version_id: next_version_id(Some(&head)),
                delete_marker: true,
                etag: String::new(),
                size: 0,
                last_modified: Utc::now(),
                metadata: Metadata::new(),
                content_type: None,
                tags: Tags::new(),
            };
            self.commit(ctx, paths, Some(head), marker).map(|_| ())
        })
    }

    fn list_sync(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let ctx = Ctx {
            op: "list",
            key: prefix,
        };
        let objects = self.objects_dir();
        let mut found = Vec::new();
        for shard in read_dir_sorted(&objects).map_err(ctx.io(&objects))? {
            if !shard.is_dir() {
                continue;
            }
            for dir in read_dir_sorted(&shard).map_err(ctx.io(&shard))? {
                let path = dir.join(HEAD_FILE);
                let text = match fs::read(&path) {
                    Ok(text) => text,
                    // A directory whose first write never committed holds no object.
                    Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                    Err(err) => return Err(ctx.other(format!("{}: {err}", path.display()))),
                };
                let head: HeadFile = serde_json::from_slice(&text)
                    .map_err(|err| ctx.other(format!("{}: corrupt head: {err}", path.display())))?;
                if !head.key.starts_with(prefix) {
                    continue;
                }
                let Some(head) = surviving(&KeyPaths { dir: dir.clone() }, head) else {
                    continue;
                };
                if let Some(current) = head.current() {
                    found.push(current.object_meta(&head.key, false));
                }
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }

    fn list_versions_sync(&self, key: &str) -> Result<Vec<VersionInfo>> {
        let ctx = Ctx {
            op: "list_versions",
            key,
        };
        let Some(head) = self.read_head(ctx, &self.key_paths(key))? else {
            return Ok(Vec::new());
        };
        Ok(head
            .versions
            .iter()
            .enumerate()
            .map(|(i, v)| VersionInfo {
                version_id: v.version_id.clone(),
                etag: v.etag.clone(),
                size: v.size,
                last_modified: v.last_modified,
                is_latest: i == 0,
                is_delete_marker: v.delete_marker,
            })
            .collect())
    }

    fn put_tags_sync(&self, key: &str, version: Option<&str>, tags: Tags) -> Result<()> {
        let ctx = Ctx {
            op: "put_tags",
            key,
        };
        self.mutate(ctx, |paths, head| {
            let mut head = head.ok_or_else(|| ctx.not_found())?;
            let index = head.object_index(version).ok_or_else(|| ctx.not_found())?;
            head.versions[index].tags = tags;
            write_head(ctx, paths, &head)
        })
    }
}

fn write_head(ctx: Ctx<'_>, paths: &KeyPaths, head: &HeadFile) -> Result<()> {
    let text = serde_json::to_vec_pretty(head)
        .map_err(|err| ctx.other(format!("cannot encode head: {err}")))?;
    let temp = format!(
        "{TEMP_PREFIX}{}-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    );
    atomic_file::write_with(&paths.head(), &temp, durability_of(ctx.key), |file| {
        file.write_all(&text)
    })
    .map_err(ctx.io(&paths.dir))
}

/// Puts the bytes of a new version at `v-<version_id>` beside the head, ready for a head to
/// name.
///
/// No temp file and rename: nothing reads a data file until a committed head names it, and
/// a crash mid-write leaves an unreferenced file that the next mutation's sweep removes.
/// For a durable key the file is fsynced, so its bytes are on disk before [`write_head`]'s
/// rename is issued; its directory entry is made durable by the same fsync of the key
/// directory that commits the head.
fn write_data(
    ctx: Ctx<'_>,
    paths: &KeyPaths,
    version_id: &str,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<()> {
    let path = paths.data(version_id);
    atomic_file::create_filled(&path, durability_of(ctx.key), fill).map_err(ctx.io(&path))?;
    Ok(())
}

/// What a write of `key` must survive: the one place the store decides it.
///
/// Leases (`_leases/`) and audit records (`_audit/`) need to survive only a crash of the
/// writing process, so they are written with no fsync. A lease cannot outlive a reboot
/// usefully: its holder is gone, so losing it (or its release) only lets a peer take it
/// sooner or makes it wait out the TTL. An audit record may be lost to a power cut; that
/// is documented. Everything else (parquet, sidecars, manifests, quarantine) survives a
/// power cut. Decided by a path segment, since the store does not know the key layout's
/// prefix; a foreign key with such a segment merely gets the cheaper durability.
fn durability_of(key: &str) -> Durability {
    let mut directories = key.split('/').rev().skip(1);
    if directories.any(|segment| segment == LEASE_AREA || segment == AUDIT_AREA) {
        Durability::ProcessCrash
    } else {
        Durability::PowerLoss
    }
}

fn etag_from_sha256(sha256: &str) -> String {
    format!("\"{}\"", &sha256[..32.min(sha256.len())])
}

/// A unique version id that sorts by creation time: zero-padded nanoseconds since the epoch,
/// then random hex. It is always later than the key's newest version, so a key's versions
/// sort in commit order even if the clock steps back.
fn next_version_id(head: Option<&HeadFile>) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let newest = head
        .and_then(|h| h.versions.first())
        .and_then(|v| v.version_id.split('-').next())
        .and_then(|nanos| nanos.parse::<u128>().ok())
        .unwrap_or(0);
    let nanos = now.max(newest + 1);
    format!("{nanos:020}-{:016x}", fastrand::u64(..))
}

/// What of a head read from disk a power cut let commit; `None` when the key reads as
/// never written.
///
/// - A [`Durability::ProcessCrash`] key's current data is written unsynced: when it does not
///   have the recorded size, the key reads as absent (its next mutation writes a fresh
///   head over the wreck). Older versions are not checked.
/// - A durable key's newest version whose data file is in neither place never committed
///   (see the module's crash argument): it is dropped, and the next mutation's head no
///   longer names it. A data file of the wrong size stays an error for the get that reads
///   it: no crash leaves one.
fn surviving(paths: &KeyPaths, mut head: HeadFile) -> Option<HeadFile> {
    let Some(newest) = head.versions.first().filter(|v| !v.delete_marker) else {
        return Some(head);
    };
    let located = paths.at_data(&newest.version_id, |path| fs::metadata(path));
    if durability_of(&head.key) == Durability::ProcessCrash {
        if located.is_ok_and(|(_, meta)| meta.len() == newest.size) {
            return Some(head);
        }
        tracing::warn!(key = %head.key, "head lost to a power cut; treating the key as absent");
        return None;
    }
    if located.is_err_and(|err| err.kind() == io::ErrorKind::NotFound) {
        tracing::warn!(
            key = %head.key,
            version_id = %newest.version_id,
            "newest version's data is missing: it never committed; reading the version before it"
        );
        head.versions.remove(0);
        if head.versions.is_empty() {
            return None;
        }
    }
    Some(head)
}

fn read_dir_sorted(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_name().to_string_lossy().starts_with('.') {
            paths.push(entry.path());
        }
    }
    paths.sort();
    Ok(paths)
}

/// Removes what a crashed writer of this key left: temp files and data files no head
/// references. Only lock holders write here, so under the lock nothing else is in flight.
/// Best effort: a leftover costs disk space, never correctness.
fn sweep(paths: &KeyPaths, head: Option<&HeadFile>) {
    let referenced: HashSet<&str> = head
        .map(|h| h.versions.iter().map(|v| v.version_id.as_str()).collect())
        .unwrap_or_default();
    let remove_matching = |dir: &Path, orphan: &dyn Fn(&str) -> bool| {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if orphan(&name)
                && let Err(err) = fs::remove_file(entry.path())
            {
                tracing::debug!(path = %entry.path().display(), %err, "could not remove leftover file");
            }
        }
    };
    remove_matching(&paths.dir, &|name| {
        name.starts_with(TEMP_PREFIX)
            || name
                .strip_prefix(DATA_PREFIX)
                .is_some_and(|version_id| !referenced.contains(version_id))
    });
    remove_matching(&paths.legacy_data_dir(), &|name| {
        name.starts_with(TEMP_PREFIX) || !referenced.contains(name)
    });
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn get(&self, key: &str, version: Option<&str>) -> Result<GetResult> {
        check_key(key)?;
        let (owned_key, version) = (key.to_string(), version.map(str::to_string));
        self.blocking("get", key, move |store| {
            store.get_sync(&owned_key, version.as_deref())
        })
        .await
    }

    async fn head(&self, key: &str, version: Option<&str>) -> Result<ObjectMeta> {
        check_key(key)?;
        let (owned_key, version) = (key.to_string(), version.map(str::to_string));
        self.blocking("head", key, move |store| {
            let ctx = Ctx {
                op: "head",
                key: &owned_key,
            };
            let (_, record) = store.read_object(ctx, version.as_deref())?;
            Ok(record.object_meta(&owned_key, true))
        })
        .await
    }

    async fn put(&self, key: &str, body: Bytes, options: PutOptions) -> Result<PutResult> {
        check_key(key)?;
        let owned_key = key.to_string();
        self.blocking("put", key, move |store| {
            store.put_sync(&owned_key, body, options)
        })
        .await
    }

    async fn copy(&self, from: &str, from_version: Option<&str>, to: &str) -> Result<PutResult> {
        check_key(from)?;
        check_key(to)?;
        let (from, from_version, owned_to) = (
            from.to_string(),
            from_version.map(str::to_string),
            to.to_string(),
        );
        self.blocking("copy", to, move |store| {
            store.copy_sync(&from, from_version.as_deref(), &owned_to)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        let owned_key = key.to_string();
        self.blocking("delete", key, move |store| store.delete_sync(&owned_key))
            .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let owned_prefix = prefix.to_string();
        self.blocking("list", prefix, move |store| store.list_sync(&owned_prefix))
            .await
    }

    async fn list_versions(&self, key: &str) -> Result<Vec<VersionInfo>> {
        check_key(key)?;
        let owned_key = key.to_string();
        self.blocking("list_versions", key, move |store| {
            store.list_versions_sync(&owned_key)
        })
        .await
    }

    async fn get_tags(&self, key: &str, version: Option<&str>) -> Result<Tags> {
        check_key(key)?;
        let (owned_key, version) = (key.to_string(), version.map(str::to_string));
        self.blocking("get_tags", key, move |store| {
            let ctx = Ctx {
                op: "get_tags",
                key: &owned_key,
            };
            let (_, record) = store.read_object(ctx, version.as_deref())?;
            Ok(record.tags)
        })
        .await
    }

    async fn put_tags(&self, key: &str, version: Option<&str>, tags: &Tags) -> Result<()> {
        check_key(key)?;
        let (owned_key, version, tags) =
            (key.to_string(), version.map(str::to_string), tags.clone());
        self.blocking("put_tags", key, move |store| {
            store.put_tags_sync(&owned_key, version.as_deref(), tags)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use super::*;

    /// Set in a re-executed copy of this test binary to make `cross_process_child` a writer.
    const CHILD_ROOT_ENV: &str = "CACHEFILL_TEST_LOCALSTORE_CHILD_ROOT";
    const CHILD_READY_ENV: &str = "CACHEFILL_TEST_LOCALSTORE_CHILD_READY";
    const CHILD_THREADS: usize = 2;
    const PARENT_THREADS: usize = 4;
    const APPENDS_PER_THREAD: usize = 25;
    const JOURNAL_KEY: &str = "contention/journal.json";

    fn store_in(dir: &tempfile::TempDir) -> LocalStore {
        LocalStore::new(dir.path().join("bucket")).unwrap()
    }

    /// Appends `entry` to the JSON array at `key` with the conditional-update loop.
    async fn append(store: &dyn ObjectStore, key: &str, entry: &str) {
        for _ in 0..10_000 {
            let (mut entries, mode) = match store.get(key, None).await {
                Ok(got) => (
                    serde_json::from_slice::<Vec<String>>(&got.bytes).unwrap(),
                    PutMode::IfMatch(got.meta.etag),
                ),
                Err(StorageError::NotFound { .. }) => (Vec::new(), PutMode::IfAbsent),
                Err(err) => panic!("get of {key}: {err}"),
            };
            entries.push(entry.to_string());
            let body = Bytes::from(serde_json::to_vec(&entries).unwrap());
            match store.put(key, body, PutOptions::with_mode(mode)).await {
                Ok(_) => return,
                Err(StorageError::PreconditionFailed { .. }) => continue,
                Err(err) => panic!("put of {key}: {err}"),
            }
        }
        panic!("append of {entry} to {key}: no attempt succeeded");
    }

    /// Threads, each with its own runtime and its own store handle on `root`, appending
    /// `<writer>-<thread>-<n>` entries to the journal.
    fn append_from_threads(root: &Path, writer: &str, threads: usize) {
        let handles: Vec<_> = (0..threads)
            .map(|thread| {
                let store = LocalStore::new(root).unwrap();
                let writer = writer.to_string();
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    runtime.block_on(async {
                        for n in 0..APPENDS_PER_THREAD {
                            append(&store, JOURNAL_KEY, &format!("{writer}-{thread}-{n}")).await;
                        }
                    });
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
    }

    fn expected_entries(writer: &str, threads: usize) -> Vec<String> {
        (0..threads)
            .flat_map(|thread| {
                (0..APPENDS_PER_THREAD).map(move |n| format!("{writer}-{thread}-{n}"))
            })
            .collect()
    }

    /// The writer half of `threads_and_a_child_process_lose_no_update`; does nothing when
    /// run as an ordinary test.
    #[test]
    fn cross_process_child() {
        let (Ok(root), Ok(ready)) = (
            std::env::var(CHILD_ROOT_ENV),
            std::env::var(CHILD_READY_ENV),
        ) else {
            return;
        };
        fs::write(ready, b"ready").unwrap();
        append_from_threads(Path::new(&root), "child", CHILD_THREADS);
    }

    #[test]
    fn threads_and_a_child_process_lose_no_update() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("bucket");
        let ready = dir.path().join("child-ready");
        let store = LocalStore::new(&root).unwrap();

        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "storage::local::tests::cross_process_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ROOT_ENV, &root)
            .env(CHILD_READY_ENV, &ready)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Start only once the child is writing, so the two processes really contend.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ready.exists() {
            assert!(Instant::now() < deadline, "the child process never started");
            std::thread::sleep(Duration::from_millis(5));
        }
        append_from_threads(&root, "parent", PARENT_THREADS);
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "child process failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("1 passed"),
            "the child ran no test: {}",
            String::from_utf8_lossy(&output.stdout)
        );

        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let got = runtime.block_on(store.get(JOURNAL_KEY, None)).unwrap();
        let entries: Vec<String> = serde_json::from_slice(&got.bytes).unwrap();
        let expected: BTreeSet<String> = expected_entries("parent", PARENT_THREADS)
            .into_iter()
            .chain(expected_entries("child", CHILD_THREADS))
            .collect();
        assert_eq!(
            entries.len(),
            expected.len(),
            "appends were lost or doubled"
        );
        assert_eq!(entries.iter().cloned().collect::<BTreeSet<_>>(), expected);
        let versions = runtime.block_on(store.list_versions(JOURNAL_KEY)).unwrap();
        assert_eq!(versions.len(), expected.len(), "one version per append");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_tasks_on_one_key_lose_no_update() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        let tasks: Vec<_> = (0..32)
            .map(|task| {
                let store = store.clone();
                tokio::spawn(async move {
                    for n in 0..5 {
                        append(&store, "tasks/journal.json", &format!("{task}-{n}")).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let got = store.get("tasks/journal.json", None).await.unwrap();
        let entries: BTreeSet<String> = serde_json::from_slice(&got.bytes).unwrap();
        assert_eq!(entries.len(), 32 * 5);
    }

    #[tokio::test]
    async fn leftovers_of_a_crashed_write_are_ignored_then_swept() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        let key = "crash/object.bin";
        let previous = store
            .put(key, Bytes::from_static(b"previous"), PutOptions::default())
            .await
            .unwrap();

        // A writer killed mid-put: half-written bytes, bytes renamed in place but never
        // committed, and a torn head that was never renamed.
        let paths = store.key_paths(key);
        let orphan = paths.data("00000000000000000001-00000000deadbeef");
        let torn = paths.dir.join(".tmp-4242-00000000feedface");
        fs::write(&orphan, b"next bytes").unwrap();
        fs::write(&torn, br#"{"key": "crash/object.bin", "versions": [{"#).unwrap();
        // And what a writer of the earlier layout left in `data/`.
        fs::create_dir_all(paths.legacy_data_dir()).unwrap();
        let half = paths.legacy_data_dir().join(".tmp-4242-00000000deadbeef");
        let legacy_orphan = paths
            .legacy_data_dir()
            .join("00000000000000000002-00000000deadbeef");
        fs::write(&half, b"prev").unwrap();
        fs::write(&legacy_orphan, b"next bytes").unwrap();
        // A key whose very first write died before its head existed.
        let stillborn = store.key_paths("crash/stillborn.bin");
        fs::create_dir_all(&stillborn.dir).unwrap();
        fs::write(
            stillborn.data("00000000000000000001-0000000000000001"),
            b"x",
        )
        .unwrap();

        let got = store.get(key, None).await.unwrap();
        assert_eq!(got.bytes.as_ref(), b"previous");
        assert_eq!(got.meta.version_id, previous.version_id);
        let listed: Vec<String> = store
            .list("crash/")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert_eq!(listed, [key]);
        assert_eq!(store.list_versions(key).await.unwrap().len(), 1);
        assert!(
            store
                .get("crash/stillborn.bin", None)
                .await
                .unwrap_err()
                .is_not_found()
        );
        assert!(
            store
                .list_versions("crash/stillborn.bin")
                .await
                .unwrap()
                .is_empty()
        );

        let next = store
            .put(key, Bytes::from_static(b"next"), PutOptions::default())
            .await
            .unwrap();
        for leftover in [&half, &orphan, &torn, &legacy_orphan] {
            assert!(!leftover.exists(), "{} kept", leftover.display());
        }
        assert_eq!(
            store.get(key, None).await.unwrap().meta.version_id,
            next.version_id
        );
        let old = store
            .get(key, previous.version_id.as_deref())
            .await
            .unwrap();
        assert_eq!(old.bytes.as_ref(), b"previous");
    }

    #[tokio::test]
    async fn a_newest_version_whose_data_file_is_missing_never_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        let key = "stage/v1/a.parquet";
        let first = store
            .put(key, Bytes::from_static(b"first"), PutOptions::default())
            .await
            .unwrap();
        let second = store
            .put(key, Bytes::from_static(b"second"), PutOptions::default())
            .await
            .unwrap();
        // A power cut kept the rename of the head but not the entry of the data it names.
        let paths = store.key_paths(key);
        fs::remove_file(paths.data(second.version_id.as_deref().unwrap())).unwrap();
        let reopened = LocalStore::new(store.root()).unwrap();
        let got = reopened.get(key, None).await.unwrap();
        assert_eq!(
            (got.bytes.as_ref(), &got.meta.version_id),
            (&b"first"[..], &first.version_id)
        );
        assert_eq!(
            reopened.head(key, None).await.unwrap().version_id,
            first.version_id
        );
        assert_eq!(
            reopened.list("stage/").await.unwrap()[0].version_id,
            first.version_id
        );
        assert!(
            reopened
                .get(key, second.version_id.as_deref())
                .await
                .unwrap_err()
                .is_not_found()
        );
        // A conditional write sees the version that committed, and its head drops the other.
        let third = reopened
            .put(
                key,
                Bytes::from_static(b"third"),
                PutOptions {
                    mode: PutMode::IfMatch(first.etag.clone()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let versions: Vec<_> = reopened
            .list_versions(key)
            .await
            .unwrap()
            .into_iter()
            .map(|v| v.version_id)
            .collect();
        assert_eq!(
            versions,
            [third.version_id.unwrap(), first.version_id.unwrap()]
        );

        // A key whose only version never committed reads as never written.
        let lone = "stage/v1/b.parquet";
        let put = reopened
            .put(lone, Bytes::from_static(b"b"), PutOptions::default())
            .await
            .unwrap();
        fs::remove_file(
            reopened
                .key_paths(lone)
                .data(put.version_id.as_deref().unwrap()),
        )
        .unwrap();
        assert!(reopened.get(lone, None).await.unwrap_err().is_not_found());
        assert!(reopened.list_versions(lone).await.unwrap().is_empty());
        assert_eq!(reopened.list("stage/").await.unwrap().len(), 1);
        let absent = PutOptions {
            mode: PutMode::IfAbsent,
            ..Default::default()
        };
        reopened
            .put(lone, Bytes::from_static(b"b2"), absent)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn versions_in_the_earlier_layout_are_read_copied_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        let key = "stage/v1/old.parquet";
        let old = store
            .put(key, Bytes::from_static(b"old bytes"), PutOptions::default())
            .await
            .unwrap();
        let old_id = old.version_id.clone().unwrap();
        // Move the version to where the earlier layout kept it.
        let paths = store.key_paths(key);
        fs::create_dir_all(paths.legacy_data_dir()).unwrap();
        let legacy = paths.legacy_data_dir().join(&old_id);
        fs::rename(paths.data(&old_id), &legacy).unwrap();

        let reopened = LocalStore::new(store.root()).unwrap();
        assert_eq!(
            reopened.get(key, None).await.unwrap().bytes.as_ref(),
            b"old bytes"
        );
        assert_eq!(reopened.list("stage/").await.unwrap().len(), 1);
        let copied = reopened
            .copy(key, None, "stage/v1/copy.parquet")
            .await
            .unwrap();
        assert_eq!(
            reopened
                .get("stage/v1/copy.parquet", copied.version_id.as_deref())
                .await
                .unwrap()
                .bytes
                .as_ref(),
            b"old bytes"
        );
        let new = reopened
            .put(key, Bytes::from_static(b"new bytes"), PutOptions::default())
            .await
            .unwrap();
        assert!(paths.data(new.version_id.as_deref().unwrap()).is_file());
        assert!(legacy.is_file(), "a referenced version in data/ was swept");
        let fresh = LocalStore::new(store.root()).unwrap();
        assert_eq!(
            fresh.get(key, Some(&old_id)).await.unwrap().bytes.as_ref(),
            b"old bytes"
        );
    }

    #[tokio::test]
    async fn a_key_directory_holds_its_lock_head_and_versions_side_by_side() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        let key = "stage/v1/side.parquet";
        let mut expected = vec![HEAD_FILE.to_string(), LOCK_FILE.to_string()];
        for body in [&b"one"[..], b"two"] {
            let put = store
                .put(key, Bytes::copy_from_slice(body), PutOptions::default())
                .await
                .unwrap();
            expected.push(format!("v-{}", put.version_id.unwrap()));
        }
        let mut names: Vec<String> = fs::read_dir(&store.key_paths(key).dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        expected.sort();
        assert_eq!(names, expected);
    }

    #[tokio::test]
    async fn a_lease_whose_unsynced_data_a_power_cut_tore_reads_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        let key = "stage/v1/_leases/a.parquet.lease";
        let put = store
            .put(
                key,
                Bytes::from_static(b"{\"owner\":\"a\"}"),
                PutOptions::default(),
            )
            .await
            .unwrap();
        // The head survived (its temp file is fsynced) but its unsynced data did not.
        fs::write(
            store
                .key_paths(key)
                .data(put.version_id.as_deref().unwrap()),
            b"",
        )
        .unwrap();
        assert!(store.get(key, None).await.unwrap_err().is_not_found());
        assert!(store.list("stage/").await.unwrap().is_empty());
        let retaken = PutOptions {
            mode: PutMode::IfAbsent,
            ..Default::default()
        };
        store
            .put(key, Bytes::from_static(b"b"), retaken)
            .await
            .unwrap();
        assert_eq!(store.get(key, None).await.unwrap().bytes.as_ref(), b"b");
        // A durable key with the same damage is an error, never silently absent.
        let data = "stage/v1/a.parquet";
        let put = store
            .put(data, Bytes::from_static(b"bytes"), PutOptions::default())
            .await
            .unwrap();
        fs::write(
            store
                .key_paths(data)
                .data(put.version_id.as_deref().unwrap()),
            b"",
        )
        .unwrap();
        assert!(matches!(
            store.get(data, None).await.unwrap_err(),
            StorageError::Other { .. }
        ));
    }

    #[tokio::test]
    async fn a_reopened_store_sees_the_same_objects_versions_and_tags() {
        let dir = tempfile::tempdir().unwrap();
        let metadata: Metadata = [("rows".to_string(), "7".to_string())].into();
        let tags: Tags = [("cachefill-status".to_string(), "valid".to_string())].into();
        let (listed, versions, first) = {
            let store = store_in(&dir);
            let first = store
                .put(
                    "reopen/a.bin",
                    Bytes::from_static(b"first"),
                    PutOptions {
                        metadata: metadata.clone(),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            store
                .put(
                    "reopen/a.bin",
                    Bytes::from_static(b"second"),
                    PutOptions::default(),
                )
                .await
                .unwrap();
            store
                .put_tags("reopen/a.bin", first.version_id.as_deref(), &tags)
                .await
                .unwrap();
            store
                .put(
                    "reopen/b.bin",
                    Bytes::from_static(b"b"),
                    PutOptions::default(),
                )
                .await
                .unwrap();
            store.delete("reopen/b.bin").await.unwrap();
            (
                store.list("reopen/").await.unwrap(),
                store.list_versions("reopen/a.bin").await.unwrap(),
                first,
            )
        };

        let store = store_in(&dir);
        assert_eq!(store.list("reopen/").await.unwrap(), listed);
        assert_eq!(store.list_versions("reopen/a.bin").await.unwrap(), versions);
        let old = store
            .get("reopen/a.bin", first.version_id.as_deref())
            .await
            .unwrap();
        assert_eq!(old.bytes.as_ref(), b"first");
        assert_eq!(old.meta.metadata, metadata);
        assert_eq!(
            store
                .get_tags("reopen/a.bin", first.version_id.as_deref())
                .await
                .unwrap(),
            tags
        );
        assert_eq!(
            store
                .get("reopen/a.bin", None)
                .await
                .unwrap()
                .bytes
                .as_ref(),
            b"second"
        );
        let b_versions = store.list_versions("reopen/b.bin").await.unwrap();
        assert!(b_versions[0].is_delete_marker && b_versions.len() == 2);
    }

    #[tokio::test]
    async fn invalid_keys_are_rejected_by_every_call() {
        fn invalid<T: std::fmt::Debug>(result: Result<T>, what: &str, key: &str) {
            assert!(
                matches!(result, Err(StorageError::InvalidKey { .. })),
                "{what} of {key:?}: {result:?}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        store
            .put("ok.bin", Bytes::from_static(b"ok"), PutOptions::default())
            .await
            .unwrap();
        let long = "k".repeat(1025);
        let tags = Tags::new();
        for key in [
            "",
            "/abs",
            "a//b",
            "a/../b",
            "./a",
            "a/\u{0}b",
            "trailing/",
            &long,
        ] {
            invalid(store.get(key, None).await, "get", key);
            invalid(store.head(key, None).await, "head", key);
            invalid(
                store.put(key, Bytes::new(), PutOptions::default()).await,
                "put",
                key,
            );
            invalid(store.copy("ok.bin", None, key).await, "copy to", key);
            invalid(store.copy(key, None, "ok.bin").await, "copy from", key);
            invalid(store.delete(key).await, "delete", key);
            invalid(store.list_versions(key).await, "list_versions", key);
            invalid(store.get_tags(key, None).await, "get_tags", key);
            invalid(store.put_tags(key, None, &tags).await, "put_tags", key);
        }
        assert_eq!(
            store.list("").await.unwrap().len(),
            1,
            "nothing else was written"
        );
    }

    #[tokio::test]
    async fn hostile_version_ids_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        let key = "versions/object.bin";
        let put = store
            .put(key, Bytes::from_static(b"x"), PutOptions::default())
            .await
            .unwrap();
        for version in ["", "..", "../../head.json", "/etc/passwd", "null", "lock"] {
            assert!(
                store
                    .get(key, Some(version))
                    .await
                    .unwrap_err()
                    .is_not_found(),
                "{version:?}"
            );
            assert!(
                store
                    .head(key, Some(version))
                    .await
                    .unwrap_err()
                    .is_not_found()
            );
            assert!(
                store
                    .get_tags(key, Some(version))
                    .await
                    .unwrap_err()
                    .is_not_found()
            );
            let tags = Tags::new();
            assert!(
                store
                    .put_tags(key, Some(version), &tags)
                    .await
                    .unwrap_err()
                    .is_not_found()
            );
        }
        // A delete marker's id names no object.
        store.delete(key).await.unwrap();
        let marker = store.list_versions(key).await.unwrap()[0]
            .version_id
            .clone();
        assert!(
            store
                .get(key, Some(&marker))
                .await
                .unwrap_err()
                .is_not_found()
        );
        assert!(
            store
                .get_tags(key, Some(&marker))
                .await
                .unwrap_err()
                .is_not_found()
        );
        assert!(
            store
                .copy(key, Some(&marker), "elsewhere.bin")
                .await
                .unwrap_err()
                .is_not_found()
        );
        assert!(store.get(key, put.version_id.as_deref()).await.is_ok());
    }

    #[tokio::test]
    async fn versions_lately_written_or_read_are_served_from_memory_by_every_clone() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        let on_disk = |key: &str, version: &str| store.key_paths(key).data(version);
        let large = Bytes::from(vec![7u8; Recent::MIN_BYTES]);
        let small = Bytes::from_static(b"a lease or a manifest");
        let mut versions = Vec::new();
        for (key, body) in [("big/object.bin", &large), ("small/object.bin", &small)] {
            let put = store
                .put(key, body.clone(), PutOptions::default())
                .await
                .unwrap();
            versions.push(put.version_id.unwrap());
        }
        // The bytes on disk changed behind the store's back (same size, so nothing else
        // tells): only a version the memo keeps is answered without reading them.
        for (key, version) in [
            ("big/object.bin", &versions[0]),
            ("small/object.bin", &versions[1]),
        ] {
            let path = on_disk(key, version);
            let len = fs::metadata(&path).unwrap().len() as usize;
            fs::write(&path, vec![b'x'; len]).unwrap();
        }
        let clone = store.clone();
        assert_eq!(
            clone.get("big/object.bin", None).await.unwrap().bytes,
            large
        );
        assert_eq!(
            store
                .get("big/object.bin", Some(&versions[0]))
                .await
                .unwrap()
                .bytes,
            large
        );
        assert_ne!(
            store.get("small/object.bin", None).await.unwrap().bytes,
            small
        );
        // Another store (another process) reads the disk.
        let other = store_in(&dir);
        let read = other.get("big/object.bin", None).await.unwrap().bytes;
        assert_ne!(read, large);
        // What it read, it keeps: the next get is answered from memory.
        let path = on_disk("big/object.bin", &versions[0]);
        fs::write(&path, vec![b'y'; large.len()]).unwrap();
        assert_eq!(other.get("big/object.bin", None).await.unwrap().bytes, read);
        // A newer version is a new key in the memo; a delete hides every version.
        let newer = Bytes::from(vec![8u8; Recent::MIN_BYTES]);
        store
            .put("big/object.bin", newer.clone(), PutOptions::default())
            .await
            .unwrap();
        assert_eq!(
            store.get("big/object.bin", None).await.unwrap().bytes,
            newer
        );
        store.delete("big/object.bin").await.unwrap();
        assert!(matches!(
            store.get("big/object.bin", None).await,
            Err(StorageError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn only_a_version_kept_as_written_is_answered_with_its_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        let body = Bytes::from(vec![5u8; Recent::MIN_BYTES]);
        let sha256 = crate::codec::sha256_hex(&body);
        store
            .put("big/object.bin", body.clone(), PutOptions::default())
            .await
            .unwrap();
        let got = store.get("big/object.bin", None).await.unwrap();
        assert_eq!(got.sha256.as_deref(), Some(sha256.as_str()));
        assert_eq!(got.sha256_hex(), sha256);
        // Read from disk, by another store and then from its memory: the bytes are whatever
        // the disk held, so no sha256 comes with them.
        let other = store_in(&dir);
        for _ in 0..2 {
            let got = other.get("big/object.bin", None).await.unwrap();
            assert_eq!((got.bytes, got.sha256), (body.clone(), None));
        }
        // Small bodies are not kept, so they are never answered with one either.
        store
            .put(
                "small/object.bin",
                Bytes::from_static(b"small"),
                PutOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(
            store.get("small/object.bin", None).await.unwrap().sha256,
            None
        );
    }

    #[tokio::test]
    async fn etags_and_version_ids_have_their_documented_shape() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        let mut ids = Vec::new();
        for n in 0..20 {
            let put = store
                .put(
                    "shape/object.bin",
                    Bytes::from(format!("{n}")),
                    PutOptions::default(),
                )
                .await
                .unwrap();
            ids.push(put.version_id.unwrap());
        }
        let put = store
            .put(
                "shape/hello",
                Bytes::from_static(b"hello"),
                PutOptions::default(),
            )
            .await
            .unwrap();
        // sha256("hello") = 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824
        assert_eq!(put.etag, "\"2cf24dba5fb0a30e26e83b2ac5b9e29e\"");
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "version ids sort by creation");
        assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len());
        let listed: Vec<String> = store
            .list_versions("shape/object.bin")
            .await
            .unwrap()
            .into_iter()
            .rev()
            .map(|v| v.version_id)
            .collect();
        assert_eq!(listed, ids);
    }

    #[test]
    fn works_outside_a_tokio_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        futures::executor::block_on(async {
            store
                .put(
                    "plain/object.bin",
                    Bytes::from_static(b"plain"),
                    PutOptions::default(),
                )
                .await
                .unwrap();
            let got = store.get("plain/object.bin", None).await.unwrap();
            assert_eq!(got.bytes.as_ref(), b"plain");
        });
    }

    #[tokio::test]
    async fn a_corrupt_head_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(&dir);
        let key = "corrupt/object.bin";
        store
            .put(key, Bytes::from_static(b"x"), PutOptions::default())
            .await
            .unwrap();
        let head = store.key_paths(key).head();
        fs::write(&head, b"{ not json").unwrap();
        for err in [
            store.get(key, None).await.unwrap_err(),
            store
                .put(key, Bytes::new(), PutOptions::default())
                .await
                .unwrap_err(),
            store.list("").await.unwrap_err(),
        ] {
            match err {
                StorageError::Other { message, .. } => {
                    assert!(message.contains("head.json"), "{message}")
                }
                other => panic!("expected Other, got {other:?}"),
            }
        }
    }
}
