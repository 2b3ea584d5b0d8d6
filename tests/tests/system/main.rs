//! The whole system on its stand-ins (`docs/ARCHITECTURE.md` §13): readonly backtest jobs
//! (`cachefill-client`) whose misses invoke the miss-handler through the emulator's Invoke
//! API, the miss-handler fetching from the ThetaData replay server and writing into moto, and
//! moto's notifications relayed to the object-validator; and `scripts/dev-stack`, which
//! starts the same stand-ins for a person.
//!
//! Each test starts its own stack and terminal (about a second) and stops them when it ends,
//! so the tests of this binary run side by side without sharing state.

mod concurrency;
mod crash;
mod dev_stack;
mod fill;
mod lumibot;
mod quarantine;

use std::time::Duration;

use cachefill_core::calendar;
use cachefill_core::dataset::Dataset;
use cachefill_core::keys::KeyLayout;
use cachefill_core::storage::{ObjectStore, StorageError};
use cachefill_e2e::{Seen, Stack, StackConfig, Terminal, eventually};
use chrono::NaiveDate;
use serde_json::Value;

/// Bound on anything asynchronous a test waits for (a relayed event judged, a lease expired).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A stack whose functions reach `terminal`, with `env` added to their environment; `None`
/// when the end-to-end tests are skipped.
pub async fn stack_for(
    test: &str,
    terminal: &Terminal,
    env: &[(&str, &str)],
) -> anyhow::Result<Option<Stack>> {
    let mut function_env = terminal.function_env();
    function_env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let config = StackConfig {
        function_env,
        ..StackConfig::default()
    };
    Ok(Stack::start_or_skip(test, config).await?)
}

pub fn layout(stack: &Stack) -> KeyLayout {
    KeyLayout::new(&stack.config().prefix, &stack.config().version)
}

pub fn day(text: &str) -> NaiveDate {
    text.parse().expect("a date")
}

/// NYSE sessions from `start` to `end`, inclusive.
pub fn sessions(start: &str, end: &str) -> Vec<NaiveDate> {
    calendar::sessions_between(day(start), day(end)).expect("dates on the calendar")
}

/// The dataset's manifest as JSON, `None` while there is none.
pub async fn manifest(stack: &Stack, dataset: &Dataset) -> anyhow::Result<Option<Value>> {
    match stack
        .store()
        .get(&layout(stack).manifest_key(dataset), None)
        .await
    {
        Ok(got) => Ok(Some(serde_json::from_slice(&got.bytes)?)),
        Err(StorageError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Wait until the validator has recorded `version_id` as the dataset's current version and
/// tagged it valid; returns the manifest.
pub async fn validated(
    stack: &Stack,
    dataset: &Dataset,
    version_id: &str,
) -> anyhow::Result<Value> {
    let key = layout(stack).data_key(dataset);
    let manifest = eventually(
        &format!("the validator to record {version_id} as current"),
        PATIENCE,
        || async {
            let Some(manifest) = manifest(stack, dataset).await? else {
                return Ok::<_, anyhow::Error>(Seen::NotYet(Value::Null));
            };
            if manifest["current"]["version_id"] != version_id {
                return Ok(Seen::NotYet(manifest));
            }
            let tags = stack.store().get_tags(&key, Some(version_id)).await?;
            if tags.get("cachefill-status").map(String::as_str) != Some("valid") {
                return Ok(Seen::NotYet(serde_json::json!({"tags": tags})));
            }
            Ok(Seen::Ready(manifest))
        },
    )
    .await?;
    Ok(manifest)
}

/// Every audit record written so far (under `<prefix>/_audit/`).
pub async fn audit_records(stack: &Stack) -> anyhow::Result<Vec<Value>> {
    let store = stack.store();
    let prefix = format!("{}/_audit/", stack.config().prefix.trim_matches('/'));
    let mut records = Vec::new();
    for object in store.list(&prefix).await? {
        let got = store.get(&object.key, None).await?;
        records.push(serde_json::from_slice(&got.bytes)?);
    }
    Ok(records)
}

/// Wait for an audit record about `key` at `version_id` with `verdict`; returns it.
pub async fn audited(
    stack: &Stack,
    key: &str,
    version_id: &str,
    verdict: &str,
) -> anyhow::Result<Value> {
    let record = eventually(
        &format!("an audit record '{verdict}' of {key} at {version_id}"),
        PATIENCE,
        || async {
            let records = audit_records(stack).await?;
            Ok::<_, anyhow::Error>(
                match records.iter().find(|r| {
                    r["key"] == key && r["version_id"] == version_id && r["verdict"] == verdict
                }) {
                    Some(record) => Seen::Ready(record.clone()),
                    None => Seen::NotYet(records),
                },
            )
        },
    )
    .await?;
    Ok(record)
}
