//! Header stripping and rewriting (SECURITY HDR-01..06, HDR-09, HDR-11, RULE-08, TOK-05). The
//! input is a list of `name:value` lines — any spelling, duplicates, `Connection` naming anything.
//! The first byte picks a public route (no identity) or a verified identity.
//!
//! Property: after `strip_untrusted` and `rewrite_for_upstream`, no outgoing header, folded as a
//! CGI/FastCGI/PHP bridge would (upper-case; `-`, `_`, `.` and every other byte that is not a
//! letter or digit read as `_`), equals an identity header's folded name unless Portcullis set
//! it, and then it carries exactly Portcullis's one value; no name holding a byte outside
//! `A-Z a-z 0-9 -`, hop-by-hop field, client `Authorization` or untrusted forwarding header
//! remains.
#![no_main]

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use portcullis::auth::policy::{self, Authn};
use portcullis::auth::route::RouteTable;
use portcullis::proxy::headers::{self, Forwarding};

/// The variable name a CGI-style bridge derives from a header name (without `HTTP_`), written out
/// here so the property does not share the code it checks.
fn cgi(name: &str) -> String {
    name.bytes().map(|b| if b.is_ascii_alphanumeric() { b.to_ascii_uppercase() as char } else { '_' }).collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let f = portcullis_fuzz::fixture();
    let mut map = HeaderMap::new();
    for line in rest.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(&line[colon + 1..]))
        else {
            continue;
        };
        map.append(name, value);
    }
    let identity = &f.config.identity;
    headers::strip_untrusted(&mut map, identity);

    let table = RouteTable::new(&f.config.routes, false);
    let (path, authn) =
        if mode % 2 == 0 { ("/public/x", Authn::Skipped) } else { ("/app", Authn::Verified(Arc::clone(&f.verified))) };
    let route = table.find(&Method::GET, path).expect("fixture routes");
    let names: Vec<String> = f.config.issuers.iter().map(|i| i.name.clone()).collect();
    let permit = policy::decide(route, authn, &names).expect("fixture permit");
    let request_id = HeaderValue::from_static("rid");
    let forwarding = Forwarding {
        peer: "127.0.0.1:1".parse().unwrap(),
        tls: false,
        request_id: &request_id,
        identity,
        credential_headers: &[],
    };
    headers::rewrite_for_upstream(&mut map, &permit, &forwarding);

    let mut ours: Vec<(HeaderName, HeaderValue)> = Vec::new();
    if let Some(id) = permit.identity() {
        ours.push((identity.sub.clone(), id.sub.clone()));
        ours.push((identity.groups.clone(), id.groups.clone()));
        ours.extend(id.claims.iter().cloned());
    }
    let mut reserved: Vec<String> = vec![cgi(identity.sub.as_str()), cgi(identity.groups.as_str())];
    reserved.extend(identity.claims.iter().map(|(h, _)| cgi(h.as_str())));

    for name in map.keys() {
        let n = name.as_str();
        assert!(
            n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
            "a name with a byte outside A-Z a-z 0-9 - was forwarded: {n}"
        );
        assert!(
            !matches!(
                n,
                "connection"
                    | "keep-alive"
                    | "te"
                    | "trailer"
                    | "transfer-encoding"
                    | "upgrade"
                    | "proxy-connection"
                    | "proxy-authorization"
                    | "authorization"
                    | "forwarded"
                    | "x-real-ip"
                    | "x-original-url"
            ),
            "{n} forwarded"
        );
        if reserved.contains(&cgi(n)) {
            let values: Vec<&HeaderValue> = map.get_all(name).iter().collect();
            let expected = ours.iter().find(|(h, _)| h == name);
            assert!(expected.is_some(), "client header {n} collides with an identity header");
            assert_eq!(values, vec![&expected.unwrap().1], "{n} does not carry exactly our value");
        }
    }
    for (name, value) in &ours {
        assert_eq!(map.get_all(name).iter().collect::<Vec<_>>(), vec![value], "{name} missing or duplicated");
    }
});
