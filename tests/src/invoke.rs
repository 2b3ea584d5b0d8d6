//! Invoking functions through the emulator's Invoke API, with the AWS SDK or plain HTTP.
//!
//! AWS answers a function error with HTTP 200, `X-Amz-Function-Error: Unhandled` and the
//! error document as payload; cargo-lambda's emulator answers it with HTTP 500 and the same
//! document. [`Invocation`] reads both the same way, so a test asserts the function's
//! behaviour, not the stand-in's.

use std::time::Duration;

use aws_sdk_lambda::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_lambda::error::SdkError;
use aws_sdk_lambda::primitives::Blob;
use serde_json::Value;

use crate::error::{Result, StackError};

/// The answer of one invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// HTTP status of the Invoke API's answer.
    pub status: u16,
    /// `Unhandled` (or `Handled`) when the function failed, as AWS reports it.
    pub function_error: Option<String>,
    /// The function's answer, or its error document (`errorType`, `errorMessage`).
    pub payload: Value,
}

impl Invocation {
    fn from_answer(status: u16, function_error: Option<String>, body: &[u8]) -> Self {
        let payload = serde_json::from_slice(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
        // The emulator signals a function error by status alone.
        let function_error = function_error.or_else(|| {
            (status >= 400 && payload.get("errorType").is_some()).then(|| "Unhandled".to_string())
        });
        Invocation {
            status,
            function_error,
            payload,
        }
    }

    /// Whether the function answered without error.
    pub fn succeeded(&self) -> bool {
        self.function_error.is_none() && (200..300).contains(&self.status)
    }

    /// The `errorType` of a failed invocation.
    pub fn error_type(&self) -> Option<&str> {
        self.function_error.as_ref()?;
        self.payload.get("errorType").and_then(Value::as_str)
    }

    pub fn error_message(&self) -> Option<&str> {
        self.function_error.as_ref()?;
        self.payload.get("errorMessage").and_then(Value::as_str)
    }
}

/// A Lambda client for the emulator at `endpoint`, with dummy credentials.
///
/// Retries are off: the emulator reports function errors as HTTP 500, which the SDK would
/// otherwise retry as a server fault and so run the function again.
pub fn lambda_client(endpoint: &str, region: &str) -> aws_sdk_lambda::Client {
    let config = aws_sdk_lambda::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new(
            "test",
            "test",
            None,
            None,
            "cachefill-e2e",
        ))
        .retry_config(aws_sdk_lambda::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_lambda::Client::from_conf(config)
}

/// Invoke `function` synchronously through the AWS SDK, waiting at most `timeout`.
pub async fn invoke_sdk(
    client: &aws_sdk_lambda::Client,
    function: &str,
    payload: &[u8],
    timeout: Duration,
) -> Result<Invocation> {
    let call = client
        .invoke()
        .function_name(function)
        .payload(Blob::new(payload))
        .send();
    let operation = format!("invoke {function}");
    let answer = tokio::time::timeout(timeout, call)
        .await
        .map_err(|_| StackError::service(&operation, format!("no answer within {timeout:?}")))?;
    match answer {
        Ok(output) => Ok(Invocation::from_answer(
            u16::try_from(output.status_code()).unwrap_or(0),
            output.function_error().map(str::to_string),
            output.payload().map(Blob::as_ref).unwrap_or_default(),
        )),
        Err(SdkError::ServiceError(e)) => {
            let raw = e.raw();
            let invocation = Invocation::from_answer(
                raw.status().as_u16(),
                None,
                raw.body().bytes().unwrap_or_default(),
            );
            if invocation.function_error.is_some() {
                Ok(invocation)
            } else {
                Err(StackError::service(
                    &operation,
                    format!("{}: {:?}", raw.status().as_u16(), invocation.payload),
                ))
            }
        }
        Err(e) => Err(StackError::service(
            &operation,
            aws_sdk_lambda::error::DisplayErrorContext(e),
        )),
    }
}

/// Invoke through a raw `POST` to `url` (`…/2015-03-31/functions/<name>/invocations`).
pub async fn invoke_http(
    http: &reqwest::Client,
    url: &str,
    payload: &[u8],
    timeout: Duration,
) -> Result<Invocation> {
    let operation = format!("POST {url}");
    let response = http
        .post(url)
        .timeout(timeout)
        .body(payload.to_vec())
        .send()
        .await
        .map_err(|e| StackError::service(&operation, e))?;
    let status = response.status().as_u16();
    let function_error = response
        .headers()
        .get("x-amz-function-error")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response
        .bytes()
        .await
        .map_err(|e| StackError::service(&operation, e))?;
    Ok(Invocation::from_answer(status, function_error, &body))
}
