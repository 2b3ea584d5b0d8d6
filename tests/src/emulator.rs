//! cargo-lambda's Lambda emulator (`cargo lambda watch`) and the function instances it serves.
//!
//! The emulator runs with `--only-lambda-apis`: it serves the real Invoke API
//! (`POST /2015-03-31/functions/<name>/invocations`) and the Lambda Runtime API
//! (`/.rt/<name>/2018-06-01/runtime/invocation/next`, …), while the harness starts the function
//! binaries itself: bins of this package, compiled from the functions' own `main.rs`, which
//! `cargo test` builds with the test build's features before it runs the tests. That gives
//! each test what Lambda gives a function, and what the emulator's own `cargo run` mode
//! cannot: an instance can be killed mid-invocation and a fresh one started (cargo-lambda
//! never restarts a killed instance, so its queue would stall), several instances can serve
//! one function at once, and no test waits on a nested build, whose different feature
//! resolution would compile the AWS SDK a second time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::error::{Result, StackError};
use crate::process::{Supervised, free_port, wait_for_port};
use crate::tools::{Tools, target_dir, workspace_root};

/// cargo-lambda reads the workspace's metadata before it listens.
const START_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug)]
pub struct Emulator {
    process: Supervised,
    port: u16,
}

impl Emulator {
    /// Start `cargo lambda watch --only-lambda-apis -A 127.0.0.1 -P <free port>` in the
    /// workspace root, logging to `log_dir/emulator.log`.
    ///
    /// Without `--timeout`: cargo-lambda applies it to every route, the Runtime API's long
    /// poll included, which would end idle instances; callers bound their invokes instead.
    pub async fn start(tools: &Tools, log_dir: &Path) -> Result<Emulator> {
        let log = log_dir.join("emulator.log");
        let mut last_error = None;
        for _ in 0..3 {
            let port = free_port()?;
            let mut command = Command::new(tools.cargo_lambda());
            command
                .args(["lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1"])
                .args(["-P", &port.to_string()])
                .current_dir(workspace_root())
                .env("PATH", tools.path_env())
                .env("CARGO_TARGET_DIR", target_dir())
                .env("RUST_LOG", "info");
            let mut process = Supervised::spawn("cargo lambda watch", command, &log)?;
            match wait_for_port(&mut process, port, START_TIMEOUT).await {
                Ok(()) => return Ok(Emulator { process, port }),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("three attempts were made"))
    }

    /// `http://127.0.0.1:<port>`: the endpoint of the Lambda Invoke API.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL a raw HTTP invoke of `function` posts to.
    pub fn invoke_url(&self, function: &str) -> String {
        format!(
            "{}/2015-03-31/functions/{function}/invocations",
            self.endpoint()
        )
    }

    /// `AWS_LAMBDA_RUNTIME_API` for an instance of `function`.
    pub fn runtime_api(&self, function: &str) -> String {
        format!("{}/.rt/{function}", self.endpoint())
    }

    pub fn process(&mut self) -> &mut Supervised {
        &mut self.process
    }
}

/// One running instance of a function, polling the emulator's Runtime API.
#[derive(Debug)]
pub struct FunctionInstance {
    function: String,
    process: Supervised,
}

impl FunctionInstance {
    /// Start `binary` as an instance of `function`, with exactly the environment `env` plus
    /// what Lambda itself sets.
    pub fn spawn(
        emulator: &Emulator,
        function: &str,
        binary: &Path,
        env: &[(String, String)],
        log: &Path,
    ) -> Result<FunctionInstance> {
        let mut command = Command::new(binary);
        // Like Lambda, the function sees only its configured environment.
        command
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", emulator.runtime_api(function))
            .env("AWS_LAMBDA_FUNCTION_NAME", function)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env("RUST_BACKTRACE", "1")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let process = Supervised::spawn(format!("function {function}"), command, log)?;
        Ok(FunctionInstance {
            function: function.to_string(),
            process,
        })
    }

    pub fn function(&self) -> &str {
        &self.function
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// SIGKILL, as Lambda does to a sandbox that crashes or runs out of memory.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}

/// The binary `bin` of this package, from beside the running test: cargo builds a package's
/// bins, with the test build's own features, before it runs the package's integration tests.
pub fn function_binary(bin: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| StackError::io("locating the test binary", e))?;
    let profile_dir = exe
        .parent()
        .filter(|deps| deps.file_name().is_some_and(|n| n == "deps"))
        .and_then(Path::parent);
    match profile_dir.map(|dir| dir.join(bin)) {
        Some(path) if path.is_file() => Ok(path),
        path => Err(StackError::BinaryMissing {
            bin: bin.to_string(),
            looked_at: path,
        }),
    }
}
