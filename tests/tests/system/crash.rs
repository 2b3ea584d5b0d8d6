//! A miss-handler killed (SIGKILL, as a crashed or out-of-memory sandbox) while it fetches
//! leaves nothing half-written: no object where there was none, the previous version where
//! there was one. Its lease outlives it, so the next request succeeds once the lease expires.

use std::time::Duration;

use cachefill_client::{DataRequest, Source};
use cachefill_core::codec;
use cachefill_core::storage::{ObjectStore, StorageError, VersionInfo};
use cachefill_e2e::thetadata::{QUOTE_PATH, aapl_hour_quote};
use cachefill_e2e::{MISS_HANDLER, Seen, Stack, Terminal, eventually};
use cachefill_testing::thetadata::Fault;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::{PATIENCE, layout, stack_for};

/// Short, so the test waits seconds for the dead fill's lease rather than the default 16 min.
const LEASE_TTL_SECONDS: &str = "4";

fn fill_request(start: &str, end: &str) -> Value {
    json!({
        "provider": "thetadata", "asset_type": "stock", "symbol": "AAPL",
        "timespan": "hour", "datastyle": "quote",
        "start": start, "end": end, "include_after_hours": false,
    })
}

/// The lease's expiry while someone holds it; `None` when there is no lease or it expired.
async fn live_lease(stack: &Stack, lease_key: &str) -> anyhow::Result<Option<DateTime<Utc>>> {
    match stack.store().get(lease_key, None).await {
        Ok(got) => {
            let body: Value = serde_json::from_slice(&got.bytes)?;
            let expires_at: DateTime<Utc> = body["expires_at"]
                .as_str()
                .expect("a lease names its expiry")
                .parse()?;
            Ok((expires_at > Utc::now()).then_some(expires_at))
        }
        Err(StorageError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Invoke a fill whose upstream answers hang, and SIGKILL the miss-handler once it holds the
/// lease and is waiting on the terminal. Returns the orphaned lease's expiry.
async fn kill_mid_fill(
    stack: &Stack,
    terminal: &Terminal,
    request: &Value,
) -> anyhow::Result<DateTime<Utc>> {
    let lease_key = layout(stack).lease_key(&aapl_hour_quote());
    terminal.server().inject_route(
        QUOTE_PATH,
        None,
        None,
        Fault::Delay(Duration::from_secs(120)),
    );
    let asked_before = terminal.quote_sessions_requested().len();
    let invocation = stack.invoke(MISS_HANDLER, request);
    let kill = async {
        let expires_at = eventually(
            "the fill to hold the lease and wait on the terminal",
            PATIENCE,
            || async {
                let asked = terminal.quote_sessions_requested().len() > asked_before;
                let lease = live_lease(stack, &lease_key).await?;
                Ok::<_, anyhow::Error>(match lease {
                    Some(expires_at) if asked => Seen::Ready(expires_at),
                    _ => Seen::NotYet((asked, lease)),
                })
            },
        )
        .await?;
        assert_eq!(stack.kill_function(MISS_HANDLER), 1, "one instance killed");
        Ok::<_, anyhow::Error>(expires_at)
    };
    let expires_at = tokio::select! {
        answer = invocation => anyhow::bail!("the fill answered before it was killed: {answer:?}"),
        killed = kill => killed?,
    };
    terminal.server().clear_faults();
    Ok(expires_at)
}

fn version_ids(versions: &[VersionInfo]) -> Vec<String> {
    let mut ids: Vec<String> = versions.iter().map(|v| v.version_id.clone()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_fill_killed_mid_fetch_leaves_no_partial_object_and_the_next_request_succeeds()
-> anyhow::Result<()> {
    let terminal = Terminal::start().await?;
    let env = [("CACHE_LEASE_TTL_SECONDS", LEASE_TTL_SECONDS)];
    let Some(stack) = stack_for("crash mid-fill", &terminal, &env).await? else {
        return Ok(());
    };
    stack.start_function(MISS_HANDLER).await?;
    let store = stack.store();
    let dataset = aapl_hour_quote();
    let key = layout(&stack).data_key(&dataset);
    let sidecar_key = format!("{key}.meta.json");
    let root = stack.config().version_root();
    let cache = tempfile::tempdir()?;
    let client = stack.readonly_client(MISS_HANDLER, cache.path()).await?;

    // Killed while nothing is stored yet: still nothing but the orphaned lease.
    let lease_expiry =
        kill_mid_fill(&stack, &terminal, &fill_request("2024-01-02", "2024-01-05")).await?;
    let stored: Vec<String> = store
        .list(&root)
        .await?
        .into_iter()
        .map(|o| o.key)
        .filter(|k| !k.contains("/_leases/"))
        .collect();
    assert!(stored.is_empty(), "the killed fill left {stored:?}");
    assert!(store.list_versions(&key).await?.is_empty());

    // A new sandbox serves the next request once the dead fill's lease has expired.
    stack.start_function(MISS_HANDLER).await?;
    let request =
        DataRequest::parse(dataset.clone(), "2024-01-02", "2024-01-05")?.with_after_hours(false);
    let first = client.get(&request).await?;
    assert_eq!(first.source, Source::Filled);
    assert!(
        Utc::now() >= lease_expiry,
        "filled before the dead fill's lease expired at {lease_expiry}"
    );
    let object = store.get(&key, None).await?;
    assert_eq!(codec::sha256_hex(&object.bytes), first.sha256);

    // Killed while extending the file: the previous version and its sidecar stay current.
    let parquet_before = store.list_versions(&key).await?;
    let sidecar_before = store.list_versions(&sidecar_key).await?;
    let lease_expiry =
        kill_mid_fill(&stack, &terminal, &fill_request("2024-01-02", "2024-02-09")).await?;
    assert_eq!(
        version_ids(&store.list_versions(&key).await?),
        version_ids(&parquet_before)
    );
    assert_eq!(
        version_ids(&store.list_versions(&sidecar_key).await?),
        version_ids(&sidecar_before)
    );
    let current = store.get(&key, None).await?;
    assert_eq!(current.meta.version_id, object.meta.version_id);
    assert_eq!(codec::sha256_hex(&current.bytes), first.sha256);

    // And again the next request succeeds after the lease expired, extending the file.
    stack.start_function(MISS_HANDLER).await?;
    let later =
        DataRequest::parse(dataset.clone(), "2024-02-05", "2024-02-09")?.with_after_hours(false);
    let extended = client.get(&later).await?;
    assert_eq!(extended.source, Source::Filled);
    assert!(
        Utc::now() >= lease_expiry,
        "filled before the dead fill's lease expired at {lease_expiry}"
    );
    assert_ne!(extended.version_id, first.version_id);
    let rows_before = first.rows;
    assert!(extended.rows > rows_before, "{extended:?}");
    assert_eq!(extended.min, first.min, "January's rows are kept");
    Ok(())
}
