//! The ways real Cognito clients send tokens (issue 8, SPEC §2 "Credentials", "CORS preflight"):
//! raw and case-varied bearer, the `accessToken` header, Amplify's cookies, plain cookies, id+access
//! pairs with `at_hash`, CORS preflights, several user pools and replication issuers. Every case
//! runs through a real Portcullis on real sockets with tokens signed by a real RSA key.

mod support;

use portcullis::auth::verify::at_hash;
use portcullis::tools::mint::{SigningKey, now};
use serde_json::{Value, json};
use support::*;

fn www(resp: &reqwest::Response) -> String {
    resp.headers().get("www-authenticate").map(|v| v.to_str().expect("ascii").to_owned()).unwrap_or_default()
}

async fn error_of(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (status, body["error"].as_str().unwrap_or_default().to_owned())
}

const API: &str = r#"routes:
  - name: api
    path: /api/**
"#;

fn with_credentials(token_use: &str, credentials: &str, extra: &str) -> String {
    config(token_use, &format!("credentials:\n{credentials}\n{extra}{API}"))
}

// ---------------------------------------------------------------------------------------------
// Bearer

/// `Bearer` is matched case-insensitively (RFC 9110 §11.1); a raw JWT without the word counts only
/// with `allow_raw`, as API Gateway's Cognito authorizer does; other schemes are no credential.
#[tokio::test]
async fn bearer_scheme_is_case_insensitive_and_raw_jwts_need_allow_raw() {
    let p = start_proxy(&config("access", API)).await;
    let t = p.mint_access("alice", &[], "openid");
    for value in [format!("Bearer {t}"), format!("bearer {t}"), format!("BEARER  {t}")] {
        let resp = p.client.get(p.url("/api/x")).header("authorization", value).send().await.expect("req");
        assert_eq!(resp.status(), 200);
        assert_eq!(p.echo.last().one("x-user-sub"), Some("alice"));
    }
    for value in [t.clone(), format!("Basic {t}"), "Token abc".to_owned()] {
        let resp = p.client.get(p.url("/api/x")).header("authorization", value).send().await.expect("req");
        assert_eq!(resp.status(), 401);
        assert_eq!(www(&resp), "Bearer realm=\"portcullis\"", "no credential, so no error attribute");
    }

    let raw = with_credentials("access", "  - bearer: {allow_raw: true}", "");
    let p = start_proxy(&raw).await;
    let t = p.mint_access("bob", &[], "openid");
    for value in [t.clone(), format!("Bearer {t}")] {
        let resp = p.client.get(p.url("/api/x")).header("authorization", value).send().await.expect("req");
        assert_eq!(resp.status(), 200);
        assert_eq!(p.echo.last().one("x-user-sub"), Some("bob"));
        assert!(p.echo.last().all("authorization").is_empty());
    }
    // A raw value that is not a valid token is an invalid credential, not anonymity.
    let resp = p.client.get(p.url("/api/x")).header("authorization", "not.a.jwt").send().await.expect("req");
    assert_eq!(resp.status(), 401);
    assert!(www(&resp).contains("invalid_token"));
}

// ---------------------------------------------------------------------------------------------
// Named header

/// The Amplify-era `accessToken` header: a raw JWT in a named header, removed before forwarding
/// unless `forward_token`; several values are ambiguous.
#[tokio::test]
async fn access_token_header_is_a_credential_and_is_removed_before_forwarding() {
    let p = start_proxy(&with_credentials("access", "  - header: accessToken", "")).await;
    let t = p.mint_access("alice", &["Admins"], "openid");
    let resp = p.client.get(p.url("/api/x")).header("accessToken", &t).send().await.expect("req");
    assert_eq!(resp.status(), 200);
    let seen = p.echo.last();
    assert_eq!(seen.one("x-user-sub"), Some("alice"));
    assert_eq!(seen.one("x-user-groups"), Some("Admins"));
    assert!(seen.all("accesstoken").is_empty(), "the credential header must not reach the app: {seen:#?}");

    // Only the configured source counts: a bearer token is not read here.
    assert_eq!(p.get("/api/x", Some(&t)).await.status(), 401);
    // An invalid value is 401 invalid_token; two lines are 400 malformed_token.
    let resp = p.client.get(p.url("/api/x")).header("accessToken", "garbage").send().await.expect("req");
    assert_eq!(resp.status(), 401);
    assert!(www(&resp).contains("invalid_token"));
    let resp = p
        .client
        .get(p.url("/api/x"))
        .header("accessToken", &t)
        .header("accessToken", p.mint_access("alice", &[], "openid"))
        .send()
        .await
        .expect("req");
    assert_eq!(error_of(resp).await, (400, "invalid_request".to_owned()));
    // Both refusals carry reason malformed_token: the garbage value (401) and the two lines (400).
    assert_eq!(p.reason_count("malformed_token"), 2.0);

    let keep = with_credentials("access", "  - header: accessToken", "identity_headers:\n  forward_token: true\n");
    let p = start_proxy(&keep).await;
    let t = p.mint_access("alice", &[], "openid");
    let resp = p.client.get(p.url("/api/x")).header("accessToken", &t).send().await.expect("req");
    assert_eq!(resp.status(), 200);
    assert_eq!(p.echo.last().all("accesstoken"), vec![t.as_str()]);
}

// ---------------------------------------------------------------------------------------------
// id + access pairs

fn pair_config(token_use: &str, verify_at_hash: bool) -> String {
    let rest = format!(
        r#"    verify_at_hash: {verify_at_hash}
credentials:
  - bearer
  - header: accessToken
identity_headers:
  claims:
    X-User-Email: email
routes:
  - name: api
    path: /api/**
    require:
      scopes_any: [orders.read]
  - name: profile
    path: /profile/**
    require:
      token_use: id
"#
    );
    config(token_use, &rest)
}

/// An id token whose `at_hash` binds it to `access`.
fn id_for(p: &Proxy, sub: &str, groups: &[&str], access: &str) -> String {
    let mut claims = p.id_claims(sub, groups, &format!("{sub}@example.com"));
    claims["at_hash"] = json!(at_hash(access.as_bytes()));
    p.mint(&claims)
}

async fn send_pair(p: &Proxy, path: &str, id: &str, access: &str) -> reqwest::Response {
    p.client.get(p.url(path)).bearer_auth(id).header("accessToken", access).send().await.expect("req")
}

/// The Flask-tutorial pattern: id token in `Authorization`, access token in `accessToken`. Both
/// verify, scopes come from the access token, the email header from the id token, and a route
/// demanding an id token is satisfied by the pair.
#[tokio::test]
async fn id_and_access_tokens_make_a_pair() {
    let p = start_proxy(&pair_config("access", true)).await;
    let access = p.mint_access("alice", &["Admins"], "openid orders.read");
    let id = id_for(&p, "alice", &["IdOnlyGroup"], &access);

    for path in ["/api/orders", "/profile/me"] {
        let resp = send_pair(&p, path, &id, &access).await;
        assert_eq!(resp.status(), 200, "{path}");
        let seen = p.echo.last();
        assert_eq!(seen.one("x-user-sub"), Some("alice"));
        assert_eq!(seen.one("x-user-groups"), Some("Admins"), "groups come from the access token");
        assert_eq!(seen.one("x-user-email"), Some("alice@example.com"), "claim headers from the id token");
        assert!(seen.all("authorization").is_empty() && seen.all("accesstoken").is_empty(), "{seen:#?}");
    }
    // Either token alone is judged on its own: the id token is the wrong use for this issuer, the
    // access token alone cannot satisfy the id-only route.
    let resp = p.get("/api/orders", Some(&id)).await;
    assert_eq!(error_of(resp).await, (401, "invalid_token".to_owned()));
    assert_eq!(p.reason_count("bad_token_use"), 1.0);
    assert_eq!(p.get("/api/orders", Some(&access)).await.status(), 200);
    assert_eq!(p.get("/profile/me", Some(&access)).await.status(), 401);
    // The same token in both places is one credential.
    let resp = send_pair(&p, "/api/orders", &access, &access).await;
    assert_eq!(resp.status(), 200);
}

/// Groups fall back to the id token when the access token has no `cognito:groups` claim.
#[tokio::test]
async fn pair_groups_fall_back_to_the_id_token() {
    let p = start_proxy(&pair_config("id", false)).await;
    let mut claims = p.access_claims("alice", &[], "orders.read");
    claims.as_object_mut().expect("object").remove("cognito:groups");
    let access = p.mint(&claims);
    let id = p.mint_id("alice", &["Readers"], "alice@example.com");
    let resp = send_pair(&p, "/api/orders", &id, &access).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(p.echo.last().one("x-user-groups"), Some("Readers"));
}

/// Halves that do not belong together are 401 `bad_claim`; two tokens that are not one id and
/// one access token are ambiguous (400); a broken half fails the whole pair.
#[tokio::test]
async fn mismatched_pairs_are_refused_and_never_forwarded() {
    let p = start_proxy(&pair_config("access", true)).await;
    let access = p.mint_access("alice", &["Admins"], "orders.read");
    let bad_claim = |p: &Proxy| p.reason_count("bad_claim");

    // Different users.
    let mallory_id = id_for(&p, "mallory", &[], &access);
    assert_eq!(error_of(send_pair(&p, "/api/x", &mallory_id, &access).await).await, (401, "invalid_token".into()));
    assert_eq!(bad_claim(&p), 1.0);
    // at_hash of another access token, or none at all, with verify_at_hash on.
    let other = p.mint_access("alice", &[], "orders.read");
    let wrong_hash = id_for(&p, "alice", &[], &other);
    assert_eq!(send_pair(&p, "/api/x", &wrong_hash, &access).await.status(), 401);
    let no_hash = p.mint_id("alice", &[], "alice@example.com");
    assert_eq!(send_pair(&p, "/api/x", &no_hash, &access).await.status(), 401);
    assert_eq!(bad_claim(&p), 3.0);
    // Different sign-ins (Cognito's origin_jti).
    let mut a = p.access_claims("alice", &[], "orders.read");
    a["origin_jti"] = json!("sign-in-1");
    let access1 = p.mint(&a);
    let mut i = p.id_claims("alice", &[], "alice@example.com");
    i["origin_jti"] = json!("sign-in-2");
    i["at_hash"] = json!(at_hash(access1.as_bytes()));
    assert_eq!(send_pair(&p, "/api/x", &p.mint(&i), &access1).await.status(), 401);
    assert_eq!(bad_claim(&p), 4.0);

    // Two access tokens, or two id tokens: ambiguous.
    let resp = send_pair(&p, "/api/x", &other, &access).await;
    assert_eq!(error_of(resp).await, (400, "invalid_request".to_owned()));
    let id2 = id_for(&p, "alice", &[], &access);
    let id3 = id_for(&p, "alice", &["x"], &access);
    assert_eq!(send_pair(&p, "/api/x", &id2, &id3).await.status(), 400);

    // One half expired.
    let mut expired = p.id_claims("alice", &[], "alice@example.com");
    expired["exp"] = json!(now() - 600);
    expired["iat"] = json!(now() - 4200);
    expired["at_hash"] = json!(at_hash(access.as_bytes()));
    assert_eq!(send_pair(&p, "/api/x", &p.mint(&expired), &access).await.status(), 401);
    assert_eq!(p.reason_count("expired"), 1.0);
    assert_eq!(p.echo.count(), 0, "nothing reached the app");

    // Without verify_at_hash, a missing at_hash is fine — but the users must still match.
    let p = start_proxy(&pair_config("access", false)).await;
    let access = p.mint_access("alice", &[], "orders.read");
    assert_eq!(send_pair(&p, "/api/x", &p.mint_id("alice", &[], "a@example.com"), &access).await.status(), 200);
    assert_eq!(send_pair(&p, "/api/x", &p.mint_id("bob", &[], "b@example.com"), &access).await.status(), 401);
}

/// A pair from two different user pools is not a pair.
#[tokio::test]
async fn pair_halves_from_different_pools_are_ambiguous() {
    let pools = Pools::start().await;
    let yaml = format!(
        "{}credentials:\n  - bearer\n  - header: accessToken\nroutes:\n  - name: api\n    path: /api/**\n",
        pools.issuers_yaml("any", "")
    );
    let p = pools.proxy(&yaml).await;
    let access = pools.main.mint(&pools.access("main", "alice"));
    let id =
        pools.partner.mint(&portcullis::tools::mint::id_claims(&pools.iss("partner"), CLIENT_ID, "alice", &[], "a@x"));
    let resp = p.client.get(p.url("/api/x")).bearer_auth(&id).header("accessToken", &access).send().await.expect("req");
    assert_eq!(resp.status(), 400);
}

// ---------------------------------------------------------------------------------------------
// Cookies

fn amplify(user: &str, kind: &str, token: &str) -> String {
    format!("CognitoIdentityServiceProvider.{CLIENT_ID}.{user}.{kind}={token}")
}

/// Amplify's `CookieStorage`: `LastAuthUser` picks the user; the id+access cookies form a pair;
/// only configured client ids count; credential cookies are cut from `Cookie`, the app's others
/// pass.
#[tokio::test]
async fn amplify_cookies_follow_last_auth_user_and_are_cut_from_the_cookie_header() {
    let p = start_proxy(&with_credentials("access", "  - cookie: amplify", "")).await;
    let alice = p.mint_access("alice", &["Admins"], "openid");
    let alice_id = p.mint_id("alice", &["Admins"], "alice@example.com");
    let bob = p.mint_access("bob", &["Readers"], "openid");
    let cookie = [
        format!("CognitoIdentityServiceProvider.{CLIENT_ID}.LastAuthUser=alice"),
        amplify("alice", "accessToken", &alice),
        amplify("alice", "idToken", &alice_id),
        amplify("bob", "accessToken", &bob),
        "theme=dark".to_owned(),
        "csrftoken=abc123".to_owned(),
    ]
    .join("; ");
    let resp = p.client.get(p.url("/api/x")).header("cookie", &cookie).send().await.expect("req");
    assert_eq!(resp.status(), 200);
    let seen = p.echo.last();
    assert_eq!(seen.one("x-user-sub"), Some("alice"));
    let forwarded = seen.all("cookie").join("; ");
    assert!(forwarded.contains("theme=dark") && forwarded.contains("csrftoken=abc123"), "{forwarded}");
    assert!(!forwarded.contains("CognitoIdentityServiceProvider"), "credential cookies must be cut: {forwarded}");
    assert!(!forwarded.contains(&alice) && !forwarded.contains(&bob));

    // One user's cookies without LastAuthUser: that user.
    let cookie = amplify("bob", "accessToken", &bob);
    let resp = p.client.get(p.url("/api/x")).header("cookie", &cookie).send().await.expect("req");
    assert_eq!(resp.status(), 200);
    assert_eq!(p.echo.last().one("x-user-sub"), Some("bob"));

    // Several users and no LastAuthUser: ambiguous.
    let cookie = format!("{}; {}", amplify("alice", "accessToken", &alice), amplify("bob", "accessToken", &bob));
    let resp = p.client.get(p.url("/api/x")).header("cookie", &cookie).send().await.expect("req");
    assert_eq!(error_of(resp).await, (400, "invalid_request".to_owned()));

    // Cookies of an app client that is not configured are not credentials at all.
    let other = format!("CognitoIdentityServiceProvider.otherclient.alice.accessToken={alice}");
    let resp = p.client.get(p.url("/api/x")).header("cookie", &other).send().await.expect("req");
    assert_eq!(resp.status(), 401);
    assert_eq!(p.reason_count("missing_token"), 1.0);

    // A forged token in the cookie is a 401, not anonymity.
    let resp = p
        .client
        .get(p.url("/api/x"))
        .header("cookie", amplify("alice", "accessToken", "eyJhbGciOiJub25lIn0.e30.x"))
        .send()
        .await
        .expect("req");
    assert_eq!(resp.status(), 401);
    assert!(www(&resp).contains("invalid_token"));
}

/// A plain named cookie holding a JWT; two different values under one name are ambiguous.
#[tokio::test]
async fn plain_cookie_source() {
    let p = start_proxy(&with_credentials("access", "  - cookie: session_jwt", "")).await;
    let t = p.mint_access("carol", &[], "openid");
    let resp =
        p.client.get(p.url("/api/x")).header("cookie", format!("a=1; session_jwt={t}; b=2")).send().await.expect("req");
    assert_eq!(resp.status(), 200);
    let seen = p.echo.last();
    assert_eq!(seen.one("x-user-sub"), Some("carol"));
    let forwarded = seen.all("cookie").join("; ");
    assert!(forwarded.contains("a=1") && forwarded.contains("b=2") && !forwarded.contains("session_jwt"));

    let other = p.mint_access("dave", &[], "openid");
    let resp = p
        .client
        .get(p.url("/api/x"))
        .header("cookie", format!("session_jwt={t}; session_jwt={other}"))
        .send()
        .await
        .expect("req");
    assert_eq!(resp.status(), 400);
    // The same value twice is one credential.
    let resp = p
        .client
        .get(p.url("/api/x"))
        .header("cookie", format!("session_jwt={t}"))
        .header("cookie", format!("session_jwt={t}"))
        .send()
        .await
        .expect("req");
    assert_eq!(resp.status(), 200);
}

// ---------------------------------------------------------------------------------------------
// CORS preflight

/// With `cors_preflight: pass`, only a genuine preflight (OPTIONS + Origin +
/// Access-Control-Request-Method) skips authentication, and spoofed identity is still stripped;
/// any other OPTIONS needs a token; a preflight for an unrouted path is still 403.
#[tokio::test]
async fn genuine_preflights_pass_without_a_token_and_nothing_else_does() {
    let p = start_proxy(&config("access", API)).await;
    let preflight = |path: &str| {
        p.client
            .request(reqwest::Method::OPTIONS, p.url(path))
            .header("origin", "https://app.example.com")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization")
            .header("X-User-Sub", "admin")
            .header("X_User_Groups", "Admins")
    };
    let resp = preflight("/api/orders").send().await.expect("req");
    assert_eq!(resp.status(), 200);
    let seen = p.echo.last();
    assert_eq!(seen.path(), "/api/orders");
    assert!(seen.all("x-user-sub").is_empty() && seen.all("x-user-groups").is_empty(), "{seen:#?}");
    assert_eq!(seen.one("origin"), Some("https://app.example.com"));

    let count = p.echo.count();
    // OPTIONS without Access-Control-Request-Method, or without Origin: an ordinary request.
    for (name, value) in [("origin", "https://app.example.com"), ("access-control-request-method", "POST")] {
        let options = p.client.request(reqwest::Method::OPTIONS, p.url("/api/orders"));
        let resp = options.header(name, value).send().await.expect("req");
        assert_eq!(resp.status(), 401, "OPTIONS with only {name}");
    }
    // Preflight-looking GET is a GET.
    let resp = p
        .client
        .get(p.url("/api/orders"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("req");
    assert_eq!(resp.status(), 401);
    // A browser app on another origin can read Portcullis's own refusals (to refresh a token).
    let resp =
        p.client.get(p.url("/api/orders")).header("origin", "https://app.example.com").send().await.expect("req");
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["access-control-allow-origin"], "https://app.example.com");
    assert!(resp.headers().get("access-control-allow-credentials").is_none());
    let resp = preflight("/elsewhere").send().await.expect("req");
    assert_eq!(error_of(resp).await, (403, "forbidden".to_owned()));
    assert_eq!(p.reason_count("no_route"), 1.0);
    assert_eq!(p.echo.count(), count, "none of these reached the app");

    let strict = config("access", &format!("cors_preflight: authenticate\n{API}"));
    let p = start_proxy(&strict).await;
    let resp = p
        .client
        .request(reqwest::Method::OPTIONS, p.url("/api/orders"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("req");
    assert_eq!(resp.status(), 401);
    assert_eq!(p.echo.count(), 0);
}

// ---------------------------------------------------------------------------------------------
// Several user pools

/// Two user pools with their own keys, served from one JWKS server each.
struct Pools {
    main: SigningKey,
    partner: SigningKey,
    main_jwks: JwksServer,
    partner_jwks: JwksServer,
}

impl Pools {
    async fn start() -> Pools {
        let main = SigningKey::generate("main-k").expect("key");
        let partner = SigningKey::generate("partner-k").expect("key");
        let main_jwks = JwksServer::start(main.jwks()).await;
        let partner_jwks = JwksServer::start(partner.jwks()).await;
        Pools { main, partner, main_jwks, partner_jwks }
    }

    fn iss(&self, which: &str) -> String {
        if which == "main" { self.main_jwks.issuer_url() } else { self.partner_jwks.issuer_url() }
    }

    fn access(&self, which: &str, sub: &str) -> Value {
        portcullis::tools::mint::access_claims(&self.iss(which), CLIENT_ID, sub, &[], "openid")
    }

    fn issuers_yaml(&self, token_use: &str, extra_issuers: &str) -> String {
        format!(
            r#"listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
upstream:
  url: "@UPSTREAM@"
issuers:
  - name: main
    issuer: "{}"
    jwks_uri: "{}"
    client_ids: [{CLIENT_ID}]
    token_use: {token_use}
  - name: partner
    issuer: "{}"
    jwks_uri: "{}"
    client_ids: [{CLIENT_ID}]
    token_use: {token_use}
{extra_issuers}"#,
            self.main_jwks.issuer_url(),
            self.main_jwks.jwks_url(),
            self.partner_jwks.issuer_url(),
            self.partner_jwks.jwks_url(),
        )
    }

    async fn proxy(&self, yaml: &str) -> Proxy {
        // The support harness brings its own echo and (unused) default issuer; the pools' issuers
        // are spelled out in `yaml`.
        setup(yaml).start().await
    }
}

/// Each token is checked against the keys of the pool its exact `iss` names, and a route can
/// restrict itself to some pools. A token signed by the partner pool's key but claiming the main
/// pool's `iss` is refused: a valid signature from another pool proves nothing.
#[tokio::test]
async fn several_user_pools_are_selected_by_exact_iss() {
    let pools = Pools::start().await;
    let yaml = format!(
        "{}routes:\n  - name: api\n    path: /api/**\n  - name: partners\n    path: /partners/**\n    require:\n      issuers: [partner]\n",
        pools.issuers_yaml("access", "")
    );
    let p = pools.proxy(&yaml).await;
    let main_token = pools.main.mint(&pools.access("main", "m-user"));
    let partner_token = pools.partner.mint(&pools.access("partner", "p-user"));

    for (token, sub) in [(&main_token, "m-user"), (&partner_token, "p-user")] {
        assert_eq!(p.get("/api/x", Some(token)).await.status(), 200);
        assert_eq!(p.echo.last().one("x-user-sub"), Some(sub));
    }
    assert_eq!(p.get("/partners/x", Some(&partner_token)).await.status(), 200);
    // A valid token from a pool the route does not admit: 403, not 401 (SPEC §3).
    let resp = p.get("/partners/x", Some(&main_token)).await;
    assert_eq!(error_of(resp).await, (403, "forbidden".to_owned()));
    assert_eq!(p.reason_count("bad_iss"), 1.0);

    // Partner's key, main's iss (and main's kid): the main pool's keys do not verify it.
    let forged = pools.partner.mint_with_header(&json!({"alg": "RS256", "kid": "main-k"}), &pools.access("main", "x"));
    let resp = p.get("/api/x", Some(&forged)).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(p.reason_count("bad_signature"), 1.0);
    let foreign_kid = pools.partner.mint(&pools.access("main", "x"));
    assert_eq!(p.get("/api/x", Some(&foreign_kid)).await.status(), 401);
    // A pool that is not configured at all.
    let stranger = SigningKey::generate("s").expect("key");
    let t = stranger.mint(&portcullis::tools::mint::access_claims(
        "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Stranger",
        CLIENT_ID,
        "x",
        &[],
        "openid",
    ));
    assert_eq!(p.get("/api/x", Some(&t)).await.status(), 401);
    assert_eq!(p.reason_count("bad_iss"), 2.0);
    assert!(p.metrics().contains("issuer=\"partner\""), "per-issuer JWKS metrics");
}

/// SPEC §3: `require.issuers` not met is a plain 403 `bad_iss` (the token is valid, the route
/// does not admit its pool) — not a 401, which sends single-page apps into a refresh-and-retry
/// loop that cannot succeed. The proxy, `explain` and `portcullis test` give the same answer for
/// the same token, because they share one decision function.
#[tokio::test]
async fn unmet_issuer_restriction_is_a_plain_403_in_the_proxy_explain_and_test() {
    use portcullis::tools::explain::{Credential, Explainer, Request};

    let pools = Pools::start().await;
    let yaml = format!(
        "{}routes:\n  - name: partners\n    path: /partners/**\n    require:\n      issuers: [partner]\n",
        pools.issuers_yaml("access", "")
    );
    let p = pools.proxy(&yaml).await;
    let main_token = pools.main.mint(&pools.access("main", "m-user"));
    let partner_token = pools.partner.mint(&pools.access("partner", "p-user"));

    // The proxy, on a real socket.
    let resp = p.get("/partners/x", Some(&main_token)).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(www(&resp), "", "plain 403: no insufficient_scope challenge");
    assert_eq!(error_of(resp).await, (403, "forbidden".to_owned()));
    assert_eq!(p.metric("portcullis_requests_total", &[("reason", "bad_iss"), ("decision", "deny")]), 1.0);
    assert_eq!(p.echo.count(), 0);
    assert_eq!(p.get("/partners/x", Some(&partner_token)).await.status(), 200);

    // `explain`, with the same config and the same (real, verified) token.
    let file_yaml = yaml.replace("@UPSTREAM@", "http://127.0.0.1:1");
    let config = portcullis::config::parse(&file_yaml, "policy.yaml", &|_| None).expect("config");
    let explainer = Explainer::for_tokens(config).await.expect("explainer");
    let ex = explainer
        .explain(&Request::new("GET", "/partners/x"), &Credential::Token(main_token.clone()))
        .await
        .expect("explained");
    assert!(ex.credential.verified, "{ex:?}");
    assert_eq!((ex.status, ex.decision, ex.reason), (403, "deny", "bad_iss"));
    assert!(ex.response_headers.iter().all(|(n, _)| n != "www-authenticate"), "{:?}", ex.response_headers);
    assert!(ex.checks.iter().any(|c| c.requirement == "issuers" && !c.pass), "{:?}", ex.checks);

    // `portcullis test`, the real binary, with the token itself and with claims of the main pool.
    let dir = temp_dir("issuers-403");
    std::fs::write(dir.join("policy.yaml"), &file_yaml).unwrap();
    let cases = format!(
        r#"cases:
  - name: a main-pool token on the partner route
    request: {{path: /partners/x}}
    token: "{main_token}"
    expect: {{status: 403, reason: bad_iss}}
  - name: main-pool claims on the partner route
    request: {{path: /partners/x}}
    issuer: main
    claims: {{sub: m-user, scope: openid}}
    expect: {{status: 403, reason: bad_iss}}
  - name: a partner token passes
    request: {{path: /partners/x}}
    token: "{partner_token}"
    expect: {{status: 200}}
"#
    );
    std::fs::write(dir.join("cases.yaml"), cases).unwrap();
    // Awaited, not blocked on: the JWKS servers it fetches from run on this test's runtime.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["test", "--config"])
        .arg(dir.join("policy.yaml"))
        .arg(dir.join("cases.yaml"))
        .output()
        .await
        .expect("portcullis test runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("3 passed, 0 failed"), "{text}");
    assert_eq!(text.matches("403 deny (bad_iss)").count(), 2, "{text}");
}

/// Cognito multi-region replication signs tokens with
/// `iss: https://issuer-cognito-idp.<region>.amazonaws.com/<pool>`; such a token is accepted only
/// when that exact issuer is configured — never by similarity to the primary.
#[tokio::test]
async fn replication_issuers_are_accepted_only_when_configured() {
    let primary = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Repl";
    let replica = "https://issuer-cognito-idp.eu-west-1.amazonaws.com/us-east-1_Repl";
    let base = |extra: &str| {
        format!(
            r#"listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
upstream:
  url: "@UPSTREAM@"
issuers:
  - name: primary
    issuer: "{primary}"
    jwks_uri: "@JWKS@"
    client_ids: [{CLIENT_ID}]
    token_use: access
{extra}{API}"#
        )
    };
    let p = start_proxy(&base("")).await;
    let claims = |iss: &str| portcullis::tools::mint::access_claims(iss, CLIENT_ID, "alice", &[], "openid");
    assert_eq!(p.get("/api/x", Some(&p.mint(&claims(primary)))).await.status(), 200);
    let resp = p.get("/api/x", Some(&p.mint(&claims(replica)))).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(p.reason_count("bad_iss"), 1.0);

    let extra = format!(
        "  - name: replica\n    issuer: \"{replica}\"\n    jwks_uri: \"@JWKS@\"\n    client_ids: [{CLIENT_ID}]\n    token_use: access\n"
    );
    let p = start_proxy(&base(&extra)).await;
    assert_eq!(p.get("/api/x", Some(&p.mint(&claims(replica)))).await.status(), 200);
    assert_eq!(p.get("/api/x", Some(&p.mint(&claims(primary)))).await.status(), 200);
    // Near misses never match: case, trailing slash, other region.
    for iss in [
        "https://issuer-cognito-idp.eu-west-1.amazonaws.com/us-east-1_Repl/",
        "https://Issuer-cognito-idp.eu-west-1.amazonaws.com/us-east-1_Repl",
        "https://issuer-cognito-idp.eu-west-2.amazonaws.com/us-east-1_Repl",
    ] {
        assert_eq!(p.get("/api/x", Some(&p.mint(&claims(iss)))).await.status(), 401, "{iss}");
    }
}

// ---------------------------------------------------------------------------------------------
// Group-derived scopes

/// The pre-token-generation Lambda pattern: `<Group>-<clientId>` scopes, matched with
/// `${client_id}` from the verified token, next to the equivalent `groups_any` rule.
#[tokio::test]
async fn group_derived_scopes_and_the_equivalent_group_rule_agree() {
    let rest = r#"routes:
  - name: by-scope
    path: /by-scope/**
    require:
      scopes_any: ["Admins-${client_id}"]
  - name: by-group
    path: /by-group/**
    require:
      groups_any: [Admins]
"#;
    let p = start_proxy(&config("access", rest)).await;
    let admin = p.mint_access("alice", &["Admins"], &format!("openid Admins-{CLIENT_ID}"));
    let reader = p.mint_access("bob", &["Readers"], &format!("openid Readers-{CLIENT_ID}"));
    for path in ["/by-scope/x", "/by-group/x"] {
        assert_eq!(p.get(path, Some(&admin)).await.status(), 200, "{path}");
        assert_eq!(p.get(path, Some(&reader)).await.status(), 403, "{path}");
    }
    let resp = p.get("/by-scope/x", Some(&reader)).await;
    assert!(www(&resp).contains(&format!("scope=\"Admins-{CLIENT_ID}\"")), "{}", www(&resp));
}
