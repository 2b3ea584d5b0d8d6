//! Load on the stand-in stack: 64 readonly jobs, each with its own client and local cache,
//! ask for the same 16 datasets at once, each job in its own (seeded) shuffled order, through
//! the emulator's Invoke API and four miss-handler instances filling from the ThetaData replay
//! terminal. `tests/tests/system/concurrency.rs` shows one dataset missed by 64 jobs; here the
//! misses of 16 keys overlap, so leases of different keys are held and waited for at the same
//! time across the instances.
//!
//! It shows that every session of every dataset is asked of the upstream exactly once, that
//! the 64 jobs get the same bytes for each dataset (the object in the bucket, its only
//! version), and that asking again is a local hit for every job. It prints the p50 and p99
//! latency of a fill, a remote hit and a local hit as a job sees them (`CacheClient::get`),
//! without asserting on them. The whole run is bounded by [`LOAD_BOUND`].
//!
//! `CACHEFILL_E2E=skip` skips this test (it says so).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use cachefill_client::{CacheClient, DataRequest, Source};
use cachefill_core::calendar;
use cachefill_core::codec;
use cachefill_core::dataset::Dataset;
use cachefill_core::keys::KeyLayout;
use cachefill_core::storage::ObjectStore;
use cachefill_e2e::thetadata::{QUOTE_FIXTURE, QUOTE_PATH, RECORDED_SESSION};
use cachefill_e2e::{MISS_HANDLER, Stack, StackConfig, Terminal};
use cachefill_testing::thetadata::{Exchange, Fault, Reply};
use chrono::NaiveDate;
use tokio::sync::Barrier;

const JOBS: usize = 64;
/// Sixteen datasets: AAPL's recorded hourly quotes, answered for each of these symbols.
const SYMBOLS: [&str; 16] = [
    "AAPL", "MSFT", "GOOGL", "AMZN", "META", "NVDA", "TSLA", "SPY", "QQQ", "IWM", "JPM", "XOM",
    "KO", "PEP", "INTC", "AMD",
];
/// Concurrent sandboxes of the miss-handler, as in `system/concurrency.rs`.
const INSTANCES: usize = 4;
const START: &str = "2024-01-02";
const END: &str = "2024-01-31";
/// Seeds each job's order of the datasets (job `i` shuffles with `SEED + i`).
const SEED: u64 = 0x5eed_10ad;
/// Each quote answer waits this long, so fills of different keys overlap in the instances.
const UPSTREAM_DELAY: Duration = Duration::from_millis(100);
/// Bound on the whole run, stack start included (a debug build on two busy cores takes well
/// under a minute).
const LOAD_BOUND: Duration = Duration::from_secs(170);

fn dataset(symbol: &str) -> Dataset {
    Dataset::from_json(&format!(
        r#"{{"provider":"thetadata","asset_type":"stock","symbol":"{symbol}","timespan":"hour","datastyle":"quote"}}"#
    ))
    .expect("a valid dataset")
}

/// Answer hourly quote requests of every symbol of [`SYMBOLS`] with the recorded session,
/// re-dated to the session asked for (the stack's [`Terminal`] does so for AAPL alone).
fn serve_every_symbol(terminal: &Terminal) -> anyhow::Result<()> {
    let root = cachefill_testing::fixtures::root()?;
    let recorded = Exchange::load(&root.join(QUOTE_FIXTURE))?;
    let body = String::from_utf8(recorded.reply.body.to_vec())?;
    let shape: BTreeSet<String> = recorded.query.keys().cloned().collect();
    let interval = recorded.query.get("interval").cloned();
    terminal.server().respond_with(QUOTE_PATH, move |query| {
        let symbol = query.get("symbol")?;
        let same_shape = query.keys().cloned().collect::<BTreeSet<_>>() == shape
            && query.get("interval") == interval.as_ref()
            && SYMBOLS.contains(&symbol.as_str());
        if !same_shape {
            return None;
        }
        let date = NaiveDate::parse_from_str(query.get("date")?, "%Y%m%d").ok()?;
        let stamp = |d: &str| format!("\"{d}T");
        Some(Reply::json(body.replace(
            &stamp(RECORDED_SESSION),
            &stamp(&date.format("%Y-%m-%d").to_string()),
        )))
    });
    Ok(())
}

/// One `get` as a job saw it.
#[derive(Debug)]
struct Timed {
    dataset: usize,
    source: Source,
    took: Duration,
    /// sha256 of the local file's bytes, read back after the call.
    sha256: String,
    version_id: Option<String>,
}

/// Ask for every dataset in `order`, one after the other, timing each call.
async fn run_job(
    client: &CacheClient,
    requests: &[DataRequest],
    order: &[usize],
) -> anyhow::Result<Vec<Timed>> {
    let mut timed = Vec::with_capacity(order.len());
    for &i in order {
        let started = Instant::now();
        let file = client
            .get(&requests[i])
            .await
            .with_context(|| format!("get {}", SYMBOLS[i]))?;
        let took = started.elapsed();
        let bytes = tokio::fs::read(&file.path).await?;
        timed.push(Timed {
            dataset: i,
            source: file.source,
            took,
            sha256: codec::sha256_hex(&bytes),
            version_id: file.version_id,
        });
    }
    Ok(timed)
}

/// Run every job at once (after a barrier), each over its own order.
async fn run_all(
    clients: &[CacheClient],
    requests: &Arc<Vec<DataRequest>>,
    orders: &[Vec<usize>],
) -> anyhow::Result<Vec<Vec<Timed>>> {
    let start = Arc::new(Barrier::new(clients.len()));
    let mut jobs = tokio::task::JoinSet::new();
    for (job, (client, order)) in clients.iter().zip(orders).enumerate() {
        let (client, order, requests, start) = (
            client.clone(),
            order.clone(),
            requests.clone(),
            start.clone(),
        );
        jobs.spawn(async move {
            start.wait().await;
            (job, run_job(&client, &requests, &order).await)
        });
    }
    let mut results: Vec<Option<Vec<Timed>>> = (0..clients.len()).map(|_| None).collect();
    while let Some(joined) = jobs.join_next().await {
        let (job, timed) = joined?;
        results[job] = Some(timed.with_context(|| format!("job {job}"))?);
    }
    Ok(results.into_iter().flatten().collect())
}

/// The calls of `round` answered from `source`.
fn of(round: &[Vec<Timed>], source: Source) -> Vec<&Timed> {
    round
        .iter()
        .flatten()
        .filter(|t| t.source == source)
        .collect()
}

/// The value at percentile `p` (nearest rank) of `sorted`.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn latency_line(what: &str, timed: &[&Timed]) -> String {
    let mut took: Vec<Duration> = timed.iter().map(|t| t.took).collect();
    took.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "{what:<11} n={:<4} p50 {:>8.1} ms   p99 {:>8.1} ms   max {:>8.1} ms",
        took.len(),
        ms(percentile(&took, 50.0)),
        ms(percentile(&took, 99.0)),
        ms(took.last().copied().unwrap_or_default()),
    )
}

async fn load(terminal: &Terminal, stack: &Stack) -> anyhow::Result<()> {
    let wall = Instant::now();
    for _ in 0..INSTANCES {
        stack.start_function(MISS_HANDLER).await?;
    }
    let datasets: Vec<Dataset> = SYMBOLS.iter().map(|s| dataset(s)).collect();
    let requests: Arc<Vec<DataRequest>> = Arc::new(
        datasets
            .iter()
            .map(|d| DataRequest::parse(d.clone(), START, END).map(|r| r.with_after_hours(false)))
            .collect::<Result<_, _>>()?,
    );
    let (caches, clients) = stack.readonly_clients(MISS_HANDLER, JOBS).await?;
    let shuffled = |round: u64| -> Vec<Vec<usize>> {
        (0..JOBS as u64)
            .map(|job| {
                let mut order: Vec<usize> = (0..SYMBOLS.len()).collect();
                fastrand::Rng::with_seed(SEED ^ (round << 32) ^ job).shuffle(&mut order);
                order
            })
            .collect()
    };

    // Round 1: every job misses every dataset locally.
    let first_started = Instant::now();
    let first = run_all(&clients, &requests, &shuffled(1)).await?;
    let first_took = first_started.elapsed();

    // The upstream saw each session of each dataset exactly once, and nothing else.
    let sessions = calendar::sessions_between(START.parse()?, END.parse()?)?;
    let mut asked: BTreeMap<(String, String), usize> = BTreeMap::new();
    let received = terminal.server().requests();
    for request in &received {
        ensure!(request.path == QUOTE_PATH, "unexpected request {request:?}");
        let key = (
            request.query.get("symbol").cloned().unwrap_or_default(),
            request.query.get("date").cloned().unwrap_or_default(),
        );
        *asked.entry(key).or_default() += 1;
    }
    let duplicates: Vec<_> = asked.iter().filter(|(_, n)| **n > 1).collect();
    ensure!(
        duplicates.is_empty(),
        "sessions fetched more than once: {duplicates:?}"
    );
    let expected: BTreeSet<(String, String)> = SYMBOLS
        .iter()
        .flat_map(|s| {
            sessions
                .iter()
                .map(move |d| (s.to_string(), d.format("%Y%m%d").to_string()))
        })
        .collect();
    ensure!(
        asked.keys().cloned().collect::<BTreeSet<_>>() == expected,
        "sessions asked differ from the {} wanted: {:?}",
        expected.len(),
        asked.keys().collect::<Vec<_>>()
    );
    let distinct = expected.len();
    let upstream = received.len();
    assert_eq!(upstream, distinct);
    let stats: Vec<_> = clients.iter().map(CacheClient::stats).collect();
    let reported: u64 = stats.iter().map(|s| s.upstream_requests).sum();
    let invocations: u64 = stats.iter().map(|s| s.invocations).sum();
    assert_eq!(
        reported, distinct as u64,
        "upstream requests the answers reported"
    );

    // Each dataset: 64 identical files, the bucket's object, its only version.
    let layout = KeyLayout::new(&stack.config().prefix, &stack.config().version);
    let store = stack.store();
    for (i, dataset) in datasets.iter().enumerate() {
        let object = store.get(&layout.data_key(dataset), None).await?;
        let expected = codec::sha256_hex(&object.bytes);
        let got: Vec<&Timed> = first.iter().flatten().filter(|t| t.dataset == i).collect();
        assert_eq!(got.len(), JOBS, "{}", SYMBOLS[i]);
        for timed in &got {
            assert_eq!(timed.sha256, expected, "{}: {timed:?}", SYMBOLS[i]);
            assert_eq!(timed.version_id, object.meta.version_id, "{}", SYMBOLS[i]);
        }
        assert_eq!(
            store.list_versions(&object.meta.key).await?.len(),
            1,
            "{} was written more than once",
            object.meta.key
        );
    }
    let mut paths = BTreeSet::new();
    for cache in &caches {
        for dataset in &datasets {
            let path = cache
                .path()
                .join(cachefill_core::keys::relative_path(dataset));
            ensure!(path.is_file(), "{} is missing", path.display());
            paths.insert(path);
        }
    }
    assert_eq!(paths.len(), JOBS * SYMBOLS.len());

    // Round 2, in other orders: every call is a local hit and nothing more is fetched.
    let second_started = Instant::now();
    let second = run_all(&clients, &requests, &shuffled(2)).await?;
    let second_took = second_started.elapsed();
    for timed in second.iter().flatten() {
        assert_eq!(timed.source, Source::LocalHit, "{timed:?}");
    }
    assert_eq!(terminal.server().requests().len(), upstream);

    let fills = of(&first, Source::Filled);
    let remote = of(&first, Source::RemoteHit);
    let local = of(&second, Source::LocalHit);
    println!(
        "LOAD {JOBS} clients x {} datasets, {INSTANCES} miss-handler instances, \
         upstream delay {UPSTREAM_DELAY:?}",
        SYMBOLS.len()
    );
    println!(
        "LOAD distinct sessions {distinct}, upstream requests {upstream} (reported by answers \
         {reported}), invocations {invocations}, max upstream in flight {}",
        terminal.server().max_in_flight()
    );
    println!(
        "LOAD round 1 (cold): {} gets in {:.2} s: {} filled, {} remote hits, {} local hits",
        JOBS * SYMBOLS.len(),
        first_took.as_secs_f64(),
        fills.len(),
        remote.len(),
        of(&first, Source::LocalHit).len()
    );
    println!(
        "LOAD round 2 (warm): {} gets in {:.2} s",
        JOBS * SYMBOLS.len(),
        second_took.as_secs_f64()
    );
    println!("LOAD {}", latency_line("fill", &fills));
    println!("LOAD {}", latency_line("remote hit", &remote));
    println!("LOAD {}", latency_line("local hit", &local));
    println!(
        "LOAD wall {:.2} s (instances started to end)",
        wall.elapsed().as_secs_f64()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_jobs_over_sixteen_datasets_fetch_each_session_once() -> anyhow::Result<()> {
    let started = Instant::now();
    let terminal = Terminal::start().await?;
    serve_every_symbol(&terminal)?;
    terminal
        .server()
        .inject_route(QUOTE_PATH, None, None, Fault::Delay(UPSTREAM_DELAY));
    let config = StackConfig {
        // Nothing here reads the events queue.
        notifications: false,
        function_env: terminal.function_env(),
        ..StackConfig::default()
    };
    let run = async {
        let Some(stack) = Stack::start_or_skip("load: 64 jobs x 16 datasets", config).await? else {
            return Ok(false);
        };
        load(&terminal, &stack).await.map(|()| true)
    };
    let ran = tokio::time::timeout(LOAD_BOUND, run)
        .await
        .map_err(|_| anyhow::anyhow!("the load run did not finish within {LOAD_BOUND:?}"))??;
    if !ran {
        return Ok(());
    }
    println!(
        "LOAD test wall {:.2} s (stack start included)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
