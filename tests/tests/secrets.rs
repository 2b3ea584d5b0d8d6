//! No secret leaves through what the system writes or says: the end-to-end provider calls
//! (ThetaData through the replay terminal, Polygon and Binance through their replay servers)
//! run through the miss-handler under the emulator with distinctive credentials (the Polygon
//! key from a Secrets Manager secret, then a second key from the environment that shadows
//! it, and the functions' and the job's own AWS secret keys and session tokens), on their
//! successes and on their failures (401, 403, 451, 471, 500, an upstream echoing the key),
//! with every log at `debug`. Then every place the values could surface is scanned for each
//! secret, as is and percent-encoded (upper- and lower-case hex), JSON-escaped and in
//! base64: every line of every file in the stack's log folder (each function instance,
//! moto, the emulator), every line the test process itself logged (the job's client and its
//! AWS SDK), every answer and error of an invocation, of the client and of the `cachefill`
//! command, and every version of every object in the bucket (data, sidecars, leases,
//! manifests, audit records, quarantine), with its metadata and tags.
//!
//! The scan is shown to find each form of each secret in a line that holds it
//! ([`the_scan_finds_every_form_of_a_secret`]), and the secrets are shown to be live: the
//! Polygon replay saw each key as its bearer token.
//!
//! `CACHEFILL_E2E=skip` skips the end-to-end test (it says so).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use cachefill_client::{CacheClient, DataRequest, Source};
use cachefill_core::dataset::Dataset;
use cachefill_core::errors::ErrorType;
use cachefill_core::keys::KeyLayout;
use cachefill_core::storage::ObjectStore;
use cachefill_e2e::thetadata::{QUOTE_PATH, aapl_hour_quote};
use cachefill_e2e::{
    Invocation, MISS_HANDLER, OBJECT_VALIDATOR, Seen, Stack, StackConfig, Terminal, eventually,
};
use cachefill_testing::binance::{
    AGG_TRADES_PATH, BinanceReplay, internal_error, restricted_location,
};
use cachefill_testing::polygon::PolygonReplay;
use cachefill_testing::thetadata::{Fault, Reply};
use serde_json::{Value, json};

/// The Polygon key stored in Secrets Manager. Every secret holds characters that
/// percent-encoding changes, so its encoded form is a different string to look for.
const POLYGON_KEY: &str = "pk_SECRETSM/leak+scan=Q7x2Zr";
/// The Polygon key set in the environment of the second instance, shadowing the secret's.
const ENV_POLYGON_KEY: &str = "pk_ENVKEY/shadow+scan=K4w9Yt";
/// The functions' AWS credentials (moto accepts any).
const FN_ACCESS_KEY_ID: &str = "AKIAE2EFUNCTIONSCAN1";
const FN_SECRET_ACCESS_KEY: &str = "fnSecret/Access+Key=M5r8Tq";
const FN_SESSION_TOKEN: &str = "fnSession/Token+Value=P3n6Wd";
/// The backtest job's AWS credentials (its client and the `cachefill` command).
const JOB_ACCESS_KEY_ID: &str = "AKIAE2EJOBCLIENTSCAN";
const JOB_SECRET_ACCESS_KEY: &str = "jobSecret/Access+Key=V6n1Hs";
const JOB_SESSION_TOKEN: &str = "jobSession/Token+Value=B2c7Lf";

const SECRET_ID: &str = "cachefill/e2e/leak-scan";
/// The Binance replay's present (as `tests/binance.rs` fixes it).
const BINANCE_NOW: &str = "2025-11-09T06:00:00Z";
const PATIENCE: Duration = Duration::from_secs(60);
const CLI_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on the whole run.
const BOUND: Duration = Duration::from_secs(240);

/// Values that must appear nowhere.
const SECRETS: [(&str, &str); 6] = [
    ("Polygon key from Secrets Manager", POLYGON_KEY),
    ("Polygon key from the environment", ENV_POLYGON_KEY),
    ("functions' AWS secret access key", FN_SECRET_ACCESS_KEY),
    ("functions' AWS session token", FN_SESSION_TOKEN),
    ("job's AWS secret access key", JOB_SECRET_ACCESS_KEY),
    ("job's AWS session token", JOB_SESSION_TOKEN),
];

// ---------------------------------------------------------------------------------------
// The scan

/// `text` percent-encoded as a URL component (RFC 3986: everything but unreserved
/// characters), with upper- or lower-case hex digits.
fn percent_encoded(text: &str, upper: bool) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else if upper {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Every spelling of `secret` looked for: as is, percent-encoded (both cases of hex),
/// JSON-escaped (`/` as `\/`) and base64.
fn forms(secret: &str) -> Vec<(&'static str, String)> {
    let mut forms = vec![
        ("as is", secret.to_string()),
        ("percent-encoded", percent_encoded(secret, true)),
        (
            "percent-encoded (lower-case hex)",
            percent_encoded(secret, false),
        ),
        ("JSON-escaped", secret.replace('/', "\\/")),
        ("base64", base64(secret.as_bytes())),
    ];
    forms.dedup_by(|a, b| a.1 == b.1);
    forms
}

/// One secret found somewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Leak {
    secret: &'static str,
    form: &'static str,
    place: String,
    /// The line that holds it (cut to 300 characters).
    line: String,
}

/// What was scanned, by kind of place: how many places and lines.
#[derive(Debug, Default)]
struct Scanned {
    places: BTreeMap<&'static str, (usize, usize)>,
    leaks: Vec<Leak>,
}

impl Scanned {
    /// Look for every form of every secret of `secrets` in `bytes`, the content of `place`.
    fn scan(
        &mut self,
        kind: &'static str,
        place: &str,
        bytes: &[u8],
        secrets: &[(&'static str, &str)],
    ) {
        // Lossy decoding keeps every ASCII byte, so an ASCII secret in binary data survives.
        let text = String::from_utf8_lossy(bytes);
        let entry = self.places.entry(kind).or_default();
        entry.0 += 1;
        entry.1 += text.lines().count();
        for &(name, secret) in secrets {
            for (form, needle) in forms(secret) {
                for line in text.lines().filter(|l| l.contains(&needle)) {
                    self.leaks.push(Leak {
                        secret: name,
                        form,
                        place: place.to_string(),
                        line: line.chars().take(300).collect(),
                    });
                }
            }
        }
    }

    /// Scan every file under `dir`, recursively.
    fn scan_dir(
        &mut self,
        kind: &'static str,
        dir: &Path,
        secrets: &[(&'static str, &str)],
    ) -> anyhow::Result<()> {
        let mut pending = vec![dir.to_path_buf()];
        let mut files: Vec<PathBuf> = Vec::new();
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    files.push(path);
                }
            }
        }
        files.sort();
        for file in files {
            let bytes = std::fs::read(&file)?;
            self.scan(kind, &file.display().to_string(), &bytes, secrets);
        }
        Ok(())
    }

    fn report(&self) -> String {
        let mut out = String::new();
        for (kind, (places, lines)) in &self.places {
            out.push_str(&format!("  {kind}: {places} places, {lines} lines\n"));
        }
        out
    }
}

#[test]
fn the_scan_finds_every_form_of_a_secret() -> anyhow::Result<()> {
    assert_eq!(
        percent_encoded(POLYGON_KEY, true),
        "pk_SECRETSM%2Fleak%2Bscan%3DQ7x2Zr"
    );
    assert_eq!(base64(b"Man"), "TWFu");
    assert_eq!(base64(b"Ma"), "TWE=");
    assert_eq!(base64(b"M"), "TQ==");
    for (name, secret) in SECRETS {
        let forms = forms(secret);
        assert_eq!(forms.len(), 5, "{name}: every form differs from the others");
        for (form, spelled) in &forms {
            let mut scanned = Scanned::default();
            let line = format!("{{\"level\":\"DEBUG\",\"url\":\"http://h/p?k={spelled}&x=1\"}}");
            scanned.scan("synthetic", "a synthetic line", line.as_bytes(), &SECRETS);
            assert!(
                scanned
                    .leaks
                    .iter()
                    .any(|l| l.secret == name && l.form == *form),
                "{name} {form} not found in {line}: {scanned:?}"
            );
        }
    }
    // Inside binary data, and in a file of a folder.
    let mut binary = vec![0xff, 0xfe, 0x00, b'P', b'A', b'R', b'1', 0xc3];
    binary.extend_from_slice(percent_encoded(FN_SESSION_TOKEN, false).as_bytes());
    binary.extend_from_slice(&[0x80, 0x00]);
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("nested"))?;
    std::fs::write(dir.path().join("nested/object.parquet"), &binary)?;
    std::fs::write(dir.path().join("clean.log"), "nothing to see\nhere\n")?;
    let mut scanned = Scanned::default();
    scanned.scan_dir("folder", dir.path(), &SECRETS)?;
    assert_eq!(scanned.leaks.len(), 1, "{scanned:?}");
    assert_eq!(scanned.leaks[0].secret, "functions' AWS session token");
    assert!(scanned.leaks[0].place.ends_with("object.parquet"));
    assert_eq!(scanned.places["folder"], (2, 3));
    // Nothing is found where nothing is.
    let mut clean = Scanned::default();
    clean.scan(
        "clean",
        "a clean line",
        b"pk_SECRETSM leak scan Q7x2Zr, fnSecret Access Key",
        &SECRETS,
    );
    assert!(clean.leaks.is_empty(), "{clean:?}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// What the test process logs

/// Every line this process logs through `tracing`, kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Capture this process's `debug` lines (the job's client and its AWS SDK among them).
fn capture_logs() -> Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            let captured = Captured::default();
            let _ = tracing_subscriber::fmt()
                .with_writer(captured.clone())
                .with_ansi(false)
                .with_env_filter("debug")
                .try_init();
            captured
        })
        .clone()
}

// ---------------------------------------------------------------------------------------
// The end-to-end run

fn dataset(json: Value) -> Dataset {
    Dataset::from_json(&json.to_string()).expect("a valid dataset")
}

fn polygon_day(symbol: &str) -> Dataset {
    dataset(
        json!({"provider": "polygon", "asset_type": "stock", "symbol": symbol,
        "timespan": "day", "datastyle": "ohlc"}),
    )
}

fn binance_day(day: &str, next: &str) -> Value {
    json!({"provider": "binance", "asset_type": "crypto", "symbol": "BTCUSDT",
        "timespan": "tick", "datastyle": "aggtrades",
        "start": format!("{day}T00:00:00Z"), "end": format!("{next}T00:00:00Z")})
}

fn thetadata_month(start: &str, end: &str) -> anyhow::Result<DataRequest> {
    Ok(DataRequest::parse(aapl_hour_quote(), start, end)?.with_after_hours(false))
}

fn polygon_january(symbol: &str) -> anyhow::Result<DataRequest> {
    Ok(DataRequest::parse(
        polygon_day(symbol),
        "2024-01-02",
        "2024-01-31",
    )?)
}

/// A Polygon answer of `status` whose body quotes the key it was sent, as is and
/// percent-encoded, as an upstream that echoes its request might.
fn polygon_echo(status: u16, key: &str) -> Fault {
    let body = json!({
        "status": "ERROR", "request_id": "echo",
        "error": format!("key {key} ({}) is not allowed", percent_encoded(key, true)),
    });
    Fault::Reply(Reply {
        status,
        ..Reply::json(body.to_string())
    })
}

/// What the job saw and said: answers, errors, and the command's output.
#[derive(Default)]
struct Said {
    texts: Vec<(String, String)>,
}

impl Said {
    fn add(&mut self, what: impl Into<String>, text: impl Into<String>) {
        self.texts.push((what.into(), text.into()));
    }

    fn invocation(&mut self, what: &str, invocation: &Invocation) {
        self.add(what, invocation.payload.to_string());
        self.add(what, format!("{invocation:?}"));
    }

    fn error(&mut self, what: &str, error: &dyn std::fmt::Debug, display: String) {
        self.add(what, display);
        self.add(what, format!("{error:?}"));
    }
}

/// The job's settings: the stack's readonly settings with the job's own credentials.
fn job_env(stack: &Stack, cache: &Path) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = stack
        .readonly_settings_env(MISS_HANDLER, cache)
        .into_iter()
        .collect();
    for (name, value) in [
        ("LUMIBOT_CACHE_S3_ACCESS_KEY_ID", JOB_ACCESS_KEY_ID),
        ("LUMIBOT_CACHE_S3_SECRET_ACCESS_KEY", JOB_SECRET_ACCESS_KEY),
        ("LUMIBOT_CACHE_S3_SESSION_TOKEN", JOB_SESSION_TOKEN),
        ("AWS_ACCESS_KEY_ID", JOB_ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", JOB_SECRET_ACCESS_KEY),
        ("AWS_SESSION_TOKEN", JOB_SESSION_TOKEN),
    ] {
        env.insert(name.to_string(), value.to_string());
    }
    env
}

async fn job_client(stack: &Stack, cache: &Path) -> anyhow::Result<CacheClient> {
    let env = job_env(stack, cache);
    Ok(CacheClient::from_lookup(|name| env.get(name).cloned()).await?)
}

/// `cachefill get --json` of a Polygon day dataset as the job runs it, logging at `debug`:
/// its exit code, standard output and standard error.
async fn cachefill_get(
    stack: &Stack,
    cache: &Path,
    symbol: &str,
) -> anyhow::Result<(Option<i32>, String, String)> {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_e2e-cachefill"));
    command
        .args(["get", "--provider", "polygon", "--asset-type", "stock"])
        .args([
            "--timespan",
            "day",
            "--datastyle",
            "ohlc",
            "--symbol",
            symbol,
        ])
        .args(["--start", "2024-01-02", "--end", "2024-01-31", "--json"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .env("NO_COLOR", "1")
        .env("CACHEFILL_LOG", "debug");
    for (name, _) in std::env::vars() {
        if ["LUMIBOT_", "AWS_", "CACHE_", "POLYGON_"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            command.env_remove(name);
        }
    }
    command.envs(job_env(stack, cache));
    let output = tokio::time::timeout(CLI_TIMEOUT, command.output())
        .await
        .map_err(|_| anyhow::anyhow!("cachefill get did not finish within {CLI_TIMEOUT:?}"))??;
    Ok((
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

async fn create_secret(stack: &Stack) -> anyhow::Result<()> {
    let value = json!({ "POLYGON_API_KEY": POLYGON_KEY }).to_string();
    stack
        .aws(&[
            "secretsmanager",
            "create-secret",
            "--name",
            SECRET_ID,
            "--secret-string",
            &value,
        ])
        .await?;
    Ok(())
}

/// A failed invocation of the kind expected.
fn expect_failure(what: &str, invocation: &Invocation, error_type: &str) -> anyhow::Result<()> {
    ensure!(
        invocation.error_type() == Some(error_type),
        "{what}: expected {error_type}, got {invocation:?}"
    );
    Ok(())
}

/// Every version of every key of the bucket, delete markers left out: (key, version).
async fn every_version(stack: &Stack) -> anyhow::Result<Vec<(String, String)>> {
    let mut versions = Vec::new();
    let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
    loop {
        let page = stack
            .s3()
            .list_object_versions()
            .bucket(&stack.config().bucket)
            .set_key_marker(key_marker.clone())
            .set_version_id_marker(version_marker.clone())
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", aws_sdk_s3::error::DisplayErrorContext(e)))?;
        for version in page.versions() {
            if let (Some(key), Some(id)) = (version.key(), version.version_id()) {
                versions.push((key.to_string(), id.to_string()));
            }
        }
        if page.is_truncated() != Some(true) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_string);
        version_marker = page.next_version_id_marker().map(str::to_string);
    }
    Ok(versions)
}

/// Wait until the validator has tagged the current version of `key` valid.
async fn validated(stack: &Stack, key: &str) -> anyhow::Result<()> {
    let store = stack.store();
    eventually(
        &format!("the validator to judge {key} valid"),
        PATIENCE,
        || async {
            let version = store.head(key, None).await?.version_id;
            let tags = store.get_tags(key, version.as_deref()).await?;
            Ok::<_, anyhow::Error>(
                if tags.get("cachefill-status").map(String::as_str) == Some("valid") {
                    Seen::Ready(())
                } else {
                    Seen::NotYet(tags)
                },
            )
        },
    )
    .await?;
    Ok(())
}

async fn run(stack: &Stack, replays: &Replays, captured: &Captured) -> anyhow::Result<()> {
    let Replays {
        terminal,
        polygon,
        binance,
    } = replays;
    let mut said = Said::default();
    let layout = KeyLayout::new(&stack.config().prefix, &stack.config().version);
    create_secret(stack).await?;
    // Three instances, so the three slow failures below (bounded retries of a 500) overlap.
    for _ in 0..3 {
        stack.start_function(MISS_HANDLER).await?;
    }
    stack.start_function(OBJECT_VALIDATOR).await?;
    let relay = stack.relay_to(OBJECT_VALIDATOR)?.spawn();
    let cache = tempfile::tempdir()?;
    let client = job_client(stack, cache.path()).await?;

    // 1. Successes: each provider fills through the miss-handler.
    let quotes = client
        .get(&thetadata_month("2024-01-02", "2024-01-31")?)
        .await?;
    ensure!(quotes.source == Source::Filled, "{quotes:?}");
    said.add("ThetaData fill (client)", format!("{quotes:?}"));
    let spy = client.get(&polygon_january("SPY")?).await?;
    ensure!(spy.source == Source::Filled, "{spy:?}");
    said.add("Polygon fill (client)", format!("{spy:?}"));
    let trades = stack
        .invoke(MISS_HANDLER, &binance_day("2025-11-07", "2025-11-08"))
        .await?;
    ensure!(trades.succeeded(), "{trades:?}");
    said.invocation("Binance fill (invoke)", &trades);
    let trade_key = trades.payload["parts"][0]["key"]
        .as_str()
        .context("a Binance part")?
        .to_string();

    // 2. Failures the job sees at once (not retried): the client's error.
    let refusals = [
        (
            "ThetaData 471",
            "2024-02-01",
            "2024-02-29",
            471,
            "PERMISSION",
        ),
        (
            "ThetaData 403",
            "2024-03-01",
            "2024-03-28",
            403,
            "Forbidden",
        ),
    ];
    for (what, start, end, status, body) in refusals {
        terminal
            .server()
            .inject_route(QUOTE_PATH, None, Some(1), Fault::status(status, body));
        let error = client
            .get(&thetadata_month(start, end)?)
            .await
            .expect_err(what);
        ensure!(error.error_type().is_some(), "{what}: {error:?}");
        said.error(what, &error, error.to_string());
        terminal.server().clear_faults();
    }
    for (what, symbol, fault) in [
        (
            "Polygon 401 echoing the key",
            "QQQ",
            polygon_echo(401, POLYGON_KEY),
        ),
        (
            "Polygon 403",
            "IWM",
            Fault::Reply(Reply {
                status: 403,
                ..Reply::json(
                    r#"{"status":"NOT_AUTHORIZED","request_id":"r","message":"You are not entitled to this data."}"#,
                )
            }),
        ),
    ] {
        polygon.server().inject_next(1, fault);
        let error = client.get(&polygon_january(symbol)?).await.expect_err(what);
        ensure!(
            error.error_type() == Some(ErrorType::UpstreamNoPermission),
            "{what}: {error:?}"
        );
        said.error(what, &error, error.to_string());
        polygon.server().clear_faults();
    }
    binance.archive_missing("2025-11-06".parse()?);
    binance
        .server()
        .inject_route(AGG_TRADES_PATH, None, Some(1), restricted_location());
    let refused = stack
        .invoke(MISS_HANDLER, &binance_day("2025-11-06", "2025-11-07"))
        .await?;
    expect_failure("Binance 451", &refused, "UpstreamNoPermission")?;
    said.invocation("Binance 451 (invoke)", &refused);
    binance.server().clear_faults();

    // 3. Failures after bounded retries (500 on every attempt), invoked directly since the
    // client would retry them; the three run at once on the three instances.
    terminal.server().inject_route(
        QUOTE_PATH,
        None,
        None,
        Fault::status(500, "Internal Server Error"),
    );
    polygon
        .server()
        .inject_next(100, polygon_echo(500, POLYGON_KEY));
    binance.archive_missing("2025-11-05".parse()?);
    binance
        .server()
        .inject_route(AGG_TRADES_PATH, None, None, internal_error(500));
    let theta_500 = json!({"provider": "thetadata", "asset_type": "stock", "symbol": "AAPL",
        "timespan": "hour", "datastyle": "quote", "include_after_hours": false,
        "start": "2024-04-01", "end": "2024-04-05"});
    let polygon_500 = json!({"provider": "polygon", "asset_type": "stock", "symbol": "DIA",
        "timespan": "day", "datastyle": "ohlc", "start": "2024-01-02", "end": "2024-01-31"});
    let binance_500 = binance_day("2025-11-05", "2025-11-06");
    let (theta_500, polygon_500, binance_500) = tokio::join!(
        stack.invoke(MISS_HANDLER, &theta_500),
        stack.invoke(MISS_HANDLER, &polygon_500),
        stack.invoke(MISS_HANDLER, &binance_500),
    );
    for (what, invocation) in [
        ("ThetaData 500", theta_500?),
        ("Polygon 500 echoing the key", polygon_500?),
        ("Binance 500", binance_500?),
    ] {
        expect_failure(what, &invocation, "UpstreamUnavailable")?;
        said.invocation(what, &invocation);
    }
    for server in [terminal.server(), polygon.server(), binance.server()] {
        server.clear_faults();
    }

    // 4. The command line on the same job: a remote hit.
    let cli_cache = tempfile::tempdir()?;
    let (code, stdout, stderr) = cachefill_get(stack, cli_cache.path(), "SPY").await?;
    ensure!(
        code == Some(0),
        "cachefill get SPY: {code:?}\n{stdout}\n{stderr}"
    );
    ensure!(stdout.contains("remote_hit"), "{stdout}");
    said.add("cachefill get SPY (stdout)", stdout);
    said.add("cachefill get SPY (stderr)", stderr);

    // 5. A key in the environment shadows the secret's; Polygon refuses it (401).
    let before = polygon.aggs_requests().len();
    stack.kill_function(MISS_HANDLER);
    stack
        .start_function_with(
            MISS_HANDLER,
            &[("POLYGON_API_KEY".to_string(), ENV_POLYGON_KEY.to_string())],
        )
        .await?;
    let error = client
        .get(&polygon_january("XLF")?)
        .await
        .expect_err("Polygon 401 for the environment's key");
    ensure!(
        error.error_type() == Some(ErrorType::UpstreamNoPermission),
        "{error:?}"
    );
    said.error(
        "Polygon 401, key from the environment",
        &error,
        error.to_string(),
    );
    let (code, stdout, stderr) = cachefill_get(stack, cli_cache.path(), "XLK").await?;
    ensure!(
        code == Some(3),
        "cachefill get XLK: {code:?}\n{stdout}\n{stderr}"
    );
    said.add("cachefill get XLK refused (stdout)", stdout);
    said.add("cachefill get XLK refused (stderr)", stderr);

    // The secrets were live: Polygon saw each key as the bearer token, the first key before
    // the restart, the environment's after it.
    let requests = polygon.aggs_requests();
    let bearer =
        |r: &cachefill_testing::thetadata::Received| r.header("authorization").map(str::to_string);
    ensure!(
        requests[..before]
            .iter()
            .all(|r| bearer(r) == Some(format!("Bearer {POLYGON_KEY}"))),
        "requests before the restart did not all carry the secret's key"
    );
    ensure!(
        requests.len() > before
            && requests[before..]
                .iter()
                .all(|r| bearer(r) == Some(format!("Bearer {ENV_POLYGON_KEY}"))),
        "requests after the restart did not all carry the environment's key"
    );

    // A torn upload at a key with no valid version: put aside, audited, deleted.
    let torn_key = layout.data_key(&polygon_day("QQQ"));
    let torn_version = stack.aws_put_object(&torn_key, b"PAR1 torn").await?;
    let store = stack.store();
    eventually("the torn upload to be quarantined", PATIENCE, || async {
        let tags = store.get_tags(&torn_key, Some(&torn_version)).await?;
        Ok::<_, anyhow::Error>(
            if tags.get("cachefill-status").map(String::as_str) == Some("quarantined") {
                Seen::Ready(())
            } else {
                Seen::NotYet(tags)
            },
        )
    })
    .await?;

    // Everything written has been judged before the bucket is read.
    for key in [
        layout.data_key(&aapl_hour_quote()),
        layout.data_key(&polygon_day("SPY")),
        trade_key,
    ] {
        validated(stack, &key).await?;
    }
    let report = relay.stop().await;
    ensure!(report.failed.is_empty(), "{report:?}");
    said.add("relay report", format!("{report:?}"));

    // The scan.
    let mut scanned = Scanned::default();
    scanned.scan_dir("stack log files", stack.log_dir(), &SECRETS)?;
    let logged = captured.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    scanned.scan(
        "test process log",
        "this process's tracing",
        &logged,
        &SECRETS,
    );
    for (what, text) in &said.texts {
        scanned.scan("answers and errors", what, text.as_bytes(), &SECRETS);
    }
    let versions = every_version(stack).await?;
    let mut audit = 0;
    for (key, version) in &versions {
        let got = store.get(key, Some(version)).await?;
        let place = format!("s3://{}/{key}?versionId={version}", stack.config().bucket);
        scanned.scan("bucket object versions", &place, &got.bytes, &SECRETS);
        let tags = store.get_tags(key, Some(version)).await?;
        let facts = format!("{:?}\n{tags:?}", got.meta);
        scanned.scan(
            "bucket metadata and tags",
            &place,
            facts.as_bytes(),
            &SECRETS,
        );
        audit += usize::from(key.contains("/_audit/"));
    }

    let logs: Vec<String> = std::fs::read_dir(stack.log_dir())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let access_key_ids = [FN_ACCESS_KEY_ID, JOB_ACCESS_KEY_ID]
        .into_iter()
        .map(|id| {
            let mut found = Scanned::default();
            let _ = found.scan_dir("ids", stack.log_dir(), &[("id", id)]);
            found.scan("ids", "process", &logged, &[("id", id)]);
            let sample = found
                .leaks
                .first()
                .map(|l| format!("; e.g. {}: {}", l.place, l.line))
                .unwrap_or_default();
            format!("{id}: {} lines{sample}", found.leaks.len())
        })
        .collect::<Vec<_>>();
    println!(
        "SECRETS {} secrets x {} forms; scanned:\n{}  bucket: {} object versions ({audit} audit records)\n  \
         log files: {logs:?}\n  access key ids (identifiers, not secrets) seen in logs:\n    {}\n  \
         leaks: {}",
        SECRETS.len(),
        forms(POLYGON_KEY).len(),
        scanned.report(),
        versions.len(),
        access_key_ids.join("\n    "),
        scanned.leaks.len()
    );
    // The scan covered what it should have.
    let function_logs = logs
        .iter()
        .filter(|l| l.starts_with(MISS_HANDLER.bin))
        .count();
    ensure!(function_logs == 4, "miss-handler logs: {logs:?}");
    for name in ["moto.log", "emulator.log"] {
        ensure!(logs.iter().any(|l| l == name), "no {name} in {logs:?}");
    }
    ensure!(
        logs.iter().any(|l| l.starts_with(OBJECT_VALIDATOR.bin)),
        "{logs:?}"
    );
    ensure!(audit > 0, "no audit record was written");
    ensure!(
        versions.iter().any(|(k, _)| k.contains("/_quarantine/")),
        "nothing was put aside"
    );
    let all_logs = {
        let mut text = String::new();
        for l in &logs {
            text.push_str(&std::fs::read_to_string(stack.log_dir().join(l)).unwrap_or_default());
        }
        text
    };
    ensure!(all_logs.contains("provider secret read"));
    ensure!(all_logs.contains("set in the environment too"));
    ensure!(
        all_logs.contains("\"level\":\"DEBUG\""),
        "functions did not log at debug"
    );

    let leaks: Vec<String> = scanned
        .leaks
        .iter()
        .map(|l| format!("{} ({}) in {}: {}", l.secret, l.form, l.place, l.line))
        .collect();
    ensure!(leaks.is_empty(), "secrets found:\n{}", leaks.join("\n"));
    Ok(())
}

struct Replays {
    terminal: Terminal,
    polygon: PolygonReplay,
    binance: BinanceReplay,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_shows_in_any_log_message_answer_or_object() -> anyhow::Result<()> {
    let started = Instant::now();
    let captured = capture_logs();
    let replays = Replays {
        terminal: Terminal::start().await?,
        polygon: PolygonReplay::start(POLYGON_KEY).await?,
        binance: BinanceReplay::start().await?,
    };
    replays
        .binance
        .set_now(chrono::DateTime::parse_from_rfc3339(BINANCE_NOW)?.timestamp_millis());
    let mut function_env = replays.terminal.function_env();
    function_env.extend(
        [
            ("CACHE_PROVIDERS", "thetadata,polygon,binance"),
            ("POLYGON_BASE_URL", &replays.polygon.base_url()),
            ("BINANCE_BASE_URL", &replays.binance.base_url()),
            ("BINANCE_ARCHIVE_URL", &replays.binance.archive_base_url()),
            ("CACHE_PROVIDER_SECRET_ID", SECRET_ID),
            ("RUST_LOG", "debug"),
            ("AWS_ACCESS_KEY_ID", FN_ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", FN_SECRET_ACCESS_KEY),
            ("AWS_SESSION_TOKEN", FN_SESSION_TOKEN),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let config = StackConfig {
        function_env,
        ..StackConfig::default()
    };
    let Some(stack) = Stack::start_or_skip("no secret shows", config).await? else {
        return Ok(());
    };
    tokio::time::timeout(BOUND, run(&stack, &replays, &captured))
        .await
        .map_err(|_| anyhow::anyhow!("the run did not finish within {BOUND:?}"))??;
    println!("SECRETS test wall {:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}
