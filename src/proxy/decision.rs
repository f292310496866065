//! The one authorisation path (SPEC §1). [`authorize`] takes a request head and a config
//! snapshot and decides: it checks the head, strips untrusted headers, normalises the path,
//! picks the route, reads and verifies the credential, applies the route's policy and — when the
//! request may pass — rewrites the headers exactly as the upstream will receive them. The proxy
//! pipeline, `explain` and `portcullis test` all call it, so they cannot disagree:
//!
//! ```text
//! headers::strip_untrusted → http::request checks (head size, target length, method, target
//!   form, Host) → path::normalise → routes.candidates → credentials::extract (else the sign-in
//!   session, SPEC §8) → verifier.verify(_pair) → policy::decide (a navigation refused for want of
//!   a credential → the sign-in redirect) → Permit → headers::rewrite_for_upstream
//! ```
//!
//! Everything learnt on the way is written into a [`Verdict`] as soon as it is known, so the
//! access log of a request abandoned half-way still shows how far it got, and `explain` can show
//! every step. It does no I/O of its own beyond what verification needs (a key refetch), records
//! no metrics and logs only at debug level: the caller records the outcome once.
//!
//! Cost per request is that of the steps themselves: the caller loads one config snapshot and
//! passes it in, the head is rewritten in place, and the verdict borrows routes from the snapshot
//! instead of copying them.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::request;

use crate::auth::credentials::{self, CredentialError, Found, Presented};
use crate::auth::policy::{self, Authn, Permit};
use crate::auth::verify::{PairError, TokenError, UseRule, Verified};
use crate::config::{AuthMode, CorsPreflight, Route};
use crate::http::error::{BadRequest, Forbidden, Rejection};
use crate::http::path::{self, PathError};
use crate::http::request as checks;
use crate::proxy::headers::{self, Forwarding, Stripped};
use crate::proxy::login;
use crate::proxy::runtime::Runtime;

/// Facts about the downstream connection.
#[derive(Debug, Clone, Copy)]
pub struct Conn {
    pub peer: SocketAddr,
    pub tls: bool,
}

/// What [`authorize`] found out about one request, step by step. Borrows the routes from the
/// config snapshot the request runs against.
#[derive(Debug, Default)]
pub struct Verdict<'rt> {
    /// Client headers removed on arrival (the caller meters them).
    pub stripped: Stripped,
    /// Why the path was refused, when it was.
    pub path_error: Option<PathError>,
    /// The normalised path: what the routes matched and what the upstream receives.
    pub path: Option<String>,
    /// Every route that matches, most specific first; the first is the one applied.
    pub candidates: Vec<&'rt Route>,
    /// Where the credential came from.
    pub credential: Presented,
    /// What verifying it gave, when a credential was read.
    pub verification: Option<Result<Arc<Verified>, TokenError>>,
    /// A WebSocket handshake: the upstream gets `Connection: upgrade` and `Upgrade: websocket`.
    pub websocket: bool,
    /// `Set-Cookie`s the browser sign-in adds to whatever response goes out (SPEC §8): a
    /// refreshed session, a cleared one, or a pending sign-in.
    pub set_cookies: Vec<HeaderValue>,
}

impl<'rt> Verdict<'rt> {
    /// The route applied to the request, if one matched.
    pub fn route(&self) -> Option<&'rt Route> {
        self.candidates.first().copied()
    }
}

/// What every request gets before anything reads it for meaning — the proxied ones here in
/// [`authorize`], and the sign-in's reserved paths, which the pipeline answers itself, so they get
/// the same limits and refusals (SPEC §2, §8).
///
/// First (every early refusal included): no client header may pose as identity, in any spelling a
/// CGI/WSGI/PHP bridge would fold onto ours (SPEC §4; SECURITY HDR-04, HDR-09, RULE-08). The caller
/// reads only `X-Request-Id` and `Origin` before this, names this never removes. Then the head
/// checks: size (431), target length (414), method (405/400), target form and `Host` (400).
pub fn admit_head(rt: &Runtime, head: &mut request::Parts, verdict: &mut Verdict<'_>) -> Result<(), Rejection> {
    verdict.stripped = headers::strip_untrusted(&mut head.headers, &rt.config.identity);
    checks::check_head_size(&head.method, &head.uri, &head.headers, rt.config.limits.max_header_bytes)?;
    checks::check_uri_length(&head.uri, rt.config.limits.max_uri_bytes)?;
    checks::check_method(&head.method, &head.headers)?;
    path::check_target(&head.uri).map_err(|e| {
        tracing::debug!(error = %e, "request target refused");
        verdict.path_error = Some(PathError::Target(e));
        Rejection::BadRequest(BadRequest::Malformed)
    })?;
    checks::check_host(&head.headers, head.version)
}

/// Decide on one request. `head` is the request as received; on `Ok` its headers are exactly
/// what the upstream will receive (untrusted and hop-by-hop headers gone, credentials removed
/// unless `forward_token`, forwarding headers and the permit's identity set). On `Err` the head
/// is left part-way and must not be forwarded.
pub async fn authorize<'rt>(
    rt: &'rt Runtime,
    head: &mut request::Parts,
    conn: Conn,
    request_id: &HeaderValue,
    verdict: &mut Verdict<'rt>,
) -> Result<Permit, Rejection> {
    admit_head(rt, head, verdict)?;

    let path = path::normalise(head.uri.path()).map_err(|e| {
        tracing::debug!(error = %e, "ambiguous path refused");
        verdict.path_error = Some(e);
        Rejection::BadRequest(BadRequest::AmbiguousPath)
    })?;
    // The sign-in's reserved paths are answered by the pipeline before this runs; should one get
    // here, it is never routed to the app (SPEC §8 "Reserved paths"; SECURITY LOGIN-06).
    if rt.login.is_some() && login::is_reserved(&path) {
        verdict.path = Some(path);
        return Err(Rejection::Forbidden(Forbidden::NoRoute));
    }
    verdict.candidates = rt.routes.candidates(&head.method, &path);
    verdict.path = Some(path);
    let route = verdict.route().ok_or(Rejection::Forbidden(Forbidden::NoRoute))?;

    let permit = match authenticate(rt, route, head, verdict).await {
        Ok(authn) => policy::decide(route, authn, rt.issuer_names()),
        Err(rejection) => Err(rejection),
    };
    // A browser navigation with no credential (or whose session ended) is sent to sign in
    // instead of getting the 401 (SPEC §8 "Who is sent to sign in").
    let permit = match (permit, &rt.login) {
        (Err(rejection), Some(l)) => {
            let path = verdict.path.as_deref().unwrap_or("/");
            let return_to = match head.uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.to_owned(),
            };
            let cookies = &mut verdict.set_cookies;
            Err(login::sign_in_instead(l, route, &head.method, &head.headers, &return_to, rejection, cookies))
        }
        (permit, _) => permit,
    }?;
    prepare_upstream_head(rt, head, conn, request_id, &permit, verdict);
    Ok(permit)
}

/// Read and verify the credential the route needs. The browser sign-in session (SPEC §8), a
/// source that needs asynchronous work (it may refresh its tokens), is consulted when the
/// configured sources found nothing (other credentials win), and its id+access pair is verified
/// by the same verifier as a presented pair.
async fn authenticate(
    rt: &Runtime,
    route: &Route,
    head: &request::Parts,
    verdict: &mut Verdict<'_>,
) -> Result<Authn, Rejection> {
    // `auth: none` never reads credentials: a token there is not parsed, not an error.
    if route.auth == AuthMode::None {
        return Ok(Authn::Skipped);
    }
    if rt.config.cors_preflight == CorsPreflight::Pass && checks::is_preflight(&head.method, &head.headers) {
        return Ok(Authn::Skipped);
    }
    let found = match credentials::extract(&head.headers, &rt.config.credentials, rt.client_ids()) {
        Ok(found) => found,
        Err(CredentialError::Ambiguous) => return Err(Rejection::BadRequest(BadRequest::AmbiguousCredential)),
        Err(CredentialError::Malformed) => {
            verdict.credential = Presented::Malformed;
            let e = TokenError::Malformed("credential");
            verdict.verification = Some(Err(e));
            return Ok(Authn::Invalid(e));
        }
    };
    verdict.credential = found.presented();
    let verified = match found {
        Found::None => match &rt.login {
            Some(l) => {
                let authn = login::session_authn(l, &rt.verifier, &head.headers, &mut verdict.set_cookies).await?;
                if let Authn::Verified(v) = &authn {
                    verdict.credential = Presented::Session;
                    verdict.verification = Some(Ok(v.clone()));
                }
                return Ok(authn);
            }
            None => return Ok(Authn::Anonymous),
        },
        Found::One(token) => rt.verifier.verify(&token.value, UseRule::Issuer).await,
        // Two different tokens: an id+access pair, or ambiguous — refused rather than guessed
        // (SPEC §2 "Credentials").
        Found::Two(a, b) => match rt.verifier.verify_pair(&a.value, &b.value).await {
            Ok(v) => Ok(v),
            Err(PairError::NotAPair) => return Err(Rejection::BadRequest(BadRequest::AmbiguousCredential)),
            Err(PairError::Token(e)) => Err(e),
        },
    };
    verdict.verification = Some(verified.clone());
    Ok(match verified {
        Ok(v) => Authn::Verified(v),
        Err(e) => Authn::Invalid(e),
    })
}

/// The head as the upstream receives it: the rewrite runs only once the policy issued a permit.
fn prepare_upstream_head(
    rt: &Runtime,
    head: &mut request::Parts,
    conn: Conn,
    request_id: &HeaderValue,
    permit: &Permit,
    verdict: &mut Verdict<'_>,
) {
    // Read before the rewrite removes the hop-by-hop `Connection` and `Upgrade`.
    verdict.websocket = checks::is_websocket_upgrade(&head.headers);
    // HTTP/2 carries the host in `:authority`; the app gets it as `Host` either way.
    if !head.headers.contains_key(header::HOST)
        && let Some(authority) = head.uri.authority()
        && let Ok(v) = HeaderValue::from_str(authority.as_str())
    {
        head.headers.insert(header::HOST, v);
    }
    if !rt.config.identity.forward_token {
        credentials::strip_credential_cookies(&mut head.headers, &rt.config.credentials, rt.client_ids());
    }
    // The session and login cookies never reach the app, whatever `forward_token` says: they
    // hold a refresh token (SPEC §8; SECURITY LOGIN-06).
    if let Some(l) = &rt.login {
        l.strip_cookies(&mut head.headers);
    }
    let forwarding = Forwarding {
        peer: conn.peer,
        tls: conn.tls,
        request_id,
        identity: &rt.config.identity,
        credential_headers: &rt.credential_headers,
    };
    headers::rewrite_for_upstream(&mut head.headers, permit, &forwarding);
    if verdict.websocket {
        head.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        head.headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
}
