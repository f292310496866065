//! `jwks:` — key-fetching settings shared by every issuer.

use std::path::PathBuf;

use super::{field, secs};
use crate::config::model::*;
use crate::config::yaml::{Node, Reader, field_path};

pub(super) const JWKS_KEYS: &[&str] = &[
    "refresh_interval",
    "kid_miss_cooldown",
    "fetch_timeout",
    "max_stale",
    "max_bytes",
    "max_keys",
    "ca_file",
    "proxy",
];

pub(super) fn default_jwks() -> Jwks {
    Jwks {
        refresh_interval: secs(3600),
        kid_miss_cooldown: secs(10),
        fetch_timeout: secs(3),
        max_stale: secs(24 * 3600),
        max_bytes: 262_144,
        max_keys: 100,
        ca_file: None,
        proxy: None,
    }
}

pub(super) fn jwks(r: &mut Reader, n: &Node) -> Option<Jwks> {
    let p = "jwks";
    let m = r.map(n, p, JWKS_KEYS)?;
    let d = default_jwks();
    let j = Jwks {
        refresh_interval: field(r, &m, "refresh_interval", p, d.refresh_interval, |r, n, p| r.duration(n, p)),
        kid_miss_cooldown: field(r, &m, "kid_miss_cooldown", p, d.kid_miss_cooldown, |r, n, p| r.duration(n, p)),
        fetch_timeout: field(r, &m, "fetch_timeout", p, d.fetch_timeout, |r, n, p| r.duration(n, p)),
        max_stale: field(r, &m, "max_stale", p, d.max_stale, |r, n, p| r.duration(n, p)),
        max_bytes: field(r, &m, "max_bytes", p, d.max_bytes, |r, n, p| r.u64(n, p)),
        max_keys: field(r, &m, "max_keys", p, d.max_keys as u64, |r, n, p| r.u64(n, p)) as usize,
        ca_file: m.get("ca_file").and_then(|n| r.string(n, "jwks.ca_file")).map(PathBuf::from),
        proxy: m.get("proxy").and_then(|n| {
            let s = r.string(n, "jwks.proxy")?;
            match s.parse::<http::Uri>() {
                Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => Some(s),
                _ => {
                    r.error(n.span, "jwks.proxy", format!("`{s}` is not a proxy URL such as http://egress:3128"));
                    None
                }
            }
        }),
    };
    for (key, zero) in [
        ("refresh_interval", j.refresh_interval.is_zero()),
        ("fetch_timeout", j.fetch_timeout.is_zero()),
        ("max_bytes", j.max_bytes == 0),
        ("max_keys", j.max_keys == 0),
    ] {
        if zero && let Some(n) = m.get(key) {
            r.error(n.span, &field_path(p, key), "must be greater than 0");
        }
    }
    Some(j)
}
