//! Transports issue 2 names besides plain TCP: a `unix:` socket upstream, and TLS termination on
//! `listen` (with `X-Forwarded-Proto: https` for the app).

mod support;

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::*;

/// A unix-socket app that answers with the identity it received.
fn unix_app(path: &std::path::Path) {
    let listener = tokio::net::UnixListener::bind(path).unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let sub = req.headers().get("x-user-sub").and_then(|v| v.to_str().ok()).unwrap_or("-").to_owned();
                    let body = format!("unix app saw {} {}", req.uri().path(), sub);
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
}

/// SECURITY DEP-02 (the hardening offered instead of a signed `X-User-Assertion`, which is not
/// implemented): the app can listen on a unix socket, so file permissions, not the network,
/// decide who besides Portcullis can hand it identity headers.
#[tokio::test]
async fn unix_socket_upstream_receives_authorised_requests() {
    let dir = temp_dir("unix");
    let sock = dir.join("app.sock");
    unix_app(&sock);
    let p = setup(&config("access", PUBLIC_AND_API)).upstream_url(format!("unix:{}", sock.display())).start().await;
    let token = p.mint_access("unix-user", &[], "openid");
    let resp = p.get("/api/thing", Some(&token)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "unix app saw /api/thing unix-user");
    assert_eq!(p.get("/api/thing", None).await.status(), 401);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn tls_is_terminated_and_the_app_is_told_https() {
    let dir = temp_dir("tls");
    let (cert, key) = self_signed_cert(&dir, "localhost", "IP:127.0.0.1,DNS:localhost");
    let yaml = config(
        "access",
        &format!("tls:\n  cert_file: {}\n  key_file: {}\n{PUBLIC_AND_API}", cert.display(), key.display()),
    );
    let p = start_proxy(&yaml).await;
    let pem = std::fs::read(&cert).unwrap();
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
        .build()
        .unwrap();
    let token = p.mint_access("tls-user", &[], "openid");
    let resp = client.get(format!("https://{}/api/x", p.proxy_addr)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.bytes().await;
    let seen = p.echo.last();
    assert_eq!(seen.all("x-forwarded-proto"), vec!["https"]);
    assert_eq!(seen.all("x-user-sub"), vec!["tls-user"]);
    // Plain HTTP on the TLS port is not served.
    assert!(p.client.get(p.url("/api/x")).send().await.map(|r| r.status() != 200).unwrap_or(true));
    let _ = std::fs::remove_dir_all(&dir);
}
