//! One "an object was written" notification, whatever delivered it: an S3 event record
//! (directly, or relayed through SQS), or the embedded store after its own write.
//!
//! S3 sends keys URL-encoded the way HTML forms are (`+` for a space, `%XX` for other
//! bytes); some S3 stand-ins also encode `/` as `%2F`. [`decode_key`] undoes both.

use chrono::{DateTime, Utc};
use percent_encoding::percent_decode_str;
use serde::Serialize;

/// S3's notification that only checks the destination is reachable.
pub const TEST_EVENT: &str = "s3:TestEvent";

/// A storage-agnostic event record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EventRecord {
    pub bucket: String,
    /// The decoded key.
    pub key: String,
    /// `None` when the sender does not report versions (some S3 stand-ins): the validator
    /// then judges the current version.
    pub version_id: Option<String>,
    pub etag: Option<String>,
    /// S3's per-key ordering token (hex), when sent.
    pub sequencer: Option<String>,
    pub event_time: Option<DateTime<Utc>>,
    /// `ObjectCreated:Put`, `ObjectCreated:Copy`, `s3:TestEvent`, …
    pub event_name: Option<String>,
    /// Who wrote the object (the IAM principal), when the sender says.
    pub principal: Option<String>,
    pub source_ip: Option<String>,
    pub size: Option<u64>,
}

impl EventRecord {
    /// A record for `key` in `bucket`; the other facts are added with the `with_*` methods.
    pub fn new(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        EventRecord {
            bucket: bucket.into(),
            key: key.into(),
            ..Default::default()
        }
    }

    pub fn with_version(mut self, version_id: Option<String>, etag: Option<String>) -> Self {
        self.version_id = version_id;
        self.etag = etag;
        self
    }

    pub fn with_event(mut self, name: impl Into<String>, time: DateTime<Utc>) -> Self {
        self.event_name = Some(name.into());
        self.event_time = Some(time);
        self
    }

    pub fn with_principal(mut self, principal: impl Into<String>) -> Self {
        self.principal = Some(principal.into());
        self
    }

    /// S3's `s3:TestEvent`, sent once when a notification is configured.
    pub fn is_test_event(&self) -> bool {
        self.event_name.as_deref() == Some(TEST_EVENT)
    }

    /// Whether the event reports a write (`ObjectCreated:*`). A record without a name is
    /// taken as a write: the embedded store only reports writes.
    pub fn is_object_created(&self) -> bool {
        self.event_name.as_deref().is_none_or(|name| {
            let name = name.strip_prefix("s3:").unwrap_or(name);
            name.starts_with("ObjectCreated:")
        })
    }
}

/// Why an event's key cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The decoded bytes are not UTF-8: the key was encoded by something other than S3.
    #[error("event key {raw:?} does not decode to UTF-8")]
    NotUtf8 { raw: String },
    /// `%` not followed by two hex digits.
    #[error("event key {raw:?} has a malformed percent escape at byte {at}")]
    BadEscape { raw: String, at: usize },
}

/// Decode an S3 event key: `+` is a space, `%XX` a byte (so `%2B` is `+` and `%2F` is `/`).
/// A `%` not followed by two hex digits is an error, never passed through.
pub fn decode_key(raw: &str) -> Result<String, EventError> {
    let bytes = raw.as_bytes();
    if let Some(at) = bytes.iter().enumerate().position(|(i, b)| {
        *b == b'%'
            && !bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    }) {
        return Err(EventError::BadEscape {
            raw: raw.to_string(),
            at,
        });
    }
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|key| key.into_owned())
        .map_err(|_| EventError::NotUtf8 {
            raw: raw.to_string(),
        })
}

/// Compare two S3 sequencers of one key: right-pad the shorter with zeros, then compare
/// as text (S3's documented rule; hex digits compared case-insensitively).
pub fn compare_sequencers(a: &str, b: &str) -> std::cmp::Ordering {
    let width = a.len().max(b.len());
    let pad = |s: &str| format!("{:0<width$}", s.to_ascii_uppercase());
    pad(a).cmp(&pad(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn plus_is_a_space_and_percent_escapes_are_bytes() {
        assert_eq!(
            decode_key("v1/thetadata/stock/minute/ohlc/stock_BRK.B_minute_ohlc.parquet").unwrap(),
            "v1/thetadata/stock/minute/ohlc/stock_BRK.B_minute_ohlc.parquet"
        );
        assert_eq!(decode_key("a+b%2Bc").unwrap(), "a b+c");
        assert_eq!(decode_key("caf%C3%A9").unwrap(), "café");
    }

    #[test]
    fn an_encoded_slash_becomes_a_slash() {
        // moto percent-encodes every '/' of the key.
        assert_eq!(
            decode_key(
                "stage%2Fcache%2Fv3%2Fthetadata%2Fstock%2Fday%2Fohlc%2Fstock_SPY_day_ohlc.parquet"
            )
            .unwrap(),
            "stage/cache/v3/thetadata/stock/day/ohlc/stock_SPY_day_ohlc.parquet"
        );
        assert_eq!(decode_key("a%2fb").unwrap(), "a/b", "lower-case hex too");
    }

    #[test]
    fn a_temp_upload_key_keeps_its_marker() {
        assert_eq!(
            decode_key("v1/x.parquet.tmp-1712345678-ab12").unwrap(),
            "v1/x.parquet.tmp-1712345678-ab12"
        );
    }

    #[test]
    fn malformed_escapes_and_non_utf8_are_errors() {
        assert!(matches!(
            decode_key("a%2"),
            Err(EventError::BadEscape { at: 1, .. })
        ));
        assert!(matches!(
            decode_key("a%zzb"),
            Err(EventError::BadEscape { .. })
        ));
        assert!(matches!(
            decode_key("%FF%FE"),
            Err(EventError::NotUtf8 { .. })
        ));
    }

    #[test]
    fn sequencers_compare_after_right_padding() {
        assert_eq!(
            compare_sequencers("0055AED6DCD90281E5", "0055AED6DCD90281E6"),
            Ordering::Less
        );
        // "0055AED6DCD9028" padded is "0055AED6DCD902800…" — smaller than the longer one.
        assert_eq!(
            compare_sequencers("0055AED6DCD9028", "0055AED6DCD90281E5"),
            Ordering::Less
        );
        assert_eq!(compare_sequencers("ab", "AB"), Ordering::Equal);
        assert_eq!(compare_sequencers("1", "0F"), Ordering::Greater);
    }

    #[test]
    fn created_and_test_events_are_told_apart() {
        let base = EventRecord::new("b", "k");
        assert!(
            base.is_object_created(),
            "the embedded store names no event"
        );
        let put = base.clone().with_event("ObjectCreated:Put", Utc::now());
        assert!(put.is_object_created() && !put.is_test_event());
        let test = base.clone().with_event(TEST_EVENT, Utc::now());
        assert!(test.is_test_event() && !test.is_object_created());
        let removed = base.with_event("ObjectRemoved:Delete", Utc::now());
        assert!(!removed.is_object_created());
    }
}
