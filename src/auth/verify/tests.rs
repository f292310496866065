//! Verifier unit tests against an in-memory key source. Integration tests in `tests/` repeat the
//! important cases over real sockets.
use super::checks::unix_seconds;
use super::*;
use crate::auth::jwks::{FetchError, KeySource, Settings};
use crate::tools::mint::{SigningKey, access_claims, id_claims, now};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use serde_json::json;
use std::time::Duration;
use std::time::UNIX_EPOCH;

const ISS: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123";
const CLIENT: &str = "7abc123example";

struct Static(Bytes);
impl KeySource for Static {
    fn fetch(&self, _: u64) -> futures_core::future::BoxFuture<'_, Result<Bytes, FetchError>> {
        let b = self.0.clone();
        Box::pin(async move { Ok(b) })
    }
}

fn config(token_use: &str, cognito: bool) -> config::Config {
    let issuer = if cognito {
        "    cognito:\n      region: eu-west-1\n      user_pool_id: eu-west-1_AbCdEf123\n".to_owned()
    } else {
        format!("    issuer: {ISS}\n    jwks_file: /nonexistent\n")
    };
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:1\nupstream:\n  url: http://127.0.0.1:1\nissuers:\n  - name: main\n{issuer}    client_ids: [{CLIENT}]\n    token_use: {token_use}\nlimits:\n  max_token_bytes: 65536\nroutes:\n  - name: app\n    path: /**\n"
    );
    config::parse(&yaml, "t.yaml", &|_| None).unwrap()
}

async fn verifier_with(issuer: &SigningKey, token_use: &str, cognito: bool) -> Verifier {
    let cfg = config(token_use, cognito);
    let metrics = Arc::new(Metrics::new());
    let settings = Settings::from(&cfg.jwks);
    let keys =
        IssuerKeys::new("main", Box::new(Static(Bytes::from(issuer.jwks().to_string()))), settings, metrics.clone());
    keys.refresh().await.unwrap();
    Verifier::new(vec![IssuerRuntime { config: cfg.issuers[0].clone(), keys }], &cfg, metrics)
}

fn claims() -> Value {
    access_claims(ISS, CLIENT, "user-1", &["Admins"], "openid email")
}

fn with(mut c: Value, key: &str, v: Value) -> Value {
    c[key] = v;
    c
}

fn without(mut c: Value, key: &str) -> Value {
    c.as_object_mut().unwrap().remove(key);
    c
}

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

#[tokio::test]
async fn a_valid_access_token_verifies_and_is_cached() {
    let k = SigningKey::generate("k1").unwrap();
    let v = verifier_with(&k, "access", true).await;
    let t = k.mint(&claims());
    let first = v.verify(&t, UseRule::Issuer).await.unwrap();
    assert_eq!(first.sub, "user-1");
    assert_eq!(first.groups, vec!["Admins"]);
    assert_eq!(first.client_id, CLIENT);
    assert_eq!(v.cache.map.len(), 0, "a token seen once is not cached yet");
    let second = v.verify(&t, UseRule::Issuer).await.unwrap();
    assert!(!Arc::ptr_eq(&first, &second), "the second use verifies again, then is cached");
    let third = v.verify(&t, UseRule::Issuer).await.unwrap();
    assert!(Arc::ptr_eq(&second, &third), "third call is a cache hit");
    assert_eq!(v.metrics.token_cache_hits_total.get(), 1);
    assert_eq!(v.metrics.token_cache_misses_total.get(), 2);
}

#[tokio::test]
async fn claim_rules_table() {
    let k = SigningKey::generate("k1").unwrap();
    let v = verifier_with(&k, "access", true).await;
    let n = now();
    let cases: Vec<(&str, Value, TokenError)> = vec![
        ("CLM-01 expired", with(claims(), "exp", json!(n - 3600)), TokenError::Expired),
        ("CLM-05 no exp", without(claims(), "exp"), TokenError::BadClaim("exp is required")),
        (
            "exp as string",
            with(claims(), "exp", json!((n + 60).to_string())),
            TokenError::BadClaim("time claims must be numbers"),
        ),
        ("nbf in future", with(claims(), "nbf", json!(n + 3600)), TokenError::NotYetValid),
        ("CLM-12 iat in future", with(claims(), "iat", json!(n + 86400)), TokenError::NotYetValid),
        ("CLM-12 lifetime", with(claims(), "exp", json!(n + 315_360_000)), TokenError::BadClaim("lifetime too long")),
        ("CLM-06 trailing slash", with(claims(), "iss", json!(format!("{ISS}/"))), TokenError::BadIss),
        ("CLM-06 upper case", with(claims(), "iss", json!(ISS.to_uppercase())), TokenError::BadIss),
        ("CLM-06 http", with(claims(), "iss", json!(ISS.replace("https", "http"))), TokenError::BadIss),
        ("iss array", with(claims(), "iss", json!([ISS])), TokenError::BadIss),
        ("CLM-09 id use", with(claims(), "token_use", json!("id")), TokenError::BadTokenUse),
        ("CLM-09 refresh", with(claims(), "token_use", json!("refresh")), TokenError::BadTokenUse),
        ("CLM-09 Access", with(claims(), "token_use", json!("Access")), TokenError::BadTokenUse),
        ("CLM-09 array", with(claims(), "token_use", json!(["access"])), TokenError::BadTokenUse),
        ("CLM-09 missing", without(claims(), "token_use"), TokenError::BadTokenUse),
        ("CLM-10 other client", with(claims(), "client_id", json!("client-partner")), TokenError::BadClient),
        ("cognito access without client_id", without(claims(), "client_id"), TokenError::BadClient),
        (
            "CLM-14 sub missing",
            without(claims(), "sub"),
            TokenError::BadClaim("sub must be a non-empty string without spaces"),
        ),
        (
            "CLM-14 sub number",
            with(claims(), "sub", json!(123)),
            TokenError::BadClaim("sub must be a non-empty string without spaces"),
        ),
        (
            "CLM-14 sub object",
            with(claims(), "sub", json!({"id": "admin"})),
            TokenError::BadClaim("sub must be a non-empty string without spaces"),
        ),
        (
            "sub empty",
            with(claims(), "sub", json!("")),
            TokenError::BadClaim("sub must be a non-empty string without spaces"),
        ),
        (
            "sub with space",
            with(claims(), "sub", json!("a b")),
            TokenError::BadClaim("sub must be a non-empty string without spaces"),
        ),
        (
            "sub with nbsp",
            with(claims(), "sub", json!("a\u{a0}b")),
            TokenError::BadClaim("sub must be a non-empty string without spaces"),
        ),
        (
            "CLV-04 sub crlf",
            with(claims(), "sub", json!("u1\r\nX-User-Groups: admin")),
            TokenError::BadClaim("sub must be a non-empty string without spaces"),
        ),
        (
            "CLV-02 groups mixed",
            with(claims(), "cognito:groups", json!(["readers", 1, null, {"n": "admin"}, ["admin"], true])),
            TokenError::BadClaim("cognito:groups must hold non-empty strings"),
        ),
        (
            "groups string",
            with(claims(), "cognito:groups", json!("Admins")),
            TokenError::BadClaim("cognito:groups must be an array"),
        ),
        (
            "groups empty name",
            with(claims(), "cognito:groups", json!([""])),
            TokenError::BadClaim("cognito:groups must hold non-empty strings"),
        ),
        (
            "CLV-10 scope array",
            with(claims(), "scope", json!(["api/admin"])),
            TokenError::BadClaim("scope must be a string"),
        ),
        ("CLV-10 scope null", with(claims(), "scope", Value::Null), TokenError::BadClaim("scope must be a string")),
        ("CLV-10 scope number", with(claims(), "scope", json!(123)), TokenError::BadClaim("scope must be a string")),
    ];
    for (name, c, want) in cases {
        let got = v.verify(&k.mint(&c), UseRule::Issuer).await.map(|_| ());
        assert_eq!(got, Err(want), "{name}");
    }
}

#[tokio::test]
async fn leeway_boundaries() {
    // CLM-02: leeway 30s applies to exp.
    let k = SigningKey::generate("k1").unwrap();
    let v = verifier_with(&k, "access", true).await;
    let n = now();
    assert!(v.verify(&k.mint(&with(claims(), "exp", json!(n - 10))), UseRule::Issuer).await.is_ok());
    assert_eq!(
        v.verify(&k.mint(&with(claims(), "exp", json!(n - 65))), UseRule::Issuer).await.map(|_| ()),
        Err(TokenError::Expired)
    );
    assert!(v.verify(&k.mint(&with(claims(), "nbf", json!(n + 10))), UseRule::Issuer).await.is_ok());
}

#[tokio::test]
async fn id_tokens_use_aud_and_generic_issuers_fall_back_to_aud() {
    let k = SigningKey::generate("k1").unwrap();
    let v = verifier_with(&k, "id", true).await;
    let id = id_claims(ISS, CLIENT, "user-1", &[], "u@example.com");
    assert!(v.verify(&k.mint(&id), UseRule::Issuer).await.is_ok());
    assert!(v.verify(&k.mint(&with(id.clone(), "aud", json!(["x", CLIENT]))), UseRule::Issuer).await.is_ok());
    assert_eq!(
        v.verify(&k.mint(&with(id.clone(), "aud", json!("client-partner"))), UseRule::Issuer).await.map(|_| ()),
        Err(TokenError::BadClient)
    );
    assert_eq!(v.verify(&k.mint(&claims()), UseRule::Issuer).await.map(|_| ()), Err(TokenError::BadTokenUse));

    let generic = verifier_with(&k, "access", false).await;
    let aud_only = with(without(claims(), "client_id"), "aud", json!(CLIENT));
    assert!(generic.verify(&k.mint(&aud_only), UseRule::Issuer).await.is_ok());
    // client_id present decides alone.
    let both = with(with(claims(), "client_id", json!("other")), "aud", json!(CLIENT));
    assert_eq!(generic.verify(&k.mint(&both), UseRule::Issuer).await.map(|_| ()), Err(TokenError::BadClient));
}

#[tokio::test]
async fn header_policy_table() {
    let k = SigningKey::generate("k1").unwrap();
    let v = verifier_with(&k, "access", true).await;
    let c = claims();
    let cases: Vec<(&str, Value, TokenError)> = vec![
        ("ALG-03 RS384", json!({"alg": "RS384", "kid": "k1"}), TokenError::BadAlg),
        ("ALG-03 PS256", json!({"alg": "PS256", "kid": "k1"}), TokenError::BadAlg),
        ("ALG-03 ES256", json!({"alg": "ES256", "kid": "k1"}), TokenError::BadAlg),
        ("ALG-01 none", json!({"alg": "none", "kid": "k1"}), TokenError::BadAlg),
        ("alg missing", json!({"kid": "k1"}), TokenError::BadAlg),
        ("alg lower", json!({"alg": "rs256", "kid": "k1"}), TokenError::BadAlg),
        (
            "ALG-05 jwk",
            json!({"alg": "RS256", "kid": "k1", "jwk": k.jwk()}),
            TokenError::Malformed("forbidden header parameter"),
        ),
        (
            "ALG-05 x5c",
            json!({"alg": "RS256", "kid": "k1", "x5c": ["MII"]}),
            TokenError::Malformed("forbidden header parameter"),
        ),
        (
            "ALG-06 jku",
            json!({"alg": "RS256", "kid": "k1", "jku": "https://attacker.test/jwks.json"}),
            TokenError::Malformed("forbidden header parameter"),
        ),
        (
            "ALG-06 x5u",
            json!({"alg": "RS256", "kid": "k1", "x5u": "http://169.254.169.254/"}),
            TokenError::Malformed("forbidden header parameter"),
        ),
        (
            "FMT-09 crit",
            json!({"alg": "RS256", "kid": "k1", "crit": ["exp-binding"], "exp-binding": 1}),
            TokenError::Malformed("forbidden header parameter"),
        ),
        (
            "FMT-09 crit empty",
            json!({"alg": "RS256", "kid": "k1", "crit": []}),
            TokenError::Malformed("forbidden header parameter"),
        ),
        (
            "FMT-07 cty",
            json!({"alg": "RS256", "kid": "k1", "cty": "JWT"}),
            TokenError::Malformed("forbidden header parameter"),
        ),
        (
            "FMT-08 zip",
            json!({"alg": "RS256", "kid": "k1", "zip": "DEF"}),
            TokenError::Malformed("forbidden header parameter"),
        ),
        ("ALG-08 no kid", json!({"alg": "RS256"}), TokenError::UnknownKid),
        ("ALG-07 empty kid", json!({"alg": "RS256", "kid": ""}), TokenError::UnknownKid),
        ("ALG-07 numeric kid", json!({"alg": "RS256", "kid": 123}), TokenError::Malformed("kid")),
        ("ALG-07 null kid", json!({"alg": "RS256", "kid": null}), TokenError::Malformed("kid")),
        ("ALG-07 object kid", json!({"alg": "RS256", "kid": {}}), TokenError::Malformed("kid")),
        ("ALG-07 huge kid", json!({"alg": "RS256", "kid": "k".repeat(300)}), TokenError::Malformed("kid")),
        ("typ number", json!({"alg": "RS256", "kid": "k1", "typ": 1}), TokenError::Malformed("typ is not a string")),
    ];
    for (name, h, want) in cases {
        let got = v.verify(&k.mint_with_header(&h, &c), UseRule::Issuer).await.map(|_| ());
        assert_eq!(got, Err(want), "{name}");
    }
    // ALG-07: hostile kid strings are only ever map keys.
    for kid in ["../../../../dev/null", "' UNION SELECT 'secret'--", "k1\r\nX-Injected: 1", "k\u{0131}"] {
        let got =
            v.verify(&k.mint_with_header(&json!({"alg": "RS256", "kid": kid}), &c), UseRule::Issuer).await.map(|_| ());
        assert_eq!(got, Err(TokenError::UnknownKid), "{kid:?}");
    }
}

#[tokio::test]
async fn format_table() {
    let k = SigningKey::generate("k1").unwrap();
    let v = verifier_with(&k, "access", true).await;
    let good = k.mint(&claims());
    let (h, rest) = good.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();
    let mut flipped = s.to_owned();
    let last = flipped.pop().unwrap();
    flipped.push(if last == 'A' { 'B' } else { 'A' });
    let cases: Vec<(&str, String, TokenError)> = vec![
        ("FMT-01 two parts", format!("{h}.{p}"), TokenError::Malformed("not three segments")),
        ("FMT-01 four parts", format!("{good}.x"), TokenError::Malformed("more than three segments")),
        ("FMT-01 dot bomb", format!("a{}", ".".repeat(3000)), TokenError::Malformed("more than three segments")),
        ("DOS-04 huge", format!("a{}", ".".repeat(70_000)), TokenError::Malformed("token too long")),
        ("FMT-01 dots", "....".into(), TokenError::Malformed("more than three segments")),
        ("FMT-02 padding", format!("{h}.{p}=.{s}"), TokenError::Malformed("invalid character")),
        (
            "FMT-02 std alphabet",
            format!("{h}.{p}.{}", s.replace('-', "+").replace('_', "/")),
            if s.contains(['-', '_']) { TokenError::Malformed("invalid character") } else { TokenError::BadSignature },
        ),
        ("FMT-02 whitespace", format!("{h}.{p}\n.{s}"), TokenError::Malformed("invalid character")),
        ("FMT-03 header array", format!("{}.{p}.{s}", b64("[]")), TokenError::Malformed("header")),
        ("FMT-03 header null", format!("{}.{p}.{s}", b64("null")), TokenError::Malformed("header")),
        ("FMT-03 header truncated", format!("{}.{p}.{s}", b64("{")), TokenError::Malformed("header")),
        (
            "FMT-03 header not utf8",
            format!("{}.{p}.{s}", URL_SAFE_NO_PAD.encode([0xff, 0xfe])),
            TokenError::Malformed("header"),
        ),
        ("FMT-03 payload array", k.sign_raw(&format!("{h}.{}", b64("[1]"))), TokenError::Malformed("payload")),
        ("ALG-01 empty signature", format!("{h}.{p}."), TokenError::BadAlg),
        ("ALG-09 truncated signature", format!("{h}.{p}.{}", &s[..s.len() - 4]), TokenError::BadSignature),
        ("ALG-09 flipped signature", format!("{h}.{p}.{flipped}"), TokenError::BadSignature),
        (
            "ALG-09 payload swapped",
            format!("{h}.{}.{s}", b64(&with(claims(), "sub", json!("admin")).to_string())),
            TokenError::BadSignature,
        ),
    ];
    for (name, token, want) in cases {
        assert_eq!(v.verify(&token, UseRule::Issuer).await.map(|_| ()), Err(want), "{name}");
    }
}

#[tokio::test]
async fn duplicate_members_are_rejected_at_any_depth() {
    let k = SigningKey::generate("k1").unwrap();
    let v = verifier_with(&k, "access", true).await;
    let h = b64(r#"{"alg":"RS256","kid":"k1"}"#);
    let body = claims().to_string();
    let dup_sub = body.replacen('{', r#"{"sub":"admin","#, 1);
    let t = k.sign_raw(&format!("{h}.{}", b64(&dup_sub)));
    assert_eq!(v.verify(&t, UseRule::Issuer).await.map(|_| ()), Err(TokenError::Malformed("payload")));
    let dup_alg = b64(r#"{"alg":"none","alg":"RS256","kid":"k1"}"#);
    let t = k.sign_raw(&format!("{dup_alg}.{}", b64(&body)));
    assert_eq!(v.verify(&t, UseRule::Issuer).await.map(|_| ()), Err(TokenError::Malformed("header")));
    let nested = body.replacen('{', r#"{"x":{"a":1,"a":2},"#, 1);
    let t = k.sign_raw(&format!("{h}.{}", b64(&nested)));
    assert_eq!(v.verify(&t, UseRule::Issuer).await.map(|_| ()), Err(TokenError::Malformed("payload")));
}

#[tokio::test]
async fn deeply_nested_header_is_rejected_without_overflow() {
    // FMT-04: serde_json's recursion limit stays on.
    let k = SigningKey::generate("k1").unwrap();
    let v = verifier_with(&k, "access", true).await;
    let deep = format!(r#"{{"alg":"RS256","kid":"k1","x":{}1{}}}"#, "[".repeat(1000), "]".repeat(1000));
    let t = k.sign_raw(&format!("{}.{}", b64(&deep), b64(&claims().to_string())));
    assert_eq!(v.verify(&t, UseRule::Issuer).await.map(|_| ()), Err(TokenError::Malformed("header")));
}

#[tokio::test]
async fn hs256_with_the_public_key_as_secret_is_rejected() {
    // ALG-02: never choose the verifier from the token's alg.
    let k = SigningKey::generate("k1").unwrap();
    let v = verifier_with(&k, "access", true).await;
    let input = format!("{}.{}", b64(r#"{"alg":"HS256","kid":"k1"}"#), b64(&claims().to_string()));
    for secret in [k.jwk().to_string(), k.jwks().to_string()] {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
        let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
        let t = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
        assert_eq!(v.verify(&t, UseRule::Issuer).await.map(|_| ()), Err(TokenError::BadAlg));
    }
}

#[tokio::test]
async fn another_key_under_the_same_kid_fails_the_signature() {
    let k = SigningKey::generate("k1").unwrap();
    let forger = SigningKey::generate("k1").unwrap();
    let v = verifier_with(&k, "access", true).await;
    assert_eq!(v.verify(&forger.mint(&claims()), UseRule::Issuer).await.map(|_| ()), Err(TokenError::BadSignature));
}

#[tokio::test]
async fn unencodable_identity_is_recorded_not_fatal() {
    let k = SigningKey::generate("k1").unwrap();
    let v = verifier_with(&k, "access", true).await;
    // CLV-06: 100 groups of 128 chars exceed the 8 KiB identity limit.
    let groups: Vec<String> = (0..100).map(|i| format!("g{i:03}-{}", "x".repeat(120))).collect();
    let t = k.mint(&with(claims(), "cognito:groups", json!(groups)));
    let verified = v.verify(&t, UseRule::Issuer).await.unwrap();
    assert!(verified.identity.is_err());
}

#[tokio::test(start_paused = true)]
async fn cached_entries_expire_with_their_key() {
    let k = SigningKey::generate("k1").unwrap();
    let v = verifier_with(&k, "access", true).await;
    let t = k.mint(&claims());
    assert!(v.verify(&t, UseRule::Issuer).await.is_ok());
    assert!(v.verify(&t, UseRule::Issuer).await.is_ok());
    assert_eq!(v.cache.map.len(), 1, "cached after its second use");
    // The key set becomes stale past max_stale: the cached verification must not keep passing.
    tokio::time::advance(Duration::from_secs(25 * 3600)).await;
    assert_eq!(v.verify(&t, UseRule::Issuer).await.map(|_| ()), Err(TokenError::KeysUnavailable));
}

#[tokio::test]
async fn cache_stays_bounded() {
    // DOS-08: distinct valid tokens never grow the cache past its capacity.
    let k = SigningKey::generate("k1").unwrap();
    let mut v = verifier_with(&k, "access", true).await;
    v.cache.capacity = 16;
    for i in 0..100 {
        let t = k.mint(&with(claims(), "jti", json!(format!("t{i}"))));
        // Twice: the second successful verification admits it.
        assert!(v.verify(&t, UseRule::Issuer).await.is_ok());
        assert!(v.verify(&t, UseRule::Issuer).await.is_ok());
        assert!(v.cache.map.len() <= 16);
        assert!(v.cache.seen.lock().unwrap().len() <= 16);
    }
    assert!(!v.cache.map.is_empty());
    // Failures are never cached.
    let before = v.cache.map.len();
    for i in 0..50 {
        let _ = v.verify(&format!("garbage.{i}.x"), UseRule::Issuer).await;
    }
    assert_eq!(v.cache.map.len(), before);
}

#[test]
fn at_hash_matches_the_openid_connect_example() {
    // OpenID Connect Core 1.0, Appendix A.4: the published access token and its at_hash.
    assert_eq!(super::at_hash(b"jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"), "77QmUPtjPfzWtF2AnpK9RQ");
}

/// SECURITY OPS-09: a wall clock before 1970 (or any unrepresentable reading) never panics the
/// way `jsonwebtoken::get_current_timestamp` would; it is a `Clock` error, which fails closed as
/// 503 keys_unavailable rather than admitting or blaming the token. NTP steps in either direction
/// only move the token-time checks (wall clock); caches, cooldowns and timeouts run on tokio's
/// monotonic clock, pinned by the paused-clock tests in `jwks/tests.rs`.
#[test]
fn clock_before_the_epoch_fails_closed_without_panicking() {
    let before = UNIX_EPOCH - Duration::from_secs(24 * 3600);
    assert_eq!(unix_seconds(before), Err(TokenError::Clock));
    assert_eq!(TokenError::Clock.reason(), Reason::KeysUnavailable);
    let stepped = UNIX_EPOCH + Duration::from_secs(1_000);
    assert_eq!(unix_seconds(stepped), Ok(1_000.0));
}

#[tokio::test]
async fn one_shot_tokens_are_not_cached_and_the_doorkeeper_stays_bounded() {
    // A flood of fresh valid tokens, each used once, leaves no entries behind: only the 8-byte
    // fingerprints, themselves bounded by the capacity.
    let k = SigningKey::generate("k1").unwrap();
    let mut v = verifier_with(&k, "access", true).await;
    v.cache.capacity = 8;
    let reused = k.mint(&claims());
    for _ in 0..3 {
        assert!(v.verify(&reused, UseRule::Issuer).await.is_ok());
    }
    assert_eq!(v.cache.map.len(), 1);
    for i in 0..40 {
        let t = k.mint(&with(claims(), "jti", json!(format!("once{i}"))));
        assert!(v.verify(&t, UseRule::Issuer).await.is_ok());
        assert!(v.cache.seen.lock().unwrap().len() <= 8);
    }
    assert_eq!(v.cache.map.len(), 1, "no one-shot token was admitted");
    let hits = v.metrics.token_cache_hits_total.get();
    assert!(v.verify(&reused, UseRule::Issuer).await.is_ok());
    assert_eq!(v.metrics.token_cache_hits_total.get(), hits + 1);
}

/// SPEC §3: every token fault is a 401 naming its reason; missing keys and a broken clock are
/// Portcullis's own trouble (503 `keys_unavailable`), never blamed on the token.
#[test]
fn token_errors_become_401_except_missing_keys() {
    use crate::http::error::{InvalidToken, Rejection};
    let table = [
        (TokenError::Malformed("x"), Rejection::InvalidToken(InvalidToken::Malformed)),
        (TokenError::BadAlg, Rejection::InvalidToken(InvalidToken::BadAlg)),
        (TokenError::UnknownKid, Rejection::InvalidToken(InvalidToken::UnknownKid)),
        (TokenError::BadSignature, Rejection::InvalidToken(InvalidToken::BadSignature)),
        (TokenError::Expired, Rejection::InvalidToken(InvalidToken::Expired)),
        (TokenError::NotYetValid, Rejection::InvalidToken(InvalidToken::NotYetValid)),
        (TokenError::BadIss, Rejection::InvalidToken(InvalidToken::BadIss)),
        (TokenError::BadTokenUse, Rejection::InvalidToken(InvalidToken::BadTokenUse)),
        (TokenError::BadClient, Rejection::InvalidToken(InvalidToken::BadClient)),
        (TokenError::BadClaim("x"), Rejection::InvalidToken(InvalidToken::BadClaim)),
        (TokenError::KeysUnavailable, Rejection::KeysUnavailable),
        (TokenError::Clock, Rejection::KeysUnavailable),
    ];
    for (e, want) in table {
        assert_eq!(Rejection::from(e), want, "{e:?}");
        assert_eq!(e.reason(), want.reason());
    }
}
