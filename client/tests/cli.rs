//! Every `cachefill` command end to end on the embedded default, `--json` output parsed.

mod common;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Run the command in `dir` (whose `./.cachefill/` is the embedded default's state) with
/// no cache settings inherited from the environment.
fn cachefill(dir: &Path, args: &[&str]) -> (i32, Value, String) {
    cachefill_with(dir, args, &[])
}

const DAY_AAPL: [&str; 10] = [
    "--provider",
    "synthetic",
    "--asset-type",
    "stock",
    "--symbol",
    "AAPL",
    "--timespan",
    "day",
    "--datastyle",
    "ohlc",
];

fn get(dir: &Path, symbol: &str, start: &str, end: &str) -> (i32, Value, String) {
    let mut args = vec!["get"];
    args.extend(DAY_AAPL);
    args[6] = symbol;
    args.extend(["--start", start, "--end", end, "--json"]);
    cachefill(dir, &args)
}

#[test]
fn demo_fills_at_most_three_times_then_only_hits_and_fresh_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let (code, first, stderr) = cachefill(dir.path(), &["demo", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(first["requests"], 63);
    let fills = first["fills"].as_u64().unwrap();
    assert!((1..=3).contains(&fills), "{first}");
    assert!(first["upstream_requests"].as_u64().unwrap() <= 3, "{first}");
    assert!(first["elapsed_ms"].is_u64());
    assert!(dir.path().join(".cachefill/bucket").is_dir());
    assert!(dir.path().join(".cachefill/cache").is_dir());

    let (code, second, stderr) = cachefill(dir.path(), &["demo", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(second["fills"], 0);
    assert_eq!(second["upstream_requests"], 0);
    assert_eq!(second["local_hits"], 63);
    assert_eq!(second["remote_hits"], 0);

    let (code, fresh, _) = cachefill(dir.path(), &["demo", "--fresh", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(fresh["fills"], first["fills"]);

    let out = Command::new(env!("CARGO_BIN_EXE_cachefill"))
        .current_dir(dir.path())
        .args(["demo", "--state-dir", "elsewhere"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("upstream requests"), "{text}");
    assert!(dir.path().join("elsewhere/bucket").is_dir());
}

#[test]
fn get_fills_then_hits_and_rejects_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (code, first, stderr) = get(dir.path(), "MSFT", "2024-04-01", "2024-04-30");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(first["source"], "filled");
    assert_eq!(first["rows"], 22);
    assert_eq!(first["min"], "2024-04-01T20:00:00+00:00");
    let path = dir.path().join(first["path"].as_str().unwrap());
    assert!(path.is_file(), "{}", path.display());
    assert!(first["version_id"].is_string());
    assert_eq!(first["invocations"], 1);

    let (code, again, _) = get(dir.path(), "MSFT", "2024-04-08", "2024-04-12");
    assert_eq!(code, 0);
    assert_eq!(again["source"], "local_hit");
    assert_eq!(again["sha256"], first["sha256"]);
    assert_eq!(again["upstream_requests"], 0);

    let (code, _, stderr) = get(dir.path(), "MSFT", "2024-04-30", "2024-04-01");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("after end"), "{stderr}");
}

#[test]
fn warm_continues_past_failures_and_is_rerunnable() {
    let dir = tempfile::tempdir().unwrap();
    let warm = |symbols: &str| {
        cachefill(
            dir.path(),
            &[
                "warm",
                "--symbols",
                symbols,
                "--provider",
                "synthetic",
                "--asset-type",
                "stock",
                "--timespan",
                "day",
                "--datastyle",
                "ohlc",
                "--start",
                "2024-04-01",
                "--end",
                "2024-05-31",
                "--concurrency",
                "2",
                "--json",
            ],
        )
    };
    let (code, first, _) = warm("AAPL,BAD^SYM,GOOGL");
    assert_eq!(code, 5);
    assert_eq!(
        (first["ok"].as_u64(), first["failed"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(first["failures"][0]["symbol"], "BAD^SYM");
    let statuses: Vec<&str> = first["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["filled", "failed", "filled"]);

    let (code, second, stderr) = warm("AAPL,GOOGL");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(second["upstream_requests"], 0);
    assert_eq!(second["invocations"], 0);
    for dataset in second["datasets"].as_array().unwrap() {
        assert_eq!(dataset["status"], "local_hit");
    }
}

#[test]
fn ls_lists_datasets_with_facts_and_the_validated_version() {
    let dir = tempfile::tempdir().unwrap();
    let (code, got, _) = get(dir.path(), "AAPL", "2024-04-01", "2024-04-30");
    assert_eq!(code, 0);
    get(dir.path(), "MSFT", "2024-04-01", "2024-04-30");

    let (code, all, stderr) = cachefill(dir.path(), &["ls", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let objects = all["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 2);
    let aapl = &objects[0];
    assert_eq!(aapl["key"], got["key"]);
    assert_eq!(aapl["rows"], 22);
    assert_eq!(aapl["min"], got["min"]);
    assert_eq!(aapl["max"], got["max"]);
    assert!(aapl["size"].as_u64().unwrap() > 0);
    assert_eq!(aapl["version_id"], got["version_id"]);
    assert_eq!(aapl["validated_version"], got["version_id"]);
    assert_eq!(aapl["local"], "current");

    let (_, filtered, _) = cachefill(
        dir.path(),
        &[
            "ls",
            "--prefix",
            "synthetic/stock/day/ohlc/stock_MS",
            "--json",
        ],
    );
    assert_eq!(filtered["objects"].as_array().unwrap().len(), 1);
    let (_, none, _) = cachefill(
        dir.path(),
        &["ls", "--prefix", "v1/synthetic/option", "--json"],
    );
    assert_eq!(none["objects"].as_array().unwrap().len(), 0);
}

/// Put objects straight into the embedded bucket, as lumibot's own uploads would land.
fn put_raw(dir: &Path, objects: &[(&str, &[u8])]) {
    use cachefill_core::storage::{ObjectStore, PutOptions, local::LocalStore};
    let store = LocalStore::new(dir.join(".cachefill/bucket")).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for (key, body) in objects {
        runtime
            .block_on(store.put(key, body.to_vec().into(), PutOptions::default()))
            .unwrap();
    }
}

#[test]
fn ls_and_audit_list_the_other_objects_lumibot_keeps_by_kind() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(get(dir.path(), "AAPL", "2024-04-01", "2024-04-30").0, 0);
    put_raw(
        dir.path(),
        &[
            (
                "v1/thetadata/stock/option_chains/SPY_2024-04-01.parquet",
                b"torn",
            ),
            (
                "v1/thetadata/stock/events/splits/SPY_splits.meta.json",
                br#"{"ranges": [["2024-01-01", "2024-04-30"]]}"#,
            ),
        ],
    );
    let (code, listed, stderr) = cachefill(dir.path(), &["ls", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(listed["objects"].as_array().unwrap().len(), 1);
    let kinds: Vec<&str> = listed["others"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["option_chain", "event_ranges"]);

    let (code, audited, stderr) = cachefill(dir.path(), &["audit", "--json"]);
    assert_eq!(
        code, 0,
        "other objects are never divergences: {audited} {stderr}"
    );
    assert_eq!(audited["others"]["option_chain"], 1);
    assert_eq!(audited["others"]["event_ranges"], 1);
    let notes = audited["other_notes"].as_array().unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["kind"], "option_chain");
}

#[test]
fn audit_is_clean_after_the_demo_and_lists_every_divergence() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(cachefill(dir.path(), &["demo", "--json"]).0, 0);
    let (code, clean, stderr) = cachefill(dir.path(), &["audit", "--json"]);
    assert_eq!(code, 0, "{clean} {stderr}");
    assert_eq!(clean["objects"], 1);
    assert_eq!(clean["local_files"], 1);
    assert_eq!(clean["divergences"].as_array().unwrap().len(), 0);

    // Break the local sidecar, and leave a local file the bucket never had.
    let cache = dir.path().join(".cachefill/cache/synthetic/stock/day/ohlc");
    let sidecar = cache.join("stock_AAPL_day_ohlc.parquet.meta.json");
    let text = std::fs::read_to_string(&sidecar).unwrap();
    let broken: String = text.replace("\"checksum\": \"", "\"checksum\": \"00");
    std::fs::write(&sidecar, broken).unwrap();
    std::fs::copy(
        cache.join("stock_AAPL_day_ohlc.parquet"),
        cache.join("stock_ZZZ_day_ohlc.parquet"),
    )
    .unwrap();

    let (code, found, _) = cachefill(dir.path(), &["audit", "--json"]);
    assert_eq!(code, 5);
    let kinds: Vec<&str> = found["divergences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["local_sidecar_mismatch", "local_only"]);
}

#[test]
fn clear_and_invalidate_touch_only_the_local_cache() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(get(dir.path(), "AAPL", "2024-04-01", "2024-04-30").0, 0);
    assert_eq!(get(dir.path(), "MSFT", "2024-04-01", "2024-04-30").0, 0);
    let cache = dir.path().join(".cachefill/cache/synthetic/stock/day/ohlc");

    let (code, dry, _) = cachefill(
        dir.path(),
        &["invalidate", "--symbol", "aapl", "--dry-run", "--json"],
    );
    assert_eq!(code, 0);
    assert_eq!(dry["removed"].as_array().unwrap().len(), 1);
    assert!(cache.join("stock_AAPL_day_ohlc.parquet").exists());

    let (code, removed, _) = cachefill(
        dir.path(),
        &[
            "invalidate",
            "--symbol",
            "AAPL",
            "--timespan",
            "day",
            "--json",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(
        removed["removed"][0]["relative_path"],
        "synthetic/stock/day/ohlc/stock_AAPL_day_ohlc.parquet"
    );
    assert!(!cache.join("stock_AAPL_day_ohlc.parquet").exists());
    assert!(!cache.join("stock_AAPL_day_ohlc.parquet.meta.json").exists());
    assert!(cache.join("stock_MSFT_day_ohlc.parquet").exists());
    let (_, listed, _) = cachefill(dir.path(), &["ls", "--json"]);
    assert_eq!(
        listed["objects"].as_array().unwrap().len(),
        2,
        "the bucket keeps both"
    );
    let (_, again, _) = get(dir.path(), "AAPL", "2024-04-01", "2024-04-30");
    assert_eq!(again["source"], "remote_hit");

    let (code, young, _) = cachefill(dir.path(), &["clear", "--max-age-days", "1", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(young["removed"].as_array().unwrap().len(), 0);
    let (code, all, _) = cachefill(dir.path(), &["clear", "--max-age-days", "0", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(all["removed"].as_array().unwrap().len(), 2);
    assert!(common::cached_files(&dir.path().join(".cachefill/cache")).is_empty());
    let (_, listed, _) = cachefill(dir.path(), &["ls", "--json"]);
    assert_eq!(listed["objects"].as_array().unwrap().len(), 2);
}

#[test]
fn help_documents_the_exit_codes() {
    let out = Command::new(env!("CARGO_BIN_EXE_cachefill"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("Exit codes"), "{help}");
    for command in ["get", "warm", "ls", "audit", "clear", "invalidate", "demo"] {
        assert!(help.contains(command), "{command} missing from --help");
    }
}

/// `warm` of corporate events for several symbols and `get` of a chain, on the embedded
/// default with ThetaData replayed: lumibot's files, validated, listed by `ls`; a second
/// `warm` is all local hits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_chains_warm_get_and_list() {
    use cachefill_testing::thetadata::{ReplayServer, Reply};
    let server = ReplayServer::thetadata().await.unwrap();
    server.respond_with("/v2/hist/stock/split", |q| {
        (q.get("root").map(String::as_str) == Some("NVDA")).then(|| {
            Reply::json(
                r#"{"header":{"format":["ms_of_day","split_date","before_shares","after_shares","date"]},"response":[[0,20240610,1,10,20240610]]}"#,
            )
        }).or_else(|| Some(Reply::no_data()))
    });
    server.respond_with("/v2/hist/stock/dividend", |_| Some(Reply::no_data()));
    server.respond_with("/v3/option/list/strikes", |_| {
        Some(Reply::json(
            r#"{"response":[{"strike":580.0},{"strike":585.0}]}"#,
        ))
    });
    let dir = tempfile::tempdir().unwrap();
    let base = server.base_url();
    let run = |args: Vec<&'static str>| {
        let dir = dir.path().to_path_buf();
        let base = base.clone();
        move || {
            let mut full = args.clone();
            full.push("--json");
            cachefill_with(&dir, &full, &[("THETADATA_BASE_URL", base.as_str())])
        }
    };
    let warm = vec![
        "warm",
        "--symbols",
        "NVDA,AAPL",
        "--provider",
        "thetadata",
        "--asset-type",
        "stock",
        "--datastyle",
        "splits,dividends",
        "--start",
        "2024-01-01",
        "--end",
        "2024-12-31",
    ];
    let (code, first, stderr) = tokio::task::spawn_blocking(run(warm.clone()))
        .await
        .unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(first["ok"], 4, "{first}");
    let statuses: Vec<&str> = first["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["filled"; 4]);
    assert_eq!(
        first["upstream_requests"], 4,
        "one request per symbol and type"
    );

    let (code, again, _) = tokio::task::spawn_blocking(run(warm)).await.unwrap();
    assert_eq!(code, 0);
    assert_eq!(again["invocations"], 0, "{again}");
    assert!(
        again["datasets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["status"] == "local_hit")
    );

    let chain = vec![
        "get",
        "--provider",
        "thetadata",
        "--asset-type",
        "stock",
        "--symbol",
        "SPY",
        "--datastyle",
        "option_chains",
        "--start",
        "2024-11-15",
    ];
    let (code, got, stderr) = tokio::task::spawn_blocking(run(chain)).await.unwrap();
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(got["source"], "filled");
    assert_eq!(got["rows"], 311);
    assert!(
        got["path"]
            .as_str()
            .unwrap()
            .ends_with("thetadata/stock/option_chains/SPY_2024-11-15.parquet")
    );

    let (code, listed, stderr) = tokio::task::spawn_blocking(run(vec!["ls"])).await.unwrap();
    assert_eq!(code, 0, "{stderr}");
    let others = listed["others"].as_array().unwrap();
    let nvda = others
        .iter()
        .find(|o| o["key"] == "v1/thetadata/stock/events/splits/NVDA_splits.parquet")
        .unwrap_or_else(|| panic!("{others:?}"));
    assert_eq!(nvda["validated"]["rows"], 1, "{nvda}");
    assert_eq!(nvda["validated"]["min"], "2024-06-10");
    let chain = others.iter().find(|o| o["kind"] == "option_chain").unwrap();
    assert_eq!(chain["validated"]["rows"], 311);
    assert_eq!(
        others
            .iter()
            .filter(|o| o["kind"] == "event_ranges")
            .count(),
        5,
        "every symbol and type has its ranges, events or not, and the chain's split lookup SPY's"
    );
}

/// [`cachefill`] with extra environment.
fn cachefill_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, Value, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cachefill"));
    command.current_dir(dir).args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("LUMIBOT_CACHE_") || name.starts_with("AWS_ENDPOINT_URL") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    let output = command.output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    let json = if !stdout.trim().is_empty() && args.contains(&"--json") {
        serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{args:?}: stdout is not JSON ({e}): {stdout}\n{stderr}"))
    } else {
        Value::Null
    };
    (output.status.code().unwrap(), json, stderr)
}

/// The executable is linked at a fixed address on Linux (client/build.rs): an ELF `ET_EXEC`,
/// with nothing for the loader to relocate at every start.
#[cfg(target_os = "linux")]
#[test]
fn the_executable_is_not_position_independent() {
    let elf = std::fs::read(env!("CARGO_BIN_EXE_cachefill")).unwrap();
    assert_eq!(&elf[..4], b"\x7fELF");
    let e_type = u16::from_le_bytes([elf[16], elf[17]]);
    assert_eq!(
        e_type, 2,
        "e_type {e_type}: 2 is ET_EXEC, 3 a position-independent ET_DYN"
    );
}
