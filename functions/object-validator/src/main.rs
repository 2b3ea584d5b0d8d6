//! object-validator Lambda: builds its S3 client once, then judges S3 events.

use cachefill_core::keys::KeyLayout;
use cachefill_core::settings::FunctionSettings;
use cachefill_core::storage::s3::{S3Config, connect};
use cachefill_core::validate::{Validator, ValidatorConfig};
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

    let settings = FunctionSettings::from_env()?;
    let s3 = S3Config {
        endpoint_url: settings.endpoint_url.clone(),
        ..Default::default()
    };
    let store = connect(settings.bucket.clone(), &s3).await;
    let layout = KeyLayout::new(&settings.prefix, &settings.version);
    let validator = Validator::new(store, ValidatorConfig::new(settings.bucket.clone(), layout));
    tracing::info!(bucket = %settings.bucket, prefix = %settings.prefix, version = %settings.version, "object-validator ready");

    let validator = &validator;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        // EMF lines go to stdout, where CloudWatch Logs picks metrics out of them.
        object_validator::handle(validator, event, &mut std::io::stdout()).await
    }))
    .await
}
