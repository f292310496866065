//! The validated configuration as typed values (SPEC §2): what the rest of the program reads.
//! Only `config::load` / `config::parse` make a [`Config`]; how YAML becomes these values, and
//! every check on the way, is `decode`'s business.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, Method};

use super::pattern::Pattern;
use super::yaml::Span;

/// A validated configuration. Only [`super::load`] / [`super::parse`] make one.
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

/// Where an issuer's signing keys are published (`jwks_uri`, `jwks_file`, or derived from
/// `cognito:`). `jwks::KeySource` is the run-time fetcher built from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyLocation {
    Url(String),
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Issuer {
    pub name: String,
    /// The exact `iss` value tokens must carry.
    pub issuer: String,
    pub keys: KeyLocation,
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
    pub path: Pattern,
    /// Upper-case methods; `None` = all.
    pub methods: Option<Vec<Method>>,
    pub auth: AuthMode,
    pub mode: Mode,
    pub require: Require,
    pub span: Span,
}

impl Route {
    /// Whether some request method could match both routes (no `methods` means every method).
    /// Sets, not precedence: whether two such routes are a conflict is `decode`'s rule.
    pub fn shares_a_method_with(&self, other: &Route) -> bool {
        match (&self.methods, &other.methods) {
            (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
            _ => true,
        }
    }
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

pub(crate) fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Only `A-Z a-z 0-9 -`: the header names every CGI/WSGI/PHP bridge maps to a variable of their
/// own. Client headers with any other byte are dropped on arrival, and configured header names
/// must be plain (SPEC §4).
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A configured header name compared as a CGI/WSGI/PHP bridge would: lower-case with `_` read as
/// `-` (configured names hold only letters, digits and `-`, so this is exact for them).
pub fn env_name(name: &str) -> String {
    name.bytes().map(|b| if b == b'_' { '-' } else { b.to_ascii_lowercase() as char }).collect()
}
