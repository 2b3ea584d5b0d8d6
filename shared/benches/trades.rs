//! Binance aggregate-trade day files (`cachefill_core::trades::file`), measured:
//!
//! - `decode_100k_within_2h`: a 100,000-trade day's parquet bytes decoded and a 2-hour range
//!   kept, what a reader of a time range does. Target ≤ 10 ms (the system it replaces:
//!   < 100 ms).
//! - `merge_70432_plus_15000_and_encode`: 70,432 cached trades merged with 15,000 fetched
//!   (the first 50 already held) and the day re-encoded, the fill's work between fetch and
//!   write. Target ≤ 50 ms (replaced: < 500 ms).
//!
//! The trades are the replay server's generated ones (`cachefill_testing::binance`), so the
//! bench and `scripts/bench-binance` see the same days. After criterion, the same files go
//! to the Python baseline a user would otherwise write (`tests/lumibot/trades_bench.py`:
//! pyarrow `read_table` + a filter on `T`; pandas concat + `drop_duplicates("a")` + sort +
//! `to_parquet`), timed the same way as a plain loop of the Rust side beside it, and the
//! ratio is printed. It is skipped, saying so, when the venv has no pyarrow.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cachefill_core::trades::coverage::{self, DayCoverage};
use cachefill_core::trades::{AggTrade, day_start_ms, file};
use cachefill_testing::binance::{first_id_at, generated_trade};
use chrono::NaiveDate;
use criterion::{Criterion, criterion_group, criterion_main};

const SYMBOL: &str = "BTCUSDT";
const DAY_TRADES: i64 = 100_000;
const CACHED: i64 = 70_432;
const FRESH: i64 = 15_000;
const DUPLICATES: i64 = 50;
const HOUR_MS: i64 = 3_600_000;
/// Repetitions of the side-by-side loops (after three unmeasured ones), on both sides.
const SIDE_BY_SIDE_REPS: usize = 30;
/// How long the Python baseline may take before the bench gives up on it.
const PYTHON_TIMEOUT: Duration = Duration::from_secs(300);

fn day() -> NaiveDate {
    "2025-11-07".parse().unwrap()
}

/// The generated trades `from..from + n` as the provider parses them.
fn trades(from: i64, n: i64) -> Vec<AggTrade> {
    (from..from + n)
        .map(|id| {
            let g = generated_trade(SYMBOL, id);
            AggTrade {
                time: g.time_ms,
                id: g.id,
                price: g.price.parse().unwrap(),
                qty: g.qty.parse().unwrap(),
                first_trade: g.first_trade_id,
                last_trade: g.last_trade_id,
                buyer_maker: g.buyer_is_maker,
                best_match: g.best_match,
            }
        })
        .collect()
}

/// A day's file fetched before the day ended: its first id known, its end not.
fn encode_open_day(trades: &[AggTrade], start_id: i64) -> Bytes {
    let coverage = DayCoverage {
        start_id: Some(start_id),
        end_id: None,
    };
    file::encode(trades, coverage, &BTreeMap::new()).unwrap().0
}

fn median_ms(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e3
}

/// The median of `SIDE_BY_SIDE_REPS` runs of `work`, after three warm-up runs.
fn loop_median_ms(mut work: impl FnMut()) -> f64 {
    for _ in 0..3 {
        work();
    }
    let samples = (0..SIDE_BY_SIDE_REPS)
        .map(|_| {
            let started = Instant::now();
            work();
            started.elapsed()
        })
        .collect();
    median_ms(samples)
}

struct Setup {
    day_bytes: Bytes,
    range: (i64, i64),
    in_range: usize,
    cached: Vec<AggTrade>,
    fresh: Vec<AggTrade>,
    coverage: DayCoverage,
    merged_len: usize,
}

fn setup() -> Setup {
    let start_ms = day_start_ms(day());
    let start_id = first_id_at(SYMBOL, start_ms);
    let all = trades(start_id, DAY_TRADES);
    assert!(
        all.last().unwrap().time < start_ms + 24 * HOUR_MS,
        "100k generated trades fit in one day"
    );
    let range = (start_ms + 8 * HOUR_MS, start_ms + 10 * HOUR_MS);
    let in_range = (first_id_at(SYMBOL, range.1) - first_id_at(SYMBOL, range.0)) as usize;
    let cached = all[..CACHED as usize].to_vec();
    let fresh = trades(start_id + CACHED - DUPLICATES, FRESH);
    Setup {
        day_bytes: encode_open_day(&all, start_id),
        range,
        in_range,
        cached,
        fresh,
        coverage: DayCoverage {
            start_id: Some(start_id),
            end_id: None,
        },
        merged_len: (CACHED + FRESH - DUPLICATES) as usize,
    }
}

fn bench(c: &mut Criterion) {
    let s = setup();
    eprintln!(
        "day file: {} trades, {} bytes; {} trades in the 2-hour range",
        DAY_TRADES,
        s.day_bytes.len(),
        s.in_range
    );
    let mut group = c.benchmark_group("trades");
    group.sample_size(30);
    group.bench_function("decode_100k_within_2h", |b| {
        b.iter(|| {
            let decoded = file::decode(s.day_bytes.clone()).unwrap();
            let kept = file::within(&decoded.trades, s.range.0, s.range.1);
            assert_eq!(kept.len(), s.in_range);
            black_box(kept.len())
        })
    });
    group.bench_function("merge_70432_plus_15000_and_encode", |b| {
        b.iter(|| {
            let merged = coverage::merge(&s.cached, &s.fresh);
            assert_eq!(merged.len(), s.merged_len);
            black_box(file::encode(&merged, s.coverage, &BTreeMap::new()).unwrap())
        })
    });
    group.finish();
}

/// `scripts/setup-venv --print-bin`: where the venv, and so its python, lives.
fn venv_python(root: &Path) -> Option<PathBuf> {
    let out = Command::new("bash")
        .arg(root.join("scripts/setup-venv"))
        .arg("--print-bin")
        .output()
        .ok()?;
    let bin = String::from_utf8(out.stdout).ok()?;
    let python = Path::new(bin.trim()).join("python");
    python.exists().then_some(python)
}

/// Run `command` to its end, or kill it after `timeout`; its standard output.
fn run_bounded(mut command: Command, timeout: Duration) -> Result<String, String> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(_) => break,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("did not finish within {timeout:?}"));
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "{}: {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(stdout)
}

/// The Python baseline on the same files, beside a plain loop of the Rust side.
fn python_baseline() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let Some(python) = venv_python(&root) else {
        eprintln!("python baseline: skipped (no venv python; run scripts/setup-venv)");
        return;
    };
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let day_path = dir.path().join("day.parquet");
    let cached_path = dir.path().join("cached.parquet");
    let fresh_path = dir.path().join("fresh.parquet");
    std::fs::write(&day_path, &s.day_bytes).unwrap();
    std::fs::write(&cached_path, encode_open_day(&s.cached, s.cached[0].id)).unwrap();
    std::fs::write(&fresh_path, encode_open_day(&s.fresh, s.fresh[0].id)).unwrap();

    // Both sides read the day from its file here, as a user's pyarrow does.
    let rust_read = loop_median_ms(|| {
        let bytes = Bytes::from(std::fs::read(&day_path).unwrap());
        let decoded = file::decode(bytes).unwrap();
        assert_eq!(
            file::within(&decoded.trades, s.range.0, s.range.1).len(),
            s.in_range
        );
    });
    let rust_merge = loop_median_ms(|| {
        let merged = coverage::merge(&s.cached, &s.fresh);
        assert_eq!(merged.len(), s.merged_len);
        black_box(file::encode(&merged, s.coverage, &BTreeMap::new()).unwrap());
    });

    let mut command = Command::new(&python);
    command
        .arg(root.join("tests/lumibot/trades_bench.py"))
        .args(["--day".as_ref(), day_path.as_os_str()])
        .args(["--start", &s.range.0.to_string()])
        .args(["--end", &s.range.1.to_string()])
        .args(["--expect-rows", &s.in_range.to_string()])
        .args(["--cached".as_ref(), cached_path.as_os_str()])
        .args(["--fresh".as_ref(), fresh_path.as_os_str()])
        .args(["--expect-merged", &s.merged_len.to_string()])
        .args(["--reps", &SIDE_BY_SIDE_REPS.to_string()]);
    let answer = match run_bounded(command, PYTHON_TIMEOUT) {
        Ok(answer) => answer,
        Err(why) => panic!("python baseline failed: {why}"),
    };
    let answer: serde_json::Value = match serde_json::from_str(answer.trim()) {
        Ok(v) => v,
        Err(e) => panic!("python baseline printed no JSON ({e}): {answer}"),
    };
    if let Some(skipped) = answer.get("skipped").and_then(|v| v.as_str()) {
        eprintln!("python baseline: skipped ({skipped})");
        return;
    }
    let ms = |name: &str| answer[name]["median_ms"].as_f64().unwrap();
    let (py_read, py_merge) = (ms("read_filter"), ms("merge_write"));
    eprintln!(
        "side by side, median of {SIDE_BY_SIDE_REPS} (pyarrow {}, pandas {}):",
        answer["pyarrow"].as_str().unwrap_or("?"),
        answer["pandas"].as_str().unwrap_or("?")
    );
    eprintln!(
        "  read 100k-trade day file + 2-hour filter: rust {rust_read:.2} ms, python pyarrow {py_read:.2} ms, ratio {:.1}x",
        py_read / rust_read
    );
    eprintln!(
        "  merge 70,432 + 15,000 and write parquet:  rust {rust_merge:.2} ms, python pandas {py_merge:.2} ms, ratio {:.1}x",
        py_merge / rust_merge
    );
}

fn baseline(_: &mut Criterion) {
    // `cargo test --benches` runs each benchmark once to see it works; the baseline is
    // for `cargo bench` (which passes `--bench`) only.
    if std::env::args().any(|a| a == "--bench") {
        python_baseline();
    }
}

criterion_group!(benches, bench, baseline);
criterion_main!(benches);
