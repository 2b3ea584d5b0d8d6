//! Why the stack could not do what a test asked.

use std::path::PathBuf;

/// What went wrong, with what a person can do about it in the message.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// A tool of the project venv is not installed.
    #[error(
        "{tool} not found at {path}: run scripts/setup-venv to install the end-to-end tools \
         (or set CACHEFILL_E2E=skip to skip these tests)"
    )]
    ToolMissing { tool: &'static str, path: PathBuf },
    /// A tool of the project venv is there but not as the tests need it.
    #[error(
        "{tool} ({path}): {detail}: run scripts/setup-venv to install the end-to-end tools \
         (or set CACHEFILL_E2E=skip to skip these tests)"
    )]
    ToolUnusable {
        tool: &'static str,
        path: PathBuf,
        detail: String,
    },
    /// A process could not be started.
    #[error("could not start {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    /// A process started but never became ready, or exited early.
    #[error("{what} did not become ready: {reason}\n--- last lines of {log} ---\n{tail}")]
    NotReady {
        what: String,
        reason: String,
        log: PathBuf,
        tail: String,
    },
    /// A function's binary is not where cargo puts this package's bins.
    #[error(
        "the binary {bin} was not found (looked at {looked_at:?}): the functions run as bins of \
         cachefill-e2e, which `cargo test -p cachefill-e2e` builds before it runs the tests"
    )]
    BinaryMissing {
        bin: String,
        looked_at: Option<PathBuf>,
    },
    /// A request to moto or the emulator failed or was answered unexpectedly.
    #[error("{operation}: {message}")]
    Service { operation: String, message: String },
    /// Something a test waits for did not happen in time.
    #[error("{what}: not within {waited:?}; last seen: {last}")]
    Timeout {
        what: String,
        waited: std::time::Duration,
        last: String,
    },
    /// Local files (logs, temporary folders).
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

impl StackError {
    pub(crate) fn service(operation: impl Into<String>, message: impl ToString) -> Self {
        StackError::Service {
            operation: operation.into(),
            message: message.to_string(),
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        StackError::Io {
            what: what.into(),
            source,
        }
    }
}

pub type Result<T, E = StackError> = std::result::Result<T, E>;
