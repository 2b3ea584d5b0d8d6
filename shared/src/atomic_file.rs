//! Files replaced atomically and durably: the one way the local directory store and the
//! client's local cache write a file. A reader sees the old file or the new one, never part
//! of either, and after a crash the rename is either done or not.
//!
//! The steps: write a temporary file in the target's directory (created exclusively), fsync
//! it, rename it over the target, fsync the directory. Writers that publish several files as
//! one change write every temporary first ([`write_temp`]) and rename them together
//! ([`publish`]) under their own lock.
//!
//! Every fsync the workspace makes goes through [`sync_file`] or [`sync_dir`], which count
//! them ([`syncs`]), so a test can hold the number a fill costs to a stated floor.
//!
//! A writer whose file need not survive a power cut (only a crash of the process) passes
//! [`Durability::ProcessCrash`] to [`write_with`]: the temp file is still fsynced before the
//! rename, so the target is never torn, but the directory is not, so after a power cut the
//! target may be the old file again. A record that its reader checks and can do without
//! (the client's receipts) passes [`Durability::Rebuildable`]: nothing is fsynced.
//!
//! Several files published into one directory as one change ([`publish_together`]) share
//! one directory fsync.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Every fsync (file or directory) made through this module since the process started.
static SYNCS: AtomicU64 = AtomicU64::new(0);

/// How many fsyncs (of files and directories) this process has made so far.
pub fn syncs() -> u64 {
    SYNCS.load(Ordering::Relaxed)
}

/// What a write must survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// A power cut or kernel crash: the bytes and the rename are fsynced before returning.
    PowerLoss,
    /// Only a crash of the writing process: the page cache holds the write. [`write_with`]
    /// skips the directory fsync (a power cut may undo the rename, never tear the file);
    /// [`create_filled`] skips the file's fsync (a power cut may leave it torn or missing).
    ProcessCrash,
    /// Nothing beyond the process: neither the file nor the rename is fsynced, so after a
    /// power cut the target may be old, missing or torn. Only for records whose reader
    /// checks them and treats one that fails its check as absent.
    Rebuildable,
}

/// Fsyncs `file`'s bytes and metadata.
pub fn sync_file(file: &File) -> io::Result<()> {
    SYNCS.fetch_add(1, Ordering::Relaxed);
    file.sync_all()
}

/// Write `target` atomically through a temporary named `temp_name` in the same directory.
pub fn write(
    target: &Path,
    temp_name: &str,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    write_with(target, temp_name, Durability::PowerLoss, fill)
}

/// [`write`] with the durability the caller's file needs.
pub fn write_with(
    target: &Path,
    temp_name: &str,
    durability: Durability,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    // The temp file is fsynced unless the target may be torn: renaming unsynced bytes into
    // place could leave a torn target after a power cut.
    let file_durability = match durability {
        Durability::Rebuildable => Durability::Rebuildable,
        Durability::PowerLoss | Durability::ProcessCrash => Durability::PowerLoss,
    };
    let temp = create_filled(&directory_of(target).join(temp_name), file_durability, fill)?;
    let renamed = fs::rename(&temp, target).and_then(|()| match durability {
        Durability::PowerLoss => sync_dir(directory_of(target)),
        Durability::ProcessCrash | Durability::Rebuildable => Ok(()),
    });
    renamed.inspect_err(|_| {
        let _ = fs::remove_file(&temp);
    })
}

/// Creates `path` exclusively (creating its directory), fills it and, for
/// [`Durability::PowerLoss`], fsyncs it; on failure nothing is left behind. The caller makes
/// the new directory entry durable ([`sync_dir`]) when it needs to: a file that nothing
/// references until a later commit point needs its entry durable only before that commit.
pub fn create_filled(
    path: &Path,
    durability: Durability,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<PathBuf> {
    fs::create_dir_all(directory_of(path))?;
    let written = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
        fill(&mut file)?;
        match durability {
            Durability::PowerLoss => sync_file(&file),
            Durability::ProcessCrash | Durability::Rebuildable => Ok(()),
        }
    })();
    match written {
        Ok(()) => Ok(path.to_path_buf()),
        Err(e) => {
            let _ = fs::remove_file(path);
            Err(e)
        }
    }
}

/// Create `temp_name` beside `target` (creating the directory), fill it and fsync it; on
/// failure nothing is left behind.
pub fn write_temp(
    target: &Path,
    temp_name: &str,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<PathBuf> {
    create_filled(
        &directory_of(target).join(temp_name),
        Durability::PowerLoss,
        fill,
    )
}

/// Rename a temporary written by [`write_temp`] over `target` and make the rename durable.
pub fn publish(temp: &Path, target: &Path) -> io::Result<()> {
    publish_together(&[(temp, target)])
}

/// Rename each temporary written by [`write_temp`] over its target, in order, then make the
/// renames durable with one fsync per directory. A power cut before it returns may keep some
/// of the renames and not others (each target is the old file or the new one, never torn),
/// as publishing them one by one would; readers of such a set check it (a sidecar names its
/// parquet's checksum). A failed rename stops there: the earlier ones stay, the later
/// temporaries are the caller's to remove.
pub fn publish_together(files: &[(&Path, &Path)]) -> io::Result<()> {
    let mut dirs: Vec<&Path> = Vec::new();
    for (temp, target) in files {
        fs::rename(temp, target)?;
        let dir = directory_of(target);
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs.into_iter().try_for_each(sync_dir)
}

fn directory_of(target: &Path) -> &Path {
    match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Makes renames and creations inside `dir` durable.
#[cfg(unix)]
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    sync_file(&File::open(dir)?)
}

/// Windows cannot open a directory as a file; its renames are durable through the journal.
#[cfg(not(unix))]
pub fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn a_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("sub").join("file.json");
        write(&target, ".tmp-1", |f| f.write_all(b"one")).unwrap();
        write(&target, ".tmp-2", |f| f.write_all(b"two")).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(target.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["file.json"]);
    }

    #[test]
    fn a_failed_fill_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("file");
        write(&target, ".tmp-1", |f| f.write_all(b"old")).unwrap();
        let error = write(&target, ".tmp-2", |_| Err(io::Error::other("disk full"))).unwrap_err();
        assert_eq!(error.to_string(), "disk full");
        assert_eq!(fs::read(&target).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn process_crash_writes_land_like_durable_ones() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("file");
        // Other tests in this binary may sync meanwhile, so only the lower bound is exact
        // here; shared/tests/fsync_floor.rs holds a whole fill in a process of its own.
        let before = syncs();
        write(&target, ".tmp-1", |f| f.write_all(b"one")).unwrap();
        assert!(syncs() - before >= 2, "file and directory fsynced");
        write_with(&target, ".tmp-2", Durability::ProcessCrash, |f| {
            f.write_all(b"two")
        })
        .unwrap();
        let unsynced = create_filled(&dir.path().join("new"), Durability::ProcessCrash, |f| {
            f.write_all(b"three")
        })
        .unwrap();
        assert_eq!(fs::read(&unsynced).unwrap(), b"three");
        fs::remove_file(&unsynced).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn rebuildable_writes_and_files_published_together_land_like_durable_ones() {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("record");
        write_with(&record, ".tmp-1", Durability::Rebuildable, |f| {
            f.write_all(b"one")
        })
        .unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let temp_a = write_temp(&a, ".tmp-a", |f| f.write_all(b"A")).unwrap();
        let temp_b = write_temp(&b, ".tmp-b", |f| f.write_all(b"B")).unwrap();
        publish_together(&[(&temp_a, &a), (&temp_b, &b)]).unwrap();
        assert_eq!(fs::read(&record).unwrap(), b"one");
        assert_eq!(
            (fs::read(&a).unwrap(), fs::read(&b).unwrap()),
            (b"A".to_vec(), b"B".to_vec())
        );
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            3,
            "no temporaries left"
        );
    }
}
