//! Memory of a long fill. The engine merges and encodes fetched rows a chunk at a time, so
//! its peak heap grows with the encoded file as the range grows, not with every fetched row
//! held decoded at once. Measured by counting this test binary's heap allocations (bytes,
//! not time); one test in the binary, so nothing else allocates meanwhile.

use std::process::Command;
use std::time::Duration;

use cachefill_core::calendar;
use cachefill_core::clock::FixedClock;
use cachefill_core::codec::rows::rows_to_batch;
use cachefill_core::dataset::Dataset;
use cachefill_core::fill::{EngineConfig, FillEngine, FillRequest, FillStatus};
use cachefill_core::keys::KeyLayout;
use cachefill_core::providers::synthetic::{SyntheticProvider, generate};
use cachefill_core::storage::ObjectStore;
use cachefill_core::storage::local::LocalStore;
use chrono::{NaiveDate, TimeZone, Utc};

/// The range the child process fills (`first..last`).
const CHILD_RANGE: &str = "CACHEFILL_MEMORY_TEST_RANGE";

const AAPL_MINUTE: &str = r#"{"provider":"synthetic","asset_type":"stock","symbol":"AAPL","timespan":"minute","datastyle":"ohlc"}"#;

fn d(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

/// One first fill of minute bars with extended hours in this process; prints its peak
/// resident memory (the kernel's `VmHWM`), the sessions fetched and the bytes written.
/// Run only by [`a_longer_fill_grows_by_less_than_its_extra_rows_decoded`], in a process
/// of its own, since a process's high-water mark never comes down.
#[test]
#[ignore = "run in a child process by a_longer_fill_grows_by_less_than_its_extra_rows_decoded"]
fn one_fill_in_this_process() {
    let range = std::env::var(CHILD_RANGE)
        .unwrap_or_else(|_| panic!("{CHILD_RANGE} names the range to fill (first..last)"));
    let (start, end) = range.split_once("..").expect("first..last");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path()).unwrap();
    let mut config = EngineConfig::new("test-bucket", KeyLayout::new("stage/cache", "v1"));
    config.lease_ttl = Duration::from_secs(30);
    let clock = std::sync::Arc::new(FixedClock::new(
        Utc.with_ymd_and_hms(2024, 7, 1, 12, 0, 0).unwrap(),
    ));
    let engine = FillEngine::new(store.clone(), SyntheticProvider::new(), config).with_clock(clock);
    let request = FillRequest::new(
        Dataset::from_json(AAPL_MINUTE).unwrap(),
        d(start),
        d(end),
        true,
    )
    .unwrap();
    let answer = runtime.block_on(engine.fill(&request)).unwrap();
    assert_eq!(answer.status, FillStatus::Filled);
    let peak_kb = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM in /proc/self/status");
    let bytes = runtime
        .block_on(store.head(&answer.key, None))
        .unwrap()
        .size;
    println!(
        "fill-memory peak_kb={peak_kb} sessions={} bytes={bytes}",
        answer.sessions_fetched
    );
}

/// Peak RSS (bytes), sessions fetched and bytes written of a first fill of `[start, end]`,
/// measured in a child process.
fn fill_in_a_child(start: &str, end: &str) -> (usize, usize, usize) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "one_fill_in_this_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_RANGE, format!("{start}..{end}"))
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the child fill failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = stdout
        .lines()
        // The harness prints the test's name on the same line.
        .find_map(|l| l.split_once("fill-memory ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no measurement in the child's output: {stdout}"));
    let value = |name: &str| -> usize {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    (value("peak_kb") * 1024, value("sessions"), value("bytes"))
}

#[test]
fn a_longer_fill_grows_by_less_than_its_extra_rows_decoded() {
    if !std::path::Path::new("/proc/self/status").exists() {
        eprintln!("skipped: peak RSS is read from /proc (Linux)");
        return;
    }
    // Both take several chunks of fetched rows, so what they hold decoded at a time is the
    // same; what a longer fill holds more of is its file.
    let (short_peak, short_sessions, short_bytes) = fill_in_a_child("2023-01-01", "2023-12-31");
    let (long_peak, long_sessions, long_bytes) = fill_in_a_child("2022-01-01", "2023-12-31");
    let extra_sessions = long_sessions - short_sessions;
    let growth = long_peak.saturating_sub(short_peak) / extra_sessions;

    // What the rows of a session take decoded, as the engine builds them from a provider's.
    let dataset = Dataset::from_json(AAPL_MINUTE).unwrap();
    let year = calendar::sessions_between(d("2023-01-01"), d("2023-12-31")).unwrap();
    let decoded = rows_to_batch(&dataset, generate(&dataset, &year, true))
        .unwrap()
        .get_array_memory_size()
        / year.len();
    let encoded = (long_bytes - short_bytes) / extra_sessions;
    assert!(
        growth < decoded,
        "the fill's peak RSS grows by {growth} bytes a session ({short_peak} bytes for \
         {short_sessions} sessions, {long_peak} for {long_sessions}), not less than the \
         {decoded} bytes a session's rows take decoded ({encoded} encoded)"
    );
    eprintln!(
        "peak RSS grows by {growth} bytes a session; decoded rows {decoded}, encoded {encoded}"
    );
}
