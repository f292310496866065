//! Issue 15: the per-core pool of upstream HTTP/1 connections (`proxy::upstream::pool`), served
//! the way production serves (thread-per-core, `App::start`), against a raw-TCP scripted app on
//! loopback that records which connection carried which request. What the pool could break:
//! reusing keep-alive connections at all, re-sending a request when the idle connection it was
//! given had been closed by the app, and — never — re-sending one the app may have seen.
//!
//! Each test talks over one downstream keep-alive connection, so every request is served by the
//! same core, and so by the same pool.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// (connection, request target) in arrival order.
type Log = Arc<Mutex<Vec<(usize, String)>>>;

/// The scripted app. By path: `/close-after` answers, then closes the connection and reports it;
/// `/swallow` reads the request and closes without answering; anything else is answered
/// `own <target>` on a kept connection (`/chunked` chunked, `/empty` with a 204).
struct App {
    addr: SocketAddr,
    log: Log,
    closed: mpsc::UnboundedReceiver<usize>,
}

impl App {
    async fn start() -> App {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let log = Log::default();
        let (tx, closed) = mpsc::unbounded_channel();
        let l = log.clone();
        tokio::spawn(async move {
            let mut id = 0;
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, id, l.clone(), tx.clone()));
                id += 1;
            }
        });
        App { addr, log, closed }
    }

    fn log(&self) -> Vec<(usize, String)> {
        self.log.lock().unwrap().clone()
    }

    fn connections(&self) -> usize {
        self.log().iter().map(|(c, _)| c + 1).max().unwrap_or(0)
    }

    fn times_seen(&self, target: &str) -> usize {
        self.log().iter().filter(|(_, t)| t == target).count()
    }
}

async fn serve(mut stream: TcpStream, id: usize, log: Log, closed: mpsc::UnboundedSender<usize>) {
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let mut tmp = [0u8; 16 * 1024];
            match stream.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        buf.drain(..end + 4);
        let target = head.split(' ').nth(1).unwrap_or("").to_owned();
        log.lock().unwrap().push((id, target.clone()));
        let body = format!("own {target}");
        let answer = match target.split('?').next().unwrap_or("") {
            "/swallow" => return,
            "/empty" => "HTTP/1.1 204 No Content\r\n\r\n".to_owned(),
            "/chunked" => {
                format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n", body.len())
            }
            _ => format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()),
        };
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
        if target.starts_with("/close-after") {
            drop(stream);
            let _ = closed.send(id);
            return;
        }
    }
}

async fn proxy_for(app: &App) -> Proxy {
    const OPEN: &str = "routes:\n  - name: open\n    path: /**\n    auth: none\n";
    setup(&config("access", OPEN)).upstream_url(format!("http://{}", app.addr)).start().await
}

fn get(target: &str) -> Vec<u8> {
    request_bytes("GET", target, &[("Connection", "keep-alive")])
}

// Issue 15: a keep-alive upstream connection is reused across requests on one core, whatever
// the response's framing (a length, chunked, no body at all).
#[tokio::test]
async fn a_keep_alive_upstream_connection_is_reused_across_requests() {
    let app = App::start().await;
    let p = proxy_for(&app).await;
    let mut conn = RawConn::connect(p.proxy_addr).await;
    for (i, path) in ["/length", "/chunked", "/empty", "/length", "/chunked"].iter().enumerate() {
        let target = format!("{path}?n={i}");
        let r = conn.send(&get(&target)).await;
        if *path == "/empty" {
            assert_eq!(r.status, 204, "{target}: {}", r.text);
        } else {
            assert_eq!(r.status, 200, "{target}: {}", r.text);
            assert_eq!(r.body, format!("own {target}").as_bytes(), "{target}: {}", r.text);
        }
    }
    assert_eq!(app.connections(), 1, "one upstream connection for every request: {:?}", app.log());
}

// Issue 15: when the app closed the idle pooled connection, the next request still succeeds (on
// a new connection, sent again if hyper handed it back unwritten) and the app sees it once.
#[tokio::test]
async fn a_request_after_the_app_closed_the_idle_connection_succeeds_and_is_seen_once() {
    let mut app = App::start().await;
    let p = proxy_for(&app).await;
    let mut conn = RawConn::connect(p.proxy_addr).await;
    for round in 0..20 {
        let target = format!("/close-after?round={round}");
        let r = conn.send(&get(&target)).await;
        assert_eq!(r.status, 200, "{target}: {}", r.text);
        // The app has closed that connection before the next request is sent.
        assert_eq!(app.closed.recv().await, Some(round));
    }
    let r = conn.send(&get("/after")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body, b"own /after");
    assert_eq!(app.times_seen("/after"), 1, "{:?}", app.log());
    for round in 0..20 {
        assert_eq!(app.times_seen(&format!("/close-after?round={round}")), 1, "{:?}", app.log());
    }
    assert_eq!(app.connections(), 21, "{:?}", app.log());
}

// Issue 15: a request whose connection fails after it was written is never sent again — the app
// may have acted on it. The client gets 502 `upstream_reset`, and the app saw it once.
#[tokio::test]
async fn a_request_written_before_its_connection_failed_is_not_sent_again() {
    let app = App::start().await;
    let p = proxy_for(&app).await;
    let mut conn = RawConn::connect(p.proxy_addr).await;
    // First a pooled connection, so that the failing request goes out on a reused one.
    assert_eq!(conn.send(&get("/warm")).await.status, 200);
    let r = conn.send(&get("/swallow")).await;
    assert_eq!(r.status, 502, "{}", r.text);
    assert_eq!(app.times_seen("/swallow"), 1, "{:?}", app.log());
    assert_eq!(p.metric("portcullis_upstream_errors_total", &[("kind", "reset")]), 1.0);
    assert_eq!(p.reason_count("upstream_reset"), 1.0);
}
