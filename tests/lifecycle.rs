//! The SIGTERM sequence as `App::shutdown` runs it (SPEC §6): readiness false at once, new
//! connections still served for `shutdown.delay` (with `Connection: close`), in-flight requests
//! drained for at most `shutdown.grace`, then the listener is gone.

mod support;

use std::time::{Duration, Instant};

use support::*;

fn lifecycle_config(delay: &str, grace: &str) -> String {
    config(
        "access",
        &format!(
            "shutdown:\n  delay: {delay}\n  grace: {grace}\nroutes:\n  - name: public\n    path: /public/**\n    auth: none\n  - name: api\n    path: /api/**\n"
        ),
    )
}

/// SECURITY OPS-01: the whole drain sequence, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_and_serves_new_connections_during_the_delay() {
    let mut p = start_proxy(&lifecycle_config("300ms", "5s")).await;
    let token = p.mint_access("alice", &["Admins"], "openid");
    let auth = format!("Bearer {token}");

    // An idle keep-alive connection opened before SIGTERM.
    let mut keep_alive = RawConn::connect(p.proxy_addr).await;
    let first = keep_alive
        .send(&request_bytes("GET", "/api/before", &[("Authorization", &auth), ("Connection", "keep-alive")]))
        .await;
    assert_eq!(first.status, 200);
    assert_ne!(first.header("connection"), Some("close"));

    // A slow request in flight.
    let client = p.client.clone();
    let url = p.url("/api/slow?echo_delay_ms=1000");
    let bearer = token.clone();
    let in_flight =
        tokio::spawn(async move { client.get(url).bearer_auth(bearer).send().await.map(|r| r.status().as_u16()) });
    p.echo.wait_for_count(2).await;

    let app = p.take_app();
    let started = Instant::now();
    let shutdown = tokio::spawn(app.shutdown());

    // Readiness turns false at once.
    eventually("readiness false right after shutdown began", || async { !p.shared.is_ready() }).await;
    assert_eq!(p.readyz().await, 503);
    assert!(started.elapsed() < Duration::from_millis(300), "readiness took {:?}", started.elapsed());

    // A new connection during the delay is served, and told to go away afterwards.
    let fresh = raw_response(
        p.proxy_addr,
        &request_bytes("GET", "/api/during", &[("Authorization", &auth), ("Connection", "keep-alive")]),
    )
    .await;
    assert_eq!(fresh.status, 200, "{}", fresh.text);
    assert_eq!(fresh.header("connection"), Some("close"), "{}", fresh.text);
    assert!(started.elapsed() < Duration::from_millis(300), "the check ran after the delay: {:?}", started.elapsed());

    // The old keep-alive connection is still served too, with `Connection: close`.
    let again = keep_alive
        .send(&request_bytes("GET", "/api/again", &[("Authorization", &auth), ("Connection", "keep-alive")]))
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.header("connection"), Some("close"));

    // The in-flight request completes.
    let status =
        tokio::time::timeout(WAIT, in_flight).await.expect("in-flight timed out").expect("join").expect("response");
    assert_eq!(status, 200);

    tokio::time::timeout(WAIT, shutdown).await.expect("shutdown timed out").expect("join");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300), "shutdown returned before shutdown.delay: {took:?}");

    // After shutdown nothing accepts on the proxy port.
    let refused =
        tokio::time::timeout(WAIT, tokio::net::TcpStream::connect(p.proxy_addr)).await.expect("connect timeout");
    assert!(refused.is_err(), "the proxy still accepts connections after shutdown");
    let paths: Vec<String> = p.echo.requests().iter().map(|s| s.path().to_owned()).collect();
    assert_eq!(paths.len(), 4, "{paths:?}");
}

/// SECURITY OPS-01: `shutdown.grace` bounds the drain even when a request would take longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_grace_bounds_the_drain() {
    let mut p = start_proxy(&lifecycle_config("100ms", "500ms")).await;
    let token = p.mint_access("alice", &[], "openid");
    let client = p.client.clone();
    let url = p.url("/api/stuck?echo_delay_ms=10000");
    let in_flight = tokio::spawn(async move { client.get(url).bearer_auth(token).send().await.map(|r| r.status()) });
    p.echo.wait_for_count(1).await;

    let app = p.take_app();
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), app.shutdown()).await.expect("shutdown ignored shutdown.grace");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(550), "shutdown did not wait for delay + grace: {took:?}");
    assert!(took < Duration::from_millis(2000), "shutdown took {took:?} with delay 100ms + grace 500ms");
    in_flight.abort();
}

/// `begin_drain` alone flips readiness (and the `ready` gauge) while traffic is still served.
#[tokio::test]
async fn begin_drain_turns_readiness_false_but_keeps_serving() {
    let p = start_proxy(&lifecycle_config("5s", "5s")).await;
    assert_eq!(p.metric("portcullis_ready", &[]), 1.0);
    p.app.as_ref().expect("app").begin_drain();
    assert_eq!(p.readyz().await, 503);
    assert_eq!(p.metric("portcullis_ready", &[]), 0.0);
    assert_eq!(p.admin_get("/healthz").await.status(), 200, "liveness is not readiness");
    let resp = p.get("/api/x", Some(&p.mint_access("alice", &[], "openid"))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers().get("connection").map(|v| v.to_str().unwrap_or_default()), Some("close"));
}
