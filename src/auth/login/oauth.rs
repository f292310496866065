//! The OAuth 2.0 / OIDC client side of the sign-in (SPEC §8): the authorize URL (code flow with
//! PKCE S256, `state`, `nonce`), the code exchange and refresh at the token endpoint (HTTP Basic
//! client authentication when a secret is set), and revocation. Kept in this one module rather
//! than taken from the `oauth2` crate, whose 5.x line brings reqwest 0.12 (a second HTTP/TLS
//! stack next to ours) and RustCrypto `sha2`/`rand 0.8` (a second crypto provider).
//!
//! The HTTP client is built like the JWKS fetcher's: timeouts, no redirects, ambient proxy
//! variables ignored (only `jwks.proxy`), TLS verified against the webpki roots plus
//! `jwks.ca_file`, response bodies capped. Nothing here logs a code or a token.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use crate::config::{self, Login, Secret};
use crate::http::percent::encode;

/// Connect timeout for every provider call.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Whole-call bound for the token and revoke endpoints: a slow provider costs a user this
/// long at most, then 503 `idp_unavailable` (SECURITY LOGIN-10).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest token-endpoint response read (three JWTs fit many times over).
const MAX_BODY: usize = 256 * 1024;

/// What the token endpoint returned.
#[derive(Clone, Deserialize)]
pub struct TokenSet {
    pub access_token: String,
    #[serde(default)]
    pub id_token: Option<String>,
    #[serde(default)]
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSet { .. }")
    }
}

/// Why a token-endpoint call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// Not reachable, timed out, or a 5xx: try again later (503 `idp_unavailable`).
    #[error("the identity provider is unavailable: {0}")]
    Unavailable(String),
    /// `invalid_grant`: the code or refresh token is used up, expired or revoked.
    #[error("the identity provider refused the grant")]
    InvalidGrant,
    /// Any other refusal (`invalid_client`, `redirect_mismatch`, …) or an unreadable answer.
    #[error("the token endpoint refused: {0}")]
    Refused(String),
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
}

/// A client for one `login` block's provider.
pub struct OAuthClient {
    endpoints: config::LoginEndpoints,
    client_id: String,
    secret: Option<Secret>,
    redirect_uri: String,
    scope: String,
    http: reqwest::Client,
}

impl OAuthClient {
    pub fn new(login: &Login, jwks: &config::Jwks) -> Result<OAuthClient, String> {
        // A token endpoint that redirects is misconfigured or hostile: the code and the client
        // secret must never follow a redirect to another host (the shared builder follows none).
        let builder = crate::auth::jwks::outbound_client(jwks, CONNECT_TIMEOUT, CALL_TIMEOUT)?;
        Ok(OAuthClient {
            endpoints: login.endpoints.clone(),
            client_id: login.client_id.clone(),
            secret: login.client_secret.clone(),
            redirect_uri: login.redirect_uri(),
            scope: login.scopes.join(" "),
            http: builder.build().map_err(|e| format!("login HTTP client: {e}"))?,
        })
    }

    /// The authorize endpoint URL for one pending sign-in (SECURITY LOGIN-01/02).
    pub fn authorize_url(&self, state: &str, nonce: &str, code_challenge: &str) -> String {
        let sep = if self.endpoints.authorize.contains('?') { '&' } else { '?' };
        format!(
            "{}{sep}{}",
            self.endpoints.authorize,
            form(&[
                ("response_type", "code"),
                ("client_id", &self.client_id),
                ("redirect_uri", &self.redirect_uri),
                ("scope", &self.scope),
                ("state", state),
                ("nonce", nonce),
                ("code_challenge", code_challenge),
                ("code_challenge_method", "S256"),
            ])
        )
    }

    /// Where the browser goes after sign-out: the provider's logout endpoint with `client_id`
    /// and `logout_uri` (Cognito's LOGOUT endpoint), or `after_logout_url` itself.
    pub fn logout_url(&self, after_logout_url: &str) -> String {
        match &self.endpoints.logout {
            Some(l) => {
                let sep = if l.contains('?') { '&' } else { '?' };
                format!("{l}{sep}{}", form(&[("client_id", &self.client_id), ("logout_uri", after_logout_url)]))
            }
            None => after_logout_url.to_owned(),
        }
    }

    /// Exchange an authorization code (with its PKCE verifier).
    pub async fn exchange(&self, code: &str, verifier: &str) -> Result<TokenSet, OAuthError> {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &self.redirect_uri),
            ("code_verifier", verifier),
            ("client_id", &self.client_id),
        ])
        .await
    }

    /// New tokens for a refresh token.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenSet, OAuthError> {
        self.token(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", &self.client_id)])
            .await
    }

    /// Revoke a refresh token (RFC 7009). `Ok(false)` when no revoke endpoint is configured.
    pub async fn revoke(&self, refresh_token: &str) -> Result<bool, OAuthError> {
        let Some(url) = &self.endpoints.revoke else { return Ok(false) };
        let body = form(&[("token", refresh_token), ("client_id", &self.client_id)]);
        let response = self.post(url, body).send().await.map_err(|e| OAuthError::Unavailable(describe(&e)))?;
        let status = response.status();
        if status.is_success() {
            Ok(true)
        } else if status.is_server_error() {
            Err(OAuthError::Unavailable(format!("HTTP {}", status.as_u16())))
        } else {
            Err(OAuthError::Refused(format!("HTTP {}", status.as_u16())))
        }
    }

    fn post(&self, url: &str, body: String) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::header::ACCEPT, "application/json")
            .body(body);
        if let Some(secret) = &self.secret {
            // RFC 6749 §2.3.1: both parts form-urlencoded, then Basic.
            let user = encode(&self.client_id);
            let pass = encode(&String::from_utf8_lossy(&secret.0));
            req =
                req.header(http::header::AUTHORIZATION, format!("Basic {}", STANDARD.encode(format!("{user}:{pass}"))));
        }
        req
    }

    async fn token(&self, params: &[(&str, &str)]) -> Result<TokenSet, OAuthError> {
        let mut response = self
            .post(&self.endpoints.token, form(params))
            .send()
            .await
            .map_err(|e| OAuthError::Unavailable(describe(&e)))?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| OAuthError::Unavailable(describe(&e)))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(OAuthError::Refused("token response too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_server_error() {
            return Err(OAuthError::Unavailable(format!("HTTP {}", status.as_u16())));
        }
        if !status.is_success() {
            // Only the provider's error code is kept (never the body: it could echo a token).
            let code = serde_json::from_slice::<ErrorBody>(&body).map(|b| b.error).unwrap_or_default();
            if code == "invalid_grant" {
                return Err(OAuthError::InvalidGrant);
            }
            let code: String = code.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
            return Err(OAuthError::Refused(format!("HTTP {} {code}", status.as_u16())));
        }
        serde_json::from_slice::<TokenSet>(&body).map_err(|_| OAuthError::Refused("unreadable token response".into()))
    }
}

/// The failure without URLs or bodies (reqwest's Display names the URL, which is config, but keep
/// logs terse and free of anything request-specific).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else {
        "transport".into()
    }
}

/// `application/x-www-form-urlencoded` for `pairs`.
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

/// Decode one `application/x-www-form-urlencoded` value (`+` is a space); `None` when the
/// escapes are invalid or the result is not UTF-8.
pub fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A query parameter given twice, or not decodable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmbiguousParam;

/// The single value of `key` in a query string. Several values, or an undecodable one, are
/// `Err` (which one would the provider have meant?).
pub fn query_param(query: Option<&str>, key: &str) -> Result<Option<String>, AmbiguousParam> {
    let mut found = None;
    for pair in query.unwrap_or_default().split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if decode(k).as_deref() == Some(key) {
            if found.is_some() {
                return Err(AmbiguousParam);
            }
            found = Some(decode(v).ok_or(AmbiguousParam)?);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_round_trips() {
        assert_eq!(encode("a b/c?d=é"), "a%20b%2Fc%3Fd%3D%C3%A9");
        assert_eq!(decode(&encode("a b/c?d=é+")).as_deref(), Some("a b/c?d=é+"));
        assert_eq!(decode("a%20b+c%2F").as_deref(), Some("a b c/"));
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode("%4"), None);
        assert_eq!(query_param(Some("a=1&b=%2F%2Fx"), "b"), Ok(Some("//x".into())));
        assert_eq!(query_param(Some("a=1&a=2"), "a"), Err(AmbiguousParam));
        assert_eq!(query_param(None, "a"), Ok(None));
    }
}
