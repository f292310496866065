use super::*;

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

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn allow_shows_route_checks_and_upstream_headers() {
    let e = explainer().await;
    let who = claims(json!({"sub": "u-1", "cognito:groups": ["Admins", "a,b"], "scope": "openid", "username": "ann"}));
    let ex = e.explain("GET", "/admin/./users//list?x=1", &who).await;
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
    let ex = e.explain("POST", "/gates/control", &claims(json!({"sub": "u-2", "scope": "openid"}))).await;
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
    let ex = e.explain("GET", "/admin", &claims(json!({"sub": "u-3", "cognito:groups": ["Staff"]}))).await;
    assert_eq!((ex.status, ex.decision, ex.reason), (403, "deny", "forbidden_group"));
    assert_eq!(ex.checks[0].got, json!(["Staff"]));
    assert!(!ex.checks[0].pass);
}

#[tokio::test]
async fn no_route_and_ambiguous_path() {
    let config = CONFIG.replace("  - name: app\n    path: /**\n    require:\n      scopes_all: [openid, email]\n", "");
    let config = crate::config::parse(&config, "t.yaml", &|_| None).unwrap();
    let e = Explainer::for_claims(config).await.unwrap();
    let ex = e.explain("GET", "/elsewhere", &Credential::None).await;
    assert_eq!((ex.status, ex.reason), (403, "no_route"));
    assert!(ex.routes.is_empty() && ex.route.is_none());
    assert!(render_text(&ex).contains("none match"));
    let ex = e.explain("GET", "/admin/%2e%2e/x", &Credential::None).await;
    assert_eq!((ex.status, ex.reason), (400, "ambiguous_path"));
    assert!(ex.path_error.is_some());
}

#[tokio::test]
async fn public_route_ignores_credentials_and_adds_no_identity() {
    let e = explainer().await;
    let ex = e.explain("GET", "/health", &claims(json!({"sub": "u-4"}))).await;
    assert_eq!((ex.status, ex.decision, ex.reason), (200, "public", "public"));
    assert_eq!(header(&ex.upstream_headers, "x-user-sub"), None);
    assert!(ex.checks.is_empty());
}

#[tokio::test]
async fn anonymous_and_bad_tokens_are_401() {
    let e = explainer().await;
    let ex = e.explain("GET", "/x", &Credential::None).await;
    assert_eq!((ex.status, ex.reason), (401, "missing_token"));
    let ex = e.explain("GET", "/x", &Credential::Token("not.a.jwt".into())).await;
    assert_eq!((ex.status, ex.reason), (401, "malformed_token"));
    // A real token signed by a key the config does not trust.
    let other = LocalIssuer::generate("portcullis-explain").unwrap();
    let forged =
        other.mint(&crate::issuer::access_claims("https://idp.example/pool", "7abc", "u", &[], "openid email"));
    let ex = e.explain("GET", "/x", &Credential::Token(forged)).await;
    assert_eq!((ex.status, ex.reason), (401, "bad_signature"));
    assert!(!ex.credential.verified);
}

#[tokio::test]
async fn audit_route_forwards_and_reports_the_would_be_denial() {
    let e = explainer().await;
    let ex = e.explain("GET", "/reports/q1", &claims(json!({"sub": "u-5", "cognito:groups": ["Staff"]}))).await;
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
                let ex = e.explain(method, path, &claims(json!({"sub": "u", "cognito:groups": g, "scope": s}))).await;
                let all_pass = ex.checks.iter().all(|c| c.pass);
                assert_eq!(all_pass, ex.decision == "allow", "{method} {path} {g} {s:?}: {ex:?}");
            }
        }
    }
}

const LOGIN: &str = r#"login:
  issuer: main
  client_id: 7abc
  domain: https://myapp.auth.eu-west-1.amazoncognito.com
  public_url: https://app.example.com
  session:
    secrets: ["0123456789abcdef0123456789abcdef"]
"#;

#[tokio::test]
async fn a_session_is_modelled_as_the_proxy_serves_it() {
    let config = crate::config::parse(&format!("{CONFIG}{LOGIN}"), "t.yaml", &|_| None).unwrap();
    let e = Explainer::for_claims(config).await.unwrap();
    let user = json!({"sub": "u-1", "cognito:groups": ["Admins"], "scope": "openid email", "username": "alice"});
    let session = Credential::Session { claims: user.as_object().unwrap().clone() };
    let ex = e.explain_request("GET", "/admin/users", &session, true).await;
    assert_eq!(ex.credential.kind, "session");
    assert_eq!((ex.status, ex.reason), (200, "ok"), "{:?}", ex.credential);
    assert_eq!(header(&ex.upstream_headers, "x-user-sub"), Some("u-1"));
    assert_eq!(header(&ex.upstream_headers, "x-user-groups"), Some("Admins"));
    assert_eq!(header(&ex.upstream_headers, "x-user-username"), Some("alice"));
    // Scopes come from the access half, as for any id+access pair.
    let ex = e.explain_request("GET", "/x", &session, false).await;
    assert_eq!(ex.status, 200);
    // No credential: a navigation is sent to sign in, anything else is the 401.
    let ex = e.explain_request("GET", "/x?y=1", &Credential::None, true).await;
    assert_eq!((ex.status, ex.reason), (302, "missing_token"));
    let location = header(&ex.response_headers, "location").unwrap();
    assert!(location.starts_with("https://myapp.auth.eu-west-1.amazoncognito.com/oauth2/authorize?response_type=code"));
    let ex = e.explain_request("GET", "/x", &Credential::None, false).await;
    assert_eq!(ex.status, 401);
    // Without a login block a session cannot be modelled.
    let ex = explainer().await.explain_request("GET", "/x", &session, false).await;
    assert!(ex.credential.error.is_some());
    assert_eq!(ex.status, 401);
}
