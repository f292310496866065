//! What the browser sees of the sign-in (SPEC §8): the reserved paths `/.portcullis/callback`,
//! `/.portcullis/login?rd=PATH` and `/.portcullis/logout`, answered on `listen` and never
//! forwarded; the 302 that sends a navigation without a credential to the authorize endpoint;
//! and turning a session into the request's authentication. The pipeline answers the reserved
//! paths before `decision::authorize` runs; `authorize` calls [`session_authn`] (the session as a
//! credential source) and [`sign_in_instead`] (the redirect). Refusals are returned as
//! [`Rejection`]s, which `http::error` turns into responses. The cookies, sessions and OAuth
//! client themselves are `auth::login`.

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode, Uri};

use crate::auth::login::oauth::{OAuthError, query_param};
use crate::auth::login::pending::{LOGIN_TTL_SECS, Pending, PendingList, safe_return_path};
use crate::auth::login::sessions::{SessionAuth, SessionCookie, SetError};
use crate::auth::login::{LoginRuntime, RESERVED_PREFIX, clear_cookie, is_navigation, now_secs, set_cookie};
use crate::auth::policy::Authn;
use crate::auth::verify::{TokenError, Verifier};
use crate::config::{AuthMode, Route};
use crate::http::body::{self, ProxyBody};
use crate::http::error::{BadRequest, Decision, Forbidden, Reason, Rejection, SignIn};

/// The `route` label and log field for requests to the reserved paths.
pub const ROUTE_LABEL: &str = ".portcullis";

/// Whether a normalised path is reserved (compared case-insensitively, so no spelling of it can
/// reach an app that routes case-insensitively).
pub fn is_reserved(path: &str) -> bool {
    let n = RESERVED_PREFIX.len();
    path.len() >= n
        && path.as_bytes()[..n].eq_ignore_ascii_case(RESERVED_PREFIX.as_bytes())
        && (path.len() == n || path.as_bytes()[n] == b'/')
}

/// A finished response from a reserved path, with its access-log decision.
pub type Answer = (Response<ProxyBody>, Decision, Reason);

/// Answer a request to a reserved path.
pub async fn answer(
    login: &LoginRuntime,
    verifier: &Verifier,
    head: &http::request::Parts,
    path: &str,
    cookies: &mut Vec<HeaderValue>,
) -> Result<Answer, Rejection> {
    let (method, uri, headers) = (&head.method, &head.uri, &head.headers);
    let metrics = &login.metrics;
    let get = method == Method::GET || method == Method::HEAD;
    match path {
        "/.portcullis/callback" if get => callback(login, verifier, metrics, uri, headers, cookies).await,
        "/.portcullis/login" if get => {
            let rd = query_param(uri.query(), "rd").ok().flatten().unwrap_or_else(|| "/".into());
            let location = sign_in(login, headers, &rd, cookies).ok_or(Rejection::LoginFailed)?;
            Ok((redirect(StatusCode::FOUND, location), Decision::Public, Reason::Public))
        }
        "/.portcullis/logout" => logout(login, method, headers, cookies).await,
        "/.portcullis/callback" | "/.portcullis/login" => Err(Rejection::MethodNotAllowed),
        _ => Err(Rejection::Forbidden(Forbidden::NoRoute)),
    }
}

fn redirect(status: StatusCode, location: HeaderValue) -> Response<ProxyBody> {
    let mut r = Response::new(body::full(bytes::Bytes::new()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::LOCATION, location);
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Start a sign-in: add a pending sign-in to the login cookie and return the authorize URL
/// (SECURITY LOGIN-01/02: fresh `state` and `nonce`, PKCE S256; the verifier stays sealed).
pub fn sign_in(
    login: &LoginRuntime,
    headers: &HeaderMap,
    return_to: &str,
    cookies: &mut Vec<HeaderValue>,
) -> Option<HeaderValue> {
    let now = now_secs();
    let mut list = login.open_login(headers).map(|p| PendingList::decode(&p, now)).unwrap_or_default();
    let pending = Pending::new(return_to, now)?;
    let url = login.oauth.authorize_url(&pending.state, &pending.nonce, &pending.code_challenge());
    list.push(pending);
    let sealed = login.seal_login(&list.encode())?;
    cookies.push(set_cookie(&login.config.login_cookie(), &sealed, LOGIN_TTL_SECS)?);
    HeaderValue::from_str(&url).ok()
}

/// Replace a missing-credential or ended-session refusal by the sign-in redirect when the request
/// is a browser navigation to an `auth: required` route that has not opted out with
/// `login: false` (SPEC §8 "Who is sent to sign in"; SECURITY LOGIN-09).
pub fn sign_in_instead(
    login: &LoginRuntime,
    route: &Route,
    method: &Method,
    headers: &HeaderMap,
    return_to: &str,
    rejection: Rejection,
    cookies: &mut Vec<HeaderValue>,
) -> Rejection {
    let reason = match rejection {
        Rejection::MissingToken => SignIn::MissingToken,
        Rejection::SessionExpired => SignIn::SessionExpired,
        _ => return rejection,
    };
    if route.auth != AuthMode::Required || !route.login || !is_navigation(method, headers) {
        return rejection;
    }
    match sign_in(login, headers, return_to, cookies) {
        Some(location) => Rejection::SignIn { location, reason },
        None => rejection,
    }
}

/// The request's session as its authentication (called only when no configured credential
/// source yielded a token: other credentials win, SPEC §8).
pub async fn session_authn(
    login: &LoginRuntime,
    verifier: &Verifier,
    headers: &HeaderMap,
    cookies: &mut Vec<HeaderValue>,
) -> Result<Authn, Rejection> {
    match login.session(verifier, &login.metrics, headers).await {
        SessionAuth::None => Ok(Authn::Anonymous),
        SessionAuth::Invalid => {
            // Tampered, truncated, foreign or expired: no credential, and the cookie is cleared
            // (SECURITY LOGIN-05).
            cookies.extend(clear_cookie(login.session_cookie()));
            Ok(Authn::Anonymous)
        }
        SessionAuth::Valid { verified, set_cookie } => {
            cookies.extend(set_cookie);
            Ok(Authn::Verified(verified))
        }
        SessionAuth::Ended => {
            cookies.extend(clear_cookie(login.session_cookie()));
            Err(Rejection::SessionExpired)
        }
        SessionAuth::Unavailable => Err(Rejection::IdpUnavailable),
        SessionAuth::KeysUnavailable => Err(Rejection::KeysUnavailable),
    }
}

/// `/.portcullis/callback` (SPEC §8 "Callback").
async fn callback(
    login: &LoginRuntime,
    verifier: &Verifier,
    metrics: &crate::telemetry::metrics::Metrics,
    uri: &Uri,
    headers: &HeaderMap,
    cookies: &mut Vec<HeaderValue>,
) -> Result<Answer, Rejection> {
    let result = |r: &str| metrics.logins_total.with_label_values(&[r]).inc();
    let query = uri.query();
    let (Ok(state), Ok(code), Ok(error)) =
        (query_param(query, "state"), query_param(query, "code"), query_param(query, "error"))
    else {
        result("state_mismatch");
        return Err(Rejection::LoginState);
    };
    let now = now_secs();
    let mut list = login.open_login(headers).map(|p| PendingList::decode(&p, now)).unwrap_or_default();
    let pending = state.as_deref().and_then(|s| list.take(s));
    let Some(pending) = pending else {
        // Missing, altered, another browser's, expired or already used: nothing is exchanged
        // (SECURITY LOGIN-01).
        result("state_mismatch");
        tracing::info!("sign-in callback with no matching pending sign-in refused");
        return Err(Rejection::LoginState);
    };
    // The pending sign-in is used up whatever happens next, so the callback cannot be replayed.
    let login_cookie = login.config.login_cookie();
    if list.is_empty() {
        cookies.extend(clear_cookie(&login_cookie));
    } else if let Some(sealed) = login.seal_login(&list.encode()) {
        cookies.extend(set_cookie(&login_cookie, &sealed, LOGIN_TTL_SECS));
    }
    if let Some(error) = error {
        result("idp_error");
        let error: String = error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
        tracing::info!(error = %error, "the identity provider returned an error to the sign-in callback");
        return Err(Rejection::LoginFailed);
    }
    let Some(code) = code.filter(|c| !c.is_empty()) else {
        result("idp_error");
        return Err(Rejection::LoginFailed);
    };
    let set = match login.oauth.exchange(&code, &pending.verifier).await {
        Ok(set) => set,
        Err(e) => {
            result("exchange_failed");
            tracing::warn!(error = %e, "sign-in code exchange failed");
            return Err(match e {
                OAuthError::Unavailable(_) => Rejection::IdpUnavailable,
                _ => Rejection::LoginFailed,
            });
        }
    };
    let (Some(id), Some(refresh)) = (set.id_token.clone(), set.refresh_token.clone()) else {
        result("exchange_failed");
        tracing::warn!("the token endpoint returned no id token or no refresh token; no session");
        return Err(Rejection::LoginFailed);
    };
    let verified = match login.verify_tokens(verifier, &id, &set.access_token, None, Some(&pending.nonce)).await {
        Ok(v) => v,
        Err(SetError::Token(TokenError::KeysUnavailable | TokenError::Clock)) => {
            result("token_invalid");
            return Err(Rejection::KeysUnavailable);
        }
        Err(e) => {
            // SECURITY LOGIN-03: wrong nonce, aud, client, sub, at_hash, signature, times, iss.
            result("token_invalid");
            tracing::warn!(error = ?e, "sign-in tokens refused");
            return Err(Rejection::LoginFailed);
        }
    };
    let lifetime = login.config.session.lifetime.as_secs();
    let session = SessionCookie::new(&verified.sub, &refresh, lifetime).ok_or(Rejection::LoginFailed)?;
    let Some(cookie) = login.seal_session(&session) else {
        result("token_invalid");
        return Err(Rejection::LoginFailed);
    };
    cookies.push(cookie);
    login.remember(&session, id, set.access_token, verified.clone());
    result("ok");
    tracing::info!(sub = %crate::telemetry::log::truncate(&verified.sub), "signed in");
    // Only a path on this origin, prefixed with `public_url` so the browser cannot land
    // elsewhere (SECURITY LOGIN-04).
    let location = format!("{}{}", login.config.public_url, safe_return_path(&pending.return_to));
    let location = HeaderValue::from_str(&location).map_err(|_| Rejection::LoginFailed)?;
    Ok((redirect(StatusCode::SEE_OTHER, location), Decision::Allow, Reason::Ok))
}

/// `/.portcullis/logout` (SPEC §8 "Sign-out"; SECURITY LOGIN-08).
async fn logout(
    login: &LoginRuntime,
    method: &Method,
    headers: &HeaderMap,
    cookies: &mut Vec<HeaderValue>,
) -> Result<Answer, Rejection> {
    let site = headers.get("sec-fetch-site").map(|v| v.as_bytes().to_ascii_lowercase());
    let same_site_get = (method == Method::GET || method == Method::HEAD)
        && matches!(site.as_deref(), Some(b"same-origin") | Some(b"none"));
    if method != Method::POST && !same_site_get {
        // A cross-site (or unlabelled) GET could be an <img> on any page: it does nothing.
        return Err(Rejection::Forbidden(Forbidden::CrossSiteLogout));
    }
    if let Some((session, _)) = login.open_session(headers) {
        let newer = login.forget(&session);
        for token in std::iter::once(session.refresh_token.clone()).chain(newer) {
            match login.oauth.revoke(&token).await {
                Ok(true) => tracing::info!("refresh token revoked at sign-out"),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "refresh token revocation failed at sign-out"),
            }
        }
    }
    cookies.extend(clear_cookie(login.session_cookie()));
    cookies.extend(clear_cookie(&login.config.login_cookie()));
    let location = login.oauth.logout_url(&login.config.after_logout_url);
    let location = HeaderValue::from_str(&location).map_err(|_| Rejection::BadRequest(BadRequest::Malformed))?;
    Ok((redirect(StatusCode::SEE_OTHER, location), Decision::Allow, Reason::Ok))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_paths_are_the_prefix_and_below_in_any_case() {
        for p in ["/.portcullis", "/.portcullis/", "/.portcullis/callback", "/.PORTCULLIS/x", "/.Portcullis"] {
            assert!(is_reserved(p), "{p}");
        }
        for p in ["/", "/.portcullisx", "/app/.portcullis/callback", "/.portculli"] {
            assert!(!is_reserved(p), "{p}");
        }
    }
}
