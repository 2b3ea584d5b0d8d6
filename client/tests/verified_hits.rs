//! A verified local file is served again, in this process or a new one, without reading its
//! body; any sign that the file changed (content, mtime, a new inode) re-hashes it, and a
//! file that no longer matches its sidecar is never served.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use cachefill_client::local_cache::{LocalCache, Receipt, SidecarState};
use cachefill_core::codec::{self, BatchFacts, Sidecar};
use chrono::Utc;

const REL: &str = "synthetic/stock/day/ohlc/stock_AAPL_day_ohlc.parquet";
const BODY: &[u8] = b"stands in for a parquet: it is hashed all the same";

/// A cache holding `BODY` under `REL` with a matching sidecar, published (so verified).
fn verified_cache(root: &Path) -> PathBuf {
    let sha = codec::sha256_hex(BODY);
    let sidecar = Sidecar::new(&BatchFacts::default(), &sha, Utc::now()).to_json();
    let receipt = Receipt {
        key: format!("v1/{REL}"),
        version_id: None,
        etag: None,
        sha256: sha,
        fetched_at: Utc::now(),
    };
    let cache = LocalCache::new(root);
    let path = cache
        .publish(
            REL,
            &Bytes::from_static(BODY),
            None,
            sidecar.as_bytes(),
            &receipt,
        )
        .unwrap();
    assert!(cache.read(REL).unwrap().unwrap().is_consistent());
    // The receipt names the bytes published: they are remembered as verified, not hashed.
    assert_eq!(cache.bytes_hashed(), 0);
    path
}

fn records(root: &Path) -> Vec<PathBuf> {
    match fs::read_dir(root.join(".cachefill-client/verified")) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

fn modified(path: &Path) -> SystemTime {
    fs::metadata(path).unwrap().modified().unwrap()
}

#[test]
fn a_verified_file_is_served_again_without_reading_its_body() {
    let dir = tempfile::tempdir().unwrap();
    verified_cache(dir.path());
    assert_eq!(records(dir.path()).len(), 1);
    // A new instance is what the next `cachefill get` process starts with.
    for cache in [LocalCache::new(dir.path()), LocalCache::new(dir.path())] {
        let entry = cache.read(REL).unwrap().unwrap();
        assert!(entry.is_consistent());
        assert_eq!(entry.sha256, codec::sha256_hex(BODY));
        assert!(entry.receipt.is_some());
        assert_eq!(entry.size, BODY.len() as u64);
        cache.read(REL).unwrap().unwrap();
        assert_eq!(cache.bytes_hashed(), 0);
    }
    // Nothing of ours lands in lumibot's folder.
    let beside: Vec<String> = fs::read_dir(dir.path().join("synthetic/stock/day/ohlc"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        beside
            .iter()
            .all(|n| n.starts_with("stock_AAPL_day_ohlc.parquet")),
        "{beside:?}"
    );
}

#[test]
fn a_file_modified_after_verification_is_rehashed_and_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let path = verified_cache(dir.path());
    let before = modified(&path);
    fs::write(&path, b"lumibot rewrote the parquet, not its sidecar").unwrap();
    let file = fs::File::options().write(true).open(&path).unwrap();
    file.set_modified(before + Duration::from_secs(5)).unwrap();
    drop(file);
    let cache = LocalCache::new(dir.path());
    let entry = cache.read(REL).unwrap().unwrap();
    assert!(cache.bytes_hashed() > 0);
    assert!(matches!(entry.sidecar_state, SidecarState::Mismatch { .. }));
    assert!(entry.facts().is_none());
    assert!(entry.receipt.is_none());
    // Still never served on a later read: the record now describes the changed file.
    let again = LocalCache::new(dir.path());
    assert!(!again.read(REL).unwrap().unwrap().is_consistent());
}

#[test]
fn a_replaced_file_with_the_same_size_and_mtime_is_rehashed() {
    let dir = tempfile::tempdir().unwrap();
    let path = verified_cache(dir.path());
    let before = modified(&path);
    // Same length, other bytes, renamed over the name (a new inode), mtime set back.
    let mut other = BODY.to_vec();
    other[0] ^= 0xff;
    let temp = path.with_file_name(".replacement");
    fs::write(&temp, &other).unwrap();
    let file = fs::File::options().write(true).open(&temp).unwrap();
    file.set_modified(before).unwrap();
    drop(file);
    fs::rename(&temp, &path).unwrap();
    assert_eq!(modified(&path), before);
    let cache = LocalCache::new(dir.path());
    let entry = cache.read(REL).unwrap().unwrap();
    assert_eq!(cache.bytes_hashed(), BODY.len() as u64);
    assert_eq!(entry.sha256, codec::sha256_hex(&other));
    assert!(!entry.is_consistent());
}

#[test]
fn a_missing_or_corrupt_record_means_a_rehash() {
    let dir = tempfile::tempdir().unwrap();
    verified_cache(dir.path());
    let [record] = records(dir.path()).try_into().unwrap();
    for damage in [Some(&b"{ not a record"[..]), Some(b""), None] {
        match damage {
            Some(bytes) => fs::write(&record, bytes).unwrap(),
            None => fs::remove_file(&record).unwrap(),
        }
        let cache = LocalCache::new(dir.path());
        let entry = cache.read(REL).unwrap().unwrap();
        assert_eq!(cache.bytes_hashed(), BODY.len() as u64, "{damage:?}");
        assert!(entry.is_consistent());
        // The hash rewrote the record: the next process reads no body.
        let next = LocalCache::new(dir.path());
        assert!(next.read(REL).unwrap().unwrap().is_consistent());
        assert_eq!(next.bytes_hashed(), 0, "{damage:?}");
    }
}

#[test]
fn a_sidecar_naming_another_hash_rehashes_and_removing_the_file_drops_its_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = verified_cache(dir.path());
    let sidecar = Sidecar::new(&BatchFacts::default(), &"0".repeat(64), Utc::now()).to_json();
    let mut side = path.clone().into_os_string();
    side.push(".meta.json");
    fs::write(&side, sidecar).unwrap();
    let cache = LocalCache::new(dir.path());
    assert!(!cache.read(REL).unwrap().unwrap().is_consistent());
    assert_eq!(cache.bytes_hashed(), BODY.len() as u64);
    assert!(cache.remove(REL).unwrap());
    assert!(records(dir.path()).is_empty());
    assert!(cache.read(REL).unwrap().is_none());
}
