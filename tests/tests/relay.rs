//! The SQS → function relay: moto's notifications reach a function under the emulator as the
//! `S3Event` AWS would send, a message is deleted only once the function accepted it, and a
//! failed one is delivered again.

use std::time::{Duration, Instant};

use aws_lambda_events::event::s3::S3Event;
use bytes::Bytes;
use cachefill_core::storage::{ObjectStore, PutOptions};
use cachefill_e2e::{EVENT_RECORDER, Notification, Stack, StackConfig, parse_notification};

/// Short, so the redelivery of a failed event is seen without a long wait.
const VISIBILITY: Duration = Duration::from_secs(3);

async fn started(record_dir: &std::path::Path) -> anyhow::Result<Option<Stack>> {
    let config = StackConfig {
        events_visibility: VISIBILITY,
        ..StackConfig::default()
    };
    let Some(stack) = Stack::start_or_skip("relay", config).await? else {
        return Ok(None);
    };
    let env = [(
        "E2E_RECORD_DIR".to_string(),
        record_dir.display().to_string(),
    )];
    stack.start_function_with(EVENT_RECORDER, &env).await?;
    Ok(Some(stack))
}

fn recorded(dir: &std::path::Path) -> anyhow::Result<Vec<S3Event>> {
    let mut events = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        events.push(serde_json::from_slice(&std::fs::read(entry?.path())?)?);
    }
    Ok(events)
}

fn keys(events: &[S3Event]) -> Vec<String> {
    let mut keys: Vec<String> = events
        .iter()
        .flat_map(|e| &e.records)
        .filter_map(|r| r.s3.object.key.clone())
        .collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn the_relay_delivers_each_written_object_once_as_an_s3_event() -> anyhow::Result<()> {
    let record_dir = tempfile::tempdir()?;
    let Some(stack) = started(record_dir.path()).await? else {
        return Ok(());
    };
    let store = stack.store();
    let root = stack.config().version_root();
    for key in [
        format!("{root}synthetic/stock/minute/ohlc/stock_A_minute_ohlc.parquet"),
        format!("{root}synthetic/stock/minute/ohlc/stock_A_minute_ohlc.parquet.meta.json"),
        // Not notified: wrong suffix, or outside the version root.
        format!("{root}_leases/synthetic/stock/minute/ohlc/stock_A_minute_ohlc.parquet.lease"),
        "elsewhere/v1/x.parquet".to_string(),
    ] {
        store
            .put(&key, Bytes::from_static(b"x"), PutOptions::default())
            .await?;
    }

    let relay = stack.relay_to(EVENT_RECORDER)?;
    let report = relay.drain(Duration::from_secs(1), 10).await?;
    assert_eq!(report.test_events, 1, "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    assert!(report.rejected.is_empty(), "{report:?}");
    assert_eq!(report.delivered.len(), 2, "{report:?}");

    // What the function received is what the relay delivered, keys as moto encodes them.
    let events = recorded(record_dir.path())?;
    assert_eq!(events.len(), 2);
    assert_eq!(keys(&events), keys(&report.delivered));
    let encoded = root.replace('/', "%2F");
    assert_eq!(
        keys(&events),
        vec![
            format!("{encoded}synthetic%2Fstock%2Fminute%2Fohlc%2Fstock_A_minute_ohlc.parquet"),
            format!(
                "{encoded}synthetic%2Fstock%2Fminute%2Fohlc%2Fstock_A_minute_ohlc.parquet.meta.json"
            ),
        ]
    );
    for record in events.iter().flat_map(|e| &e.records) {
        assert_eq!(record.event_source.as_deref(), Some("aws:s3"));
        assert_eq!(record.s3.object.size, Some(1));
    }
    assert_eq!(
        stack.queue().unwrap().backlog().await?,
        0,
        "delivered messages are deleted"
    );

    // Nothing left: a second pass delivers nothing again.
    let again = relay.drain(Duration::from_secs(1), 2).await?;
    assert_eq!(again.received, 0, "{again:?}");
    assert_eq!(recorded(record_dir.path())?.len(), 2);
    Ok(())
}

#[tokio::test]
async fn a_failed_delivery_stays_queued_and_is_retried() -> anyhow::Result<()> {
    let record_dir = tempfile::tempdir()?;
    let Some(stack) = started(record_dir.path()).await? else {
        return Ok(());
    };
    let root = stack.config().version_root();
    stack
        .store()
        .put(
            &format!("{root}synthetic/stock/minute/ohlc/stock_reject_minute_ohlc.parquet"),
            Bytes::from_static(b"x"),
            PutOptions::default(),
        )
        .await?;
    let relay = stack.relay_to(EVENT_RECORDER)?;
    // The message is received after this instant, so it may not be offered again before
    // this instant plus the visibility timeout.
    let before_receive = Instant::now();
    let report = relay.drain(Duration::from_secs(1), 3).await?;
    assert_eq!(report.delivered.len(), 0, "{report:?}");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.failed[0].error_type(), Some("RecorderRejected"));
    assert_eq!(
        stack.queue().unwrap().backlog().await?,
        1,
        "the event stays queued"
    );
    assert!(recorded(record_dir.path())?.is_empty());

    // Once the visibility timeout has passed, and not before, the same event is offered again.
    let deadline = before_receive + VISIBILITY + Duration::from_secs(10);
    let retry = loop {
        let pass = relay.relay_once(Duration::from_secs(1)).await?;
        if pass.received > 0 {
            break pass;
        }
        assert!(
            Instant::now() < deadline,
            "the failed event was not offered again"
        );
    };
    assert!(
        before_receive.elapsed() >= VISIBILITY,
        "offered again after {:?}, before the visibility timeout",
        before_receive.elapsed()
    );
    assert_eq!(retry.failed.len(), 1, "{retry:?}");
    assert_eq!(retry.failed[0].error_type(), Some("RecorderRejected"));
    Ok(())
}

#[test]
fn moto_notifications_become_the_events_aws_sends() {
    // Bodies as moto 5 sends them: a test event, then records without userIdentity,
    // requestParameters, responseElements, versionId or sequencer.
    let test = r#"{"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2026-11-22T03:57:58.103Z", "Bucket": "bkt"}"#;
    assert_eq!(parse_notification("m1", test).unwrap(), Notification::Test);

    let put = r#"{"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1", "eventTime": "2026-11-22T03:57:58.629Z", "eventName": "ObjectCreated:Put", "s3": {"s3SchemaVersion": "1.0", "configurationId": "parquet", "bucket": {"name": "bkt", "arn": "arn:aws:s3:::bkt"}, "object": {"key": "stage%2Fv1%2Fa+b%2Fx.parquet", "size": 3, "eTag": "764efa883dda1e11db47671c4a3bbd9e"}}}]}"#;
    let Notification::Event(event) = parse_notification("m2", put).unwrap() else {
        panic!("a put is an event");
    };
    let record = &event.records[0];
    assert_eq!(
        record.s3.object.key.as_deref(),
        Some("stage%2Fv1%2Fa+b%2Fx.parquet")
    );
    assert_eq!(
        record.s3.object.e_tag.as_deref(),
        Some("764efa883dda1e11db47671c4a3bbd9e")
    );
    assert_eq!(record.s3.object.version_id, None);
    assert_eq!(record.s3.bucket.name.as_deref(), Some("bkt"));
    assert_eq!(record.event_name.as_deref(), Some("ObjectCreated:Put"));
    // What the validator receives has every field AWS always sends.
    let sent = serde_json::to_value(&event).unwrap();
    for field in ["userIdentity", "requestParameters", "responseElements"] {
        assert!(sent["Records"][0][field].is_object(), "{field}: {sent}");
    }

    for bad in ["not json", r#"{"Records": "x"}"#, r#"{"Something": 1}"#] {
        assert!(parse_notification("m3", bad).is_err(), "{bad}");
    }
}
