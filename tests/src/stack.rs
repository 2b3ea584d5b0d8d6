//! The whole stand-in stack of one test: moto, the Lambda emulator, function instances, and a
//! versioned bucket whose ObjectCreated notifications go to an SQS queue.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_s3::types::{
    BucketVersioningStatus, Event, FilterRule, FilterRuleName, NotificationConfiguration,
    NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter, VersioningConfiguration,
};
use cachefill_core::storage::s3::{S3Config, S3Store, build_client};
use serde_json::Value;

use crate::emulator::{Emulator, FunctionInstance, function_binary};
use crate::error::{Result, StackError};
use crate::invoke::{Invocation, invoke_http, invoke_sdk, lambda_client};
use crate::moto::Moto;
use crate::relay::Relay;
use crate::sqs::SqsQueue;
use crate::tools::{Tools, skipped};

/// Region of every client and function of the stack.
pub const REGION: &str = "us-east-1";
/// moto accepts any credentials; these are what functions and clients are given.
pub const ACCESS_KEY_ID: &str = "test";
pub const SECRET_ACCESS_KEY: &str = "test";
/// The queue the bucket notifies.
pub const EVENTS_QUEUE: &str = "cachefill-e2e-events";
/// How long a relayed but unanswered event stays invisible before it is retried, unless
/// [`StackConfig::events_visibility`] says otherwise.
pub const EVENTS_VISIBILITY: Duration = Duration::from_secs(10);
/// Default bound on one invocation made by a test.
pub const INVOKE_TIMEOUT: Duration = Duration::from_secs(300);

/// A Lambda function: its name under the emulator, and the bin of this package that runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Function {
    pub name: &'static str,
    pub bin: &'static str,
}

impl Function {
    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// The miss-handler, built from `functions/miss-handler/src/main.rs` as a bin of this package
/// (see `tests/Cargo.toml` for why), named as the template and `scripts/dev-stack` name it.
pub const MISS_HANDLER: Function = Function {
    name: "miss-handler",
    bin: "e2e-miss-handler",
};
/// The object-validator, built like [`MISS_HANDLER`].
pub const OBJECT_VALIDATOR: Function = Function {
    name: "object-validator",
    bin: "e2e-object-validator",
};
/// Stores every S3 event it receives (see `src/bin/event_recorder.rs`).
pub const EVENT_RECORDER: Function = Function {
    name: "e2e-event-recorder",
    bin: "e2e-event-recorder",
};

/// What the stack sets up.
#[derive(Debug, Clone)]
pub struct StackConfig {
    pub bucket: String,
    /// lumibot's prefix (`CACHE_PREFIX`, `LUMIBOT_CACHE_S3_PREFIX`); may be empty.
    pub prefix: String,
    pub version: String,
    /// Create the events queue and the bucket's ObjectCreated notification to it, filtered
    /// like the template's (prefix `<prefix>/<version>/`, suffixes `.parquet`, `.meta.json`).
    pub notifications: bool,
    /// The events queue's visibility timeout: how soon an event the relay could not deliver
    /// is offered again.
    pub events_visibility: Duration,
    /// More environment for every function instance (`THETADATA_BASE_URL`,
    /// `CACHE_LEASE_TTL_SECONDS`, …).
    pub function_env: Vec<(String, String)>,
}

impl Default for StackConfig {
    fn default() -> Self {
        StackConfig {
            bucket: "cachefill-e2e".to_string(),
            prefix: "e2e/cache".to_string(),
            version: "v1".to_string(),
            notifications: true,
            events_visibility: EVENTS_VISIBILITY,
            function_env: Vec::new(),
        }
    }
}

impl StackConfig {
    /// `<prefix>/<version>/`, where data, leases and the manifest live.
    pub fn version_root(&self) -> String {
        let parts: Vec<&str> = [self.prefix.as_str(), self.version.as_str()]
            .into_iter()
            .map(|p| p.trim_matches('/'))
            .filter(|p| !p.is_empty())
            .collect();
        format!("{}/", parts.join("/"))
    }
}

/// moto + the emulator + function instances, stopped when dropped (also on panic).
pub struct Stack {
    // Fields drop in order: functions before the emulator they poll, moto last but one,
    // the log folder last.
    instances: Mutex<Vec<FunctionInstance>>,
    emulator: Emulator,
    moto: Moto,
    config: StackConfig,
    tools: Tools,
    s3: aws_sdk_s3::Client,
    lambda: aws_sdk_lambda::Client,
    http: reqwest::Client,
    queue: Option<SqsQueue>,
    logs: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("s3", &self.s3_endpoint())
            .field("invoke", &self.invoke_endpoint())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Stack {
    /// Start moto and the emulator on free loopback ports and prepare the bucket.
    pub async fn start(config: StackConfig) -> Result<Stack> {
        let tools = Tools::locate()?;
        let logs = tempfile::Builder::new()
            .prefix("cachefill-e2e-")
            .tempdir()
            .map_err(|e| StackError::io("creating the log folder", e))?;
        let (moto, emulator) = tokio::join!(
            Moto::start(&tools, logs.path()),
            Emulator::start(&tools, logs.path())
        );
        let (moto, emulator) = (moto?, emulator?);
        let s3 = build_client(&S3Config {
            region: Some(REGION.to_string()),
            endpoint_url: Some(moto.endpoint()),
            access_key_id: Some(ACCESS_KEY_ID.to_string()),
            secret_access_key: Some(cachefill_core::settings::Secret::new(SECRET_ACCESS_KEY)),
            session_token: None,
        })
        .await;
        let lambda = lambda_client(&emulator.endpoint(), REGION);
        let mut stack = Stack {
            instances: Mutex::new(Vec::new()),
            emulator,
            moto,
            config,
            tools,
            s3,
            lambda,
            http: reqwest::Client::new(),
            queue: None,
            logs: Some(logs),
        };
        stack.prepare().await?;
        Ok(stack)
    }

    /// [`Stack::start`], or `None` (saying so) when `CACHEFILL_E2E=skip`.
    pub async fn start_or_skip(test: &str, config: StackConfig) -> Result<Option<Stack>> {
        if skipped(test) {
            return Ok(None);
        }
        Stack::start(config).await.map(Some)
    }

    /// Forget everything moto holds, then create the bucket (and queue) again.
    pub async fn reset(&mut self) -> Result<()> {
        self.moto.reset().await?;
        self.prepare().await
    }

    async fn prepare(&mut self) -> Result<()> {
        self.create_bucket(&self.config.bucket.clone()).await?;
        if self.config.notifications {
            let queue = SqsQueue::create(
                &self.moto.endpoint(),
                REGION,
                EVENTS_QUEUE,
                self.config.events_visibility,
            )
            .await?;
            self.notify_queue(&self.config.bucket, &queue).await?;
            self.queue = Some(queue);
        }
        Ok(())
    }

    /// Create a bucket with versioning on.
    pub async fn create_bucket(&self, bucket: &str) -> Result<()> {
        create_versioned_bucket(&self.s3, bucket).await
    }

    async fn notify_queue(&self, bucket: &str, queue: &SqsQueue) -> Result<()> {
        let root = self.config.version_root();
        // S3 allows one suffix per filter, hence one configuration per suffix (as in the
        // template).
        let configurations =
            [("parquet", ".parquet"), ("sidecar", ".meta.json")].map(|(id, suffix)| {
                let rule = |name: FilterRuleName, value: &str| {
                    FilterRule::builder().name(name).value(value).build()
                };
                QueueConfiguration::builder()
                    .id(id)
                    .queue_arn(queue.arn())
                    .events(Event::S3ObjectCreated)
                    .filter(
                        NotificationConfigurationFilter::builder()
                            .key(
                                S3KeyFilter::builder()
                                    .filter_rules(rule(FilterRuleName::Prefix, &root))
                                    .filter_rules(rule(FilterRuleName::Suffix, suffix))
                                    .build(),
                            )
                            .build(),
                    )
                    .build()
            });
        let configurations: Vec<QueueConfiguration> = configurations
            .into_iter()
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| StackError::service("QueueConfiguration", e))?;
        self.s3
            .put_bucket_notification_configuration()
            .bucket(bucket)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .set_queue_configurations(Some(configurations))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| sdk_error("PutBucketNotificationConfiguration", e))?;
        Ok(())
    }

    pub fn config(&self) -> &StackConfig {
        &self.config
    }

    pub fn tools(&self) -> &Tools {
        &self.tools
    }

    /// Where every process of this stack logs.
    pub fn log_dir(&self) -> &Path {
        self.logs
            .as_ref()
            .map(tempfile::TempDir::path)
            .expect("the log folder lives as long as the stack")
    }

    /// moto's endpoint: S3 (path-style) and SQS.
    pub fn s3_endpoint(&self) -> String {
        self.moto.endpoint()
    }

    /// The emulator's Lambda Invoke API endpoint.
    pub fn invoke_endpoint(&self) -> String {
        self.emulator.endpoint()
    }

    pub fn emulator(&self) -> &Emulator {
        &self.emulator
    }

    pub fn moto(&mut self) -> &mut Moto {
        &mut self.moto
    }

    /// An S3 client on moto (path-style, dummy credentials).
    pub fn s3(&self) -> &aws_sdk_s3::Client {
        &self.s3
    }

    /// A Lambda client on the emulator (retries off, see [`lambda_client`]).
    pub fn lambda(&self) -> &aws_sdk_lambda::Client {
        &self.lambda
    }

    /// The storage seam on the stack's bucket.
    pub fn store(&self) -> S3Store {
        S3Store::new(self.s3.clone(), self.config.bucket.clone())
    }

    /// The queue the bucket notifies, when notifications are on.
    pub fn queue(&self) -> Option<&SqsQueue> {
        self.queue.as_ref()
    }

    /// A relay from the events queue to `function`.
    pub fn relay_to(&self, function: Function) -> Result<Relay> {
        let queue = self.queue.clone().ok_or_else(|| {
            StackError::service("relay", "this stack was started without notifications")
        })?;
        Ok(Relay::new(queue, self.lambda.clone(), function.name()))
    }

    /// Credentials, region and moto's endpoint, as a process needs them to reach S3.
    pub fn aws_env(&self) -> Vec<(String, String)> {
        pairs(&[
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_ENDPOINT_URL", &self.moto.endpoint()),
        ])
    }

    /// The environment of every function instance: [`Stack::aws_env`], the bucket layout
    /// (`CACHE_BUCKET`, `CACHE_PREFIX`, `CACHE_VERSION`), the providers served
    /// (`CACHE_PROVIDERS`) and [`StackConfig::function_env`].
    pub fn function_env(&self) -> Vec<(String, String)> {
        let mut env = self.aws_env();
        env.extend(pairs(&[
            ("CACHE_BUCKET", &self.config.bucket),
            ("CACHE_PREFIX", &self.config.prefix),
            ("CACHE_VERSION", &self.config.version),
            // The tests fill synthetic datasets too; a deployment serves ThetaData only.
            ("CACHE_PROVIDERS", "thetadata,synthetic"),
        ]));
        env.extend(self.config.function_env.iter().cloned());
        env
    }

    /// What a backtest job in readonly mode exports to use this stack, `function` filling
    /// its misses (the lines `scripts/dev-stack` prints).
    pub fn client_env(&self, function: Function) -> Vec<(String, String)> {
        pairs(&[
            ("LUMIBOT_CACHE_BACKEND", "s3"),
            ("LUMIBOT_CACHE_MODE", "readonly"),
            ("LUMIBOT_CACHE_S3_BUCKET", &self.config.bucket),
            ("LUMIBOT_CACHE_S3_PREFIX", &self.config.prefix),
            ("LUMIBOT_CACHE_S3_VERSION", &self.config.version),
            ("LUMIBOT_CACHE_FILL_FUNCTION", function.name()),
            ("AWS_ENDPOINT_URL_S3", &self.moto.endpoint()),
            ("AWS_ENDPOINT_URL_LAMBDA", &self.emulator.endpoint()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
        ])
    }

    /// Start one instance of `function` (built on first use) with [`Stack::function_env`].
    pub async fn start_function(&self, function: Function) -> Result<()> {
        self.start_function_with(function, &[]).await
    }

    /// [`Stack::start_function`] with more (or overriding) environment.
    pub async fn start_function_with(
        &self,
        function: Function,
        extra_env: &[(String, String)],
    ) -> Result<()> {
        let binary = function_binary(function.bin)?;
        let mut env = self.function_env();
        env.extend(extra_env.iter().cloned());
        let mut instances = self.instances.lock().expect("instances lock");
        let log = self
            .log_dir()
            .join(format!("{}-{}.log", function.bin, instances.len()));
        instances.push(FunctionInstance::spawn(
            &self.emulator,
            function.name(),
            &binary,
            &env,
            &log,
        )?);
        Ok(())
    }

    /// SIGKILL every running instance of `function`; returns how many were running.
    pub fn kill_function(&self, function: Function) -> usize {
        let mut instances = self.instances.lock().expect("instances lock");
        let mut killed = 0;
        for instance in instances.iter_mut() {
            if instance.function() == function.name() && instance.is_running() {
                instance.kill();
                killed += 1;
            }
        }
        killed
    }

    /// How many instances of `function` are running.
    pub fn running_instances(&self, function: Function) -> usize {
        let mut instances = self.instances.lock().expect("instances lock");
        instances
            .iter_mut()
            .filter(|i| i.function() == function.name())
            .filter_map(|i| i.is_running().then_some(()))
            .count()
    }

    /// Process ids of the running stand-ins and instances (for tests of the harness).
    pub fn pids(&mut self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .instances
            .lock()
            .expect("instances lock")
            .iter()
            .filter_map(FunctionInstance::pid)
            .collect();
        pids.extend(self.moto.process().pid());
        pids.extend(self.emulator.process().pid());
        pids
    }

    /// Invoke `function` with a JSON payload through the AWS SDK's Invoke call.
    pub async fn invoke(&self, function: Function, payload: &Value) -> Result<Invocation> {
        let body = serde_json::to_vec(payload).expect("a JSON value serializes");
        invoke_sdk(&self.lambda, function.name(), &body, INVOKE_TIMEOUT).await
    }

    /// Invoke `function` with raw bytes through a plain HTTP `POST` to the Invoke API.
    pub async fn invoke_raw(&self, function: Function, body: &[u8]) -> Result<Invocation> {
        invoke_http(
            &self.http,
            &self.emulator.invoke_url(function.name()),
            body,
            INVOKE_TIMEOUT,
        )
        .await
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(logs) = self.logs.take()
        {
            eprintln!("end-to-end logs kept in {}", logs.keep().display());
        }
    }
}

/// Create `bucket` with versioning on, through `s3`.
pub async fn create_versioned_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<()> {
    s3.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| sdk_error("CreateBucket", e))?;
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .map_err(|e| sdk_error("PutBucketVersioning", e))?;
    Ok(())
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

fn sdk_error<E, R>(operation: &str, error: aws_sdk_s3::error::SdkError<E, R>) -> StackError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StackError::service(operation, aws_sdk_s3::error::DisplayErrorContext(error))
}
