//! Security catalog items (SECURITY.md) that need their own set-up: request-target and connection
//! limits, forwarding headers, HTTP/2 frame floods written by hand, a misbehaving upstream, the
//! JWKS fetch over TLS, and the bounded metric label set. Every test names the catalog IDs it
//! pins; `scripts/security-coverage.sh` checks that every ID is named by some test.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

const OPEN: &str = "routes:\n  - name: open\n    path: /**\n    auth: none\n";

// ---------------------------------------------------------------------------------------------
// PATH-11: request-target length

/// SECURITY PATH-11: a request target over `limits.max_uri_bytes` is a 414 before any of it is
/// examined; one too long to even fit hyper's head buffer (`max_header_bytes`) is a 431. Either
/// way the app sees nothing and the connection is answered, not left hanging.
#[tokio::test]
async fn over_long_request_targets_are_414_and_never_forwarded() {
    let p = start_proxy(&config("access", OPEN)).await;
    let fits = format!("/public/{}", "a".repeat(8_000));
    let resp = raw_response(p.proxy_addr, &request_bytes("GET", &fits, &[])).await;
    assert_eq!(resp.status, 200, "a target under the limit is served");
    assert_eq!(p.echo.last().target, fits);

    let query = format!("/public/x?q={}", "a".repeat(9_000));
    for target in [format!("/public/{}", "a".repeat(9_000)), query] {
        let resp = raw_response(p.proxy_addr, &request_bytes("GET", &target, &[])).await;
        assert_eq!(resp.status, 414, "{} bytes: {}", target.len(), &resp.text[..resp.text.len().min(200)]);
    }
    // 64 KiB and 1 MiB: over max_header_bytes, so 431 (Portcullis's own limit, or hyper's backstop
    // for a head that does not even fit twice that).
    for n in [65_536, 1_048_576] {
        let target = format!("/public/{}", "a".repeat(n));
        let resp = raw_response(p.proxy_addr, &request_bytes("GET", &target, &[])).await;
        assert!(resp.status == 414 || resp.status == 431, "{n} bytes: status {}", resp.status);
    }
    assert_eq!(p.echo.count(), 1, "an over-long target reached the app");
}

/// SECURITY PATH-11: the limit is configurable under `limits:`.
#[tokio::test]
async fn max_uri_bytes_is_configurable() {
    let p = start_proxy(&config("access", &format!("limits:\n  max_uri_bytes: 300\n{OPEN}"))).await;
    let at = format!("/{}", "a".repeat(299));
    assert_eq!(raw_response(p.proxy_addr, &request_bytes("GET", &at, &[])).await.status, 200);
    let over = format!("/{}", "a".repeat(300));
    assert_eq!(raw_response(p.proxy_addr, &request_bytes("GET", &over, &[])).await.status, 414);
    assert_eq!(p.echo.count(), 1);
}

// ---------------------------------------------------------------------------------------------
// HDR-11: forwarding and original-URL headers

/// SECURITY HDR-11: client forwarding headers never reach the app as if the proxy had set
/// them: `X-Forwarded-Host`/`-Proto` are replaced by ours, `X-Forwarded-For` gets the peer
/// appended, and `Forwarded`, `X-Real-IP`, `X-Forwarded-Prefix`, original-URL and
/// method-override headers are removed (SPEC §4).
#[tokio::test]
async fn client_forwarding_and_original_url_headers_are_never_trusted() {
    let p = start_proxy(&config("access", PUBLIC_AND_API)).await;
    let auth = bearer(&p.mint_access("alice", &[], "openid"));
    let removed = [
        ("Forwarded", "for=127.0.0.1;host=evil.test;proto=https"),
        ("X-Real-IP", "127.0.0.1"),
        ("X-Forwarded-Prefix", "/admin"),
        ("X-Original-URL", "/api/admin/users"),
        ("X-Original-Uri", "/api/admin/users"),
        ("X-Rewrite-URL", "/api/admin/users"),
        ("X-Forwarded-Uri", "/api/admin/users"),
        ("X-Forwarded-Path", "/api/admin/users"),
        ("X-Envoy-Original-Path", "/api/admin/users"),
        ("X-HTTP-Method-Override", "DELETE"),
        ("X-HTTP-Method", "DELETE"),
        ("X-Method-Override", "DELETE"),
        // Beyond the SPEC's list: what gunicorn, Django, Rails, IIS and CGI apps also trust.
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Server", "evil.test"),
        ("X-Forwarded-Ssl", "on"),
        ("X-Forwarded-Scheme", "https"),
        ("X-Forwarded-Protocol", "ssl"),
        ("X-Client-IP", "127.0.0.1"),
        ("X-Original-Method", "DELETE"),
        ("Front-End-Https", "on"),
        ("X-Url-Scheme", "https"),
        ("Proxy", "http://evil.test:3128"),
    ];
    for (path, with_token) in [("/api/x", true), ("/public/x", false)] {
        let mut headers: Vec<(&str, &str)> =
            vec![("X-Forwarded-Host", "evil.test"), ("X-Forwarded-Proto", "https"), ("X-Forwarded-For", "127.0.0.2")];
        headers.extend_from_slice(&removed);
        if with_token {
            headers.push(("Authorization", &auth));
        }
        let resp = raw_response(p.proxy_addr, &request_bytes("GET", path, &headers)).await;
        assert_eq!(resp.status, 200, "{path}: {}", resp.text);
        let seen = p.echo.last();
        assert_eq!(seen.all("x-forwarded-host"), vec!["portcullis.test"], "{path}");
        assert_eq!(seen.all("x-forwarded-proto"), vec!["http"], "{path}");
        assert_eq!(seen.all("x-forwarded-for"), vec!["127.0.0.2, 127.0.0.1"], "{path}");
        for (name, _) in removed {
            assert!(seen.all(name).is_empty(), "{path}: client `{name}` reached the app: {seen:#?}");
        }
        assert_eq!(seen.method, "GET");
    }
}

// ---------------------------------------------------------------------------------------------
// DOS-07: connection limit

/// SECURITY DOS-07: beyond `limits.max_connections` new connections are closed at accept
/// (metered), while the admin listener keeps answering; a freed slot is usable again.
#[tokio::test]
async fn connections_over_the_limit_are_closed_and_admin_stays_up() {
    let p = start_proxy(&config("access", &format!("limits:\n  max_connections: 2\n{OPEN}"))).await;
    // Two keep-alive connections that have each been served: both hold a slot.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut conn = RawConn::connect(p.proxy_addr).await;
        let resp = conn.send(&request_bytes("GET", "/x", &[("Connection", "keep-alive")])).await;
        assert_eq!(resp.status, 200);
        held.push(conn);
    }
    let mut third = RawConn::connect(p.proxy_addr).await;
    let resp = third.send(&request_bytes("GET", "/x", &[])).await;
    assert_eq!(resp.status, 0, "a third connection was served: {}", resp.text);
    assert!(p.metric("portcullis_connections_rejected_total", &[]) >= 1.0);
    assert_eq!(p.admin_get("/healthz").await.status(), 200, "admin must stay responsive");

    drop(held.pop());
    eventually("a freed slot serves a new connection", || async {
        raw_response(p.proxy_addr, &request_bytes("GET", "/x", &[])).await.status == 200
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// DOS-02: slow request body

/// SECURITY DOS-02: a request body that stops arriving is cut after `upstream.idle_timeout`
/// (the body idle timeout): the client gets a 400, the half-sent upstream request is aborted (the
/// app never sees a complete request), and it is not blamed on the app.
#[tokio::test]
async fn stalled_request_body_is_cut_and_the_upstream_request_aborted() {
    let yaml = with_upstream_opts(&config("access", PUBLIC_AND_API), &["idle_timeout: 1s"]);
    let p = start_proxy(&yaml).await;
    let token = p.mint_access("alice", &[], "openid");
    let head = format!(
        "POST /api/upload HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\nContent-Length: 10000000\r\n\r\nabc"
    );
    let mut conn = RawConn::connect(p.proxy_addr).await;
    let resp = conn.send(head.as_bytes()).await;
    assert_eq!(resp.status, 400, "{}", resp.text);
    assert!(p.echo.requests().is_empty(), "the app received a complete request");
    assert_eq!(p.metric("portcullis_upstream_errors_total", &[]), 0.0, "{}", p.metrics());
    assert_eq!(p.metric("portcullis_requests_total", &[("route", "api"), ("reason", "bad_request")]), 1.0);
}

// ---------------------------------------------------------------------------------------------
// UPS-05: client abort

/// SECURITY UPS-05: a client that goes away while the app is still working is recorded as
/// `client_abort` (not an upstream error), and the pending upstream request is dropped.
#[tokio::test]
async fn client_abort_is_recorded_as_client_abort() {
    let p = start_proxy(&config("access", PUBLIC_AND_API)).await;
    p.echo.set_delay(Duration::from_secs(2));
    let mut stream = TcpStream::connect(p.proxy_addr).await.expect("connect");
    stream.write_all(&request_bytes("GET", "/public/slow", &[])).await.expect("write");
    // The request is at the app (which answers only after 2 s); now vanish.
    p.echo.wait_for_count(1).await;
    drop(stream);
    eventually("a client_abort to be recorded", || async {
        p.metric("portcullis_requests_total", &[("decision", "error"), ("reason", "client_abort")]) == 1.0
    })
    .await;
    assert_eq!(p.metric("portcullis_upstream_errors_total", &[]), 0.0, "{}", p.metrics());
}

// ---------------------------------------------------------------------------------------------
// SMUG-12: HTTP/2 floods, written frame by frame

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ENHANCE_YOUR_CALM: u32 = 0xb;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// `GET /x` for authority `a`, HPACK-encoded with static-table entries only.
fn get_block() -> Vec<u8> {
    // :method GET, :scheme http, :path / (indexed); :authority "a" (literal, not indexed).
    vec![0x82, 0x86, 0x84, 0x01, 0x01, b'a']
}

/// Read frames until a GOAWAY (returns its error code) or EOF / 5 s (returns None).
async fn read_goaway(stream: &mut TcpStream) -> Option<u32> {
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        while buf.len() >= 9 {
            let len = (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            if buf[3] == GOAWAY && len >= 8 {
                return Some(u32::from_be_bytes([buf[13], buf[14], buf[15], buf[16]]));
            }
            buf.drain(..9 + len);
        }
        let mut tmp = [0u8; 16 * 1024];
        match tokio::time::timeout_at(deadline, stream.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

async fn h2_connect(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut hello = PREFACE.to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    stream.write_all(&hello).await.expect("preface");
    stream
}

/// SECURITY SMUG-12: an endless CONTINUATION sequence (RUSTSEC-2024-0332) is cut with GOAWAY
/// ENHANCE_YOUR_CALM after a handful of frames instead of being buffered, and the server keeps
/// serving other clients.
#[tokio::test]
async fn http2_continuation_flood_is_cut_with_goaway() {
    let p = start_proxy(&config("access", OPEN)).await;
    let mut stream = h2_connect(p.proxy_addr).await;
    let mut flood = frame(HEADERS, 0, 1, &get_block());
    // Literal header fields without indexing, new name: never END_HEADERS.
    let fragment: Vec<u8> = (0..1000).flat_map(|_| [0x00, 0x01, b'x', 0x01, b'y']).collect();
    for _ in 0..2_000 {
        flood.extend(frame(CONTINUATION, 0, 1, &fragment));
    }
    // The server may close before all 10 MB are written; that is the point.
    let writer = tokio::spawn(async move {
        let _ = stream.write_all(&flood).await;
        stream
    });
    let mut stream = writer.await.expect("writer");
    assert_eq!(read_goaway(&mut stream).await, Some(ENHANCE_YOUR_CALM));
    assert_eq!(p.echo.count(), 0);
    assert_eq!(p.get("/after", None).await.status(), 200, "other clients are still served");
}

/// SECURITY SMUG-12: Rapid Reset (CVE-2023-44487): HEADERS + RST_STREAM pairs as fast as the
/// socket takes them. The server bounds the streams reset before it accepted them (GOAWAY
/// ENHANCE_YOUR_CALM), the flood reaches the app at most a bounded number of times, and other
/// clients keep being served. `max_concurrent_streams` is 100.
#[tokio::test]
async fn http2_rapid_reset_is_bounded() {
    let p = start_proxy(&config("access", OPEN)).await;
    let mut stream = h2_connect(p.proxy_addr).await;
    let mut flood = Vec::new();
    for i in 0..5_000u32 {
        let id = 2 * i + 1;
        flood.extend(frame(HEADERS, END_HEADERS | END_STREAM, id, &get_block()));
        flood.extend(frame(RST_STREAM, 0, id, &8u32.to_be_bytes())); // CANCEL
    }
    let writer = tokio::spawn(async move {
        let _ = stream.write_all(&flood).await;
        stream
    });
    let mut stream = writer.await.expect("writer");
    assert_eq!(read_goaway(&mut stream).await, Some(ENHANCE_YOUR_CALM));
    assert!(p.echo.count() < 5_000, "every reset stream was still forwarded");
    assert_eq!(p.get("/after", None).await.status(), 200, "other clients are still served");
}

// ---------------------------------------------------------------------------------------------
// UPS-04: a misbehaving upstream

/// A raw app that answers each request according to its path, keeping connections open, and
/// records which connection carried which path.
struct RawApp {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<(usize, String)>>>,
}

impl RawApp {
    async fn start() -> RawApp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let log: Arc<Mutex<Vec<(usize, String)>>> = Arc::default();
        let conns = Arc::new(AtomicUsize::new(0));
        let l = log.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { continue };
                let id = conns.fetch_add(1, Ordering::SeqCst);
                let log = l.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let mut tmp = [0u8; 4096];
                        let Ok(n) = stream.read(&mut tmp).await else { return };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&tmp[..n]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        buf.drain(..end + 4);
                        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                        log.lock().unwrap().push((id, path.clone()));
                        let response: &[u8] = match path.as_str() {
                            "/bad-status" => b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nok",
                            "/nul" => b"HTTP/1.1 200 OK\r\nX-A: b\x00c\r\nContent-Length: 2\r\n\r\nok",
                            "/garbage" => b"\x16\x03\x01 not http at all\r\n\r\n",
                            "/hop" => b"HTTP/1.1 200 OK\r\nConnection: X-User-Sub, X-Secret\r\nX-Secret: s\r\nX-User-Sub: app\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\nContent-Length: 2\r\n\r\nok",
                            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                        };
                        if stream.write_all(response).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        RawApp { addr, log }
    }

    fn conn_of(&self, path: &str) -> usize {
        let log = self.log.lock().unwrap();
        log.iter().rev().find(|(_, p)| p == path).map(|(c, _)| *c).unwrap_or_else(|| panic!("{path} not seen: {log:?}"))
    }
}

/// SECURITY UPS-04: an invalid status line, a NUL in a header or non-HTTP bytes from the app are
/// a 502 `upstream_protocol`, and that upstream connection is discarded (the next request goes
/// out on a new one). Hop-by-hop response headers, and those the app's `Connection` names, are
/// stripped before the response reaches the client.
#[tokio::test]
async fn malformed_upstream_responses_are_502_and_the_connection_is_discarded() {
    let app = RawApp::start().await;
    let p = setup(&config("access", OPEN)).upstream_url(format!("http://{}", app.addr)).start().await;
    for bad in ["/bad-status", "/nul", "/garbage"] {
        let resp = p.get("/ok", None).await;
        assert_eq!(resp.status(), 200);
        let resp = p.get(bad, None).await;
        assert_eq!(resp.status(), 502, "{bad}");
        let resp = p.get("/ok", None).await;
        assert_eq!(resp.status(), 200);
        assert_ne!(app.conn_of("/ok"), app.conn_of(bad), "{bad}: the broken connection was reused");
    }
    assert_eq!(p.metric("portcullis_upstream_errors_total", &[("kind", "protocol")]), 3.0, "{}", p.metrics());
    assert_eq!(p.reason_count("upstream_protocol"), 3.0);

    let resp = p.get("/hop", None).await;
    assert_eq!(resp.status(), 200);
    for name in ["x-secret", "x-user-sub", "keep-alive", "proxy-authenticate"] {
        assert!(!resp.headers().contains_key(name), "response header {name} reached the client: {:?}", resp.headers());
    }
    assert!(
        resp.headers().get_all("connection").iter().all(|v| !v.to_str().unwrap_or("").contains("X-")),
        "{:?}",
        resp.headers()
    );
}

// ---------------------------------------------------------------------------------------------
// OUT-01: the JWKS fetch verifies TLS

/// A TLS front for `backend` with a fresh self-signed certificate for `san`; returns the
/// address and the certificate PEM path.
async fn tls_front(backend: SocketAddr, san: &str, dir: &std::path::Path) -> (SocketAddr, std::path::PathBuf) {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let (cert, key) = self_signed_cert(dir, "jwks", san);
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(&cert).unwrap().collect::<Result<_, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(&key).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(stream).await else { return };
                let Ok(mut plain) = TcpStream::connect(backend).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (addr, cert)
}

/// The harness config with the JWKS at `jwks` (an https URL) and an optional `ca_file`.
fn https_jwks_config(jwks: &str, ca_file: Option<&std::path::Path>) -> String {
    let ca = ca_file.map(|f| format!("jwks:\n  ca_file: {}\n", f.display())).unwrap_or_default();
    config("access", &format!("{ca}{PUBLIC_AND_API}")).replace("@JWKS@", jwks)
}

/// SECURITY OUT-01: keys are fetched only over verified TLS. A certificate from an untrusted
/// issuer, or a trusted one for another host name, is a failed fetch (`result="tls"`): the proxy
/// stays not ready and protected routes are 503, never served with keys from that endpoint. The
/// same endpoint with its CA configured works, so the failures are the certificate checks.
#[tokio::test]
async fn jwks_fetch_refuses_untrusted_or_misnamed_certificates() {
    let dir = temp_dir("out01");
    let cases = [("untrusted", "IP:127.0.0.1", false, false), ("wrong-name", "DNS:jwks.other.test", true, false)];
    for (name, san, trust, _) in cases {
        let sub = dir.join(name);
        std::fs::create_dir_all(&sub).unwrap();
        // A throwaway JWKS backend; the harness's own one is replaced through @JWKS@.
        let issuer = portcullis::tools::mint::SigningKey::generate("k1").unwrap();
        let backend = JwksServer::start(issuer.jwks()).await;
        let (front, cert) = tls_front(backend.addr, san, &sub).await;
        let url = format!("https://127.0.0.1:{}{JWKS_PATH}", front.port());
        let p = setup(&https_jwks_config(&url, trust.then_some(cert.as_path()))).no_wait().start().await;
        eventually(&format!("{name}: a tls fetch failure"), || async {
            p.metric("portcullis_jwks_fetch_total", &[("result", "tls")]) >= 1.0
        })
        .await;
        assert_eq!(p.metric("portcullis_jwks_fetch_total", &[("result", "ok")]), 0.0, "{name}");
        assert_eq!(backend.hits(), 0, "{name}: a request crossed an unverified TLS session");
        assert_eq!(p.readyz().await, 503, "{name}");
        let token = p.mint_access("alice", &[], "openid");
        assert_eq!(p.get("/api/x", Some(&token)).await.status(), 503, "{name}");
    }

    // Positive control: the same kind of endpoint, its certificate trusted and correctly named.
    let sub = dir.join("trusted");
    std::fs::create_dir_all(&sub).unwrap();
    let issuer = portcullis::tools::mint::SigningKey::generate("k1").unwrap();
    let backend = JwksServer::start(issuer.jwks()).await;
    let (front, cert) = tls_front(backend.addr, "IP:127.0.0.1", &sub).await;
    let url = format!("https://127.0.0.1:{}{JWKS_PATH}", front.port());
    let p = setup(&https_jwks_config(&url, Some(&cert))).no_wait().start().await;
    p.wait_ready().await;
    assert!(backend.hits() >= 1);
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// OBS-03 / OBS-05: metrics

fn series(metrics: &str) -> Vec<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.rsplit_once(' ').unwrap().0.to_owned())
        .collect()
}

/// SECURITY OBS-03: label values come from config and closed enums, never from traffic. After
/// one request of each kind, hundreds more with random kids, paths, user agents and request ids
/// add no series at all.
#[tokio::test]
async fn metric_series_do_not_grow_with_attacker_controlled_values() {
    let p = start_proxy(&config("access", PUBLIC_AND_API)).await;
    let round = |i: usize| {
        let p = &p;
        async move {
            let forged = forged_with_kid(&p.iss(), &format!("kid-{i}-{}", rand_hex()));
            let ua = format!("agent-{i}-{}", rand_hex());
            let paths =
                [format!("/nowhere/{}", rand_hex()), format!("/public/{}", rand_hex()), format!("/api/{}", rand_hex())];
            for path in &paths {
                let _ =
                    p.client.get(p.url(path)).header("user-agent", &ua).header("x-request-id", rand_hex()).send().await;
                let _ = p.client.get(p.url(path)).bearer_auth(&forged).send().await;
            }
        }
    };
    // Two warm-up rounds: a second unknown kid inside the cooldown adds the (per-issuer)
    // refetch-suppressed series.
    round(0).await;
    round(1).await;
    let before = series(&p.metrics());
    for i in 2..60 {
        round(i).await;
    }
    let after = series(&p.metrics());
    assert_eq!(
        after.len(),
        before.len(),
        "new series: {:?}",
        after.iter().filter(|s| !before.contains(s)).collect::<Vec<_>>()
    );
    assert!(!p.metrics().contains("kid-"), "a kid became a label");
}

fn rand_hex() -> String {
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(0x1234_5678);
    let n = N.fetch_add(0x9E37_79B9, Ordering::SeqCst);
    format!("{:x}", n.wrapping_mul(0x2545_F491_4F6C_DD1D))
}

/// A syntactically valid RS256-shaped token from `iss` with this `kid` and a junk signature.
fn forged_with_kid(iss: &str, kid: &str) -> String {
    use base64::Engine;
    let b64 = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let header = serde_json::json!({"alg": "RS256", "kid": kid, "typ": "JWT"});
    let claims = serde_json::json!({"sub": "x", "iss": iss, "exp": 4_000_000_000u64});
    format!("{}.{}.{}", b64(&header), b64(&claims), "c2ln".repeat(86))
}

/// SECURITY OBS-05: the signals an operator needs move with distinct labels: a JWKS outage
/// (`jwks_fetch_total{result!="ok"}`), forged and expired tokens (`reason`), and an app that is
/// down (`upstream_errors_total{kind="connect"}`, reason `upstream_connect`).
#[tokio::test]
async fn operators_can_tell_outages_attacks_and_expiry_apart() {
    let p = setup(&config("access", &format!("jwks:\n  kid_miss_cooldown: 1s\n{PUBLIC_AND_API}")))
        .upstream_url(format!("http://127.0.0.1:{}", closed_port()))
        .start()
        .await;
    let good = p.mint_access("alice", &[], "openid");
    assert_eq!(p.get("/api/x", Some(&good)).await.status(), 502);

    let mut expired = p.access_claims("alice", &[], "openid");
    expired["exp"] = serde_json::json!(portcullis::tools::mint::now() - 3600);
    assert_eq!(p.get("/api/x", Some(&p.mint(&expired))).await.status(), 401);

    let (head, rest) = good.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let tampered = format!("{head}.{}.{sig}", {
        use base64::Engine;
        let mut claims = p.access_claims("admin", &["Admins"], "openid");
        claims["iss"] = serde_json::json!(p.iss());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string())
    });
    assert_eq!(p.get("/api/x", Some(&tampered)).await.status(), 401);

    // JWKS outage: an unknown kid makes the proxy refetch from a failing endpoint.
    // (Retried, because a miss inside the cooldown after the startup fetch is suppressed.)
    p.jwks.set_mode(Mode::Status(503));
    let rotated = forged_with_kid(&p.iss(), "rotated");
    eventually("a failed JWKS fetch to be counted", || async {
        assert_eq!(p.get("/api/x", Some(&rotated)).await.status(), 401);
        p.metric("portcullis_jwks_fetch_total", &[("issuer", "main"), ("result", "http_error")]) >= 1.0
    })
    .await;

    assert_eq!(p.reason_count("upstream_connect"), 1.0);
    assert_eq!(p.metric("portcullis_upstream_errors_total", &[("kind", "connect")]), 1.0);
    assert_eq!(p.reason_count("expired"), 1.0);
    assert_eq!(p.reason_count("bad_signature"), 1.0);
    assert!(p.reason_count("unknown_kid") >= 1.0);
    assert!(p.metrics().contains("portcullis_jwks_last_success_timestamp_seconds{issuer=\"main\"}"));
}

// ---------------------------------------------------------------------------------------------
// CLM-08 / ALG-06: keys come only from configuration

/// SECURITY CLM-08, ALG-06: a token from an attacker's own pool — validly signed by that pool's
/// key, served at the JWKS URL its `iss` implies — is refused, and the proxy never contacts the
/// attacker's server: not for its `iss`, not for a trusted `iss` with the attacker's `kid`, not
/// for a `jku`/`x5u` header. The mock counts every request it receives.
#[tokio::test]
async fn tokens_from_another_pool_never_make_the_proxy_fetch_its_keys() {
    let p = start_proxy(&config("access", PUBLIC_AND_API)).await;
    let attacker_key = portcullis::tools::mint::SigningKey::generate("ka").unwrap();
    let attacker = JwksServer::start(attacker_key.jwks()).await;
    let mut claims = p.access_claims("mallory", &["Admins"], "openid");

    claims["iss"] = serde_json::json!(attacker.issuer_url());
    let own_pool = attacker_key.mint(&claims);
    let resp = p.get("/api/x", Some(&own_pool)).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(p.reason_count("bad_iss"), 1.0);

    claims["iss"] = serde_json::json!(p.iss());
    let trusted_iss = attacker_key.mint(&claims);
    assert_eq!(p.get("/api/x", Some(&trusted_iss)).await.status(), 401);
    assert_eq!(p.reason_count("unknown_kid"), 1.0);

    for header in ["jku", "x5u"] {
        let h = serde_json::json!({"alg": "RS256", "kid": "ka", "typ": "JWT", header: attacker.jwks_url()});
        let token = attacker_key.mint_with_header(&h, &claims);
        assert_eq!(p.get("/api/x", Some(&token)).await.status(), 401, "{header}");
    }
    assert_eq!(attacker.hits(), 0, "the proxy fetched keys from a URL a token named");
    assert_eq!(p.echo.count(), 0);
}

// ---------------------------------------------------------------------------------------------
// CLM-13 / CLM-17: what identity means

/// SECURITY CLM-13 (documented limitation): verification is local — no per-request call to
/// Cognito (the JWKS is not fetched again), so a token revoked by a global sign-out keeps working
/// until its `exp`. The README says so and recommends short access-token lifetimes.
#[tokio::test]
async fn verification_is_local_so_revocation_waits_for_exp() {
    let p = start_proxy(&config("access", PUBLIC_AND_API)).await;
    let token = p.mint_access("alice", &[], "openid");
    let hits = p.jwks.hits();
    for _ in 0..20 {
        assert_eq!(p.get("/api/x", Some(&token)).await.status(), 200);
    }
    assert_eq!(p.jwks.hits(), hits, "a request caused a call to the issuer");
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(readme.contains("**Revocation**"), "the limitation must stay documented");
}

/// SECURITY CLM-17: the identity is `sub`, never `username`, `cognito:username` or `email`.
#[tokio::test]
async fn identity_is_sub_never_username_or_email() {
    let p = start_proxy(&config("access", PUBLIC_AND_API)).await;
    let mut claims = p.access_claims("5f1c0d2e-uuid", &[], "openid");
    claims["username"] = serde_json::json!("admin");
    claims["cognito:username"] = serde_json::json!("admin");
    claims["email"] = serde_json::json!("admin@example.com");
    assert_eq!(p.get("/api/x", Some(&p.mint(&claims))).await.status(), 200);
    assert_eq!(p.echo.last().all("x-user-sub"), vec!["5f1c0d2e-uuid"]);
}

// ---------------------------------------------------------------------------------------------
// HDR-02 / HDR-04 / HDR-09 / RULE-08: header names a CGI, FastCGI or PHP bridge folds onto ours

/// The variable a CGI-style bridge makes of a header name, without `HTTP_`: upper-case, every
/// byte that is not a letter or digit read as `_` — the widest folding of PHP (`-` `_` `.` and
/// space), lighttpd and Caddy (everything else too). Written out here rather than taken from the
/// crate, so the tests do not share the code they check.
fn cgi(name: &str) -> String {
    name.bytes().map(|b| if b.is_ascii_alphanumeric() { b.to_ascii_uppercase() as char } else { '_' }).collect()
}

/// `name` with every printable ASCII byte (space included) inserted at every position and
/// replacing every byte.
fn one_byte_variants(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for b in 0x20u8..=0x7e {
        let c = (b as char).to_string();
        for i in 0..=name.len() {
            out.push(format!("{}{c}{}", &name[..i], &name[i..]));
            if i < name.len() {
                out.push(format!("{}{c}{}", &name[..i], &name[i + 1..]));
            }
        }
    }
    out
}

/// What the app must see of the identity variables: none on a public route, exactly ours on a
/// protected one — and no header name holding a byte outside `A-Z a-z 0-9 -` at all.
fn assert_only_our_identity(seen: &Seen, sub: Option<&str>, groups: Option<&str>, what: &str) {
    for (ours, want) in [("x-user-sub", sub), ("x-user-groups", groups)] {
        let lines: Vec<(&str, &str)> =
            seen.headers.iter().filter(|(n, _)| cgi(n) == cgi(ours)).map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let expected: Vec<(&str, &str)> = want.map(|v| (ours, v)).into_iter().collect();
        assert_eq!(lines, expected, "{what}: what the app would read as HTTP_{}", cgi(ours));
    }
    for (n, _) in &seen.headers {
        assert!(
            !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "{what}: header name {n:?} reached the app"
        );
    }
}

/// SECURITY HDR-02, HDR-04, HDR-09, RULE-08 (issue 12): every printable ASCII byte, inserted at
/// and replacing every position of `X-User-Sub` and `X-User-Groups`, written on a raw socket to a
/// public route without a token and to a protected route with one. Each request is either refused
/// by the parser (400, nothing reaches the app) or reaches the app with no header that PHP, CGI or
/// FastCGI would read as `HTTP_X_USER_SUB` / `HTTP_X_USER_GROUPS` except Portcullis's own.
#[tokio::test]
async fn no_one_byte_variant_of_an_identity_header_reaches_the_app() {
    let p = start_proxy(&config("access", PUBLIC_AND_API)).await;
    let auth = bearer(&p.mint_access("alice", &["Readers"], "openid"));
    let mut variants = one_byte_variants("X-User-Sub");
    variants.extend(one_byte_variants("X-User-Groups"));
    let mut conn = RawConn::connect(p.proxy_addr).await;
    let (mut forwarded, mut refused) = (0, 0);
    for (i, name) in variants.iter().enumerate() {
        for protected in [false, true] {
            let path = if protected { format!("/api/v{i}") } else { format!("/public/v{i}") };
            let mut headers = vec![(name.as_str(), "spoofed"), ("Connection", "keep-alive")];
            if protected {
                headers.push(("Authorization", auth.as_str()));
            }
            // One request at a time in the echo's record (`last` clones the whole record).
            p.echo.clear();
            let resp = conn.send(&request_bytes("GET", &path, &headers)).await;
            let what = format!("{name:?} on {path}");
            match resp.status {
                200 => {
                    forwarded += 1;
                    let seen = p.echo.only();
                    assert_eq!(seen.path(), path, "{what}");
                    let (sub, groups) = if protected { (Some("alice"), Some("Readers")) } else { (None, None) };
                    assert_only_our_identity(&seen, sub, groups, &what);
                }
                400 => {
                    refused += 1;
                    assert_eq!(p.echo.count(), 0, "{what}: refused, yet the app received it");
                }
                other => panic!("{what}: status {other}: {}", resp.text),
            }
            if resp.status != 200 || resp.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close")) {
                conn = RawConn::connect(p.proxy_addr).await;
            }
        }
    }
    // Both outcomes occur: token bytes (`.` `~` `_` `!` …) make names hyper accepts, separators
    // (space, `"`, `(`, `,`, `/`, `;`, `@`, …) make it refuse the request.
    assert!(forwarded > 1_000 && refused > 1_000, "{forwarded} forwarded, {refused} refused");
    // At least every non-alphanumeric token byte in place of each `-` (14 × 2 per name, per route).
    let identity = p.metric("portcullis_stripped_headers_total", &[("kind", "identity")]);
    assert!(identity >= 2.0 * 2.0 * 28.0, "{identity} identity spellings stripped\n{}", p.metrics());
}

/// SECURITY HDR-04, HDR-09, RULE-08 (issue 12): the spellings from the report — `X-User.Sub`,
/// `X.User.Sub`, `X-User~Sub` — and names that are not ours but fold onto a variable apps trust
/// (`Remote.User` → `HTTP_REMOTE_USER`; `SCRIPT_NAME`, `PATH_INFO`, `REMOTE_USER`, which gunicorn
/// takes into the environ itself from a loopback peer — its `forwarder_headers` — and so would
/// re-route or authenticate the request; `X_Forwarded_Proto`) are dropped on a public route, an `auth: none` catch-all, a protected route and a CORS preflight;
/// and before every early refusal (405, 400, 414, 403), which proves stripping runs before anything
/// reads the request. Each is counted: identity spellings as `identity`, the others as
/// `invalid_name`.
#[tokio::test]
async fn names_outside_letters_digits_and_dash_are_dropped_on_every_route_and_refusal() {
    let rest = format!("cors_preflight: pass\n{PUBLIC_AND_API}");
    let p = start_proxy(&config("access", &rest)).await;
    let auth = bearer(&p.mint_access("alice", &["Readers"], "openid"));
    let identity_spellings = [("X-User.Sub", "spoofed"), ("X.User.Sub", "spoofed"), ("X-User~Sub", "spoofed")];
    let others = [
        ("Remote.User", "admin"),
        ("SCRIPT_NAME", "/api"),
        ("PATH_INFO", "/admin"),
        ("REMOTE_USER", "admin"),
        ("X_Forwarded_Proto", "https"),
    ];
    let spoofs: Vec<(&str, &str)> = identity_spellings.iter().chain(others.iter()).copied().collect();
    let counts = |p: &Proxy| {
        (
            p.metric("portcullis_stripped_headers_total", &[("kind", "identity")]),
            p.metric("portcullis_stripped_headers_total", &[("kind", "invalid_name")]),
        )
    };

    let preflight = [("Origin", "https://app.example"), ("Access-Control-Request-Method", "POST")];
    let token = [("Authorization", auth.as_str())];
    // (method, path, further headers, whether a verified identity is forwarded)
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], bool);
    let forwarded: [Case; 3] =
        [("GET", "/public/x", &[], false), ("GET", "/api/x", &token, true), ("OPTIONS", "/api/x", &preflight, false)];
    for (method, path, extra, verified) in forwarded {
        let (id_before, invalid_before) = counts(&p);
        let mut headers = spoofs.clone();
        headers.extend_from_slice(extra);
        let resp = raw_response(p.proxy_addr, &request_bytes(method, path, &headers)).await;
        let what = format!("{method} {path}");
        assert_eq!(resp.status, 200, "{what}: {}", resp.text);
        let seen = p.echo.last();
        assert_eq!((seen.method.as_str(), seen.path()), (method, path));
        let (sub, groups) = if verified { (Some("alice"), Some("Readers")) } else { (None, None) };
        assert_only_our_identity(&seen, sub, groups, &what);
        for (n, v) in &seen.headers {
            assert!(
                !matches!(cgi(n).as_str(), "REMOTE_USER" | "SCRIPT_NAME" | "PATH_INFO"),
                "{what}: {n}: {v} reached the app"
            );
            assert!(!["spoofed", "/api", "/admin", "admin"].contains(&v.as_str()), "{what}: {n}: {v} reached the app");
        }
        assert_eq!(seen.all("x-forwarded-proto"), vec!["http"], "{what}");
        let (id_after, invalid_after) = counts(&p);
        assert_eq!((id_after - id_before, invalid_after - invalid_before), (3.0, 5.0), "{what}");
    }

    let long = format!("/public/{}", "a".repeat(9_000));
    let refusals: [(&str, &str, u16); 4] = [
        ("TRACE", "/public/x", 405),
        ("GET", "/public/%2e%2e/api/x", 400),
        ("GET", &long, 414),
        ("GET", "/elsewhere", 403),
    ];
    for (method, path, status) in refusals {
        let (id_before, invalid_before) = counts(&p);
        let served = p.echo.count();
        let resp = raw_response(p.proxy_addr, &request_bytes(method, path, &spoofs)).await;
        assert_eq!(resp.status, status, "{method} {}: {}", &path[..path.len().min(40)], resp.text);
        assert_eq!(p.echo.count(), served);
        let (id_after, invalid_after) = counts(&p);
        assert_eq!((id_after - id_before, invalid_after - invalid_before), (3.0, 5.0), "{method} {status}");
    }
}

/// SECURITY HDR-02, HDR-04, HDR-09 over HTTP/2: names arrive lower-case (h2 refuses upper-case
/// ones), and `x-user.sub`, `x-user~sub`, `x-user_sub`, `remote.user` are dropped just as over
/// HTTP/1.1. Request trailers — where a client could also put `x-user-sub` — are never
/// forwarded.
#[tokio::test]
async fn http2_requests_get_the_same_name_rules_and_trailers_are_dropped() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let p = start_proxy(&config("access", PUBLIC_AND_API)).await;
    let token = p.mint_access("alice", &["Readers"], "openid");
    let stream = TcpStream::connect(p.proxy_addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.expect("h2 handshake");
    tokio::spawn(conn);
    let authority = p.proxy_addr.to_string();
    for (path, verified) in [("/public/h2", false), ("/api/h2", true)] {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-user-sub", http::HeaderValue::from_static("spoofed"));
        trailers.insert("x-user.groups", http::HeaderValue::from_static("spoofed"));
        let body = Full::new(Bytes::from_static(b"hello")).with_trailers(std::future::ready(Some(Ok(trailers))));
        let mut req = http::Request::builder().method("POST").uri(format!("http://{authority}{path}"));
        for name in ["x-user.sub", "x-user~sub", "x-user_sub", "x.user.groups", "remote.user", "x-user-sub"] {
            req = req.header(name, "spoofed");
        }
        if verified {
            req = req.header("authorization", bearer(&token));
        }
        let resp = tokio::time::timeout(WAIT, sender.send_request(req.body(body).expect("request")))
            .await
            .expect("timeout")
            .expect("h2 response");
        assert_eq!(resp.status(), 200, "{path}");
        let _ = resp.into_body().collect().await;
        let seen = p.echo.last();
        assert_eq!(seen.path(), path);
        assert_eq!(seen.body, b"hello");
        let (sub, groups) = if verified { (Some("alice"), Some("Readers")) } else { (None, None) };
        assert_only_our_identity(&seen, sub, groups, path);
        assert!(seen.trailers.is_empty(), "{path}: request trailers forwarded: {:?}", seen.trailers);
        assert!(seen.headers.iter().all(|(_, v)| v != "spoofed"), "{path}: {seen:#?}");
    }
}

/// SECURITY HDR-02 over HTTP/2, written frame by frame (a client library would lower-case the
/// name): an upper-case `X-User-Sub` field is a malformed request that never reaches the app,
/// and the server keeps serving.
#[tokio::test]
async fn http2_upper_case_header_names_never_reach_the_app() {
    let p = start_proxy(&config("access", OPEN)).await;
    let mut stream = h2_connect(p.proxy_addr).await;
    let mut block = get_block();
    // Literal header field without indexing, new name "X-User-Sub", value "spoofed".
    block.push(0x00);
    block.push(10);
    block.extend_from_slice(b"X-User-Sub");
    block.push(7);
    block.extend_from_slice(b"spoofed");
    stream.write_all(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block)).await.expect("write");
    let ended = read_stream_end(&mut stream, 1).await;
    assert!(ended.is_some(), "the stream was neither reset nor the connection closed with GOAWAY");
    assert_eq!(p.echo.count(), 0, "{:#?}", p.echo.requests());
    assert_eq!(p.get("/after", None).await.status(), 200, "other clients are still served");
    assert!(p.echo.last().all("x-user-sub").is_empty());
}

/// Read frames until `stream` is reset (RST_STREAM), the connection is refused (GOAWAY), or it
/// is answered with a HEADERS frame; returns the frame type, or None at EOF / after 5 s.
async fn read_stream_end(stream: &mut TcpStream, id: u32) -> Option<u8> {
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        while buf.len() >= 9 {
            let len = (usize::from(buf[0]) << 16) | (usize::from(buf[1]) << 8) | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let sid = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            if buf[3] == GOAWAY || (sid == id && (buf[3] == RST_STREAM || buf[3] == HEADERS)) {
                return Some(buf[3]);
            }
            buf.drain(..9 + len);
        }
        let mut tmp = [0u8; 16 * 1024];
        match tokio::time::timeout_at(deadline, stream.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}
