//! Fills through the fill engine (the miss-handler's logic) with the ThetaData provider
//! against the replay server: what lands in the bucket, and exactly which requests the
//! terminal sees.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type, TimestampNanosecondType};
use bytes::Bytes;
use cachefill_core::calendar;
use cachefill_core::clock::FixedClock;
use cachefill_core::codec::schema::schema_for;
use cachefill_core::codec::{self, BatchFacts, Sidecar};
use cachefill_core::dataset::Dataset;
use cachefill_core::fill::{EngineConfig, FillAnswer, FillEngine, FillRequest, FillStatus};
use cachefill_core::keys::KeyLayout;
use cachefill_core::providers::thetadata::{RetryPolicy, ThetaDataConfig, ThetaDataProvider};
use cachefill_core::providers::{FetchRequest, Provider, ProviderError};
use cachefill_core::settings::ProviderSettings;
use cachefill_core::storage::ObjectStore;
use cachefill_core::storage::local::LocalStore;
use cachefill_testing::thetadata::{Exchange, Query, ReplayServer, Reply};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde_json::{Value, json};

const QUOTE: &str = "/v3/stock/history/quote";
const STOCK_OHLC: &str = "/v3/stock/history/ohlc";
const STOCK_EOD: &str = "/v3/stock/history/eod";
const OPTION_OHLC: &str = "/v3/option/history/ohlc";
const INDEX_OHLC: &str = "/v3/index/history/ohlc";

const AAPL_HOUR_QUOTE: &str = r#"{"provider":"thetadata","asset_type":"stock","symbol":"AAPL","timespan":"hour","datastyle":"quote"}"#;
const AAPL_DAY: &str = r#"{"provider":"thetadata","asset_type":"stock","symbol":"AAPL","timespan":"day","datastyle":"ohlc"}"#;
const AAPL_CALL_HOUR: &str = r#"{"provider":"thetadata","asset_type":"option","symbol":"AAPL","timespan":"hour","datastyle":"ohlc","expiration":"2025-01-03","strike":275,"right":"CALL"}"#;

fn d(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

fn utc(text: &str) -> i64 {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp_nanos_opt()
        .unwrap()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap()
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_retry_after: Duration::from_secs(5),
    }
}

fn provider(server: &ReplayServer, concurrency: usize) -> ThetaDataProvider {
    ThetaDataProvider::new(ThetaDataConfig {
        concurrency,
        retry: fast_retries(),
        ..ThetaDataConfig::new(&format!("{}/v3", server.base_url()))
    })
    .unwrap()
}

struct Bucket {
    engine: FillEngine<LocalStore, Arc<ThetaDataProvider>>,
    _dir: tempfile::TempDir,
}

fn bucket(server: &ReplayServer) -> Bucket {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path().join("bucket")).unwrap();
    let mut config = EngineConfig::new("test-bucket", KeyLayout::new("stage/cache", "v3"));
    config.lease_ttl = Duration::from_secs(30);
    let engine = FillEngine::new(store, Arc::new(provider(server, 4)), config)
        .with_clock(Arc::new(FixedClock::new(now())));
    Bucket { engine, _dir: dir }
}

fn request(json: &str, start: &str, end: &str, after_hours: bool) -> FillRequest {
    FillRequest::new(
        Dataset::from_json(json).unwrap(),
        d(start),
        d(end),
        after_hours,
    )
    .unwrap()
}

fn recorded(name: &str) -> Bytes {
    Exchange::load(
        &cachefill_testing::fixtures::root()
            .unwrap()
            .join(format!("thetadata-v3/{name}.json")),
    )
    .unwrap()
    .reply
    .body
}

/// A recorded body moved to another session (same rows, other date).
fn moved(body: &Bytes, from: NaiveDate, to: NaiveDate) -> Bytes {
    let text = String::from_utf8(body.to_vec()).unwrap();
    Bytes::from(text.replace(&from.to_string(), &to.to_string()))
}

fn query_date(q: &Query, name: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(q.get(name)?, "%Y%m%d").ok()
}

/// The sessions asked for on `path`, in arrival order.
fn dates_requested(server: &ReplayServer, path: &str) -> Vec<NaiveDate> {
    server
        .requests()
        .iter()
        .filter(|r| r.path == path)
        .map(|r| query_date(&r.query, "date").expect("intraday requests name a date"))
        .collect()
}

async fn object(bucket: &Bucket, answer: &FillAnswer) -> (Bytes, RecordBatch, Sidecar) {
    let store = bucket.engine.store();
    let bytes = store.get(&answer.key, None).await.unwrap().bytes;
    let decoded = codec::decode(bytes.clone()).unwrap();
    let sidecar_bytes = store
        .get(&format!("{}.meta.json", answer.key), None)
        .await
        .unwrap()
        .bytes;
    let sidecar = Sidecar::parse(&sidecar_bytes).unwrap();
    (bytes, decoded.batch, sidecar)
}

fn assert_sidecar_matches(bytes: &Bytes, batch: &RecordBatch, sidecar: &Sidecar) {
    let expected = Sidecar::new(
        &BatchFacts::of(batch).unwrap(),
        &codec::sha256_hex(bytes),
        now(),
    );
    assert_eq!(sidecar.disagreements(&expected), Vec::<String>::new());
    assert_eq!(
        sidecar.checksum.as_deref(),
        Some(codec::sha256_hex(bytes).as_str())
    );
    assert_eq!(sidecar.version, 2);
}

fn column_times(batch: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    batch
        .column_by_name(name)
        .unwrap()
        .as_primitive::<TimestampNanosecondType>()
        .iter()
        .collect()
}

fn floats(batch: &RecordBatch, name: &str) -> Vec<Option<f64>> {
    batch
        .column_by_name(name)
        .unwrap()
        .as_primitive::<Float64Type>()
        .iter()
        .collect()
}

fn missing(batch: &RecordBatch) -> Vec<bool> {
    batch
        .column_by_name("missing")
        .unwrap()
        .as_boolean()
        .iter()
        .map(|m| m.unwrap())
        .collect()
}

/// Serve AAPL hourly quotes: the recording on 2024-01-05, the same rows moved to any other
/// session, and `NO_DATA` on the sessions listed.
fn serve_aapl_quotes(server: &ReplayServer, no_data: &'static [&'static str]) {
    let template = recorded("stock-history-quote");
    server.respond_with(QUOTE, move |q| {
        let date = query_date(q, "date")?;
        if no_data.contains(&date.to_string().as_str()) {
            return Some(Reply::no_data());
        }
        if date == d("2024-01-05") {
            return None; // the recording answers
        }
        Some(Reply::json(moved(&template, d("2024-01-05"), date)))
    });
}

#[tokio::test]
async fn fill_writes_the_design_schema_rows_and_sidecar_and_fetches_only_missing_sessions() {
    let server = ReplayServer::thetadata().await.unwrap();
    serve_aapl_quotes(&server, &["2024-01-08"]);
    let bucket = bucket(&server);

    let first = bucket
        .engine
        .fill(&request(AAPL_HOUR_QUOTE, "2024-01-04", "2024-01-08", false))
        .await
        .unwrap();
    assert_eq!(first.status, FillStatus::Filled);
    assert_eq!(
        first.key,
        "stage/cache/v3/thetadata/stock/hour/quote/stock_AAPL_hour_quote.parquet"
    );
    assert_eq!((first.sessions_fetched, first.upstream_requests), (3, 3));
    assert_eq!(
        dates_requested(&server, QUOTE)
            .into_iter()
            .collect::<BTreeSet<_>>(),
        [d("2024-01-04"), d("2024-01-05"), d("2024-01-08")].into()
    );
    assert_eq!(
        server.requests().len(),
        3,
        "one request per session, nothing else"
    );
    // The recorded exchange (no start/end time: the terminal's 09:30–16:00 default) served 01-05.
    let sent = server
        .requests()
        .into_iter()
        .find(|r| r.query.get("date").map(String::as_str) == Some("20240105"))
        .unwrap();
    assert_eq!(
        sent.raw_query,
        [
            ("symbol", "AAPL"),
            ("date", "20240105"),
            ("interval", "1h"),
            ("start_time", "09:30:00"),
            ("end_time", "16:00:00"),
            ("format", "json"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );

    let (bytes, batch, sidecar) = object(&bucket, &first).await;
    assert_eq!(
        batch.schema(),
        schema_for(&Dataset::from_json(AAPL_HOUR_QUOTE).unwrap())
    );
    // Hour bars are stamped at their open, so the last (15:30) stops short of the close:
    // each session with bars gets a 16:00 edge marker for lumibot.
    assert_eq!(
        batch.num_rows(),
        17,
        "7 + 7 quotes, two edge markers and one placeholder"
    );
    let times = column_times(&batch, "datetime");
    assert_eq!(times[0], Some(utc("2024-01-04T14:30:00Z")));
    assert_eq!(times[7], Some(utc("2024-01-04T21:00:00Z")), "edge marker");
    assert_eq!(times[8], Some(utc("2024-01-05T14:30:00Z")));
    assert_eq!(times[14], Some(utc("2024-01-05T20:30:00Z")));
    assert_eq!(times[15], Some(utc("2024-01-05T21:00:00Z")), "edge marker");
    assert_eq!(
        times[16],
        Some(utc("2024-01-08T21:00:00Z")),
        "placeholder at 16:00 New York"
    );
    let bids = floats(&batch, "bid");
    assert_eq!(
        (bids[0], bids[8], bids[14], bids[16]),
        (Some(181.92), Some(181.92), Some(180.27), None)
    );
    let placeholders: Vec<usize> = (0..batch.num_rows())
        .filter(|i| missing(&batch)[*i])
        .collect();
    assert_eq!(placeholders, [7, 15, 16]);
    assert_eq!(
        column_times(&batch, "last_bid_time")[8],
        Some(utc("2024-01-05T14:30:00Z"))
    );
    assert_eq!(
        column_times(&batch, "last_ask_time")[8],
        Some(utc("2024-01-05T14:30:00Z"))
    );
    assert_eq!(column_times(&batch, "last_trade_time")[8], None);
    let sizes = batch
        .column_by_name("ask_size")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(sizes.value(8), 6);
    assert_sidecar_matches(&bytes, &batch, &sidecar);
    assert_eq!((sidecar.rows, sidecar.placeholders), (17, 3));
    assert_eq!(sidecar.min.as_deref(), Some("2024-01-04T14:30:00+00:00"));
    assert_eq!(sidecar.max.as_deref(), Some("2024-01-08T21:00:00+00:00"));

    // A wider range fetches only what is missing: 01-05 and 01-08 (placeholder) are covered,
    // and Martin Luther King Day (01-15) is not a session.
    server.reset_log();
    let second = bucket
        .engine
        .fill(&request(AAPL_HOUR_QUOTE, "2024-01-05", "2024-01-16", false))
        .await
        .unwrap();
    assert_eq!(second.status, FillStatus::Filled);
    let asked = dates_requested(&server, QUOTE);
    assert_eq!(
        asked.iter().copied().collect::<BTreeSet<_>>(),
        [
            "2024-01-09",
            "2024-01-10",
            "2024-01-11",
            "2024-01-12",
            "2024-01-16"
        ]
        .map(d)
        .into()
    );
    assert_eq!(asked.len(), 5, "each missing session exactly once");
    assert_eq!((second.sessions_fetched, second.upstream_requests), (5, 5));
    let (bytes, batch, sidecar) = object(&bucket, &second).await;
    assert_eq!(batch.num_rows(), 17 + 5 * (7 + 1));
    assert_sidecar_matches(&bytes, &batch, &sidecar);

    // Everything covered now: a hit without a single request.
    server.reset_log();
    let third = bucket
        .engine
        .fill(&request(AAPL_HOUR_QUOTE, "2024-01-04", "2024-01-16", false))
        .await
        .unwrap();
    assert_eq!(
        (third.status, third.upstream_requests),
        (FillStatus::Hit, 0)
    );
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn no_data_sessions_become_placeholders_and_holidays_are_never_requested() {
    let server = ReplayServer::empty().await.unwrap();
    serve_aapl_quotes(&server, &["2024-03-27", "2024-04-01"]);
    let bucket = bucket(&server);
    // 2024-03-29 is Good Friday; 03-30/31 a weekend.
    let answer = bucket
        .engine
        .fill(&request(AAPL_HOUR_QUOTE, "2024-03-26", "2024-04-02", true))
        .await
        .unwrap();
    let asked = dates_requested(&server, QUOTE);
    assert_eq!(
        asked,
        calendar::sessions_between(d("2024-03-26"), d("2024-04-02")).unwrap()
    );
    assert!(!asked.contains(&d("2024-03-29")));
    assert_eq!(asked.len(), 5);
    let (_, batch, _) = object(&bucket, &answer).await;
    let times = column_times(&batch, "datetime");
    let placeholders: Vec<i64> = times
        .iter()
        .zip(missing(&batch))
        .filter(|(_, m)| *m)
        .map(|(t, _)| t.unwrap())
        .collect();
    // The two empty sessions, and the 16:00 edge marker of each session whose last hour bar
    // (15:30) stops short of the close.
    assert_eq!(
        placeholders,
        [
            utc("2024-03-26T20:00:00Z"),
            utc("2024-03-27T20:00:00Z"),
            utc("2024-03-28T20:00:00Z"),
            utc("2024-04-01T20:00:00Z"),
            utc("2024-04-02T20:00:00Z")
        ]
    );
    assert_eq!(answer.placeholders, 5);
    assert_eq!(answer.real_rows, 3 * 7);
    // Extended hours were asked for.
    let sent = &server.requests()[0].raw_query;
    assert!(sent.contains(&("start_time".into(), "04:00:00".into())));
    assert!(sent.contains(&("end_time".into(), "20:00:00".into())));
}

#[tokio::test]
async fn recorded_option_bars_fill_an_option_file() {
    let server = ReplayServer::thetadata().await.unwrap();
    let bucket = bucket(&server);
    let answer = bucket
        .engine
        .fill(&request(AAPL_CALL_HOUR, "2024-12-24", "2024-12-24", false))
        .await
        .unwrap();
    assert_eq!(server.count(OPTION_OHLC), 1);
    let requests = server.requests();
    let sent = requests.iter().find(|r| r.path == OPTION_OHLC).unwrap();
    for (name, value) in [
        ("symbol", "AAPL"),
        ("expiration", "20250103"),
        ("strike", "275"),
        ("right", "call"),
        ("date", "20241224"),
        ("interval", "1h"),
    ] {
        assert!(
            sent.raw_query.contains(&(name.into(), value.into())),
            "{name}={value} in {:?}",
            sent.raw_query
        );
    }
    assert_eq!(
        answer.key,
        "stage/cache/v3/thetadata/option/hour/ohlc/option_AAPL_250103_275_CALL_hour_ohlc.parquet"
    );
    let (bytes, batch, sidecar) = object(&bucket, &answer).await;
    assert_eq!(
        batch.schema(),
        schema_for(&Dataset::from_json(AAPL_CALL_HOUR).unwrap())
    );
    assert_eq!(
        batch.num_rows(),
        5,
        "the empty bars after the early close are dropped; 16:00 marks the edge"
    );
    assert!(missing(&batch)[4]);
    assert_eq!(floats(&batch, "open")[0], Some(0.03));
    assert_eq!(
        column_times(&batch, "last_trade_time")[0],
        Some(utc("2024-12-24T14:30:00Z"))
    );
    let symbol = batch.column_by_name("symbol").unwrap().as_string::<i32>();
    let expiration = batch
        .column_by_name("expiration")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(
        (symbol.value(3), expiration.value(3)),
        ("AAPL", "2025-01-03")
    );
    assert_eq!(floats(&batch, "strike")[3], Some(275.0));
    assert_sidecar_matches(&bytes, &batch, &sidecar);
}

/// End-of-day rows for every session from `start_date` to `end_date`.
fn eod_body(q: &Query) -> Option<Reply> {
    let (start, end) = (query_date(q, "start_date")?, query_date(q, "end_date")?);
    let rows: Vec<Value> = calendar::sessions_between(start, end)
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let price = 100.0 + i as f64;
            json!({"created": format!("{s}T17:15:00.123"), "last_trade": format!("{s}T15:59:59.9"),
                   "count": 10, "volume": 1000, "open": price, "high": price + 1.0,
                   "low": price - 1.0, "close": price + 0.5, "bid": price, "ask": price + 0.01})
        })
        .collect();
    Some(Reply::json(
        serde_json::to_vec(&json!({ "response": rows })).unwrap(),
    ))
}

fn windows_requested(server: &ReplayServer) -> Vec<(NaiveDate, NaiveDate)> {
    server
        .requests()
        .iter()
        .filter(|r| r.path == STOCK_EOD)
        .map(|r| {
            (
                query_date(&r.query, "start_date").unwrap(),
                query_date(&r.query, "end_date").unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn end_of_day_fills_use_windows_that_skip_covered_sessions() {
    let server = ReplayServer::thetadata().await.unwrap();
    // The recorded reply (AAPL 2024-01-02..01-10) for the query this provider sends.
    server.register(
        STOCK_EOD,
        &[
            ("symbol", "AAPL"),
            ("start_date", "20240102"),
            ("end_date", "20240110"),
            ("format", "json"),
        ],
        Reply::json(recorded("stock-history-eod")),
    );
    no_corporate_actions(&server);
    let bucket = bucket(&server);
    let first = bucket
        .engine
        .fill(&request(AAPL_DAY, "2024-01-01", "2024-01-10", true))
        .await
        .unwrap();
    assert_eq!(
        windows_requested(&server),
        [(d("2024-01-02"), d("2024-01-10"))]
    );
    assert_eq!(
        first.upstream_requests, 3,
        "the window, splits and dividends"
    );
    let sent = &server.requests()[0].raw_query;
    assert!(
        !sent.iter().any(|(k, _)| k == "adjust"),
        "raw prices: {sent:?}"
    );
    let (bytes, batch, sidecar) = object(&bucket, &first).await;
    assert_eq!(
        batch.schema(),
        schema_for(&Dataset::from_json(AAPL_DAY).unwrap())
    );
    assert_eq!(batch.num_rows(), 7);
    assert_eq!(
        column_times(&batch, "datetime")[0],
        Some(utc("2024-01-02T21:00:00Z"))
    );
    let created = batch.column_by_name("created").unwrap().as_string::<i32>();
    assert_eq!(created.value(0), "2024-01-02T17:17:53.606");
    assert_eq!(floats(&batch, "close")[6], Some(186.19));
    assert_eq!(floats(&batch, "dividend")[0], Some(0.0));
    assert!(
        batch
            .column_by_name("_split_adjusted")
            .unwrap()
            .as_boolean()
            .iter()
            .all(|v| v == Some(true)),
        "lumibot's marker: nothing left to adjust"
    );
    assert_sidecar_matches(&bytes, &batch, &sidecar);

    // Around the covered sessions: two windows, neither spanning 2024-01-02..01-10.
    server.respond_with(STOCK_EOD, eod_body);
    server.reset_log();
    let second = bucket
        .engine
        .fill(&request(AAPL_DAY, "2023-12-20", "2024-01-31", true))
        .await
        .unwrap();
    assert_eq!(
        windows_requested(&server),
        [
            (d("2023-12-20"), d("2023-12-29")),
            (d("2024-01-11"), d("2024-01-31"))
        ]
    );
    assert_eq!(
        second.upstream_requests, 2,
        "the events files from the first fill already cover 2023-12-20 (padded by 60 days)"
    );

    // Two years back: windows of at most 365 days.
    server.reset_log();
    bucket
        .engine
        .fill(&request(AAPL_DAY, "2021-06-01", "2023-12-19", true))
        .await
        .unwrap();
    let windows = windows_requested(&server);
    assert_eq!(windows.len(), 3);
    assert!(windows.iter().all(|(a, b)| (*b - *a).num_days() < 365));
    assert_eq!(windows[0].0, d("2021-06-01"));
    assert_eq!(windows[2].1, d("2023-12-19"));
}

/// What one unit of `dataset` on `session` sends to the terminal.
async fn sent_for(json: &str, session: &str, after_hours: bool) -> (String, Vec<(String, String)>) {
    let server = ReplayServer::empty().await.unwrap();
    let provider = provider(&server, 1);
    let dataset = Dataset::from_json(json).unwrap();
    // Nothing registered: the 404 fails the fetch after one request, which is all we need.
    let _ = provider
        .fetch(FetchRequest {
            dataset: &dataset,
            sessions: &[d(session)],
            include_after_hours: after_hours,
            provider_expiration: None,
        })
        .await;
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    (requests[0].path.clone(), requests[0].raw_query.clone())
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One expected request: dataset payload, session, include_after_hours, path, query.
type RequestCase<'a> = (&'a str, &'a str, bool, &'a str, &'a [(&'a str, &'a str)]);

#[tokio::test]
async fn requests_use_v3_endpoints_and_parameter_names() {
    let cases: [RequestCase; 6] = [
        (
            r#"{"provider":"thetadata","asset_type":"stock","symbol":"spy","timespan":"minute","datastyle":"ohlc"}"#,
            "2024-07-03",
            true,
            STOCK_OHLC,
            &[
                ("symbol", "SPY"),
                ("date", "20240703"),
                ("interval", "1m"),
                ("start_time", "04:00:00"),
                ("end_time", "20:00:00"),
                ("format", "json"),
            ],
        ),
        (
            r#"{"provider":"thetadata","asset_type":"stock","symbol":"MSFT","timespan":"5m","datastyle":"quote"}"#,
            "2024-07-03",
            false,
            QUOTE,
            &[
                ("symbol", "MSFT"),
                ("date", "20240703"),
                ("interval", "5m"),
                ("start_time", "09:30:00"),
                ("end_time", "16:00:00"),
                ("format", "json"),
            ],
        ),
        (
            r#"{"provider":"thetadata","asset_type":"option","symbol":"TSLA","timespan":"minute","datastyle":"quote","expiration":"2024-11-22","strike":412.5,"right":"put"}"#,
            "2024-11-15",
            true,
            "/v3/option/history/quote",
            &[
                ("symbol", "TSLA"),
                ("date", "20241115"),
                ("expiration", "20241122"),
                ("strike", "412.5"),
                ("right", "put"),
                ("interval", "1m"),
                ("start_time", "04:00:00"),
                ("end_time", "20:00:00"),
                ("format", "json"),
            ],
        ),
        (
            r#"{"provider":"thetadata","asset_type":"option","symbol":"SPX","timespan":"hour","datastyle":"ohlc","expiration":"2024-03-14","strike":5000.0,"right":"CALL"}"#,
            "2024-03-13",
            false,
            OPTION_OHLC,
            &[
                ("symbol", "SPXW"),
                ("date", "20240313"),
                ("expiration", "20240314"),
                ("strike", "5000"),
                ("right", "call"),
                ("interval", "1h"),
                ("start_time", "09:30:00"),
                ("end_time", "16:00:00"),
                ("format", "json"),
            ],
        ),
        (
            r#"{"provider":"thetadata","asset_type":"index","symbol":"SPXW","timespan":"15m","datastyle":"ohlc"}"#,
            "2024-03-13",
            true,
            INDEX_OHLC,
            &[
                ("symbol", "SPX"),
                ("start_date", "20240313"),
                ("end_date", "20240313"),
                ("interval", "15m"),
                ("start_time", "04:00:00"),
                ("end_time", "20:00:00"),
                ("format", "json"),
            ],
        ),
        (
            r#"{"provider":"thetadata","asset_type":"option","symbol":"AAPL","timespan":"1D","datastyle":"quote","expiration":"2025-01-17","strike":220,"right":"CALL"}"#,
            "2024-11-01",
            true,
            "/v3/option/history/eod",
            &[
                ("symbol", "AAPL"),
                ("start_date", "20241101"),
                ("end_date", "20241101"),
                ("expiration", "20250117"),
                ("strike", "220"),
                ("right", "call"),
                ("format", "json"),
            ],
        ),
    ];
    for (json, session, after_hours, path, expected) in cases {
        let (sent_path, sent) = sent_for(json, session, after_hours).await;
        assert_eq!(sent_path, path, "{json}");
        assert_eq!(sent, pairs(expected), "{json}");
    }
}

#[tokio::test]
async fn index_bars_are_kept_without_trade_counts() {
    let server = ReplayServer::empty().await.unwrap();
    server.respond_with(INDEX_OHLC, |q| {
        let day = query_date(q, "start_date")?;
        let rows: Vec<Value> = (0..3)
            .map(|i| {
                json!({"timestamp": format!("{day}T09:3{i}:00.000"), "open": 4700.0 + f64::from(i),
                       "high": 4702.0 + f64::from(i), "low": 4699.0, "close": 4701.0,
                       "volume": 0, "count": 0, "vwap": 0.0})
            })
            .collect();
        Some(Reply::json(
            serde_json::to_vec(&json!({ "response": rows })).unwrap(),
        ))
    });
    let bucket = bucket(&server);
    let answer = bucket
        .engine
        .fill(&request(
            r#"{"provider":"thetadata","asset_type":"index","symbol":"SPX","timespan":"minute","datastyle":"ohlc"}"#,
            "2024-01-02",
            "2024-01-03",
            false,
        ))
        .await
        .unwrap();
    assert_eq!(server.count(INDEX_OHLC), 2);
    // Three recorded minutes a session: each session's close gets its edge marker.
    assert_eq!((answer.real_rows, answer.placeholders), (6, 2));
    let (_, batch, _) = object(&bucket, &answer).await;
    assert_eq!(
        column_times(&batch, "datetime")[0],
        Some(utc("2024-01-02T14:30:00Z"))
    );
}

/// Fill ten sessions of slow answers with the engine allowed 8 units at once, and return
/// the most requests the server saw in flight together.
async fn most_in_flight(config: impl FnOnce(&ReplayServer) -> ThetaDataConfig) -> usize {
    use cachefill_testing::thetadata::Fault;
    let server = ReplayServer::empty().await.unwrap();
    serve_aapl_quotes(&server, &[]);
    server.inject_next(usize::MAX, Fault::Delay(Duration::from_millis(80)));
    let provider = ThetaDataProvider::new(ThetaDataConfig {
        retry: fast_retries(),
        ..config(&server)
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut engine_config = EngineConfig::new("test-bucket", KeyLayout::new("", "v1"));
    // The engine would run 8 units at once; only the provider's limit holds requests back.
    engine_config.fetch_concurrency = Some(8);
    let engine = FillEngine::new(
        LocalStore::new(dir.path()).unwrap(),
        Arc::new(provider),
        engine_config,
    )
    .with_clock(Arc::new(FixedClock::new(now())));
    let answer = engine
        .fill(&request(AAPL_HOUR_QUOTE, "2024-02-01", "2024-02-14", true))
        .await
        .unwrap();
    assert_eq!(answer.upstream_requests, 10);
    assert_eq!(server.requests().len(), 10);
    server.max_in_flight()
}

#[tokio::test]
async fn no_more_requests_in_flight_than_the_concurrency_limit() {
    let configured = most_in_flight(|server| ThetaDataConfig {
        concurrency: 2,
        ..ThetaDataConfig::new(&server.base_url())
    })
    .await;
    assert_eq!(configured, 2);
}

#[tokio::test]
async fn the_default_limit_is_four_requests_in_flight() {
    assert_eq!(ThetaDataConfig::default().concurrency, 4);
    let default = most_in_flight(|server| ThetaDataConfig::new(&server.base_url())).await;
    assert_eq!(default, 4);
}

#[tokio::test]
async fn the_fetch_concurrency_setting_sets_the_limit() {
    let from_settings = most_in_flight(|server| {
        let base_url = format!("{}/v3", server.base_url());
        let settings = ProviderSettings::from_lookup(
            |name| match name {
                "THETADATA_BASE_URL" => Some(base_url.clone()),
                "CACHE_FETCH_CONCURRENCY" => Some("3".to_string()),
                _ => None,
            },
            ProviderSettings::DEPLOYED,
        )
        .unwrap();
        ThetaDataConfig::from_settings(&settings)
    })
    .await;
    assert_eq!(from_settings, 3);
}

#[tokio::test]
async fn readiness_and_option_listings() {
    let server = ReplayServer::thetadata().await.unwrap();
    let provider = provider(&server, 4);
    let status = provider.status().await.unwrap();
    assert!(status.is_connected(), "{status:?}");
    let expirations = provider.expirations("spy").await.unwrap();
    assert_eq!((expirations.len(), expirations[0]), (1957, d("2012-06-01")));
    let dates = provider.quote_dates("AAPL", d("2024-04-19")).await.unwrap();
    assert_eq!(
        (dates.len(), dates.last().copied()),
        (170, Some(d("2024-04-19")))
    );

    // A terminal that still wants v2 names answers 410; the error quotes it, once.
    let answer_410 = Exchange::load(
        &cachefill_testing::fixtures::root()
            .unwrap()
            .join("thetadata-v3/option-list-strikes.json"),
    )
    .unwrap()
    .reply;
    server.register(
        "/v3/option/list/strikes",
        &[
            ("symbol", "AAPL"),
            ("expiration", "20250221"),
            ("format", "json"),
        ],
        answer_410,
    );
    let err = provider.strikes("AAPL", d("2025-02-21")).await.unwrap_err();
    assert!(matches!(err, ProviderError::Protocol(_)), "{err:?}");
    assert!(err.to_string().contains("exp -> expiration"), "{err}");
    assert_eq!(server.count("/v3/option/list/strikes"), 1);

    server.register(
        "/v3/option/list/strikes",
        &[
            ("symbol", "MSFT"),
            ("expiration", "20250221"),
            ("format", "json"),
        ],
        Reply::json(
            r#"{"response":[{"symbol":"MSFT","strike":410.0},{"symbol":"MSFT","strike":402.5}]}"#,
        ),
    );
    assert_eq!(
        provider.strikes("MSFT", d("2025-02-21")).await.unwrap(),
        [402.5, 410.0]
    );

    let mut disconnected = ReplayServer::empty().await.unwrap();
    disconnected.register(
        "/v3/terminal/mdds/status",
        &[],
        Reply::text(200, "DISCONNECTED"),
    );
    let status = self::provider(&disconnected, 1).status().await.unwrap();
    assert!(!status.is_connected());
    // A terminal that is not running: the address refuses connections.
    let gone = disconnected.base_url();
    drop(std::mem::replace(
        &mut disconnected,
        ReplayServer::empty().await.unwrap(),
    ));
    tokio::time::sleep(Duration::from_millis(20)).await;
    let offline = ThetaDataProvider::new(ThetaDataConfig {
        retry: fast_retries(),
        ..ThetaDataConfig::new(&gone)
    })
    .unwrap();
    let err = offline.status().await.unwrap_err();
    assert!(matches!(err, ProviderError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("is it running?"), "{err}");
}

/// An option whose root lists `listed`, filled for one session; what was asked and stored.
async fn option_fill_with_listed(
    listed: &[&str],
    provider_expiration: Option<&str>,
) -> (Vec<(String, String)>, FillAnswer, Sidecar, usize) {
    let server = ReplayServer::empty().await.unwrap();
    let rows: Vec<String> = listed
        .iter()
        .map(|e| format!(r#"{{"symbol":"SPY","expiration":"{e}"}}"#))
        .collect();
    server.register(
        "/v3/option/list/expirations",
        &[("symbol", "SPY"), ("format", "json")],
        Reply::json(format!(r#"{{"response":[{}]}}"#, rows.join(","))),
    );
    server.respond_with(OPTION_OHLC, |_| Some(Reply::no_data()));
    let bucket = bucket(&server);
    let json = r#"{"provider":"thetadata","asset_type":"option","symbol":"SPY","timespan":"minute","datastyle":"ohlc","expiration":"2012-06-15","strike":130.0,"right":"CALL"}"#;
    let request = request(json, "2012-06-14", "2012-06-14", false)
        .with_provider_expiration(provider_expiration.map(d));
    let answer = bucket.engine.fill(&request).await.unwrap();
    let (_, _, sidecar) = object(&bucket, &answer).await;
    let sent = server
        .requests()
        .iter()
        .find(|r| r.path == OPTION_OHLC)
        .unwrap()
        .raw_query
        .clone();
    let list_requests = server.count("/v3/option/list/expirations");
    (sent, answer, sidecar, list_requests)
}

fn sent_expiration(sent: &[(String, String)]) -> &str {
    &sent.iter().find(|(k, _)| k == "expiration").unwrap().1
}

#[tokio::test]
async fn a_monthly_listed_under_the_occ_saturday_is_asked_for_the_saturday() {
    // SPY's 2012 monthlies are listed under the Saturday after the third Friday.
    let (sent, answer, sidecar, lists) =
        option_fill_with_listed(&["2012-06-08", "2012-06-16", "2012-06-22"], None).await;
    assert_eq!(sent_expiration(&sent), "20120616");
    assert_eq!(lists, 1);
    assert!(
        answer
            .key
            .ends_with("option_SPY_120615_130.0_CALL_minute_ohlc.parquet"),
        "stored under the tradable Friday: {}",
        answer.key
    );
    let payload = sidecar.cache_payload.expect("lumibot's cache_payload");
    assert_eq!(payload.expiration, Some(d("2012-06-15")));
    assert_eq!(payload.provider_expiration, Some(d("2012-06-16")));
    assert_eq!(payload.strike.unwrap().to_string(), "130.0");
}

#[tokio::test]
async fn a_root_listing_the_friday_is_asked_for_the_friday() {
    let (sent, _, sidecar, _) =
        option_fill_with_listed(&["2012-06-08", "2012-06-15", "2012-06-22"], None).await;
    assert_eq!(sent_expiration(&sent), "20120615");
    assert_eq!(
        sidecar.cache_payload.unwrap().provider_expiration,
        Some(d("2012-06-15"))
    );
}

#[tokio::test]
async fn an_explicit_provider_expiration_wins_without_a_listing() {
    let (sent, answer, sidecar, lists) =
        option_fill_with_listed(&["2012-06-15"], Some("2012-06-16")).await;
    assert_eq!(sent_expiration(&sent), "20120616");
    assert_eq!(lists, 0, "nothing to look up");
    assert_eq!(
        sidecar.cache_payload.unwrap().provider_expiration,
        Some(d("2012-06-16"))
    );
    // The payload's provider_expiration names no other file.
    let with = FillRequest::from_json(r#"{"provider":"thetadata","asset_type":"option","symbol":"SPY","timespan":"minute","datastyle":"ohlc","expiration":"2012-06-15","strike":130.0,"right":"CALL","provider_expiration":"2012-06-16","start":"2012-06-14","end":"2012-06-14"}"#).unwrap();
    assert_eq!(with.provider_expiration, Some(d("2012-06-16")));
    assert_eq!(
        KeyLayout::new("stage/cache", "v3").data_key(&with.dataset),
        answer.key
    );
}

/// The terminal knows no split and no dividend for any symbol.
fn no_corporate_actions(server: &ReplayServer) {
    for path in [SPLITS, DIVIDENDS] {
        server.respond_with(path, |_| Some(Reply::no_data()));
    }
}

const SPLITS: &str = "/v2/hist/stock/split";
const DIVIDENDS: &str = "/v2/hist/stock/dividend";

/// v2 split history with one split: `ratio` for 1 on `date`, repeated on a later day as the
/// endpoint does.
fn split_history(date: &str, ratio: u32) -> Reply {
    let day = date.replace('-', "");
    Reply::json(format!(
        r#"{{"header":{{"format":["ms_of_day","split_date","before_shares","after_shares","date"]}},
            "response":[[0,{day},1,{ratio},{day}],[0,{day},1,{ratio},20991231]]}}"#
    ))
}

fn dividend_history(ex_date: &str, amount: f64) -> Reply {
    let day = ex_date.replace('-', "");
    Reply::json(format!(
        r#"{{"header":{{"format":["ms_of_day","ex_date","record_date","payment_date","ann_date","dividend_amount","undefined","less_amount","date"]}},
            "response":[[0,{day},{day},{day},{day},{amount},0,0,{day}]]}}"#
    ))
}

/// Day bars come split-adjusted as lumibot writes them, as of the day they are written; a
/// split found later re-adjusts the rows already written, on the next request.
#[tokio::test]
async fn day_bars_are_split_adjusted_as_lumibot_writes_them_and_readjusted_after_a_new_split() {
    let server = ReplayServer::thetadata().await.unwrap();
    server.register(
        STOCK_EOD,
        &[
            ("symbol", "AAPL"),
            ("start_date", "20240102"),
            ("end_date", "20240110"),
            ("format", "json"),
        ],
        Reply::json(recorded("stock-history-eod")),
    );
    server.respond_with(SPLITS, |_| Some(split_history("2024-01-08", 2)));
    server.respond_with(DIVIDENDS, |_| Some(dividend_history("2024-01-05", 0.5)));
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path().join("bucket")).unwrap();
    let clock = Arc::new(FixedClock::new(now()));
    let engine = FillEngine::new(
        store,
        Arc::new(provider(&server, 4)),
        EngineConfig::new("b", KeyLayout::new("", "v1")),
    )
    .with_clock(clock.clone());
    let req = request(AAPL_DAY, "2024-01-02", "2024-01-10", true);
    let first = engine.fill(&req).await.unwrap();
    let got = engine.store().get(&first.key, None).await.unwrap();
    let decoded = codec::decode(got.bytes.clone()).unwrap();
    let batch = &decoded.batch;
    // Sessions 01-02..01-10; the split on 01-08 halves what came before it.
    let close = floats(batch, "close");
    let raw_first_close = 185.64; // the recorded 2024-01-02 close
    assert_eq!(close[0], Some(raw_first_close / 2.0));
    assert_eq!(close[6], Some(186.19), "after the split: as recorded");
    let volume = floats(batch, "volume");
    assert!(volume[0].unwrap() > 0.0);
    assert_eq!(floats(batch, "stock_splits")[4], Some(2.0), "on 01-08");
    assert_eq!(
        floats(batch, "dividend")[3],
        Some(0.25),
        "0.5 on 01-05, halved"
    );
    assert_eq!(floats(batch, "dividend")[0], Some(0.0));
    assert_eq!(
        decoded.fact(cachefill_core::format::FACT_SPLITS),
        Some("2024-01-08:2")
    );
    assert_eq!(
        decoded.fact(cachefill_core::format::FACT_ADJUSTED_AS_OF),
        Some("2026-01-15")
    );
    // The same day: a hit, no lookups.
    server.reset_log();
    assert_eq!(engine.fill(&req).await.unwrap().status, FillStatus::Hit);
    assert!(server.requests().is_empty());

    // A week later a 3-for-1 split went ex (2026-01-20, after the file was adjusted): the
    // next request re-adjusts every row already written by 3, and only by 3.
    clock.set(now() + chrono::Duration::days(7));
    server.respond_with(SPLITS, |_| {
        Some(Reply::json(
            r#"{"header":{"format":["ms_of_day","split_date","before_shares","after_shares","date"]},
                "response":[[0,20240108,1,2,20240108],[0,20260120,1,3,20260120]]}"#,
        ))
    });
    let again = engine.fill(&req).await.unwrap();
    assert_eq!(again.status, FillStatus::Filled, "rewritten");
    let got = engine.store().get(&again.key, None).await.unwrap();
    let decoded = codec::decode(got.bytes).unwrap();
    let close = floats(&decoded.batch, "close");
    let near = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() < 1e-9;
    assert!(near(close[0], raw_first_close / 6.0), "{close:?}");
    assert!(near(close[4], 185.56 / 3.0), "{close:?}");
    assert!(near(close[6], 186.19 / 3.0), "{close:?}");
    assert_eq!(
        decoded.fact(cachefill_core::format::FACT_SPLITS),
        Some("2024-01-08:2,2026-01-20:3")
    );
    assert_eq!(
        decoded.fact(cachefill_core::format::FACT_ADJUSTED_AS_OF),
        Some("2026-01-22")
    );

    // The next day, no newer split: one look-up (split and dividend), a hit; the process
    // asks no more that day.
    clock.set(now() + chrono::Duration::days(8));
    server.reset_log();
    assert_eq!(engine.fill(&req).await.unwrap().status, FillStatus::Hit);
    assert_eq!(server.requests().len(), 2, "{:?}", server.requests());
    server.reset_log();
    assert_eq!(engine.fill(&req).await.unwrap().status, FillStatus::Hit);
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}
