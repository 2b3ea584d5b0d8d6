//! Aggregate trades through the real `cachefill` process on the embedded default (a bucket
//! directory and a cache directory in a temporary folder), filled from the Binance replay
//! server that `BINANCE_BASE_URL` points at: `get` lists one file per UTC day, `warm` fills
//! several symbols and then asks nothing, `clear --keep-days` removes old day files only,
//! and bad input is refused naming the field.
//!
//! The replay runs in this process (the `cachefill-replay --binance` binary serves the same
//! [`BinanceReplay`], but it belongs to another package, so cargo does not build it for
//! these tests) and follows the system clock, as the `cachefill` process does: the ranges
//! are either well in the past or end `now`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cachefill_client::local_cache::marker_path;
use cachefill_core::storage::ObjectStore;
use cachefill_core::storage::local::LocalStore;
use cachefill_core::trades::coverage::DayCoverage;
use cachefill_core::trades::{AggTrade, TradeDay, day_of, file};
use cachefill_testing::binance::{BinanceReplay, first_id_at};
use chrono::{DateTime, Days, NaiveDate, Utc};
use serde_json::Value;

/// One process run; a debug build fills a day of generated trades in about a second.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(120);

/// What one `cachefill` process did.
#[derive(Debug)]
struct Run {
    code: i32,
    /// Standard output as JSON, when it is JSON.
    json: Option<Value>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> &Value {
        self.json.as_ref().unwrap_or_else(|| {
            panic!(
                "stdout is not JSON: {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
}

/// A temporary folder holding the embedded default's bucket and cache directories.
struct Dirs {
    root: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Self {
        Dirs {
            root: tempfile::tempdir().unwrap(),
        }
    }

    fn bucket(&self) -> PathBuf {
        self.root.path().join("bucket")
    }

    fn cache(&self) -> PathBuf {
        self.root.path().join("cache")
    }

    /// `--bucket-dir`, `--cache-dir`.
    fn flags(&self) -> Vec<String> {
        vec![
            "--bucket-dir".into(),
            self.bucket().display().to_string(),
            "--cache-dir".into(),
            self.cache().display().to_string(),
        ]
    }

    fn local_day(&self, symbol: &str, date: NaiveDate) -> PathBuf {
        self.cache()
            .join(TradeDay::new(symbol, date).unwrap().relative_path())
    }
}

/// Run `cachefill args…` in `dir` with `BINANCE_BASE_URL` at `base` and no cache or provider
/// settings inherited from the environment, for at most [`PROCESS_TIMEOUT`].
fn cachefill(dir: &Path, base: &str, args: &[String]) -> Run {
    let out = dir.join(format!("stdout-{}", fastrand::u64(..)));
    let err = out.with_extension("stderr");
    let mut command = Command::new(env!("CARGO_BIN_EXE_cachefill"));
    command.current_dir(dir).args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("LUMIBOT_CACHE_")
            || name.starts_with("AWS_ENDPOINT_URL")
            || name.starts_with("BINANCE_")
            || name.starts_with("POLYGON_")
            || name.starts_with("THETADATA_")
            || name.starts_with("CACHE_")
        {
            command.env_remove(name);
        }
    }
    command
        .env("BINANCE_BASE_URL", base)
        // REST only: the counts below are the aggTrades requests the server logs.
        .env("BINANCE_ARCHIVE_URL", "")
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
    Run {
        code: status.code().expect("cachefill was not killed"),
        json: serde_json::from_str(stdout.trim()).ok(),
        stdout,
        stderr,
    }
}

/// Run `cachefill` off the async runtime that serves the replay server.
async fn cachefill_async(dirs: &Dirs, base: &str, args: Vec<String>) -> Run {
    let (dir, base) = (dirs.root.path().to_path_buf(), base.to_string());
    tokio::task::spawn_blocking(move || cachefill(&dir, &base, &args))
        .await
        .unwrap()
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// `cachefill get` of `symbol`'s aggregate trades over `start..end`, as JSON.
fn get_args(dirs: &Dirs, symbol: &str, start: &str, end: &str) -> Vec<String> {
    let mut args = strings(&[
        "get",
        "--provider",
        "binance",
        "--asset-type",
        "crypto",
        "--timespan",
        "tick",
        "--datastyle",
        "aggtrades",
        "--symbol",
        symbol,
        "--start",
        start,
        "--end",
        end,
        "--json",
    ]);
    args.extend(dirs.flags());
    args
}

fn warm_args(dirs: &Dirs, symbols: &str, start: &str, end: &str) -> Vec<String> {
    let mut args = strings(&[
        "warm",
        "--symbols",
        symbols,
        "--provider",
        "binance",
        "--asset-type",
        "crypto",
        "--timespan",
        "tick",
        "--datastyle",
        "aggtrades",
        "--start",
        start,
        "--end",
        end,
        "--json",
    ]);
    args.extend(dirs.flags());
    args
}

fn date(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

fn iso(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The ids a day file holds, in file order.
fn ids_in(path: &Path) -> Vec<i64> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    file::decode(bytes.into())
        .unwrap()
        .trades
        .iter()
        .map(|t| t.id)
        .collect()
}

/// A `paths` entry's date, rows, first and last id, and whether it is complete; its file
/// must hold exactly the rows and ids it claims.
fn checked_part(part: &Value) -> (NaiveDate, u64, i64, i64, bool) {
    let path = PathBuf::from(part["path"].as_str().expect("a path"));
    let ids = ids_in(&path);
    let listed = (
        date(part["date"].as_str().expect("a date")),
        part["rows"].as_u64().expect("rows"),
        part["first_id"].as_i64().expect("first_id"),
        part["last_id"].as_i64().expect("last_id"),
        part["complete"].as_bool().expect("complete"),
    );
    assert_eq!(listed.1, ids.len() as u64, "{part}: rows");
    assert_eq!(Some(&listed.2), ids.first(), "{part}: first_id");
    assert_eq!(Some(&listed.3), ids.last(), "{part}: last_id");
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "{part}: consecutive ids"
    );
    listed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_lists_every_day_and_end_now_reaches_the_present() {
    let replay = BinanceReplay::start().await.unwrap();
    let base = replay.base_url();
    let dirs = Dirs::new();

    // Two past days: each is fetched whole and is complete.
    let got = cachefill_async(
        &dirs,
        &base,
        get_args(
            &dirs,
            "btcusdt",
            "2025-11-05T22:00:00Z",
            "2025-11-06T02:00:00Z",
        ),
    )
    .await;
    assert_eq!(got.code, 0, "{}\n{}", got.stdout, got.stderr);
    let json = got.json();
    assert_eq!(json["source"], "filled", "{json}");
    assert_eq!(
        json["invocations"], 1,
        "two consecutive days, one invocation"
    );
    assert_eq!(
        json["upstream_requests"],
        replay.agg_requests().len(),
        "the output counts what the server received"
    );
    let parts = json["paths"].as_array().expect("paths");
    let mut rows = 0;
    for (part, day) in parts.iter().zip(["2025-11-05", "2025-11-06"]) {
        let day = TradeDay::new("BTCUSDT", date(day)).unwrap();
        let (listed_date, listed_rows, first, last, complete) = checked_part(part);
        assert_eq!(listed_date, day.date);
        assert_eq!(first, first_id_at("BTCUSDT", day.start_ms()), "{part}");
        assert_eq!(last, first_id_at("BTCUSDT", day.end_ms()) - 1, "{part}");
        assert!(complete, "{part}");
        assert_eq!(
            PathBuf::from(part["path"].as_str().unwrap()),
            dirs.local_day("BTCUSDT", day.date)
        );
        assert_eq!(part["key"], format!("v1/{}", day.relative_path()), "{part}");
        rows += listed_rows;
    }
    assert_eq!(parts.len(), 2, "one entry per day: {json}");
    assert_eq!(json["rows"], rows, "the answer's rows are its days'");
    assert_eq!(json["path"], parts[0]["path"]);

    // `--end now`: from 20 minutes ago to the instant of the call, today's file partial.
    replay.server().reset_log();
    let before = Utc::now().timestamp_millis();
    let start = before - 20 * 60_000;
    let now = cachefill_async(&dirs, &base, get_args(&dirs, "BTCUSDT", &iso(start), "now")).await;
    let after = Utc::now().timestamp_millis();
    assert_eq!(now.code, 0, "{}\n{}", now.stdout, now.stderr);
    let json = now.json();
    assert_eq!(json["source"], "filled", "{json}");
    assert_eq!(json["invocations"], 1, "{json}");
    let parts: Vec<_> = json["paths"]
        .as_array()
        .expect("paths")
        .iter()
        .map(checked_part)
        .collect();
    let dates: Vec<NaiveDate> = parts.iter().map(|p| p.0).collect();
    // 20 minutes may cross a midnight: then yesterday is in the answer too, complete.
    let expected: Vec<NaiveDate> = day_of(start)
        .iter_days()
        .take_while(|d| *d <= day_of(before))
        .collect();
    assert!(
        dates == expected || day_of(after) != day_of(before),
        "{dates:?}, expected {expected:?}"
    );
    let today = parts.last().unwrap();
    assert!(!today.4, "today has not ended: {json}");
    assert_eq!(
        today.2,
        first_id_at(
            "BTCUSDT",
            TradeDay::new("BTCUSDT", today.0).unwrap().start_ms()
        ),
        "today's file starts at its first trade"
    );
    assert!(
        (first_id_at("BTCUSDT", before) - 1..first_id_at("BTCUSDT", after + 1)).contains(&today.3),
        "today's last id {} is the last trade before the call ended",
        today.3
    );
    assert!(dirs.local_day("BTCUSDT", today.0).is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_fills_two_symbols_then_asks_nothing() {
    let replay = BinanceReplay::start().await.unwrap();
    let base = replay.base_url();
    let dirs = Dirs::new();
    let (start, end) = ("2025-11-05T10:00:00Z", "2025-11-05T11:00:00Z");
    let statuses = |run: &Run| -> Vec<(String, String)> {
        run.json()["datasets"]
            .as_array()
            .unwrap_or_else(|| panic!("no datasets: {}", run.stdout))
            .iter()
            .map(|d| {
                (
                    d["symbol"].as_str().unwrap().to_string(),
                    d["status"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let expect = |status: &str| {
        ["BTCUSDT", "ETHUSDT"]
            .map(|s| (s.to_string(), status.to_string()))
            .to_vec()
    };

    let first = cachefill_async(
        &dirs,
        &base,
        warm_args(&dirs, "BTCUSDT,ETHUSDT", start, end),
    )
    .await;
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    assert_eq!(statuses(&first), expect("filled"));
    assert_eq!(first.json()["ok"], 2);
    assert_eq!(first.json()["failed"], 0);
    assert_eq!(first.json()["invocations"], 2, "one per symbol");
    assert_eq!(
        first.json()["upstream_requests"],
        replay.agg_requests().len()
    );
    let day = date("2025-11-05");
    for (symbol, item) in ["BTCUSDT", "ETHUSDT"]
        .iter()
        .zip(first.json()["datasets"].as_array().unwrap())
    {
        let path = dirs.local_day(symbol, day);
        assert_eq!(PathBuf::from(item["path"].as_str().unwrap()), path);
        let trade_day = TradeDay::new(symbol, day).unwrap();
        let ids = ids_in(&path);
        assert!(
            ids.iter()
                .copied()
                .eq(first_id_at(symbol, trade_day.start_ms())
                    ..first_id_at(symbol, trade_day.end_ms())),
            "{symbol}: the whole day, each id once"
        );
        assert_eq!(item["rows"], ids.len(), "{symbol}");
        let bucket = LocalStore::new(dirs.bucket()).unwrap();
        let object = bucket
            .get(&format!("v1/{}", trade_day.relative_path()), None)
            .await
            .unwrap_or_else(|e| panic!("{symbol}: not in the bucket: {e}"));
        assert_eq!(
            std::fs::read(&path).unwrap(),
            object.bytes,
            "{symbol}: the local file is the bucket's"
        );
    }

    replay.server().reset_log();
    let again = cachefill_async(
        &dirs,
        &base,
        warm_args(&dirs, "BTCUSDT,ETHUSDT", start, end),
    )
    .await;
    assert_eq!(again.code, 0, "{}\n{}", again.stdout, again.stderr);
    assert_eq!(statuses(&again), expect("local_hit"));
    assert_eq!(again.json()["invocations"], 0, "{}", again.stdout);
    assert_eq!(again.json()["upstream_requests"], 0, "{}", again.stdout);
    assert!(
        replay.server().requests().is_empty(),
        "nothing asked upstream"
    );
}

/// A small valid trade-day file.
fn day_file_bytes() -> Vec<u8> {
    let trades: Vec<AggTrade> = (0..3)
        .map(|i| AggTrade {
            time: 1_762_473_600_000 + i,
            id: 100 + i,
            price: 1.5,
            qty: 2.0,
            first_trade: 200 + i,
            last_trade: 200 + i,
            buyer_maker: false,
            best_match: true,
        })
        .collect();
    let coverage = DayCoverage {
        start_id: Some(100),
        end_id: None,
    };
    file::encode(&trades, coverage, &Default::default())
        .unwrap()
        .0
        .to_vec()
}

#[test]
fn clear_keep_days_removes_only_older_day_files() {
    let dirs = Dirs::new();
    let today = Utc::now().date_naive();
    let bytes = day_file_bytes();
    let mut days = Vec::new();
    for (symbol, back) in (0..=5u64).map(|k| ("BTCUSDT", k)).chain([("ETHUSDT", 3)]) {
        let path = dirs.local_day(symbol, today - Days::new(back));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        std::fs::write(marker_path(&path), "v1/marker").unwrap();
        days.push((symbol, back, path));
    }
    // Not a trade day: never touched by --keep-days.
    let bars = dirs.cache().join("polygon/stock_SPY_day.parquet");
    std::fs::create_dir_all(bars.parent().unwrap()).unwrap();
    std::fs::write(&bars, &bytes).unwrap();
    let old = |back: u64| back >= 2;
    let mut expected: Vec<String> = days
        .iter()
        .filter(|(_, back, _)| old(*back))
        .map(|(symbol, back, _)| {
            TradeDay::new(symbol, today - Days::new(*back))
                .unwrap()
                .relative_path()
        })
        .collect();
    expected.sort();
    let clear = |extra: &[&str]| {
        let mut args = strings(&["clear", "--json", "--cache-dir"]);
        args.push(dirs.cache().display().to_string());
        args.extend(strings(extra));
        cachefill(dirs.root.path(), "http://127.0.0.1:9", &args)
    };
    let removed = |run: &Run| -> Vec<String> {
        run.json()["removed"]
            .as_array()
            .unwrap_or_else(|| panic!("no removed: {}", run.stdout))
            .iter()
            .map(|f| f["relative_path"].as_str().unwrap().to_string())
            .collect()
    };

    let dry = clear(&["--keep-days", "2", "--dry-run"]);
    assert_eq!(dry.code, 0, "{}\n{}", dry.stdout, dry.stderr);
    assert_eq!(removed(&dry), expected, "today-2 and older would go");
    assert_eq!(dry.json()["dry_run"], true);
    assert_eq!(
        dry.json()["bytes"],
        expected.len() * bytes.len(),
        "{}",
        dry.stdout
    );
    for (_, _, path) in &days {
        assert!(
            path.is_file(),
            "a dry run removes nothing: {}",
            path.display()
        );
    }

    let run = clear(&["--keep-days", "2"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(removed(&run), expected);
    for (symbol, back, path) in &days {
        assert_eq!(
            path.is_file(),
            !old(*back),
            "{symbol} today-{back}: kept only if yesterday or today"
        );
        assert_eq!(
            marker_path(path).is_file(),
            !old(*back),
            "{symbol} today-{back}: the marker goes with its file"
        );
    }
    assert!(bars.is_file(), "a bars file is not a trade day");

    let zero = clear(&["--keep-days", "0"]);
    assert_eq!(zero.code, 2, "{}\n{}", zero.stdout, zero.stderr);
    assert!(zero.stderr.contains("--keep-days"), "{}", zero.stderr);
    for (_, back, path) in &days {
        assert_eq!(path.is_file(), !old(*back), "{}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_naming_the_field() {
    let replay = BinanceReplay::start().await.unwrap();
    let base = replay.base_url();
    let dirs = Dirs::new();
    let (start, end) = ("2025-11-05T10:00:00Z", "2025-11-05T11:00:00Z");

    let slash = cachefill_async(&dirs, &base, get_args(&dirs, "BTC/USDT", start, end)).await;
    assert_eq!(slash.code, 2, "{}\n{}", slash.stdout, slash.stderr);
    assert!(
        slash.stderr.contains("symbol 'BTC/USDT'"),
        "{}",
        slash.stderr
    );

    let mut stock = get_args(&dirs, "BTCUSDT", start, end);
    let at = stock.iter().position(|a| a == "crypto").unwrap();
    stock[at] = "stock".into();
    let stock = cachefill_async(&dirs, &base, stock).await;
    assert_eq!(stock.code, 2, "{}\n{}", stock.stdout, stock.stderr);
    assert!(
        stock.stderr.contains("asset_type 'stock'"),
        "{}",
        stock.stderr
    );

    assert!(
        replay.server().requests().is_empty(),
        "nothing asked upstream"
    );
    assert!(
        !dirs.cache().join("binance").exists(),
        "nothing written locally"
    );
}
