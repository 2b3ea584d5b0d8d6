//! [`LambdaInvoker`]: the miss-handler invoked through the Lambda `Invoke` API
//! (`RequestResponse`), on AWS or on anything that speaks the API (the `cargo lambda watch`
//! emulator, a test server).
//!
//! Function errors arrive two ways and are parsed the same: AWS answers HTTP 200 with an
//! `X-Amz-Function-Error` header and the error document as payload; emulators answer HTTP
//! 500 with the error document as body. The SDK's own retries are off: the client retries by
//! `errorType` (never an `InvalidRequest`), and a fill must not be re-sent blindly.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_lambda::Client;
use aws_sdk_lambda::config::retry::RetryConfig;
use aws_sdk_lambda::config::timeout::TimeoutConfig;
use aws_sdk_lambda::config::{Credentials, Region};
use aws_sdk_lambda::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::operation::invoke::InvokeError as SdkInvokeError;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;

use cachefill_core::fill::{FillAnswer, MissRequest};
use cachefill_core::settings::{ClientSettings, Secret};

use super::{InvokeError, Invoker, parse_answer, parse_function_error};

/// Where and as whom to invoke the miss-handler.
#[derive(Debug, Clone)]
pub struct LambdaOptions {
    /// Function name or ARN.
    pub function: String,
    /// Region; else the AWS chain's, else the ARN's, else `us-east-1` for custom endpoints.
    pub region: Option<String>,
    /// Custom endpoint (`http://127.0.0.1:9000` for the emulator).
    pub endpoint_url: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    pub session_token: Option<Secret>,
    /// How long to wait for the answer before giving up on it (the fill may go on).
    pub read_timeout: Duration,
    pub connect_timeout: Duration,
}

impl LambdaOptions {
    /// Default read timeout: long enough for most fills, short enough that one connection
    /// does not hang for the function's whole 15 minutes; after it the client polls.
    pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

    pub fn new(function: impl Into<String>) -> Self {
        LambdaOptions {
            function: function.into(),
            region: None,
            endpoint_url: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            read_timeout: Self::DEFAULT_READ_TIMEOUT,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// Options for `function` from the job's settings: the S3 region and static credentials
    /// (when set) and the Lambda endpoint (`AWS_ENDPOINT_URL_LAMBDA`, then `AWS_ENDPOINT_URL`).
    pub fn from_settings(settings: &ClientSettings, function: impl Into<String>) -> Self {
        let s3 = settings.s3();
        LambdaOptions {
            region: s3.region,
            endpoint_url: settings.lambda_endpoint_url.clone(),
            access_key_id: s3.access_key_id,
            secret_access_key: s3.secret_access_key,
            session_token: s3.session_token,
            ..LambdaOptions::new(function)
        }
    }

    pub fn with_endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    pub fn with_static_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> Self {
        self.access_key_id = Some(access_key_id.into());
        self.secret_access_key = Some(Secret::new(secret_access_key));
        self
    }

    pub fn with_read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

/// The region in a Lambda function ARN (`arn:aws:lambda:<region>:<account>:function:<name>`).
fn region_of_arn(function: &str) -> Option<&str> {
    let mut parts = function.split(':');
    (parts.next()? == "arn").then_some(())?;
    parts.next()?;
    (parts.next()? == "lambda").then_some(())?;
    parts.next().filter(|r| !r.is_empty())
}

/// Invokes the miss-handler with `RequestResponse`; build once and share.
#[derive(Clone)]
pub struct LambdaInvoker {
    client: Client,
    function: String,
    read_timeout: Duration,
}

impl fmt::Debug for LambdaInvoker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LambdaInvoker")
            .field("function", &self.function)
            .field("read_timeout", &self.read_timeout)
            .finish()
    }
}

impl LambdaInvoker {
    /// Build the Lambda client from the standard AWS chain plus what `options` names.
    pub async fn connect(options: LambdaOptions) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = options.region.as_deref().filter(|r| !r.is_empty()) {
            loader = loader.region(Region::new(region.to_string()));
        }
        match (&options.access_key_id, &options.secret_access_key) {
            (Some(id), Some(secret)) => {
                loader = loader.credentials_provider(Credentials::new(
                    id,
                    secret.expose(),
                    options
                        .session_token
                        .as_ref()
                        .map(|t| t.expose().to_string()),
                    None,
                    "cachefill-static",
                ));
            }
            (None, None) => {}
            _ => tracing::warn!(
                "only one of the access key id and secret access key is set; \
                 using the standard AWS credential chain instead"
            ),
        }
        let sdk_config = loader.load().await;
        let mut config = aws_sdk_lambda::config::Builder::from(&sdk_config)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(options.connect_timeout)
                    .build(),
            );
        if let Some(endpoint) = options.endpoint_url.as_deref().filter(|e| !e.is_empty()) {
            config = config.endpoint_url(endpoint);
        }
        if sdk_config.region().is_none() {
            let fallback = region_of_arn(&options.function)
                .or(options.endpoint_url.is_some().then_some("us-east-1"));
            if let Some(region) = fallback {
                config = config.region(Region::new(region.to_string()));
            }
        }
        LambdaInvoker {
            client: Client::from_conf(config.build()),
            function: options.function,
            read_timeout: options.read_timeout,
        }
    }

    /// Wrap an existing client.
    pub fn from_client(
        client: Client,
        function: impl Into<String>,
        read_timeout: Duration,
    ) -> Self {
        LambdaInvoker {
            client,
            function: function.into(),
            read_timeout,
        }
    }

    pub fn function(&self) -> &str {
        &self.function
    }

    fn map_sdk_error(
        &self,
        error: SdkError<SdkInvokeError, aws_sdk_lambda::config::http::HttpResponse>,
    ) -> InvokeError {
        let function = self.function.clone();
        match &error {
            SdkError::ServiceError(context) => {
                let raw = context.raw();
                let status = raw.status().as_u16();
                // An emulator reports a function error as HTTP 500 with the error document.
                if let Some(typed) = raw.body().bytes().and_then(parse_function_error) {
                    return typed;
                }
                let code = error.code().unwrap_or("Unknown").to_string();
                let message = error
                    .message()
                    .map(str::to_string)
                    .unwrap_or_else(|| DisplayErrorContext(&error).to_string());
                match (status, code.as_str()) {
                    (429, _) | (_, "TooManyRequestsException") => {
                        InvokeError::Throttled { function, message }
                    }
                    (500..=599, _) => InvokeError::ServiceUnavailable {
                        function,
                        status,
                        message,
                    },
                    _ => InvokeError::Refused {
                        function,
                        code,
                        message,
                    },
                }
            }
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => InvokeError::Unreachable {
                function,
                message: DisplayErrorContext(&error).to_string(),
            },
            SdkError::ConstructionFailure(_) => InvokeError::Misconfigured {
                function,
                message: DisplayErrorContext(&error).to_string(),
            },
            _ => InvokeError::BadAnswer {
                message: DisplayErrorContext(&error).to_string(),
            },
        }
    }
}

#[async_trait]
impl Invoker for LambdaInvoker {
    async fn invoke(&self, request: &MissRequest) -> Result<FillAnswer, InvokeError> {
        let call = self
            .client
            .invoke()
            .function_name(&self.function)
            .invocation_type(InvocationType::RequestResponse)
            .payload(Blob::new(request.to_json()))
            .send();
        let output = match tokio::time::timeout(self.read_timeout, call).await {
            Err(_) => {
                return Err(InvokeError::TimedOut {
                    after: self.read_timeout,
                });
            }
            Ok(Err(error)) => return Err(self.map_sdk_error(error)),
            Ok(Ok(output)) => output,
        };
        let payload = output.payload().map(Blob::as_ref).unwrap_or_default();
        if let Some(kind) = output.function_error() {
            return Err(parse_function_error(payload).unwrap_or_else(|| {
                InvokeError::UnknownFunctionError {
                    error_type: kind.to_string(),
                    message: String::from_utf8_lossy(payload).into_owned(),
                }
            }));
        }
        parse_answer(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arn_names_its_region() {
        assert_eq!(
            region_of_arn("arn:aws:lambda:eu-west-1:123456789012:function:miss-handler"),
            Some("eu-west-1")
        );
        assert_eq!(region_of_arn("miss-handler"), None);
        assert_eq!(region_of_arn("arn:aws:s3:::bucket"), None);
    }

    #[test]
    fn options_come_from_the_settings_and_hide_the_secret() {
        let settings = ClientSettings::from_lookup(|name| match name {
            "AWS_ENDPOINT_URL_LAMBDA" => Some("http://127.0.0.1:9000".to_string()),
            "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:5000".to_string()),
            _ => None,
        })
        .unwrap();
        let options = LambdaOptions::from_settings(&settings, "f");
        assert_eq!(
            options.endpoint_url.as_deref(),
            Some("http://127.0.0.1:9000")
        );
        let options = options.with_static_credentials("AKIDEXAMPLE", "hunter2-secret-value");
        assert!(!format!("{options:?}").contains("hunter2"));
    }
}
