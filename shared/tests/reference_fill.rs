//! Corporate events and option chains filled through the fill engine (the miss-handler's
//! logic) with the ThetaData provider against the replay server: lumibot's files in the
//! bucket, and exactly which requests the terminal sees.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cachefill_core::clock::FixedClock;
use cachefill_core::codec;
use cachefill_core::dataset::{AssetType, Dataset, Provider};
use cachefill_core::fill::{EngineConfig, FillEngine, FillRequest, FillStatus, MissRequest};
use cachefill_core::keys::KeyLayout;
use cachefill_core::providers::thetadata::{RetryPolicy, ThetaDataConfig, ThetaDataProvider};
use cachefill_core::reference::chain;
use cachefill_core::reference::events::{self, EventSet, EventType};
use cachefill_core::reference::{ChainRequest, ChainSet, EventsRequest};
use cachefill_core::storage::ObjectStore;
use cachefill_core::storage::local::LocalStore;
use cachefill_testing::thetadata::{Query, ReplayServer, Reply};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};

const SPLITS: &str = "/v2/hist/stock/split";
const DIVIDENDS: &str = "/v2/hist/stock/dividend";
const STRIKES: &str = "/v3/option/list/strikes";
const EXPIRATIONS: &str = "/v3/option/list/expirations";

fn d(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 17, 0, 0).unwrap()
}

struct Harness {
    server: ReplayServer,
    clock: Arc<FixedClock>,
    engine: FillEngine<LocalStore, Arc<ThetaDataProvider>>,
    _dir: tempfile::TempDir,
}

async fn harness() -> Harness {
    let server = ReplayServer::thetadata().await.unwrap();
    let provider = ThetaDataProvider::new(ThetaDataConfig {
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            max_retry_after: Duration::from_secs(1),
        },
        ..ThetaDataConfig::new(&format!("{}/v3", server.base_url()))
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path().join("bucket")).unwrap();
    let clock = Arc::new(FixedClock::new(now()));
    let engine = FillEngine::new(
        store,
        Arc::new(provider),
        EngineConfig::new("b", KeyLayout::new("", "v1")),
    )
    .with_clock(clock.clone());
    Harness {
        server,
        clock,
        engine,
        _dir: dir,
    }
}

fn query_date(q: &Query, name: &str) -> NaiveDate {
    NaiveDate::parse_from_str(&q[name], "%Y%m%d").unwrap()
}

/// A v2 split history as the terminal answers it: each split repeated on the trading days
/// after it, only the rows inside the asked window.
fn serve_splits(server: &ReplayServer, splits: &'static [(&'static str, u32, u32)]) {
    server.respond_with(SPLITS, move |q| {
        let (from, to) = (query_date(q, "start_date"), query_date(q, "end_date"));
        let rows: Vec<String> = splits
            .iter()
            .flat_map(|(date, before, after)| {
                let day = d(date);
                [day, day + chrono::Duration::days(1)]
                    .into_iter()
                    .filter(move |t| *t >= from && *t <= to)
                    .map(move |t| {
                        format!(
                            "[0,{},{before},{after},{}]",
                            day.format("%Y%m%d"),
                            t.format("%Y%m%d")
                        )
                    })
            })
            .collect();
        if rows.is_empty() {
            return Some(Reply::no_data());
        }
        Some(Reply::json(format!(
            r#"{{"header":{{"format":["ms_of_day","split_date","before_shares","after_shares","date"]}},"response":[{}]}}"#,
            rows.join(",")
        )))
    });
}

fn serve_dividends(server: &ReplayServer, dividends: &'static [(&'static str, f64)]) {
    server.respond_with(DIVIDENDS, move |q| {
        let (from, to) = (query_date(q, "start_date"), query_date(q, "end_date"));
        let rows: Vec<String> = dividends
            .iter()
            .filter(|(date, _)| d(date) >= from && d(date) <= to)
            .map(|(date, amount)| {
                let day = d(date).format("%Y%m%d").to_string();
                format!("[0,{day},{day},{day},{day},{amount},0,0,{day}]")
            })
            .collect();
        if rows.is_empty() {
            return Some(Reply::no_data());
        }
        Some(Reply::json(format!(
            r#"{{"header":{{"format":["ms_of_day","ex_date","record_date","payment_date","ann_date","dividend_amount","undefined","less_amount","date"]}},"response":[{}]}}"#,
            rows.join(",")
        )))
    });
}

fn events_request(symbol: &str, event_type: EventType, start: &str, end: &str) -> EventsRequest {
    let set = EventSet::new(Provider::ThetaData, AssetType::Stock, symbol, event_type).unwrap();
    EventsRequest::new(set, d(start), d(end)).unwrap()
}

async fn get(h: &Harness, key: &str) -> Option<Bytes> {
    h.engine.store().get(key, None).await.ok().map(|g| g.bytes)
}

#[tokio::test]
async fn splits_land_in_lumibots_files_and_a_later_day_asks_only_the_days_since() {
    let h = harness().await;
    serve_splits(&h.server, &[("2020-08-31", 1, 4), ("2014-06-09", 1, 7)]);
    let request = events_request("AAPL", EventType::Splits, "2020-01-01", "2026-01-15");
    let answer = h.engine.fill_events(&request).await.unwrap();
    assert_eq!(answer.status, FillStatus::Filled);
    assert_eq!(
        answer.key,
        "v1/thetadata/stock/events/splits/AAPL_splits.parquet"
    );
    assert_eq!(answer.rows, 1, "2014's split is outside the padded window");
    assert_eq!(answer.upstream_requests, 1);
    let asked = h.server.requests();
    assert_eq!(asked.len(), 1);
    assert_eq!(
        query_date(&asked[0].query, "start_date"),
        d("2019-11-02"),
        "60 days before"
    );
    assert_eq!(
        query_date(&asked[0].query, "end_date"),
        d("2026-03-16"),
        "60 days after"
    );

    let parquet = get(&h, &answer.key).await.unwrap();
    let decoded = codec::decode(parquet).unwrap();
    let schema = decoded.batch.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["event_date", "ratio", "symbol"]);
    let found = events::from_batch(EventType::Splits, &decoded.batch).unwrap();
    assert_eq!(found, vec![events::Event::on(d("2020-08-31"), 4.0)]);
    let ranges = get(&h, "v1/thetadata/stock/events/splits/AAPL_splits.meta.json")
        .await
        .unwrap();
    assert_eq!(
        std::str::from_utf8(&ranges).unwrap(),
        r#"{"ranges": [["2019-11-02", "2026-01-15"]]}"#,
        "recorded up to today"
    );

    // The same range again: a hit without a request.
    h.server.reset_log();
    let again = h.engine.fill_events(&request).await.unwrap();
    assert_eq!(again.status, FillStatus::Hit);
    assert!(h.server.requests().is_empty());

    // The next day, asked through the new today: one small request for the day since.
    h.clock.set(now() + chrono::Duration::days(1));
    let next = events_request("AAPL", EventType::Splits, "2020-01-01", "2026-01-16");
    let answer = h.engine.fill_events(&next).await.unwrap();
    assert_eq!(answer.upstream_requests, 1);
    let asked = h.server.requests();
    assert_eq!(query_date(&asked[0].query, "start_date"), d("2025-11-17"));
    assert_eq!(query_date(&asked[0].query, "end_date"), d("2026-03-17"));
    let ranges = get(&h, "v1/thetadata/stock/events/splits/AAPL_splits.meta.json")
        .await
        .unwrap();
    assert_eq!(
        std::str::from_utf8(&ranges).unwrap(),
        r#"{"ranges": [["2019-11-02", "2026-01-16"]]}"#,
        "merged, never shrunk"
    );
    assert_eq!(answer.rows, 1, "no duplicate of the split already there");
}

#[tokio::test]
async fn a_symbol_without_events_gets_its_ranges_and_no_parquet_as_lumibot_writes() {
    let h = harness().await;
    serve_dividends(&h.server, &[]);
    let request = events_request("TSLA", EventType::Dividends, "2024-01-01", "2024-12-31");
    let answer = h.engine.fill_events(&request).await.unwrap();
    assert_eq!(answer.status, FillStatus::NoData);
    assert!(get(&h, &answer.key).await.is_none(), "no parquet");
    let ranges = get(
        &h,
        "v1/thetadata/stock/events/dividends/TSLA_dividends.meta.json",
    )
    .await
    .unwrap();
    assert_eq!(
        std::str::from_utf8(&ranges).unwrap(),
        r#"{"ranges": [["2023-11-02", "2025-03-01"]]}"#
    );
    h.server.reset_log();
    assert_eq!(
        h.engine.fill_events(&request).await.unwrap().status,
        FillStatus::NoData
    );
    assert!(h.server.requests().is_empty(), "covered: no request");
}

#[tokio::test]
async fn dividends_keep_lumibots_columns() {
    let h = harness().await;
    serve_dividends(&h.server, &[("2024-05-10", 0.25), ("2024-08-12", 0.25)]);
    let request = events_request("AAPL", EventType::Dividends, "2024-01-01", "2024-12-31");
    let answer = h.engine.fill_events(&request).await.unwrap();
    assert_eq!(answer.rows, 2);
    assert_eq!(answer.min.as_deref(), Some("2024-05-10T00:00:00+00:00"));
    let decoded = codec::decode(get(&h, &answer.key).await.unwrap()).unwrap();
    let schema = decoded.batch.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "event_date",
            "cash_amount",
            "record_date",
            "pay_date",
            "symbol"
        ]
    );
    assert_eq!(
        schema.field(0).data_type(),
        &arrow_schema::DataType::Timestamp(arrow_schema::TimeUnit::Nanosecond, Some("UTC".into()))
    );
}

const AAPL_DAY: &str = r#"{"provider":"thetadata","asset_type":"stock","symbol":"AAPL","timespan":"day","datastyle":"ohlc"}"#;

/// Day bars take their splits and dividends from the events files: one request of each
/// kind for the fill, none for an events request the fill already covered.
#[tokio::test]
async fn the_day_bar_fill_uses_the_events_files() {
    let h = harness().await;
    h.server.register(
        "/v3/stock/history/eod",
        &[
            ("symbol", "AAPL"),
            ("start_date", "20240102"),
            ("end_date", "20240110"),
            ("format", "json"),
        ],
        Reply::json(
            cachefill_testing::thetadata::Exchange::load(
                &cachefill_testing::fixtures::root()
                    .unwrap()
                    .join("thetadata-v3/stock-history-eod.json"),
            )
            .unwrap()
            .reply
            .body,
        ),
    );
    serve_splits(&h.server, &[("2024-01-08", 1, 2)]);
    serve_dividends(&h.server, &[("2024-01-05", 0.5)]);
    let request = FillRequest::new(
        Dataset::from_json(AAPL_DAY).unwrap(),
        d("2024-01-02"),
        d("2024-01-10"),
        true,
    )
    .unwrap();
    let answer = h.engine.fill(&request).await.unwrap();
    assert_eq!(answer.status, FillStatus::Filled);
    assert_eq!(h.server.count(SPLITS), 1, "one split lookup in the fill");
    assert_eq!(
        h.server.count(DIVIDENDS),
        1,
        "one dividend lookup in the fill"
    );
    assert!(
        get(&h, "v1/thetadata/stock/events/splits/AAPL_splits.parquet")
            .await
            .is_some()
    );
    h.server.reset_log();
    for event_type in EventType::ALL {
        let events = events_request("AAPL", event_type, "2024-01-02", "2026-01-15");
        let answer = h.engine.fill_events(&events).await.unwrap();
        assert_eq!(answer.status, FillStatus::Hit, "{event_type}");
        assert_eq!(answer.rows, 1);
    }
    assert!(h.server.requests().is_empty());
}

/// Strikes of an expiration as the v3 terminal lists them: 20 around 500, in dollars.
fn serve_strikes(server: &ReplayServer) {
    server.respond_with(STRIKES, |q| {
        let symbol = q.get("symbol")?.clone();
        let rows: Vec<String> = (0..20)
            .map(|i| format!(r#"{{"symbol":"{symbol}","strike":{}.0}}"#, 490 + i))
            .collect();
        Some(Reply::json(format!(
            r#"{{"response":[{}]}}"#,
            rows.join(",")
        )))
    });
}

fn chain_request(symbol: &str, date: &str) -> ChainRequest {
    ChainRequest {
        set: ChainSet::new(Provider::ThetaData, AssetType::Stock, symbol, d(date)).unwrap(),
    }
}

/// SPY lists 311 expirations from 2024-11-15 to two years out (the recorded listing):
/// every one is in the chain, strikes only for the first and last 14, as lumibot builds it;
/// a chain for a past date is then a hit for good.
#[tokio::test]
async fn a_chain_is_built_as_lumibot_builds_it_and_never_refetched() {
    let h = harness().await;
    serve_strikes(&h.server);
    serve_splits(&h.server, &[]);
    let request = chain_request("SPY", "2024-11-15");
    let answer = h
        .engine
        .fill_any(&MissRequest::Chain(request.clone()))
        .await
        .unwrap();
    assert_eq!(answer.status, FillStatus::Filled);
    assert_eq!(
        answer.key,
        "v1/thetadata/stock/option_chains/SPY_2024-11-15.parquet"
    );
    assert_eq!(h.server.count(EXPIRATIONS), 1);
    assert_eq!(h.server.count(STRIKES), 28, "head and tail 14");
    let decoded = chain::decode(get(&h, &answer.key).await.unwrap()).unwrap();
    let built = decoded.chain;
    assert_eq!(built.version, 5);
    assert_eq!(built.underlying, "SPY");
    assert_eq!(built.calls.len(), 311);
    assert_eq!(built.calls, built.puts);
    let first = built.calls.keys().next().copied().unwrap();
    assert_eq!(first, d("2024-11-15"));
    assert!(*built.calls.keys().next_back().unwrap() <= d("2026-11-15"));
    let with_strikes = built.calls.values().filter(|s| !s.is_empty()).count();
    assert_eq!(with_strikes, 28);
    assert_eq!(built.calls[&first].len(), 20);
    assert!(chain::check(&built).is_empty());

    h.clock.set(now() + chrono::Duration::days(30));
    h.server.reset_log();
    let again = h
        .engine
        .fill_any(&MissRequest::Chain(request))
        .await
        .unwrap();
    assert_eq!(again.status, FillStatus::Hit);
    assert!(h.server.requests().is_empty());
}

/// Strikes are divided by the splits after the chain's date (the underlying's prices are
/// split-adjusted), every one of them, as lumibot 4.6.30's builder ends up doing.
#[tokio::test]
async fn chain_strikes_follow_later_splits_as_lumibot_normalizes_them() {
    let h = harness().await;
    h.server.register(
        EXPIRATIONS,
        &[("symbol", "NVDA"), ("format", "json")],
        Reply::json(
            r#"{"response":[{"symbol":"NVDA","expiration":"2024-05-17"},{"symbol":"NVDA","expiration":"2024-06-21"},{"symbol":"NVDA","expiration":"2023-01-20"}]}"#,
        ),
    );
    h.server.respond_with(STRIKES, |q| {
        let rows = if q.get("expiration").map(String::as_str) == Some("20240621") {
            // Spans the split: some listed pre-split, some post.
            r#"[{"strike":1000.0},{"strike":100.0},{"strike":1100.0}]"#
        } else {
            r#"[{"strike":900.0},{"strike":950.0}]"#
        };
        Some(Reply::json(format!(r#"{{"response":{rows}}}"#)))
    });
    serve_splits(&h.server, &[("2024-06-10", 1, 10)]);
    let answer = h
        .engine
        .fill_chain(&chain_request("NVDA", "2024-05-01"))
        .await
        .unwrap();
    assert_eq!(answer.status, FillStatus::Filled);
    let built = chain::decode(get(&h, &answer.key).await.unwrap())
        .unwrap()
        .chain;
    assert_eq!(built.calls.len(), 2, "2023's expiration is past");
    assert_eq!(built.calls[&d("2024-05-17")], vec![90.0, 95.0]);
    assert_eq!(built.calls[&d("2024-06-21")], vec![10.0, 100.0, 110.0]);
}

#[tokio::test]
async fn a_root_without_expirations_gets_no_chain_file() {
    let h = harness().await;
    h.server.register(
        EXPIRATIONS,
        &[("symbol", "ZZZZ"), ("format", "json")],
        Reply::no_data(),
    );
    let answer = h
        .engine
        .fill_chain(&chain_request("ZZZZ", "2024-11-15"))
        .await
        .unwrap();
    assert_eq!(answer.status, FillStatus::NoData);
    assert!(get(&h, &answer.key).await.is_none());
}

fn list_fixture(name: &str) -> Bytes {
    cachefill_testing::thetadata::Exchange::load(
        &cachefill_testing::fixtures::root()
            .unwrap()
            .join(format!("thetadata-v3-lists/{name}.json")),
    )
    .unwrap()
    .reply
    .body
}

/// The recorded TSLA lists (lumibot's downloader shape, `header.format` rows) and ThetaData's
/// documented strike list (rows of objects, unsorted) build the chain as lumibot reads them.
#[tokio::test]
async fn recorded_list_shapes_build_the_chain() {
    let h = harness().await;
    let expirations = list_fixture("option-list-expirations-TSLA");
    h.server.register(
        EXPIRATIONS,
        &[("symbol", "TSLA"), ("format", "json")],
        Reply::json(expirations),
    );
    let strikes = list_fixture("option-list-strikes-TSLA");
    h.server
        .respond_with(STRIKES, move |_| Some(Reply::json(strikes.clone())));
    serve_splits(&h.server, &[]);
    let answer = h
        .engine
        .fill_chain(&chain_request("TSLA", "2024-11-15"))
        .await
        .unwrap();
    let built = chain::decode(get(&h, &answer.key).await.unwrap())
        .unwrap()
        .chain;
    let first = &built.calls[&d("2024-11-15")];
    assert_eq!(first.len(), 128, "every strike, once");
    assert!(first.windows(2).all(|w| w[0] < w[1]), "ascending");
    assert_eq!((first[0], first[127]), (25.0, 540.0));
    assert!(
        built
            .calls
            .keys()
            .all(|e| *e >= d("2024-11-15") && *e <= d("2026-11-15"))
    );

    let documented = list_fixture("option-list-strikes-AAPL-documented");
    let parsed = cachefill_core::providers::thetadata::normalize::strikes(&documented).unwrap();
    let mut normalized: Vec<f64> = parsed
        .into_iter()
        .filter_map(cachefill_core::providers::thetadata::chains::normalize_strike)
        .collect();
    normalized.sort_by(f64::total_cmp);
    assert_eq!(normalized, vec![80.0, 128.0, 144.0, 160.0, 240.0]);
}
