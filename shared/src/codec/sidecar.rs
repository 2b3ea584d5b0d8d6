//! The `<file>.meta.json` sidecar in lumibot's exact format (`json.dumps(payload, indent=2)`).
//!
//! lumibot deletes and refetches a file whose sidecar disagrees with it, so `rows`,
//! `placeholders`, `checksum`, `min` and `max` are derived from the very bytes written.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{BatchFacts, CodecError};
use crate::dataset::Payload;
use crate::pyfmt;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sidecar {
    pub version: u32,
    pub rows: u64,
    pub real_rows: u64,
    pub placeholders: u64,
    pub min: Option<String>,
    pub max: Option<String>,
    pub checksum: Option<String>,
    pub updated: String,
    /// The remote payload of the file (lumibot 4.6), with ISO dates; for options it carries
    /// the `provider_expiration` the provider was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_payload: Option<Payload>,
}

impl Sidecar {
    /// The sidecar of a parquet whose rows have `facts` and whose bytes hash to `checksum`.
    pub fn new(facts: &BatchFacts, checksum: &str, updated: DateTime<Utc>) -> Self {
        Sidecar {
            version: crate::format::SIDECAR_VERSION,
            rows: facts.rows as u64,
            real_rows: facts.real_rows as u64,
            placeholders: facts.placeholders as u64,
            min: facts.min.map(pyfmt::pandas_utc_isoformat),
            max: facts.max.map(pyfmt::pandas_utc_isoformat),
            checksum: Some(checksum.to_string()),
            updated: pyfmt::python_utc_isoformat_z(updated),
            cache_payload: None,
        }
    }

    /// The same sidecar recording the file's remote payload, as lumibot 4.6 writes it.
    pub fn with_payload(mut self, payload: Payload) -> Self {
        self.cache_payload = Some(payload);
        self
    }

    /// The bytes Python's `json.dumps(payload, indent=2)` writes (no trailing newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a sidecar always serializes")
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, CodecError> {
        serde_json::from_slice(bytes).map_err(|e| CodecError::Sidecar(e.to_string()))
    }

    /// Every field lumibot compares that differs from `other` (`updated` is not compared).
    pub fn disagreements(&self, other: &Sidecar) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |name: &str, a: String, b: String| {
            if a != b {
                out.push(format!("{name}: sidecar says {a}, file has {b}"));
            }
        };
        check("rows", self.rows.to_string(), other.rows.to_string());
        check(
            "placeholders",
            self.placeholders.to_string(),
            other.placeholders.to_string(),
        );
        check(
            "checksum",
            format!("{:?}", self.checksum),
            format!("{:?}", other.checksum),
        );
        check("min", format!("{:?}", self.min), format!("{:?}", other.min));
        check("max", format!("{:?}", self.max), format!("{:?}", other.max));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// lumibot 4.6.30 wrote this sidecar for TSLA 2024-11-22 340.0 CALL minute ohlc.
    const LUMIBOT_OPTION_SIDECAR: &str = r#"{
  "version": 2,
  "rows": 3,
  "real_rows": 3,
  "placeholders": 0,
  "min": "2024-11-15T14:30:00+00:00",
  "max": "2024-11-15T14:32:00+00:00",
  "checksum": "d076f15b3151f5b0a8bfaa72bd318ce034453c4e161d5b493755539d6013e5fd",
  "updated": "2026-12-02T09:39:53.537738Z",
  "cache_payload": {
    "provider": "thetadata",
    "timespan": "minute",
    "datastyle": "ohlc",
    "asset_type": "option",
    "symbol": "TSLA",
    "expiration": "2024-11-22",
    "strike": 340.0,
    "right": "CALL",
    "provider_expiration": "2024-11-22"
  }
}"#;

    #[test]
    fn lumibots_cache_payload_is_read_and_written_byte_for_byte() {
        let parsed = Sidecar::parse(LUMIBOT_OPTION_SIDECAR.as_bytes()).unwrap();
        let payload = parsed.cache_payload.clone().unwrap();
        assert_eq!(payload.provider_expiration, "2024-11-22".parse().ok());
        assert_eq!(parsed.to_json(), LUMIBOT_OPTION_SIDECAR);
        let dataset = crate::dataset::Dataset::from_json(
            r#"{"provider":"thetadata","asset_type":"option","symbol":"TSLA","timespan":"minute","datastyle":"ohlc","expiration":"2024-11-22","strike":340.0,"right":"CALL"}"#,
        )
        .unwrap();
        let ours = Payload {
            provider_expiration: "2024-11-22".parse().ok(),
            ..dataset.payload()
        };
        assert_eq!(ours, payload, "our payload for the dataset is lumibot's");
    }

    #[test]
    fn matches_python_json_dumps_indent_2() {
        let facts = BatchFacts {
            rows: 3,
            real_rows: 2,
            placeholders: 1,
            min: Some(1_726_493_400_000_000_000),
            max: Some(1_726_516_800_000_000_000),
        };
        let updated = Utc.with_ymd_and_hms(2025, 1, 2, 3, 4, 5).unwrap()
            + chrono::Duration::microseconds(123_456);
        let text = Sidecar::new(&facts, "ab12", updated).to_json();
        // What CPython 3.11 prints for the same dict with json.dumps(payload, indent=2).
        let python = "{\n  \"version\": 2,\n  \"rows\": 3,\n  \"real_rows\": 2,\n  \"placeholders\": 1,\n  \"min\": \"2024-09-16T13:30:00+00:00\",\n  \"max\": \"2024-09-16T20:00:00+00:00\",\n  \"checksum\": \"ab12\",\n  \"updated\": \"2025-01-02T03:04:05.123456Z\"\n}";
        assert_eq!(text, python);
        assert_eq!(Sidecar::parse(text.as_bytes()).unwrap().rows, 3);
    }

    #[test]
    fn empty_file_has_null_bounds() {
        let text = Sidecar::new(&BatchFacts::default(), "x", Utc::now()).to_json();
        assert!(text.contains("\"min\": null"));
    }
}
