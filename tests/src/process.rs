//! Processes the stack starts, each in its own process group so that stopping one also stops
//! whatever it started (cargo-lambda's children, moto's workers), on drop and on panic alike.
//!
//! A test process that is killed outright (a CI timeout, `kill -9`) runs no destructor, so each
//! child also gets a watchdog: a `sh` reading a pipe whose only writer is this process. When
//! this process dies the pipe closes, the read returns, and the watchdog kills the child's
//! group.

use std::fs::{File, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Result, StackError};

/// How long a process gets to exit after SIGTERM before the group is killed.
const GRACE: Duration = Duration::from_secs(5);

/// A child process in its own process group, with stdout and stderr in a log file.
#[derive(Debug)]
pub struct Supervised {
    name: String,
    child: Option<Child>,
    watchdog: Option<(Child, ChildStdin)>,
    log: PathBuf,
}

impl Supervised {
    /// Start `command` as the leader of a new process group, logging to `log` (appended).
    pub fn spawn(name: impl Into<String>, mut command: Command, log: &Path) -> Result<Self> {
        let name = name.into();
        let out = open_log(log)?;
        let err = out
            .try_clone()
            .map_err(|e| StackError::io(format!("log file {}", log.display()), e))?;
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = command.spawn().map_err(|source| StackError::Spawn {
            what: format!("{name} ({:?})", command.get_program()),
            source,
        })?;
        let watchdog = watchdog(child.id()).map_err(|source| StackError::Spawn {
            what: format!("the watchdog of {name}"),
            source,
        });
        let mut supervised = Supervised {
            name,
            child: Some(child),
            watchdog: None,
            log: log.to_path_buf(),
        };
        supervised.watchdog = Some(watchdog?);
        Ok(supervised)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id, which is also the id of its process group.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Whether the leader is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// An error saying this process is not ready, with the end of its log.
    pub fn not_ready(&self, reason: impl Into<String>) -> StackError {
        StackError::NotReady {
            what: self.name.clone(),
            reason: reason.into(),
            log: self.log.clone(),
            tail: self.log_tail(40),
        }
    }

    /// SIGKILL the whole group at once, as a crash or an out-of-memory kill would.
    pub fn kill(&mut self) {
        self.stop_watchdog();
        if let Some(mut child) = self.child.take() {
            signal_group(child.id(), "KILL");
            let _ = child.wait();
        }
    }

    /// SIGTERM the group, wait up to five seconds, then SIGKILL whatever is left.
    pub fn stop(&mut self) {
        self.stop_watchdog();
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id();
        signal_group(pid, "TERM");
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        // Children of the leader may outlive it; the group id still names them.
        signal_group(pid, "KILL");
        let _ = child.wait();
    }
}

impl Supervised {
    fn stop_watchdog(&mut self) {
        if let Some((mut watchdog, _pipe)) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() {
            eprintln!(
                "--- {} (log {}) ---\n{}",
                self.name,
                self.log.display(),
                self.log_tail(30)
            );
        }
        self.stop();
    }
}

/// A process that SIGKILLs group `pgid` once its stdin closes, which happens when this process
/// exits however it exits (std opens pipes close-on-exec, so no other child holds the writer).
fn watchdog(pgid: u32) -> std::io::Result<(Child, ChildStdin)> {
    let mut child = Command::new("sh")
        .args([
            "-c",
            r#"read -r _; kill -s KILL -- "-$1" 2>/dev/null"#,
            "cachefill-watchdog",
        ])
        .arg(pgid.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own group, so a Ctrl-C that ends the tests does not end it first.
        .process_group(0)
        .spawn()?;
    let pipe = child.stdin.take().expect("stdin is piped");
    Ok((child, pipe))
}

fn signal_group(pgid: u32, signal: &str) {
    // std has no kill(2); the kill command sends to a whole group given `-<pgid>`.
    let _ = Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn open_log(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| StackError::io(format!("log file {}", path.display()), e))
}

/// The last `lines` lines of a text file, or a note that it cannot be read.
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// A loopback TCP port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| StackError::io("binding a free loopback port", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| StackError::io("reading a free loopback port", e))
}

/// Wait until something accepts TCP connections on `127.0.0.1:port`, or the process exits,
/// or `timeout` passes.
pub async fn wait_for_port(process: &mut Supervised, port: u16, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        if !process.is_running() {
            return Err(process.not_ready(format!("exited before listening on port {port}")));
        }
        if Instant::now() > deadline {
            return Err(process.not_ready(format!(
                "nothing listened on port {port} within {timeout:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether process `pid` is running. A reaped process has no `/proc` entry; one that died
/// but is not reaped yet (a zombie) counts as gone.
pub fn is_alive(pid: u32) -> bool {
    // The state letter follows the parenthesised command name in /proc/<pid>/stat.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().chars().next()),
            Some(Some('Z' | 'X'))
        ),
        Err(_) => false,
    }
}

/// Wait up to `within` for every process of `pids` to be gone; whether they all are.
pub fn all_gone(pids: &[u32], within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if pids.iter().all(|p| !is_alive(*p)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
