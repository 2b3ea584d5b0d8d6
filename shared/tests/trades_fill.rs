//! Filling aggregate-trade days through the real Binance provider against the replay
//! server: whole days, resumes from the last id, gaps, overlapping pages, lost write races,
//! failures that leave the bucket as it was, and corrupt files.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use cachefill_core::clock::FixedClock;
use cachefill_core::errors::ErrorType;
use cachefill_core::fill::{EngineConfig, FillEngine, FillStatus, MissRequest};
use cachefill_core::keys::KeyLayout;
use cachefill_core::providers::binance::{BinanceConfig, BinanceProvider};
use cachefill_core::storage::local::LocalStore;
use cachefill_core::storage::{ObjectStore, PutOptions};
use cachefill_core::trades::{TradeDay, TradesRequest, file};
use cachefill_testing::binance::{
    AGG_TRADES_PATH, BinanceReplay, first_id_at, internal_error, ip_banned, rate_limited,
    restricted_location,
};
use cachefill_testing::doubles::RacingStore;
use cachefill_testing::thetadata::Fault;

const SYMBOL: &str = "BTCUSDT";

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

fn provider(replay: &BinanceReplay) -> BinanceProvider {
    let mut config = BinanceConfig::new(&replay.base_url());
    config.retry.base_delay = std::time::Duration::from_millis(10);
    BinanceProvider::new(config).unwrap()
}

fn engine<S: ObjectStore>(
    store: S,
    replay: &BinanceReplay,
    clock: &Arc<FixedClock>,
) -> FillEngine<S, BinanceProvider> {
    FillEngine::new(
        store,
        provider(replay),
        EngineConfig::new("trades-bucket", KeyLayout::new("", "v1")),
    )
    .with_clock(clock.clone())
}

fn request(start: &str, end: &str) -> MissRequest {
    MissRequest::Trades(TradesRequest::new(SYMBOL, ms(start), ms(end)).unwrap())
}

async fn day_file(store: &impl ObjectStore, day: &TradeDay) -> file::DecodedDay {
    let got = store
        .get(&format!("v1/{}", day.relative_path()), None)
        .await
        .unwrap();
    file::decode(got.bytes).unwrap()
}

/// Every id from `from` to `until` (exclusive), once, in order.
fn assert_ids(decoded: &file::DecodedDay, from: i64, until: i64) {
    let ids: Vec<i64> = decoded.trades.iter().map(|t| t.id).collect();
    assert_eq!(ids.len() as i64, until - from, "rows");
    assert!(
        ids.iter().copied().eq(from..until),
        "ids are {from}..{until} once each"
    );
}

fn from_ids(replay: &BinanceReplay) -> Vec<i64> {
    replay
        .agg_requests()
        .iter()
        .filter_map(|r| r.raw_param("fromId").and_then(|v| v.parse().ok()))
        .collect()
}

struct Setup {
    replay: BinanceReplay,
    clock: Arc<FixedClock>,
    dir: tempfile::TempDir,
}

async fn setup(now: &str) -> Setup {
    let replay = BinanceReplay::start().await.unwrap();
    replay.set_now(ms(now));
    Setup {
        replay,
        clock: Arc::new(FixedClock::new(at(ms(now)))),
        dir: tempfile::tempdir().unwrap(),
    }
}

impl Setup {
    fn store(&self) -> LocalStore {
        LocalStore::new(self.dir.path().join("bucket")).unwrap()
    }

    fn set_now(&self, now: &str) {
        self.replay.set_now(ms(now));
        self.clock.set(at(ms(now)));
    }
}

#[tokio::test]
async fn a_past_day_is_filled_whole_then_hit_from_metadata() {
    let s = setup("2025-11-09T03:00:00Z").await;
    let engine = engine(s.store(), &s.replay, &s.clock);
    let d = day("2025-11-07");
    let answer = engine
        .fill_any(&request("2025-11-07T10:00:00Z", "2025-11-07T11:00:00Z"))
        .await
        .unwrap();
    assert_eq!(answer.status, FillStatus::Filled);
    let (first, end) = (
        first_id_at(SYMBOL, d.start_ms()),
        first_id_at(SYMBOL, d.end_ms()),
    );
    assert_eq!(answer.parts.len(), 1);
    let part = &answer.parts[0];
    assert_eq!(part.key, format!("v1/{}", d.relative_path()));
    assert_eq!((part.first_id, part.last_id), (Some(first), Some(end - 1)));
    assert!(part.complete, "a past day with every id is complete");
    let decoded = day_file(engine.store(), &d).await;
    assert_ids(&decoded, first, end);
    assert_eq!(decoded.coverage.start_id, Some(first));
    assert_eq!(decoded.coverage.end_id, Some(end));
    assert!(
        decoded
            .trades
            .iter()
            .all(|t| t.time >= d.start_ms() && t.time < d.end_ms())
    );

    s.replay.server().reset_log();
    let again = engine
        .fill_any(&request("2025-11-07T00:00:00Z", "2025-11-08T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(again.status, FillStatus::Hit);
    assert_eq!(again.upstream_requests, 0);
    assert_eq!(
        s.replay.agg_requests().len(),
        0,
        "a complete day is never asked again"
    );
    assert_eq!(again.parts[0].sha256, part.sha256);
}

#[tokio::test]
async fn today_stays_partial_and_resumes_from_the_last_id() {
    let s = setup("2025-11-07T09:00:00Z").await;
    let engine = engine(s.store(), &s.replay, &s.clock);
    let d = day("2025-11-07");
    let first = first_id_at(SYMBOL, d.start_ms());
    let wanted = request("2025-11-07T00:00:00Z", "2025-11-08T00:00:00Z");
    let answer = engine.fill_any(&wanted).await.unwrap();
    let part = answer.parts[0].clone();
    assert!(
        !part.complete,
        "a day fetched before it ended stays partial"
    );
    let last = part.last_id.unwrap();
    assert_eq!(
        last,
        first_id_at(SYMBOL, ms("2025-11-07T09:00:00Z") + 1) - 1
    );
    assert_eq!(day_file(engine.store(), &d).await.coverage.end_id, None);

    // Three hours later: only what came since is asked, from the last id + 1.
    s.set_now("2025-11-07T12:00:00Z");
    s.replay.server().reset_log();
    let resumed = engine.fill_any(&wanted).await.unwrap();
    let asked = from_ids(&s.replay);
    assert!(
        asked.iter().all(|id| *id > last),
        "never refetches what is cached: {asked:?}"
    );
    assert_eq!(asked.iter().min(), Some(&(last + 1)));
    let requests = s.replay.agg_requests().len();
    assert!(requests <= 20, "a 3-hour resume took {requests} requests");
    assert_eq!(resumed.upstream_requests as usize, requests);
    let decoded = day_file(engine.store(), &d).await;
    assert_ids(
        &decoded,
        first,
        first_id_at(SYMBOL, ms("2025-11-07T12:00:00Z") + 1),
    );

    // After midnight the day completes with the tail alone.
    s.set_now("2025-11-08T00:30:00Z");
    let done = engine.fill_any(&wanted).await.unwrap();
    assert!(done.parts[0].complete);
    assert_ids(
        &day_file(engine.store(), &d).await,
        first,
        first_id_at(SYMBOL, d.end_ms()),
    );
}

#[tokio::test]
async fn a_gap_keeps_the_day_partial_and_is_refetched_by_id() {
    let s = setup("2025-11-09T00:00:00Z").await;
    let d = day("2025-11-07");
    let first = first_id_at(SYMBOL, d.start_ms());
    let end = first_id_at(SYMBOL, d.end_ms());
    let gap = (first + 50_000)..=(first + 50_099);
    s.replay.drop_ids(SYMBOL, gap.clone());
    let wanted = request("2025-11-07T00:00:00Z", "2025-11-08T00:00:00Z");
    let answer = engine(s.store(), &s.replay, &s.clock)
        .fill_any(&wanted)
        .await
        .unwrap();
    assert!(
        !answer.parts[0].complete,
        "a day with an id gap is not complete"
    );
    let held = day_file(&s.store(), &d).await;
    assert_eq!(held.trades.len() as i64, end - first - 100);

    // The same trades from a server without the gap: only the gap is asked.
    let healthy = BinanceReplay::start().await.unwrap();
    healthy.set_now(ms("2025-11-09T00:00:00Z"));
    let answer = engine(s.store(), &healthy, &s.clock)
        .fill_any(&wanted)
        .await
        .unwrap();
    assert!(answer.parts[0].complete);
    assert_eq!(
        from_ids(&healthy),
        [*gap.start()],
        "one page from the gap's first id"
    );
    assert_ids(&day_file(&s.store(), &d).await, first, end);
}

#[tokio::test]
async fn overlapping_pages_and_a_lost_race_keep_every_id_once() {
    let s = setup("2025-11-07T06:00:00Z").await;
    s.replay.overlap_pages(7);
    let d = day("2025-11-07");
    let key = format!("v1/{}", d.relative_path());
    let first = first_id_at(SYMBOL, d.start_ms());
    let wanted = request("2025-11-07T00:00:00Z", "2025-11-07T06:00:00Z");
    // A peer's version of the day, up to 03:00, lands between our read and our put.
    let peer = {
        let scratch = tempfile::tempdir().unwrap();
        let clock = Arc::new(FixedClock::new(at(ms("2025-11-07T03:00:00Z"))));
        s.replay.set_now(ms("2025-11-07T03:00:00Z"));
        let e = engine(LocalStore::new(scratch.path()).unwrap(), &s.replay, &clock);
        e.fill_any(&wanted).await.unwrap();
        s.replay.set_now(ms("2025-11-07T06:00:00Z"));
        e.store().get(&key, None).await.unwrap().bytes
    };
    let racing = RacingStore::new(s.store(), &key);
    racing.race_with(peer);
    let e = engine(racing, &s.replay, &s.clock);
    let answer = e.fill_any(&wanted).await.unwrap();
    assert!(e.store().raced(), "the peer's write happened before ours");
    let until = first_id_at(SYMBOL, ms("2025-11-07T06:00:00Z") + 1);
    assert_eq!(answer.parts[0].last_id, Some(until - 1));
    assert_ids(&day_file(e.store(), &d).await, first, until);
}

#[tokio::test]
async fn a_failed_fill_leaves_the_bucket_unchanged() {
    let s = setup("2025-11-09T00:00:00Z").await;
    let store = s.store();
    let d = day("2025-11-07");
    let key = format!("v1/{}", d.relative_path());
    // A partial day is already there: a failed fill must leave it exactly as it was.
    s.set_now("2025-11-07T01:00:00Z");
    engine(s.store(), &s.replay, &s.clock)
        .fill_any(&request("2025-11-07T00:00:00Z", "2025-11-07T01:00:00Z"))
        .await
        .unwrap();
    s.set_now("2025-11-09T00:00:00Z");
    let before = store.head(&key, None).await.unwrap();
    let wanted = request("2025-11-07T00:00:00Z", "2025-11-08T00:00:00Z");
    // (fault, how many requests it answers, the error type, a word of its message)
    let cases = [
        (
            restricted_location(),
            1,
            ErrorType::UpstreamNoPermission,
            "region",
        ),
        (
            internal_error(503),
            100,
            ErrorType::UpstreamUnavailable,
            "503",
        ),
        (Fault::CutJson, 100, ErrorType::UpstreamUnavailable, ""),
        (rate_limited(0), 100, ErrorType::UpstreamRateLimited, ""),
        (ip_banned(3_600), 1, ErrorType::UpstreamRateLimited, ""),
    ];
    // The page 5,000 ids into the resume fails: the failure comes in the middle of the walk.
    let held = day_file(&store, &d).await;
    let page = (held.trades.last().unwrap().id + 1 + 5_000).to_string();
    let query = [
        ("symbol", SYMBOL),
        ("fromId", page.as_str()),
        ("limit", "1000"),
    ];
    for (fault, times, error_type, needle) in cases {
        s.replay.server().clear_faults();
        s.replay
            .server()
            .inject_route(AGG_TRADES_PATH, Some(&query), Some(times), fault);
        let err = engine(s.store(), &s.replay, &s.clock)
            .fill_any(&wanted)
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), error_type, "{err}");
        assert!(err.to_string().contains(needle), "{err}");
        let after = store.head(&key, None).await.unwrap();
        assert_eq!(
            after.etag, before.etag,
            "{error_type:?}: the day is unchanged"
        );
        assert_eq!(store.list("v1/binance/").await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn a_corrupt_day_is_filled_again() {
    let s = setup("2025-11-09T00:00:00Z").await;
    let store = s.store();
    let d = day("2025-11-07");
    let key = format!("v1/{}", d.relative_path());
    store
        .put(
            &key,
            Bytes::from_static(b"PAR1 not really"),
            PutOptions::default(),
        )
        .await
        .unwrap();
    let answer = engine(s.store(), &s.replay, &s.clock)
        .fill_any(&request("2025-11-07T00:00:00Z", "2025-11-08T00:00:00Z"))
        .await
        .unwrap();
    assert!(answer.parts[0].complete);
    assert_ids(
        &day_file(&store, &d).await,
        first_id_at(SYMBOL, d.start_ms()),
        first_id_at(SYMBOL, d.end_ms()),
    );
}

#[tokio::test]
async fn two_days_in_one_request_share_their_midnight() {
    let s = setup("2025-11-09T01:00:00Z").await;
    let e = engine(s.store(), &s.replay, &s.clock);
    let answer = e
        .fill_any(&request("2025-11-07T20:00:00Z", "2025-11-08T04:00:00Z"))
        .await
        .unwrap();
    assert_eq!(answer.parts.len(), 2);
    let (d1, d2) = (day("2025-11-07"), day("2025-11-08"));
    let midnight = first_id_at(SYMBOL, d1.end_ms());
    assert_eq!(answer.parts[0].last_id, Some(midnight - 1));
    assert_eq!(answer.parts[1].first_id, Some(midnight));
    assert!(
        answer.parts.iter().all(|p| p.complete),
        "{:?}",
        answer.parts
    );
    assert_ids(
        &day_file(e.store(), &d2).await,
        midnight,
        first_id_at(SYMBOL, d2.end_ms()),
    );
}

#[tokio::test]
async fn a_day_ends_where_the_next_days_file_begins() {
    let s = setup("2025-11-09T01:00:00Z").await;
    let e = engine(s.store(), &s.replay, &s.clock);
    let (d1, d2) = (day("2025-11-07"), day("2025-11-08"));
    e.fill_any(&request("2025-11-08T00:00:00Z", "2025-11-09T00:00:00Z"))
        .await
        .unwrap();
    s.replay.server().reset_log();
    let answer = e
        .fill_any(&request("2025-11-07T00:00:00Z", "2025-11-08T00:00:00Z"))
        .await
        .unwrap();
    let midnight = first_id_at(SYMBOL, d1.end_ms());
    assert!(answer.parts[0].complete);
    assert_eq!(
        day_file(e.store(), &d1).await.coverage.end_id,
        Some(midnight)
    );
    assert_eq!(
        day_file(e.store(), &d2).await.coverage.start_id,
        Some(midnight)
    );
    let pages = (midnight - first_id_at(SYMBOL, d1.start_ms())).div_euclid(1_000) as usize;
    assert_eq!(
        s.replay.agg_requests().len(),
        1 + pages,
        "the start lookup and the pages; the end came from the next day's file"
    );
}
