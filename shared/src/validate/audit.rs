//! The audit trail: one JSON record per judged object, and CloudWatch metrics.
//!
//! Records live at `<prefix>/_audit/dt=YYYY-MM-DD/<time>-<hash>.json`, one JSON object per
//! file on one newline-terminated line, so Athena reads the folder as JSON lines
//! partitioned by `dt` (DDL in docs/VALIDATOR.md). Metrics are CloudWatch Embedded Metric
//! Format lines: a JSON log line whose `_aws` member tells CloudWatch which of its members
//! are metrics.

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::json;

use super::quarantine::ObjectKind;
use super::validator::{Outcome, Restore, Verdict};
use crate::keys::KeyLayout;
use crate::others::OtherKind;
use crate::rules::Violation;
use crate::storage::{ObjectStore, PutMode, PutOptions, StorageError};

/// CloudWatch namespace of the validator's metrics.
pub const NAMESPACE: &str = "cachefill";

/// What became of the key after a rejection, flattened for queries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoreRecord {
    /// `restored`, `regenerated`, `deleted` or `superseded`.
    pub action: &'static str,
    /// The validated version put back (for `restored`).
    pub version_id: Option<String>,
}

impl RestoreRecord {
    fn of(restore: &Restore) -> Self {
        RestoreRecord {
            action: restore.action(),
            version_id: restore.restored_to().map(str::to_string),
        }
    }
}

/// One audit record (one line of JSON).
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    pub bucket: String,
    pub key: String,
    pub kind: Option<ObjectKind>,
    /// Another object lumibot keeps (`option_chain`, `events`, …), when the key names one.
    pub other_kind: Option<OtherKind>,
    /// What was noticed in such an object.
    pub notes: Vec<String>,
    pub version_id: Option<String>,
    pub etag: Option<String>,
    pub sha256: Option<String>,
    /// `valid`, `quarantined`, `duplicate`, `recognised` or `skipped`.
    pub verdict: &'static str,
    /// Why a record was skipped.
    pub reason: Option<String>,
    pub violations: Vec<Violation>,
    pub restore: Option<RestoreRecord>,
    pub bytes: Option<u64>,
    pub rows: Option<u64>,
    pub elapsed_ms: u64,
    pub event_time: Option<String>,
    pub event_name: Option<String>,
    pub principal: Option<String>,
    pub source_ip: Option<String>,
    pub sequencer: Option<String>,
    pub validated_at: String,
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl AuditRecord {
    pub fn of(verdict: &Verdict, at: DateTime<Utc>) -> Self {
        let event = &verdict.event;
        AuditRecord {
            bucket: event.bucket.clone(),
            key: event.key.clone(),
            kind: verdict.kind,
            other_kind: verdict.other,
            notes: verdict.notes.clone(),
            version_id: verdict.version_id.clone(),
            etag: verdict.etag.clone(),
            sha256: verdict.sha256.clone(),
            verdict: verdict.outcome.name(),
            reason: match &verdict.outcome {
                Outcome::Skipped(why) => Some(why.to_string()),
                _ => None,
            },
            violations: verdict.violations.clone(),
            restore: match &verdict.outcome {
                Outcome::Quarantined { restore } => Some(RestoreRecord::of(restore)),
                _ => None,
            },
            bytes: verdict.bytes,
            rows: verdict.rows,
            elapsed_ms: verdict.elapsed_ms,
            event_time: event.event_time.map(rfc3339),
            event_name: event.event_name.clone(),
            principal: event.principal.clone(),
            source_ip: event.source_ip.clone(),
            sequencer: event.sequencer.clone(),
            validated_at: rfc3339(at),
        }
    }

    /// The record as one newline-terminated line of JSON.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("an audit record always serializes") + "\n"
    }
}

/// `<prefix>/_audit/dt=YYYY-MM-DD/<time>-<hash>.json` for a record written at `at`.
pub fn key_for(layout: &KeyLayout, record: &AuditRecord, at: DateTime<Utc>) -> String {
    // The random part keeps two judgements of one object in the same millisecond apart.
    let hash = crate::codec::sha256_hex(
        format!(
            "{}\n{:?}\n{}\n{}\n{:016x}",
            record.key,
            record.version_id,
            record.verdict,
            at.timestamp_nanos_opt().unwrap_or_default(),
            fastrand::u64(..)
        )
        .as_bytes(),
    );
    format!(
        "{}{}-{}.json",
        layout.audit_prefix(at.date_naive()),
        at.format("%Y%m%dT%H%M%S%.3fZ"),
        &hash[..16]
    )
}

/// Write one audit record; returns its key.
pub async fn write(
    store: &dyn ObjectStore,
    layout: &KeyLayout,
    record: &AuditRecord,
    at: DateTime<Utc>,
) -> Result<String, StorageError> {
    let key = key_for(layout, record, at);
    let options = PutOptions {
        mode: PutMode::IfAbsent,
        content_type: Some(crate::format::JSON_CONTENT_TYPE.into()),
        ..Default::default()
    };
    store
        .put(&key, Bytes::from(record.to_line()), options)
        .await?;
    Ok(key)
}

/// The CloudWatch EMF line of one judgement, or `None` for duplicates, skips and other
/// objects lumibot keeps (nothing was validated).
pub fn emf_line(namespace: &str, verdict: &Verdict, at: DateTime<Utc>) -> Option<String> {
    let (validated, quarantined) = match verdict.outcome {
        Outcome::Valid => (1, 0),
        Outcome::Quarantined { .. } => (0, 1),
        Outcome::Duplicate | Outcome::Skipped(_) | Outcome::Recognised => return None,
    };
    let line = json!({
        "_aws": {
            "Timestamp": at.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["Bucket"]],
                "Metrics": [
                    {"Name": "ObjectsValidated", "Unit": "Count"},
                    {"Name": "ObjectsQuarantined", "Unit": "Count"},
                    {"Name": "ValidationMs", "Unit": "Milliseconds"},
                ],
            }],
        },
        "Bucket": verdict.event.bucket,
        "ObjectsValidated": validated,
        "ObjectsQuarantined": quarantined,
        "ValidationMs": verdict.elapsed_ms,
        "key": verdict.event.key,
        "version_id": verdict.version_id,
        "verdict": verdict.outcome.name(),
    });
    Some(line.to_string())
}
