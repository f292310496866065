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
/// Client headers whose env-folded name (lower-case, `_` read as `-`) belongs to these families
/// are removed on arrival. Besides the configured identity headers: forwarding metadata the app
/// may trust, original-URL headers some frameworks route on, method overrides, and `Proxy`
/// (httpoxy: CGI turns it into `HTTP_PROXY`).
const UNTRUSTED: &[&str] = &[
    "forwarded",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-forwarded-ssl",
    "x-forwarded-scheme",
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

/// What [`strip_untrusted`] removed, for `stripped_headers_total{kind}`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stripped {
    pub identity: u32,
    pub underscore: u32,
    pub forwarding: u32,
}

impl Stripped {
    /// Count what was removed in `stripped_headers_total{kind}`. The caller records, once per
    /// request, so `explain` can strip without a metrics registry.
    pub fn record(&self, metrics: &Metrics) {
        for (kind, n) in [("identity", self.identity), ("underscore", self.underscore), ("forwarding", self.forwarding)]
        {
            if n > 0 {
                metrics.stripped_headers_total.with_label_values(&[kind]).inc_by(u64::from(n));
            }
        }
    }
}

/// Remove every client header that could pose as identity or as trusted proxy metadata. Runs
/// before anything reads the request (SPEC §4; SECURITY HDR-01..04, HDR-11, RULE-08).
///
/// Every header whose name contains `_` is dropped: CGI, WSGI and PHP fold `_` and `-` into the
/// same variable, so `X-User_Sub` would arrive as `HTTP_X_USER_SUB` (HDR-04).
pub fn strip_untrusted(headers: &mut HeaderMap, identity: &config::IdentityHeaders) -> Stripped {
    let mut stripped = Stripped::default();
    let mut doomed: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        let n = name.as_str(); // already lower-case
        if n.contains('_') {
            // Underscore spellings of identity headers count as identity attempts.
            if is_identity(&crate::config::env_name(n), identity) {
                stripped.identity += headers.get_all(name).iter().count() as u32;
            } else {
                stripped.underscore += headers.get_all(name).iter().count() as u32;
            }
            doomed.push(name.clone());
        } else if is_identity(n, identity) {
            stripped.identity += headers.get_all(name).iter().count() as u32;
            doomed.push(name.clone());
        } else if UNTRUSTED.contains(&n) {
            stripped.forwarding += headers.get_all(name).iter().count() as u32;
            doomed.push(name.clone());
        }
    }
    for name in doomed {
        headers.remove(&name);
    }
    stripped
}

fn is_identity(folded: &str, identity: &config::IdentityHeaders) -> bool {
    folded == identity.sub.as_str()
        || folded == identity.groups.as_str()
        || identity.claims.iter().any(|(h, _)| folded == h.as_str())
}

/// Remove hop-by-hop headers and every header the client's `Connection` names (except `Host`,
/// which is passed through as received). Runs before identity is added, so a client cannot use
/// `Connection: X-User-Sub` to remove ours (SECURITY HDR-06).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .filter(|n| *n != header::HOST)
        .collect();
    for name in named {
        headers.remove(&name);
    }
    for name in &HOP_BY_HOP {
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
    strip_hop_by_hop(headers);
    // Framing is recomputed by hyper from the body; client framing is never copied (SMUG-01).
    headers.remove(header::CONTENT_LENGTH);
    // `Expect` was answered (or not) by Portcullis itself.
    headers.remove(header::EXPECT);
    if !f.identity.forward_token {
        // The app never sees the credential unless it asked for it (SECURITY TOK-05).
        headers.remove(header::AUTHORIZATION);
        for name in f.credential_headers {
            headers.remove(name);
        }
    }

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
