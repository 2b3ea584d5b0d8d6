//! How commands fail: a message for a person and a documented exit code.

use crate::{ClientError, InvokeError};
use cachefill_core::errors::ErrorType;
use cachefill_core::fill::FillError;
use cachefill_core::storage::StorageError;

/// A command's failure: what to tell the user and which exit code to return.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

pub(super) const EXIT_INTERNAL: u8 = 1;
pub(super) const EXIT_INVALID: u8 = 2;
pub(super) const EXIT_UPSTREAM: u8 = 3;
pub(super) const EXIT_CONFLICT: u8 = 4;
/// The command ran and found problems: divergences (`audit`), datasets that failed (`warm`).
pub(super) const EXIT_FINDINGS: u8 = 5;

impl Failure {
    pub fn invalid(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_INVALID,
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_INTERNAL,
            message: message.into(),
        }
    }
}

/// The exit code of a miss-handler `errorType`.
pub(super) fn exit_code_of(error_type: ErrorType) -> u8 {
    match error_type {
        ErrorType::InvalidRequest => EXIT_INVALID,
        ErrorType::UpstreamNoPermission
        | ErrorType::UpstreamRateLimited
        | ErrorType::UpstreamUnavailable => EXIT_UPSTREAM,
        ErrorType::StorageConflict => EXIT_CONFLICT,
        ErrorType::Internal => EXIT_INTERNAL,
    }
}

impl From<FillError> for Failure {
    fn from(e: FillError) -> Self {
        Failure {
            code: exit_code_of(e.error_type()),
            message: format!("{}: {e}", e.error_type()),
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        let code = match &e {
            ClientError::Settings(_)
            | ClientError::InvalidRequest(_)
            | ClientError::NotCovered { .. }
            | ClientError::NoFillFunction { .. }
            | ClientError::NoBucket { .. }
            | ClientError::WrongKey { .. } => EXIT_INVALID,
            ClientError::Invoke {
                source: InvokeError::Function { error_type, .. },
                ..
            } => exit_code_of(*error_type),
            ClientError::Inconsistent { .. }
            | ClientError::Storage {
                source: StorageError::PreconditionFailed { .. },
                ..
            } => EXIT_CONFLICT,
            _ => EXIT_INTERNAL,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

/// Print a failure on stderr; its exit code.
pub(super) fn report(failure: Failure) -> u8 {
    eprintln!("error: {}", failure.message);
    failure.code
}

/// Print a value as one line of JSON on stdout.
pub(super) fn print_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string(value).map_err(|e| Failure::internal(e.to_string()))?;
    println!("{text}");
    Ok(())
}
