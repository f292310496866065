//! Sealing cookies (SPEC §8 "Session cookie"): authenticated encryption with AES-256-GCM-SIV from
//! aws-lc-rs, under keys derived with HKDF-SHA256 from the configured session secrets. The first
//! secret seals; every secret opens, so secrets rotate without signing anyone out. Each purpose
//! (session cookie, login cookie) derives its own keys, and the cookie's name is bound as
//! associated data, so one kind of cookie can never be opened as the other. Owns nothing about
//! what is inside a cookie (`sessions`, `pending`).
//!
//! Wire form: base64url(no padding) of `0x01 ‖ nonce(12) ‖ ciphertext ‖ tag(16)`. The version byte
//! is authenticated too. GCM-SIV with a fresh random nonce per seal stays safe even if a nonce
//! ever repeated (it only reveals that two plaintexts were equal).

use aws_lc_rs::aead::{AES_256_GCM_SIV, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::config::Secret;

const VERSION: u8 = 1;
const TAG_LEN: usize = 16;
/// Nothing larger is even decoded (a cookie is at most a few KB; SECURITY DOS-04 spirit).
pub const MAX_SEALED_LEN: usize = 8192;

/// What a cookie is for: each purpose derives different keys from the same secrets.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    Session,
    Login,
}

impl Purpose {
    fn info(self) -> &'static [u8] {
        match self {
            Purpose::Session => b"portcullis session cookie v1",
            Purpose::Login => b"portcullis login cookie v1",
        }
    }
}

/// AEAD keys for one purpose, in secret order.
pub struct Sealer {
    keys: Vec<RandomizedNonceKey>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer({} keys)", self.keys.len())
    }
}

impl Sealer {
    /// Derive one key per secret. Fails only if the crypto library refuses a key.
    pub fn new(secrets: &[Secret], purpose: Purpose) -> Result<Sealer, String> {
        let salt = Salt::new(HKDF_SHA256, b"portcullis");
        let mut keys = Vec::with_capacity(secrets.len());
        for secret in secrets {
            let mut key = [0u8; 32];
            salt.extract(&secret.0)
                .expand(&[purpose.info()], &AES_256_GCM_SIV)
                .and_then(|okm| okm.fill(&mut key))
                .map_err(|_| "session key derivation failed".to_owned())?;
            keys.push(
                RandomizedNonceKey::new(&AES_256_GCM_SIV, &key).map_err(|_| "session cipher key refused".to_owned())?,
            );
        }
        if keys.is_empty() {
            return Err("login.session.secrets is empty".into());
        }
        Ok(Sealer { keys })
    }

    /// Seal `plaintext` under the first secret, binding `aad` (the cookie name).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Option<String> {
        let mut in_out = plaintext.to_vec();
        let nonce = self.keys[0].seal_in_place_append_tag(Aad::from(ad(aad)), &mut in_out).ok()?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + in_out.len());
        out.push(VERSION);
        out.extend_from_slice(nonce.as_ref());
        out.extend_from_slice(&in_out);
        Some(URL_SAFE_NO_PAD.encode(out))
    }

    /// Open a sealed value with any secret: the plaintext and the index of the secret that opened
    /// it (0 = the current one). `None` for anything tampered, truncated, foreign or malformed.
    pub fn open(&self, aad: &[u8], sealed: &str) -> Option<(Vec<u8>, usize)> {
        if sealed.len() > MAX_SEALED_LEN {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if raw.len() < 1 + NONCE_LEN + TAG_LEN || raw[0] != VERSION {
            return None;
        }
        let (nonce, body) = raw[1..].split_at(NONCE_LEN);
        for (i, key) in self.keys.iter().enumerate() {
            let mut buf = body.to_vec();
            let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
            if let Ok(plain) = key.open_in_place(nonce, Aad::from(ad(aad)), &mut buf) {
                return Some((plain.to_vec(), i));
            }
        }
        None
    }
}

/// Associated data: the version byte and the cookie name.
fn ad(name: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + name.len());
    v.push(VERSION);
    v.extend_from_slice(name);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(b: u8) -> Secret {
        Secret(vec![b; 32])
    }

    #[test]
    fn seals_and_opens_and_refuses_every_change() {
        // SECURITY LOGIN-05: any change to a sealed value makes it unopenable.
        let s = Sealer::new(&[secret(1)], Purpose::Session).unwrap();
        let sealed = s.seal(b"__Host-c", b"hello").unwrap();
        assert_eq!(s.open(b"__Host-c", &sealed), Some((b"hello".to_vec(), 0)));
        assert_eq!(s.open(b"__Host-other", &sealed), None, "bound to the cookie name");
        let bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        for i in 0..bytes.len() {
            let mut t = bytes.clone();
            t[i] ^= 1;
            assert_eq!(s.open(b"__Host-c", &URL_SAFE_NO_PAD.encode(&t)), None, "byte {i} flipped");
        }
        for n in 0..sealed.len() {
            assert_eq!(s.open(b"__Host-c", &sealed[..n]), None, "truncated to {n}");
        }
        assert_eq!(s.open(b"__Host-c", &format!("{sealed}AA")), None, "extended");
        assert_ne!(s.seal(b"__Host-c", b"hello"), Some(sealed), "fresh nonce per seal");
    }

    #[test]
    fn first_secret_seals_every_secret_opens() {
        let old = Sealer::new(&[secret(1)], Purpose::Session).unwrap();
        let rotated = Sealer::new(&[secret(2), secret(1)], Purpose::Session).unwrap();
        let foreign = Sealer::new(&[secret(3)], Purpose::Session).unwrap();
        let by_old = old.seal(b"n", b"x").unwrap();
        assert_eq!(rotated.open(b"n", &by_old), Some((b"x".to_vec(), 1)));
        assert_eq!(foreign.open(b"n", &by_old), None);
        let by_new = rotated.seal(b"n", b"y").unwrap();
        assert_eq!(rotated.open(b"n", &by_new).map(|(_, i)| i), Some(0));
        assert_eq!(old.open(b"n", &by_new), None);
    }

    #[test]
    fn purposes_do_not_open_each_other() {
        let session = Sealer::new(&[secret(1)], Purpose::Session).unwrap();
        let login = Sealer::new(&[secret(1)], Purpose::Login).unwrap();
        let sealed = login.seal(b"n", b"pending").unwrap();
        assert_eq!(session.open(b"n", &sealed), None);
    }
}
