//! `cachefill validate` as a user runs it: on files of a lumibot cache folder, on the
//! folder itself, and on a key in a bucket.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cachefill_core::codec::rows::rows_to_batch;
use cachefill_core::codec::{self, BatchFacts, Rows, Sidecar};
use cachefill_core::dataset::Dataset;
use cachefill_core::keys::{KeyLayout, relative_path};
use cachefill_core::providers::synthetic;
use cachefill_core::storage::local::LocalStore;
use cachefill_core::storage::{ObjectStore, PutOptions};

fn spy() -> Dataset {
    Dataset::from_json(
        r#"{"provider":"thetadata","asset_type":"stock","symbol":"SPY","timespan":"minute","datastyle":"ohlc"}"#,
    )
    .unwrap()
}

fn qqq() -> Dataset {
    Dataset::from_json(
        r#"{"provider":"thetadata","asset_type":"stock","symbol":"QQQ","timespan":"minute","datastyle":"ohlc"}"#,
    )
    .unwrap()
}

/// A parquet as the miss-handler writes it; `reversed` puts its rows backwards in time.
fn parquet(dataset: &Dataset, reversed: bool) -> Vec<u8> {
    let sessions = ["2024-09-16".parse().unwrap()];
    let rows = match synthetic::generate(dataset, &sessions, false) {
        Rows::Ohlc(mut bars) if reversed => {
            bars.reverse();
            Rows::Ohlc(bars)
        }
        rows => rows,
    };
    let batch = rows_to_batch(dataset, rows).unwrap();
    codec::encode(&batch, &BTreeMap::new()).unwrap().to_vec()
}

fn sidecar(bytes: &[u8]) -> String {
    let decoded = codec::decode(bytes.to_vec().into()).unwrap();
    let facts = BatchFacts::of(&decoded.batch).unwrap();
    Sidecar::new(&facts, &codec::sha256_hex(bytes), chrono::Utc::now()).to_json()
}

/// Write a dataset's parquet (and optionally a sidecar) under a cache root.
fn write(root: &Path, dataset: &Dataset, bytes: &[u8], sidecar_text: Option<&str>) -> PathBuf {
    let path = root.join(relative_path(dataset));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, bytes).unwrap();
    if let Some(text) = sidecar_text {
        std::fs::write(format!("{}.meta.json", path.display()), text).unwrap();
    }
    path
}

fn cachefill(cwd: &Path, cache_root: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cachefill"));
    for (name, _) in std::env::vars() {
        if name.starts_with("LUMIBOT_") || name.starts_with("AWS_") {
            command.env_remove(name);
        }
    }
    command
        .current_dir(cwd)
        .env("LUMIBOT_CACHE_FOLDER", cache_root)
        .args(["validate"])
        .args(args)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn a_valid_file_with_its_sidecar_passes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let bytes = parquet(&spy(), false);
    let path = write(&root, &spy(), &bytes, Some(&sidecar(&bytes)));
    let output = cachefill(dir.path(), &root, &[path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let out = stdout(&output);
    assert!(out.starts_with("valid "), "{out}");
    assert!(
        out.contains(".meta.json"),
        "the sidecar was checked too: {out}"
    );
}

#[test]
fn an_invalid_file_prints_every_violation_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let bytes = parquet(&spy(), true);
    let other = parquet(&spy(), false);
    let path = write(&root, &spy(), &bytes, Some(&sidecar(&other)));
    let output = cachefill(dir.path(), &root, &[path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let out = stdout(&output);
    assert!(out.starts_with("INVALID "), "{out}");
    assert!(out.contains("  - unsorted: "), "{out}");
    assert!(out.contains("  - sidecar_mismatch: checksum"), "{out}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("1 of 1 file(s)"),
        "{output:?}"
    );
}

#[test]
fn a_folder_is_checked_file_by_file_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let good = parquet(&spy(), false);
    write(&root, &spy(), &good, Some(&sidecar(&good)));
    write(&root, &qqq(), &parquet(&qqq(), true), None);
    let stray = root.join("thetadata/stock/minute/ohlc/notes.parquet");
    std::fs::write(&stray, b"x").unwrap();
    let upload = root.join(format!("{}.tmp-1726500000-ab12", relative_path(&spy())));
    std::fs::write(&upload, b"half").unwrap();
    // Chains, events and their ranges are judged by their own rules; a snapshot is only
    // listed by kind with what was seen.
    let chains = root.join("thetadata/stock/option_chains");
    std::fs::create_dir_all(&chains).unwrap();
    std::fs::write(chains.join("SPY_2024-09-16.parquet"), b"torn").unwrap();
    let events = root.join("thetadata/stock/events/splits");
    std::fs::create_dir_all(&events).unwrap();
    std::fs::write(events.join("SPY_splits.parquet"), &good).unwrap();
    std::fs::write(
        events.join("SPY_splits.meta.json"),
        br#"{"ranges": [["2024-01-01", "2024-09-30"]]}"#,
    )
    .unwrap();
    let snapshots = root.join("thetadata/stock/snapshot/quote");
    std::fs::create_dir_all(&snapshots).unwrap();
    std::fs::write(snapshots.join("stock_SPY_snapshot.parquet"), b"torn").unwrap();

    let output = cachefill(dir.path(), &root, &[root.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let out = stdout(&output);
    assert!(
        out.lines()
            .any(|l| l
                == "5 file(s) checked: 2 valid, 3 invalid; 4 other lumibot object(s); 1 skipped"),
        "{out}"
    );
    assert!(
        out.contains("snapshot ") && out.contains("  - unreadable parquet"),
        "{out}"
    );
    assert!(
        out.contains("INVALID  ")
            && out.contains("SPY_splits.parquet\n  - events: no 'event_date' column"),
        "{out}"
    );
    assert!(
        out.contains("SPY_2024-09-16.parquet\n  - not_parquet: "),
        "{out}"
    );
    assert!(
        out.contains("valid    ") && out.contains("SPY_splits.meta.json"),
        "{out}"
    );
    assert!(
        out.contains("skipped  ") && out.contains("notes.parquet"),
        "{out}"
    );
    assert!(
        !out.contains(".tmp-"),
        "lumibot's uploads in flight are not files: {out}"
    );

    let output = cachefill(dir.path(), &root, &[root.to_str().unwrap(), "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let json: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(json["checked"], 5);
    assert_eq!(json["valid"], 2);
    assert_eq!(json["invalid"], 3);
    let bad = json["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["valid"] == false)
        .unwrap();
    assert_eq!(bad["relative_path"], relative_path(&qqq()));
    assert_eq!(bad["violations"][0]["rule"], "unsorted");
    assert_eq!(json["skipped"].as_array().unwrap().len(), 1);
    let others = json["others"].as_array().unwrap();
    assert_eq!(others.len(), 4, "{others:?}");
    let events = others.iter().find(|o| o["kind"] == "events").unwrap();
    assert_eq!(events["valid"], false);
    assert_eq!(events["violations"][0]["rule"], "events");
    let ranges = others.iter().find(|o| o["kind"] == "event_ranges").unwrap();
    assert_eq!(
        (&ranges["valid"], &ranges["rows"]),
        (&Value::Bool(true), &Value::from(1))
    );
    let snapshot = others.iter().find(|o| o["kind"] == "snapshot").unwrap();
    assert_eq!(snapshot["valid"], Value::Null, "only recognised");
}

#[test]
fn a_file_outside_the_cache_folder_needs_dataset_from_path() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    std::fs::create_dir_all(&root).unwrap();
    let copy = dir.path().join("backup");
    let bytes = parquet(&spy(), false);
    let path = write(&copy, &spy(), &bytes, None);

    let output = cachefill(dir.path(), &root, &[path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--dataset-from-path"),
        "{output:?}"
    );
    let output = cachefill(
        dir.path(),
        &root,
        &[path.to_str().unwrap(), "--dataset-from-path", "--json"],
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let json: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(json["files"][0]["dataset"], spy().to_string());
}

#[tokio::test]
async fn a_key_in_the_bucket_is_checked_with_its_sidecar() {
    let dir = tempfile::tempdir().unwrap();
    let bucket_dir = dir.path().join("bucket");
    let store = LocalStore::new(&bucket_dir).unwrap();
    let layout = KeyLayout::new("", "v1");
    let key = layout.data_key(&spy());
    let good = parquet(&spy(), false);
    store
        .put(&key, good.clone().into(), PutOptions::default())
        .await
        .unwrap();
    store
        .put(
            &layout.sidecar_key(&spy()),
            sidecar(&good).into(),
            PutOptions::default(),
        )
        .await
        .unwrap();
    let root = dir.path().join("cache");
    let bucket_arg = bucket_dir.to_str().unwrap();

    for name in [key.as_str(), &relative_path(&spy())] {
        let output = cachefill(dir.path(), &root, &[name, "--bucket-dir", bucket_arg]);
        assert_eq!(output.status.code(), Some(0), "{name}: {output:?}");
        assert!(
            stdout(&output).starts_with(&format!("valid    {key}")),
            "{output:?}"
        );
    }

    store
        .put(&key, parquet(&spy(), true).into(), PutOptions::default())
        .await
        .unwrap();
    let output = cachefill(dir.path(), &root, &[&key, "--bucket-dir", bucket_arg]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let out = stdout(&output);
    assert!(out.contains("  - unsorted: "), "{out}");
    assert!(
        out.contains("  - sidecar_mismatch: "),
        "the old sidecar no longer agrees: {out}"
    );

    let output = cachefill(
        dir.path(),
        &root,
        &[
            "v1/thetadata/stock/minute/ohlc/stock_NOPE_minute_ohlc.parquet",
            "--bucket-dir",
            bucket_arg,
        ],
    );
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}
