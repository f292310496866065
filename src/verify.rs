//! Token verification (SPEC §2 "Token verification"): from a compact JWS string to a
//! [`Verified`] identity, or a [`TokenError`] naming the first rule it broke. Owns the order of
//! checks, the Cognito claim rules and the bounded verified-token cache. Does not own key
//! fetching (`jwks`), where tokens come from (`credentials`) or route requirements (`policy`).
//!
//! Order matters: cheap syntactic checks first (size, shape, alphabet), then the header policy,
//! then the issuer (exact `iss`, selecting that issuer's own key cache), then the signature over
//! the exact received bytes, and only then the claims — so unsigned input never reaches claim
//! logic, and keys are never chosen by anything but configuration.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dashmap::DashMap;
use serde_json::{Map, Value};

use crate::config::{self, TokenUse};
use crate::error::Reason;
use crate::headers::{self, PreparedIdentity};
use crate::jwks::{IssuerKeys, Key, Lookup};
use crate::metrics::Metrics;

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("algorithm not accepted")]
    BadAlg,
    #[error("unknown signing key")]
    UnknownKid,
    #[error("signature does not verify")]
    BadSignature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("issuer not accepted")]
    BadIss,
    #[error("wrong token_use")]
    BadTokenUse,
    #[error("token issued to another client")]
    BadClient,
    #[error("invalid claim: {0}")]
    BadClaim(&'static str),
    #[error("no usable keys for the issuer")]
    KeysUnavailable,
    #[error("the system clock is before 1970")]
    Clock,
}

impl TokenError {
    pub fn reason(self) -> Reason {
        match self {
            TokenError::Malformed(_) => Reason::MalformedToken,
            TokenError::BadAlg => Reason::BadAlg,
            TokenError::UnknownKid => Reason::UnknownKid,
            TokenError::BadSignature => Reason::BadSignature,
            TokenError::Expired => Reason::Expired,
            TokenError::NotYetValid => Reason::NotYetValid,
            TokenError::BadIss => Reason::BadIss,
            TokenError::BadTokenUse => Reason::BadTokenUse,
            TokenError::BadClient => Reason::BadClient,
            TokenError::BadClaim(_) => Reason::BadClaim,
            TokenError::KeysUnavailable | TokenError::Clock => Reason::KeysUnavailable,
        }
    }
}

/// A token that passed every check. Immutable and shared through the cache.
#[derive(Debug)]
pub struct Verified {
    /// Index of the issuer in the config snapshot that verified it.
    pub issuer: usize,
    pub token_use: TokenUse,
    /// An id+access pair (SPEC §2): it satisfies a route's `token_use` whichever it names.
    pub paired: bool,
    pub sub: String,
    /// The configured client id this token was issued to (`client_id`, or the matching `aud`).
    pub client_id: String,
    pub groups: Vec<String>,
    /// The raw `scope` claim (space-separated); empty when absent.
    pub scope: String,
    pub claims: Map<String, Value>,
    pub exp: f64,
    /// Identity headers encoded once per token, or why they cannot be.
    pub identity: Result<PreparedIdentity, headers::Unencodable>,
    key: Arc<Key>,
}

impl Verified {
    /// Whether this identity satisfies a route's `token_use` requirement.
    pub fn satisfies_use(&self, want: TokenUse) -> bool {
        self.paired || want.admits(self.token_use)
    }

    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split(' ').filter(|s| !s.is_empty())
    }
}

/// One configured issuer with its key cache.
pub struct IssuerRuntime {
    pub config: config::Issuer,
    pub keys: Arc<IssuerKeys>,
}

/// Which token use a verification demands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UseRule {
    /// The issuer's configured `token_use`.
    Issuer,
    /// Exactly this use (each half of an id+access pair is checked by its own rule).
    Exactly(TokenUse),
}

pub struct Verifier {
    issuers: Vec<IssuerRuntime>,
    leeway: f64,
    max_lifetime: f64,
    max_token_bytes: usize,
    identity: config::IdentityHeaders,
    max_identity_bytes: usize,
    cache: TokenCache,
    metrics: Arc<Metrics>,
}

/// The longest `kid` compared against the key set; longer ones are malformed (SECURITY ALG-07).
const MAX_KID_LEN: usize = 256;

/// Header parameters that carry or point at key material, or demand semantics Portcullis does not
/// implement. Any of them makes the token invalid (SECURITY ALG-05/06, FMT-07/08/09).
const FORBIDDEN_HEADER_PARAMS: &[&str] =
    &["jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256", "crit", "enc", "zip", "cty", "b64"];

impl Verifier {
    pub fn new(issuers: Vec<IssuerRuntime>, config: &config::Config, metrics: Arc<Metrics>) -> Self {
        Verifier {
            issuers,
            leeway: config.leeway.as_secs_f64(),
            max_lifetime: config.max_token_lifetime.as_secs_f64(),
            max_token_bytes: config.limits.max_token_bytes,
            identity: config.identity.clone(),
            max_identity_bytes: config.limits.max_identity_header_bytes,
            cache: TokenCache::new(config.limits.token_cache_entries, metrics.clone()),
            metrics,
        }
    }

    pub fn issuers(&self) -> &[IssuerRuntime] {
        &self.issuers
    }

    /// Verify `token` completely. Cached results are re-checked for expiry and key withdrawal.
    pub async fn verify(&self, token: &str, rule: UseRule) -> Result<Arc<Verified>, TokenError> {
        let verified = self.verify_cached(token, rule).await?;
        let wanted = match rule {
            UseRule::Issuer => self.issuers[verified.issuer].config.token_use,
            UseRule::Exactly(u) => u,
        };
        if !wanted.admits(verified.token_use) {
            return Err(TokenError::BadTokenUse);
        }
        Ok(verified)
    }

    /// Whether an earlier verification still stands: not expired, and its key still in the
    /// issuer's key set (what a cache hit re-checks). Used for tokens kept by sign-in sessions.
    pub fn is_current(&self, v: &Verified) -> bool {
        now().is_ok_and(|now| now < v.exp) && self.issuers.get(v.issuer).is_some_and(|i| i.keys.still_has(&v.key))
    }

    async fn verify_cached(&self, token: &str, rule: UseRule) -> Result<Arc<Verified>, TokenError> {
        // Size first: nothing below runs on oversized input (SECURITY DOS-04).
        if token.len() > self.max_token_bytes {
            return Err(TokenError::Malformed("token too long"));
        }
        let digest = TokenCache::digest(token);
        if let Some(hit) = self.cache.get(&digest) {
            let now = now()?;
            if now < hit.exp && self.issuers[hit.issuer].keys.still_has(&hit.key) {
                self.metrics.token_cache_hits_total.inc();
                return Ok(hit);
            }
            self.cache.remove(&digest);
        }
        self.metrics.token_cache_misses_total.inc();
        let verified = Arc::new(self.verify_uncached(token, rule).await?);
        self.cache.insert(digest, verified.clone());
        Ok(verified)
    }

    async fn verify_uncached(&self, token: &str, rule: UseRule) -> Result<Verified, TokenError> {
        let parts = split(token)?;
        let header = decode_object(parts.header, "header")?;
        let kid = check_header(&header)?;
        let payload = decode_object(parts.payload, "payload")?;

        // The issuer — and so the only key cache consulted — is chosen by exact string equality
        // against configuration; nothing in the token names a key location (SECURITY CLM-08).
        let iss = payload.get("iss").and_then(Value::as_str).ok_or(TokenError::BadIss)?;
        let (index, issuer) =
            self.issuers.iter().enumerate().find(|(_, i)| i.config.issuer == iss).ok_or(TokenError::BadIss)?;

        let key = match issuer.keys.lookup(kid).await {
            Lookup::Found(k) => k,
            Lookup::Unknown => return Err(TokenError::UnknownKid),
            Lookup::Unavailable => return Err(TokenError::KeysUnavailable),
        };
        // RS256 only, chosen here and never from the token's `alg`; the signature covers the exact
        // received `header.payload` bytes (SECURITY ALG-02, FMT-02).
        let signed = &token[..parts.header.len() + 1 + parts.payload.len()];
        match jsonwebtoken::crypto::verify(
            parts.signature,
            signed.as_bytes(),
            &key.decoding,
            jsonwebtoken::Algorithm::RS256,
        ) {
            Ok(true) => {}
            Ok(false) | Err(_) => return Err(TokenError::BadSignature),
        }
        self.check_claims(index, issuer, payload, key, rule)
    }

    fn check_claims(
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
        let identity = headers::prepare_identity(&sub, &groups, &claims, &self.identity, self.max_identity_bytes);
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

fn now() -> Result<f64, TokenError> {
    unix_seconds(SystemTime::now())
}

/// Seconds since the Unix epoch of a wall-clock reading.
fn unix_seconds(t: SystemTime) -> Result<f64, TokenError> {
    // Never panic on a broken clock (SECURITY OPS-09): report it and fail closed.
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).map_err(|_| {
        tracing::error!("system clock is before the Unix epoch; refusing to verify tokens");
        TokenError::Clock
    })
}

/// A time claim: absent, or a JSON number (never a string, SPEC §2).
fn time_claim(claims: &Map<String, Value>, name: &'static str) -> Result<Option<f64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            n.as_f64().filter(|f| f.is_finite()).map(Some).ok_or(TokenError::BadClaim("time claim out of range"))
        }
        Some(_) => Err(TokenError::BadClaim("time claims must be numbers")),
    }
}

fn audience_match(claims: &Map<String, Value>, client_ids: &[String]) -> Result<String, TokenError> {
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

fn valid_sub(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

struct Parts<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
}

/// Exactly three non-empty base64url segments; anything else is rejected before decoding
/// (SECURITY FMT-01: no eager splitting of a dot bomb, no padding or other alphabets).
fn split(token: &str) -> Result<Parts<'_>, TokenError> {
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
fn decode_object(segment: &str, what: &'static str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).map_err(|_| TokenError::Malformed(what))?;
    match serde_json::from_slice::<strict::StrictValue>(&bytes) {
        Ok(strict::StrictValue(Value::Object(map))) => Ok(map),
        _ => Err(TokenError::Malformed(what)),
    }
}

/// Header policy: `alg` exactly RS256, a string `kid`, and none of the parameters that carry key
/// material or critical extensions. Returns the kid.
fn check_header(header: &Map<String, Value>) -> Result<&str, TokenError> {
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

mod pair;
pub use pair::{PairError, at_hash};

mod strict {
    //! A `serde_json::Value` that refuses duplicate object member names at any depth.
    use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde_json::{Map, Value};

    pub struct StrictValue(pub Value);

    impl<'de> Deserialize<'de> for StrictValue {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(StrictVisitor).map(StrictValue)
        }
    }

    struct StrictVisitor;

    impl<'de> Visitor<'de> for StrictVisitor {
        type Value = Value;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
            Ok(Value::Bool(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
            Ok(Value::from(v))
        }
        fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
            Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
        }
        fn visit_str<E>(self, v: &str) -> Result<Value, E> {
            Ok(Value::String(v.to_owned()))
        }
        fn visit_string<E>(self, v: String) -> Result<Value, E> {
            Ok(Value::String(v))
        }
        fn visit_unit<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_none<E>(self) -> Result<Value, E> {
            Ok(Value::Null)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
            let mut out = Vec::new();
            while let Some(StrictValue(v)) = seq.next_element()? {
                out.push(v);
            }
            Ok(Value::Array(out))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut out = Map::new();
            while let Some(key) = map.next_key::<String>()? {
                let StrictValue(v) = map.next_value()?;
                if out.insert(key, v).is_some() {
                    return Err(de::Error::custom("duplicate member name"));
                }
            }
            Ok(Value::Object(out))
        }
    }
}

/// Bounded cache of verified tokens, keyed by SHA-256 of the whole token (so memory per entry
/// does not grow with token size). Entries expire at `exp` and are dropped when their key leaves
/// the JWKS; failures are never cached (SECURITY DOS-08).
///
/// Admission: a token is cached on its second successful verification, not its first. A
/// one-shot token (a flood of fresh tokens, or a client that never reuses one) then costs 8 bytes
/// in the `seen` doorkeeper instead of a full entry, so such traffic cannot evict the tokens of
/// real sessions or hold memory; a real session pays one extra verification per token lifetime.
/// The doorkeeper only decides admission: lookups always compare the full digest, so a
/// fingerprint collision can at worst admit a token one verification early.
struct TokenCache {
    map: DashMap<[u8; 32], Arc<Verified>>,
    capacity: usize,
    /// 64-bit fingerprints of tokens verified once; emptied when it reaches `capacity`.
    seen: std::sync::Mutex<std::collections::HashSet<u64>>,
    metrics: Arc<Metrics>,
}

impl TokenCache {
    fn new(capacity: usize, metrics: Arc<Metrics>) -> Self {
        TokenCache { map: DashMap::new(), capacity, seen: Default::default(), metrics }
    }

    fn digest(token: &str) -> [u8; 32] {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        out
    }

    fn get(&self, digest: &[u8; 32]) -> Option<Arc<Verified>> {
        self.map.get(digest).map(|e| e.value().clone())
    }

    fn remove(&self, digest: &[u8; 32]) {
        self.map.remove(digest);
        self.metrics.token_cache_entries.set(self.map.len() as i64);
    }

    fn insert(&self, digest: [u8; 32], v: Arc<Verified>) {
        if self.capacity == 0 || !self.admit(&digest) {
            return;
        }
        if self.map.len() >= self.capacity {
            self.evict();
        }
        self.map.insert(digest, v);
        self.metrics.token_cache_entries.set(self.map.len() as i64);
    }

    /// Whether this successful verification is the token's second (see the type's comment). Only
    /// runs on cache misses, which have just paid for an RSA verification, so one lock is cheap.
    fn admit(&self, digest: &[u8; 32]) -> bool {
        let mut fp = [0u8; 8];
        fp.copy_from_slice(&digest[..8]);
        let fp = u64::from_le_bytes(fp);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.remove(&fp) {
            return true;
        }
        if seen.len() >= self.capacity {
            seen.clear();
        }
        seen.insert(fp);
        false
    }

    /// Drop expired entries; if still full, drop an arbitrary eighth. Amortised: runs only
    /// when the cache is full.
    fn evict(&self) {
        if let Ok(now) = now() {
            self.map.retain(|_, v| v.exp > now);
        }
        if self.map.len() >= self.capacity {
            let n = (self.capacity / 8).max(1);
            let victims: Vec<[u8; 32]> = self.map.iter().take(n).map(|e| *e.key()).collect();
            for k in victims {
                self.map.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests;
