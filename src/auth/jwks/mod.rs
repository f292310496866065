//! Per-issuer signing-key cache (SPEC §2 "JWKS"). Owns fetching (through a [`KeySource`]),
//! validating and atomically swapping key sets, the unknown-`kid` refetch with its cooldown
//! ("penalty box") and single-flight sharing, periodic refresh, and staleness. It does not know
//! about tokens: `verify` asks it for a key by `kid`.
//!
//! Time uses `tokio::time::Instant` (monotonic, pausable in tests); only the exported
//! last-success timestamp uses the wall clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use jsonwebtoken::DecodingKey;
use tokio::time::Instant;

use crate::config;
use crate::telemetry::metrics::Metrics;

/// One usable RSA verification key.
pub struct Key {
    pub kid: String,
    pub decoding: DecodingKey,
    /// The raw modulus and exponent, to recognise an unchanged key across refreshes.
    material: (Vec<u8>, Vec<u8>),
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

/// Why a fetch did not produce a new key set. Names match `jwks_fetch_total{result}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("unexpected HTTP status {0}")]
    HttpStatus(u16),
    #[error("timed out")]
    Timeout,
    #[error("TLS error: {0}")]
    Tls(String),
    #[error("unparsable key set: {0}")]
    Parse(String),
    #[error("key set too large: {0}")]
    TooLarge(String),
    #[error("no usable RS256 keys in the key set")]
    Empty,
}

impl FetchError {
    pub fn result_label(&self) -> &'static str {
        match self {
            FetchError::Connect(_) => "connect",
            FetchError::HttpStatus(_) => "http_error",
            FetchError::Timeout => "timeout",
            FetchError::Tls(_) => "tls",
            FetchError::Parse(_) => "parse",
            FetchError::TooLarge(_) => "too_large",
            FetchError::Empty => "empty",
        }
    }
}

/// Where key sets come from: an HTTPS endpoint in production, a file or a test double.
pub trait KeySource: Send + Sync + 'static {
    /// Fetch the raw JWKS document, at most `max_bytes` long.
    fn fetch(&self, max_bytes: u64) -> futures_core::future::BoxFuture<'_, Result<Bytes, FetchError>>;
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
    settings: Settings,
    metrics: Arc<Metrics>,
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

    /// Keep the set fresh: retry with capped exponential backoff until the first success, then
    /// refresh every `refresh_interval` (backing off again while fetches fail). Runs until the
    /// cache is dropped.
    pub fn spawn_refresher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(250);
            loop {
                let Some(this) = weak.upgrade() else { return };
                let result = this.refresh().await;
                let wait = match result {
                    Ok(()) => {
                        backoff = Duration::from_millis(250);
                        this.settings.refresh_interval
                    }
                    Err(_) => {
                        let wait = jitter(backoff).min(this.settings.refresh_interval);
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        wait
                    }
                };
                drop(this);
                tokio::time::sleep(wait).await;
            }
        })
    }
}

fn jitter(d: Duration) -> Duration {
    let factor: f64 = 0.75 + rand::random::<f64>() * 0.5;
    d.mul_f64(factor)
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

/// Keys read from a local file (`jwks_file`), re-read on every refresh.
pub struct FileSource {
    pub path: std::path::PathBuf,
}

impl KeySource for FileSource {
    fn fetch(&self, max_bytes: u64) -> futures_core::future::BoxFuture<'_, Result<Bytes, FetchError>> {
        Box::pin(async move {
            let meta = tokio::fs::metadata(&self.path)
                .await
                .map_err(|e| FetchError::Connect(format!("{}: {e}", self.path.display())))?;
            if meta.len() > max_bytes {
                return Err(FetchError::TooLarge(format!("{} bytes", meta.len())));
            }
            let data = tokio::fs::read(&self.path)
                .await
                .map_err(|e| FetchError::Connect(format!("{}: {e}", self.path.display())))?;
            Ok(Bytes::from(data))
        })
    }
}

/// Keys fetched over HTTP(S). Redirects are not followed, ambient proxy variables are ignored,
/// TLS is verified against the webpki roots plus `ca_file`, and the body is capped.
pub struct HttpSource {
    url: String,
    client: reqwest::Client,
}

impl HttpSource {
    pub fn new(url: &str, jwks: &config::Jwks) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(ca) = &jwks.ca_file {
            use rustls_pki_types::pem::PemObject;
            let pem = std::fs::read(ca).map_err(|e| format!("jwks.ca_file {}: {e}", ca.display()))?;
            let mut added = 0;
            for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("jwks.ca_file {}: {e}", ca.display()))?;
                roots.add(cert).map_err(|e| format!("jwks.ca_file {}: {e}", ca.display()))?;
                added += 1;
            }
            if added == 0 {
                return Err(format!("jwks.ca_file {}: no certificates found", ca.display()));
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connect_timeout = jwks.fetch_timeout.min(Duration::from_secs(2));
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            // Ambient HTTP(S)_PROXY is ignored: egress must be explicit (SPEC §2 jwks.proxy).
            .no_proxy()
            .connect_timeout(connect_timeout)
            .timeout(jwks.fetch_timeout)
            .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")));
        if let Some(proxy) = &jwks.proxy {
            builder = builder.proxy(reqwest::Proxy::all(proxy).map_err(|e| format!("jwks.proxy: {e}"))?);
        }
        let client = builder.build().map_err(|e| format!("JWKS client: {e}"))?;
        Ok(HttpSource { url: url.to_owned(), client })
    }
}

fn classify(e: &reqwest::Error) -> FetchError {
    if e.is_timeout() {
        return FetchError::Timeout;
    }
    // Walk the source chain: rustls errors surface as a connect error wrapping an io::Error.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<rustls::Error>().is_some() {
            return FetchError::Tls(s.to_string());
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            // `io::Error::source()` skips the error an io::Error wraps, and the connector nests
            // io::Errors (Other → InvalidData → rustls::Error): unwrap them by hand.
            let mut inner = io.get_ref();
            while let Some(e) = inner {
                if e.downcast_ref::<rustls::Error>().is_some() {
                    return FetchError::Tls(e.to_string());
                }
                inner = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref());
            }
            if io.kind() == std::io::ErrorKind::TimedOut {
                return FetchError::Timeout;
            }
        }
        source = s.source();
    }
    FetchError::Connect(e.to_string())
}

impl KeySource for HttpSource {
    fn fetch(&self, max_bytes: u64) -> futures_core::future::BoxFuture<'_, Result<Bytes, FetchError>> {
        Box::pin(async move {
            let mut response = self.client.get(&self.url).send().await.map_err(|e| classify(&e))?;
            let status = response.status();
            if status != reqwest::StatusCode::OK {
                return Err(FetchError::HttpStatus(status.as_u16()));
            }
            if response.content_length().is_some_and(|n| n > max_bytes) {
                return Err(FetchError::TooLarge(format!("Content-Length over {max_bytes}")));
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| classify(&e))? {
                if body.len() as u64 + chunk.len() as u64 > max_bytes {
                    return Err(FetchError::TooLarge(format!("body over {max_bytes} bytes")));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Bytes::from(body))
        })
    }
}

/// Build the source for an issuer's key location.
pub fn source_for(keys: &config::KeySource, jwks: &config::Jwks) -> Result<Box<dyn KeySource>, String> {
    Ok(match keys {
        config::KeySource::Url(url) => Box::new(HttpSource::new(url, jwks)?),
        config::KeySource::File(path) => Box::new(FileSource { path: path.clone() }),
    })
}

#[cfg(test)]
mod tests;
