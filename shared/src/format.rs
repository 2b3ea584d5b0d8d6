//! The names of the stored format, in one place: file suffixes, the reserved areas of a
//! bucket, the `cachefill.*` facts in a parquet footer, the user metadata and tags of an
//! object, content types. `docs/FORMAT.md` describes each; the two must agree.
//!
//! ```text
//! <prefix>/<version>/<relpath>.parquet            a dataset (lumibot's layout, keys.rs)
//! <prefix>/<version>/<relpath>.parquet.meta.json  its sidecar (codec/sidecar.rs)
//! <prefix>/<version>/_manifest/<relpath>.json     validated versions (validate/manifest.rs)
//! <prefix>/<version>/_quarantine/<relpath>/…      rejected versions and why (validate/quarantine.rs)
//! <prefix>/<version>/_leases/<relpath>.lease      a fill in progress (fill/lease.rs)
//! <prefix>/_audit/dt=YYYY-MM-DD/…                 one record per verdict (validate/audit.rs)
//! …<key>.tmp-<secs>-<rand>                        lumibot's readwrite upload in flight
//! ```

/// A dataset's file.
pub const PARQUET_SUFFIX: &str = ".parquet";
/// lumibot's sidecar beside a parquet: `<file>.parquet.meta.json`.
pub const SIDECAR_SUFFIX: &str = ".meta.json";
/// lumibot's marker beside a downloaded file: `<file>.s3key` holds the remote key it came
/// from (no newline); lumibot reuses the local file while the marker names its key.
pub const S3KEY_SUFFIX: &str = ".s3key";
/// Version of the sidecar layout lumibot writes and reads.
pub const SIDECAR_VERSION: u32 = 2;

/// Validated versions of each dataset, under `<prefix>/<version>/`.
pub const MANIFEST_AREA: &str = "_manifest";
/// Rejected versions and their reasons, under `<prefix>/<version>/`.
pub const QUARANTINE_AREA: &str = "_quarantine";
/// Fill leases, under `<prefix>/<version>/`.
pub const LEASE_AREA: &str = "_leases";
/// Audit records, under `<prefix>/` (shared by every version).
pub const AUDIT_AREA: &str = "_audit";
/// The areas under `<prefix>/<version>/` that never hold data.
pub const VERSION_AREAS: [&str; 3] = [MANIFEST_AREA, QUARANTINE_AREA, LEASE_AREA];
/// lumibot's readwrite uploads go to `<key>.tmp-<secs>-<rand>` before the copy.
pub const TEMP_MARKER: &str = ".tmp-";
/// Suffix of the file saying why a version was quarantined.
pub const REASON_SUFFIX: &str = ".reason.json";
/// Entries a manifest keeps besides its current one.
pub const MANIFEST_HISTORY: usize = 50;

/// Prefix of cachefill's own parquet footer facts (lumibot ignores them).
pub const FACT_PREFIX: &str = "cachefill.";
/// Footer fact: version of the `cachefill.*` layout; its presence marks a file we wrote.
pub const FACT_SCHEMA_VERSION: &str = "cachefill.schema_version";
/// Footer fact: the provider the rows came from.
pub const FACT_PROVIDER: &str = "cachefill.provider";
/// Footer fact: the dataset payload as JSON.
pub const FACT_DATASET: &str = "cachefill.dataset";
/// Footer fact: every covered session, as ranges (`2024-01-02..2024-03-28,2024-04-02`).
pub const FACT_COVERAGE: &str = "cachefill.coverage";
/// Footer fact: what the `datetime` and `missing` columns say (sessions with real rows,
/// with placeholders only, short ones; row counts and bounds), as JSON
/// ([`crate::coverage::Outline`]), so a reader need not decode them.
pub const FACT_OUTLINE: &str = "cachefill.outline";
/// Footer fact: placeholder sessions not trusted yet, comma-separated.
pub const FACT_PROVISIONAL: &str = "cachefill.provisional";
/// Footer fact: when the file was written (RFC 3339, UTC).
pub const FACT_FILLED_AT: &str = "cachefill.filled_at";
/// Footer fact (day bars lumibot adjusts): the date corporate actions were applied as of.
pub const FACT_ADJUSTED_AS_OF: &str = "cachefill.adjusted_as_of";
/// Footer fact: the splits applied (`2020-08-31:4,2022-08-25:3`).
pub const FACT_SPLITS: &str = "cachefill.splits";
/// The value of [`FACT_SCHEMA_VERSION`] this build writes.
pub const SCHEMA_VERSION: &str = "1";

/// Object user metadata (S3 `x-amz-meta-…`): the covered sessions, readable with a HEAD.
pub const COVERAGE_METADATA: &str = "cachefill-coverage";
/// Object user metadata: sha256 of the body, so a HEAD recognises a version.
pub const SHA256_METADATA: &str = "cachefill-sha256";
/// Object user metadata, beside [`COVERAGE_METADATA`]: which covered sessions hold only a
/// placeholder and which of those are provisional, as JSON
/// (`{"placeholders":"<ranges>","provisional":"<dates>"}`), so that a HEAD decides a hit.
pub const PLACEHOLDERS_METADATA: &str = "cachefill-placeholders";
/// Coverage (with its placeholders) longer than this stays only in the footer (S3 allows
/// 2 KB of user metadata).
pub const MAX_COVERAGE_METADATA: usize = 1500;

/// Object tag with the validator's verdict on a version.
pub const STATUS_TAG: &str = "cachefill-status";
/// [`STATUS_TAG`] of a version that passed every rule.
pub const STATUS_VALID: &str = "valid";
/// [`STATUS_TAG`] of a version that failed a rule.
pub const STATUS_QUARANTINED: &str = "quarantined";

pub const PARQUET_CONTENT_TYPE: &str = "application/vnd.apache.parquet";
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// lumibot's option chains: `thetadata/<asset>/option_chains/<SYM>_<YYYY-MM-DD>.parquet`.
pub const CHAINS_FOLDER: &str = "option_chains";
/// The one column of a chain file: a struct holding the chain.
pub const CHAIN_DATA_COLUMN: &str = "data";
/// The chain struct's field naming its layout version.
pub const CHAIN_CACHE_VERSION_FIELD: &str = "_chain_cache_version";
/// lumibot 4.6.30's `THETADATA_CHAIN_CACHE_VERSION`: chains below it are ignored.
pub const CHAIN_CACHE_VERSION: i64 = 5;
/// lumibot's corporate events: `thetadata/<asset>/events/<type>/<SYM>_<type>.parquet` and
/// `<SYM>_<type>.meta.json`.
pub const EVENTS_FOLDER: &str = "events";
/// The event types lumibot caches.
pub const EVENT_TYPES: [&str; 2] = ["splits", "dividends"];
/// The member of an events `.meta.json` listing the covered date ranges.
pub const EVENTS_RANGES_FIELD: &str = "ranges";
/// lumibot's point-in-time quote windows: `thetadata/<asset>/snapshot/<datastyle>/…`.
pub const SNAPSHOT_FOLDER: &str = "snapshot";
/// lumibot's Interactive Brokers cache root.
pub const IBKR_ROOT: &str = "ibkr";
/// lumibot's Yahoo cache root.
pub const YAHOO_ROOT: &str = "yahoo";
/// The splits file lumibot's `polygon_helper` keeps beside a Polygon price file
/// (`<price file without .parquet>_splits.parquet`).
pub const POLYGON_SPLITS_SUFFIX: &str = "_splits.parquet";
/// The folder of lumibot's Polygon option chains (`polygon/option_chains/`).
pub const POLYGON_CHAINS_FOLDER: &str = "option_chains";
/// lumibot's shared bar cache: `bars/v<N>/<provider>/…`.
pub const SHARED_BARS_ROOT: &str = "bars";
