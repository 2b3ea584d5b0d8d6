//! The fsync floor of the local directory store: a first fill of one session on a
//! `LocalStore` makes no more fsyncs than its crash-safety argument needs
//! (docs/ARCHITECTURE.md §11). One test in this binary, so no other test's writes are
//! counted.

use std::time::Duration;

use cachefill_core::atomic_file;
use cachefill_core::clock::FixedClock;
use cachefill_core::dataset::Dataset;
use cachefill_core::fill::{EngineConfig, FillEngine, FillRequest, FillStatus};
use cachefill_core::keys::KeyLayout;
use cachefill_core::providers::synthetic::SyntheticProvider;
use cachefill_core::storage::ObjectStore;
use cachefill_core::storage::local::LocalStore;
use cachefill_core::validate::ValidatingStore;
use chrono::{NaiveDate, TimeZone, Utc};

const AAPL_MINUTE: &str = r#"{"provider":"synthetic","asset_type":"stock","symbol":"AAPL","timespan":"minute","datastyle":"ohlc"}"#;

/// The most fsyncs a first one-session fill may make. The fill publishes two objects that
/// must survive a power cut (the parquet and its sidecar), each into a key directory that
/// does not exist yet. Per such object:
///
/// - the new directories' entries: the shard's in `objects/`, the key directory's in its
///   shard: 2;
/// - 1 the version's data file, written beside the head;
/// - 1 the new `head.json` temp file, 1 the key directory after its rename (the commit,
///   which makes the data file's entry durable too).
///
/// So at most 2 × 5 = 10. The fill's lease is written twice (taken, then released by
/// expiring it) with one fsync each: its head's temp file, so a rename never exposes a torn
/// head; no data or directory fsync, since a lease cannot outlive its holder across a
/// reboot. 10 + 2 = 12. (Before this floor the same fill made 19; with each version's data
/// in a `data/` directory of its own, 16.)
const FSYNC_FLOOR: u64 = 12;

/// The same fill through the embedded default's validating store, which also records the
/// parquet in the manifest (a new durable key: ≤ 5), tags the parquet and the sidecar
/// valid (a head rewrite of an existing durable key each: 2 + 2) and writes two audit
/// records (new keys in `_audit/`: one fsync each, their head's temp file; no directory
/// fsync, so a power cut may lose them). 12 + 5 + 4 + 2 = 23. (Before: 38, then 29.)
const EMBEDDED_FSYNC_FLOOR: u64 = 23;

/// The engine's fill of one session of AAPL minute bars on a fresh store in `dir`, through
/// `wrap` (the plain store, or the embedded default's validating store); returns the fsyncs
/// it made and the keys it left.
fn fsyncs_of_a_first_fill<S: ObjectStore + 'static>(
    dir: &std::path::Path,
    wrap: impl FnOnce(LocalStore) -> S,
) -> (u64, Vec<String>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut config = EngineConfig::new(BUCKET, layout());
    config.lease_ttl = Duration::from_secs(30);
    let clock = std::sync::Arc::new(FixedClock::new(
        Utc.with_ymd_and_hms(2024, 7, 1, 12, 0, 0).unwrap(),
    ));
    let store = wrap(LocalStore::new(dir).unwrap());
    let engine = FillEngine::new(store, SyntheticProvider::new(), config).with_clock(clock);
    let session: NaiveDate = "2024-06-03".parse().unwrap();
    let request = FillRequest::new(
        Dataset::from_json(AAPL_MINUTE).unwrap(),
        session,
        session,
        false,
    )
    .unwrap();

    let before = atomic_file::syncs();
    let answer = runtime.block_on(engine.fill(&request)).unwrap();
    let fsyncs = atomic_file::syncs() - before;

    assert_eq!(answer.status, FillStatus::Filled);
    assert_eq!(answer.sessions_fetched, 1);
    // What the fill wrote is there to read, so the count is of a real fill.
    let keys: Vec<String> = runtime
        .block_on(LocalStore::new(dir).unwrap().list(""))
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert!(keys.contains(&answer.key), "{keys:?}");
    (fsyncs, keys)
}

fn layout() -> KeyLayout {
    KeyLayout::new("stage/cache", "v1")
}

const BUCKET: &str = "test-bucket";

// One test in this binary: the counter is process-wide, so the two fills run one after the
// other and nothing else syncs meanwhile.
#[test]
fn a_one_session_fill_on_the_local_store_stays_at_its_fsync_floor() {
    let plain = tempfile::tempdir().unwrap();
    let (fsyncs, keys) = fsyncs_of_a_first_fill(plain.path(), |store| store);
    println!("fsync-floor engine fsyncs={fsyncs} floor={FSYNC_FLOOR} keys={keys:?}");
    assert!(
        fsyncs <= FSYNC_FLOOR,
        "a one-session fill made {fsyncs} fsyncs, more than its floor of {FSYNC_FLOOR}"
    );

    let embedded = tempfile::tempdir().unwrap();
    let (fsyncs, keys) = fsyncs_of_a_first_fill(embedded.path(), |store| {
        ValidatingStore::new(store, BUCKET, layout())
    });
    println!("fsync-floor embedded fsyncs={fsyncs} floor={EMBEDDED_FSYNC_FLOOR} keys={keys:?}");
    assert!(
        keys.iter().any(|k| k.contains("/_manifest/"))
            && keys.iter().any(|k| k.contains("/_audit/")),
        "the validator recorded and audited the fill: {keys:?}"
    );
    assert!(
        fsyncs <= EMBEDDED_FSYNC_FLOOR,
        "a one-session embedded fill made {fsyncs} fsyncs, more than its floor of {EMBEDDED_FSYNC_FLOOR}"
    );
}
