//! `portcullis test --config FILE CASES.yaml` (SPEC §5): table-driven policy tests. Each case is
//! one request explained by [`crate::tools::explain`] — the real normaliser, route table, verifier,
//! policy and header rewriting — and compared with what the case expects: the status (200 means
//! "forwarded to the app"), optionally the reason, the headers the app would receive and the
//! headers of Portcullis's own response. The cases file is read with the same strict, spanned
//! YAML reader as the config, so mistakes are reported with file:line:col.
//!
//! Case format (beyond SPEC §5: `expect.reason`, and `~` as "this header must be absent"):
//!
//! ```text
//! cases:
//!   - name: admins open the gate
//!     request: {method: POST, path: /gates/control}   # method defaults to GET
//!     # request.headers: any header as a client sends it; `${token}` = the case's token
//!     issuer: main                                     # optional with one issuer
//!     claims: {sub: u-1, "cognito:groups": [Admins]}   # or `token: <JWT>` (verified for real)
//!     expect: {status: 200, reason: ok, headers: {X-User-Sub: u-1, X-User-Email: ~}}
//! ```

use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::Config;
use crate::config::yaml::{self, Node, Reader};
use crate::tools::explain::{self, Credential, Explainer, Explanation, Request};

const CASES_KEYS: &[&str] = &["cases"];
const CASE_KEYS: &[&str] = &["name", "request", "issuer", "claims", "token", "session", "expect"];
const REQUEST_KEYS: &[&str] = &["method", "path", "headers", "navigation"];
const EXPECT_KEYS: &[&str] = &["status", "reason", "headers", "response_headers"];

/// One parsed case.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub line: usize,
    pub request: Request,
    pub credential: Credential,
    pub expect: Expect,
}

#[derive(Debug, Clone, Default)]
pub struct Expect {
    pub status: u16,
    pub reason: Option<String>,
    /// Header → expected value, or `None` for "must be absent".
    pub headers: Vec<(String, Option<String>)>,
    pub response_headers: Vec<(String, Option<String>)>,
}

/// The outcome of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub name: String,
    pub line: usize,
    pub pass: bool,
    pub failures: Vec<String>,
    /// Absent when the case could not be run (claims that cannot be completed, `${token}`
    /// without a token): the failure says why.
    pub explanation: Option<Explanation>,
}

/// Every case's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub file: String,
    pub passed: usize,
    pub failed: usize,
    pub cases: Vec<CaseResult>,
}

/// Parse a cases file; every problem is reported at once as `file:line:col: path: message`.
pub fn parse(source: &str, file: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Case>, Vec<String>> {
    let render = |ds: Vec<yaml::Diagnostic>| ds.iter().map(|d| yaml::render(file, d)).collect::<Vec<_>>();
    let root = match yaml::parse(source) {
        Ok(Some(root)) => root,
        Ok(None) => return Err(vec![format!("{file}: the cases file is empty")]),
        Err(ds) => return Err(render(ds)),
    };
    let mut r = Reader::new(env);
    let mut cases = Vec::new();
    if let Some(m) = r.map(&root, "", CASES_KEYS)
        && let Some(list) = r.require(&m, "cases", "")
        && let Some(items) = r.seq(list, "cases")
    {
        if items.is_empty() {
            r.error(list.span, "cases", "at least one case is required");
        }
        for (i, item) in items.iter().enumerate() {
            if let Some(c) = case(&mut r, item, &format!("cases[{i}]")) {
                cases.push(c);
            }
        }
    }
    if r.has_errors() {
        return Err(render(r.diagnostics()));
    }
    Ok(cases)
}

fn case(r: &mut Reader, n: &Node, p: &str) -> Option<Case> {
    let m = r.map(n, p, CASE_KEYS)?;
    let name = r.require(&m, "name", p).and_then(|n| r.string(n, &format!("{p}.name")));
    let request = r.require(&m, "request", p).and_then(|n| {
        let rp = format!("{p}.request");
        let rm = r.map(n, &rp, REQUEST_KEYS)?;
        let method = match rm.get("method") {
            Some(mn) => r.string(mn, &format!("{rp}.method"))?,
            None => "GET".to_owned(),
        };
        let path = r.require(&rm, "path", &rp).and_then(|pn| r.string(pn, &format!("{rp}.path")));
        let headers = match rm.get("headers") {
            Some(hn) => request_headers(r, hn, &format!("{rp}.headers")),
            None => Some(Vec::new()),
        };
        // `navigation: true`: a browser navigation, for the sign-in redirect (SPEC §8).
        let navigation = match rm.get("navigation") {
            Some(nn) => r.bool(nn, &format!("{rp}.navigation")),
            None => Some(false),
        };
        let mut headers = headers?;
        if navigation? {
            headers.push(("Sec-Fetch-Mode".to_owned(), "navigate".to_owned()));
        }
        Some(Request { method, target: path?, headers, cookies: Vec::new() })
    });
    // `session: true`: the claims arrive as a browser sign-in session (SPEC §8).
    let session = match m.get("session") {
        Some(sn) => r.bool(sn, &format!("{p}.session")).map(|b| (b, sn.span)),
        None => None,
    };
    let issuer = m.get("issuer").and_then(|n| r.string(n, &format!("{p}.issuer")));
    let credential = match (m.get("claims"), m.get("token")) {
        (Some(_), Some(t)) => {
            r.error(t.span, &format!("{p}.token"), "give either `claims` or `token`, not both");
            None
        }
        (Some(c), None) => match json(r, c, &format!("{p}.claims")) {
            Some(Value::Object(claims)) => Some(Credential::Claims { claims, issuer }),
            Some(_) => {
                r.error(c.span, &format!("{p}.claims"), "expected a mapping of claim name to value");
                None
            }
            None => None,
        },
        (None, Some(t)) => r.string(t, &format!("{p}.token")).map(Credential::Token),
        (None, None) => Some(Credential::None),
    };
    let credential = match (credential, session) {
        (Some(Credential::Claims { claims, .. }), Some((true, _))) => Some(Credential::Session { claims }),
        (Some(_), Some((true, span))) => {
            r.error(span, &format!("{p}.session"), "a session case needs `claims` (the signed-in user's)");
            None
        }
        (c, _) => c,
    };
    let expect = r.require(&m, "expect", p).and_then(|n| expect(r, n, &format!("{p}.expect")));
    Some(Case { name: name?, line: n.span.line, request: request?, credential: credential?, expect: expect? })
}

fn expect(r: &mut Reader, n: &Node, p: &str) -> Option<Expect> {
    let m = r.map(n, p, EXPECT_KEYS)?;
    let status = r.require(&m, "status", p).and_then(|s| {
        let v = r.u64(s, &format!("{p}.status"))?;
        if !(100..=599).contains(&v) {
            r.error(s.span, &format!("{p}.status"), "an HTTP status is between 100 and 599");
            return None;
        }
        Some(v as u16)
    });
    let reason = m.get("reason").and_then(|n| r.string(n, &format!("{p}.reason")));
    let headers = header_map(r, m.get("headers"), &format!("{p}.headers"));
    let response_headers = header_map(r, m.get("response_headers"), &format!("{p}.response_headers"));
    Some(Expect { status: status?, reason, headers: headers?, response_headers: response_headers? })
}

/// `request.headers`: header name → the value a client sends (a string).
fn request_headers(r: &mut Reader, n: &Node, p: &str) -> Option<Vec<(String, String)>> {
    header_entries(r, n, p, "expected a mapping of header name to value", |r, v, vp| r.string(v, vp))
}

fn is_null(n: &Node) -> bool {
    matches!(&n.value, yaml::Value::Scalar { text, plain: true } if text.is_empty() || text == "~" || text == "null")
}

/// `expect.headers` / `expect.response_headers`: header name → value, `~` for absent.
fn header_map(r: &mut Reader, n: Option<&Node>, p: &str) -> Option<Vec<(String, Option<String>)>> {
    let Some(n) = n else { return Some(Vec::new()) };
    header_entries(r, n, p, "expected a mapping of header name to value (~ for absent)", |r, v, vp| {
        if is_null(v) { Some(None) } else { r.string(v, vp).map(Some) }
    })
}

/// A mapping of header names (each checked, an error at its own position) to what `value` reads.
fn header_entries<T>(
    r: &mut Reader,
    n: &Node,
    p: &str,
    not_a_map: &str,
    value: impl Fn(&mut Reader, &Node, &str) -> Option<T>,
) -> Option<Vec<(String, T)>> {
    let yaml::Value::Map(entries) = &n.value else {
        r.error(n.span, p, not_a_map);
        return None;
    };
    let mut out = Vec::new();
    for (k, v) in entries {
        let name = r.string(k, p)?;
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            r.error(k.span, p, format!("`{name}` is not a header name"));
            continue;
        }
        let value = value(r, v, &format!("{p}.{name}"))?;
        out.push((name, value));
    }
    Some(out)
}

/// A YAML value as JSON: plain `true`/`false`, numbers and `~`/`null` are typed; everything else
/// must be a string (a bare `off` or `0123` is an error, as in the config).
fn json(r: &mut Reader, n: &Node, p: &str) -> Option<Value> {
    match &n.value {
        yaml::Value::Scalar { text, plain: true } => {
            if is_null(n) {
                return Some(Value::Null);
            }
            if text == "true" || text == "false" {
                return Some(Value::Bool(text == "true"));
            }
            let numeric = text.strip_prefix('-').unwrap_or(text);
            if !numeric.is_empty()
                && numeric.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                && !(numeric.len() > 1 && numeric.starts_with('0') && !numeric.starts_with("0."))
                && let Ok(num) = serde_json::from_str::<serde_json::Number>(text)
            {
                return Some(Value::Number(num));
            }
            r.string(n, p).map(Value::String)
        }
        yaml::Value::Scalar { .. } => r.string(n, p).map(Value::String),
        yaml::Value::Seq(items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                out.push(json(r, item, &format!("{p}[{i}]"))?);
            }
            Some(Value::Array(out))
        }
        yaml::Value::Map(entries) => {
            let mut out = Map::new();
            for (k, v) in entries {
                let key = r.string(k, p)?;
                let value = json(r, v, &format!("{p}.{key}"))?;
                out.insert(key, value);
            }
            Some(Value::Object(out))
        }
    }
}

/// Run every case against `config`. Claims cases are signed locally; a case with a real token
/// (`token:`, or one placed by hand in `request.headers`) is verified against the configured JWKS.
pub async fn run(config: &Config, cases: &[Case], file: &str) -> Result<Report, String> {
    let needs_real = cases.iter().any(|c| explain::needs_real_keys(&c.request, &c.credential));
    let local = Explainer::for_claims(config.clone()).await?;
    let real = if needs_real { Some(Explainer::for_tokens(config.clone()).await?) } else { None };
    let mut results = Vec::new();
    for case in cases {
        let engine = match &real {
            Some(real) if explain::needs_real_keys(&case.request, &case.credential) => real,
            _ => &local,
        };
        let (failures, explanation) = match engine.explain(&case.request, &case.credential).await {
            Ok(ex) => (compare(&case.expect, &ex), Some(ex)),
            Err(e) => (vec![format!("cannot run the case: {e}")], None),
        };
        results.push(CaseResult {
            name: case.name.clone(),
            line: case.line,
            pass: failures.is_empty(),
            failures,
            explanation,
        });
    }
    let passed = results.iter().filter(|r| r.pass).count();
    Ok(Report { file: file.to_owned(), passed, failed: results.len() - passed, cases: results })
}

fn lookup<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
}

fn compare(expect: &Expect, ex: &Explanation) -> Vec<String> {
    let mut failures = Vec::new();
    if ex.status != expect.status {
        failures.push(format!("expected status {}, got {} ({}, {})", expect.status, ex.status, ex.decision, ex.reason));
    }
    if let Some(reason) = &expect.reason
        && reason != ex.reason
    {
        failures.push(format!("expected reason {reason}, got {}", ex.reason));
    }
    let mut headers = |want: &[(String, Option<String>)], got: &[(String, String)], whose: &str| {
        for (name, value) in want {
            let have = lookup(got, name);
            let shown = if have.is_empty() { "(absent)".to_owned() } else { have.join(" | ") };
            match value {
                None if !have.is_empty() => failures.push(format!("expected no {whose} header {name}, got {shown}")),
                Some(v) if have != [v.as_str()] => {
                    failures.push(format!("expected {whose} header {name}: {v}, got {shown}"))
                }
                _ => {}
            }
        }
    };
    headers(&expect.headers, &ex.upstream_headers, "upstream");
    headers(&expect.response_headers, &ex.response_headers, "response");
    failures
}

/// The human-readable report.
pub fn render_text(report: &Report) -> String {
    let mut o = String::new();
    let width = report.cases.iter().map(|c| c.name.chars().count()).max().unwrap_or(0).min(48);
    for c in &report.cases {
        let mark = if c.pass { "PASS" } else { "FAIL" };
        match &c.explanation {
            Some(ex) => {
                let route = ex.route.as_deref().unwrap_or("none");
                o.push_str(&format!(
                    "{mark}  {:<width$}  {} {} → {} {} ({}) via route {route}\n",
                    c.name, ex.method, ex.path, ex.status, ex.decision, ex.reason
                ));
            }
            None => o.push_str(&format!("{mark}  {}\n", c.name)),
        }
        for f in &c.failures {
            o.push_str(&format!("      {}:{}: {f}\n", report.file, c.line));
        }
    }
    o.push_str(&format!(
        "{} case(s): {} passed, {} failed\n",
        report.passed + report.failed,
        report.passed,
        report.failed
    ));
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mistakes_are_reported_with_positions() {
        let src = "cases:\n  - name: a\n    request: {path: /x, verb: GET}\n    claims: {sub: off}\n    expect: {status: 99}\n";
        let errs = parse(src, "c.yaml", &|_| None).unwrap_err();
        let all = errs.join("\n");
        assert!(all.contains("c.yaml:3:") && all.contains("verb"), "{all}");
        assert!(all.contains("c.yaml:4:") && all.contains("quote it"), "{all}");
        assert!(all.contains("c.yaml:5:") && all.contains("between 100 and 599"), "{all}");
    }

    /// SPEC §5: `request.headers` as a client sends them, `${token}` standing for the token
    /// minted from the case's claims (then it is not also sent as `Authorization: Bearer`).
    #[tokio::test]
    async fn request_headers_carry_the_token_where_the_case_puts_it() {
        let src = "cases:\n  - name: by hand\n    request: {path: /orders, headers: {accessToken: \"${token}\"}}\n    claims: {sub: u-2}\n    expect: {status: 200, headers: {X-User-Sub: u-2}}\n  - name: header only\n    request: {path: /orders, headers: {X-Other: \"${token}\"}}\n    claims: {sub: u-3}\n    expect: {status: 401}\n";
        let cases = parse(src, "c.yaml", &|_| None).unwrap();
        assert_eq!(cases[0].request.headers, vec![("accessToken".to_owned(), "${token}".to_owned())]);
        let config = crate::config::parse(
            "listen: 127.0.0.1:8080\nupstream:\n  url: http://127.0.0.1:8000\nissuers:\n  - name: main\n    issuer: https://idp.example/pool\n    jwks_uri: https://idp.example/pool/jwks.json\n    client_ids: [c]\n    token_use: access\ncredentials:\n  - bearer\n  - header: accessToken\nroutes:\n  - name: app\n    path: /**\n",
            "t.yaml",
            &|_| None,
        )
        .unwrap();
        let report = run(&config, &cases, "c.yaml").await.unwrap();
        assert_eq!((report.passed, report.failed), (2, 0), "{report:?}");
        let found = report.cases[0].explanation.as_ref().map(|ex| ex.credential.sources.clone());
        assert_eq!(found, Some(vec!["header accesstoken".to_owned()]));
        let bad = "cases:\n  - name: a\n    request: {path: /x, headers: {X-A: [1]}}\n    expect: {status: 200}\n";
        assert!(parse(bad, "c.yaml", &|_| None).unwrap_err().join("\n").contains("c.yaml:3:"));
    }

    #[test]
    fn header_names_are_checked_where_they_stand_in_both_mappings() {
        let src = "cases:\n  - name: a\n    request: {path: /x, headers: {\"bad name\": v}}\n    expect: {status: 200}\n  - name: b\n    request: {path: /x}\n    expect: {status: 200, headers: {\"x:y\": ~}}\n";
        let all = parse(src, "c.yaml", &|_| None).unwrap_err().join("\n");
        assert!(all.contains("c.yaml:3:") && all.contains("`bad name` is not a header name"), "{all}");
        assert!(all.contains("c.yaml:7:") && all.contains("`x:y` is not a header name"), "{all}");
        let not_a_map =
            "cases:\n  - name: a\n    request: {path: /x, headers: [a]}\n    expect: {status: 200, headers: [b]}\n";
        let all = parse(not_a_map, "c.yaml", &|_| None).unwrap_err().join("\n");
        assert!(all.contains("mapping of header name to value") && all.contains("(~ for absent)"), "{all}");
    }

    #[test]
    fn claims_are_typed_like_json() {
        let src = "cases:\n  - name: a\n    request: {path: /x}\n    claims: {sub: u, num: 12, f: 1.5, b: true, z: ~, l: [a, \"0123\"]}\n    expect: {status: 200, headers: {X-A: ~, X-B: v}}\n";
        let cases = parse(src, "c.yaml", &|_| None).unwrap();
        let Credential::Claims { claims, .. } = &cases[0].credential else { panic!() };
        assert_eq!(
            Value::Object(claims.clone()),
            serde_json::json!({"sub": "u", "num": 12, "f": 1.5, "b": true, "z": null, "l": ["a", "0123"]})
        );
        assert_eq!(cases[0].request.method, "GET");
        assert_eq!(cases[0].expect.headers, vec![("X-A".into(), None), ("X-B".into(), Some("v".into()))]);
    }

    #[tokio::test]
    async fn session_cases_run_through_the_sign_in_rules() {
        let config = "listen: 127.0.0.1:8080\nupstream:\n  url: http://127.0.0.1:8000\nissuers:\n  - name: main\n    issuer: https://idp.example/pool\n    jwks_uri: https://idp.example/pool/jwks.json\n    client_ids: [7abc]\n    token_use: access\nlogin:\n  issuer: main\n  client_id: 7abc\n  domain: https://idp.example\n  public_url: https://app.example\n  session:\n    secrets: [\"0123456789abcdef0123456789abcdef\"]\nroutes:\n  - name: admin\n    path: /admin/**\n    require:\n      groups_any: [Admins]\n  - name: app\n    path: /**\n";
        let config = crate::config::parse(config, "p.yaml", &|_| None).unwrap();
        let src = r#"cases:
  - name: an admin's session opens the admin page
    request: {path: /admin/x, navigation: true}
    session: true
    claims: {sub: u-1, "cognito:groups": [Admins]}
    expect: {status: 200, headers: {X-User-Sub: u-1}}
  - name: a reader's session is refused there
    request: {path: /admin/x}
    session: true
    claims: {sub: u-2}
    expect: {status: 403}
  - name: a navigation without a session is sent to sign in
    request: {path: /reports, navigation: true}
    expect: {status: 302, reason: missing_token}
  - name: an API call without one is not
    request: {path: /reports}
    expect: {status: 401}
"#;
        let cases = parse(src, "c.yaml", &|_| None).unwrap();
        let report = run(&config, &cases, "c.yaml").await.unwrap();
        assert_eq!(report.failed, 0, "{}", render_text(&report));
        let bad = parse(
            "cases:\n  - name: a\n    request: {path: /x}\n    session: true\n    expect: {status: 200}\n",
            "c.yaml",
            &|_| None,
        );
        assert!(bad.unwrap_err().join("\n").contains("needs `claims`"));
    }
}
