//! Each mode's behaviour: readonly never writes, readwrite uploads through a temporary key,
//! disabled touches nothing remote; lumibot's `ensure_local_file` / `on_local_update`.

mod common;

use std::sync::Arc;

use cachefill_client::cli::job as demo;
use cachefill_client::embedded::Embedded;
use cachefill_client::local_cache::{marker_path, sidecar_path};
use cachefill_client::{CacheClient, ClientConfig, ClientError, InProcessInvoker, Source};
use cachefill_core::codec::{self, Sidecar};
use cachefill_core::keys::{KeyLayout, relative_path};
use cachefill_core::settings::{CacheMode, ClientSettings};
use cachefill_core::storage::local::LocalStore;
use cachefill_core::storage::{ObjectStore, PutOptions, StorageError};
use common::{Counted, Policy, Watched, dataset, quick, request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_never_writes_to_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Embedded::open(dir.path()).unwrap();
    // The client reads through a store that refuses and records every write attempt; the
    // in-process miss-handler writes through its own handle, as the Lambda does.
    let watched = Arc::new(Watched::new(
        LocalStore::new(&embedded.bucket_dir).unwrap(),
        Policy::RefuseWrites,
    ));
    let invoker = Arc::new(Counted::new(InProcessInvoker::new(
        embedded.engine(embedded.providers()),
    )));
    let client = CacheClient::new(
        quick(embedded.config()),
        Some(watched.clone()),
        Some(invoker.clone()),
    )
    .unwrap();

    let outcome = demo::run_workload(&client).await.unwrap();
    assert!(outcome.fills >= 1 && invoker.calls() >= 1);
    let key = client.layout().data_key(&demo::dataset());
    let path = client
        .local_cache()
        .path_of(&relative_path(&demo::dataset()));
    assert!(
        !client.ensure_local_file(&path).await.unwrap(),
        "the download's marker names the key: lumibot reuses it"
    );
    assert!(
        !client.on_local_update(&path).await.unwrap(),
        "readonly never uploads"
    );

    // Writes are refused in code before they reach any backend.
    let guarded = client.store().unwrap();
    let refused = guarded
        .put(&key, bytes::Bytes::from_static(b"x"), PutOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StorageError::NotPermitted { .. }),
        "{refused}"
    );
    let refused = guarded.delete(&key).await.unwrap_err();
    assert!(
        matches!(refused, StorageError::NotPermitted { .. }),
        "{refused}"
    );
    assert!(
        guarded
            .copy(&key, None, "v1/elsewhere.parquet")
            .await
            .is_err()
    );

    assert_eq!(watched.writes(), vec![], "no write ever reached the bucket");
    assert!(watched.count("head", &key) >= 1, "it did read the bucket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readwrite_uploads_through_a_temporary_key() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    let cache_root = dir.path().join("cache");
    let store = Arc::new(Watched::new(
        LocalStore::new(&bucket).unwrap(),
        Policy::PassThrough,
    ));
    let layout = KeyLayout::new("stage/cache", "v3");
    let config = ClientConfig::new(CacheMode::ReadWrite, &cache_root, layout);
    let client = CacheClient::new(config, Some(store.clone()), None).unwrap();

    // lumibot wrote a file into its cache folder, then calls on_local_update.
    let aapl = dataset("AAPL");
    let path = client.local_cache().path_of(&relative_path(&aapl));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"bytes lumibot wrote").unwrap();
    let uploaded = client.upload(&path).await.unwrap().unwrap();
    let key = "stage/cache/v3/synthetic/stock/day/ohlc/stock_AAPL_day_ohlc.parquet";
    assert_eq!(uploaded.key, key);
    let suffix = uploaded
        .temp_key
        .strip_prefix(&format!("{key}.tmp-"))
        .unwrap();
    let (secs, rand) = suffix.split_once('-').unwrap();
    assert!(secs.parse::<i64>().unwrap() > 1_700_000_000);
    assert!((1000..=9999).contains(&rand.parse::<u32>().unwrap()));

    // PUT the temporary, COPY it onto the key, DELETE the temporary, in that order.
    let writes = store.writes();
    assert_eq!(
        writes,
        vec![
            ("put", uploaded.temp_key.clone()),
            ("copy", format!("{} -> {key}", uploaded.temp_key)),
            ("delete", uploaded.temp_key.clone()),
        ]
    );
    let versions = store.list_versions(&uploaded.temp_key).await.unwrap();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert!(versions[0].is_delete_marker && versions[0].is_latest);
    let listed = store.list("stage/cache/v3/").await.unwrap();
    assert_eq!(
        listed.iter().map(|m| m.key.as_str()).collect::<Vec<_>>(),
        vec![key]
    );
    assert_eq!(
        store.get(key, None).await.unwrap().bytes.as_ref(),
        b"bytes lumibot wrote"
    );
    let key_versions = store.list_versions(key).await.unwrap();
    assert_eq!(
        uploaded.version_id.as_ref(),
        Some(&key_versions[0].version_id)
    );
    assert_eq!(
        std::fs::read_to_string(marker_path(&path)).unwrap(),
        key,
        "as lumibot's upload does, the marker names the key"
    );

    assert!(client.on_local_update(&path).await.unwrap());
    let outside = dir.path().join("elsewhere.parquet");
    std::fs::write(&outside, b"x").unwrap();
    assert!(
        !client.on_local_update(&outside).await.unwrap(),
        "outside the cache root"
    );
    assert!(
        !client
            .on_local_update(&cache_root.join("missing.parquet"))
            .await
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readwrite_downloads_on_demand_and_reports_what_it_cannot_fill() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Embedded::open(dir.path()).unwrap();
    let april = request("AAPL", "2024-04-01", "2024-04-30");
    common::prefill(&embedded, &april).await;
    let mut config = quick(embedded.config());
    config.mode = CacheMode::ReadWrite;
    let client = CacheClient::new(config, Some(embedded.store()), None).unwrap();
    assert_eq!(client.get(&april).await.unwrap().source, Source::RemoteHit);
    assert_eq!(client.get(&april).await.unwrap().source, Source::LocalHit);
    let may = request("AAPL", "2024-05-01", "2024-05-31");
    match client.get(&may).await.unwrap_err() {
        ClientError::NotCovered { mode, missing, .. } => {
            assert_eq!(mode, CacheMode::ReadWrite);
            assert_eq!(missing, 22);
        }
        other => panic!("{other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_touches_nothing_remote() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Embedded::open(&dir.path().join("state")).unwrap();
    let april = request("AAPL", "2024-04-01", "2024-04-30");
    common::prefill(&embedded, &april).await;
    // A readonly client puts a verified copy into the local cache first.
    embedded.client().get(&april).await.unwrap();

    let store = Arc::new(Watched::new(
        LocalStore::new(&embedded.bucket_dir).unwrap(),
        Policy::RefuseAll,
    ));
    let invoker = Arc::new(Counted::new(InProcessInvoker::new(
        embedded.engine(embedded.providers()),
    )));
    let mut config = embedded.config();
    config.mode = CacheMode::Disabled;
    let client = CacheClient::new(config, Some(store.clone()), Some(invoker.clone())).unwrap();

    let hit = client.get(&april).await.unwrap();
    assert_eq!(hit.source, Source::LocalHit);
    assert!(hit.rows >= 21);
    let may = request("AAPL", "2024-05-01", "2024-05-31");
    assert!(matches!(
        client.get(&may).await.unwrap_err(),
        ClientError::NotCovered {
            mode: CacheMode::Disabled,
            ..
        }
    ));
    assert!(!client.ensure_local_file(&hit.path).await.unwrap());
    assert!(!client.on_local_update(&hit.path).await.unwrap());
    assert_eq!(client.remote_key_for(&hit.path), None);
    assert!(client.store().is_none());

    // A file lumibot wrote without a sidecar is still served when there is no bucket.
    std::fs::remove_file(sidecar_path(&hit.path)).unwrap();
    let bare = client.get(&april).await.unwrap();
    assert_eq!((bare.source, bare.rows), (Source::LocalHit, hit.rows));

    assert_eq!(store.calls(), vec![], "the bucket was never called");
    assert_eq!(invoker.calls(), 0, "the fill function was never invoked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensure_local_file_follows_lumibot() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Embedded::open(dir.path()).unwrap();
    let april = request("AAPL", "2024-04-01", "2024-04-30");
    let answer = common::prefill(&embedded, &april).await;
    let client = embedded.client();
    let relative = relative_path(&dataset("AAPL"));
    let path = client.local_cache().path_of(&relative);
    assert_eq!(
        client.remote_key_for(&path).as_deref(),
        Some(answer.key.as_str())
    );

    // A stale local copy is never reused: the remote object replaces it, with its sidecar.
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"stale").unwrap();
    assert!(client.ensure_local_file(&path).await.unwrap());
    let body = std::fs::read(&path).unwrap();
    assert_eq!(codec::sha256_hex(&body), answer.sha256.clone().unwrap());
    let sidecar = Sidecar::parse(&std::fs::read(sidecar_path(&path)).unwrap()).unwrap();
    assert_eq!(sidecar.checksum, answer.sha256);
    // lumibot's marker names the key, so lumibot (and we) reuse the file from now on.
    assert_eq!(
        std::fs::read_to_string(marker_path(&path)).unwrap(),
        answer.key
    );
    assert_eq!(
        std::fs::read_to_string(marker_path(&sidecar_path(&path))).unwrap(),
        format!("{}.meta.json", answer.key)
    );
    assert!(!client.ensure_local_file(&path).await.unwrap(), "reused");
    // A marker naming another key is another file: downloaded again.
    std::fs::write(marker_path(&path), "elsewhere/v9/other.parquet").unwrap();
    assert!(
        client
            .local_cache()
            .read(&relative)
            .unwrap()
            .unwrap()
            .marker
            .is_some()
    );
    assert!(client.ensure_local_file(&path).await.unwrap());
    assert_eq!(
        std::fs::read_to_string(marker_path(&path)).unwrap(),
        answer.key
    );
    // The sidecar path itself is reused under its own marker, and downloaded without one.
    assert!(!client.ensure_local_file(sidecar_path(&path)).await.unwrap());
    std::fs::remove_file(marker_path(&sidecar_path(&path))).unwrap();
    assert!(client.ensure_local_file(sidecar_path(&path)).await.unwrap());

    // A remote miss leaves no local copy behind.
    let other = client
        .local_cache()
        .path_of(&relative_path(&dataset("ZZZ")));
    std::fs::create_dir_all(other.parent().unwrap()).unwrap();
    std::fs::write(&other, b"local only").unwrap();
    std::fs::write(marker_path(&other), "elsewhere/v9/other.parquet").unwrap();
    assert!(!client.ensure_local_file(&other).await.unwrap());
    assert!(!other.exists());
    assert!(!marker_path(&other).exists());

    // Outside the cache root there is no remote key and nothing happens.
    let outside = dir.path().join("outside.parquet");
    std::fs::write(&outside, b"mine").unwrap();
    assert_eq!(client.remote_key_for(&outside), None);
    assert!(!client.ensure_local_file(&outside).await.unwrap());
    assert_eq!(std::fs::read(&outside).unwrap(), b"mine");
}

#[tokio::test]
async fn settings_without_the_s3_backend_give_a_disabled_client() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().display().to_string();
    let settings = ClientSettings::from_lookup(|name| match name {
        "LUMIBOT_CACHE_MODE" => Some("readonly".to_string()),
        "LUMIBOT_CACHE_FOLDER" => Some(folder.clone()),
        _ => None,
    })
    .unwrap();
    let client = CacheClient::from_settings(&settings).await.unwrap();
    assert_eq!(client.mode(), CacheMode::Disabled);
    assert_eq!(client.local_cache().root(), dir.path());
    assert!(client.store().is_none());
}

/// A local file whose `.s3key` marker names another key is not served as a local hit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_marked_with_another_key_is_not_a_local_hit() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Embedded::open(dir.path()).unwrap();
    let april = request("AAPL", "2024-04-01", "2024-04-30");
    let client = embedded.client();
    let first = client.get(&april).await.unwrap();
    assert_eq!(client.get(&april).await.unwrap().source, Source::LocalHit);
    std::fs::write(marker_path(&first.path), "another/v1/key.parquet").unwrap();
    let again = client.get(&april).await.unwrap();
    assert_eq!(again.source, Source::RemoteHit, "downloaded again");
    assert_eq!(
        std::fs::read_to_string(marker_path(&again.path)).unwrap(),
        again.key
    );
}
