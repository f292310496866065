//! Token parsing and verification (SECURITY FMT-*, ALG-*, CLM-*, CLV-*, DOS-04). The first byte
//! picks how the rest is used:
//! - 0: the whole credential, as sent;
//! - 1: the JOSE header (JSON text) of an otherwise genuine token, whose signature then no longer
//!   matches;
//! - 2: claims (JSON text), correctly signed by the trusted key, so every claim check is reached.
//!
//! Properties: never a panic; nothing the trusted key did not sign is ever accepted; an accepted
//! identity has a non-empty `sub` without whitespace or control characters.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use portcullis::auth::verify::UseRule;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let f = portcullis_fuzz::fixture();
    let (token, signed) = match mode % 3 {
        0 => (String::from_utf8_lossy(rest).into_owned(), false),
        1 => {
            let mut parts = f.token.splitn(3, '.');
            let (_, payload, sig) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
            (format!("{}.{payload}.{sig}", URL_SAFE_NO_PAD.encode(rest)), false)
        }
        _ => {
            let Ok(claims) = serde_json::from_slice::<serde_json::Value>(rest) else { return };
            (f.issuer.mint(&claims), true)
        }
    };
    let result = f.runtime.block_on(f.verifier.verify(&token, UseRule::Issuer));
    if let Ok(v) = result {
        assert!(signed || token == f.token, "accepted a token the trusted key did not sign: {token}");
        assert!(!v.sub.is_empty());
        assert!(!v.sub.chars().any(|c| c.is_whitespace() || c.is_control()), "{:?}", v.sub);
    }
});
