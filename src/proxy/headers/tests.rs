use super::*;
use crate::config::GroupsFormat;
use crate::telemetry::metrics::Metrics;

fn identity() -> config::IdentityHeaders {
    config::IdentityHeaders {
        sub: HeaderName::from_static("x-user-sub"),
        groups: HeaderName::from_static("x-user-groups"),
        groups_format: GroupsFormat::Csv,
        claims: vec![(HeaderName::from_static("x-user-email"), "email".into())],
        forward_token: false,
    }
}

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut m = HeaderMap::new();
    for (k, v) in pairs {
        m.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    m
}

#[test]
fn every_identity_spelling_is_stripped() {
    // HDR-01..04, HDR-09, RULE-08
    let metrics = Metrics::new();
    let mut h = map(&[
        ("X-User-Sub", "admin"),
        ("x-user-sub", "admin2"),
        ("X-User_Sub", "admin"),
        ("X_User_Sub", "admin"),
        ("X-User.Sub", "admin"),
        ("X.User.Sub", "admin"),
        ("X-User~Sub", "admin"),
        ("x-user_groups", "Admins"),
        ("X-USER-GROUPS", "Admins"),
        ("x_user_email", "ceo@corp"),
        ("x-user-email!", "ceo@corp"), // folds to X_USER_EMAIL_: not ours, still not plain
        ("X-Some_Header", "x"),
        ("Remote.User", "admin"),
        ("SCRIPT_NAME", "/admin"),
        ("Forwarded", "for=127.0.0.1"),
        ("X-Real-IP", "127.0.0.1"),
        ("X-Original-URL", "/admin"),
        ("X-HTTP-Method-Override", "DELETE"),
        ("Proxy", "http://evil"),
        ("Accept", "*/*"),
        ("X-Plain-9", "kept"),
    ]);
    let s = strip_untrusted(&mut h, &identity());
    assert!(!metrics.render().contains("portcullis_stripped_headers_total{"), "stripping records nothing");
    s.record(&metrics);
    let mut kept: Vec<_> = h.keys().map(|k| k.as_str()).collect();
    kept.sort();
    assert_eq!(kept, vec!["accept", "x-plain-9"]);
    assert_eq!(s, Stripped { identity: 10, invalid_name: 4, forwarding: 5 });
    let text = metrics.render();
    for (kind, n) in [("identity", 10), ("invalid_name", 4), ("forwarding", 5)] {
        assert!(text.contains(&format!("portcullis_stripped_headers_total{{kind=\"{kind}\"}} {n}")), "{kind}: {text}");
    }
}

#[test]
fn a_request_with_nothing_to_strip_is_left_as_it_is() {
    let metrics = Metrics::new();
    let mut h = map(&[("Accept", "*/*"), ("X-User-Subject", "kept"), ("X-User", "kept"), ("Content-Type", "a/b")]);
    let before = h.clone();
    let s = strip_untrusted(&mut h, &identity());
    assert_eq!(s, Stripped::default());
    s.record(&metrics);
    assert_eq!(h, before);
    assert!(!metrics.render().contains("portcullis_stripped_headers_total{"));
}

/// The variable a CGI-style bridge makes of a header name, spelled out (the widest folding).
fn cgi_name(name: &str) -> String {
    name.bytes().map(|b| if b.is_ascii_alphanumeric() { b.to_ascii_uppercase() as char } else { '_' }).collect()
}

#[test]
fn cgi_name_folds_every_non_alphanumeric_byte() {
    assert_eq!(cgi_name("x-user.sub"), "X_USER_SUB");
    assert_eq!(cgi_name("X~User_Sub"), "X_USER_SUB");
    assert_eq!(cgi_name("a!#$%&'*+-.^_`|~9"), "A_______________9");
    assert!(same_cgi_name("x-user.sub", "X_USER~SUB") && !same_cgi_name("x-user-sub", "x-user-sub-"));
}

/// The identity headers of [`identity`], each with one printable ASCII byte (space included)
/// replaced or inserted at each position — every name a client could try next to ours.
fn one_byte_variants() -> Vec<String> {
    let id = identity();
    let names = [id.sub.as_str().to_owned(), "X-User-Groups".to_owned(), id.claims[0].0.as_str().to_owned()];
    let mut out = Vec::new();
    for name in &names {
        for b in 0x20u8..=0x7e {
            let c = b as char;
            for i in 0..=name.len() {
                let mut inserted = name.clone();
                inserted.insert(i, c);
                out.push(inserted);
                if i < name.len() {
                    let mut replaced = name.clone();
                    replaced.replace_range(i..=i, &c.to_string());
                    out.push(replaced);
                }
            }
        }
    }
    out
}

/// Whether a bridge would read `name` as one of the configured identity headers.
fn folds_to_identity(name: &str, id: &config::IdentityHeaders) -> bool {
    let folded = cgi_name(name);
    folded == cgi_name(id.sub.as_str())
        || folded == cgi_name(id.groups.as_str())
        || id.claims.iter().any(|(h, _)| folded == cgi_name(h.as_str()))
}

#[test]
fn no_one_byte_variant_of_an_identity_header_survives_stripping() {
    // HDR-02, HDR-04, HDR-09, RULE-08: every printable ASCII byte, replaced or inserted at every
    // position of each identity header's name. A name `http` refuses cannot reach a HeaderMap
    // (hyper refuses it the same way: 400); every other one either is gone after stripping or
    // does not fold onto an identity variable under the widest CGI folding.
    let id = identity();
    let (mut tried, mut stripped_ones) = (0, 0);
    for name in one_byte_variants() {
        let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
            assert!(
                name.bytes().any(|b| !b.is_ascii_alphanumeric() && !b"!#$%&'*+-.^_`|~".contains(&b)),
                "{name:?} is a token yet http refused it"
            );
            continue;
        };
        tried += 1;
        let mut h = HeaderMap::new();
        h.append(header::ACCEPT, HeaderValue::from_static("*/*"));
        h.append(header.clone(), HeaderValue::from_static("spoofed"));
        strip_untrusted(&mut h, &id);
        for kept in h.keys() {
            assert!(!folds_to_identity(kept.as_str(), &id), "{name:?} reached the app as {kept}");
            assert!(config::is_plain_name(kept.as_str()), "{name:?}: a name with an odd byte was kept: {kept}");
        }
        assert!(h.contains_key(header::ACCEPT), "{name:?}: an innocent header went with it");
        if !h.contains_key(&header) {
            stripped_ones += 1;
        }
    }
    // Every token byte gives a name http accepts (3 names × 16 non-alphanumeric token bytes × 2
    // edits at least), and of those only plain names that fold elsewhere are kept.
    assert!(tried > 3 * 16 * 2 * 10 && stripped_ones > 3 * 16 * 2 * 10, "{tried} tried, {stripped_ones} stripped");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    /// HDR-02, HDR-04, HDR-09: any number of token bytes replaced or inserted anywhere, in any case,
    /// among other headers: nothing that folds onto an identity variable is left, nothing with a
    /// byte outside `A-Z a-z 0-9 -` is left, and every other plain header is kept untouched.
    #[test]
    fn stripping_leaves_no_identity_spelling_and_keeps_plain_headers(
        base in proptest::sample::select(vec!["X-User-Sub", "X-User-Groups", "X-User-Email"]),
        edits in proptest::collection::vec(
            (proptest::bool::ANY, 0usize..16, proptest::sample::select(
                b"!#$%&'*+-.^_`|~aAzZ09-_.".to_vec())), 0..4),
        upper in proptest::collection::vec(proptest::bool::ANY, 16),
        others in proptest::collection::vec("[A-Za-z0-9][A-Za-z0-9_.~-]{0,12}", 0..6),
    ) {
        let mut name: Vec<u8> = base.bytes().collect();
        for (insert, at, b) in edits {
            let at = at % (name.len() + 1);
            if insert || at == name.len() { name.insert(at, b) } else { name[at] = b }
        }
        for (b, up) in name.iter_mut().zip(upper) {
            if up { b.make_ascii_uppercase() } else { b.make_ascii_lowercase() }
        }
        let id = identity();
        let mut h = HeaderMap::new();
        h.append(HeaderName::from_bytes(&name).unwrap(), HeaderValue::from_static("spoofed"));
        for o in &others {
            h.append(HeaderName::from_bytes(o.as_bytes()).unwrap(), HeaderValue::from_static("other"));
        }
        let before = h.clone();
        strip_untrusted(&mut h, &id);
        for kept in h.keys() {
            proptest::prop_assert!(!folds_to_identity(kept.as_str(), &id), "{} kept", kept);
            proptest::prop_assert!(config::is_plain_name(kept.as_str()), "{} kept", kept);
        }
        for (n, v) in &before {
            let s = n.as_str();
            if config::is_plain_name(s) && !folds_to_identity(s, &id) && !UNTRUSTED.contains(&s) {
                proptest::prop_assert!(h.get_all(n).iter().any(|x| x == v), "{} dropped", s);
            }
        }
    }
}

#[test]
fn connection_named_headers_are_removed_but_host_kept() {
    // HDR-06
    let mut h = map(&[
        ("connection", "close, X-Foo, Host, keep-alive"),
        ("x-foo", "1"),
        ("host", "app"),
        ("keep-alive", "timeout=5"),
        ("te", "trailers"),
        ("upgrade", "websocket"),
        ("proxy-authorization", "Basic x"),
        ("accept", "*/*"),
    ]);
    strip_hop_by_hop(&mut h);
    let mut names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
    names.sort();
    assert_eq!(names, vec!["accept", "host"]);
}

fn permit_for(sub: &str) -> Permit {
    use crate::auth::policy::{Authn, decide};
    use crate::auth::verify::Verified;
    use crate::config::{AuthMode, Mode, Require, Route, pattern::Pattern, yaml::Span};
    let route = Route {
        name: "r".into(),
        path: Pattern::parse("/r").unwrap(),
        methods: None,
        auth: AuthMode::Required,
        mode: Mode::Enforce,
        require: Require::default(),
        login: true,
        span: Span { line: 1, col: 1 },
    };
    decide(&route, Authn::Verified(std::sync::Arc::new(Verified::for_tests(sub))), &["main".to_owned()]).unwrap()
}

#[test]
fn the_upstream_head_loses_every_removed_field_in_every_line_and_keeps_the_rest() {
    // SECURITY HDR-03, HDR-06, SMUG-01, TOK-05: one pass decides what goes; every field line of a
    // doomed name goes, whatever its position, and a `Connection`-named identity header cannot
    // remove the identity set afterwards.
    let request_id = HeaderValue::from_static("rid-1");
    let custom = [HeaderName::from_static("x-api-token")];
    let mut id = identity();
    let permit = permit_for("alice");
    for forward_token in [false, true] {
        id.forward_token = forward_token;
        let f = Forwarding {
            peer: "10.0.0.7:5000".parse().unwrap(),
            tls: true,
            request_id: &request_id,
            identity: &id,
            credential_headers: &custom,
        };
        let mut h = map(&[
            ("accept", "*/*"),
            ("authorization", "Bearer a"),
            ("connection", "keep-alive, X-User-Sub, x-app-hop"),
            ("content-length", "5"),
            ("x-app-hop", "1"),
            ("authorization", "Bearer b"),
            ("expect", "100-continue"),
            ("x-api-token", "t"),
            ("content-length", "5"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x-t"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
            ("x-forwarded-for", "203.0.113.7"),
            ("host", "app"),
            ("x-kept", "1"),
            ("x-kept", "2"),
        ]);
        rewrite_for_upstream(&mut h, &permit, &f);
        let mut names: Vec<_> = h.keys().map(|k| k.as_str().to_owned()).collect();
        names.sort();
        let mut want = vec![
            "accept",
            "host",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
            "x-kept",
            "x-request-id",
            "x-user-groups",
            "x-user-sub",
        ];
        if forward_token {
            want.extend(["authorization", "x-api-token"]);
            want.sort();
        }
        assert_eq!(names, want, "forward_token: {forward_token}");
        assert_eq!(h.get_all("x-kept").iter().count(), 2);
        assert_eq!(h.get_all("x-user-sub").iter().collect::<Vec<_>>(), vec!["alice"]);
        assert_eq!(h["x-forwarded-for"], "203.0.113.7, 10.0.0.7");
        if forward_token {
            assert_eq!(h.get_all("authorization").iter().count(), 2, "both lines kept when forwarded");
        }
    }
}
