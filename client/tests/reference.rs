//! Corporate events and option chains through the client, in readonly mode over the embedded
//! bucket: a miss is filled by the in-process miss-handler (ThetaData against the replay
//! server), the files land under lumibot's paths with their `.s3key` markers, the bucket's
//! copies are validated, and a second call is a local hit.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cachefill_client::embedded::Embedded;
use cachefill_client::local_cache::marker_path;
use cachefill_client::{CacheClient, ClientConfig, ClientError, InProcessInvoker, Source};
use cachefill_core::dataset::{AssetType, Provider as ProviderName};
use cachefill_core::fill::MissRequest;
use cachefill_core::providers::ProviderSet;
use cachefill_core::providers::thetadata::{RetryPolicy, ThetaDataConfig, ThetaDataProvider};
use cachefill_core::reference::events::{EventSet, EventType};
use cachefill_core::reference::{ChainRequest, ChainSet, EventsRequest};
use cachefill_core::settings::CacheMode;
use cachefill_core::storage::local::LocalStore;
use cachefill_testing::thetadata::{ReplayServer, Reply};
use chrono::NaiveDate;
use common::{Counted, Policy, Watched, quick};

fn d(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

async fn server() -> ReplayServer {
    let server = ReplayServer::thetadata().await.unwrap();
    server.respond_with("/v2/hist/stock/split", |_| {
        Some(Reply::json(
            r#"{"header":{"format":["ms_of_day","split_date","before_shares","after_shares","date"]},"response":[[0,20240610,1,10,20240610]]}"#,
        ))
    });
    server.respond_with("/v3/option/list/strikes", |_| {
        Some(Reply::json(
            r#"{"response":[{"strike":580.0},{"strike":585.0}]}"#,
        ))
    });
    server
}

fn providers(server: &ReplayServer) -> ProviderSet {
    let provider = ThetaDataProvider::new(ThetaDataConfig {
        retry: RetryPolicy {
            max_attempts: 2,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            max_retry_after: Duration::from_secs(1),
        },
        ..ThetaDataConfig::new(&format!("{}/v3", server.base_url()))
    })
    .unwrap();
    ProviderSet::new().with(ProviderName::ThetaData, provider)
}

struct Setup {
    embedded: Embedded,
    watched: Arc<Watched<LocalStore>>,
    invoker:
        Arc<Counted<InProcessInvoker<Arc<dyn cachefill_core::storage::ObjectStore>, ProviderSet>>>,
    client: CacheClient,
    _dir: tempfile::TempDir,
}

fn readonly(server: &ReplayServer) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Embedded::open(dir.path()).unwrap();
    let watched = Arc::new(Watched::new(
        LocalStore::new(&embedded.bucket_dir).unwrap(),
        Policy::RefuseWrites,
    ));
    let invoker = Arc::new(Counted::new(InProcessInvoker::new(
        embedded.engine(providers(server)),
    )));
    let client = CacheClient::new(
        quick(embedded.config()),
        Some(watched.clone()),
        Some(invoker.clone()),
    )
    .unwrap();
    Setup {
        embedded,
        watched,
        invoker,
        client,
        _dir: dir,
    }
}

fn splits(start: &str, end: &str) -> EventsRequest {
    let set = EventSet::new(
        ProviderName::ThetaData,
        AssetType::Stock,
        "NVDA",
        EventType::Splits,
    )
    .unwrap();
    EventsRequest::new(set, d(start), d(end)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_events_are_filled_once_then_local_with_lumibots_markers() {
    let server = server().await;
    let s = readonly(&server);
    let request = splits("2024-01-01", "2024-12-31");
    let first = s.client.get_events(&request).await.unwrap();
    assert_eq!(first.source, Source::Filled);
    assert_eq!(first.rows, 1);
    assert_eq!(s.invoker.calls(), 1);
    assert_eq!(
        s.watched.writes(),
        vec![],
        "the job never writes to the bucket"
    );
    let parquet = s.client.local_cache().path_of(&request.set.relative_path());
    let ranges = s.client.local_cache().path_of(&request.set.ranges_path());
    assert_eq!(parquet, first.path);
    for (path, relative) in [
        (&parquet, request.set.relative_path()),
        (&ranges, request.set.ranges_path()),
    ] {
        assert!(path.is_file(), "{}", path.display());
        assert_eq!(
            std::fs::read_to_string(marker_path(path)).unwrap(),
            format!("v1/{relative}"),
            "lumibot's marker names the key"
        );
    }
    // The bucket's copies were judged valid by the validator.
    for relative in [request.set.relative_path(), request.set.ranges_path()] {
        let manifest = s.embedded.layout.manifest_key_of(&relative);
        assert!(
            s.embedded.store().get(&manifest, None).await.is_ok(),
            "{manifest}"
        );
    }

    server.reset_log();
    let again = s
        .client
        .get_events(&splits("2024-03-01", "2024-06-30"))
        .await
        .unwrap();
    assert_eq!(again.source, Source::LocalHit);
    assert_eq!(s.invoker.calls(), 1, "no invocation on a covered range");
    assert!(server.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_is_filled_once_and_a_second_job_downloads_it() {
    let server = server().await;
    let s = readonly(&server);
    let request = ChainRequest {
        set: ChainSet::new(
            ProviderName::ThetaData,
            AssetType::Stock,
            "SPY",
            d("2024-11-15"),
        )
        .unwrap(),
    };
    let first = s
        .client
        .get_any(&MissRequest::Chain(request.clone()))
        .await
        .unwrap();
    assert_eq!(first.source, Source::Filled);
    assert_eq!(first.rows, 311, "every listed expiration in the horizon");
    assert_eq!(first.min.as_deref(), Some("2024-11-15"));
    assert_eq!(s.watched.writes(), vec![]);
    let hit = s.client.get_chain(&request).await.unwrap();
    assert_eq!(hit.source, Source::LocalHit);

    // Another job with an empty local cache: a download, no invocation.
    let other_dir = tempfile::tempdir().unwrap();
    let mut config = ClientConfig::new(
        CacheMode::ReadOnly,
        other_dir.path(),
        s.embedded.layout.clone(),
    );
    config.bucket = Some(s.embedded.bucket_name());
    let other = CacheClient::new(quick(config), Some(s.embedded.store()), None).unwrap();
    let downloaded = other.get_chain(&request).await.unwrap();
    assert_eq!(downloaded.source, Source::RemoteHit);
    assert_eq!(downloaded.sha256, first.sha256, "the same bytes");
    assert_eq!(s.invoker.calls(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_fill_function_a_miss_says_what_to_set() {
    let server = server().await;
    let s = readonly(&server);
    let dir = tempfile::tempdir().unwrap();
    let mut config = ClientConfig::new(CacheMode::ReadOnly, dir.path(), s.embedded.layout.clone());
    config.bucket = Some(s.embedded.bucket_name());
    let client = CacheClient::new(quick(config), Some(s.embedded.store()), None).unwrap();
    let err = client
        .get_events(&splits("2024-01-01", "2024-12-31"))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NoFillFunction { .. }), "{err}");
    assert!(
        err.to_string().contains("LUMIBOT_CACHE_FILL_FUNCTION"),
        "{err}"
    );

    let disabled = CacheClient::new(
        ClientConfig::new(CacheMode::Disabled, dir.path(), s.embedded.layout.clone()),
        None,
        None,
    )
    .unwrap();
    let err = disabled
        .get_events(&splits("2024-01-01", "2024-12-31"))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::NotCovered { .. }), "{err}");
    assert!(server.requests().is_empty(), "nothing asked upstream");
}
