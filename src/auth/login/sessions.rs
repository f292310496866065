//! Serving a session (SPEC §8 "Session cookie", "Serving a session"): the session cookie's
//! contents, the per-process memory of each session's tokens, and the refresh that keeps them
//! current — one refresh per session at a time, however many requests arrive at once (SECURITY
//! LOGIN-07).
//!
//! The cookie holds only what any replica needs to take over a session: a random session id, the
//! `sub`, the start and absolute expiry, and the refresh token. Access and id tokens never leave
//! this process; a replica that has none for a session refreshes once. Does not own the cipher
//! (`seal`) or the provider protocol (`oauth`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::HeaderMap;
use http::header::HeaderValue;
use serde_json::Value;

use super::oauth::OAuthError;
use super::{LoginRuntime, constant_time_eq, now_secs, set_cookie};
use crate::auth::verify::{PairError, TokenError, UseRule, Verified, Verifier};
use crate::config::TokenUse;
use crate::http::cookie;
use crate::telemetry::metrics::Metrics;

/// Refresh when the access (or id) token expires within this many seconds (SPEC §8).
pub const REFRESH_BEFORE_SECS: f64 = 60.0;
const COOKIE_VERSION: u8 = 1;
const SID_LEN: usize = 16;

/// What the session cookie holds (sealed).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionCookie {
    pub sid: [u8; 16],
    pub start: u64,
    pub expires: u64,
    pub sub: String,
    pub refresh_token: String,
}

impl std::fmt::Debug for SessionCookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCookie").field("start", &self.start).field("expires", &self.expires).finish()
    }
}

impl SessionCookie {
    /// A new session for `sub`, starting now.
    pub fn new(sub: &str, refresh_token: &str, lifetime_secs: u64) -> Option<SessionCookie> {
        use aws_lc_rs::rand::SecureRandom;
        let mut sid = [0u8; SID_LEN];
        aws_lc_rs::rand::SystemRandom::new().fill(&mut sid).ok()?;
        let start = now_secs();
        Some(SessionCookie {
            sid,
            start,
            expires: start.saturating_add(lifetime_secs),
            sub: sub.to_owned(),
            refresh_token: refresh_token.to_owned(),
        })
    }

    /// `version ‖ sid ‖ start ‖ expires ‖ len(sub) ‖ sub ‖ refresh token`: binary, so the cookie
    /// stays small (SECURITY LOGIN-05: never split, at most 3,500 bytes).
    pub fn encode(&self) -> Option<Vec<u8>> {
        let sub_len = u8::try_from(self.sub.len()).ok()?;
        let mut out = Vec::with_capacity(1 + SID_LEN + 16 + 1 + self.sub.len() + self.refresh_token.len());
        out.push(COOKIE_VERSION);
        out.extend_from_slice(&self.sid);
        out.extend_from_slice(&self.start.to_be_bytes());
        out.extend_from_slice(&self.expires.to_be_bytes());
        out.push(sub_len);
        out.extend_from_slice(self.sub.as_bytes());
        out.extend_from_slice(self.refresh_token.as_bytes());
        Some(out)
    }

    pub fn decode(b: &[u8]) -> Option<SessionCookie> {
        let (&version, rest) = b.split_first()?;
        if version != COOKIE_VERSION || rest.len() < SID_LEN + 17 {
            return None;
        }
        let (sid, rest) = rest.split_at(SID_LEN);
        let (start, rest) = rest.split_at(8);
        let (expires, rest) = rest.split_at(8);
        let (&sub_len, rest) = rest.split_first()?;
        let sub = std::str::from_utf8(rest.get(..sub_len as usize)?).ok()?;
        let refresh = std::str::from_utf8(&rest[sub_len as usize..]).ok()?;
        if sub.is_empty() || refresh.is_empty() {
            return None;
        }
        Some(SessionCookie {
            sid: sid.try_into().ok()?,
            start: u64::from_be_bytes(start.try_into().ok()?),
            expires: u64::from_be_bytes(expires.try_into().ok()?),
            sub: sub.to_owned(),
            refresh_token: refresh.to_owned(),
        })
    }
}

/// A session's current tokens in this process.
pub struct Tokens {
    id: String,
    access: String,
    /// The newest refresh token (rotated by the provider, or the one from the cookie).
    refresh: String,
    verified: Arc<Verified>,
    snapshot: u64,
}

impl Tokens {
    fn fresh(&self, now: f64, snapshot: u64, verifier: &Verifier) -> bool {
        self.snapshot == snapshot
            && self.verified.exp - now > REFRESH_BEFORE_SECS
            && verifier.is_current(&self.verified)
    }
}

#[derive(Default)]
struct State {
    tokens: Option<Arc<Tokens>>,
    /// Signed out, or the provider refused the refresh token: never refreshed again here.
    ended: bool,
}

#[derive(Default)]
struct Entry {
    state: Mutex<State>,
    /// Held while refreshing: the single flight.
    refreshing: tokio::sync::Mutex<()>,
}

impl Entry {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The tokens of every session this process has served, bounded.
pub struct SessionStore {
    map: Mutex<HashMap<[u8; 16], Arc<Entry>>>,
    capacity: usize,
}

impl SessionStore {
    pub fn new(capacity: usize) -> SessionStore {
        SessionStore { map: Mutex::new(HashMap::new()), capacity: capacity.max(1) }
    }

    fn entry(&self, sid: &[u8; 16]) -> Arc<Entry> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = map.get(sid) {
            return e.clone();
        }
        if map.len() >= self.capacity {
            // Drop sessions with no usable tokens first, then an arbitrary eighth. An evicted
            // session is not signed out: its next request refreshes once.
            let now = super::now_secs() as f64;
            map.retain(|_, e| e.state().tokens.as_ref().is_some_and(|t| t.verified.exp > now));
            if map.len() >= self.capacity {
                let n = (self.capacity / 8).max(1);
                let victims: Vec<[u8; 16]> = map.keys().take(n).copied().collect();
                for k in victims {
                    map.remove(&k);
                }
            }
        }
        let e = Arc::new(Entry::default());
        map.insert(*sid, e.clone());
        e
    }

    /// Sessions held in memory.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a request's session cookie amounts to.
#[derive(Debug)]
pub enum SessionAuth {
    /// No session cookie.
    None,
    /// A cookie that does not open, or a session past its absolute expiry: no credential, and
    /// the cookie is cleared (SPEC §8).
    Invalid,
    /// A live session, with the `Set-Cookie` to send when the cookie must be rewritten (rotated
    /// refresh token, or sealed under a secret that is no longer the first).
    Valid { verified: Arc<Verified>, set_cookie: Option<HeaderValue> },
    /// The provider refused the refresh token, or the session was signed out.
    Ended,
    /// The provider could not be reached; the session is kept (SECURITY LOGIN-10).
    Unavailable,
    /// The tokens could not be verified for lack of keys.
    KeysUnavailable,
}

/// Why a token set did not make a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetError {
    Token(TokenError),
    /// The id token's `nonce` is not the pending sign-in's.
    Nonce,
}

impl LoginRuntime {
    /// Open this request's session cookie, if any.
    pub fn open_session(&self, headers: &HeaderMap) -> Option<(Arc<SessionCookie>, bool)> {
        let name = self.session_cookie();
        cookie::values(headers, name).find_map(|v| {
            if let Some(hit) = self.opened.get(v) {
                return Some(hit);
            }
            let (plain, key) = self.session_sealer.open(name.as_bytes(), v)?;
            let cookie = Arc::new(SessionCookie::decode(&plain)?);
            self.opened.insert(v, cookie.clone(), key != 0);
            Some((cookie, key != 0))
        })
    }

    pub(super) fn has_session_cookie(&self, headers: &HeaderMap) -> bool {
        cookie::values(headers, self.session_cookie()).next().is_some()
    }

    /// The sealed cookie as a `Set-Cookie` value, `Max-Age` = what is left of the session.
    pub fn seal_session(&self, c: &SessionCookie) -> Option<HeaderValue> {
        let sealed = self.session_sealer.seal(self.session_cookie().as_bytes(), &c.encode()?)?;
        set_cookie(self.session_cookie(), &sealed, c.expires.saturating_sub(now_secs()))
    }

    /// Seal a login (pending sign-ins) cookie value.
    pub fn seal_login(&self, plain: &[u8]) -> Option<String> {
        self.login_sealer.seal(self.config.login_cookie().as_bytes(), plain)
    }

    pub fn open_login(&self, headers: &HeaderMap) -> Option<Vec<u8>> {
        let name = self.config.login_cookie();
        cookie::values(headers, &name).find_map(|v| self.login_sealer.open(name.as_bytes(), v).map(|(p, _)| p))
    }

    /// Authenticate with the request's session cookie (called only when no configured credential
    /// source yielded a token: other credentials win).
    pub async fn session(&self, verifier: &Verifier, metrics: &Metrics, headers: &HeaderMap) -> SessionAuth {
        let Some((cookie, old_key)) = self.open_session(headers) else {
            return if self.has_session_cookie(headers) { SessionAuth::Invalid } else { SessionAuth::None };
        };
        let now = now_secs();
        if cookie.expires <= now || cookie.start > now + 300 {
            return SessionAuth::Invalid;
        }
        let entry = self.store.entry(&cookie.sid);
        let tokens = match self.current(&entry, &cookie, verifier, metrics).await {
            Ok(t) => t,
            Err(outcome) => return outcome,
        };
        // Write the cookie back when the provider rotated the refresh token or an older secret
        // opened it, so every replica can continue the session (SECURITY LOGIN-07).
        let rotated = !constant_time_eq(tokens.refresh.as_bytes(), cookie.refresh_token.as_bytes());
        let set_cookie = if rotated || old_key {
            let mut rewritten = SessionCookie::clone(&cookie);
            rewritten.refresh_token = tokens.refresh.clone();
            self.seal_session(&rewritten)
        } else {
            None
        };
        SessionAuth::Valid { verified: tokens.verified.clone(), set_cookie }
    }

    async fn current(
        &self,
        entry: &Entry,
        cookie: &SessionCookie,
        verifier: &Verifier,
        metrics: &Metrics,
    ) -> Result<Arc<Tokens>, SessionAuth> {
        let now = now_secs() as f64;
        {
            let state = entry.state();
            if state.ended {
                return Err(SessionAuth::Ended);
            }
            if let Some(t) = &state.tokens
                && t.fresh(now, self.snapshot, verifier)
            {
                return Ok(t.clone());
            }
        }
        // One refresh per session at a time; everyone else waits here and then finds the new
        // tokens (SECURITY LOGIN-07).
        let _flight = entry.refreshing.lock().await;
        let previous = {
            let state = entry.state();
            if state.ended {
                return Err(SessionAuth::Ended);
            }
            match &state.tokens {
                Some(t) if t.fresh(now, self.snapshot, verifier) => return Ok(t.clone()),
                t => t.clone(),
            }
        };
        // Tokens verified under another config snapshot but not near expiry: verify them again
        // under this one rather than asking the provider.
        if let Some(t) = &previous
            && t.snapshot != self.snapshot
            && let Ok(verified) = self.verify_set(verifier, &t.id, &t.access, &cookie.sub).await
            && verified.exp - now > REFRESH_BEFORE_SECS
        {
            let t = Arc::new(Tokens { verified, snapshot: self.snapshot, ..Tokens::clone_strings(t) });
            entry.state().tokens = Some(t.clone());
            return Ok(t);
        }
        let refresh_token = previous.as_ref().map_or(cookie.refresh_token.as_str(), |t| t.refresh.as_str()).to_owned();
        let set = match self.oauth.refresh(&refresh_token).await {
            Ok(set) => set,
            Err(OAuthError::InvalidGrant) => {
                metrics.session_refresh_total.with_label_values(&["rejected"]).inc();
                tracing::info!("session refresh refused by the identity provider; the session ends");
                entry.state().end();
                return Err(SessionAuth::Ended);
            }
            Err(e) => {
                metrics.session_refresh_total.with_label_values(&["error"]).inc();
                tracing::warn!(error = %e, "session refresh failed; the session is kept");
                return Err(SessionAuth::Unavailable);
            }
        };
        let Some(id) = set.id_token.clone() else {
            metrics.session_refresh_total.with_label_values(&["rejected"]).inc();
            tracing::warn!("the refresh response has no id token; the session ends");
            entry.state().end();
            return Err(SessionAuth::Ended);
        };
        let verified = match self.verify_set(verifier, &id, &set.access_token, &cookie.sub).await {
            Ok(v) => v,
            Err(TokenError::KeysUnavailable | TokenError::Clock) => {
                metrics.session_refresh_total.with_label_values(&["error"]).inc();
                return Err(SessionAuth::KeysUnavailable);
            }
            Err(e) => {
                metrics.session_refresh_total.with_label_values(&["rejected"]).inc();
                tracing::warn!(error = %e, "refreshed tokens do not verify; the session ends");
                entry.state().end();
                return Err(SessionAuth::Ended);
            }
        };
        metrics.session_refresh_total.with_label_values(&["ok"]).inc();
        let t = Arc::new(Tokens {
            id,
            access: set.access_token,
            refresh: set.refresh_token.unwrap_or(refresh_token),
            verified,
            snapshot: self.snapshot,
        });
        entry.state().tokens = Some(t.clone());
        Ok(t)
    }

    /// Remember freshly issued tokens for a new session (after the callback).
    pub fn remember(&self, cookie: &SessionCookie, id: String, access: String, verified: Arc<Verified>) {
        let t = Tokens { id, access, refresh: cookie.refresh_token.clone(), verified, snapshot: self.snapshot };
        self.store.entry(&cookie.sid).state().tokens = Some(Arc::new(t));
    }

    /// Forget a session's tokens in this process and refuse its cookie here from now on
    /// (sign-out). Returns the newest refresh token this process knew, if it differs.
    pub fn forget(&self, cookie: &SessionCookie) -> Option<String> {
        let entry = self.store.entry(&cookie.sid);
        let mut state = entry.state();
        let newer = state.tokens.as_ref().map(|t| t.refresh.clone()).filter(|r| *r != cookie.refresh_token);
        state.end();
        newer
    }

    /// Verify an id+access token set as a session of `login.issuer` and `login.client_id`:
    /// each half fully by the existing verifier, bound as an SPEC §2 pair (same `sub`, same
    /// client, `origin_jti`), `aud` containing the client id, `at_hash` when present, and the
    /// session's `sub` (SECURITY LOGIN-03).
    pub async fn verify_set(
        &self,
        verifier: &Verifier,
        id: &str,
        access: &str,
        sub: &str,
    ) -> Result<Arc<Verified>, TokenError> {
        self.verify_tokens(verifier, id, access, Some(sub), None).await.map_err(|e| match e {
            SetError::Token(t) => t,
            SetError::Nonce => TokenError::BadClaim("nonce"),
        })
    }

    /// As [`verify_set`](Self::verify_set), checking the id token's `nonce` when given and the
    /// `sub` when given.
    pub async fn verify_tokens(
        &self,
        verifier: &Verifier,
        id: &str,
        access: &str,
        sub: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<Arc<Verified>, SetError> {
        let id_v = verifier.verify(id, UseRule::Exactly(TokenUse::Id)).await.map_err(SetError::Token)?;
        let access_v = verifier.verify(access, UseRule::Exactly(TokenUse::Access)).await.map_err(SetError::Token)?;
        let bad = |why| SetError::Token(TokenError::BadClaim(why));
        if id_v.issuer != self.config.issuer_index || access_v.issuer != self.config.issuer_index {
            return Err(SetError::Token(TokenError::BadIss));
        }
        // The id token must name this client in `aud` (not merely some configured client), and
        // the access token must have been issued to it.
        let aud_ok = match id_v.claims.get("aud") {
            Some(Value::String(a)) => *a == self.config.client_id,
            Some(Value::Array(items)) => items.iter().any(|a| a.as_str() == Some(self.config.client_id.as_str())),
            _ => false,
        };
        if !aud_ok || access_v.client_id != self.config.client_id {
            return Err(SetError::Token(TokenError::BadClient));
        }
        if let Some(want) = nonce {
            match id_v.claims.get("nonce") {
                Some(Value::String(n)) if constant_time_eq(n.as_bytes(), want.as_bytes()) => {}
                _ => return Err(SetError::Nonce),
            }
        }
        // `at_hash` is checked whenever present, whatever the issuer's `verify_at_hash`.
        if let Some(h) = id_v.claims.get("at_hash") {
            let expected = crate::auth::verify::at_hash(access.as_bytes());
            if !h.as_str().is_some_and(|h| constant_time_eq(h.as_bytes(), expected.as_bytes())) {
                return Err(bad("at_hash does not match the access token"));
            }
        }
        let pair = verifier.verify_pair(id, access).await.map_err(|e| match e {
            PairError::NotAPair => bad("not an id+access pair"),
            PairError::Token(t) => SetError::Token(t),
        })?;
        if let Some(sub) = sub
            && pair.sub != sub
        {
            return Err(bad("the tokens name another user than the session"));
        }
        Ok(pair)
    }
}

impl State {
    fn end(&mut self) {
        self.tokens = None;
        self.ended = true;
    }
}

impl Tokens {
    fn clone_strings(t: &Tokens) -> Tokens {
        Tokens {
            id: t.id.clone(),
            access: t.access.clone(),
            refresh: t.refresh.clone(),
            verified: t.verified.clone(),
            snapshot: t.snapshot,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::login::seal::{Purpose, Sealer};
    use crate::config::Secret;

    /// A Cognito refresh token is a JWE compact string of about 1,700–1,900 characters.
    fn cognito_sized_refresh_token() -> String {
        let b64 = |n: usize| "A".repeat(n);
        format!(
            "eyJjdHkiOiJKV1QiLCJlbmMiOiJBMjU2R0NNIiwiYWxnIjoiUlNBLU9BRVAifQ.{}.{}.{}.{}",
            b64(342),
            b64(22),
            b64(1380),
            b64(22)
        )
    }

    #[test]
    fn session_cookie_round_trips_and_refuses_garbage() {
        let c = SessionCookie::new("3f1c2d4e-1111-2222-3333-444455556666", "rt", 3600).unwrap();
        assert_eq!(SessionCookie::decode(&c.encode().unwrap()), Some(c.clone()));
        assert_eq!(SessionCookie::decode(&[]), None);
        assert_eq!(SessionCookie::decode(&c.encode().unwrap()[..20]), None);
        let mut bad = c.encode().unwrap();
        bad[0] = 9;
        assert_eq!(SessionCookie::decode(&bad), None);
        assert!(!format!("{c:?}").contains("rt\""), "Debug never prints the refresh token");
    }

    #[test]
    fn session_cookie_with_a_cognito_sized_refresh_token_fits_3500_bytes() {
        // SECURITY LOGIN-05: one cookie, never split, at most 3,500 bytes.
        let rt = cognito_sized_refresh_token();
        assert!((1700..=1900).contains(&rt.len()), "{}", rt.len());
        let c = SessionCookie::new("3f1c2d4e-1111-2222-3333-444455556666", &rt, 12 * 3600).unwrap();
        let sealer = Sealer::new(&[Secret(vec![7; 32])], Purpose::Session).unwrap();
        let sealed = sealer.seal(b"__Host-portcullis", &c.encode().unwrap()).unwrap();
        let header = format!("__Host-portcullis={sealed}; Path=/; Max-Age=43200; Secure; HttpOnly; SameSite=Lax");
        println!("session cookie with a {}-byte refresh token: Set-Cookie value {} bytes", rt.len(), header.len());
        assert!(header.len() <= 3500, "{}", header.len());
    }
}
