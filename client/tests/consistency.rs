//! The local cache never serves a parquet its sidecar disagrees with, and stays consistent
//! under concurrent publishers.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use cachefill_client::embedded::Embedded;
use cachefill_client::local_cache::{LocalCache, Receipt, SidecarState, sidecar_path};
use cachefill_client::{CacheClient, ClientError, Source};
use cachefill_core::codec::{self, Sidecar};
use cachefill_core::keys::relative_path;
use cachefill_core::storage::local::LocalStore;
use cachefill_core::storage::{
    GetResult, ObjectMeta, ObjectStore, PutMode, PutOptions, PutResult, StorageError, Tags,
    VersionInfo,
};
use common::{Policy, Watched, dataset, quick, request};

type Hook = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// A real store that runs `hook` (another writer) right before the first sidecar read is
/// answered: the reader got the old parquet, and now gets the new writer's sidecar.
struct WriterInBetween<S> {
    inner: S,
    hook: tokio::sync::Mutex<Option<Hook>>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for WriterInBetween<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterInBetween")
            .field("inner", &self.inner)
            .finish()
    }
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for WriterInBetween<S> {
    async fn get(&self, key: &str, version: Option<&str>) -> Result<GetResult, StorageError> {
        if key.ends_with(".meta.json")
            && let Some(hook) = self.hook.lock().await.take()
        {
            hook().await;
        }
        self.inner.get(key, version).await
    }
    async fn head(&self, key: &str, version: Option<&str>) -> Result<ObjectMeta, StorageError> {
        self.inner.head(key, version).await
    }
    async fn put(
        &self,
        key: &str,
        body: Bytes,
        options: PutOptions,
    ) -> Result<PutResult, StorageError> {
        self.inner.put(key, body, options).await
    }
    async fn copy(&self, from: &str, v: Option<&str>, to: &str) -> Result<PutResult, StorageError> {
        self.inner.copy(from, v, to).await
    }
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.inner.delete(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        self.inner.list(prefix).await
    }
    async fn list_versions(&self, key: &str) -> Result<Vec<VersionInfo>, StorageError> {
        self.inner.list_versions(key).await
    }
    async fn get_tags(&self, key: &str, v: Option<&str>) -> Result<Tags, StorageError> {
        self.inner.get_tags(key, v).await
    }
    async fn put_tags(&self, key: &str, v: Option<&str>, tags: &Tags) -> Result<(), StorageError> {
        self.inner.put_tags(key, v, tags).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parquet_whose_sidecar_disagrees_is_downloaded_again() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Embedded::open(dir.path()).unwrap();
    let april = request("AAPL", "2024-04-01", "2024-04-30");
    let first = common::prefill(&embedded, &april).await;

    let writer = embedded.clone();
    let wrote = Arc::new(AtomicBool::new(false));
    let wrote_flag = wrote.clone();
    let hook: Hook = Box::new(move || {
        Box::pin(async move {
            common::prefill(&writer, &request("AAPL", "2024-04-01", "2024-05-31")).await;
            wrote_flag.store(true, Ordering::SeqCst);
        })
    });
    let watched = Arc::new(Watched::new(
        WriterInBetween {
            inner: LocalStore::new(&embedded.bucket_dir).unwrap(),
            hook: tokio::sync::Mutex::new(Some(hook)),
        },
        Policy::PassThrough,
    ));
    let client = CacheClient::new(quick(embedded.config()), Some(watched.clone()), None).unwrap();

    let file = client.get(&april).await.unwrap();
    assert!(
        wrote.load(Ordering::SeqCst),
        "the other writer ran in between"
    );
    assert_eq!(file.source, Source::RemoteHit);
    let key = embedded.layout.data_key(&dataset("AAPL"));
    assert_eq!(
        watched.count("get", &key),
        2,
        "the parquet was downloaded again"
    );
    assert_ne!(
        Some(&file.sha256),
        first.sha256.as_ref(),
        "the old parquet was not served"
    );
    let local = std::fs::read(&file.path).unwrap();
    let sidecar = Sidecar::parse(&std::fs::read(sidecar_path(&file.path)).unwrap()).unwrap();
    assert_eq!(sidecar.checksum, Some(codec::sha256_hex(&local)));
    assert_eq!(file.sha256, codec::sha256_hex(&local));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_parquet_whose_sidecar_disagrees_is_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Embedded::open(dir.path()).unwrap();
    let april = request("AAPL", "2024-04-01", "2024-04-30");
    let client = embedded.client();
    let file = client.get(&april).await.unwrap();
    assert_eq!(file.source, Source::Filled);

    // Another writer replaced the sidecar (say, lumibot after its own write).
    let side = sidecar_path(&file.path);
    let mut sidecar = Sidecar::parse(&std::fs::read(&side).unwrap()).unwrap();
    sidecar.checksum = Some("0".repeat(64));
    std::fs::write(&side, sidecar.to_json()).unwrap();

    let again = embedded.client().get(&april).await.unwrap();
    assert_eq!(
        again.source,
        Source::RemoteHit,
        "downloaded again, not served"
    );
    let entry = client
        .local_cache()
        .read(&relative_path(&dataset("AAPL")))
        .unwrap()
        .unwrap();
    assert_eq!(entry.sidecar_state, SidecarState::Matches);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_that_never_matches_fails_and_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Embedded::open(dir.path()).unwrap();
    let april = request("AAPL", "2024-04-01", "2024-04-30");
    let answer = common::prefill(&embedded, &april).await;
    // Corrupt the bucket's sidecar behind the validator's back.
    let store = LocalStore::new(&embedded.bucket_dir).unwrap();
    let sidecar_key = format!("{}.meta.json", answer.key);
    let mut sidecar = Sidecar::parse(&store.get(&sidecar_key, None).await.unwrap().bytes).unwrap();
    sidecar.checksum = Some("f".repeat(64));
    store
        .put(
            &sidecar_key,
            Bytes::from(sidecar.to_json()),
            PutOptions::with_mode(PutMode::Overwrite),
        )
        .await
        .unwrap();

    let mut config = quick(embedded.config());
    config.download.attempts = 3;
    let client = CacheClient::new(config, Some(embedded.store()), None).unwrap();
    match client.get(&april).await.unwrap_err() {
        ClientError::Inconsistent {
            attempts, detail, ..
        } => {
            assert_eq!(attempts, 3);
            assert!(detail.contains("checksum"), "{detail}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(
        common::cached_files(&embedded.cache_dir),
        Vec::<String>::new()
    );
}

#[test]
fn concurrent_publishers_and_readers_always_see_a_matching_pair() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(LocalCache::new(dir.path()));
    let relative = relative_path(&dataset("AAPL"));
    let publishers: Vec<_> = (0..6)
        .map(|writer| {
            let cache = cache.clone();
            let relative = relative.clone();
            std::thread::spawn(move || {
                for round in 0..25 {
                    // Different sizes, so a torn pair could not pass for a whole one.
                    let body = format!(
                        "writer {writer} round {round} {}",
                        "x".repeat(writer * 100 + round)
                    );
                    let sha = codec::sha256_hex(body.as_bytes());
                    let sidecar =
                        Sidecar::new(&Default::default(), &sha, chrono::Utc::now()).to_json();
                    let receipt = Receipt {
                        key: relative.clone(),
                        version_id: Some(format!("{writer}-{round}")),
                        etag: None,
                        sha256: sha,
                        fetched_at: chrono::Utc::now(),
                    };
                    cache
                        .publish(
                            &relative,
                            &Bytes::from(body.clone()),
                            None,
                            sidecar.as_bytes(),
                            &receipt,
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let cache = cache.clone();
            let relative = relative.clone();
            std::thread::spawn(move || {
                let mut seen = 0;
                for _ in 0..200 {
                    if let Some(entry) = cache.read(&relative).unwrap() {
                        assert_eq!(entry.sidecar_state, SidecarState::Matches);
                        assert!(entry.receipt.is_some(), "the receipt travels with the pair");
                        seen += 1;
                    }
                }
                seen
            })
        })
        .collect();
    for publisher in publishers {
        publisher.join().unwrap();
    }
    for reader in readers {
        reader.join().unwrap();
    }
    let last = cache.read(&relative).unwrap().unwrap();
    assert_eq!(last.sidecar_state, SidecarState::Matches);
    let leftovers: Vec<String> = common::cached_files(dir.path())
        .into_iter()
        .filter(|f| f.ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
