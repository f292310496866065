//! A memo of the session cookies this config snapshot has opened (SPEC §8 "Serving a session";
//! README "Performance"): a browser sends the same sealed value on every request until the cookie
//! is rewritten, and opening it (base64, AES-256-GCM-SIV over ~2.5 KB, decode) is most of what a
//! session request costs beyond a bearer one. A value seen before is served from here.
//!
//! Why this is as strict as opening:
//! - only values that opened are remembered, and a lookup compares the *whole* presented value
//!   with the remembered one (in constant time), so a value differing in any byte misses and is
//!   opened — and refused — as before (SECURITY LOGIN-05);
//! - the memo belongs to one snapshot's `LoginRuntime`: a reload that drops a secret starts an
//!   empty memo, so a cookie sealed under the dropped secret is opened again and refused;
//! - the session's absolute expiry is checked on every request by the caller, memo or not.
//!
//! The table is bucketed by a hash of the value's length and first and last 64 bytes (the nonce
//! and the tag: random per seal), under a random key per memo, so a lookup hashes ~140 bytes
//! instead of 2.5 KB, and nobody can aim values at one bucket. Only values that opened are
//! inserted, but a signed-in user can still mint many (every re-sealed cookie is a new value), so
//! the memo is bounded both in values ([`MAX_OPENED`]) and in bytes ([`MAX_OPENED_BYTES`]): when
//! either is reached it is emptied, which costs one open per live cookie and nothing else.

use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use super::constant_time_eq;
use super::sessions::SessionCookie;

/// The most values remembered.
pub const MAX_OPENED: usize = 16_384;

/// The most bytes of sealed values and refresh tokens remembered (a Cognito-sized cookie is
/// ~4.5 KB of both; 16 MiB holds ~3,700 of them).
pub const MAX_OPENED_BYTES: usize = 16 << 20;

struct Opened {
    sealed: Box<str>,
    cookie: Arc<SessionCookie>,
    /// Opened by a secret other than the first: the cookie is re-sealed on use.
    old_key: bool,
}

/// Sealed session-cookie values already opened under this snapshot's secrets.
pub struct OpenedCookies {
    hasher: RandomState,
    table: Mutex<Table>,
    capacity: usize,
    max_bytes: usize,
}

#[derive(Default)]
struct Table {
    values: HashTable<Opened>,
    /// Bytes of the sealed values and refresh tokens held.
    bytes: usize,
}

impl Opened {
    fn bytes(&self) -> usize {
        self.sealed.len() + self.cookie.refresh_token.len() + self.cookie.sub.len()
    }
}

impl OpenedCookies {
    pub fn new(capacity: usize) -> OpenedCookies {
        OpenedCookies::bounded(capacity, MAX_OPENED_BYTES)
    }

    fn bounded(capacity: usize, max_bytes: usize) -> OpenedCookies {
        OpenedCookies {
            hasher: RandomState::new(),
            table: Mutex::new(Table::default()),
            capacity: capacity.max(1),
            max_bytes,
        }
    }

    fn hash(&self, sealed: &str) -> u64 {
        let b = sealed.as_bytes();
        self.hasher.hash_one((b.len(), &b[..b.len().min(64)], &b[b.len().saturating_sub(64)..]))
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cookie `sealed` opened to, and whether an older secret opened it.
    pub fn get(&self, sealed: &str) -> Option<(Arc<SessionCookie>, bool)> {
        let hash = self.hash(sealed);
        self.table()
            .values
            .find(hash, |o| constant_time_eq(o.sealed.as_bytes(), sealed.as_bytes()))
            .map(|o| (o.cookie.clone(), o.old_key))
    }

    /// Remember that `sealed` opened to `cookie`.
    pub fn insert(&self, sealed: &str, cookie: Arc<SessionCookie>, old_key: bool) {
        let hash = self.hash(sealed);
        let opened = Opened { sealed: sealed.into(), cookie, old_key };
        let mut table = self.table();
        if table.values.len() >= self.capacity || table.bytes + opened.bytes() > self.max_bytes {
            table.values.clear();
            table.bytes = 0;
        }
        let eq = |o: &Opened| constant_time_eq(o.sealed.as_bytes(), sealed.as_bytes());
        let bytes = opened.bytes();
        if let Entry::Vacant(v) = table.values.entry(hash, eq, |o| self.hash(&o.sealed)) {
            v.insert(opened);
            table.bytes += bytes;
        }
    }

    /// Values remembered.
    pub fn len(&self) -> usize {
        self.table().values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookie(sub: &str) -> Arc<SessionCookie> {
        Arc::new(SessionCookie::new(sub, "refresh", 600).unwrap())
    }

    #[test]
    fn only_the_exact_value_is_found() {
        let memo = OpenedCookies::new(10);
        let sealed = "A".repeat(300) + "middle" + &"B".repeat(300);
        memo.insert(&sealed, cookie("alice"), false);
        assert_eq!(memo.get(&sealed).map(|(c, k)| (c.sub.clone(), k)), Some(("alice".into(), false)));
        // Same length, same first and last 64 bytes (same bucket), one byte changed in the middle.
        let changed = "A".repeat(300) + "middlE" + &"B".repeat(300);
        assert!(memo.get(&changed).is_none());
        assert!(memo.get(&sealed[..sealed.len() - 1]).is_none(), "truncated");
        assert!(memo.get(&format!("{sealed}A")).is_none(), "extended");
        // Inserting the same value twice keeps one entry.
        memo.insert(&sealed, cookie("alice"), false);
        assert_eq!(memo.len(), 1);
    }

    #[test]
    fn bounded_in_bytes_too() {
        // Each entry: a 100-byte value, a 7-byte refresh token and a 1-byte sub.
        let memo = OpenedCookies::bounded(1_000, 3 * 108);
        for i in 0..3 {
            memo.insert(&format!("{i:0>100}"), cookie("u"), false);
        }
        assert_eq!(memo.len(), 3);
        memo.insert(&format!("{:0>100}", 3), cookie("u"), false);
        assert_eq!(memo.len(), 1, "over the byte bound: emptied, then the new value kept");
    }

    #[test]
    fn bounded_by_emptying_when_full() {
        let memo = OpenedCookies::new(3);
        for i in 0..3 {
            memo.insert(&format!("v{i}"), cookie("u"), false);
        }
        assert_eq!(memo.len(), 3);
        memo.insert("v3", cookie("u"), true);
        assert_eq!(memo.len(), 1);
        assert_eq!(memo.get("v3").map(|(_, k)| k), Some(true));
        assert!(memo.get("v0").is_none());
    }
}
