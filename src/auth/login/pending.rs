//! Pending sign-ins (SPEC §8 "Starting a sign-in"): the `state`, `nonce`, PKCE code verifier and
//! the path to return to, for at most [`MAX_PENDING`] sign-ins per browser, kept in one sealed
//! login cookie valid for [`LOGIN_TTL_SECS`]. Nothing about them is stored server-side, so any
//! replica can finish a sign-in another started. Owns the list and its rules (oldest dropped,
//! expired ones ignored, one used up by its callback); not the cookie cipher (`seal`).

use serde::{Deserialize, Serialize};

use super::random_token;

/// Sign-ins pending per browser; a fourth drops the oldest (SPEC §8).
pub const MAX_PENDING: usize = 3;
/// How long a sign-in may take, and the login cookie's `Max-Age`.
pub const LOGIN_TTL_SECS: u64 = 600;
/// A longer return path is replaced by `/` (it must fit the cookie three times).
pub const MAX_RETURN_PATH: usize = 512;

/// One sign-in in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    #[serde(rename = "s")]
    pub state: String,
    #[serde(rename = "n")]
    pub nonce: String,
    #[serde(rename = "v")]
    pub verifier: String,
    #[serde(rename = "r")]
    pub return_to: String,
    #[serde(rename = "t")]
    pub created: u64,
}

impl Pending {
    /// A fresh sign-in with random `state`, `nonce` and a 256-bit PKCE verifier.
    pub fn new(return_to: &str, now: u64) -> Option<Pending> {
        Some(Pending {
            state: random_token(16)?,
            nonce: random_token(16)?,
            verifier: random_token(32)?,
            return_to: safe_return_path(return_to),
            created: now,
        })
    }

    /// PKCE S256 (RFC 7636 §4.2): base64url(SHA-256(verifier)).
    pub fn code_challenge(&self) -> String {
        use base64::Engine;
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.verifier.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref())
    }
}

/// The pending sign-ins of one browser.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingList(pub Vec<Pending>);

impl PendingList {
    /// Parse an opened login cookie, dropping expired entries. Anything malformed is empty.
    pub fn decode(bytes: &[u8], now: u64) -> PendingList {
        let mut list: PendingList = serde_json::from_slice(bytes).unwrap_or_default();
        list.0.retain(|p| p.created <= now && now - p.created < LOGIN_TTL_SECS);
        list.0.truncate(MAX_PENDING);
        list
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Add a sign-in; the oldest is dropped beyond [`MAX_PENDING`].
    pub fn push(&mut self, p: Pending) {
        self.0.push(p);
        while self.0.len() > MAX_PENDING {
            self.0.remove(0);
        }
    }

    /// Remove and return the sign-in whose `state` equals `state` (compared in constant time),
    /// so a callback uses it up and a replay finds nothing.
    pub fn take(&mut self, state: &str) -> Option<Pending> {
        let i = self.0.iter().position(|p| super::constant_time_eq(p.state.as_bytes(), state.as_bytes()))?;
        Some(self.0.remove(i))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Where a browser may be sent after signing in: a path on this origin, starting with exactly
/// one `/` (never `//` or `/\`, which browsers read as another host), of visible ASCII only (no
/// tab, newline or other control bytes that browsers strip before parsing); anything else is `/`
/// (SPEC §8; SECURITY LOGIN-04).
pub fn safe_return_path(rd: &str) -> String {
    let ok = rd.len() <= MAX_RETURN_PATH
        && rd.starts_with('/')
        && !rd.starts_with("//")
        && !rd.contains('\\')
        && rd.bytes().all(|b| (0x21..0x7f).contains(&b));
    if ok { rd.to_owned() } else { "/".to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_paths_stay_on_this_origin() {
        // SECURITY LOGIN-04: every trick becomes `/`.
        for (rd, want) in [
            ("/reports?q=1#x", "/reports?q=1#x"),
            ("/", "/"),
            ("//evil.example", "/"),
            ("/\\evil.example", "/"),
            ("\\\\evil.example", "/"),
            ("https://evil.example", "/"),
            ("evil.example", "/"),
            ("/\t/evil.example", "/"),
            ("/\n/evil.example", "/"),
            ("/ /evil.example", "/"),
            ("", "/"),
            ("/caf\u{e9}", "/"),
        ] {
            assert_eq!(safe_return_path(rd), want, "{rd:?}");
        }
        assert_eq!(safe_return_path(&format!("/{}", "a".repeat(MAX_RETURN_PATH))), "/");
    }

    #[test]
    fn at_most_three_pending_and_each_is_used_once() {
        let mut list = PendingList::default();
        let made: Vec<Pending> = (0..4).map(|i| Pending::new(&format!("/p{i}"), 100).unwrap()).collect();
        for p in &made {
            list.push(p.clone());
        }
        assert_eq!(list.0.len(), MAX_PENDING);
        assert_eq!(list.take(&made[0].state), None, "the oldest was dropped");
        assert_eq!(list.take(&made[2].state).map(|p| p.return_to), Some("/p2".into()));
        assert_eq!(list.take(&made[2].state), None, "used up");
        assert_eq!(list.take(""), None);
    }

    #[test]
    fn expired_entries_are_dropped_on_decode() {
        let mut list = PendingList::default();
        list.push(Pending::new("/old", 1000).unwrap());
        list.push(Pending::new("/new", 1000 + LOGIN_TTL_SECS).unwrap());
        let decoded = PendingList::decode(&list.encode(), 1000 + LOGIN_TTL_SECS + 1);
        assert_eq!(decoded.0.len(), 1);
        assert_eq!(decoded.0[0].return_to, "/new");
        assert_eq!(PendingList::decode(b"not json", 0), PendingList::default());
    }

    #[test]
    fn pkce_challenge_is_s256_of_the_verifier() {
        // RFC 7636 appendix B's example verifier and challenge (SECURITY LOGIN-02).
        let mut p = Pending::new("/", 0).unwrap();
        p.verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into();
        assert_eq!(p.code_challenge(), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        assert_eq!(Pending::new("/", 0).unwrap().verifier.len(), 43);
    }
}
