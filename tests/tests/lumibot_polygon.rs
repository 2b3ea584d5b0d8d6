//! lumibot 4.6.30 reads cachefill's Polygon files as its own: `polygon_helper`'s
//! `get_price_data_from_polygon` over a folder cachefill filled makes no Polygon call and
//! returns the frame it returns from the file it fills itself from the same responses
//! (`tests/lumibot/polygon_driver.py` says how each side runs).
//!
//! Both sides fill from one Polygon replay server (`cachefill_testing::polygon`): cachefill
//! through its Polygon provider, lumibot through its own Polygon client (polygon-api-client's
//! `RESTClient`) pointed at the server. Each ticker is listed after its range starts, so both
//! files hold placeholders for the sessions before its first bar.
//!
//! `CACHEFILL_E2E=skip` skips this test (it says so).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, ensure};
use cachefill_core::calendar;
use cachefill_core::dataset::Dataset;
use cachefill_core::fill::{EngineConfig, FillEngine, FillRequest, FillStatus};
use cachefill_core::keys::{self, KeyLayout};
use cachefill_core::providers::polygon::{PolygonConfig, PolygonProvider};
use cachefill_core::settings::Secret;
use cachefill_core::storage::ObjectStore;
use cachefill_core::storage::local::LocalStore;
use cachefill_e2e::lumibot::Lumibot;
use cachefill_e2e::tools::{Tools, skipped};
use cachefill_testing::polygon::PolygonReplay;
use cachefill_testing::thetadata::Reply;
use chrono::NaiveDate;
use serde_json::{Value, json};

const TEST: &str = "lumibot reads cachefill's Polygon files";
const KEY: &str = "lumibot-polygon-e2e-key";

struct Case {
    payload: &'static str,
    asset: Value,
    /// Polygon's ticker of the asset.
    ticker: &'static str,
    start: &'static str,
    end: &'static str,
    /// The first session with bars.
    listed: &'static str,
    /// lumibot checks a stock's splits with Polygon unless a `_splits.parquet` from today
    /// lies beside its file.
    splits_sidecar: bool,
}

fn d(text: &str) -> NaiveDate {
    text.parse().expect("a date")
}

/// Fill `case` from the replay server into the lumibot cache folder `ours` through the
/// engine and the Polygon provider; the upstream requests it made.
async fn fill(
    case: &Case,
    replay: &PolygonReplay,
    ours: &Path,
    bucket: &Path,
) -> anyhow::Result<u64> {
    let dataset = Dataset::from_json(case.payload)?;
    let provider = PolygonProvider::new(PolygonConfig::new(&replay.base_url(), Secret::new(KEY)))?;
    let store = LocalStore::new(bucket)?;
    let engine = FillEngine::new(
        store,
        Arc::new(provider),
        EngineConfig::new("e2e", KeyLayout::new("", "v1")),
    );
    let request = FillRequest::new(dataset.clone(), d(case.start), d(case.end), true)?;
    let answer = engine.fill(&request).await?;
    ensure!(answer.status == FillStatus::Filled, "{answer:?}");
    let body = engine.store().get(&answer.key, None).await?.bytes;
    let file = ours.join(keys::relative_path(&dataset));
    std::fs::create_dir_all(file.parent().context("a parent")?)?;
    std::fs::write(&file, &body)?;
    Ok(answer.upstream_requests)
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
    let replay = PolygonReplay::start(KEY).await?;
    // lumibot asks for a stock's splits once its file exists.
    replay.server().respond_with("/v3/reference/splits", |_| {
        Some(Reply::json(
            r#"{"results":[],"status":"OK","request_id":"splits"}"#,
        ))
    });
    let cases = [
        // As lumibot's Polygon backtests name it: with the quote asset.
        Case {
            payload: r#"{"provider":"polygon","asset_type":"stock","symbol":"SPY","timespan":"day","datastyle":"ohlc","quote":"USD"}"#,
            asset: json!({"symbol": "SPY", "asset_type": "stock", "quote": "USD"}),
            ticker: "SPY",
            start: "2024-01-02",
            end: "2024-03-28",
            listed: "2024-01-05",
            splits_sidecar: true,
        },
        Case {
            payload: r#"{"provider":"polygon","asset_type":"index","symbol":"SPX","timespan":"minute","datastyle":"ohlc"}"#,
            asset: json!({"symbol": "SPX", "asset_type": "index"}),
            ticker: "I:SPX",
            start: "2024-01-08",
            end: "2024-01-10",
            listed: "2024-01-09",
            splits_sidecar: false,
        },
    ];
    let mut specs = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        replay.list_from(case.ticker, d(case.listed));
        let ours = dir.path().join(format!("ours-{i}"));
        let theirs = dir.path().join(format!("theirs-{i}"));
        let requests = fill(
            case,
            &replay,
            &ours,
            &dir.path().join(format!("bucket-{i}")),
        )
        .await?;
        ensure!(requests >= 1, "{}: the fill asked nothing", case.payload);
        specs.push(json!({
            "asset": case.asset, "timespan": Dataset::from_json(case.payload)?.timespan.as_str(),
            "start": format!("{}T00:00:00", case.start), "end": format!("{}T23:59:00", case.end),
            "base_url": replay.base_url(), "api_key": KEY,
            "ours": ours, "theirs": theirs, "splits_sidecar": case.splits_sidecar,
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
        // lumibot leaves placeholders out of the frame: one bar a session from the listing.
        let sessions = calendar::sessions_between(d(case.listed), d(case.end))?.len();
        ensure!(
            outcome["theirs_rows"].as_u64() >= Some(sessions as u64),
            "{outcome}"
        );
        let ours = keys::relative_path(&Dataset::from_json(case.payload)?);
        ensure!(
            outcome["lumibot_file"] == ours.as_str(),
            "lumibot names the file {} where cachefill put {ours}",
            outcome["lumibot_file"]
        );
    }
    Ok(())
}
