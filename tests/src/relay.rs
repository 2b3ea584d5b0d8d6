//! The SQS → function relay: what S3's direct Lambda notification does on AWS, for moto,
//! which can only notify a queue.
//!
//! Each message body is one S3 notification. moto's differ from AWS's: the first message is an
//! `s3:TestEvent`, records lack `userIdentity`, `requestParameters`, `responseElements`,
//! `versionId` and `sequencer`, and keys have `/` percent-encoded as `%2F`. The relay drops
//! test events, adds the three missing objects empty (AWS always sends them, and
//! `aws_lambda_events` requires them), and passes everything else on unchanged: the missing
//! version and the encoded key are what the validator must cope with.
//!
//! A message is deleted only after the function answered without error; otherwise it becomes
//! visible again after the queue's visibility timeout and is retried, like an asynchronous
//! Lambda invocation.

use std::time::Duration;

use aws_lambda_events::event::s3::S3Event;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::invoke::{Invocation, invoke_sdk};
use crate::sqs::{Message, SqsQueue};

/// How long the relay waits for the function to answer one event.
pub const INVOKE_TIMEOUT: Duration = Duration::from_secs(300);

/// Why an event could not be relayed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The message body is not an S3 notification; it stays on the queue.
    #[error("message {message_id} is not an S3 event: {reason}")]
    NotAnS3Event { message_id: String, reason: String },
    /// The queue could not be read or a message not deleted; retrying may help.
    #[error("queue: {0}")]
    Queue(String),
}

/// What a message held.
#[derive(Debug, Clone, PartialEq)]
pub enum Notification {
    /// `s3:TestEvent`, sent when the notification is configured: nothing to deliver.
    Test,
    Event(S3Event),
}

/// Parse one SQS message body from an S3 notification into the event AWS would send.
pub fn parse_notification(message_id: &str, body: &str) -> Result<Notification, RelayError> {
    let bad = |reason: String| RelayError::NotAnS3Event {
        message_id: message_id.to_string(),
        reason,
    };
    let mut value: Value = serde_json::from_str(body).map_err(|e| bad(e.to_string()))?;
    if value.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Notification::Test);
    }
    let records = value
        .get_mut("Records")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| bad("no Records".to_string()))?;
    for record in records.iter_mut() {
        let Some(record) = record.as_object_mut() else {
            return Err(bad("a record is not an object".to_string()));
        };
        for field in ["userIdentity", "requestParameters", "responseElements"] {
            record
                .entry(field)
                .or_insert_with(|| Value::Object(Default::default()));
        }
    }
    serde_json::from_value(value)
        .map(Notification::Event)
        .map_err(|e| bad(e.to_string()))
}

/// What one pass over the queue did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RelayReport {
    /// Messages received.
    pub received: usize,
    /// Test events dropped.
    pub test_events: usize,
    /// Events the function accepted (their messages were deleted).
    pub delivered: Vec<S3Event>,
    /// Invocations that failed, with the function's error; their messages stay queued.
    pub failed: Vec<Invocation>,
    /// Messages that are not S3 events; they stay queued.
    pub rejected: Vec<String>,
}

impl RelayReport {
    fn absorb(&mut self, other: RelayReport) {
        self.received += other.received;
        self.test_events += other.test_events;
        self.delivered.extend(other.delivered);
        self.failed.extend(other.failed);
        self.rejected.extend(other.rejected);
    }
}

/// Relays S3 notifications from `queue` to `function`, invoked through the Invoke API.
#[derive(Debug, Clone)]
pub struct Relay {
    queue: SqsQueue,
    lambda: aws_sdk_lambda::Client,
    function: String,
}

impl Relay {
    pub fn new(
        queue: SqsQueue,
        lambda: aws_sdk_lambda::Client,
        function: impl Into<String>,
    ) -> Self {
        Relay {
            queue,
            lambda,
            function: function.into(),
        }
    }

    pub fn function(&self) -> &str {
        &self.function
    }

    /// Receive up to ten messages (waiting up to `wait` for the first) and relay each.
    pub async fn relay_once(&self, wait: Duration) -> Result<RelayReport, RelayError> {
        let messages = self
            .queue
            .receive(10, wait)
            .await
            .map_err(|e| RelayError::Queue(e.to_string()))?;
        let mut report = RelayReport {
            received: messages.len(),
            ..Default::default()
        };
        for message in messages {
            self.relay_message(&message, &mut report).await?;
        }
        Ok(report)
    }

    /// Relay until the queue has been empty for one `wait`, at most `max_passes` passes.
    pub async fn drain(
        &self,
        wait: Duration,
        max_passes: usize,
    ) -> Result<RelayReport, RelayError> {
        let mut total = RelayReport::default();
        for _ in 0..max_passes {
            let report = self.relay_once(wait).await?;
            let empty = report.received == 0;
            total.absorb(report);
            if empty {
                break;
            }
        }
        Ok(total)
    }

    async fn relay_message(
        &self,
        message: &Message,
        report: &mut RelayReport,
    ) -> Result<(), RelayError> {
        let event = match parse_notification(&message.message_id, &message.body) {
            Ok(Notification::Test) => {
                report.test_events += 1;
                return self.delete(message).await;
            }
            Ok(Notification::Event(event)) => event,
            Err(e) => {
                tracing::warn!(error = %e, "leaving a message that is not an S3 event");
                report.rejected.push(e.to_string());
                return Ok(());
            }
        };
        let payload = serde_json::to_vec(&event).expect("an S3Event serializes");
        match invoke_sdk(&self.lambda, &self.function, &payload, INVOKE_TIMEOUT).await {
            Ok(invocation) if invocation.succeeded() => {
                self.delete(message).await?;
                report.delivered.push(event);
            }
            Ok(invocation) => {
                tracing::warn!(function = %self.function, payload = %invocation.payload, "function failed; the event stays queued");
                report.failed.push(invocation);
            }
            Err(e) => {
                tracing::warn!(function = %self.function, error = %e, "invoke failed; the event stays queued");
                report.failed.push(Invocation {
                    status: 0,
                    function_error: Some("InvokeFailed".to_string()),
                    payload: Value::String(e.to_string()),
                });
            }
        }
        Ok(())
    }

    async fn delete(&self, message: &Message) -> Result<(), RelayError> {
        self.queue
            .delete(message)
            .await
            .map_err(|e| RelayError::Queue(e.to_string()))
    }

    /// Relay in a background task until the returned handle is stopped or dropped.
    pub fn spawn(self) -> RelayHandle {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut total = RelayReport::default();
            while !*stopped.borrow() {
                tokio::select! {
                    pass = self.relay_once(Duration::from_secs(1)) => match pass {
                        Ok(report) => total.absorb(report),
                        Err(e) => {
                            tracing::warn!(error = %e, "relay pass failed; retrying");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                    },
                    _ = stopped.changed() => break,
                }
            }
            total
        });
        RelayHandle {
            stop,
            task: Some(task),
        }
    }
}

/// A relay running in the background.
#[derive(Debug)]
pub struct RelayHandle {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<RelayReport>>,
}

impl RelayHandle {
    /// Stop and return what was relayed; a pass in progress is abandoned and its messages
    /// stay queued.
    pub async fn stop(mut self) -> RelayReport {
        let _ = self.stop.send(true);
        match self.task.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => RelayReport::default(),
        }
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
