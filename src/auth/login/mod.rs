//! Browser sign-in (SPEC §8): Cognito's managed login through the authorization-code flow with
//! PKCE, an AEAD-sealed session cookie, and per-process memory of each session's tokens. A
//! session is one more credential source feeding the same decision path as a bearer token: it
//! yields an id+access pair verified by the existing verifier (`verify::pair`), so identity
//! headers and route rules are exactly those of SPEC §2.
//!
//! Pieces: [`seal`] (the cookie cipher), [`pending`] (the login cookie with ≤ 3 pending
//! sign-ins), [`oauth`] (the provider protocol), [`sessions`] (the session cookie, the in-memory
//! tokens and single-flight refresh), [`opened`] (a memo of session cookies already opened);
//! what the browser sees of them (`/.portcullis/callback`, `/login`, `/logout` and the sign-in
//! redirect) is `proxy::login`. This file owns what they share: the per-snapshot
//! [`LoginRuntime`], cookie writing and stripping, and who counts as a navigation.

pub mod oauth;
pub mod opened;
pub mod pending;
pub mod seal;
pub mod sessions;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::Method;
use http::header::{self, HeaderMap, HeaderValue};

use crate::config::{Config, Login};
use crate::http::cookie;
use crate::telemetry::metrics::Metrics;
use oauth::OAuthClient;
use opened::OpenedCookies;
use seal::{Purpose, Sealer};
use sessions::SessionStore;

/// Every path at or under this prefix is answered by Portcullis when `login` is configured, and
/// never forwarded (SPEC §8 "Reserved paths").
pub const RESERVED_PREFIX: &str = "/.portcullis";

/// What one config snapshot needs to serve sign-ins and sessions.
pub struct LoginRuntime {
    pub config: Login,
    session_sealer: Sealer,
    login_sealer: Sealer,
    pub oauth: OAuthClient,
    /// Shared with the next snapshot when a reload keeps the same provider and client, so a
    /// reload (even one rotating the secrets) signs nobody out and refreshes nothing.
    pub store: Arc<SessionStore>,
    /// Session cookies already opened under this snapshot's secrets (never carried to the next
    /// snapshot: its secrets may differ).
    opened: OpenedCookies,
    /// Tells this snapshot's verified pairs from another's (issuer indexes may differ).
    snapshot: u64,
    /// Where sign-ins and refreshes are counted (`logins_total`, `session_refresh_total`).
    pub metrics: Arc<Metrics>,
}

static SNAPSHOTS: AtomicU64 = AtomicU64::new(1);

impl LoginRuntime {
    /// Build from a validated config; `None` without a `login` block.
    pub fn build(
        config: &Config,
        metrics: &Arc<Metrics>,
        previous: Option<&LoginRuntime>,
    ) -> Result<Option<LoginRuntime>, String> {
        let Some(login) = &config.login else { return Ok(None) };
        let capacity = match config.limits.token_cache_entries {
            // A disabled token cache does not disable sessions: their tokens must live somewhere.
            0 => 1024,
            n => n,
        };
        let store = match previous {
            Some(p)
                if p.config.issuer == login.issuer
                    && p.config.client_id == login.client_id
                    && p.config.endpoints.token == login.endpoints.token =>
            {
                p.store.clone()
            }
            _ => Arc::new(SessionStore::new(capacity)),
        };
        Ok(Some(LoginRuntime {
            session_sealer: Sealer::new(&login.session.secrets, Purpose::Session)?,
            login_sealer: Sealer::new(&login.session.secrets, Purpose::Login)?,
            oauth: OAuthClient::new(login, &config.jwks)?,
            store,
            opened: OpenedCookies::new(capacity.min(opened::MAX_OPENED)),
            snapshot: SNAPSHOTS.fetch_add(1, Ordering::Relaxed),
            metrics: metrics.clone(),
            config: login.clone(),
        }))
    }

    pub fn session_cookie(&self) -> &str {
        &self.config.session.cookie
    }

    /// Remove the session and login cookies from `Cookie`, always (SPEC §8; SECURITY LOGIN-06):
    /// they hold a refresh token, and apps log request headers.
    pub fn strip_cookies(&self, headers: &mut HeaderMap) {
        // The login cookie is `<session cookie>-login` (`Login::login_cookie`), matched without
        // building that name on every request.
        let session = self.config.session.cookie.as_str();
        cookie::remove_where(headers, |name| name == session || name.strip_suffix("-login") == Some(session));
    }
}

/// `Set-Cookie` for one of our cookies: `__Host-` rules (Secure, `Path=/`, no `Domain`),
/// HttpOnly so page script never reads it, SameSite=Lax so cross-site POSTs and subresource
/// requests do not carry it (SECURITY LOGIN-05).
pub fn set_cookie(name: &str, value: &str, max_age: u64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("{name}={value}; Path=/; Max-Age={max_age}; Secure; HttpOnly; SameSite=Lax")).ok()
}

/// `Set-Cookie` that removes one of our cookies.
pub fn clear_cookie(name: &str) -> Option<HeaderValue> {
    set_cookie(name, "", 0)
}

/// A browser navigation (SPEC §8 "Who is sent to sign in"): `GET`/`HEAD` with
/// `Sec-Fetch-Mode: navigate`, or without `Sec-Fetch-Mode`, an `Accept` naming `text/html`.
/// `fetch()`, XHR, scripts and API clients are never redirected (SECURITY LOGIN-09).
pub fn is_navigation(method: &Method, headers: &HeaderMap) -> bool {
    if method != Method::GET && method != Method::HEAD {
        return false;
    }
    match headers.get("sec-fetch-mode") {
        Some(mode) => mode.as_bytes().eq_ignore_ascii_case(b"navigate"),
        None => headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|media| media.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("text/html"))),
    }
}

/// `n` random bytes from the system CSPRNG (aws-lc-rs), base64url.
pub fn random_token(n: usize) -> Option<String> {
    use aws_lc_rs::rand::SecureRandom;
    use base64::Engine;
    let mut buf = vec![0u8; n];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut buf).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}

/// Equality without an early exit on the first differing byte.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// Unix seconds now (0 on a clock before 1970, which then fails every expiry check). Wall-clock
/// time is the point: cookie and token expiry are Unix timestamps.
#[allow(clippy::disallowed_methods)]
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn only_navigations_are_redirected() {
        // SECURITY LOGIN-09.
        type Case<'a> = (&'a Method, &'a [(&'a str, &'a str)], bool);
        let cases: &[Case] = &[
            (&Method::GET, &[("sec-fetch-mode", "navigate")], true),
            (&Method::HEAD, &[("sec-fetch-mode", "navigate")], true),
            (&Method::GET, &[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")], true),
            (&Method::GET, &[("sec-fetch-mode", "cors"), ("accept", "text/html")], false),
            (&Method::GET, &[("sec-fetch-mode", "no-cors")], false),
            (&Method::GET, &[("accept", "application/json")], false),
            (&Method::GET, &[("accept", "*/*")], false),
            (&Method::GET, &[], false),
            (&Method::POST, &[("sec-fetch-mode", "navigate"), ("accept", "text/html")], false),
        ];
        for (method, headers, want) in cases {
            assert_eq!(is_navigation(method, &h(headers)), *want, "{method} {headers:?}");
        }
    }

    #[test]
    fn cookie_helpers_read_every_field() {
        let headers = h(&[("cookie", "a=1; __Host-s=x"), ("cookie", "__Host-s=\"y\"")]);
        assert_eq!(cookie::values(&headers, "__Host-s").collect::<Vec<_>>(), ["x", "y"]);
        let c = set_cookie("__Host-s", "v", 60).unwrap();
        assert_eq!(c, "__Host-s=v; Path=/; Max-Age=60; Secure; HttpOnly; SameSite=Lax");
        assert!(!c.to_str().unwrap().contains("Domain"));
    }
}
