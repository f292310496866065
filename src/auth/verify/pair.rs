//! Id token + access token pairs (SPEC §2 "Credentials"): the classic Cognito web pattern sends
//! the id token in `Authorization` and the access token in a second place (an `accessToken`
//! header, or Amplify's two cookies). Both halves are verified in full, each by the rule for its
//! own `token_use`, and then bound to each other; the result is one [`Verified`] whose parts come
//! from the half SPEC §2 names.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::{TokenError, UseRule, Verified, Verifier};
use crate::auth::identity;
use crate::config::TokenUse;

/// Why two tokens did not make a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PairError {
    /// Not one id token and one access token from one issuer: which one would the app have
    /// meant? Refused as ambiguous (400 `malformed_token`), never guessed.
    #[error("two tokens that are not an id+access pair")]
    NotAPair,
    /// One half failed verification, or the halves do not belong together (401).
    #[error(transparent)]
    Token(#[from] TokenError),
}

impl Verifier {
    /// Verify two distinct tokens as an id+access pair.
    pub async fn verify_pair(&self, a: &str, b: &str) -> Result<Arc<Verified>, PairError> {
        // Each half is verified completely before anything is read from it; `Any` here means
        // "by the rule for its own use" — the client check follows each token's own `token_use`.
        let va = self.verify(a, UseRule::Exactly(TokenUse::Any)).await?;
        let vb = self.verify(b, UseRule::Exactly(TokenUse::Any)).await?;
        let (id, (access, access_token)) = match (va.token_use, vb.token_use) {
            (TokenUse::Id, TokenUse::Access) => (va, (vb, b)),
            (TokenUse::Access, TokenUse::Id) => (vb, (va, a)),
            _ => return Err(PairError::NotAPair),
        };
        if id.issuer != access.issuer {
            return Err(PairError::NotAPair);
        }
        // Same user, same app client: halves of two different sign-ins must not be mixed, or a
        // user could borrow another session's groups or scopes. (SPEC §2 names `sub`; the client
        // check is the stricter reading — Cognito issues both tokens of one sign-in to one client.)
        if id.sub != access.sub {
            return Err(TokenError::BadClaim("id and access tokens name different users").into());
        }
        if id.client_id != access.client_id {
            return Err(TokenError::BadClaim("id and access tokens were issued to different clients").into());
        }
        // Cognito stamps both tokens of one sign-in (and of each refresh) with the same
        // `origin_jti`; when both carry it, it must agree.
        if let (Some(a), Some(b)) = (id.claims.get("origin_jti"), access.claims.get("origin_jti"))
            && a != b
        {
            return Err(TokenError::BadClaim("id and access tokens come from different sign-ins").into());
        }
        if self.issuers[id.issuer].config.verify_at_hash {
            let expected = at_hash(access_token.as_bytes());
            match id.claims.get("at_hash") {
                Some(Value::String(h)) if constant_time_eq(h.as_bytes(), expected.as_bytes()) => {}
                _ => return Err(TokenError::BadClaim("at_hash does not match the access token").into()),
            }
        }
        Ok(Arc::new(self.merge(&id, &access)))
    }

    /// One identity from the two halves (SPEC §2): route claim checks consult the half the
    /// issuer's `token_use` names (the id token for `id` and `any`); scopes come from the access
    /// token; groups from the access token, else the id token; claim headers from the id token,
    /// then the access token.
    fn merge(&self, id: &Verified, access: &Verified) -> Verified {
        let groups =
            if access.claims.contains_key("cognito:groups") { access.groups.clone() } else { id.groups.clone() };
        let claims = match self.issuers[id.issuer].config.token_use {
            TokenUse::Access => access.claims.clone(),
            TokenUse::Id | TokenUse::Any => id.claims.clone(),
        };
        let mut header_claims: Map<String, Value> = access.claims.clone();
        header_claims.extend(id.claims.iter().map(|(k, v)| (k.clone(), v.clone())));
        let identity =
            identity::prepare_identity(&id.sub, &groups, &header_claims, &self.identity, self.max_identity_bytes);
        Verified {
            issuer: id.issuer,
            token_use: self.issuers[id.issuer].config.token_use,
            paired: true,
            sub: id.sub.clone(),
            client_id: access.client_id.clone(),
            groups,
            scope: access.scope.clone(),
            claims,
            exp: id.exp.min(access.exp),
            identity,
            key: access.key.clone(),
        }
    }
}

/// OIDC Core §3.2.2.9 / §3.1.3.6: base64url of the left half of the SHA-256 of the ASCII
/// access token (RS256 ⇒ SHA-256).
pub fn at_hash(access_token: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access_token);
    URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16])
}

/// Compare without an early exit, so timing does not reveal how much of a hash matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
