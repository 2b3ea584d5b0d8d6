//! Terminal faults injected by the replay server, one test per fault: how many requests the
//! server counted, the error type the miss-handler reports, and that the bucket is left
//! exactly as it was (no half-written parquet, no sidecar, no placeholder).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cachefill_core::clock::FixedClock;
use cachefill_core::dataset::Dataset;
use cachefill_core::errors::ErrorType;
use cachefill_core::fill::{
    EngineConfig, FillAnswer, FillEngine, FillError, FillRequest, FillStatus,
};
use cachefill_core::keys::KeyLayout;
use cachefill_core::providers::thetadata::{RetryPolicy, ThetaDataConfig, ThetaDataProvider};
use cachefill_core::storage::ObjectStore;
use cachefill_core::storage::local::LocalStore;
use cachefill_testing::thetadata::{Fault, Query, ReplayServer, Reply};
use chrono::{NaiveDate, TimeZone, Utc};
use serde_json::{Value, json};

const OHLC: &str = "/v3/stock/history/ohlc";
const SPY_MINUTE: &str = r#"{"provider":"thetadata","asset_type":"stock","symbol":"SPY","timespan":"minute","datastyle":"ohlc"}"#;
/// The session the faults hit; 2024-01-02 is filled beforehand.
const FAULTY_DATE: &str = "20240103";
const FAULTY: &[(&str, &str)] = &[
    ("symbol", "SPY"),
    ("date", FAULTY_DATE),
    ("interval", "1m"),
    ("start_time", "04:00:00"),
    ("end_time", "20:00:00"),
    ("format", "json"),
];
/// What a v3 terminal answers to v2 parameter names (from the recorded 410).
const V2_NAMES_410: &str = "We have upgraded to API v3. Please use API v3 query parameters instead. \nDeprecated query parameters:\n\texp -> expiration\nConsult API v3 documentation for more information: https://docs.thetadata.us/";
/// Attempts per request in these tests (the default policy's number).
const ATTEMPTS: usize = 5;

fn d(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

/// The query of the minute-OHLC request for `date` (`YYYYMMDD`).
fn query_for(date: &str) -> Vec<(&str, &str)> {
    FAULTY
        .iter()
        .map(|(k, v)| (*k, if *k == "date" { date } else { *v }))
        .collect()
}

/// Three one-minute bars on any session.
fn minute_bars(q: &Query) -> Option<Reply> {
    let date = NaiveDate::parse_from_str(q.get("date")?, "%Y%m%d").ok()?;
    let rows: Vec<Value> = (0..3)
        .map(|i| {
            json!({"volume": 100, "high": 471.5, "low": 470.0, "vwap": 470.8, "count": 12,
                   "close": 471.0, "open": 470.5, "timestamp": format!("{date}T09:3{i}:00")})
        })
        .collect();
    Some(Reply::json(
        serde_json::to_vec(&json!({ "response": rows })).unwrap(),
    ))
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: ATTEMPTS as u32,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_retry_after: Duration::from_secs(3),
    }
}

struct Setup {
    server: ReplayServer,
    engine: FillEngine<LocalStore, Arc<ThetaDataProvider>>,
    /// The bucket after 2024-01-02 was filled.
    before: Vec<(String, String, u64)>,
    _dir: tempfile::TempDir,
}

/// A terminal serving three bars on any session, and a bucket that already holds
/// 2024-01-02, so a fill up to 2024-01-03 fetches exactly one session.
async fn setup_with(timeout: Duration, retry: RetryPolicy) -> Setup {
    let server = ReplayServer::empty().await.unwrap();
    server.respond_with(OHLC, minute_bars);
    let provider = ThetaDataProvider::new(ThetaDataConfig {
        request_timeout: timeout,
        retry,
        ..ThetaDataConfig::new(&server.base_url())
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::new("test-bucket", KeyLayout::new("stage/cache", "v3"));
    config.lease_ttl = Duration::from_secs(30);
    let engine = FillEngine::new(
        LocalStore::new(dir.path()).unwrap(),
        Arc::new(provider),
        config,
    )
    .with_clock(Arc::new(FixedClock::new(
        Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap(),
    )));
    let first = engine.fill(&fill_request("2024-01-02")).await.unwrap();
    assert_eq!(first.status, FillStatus::Filled);
    let before = listing(engine.store()).await;
    assert_eq!(before.len(), 2, "the parquet and its sidecar: {before:?}");
    server.reset_log();
    Setup {
        server,
        engine,
        before,
        _dir: dir,
    }
}

async fn setup() -> Setup {
    setup_with(Duration::from_secs(5), fast_retries()).await
}

fn fill_request(end: &str) -> FillRequest {
    FillRequest::new(
        Dataset::from_json(SPY_MINUTE).unwrap(),
        d("2024-01-02"),
        d(end),
        true,
    )
    .unwrap()
}

/// Every object in the bucket with its entity tag and size, leases aside: a fill always
/// takes and releases its lease, whatever happens upstream.
async fn listing(store: &LocalStore) -> Vec<(String, String, u64)> {
    let mut all: Vec<(String, String, u64)> = store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .filter(|m| !m.key.contains("/_leases/"))
        .map(|m| (m.key, m.etag, m.size))
        .collect();
    all.sort();
    all
}

impl Setup {
    /// Fill up to 2024-01-03 and expect it to fail.
    async fn failing_fill(&self) -> FillError {
        self.engine
            .fill(&fill_request("2024-01-03"))
            .await
            .expect_err("the fault must fail the fill")
    }

    async fn assert_bucket_unchanged(&self, label: &str) {
        assert_eq!(
            listing(self.engine.store()).await,
            self.before,
            "{label}: the bucket changed"
        );
    }
}

/// Inject `fault` into every request for 2024-01-03 and check the outcome: the attempts the
/// server counted, the error type, a phrase of the message, and an unchanged bucket.
async fn assert_fault(fault: Fault, attempts: usize, error: ErrorType, says: &str) {
    let s = setup().await;
    s.server
        .inject_route(OHLC, Some(FAULTY), None, fault.clone());
    let err = s.failing_fill().await;
    let label = format!("{fault:?}");
    assert_eq!(err.error_type(), error, "{label}: {err}");
    assert!(err.to_string().contains(says), "{label}: {err}");
    assert_eq!(
        s.server.count_query(OHLC, FAULTY),
        attempts,
        "{label}: attempts"
    );
    assert_eq!(
        s.server.requests().len(),
        attempts,
        "{label}: only the missing session is requested"
    );
    s.assert_bucket_unchanged(&label).await;
}

// ---- not retried ------------------------------------------------------------------------

#[tokio::test]
async fn no_data_472_is_a_placeholder_after_one_request_not_an_error() {
    let s = setup().await;
    s.server
        .inject_route(OHLC, Some(FAULTY), None, Fault::Reply(Reply::no_data()));
    let answer: FillAnswer = s.engine.fill(&fill_request("2024-01-03")).await.unwrap();
    assert_eq!(answer.status, FillStatus::Filled);
    assert_eq!(s.server.count_query(OHLC, FAULTY), 1, "472 is not retried");
    assert_eq!((answer.sessions_fetched, answer.upstream_requests), (1, 1));
    // The empty session's placeholder, and the 16:00 edge marker of 01-02, whose three
    // recorded bars stop long before the close.
    assert_eq!((answer.real_rows, answer.placeholders), (3, 2));
    assert_eq!(
        answer.max.as_deref(),
        Some("2024-01-03T21:00:00+00:00"),
        "the placeholder sits at 16:00 New York of the empty session"
    );
    // The placeholder covers the session: asking again sends nothing.
    s.server.reset_log();
    let again = s.engine.fill(&fill_request("2024-01-03")).await.unwrap();
    assert_eq!(
        (again.status, again.upstream_requests),
        (FillStatus::Hit, 0)
    );
    assert!(s.server.requests().is_empty());
}

#[tokio::test]
async fn permission_471_is_upstream_no_permission_without_a_retry() {
    assert_fault(
        Fault::status(471, "PERMISSION: upgrade to access this data"),
        1,
        ErrorType::UpstreamNoPermission,
        "upgrade to access",
    )
    .await;
}

#[tokio::test]
async fn v2_parameter_names_410_is_internal_quoting_the_terminal_without_a_retry() {
    assert_fault(
        Fault::status(410, V2_NAMES_410),
        1,
        ErrorType::Internal,
        "exp -> expiration",
    )
    .await;
}

#[tokio::test]
async fn an_unexpected_status_is_internal_quoting_the_terminal_without_a_retry() {
    assert_fault(
        Fault::status(404, "NO_IMPL"),
        1,
        ErrorType::Internal,
        "NO_IMPL",
    )
    .await;
}

// ---- busy: retried, then UpstreamRateLimited ----------------------------------------------

#[tokio::test]
async fn os_limit_429_is_retried_then_rate_limited() {
    assert_fault(
        Fault::status(429, "OS_LIMIT"),
        ATTEMPTS,
        ErrorType::UpstreamRateLimited,
        "still busy after 5 attempts: HTTP 429: OS_LIMIT",
    )
    .await;
}

#[tokio::test]
async fn disconnected_474_is_retried_then_rate_limited() {
    assert_fault(
        Fault::status(474, "DISCONNECTED"),
        ATTEMPTS,
        ErrorType::UpstreamRateLimited,
        "still busy after 5 attempts: HTTP 474: DISCONNECTED",
    )
    .await;
}

#[tokio::test]
async fn large_request_570_is_retried_then_rate_limited() {
    assert_fault(
        Fault::status(570, "LARGE_REQUEST"),
        ATTEMPTS,
        ErrorType::UpstreamRateLimited,
        "still busy after 5 attempts: HTTP 570: LARGE_REQUEST",
    )
    .await;
}

#[tokio::test]
async fn server_starting_571_is_retried_then_rate_limited() {
    assert_fault(
        Fault::status(571, "SERVER_STARTING"),
        ATTEMPTS,
        ErrorType::UpstreamRateLimited,
        "still busy after 5 attempts: HTTP 571: SERVER_STARTING",
    )
    .await;
}

// ---- unreachable: retried, then UpstreamUnavailable ---------------------------------------

#[tokio::test]
async fn internal_server_error_500_is_retried_then_unavailable() {
    assert_fault(
        Fault::status(500, "upstream down"),
        ATTEMPTS,
        ErrorType::UpstreamUnavailable,
        "failed 5 attempts: HTTP 500: upstream down",
    )
    .await;
}

#[tokio::test]
async fn bad_gateway_502_is_retried_then_unavailable() {
    assert_fault(
        Fault::status(502, "bad gateway"),
        ATTEMPTS,
        ErrorType::UpstreamUnavailable,
        "failed 5 attempts: HTTP 502: bad gateway",
    )
    .await;
}

#[tokio::test]
async fn service_unavailable_503_is_retried_then_unavailable() {
    assert_fault(
        Fault::status(503, "maintenance"),
        ATTEMPTS,
        ErrorType::UpstreamUnavailable,
        "failed 5 attempts: HTTP 503: maintenance",
    )
    .await;
}

#[tokio::test]
async fn gateway_timeout_504_is_retried_then_unavailable() {
    assert_fault(
        Fault::status(504, "gateway timeout"),
        ATTEMPTS,
        ErrorType::UpstreamUnavailable,
        "failed 5 attempts: HTTP 504: gateway timeout",
    )
    .await;
}

#[tokio::test]
async fn a_connection_reset_is_retried_then_unavailable() {
    assert_fault(
        Fault::Reset,
        ATTEMPTS,
        ErrorType::UpstreamUnavailable,
        "failed 5 attempts",
    )
    .await;
}

#[tokio::test]
async fn a_request_slower_than_the_timeout_is_retried_then_unavailable() {
    let s = setup_with(Duration::from_millis(200), fast_retries()).await;
    s.server.inject_route(
        OHLC,
        Some(FAULTY),
        None,
        Fault::Delay(Duration::from_secs(2)),
    );
    let started = Instant::now();
    let err = s.failing_fill().await;
    assert_eq!(err.error_type(), ErrorType::UpstreamUnavailable, "{err}");
    assert!(err.to_string().contains("within 0.2 s"), "{err}");
    assert!(err.to_string().contains("failed 5 attempts"), "{err}");
    assert_eq!(s.server.count_query(OHLC, FAULTY), ATTEMPTS);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(5 * 200), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(5 * 2),
        "each attempt is cut at the timeout, not at the server's delay: {elapsed:?}"
    );
    s.assert_bucket_unchanged("timeout").await;
}

#[tokio::test]
async fn a_terminal_that_is_not_running_is_retried_then_unavailable() {
    let Setup {
        server,
        engine,
        before,
        _dir,
    } = setup().await;
    // Stop the terminal: its address now refuses connections.
    drop(server);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let err = engine.fill(&fill_request("2024-01-03")).await.unwrap_err();
    assert_eq!(err.error_type(), ErrorType::UpstreamUnavailable, "{err}");
    assert!(err.to_string().contains("failed 5 attempts"), "{err}");
    assert!(err.to_string().contains("is it running?"), "{err}");
    assert_eq!(listing(engine.store()).await, before);
}

// ---- bodies that cannot be read: retried, then Internal -----------------------------------

#[tokio::test]
async fn a_body_shorter_than_its_content_length_is_retried_then_internal() {
    assert_fault(
        Fault::ShortBody,
        ATTEMPTS,
        ErrorType::Internal,
        "unreadable answer after 5 attempts: the body was cut short",
    )
    .await;
}

#[tokio::test]
async fn a_truncated_json_body_is_retried_then_internal() {
    assert_fault(
        Fault::CutJson,
        ATTEMPTS,
        ErrorType::Internal,
        "unreadable answer after 5 attempts: malformed response body",
    )
    .await;
}

#[tokio::test]
async fn a_body_that_is_not_a_response_is_retried_then_internal() {
    assert_fault(
        Fault::Reply(Reply::text(200, "<html>proxy error</html>").with_content_type("text/html")),
        ATTEMPTS,
        ErrorType::Internal,
        "not a response this provider reads",
    )
    .await;
}

// ---- how retries are spaced and counted ---------------------------------------------------

#[tokio::test]
async fn the_number_of_attempts_follows_the_retry_policy() {
    let s = setup_with(
        Duration::from_secs(5),
        RetryPolicy {
            max_attempts: 3,
            ..fast_retries()
        },
    )
    .await;
    s.server
        .inject_route(OHLC, Some(FAULTY), None, Fault::status(503, "down"));
    let err = s.failing_fill().await;
    assert_eq!(err.error_type(), ErrorType::UpstreamUnavailable, "{err}");
    assert!(err.to_string().contains("failed 3 attempts"), "{err}");
    assert_eq!(s.server.count_query(OHLC, FAULTY), 3);
    s.assert_bucket_unchanged("three attempts").await;
}

/// Times between consecutive requests the server received.
fn gaps(server: &ReplayServer) -> Vec<Duration> {
    let times: Vec<Instant> = server.requests().iter().map(|r| r.at).collect();
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test]
async fn backoff_doubles_between_attempts() {
    let s = setup_with(
        Duration::from_secs(5),
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(40),
            max_delay: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(5),
        },
    )
    .await;
    s.server
        .inject_route(OHLC, Some(FAULTY), None, Fault::status(502, "down"));
    let err = s.failing_fill().await;
    assert_eq!(err.error_type(), ErrorType::UpstreamUnavailable, "{err}");
    let gaps = gaps(&s.server);
    assert_eq!(gaps.len(), ATTEMPTS - 1);
    // Jitter keeps each wait within [½, 1] of 40 ms · 2ⁿ, so the lower bounds double too.
    for (n, gap) in gaps.iter().enumerate() {
        let floor = Duration::from_millis(20 << n);
        assert!(
            *gap >= floor,
            "wait {n} was {gap:?}, below {floor:?}: {gaps:?}"
        );
    }
    s.assert_bucket_unchanged("backoff").await;
}

#[tokio::test]
async fn retry_after_in_seconds_is_honoured() {
    let s = setup().await;
    s.server.inject_route(
        OHLC,
        Some(FAULTY),
        Some(1),
        Fault::status_retry_after(429, "OS_LIMIT", "1"),
    );
    let answer = s.engine.fill(&fill_request("2024-01-03")).await.unwrap();
    assert_eq!(answer.status, FillStatus::Filled);
    assert_eq!(answer.upstream_requests, 2);
    assert_eq!(s.server.count_query(OHLC, FAULTY), 2);
    let gaps = gaps(&s.server);
    assert!(gaps[0] >= Duration::from_secs(1), "waited only {gaps:?}");
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_honoured() {
    let s = setup().await;
    // Three seconds ahead at whole-second precision: more than two seconds away when sent,
    // so at least one second away when the client reads it, even on a busy machine.
    let at = (Utc::now() + chrono::Duration::seconds(3))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    s.server.inject_route(
        OHLC,
        Some(FAULTY),
        Some(1),
        Fault::status_retry_after(503, "restarting", &at),
    );
    let answer = s.engine.fill(&fill_request("2024-01-03")).await.unwrap();
    assert_eq!(answer.upstream_requests, 2);
    let gaps = gaps(&s.server);
    assert!(gaps[0] >= Duration::from_secs(1), "waited only {gaps:?}");
}

#[tokio::test]
async fn a_retry_after_beyond_the_cap_waits_only_the_cap() {
    let s = setup_with(
        Duration::from_secs(5),
        RetryPolicy {
            max_retry_after: Duration::from_millis(300),
            ..fast_retries()
        },
    )
    .await;
    s.server.inject_route(
        OHLC,
        Some(FAULTY),
        Some(1),
        Fault::status_retry_after(429, "OS_LIMIT", "3600"),
    );
    let answer = tokio::time::timeout(
        Duration::from_secs(20),
        s.engine.fill(&fill_request("2024-01-03")),
    )
    .await
    .expect("an hour-long Retry-After is cut to the policy's cap")
    .unwrap();
    assert_eq!(answer.upstream_requests, 2);
    let gaps = gaps(&s.server);
    assert!(gaps[0] >= Duration::from_millis(300), "{gaps:?}");
}

#[tokio::test]
async fn transient_faults_that_clear_are_counted_and_the_fill_completes() {
    let s = setup().await;
    // Each round asks for the next session, so it is the only one missing.
    for (round, (fault, failures, end)) in [
        (Fault::status(503, "starting"), 2, "2024-01-03"),
        (Fault::CutJson, 1, "2024-01-04"),
        (Fault::Reset, 3, "2024-01-05"),
        (Fault::status(571, "SERVER_STARTING"), 4, "2024-01-08"),
        (Fault::ShortBody, 1, "2024-01-09"),
        (Fault::status(474, "DISCONNECTED"), 2, "2024-01-10"),
    ]
    .into_iter()
    .enumerate()
    {
        s.server.clear_faults();
        s.server.reset_log();
        let date = end.replace('-', "");
        let query = query_for(&date);
        s.server
            .inject_route(OHLC, Some(&query), Some(failures), fault.clone());
        let answer = s.engine.fill(&fill_request(end)).await.unwrap();
        assert_eq!(answer.status, FillStatus::Filled, "{fault:?}");
        assert_eq!(
            s.server.count_query(OHLC, &query),
            failures + 1,
            "{fault:?}"
        );
        assert_eq!(
            answer.upstream_requests,
            failures as u64 + 1,
            "retries count as requests"
        );
        assert_eq!(
            answer.real_rows,
            3 * (round as u64 + 2),
            "{fault:?}: the session's bars arrived in full"
        );
    }
}

#[tokio::test]
async fn a_fault_on_one_session_writes_nothing_for_the_others() {
    let s = setup().await;
    let failing = query_for("20240104");
    s.server
        .inject_route(OHLC, Some(&failing), None, Fault::status(502, "down"));
    let err = s
        .engine
        .fill(&fill_request("2024-01-05"))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), ErrorType::UpstreamUnavailable, "{err}");
    assert_eq!(s.server.count_query(OHLC, &failing), ATTEMPTS);
    for healthy in ["20240103", "20240105"] {
        assert!(
            s.server.count_query(OHLC, &query_for(healthy)) <= 1,
            "{healthy} answered and is never asked twice"
        );
    }
    s.assert_bucket_unchanged("one failing session of three")
        .await;
}
