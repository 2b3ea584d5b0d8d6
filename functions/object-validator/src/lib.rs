//! The object-validator Lambda's handler: S3 `ObjectCreated` events in, one verdict per
//! record out (`docs/VALIDATOR.md`). The judging itself lives in `cachefill_core::validate`.
//!
//! The payload is S3's event (`aws_lambda_events` `S3Event`), as S3 invokes the function
//! directly (and as a replay from the dead-letter queue sends it again); the bare
//! `s3:TestEvent` message S3 sends when a notification is configured is accepted too.
//!
//! Every record is judged on its own; a record whose judgement failed for a reason that
//! may pass (an outage, contention) fails the invocation after all others were judged, so
//! the platform delivers it again — the records already judged are no-ops the second time.

use std::io::Write;

use aws_lambda_events::event::s3::{S3Event, S3EventRecord};
use cachefill_core::errors::ErrorType;
use cachefill_core::storage::ObjectStore;
use cachefill_core::validate::audit::{self, NAMESPACE};
use cachefill_core::validate::event::{EventError, EventRecord, TEST_EVENT, decode_key};
use cachefill_core::validate::{Outcome, Validator, Verdict};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Serialize;
use serde_json::Value;

/// A failed invocation; its `errorType` says whether delivering the event again may help.
#[derive(Debug)]
pub struct HandlerError {
    /// `StorageConflict` (deliver again), `InvalidRequest` (never), or `Internal`.
    pub error_type: ErrorType,
    pub message: String,
}

impl From<HandlerError> for Diagnostic {
    fn from(e: HandlerError) -> Self {
        Diagnostic {
            error_type: e.error_type.as_str().to_string(),
            error_message: e.message,
        }
    }
}

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

fn invalid_event(message: impl Into<String>) -> HandlerError {
    HandlerError {
        error_type: ErrorType::InvalidRequest,
        message: message.into(),
    }
}

/// The record of an S3 event as the validator takes it (the key decoded).
pub fn record_of(record: &S3EventRecord) -> Result<EventRecord, EventError> {
    let object = &record.s3.object;
    let key = match (&object.key, &object.url_decoded_key) {
        (Some(raw), _) => decode_key(raw)?,
        (None, Some(decoded)) => decoded.clone(),
        (None, None) => String::new(),
    };
    Ok(EventRecord {
        bucket: record.s3.bucket.name.clone().unwrap_or_default(),
        key,
        version_id: object.version_id.clone().filter(|v| !v.is_empty()),
        etag: object.e_tag.clone().filter(|e| !e.is_empty()),
        sequencer: object.sequencer.clone().filter(|s| !s.is_empty()),
        event_time: Some(record.event_time),
        event_name: record.event_name.clone(),
        principal: record.principal_id.principal_id.clone(),
        source_ip: record.request_parameters.source_ip_address.clone(),
        size: object.size.and_then(|s| u64::try_from(s).ok()),
    })
}

/// S3's `{"Service":"Amazon S3","Event":"s3:TestEvent",…}` message.
fn test_event(payload: &Value) -> Option<EventRecord> {
    (payload.get("Event").and_then(Value::as_str) == Some(TEST_EVENT)).then(|| EventRecord {
        bucket: payload
            .get("Bucket")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        event_name: Some(TEST_EVENT.to_string()),
        ..Default::default()
    })
}

/// Every record of an invocation payload, in order. A record whose key does not decode is
/// an `Err` in its place; the others are unaffected.
pub fn records_of(payload: &Value) -> Result<Vec<Result<EventRecord, EventError>>, HandlerError> {
    if let Some(test) = test_event(payload) {
        return Ok(vec![Ok(test)]);
    }
    let event: S3Event = serde_json::from_value(payload.clone())
        .map_err(|e| invalid_event(format!("not an S3 event: {e}")))?;
    Ok(event.records.iter().map(record_of).collect())
}

/// One record's line in the invocation's answer.
#[derive(Debug, Clone, Serialize)]
pub struct RecordSummary {
    pub key: String,
    pub version_id: Option<String>,
    pub verdict: &'static str,
    pub detail: Option<String>,
}

/// What an invocation did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub records: usize,
    pub valid: usize,
    pub quarantined: usize,
    pub duplicates: usize,
    /// Other objects lumibot keeps (chains, events, snapshots, …), looked at and left alone.
    pub recognised: usize,
    pub skipped: usize,
    /// Records that could not be judged and will not be retried (undecodable keys, a
    /// manifest that is not ours).
    pub failed: usize,
    pub verdicts: Vec<RecordSummary>,
}

impl Summary {
    fn add(&mut self, verdict: &Verdict) {
        let detail = match &verdict.outcome {
            Outcome::Valid => {
                self.valid += 1;
                None
            }
            Outcome::Quarantined { restore } => {
                self.quarantined += 1;
                Some(restore.action().to_string())
            }
            Outcome::Duplicate => {
                self.duplicates += 1;
                None
            }
            Outcome::Recognised => {
                self.recognised += 1;
                let kind = verdict.other.map(|k| k.as_str()).unwrap_or_default();
                Some(if verdict.notes.is_empty() {
                    kind.to_string()
                } else {
                    format!("{kind}: {}", verdict.notes.join("; "))
                })
            }
            Outcome::Skipped(why) => {
                self.skipped += 1;
                Some(why.to_string())
            }
        };
        self.verdicts.push(RecordSummary {
            key: verdict.event.key.clone(),
            version_id: verdict.version_id.clone(),
            verdict: verdict.outcome.name(),
            detail,
        });
    }

    fn fail(&mut self, key: String, message: String) {
        self.failed += 1;
        self.verdicts.push(RecordSummary {
            key,
            version_id: None,
            verdict: "failed",
            detail: Some(message),
        });
    }
}

/// Judge every record of the payload and write one CloudWatch EMF line per judged object
/// to `metrics` (the function's stdout).
pub async fn handle<S: ObjectStore>(
    validator: &Validator<S>,
    event: LambdaEvent<Value>,
    metrics: &mut (dyn Write + Send),
) -> Result<Summary, HandlerError> {
    let request_id = event.context.request_id.clone();
    let records = records_of(&event.payload)?;
    let mut summary = Summary {
        records: records.len(),
        ..Default::default()
    };
    let mut retry = Vec::new();
    for record in records {
        let record = match record {
            Ok(record) => record,
            Err(e) => {
                tracing::error!(request_id = %request_id, error = %e, "undecodable record");
                summary.fail(String::new(), e.to_string());
                continue;
            }
        };
        match validator.judge(&record).await {
            Ok(verdict) => {
                if let Some(line) = audit::emf_line(NAMESPACE, &verdict, validator.now()) {
                    writeln!(metrics, "{line}").map_err(|e| HandlerError {
                        error_type: ErrorType::Internal,
                        message: format!("cannot write metrics: {e}"),
                    })?;
                }
                summary.add(&verdict);
            }
            Err(e) if e.is_retryable() => {
                tracing::warn!(request_id = %request_id, key = %record.key, error = %e, "will be retried");
                retry.push(format!("{}: {e}", record.key));
            }
            Err(e) => {
                tracing::error!(request_id = %request_id, key = %record.key, error = %e, "cannot be judged");
                summary.fail(record.key.clone(), e.to_string());
            }
        }
    }
    if !retry.is_empty() {
        return Err(HandlerError {
            error_type: ErrorType::StorageConflict,
            message: format!(
                "{} of {} records could not be judged yet: {}",
                retry.len(),
                summary.records,
                retry.join("; ")
            ),
        });
    }
    tracing::info!(
        request_id = %request_id,
        records = summary.records,
        valid = summary.valid,
        quarantined = summary.quarantined,
        duplicates = summary.duplicates,
        skipped = summary.skipped,
        failed = summary.failed,
        "batch judged"
    );
    Ok(summary)
}
