//! The request pipeline, and nothing else (SPEC §1). It sequences, top to bottom:
//!
//! ```text
//! [sign-in's reserved paths, SPEC §8: answered here, never forwarded]
//!   → decision::authorize (checks, strip, normalise, route, credentials, verify, policy, rewrite)
//!   → upstream.send → response headers (+ the sign-in's `Set-Cookie`s) → access log + metrics
//! ```
//!
//! Each request loads one config snapshot and uses it from start to end. The decision itself —
//! everything up to the headers the upstream receives — is `decision::authorize`, shared with
//! `explain` and `portcullis test`. An answer given while request body bytes are still unread on
//! the client's connection either discards them (within bounds) or says `Connection: close`
//! (`settle_unread_body`, SPEC §3). Heads hyper refused itself are recorded by
//! [`record_refused_head`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version, request};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::auth::verify::Verified;
use crate::http::body::{self, Progress, ProxyBody, Streamed};
use crate::http::error::{BadRequest, Decision, Reason, Rejection};
use crate::proxy::decision::{self, Conn, Verdict};
use crate::proxy::runtime::{Runtime, Shared};
use crate::proxy::upstream::UpstreamError;
use crate::proxy::{headers, login};
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
    /// A request to the sign-in's reserved paths (logged under their own route label).
    reserved: bool,
    done: bool,
}

impl AccessLog<'_> {
    fn finish(&mut self, status: StatusCode, decision: Decision, reason: Reason) {
        self.done = true;
        self.emit(Some(status), decision, reason);
    }

    fn emit(&self, status: Option<StatusCode>, decision: Decision, reason: Reason) {
        let route = match self.verdict.route() {
            Some(r) => r.name.as_str(),
            None if self.reserved => login::ROUTE_LABEL,
            None => "none",
        };
        let total = self.start.elapsed();
        self.shared.metrics.record_request(route, decision, reason, total.as_secs_f64());
        self.verdict.stripped.record(&self.shared.metrics);
        let micros = |d: Option<Duration>| d.map(|d| d.as_micros() as u64);
        // Formatted into this thread's buffer, no system call (`telemetry::logbuf`).
        crate::telemetry::logbuf::Access {
            request_id: self.request_id.to_str().unwrap_or_default(),
            method: self.method.as_str(),
            path: self.verdict.path.as_deref(),
            route,
            decision: decision.as_str(),
            reason: reason.as_str(),
            status: status.map(|s| s.as_u16()),
            sub: self.sub.as_deref().map(|v| v.sub.as_str()),
            auth_us: micros(self.auth),
            upstream_us: micros(self.upstream),
            total_us: total.as_micros() as u64,
        }
        .log();
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
        reserved: false,
        done: false,
    };
    let version = req.version();
    let expects_continue = req.headers().get(header::EXPECT).is_some();
    let mut leftover = Leftover::Nothing;
    let outcome = pipeline(&shared, &runtime, req, conn, &mut log, &mut leftover).await;
    let (mut response, decision, reason) = match outcome {
        Ok(done) => done,
        Err(rejection) => {
            let (decision, reason) = (rejection.decision(), rejection.reason());
            (rejection.into_response(request_id.to_str().unwrap_or_default(), origin.as_ref()), decision, reason)
        }
    };
    // What the browser sign-in decided about its cookies goes out with any answer (SPEC §8).
    for cookie in log.verdict.set_cookies.drain(..) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response.headers_mut().insert(headers::X_REQUEST_ID, request_id);
    if shared.is_draining() && response.status() != StatusCode::SWITCHING_PROTOCOLS {
        // Ask HTTP/1 clients to reconnect (and so reach a replica that is not leaving).
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    settle_unread_body(leftover, version, expects_continue, &mut response).await;
    log.finish(response.status(), decision, reason);
    Ok(response)
}

/// What became of the request body by the time the response is ready.
enum Leftover {
    /// No body, or nothing left to decide about it.
    Nothing,
    /// Refused before forwarding: the body is still here, unread.
    Held(Incoming),
    /// Handed to the upstream exchange, which records whether it was read to the end.
    Forwarded(Progress),
}

/// A body still unread when Portcullis answers is discarded, within these bounds, so the
/// connection can be kept (SPEC §3). Anything bigger, slower, or announced with `Expect:
/// 100-continue` is not waited for: the answer says `Connection: close` instead, and the
/// listener's lingering close (`serve::linger`) lets a client still sending read it.
const DRAIN_BYTES: u64 = 64 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// SPEC §3: a refusal never costs the client its connection silently. hyper's HTTP/1 server,
/// when a request body is dropped unread, closes the connection after the response — but it has
/// already written that response without `Connection: close`, so the client, promised a
/// keep-alive, sends its next request into a closed socket (issue 12). Here every answer given
/// with body bytes still unread either discards them first (small bodies) or says it will close.
/// HTTP/2 needs nothing: dropping the body resets only that stream (`RST_STREAM(NO_ERROR)` once
/// the response is complete) and the connection lives on.
async fn settle_unread_body(
    leftover: Leftover,
    version: Version,
    expects_continue: bool,
    response: &mut Response<ProxyBody>,
) {
    let closing =
        response.headers().get_all(header::CONNECTION).iter().any(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    // Nothing to keep: HTTP/2 streams, a tunnel, or a connection that closes anyway (a 400,
    // draining) — reading a body for a connection about to close would only delay the answer.
    if version >= Version::HTTP_2 || response.status() == StatusCode::SWITCHING_PROTOCOLS || closing {
        return;
    }
    let kept = match leftover {
        Leftover::Nothing => true,
        Leftover::Forwarded(progress) => progress.is_done(),
        Leftover::Held(unread) if unread.is_end_stream() => true,
        // Reading the body would send `100 Continue`, inviting the very bytes being refused
        // (RFC 9110 §10.1.1); the client may send them anyway, so the connection cannot be kept.
        Leftover::Held(_) if expects_continue => false,
        Leftover::Held(unread) => body::discard(unread, DRAIN_BYTES, DRAIN_TIME).await,
    };
    if !kept {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

async fn pipeline<'rt>(
    shared: &Shared,
    rt: &'rt Runtime,
    req: Request<Incoming>,
    conn: Conn,
    log: &mut AccessLog<'rt>,
    leftover: &mut Leftover,
) -> Result<(Response<ProxyBody>, Decision, Reason), Rejection> {
    let (mut head, body) = req.into_parts();
    // The sign-in's reserved paths (SPEC §8) are Portcullis's own: answered here, before any
    // route is looked up, and never forwarded, in any spelling the normaliser folds together.
    if let Some(login) = &rt.login
        && let Ok(path) = crate::http::path::normalise(head.uri.path())
        && login::is_reserved(&path)
    {
        *leftover = Leftover::Held(body);
        log.reserved = true;
        // The same stripping, limits and head refusals as every proxied request.
        decision::admit_head(rt, &mut head, &mut log.verdict)?;
        log.verdict.path = Some(path);
        let path = log.verdict.path.as_deref().unwrap_or_default();
        return login::answer(login, &rt.verifier, &head, path, &mut log.verdict.set_cookies).await;
    }
    let permit = match decision::authorize(rt, &mut head, conn, &log.request_id, &mut log.verdict).await {
        Ok(permit) => permit,
        Err(rejection) => {
            // Refused before the body was touched: keep it, to discard it once the answer is
            // ready (or to know it is there and close).
            *leftover = Leftover::Held(body);
            return Err(rejection);
        }
    };
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
    let response = forward(rt, &shared.metrics, head, body, path, websocket, &log.request_id, leftover).await;
    let upstream_elapsed = upstream_start.elapsed();
    log.upstream = Some(upstream_elapsed);
    shared
        .metrics
        .upstream_duration_seconds
        .with_label_values(&[route.name.as_str()])
        .observe(upstream_elapsed.as_secs_f64());
    Ok((response?, permit.decision(), permit.reason()))
}

/// Send the authorised request (its head already rewritten by `authorize`) and relay the answer.
#[allow(clippy::too_many_arguments)]
async fn forward(
    rt: &Runtime,
    metrics: &Metrics,
    mut parts: request::Parts,
    body: Incoming,
    path: &str,
    websocket: bool,
    request_id: &HeaderValue,
    leftover: &mut Leftover,
) -> Result<Response<ProxyBody>, Rejection> {
    // What `hyper::upgrade::on` takes from a request: the client side of a WebSocket tunnel.
    let client_upgrade = websocket.then(|| parts.extensions.remove::<hyper::upgrade::OnUpgrade>()).flatten();

    let uri = rt.upstream.uri(path, parts.uri.query()).map_err(|_| Rejection::BadRequest(BadRequest::Malformed))?;
    let idle = rt.config.upstream.idle_timeout;
    // A body still to come is watched, so the pipeline knows at the end whether any of it is
    // left unread on the client's connection (SPEC §3).
    let upload = (!body.is_end_stream()).then(Progress::default);
    let mut streamed = Streamed::new(body, idle, true);
    if let Some(progress) = &upload {
        streamed = streamed.watched(progress.clone());
        *leftover = Leftover::Forwarded(progress.clone());
    }
    let mut upstream_req = Request::new(streamed.boxed_unsync());
    *upstream_req.method_mut() = parts.method;
    *upstream_req.uri_mut() = uri;
    *upstream_req.version_mut() = if rt.config.upstream.http2 { Version::HTTP_2 } else { Version::HTTP_11 };
    *upstream_req.headers_mut() = parts.headers;

    // Once the head is relayed, a failing body can only truncate the response: meter and log it,
    // since the access log already recorded the status.
    let errors = metrics.upstream_errors_total.clone();
    let id = request_id.clone();
    let on_body_error = move |kind: UpstreamError, e: &crate::http::body::BoxError| {
        errors.with_label_values(&[kind.kind()]).inc();
        tracing::warn!(
            request_id = id.to_str().unwrap_or_default(),
            kind = kind.kind(),
            error = %e,
            "upstream response body failed after its head was relayed; the client sees it truncated"
        );
    };
    let mut response = rt
        .upstream
        .send(upstream_req, upload.as_ref(), on_body_error)
        .await
        .map_err(|e| upstream_failed(metrics, e))?;
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

/// A request hyper refused while reading its head — it answered 400, 414 or 431 itself and closed
/// the connection, so `handle` never saw it: counted and logged here, once, like every other
/// request (SPEC §6: `route="none"`, `decision="deny"`). `error` is what the connection ended
/// with; anything but a parse error (the client went away between requests, TLS, I/O, an idle
/// keep-alive timing out) is not a request and records nothing.
pub fn record_refused_head(shared: &Shared, error: &(dyn std::error::Error + Send + Sync + 'static)) {
    let Some(e) = error.downcast_ref::<hyper::Error>() else { return };
    if !e.is_parse() {
        return;
    }
    // hyper's automatic responses (its `role::Server::on_error`): too large → 431, except a URI
    // over its fixed 64 KiB limit → 414; any other parse error → 400.
    let detail = e.to_string();
    let (status, reason) = if !e.is_parse_too_large() {
        (StatusCode::BAD_REQUEST, Reason::BadRequest)
    } else if detail.starts_with("URI too long") {
        (StatusCode::URI_TOO_LONG, Reason::BadRequest)
    } else {
        (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, Reason::HeaderTooLarge)
    };
    let request_id = request_id(&http::HeaderMap::new());
    tracing::info!(
        target: "portcullis::access",
        request_id = request_id.to_str().unwrap_or_default(),
        route = "none",
        decision = Decision::Deny.as_str(),
        reason = reason.as_str(),
        status = status.as_u16(),
        // hyper's fixed description ("invalid HTTP header parsed", …); never request bytes.
        detail = %crate::telemetry::log::truncate(&detail),
        total_us = 0u64,
    );
    // Counted after the line is written: whoever sees the count can find the line.
    shared.metrics.requests_total.with_label_values(&["none", Decision::Deny.as_str(), reason.as_str()]).inc();
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
