//! Binance aggregate trades end to end (`docs/BINANCE.md`): the real miss-handler binary under
//! cargo-lambda's emulator fills one parquet per UTC day from the Binance replay server into
//! moto, the object-validator judges every day it writes (relayed from moto's notifications)
//! and puts aside a torn upload, a readonly `cachefill get --json` asks the miss-handler once
//! for the days still missing, and a 451 from Binance is a permission error that writes
//! nothing.
//!
//! The replay's "now" is fixed (2025-11-09T06:00Z) while the functions follow the system
//! clock, which is later: every day asked for here is over for both, so every day has a known
//! end and is complete once filled.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use cachefill_core::keys::KeyLayout;
use cachefill_core::storage::{ObjectStore, StorageError};
use cachefill_core::trades::{TradeDay, file};
use cachefill_e2e::{
    Invocation, MISS_HANDLER, OBJECT_VALIDATOR, Seen, Stack, StackConfig, eventually,
};
use cachefill_testing::binance::{
    AGG_TRADES_PATH, BinanceReplay, first_id_at, restricted_location,
};
use chrono::{DateTime, NaiveDate};
use serde_json::{Value, json};

const SYMBOL: &str = "BTCUSDT";
/// The replay's present: 2025-11-09T06:00:00Z.
const REPLAY_NOW: &str = "2025-11-09T06:00:00Z";
/// Bound on anything asynchronous waited for (a relayed event judged).
const PATIENCE: Duration = Duration::from_secs(60);
/// Bound on one `cachefill` process.
const CLI_TIMEOUT: Duration = Duration::from_secs(300);

fn ms(instant: &str) -> i64 {
    DateTime::parse_from_rfc3339(instant)
        .expect("an RFC 3339 instant")
        .timestamp_millis()
}

fn day(date: &str) -> TradeDay {
    let date: NaiveDate = date.parse().expect("a date");
    TradeDay::new(SYMBOL, date).expect("a trade day")
}

/// The request the miss-handler is invoked with.
fn request(start: &str, end: &str) -> Value {
    json!({
        "provider": "binance", "asset_type": "crypto", "symbol": SYMBOL,
        "timespan": "tick", "datastyle": "aggtrades", "start": start, "end": end,
    })
}

/// Every id the replay has for `day`: from its first trade at or after 00:00 UTC to the first
/// at or after the next 00:00 (exclusive).
fn ids_of(day: &TradeDay) -> Range<i64> {
    first_id_at(SYMBOL, day.start_ms())..first_id_at(SYMBOL, day.end_ms())
}

fn layout(stack: &Stack) -> KeyLayout {
    KeyLayout::new(&stack.config().prefix, &stack.config().version)
}

fn key_of(stack: &Stack, day: &TradeDay) -> String {
    layout(stack).key_for_relative(&day.relative_path())
}

/// A stack whose functions fill Binance trades from `replay`.
async fn stack_for(
    test: &str,
    replay: &BinanceReplay,
    notifications: bool,
) -> anyhow::Result<Option<Stack>> {
    let config = StackConfig {
        notifications,
        function_env: vec![
            ("CACHE_PROVIDERS".into(), "binance".into()),
            ("BINANCE_BASE_URL".into(), replay.base_url()),
            // Past days come from the replay's daily archives, the rest by REST.
            ("BINANCE_ARCHIVE_URL".into(), replay.archive_base_url()),
        ],
        ..StackConfig::default()
    };
    Ok(Stack::start_or_skip(test, config).await?)
}

async fn fill(stack: &Stack, start: &str, end: &str) -> anyhow::Result<Invocation> {
    Ok(stack.invoke(MISS_HANDLER, &request(start, end)).await?)
}

/// The answer's parts, which must be exactly `days` in order.
fn parts_of<'a>(answer: &'a Value, days: &[&TradeDay], stack: &Stack) -> Vec<&'a Value> {
    let parts: Vec<&Value> = answer["parts"]
        .as_array()
        .unwrap_or_else(|| panic!("no parts in {answer}"))
        .iter()
        .collect();
    let keys: Vec<&str> = parts.iter().filter_map(|p| p["key"].as_str()).collect();
    let expected: Vec<String> = days.iter().map(|d| key_of(stack, d)).collect();
    assert_eq!(keys, expected, "{answer}");
    parts
}

/// The day's object holds every id of [`ids_of`] once, in order, as the part says; returns
/// the version it names.
async fn assert_whole_day(stack: &Stack, day: &TradeDay, part: &Value) -> anyhow::Result<String> {
    let key = key_of(stack, day);
    let object = stack.store().get(&key, None).await?;
    let version = object.meta.version_id.clone().expect("a versioned bucket");
    assert_eq!(part["version_id"], version.as_str(), "{part}");
    assert_eq!(
        part["sha256"],
        cachefill_core::codec::sha256_hex(&object.bytes).as_str()
    );
    let ids: Vec<i64> = file::decode(object.bytes)?
        .trades
        .iter()
        .map(|t| t.id)
        .collect();
    let want = ids_of(day);
    assert_eq!(ids.len() as i64, want.end - want.start, "{key}");
    assert!(
        ids.iter().copied().eq(want.clone()),
        "{key} does not hold exactly the ids {want:?} once each (first {:?}, last {:?})",
        ids.first(),
        ids.last()
    );
    assert_eq!(part["complete"], true, "{part}");
    assert_eq!(part["rows"], want.end - want.start, "{part}");
    assert_eq!(part["first_id"], want.start, "{part}");
    assert_eq!(part["last_id"], want.end - 1, "{part}");
    Ok(version)
}

/// Wait until the validator has recorded `version` as the day's current valid version and
/// tagged it so; returns the manifest.
async fn validated(stack: &Stack, day: &TradeDay, version: &str) -> anyhow::Result<Value> {
    let key = key_of(stack, day);
    let manifest_key = layout(stack).manifest_key_of(&day.relative_path());
    let store = stack.store();
    let manifest = eventually(
        &format!("the validator to record {key} at {version} as valid"),
        PATIENCE,
        || async {
            let manifest: Value = match store.get(&manifest_key, None).await {
                Ok(got) => serde_json::from_slice(&got.bytes)?,
                Err(StorageError::NotFound { .. }) => {
                    return Ok::<_, anyhow::Error>(Seen::NotYet(Value::Null));
                }
                Err(e) => return Err(e.into()),
            };
            if manifest["current"]["version_id"] != version {
                return Ok(Seen::NotYet(manifest));
            }
            let tags = store.get_tags(&key, Some(version)).await?;
            if tags.get("cachefill-status").map(String::as_str) != Some("valid") {
                return Ok(Seen::NotYet(json!({ "tags": tags })));
            }
            Ok(Seen::Ready(manifest))
        },
    )
    .await?;
    Ok(manifest)
}

/// Wait for the validator's audit record of `key` at `version` with `verdict`.
async fn audited(stack: &Stack, key: &str, version: &str, verdict: &str) -> anyhow::Result<Value> {
    let store = stack.store();
    let prefix = format!("{}/_audit/", stack.config().prefix.trim_matches('/'));
    let record = eventually(
        &format!("an audit record '{verdict}' of {key} at {version}"),
        PATIENCE,
        || async {
            let mut records = Vec::new();
            for object in store.list(&prefix).await? {
                let got = store.get(&object.key, None).await?;
                records.push(serde_json::from_slice::<Value>(&got.bytes)?);
            }
            Ok::<_, anyhow::Error>(
                match records.iter().find(|r| {
                    r["key"] == key && r["version_id"] == version && r["verdict"] == verdict
                }) {
                    Some(record) => Seen::Ready(record.clone()),
                    None => Seen::NotYet(records.len()),
                },
            )
        },
    )
    .await?;
    Ok(record)
}

/// `cachefill get --json` of `start..end` as a readonly job on the stack runs it, with its
/// own local cache at `cache`.
async fn cachefill_get(
    stack: &Stack,
    cache: &Path,
    start: &str,
    end: &str,
) -> anyhow::Result<Value> {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_e2e-cachefill"));
    command
        .args([
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
            SYMBOL,
            "--start",
            start,
            "--end",
            end,
            "--json",
        ])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .env("NO_COLOR", "1");
    // Only the stack's settings: none of the person's cache, AWS or provider settings.
    for (name, _) in std::env::vars() {
        if ["LUMIBOT_", "AWS_", "CACHE_", "BINANCE_"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            command.env_remove(name);
        }
    }
    command.envs(stack.readonly_settings_env(MISS_HANDLER, cache));
    let output = tokio::time::timeout(CLI_TIMEOUT, command.output())
        .await
        .map_err(|_| anyhow::anyhow!("cachefill get did not finish within {CLI_TIMEOUT:?}"))??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "cachefill get exited with {}:\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(serde_json::from_str(stdout.trim())?)
}

#[tokio::test]
async fn trade_days_are_filled_validated_repaired_and_read_once_per_missing_run()
-> anyhow::Result<()> {
    let replay = BinanceReplay::start().await?;
    replay.set_now(ms(REPLAY_NOW));
    let Some(stack) = stack_for("binance trades end to end", &replay, true).await? else {
        return Ok(());
    };
    stack.start_function(MISS_HANDLER).await?;
    stack.start_function(OBJECT_VALIDATOR).await?;
    let relay = stack.relay_to(OBJECT_VALIDATOR)?.spawn();
    let store = stack.store();
    let (nov4, nov5, nov6, nov7) = (
        day("2025-11-04"),
        day("2025-11-05"),
        day("2025-11-06"),
        day("2025-11-07"),
    );
    assert_eq!(
        key_of(&stack, &nov6),
        "e2e/cache/v1/binance/crypto/tick/aggtrades/BTCUSDT/2025-11-06.parquet"
    );

    // 1. A range starting mid-day fills both days it touches, whole and complete.
    let first = fill(&stack, "2025-11-06T12:00:00Z", "2025-11-08T00:00:00Z").await?;
    assert!(first.succeeded(), "{first:?}");
    let answer = &first.payload;
    assert_eq!(answer["status"], "filled", "{answer}");
    let parts = parts_of(answer, &[&nov6, &nov7], &stack);
    let mut versions = Vec::new();
    for (day, part) in [&nov6, &nov7].into_iter().zip(&parts) {
        versions.push(assert_whole_day(&stack, day, part).await?);
    }
    let requests = replay.server().requests().len();
    assert!(requests > 0);
    assert_eq!(answer["upstream_requests"], requests, "{answer}");
    assert_eq!(
        answer["rows"],
        [&nov6, &nov7]
            .iter()
            .map(|d| ids_of(d).end - ids_of(d).start)
            .sum::<i64>()
    );

    // 2. The validator records both days valid; asked again, the bucket answers alone.
    for (day, version) in [&nov6, &nov7].into_iter().zip(&versions) {
        let manifest = validated(&stack, day, version).await?;
        assert_eq!(
            manifest["current"]["rows"],
            ids_of(day).end - ids_of(day).start,
            "{manifest}"
        );
    }
    let again = fill(&stack, "2025-11-06T12:00:00Z", "2025-11-08T00:00:00Z").await?;
    assert!(again.succeeded(), "{again:?}");
    assert_eq!(again.payload["status"], "hit", "{}", again.payload);
    assert_eq!(again.payload["upstream_requests"], 0, "{}", again.payload);
    let again_parts = parts_of(&again.payload, &[&nov6, &nov7], &stack);
    for (part, version) in again_parts.iter().zip(&versions) {
        assert_eq!(part["version_id"], version.as_str(), "{part}");
    }
    assert_eq!(
        replay.server().requests().len(),
        requests,
        "a hit asked Binance"
    );
    for day in [&nov6, &nov7] {
        assert_eq!(store.list_versions(&key_of(&stack, day)).await?.len(), 1);
    }

    // 3. Someone writes a torn file on a day that has no valid version: the validator puts it
    // aside and deletes the key, and the next fill writes the day whole.
    let torn_key = key_of(&stack, &nov5);
    let torn_version = stack.aws_put_object(&torn_key, b"PAR1 torn").await?;
    eventually(
        "the torn upload to be quarantined and its key deleted",
        PATIENCE,
        || async {
            let tags = store.get_tags(&torn_key, Some(&torn_version)).await?;
            let quarantined =
                tags.get("cachefill-status").map(String::as_str) == Some("quarantined");
            let current = match store.head(&torn_key, None).await {
                Ok(meta) => meta.version_id,
                Err(StorageError::NotFound { .. }) => None,
                Err(e) => return Err(anyhow::Error::from(e)),
            };
            Ok(if quarantined && current.is_none() {
                Seen::Ready(())
            } else {
                Seen::NotYet((tags, current))
            })
        },
    )
    .await?;
    let record = audited(&stack, &torn_key, &torn_version, "quarantined").await?;
    assert_eq!(record["restore"]["action"], "deleted", "{record}");
    let aside = layout(&stack).quarantine_prefix_of(&nov5.relative_path());
    let kept = store
        .get(&format!("{aside}{torn_version}.parquet"), None)
        .await?;
    assert_eq!(kept.bytes.as_ref(), b"PAR1 torn");

    let before = replay.server().requests().len();
    let repaired = fill(&stack, "2025-11-05T00:00:00Z", "2025-11-06T00:00:00Z").await?;
    assert!(repaired.succeeded(), "{repaired:?}");
    assert_eq!(repaired.payload["status"], "filled", "{}", repaired.payload);
    let parts = parts_of(&repaired.payload, &[&nov5], &stack);
    let nov5_version = assert_whole_day(&stack, &nov5, parts[0]).await?;
    assert_ne!(nov5_version, torn_version);
    assert_eq!(
        repaired.payload["upstream_requests"],
        replay.server().requests().len() - before
    );
    validated(&stack, &nov5, &nov5_version).await?;

    // 4. A readonly job over 11-04..11-06 (exclusive) finds 11-05 complete in the bucket and
    // invokes the miss-handler once, for 11-04 alone.
    let cache = tempfile::tempdir()?;
    let before = replay.server().requests().len();
    let got = cachefill_get(
        &stack,
        cache.path(),
        "2025-11-04T00:00:00Z",
        "2025-11-06T00:00:00Z",
    )
    .await?;
    assert_eq!(got["invocations"], 1, "{got}");
    let paths = got["paths"]
        .as_array()
        .unwrap_or_else(|| panic!("no paths: {got}"));
    let dates: Vec<&str> = paths.iter().filter_map(|p| p["date"].as_str()).collect();
    assert_eq!(dates, ["2025-11-04", "2025-11-05"], "{got}");
    let sources: Vec<&str> = paths.iter().filter_map(|p| p["source"].as_str()).collect();
    assert_eq!(sources, ["filled", "remote_hit"], "{got}");
    for (day, path) in [&nov4, &nov5].into_iter().zip(paths) {
        let want = ids_of(day);
        assert_eq!(path["key"], key_of(&stack, day).as_str(), "{path}");
        assert_eq!(path["complete"], true, "{path}");
        assert_eq!(path["rows"], want.end - want.start, "{path}");
        assert_eq!(path["first_id"], want.start, "{path}");
        assert_eq!(path["last_id"], want.end - 1, "{path}");
        let local = path["path"].as_str().expect("a local path");
        let ids: BTreeSet<i64> = file::decode(std::fs::read(local)?.into())?
            .trades
            .iter()
            .map(|t| t.id)
            .collect();
        assert!(ids.iter().copied().eq(want.clone()), "{local}");
    }
    // The one invocation fetched 11-04 only; 11-05 was downloaded, not written again.
    assert_eq!(
        got["upstream_requests"],
        replay.server().requests().len() - before
    );
    assert!(replay.server().requests().len() > before);
    // 11-05's history: the torn upload, the validator's delete marker, the repair; no more.
    let history = store.list_versions(&torn_key).await?;
    let objects: BTreeSet<&str> = history
        .iter()
        .filter(|v| !v.is_delete_marker)
        .map(|v| v.version_id.as_str())
        .collect();
    assert_eq!(
        objects,
        BTreeSet::from([torn_version.as_str(), nov5_version.as_str()]),
        "{history:?}"
    );
    assert_eq!(
        history.iter().filter(|v| v.is_delete_marker).count(),
        1,
        "{history:?}"
    );
    let nov4_version = store
        .head(&key_of(&stack, &nov4), None)
        .await?
        .version_id
        .expect("a versioned bucket");
    validated(&stack, &nov4, &nov4_version).await?;

    let report = relay.stop().await;
    assert!(report.failed.is_empty(), "{report:?}");
    assert!(report.rejected.is_empty(), "{report:?}");
    Ok(())
}

#[tokio::test]
async fn a_restricted_location_is_no_permission_naming_the_region_and_writes_nothing()
-> anyhow::Result<()> {
    let replay = BinanceReplay::start().await?;
    replay.set_now(ms(REPLAY_NOW));
    let Some(stack) = stack_for("binance 451 end to end", &replay, false).await? else {
        return Ok(());
    };
    stack.start_function(MISS_HANDLER).await?;
    let nov7 = day("2025-11-07");
    let key = key_of(&stack, &nov7);

    // No archive for the day: it goes to REST, which refuses the region.
    replay.archive_missing(nov7.date);
    replay
        .server()
        .inject_route(AGG_TRADES_PATH, None, Some(1), restricted_location());
    let refused = fill(&stack, "2025-11-07T00:00:00Z", "2025-11-08T00:00:00Z").await?;
    assert!(!refused.succeeded(), "{refused:?}");
    assert_eq!(
        refused.error_type(),
        Some("UpstreamNoPermission"),
        "{refused:?}"
    );
    let message = refused.error_message().unwrap_or_default();
    for needle in ["region", "451", "BINANCE_BASE_URL"] {
        assert!(message.contains(needle), "{needle} not in: {message}");
    }
    // Not retried: a 451 does not go away by asking again.
    assert_eq!(replay.agg_requests().len(), 1);
    assert!(
        stack.store().list_versions(&key).await?.is_empty(),
        "the refused fill wrote {key}"
    );
    let folder = format!(
        "{}binance/crypto/tick/aggtrades/",
        stack.config().version_root()
    );
    assert!(stack.store().list(&folder).await?.is_empty());

    // The same instance fills the day once Binance answers.
    let filled = fill(&stack, "2025-11-07T00:00:00Z", "2025-11-08T00:00:00Z").await?;
    assert_eq!(filled.payload["status"], "filled", "{filled:?}");
    let parts = parts_of(&filled.payload, &[&nov7], &stack);
    assert_whole_day(&stack, &nov7, parts[0]).await?;
    Ok(())
}
