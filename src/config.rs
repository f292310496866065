//! The configuration file (SPEC §2): strict decoding from the spanned YAML tree into typed,
//! validated structs. Every problem is collected and reported at once with file, line and
//! column; a config with any error is never returned. Owns validation of values and of
//! cross-references (issuer names, route patterns, templates); does not own route matching
//! (`route`), YAML syntax (`yaml`) or what the values do at run time.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, Method};

use crate::yaml::{self, Diagnostic, Node, Reader, Span};

mod login;
pub use login::{Endpoints as LoginEndpoints, Login, MIN_SECRET_BYTES, Secret, Session as LoginSession, origin};

/// A validated configuration. Only [`load`] / [`parse`] make one.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub upstream: Upstream,
    pub tls: Option<Tls>,
    pub issuers: Vec<Issuer>,
    pub jwks: Jwks,
    pub leeway: Duration,
    pub max_token_lifetime: Duration,
    pub credentials: Vec<CredentialSource>,
    pub identity: IdentityHeaders,
    pub cors_preflight: CorsPreflight,
    pub case_insensitive: bool,
    pub shutdown: Shutdown,
    pub limits: Limits,
    pub routes: Vec<Route>,
    /// Browser sign-in (SPEC §8), when configured.
    pub login: Option<Login>,
    /// Non-fatal findings (user-writable claims in rules, audit mode left on, …).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub target: UpstreamTarget,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub idle_timeout: Duration,
    pub http2: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamTarget {
    /// `http://host:port` — the authority the pooled client connects to.
    Http { authority: http::uri::Authority },
    /// `unix:/path/to.sock`.
    Unix { path: PathBuf },
}

#[derive(Debug, Clone)]
pub struct Tls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    Access,
    Id,
    Any,
}

impl TokenUse {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenUse::Access => "access",
            TokenUse::Id => "id",
            TokenUse::Any => "any",
        }
    }
    /// Whether a token whose `token_use` is `actual` satisfies this setting.
    pub fn admits(self, actual: TokenUse) -> bool {
        self == TokenUse::Any || self == actual
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Url(String),
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Issuer {
    pub name: String,
    /// The exact `iss` value tokens must carry.
    pub issuer: String,
    pub keys: KeySource,
    pub client_ids: Vec<String>,
    pub token_use: TokenUse,
    pub verify_at_hash: bool,
    /// Configured through the `cognito:` shorthand (access tokens must carry `client_id`).
    pub cognito: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwks {
    pub refresh_interval: Duration,
    pub kid_miss_cooldown: Duration,
    pub fetch_timeout: Duration,
    pub max_stale: Duration,
    pub max_bytes: u64,
    pub max_keys: usize,
    pub ca_file: Option<PathBuf>,
    pub proxy: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    Bearer { allow_raw: bool },
    Header(HeaderName),
    AmplifyCookie,
    Cookie(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupsFormat {
    Csv,
    Json,
}

#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub sub: HeaderName,
    pub groups: HeaderName,
    pub groups_format: GroupsFormat,
    /// Extra claim → header mappings, in file order.
    pub claims: Vec<(HeaderName, String)>,
    pub forward_token: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorsPreflight {
    Pass,
    Authenticate,
}

#[derive(Debug, Clone)]
pub struct Shutdown {
    pub delay: Duration,
    pub grace: Duration,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    /// Longest request target (path + query, or the absolute-form URI) accepted; longer → 414.
    pub max_uri_bytes: usize,
    pub max_token_bytes: usize,
    pub max_identity_header_bytes: usize,
    pub max_connections: usize,
    pub token_cache_entries: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    None,
    Required,
    Optional,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Audit,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Require {
    pub scopes_any: Option<Vec<String>>,
    pub scopes_all: Option<Vec<String>>,
    pub groups_any: Option<Vec<String>>,
    pub groups_all: Option<Vec<String>>,
    pub token_use: Option<TokenUse>,
    pub issuers: Option<Vec<String>>,
    /// claim → allowed exact values
    pub claims: Vec<(String, Vec<String>)>,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub path: String,
    /// Upper-case methods; `None` = all.
    pub methods: Option<Vec<Method>>,
    pub auth: AuthMode,
    pub mode: Mode,
    pub require: Require,
    /// `login: false` opts the route out of the sign-in redirect (SPEC §8); default true.
    pub login: bool,
    pub span: Span,
}

/// A config that failed to load: every diagnostic, already rendered with file:line:col.
#[derive(Debug, thiserror::Error)]
#[error("{}", .messages.join("\n"))]
pub struct ConfigError {
    pub messages: Vec<String>,
}

/// Read and validate the file at `path`. `env` looks up `${env:NAME}` values.
pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let source = std::fs::read_to_string(path)
        .map_err(|e| ConfigError { messages: vec![format!("{file}: cannot read config: {e}")] })?;
    parse(&source, &file, env)
}

/// Validate `source` (named `file` in messages).
pub fn parse(source: &str, file: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let render = |ds: Vec<Diagnostic>| ConfigError { messages: ds.iter().map(|d| yaml::render(file, d)).collect() };
    let root = match yaml::parse(source) {
        Ok(Some(root)) => root,
        Ok(None) => {
            return Err(ConfigError { messages: vec![format!("{file}: the config file is empty")] });
        }
        Err(ds) => return Err(render(ds)),
    };
    let mut r = Reader::new(env);
    let config = decode(&mut r, &root);
    if r.has_errors() {
        return Err(render(r.diagnostics()));
    }
    config.ok_or_else(|| ConfigError { messages: vec![format!("{file}: invalid config")] })
}

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
const UPSTREAM_KEYS: &[&str] = &["url", "connect_timeout", "timeout", "idle_timeout", "http2"];
const TLS_KEYS: &[&str] = &["cert_file", "key_file"];
const ISSUER_KEYS: &[&str] =
    &["name", "cognito", "issuer", "jwks_uri", "jwks_file", "client_ids", "token_use", "verify_at_hash"];
const COGNITO_KEYS: &[&str] = &["region", "user_pool_id"];
const JWKS_KEYS: &[&str] = &[
    "refresh_interval",
    "kid_miss_cooldown",
    "fetch_timeout",
    "max_stale",
    "max_bytes",
    "max_keys",
    "ca_file",
    "proxy",
];
const IDENTITY_KEYS: &[&str] = &["sub", "groups", "groups_format", "claims", "forward_token"];
const MATCH_KEYS: &[&str] = &["case_insensitive"];
const SHUTDOWN_KEYS: &[&str] = &["delay", "grace"];
const LIMITS_KEYS: &[&str] = &[
    "header_read_timeout",
    "max_header_bytes",
    "max_uri_bytes",
    "max_token_bytes",
    "max_identity_header_bytes",
    "max_connections",
    "token_cache_entries",
];
const ROUTE_KEYS: &[&str] = &["name", "path", "methods", "auth", "mode", "require", "login"];
const REQUIRE_KEYS: &[&str] =
    &["scopes_any", "scopes_all", "groups_any", "groups_all", "token_use", "issuers", "claims"];
const BEARER_KEYS: &[&str] = &["allow_raw"];

/// Every mapping's known keys, by field path pattern — the JSON schema test walks this.
pub const SCHEMA_KEYS: &[(&str, &[&str])] = &[
    ("", TOP_KEYS),
    ("upstream", UPSTREAM_KEYS),
    ("tls", TLS_KEYS),
    ("issuers[]", ISSUER_KEYS),
    ("issuers[].cognito", COGNITO_KEYS),
    ("jwks", JWKS_KEYS),
    ("identity_headers", IDENTITY_KEYS),
    ("match", MATCH_KEYS),
    ("shutdown", SHUTDOWN_KEYS),
    ("limits", LIMITS_KEYS),
    ("routes[]", ROUTE_KEYS),
    ("routes[].require", REQUIRE_KEYS),
    ("credentials[].bearer", BEARER_KEYS),
    ("login", login::LOGIN_KEYS),
    ("login.endpoints", login::ENDPOINT_KEYS),
    ("login.session", login::SESSION_KEYS),
];

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Decode one optional field with `f`, or use `default` when absent.
fn field<T>(
    r: &mut Reader,
    m: &yaml::MapView,
    key: &str,
    path: &str,
    default: T,
    f: impl FnOnce(&mut Reader, &Node, &str) -> Option<T>,
) -> T {
    match m.get(key) {
        Some(node) => f(r, node, &join(path, key)).unwrap_or(default),
        None => default,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

fn required<'n>(r: &mut Reader, m: &yaml::MapView<'n>, key: &str, path: &str) -> Option<&'n Node> {
    let node = m.get(key);
    if node.is_none() {
        let what = if path.is_empty() { "the config".to_owned() } else { path.to_owned() };
        r.error(m.span(), path, format!("`{key}` is required in {what}"));
    }
    node
}

fn decode(r: &mut Reader, root: &Node) -> Option<Config> {
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
    let upstream = required(r, &m, "upstream", "").and_then(|n| upstream(r, n));
    let tls = m.get("tls").and_then(|n| tls(r, n));
    let issuers = required(r, &m, "issuers", "").and_then(|n| issuers(r, n));
    let jwks = match m.get("jwks") {
        Some(n) => jwks(r, n),
        None => Some(default_jwks()),
    };
    let leeway = field(r, &m, "leeway", "", secs(30), |r, n, p| r.duration(n, p));
    if leeway > secs(300)
        && let Some(n) = m.get("leeway")
    {
        r.error(n.span, "leeway", "leeway above 5m defeats expiry checks; use at most 5m");
    }
    let max_token_lifetime = field(r, &m, "max_token_lifetime", "", secs(24 * 3600), |r, n, p| r.duration(n, p));
    let credentials = match m.get("credentials") {
        Some(n) => credentials(r, n),
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
        Some(n) => identity(r, n),
        None => Some(default_identity()),
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
        Some(n) => limits(r, n),
        None => Some(default_limits()),
    };
    let routes = required(r, &m, "routes", "").and_then(|n| {
        let issuer_list = issuers.as_deref().unwrap_or(&[]);
        routes(r, n, issuer_list, case_insensitive.unwrap_or(false), pairs_possible)
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

    let mut config = Config {
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
        warnings: Vec::new(),
    };
    config.warnings = crate::lint::lint(&config).iter().map(ToString::to_string).collect();
    Some(config)
}

/// Claims a Cognito user (or an app client with write access) can set: authorising on them lets
/// users grant themselves access (SECURITY CLM-18).
pub(crate) fn is_user_writable(claim: &str) -> bool {
    claim.starts_with("custom:")
        || matches!(
            claim,
            "email"
                | "preferred_username"
                | "name"
                | "given_name"
                | "family_name"
                | "nickname"
                | "phone_number"
                | "website"
                | "picture"
                | "profile"
                | "address"
                | "locale"
                | "zoneinfo"
                | "birthdate"
                | "gender"
                | "middle_name"
        )
}

fn socket_addr(r: &mut Reader, n: &Node, path: &str) -> Option<SocketAddr> {
    let s = r.string(n, path)?;
    match s.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            r.error(n.span, path, format!("`{s}` is not an address:port such as 0.0.0.0:8080"));
            None
        }
    }
}

fn enumerated<T: Copy>(r: &mut Reader, n: &Node, path: &str, options: &[(&str, T)]) -> Option<T> {
    let s = r.string(n, path)?;
    if let Some((_, v)) = options.iter().find(|(name, _)| *name == s) {
        return Some(*v);
    }
    let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
    r.error(n.span, path, format!("`{s}` is not one of: {}", names.join(", ")));
    None
}

fn token_use(r: &mut Reader, n: &Node, path: &str) -> Option<TokenUse> {
    enumerated(r, n, path, &[("access", TokenUse::Access), ("id", TokenUse::Id), ("any", TokenUse::Any)])
}

fn upstream(r: &mut Reader, n: &Node) -> Option<Upstream> {
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
            r.error(n.span, &join(p, key), "must be greater than 0");
        }
    }
    Some(Upstream { target: target?, connect_timeout, timeout, idle_timeout, http2 })
}

fn upstream_target(s: &str) -> Result<UpstreamTarget, String> {
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

fn tls(r: &mut Reader, n: &Node) -> Option<Tls> {
    let m = r.map(n, "tls", TLS_KEYS)?;
    let cert = required(r, &m, "cert_file", "tls").and_then(|n| r.string(n, "tls.cert_file"));
    let key = required(r, &m, "key_file", "tls").and_then(|n| r.string(n, "tls.key_file"));
    Some(Tls { cert_file: cert?.into(), key_file: key?.into() })
}

fn issuers(r: &mut Reader, n: &Node) -> Option<Vec<Issuer>> {
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
fn valid_region(s: &str) -> bool {
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

fn issuer(r: &mut Reader, n: &Node, p: &str) -> Option<Issuer> {
    let m = r.map(n, p, ISSUER_KEYS)?;
    let name = required(r, &m, "name", p).and_then(|n| {
        let s = r.string(n, &join(p, "name"))?;
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            r.error(n.span, &join(p, "name"), "issuer names use letters, digits, `-` and `_`");
            return None;
        }
        Some(s)
    });
    let client_ids = required(r, &m, "client_ids", p).and_then(|n| r.string_list(n, &join(p, "client_ids")));
    let token_use = match m.get("token_use") {
        Some(n) => token_use(r, n, &join(p, "token_use")),
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
            r.error(e.span, &join(p, "issuer"), "use either `cognito` or `issuer`, not both");
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
            let cp = join(p, "cognito");
            for key in ["jwks_uri", "jwks_file"] {
                if let Some(n) = m.get(key) {
                    r.error(n.span, &join(p, key), "the cognito shorthand derives the JWKS URL; remove this key");
                }
            }
            let cm = r.map(c, &cp, COGNITO_KEYS)?;
            let region = required(r, &cm, "region", &cp).and_then(|n| {
                let s = r.string(n, &join(&cp, "region"))?;
                if !valid_region(&s) {
                    r.error(n.span, &join(&cp, "region"), format!("`{s}` is not an AWS region such as eu-west-1"));
                    return None;
                }
                Some(s)
            });
            let pool = required(r, &cm, "user_pool_id", &cp)
                .and_then(|n| r.string(n, &join(&cp, "user_pool_id")).map(|s| (s, n.span)));
            let (region, (pool, pool_span)) = (region?, pool?);
            // The pool id becomes part of a URL: only `<region>_<alphanumerics>` is accepted, and
            // its region must be the configured one (SECURITY OUT-02).
            let valid = pool.split_once('_').is_some_and(|(pr, id)| {
                pr == region && !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric())
            });
            if !valid {
                r.error(
                    pool_span,
                    &join(&cp, "user_pool_id"),
                    format!(
                        "`{pool}` is not a user pool id of region {region} (expected {region}_<letters and digits>)"
                    ),
                );
                return None;
            }
            let issuer = format!("https://cognito-idp.{region}.amazonaws.com/{pool}");
            let jwks = format!("{issuer}/.well-known/jwks.json");
            (issuer, KeySource::Url(jwks), true)
        }
        (None, Some(e)) => {
            let issuer = r.string(e, &join(p, "issuer"))?;
            if issuer.is_empty() || issuer.chars().any(char::is_whitespace) {
                r.error(e.span, &join(p, "issuer"), "the issuer must be a non-empty URL without spaces");
                return None;
            }
            let keys = match (m.get("jwks_uri"), m.get("jwks_file")) {
                (Some(u), None) => {
                    let s = r.string(u, &join(p, "jwks_uri"))?;
                    if let Err(e) = check_jwks_uri(&s) {
                        r.error(u.span, &join(p, "jwks_uri"), e);
                        return None;
                    }
                    KeySource::Url(s)
                }
                (None, Some(f)) => KeySource::File(r.string(f, &join(p, "jwks_file"))?.into()),
                (Some(_), Some(f)) => {
                    r.error(f.span, &join(p, "jwks_file"), "use either `jwks_uri` or `jwks_file`, not both");
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

pub(crate) fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn default_jwks() -> Jwks {
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

fn jwks(r: &mut Reader, n: &Node) -> Option<Jwks> {
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
            r.error(n.span, &join(p, key), "must be greater than 0");
        }
    }
    Some(j)
}

fn credentials(r: &mut Reader, n: &Node) -> Option<Vec<CredentialSource>> {
    let items = r.seq(n, "credentials")?;
    if items.is_empty() {
        r.error(n.span, "credentials", "must not be empty");
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let p = format!("credentials[{i}]");
        let source = match &item.value {
            yaml::Value::Scalar { .. } => {
                let s = r.string(item, &p);
                match s.as_deref() {
                    Some("bearer") => Some(CredentialSource::Bearer { allow_raw: false }),
                    Some(other) => {
                        r.error(
                            item.span,
                            &p,
                            format!(
                                "`{other}` is not a credential source (bearer, header: NAME, cookie: NAME|amplify)"
                            ),
                        );
                        None
                    }
                    None => None,
                }
            }
            yaml::Value::Map(entries) if entries.len() == 1 => {
                let (k, v) = &entries[0];
                let key = r.string(k, &p);
                match key.as_deref() {
                    Some("bearer") => r.map(v, &join(&p, "bearer"), BEARER_KEYS).map(|bm| CredentialSource::Bearer {
                        allow_raw: field(r, &bm, "allow_raw", &join(&p, "bearer"), false, |r, n, p| r.bool(n, p)),
                    }),
                    Some("header") => {
                        r.string(v, &join(&p, "header")).and_then(|h| match HeaderName::try_from(h.as_str()) {
                            // Every client header containing `_` is dropped on arrival (SECURITY
                            // HDR-04), so such a source could never yield a token.
                            Ok(_) if h.contains('_') => {
                                r.error(
                                    v.span,
                                    &join(&p, "header"),
                                    format!("`{h}`: header names with `_` are dropped on arrival; use `-`"),
                                );
                                None
                            }
                            Ok(name) if name != http::header::AUTHORIZATION && name != http::header::COOKIE => {
                                Some(CredentialSource::Header(name))
                            }
                            Ok(_) => {
                                r.error(
                                    v.span,
                                    &join(&p, "header"),
                                    "use `bearer` for Authorization and `cookie:` for cookies",
                                );
                                None
                            }
                            Err(_) => {
                                r.error(v.span, &join(&p, "header"), format!("`{h}` is not a valid header name"));
                                None
                            }
                        })
                    }
                    Some("cookie") => r.string(v, &join(&p, "cookie")).and_then(|c| {
                        if c == "amplify" {
                            Some(CredentialSource::AmplifyCookie)
                        } else if !c.is_empty() && c.bytes().all(is_cookie_name_byte) {
                            Some(CredentialSource::Cookie(c))
                        } else {
                            r.error(v.span, &join(&p, "cookie"), format!("`{c}` is not a valid cookie name"));
                            None
                        }
                    }),
                    Some(other) => {
                        r.error(k.span, &p, format!("`{other}` is not a credential source (bearer, header, cookie)"));
                        None
                    }
                    None => None,
                }
            }
            _ => {
                r.error(item.span, &p, "expected `bearer`, `header: NAME` or `cookie: NAME`");
                None
            }
        };
        match source {
            Some(s) if out.contains(&s) => {
                r.error(item.span, &p, "this credential source is listed twice");
                ok = false;
            }
            Some(s) => out.push(s),
            None => ok = false,
        }
    }
    let bearers = out.iter().filter(|s| matches!(s, CredentialSource::Bearer { .. })).count();
    if bearers > 1 {
        r.error(n.span, "credentials", "`bearer` is listed more than once");
        ok = false;
    }
    ok.then_some(out)
}

fn is_cookie_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn default_identity() -> IdentityHeaders {
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

/// The name a CGI/WSGI/PHP bridge would see: lower-case with `_` read as `-`.
pub fn env_name(name: &str) -> String {
    name.bytes().map(|b| if b == b'_' { '-' } else { b.to_ascii_lowercase() as char }).collect()
}

fn identity_header_name(r: &mut Reader, n: &Node, path: &str) -> Option<HeaderName> {
    let s = r.string(n, path)?;
    // Underscores are refused: bridges fold them into `-`, so such a name could never be
    // told apart from a client's spelling of it (SECURITY HDR-04).
    if s.contains('_') {
        r.error(n.span, path, format!("`{s}`: identity header names must not contain `_`"));
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

fn identity(r: &mut Reader, n: &Node) -> Option<IdentityHeaders> {
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

fn default_limits() -> Limits {
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

fn limits(r: &mut Reader, n: &Node) -> Option<Limits> {
    let p = "limits";
    let m = r.map(n, p, LIMITS_KEYS)?;
    let d = default_limits();
    let num = |r: &mut Reader, key: &str, default: usize, min: u64, max: u64| -> usize {
        let v = field(r, &m, key, p, default as u64, |r, n, p| r.u64(n, p));
        if (v < min || v > max)
            && let Some(node) = m.get(key)
        {
            r.error(node.span, &join(p, key), format!("must be between {min} and {max}"));
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

fn routes(r: &mut Reader, n: &Node, issuers: &[Issuer], case_insensitive: bool, pairs: bool) -> Option<Vec<Route>> {
    let items = r.seq(n, "routes")?;
    if items.is_empty() {
        r.error(n.span, "routes", "at least one route is required (unmatched requests are denied)");
        return None;
    }
    let mut out: Vec<Route> = Vec::new();
    let mut ok = true;
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("routes[{i}]");
        let Some(route) = route(r, item, &p, issuers, pairs) else {
            ok = false;
            continue;
        };
        if let Some(first) = names.insert(route.name.clone(), route.span.line) {
            r.error(item.span, &p, format!("duplicate route name `{}` (first at line {first})", route.name));
            ok = false;
        }
        for other in &out {
            let same_pattern =
                if case_insensitive { other.path.eq_ignore_ascii_case(&route.path) } else { other.path == route.path };
            if same_pattern && methods_overlap(&other.methods, &route.methods) {
                r.error(
                    item.span,
                    &p,
                    format!(
                        "route `{}` has the same path `{}` and overlapping methods as route `{}` (line {}); which one applies would be ambiguous",
                        route.name, route.path, other.name, other.span.line
                    ),
                );
                ok = false;
            }
        }
        out.push(route);
    }
    ok.then_some(out)
}

fn methods_overlap(a: &Option<Vec<Method>>, b: &Option<Vec<Method>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
        // One lists methods and the other does not: the listing one wins, no ambiguity.
        _ => false,
    }
}

/// Checks a route pattern: `/`-rooted, literal segments already in normalised form, `*` as a
/// whole segment, `**` only as the last segment.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if !pattern.starts_with('/') {
        return Err("a route path starts with `/`".into());
    }
    let body = pattern.strip_suffix('/').filter(|_| pattern.len() > 1).unwrap_or(pattern);
    if body.len() > 1 {
        let segments: Vec<&str> = body[1..].split('/').collect();
        for (i, seg) in segments.iter().enumerate() {
            match *seg {
                "" => return Err("empty segment (`//`) in route path".into()),
                "**" if i + 1 != segments.len() => return Err("`**` is only allowed as the last segment".into()),
                "**" | "*" => {}
                s if s.contains('*') => {
                    return Err(format!("`{s}`: `*` must be a whole segment (no regexes or partial globs)"));
                }
                "." | ".." => return Err("`.` and `..` segments never match a normalised path".into()),
                _ => {}
            }
        }
    }
    // Literal text must be what the normaliser would produce, or it could never match.
    let literal: String = pattern.replace("**", "x").replace('*', "x");
    match crate::path::normalise(&literal) {
        Ok(n) if n == literal => Ok(()),
        Ok(n) => {
            Err(format!("route path is not in normalised form (requests are matched as `{}`)", n.replace('x', "*")))
        }
        Err(e) => Err(format!("route path would never match: {e}")),
    }
}

fn route(r: &mut Reader, n: &Node, p: &str, issuers: &[Issuer], pairs: bool) -> Option<Route> {
    let m = r.map(n, p, ROUTE_KEYS)?;
    let name = required(r, &m, "name", p).and_then(|n| {
        let s = r.string(n, &join(p, "name"))?;
        if s.is_empty() || s == "none" || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            r.error(
                n.span,
                &join(p, "name"),
                "route names use letters, digits, `-`, `_` and `.` (and `none` is reserved)",
            );
            return None;
        }
        Some(s)
    });
    let path = required(r, &m, "path", p).and_then(|n| {
        let s = r.string(n, &join(p, "path"))?;
        match check_pattern(&s) {
            Ok(()) => Some(s),
            Err(e) => {
                r.error(n.span, &join(p, "path"), e);
                None
            }
        }
    });
    let methods = match m.get("methods") {
        Some(n) => {
            let list = r.string_list(n, &join(p, "methods"));
            list.and_then(|l| {
                let mut out = Vec::new();
                for s in l {
                    let bad = |why: &str| format!("`{s}`: {why}");
                    let err = if s.is_empty() || !s.bytes().all(|b| b.is_ascii_uppercase()) {
                        Some(bad("methods are upper-case tokens such as GET or POST"))
                    } else if s == "HEAD" {
                        Some(bad("HEAD is matched as GET; list GET"))
                    } else if s == "CONNECT" || s == "TRACE" {
                        Some(bad("CONNECT and TRACE are always refused"))
                    } else {
                        None
                    };
                    if let Some(e) = err {
                        r.error(n.span, &join(p, "methods"), e);
                        return None;
                    }
                    let method = Method::from_bytes(s.as_bytes()).ok()?;
                    if out.contains(&method) {
                        r.error(n.span, &join(p, "methods"), format!("`{s}` is listed twice"));
                        return None;
                    }
                    out.push(method);
                }
                Some(Some(out))
            })
        }
        None => Some(None),
    };
    let auth = field(r, &m, "auth", p, AuthMode::Required, |r, n, p| {
        enumerated(
            r,
            n,
            p,
            &[("required", AuthMode::Required), ("optional", AuthMode::Optional), ("none", AuthMode::None)],
        )
    });
    let mode = field(r, &m, "mode", p, Mode::Enforce, |r, n, p| {
        enumerated(r, n, p, &[("enforce", Mode::Enforce), ("audit", Mode::Audit)])
    });
    let require = match m.get("require") {
        Some(rn) => {
            if auth == AuthMode::None {
                r.error(
                    rn.span,
                    &join(p, "require"),
                    "`require` has no effect on an `auth: none` route; remove it or use `auth: required`",
                );
                None
            } else {
                require(r, rn, &join(p, "require"), issuers, pairs)
            }
        }
        None => Some(Require::default()),
    };
    if auth == AuthMode::None
        && mode == Mode::Audit
        && let Some(mn) = m.get("mode")
    {
        r.error(mn.span, &join(p, "mode"), "`mode: audit` has nothing to audit on an `auth: none` route");
    }
    let login = field(r, &m, "login", p, true, |r, n, p| r.bool(n, p));
    Some(Route { name: name?, path: path?, methods: methods?, auth, mode, require: require?, login, span: n.span })
}

fn template_list(
    r: &mut Reader,
    m: &yaml::MapView,
    key: &str,
    p: &str,
    header_safe: bool,
) -> Option<Option<Vec<String>>> {
    let Some(n) = m.get(key) else { return Some(None) };
    let path = join(p, key);
    let list = r.string_list(n, &path)?;
    for s in &list {
        if let Err(e) = check_template(s) {
            r.error(n.span, &path, e);
            return None;
        }
        // Scopes are echoed in `WWW-Authenticate: … scope="…"`, so they must be quotable.
        if header_safe && !s.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\') {
            r.error(n.span, &path, format!("`{s}`: scopes are printable ASCII without spaces, quotes or backslashes"));
            return None;
        }
    }
    Some(Some(list))
}

/// `${client_id}` is the only runtime template; anything else that looks like one is a typo.
fn check_template(s: &str) -> Result<(), String> {
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(j) if &after[..j] == "client_id" => rest = &after[j + 1..],
            Some(j) => return Err(format!("`${{{}}}` is not a known template (only ${{client_id}})", &after[..j])),
            None => return Err(format!("`{s}`: unterminated `${{`")),
        }
    }
    Ok(())
}

fn require(r: &mut Reader, n: &Node, p: &str, issuers: &[Issuer], pairs: bool) -> Option<Require> {
    let m = r.map(n, p, REQUIRE_KEYS)?;
    let scopes_any = template_list(r, &m, "scopes_any", p, true);
    let scopes_all = template_list(r, &m, "scopes_all", p, true);
    let groups_any = template_list(r, &m, "groups_any", p, false);
    let groups_all = template_list(r, &m, "groups_all", p, false);
    let token_use_req = match m.get("token_use") {
        Some(tn) => token_use(r, tn, &join(p, "token_use")).map(Some),
        None => Some(None),
    };
    let route_issuers = match m.get("issuers") {
        Some(inode) => r.string_list(inode, &join(p, "issuers")).and_then(|list| {
            for name in &list {
                if !issuers.iter().any(|i| &i.name == name) {
                    r.error(inode.span, &join(p, "issuers"), format!("no issuer is named `{name}`"));
                    return None;
                }
            }
            Some(Some(list))
        }),
        None => Some(None),
    };
    let mut claims = Vec::new();
    let mut claims_ok = true;
    if let Some(cn) = m.get("claims") {
        let cp = join(p, "claims");
        match &cn.value {
            yaml::Value::Map(entries) if !entries.is_empty() => {
                for (k, v) in entries {
                    let Some(claim) = r.string(k, &cp) else {
                        claims_ok = false;
                        continue;
                    };
                    let vp = format!("{cp}.{claim}");
                    let values = match &v.value {
                        yaml::Value::Seq(_) => r.string_list(v, &vp),
                        _ => r.string(v, &vp).map(|s| vec![s]),
                    };
                    match values {
                        Some(vals) if vals.iter().all(|s| check_template(s).is_ok()) => claims.push((claim, vals)),
                        Some(_) => {
                            r.error(v.span, &vp, "only ${client_id} may be used as a template");
                            claims_ok = false;
                        }
                        None => claims_ok = false,
                    }
                }
            }
            yaml::Value::Map(_) => {
                r.error(cn.span, &cp, "must not be empty");
                claims_ok = false;
            }
            _ => {
                r.error(cn.span, &cp, "expected a mapping of claim name to value or list of values");
                claims_ok = false;
            }
        }
    }
    let require = Require {
        scopes_any: scopes_any?,
        scopes_all: scopes_all?,
        groups_any: groups_any?,
        groups_all: groups_all?,
        token_use: token_use_req?,
        issuers: route_issuers?,
        claims,
    };
    if !claims_ok {
        return None;
    }
    // A route narrowed to a token use that an admitted issuer never accepts could never pass
    // for that issuer's tokens — almost certainly a mistake (SPEC §2 `require.token_use`) —
    // unless the credentials can carry an id+access pair, which satisfies either use.
    if let Some(want) = require.token_use
        && want != TokenUse::Any
        && !pairs
    {
        for iss in issuers {
            let admitted = require.issuers.as_ref().is_none_or(|names| names.contains(&iss.name));
            if admitted && !iss.token_use.admits(want) {
                if let Some(tn) = m.get("token_use") {
                    r.error(
                        tn.span,
                        &join(p, "token_use"),
                        format!(
                            "issuer `{}` only accepts {} tokens, so `token_use: {}` could never pass for it",
                            iss.name,
                            iss.token_use.as_str(),
                            want.as_str()
                        ),
                    );
                }
                return None;
            }
        }
    }
    Some(require)
}

#[cfg(test)]
mod tests;
