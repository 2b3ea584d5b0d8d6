//! `e2e-event-recorder`: a Lambda function that stores every S3 event it is invoked with as
//! `$E2E_RECORD_DIR/<request id>.json`, so tests can see exactly what the relay delivers.
//! It takes the event as `aws_lambda_events`' `S3Event`, the type the object-validator takes,
//! and fails with `RecorderRejected` when a key contains `reject`, to test redelivery.

use std::path::PathBuf;

use aws_lambda_events::event::s3::S3Event;
use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let dir = PathBuf::from(std::env::var("E2E_RECORD_DIR")?);
    let dir = &dir;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<S3Event>| async move {
        record(dir, event).await
    }))
    .await
}

async fn record(dir: &std::path::Path, event: LambdaEvent<S3Event>) -> Result<usize, Diagnostic> {
    let keys: Vec<&str> = event
        .payload
        .records
        .iter()
        .filter_map(|r| r.s3.object.key.as_deref())
        .collect();
    if let Some(key) = keys.iter().find(|k| k.contains("reject")) {
        return Err(Diagnostic {
            error_type: "RecorderRejected".into(),
            error_message: format!("rejected {key}"),
        });
    }
    let json = serde_json::to_vec_pretty(&event.payload).map_err(|e| Diagnostic {
        error_type: "Internal".into(),
        error_message: e.to_string(),
    })?;
    let path = dir.join(format!("{}.json", event.context.request_id));
    tokio::fs::write(&path, json)
        .await
        .map_err(|e| Diagnostic {
            error_type: "Internal".into(),
            error_message: format!("{}: {e}", path.display()),
        })?;
    Ok(keys.len())
}
