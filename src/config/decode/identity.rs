//! `identity_headers:` — the header names identity is forwarded in, and their encoding.

use std::collections::HashSet;

use http::HeaderName;

use super::{enumerated, field};
use crate::config::model::*;
use crate::config::yaml::{self, Node, Reader};

pub(super) const IDENTITY_KEYS: &[&str] = &["sub", "groups", "groups_format", "claims", "forward_token"];

pub(super) fn default_identity() -> IdentityHeaders {
    IdentityHeaders {
        sub: HeaderName::from_static("x-user-sub"),
        groups: HeaderName::from_static("x-user-groups"),
        groups_format: GroupsFormat::Csv,
        claims: Vec::new(),
        forward_token: false,
    }
}

/// Headers Portcullis manages itself or that carry framing; an identity header must not be one.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "cookie",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "content-type",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
    "forwarded",
    "expect",
    "proxy",
];

fn identity_header_name(r: &mut Reader, n: &Node, path: &str) -> Option<HeaderName> {
    let s = r.string(n, path)?;
    // Only `A-Z a-z 0-9 -`: every client header holding any other byte is dropped on arrival
    // (CGI/PHP bridges fold `_`, `.`, `~`, … into `_`), so Portcullis would strip a client's
    // copy of such a name and the app could not tell ours from one spelled differently
    // (SECURITY HDR-04).
    if !is_plain_name(&s) {
        r.error(
            n.span,
            path,
            format!("`{s}`: identity header names may hold only letters, digits and `-` (no `_`, `.`, `~`, …)"),
        );
        return None;
    }
    match HeaderName::try_from(s.as_str()) {
        Ok(h) if RESERVED_HEADERS.contains(&h.as_str()) => {
            r.error(n.span, path, format!("`{s}` is managed by Portcullis and cannot carry identity"));
            None
        }
        Ok(h) => Some(h),
        Err(_) => {
            r.error(n.span, path, format!("`{s}` is not a valid header name"));
            None
        }
    }
}

pub(super) fn identity(r: &mut Reader, n: &Node) -> Option<IdentityHeaders> {
    let p = "identity_headers";
    let m = r.map(n, p, IDENTITY_KEYS)?;
    let d = default_identity();
    let sub = match m.get("sub") {
        Some(n) => identity_header_name(r, n, "identity_headers.sub"),
        None => Some(d.sub),
    };
    let groups = match m.get("groups") {
        Some(n) => identity_header_name(r, n, "identity_headers.groups"),
        None => Some(d.groups),
    };
    let groups_format = field(r, &m, "groups_format", p, GroupsFormat::Csv, |r, n, p| {
        enumerated(r, n, p, &[("csv", GroupsFormat::Csv), ("json", GroupsFormat::Json)])
    });
    let forward_token = field(r, &m, "forward_token", p, false, |r, n, p| r.bool(n, p));
    let mut claims = Vec::new();
    let mut ok = true;
    if let Some(cn) = m.get("claims") {
        let cp = "identity_headers.claims";
        // An empty `known` list means free-form keys (header names chosen by the user).
        if let Some(view) = r.map(cn, cp, &[]) {
            for (k, v) in view.entries() {
                let header = identity_header_name(r, k, cp);
                let claim = r.string(v, &format!("{cp}.{}", key_text(k)));
                match (header, claim) {
                    (Some(h), Some(c)) if !c.is_empty() => claims.push((h, c)),
                    (Some(_), Some(_)) => {
                        r.error(v.span, cp, "the claim name must not be empty");
                        ok = false;
                    }
                    _ => ok = false,
                }
            }
        } else {
            ok = false;
        }
    }
    let (sub, groups) = (sub?, groups?);
    let mut seen: HashSet<String> = HashSet::new();
    for h in std::iter::once(&sub).chain(std::iter::once(&groups)).chain(claims.iter().map(|(h, _)| h)) {
        if !seen.insert(env_name(h.as_str())) {
            r.error(m.span(), p, format!("identity header `{h}` is configured twice"));
            ok = false;
        }
    }
    ok.then_some(IdentityHeaders { sub, groups, groups_format, claims, forward_token })
}

fn key_text(k: &Node) -> String {
    match &k.value {
        yaml::Value::Scalar { text, .. } => text.clone(),
        _ => "?".to_owned(),
    }
}
