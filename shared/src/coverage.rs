//! Coverage: which NYSE sessions a file already answers for (`docs/ARCHITECTURE.md` §4).
//! The one place this is decided: the fill engine and the client both ask here.
//!
//! A session is covered when the file has a real row or a trusted placeholder on it.
//! Placeholders written less than two days after their session closed are provisional:
//! the provider may not have published yet, so they are fetched again.
//!
//! Cheapest evidence first, for readers that have not downloaded a body: the
//! `cachefill-coverage` user metadata of a HEAD ([`claimed`]; it lists young placeholders as
//! covered, so a body is always checked before it is served); the sidecar's `min`/`max`
//! ([`sidecar_rules_out`]); then the parquet itself ([`of_parquet`]): its footer facts when we
//! wrote it, else its rows.

use std::collections::{BTreeMap, BTreeSet};

use arrow_array::RecordBatch;
use bytes::Bytes;
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::calendar::{self, CalendarError, NyDates};
use crate::codec::facts::{datetimes, placeholder_mask};
use crate::codec::schema::Layout;
use crate::codec::{self, BatchFacts, CodecError, Decoded, Sidecar};
use crate::dataset::Dataset;
use crate::format::{
    COVERAGE_METADATA, FACT_COVERAGE, FACT_OUTLINE, FACT_PROVISIONAL, FACT_SCHEMA_VERSION,
    MAX_COVERAGE_METADATA, PLACEHOLDERS_METADATA, SHA256_METADATA,
};
use crate::storage::ObjectMeta;

/// The session a row at `time` (UTC nanoseconds) belongs to: a real row's New York date; a
/// placeholder's UTC date, because every placeholder sits on its session's UTC date (16:00
/// New York or the open in ThetaData files, 04:56 UTC in lumibot's Polygon files, whose
/// New York date is the day before in winter).
pub fn row_session(dates: &mut NyDates, time: i64, placeholder: bool) -> NaiveDate {
    if placeholder {
        DateTime::from_timestamp_nanos(time).date_naive()
    } else {
        dates.date_of(time)
    }
}

/// Whether an intraday session must reach its open and close to count as covered (lumibot's
/// ThetaData rule). lumibot's Polygon files count a session covered by any row on its date,
/// so they get no edge markers either.
pub fn checks_edges(dataset: &Dataset) -> bool {
    dataset.is_intraday() && Layout::of(dataset) != Layout::Aggs
}

/// How long after a session's close a placeholder for it is trusted.
pub const PLACEHOLDER_TRUST_DELAY: Duration = Duration::days(2);

/// The sessions a file has, split by what is there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Sessions with at least one real row.
    pub real: BTreeSet<NaiveDate>,
    /// Sessions with only a placeholder.
    pub placeholders: BTreeSet<NaiveDate>,
    /// Placeholder sessions that are not trusted yet.
    pub provisional: BTreeSet<NaiveDate>,
    /// Intraday sessions with real rows that stop short of the session's open or close
    /// (lumibot refetches them; so does the engine, which then marks the edges).
    pub short: BTreeSet<NaiveDate>,
}

impl Coverage {
    /// Coverage of a batch; `provisional` lists placeholder sessions not to trust. With
    /// `edges` (intraday datasets), a session whose rows do not reach its open and its close
    /// within [`EDGE_TOLERANCE`] is [`short`](Coverage::short), as lumibot judges it.
    pub fn of_batch(
        batch: &RecordBatch,
        provisional: BTreeSet<NaiveDate>,
        edges: bool,
    ) -> Result<Self, CodecError> {
        let times = datetimes(batch)?;
        let missing = placeholder_mask(batch);
        let mut dates = NyDates::new();
        let mut real = BTreeSet::new();
        let mut placeholders = BTreeSet::new();
        // First and last instant of each session, placeholders included (lumibot's check
        // counts them).
        let mut span: BTreeMap<NaiveDate, (i64, i64)> = BTreeMap::new();
        // Rows come mostly in time order: a set or the span map is touched once per run of
        // rows of one session, not once per row.
        let (mut last_real, mut last_placeholder) = (None, None);
        let mut run: Option<(NaiveDate, i64, i64)> = None;
        let mut close_run = |run: (NaiveDate, i64, i64)| {
            let (date, first, last) = run;
            let entry = span.entry(date).or_insert((first, last));
            entry.0 = entry.0.min(first);
            entry.1 = entry.1.max(last);
        };
        for (i, time) in times.iter().enumerate() {
            let Some(time) = time else { continue };
            let date = row_session(&mut dates, time, missing[i]);
            let (seen, set) = if missing[i] {
                (&mut last_placeholder, &mut placeholders)
            } else {
                (&mut last_real, &mut real)
            };
            if *seen != Some(date) {
                set.insert(date);
                *seen = Some(date);
            }
            if edges {
                match &mut run {
                    Some((d, first, last)) if *d == date => {
                        *first = (*first).min(time);
                        *last = (*last).max(time);
                    }
                    _ => {
                        if let Some(done) = run.replace((date, time, time)) {
                            close_run(done);
                        }
                    }
                }
            }
        }
        if let Some(done) = run {
            close_run(done);
        }
        placeholders.retain(|d| !real.contains(d));
        let provisional = provisional
            .into_iter()
            .filter(|d| placeholders.contains(d))
            .collect();
        let short = real
            .iter()
            .copied()
            .filter(|d| {
                span.get(d)
                    .is_some_and(|(first, last)| edges_missing(*d, *first, *last) != (false, false))
            })
            .collect();
        Ok(Coverage {
            real,
            placeholders,
            provisional,
            short,
        })
    }

    /// Coverage of a file made of the rows `self` describes followed by those `later`
    /// describes, when no session has rows in both (each session's span is then in one of
    /// them); `provisional` as in [`Coverage::of_batch`].
    pub fn followed_by(self, later: Coverage, provisional: BTreeSet<NaiveDate>) -> Coverage {
        let mut real = self.real;
        real.extend(later.real);
        let mut placeholders = self.placeholders;
        placeholders.extend(later.placeholders);
        placeholders.retain(|d| !real.contains(d));
        let mut short = self.short;
        short.extend(later.short);
        Coverage {
            provisional: provisional
                .into_iter()
                .filter(|d| placeholders.contains(d))
                .collect(),
            real,
            placeholders,
            short,
        }
    }

    /// The wanted sessions this file does not answer for (as [`Covered::missing`]).
    pub fn missing(&self, wanted: &[NaiveDate]) -> Vec<NaiveDate> {
        Covered::from(self).missing(wanted)
    }

    /// Every session the file answers for, trusted or not (short sessions excluded).
    pub fn all_sessions(&self) -> BTreeSet<NaiveDate> {
        self.real
            .difference(&self.short)
            .chain(&self.placeholders)
            .copied()
            .collect()
    }
}

/// The sessions a file answers for, as far as a reader needs to know: everything covered,
/// and the placeholder sessions among them not to trust yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Covered {
    /// Sessions with a real row or a placeholder.
    pub sessions: BTreeSet<NaiveDate>,
    /// Placeholder sessions not trusted yet (the provider may publish later).
    pub untrusted: BTreeSet<NaiveDate>,
}

impl Covered {
    pub fn is_covered(&self, session: NaiveDate) -> bool {
        self.sessions.contains(&session) && !self.untrusted.contains(&session)
    }

    /// The wanted sessions this file does not answer for.
    pub fn missing(&self, wanted: &[NaiveDate]) -> Vec<NaiveDate> {
        wanted
            .iter()
            .copied()
            .filter(|d| !self.is_covered(*d))
            .collect()
    }

    pub fn covers(&self, wanted: &[NaiveDate]) -> bool {
        wanted.iter().all(|d| self.is_covered(*d))
    }
}

impl From<&Coverage> for Covered {
    fn from(coverage: &Coverage) -> Self {
        Covered {
            sessions: coverage.all_sessions(),
            untrusted: coverage.provisional.clone(),
        }
    }
}

/// Coverage of a decoded file whose rows (conformed to its dataset) are `batch`. Placeholders
/// not to trust: our own record of them in the footer, or, for files written elsewhere
/// (lumibot's own), placeholders that were young when the object was last modified.
pub fn of_decoded(
    dataset: &Dataset,
    decoded: &Decoded,
    batch: &RecordBatch,
    last_modified: DateTime<Utc>,
) -> Result<Coverage, CodecError> {
    let all = Coverage::of_batch(batch, BTreeSet::new(), checks_edges(dataset))?;
    let provisional = if decoded.fact(FACT_SCHEMA_VERSION).is_some() {
        recorded_provisional(&decoded.metadata)
    } else {
        young_placeholders(&all, last_modified)
    };
    Ok(Coverage {
        provisional: provisional
            .into_iter()
            .filter(|d| all.placeholders.contains(d))
            .collect(),
        ..all
    })
}

/// Exact coverage of a parquet body, decided as [`of_decoded`] decides it, without decoding
/// the rows when the footer carries our facts.
pub fn of_parquet(
    dataset: &Dataset,
    bytes: &Bytes,
    last_modified: DateTime<Utc>,
) -> Result<Covered, CodecError> {
    let builder = codec::guarded(|| ParquetRecordBatchReaderBuilder::try_new(bytes.clone()))?;
    let footer = builder.metadata().file_metadata().key_value_metadata();
    let fact = |key: &str| {
        footer
            .and_then(|kvs| kvs.iter().find(|kv| kv.key == key))
            .and_then(|kv| kv.value.clone())
    };
    if fact(FACT_SCHEMA_VERSION).is_some()
        && let Some(sessions) = fact(FACT_COVERAGE).as_deref().and_then(parse_ranges)
    {
        return Ok(Covered {
            sessions,
            untrusted: fact(FACT_PROVISIONAL)
                .as_deref()
                .map(parse_dates)
                .unwrap_or_default(),
        });
    }
    let decoded = codec::decode(bytes.clone())?;
    Ok(Covered::from(&of_decoded(
        dataset,
        &decoded,
        &decoded.batch,
        last_modified,
    )?))
}

/// What a file's `datetime` and `missing` columns tell about it: its coverage (without the
/// provisional placeholders, which [`FACT_PROVISIONAL`] records) and its facts. The writer
/// records it in the footer ([`FACT_OUTLINE`]), so a reader of a long file learns it from
/// the footer instead of decoding every row; the validator checks it against the rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outline {
    pub coverage: Coverage,
    pub facts: BatchFacts,
}

impl Outline {
    /// The outline of a batch's rows, `edges` as in [`Coverage::of_batch`].
    pub fn of_batch(batch: &RecordBatch, edges: bool) -> Result<Self, CodecError> {
        Outline::with_facts(batch, BatchFacts::of(batch)?, edges)
    }

    /// [`Outline::of_batch`] of a batch whose facts are known already.
    pub fn with_facts(
        batch: &RecordBatch,
        facts: BatchFacts,
        edges: bool,
    ) -> Result<Self, CodecError> {
        Ok(Outline {
            coverage: Coverage::of_batch(batch, BTreeSet::new(), edges)?,
            facts,
        })
    }

    /// The outline of a file made of the rows `self` describes followed by those `later`
    /// describes, when every session of `later` comes after every session of `self`.
    pub fn followed_by(self, later: Outline) -> Outline {
        Outline {
            facts: self.facts.followed_by(&later.facts),
            coverage: self.coverage.followed_by(later.coverage, BTreeSet::new()),
        }
    }

    /// The latest session with a row. In a file whose `datetime` strictly increases this is
    /// the session of its last row: a session's real rows lie within its New York date and
    /// its placeholder on its UTC date, so later rows never belong to earlier sessions.
    pub fn last_session(&self) -> Option<NaiveDate> {
        let real = self.coverage.real.last();
        let placeholder = self.coverage.placeholders.last();
        real.max(placeholder).copied()
    }

    /// The footer fact, or `None` when its session sets do not survive [`format_ranges`]
    /// (a row on a day that is not an NYSE session): a reader then decodes the rows.
    pub fn to_fact(&self) -> Option<String> {
        let sets = [
            &self.coverage.real,
            &self.coverage.placeholders,
            &self.coverage.short,
        ];
        let ranges: Vec<String> = sets.iter().map(|s| format_ranges(s)).collect();
        if sets
            .iter()
            .zip(&ranges)
            .any(|(set, text)| parse_ranges(text).as_ref() != Some(*set))
        {
            return None;
        }
        let facts = &self.facts;
        Some(
            serde_json::json!({
                "rows": facts.rows,
                "placeholder_rows": facts.placeholders,
                "min": facts.min,
                "max": facts.max,
                "real": ranges[0],
                "placeholders": ranges[1],
                "short": ranges[2],
            })
            .to_string(),
        )
    }

    /// Inverse of [`Outline::to_fact`]; `None` when the text is not well-formed.
    pub fn from_fact(text: &str) -> Option<Outline> {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        let count = |name: &str| usize::try_from(value.get(name)?.as_u64()?).ok();
        let bound = |name: &str| match value.get(name)? {
            serde_json::Value::Null => Some(None),
            v => v.as_i64().map(Some),
        };
        let sessions = |name: &str| parse_ranges(value.get(name)?.as_str()?);
        let rows = count("rows")?;
        let placeholders = count("placeholder_rows")?;
        Some(Outline {
            coverage: Coverage {
                real: sessions("real")?,
                placeholders: sessions("placeholders")?,
                provisional: BTreeSet::new(),
                short: sessions("short")?,
            },
            facts: BatchFacts {
                rows,
                real_rows: rows.checked_sub(placeholders)?,
                placeholders,
                min: bound("min")?,
                max: bound("max")?,
            },
        })
    }

    /// The text of the outline a footer records, when it is one of ours and records one.
    pub fn written(metadata: &BTreeMap<String, String>) -> Option<&str> {
        metadata.get(FACT_SCHEMA_VERSION)?;
        metadata.get(FACT_OUTLINE).map(String::as_str)
    }

    /// The outline a footer records, when it is one of ours and records one.
    pub fn in_footer(metadata: &BTreeMap<String, String>) -> Option<Outline> {
        Outline::from_fact(Outline::written(metadata)?)
    }

    /// This outline's coverage with the provisional placeholders a footer records.
    pub fn coverage_in(&self, metadata: &BTreeMap<String, String>) -> Coverage {
        self.coverage
            .clone()
            .followed_by(Coverage::default(), recorded_provisional(metadata))
    }
}

/// The placeholder sessions our footer records as not trusted yet ([`FACT_PROVISIONAL`]).
fn recorded_provisional(metadata: &BTreeMap<String, String>) -> BTreeSet<NaiveDate> {
    metadata
        .get(FACT_PROVISIONAL)
        .map(|text| parse_dates(text))
        .unwrap_or_default()
}

fn young_placeholders(all: &Coverage, written: DateTime<Utc>) -> BTreeSet<NaiveDate> {
    all.placeholders
        .iter()
        .copied()
        .filter(|d| is_provisional(*d, written))
        .collect()
}

/// The sessions an object's HEAD claims, when it carries `cachefill-coverage`. Young
/// placeholders count as covered there, so a claim rules a file out but never in.
pub fn claimed(meta: &ObjectMeta) -> Option<BTreeSet<NaiveDate>> {
    parse_ranges(meta.metadata.get(COVERAGE_METADATA)?)
}

/// User metadata of a parquet written with `coverage`: its checksum, and (when short
/// enough) its sessions and which of them are placeholders, so that a HEAD tells readers
/// what the object holds ([`claimed`], [`Claim::of`]).
pub fn object_metadata(coverage: &Coverage, sha256: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::from([(SHA256_METADATA.to_string(), sha256.to_string())]);
    let ranges = format_ranges(&coverage.all_sessions());
    let placeholders = serde_json::json!({
        "placeholders": format_ranges(&coverage.placeholders),
        "provisional": format_dates(&coverage.provisional),
    })
    .to_string();
    if ranges.len() + placeholders.len() <= MAX_COVERAGE_METADATA {
        out.insert(COVERAGE_METADATA.to_string(), ranges);
        out.insert(PLACEHOLDERS_METADATA.to_string(), placeholders);
    }
    out
}

/// What an object's HEAD says it holds, when it carries all of [`object_metadata`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub covered: Covered,
    /// Covered sessions with only a placeholder.
    pub placeholders: BTreeSet<NaiveDate>,
    /// The body's sha256.
    pub sha256: String,
}

impl Claim {
    pub fn of(meta: &ObjectMeta) -> Option<Claim> {
        let sessions = claimed(meta)?;
        let extra: serde_json::Value =
            serde_json::from_str(meta.metadata.get(PLACEHOLDERS_METADATA)?).ok()?;
        let placeholders = parse_ranges(extra.get("placeholders")?.as_str()?)?;
        let untrusted = parse_dates(extra.get("provisional")?.as_str()?);
        Some(Claim {
            covered: Covered {
                sessions,
                untrusted,
            },
            placeholders,
            sha256: meta.metadata.get(SHA256_METADATA)?.clone(),
        })
    }

    /// Whether some wanted session has real rows.
    pub fn has_data(&self, wanted: &[NaiveDate]) -> bool {
        wanted
            .iter()
            .any(|d| self.covered.sessions.contains(d) && !self.placeholders.contains(d))
    }
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

/// How far from a session's open and close an intraday file's rows may stop (lumibot's
/// `get_price_data` refetches the first or last day of a request otherwise).
pub const EDGE_TOLERANCE: Duration = Duration::minutes(2);

/// The session's open and close as UTC nanoseconds (late opens and early closes included).
fn edges_of(session: NaiveDate) -> Option<(i64, i64)> {
    let hours = calendar::session_hours(session).ok()??;
    let at = |t: NaiveTime| calendar::ny_wall_to_utc(session, t).timestamp_nanos_opt();
    Some((at(hours.open)?, at(hours.close)?))
}

/// Whether rows of `session` from `first` to `last` (UTC nanoseconds) fall short of its open
/// (`.0`) and of its close (`.1`) by more than [`EDGE_TOLERANCE`].
pub fn edges_missing(session: NaiveDate, first: i64, last: i64) -> (bool, bool) {
    let Some((open, close)) = edges_of(session) else {
        return (false, false);
    };
    let tolerance = EDGE_TOLERANCE.num_nanoseconds().expect("minutes fit");
    (first > open + tolerance, last < close - tolerance)
}

/// Placeholders that make a fetched intraday session's edges explicit for lumibot: one at
/// the open when the first row comes later, one at 16:00 New York when the last row stops
/// before the close. lumibot leaves the same 16:00 placeholder when a refetch finds nothing
/// more. lumibot drops placeholders from the frames it returns, except for options in a
/// backtest (`preserve_full_history`), and pandas reads the integer columns of a file with
/// a placeholder as float64 (FORMAT.md, "Parquet"; `tests/tests/lumibot.rs`).
pub fn edge_markers(session: NaiveDate, first: i64, last: i64) -> Vec<i64> {
    let (open_missing, close_missing) = edges_missing(session, first, last);
    let mut out = Vec::new();
    if open_missing && let Some((open, _)) = edges_of(session) {
        out.push(open);
    }
    if close_missing && let Some(close) = calendar::session_close_utc(session).timestamp_nanos_opt()
    {
        out.push(close);
    }
    out
}

/// Whether a placeholder for `session` written at `written` is only provisional.
pub fn is_provisional(session: NaiveDate, written: DateTime<Utc>) -> bool {
    written < calendar::session_close_utc(session) + PLACEHOLDER_TRUST_DELAY
}

/// The latest instant a session's data can still change (extended hours end at 20:00).
pub fn session_settled_at(session: NaiveDate) -> DateTime<Utc> {
    calendar::ny_wall_to_utc(
        session,
        NaiveTime::from_hms_opt(20, 0, 0).expect("valid time"),
    )
}

/// Sessions a request for `start..=end` wants, given the time now: NYSE sessions that have
/// ended, up to an option's expiration.
pub fn wanted_sessions(
    dataset: &Dataset,
    start: NaiveDate,
    end: NaiveDate,
    now: DateTime<Utc>,
) -> Result<Vec<NaiveDate>, CalendarError> {
    let end = match dataset.last_session() {
        Some(expiration) => end.min(expiration),
        None => end,
    };
    let mut sessions = calendar::sessions_between(start, end)?;
    sessions.retain(|d| session_settled_at(*d) <= now);
    Ok(sessions)
}

/// Sessions as compact ranges of consecutive sessions: `2024-01-02..2024-03-28,2024-04-02`.
pub fn format_ranges(sessions: &BTreeSet<NaiveDate>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = sessions.iter().copied().peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while let Some(next) = iter.peek().copied() {
            match calendar::next_session(last) {
                Ok(expected) if expected == next => {
                    last = next;
                    iter.next();
                }
                _ => break,
            }
        }
        out.push(if first == last {
            first.to_string()
        } else {
            format!("{first}..{last}")
        });
    }
    out.join(",")
}

/// Inverse of [`format_ranges`]; `None` when the text is not well-formed.
pub fn parse_ranges(text: &str) -> Option<BTreeSet<NaiveDate>> {
    let mut out = BTreeSet::new();
    if text.trim().is_empty() {
        return Some(out);
    }
    for part in text.split(',') {
        let (first, last) = match part.split_once("..") {
            Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
            None => {
                let d: NaiveDate = part.parse().ok()?;
                (d, d)
            }
        };
        out.extend(calendar::sessions_between(first, last).ok()?);
    }
    Some(out)
}

/// Dates as a comma-separated list (`2024-01-02,2024-01-03`), for metadata.
pub fn format_dates(dates: &BTreeSet<NaiveDate>) -> String {
    dates
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

pub fn parse_dates(text: &str) -> BTreeSet<NaiveDate> {
    text.split(',')
        .filter_map(|d| d.trim().parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn ranges_follow_the_session_calendar() {
        let sessions: BTreeSet<NaiveDate> = [
            d("2024-03-27"),
            d("2024-03-28"),
            d("2024-04-01"), // Good Friday 03-29 is not a session, so this continues the run
            d("2024-04-03"),
        ]
        .into();
        let text = format_ranges(&sessions);
        assert_eq!(text, "2024-03-27..2024-04-01,2024-04-03");
        assert_eq!(parse_ranges(&text).unwrap(), sessions);
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
            cache_payload: None,
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

    /// A minute file of two sessions: the first reaches its open and close, the second stops
    /// short of its close, and a placeholder stands for the session between them.
    fn outline_batch() -> RecordBatch {
        use std::sync::Arc;

        use arrow_array::{ArrayRef, BooleanArray, TimestampNanosecondArray};
        let at = |text: &str| {
            DateTime::parse_from_rfc3339(text)
                .unwrap()
                .timestamp_nanos_opt()
                .unwrap()
        };
        let times = [
            "2024-01-02T14:30:00Z",
            "2024-01-02T20:59:00Z",
            "2024-01-03T21:00:00Z",
            "2024-01-04T14:30:00Z",
            "2024-01-04T18:00:00Z",
        ];
        let times = TimestampNanosecondArray::from(times.map(at).to_vec()).with_timezone("UTC");
        let missing = BooleanArray::from(vec![false, false, true, false, false]);
        RecordBatch::try_from_iter([
            ("datetime", Arc::new(times) as ArrayRef),
            ("missing", Arc::new(missing) as ArrayRef),
        ])
        .unwrap()
    }

    #[test]
    fn an_outline_survives_its_footer_fact() {
        let outline = Outline::of_batch(&outline_batch(), true).unwrap();
        assert_eq!(
            outline.coverage.real,
            [d("2024-01-02"), d("2024-01-04")].into()
        );
        assert_eq!(outline.coverage.placeholders, [d("2024-01-03")].into());
        assert_eq!(outline.coverage.short, [d("2024-01-04")].into());
        assert_eq!((outline.facts.rows, outline.facts.placeholders), (5, 1));
        assert_eq!(outline.last_session(), Some(d("2024-01-04")));
        let fact = outline.to_fact().unwrap();
        assert_eq!(Outline::from_fact(&fact), Some(outline.clone()));
        // Split in two after the placeholder, the parts followed one by the other are the whole.
        let batch = outline_batch();
        let (first, later) = (batch.slice(0, 3), batch.slice(3, 2));
        let joined = Outline::of_batch(&first, true)
            .unwrap()
            .followed_by(Outline::of_batch(&later, true).unwrap());
        assert_eq!(joined, outline);
        // Provisional placeholders come from their own fact, and only placeholders count.
        let metadata = BTreeMap::from([
            (FACT_SCHEMA_VERSION.to_string(), "1".to_string()),
            (FACT_OUTLINE.to_string(), fact),
            (
                FACT_PROVISIONAL.to_string(),
                "2024-01-03,2024-01-04".to_string(),
            ),
        ]);
        let read = Outline::in_footer(&metadata).unwrap();
        assert_eq!(
            read.coverage_in(&metadata).provisional,
            [d("2024-01-03")].into()
        );
        assert_eq!(Outline::from_fact("{\"rows\":1}"), None);
    }

    #[test]
    fn an_outline_off_the_session_calendar_is_not_recorded() {
        let mut outline = Outline::of_batch(&outline_batch(), true).unwrap();
        // A Saturday: ranges of sessions cannot hold it, so a reader decodes the rows.
        outline.coverage.real.insert(d("2024-01-06"));
        assert_eq!(outline.to_fact(), None);
    }

    #[test]
    fn young_placeholders_are_provisional() {
        let session = d("2024-01-05");
        let close = calendar::session_close_utc(session);
        assert!(is_provisional(session, close + Duration::hours(30)));
        assert!(!is_provisional(session, close + Duration::hours(49)));
    }
}
