//! `issuers:` — the trusted user pools: the `cognito:` shorthand or an explicit `issuer` with its
//! JWKS location, client ids and token use. Names and `iss` values must be unique.

use std::collections::HashMap;

use super::{field, required, token_use};
use crate::config::model::*;
use crate::config::yaml::{Node, Reader, Span, field_path};

pub(super) const ISSUER_KEYS: &[&str] =
    &["name", "cognito", "issuer", "jwks_uri", "jwks_file", "client_ids", "token_use", "verify_at_hash"];

pub(super) const COGNITO_KEYS: &[&str] = &["region", "user_pool_id"];

pub(super) fn issuers(r: &mut Reader, n: &Node) -> Option<Vec<Issuer>> {
    let items = r.seq(n, "issuers")?;
    if items.is_empty() {
        r.error(n.span, "issuers", "at least one issuer is required");
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    let mut names: HashMap<String, Span> = HashMap::new();
    let mut iss_values: HashMap<String, Span> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("issuers[{i}]");
        match issuer(r, item, &p) {
            Some(iss) => {
                if let Some(first) = names.insert(iss.name.clone(), item.span) {
                    r.error(
                        item.span,
                        &p,
                        format!("duplicate issuer name `{}` (first at line {})", iss.name, first.line),
                    );
                    ok = false;
                }
                if let Some(first) = iss_values.insert(iss.issuer.clone(), item.span) {
                    r.error(
                        item.span,
                        &p,
                        format!("issuer `{}` is configured twice (first at line {})", iss.issuer, first.line),
                    );
                    ok = false;
                }
                out.push(iss);
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// AWS region: `eu-west-1`, `us-gov-west-1`, `ap-southeast-2` (SECURITY OUT-02).
pub(super) fn valid_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let (head, rest) = match parts.as_slice() {
        [a, b, c] => (*a, vec![*b, *c]),
        [a, "gov", b, c] => (*a, vec![*b, *c]),
        _ => return false,
    };
    head.len() == 2
        && head.bytes().all(|b| b.is_ascii_lowercase())
        && !rest[0].is_empty()
        && rest[0].bytes().all(|b| b.is_ascii_lowercase())
        && rest[1].len() == 1
        && rest[1].bytes().all(|b| b.is_ascii_digit())
}

pub(super) fn issuer(r: &mut Reader, n: &Node, p: &str) -> Option<Issuer> {
    let m = r.map(n, p, ISSUER_KEYS)?;
    let name = required(r, &m, "name", p).and_then(|n| {
        let s = r.string(n, &field_path(p, "name"))?;
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            r.error(n.span, &field_path(p, "name"), "issuer names use letters, digits, `-` and `_`");
            return None;
        }
        Some(s)
    });
    let client_ids = required(r, &m, "client_ids", p).and_then(|n| r.string_list(n, &field_path(p, "client_ids")));
    let token_use = match m.get("token_use") {
        Some(n) => token_use(r, n, &field_path(p, "token_use")),
        None => {
            // Deliberately no default: access and id tokens carry different claims, and guessing
            // wrong either rejects everyone or admits the wrong token type (SECURITY CLM-09).
            r.error(m.span(), p, "`token_use` is required (access, id or any)");
            None
        }
    };
    let verify_at_hash = field(r, &m, "verify_at_hash", p, false, |r, n, p| r.bool(n, p));

    let cognito = m.get("cognito");
    let explicit = m.get("issuer");
    let (issuer, keys, is_cognito) = match (cognito, explicit) {
        (Some(_), Some(e)) => {
            r.error(e.span, &field_path(p, "issuer"), "use either `cognito` or `issuer`, not both");
            return None;
        }
        (None, None) => {
            r.error(
                m.span(),
                p,
                "each issuer needs `cognito: {region, user_pool_id}` or `issuer` + `jwks_uri`/`jwks_file`",
            );
            return None;
        }
        (Some(c), None) => {
            let cp = field_path(p, "cognito");
            for key in ["jwks_uri", "jwks_file"] {
                if let Some(n) = m.get(key) {
                    r.error(n.span, &field_path(p, key), "the cognito shorthand derives the JWKS URL; remove this key");
                }
            }
            let cm = r.map(c, &cp, COGNITO_KEYS)?;
            let region = required(r, &cm, "region", &cp).and_then(|n| {
                let s = r.string(n, &field_path(&cp, "region"))?;
                if !valid_region(&s) {
                    r.error(
                        n.span,
                        &field_path(&cp, "region"),
                        format!("`{s}` is not an AWS region such as eu-west-1"),
                    );
                    return None;
                }
                Some(s)
            });
            let pool = required(r, &cm, "user_pool_id", &cp)
                .and_then(|n| r.string(n, &field_path(&cp, "user_pool_id")).map(|s| (s, n.span)));
            let (region, (pool, pool_span)) = (region?, pool?);
            // The pool id becomes part of a URL: only `<region>_<alphanumerics>` is accepted, and
            // its region must be the configured one (SECURITY OUT-02).
            let valid = pool.split_once('_').is_some_and(|(pr, id)| {
                pr == region && !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric())
            });
            if !valid {
                r.error(
                    pool_span,
                    &field_path(&cp, "user_pool_id"),
                    format!(
                        "`{pool}` is not a user pool id of region {region} (expected {region}_<letters and digits>)"
                    ),
                );
                return None;
            }
            let issuer = format!("https://cognito-idp.{region}.amazonaws.com/{pool}");
            let jwks = format!("{issuer}/.well-known/jwks.json");
            (issuer, KeyLocation::Url(jwks), true)
        }
        (None, Some(e)) => {
            let issuer = r.string(e, &field_path(p, "issuer"))?;
            if issuer.is_empty() || issuer.chars().any(char::is_whitespace) {
                r.error(e.span, &field_path(p, "issuer"), "the issuer must be a non-empty URL without spaces");
                return None;
            }
            let keys = match (m.get("jwks_uri"), m.get("jwks_file")) {
                (Some(u), None) => {
                    let s = r.string(u, &field_path(p, "jwks_uri"))?;
                    if let Err(e) = check_jwks_uri(&s) {
                        r.error(u.span, &field_path(p, "jwks_uri"), e);
                        return None;
                    }
                    KeyLocation::Url(s)
                }
                (None, Some(f)) => KeyLocation::File(r.string(f, &field_path(p, "jwks_file"))?.into()),
                (Some(_), Some(f)) => {
                    r.error(f.span, &field_path(p, "jwks_file"), "use either `jwks_uri` or `jwks_file`, not both");
                    return None;
                }
                (None, None) => {
                    r.error(e.span, p, "an explicit `issuer` needs `jwks_uri` or `jwks_file`");
                    return None;
                }
            };
            (issuer, keys, false)
        }
    };
    Some(Issuer {
        name: name?,
        issuer,
        keys,
        client_ids: client_ids?,
        token_use: token_use?,
        verify_at_hash,
        cognito: is_cognito,
    })
}

/// JWKS URLs are https, except http to a loopback host (tests, local emulators). Keys fetched
/// over plain http from anywhere else could be replaced in transit (SECURITY OUT-01/02).
pub fn check_jwks_uri(s: &str) -> Result<(), String> {
    let uri: http::Uri = s.parse().map_err(|_| format!("`{s}` is not a URL"))?;
    let host = uri.host().ok_or_else(|| format!("`{s}` has no host"))?;
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(format!("`{s}`: credentials in the JWKS URL are not supported"));
    }
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback_host(host) => Ok(()),
        Some("http") => Err(format!("`{s}`: http:// is only allowed for loopback hosts; use https://")),
        _ => Err(format!("`{s}`: the JWKS URL must be https://")),
    }
}
