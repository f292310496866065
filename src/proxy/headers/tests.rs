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
    // HDR-01..04, RULE-08
    let metrics = Metrics::new();
    let mut h = map(&[
        ("X-User-Sub", "admin"),
        ("x-user-sub", "admin2"),
        ("X-User_Sub", "admin"),
        ("X_User_Sub", "admin"),
        ("x-user_groups", "Admins"),
        ("X-USER-GROUPS", "Admins"),
        ("x_user_email", "ceo@corp"),
        ("X-Some_Header", "x"),
        ("Forwarded", "for=127.0.0.1"),
        ("X-Real-IP", "127.0.0.1"),
        ("X-Original-URL", "/admin"),
        ("X-HTTP-Method-Override", "DELETE"),
        ("Proxy", "http://evil"),
        ("Accept", "*/*"),
    ]);
    let s = strip_untrusted(&mut h, &identity());
    assert!(!metrics.render().contains("portcullis_stripped_headers_total{"), "stripping records nothing");
    s.record(&metrics);
    assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), vec!["accept"]);
    assert_eq!(s, Stripped { identity: 7, underscore: 1, forwarding: 5 });
    assert!(metrics.render().contains(r#"portcullis_stripped_headers_total{kind="identity"} 7"#));
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
