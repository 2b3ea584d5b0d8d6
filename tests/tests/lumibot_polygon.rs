//! lumibot 4.6.30 reads cachefill's Polygon files as its own: `polygon_helper`'s
//! `get_price_data_from_polygon` over a folder cachefill filled makes no Polygon call and
//! returns the frame it returns from the file it fills itself from the same responses
//! (`tests/lumibot/polygon_driver.py` says how each side runs).
//!
//! The responses are synthetic aggregates in Polygon's shape (`providers::synthetic`), one
//! list per dataset: the engine fills from them through a scripted provider, and lumibot's
//! own downloader gets them from a replaced Polygon client, as `get_aggs` would answer. Every
//! case has a session without bars, so both files hold a placeholder.
//!
//! `CACHEFILL_E2E=skip` skips this test (it says so).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, ensure};
use cachefill_core::calendar;
use cachefill_core::codec::Rows;
use cachefill_core::dataset::Dataset;
use cachefill_core::fill::{EngineConfig, FillEngine, FillRequest, FillStatus};
use cachefill_core::keys::{self, KeyLayout};
use cachefill_core::providers::synthetic;
use cachefill_core::storage::ObjectStore;
use cachefill_core::storage::local::LocalStore;
use cachefill_e2e::lumibot::Lumibot;
use cachefill_e2e::tools::{Tools, skipped};
use cachefill_testing::doubles::ScriptedProvider;
use chrono::NaiveDate;
use serde_json::{Value, json};

const TEST: &str = "lumibot reads cachefill's Polygon files";

struct Case {
    payload: &'static str,
    asset: Value,
    start: &'static str,
    end: &'static str,
    gap: &'static str,
    /// lumibot checks a stock's splits with Polygon unless a `_splits.parquet` from today
    /// lies beside its file.
    splits_sidecar: bool,
}

fn d(text: &str) -> NaiveDate {
    text.parse().expect("a date")
}

/// Fill `case` into the lumibot cache folder `ours` through the engine; the responses, in
/// Polygon's JSON shape.
async fn fill(case: &Case, ours: &Path, bucket: &Path) -> anyhow::Result<Vec<Value>> {
    let dataset = Dataset::from_json(case.payload)?;
    let scripted = ScriptedProvider::new();
    let mut results = Vec::new();
    for session in calendar::sessions_between(d(case.start), d(case.end))? {
        if session == d(case.gap) {
            continue;
        }
        // Regular hours: lumibot's coverage by UTC date would count a winter evening's
        // after-hours bars for the next day.
        let rows = synthetic::generate(&dataset, &[session], false);
        let Rows::Aggs(bars) = &rows else {
            anyhow::bail!("synthetic rows of a polygon dataset are aggregates");
        };
        results.extend(bars.iter().map(|b| {
            json!({"v": b.volume, "vw": b.vwap, "o": b.open, "c": b.close, "h": b.high,
                   "l": b.low, "t": b.time / 1_000_000, "n": b.transactions})
        }));
        scripted.set(session, rows);
    }
    let store = LocalStore::new(bucket)?;
    let engine = FillEngine::new(
        store,
        Arc::new(scripted),
        EngineConfig::new("e2e", KeyLayout::new("", "v1")),
    );
    let request = FillRequest::new(dataset.clone(), d(case.start), d(case.end), false)?;
    let answer = engine.fill(&request).await?;
    ensure!(answer.status == FillStatus::Filled, "{answer:?}");
    let body = engine.store().get(&answer.key, None).await?.bytes;
    let file = ours.join(keys::relative_path(&dataset));
    std::fs::create_dir_all(file.parent().context("a parent")?)?;
    std::fs::write(&file, &body)?;
    Ok(results)
}

#[tokio::test]
async fn lumibot_reads_cachefills_polygon_files_as_its_own() -> anyhow::Result<()> {
    if skipped(TEST) {
        return Ok(());
    }
    let tools = Tools::locate()?;
    let dir = tempfile::Builder::new()
        .prefix("cachefill-lumibot-polygon-")
        .tempdir()?;
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home)?;
    let lumibot = Lumibot::locate(&tools, &home).await?;
    let cases = [
        Case {
            payload: r#"{"provider":"polygon","asset_type":"stock","symbol":"SPY","timespan":"day","datastyle":"ohlc"}"#,
            asset: json!({"symbol": "SPY", "asset_type": "stock"}),
            start: "2024-01-02",
            end: "2024-03-28",
            gap: "2024-02-14",
            splits_sidecar: true,
        },
        Case {
            payload: r#"{"provider":"polygon","asset_type":"index","symbol":"SPX","timespan":"minute","datastyle":"ohlc"}"#,
            asset: json!({"symbol": "SPX", "asset_type": "index"}),
            start: "2024-01-08",
            end: "2024-01-10",
            gap: "2024-01-09",
            splits_sidecar: false,
        },
    ];
    let mut specs = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let ours = dir.path().join(format!("ours-{i}"));
        let theirs = dir.path().join(format!("theirs-{i}"));
        let results = fill(case, &ours, &dir.path().join(format!("bucket-{i}"))).await?;
        specs.push(json!({
            "asset": case.asset, "timespan": Dataset::from_json(case.payload)?.timespan.as_str(),
            "start": format!("{}T00:00:00", case.start), "end": format!("{}T23:59:00", case.end),
            "results": results, "ours": ours, "theirs": theirs,
            "splits_sidecar": case.splits_sidecar,
        }));
    }
    let spec_file = dir.path().join("cases.json");
    std::fs::write(&spec_file, serde_json::to_vec(&specs)?)?;
    let env = [(
        "LUMIBOT_CACHE_FOLDER".to_string(),
        dir.path().join("unused").display().to_string(),
    )];
    let out = lumibot.run_polygon(&[spec_file.as_os_str()], &env).await?;
    let outcomes = out.as_array().context("one outcome per case")?;
    ensure!(outcomes.len() == cases.len(), "{out}");
    for (case, outcome) in cases.iter().zip(outcomes) {
        ensure!(
            outcome["client_calls"] == 0,
            "{}: lumibot used its Polygon client: {outcome}",
            case.payload
        );
        ensure!(outcome["error"].is_null(), "{}: {outcome}", case.payload);
        ensure!(
            !outcome["get_aggs"].as_array().is_none_or(Vec::is_empty),
            "lumibot's own fill asked Polygon: {outcome}"
        );
        ensure!(
            outcome["equal"] == true,
            "{}: frames differ: {}",
            case.payload,
            outcome["difference"]
        );
        let sessions = calendar::sessions_between(d(case.start), d(case.end))?.len();
        ensure!(
            outcome["theirs_rows"].as_u64() >= Some(sessions as u64),
            "{outcome}"
        );
    }
    Ok(())
}
