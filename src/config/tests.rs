use super::*;
use http::HeaderName;
use std::time::Duration;

fn no_env(_: &str) -> Option<String> {
    None
}

const BASE: &str = r#"listen: 127.0.0.1:8080
admin_listen: 127.0.0.1:9901
upstream:
  url: http://127.0.0.1:8000
issuers:
  - name: main
    cognito:
      region: eu-west-1
      user_pool_id: eu-west-1_AbCdEf123
    client_ids: [7abc123example]
    token_use: access
routes:
  - name: app
    path: /**
"#;

fn errors(yaml: &str) -> Vec<String> {
    match parse(yaml, "p.yaml", &no_env) {
        Ok(_) => Vec::new(),
        Err(e) => e.messages,
    }
}

fn assert_error(yaml: &str, location: &str, fragment: &str) {
    let errs = errors(yaml);
    assert!(
        errs.iter().any(|e| e.starts_with(&format!("p.yaml:{location}:")) && e.contains(fragment)),
        "expected an error at {location} containing {fragment:?}, got {errs:#?}"
    );
}

#[test]
fn base_config_loads_with_defaults() {
    let c = parse(BASE, "p.yaml", &no_env).unwrap();
    assert_eq!(c.issuers[0].issuer, "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123");
    assert_eq!(
        c.issuers[0].keys,
        KeyLocation::Url(
            "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123/.well-known/jwks.json".into()
        )
    );
    assert!(c.issuers[0].cognito);
    assert_eq!(c.leeway, Duration::from_secs(30));
    assert_eq!(c.jwks.kid_miss_cooldown, Duration::from_secs(10));
    assert_eq!(c.limits.max_header_bytes, 32_768);
    assert_eq!(c.credentials, vec![CredentialSource::Bearer { allow_raw: false }]);
    assert_eq!(c.routes[0].auth, AuthMode::Required);
}

#[test]
fn unknown_keys_are_errors_with_position() {
    assert_error(&BASE.replace("  url:", "  urll: x\n  url:"), "4:3", "unknown key `urll`");
    assert_error(&format!("{BASE}    requre: {{}}\n"), "15:5", "did you mean `require`");
}

#[test]
fn yaml_11_booleans_and_numbers_are_not_silent_strings() {
    let yaml = format!("{BASE}    require:\n      groups_any: [off, 0123, Admins]\n");
    let errs = errors(&yaml);
    assert!(errs.iter().any(|e| e.starts_with("p.yaml:16:20:") && e.contains("boolean")), "{errs:#?}");
    assert!(errs.iter().any(|e| e.starts_with("p.yaml:16:25:") && e.contains("quote")), "{errs:#?}");
    let quoted = format!("{BASE}    require:\n      groups_any: [\"off\", \"0123\"]\n");
    assert!(errors(&quoted).is_empty());
}

#[test]
fn duplicate_keys_are_errors() {
    assert_error(
        &BASE.replace("  url: http://127.0.0.1:8000", "  url: http://127.0.0.1:8000\n  url: http://127.0.0.1:9000"),
        "5:3",
        "duplicate key",
    );
}

#[test]
fn duplicate_route_patterns_with_overlapping_methods_are_errors() {
    let yaml = format!("{BASE}  - name: app2\n    path: /**\n");
    assert_error(&yaml, "15:5", "overlapping methods");
    let ok = format!("{BASE}  - name: app-post\n    path: /**\n    methods: [POST]\n");
    assert!(errors(&ok).is_empty(), "{:?}", errors(&ok));
    let overlap = format!(
        "{BASE}  - name: a\n    path: /x\n    methods: [GET, POST]\n  - name: b\n    path: /x\n    methods: [POST]\n"
    );
    assert_error(&overlap, "18:5", "overlapping methods");
}

/// SPEC §2: routes with the same pattern conflict only when both list an overlapping method or
/// both list none. When one lists methods and the other none, that is no conflict: the listing
/// route wins for its methods and the other serves the rest. (The two old copies of
/// `methods_overlap` disagreed on exactly this pair; `Route::shares_a_method_with` is the one
/// left, and the conflict rule is written out where it is decided.)
#[test]
fn same_pattern_with_and_without_methods_is_not_a_conflict() {
    let yaml = format!("{BASE}  - name: app-post\n    path: /**\n    methods: [POST]\n");
    let c = parse(&yaml, "p.yaml", &no_env).unwrap();
    let (app, post) = (&c.routes[0], &c.routes[1]);
    assert!(app.shares_a_method_with(post) && post.shares_a_method_with(app), "as sets, every method includes POST");
    let table = crate::auth::route::RouteTable::new(&c.routes, false);
    let find = |m: http::Method| table.find(&m, "/x").map(|r| r.name.clone());
    assert_eq!(find(http::Method::POST).as_deref(), Some("app-post"));
    assert_eq!(find(http::Method::GET).as_deref(), Some("app"));
}

#[test]
fn empty_requirement_lists_are_errors() {
    assert_error(&format!("{BASE}    require:\n      groups_any: []\n"), "16:19", "must not be empty");
    assert_error(&format!("{BASE}    require:\n      claims: {{}}\n"), "16:15", "must not be empty");
}

#[test]
fn every_problem_is_reported_at_once() {
    let yaml = BASE
        .replace("listen: 127.0.0.1:8080", "listen: nowhere")
        .replace("token_use: access", "token_use: acess")
        .replace("path: /**", "path: admin");
    let errs = errors(&yaml);
    assert!(errs.len() >= 3, "{errs:#?}");
    assert!(errs[0].starts_with("p.yaml:1:"), "sorted by line: {errs:#?}");
}

#[test]
fn cognito_pool_id_is_validated_against_the_region() {
    // OUT-02: the pool id becomes part of a URL.
    for bad in ["us-east-1_x/../../evil", "eu-west-1_x@attacker.test", "us-east-1_AbC", "eu-west-1_", "eu-west-1_a-b"] {
        let yaml = BASE.replace("eu-west-1_AbCdEf123", bad);
        assert_error(&yaml, "9:21", "not a user pool id");
    }
    assert_error(
        &BASE.replace("region: eu-west-1", "region: \"eu-west-1.attacker.test#\""),
        "8:15",
        "not an AWS region",
    );
    let gov = BASE.replace("eu-west-1", "us-gov-west-1");
    assert!(errors(&gov).is_empty(), "{:?}", errors(&gov));
}

#[test]
fn explicit_issuer_needs_https_or_loopback_jwks() {
    let explicit = |uri: &str| {
        BASE.replace(
            "    cognito:\n      region: eu-west-1\n      user_pool_id: eu-west-1_AbCdEf123\n",
            &format!("    issuer: https://idp.example/pool\n    jwks_uri: {uri}\n"),
        )
    };
    assert!(errors(&explicit("https://idp.example/pool/jwks.json")).is_empty());
    assert!(errors(&explicit("http://127.0.0.1:9229/pool/jwks.json")).is_empty());
    assert!(errors(&explicit("http://localhost:9229/pool/jwks.json")).is_empty());
    assert_error(&explicit("http://idp.example/jwks.json"), "8:15", "only allowed for loopback");
    assert_error(&explicit("ftp://idp.example/jwks.json"), "8:15", "must be https");
}

#[test]
fn token_use_must_be_written_out() {
    assert_error(&BASE.replace("    token_use: access\n", ""), "6:5", "`token_use` is required");
}

#[test]
fn route_token_use_must_be_acceptable_to_admitted_issuers() {
    let yaml = format!("{BASE}    require:\n      token_use: id\n");
    assert_error(&yaml, "16:18", "only accepts access tokens");
    // …unless the credentials can carry an id+access pair, which satisfies either use.
    for creds in ["credentials: [bearer, {header: accessToken}]\n", "credentials: [{cookie: amplify}]\n"] {
        let yaml = format!("{creds}{BASE}    require:\n      token_use: id\n");
        assert!(errors(&yaml).is_empty(), "{creds}: {:?}", errors(&yaml));
    }
}

#[test]
fn route_issuers_must_exist_and_templates_are_checked() {
    assert_error(&format!("{BASE}    require:\n      issuers: [other]\n"), "16:16", "no issuer is named `other`");
    assert_error(
        &format!("{BASE}    require:\n      scopes_any: [\"x-${{clientid}}\"]\n"),
        "16:19",
        "not a known template",
    );
    assert!(errors(&format!("{BASE}    require:\n      scopes_any: [\"Admins-${{client_id}}\"]\n")).is_empty());
}

#[test]
fn env_substitution_and_missing_variables() {
    let yaml = BASE.replace("http://127.0.0.1:8000", "\"${env:APP_URL}\"");
    let env = |n: &str| (n == "APP_URL").then(|| "http://127.0.0.1:7000".to_owned());
    let c = parse(&yaml, "p.yaml", &env).unwrap();
    assert_eq!(c.upstream.target, UpstreamTarget::Http { authority: "127.0.0.1:7000".parse().unwrap() });
    assert_error(&yaml, "4:8", "APP_URL");
}

#[test]
fn route_patterns_are_checked() {
    for (pattern, fragment) in [
        ("admin", "starts with `/`"),
        ("/a/**/b", "last segment"),
        ("/a*", "whole segment"),
        ("/a//b", "empty segment"),
        ("/a/%2e%2e", "never match"),
        ("/a/../b", "`.` and `..`"),
    ] {
        assert_error(&BASE.replace("path: /**", &format!("path: \"{pattern}\"")), "14:11", fragment);
    }
}

#[test]
fn methods_are_upper_case_and_head_connect_trace_refused() {
    for (methods, fragment) in
        [("[get]", "upper-case"), ("[HEAD]", "matched as GET"), ("[TRACE]", "always refused"), ("[GET, GET]", "twice")]
    {
        assert_error(&format!("{BASE}    methods: {methods}\n"), "15:14", fragment);
    }
}

/// SECURITY HDR-04: identity header names hold only letters, digits and `-`. Client headers with
/// any other byte are dropped on arrival (CGI/PHP fold `_`, `.`, `~`, … into `_`), so any other
/// configured name would be one whose client spellings Portcullis could not tell apart.
#[test]
fn identity_headers_cannot_be_reserved_or_hold_bytes_outside_letters_digits_and_dash() {
    let with = |s: &str| format!("{BASE}identity_headers:\n{s}");
    assert_error(&with("  sub: Authorization\n"), "16:8", "managed by Portcullis");
    for name in ["X_User_Sub", "X-User.Sub", "X.User.Sub", "X-User~Sub", "X-User!", "\"X User\"", "\"\""] {
        assert_error(&with(&format!("  sub: {name}\n")), "16:8", "only letters, digits and `-`");
        assert_error(&with(&format!("  groups: {name}\n")), "16:11", "only letters, digits and `-`");
        assert_error(&with(&format!("  claims:\n    {name}: email\n")), "17:5", "only letters, digits and `-`");
    }
    assert_error(&with("  sub: X-Id\n  groups: x-id\n"), "16:3", "configured twice");
    let ok = with("  claims:\n    X-User-Email: email\n  groups_format: json\n");
    let c = parse(&ok, "p.yaml", &no_env).unwrap();
    assert_eq!(c.identity.claims[0].1, "email");
    assert_eq!(c.identity.groups_format, GroupsFormat::Json);
}

#[test]
fn require_on_public_route_is_an_error() {
    assert_error(&format!("{BASE}    auth: none\n    require:\n      groups_any: [A]\n"), "17:7", "no effect");
}

/// SECURITY CLM-18: a rule on a claim users can change themselves (`custom:*`, `email`, …) is
/// reported (SPEC §2: `check` warns; rules on groups and scopes are the recommended form).
#[test]
fn user_writable_claims_warn() {
    let c = parse(&format!("{BASE}    require:\n      claims:\n        \"custom:role\": admin\n"), "p.yaml", &no_env)
        .unwrap();
    assert!(lint::lint(&c).iter().any(|w| w.to_string().contains("custom:role")));
}

#[test]
fn listen_and_admin_listen_must_differ() {
    assert_error(&BASE.replace("admin_listen: 127.0.0.1:9901", "admin_listen: 127.0.0.1:8080"), "2:15", "must differ");
}

#[test]
fn credentials_sources_parse() {
    let yaml = format!(
        "{BASE}credentials:\n  - bearer: {{allow_raw: true}}\n  - header: accessToken\n  - cookie: amplify\n  - cookie: session_jwt\n"
    );
    let c = parse(&yaml, "p.yaml", &no_env).unwrap();
    assert_eq!(
        c.credentials,
        vec![
            CredentialSource::Bearer { allow_raw: true },
            CredentialSource::Header(HeaderName::from_static("accesstoken")),
            CredentialSource::AmplifyCookie,
            CredentialSource::Cookie("session_jwt".into()),
        ]
    );
    assert_error(&format!("{BASE}credentials:\n  - query\n"), "16:5", "not a credential source");
    // Names with a byte outside `A-Z a-z 0-9 -` are stripped before credentials are read:
    // refuse, don't silently ignore (SECURITY HDR-04).
    for name in ["access_token", "access.token", "access~token"] {
        assert_error(&format!("{BASE}credentials:\n  - header: {name}\n"), "16:13", "dropped on arrival");
    }
}

#[test]
fn example_config_loads() {
    let text = include_str!("../../config.example.yaml");
    let c = parse(text, "config.example.yaml", &no_env).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.issuers.iter().any(|i| i.cognito));
}

/// SECURITY DEP-01: an upstream on a routable address is flagged by the lints (logged at startup,
/// on reload and by `check`): the app must be reachable only through Portcullis. Loopback and unix sockets are not.
#[test]
fn non_loopback_upstream_is_flagged() {
    let warned = |url: &str| {
        let c = parse(&BASE.replace("http://127.0.0.1:8000", url), "p.yaml", &no_env).unwrap();
        lint::lint(&c).iter().any(|w| w.message.contains("not a loopback address"))
    };
    for url in ["http://10.0.0.5:8000", "http://app.internal:8000", "http://0.0.0.0:8000", "http://[fd00::1]:80"] {
        assert!(warned(url), "{url}");
    }
    for url in ["http://127.0.0.1:8000", "http://127.1.2.3:8000", "http://localhost:8000", "http://[::1]:8000"] {
        assert!(!warned(url), "{url}");
    }
    assert!(!warned("unix:/run/app.sock"));
}

/// SECURITY OPS-03, OPS-06: every kind of bad file an operator might push — a YAML syntax error,
/// an unknown key, a wrong type, an unknown `token_use`, a missing required field — is refused
/// as a whole with file, line and key, so it can never be partly applied (a reload keeps the old
/// snapshot; a first start exits non-zero, see tests/binary.rs).
#[test]
fn bad_files_are_refused_whole_with_line_and_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("routes:\n  - name: app\n    path: /**\n   bad: [\n", "", "YAML"),
        ("routes:\n  - name: app\n    path: /**\n    methodz: [GET]\n", "15:5", "methodz"),
        ("routes:\n  - name: app\n    path: /**\n    auth: nope\n", "15:11", "auth"),
        ("routes:\n  - name: app\n    path: /**\n    require:\n      token_use: refresh\n", "16:18", "token_use"),
        ("routes:\n  - name: app\n", "13:5", "path"),
    ];
    let head = BASE.split("routes:").next().unwrap();
    for (tail, location, fragment) in cases {
        let yaml = format!("{head}{tail}");
        let errs = errors(&yaml);
        assert!(!errs.is_empty(), "{tail:?} loaded");
        assert!(
            errs.iter().any(|e| e.starts_with(&format!("p.yaml:{location}")) && e.contains(fragment)),
            "{tail:?}: expected p.yaml:{location}… mentioning {fragment:?}, got {errs:#?}"
        );
    }
}
