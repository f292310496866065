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

use serde_json::{Map, Value};

use crate::auth::identity::{self, PreparedIdentity};
use crate::auth::jwks::{IssuerKeys, Key, Lookup};
use crate::config::{self, TokenUse};
use crate::http::error::{InvalidToken, Reason, Rejection};
use crate::telemetry::metrics::Metrics;

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
        Rejection::from(self).reason()
    }
}

/// The one mapping from a verification failure to a refusal: a token fault is a 401; a missing
/// key set or a broken clock is Portcullis's problem (503), never the client's.
impl From<TokenError> for Rejection {
    fn from(e: TokenError) -> Rejection {
        let invalid = match e {
            TokenError::Malformed(_) => InvalidToken::Malformed,
            TokenError::BadAlg => InvalidToken::BadAlg,
            TokenError::UnknownKid => InvalidToken::UnknownKid,
            TokenError::BadSignature => InvalidToken::BadSignature,
            TokenError::Expired => InvalidToken::Expired,
            TokenError::NotYetValid => InvalidToken::NotYetValid,
            TokenError::BadIss => InvalidToken::BadIss,
            TokenError::BadTokenUse => InvalidToken::BadTokenUse,
            TokenError::BadClient => InvalidToken::BadClient,
            TokenError::BadClaim(_) => InvalidToken::BadClaim,
            TokenError::KeysUnavailable | TokenError::Clock => return Rejection::KeysUnavailable,
        };
        Rejection::InvalidToken(invalid)
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
    pub identity: Result<PreparedIdentity, identity::Unencodable>,
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

#[cfg(test)]
impl Verified {
    /// An access token of issuer 0 for client `test-client` that "verified" without any
    /// signature, so what comes after verification (`policy`, header rewriting) is unit-tested
    /// without keys or minting. Fields are public: adjust `groups`, `scope`, `claims`,
    /// `token_use`, `paired` or `identity` as the test needs; `identity` is encoded for `sub`
    /// alone with the default header names.
    pub(crate) fn for_tests(sub: &str) -> Verified {
        let headers = config::IdentityHeaders {
            sub: http::HeaderName::from_static("x-user-sub"),
            groups: http::HeaderName::from_static("x-user-groups"),
            groups_format: config::GroupsFormat::Csv,
            claims: Vec::new(),
            forward_token: false,
        };
        Verified {
            issuer: 0,
            token_use: TokenUse::Access,
            paired: false,
            sub: sub.to_owned(),
            client_id: "test-client".to_owned(),
            groups: Vec::new(),
            scope: String::new(),
            claims: Map::new(),
            exp: f64::MAX,
            identity: identity::prepare_identity(sub, &[], &Map::new(), &headers, 8192),
            key: Arc::new(Key::for_tests("test")),
        }
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
}

mod cache;
mod checks;
mod pair;
mod strict_json;

use cache::TokenCache;
use checks::{check_header, decode_object, now, split};
pub use pair::{PairError, at_hash};

#[cfg(test)]
mod tests;
