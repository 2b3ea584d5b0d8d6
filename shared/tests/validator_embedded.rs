//! The embedded default: every write through a `ValidatingStore` is judged before it
//! returns, as the S3 event would judge it on AWS.

mod validator_support;

use bytes::Bytes;
use cachefill_core::fill::{EngineConfig, FillEngine, FillRequest};
use cachefill_core::providers::synthetic::SyntheticProvider;
use cachefill_core::storage::local::LocalStore;
use cachefill_core::storage::{ObjectStore, PutOptions};
use cachefill_core::validate::ValidatingStore;
use validator_support::*;

fn store(dir: &std::path::Path) -> ValidatingStore<LocalStore> {
    ValidatingStore::new(LocalStore::new(dir).unwrap(), BUCKET, layout())
}

async fn status(store: &LocalStore, key: &str, version: Option<&str>) -> Option<String> {
    store
        .get_tags(key, version)
        .await
        .unwrap()
        .get("cachefill-status")
        .cloned()
}

async fn audit_keys(store: &LocalStore) -> Vec<String> {
    store
        .list("stage/cache/_audit/")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect()
}

#[tokio::test]
async fn fills_through_the_validating_store_are_recorded_tagged_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dataset(
        r#"{"provider":"synthetic","asset_type":"stock","symbol":"MSFT","timespan":"minute","datastyle":"ohlc"}"#,
    );
    let layout = layout();
    let engine = FillEngine::new(
        store(dir.path()),
        SyntheticProvider::new(),
        EngineConfig::new(BUCKET, layout.clone()),
    );
    let inner = engine.store().inner().clone();
    let mut answers = Vec::new();
    for (start, end) in [("2024-09-16", "2024-09-17"), ("2024-09-18", "2024-09-18")] {
        let request = FillRequest::new(dataset.clone(), date(start), date(end), false).unwrap();
        answers.push(engine.fill(&request).await.unwrap());

        let answer = answers.last().unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(
            &inner
                .get(&layout.manifest_key(&dataset), None)
                .await
                .unwrap()
                .bytes,
        )
        .unwrap();
        assert_eq!(
            manifest["current"]["sha256"],
            answer.sha256.clone().unwrap()
        );
        assert_eq!(
            manifest["current"]["version_id"],
            answer.version_id.clone().unwrap()
        );
        assert_eq!(manifest["history"].as_array().unwrap().len(), answers.len());
        assert_eq!(
            status(&inner, &answer.key, answer.version_id.as_deref())
                .await
                .as_deref(),
            Some("valid")
        );
        let sidecar = inner
            .head(&layout.sidecar_key(&dataset), None)
            .await
            .unwrap();
        assert_eq!(
            status(&inner, &sidecar.key, sidecar.version_id.as_deref())
                .await
                .as_deref(),
            Some("valid"),
            "the sidecar agrees with the parquet"
        );
    }

    let mut verdicts = Vec::new();
    for key in audit_keys(&inner).await {
        let record: serde_json::Value =
            serde_json::from_slice(&inner.get(&key, None).await.unwrap().bytes).unwrap();
        verdicts.push((
            record["kind"].as_str().unwrap().to_string(),
            record["verdict"].as_str().unwrap().to_string(),
        ));
        assert_eq!(record["principal"], "embedded");
    }
    verdicts.sort();
    let expected = [
        ("parquet", "valid"),
        ("parquet", "valid"),
        ("sidecar", "valid"),
        ("sidecar", "valid"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    assert_eq!(
        verdicts, expected,
        "one record per judged object, leases not judged"
    );
    assert!(
        inner
            .list("stage/cache/v3/_quarantine/")
            .await
            .unwrap()
            .is_empty(),
        "nothing the engine writes is rejected"
    );
}

#[tokio::test]
async fn a_bad_put_is_quarantined_and_the_previous_version_back_before_put_returns() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let dataset = spy_minute();
    let key = layout().data_key(&dataset);
    let good = encode(&batch(&dataset, &["2024-09-16"], &[]));
    let put = store
        .put(&key, good.clone(), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(
        status(store.inner(), &key, put.version_id.as_deref())
            .await
            .as_deref(),
        Some("valid")
    );

    let bad = encode(&set_f64(
        &batch(&dataset, &["2024-09-16"], &[]),
        "high",
        0,
        Some(-3.0),
    ));
    let put_bad = store
        .put(&key, bad.clone(), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(
        store.get(&key, None).await.unwrap().bytes,
        good,
        "readers see the previous valid bytes as soon as put returns"
    );
    let bad_version = put_bad.version_id.unwrap();
    let quarantined = format!(
        "{}{bad_version}.parquet",
        layout().quarantine_prefix(&dataset)
    );
    assert_eq!(store.get(&quarantined, None).await.unwrap().bytes, bad);
    assert_eq!(
        status(store.inner(), &key, Some(&bad_version))
            .await
            .as_deref(),
        Some("quarantined")
    );
}

#[tokio::test]
async fn lumibot_readwrite_uploads_are_judged_on_the_copy_not_the_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let dataset = spy_minute();
    let key = layout().data_key(&dataset);
    // lumibot: put <key>.tmp-<secs>-<rand>, copy onto the key, delete the temp file.
    let temp = format!("{key}.tmp-1726500000-9f3a");
    let junk = Bytes::from_static(b"half an upload");
    store
        .put(&temp, junk.clone(), PutOptions::default())
        .await
        .unwrap();
    assert!(
        store
            .inner()
            .list("stage/cache/v3/_quarantine/")
            .await
            .unwrap()
            .is_empty(),
        "a temp upload is not judged"
    );
    let copied = store.copy(&temp, None, &key).await.unwrap();
    store.delete(&temp).await.unwrap();
    assert!(
        store.get(&key, None).await.unwrap_err().is_not_found(),
        "no valid version: deleted"
    );
    assert_eq!(
        status(store.inner(), &key, copied.version_id.as_deref())
            .await
            .as_deref(),
        Some("quarantined")
    );

    let good = encode(&batch(&dataset, &["2024-09-16"], &[]));
    store
        .put(&temp, good.clone(), PutOptions::default())
        .await
        .unwrap();
    store.copy(&temp, None, &key).await.unwrap();
    assert_eq!(store.get(&key, None).await.unwrap().bytes, good);
    assert_eq!(
        store
            .inner()
            .list("stage/cache/v3/_manifest/")
            .await
            .unwrap()
            .len(),
        1
    );
}
