//! The Polygon provider against the Polygon replay server: the recorded pages parsed, pages
//! followed along `next_url`, plans, tickers, every fault with its attempts counted, and
//! the key kept out of every message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cachefill_core::calendar;
use cachefill_core::codec::Rows;
use cachefill_core::codec::rows::AggBar;
use cachefill_core::dataset::{Dataset, Datastyle, Provider as ProviderName};
use cachefill_core::fill::{EngineConfig, FillEngine, FillRequest, FillStatus};
use cachefill_core::keys::KeyLayout;
use cachefill_core::providers::polygon::{PolygonConfig, PolygonProvider, RetryPolicy, SetupError};
use cachefill_core::providers::{FetchRequest, Fetched, Provider, ProviderError, ProviderSet};
use cachefill_core::settings::{
    CACHE_PROVIDERS, POLYGON_API_KEY, POLYGON_BASE_URL, ProviderSettings, Secret,
};
use cachefill_core::storage::local::LocalStore;
use cachefill_testing::polygon::{PolygonReplay, generated_bar};
use cachefill_testing::thetadata::Fault;
use chrono::NaiveDate;
use serde_json::Value;

const KEY: &str = "pk-test-3f9a1c77e2b54d08";
const AAPL_DAY: &str = r#"{"provider":"polygon","asset_type":"stock","symbol":"AAPL","timespan":"day","datastyle":"ohlc"}"#;
const AAPL_MINUTE: &str = r#"{"provider":"polygon","asset_type":"stock","symbol":"AAPL","timespan":"minute","datastyle":"ohlc"}"#;
const SPY_CALL_DAY: &str = r#"{"provider":"polygon","asset_type":"option","symbol":"SPY","timespan":"day","datastyle":"ohlc","expiration":"2024-11-22","strike":340,"right":"CALL"}"#;
const SPX_HOUR: &str = r#"{"provider":"polygon","asset_type":"index","symbol":"SPX","timespan":"hour","datastyle":"ohlc"}"#;
const ARM_DAY: &str = r#"{"provider":"polygon","asset_type":"stock","symbol":"ARM","timespan":"day","datastyle":"ohlc"}"#;
/// Every test's waits end within this.
const BOUND: Duration = Duration::from_secs(30);

fn d(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

fn dataset(json: &str) -> Dataset {
    Dataset::from_json(json).unwrap()
}

fn fast_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_retry_after: Duration::from_secs(2),
    }
}

fn config(server: &PolygonReplay, key: &str) -> PolygonConfig {
    PolygonConfig {
        retry: fast_retries(5),
        request_timeout: Duration::from_secs(5),
        ..PolygonConfig::new(&format!("{}/", server.base_url()), Secret::new(key))
    }
}

fn provider(server: &PolygonReplay) -> PolygonProvider {
    PolygonProvider::new(config(server, KEY)).unwrap()
}

async fn start() -> PolygonReplay {
    PolygonReplay::start(KEY).await.unwrap()
}

/// Fetch `sessions` of `dataset` as the engine would, bounded in time.
async fn fetch(
    provider: &PolygonProvider,
    dataset: &Dataset,
    sessions: &[NaiveDate],
    expiration: Option<NaiveDate>,
) -> Result<Fetched, ProviderError> {
    let request = FetchRequest {
        dataset,
        sessions,
        include_after_hours: true,
        provider_expiration: expiration,
    };
    tokio::time::timeout(BOUND, provider.fetch(request))
        .await
        .expect("the fetch ends in time")
}

fn bars(fetched: &Fetched) -> &[AggBar] {
    match &fetched.rows {
        Rows::Aggs(bars) => bars,
        other => panic!("not aggregates: {other:?}"),
    }
}

fn fixture(name: &str) -> Value {
    let path = cachefill_testing::fixtures::dir("polygon")
        .unwrap()
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn assert_close(actual: Option<f64>, expected: f64, what: &str) {
    let actual = actual.unwrap_or_else(|| panic!("{what} is null"));
    assert!(
        (actual - expected).abs() < 1e-9,
        "{what}: {actual} != {expected}"
    );
}

/// An aggregate bar matches the JSON result it came from.
fn assert_bar_is(bar: &AggBar, result: &Value) {
    assert_eq!(bar.time, result["t"].as_i64().unwrap() * 1_000_000);
    for (field, value) in [
        ("o", bar.open),
        ("h", bar.high),
        ("l", bar.low),
        ("c", bar.close),
        ("v", bar.volume),
        ("vw", bar.vwap),
    ] {
        assert_close(value, result[field].as_f64().unwrap(), field);
    }
    assert_eq!(bar.transactions, result["n"].as_i64());
    assert_eq!(bar.otc, result["otc"].as_bool());
}

#[tokio::test]
async fn the_recorded_daily_aggregates_become_bars_with_the_fixtures_values() {
    let server = start().await;
    let fetched = fetch(
        &provider(&server),
        &dataset(AAPL_DAY),
        &[d("2005-04-01"), d("2005-04-04")],
        None,
    )
    .await
    .unwrap();
    let recorded = fixture("v2-aggs-AAPL-1-day-2005-04-01-2005-04-04.json");
    let results = recorded["results"].as_array().unwrap();
    assert_eq!(bars(&fetched).len(), 2);
    for (bar, result) in bars(&fetched).iter().zip(results) {
        assert_bar_is(bar, result);
    }
    // Day bars open at midnight New York.
    assert_eq!(bars(&fetched)[0].time, 1_112_331_600_000_000_000);
    assert_eq!(fetched.requests, 1);

    let asked = server.server().requests();
    assert_eq!(asked.len(), 1);
    assert_eq!(
        asked[0].path,
        "/v2/aggs/ticker/AAPL/range/1/day/2005-04-01/2005-04-04"
    );
    let query: Vec<(&str, &str)> = asked[0]
        .raw_query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        query,
        [("adjusted", "true"), ("sort", "asc"), ("limit", "50000")]
    );
    assert_eq!(
        asked[0].header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
}

#[tokio::test]
async fn a_listing_is_followed_along_next_url_across_its_recorded_pages() {
    let server = start().await;
    let provider = provider(&server);
    for (path, files) in [
        (
            "/v3/quotes/AAPL",
            ["v3-quotes-AAPL-page1.json", "v3-quotes-AAPL-page2.json"],
        ),
        (
            "/v3/reference/options/contracts",
            [
                "v3-reference-options-contracts-page1.json",
                "v3-reference-options-contracts-page2.json",
            ],
        ),
    ] {
        server.server().reset_log();
        let listing = provider.list::<Value>(path, &[]).await.unwrap();
        let expected: Vec<Value> = files
            .iter()
            .flat_map(|f| fixture(f)["results"].as_array().unwrap().clone())
            .collect();
        assert_eq!(listing.results.len(), 20, "{path}");
        assert_eq!(listing.results, expected, "{path}");
        assert_eq!(listing.requests, 2, "{path}");
        let asked = server.server().requests();
        assert_eq!(asked.len(), 2, "{path}");
        let next_url = fixture(files[0])["next_url"].as_str().unwrap().to_string();
        let cursor = next_url.split("cursor=").nth(1).unwrap();
        assert_eq!(asked[0].raw_param("cursor"), None);
        assert_eq!(asked[1].path, path);
        assert_eq!(asked[1].raw_param("cursor"), Some(cursor));
        assert!(asked.iter().all(|r| r.header("authorization").is_some()));
    }

    // A page without next_url ends the listing after one request.
    server.server().reset_log();
    let trades = provider
        .list::<Value>("/v3/trades/AAPL", &[])
        .await
        .unwrap();
    assert_eq!(
        trades.results,
        *fixture("v3-trades-AAPL-limit2.json")["results"]
            .as_array()
            .unwrap()
    );
    assert_eq!(trades.requests, 1);
    assert_eq!(server.server().requests().len(), 1);
}

#[tokio::test]
async fn generated_minute_bars_are_read_over_several_pages() {
    let server = start().await;
    server.set_page_size(300);
    let sessions = [d("2024-03-08"), d("2024-03-11")]; // a weekend, and DST, in between
    let fetched = fetch(&provider(&server), &dataset(AAPL_MINUTE), &sessions, None)
        .await
        .unwrap();
    let bars = bars(&fetched);
    assert_eq!(bars.len(), 2 * 960);
    // ⌈1920 / 300⌉ pages, each its own request.
    assert_eq!(fetched.requests, 7);
    assert_eq!(server.aggs_requests().len(), 7);
    assert!(
        server.aggs_requests()[1..]
            .iter()
            .all(|r| r.raw_param("cursor").is_some())
    );
    for bar in bars {
        let t = bar.time / 1_000_000;
        let expected = generated_bar("AAPL", t);
        assert_close(bar.open, expected.o, "o");
        assert_close(bar.close, expected.c, "c");
        assert_eq!(bar.transactions, Some(expected.n));
        let date = calendar::ny_date(chrono::DateTime::from_timestamp_millis(t).unwrap());
        assert!(sessions.contains(&date), "{date}");
    }
    let times: Vec<i64> = bars.iter().map(|b| b.time).collect();
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "ascending, no repeats"
    );
    // Over DST: 04:00 New York is 09:00 UTC in winter and 08:00 UTC in summer.
    assert_eq!(times[0], 1_709_888_400_000_000_000);
    assert_eq!(times[960], 1_710_144_000_000_000_000);
}

#[tokio::test]
async fn bars_of_sessions_outside_the_unit_are_dropped() {
    let server = start().await;
    // The unit is 2024-01-02 and 2024-01-04; the range asked covers 2024-01-03 as well.
    let fetched = fetch(
        &provider(&server),
        &dataset(AAPL_DAY),
        &[d("2024-01-02"), d("2024-01-04")],
        None,
    )
    .await
    .unwrap();
    let dates: Vec<NaiveDate> = bars(&fetched)
        .iter()
        .map(|b| calendar::ny_date(chrono::DateTime::from_timestamp_nanos(b.time)))
        .collect();
    assert_eq!(dates, [d("2024-01-02"), d("2024-01-04")]);
}

#[tokio::test]
async fn thirty_five_years_of_days_plan_to_one_unit_and_fill_with_one_request() {
    let server = start().await;
    server.list_from("ARM", d("2023-09-14"));
    let provider = provider(&server);
    let sessions = calendar::sessions_between(d("1990-01-02"), d("2024-12-31")).unwrap();
    assert!(sessions.len() > 8_800);
    let units = provider.plan(&dataset(ARM_DAY), &sessions);
    assert_eq!(units.len(), 1);
    assert_eq!(units[0], sessions);
    // Minutes of a year: 52 sessions per unit, a handful of units.
    let year = calendar::sessions_between(d("2024-01-02"), d("2024-12-31")).unwrap();
    assert_eq!(provider.plan(&dataset(AAPL_MINUTE), &year).len(), 5);

    // The long-history fill: one request; real rows from the first listing on, a
    // placeholder for every session before it.
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path().join("bucket")).unwrap();
    let engine = FillEngine::new(
        store,
        Arc::new(provider),
        EngineConfig::new("test-bucket", KeyLayout::new("", "v1")),
    );
    let request =
        FillRequest::new(dataset(ARM_DAY), d("1990-01-02"), d("2024-12-31"), true).unwrap();
    let answer = tokio::time::timeout(BOUND, engine.fill(&request))
        .await
        .expect("the fill ends in time")
        .unwrap();
    let listed = calendar::sessions_between(d("2023-09-14"), d("2024-12-31")).unwrap();
    assert_eq!(answer.status, FillStatus::Filled);
    assert_eq!(answer.upstream_requests, 1);
    assert_eq!(answer.real_rows, listed.len() as u64);
    assert_eq!(answer.placeholders, (sessions.len() - listed.len()) as u64);
    assert_eq!(server.aggs_requests().len(), 1);
    assert_eq!(
        server.aggs_requests()[0].path,
        "/v2/aggs/ticker/ARM/range/1/day/1990-01-02/2024-12-31"
    );
}

#[tokio::test]
async fn option_and_index_tickers_are_built_as_polygon_names_them() {
    let server = start().await;
    let provider = provider(&server);
    let week = calendar::sessions_between(d("2024-11-18"), d("2024-11-22")).unwrap();
    let option = dataset(SPY_CALL_DAY);
    let fetched = fetch(&provider, &option, &week, None).await.unwrap();
    assert_eq!(bars(&fetched).len(), 5);
    fetch(&provider, &option, &week, Some(d("2024-11-23")))
        .await
        .unwrap();
    fetch(&provider, &dataset(SPX_HOUR), &week[..1], None)
        .await
        .unwrap();
    let paths: Vec<String> = server.aggs_requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths,
        [
            "/v2/aggs/ticker/O:SPY241122C00340000/range/1/day/2024-11-18/2024-11-22",
            "/v2/aggs/ticker/O:SPY241123C00340000/range/1/day/2024-11-18/2024-11-22",
            "/v2/aggs/ticker/I:SPX/range/1/hour/2024-11-18/2024-11-18",
        ]
    );
}

#[tokio::test]
async fn a_quote_datastyle_is_unsupported_before_any_request() {
    let server = start().await;
    let provider = provider(&server);
    let mut quotes = dataset(AAPL_MINUTE);
    quotes.datastyle = Datastyle::parse("quote").unwrap();
    let error = provider.supports(&quotes).unwrap_err();
    assert!(matches!(error, ProviderError::Unsupported(_)), "{error}");
    assert!(error.to_string().contains("'ohlc'"), "{error}");
    let error = fetch(&provider, &quotes, &[d("2024-01-02")], None)
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::Unsupported(_)), "{error}");
    assert!(provider.supports(&dataset(AAPL_MINUTE)).is_ok());
    assert!(server.server().requests().is_empty());
}

/// Errors of every kind, for the key check.
struct Seen(Vec<String>);

impl Seen {
    fn add(&mut self, error: &ProviderError) {
        self.0.push(error.to_string());
        self.0.push(format!("{error:?}"));
    }
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after_then_succeeds() {
    let server = start().await;
    server.server().inject_next(
        1,
        Fault::status_retry_after(429, r#"{"status":"ERROR","error":"too many"}"#, "1"),
    );
    let started = Instant::now();
    let fetched = fetch(
        &provider(&server),
        &dataset(AAPL_DAY),
        &[d("2024-01-02")],
        None,
    )
    .await
    .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "Retry-After: 1 was honoured ({:?})",
        started.elapsed()
    );
    assert_eq!(bars(&fetched).len(), 1);
    assert_eq!(fetched.requests, 2);
    assert_eq!(server.aggs_requests().len(), 2);
}

#[tokio::test]
async fn a_429_that_lasts_is_rate_limited_after_every_attempt() {
    let server = start().await;
    server.server().inject_next(
        100,
        Fault::status(429, r#"{"status":"ERROR","error":"too many"}"#),
    );
    let error = fetch(
        &provider(&server),
        &dataset(AAPL_DAY),
        &[d("2024-01-02")],
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(error, ProviderError::RateLimited(_)), "{error}");
    assert!(
        error
            .to_string()
            .contains("still busy after 5 attempts: HTTP 429"),
        "{error}"
    );
    assert_eq!(server.aggs_requests().len(), 5);
}

#[tokio::test]
async fn a_403_is_no_permission_at_once() {
    let server = start().await;
    server.server().inject_next(
        1,
        Fault::status(403, r#"{"status":"NOT_AUTHORIZED","message":"You are not entitled to this data. Please upgrade your plan."}"#),
    );
    let error = fetch(
        &provider(&server),
        &dataset(AAPL_MINUTE),
        &[d("2024-01-02")],
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(error, ProviderError::NoPermission(_)), "{error}");
    let text = error.to_string();
    assert!(text.contains("HTTP 403"), "{text}");
    assert!(
        text.contains("the API key or its plan does not cover this data"),
        "{text}"
    );
    assert!(
        text.contains("/v2/aggs/ticker/AAPL/range/1/minute/2024-01-02/2024-01-02"),
        "{text}"
    );
    assert_eq!(server.aggs_requests().len(), 1, "not retried");
}

#[tokio::test]
async fn a_wrong_key_is_refused_by_the_server_so_the_key_is_what_is_sent() {
    let server = start().await;
    let wrong = PolygonProvider::new(config(&server, "pk-wrong-0000")).unwrap();
    let error = fetch(&wrong, &dataset(AAPL_DAY), &[d("2024-01-02")], None)
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::NoPermission(_)), "{error}");
    assert!(error.to_string().contains("HTTP 401"), "{error}");
    assert!(!error.to_string().contains("pk-wrong-0000"), "{error}");
    assert_eq!(server.aggs_requests().len(), 1);
    // The same request with the right key is served.
    assert!(
        fetch(
            &provider(&server),
            &dataset(AAPL_DAY),
            &[d("2024-01-02")],
            None
        )
        .await
        .is_ok()
    );
}

#[tokio::test]
async fn server_errors_exhaust_the_policy_and_are_unavailable() {
    let server = start().await;
    server
        .server()
        .inject_next(100, Fault::status(503, "service unavailable"));
    let policy = fast_retries(4);
    let provider = PolygonProvider::new(PolygonConfig {
        retry: policy.clone(),
        ..config(&server, KEY)
    })
    .unwrap();
    let error = fetch(&provider, &dataset(AAPL_DAY), &[d("2024-01-02")], None)
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::Unavailable(_)), "{error}");
    assert!(
        error.to_string().contains("failed 4 attempts: HTTP 503"),
        "{error}"
    );
    assert_eq!(server.aggs_requests().len(), policy.max_attempts as usize);
}

#[tokio::test]
async fn cut_bodies_are_retried() {
    for fault in [Fault::ShortBody, Fault::CutJson, Fault::Reset] {
        let server = start().await;
        server.server().inject_next(2, fault.clone());
        let fetched = fetch(
            &provider(&server),
            &dataset(AAPL_DAY),
            &[d("2024-01-02")],
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert_eq!(bars(&fetched).len(), 1, "{fault:?}");
        assert_eq!(fetched.requests, 3, "{fault:?}");
        assert_eq!(server.aggs_requests().len(), 3, "{fault:?}");

        server.server().reset_log();
        server.server().inject_next(100, fault.clone());
        let error = fetch(
            &provider(&server),
            &dataset(AAPL_DAY),
            &[d("2024-01-02")],
            None,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(error, ProviderError::Unavailable(_)),
            "{fault:?}: {error}"
        );
        assert!(error.to_string().contains("failed 5 attempts"), "{error}");
        assert_eq!(server.aggs_requests().len(), 5, "{fault:?}");
    }
}

#[tokio::test]
async fn a_fault_on_a_later_page_is_retried_and_counted() {
    let server = start().await;
    server.set_page_size(2);
    let sessions = calendar::sessions_between(d("2024-01-02"), d("2024-01-09")).unwrap();
    let provider = provider(&server);
    let clean = fetch(&provider, &dataset(AAPL_DAY), &sessions, None)
        .await
        .unwrap();
    assert_eq!((bars(&clean).len(), clean.requests), (6, 3));
    // The second page fails once.
    let second_page = server.aggs_requests()[1].path.clone();
    server.server().reset_log();
    server.server().inject_route(
        &second_page,
        None,
        Some(1),
        Fault::status(502, "bad gateway"),
    );
    let fetched = fetch(&provider, &dataset(AAPL_DAY), &sessions, None)
        .await
        .unwrap();
    assert_eq!(bars(&fetched), bars(&clean));
    assert_eq!(fetched.requests, 4);
    let paths: Vec<String> = server.aggs_requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths.iter().filter(|p| **p == second_page).count(), 2);
}

#[tokio::test]
async fn a_404_and_an_unusable_body_are_protocol_errors_without_retry() {
    let server = start().await;
    server
        .server()
        .inject_next(1, Fault::status(404, "404 page not found"));
    let error = fetch(
        &provider(&server),
        &dataset(AAPL_DAY),
        &[d("2024-01-02")],
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(error, ProviderError::Protocol(_)), "{error}");
    assert!(
        error.to_string().contains("no such endpoint (HTTP 404"),
        "{error}"
    );
    assert_eq!(server.aggs_requests().len(), 1);

    server.server().reset_log();
    server.server().inject_next(
        1,
        Fault::Reply(cachefill_testing::thetadata::Reply::json(
            r#"{"status":"OK","results":[{"o":1.0,"h":1.0,"l":1.0,"c":1.0}]}"#,
        )),
    );
    let error = fetch(
        &provider(&server),
        &dataset(AAPL_DAY),
        &[d("2024-01-02")],
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(error, ProviderError::Protocol(_)), "{error}");
    let text = error.to_string();
    assert!(
        text.contains("GET /v2/aggs/ticker/AAPL/range/1/day/2024-01-02/2024-01-02"),
        "{text}"
    );
    assert!(text.contains("missing field `t`"), "{text}");
    assert_eq!(server.aggs_requests().len(), 1);
}

#[tokio::test]
async fn an_empty_answer_is_no_rows() {
    let server = start().await;
    server.list_from("NEWCO", d("2030-01-02"));
    let dataset = Dataset::from_json(
        r#"{"provider":"polygon","asset_type":"stock","symbol":"NEWCO","timespan":"day","datastyle":"ohlc"}"#,
    )
    .unwrap();
    let fetched = fetch(&provider(&server), &dataset, &[d("2024-01-02")], None)
        .await
        .unwrap();
    assert!(fetched.rows.is_empty());
    assert_eq!(fetched.requests, 1);
}

#[tokio::test]
async fn timeouts_are_retried_then_unavailable() {
    let server = start().await;
    server
        .server()
        .inject_next(100, Fault::Delay(Duration::from_secs(2)));
    let provider = PolygonProvider::new(PolygonConfig {
        request_timeout: Duration::from_millis(200),
        retry: fast_retries(2),
        ..config(&server, KEY)
    })
    .unwrap();
    let error = fetch(&provider, &dataset(AAPL_DAY), &[d("2024-01-02")], None)
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::Unavailable(_)), "{error}");
    assert!(error.to_string().contains("within 0.2 s"), "{error}");
    assert_eq!(server.aggs_requests().len(), 2);
}

#[tokio::test]
async fn requests_in_flight_never_exceed_the_concurrency() {
    let server = start().await;
    server
        .server()
        .inject_next(100, Fault::Delay(Duration::from_millis(50)));
    let provider = PolygonProvider::new(PolygonConfig {
        concurrency: 2,
        ..config(&server, KEY)
    })
    .unwrap();
    assert_eq!(provider.concurrency(&dataset(AAPL_DAY)), 2);
    let sessions = calendar::sessions_between(d("2024-01-02"), d("2024-01-31")).unwrap();
    let units: Vec<Vec<NaiveDate>> = sessions.iter().map(|s| vec![*s]).collect();
    let day = dataset(AAPL_DAY);
    let all = futures::future::join_all(units.iter().map(|u| fetch(&provider, &day, u, None)));
    for fetched in tokio::time::timeout(BOUND, all).await.unwrap() {
        fetched.unwrap();
    }
    assert_eq!(server.aggs_requests().len(), sessions.len());
    assert_eq!(server.server().max_in_flight(), 2);
}

#[tokio::test]
async fn the_key_never_appears_in_debug_output_or_any_error() {
    let server = start().await;
    let provider = provider(&server);
    let mut seen = Seen(vec![
        format!("{:?}", config(&server, KEY)),
        format!("{provider:?}"),
        format!("{provider:#?}"),
    ]);
    // A refusal that quotes the key back, and the errors of every fault.
    server.server().inject_next(
        1,
        Fault::status(
            401,
            &format!(r#"{{"status":"ERROR","error":"Unknown API Key {KEY}"}}"#),
        ),
    );
    let faults = [
        None,
        Some(Fault::status(403, "not entitled")),
        Some(Fault::status(429, "slow down")),
        Some(Fault::status(500, "boom")),
        Some(Fault::status(404, "nothing")),
        Some(Fault::CutJson),
        Some(Fault::Reset),
    ];
    for fault in faults {
        if let Some(fault) = fault {
            server.server().inject_next(100, fault);
        }
        let error = fetch(&provider, &dataset(AAPL_DAY), &[d("2024-01-02")], None)
            .await
            .unwrap_err();
        seen.add(&error);
        server.server().clear_faults();
    }
    let unreachable = PolygonProvider::new(PolygonConfig {
        retry: fast_retries(1),
        ..PolygonConfig::new("http://127.0.0.1:1", Secret::new(KEY))
    })
    .unwrap();
    let error = fetch(&unreachable, &dataset(AAPL_DAY), &[d("2024-01-02")], None)
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::Unavailable(_)), "{error}");
    seen.add(&error);
    // Setup errors.
    for config in [
        PolygonConfig::new("not a url", Secret::new(KEY)),
        PolygonConfig::new("http://127.0.0.1:1", Secret::new(format!("{KEY}\n"))),
    ] {
        let error = PolygonProvider::new(config).unwrap_err();
        seen.0.push(error.to_string());
        seen.0.push(format!("{error:?}"));
    }
    assert!(seen.0.iter().any(|t| t.contains("<redacted>")));
    assert_eq!(seen.0.len(), 3 + 2 * 8 + 4);
    for text in &seen.0 {
        assert!(!text.contains(KEY), "the key leaked: {text}");
    }
    // On the wire, the key is only ever in the header.
    for request in server.server().requests() {
        assert!(
            request
                .raw_query
                .iter()
                .all(|(k, v)| !k.contains(KEY) && !v.contains(KEY)),
            "{request:?}"
        );
        assert!(!request.path.contains(KEY));
    }
}

#[tokio::test]
async fn polygon_is_registered_from_the_settings() {
    let server = start().await;
    let base = server.base_url();
    let settings = ProviderSettings::from_lookup(
        |name| match name {
            CACHE_PROVIDERS => Some("polygon".to_string()),
            POLYGON_API_KEY => Some(KEY.to_string()),
            POLYGON_BASE_URL => Some(base.clone()),
            _ => None,
        },
        ProviderSettings::DEPLOYED,
    )
    .unwrap();
    let set = ProviderSet::from_settings(&settings).unwrap();
    assert_eq!(set.served(), [ProviderName::Polygon]);
    let day = dataset(AAPL_DAY);
    set.supports(&day).unwrap();
    let sessions = [d("2024-01-02")];
    let fetched = tokio::time::timeout(
        BOUND,
        set.fetch(FetchRequest {
            dataset: &day,
            sessions: &sessions,
            include_after_hours: true,
            provider_expiration: None,
        }),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(fetched.rows.len(), 1);
    assert_eq!(server.aggs_requests().len(), 1);

    // Served without a key (settings built by hand): the start fails naming the variable.
    let keyless = ProviderSettings {
        polygon_api_key: None,
        ..settings
    };
    let error = ProviderSet::from_settings(&keyless).unwrap_err();
    assert!(error.to_string().contains(POLYGON_API_KEY), "{error}");
    assert_eq!(
        PolygonConfig::from_settings(&keyless).unwrap_err(),
        SetupError::MissingKey
    );
}

#[tokio::test]
async fn https_base_urls_are_spoken_to_over_tls() {
    use tokio::io::AsyncReadExt;
    // A listener that reads what the client sends first and hangs up: over TLS that is a
    // handshake record (0x16, then version 3.x); a build without TLS sends nothing at all.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
    let first_bytes = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).await.unwrap();
        head
    });
    let provider = PolygonProvider::new(PolygonConfig {
        retry: fast_retries(1),
        ..PolygonConfig::new(&base, Secret::new(KEY))
    })
    .unwrap();
    let error = fetch(&provider, &dataset(AAPL_DAY), &[d("2024-01-02")], None)
        .await
        .unwrap_err();
    assert!(matches!(error, ProviderError::Unavailable(_)), "{error}");
    let head = tokio::time::timeout(Duration::from_secs(5), first_bytes)
        .await
        .expect("the client connected")
        .unwrap();
    assert_eq!(head, [0x16, 0x03], "a TLS handshake record");
}
