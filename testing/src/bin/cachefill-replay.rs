//! `cachefill-replay`: the replay server of [`cachefill_testing::thetadata`] as a process, for
//! tests written in another language (the Python package's tests drive it from
//! `python/tests/terminal.py`).
//!
//! ```text
//! cachefill-replay [FIXTURES_FOLDER ...]
//! ```
//!
//! Serves the recorded exchanges of each folder named (relative to the repository's
//! `tests/fixtures/`) on a free loopback port, prints `{"base_url": "http://127.0.0.1:PORT"}`
//! as its first line, then reads one JSON command a line from standard input and answers
//! each with one JSON line (`{"ok": true, ...}` or `{"ok": false, "error": "..."}`):
//!
//! | command | what it does |
//! |---|---|
//! | `{"op":"serve","path":P,"body":S[,"status":N][,"headers":{..}]}` | answer `body` to every request of `P`, any query |
//! | `{"op":"otherwise","status":N,"body":S}` | the answer when nothing else answers (instead of a 404) |
//! | `{"op":"fault","path":P,"status":N[,"body":S][,"times":K][,"retry_after":S]}` | answer this status to `P` (K times, or for good) |
//! | `{"op":"fault","path":P,"kind":"reset"\|"short_body"\|"cut_json"\|"delay"[,"ms":N]}` | the transport faults |
//! | `{"op":"clear_faults"}` | no more faults |
//! | `{"op":"requests"}` | `{"ok":true,"requests":[{"method","path","query":{..}}, ...]}`, in arrival order |
//!
//! The process ends when its standard input closes, so it never outlives the test that
//! started it.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use cachefill_testing::fixtures;
use cachefill_testing::thetadata::{Fault, ReplayServer, Reply};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("cachefill-replay: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let folders: Vec<String> = std::env::args().skip(1).collect();
    let server = match folders.as_slice() {
        [] => ReplayServer::empty().await.map_err(|e| e.to_string())?,
        [folder] => {
            let dir = fixtures::dir(folder).map_err(|e| e.to_string())?;
            ReplayServer::start(dir).await.map_err(|e| e.to_string())?
        }
        _ => return Err("give at most one fixtures folder".into()),
    };
    println!("{}", json!({ "base_url": server.base_url() }));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
        if line.trim().is_empty() {
            continue;
        }
        let answer = match serde_json::from_str::<Value>(&line) {
            Ok(command) => command_answer(&server, &command),
            Err(e) => Err(format!("not JSON: {e}")),
        };
        let answer = match answer {
            Ok(Value::Object(mut fields)) => {
                fields.insert("ok".into(), Value::Bool(true));
                Value::Object(fields)
            }
            Ok(_) => json!({ "ok": true }),
            Err(error) => json!({ "ok": false, "error": error }),
        };
        println!("{answer}");
    }
    Ok(())
}

fn command_answer(server: &ReplayServer, command: &Value) -> Result<Value, String> {
    let text = |name: &str| command.get(name).and_then(Value::as_str);
    let number = |name: &str| command.get(name).and_then(Value::as_u64);
    let path = || text("path").ok_or("the command needs a \"path\"");
    let status = || -> Result<u16, String> {
        let status = number("status").unwrap_or(200);
        u16::try_from(status).map_err(|_| format!("status {status} is not an HTTP status"))
    };
    match text("op").ok_or("the command needs an \"op\"")? {
        "serve" => {
            let reply = reply_of(command, status()?)?;
            server.respond_with(path()?, move |_| Some(reply.clone()));
            Ok(Value::Null)
        }
        "otherwise" => {
            server.otherwise(reply_of(command, status()?)?);
            Ok(Value::Null)
        }
        "fault" => {
            let fault = match text("kind").unwrap_or("status") {
                "status" => {
                    let body = text("body").unwrap_or("injected fault");
                    match text("retry_after") {
                        Some(after) => Fault::status_retry_after(status()?, body, after),
                        None => Fault::status(status()?, body),
                    }
                }
                "reset" => Fault::Reset,
                "short_body" => Fault::ShortBody,
                "cut_json" => Fault::CutJson,
                "delay" => Fault::Delay(Duration::from_millis(number("ms").unwrap_or(1000))),
                other => return Err(format!("unknown fault kind {other:?}")),
            };
            let times = number("times").map(|n| n as usize);
            server.inject_route(path()?, None, times, fault);
            Ok(Value::Null)
        }
        "clear_faults" => {
            server.clear_faults();
            Ok(Value::Null)
        }
        "requests" => {
            let requests: Vec<Value> = server
                .requests()
                .into_iter()
                .map(|r| {
                    let query: BTreeMap<String, String> = r.raw_query.into_iter().collect();
                    json!({ "method": r.method, "path": r.path, "query": query })
                })
                .collect();
            Ok(json!({ "requests": requests }))
        }
        other => Err(format!("unknown op {other:?}")),
    }
}

/// The reply a `serve` or `otherwise` command describes.
fn reply_of(command: &Value, status: u16) -> Result<Reply, String> {
    let body = command
        .get("body")
        .and_then(Value::as_str)
        .ok_or("the command needs a \"body\" (text)")?;
    let mut reply = if status == 200 {
        Reply::json(body.to_string())
    } else {
        Reply::text(status, body)
    };
    if let Some(headers) = command.get("headers").and_then(Value::as_object) {
        for (name, value) in headers {
            let value = value.as_str().ok_or("header values are text")?;
            reply = if name.eq_ignore_ascii_case("content-type") {
                reply.with_content_type(value)
            } else {
                reply.with_header(name, value)
            };
        }
    }
    Ok(reply)
}
