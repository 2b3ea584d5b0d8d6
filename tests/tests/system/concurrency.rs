//! 64 readonly jobs, each with its own client and local cache, miss the same dataset at the
//! same moment: the upstream is asked for each session once, and all 64 get the same bytes.

use std::sync::Arc;
use std::time::Duration;

use cachefill_client::DataRequest;
use cachefill_core::codec;
use cachefill_core::storage::ObjectStore;
use cachefill_e2e::thetadata::{QUOTE_PATH, aapl_hour_quote};
use cachefill_e2e::{MISS_HANDLER, Terminal};
use cachefill_testing::thetadata::Fault;
use tokio::sync::Barrier;

use crate::{layout, sessions, stack_for};

const JOBS: usize = 64;
/// Instances serving the miss-handler at once, as Lambda runs concurrent invocations in
/// separate sandboxes: without the lease each would fetch the month itself.
const INSTANCES: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_jobs_missing_one_dataset_cost_one_fetch_per_session() -> anyhow::Result<()> {
    let terminal = Terminal::start().await?;
    // Slow answers keep the first fill going while the other instances take their invocations.
    terminal.server().inject_route(
        QUOTE_PATH,
        None,
        None,
        Fault::Delay(Duration::from_millis(250)),
    );
    let Some(stack) = stack_for("64 concurrent jobs", &terminal, &[]).await? else {
        return Ok(());
    };
    for _ in 0..INSTANCES {
        stack.start_function(MISS_HANDLER).await?;
    }
    let dataset = aapl_hour_quote();
    let request =
        DataRequest::parse(dataset.clone(), "2024-01-02", "2024-01-31")?.with_after_hours(false);

    let (caches, clients) = stack.readonly_clients(MISS_HANDLER, JOBS).await?;
    let start = Arc::new(Barrier::new(JOBS));
    let mut jobs = tokio::task::JoinSet::new();
    for client in clients {
        let (start, request) = (start.clone(), request.clone());
        jobs.spawn(async move {
            start.wait().await;
            let file = client.get(&request).await;
            (file, client.stats())
        });
    }
    let mut files = Vec::with_capacity(JOBS);
    let mut upstream_reported = 0;
    while let Some(joined) = jobs.join_next().await {
        let (file, stats) = joined?;
        files.push(file?);
        upstream_reported += stats.upstream_requests;
    }

    // Each session was asked of the upstream exactly once, and only one fill reported it.
    let january = sessions("2024-01-02", "2024-01-31");
    let mut fetched = terminal.quote_sessions_requested();
    fetched.sort();
    assert_eq!(fetched, january);
    assert_eq!(upstream_reported, january.len() as u64);

    // 64 files in 64 caches, byte for byte the object in the bucket.
    let object = stack
        .store()
        .get(&layout(&stack).data_key(&dataset), None)
        .await?;
    let expected = codec::sha256_hex(&object.bytes);
    assert_eq!(files.len(), JOBS);
    for file in &files {
        assert!(
            caches.iter().any(|c| file.path.starts_with(c.path())),
            "{} is in no job's cache",
            file.path.display()
        );
        assert_eq!(
            codec::sha256_hex(&std::fs::read(&file.path)?),
            expected,
            "{}",
            file.path.display()
        );
        assert_eq!(file.version_id, object.meta.version_id);
    }
    let mut paths: Vec<_> = files.iter().map(|f| f.path.clone()).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), JOBS, "every job has its own file");
    assert_eq!(
        stack.store().list_versions(&object.meta.key).await?.len(),
        1
    );
    Ok(())
}
