//! A lumibot 4.6.30 job in readonly mode on the whole system: the job imports
//! `cachefill.lumibot` (the Python package, installed in the project venv by
//! `scripts/setup-venv --package`), which installs itself because the job's environment is
//! readonly with a fill function; lumibot's `get_price_data` then finds its TSLA minute bars
//! filled by the miss-handler under the emulator (from the ThetaData replay server) and
//! downloaded from moto. The job never reaches lumibot's downloader, and moto's request
//! recorder shows that every S3 request made with the job's credentials was a read. A second
//! job makes no invocation and no upstream request.

use std::path::Path;

use anyhow::{Context, ensure};
use cachefill_e2e::{MISS_HANDLER, Terminal};
use cachefill_testing::thetadata::Reply;
use serde_json::Value;

use crate::stack_for;

/// The job's access key: moto accepts any, and its recorder keeps it, which tells the job's
/// requests from the functions'.
const JOB_ACCESS_KEY: &str = "AKIACACHEFILLJOB0001";

const JOB: &str = r#"
import datetime as dt, json
import pytz
import cachefill.lumibot
from lumibot.entities import Asset
from lumibot.tools import thetadata_helper as th

installed = cachefill.lumibot.installed()
assert installed is not None, "the environment (readonly + fill function) installs the integration"
ny = pytz.timezone("America/New_York")
bars = th.get_price_data(
    Asset("TSLA"),
    ny.localize(dt.datetime(2024, 11, 15, 9, 30)),
    ny.localize(dt.datetime(2024, 11, 15, 16, 0)),
    timespan="minute",
    datastyle="ohlc",
)
print("CACHEFILL-JOB " + json.dumps({
    "bars": 0 if bars is None else int(len(bars)),
    "downloader_calls": installed.downloader_calls,
    "stats": installed.client.stats(),
    "mode": installed.client.mode,
}))
# lumibot's native pools can abort the interpreter's teardown ("terminate called without an
# active exception"); the answer is out, so skip it.
import os, sys
sys.stdout.flush()
os._exit(0)
"#;

async fn run_job(
    stack: &cachefill_e2e::Stack,
    terminal: &Terminal,
    cache: &Path,
    home: &Path,
) -> anyhow::Result<Value> {
    let mut command = tokio::process::Command::new(stack.tools().python());
    command
        .arg("-c")
        .arg(JOB)
        .env_clear()
        .env("PATH", stack.tools().path_env())
        .env("HOME", home)
        .env("LUMIBOT_CACHE_FOLDER", cache)
        .env("THETADATA_BASE_URL", terminal.server().base_url())
        .env("DATADOWNLOADER_SKIP_LOCAL_START", "true")
        .env("THETADATA_USERNAME", "cachefill-e2e")
        .env("THETADATA_PASSWORD", "cachefill-e2e")
        .env("LUMIBOT_LOG_LEVEL", "WARNING")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    for (name, value) in stack.client_env(MISS_HANDLER) {
        command.env(name, value);
    }
    command.env("AWS_ACCESS_KEY_ID", JOB_ACCESS_KEY);
    let output = tokio::time::timeout(std::time::Duration::from_secs(300), command.output())
        .await
        .context("the lumibot job did not finish within 300 s")??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("CACHEFILL-JOB "));
    let (true, Some(line)) = (output.status.success(), line) else {
        anyhow::bail!(
            "the lumibot job exited with {}:\n{}\n{}",
            output.status,
            &stdout[stdout.len().saturating_sub(3000)..],
            String::from_utf8_lossy(&output.stderr)
        );
    };
    Ok(serde_json::from_str(line)?)
}

/// moto's request recorder (`/moto-api/recorder/…`).
async fn recorder(stack: &cachefill_e2e::Stack, action: &str) -> anyhow::Result<String> {
    let url = format!("{}/moto-api/recorder/{action}", stack.s3_endpoint());
    let http = reqwest::Client::new();
    let response = if action == "download-recording" {
        http.get(&url).send().await?
    } else {
        http.post(&url).send().await?
    };
    ensure!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    Ok(response.text().await?)
}

/// The methods of the recorded S3 requests signed with the job's access key.
fn job_methods(recording: &str) -> Vec<String> {
    recording
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|entry| entry.to_string().contains(JOB_ACCESS_KEY))
        .filter_map(|entry| entry["method"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn a_readonly_lumibot_job_fills_through_the_miss_handler_and_only_reads_s3()
-> anyhow::Result<()> {
    let terminal = Terminal::start().await?;
    let recorded = std::fs::read(
        cachefill_testing::fixtures::root()?.join("thetadata-v3-columnar/stock_minute_ohlc.json"),
    )?;
    terminal
        .server()
        .respond_with("/v3/stock/history/ohlc", move |query| {
            let tsla = query.get("symbol").map(String::as_str) == Some("TSLA");
            let day = query.get("date").map(String::as_str);
            Some(if tsla && day == Some("20241115") {
                Reply::json(recorded.clone())
            } else {
                Reply::no_data()
            })
        });
    let Some(stack) = stack_for("a readonly lumibot job", &terminal, &[]).await? else {
        return Ok(());
    };
    stack.start_function(MISS_HANDLER).await?;
    let dir = tempfile::tempdir()?;
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home)?;
    recorder(&stack, "reset-recording").await?;
    recorder(&stack, "start-recording").await?;

    let first = run_job(&stack, &terminal, &dir.path().join("cache"), &home).await?;
    ensure!(first["mode"] == "readonly", "{first}");
    ensure!(
        first["downloader_calls"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "lumibot reached its downloader: {first}"
    );
    ensure!(first["bars"].as_u64() >= Some(6), "{first}");
    ensure!(first["stats"]["invocations"].as_u64() >= Some(1), "{first}");
    let upstream = terminal.server().count("/v3/stock/history/ohlc");
    ensure!(upstream >= 1, "the miss-handler asked the terminal");

    let recording = recorder(&stack, "download-recording").await?;
    let methods = job_methods(&recording);
    ensure!(
        !methods.is_empty(),
        "the recorder holds no request of the job's: {}",
        &recording[..recording.len().min(2000)]
    );
    ensure!(
        methods.iter().all(|m| m == "GET" || m == "HEAD"),
        "the job wrote to the bucket: {methods:?}"
    );

    // A second job on the same machine: local hits, nothing invoked, nothing asked upstream.
    let second = run_job(&stack, &terminal, &dir.path().join("cache"), &home).await?;
    ensure!(second["bars"] == first["bars"], "{second}");
    ensure!(second["stats"]["invocations"] == 0, "{second}");
    ensure!(
        terminal.server().count("/v3/stock/history/ohlc") == upstream,
        "the second job caused upstream requests"
    );
    recorder(&stack, "stop-recording").await?;
    Ok(())
}
