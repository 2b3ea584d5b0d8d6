//! Invoking the miss-handler: the [`Invoker`] seam, its typed errors, and the two real
//! implementations: [`LambdaInvoker`] (AWS Lambda `Invoke`, or anything speaking its API)
//! and [`InProcessInvoker`] (the fill engine in this process: the embedded default).

mod in_process;
mod lambda;

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use cachefill_core::errors::ErrorType;
use cachefill_core::fill::{FillAnswer, MissRequest};

pub use in_process::InProcessInvoker;
pub use lambda::{LambdaInvoker, LambdaOptions};

/// Runs the miss-handler for one request and returns its answer (`docs/ARCHITECTURE.md` §5).
#[async_trait]
pub trait Invoker: Send + Sync + std::fmt::Debug {
    async fn invoke(&self, request: &MissRequest) -> Result<FillAnswer, InvokeError>;
}

/// Why an invocation gave no answer. Callers decide on retries with
/// [`InvokeError::is_retryable`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvokeError {
    /// The miss-handler ran and failed with one of its `errorType`s ([`ErrorType`]).
    #[error("the fill function failed with {error_type}: {message}")]
    Function {
        error_type: ErrorType,
        message: String,
    },
    /// The function failed with an `errorType` that is not ours (a Lambda runtime error such
    /// as `Sandbox.Timedout`, or a function that is not the miss-handler).
    #[error("the fill function failed with {error_type}: {message}")]
    UnknownFunctionError { error_type: String, message: String },
    /// No answer within the read timeout; the fill may still be running.
    #[error("the fill function did not answer within {after:?}; it may still be filling")]
    TimedOut { after: Duration },
    /// The function's endpoint could not be reached (refused, reset, DNS, TLS).
    #[error("cannot reach the fill function {function}: {message}")]
    Unreachable { function: String, message: String },
    /// Lambda throttled the call (HTTP 429); retrying later may help.
    #[error("the fill function {function} is throttled: {message}")]
    Throttled { function: String, message: String },
    /// The function does not exist, or this caller may not invoke it.
    #[error(
        "the fill function {function} cannot be invoked ({code}): {message}; check LUMIBOT_CACHE_FILL_FUNCTION and the caller's lambda:InvokeFunction permission"
    )]
    Refused {
        function: String,
        code: String,
        message: String,
    },
    /// The Lambda service answered with a server error; retrying may help.
    #[error("the Lambda service failed invoking {function} (HTTP {status}): {message}")]
    ServiceUnavailable {
        function: String,
        status: u16,
        message: String,
    },
    /// The invoker is not configured well enough to make a call (no region, no credentials).
    #[error("cannot invoke the fill function {function}: {message}")]
    Misconfigured { function: String, message: String },
    /// The function answered something that is not a miss-handler answer.
    #[error("the fill function's answer is not a miss-handler answer: {message}")]
    BadAnswer { message: String },
}

impl InvokeError {
    /// Whether the same request may succeed when sent again. `InvalidRequest` never does.
    pub fn is_retryable(&self) -> bool {
        match self {
            InvokeError::Function { error_type, .. } => error_type.is_retryable(),
            InvokeError::Unreachable { .. }
            | InvokeError::Throttled { .. }
            | InvokeError::ServiceUnavailable { .. } => true,
            InvokeError::UnknownFunctionError { .. }
            | InvokeError::TimedOut { .. }
            | InvokeError::Refused { .. }
            | InvokeError::Misconfigured { .. }
            | InvokeError::BadAnswer { .. } => false,
        }
    }

    /// The miss-handler's `errorType`, when the function itself failed with one.
    pub fn error_type(&self) -> Option<ErrorType> {
        match self {
            InvokeError::Function { error_type, .. } => Some(*error_type),
            _ => None,
        }
    }
}

/// A Lambda function error document: `{"errorType": …, "errorMessage": …}`.
#[derive(Debug, Deserialize)]
struct FunctionErrorBody {
    #[serde(rename = "errorType")]
    error_type: Option<String>,
    #[serde(rename = "errorMessage")]
    error_message: Option<String>,
}

/// Parse a function error document into a typed error; `None` when the bytes are not one.
pub fn parse_function_error(payload: &[u8]) -> Option<InvokeError> {
    let body: FunctionErrorBody = serde_json::from_slice(payload).ok()?;
    let message = body.error_message.unwrap_or_default();
    let error_type = body.error_type?;
    Some(match ErrorType::parse(&error_type) {
        Some(error_type) => InvokeError::Function {
            error_type,
            message,
        },
        None => InvokeError::UnknownFunctionError {
            error_type,
            message,
        },
    })
}

/// Parse a successful invocation's payload.
pub fn parse_answer(payload: &[u8]) -> Result<FillAnswer, InvokeError> {
    serde_json::from_slice(payload).map_err(|e| InvokeError::BadAnswer {
        message: format!(
            "{e}; payload starts with {:?}",
            String::from_utf8_lossy(&payload[..payload.len().min(200)])
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_errors_are_typed_by_error_type() {
        for error_type in ErrorType::ALL {
            let body = format!(
                r#"{{"errorType":"{}","errorMessage":"why"}}"#,
                error_type.as_str()
            );
            let parsed = parse_function_error(body.as_bytes()).unwrap();
            assert_eq!(parsed.error_type(), Some(error_type));
            assert_eq!(
                parsed.is_retryable(),
                error_type.is_retryable(),
                "{error_type}"
            );
        }
        let timeout = parse_function_error(
            br#"{"errorMessage":"Task timed out after 900.00 seconds","errorType":"Sandbox.Timedout"}"#,
        )
        .unwrap();
        assert!(matches!(timeout, InvokeError::UnknownFunctionError { .. }));
        assert!(parse_function_error(b"{\"status\":\"hit\"}").is_none());
        assert!(parse_function_error(b"not json").is_none());
    }

    #[test]
    fn invalid_request_is_never_retryable() {
        let e = InvokeError::Function {
            error_type: ErrorType::InvalidRequest,
            message: String::new(),
        };
        assert!(!e.is_retryable());
    }
}
