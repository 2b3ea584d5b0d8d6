//! Corporate events and option chains between cachefill and the real lumibot 4.6.30, driven
//! by `tests/lumibot/reference_driver.py` against the replay server:
//!
//! - **lumibot → cachefill**: lumibot's own `_ensure_event_cache` (splits and dividends) and
//!   `get_chains_cached` fetch through its downloader and write their files; `cachefill
//!   validate` judges every one valid.
//! - **cachefill → lumibot**: `cachefill get` fills the same events and chain into a folder
//!   laid out as lumibot's cache; lumibot's loaders read them with every provider call
//!   replaced by a failure: no call is made, and the frames and the chain equal the ones
//!   lumibot built from the same responses.
//!
//! Responses: TSLA's option lists are the recorded ones of `tests/fixtures/thetadata-v3-lists`
//! (lumibot's fixtures); no split or dividend history is recorded anywhere public, so the v2
//! corporate-action endpoints answer in their documented shape with TSLA's real splits
//! (5-for-1 on 2020-08-31, 3-for-1 on 2022-08-25), repeated on the trading days after each as
//! the endpoint does, and AAPL's real quarterly dividends of 2024 (0.24, then 0.25).
//!
//! `CACHEFILL_E2E=skip` skips these tests (they say so).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, ensure};
use cachefill_e2e::lumibot::{Lumibot, terminal_env};
use cachefill_e2e::tools::{Tools, skipped};
use cachefill_testing::thetadata::{Exchange, Query, ReplayServer, Reply};
use chrono::NaiveDate;
use serde_json::{Value, json};

const SPLITS_PATH: &str = "/v2/hist/stock/split";
const DIVIDENDS_PATH: &str = "/v2/hist/stock/dividend";
const EXPIRATIONS_PATH: &str = "/v3/option/list/expirations";
const STRIKES_PATH: &str = "/v3/option/list/strikes";
const CLI_TIMEOUT: Duration = Duration::from_secs(120);

/// (split date, before, after)
const TSLA_SPLITS: [(&str, u32, u32); 2] = [("2020-08-31", 1, 5), ("2022-08-25", 1, 3)];
/// (ex-date, record, payment, announced, amount)
const AAPL_DIVIDENDS: [(&str, &str, &str, &str, f64); 4] = [
    ("2024-02-09", "2024-02-12", "2024-02-15", "2024-02-01", 0.24),
    ("2024-05-10", "2024-05-13", "2024-05-16", "2024-05-02", 0.25),
    ("2024-08-12", "2024-08-12", "2024-08-15", "2024-08-01", 0.25),
    ("2024-11-08", "2024-11-11", "2024-11-14", "2024-10-31", 0.25),
];

fn d(text: &str) -> NaiveDate {
    text.parse().expect("a date")
}

fn yyyymmdd(date: NaiveDate) -> String {
    date.format("%Y%m%d").to_string()
}

fn window(query: &Query) -> Option<(NaiveDate, NaiveDate)> {
    let at = |name: &str| NaiveDate::parse_from_str(query.get(name)?, "%Y%m%d").ok();
    Some((at("start_date")?, at("end_date")?))
}

/// The v2 split history of TSLA over the asked window: each split on its day and the two
/// trading days after it (the endpoint repeats the latest split daily).
fn splits_reply(query: &Query) -> Option<Reply> {
    if query.get("root").map(String::as_str) != Some("TSLA") {
        return Some(Reply::no_data());
    }
    let (from, to) = window(query)?;
    let rows: Vec<String> = TSLA_SPLITS
        .iter()
        .flat_map(|(date, before, after)| {
            let day = d(date);
            (0..3)
                .map(move |n| day + chrono::Duration::days(n))
                .filter(move |t| *t >= from && *t <= to)
                .map(move |t| format!("[0,{},{before},{after},{}]", yyyymmdd(day), yyyymmdd(t)))
        })
        .collect();
    Some(if rows.is_empty() {
        Reply::no_data()
    } else {
        Reply::json(format!(
            r#"{{"header":{{"format":["ms_of_day","split_date","before_shares","after_shares","date"]}},"response":[{}]}}"#,
            rows.join(",")
        ))
    })
}

fn dividends_reply(query: &Query) -> Option<Reply> {
    if query.get("root").map(String::as_str) != Some("AAPL") {
        return Some(Reply::no_data());
    }
    let (from, to) = window(query)?;
    let rows: Vec<String> = AAPL_DIVIDENDS
        .iter()
        .filter(|(ex, ..)| d(ex) >= from && d(ex) <= to)
        .map(|(ex, record, pay, announced, amount)| {
            let [ex, record, pay, announced] = [ex, record, pay, announced].map(|t| yyyymmdd(d(t)));
            format!("[0,{ex},{record},{pay},{announced},{amount},0,0,{ex}]")
        })
        .collect();
    Some(if rows.is_empty() {
        Reply::no_data()
    } else {
        Reply::json(format!(
            r#"{{"header":{{"format":["ms_of_day","ex_date","record_date","payment_date","ann_date","dividend_amount","undefined","less_amount","date"]}},"response":[{}]}}"#,
            rows.join(",")
        ))
    })
}

fn list_fixture(name: &str) -> anyhow::Result<bytes::Bytes> {
    let dir = cachefill_testing::fixtures::dir("thetadata-v3-lists")?;
    Ok(Exchange::load(&dir.join(format!("{name}.json")))?
        .reply
        .body)
}

/// The events lumibot and cachefill are asked for: (name, symbol, type, start, end).
const EVENTS: [(&str, &str, &str, &str, &str); 3] = [
    ("tsla-splits", "TSLA", "splits", "2020-01-01", "2024-11-18"),
    (
        "aapl-dividends",
        "AAPL",
        "dividends",
        "2024-01-01",
        "2024-12-31",
    ),
    (
        "tsla-dividends",
        "TSLA",
        "dividends",
        "2024-01-01",
        "2024-12-31",
    ),
];
const CHAIN: (&str, &str, &str) = ("tsla-chain", "TSLA", "2024-11-15");

struct Harness {
    dir: tempfile::TempDir,
    server: ReplayServer,
    lumibot: Lumibot,
}

impl Harness {
    async fn start(test: &str) -> anyhow::Result<Option<Harness>> {
        if skipped(test) {
            return Ok(None);
        }
        let tools = Tools::locate()?;
        let dir = tempfile::Builder::new()
            .prefix("cachefill-lumibot-ref-")
            .tempdir()?;
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home)?;
        let lumibot = Lumibot::locate(&tools, &home).await?;
        let server = ReplayServer::thetadata().await?;
        server.respond_with(SPLITS_PATH, splits_reply);
        server.respond_with(DIVIDENDS_PATH, dividends_reply);
        server.register(
            EXPIRATIONS_PATH,
            &[("symbol", "TSLA"), ("format", "json")],
            Reply::json(list_fixture("option-list-expirations-TSLA")?),
        );
        let strikes = list_fixture("option-list-strikes-TSLA")?;
        server.respond_with(STRIKES_PATH, move |query| {
            (query.get("symbol").map(String::as_str) == Some("TSLA"))
                .then(|| Reply::json(strikes.clone()))
        });
        Ok(Some(Harness {
            dir,
            server,
            lumibot,
        }))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `reference_driver.py <command>` over the test's specs, lumibot's cache at `folder`.
    async fn driver(&self, command: &str, specs: &Value, folder: &Path) -> anyhow::Result<Value> {
        let file = self.path(&format!("{command}.json"));
        std::fs::write(&file, serde_json::to_vec_pretty(specs)?)?;
        Ok(self
            .lumibot
            .run_reference(
                &[Path::new(command), &file],
                &terminal_env(folder, &self.server.base_url()),
            )
            .await?)
    }

    /// `cachefill <args> --json` on the embedded default (bucket and cache under the test's
    /// folder), the replay server as its terminal.
    async fn cachefill(&self, args: &[&str], cache: &Path) -> anyhow::Result<Value> {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_e2e-cachefill"));
        command
            .args(args)
            .args(["--json", "--bucket-dir"])
            .arg(self.path("bucket"))
            .arg("--cache-dir")
            .arg(cache)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .current_dir(self.dir.path())
            .env("THETADATA_BASE_URL", self.server.base_url())
            .env("NO_COLOR", "1");
        for name in [
            "LUMIBOT_CACHE_BACKEND",
            "LUMIBOT_CACHE_MODE",
            "LUMIBOT_CACHE_S3_BUCKET",
            "LUMIBOT_CACHE_FOLDER",
            "LUMIBOT_CACHE_FILL_FUNCTION",
            "CACHE_PROVIDERS",
        ] {
            command.env_remove(name);
        }
        let output = tokio::time::timeout(CLI_TIMEOUT, command.output())
            .await
            .map_err(|_| anyhow::anyhow!("cachefill {args:?} did not finish in {CLI_TIMEOUT:?}"))?
            .context("running cachefill")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        ensure!(
            output.status.success(),
            "cachefill {args:?} exited with {}:\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_str(stdout.trim()).with_context(|| format!("cachefill {args:?}: {stdout}"))
    }
}

fn event_specs() -> Value {
    Value::Array(
        EVENTS
            .iter()
            .map(|(name, symbol, event_type, start, end)| {
                json!({"name": name, "symbol": symbol, "event_type": event_type, "start": start, "end": end})
            })
            .collect(),
    )
}

fn chain_specs() -> Value {
    json!([{"name": CHAIN.0, "symbol": CHAIN.1, "asset_type": "stock", "date": CHAIN.2}])
}

/// lumibot writes its events and chain files; every one is valid to cachefill.
#[tokio::test]
async fn lumibots_events_and_chain_files_validate() -> anyhow::Result<()> {
    let Some(h) = Harness::start("lumibot's events and chains validate").await? else {
        return Ok(());
    };
    let folder = h.path("lumibot");
    let events = h.driver("events-write", &event_specs(), &folder).await?;
    let chain = h.driver("chains-write", &chain_specs(), &folder).await?;
    let tsla = &events["files"]["tsla-splits"];
    ensure!(
        tsla["parquet"] == "thetadata/stock/events/splits/TSLA_splits.parquet"
            && tsla["meta"] == "thetadata/stock/events/splits/TSLA_splits.meta.json",
        "lumibot keeps TSLA's splits elsewhere: {events}"
    );
    ensure!(
        events["files"]["tsla-dividends"]["parquet"].is_null(),
        "no dividends, no parquet: {events}"
    );
    ensure!(
        chain["files"][CHAIN.0] == "thetadata/stock/option_chains/TSLA_2024-11-15.parquet",
        "{chain}"
    );
    ensure!(
        h.server.count(STRIKES_PATH) == 28,
        "head and tail 14 strike lists"
    );

    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_e2e-cachefill"));
    command
        .args(["validate", "--json"])
        .arg(&folder)
        .env("LUMIBOT_CACHE_FOLDER", &folder)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(CLI_TIMEOUT, command.output()).await??;
    let report: Value = serde_json::from_slice(&output.stdout)
        .with_context(|| String::from_utf8_lossy(&output.stderr).into_owned())?;
    // TSLA splits (parquet, ranges), AAPL dividends (parquet, ranges), TSLA dividends (ranges
    // only), TSLA's chain.
    ensure!(
        output.status.success() && report["checked"] == 6 && report["valid"] == 6,
        "cachefill validate {}: {report:#}",
        folder.display()
    );
    Ok(())
}

fn frames(out: &Value) -> &Value {
    &out["frames"]
}

/// cachefill fills the events and the chain; lumibot reads them as its own, with no call.
#[tokio::test]
async fn lumibot_reads_cachefills_events_and_chain_without_a_call() -> anyhow::Result<()> {
    let Some(h) = Harness::start("lumibot reads cachefill's events and chains").await? else {
        return Ok(());
    };
    let own = h.path("lumibot");
    let own_events = h.driver("events-write", &event_specs(), &own).await?;
    let own_chain = h.driver("chains-write", &chain_specs(), &own).await?;

    let cache = h.path("cache");
    for (_, symbol, event_type, start, end) in EVENTS {
        let out = h
            .cachefill(
                &[
                    "get",
                    "--provider",
                    "thetadata",
                    "--asset-type",
                    "stock",
                    "--symbol",
                    symbol,
                    "--datastyle",
                    event_type,
                    "--start",
                    start,
                    "--end",
                    end,
                ],
                &cache,
            )
            .await?;
        ensure!(out["source"] == "filled", "{symbol} {event_type}: {out}");
    }
    let out = h
        .cachefill(
            &[
                "get",
                "--provider",
                "thetadata",
                "--asset-type",
                "stock",
                "--symbol",
                CHAIN.1,
                "--datastyle",
                "option_chains",
                "--start",
                CHAIN.2,
            ],
            &cache,
        )
        .await?;
    ensure!(out["source"] == "filled", "chain: {out}");

    h.server.reset_log();
    let read_events = h.driver("events-read", &event_specs(), &cache).await?;
    let read_chain = h.driver("chains-read", &chain_specs(), &cache).await?;
    for read in [&read_events, &read_chain] {
        ensure!(
            read["calls"].as_array().is_some_and(Vec::is_empty),
            "lumibot called its downloader: {:#}",
            read["calls"]
        );
        ensure!(
            read["errors"].as_object().is_none_or(|e| e.is_empty()),
            "lumibot failed reading: {:#}",
            read["errors"]
        );
    }
    ensure!(h.server.requests().is_empty(), "{:?}", h.server.requests());
    let rows = |out: &Value, name: &str| {
        out["frames"][name]["records"]
            .as_array()
            .map_or(0, Vec::len)
    };
    ensure!(
        (
            rows(&own_events, "tsla-splits"),
            rows(&own_events, "aapl-dividends"),
            rows(&own_events, "tsla-dividends")
        ) == (2, 4, 0),
        "lumibot's own lookups: {own_events:#}"
    );
    let calls = &own_chain["chains"][CHAIN.0]["Chains"]["CALL"];
    let expirations = calls.as_object().map_or(0, |c| c.len());
    let with_strikes = calls.as_object().map_or(0, |c| {
        c.values()
            .filter(|s| s.as_array().is_some_and(|s| !s.is_empty()))
            .count()
    });
    ensure!(
        expirations > 50 && with_strikes == 28,
        "lumibot's own chain: {expirations} expirations, {with_strikes} with strikes"
    );
    ensure!(
        frames(&read_events) == frames(&own_events),
        "lumibot's frames of cachefill's events differ from its own:\nours {:#}\nlumibot's {:#}",
        frames(&read_events),
        frames(&own_events)
    );
    ensure!(
        read_chain["chains"][CHAIN.0] == own_chain["chains"][CHAIN.0],
        "lumibot's chain from cachefill's file differs from its own"
    );
    Ok(())
}
