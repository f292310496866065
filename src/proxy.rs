//! The request pipeline, and nothing else (SPEC §1). Each stage is a small function from another
//! module; this file only sequences them, top to bottom:
//!
//! ```text
//! check_method → headers::strip_untrusted → path::normalise → routes.find
//!   → credentials::extract → verifier.verify → policy::decide → Permit
//!   → headers::rewrite_for_upstream → upstream.send → access log + metrics
//! ```
//!
//! Each request loads one config snapshot and uses it from start to end.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::body::{ProxyBody, Streamed};
use crate::config::{AuthMode, CorsPreflight};
use crate::credentials::{self, CredentialError, Found};
use crate::error::{Decision, Reason, Rejection};
use crate::headers::{self, Forwarding};
use crate::policy::{self, Authn, Permit};
use crate::upstream::UpstreamError;
use crate::verify::{PairError, TokenError, UseRule};
use crate::{Runtime, Shared, login, path};

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
        path: None,
        route: None,
        sub: None,
        auth: None,
        upstream: None,
        done: false,
    };
    // `Set-Cookie`s the sign-in adds to whatever response goes out (SPEC §8).
    let mut cookies = Vec::new();
    let (mut response, decision, reason) = match pipeline(&shared, &runtime, req, conn, &mut log, &mut cookies).await {
        Ok(done) => done,
        Err(rejection) => {
            if let Some(kind) = upstream_kind(&rejection) {
                shared.metrics.upstream_errors_total.with_label_values(&[kind]).inc();
            }
            let (decision, reason) = (rejection.decision(), rejection.reason());
            (rejection.into_response(request_id.to_str().unwrap_or_default(), origin.as_ref()), decision, reason)
        }
    };
    for c in cookies {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    response.headers_mut().insert(headers::X_REQUEST_ID, request_id);
    if shared.is_draining() && response.status() != StatusCode::SWITCHING_PROTOCOLS {
        // Ask HTTP/1 clients to reconnect (and so reach a replica that is not leaving).
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    log.finish(response.status(), decision, reason);
    Ok(response)
}

async fn pipeline(
    shared: &Arc<Shared>,
    rt: &Arc<Runtime>,
    mut req: Request<Incoming>,
    conn: Conn,
    log: &mut AccessLog,
    cookies: &mut Vec<HeaderValue>,
) -> Result<(Response<ProxyBody>, Decision, Reason), Rejection> {
    check_uri_length(&req, rt.config.limits.max_uri_bytes)?;
    check_method(&req)?;
    check_host(&req)?;
    // Before anything reads the request: no client header may pose as identity (SPEC §4).
    headers::strip_untrusted(req.headers_mut(), &rt.config.identity, &shared.metrics);

    let path = path::normalise(req.uri().path()).map_err(|e| {
        tracing::debug!(error = %e, "ambiguous path refused");
        Rejection::BadRequest(Reason::AmbiguousPath)
    })?;
    log.path = Some(path.clone());

    // Sign-in hook (SPEC §8): the reserved paths are answered here, before routing, and never
    // forwarded.
    if let Some(login) = &rt.login
        && login::endpoints::is_reserved(&path)
    {
        log.route = Some(login::endpoints::ROUTE_LABEL.to_owned());
        return login::endpoints::answer(login, &rt.verifier, &shared.metrics, &req, &path, cookies).await;
    }

    let route = rt.routes.find(req.method(), &path).ok_or(Rejection::Forbidden(Reason::NoRoute))?;
    log.route = Some(route.name().to_owned());

    // Sign-in hook (SPEC §8): a navigation with no credential (or whose session ended) is sent
    // to sign in instead of getting the 401.
    let sign_in = |r: Rejection, cookies: &mut Vec<HeaderValue>| {
        let return_to = match req.uri().query() {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        };
        let login = rt.login.as_ref();
        login::endpoints::sign_in_instead(login, &route.config, req.method(), req.headers(), &return_to, r, cookies)
    };
    let authn = match authenticate(shared, rt, route.config.auth, &req, cookies).await {
        Ok(authn) => authn,
        Err(r) => return Err(sign_in(r, cookies)),
    };
    let permit = match policy::decide(route, authn, rt.issuer_names()) {
        Ok(permit) => permit,
        Err(r) => return Err(sign_in(r, cookies)),
    };
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

    let upstream_start = Instant::now();
    let response = forward(rt, req, &permit, &path, conn, &log.request_id).await;
    let upstream_elapsed = upstream_start.elapsed();
    log.upstream = Some(upstream_elapsed);
    shared.metrics.upstream_duration_seconds.with_label_values(&[route.name()]).observe(upstream_elapsed.as_secs_f64());
    Ok((response?, permit.decision(), permit.reason()))
}

/// A request target longer than `limits.max_uri_bytes` is a 414 before any of it is examined
/// (SECURITY PATH-11). hyper's buffer limit (`max_header_bytes` → 431) stays the backstop for
/// lines too long to even finish parsing.
fn check_uri_length(req: &Request<Incoming>, max: usize) -> Result<(), Rejection> {
    let uri = req.uri();
    let len = uri.scheme_str().map_or(0, str::len)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if len > max { Err(Rejection::UriTooLong) } else { Ok(()) }
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

async fn authenticate(
    shared: &Shared,
    rt: &Runtime,
    auth: AuthMode,
    req: &Request<Incoming>,
    cookies: &mut Vec<HeaderValue>,
) -> Result<Authn, Rejection> {
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
        // Sign-in hook (SPEC §8): only when no configured source yielded a token is the session
        // consulted — other credentials win.
        Found::None => match &rt.login {
            Some(login) => {
                login::endpoints::session_authn(login, &rt.verifier, &shared.metrics, req.headers(), cookies).await?
            }
            None => Authn::Anonymous,
        },
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

async fn forward(
    rt: &Runtime,
    mut req: Request<Incoming>,
    permit: &Permit,
    path: &str,
    conn: Conn,
    request_id: &HeaderValue,
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
    // Sign-in hook (SPEC §8): the session and login cookies never reach the app, whatever
    // `forward_token` says (SECURITY LOGIN-06).
    if let Some(login) = &rt.login {
        login.strip_cookies(&mut parts.headers);
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
    let mut upstream_req = Request::new(Streamed::new(body, idle, true).boxed_unsync());
    *upstream_req.method_mut() = parts.method;
    *upstream_req.uri_mut() = uri;
    *upstream_req.version_mut() = if rt.config.upstream.http2 { Version::HTTP_2 } else { Version::HTTP_11 };
    *upstream_req.headers_mut() = parts.headers;

    let mut response = rt.upstream.send(upstream_req).await.map_err(|e| match e {
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
