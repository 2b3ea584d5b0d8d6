//! object-validator Lambda: reads its settings and builds its S3 client once, then judges
//! S3 events. A setting that cannot be used stops the function here, at init.

use cachefill_core::runtime;
use cachefill_core::settings::ValidatorSettings;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_target(false)
        .without_time()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AWS_LAMBDA_LOG_LEVEL")
                .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
                .unwrap_or_else(|_| "info".into()),
        )
        .init();

    let settings = match ValidatorSettings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            tracing::error!(error = %e, "object-validator cannot start");
            return Err(runtime::InitError::from(e).into());
        }
    };
    let validator = runtime::object_validator(&settings).await;
    tracing::info!(bucket = %settings.store.bucket, root = %settings.store.layout().root(), "object-validator ready");

    let validator = &validator;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        // EMF lines go to stdout, where CloudWatch Logs picks metrics out of them.
        object_validator::handle(validator, event, &mut std::io::stdout()).await
    }))
    .await
}
