//! SECURITY OBS-01, OBS-02: nothing a client authenticates with ever reaches a log line, at any
//! level. This binary holds a single test, because it installs the process-wide subscriber: every
//! crate's events (Portcullis, hyper-util, h2, reqwest, rustls via the `log` bridge) at TRACE,
//! formatted as the binary's JSON log lines, captured in memory.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use support::*;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Where a JWT-looking run starts: `eyJ` (base64url of `{"`) followed by at least 10 base64url
/// characters and a dot — the catalog's `grep -E 'eyJ[A-Za-z0-9_-]{10,}\.'`.
fn jwt_like(text: &str) -> Option<&str> {
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("eyJ") {
        let start = i + at;
        let mut j = start + 3;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'-' || b[j] == b'_') {
            j += 1;
        }
        if j - start - 3 >= 10 && j < b.len() && b[j] == b'.' {
            return Some(&text[start..(j + 1).min(text.len())]);
        }
        i = start + 3;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_signature_or_authorization_value_is_logged_at_trace() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .try_init()
        .expect("the only subscriber in this test binary");

    let routes = r#"credentials:
  - bearer
  - header: X-Access-Token
  - cookie: session_jwt
routes:
  - name: public
    path: /public/**
    auth: none
  - name: admins
    path: /admins/**
    require:
      groups_any: [Admins]
  - name: api
    path: /api/**
"#;
    let p = start_proxy(&config("access", routes)).await;
    let now = portcullis::tools::mint::now();
    let valid = p.mint_access("alice", &["Readers"], "openid");
    let mut claims = p.access_claims("bob", &[], "openid");
    claims["exp"] = json!(now - 3600);
    let expired = p.mint(&claims);
    let mut parts: Vec<String> = p.mint_access("carol", &[], "openid").split('.').map(str::to_owned).collect();
    parts[2] = parts[2].chars().rev().collect();
    let bad_signature = parts.join(".");
    let alg_none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "kid": "k1"}).to_string()),
        URL_SAFE_NO_PAD.encode(p.access_claims("mallory", &["Admins"], "openid").to_string())
    );
    let unknown_kid = {
        let other = portcullis::tools::mint::SigningKey::generate("rotated-kid").unwrap();
        other.mint(&p.access_claims("dave", &[], "openid"))
    };
    let oversized = format!("{valid}{}", "A".repeat(20_000));
    let basic = "Basic dXNlcjpzM2NyZXQtcGFzc3dvcmQ=";
    let tokens = [&valid, &expired, &bad_signature, &alg_none, &unknown_kid];

    // Every credential location, valid and invalid, allowed and refused.
    for t in tokens {
        for path in ["/api/x", "/admins/x", "/public/x"] {
            let _ = p.get(path, Some(t)).await;
            let _ = p.client.get(p.url(path)).header("X-Access-Token", t.as_str()).send().await;
            let _ = p.client.get(p.url(path)).header("Cookie", format!("session_jwt={t}")).send().await;
            let _ = p.get(&format!("{path}?access_token={t}"), None).await;
        }
        // Two credentials at once (400), and an over-long one (401 before decoding).
        let _ = p.client.get(p.url("/api/x")).bearer_auth(t).header("X-Access-Token", &valid).send().await;
    }
    let _ = p.get("/api/x", Some(&oversized)).await;
    let _ = p.client.get(p.url("/api/x")).header("Authorization", basic).send().await;
    let _ = p.client.get(p.url("/api/x")).header("Authorization", format!("bearer  {valid} ")).send().await;
    // Malformed requests hyper refuses itself, and ones Portcullis refuses, carrying a token.
    for req in [
        format!("GET /api/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {valid}\r\n folded\r\n\r\n"),
        format!("GET /api/%2e%2e/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {valid}\r\nConnection: close\r\n\r\n"),
        format!("TRACE /api/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {valid}\r\nConnection: close\r\n\r\n"),
        format!("GET /api/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {valid}\r\nConnection: close\r\n\r\n"),
    ] {
        let _ = raw_response(p.proxy_addr, req.as_bytes()).await;
    }
    // HTTP/2, where h2 traces every frame.
    {
        use http_body_util::{BodyExt, Empty};
        use hyper_util::rt::{TokioExecutor, TokioIo};
        let stream = tokio::net::TcpStream::connect(p.proxy_addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        for t in tokens {
            let req = http::Request::get(format!("http://{}/api/h2", p.proxy_addr))
                .header("authorization", format!("Bearer {t}"))
                .body(Empty::<bytes::Bytes>::new())
                .unwrap();
            let resp = sender.send_request(req).await.unwrap();
            let _ = resp.into_body().collect().await;
        }
    }
    assert!(p.echo.count() > 0, "some requests must have been forwarded");

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).expect("utf-8 logs");
    assert!(logs.lines().count() > 100, "expected trace output, got {} lines", logs.lines().count());
    assert!(logs.contains("portcullis::access"), "the access log is captured");
    let mut secrets: Vec<(String, String)> = Vec::new();
    for t in tokens.iter().copied().chain([&oversized]) {
        secrets.push(("token".into(), t.clone()));
        let segments: Vec<&str> = t.split('.').collect();
        if segments.len() == 3 && segments[2].len() > 16 {
            secrets.push(("signature".into(), segments[2].to_owned()));
        }
        if segments.len() >= 2 {
            secrets.push(("payload".into(), segments[1].to_owned()));
        }
    }
    secrets.push(("basic credential".into(), "dXNlcjpzM2NyZXQtcGFzc3dvcmQ".into()));
    for (what, secret) in &secrets {
        if let Some(line) = logs.lines().find(|l| l.contains(secret.as_str())) {
            panic!("a {what} was logged:\n{line}");
        }
    }
    if let Some(hit) = jwt_like(&logs) {
        let line = logs.lines().find(|l| l.contains(hit)).unwrap_or_default();
        panic!("a JWT-shaped value was logged: {hit}\n{line}");
    }
    for line in logs.lines() {
        // OBS-02: every line is one JSON object (no forged or split lines).
        let parsed: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(parsed.is_object());
        assert!(!line.contains("Bearer ") && !line.contains("bearer "), "an Authorization value was logged: {line}");
    }
}
