//! The Binance provider against the stand-in Binance API (`cachefill_testing::binance`):
//! spans by time and by id, overlapping pages, the weight budget, and every fault with its
//! requests counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cachefill_core::clock::FixedClock;
use cachefill_core::providers::binance::{BinanceConfig, BinanceProvider, RetryPolicy};
use cachefill_core::providers::{Provider, ProviderError};
use cachefill_core::trades::{AggTrade, FetchedTrades, TradeBound, TradeSpan};
use cachefill_testing::binance::{
    AGG_TRADES_PATH, BinanceReplay, first_id_at, generated_trade, internal_error, ip_banned,
    rate_limited, restricted_location,
};
use cachefill_testing::thetadata::{Fault, Received};
use chrono::TimeZone;

const SYMBOL: &str = "BTCUSDT";
/// 2024-01-01T00:00:00Z.
const DAY: i64 = 1_704_067_200_000;
const HOUR: i64 = 3_600_000;
const PAGE: i64 = 1000;

fn config(replay: &BinanceReplay) -> BinanceConfig {
    BinanceConfig {
        concurrency: 4,
        request_timeout: Duration::from_secs(10),
        retry: RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            max_retry_after: Duration::from_secs(5),
        },
        ..BinanceConfig::new(&replay.base_url())
    }
}

async fn start() -> (BinanceReplay, BinanceProvider) {
    let replay = BinanceReplay::start().await.expect("the stand-in starts");
    let provider = BinanceProvider::new(config(&replay)).expect("the provider sets up");
    (replay, provider)
}

fn by_time(from: i64, until: i64) -> TradeSpan {
    TradeSpan {
        from: TradeBound::Time(from),
        until: TradeBound::Time(until),
    }
}

fn by_id(from: i64, until: i64) -> TradeSpan {
    TradeSpan {
        from: TradeBound::Id(from),
        until: TradeBound::Id(until),
    }
}

/// Bounded: a provider that hangs fails the test instead of the CI job.
async fn fetch(
    provider: &BinanceProvider,
    span: TradeSpan,
) -> Result<FetchedTrades, ProviderError> {
    tokio::time::timeout(Duration::from_secs(60), provider.agg_trades(SYMBOL, span))
        .await
        .expect("agg_trades answers within 60 s")
}

fn ids(fetched: &FetchedTrades) -> Vec<i64> {
    fetched.trades.iter().map(|t| t.id).collect()
}

/// The ids are exactly `expected`, in order; a failure names the first difference instead of
/// printing a day of ids.
fn assert_ids(fetched: &FetchedTrades, expected: impl IntoIterator<Item = i64>) {
    let got = ids(fetched);
    let expected: Vec<i64> = expected.into_iter().collect();
    let first_difference = got.iter().zip(&expected).position(|(g, e)| g != e);
    assert!(
        got.len() == expected.len() && first_difference.is_none(),
        "{} ids, expected {}; first difference at index {:?}: got {:?}, expected {:?}",
        got.len(),
        expected.len(),
        first_difference,
        first_difference.map(|i| got[i]),
        first_difference.map(|i| expected[i]),
    );
}

/// Every trade is the one the stand-in generated for its id, field by field.
fn assert_generated(trades: &[AggTrade]) {
    for trade in trades {
        let g = generated_trade(SYMBOL, trade.id);
        let expected = AggTrade {
            time: g.time_ms,
            id: g.id,
            price: g.price.parse().unwrap(),
            qty: g.qty.parse().unwrap(),
            first_trade: g.first_trade_id,
            last_trade: g.last_trade_id,
            buyer_maker: g.buyer_is_maker,
            best_match: g.best_match,
        };
        assert_eq!(*trade, expected);
    }
}

fn param<'a>(request: &'a Received, name: &str) -> Option<&'a str> {
    request.raw_param(name)
}

#[tokio::test]
async fn a_day_by_time_is_exactly_its_generated_ids() {
    let (replay, provider) = start().await;
    let first = first_id_at(SYMBOL, DAY);
    let next = first_id_at(SYMBOL, DAY + 24 * HOUR);
    let fetched = fetch(&provider, by_time(DAY, DAY + 24 * HOUR))
        .await
        .unwrap();
    assert_ids(&fetched, first..next);
    assert_eq!(fetched.next_id, Some(next));
    assert!(
        fetched
            .trades
            .iter()
            .all(|t| (DAY..DAY + 24 * HOUR).contains(&t.time))
    );
    assert_generated(&fetched.trades);

    // Two one-hour lookups, then one page per 1,000 ids.
    let pages = (next - first + PAGE - 1) / PAGE;
    let log = replay.agg_requests();
    assert_eq!(fetched.requests as usize, log.len());
    assert_eq!(log.len() as i64, 2 + pages);
    let lookups: Vec<(String, String)> = log
        .iter()
        .filter_map(|r| Some((param(r, "startTime")?.into(), param(r, "endTime")?.into())))
        .collect();
    let window = |start: i64| (start.to_string(), (start + HOUR - 1).to_string());
    assert_eq!(lookups, [window(DAY), window(DAY + 24 * HOUR)]);
    assert!(log.iter().all(|r| param(r, "symbol") == Some(SYMBOL)));
    assert!(
        replay.server().max_in_flight() <= 4,
        "{} requests in flight",
        replay.server().max_in_flight()
    );
}

#[tokio::test]
async fn an_id_span_reads_only_pages_by_id() {
    let (replay, provider) = start().await;
    let from = first_id_at(SYMBOL, DAY) + 123;
    let until = from + 4_567;
    let fetched = fetch(&provider, by_id(from, until)).await.unwrap();
    assert_ids(&fetched, from..until);
    assert_eq!(fetched.next_id, Some(until));
    assert_generated(&fetched.trades);
    let log = replay.agg_requests();
    assert_eq!(fetched.requests, 5);
    assert_eq!(log.len(), 5);
    let mut from_ids: Vec<i64> = log
        .iter()
        .map(|r| param(r, "fromId").unwrap().parse().unwrap())
        .collect();
    from_ids.sort_unstable();
    assert_eq!(
        from_ids,
        (0..5).map(|k| from + k * PAGE).collect::<Vec<_>>()
    );
    assert!(log.iter().all(|r| param(r, "startTime").is_none()));
}

#[tokio::test]
async fn overlapping_pages_and_gaps_give_each_id_once() {
    let (replay, provider) = start().await;
    replay.overlap_pages(37);
    let from = first_id_at(SYMBOL, DAY);
    let until = first_id_at(SYMBOL, DAY + 2 * HOUR);
    let gap = from + 2_500..=from + 2_519;
    replay.drop_ids(SYMBOL, gap.clone());
    let fetched = fetch(&provider, by_time(DAY, DAY + 2 * HOUR))
        .await
        .unwrap();
    let expected: Vec<i64> = (from..until).filter(|id| !gap.contains(id)).collect();
    assert_ids(&fetched, expected);
    assert_eq!(fetched.next_id, Some(until));
    assert_eq!(fetched.requests as usize, replay.agg_requests().len());
}

#[tokio::test]
async fn a_small_weight_budget_slows_the_walk_instead_of_failing() {
    let (replay, _) = start().await;
    replay.set_weight_budget(40, Duration::from_secs(1));
    let provider = BinanceProvider::new(BinanceConfig {
        weight_budget: 40,
        weight_window: Duration::from_secs(1),
        ..config(&replay)
    })
    .unwrap();
    let from = first_id_at(SYMBOL, DAY);
    let until = first_id_at(SYMBOL, DAY + 2 * HOUR);
    let started = Instant::now();
    let fetched = fetch(&provider, by_time(DAY, DAY + 2 * HOUR))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_ids(&fetched, from..until);
    // 2 lookups and 12 pages: 56 weight, more than one window's 40.
    assert_eq!(fetched.requests, 14, "no request was refused and retried");
    assert_eq!(replay.agg_requests().len(), 14);
    assert!(
        replay.max_used_weight() <= 40,
        "{}",
        replay.max_used_weight()
    );
    assert!(
        replay.max_used_weight() >= 32,
        "{}",
        replay.max_used_weight()
    );
    assert_eq!(replay.banned(), 0);
    assert!(took >= Duration::from_secs(1), "took {took:?}");
}

#[tokio::test]
async fn an_ip_ban_stops_every_request_until_retry_after() {
    let (replay, provider) = start().await;
    let from = first_id_at(SYMBOL, DAY);
    let until = from + 12 * PAGE;
    // The ban hits the fourth page while three others are in flight.
    let banned_page = (from + 3 * PAGE).to_string();
    replay.server().inject_route(
        AGG_TRADES_PATH,
        Some(&[
            ("symbol", SYMBOL),
            ("fromId", banned_page.as_str()),
            ("limit", "1000"),
        ]),
        Some(1),
        ip_banned(1),
    );
    let fetched = fetch(&provider, by_id(from, until)).await.unwrap();
    assert_ids(&fetched, from..until);

    let log = replay.agg_requests();
    assert_eq!(fetched.requests as usize, log.len());
    assert_eq!(log.len(), 13, "12 pages and the banned one again");
    let bans: Vec<Instant> = log
        .iter()
        .filter(|r| param(r, "fromId") == Some(banned_page.as_str()))
        .map(|r| r.at)
        .collect();
    assert_eq!(bans.len(), 2);
    let banned_at = bans[0];
    // Only requests sent before the 418 arrived (at most the three in flight with it) reach
    // the server within the ban; without the block the next pages would follow at once.
    let within: Vec<&Received> = log
        .iter()
        .filter(|r| r.at > banned_at && r.at < banned_at + Duration::from_millis(950))
        .collect();
    assert!(
        within.len() <= 3,
        "{} requests within the ban: {:?}",
        within.len(),
        within
            .iter()
            .map(|r| param(r, "fromId"))
            .collect::<Vec<_>>()
    );
    assert!(bans[1] >= banned_at + Duration::from_millis(950));
    assert_eq!(
        replay.banned(),
        0,
        "the stand-in never had to ban us itself"
    );
}

#[tokio::test]
async fn a_429_is_retried_after_retry_after() {
    let (replay, _) = start().await;
    let provider = BinanceProvider::new(BinanceConfig {
        concurrency: 1,
        ..config(&replay)
    })
    .unwrap();
    let from = first_id_at(SYMBOL, DAY);
    replay.server().inject_next(1, rate_limited(1));
    let fetched = fetch(&provider, by_id(from, from + 2 * PAGE))
        .await
        .unwrap();
    assert_ids(&fetched, from..from + 2 * PAGE);
    let log = replay.agg_requests();
    assert_eq!((fetched.requests, log.len()), (3, 3));
    assert_eq!(param(&log[0], "fromId"), param(&log[1], "fromId"));
    let waited = log[1].at - log[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}"
    );
}

#[tokio::test]
async fn rate_limits_that_last_become_rate_limited() {
    let (replay, provider) = start().await;
    replay.server().inject_next(4, rate_limited(0));
    let from = first_id_at(SYMBOL, DAY);
    let error = fetch(&provider, by_id(from, from + 10)).await.unwrap_err();
    assert!(matches!(error, ProviderError::RateLimited(_)), "{error}");
    assert!(error.to_string().contains("4 attempts"), "{error}");
    assert_eq!(replay.agg_requests().len(), 4);
}

#[tokio::test]
async fn a_restricted_location_is_no_permission_naming_the_way_out() {
    let (replay, provider) = start().await;
    replay.server().inject_next(1, restricted_location());
    let error = fetch(&provider, by_time(DAY, DAY + HOUR))
        .await
        .unwrap_err();
    let ProviderError::NoPermission(message) = &error else {
        panic!("expected NoPermission, got {error}");
    };
    assert!(message.contains("region"), "{message}");
    assert!(message.contains("restricted location"), "{message}");
    assert!(message.contains("BINANCE_BASE_URL"), "{message}");
    assert!(!error.is_transient());
    assert_eq!(replay.agg_requests().len(), 1, "a 451 is not retried");
}

#[tokio::test]
async fn server_errors_and_cut_bodies_are_retried() {
    for (fault, n) in [
        (internal_error(503), 2),
        (internal_error(500), 1),
        (Fault::ShortBody, 1),
        (Fault::CutJson, 2),
        (Fault::Reset, 1),
    ] {
        let (replay, provider) = start().await;
        let described = format!("{fault:?}");
        replay.server().inject_next(n, fault);
        let from = first_id_at(SYMBOL, DAY);
        let fetched = fetch(&provider, by_id(from, from + 1500)).await.unwrap();
        assert_eq!(
            ids(&fetched),
            (from..from + 1500).collect::<Vec<_>>(),
            "{described}"
        );
        assert_eq!(fetched.requests as usize, 2 + n, "{described}");
        assert_eq!(replay.agg_requests().len(), 2 + n, "{described}");
    }
}

#[tokio::test]
async fn server_errors_that_last_become_unavailable() {
    let (replay, provider) = start().await;
    replay.server().inject_next(4, internal_error(502));
    let from = first_id_at(SYMBOL, DAY);
    let error = fetch(&provider, by_id(from, from + 10)).await.unwrap_err();
    assert!(matches!(error, ProviderError::Unavailable(_)), "{error}");
    assert!(error.to_string().contains("HTTP 502"), "{error}");
    assert_eq!(replay.agg_requests().len(), 4);
}

#[tokio::test]
async fn a_bad_request_is_a_protocol_error_with_binances_code() {
    let (replay, provider) = start().await;
    let error = tokio::time::timeout(
        Duration::from_secs(30),
        provider.agg_trades("btc-usdt", by_id(0, 10)),
    )
    .await
    .unwrap()
    .unwrap_err();
    let ProviderError::Protocol(message) = &error else {
        panic!("expected Protocol, got {error}");
    };
    assert!(message.contains("(code -11"), "{message}");
    assert_eq!(replay.agg_requests().len(), 1);
}

#[tokio::test]
async fn the_recorded_page_is_fetched_by_from_id() {
    let (replay, provider) = start().await;
    let fetched = fetch(&provider, by_id(966_492_862, 966_492_872))
        .await
        .unwrap();
    let recorded = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/binance/spot-aggtrades-BTCUSDT-mainnet-10.json"),
    )
    .unwrap();
    let expected = cachefill_core::providers::binance::parse::agg_trades(&recorded).unwrap();
    assert_eq!(fetched.trades, expected);
    assert_eq!(fetched.trades[0].time, 1_634_944_096_633);
    assert_eq!(fetched.trades[0].price, 60_759.6);
    assert_eq!(fetched.next_id, Some(966_492_872));
    assert_eq!(fetched.requests, 1);
    assert_eq!(replay.agg_requests().len(), 1);
}

#[tokio::test]
async fn a_day_not_over_yet_ends_at_the_latest_trade() {
    let (replay, provider) = start().await;
    let now = DAY + 6 * HOUR + 1_234;
    replay.set_now(now);
    let clock = FixedClock::new(chrono::Utc.timestamp_millis_opt(now).unwrap());
    let provider = provider.with_clock(Arc::new(clock));
    let fetched = fetch(&provider, by_time(DAY, DAY + 24 * HOUR))
        .await
        .unwrap();
    let first = first_id_at(SYMBOL, DAY);
    let latest = first_id_at(SYMBOL, now + 1) - 1;
    assert_ids(&fetched, first..=latest);
    assert_eq!(fetched.next_id, None);
    // The day's first hour, the latest trade, then the pages: no lookup of a future hour.
    let pages = (latest + 1 - first + PAGE - 1) / PAGE;
    assert_eq!(fetched.requests as i64, 2 + pages);
    assert_eq!(replay.agg_requests().len() as i64, 2 + pages);
}

#[tokio::test]
async fn a_span_starting_after_the_latest_trade_is_empty() {
    let (replay, provider) = start().await;
    let now = DAY + HOUR;
    replay.set_now(now);
    let fetched = fetch(&provider, by_time(now + 10 * HOUR, now + 30 * HOUR))
        .await
        .unwrap();
    assert_eq!(fetched.trades, []);
    assert_eq!(fetched.next_id, None);
    // The empty hour, then the latest trade, which is earlier: no stepping on.
    assert_eq!(fetched.requests, 2);
    assert_eq!(replay.agg_requests().len(), 2);
}

#[tokio::test]
async fn empty_hours_are_stepped_over() {
    let (replay, provider) = start().await;
    // Nothing trades from 01:00 to 04:00.
    let quiet_from = first_id_at(SYMBOL, DAY + HOUR);
    let quiet_until = first_id_at(SYMBOL, DAY + 4 * HOUR);
    replay.drop_ids(SYMBOL, quiet_from..=quiet_until - 1);
    let fetched = fetch(&provider, by_time(DAY + HOUR, DAY + 5 * HOUR))
        .await
        .unwrap();
    let until = first_id_at(SYMBOL, DAY + 5 * HOUR);
    assert_ids(&fetched, quiet_until..until);
    assert_eq!(fetched.next_id, Some(until));
    let starts: Vec<i64> = replay
        .agg_requests()
        .iter()
        .filter_map(|r| param(r, "startTime")?.parse().ok())
        .collect();
    let hours: Vec<i64> = (1..=5).map(|h| DAY + h * HOUR).collect();
    assert_eq!(
        starts, hours,
        "01:00, 02:00, 03:00 empty; 04:00 found; 05:00 the end"
    );
}
