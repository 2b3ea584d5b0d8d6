//! Terminal faults injected by the replay server: how often each is retried, the error the
//! miss-handler reports, and that the bucket is left exactly as it was.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cachefill_core::clock::FixedClock;
use cachefill_core::dataset::Dataset;
use cachefill_core::fill::{EngineConfig, ErrorType, FillEngine, FillRequest, FillStatus};
use cachefill_core::keys::KeyLayout;
use cachefill_core::providers::thetadata::replay::{Fault, Query, ReplayServer, Reply};
use cachefill_core::providers::thetadata::{RetryPolicy, ThetaDataConfig, ThetaDataProvider};
use cachefill_core::storage::ObjectStore;
use cachefill_core::storage::local::LocalStore;
use chrono::{NaiveDate, TimeZone, Utc};
use serde_json::{Value, json};

const OHLC: &str = "/v3/stock/history/ohlc";
const SPY_MINUTE: &str = r#"{"provider":"thetadata","asset_type":"stock","symbol":"SPY","timespan":"minute","datastyle":"ohlc"}"#;
/// The session the faults hit; 2024-01-02 is filled beforehand.
const FAULTY: &[(&str, &str)] = &[
    ("symbol", "SPY"),
    ("date", "20240103"),
    ("interval", "1m"),
    ("start_time", "04:00:00"),
    ("end_time", "20:00:00"),
    ("format", "json"),
];
const V2_NAMES_410: &str = "We have upgraded to API v3. Please use API v3 query parameters instead. \nDeprecated query parameters:\n\texp -> expiration\nConsult API v3 documentation for more information: https://docs.thetadata.us/";

fn d(text: &str) -> NaiveDate {
    text.parse().unwrap()
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

struct Setup {
    server: ReplayServer,
    engine: FillEngine<LocalStore, Arc<ThetaDataProvider>>,
    _dir: tempfile::TempDir,
}

async fn setup(timeout: Duration) -> Setup {
    let server = ReplayServer::empty().await.unwrap();
    server.respond_with(OHLC, minute_bars);
    let provider = ThetaDataProvider::new(ThetaDataConfig {
        request_timeout: timeout,
        retry: RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            max_retry_after: Duration::from_secs(3),
        },
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
    server.reset_log();
    Setup {
        server,
        engine,
        _dir: dir,
    }
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

struct Case {
    name: &'static str,
    fault: Fault,
    attempts: usize,
    error: ErrorType,
    says: &'static str,
}

fn cases() -> Vec<Case> {
    let mut cases = vec![
        Case {
            name: "471 PERMISSION",
            fault: Fault::status(471, "PERMISSION: upgrade to access this data"),
            attempts: 1,
            error: ErrorType::UpstreamNoPermission,
            says: "upgrade to access",
        },
        Case {
            name: "410 v2 parameter names",
            fault: Fault::status(410, V2_NAMES_410),
            attempts: 1,
            error: ErrorType::Internal,
            says: "exp -> expiration",
        },
        Case {
            name: "404 unknown endpoint",
            fault: Fault::status(404, "NO_IMPL"),
            attempts: 1,
            error: ErrorType::Internal,
            says: "NO_IMPL",
        },
        Case {
            name: "connection reset",
            fault: Fault::Reset,
            attempts: 5,
            error: ErrorType::UpstreamUnavailable,
            says: "failed 5 attempts",
        },
        Case {
            name: "body shorter than its Content-Length",
            fault: Fault::ShortBody,
            attempts: 5,
            error: ErrorType::Internal,
            says: "cut short",
        },
        Case {
            name: "cut JSON",
            fault: Fault::CutJson,
            attempts: 5,
            error: ErrorType::Internal,
            says: "malformed response body",
        },
        Case {
            name: "HTML error page",
            fault: Fault::Reply(
                Reply::text(200, "<html>proxy error</html>").with_content_type("text/html"),
            ),
            attempts: 5,
            error: ErrorType::Internal,
            says: "not a response this provider reads",
        },
    ];
    for status in [429, 474, 570, 571] {
        cases.push(Case {
            name: "busy",
            fault: Fault::status(status, "try again later"),
            attempts: 5,
            error: ErrorType::UpstreamRateLimited,
            says: "still busy after 5 attempts",
        });
    }
    for status in [500, 502, 503, 504] {
        cases.push(Case {
            name: "server error",
            fault: Fault::status(status, "upstream down"),
            attempts: 5,
            error: ErrorType::UpstreamUnavailable,
            says: "upstream down",
        });
    }
    cases
}

#[tokio::test]
async fn each_fault_is_retried_as_documented_and_leaves_the_bucket_unchanged() {
    let s = setup(Duration::from_secs(5)).await;
    let before = listing(s.engine.store()).await;
    assert_eq!(before.len(), 2, "the parquet and its sidecar: {before:?}");
    for case in cases() {
        s.server.clear_faults();
        s.server.reset_log();
        s.server
            .inject_route(OHLC, Some(FAULTY), None, case.fault.clone());
        let err = s
            .engine
            .fill(&fill_request("2024-01-03"))
            .await
            .unwrap_err();
        let label = format!("{} ({:?})", case.name, case.fault);
        assert_eq!(err.error_type(), case.error, "{label}: {err}");
        assert!(err.to_string().contains(case.says), "{label}: {err}");
        assert_eq!(s.server.count_query(OHLC, FAULTY), case.attempts, "{label}");
        assert_eq!(
            s.server.requests().len(),
            case.attempts,
            "{label}: only the missing session"
        );
        assert_eq!(
            listing(s.engine.store()).await,
            before,
            "{label}: bucket changed"
        );
    }
}

#[tokio::test]
async fn a_request_slower_than_the_timeout_is_retried_then_unavailable() {
    let s = setup(Duration::from_millis(200)).await;
    let before = listing(s.engine.store()).await;
    s.server.inject_route(
        OHLC,
        Some(FAULTY),
        None,
        Fault::Delay(Duration::from_secs(2)),
    );
    let started = Instant::now();
    let err = s
        .engine
        .fill(&fill_request("2024-01-03"))
        .await
        .unwrap_err();
    assert_eq!(err.error_type(), ErrorType::UpstreamUnavailable, "{err}");
    assert!(err.to_string().contains("within 0.2 s"), "{err}");
    assert_eq!(s.server.count_query(OHLC, FAULTY), 5);
    assert!(started.elapsed() >= Duration::from_millis(5 * 200));
    assert_eq!(listing(s.engine.store()).await, before);
}

#[tokio::test]
async fn transient_faults_that_clear_are_counted_and_the_fill_completes() {
    let s = setup(Duration::from_secs(5)).await;
    // Each round asks for the next session, so it is the only one missing.
    for (fault, failures, end) in [
        (Fault::status(503, "starting"), 2, "2024-01-03"),
        (Fault::CutJson, 1, "2024-01-04"),
        (Fault::Reset, 3, "2024-01-05"),
        (Fault::status(571, "SERVER_STARTING"), 4, "2024-01-08"),
    ] {
        s.server.clear_faults();
        s.server.reset_log();
        let date = end.replace('-', "");
        let query: Vec<(&str, &str)> = FAULTY
            .iter()
            .map(|(k, v)| (*k, if *k == "date" { date.as_str() } else { *v }))
            .collect();
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
    }
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let s = setup(Duration::from_secs(5)).await;
    s.server.inject_route(
        OHLC,
        Some(FAULTY),
        Some(1),
        Fault::status_retry_after(429, "OS_LIMIT", "1"),
    );
    let answer = s.engine.fill(&fill_request("2024-01-03")).await.unwrap();
    assert_eq!(answer.upstream_requests, 2);
    let times: Vec<Instant> = s.server.requests().iter().map(|r| r.at).collect();
    assert_eq!(times.len(), 2);
    assert!(
        times[1] - times[0] >= Duration::from_secs(1),
        "waited only {:?}",
        times[1] - times[0]
    );
}
