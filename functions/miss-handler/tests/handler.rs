//! The handler as the Lambda runtime calls it: a LambdaEvent in, an answer or a typed
//! error out, against the local directory store and the synthetic provider.

use cachefill_core::fill::{EngineConfig, FillEngine};
use cachefill_core::keys::KeyLayout;
use cachefill_core::providers::synthetic::SyntheticProvider;
use cachefill_core::storage::ObjectStore;
use cachefill_core::storage::local::LocalStore;
use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use serde_json::value::RawValue;

fn event(json: &str) -> LambdaEvent<Box<RawValue>> {
    let mut context = Context::default();
    context.request_id = "req-1".into();
    LambdaEvent::new(RawValue::from_string(json.to_string()).unwrap(), context)
}

fn engine(dir: &std::path::Path) -> FillEngine<LocalStore, SyntheticProvider> {
    FillEngine::new(
        LocalStore::new(dir).unwrap(),
        SyntheticProvider::new(),
        EngineConfig::new("cache-bucket", KeyLayout::new("stage/cache", "v3")),
    )
}

#[tokio::test]
async fn answer_json_has_every_field_of_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    let answer = miss_handler::handle(
        &engine,
        event(r#"{"provider":"synthetic","asset_type":"stock","symbol":"aapl","timespan":"day","datastyle":"ohlc","start":"2024-01-02","end":"2024-03-28"}"#),
    )
    .await
    .unwrap();
    let json = serde_json::to_value(&answer).unwrap();
    let fields: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = vec![
        "status",
        "bucket",
        "key",
        "version_id",
        "etag",
        "sha256",
        "rows",
        "real_rows",
        "placeholders",
        "min",
        "max",
        "sessions_fetched",
        "upstream_requests",
        "elapsed_ms",
    ];
    expected.sort();
    let mut fields_sorted = fields.clone();
    fields_sorted.sort();
    assert_eq!(fields_sorted, expected);
    assert_eq!(json["status"], "filled");
    assert_eq!(json["bucket"], "cache-bucket");
    assert_eq!(
        json["key"],
        "stage/cache/v3/synthetic/stock/day/ohlc/stock_AAPL_day_ohlc.parquet"
    );
    assert_eq!(json["rows"], 61);
    assert_eq!(json["upstream_requests"], 1, "one end-of-day window");
    assert_eq!(
        json["min"], "2024-01-02T21:00:00+00:00",
        "16:00 New York in UTC"
    );
    assert_eq!(json["max"], "2024-03-28T20:00:00+00:00");

    let again = miss_handler::handle(
        &engine,
        event(r#"{"provider":"synthetic","asset_type":"stock","symbol":"AAPL","timespan":"day","datastyle":"ohlc","start":"2024-01-02","end":"2024-03-28"}"#),
    )
    .await
    .unwrap();
    assert_eq!(serde_json::to_value(&again).unwrap()["status"], "hit");
    assert_eq!(again.upstream_requests, 0);
}

#[tokio::test]
async fn invalid_payloads_are_invalid_requests_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path());
    for payload in [
        r#"{"provider":"synthetic","asset_type":"stock","symbol":"../etc","timespan":"day","datastyle":"ohlc","start":"2024-01-02","end":"2024-01-05"}"#,
        r#"{"provider":"synthetic","asset_type":"option","symbol":"SPY","timespan":"day","datastyle":"ohlc","start":"2024-01-02","end":"2024-01-05"}"#,
        r#"{"provider":"synthetic","asset_type":"stock","symbol":"SPY","timespan":"day","datastyle":"ohlc","start":"2024-01-09","end":"2024-01-05"}"#,
        r#"{"provider":"nobody","asset_type":"stock","symbol":"SPY","timespan":"day","datastyle":"ohlc","start":"2024-01-02","end":"2024-01-05"}"#,
        r#"[]"#,
        r#"{"provider":"thetadata","asset_type":"stock","symbol":"SPY","timespan":"day","datastyle":"ohlc","start":"2024-01-02","end":"2024-01-05"}"#,
    ] {
        let err = miss_handler::handle(&engine, event(payload))
            .await
            .unwrap_err();
        let diagnostic = Diagnostic::from(err);
        assert_eq!(
            diagnostic.error_type, "InvalidRequest",
            "{payload}: {}",
            diagnostic.error_message
        );
        assert!(!diagnostic.error_message.is_empty());
    }
    let written = engine.store().list("").await.unwrap();
    assert!(written.is_empty(), "a rejected request wrote {written:?}");
}
