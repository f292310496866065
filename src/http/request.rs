//! What kind of request this is, and whether it is well-formed enough to look at: the checks that
//! run before anything reads a header for meaning (request-target length, method token, `Host`),
//! and the predicates for the requests that get special handling (CORS preflight, WebSocket and
//! h2c upgrades). Plumbing only: no config, no policy. Sequenced by `proxy::decision`.

use http::header::{self, HeaderMap};
use http::{Method, Uri, Version};

use crate::http::error::{BadRequest, Rejection};

/// The most header fields a request may carry (SPEC §2 `limits.max_header_bytes`: "over 100
/// fields → 431"). hyper's own limits are set higher (`serve::server`), as a backstop, so that
/// Portcullis answers — and counts and logs — every ordinary oversized head itself.
pub const MAX_HEADER_FIELDS: usize = 100;

/// Request line plus header section over `max_bytes` (counted as they travel on an HTTP/1.1
/// connection, `Name: value` CRLF each; HTTP/2 heads are counted the same way), or more than
/// [`MAX_HEADER_FIELDS`] fields: 431 (SECURITY DOS-03).
pub fn check_head_size(method: &Method, uri: &Uri, headers: &HeaderMap, max_bytes: usize) -> Result<(), Rejection> {
    if headers.len() > MAX_HEADER_FIELDS {
        return Err(Rejection::HeaderTooLarge);
    }
    // `METHOD SP target SP HTTP/1.1 CRLF`, each field line, and the empty line.
    let mut bytes = method.as_str().len() + target_len(uri) + "  HTTP/1.1\r\n\r\n".len();
    for (name, value) in headers {
        bytes += name.as_str().len() + value.len() + ": \r\n".len();
        if bytes > max_bytes {
            return Err(Rejection::HeaderTooLarge);
        }
    }
    if bytes > max_bytes { Err(Rejection::HeaderTooLarge) } else { Ok(()) }
}

fn target_len(uri: &Uri) -> usize {
    uri.scheme_str().map_or(0, str::len)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |pq| pq.as_str().len())
}

/// A request target longer than `max` bytes is a 414 before any of it is examined (SECURITY
/// PATH-11). A head over `max_header_bytes` was already a 431 ([`check_head_size`]), and hyper's
/// buffer limit stays the backstop for lines too long to even finish parsing.
pub fn check_uri_length(uri: &Uri, max: usize) -> Result<(), Rejection> {
    if target_len(uri) > max { Err(Rejection::UriTooLong) } else { Ok(()) }
}

/// `CONNECT` and `TRACE` are never forwarded; h2c upgrades are refused; methods must be
/// upper-case tokens (SPEC §2; SECURITY SMUG-08/09).
pub fn check_method(method: &Method, headers: &HeaderMap) -> Result<(), Rejection> {
    if *method == Method::CONNECT || *method == Method::TRACE {
        return Err(Rejection::MethodNotAllowed);
    }
    if !method.as_str().bytes().all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_') {
        return Err(Rejection::BadRequest(BadRequest::Malformed));
    }
    if is_h2c_upgrade(headers) {
        return Err(Rejection::MethodNotAllowed);
    }
    Ok(())
}

/// HTTP/1.1 needs exactly one `Host`, and any `Host` must be a plain `host[:port]`: it is passed
/// to the app and into `X-Forwarded-Host`, which apps use to build absolute URLs (RFC 9112 §3.2;
/// SECURITY SMUG-11).
pub fn check_host(headers: &HeaderMap, version: Version) -> Result<(), Rejection> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() || (host.is_none() && version == Version::HTTP_11) {
        return Err(Rejection::BadRequest(BadRequest::Malformed));
    }
    if let Some(h) = host {
        let valid = h
            .to_str()
            .ok()
            .filter(|s| !s.is_empty() && !s.contains(['@', '/', '\\', '?', '#']))
            .and_then(|s| s.parse::<http::uri::Authority>().ok())
            .is_some();
        if !valid {
            return Err(Rejection::BadRequest(BadRequest::Malformed));
        }
    }
    Ok(())
}

/// A genuine CORS preflight: `OPTIONS` carrying both `Origin` and `Access-Control-Request-Method`
/// (SPEC §2 "CORS preflight").
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Whether the request is a WebSocket handshake (the only upgrade that is forwarded).
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let upgrade_websocket = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"));
    connection_upgrade && upgrade_websocket
}

/// Whether the request asks for an h2c upgrade (refused with 405, SECURITY SMUG-08).
pub fn is_h2c_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key("http2-settings")
        || headers
            .get_all(header::UPGRADE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().to_ascii_lowercase().starts_with("h2c"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn h2c_and_websocket_detection() {
        assert!(is_h2c_upgrade(&map(&[("upgrade", "h2c"), ("connection", "Upgrade, HTTP2-Settings")])));
        assert!(is_h2c_upgrade(&map(&[("http2-settings", "AAMAAABkAAQAAP__")])));
        assert!(!is_h2c_upgrade(&map(&[("upgrade", "websocket")])));
        assert!(is_websocket_upgrade(&map(&[("upgrade", "WebSocket"), ("connection", "keep-alive, Upgrade")])));
        assert!(!is_websocket_upgrade(&map(&[("upgrade", "websocket")])));
    }

    #[test]
    fn methods_and_hosts() {
        // SMUG-08/09, SMUG-11
        let none = HeaderMap::new();
        assert_eq!(check_method(&Method::TRACE, &none), Err(Rejection::MethodNotAllowed));
        assert_eq!(check_method(&Method::CONNECT, &none), Err(Rejection::MethodNotAllowed));
        let lower = Method::from_bytes(b"get").unwrap();
        assert_eq!(check_method(&lower, &none), Err(Rejection::BadRequest(BadRequest::Malformed)));
        assert_eq!(check_method(&Method::GET, &map(&[("upgrade", "h2c")])), Err(Rejection::MethodNotAllowed));
        assert_eq!(check_method(&Method::from_bytes(b"PURGE").unwrap(), &none), Ok(()));
        let bad = Err(Rejection::BadRequest(BadRequest::Malformed));
        assert_eq!(check_host(&none, Version::HTTP_11), bad);
        assert_eq!(check_host(&none, Version::HTTP_2), Ok(()));
        assert_eq!(check_host(&map(&[("host", "a"), ("host", "b")]), Version::HTTP_11), bad);
        for h in ["evil@app", "app/x", "app?x", ""] {
            assert_eq!(check_host(&map(&[("host", h)]), Version::HTTP_11), bad, "{h:?}");
        }
        assert_eq!(check_host(&map(&[("host", "app.example:8443")]), Version::HTTP_11), Ok(()));
    }

    #[test]
    fn uri_length_counts_the_whole_target() {
        // PATH-11
        let uri: Uri = format!("/{}?q=1", "a".repeat(20)).parse().unwrap();
        assert_eq!(check_uri_length(&uri, 25), Ok(()));
        assert_eq!(check_uri_length(&uri, 24), Err(Rejection::UriTooLong));
    }

    #[test]
    fn preflight_needs_origin_and_request_method() {
        let both = map(&[("origin", "https://a.example"), ("access-control-request-method", "POST")]);
        assert!(is_preflight(&Method::OPTIONS, &both));
        assert!(!is_preflight(&Method::GET, &both));
        assert!(!is_preflight(&Method::OPTIONS, &map(&[("origin", "https://a.example")])));
    }
}
