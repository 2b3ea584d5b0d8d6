//! The demo's workload: a 62-session sliding-window backtest plus one whole-range request.
//! Widening and single-flight keep it to a few fills, however many copies run at once.

mod common;

use std::sync::Arc;

use cachefill_client::cli::job as demo;
use cachefill_client::embedded::Embedded;
use cachefill_client::remote::DownloadPolicy;
use cachefill_client::{CacheClient, InProcessInvoker, Source, Widening};
use cachefill_core::providers::ProviderSet;
use cachefill_core::providers::synthetic::SyntheticProvider;
use cachefill_core::storage::ObjectStore;
use cachefill_testing::doubles::CountingProvider;
use common::{Counted, counted_provider, quick};

type Engine = InProcessInvoker<Arc<dyn ObjectStore>, ProviderSet>;
type Upstream = Arc<CountingProvider<SyntheticProvider>>;

/// A readonly client over `embedded` whose invocations and upstream requests are counted.
fn counted_client(
    embedded: &Embedded,
    widening: Widening,
) -> (CacheClient, Arc<Counted<Engine>>, Upstream) {
    let (upstream, providers) = counted_provider();
    let invoker = Arc::new(Counted::new(InProcessInvoker::new(
        embedded.engine(providers),
    )));
    let mut config = quick(embedded.config());
    config.widening = widening;
    let client = CacheClient::new(config, Some(embedded.store()), Some(invoker.clone())).unwrap();
    (client, invoker, upstream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_run_fills_at_most_three_times_and_the_second_never() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Embedded::open(dir.path()).unwrap();

    let (client, invoker, upstream) = counted_client(&embedded, Widening::Month);
    let first = demo::run_workload(&client).await.unwrap();
    assert_eq!(first.requests, 63);
    assert!(first.fills <= 3 && first.fills >= 1, "{first:?}");
    assert!(invoker.calls() <= 3, "{} invocations", invoker.calls());
    assert!(
        upstream.calls() <= 3,
        "{} upstream requests",
        upstream.calls()
    );
    assert_eq!(first.local_hits + first.fills, 63);
    assert_eq!(client.stats().upstream_requests, upstream.calls() as u64);
    // No session was ever fetched twice.
    assert!(upstream.per_session().values().all(|n| *n == 1));

    // A new process (a new client over the same folders): everything is a local hit.
    let (again, invoker, upstream) = counted_client(&embedded, Widening::Month);
    let second = demo::run_workload(&again).await.unwrap();
    assert_eq!(
        (second.fills, second.remote_hits, second.local_hits),
        (0, 0, 63)
    );
    assert_eq!((invoker.calls(), upstream.calls()), (0, 0));

    // Without the local cache, the bucket serves it: one download, then local hits.
    std::fs::remove_dir_all(&embedded.cache_dir).unwrap();
    let (third, invoker, upstream) = counted_client(&embedded, Widening::Month);
    let outcome = demo::run_workload(&third).await.unwrap();
    assert_eq!(
        (outcome.remote_hits, outcome.local_hits, outcome.fills),
        (1, 62, 0)
    );
    assert_eq!((invoker.calls(), upstream.calls()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_concurrent_copies_share_the_fills() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Embedded::open(dir.path()).unwrap();
    let (client, invoker, upstream) = counted_client(&embedded, Widening::Month);
    let copies: Vec<_> = (0..32)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { demo::run_workload(&client).await })
        })
        .collect();
    let mut fills = 0;
    for copy in copies {
        let outcome = copy.await.unwrap().unwrap();
        assert_eq!(outcome.requests, 63);
        fills += outcome.fills;
    }
    assert!(
        upstream.calls() <= 3,
        "{} upstream requests",
        upstream.calls()
    );
    assert!(invoker.calls() <= 3, "{} invocations", invoker.calls());
    assert!(fills <= 3, "{fills} fills");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_clients_on_one_bucket_still_fetch_each_month_once() {
    // Separate clients share no single-flight: the miss-handler's lease and re-read are
    // what keep the upstream to one fetch per month.
    let dir = tempfile::tempdir().unwrap();
    let embedded = Embedded::open(dir.path()).unwrap();
    let (upstream, providers) = counted_provider();
    let engine_invoker = Arc::new(InProcessInvoker::new(embedded.engine(providers)));
    // A reader that meets a writer between its parquet and its sidecar downloads again;
    // 32 clients on two threads can queue behind several writers, so they get the
    // product's patience (about 0.75 s), not the few milliseconds of `quick`.
    let mut config = quick(embedded.config());
    config.download = DownloadPolicy::default();
    let copies: Vec<_> = (0..32)
        .map(|_| {
            let client = CacheClient::new(
                config.clone(),
                Some(embedded.store()),
                Some(engine_invoker.clone()),
            )
            .unwrap();
            tokio::spawn(async move { demo::run_workload(&client).await })
        })
        .collect();
    for copy in copies {
        assert_eq!(copy.await.unwrap().unwrap().requests, 63);
    }
    assert!(
        upstream.calls() <= 3,
        "{} upstream requests",
        upstream.calls()
    );
    assert!(upstream.per_session().values().all(|n| *n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_widening_every_new_session_is_a_fill() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Embedded::open(dir.path()).unwrap();
    let (off, invoker_off, _) = counted_client(&embedded, Widening::Off);
    for request in demo::requests().iter().take(8) {
        off.get(request).await.unwrap();
    }
    assert_eq!(invoker_off.calls(), 8, "one fill per backtest day");

    let other = tempfile::tempdir().unwrap();
    let embedded = Embedded::open(other.path()).unwrap();
    let (month, invoker_month, _) = counted_client(&embedded, Widening::Month);
    for request in demo::requests().iter().take(8) {
        month.get(request).await.unwrap();
    }
    assert_eq!(
        invoker_month.calls(),
        1,
        "the month's first fill covers the rest"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_client_validates_what_it_fills() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Embedded::open(dir.path()).unwrap();
    let report = demo::run(&embedded.client(), |_| {}).await.unwrap();
    assert!(report.fills >= 1);
    // The in-process validator recorded the current version in the manifest.
    let manifest_key = embedded.layout.manifest_key(&demo::dataset());
    let manifest = embedded.store().get(&manifest_key, None).await.unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.bytes).unwrap();
    let head = embedded
        .store()
        .head(&embedded.layout.data_key(&demo::dataset()), None)
        .await
        .unwrap();
    assert_eq!(
        manifest["current"]["version_id"].as_str(),
        head.version_id.as_deref()
    );
    let last = embedded
        .client()
        .get(demo::requests().last().unwrap())
        .await
        .unwrap();
    assert_eq!(last.source, Source::LocalHit);
    assert_eq!(last.version_id, head.version_id);
}
