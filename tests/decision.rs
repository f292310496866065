//! One decision, three callers: the proxy on real sockets, `explain` (the library engine, with the
//! same real tokens) and `portcullis test` (the binary, with claims signed by its own throw-away
//! key, or the same real tokens placed by hand). One table of requests — every credential source,
//! an id+access pair, preflights, `Host`, method and target-length checks, path normalisation,
//! audit mode — goes through all three, and status, reason and the headers the app receives must
//! agree. All three call `proxy::decision::authorize`; this proves nothing was re-implemented.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use portcullis::config::Config;
use portcullis::tools::explain::{Credential, Explainer, Explanation, Request};
use serde_json::{Value, json};
use support::*;

const ROUTES: &str = r#"credentials:
  - bearer
  - header: accessToken
  - cookie: session_jwt
  - cookie: amplify
identity_headers:
  claims:
    X-User-Email: email
routes:
  - name: health
    path: /health
    auth: none
  - name: gate
    path: /gates/control
    methods: [POST]
    require:
      scopes_any: ["Admins-${client_id}"]
  - name: admin
    path: /admin/**
    require:
      groups_any: [Admins]
  - name: reports
    path: /reports/**
    mode: audit
    require:
      groups_any: [Analysts]
  - name: open
    path: /open/**
    auth: optional
  - name: app
    path: /app/**
"#;

/// Headers whose values are compared on every forwarded request: the identity, and what the
/// rewrite sets or trims (credential cookies cut, the rest kept).
const COMPARED: [&str; 7] =
    ["x-user-sub", "x-user-groups", "x-user-email", "cookie", "host", "x-forwarded-host", "x-forwarded-proto"];

/// How a row's credential is made. Header values may say `${token}` (the access token; without
/// it the token goes in `Authorization: Bearer`), `${id}` and `${access}` (a pair), `${other}`.
#[derive(Clone)]
enum Tokens {
    None,
    /// Claims for one access token: minted with the proxy's issuer key for the proxy and
    /// `explain`, handed to `portcullis test` as `claims:` (it signs them itself).
    Access(Value),
    /// An id token and an access token, and a second unrelated access token (`${other}`).
    Minted {
        id: Value,
        access: Value,
        other: Value,
    },
}

struct Row {
    name: &'static str,
    method: &'static str,
    target: String,
    headers: Vec<(&'static str, String)>,
    tokens: Tokens,
}

fn row(
    name: &'static str,
    method: &'static str,
    target: &str,
    headers: &[(&'static str, &str)],
    tokens: Tokens,
) -> Row {
    Row {
        name,
        method,
        target: target.to_owned(),
        headers: headers.iter().map(|(n, v)| (*n, v.to_string())).collect(),
        tokens,
    }
}

/// What one caller saw.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    status: u16,
    reason: String,
    /// The [`COMPARED`] headers the app received (empty when not forwarded).
    identity: BTreeMap<String, Option<String>>,
    /// Names of every header the app received, framing excepted.
    names: BTreeSet<String>,
}

fn claims(p: &Proxy, sub: &str, groups: &[&str], scope: &str) -> Value {
    let mut c = p.access_claims(sub, groups, scope);
    c["email"] = json!(format!("{sub}@example.com"));
    c
}

fn table(p: &Proxy) -> Vec<Row> {
    let admin = || Tokens::Access(claims(p, "ann", &["Admins"], "openid"));
    let amplify = format!("CognitoIdentityServiceProvider.{CLIENT_ID}");
    let mut expired = claims(p, "old", &["Admins"], "openid");
    expired["exp"] = json!(portcullis::tools::mint::now() - 3600);
    expired["iat"] = json!(portcullis::tools::mint::now() - 7200);
    let pair = Tokens::Minted {
        id: p.id_claims("pat", &["Staff"], "pat@example.com"),
        access: claims(p, "pat", &["Staff"], "openid"),
        other: claims(p, "eve", &[], "openid"),
    };
    let preflight = [("Origin", "https://web.example"), ("Access-Control-Request-Method", "DELETE")];
    vec![
        row("public route, forged identity stripped", "GET", "/health", &[("X-User-Sub", "admin")], Tokens::None),
        row("anonymous on a protected route", "GET", "/app/x", &[], Tokens::None),
        row("bearer token", "GET", "/admin/users", &[], admin()),
        row("token in a custom header", "GET", "/admin/users", &[("accessToken", "${token}")], admin()),
        row("token in a plain cookie", "GET", "/admin/x", &[("Cookie", "theme=dark; session_jwt=${token}")], admin()),
        row(
            "Amplify cookies",
            "GET",
            "/admin/x",
            &[("Cookie", &format!("{amplify}.ann.accessToken=${{token}}; {amplify}.LastAuthUser=ann; lang=en"))],
            admin(),
        ),
        row(
            "id+access pair",
            "GET",
            "/app/me",
            &[("Authorization", "Bearer ${id}"), ("accessToken", "${access}")],
            pair.clone(),
        ),
        row(
            "two access tokens",
            "GET",
            "/app/me",
            &[("Authorization", "Bearer ${other}"), ("accessToken", "${access}")],
            pair,
        ),
        row("wrong group", "GET", "/admin/x", &[], Tokens::Access(claims(p, "sam", &["Staff"], "openid"))),
        row(
            "gate with the client's admin scope",
            "POST",
            "/gates/control",
            &[],
            Tokens::Access(claims(p, "g", &[], &format!("openid Admins-{CLIENT_ID}"))),
        ),
        row("gate without it", "POST", "/gates/control", &[], Tokens::Access(claims(p, "g", &[], "openid"))),
        row(
            "audit route forwards a would-be denial",
            "GET",
            "/reports/q3",
            &[],
            Tokens::Access(claims(p, "rae", &["Staff"], "openid")),
        ),
        row("optional route, anonymous", "GET", "/open/x", &[], Tokens::None),
        row("optional route, signed in", "GET", "/open/x", &[], admin()),
        row("expired token", "GET", "/app/x", &[], Tokens::Access(expired)),
        row("malformed bearer", "GET", "/app/x", &[("Authorization", "Bearer not-a-token")], Tokens::None),
        row(
            "two Authorization lines",
            "GET",
            "/app/x",
            &[("Authorization", "Bearer ${token}"), ("Authorization", "Bearer ${token}")],
            admin(),
        ),
        row("preflight passes without a token", "OPTIONS", "/admin/x", &preflight, Tokens::None),
        row(
            "OPTIONS that is not a preflight",
            "OPTIONS",
            "/admin/x",
            &[("Origin", "https://web.example")],
            Tokens::None,
        ),
        row("no route", "GET", "/elsewhere", &[], admin()),
        row("dot segments are resolved before matching", "GET", "/app/../admin/x", &[], admin()),
        row("encoded dot segment", "GET", "/app/%2e%2e/admin/x", &[], admin()),
        row("TRACE", "TRACE", "/app/x", &[], Tokens::None),
        row("lower-case method", "get", "/app/x", &[], admin()),
        row(
            "h2c upgrade",
            "GET",
            "/app/x",
            &[("Upgrade", "h2c"), ("Connection", "Upgrade, HTTP2-Settings"), ("HTTP2-Settings", "AAMAAABkAAQAAP__")],
            admin(),
        ),
        row("Host with userinfo", "GET", "/app/x", &[("Host", "evil@app.example")], admin()),
        row("target over max_uri_bytes", "GET", &format!("/app/{}", "a".repeat(9000)), &[], admin()),
        row(
            "forwarding headers are replaced",
            "GET",
            "/app/x",
            &[("X-Forwarded-Host", "evil.example"), ("X-Real-IP", "1.2.3.4"), ("Forwarded", "for=1.2.3.4")],
            admin(),
        ),
    ]
}

/// The row's header lines with tokens filled in (`${token}` left for `explain`/`test` to fill
/// when `keep_placeholder`), plus `Host` when the row names none.
fn lines(p: &Proxy, r: &Row, keep_placeholder: bool) -> (Vec<(String, String)>, Option<String>) {
    let mint = |c: &Value| p.mint(c);
    let (token, fills): (Option<String>, Vec<(&str, String)>) = match &r.tokens {
        Tokens::None => (None, Vec::new()),
        Tokens::Access(c) => (Some(mint(c)), Vec::new()),
        Tokens::Minted { id, access, other } => {
            (None, vec![("${id}", mint(id)), ("${access}", mint(access)), ("${other}", mint(other))])
        }
    };
    let mut out: Vec<(String, String)> = Vec::new();
    if !r.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        out.push(("Host".into(), "app.example".into()));
    }
    let mut placed = false;
    for (n, v) in &r.headers {
        let mut v = v.clone();
        for (k, t) in &fills {
            v = v.replace(k, t);
        }
        if v.contains("${token}") {
            placed = true;
            if !keep_placeholder {
                v = v.replace("${token}", token.as_deref().unwrap_or_default());
            }
        }
        out.push((n.to_string(), v));
    }
    if !placed
        && !keep_placeholder
        && let Some(t) = &token
    {
        out.push(("Authorization".into(), format!("Bearer {t}")));
    }
    (out, token)
}

/// `portcullis_requests_total` series → value.
fn requests_total(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| l.starts_with("portcullis_requests_total{"))
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(series, v)| (series.to_owned(), v.parse().unwrap_or(0.0)))
        .collect()
}

/// The proxy's answer: status on the wire, reason from the metric it counted, and what the
/// echo upstream received.
async fn through_the_proxy(p: &Proxy, r: &Row) -> Outcome {
    let (headers, _) = lines(p, r, false);
    let mut bytes = format!("{} {} HTTP/1.1\r\n", r.method, r.target);
    for (n, v) in &headers {
        bytes.push_str(&format!("{n}: {v}\r\n"));
    }
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("connection")) {
        bytes.push_str("Connection: close\r\n");
    }
    bytes.push_str("\r\n");
    let before = requests_total(&p.metrics());
    let forwarded_before = p.echo.count();
    let response = raw_response(p.proxy_addr, bytes.as_bytes()).await;
    let after = requests_total(&p.metrics());
    let counted: Vec<&String> = after.keys().filter(|k| after[*k] != before.get(*k).copied().unwrap_or(0.0)).collect();
    assert_eq!(counted.len(), 1, "{}: one request counted once: {counted:?}", r.name);
    let reason = counted[0].split("reason=\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or_default();
    let mut outcome = Outcome {
        status: response.status,
        reason: reason.to_owned(),
        identity: BTreeMap::new(),
        names: BTreeSet::new(),
    };
    if p.echo.count() > forwarded_before {
        let seen = p.echo.last();
        outcome.identity = COMPARED.iter().map(|h| (h.to_string(), seen.one(h).map(str::to_owned))).collect();
        outcome.names = seen.names().into_iter().filter(|n| !is_framing(n)).collect();
    }
    outcome
}

/// Framing is hyper's to write on each hop (the rewrite removes the client's), not a decision.
fn is_framing(name: &str) -> bool {
    matches!(name, "content-length" | "transfer-encoding")
}

fn from_explanation(ex: &Explanation) -> Outcome {
    let mut outcome =
        Outcome { status: ex.status, reason: ex.reason.to_owned(), identity: BTreeMap::new(), names: BTreeSet::new() };
    if ex.forwarded {
        let get = |h: &str| ex.upstream_headers.iter().find(|(n, _)| n == h).map(|(_, v)| v.clone());
        outcome.identity = COMPARED.iter().map(|h| (h.to_string(), get(h))).collect();
        outcome.names = ex.upstream_headers.iter().map(|(n, _)| n.clone()).filter(|n| !is_framing(n)).collect();
    }
    outcome
}

async fn through_explain(p: &Proxy, engine: &Explainer, r: &Row) -> Outcome {
    let (headers, token) = lines(p, r, true);
    let request = Request { method: r.method.into(), target: r.target.clone(), headers, cookies: Vec::new() };
    let credential = token.map_or(Credential::None, Credential::Token);
    from_explanation(&engine.explain(&request, &credential).await.unwrap_or_else(|e| panic!("{}: {e}", r.name)))
}

/// A JSON string is a YAML double-quoted scalar.
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// One CASES.yaml entry expecting exactly what the proxy did. Access-token rows give `claims:`
/// (the binary signs them with its own key and places `${token}` itself); others carry the real
/// tokens by hand. `None` for a row a YAML mapping cannot express (a repeated header name).
fn case_yaml(p: &Proxy, r: &Row, seen: &Outcome) -> Option<String> {
    let (headers, _) = lines(p, r, true);
    let mut names = BTreeSet::new();
    if !headers.iter().all(|(n, _)| names.insert(n.to_ascii_lowercase())) {
        return None;
    }
    let mut y =
        format!("  - name: {}\n    request:\n      method: {}\n      path: {}\n", q(r.name), q(r.method), q(&r.target));
    y.push_str("      headers:\n");
    for (n, v) in &headers {
        y.push_str(&format!("        {}: {}\n", q(n), q(v)));
    }
    if let Tokens::Access(c) = &r.tokens {
        y.push_str(&format!("    claims: {c}\n"));
    }
    y.push_str(&format!("    expect:\n      status: {}\n      reason: {}\n", seen.status, q(&seen.reason)));
    if !seen.identity.is_empty() {
        y.push_str("      headers:\n");
        for (h, v) in &seen.identity {
            y.push_str(&format!("        {}: {}\n", q(h), v.as_deref().map_or("~".to_owned(), q)));
        }
    }
    Some(y)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_explain_and_test_reach_the_same_decisions() {
    let yaml = config("access", ROUTES);
    let p = start_proxy(&yaml).await;
    let resolved =
        yaml.replace("@ISSUER@", &p.iss()).replace("@JWKS@", &p.jwks.jwks_url()).replace("@UPSTREAM@", &p.echo.url());
    let cfg: Config = portcullis::config::parse(&resolved, "decision.yaml", &|_| None).unwrap();
    let engine = Explainer::for_tokens(cfg).await.unwrap();

    let rows = table(&p);
    let mut cases = String::from("cases:\n");
    let mut in_cases = 0;
    let mut statuses = BTreeSet::new();
    for r in &rows {
        let proxy = through_the_proxy(&p, r).await;
        statuses.insert(proxy.status);
        let explained = through_explain(&p, &engine, r).await;
        assert_eq!(explained, proxy, "{}: explain disagrees with the proxy", r.name);
        if let Some(case) = case_yaml(&p, r, &proxy) {
            cases.push_str(&case);
            in_cases += 1;
        }
    }
    // The table covers what it claims to: forwards and every kind of refusal.
    assert_eq!(statuses, BTreeSet::from([200, 400, 401, 403, 405, 414]));

    let dir = temp_dir("decision");
    let config_path = dir.join("portcullis.yaml");
    let cases_path = dir.join("cases.yaml");
    std::fs::write(&config_path, &resolved).unwrap();
    std::fs::write(&cases_path, &cases).unwrap();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["test", "--config"])
            .arg(&config_path)
            .arg(&cases_path)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "portcullis test disagrees with the proxy:\n{report}\n{cases}");
    assert!(report.contains(&format!("{in_cases} case(s): {in_cases} passed, 0 failed")), "{report}");
    assert_eq!(in_cases + 1, rows.len(), "every row but the repeated-header one runs through `test`");
    let _ = std::fs::remove_dir_all(&dir);
}
