//! `cachefill-timed`: runs one command and prints how long it took, measured from just before
//! its spawn to just after its exit, so that a benchmark's number holds the command and not the
//! shell, `timeout` and `env` processes that would otherwise wrap it.
//!
//! ```text
//! cachefill-timed --timeout SECS [--cwd DIR] [--stdout FILE] [--stderr FILE] [--env NAME=VALUE]...
//!     -- PROGRAM [ARG]...
//! ```
//!
//! The command starts with an empty environment but for the `--env` pairs, in `--cwd`, with its
//! standard input from `/dev/null` and its output to the named files (inherited when none is
//! named). The seconds (six decimals) go to standard output, and the exit status is the
//! command's. After `--timeout` seconds the command gets SIGTERM, two seconds later SIGKILL,
//! and the exit status is 124, as with `timeout(1)`; a command killed by a signal exits 128 +
//! the signal. A usage error exits 2.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: cachefill-timed --timeout SECS [--cwd DIR] [--stdout FILE] \
                     [--stderr FILE] [--env NAME=VALUE]... -- PROGRAM [ARG]...";
/// How long a command that ignores SIGTERM gets before SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(2);
const TIMED_OUT: u8 = 124;

struct Args {
    timeout: Duration,
    cwd: Option<PathBuf>,
    stdout: Option<PathBuf>,
    stderr: Option<PathBuf>,
    env: Vec<(OsString, OsString)>,
    program: OsString,
    args: Vec<OsString>,
}

fn parse(mut argv: impl Iterator<Item = OsString>) -> Result<Args, String> {
    let mut timeout = None;
    let (mut cwd, mut stdout, mut stderr, mut env) = (None, None, None, Vec::new());
    loop {
        let flag = argv.next().ok_or("no command after the options")?;
        if flag == "--" {
            break;
        }
        let flag = flag.to_string_lossy().into_owned();
        let value = argv.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--timeout" => {
                let secs = value
                    .to_str()
                    .and_then(|v| v.parse::<f64>().ok())
                    .filter(|secs| secs.is_finite() && *secs > 0.0)
                    .ok_or_else(|| {
                        format!("--timeout takes a positive number of seconds, not {value:?}")
                    })?;
                timeout = Some(Duration::from_secs_f64(secs));
            }
            "--cwd" => cwd = Some(PathBuf::from(value)),
            "--stdout" => stdout = Some(PathBuf::from(value)),
            "--stderr" => stderr = Some(PathBuf::from(value)),
            "--env" => {
                let pair = value
                    .to_str()
                    .and_then(|pair| pair.split_once('='))
                    .filter(|(name, _)| !name.is_empty())
                    .ok_or_else(|| format!("--env takes NAME=VALUE, not {value:?}"))?;
                env.push((pair.0.into(), pair.1.into()));
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    let program = argv.next().ok_or("no command after --")?;
    Ok(Args {
        timeout: timeout.ok_or("--timeout is required")?,
        cwd,
        stdout,
        stderr,
        env,
        program,
        args: argv.collect(),
    })
}

fn output(path: Option<&PathBuf>) -> Result<Stdio, String> {
    match path {
        None => Ok(Stdio::inherit()),
        Some(path) => File::create(path)
            .map(Stdio::from)
            .map_err(|err| format!("cannot create {}: {err}", path.display())),
    }
}

/// Sends `signal` to `pid` through `kill(1)` (the standard library sends only SIGKILL, and
/// only through the `Child` the waiting thread holds).
fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

fn run(args: Args) -> Result<ExitCode, String> {
    let mut command = Command::new(&args.program);
    command
        .args(&args.args)
        .env_clear()
        .envs(args.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(output(args.stdout.as_ref())?)
        .stderr(output(args.stderr.as_ref())?);
    if let Some(cwd) = &args.cwd {
        command.current_dir(cwd);
    }
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|err| format!("cannot start {:?}: {err}", args.program))?;
    let pid = child.id();
    let (exited, watch) = mpsc::channel::<()>();
    let timeout = args.timeout;
    let watchdog = thread::spawn(move || {
        if watch.recv_timeout(timeout).is_ok() {
            return false;
        }
        signal(pid, "-TERM");
        if watch.recv_timeout(KILL_GRACE).is_err() {
            signal(pid, "-KILL");
        }
        true
    });
    let status = child.wait();
    let seconds = started.elapsed().as_secs_f64();
    let _ = exited.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    let status = status.map_err(|err| format!("cannot wait for {:?}: {err}", args.program))?;
    println!("{seconds:.6}");
    if timed_out {
        eprintln!(
            "cachefill-timed: {:?} ran out of its {} s and was stopped",
            args.program,
            timeout.as_secs_f64()
        );
        return Ok(ExitCode::from(TIMED_OUT));
    }
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    };
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

fn main() -> ExitCode {
    let args = match parse(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(err) => {
            eprintln!("cachefill-timed: {err}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    run(args).unwrap_or_else(|err| {
        eprintln!("cachefill-timed: {err}");
        ExitCode::from(1)
    })
}
