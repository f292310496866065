use super::*;
use crate::telemetry::metrics::Metrics;
use crate::tools::mint::SigningKey;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use serde_json::json;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A key source whose answer the test controls, counting fetches.
struct Scripted {
    answer: Mutex<Result<Bytes, FetchError>>,
    hits: Arc<AtomicUsize>,
    delay: Duration,
}

impl KeySource for Scripted {
    fn fetch(&self, _: u64) -> futures_core::future::BoxFuture<'_, Result<Bytes, FetchError>> {
        Box::pin(async move {
            self.hits.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            self.answer.lock().unwrap().clone()
        })
    }
}

fn settings() -> Settings {
    Settings {
        refresh_interval: Duration::from_secs(3600),
        kid_miss_cooldown: Duration::from_secs(10),
        max_stale: Duration::from_secs(24 * 3600),
        max_bytes: 262_144,
        max_keys: 100,
    }
}

fn cache(answer: Result<Bytes, FetchError>) -> (Arc<IssuerKeys>, Arc<AtomicUsize>, Arc<Scripted>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let src = Arc::new(Scripted { answer: Mutex::new(answer), hits: hits.clone(), delay: Duration::from_millis(50) });
    struct Shared(Arc<Scripted>);
    impl KeySource for Shared {
        fn fetch(&self, max: u64) -> futures_core::future::BoxFuture<'_, Result<Bytes, FetchError>> {
            self.0.fetch(max)
        }
    }
    let keys = IssuerKeys::new("main", Box::new(Shared(src.clone())), settings(), Arc::new(Metrics::new()));
    (keys, hits, src)
}

fn doc(keys: &[serde_json::Value]) -> Bytes {
    Bytes::from(json!({ "keys": keys }).to_string())
}

#[test]
fn parse_filters_keys_by_metadata_and_strength() {
    let k1 = SigningKey::generate("k1").unwrap();
    let weak = SigningKey::generate_with_size("weak", aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let mut enc = k1.jwk();
    enc["kid"] = json!("enc");
    enc["use"] = json!("enc");
    let mut rs512 = k1.jwk();
    rs512["kid"] = json!("rs512");
    rs512["alg"] = json!("RS512");
    let ec = json!({"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"});
    // A 1024-bit modulus (128 bytes) is ignored.
    let mut small = weak.jwk();
    small["kid"] = json!("small");
    small["n"] = json!(URL_SAFE_NO_PAD.encode([0xC3u8; 128]));
    let set = parse(&doc(&[k1.jwk(), enc, rs512, ec, small]), 100).unwrap();
    assert_eq!(set.kids().collect::<Vec<_>>(), vec!["k1"]);
}

#[test]
fn parse_failures_are_classified() {
    let k1 = SigningKey::generate("k1").unwrap();
    let cases: Vec<(&[u8], &str)> = vec![
        (b"<html>captive portal</html>", "parse"),
        (b"{}", "parse"),
        (br#"{"keys":"x"}"#, "parse"),
        (b"[]", "parse"),
        (b"\xef\xbb\xbf{\"keys\":[]}", "parse"),
        (br#"{"keys":[{"kty":"RSA","kid":"a","e":"AQAB"}]}"#, "parse"),
        (br#"{"keys":[{"kty":"RSA","kid":"a","n":"***","e":"AQAB"}]}"#, "parse"),
        (br#"{"keys":[]}"#, "empty"),
    ];
    for (body, label) in cases {
        assert_eq!(parse(body, 100).unwrap_err().result_label(), label, "{}", String::from_utf8_lossy(body));
    }
    let dup = doc(&[k1.jwk(), k1.jwk()]);
    assert_eq!(parse(&dup, 100).unwrap_err().result_label(), "parse");
    let many: Vec<_> = (0..3)
        .map(|i| {
            let mut j = k1.jwk();
            j["kid"] = json!(format!("k{i}"));
            j
        })
        .collect();
    assert_eq!(parse(&doc(&many), 2).unwrap_err().result_label(), "too_large");
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_share_one_fetch_and_cooldown_suppresses_more() {
    // DOS-05
    let k1 = SigningKey::generate("k1").unwrap();
    let (keys, hits, _) = cache(Ok(doc(&[k1.jwk()])));
    keys.refresh().await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    let lookups: Vec<_> = (0..50)
        .map(|i| {
            let keys = keys.clone();
            tokio::spawn(async move { keys.lookup(&format!("random-{i}")).await })
        })
        .collect();
    for l in lookups {
        assert!(matches!(l.await.unwrap(), Lookup::Unknown));
    }
    assert_eq!(hits.load(Ordering::SeqCst), 2, "one shared refetch for the whole flood");
    assert!(matches!(keys.lookup("another").await, Lookup::Unknown));
    assert_eq!(hits.load(Ordering::SeqCst), 2, "still inside the cooldown window");
    tokio::time::advance(Duration::from_secs(11)).await;
    assert!(matches!(keys.lookup("another").await, Lookup::Unknown));
    assert_eq!(hits.load(Ordering::SeqCst), 3, "one more after the cooldown");
    assert!(matches!(keys.lookup("k1").await, Lookup::Found(_)));
    assert_eq!(hits.load(Ordering::SeqCst), 3, "known kids never fetch");
}

#[tokio::test(start_paused = true)]
async fn rotation_is_found_with_one_refetch() {
    // JWKS-08a
    let k1 = SigningKey::generate("k1").unwrap();
    let k2 = SigningKey::generate("k2").unwrap();
    let (keys, hits, src) = cache(Ok(doc(&[k1.jwk()])));
    keys.refresh().await.unwrap();
    *src.answer.lock().unwrap() = Ok(doc(&[k1.jwk(), k2.jwk()]));
    assert!(matches!(keys.lookup("k2").await, Lookup::Found(_)));
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn failed_fetches_keep_the_last_good_set_until_max_stale() {
    // JWKS-02, JWKS-04, JWKS-05
    let k1 = SigningKey::generate("k1").unwrap();
    let (keys, _, src) = cache(Ok(doc(&[k1.jwk()])));
    keys.refresh().await.unwrap();
    for failure in [
        Err(FetchError::HttpStatus(503)),
        Err(FetchError::Connect("refused".into())),
        Err(FetchError::Timeout),
        Ok(Bytes::from_static(b"<html>")),
        Ok(doc(&[])),
    ] {
        *src.answer.lock().unwrap() = failure;
        assert!(keys.refresh().await.is_err());
        assert!(matches!(keys.lookup("k1").await, Lookup::Found(_)));
    }
    tokio::time::advance(Duration::from_secs(24 * 3600 + 1)).await;
    assert!(matches!(keys.lookup("k1").await, Lookup::Unavailable), "fail closed past max_stale");
    let m = keys.metrics.render();
    assert!(m.contains(r#"portcullis_jwks_fetch_total{issuer="main",result="http_error"} 1"#), "{m}");
    assert!(m.contains(r#"portcullis_jwks_fetch_total{issuer="main",result="parse"} 1"#));
    assert!(m.contains(r#"portcullis_jwks_fetch_total{issuer="main",result="empty"} 1"#));
}

#[tokio::test(start_paused = true)]
async fn never_loaded_means_unavailable_and_removed_keys_stop_verifying() {
    // JWKS-01, JWKS-08b
    let k1 = SigningKey::generate("k1").unwrap();
    let k2 = SigningKey::generate("k2").unwrap();
    let (keys, _, src) = cache(Err(FetchError::Connect("down".into())));
    assert!(keys.refresh().await.is_err());
    assert!(matches!(keys.lookup("k1").await, Lookup::Unavailable));
    *src.answer.lock().unwrap() = Ok(doc(&[k1.jwk()]));
    keys.refresh().await.unwrap();
    let Lookup::Found(old) = keys.lookup("k1").await else { panic!("k1 loaded") };
    assert!(keys.still_has(&old));
    *src.answer.lock().unwrap() = Ok(doc(&[k2.jwk()]));
    keys.refresh().await.unwrap();
    assert!(!keys.still_has(&old));
}

#[tokio::test(start_paused = true)]
async fn refresher_retries_until_keys_load() {
    let k1 = SigningKey::generate("k1").unwrap();
    let (keys, hits, src) = cache(Err(FetchError::Connect("down".into())));
    let task = keys.spawn_refresher();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!keys.is_usable());
    assert!(hits.load(Ordering::SeqCst) >= 2, "backoff retries");
    *src.answer.lock().unwrap() = Ok(doc(&[k1.jwk()]));
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert!(keys.is_usable());
    task.abort();
}
