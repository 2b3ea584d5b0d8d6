//! Aggregate trades through the client, in readonly mode over the embedded bucket: a miss is
//! filled by the in-process miss-handler (the real Binance provider against the replay
//! server), one file per UTC day lands under the cache root, and the client asks the
//! miss-handler once per run of consecutive missing days, never once per day.
//!
//! The replay server, the engine, the provider and the client share one fixed clock, so
//! "today" is a day the test chooses.

mod common;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use cachefill_client::embedded::Embedded;
use cachefill_client::local_cache::marker_path;
use cachefill_client::{
    CacheClient, ClientConfig, ClientError, InProcessInvoker, LocalFile, Source,
};
use cachefill_core::clock::FixedClock;
use cachefill_core::dataset::Provider as ProviderName;
use cachefill_core::providers::ProviderSet;
use cachefill_core::providers::binance::{BinanceConfig, BinanceProvider};
use cachefill_core::settings::CacheMode;
use cachefill_core::storage::ObjectStore;
use cachefill_core::storage::local::LocalStore;
use cachefill_core::trades::{TradeDay, TradesRequest, file};
use cachefill_testing::binance::{BinanceReplay, first_id_at};
use chrono::{DateTime, Utc};
use common::{Counted, Policy, Watched, quick};

const SYMBOL: &str = "BTCUSDT";
/// "Now" for the replay and every clock: the morning of 2025-11-09 (UTC).
const NOW: &str = "2025-11-09T06:00:00Z";

fn ms(text: &str) -> i64 {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp_millis()
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap()
}

fn day(date: &str) -> TradeDay {
    TradeDay::new(SYMBOL, date.parse().unwrap()).unwrap()
}

fn request(start: &str, end: &str) -> TradesRequest {
    TradesRequest::new(SYMBOL, ms(start), ms(end)).unwrap()
}

type Invoker = InProcessInvoker<Arc<dyn ObjectStore>, ProviderSet>;

struct Setup {
    replay: BinanceReplay,
    clock: Arc<FixedClock>,
    embedded: Embedded,
    /// The bucket as the client reads it: every call recorded, writes refused.
    watched: Arc<Watched<LocalStore>>,
    invoker: Arc<Counted<Invoker>>,
    client: CacheClient,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let replay = BinanceReplay::start().await.unwrap();
    replay.set_now(ms(NOW));
    let clock = Arc::new(FixedClock::new(at(ms(NOW))));
    let dir = tempfile::tempdir().unwrap();
    let embedded = Embedded::open(dir.path()).unwrap();
    let mut binance = BinanceConfig::new(&replay.base_url());
    binance.retry.base_delay = std::time::Duration::from_millis(10);
    let provider = BinanceProvider::new(binance)
        .unwrap()
        .with_clock(clock.clone());
    let providers = ProviderSet::new().with(ProviderName::Binance, provider);
    let invoker = Arc::new(Counted::new(InProcessInvoker::new(
        embedded.engine(providers).with_clock(clock.clone()),
    )));
    let watched = Arc::new(Watched::new(
        LocalStore::new(&embedded.bucket_dir).unwrap(),
        Policy::RefuseWrites,
    ));
    let mut config = quick(embedded.config());
    config.clock = clock.clone();
    let client = CacheClient::new(config, Some(watched.clone()), Some(invoker.clone())).unwrap();
    Setup {
        replay,
        clock,
        embedded,
        watched,
        invoker,
        client,
        _dir: dir,
    }
}

impl Setup {
    fn set_now(&self, now: i64) {
        self.replay.set_now(now);
        self.clock.set(at(now));
    }

    fn local_path(&self, day: &TradeDay) -> std::path::PathBuf {
        self.client.local_cache().path_of(&day.relative_path())
    }

    fn key(&self, day: &TradeDay) -> String {
        self.embedded.layout.key_for_relative(&day.relative_path())
    }

    async fn get(&self, request: &TradesRequest) -> LocalFile {
        self.client.get_trades(request).await.unwrap()
    }
}

fn decode(path: &Path) -> file::DecodedDay {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    file::decode(Bytes::from(bytes)).unwrap()
}

/// The file holds every id of `from..until` once, in order.
fn assert_ids(path: &Path, from: i64, until: i64) {
    let ids: Vec<i64> = decode(path).trades.iter().map(|t| t.id).collect();
    assert_eq!(ids.len() as i64, until - from, "{}: rows", path.display());
    assert!(
        ids.iter().copied().eq(from..until),
        "{}: ids are {from}..{until} once each",
        path.display()
    );
}

/// Every id of the day, from its first trade to the one before the next day's first.
fn assert_whole_day(path: &Path, day: &TradeDay) {
    assert_ids(
        path,
        first_id_at(SYMBOL, day.start_ms()),
        first_id_at(SYMBOL, day.end_ms()),
    );
}

/// Each listed day says what its local file holds, and came from `sources`.
fn assert_paths(answer: &LocalFile, days: &[TradeDay], sources: &[Source]) {
    let dates: Vec<_> = answer.paths.iter().map(|p| p.date).collect();
    let wanted: Vec<_> = days.iter().map(|d| d.date).collect();
    assert_eq!(dates, wanted, "one entry per day, in order");
    let got: Vec<Source> = answer.paths.iter().map(|p| p.source).collect();
    assert_eq!(got, sources, "where each day came from");
    for (part, day) in answer.paths.iter().zip(days) {
        assert_eq!(part.key, format!("v1/{}", day.relative_path()));
        let trades = decode(&part.path).trades;
        assert_eq!(part.rows, trades.len() as u64, "{}", day.date);
        assert_eq!(part.first_id, trades.first().map(|t| t.id), "{}", day.date);
        assert_eq!(part.last_id, trades.last().map(|t| t.id), "{}", day.date);
    }
    assert_eq!(
        answer.rows,
        answer.paths.iter().map(|p| p.rows).sum::<u64>(),
        "the answer's rows are its days'"
    );
    assert_eq!(answer.path, answer.paths[0].path, "path is the first day's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn days_are_filled_once_per_missing_run_then_served_locally_or_downloaded() {
    let s = setup().await;
    let wanted = request("2025-11-05T12:00:00Z", "2025-11-08T03:00:00Z");
    let days: Vec<TradeDay> = ["2025-11-05", "2025-11-06", "2025-11-07", "2025-11-08"]
        .map(day)
        .to_vec();

    // Nothing cached: one invocation for the four consecutive days.
    let first = s.get(&wanted).await;
    assert_eq!(
        s.invoker.calls(),
        1,
        "one run of missing days, one invocation"
    );
    assert_eq!(first.source, Source::Filled);
    assert_paths(&first, &days, &[Source::Filled; 4]);
    let cached: Vec<String> = common::cached_files(&s.embedded.cache_dir)
        .into_iter()
        .filter(|f| !f.ends_with(".s3key"))
        .collect();
    assert_eq!(
        cached,
        days.iter().map(TradeDay::relative_path).collect::<Vec<_>>(),
        "four day files under the cache root, nothing else"
    );
    for (part, d) in first.paths.iter().zip(&days) {
        assert_whole_day(&part.path, d);
        // Every day had ended at NOW, so each was fetched whole and is complete, the last
        // one included although the request stops at 03:00 of it.
        assert!(part.complete, "{}", d.date);
        assert_eq!(
            std::fs::read_to_string(marker_path(&part.path)).unwrap(),
            s.key(d),
            "lumibot's marker names the key"
        );
        let bucket = s.embedded.store().get(&s.key(d), None).await.unwrap();
        assert_eq!(
            std::fs::read(&part.path).unwrap(),
            bucket.bytes,
            "{}: the local file is the bucket's",
            d.date
        );
    }
    let filled = s.client.stats();
    assert!(filled.upstream_requests > 0, "{filled:?}");
    assert_eq!(
        filled.upstream_requests,
        s.replay.agg_requests().len() as u64,
        "the answer counts what the server received"
    );
    assert_eq!(
        s.watched.writes(),
        vec![],
        "a readonly job never writes the bucket"
    );

    // The same request again: every day is a local hit, nothing is asked.
    s.replay.server().reset_log();
    let again = s.get(&wanted).await;
    assert_eq!(again.source, Source::LocalHit);
    assert_paths(&again, &days, &[Source::LocalHit; 4]);
    assert_eq!(s.invoker.calls(), 1, "no invocation");
    assert!(s.replay.agg_requests().is_empty(), "no upstream request");
    assert_eq!(s.client.stats().upstream_requests, filled.upstream_requests);

    // Two local files gone, the bucket intact: both are downloaded, nothing invoked.
    let gets = |s: &Setup| -> Vec<usize> {
        days.iter()
            .map(|d| s.watched.count("get", &s.key(d)))
            .collect()
    };
    let gets_before = gets(&s);
    for d in &days[1..3] {
        std::fs::remove_file(s.local_path(d)).unwrap();
    }
    let remote = s.get(&wanted).await;
    assert_eq!(remote.source, Source::RemoteHit);
    assert_paths(
        &remote,
        &days,
        &[
            Source::LocalHit,
            Source::RemoteHit,
            Source::RemoteHit,
            Source::LocalHit,
        ],
    );
    for d in &days[1..3] {
        assert_whole_day(&s.local_path(d), d);
    }
    let downloaded: Vec<usize> = gets(&s)
        .iter()
        .zip(&gets_before)
        .map(|(after, before)| after - before)
        .collect();
    assert_eq!(
        downloaded,
        [0, 1, 1, 0],
        "only the missing days are downloaded"
    );
    assert_eq!(s.invoker.calls(), 1, "remote hits invoke nothing");
    assert!(s.replay.agg_requests().is_empty());

    // 11-06 and 11-08 gone everywhere: two runs of missing days, two invocations.
    for d in [&days[1], &days[3]] {
        std::fs::remove_file(s.local_path(d)).unwrap();
        s.embedded.store().delete(&s.key(d)).await.unwrap();
    }
    let refilled = s.get(&wanted).await;
    assert_eq!(
        s.invoker.calls(),
        3,
        "one invocation per missing run (06, 08)"
    );
    assert_eq!(refilled.source, Source::Filled);
    assert_paths(
        &refilled,
        &days,
        &[
            Source::LocalHit,
            Source::Filled,
            Source::LocalHit,
            Source::Filled,
        ],
    );
    for (part, d) in refilled.paths.iter().zip(&days) {
        assert_whole_day(&part.path, d);
        assert!(part.complete, "{}", d.date);
    }
    // Only the two refilled days were fetched: no id of 11-05 or 11-07 was asked again.
    let asked: Vec<i64> = s
        .replay
        .agg_requests()
        .iter()
        .filter_map(|r| r.raw_param("fromId").and_then(|v| v.parse().ok()))
        .collect();
    assert!(!asked.is_empty());
    for skipped in [&days[0], &days[2]] {
        let ids = first_id_at(SYMBOL, skipped.start_ms())..first_id_at(SYMBOL, skipped.end_ms());
        assert!(
            !asked.iter().any(|id| ids.contains(id)),
            "{} was fetched again: {asked:?}",
            skipped.date
        );
    }
    assert_eq!(s.watched.writes(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn todays_partial_file_resumes_after_its_last_id() {
    let s = setup().await;
    let today = day("2025-11-09");
    let wanted = request("2025-11-09T00:00:00Z", "2025-11-09T12:00:00Z");
    let first_id = first_id_at(SYMBOL, today.start_ms());

    let morning = s.get(&wanted).await;
    assert_eq!(s.invoker.calls(), 1);
    assert_paths(&morning, std::slice::from_ref(&today), &[Source::Filled]);
    let part = &morning.paths[0];
    assert!(!part.complete, "the day has not ended");
    // Every trade up to NOW (inclusive), none after it.
    let until = first_id_at(SYMBOL, ms(NOW) + 1);
    assert_ids(&part.path, first_id, until);
    let cached_last = part.last_id.unwrap();
    assert_eq!(cached_last, until - 1);

    // Three hours later the day is still partial (never a local hit): the miss-handler is
    // asked once more and reads only the trades after the cached last id.
    let later = ms(NOW) + 3 * 3_600_000;
    s.set_now(later);
    s.replay.server().reset_log();
    let resumed = s.get(&wanted).await;
    assert_eq!(s.invoker.calls(), 2, "one invocation for the partial day");
    assert_paths(&resumed, std::slice::from_ref(&today), &[Source::Filled]);
    let from_ids: Vec<i64> = s
        .replay
        .agg_requests()
        .iter()
        .filter_map(|r| r.raw_param("fromId").and_then(|v| v.parse().ok()))
        .collect();
    assert!(!from_ids.is_empty(), "the tail is read by id");
    assert!(
        from_ids.iter().all(|id| *id > cached_last),
        "every fromId is after the cached last id {cached_last}: {from_ids:?}"
    );
    let until = first_id_at(SYMBOL, later + 1);
    assert_ids(&resumed.paths[0].path, first_id, until);
    assert_eq!(resumed.paths[0].last_id, Some(until - 1));
    assert!(!resumed.paths[0].complete);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_without_a_fill_function_names_the_missing_key() {
    let s = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = ClientConfig::new(CacheMode::ReadOnly, dir.path(), s.embedded.layout.clone());
    config.bucket = Some(s.embedded.bucket_name());
    config.clock = s.clock.clone();
    let client = CacheClient::new(quick(config), Some(s.embedded.store()), None).unwrap();
    let err = client
        .get_trades(&request("2025-11-06T12:00:00Z", "2025-11-07T12:00:00Z"))
        .await
        .unwrap_err();
    let key = format!("v1/{}", day("2025-11-06").relative_path());
    match &err {
        ClientError::NoFillFunction { key: named } => assert_eq!(named, &key),
        other => panic!("expected NoFillFunction, got {other:?}"),
    }
    assert!(err.to_string().contains(&key), "{err}");
    assert!(
        err.to_string().contains("LUMIBOT_CACHE_FILL_FUNCTION"),
        "{err}"
    );
    assert!(s.replay.agg_requests().is_empty(), "nothing asked upstream");
    assert_eq!(s.invoker.calls(), 0);
}
