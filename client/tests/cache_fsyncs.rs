//! The fsyncs of the client's local cache: publishing a downloaded file makes its parquet,
//! sidecar and lumibot's two markers durable with one fsync each and one for their shared
//! directory; the receipt and the record of a verified file are checked by their reader and
//! are not fsynced (docs/ARCHITECTURE.md §11). One test in this binary, so no other test's
//! writes are counted.

use bytes::Bytes;
use cachefill_client::local_cache::{LocalCache, Receipt};
use cachefill_core::atomic_file;
use cachefill_core::codec::{self, BatchFacts, Sidecar};
use chrono::Utc;

const REL: &str = "synthetic/stock/day/ohlc/stock_AAPL_day_ohlc.parquet";

/// 4 temporaries (parquet, sidecar, the markers of both) + 1 directory.
const PUBLISH_FSYNCS: u64 = 5;

#[test]
fn a_publish_makes_one_fsync_per_file_and_one_for_their_directory_and_a_receipt_none() {
    let dir = tempfile::tempdir().unwrap();
    let cache = LocalCache::new(dir.path());
    let body = Bytes::from_static(b"not parquet, but hashed all the same");
    let sha256 = codec::sha256_hex(&body);
    let sidecar = Sidecar::new(&BatchFacts::default(), &sha256, Utc::now()).to_json();
    let receipt = Receipt {
        key: format!("v1/{REL}"),
        version_id: Some("v-1".into()),
        etag: None,
        sha256: sha256.clone(),
        fetched_at: Utc::now(),
    };

    let before = atomic_file::syncs();
    cache
        .publish(REL, &body, None, sidecar.as_bytes(), &receipt)
        .unwrap();
    assert_eq!(atomic_file::syncs() - before, PUBLISH_FSYNCS);

    // A new process's cache finds the file recorded as verified (no hash), and the receipt
    // and the record written without an fsync are read back.
    let cache = LocalCache::new(dir.path());
    let entry = cache.read(REL).unwrap().unwrap();
    assert_eq!(cache.bytes_hashed(), 0);
    assert!(entry.is_consistent());
    assert_eq!(entry.receipt, Some(receipt));
    assert_eq!(entry.marker.as_deref(), Some(format!("v1/{REL}").as_str()));
}
