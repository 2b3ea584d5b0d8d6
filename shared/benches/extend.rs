//! An extend of 5 sessions of minute bars (960 a session, extended hours) onto a file of 250
//! and of 2,500 sessions, on the local store: the engine's whole fill (read, fetch from the
//! in-process synthetic provider, merge, self-check, encode, conditional put, sidecar), with
//! and without the embedded default's validator judging what it writes. The extend copies the
//! file's row groups and appends its own, so its cost should grow with the 5 sessions, not
//! with the file (`docs/ARCHITECTURE.md` §6). Target: ≤ 40 ms.
//!
//!   cargo bench -p cachefill-core --locked --bench extend

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cachefill_core::calendar;
use cachefill_core::clock::FixedClock;
use cachefill_core::dataset::Dataset;
use cachefill_core::fill::{EngineConfig, FillEngine, FillRequest, FillStatus};
use cachefill_core::keys::KeyLayout;
use cachefill_core::providers::synthetic::SyntheticProvider;
use cachefill_core::storage::ObjectStore;
use cachefill_core::storage::local::LocalStore;
use cachefill_core::validate::ValidatingStore;
use chrono::{NaiveDate, TimeZone, Utc};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

const AAPL_MINUTE: &str = r#"{"provider":"synthetic","asset_type":"stock","symbol":"AAPL","timespan":"minute","datastyle":"ohlc"}"#;
const BUCKET: &str = "bench-bucket";

fn layout() -> KeyLayout {
    KeyLayout::new("stage/cache", "v1")
}

fn fill<S: ObjectStore + 'static>(
    runtime: &tokio::runtime::Runtime,
    store: S,
    start: NaiveDate,
    end: NaiveDate,
) {
    let mut config = EngineConfig::new(BUCKET, layout());
    config.lease_ttl = Duration::from_secs(60);
    let clock = Arc::new(FixedClock::new(
        Utc.with_ymd_and_hms(2026, 7, 1, 12, 0, 0).unwrap(),
    ));
    let engine = FillEngine::new(store, SyntheticProvider::new(), config).with_clock(clock);
    let request =
        FillRequest::new(Dataset::from_json(AAPL_MINUTE).unwrap(), start, end, true).unwrap();
    let answer = runtime.block_on(engine.fill(&request)).unwrap();
    assert_eq!(answer.status, FillStatus::Filled);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let start: NaiveDate = "2014-01-02".parse().unwrap();
    let sessions = calendar::sessions_between(start, "2025-12-31".parse().unwrap()).unwrap();
    let mut group = c.benchmark_group("extend");
    group.sample_size(20);
    for n in [250, 2500] {
        // The prepared file of n sessions, through the validating store (so its manifest
        // names it, as on the embedded default), copied fresh before every extend.
        let prepared = tempfile::tempdir().unwrap();
        let store =
            ValidatingStore::new(LocalStore::new(prepared.path()).unwrap(), BUCKET, layout());
        fill(&runtime, store, start, sessions[n - 1]);
        let end = sessions[n + 4];
        for validated in [false, true] {
            let name = format!(
                "plus_5_onto_{n}{}",
                if validated { "_validated" } else { "" }
            );
            group.bench_function(&name, |b| {
                b.iter_batched(
                    || {
                        let dir = tempfile::tempdir().unwrap();
                        copy_dir(prepared.path(), dir.path());
                        dir
                    },
                    |dir| {
                        let local = LocalStore::new(dir.path()).unwrap();
                        if validated {
                            fill(
                                &runtime,
                                ValidatingStore::new(local, BUCKET, layout()),
                                start,
                                end,
                            );
                        } else {
                            fill(&runtime, local, start, end);
                        }
                        dir
                    },
                    BatchSize::PerIteration,
                )
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
