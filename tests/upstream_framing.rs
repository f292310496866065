//! SPEC §3, issue 12 item 3: an upstream response whose framing cannot be relayed faithfully
//! becomes a correctly re-framed response or a 502 `upstream_protocol` — never a dropped
//! connection — and that upstream connection is never reused. Every framing anomaly hyper's
//! client accepts is scripted byte for byte by a raw-TCP fake app, and each one is followed by a
//! request from another user (another downstream connection) that must get its own response, not
//! the leftovers of the previous one.
//!
//! The fake app makes reuse visible twice: it records which connection carried which request,
//! and on a connection that already served an anomaly it answers any further request with a
//! forged response first — what a desynchronised pool would hand to the next user.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A complete response an app might leave behind on a connection; if it ever reaches a client,
/// a connection was reused after an anomaly.
const FORGED: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nX-Forged: 1\r\n\r\nspoofed";

/// What the fake app does after writing a script's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// Keep the connection and serve whatever comes next (with [`FORGED`] in front).
    Keep,
    /// Close at once, without reading anything more.
    Close,
    /// Read and discard the request body (its `Content-Length`), then keep the connection.
    DrainThenKeep,
}

/// The bytes the fake app answers with for a path (the request body is not read first).
fn script(path: &str) -> Option<(Vec<u8>, After)> {
    let forged = FORGED.len();
    let s = |bytes: &[u8], after| Some((bytes.to_vec(), after));
    match path {
        "/cl-te" => s(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", After::Keep),
        "/te-cl" => s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", After::Keep),
        "/cl-te-split" => {
            let mut b = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec();
            b.extend_from_slice(FORGED);
            Some((b, After::Keep))
        }
        "/te-gzip" => s(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\na\r\n\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\r\n0\r\n\r\n",
            After::Keep,
        ),
        "/te-twice" => s(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            After::Keep,
        ),
        "/te-identity" => s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\nhello", After::Close),
        "/dup-cl" => s(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", After::Keep),
        "/cl-list" => s(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello", After::Keep),
        "/longer" => {
            let mut b = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec();
            b.extend_from_slice(FORGED);
            Some((b, After::Keep))
        }
        "/head-body" => {
            let mut b = format!("HTTP/1.1 200 OK\r\nContent-Length: {forged}\r\n\r\n").into_bytes();
            b.extend_from_slice(FORGED);
            Some((b, After::Keep))
        }
        // The head alone: a late "body" is written only if another request arrives (After::Keep).
        "/head-late" => s(format!("HTTP/1.1 200 OK\r\nContent-Length: {forged}\r\n\r\n").as_bytes(), After::Keep),
        "/no-content-body" => {
            let mut b = format!("HTTP/1.1 204 No Content\r\nContent-Length: {forged}\r\n\r\n").into_bytes();
            b.extend_from_slice(FORGED);
            Some((b, After::Keep))
        }
        "/not-modified-body" => {
            let mut b = b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            b.extend_from_slice(format!("{forged:x}\r\n").as_bytes());
            b.extend_from_slice(FORGED);
            b.extend_from_slice(b"\r\n0\r\n\r\n");
            Some((b, After::Keep))
        }
        "/informational" => s(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            After::Keep,
        ),
        // A 1xx has no body; what follows it is read as the next head.
        "/informational-body" => s(
            b"HTTP/1.1 100 Continue\r\nContent-Length: 7\r\n\r\nspoofedHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            After::Keep,
        ),
        "/informational-storm" => {
            let mut b = b"HTTP/1.1 103 Early Hints\r\n\r\n".repeat(1000);
            b.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            Some((b, After::Keep))
        }
        "/early" => s(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", After::DrainThenKeep),
        "/early-close" => s(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", After::Close),
        "/truncated-length" => s(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello", After::Close),
        "/truncated-chunked" => s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", After::Close),
        "/bad-chunk" => s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", After::Keep),
        "/close-delimited" => s(b"HTTP/1.1 200 OK\r\n\r\nhello", After::Close),
        _ => None,
    }
}

/// The scripted app. Any request without a script gets `own <target>`.
struct ScriptedApp {
    addr: SocketAddr,
    /// (connection, request target) in arrival order.
    log: Arc<Mutex<Vec<(usize, String)>>>,
}

impl ScriptedApp {
    async fn start() -> ScriptedApp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let log: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
        let conns = Arc::new(AtomicUsize::new(0));
        let l = log.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let id = conns.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, id, l.clone()));
            }
        });
        ScriptedApp { addr, log }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests carried by the connection that carried `target`.
    fn requests_on_connection_of(&self, target: &str) -> Vec<String> {
        let log = self.log.lock().unwrap();
        let conn = log
            .iter()
            .find(|(_, t)| t == target)
            .map(|(c, _)| *c)
            .unwrap_or_else(|| panic!("{target} never reached the app: {log:?}"));
        log.iter().filter(|(c, _)| *c == conn).map(|(_, t)| t.clone()).collect()
    }
}

async fn serve(mut stream: TcpStream, id: usize, log: Arc<Mutex<Vec<(usize, String)>>>) {
    let mut buf = Vec::new();
    let mut tainted = false;
    loop {
        let Some(end) = fill_until(&mut stream, &mut buf, b"\r\n\r\n").await else { return };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        buf.drain(..end + 4);
        let target = head.split(' ').nth(1).unwrap_or("").to_owned();
        log.lock().unwrap().push((id, target.clone()));
        let length: usize = head
            .lines()
            .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("content-length")))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        let path = target.split('?').next().unwrap_or("").to_owned();
        let mut out = Vec::new();
        if tainted {
            // A request on a connection that served an anomaly: what a desynchronised pool
            // would read as this request's response.
            out.extend_from_slice(FORGED);
        }
        let after = match script(&path) {
            Some((bytes, after)) => {
                tainted = true;
                out.extend_from_slice(&bytes);
                after
            }
            None => {
                if !skip(&mut stream, &mut buf, length).await {
                    return;
                }
                let body = format!("own {target}");
                out.extend_from_slice(
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes(),
                );
                After::Keep
            }
        };
        if stream.write_all(&out).await.is_err() {
            return;
        }
        match after {
            After::Close => return,
            After::Keep => {}
            After::DrainThenKeep => {
                if !skip(&mut stream, &mut buf, length).await {
                    return;
                }
            }
        }
    }
}

/// Read until `pat` is in `buf`; its index, or `None` at EOF.
async fn fill_until(stream: &mut TcpStream, buf: &mut Vec<u8>, pat: &[u8]) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(pat.len()).position(|w| w == pat) {
            return Some(i);
        }
        let mut tmp = [0u8; 64 * 1024];
        match stream.read(&mut tmp).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

/// Consume `n` body bytes.
async fn skip(stream: &mut TcpStream, buf: &mut Vec<u8>, mut n: usize) -> bool {
    loop {
        let take = n.min(buf.len());
        buf.drain(..take);
        n -= take;
        if n == 0 {
            return true;
        }
        let mut tmp = [0u8; 64 * 1024];
        match stream.read(&mut tmp).await {
            Ok(0) | Err(_) => return false,
            Ok(k) => buf.extend_from_slice(&tmp[..k]),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The downstream side: a raw client that reads exactly one response, or sees where it stopped.

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The body was cut short (the connection closed before its framing said it ended).
    truncated: bool,
}

impl Reply {
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }
    fn closes(&self) -> bool {
        self.all("connection").iter().any(|v| v.to_ascii_lowercase().contains("close"))
    }
}

/// Read one response to a request with `method`. `None` when the connection closed before a
/// complete head: the dropped connection SPEC §3 forbids.
async fn read_reply<R: AsyncRead + Unpin>(stream: &mut R, method: &str) -> Option<Reply> {
    let mut buf = Vec::new();
    let mut eof = false;
    let mut more = async |buf: &mut Vec<u8>, eof: &mut bool| {
        let mut tmp = [0u8; 64 * 1024];
        match tokio::time::timeout(WAIT, stream.read(&mut tmp)).await.expect("the proxy neither answered nor closed") {
            Ok(0) | Err(_) => *eof = true,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    };
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if eof {
            return None;
        }
        more(&mut buf, &mut eof).await;
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_string();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':').map(|(n, v)| (n.to_owned(), v.trim().to_owned()))).collect();
    let mut reply = Reply { status, headers, body: Vec::new(), truncated: false };
    let mut rest = buf[end + 4..].to_vec();
    if method == "HEAD" || status == 204 || status == 304 {
        return Some(reply);
    }
    if let Some(len) = reply.all("content-length").first().and_then(|v| v.parse::<usize>().ok()) {
        while rest.len() < len && !eof {
            more(&mut rest, &mut eof).await;
        }
        reply.truncated = rest.len() < len;
        rest.truncate(len);
        reply.body = rest;
    } else if reply.all("transfer-encoding").iter().any(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let Some(i) = rest.windows(2).position(|w| w == b"\r\n") else {
                if eof {
                    reply.truncated = true;
                    break;
                }
                more(&mut rest, &mut eof).await;
                continue;
            };
            let Ok(size) = usize::from_str_radix(String::from_utf8_lossy(&rest[..i]).trim(), 16) else {
                reply.truncated = true;
                break;
            };
            if rest.len() < i + 2 + size + 2 {
                if eof {
                    reply.truncated = true;
                    break;
                }
                more(&mut rest, &mut eof).await;
                continue;
            }
            if size == 0 {
                break;
            }
            reply.body.extend_from_slice(&rest[i + 2..i + 2 + size]);
            rest.drain(..i + 2 + size + 2);
        }
    } else {
        while !eof {
            more(&mut rest, &mut eof).await;
        }
        reply.body = rest;
    }
    Some(reply)
}

/// What the client must get for an anomaly.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// 502 `upstream_protocol`.
    Refused,
    /// This status and body (re-framed: one correct length), and for `HEAD` this length.
    Relayed(u16, &'static [u8], Option<&'static str>),
    /// The head and what body there was, then a close: a visibly truncated response.
    Truncated(u16, &'static [u8]),
    /// Either the app's answer relayed, or a 502 (the app's reset may win the race).
    RelayedOr502(u16, &'static [u8]),
}

async fn proxy_for(app: &ScriptedApp) -> Proxy {
    const OPEN: &str = "routes:\n  - name: open\n    path: /**\n    auth: none\n";
    setup(&config("access", OPEN)).upstream_url(app.url()).start().await
}

/// A request body the client sends in two parts: `first` bytes with the head, the rest only after
/// it has read the response — so the app's answer comes while the upload is, for certain, still
/// unfinished.
#[derive(Debug, Clone, Copy)]
struct Upload {
    total: usize,
    first: usize,
}

/// One anomaly, then another user. Panics on any broken promise.
async fn check(
    p: &Proxy,
    app: &ScriptedApp,
    method: &str,
    path: &str,
    upload: Option<Upload>,
    expect: Expect,
    round: usize,
) {
    let what = format!("{method} {path} round {round} upload {upload:?}");
    let target = format!("{path}?round={round}");
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: app.test\r\n").into_bytes();
    let body = pattern_bytes(upload.map_or(0, |u| u.total));
    if let Some(u) = upload {
        req.extend_from_slice(format!("Content-Length: {}\r\n\r\n", u.total).as_bytes());
        req.extend_from_slice(&body[..u.first]);
    } else {
        req.extend_from_slice(b"\r\n");
    }
    let mut conn = TcpStream::connect(p.proxy_addr).await.expect("connect");
    conn.write_all(&req).await.expect("write");
    let reply = read_reply(&mut conn, method).await;
    let reply = reply.unwrap_or_else(|| panic!("{what}: the connection closed without a response"));
    if let Some(u) = upload {
        // Answered mid-upload: the connection cannot be kept as if the request were complete.
        assert!(reply.closes(), "{what}: an answer to an unfinished upload must close: {reply:?}");
        let _ = conn.write_all(&body[u.first..]).await;
    }
    match expect {
        Expect::Refused => {
            assert_eq!(reply.status, 502, "{what}: {reply:?}");
            let json: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
            assert_eq!(json["error_description"], "the application sent an invalid response", "{what}: {reply:?}");
        }
        Expect::Relayed(status, body, length) => {
            assert_eq!(reply.status, status, "{what}: {reply:?}");
            assert!(!reply.truncated, "{what}: {reply:?}");
            assert_eq!(reply.body, body, "{what}: {reply:?}");
            assert!(reply.all("transfer-encoding").len() <= 1, "{what}: {reply:?}");
            assert!(reply.all("content-length").len() <= 1, "{what}: several lengths relayed: {reply:?}");
            if let Some(len) = length {
                assert_eq!(reply.all("content-length"), vec![len], "{what}: {reply:?}");
            }
            assert!(reply.all("x-forged").is_empty(), "{what}: {reply:?}");
        }
        Expect::Truncated(status, partial) => {
            assert_eq!(reply.status, status, "{what}: {reply:?}");
            assert!(reply.truncated, "{what}: a cut body must not look complete: {reply:?}");
            assert!(partial.starts_with(&reply.body), "{what}: {reply:?}");
        }
        Expect::RelayedOr502(status, body) => {
            assert!(reply.status == status || reply.status == 502, "{what}: {reply:?}");
            if reply.status == status {
                assert_eq!(reply.body, body, "{what}: {reply:?}");
            }
        }
    }
    // The downstream connection: kept and usable, or closed in order — never left hanging.
    if !reply.truncated && !reply.closes() {
        let next = format!("GET /same?after={path}&round={round} HTTP/1.1\r\nHost: app.test\r\n\r\n");
        conn.write_all(next.as_bytes()).await.expect("write");
        let again = read_reply(&mut conn, "GET").await.unwrap_or_else(|| panic!("{what}: kept connection unusable"));
        assert_eq!(again.status, 200, "{what}: {again:?}");
        assert_eq!(again.body, format!("own /same?after={path}&round={round}").as_bytes(), "{what}: {again:?}");
    } else {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(WAIT, conn.read_to_end(&mut rest)).await;
        let read = read.unwrap_or_else(|_| panic!("{what}: the downstream connection was left hanging"));
        if !reply.truncated {
            // A complete answer that announced the close is followed by an orderly one.
            assert!(read.is_ok() && rest.is_empty(), "{what}: {read:?} {rest:?}");
        }
    }

    // Another user, on another connection, gets its own response.
    let other = format!("/other?after={path}&round={round}");
    let mut conn = TcpStream::connect(p.proxy_addr).await.expect("connect");
    conn.write_all(format!("GET {other} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let theirs = read_reply(&mut conn, "GET").await.unwrap_or_else(|| panic!("{what}: the next user got nothing"));
    assert_eq!(theirs.status, 200, "{what}: the next user got {theirs:?}");
    assert_eq!(theirs.body, format!("own {other}").as_bytes(), "{what}: the next user got {theirs:?}");

    // That upstream connection carried the anomaly and nothing after it.
    let carried = app.requests_on_connection_of(&target);
    assert_eq!(carried.last().map(String::as_str), Some(target.as_str()), "{what}: connection reused: {carried:?}");
}

/// SECURITY UPS-04, SMUG-01: framing that cannot be relayed faithfully — `Transfer-Encoding`
/// with `Content-Length` (either order, and the response-splitting shape with a forged response
/// behind a chunked body), a transfer coding other than `chunked` (`gzip, chunked`, `identity`,
/// `chunked` twice), a 1xx with a body, and a storm of 1xx — is a 502 `upstream_protocol`,
/// metered as a protocol error; the next user gets its own response and the connection is never
/// reused.
#[tokio::test]
async fn unrelayable_upstream_framing_is_502_and_the_connection_is_not_reused() {
    let app = ScriptedApp::start().await;
    let p = proxy_for(&app).await;
    let refused = [
        "/cl-te",
        "/te-cl",
        "/cl-te-split",
        "/te-gzip",
        "/te-twice",
        "/te-identity",
        "/informational-body",
        "/informational-storm",
    ];
    for round in 0..3 {
        for path in refused {
            check(&p, &app, "GET", path, None, Expect::Refused, round).await;
        }
    }
    let n = (3 * refused.len()) as f64;
    assert_eq!(p.metric("portcullis_upstream_errors_total", &[("kind", "protocol")]), n, "{}", p.metrics());
    assert_eq!(p.reason_count("upstream_protocol"), n);
}

/// SECURITY UPS-04, SMUG-03: framing hyper's client accepts and that can be relayed correctly is
/// re-framed — one length, computed from the body actually read — and the connection that
/// carried it is not reused: repeated identical `Content-Length` (two fields, or a list), a body
/// longer than its `Content-Length`, a body behind a `HEAD` response or a 204/304 (sent at once,
/// or only once another request arrives), 1xx before the final response, and a body delimited
/// by the connection's close.
#[tokio::test]
async fn re_framed_upstream_responses_are_relayed_and_the_connection_is_not_reused() {
    let app = ScriptedApp::start().await;
    let p = proxy_for(&app).await;
    let forged_len: &'static str = Box::leak(FORGED.len().to_string().into_boxed_str());
    let cases: Vec<(&str, &str, Expect)> = vec![
        ("GET", "/dup-cl", Expect::Relayed(200, b"hello", Some("5"))),
        ("GET", "/cl-list", Expect::Relayed(200, b"hello", Some("5"))),
        ("GET", "/longer", Expect::Relayed(200, b"hello", Some("5"))),
        ("HEAD", "/head-body", Expect::Relayed(200, b"", Some(forged_len))),
        ("HEAD", "/head-late", Expect::Relayed(200, b"", Some(forged_len))),
        ("GET", "/no-content-body", Expect::Relayed(204, b"", None)),
        ("GET", "/not-modified-body", Expect::Relayed(304, b"", None)),
        ("GET", "/informational", Expect::Relayed(200, b"ok", Some("2"))),
        ("GET", "/close-delimited", Expect::Relayed(200, b"hello", None)),
    ];
    for round in 0..3 {
        for (method, path, expect) in &cases {
            check(&p, &app, method, path, None, *expect, round).await;
        }
    }
    assert_eq!(p.metric("portcullis_upstream_errors_total", &[]), 0.0, "{}", p.metrics());
}

/// SECURITY UPS-04: an app that answers while the request is still being uploaded (and
/// then reads the rest, or closes without reading it) is relayed (or, when its reset wins, a 502)
/// with `Connection: close`; the client can finish its upload and sees an orderly close, and the
/// app's connection is not reused.
#[tokio::test]
async fn an_answer_to_an_unfinished_upload_is_relayed_and_the_connection_is_not_reused() {
    let app = ScriptedApp::start().await;
    let p = proxy_for(&app).await;
    for round in 0..5 {
        for total in [4 * 1024, 1024 * 1024] {
            let upload = Some(Upload { total, first: 1024 });
            check(&p, &app, "POST", "/early", upload, Expect::Relayed(200, b"ok", Some("2")), round).await;
            check(&p, &app, "POST", "/early-close", upload, Expect::RelayedOr502(200, b"ok"), round).await;
        }
    }
}

/// SECURITY UPS-03, UPS-04: a body that fails after its head was relayed — cut short of its
/// `Content-Length`, a chunked stream that stops, a malformed chunk — reaches the client as a
/// visibly truncated response followed by a close: the head is never lost (issue 12: "the
/// client's connection closes without a single response byte"), and the failure is metered.
#[tokio::test]
async fn a_body_failing_mid_stream_reaches_http1_clients_truncated_and_closed() {
    let app = ScriptedApp::start().await;
    let p = proxy_for(&app).await;
    for round in 0..3 {
        check(&p, &app, "GET", "/truncated-length", None, Expect::Truncated(200, b"hello"), round).await;
        check(&p, &app, "GET", "/truncated-chunked", None, Expect::Truncated(200, b"hello"), round).await;
        check(&p, &app, "GET", "/bad-chunk", None, Expect::Truncated(200, b""), round).await;
    }
    let metrics = p.metrics();
    assert_eq!(metric(&metrics, "portcullis_upstream_errors_total", &[("kind", "reset")]), 6.0, "{metrics}");
    assert_eq!(metric(&metrics, "portcullis_upstream_errors_total", &[("kind", "protocol")]), 3.0, "{metrics}");
}

/// SECURITY UPS-04: over HTTP/2 a body failing mid-stream resets that stream (the client sees an
/// error, not a complete body) and the connection keeps serving other streams.
#[tokio::test]
async fn a_body_failing_mid_stream_resets_only_that_http2_stream() {
    let app = ScriptedApp::start().await;
    let p = proxy_for(&app).await;
    let stream = TcpStream::connect(p.proxy_addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.expect("h2 handshake");
    tokio::spawn(connection);
    let authority = p.proxy_addr.to_string();
    for path in ["/truncated-length", "/truncated-chunked", "/bad-chunk"] {
        let req = http::Request::get(format!("http://{authority}{path}")).body(Empty::<Bytes>::new()).unwrap();
        sender.ready().await.expect("connection alive");
        let resp = tokio::time::timeout(WAIT, sender.send_request(req)).await.expect("timeout").expect(path);
        assert_eq!(resp.status(), 200, "{path}");
        let body = tokio::time::timeout(WAIT, resp.into_body().collect()).await.expect("the stream was left hanging");
        assert!(body.is_err(), "{path}: a cut body arrived as if complete: {body:?}");

        let req =
            http::Request::get(format!("http://{authority}/other?after={path}")).body(Empty::<Bytes>::new()).unwrap();
        sender.ready().await.expect("connection alive");
        let resp = tokio::time::timeout(WAIT, sender.send_request(req)).await.expect("timeout").expect(path);
        assert_eq!(resp.status(), 200, "{path}");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(body, format!("own /other?after={path}").as_bytes(), "{path}");
    }
}
