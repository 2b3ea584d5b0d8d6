//! Malformed invocations against the handler as the Lambda runtime calls it: every one,
//! generated from valid payloads by mutating one field at a time, is refused as
//! `InvalidRequest` with a message naming what is wrong, and nothing is written.

use cachefill_core::fill::{EngineConfig, FillEngine};
use cachefill_core::keys::KeyLayout;
use cachefill_core::providers::synthetic::SyntheticProvider;
use cachefill_core::storage::ObjectStore;
use cachefill_core::storage::local::LocalStore;
use lambda_runtime::{Context, Diagnostic, LambdaEvent};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

/// Valid payloads of each request shape: bars, an option's bars, events, a chain.
fn valid() -> Vec<Value> {
    vec![
        json!({"provider":"synthetic","asset_type":"stock","symbol":"AAPL","timespan":"day",
               "datastyle":"ohlc","start":"2024-01-02","end":"2024-01-31"}),
        json!({"provider":"synthetic","asset_type":"option","symbol":"SPY","timespan":"minute",
               "datastyle":"quote","expiration":"2024-01-19","strike":470,"right":"CALL",
               "start":"2024-01-02","end":"2024-01-05","include_after_hours":false}),
        json!({"provider":"thetadata","asset_type":"stock","symbol":"AAPL","datastyle":"splits",
               "start":"2024-01-02","end":"2024-01-31"}),
        json!({"provider":"thetadata","asset_type":"stock","symbol":"SPY",
               "datastyle":"option_chains","date":"2024-01-05"}),
    ]
}

/// Wrong values for a field.
fn wrong_values(field: &str) -> Vec<Value> {
    if field == "include_after_hours" {
        // null is the default, as absent is.
        return vec![json!("yes"), json!(1), json!([]), json!({}), json!("")];
    }
    let mut values = vec![
        json!(null),
        json!(true),
        json!([]),
        json!({}),
        json!(""),
        json!("\u{0007}"),
        json!("../../etc"),
        json!("x".repeat(200)),
    ];
    match field {
        "strike" => values.extend([json!("470"), json!(-1), json!(0), json!(1e9)]),
        "start" | "end" | "date" | "expiration" => values.extend([
            json!("2024-02-30"),
            json!("0001-01-01"),
            json!("9999-12-31"),
            json!("yesterday"),
            json!(20240102),
        ]),
        _ => values.extend([json!(7), json!("no such value"), json!("A/B")]),
    }
    values
}

/// Every malformed payload: each field of each valid payload removed or replaced by each
/// wrong value, an unknown field added, and payloads that are not JSON objects.
fn malformed() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for base in valid() {
        let Value::Object(fields) = &base else {
            unreachable!("payloads are objects")
        };
        for name in fields.keys() {
            // A missing `include_after_hours` is its default, not an error.
            if name != "include_after_hours" {
                let mut without: Map<String, Value> = fields.clone();
                without.remove(name);
                out.push((name.clone(), Value::Object(without).to_string()));
            }
            for wrong in wrong_values(name) {
                let mut changed = fields.clone();
                changed.insert(name.clone(), wrong);
                out.push((name.clone(), Value::Object(changed).to_string()));
            }
        }
        let mut extra = fields.clone();
        extra.insert("surprise".into(), json!(1));
        out.push(("surprise".into(), Value::Object(extra).to_string()));
    }
    for (what, text) in [
        ("payload", "[]"),
        ("payload", "\"AAPL\""),
        ("payload", "42"),
        ("payload", "null"),
        ("payload", "{}"),
    ] {
        out.push((what.into(), text.into()));
    }
    out
}

#[tokio::test]
async fn every_malformed_invocation_is_an_invalid_request_naming_the_field_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = FillEngine::new(
        LocalStore::new(dir.path()).unwrap(),
        SyntheticProvider::new(),
        EngineConfig::new("cache-bucket", KeyLayout::new("stage/cache", "v1")),
    );
    let cases = malformed();
    assert!(cases.len() >= 100, "only {} payloads", cases.len());
    let mut failures = Vec::new();
    for (field, payload) in &cases {
        let mut context = Context::default();
        context.request_id = "bad-request".into();
        let event = LambdaEvent::new(RawValue::from_string(payload.clone()).unwrap(), context);
        match miss_handler::handle(&engine, event).await {
            Ok(answer) => failures.push(format!("{payload}: accepted ({:?})", answer.status)),
            Err(err) => {
                let diagnostic = Diagnostic::from(err);
                let names_it = field == "payload"
                    || diagnostic.error_message.contains(&format!("'{field}'"))
                    || diagnostic.error_message.contains(&format!("{field} "))
                    || diagnostic.error_message.contains(&format!("{field}:"));
                if diagnostic.error_type != "InvalidRequest" || !names_it {
                    failures.push(format!(
                        "{payload}: {} {:?} (field {field})",
                        diagnostic.error_type, diagnostic.error_message
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
