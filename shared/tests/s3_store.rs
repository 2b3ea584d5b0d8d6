//! `S3Store` against a real S3 API server (moto, MinIO, AWS), opt-in.
//!
//! Set `CACHEFILL_TEST_S3_ENDPOINT` (for example `http://127.0.0.1:5123` for
//! `moto_server -p 5123`) to run; without it the tests that need a server say so and pass.
//! Each test creates its own versioned bucket, so runs never see each other's objects.
//! The shared conformance suite holds the S3 store to the same contract as the local store;
//! the checks here cover what only an S3 server can get wrong (error answers, URL encoding,
//! pagination, response precision).
#![cfg(feature = "s3")]

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cachefill_core::storage::s3::{S3Config, S3Store, connect};
use cachefill_core::storage::{
    Metadata, ObjectStore, PutMode, PutOptions, StorageError, conformance,
};
use futures::{StreamExt, TryStreamExt};

const ENDPOINT_VAR: &str = "CACHEFILL_TEST_S3_ENDPOINT";

fn unique(label: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!("{label}-{nanos}-{:08x}", fastrand::u32(..))
}

fn test_config(endpoint: &str) -> S3Config {
    S3Config {
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint.into()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        session_token: None,
    }
}

/// A store on a fresh bucket with versioning enabled, or `None` when no server is configured.
async fn fresh_store() -> Option<S3Store> {
    let Ok(endpoint) = std::env::var(ENDPOINT_VAR) else {
        println!("skipped: set {ENDPOINT_VAR} to run the S3 store tests against a server");
        return None;
    };
    let store = connect(unique("cachefill-test"), &test_config(&endpoint)).await;
    let client = store.client();
    client
        .create_bucket()
        .bucket(store.bucket())
        .send()
        .await
        .expect("create the test bucket");
    client
        .put_bucket_versioning()
        .bucket(store.bucket())
        .versioning_configuration(
            aws_sdk_s3::types::VersioningConfiguration::builder()
                .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("enable versioning on the test bucket");
    Some(store)
}

/// Remove every version and the bucket, so runs against a real account leave nothing behind.
async fn remove_bucket(store: &S3Store) {
    let client = store.client();
    loop {
        let Ok(page) = client
            .list_object_versions()
            .bucket(store.bucket())
            .send()
            .await
        else {
            return;
        };
        let entries: Vec<(String, String)> = page
            .versions()
            .iter()
            .map(|v| (v.key(), v.version_id()))
            .chain(
                page.delete_markers()
                    .iter()
                    .map(|m| (m.key(), m.version_id())),
            )
            .filter_map(|(k, v)| Some((k?.to_string(), v?.to_string())))
            .collect();
        if entries.is_empty() {
            break;
        }
        futures::stream::iter(entries)
            .for_each_concurrent(16, |(key, version)| async move {
                let _ = client
                    .delete_object()
                    .bucket(store.bucket())
                    .key(key)
                    .version_id(version)
                    .send()
                    .await;
            })
            .await;
    }
    let _ = client.delete_bucket().bucket(store.bucket()).send().await;
}

/// Run one named check in its own task so a failure is reported and the others still run.
async fn check<F, Fut>(failures: &mut Vec<String>, name: &str, store: &S3Store, body: F)
where
    F: FnOnce(S3Store, String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let prefix = unique(&format!("checks/{name}"));
    match tokio::spawn(body(store.clone(), prefix)).await {
        Ok(()) => println!("PASS {name}"),
        Err(e) => {
            println!("FAIL {name}: {e}");
            failures.push(name.to_string());
        }
    }
}

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

#[tokio::test]
async fn s3_store_passes_the_conformance_suite() {
    let Some(store) = fresh_store().await else {
        return;
    };
    conformance::run_all(&store, &unique("conformance")).await;
    remove_bucket(&store).await;
}

#[tokio::test]
async fn s3_store_maps_s3_answers() {
    let Some(store) = fresh_store().await else {
        return;
    };
    let mut failures = Vec::new();
    check(
        &mut failures,
        "unknown_version_ids",
        &store,
        unknown_version_ids,
    )
    .await;
    check(
        &mut failures,
        "delete_marker_versions",
        &store,
        delete_marker_versions,
    )
    .await;
    check(
        &mut failures,
        "metadata_keys_lower_case",
        &store,
        metadata_keys_lower_case,
    )
    .await;
    check(
        &mut failures,
        "copy_special_keys",
        &store,
        copy_special_keys,
    )
    .await;
    check(
        &mut failures,
        "list_versions_exact",
        &store,
        list_versions_exact,
    )
    .await;
    check(
        &mut failures,
        "listing_agrees_with_head",
        &store,
        listing_agrees_with_head,
    )
    .await;
    check(&mut failures, "list_paginates", &store, list_paginates).await;
    check(&mut failures, "missing_bucket", &store, missing_bucket).await;
    remove_bucket(&store).await;
    assert!(failures.is_empty(), "failed checks: {failures:?}");
}

async fn unknown_version_ids(store: S3Store, prefix: String) {
    let key = format!("{prefix}/present.parquet");
    store
        .put(&key, bytes("x"), PutOptions::default())
        .await
        .unwrap();
    // AWS answers a malformed id with 400 InvalidArgument and a well-formed unknown one with
    // 404 NoSuchVersion; both mean the version is not there.
    for version in ["not-a-version-id", "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"] {
        let err = store.get(&key, Some(version)).await.unwrap_err();
        assert!(err.is_not_found(), "get {version}: {err:?}");
        let err = store.head(&key, Some(version)).await.unwrap_err();
        assert!(err.is_not_found(), "head {version}: {err:?}");
        let err = store.get_tags(&key, Some(version)).await.unwrap_err();
        assert!(err.is_not_found(), "get_tags {version}: {err:?}");
        let err = store
            .copy(&key, Some(version), &format!("{prefix}/to"))
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "copy {version}: {err:?}");
    }
}

async fn delete_marker_versions(store: S3Store, prefix: String) {
    let key = format!("{prefix}/gone.parquet");
    store
        .put(&key, bytes("data"), PutOptions::default())
        .await
        .unwrap();
    store.delete(&key).await.unwrap();
    let versions = store.list_versions(&key).await.unwrap();
    let marker = versions
        .iter()
        .find(|v| v.is_delete_marker)
        .expect("a delete marker");
    // AWS answers 405 MethodNotAllowed for a delete marker named by id.
    let err = store
        .head(&key, Some(&marker.version_id))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "head of a delete marker: {err:?}");
    let err = store.get(&key, Some(&marker.version_id)).await.unwrap_err();
    assert!(err.is_not_found(), "get of a delete marker: {err:?}");
}

async fn metadata_keys_lower_case(store: S3Store, prefix: String) {
    let key = format!("{prefix}/meta.parquet");
    store
        .put(
            &key,
            bytes("m"),
            PutOptions {
                metadata: Metadata::from([("Cachefill-Rows".to_string(), "42".to_string())]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let expected = Metadata::from([("cachefill-rows".to_string(), "42".to_string())]);
    assert_eq!(store.get(&key, None).await.unwrap().meta.metadata, expected);
    assert_eq!(store.head(&key, None).await.unwrap().metadata, expected);
}

async fn copy_special_keys(store: S3Store, prefix: String) {
    // The copy source travels in a header, so every byte but `/` must be percent-encoded.
    let from = format!("{prefix}/a b+c=d&e%f ü/option_SPY_230801_412.5_CALL.parquet");
    let put = store
        .put(&from, bytes("special"), PutOptions::default())
        .await
        .unwrap();
    store
        .put(&from, bytes("newer"), PutOptions::default())
        .await
        .unwrap();
    let to = format!("{prefix}/copy of it+1.parquet");
    store
        .copy(&from, put.version_id.as_deref(), &to)
        .await
        .unwrap();
    assert_eq!(store.get(&to, None).await.unwrap().bytes, bytes("special"));
    let listed: Vec<_> = store
        .list(&format!("{prefix}/"))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(listed, vec![from, to]);
}

async fn list_versions_exact(store: S3Store, prefix: String) {
    // ListObjectVersions filters by prefix, so the sidecar and temp uploads come back too.
    let key = format!("{prefix}/x.parquet");
    for suffix in ["", ".meta.json", ".tmp-1-ab"] {
        store
            .put(
                &format!("{key}{suffix}"),
                bytes(suffix),
                PutOptions::default(),
            )
            .await
            .unwrap();
    }
    let put = store
        .put(&key, bytes("again"), PutOptions::default())
        .await
        .unwrap();
    let versions = store.list_versions(&key).await.unwrap();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert_eq!(Some(versions[0].version_id.clone()), put.version_id);
    let sidecar = store
        .list_versions(&format!("{key}.meta.json"))
        .await
        .unwrap();
    assert_eq!(sidecar.len(), 1, "{sidecar:?}");
}

async fn listing_agrees_with_head(store: S3Store, prefix: String) {
    let key = format!("{prefix}/listed.parquet");
    store
        .put(&key, bytes("abc"), PutOptions::default())
        .await
        .unwrap();
    let listed = store.list(&format!("{prefix}/")).await.unwrap();
    let head = store.head(&key, None).await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].etag, head.etag, "etags keep their quotes in both");
    assert_eq!(listed[0].size, 3);
    // Listings carry milliseconds on AWS while HEAD's HTTP date has whole seconds.
    let skew = listed[0].last_modified - head.last_modified;
    assert!(skew.num_milliseconds().abs() < 1_000, "{skew:?}");
}

async fn list_paginates(store: S3Store, prefix: String) {
    // S3 pages listings at 1,000 keys.
    let keys: Vec<String> = (0..1_010).map(|i| format!("{prefix}/k{i:05}")).collect();
    futures::stream::iter(keys.clone())
        .map(|key| {
            let store = store.clone();
            async move { store.put(&key, bytes("p"), PutOptions::default()).await }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let listed: Vec<_> = store
        .list(&format!("{prefix}/"))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(listed, keys);
}

async fn missing_bucket(store: S3Store, prefix: String) {
    let elsewhere = S3Store::new(store.client().clone(), unique("cachefill-no-such-bucket"));
    let key = format!("{prefix}/x");
    let err = elsewhere.get(&key, None).await.unwrap_err();
    assert!(
        matches!(err, StorageError::Other { .. }),
        "a missing bucket is a configuration error, not a missing object: {err:?}"
    );
    let err = elsewhere
        .put(&key, bytes("x"), PutOptions::with_mode(PutMode::IfAbsent))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Other { .. }), "{err:?}");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable() {
    // Port 9 (discard) is closed on any test machine, so this needs no server.
    let store = connect("bucket", &test_config("http://127.0.0.1:9")).await;
    let started = std::time::Instant::now();
    let err = store.get("k", None).await.unwrap_err();
    assert!(
        matches!(err, StorageError::Unavailable { .. }),
        "connection refused must be retryable: {err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}
