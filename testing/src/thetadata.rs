//! A stand-in ThetaData terminal for tests: a real HTTP/1.1 server on `127.0.0.1:0` that
//! replays recorded exchanges and injects faults.
//!
//! - **Recorded exchanges**: every `*.json` of a fixtures folder (`{"request": {"url",
//!   "queryParams"}, "response": {"status", "headers", "body", "rawText"}}`) is served for
//!   its path and query. Queries match as sets after normalization: dates with or without
//!   dashes (`2024-11-15` = `20241115`), `right` as `C`/`CALL`/`call`, strikes by value
//!   (`275` = `275.000`), symbols in any case, and `start_time=09:30:00` /
//!   `end_time=16:00:00` (the terminal's defaults) the same as absent.
//! - **Registered replies** ([`ReplayServer::register`], [`ReplayServer::respond_with`], and
//!   [`ReplayServer::respond_under`] for every path under a prefix, seeing the whole request)
//!   win over recordings; tests use them to present data in other shapes or to synthesize
//!   sessions that were never recorded. Anything else gets a 404 naming the request.
//! - **A required header** ([`ReplayServer::require_header`]): requests without it get the
//!   given refusal instead (a 401 for a missing API key).
//! - **Faults** ([`Fault`]) for the next N requests or for a route: any status and body
//!   (with `Retry-After` if wanted), a delay, a body shorter than its `Content-Length`, a
//!   JSON body cut in half, or a TCP reset instead of an answer.
//! - Every request is logged ([`ReplayServer::requests`], [`ReplayServer::count`]) and
//!   the most requests ever in flight at once is kept ([`ReplayServer::max_in_flight`]).
//!
//! The server is written on plain tokio sockets rather than a web framework because the
//! faults live below HTTP: a lying `Content-Length` and an abortive close are exactly what a
//! framework refuses to produce. Every answer closes its connection, so request counts are
//! exact.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use cachefill_core::providers::thetadata::request::format_strike;

use crate::fixtures::{self, FixturesMissing};

/// A normalized query: parameter name → normalized value.
pub type Query = BTreeMap<String, String>;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    FixturesMissing(#[from] FixturesMissing),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a recorded exchange: {reason}")]
    Fixture { path: PathBuf, reason: String },
}

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    /// Extra headers (`Retry-After`, …).
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Reply {
    /// 200 with a JSON body.
    pub fn json(body: impl Into<Bytes>) -> Self {
        Reply {
            status: 200,
            content_type: "application/json".into(),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Any status with a plain-text body, as the terminal sends its errors.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Reply {
            status,
            content_type: "text/plain".into(),
            headers: Vec::new(),
            body: Bytes::from(body.into()),
        }
    }

    /// The terminal's 472: nothing for this request.
    pub fn no_data() -> Self {
        Reply::text(472, "No data for the specified timeframe & contract.")
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn with_content_type(mut self, content_type: &str) -> Self {
        self.content_type = content_type.to_string();
        self
    }
}

/// One recorded request and its answer.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub path: String,
    pub query: Query,
    pub reply: Reply,
}

impl Exchange {
    /// Read one recorded exchange file.
    pub fn load(file: &Path) -> Result<Exchange, ReplayError> {
        let text = std::fs::read(file).map_err(|source| ReplayError::Io {
            path: file.to_path_buf(),
            source,
        })?;
        let bad = |reason: String| ReplayError::Fixture {
            path: file.to_path_buf(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        let url = value["request"]["url"]
            .as_str()
            .ok_or_else(|| bad("no request.url".into()))?;
        let url = reqwest::Url::parse(url).map_err(|e| bad(format!("request.url: {e}")))?;
        let mut pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if let Some(params) = value["request"]["queryParams"].as_object() {
            pairs = params
                .iter()
                .map(|(k, v)| {
                    let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                    (k.clone(), v)
                })
                .collect();
        }
        let response = &value["response"];
        let status = response["status"]
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .ok_or_else(|| bad("no response.status".into()))?;
        let body = match (&response["rawText"], &response["body"]) {
            (serde_json::Value::String(raw), _) => Bytes::from(raw.clone()),
            (_, serde_json::Value::String(text)) => Bytes::from(text.clone()),
            (_, serde_json::Value::Null) => Bytes::new(),
            (_, json) => Bytes::from(serde_json::to_vec(json).expect("a JSON value serializes")),
        };
        let content_type = response["headers"]["content-type"]
            .as_str()
            .unwrap_or(if body.first() == Some(&b'{') {
                "application/json"
            } else {
                "text/plain"
            })
            .to_string();
        Ok(Exchange {
            path: url.path().to_string(),
            query: normalize_query(pairs),
            reply: Reply {
                status,
                content_type,
                headers: Vec::new(),
                body,
            },
        })
    }
}

/// Normalize a query so equivalent spellings compare equal (see the module docs).
pub fn normalize_query<K: AsRef<str>, V: AsRef<str>>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> Query {
    let mut out = Query::new();
    for (name, value) in pairs {
        let name = name.as_ref().to_string();
        let value = value.as_ref().trim();
        let normalized = match name.as_str() {
            "date" | "start_date" | "end_date" | "expiration" => value.replace('-', ""),
            "right" => match value.to_ascii_lowercase().as_str() {
                "c" | "call" => "call".to_string(),
                "p" | "put" => "put".to_string(),
                other => other.to_string(),
            },
            "strike" => value
                .parse::<f64>()
                .map_or_else(|_| value.to_string(), format_strike),
            "symbol" | "root" => value.to_ascii_uppercase(),
            "format" => value.to_ascii_lowercase(),
            "start_time" | "end_time" => {
                let padded = if value.len() == 5 {
                    format!("{value}:00")
                } else {
                    value.trim_end_matches(".000").to_string()
                };
                let default = if name == "start_time" {
                    "09:30:00"
                } else {
                    "16:00:00"
                };
                if padded == default {
                    continue;
                }
                padded
            }
            _ => value.to_string(),
        };
        out.insert(name, normalized);
    }
    out
}

/// Something to do instead of (or before) answering normally.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer this instead.
    Reply(Reply),
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// Send the answer's headers with its full `Content-Length`, then half the body, then
    /// close the connection.
    ShortBody,
    /// Send the first half of the body with a matching `Content-Length`: a complete HTTP
    /// message whose JSON is cut.
    CutJson,
    /// Close the connection with a TCP reset instead of answering.
    Reset,
}

impl Fault {
    /// Answer `status` with a plain-text `body`.
    pub fn status(status: u16, body: &str) -> Fault {
        Fault::Reply(Reply::text(status, body))
    }

    /// Answer `status` with a `Retry-After` header.
    pub fn status_retry_after(status: u16, body: &str, retry_after: &str) -> Fault {
        Fault::Reply(Reply::text(status, body).with_header("Retry-After", retry_after))
    }
}

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Received {
    /// `GET` or `POST` (a POST's body is read and dropped).
    pub method: String,
    pub path: String,
    /// Normalized (see the module docs).
    pub query: Query,
    /// As sent, in order.
    pub raw_query: Vec<(String, String)>,
    /// As sent, in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    pub at: Instant,
}

impl Received {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of query parameter `name` as sent.
    pub fn raw_param(&self, name: &str) -> Option<&str> {
        self.raw_query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

type Responder = Arc<dyn Fn(&Received) -> Option<Reply> + Send + Sync>;

/// Which paths a responder answers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Exact(String),
    Under(String),
}

impl Route {
    fn matches(&self, path: &str) -> bool {
        match self {
            Route::Exact(p) => p == path,
            Route::Under(prefix) => path.starts_with(prefix.as_str()),
        }
    }
}

/// A header every request must carry, and the answer to those that do not.
#[derive(Debug, Clone)]
struct Required {
    name: String,
    value: String,
    refusal: Reply,
}

#[derive(Debug)]
struct Injection {
    /// `None`: any request; `Some((path, None))`: any query on that path.
    route: Option<(String, Option<Query>)>,
    /// Requests left to fault; `None`: all.
    remaining: Option<usize>,
    fault: Fault,
}

impl Injection {
    fn applies(&self, path: &str, query: &Query) -> bool {
        self.remaining != Some(0)
            && match &self.route {
                None => true,
                Some((p, q)) => p == path && q.as_ref().is_none_or(|q| q == query),
            }
    }
}

#[derive(Default)]
struct State {
    recorded: HashMap<(String, Query), Reply>,
    registered: HashMap<(String, Query), Reply>,
    responders: Vec<(Route, Responder)>,
    required: Option<Required>,
    faults: Vec<Injection>,
    /// The answer when nothing is recorded or registered; `None`: a 404 naming the request.
    otherwise: Option<Reply>,
    log: Vec<Received>,
}

impl State {
    /// The fault for this request (consuming one use), then the answer.
    fn decide(&mut self, request: &Received) -> (Option<Fault>, Reply) {
        let (path, query) = (request.path.as_str(), &request.query);
        let fault = self
            .faults
            .iter_mut()
            .find(|f| f.applies(path, query))
            .map(|f| {
                if let Some(n) = &mut f.remaining {
                    *n -= 1;
                }
                f.fault.clone()
            });
        self.faults.retain(|f| f.remaining != Some(0));
        if let Some(required) = &self.required
            && request.header(&required.name) != Some(required.value.as_str())
        {
            return (fault, required.refusal.clone());
        }
        let key = (path.to_string(), query.clone());
        let reply = self
            .registered
            .get(&key)
            .cloned()
            .or_else(|| {
                self.responders
                    .iter()
                    .rev()
                    .filter(|(route, _)| route.matches(path))
                    .find_map(|(_, responder)| responder(request))
            })
            .or_else(|| self.recorded.get(&key).cloned())
            .or_else(|| self.otherwise.clone())
            .unwrap_or_else(|| {
                let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
                Reply::text(
                    404,
                    format!(
                        "replay server: nothing recorded or registered for {path}?{}",
                        query.join("&")
                    ),
                )
            });
        (fault, reply)
    }
}

struct Shared {
    state: Mutex<State>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The stand-in terminal (see the module docs). Stops when dropped.
pub struct ReplayServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl std::fmt::Debug for ReplayServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Drop for ReplayServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl ReplayServer {
    /// Serve every recorded exchange in `fixtures_dir`.
    pub async fn start(fixtures_dir: impl AsRef<Path>) -> Result<ReplayServer, ReplayError> {
        let dir = fixtures_dir.as_ref();
        if !dir.is_dir() {
            return Err(FixturesMissing(dir.to_path_buf()).into());
        }
        let io = |source| ReplayError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut recorded = HashMap::new();
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for file in files {
            let exchange = Exchange::load(&file)?;
            recorded.insert((exchange.path, exchange.query), exchange.reply);
        }
        Self::serve(State {
            recorded,
            ..Default::default()
        })
        .await
        .map_err(io)
    }

    /// Serve the recorded ThetaData v3 exchanges of the repository's fixtures.
    pub async fn thetadata() -> Result<ReplayServer, ReplayError> {
        Self::start(fixtures::dir("thetadata-v3")?).await
    }

    /// A server with nothing recorded.
    pub async fn empty() -> std::io::Result<ReplayServer> {
        Self::serve(State::default()).await
    }

    async fn serve(state: State) -> std::io::Result<ReplayServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let serving = shared.clone();
        let accept = tokio::spawn(async move {
            // Connections live in the set, so stopping the server stops them too.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        if let Ok((stream, _)) = accepted {
                            connections.spawn(handle(stream, serving.clone()));
                        }
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Ok(ReplayServer {
            addr,
            shared,
            accept,
        })
    }

    /// `http://127.0.0.1:<port>`: the terminal's base URL (paths start with `/v3`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer `reply` to GET `path` with this query (normalized, see the module docs).
    pub fn register(&self, path: &str, query: &[(&str, &str)], reply: Reply) {
        self.shared.state().registered.insert(
            (path.to_string(), normalize_query(query.iter().copied())),
            reply,
        );
    }

    /// Answer GETs of `path` with what `responder` makes of their query (`None`: not mine).
    /// The responder registered last is asked first, so a test can change its answer.
    pub fn respond_with(
        &self,
        path: &str,
        responder: impl Fn(&Query) -> Option<Reply> + Send + Sync + 'static,
    ) {
        self.shared.state().responders.push((
            Route::Exact(path.to_string()),
            Arc::new(move |request: &Received| responder(&request.query)),
        ));
    }

    /// Answer requests of every path starting with `prefix` with what `responder` makes of
    /// the whole request (path, query, headers; `None`: not mine). Asked in the same
    /// last-registered-first order as [`ReplayServer::respond_with`].
    pub fn respond_under(
        &self,
        prefix: &str,
        responder: impl Fn(&Received) -> Option<Reply> + Send + Sync + 'static,
    ) {
        self.shared
            .state()
            .responders
            .push((Route::Under(prefix.to_string()), Arc::new(responder)));
    }

    /// Answer `refusal` to every request whose header `name` is not exactly `value`
    /// (faults still apply first).
    pub fn require_header(&self, name: &str, value: &str, refusal: Reply) {
        self.shared.state().required = Some(Required {
            name: name.to_string(),
            value: value.to_string(),
            refusal,
        });
    }

    /// Answer `reply` to every request nothing recorded or registered answers (instead of a
    /// 404 naming the request).
    pub fn otherwise(&self, reply: Reply) {
        self.shared.state().otherwise = Some(reply);
    }

    /// Apply `fault` to the next `n` requests, whatever they ask.
    pub fn inject_next(&self, n: usize, fault: Fault) {
        self.shared.state().faults.push(Injection {
            route: None,
            remaining: Some(n),
            fault,
        });
    }

    /// Apply `fault` to requests of `path` (with this query, or any query when `None`),
    /// `times` times or for good.
    pub fn inject_route(
        &self,
        path: &str,
        query: Option<&[(&str, &str)]>,
        times: Option<usize>,
        fault: Fault,
    ) {
        self.shared.state().faults.push(Injection {
            route: Some((
                path.to_string(),
                query.map(|q| normalize_query(q.iter().copied())),
            )),
            remaining: times,
            fault,
        });
    }

    pub fn clear_faults(&self) {
        self.shared.state().faults.clear();
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        self.shared.state().log.clone()
    }

    /// Requests received for `path`, any query.
    pub fn count(&self, path: &str) -> usize {
        self.shared
            .state()
            .log
            .iter()
            .filter(|r| r.path == path)
            .count()
    }

    /// Requests received for `path` with this query (normalized).
    pub fn count_query(&self, path: &str, query: &[(&str, &str)]) -> usize {
        let query = normalize_query(query.iter().copied());
        self.shared
            .state()
            .log
            .iter()
            .filter(|r| r.path == path && r.query == query)
            .count()
    }

    /// Forget the requests received so far.
    pub fn reset_log(&self) {
        self.shared.state().log.clear();
    }

    /// The most requests that were ever being answered at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }
}

/// Counts a request as in flight until dropped.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a request's head says: method, target and headers (names lower-cased).
type Head = (String, String, Vec<(String, String)>);

/// Read a request (its head, and the body its `Content-Length` announces, which is dropped):
/// its method, target and headers; `None` when the client went away or sent something else
/// than a GET or a POST.
async fn read_request(stream: &mut TcpStream) -> Option<Head> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    let end = loop {
        if let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if head.len() > 64 * 1024 {
            return None;
        }
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    };
    let text = std::str::from_utf8(&head[..end]).ok()?;
    let headers: Vec<(String, String)> = text
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let content_length: usize = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    // Drain the body: closing with unread bytes would turn the answer into a reset.
    let mut left = content_length.saturating_sub(head.len() - end);
    while left > 0 {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        left = left.saturating_sub(n);
    }
    let mut parts = text.lines().next()?.split(' ');
    match (parts.next(), parts.next()) {
        (Some(method @ ("GET" | "POST")), Some(target)) => {
            Some((method.to_string(), target.to_string(), headers))
        }
        _ => None,
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        471 => "PERMISSION",
        472 => "NO_DATA",
        474 => "DISCONNECTED",
        570 => "LARGE_REQUEST",
        571 => "SERVER_STARTING",
        other => reqwest::StatusCode::from_u16(other)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("Status"),
    }
}

fn head(reply: &Reply, content_length: usize) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reason_phrase(reply.status),
        reply.content_type,
        content_length
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

async fn handle(mut stream: TcpStream, shared: Arc<Shared>) {
    let Some((method, target, headers)) = read_request(&mut stream).await else {
        return;
    };
    let _in_flight = InFlight::enter(&shared);
    let url = reqwest::Url::parse(&format!("http://replay{target}"));
    let (path, raw_query) = match &url {
        Ok(url) => (
            url.path().to_string(),
            url.query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ),
        Err(_) => (target.clone(), Vec::new()),
    };
    let query = normalize_query(raw_query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let request = Received {
        method,
        path,
        query,
        raw_query,
        headers,
        at: Instant::now(),
    };
    let (fault, reply) = {
        let mut state = shared.state();
        let decided = state.decide(&request);
        state.log.push(request);
        decided
    };
    let half = reply.body.len() / 2;
    let (head_bytes, body) = match fault {
        None => (head(&reply, reply.body.len()), reply.body.clone()),
        Some(Fault::Reply(other)) => (head(&other, other.body.len()), other.body),
        Some(Fault::Delay(wait)) => {
            tokio::time::sleep(wait).await;
            (head(&reply, reply.body.len()), reply.body.clone())
        }
        Some(Fault::ShortBody) => (head(&reply, reply.body.len()), reply.body.slice(..half)),
        Some(Fault::CutJson) => (head(&reply, half), reply.body.slice(..half)),
        Some(Fault::Reset) => {
            // SO_LINGER 0 turns the close into a reset.
            let _ = stream.set_zero_linger();
            drop(stream);
            return;
        }
    };
    if stream.write_all(&head_bytes).await.is_err() || stream.write_all(&body).await.is_err() {
        return;
    }
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_post_is_answered_after_its_body_is_read_and_otherwise_replaces_the_404() {
        let server = ReplayServer::empty().await.expect("server");
        let url = |path: &str| format!("{}{path}", server.base_url());
        let http = reqwest::Client::new();
        let missing = http.get(url("/nowhere")).send().await.expect("answer");
        assert_eq!(missing.status(), 404);
        server.register("/invoke", &[], Reply::json("{\"ok\":1}"));
        // A body larger than one read, so the server must drain it before answering.
        let posted = http
            .post(url("/invoke"))
            .body(vec![b'x'; 300_000])
            .send()
            .await
            .expect("answer");
        assert_eq!(posted.status(), 200);
        assert_eq!(posted.text().await.expect("body"), "{\"ok\":1}");
        server.otherwise(Reply::no_data());
        let other = http.get(url("/nowhere")).send().await.expect("answer");
        assert_eq!(other.status(), 472);
        let methods: Vec<String> = server.requests().into_iter().map(|r| r.method).collect();
        assert_eq!(methods, ["GET", "POST", "GET"]);
    }

    #[tokio::test]
    async fn prefix_responders_see_headers_and_a_required_header_gates_every_request() {
        let server = ReplayServer::empty().await.expect("server");
        let url = |path: &str| format!("{}{path}", server.base_url());
        let http = reqwest::Client::new();
        server.respond_under("/v2/", |request| {
            Some(Reply::json(format!(
                "{{\"path\":\"{}\",\"who\":\"{}\"}}",
                request.path,
                request.header("X-Who").unwrap_or("")
            )))
        });
        let answer = http
            .get(url("/v2/aggs/ticker/A"))
            .header("x-who", "me")
            .send()
            .await
            .expect("answer");
        assert_eq!(
            answer.text().await.expect("body"),
            r#"{"path":"/v2/aggs/ticker/A","who":"me"}"#
        );
        assert_eq!(
            http.get(url("/v3/other"))
                .send()
                .await
                .expect("answer")
                .status(),
            404
        );

        server.require_header("authorization", "Bearer k", Reply::text(401, "no key"));
        let refused = http.get(url("/v2/x")).send().await.expect("answer");
        assert_eq!(refused.status(), 401);
        let wrong = http
            .get(url("/v2/x"))
            .header("Authorization", "Bearer nope")
            .send()
            .await
            .expect("answer");
        assert_eq!(wrong.status(), 401);
        let allowed = http
            .get(url("/v2/x"))
            .header("Authorization", "Bearer k")
            .send()
            .await
            .expect("answer");
        assert_eq!(allowed.status(), 200);
        let logged = server.requests();
        assert_eq!(logged.len(), 5);
        assert_eq!(logged[4].header("authorization"), Some("Bearer k"));
    }
}
