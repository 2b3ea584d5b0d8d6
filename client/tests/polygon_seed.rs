//! The Polygon seed: the real `cachefill warm` process fills 35 years of daily bars for nine
//! tickers from the Polygon replay server, on the embedded default (a temporary working
//! directory's `./.cachefill/`).
//!
//! Request budget: Polygon answers up to 50,000 bars a request and 1990-01-02..2025-12-31
//! holds 9,067 sessions, so each symbol's whole range is one request: 9 for the nine
//! symbols, none on any run after the first (docs/POLYGON.md, "The replay server (tests)").

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cachefill_core::calendar::{self, NyDates};
use cachefill_core::codec::{self, facts};
use cachefill_core::coverage::row_session;
use cachefill_core::storage::ObjectStore;
use cachefill_core::storage::local::LocalStore;
use cachefill_testing::polygon::PolygonReplay;
use cachefill_testing::thetadata::Fault;
use chrono::NaiveDate;
use serde_json::Value;

const KEY: &str = "seed-test-key";
const SYMBOLS: [&str; 9] = [
    "AAPL", "GOOGL", "NVDA", "AMD", "ARM", "MSFT", "AVGO", "TSLA", "TQQQ",
];
const START: &str = "1990-01-02";
const END: &str = "2025-12-31";
/// Upstream requests the first warm may make: one per symbol (see the module docs).
const FIRST_WARM_BUDGET: usize = SYMBOLS.len();
/// NYSE sessions in 1990-01-02..=2025-12-31 (checked against the calendar below).
const SESSIONS: usize = 9_067;
/// ARM's first session (its listing).
const ARM_LISTED: NaiveDate = ymd(2023, 9, 14);
/// One process run; a debug build fills the nine files in a few seconds.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(180);

const fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    match NaiveDate::from_ymd_opt(y, m, d) {
        Some(date) => date,
        None => panic!("not a date"),
    }
}

/// What one `cachefill` process did.
#[derive(Debug)]
struct Run {
    code: i32,
    json: Value,
    stderr: String,
}

/// Run `cachefill args… --json` in `dir` against the replay server at `base`, with no cache
/// or provider settings inherited from the environment, for at most [`PROCESS_TIMEOUT`].
fn cachefill(dir: &Path, base: &str, args: &[String]) -> Run {
    let out = dir.join(format!("stdout-{}", fastrand::u64(..)));
    let err = out.with_extension("stderr");
    let mut command = Command::new(env!("CARGO_BIN_EXE_cachefill"));
    command.current_dir(dir).args(args).arg("--json");
    for (name, _) in std::env::vars() {
        if name.starts_with("LUMIBOT_CACHE_")
            || name.starts_with("AWS_ENDPOINT_URL")
            || name.starts_with("POLYGON_")
            || name.starts_with("CACHE_")
        {
            command.env_remove(name);
        }
    }
    command
        .env("POLYGON_API_KEY", KEY)
        .env("POLYGON_BASE_URL", base)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + PROCESS_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "cachefill {args:?} did not end within {PROCESS_TIMEOUT:?}; stderr:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(&out).unwrap();
    let stderr = std::fs::read_to_string(&err).unwrap();
    let json = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{args:?}: stdout is not JSON ({e}): {stdout}\n{stderr}"));
    Run {
        code: status.code().expect("cachefill was not killed"),
        json,
        stderr,
    }
}

fn warm_args(symbols: &str) -> Vec<String> {
    [
        "warm",
        "--provider",
        "polygon",
        "--symbols",
        symbols,
        "--asset-type",
        "stock",
        "--timespan",
        "day",
        "--datastyle",
        "ohlc",
        "--start",
        START,
        "--end",
        END,
    ]
    .map(String::from)
    .to_vec()
}

/// Run `cachefill` off the async runtime that serves the replay server.
async fn cachefill_async(dir: &Path, base: &str, args: Vec<String>) -> Run {
    let (dir, base) = (dir.to_path_buf(), base.to_string());
    tokio::task::spawn_blocking(move || cachefill(&dir, &base, &args))
        .await
        .unwrap()
}

/// The bucket object at a lumibot key (`<version>/polygon/…`) on the embedded default.
async fn bucket_object(dir: &Path, key: &str) -> Bytes {
    let bucket = LocalStore::new(dir.join(".cachefill").join("bucket")).unwrap();
    match bucket.get(key, None).await {
        Ok(object) => object.bytes,
        Err(e) => panic!("{key} is not in the bucket: {e}"),
    }
}

/// Each row's session and whether it is a placeholder, in file order.
fn sessions_of(bytes: Bytes) -> Vec<(NaiveDate, bool)> {
    let decoded = codec::decode(bytes).unwrap();
    let times = facts::datetimes(&decoded.batch).unwrap();
    let mask = facts::placeholder_mask(&decoded.batch);
    let mut dates = NyDates::new();
    times
        .iter()
        .zip(mask)
        .map(|(time, placeholder)| {
            let time = time.expect("every row has a datetime");
            (row_session(&mut dates, time, placeholder), placeholder)
        })
        .collect()
}

fn statuses(run: &Run) -> Vec<(String, String)> {
    run.json["datasets"]
        .as_array()
        .unwrap_or_else(|| panic!("no datasets: {}", run.json))
        .iter()
        .map(|d| {
            (
                d["symbol"].as_str().unwrap().to_string(),
                d["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nine_symbols_35_years_of_days_one_request_each_then_local_hits() {
    let replay = PolygonReplay::start(KEY).await.unwrap();
    replay.list_from("ARM", ARM_LISTED);
    let base = replay.base_url();
    let dir = tempfile::tempdir().unwrap();
    let symbols = SYMBOLS.join(",");

    let first = cachefill_async(dir.path(), &base, warm_args(&symbols)).await;
    assert_eq!(first.code, 0, "{}\n{}", first.json, first.stderr);
    assert_eq!(first.json["failed"], 0, "{}", first.json);
    let expected: Vec<(String, String)> = SYMBOLS
        .iter()
        .map(|s| (s.to_string(), "filled".to_string()))
        .collect();
    assert_eq!(statuses(&first), expected);

    let asked = replay.aggs_requests();
    assert!(
        asked.len() <= FIRST_WARM_BUDGET,
        "{} upstream requests, budget {FIRST_WARM_BUDGET}: {:?}",
        asked.len(),
        asked.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    assert_eq!(
        replay.server().requests().len(),
        asked.len(),
        "only aggregates are asked"
    );
    assert_eq!(
        first.json["upstream_requests"],
        asked.len(),
        "the summary counts what the server received"
    );
    for symbol in SYMBOLS {
        let path = format!("/v2/aggs/ticker/{symbol}/range/1/day/{START}/{END}");
        assert_eq!(replay.server().count(&path), 1, "{symbol}: {path}");
    }

    let sessions = calendar::sessions_between(ymd(1990, 1, 2), ymd(2025, 12, 31)).unwrap();
    assert_eq!(sessions.len(), SESSIONS);
    for (symbol, item) in SYMBOLS
        .iter()
        .zip(first.json["datasets"].as_array().unwrap())
    {
        let key = format!("v1/polygon/stock_{symbol}_day.parquet");
        assert_eq!(item["key"], key.as_str());
        assert_eq!(item["rows"], sessions.len(), "{symbol}");
        let object = bucket_object(dir.path(), &key).await;
        let rows = sessions_of(object.clone());
        let dates: Vec<NaiveDate> = rows.iter().map(|(d, _)| *d).collect();
        assert_eq!(dates, sessions, "{symbol}: one row per session, in order");
        let placeholders: Vec<NaiveDate> =
            rows.iter().filter(|(_, p)| *p).map(|(d, _)| *d).collect();
        if *symbol == "ARM" {
            let before: Vec<NaiveDate> = sessions
                .iter()
                .copied()
                .filter(|d| *d < ARM_LISTED)
                .collect();
            assert_eq!(
                placeholders, before,
                "ARM: a placeholder on every session before its listing, none after"
            );
        } else {
            assert!(placeholders.is_empty(), "{symbol}: {placeholders:?}");
        }
        // The local cache holds the same bytes as the bucket.
        let local = PathBuf::from(item["path"].as_str().unwrap());
        assert_eq!(std::fs::read(dir.path().join(&local)).unwrap(), object);
    }

    replay.server().reset_log();
    let again = cachefill_async(dir.path(), &base, warm_args(&symbols)).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    let hits: Vec<(String, String)> = SYMBOLS
        .iter()
        .map(|s| (s.to_string(), "local_hit".to_string()))
        .collect();
    assert_eq!(statuses(&again), hits);
    assert_eq!(again.json["upstream_requests"], 0, "{}", again.json);
    assert_eq!(again.json["invocations"], 0, "{}", again.json);
    assert_eq!(replay.server().requests().len(), 0);

    let get = [
        "get",
        "--provider",
        "polygon",
        "--asset-type",
        "stock",
        "--symbol",
        "NVDA",
        "--timespan",
        "day",
        "--datastyle",
        "ohlc",
        "--start",
        "2010-03-01",
        "--end",
        "2010-03-31",
    ]
    .map(String::from)
    .to_vec();
    let got = cachefill_async(dir.path(), &base, get).await;
    assert_eq!(got.code, 0, "{}", got.stderr);
    assert_eq!(got.json["source"], "local_hit", "{}", got.json);
    assert_eq!(got.json["key"], "v1/polygon/stock_NVDA_day.parquet");
    assert_eq!(got.json["rows"], sessions.len(), "the whole file is local");
    assert_eq!(got.json["upstream_requests"], 0);
    assert_eq!(got.json["invocations"], 0);
    assert_eq!(replay.server().requests().len(), 0);
}

/// A 429 with `Retry-After: 1` on one symbol's first request: the warm waits at least the
/// second it asks, asks again, and counts both attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_is_waited_out_and_counted() {
    let replay = PolygonReplay::start(KEY).await.unwrap();
    let tsla = format!("/v2/aggs/ticker/TSLA/range/1/day/{START}/{END}");
    replay.server().inject_route(
        &tsla,
        None,
        Some(1),
        Fault::Reply(
            cachefill_testing::thetadata::Reply::text(
                429,
                r#"{"status":"ERROR","error":"You've exceeded the maximum requests per minute"}"#,
            )
            .with_header("Retry-After", "1"),
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let run = cachefill_async(dir.path(), &replay.base_url(), warm_args("AAPL,TSLA")).await;
    assert_eq!(run.code, 0, "{}\n{}", run.json, run.stderr);
    assert_eq!(
        statuses(&run),
        [
            ("AAPL".to_string(), "filled".to_string()),
            ("TSLA".to_string(), "filled".to_string())
        ]
    );
    assert_eq!(run.json["upstream_requests"], 3, "{}", run.json);
    assert_eq!(replay.aggs_requests().len(), 3);
    let attempts: Vec<Instant> = replay
        .server()
        .requests()
        .into_iter()
        .filter(|r| r.path == tsla)
        .map(|r| r.at)
        .collect();
    assert_eq!(attempts.len(), 2);
    assert!(
        attempts[1] - attempts[0] >= Duration::from_secs(1),
        "retried after {:?}, before the Retry-After second",
        attempts[1] - attempts[0]
    );
    let object = bucket_object(dir.path(), "v1/polygon/stock_TSLA_day.parquet").await;
    assert_eq!(sessions_of(object).len(), SESSIONS);
}
