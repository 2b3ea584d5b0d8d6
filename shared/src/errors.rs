//! The one error vocabulary: what a caller of either function can do about a failure.
//!
//! Transience is decided where a failure happens: the storage seam
//! ([`StorageError::is_transient`](crate::storage::StorageError::is_transient)) and the
//! provider seam ([`ProviderError::is_transient`](crate::providers::ProviderError::is_transient)).
//! Every [`ErrorType`] derives from them, and so does every retry decision built on it: the
//! miss-handler's `errorType`, the object-validator's "deliver this event again", and the
//! client's retry of an invocation.

use serde::{Deserialize, Serialize};

/// The `errorType` of a failed invocation; callers decide on retries by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorType {
    /// The request (or event) is wrong; sending it again will never help.
    InvalidRequest,
    /// The provider account may not access this data; a person must change the plan.
    UpstreamNoPermission,
    /// The provider kept rate-limiting after bounded retries; retry later.
    UpstreamRateLimited,
    /// The provider was unreachable or failing after bounded retries; retry later.
    UpstreamUnavailable,
    /// The bucket could not take the write now: a concurrent writer kept winning, or the
    /// storage service was throttling or failing. Nothing was lost; retry later.
    StorageConflict,
    /// Anything a retry will not mend: a bug, a corrupt object, denied access, a protocol
    /// change. The message says what to look at.
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

    /// The type of a storage failure: transient ones are worth retrying.
    pub fn of_storage(error: &crate::storage::StorageError) -> Self {
        if error.is_transient() {
            ErrorType::StorageConflict
        } else {
            ErrorType::Internal
        }
    }
}

impl std::fmt::Display for ErrorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StorageError;

    #[test]
    fn names_round_trip_and_only_transient_types_retry() {
        for t in ErrorType::ALL {
            assert_eq!(ErrorType::parse(t.as_str()), Some(t));
        }
        let retryable: Vec<_> = ErrorType::ALL
            .into_iter()
            .filter(|t| t.is_retryable())
            .collect();
        assert_eq!(
            retryable,
            [
                ErrorType::UpstreamRateLimited,
                ErrorType::UpstreamUnavailable,
                ErrorType::StorageConflict
            ]
        );
    }

    #[test]
    fn storage_outages_and_lost_races_are_retryable_the_rest_is_not() {
        let unavailable = StorageError::Unavailable {
            operation: "put",
            key: "k".into(),
            message: "503 SlowDown".into(),
        };
        let lost = StorageError::PreconditionFailed { key: "k".into() };
        let denied = StorageError::AccessDenied {
            key: "k".into(),
            message: "no".into(),
        };
        let other = StorageError::Other {
            operation: "get",
            key: "k".into(),
            message: "NoSuchBucket".into(),
        };
        assert_eq!(
            ErrorType::of_storage(&unavailable),
            ErrorType::StorageConflict
        );
        assert_eq!(ErrorType::of_storage(&lost), ErrorType::StorageConflict);
        assert_eq!(ErrorType::of_storage(&denied), ErrorType::Internal);
        assert_eq!(ErrorType::of_storage(&other), ErrorType::Internal);
    }
}
