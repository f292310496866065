//! Decoding the spanned YAML tree into a [`Config`], one file per section. Each decoder reports
//! every problem it finds through the shared [`Reader`] with the field path (oauth2-proxy's
//! per-section validators); a section that fails yields `None` and the whole config is refused.

use std::net::SocketAddr;
use std::time::Duration;

use super::model::*;
use super::yaml::{self, Node, Reader, field_path};

mod credentials;
mod identity;
mod issuers;
mod jwks;
mod limits;
pub(super) mod login;
mod routes;
mod upstream;

pub use issuers::check_jwks_uri;

const TOP_KEYS: &[&str] = &[
    "listen",
    "admin_listen",
    "upstream",
    "tls",
    "issuers",
    "jwks",
    "leeway",
    "max_token_lifetime",
    "credentials",
    "identity_headers",
    "cors_preflight",
    "match",
    "shutdown",
    "limits",
    "routes",
    "login",
];

const TLS_KEYS: &[&str] = &["cert_file", "key_file"];

const MATCH_KEYS: &[&str] = &["case_insensitive"];

const SHUTDOWN_KEYS: &[&str] = &["delay", "grace"];

/// Every mapping's known keys, by field path pattern — the JSON schema test walks this.
pub const SCHEMA_KEYS: &[(&str, &[&str])] = &[
    ("", TOP_KEYS),
    ("upstream", upstream::UPSTREAM_KEYS),
    ("tls", TLS_KEYS),
    ("issuers[]", issuers::ISSUER_KEYS),
    ("issuers[].cognito", issuers::COGNITO_KEYS),
    ("jwks", jwks::JWKS_KEYS),
    ("identity_headers", identity::IDENTITY_KEYS),
    ("match", MATCH_KEYS),
    ("shutdown", SHUTDOWN_KEYS),
    ("limits", limits::LIMITS_KEYS),
    ("routes[]", routes::ROUTE_KEYS),
    ("routes[].require", routes::REQUIRE_KEYS),
    ("credentials[].bearer", credentials::BEARER_KEYS),
    ("login", login::LOGIN_KEYS),
    ("login.endpoints", login::ENDPOINT_KEYS),
    ("login.session", login::SESSION_KEYS),
];

pub(super) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Decode one optional field with `f`, or use `default` when absent.
pub(super) fn field<T>(
    r: &mut Reader,
    m: &yaml::MapView,
    key: &str,
    path: &str,
    default: T,
    f: impl FnOnce(&mut Reader, &Node, &str) -> Option<T>,
) -> T {
    match m.get(key) {
        Some(node) => f(r, node, &field_path(path, key)).unwrap_or(default),
        None => default,
    }
}

pub(super) fn required<'n>(r: &mut Reader, m: &yaml::MapView<'n>, key: &str, path: &str) -> Option<&'n Node> {
    let node = m.get(key);
    if node.is_none() {
        let what = if path.is_empty() { "the config".to_owned() } else { path.to_owned() };
        r.error(m.span(), path, format!("`{key}` is required in {what}"));
    }
    node
}

pub(super) fn decode(r: &mut Reader, root: &Node) -> Option<Config> {
    let m = r.map(root, "", TOP_KEYS)?;
    let listen = required(r, &m, "listen", "").and_then(|n| socket_addr(r, n, "listen"));
    let admin_listen = field(r, &m, "admin_listen", "", Some(SocketAddr::from(([127, 0, 0, 1], 9901))), |r, n, p| {
        Some(socket_addr(r, n, p))
    });
    // Port 0 asks the OS for a fresh port each time, so two `:0` listeners never collide.
    if let (Some(a), Some(b)) = (listen, admin_listen)
        && a == b
        && a.port() != 0
        && let Some(n) = m.get("admin_listen")
    {
        r.error(
            n.span,
            "admin_listen",
            "admin_listen must differ from listen: admin endpoints are never on the proxy port",
        );
    }
    let upstream = required(r, &m, "upstream", "").and_then(|n| upstream::upstream(r, n));
    let tls = m.get("tls").and_then(|n| tls(r, n));
    let issuers = required(r, &m, "issuers", "").and_then(|n| issuers::issuers(r, n));
    let jwks = match m.get("jwks") {
        Some(n) => jwks::jwks(r, n),
        None => Some(jwks::default_jwks()),
    };
    let leeway = field(r, &m, "leeway", "", secs(30), |r, n, p| r.duration(n, p));
    if leeway > secs(300)
        && let Some(n) = m.get("leeway")
    {
        r.error(n.span, "leeway", "leeway above 5m defeats expiry checks; use at most 5m");
    }
    let max_token_lifetime = field(r, &m, "max_token_lifetime", "", secs(24 * 3600), |r, n, p| r.duration(n, p));
    let credentials = match m.get("credentials") {
        Some(n) => credentials::credentials(r, n),
        None => Some(vec![CredentialSource::Bearer { allow_raw: false }]),
    };
    // Two sources, or Amplify's two cookies, can present an id+access pair (SPEC §2).
    // A sign-in session (SPEC §8) is an id+access pair too.
    let login = m.get("login").and_then(|n| login::decode(r, n, issuers.as_deref()));
    let pairs_possible = login.is_some()
        || credentials
            .as_ref()
            .is_none_or(|c| c.len() > 1 || c.iter().any(|s| matches!(s, CredentialSource::AmplifyCookie)));
    let identity = match m.get("identity_headers") {
        Some(n) => identity::identity(r, n),
        None => Some(identity::default_identity()),
    };
    let cors_preflight = field(r, &m, "cors_preflight", "", CorsPreflight::Pass, |r, n, p| {
        enumerated(r, n, p, &[("pass", CorsPreflight::Pass), ("authenticate", CorsPreflight::Authenticate)])
    });
    let case_insensitive = match m.get("match") {
        Some(n) => r
            .map(n, "match", MATCH_KEYS)
            .map(|mm| field(r, &mm, "case_insensitive", "match", false, |r, n, p| r.bool(n, p))),
        None => Some(false),
    };
    let shutdown = match m.get("shutdown") {
        Some(n) => r.map(n, "shutdown", SHUTDOWN_KEYS).map(|s| Shutdown {
            delay: field(r, &s, "delay", "shutdown", secs(5), |r, n, p| r.duration(n, p)),
            grace: field(r, &s, "grace", "shutdown", secs(20), |r, n, p| r.duration(n, p)),
        }),
        None => Some(Shutdown { delay: secs(5), grace: secs(20) }),
    };
    let limits = match m.get("limits") {
        Some(n) => limits::limits(r, n),
        None => Some(limits::default_limits()),
    };
    let routes = required(r, &m, "routes", "").and_then(|n| {
        let issuer_list = issuers.as_deref().unwrap_or(&[]);
        routes::routes(r, n, issuer_list, case_insensitive.unwrap_or(false), pairs_possible)
    });
    if let (Some(id), Some(creds)) = (&identity, &credentials) {
        for c in creds {
            if let CredentialSource::Header(h) = c
                && (h == id.sub || h == id.groups || id.claims.iter().any(|(n, _)| n == h))
                && let Some(n) = m.get("credentials")
            {
                r.error(n.span, "credentials", format!("credential header `{h}` is also an identity header"));
            }
        }
    }

    Some(Config {
        listen: listen?,
        admin_listen: admin_listen?,
        upstream: upstream?,
        tls,
        issuers: issuers?,
        jwks: jwks?,
        leeway,
        max_token_lifetime,
        credentials: credentials?,
        identity: identity?,
        cors_preflight,
        case_insensitive: case_insensitive?,
        shutdown: shutdown?,
        limits: limits?,
        routes: routes?,
        login,
    })
}

pub(super) fn socket_addr(r: &mut Reader, n: &Node, path: &str) -> Option<SocketAddr> {
    let s = r.string(n, path)?;
    match s.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            r.error(n.span, path, format!("`{s}` is not an address:port such as 0.0.0.0:8080"));
            None
        }
    }
}

pub(super) fn enumerated<T: Copy>(r: &mut Reader, n: &Node, path: &str, options: &[(&str, T)]) -> Option<T> {
    let s = r.string(n, path)?;
    if let Some((_, v)) = options.iter().find(|(name, _)| *name == s) {
        return Some(*v);
    }
    let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
    r.error(n.span, path, format!("`{s}` is not one of: {}", names.join(", ")));
    None
}

pub(super) fn token_use(r: &mut Reader, n: &Node, path: &str) -> Option<TokenUse> {
    enumerated(r, n, path, &[("access", TokenUse::Access), ("id", TokenUse::Id), ("any", TokenUse::Any)])
}

fn tls(r: &mut Reader, n: &Node) -> Option<Tls> {
    let m = r.map(n, "tls", TLS_KEYS)?;
    let cert = required(r, &m, "cert_file", "tls").and_then(|n| r.string(n, "tls.cert_file"));
    let key = required(r, &m, "key_file", "tls").and_then(|n| r.string(n, "tls.key_file"));
    Some(Tls { cert_file: cert?.into(), key_file: key?.into() })
}
