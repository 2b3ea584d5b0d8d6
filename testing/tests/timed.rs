//! `cachefill-timed`, the benchmarks' process timer: the command's status, a cleared
//! environment, the bound on its run and the usage errors.

use std::process::{Command, Output};

fn timed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cachefill-timed"))
        .args(args)
        .output()
        .expect("cachefill-timed runs")
}

fn seconds(output: &Output) -> f64 {
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no seconds in {output:?}"))
}

#[test]
fn the_command_runs_with_only_the_given_environment_and_its_status_is_returned() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let output = timed(&[
        "--timeout",
        "30",
        "--cwd",
        dir.path().to_str().unwrap(),
        "--stdout",
        out.to_str().unwrap(),
        "--env",
        "ONLY=this",
        "--",
        "/usr/bin/env",
    ]);
    assert!(output.status.success(), "{output:?}");
    assert!(seconds(&output) > 0.0);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "ONLY=this\n");

    let failed = timed(&["--timeout", "30", "--", "/bin/sh", "-c", "exit 3"]);
    assert_eq!(failed.status.code(), Some(3), "{failed:?}");
    seconds(&failed);
}

#[test]
fn a_command_that_outlives_its_timeout_is_stopped_even_if_it_ignores_sigterm() {
    let output = timed(&[
        "--timeout",
        "0.2",
        "--",
        "/bin/sh",
        "-c",
        "trap '' TERM; exec sleep 30",
    ]);
    assert_eq!(output.status.code(), Some(124), "{output:?}");
    let took = seconds(&output);
    assert!((0.2..20.0).contains(&took), "{took}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("ran out of"));
}

#[test]
fn bad_usage_is_refused_with_status_2() {
    for args in [
        &["--", "/bin/true"][..],
        &["--timeout", "-1", "--", "/bin/true"],
        &["--timeout", "5", "--env", "NOEQUALS", "--", "/bin/true"],
        &["--timeout", "5", "--what", "x", "--", "/bin/true"],
        &["--timeout", "5", "--"],
    ] {
        let output = timed(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("usage:"));
    }
}
