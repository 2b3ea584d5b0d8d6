//! A local hit on a ≈ 3.7 MB minute file: what `LocalCache::read` costs once the file has
//! been verified, in the same instance (a long-lived process) and in a fresh one (what a new
//! `cachefill get` process sees). Targets: ≤ 50 µs in-process, ≤ 4 ms for a whole process.

use std::collections::BTreeMap;
use std::hint::black_box;

use cachefill_client::local_cache::{LocalCache, Receipt};
use cachefill_core::calendar;
use cachefill_core::codec::{self, BatchFacts, Sidecar, rows::rows_to_batch};
use cachefill_core::dataset::Dataset;
use cachefill_core::keys::relative_path;
use cachefill_core::providers::synthetic::generate;
use chrono::{NaiveDate, Utc};
use criterion::{Criterion, criterion_group, criterion_main};

const TARGET_BYTES: usize = 3_700_000;

/// Minute bars with extended hours, as many sessions as make the file ≈ 3.7 MB, and its sidecar.
fn realistic_pair(dataset: &Dataset) -> (Vec<u8>, Vec<u8>) {
    let start: NaiveDate = "2022-01-03".parse().unwrap();
    let all = calendar::sessions_between(start, "2024-12-31".parse().unwrap()).unwrap();
    let encode = |n: usize| {
        let batch = rows_to_batch(dataset, generate(dataset, &all[..n], true)).unwrap();
        let bytes = codec::encode(&batch, &BTreeMap::new()).unwrap();
        (bytes, BatchFacts::of(&batch).unwrap())
    };
    // Size grows linearly with sessions: scale from a sample, then check.
    let (sample, _) = encode(20);
    let sessions = (TARGET_BYTES * 20 / sample.len()).clamp(1, all.len());
    let (bytes, facts) = encode(sessions);
    let off = bytes.len().abs_diff(TARGET_BYTES) as f64 / TARGET_BYTES as f64;
    assert!(off < 0.1, "{} bytes is not ≈ 3.7 MB", bytes.len());
    let sidecar = Sidecar::new(&facts, &codec::sha256_hex(&bytes), Utc::now());
    (bytes.to_vec(), sidecar.to_json().into_bytes())
}

fn bench(c: &mut Criterion) {
    let dataset = Dataset::from_json(
        r#"{"provider":"synthetic","asset_type":"stock","symbol":"SPY","timespan":"minute","datastyle":"ohlc"}"#,
    )
    .unwrap();
    let relative = relative_path(&dataset);
    let (parquet, sidecar) = realistic_pair(&dataset);
    let dir = tempfile::tempdir().unwrap();
    let receipt = Receipt {
        key: format!("v1/{relative}"),
        version_id: None,
        etag: None,
        sha256: codec::sha256_hex(&parquet),
        fetched_at: Utc::now(),
    };
    let cache = LocalCache::new(dir.path());
    cache
        .publish(&relative, &parquet.clone().into(), None, &sidecar, &receipt)
        .unwrap();
    let first = cache.read(&relative).unwrap().unwrap();
    assert!(first.is_consistent(), "{:?}", first.sidecar_state);
    eprintln!("local hit on {} bytes", parquet.len());

    let mut group = c.benchmark_group("local_hit");
    group.sample_size(30);
    group.bench_function("same_instance", |b| {
        b.iter(|| black_box(cache.read(&relative).unwrap().unwrap()))
    });
    group.bench_function("new_instance", |b| {
        b.iter(|| {
            black_box(
                LocalCache::new(dir.path())
                    .read(&relative)
                    .unwrap()
                    .unwrap(),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
