//! moto's S3/SQS server (`moto_server` from PyPI `moto[server]`) on a free loopback port.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::error::{Result, StackError};
use crate::process::{Supervised, free_port, wait_for_port};
use crate::tools::Tools;

/// How long moto may take to import and bind (it is a Python process).
const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Moto {
    process: Supervised,
    port: u16,
    http: reqwest::Client,
}

impl Moto {
    /// Start `moto_server -H 127.0.0.1 -p <free port>`, logging to `log_dir/moto.log`.
    pub async fn start(tools: &Tools, log_dir: &Path) -> Result<Moto> {
        Moto::start_with_env(tools, log_dir, &[]).await
    }

    /// [`Moto::start`] with more environment for the server, for example
    /// `INITIAL_NO_AUTH_ACTION_COUNT`, after which moto authorizes every request against the
    /// IAM policies of its access key.
    pub async fn start_with_env(
        tools: &Tools,
        log_dir: &Path,
        env: &[(String, String)],
    ) -> Result<Moto> {
        let log = log_dir.join("moto.log");
        // Another process may take the free port between probing and binding; try again then.
        let mut last_error = None;
        for _ in 0..3 {
            let port = free_port()?;
            let mut command = Command::new(tools.moto_server());
            command
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("PATH", tools.path_env())
                .env("PYTHONUNBUFFERED", "1")
                // Where `/moto-api/recorder/` keeps its log when a test starts it.
                .env("MOTO_RECORDER_FILEPATH", log_dir.join("moto-recording"))
                .envs(env.iter().map(|(k, v)| (k, v)))
                .current_dir(log_dir);
            let mut process = Supervised::spawn("moto_server", command, &log)?;
            match wait_for_port(&mut process, port, START_TIMEOUT).await {
                Ok(()) => {
                    let moto = Moto {
                        process,
                        port,
                        http: reqwest::Client::new(),
                    };
                    moto.wait_ready().await?;
                    return Ok(moto);
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("three attempts were made"))
    }

    /// `http://127.0.0.1:<port>`: S3 (path-style), SQS and moto's own API.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn process(&mut self) -> &mut Supervised {
        &mut self.process
    }

    /// Forget every bucket, object, queue and message (`POST /moto-api/reset`).
    pub async fn reset(&self) -> Result<()> {
        let url = format!("{}/moto-api/reset", self.endpoint());
        let response = self
            .http
            .post(&url)
            .send()
            .await
            .map_err(|e| StackError::service("moto reset", e))?;
        if !response.status().is_success() {
            return Err(StackError::service(
                "moto reset",
                format!("answered {}", response.status()),
            ));
        }
        Ok(())
    }

    async fn wait_ready(&self) -> Result<()> {
        let url = format!("{}/moto-api/", self.endpoint());
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.http.get(&url).send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                answer if Instant::now() > deadline => {
                    return Err(self.process.not_ready(format!(
                        "GET /moto-api/ did not answer 200 within {START_TIMEOUT:?}: {answer:?}"
                    )));
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}
