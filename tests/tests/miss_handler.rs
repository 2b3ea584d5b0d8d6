//! The real miss-handler binary under cargo-lambda's emulator, invoked through the Invoke API,
//! writing into moto: the answer of `docs/ARCHITECTURE.md` §5, the objects it names, an
//! independent reader's view of them, and the S3 notifications they cause.

use std::collections::BTreeSet;

use arrow_array::{Array, Float64Array, TimestampNanosecondArray};
use cachefill_core::codec::{self, sidecar::Sidecar};
use cachefill_core::fill::FillRequest;
use cachefill_core::keys::KeyLayout;
use cachefill_core::storage::ObjectStore;
use cachefill_e2e::python::run_python;
use cachefill_e2e::{MISS_HANDLER, Notification, Stack, StackConfig, parse_notification};
use cachefill_testing::bad_requests;
use serde_json::{Value, json};

fn request() -> Value {
    json!({
        "provider": "synthetic", "asset_type": "stock", "symbol": "SPY",
        "timespan": "minute", "datastyle": "ohlc",
        "start": "2024-01-02", "end": "2024-01-05",
    })
}

fn expected_key(stack: &Stack, request: &Value) -> String {
    let request = FillRequest::from_json(&request.to_string()).expect("a valid request");
    let config = stack.config();
    KeyLayout::new(&config.prefix, &config.version).data_key(&request.dataset)
}

async fn started() -> anyhow::Result<Option<Stack>> {
    let Some(stack) =
        Stack::start_or_skip("miss-handler end to end", StackConfig::default()).await?
    else {
        return Ok(None);
    };
    stack.start_function(MISS_HANDLER).await?;
    Ok(Some(stack))
}

#[tokio::test]
async fn a_fill_writes_parquet_and_sidecar_and_answers_per_the_contract() -> anyhow::Result<()> {
    let Some(stack) = started().await? else {
        return Ok(());
    };
    let store = stack.store();
    let key = expected_key(&stack, &request());
    assert_eq!(
        key,
        "e2e/cache/v1/synthetic/stock/minute/ohlc/stock_SPY_minute_ohlc.parquet"
    );

    let first = stack.invoke(MISS_HANDLER, &request()).await?;
    assert!(first.succeeded(), "{first:?}");
    let answer = &first.payload;
    assert_eq!(answer["status"], "filled", "{answer}");
    assert_eq!(answer["bucket"], stack.config().bucket.as_str());
    assert_eq!(answer["key"], key.as_str());
    // 2024-01-02 .. 2024-01-05 holds four NYSE sessions, one upstream request each.
    assert_eq!(answer["sessions_fetched"], 4);
    assert_eq!(answer["upstream_requests"], 4);
    for field in [
        "version_id",
        "etag",
        "sha256",
        "rows",
        "real_rows",
        "placeholders",
        "min",
        "max",
        "elapsed_ms",
    ] {
        assert!(!answer[field].is_null(), "{field} missing in {answer}");
    }

    // The answer names exactly the object in the bucket.
    let object = store.get(&key, None).await?;
    assert_eq!(
        answer["version_id"],
        object.meta.version_id.as_deref().unwrap()
    );
    assert_eq!(answer["etag"], object.meta.etag.as_str());
    assert_eq!(answer["sha256"], codec::sha256_hex(&object.bytes).as_str());

    // The sidecar, written after the parquet, agrees with it.
    let sidecar = Sidecar::parse(&store.get(&format!("{key}.meta.json"), None).await?.bytes)?;
    assert_eq!(sidecar.checksum.as_deref(), answer["sha256"].as_str());
    assert_eq!(Some(sidecar.rows), answer["rows"].as_u64());
    assert_eq!(Some(sidecar.real_rows), answer["real_rows"].as_u64());
    assert_eq!(Some(sidecar.placeholders), answer["placeholders"].as_u64());
    assert_eq!(sidecar.min.as_deref(), answer["min"].as_str());
    assert_eq!(sidecar.max.as_deref(), answer["max"].as_str());
    let decoded = codec::decode(object.bytes.clone())?;
    assert_eq!(decoded.batch.num_rows() as u64, sidecar.rows);

    // Asked again: a hit, nothing fetched, the same version.
    let second = stack.invoke(MISS_HANDLER, &request()).await?;
    assert!(second.succeeded(), "{second:?}");
    assert_eq!(second.payload["status"], "hit", "{}", second.payload);
    assert_eq!(second.payload["upstream_requests"], 0);
    assert_eq!(second.payload["version_id"], answer["version_id"]);
    assert_eq!(store.list_versions(&key).await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn an_invalid_request_is_an_invalid_request_error_and_writes_nothing() -> anyhow::Result<()> {
    let Some(stack) = started().await? else {
        return Ok(());
    };
    let mut unknown_provider = request();
    unknown_provider["provider"] = json!("bloomberg");
    let mut reversed = request();
    reversed["start"] = json!("2024-01-05");
    reversed["end"] = json!("2024-01-02");
    let mut extra_field = request();
    extra_field["colour"] = json!("blue");

    for payload in [unknown_provider, reversed, extra_field] {
        let answer = stack.invoke(MISS_HANDLER, &payload).await?;
        assert_eq!(
            answer.error_type(),
            Some("InvalidRequest"),
            "{payload}: {answer:?}"
        );
        assert!(
            answer.error_message().is_some_and(|m| !m.is_empty()),
            "{answer:?}"
        );
    }
    // JSON that is not a request object, through a plain HTTP POST to the Invoke API. (AWS's
    // Invoke API refuses bytes that are not JSON before any function runs.)
    for body in [&b"[]"[..], b"\"SPY\"", b"{}"] {
        let answer = stack.invoke_raw(MISS_HANDLER, body).await?;
        assert_eq!(answer.error_type(), Some("InvalidRequest"), "{answer:?}");
    }

    let written = stack.store().list("").await?;
    assert!(written.is_empty(), "a rejected request wrote {written:?}");

    // The same instance still serves valid requests afterwards.
    let answer = stack.invoke(MISS_HANDLER, &request()).await?;
    assert_eq!(answer.payload["status"], "filled", "{answer:?}");
    Ok(())
}

/// Every malformed payload of the handler's own test (`cachefill_testing::bad_requests`:
/// generated ones and the payload fuzz corpus' refused JSON), now sent as bytes to the
/// deployed binary through the emulator's Invoke API: each one is an `InvalidRequest` naming
/// what is wrong, and the bucket holds no object or version afterwards.
#[tokio::test]
async fn every_malformed_payload_through_the_invoke_api_is_refused_and_writes_nothing()
-> anyhow::Result<()> {
    let Some(stack) = started().await? else {
        return Ok(());
    };
    let cases = bad_requests::all()?;
    let generated = bad_requests::generated().len();
    assert!(generated >= 100, "only {generated} generated payloads");
    let mut failures = Vec::new();
    for case in &cases {
        let answer = stack.invoke_raw(MISS_HANDLER, case.body.as_bytes()).await?;
        let named = answer.error_message().is_some_and(|m| case.is_named_by(m));
        if answer.error_type() != Some("InvalidRequest") || !named {
            failures.push(format!(
                "{}: {answer:?} (field {:?})",
                case.body, case.field
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} malformed payloads were not refused as InvalidRequest naming the field:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    let store = stack.store();
    let written = store.list("").await?;
    assert!(written.is_empty(), "refused requests wrote {written:?}");
    let versions = stack
        .s3()
        .list_object_versions()
        .bucket(&stack.config().bucket)
        .send()
        .await?;
    assert!(
        versions.versions().is_empty() && versions.delete_markers().is_empty(),
        "refused requests left versions {versions:?}"
    );
    println!(
        "{} malformed payloads ({generated} generated, {} from the fuzz corpus): all \
         InvalidRequest naming the field, 0 objects written",
        cases.len(),
        cases.len() - generated
    );
    Ok(())
}

/// What pyarrow sees in a parquet file, printed as JSON.
const PYARROW_READER: &str = r#"
import json, sys
import pyarrow.compute as pc
import pyarrow.parquet as pq

path = sys.argv[1]
table = pq.read_table(path)
meta = pq.read_metadata(path)
kv = {k.decode(): v.decode() for k, v in (meta.metadata or {}).items()}
dt = table.column("datetime")
print(json.dumps({
    "columns": [[f.name, str(f.type)] for f in table.schema],
    "rows": table.num_rows,
    "row_groups": meta.num_row_groups,
    "compression": meta.row_group(0).column(0).compression,
    "datetime_ns": [v.value for v in dt],
    "first": dt[0].as_py().isoformat(),
    "last": dt[-1].as_py().isoformat(),
    "close": table.column("close").to_pylist(),
    "missing": pc.sum(pc.cast(table.column("missing"), "int64")).as_py(),
    "ohlc_ordered": pc.all(pc.and_(
        pc.and_(pc.less_equal(table["low"], table["open"]), pc.less_equal(table["open"], table["high"])),
        pc.and_(pc.less_equal(table["low"], table["close"]), pc.less_equal(table["close"], table["high"])),
    )).as_py(),
    "cachefill_keys": sorted(k for k in kv if k.startswith("cachefill.")),
}))
"#;

#[tokio::test]
async fn pyarrow_reads_the_written_parquet_with_the_contract_schema() -> anyhow::Result<()> {
    let Some(stack) = started().await? else {
        return Ok(());
    };
    let answer = stack.invoke(MISS_HANDLER, &request()).await?;
    assert!(answer.succeeded(), "{answer:?}");
    let key = expected_key(&stack, &request());
    let object = stack.store().get(&key, None).await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("stock_SPY_minute_ohlc.parquet");
    std::fs::write(&path, &object.bytes)?;

    let seen: Value =
        serde_json::from_str(&run_python(stack.tools(), PYARROW_READER, &[path.as_path()]).await?)?;

    // `docs/FORMAT.md`, stock minute ohlc, in pyarrow's words.
    let ny = "timestamp[ns, tz=America/New_York]";
    let expected_columns = json!([
        ["datetime", "timestamp[ns, tz=UTC]"],
        ["volume", "int64"],
        ["high", "double"],
        ["low", "double"],
        ["vwap", "double"],
        ["count", "int64"],
        ["close", "double"],
        ["open", "double"],
        ["last_trade_time", ny],
        ["last_bid_time", ny],
        ["last_ask_time", ny],
        ["missing", "bool"],
    ]);
    assert_eq!(seen["columns"], expected_columns);
    assert_eq!(seen["compression"], "SNAPPY");
    assert_eq!(seen["row_groups"], 1);
    assert_eq!(seen["rows"], answer.payload["rows"]);
    assert_eq!(seen["missing"], 0);
    assert_eq!(seen["ohlc_ordered"], true);
    assert_eq!(seen["first"], answer.payload["min"]);
    assert_eq!(seen["last"], answer.payload["max"]);
    let keys: BTreeSet<&str> = seen["cachefill_keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(!keys.is_empty(), "no cachefill.* metadata: {seen}");

    // Every timestamp and close price as our own codec reads them.
    let decoded = codec::decode(object.bytes)?;
    let datetimes = decoded
        .batch
        .column_by_name("datetime")
        .and_then(|c| c.as_any().downcast_ref::<TimestampNanosecondArray>())
        .expect("a datetime column");
    let closes = decoded
        .batch
        .column_by_name("close")
        .and_then(|c| c.as_any().downcast_ref::<Float64Array>())
        .expect("a close column");
    let ours_ns: Vec<i64> = datetimes.values().to_vec();
    let theirs_ns: Vec<i64> = serde_json::from_value(seen["datetime_ns"].clone())?;
    assert_eq!(theirs_ns, ours_ns);
    assert!(
        theirs_ns.windows(2).all(|w| w[0] < w[1]),
        "datetime not strictly increasing"
    );
    let ours_close: Vec<Option<f64>> = (0..closes.len())
        .map(|i| closes.is_valid(i).then(|| closes.value(i)))
        .collect();
    let theirs_close: Vec<Option<f64>> = serde_json::from_value(seen["close"].clone())?;
    assert_eq!(theirs_close, ours_close);
    Ok(())
}

/// S3's form-style key encoding (`+` for a space, `%XX` otherwise), which moto also applies to `/`.
fn decode_event_key(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii");
                out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).expect("utf-8 key")
}

#[tokio::test]
async fn the_fill_notifies_the_queue_with_decodable_s3_events() -> anyhow::Result<()> {
    let Some(stack) = started().await? else {
        return Ok(());
    };
    let answer = stack.invoke(MISS_HANDLER, &request()).await?;
    assert!(answer.succeeded(), "{answer:?}");
    let key = expected_key(&stack, &request());
    let store = stack.store();
    let parquet = store.head(&key, None).await?;
    let sidecar = store.head(&format!("{key}.meta.json"), None).await?;

    let queue = stack.queue().expect("notifications are on");
    let mut test_events = 0;
    let mut records = Vec::new();
    for _ in 0..10 {
        let messages = queue.receive(10, std::time::Duration::from_secs(1)).await?;
        for message in &messages {
            match parse_notification(&message.message_id, &message.body)? {
                Notification::Test => test_events += 1,
                Notification::Event(event) => records.extend(event.records),
            }
            queue.delete(message).await?;
        }
        if records.len() >= 2 && messages.is_empty() {
            break;
        }
    }
    assert_eq!(
        test_events, 1,
        "moto sends one s3:TestEvent when notifications are set"
    );
    // Leases are written too, but the filter passes only parquet files and sidecars.
    let mut seen: Vec<(String, i64, String)> = records
        .iter()
        .map(|r| {
            (
                decode_event_key(r.s3.object.key.as_deref().unwrap_or_default()),
                r.s3.object.size.unwrap_or(-1),
                r.s3.object.e_tag.clone().unwrap_or_default(),
            )
        })
        .collect();
    seen.sort();
    let unquoted = |etag: &str| etag.trim_matches('"').to_string();
    assert_eq!(
        seen,
        vec![
            (key.clone(), parquet.size as i64, unquoted(&parquet.etag)),
            (
                format!("{key}.meta.json"),
                sidecar.size as i64,
                unquoted(&sidecar.etag)
            ),
        ]
    );
    for record in &records {
        assert_eq!(record.event_name.as_deref(), Some("ObjectCreated:Put"));
        assert_eq!(
            record.s3.bucket.name.as_deref(),
            Some(stack.config().bucket.as_str())
        );
        // moto does not report versions; when it does, they must be the written ones.
        if let Some(version) = &record.s3.object.version_id {
            let written = [&parquet.version_id, &sidecar.version_id];
            assert!(
                written.iter().any(|v| v.as_deref() == Some(version)),
                "{version}"
            );
        }
    }
    assert_eq!(queue.backlog().await?, 0);
    Ok(())
}
