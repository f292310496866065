use super::*;
use serde_json::json;

const CONFIG: &str = r#"listen: 127.0.0.1:8080
upstream:
  url: http://127.0.0.1:8000
issuers:
  - name: main
    issuer: https://idp.example/pool
    jwks_uri: https://idp.example/pool/jwks.json
    client_ids: [7abc]
    token_use: access
identity_headers:
  claims:
    X-User-Username: username
routes:
  - name: health
    path: /health
    auth: none
  - name: gate-control
    path: /gates/control
    methods: [POST]
    require:
      scopes_any: ["Admins-${client_id}"]
  - name: admin
    path: /admin/**
    require:
      groups_any: [Admins]
  - name: reports-shadow
    path: /reports/**
    mode: audit
    require:
      groups_any: [Analysts]
  - name: app
    path: /**
    require:
      scopes_all: [openid, email]
"#;

async fn explainer() -> Explainer {
    let config = crate::config::parse(CONFIG, "t.yaml", &|_| None).unwrap();
    Explainer::for_claims(config).await.unwrap()
}

fn claims(v: Value) -> Credential {
    Credential::Claims { claims: v.as_object().unwrap().clone(), issuer: None }
}

async fn run(e: &Explainer, method: &str, target: &str, credential: &Credential) -> Explanation {
    e.explain(&Request::new(method, target), credential).await.unwrap()
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn allow_shows_route_checks_and_upstream_headers() {
    let e = explainer().await;
    let who = claims(json!({"sub": "u-1", "cognito:groups": ["Admins", "a,b"], "scope": "openid", "username": "ann"}));
    let ex = run(&e, "GET", "/admin/./users//list?x=1", &who).await;
    assert_eq!(ex.normalised_path.as_deref(), Some("/admin/users/list"));
    assert_eq!(ex.route.as_deref(), Some("admin"));
    assert_eq!(ex.routes.len(), 2, "admin and the catch-all both match");
    assert!(ex.routes[1].why.as_deref().unwrap().contains("literal `admin` beats `**`"), "{:?}", ex.routes);
    assert_eq!((ex.status, ex.decision, ex.reason), (200, "allow", "ok"));
    assert!(ex.checks.iter().all(|c| c.pass) && ex.checks.len() == 1, "{:?}", ex.checks);
    assert!(!ex.credential.verified, "claims are never reported as verified");
    let h = &ex.upstream_headers;
    assert_eq!(header(h, "x-user-sub"), Some("u-1"));
    assert_eq!(header(h, "x-user-groups"), Some("Admins,a%2Cb"));
    assert_eq!(header(h, "x-user-username"), Some("ann"));
    assert_eq!(header(h, "x-forwarded-for"), Some("192.0.2.10"));
    assert_eq!(header(h, "authorization"), None, "the credential is not forwarded");
    let text = render_text(&ex);
    assert!(text.contains("UNVERIFIED"), "{text}");
    assert!(!text.contains("eyJ"), "a token is never printed: {text}");
}

#[tokio::test]
async fn deny_by_scope_names_the_missing_scope() {
    let e = explainer().await;
    let ex = run(&e, "POST", "/gates/control", &claims(json!({"sub": "u-2", "scope": "openid"}))).await;
    assert_eq!(ex.route.as_deref(), Some("gate-control"));
    assert_eq!(ex.routes[0].why.as_deref(), Some("beats `app`: segment 1: literal `gates` beats `**`"));
    assert_eq!((ex.status, ex.decision, ex.reason), (403, "deny", "insufficient_scope"));
    let check = &ex.checks[0];
    assert_eq!((check.requirement.as_str(), check.pass), ("scopes_any", false));
    assert_eq!(check.want, json!(["Admins-7abc"]), "templates are expanded with the token's client id");
    assert_eq!(
        header(&ex.response_headers, "www-authenticate"),
        Some("Bearer realm=\"portcullis\", error=\"insufficient_scope\", scope=\"Admins-7abc\"")
    );
    assert!(!ex.forwarded && ex.upstream_headers.is_empty());
}

#[tokio::test]
async fn deny_by_group() {
    let e = explainer().await;
    let ex = run(&e, "GET", "/admin", &claims(json!({"sub": "u-3", "cognito:groups": ["Staff"]}))).await;
    assert_eq!((ex.status, ex.decision, ex.reason), (403, "deny", "forbidden_group"));
    assert_eq!(ex.checks[0].got, json!(["Staff"]));
    assert!(!ex.checks[0].pass);
}

#[tokio::test]
async fn no_route_and_ambiguous_path() {
    let config = CONFIG.replace("  - name: app\n    path: /**\n    require:\n      scopes_all: [openid, email]\n", "");
    let config = crate::config::parse(&config, "t.yaml", &|_| None).unwrap();
    let e = Explainer::for_claims(config).await.unwrap();
    let ex = run(&e, "GET", "/elsewhere", &Credential::None).await;
    assert_eq!((ex.status, ex.reason), (403, "no_route"));
    assert!(ex.routes.is_empty() && ex.route.is_none());
    assert!(render_text(&ex).contains("none match"));
    let ex = run(&e, "GET", "/admin/%2e%2e/x", &Credential::None).await;
    assert_eq!((ex.status, ex.reason), (400, "ambiguous_path"));
    assert!(ex.path_error.is_some());
}

#[tokio::test]
async fn public_route_ignores_credentials_and_adds_no_identity() {
    let e = explainer().await;
    let ex = run(&e, "GET", "/health", &claims(json!({"sub": "u-4"}))).await;
    assert_eq!((ex.status, ex.decision, ex.reason), (200, "public", "public"));
    assert_eq!(header(&ex.upstream_headers, "x-user-sub"), None);
    assert!(ex.checks.is_empty());
}

#[tokio::test]
async fn anonymous_and_bad_tokens_are_401() {
    let e = explainer().await;
    let ex = run(&e, "GET", "/x", &Credential::None).await;
    assert_eq!((ex.status, ex.reason), (401, "missing_token"));
    let ex = run(&e, "GET", "/x", &Credential::Token("not.a.jwt".into())).await;
    assert_eq!((ex.status, ex.reason), (401, "malformed_token"));
    // A real token signed by a key the config does not trust.
    let other = SigningKey::generate("portcullis-explain").unwrap();
    let forged =
        other.mint(&crate::tools::mint::access_claims("https://idp.example/pool", "7abc", "u", &[], "openid email"));
    let ex = run(&e, "GET", "/x", &Credential::Token(forged)).await;
    assert_eq!((ex.status, ex.reason), (401, "bad_signature"));
    assert!(!ex.credential.verified);
}

#[tokio::test]
async fn audit_route_forwards_and_reports_the_would_be_denial() {
    let e = explainer().await;
    let ex = run(&e, "GET", "/reports/q1", &claims(json!({"sub": "u-5", "cognito:groups": ["Staff"]}))).await;
    assert_eq!((ex.status, ex.decision, ex.reason), (200, "audit_deny", "forbidden_group"));
    assert_eq!(header(&ex.upstream_headers, "x-user-sub"), Some("u-5"));
}

/// The display checks agree with `policy::decide` on every combination of these claims.
#[tokio::test]
async fn checks_agree_with_the_decision() {
    let e = explainer().await;
    let groups = [json!([]), json!(["Admins"]), json!(["Analysts"])];
    let scopes = ["", "openid", "openid email", "Admins-7abc"];
    for (method, path) in [("GET", "/admin/x"), ("POST", "/gates/control"), ("GET", "/x"), ("GET", "/reports/y")] {
        for g in &groups {
            for s in scopes {
                let ex = run(&e, method, path, &claims(json!({"sub": "u", "cognito:groups": g, "scope": s}))).await;
                let all_pass = ex.checks.iter().all(|c| c.pass);
                assert_eq!(all_pass, ex.decision == "allow", "{method} {path} {g} {s:?}: {ex:?}");
            }
        }
    }
}

/// Every credential source the proxy reads, and the pairs it forms.
const SOURCES: &str = r#"listen: 127.0.0.1:8080
upstream:
  url: http://127.0.0.1:8000
issuers:
  - name: main
    issuer: https://idp.example/pool
    jwks_uri: https://idp.example/pool/jwks.json
    client_ids: [7abc]
    token_use: access
credentials:
  - bearer
  - header: accessToken
  - cookie: session_jwt
  - cookie: amplify
identity_headers:
  claims:
    X-User-Email: email
routes:
  - name: app
    path: /**
"#;

async fn sources_explainer(yaml: &str) -> Explainer {
    Explainer::for_claims(crate::config::parse(yaml, "t.yaml", &|_| None).unwrap()).await.unwrap()
}

fn request(method: &str, target: &str, headers: &[(&str, &str)], cookies: &[&str]) -> Request {
    Request {
        method: method.into(),
        target: target.into(),
        headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
        cookies: cookies.iter().map(|c| c.to_string()).collect(),
    }
}

fn who() -> Credential {
    claims(json!({"sub": "u-1", "email": "u@example.com"}))
}

#[tokio::test]
async fn the_token_is_found_wherever_the_config_reads_it() {
    let e = sources_explainer(SOURCES).await;
    let amplify = "CognitoIdentityServiceProvider.7abc";
    let cases: &[(Request, &str)] = &[
        (request("GET", "/x", &[], &[]), "bearer"),
        (request("GET", "/x", &[("accessToken", "${token}")], &[]), "header accesstoken"),
        (request("GET", "/x", &[], &["theme=dark", "session_jwt=${token}"]), "cookie session_jwt"),
        (
            request(
                "GET",
                "/x",
                &[],
                &[&format!("{amplify}.ann.accessToken=${{token}}"), &format!("{amplify}.LastAuthUser=ann")],
            ),
            "cookie amplify",
        ),
    ];
    for (req, source) in cases {
        let ex = e.explain(req, &who()).await.unwrap();
        assert_eq!((ex.status, ex.reason, ex.credential.found), (200, "ok", "token"), "{source}: {ex:?}");
        assert_eq!(ex.credential.sources, vec![source.to_string()]);
        let h = &ex.upstream_headers;
        assert_eq!(header(h, "x-user-sub"), Some("u-1"), "{source}");
        // The credential never reaches the app, wherever it was (SECURITY TOK-05).
        assert_eq!(header(h, "authorization"), None);
        assert_eq!(header(h, "accesstoken"), None);
        assert!(header(h, "cookie").is_none_or(|c| c == "theme=dark"), "{source}: {h:?}");
    }
}

#[tokio::test]
async fn an_id_and_access_token_pair_is_verified_as_one_identity() {
    let e = sources_explainer(SOURCES).await;
    let key = e.local.as_ref().unwrap();
    let iss = "https://idp.example/pool";
    let id = key.mint(&crate::tools::mint::id_claims(iss, "7abc", "pat", &["Staff"], "pat@example.com"));
    let access = key.mint(&crate::tools::mint::access_claims(iss, "7abc", "pat", &["Staff"], "openid"));
    let pair = request("GET", "/x", &[("Authorization", &format!("Bearer {id}")), ("accessToken", &access)], &[]);
    let ex = e.explain(&pair, &Credential::None).await.unwrap();
    assert_eq!((ex.status, ex.credential.found), (200, "two_tokens"), "{ex:?}");
    assert_eq!(ex.credential.sources, vec!["bearer".to_owned(), "header accesstoken".to_owned()]);
    assert!(ex.credential.verified, "the throw-away key signed them, but they came as real tokens");
    assert_eq!(
        header(&ex.upstream_headers, "x-user-email"),
        Some("pat@example.com"),
        "claim headers from the id token"
    );
    // Two access tokens are not a pair: which one did the client mean?
    let other = key.mint(&crate::tools::mint::access_claims(iss, "7abc", "eve", &[], "openid"));
    let two = request("GET", "/x", &[("Authorization", &format!("Bearer {other}")), ("accessToken", &access)], &[]);
    let ex = e.explain(&two, &Credential::None).await.unwrap();
    assert_eq!((ex.status, ex.reason, ex.credential.found), (400, "malformed_token", "two_tokens"), "{ex:?}");
    assert!(!render_text(&ex).contains("eyJ"), "tokens placed by hand are never printed either");
}

#[tokio::test]
async fn preflights_pass_without_credentials() {
    let e = sources_explainer(SOURCES).await;
    let preflight =
        request("OPTIONS", "/x", &[("Origin", "https://a.example"), ("Access-Control-Request-Method", "POST")], &[]);
    let ex = e.explain(&preflight, &Credential::None).await.unwrap();
    assert_eq!((ex.status, ex.decision, ex.credential.found), (200, "public", "not_read"), "{ex:?}");
    assert!(ex.credential.note.as_deref().unwrap_or_default().contains("preflight"));
    // Without `Access-Control-Request-Method` it is an ordinary OPTIONS.
    let plain = request("OPTIONS", "/x", &[("Origin", "https://a.example")], &[]);
    let ex = e.explain(&plain, &Credential::None).await.unwrap();
    assert_eq!((ex.status, ex.reason), (401, "missing_token"));
    assert_eq!(header(&ex.response_headers, "access-control-allow-origin"), Some("https://a.example"));
}

#[tokio::test]
async fn the_request_head_is_checked_as_the_proxy_checks_it() {
    let e = sources_explainer(SOURCES).await;
    let long = format!("/{}", "a".repeat(9000));
    let cases: &[(Request, u16, &str)] = &[
        (request("TRACE", "/x", &[], &[]), 405, "bad_request"),
        (request("get", "/x", &[], &[]), 400, "bad_request"),
        (request("GET", "/x", &[("Host", "evil@app.example")], &[]), 400, "bad_request"),
        (request("GET", "/x", &[("Host", "a"), ("Host", "b")], &[]), 400, "bad_request"),
        (request("GET", "/x", &[("Upgrade", "h2c"), ("Connection", "Upgrade")], &[]), 405, "bad_request"),
        (request("GET", &long, &[], &[]), 414, "bad_request"),
        (request("GET", "/a/%2e%2e/x", &[], &[]), 400, "ambiguous_path"),
        (request("GET", "not a target", &[], &[]), 400, "bad_request"),
        (
            request("GET", "/x", &[("Authorization", "Bearer a.b.c"), ("Authorization", "Bearer d.e.f")], &[]),
            400,
            "malformed_token",
        ),
    ];
    for (req, status, reason) in cases {
        let ex = e.explain(req, &Credential::None).await.unwrap();
        assert_eq!(
            (ex.status, ex.reason),
            (*status, *reason),
            "{} {}: {ex:?}",
            req.method,
            &req.target[..req.target.len().min(20)]
        );
        assert!(!ex.forwarded);
    }
}

#[tokio::test]
async fn request_mistakes_are_errors_not_refusals() {
    let e = sources_explainer(SOURCES).await;
    let placed = request("GET", "/x", &[("accessToken", "${token}")], &[]);
    assert!(e.explain(&placed, &Credential::None).await.unwrap_err().contains("${token}"));
    assert!(e.explain(&request("GET", "/x", &[("Bad Name", "v")], &[]), &Credential::None).await.is_err());
    assert!(e.explain(&request("GET", "/x", &[], &["no-equals"]), &Credential::None).await.is_err());
    let unknown = Credential::Claims { claims: Map::new(), issuer: Some("nope".into()) };
    assert!(e.explain(&request("GET", "/x", &[], &[]), &unknown).await.unwrap_err().contains("nope"));
}

#[tokio::test]
async fn forwarded_credentials_are_shown_redacted() {
    let yaml = SOURCES.replace("identity_headers:\n", "identity_headers:\n  forward_token: true\n");
    let e = sources_explainer(&yaml).await;
    let req = request("GET", "/x", &[("accessToken", "${token}")], &["session_jwt=${token}", "theme=dark"]);
    let ex = e.explain(&req, &who()).await.unwrap();
    assert_eq!(ex.status, 200, "{ex:?}");
    let h = &ex.upstream_headers;
    assert!(header(h, "accesstoken").unwrap().starts_with("<credential, "), "{h:?}");
    let cookie = header(h, "cookie").unwrap();
    assert!(cookie.starts_with("session_jwt=<credential, ") && cookie.ends_with("; theme=dark"), "{cookie}");
    assert!(!format!("{h:?}").contains("eyJ"));
}

/// SPEC §2, the proxy's own check: `explain` (and so `test`) refuses authority-form and
/// asterisk-form targets with the proxy's 400 `bad_request`, and matches absolute-form on its path.
#[tokio::test]
async fn request_target_forms_are_judged_as_the_proxy_judges_them() {
    let e = explainer().await;
    let admin = claims(json!({"sub": "u-1", "cognito:groups": ["Admins"], "scope": "openid email"}));
    for (method, target) in [("GET", "app:80"), ("GET", "localhost"), ("OPTIONS", "*"), ("GET", "http://u@h/admin/x")] {
        let ex = run(&e, method, target, &admin).await;
        assert_eq!((ex.status, ex.decision, ex.reason), (400, "deny", "bad_request"), "{method} {target}");
        assert!(ex.path_error.is_some() && ex.route.is_none(), "{method} {target}: {ex:?}");
    }
    let ex = run(&e, "GET", "http://app.example/admin/./x", &admin).await;
    assert_eq!(ex.normalised_path.as_deref(), Some("/admin/x"));
    assert_eq!((ex.status, ex.route.as_deref()), (200, Some("admin")));
}

const LOGIN: &str = r#"login:
  issuer: main
  client_id: 7abc
  domain: https://myapp.auth.eu-west-1.amazoncognito.com
  public_url: https://app.example.com
  session:
    secrets: ["0123456789abcdef0123456789abcdef"]
"#;

/// A session is modelled as the proxy serves one: a sealed cookie the request carries, found by
/// `authorize` where the configured sources found nothing (SPEC §8).
#[tokio::test]
async fn a_session_is_modelled_as_the_proxy_serves_it() {
    let config = crate::config::parse(&format!("{CONFIG}{LOGIN}"), "t.yaml", &|_| None).unwrap();
    let e = Explainer::for_claims(config).await.unwrap();
    let user = json!({"sub": "u-1", "cognito:groups": ["Admins"], "scope": "openid email", "username": "alice"});
    let session = Credential::Session { claims: user.as_object().unwrap().clone() };
    let navigate = |target: &str| request("GET", target, &[("Sec-Fetch-Mode", "navigate")], &[]);
    let ex = e.explain(&navigate("/admin/users"), &session).await.unwrap();
    assert_eq!(ex.credential.kind, "session");
    assert_eq!(ex.credential.found, "session");
    assert!(!ex.credential.verified);
    assert_eq!((ex.status, ex.reason), (200, "ok"), "{:?}", ex.credential);
    assert_eq!(header(&ex.upstream_headers, "x-user-sub"), Some("u-1"));
    assert_eq!(header(&ex.upstream_headers, "x-user-groups"), Some("Admins"));
    assert_eq!(header(&ex.upstream_headers, "x-user-username"), Some("alice"));
    // The session cookie never reaches the app (SECURITY LOGIN-06).
    assert!(header(&ex.upstream_headers, "cookie").is_none_or(|c| !c.contains("__Host-portcullis")));
    // Scopes come from the access half, as for any id+access pair.
    let ex = run(&e, "GET", "/x", &session).await;
    assert_eq!(ex.status, 200);
    // No credential: a navigation is sent to sign in, anything else is the 401.
    let ex = e.explain(&navigate("/x?y=1"), &Credential::None).await.unwrap();
    assert_eq!((ex.status, ex.reason), (302, "missing_token"));
    let location = header(&ex.response_headers, "location").unwrap();
    assert!(location.starts_with("https://myapp.auth.eu-west-1.amazoncognito.com/oauth2/authorize?response_type=code"));
    let ex = run(&e, "GET", "/x", &Credential::None).await;
    assert_eq!(ex.status, 401);
    // Without a login block a session cannot be modelled.
    let ex = run(&explainer().await, "GET", "/x", &session).await;
    assert!(ex.credential.error.is_some());
    assert_eq!(ex.status, 401);
}
