//! Shared harness for the integration suites: a fake JWKS endpoint with a hit counter, rotation
//! and fault modes; a recording echo upstream that sees the exact bytes Portcullis forwards; a
//! `start_proxy` that wires both to a real [`portcullis::App`] on loopback; a raw-socket client
//! for header spellings an HTTP client would canonicalise; and a Prometheus text reader.
//!
//! Everything listens on `127.0.0.1:0`, and every wait is bounded.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis::App;
use portcullis::tools::mint::{self, SigningKey};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The app client id every test issuer is configured with.
pub const CLIENT_ID: &str = "test-client";

/// Upper bound for every "wait until" loop in the harness.
pub const WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Minimal HTTP/1.1 wire handling for the fake servers (they must see bytes exactly as sent).

/// One connection with a read buffer.
struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Wire {
    fn new(stream: TcpStream) -> Self {
        Wire { stream, buf: Vec::new() }
    }

    /// Read more bytes; `Ok(0)` at EOF.
    async fn fill(&mut self) -> std::io::Result<usize> {
        let mut tmp = [0u8; 64 * 1024];
        let n = self.stream.read(&mut tmp).await?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// Bytes up to and including `pat`, or `None` at EOF / over `max` bytes.
    async fn read_until(&mut self, pat: &[u8], max: usize) -> Option<Vec<u8>> {
        loop {
            if let Some(i) = find(&self.buf, pat) {
                let rest = self.buf.split_off(i + pat.len());
                return Some(std::mem::replace(&mut self.buf, rest));
            }
            if self.buf.len() > max {
                return None;
            }
            match self.fill().await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Feed exactly `n` body bytes to `sink`.
    async fn read_n(&mut self, mut n: usize, sink: &mut (dyn FnMut(&[u8]) + Send)) -> Option<()> {
        loop {
            let take = n.min(self.buf.len());
            if take > 0 {
                sink(&self.buf[..take]);
                self.buf.drain(..take);
                n -= take;
            }
            if n == 0 {
                return Some(());
            }
            match self.fill().await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A request as a fake server received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// The request target exactly as received (path + query).
    pub target: String,
    pub version: String,
    /// Every header line in order, names in their original spelling, duplicates kept.
    pub headers: Vec<(String, String)>,
    /// Lines of the header section that were not `name: value` (obs-fold continuations…).
    pub odd_lines: Vec<String>,
    /// Trailer lines of a chunked body.
    pub trailers: Vec<(String, String)>,
    /// The body, kept only when at most 1 MiB (see `body_len` / `body_sha256`).
    pub body: Vec<u8>,
    pub body_len: usize,
    pub body_sha256: String,
}

impl Seen {
    /// Every value of `name` (ASCII case-insensitive), in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    /// The single value of `name`; panics when it appears more than once.
    pub fn one(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "header {name} arrived {} times: {all:?}\n{self:#?}", all.len());
        all.first().copied()
    }

    pub fn names(&self) -> Vec<String> {
        self.headers.iter().map(|(n, _)| n.to_ascii_lowercase()).collect()
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
}

fn parse_head(head: &[u8]) -> Option<Seen> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let request_line = lines.next()?;
    let mut parts = request_line.splitn(3, ' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let mut headers = Vec::new();
    let mut odd_lines = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        match line.split_once(':') {
            Some((n, v)) if !n.starts_with([' ', '\t']) => headers.push((n.to_owned(), v.trim().to_owned())),
            _ => odd_lines.push(line.to_owned()),
        }
    }
    Some(Seen {
        method: method.to_owned(),
        target: target.to_owned(),
        version: version.to_owned(),
        headers,
        odd_lines,
        trailers: Vec::new(),
        body: Vec::new(),
        body_len: 0,
        body_sha256: String::new(),
    })
}

const KEEP_BODY: usize = 1024 * 1024;

/// Read the body the head announces (Content-Length or chunked) into `seen`.
async fn read_body(wire: &mut Wire, seen: &mut Seen) -> Option<()> {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut body = Vec::new();
    let mut len = 0usize;
    let mut sink = |chunk: &[u8]| {
        ctx.update(chunk);
        len += chunk.len();
        if body.len() + chunk.len() <= KEEP_BODY {
            body.extend_from_slice(chunk);
        }
    };
    let chunked = seen.all("transfer-encoding").iter().any(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            let line = wire.read_until(b"\r\n", 4096).await?;
            let line = String::from_utf8_lossy(&line[..line.len() - 2]).to_string();
            let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                loop {
                    let t = wire.read_until(b"\r\n", 16 * 1024).await?;
                    if t.len() == 2 {
                        break;
                    }
                    let t = String::from_utf8_lossy(&t[..t.len() - 2]).to_string();
                    if let Some((n, v)) = t.split_once(':') {
                        seen.trailers.push((n.to_owned(), v.trim().to_owned()));
                    }
                }
                break;
            }
            wire.read_n(size, &mut sink).await?;
            wire.read_until(b"\r\n", 2).await?;
        }
    } else if let Some(cl) = seen.all("content-length").first() {
        let n: usize = cl.trim().parse().ok()?;
        wire.read_n(n, &mut sink).await?;
    }
    seen.body = body;
    seen.body_len = len;
    seen.body_sha256 = hex(ctx.finish().as_ref());
    Some(())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

/// Deterministic filler bytes (the echo's large responses use the same pattern).
pub fn pattern_bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn query_param(target: &str, key: &str) -> Option<String> {
    let query = target.split_once('?')?.1;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.to_owned())
    })
}

async fn write_response(wire: &mut Wire, status: u16, ctype: &str, body: &[u8], close: bool) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n{}\r\n",
        body.len(),
        if close { "connection: close\r\n" } else { "" }
    );
    wire.stream.write_all(head.as_bytes()).await?;
    for chunk in body.chunks(256 * 1024) {
        wire.stream.write_all(chunk).await?;
    }
    wire.stream.flush().await
}

fn wants_close(seen: &Seen) -> bool {
    seen.all("connection").iter().any(|v| v.to_ascii_lowercase().contains("close"))
}

// ---------------------------------------------------------------------------------------------
// Echo upstream

#[derive(Default)]
struct EchoState {
    count: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
    delay: Mutex<Duration>,
}

/// The protected app: records every request (exact header lines, body hash) and answers 200
/// with a small JSON document. Per request, `?echo_delay_ms=N` waits before answering and
/// `?echo_bytes=N` answers with N bytes of [`pattern_bytes`].
#[derive(Clone)]
pub struct Echo {
    pub addr: SocketAddr,
    state: Arc<EchoState>,
}

impl Echo {
    pub async fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
        let addr = listener.local_addr().expect("echo addr");
        let state = Arc::new(EchoState::default());
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                // The head and the body are written separately: without NODELAY, Nagle holds the
                // body until the proxy's delayed ACK, ~40 ms per forwarded request.
                let _ = stream.set_nodelay(true);
                tokio::spawn(echo_connection(Wire::new(stream), st.clone()));
            }
        });
        Echo { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests whose head arrived (counted before the body is read or any delay).
    pub fn count(&self) -> usize {
        self.state.count.load(Ordering::SeqCst)
    }

    /// Completed requests, in arrival order.
    pub fn requests(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("echo lock").clone()
    }

    /// The only request received; panics unless exactly one arrived.
    pub fn only(&self) -> Seen {
        let all = self.requests();
        assert_eq!(all.len(), 1, "expected exactly one upstream request, got {all:#?}");
        all.into_iter().next().expect("one request")
    }

    pub fn last(&self) -> Seen {
        self.requests().pop().expect("the upstream received no request")
    }

    pub fn clear(&self) {
        self.state.seen.lock().expect("echo lock").clear();
        self.state.count.store(0, Ordering::SeqCst);
    }

    /// Delay every answer by `d` (on top of any `echo_delay_ms`).
    pub fn set_delay(&self, d: Duration) {
        *self.state.delay.lock().expect("echo lock") = d;
    }

    /// Wait (bounded) until at least `n` request heads arrived.
    pub async fn wait_for_count(&self, n: usize) {
        let deadline = Instant::now() + WAIT;
        while self.count() < n {
            assert!(Instant::now() < deadline, "upstream saw {} requests, wanted {n}", self.count());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn echo_connection(mut wire: Wire, state: Arc<EchoState>) {
    loop {
        let Some(head) = wire.read_until(b"\r\n\r\n", 1024 * 1024).await else { return };
        let Some(mut seen) = parse_head(&head) else { return };
        state.count.fetch_add(1, Ordering::SeqCst);
        if read_body(&mut wire, &mut seen).await.is_none() {
            return;
        }
        let close = wants_close(&seen);
        let head_request = seen.method == "HEAD";
        let extra = query_param(&seen.target, "echo_delay_ms").and_then(|v| v.parse().ok()).map(Duration::from_millis);
        let size: Option<usize> = query_param(&seen.target, "echo_bytes").and_then(|v| v.parse().ok());
        let body = match size {
            Some(n) => pattern_bytes(n),
            None => serde_json::json!({"ok": true, "path": seen.target}).to_string().into_bytes(),
        };
        state.seen.lock().expect("echo lock").push(seen);
        let delay = *state.delay.lock().expect("echo lock") + extra.unwrap_or_default();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let ctype = if size.is_some() { "application/octet-stream" } else { "application/json" };
        // A correct app sends no body in answer to HEAD. (Bytes after a HEAD response would be
        // read as the next response on a reused upstream connection: issue 12 item 3.)
        let body = if head_request { Vec::new() } else { body };
        if write_response(&mut wire, 200, ctype, &body, close).await.is_err() || close {
            return;
        }
    }
}

/// A loopback port that refuses connections (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

// ---------------------------------------------------------------------------------------------
// JWKS endpoint

/// What the fake JWKS endpoint does with the next request.
#[derive(Debug, Clone)]
pub enum Mode {
    /// 200 with the current key set.
    Ok,
    /// This status with a small HTML body.
    Status(u16),
    /// 200 with these bytes.
    Garbage(Vec<u8>),
    /// Read the request, never answer (the connection is held up to 30 s).
    Hang,
    /// Close the connection at once, without a response.
    Down,
}

pub const JWKS_PATH: &str = "/pool/.well-known/jwks.json";

struct JwksState {
    hits: AtomicUsize,
    keys: Mutex<Value>,
    mode: Mutex<Mode>,
}

#[derive(Clone)]
pub struct JwksServer {
    pub addr: SocketAddr,
    state: Arc<JwksState>,
}

impl JwksServer {
    pub async fn start(keys: Value) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind jwks");
        let addr = listener.local_addr().expect("jwks addr");
        let state =
            Arc::new(JwksState { hits: AtomicUsize::new(0), keys: Mutex::new(keys), mode: Mutex::new(Mode::Ok) });
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                tokio::spawn(jwks_connection(Wire::new(stream), st.clone()));
            }
        });
        JwksServer { addr, state }
    }

    pub fn issuer_url(&self) -> String {
        format!("http://{}/pool", self.addr)
    }

    pub fn jwks_url(&self) -> String {
        format!("http://{}{JWKS_PATH}", self.addr)
    }

    /// Fetches so far (requests received; in `Down` mode, connections accepted).
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    pub fn set_keys(&self, keys: Value) {
        *self.state.keys.lock().expect("jwks lock") = keys;
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().expect("jwks lock") = mode;
    }

    /// Wait (bounded) until the endpoint has been hit at least `n` times.
    pub async fn wait_for_hits(&self, n: usize) {
        let deadline = Instant::now() + WAIT;
        while self.hits() < n {
            assert!(Instant::now() < deadline, "JWKS was fetched {} times, wanted {n}", self.hits());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn jwks_connection(mut wire: Wire, state: Arc<JwksState>) {
    loop {
        if matches!(*state.mode.lock().expect("jwks lock"), Mode::Down) {
            state.hits.fetch_add(1, Ordering::SeqCst);
            return; // drop the connection without a byte
        }
        let Some(head) = wire.read_until(b"\r\n\r\n", 64 * 1024).await else { return };
        let Some(seen) = parse_head(&head) else { return };
        state.hits.fetch_add(1, Ordering::SeqCst);
        let mode = state.mode.lock().expect("jwks lock").clone();
        let close = wants_close(&seen);
        let result = match mode {
            Mode::Down => return,
            Mode::Hang => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
            _ if seen.path() != JWKS_PATH => write_response(&mut wire, 404, "text/plain", b"not found", close).await,
            Mode::Ok => {
                let body = state.keys.lock().expect("jwks lock").to_string();
                write_response(&mut wire, 200, "application/json", body.as_bytes(), close).await
            }
            Mode::Status(code) => write_response(&mut wire, code, "text/html", b"<html>error</html>", close).await,
            Mode::Garbage(bytes) => write_response(&mut wire, 200, "application/json", &bytes, close).await,
        };
        if result.is_err() || close {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy under test

/// The admin listener's address in harness configs (an ephemeral loopback port, like `listen`;
/// pinned by `config_accepts_ephemeral_ports_for_both_listeners` in tests/proxy.rs).
pub const ADMIN_LISTEN: &str = "127.0.0.1:0";

/// A YAML config with the standard head (loopback listeners, the echo upstream, one issuer
/// `main` for [`CLIENT_ID`] with the given `token_use`) followed by `rest` (top-level keys,
/// `routes:` included).
pub fn config(token_use: &str, rest: &str) -> String {
    format!(
        r#"listen: "127.0.0.1:0"
admin_listen: "{ADMIN_LISTEN}"
upstream:
  url: "@UPSTREAM@"
issuers:
  - name: main
    issuer: "@ISSUER@"
    jwks_uri: "@JWKS@"
    client_ids: [{CLIENT_ID}]
    token_use: {token_use}
{rest}"#
    )
}

/// How to start a proxy; [`start_proxy`] is the common case.
pub struct Setup {
    yaml: String,
    mode: Mode,
    keys: Option<Value>,
    wait_ready: bool,
    upstream: Option<String>,
    kid: String,
}

pub fn setup(yaml: &str) -> Setup {
    Setup { yaml: yaml.to_owned(), mode: Mode::Ok, keys: None, wait_ready: true, upstream: None, kid: "k1".into() }
}

impl Setup {
    /// The JWKS endpoint's mode at start (anything but `Ok` implies `no_wait`).
    pub fn jwks_mode(mut self, mode: Mode) -> Self {
        if !matches!(mode, Mode::Ok) {
            self.wait_ready = false;
        }
        self.mode = mode;
        self
    }
    /// Serve this key set instead of the issuer's own (implies `no_wait`).
    pub fn jwks_keys(mut self, keys: Value) -> Self {
        self.keys = Some(keys);
        self.wait_ready = false;
        self
    }
    /// Do not wait for `/readyz`.
    pub fn no_wait(mut self) -> Self {
        self.wait_ready = false;
        self
    }
    /// `@UPSTREAM@` becomes this URL instead of the echo's.
    pub fn upstream_url(mut self, url: String) -> Self {
        self.upstream = Some(url);
        self
    }

    pub async fn start(self) -> Proxy {
        let issuer = SigningKey::generate(&self.kid).expect("RSA key");
        let jwks = JwksServer::start(self.keys.clone().unwrap_or_else(|| issuer.jwks())).await;
        jwks.set_mode(self.mode.clone());
        let echo = Echo::start().await;
        let yaml = self
            .yaml
            .replace("@ISSUER@", &jwks.issuer_url())
            .replace("@JWKS@", &jwks.jwks_url())
            .replace("@UPSTREAM@", &self.upstream.clone().unwrap_or_else(|| echo.url()));
        let config = portcullis::config::parse(&yaml, "test.yaml", &|_| None)
            .unwrap_or_else(|e| panic!("config does not load:\n{}\n---\n{yaml}", e.messages.join("\n")));
        let app = App::start(config).await.expect("app starts");
        let proxy = Proxy::new(app, jwks, echo, issuer);
        if self.wait_ready {
            proxy.wait_ready().await;
        }
        proxy
    }
}

/// Start JWKS server + echo + the app for `yaml` (placeholders `@ISSUER@`, `@JWKS@`,
/// `@UPSTREAM@`) and wait until `/readyz` says 200.
pub async fn start_proxy(yaml: &str) -> Proxy {
    setup(yaml).start().await
}

pub struct Proxy {
    pub app: Option<App>,
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub shared: Arc<portcullis::proxy::runtime::Shared>,
    pub jwks: JwksServer,
    pub echo: Echo,
    pub issuer: SigningKey,
    pub client: reqwest::Client,
}

impl Proxy {
    /// Wrap a started app and the parts it was configured with, plus an HTTP client for it.
    pub fn new(app: App, jwks: JwksServer, echo: Echo, issuer: SigningKey) -> Proxy {
        let client =
            reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().expect("http client");
        Proxy {
            proxy_addr: app.proxy_addr,
            admin_addr: app.admin_addr,
            shared: app.shared.clone(),
            app: Some(app),
            jwks,
            echo,
            issuer,
            client,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy_addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin_addr)
    }

    pub fn take_app(&mut self) -> App {
        self.app.take().expect("app already taken")
    }

    pub fn iss(&self) -> String {
        self.jwks.issuer_url()
    }

    pub fn access_claims(&self, sub: &str, groups: &[&str], scope: &str) -> Value {
        mint::access_claims(&self.iss(), CLIENT_ID, sub, groups, scope)
    }

    pub fn id_claims(&self, sub: &str, groups: &[&str], email: &str) -> Value {
        mint::id_claims(&self.iss(), CLIENT_ID, sub, groups, email)
    }

    pub fn mint(&self, claims: &Value) -> String {
        self.issuer.mint(claims)
    }

    pub fn mint_access(&self, sub: &str, groups: &[&str], scope: &str) -> String {
        self.mint(&self.access_claims(sub, groups, scope))
    }

    pub fn mint_id(&self, sub: &str, groups: &[&str], email: &str) -> String {
        self.mint(&self.id_claims(sub, groups, email))
    }

    /// GET `path`, with a bearer token when given.
    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.client.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("request to the proxy")
    }

    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.admin_url(path)).send().await.expect("request to the admin port")
    }

    pub async fn readyz(&self) -> u16 {
        self.admin_get("/readyz").await.status().as_u16()
    }

    /// Poll `/readyz` until 200 (bounded).
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if self.readyz().await == 200 {
                return;
            }
            assert!(Instant::now() < deadline, "/readyz did not turn 200 within {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Prometheus text from the app's registry.
    pub fn metrics(&self) -> String {
        self.shared.metrics.render()
    }

    /// Sum of the series of `name` whose labels include every pair in `labels`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric(&self.metrics(), name, labels)
    }

    /// `portcullis_requests_total` summed over the given `reason` (any route/decision).
    pub fn reason_count(&self, reason: &str) -> f64 {
        self.metric("portcullis_requests_total", &[("reason", reason)])
    }
}

/// Sum of the series of `name` in Prometheus `text` whose labels include every pair in
/// `labels`.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = match line.rsplit_once(' ') {
            Some(x) => x,
            None => continue,
        };
        let (series_name, label_text) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if series_name != name {
            continue;
        }
        let have: Vec<(&str, &str)> = label_text
            .split("\",")
            .filter(|s| !s.is_empty())
            .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.trim_matches(','), v.trim_matches('"'))))
            .collect();
        if labels.iter().all(|want| have.contains(want)) {
            total += value.parse::<f64>().unwrap_or(0.0);
        }
    }
    total
}

// ---------------------------------------------------------------------------------------------
// Raw-socket client

/// A response read off a raw socket.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Everything read, lossily decoded.
    pub text: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn body_json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Write `bytes` exactly as given and read until the connection closes, one complete response
/// has arrived, or 5 s pass. Returns everything read.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    raw_response(addr, bytes).await.text
}

/// As [`raw`], parsed. A connection closed without any response gives status 0.
pub async fn raw_response(addr: SocketAddr, bytes: &[u8]) -> RawResponse {
    let mut conn = RawConn::connect(addr).await;
    conn.send(bytes).await
}

/// A raw connection kept open across requests (keep-alive tests).
pub struct RawConn {
    pub stream: TcpStream,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> RawConn {
        let stream =
            tokio::time::timeout(WAIT, TcpStream::connect(addr)).await.expect("connect timeout").expect("connect");
        RawConn { stream }
    }

    /// Write `bytes`, then read until one complete response, EOF, or 5 s.
    pub async fn send(&mut self, bytes: &[u8]) -> RawResponse {
        let _ = self.stream.write_all(bytes).await;
        let mut buf = Vec::new();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if complete_response(&buf) {
                break;
            }
            let mut tmp = [0u8; 16 * 1024];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut tmp)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(n)) => buf.extend_from_slice(&tmp[..n]),
            }
        }
        parse_response(&buf)
    }
}

/// An HTTP/1.1 request head: the request line, `Host`, the given header lines exactly as
/// written, and `Connection: close` unless a `Connection` line is among them.
pub fn request_bytes(method: &str, target: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    let mut s = format!("{method} {target} HTTP/1.1\r\nHost: portcullis.test\r\n");
    for (n, v) in headers {
        s.push_str(&format!("{n}: {v}\r\n"));
    }
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("connection")) {
        s.push_str("Connection: close\r\n");
    }
    s.push_str("\r\n");
    s.into_bytes()
}

/// Header lines as `(name, value)` pairs, in order.
type HeaderLines = Vec<(String, String)>;

/// A response head: its header lines, status, and where the body starts.
fn split_head(buf: &[u8]) -> Option<(HeaderLines, u16, usize)> {
    let end = find(buf, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines.filter_map(|l| l.split_once(':').map(|(n, v)| (n.to_owned(), v.trim().to_owned()))).collect();
    Some((headers, status, end + 4))
}

fn complete_response(buf: &[u8]) -> bool {
    let Some((headers, status, start)) = split_head(buf) else { return false };
    if status < 200 && status != 101 {
        return false;
    }
    let get = |n: &str| headers.iter().find(|(h, _)| h.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
    if let Some(cl) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        return buf.len() >= start + cl;
    }
    if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        return find(&buf[start..], b"0\r\n\r\n").is_some();
    }
    status == 204 || status == 304
}

fn parse_response(buf: &[u8]) -> RawResponse {
    let text = String::from_utf8_lossy(buf).to_string();
    match split_head(buf) {
        Some((headers, status, start)) => {
            let chunked = headers.iter().any(|(n, v)| {
                n.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
            });
            let raw_body = &buf[start..];
            let body = if chunked { dechunk(raw_body) } else { raw_body.to_vec() };
            RawResponse { status, headers, body, text }
        }
        None => RawResponse { status: 0, headers: Vec::new(), body: Vec::new(), text },
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = find(b, b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if size == 0 || b.len() < i + 2 + size {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[(i + 4 + size).min(b.len())..];
    }
    out
}

/// Poll `f` until it returns true (bounded by [`WAIT`]); panics with `what` otherwise.
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if f().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Add `upstream:` keys to a [`config`] YAML, e.g. `"timeout: 500ms"`.
pub fn with_upstream_opts(yaml: &str, lines: &[&str]) -> String {
    let mut extra = String::new();
    for l in lines {
        extra.push_str(&format!("  {l}\n"));
    }
    yaml.replacen("  url: \"@UPSTREAM@\"\n", &format!("  url: \"@UPSTREAM@\"\n{extra}"), 1)
}

/// A public subtree and a protected one, the route table most tests share.
pub const PUBLIC_AND_API: &str = r#"routes:
  - name: public
    path: /public/**
    auth: none
  - name: api
    path: /api/**
"#;

/// A fresh, empty scratch directory for one test binary (`name` must be unique within it).
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("portcullis-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A self-signed leaf certificate and key (`<name>.crt`, `<name>.key` in `dir`) made by the
/// `openssl` CLI, valid for `san` (e.g. `IP:127.0.0.1,DNS:localhost`).
pub fn self_signed_cert(dir: &std::path::Path, name: &str, san: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj"])
        .arg(format!("/CN={name}"))
        .args(["-addext", &format!("subjectAltName={san}"), "-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed (Debian: openssl)");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    (cert, key)
}

/// Run the real binary on `config` with JSON logs, wait for its "portcullis started" line and
/// return the child with that line (its `listen` and `admin` addresses). The rest of stderr is
/// drained in the background so the child never blocks on a full pipe.
pub fn spawn_binary(config: &std::path::Path) -> (std::process::Child, Value) {
    let (child, started, _logs) = spawn_binary_with_logs(config);
    (child, started)
}

/// As [`spawn_binary`], also returning every JSON log line: those written before the start line,
/// then each later one as it arrives.
pub fn spawn_binary_with_logs(
    config: &std::path::Path,
) -> (std::process::Child, Value, std::sync::mpsc::Receiver<Value>) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["--log-format", "json", "run", "--config"])
        .arg(config)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the binary starts");
    let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    let (tx, rx) = std::sync::mpsc::channel();
    let started = loop {
        let line = lines.next().expect("the binary logs its start").expect("stderr line");
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        if v["message"] == "portcullis started" {
            break v;
        }
        let _ = tx.send(v);
    };
    // Keeps draining after the receiver is dropped, so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = tx.send(serde_json::from_str(&line).unwrap_or_default());
        }
    });
    (child, started, rx)
}

/// The JSON log lines a binary started by [`spawn_binary_logged`] has written so far, in order.
#[derive(Clone, Default)]
pub struct LogLines(Arc<Mutex<Vec<Value>>>);

impl LogLines {
    pub fn all(&self) -> Vec<Value> {
        self.0.lock().unwrap().clone()
    }
    /// The access-log lines (`target: portcullis::access`).
    pub fn access(&self) -> Vec<Value> {
        self.all().into_iter().filter(|l| l["target"] == "portcullis::access").collect()
    }
}

/// As [`spawn_binary`], keeping every JSON log line the binary writes (the access log included).
pub fn spawn_binary_logged(config: &std::path::Path) -> (std::process::Child, Value, LogLines) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["--log-format", "json", "run", "--config"])
        .arg(config)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the binary starts");
    let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    let started = loop {
        let line = lines.next().expect("the binary logs its start").expect("stderr line");
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        if v["message"] == "portcullis started" {
            break v;
        }
    };
    let log = LogLines::default();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.0.lock().unwrap().push(serde_json::from_str(&line).unwrap_or(Value::String(line)));
        }
    });
    (child, started, log)
}
