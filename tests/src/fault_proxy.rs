//! A misbehaving S3: an HTTP proxy in front of moto that answers some S3 requests the way a
//! struggling S3 does, so that the functions' handling of transient storage faults runs end
//! to end.
//!
//! Each request is classified ([`RequestKind`]: GET, HEAD, PUT, conditional PUT, copy,
//! delete, list, tagging…); a seeded RNG then decides, at the [`FaultPlan`]'s rate, whether it
//! gets one of the faults its kind is configured for ([`Fault`]):
//!
//! - `SlowDown`: 503 with S3's XML error body; the request never reaches moto.
//! - `InternalError`: 500 with S3's XML error body; the request never reaches moto.
//! - `ResetMidBody`: the request is forwarded (so it takes effect), then the answer is cut:
//!   the headers and half of the body, or half of the headers when there is no body, and the
//!   connection is closed. A PUT whose answer is lost this way is what an SDK retries into a
//!   412.
//! - `Latency`: forwarded after [`FaultPlan::latency`].
//! - `Race412` (conditional PUTs only): before forwarding, the proxy writes the same key
//!   directly to moto, unconditionally, with the request's own body (a peer that wrote the
//!   same thing first), so that moto itself answers the conditional PUT with 412. A lease
//!   (`…/_leases/…`) is raced with an expired lease of another owner instead: a peer that took
//!   the lease and died.
//!
//! SQS (`X-Amz-Target`, `Action=`, a credential scope other than `s3`), moto's own API and
//! bucket-level S3 calls pass through unfaulted. Every request and every fault is counted by
//! kind ([`FaultStats`]).

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::error::{Result, StackError};

/// The longest request head the proxy reads.
const MAX_HEAD: usize = 64 * 1024;
/// The body of the lease a [`Fault::Race412`] writes over a lease: another owner's, expired.
const EXPIRED_LEASE: &str = r#"{"owner":"fault-proxy-peer","expires_at":"2000-01-01T00:00:00Z"}"#;

/// What an S3 request asks for, as far as faults are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RequestKind {
    GetObject,
    HeadObject,
    PutObject,
    /// A PUT with `If-Match` or `If-None-Match`.
    ConditionalPut,
    CopyObject,
    DeleteObject,
    ListObjects,
    ListVersions,
    GetTagging,
    PutTagging,
    /// Bucket configuration and anything else S3 (never faulted).
    OtherS3,
    /// SQS, moto's own API, anything that is not S3 (never faulted).
    NotS3,
}

impl RequestKind {
    /// The kinds a [`FaultPlan::campaign`] faults.
    pub const OBJECT_KINDS: [RequestKind; 10] = [
        RequestKind::GetObject,
        RequestKind::HeadObject,
        RequestKind::PutObject,
        RequestKind::ConditionalPut,
        RequestKind::CopyObject,
        RequestKind::DeleteObject,
        RequestKind::ListObjects,
        RequestKind::ListVersions,
        RequestKind::GetTagging,
        RequestKind::PutTagging,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RequestKind::GetObject => "GET object",
            RequestKind::HeadObject => "HEAD object",
            RequestKind::PutObject => "PUT object",
            RequestKind::ConditionalPut => "conditional PUT",
            RequestKind::CopyObject => "copy",
            RequestKind::DeleteObject => "delete",
            RequestKind::ListObjects => "list",
            RequestKind::ListVersions => "list versions",
            RequestKind::GetTagging => "get tagging",
            RequestKind::PutTagging => "put tagging",
            RequestKind::OtherS3 => "other S3",
            RequestKind::NotS3 => "not S3",
        }
    }

    pub fn is_s3(self) -> bool {
        self != RequestKind::NotS3
    }
}

impl fmt::Display for RequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A misbehaviour of S3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// 503 `SlowDown`.
    SlowDown,
    /// 500 `InternalError`.
    InternalError,
    /// The request takes effect; its answer is cut short and the connection closed.
    ResetMidBody,
    /// The answer comes [`FaultPlan::latency`] late.
    Latency,
    /// A competing write lands first, so moto answers the conditional PUT with 412.
    Race412,
}

impl Fault {
    pub const ALL: [Fault; 5] = [
        Fault::SlowDown,
        Fault::InternalError,
        Fault::ResetMidBody,
        Fault::Latency,
        Fault::Race412,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::SlowDown => "503 SlowDown",
            Fault::InternalError => "500 InternalError",
            Fault::ResetMidBody => "reset mid-body",
            Fault::Latency => "latency",
            Fault::Race412 => "412 race",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which requests get which faults, how often, from which seed.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    pub seed: u64,
    /// The chance that a request of a configured kind gets a fault (0 to 1).
    pub rate: f64,
    /// The delay of [`Fault::Latency`].
    pub latency: Duration,
    /// The faults each kind may get, one chosen uniformly per faulted request; kinds not
    /// named pass unfaulted.
    pub faults: BTreeMap<RequestKind, Vec<Fault>>,
}

impl FaultPlan {
    /// Every object-level S3 request faulted at `rate`, with any fault that fits its kind.
    pub fn campaign(seed: u64, rate: f64) -> Self {
        let faults = RequestKind::OBJECT_KINDS
            .into_iter()
            .map(|kind| {
                let fitting = Fault::ALL
                    .into_iter()
                    .filter(|f| *f != Fault::Race412 || kind == RequestKind::ConditionalPut)
                    .collect();
                (kind, fitting)
            })
            .collect();
        FaultPlan {
            seed,
            rate,
            latency: Duration::from_millis(150),
            faults,
        }
    }

    /// Every request of `kind` gets `fault`; nothing else is faulted.
    pub fn always(kind: RequestKind, fault: Fault) -> Self {
        FaultPlan {
            seed: 0,
            rate: 1.0,
            latency: Duration::from_millis(150),
            faults: BTreeMap::from([(kind, vec![fault])]),
        }
    }
}

/// Requests seen and faults injected, by kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultStats {
    pub requests: BTreeMap<RequestKind, u64>,
    pub faults: BTreeMap<(RequestKind, Fault), u64>,
    /// [`Fault::Race412`]s whose competing write did not make moto refuse the conditional
    /// PUT (the PUT carried the bytes already there); not counted as faults.
    pub races_missed: u64,
}

impl FaultStats {
    /// S3 requests seen (every kind but [`RequestKind::NotS3`]).
    pub fn s3_requests(&self) -> u64 {
        self.requests
            .iter()
            .filter(|(kind, _)| kind.is_s3())
            .map(|(_, n)| n)
            .sum()
    }

    pub fn requests_of(&self, kind: RequestKind) -> u64 {
        self.requests.get(&kind).copied().unwrap_or(0)
    }

    pub fn total_faults(&self) -> u64 {
        self.faults.values().sum()
    }

    /// Faults of one kind, over every request kind.
    pub fn faults_of(&self, fault: Fault) -> u64 {
        self.faults
            .iter()
            .filter(|((_, f), _)| *f == fault)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn faults_on(&self, kind: RequestKind, fault: Fault) -> u64 {
        self.faults.get(&(kind, fault)).copied().unwrap_or(0)
    }

    /// One row per request kind: requests, then faults of each kind.
    pub fn table(&self) -> String {
        let mut out = format!("{:<16} {:>8}", "request kind", "requests");
        for fault in Fault::ALL {
            out.push_str(&format!(" {:>17}", fault.name()));
        }
        out.push('\n');
        for (kind, requests) in &self.requests {
            out.push_str(&format!("{:<16} {requests:>8}", kind.name()));
            for fault in Fault::ALL {
                out.push_str(&format!(" {:>17}", self.faults_on(*kind, fault)));
            }
            out.push('\n');
        }
        out.push_str(&format!("{:<16} {:>8}", "all S3", self.s3_requests()));
        for fault in Fault::ALL {
            out.push_str(&format!(" {:>17}", self.faults_of(fault)));
        }
        out
    }
}

/// Name the kind of a request from its method, target, headers and body.
pub fn classify(
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> RequestKind {
    let header = |name: &str| header_value(headers, name);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').map_or(p, |(k, _)| k))
        .collect();
    let form =
        header("content-type").is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let scope_not_s3 = header("authorization")
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split([',', ' ']).next())
        .and_then(|c| c.split('/').nth(3))
        .is_some_and(|service| service != "s3");
    if header("x-amz-target").is_some()
        || path.starts_with("/moto-api")
        || params.contains(&"Action")
        || (form && (body.starts_with(b"Action=") || contains(body, b"&Action=")))
        || scope_not_s3
    {
        return RequestKind::NotS3;
    }
    let path = path.trim_start_matches('/');
    let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
    if bucket.is_empty() {
        return RequestKind::OtherS3;
    }
    let has = |name: &str| params.contains(&name);
    if key.is_empty() {
        const LISTING: [&str; 9] = [
            "list-type",
            "prefix",
            "delimiter",
            "marker",
            "max-keys",
            "encoding-type",
            "continuation-token",
            "start-after",
            "fetch-owner",
        ];
        return match method {
            "GET" if has("versions") => RequestKind::ListVersions,
            "GET" if params.iter().all(|p| LISTING.contains(p) || *p == "x-id") => {
                RequestKind::ListObjects
            }
            _ => RequestKind::OtherS3,
        };
    }
    if has("tagging") {
        return match method {
            "GET" => RequestKind::GetTagging,
            "PUT" => RequestKind::PutTagging,
            _ => RequestKind::OtherS3,
        };
    }
    if has("uploads") || has("uploadId") || has("acl") || has("retention") {
        return RequestKind::OtherS3;
    }
    match method {
        "GET" => RequestKind::GetObject,
        "HEAD" => RequestKind::HeadObject,
        "DELETE" => RequestKind::DeleteObject,
        "PUT" if header("x-amz-copy-source").is_some() => RequestKind::CopyObject,
        "PUT" if header("if-match").is_some() || header("if-none-match").is_some() => {
            RequestKind::ConditionalPut
        }
        "PUT" => RequestKind::PutObject,
        _ => RequestKind::OtherS3,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The proxy, listening on a free loopback port until dropped.
pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("endpoint", &self.endpoint())
            .field("upstream", &self.shared.upstream)
            .finish_non_exhaustive()
    }
}

impl FaultProxy {
    /// Listen on `127.0.0.1:<free port>` and forward to `upstream` (moto's endpoint).
    pub async fn start(upstream: &str, plan: FaultPlan) -> Result<FaultProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| StackError::io("binding the fault proxy", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| StackError::io("reading the fault proxy's port", e))?
            .port();
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| StackError::service("the fault proxy's HTTP client", e))?;
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            rng: Mutex::new(fastrand::Rng::with_seed(plan.seed)),
            plan,
            active: AtomicBool::new(true),
            stats: Mutex::new(FaultStats::default()),
            http,
        });
        let accepting = shared.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            connections.spawn(serve(stream, accepting.clone()));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the fault proxy could not accept");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    },
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Ok(FaultProxy { port, shared, task })
    }

    /// `http://127.0.0.1:<port>`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Inject faults (the default) or pass everything through, still counting requests.
    pub fn set_active(&self, active: bool) {
        self.shared.active.store(active, Ordering::SeqCst);
    }

    pub fn stats(&self) -> FaultStats {
        self.shared.stats.lock().expect("stats lock").clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    upstream: String,
    plan: FaultPlan,
    rng: Mutex<fastrand::Rng>,
    active: AtomicBool,
    stats: Mutex<FaultStats>,
    http: reqwest::Client,
}

/// One request as read from the client.
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

/// What to send back: a whole answer, or bytes after which the connection is closed.
enum Reply {
    Whole(Vec<u8>),
    Cut(Vec<u8>),
}

/// moto's answer to a forwarded request.
struct Upstream {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
}

/// Headers that belong to one connection and are never forwarded as they are.
const HOP_BY_HOP: [&str; 9] = [
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "expect",
    "te",
    "trailer",
    "upgrade",
];

async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let cut = {
        let (read, mut write) = stream.split();
        let mut reader = BufReader::new(read);
        loop {
            let request = match read_request(&mut reader, &mut write).await {
                Ok(Some(request)) => request,
                Ok(None) => break false,
                Err(e) => {
                    tracing::debug!(error = %e, "the fault proxy dropped a connection");
                    break false;
                }
            };
            let (bytes, cut) = match shared.handle(request).await {
                Reply::Whole(bytes) => (bytes, false),
                Reply::Cut(bytes) => (bytes, true),
            };
            if write.write_all(&bytes).await.is_err() || write.flush().await.is_err() {
                break false;
            }
            if cut {
                break true;
            }
        }
    };
    if cut {
        // Closed with the answer unfinished. Not a reset (SO_LINGER 0): on a reset the
        // client's kernel drops what it has not read yet, headers included.
        let _ = stream.shutdown().await;
    }
}

impl Shared {
    async fn handle(&self, request: Request) -> Reply {
        let kind = classify(
            &request.method,
            &request.target,
            &request.headers,
            &request.body,
        );
        let fault = self.choose(kind);
        *self
            .stats
            .lock()
            .expect("stats lock")
            .requests
            .entry(kind)
            .or_default() += 1;
        let head_only = request.method == "HEAD";
        match fault {
            Some(Fault::SlowDown) => {
                self.count(kind, Fault::SlowDown);
                Reply::Whole(s3_error(
                    503,
                    "SlowDown",
                    "Please reduce your request rate.",
                    head_only,
                ))
            }
            Some(Fault::InternalError) => {
                self.count(kind, Fault::InternalError);
                Reply::Whole(s3_error(
                    500,
                    "InternalError",
                    "We encountered an internal error. Please try again.",
                    head_only,
                ))
            }
            Some(Fault::ResetMidBody) => {
                self.count(kind, Fault::ResetMidBody);
                match self.forward(&request).await {
                    Ok(answer) => {
                        let head = answer_head(&answer, head_only);
                        let mut bytes = head.clone();
                        if !head_only && answer.body.len() >= 2 {
                            bytes.extend_from_slice(&answer.body[..answer.body.len() / 2]);
                        } else {
                            bytes.truncate(head.len() / 2);
                        }
                        Reply::Cut(bytes)
                    }
                    Err(e) => bad_gateway(&e),
                }
            }
            Some(Fault::Latency) => {
                self.count(kind, Fault::Latency);
                tokio::time::sleep(self.plan.latency).await;
                self.pass(&request, head_only).await
            }
            Some(Fault::Race412) => {
                if let Err(e) = self.compete(&request).await {
                    tracing::warn!(error = %e, "the fault proxy's competing write failed");
                }
                match self.forward(&request).await {
                    Ok(answer) => {
                        if answer.status == 412 {
                            self.count(kind, Fault::Race412);
                        } else {
                            self.stats.lock().expect("stats lock").races_missed += 1;
                        }
                        Reply::Whole(answer_bytes(&answer, head_only))
                    }
                    Err(e) => bad_gateway(&e),
                }
            }
            None => self.pass(&request, head_only).await,
        }
    }

    fn choose(&self, kind: RequestKind) -> Option<Fault> {
        if !self.active.load(Ordering::SeqCst) {
            return None;
        }
        let fitting = self.plan.faults.get(&kind).filter(|f| !f.is_empty())?;
        let mut rng = self.rng.lock().expect("rng lock");
        (rng.f64() < self.plan.rate).then(|| fitting[rng.usize(..fitting.len())])
    }

    fn count(&self, kind: RequestKind, fault: Fault) {
        *self
            .stats
            .lock()
            .expect("stats lock")
            .faults
            .entry((kind, fault))
            .or_default() += 1;
    }

    async fn pass(&self, request: &Request, head_only: bool) -> Reply {
        match self.forward(request).await {
            Ok(answer) => Reply::Whole(answer_bytes(&answer, head_only)),
            Err(e) => bad_gateway(&e),
        }
    }

    async fn forward(&self, request: &Request) -> std::result::Result<Upstream, reqwest::Error> {
        let method =
            reqwest::Method::from_bytes(request.method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut builder = self
            .http
            .request(method, format!("{}{}", self.upstream, request.target));
        for (name, value) in &request.headers {
            if !HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) {
                builder = builder.header(name, value);
            }
        }
        if !request.body.is_empty() || request.method == "PUT" || request.method == "POST" {
            builder = builder.body(request.body.clone());
        }
        let response = builder.send().await?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response.bytes().await?;
        Ok(Upstream {
            status,
            headers,
            body,
        })
    }

    /// The competing write of [`Fault::Race412`]: the same key, straight to moto, with no
    /// condition.
    async fn compete(&self, request: &Request) -> std::result::Result<(), reqwest::Error> {
        let url = format!("{}{}", self.upstream, request.target);
        let path = request.target.split('?').next().unwrap_or_default();
        let mut builder = self.http.put(url);
        if path.contains("/_leases/") {
            let keep = ["authorization", "x-amz-date"];
            for (name, value) in &request.headers {
                if keep.iter().any(|k| name.eq_ignore_ascii_case(k)) {
                    builder = builder.header(name, value);
                }
            }
            builder = builder
                .header("content-type", "application/json")
                .body(EXPIRED_LEASE);
        } else {
            for (name, value) in &request.headers {
                let conditional = name.eq_ignore_ascii_case("if-match")
                    || name.eq_ignore_ascii_case("if-none-match");
                if !conditional && !HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) {
                    builder = builder.header(name, value);
                }
            }
            builder = builder.body(request.body.clone());
        }
        builder.send().await?.error_for_status()?;
        Ok(())
    }
}

fn reason(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

/// The status line and headers of moto's answer, with this connection's framing.
fn answer_head(answer: &Upstream, head_only: bool) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", answer.status, reason(answer.status));
    for (name, value) in &answer.headers {
        let framing = HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h));
        // A HEAD answer keeps moto's length: that of the body a GET would have.
        let head_length = head_only && name.eq_ignore_ascii_case("content-length");
        if !framing || head_length {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    let bodiless =
        answer.status == 204 || answer.status == 304 || (100..200).contains(&answer.status);
    if !head_only && !bodiless {
        head.push_str(&format!("content-length: {}\r\n", answer.body.len()));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

fn answer_bytes(answer: &Upstream, head_only: bool) -> Vec<u8> {
    let mut bytes = answer_head(answer, head_only);
    if !head_only {
        bytes.extend_from_slice(&answer.body);
    }
    bytes
}

/// An S3 error answer with its XML body (none for a HEAD, as S3 sends none).
fn s3_error(status: u16, code: &str, message: &str, head_only: bool) -> Vec<u8> {
    let request_id = format!("FAULT{:011X}", fastrand::u64(..) >> 20);
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>{message}</Message><RequestId>{request_id}</RequestId>\
         <HostId>fault-proxy</HostId></Error>"
    );
    let mut answer = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: application/xml\r\nx-amz-request-id: {request_id}\r\n\
         content-length: {}\r\n\r\n",
        reason(status),
        body.len()
    );
    if !head_only {
        answer.push_str(&body);
    }
    answer.into_bytes()
}

fn bad_gateway(error: &reqwest::Error) -> Reply {
    let body = format!("the fault proxy could not reach moto: {error}");
    Reply::Whole(
        format!(
            "HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

/// Read one request; `None` when the client closed the connection between requests.
async fn read_request<R, W>(reader: &mut R, writer: &mut W) -> io::Result<Option<Request>>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let mut lines = Vec::new();
    let mut read = 0;
    loop {
        let mut line = Vec::new();
        let n = reader.read_until(b'\n', &mut line).await?;
        if n == 0 {
            return if lines.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        read += n;
        if read > MAX_HEAD {
            return Err(invalid("request head too long"));
        }
        let line = String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        if line.is_empty() {
            if lines.is_empty() {
                continue;
            }
            break;
        }
        lines.push(line);
    }
    let mut request_line = lines[0].split_whitespace();
    let (Some(method), Some(target)) = (request_line.next(), request_line.next()) else {
        return Err(invalid("no request line"));
    };
    let headers: Vec<(String, String)> = lines[1..]
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    if header_value(&headers, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
        writer.flush().await?;
    }
    let chunked = header_value(&headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        read_chunked(reader).await?
    } else {
        let length = header_value(&headers, "content-length")
            .map(|v| {
                v.parse::<usize>()
                    .map_err(|_| invalid("bad content-length"))
            })
            .transpose()?
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        body
    };
    Ok(Some(Request {
        method: method.to_string(),
        target: target.to_string(),
        headers,
        body: Bytes::from(body),
    }))
}

async fn read_chunked<R: AsyncBufRead + Unpin>(reader: &mut R) -> io::Result<Vec<u8>> {
    let invalid = || io::Error::new(io::ErrorKind::InvalidData, "bad chunk");
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await?;
        let size = line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size, 16).map_err(|_| invalid())?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let mut trailer = String::new();
                if reader.read_line(&mut trailer).await? == 0 || trailer.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).await?;
        let mut end = [0; 2];
        reader.read_exact(&mut end).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    const S3_AUTH: &str = "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/s3/aws4_request, \
                           SignedHeaders=host, Signature=0";

    #[test]
    fn s3_requests_are_told_apart_by_method_path_query_and_headers() {
        let s3 = headers(&[("Authorization", S3_AUTH)]);
        let kind = |method, target| classify(method, target, &s3, b"");
        assert_eq!(
            kind("GET", "/b/k/x.parquet?x-id=GetObject"),
            RequestKind::GetObject
        );
        assert_eq!(kind("HEAD", "/b/k/x.parquet"), RequestKind::HeadObject);
        assert_eq!(
            kind("PUT", "/b/k/x.parquet?x-id=PutObject"),
            RequestKind::PutObject
        );
        assert_eq!(
            kind("DELETE", "/b/k/x.parquet?x-id=DeleteObject"),
            RequestKind::DeleteObject
        );
        assert_eq!(
            kind("GET", "/b?list-type=2&prefix=k%2F"),
            RequestKind::ListObjects
        );
        assert_eq!(
            kind("GET", "/b?versions&prefix=k"),
            RequestKind::ListVersions
        );
        assert_eq!(
            kind("GET", "/b/k/x.parquet?tagging"),
            RequestKind::GetTagging
        );
        assert_eq!(
            kind("PUT", "/b/k/x.parquet?tagging&versionId=1"),
            RequestKind::PutTagging
        );
        assert_eq!(kind("GET", "/b?versioning"), RequestKind::OtherS3);
        assert_eq!(kind("PUT", "/b"), RequestKind::OtherS3);
        let conditional = headers(&[("Authorization", S3_AUTH), ("If-None-Match", "*")]);
        assert_eq!(
            classify("PUT", "/b/k?x-id=PutObject", &conditional, b"x"),
            RequestKind::ConditionalPut
        );
        let copy = headers(&[("x-amz-copy-source", "b/k")]);
        assert_eq!(
            classify("PUT", "/b/k2", &copy, b""),
            RequestKind::CopyObject
        );
    }

    #[test]
    fn sqs_and_moto_requests_are_not_s3() {
        let json = headers(&[("X-Amz-Target", "AmazonSQS.ReceiveMessage")]);
        assert_eq!(classify("POST", "/", &json, b"{}"), RequestKind::NotS3);
        let form = headers(&[("Content-Type", "application/x-www-form-urlencoded")]);
        assert_eq!(
            classify(
                "POST",
                "/123456789012/q",
                &form,
                b"Action=SendMessage&MessageBody=x"
            ),
            RequestKind::NotS3
        );
        assert_eq!(
            classify("GET", "/123456789012/q?Action=ReceiveMessage", &[], b""),
            RequestKind::NotS3
        );
        let sqs_scope = headers(&[(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/sqs/aws4_request, Signature=0",
        )]);
        assert_eq!(
            classify("POST", "/123456789012/q", &sqs_scope, b""),
            RequestKind::NotS3
        );
        assert_eq!(
            classify("POST", "/moto-api/reset", &[], b""),
            RequestKind::NotS3
        );
    }

    #[test]
    fn a_campaign_faults_every_object_kind_and_races_only_conditional_puts() {
        let plan = FaultPlan::campaign(7, 0.1);
        for kind in RequestKind::OBJECT_KINDS {
            let faults = &plan.faults[&kind];
            assert_eq!(
                faults.contains(&Fault::Race412),
                kind == RequestKind::ConditionalPut,
                "{kind}"
            );
            assert!(faults.contains(&Fault::SlowDown), "{kind}");
        }
        assert!(!plan.faults.contains_key(&RequestKind::NotS3));
        assert!(!plan.faults.contains_key(&RequestKind::OtherS3));
    }

    #[tokio::test]
    async fn chunked_bodies_and_expect_continue_are_read_whole() {
        let raw = b"PUT /b/k HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\
                    Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n";
        let mut reader = BufReader::new(&raw[..]);
        let mut written = Vec::new();
        let request = read_request(&mut reader, &mut written)
            .await
            .unwrap()
            .expect("a request");
        assert_eq!(request.method, "PUT");
        assert_eq!(request.target, "/b/k");
        assert_eq!(request.body.as_ref(), b"abcde");
        assert_eq!(written, b"HTTP/1.1 100 Continue\r\n\r\n");
        assert!(
            read_request(&mut reader, &mut written)
                .await
                .unwrap()
                .is_none()
        );
    }
}
