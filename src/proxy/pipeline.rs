//! The request pipeline, and nothing else (SPEC §1). It sequences, top to bottom:
//!
//! ```text
//! decision::authorize (checks, strip, normalise, route, credentials, verify, policy, rewrite)
//!   → upstream.send → response headers → access log + metrics
//! ```
//!
//! Each request loads one config snapshot and uses it from start to end. The decision itself —
//! everything up to the headers the upstream receives — is `decision::authorize`, shared with
//! `explain` and `portcullis test`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version, request};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::auth::policy::Permit;
use crate::auth::verify::Verified;
use crate::http::body::{ProxyBody, Streamed};
use crate::http::error::{BadRequest, Decision, Reason, Rejection};
use crate::proxy::decision::{self, Conn, Verdict};
use crate::proxy::headers;
use crate::proxy::runtime::{Runtime, Shared};
use crate::proxy::upstream::UpstreamError;
use crate::telemetry::metrics::Metrics;

/// What the access log records; logged once, when the request ends — or on drop, if the client
/// went away first (SECURITY UPS-05).
struct AccessLog<'rt> {
    shared: Arc<Shared>,
    start: Instant,
    request_id: HeaderValue,
    method: Method,
    /// Filled in by `decision::authorize` as it goes (path, route, stripped headers).
    verdict: Verdict<'rt>,
    /// The identity forwarded, once the policy issued a permit.
    sub: Option<Arc<Verified>>,
    auth: Option<Duration>,
    upstream: Option<Duration>,
    done: bool,
}

impl AccessLog<'_> {
    fn finish(&mut self, status: StatusCode, decision: Decision, reason: Reason) {
        self.done = true;
        self.emit(Some(status), decision, reason);
    }

    fn emit(&self, status: Option<StatusCode>, decision: Decision, reason: Reason) {
        let route = self.verdict.route().map_or("none", |r| r.name.as_str());
        let total = self.start.elapsed();
        self.shared.metrics.record_request(route, decision, reason, total.as_secs_f64());
        self.verdict.stripped.record(&self.shared.metrics);
        let micros = |d: Option<Duration>| d.map(|d| d.as_micros() as u64);
        tracing::info!(
            target: "portcullis::access",
            request_id = self.request_id.to_str().unwrap_or_default(),
            method = self.method.as_str(),
            path = self.verdict.path.as_deref().map(crate::telemetry::log::truncate).map(tracing::field::display),
            route,
            decision = decision.as_str(),
            reason = reason.as_str(),
            status = status.map(|s| s.as_u16()),
            sub = self.sub.as_deref().map(|v| crate::telemetry::log::truncate(&v.sub)).map(tracing::field::display),
            auth_us = micros(self.auth),
            upstream_us = micros(self.upstream),
            total_us = total.as_micros() as u64,
        );
    }
}

impl Drop for AccessLog<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.emit(None, Decision::Error, Reason::ClientAbort);
        }
    }
}

/// Serve one request. Never fails: every outcome is a response.
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    conn: Conn,
) -> Result<Response<ProxyBody>, Infallible> {
    let runtime = shared.runtime.load_full();
    let request_id = request_id(req.headers());
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut log = AccessLog {
        shared: shared.clone(),
        start: Instant::now(),
        request_id: request_id.clone(),
        method: req.method().clone(),
        verdict: Verdict::default(),
        sub: None,
        auth: None,
        upstream: None,
        done: false,
    };
    let (mut response, decision, reason) = match pipeline(&shared, &runtime, req, conn, &mut log).await {
        Ok((response, permit)) => (response, permit.decision(), permit.reason()),
        Err(rejection) => {
            let (decision, reason) = (rejection.decision(), rejection.reason());
            (rejection.into_response(request_id.to_str().unwrap_or_default(), origin.as_ref()), decision, reason)
        }
    };
    response.headers_mut().insert(headers::X_REQUEST_ID, request_id);
    if shared.is_draining() && response.status() != StatusCode::SWITCHING_PROTOCOLS {
        // Ask HTTP/1 clients to reconnect (and so reach a replica that is not leaving).
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    log.finish(response.status(), decision, reason);
    Ok(response)
}

async fn pipeline<'rt>(
    shared: &Shared,
    rt: &'rt Runtime,
    req: Request<Incoming>,
    conn: Conn,
    log: &mut AccessLog<'rt>,
) -> Result<(Response<ProxyBody>, Permit), Rejection> {
    let (mut head, body) = req.into_parts();
    let permit = decision::authorize(rt, &mut head, conn, &log.request_id, &mut log.verdict).await?;
    log.sub = permit.verified().cloned();
    let auth_elapsed = log.start.elapsed();
    log.auth = Some(auth_elapsed);
    shared.metrics.auth_duration_seconds.observe(auth_elapsed.as_secs_f64());
    // `authorize` sets both before it issues a permit; refuse rather than forward anything else.
    let (Some(route), Some(path)) = (log.verdict.route(), log.verdict.path.as_deref()) else {
        return Err(Rejection::BadRequest(BadRequest::Malformed));
    };
    if permit.decision() == Decision::AuditDeny {
        tracing::warn!(
            route = route.name.as_str(),
            reason = permit.reason().as_str(),
            "audit: the route's rules would deny this request"
        );
    }

    let upstream_start = Instant::now();
    let websocket = log.verdict.websocket;
    let response = forward(rt, &shared.metrics, head, body, path, websocket, &log.request_id).await;
    let upstream_elapsed = upstream_start.elapsed();
    log.upstream = Some(upstream_elapsed);
    shared
        .metrics
        .upstream_duration_seconds
        .with_label_values(&[route.name.as_str()])
        .observe(upstream_elapsed.as_secs_f64());
    Ok((response?, permit))
}

/// Send the authorised request (its head already rewritten by `authorize`) and relay the answer.
async fn forward(
    rt: &Runtime,
    metrics: &Metrics,
    mut parts: request::Parts,
    body: Incoming,
    path: &str,
    websocket: bool,
    request_id: &HeaderValue,
) -> Result<Response<ProxyBody>, Rejection> {
    // What `hyper::upgrade::on` takes from a request: the client side of a WebSocket tunnel.
    let client_upgrade = websocket.then(|| parts.extensions.remove::<hyper::upgrade::OnUpgrade>()).flatten();

    let uri = rt.upstream.uri(path, parts.uri.query()).map_err(|_| Rejection::BadRequest(BadRequest::Malformed))?;
    let idle = rt.config.upstream.idle_timeout;
    let mut upstream_req = Request::new(Streamed::new(body, idle, true).boxed_unsync());
    *upstream_req.method_mut() = parts.method;
    *upstream_req.uri_mut() = uri;
    *upstream_req.version_mut() = if rt.config.upstream.http2 { Version::HTTP_2 } else { Version::HTTP_11 };
    *upstream_req.headers_mut() = parts.headers;

    let mut response = rt.upstream.send(upstream_req).await.map_err(|e| upstream_failed(metrics, e))?;
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        match client_upgrade {
            Some(client) => {
                let upstream = hyper::upgrade::on(&mut response);
                tokio::spawn(tunnel(client, upstream));
            }
            // A 101 nobody asked for cannot be relayed.
            None => return Err(upstream_failed(metrics, UpstreamError::Protocol)),
        }
    }
    headers::rewrite_response(response.headers_mut(), request_id, switching);
    Ok(response)
}

/// After a 101, bytes flow opaquely in both directions for this one connection.
async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (Ok(client), Ok(upstream)) = (client.await, upstream.await) else { return };
    let mut client = hyper_util::rt::TokioIo::new(client);
    let mut upstream = hyper_util::rt::TokioIo::new(upstream);
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// Count an upstream failure (`upstream_errors_total{kind}`, named by [`UpstreamError::kind`])
/// and turn it into the refusal the client gets.
fn upstream_failed(metrics: &Metrics, e: UpstreamError) -> Rejection {
    let rejection = match e {
        UpstreamError::Connect => Rejection::UpstreamConnect,
        UpstreamError::Reset => Rejection::UpstreamReset,
        UpstreamError::Timeout => Rejection::UpstreamTimeout,
        UpstreamError::Protocol => Rejection::UpstreamProtocol,
        // The client's own body failed (bad chunking, stalled upload): its fault, not the app's,
        // and not counted as an upstream error.
        UpstreamError::ClientBody => return Rejection::BadRequest(BadRequest::Malformed),
    };
    metrics.upstream_errors_total.with_label_values(&[e.kind()]).inc();
    rejection
}

/// Keep a client's `X-Request-Id` only when it is a short safe token (SECURITY OBS-02).
fn request_id(headers: &http::HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(crate::proxy::headers::X_REQUEST_ID)
        && (1..=64).contains(&v.len())
        && v.as_bytes().iter().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(b))
    {
        return v.clone();
    }
    // 32 lower-case hex digits, written without an intermediate String.
    let mut id = [0u8; 32];
    let mut n = rand::random::<u128>();
    for b in id.iter_mut().rev() {
        *b = b"0123456789abcdef"[(n & 0xf) as usize];
        n >>= 4;
    }
    HeaderValue::from_bytes(&id).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}
