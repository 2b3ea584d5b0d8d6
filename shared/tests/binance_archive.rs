//! Whole past days from Binance's daily archives (`cachefill_testing::binance` serves them):
//! two requests and no aggTrades page for a day, times normalised to milliseconds, and the
//! REST API whenever an archive is missing, fails its checksum, has a gap or is not out yet.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};

use cachefill_core::clock::FixedClock;
use cachefill_core::fill::{EngineConfig, FillEngine, FillStatus, MissRequest};
use cachefill_core::keys::KeyLayout;
use cachefill_core::providers::Provider as _;
use cachefill_core::providers::binance::{BinanceConfig, BinanceProvider, RetryPolicy};
use cachefill_core::storage::ObjectStore;
use cachefill_core::storage::local::LocalStore;
use cachefill_core::trades::{
    AggTrade, FetchedTrades, TradeBound, TradeDay, TradeSpan, TradesRequest, file,
};
use cachefill_testing::binance::{ARCHIVE_PATH, BinanceReplay, first_id_at, generated_trade};
use cachefill_testing::thetadata::{Fault, Reply};

const SYMBOL: &str = "BTCUSDT";

fn date(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

fn ms(text: &str) -> i64 {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp_millis()
}

fn day(text: &str) -> TradeDay {
    TradeDay::new(SYMBOL, date(text)).unwrap()
}

fn whole(day: &TradeDay) -> TradeSpan {
    TradeSpan {
        from: TradeBound::Time(day.start_ms()),
        until: TradeBound::Time(day.end_ms()),
    }
}

struct Setup {
    replay: BinanceReplay,
    clock: Arc<FixedClock>,
}

/// The stand-in at `now`, and a provider on the same clock reading its archives.
async fn setup(now: &str) -> (Setup, BinanceProvider) {
    let replay = BinanceReplay::start().await.expect("the stand-in starts");
    replay.set_now(ms(now));
    let clock = Arc::new(FixedClock::new(
        DateTime::<Utc>::from_timestamp_millis(ms(now)).unwrap(),
    ));
    let provider = provider(&replay, &clock);
    (Setup { replay, clock }, provider)
}

fn provider(replay: &BinanceReplay, clock: &Arc<FixedClock>) -> BinanceProvider {
    BinanceProvider::new(BinanceConfig {
        archive_base_url: Some(replay.archive_base_url()),
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            max_retry_after: Duration::from_secs(2),
        },
        ..BinanceConfig::new(&replay.base_url())
    })
    .expect("the provider sets up")
    .with_clock(clock.clone())
}

/// Bounded: a provider that hangs fails the test instead of the CI job.
async fn fetch(provider: &BinanceProvider, span: TradeSpan) -> FetchedTrades {
    tokio::time::timeout(Duration::from_secs(120), provider.agg_trades(SYMBOL, span))
        .await
        .expect("agg_trades answers within 120 s")
        .expect("agg_trades succeeds")
}

/// The generated trade `id` as REST reports it: milliseconds.
fn expected(id: i64) -> AggTrade {
    let t = generated_trade(SYMBOL, id);
    AggTrade {
        time: t.time_ms,
        id,
        price: t.price.parse().unwrap(),
        qty: t.qty.parse().unwrap(),
        first_trade: t.first_trade_id,
        last_trade: t.last_trade_id,
        buyer_maker: t.buyer_is_maker,
        best_match: t.best_match,
    }
}

/// Every trade of `ids`, once, in order, equal to the generated ones (times in ms); a
/// failure names the first difference instead of printing a day of trades.
fn assert_trades(fetched: &FetchedTrades, ids: impl IntoIterator<Item = i64>) {
    let want: Vec<AggTrade> = ids.into_iter().map(expected).collect();
    let first_difference = fetched.trades.iter().zip(&want).position(|(g, w)| g != w);
    assert!(
        fetched.trades.len() == want.len() && first_difference.is_none(),
        "{} trades, {} expected; first difference at {first_difference:?}: {:?}",
        fetched.trades.len(),
        want.len(),
        first_difference.map(|k| (&fetched.trades[k], &want[k]))
    );
}

fn day_ids(day: &TradeDay) -> (i64, i64) {
    (
        first_id_at(SYMBOL, day.start_ms()),
        first_id_at(SYMBOL, day.end_ms()),
    )
}

#[tokio::test]
async fn an_archived_day_takes_two_requests_and_no_weight() {
    let (s, provider) = setup("2025-11-09T03:00:00Z").await;
    let d = day("2025-11-07");
    let (first, end) = day_ids(&d);
    let fetched = fetch(&provider, whole(&d)).await;
    assert_trades(&fetched, first..end);
    assert_eq!(
        fetched.next_id,
        Some(end),
        "the day ends where the next begins"
    );
    assert_eq!(fetched.requests, 2, "the CHECKSUM and the zip");
    assert_eq!(s.replay.archive_requests().len(), 2);
    assert_eq!(s.replay.agg_requests().len(), 0, "no aggTrades request");
    assert_eq!(provider.used_weight(), 0, "archives weigh nothing");
    let paths: Vec<String> = s
        .replay
        .archive_requests()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(
        paths,
        [
            format!("{ARCHIVE_PATH}BTCUSDT/BTCUSDT-aggTrades-2025-11-07.zip.CHECKSUM"),
            format!("{ARCHIVE_PATH}BTCUSDT/BTCUSDT-aggTrades-2025-11-07.zip"),
        ]
    );

    // From an id inside the day (a resumed tail): the rest of the day, from the archive.
    let from = first + 12_345;
    let tail = fetch(
        &provider,
        TradeSpan {
            from: TradeBound::Id(from),
            until: TradeBound::Time(d.end_ms()),
        },
    )
    .await;
    assert_trades(&tail, from..end);
    assert_eq!((tail.next_id, tail.requests), (Some(end), 2));
    assert_eq!(s.replay.agg_requests().len(), 0);
}

#[tokio::test]
async fn a_day_before_2025_has_millisecond_times() {
    let (s, provider) = setup("2024-06-03T00:00:00Z").await;
    let d = day("2024-06-01");
    let (first, end) = day_ids(&d);
    let fetched = fetch(&provider, whole(&d)).await;
    assert_trades(&fetched, first..end);
    assert_eq!((fetched.next_id, fetched.requests), (Some(end), 2));
    assert_eq!(s.replay.agg_requests().len(), 0);
}

/// What the REST API alone gives for `span`, from a provider without archives.
async fn rest_only(
    replay: &BinanceReplay,
    clock: &Arc<FixedClock>,
    span: TradeSpan,
) -> FetchedTrades {
    let provider = BinanceProvider::new(BinanceConfig {
        archive_base_url: None,
        ..BinanceConfig::new(&replay.base_url())
    })
    .unwrap()
    .with_clock(clock.clone());
    fetch(&provider, span).await
}

#[tokio::test]
async fn a_checksum_mismatch_falls_back_to_rest() {
    let (s, provider) = setup("2025-11-09T03:00:00Z").await;
    let d = day("2025-11-07");
    let (first, end) = day_ids(&d);
    s.replay.archive_corrupt_checksum(d.date);
    let fetched = fetch(&provider, whole(&d)).await;
    assert_trades(&fetched, first..end);
    assert_eq!(fetched.next_id, Some(end));
    let (archive, rest) = (
        s.replay.archive_requests().len(),
        s.replay.agg_requests().len(),
    );
    assert_eq!(
        archive, 2,
        "the CHECKSUM and the zip were read, then refused"
    );
    assert!(rest > 0, "the day came from aggTrades pages");
    assert_eq!(
        fetched.requests as usize,
        archive + rest,
        "every request counted"
    );
}

#[tokio::test]
async fn a_missing_archive_falls_back_to_rest() {
    let (s, provider) = setup("2025-11-09T03:00:00Z").await;
    let d = day("2025-11-07");
    let (first, end) = day_ids(&d);
    s.replay.archive_missing(d.date);
    let fetched = fetch(&provider, whole(&d)).await;
    assert_trades(&fetched, first..end);
    assert_eq!(fetched.next_id, Some(end));
    assert_eq!(
        s.replay.archive_requests().len(),
        1,
        "a 404 CHECKSUM is not retried and spares the zip"
    );
    let rest = s.replay.agg_requests().len();
    assert!(rest > 0);
    assert_eq!(fetched.requests as usize, 1 + rest);
}

#[tokio::test]
async fn an_archive_with_a_gap_falls_back_to_rest() {
    let (s, provider) = setup("2025-11-09T03:00:00Z").await;
    let d = day("2025-11-07");
    let (first, _) = day_ids(&d);
    s.replay.drop_ids(SYMBOL, first + 500..=first + 509);
    let fetched = fetch(&provider, whole(&d)).await;
    assert_eq!(s.replay.archive_requests().len(), 2);
    assert!(
        !s.replay.agg_requests().is_empty(),
        "the gap sent the day to REST"
    );
    let rest = rest_only(&s.replay, &s.clock, whole(&d)).await;
    assert_eq!(fetched.trades, rest.trades, "what REST has, gap included");
    assert_eq!(fetched.next_id, rest.next_id);
    assert!(!fetched.trades.iter().any(|t| t.id == first + 505));
}

#[tokio::test]
async fn days_not_archived_yet_go_to_rest_without_asking() {
    // Yesterday ended three hours ago: Binance has not archived it yet.
    let (s, provider) = setup("2025-11-09T03:00:00Z").await;
    let yesterday = day("2025-11-08");
    let (first, end) = day_ids(&yesterday);
    let fetched = fetch(&provider, whole(&yesterday)).await;
    assert_trades(&fetched, first..end);
    assert_eq!(fetched.next_id, Some(end));
    // Today, still running: no end yet.
    let today = day("2025-11-09");
    let running = fetch(&provider, whole(&today)).await;
    assert_eq!(running.next_id, None);
    assert!(!running.trades.is_empty());
    assert_eq!(s.replay.archive_requests().len(), 0, "no archive asked");
    // Part of a past day is not a whole day either.
    let part = fetch(
        &provider,
        TradeSpan {
            from: TradeBound::Time(day("2025-11-07").start_ms() + 3_600_000),
            until: TradeBound::Time(day("2025-11-07").end_ms()),
        },
    )
    .await;
    assert!(!part.trades.is_empty());
    assert_eq!(s.replay.archive_requests().len(), 0);
}

#[tokio::test]
async fn the_engine_fills_past_days_from_archives() {
    let (s, provider) = setup("2025-11-10T03:00:00Z").await;
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path().join("bucket")).unwrap();
    let engine = FillEngine::new(
        store,
        provider,
        EngineConfig::new("trades-bucket", KeyLayout::new("", "v1")),
    )
    .with_clock(s.clock.clone());
    let (d7, d8) = (day("2025-11-07"), day("2025-11-08"));
    let request =
        MissRequest::Trades(TradesRequest::new(SYMBOL, d7.start_ms(), d8.end_ms()).unwrap());
    let answer = tokio::time::timeout(Duration::from_secs(300), engine.fill_any(&request))
        .await
        .expect("the fill ends within 300 s")
        .unwrap();
    assert_eq!(answer.status, FillStatus::Filled);
    assert_eq!(answer.parts.len(), 2);
    // The second day starts from the first day's end id: still a whole day of the archive.
    assert_eq!(answer.upstream_requests, 4, "two archive requests a day");
    assert_eq!(s.replay.agg_requests().len(), 0);
    for (d, part) in [&d7, &d8].into_iter().zip(&answer.parts) {
        let (first, end) = day_ids(d);
        assert!(part.complete, "{}", d.date);
        assert_eq!((part.first_id, part.last_id), (Some(first), Some(end - 1)));
        let got = engine
            .store()
            .get(&format!("v1/{}", d.relative_path()), None)
            .await
            .unwrap();
        let decoded = file::decode(got.bytes).unwrap();
        assert_eq!(
            (decoded.coverage.start_id, decoded.coverage.end_id),
            (Some(first), Some(end))
        );
        let fetched = FetchedTrades {
            trades: decoded.trades,
            next_id: None,
            requests: 0,
        };
        assert_trades(&fetched, first..end);
    }
    // Filled once: asked again, it is a hit and the archive is not read again.
    let again = engine.fill_any(&request).await.unwrap();
    assert_eq!(again.status, FillStatus::Hit);
    assert_eq!(s.replay.archive_requests().len(), 4);
}

#[tokio::test]
async fn archive_faults_are_retried_like_any_request() {
    let (s, provider) = setup("2025-11-09T03:00:00Z").await;
    let d = day("2025-11-07");
    let (first, end) = day_ids(&d);
    let files = format!("{ARCHIVE_PATH}BTCUSDT/BTCUSDT-aggTrades-2025-11-07");
    let server = s.replay.server();
    server.inject_route(
        &format!("{files}.zip.CHECKSUM"),
        None,
        Some(1),
        Fault::status(503, "Service Unavailable"),
    );
    server.inject_route(&format!("{files}.zip"), None, Some(1), Fault::ShortBody);
    let fetched = fetch(&provider, whole(&d)).await;
    assert_trades(&fetched, first..end);
    assert_eq!(fetched.requests, 4, "each file once more");
    assert_eq!(s.replay.archive_requests().len(), 4);
    assert_eq!(s.replay.agg_requests().len(), 0);
}

#[tokio::test]
async fn a_zip_that_does_not_open_falls_back_to_rest() {
    let (s, provider) = setup("2025-11-09T03:00:00Z").await;
    let d = day("2025-11-07");
    let (first, end) = day_ids(&d);
    let files = format!("{ARCHIVE_PATH}BTCUSDT/BTCUSDT-aggTrades-2025-11-07");
    // A CHECKSUM that matches bytes which are no zip.
    let junk = b"PK\x03\x04 not a zip at all".to_vec();
    let sum = cachefill_core::codec::sha256_hex(&junk);
    let server = s.replay.server();
    server.inject_route(
        &format!("{files}.zip.CHECKSUM"),
        None,
        None,
        Fault::Reply(Reply::text(
            200,
            format!("{sum}  BTCUSDT-aggTrades-2025-11-07.zip"),
        )),
    );
    server.inject_route(
        &format!("{files}.zip"),
        None,
        None,
        Fault::Reply(Reply {
            body: junk.into(),
            ..Reply::text(200, "")
        }),
    );
    let fetched = fetch(&provider, whole(&d)).await;
    assert_trades(&fetched, first..end);
    assert_eq!(
        s.replay.archive_requests().len(),
        2,
        "a bad zip is not asked again"
    );
    assert!(!s.replay.agg_requests().is_empty());
}
