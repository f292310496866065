//! Minting tokens locally: a fresh RSA [`SigningKey`], its JWKS document, and Cognito-shaped
//! claim sets. Used by `portcullis demo` (a zero-setup identity provider on loopback), by
//! `explain --claims` and `portcullis test` (claims signed with a throw-away key), and by the test
//! suites, which also use [`SigningKey::sign_raw`] to build deliberately malformed tokens. It is
//! never consulted when verifying: verification only trusts configured key sources. (An
//! "issuer" elsewhere is a trusted user pool, never this.)

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKeyComponents};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// An RSA signing key with a key id.
pub struct SigningKey {
    key: KeyPair,
    pub kid: String,
    rng: SystemRandom,
}

impl SigningKey {
    /// Generate a 2048-bit key.
    pub fn generate(kid: &str) -> Result<Self, String> {
        Self::generate_with_size(kid, KeySize::Rsa2048)
    }

    pub fn generate_with_size(kid: &str, size: KeySize) -> Result<Self, String> {
        let key = KeyPair::generate(size).map_err(|_| "RSA key generation failed".to_owned())?;
        Ok(SigningKey { key, kid: kid.to_owned(), rng: SystemRandom::new() })
    }

    /// The public key as a JWK (`kty`, `kid`, `use`, `alg`, `n`, `e`).
    pub fn jwk(&self) -> Value {
        let c: PublicKeyComponents<Vec<u8>> = self.key.public_key().into();
        json!({
            "kty": "RSA",
            "kid": self.kid,
            "use": "sig",
            "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(&c.n),
            "e": URL_SAFE_NO_PAD.encode(&c.e),
        })
    }

    /// A JWKS document holding this key.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk()] })
    }

    /// Sign `header_b64.payload_b64` exactly as given and append the signature.
    pub fn sign_raw(&self, signing_input: &str) -> String {
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        // Signing with a freshly generated key cannot fail for a valid buffer size.
        if self.key.sign(&RSA_PKCS1_SHA256, &self.rng, signing_input.as_bytes(), &mut sig).is_err() {
            return format!("{signing_input}.");
        }
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// Mint a token with an arbitrary header and payload (both serialised as given).
    pub fn mint_with_header(&self, header: &Value, claims: &Value) -> String {
        let h = URL_SAFE_NO_PAD.encode(header.to_string());
        let p = URL_SAFE_NO_PAD.encode(claims.to_string());
        self.sign_raw(&format!("{h}.{p}"))
    }

    /// Mint an RS256 token with this key's kid.
    pub fn mint(&self, claims: &Value) -> String {
        self.mint_with_header(&json!({"alg": "RS256", "kid": self.kid, "typ": "JWT"}), claims)
    }
}

/// Unix time now, in seconds (minted `iat`/`exp` are wall-clock timestamps).
#[allow(clippy::disallowed_methods)]
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Cognito-shaped access-token claims for `sub` in `groups`, valid for an hour.
pub fn access_claims(iss: &str, client_id: &str, sub: &str, groups: &[&str], scope: &str) -> Value {
    let now = now();
    json!({
        "sub": sub,
        "cognito:groups": groups,
        "iss": iss,
        "version": 2,
        "client_id": client_id,
        "token_use": "access",
        "scope": scope,
        "auth_time": now,
        "exp": now + 3600,
        "iat": now,
        "jti": format!("{:032x}", rand::random::<u128>()),
        "username": sub,
    })
}

/// Cognito-shaped id-token claims.
pub fn id_claims(iss: &str, client_id: &str, sub: &str, groups: &[&str], email: &str) -> Value {
    let now = now();
    json!({
        "sub": sub,
        "cognito:groups": groups,
        "iss": iss,
        "aud": client_id,
        "token_use": "id",
        "email": email,
        "email_verified": true,
        "cognito:username": sub,
        "auth_time": now,
        "exp": now + 3600,
        "iat": now,
    })
}
