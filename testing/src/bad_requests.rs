//! Malformed invoke payloads for the miss-handler, shared by the handler's own test (the
//! handler called as the Lambda runtime calls it) and the end-to-end one (the deployed binary
//! under the emulator, writing into moto).
//!
//! [`generated`] derives them from valid payloads of each request shape by removing or
//! replacing one field at a time; [`fuzz_corpus`] adds the payload fuzz target's committed
//! inputs that are JSON (the Invoke API refuses other bytes before any function runs) and that
//! the request parser refuses.

use std::path::{Path, PathBuf};

use cachefill_core::fill::MissRequest;
use serde_json::{Map, Value, json};

/// One malformed payload and what it gets wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPayload {
    /// The field the refusal must name; `None` when the payload is not a request object at
    /// all or comes from the fuzz corpus (where no one field is to blame).
    pub field: Option<String>,
    pub body: String,
}

impl BadPayload {
    /// Whether an `InvalidRequest` message names what this payload gets wrong.
    pub fn is_named_by(&self, message: &str) -> bool {
        match &self.field {
            None => !message.trim().is_empty(),
            Some(field) => [
                format!("'{field}'"),
                format!("{field} "),
                format!("{field}:"),
            ]
            .iter()
            .any(|form| message.contains(form.as_str())),
        }
    }
}

/// Valid payloads of each request shape: bars, an option's bars, events, a chain.
pub fn valid() -> Vec<Value> {
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

/// Every generated malformed payload: each field of each [`valid`] payload removed or
/// replaced by each wrong value, an unknown field added, and JSON that is not a request
/// object.
pub fn generated() -> Vec<BadPayload> {
    let mut out = Vec::new();
    let mut push = |field: Option<&str>, body: String| {
        out.push(BadPayload {
            field: field.map(str::to_string),
            body,
        })
    };
    for base in valid() {
        let Value::Object(fields) = &base else {
            unreachable!("payloads are objects")
        };
        for name in fields.keys() {
            // A missing `include_after_hours` is its default, not an error.
            if name != "include_after_hours" {
                let mut without: Map<String, Value> = fields.clone();
                without.remove(name);
                push(Some(name), Value::Object(without).to_string());
            }
            for wrong in wrong_values(name) {
                let mut changed = fields.clone();
                changed.insert(name.clone(), wrong);
                push(Some(name), Value::Object(changed).to_string());
            }
        }
        let mut extra = fields.clone();
        extra.insert("surprise".into(), json!(1));
        push(Some("surprise"), Value::Object(extra).to_string());
    }
    for text in ["[]", "\"AAPL\"", "42", "null", "{}", "true", "[{}]"] {
        push(None, text.to_string());
    }
    out
}

/// The payload fuzz target's committed corpus (`shared/fuzz/corpus/payload/`).
pub fn fuzz_corpus_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the testing crate lives in the workspace");
    workspace
        .join("shared")
        .join("fuzz")
        .join("corpus")
        .join("payload")
}

/// The corpus inputs that are JSON and that the request parser refuses, in file-name order.
pub fn fuzz_corpus() -> std::io::Result<Vec<BadPayload>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fuzz_corpus_dir())?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let bytes = std::fs::read(&path)?;
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        if serde_json::from_str::<Value>(&text).is_err() || MissRequest::from_json(&text).is_ok() {
            continue;
        }
        out.push(BadPayload {
            field: None,
            body: text,
        });
    }
    Ok(out)
}

/// [`generated`] and [`fuzz_corpus`] together.
pub fn all() -> std::io::Result<Vec<BadPayload>> {
    let mut out = generated();
    out.extend(fuzz_corpus()?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_payload_is_refused_by_the_parser_and_the_corpus_adds_some() {
        let corpus = fuzz_corpus().unwrap();
        assert!(
            !corpus.is_empty(),
            "no refused JSON in {:?}",
            fuzz_corpus_dir()
        );
        for payload in generated().iter().chain(&corpus) {
            assert!(
                MissRequest::from_json(&payload.body).is_err(),
                "accepted: {}",
                payload.body
            );
        }
        for base in valid() {
            MissRequest::from_json(&base.to_string()).expect("a valid payload parses");
        }
    }

    #[test]
    fn a_message_names_the_field_only_in_one_of_its_forms() {
        let bad = BadPayload {
            field: Some("strike".into()),
            body: String::new(),
        };
        assert!(bad.is_named_by("field 'strike' must be positive"));
        assert!(bad.is_named_by("strike: not a number"));
        assert!(!bad.is_named_by("the request is wrong"));
        assert!(!bad.is_named_by("strikes"));
    }
}
