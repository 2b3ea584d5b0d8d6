//! The provider secret, read from Secrets Manager once at start: the one AWS call the
//! miss-handler makes besides S3. What the secret must hold, and how its values meet the
//! environment, is decided by `cachefill_core::settings` (`ProviderCredentials`).

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use cachefill_core::settings::{ProviderCredentials, ProviderSecretError, ProviderSecretSettings};

/// One attempt, and all of them: a start that cannot reach Secrets Manager fails within
/// Lambda's 10 s init phase instead of hanging.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
const OPERATION_TIMEOUT: Duration = Duration::from_secs(8);

/// Read and parse the secret `settings` names. Errors name the secret, never its value.
pub async fn read(
    settings: &ProviderSecretSettings,
) -> Result<ProviderCredentials, ProviderSecretError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
        TimeoutConfig::builder()
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .operation_timeout(OPERATION_TIMEOUT)
            .build(),
    );
    if let Some(endpoint) = &settings.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    let client = aws_sdk_secretsmanager::Client::new(&loader.load().await);
    let output = client
        .get_secret_value()
        .secret_id(&settings.secret_id)
        .send()
        .await
        .map_err(|e| ProviderSecretError::Unreadable {
            secret_id: settings.secret_id.clone(),
            reason: reason(&e),
        })?;
    // The SDK's Debug of `output` redacts the secret; nothing here prints it either.
    let text = output
        .secret_string()
        .ok_or_else(|| ProviderSecretError::NoSecretString {
            secret_id: settings.secret_id.clone(),
        })?;
    ProviderCredentials::parse(&settings.secret_id, text)
}

/// Why the call failed, in Secrets Manager's words (`ResourceNotFoundException: …`,
/// `AccessDeniedException: …`) or the transport's. An unreadable answer is described by
/// its status only, since its body is what the secret would have been in.
fn reason<E, R>(error: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match error {
        SdkError::ServiceError(service) => {
            let e = service.err();
            match (e.code(), e.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_string(),
                _ => DisplayErrorContext(error).to_string(),
            }
        }
        SdkError::ResponseError(_) => "Secrets Manager's answer could not be read".to_string(),
        SdkError::TimeoutError(_) => {
            format!("no answer from Secrets Manager within {OPERATION_TIMEOUT:?}")
        }
        _ => DisplayErrorContext(error).to_string(),
    }
}
