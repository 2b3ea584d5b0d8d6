//! A readonly job's miss, end to end: the client invokes the miss-handler through the Invoke
//! API, the miss-handler fetches from the ThetaData replay server and writes parquet and
//! sidecar at the canonical key, moto notifies, the relay invokes the validator, which
//! records the version in the manifest and audits it; the client has downloaded exactly that
//! version. A second job reads it from the bucket without invoking anything, and a later
//! range costs only the sessions still missing.

use cachefill_client::{DataRequest, Source};
use cachefill_core::codec::{self, Sidecar};

use cachefill_core::storage::ObjectStore;
use cachefill_e2e::python::run_python;
use cachefill_e2e::thetadata::{QUOTE_FIXTURE, RECORDED_SESSION, aapl_hour_quote};
use cachefill_e2e::{MISS_HANDLER, OBJECT_VALIDATOR, Terminal};
use chrono::{NaiveDateTime, TimeZone};
use serde_json::{Value, json};

use crate::{audited, layout, sessions, stack_for, validated};

/// What pyarrow sees in the downloaded file: schema, and the recorded session's rows.
const PYARROW_READER: &str = r#"
import datetime, json, sys
import pyarrow.parquet as pq

table = pq.read_table(sys.argv[1])
day = datetime.date.fromisoformat(sys.argv[2])
rows = [r for r in table.to_pylist()
        if r["datetime"].astimezone(datetime.timezone(datetime.timedelta(hours=-5))).date() == day]
print(json.dumps({
    "columns": [[f.name, str(f.type)] for f in table.schema],
    "rows": table.num_rows,
    "day": [[r["datetime"].isoformat(), r["ask"], r["bid"], r["ask_size"], r["bid_size"], r["missing"]]
            for r in rows],
}))
"#;

/// The recorded session's quotes as lumibot must see them: stamped at bar open in UTC (New York
/// is UTC-5 in January), quotes with neither side dropped.
fn recorded_rows() -> anyhow::Result<Vec<Value>> {
    let fixture: Value = serde_json::from_slice(&std::fs::read(
        cachefill_testing::fixtures::root()?.join(QUOTE_FIXTURE),
    )?)?;
    let body: Value = serde_json::from_str(
        fixture["response"]["rawText"]
            .as_str()
            .or(fixture["response"]["body"].as_str())
            .expect("a recorded body"),
    )?;
    let new_york = chrono::FixedOffset::west_opt(5 * 3600).expect("an offset");
    let mut rows = Vec::new();
    for row in body["response"].as_array().expect("rows") {
        let (ask, bid) = (row["ask"].as_f64().unwrap(), row["bid"].as_f64().unwrap());
        if ask <= 0.0 && bid <= 0.0 {
            continue;
        }
        let wall =
            NaiveDateTime::parse_from_str(row["timestamp"].as_str().unwrap(), "%Y-%m-%dT%H:%M:%S")?;
        let utc = new_york
            .from_local_datetime(&wall)
            .single()
            .expect("no DST change in January")
            .with_timezone(&chrono::Utc);
        rows.push(json!([
            utc.to_rfc3339(),
            ask,
            bid,
            row["ask_size"],
            row["bid_size"],
            false
        ]));
    }
    // Hour bars are stamped at their open: the last (15:30) stops short of the close, so
    // the engine marks the session's edge with a placeholder at 16:00 New York for lumibot.
    rows.push(json!([
        "2024-01-05T21:00:00+00:00",
        null,
        null,
        null,
        null,
        true
    ]));
    Ok(rows)
}

#[tokio::test]
async fn a_readonly_miss_is_filled_validated_and_then_served_from_the_bucket() -> anyhow::Result<()>
{
    let terminal = Terminal::start().await?;
    let Some(stack) = stack_for("fill end to end", &terminal, &[]).await? else {
        return Ok(());
    };
    stack.start_function(MISS_HANDLER).await?;
    stack.start_function(OBJECT_VALIDATOR).await?;
    let relay = stack.relay_to(OBJECT_VALIDATOR)?.spawn();
    let store = stack.store();
    let dataset = aapl_hour_quote();
    let key = layout(&stack).data_key(&dataset);
    assert_eq!(
        key,
        "e2e/cache/v1/thetadata/stock/hour/quote/stock_AAPL_hour_quote.parquet"
    );

    // A job asks for one session; nothing is local or in the bucket.
    let request = DataRequest::parse(dataset.clone(), RECORDED_SESSION, RECORDED_SESSION)?
        .with_after_hours(false);
    let first_cache = tempfile::tempdir()?;
    let first = stack
        .readonly_client(MISS_HANDLER, first_cache.path())
        .await?;
    let filled = first.get(&request).await?;
    assert_eq!(filled.source, Source::Filled);
    assert_eq!(filled.key, key);
    let stats = first.stats();
    assert_eq!((stats.invocations, stats.fills), (1, 1), "{stats:?}");

    // The client widens a miss to its month: every January session was fetched, once each.
    let january = sessions("2024-01-01", "2024-01-31");
    assert_eq!(january.len(), 21);
    let mut fetched = terminal.quote_sessions_requested();
    fetched.sort();
    assert_eq!(fetched, january);
    assert_eq!(stats.upstream_requests, 21);

    // Parquet and sidecar at the canonical key; the client holds exactly that version.
    let object = store.get(&key, None).await?;
    let version = object.meta.version_id.clone().expect("a versioned bucket");
    assert_eq!(filled.version_id.as_deref(), Some(version.as_str()));
    assert_eq!(filled.sha256, codec::sha256_hex(&object.bytes));
    assert_eq!(std::fs::read(&filled.path)?, object.bytes.to_vec());
    let sidecar_key = format!("{key}.meta.json");
    let sidecar = store.get(&sidecar_key, None).await?;
    let parsed = Sidecar::parse(&sidecar.bytes)?;
    assert_eq!(parsed.checksum.as_deref(), Some(filled.sha256.as_str()));
    assert_eq!(parsed.rows, filled.rows);
    let local_sidecar = std::fs::read(format!("{}.meta.json", filled.path.display()))?;
    assert_eq!(local_sidecar, sidecar.bytes.to_vec());

    // The validator judged both through the relay: the manifest's current version is the one
    // downloaded, tagged valid, and each object has its audit record.
    let manifest = validated(&stack, &dataset, &version).await?;
    let current = &manifest["current"];
    assert_eq!(current["sha256"], filled.sha256.as_str());
    assert_eq!(current["etag"].as_str(), Some(object.meta.etag.as_str()));
    assert_eq!(current["rows"], filled.rows);
    assert_eq!(current["min"].as_str(), filled.min.as_deref());
    assert_eq!(current["max"].as_str(), filled.max.as_deref());
    let record = audited(&stack, &key, &version, "valid").await?;
    assert_eq!(record["kind"], "parquet");
    assert_eq!(record["sha256"], filled.sha256.as_str());
    assert_eq!(record["bytes"], object.bytes.len());
    assert_eq!(record["rows"], filled.rows);
    let sidecar_version = sidecar.meta.version_id.clone().expect("a versioned bucket");
    let record = audited(&stack, &sidecar_key, &sidecar_version, "valid").await?;
    assert_eq!(record["kind"], "sidecar");

    // An independent reader sees the contract's schema and the recorded quotes.
    let day = RECORDED_SESSION.to_string();
    let seen: Value = serde_json::from_str(
        &run_python(
            stack.tools(),
            PYARROW_READER,
            &[filled.path.as_path(), std::path::Path::new(&day)],
        )
        .await?,
    )?;
    let ny = "timestamp[ns, tz=America/New_York]";
    assert_eq!(
        seen["columns"],
        json!([
            ["datetime", "timestamp[ns, tz=UTC]"],
            ["ask_size", "int64"],
            ["bid_size", "int64"],
            ["ask_exchange", "int64"],
            ["ask_condition", "int64"],
            ["bid_exchange", "int64"],
            ["ask", "double"],
            ["bid", "double"],
            ["bid_condition", "int64"],
            ["last_trade_time", ny],
            ["last_bid_time", ny],
            ["last_ask_time", ny],
            ["missing", "bool"],
        ])
    );
    assert_eq!(seen["rows"], filled.rows);
    assert_eq!(seen["day"], Value::Array(recorded_rows()?));

    // A second job, with an empty local cache: a remote hit, no invocation, nothing fetched.
    let second_cache = tempfile::tempdir()?;
    let second = stack
        .readonly_client(MISS_HANDLER, second_cache.path())
        .await?;
    let hit = second.get(&request).await?;
    assert_eq!(hit.source, Source::RemoteHit);
    assert_eq!(second.stats().invocations, 0, "{:?}", second.stats());
    assert_eq!(hit.version_id.as_deref(), Some(version.as_str()));
    assert_eq!(std::fs::read(&hit.path)?, object.bytes.to_vec());
    assert_eq!(terminal.quote_sessions_requested().len(), 21);

    // A range reaching into February: only February's sessions are fetched.
    let later =
        DataRequest::parse(dataset.clone(), "2024-01-29", "2024-02-02")?.with_after_hours(false);
    let extended = second.get(&later).await?;
    assert_eq!(extended.source, Source::Filled);
    assert_eq!(second.stats().invocations, 1);
    let mut fetched_now = terminal.quote_sessions_requested()[21..].to_vec();
    fetched_now.sort();
    assert_eq!(fetched_now, sessions("2024-02-01", "2024-02-29"));
    let new_version = extended.version_id.clone().expect("a versioned bucket");
    assert_ne!(new_version, version);
    let manifest = validated(&stack, &dataset, &new_version).await?;
    let history: Vec<&str> = manifest["history"]
        .as_array()
        .expect("a history")
        .iter()
        .filter_map(|e| e["version_id"].as_str())
        .collect();
    assert!(history.contains(&version.as_str()), "{manifest}");
    assert_eq!(store.list_versions(&key).await?.len(), 2);

    let report = relay.stop().await;
    assert!(report.failed.is_empty(), "{report:?}");
    assert!(report.rejected.is_empty(), "{report:?}");
    Ok(())
}
