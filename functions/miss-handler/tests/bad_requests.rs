//! Malformed invocations against the handler as the Lambda runtime calls it: every one,
//! generated from valid payloads by mutating one field at a time or taken from the payload
//! fuzz target's corpus (`cachefill_testing::bad_requests`), is refused as `InvalidRequest`
//! with a message naming what is wrong, and nothing is written. `tests/tests/miss_handler.rs`
//! sends the same payloads to the deployed binary under the emulator.

use cachefill_core::fill::{EngineConfig, FillEngine};
use cachefill_core::keys::KeyLayout;
use cachefill_core::providers::synthetic::SyntheticProvider;
use cachefill_core::storage::ObjectStore;
use cachefill_core::storage::local::LocalStore;
use cachefill_testing::bad_requests;
use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use serde_json::value::RawValue;

#[tokio::test]
async fn every_malformed_invocation_is_an_invalid_request_naming_the_field_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = FillEngine::new(
        LocalStore::new(dir.path()).unwrap(),
        SyntheticProvider::new(),
        EngineConfig::new("cache-bucket", KeyLayout::new("stage/cache", "v1")),
    );
    let cases = bad_requests::all().unwrap();
    let generated = bad_requests::generated().len();
    assert!(generated >= 100, "only {generated} generated payloads");
    assert!(cases.len() > generated, "no payload from the fuzz corpus");
    let mut failures = Vec::new();
    for case in &cases {
        let mut context = Context::default();
        context.request_id = "bad-request".into();
        let event = LambdaEvent::new(RawValue::from_string(case.body.clone()).unwrap(), context);
        match miss_handler::handle(&engine, event).await {
            Ok(answer) => failures.push(format!("{}: accepted ({:?})", case.body, answer.status)),
            Err(err) => {
                let diagnostic = Diagnostic::from(err);
                if diagnostic.error_type != "InvalidRequest"
                    || !case.is_named_by(&diagnostic.error_message)
                {
                    failures.push(format!(
                        "{}: {} {:?} (field {:?})",
                        case.body, diagnostic.error_type, diagnostic.error_message, case.field
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} malformed payloads were not refused as InvalidRequest naming the field:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    let written = engine.store().list("").await.unwrap();
    assert!(written.is_empty(), "refused requests wrote {written:?}");
}
