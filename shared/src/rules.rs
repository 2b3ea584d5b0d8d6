//! The validation rules every cached object must pass (`docs/VALIDATOR.md`), as one pure
//! function that reports every violation it finds, not just the first.

use std::collections::{BTreeMap, HashSet};

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, RecordBatch};
use bytes::Bytes;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use parquet::arrow::arrow_reader::ArrowReaderMetadata;
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::schema::types::ColumnPath;
use serde::Serialize;

use crate::calendar;
use crate::calendar::NyDates;
use crate::codec::conform::{SchemaMismatch, conform};
use crate::codec::facts::placeholder_mask;
use crate::codec::schema::{DATETIME, Layout, SIZE_COLUMNS};
use crate::codec::{self, BatchFacts, Decoded, Sidecar, rows};
use crate::coverage::{self, Outline};
use crate::dataset::Dataset;
use crate::format::FACT_OUTLINE;
use crate::others;
use crate::pyfmt;
use crate::reference::{Reference, chain, events};

/// Which rule a violation breaks; stable names for audit records and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Zero bytes.
    Empty,
    /// No `PAR1` magic at the start: not a parquet file at all.
    NotParquet,
    /// Starts like a parquet file but its end (footer and closing magic) is missing.
    Truncated,
    /// The footer or a row group does not decode.
    Unreadable,
    /// A column the dataset knows holds the wrong kind of value, or `datetime` is missing.
    Schema,
    /// A row without a `datetime`.
    NullDatetime,
    /// `datetime` goes backwards.
    Unsorted,
    /// Two rows share a `datetime`.
    DuplicateTimestamp,
    /// A price on a real row is missing, not finite, or not > 0.
    Price,
    /// `low ≤ open, close ≤ high` does not hold.
    OhlcOrder,
    /// A size, volume or count is negative.
    NegativeSize,
    /// A placeholder carries a price, or (but for options) is neither at 16:00 New York nor
    /// (intraday) at the open of a trading session.
    Placeholder,
    /// Rows after an option's expiration.
    AfterExpiration,
    /// Rows more than a day in the future.
    Future,
    /// The sidecar is not lumibot's JSON.
    SidecarUnreadable,
    /// The sidecar disagrees with the parquet on rows, placeholders, checksum, min or max.
    SidecarMismatch,
    /// Our footer's outline (`cachefill.outline`) does not parse or disagrees with the rows.
    FooterOutline,
    /// An events parquet whose rows are not events lumibot can use (no date, bad value,
    /// out of order).
    Events,
    /// An events `.meta.json` whose ranges lumibot would not read.
    Ranges,
    /// An option-chain parquet lumibot would ignore or misread (layout, version, strikes).
    Chain,
    /// A trade day whose columns, ids, times or claimed coverage are wrong.
    Trades,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub rule: Rule,
    pub message: String,
}

impl Violation {
    pub fn new(rule: Rule, message: impl Into<String>) -> Self {
        Violation {
            rule,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.rule, self.message)
    }
}

/// The verdict on one parquet object, with what was learnt while judging it.
#[derive(Debug, Clone)]
pub struct Report {
    pub violations: Vec<Violation>,
    pub sha256: String,
    pub bytes: usize,
    /// Present when the file decoded.
    pub facts: Option<BatchFacts>,
    /// Every row, when the whole file was decoded ([`check_object`]); `None` from
    /// [`check_extension`], which decodes only the appended row groups.
    pub decoded: Option<Decoded>,
}

impl Report {
    pub fn is_valid(&self) -> bool {
        self.violations.is_empty()
    }
}

const MAGIC: &[u8] = b"PAR1";

/// Columns a placeholder must leave empty.
const PRICE_COLUMNS: [&str; 7] = ["open", "high", "low", "close", "vwap", "bid", "ask"];

/// Whether the bytes can be a parquet file at all: not empty, magic at both ends.
fn parquet_envelope(bytes: &[u8]) -> Result<(), Violation> {
    if bytes.is_empty() {
        return Err(Violation::new(Rule::Empty, "the object has zero bytes"));
    }
    if !bytes.starts_with(MAGIC) {
        return Err(Violation::new(
            Rule::NotParquet,
            "no PAR1 magic at the start: not a parquet file",
        ));
    }
    if bytes.len() < 12 || !bytes.ends_with(MAGIC) {
        return Err(Violation::new(
            Rule::Truncated,
            format!(
                "starts like parquet but has no footer ending in PAR1 ({} bytes): truncated",
                bytes.len()
            ),
        ));
    }
    Ok(())
}

/// What judging a reference object learnt about it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReferenceFacts {
    /// Events, or expirations of a chain; ranges of a ranges file.
    pub rows: u64,
    /// First and last event date, expiration or covered date.
    pub min: Option<NaiveDate>,
    pub max: Option<NaiveDate>,
    /// Why lumibot ignores the object although nothing in it is wrong (a chain of an older
    /// layout version, which lumibot rebuilds): it is left as it is, neither recorded nor
    /// quarantined.
    pub ignored: Option<String>,
}

/// Judge a reference object (events, their ranges, an option chain): every violation, and
/// its facts when it decoded.
pub fn check_reference(
    reference: &Reference,
    bytes: &Bytes,
) -> (Vec<Violation>, Option<ReferenceFacts>) {
    if let Reference::Events { ranges: true, .. } = reference {
        let problems = events::check_ranges(bytes);
        if !problems.is_empty() {
            return (
                problems
                    .into_iter()
                    .map(|p| Violation::new(Rule::Ranges, p))
                    .collect(),
                None,
            );
        }
        let ranges = events::read_ranges(bytes);
        let facts = ReferenceFacts {
            rows: ranges.len() as u64,
            min: ranges.iter().map(|r| r.0).min(),
            max: ranges.iter().map(|r| r.1).max(),
            ignored: None,
        };
        return (Vec::new(), Some(facts));
    }
    if let Err(violation) = parquet_envelope(bytes) {
        return (vec![violation], None);
    }
    match reference {
        Reference::TradeDay(day) => match crate::trades::file::check(day, bytes.clone()) {
            Ok((problems, facts)) => (
                problems
                    .into_iter()
                    .map(|p| Violation::new(Rule::Trades, p))
                    .collect(),
                Some(ReferenceFacts {
                    rows: facts.rows,
                    min: Some(day.date),
                    max: Some(day.date),
                    ignored: None,
                }),
            ),
            Err(e) => (
                vec![Violation::new(
                    Rule::Unreadable,
                    format!("does not decode: {e}"),
                )],
                None,
            ),
        },
        Reference::Events { set, .. } => {
            let decoded = match codec::decode(bytes.clone()) {
                Ok(decoded) => decoded,
                Err(e) => {
                    return (
                        vec![Violation::new(
                            Rule::Unreadable,
                            format!("does not decode: {e}"),
                        )],
                        None,
                    );
                }
            };
            let problems = events::check_events(set.event_type, &decoded.batch);
            let found = events::from_batch(set.event_type, &decoded.batch).unwrap_or_default();
            let facts = ReferenceFacts {
                rows: decoded.batch.num_rows() as u64,
                min: found.iter().map(|e| e.date).min(),
                max: found.iter().map(|e| e.date).max(),
                ignored: None,
            };
            (
                problems
                    .into_iter()
                    .map(|p| Violation::new(Rule::Events, p))
                    .collect(),
                Some(facts),
            )
        }
        Reference::Chain(set) => match chain::decode(bytes.clone()) {
            // An older lumibot's chain: lumibot 4.6.30 rebuilds it; nothing to judge.
            _ if let Some(why) = others::outdated_chain(bytes) => (
                Vec::new(),
                Some(ReferenceFacts {
                    ignored: Some(why),
                    ..Default::default()
                }),
            ),
            Ok(decoded) => {
                let mut problems = chain::check(&decoded.chain);
                if decoded.chain.underlying != set.symbol {
                    problems.push(format!(
                        "UnderlyingSymbol '{}' is not the file's symbol '{}'",
                        decoded.chain.underlying, set.symbol
                    ));
                }
                let expirations = &decoded.chain.calls;
                let facts = ReferenceFacts {
                    rows: expirations.len() as u64,
                    min: expirations.keys().next().copied(),
                    max: expirations.keys().next_back().copied(),
                    ignored: None,
                };
                (
                    problems
                        .into_iter()
                        .map(|p| Violation::new(Rule::Chain, p))
                        .collect(),
                    Some(facts),
                )
            }
            Err(e) => (
                vec![Violation::new(
                    Rule::Chain,
                    format!("not a chain file: {e}"),
                )],
                None,
            ),
        },
    }
}

/// Judge a parquet object of `dataset` (and its sidecar, when one is given).
pub fn check_object(
    dataset: &Dataset,
    bytes: &Bytes,
    sidecar: Option<&[u8]>,
    now: DateTime<Utc>,
) -> Report {
    check_object_hashed(dataset, bytes, codec::sha256_hex(bytes), sidecar, now)
}

/// [`check_object`] of bytes whose sha256 the caller already has.
pub fn check_object_hashed(
    dataset: &Dataset,
    bytes: &Bytes,
    sha256: String,
    sidecar: Option<&[u8]>,
    now: DateTime<Utc>,
) -> Report {
    let mut report = Report {
        violations: Vec::new(),
        sha256,
        bytes: bytes.len(),
        facts: None,
        decoded: None,
    };
    if let Err(violation) = parquet_envelope(bytes) {
        report.violations.push(violation);
        return report;
    }
    let decoded = match codec::decode(bytes.clone()) {
        Ok(decoded) => decoded,
        Err(e) => {
            report.violations.push(Violation::new(
                Rule::Unreadable,
                format!("does not decode: {e}"),
            ));
            return report;
        }
    };
    let batch = match conform(dataset, &decoded.batch) {
        Ok(batch) => batch,
        Err(mismatch) => {
            report.violations.extend(schema_violations(mismatch));
            report.decoded = Some(decoded);
            return report;
        }
    };
    report.violations.extend(check_rows(dataset, &batch, now));
    match BatchFacts::of(&batch) {
        Ok(facts) => {
            report
                .violations
                .extend(outline_violation(dataset, &decoded.metadata, &batch, facts));
            if let Some(sidecar) = sidecar {
                report
                    .violations
                    .extend(check_sidecar(sidecar, &facts, &report.sha256));
            }
            report.facts = Some(facts);
        }
        Err(e) => report
            .violations
            .push(Violation::new(Rule::Schema, e.to_string())),
    }
    report.decoded = Some(decoded);
    report
}

/// Judge a parquet object of `dataset` that may be `earlier` (a version judged valid, whose
/// facts are `earlier_facts`) with row groups appended, reading only what was appended:
/// the same [`Report`] as [`check_object`] without a sidecar (but for `decoded`, left
/// `None`), or `None` when the object is not such an extension, or when its verdict needs
/// more than the appended rows; [`check_object`] then judges it whole.
///
/// An extension has `earlier`'s columns, keeps each of its row groups first with the same
/// column chunks and page locations, and holds the same bytes wherever those are read, so
/// its first row groups decode to `earlier`'s rows, which passed every row rule: each rule
/// but sortedness looks at one row at a time, and sortedness only at the boundary, given
/// `earlier_facts.max` (`datetime` strictly increases in a valid file, so its max is its
/// last row's). `sha256` is the object's, as the caller hashed it to know it.
pub fn check_extension(
    dataset: &Dataset,
    bytes: &Bytes,
    sha256: &str,
    earlier: &Bytes,
    earlier_facts: &BatchFacts,
    now: DateTime<Utc>,
) -> Option<Report> {
    parquet_envelope(bytes).ok()?;
    let footer = codec::read_footer(bytes).ok()?;
    let earlier_footer = codec::read_footer(earlier).ok()?;
    let kept = kept_row_groups(bytes, &footer, earlier, &earlier_footer)?;
    if !describes(earlier_facts, &earlier_footer, now) {
        return None;
    }
    let appended = (kept..footer.metadata().num_row_groups()).collect();
    // A row group that does not decode, or columns that do not conform, are the whole
    // check's to name.
    let batch = conform(
        dataset,
        &codec::decode_row_groups(bytes, &footer, appended).ok()?,
    )
    .ok()?;
    let preceding = Preceding {
        rows: earlier_facts.rows,
        last: earlier_facts.max,
    };
    let mut violations = check_rows_after(dataset, &batch, now, preceding)?;
    let added = BatchFacts::of(&batch).ok()?;
    violations.extend(extension_outline_violation(
        dataset,
        &codec::footer_metadata(footer.metadata()),
        &codec::footer_metadata(earlier_footer.metadata()),
        &batch,
        added,
    )?);
    Some(Report {
        violations,
        sha256: sha256.to_string(),
        bytes: bytes.len(),
        facts: Some(earlier_facts.followed_by(&added)),
        decoded: None,
    })
}

/// The violation of a file whose footer records an outline the rows `batch` (whose facts
/// are `facts`) do not have.
fn outline_violation(
    dataset: &Dataset,
    metadata: &BTreeMap<String, String>,
    batch: &RecordBatch,
    facts: BatchFacts,
) -> Option<Violation> {
    let written = Outline::written(metadata)?;
    let rows = match Outline::with_facts(batch, facts, coverage::checks_edges(dataset)) {
        Ok(rows) => rows,
        // No `datetime` to outline: the schema rule names that.
        Err(_) => return None,
    };
    outline_disagreement(written, &rows)
}

/// [`outline_violation`] of an extension, whose rows are `earlier`'s (a valid file, whose
/// outline was checked when it was judged) followed by `appended` (whose facts are
/// `facts`): `None` when that cannot be told without the earlier rows (`earlier` records no
/// outline, or the appended rows reach back into its sessions), so the whole check decides.
fn extension_outline_violation(
    dataset: &Dataset,
    metadata: &BTreeMap<String, String>,
    earlier: &BTreeMap<String, String>,
    appended: &RecordBatch,
    facts: BatchFacts,
) -> Option<Option<Violation>> {
    let Some(written) = Outline::written(metadata) else {
        return Some(None);
    };
    let earlier = Outline::in_footer(earlier)?;
    let added = Outline::with_facts(appended, facts, coverage::checks_edges(dataset)).ok()?;
    let first_added = added
        .coverage
        .real
        .first()
        .into_iter()
        .chain(added.coverage.placeholders.first())
        .min();
    if let (Some(last), Some(first)) = (earlier.last_session(), first_added)
        && *first <= last
    {
        return None;
    }
    Some(outline_disagreement(written, &earlier.followed_by(added)))
}

fn outline_disagreement(written: &str, rows: &Outline) -> Option<Violation> {
    match Outline::from_fact(written) {
        Some(claimed) if claimed == *rows => None,
        Some(_) => Some(Violation::new(
            Rule::FooterOutline,
            format!(
                "{FACT_OUTLINE} claims {written} but the rows say {}",
                rows.to_fact()
                    .unwrap_or_else(|| "sessions off the NYSE calendar".into())
            ),
        )),
        None => Some(Violation::new(
            Rule::FooterOutline,
            format!("{FACT_OUTLINE} does not parse: {written}"),
        )),
    }
}

/// How many row groups `file` keeps of `earlier` exactly as they were: same arrow and
/// parquet schema, `earlier`'s row groups first with the same rows, column chunks and page
/// locations, and the same bytes up to the end of the last byte any of them reads. `None`
/// when `file` is not `earlier` with row groups appended.
fn kept_row_groups(
    file: &Bytes,
    footer: &ArrowReaderMetadata,
    earlier: &Bytes,
    earlier_footer: &ArrowReaderMetadata,
) -> Option<usize> {
    let (new, old) = (footer.metadata(), earlier_footer.metadata());
    if footer.schema().fields() != earlier_footer.schema().fields()
        || new.file_metadata().schema_descr() != old.file_metadata().schema_descr()
    {
        return None;
    }
    let kept = old.num_row_groups();
    if new.num_row_groups() < kept {
        return None;
    }
    let mut end = 0u64;
    for group in 0..kept {
        let (a, b) = (old.row_group(group), new.row_group(group));
        if a.num_rows() != b.num_rows() || a.num_columns() != b.num_columns() {
            return None;
        }
        let (pages_a, pages_b) = (
            old.page_index_for_row_group(group),
            new.page_index_for_row_group(group),
        );
        for (column, (x, y)) in a.columns().iter().zip(b.columns()).enumerate() {
            if chunk_layout(x) != chunk_layout(y)
                || pages_a.offset_index(column) != pages_b.offset_index(column)
            {
                return None;
            }
            // A reader reads the chunk, or with an offset index the pages it locates.
            end = end.max(span_end(
                x.dictionary_page_offset().unwrap_or(x.data_page_offset()),
                x.compressed_size(),
            )?);
            for page in pages_a
                .offset_index(column)
                .map(|index| index.page_locations().as_slice())
                .unwrap_or_default()
            {
                end = end.max(span_end(page.offset, page.compressed_page_size.into())?);
            }
        }
    }
    let end = usize::try_from(end).ok()?;
    let same = end <= file.len() && end <= earlier.len() && file[..end] == earlier[..end];
    same.then_some(kept)
}

/// What of a column chunk's footer entry decides how its bytes are found and decoded.
#[allow(clippy::type_complexity)]
fn chunk_layout(
    chunk: &ColumnChunkMetaData,
) -> (
    &ColumnPath,
    parquet::basic::Type,
    parquet::basic::Compression,
    Option<&str>,
    i64,
    Option<i64>,
    Option<i64>,
    [i64; 3],
) {
    (
        chunk.column_path(),
        chunk.column_type(),
        chunk.compression(),
        chunk.file_path(),
        chunk.data_page_offset(),
        chunk.dictionary_page_offset(),
        chunk.index_page_offset(),
        [
            chunk.compressed_size(),
            chunk.uncompressed_size(),
            chunk.num_values(),
        ],
    )
}

/// The end of `len` bytes at `offset`; `None` when either is negative.
fn span_end(offset: i64, len: i64) -> Option<u64> {
    u64::try_from(offset)
        .ok()?
        .checked_add(u64::try_from(len).ok()?)
}

/// Whether `facts` can be a valid file's with the footer `footer`: its rows are the
/// footer's, placeholders and real rows add up, it has bounds exactly when it has rows, and
/// none of its rows lies past the horizon of [`Rule::Future`] at `now`.
fn describes(facts: &BatchFacts, footer: &ArrowReaderMetadata, now: DateTime<Utc>) -> bool {
    let rows: i64 = footer
        .metadata()
        .row_groups()
        .iter()
        .map(|group| group.num_rows())
        .sum();
    let bounded = match (facts.min, facts.max) {
        (Some(min), Some(max)) => facts.rows > 0 && min <= max && max <= future_horizon(now),
        (None, None) => facts.rows == 0,
        _ => false,
    };
    usize::try_from(rows).is_ok_and(|rows| rows == facts.rows)
        && facts.real_rows.checked_add(facts.placeholders) == Some(facts.rows)
        && bounded
}

/// Compare a sidecar with the facts and checksum of the parquet it describes.
pub fn check_sidecar(sidecar: &[u8], facts: &BatchFacts, sha256: &str) -> Vec<Violation> {
    match Sidecar::parse(sidecar) {
        Err(e) => vec![Violation::new(Rule::SidecarUnreadable, e.to_string())],
        Ok(found) => {
            let expected = Sidecar::new(facts, sha256, Utc::now());
            found
                .disagreements(&expected)
                .into_iter()
                .map(|d| Violation::new(Rule::SidecarMismatch, d))
                .collect()
        }
    }
}

/// How a sidecar stands against the parquet at its key (the pair rule of
/// [`super::validator`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SidecarStanding {
    /// It describes the parquet now at the key, exactly.
    Agrees,
    /// It describes an earlier validated version: the writer of the parquet now at the key
    /// has not written its sidecar yet (writers put the parquet first, then the sidecar).
    Earlier,
    /// Unreadable, disagreeing with the parquet it names, or naming no validated parquet.
    Bad(Vec<Violation>),
}

/// Judge a sidecar against the parquet now at its key (`current`: its sha256 and facts,
/// `None` when there is none) and the sha256s of the dataset's validated versions.
pub fn sidecar_standing(
    sidecar: &[u8],
    current: Option<(&str, &BatchFacts)>,
    validated: &[&str],
) -> SidecarStanding {
    let parsed = match Sidecar::parse(sidecar) {
        Ok(parsed) => parsed,
        Err(e) => {
            return SidecarStanding::Bad(vec![Violation::new(
                Rule::SidecarUnreadable,
                e.to_string(),
            )]);
        }
    };
    let checksum = parsed.checksum.as_deref().unwrap_or_default();
    if let Some((sha256, facts)) = current
        && checksum == sha256
    {
        let violations = check_sidecar(sidecar, facts, sha256);
        return if violations.is_empty() {
            SidecarStanding::Agrees
        } else {
            SidecarStanding::Bad(violations)
        };
    }
    if !checksum.is_empty() && validated.contains(&checksum) {
        return SidecarStanding::Earlier;
    }
    let names = if checksum.is_empty() {
        "has no checksum".to_string()
    } else {
        format!("checksum {checksum} names no validated version of the parquet")
    };
    let now = match current {
        Some((sha256, _)) => format!("the parquet at the key has checksum {sha256}"),
        None => "there is no parquet at the key".to_string(),
    };
    SidecarStanding::Bad(vec![Violation::new(
        Rule::SidecarMismatch,
        format!("{names}; {now}"),
    )])
}

fn describe_time(nanos: i64) -> String {
    pyfmt::pandas_utc_isoformat(nanos)
}

fn schema_violations(mismatch: SchemaMismatch) -> Vec<Violation> {
    mismatch
        .0
        .into_iter()
        .map(|problem| Violation::new(Rule::Schema, problem))
        .collect()
}

/// A numeric column as doubles, whatever number type the file used (lumibot's integer columns
/// become doubles once a placeholder or a split adjustment touches them).
fn numbers(batch: &RecordBatch, name: &str) -> Option<arrow_array::Float64Array> {
    let column = batch.column_by_name(name)?;
    let cast = arrow_cast::cast(column, &arrow_schema::DataType::Float64).ok()?;
    cast.as_primitive_opt::<Float64Type>().cloned()
}

/// The latest `datetime` a row may have at `now` ([`Rule::Future`]): a day ahead.
fn future_horizon(now: DateTime<Utc>) -> i64 {
    (now + Duration::days(1))
        .timestamp_nanos_opt()
        .unwrap_or(i64::MAX)
}

/// Counts rows breaking one rule and remembers the first, for a readable message.
struct Tally {
    count: usize,
    first: Option<String>,
}

impl Tally {
    fn new() -> Self {
        Tally {
            count: 0,
            first: None,
        }
    }

    fn hit(&mut self, describe: impl FnOnce() -> String) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(describe());
        }
    }

    fn into_violation(self, rule: Rule, what: &str) -> Option<Violation> {
        (self.count > 0).then(|| {
            Violation::new(
                rule,
                format!(
                    "{} row(s) {what}; first: {}",
                    self.count,
                    self.first.unwrap_or_default()
                ),
            )
        })
    }
}

/// Every rule that applies to decoded rows: their columns by name and kind
/// ([`conform`]), then the rows.
pub fn check_batch(dataset: &Dataset, batch: &RecordBatch, now: DateTime<Utc>) -> Vec<Violation> {
    match conform(dataset, batch) {
        Ok(batch) => check_rows(dataset, &batch, now),
        Err(mismatch) => schema_violations(mismatch),
    }
}

/// The row rules, on a conformed batch.
fn check_rows(dataset: &Dataset, batch: &RecordBatch, now: DateTime<Utc>) -> Vec<Violation> {
    check_rows_after(dataset, batch, now, Preceding::default())
        .expect("with no preceding rows every rule is decided by the batch")
}

/// The valid rows a batch continues (an extended file's earlier row groups): how many there
/// are and the last `datetime` among them, so that messages name rows of the whole file and
/// sortedness is checked across the boundary.
#[derive(Debug, Clone, Copy, Default)]
struct Preceding {
    rows: usize,
    last: Option<i64>,
}

/// The row rules on a conformed batch that continues `preceding` valid rows, as
/// [`check_rows`] would report them on the preceding rows and the batch together. `None`
/// when that needs the preceding rows themselves: once rows go back in time, naming every
/// repeated `datetime` needs each earlier one.
fn check_rows_after(
    dataset: &Dataset,
    batch: &RecordBatch,
    now: DateTime<Utc>,
    preceding: Preceding,
) -> Option<Vec<Violation>> {
    let mut out = Vec::new();
    let Some(times) = batch
        .column_by_name(DATETIME)
        .and_then(|c| c.as_primitive_opt::<arrow_array::types::TimestampNanosecondType>())
    else {
        return Some(out);
    };
    let n = batch.num_rows();
    let missing = placeholder_mask(batch);
    let time_at = |i: usize| times.is_valid(i).then(|| times.value(i));
    // Row numbers of the whole file, in messages.
    let row = |i: usize| preceding.rows + i;

    let mut nulls = Tally::new();
    let mut unsorted = Tally::new();
    let mut duplicates = Tally::new();
    let mut previous: Option<i64> = preceding.last;
    for i in 0..n {
        let Some(t) = time_at(i) else {
            nulls.hit(|| format!("row {}", row(i)));
            continue;
        };
        if let Some(p) = previous {
            if t < p {
                unsorted.hit(|| {
                    format!(
                        "row {} at {} after {}",
                        row(i),
                        describe_time(t),
                        describe_time(p)
                    )
                });
            } else if t == p {
                duplicates.hit(|| format!("row {} at {}", row(i), describe_time(t)));
            }
        }
        previous = Some(t);
    }
    // In sorted rows every repeat is adjacent; only unsorted rows need the costlier set.
    if unsorted.count > 0 {
        if preceding.rows > 0 {
            return None;
        }
        duplicates = Tally::new();
        let mut seen = HashSet::with_capacity(n);
        for i in 0..n {
            if let Some(t) = time_at(i)
                && !seen.insert(t)
            {
                duplicates.hit(|| format!("row {} at {}", row(i), describe_time(t)));
            }
        }
    }
    out.extend(nulls.into_violation(Rule::NullDatetime, "have no datetime"));
    out.extend(unsorted.into_violation(Rule::Unsorted, "go back in time"));
    out.extend(duplicates.into_violation(Rule::DuplicateTimestamp, "repeat an earlier datetime"));

    let layout = Layout::of(dataset);
    let real = |i: usize| !missing[i];
    let when = |i: usize| time_at(i).map_or_else(|| format!("row {}", row(i)), describe_time);

    // Prices.
    let mut bad_price = Tally::new();
    if layout.is_ohlc() {
        for name in ["open", "high", "low", "close"] {
            if let Some(col) = numbers(batch, name) {
                for i in (0..n).filter(|i| real(*i)) {
                    let ok = col.is_valid(i) && col.value(i).is_finite() && col.value(i) > 0.0;
                    if !ok {
                        let shown = if col.is_valid(i) {
                            col.value(i).to_string()
                        } else {
                            "null".into()
                        };
                        bad_price.hit(|| format!("{name} = {shown} at {}", when(i)));
                    }
                }
            }
        }
        if let Some(col) = numbers(batch, "vwap") {
            for i in (0..n).filter(|i| real(*i) && col.is_valid(*i)) {
                let v = col.value(i);
                if !v.is_finite() || v < 0.0 {
                    bad_price.hit(|| format!("vwap = {v} at {}", when(i)));
                }
            }
        }
    } else if let (Some(bid), Some(ask)) = (numbers(batch, "bid"), numbers(batch, "ask")) {
        for i in (0..n).filter(|i| real(*i)) {
            let value = |c: &arrow_array::Float64Array| c.is_valid(i).then(|| c.value(i));
            let (b, a) = (value(&bid), value(&ask));
            let sane = |v: Option<f64>| v.is_none_or(|x| x.is_finite() && x >= 0.0);
            let positive = |v: Option<f64>| v.is_some_and(|x| x > 0.0);
            if !(sane(b) && sane(a) && (positive(b) || positive(a))) {
                bad_price.hit(|| format!("bid = {b:?}, ask = {a:?} at {}", when(i)));
            }
        }
    }
    out.extend(bad_price.into_violation(
        Rule::Price,
        "have a price that is missing, not finite or not > 0",
    ));

    // OHLC order.
    if let (Some(o), Some(h), Some(l), Some(c)) = (
        numbers(batch, "open"),
        numbers(batch, "high"),
        numbers(batch, "low"),
        numbers(batch, "close"),
    ) {
        let mut disorder = Tally::new();
        for i in (0..n).filter(|i| real(*i)) {
            if [&o, &h, &l, &c].iter().any(|col| col.is_null(i)) {
                continue;
            }
            let (ov, hv, lv, cv) = (o.value(i), h.value(i), l.value(i), c.value(i));
            // A price that is not a positive number is reported once, under `Price`.
            if [ov, hv, lv, cv]
                .iter()
                .any(|p| !(p.is_finite() && *p > 0.0))
            {
                continue;
            }
            if !(lv <= ov.min(cv) && ov.max(cv) <= hv) {
                disorder
                    .hit(|| format!("open {ov}, high {hv}, low {lv}, close {cv} at {}", when(i)));
            }
        }
        out.extend(disorder.into_violation(Rule::OhlcOrder, "break low ≤ open, close ≤ high"));
    }

    // Sizes.
    let mut negative = Tally::new();
    for name in SIZE_COLUMNS {
        if let Some(col) = numbers(batch, name) {
            for i in 0..n {
                if col.is_valid(i) && col.value(i) < 0.0 {
                    negative.hit(|| format!("{name} = {} at {}", col.value(i), when(i)));
                }
            }
        }
    }
    out.extend(
        negative.into_violation(Rule::NegativeSize, "have a negative size, volume or count"),
    );

    // Placeholders, expiration and the future.
    let mut dates = NyDates::new();
    let sessions: Vec<Option<NaiveDate>> = (0..n)
        .map(|i| time_at(i).map(|t| coverage::row_session(&mut dates, t, missing[i])))
        .collect();
    // lumibot leaves a placeholder beside real rows of its session when it refetches, and
    // turns an option's all-zero bar into a placeholder where the bar was; neither is damage.
    // A placeholder must carry no price, and (but for options) sit where lumibot puts it
    // (`rows::placeholder_instant`: 16:00 New York, or 04:56 UTC in Polygon files) on a
    // trading session, or at its open (the engine's edge marker).
    let mut bad_placeholder = Tally::new();
    let price_columns: Vec<(&str, arrow_array::Float64Array)> = PRICE_COLUMNS
        .iter()
        .filter_map(|name| numbers(batch, name).map(|c| (*name, c)))
        .collect();
    let is_option = dataset.contract.is_some();
    for i in (0..n).filter(|i| missing[*i]) {
        let (Some(t), Some(session)) = (time_at(i), sessions[i]) else {
            continue;
        };
        let expected = rows::placeholder_instant(dataset, session);
        // The engine marks a session whose first bar comes late with a placeholder at the open.
        let open = calendar::session_hours(session)
            .ok()
            .flatten()
            .and_then(|h| calendar::ny_wall_to_utc(session, h.open).timestamp_nanos_opt());
        let marks_the_open = coverage::checks_edges(dataset) && Some(t) == open;
        if !is_option && t != expected && !marks_the_open {
            bad_placeholder.hit(|| {
                format!(
                    "placeholder at {} is neither where lumibot puts one nor the session's open",
                    describe_time(t)
                )
            });
        } else if let Some((name, _)) = price_columns.iter().find(|(_, c)| c.is_valid(i)) {
            bad_placeholder.hit(|| {
                format!(
                    "placeholder at {} has a value in '{name}'",
                    describe_time(t)
                )
            });
        } else if !calendar::is_session(session).unwrap_or(true) {
            bad_placeholder
                .hit(|| format!("placeholder on {session}, which is not a trading session"));
        }
    }
    out.extend(bad_placeholder.into_violation(Rule::Placeholder, "are malformed placeholders"));

    if let Some(expiration) = dataset.last_session() {
        let mut late = Tally::new();
        for (i, session) in sessions.iter().enumerate() {
            if session.is_some_and(|s| s > expiration) {
                late.hit(|| format!("{} (expiration {expiration})", when(i)));
            }
        }
        out.extend(
            late.into_violation(Rule::AfterExpiration, "fall after the option's expiration"),
        );
    }

    let horizon = future_horizon(now);
    let mut future = Tally::new();
    for i in 0..n {
        if let Some(t) = time_at(i)
            && t > horizon
        {
            future.hit(|| describe_time(t));
        }
    }
    out.extend(future.into_violation(Rule::Future, "lie more than a day in the future"));
    Some(out)
}
