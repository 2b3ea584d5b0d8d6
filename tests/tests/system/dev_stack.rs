//! `scripts/dev-stack`: it starts moto, the emulator and the relay, prepares the bucket,
//! prints the environment a readonly job exports, and stops everything it started on Ctrl-C.
//!
//! Nothing is invoked here: the script's emulator compiles functions on their first
//! invocation, which the other tests of this binary cover with the same stand-ins.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cachefill_core::settings::{CacheMode, ClientSettings};
use cachefill_core::storage::s3::{S3Config, S3Store, build_client};
use cachefill_core::storage::{ObjectStore, PutOptions};
use cachefill_e2e::Tools;
use cachefill_e2e::process::{all_gone, is_alive};
use cachefill_e2e::tools::{skipped, target_dir, workspace_root};

/// The script, stopped by the Ctrl-C a person would type when the test ends however it ends.
struct DevStack {
    child: Child,
}

/// How long the script has to stop after each signal before the next, harder one.
const STOP_WITHIN: Duration = Duration::from_secs(15);

impl DevStack {
    /// Ctrl-C, then (if the script is still running after [`STOP_WITHIN`]) SIGTERM, then
    /// SIGKILL: whatever stopped it, and whether Ctrl-C alone did. A process started in the
    /// background by a non-interactive shell inherits SIGINT ignored, and bash cannot trap a
    /// signal ignored on entry, so under such a runner Ctrl-C cannot stop it; the test says
    /// so instead of waiting forever.
    fn interrupt(&mut self) -> std::io::Result<(std::process::ExitStatus, bool)> {
        // Ctrl-C signals the terminal's foreground process group: the script and its `sleep`.
        let group = format!("-{}", self.child.id());
        for (signal, within) in [("INT", STOP_WITHIN), ("TERM", STOP_WITHIN)] {
            Command::new("kill")
                .args(["-s", signal, "--", &group])
                .status()?;
            let deadline = Instant::now() + within;
            while Instant::now() < deadline {
                if let Some(status) = self.child.try_wait()? {
                    return Ok((status, signal == "INT"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            eprintln!("dev-stack: still running {within:?} after SIG{signal}");
        }
        Command::new("kill")
            .args(["-s", "KILL", "--", &group])
            .status()?;
        Ok((self.child.wait()?, false))
    }
}

impl Drop for DevStack {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.interrupt();
        }
    }
}

/// Whether this process ignores SIGINT (and so does every child it starts).
fn sigint_ignored() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let mask = status.lines().find_map(|l| l.strip_prefix("SigIgn:"))?;
            u64::from_str_radix(mask.trim(), 16).ok()
        })
        .is_some_and(|mask| mask & (1 << (SIGINT - 1)) != 0)
}

/// SIGINT's number on Linux (bit `SIGINT - 1` of `SigIgn`).
const SIGINT: u32 = 2;

#[test]
fn the_dev_stack_prints_a_working_environment_and_stops_everything_on_ctrl_c() -> anyhow::Result<()>
{
    use std::io::{BufRead, BufReader};

    if skipped("dev-stack") {
        return Ok(());
    }
    // A missing venv fails here, as in every other test, rather than being installed by the
    // script's call to scripts/setup-venv.
    Tools::locate()?;
    let child = Command::new("bash")
        .arg(workspace_root().join("scripts/dev-stack"))
        .env(
            "CACHEFILL_RELAY_BIN",
            env!("CARGO_BIN_EXE_cachefill-sqs-relay"),
        )
        .env("CACHEFILL_DEV_BUCKET", "dev-stack-test")
        .env("CACHEFILL_DEV_PREFIX", "team/cache")
        .env("CACHEFILL_DEV_VERSION", "v7")
        .env("CARGO_TARGET_DIR", target_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()?;
    let mut stack = DevStack { child };
    // Kept open until the script ends, so its last words do not meet a closed pipe.
    let mut lines = BufReader::new(stack.child.stdout.take().expect("piped")).lines();

    // Everything it prints up to the line saying it runs; the script bounds its own waits.
    let mut exports = HashMap::new();
    let mut pids: Vec<u32> = Vec::new();
    for line in lines.by_ref() {
        let line = line?;
        if let Some((name, value)) = line
            .strip_prefix("export ")
            .and_then(|pair| pair.split_once('='))
        {
            exports.insert(name.to_string(), value.to_string());
        }
        if let Some(listed) = line.split("stack pids ").nth(1) {
            pids = listed
                .trim_end_matches(')')
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()?;
        }
        if line.contains("Ctrl-C stops everything") {
            break;
        }
    }
    assert_eq!(
        pids.len(),
        3,
        "moto, the emulator and the relay: {exports:?}"
    );
    assert!(pids.iter().all(|p| is_alive(*p)));

    // The printed lines configure a readonly job on this stack.
    let settings = ClientSettings::from_lookup(|name| exports.get(name).cloned())?;
    let remote = settings.remote.as_ref().expect("the remote cache is on");
    assert_eq!(remote.mode, CacheMode::ReadOnly);
    assert_eq!(remote.bucket, "dev-stack-test");
    assert_eq!(remote.prefix, "team/cache");
    assert_eq!(remote.version, "v7");
    assert_eq!(settings.fill_function.as_deref(), Some("miss-handler"));
    let lambda = exports["AWS_ENDPOINT_URL_LAMBDA"].clone();
    let lambda_port: u16 = lambda
        .strip_prefix("http://127.0.0.1:")
        .expect("a loopback endpoint")
        .parse()?;
    std::net::TcpStream::connect(("127.0.0.1", lambda_port))?;

    // The bucket it made keeps versions.
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let client = build_client(&S3Config {
            region: Some(exports["AWS_REGION"].clone()),
            endpoint_url: settings.endpoint_url.clone(),
            access_key_id: Some(exports["AWS_ACCESS_KEY_ID"].clone()),
            secret_access_key: Some(cachefill_core::settings::Secret::new(
                exports["AWS_SECRET_ACCESS_KEY"].clone(),
            )),
            session_token: None,
        })
        .await;
        let store = S3Store::new(client, remote.bucket.clone());
        for body in ["1", "2"] {
            store
                .put("notes/readme.txt", Bytes::from(body), PutOptions::default())
                .await?;
        }
        assert_eq!(store.list_versions("notes/readme.txt").await?.len(), 2);
        anyhow::Ok(())
    })?;

    // Ctrl-C: the script exits and takes every part with it.
    let (status, by_ctrl_c) = stack.interrupt()?;
    assert!(!status.success(), "{status}");
    if sigint_ignored() {
        eprintln!(
            "SIGINT is ignored in this process (a background job): Ctrl-C not tested, SIGTERM stopped the script"
        );
    } else {
        assert!(
            by_ctrl_c,
            "Ctrl-C did not stop the script within {STOP_WITHIN:?}"
        );
    }
    let last: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        last.iter().any(|l| l.starts_with("dev-stack: stopped")),
        "{last:?}"
    );
    assert!(
        all_gone(&pids, Duration::from_secs(10)),
        "still running after Ctrl-C: {pids:?}"
    );
    Ok(())
}
