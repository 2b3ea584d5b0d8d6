//! The miss-handler Lambda's handler: a request in, an answer or a typed error out.
//!
//! Generic over the storage and provider seams so it runs against the local directory
//! store and the synthetic provider in tests, and against S3 and ThetaData in AWS. [`init`]
//! is the deployed function's start.

pub mod secret;

use std::time::Instant;

use cachefill_core::errors::ErrorType;
use cachefill_core::fill::{FillAnswer, FillEngine, FillError, MissRequest};
use cachefill_core::providers::Provider;
use cachefill_core::providers::ProviderSet;
use cachefill_core::runtime::{self, InitError};
use cachefill_core::settings::{MissHandlerSettings, ProviderCredentials, ProviderSecretSettings};
use cachefill_core::storage::ObjectStore;
use cachefill_core::storage::s3::S3Store;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::value::RawValue;

/// The engine the deployed function runs (`cachefill_core::runtime::miss_handler`).
pub type Engine = FillEngine<S3Store, ProviderSet>;

/// The deployed function's start, once per process: the provider secret when
/// `CACHE_PROVIDER_SECRET_ID` names one, then the settings (the secret filling what the
/// environment leaves unset), then the engine. Anything wrong stops the start here.
pub async fn init() -> Result<Engine, InitError> {
    let credentials = match ProviderSecretSettings::from_env() {
        Some(secret) => {
            let credentials = secret::read(&secret).await?;
            tracing::info!(
                secret_id = %secret.secret_id,
                variables = ?credentials.names().collect::<Vec<_>>(),
                "provider secret read"
            );
            for name in credentials.shadowed_by_env() {
                tracing::warn!(
                    secret_id = %secret.secret_id,
                    variable = name,
                    "set in the environment too: the environment's value is used"
                );
            }
            credentials
        }
        None => ProviderCredentials::default(),
    };
    let settings = MissHandlerSettings::from_env_with(&credentials)?;
    let engine = runtime::miss_handler(&settings).await?;
    tracing::info!(
        bucket = %settings.store.bucket,
        root = %settings.store.layout().root(),
        providers = ?settings.providers.served,
        "miss-handler ready"
    );
    Ok(engine)
}

/// A failed invocation: its `errorType` tells the caller whether to retry.
#[derive(Debug)]
pub struct HandlerError {
    pub error_type: ErrorType,
    pub message: String,
}

impl From<FillError> for HandlerError {
    fn from(e: FillError) -> Self {
        HandlerError {
            error_type: e.error_type(),
            message: e.to_string(),
        }
    }
}

impl From<HandlerError> for Diagnostic {
    fn from(e: HandlerError) -> Self {
        Diagnostic {
            error_type: e.error_type.as_str().to_string(),
            error_message: e.message,
        }
    }
}

/// Handle one invocation. The payload is taken raw so a strike keeps its spelling
/// (`250` and `250.0` name different files) and a malformed payload is an
/// `InvalidRequest`, not a runtime error.
pub async fn handle<S: ObjectStore, P: Provider>(
    engine: &FillEngine<S, P>,
    event: LambdaEvent<Box<RawValue>>,
) -> Result<FillAnswer, HandlerError> {
    let started = Instant::now();
    let request_id = event.context.request_id.clone();
    let result = match MissRequest::from_json(event.payload.get()) {
        Ok(request) => engine.fill_any(&request).await,
        Err(e) => Err(FillError::from(e)),
    };
    match &result {
        Ok(answer) => tracing::info!(
            request_id = %request_id,
            key = %answer.key,
            status = answer.status.as_str(),
            rows = answer.rows,
            sessions_fetched = answer.sessions_fetched,
            upstream_requests = answer.upstream_requests,
            elapsed_ms = answer.elapsed_ms,
            "fill done"
        ),
        Err(e) => tracing::warn!(
            request_id = %request_id,
            error_type = e.error_type().as_str(),
            error = %e,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "fill failed"
        ),
    }
    result.map_err(HandlerError::from)
}
