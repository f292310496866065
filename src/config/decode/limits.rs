//! `limits:` — sizes, counts and read times, each within a sane range.

use super::{field, secs};
use crate::config::model::*;
use crate::config::yaml::{Node, Reader, field_path};

pub(super) const LIMITS_KEYS: &[&str] = &[
    "header_read_timeout",
    "max_header_bytes",
    "max_uri_bytes",
    "max_token_bytes",
    "max_identity_header_bytes",
    "max_connections",
    "token_cache_entries",
];

pub(super) fn default_limits() -> Limits {
    Limits {
        header_read_timeout: secs(10),
        max_header_bytes: 32_768,
        max_uri_bytes: 8_192,
        max_token_bytes: 16_384,
        max_identity_header_bytes: 8_192,
        max_connections: 10_000,
        token_cache_entries: 100_000,
    }
}

pub(super) fn limits(r: &mut Reader, n: &Node) -> Option<Limits> {
    let p = "limits";
    let m = r.map(n, p, LIMITS_KEYS)?;
    let d = default_limits();
    let num = |r: &mut Reader, key: &str, default: usize, min: u64, max: u64| -> usize {
        let v = field(r, &m, key, p, default as u64, |r, n, p| r.u64(n, p));
        if (v < min || v > max)
            && let Some(node) = m.get(key)
        {
            r.error(node.span, &field_path(p, key), format!("must be between {min} and {max}"));
        }
        v as usize
    };
    let l = Limits {
        header_read_timeout: field(r, &m, "header_read_timeout", p, d.header_read_timeout, |r, n, p| r.duration(n, p)),
        // hyper's read buffer cannot be smaller than 8 KiB.
        max_header_bytes: num(r, "max_header_bytes", d.max_header_bytes, 8_192, 1_048_576),
        max_uri_bytes: num(r, "max_uri_bytes", d.max_uri_bytes, 256, 1_048_576),
        max_token_bytes: num(r, "max_token_bytes", d.max_token_bytes, 256, 1_048_576),
        max_identity_header_bytes: num(r, "max_identity_header_bytes", d.max_identity_header_bytes, 64, 1_048_576),
        max_connections: num(r, "max_connections", d.max_connections, 1, 10_000_000),
        token_cache_entries: num(r, "token_cache_entries", d.token_cache_entries, 0, 100_000_000),
    };
    if l.header_read_timeout.is_zero()
        && let Some(node) = m.get("header_read_timeout")
    {
        r.error(node.span, "limits.header_read_timeout", "must be greater than 0");
    }
    Some(l)
}
