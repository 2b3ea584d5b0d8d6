//! ThetaData responses: parse + normalize, and parse + normalize + encode to parquet.
//!
//! `cargo bench -p cachefill-core --bench thetadata`
//!
//! - `one_session_minute_ohlc/normalize`: parse + normalize a 04:00–20:00 minute-OHLC
//!   response (960 rows); target ≤ 1 ms.
//! - `minute_ohlc_100k/normalize`: parse + normalize a 100 000-row response; rows/s.
//! - `minute_ohlc_100k/to_parquet`: upstream JSON in memory → normalized rows → record
//!   batch (row rules applied) → snappy parquet bytes with the engine's metadata; target
//!   ≥ 2 million rows/s on one core.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::hint::black_box;

use cachefill_core::calendar;
use cachefill_core::codec::rows::rows_to_batch;
use cachefill_core::codec::{self, Rows};
use cachefill_core::dataset::Dataset;
use cachefill_core::providers::thetadata::normalize::normalize;
use chrono::NaiveDate;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const SPY_MINUTE: &str = r#"{"provider":"thetadata","asset_type":"stock","symbol":"SPY","timespan":"minute","datastyle":"ohlc"}"#;

/// A terminal's minute-OHLC body (`format=json`, rows of objects, its field order and
/// number spellings) for `rows` bars from 04:00 to 20:00 New York, session after session.
fn minute_ohlc_body(rows: usize) -> Vec<u8> {
    let sessions = calendar::sessions_between(
        NaiveDate::from_ymd_opt(2023, 1, 3).expect("date"),
        NaiveDate::from_ymd_opt(2024, 12, 31).expect("date"),
    )
    .expect("calendar");
    let mut rng = fastrand::Rng::with_seed(7);
    let mut price: f64 = 470.0;
    let mut out = String::with_capacity(rows * 150);
    out.push_str("{\n\t\"response\": [\n");
    for i in 0..rows {
        let session = sessions[i / 960];
        let minute = 4 * 60 + (i % 960);
        let regular = (570..960).contains(&minute);
        let traded = regular || rng.f64() < 0.7;
        if i > 0 {
            out.push_str(",\n");
        }
        let timestamp = format!("{session}T{:02}:{:02}:00", minute / 60, minute % 60);
        if !traded {
            write!(
                out,
                "\t\t{{\"volume\":0,\"high\":0.0,\"low\":0.0,\"vwap\":{price:.2},\"count\":0,\"close\":0.0,\"open\":0.0,\"timestamp\":\"{timestamp}\"}}"
            )
            .expect("write to string");
            continue;
        }
        // Prices in cents, as stocks trade; the terminal spells them with 2 to 4 decimals.
        let cents = |x: f64| (x * 100.0).round() / 100.0;
        let open = cents(price);
        price *= 1.0 + (rng.f64() - 0.5) * 0.002;
        let close = cents(price);
        let high = cents(open.max(close) * (1.0 + rng.f64() * 0.0005));
        let low = cents(open.min(close) * (1.0 - rng.f64() * 0.0005));
        let count = if regular {
            rng.u32(500..20_000)
        } else {
            rng.u32(1..200)
        };
        let volume = u64::from(count) * u64::from(rng.u32(20..120));
        write!(
            out,
            "\t\t{{\"volume\":{volume},\"high\":{high:.4},\"low\":{low:.3},\"vwap\":{:.2},\"count\":{count},\"close\":{close:.4},\"open\":{open:.3},\"timestamp\":\"{timestamp}\"}}",
            (high + low + close) / 3.0
        )
        .expect("write to string");
    }
    out.push_str("\n\t]\n}");
    out.into_bytes()
}

/// Key-value metadata as the fill engine writes it.
fn engine_metadata(dataset: &Dataset) -> BTreeMap<String, String> {
    [
        ("schema_version", "1".to_string()),
        ("provider", "thetadata".to_string()),
        ("dataset", dataset.to_json()),
        ("coverage", "2023-01-03..2023-05-30".to_string()),
        ("provisional", String::new()),
        ("filled_at", "2026-01-15T12:00:00Z".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (format!("cachefill.{k}"), v))
    .collect()
}

fn to_parquet(dataset: &Dataset, body: &[u8], metadata: &BTreeMap<String, String>) -> usize {
    let rows = normalize(dataset, body).expect("normalizes");
    let batch = rows_to_batch(dataset, rows).expect("batch");
    codec::encode(&batch, metadata).expect("encodes").len()
}

fn benches(c: &mut Criterion) {
    let dataset = Dataset::from_json(SPY_MINUTE).expect("dataset");

    let session = minute_ohlc_body(960);
    assert_eq!(
        normalize(&dataset, &session).expect("normalizes").len(),
        960
    );
    let mut group = c.benchmark_group("one_session_minute_ohlc");
    group.throughput(Throughput::Elements(960));
    group.bench_function("normalize", |b| {
        b.iter(|| normalize(&dataset, black_box(&session)).expect("normalizes"))
    });
    group.finish();

    let big = minute_ohlc_body(100_000);
    let Rows::Ohlc(bars) = normalize(&dataset, &big).expect("normalizes") else {
        unreachable!("minute OHLC rows")
    };
    assert_eq!(bars.len(), 100_000);
    let metadata = engine_metadata(&dataset);
    let mut group = c.benchmark_group("minute_ohlc_100k");
    group.throughput(Throughput::Elements(100_000));
    group.bench_function("normalize", |b| {
        b.iter(|| normalize(&dataset, black_box(&big)).expect("normalizes"))
    });
    group.bench_function("to_parquet", |b| {
        b.iter(|| to_parquet(&dataset, black_box(&big), &metadata))
    });
    group.finish();
}

criterion_group!(thetadata, benches);
criterion_main!(thetadata);
