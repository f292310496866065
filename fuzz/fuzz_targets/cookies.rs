//! Opening session and login cookies (SECURITY LOGIN-05, SPEC §8). Properties, for any input:
//! nothing panics; no cookie text the fuzzer makes opens under the fixture's secrets; a genuine
//! sealed cookie with any byte changed never opens; a session plaintext that decodes re-encodes
//! to the same bytes; a login cookie's plaintext never yields more than 3 pending sign-ins.
#![no_main]

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use portcullis::config::Secret;
use portcullis::auth::login::pending::{MAX_PENDING, PendingList};
use portcullis::auth::login::seal::{Purpose, Sealer};
use portcullis::auth::login::sessions::SessionCookie;

const NAME: &[u8] = b"__Host-portcullis";

struct Fixture {
    session: Sealer,
    login: Sealer,
    genuine: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let secrets = [Secret(b"fuzz-session-secret-0123456789abcdef".to_vec()), Secret(vec![7; 32])];
        let session = Sealer::new(&secrets, Purpose::Session).expect("keys");
        let login = Sealer::new(&secrets, Purpose::Login).expect("keys");
        let cookie = SessionCookie::new("user-1", &"r".repeat(1800), 3600).expect("cookie");
        let sealed = session.seal(NAME, &cookie.encode().expect("encodes")).expect("seals");
        let genuine = URL_SAFE_NO_PAD.decode(sealed).expect("base64url");
        Fixture { session, login, genuine }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    if let Ok(s) = std::str::from_utf8(data) {
        assert!(f.session.open(NAME, s).is_none(), "forged session cookie opened: {s:?}");
        assert!(f.login.open(NAME, s).is_none(), "forged login cookie opened: {s:?}");
    }
    // Any edit of a genuine cookie (position and xor mask from the input) makes it unopenable.
    if data.len() >= 2 {
        let mut raw = f.genuine.clone();
        let i = (usize::from(data[0]) * 31 + data.len()) % raw.len();
        raw[i] ^= data[1].max(1);
        assert!(f.session.open(NAME, &URL_SAFE_NO_PAD.encode(&raw)).is_none(), "edited byte {i} still opened");
        raw.truncate(data.len() % raw.len());
        assert!(f.session.open(NAME, &URL_SAFE_NO_PAD.encode(&raw)).is_none(), "truncated cookie opened");
    }
    // Plaintext parsing, as if a sealed value had opened.
    if let Some(c) = SessionCookie::decode(data) {
        assert_eq!(c.encode().as_deref(), Some(data), "session cookie does not round-trip");
    }
    assert!(PendingList::decode(data, 1_000_000).0.len() <= MAX_PENDING);
});
