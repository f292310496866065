//! The verified-token cache (SPEC §2: bounded, keyed by the whole token, expiring no later than
//! `exp`). Failures are never cached; route decisions never are either.

use std::sync::Arc;

use dashmap::DashMap;

use super::Verified;
use super::checks::now;
use crate::telemetry::metrics::Metrics;

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
pub(super) struct TokenCache {
    pub(super) map: DashMap<[u8; 32], Arc<Verified>>,
    pub(super) capacity: usize,
    /// 64-bit fingerprints of tokens verified once; emptied when it reaches `capacity`.
    pub(super) seen: std::sync::Mutex<std::collections::HashSet<u64>>,
    metrics: Arc<Metrics>,
}

impl TokenCache {
    pub(super) fn new(capacity: usize, metrics: Arc<Metrics>) -> Self {
        TokenCache { map: DashMap::new(), capacity, seen: Default::default(), metrics }
    }

    pub(super) fn digest(token: &str) -> [u8; 32] {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        out
    }

    pub(super) fn get(&self, digest: &[u8; 32]) -> Option<Arc<Verified>> {
        self.map.get(digest).map(|e| e.value().clone())
    }

    pub(super) fn remove(&self, digest: &[u8; 32]) {
        self.map.remove(digest);
        self.metrics.token_cache_entries.set(self.map.len() as i64);
    }

    pub(super) fn insert(&self, digest: [u8; 32], v: Arc<Verified>) {
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
