//! The miss-handler's answer and its failures (`docs/ARCHITECTURE.md` §5).

use serde::{Deserialize, Serialize};

use crate::calendar::CalendarError;
use crate::codec::CodecError;
use crate::codec::conform::SchemaMismatch;
use crate::dataset::DatasetError;
use crate::errors::ErrorType;
use crate::providers::ProviderError;
use crate::rules::Violation;
use crate::storage::StorageError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FillStatus {
    /// Missing sessions were fetched and written.
    Filled,
    /// The object already covered the range: nothing fetched.
    Hit,
    /// The range has no real rows (only placeholders, or no sessions at all).
    NoData,
}

impl FillStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FillStatus::Filled => "filled",
            FillStatus::Hit => "hit",
            FillStatus::NoData => "no_data",
        }
    }
}

/// What the miss-handler answers: where the data is and what was done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FillAnswer {
    pub status: FillStatus,
    pub bucket: String,
    pub key: String,
    pub version_id: Option<String>,
    pub etag: Option<String>,
    pub sha256: Option<String>,
    pub rows: u64,
    pub real_rows: u64,
    pub placeholders: u64,
    pub min: Option<String>,
    pub max: Option<String>,
    pub sessions_fetched: u64,
    pub upstream_requests: u64,
    pub elapsed_ms: u64,
    /// The files of a day-partitioned answer (aggregate trades), one per day in order;
    /// `key` and the fields above then describe the first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<PartAnswer>,
}

/// One day's file of a day-partitioned answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartAnswer {
    pub key: String,
    pub version_id: Option<String>,
    pub etag: Option<String>,
    pub sha256: Option<String>,
    pub rows: u64,
    pub first_id: Option<i64>,
    pub last_id: Option<i64>,
    /// Every trade of the day is in the file ([`crate::trades::coverage`]).
    pub complete: bool,
}

/// Why a fill failed. Nothing is written when a fill fails.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum FillError {
    #[error("invalid request: {0}")]
    InvalidRequest(#[from] DatasetError),
    /// A date of the request is outside the trading calendar.
    #[error("invalid request: {0}")]
    OutOfCalendar(#[from] CalendarError),
    #[error(transparent)]
    Upstream(#[from] ProviderError),
    /// Concurrent writers kept winning the conditional write of the parquet.
    #[error("storage conflict: {key} kept changing during {attempts} write attempts; retry later")]
    Contended { key: String, attempts: u32 },
    /// The parquet is written; concurrent writers kept replacing its sidecar.
    #[error("storage conflict: {key} kept changing; the parquet is written, its sidecar is not")]
    SidecarContended { key: String },
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The object at the key does not decode; a person should look at it.
    #[error(
        "the object at {key} is not readable parquet ({source}); run `cachefill validate` on it"
    )]
    Unreadable {
        key: String,
        #[source]
        source: CodecError,
    },
    /// The object at the key decodes but its columns do not fit its dataset.
    #[error("the object at {key} cannot be extended: {source}")]
    NotExtendable {
        key: String,
        #[source]
        source: SchemaMismatch,
    },
    /// The merged file broke a validation rule; it was not written.
    #[error(
        "the merged file for {key} fails validation, nothing was written: {}",
        violations.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    SelfCheck {
        key: String,
        violations: Vec<Violation>,
    },
    /// Building, merging or encoding rows failed: a bug or a provider answer out of shape.
    #[error("{stage} failed: {source}")]
    Codec {
        stage: &'static str,
        #[source]
        source: CodecError,
    },
}

impl FillError {
    pub(crate) fn codec(stage: &'static str) -> impl FnOnce(CodecError) -> FillError {
        move |source| FillError::Codec { stage, source }
    }

    pub fn error_type(&self) -> ErrorType {
        match self {
            FillError::InvalidRequest(_) | FillError::OutOfCalendar(_) => ErrorType::InvalidRequest,
            FillError::Upstream(e) => match e {
                ProviderError::NoPermission(_) => ErrorType::UpstreamNoPermission,
                ProviderError::RateLimited(_) => ErrorType::UpstreamRateLimited,
                ProviderError::Unavailable(_) => ErrorType::UpstreamUnavailable,
                ProviderError::Unsupported(_) => ErrorType::InvalidRequest,
                _ => ErrorType::Internal,
            },
            FillError::Contended { .. } | FillError::SidecarContended { .. } => {
                ErrorType::StorageConflict
            }
            FillError::Storage(e) => ErrorType::of_storage(e),
            FillError::Unreadable { .. }
            | FillError::NotExtendable { .. }
            | FillError::SelfCheck { .. }
            | FillError::Codec { .. } => ErrorType::Internal,
        }
    }
}
