//! The request pipeline, and nothing else (SPEC §1). Each stage is a small function from another
//! module; this file only sequences them, top to bottom:
//!
//! ```text
//! headers::strip_untrusted → check_head_size → check_method → check_target
//!   → path::normalise → routes.find → credentials::extract → verifier.verify
//!   → policy::decide → Permit → headers::rewrite_for_upstream → upstream.send
//!   → access log + metrics (heads hyper refused itself: `record_refused_head`)
//! ```
//!
//! Each request loads one config snapshot and uses it from start to end. An answer given while
//! request body bytes are still unread on the client's connection either discards them (within
//! bounds) or says `Connection: close` (`settle_unread_body`, SPEC §3).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::body::{self, Progress, ProxyBody, Streamed};
use crate::config::{AuthMode, CorsPreflight};
use crate::credentials::{self, CredentialError, Found};
use crate::error::{Decision, Reason, Rejection};
use crate::headers::{self, Forwarding};
use crate::policy::{self, Authn, Permit};
use crate::route::Route;
use crate::upstream::UpstreamError;
use crate::verify::{PairError, TokenError, UseRule};
use crate::{Runtime, Shared, path};

/// Facts about the downstream connection.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// What the access log records; logged once, when the request ends — or on drop, if the client
/// went away first (SECURITY UPS-05).
struct AccessLog {
    shared: Arc<Shared>,
    start: Instant,
    request_id: HeaderValue,
    method: Method,
    path: Option<String>,
    route: Option<String>,
    sub: Option<String>,
    auth: Option<Duration>,
    upstream: Option<Duration>,
    done: bool,
}

impl AccessLog {
    fn finish(&mut self, status: StatusCode, decision: Decision, reason: Reason) {
        self.done = true;
        self.emit(Some(status), decision, reason);
    }

    fn emit(&self, status: Option<StatusCode>, decision: Decision, reason: Reason) {
        let route = self.route.as_deref().unwrap_or("none");
        let total = self.start.elapsed();
        self.shared.metrics.record_request(route, decision, reason, total.as_secs_f64());
        let micros = |d: Option<Duration>| d.map(|d| d.as_micros() as u64);
        tracing::info!(
            target: "portcullis::access",
            request_id = self.request_id.to_str().unwrap_or_default(),
            method = self.method.as_str(),
            path = self.path.as_deref().map(crate::log::truncate).map(tracing::field::display),
            route,
            decision = decision.as_str(),
            reason = reason.as_str(),
            status = status.map(|s| s.as_u16()),
            sub = self.sub.as_deref().map(crate::log::truncate).map(tracing::field::display),
            auth_us = micros(self.auth),
            upstream_us = micros(self.upstream),
            total_us = total.as_micros() as u64,
        );
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        if !self.done {
            self.emit(None, Decision::Error, Reason::ClientAbort);
        }
    }
}

/// Serve one request. Never fails: every outcome is a response.
pub async fn handle(
    shared: Arc<Shared>,
    mut req: Request<Incoming>,
    conn: Conn,
) -> Result<Response<ProxyBody>, Infallible> {
    let runtime = shared.runtime.load_full();
    // First, before anything reads the request (the request id, CORS, every early refusal): no
    // client header may pose as identity, in any spelling a CGI/WSGI/PHP bridge would fold onto
    // ours (SPEC §4; SECURITY HDR-04, HDR-09, RULE-08).
    headers::strip_untrusted(req.headers_mut(), &runtime.config.identity, &shared.metrics);
    let request_id = request_id(req.headers());
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut log = AccessLog {
        shared: shared.clone(),
        start: Instant::now(),
        request_id: request_id.clone(),
        method: req.method().clone(),
        path: None,
        route: None,
        sub: None,
        auth: None,
        upstream: None,
        done: false,
    };
    let version = req.version();
    let expects_continue = req.headers().get(header::EXPECT).is_some();
    let mut leftover = Leftover::Nothing;
    let outcome = pipeline(&shared, &runtime, req, conn, &mut log, &mut leftover).await;
    let (mut response, decision, reason) = match outcome {
        Ok((response, permit)) => (response, permit.decision(), permit.reason()),
        Err(rejection) => {
            if let Some(kind) = upstream_kind(&rejection) {
                shared.metrics.upstream_errors_total.with_label_values(&[kind]).inc();
            }
            let (decision, reason) = (rejection.decision(), rejection.reason());
            (rejection.into_response(request_id.to_str().unwrap_or_default(), origin.as_ref()), decision, reason)
        }
    };
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
/// listener's lingering close (`linger`) lets a client still sending read it.
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

async fn pipeline(
    shared: &Arc<Shared>,
    rt: &Arc<Runtime>,
    mut req: Request<Incoming>,
    conn: Conn,
    log: &mut AccessLog,
    leftover: &mut Leftover,
) -> Result<(Response<ProxyBody>, Permit), Rejection> {
    let (path, permit, route) = match admit(shared, rt, &mut req, log).await {
        Ok(admitted) => admitted,
        Err(rejection) => {
            // Refused before the body was touched: keep it, to discard it once the answer is
            // ready (or to know it is there and close).
            *leftover = Leftover::Held(req.into_body());
            return Err(rejection);
        }
    };

    let upstream_start = Instant::now();
    let response = forward(shared, rt, req, &permit, &path, conn, &log.request_id, leftover).await;
    let upstream_elapsed = upstream_start.elapsed();
    log.upstream = Some(upstream_elapsed);
    shared.metrics.upstream_duration_seconds.with_label_values(&[route.name()]).observe(upstream_elapsed.as_secs_f64());
    Ok((response?, permit))
}

/// Every stage that may refuse the request before its body is read, up to the policy's permit.
/// Returns the normalised path, the permit and the route.
async fn admit<'r>(
    shared: &Arc<Shared>,
    rt: &'r Runtime,
    req: &mut Request<Incoming>,
    log: &mut AccessLog,
) -> Result<(String, Permit, &'r Route), Rejection> {
    check_head_size(req, shared.max_header_bytes)?;
    check_uri_length(req, rt.config.limits.max_uri_bytes)?;
    check_method(req)?;
    path::check_target(req.uri()).map_err(|e| {
        tracing::debug!(error = %e, "request target refused");
        Rejection::BadRequest(Reason::BadRequest)
    })?;
    check_host(req)?;

    let path = path::normalise(req.uri().path()).map_err(|e| {
        tracing::debug!(error = %e, "ambiguous path refused");
        Rejection::BadRequest(Reason::AmbiguousPath)
    })?;
    log.path = Some(path.clone());

    let route = rt.routes.find(req.method(), &path).ok_or(Rejection::Forbidden(Reason::NoRoute))?;
    log.route = Some(route.name().to_owned());

    let authn = authenticate(rt, route.config.auth, req).await?;
    let permit = policy::decide(route, authn, rt.issuer_names())?;
    log.sub = permit.verified().map(|v| v.sub.clone());
    let auth_elapsed = log.start.elapsed();
    log.auth = Some(auth_elapsed);
    shared.metrics.auth_duration_seconds.observe(auth_elapsed.as_secs_f64());
    if permit.decision() == Decision::AuditDeny {
        tracing::warn!(
            route = route.name(),
            reason = permit.reason().as_str(),
            "audit: the route's rules would deny this request"
        );
    }
    Ok((path, permit, route))
}

/// The most header fields a request may carry (SPEC §2 `limits.max_header_bytes`: "over 100
/// fields → 431"). hyper's own limits are set higher (`server`), as a backstop, so that Portcullis
/// answers — and counts and logs — every ordinary oversized head itself.
pub const MAX_HEADER_FIELDS: usize = 100;

/// Request line plus header section over `limits.max_header_bytes` (counted as they travel on an
/// HTTP/1.1 connection, `Name: value` CRLF each; HTTP/2 heads are counted the same way), or more
/// than [`MAX_HEADER_FIELDS`] fields: 431 (SECURITY DOS-03).
fn check_head_size(req: &Request<Incoming>, max_bytes: usize) -> Result<(), Rejection> {
    let headers = req.headers();
    if headers.len() > MAX_HEADER_FIELDS {
        return Err(Rejection::HeaderTooLarge);
    }
    // `METHOD SP target SP HTTP/1.1 CRLF`, each field line, and the empty line.
    let mut bytes = req.method().as_str().len() + target_len(req.uri()) + "  HTTP/1.1\r\n\r\n".len();
    for (name, value) in headers {
        bytes += name.as_str().len() + value.len() + ": \r\n".len();
        if bytes > max_bytes {
            return Err(Rejection::HeaderTooLarge);
        }
    }
    if bytes > max_bytes { Err(Rejection::HeaderTooLarge) } else { Ok(()) }
}

fn target_len(uri: &http::Uri) -> usize {
    uri.scheme_str().map_or(0, str::len)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |pq| pq.as_str().len())
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
        detail = %crate::log::truncate(&detail),
        total_us = 0u64,
    );
    // Counted after the line is written: whoever sees the count can find the line.
    shared.metrics.requests_total.with_label_values(&["none", Decision::Deny.as_str(), reason.as_str()]).inc();
}

/// A request target longer than `limits.max_uri_bytes` is a 414 before any of it is examined
/// (SECURITY PATH-11). A head over `max_header_bytes` was already a 431 (`check_head_size`), and
/// hyper's buffer limit stays the backstop for lines too long to even finish parsing.
fn check_uri_length(req: &Request<Incoming>, max: usize) -> Result<(), Rejection> {
    if target_len(req.uri()) > max { Err(Rejection::UriTooLong) } else { Ok(()) }
}

/// `CONNECT` and `TRACE` are never forwarded; h2c upgrades are refused; methods must be
/// upper-case tokens (SPEC §2; SECURITY SMUG-08/09).
fn check_method(req: &Request<Incoming>) -> Result<(), Rejection> {
    let m = req.method();
    if *m == Method::CONNECT || *m == Method::TRACE {
        return Err(Rejection::MethodNotAllowed);
    }
    if !m.as_str().bytes().all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_') {
        return Err(Rejection::BadRequest(Reason::BadRequest));
    }
    if headers::is_h2c_upgrade(req.headers()) {
        return Err(Rejection::MethodNotAllowed);
    }
    Ok(())
}

/// HTTP/1.1 needs exactly one `Host`, and any `Host` must be a plain `host[:port]`: it is passed
/// to the app and into `X-Forwarded-Host`, which apps use to build absolute URLs (RFC 9112 §3.2;
/// SECURITY SMUG-11).
fn check_host(req: &Request<Incoming>) -> Result<(), Rejection> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() || (host.is_none() && req.version() == Version::HTTP_11) {
        return Err(Rejection::BadRequest(Reason::BadRequest));
    }
    if let Some(h) = host {
        let valid = h
            .to_str()
            .ok()
            .filter(|s| !s.is_empty() && !s.contains(['@', '/', '\\', '?', '#']))
            .and_then(|s| s.parse::<http::uri::Authority>().ok())
            .is_some();
        if !valid {
            return Err(Rejection::BadRequest(Reason::BadRequest));
        }
    }
    Ok(())
}

fn is_preflight(req: &Request<Incoming>) -> bool {
    req.method() == Method::OPTIONS
        && req.headers().contains_key(header::ORIGIN)
        && req.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

async fn authenticate(rt: &Runtime, auth: AuthMode, req: &Request<Incoming>) -> Result<Authn, Rejection> {
    // `auth: none` never reads credentials: a token there is not parsed, not an error.
    if auth == AuthMode::None {
        return Ok(Authn::Skipped);
    }
    if rt.config.cors_preflight == CorsPreflight::Pass && is_preflight(req) {
        return Ok(Authn::Skipped);
    }
    let found = match credentials::extract(req.headers(), &rt.config.credentials, rt.client_ids()) {
        Ok(found) => found,
        Err(CredentialError::Ambiguous) => return Err(Rejection::BadRequest(Reason::MalformedToken)),
        Err(CredentialError::Malformed) => return Ok(Authn::Invalid(TokenError::Malformed("credential"))),
    };
    Ok(match found {
        Found::None => Authn::Anonymous,
        Found::One(token) => match rt.verifier.verify(&token, UseRule::Issuer).await {
            Ok(v) => Authn::Verified(v),
            Err(e) => Authn::Invalid(e),
        },
        // Two different tokens: an id+access pair, or ambiguous — refused rather than guessed
        // (SPEC §2 "Credentials").
        Found::Two(a, b) => match rt.verifier.verify_pair(&a, &b).await {
            Ok(v) => Authn::Verified(v),
            Err(PairError::NotAPair) => return Err(Rejection::BadRequest(Reason::MalformedToken)),
            Err(PairError::Token(e)) => Authn::Invalid(e),
        },
    })
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    shared: &Arc<Shared>,
    rt: &Runtime,
    mut req: Request<Incoming>,
    permit: &Permit,
    path: &str,
    conn: Conn,
    request_id: &HeaderValue,
    leftover: &mut Leftover,
) -> Result<Response<ProxyBody>, Rejection> {
    let websocket = headers::is_websocket_upgrade(req.headers());
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();

    // HTTP/2 carries the host in `:authority`; the app gets it as `Host` either way.
    if !parts.headers.contains_key(header::HOST)
        && let Some(authority) = parts.uri.authority()
        && let Ok(v) = HeaderValue::from_str(authority.as_str())
    {
        parts.headers.insert(header::HOST, v);
    }
    if !rt.config.identity.forward_token {
        credentials::strip_credential_cookies(&mut parts.headers, &rt.config.credentials, rt.client_ids());
    }
    let forwarding = Forwarding {
        peer: conn.peer,
        tls: conn.tls,
        request_id,
        identity: &rt.config.identity,
        credential_headers: &rt.credential_headers,
    };
    headers::rewrite_for_upstream(&mut parts.headers, permit, &forwarding);
    if websocket {
        parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        parts.headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }

    let uri = rt.upstream.uri(path, parts.uri.query()).map_err(|_| Rejection::BadRequest(Reason::BadRequest))?;
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
    let errors = shared.metrics.upstream_errors_total.clone();
    let id = request_id.clone();
    let on_body_error = move |kind: UpstreamError, e: &crate::body::BoxError| {
        errors.with_label_values(&[kind.kind()]).inc();
        tracing::warn!(
            request_id = id.to_str().unwrap_or_default(),
            kind = kind.kind(),
            error = %e,
            "upstream response body failed after its head was relayed; the client sees it truncated"
        );
    };
    let mut response = rt.upstream.send(upstream_req, upload.as_ref(), on_body_error).await.map_err(|e| match e {
        UpstreamError::Connect => Rejection::UpstreamConnect,
        UpstreamError::Reset => Rejection::UpstreamReset,
        UpstreamError::Timeout => Rejection::UpstreamTimeout,
        UpstreamError::Protocol => Rejection::UpstreamProtocol,
        // The client's own body failed (bad chunking, stalled upload): its fault, not the app's.
        UpstreamError::ClientBody => Rejection::BadRequest(Reason::BadRequest),
    })?;
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        match client_upgrade {
            Some(client) => {
                let upstream = hyper::upgrade::on(&mut response);
                tokio::spawn(tunnel(client, upstream));
            }
            // A 101 nobody asked for cannot be relayed.
            None => return Err(Rejection::UpstreamProtocol),
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

fn upstream_kind(r: &Rejection) -> Option<&'static str> {
    match r {
        Rejection::UpstreamConnect => Some("connect"),
        Rejection::UpstreamReset => Some("reset"),
        Rejection::UpstreamTimeout => Some("timeout"),
        Rejection::UpstreamProtocol => Some("protocol"),
        _ => None,
    }
}

/// Keep a client's `X-Request-Id` only when it is a short safe token (SECURITY OBS-02).
fn request_id(headers: &http::HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(crate::headers::X_REQUEST_ID)
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
