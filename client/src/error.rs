//! What can go wrong for a client caller, by what the caller can do about it.

use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveDate;

use cachefill_core::errors::ErrorType;
use cachefill_core::settings::{CacheMode, SettingsError};
use cachefill_core::storage::StorageError;

use crate::invoke::InvokeError;

#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The `LUMIBOT_CACHE_*` settings cannot be used.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The dataset or range is wrong; asking again will not help.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The mode may not fetch what is missing (`disabled`, or `readwrite` without a fill
    /// function): the caller has to fetch it itself.
    #[error(
        "{key}: {missing} wanted session(s) from {first} to {last} are not cached and the {mode} mode cannot fill them"
    )]
    NotCovered {
        key: String,
        mode: CacheMode,
        missing: usize,
        first: NaiveDate,
        last: NaiveDate,
    },
    /// `readonly` needs a fill function to ask on a miss.
    #[error(
        "{key} is not cached and no fill function is configured: set LUMIBOT_CACHE_FILL_FUNCTION to the miss-handler's name or ARN"
    )]
    NoFillFunction { key: String },
    /// A remote mode was asked for without a bucket to read.
    #[error("the {mode} mode needs a bucket (LUMIBOT_CACHE_S3_BUCKET)")]
    NoBucket { mode: CacheMode },
    /// The miss-handler failed or could not be reached; nothing was cached locally.
    #[error("filling {key}: {source}")]
    Invoke {
        key: String,
        #[source]
        source: InvokeError,
    },
    /// The fill timed out on the client and the object did not cover the range in time.
    #[error(
        "{key}: the fill function did not answer and the object did not cover the range within {waited:?} of polling"
    )]
    PollDeadline { key: String, waited: Duration },
    /// The fill function wrote somewhere else than this client reads: the function's
    /// `CACHE_PREFIX`/`CACHE_VERSION`/`CACHE_BUCKET` differ from the client's settings.
    #[error(
        "the fill function answered with {bucket}/{got} but this client reads {expected}: the function's CACHE_BUCKET, CACHE_PREFIX and CACHE_VERSION must match LUMIBOT_CACHE_S3_BUCKET, _PREFIX and _VERSION"
    )]
    WrongKey {
        bucket: String,
        expected: String,
        got: String,
    },
    /// The range has no trading session with data, and nothing is stored for the dataset.
    #[error("{key}: no data for {start}..{end} (no settled trading session with data)")]
    NoData {
        key: String,
        start: NaiveDate,
        end: NaiveDate,
    },
    /// The parquet never agreed with its sidecar within the download attempts.
    #[error("{key}: the parquet and its sidecar disagree after {attempts} attempts: {detail}")]
    Inconsistent {
        key: String,
        attempts: u32,
        detail: String,
    },
    /// A bucket call failed.
    #[error("{key}: {source}")]
    Storage {
        key: String,
        #[source]
        source: StorageError,
    },
    /// The local cache folder could not be read or written.
    #[error("local cache {}: {source}", path.display())]
    Local {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A cached file could not be decoded.
    #[error("{}: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
}

impl ClientError {
    pub(crate) fn storage(key: &str, source: StorageError) -> Self {
        ClientError::Storage {
            key: key.to_string(),
            source,
        }
    }

    pub(crate) fn local(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ClientError::Local {
            path: path.into(),
            source,
        }
    }

    /// The miss-handler's `errorType` behind this error, when there is one.
    pub fn error_type(&self) -> Option<ErrorType> {
        match self {
            ClientError::Invoke { source, .. } => source.error_type(),
            ClientError::InvalidRequest(_) => Some(ErrorType::InvalidRequest),
            _ => None,
        }
    }
}
