//! The handler as the Lambda runtime calls it: S3 event JSON in (as S3, moto and an SQS
//! queue deliver it), verdicts, bucket changes and EMF metric lines out.

use std::collections::BTreeMap;

use bytes::Bytes;
use cachefill_core::codec::{self, rows::rows_to_batch};
use cachefill_core::dataset::Dataset;
use cachefill_core::errors::ErrorType;
use cachefill_core::keys::KeyLayout;
use cachefill_core::providers::synthetic;
use cachefill_core::storage::local::LocalStore;
use cachefill_core::storage::{ObjectStore, PutOptions, PutResult};
use cachefill_core::validate::{Validator, ValidatorConfig};
use cachefill_testing::doubles::FailingStore;
use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use serde_json::{Value, json};

const BUCKET: &str = "cache-bucket";

fn layout() -> KeyLayout {
    KeyLayout::new("stage/cache", "v3")
}

fn spy() -> Dataset {
    Dataset::from_json(
        r#"{"provider":"thetadata","asset_type":"stock","symbol":"BRK.B","timespan":"1D","datastyle":"ohlc"}"#,
    )
    .unwrap()
}

fn parquet(sessions: &[&str]) -> Bytes {
    let dataset = spy();
    let sessions: Vec<_> = sessions.iter().map(|s| s.parse().unwrap()).collect();
    let batch = rows_to_batch(&dataset, synthetic::generate(&dataset, &sessions, false)).unwrap();
    codec::encode(&batch, &BTreeMap::new()).unwrap()
}

fn validator<S: ObjectStore>(store: S) -> Validator<S> {
    Validator::new(store, ValidatorConfig::new(BUCKET, layout()))
}

async fn put(store: &dyn ObjectStore, key: &str, body: Bytes) -> PutResult {
    store.put(key, body, PutOptions::default()).await.unwrap()
}

/// S3's form encoding of a key: `+` for a space, `%XX` for reserved bytes.
fn s3_encode(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b' ' => "+".to_string(),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// One record as S3 sends it (eventVersion 2.1).
fn s3_record(key_as_sent: &str, put: Option<&PutResult>) -> Value {
    let mut object = json!({"key": key_as_sent, "size": 1234});
    if let Some(put) = put {
        object["versionId"] = json!(put.version_id);
        object["eTag"] = json!(put.etag.trim_matches('"'));
        object["sequencer"] = json!("0066E8F5A4C1D2E3F4");
    }
    json!({
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2024-09-16T21:05:00.123Z",
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:AROAEXAMPLE:backtest-job-7"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "x"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "validator",
            "bucket": {"name": BUCKET, "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                "arn": format!("arn:aws:s3:::{BUCKET}")},
            "object": object,
        }
    })
}

fn invocation(payload: Value) -> LambdaEvent<Value> {
    let mut context = Context::default();
    context.request_id = "req-1".into();
    LambdaEvent::new(payload, context)
}

async fn run<S: ObjectStore>(
    validator: &Validator<S>,
    payload: Value,
) -> (
    Result<object_validator::Summary, object_validator::HandlerError>,
    Vec<Value>,
) {
    let mut metrics = Vec::new();
    let result = object_validator::handle(validator, invocation(payload), &mut metrics).await;
    let lines = String::from_utf8(metrics)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (result, lines)
}

#[tokio::test]
async fn an_s3_event_with_an_encoded_key_is_judged_and_measured() {
    let dir = tempfile::tempdir().unwrap();
    let validator = validator(LocalStore::new(dir.path()).unwrap());
    let key = layout().data_key(&spy());
    assert!(key.contains("BRK.B") && key.contains("/1d/"), "{key}");
    let written = put(validator.store(), &key, parquet(&["2024-09-16"])).await;

    let (summary, metrics) = run(
        &validator,
        json!({"Records": [s3_record(&s3_encode(&key), Some(&written))]}),
    )
    .await;
    let summary = summary.unwrap();
    assert_eq!((summary.records, summary.valid), (1, 1));
    assert_eq!(summary.verdicts[0].key, key);
    assert_eq!(summary.verdicts[0].version_id, written.version_id);

    assert_eq!(metrics.len(), 1);
    let emf = &metrics[0];
    let directive = &emf["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "cachefill");
    assert_eq!(directive["Dimensions"], json!([["Bucket"]]));
    let names: Vec<&str> = directive["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["ObjectsValidated", "ObjectsQuarantined", "ValidationMs"]
    );
    assert!(emf["_aws"]["Timestamp"].is_i64());
    assert_eq!(
        emf["Bucket"], BUCKET,
        "every dimension is a member of the line"
    );
    assert_eq!(emf["ObjectsValidated"], 1);
    assert_eq!(emf["ObjectsQuarantined"], 0);
    assert!(emf["ValidationMs"].is_u64());

    let audit = validator
        .store()
        .list("stage/cache/_audit/dt=")
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    let record: Value = serde_json::from_slice(
        &validator
            .store()
            .get(&audit[0].key, None)
            .await
            .unwrap()
            .bytes,
    )
    .unwrap();
    assert_eq!(record["principal"], "AWS:AROAEXAMPLE:backtest-job-7");
    assert_eq!(record["sequencer"], "0066E8F5A4C1D2E3F4");
    assert_eq!(record["event_time"], "2024-09-16T21:05:00.123Z");
}

#[tokio::test]
async fn a_moto_record_without_version_and_with_encoded_slashes_judges_the_current_version() {
    let dir = tempfile::tempdir().unwrap();
    let validator = validator(LocalStore::new(dir.path()).unwrap());
    let key = layout().data_key(&spy());
    let written = put(validator.store(), &key, parquet(&["2024-09-16"])).await;
    let moto_key = key.replace('/', "%2F");
    let (summary, _) = run(&validator, json!({"Records": [s3_record(&moto_key, None)]})).await;
    let summary = summary.unwrap();
    assert_eq!(summary.valid, 1, "{:?}", summary.verdicts);
    assert_eq!(summary.verdicts[0].version_id, written.version_id);
}

#[tokio::test]
async fn a_test_event_is_skipped_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let validator = validator(LocalStore::new(dir.path()).unwrap());
    let (summary, metrics) = run(
        &validator,
        json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2024-09-16T21:00:00.000Z",
               "Bucket": BUCKET, "RequestId": "5582815E1AEA5ADF", "HostId": "8cLeGAmw"}),
    )
    .await;
    let summary = summary.unwrap();
    assert_eq!((summary.records, summary.skipped), (1, 1));
    assert!(metrics.is_empty());
    assert!(validator.store().list("").await.unwrap().is_empty());
}

#[tokio::test]
async fn every_record_of_an_event_is_judged_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let validator = validator(LocalStore::new(dir.path()).unwrap());
    let key = layout().data_key(&spy());
    let good = parquet(&["2024-09-16"]);
    let v1 = put(validator.store(), &key, good.clone()).await;
    let first = json!({"Records": [s3_record(&s3_encode(&key), Some(&v1))]});
    let (summary, _) = run(&validator, first).await;
    assert_eq!(summary.unwrap().valid, 1);

    let v2 = put(
        validator.store(),
        &key,
        Bytes::from_static(b"PAR1 not really"),
    )
    .await;
    let both = json!({"Records": [
        s3_record(&s3_encode(&key), Some(&v2)),
        s3_record(&s3_encode(&key), Some(&v1)),
    ]});
    let (summary, metrics) = run(&validator, both).await;
    let summary = summary.unwrap();
    assert_eq!(summary.records, 2);
    assert_eq!(
        (summary.quarantined, summary.duplicates),
        (1, 1),
        "{:?}",
        summary.verdicts
    );
    assert_eq!(summary.verdicts[0].detail.as_deref(), Some("restored"));
    assert_eq!(metrics.len(), 1);
    assert_eq!(metrics[0]["ObjectsQuarantined"], 1);
    assert_eq!(validator.store().get(&key, None).await.unwrap().bytes, good);
}

#[tokio::test]
async fn a_queue_batch_is_not_an_s3_event_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let validator = validator(LocalStore::new(dir.path()).unwrap());
    let key = layout().data_key(&spy());
    let v1 = put(validator.store(), &key, Bytes::from_static(b"not parquet")).await;
    let body = json!({"Records": [s3_record(&s3_encode(&key), Some(&v1))]});
    let batch = json!({"Records": [{
        "messageId": "m0", "receiptHandle": "h", "body": body.to_string(),
        "attributes": {}, "messageAttributes": {}, "md5OfBody": "x",
        "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:1:q",
        "awsRegion": "us-east-1"
    }]});
    let (result, metrics) = run(&validator, batch).await;
    let error = result.unwrap_err();
    assert_eq!(
        error.error_type,
        ErrorType::InvalidRequest,
        "{}",
        error.message
    );
    assert!(metrics.is_empty());
    assert_eq!(
        validator.store().list("").await.unwrap().len(),
        1,
        "the upload is untouched: nothing was judged"
    );
}

#[tokio::test]
async fn a_storage_outage_fails_the_invocation_after_judging_the_other_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = FailingStore::new(LocalStore::new(dir.path()).unwrap());
    let layout = layout();
    let spy = spy();
    let qqq = Dataset::from_json(
        r#"{"provider":"thetadata","asset_type":"index","symbol":"SPX","timespan":"1D","datastyle":"ohlc"}"#,
    )
    .unwrap();
    let failing_manifest = layout.manifest_key(&spy);
    store.fail_writes_where(move |k| k == failing_manifest);
    let validator = validator(store);
    let spy_key = layout.data_key(&spy);
    let spy_put = put(validator.store(), &spy_key, parquet(&["2024-09-16"])).await;
    let spx_key = layout.data_key(&qqq);
    let spx_put = put(validator.store(), &spx_key, Bytes::new()).await;
    let (result, _) = run(
        &validator,
        json!({"Records": [
            s3_record(&s3_encode(&spy_key), Some(&spy_put)),
            s3_record(&s3_encode(&spx_key), Some(&spx_put)),
        ]}),
    )
    .await;
    let error = result.unwrap_err();
    assert_eq!(error.error_type, ErrorType::StorageConflict);
    assert!(error.message.contains(&spy_key), "{}", error.message);
    let diagnostic: Diagnostic = error.into();
    assert_eq!(diagnostic.error_type, "StorageConflict");
    assert!(
        validator
            .store()
            .get(&spx_key, None)
            .await
            .unwrap_err()
            .is_not_found(),
        "the other record was judged: the empty upload is gone"
    );
}

#[test]
fn records_keep_what_s3_said_about_the_writer() {
    let put = PutResult {
        etag: "\"abc\"".into(),
        version_id: Some("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY".into()),
    };
    let payload = json!({"Records": [s3_record("stage/cache/v3/a+b%2Bc.parquet", Some(&put))]});
    let records = object_validator::records_of(&payload).unwrap();
    let record = records[0].as_ref().unwrap();
    assert_eq!(record.key, "stage/cache/v3/a b+c.parquet");
    assert_eq!(record.bucket, BUCKET);
    assert_eq!(
        record.version_id.as_deref(),
        Some("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY")
    );
    assert_eq!(record.etag.as_deref(), Some("abc"));
    assert_eq!(record.sequencer.as_deref(), Some("0066E8F5A4C1D2E3F4"));
    assert_eq!(
        record.principal.as_deref(),
        Some("AWS:AROAEXAMPLE:backtest-job-7")
    );
    assert_eq!(record.source_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(record.size, Some(1234));

    let bad = json!({"Records": [s3_record("a%ZZ", None)]});
    assert!(object_validator::records_of(&bad).unwrap()[0].is_err());
    let not_an_event = object_validator::records_of(&json!({"hello": 1})).unwrap_err();
    assert_eq!(not_an_event.error_type, ErrorType::InvalidRequest);
}
