//! `cachefill key` and `cachefill fill`, run as a user runs them.

use std::process::{Command, Output};

use serde_json::Value;

fn cachefill(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cachefill"))
        .args(args)
        .current_dir(dir)
        .env_remove("LUMIBOT_CACHE_BACKEND")
        .env_remove("LUMIBOT_CACHE_MODE")
        .output()
        .expect("cachefill runs")
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "exit {:?}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON object on stdout")
}

#[test]
fn key_prints_relative_path_and_remote_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = cachefill(
        &[
            "key",
            r#"{"provider":"thetadata","asset_type":"option","symbol":"SPY","timespan":"1D","datastyle":"ohlc","expiration":"2023-08-01","strike":100,"right":"CALL"}"#,
            "--prefix",
            " /stage/cache/ ",
            "--version",
            "v3",
            "--json",
        ],
        dir.path(),
    );
    let v = json(&out);
    assert_eq!(
        v["relative_path"],
        "thetadata/option/1d/ohlc/option_SPY_230801_100_CALL_1D_ohlc.parquet"
    );
    assert_eq!(
        v["remote_key"],
        "stage/cache/v3/thetadata/option/1d/ohlc/option_SPY_230801_100_CALL_1D_ohlc.parquet"
    );
}

#[test]
fn key_rejects_bad_payloads_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = cachefill(
        &[
            "key",
            r#"{"provider":"thetadata","asset_type":"stock","symbol":"^SPX","timespan":"minute","datastyle":"ohlc"}"#,
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("symbol '^SPX' contains '^'"), "{stderr}");
}

const FILL: [&str; 15] = [
    "fill",
    "--provider",
    "synthetic",
    "--asset-type",
    "stock",
    "--symbol",
    "msft",
    "--timespan",
    "hour",
    "--datastyle",
    "ohlc",
    "--start",
    "2024-01-02",
    "--end",
    "2024-03-28",
];

#[test]
fn fill_twice_on_the_embedded_default_is_filled_then_hit() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = FILL.to_vec();
    args.push("--json");
    let first = json(&cachefill(&args, dir.path()));
    assert_eq!(first["status"], "filled");
    assert_eq!(first["sessions_fetched"], 61);
    assert_eq!(
        first["key"],
        "v1/synthetic/stock/hour/ohlc/stock_MSFT_hour_ohlc.parquet"
    );
    let on_disk = dir.path().join(".cachefill/bucket");
    assert!(
        on_disk.is_dir(),
        "the embedded default bucket lives in ./.cachefill/bucket"
    );

    let second = json(&cachefill(&args, dir.path()));
    assert_eq!(second["status"], "hit");
    assert_eq!(second["upstream_requests"], 0);
    assert_eq!(second["sha256"], first["sha256"]);

    // The human form names the status and the key.
    let text = cachefill(&FILL, dir.path());
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.starts_with("hit "), "{stdout}");
    assert!(stdout.contains("upstream requests 0"), "{stdout}");
}

#[test]
fn fill_with_a_bad_range_exits_2_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = FILL.to_vec();
    args[12] = "2024-04-01";
    let out = cachefill(&args, dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is after end"));
    assert!(!dir.path().join(".cachefill/bucket").exists());
}

#[test]
fn fill_of_a_provider_not_served_here_is_an_invalid_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = FILL.to_vec();
    args[2] = "databento";
    let out = cachefill(&args, dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not supported yet"));
    // Binance serves trades, not bars: the message says what to ask for.
    args[2] = "binance";
    let out = cachefill(&args, dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("datastyle 'aggtrades'"));
}

#[test]
fn key_prints_lumibots_paths_of_events_and_chains() {
    let dir = tempfile::tempdir().unwrap();
    let events = json(&cachefill(
        &[
            "key",
            r#"{"provider":"thetadata","asset_type":"stock","symbol":"brk.b","datastyle":"dividends"}"#,
            "--json",
        ],
        dir.path(),
    ));
    assert_eq!(
        events["relative_path"],
        "thetadata/stock/events/dividends/BRK_B_dividends.parquet"
    );
    assert_eq!(
        events["sidecar_key"],
        "v1/thetadata/stock/events/dividends/BRK_B_dividends.meta.json"
    );
    let chain = json(&cachefill(
        &[
            "key",
            r#"{"provider":"thetadata","asset_type":"index","symbol":"SPX","datastyle":"option_chains","date":"2024-11-15"}"#,
            "--json",
        ],
        dir.path(),
    ));
    assert_eq!(
        chain["remote_key"],
        "v1/thetadata/index/option_chains/SPX_2024-11-15.parquet"
    );
    assert_eq!(chain["sidecar_key"], Value::Null);
    let bad = cachefill(
        &[
            "key",
            r#"{"provider":"thetadata","asset_type":"option","symbol":"SPY","datastyle":"splits"}"#,
        ],
        dir.path(),
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("stocks only"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
