//! The client and the miss-handler agree on what a file covers: a young placeholder (a
//! session the provider had not published yet) is asked for again, as the engine would
//! fetch it again, and stops being asked for once real rows arrive.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cachefill_client::embedded::Embedded;
use cachefill_client::{CacheClient, InProcessInvoker, Source, Widening};
use cachefill_core::clock::FixedClock;
use cachefill_core::dataset::Dataset;
use cachefill_core::providers::synthetic::SyntheticProvider;
use cachefill_core::providers::{FetchRequest, Fetched, Provider, ProviderError};
use chrono::NaiveDate;
use common::{Counted, quick, request};

/// The synthetic provider, except that it has nothing yet for the sessions in `holes`.
#[derive(Debug, Default)]
struct NotPublishedYet {
    inner: SyntheticProvider,
    holes: Mutex<BTreeSet<NaiveDate>>,
}

#[async_trait]
impl Provider for NotPublishedYet {
    fn supports(&self, dataset: &Dataset) -> Result<(), ProviderError> {
        self.inner.supports(dataset)
    }

    fn plan(&self, dataset: &Dataset, sessions: &[NaiveDate]) -> Vec<Vec<NaiveDate>> {
        self.inner.plan(dataset, sessions)
    }

    async fn fetch(&self, request: FetchRequest<'_>) -> Result<Fetched, ProviderError> {
        let holes = self.holes.lock().unwrap().clone();
        let published: Vec<NaiveDate> = request
            .sessions
            .iter()
            .copied()
            .filter(|d| !holes.contains(d))
            .collect();
        self.inner
            .fetch(FetchRequest {
                sessions: &published,
                ..request
            })
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn young_placeholders_are_asked_for_again_until_real_rows_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Embedded::open(dir.path()).unwrap();
    let april_9: NaiveDate = "2024-04-09".parse().unwrap();
    // One hour after April 9 settled (20:00 New York): its placeholder is not trusted yet.
    let clock = Arc::new(FixedClock::new("2024-04-10T01:00:00Z".parse().unwrap()));
    let provider = Arc::new(NotPublishedYet::default());
    provider.holes.lock().unwrap().insert(april_9);
    let engine = embedded.engine(provider.clone()).with_clock(clock.clone());
    let invoker = Arc::new(Counted::new(InProcessInvoker::new(engine)));
    let mut config = quick(embedded.config());
    config.clock = clock.clone();
    config.widening = Widening::Off;
    let client = CacheClient::new(config, Some(embedded.store()), Some(invoker.clone())).unwrap();
    let first_week = request("AAPL", "2024-04-01", "2024-04-09");

    let first = client.get(&first_week).await.unwrap();
    assert_eq!(first.source, Source::Filled);
    assert_eq!(invoker.calls(), 1);
    // The earlier sessions alone are a hit: their rows are real.
    let settled = request("AAPL", "2024-04-01", "2024-04-08");
    assert_eq!(client.get(&settled).await.unwrap().source, Source::LocalHit);

    // April 9 only has a young placeholder: asked for again, as the engine would.
    let again = client.get(&first_week).await.unwrap();
    assert_eq!(again.source, Source::Filled);
    assert_eq!(invoker.calls(), 2);

    // Days later the provider has published April 9: the next request brings real rows.
    provider.holes.lock().unwrap().clear();
    clock.set("2024-04-20T00:00:00Z".parse().unwrap());
    let published = client.get(&first_week).await.unwrap();
    assert_eq!(published.source, Source::Filled);
    assert_eq!(invoker.calls(), 3);
    assert_eq!(
        published.rows, 7,
        "seven sessions of real rows, no placeholder"
    );
    assert_eq!(
        client.get(&first_week).await.unwrap().source,
        Source::LocalHit
    );
    assert_eq!(invoker.calls(), 3);
}
