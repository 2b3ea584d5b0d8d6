//! The stand-in Binance API answers `GET /api/v3/aggTrades` as Binance documents it: the
//! generated trades, the recorded responses byte for byte, the request-weight budget with
//! its 429 and 418, the id gaps and overlapping pages tests ask for, and injected faults.

use std::time::Duration;

use cachefill_testing::binance::{
    self, AGG_TRADES_PATH, BinanceReplay, DEFAULT_LIMIT, REQUEST_WEIGHT, USED_WEIGHT_HEADER,
    first_id_at, generated_trade,
};
use cachefill_testing::fixtures;
use cachefill_testing::thetadata::Fault;
use serde_json::Value;

/// 2024-01-01T00:00:00Z.
const JAN_1_2024: i64 = 1_704_067_200_000;
const HOUR: i64 = 3_600_000;

struct Answer {
    status: u16,
    used_weight: Option<u32>,
    retry_after: Option<u64>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    fn ids(&self) -> Vec<i64> {
        self.json()
            .as_array()
            .expect("an array of trades")
            .iter()
            .map(|t| t["a"].as_i64().expect("an id"))
            .collect()
    }

    fn error(&self) -> (i64, String) {
        let body = self.json();
        (
            body["code"].as_i64().expect("a code"),
            body["msg"].as_str().expect("a msg").to_string(),
        )
    }
}

async fn get(replay: &BinanceReplay, query: &str) -> Answer {
    let url = format!("{}{AGG_TRADES_PATH}?{query}", replay.base_url());
    let response = tokio::time::timeout(Duration::from_secs(10), reqwest::get(&url))
        .await
        .expect("an answer within 10 s")
        .expect("an HTTP answer");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    };
    let (used_weight, retry_after) = (header(USED_WEIGHT_HEADER), header("retry-after"));
    Answer {
        status: response.status().as_u16(),
        used_weight: used_weight.map(|w: u64| w as u32),
        retry_after,
        body: response.bytes().await.expect("a body").to_vec(),
    }
}

async fn replay_at(now: i64) -> BinanceReplay {
    let replay = BinanceReplay::start()
        .await
        .expect("the Binance replay starts");
    replay.set_now(now);
    replay
}

#[tokio::test]
async fn from_id_pages_are_the_generated_trades_in_binances_shape() {
    let replay = replay_at(JAN_1_2024 + 24 * HOUR).await;
    let first = first_id_at("BTCUSDT", JAN_1_2024);
    let page = get(
        &replay,
        &format!("symbol=BTCUSDT&fromId={first}&limit=1000"),
    )
    .await;
    assert_eq!(page.status, 200);
    assert_eq!(page.used_weight, Some(REQUEST_WEIGHT));
    let trades = page.json();
    let trades = trades.as_array().expect("an array");
    assert_eq!(trades.len(), 1000);
    let mut previous_time = i64::MIN;
    for (k, trade) in trades.iter().enumerate() {
        let expected = generated_trade("BTCUSDT", first + k as i64);
        assert_eq!(trade["a"], expected.id);
        assert_eq!(trade["p"], expected.price.as_str());
        assert_eq!(trade["q"], expected.qty.as_str());
        assert_eq!(trade["f"], expected.first_trade_id);
        assert_eq!(trade["l"], expected.last_trade_id);
        assert_eq!(trade["T"], expected.time_ms);
        assert_eq!(trade["m"], expected.buyer_is_maker);
        assert_eq!(trade["M"], expected.best_match);
        assert!(expected.time_ms > previous_time);
        previous_time = expected.time_ms;
        for decimal in [&expected.price, &expected.qty] {
            let (_, decimals) = decimal.split_once('.').expect("a decimal point");
            assert_eq!(decimals.len(), 8, "{decimal}");
        }
    }
    // About 6,000 trades an hour: 1,000 trades span about ten minutes.
    let span = previous_time - trades[0]["T"].as_i64().unwrap();
    assert!((590_000..610_000).contains(&span), "{span}");
    // The next page carries on where this one ended; no limit means 500.
    let next = get(&replay, &format!("symbol=BTCUSDT&fromId={}", first + 1000)).await;
    assert_eq!(
        next.ids(),
        (first + 1000..first + 1000 + DEFAULT_LIMIT as i64).collect::<Vec<_>>()
    );
    assert_eq!(next.used_weight, Some(2 * REQUEST_WEIGHT));
    // Each symbol trades on its own.
    let other = get(&replay, &format!("symbol=ETHUSDT&fromId={first}&limit=3")).await;
    assert_eq!(
        other.json()[0]["T"],
        generated_trade("ETHUSDT", first).time_ms
    );
    assert_ne!(other.json()[0], trades[0]);
}

#[tokio::test]
async fn start_time_starts_at_first_id_at_and_end_time_bounds_the_page() {
    let replay = replay_at(JAN_1_2024 + 24 * HOUR).await;
    let start = JAN_1_2024 + 12_345;
    let end = start + 60_000;
    let page = get(
        &replay,
        &format!("symbol=BTCUSDT&startTime={start}&endTime={end}&limit=1000"),
    )
    .await;
    let first = first_id_at("BTCUSDT", start);
    assert!(generated_trade("BTCUSDT", first - 1).time_ms < start);
    let expected: Vec<i64> = (first..first_id_at("BTCUSDT", end + 1)).collect();
    assert!((95..=105).contains(&expected.len()), "{}", expected.len());
    assert_eq!(page.ids(), expected);
    // Both bounds are inclusive: a window of one trade's own millisecond returns it.
    let t = generated_trade("BTCUSDT", first).time_ms;
    let exact = get(
        &replay,
        &format!("symbol=BTCUSDT&startTime={t}&endTime={t}"),
    )
    .await;
    assert_eq!(exact.ids(), [first]);
    // fromId with endTime: from the id, up to the end.
    let bounded = get(
        &replay,
        &format!("symbol=BTCUSDT&fromId={first}&endTime={t}"),
    )
    .await;
    assert_eq!(bounded.ids(), [first]);
}

#[tokio::test]
async fn start_and_end_time_must_be_less_than_an_hour_apart() {
    let replay = replay_at(JAN_1_2024 + 24 * HOUR).await;
    let start = JAN_1_2024;
    let too_far = get(
        &replay,
        &format!("symbol=BTCUSDT&startTime={start}&endTime={}", start + HOUR),
    )
    .await;
    assert_eq!(too_far.status, 400);
    assert_eq!(
        too_far.error(),
        (
            -1127,
            "More than 1 hours between startTime and endTime.".into()
        )
    );
    let just_under = get(
        &replay,
        &format!(
            "symbol=BTCUSDT&startTime={start}&endTime={}&limit=1000",
            start + HOUR - 1
        ),
    )
    .await;
    assert_eq!(just_under.status, 200);
    assert_eq!(just_under.ids().len(), 1000);
}

#[tokio::test]
async fn limit_and_symbol_are_checked_as_binance_checks_them() {
    let replay = replay_at(JAN_1_2024 + 24 * HOUR).await;
    let from = first_id_at("BTCUSDT", JAN_1_2024);
    for limit in ["0", "1001", "ten", "-5"] {
        let answer = get(
            &replay,
            &format!("symbol=BTCUSDT&fromId={from}&limit={limit}"),
        )
        .await;
        assert_eq!(answer.status, 400, "limit={limit}");
        assert_eq!(answer.error().0, -1100, "limit={limit}");
    }
    let one = get(&replay, &format!("symbol=BTCUSDT&fromId={from}&limit=1")).await;
    assert_eq!(one.ids(), [from]);
    for symbol in ["btcusdt", "B", "BTC-USDT", "ABCDEFGHIJKLMNOPQRSTU"] {
        let answer = get(&replay, &format!("symbol={symbol}")).await;
        assert_eq!(answer.status, 400, "symbol={symbol}");
        assert_eq!(answer.error(), (-1121, "Invalid symbol.".into()));
    }
    for query in ["fromId=1", "symbol="] {
        let answer = get(&replay, query).await;
        assert_eq!(answer.status, 400, "{query}");
        assert_eq!(
            answer.error(),
            (
                -1102,
                "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.".into()
            )
        );
    }
    let bad_id = get(&replay, "symbol=BTCUSDT&fromId=12x").await;
    assert_eq!(bad_id.error().0, -1100);
    // Refused requests still weigh.
    assert_eq!(bad_id.used_weight, Some(12 * REQUEST_WEIGHT));
}

#[tokio::test]
async fn nothing_after_now_is_served_and_no_bounds_mean_the_latest_trades() {
    let now = JAN_1_2024 + 5 * HOUR + 777;
    let replay = replay_at(now).await;
    let last = first_id_at("BTCUSDT", now + 1) - 1;
    assert!(generated_trade("BTCUSDT", last).time_ms <= now);
    let tail = get(
        &replay,
        &format!("symbol=BTCUSDT&fromId={}&limit=1000", last - 9),
    )
    .await;
    assert_eq!(tail.ids(), (last - 9..=last).collect::<Vec<_>>());
    let future = get(&replay, &format!("symbol=BTCUSDT&fromId={}", last + 1)).await;
    assert_eq!((future.status, future.ids()), (200, vec![]));
    let latest = get(&replay, "symbol=BTCUSDT&limit=20").await;
    assert_eq!(latest.ids(), (last - 19..=last).collect::<Vec<_>>());
    // endTime alone: the latest trades up to it.
    let end = now - HOUR;
    let before = get(&replay, &format!("symbol=BTCUSDT&endTime={end}&limit=5")).await;
    let last_before = first_id_at("BTCUSDT", end + 1) - 1;
    assert_eq!(
        before.ids(),
        (last_before - 4..=last_before).collect::<Vec<_>>()
    );
    // Moving "now" forward releases the trades in between.
    replay.set_now(now + 60_000);
    let later = get(&replay, &format!("symbol=BTCUSDT&fromId={}", last + 1)).await;
    assert_eq!(
        later.ids(),
        (last + 1..first_id_at("BTCUSDT", now + 60_001)).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_recorded_response_is_served_byte_for_byte() {
    let file = fixtures::dir("binance")
        .expect("fixtures")
        .join("spot-aggtrades-BTCUSDT-mainnet-10.json");
    let recorded = std::fs::read(&file).expect("the recording");
    let replay = BinanceReplay::start().await.expect("replay");
    for query in [
        "symbol=BTCUSDT&fromId=966492862&limit=10",
        "symbol=BTCUSDT&fromId=966492862",
        "symbol=BTCUSDT&fromId=966492862&limit=1000&endTime=1634944098216",
    ] {
        let answer = get(&replay, query).await;
        assert_eq!(answer.status, 200, "{query}");
        assert_eq!(answer.body, recorded, "{query}");
    }
    // A page shorter than the recording, or ending before it, is not the recording.
    for query in [
        "symbol=BTCUSDT&fromId=966492862&limit=9",
        "symbol=BTCUSDT&fromId=966492862&endTime=1634944098215",
        "symbol=ETHUSDT&fromId=966492862",
    ] {
        let answer = get(&replay, query).await;
        assert_eq!(answer.status, 200, "{query}");
        assert_ne!(answer.body, recorded, "{query}");
    }
}

#[tokio::test]
async fn weight_is_reported_and_spending_it_gets_a_429_then_a_418() {
    let replay = replay_at(JAN_1_2024 + 24 * HOUR).await;
    let query = format!(
        "symbol=BTCUSDT&fromId={}&limit=5",
        first_id_at("BTCUSDT", JAN_1_2024)
    );
    replay.set_weight_budget(3 * REQUEST_WEIGHT, Duration::from_secs(3));
    for k in 1..=3 {
        let answer = get(&replay, &query).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.used_weight, Some(k * REQUEST_WEIGHT));
    }
    let limited = get(&replay, &query).await;
    assert_eq!(limited.status, 429);
    let retry_after = limited.retry_after.expect("a Retry-After");
    assert!((1..=3).contains(&retry_after), "{retry_after}");
    assert_eq!(
        limited.error(),
        (
            -1003,
            "Too many requests; current limit of IP(127.0.0.1) request weight is 12 per 3 SECOND."
                .into()
        )
    );
    assert_eq!(limited.used_weight, Some(3 * REQUEST_WEIGHT));
    // Coming back before Retry-After has elapsed is what gets an IP banned.
    let banned = get(&replay, &query).await;
    assert_eq!(banned.status, 418);
    assert!(banned.retry_after.is_some_and(|s| (1..=3).contains(&s)));
    assert_eq!(banned.error().0, -1003);
    assert_eq!(replay.banned(), 1);
    assert_eq!(replay.max_used_weight(), 3 * REQUEST_WEIGHT);
    // After Retry-After a new window starts; the refused requests weighed nothing.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let again = get(&replay, &query).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.used_weight, Some(REQUEST_WEIGHT));
    assert_eq!(replay.agg_requests().len(), 6);
}

#[tokio::test]
async fn dropped_ids_leave_a_gap_and_overlapping_pages_repeat_trades() {
    let replay = replay_at(JAN_1_2024 + 24 * HOUR).await;
    let x = first_id_at("BTCUSDT", JAN_1_2024);
    replay.drop_ids("BTCUSDT", x + 10..=x + 19);
    let page = get(&replay, &format!("symbol=BTCUSDT&fromId={x}&limit=30")).await;
    let expected: Vec<i64> = (x..x + 10).chain(x + 20..x + 40).collect();
    assert_eq!(page.ids(), expected);
    let inside = get(
        &replay,
        &format!("symbol=BTCUSDT&fromId={}&limit=3", x + 12),
    )
    .await;
    assert_eq!(inside.ids(), [x + 20, x + 21, x + 22]);
    let other = get(&replay, &format!("symbol=ETHUSDT&fromId={x}&limit=30")).await;
    assert_eq!(other.ids(), (x..x + 30).collect::<Vec<_>>());

    replay.overlap_pages(5);
    let overlapped = get(
        &replay,
        &format!("symbol=BTCUSDT&fromId={}&limit=10", x + 40),
    )
    .await;
    assert_eq!(overlapped.ids(), (x + 35..x + 45).collect::<Vec<_>>());
    // Only fromId pages overlap.
    let t = generated_trade("BTCUSDT", x + 40).time_ms;
    let by_time = get(&replay, &format!("symbol=BTCUSDT&startTime={t}&limit=2")).await;
    assert_eq!(by_time.ids(), [x + 40, x + 41]);
}

#[tokio::test]
async fn injected_faults_answer_the_aggtrades_route_and_are_logged() {
    let replay = replay_at(JAN_1_2024 + 24 * HOUR).await;
    let query = format!(
        "symbol=BTCUSDT&fromId={}&limit=50",
        first_id_at("BTCUSDT", JAN_1_2024)
    );
    let server = replay.server();

    server.inject_next(1, binance::rate_limited(7));
    let limited = get(&replay, &query).await;
    assert_eq!((limited.status, limited.retry_after), (429, Some(7)));
    assert_eq!(limited.error().0, -1003);

    server.inject_next(1, binance::ip_banned(120));
    let banned = get(&replay, &query).await;
    assert_eq!((banned.status, banned.retry_after), (418, Some(120)));

    server.inject_next(1, binance::restricted_location());
    let restricted = get(&replay, &query).await;
    assert_eq!(restricted.status, 451);
    assert_eq!(
        restricted.error(),
        (
            0,
            "Service unavailable from a restricted location according to 'b. Eligibility' in https://www.binance.com/en/terms. Please contact customer service if you believe you received this message in error."
                .into()
        )
    );

    for status in [500, 503] {
        server.inject_next(1, binance::internal_error(status));
        let failed = get(&replay, &query).await;
        assert_eq!((failed.status, failed.error().0), (status, -1001));
    }
    server.inject_next(1, Fault::status_retry_after(503, "busy", "2"));
    let busy = get(&replay, &query).await;
    assert_eq!((busy.status, busy.retry_after), (503, Some(2)));

    server.inject_next(1, Fault::CutJson);
    let cut = get(&replay, &query).await;
    assert_eq!(cut.status, 200);
    assert!(serde_json::from_slice::<Value>(&cut.body).is_err());

    let url = format!("{}{AGG_TRADES_PATH}?{query}", replay.base_url());
    for fault in [Fault::ShortBody, Fault::Reset] {
        server.inject_next(1, fault.clone());
        let outcome = tokio::time::timeout(Duration::from_secs(10), async {
            reqwest::get(&url).await?.bytes().await
        })
        .await
        .expect("an outcome within 10 s");
        assert!(outcome.is_err(), "{fault:?} must fail the transfer");
    }

    let whole = get(&replay, &query).await;
    assert_eq!(whole.ids().len(), 50);
    assert_eq!(replay.agg_requests().len(), 10);
    assert!(
        replay
            .agg_requests()
            .iter()
            .all(|r| r.raw_param("symbol") == Some("BTCUSDT"))
    );
}
