//! Files replaced atomically and durably: the one way the local directory store and the
//! client's local cache write a file. A reader sees the old file or the new one, never part
//! of either, and after a crash the rename is either done or not.
//!
//! The steps: write a temporary file in the target's directory (created exclusively), fsync
//! it, rename it over the target, fsync the directory. Writers that publish several files as
//! one change write every temporary first ([`write_temp`]) and rename them together
//! ([`publish`]) under their own lock.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// Write `target` atomically through a temporary named `temp_name` in the same directory.
pub fn write(
    target: &Path,
    temp_name: &str,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let temp = write_temp(target, temp_name, fill)?;
    publish(&temp, target).inspect_err(|_| {
        let _ = fs::remove_file(&temp);
    })
}

/// Create `temp_name` beside `target` (creating the directory), fill it and fsync it; on
/// failure nothing is left behind.
pub fn write_temp(
    target: &Path,
    temp_name: &str,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<PathBuf> {
    let dir = directory_of(target);
    fs::create_dir_all(dir)?;
    let temp = dir.join(temp_name);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        fill(&mut file)?;
        file.sync_all()
    })();
    match written {
        Ok(()) => Ok(temp),
        Err(e) => {
            let _ = fs::remove_file(&temp);
            Err(e)
        }
    }
}

/// Rename a temporary written by [`write_temp`] over `target` and make the rename durable.
pub fn publish(temp: &Path, target: &Path) -> io::Result<()> {
    fs::rename(temp, target)?;
    sync_dir(directory_of(target))
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
    File::open(dir)?.sync_all()
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
}
