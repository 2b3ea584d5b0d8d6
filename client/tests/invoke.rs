//! `LambdaInvoker` against a local server that speaks the Lambda Invoke API (POST
//! `/2015-03-31/functions/<name>/invocations`) and runs the real fill engine: answers,
//! function errors of every `errorType` (AWS's 200 + `X-Amz-Function-Error` and an
//! emulator's HTTP 500), throttling, a slow function, and an unreachable one.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use cachefill_client::embedded::Embedded;
use cachefill_client::{
    CacheClient, ClientError, InvokeError, LambdaInvoker, LambdaOptions, Source,
};
use cachefill_core::errors::ErrorType;
use cachefill_core::fill::{FillEngine, FillRequest};
use cachefill_core::providers::ProviderSet;
use cachefill_core::storage::ObjectStore;
use common::{quick, request};

const FUNCTION: &str = "miss-handler";

#[derive(Debug, Clone)]
enum Behavior {
    /// Run the fill and answer.
    Fill,
    /// AWS: HTTP 200, `X-Amz-Function-Error: Unhandled`, the error document as payload.
    ErrorHeader(ErrorType),
    /// The emulator: HTTP 500 with the error document.
    Error500(ErrorType),
    /// Fill at once, but answer only after a delay.
    FillThenStall(Duration),
    /// Never fill; answer after a delay.
    Stall(Duration),
    /// HTTP 429 as Lambda throttles.
    Throttle,
    /// Answer with a key under another prefix.
    WrongKey,
}

#[derive(Clone)]
struct Lambda {
    behavior: Arc<Mutex<Behavior>>,
    payloads: Arc<Mutex<Vec<String>>>,
    engine: Arc<FillEngine<Arc<dyn ObjectStore>, Arc<ProviderSet>>>,
}

fn error_document(error_type: ErrorType) -> String {
    format!(
        r#"{{"errorType":"{}","errorMessage":"scripted {} failure"}}"#,
        error_type.as_str(),
        error_type.as_str()
    )
}

async fn invoke(
    State(lambda): State<Lambda>,
    Path(name): Path<String>,
    body: Bytes,
) -> (StatusCode, HeaderMap, String) {
    assert_eq!(name, FUNCTION);
    let payload = String::from_utf8(body.to_vec()).unwrap();
    lambda.payloads.lock().unwrap().push(payload.clone());
    let behavior = lambda.behavior.lock().unwrap().clone();
    let mut headers = HeaderMap::new();
    let fill = || async {
        let request = FillRequest::from_json(&payload).unwrap();
        lambda.engine.fill(&request).await.unwrap()
    };
    match behavior {
        Behavior::Fill => (
            StatusCode::OK,
            headers,
            serde_json::to_string(&fill().await).unwrap(),
        ),
        Behavior::ErrorHeader(error_type) => {
            headers.insert("X-Amz-Function-Error", "Unhandled".parse().unwrap());
            (StatusCode::OK, headers, error_document(error_type))
        }
        Behavior::Error500(error_type) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            headers,
            error_document(error_type),
        ),
        Behavior::FillThenStall(delay) => {
            let answer = fill().await;
            tokio::time::sleep(delay).await;
            (
                StatusCode::OK,
                headers,
                serde_json::to_string(&answer).unwrap(),
            )
        }
        Behavior::Stall(delay) => {
            tokio::time::sleep(delay).await;
            (StatusCode::OK, headers, "{}".to_string())
        }
        Behavior::Throttle => {
            headers.insert(
                "x-amzn-errortype",
                "TooManyRequestsException".parse().unwrap(),
            );
            (
                StatusCode::TOO_MANY_REQUESTS,
                headers,
                r#"{"message":"Rate exceeded","Type":"User"}"#.to_string(),
            )
        }
        Behavior::WrongKey => {
            let mut answer = fill().await;
            answer.key = format!("elsewhere/{}", answer.key);
            (
                StatusCode::OK,
                headers,
                serde_json::to_string(&answer).unwrap(),
            )
        }
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    embedded: Embedded,
    lambda: Lambda,
    endpoint: String,
}

impl Harness {
    async fn start(behavior: Behavior) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let embedded = Embedded::open(dir.path()).unwrap();
        let lambda = Lambda {
            behavior: Arc::new(Mutex::new(behavior)),
            payloads: Arc::default(),
            engine: Arc::new(embedded.engine(embedded.providers())),
        };
        let app = Router::new()
            .route("/2015-03-31/functions/{name}/invocations", post(invoke))
            .with_state(lambda.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Harness {
            _dir: dir,
            embedded,
            lambda,
            endpoint,
        }
    }

    fn requests(&self) -> usize {
        self.lambda.payloads.lock().unwrap().len()
    }

    async fn client(&self, read_timeout: Duration) -> CacheClient {
        client_for(&self.embedded, &self.endpoint, read_timeout).await
    }
}

async fn client_for(embedded: &Embedded, endpoint: &str, read_timeout: Duration) -> CacheClient {
    let invoker = LambdaInvoker::connect(
        LambdaOptions::new(FUNCTION)
            .with_endpoint(endpoint)
            .with_region("us-east-1")
            .with_static_credentials("AKIDTEST", "test-secret")
            .with_read_timeout(read_timeout)
            .with_connect_timeout(Duration::from_secs(2)),
    )
    .await;
    CacheClient::new(
        quick(embedded.config()),
        Some(embedded.store()),
        Some(Arc::new(invoker)),
    )
    .unwrap()
}

fn april() -> cachefill_client::DataRequest {
    request("AAPL", "2024-04-08", "2024-04-12")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_invoke_api_fills_and_the_named_version_is_downloaded() {
    let harness = Harness::start(Behavior::Fill).await;
    let client = harness.client(Duration::from_secs(30)).await;
    let file = client.get(&april()).await.unwrap();
    assert_eq!(file.source, Source::Filled);
    assert_eq!(harness.requests(), 1);
    let payload: serde_json::Value =
        serde_json::from_str(&harness.lambda.payloads.lock().unwrap()[0]).unwrap();
    // The missing week was widened to its whole month.
    assert_eq!(payload["start"], "2024-04-01");
    assert_eq!(payload["end"], "2024-04-30");
    assert_eq!(payload["symbol"], "AAPL");
    let head = harness
        .embedded
        .store()
        .head(&file.key, None)
        .await
        .unwrap();
    assert_eq!(file.version_id, head.version_id);
    assert_eq!(client.get(&april()).await.unwrap().source, Source::LocalHit);
    assert_eq!(harness.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_type_is_typed_both_ways_and_only_retryable_ones_are_retried() {
    let harness = Harness::start(Behavior::Fill).await;
    let client = harness.client(Duration::from_secs(30)).await;
    let attempts = client.config().retry.attempts as usize;
    for error_type in ErrorType::ALL {
        for behavior in [
            Behavior::ErrorHeader(error_type),
            Behavior::Error500(error_type),
        ] {
            *harness.lambda.behavior.lock().unwrap() = behavior.clone();
            let before = harness.requests();
            let error = client.get(&april()).await.unwrap_err();
            match &error {
                ClientError::Invoke {
                    source:
                        InvokeError::Function {
                            error_type: got,
                            message,
                        },
                    ..
                } => {
                    assert_eq!(*got, error_type, "{behavior:?}");
                    assert!(message.contains("scripted"), "{message}");
                }
                other => panic!("{behavior:?}: {other}"),
            }
            assert!(error.to_string().contains(error_type.as_str()), "{error}");
            let sent = harness.requests() - before;
            let expected = if error_type.is_retryable() {
                attempts
            } else {
                1
            };
            assert_eq!(sent, expected, "{behavior:?}");
        }
    }
    // Nothing was cached locally, not even a temporary file.
    assert_eq!(
        common::cached_files(&harness.embedded.cache_dir),
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_timeout_polls_the_key_until_the_fill_lands() {
    let harness = Harness::start(Behavior::FillThenStall(Duration::from_secs(20))).await;
    let client = harness.client(Duration::from_millis(500)).await;
    let started = Instant::now();
    let file = client.get(&april()).await.unwrap();
    assert_eq!(file.source, Source::Filled);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "it polled instead of waiting for the answer"
    );
    assert_eq!(harness.requests(), 1, "a timed-out fill is not sent again");
    let stored = harness.embedded.store().get(&file.key, None).await.unwrap();
    assert_eq!(
        file.sha256,
        cachefill_core::codec::sha256_hex(&stored.bytes)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_timeout_without_a_fill_gives_up_at_the_deadline() {
    let harness = Harness::start(Behavior::Stall(Duration::from_secs(20))).await;
    let mut config = quick(harness.embedded.config());
    config.poll.deadline = Duration::from_millis(400);
    let invoker = LambdaInvoker::connect(
        LambdaOptions::new(FUNCTION)
            .with_endpoint(&harness.endpoint)
            .with_region("us-east-1")
            .with_static_credentials("AKIDTEST", "test-secret")
            .with_read_timeout(Duration::from_millis(300)),
    )
    .await;
    let client = CacheClient::new(
        config,
        Some(harness.embedded.store()),
        Some(Arc::new(invoker)),
    )
    .unwrap();
    match client.get(&april()).await.unwrap_err() {
        ClientError::PollDeadline { key, waited } => {
            assert!(key.ends_with("stock_AAPL_day_ohlc.parquet"));
            assert!(waited >= Duration::from_millis(400));
        }
        other => panic!("{other}"),
    }
    assert_eq!(
        common::cached_files(&harness.embedded.cache_dir),
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_function_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Embedded::open(dir.path()).unwrap();
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let client = client_for(&embedded, &endpoint, Duration::from_secs(5)).await;
    let error = client.get(&april()).await.unwrap_err();
    match &error {
        ClientError::Invoke {
            source: InvokeError::Unreachable { function, .. },
            ..
        } => assert_eq!(function, FUNCTION),
        other => panic!("{other}"),
    }
    assert!(
        error
            .to_string()
            .contains("cannot reach the fill function miss-handler"),
        "{error}"
    );
    assert_eq!(
        client.stats().invocations,
        3,
        "connection failures are retried, bounded"
    );
    assert_eq!(
        common::cached_files(&embedded.cache_dir),
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_then_reported() {
    let harness = Harness::start(Behavior::Throttle).await;
    let client = harness.client(Duration::from_secs(30)).await;
    match client.get(&april()).await.unwrap_err() {
        ClientError::Invoke {
            source: InvokeError::Throttled { .. },
            ..
        } => {}
        other => panic!("{other}"),
    }
    assert_eq!(harness.requests(), 3);
    // Once the function recovers, the same client fills.
    *harness.lambda.behavior.lock().unwrap() = Behavior::Fill;
    assert_eq!(client.get(&april()).await.unwrap().source, Source::Filled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_writing_under_another_key_is_refused() {
    let harness = Harness::start(Behavior::WrongKey).await;
    let client = harness.client(Duration::from_secs(30)).await;
    let error = client.get(&april()).await.unwrap_err();
    assert!(matches!(error, ClientError::WrongKey { .. }), "{error}");
    assert!(error.to_string().contains("CACHE_PREFIX"), "{error}");
    assert_eq!(
        common::cached_files(&harness.embedded.cache_dir),
        Vec::<String>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_of_a_failing_function_cost_one_invocation() {
    // A slow function that answers nonsense: every task is waiting behind the first call.
    let harness = Harness::start(Behavior::Stall(Duration::from_millis(300))).await;
    let client = harness.client(Duration::from_secs(30)).await;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.get(&april()).await })
        })
        .collect();
    for task in tasks {
        match task.await.unwrap().unwrap_err() {
            ClientError::Invoke {
                source: InvokeError::BadAnswer { .. },
                ..
            } => {}
            other => panic!("{other}"),
        }
    }
    assert_eq!(harness.requests(), 1, "one invocation for sixteen callers");
}
