//! One issuer's key cache: a validated key set swapped as a whole, lookups by `kid` with one
//! refetch per `kid_miss_cooldown` on a miss (concurrent misses share the fetch in flight), and
//! stale-if-error up to `max_stale`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use tokio::time::Instant;

use super::sources::{FetchError, KeySource};
use crate::config;
use crate::telemetry::metrics::Metrics;

/// One usable RSA verification key.
pub struct Key {
    pub kid: String,
    pub decoding: DecodingKey,
    /// The raw modulus and exponent, to recognise an unchanged key across refreshes.
    material: (Vec<u8>, Vec<u8>),
}

#[cfg(test)]
impl Key {
    /// A key that verifies nothing, for values built in tests without a signature.
    pub(crate) fn for_tests(kid: &str) -> Key {
        Key {
            kid: kid.to_owned(),
            decoding: DecodingKey::from_rsa_raw_components(&[1], &[1]),
            material: (vec![1], vec![1]),
        }
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// A validated, non-empty key set, replaced as a whole.
#[derive(Debug)]
pub struct KeySet {
    keys: HashMap<String, Arc<Key>>,
}

impl KeySet {
    pub fn get(&self, kid: &str) -> Option<&Arc<Key>> {
        self.keys.get(kid)
    }
    pub fn len(&self) -> usize {
        self.keys.len()
    }
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }
}

/// Parse and validate a JWKS document. Keys that are not RS256 signing keys of at least 2048
/// bits are skipped (SPEC §2); a set with none left is [`FetchError::Empty`].
pub fn parse(body: &[u8], max_keys: usize) -> Result<KeySet, FetchError> {
    #[derive(serde::Deserialize)]
    struct Doc {
        keys: Vec<serde_json::Value>,
    }
    let doc: Doc = serde_json::from_slice(body).map_err(|e| FetchError::Parse(e.to_string()))?;
    if doc.keys.len() > max_keys {
        // Never truncate: a partial set could silently drop the key in use.
        return Err(FetchError::TooLarge(format!("{} keys (max_keys {max_keys})", doc.keys.len())));
    }
    let mut keys = HashMap::new();
    for jwk in &doc.keys {
        let Some(obj) = jwk.as_object() else {
            return Err(FetchError::Parse("a key is not a JSON object".into()));
        };
        let s = |name: &str| obj.get(name).and_then(|v| v.as_str());
        if s("kty") != Some("RSA") {
            continue;
        }
        if obj.get("use").is_some() && s("use") != Some("sig") {
            continue;
        }
        if obj.get("alg").is_some() && s("alg") != Some("RS256") {
            continue;
        }
        let (Some(kid), Some(n), Some(e)) = (s("kid"), s("n"), s("e")) else {
            return Err(FetchError::Parse("an RSA key lacks kid, n or e".into()));
        };
        let modulus =
            URL_SAFE_NO_PAD.decode(n).map_err(|_| FetchError::Parse(format!("key {kid:?}: `n` is not base64url")))?;
        let exponent =
            URL_SAFE_NO_PAD.decode(e).map_err(|_| FetchError::Parse(format!("key {kid:?}: `e` is not base64url")))?;
        let leading_zeros = modulus.iter().take_while(|b| **b == 0).count();
        let bits = (modulus.len() - leading_zeros) * 8;
        if bits < 2048 || exponent.is_empty() || exponent.len() > 8 {
            // Weak or absurd keys are ignored, not trusted (SPEC §2).
            continue;
        }
        if kid.is_empty() || kid.len() > 256 {
            continue;
        }
        let decoding = DecodingKey::from_rsa_raw_components(&modulus, &exponent);
        let key = Key { kid: kid.to_owned(), decoding, material: (modulus, exponent) };
        if keys.insert(kid.to_owned(), Arc::new(key)).is_some() {
            return Err(FetchError::Parse(format!("duplicate kid {kid:?}")));
        }
    }
    if keys.is_empty() {
        return Err(FetchError::Empty);
    }
    Ok(KeySet { keys })
}

/// Settings from `jwks:` in the config.
#[derive(Debug, Clone)]
pub struct Settings {
    pub refresh_interval: Duration,
    pub kid_miss_cooldown: Duration,
    pub max_stale: Duration,
    pub max_bytes: u64,
    pub max_keys: usize,
}

impl From<&config::Jwks> for Settings {
    fn from(j: &config::Jwks) -> Self {
        Settings {
            refresh_interval: j.refresh_interval,
            kid_miss_cooldown: j.kid_miss_cooldown,
            max_stale: j.max_stale,
            max_bytes: j.max_bytes,
            max_keys: j.max_keys,
        }
    }
}

struct Current {
    set: Arc<KeySet>,
    fetched_at: Instant,
}

/// The answer to "which key has this kid?".
#[derive(Debug)]
pub enum Lookup {
    Found(Arc<Key>),
    /// Keys are loaded but none has this kid (after any allowed refetch).
    Unknown,
    /// No usable keys: never loaded, or stale past `max_stale`.
    Unavailable,
}

/// The key cache of one issuer.
pub struct IssuerKeys {
    name: String,
    source: Box<dyn KeySource>,
    pub(super) settings: Settings,
    pub(super) metrics: Arc<Metrics>,
    current: ArcSwapOption<Current>,
    /// Serialises fetches: concurrent misses wait for the one in flight.
    fetch_lock: tokio::sync::Mutex<Option<Instant>>,
    /// Counts completed fetch attempts, so a waiter can tell one finished while it waited.
    attempts: AtomicU64,
}

impl IssuerKeys {
    pub fn new(name: &str, source: Box<dyn KeySource>, settings: Settings, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(IssuerKeys {
            name: name.to_owned(),
            source,
            settings,
            metrics,
            current: ArcSwapOption::empty(),
            fetch_lock: tokio::sync::Mutex::new(None),
            attempts: AtomicU64::new(0),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key set, if one is loaded and not stale past `max_stale`.
    pub fn usable(&self) -> Option<Arc<KeySet>> {
        let cur = self.current.load();
        let cur = cur.as_ref()?;
        if cur.fetched_at.elapsed() > self.settings.max_stale {
            return None;
        }
        Some(cur.set.clone())
    }

    pub fn is_usable(&self) -> bool {
        self.usable().is_some()
    }

    /// Whether `key` is still the key published under its kid (cached verifications of tokens
    /// signed by a withdrawn key must stop passing).
    pub fn still_has(&self, key: &Arc<Key>) -> bool {
        self.usable().and_then(|set| set.get(&key.kid).map(|k| Arc::ptr_eq(k, key))).unwrap_or(false)
    }

    /// Find the key for `kid`, refetching once per cooldown window on a miss.
    pub async fn lookup(&self, kid: &str) -> Lookup {
        match self.usable() {
            Some(set) => {
                if let Some(k) = set.get(kid) {
                    return Lookup::Found(k.clone());
                }
            }
            None => {
                // No usable keys: a fetch is already scheduled by the refresher; don't let
                // requests hammer the endpoint.
                return Lookup::Unavailable;
            }
        }
        self.refetch_for_miss().await;
        match self.usable() {
            Some(set) => set.get(kid).cloned().map_or(Lookup::Unknown, Lookup::Found),
            None => Lookup::Unavailable,
        }
    }

    /// One refetch per `kid_miss_cooldown`; concurrent misses share the fetch in flight
    /// (SECURITY DOS-05).
    async fn refetch_for_miss(&self) {
        let seen = self.attempts.load(Ordering::Acquire);
        let mut last_miss_fetch = self.fetch_lock.lock().await;
        if self.attempts.load(Ordering::Acquire) != seen {
            return; // a fetch completed while we waited: its result is what we get
        }
        if let Some(at) = *last_miss_fetch
            && at.elapsed() < self.settings.kid_miss_cooldown
        {
            self.metrics.jwks_refetch_suppressed_total.with_label_values(&[&self.name]).inc();
            return;
        }
        *last_miss_fetch = Some(Instant::now());
        let _ = self.fetch_now().await;
    }

    /// Fetch under the lock (used by the refresher).
    pub async fn refresh(&self) -> Result<(), FetchError> {
        let _guard = self.fetch_lock.lock().await;
        self.fetch_now().await
    }

    /// Fetch, validate and swap. Callers hold `fetch_lock`. On any failure the previous set
    /// stays in place (stale-if-error, SECURITY JWKS-02/04/05).
    async fn fetch_now(&self) -> Result<(), FetchError> {
        let result = match self.source.fetch(self.settings.max_bytes).await {
            Ok(body) => parse(&body, self.settings.max_keys),
            Err(e) => Err(e),
        };
        self.attempts.fetch_add(1, Ordering::AcqRel);
        let label = match &result {
            Ok(_) => "ok",
            Err(e) => e.result_label(),
        };
        self.metrics.jwks_fetch_total.with_label_values(&[&self.name, label]).inc();
        match result {
            Ok(mut set) => {
                let previous = self.current.load_full();
                // Keep the same `Arc<Key>` for keys that did not change, so verified tokens
                // cached under them stay valid across a refresh.
                if let Some(prev) = previous.as_ref() {
                    for (kid, key) in set.keys.iter_mut() {
                        if let Some(old) = prev.set.keys.get(kid)
                            && old.material == key.material
                        {
                            *key = old.clone();
                        }
                    }
                }
                log_rotation(&self.name, previous.as_ref().map(|c| &*c.set), &set);
                self.metrics.jwks_keys.with_label_values(&[&self.name]).set(set.len() as i64);
                // Exported as a Unix timestamp: the wall clock is the point.
                #[allow(clippy::disallowed_methods)]
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
                self.metrics.jwks_last_success_timestamp_seconds.with_label_values(&[&self.name]).set(now);
                self.current.store(Some(Arc::new(Current { set: Arc::new(set), fetched_at: Instant::now() })));
                Ok(())
            }
            Err(e) => {
                tracing::warn!(issuer = %self.name, result = label, error = %e, "JWKS fetch failed; keeping the last good key set");
                Err(e)
            }
        }
    }
}

fn log_rotation(issuer: &str, old: Option<&KeySet>, new: &KeySet) {
    let Some(old) = old else {
        tracing::info!(issuer, keys = new.len(), "JWKS loaded");
        return;
    };
    for kid in new.kids().filter(|k| old.get(k).is_none()) {
        tracing::info!(issuer, kid = %crate::telemetry::log::truncate(kid), "JWKS key added");
    }
    for kid in old.kids().filter(|k| new.get(k).is_none()) {
        tracing::info!(issuer, kid = %crate::telemetry::log::truncate(kid), "JWKS key removed");
    }
}
