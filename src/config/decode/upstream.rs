//! `upstream:` — where the protected app listens, and the timeouts to it.

use std::path::PathBuf;

use super::{field, required, secs};
use crate::config::model::*;
use crate::config::yaml::{Node, Reader, field_path};

pub(super) const UPSTREAM_KEYS: &[&str] = &["url", "connect_timeout", "timeout", "idle_timeout", "http2"];

pub(super) fn upstream(r: &mut Reader, n: &Node) -> Option<Upstream> {
    let p = "upstream";
    let m = r.map(n, p, UPSTREAM_KEYS)?;
    let target = required(r, &m, "url", p).and_then(|n| {
        let s = r.string(n, "upstream.url")?;
        upstream_target(&s).map_err(|e| r.error(n.span, "upstream.url", e)).ok()
    });
    let connect_timeout = field(r, &m, "connect_timeout", p, secs(2), |r, n, p| r.duration(n, p));
    let timeout = field(r, &m, "timeout", p, secs(30), |r, n, p| r.duration(n, p));
    let idle_timeout = field(r, &m, "idle_timeout", p, secs(60), |r, n, p| r.duration(n, p));
    let http2 = field(r, &m, "http2", p, false, |r, n, p| r.bool(n, p));
    for (key, d) in [("connect_timeout", connect_timeout), ("timeout", timeout), ("idle_timeout", idle_timeout)] {
        if d.is_zero()
            && let Some(n) = m.get(key)
        {
            r.error(n.span, &field_path(p, key), "must be greater than 0");
        }
    }
    Some(Upstream { target: target?, connect_timeout, timeout, idle_timeout, http2 })
}

pub(super) fn upstream_target(s: &str) -> Result<UpstreamTarget, String> {
    if let Some(path) = s.strip_prefix("unix:") {
        if !path.starts_with('/') {
            return Err(format!("`{s}`: a unix socket path must be absolute (unix:/run/app.sock)"));
        }
        return Ok(UpstreamTarget::Unix { path: PathBuf::from(path) });
    }
    let uri: http::Uri = s.parse().map_err(|_| format!("`{s}` is not a URL such as http://127.0.0.1:8000"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "`{s}`: the upstream must be http://host:port or unix:/path (TLS to a sidecar app is not supported)"
        ));
    }
    let authority = uri.authority().cloned().ok_or_else(|| format!("`{s}` has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("`{s}`: credentials in the upstream URL are not supported"));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!("`{s}`: the upstream URL must not have a path or query (paths are forwarded as received)"));
    }
    Ok(UpstreamTarget::Http { authority })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_url_forms() {
        assert!(matches!(upstream_target("unix:/run/app.sock"), Ok(UpstreamTarget::Unix { .. })));
        assert!(upstream_target("unix:run/app.sock").is_err());
        assert!(upstream_target("https://127.0.0.1:8000").is_err());
        assert!(upstream_target("http://127.0.0.1:8000/prefix").is_err());
        assert!(upstream_target("http://u:p@127.0.0.1:8000").is_err());
    }
}
