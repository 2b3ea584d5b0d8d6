//! The few SQS calls the relay needs, spoken over SQS's JSON protocol.
//!
//! moto routes a request to a service by the credential scope of its `Authorization` header and
//! does not check signatures, so requests carry an unsigned SigV4-shaped header naming `sqs`.
//! That is enough for moto and keeps the AWS SDK for SQS out of the build; it would not be
//! enough for AWS, which the relay never talks to (S3 invokes the validator directly there).

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{Result, StackError};

/// A queue on moto's SQS.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    http: reqwest::Client,
    endpoint: String,
    region: String,
    url: String,
    arn: String,
}

/// One received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawMessage {
    message_id: String,
    receipt_handle: String,
    body: String,
}

impl SqsQueue {
    /// Create (or find) the queue `name`; a received message stays invisible to other
    /// receivers for `visibility_timeout`, after which an undeleted one is delivered again.
    pub async fn create(
        endpoint: &str,
        region: &str,
        name: &str,
        visibility_timeout: Duration,
    ) -> Result<SqsQueue> {
        let mut queue = SqsQueue {
            http: reqwest::Client::new(),
            endpoint: endpoint.trim_end_matches('/').to_string(),
            region: region.to_string(),
            url: String::new(),
            arn: String::new(),
        };
        let created = queue
            .call(
                "CreateQueue",
                json!({
                    "QueueName": name,
                    "Attributes": {"VisibilityTimeout": visibility_timeout.as_secs().to_string()},
                }),
            )
            .await?;
        queue.url = string_field(&created, "QueueUrl", "CreateQueue")?;
        let attributes = queue
            .call(
                "GetQueueAttributes",
                json!({"QueueUrl": queue.url, "AttributeNames": ["QueueArn"]}),
            )
            .await?;
        queue.arn = attributes
            .pointer("/Attributes/QueueArn")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| {
                StackError::service("GetQueueAttributes", format!("no QueueArn in {attributes}"))
            })?;
        Ok(queue)
    }

    /// A queue that already exists at `url` (as `scripts/dev-stack` creates it).
    pub async fn open(endpoint: &str, region: &str, url: &str) -> Result<SqsQueue> {
        let mut queue = SqsQueue {
            http: reqwest::Client::new(),
            endpoint: endpoint.trim_end_matches('/').to_string(),
            region: region.to_string(),
            url: url.to_string(),
            arn: String::new(),
        };
        let attributes = queue
            .call(
                "GetQueueAttributes",
                json!({"QueueUrl": url, "AttributeNames": ["QueueArn"]}),
            )
            .await?;
        queue.arn = attributes
            .pointer("/Attributes/QueueArn")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Ok(queue)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn arn(&self) -> &str {
        &self.arn
    }

    /// Up to `max` (1–10) messages, waiting up to `wait` for the first one.
    pub async fn receive(&self, max: u8, wait: Duration) -> Result<Vec<Message>> {
        let answer = self
            .call(
                "ReceiveMessage",
                json!({
                    "QueueUrl": self.url,
                    "MaxNumberOfMessages": max.clamp(1, 10),
                    "WaitTimeSeconds": wait.as_secs().min(20),
                }),
            )
            .await?;
        let Some(messages) = answer.get("Messages") else {
            return Ok(Vec::new());
        };
        let raw: Vec<RawMessage> = serde_json::from_value(messages.clone())
            .map_err(|e| StackError::service("ReceiveMessage", format!("{e}: {answer}")))?;
        Ok(raw
            .into_iter()
            .map(|m| Message {
                message_id: m.message_id,
                receipt_handle: m.receipt_handle,
                body: m.body,
            })
            .collect())
    }

    pub async fn delete(&self, message: &Message) -> Result<()> {
        self.call(
            "DeleteMessage",
            json!({"QueueUrl": self.url, "ReceiptHandle": message.receipt_handle}),
        )
        .await
        .map(drop)
    }

    /// Messages waiting plus messages received but not yet deleted.
    pub async fn backlog(&self) -> Result<u64> {
        let answer = self
            .call(
                "GetQueueAttributes",
                json!({
                    "QueueUrl": self.url,
                    "AttributeNames": [
                        "ApproximateNumberOfMessages",
                        "ApproximateNumberOfMessagesNotVisible"
                    ],
                }),
            )
            .await?;
        let count = |name: &str| {
            answer
                .pointer(&format!("/Attributes/{name}"))
                .and_then(Value::as_str)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(count("ApproximateNumberOfMessages") + count("ApproximateNumberOfMessagesNotVisible"))
    }

    async fn call(&self, action: &str, body: Value) -> Result<Value> {
        let operation = format!("SQS {action}");
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential=test/20240101/{}/sqs/aws4_request, \
             SignedHeaders=host, Signature=0",
            self.region
        );
        let response = self
            .http
            .post(format!("{}/", self.endpoint))
            .header("X-Amz-Target", format!("AmazonSQS.{action}"))
            .header("Content-Type", "application/x-amz-json-1.0")
            .header("Authorization", authorization)
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| StackError::service(&operation, e))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| StackError::service(&operation, e))?;
        if !status.is_success() {
            return Err(StackError::service(
                &operation,
                format!("answered {status}: {text}"),
            ));
        }
        serde_json::from_str(&text)
            .map_err(|e| StackError::service(&operation, format!("{e}: {text}")))
    }
}

fn string_field(value: &Value, field: &str, operation: &str) -> Result<String> {
    value
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| StackError::service(operation, format!("no {field} in {value}")))
}
