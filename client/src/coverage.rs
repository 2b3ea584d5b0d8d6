//! Which sessions a cached file answers for, decided as cheaply as possible and exactly as
//! the fill engine decides it (DESIGN §5), so the client never asks for a fill the engine
//! would answer with `hit`, and never serves a file the engine would extend.
//!
//! Cheapest first: the `cachefill-coverage` user metadata of a HEAD (no body); else the
//! sidecar's `min`/`max` (a small JSON) rules out ranges outside the file's span; else the
//! parquet itself: its `cachefill.coverage`/`cachefill.provisional` footer facts, or its rows.
//! The HEAD metadata lists young placeholders as covered, so a body is always checked before
//! it is served.

use std::collections::BTreeSet;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use cachefill_core::calendar;
use cachefill_core::codec::{self, CodecError, META_PREFIX, Sidecar};
use cachefill_core::fill::coverage::{self, Coverage};
use cachefill_core::fill::engine::COVERAGE_METADATA;
use cachefill_core::storage::ObjectMeta;

/// Sessions a file answers for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Covered {
    /// Sessions with a real row or a placeholder.
    pub sessions: BTreeSet<NaiveDate>,
    /// Placeholder sessions not trusted yet (the provider may publish later).
    pub untrusted: BTreeSet<NaiveDate>,
}

impl Covered {
    /// The wanted sessions this file does not answer for.
    pub fn missing(&self, wanted: &[NaiveDate]) -> Vec<NaiveDate> {
        wanted
            .iter()
            .copied()
            .filter(|d| !self.sessions.contains(d) || self.untrusted.contains(d))
            .collect()
    }

    pub fn covers(&self, wanted: &[NaiveDate]) -> bool {
        self.missing(wanted).is_empty()
    }

    fn from_engine(coverage: &Coverage) -> Self {
        Covered {
            sessions: coverage.all_sessions(),
            untrusted: coverage.provisional.clone(),
        }
    }
}

/// The sessions an object's HEAD claims, when it carries `cachefill-coverage`.
pub fn claimed(meta: &ObjectMeta) -> Option<BTreeSet<NaiveDate>> {
    coverage::parse_ranges(meta.metadata.get(COVERAGE_METADATA)?)
}

/// Whether every wanted session is in the claimed set.
pub fn claim_covers(claimed: &BTreeSet<NaiveDate>, wanted: &[NaiveDate]) -> bool {
    wanted.iter().all(|d| claimed.contains(d))
}

/// Whether a file whose sidecar says it spans `min..max` cannot hold every wanted session.
pub fn sidecar_rules_out(sidecar: &Sidecar, wanted: &[NaiveDate]) -> bool {
    let Some((first, last)) = wanted.first().zip(wanted.last()) else {
        return false;
    };
    let date = |text: &Option<String>| {
        text.as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| calendar::ny_date(t.to_utc()))
    };
    match (date(&sidecar.min), date(&sidecar.max)) {
        (Some(min), Some(max)) => *first < min || *last > max,
        // An empty file holds nothing.
        _ => sidecar.rows == 0,
    }
}

/// Exact coverage of a parquet body, as the fill engine computes it. Files written by the
/// engine carry it in their footer; others (lumibot's own writes) are read row by row, and
/// their placeholders written less than two days after their session are not trusted.
pub fn of_parquet(bytes: &Bytes, last_modified: DateTime<Utc>) -> Result<Covered, CodecError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())?;
    let footer = builder.metadata().file_metadata().key_value_metadata();
    let fact = |name: &str| {
        let wanted = format!("{META_PREFIX}{name}");
        footer
            .and_then(|kvs| kvs.iter().find(|kv| kv.key == wanted))
            .and_then(|kv| kv.value.clone())
    };
    if fact("schema_version").is_some()
        && let Some(sessions) = fact("coverage").as_deref().and_then(coverage::parse_ranges)
    {
        return Ok(Covered {
            sessions,
            untrusted: fact("provisional")
                .as_deref()
                .map(coverage::parse_dates)
                .unwrap_or_default(),
        });
    }
    let decoded = codec::decode(bytes.clone())?;
    let all = Coverage::of_batch(&decoded.batch, BTreeSet::new())?;
    let young = all
        .placeholders
        .iter()
        .copied()
        .filter(|d| coverage::is_provisional(*d, last_modified))
        .collect();
    Ok(Covered::from_engine(&Coverage::of_batch(
        &decoded.batch,
        young,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn untrusted_placeholders_are_missing() {
        let covered = Covered {
            sessions: [d("2024-01-02"), d("2024-01-03")].into(),
            untrusted: [d("2024-01-03")].into(),
        };
        assert_eq!(
            covered.missing(&[d("2024-01-02"), d("2024-01-03"), d("2024-01-04")]),
            vec![d("2024-01-03"), d("2024-01-04")]
        );
        assert!(covered.covers(&[d("2024-01-02")]));
        assert!(covered.covers(&[]));
    }

    #[test]
    fn sidecar_span_rules_out_ranges_outside_it() {
        let sidecar = Sidecar {
            version: 2,
            rows: 3,
            real_rows: 3,
            placeholders: 0,
            min: Some("2024-01-02T21:00:00+00:00".into()),
            max: Some("2024-01-04T21:00:00+00:00".into()),
            checksum: Some("x".into()),
            updated: "2024-01-05T00:00:00Z".into(),
        };
        assert!(!sidecar_rules_out(
            &sidecar,
            &[d("2024-01-02"), d("2024-01-04")]
        ));
        assert!(sidecar_rules_out(
            &sidecar,
            &[d("2024-01-04"), d("2024-01-05")]
        ));
        assert!(sidecar_rules_out(&sidecar, &[d("2023-12-29")]));
        assert!(!sidecar_rules_out(&sidecar, &[]));
    }
}
