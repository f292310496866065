//! The individual checks of one token, in the order `Verifier` runs them: shape and alphabet
//! ([`split`], strict base64url JSON without duplicate members), the header policy
//! ([`check_header`]), and after the signature the Cognito claim rules (`check_claims`). Each is
//! small and separately tested; none of them fetches keys or touches the cache.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::strict_json::StrictValue;
use super::{IssuerRuntime, TokenError, UseRule, Verified, Verifier};
use crate::auth::identity;
use crate::auth::jwks::Key;
use crate::config::TokenUse;

/// The longest `kid` compared against the key set; longer ones are malformed (SECURITY ALG-07).
const MAX_KID_LEN: usize = 256;

/// Header parameters that carry or point at key material, or demand semantics Portcullis does not
/// implement. Any of them makes the token invalid (SECURITY ALG-05/06, FMT-07/08/09).
const FORBIDDEN_HEADER_PARAMS: &[&str] =
    &["jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256", "crit", "enc", "zip", "cty", "b64"];

impl Verifier {
    pub(super) fn check_claims(
        &self,
        index: usize,
        issuer: &IssuerRuntime,
        claims: Map<String, Value>,
        key: Arc<Key>,
        rule: UseRule,
    ) -> Result<Verified, TokenError> {
        let now = now()?;
        let exp = time_claim(&claims, "exp")?.ok_or(TokenError::BadClaim("exp is required"))?;
        if now > exp + self.leeway {
            return Err(TokenError::Expired);
        }
        if exp - now > self.max_lifetime + self.leeway {
            // Cognito tokens live at most a day; a longer one suggests a forged or misissued
            // token (SECURITY CLM-12).
            return Err(TokenError::BadClaim("lifetime too long"));
        }
        if let Some(nbf) = time_claim(&claims, "nbf")?
            && nbf > now + self.leeway
        {
            return Err(TokenError::NotYetValid);
        }
        if let Some(iat) = time_claim(&claims, "iat")?
            && iat > now + self.leeway
        {
            return Err(TokenError::NotYetValid);
        }

        let token_use = match claims.get("token_use") {
            Some(Value::String(s)) if s == "access" => TokenUse::Access,
            Some(Value::String(s)) if s == "id" => TokenUse::Id,
            _ => return Err(TokenError::BadTokenUse),
        };
        // The use is checked before the client: an id token on an access route is a wrong
        // token type, whatever its `aud` says (SECURITY CLM-09). `verify` re-checks on cache hits.
        let wanted = match rule {
            UseRule::Issuer => issuer.config.token_use,
            UseRule::Exactly(u) => u,
        };
        if !wanted.admits(token_use) {
            return Err(TokenError::BadTokenUse);
        }

        let client_ids = &issuer.config.client_ids;
        let client_id = if token_use == TokenUse::Access {
            // A Cognito access token has no `aud`; `client_id` names the app client.
            match claims.get("client_id") {
                Some(Value::String(c)) => {
                    client_ids.iter().find(|id| *id == c).cloned().ok_or(TokenError::BadClient)?
                }
                Some(_) => return Err(TokenError::BadClaim("client_id is not a string")),
                // Only generic OIDC issuers may fall back to `aud`; for the Cognito shorthand an
                // access token without `client_id` is not a Cognito access token.
                None if !issuer.config.cognito => audience_match(&claims, client_ids)?,
                None => return Err(TokenError::BadClient),
            }
        } else {
            audience_match(&claims, client_ids)?
        };

        let sub = match claims.get("sub") {
            Some(Value::String(s)) if valid_sub(s) => s.clone(),
            _ => return Err(TokenError::BadClaim("sub must be a non-empty string without spaces")),
        };
        let groups = match claims.get("cognito:groups") {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                let mut groups = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::String(g) if !g.is_empty() => groups.push(g.clone()),
                        // Never stringify non-strings into a header (SECURITY CLV-02).
                        _ => return Err(TokenError::BadClaim("cognito:groups must hold non-empty strings")),
                    }
                }
                groups
            }
            Some(_) => return Err(TokenError::BadClaim("cognito:groups must be an array")),
        };
        let scope = match claims.get("scope") {
            None => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(TokenError::BadClaim("scope must be a string")),
        };
        let identity = identity::prepare_identity(&sub, &groups, &claims, &self.identity, self.max_identity_bytes);
        Ok(Verified {
            issuer: index,
            token_use,
            paired: false,
            sub,
            client_id,
            groups,
            scope,
            claims,
            exp,
            identity,
            key,
        })
    }
}

/// Token times (`exp`, `nbf`, `iat`) are Unix timestamps: verification reads the wall clock.
#[allow(clippy::disallowed_methods)]
pub(super) fn now() -> Result<f64, TokenError> {
    unix_seconds(SystemTime::now())
}

/// Seconds since the Unix epoch of a wall-clock reading.
pub(super) fn unix_seconds(t: SystemTime) -> Result<f64, TokenError> {
    // Never panic on a broken clock (SECURITY OPS-09): report it and fail closed.
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).map_err(|_| {
        tracing::error!("system clock is before the Unix epoch; refusing to verify tokens");
        TokenError::Clock
    })
}

/// A time claim: absent, or a JSON number (never a string, SPEC §2).
pub(super) fn time_claim(claims: &Map<String, Value>, name: &'static str) -> Result<Option<f64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            n.as_f64().filter(|f| f.is_finite()).map(Some).ok_or(TokenError::BadClaim("time claim out of range"))
        }
        Some(_) => Err(TokenError::BadClaim("time claims must be numbers")),
    }
}

pub(super) fn audience_match(claims: &Map<String, Value>, client_ids: &[String]) -> Result<String, TokenError> {
    let matches = |a: &str| client_ids.iter().find(|id| *id == a).cloned();
    match claims.get("aud") {
        Some(Value::String(a)) => matches(a).ok_or(TokenError::BadClient),
        Some(Value::Array(items)) => {
            for item in items {
                match item {
                    Value::String(a) => {
                        if let Some(id) = matches(a) {
                            return Ok(id);
                        }
                    }
                    _ => return Err(TokenError::BadClaim("aud must hold strings")),
                }
            }
            Err(TokenError::BadClient)
        }
        Some(_) => Err(TokenError::BadClaim("aud must be a string or an array")),
        None => Err(TokenError::BadClient),
    }
}

pub(super) fn valid_sub(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

pub(super) struct Parts<'a> {
    pub(super) header: &'a str,
    pub(super) payload: &'a str,
    pub(super) signature: &'a str,
}

/// Exactly three non-empty base64url segments; anything else is rejected before decoding
/// (SECURITY FMT-01: no eager splitting of a dot bomb, no padding or other alphabets).
pub(super) fn split(token: &str) -> Result<Parts<'_>, TokenError> {
    let bytes = token.as_bytes();
    let mut dots = [0usize; 2];
    let mut n = 0;
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'.' => {
                if n == 2 {
                    return Err(TokenError::Malformed("more than three segments"));
                }
                dots[n] = i;
                n += 1;
            }
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => {}
            _ => return Err(TokenError::Malformed("invalid character")),
        }
    }
    if n != 2 {
        return Err(TokenError::Malformed("not three segments"));
    }
    let (header, payload, signature) = (&token[..dots[0]], &token[dots[0] + 1..dots[1]], &token[dots[1] + 1..]);
    if header.is_empty() || payload.is_empty() {
        return Err(TokenError::Malformed("empty segment"));
    }
    if signature.is_empty() {
        // An unsigned token: treat as an algorithm problem (alg=none and friends).
        return Err(TokenError::BadAlg);
    }
    Ok(Parts { header, payload, signature })
}

/// Strict base64url (no padding, canonical trailing bits) into a JSON object with no duplicate
/// member names at any depth (SPEC §2; SECURITY FMT-02/03). serde_json's recursion limit stays
/// on (FMT-04).
pub(super) fn decode_object(segment: &str, what: &'static str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).map_err(|_| TokenError::Malformed(what))?;
    match serde_json::from_slice::<StrictValue>(&bytes) {
        Ok(StrictValue(Value::Object(map))) => Ok(map),
        _ => Err(TokenError::Malformed(what)),
    }
}

/// Header policy: `alg` exactly RS256, a string `kid`, and none of the parameters that carry key
/// material or critical extensions. Returns the kid.
pub(super) fn check_header(header: &Map<String, Value>) -> Result<&str, TokenError> {
    match header.get("alg") {
        Some(Value::String(a)) if a == "RS256" => {}
        _ => return Err(TokenError::BadAlg),
    }
    if FORBIDDEN_HEADER_PARAMS.iter().any(|p| header.contains_key(*p)) {
        return Err(TokenError::Malformed("forbidden header parameter"));
    }
    if header.get("typ").is_some_and(|t| !t.is_string()) {
        return Err(TokenError::Malformed("typ is not a string"));
    }
    match header.get("kid") {
        // No kid: Cognito always sets one, and "try every key" is not offered (SECURITY ALG-08).
        None => Err(TokenError::UnknownKid),
        Some(Value::String(k)) if !k.is_empty() && k.len() <= MAX_KID_LEN => Ok(k),
        Some(Value::String(k)) if k.is_empty() => Err(TokenError::UnknownKid),
        Some(_) => Err(TokenError::Malformed("kid")),
    }
}
