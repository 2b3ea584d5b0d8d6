//! The real lumibot 4.6.30 package (installed in the project venv by `scripts/setup-venv`),
//! driven by `tests/lumibot/driver.py`, for the tests that prove cachefill and lumibot read
//! and write each other's cache files (tests/tests/lumibot.rs).
//!
//! Every run of the driver is a fresh Python process with an environment built here from
//! nothing (`env_clear`), because lumibot reads its settings at import time: the cache folder,
//! the terminal's base URL, and no `CI`, `IS_BACKTESTING` or `LUMIBOT_CACHE_*` left over from
//! the test's own environment. Each run is bounded by a timeout and killed when it passes.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::error::{Result, StackError};
use crate::tools::{Tools, workspace_root};

/// The lumibot release these tests are written against.
pub const LUMIBOT_VERSION: &str = "4.6.30";

/// How long one run of the driver may take. A write waits out lumibot's own retries of the
/// corporate-action endpoints the recordings do not hold (three attempts, 1 s and 2 s apart,
/// for splits and for dividends); everything else takes a few seconds.
pub const DRIVER_TIMEOUT: Duration = Duration::from_secs(120);

/// lumibot in the project venv and the driver script of the repository.
#[derive(Debug, Clone)]
pub struct Lumibot {
    python: PathBuf,
    bin: PathBuf,
    driver: PathBuf,
    /// Stands in for `$HOME` (lumibot's `appdirs` creates folders under it at import).
    home: PathBuf,
}

impl Lumibot {
    /// The venv's lumibot, checked to import and to be [`LUMIBOT_VERSION`]; `home` is the
    /// `$HOME` of every run.
    pub async fn locate(tools: &Tools, home: &Path) -> Result<Lumibot> {
        let driver = workspace_root().join("tests/lumibot/driver.py");
        if !driver.is_file() {
            return Err(StackError::service(
                "lumibot driver",
                format!("{} is missing", driver.display()),
            ));
        }
        let lumibot = Lumibot {
            python: tools.python(),
            bin: tools.bin_dir().to_path_buf(),
            driver,
            home: home.to_path_buf(),
        };
        let probe = lumibot
            .command()
            .arg("-c")
            .arg("import importlib.metadata as m, lumibot.tools.thetadata_helper; print(m.version('lumibot'))")
            .env("LUMIBOT_CACHE_FOLDER", home.join("probe-cache"))
            .output();
        let output = tokio::time::timeout(DRIVER_TIMEOUT, probe)
            .await
            .map_err(|_| StackError::Timeout {
                what: "importing lumibot".into(),
                waited: DRIVER_TIMEOUT,
                last: String::new(),
            })?
            .map_err(|source| StackError::Spawn {
                what: format!("{} -c 'import lumibot'", lumibot.python.display()),
                source,
            })?;
        let version = String::from_utf8_lossy(&output.stdout).trim().to_string();
        if !output.status.success() || version != LUMIBOT_VERSION {
            return Err(StackError::ToolUnusable {
                tool: "lumibot",
                path: lumibot.python.clone(),
                detail: format!(
                    "lumibot {LUMIBOT_VERSION} does not import there (found {version:?}): {}",
                    tail_of(&output.stderr)
                ),
            });
        }
        Ok(lumibot)
    }

    fn command(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.python);
        let path =
            std::env::join_paths([self.bin.as_path(), Path::new("/usr/bin"), Path::new("/bin")])
                .expect("the venv path joins");
        command
            .env_clear()
            .env("PATH", path)
            .env("HOME", &self.home)
            .env("PYTHONUNBUFFERED", "1")
            // The driver lives in the repository: no __pycache__ beside it.
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("LUMIBOT_LOG_LEVEL", "WARNING")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Run `driver.py <args>` with `env`, returning the JSON object it prints; a non-zero
    /// exit, an answer that is not JSON, or a run longer than [`DRIVER_TIMEOUT`] is an error
    /// carrying the end of its stderr.
    pub async fn run<S: AsRef<OsStr>>(
        &self,
        args: &[S],
        env: &[(String, String)],
    ) -> Result<Value> {
        self.run_script(&self.driver, args, env).await
    }

    /// [`Lumibot::run`] of `reference_driver.py`, the driver of corporate events and option
    /// chains.
    pub async fn run_reference<S: AsRef<OsStr>>(
        &self,
        args: &[S],
        env: &[(String, String)],
    ) -> Result<Value> {
        let script = self.driver.with_file_name("reference_driver.py");
        self.run_script(&script, args, env).await
    }

    /// [`Lumibot::run`] of `polygon_driver.py`, the driver of lumibot's Polygon helper.
    pub async fn run_polygon<S: AsRef<OsStr>>(
        &self,
        args: &[S],
        env: &[(String, String)],
    ) -> Result<Value> {
        let script = self.driver.with_file_name("polygon_driver.py");
        self.run_script(&script, args, env).await
    }

    async fn run_script<S: AsRef<OsStr>>(
        &self,
        script: &Path,
        args: &[S],
        env: &[(String, String)],
    ) -> Result<Value> {
        let mut command = self.command();
        command.arg(script).args(args);
        for (name, value) in env {
            command.env(name, value);
        }
        let what = format!(
            "{} {}",
            script.file_name().map_or_else(
                || script.display().to_string(),
                |n| n.to_string_lossy().into_owned()
            ),
            args.iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        );
        let output = tokio::time::timeout(DRIVER_TIMEOUT, command.output())
            .await
            .map_err(|_| StackError::Timeout {
                what: what.clone(),
                waited: DRIVER_TIMEOUT,
                last: "the process was killed".into(),
            })?
            .map_err(|source| StackError::Spawn {
                what: what.clone(),
                source,
            })?;
        if !output.status.success() {
            return Err(StackError::service(
                what,
                format!(
                    "exited with {}:\n{}",
                    output.status,
                    tail_of(&output.stderr)
                ),
            ));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        serde_json::from_str(stdout.trim()).map_err(|e| {
            StackError::service(
                what,
                format!(
                    "did not print one JSON object ({e}): {stdout}\n{}",
                    tail_of(&output.stderr)
                ),
            )
        })
    }
}

/// What every driver run that talks to the stand-in terminal needs: the cache folder and
/// the terminal's base URL, and lumibot told never to start a ThetaTerminal of its own.
pub fn terminal_env(cache_root: &Path, base_url: &str) -> Vec<(String, String)> {
    [
        ("LUMIBOT_CACHE_FOLDER", cache_root.display().to_string()),
        ("THETADATA_BASE_URL", base_url.to_string()),
        ("DATADOWNLOADER_SKIP_LOCAL_START", "true".into()),
        ("THETADATA_USERNAME", "cachefill-e2e".into()),
        ("THETADATA_PASSWORD", "cachefill-e2e".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn tail_of(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
