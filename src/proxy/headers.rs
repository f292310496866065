//! Request and response header rewriting (SPEC §4): the only code that removes client headers
//! and sets identity headers. [`strip_untrusted`] runs first on every request, on every route;
//! [`rewrite_for_upstream`] runs last, after the policy issued a [`Permit`], and is the only
//! place identity is added — so nothing a client sent can pose as identity, and identity only
//! comes from a token that passed verification for this route. The identity values themselves
//! are encoded by `auth::identity`, once per verified token.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::auth::policy::Permit;
use crate::config;
use crate::telemetry::metrics::Metrics;

/// `X-Forwarded-For` is not in this list: per SPEC §4 the peer address is appended to the
/// client's value, so apps that trust only the right-most entries keep working.
///
/// Client headers with these names are removed on arrival (any other spelling of them holds a
/// byte outside `A-Z a-z 0-9 -` and goes as an invalid name). Besides the configured identity
/// headers: forwarding metadata the app may trust, original-URL headers some frameworks route on,
/// method overrides, and `Proxy` (httpoxy: CGI turns it into `HTTP_PROXY`).
const UNTRUSTED: &[&str] = &[
    "forwarded",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-forwarded-ssl",
    "x-forwarded-scheme",
    // gunicorn trusts it (with -Proto and -Ssl) from loopback peers as a "secure scheme" header.
    "x-forwarded-protocol",
    "x-forwarded-uri",
    "x-forwarded-path",
    "x-real-ip",
    "x-client-ip",
    "x-original-url",
    "x-original-uri",
    "x-original-method",
    "x-rewrite-url",
    "x-envoy-original-path",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "front-end-https",
    "x-url-scheme",
    "proxy",
];

/// Hop-by-hop fields (RFC 9110 §7.6.1) plus the proxy-auth pair; never forwarded in either
/// direction.
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];

/// Header names set on every forwarded request, built at compile time: inserting by `&str`
/// would parse and validate the name again on each request (docs/profiling.md).
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What [`strip_untrusted`] removed, for `stripped_headers_total{kind}`: `identity` (any spelling
/// that a CGI/WSGI/PHP bridge would read as an identity header), `invalid_name` (any other name
/// holding a byte outside `A-Z a-z 0-9 -`) and `forwarding` (proxy metadata the app may trust).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stripped {
    pub identity: u32,
    pub invalid_name: u32,
    pub forwarding: u32,
}

impl Stripped {
    /// Count what was removed in `stripped_headers_total{kind}`. The caller records, once per
    /// request, so `explain` can strip without a metrics registry.
    pub fn record(&self, metrics: &Metrics) {
        for (kind, n) in
            [("identity", self.identity), ("invalid_name", self.invalid_name), ("forwarding", self.forwarding)]
        {
            if n > 0 {
                metrics.stripped_headers_total.with_label_values(&[kind]).inc_by(u64::from(n));
            }
        }
    }
}

/// Remove every client header that could pose as identity or as trusted proxy metadata. Runs
/// first, before anything reads the request, on every route (SPEC §4; SECURITY HDR-01..04,
/// HDR-09, HDR-11, RULE-08).
///
/// Every header whose name holds a byte outside `A-Z a-z 0-9 -` is dropped, as nginx does with
/// `ignore_invalid_headers` (its default): CGI, FastCGI and PHP bridges fold `_`, `.`, `~` and
/// other bytes into `_` (PHP turns `.` and space into `_`; lighttpd, Caddy and Apache 2.2 every
/// non-alphanumeric byte), so `X-User.Sub` or `X-User_Sub` would arrive as `HTTP_X_USER_SUB`.
/// What is left is letters, digits and `-`, which every bridge maps one to one (hyper has already
/// lower-cased the name), so comparing those names exactly with ours is the whole check.
///
/// The common request strips nothing and allocates nothing: one byte scan per header name.
pub fn strip_untrusted(headers: &mut HeaderMap, identity: &config::IdentityHeaders) -> Stripped {
    let mut stripped = Stripped::default();
    let mut doomed: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        let n = name.as_str(); // already lower-case
        let kind = if !config::is_plain_name(n) {
            // Spellings that fold onto an identity header count as identity attempts.
            if is_identity_spelling(n, identity) { &mut stripped.identity } else { &mut stripped.invalid_name }
        } else if is_identity(n, identity) {
            &mut stripped.identity
        } else if UNTRUSTED.contains(&n) {
            &mut stripped.forwarding
        } else {
            continue;
        };
        *kind += headers.get_all(name).iter().count() as u32;
        doomed.push(name.clone());
    }
    for name in doomed {
        headers.remove(&name);
    }
    stripped
}

/// Whether `a` and `b` become the same variable in a CGI-style bridge (without its `HTTP_`
/// prefix), under the widest folding any bridge applies: upper-case, with `-`, `_`, `.` and every
/// other byte that is not a letter or digit read as `_`. Compared in place, without allocating.
fn same_cgi_name(a: &str, b: &str) -> bool {
    let fold = |c: u8| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { b'_' };
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

/// A client name that a bridge would read as one of the identity headers.
fn is_identity_spelling(name: &str, identity: &config::IdentityHeaders) -> bool {
    same_cgi_name(name, identity.sub.as_str())
        || same_cgi_name(name, identity.groups.as_str())
        || identity.claims.iter().any(|(h, _)| same_cgi_name(name, h.as_str()))
}

fn is_identity(name: &str, identity: &config::IdentityHeaders) -> bool {
    name == identity.sub.as_str()
        || name == identity.groups.as_str()
        || identity.claims.iter().any(|(h, _)| name == h.as_str())
}

/// Remove hop-by-hop headers and every header the client's `Connection` names (except `Host`,
/// which is passed through as received). Runs before identity is added, so a client cannot use
/// `Connection: X-User-Sub` to remove ours (SECURITY HDR-06).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    remove_where(headers, |headers, name| HOP_BY_HOP.contains(name) || connection_names(headers, name));
}

/// Whether the `Connection` field lists `name` (never `Host`). Compared in place, token by token,
/// without building a `HeaderName` per token.
fn connection_names(headers: &HeaderMap, name: &HeaderName) -> bool {
    *name != header::HOST
        && headers.get_all(header::CONNECTION).iter().any(|v| {
            v.as_bytes().split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(name.as_str().as_bytes()))
        })
}

/// Remove every field whose name `doomed` picks, in one pass over the names present: a request
/// holds ~10 fields, and removing each candidate name by lookup cost ~20 hash probes per request
/// (docs/profiling.md). Allocates only when something is removed.
fn remove_where(headers: &mut HeaderMap, doomed: impl Fn(&HeaderMap, &HeaderName) -> bool) {
    let names: Vec<HeaderName> = headers.keys().filter(|n| doomed(headers, n)).cloned().collect();
    for name in &names {
        headers.remove(name);
    }
}

/// Everything the upstream request needs besides the permit.
pub struct Forwarding<'a> {
    pub peer: SocketAddr,
    pub tls: bool,
    pub request_id: &'a HeaderValue,
    pub identity: &'a config::IdentityHeaders,
    /// Credential headers to drop (custom header sources) unless `forward_token`.
    pub credential_headers: &'a [HeaderName],
}

/// Final rewrite before forwarding: hop-by-hop removal, then credential removal, then the
/// forwarding headers, then exactly one of each identity header from the permit.
pub fn rewrite_for_upstream(headers: &mut HeaderMap, permit: &Permit, f: &Forwarding<'_>) {
    let drop_credentials = !f.identity.forward_token;
    remove_where(headers, |headers, name| {
        HOP_BY_HOP.contains(name)
            || connection_names(headers, name)
            // Framing is recomputed by hyper from the body; client framing is never copied (SMUG-01).
            || name == header::CONTENT_LENGTH
            // `Expect` was answered (or not) by Portcullis itself.
            || name == header::EXPECT
            // The app never sees the credential unless it asked for it (SECURITY TOK-05).
            || (drop_credentials && (name == header::AUTHORIZATION || f.credential_headers.contains(name)))
    });

    // Every client line is kept, in order, as one list with the peer last; values that are not
    // visible ASCII are dropped rather than forwarded (SPEC §4).
    let value = forwarded_for(headers, f.peer.ip());
    headers.insert(X_FORWARDED_FOR, value);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(if f.tls { "https" } else { "http" }));
    if let Some(host) = headers.get(header::HOST).cloned() {
        headers.insert(X_FORWARDED_HOST, host);
    }
    headers.insert(X_REQUEST_ID, f.request_id.clone());

    // `insert` replaces every previous value: exactly one field line each (SECURITY HDR-03).
    if let Some(id) = permit.identity() {
        headers.insert(f.identity.sub.clone(), id.sub.clone());
        headers.insert(f.identity.groups.clone(), id.groups.clone());
        for (name, value) in &id.claims {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// The client's `X-Forwarded-For` lines joined into one list, then the peer address. Built in one
/// buffer; without client lines (the common case) it is just the peer address.
fn forwarded_for(headers: &HeaderMap, peer: std::net::IpAddr) -> HeaderValue {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(48);
    for v in headers.get_all(X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()).map(str::trim) {
        if !v.is_empty() {
            out.push_str(v);
            out.push_str(", ");
        }
    }
    let _ = write!(out, "{peer}");
    // `to_str` above admits only visible ASCII and an IP address is ASCII, so this cannot fail;
    // if it did, the peer alone is still the truth.
    HeaderValue::try_from(out).unwrap_or_else(|_| {
        HeaderValue::try_from(peer.to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
    })
}

/// Response headers: hop-by-hop and `Connection`-named removed, request id echoed.
pub fn rewrite_response(headers: &mut HeaderMap, request_id: &HeaderValue, keep_upgrade: bool) {
    if keep_upgrade {
        // A 101 for a WebSocket handshake keeps `Connection: upgrade` + `Upgrade`.
        let upgrade = headers.get(header::UPGRADE).cloned();
        strip_hop_by_hop(headers);
        if let Some(u) = upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            headers.insert(header::UPGRADE, u);
        }
    } else {
        strip_hop_by_hop(headers);
    }
    headers.insert(X_REQUEST_ID, request_id.clone());
}

#[cfg(test)]
mod tests;
