//! Validate a 2.5 MB parquet (the largest file size users report): sha256, decode of every
//! row group, and every rule. Target: ≤ 20 ms of CPU (the work is single-threaded, so the
//! wall time criterion measures is the CPU time).
//!
//! And an extension (5 sessions appended to a 250- and a 2,500-session file, as the fill
//! engine extends a file) judged on its appended rows, beside the whole check of it.

use std::collections::BTreeMap;
use std::hint::black_box;

use bytes::Bytes;
use cachefill_core::calendar;
use cachefill_core::codec;
use cachefill_core::codec::rows::rows_to_batch;
use cachefill_core::dataset::Dataset;
use cachefill_core::providers::synthetic::generate;
use cachefill_core::rules::{check_extension, check_object};
use chrono::{NaiveDate, Utc};
use criterion::{Criterion, criterion_group, criterion_main};

const TARGET_BYTES: usize = 2_500_000;

/// Sessions appended by an extension.
const APPENDED: usize = 5;

/// Minute bars with extended hours, as many sessions as make the file ≈ 2.5 MB.
fn realistic_file(dataset: &Dataset) -> (Bytes, usize) {
    let start: NaiveDate = "2023-01-03".parse().unwrap();
    let all = calendar::sessions_between(start, "2024-12-31".parse().unwrap()).unwrap();
    let encode = |n: usize| {
        let batch = rows_to_batch(dataset, generate(dataset, &all[..n], true)).unwrap();
        (
            codec::encode(&batch, &BTreeMap::new()).unwrap(),
            batch.num_rows(),
        )
    };
    // Size grows linearly with sessions: scale from a sample, then check.
    let (sample, _) = encode(20);
    let sessions = (TARGET_BYTES * 20 / sample.len()).clamp(1, all.len());
    let (bytes, rows) = encode(sessions);
    let off = bytes.len().abs_diff(TARGET_BYTES) as f64 / TARGET_BYTES as f64;
    assert!(off < 0.1, "{} bytes is not ≈ 2.5 MB", bytes.len());
    (bytes, rows)
}

fn bench(c: &mut Criterion) {
    let dataset = Dataset::from_json(
        r#"{"provider":"synthetic","asset_type":"stock","symbol":"SPY","timespan":"minute","datastyle":"ohlc"}"#,
    )
    .unwrap();
    let (bytes, rows) = realistic_file(&dataset);
    let now = Utc::now();
    let report = check_object(&dataset, &bytes, None, now);
    assert!(report.is_valid(), "{:?}", report.violations);
    eprintln!("validating {} bytes, {rows} rows", bytes.len());

    let mut group = c.benchmark_group("validate");
    group.sample_size(50);
    group.bench_function("check_object_2_5mb_minute_ohlc", |b| {
        b.iter(|| black_box(check_object(&dataset, &bytes, None, now)))
    });
    group.finish();

    let start: NaiveDate = "2014-01-02".parse().unwrap();
    let all = calendar::sessions_between(start, "2025-12-31".parse().unwrap()).unwrap();
    let mut group = c.benchmark_group("validate_extension");
    group.sample_size(10);
    for sessions in [250, 2_500] {
        let rows = |from: usize, to: usize| {
            rows_to_batch(&dataset, generate(&dataset, &all[from..to], true)).unwrap()
        };
        let earlier = codec::encode(&rows(0, sessions), &BTreeMap::new()).unwrap();
        let earlier_facts =
            codec::BatchFacts::of(&codec::decode(earlier.clone()).unwrap().batch).unwrap();
        let appended = rows(sessions, sessions + APPENDED);
        let footer = codec::read_footer(&earlier).unwrap();
        let mut encoder =
            codec::Encoder::appending(appended.schema(), &earlier, footer.metadata()).unwrap();
        encoder.write(&appended).unwrap();
        let extended = encoder.finish(&BTreeMap::new()).unwrap();
        let report = check_extension(
            &dataset,
            &extended,
            &codec::sha256_hex(&extended),
            &earlier,
            &earlier_facts,
            now,
        )
        .expect("an extension");
        assert!(report.is_valid(), "{:?}", report.violations);
        eprintln!(
            "extension of {sessions} sessions ({} rows, {} bytes) by {} rows",
            earlier_facts.rows,
            extended.len(),
            appended.num_rows()
        );
        group.bench_function(format!("check_extension_{sessions}_sessions"), |b| {
            b.iter(|| {
                black_box(check_extension(
                    &dataset,
                    &extended,
                    &codec::sha256_hex(&extended),
                    &earlier,
                    &earlier_facts,
                    now,
                ))
            })
        });
        group.bench_function(format!("check_object_{sessions}_sessions"), |b| {
            b.iter(|| black_box(check_object(&dataset, &extended, None, now)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
