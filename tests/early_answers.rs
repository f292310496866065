//! SPEC §3 "A refusal never costs the client its connection silently" (issue 12, item 2): every
//! answer Portcullis gives before it has read the request body (400, 401, 403, 405, 414, 503, and
//! the 502 of an upstream that could not take the body) either discards the body and keeps the
//! connection, or says `Connection: close` and closes only after the response is written, with a
//! lingering close so that a client still sending its body reads the answer instead of a reset.
//!
//! The clients here are raw sockets that behave like the strict ones (Python `requests`, most
//! HTTP/1.1 libraries): write the whole request, body included, then read the response; and, when
//! the response did not say `Connection: close`, send the next request on the same connection.
//! HTTP/2 is checked with hyper's client connection, so each stream's fate is visible.

mod support;

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bodies up to this size are read and discarded so the connection can be kept (the bound is
/// Portcullis's `DRAIN_BYTES`); bigger ones are answered at once with `Connection: close`.
const DRAIN_BOUND: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length,
    Chunked,
}

/// A request head plus a body of `size` bytes framed as `framing`. `extra` lines go in as given.
fn with_body(method: &str, target: &str, extra: &[(&str, &str)], framing: Framing, size: usize) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: portcullis.test\r\n");
    for (n, v) in extra {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    match framing {
        Framing::Length => out.push_str(&format!("Content-Length: {size}\r\n\r\n")),
        Framing::Chunked => out.push_str("Transfer-Encoding: chunked\r\n\r\n"),
    }
    let mut bytes = out.into_bytes();
    let body = pattern_bytes(size);
    match framing {
        Framing::Length => bytes.extend_from_slice(&body),
        Framing::Chunked => {
            for chunk in body.chunks(16 * 1024) {
                bytes.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                bytes.extend_from_slice(chunk);
                bytes.extend_from_slice(b"\r\n");
            }
            bytes.extend_from_slice(b"0\r\n\r\n");
        }
    }
    bytes
}

/// Whether the response asked for the connection to be closed.
fn says_close(resp: &RawResponse) -> bool {
    resp.headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("connection") && v.to_ascii_lowercase().contains("close"))
}

/// Read until EOF (bounded). `Ok(bytes)` when the peer closed, `Err` on a reset.
async fn read_to_eof(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut rest))
        .await
        .expect("the connection was neither kept nor closed")?;
    Ok(rest)
}

/// One strict client exchange on a fresh connection: write all of `request` (a failed write is
/// what a client sees when the server closed without reading: it still tries to read, as urllib3
/// does), read one response, then either use the kept connection for a second request or see it
/// closed after the response. Panics with `what` on any broken promise. Returns the response.
async fn strict_exchange(addr: SocketAddr, request: &[u8], what: &str) -> RawResponse {
    strict_exchange_then(addr, request, 200, what).await
}

/// As [`strict_exchange`], when the follow-up request is expected to get `next_status`.
async fn strict_exchange_then(addr: SocketAddr, request: &[u8], next_status: u16, what: &str) -> RawResponse {
    let mut conn = RawConn::connect(addr).await;
    let wrote = tokio::time::timeout(WAIT, conn.stream.write_all(request))
        .await
        .unwrap_or_else(|_| panic!("{what}: the server neither read the body nor closed the connection"));
    let resp = conn.send(b"").await;
    assert_ne!(resp.status, 0, "{what}: no response at all (write: {wrote:?})");
    assert!(resp.body_json()["request_id"].is_string(), "{what}: incomplete response: {}", resp.text);
    // A client that stops at a failed write (curl, Java's HttpURLConnection) would never have
    // looked at the response: the server must take the whole request, body included, even when
    // it answers without reading it (lingering close).
    assert!(wrote.is_ok(), "{what}: the client could not finish writing its request: {wrote:?}");
    if says_close(&resp) {
        // Closed after the response was written: an orderly EOF, no extra bytes, never a hang.
        match read_to_eof(&mut conn.stream).await {
            Ok(rest) => assert!(rest.is_empty(), "{what}: bytes after a closing response: {rest:?}"),
            Err(e) => panic!("{what}: the connection was reset instead of closed: {e}"),
        }
    } else {
        // Kept: the promise is that the next request on it works.
        let next = conn.send(b"GET /public/next HTTP/1.1\r\nHost: portcullis.test\r\nConnection: close\r\n\r\n").await;
        assert_eq!(
            next.status, next_status,
            "{what}: keep-alive was promised but the next request failed: {}",
            next.text
        );
    }
    resp
}

/// The app saw the follow-up requests of kept connections, and nothing that was refused.
fn assert_only_follow_ups_reached_the_app(p: &Proxy) {
    let paths: Vec<String> = p.echo.requests().iter().map(|r| r.path().to_owned()).collect();
    assert_eq!(paths.len(), p.echo.count(), "a request head reached the app without completing: {paths:?}");
    assert!(paths.iter().all(|path| path == "/public/next"), "a refused request reached the app: {paths:?}");
}

/// SECURITY DOS-02 (an unread body is handled within bounds): a 401 for a body of every size and
/// both framings, repeated to beat races. Bodies within the bound are discarded and the connection is
/// kept; bigger ones get `Connection: close`, and the client — which writes its whole body before
/// reading, as curl and most HTTP/1.1 libraries do — still reads the full 401 (lingering close)
/// and could write all of its body, never meeting a reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_of_bodies_of_every_size_keep_or_cleanly_close_the_connection() {
    let p = start_proxy(&config("access", PUBLIC_AND_API)).await;
    for (size, rounds) in [(0, 50), (1024, 50), (100 * 1024, 50), (10 * 1024 * 1024, 3)] {
        for framing in [Framing::Length, Framing::Chunked] {
            for round in 0..rounds {
                let what = format!("POST {size} bytes {framing:?} round {round}");
                let req = with_body("POST", "/api/upload", &[], framing, size);
                let resp = strict_exchange(p.proxy_addr, &req, &what).await;
                assert_eq!(resp.status, 401, "{what}: {}", resp.text);
                if size <= DRAIN_BOUND {
                    assert!(!says_close(&resp), "{what}: a small body should be discarded, the connection kept");
                } else {
                    assert!(says_close(&resp), "{what}: a body over the bound must not be read to keep the connection");
                }
            }
        }
    }
    assert_only_follow_ups_reached_the_app(&p);
}

/// SECURITY SMUG-09, SMUG-11, PATH-11, RULE-01, JWKS-01: every early answer, not only 401 — a
/// malformed request (400), no route (403), TRACE (405), an over-long target (414) and unusable
/// keys (503)
/// — given with a body still unread, keeps its connection usable or closes it cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_early_answer_keeps_or_cleanly_closes_the_connection() {
    let p = start_proxy(&config("access", PUBLIC_AND_API)).await;
    let long = format!("/api/{}", "a".repeat(9000));
    type Case<'a> = (u16, &'a str, String, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        (400, "POST", "/public/x".into(), vec![("X-Bad", "a"), ("Host", "b")]),
        (401, "POST", "/api/x".into(), vec![]),
        (403, "POST", "/nowhere".into(), vec![]),
        (405, "TRACE", "/api/x".into(), vec![]),
        (414, "POST", long, vec![]),
    ];
    for (status, method, target, extra) in &cases {
        for framing in [Framing::Length, Framing::Chunked] {
            for size in [1024, 200 * 1024] {
                for round in 0..10 {
                    let what = format!("{status} {method} {size} bytes {framing:?} round {round}");
                    let req = with_body(method, target, extra, framing, size);
                    let resp = strict_exchange(p.proxy_addr, &req, &what).await;
                    assert_eq!(resp.status, *status, "{what}: {}", resp.text);
                }
            }
        }
    }
    assert_only_follow_ups_reached_the_app(&p);

    // 503: the issuer's keys cannot be fetched.
    let down = setup(&config("access", PUBLIC_AND_API)).jwks_mode(Mode::Down).start().await;
    let token = format!("Bearer {}", down.mint_access("alice", &[], "openid"));
    for framing in [Framing::Length, Framing::Chunked] {
        for size in [1024, 200 * 1024] {
            let what = format!("503 {size} bytes {framing:?}");
            let req = with_body("POST", "/api/x", &[("Authorization", &token)], framing, size);
            let resp = strict_exchange(down.proxy_addr, &req, &what).await;
            assert_eq!(resp.status, 503, "{what}: {}", resp.text);
        }
    }
}

/// SECURITY UPS-01: the 502 of an upstream that refuses connections, for a request whose body
/// was handed to the (failed) upstream exchange and never read, follows the same rule.
#[tokio::test]
async fn upstream_failure_with_an_unread_body_keeps_or_cleanly_closes_the_connection() {
    let p = setup(&config("access", PUBLIC_AND_API))
        .upstream_url(format!("http://127.0.0.1:{}", closed_port()))
        .start()
        .await;
    for framing in [Framing::Length, Framing::Chunked] {
        for size in [1024, 200 * 1024] {
            for round in 0..10 {
                let what = format!("502 {size} bytes {framing:?} round {round}");
                let req = with_body("POST", "/public/x", &[], framing, size);
                // The follow-up goes to the same missing upstream: a complete 502 is what it gets.
                let resp = strict_exchange_then(p.proxy_addr, &req, 502, &what).await;
                assert_eq!(resp.status, 502, "{what}: {}", resp.text);
            }
        }
    }
}

/// SECURITY DOS-02: a client that announces a big body (or a chunked one) and then stalls never
/// holds the connection: the answer comes at once (or after the short drain bound), says
/// `Connection: close`, and the connection is closed even though the client never finishes.
#[tokio::test]
async fn a_stalled_body_over_the_bound_gets_its_answer_and_the_connection_is_closed() {
    let p = start_proxy(&config("access", PUBLIC_AND_API)).await;
    let heads: [&[u8]; 2] = [
        b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 10485760\r\n\r\n0123456789",
        b"POST /api/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n",
    ];
    for head in heads {
        let mut conn = RawConn::connect(p.proxy_addr).await;
        let resp = conn.send(head).await;
        assert_eq!(resp.status, 401, "{}", resp.text);
        assert!(says_close(&resp), "{}", resp.text);
        let rest = read_to_eof(&mut conn.stream).await.expect("an orderly close");
        assert!(rest.is_empty());
    }
}

/// RFC 9110 §10.1.1: a client that sent `Expect: 100-continue` is waiting for permission to send
/// its body. A refusal must not invite it (no `100 Continue`) and, since the client may send the
/// body anyway, says `Connection: close`.
#[tokio::test]
async fn refusing_an_expect_continue_request_does_not_invite_the_body() {
    let p = start_proxy(&config("access", PUBLIC_AND_API)).await;
    let mut conn = RawConn::connect(p.proxy_addr).await;
    let resp =
        conn.send(b"POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n").await;
    assert_eq!(resp.status, 401, "{}", resp.text);
    assert!(!resp.text.contains("100 Continue"), "{}", resp.text);
    assert!(says_close(&resp), "{}", resp.text);
    assert!(read_to_eof(&mut conn.stream).await.expect("an orderly close").is_empty());
}

/// HTTP/2: a refusal given before the request body was read ends that stream only (the client
/// stops sending), and the connection keeps serving other streams.
#[tokio::test]
async fn http2_refusals_end_the_stream_and_the_connection_lives() {
    let p = start_proxy(&config("access", PUBLIC_AND_API)).await;
    let stream = TcpStream::connect(p.proxy_addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.expect("h2 handshake");
    let driver = tokio::spawn(connection);
    let authority = p.proxy_addr.to_string();
    for size in [0, 1024, 100 * 1024, 4 * 1024 * 1024] {
        for round in 0..5 {
            let what = format!("h2 POST {size} bytes round {round}");
            let req = http::Request::post(format!("http://{authority}/api/upload"))
                .body(Full::new(Bytes::from(pattern_bytes(size))))
                .expect("request");
            tokio::time::timeout(WAIT, sender.ready())
                .await
                .expect("timeout")
                .unwrap_or_else(|e| panic!("{what}: connection lost: {e}"));
            let resp = tokio::time::timeout(WAIT, sender.send_request(req)).await.expect("timeout").expect(&what);
            assert_eq!(resp.status(), 401, "{what}");
            let body = tokio::time::timeout(WAIT, resp.into_body().collect()).await.expect("timeout").expect(&what);
            let json: serde_json::Value = serde_json::from_slice(&body.to_bytes()).expect("a JSON error body");
            assert!(json["request_id"].is_string(), "{what}: {json}");

            let get =
                http::Request::get(format!("http://{authority}/public/next")).body(Full::new(Bytes::new())).unwrap();
            tokio::time::timeout(WAIT, sender.ready())
                .await
                .expect("timeout")
                .unwrap_or_else(|e| panic!("{what}: connection lost: {e}"));
            let next = tokio::time::timeout(WAIT, sender.send_request(get)).await.expect("timeout").expect(&what);
            assert_eq!(next.status(), 200, "{what}: the connection did not survive the refusal");
        }
    }
    assert!(!driver.is_finished(), "the HTTP/2 connection ended");
    assert_eq!(p.echo.count(), 20, "only the follow-up GETs reach the app");
}
