use super::*;
use crate::telemetry::metrics::Metrics;
use serde_json::json;

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
    let s = strip_untrusted(&mut h, &identity(), &metrics);
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

#[test]
fn csv_groups_cannot_forge_another_group() {
    let groups = vec!["a,b".to_owned(), "Ünïcode".to_owned(), "x y".to_owned(), "plain-1._~".to_owned()];
    assert_eq!(encode_groups_csv(&groups), "a%2Cb,%C3%9Cn%C3%AFcode,x%20y,plain-1._~");
    assert_eq!(encode_groups_csv(&[]), "");
    assert_eq!(encode_groups_json(&groups), r#"["a,b","\u00dcn\u00efcode","x y","plain-1._~"]"#);
    assert_eq!(encode_groups_json(&["q\"\\\n".to_owned()]), r#"["q\"\\\u000a"]"#);
}

#[test]
fn prepare_identity_rules() {
    let id = identity();
    let claims = json!({"email": "a@example.com"});
    let ok = prepare_identity("u1", &["g".into()], claims.as_object().unwrap(), &id, 8192).unwrap();
    assert_eq!(ok.sub, "u1");
    assert_eq!(ok.claims[0].1, "a@example.com");
    // Absent claim → no header.
    let none = prepare_identity("u1", &[], json!({}).as_object().unwrap(), &id, 8192).unwrap();
    assert!(none.claims.is_empty());
    assert_eq!(none.groups, "");
    // CLV-04: control characters, non-strings and oversize are unencodable.
    for bad in
        [json!({"email": "a\r\nb"}), json!({"email": {"x": 1}}), json!({"email": ["a"]}), json!({"email": "ü@x"})]
    {
        assert!(prepare_identity("u1", &[], bad.as_object().unwrap(), &id, 8192).is_err(), "{bad}");
    }
    let number = prepare_identity("u1", &[], json!({"email": 42}).as_object().unwrap(), &id, 8192).unwrap();
    assert_eq!(number.claims[0].1, "42");
    assert!(prepare_identity("u1", &["x".repeat(9000)], json!({}).as_object().unwrap(), &id, 8192).is_err());
}

#[test]
fn h2c_and_websocket_detection() {
    assert!(is_h2c_upgrade(&map(&[("upgrade", "h2c"), ("connection", "Upgrade, HTTP2-Settings")])));
    assert!(is_h2c_upgrade(&map(&[("http2-settings", "AAMAAABkAAQAAP__")])));
    assert!(!is_h2c_upgrade(&map(&[("upgrade", "websocket")])));
    assert!(is_websocket_upgrade(&map(&[("upgrade", "WebSocket"), ("connection", "keep-alive, Upgrade")])));
    assert!(!is_websocket_upgrade(&map(&[("upgrade", "websocket")])));
}
