//! The storage seam against moto through `S3Store`: the conformance suite exactly as the
//! local store runs it (conditional writes, versions, tags, metadata, copies, listings), then
//! what only an S3 server can get wrong (error answers, URL encoding, pagination, precision).

use std::future::Future;

use bytes::Bytes;
use cachefill_core::storage::local::LocalStore;
use cachefill_core::storage::s3::S3Store;
use cachefill_core::storage::{Metadata, ObjectStore, PutMode, PutOptions, StorageError};
use cachefill_e2e::{Stack, StackConfig};
use cachefill_testing::conformance;
use futures::{StreamExt, TryStreamExt};

fn config() -> StackConfig {
    StackConfig {
        notifications: false,
        ..StackConfig::default()
    }
}

#[tokio::test]
async fn s3_store_on_moto_passes_the_conformance_suite_like_the_local_store() -> anyhow::Result<()>
{
    let Some(stack) = Stack::start_or_skip("storage conformance on moto", config()).await? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let local = LocalStore::new(dir.path())?;
    conformance::run_all(&local, "conformance").await;
    conformance::run_all(&stack.store(), "conformance").await;
    Ok(())
}

#[tokio::test]
async fn s3_store_maps_s3_answers() -> anyhow::Result<()> {
    let Some(stack) = Stack::start_or_skip("S3 answers on moto", config()).await? else {
        return Ok(());
    };
    let store = stack.store();
    let mut failures = Vec::new();
    for (name, body) in CHECKS {
        let prefix = format!("checks/{name}");
        match tokio::spawn(body(store.clone(), prefix)).await {
            Ok(()) => println!("PASS {name}"),
            Err(e) => {
                println!("FAIL {name}: {e}");
                failures.push(*name);
            }
        }
    }
    assert!(failures.is_empty(), "failed checks: {failures:?}");
    Ok(())
}

type Check = fn(S3Store, String) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Each check runs in its own task, so a failure is reported and the others still run.
const CHECKS: &[(&str, Check)] = &[
    ("unknown_version_ids", |s, p| {
        Box::pin(unknown_version_ids(s, p))
    }),
    ("delete_marker_versions", |s, p| {
        Box::pin(delete_marker_versions(s, p))
    }),
    ("metadata_keys_lower_case", |s, p| {
        Box::pin(metadata_keys_lower_case(s, p))
    }),
    ("copy_special_keys", |s, p| {
        Box::pin(copy_special_keys(s, p))
    }),
    ("list_versions_exact", |s, p| {
        Box::pin(list_versions_exact(s, p))
    }),
    ("listing_agrees_with_head", |s, p| {
        Box::pin(listing_agrees_with_head(s, p))
    }),
    ("list_paginates", |s, p| Box::pin(list_paginates(s, p))),
    ("missing_bucket", |s, p| Box::pin(missing_bucket(s, p))),
];

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
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
    let elsewhere = S3Store::new(
        store.client().clone(),
        format!("cachefill-no-such-bucket-{:08x}", fastrand::u32(..)),
    );
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
