//! The AWS CLI from the project venv, pointed at the stack's moto: requests made the way a
//! person at a shell makes them, with nothing of this workspace in between.

use serde_json::Value;

use crate::error::{Result, StackError};
use crate::stack::{ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, Stack};

impl Stack {
    /// Run `aws --endpoint-url <moto> --output json <args>` and parse what it prints (`Null`
    /// when it prints nothing); a non-zero exit is an error carrying its stderr.
    pub async fn aws(&self, args: &[&str]) -> Result<Value> {
        let tools = self.tools();
        let output = tokio::process::Command::new(tools.aws())
            .args(["--endpoint-url", &self.s3_endpoint(), "--output", "json"])
            .args(args)
            .env("PATH", tools.path_env())
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
            .env("AWS_DEFAULT_REGION", REGION)
            // A profile or credentials of the person running the tests must not leak in.
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .output()
            .await
            .map_err(|source| StackError::Spawn {
                what: format!("{} {}", tools.aws().display(), args.join(" ")),
                source,
            })?;
        let operation = format!("aws {}", args.join(" "));
        if !output.status.success() {
            return Err(StackError::service(
                &operation,
                format!(
                    "exited with {}: {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                ),
            ));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        if stdout.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&stdout)
            .map_err(|e| StackError::service(&operation, format!("{e}: {stdout}")))
    }

    /// `aws s3api put-object` of `body` at `key` in the stack's bucket, as a person uploads a
    /// file; returns the new version's id.
    pub async fn aws_put_object(&self, key: &str, body: &[u8]) -> Result<String> {
        let upload = tempfile::NamedTempFile::new()
            .map_err(|e| StackError::io("creating the upload file", e))?;
        std::fs::write(upload.path(), body)
            .map_err(|e| StackError::io("writing the upload file", e))?;
        let path = upload.path().display().to_string();
        let bucket = self.config().bucket.clone();
        let put = self
            .aws(&[
                "s3api",
                "put-object",
                "--bucket",
                &bucket,
                "--key",
                key,
                "--body",
                &path,
            ])
            .await?;
        put["VersionId"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| {
                StackError::service("aws s3api put-object", format!("no VersionId in {put}"))
            })
    }
}
