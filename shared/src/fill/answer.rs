//! The miss-handler's answer and its failures (DESIGN §6).

use serde::{Deserialize, Serialize};

use crate::dataset::DatasetError;
use crate::providers::ProviderError;
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
}

/// The `errorType` of a failed invocation; callers decide on retries by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorType {
    /// The request is wrong; retrying it will never help.
    InvalidRequest,
    UpstreamNoPermission,
    UpstreamRateLimited,
    UpstreamUnavailable,
    /// Concurrent writers kept winning; retry later.
    StorageConflict,
    Internal,
}

impl ErrorType {
    pub const ALL: [ErrorType; 6] = [
        ErrorType::InvalidRequest,
        ErrorType::UpstreamNoPermission,
        ErrorType::UpstreamRateLimited,
        ErrorType::UpstreamUnavailable,
        ErrorType::StorageConflict,
        ErrorType::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::InvalidRequest => "InvalidRequest",
            ErrorType::UpstreamNoPermission => "UpstreamNoPermission",
            ErrorType::UpstreamRateLimited => "UpstreamRateLimited",
            ErrorType::UpstreamUnavailable => "UpstreamUnavailable",
            ErrorType::StorageConflict => "StorageConflict",
            ErrorType::Internal => "Internal",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// Whether the same request may succeed later.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorType::UpstreamRateLimited
                | ErrorType::UpstreamUnavailable
                | ErrorType::StorageConflict
        )
    }
}

impl std::fmt::Display for ErrorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a fill failed. Nothing is written when a fill fails.
#[derive(Debug, thiserror::Error)]
pub enum FillError {
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Upstream(#[from] ProviderError),
    #[error("storage conflict: {0}")]
    StorageConflict(String),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<DatasetError> for FillError {
    fn from(e: DatasetError) -> Self {
        FillError::InvalidRequest(e.0)
    }
}

impl FillError {
    pub fn error_type(&self) -> ErrorType {
        match self {
            FillError::InvalidRequest(_) => ErrorType::InvalidRequest,
            FillError::Upstream(e) => match e {
                ProviderError::NoPermission(_) => ErrorType::UpstreamNoPermission,
                ProviderError::RateLimited(_) => ErrorType::UpstreamRateLimited,
                ProviderError::Unavailable(_) => ErrorType::UpstreamUnavailable,
                ProviderError::Unsupported(_) => ErrorType::InvalidRequest,
                _ => ErrorType::Internal,
            },
            FillError::StorageConflict(_) => ErrorType::StorageConflict,
            FillError::Storage(StorageError::PreconditionFailed { .. }) => {
                ErrorType::StorageConflict
            }
            FillError::Storage(_) | FillError::Internal(_) => ErrorType::Internal,
        }
    }
}
