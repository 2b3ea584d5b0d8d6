//! The object-validator on a local versioned bucket: valid objects are recorded, repeated
//! and self-caused events change nothing, and concurrent validations lose no entry.

mod validator_support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::Schema;
use bytes::Bytes;
use cachefill_core::codec;
use cachefill_core::dataset::Dataset;
use cachefill_core::fill::{EngineConfig, FillEngine, FillRequest};
use cachefill_core::providers::synthetic::SyntheticProvider;
use cachefill_core::storage::PutResult;
use cachefill_core::storage::local::LocalStore;
use cachefill_core::storage::{ObjectStore, PutOptions};
use cachefill_core::validate::event::TEST_EVENT;
use cachefill_core::validate::{
    EventRecord, Outcome, Restore, SkipReason, Validator, ValidatorConfig,
};
use cachefill_testing::doubles::{CountingStore, FailingStore};
use chrono::Utc;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use validator_support::*;

fn synthetic_day() -> Dataset {
    dataset(
        r#"{"provider":"synthetic","asset_type":"stock","symbol":"AAPL","timespan":"day","datastyle":"ohlc"}"#,
    )
}

/// Snapshot of what the validator may change about one dataset.
#[derive(Debug, PartialEq, Eq)]
struct Footprint {
    history: usize,
    quarantined: usize,
    data_versions: usize,
    sidecar_versions: usize,
}

async fn footprint(bucket: &Bucket, dataset: &Dataset) -> Footprint {
    let layout = layout();
    Footprint {
        history: bucket.history_len(dataset).await,
        quarantined: bucket.keys_under("stage/cache/v3/_quarantine/").await.len(),
        data_versions: bucket
            .store()
            .list_versions(&layout.data_key(dataset))
            .await
            .unwrap()
            .len(),
        sidecar_versions: bucket
            .store()
            .list_versions(&layout.sidecar_key(dataset))
            .await
            .unwrap()
            .len(),
    }
}

#[tokio::test]
async fn miss_handler_output_passes_and_history_grows_by_one_per_version() {
    let bucket = Bucket::new();
    let dataset = synthetic_day();
    let layout = layout();
    let engine = FillEngine::new(
        bucket.store().clone(),
        SyntheticProvider::new(),
        EngineConfig::new(BUCKET, layout.clone()),
    );
    let sidecar_key = layout.sidecar_key(&dataset);
    let mut versions = Vec::new();
    for (start, end) in [("2024-01-02", "2024-03-28"), ("2024-04-01", "2024-06-28")] {
        let request = FillRequest::new(dataset.clone(), date(start), date(end), true).unwrap();
        let answer = engine.fill(&request).await.unwrap();
        let event = EventRecord::new(BUCKET, &answer.key)
            .with_version(answer.version_id.clone(), answer.etag.clone())
            .with_event("ObjectCreated:Put", Utc::now());
        let verdict = bucket.validator.judge(&event).await.unwrap();
        assert_eq!(verdict.outcome, Outcome::Valid, "{:?}", verdict.violations);
        assert_eq!(verdict.sha256, answer.sha256);
        let sidecar = bucket.store().head(&sidecar_key, None).await.unwrap();
        let event = EventRecord::new(BUCKET, &sidecar_key)
            .with_version(sidecar.version_id.clone(), Some(sidecar.etag.clone()));
        let verdict = bucket.validator.judge(&event).await.unwrap();
        assert_eq!(verdict.outcome, Outcome::Valid, "{:?}", verdict.violations);
        assert_eq!(
            bucket
                .status(&sidecar_key, sidecar.version_id.as_deref())
                .await
                .as_deref(),
            Some("valid")
        );
        versions.push(answer);
        assert_eq!(bucket.history_len(&dataset).await, versions.len());
    }
    let manifest = bucket.manifest(&dataset).await.unwrap();
    let current = &manifest["current"];
    let last = versions.last().unwrap();
    assert_eq!(current["version_id"], last.version_id.clone().unwrap());
    assert_eq!(current["etag"], last.etag.clone().unwrap());
    assert_eq!(current["sha256"], last.sha256.clone().unwrap());
    assert_eq!(current["rows"], last.rows);
    assert_eq!(current["min"], last.min.clone().unwrap());
    assert_eq!(current["max"], last.max.clone().unwrap());
    assert!(current["validated_at"].is_string());
    assert_eq!(
        manifest["history"][1]["version_id"],
        versions[0].version_id.clone().unwrap()
    );
    for answer in &versions {
        assert_eq!(
            bucket
                .status(&answer.key, answer.version_id.as_deref())
                .await
                .as_deref(),
            Some("valid")
        );
    }
    assert!(
        bucket
            .keys_under("stage/cache/v3/_quarantine/")
            .await
            .is_empty()
    );
}

/// What pandas' `DataFrame.to_parquet(engine="pyarrow")` writes for a lumibot frame with a
/// RangeIndex: the same columns and types, the `pandas` schema metadata, pyarrow's
/// writer settings (dictionary encoding, page statistics), no `cachefill.*` metadata.
fn pandas_style(batch: &RecordBatch) -> Bytes {
    let n = batch.num_rows();
    let columns: Vec<serde_json::Value> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| {
            let (pandas_type, numpy_type, metadata) = match f.data_type() {
                arrow_schema::DataType::Timestamp(_, Some(tz)) => (
                    "datetimetz",
                    "datetime64[ns]",
                    serde_json::json!({"timezone": tz.to_string()}),
                ),
                arrow_schema::DataType::Float64 => ("float64", "float64", serde_json::Value::Null),
                arrow_schema::DataType::Int64 => ("int64", "int64", serde_json::Value::Null),
                arrow_schema::DataType::Boolean => ("bool", "bool", serde_json::Value::Null),
                _ => ("unicode", "object", serde_json::Value::Null),
            };
            serde_json::json!({"name": f.name(), "field_name": f.name(), "pandas_type": pandas_type,
                "numpy_type": numpy_type, "metadata": metadata})
        })
        .collect();
    let pandas = serde_json::json!({
        "index_columns": [{"kind": "range", "name": null, "start": 0, "stop": n, "step": 1}],
        "column_indexes": [{"name": null, "field_name": null, "pandas_type": "unicode",
            "numpy_type": "object", "metadata": {"encoding": "UTF-8"}}],
        "columns": columns,
        "creator": {"library": "pyarrow", "version": "17.0.0"},
        "pandas_version": "2.2.3",
    });
    let schema = Schema::new(batch.schema().fields().clone())
        .with_metadata(HashMap::from([("pandas".to_string(), pandas.to_string())]));
    let batch = batch.clone().with_schema(Arc::new(schema)).unwrap();
    let properties = WriterProperties::builder()
        .set_created_by("parquet-cpp-arrow version 17.0.0".into())
        .set_compression(Compression::SNAPPY)
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(1024 * 1024))
        // pyarrow also keeps the schema metadata as file key-value metadata.
        .set_key_value_metadata(Some(vec![parquet::file::metadata::KeyValue::new(
            "pandas".to_string(),
            pandas.to_string(),
        )]))
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(properties)).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    Bytes::from(out)
}

#[tokio::test]
async fn lumibot_shaped_files_pass_and_each_new_version_adds_one_entry() {
    let bucket = Bucket::new();
    let day = dataset(
        r#"{"provider":"thetadata","asset_type":"stock","symbol":"SPY","timespan":"day","datastyle":"ohlc"}"#,
    );
    let option_quote = dataset(
        r#"{"provider":"thetadata","asset_type":"option","symbol":"SPY","timespan":"minute","datastyle":"quote","expiration":"2024-09-20","strike":560,"right":"CALL"}"#,
    );
    let cases = [
        (spy_minute(), vec!["2024-09-16"], vec!["2024-09-17"]),
        (day, vec!["2024-09-03", "2024-09-04"], vec![]),
        (option_quote, vec!["2024-09-16", "2024-09-17"], vec![]),
    ];
    for (dataset, sessions, empty) in cases {
        let key = layout().data_key(&dataset);
        for round in 1..=2 {
            let sessions = &sessions[..sessions.len().min(round)];
            let bytes = pandas_style(&batch(&dataset, sessions, &empty));
            let decoded = codec::decode(bytes.clone()).unwrap();
            assert!(
                decoded.metadata.contains_key("pandas"),
                "pandas metadata kept"
            );
            let put = bucket.put(&key, bytes.clone()).await;
            // lumibot writes the sidecar right after the parquet.
            bucket
                .put(&layout().sidecar_key(&dataset), sidecar_of(&bytes))
                .await;
            let verdict = bucket
                .validator
                .judge(&bucket.event(&key, &put))
                .await
                .unwrap();
            let expected = if round == 2 && sessions.len() == 1 {
                // Same sessions again: byte-identical to the current version.
                Outcome::Duplicate
            } else {
                Outcome::Valid
            };
            assert_eq!(
                verdict.outcome, expected,
                "{dataset}: {:?}",
                verdict.violations
            );
            // A new version of the current bytes is as valid as they are.
            assert_eq!(
                bucket
                    .status(&key, put.version_id.as_deref())
                    .await
                    .as_deref(),
                Some("valid"),
                "{dataset}, round {round}"
            );
        }
        let rounds = if sessions.len() == 1 { 1 } else { 2 };
        assert_eq!(bucket.history_len(&dataset).await, rounds, "{dataset}");
    }
}

#[tokio::test]
async fn redelivered_events_change_nothing() {
    let bucket = Bucket::new();
    let dataset = spy_minute();
    let key = layout().data_key(&dataset);
    let good = encode(&batch(&dataset, &["2024-09-16"], &[]));
    let put = bucket.put(&key, good.clone()).await;
    let event = bucket.event(&key, &put);
    assert_eq!(
        bucket.validator.judge(&event).await.unwrap().outcome,
        Outcome::Valid
    );
    let before = footprint(&bucket, &dataset).await;
    for _ in 0..3 {
        assert_eq!(
            bucket.validator.judge(&event).await.unwrap().outcome,
            Outcome::Duplicate
        );
    }
    assert_eq!(footprint(&bucket, &dataset).await, before);

    // A rejected version's event delivered again: no second quarantine, no second restore.
    let bad = encode(&set_i64(
        &batch(&dataset, &["2024-09-16"], &[]),
        "count",
        2,
        Some(-1),
    ));
    let put_bad = bucket.put(&key, bad).await;
    let bad_event = bucket.event(&key, &put_bad);
    let verdict = bucket.validator.judge(&bad_event).await.unwrap();
    assert!(matches!(verdict.outcome, Outcome::Quarantined { .. }));
    let before = footprint(&bucket, &dataset).await;
    assert_eq!(
        bucket.validator.judge(&bad_event).await.unwrap().outcome,
        Outcome::Duplicate
    );
    assert_eq!(footprint(&bucket, &dataset).await, before);
    assert_eq!(bucket.bytes(&key).await.unwrap(), good);
}

#[tokio::test]
async fn the_restores_own_event_is_a_no_op() {
    let bucket = Bucket::new();
    let dataset = spy_minute();
    let key = layout().data_key(&dataset);
    let good = encode(&batch(&dataset, &["2024-09-16"], &[]));
    let put = bucket.put(&key, good.clone()).await;
    bucket
        .validator
        .judge(&bucket.event(&key, &put))
        .await
        .unwrap();
    let put_bad = bucket.put(&key, Bytes::from_static(b"not parquet")).await;
    let verdict = bucket
        .validator
        .judge(&bucket.event(&key, &put_bad))
        .await
        .unwrap();
    let Outcome::Quarantined {
        restore: Restore::Restored { new_version_id, .. },
    } = verdict.outcome
    else {
        panic!("{:?}", verdict.outcome);
    };
    let restored = bucket
        .store()
        .head(&key, new_version_id.as_deref())
        .await
        .unwrap();
    assert_eq!(
        bucket
            .status(&key, new_version_id.as_deref())
            .await
            .as_deref(),
        Some("valid"),
        "the restored copy is validated data"
    );
    let before = footprint(&bucket, &dataset).await;
    // S3 sends an ObjectCreated event for the restore's write too.
    let event = EventRecord::new(BUCKET, &key)
        .with_version(new_version_id.clone(), Some(restored.etag))
        .with_event("ObjectCreated:Put", Utc::now());
    assert_eq!(
        bucket.validator.judge(&event).await.unwrap().outcome,
        Outcome::Duplicate
    );
    assert_eq!(footprint(&bucket, &dataset).await, before);
    assert_eq!(bucket.bytes(&key).await.unwrap(), good);
}

#[tokio::test]
async fn test_events_reserved_and_temporary_keys_are_skipped_without_writing() {
    let bucket = Bucket::new();
    let dataset = spy_minute();
    let layout = layout();
    let key = layout.data_key(&dataset);
    let good = encode(&batch(&dataset, &["2024-09-16"], &[]));
    let put = bucket.put(&key, good).await;
    bucket
        .validator
        .judge(&bucket.event(&key, &put))
        .await
        .unwrap();

    let garbage = Bytes::from_static(b"garbage");
    let temp_key = format!("{key}.tmp-1726500000-ab12cd");
    let lease_key = layout.lease_key(&dataset);
    let quarantine_key = format!("{}x.parquet", layout.quarantine_prefix(&dataset));
    let audit_key = format!("{}x.json", layout.audit_prefix(date("2024-09-16")));
    let manifest_key = layout.manifest_key(&dataset);
    let foreign_key = "elsewhere/v1/thetadata/stock/minute/ohlc/stock_SPY_minute_ohlc.parquet";
    let mut events = vec![(
        EventRecord::new(BUCKET, "").with_event(TEST_EVENT, Utc::now()),
        SkipReason::TestEvent,
    )];
    for (k, why) in [
        (temp_key.as_str(), SkipReason::Temporary),
        (lease_key.as_str(), SkipReason::Reserved("_leases")),
        (quarantine_key.as_str(), SkipReason::Reserved("_quarantine")),
        (audit_key.as_str(), SkipReason::Reserved("_audit")),
        (foreign_key, SkipReason::Foreign),
    ] {
        let put = bucket.put(k, garbage.clone()).await;
        events.push((bucket.event(k, &put), why));
    }
    let manifest_version = bucket.store().head(&manifest_key, None).await.unwrap();
    events.push((
        EventRecord::new(BUCKET, &manifest_key)
            .with_version(manifest_version.version_id, Some(manifest_version.etag)),
        SkipReason::Reserved("_manifest"),
    ));
    let removed = EventRecord::new(BUCKET, &key).with_event("ObjectRemoved:Delete", Utc::now());
    events.push((removed, SkipReason::NotCreated));

    let keys_before = bucket.keys().await;
    let before = footprint(&bucket, &dataset).await;
    for (event, why) in events {
        let verdict = bucket.validator.judge(&event).await.unwrap();
        assert_eq!(verdict.outcome, Outcome::Skipped(why), "{}", event.key);
        assert_eq!(verdict.audit_key, None, "{}", event.key);
    }
    assert_eq!(bucket.keys().await, keys_before, "nothing was written");
    assert_eq!(footprint(&bucket, &dataset).await, before);
}

#[tokio::test]
async fn a_record_without_version_or_sequencer_judges_the_current_version() {
    let bucket = Bucket::new();
    let dataset = spy_minute();
    let key = layout().data_key(&dataset);
    let put = bucket
        .put(&key, encode(&batch(&dataset, &["2024-09-16"], &[])))
        .await;
    // What moto sends: no versionId, no sequencer.
    let event = EventRecord::new(BUCKET, &key).with_event("ObjectCreated:Put", Utc::now());
    let verdict = bucket.validator.judge(&event).await.unwrap();
    assert_eq!(verdict.outcome, Outcome::Valid);
    assert_eq!(verdict.version_id, put.version_id);
    assert_eq!(verdict.etag.as_deref(), Some(put.etag.as_str()));
    let manifest = bucket.manifest(&dataset).await.unwrap();
    assert_eq!(manifest["current"]["etag"], put.etag);
    assert_eq!(manifest["current"]["version_id"], put.version_id.unwrap());
}

#[tokio::test]
async fn an_older_version_judged_late_joins_history_without_displacing_current() {
    let bucket = Bucket::new();
    let dataset = spy_minute();
    let key = layout().data_key(&dataset);
    let v1 = bucket
        .put(&key, encode(&batch(&dataset, &["2024-09-16"], &[])))
        .await;
    let v2 = bucket
        .put(
            &key,
            encode(&batch(&dataset, &["2024-09-16", "2024-09-17"], &[])),
        )
        .await;
    assert_eq!(
        bucket
            .validator
            .judge(&bucket.event(&key, &v2))
            .await
            .unwrap()
            .outcome,
        Outcome::Valid
    );
    assert_eq!(
        bucket
            .validator
            .judge(&bucket.event(&key, &v1))
            .await
            .unwrap()
            .outcome,
        Outcome::Valid
    );
    let manifest = bucket.manifest(&dataset).await.unwrap();
    assert_eq!(
        manifest["current"]["version_id"],
        v2.version_id.clone().unwrap()
    );
    let ids: Vec<&str> = manifest["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            v2.version_id.as_deref().unwrap(),
            v1.version_id.as_deref().unwrap()
        ]
    );
}

#[tokio::test]
async fn a_bad_version_already_replaced_is_quarantined_without_a_restore() {
    let bucket = Bucket::new();
    let dataset = spy_minute();
    let key = layout().data_key(&dataset);
    let v1 = bucket
        .put(&key, encode(&batch(&dataset, &["2024-09-16"], &[])))
        .await;
    bucket
        .validator
        .judge(&bucket.event(&key, &v1))
        .await
        .unwrap();
    let bad = bucket.put(&key, Bytes::from_static(b"PAR1 torn")).await;
    let newer = encode(&batch(&dataset, &["2024-09-16", "2024-09-17"], &[]));
    bucket.put(&key, newer.clone()).await;
    let verdict = bucket
        .validator
        .judge(&bucket.event(&key, &bad))
        .await
        .unwrap();
    assert_eq!(
        verdict.outcome,
        Outcome::Quarantined {
            restore: Restore::Superseded
        }
    );
    assert_eq!(
        bucket.bytes(&key).await.unwrap(),
        newer,
        "a newer write is never overwritten"
    );
}

#[tokio::test]
async fn records_of_a_batch_are_judged_independently() {
    let dir = tempfile::tempdir().unwrap();
    let store = FailingStore::new(LocalStore::new(dir.path()).unwrap());
    let spy = spy_minute();
    let qqq = dataset(
        r#"{"provider":"thetadata","asset_type":"stock","symbol":"QQQ","timespan":"minute","datastyle":"ohlc"}"#,
    );
    let layout = layout();
    let spy_manifest = layout.manifest_key(&spy);
    store.fail_writes_where(move |key| key == spy_manifest);
    let validator = Validator::new(store, ValidatorConfig::new(BUCKET, layout.clone()));
    let mut events = Vec::new();
    for (dataset, bytes) in [
        (&spy, encode(&batch(&spy, &["2024-09-16"], &[]))),
        (&qqq, Bytes::from_static(b"")),
        (&qqq, encode(&batch(&qqq, &["2024-09-16"], &[]))),
    ] {
        let key = layout.data_key(dataset);
        let put = validator
            .store()
            .put(&key, bytes, PutOptions::default())
            .await
            .unwrap();
        events.push(EventRecord::new(BUCKET, key).with_version(put.version_id, Some(put.etag)));
    }
    events.insert(
        1,
        EventRecord::new(BUCKET, "").with_event(TEST_EVENT, Utc::now()),
    );
    let mut results = Vec::new();
    for event in &events {
        results.push(validator.judge(event).await);
    }
    assert_eq!(results.len(), 4);
    let failed = results[0].as_ref().unwrap_err();
    assert!(failed.is_retryable(), "{failed}");
    assert_eq!(
        results[1].as_ref().unwrap().outcome,
        Outcome::Skipped(SkipReason::TestEvent)
    );
    assert_eq!(
        results[2].as_ref().unwrap().outcome,
        Outcome::Quarantined {
            restore: Restore::Superseded
        },
        "the empty upload was replaced by the next record's version before it was judged"
    );
    assert_eq!(results[3].as_ref().unwrap().outcome, Outcome::Valid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_validations_of_one_key_lose_no_entry() {
    let bucket = Arc::new(Bucket::new());
    let dataset = spy_minute();
    let key = layout().data_key(&dataset);
    let base = batch(&dataset, &["2024-09-16"], &[]);
    let mut events = Vec::new();
    for i in 0..20 {
        let bytes = encode(&set_i64(&base, "volume", 0, Some(1_000 + i)));
        let put = bucket.put(&key, bytes).await;
        events.push(bucket.event(&key, &put));
    }
    let tasks: Vec<_> = events
        .iter()
        .cloned()
        .map(|event| {
            let bucket = Arc::clone(&bucket);
            tokio::spawn(async move { bucket.validator.judge(&event).await.unwrap().outcome })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Outcome::Valid);
    }
    let manifest = bucket.manifest(&dataset).await.unwrap();
    let recorded: BTreeSet<String> = manifest["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version_id"].as_str().unwrap().to_string())
        .collect();
    let written: BTreeSet<String> = events
        .iter()
        .map(|e| e.version_id.clone().unwrap())
        .collect();
    assert_eq!(recorded, written);
    assert_eq!(
        manifest["current"]["version_id"],
        events.last().unwrap().version_id.clone().unwrap(),
        "the newest write is current"
    );
    let order: Vec<&str> = manifest["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version_id"].as_str().unwrap())
        .collect();
    let newest_first: Vec<&str> = events
        .iter()
        .rev()
        .map(|e| e.version_id.as_deref().unwrap())
        .collect();
    assert_eq!(order, newest_first);
}

/// Writers put the parquet first and its sidecar second, so a parquet is often judged
/// while the sidecar still describes the previous version: that is not a violation.
#[tokio::test]
async fn a_parquet_judged_before_its_sidecar_arrives_is_valid_and_the_old_sidecar_stays() {
    let bucket = Bucket::new();
    let dataset = spy_minute();
    let layout = layout();
    let key = layout.data_key(&dataset);
    let sidecar_key = layout.sidecar_key(&dataset);
    // A bucket that predates the validator: v1 and its sidecar were never judged.
    let v1 = encode(&batch(&dataset, &["2024-09-16"], &[]));
    bucket.put(&key, v1.clone()).await;
    let s1 = sidecar_of(&v1);
    bucket.put(&sidecar_key, s1.clone()).await;

    let v2 = encode(&batch(&dataset, &["2024-09-16", "2024-09-17"], &[]));
    let put = bucket.put(&key, v2.clone()).await;
    let verdict = bucket
        .validator
        .judge(&bucket.event(&key, &put))
        .await
        .unwrap();
    assert_eq!(verdict.outcome, Outcome::Valid);
    assert_eq!(
        bucket.bytes(&sidecar_key).await.unwrap(),
        Bytes::from(s1.clone()),
        "the previous version's sidecar is left for the writer to replace"
    );
    assert!(
        bucket
            .keys_under("stage/cache/v3/_quarantine/")
            .await
            .is_empty()
    );

    // The earlier sidecar's own event, delivered late, is not a violation either.
    let s1_version = bucket.store().list_versions(&sidecar_key).await.unwrap()[0].clone();
    let event = EventRecord::new(BUCKET, &sidecar_key)
        .with_version(Some(s1_version.version_id), Some(s1_version.etag));
    assert_eq!(
        bucket.validator.judge(&event).await.unwrap().outcome,
        Outcome::Skipped(SkipReason::SidecarOfEarlierVersion)
    );

    let put = bucket.put(&sidecar_key, sidecar_of(&v2)).await;
    let verdict = bucket
        .validator
        .judge(&bucket.event(&sidecar_key, &put))
        .await
        .unwrap();
    assert_eq!(verdict.outcome, Outcome::Valid);
    assert!(
        bucket
            .keys_under("stage/cache/v3/_quarantine/")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_sidecar_of_the_validated_version_is_judged_on_the_manifest_without_reading_the_parquet()
{
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(CountingStore::new(LocalStore::new(dir.path()).unwrap()));
    let validator = Validator::new(Arc::clone(&store), ValidatorConfig::new(BUCKET, layout()));
    let dataset = spy_minute();
    let layout = layout();
    let key = layout.data_key(&dataset);
    let sidecar_key = layout.sidecar_key(&dataset);
    let event = |key: &str, put: &PutResult| {
        EventRecord::new(BUCKET, key)
            .with_version(put.version_id.clone(), Some(put.etag.clone()))
            .with_event("ObjectCreated:Put", Utc::now())
    };
    let parquet = encode(&batch(&dataset, &["2024-09-16", "2024-09-17"], &[]));
    let put = store
        .put(&key, parquet.clone(), PutOptions::default())
        .await
        .unwrap();
    let verdict = validator.judge(&event(&key, &put)).await.unwrap();
    assert_eq!(verdict.outcome, Outcome::Valid);
    let reads_of_the_parquet = |calls: Vec<(&'static str, String)>| {
        calls
            .into_iter()
            .filter(|(op, k)| *op == "get" && *k == key)
            .count()
    };

    // The sidecar that agrees, and one whose row count is off by one.
    let good = sidecar_of(&parquet);
    let mut bad: serde_json::Value = serde_json::from_str(&good).unwrap();
    bad["rows"] = serde_json::json!(bad["rows"].as_u64().unwrap() + 1);
    for (sidecar, valid) in [(good, true), (bad.to_string(), false)] {
        let put = store
            .put(&sidecar_key, Bytes::from(sidecar), PutOptions::default())
            .await
            .unwrap();
        store.take_calls();
        let verdict = validator.judge(&event(&sidecar_key, &put)).await.unwrap();
        assert_eq!(
            reads_of_the_parquet(store.take_calls()),
            0,
            "the manifest's entry for the version at the key decides"
        );
        if valid {
            assert_eq!(verdict.outcome, Outcome::Valid, "{:?}", verdict.violations);
        } else {
            assert!(
                matches!(verdict.outcome, Outcome::Quarantined { .. }),
                "{:?}",
                verdict.outcome
            );
        }
    }
}

/// An option chain as lumibot writes one: a single `data` struct column.
fn chain_parquet(version: i64) -> Bytes {
    use arrow_array::{ArrayRef, Int64Array, StringArray, StructArray};
    use arrow_schema::{DataType, Field};
    let data = StructArray::from(vec![
        (
            Arc::new(Field::new("Multiplier", DataType::Int64, true)),
            Arc::new(Int64Array::from(vec![100])) as ArrayRef,
        ),
        (
            Arc::new(Field::new("UnderlyingSymbol", DataType::Utf8, true)),
            Arc::new(StringArray::from(vec!["SPY"])) as ArrayRef,
        ),
        (
            Arc::new(Field::new("_chain_cache_version", DataType::Int64, true)),
            Arc::new(Int64Array::from(vec![version])) as ArrayRef,
        ),
    ]);
    let batch = RecordBatch::try_from_iter([("data", Arc::new(data) as ArrayRef)]).unwrap();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    Bytes::from(out)
}

#[tokio::test]
async fn other_objects_lumibot_keeps_are_recognised_audited_and_never_touched() {
    let bucket = Bucket::new();
    let layout = layout();
    let cases: Vec<(&str, Bytes, &str, Option<&str>)> = vec![
        (
            "thetadata/stock/option_chains/SPY_2024-09-13.parquet",
            chain_parquet(3),
            "option_chain",
            Some("_chain_cache_version 3 < 5: lumibot ignores this chain"),
        ),
        (
            "thetadata/stock/snapshot/quote/stock_SPY_snapshot_20240916_1m_093000_093500_quote.parquet",
            Bytes::from_static(b"PAR1 torn"),
            "snapshot",
            Some("unreadable parquet"),
        ),
        (
            "ibkr/future/minute/bars/MES.parquet",
            chain_parquet(1),
            "ibkr",
            None,
        ),
        (
            "yahoo/AAPL_1d.pickle",
            Bytes::from_static(b"\x80\x04"),
            "yahoo",
            None,
        ),
        (
            "bars/v1/thetadata/ab/abcdef.parquet",
            Bytes::from_static(b"junk"),
            "shared_bars",
            Some("unreadable parquet"),
        ),
    ];
    for (relative, body, kind, note) in &cases {
        let key = layout.key_for_relative(relative);
        let put = bucket.put(&key, body.clone()).await;
        let verdict = bucket
            .validator
            .judge(&bucket.event(&key, &put))
            .await
            .unwrap();
        assert_eq!(verdict.outcome, Outcome::Recognised, "{relative}");
        assert_eq!(verdict.other.map(|k| k.as_str()), Some(*kind), "{relative}");
        match note {
            None => assert!(verdict.notes.is_empty(), "{relative}: {:?}", verdict.notes),
            Some(note) => assert!(
                verdict.notes.iter().any(|n| n.starts_with(note)),
                "{relative}: {:?}",
                verdict.notes
            ),
        }
        // Untouched: same bytes, no tag, nothing put aside.
        assert_eq!(bucket.bytes(&key).await.as_ref(), Some(body), "{relative}");
        assert_eq!(bucket.status(&key, None).await, None, "{relative}");
    }
    assert!(
        bucket
            .keys_under("stage/cache/v3/_quarantine/")
            .await
            .is_empty(),
        "nothing quarantined"
    );
    let records = bucket.audit_records().await;
    assert_eq!(records.len(), cases.len(), "one audit record per object");
    for (relative, _, kind, _) in &cases {
        let record = records
            .iter()
            .find(|r| r["key"] == layout.key_for_relative(relative))
            .unwrap_or_else(|| panic!("no audit record of {relative}"));
        assert_eq!(record["verdict"], "recognised");
        assert_eq!(record["other_kind"], *kind);
    }
}

/// Events, their ranges and option chains are judged like datasets: valid versions are
/// recorded and tagged, bad ones put aside with the last valid version restored.
#[tokio::test]
async fn events_ranges_and_chains_are_validated_recorded_and_restored() {
    use cachefill_core::dataset::{AssetType, Provider};
    use cachefill_core::reference::chain::{self, Chain};
    use cachefill_core::reference::events::{self, Event, EventSet, EventType};

    let bucket = Bucket::new();
    let layout = layout();
    let splits = EventSet::new(
        Provider::ThetaData,
        AssetType::Stock,
        "SPY",
        EventType::Splits,
    )
    .unwrap();
    let events_bytes = events::encode(
        &splits,
        &[Event::on(date("2020-08-31"), 4.0)],
        &BTreeMap::new(),
    )
    .unwrap();
    let chain_bytes = chain::encode(
        &Chain {
            multiplier: 100,
            exchange: "SMART".into(),
            underlying: "SPY".into(),
            version: 5,
            calls: BTreeMap::from([(date("2024-09-20"), vec![550.0, 555.0])]),
            puts: BTreeMap::from([(date("2024-09-20"), vec![550.0, 555.0])]),
        },
        &BTreeMap::new(),
    )
    .unwrap();
    let ranges_key = layout.key_for_relative(&splits.ranges_path());
    let valid: Vec<(String, Bytes)> = vec![
        (
            layout.key_for_relative(&splits.relative_path()),
            events_bytes,
        ),
        (
            ranges_key.clone(),
            Bytes::from_static(br#"{"ranges": [["2020-01-01", "2026-12-01"]]}"#),
        ),
        (
            layout.key_for_relative("thetadata/stock/option_chains/SPY_2024-09-16.parquet"),
            chain_bytes,
        ),
    ];
    for (key, body) in &valid {
        let put = bucket.put(key, body.clone()).await;
        let verdict = bucket
            .validator
            .judge(&bucket.event(key, &put))
            .await
            .unwrap();
        assert_eq!(verdict.outcome, Outcome::Valid, "{key}");
        assert_eq!(
            bucket.status(key, None).await.as_deref(),
            Some("valid"),
            "{key}"
        );
        let manifest = layout.manifest_key_of(layout.relative_of(key).unwrap());
        assert!(
            bucket.bytes(&manifest).await.is_some(),
            "{key}: a manifest entry"
        );
    }

    // A ranges file that does not cover an event the parquet holds: noted, still valid
    // (between a fill's two writes they legitimately disagree).
    let narrow = Bytes::from_static(br#"{"ranges": [["2021-01-01", "2026-12-01"]]}"#);
    let put = bucket.put(&ranges_key, narrow.clone()).await;
    let verdict = bucket
        .validator
        .judge(&bucket.event(&ranges_key, &put))
        .await
        .unwrap();
    assert_eq!(verdict.outcome, Outcome::Valid);
    assert!(
        verdict
            .notes
            .iter()
            .any(|n| n.starts_with("1 event(s) outside the ranges file's dates (2020-08-31)")),
        "{:?}",
        verdict.notes
    );

    let bad: Vec<(String, Bytes, &str)> = vec![
        (
            ranges_key.clone(),
            Bytes::from_static(br#"{"ranges": [["2020-01-01", "someday"]]}"#),
            "restored",
        ),
        (
            layout.key_for_relative(&splits.relative_path()),
            encode(&batch(&spy_minute(), &["2024-09-16"], &[])),
            "restored",
        ),
        (
            layout.key_for_relative("thetadata/stock/option_chains/SPY_2024-09-17.parquet"),
            Bytes::from_static(b"PAR1 torn"),
            "deleted",
        ),
    ];
    for (key, body, action) in &bad {
        let before = bucket.bytes(key).await;
        let put = bucket.put(key, body.clone()).await;
        let verdict = bucket
            .validator
            .judge(&bucket.event(key, &put))
            .await
            .unwrap();
        let Outcome::Quarantined { restore } = &verdict.outcome else {
            panic!("{key}: {:?}", verdict.outcome);
        };
        assert_eq!(restore.action(), *action, "{key}");
        assert_eq!(
            bucket.bytes(key).await,
            before,
            "{key}: the last valid version is back"
        );
        assert_eq!(
            bucket
                .status(key, put.version_id.as_deref())
                .await
                .as_deref(),
            Some("quarantined")
        );
    }
    assert_eq!(
        bucket
            .keys_under("stage/cache/v3/_quarantine/")
            .await
            .iter()
            .filter(|k| k.ends_with(".reason.json"))
            .count(),
        3
    );
}

/// Trade days: a valid day is recorded; one whose footer claims ids it lacks, or rows out
/// of order, is quarantined with the last valid version restored; a torn first version is
/// deleted, and the next fill writes the whole day again.
#[tokio::test]
async fn trade_days_are_validated_and_a_corrupt_one_is_filled_again() {
    use cachefill_core::fill::MissRequest;
    use cachefill_core::providers::binance::{BinanceConfig, BinanceProvider};
    use cachefill_core::trades::coverage::DayCoverage;
    use cachefill_core::trades::{AggTrade, TradeDay, TradesRequest, file};
    use cachefill_testing::binance::{BinanceReplay, first_id_at};

    let bucket = Bucket::new();
    let layout = layout();
    let day = TradeDay::new("ETHUSDT", date("2025-11-07")).unwrap();
    let key = layout.key_for_relative(&day.relative_path());
    let trade = |id: i64, offset: i64| AggTrade {
        time: day.start_ms() + offset,
        id,
        price: 3_000.5,
        qty: 0.25,
        first_trade: id * 2,
        last_trade: id * 2 + 1,
        buyer_maker: id % 2 == 0,
        best_match: true,
    };
    let trades: Vec<AggTrade> = (100..110).map(|id| trade(id, id * 1_000)).collect();
    let complete = DayCoverage {
        start_id: Some(100),
        end_id: Some(110),
    };
    let (good, facts) = file::encode(&trades, complete, &BTreeMap::new()).unwrap();
    assert!(facts.complete);
    let put = bucket.put(&key, good.clone()).await;
    let verdict = bucket
        .validator
        .judge(&bucket.event(&key, &put))
        .await
        .unwrap();
    assert_eq!(verdict.outcome, Outcome::Valid);
    assert_eq!(verdict.rows, Some(10));

    let mut gappy = trades.clone();
    gappy.remove(4);
    // A footer that claims the gap-free day's facts over rows with a gap.
    let lying = codec::encode(
        &file::to_batch(&gappy).unwrap(),
        &BTreeMap::from([(
            cachefill_core::format::FACT_COVERAGE.to_string(),
            facts.to_json(),
        )]),
    )
    .unwrap();
    let mut reversed = trades.clone();
    reversed.swap(2, 3);
    let open = DayCoverage {
        end_id: None,
        ..complete
    };
    let (unsorted, _) = file::encode(&reversed, open, &BTreeMap::new()).unwrap();
    let (other_day, _) =
        file::encode(&[trade(100, -1)], DayCoverage::default(), &BTreeMap::new()).unwrap();
    for (body, needle) in [
        (lying, "claims"),
        (unsorted, "not strictly ascending"),
        (other_day, "outside the file's day"),
    ] {
        let put = bucket.put(&key, body).await;
        let verdict = bucket
            .validator
            .judge(&bucket.event(&key, &put))
            .await
            .unwrap();
        let Outcome::Quarantined { restore } = &verdict.outcome else {
            panic!("{needle}: {:?}", verdict.outcome);
        };
        assert_eq!(restore.action(), "restored", "{needle}");
        assert!(
            verdict
                .violations
                .iter()
                .any(|v| v.message.contains(needle)),
            "{needle}: {:?}",
            verdict.violations
        );
        assert_eq!(bucket.bytes(&key).await, Some(good.clone()), "{needle}");
    }

    // A torn day with no valid version before it: deleted, then filled whole.
    let torn_day = TradeDay::new("ETHUSDT", date("2025-11-06")).unwrap();
    let torn_key = layout.key_for_relative(&torn_day.relative_path());
    let put = bucket
        .put(&torn_key, Bytes::from_static(b"PAR1 torn"))
        .await;
    let verdict = bucket
        .validator
        .judge(&bucket.event(&torn_key, &put))
        .await
        .unwrap();
    let Outcome::Quarantined { restore } = &verdict.outcome else {
        panic!("{:?}", verdict.outcome);
    };
    assert_eq!(restore.action(), "deleted");
    assert_eq!(bucket.bytes(&torn_key).await, None);
    let replay = BinanceReplay::start().await.unwrap();
    replay.set_now(day.end_ms() + 3_600_000);
    let engine = FillEngine::new(
        bucket.store().clone(),
        BinanceProvider::new(BinanceConfig::new(&replay.base_url())).unwrap(),
        EngineConfig::new(BUCKET, layout.clone()),
    );
    let answer = engine
        .fill_any(&MissRequest::Trades(
            TradesRequest::new("ETHUSDT", torn_day.start_ms(), torn_day.end_ms()).unwrap(),
        ))
        .await
        .unwrap();
    assert!(answer.parts[0].complete);
    let refilled = file::decode(bucket.bytes(&torn_key).await.unwrap()).unwrap();
    assert_eq!(
        refilled.trades.len() as i64,
        first_id_at("ETHUSDT", torn_day.end_ms()) - first_id_at("ETHUSDT", torn_day.start_ms())
    );
    let put_meta = bucket.store().head(&torn_key, None).await.unwrap();
    let verdict = bucket
        .validator
        .judge(
            &EventRecord::new(BUCKET, &torn_key)
                .with_version(put_meta.version_id.clone(), Some(put_meta.etag.clone())),
        )
        .await
        .unwrap();
    assert_eq!(verdict.outcome, Outcome::Valid, "the refilled day is valid");
}
