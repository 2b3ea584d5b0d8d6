//! The harness itself: it stops everything it started, on drop and on panic, resets moto, and
//! says how to install what is missing.

use std::time::Duration;

use bytes::Bytes;
use cachefill_core::storage::{ObjectStore, PutOptions};
use cachefill_e2e::process::is_alive;
use cachefill_e2e::{MISS_HANDLER, Stack, StackConfig, StackError, Tools};

/// Wait briefly for processes to disappear (the kernel may lag a reap by a moment).
fn all_gone(pids: &[u32]) -> bool {
    cachefill_e2e::process::all_gone(pids, Duration::from_secs(5))
}

#[tokio::test]
async fn dropping_the_stack_stops_every_process_it_started() -> anyhow::Result<()> {
    let Some(mut stack) = Stack::start_or_skip("harness drop", StackConfig::default()).await?
    else {
        return Ok(());
    };
    stack.start_function(MISS_HANDLER).await?;
    let pids = stack.pids();
    assert_eq!(
        pids.len(),
        3,
        "moto, the emulator and one instance: {pids:?}"
    );
    assert!(pids.iter().all(|p| is_alive(*p)));
    drop(stack);
    assert!(all_gone(&pids), "still running: {pids:?}");
    Ok(())
}

#[test]
fn a_panicking_test_still_stops_every_process() {
    if cachefill_e2e::tools::skipped("harness panic") {
        return;
    }
    let (send, receive) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        runtime.block_on(async {
            let mut stack = Stack::start(StackConfig::default())
                .await
                .expect("stack starts");
            stack
                .start_function(MISS_HANDLER)
                .await
                .expect("instance starts");
            send.send(stack.pids()).expect("pids sent");
            panic!("a test fails while its stack runs");
        });
    })
    .join();
    assert!(outcome.is_err(), "the thread panicked");
    let pids = receive.recv().expect("the stack had started");
    assert_eq!(pids.len(), 3);
    assert!(all_gone(&pids), "still running after the panic: {pids:?}");
}

#[tokio::test]
async fn reset_forgets_objects_and_restores_the_bucket_and_its_notifications() -> anyhow::Result<()>
{
    let Some(mut stack) = Stack::start_or_skip("harness reset", StackConfig::default()).await?
    else {
        return Ok(());
    };
    let key = format!("{}a.parquet", stack.config().version_root());
    stack
        .store()
        .put(&key, Bytes::from_static(b"1"), PutOptions::default())
        .await?;
    stack.reset().await?;
    assert!(stack.store().list("").await?.is_empty());
    // The recreated bucket keeps versions (moto's GetBucketVersioning answer does not parse
    // in the SDK, so versioning is observed instead) and notifies the recreated queue.
    stack
        .store()
        .put(&key, Bytes::from_static(b"2"), PutOptions::default())
        .await?;
    stack
        .store()
        .put(&key, Bytes::from_static(b"3"), PutOptions::default())
        .await?;
    assert_eq!(stack.store().list_versions(&key).await?.len(), 2);
    let queue = stack.queue().expect("notifications are on");
    let mut bodies = Vec::new();
    for _ in 0..5 {
        for message in queue.receive(10, Duration::from_secs(1)).await? {
            bodies.push(message.body);
        }
        if bodies.len() >= 2 {
            break;
        }
    }
    assert!(bodies.iter().any(|b| b.contains("a.parquet")), "{bodies:?}");
    Ok(())
}

#[test]
fn a_missing_venv_names_the_setup_script() {
    let empty = tempfile::tempdir().unwrap();
    let error = Tools::locate_in(empty.path()).unwrap_err();
    assert!(
        matches!(
            error,
            StackError::ToolMissing {
                tool: "moto_server",
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("scripts/setup-venv"), "{message}");
    assert!(message.contains("CACHEFILL_E2E=skip"), "{message}");
}

/// Run only as the child of `a_killed_test_process_leaves_no_process_behind`: start a stack,
/// print its process ids, and wait to be killed.
#[tokio::test]
#[ignore = "run by a_killed_test_process_leaves_no_process_behind"]
async fn stack_in_a_process_that_gets_killed() -> anyhow::Result<()> {
    if std::env::var_os("CACHEFILL_E2E_KILL_CHILD").is_none() {
        return Ok(());
    }
    let mut stack = Stack::start(StackConfig::default()).await?;
    stack.start_function(MISS_HANDLER).await?;
    let pids: Vec<String> = stack.pids().iter().map(u32::to_string).collect();
    println!("PIDS {}", pids.join(" "));
    tokio::time::sleep(Duration::from_secs(600)).await;
    Ok(())
}

#[test]
fn a_killed_test_process_leaves_no_process_behind() -> anyhow::Result<()> {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    if cachefill_e2e::tools::skipped("harness kill") {
        return Ok(());
    }
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "stack_in_a_process_that_gets_killed",
            "--ignored",
            "--nocapture",
        ])
        .env("CACHEFILL_E2E_KILL_CHILD", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = BufReader::new(child.stdout.take().expect("piped"));
    let pids: Vec<u32> = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("PIDS ").map(str::to_string))
        .expect("the child printed its stack's process ids")
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    assert_eq!(pids.len(), 3, "{pids:?}");
    assert!(pids.iter().all(|p| is_alive(*p)));
    // SIGKILL: no destructor runs in the test process.
    child.kill()?;
    child.wait()?;
    assert!(
        all_gone(&pids),
        "orphaned after the test process was killed: {pids:?}"
    );
    Ok(())
}
