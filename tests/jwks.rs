//! The signing-key cache seen from outside: rotation, the unknown-kid refetch limit, staying up
//! on the last good keys while the JWKS endpoint fails, readiness before the first load, key
//! withdrawal, and keys that must never be trusted.

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis::tools::mint::SigningKey;
use serde_json::{Value, json};
use support::*;

/// A config whose refresher runs every 200 ms.
fn fast_refresh() -> String {
    config("access", &format!("jwks:\n  refresh_interval: 200ms\n{PUBLIC_AND_API}"))
}

fn fetches(p: &Proxy, result: &str) -> f64 {
    p.metric("portcullis_jwks_fetch_total", &[("issuer", "main"), ("result", result)])
}

/// A token signed by `key` but naming `kid` in its header.
fn mint_with_kid(p: &Proxy, key: &SigningKey, kid: &str) -> String {
    key.mint_with_header(&json!({"alg": "RS256", "kid": kid, "typ": "JWT"}), &p.access_claims("alice", &[], "openid"))
}

/// SECURITY JWKS-08 (a), DOS-05: a new key is picked up with exactly one fetch on first use,
/// and a flood of unknown kids inside the cooldown causes at most one more.
#[tokio::test]
async fn rotated_in_key_costs_one_fetch_and_unknown_kid_flood_at_most_one_more() {
    let p = start_proxy(&config("access", PUBLIC_AND_API)).await;
    assert_eq!(p.get("/api/x", Some(&p.mint_access("alice", &[], "openid"))).await.status(), 200);
    let k2 = SigningKey::generate("k2").expect("key");
    p.jwks.set_keys(json!({"keys": [p.issuer.jwk(), k2.jwk()]}));

    let before = p.jwks.hits();
    let resp = p.get("/api/x", Some(&k2.mint(&p.access_claims("bob", &[], "openid")))).await;
    assert_eq!(resp.status(), 200, "first k2 token");
    assert_eq!(p.jwks.hits(), before + 1, "exactly one refetch for the new kid");
    assert_eq!(p.get("/api/x", Some(&k2.mint(&p.access_claims("bob", &[], "openid")))).await.status(), 200);
    assert_eq!(p.jwks.hits(), before + 1, "k2 is cached now");

    // 50 concurrent random kids inside the cooldown, plus known-kid traffic alongside.
    let before = p.jwks.hits();
    let unknown: Vec<String> =
        (0..50).map(|_| mint_with_kid(&p, &p.issuer, &format!("kid-{:016x}", rand::random::<u64>()))).collect();
    let known: Vec<String> = (0..5).map(|_| p.mint_access("carol", &[], "openid")).collect();
    let (bad, good) = tokio::join!(
        futures_join_all(unknown.iter().map(|t| p.get("/api/x", Some(t)))),
        futures_join_all(known.iter().map(|t| p.get("/api/x", Some(t)))),
    );
    assert!(bad.iter().all(|r| r.status() == 401), "unknown kids must be 401");
    assert!(good.iter().all(|r| r.status() == 200), "known kids are unaffected");
    assert!(p.jwks.hits() <= before + 1, "{} fetches for 50 unknown kids", p.jwks.hits() - before);
    assert_eq!(p.reason_count("unknown_kid"), 50.0);
    assert!(p.metric("portcullis_jwks_refetch_suppressed_total", &[("issuer", "main")]) >= 1.0);
}

/// SECURITY DOS-05: on a fresh cache, a concurrent flood of unknown kids shares one fetch.
#[tokio::test]
async fn concurrent_unknown_kids_share_one_refetch() {
    let p = start_proxy(&config("access", PUBLIC_AND_API)).await;
    let before = p.jwks.hits();
    let tokens: Vec<String> =
        (0..50).map(|i| mint_with_kid(&p, &p.issuer, &format!("random-{i}-{:x}", rand::random::<u64>()))).collect();
    let responses = futures_join_all(tokens.iter().map(|t| p.get("/api/x", Some(t)))).await;
    assert!(responses.iter().all(|r| r.status() == 401));
    assert!(p.jwks.hits() <= before + 1, "{} fetches", p.jwks.hits() - before);
    assert_eq!(p.echo.count(), 0);
}

/// SECURITY JWKS-02, JWKS-04, JWKS-05: once keys are loaded, a failing endpoint (down, hanging,
/// non-200, oversized, garbage) never takes valid tokens down, and each failure is metered by kind.
#[tokio::test]
async fn valid_tokens_keep_working_while_the_jwks_endpoint_fails() {
    let yaml = config("access", &format!("jwks:\n  refresh_interval: 200ms\n  fetch_timeout: 500ms\n{PUBLIC_AND_API}"));
    let p = start_proxy(&yaml).await;
    let modes: Vec<(Mode, &str)> = vec![
        (Mode::Down, "connect"),
        (Mode::Hang, "timeout"),
        (Mode::Garbage(vec![b' '; 300_000]), "too_large"),
        (Mode::Status(500), "http_error"),
        (Mode::Status(429), "http_error"),
        (Mode::Status(302), "http_error"),
        (Mode::Garbage(b"<html>captive portal</html>".to_vec()), "parse"),
        (Mode::Garbage(b"{\"keys\":\"x\"}".to_vec()), "parse"),
        (Mode::Garbage(b"[]".to_vec()), "parse"),
        (Mode::Garbage(b"{\"keys\":[]}".to_vec()), "empty"),
    ];
    for (mode, result) in modes {
        let before = fetches(&p, result);
        p.jwks.set_mode(mode.clone());
        eventually(&format!("jwks_fetch_total{{result={result}}} to move in mode {mode:?}"), || async {
            fetches(&p, result) > before
        })
        .await;
        // A fresh token (never cached) still verifies against the last good keys.
        let resp = p.get("/api/x", Some(&p.mint_access("alice", &[], "openid"))).await;
        assert_eq!(resp.status(), 200, "mode {mode:?}");
        assert_eq!(p.readyz().await, 200, "readiness must not flap in mode {mode:?}");
    }
    let ok = fetches(&p, "ok");
    p.jwks.set_mode(Mode::Ok);
    eventually("a successful fetch after recovery", || async { fetches(&p, "ok") > ok }).await;
    assert!(p.metric("portcullis_jwks_last_success_timestamp_seconds", &[("issuer", "main")]) > 0.0);
}

/// SECURITY JWKS-02: past `max_stale` the last good keys are no longer trusted: fail closed.
#[tokio::test]
async fn keys_stale_past_max_stale_fail_closed_with_503() {
    let yaml = config("access", &format!("jwks:\n  refresh_interval: 200ms\n  max_stale: 1s\n{PUBLIC_AND_API}"));
    let p = start_proxy(&yaml).await;
    assert_eq!(p.get("/api/x", Some(&p.mint_access("alice", &[], "openid"))).await.status(), 200);
    p.jwks.set_mode(Mode::Status(503));
    eventually("readiness to drop once the keys are older than max_stale", || async { p.readyz().await == 503 }).await;
    let resp = p.get("/api/x", Some(&p.mint_access("alice", &[], "openid"))).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(p.echo.count(), 1);
    p.jwks.set_mode(Mode::Ok);
    p.wait_ready().await;
    assert_eq!(p.get("/api/x", Some(&p.mint_access("alice", &[], "openid"))).await.status(), 200);
}

/// SECURITY JWKS-01: never loaded → not ready, protected routes 503 + Retry-After (nothing
/// forwarded), public routes and liveness fine; recovery makes it ready.
#[tokio::test]
async fn jwks_down_at_start_means_not_ready_and_503_until_it_recovers() {
    let p = setup(&fast_refresh()).jwks_mode(Mode::Down).start().await;
    p.jwks.wait_for_hits(2).await;
    assert_eq!(p.readyz().await, 503);
    assert!(!p.shared.is_ready());
    assert_eq!(p.admin_get("/healthz").await.status(), 200);

    let token = p.mint_access("alice", &[], "openid");
    let resp = p.get("/api/x", Some(&token)).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"), "{:?}", resp.headers());
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "temporarily_unavailable");
    assert_eq!(p.reason_count("keys_unavailable"), 1.0);
    assert_eq!(p.echo.count(), 0, "nothing may be forwarded without keys");

    // Missing credentials are still a 401: no keys are needed to say so.
    assert_eq!(p.get("/api/x", None).await.status(), 401);
    assert_eq!(p.get("/public/x", None).await.status(), 200);
    assert_eq!(p.echo.count(), 1);

    p.jwks.set_mode(Mode::Ok);
    p.wait_ready().await;
    assert_eq!(p.get("/api/x", Some(&token)).await.status(), 200);
}

/// SECURITY JWKS-08 (b): a key withdrawn from the JWKS stops verifying after the next periodic
/// refresh, including tokens that were already in the verified-token cache.
#[tokio::test]
async fn withdrawn_key_stops_verifying_cached_tokens_after_refresh() {
    let p = start_proxy(&fast_refresh()).await;
    let k2 = SigningKey::generate("k2").expect("key");
    p.jwks.set_keys(json!({"keys": [p.issuer.jwk(), k2.jwk()]}));
    let cached = p.mint_access("alice", &[], "openid");
    assert_eq!(p.get("/api/x", Some(&cached)).await.status(), 200);
    // Reuse it until a use is served from the verified-token cache. (Not necessarily the second
    // use: every periodic refresh swaps the key objects, which also drops cached verifications.)
    let hits = p.metric("portcullis_token_cache_hits_total", &[]);
    eventually("a verified-token cache hit for the reused token", || async {
        assert_eq!(p.get("/api/x", Some(&cached)).await.status(), 200);
        p.metric("portcullis_token_cache_hits_total", &[]) > hits
    })
    .await;

    p.jwks.set_keys(json!({"keys": [k2.jwk()]}));
    let seen = p.jwks.hits();
    p.jwks.wait_for_hits(seen + 2).await; // at least one fetch that started after the change

    let resp = p.get("/api/x", Some(&cached)).await;
    assert_eq!(resp.status(), 401, "a cached token of a withdrawn key still passed");
    assert!(resp.headers()["www-authenticate"].to_str().expect("ascii").contains("invalid_token"));
    assert_eq!(p.get("/api/x", Some(&p.mint_access("alice", &[], "openid"))).await.status(), 401);
    assert_eq!(p.get("/api/x", Some(&k2.mint(&p.access_claims("bob", &[], "openid")))).await.status(), 200);
}

/// The public JWK of `issuer` with its modulus cut to `bytes` bytes (a weak key; never used to
/// sign, only to be refused).
fn weak_jwk(issuer: &SigningKey, kid: &str, bytes: usize) -> Value {
    let mut jwk = issuer.jwk();
    let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().expect("n")).expect("b64");
    jwk["n"] = json!(URL_SAFE_NO_PAD.encode(&n[..bytes]));
    jwk["kid"] = json!(kid);
    jwk
}

/// SPEC §2: RSA keys under 2048 bits are ignored; a set with nothing usable never makes the
/// proxy ready.
#[tokio::test]
async fn jwks_with_only_a_1024_bit_key_is_ignored() {
    let issuer = SigningKey::generate("k1").expect("key");
    let keys = json!({"keys": [weak_jwk(&issuer, "k1", 128), weak_jwk(&issuer, "k1b", 255)]});
    let p = setup(&fast_refresh()).jwks_keys(keys).start().await;
    p.jwks.wait_for_hits(2).await;
    eventually("an `empty` fetch result", || async { fetches(&p, "empty") >= 1.0 }).await;
    assert_eq!(p.readyz().await, 503);
    assert_eq!(fetches(&p, "ok"), 0.0);
    let resp = p.get("/api/x", Some(&p.mint_access("alice", &[], "openid"))).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(p.echo.count(), 0);
}

/// SPEC §2: keys marked for another use or algorithm, or too short, are skipped; the usable
/// ones keep working.
#[tokio::test]
async fn jwks_keys_with_wrong_use_alg_or_size_are_skipped() {
    let good = SigningKey::generate("k1").expect("key");
    let enc = SigningKey::generate("k-enc").expect("key");
    let rs512 = SigningKey::generate("k-rs512").expect("key");
    let mut enc_jwk = enc.jwk();
    enc_jwk["use"] = json!("enc");
    let mut rs512_jwk = rs512.jwk();
    rs512_jwk["alg"] = json!("RS512");
    let weak = weak_jwk(&rs512, "k-weak", 128);
    let keys = json!({"keys": [enc_jwk, good.jwk(), rs512_jwk, weak]});
    let p = setup(&config("access", PUBLIC_AND_API)).jwks_keys(keys).start().await;
    p.wait_ready().await;
    assert_eq!(p.metric("portcullis_jwks_keys", &[("issuer", "main")]), 1.0);
    // The harness issuer is not `good`: sign with the keys from the set directly.
    assert_eq!(p.get("/api/x", Some(&good.mint(&p.access_claims("a", &[], "openid")))).await.status(), 200);
    for (key, kid) in [(&enc, "k-enc"), (&rs512, "k-rs512"), (&rs512, "k-weak")] {
        let resp = p.get("/api/x", Some(&mint_with_kid(&p, key, kid))).await;
        assert_eq!(resp.status(), 401, "{kid}");
    }
    assert_eq!(p.echo.count(), 1);
}

/// `join_all` without the futures crate: poll every future on this task.
async fn futures_join_all<F: std::future::Future>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futs {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    out.into_iter().map(|o| o.expect("every future completed")).collect()
}
