//! The object-validator's logic (`docs/VALIDATOR.md`): judge one "object written" event, then
//! record the version as valid or put it aside and restore what readers should see.
//!
//! # What is judged
//!
//! Only dataset parquets and their `.meta.json` sidecars under the layout's
//! `<prefix>/<version>/`. Skipped without touching anything: `s3:TestEvent`, events other
//! than `ObjectCreated:*`, other buckets, the reserved areas (`_manifest/`, `_quarantine/`,
//! `_leases/`, `_audit/`, which also keeps the validator's own writes from feeding back),
//! lumibot's `.tmp-` uploads, and keys outside the layout or not naming a dataset.
//!
//! # A parquet event
//!
//! The exact version named by the event is read (the current one when the event names
//! none). It is a no-op (`Duplicate`) when the manifest already records that version, when
//! its sha256 equals the manifest's current one (the restore's own event, or the same bytes
//! uploaded again), or when it was already quarantined and is no longer at the key.
//! Otherwise every rule of [`crate::rules`] is applied to its bytes alone.
//!
//! - Valid: the manifest records it (a conditional write retried on 412; see
//!   [`super::manifest`]) and the version is tagged `cachefill-status=valid`.
//! - Invalid: the version is copied to `_quarantine/` with a `.reason.json`, tagged
//!   `cachefill-status=quarantined`, and — when it is still the key's current version —
//!   the newest validated version's bytes are written back onto the key, conditionally on
//!   the bad version's etag (a write that landed meanwhile is never overwritten; its own
//!   event judges it). With no validated version the key is deleted.
//!
//! # The pair rule (parquet and sidecar)
//!
//! lumibot deletes and refetches a file whose sidecar disagrees with it, so readers must
//! never be left with a disagreeing pair. Writers put the parquet first, then the sidecar,
//! so for a moment the sidecar at the key still describes the previous version.
//!
//! - A parquet is judged on its own bytes: a sidecar never makes a parquet invalid.
//! - A sidecar is judged against the parquet *now at the key*:
//!   - it **agrees** when its checksum is that parquet's sha256 and its rows,
//!     placeholders, min and max match (tagged `valid`);
//!   - it is **earlier** when its checksum is the sha256 of an earlier validated (or at
//!     least never rejected) version: the parquet's writer has not written its sidecar
//!     yet. Not a violation; nothing is done;
//!   - otherwise it is **bad**: unreadable, disagreeing with the parquet it names, or
//!     naming a rejected or unknown parquet.
//! - A bad sidecar is put aside like a parquet (`sidecar-<id>.meta.json`), tagged
//!   `quarantined`, and the sidecar key is restored to agree with the parquet now at the
//!   key: the newest earlier sidecar version that agrees is written back, else a sidecar
//!   computed from that parquet (lumibot's exact format); with no parquet at the key the
//!   sidecar is deleted. These writes are conditional on the bad sidecar's etag.
//! - The sidecar is checked on its own event, and again after every parquet judgement
//!   (valid or rejected), so a parquet restore never leaves the sidecar of the rejected
//!   version behind.
//!
//! # Always
//!
//! One audit record per judged dataset object (see [`super::audit`]), duplicates and
//! skips of dataset keys included; none for reserved, temporary or foreign keys, so the
//! validator's own writes never produce records about themselves.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::audit::{self, AuditRecord};
use super::event::EventRecord;
use super::manifest::{self, Manifest, ManifestEntry, ManifestError, Recorded, VersionOrder};
use super::quarantine::{self, ObjectKind, Reason, Writer};
use crate::clock::{Clock, SystemClock};
use crate::codec::{self, BatchFacts, Sidecar};
use crate::dataset::Dataset;
use crate::errors::ErrorType;
use crate::format::{
    JSON_CONTENT_TYPE, PARQUET_CONTENT_TYPE, SHA256_METADATA, STATUS_QUARANTINED, STATUS_TAG,
    STATUS_VALID,
};
use crate::keys::{KeyKind, KeyLayout};
use crate::others::{self, OtherKind};
use crate::pyfmt;
use crate::reference::Reference;
use crate::reference::events::{self, EventSet};
use crate::rules::{self, SidecarStanding, Violation};
use crate::storage::{
    GetResult, ObjectMeta, ObjectStore, PutMode, PutOptions, StorageError, etags_equal,
};

/// The tag every judged version carries.

#[derive(Debug, Clone)]
pub struct ValidatorConfig {
    /// The bucket the store reads; events naming another bucket are skipped.
    pub bucket: String,
    pub layout: KeyLayout,
    /// Write one audit record per judged object.
    pub write_audit: bool,
    /// Earlier versions looked at when restoring a sidecar or placing a sidecar's checksum.
    pub lookback: usize,
}

impl ValidatorConfig {
    pub fn new(bucket: impl Into<String>, layout: KeyLayout) -> Self {
        ValidatorConfig {
            bucket: bucket.into(),
            layout,
            write_audit: true,
            lookback: 10,
        }
    }
}

/// Why an event record was not judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    TestEvent,
    /// Not an `ObjectCreated:*` event.
    NotCreated,
    OtherBucket,
    Reserved(&'static str),
    Temporary,
    /// Outside the layout's prefix and version.
    Foreign,
    /// Under the layout but not a dataset's parquet or sidecar.
    NotCachePath(String),
    /// The version no longer exists.
    Gone,
    /// A newer sidecar replaced this one before it was judged.
    Superseded,
    /// The sidecar describes an earlier version of the parquet; the current one's sidecar
    /// is still to come.
    SidecarOfEarlierVersion,
    /// The sidecar describes a parquet that is unreadable and awaits its own judgement.
    ParquetPending,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::TestEvent => f.write_str("s3:TestEvent"),
            SkipReason::NotCreated => f.write_str("not an ObjectCreated event"),
            SkipReason::OtherBucket => f.write_str("another bucket"),
            SkipReason::Reserved(area) => write!(f, "reserved area {area}/"),
            SkipReason::Temporary => f.write_str("temporary upload (.tmp-)"),
            SkipReason::Foreign => f.write_str("outside the cache prefix and version"),
            SkipReason::NotCachePath(why) => write!(f, "not a cache path: {why}"),
            SkipReason::Gone => f.write_str("the version no longer exists"),
            SkipReason::Superseded => f.write_str("superseded by a newer version"),
            SkipReason::SidecarOfEarlierVersion => {
                f.write_str("sidecar of an earlier version; the current one's is to come")
            }
            SkipReason::ParquetPending => f.write_str("its parquet awaits judgement"),
        }
    }
}

/// What became of a key after its current version was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    /// The validated version `version_id`'s bytes were written back as `new_version_id`.
    Restored {
        version_id: String,
        new_version_id: Option<String>,
    },
    /// A sidecar computed from the parquet at the key was written.
    Regenerated,
    /// No validated version exists: the key was deleted.
    Deleted,
    /// The rejected version was no longer the key's current one: nothing to undo.
    Superseded,
}

impl Restore {
    pub fn action(&self) -> &'static str {
        match self {
            Restore::Restored { .. } => "restored",
            Restore::Regenerated => "regenerated",
            Restore::Deleted => "deleted",
            Restore::Superseded => "superseded",
        }
    }

    /// The validated version put back onto the key.
    pub fn restored_to(&self) -> Option<&str> {
        match self {
            Restore::Restored { version_id, .. } => Some(version_id),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Skipped(SkipReason),
    /// Already judged (a re-delivered event, or the restore's own write).
    Duplicate,
    Valid,
    Quarantined {
        restore: Restore,
    },
    /// Another object lumibot keeps, looked at and left as it is.
    Recognised,
}

impl Outcome {
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Skipped(_) => "skipped",
            Outcome::Duplicate => "duplicate",
            Outcome::Valid => "valid",
            Outcome::Recognised => "recognised",
            Outcome::Quarantined { .. } => "quarantined",
        }
    }
}

/// The judgement of one event record.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub event: EventRecord,
    /// `None` when the key is no dataset object.
    pub kind: Option<ObjectKind>,
    /// The kind of another object lumibot keeps, when the key names one.
    pub other: Option<OtherKind>,
    /// What was noticed in such an object (reported, never acted on).
    pub notes: Vec<String>,
    pub version_id: Option<String>,
    pub etag: Option<String>,
    pub sha256: Option<String>,
    pub outcome: Outcome,
    pub violations: Vec<Violation>,
    pub bytes: Option<u64>,
    pub rows: Option<u64>,
    /// How much of a dataset parquet the rules read, when they were applied.
    pub checked: Option<Checked>,
    pub elapsed_ms: u64,
    /// Where the audit record went.
    pub audit_key: Option<String>,
}

impl Verdict {
    fn new(event: &EventRecord) -> Self {
        Verdict {
            event: event.clone(),
            kind: None,
            other: None,
            notes: Vec::new(),
            version_id: event.version_id.clone(),
            etag: event.etag.clone(),
            sha256: None,
            outcome: Outcome::Duplicate,
            violations: Vec::new(),
            bytes: None,
            rows: None,
            checked: None,
            elapsed_ms: 0,
            audit_key: None,
        }
    }

    fn saw(&mut self, got: &GetResult) {
        self.version_id = got.meta.version_id.clone();
        self.etag = Some(got.meta.etag.clone());
        self.bytes = Some(got.bytes.len() as u64);
    }
}

/// How much of a dataset parquet its judgement read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// Every row group ([`rules::check_object`]).
    Whole,
    /// Only the row groups appended to the version the manifest recorded as current, whose
    /// row groups it keeps byte for byte ([`rules::check_extension`]).
    Appended,
}

/// Why an event could not be judged; the event should be retried when retryable.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ValidatorError {
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

impl ValidatorError {
    /// What a caller can do about it, by the storage seam's transience: outages and lost
    /// races pass when the event is delivered again; denied access or a manifest that is not
    /// ours needs a person.
    pub fn error_type(&self) -> ErrorType {
        match self {
            ValidatorError::Storage(e) | ValidatorError::Manifest(ManifestError::Storage(e)) => {
                ErrorType::of_storage(e)
            }
            ValidatorError::Manifest(ManifestError::Contention { .. }) => {
                ErrorType::StorageConflict
            }
            ValidatorError::Manifest(ManifestError::Corrupt { .. }) => ErrorType::Internal,
        }
    }

    /// Whether delivering the event again may succeed.
    pub fn is_retryable(&self) -> bool {
        self.error_type().is_retryable()
    }
}

type Result<T, E = ValidatorError> = std::result::Result<T, E>;

/// The parquet now at a dataset's key.
#[derive(Debug, Clone)]
struct AtKey {
    meta: ObjectMeta,
    sha256: String,
    /// `None` when it does not decode.
    facts: Option<BatchFacts>,
}

/// Judges events against one bucket.
pub struct Validator<S> {
    store: S,
    config: ValidatorConfig,
    clock: Arc<dyn Clock>,
}

impl<S: fmt::Debug> fmt::Debug for Validator<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Validator")
            .field("store", &self.store)
            .field("config", &self.config)
            .finish()
    }
}

/// How a reference object is named in quarantine and audit: a ranges file as a sidecar.
fn reference_kind(reference: &Reference) -> ObjectKind {
    match reference {
        Reference::Events { ranges: true, .. } => ObjectKind::Sidecar,
        _ => ObjectKind::Parquet,
    }
}

fn same_version(a: &ObjectMeta, b: &ObjectMeta) -> bool {
    match (&a.version_id, &b.version_id) {
        (Some(x), Some(y)) => x == y,
        _ => etags_equal(&a.etag, &b.etag),
    }
}

impl<S: ObjectStore> Validator<S> {
    pub fn new(store: S, config: ValidatorConfig) -> Self {
        Validator {
            store,
            config,
            clock: Arc::new(SystemClock),
        }
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn config(&self) -> &ValidatorConfig {
        &self.config
    }

    /// The time on the validator's clock.
    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }

    fn dyn_store(&self) -> &dyn ObjectStore {
        &self.store
    }

    fn layout(&self) -> &KeyLayout {
        &self.config.layout
    }

    /// Judge one record, act on the verdict and write its audit record.
    pub async fn judge(&self, event: &EventRecord) -> Result<Verdict> {
        let started = Instant::now();
        let mut verdict = Verdict::new(event);
        verdict.outcome = self.decide(event, &mut verdict).await?;
        verdict.elapsed_ms = started.elapsed().as_millis() as u64;
        let audited = verdict.kind.is_some()
            || verdict.other.is_some()
            || matches!(
                verdict.outcome,
                Outcome::Skipped(SkipReason::NotCachePath(_))
            );
        if self.config.write_audit && audited {
            let at = self.clock.now();
            let record = AuditRecord::of(&verdict, at);
            verdict.audit_key =
                Some(audit::write(self.dyn_store(), self.layout(), &record, at).await?);
        }
        match &verdict.outcome {
            Outcome::Quarantined { restore } => tracing::warn!(
                key = %event.key,
                version_id = ?verdict.version_id,
                restore = restore.action(),
                violations = %verdict.violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
                "quarantined"
            ),
            outcome => tracing::info!(
                key = %event.key,
                version_id = ?verdict.version_id,
                verdict = outcome.name(),
                elapsed_ms = verdict.elapsed_ms,
                "judged"
            ),
        }
        Ok(verdict)
    }

    async fn decide(&self, event: &EventRecord, verdict: &mut Verdict) -> Result<Outcome> {
        if event.is_test_event() {
            return Ok(Outcome::Skipped(SkipReason::TestEvent));
        }
        if !event.is_object_created() {
            return Ok(Outcome::Skipped(SkipReason::NotCreated));
        }
        if !event.bucket.is_empty() && event.bucket != self.config.bucket {
            return Ok(Outcome::Skipped(SkipReason::OtherBucket));
        }
        match self.layout().classify(&event.key) {
            Err(e) => Ok(Outcome::Skipped(SkipReason::NotCachePath(e.0))),
            Ok(KeyKind::Reserved(area)) => Ok(Outcome::Skipped(SkipReason::Reserved(area))),
            Ok(KeyKind::Temporary) => Ok(Outcome::Skipped(SkipReason::Temporary)),
            Ok(KeyKind::Foreign) => Ok(Outcome::Skipped(SkipReason::Foreign)),
            Ok(KeyKind::Data(dataset)) => {
                verdict.kind = Some(ObjectKind::Parquet);
                self.judge_parquet(&dataset, event, verdict).await
            }
            Ok(KeyKind::Sidecar(dataset)) => {
                verdict.kind = Some(ObjectKind::Sidecar);
                self.judge_sidecar(&dataset, event, verdict).await
            }
            Ok(KeyKind::Other(kind)) => {
                verdict.other = Some(kind);
                let relative = self.layout().relative_of(&event.key).unwrap_or_default();
                match Reference::of(relative) {
                    Some(reference) => {
                        verdict.kind = Some(reference_kind(&reference));
                        self.judge_reference(&reference, relative, event, verdict)
                            .await
                    }
                    None => self.inspect_other(kind, event, verdict).await,
                }
            }
        }
    }

    /// Another object lumibot keeps: looked at, never judged by the dataset rules, never
    /// quarantined or replaced.
    async fn inspect_other(
        &self,
        kind: OtherKind,
        event: &EventRecord,
        verdict: &mut Verdict,
    ) -> Result<Outcome> {
        let Some(got) = self
            .get_version(&event.key, event.version_id.as_deref())
            .await?
        else {
            return Ok(Outcome::Skipped(SkipReason::Gone));
        };
        verdict.saw(&got);
        verdict.sha256 = Some(got.sha256_hex());
        let relative = self.layout().relative_of(&event.key).unwrap_or(&event.key);
        let seen = others::inspect(kind, relative, &got.bytes);
        verdict.rows = seen.rows;
        verdict.notes = seen.notes;
        Ok(Outcome::Recognised)
    }

    /// A reference object (events, their ranges, a chain): judged on its own bytes by its
    /// rules, recorded in its manifest, or put aside with the last valid version restored.
    async fn judge_reference(
        &self,
        reference: &Reference,
        relative: &str,
        event: &EventRecord,
        verdict: &mut Verdict,
    ) -> Result<Outcome> {
        let key = event.key.as_str();
        let manifest_key = self.layout().manifest_key_of(relative);
        let manifest = self.read_manifest_at(&manifest_key).await?;
        if let Some(id) = &event.version_id
            && manifest.contains_version(id)
        {
            return Ok(Outcome::Duplicate);
        }
        let Some(got) = self.get_version(key, event.version_id.as_deref()).await? else {
            return Ok(Outcome::Skipped(SkipReason::Gone));
        };
        verdict.saw(&got);
        let version = got.meta.version_id.clone();
        let sha256 = got.sha256_hex();
        verdict.sha256 = Some(sha256.clone());
        if version
            .as_ref()
            .is_some_and(|id| manifest.contains_version(id))
            || manifest
                .current
                .as_ref()
                .is_some_and(|c| c.sha256 == sha256)
        {
            return Ok(Outcome::Duplicate);
        }
        if self.status_of(key, version.as_deref()).await?.as_deref() == Some(STATUS_QUARANTINED)
            && !self.is_current(key, &got.meta).await?
        {
            return Ok(Outcome::Duplicate);
        }
        let (violations, facts) = rules::check_reference(reference, &got.bytes);
        verdict.rows = facts.as_ref().map(|f| f.rows);
        let kind = reference_kind(reference);
        let content_type = match kind {
            ObjectKind::Parquet => PARQUET_CONTENT_TYPE,
            ObjectKind::Sidecar => JSON_CONTENT_TYPE,
        };
        if !violations.is_empty() {
            verdict.violations = violations;
            let keys = quarantine::keys_of(
                self.layout(),
                relative,
                kind,
                version.as_deref().unwrap_or(&sha256),
            );
            let reason = self.reason(
                event,
                kind,
                &got,
                &sha256,
                &verdict.violations,
                &keys.object,
            );
            quarantine::put_aside(self.dyn_store(), key, version.as_deref(), &keys, &reason)
                .await?;
            self.set_status(key, version.as_deref(), STATUS_QUARANTINED)
                .await?;
            let restore = self
                .restore_version(&manifest_key, key, &got.meta, content_type)
                .await?;
            return Ok(Outcome::Quarantined { restore });
        }
        let facts = facts.unwrap_or_default();
        if let Some(why) = facts.ignored {
            verdict.notes.push(why);
            return Ok(Outcome::Recognised);
        }
        if let Reference::Events { set, ranges } = reference {
            verdict
                .notes
                .extend(self.events_outside_ranges(set, *ranges, &got.bytes).await?);
        }
        let entry = ManifestEntry {
            version_id: version.clone(),
            etag: got.meta.etag.clone(),
            sha256,
            rows: facts.rows,
            real_rows: facts.rows,
            placeholders: 0,
            min: facts.min.map(|d| d.to_string()),
            max: facts.max.map(|d| d.to_string()),
            bytes: got.bytes.len() as u64,
            validated_at: self.clock.now(),
            last_modified: got.meta.last_modified,
            sequencer: event.sequencer.clone(),
        };
        let order = self.version_order(key).await?;
        let recorded = manifest::record(self.dyn_store(), &manifest_key, &entry, &order).await?;
        self.set_status(key, version.as_deref(), STATUS_VALID)
            .await?;
        Ok(match recorded {
            Recorded::Added { .. } => Outcome::Valid,
            Recorded::AlreadyThere => Outcome::Duplicate,
        })
    }

    /// Events the parquet holds outside the dates its ranges file covers, as a note: between
    /// a fill's two writes (parquet first) they legitimately disagree, so this is reported in
    /// the audit record, never a reason to quarantine. `bytes` is the object judged (the
    /// ranges file when `ranges`), the other one is read from the key.
    async fn events_outside_ranges(
        &self,
        set: &EventSet,
        ranges: bool,
        bytes: &Bytes,
    ) -> Result<Option<String>> {
        let other = if ranges {
            set.relative_path()
        } else {
            set.ranges_path()
        };
        let Some(other) = self
            .get_version(&self.layout().key_for_relative(&other), None)
            .await?
        else {
            return Ok(None);
        };
        let (parquet, ranges_bytes) = if ranges {
            (&other.bytes, bytes)
        } else {
            (bytes, &other.bytes)
        };
        let covered = events::read_ranges(ranges_bytes);
        let Some(found) = codec::decode(parquet.clone())
            .ok()
            .and_then(|d| events::from_batch(set.event_type, &d.batch).ok())
        else {
            return Ok(None);
        };
        let outside: Vec<String> = found
            .iter()
            .filter(|e| !events::covers(&covered, e.date, e.date))
            .map(|e| e.date.to_string())
            .collect();
        Ok((!outside.is_empty()).then(|| {
            format!(
                "{} event(s) outside the ranges file's dates ({}): a fill between its two writes, or a writer that recorded no range",
                outside.len(),
                outside.join(", ")
            )
        }))
    }

    async fn read_manifest(&self, dataset: &Dataset) -> Result<Manifest> {
        self.read_manifest_at(&self.layout().manifest_key(dataset))
            .await
    }

    async fn read_manifest_at(&self, key: &str) -> Result<Manifest> {
        Ok(manifest::read(self.dyn_store(), key)
            .await?
            .map(|(m, _)| m)
            .unwrap_or_default())
    }

    async fn get_version(&self, key: &str, version: Option<&str>) -> Result<Option<GetResult>> {
        match self.store.get(key, version).await {
            Ok(got) => Ok(Some(got)),
            Err(StorageError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn head_current(&self, key: &str) -> Result<Option<ObjectMeta>> {
        match self.store.head(key, None).await {
            Ok(meta) => Ok(Some(meta)),
            Err(StorageError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn is_current(&self, key: &str, meta: &ObjectMeta) -> Result<bool> {
        Ok(self
            .head_current(key)
            .await?
            .is_some_and(|current| same_version(&current, meta)))
    }

    async fn status_of(&self, key: &str, version: Option<&str>) -> Result<Option<String>> {
        match self.store.get_tags(key, version).await {
            Ok(tags) => Ok(tags.get(STATUS_TAG).cloned()),
            Err(StorageError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Set the status tag of a version, keeping its other tags.
    async fn set_status(&self, key: &str, version: Option<&str>, status: &str) -> Result<()> {
        let mut tags = match self.store.get_tags(key, version).await {
            Ok(tags) => tags,
            Err(StorageError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if tags.get(STATUS_TAG).map(String::as_str) == Some(status) {
            return Ok(());
        }
        tags.insert(STATUS_TAG.to_string(), status.to_string());
        match self.store.put_tags(key, version, &tags).await {
            Ok(()) | Err(StorageError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn judge_parquet(
        &self,
        dataset: &Dataset,
        event: &EventRecord,
        verdict: &mut Verdict,
    ) -> Result<Outcome> {
        let key = event.key.as_str();
        let manifest = self.read_manifest(dataset).await?;
        if let Some(id) = &event.version_id
            && manifest.contains_version(id)
        {
            return Ok(Outcome::Duplicate);
        }
        let Some(got) = self.get_version(key, event.version_id.as_deref()).await? else {
            return Ok(Outcome::Skipped(SkipReason::Gone));
        };
        verdict.saw(&got);
        let version = got.meta.version_id.clone();
        if let Some(id) = &version
            && manifest.contains_version(id)
        {
            return Ok(Outcome::Duplicate);
        }
        let sha256 = got.sha256_hex();
        verdict.sha256 = Some(sha256.clone());
        if manifest
            .current
            .as_ref()
            .is_some_and(|c| c.sha256 == sha256)
        {
            // The manifest records contents: a new version of the current bytes (a writer
            // that put them again) adds nothing to it, but is as valid as they are.
            self.set_status(key, version.as_deref(), STATUS_VALID)
                .await?;
            return Ok(Outcome::Duplicate);
        }
        if self.status_of(key, version.as_deref()).await?.as_deref() == Some(STATUS_QUARANTINED)
            && !self.is_current(key, &got.meta).await?
        {
            return Ok(Outcome::Duplicate);
        }

        let now = self.clock.now();
        let (report, checked) = self
            .check_parquet(
                dataset,
                key,
                &got.bytes,
                &sha256,
                manifest.current.as_ref(),
                now,
            )
            .await;
        verdict.checked = Some(checked);
        verdict.rows = report.facts.map(|f| f.rows as u64);
        if !report.is_valid() {
            verdict.violations = report.violations;
            let restore = self
                .reject_parquet(dataset, event, &got, &sha256, &verdict.violations)
                .await?;
            return Ok(Outcome::Quarantined { restore });
        }

        let facts = report.facts.unwrap_or_default();
        let entry = ManifestEntry {
            version_id: version.clone(),
            etag: got.meta.etag.clone(),
            sha256: sha256.clone(),
            rows: facts.rows as u64,
            real_rows: facts.real_rows as u64,
            placeholders: facts.placeholders as u64,
            min: facts.min.map(pyfmt::pandas_utc_isoformat),
            max: facts.max.map(pyfmt::pandas_utc_isoformat),
            bytes: got.bytes.len() as u64,
            validated_at: now,
            last_modified: got.meta.last_modified,
            sequencer: event.sequencer.clone(),
        };
        let order = self.version_order(key).await?;
        let manifest_key = self.layout().manifest_key(dataset);
        let recorded = manifest::record(self.dyn_store(), &manifest_key, &entry, &order).await?;
        self.set_status(key, version.as_deref(), STATUS_VALID)
            .await?;
        let judged = AtKey {
            meta: got.meta.clone(),
            sha256,
            facts: Some(facts),
        };
        self.reconcile_sidecar(dataset, Some(judged)).await?;
        Ok(match recorded {
            Recorded::Added { .. } => Outcome::Valid,
            Recorded::AlreadyThere => Outcome::Duplicate,
        })
    }

    /// The rules on a parquet's bytes: on its appended row groups alone when it extends the
    /// version the manifest records as current ([`rules::check_extension`]), else on every
    /// row. Reading that version is an optimisation: when it fails the whole object is
    /// judged instead.
    async fn check_parquet(
        &self,
        dataset: &Dataset,
        key: &str,
        bytes: &Bytes,
        sha256: &str,
        current: Option<&ManifestEntry>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> (rules::Report, Checked) {
        if let Some(entry) = current
            && let Some(id) = entry.version_id.as_deref()
            && let Some(facts) = recorded_facts(entry)
        {
            match self.get_version(key, Some(id)).await {
                Ok(Some(earlier))
                    if is_recorded(&earlier.meta, earlier.bytes.len() as u64, entry) =>
                {
                    if let Some(report) =
                        rules::check_extension(dataset, bytes, sha256, &earlier.bytes, &facts, now)
                    {
                        return (report, Checked::Appended);
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(
                    key,
                    version_id = id,
                    error = %e,
                    "the validated version is unreadable; judging the whole object"
                ),
            }
        }
        (
            rules::check_object_hashed(dataset, bytes, sha256.to_string(), None, now),
            Checked::Whole,
        )
    }

    async fn version_order(&self, key: &str) -> Result<VersionOrder> {
        let versions = self.store.list_versions(key).await?;
        Ok(VersionOrder::from_newest_first(
            versions
                .iter()
                .filter(|v| !v.is_delete_marker)
                .map(|v| v.version_id.as_str()),
        ))
    }

    async fn reject_parquet(
        &self,
        dataset: &Dataset,
        event: &EventRecord,
        got: &GetResult,
        sha256: &str,
        violations: &[Violation],
    ) -> Result<Restore> {
        let key = event.key.as_str();
        let version = got.meta.version_id.as_deref();
        let keys = quarantine::keys(
            self.layout(),
            dataset,
            ObjectKind::Parquet,
            version.unwrap_or(sha256),
        );
        let reason = self.reason(
            event,
            ObjectKind::Parquet,
            got,
            sha256,
            violations,
            &keys.object,
        );
        quarantine::put_aside(self.dyn_store(), key, version, &keys, &reason).await?;
        self.set_status(key, version, STATUS_QUARANTINED).await?;
        let restore = self.restore_parquet(dataset, key, &got.meta).await?;
        self.reconcile_sidecar(dataset, None).await?;
        Ok(restore)
    }

    fn reason(
        &self,
        event: &EventRecord,
        kind: ObjectKind,
        got: &GetResult,
        sha256: &str,
        violations: &[Violation],
        quarantined_as: &str,
    ) -> Reason {
        Reason {
            bucket: self.config.bucket.clone(),
            key: got.meta.key.clone(),
            kind,
            version_id: got.meta.version_id.clone(),
            etag: Some(got.meta.etag.clone()),
            sha256: sha256.to_string(),
            bytes: got.bytes.len() as u64,
            violations: violations.to_vec(),
            writer: Writer {
                principal: event.principal.clone(),
                source_ip: event.source_ip.clone(),
                event_name: event.event_name.clone(),
                event_time: event.event_time,
            },
            quarantined_at: self.clock.now(),
            quarantined_as: quarantined_as.to_string(),
        }
    }

    /// Put the newest validated version back on the key, if the rejected one is still there.
    async fn restore_parquet(
        &self,
        dataset: &Dataset,
        key: &str,
        bad: &ObjectMeta,
    ) -> Result<Restore> {
        let manifest_key = self.layout().manifest_key(dataset);
        self.restore_version(&manifest_key, key, bad, PARQUET_CONTENT_TYPE)
            .await
    }

    /// Put the newest version the manifest at `manifest_key` validated back on `key`, if the
    /// rejected one is still there; with none, delete the key.
    async fn restore_version(
        &self,
        manifest_key: &str,
        key: &str,
        bad: &ObjectMeta,
        content_type: &str,
    ) -> Result<Restore> {
        let Some(current) = self.head_current(key).await? else {
            return Ok(Restore::Superseded);
        };
        if !same_version(&current, bad) {
            return Ok(Restore::Superseded);
        }
        let manifest = self.read_manifest_at(manifest_key).await?;
        let mut tried = Vec::new();
        for entry in manifest.current.iter().chain(&manifest.history) {
            let Some(id) = entry.version_id.as_deref() else {
                continue;
            };
            if tried.contains(&id) {
                continue;
            }
            tried.push(id);
            let Some(good) = self.get_version(key, Some(id)).await? else {
                continue; // expired by a lifecycle rule: try an older one
            };
            let options = PutOptions {
                mode: PutMode::IfMatch(current.etag.clone()),
                metadata: good.meta.metadata.clone(),
                content_type: Some(content_type.into()),
                ..Default::default()
            };
            return match self.store.put(key, good.bytes, options).await {
                Ok(put) => {
                    self.set_status(key, put.version_id.as_deref(), STATUS_VALID)
                        .await?;
                    Ok(Restore::Restored {
                        version_id: id.to_string(),
                        new_version_id: put.version_id,
                    })
                }
                Err(StorageError::PreconditionFailed { .. }) => Ok(Restore::Superseded),
                Err(e) => Err(e.into()),
            };
        }
        // S3 has no conditional delete; a write racing this delete is re-created by its
        // writer's retry or judged by its own event, and readers only miss, never see bad data.
        self.store.delete(key).await?;
        Ok(Restore::Deleted)
    }

    /// The parquet now at a dataset's key; `known` is reused when it is that version.
    async fn parquet_at_key(
        &self,
        dataset: &Dataset,
        known: Option<AtKey>,
    ) -> Result<Option<AtKey>> {
        let key = self.layout().data_key(dataset);
        let Some(meta) = self.head_current(&key).await? else {
            return Ok(None);
        };
        if let Some(known) = known
            && same_version(&known.meta, &meta)
        {
            return Ok(Some(known));
        }
        let manifest = self.read_manifest(dataset).await?;
        if let Some(entry) = manifest
            .current
            .as_ref()
            .filter(|entry| is_recorded(&meta, meta.size, entry))
            && let Some(facts) = recorded_facts(entry)
        {
            // The version the manifest validated: its checksum and facts as recorded.
            return Ok(Some(AtKey {
                meta,
                sha256: entry.sha256.clone(),
                facts: Some(facts),
            }));
        }
        let Some(got) = self.get_version(&key, meta.version_id.as_deref()).await? else {
            return Ok(None);
        };
        let sha256 = got.sha256_hex();
        let facts = codec::decode(got.bytes)
            .ok()
            .and_then(|d| BatchFacts::of(&d.batch).ok());
        Ok(Some(AtKey {
            meta: got.meta,
            sha256,
            facts,
        }))
    }

    /// How a sidecar stands against the parquet at the key (the pair rule).
    async fn standing(
        &self,
        dataset: &Dataset,
        sidecar: &[u8],
        at_key: Option<&AtKey>,
    ) -> Result<SidecarStanding> {
        let manifest = self.read_manifest(dataset).await?;
        let current = at_key.and_then(|p| p.facts.as_ref().map(|f| (p.sha256.as_str(), f)));
        let standing = rules::sidecar_standing(sidecar, current, &manifest.validated_sha256s());
        if !matches!(standing, SidecarStanding::Bad(_)) {
            return Ok(standing);
        }
        // Files written before the validator ran are in no manifest: an earlier version
        // that was never rejected still counts as a legitimate predecessor.
        let checksum = Sidecar::parse(sidecar).ok().and_then(|s| s.checksum);
        if let Some(checksum) = checksum
            && at_key.is_none_or(|p| p.sha256 != checksum)
            && self.is_unrejected_version(dataset, &checksum).await?
        {
            return Ok(SidecarStanding::Earlier);
        }
        Ok(standing)
    }

    /// Whether a recent version of the dataset's parquet has this sha256 and was never
    /// quarantined.
    async fn is_unrejected_version(&self, dataset: &Dataset, sha256: &str) -> Result<bool> {
        let key = self.layout().data_key(dataset);
        let versions = self.store.list_versions(&key).await?;
        for v in versions
            .iter()
            .filter(|v| !v.is_delete_marker)
            .take(self.config.lookback)
        {
            let id = Some(v.version_id.as_str());
            let meta = match self.store.head(&key, id).await {
                Ok(meta) => meta,
                Err(StorageError::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            };
            let known = match meta.metadata.get(SHA256_METADATA) {
                Some(sha) => sha.clone(),
                None => match self.get_version(&key, id).await? {
                    Some(got) => got.sha256_hex(),
                    None => continue,
                },
            };
            if known == sha256 {
                return Ok(self.status_of(&key, id).await?.as_deref() != Some(STATUS_QUARANTINED));
            }
        }
        Ok(false)
    }

    /// After a parquet judgement: make sure the sidecar at the key does not disagree.
    async fn reconcile_sidecar(&self, dataset: &Dataset, judged: Option<AtKey>) -> Result<()> {
        let sidecar_key = self.layout().sidecar_key(dataset);
        let Some(sidecar) = self.get_version(&sidecar_key, None).await? else {
            return Ok(());
        };
        let at_key = self.parquet_at_key(dataset, judged).await?;
        if at_key
            .as_ref()
            .is_some_and(|p| p.facts.is_none() && sidecar_names(&sidecar.bytes, &p.sha256))
        {
            return Ok(()); // the unreadable parquet's own judgement settles the pair
        }
        if let SidecarStanding::Bad(violations) = self
            .standing(dataset, &sidecar.bytes, at_key.as_ref())
            .await?
        {
            let event = EventRecord::new(&self.config.bucket, &sidecar_key);
            self.reject_sidecar(dataset, &event, &sidecar, &violations, at_key)
                .await?;
        }
        Ok(())
    }

    async fn judge_sidecar(
        &self,
        dataset: &Dataset,
        event: &EventRecord,
        verdict: &mut Verdict,
    ) -> Result<Outcome> {
        let key = event.key.as_str();
        let Some(got) = self.get_version(key, event.version_id.as_deref()).await? else {
            return Ok(Outcome::Skipped(SkipReason::Gone));
        };
        verdict.saw(&got);
        verdict.sha256 = Some(got.sha256_hex());
        if !self.is_current(key, &got.meta).await? {
            return Ok(Outcome::Skipped(SkipReason::Superseded));
        }
        let version = got.meta.version_id.as_deref();
        if self.status_of(key, version).await?.as_deref() == Some(STATUS_VALID) {
            return Ok(Outcome::Duplicate);
        }
        let at_key = self.parquet_at_key(dataset, None).await?;
        if at_key
            .as_ref()
            .is_some_and(|p| p.facts.is_none() && sidecar_names(&got.bytes, &p.sha256))
        {
            return Ok(Outcome::Skipped(SkipReason::ParquetPending));
        }
        match self.standing(dataset, &got.bytes, at_key.as_ref()).await? {
            SidecarStanding::Agrees => {
                verdict.rows = Sidecar::parse(&got.bytes).ok().map(|s| s.rows);
                self.set_status(key, version, STATUS_VALID).await?;
                Ok(Outcome::Valid)
            }
            SidecarStanding::Earlier => Ok(Outcome::Skipped(SkipReason::SidecarOfEarlierVersion)),
            SidecarStanding::Bad(violations) => {
                verdict.violations = violations;
                let restore = self
                    .reject_sidecar(dataset, event, &got, &verdict.violations, at_key)
                    .await?;
                Ok(Outcome::Quarantined { restore })
            }
        }
    }

    async fn reject_sidecar(
        &self,
        dataset: &Dataset,
        event: &EventRecord,
        got: &GetResult,
        violations: &[Violation],
        at_key: Option<AtKey>,
    ) -> Result<Restore> {
        let key = got.meta.key.as_str();
        let version = got.meta.version_id.as_deref();
        let sha256 = got.sha256_hex();
        let keys = quarantine::keys(
            self.layout(),
            dataset,
            ObjectKind::Sidecar,
            version.unwrap_or(&sha256),
        );
        let reason = self.reason(
            event,
            ObjectKind::Sidecar,
            got,
            &sha256,
            violations,
            &keys.object,
        );
        quarantine::put_aside(self.dyn_store(), key, version, &keys, &reason).await?;
        self.set_status(key, version, STATUS_QUARANTINED).await?;
        self.restore_sidecar(key, &got.meta, at_key).await
    }

    /// Make the sidecar key agree with the parquet at the key again.
    async fn restore_sidecar(
        &self,
        key: &str,
        bad: &ObjectMeta,
        at_key: Option<AtKey>,
    ) -> Result<Restore> {
        let Some(current) = self.head_current(key).await? else {
            return Ok(Restore::Superseded);
        };
        if !same_version(&current, bad) {
            return Ok(Restore::Superseded);
        }
        let Some((sha256, facts)) = at_key.and_then(|p| p.facts.map(|f| (p.sha256, f))) else {
            self.store.delete(key).await?;
            return Ok(Restore::Deleted);
        };
        let mut replacement = None;
        let versions = self.store.list_versions(key).await?;
        for v in versions
            .iter()
            .filter(|v| !v.is_delete_marker && Some(&v.version_id) != bad.version_id.as_ref())
            .take(self.config.lookback)
        {
            let Some(earlier) = self.get_version(key, Some(&v.version_id)).await? else {
                continue;
            };
            if rules::sidecar_standing(&earlier.bytes, Some((&sha256, &facts)), &[])
                == SidecarStanding::Agrees
            {
                replacement = Some((earlier.bytes, Some(v.version_id.clone())));
                break;
            }
        }
        let (body, from) = replacement.unwrap_or_else(|| {
            let fresh = Sidecar::new(&facts, &sha256, self.clock.now()).to_json();
            (Bytes::from(fresh), None)
        });
        let options = PutOptions {
            mode: PutMode::IfMatch(current.etag.clone()),
            content_type: Some(JSON_CONTENT_TYPE.into()),
            ..Default::default()
        };
        match self.store.put(key, body, options).await {
            Ok(put) => {
                self.set_status(key, put.version_id.as_deref(), STATUS_VALID)
                    .await?;
                Ok(match from {
                    Some(version_id) => Restore::Restored {
                        version_id,
                        new_version_id: put.version_id,
                    },
                    None => Restore::Regenerated,
                })
            }
            Err(StorageError::PreconditionFailed { .. }) => Ok(Restore::Superseded),
            Err(e) => Err(e.into()),
        }
    }
}

/// The facts a manifest entry records of its version, as [`BatchFacts`]; `None` when a
/// bound does not read back.
fn recorded_facts(entry: &ManifestEntry) -> Option<BatchFacts> {
    let bound = |text: &Option<String>| match text {
        None => Some(None),
        Some(text) => pyfmt::parse_pandas_utc_isoformat(text).map(Some),
    };
    // Entries written before the counts were recorded read them as 0.
    if entry.real_rows.checked_add(entry.placeholders) != Some(entry.rows) {
        return None;
    }
    Some(BatchFacts {
        rows: usize::try_from(entry.rows).ok()?,
        real_rows: usize::try_from(entry.real_rows).ok()?,
        placeholders: usize::try_from(entry.placeholders).ok()?,
        min: bound(&entry.min)?,
        max: bound(&entry.max)?,
    })
}

/// Whether a version of `size` bytes is the one the manifest entry recorded.
fn is_recorded(meta: &ObjectMeta, size: u64, entry: &ManifestEntry) -> bool {
    size == entry.bytes
        && etags_equal(&meta.etag, &entry.etag)
        && match (&meta.version_id, &entry.version_id) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
        && meta
            .metadata
            .get(SHA256_METADATA)
            .is_none_or(|sha256| *sha256 == entry.sha256)
}

/// Whether a sidecar's checksum is `sha256`.
fn sidecar_names(sidecar: &[u8], sha256: &str) -> bool {
    Sidecar::parse(sidecar)
        .ok()
        .and_then(|s| s.checksum)
        .is_some_and(|c| c == sha256)
}
