//! `cachefill-replay`: the replay servers of [`cachefill_testing`] as a process, for tests
//! and benchmarks written in another language (the Python package's tests drive it from
//! `python/tests/terminal.py`, `scripts/bench-polygon` from bash).
//!
//! ```text
//! cachefill-replay [FIXTURES_FOLDER]      # ThetaData: the recorded exchanges of a folder
//! cachefill-replay --polygon API_KEY      # Polygon: cachefill_testing::polygon::PolygonReplay
//! cachefill-replay --binance              # Binance: cachefill_testing::binance::BinanceReplay
//! cachefill-replay --thetadata-generated  # ThetaData: cachefill_testing::thetadata_gen, any stock and session
//! ```
//!
//! The first form serves the recorded exchanges of the folder named (relative to the
//! repository's `tests/fixtures/`; none: nothing recorded). The second serves
//! [`PolygonReplay`] to requests carrying `Authorization: Bearer API_KEY` (its recorded pages
//! and generated aggregates for any ticker and range), and answers
//! `/v3/reference/splits` (any query) with an empty listing, as Polygon does for a ticker
//! without splits: lumibot's `polygon_helper` lists a ticker's splits once a day when its
//! file exists. The third serves [`BinanceReplay`]: `GET /api/v3/aggTrades` for any symbol
//! (generated trades and the recordings of `tests/fixtures/binance/`), with Binance's request
//! weight, 429s and 418s. The fourth serves [`thetadata_gen`]: generated minute OHLC for any
//! stock and session (`/v3/stock/history/ohlc`, by `date` or `start_date`/`end_date`), the
//! corporate-action lookups answered "no events"; `scripts/bench-vs-lumibot` drives it.
//!
//! Either way it serves on a free loopback port, prints
//! `{"base_url": "http://127.0.0.1:PORT"}` as its first line, then reads one JSON command a
//! line from standard input and answers each with one JSON line (`{"ok": true, ...}` or
//! `{"ok": false, "error": "..."}`):
//!
//! | command | what it does |
//! |---|---|
//! | `{"op":"serve","path":P,"body":S[,"status":N][,"headers":{..}]}` | answer `body` to every request of `P`, any query |
//! | `{"op":"otherwise","status":N,"body":S}` | the answer when nothing else answers (instead of a 404) |
//! | `{"op":"fault","path":P,"status":N[,"body":S][,"times":K][,"retry_after":S]}` | answer this status to `P` (K times, or for good) |
//! | `{"op":"fault","path":P,"kind":"reset"\|"short_body"\|"cut_json"\|"delay"[,"ms":N]}` | the transport faults |
//! | `{"op":"clear_faults"}` | no more faults |
//! | `{"op":"requests"}` | `{"ok":true,"requests":[{"method","path","query":{..}}, ...]}`, in arrival order |
//! | `{"op":"count"[,"prefix":P]}` | `{"ok":true,"count":N}`: requests received so far (whose path starts with `P`) |
//! | `{"op":"reset_log"}` | forget the requests received so far |
//! | `{"op":"list_from","ticker":T,"date":"YYYY-MM-DD"}` | Polygon: no bars for `T` before `date` (its first listing) |
//! | `{"op":"page_size","results":N}` | Polygon: at most `N` results a generated page |
//! | `{"op":"now","ms":N}` | Binance: no trade after epoch millisecond `N` (absent: the system clock) |
//! | `{"op":"weight_budget","budget":N,"window_ms":W}` | Binance: `N` weight per window of `W` ms, from now |
//! | `{"op":"drop_ids","symbol":S,"from":A,"to":B}` | Binance: never serve ids `A..=B` of `S` |
//! | `{"op":"overlap_pages","ids":N}` | Binance: every `fromId` page starts `N` ids early |
//! | `{"op":"weight"}` | Binance: `{"ok":true,"max_used_weight":N,"banned":N}` (418s sent) |
//!
//! The process ends when its standard input closes, so it never outlives the test that
//! started it.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use cachefill_testing::binance::BinanceReplay;
use cachefill_testing::fixtures;
use cachefill_testing::polygon::PolygonReplay;
use cachefill_testing::thetadata::{Fault, ReplayServer, Reply};
use cachefill_testing::thetadata_gen;
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

/// Where Polygon lists splits.
const POLYGON_SPLITS: &str = "/v3/reference/splits";

/// What the process serves.
enum Served {
    ThetaData(ReplayServer),
    Polygon(PolygonReplay),
    Binance(BinanceReplay),
}

impl Served {
    async fn from_args(args: &[String]) -> Result<Served, String> {
        Ok(match args {
            [] => Served::ThetaData(ReplayServer::empty().await.map_err(|e| e.to_string())?),
            [flag, key] if flag == "--polygon" => {
                let replay = PolygonReplay::start(key).await.map_err(|e| e.to_string())?;
                replay.server().respond_under(POLYGON_SPLITS, |_| {
                    Some(Reply::json(
                        r#"{"results":[],"status":"OK","request_id":"replay"}"#,
                    ))
                });
                Served::Polygon(replay)
            }
            [flag, ..] if flag == "--polygon" => {
                return Err("--polygon takes the API key the server requires".into());
            }
            [flag] if flag == "--binance" => {
                Served::Binance(BinanceReplay::start().await.map_err(|e| e.to_string())?)
            }
            [flag, ..] if flag == "--binance" => {
                return Err("--binance takes no argument".into());
            }
            [flag] if flag == "--thetadata-generated" => {
                let server = ReplayServer::empty().await.map_err(|e| e.to_string())?;
                thetadata_gen::serve(&server);
                Served::ThetaData(server)
            }
            [flag, ..] if flag == "--thetadata-generated" => {
                return Err("--thetadata-generated takes no argument".into());
            }
            [folder] => {
                let dir = fixtures::dir(folder).map_err(|e| e.to_string())?;
                Served::ThetaData(ReplayServer::start(dir).await.map_err(|e| e.to_string())?)
            }
            _ => {
                return Err(
                    "give at most one fixtures folder, --polygon API_KEY, --binance or --thetadata-generated"
                        .into(),
                );
            }
        })
    }

    fn server(&self) -> &ReplayServer {
        match self {
            Served::ThetaData(server) => server,
            Served::Polygon(replay) => replay.server(),
            Served::Binance(replay) => replay.server(),
        }
    }

    fn polygon(&self) -> Result<&PolygonReplay, String> {
        match self {
            Served::Polygon(replay) => Ok(replay),
            _ => Err("only the Polygon server (--polygon) has this op".into()),
        }
    }

    fn binance(&self) -> Result<&BinanceReplay, String> {
        match self {
            Served::Binance(replay) => Ok(replay),
            _ => Err("only the Binance server (--binance) has this op".into()),
        }
    }
}

async fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let served = Served::from_args(&args).await?;
    println!("{}", json!({ "base_url": served.server().base_url() }));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
        if line.trim().is_empty() {
            continue;
        }
        let answer = match serde_json::from_str::<Value>(&line) {
            Ok(command) => command_answer(&served, &command),
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

fn command_answer(served: &Served, command: &Value) -> Result<Value, String> {
    let server = served.server();
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
        "count" => {
            let prefix = text("prefix").unwrap_or("");
            let count = server
                .requests()
                .iter()
                .filter(|r| r.path.starts_with(prefix))
                .count();
            Ok(json!({ "count": count }))
        }
        "reset_log" => {
            server.reset_log();
            Ok(Value::Null)
        }
        "list_from" => {
            let ticker = text("ticker").ok_or("the command needs a \"ticker\"")?;
            let date = text("date").ok_or("the command needs a \"date\"")?;
            let date = date
                .parse()
                .map_err(|_| format!("date {date:?} is not YYYY-MM-DD"))?;
            served.polygon()?.list_from(ticker, date);
            Ok(Value::Null)
        }
        "page_size" => {
            let results = number("results").ok_or("the command needs \"results\" (a number)")?;
            served.polygon()?.set_page_size(results as usize);
            Ok(Value::Null)
        }
        "now" => {
            let replay = served.binance()?;
            match command.get("ms").and_then(Value::as_i64) {
                Some(ms) => replay.set_now(ms),
                None => replay.use_system_clock(),
            }
            Ok(Value::Null)
        }
        "weight_budget" => {
            let budget = number("budget").ok_or("the command needs \"budget\" (a number)")?;
            let budget =
                u32::try_from(budget).map_err(|_| format!("budget {budget} is too large"))?;
            let window = number("window_ms").unwrap_or(60_000);
            served
                .binance()?
                .set_weight_budget(budget, Duration::from_millis(window));
            Ok(Value::Null)
        }
        "drop_ids" => {
            let symbol = text("symbol").ok_or("the command needs a \"symbol\"")?;
            let id = |name: &str| {
                command
                    .get(name)
                    .and_then(Value::as_i64)
                    .ok_or(format!("the command needs \"{name}\" (an id)"))
            };
            served.binance()?.drop_ids(symbol, id("from")?..=id("to")?);
            Ok(Value::Null)
        }
        "overlap_pages" => {
            let ids = command.get("ids").and_then(Value::as_i64);
            served
                .binance()?
                .overlap_pages(ids.ok_or("the command needs \"ids\" (a number)")?);
            Ok(Value::Null)
        }
        "weight" => {
            let replay = served.binance()?;
            Ok(json!({ "max_used_weight": replay.max_used_weight(), "banned": replay.banned() }))
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
