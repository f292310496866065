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
    /// Browser sign-in (SPEC §8), when configured.
    pub login: Option<Login>,
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
    /// `login: false` opts the route out of the sign-in redirect (SPEC §8); default true.
    pub login: bool,
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

// Browser sign-in (SPEC §8): the `login` block (decoded in `decode/login.rs`).

/// The shortest session secret accepted, in bytes (SPEC §8).
pub const MIN_SECRET_BYTES: usize = 32;

/// A secret value: compared and printed never. `Debug` shows only its length.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// Where the provider's OAuth endpoints are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginEndpoints {
    pub authorize: String,
    pub token: String,
    pub revoke: Option<String>,
    pub logout: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginSession {
    /// The first one seals; every one opens (rotation).
    pub secrets: Vec<Secret>,
    /// Absolute session lifetime.
    pub lifetime: Duration,
    /// Session cookie name (always `__Host-` prefixed).
    pub cookie: String,
}

/// A validated `login` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The configured issuer users sign in to, by name and index into `Config::issuers`.
    pub issuer: String,
    pub issuer_index: usize,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub endpoints: LoginEndpoints,
    /// `scheme://host[:port]`, no trailing slash.
    pub public_url: String,
    pub scopes: Vec<String>,
    pub after_logout_url: String,
    pub session: LoginSession,
    /// Where `after_logout_url` was written (for the origin lint), if it was.
    pub after_logout_span: Option<Span>,
}

impl Login {
    /// `<public_url>/.portcullis/callback`.
    pub fn redirect_uri(&self) -> String {
        format!("{}/.portcullis/callback", self.public_url)
    }

    /// The login (pending sign-in) cookie's name, derived from the session cookie's.
    pub fn login_cookie(&self) -> String {
        format!("{}-login", self.session.cookie)
    }
}

/// `scheme://authority` of a URL that passed `decode`'s URL check.
pub fn origin(s: &str) -> Option<String> {
    let uri: http::Uri = s.parse().ok()?;
    Some(format!("{}://{}", uri.scheme_str()?, uri.authority()?.as_str().to_ascii_lowercase()))
}
