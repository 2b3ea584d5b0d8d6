//! Merge 100k cached minute bars with about 15k new ones (5k overlapping) and re-encode the file:
//! the miss-handler's work between fetch and write. Target: ≤ 50 ms.

use std::hint::black_box;

use cachefill_core::calendar::{self, NyDates};
use cachefill_core::codec;
use cachefill_core::codec::facts::datetimes;
use cachefill_core::codec::rows::rows_to_batch;
use cachefill_core::dataset::Dataset;
use cachefill_core::fill::merge;
use cachefill_core::providers::synthetic::generate;
use chrono::NaiveDate;
use criterion::{Criterion, criterion_group, criterion_main};

fn batch_of(dataset: &Dataset, sessions: &[NaiveDate]) -> arrow_array::RecordBatch {
    rows_to_batch(dataset, generate(dataset, sessions, false)).unwrap()
}

fn take_rows(batch: &arrow_array::RecordBatch, from: usize, n: usize) -> arrow_array::RecordBatch {
    batch.slice(from, n.min(batch.num_rows() - from))
}

/// The index one past the last row of the session holding row `at - 1`.
fn session_end_after(batch: &arrow_array::RecordBatch, at: usize) -> usize {
    let times = datetimes(batch).unwrap();
    let mut dates = NyDates::new();
    let session = dates.date_of(times.value(at - 1));
    (at..batch.num_rows())
        .find(|i| dates.date_of(times.value(*i)) != session)
        .unwrap_or(batch.num_rows())
}

fn bench(c: &mut Criterion) {
    let dataset = Dataset::from_json(
        r#"{"provider":"synthetic","asset_type":"stock","symbol":"AAPL","timespan":"minute","datastyle":"ohlc"}"#,
    )
    .unwrap();
    let start: NaiveDate = "2023-01-03".parse().unwrap();
    // 390 regular-hours bars a session: the first 100k rows are cached.
    let sessions = calendar::sessions_between(start, "2024-03-01".parse().unwrap()).unwrap();
    let all = batch_of(&dataset, &sessions);
    let cached = take_rows(&all, 0, 100_000);
    // About 15k new rows: the last 5k cached rows again (overlap) and about 10k after them,
    // up to the close of a session (a fetched session that stops short of its close gets an
    // edge placeholder, as lumibot expects).
    let end = session_end_after(&all, 110_000);
    let fresh = take_rows(&all, 95_000, end - 95_000);
    assert_eq!(cached.num_rows(), 100_000);
    let metadata = std::collections::BTreeMap::from([(
        "cachefill.coverage".to_string(),
        "2023-01-03..2024-02-01".to_string(),
    )]);

    let mut group = c.benchmark_group("merge");
    group.sample_size(30);
    group.bench_function("merge_100k_plus_15k_and_encode", |b| {
        b.iter(|| {
            let merged = merge::merge(&dataset, Some(&cached), &fresh, &[]).unwrap();
            assert_eq!(merged.num_rows(), end);
            black_box(codec::encode(&merged, &metadata).unwrap())
        })
    });
    let encoded = codec::encode(&cached, &metadata).unwrap();
    group.bench_function("decode_100k", |b| {
        b.iter(|| black_box(codec::decode(encoded.clone()).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
