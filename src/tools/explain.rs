//! `portcullis explain` and the engine behind `portcullis test` (SPEC §5): one request, as a
//! client would send it, through [`decision::authorize`] — the very function the proxy calls —
//! without a listener or an upstream, and every step it took: the normalised path, the routes that
//! matched and why one won, where the credential was found, what verification said, each
//! requirement with its values, the status and the headers the upstream would receive (or the
//! refusal the client would get). Nothing here decides anything itself.
//!
//! Credentials: a real token (`--token`, or placed by hand in `--header`/`--cookie`) is verified
//! against the configured issuers' JWKS (fetched). Claims given as JSON (`--claims`, CASES.yaml)
//! are completed from the issuer (`iss`, `exp`, `iat`, `token_use`, `client_id`/`aud`), signed
//! with a throw-away local key that this engine — and only this engine — installs as every
//! issuer's key set, and then go through the very same verification and policy code. Such an
//! explanation is marked `verified: false`: the signature proves nothing about who sent it. The
//! token is sent as `Authorization: Bearer`, unless a header or cookie value holds `${token}`:
//! then it goes there instead. A browser sign-in session (SPEC §8, `--session`, `session: true`)
//! is modelled as the proxy serves one: the claims become the session's id+access pair (minted
//! locally, unverified), remembered in this engine's session store under a sealed session cookie
//! that the request carries — so `authorize` finds it where the proxy would. Nothing here is used
//! when serving.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Uri, Version};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::auth::credentials::Presented;
use crate::auth::jwks::{FetchError, KeySource};
use crate::auth::login::sessions::SessionCookie;
use crate::auth::policy::{self, Check};
use crate::auth::route;
use crate::config::{AuthMode, Config, CredentialSource, Route, TokenUse};
use crate::http::error::{BadRequest, Rejection};
use crate::proxy::decision::{self, Conn, Verdict};
use crate::proxy::runtime::Runtime;
use crate::telemetry::metrics::Metrics;
use crate::tools::mint::SigningKey;

/// The client address `explain` pretends the request came from (TEST-NET-1, RFC 5737).
pub const EXPLAIN_PEER: &str = "192.0.2.10:50000";
/// The `Host` the pretend client sends unless the request names one.
pub const EXPLAIN_HOST: &str = "app.example";
const REQUEST_ID: &str = "explain";
/// Stands for the credential's token in header and cookie values.
pub const TOKEN_PLACEHOLDER: &str = "${token}";

/// One request as a client would send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request target: the path and query, as sent.
    pub target: String,
    /// Header lines in order (`Host: app.example` is added when none is given).
    pub headers: Vec<(String, String)>,
    /// `name=value` pairs, sent as one `Cookie` header.
    pub cookies: Vec<String>,
}

impl Request {
    /// `GET`-style request for `target` with no headers or cookies.
    pub fn new(method: &str, target: &str) -> Request {
        Request { method: method.to_owned(), target: target.to_owned(), headers: Vec::new(), cookies: Vec::new() }
    }

    /// Whether a header or cookie value carries a token of its own (a JWT starts `eyJ`), which
    /// only the configured key sets can verify.
    fn carries_a_token(&self) -> bool {
        self.headers.iter().map(|(_, v)| v).chain(&self.cookies).any(|v| v.contains("eyJ"))
    }

    fn places_the_token(&self) -> bool {
        self.headers.iter().map(|(_, v)| v).chain(&self.cookies).any(|v| v.contains(TOKEN_PLACEHOLDER))
    }
}

/// The credential of an explained request.
#[derive(Debug, Clone)]
pub enum Credential {
    None,
    /// A compact JWT, verified against the configured JWKS.
    Token(String),
    /// Claims to sign locally (unverified); `issuer` names the configured issuer to complete them
    /// from (optional when there is one issuer).
    Claims {
        claims: Map<String, Value>,
        issuer: Option<String>,
    },
    /// A browser sign-in session (SPEC §8) whose user has these claims: its id+access pair for
    /// `login.client_id` is minted locally (unverified). Needs a `login` block.
    Session {
        claims: Map<String, Value>,
    },
}

/// Whether explaining `request` with `credential` needs the configured key sets (a real token)
/// rather than the throw-away local key (claims, or nothing to verify).
pub fn needs_real_keys(request: &Request, credential: &Credential) -> bool {
    match credential {
        Credential::Token(_) => true,
        Credential::Claims { .. } | Credential::Session { .. } => false,
        Credential::None => request.carries_a_token(),
    }
}

/// A route that matched the path.
#[derive(Debug, Clone, Serialize)]
pub struct Candidate {
    pub name: String,
    pub pattern: String,
    pub methods: Option<Vec<String>>,
    pub auth: &'static str,
    pub mode: &'static str,
    pub chosen: bool,
    /// For the chosen route: why it beat the next one; for the others: why the chosen one won.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// What was learnt from the credential.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CredentialReport {
    /// What was given to `explain`: `none`, `token` or `claims`.
    pub kind: &'static str,
    /// What the request carried, as the proxy read it: `not_read`, `none`, `malformed`, `token`,
    /// or `two_tokens` (an id+access pair when they verify as one).
    pub found: &'static str,
    /// The configured sources it came from (`bearer`, `header accesstoken`, `cookie session`,
    /// `cookie amplify`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// True only when a real token's signature verified against configured keys.
    pub verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Why verification failed (reason code and description).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_use: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// Everything `explain` found out about one request.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub method: String,
    pub path: String,
    /// The path routes see and the upstream receives; absent when the path was refused.
    pub normalised_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_error: Option<String>,
    pub routes: Vec<Candidate>,
    pub route: Option<String>,
    pub credential: CredentialReport,
    pub checks: Vec<Check>,
    pub status: u16,
    pub decision: &'static str,
    pub reason: &'static str,
    /// Whether the request would reach the upstream.
    pub forwarded: bool,
    /// Exactly the headers the upstream would receive (credentials redacted), by name.
    pub upstream_headers: Vec<(String, String)>,
    /// Headers of Portcullis's own refusal, when it refuses.
    pub response_headers: Vec<(String, String)>,
}

/// A runtime for explaining requests. Make one per config; explain many requests with it.
pub struct Explainer {
    runtime: Runtime,
    /// Present when claims are signed locally (then every issuer trusts only this key).
    local: Option<SigningKey>,
}

/// Serves one fixed JWKS document (the local signing key's).
struct StaticSource(Bytes);

impl KeySource for StaticSource {
    fn fetch(&self, _max_bytes: u64) -> futures_core::future::BoxFuture<'_, Result<Bytes, FetchError>> {
        Box::pin(async move { Ok(self.0.clone()) })
    }
}

impl Explainer {
    /// For real tokens: the configured key sources, fetched now (bounded by `jwks.fetch_timeout`
    /// plus a second; an issuer without keys then explains as a 503).
    pub async fn for_tokens(config: Config) -> Result<Explainer, String> {
        let wait = config.jwks.fetch_timeout + Duration::from_secs(1);
        let runtime = Runtime::build(config, &Arc::new(Metrics::new()), Vec::new())?;
        let deadline = tokio::time::Instant::now() + wait;
        while !runtime.keys_ready() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Explainer { runtime, local: None })
    }

    /// For claims: every issuer's key set is replaced by one local key that signs the claims.
    pub async fn for_claims(config: Config) -> Result<Explainer, String> {
        let local = SigningKey::generate("portcullis-explain")?;
        let jwks = Bytes::from(local.jwks().to_string());
        let sources =
            config.issuers.iter().map(|_| Some(Box::new(StaticSource(jwks.clone())) as Box<dyn KeySource>)).collect();
        let runtime = Runtime::build(config, &Arc::new(Metrics::new()), sources)?;
        for issuer in runtime.verifier.issuers() {
            issuer.keys.refresh().await.map_err(|e| format!("local key set: {e}"))?;
        }
        Ok(Explainer { runtime, local: Some(local) })
    }

    pub fn config(&self) -> &Config {
        &self.runtime.config
    }

    /// Complete `claims` from the named (or only) issuer, as SPEC §5 describes for CASES.yaml.
    pub fn complete_claims(&self, claims: &Map<String, Value>, issuer: Option<&str>) -> Result<Value, String> {
        let issuers = &self.runtime.config.issuers;
        let iss = match issuer {
            Some(name) => {
                issuers.iter().find(|i| i.name == name).ok_or_else(|| format!("no issuer is named `{name}`"))?
            }
            None if issuers.len() == 1 => &issuers[0],
            None => {
                let names: Vec<&str> = issuers.iter().map(|i| i.name.as_str()).collect();
                return Err(format!("several issuers are configured; name one with `issuer:` ({})", names.join(", ")));
            }
        };
        let mut out = claims.clone();
        let now = crate::tools::mint::now();
        let token_use = match out.get("token_use").and_then(Value::as_str) {
            Some("id") => TokenUse::Id,
            Some(_) => TokenUse::Access,
            // An `any` issuer gets access tokens (SPEC §5).
            None if iss.token_use == TokenUse::Id => TokenUse::Id,
            None => TokenUse::Access,
        };
        let client = iss.client_ids.first().cloned().unwrap_or_default();
        out.entry("iss").or_insert_with(|| json!(iss.issuer));
        out.entry("token_use").or_insert_with(|| json!(token_use.as_str()));
        out.entry("iat").or_insert_with(|| json!(now));
        out.entry("exp").or_insert_with(|| json!(now + 3600));
        match token_use {
            TokenUse::Id => out.entry("aud").or_insert_with(|| json!(client)),
            _ => out.entry("client_id").or_insert_with(|| json!(client)),
        };
        Ok(Value::Object(out))
    }

    /// Explain one request. `Err` is a mistake in the request itself (a header that is not
    /// `Name: value`, claims that cannot be completed, `${token}` without a token), not a refusal.
    pub async fn explain(&self, request: &Request, credential: &Credential) -> Result<Explanation, String> {
        let rt = &self.runtime;
        let mut credential_report = CredentialReport { kind: "none", ..Default::default() };
        let token = match credential {
            Credential::None => None,
            Credential::Token(t) => {
                credential_report.kind = "token";
                Some(t.trim().to_owned())
            }
            Credential::Claims { claims, issuer } => {
                credential_report.kind = "claims";
                let local = self.local.as_ref().ok_or("claims need an explainer made with for_claims")?;
                Some(local.mint(&self.complete_claims(claims, issuer.as_deref())?))
            }
            Credential::Session { .. } => {
                credential_report.kind = "session";
                None
            }
        };
        let mut request = request.clone();
        if let Credential::Session { claims } = credential {
            match self.session_cookie(claims).await {
                Ok(cookie) => request.cookies.push(cookie),
                Err(e) => credential_report.error = Some(e),
            }
        }
        let request = &request;
        let mut ex = Explanation {
            method: request.method.clone(),
            path: request.target.clone(),
            normalised_path: None,
            path_error: None,
            routes: Vec::new(),
            route: None,
            credential: credential_report,
            checks: Vec::new(),
            status: 0,
            decision: "",
            reason: "",
            forwarded: false,
            upstream_headers: Vec::new(),
            response_headers: Vec::new(),
        };
        // What hyper would refuse before Portcullis sees the request: 400.
        let Some(mut head) = head(request, token.as_deref())? else {
            self.refused(&mut ex, Rejection::BadRequest(BadRequest::Malformed), None);
            return Ok(ex);
        };
        let origin = head.headers.get(header::ORIGIN).cloned();
        let peer = EXPLAIN_PEER.parse().unwrap_or_else(|_| std::net::SocketAddr::from(([192, 0, 2, 10], 50000)));
        let conn = Conn { peer, tls: rt.config.tls.is_some() };
        let request_id = HeaderValue::from_static(REQUEST_ID);
        let mut verdict = Verdict::default();
        let outcome = decision::authorize(rt, &mut head, conn, &request_id, &mut verdict).await;

        ex.path_error = verdict.path_error.map(|e| e.to_string());
        ex.normalised_path = verdict.path.clone();
        ex.routes = candidates(&verdict.candidates);
        ex.route = verdict.route().map(|r| r.name.clone());
        self.report_credential(&mut ex, &verdict, credential);
        match outcome {
            Ok(permit) => {
                ex.status = 200;
                ex.decision = permit.decision().as_str();
                ex.reason = permit.reason().as_str();
                ex.forwarded = true;
                ex.upstream_headers = redacted(&head.headers, &rt.config.credentials, &rt.credential_headers);
            }
            Err(rejection) => self.refused(&mut ex, rejection, origin.as_ref()),
        }
        Ok(ex)
    }

    /// A session for `claims` as the proxy would hold one: the id+access pair minted with the
    /// local key and verified as a session's pair, remembered in this engine's session store,
    /// and the sealed cookie (`name=value`) that finds it.
    async fn session_cookie(&self, claims: &Map<String, Value>) -> Result<String, String> {
        let rt = &self.runtime;
        let login = rt.login.as_ref().ok_or("a session needs a `login` block in the config")?;
        let local = self.local.as_ref().ok_or("a session needs an explainer made with for_claims")?;
        let issuer = Some(login.config.issuer.as_str());
        let mut access = claims.clone();
        access.insert("token_use".into(), json!("access"));
        access.insert("client_id".into(), json!(login.config.client_id));
        let mut id = claims.clone();
        id.insert("token_use".into(), json!("id"));
        id.insert("aud".into(), json!(login.config.client_id));
        id.remove("client_id");
        id.remove("scope");
        let id = local.mint(&self.complete_claims(&id, issuer)?);
        let access = local.mint(&self.complete_claims(&access, issuer)?);
        let verified = login
            .verify_tokens(&rt.verifier, &id, &access, None, None)
            .await
            .map_err(|e| format!("the session's tokens do not verify: {e:?}"))?;
        let lifetime = login.config.session.lifetime.as_secs();
        let session = SessionCookie::new(&verified.sub, "explain-refresh-token", lifetime)
            .ok_or("the session cookie cannot be made")?;
        let sealed = login.seal_session(&session).ok_or("the session cookie cannot be sealed")?;
        login.remember(&session, id, access, verified);
        // `Set-Cookie` form (`name=value; Path=/; …`): the request carries the first pair.
        let sealed = sealed.to_str().map_err(|e| e.to_string())?;
        Ok(sealed.split(';').next().unwrap_or_default().to_owned())
    }

    fn refused(&self, ex: &mut Explanation, rejection: Rejection, origin: Option<&HeaderValue>) {
        ex.decision = rejection.decision().as_str();
        ex.reason = rejection.reason().as_str();
        let response = rejection.into_response(REQUEST_ID, origin);
        ex.status = response.status().as_u16();
        ex.response_headers = sorted(response.headers());
    }

    fn report_credential(&self, ex: &mut Explanation, verdict: &Verdict<'_>, credential: &Credential) {
        let rt = &self.runtime;
        let c = &mut ex.credential;
        let source = |i: usize| rt.config.credentials.get(i).map(describe_source).unwrap_or_default();
        (c.found, c.sources) = match verdict.credential {
            Presented::NotRead => ("not_read", Vec::new()),
            Presented::Nothing => ("none", Vec::new()),
            Presented::Malformed => ("malformed", Vec::new()),
            Presented::One { source: i } => ("token", vec![source(i)]),
            Presented::Two { sources: [a, b] } => ("two_tokens", vec![source(a), source(b)]),
            Presented::Session => ("session", vec!["the sign-in session cookie".to_owned()]),
        };
        if verdict.credential == Presented::NotRead
            && let Some(route) = verdict.route()
        {
            c.note = Some(if route.auth == AuthMode::None {
                "auth: none: credentials are not read".to_owned()
            } else {
                "CORS preflight passed through without authentication: credentials are not read".to_owned()
            });
        }
        if let (Credential::Session { .. }, Presented::Session) = (credential, verdict.credential) {
            c.note =
                Some("a sign-in session whose tokens are minted locally from these claims (unverified)".to_owned());
        }
        if matches!(credential, Credential::Claims { .. }) {
            c.note = Some(
                "claims given as JSON: signed locally for this explanation, so the signature proves nothing (unverified)"
                    .to_owned(),
            );
        }
        match &verdict.verification {
            Some(Ok(v)) => {
                // A locally signed credential never counts as verified.
                c.verified = !matches!(credential, Credential::Claims { .. } | Credential::Session { .. });
                c.issuer = rt.issuer_names().get(v.issuer).cloned();
                c.token_use = Some(v.token_use.as_str());
                c.sub = Some(v.sub.clone());
                c.client_id = Some(v.client_id.clone());
                c.groups = Some(v.groups.clone());
                c.scope = Some(v.scope.clone());
                if let Some(route) = verdict.route() {
                    ex.checks = policy::checks(&route.require, v, rt.issuer_names());
                }
            }
            Some(Err(e)) => c.error = Some(format!("{}: {e}", e.reason().as_str())),
            None => {}
        }
    }
}

/// The request head a client would send: the method and target parsed as hyper parses them
/// (`None` where hyper would refuse with 400), `Host` unless given, the headers, the cookies as
/// one `Cookie` line, and the token where `${token}` says or else as `Authorization: Bearer`.
fn head(request: &Request, token: Option<&str>) -> Result<Option<http::request::Parts>, String> {
    let place = |v: &str| -> Result<String, String> {
        match (v.contains(TOKEN_PLACEHOLDER), token) {
            (false, _) => Ok(v.to_owned()),
            (true, Some(t)) => Ok(v.replace(TOKEN_PLACEHOLDER, t)),
            (true, None) => Err(format!("`{TOKEN_PLACEHOLDER}` needs a token: give --token or --claims")),
        }
    };
    let mut headers = HeaderMap::new();
    if !request.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        headers.insert(header::HOST, HeaderValue::from_static(EXPLAIN_HOST));
    }
    for (name, value) in &request.headers {
        let n = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| format!("`{name}` is not a header name"))?;
        let v = HeaderValue::from_str(place(value.trim())?.as_str())
            .map_err(|_| format!("the value of `{name}` cannot be sent in a header"))?;
        headers.append(n, v);
    }
    if !request.cookies.is_empty() {
        let pairs = request.cookies.iter().map(|c| place(c.trim())).collect::<Result<Vec<_>, _>>()?;
        if let Some(bad) = pairs.iter().find(|c| !c.contains('=')) {
            return Err(format!("`{bad}` is not a cookie: give name=value"));
        }
        let line = HeaderValue::from_str(&pairs.join("; ")).map_err(|_| "the cookies cannot be sent in a header")?;
        headers.append(header::COOKIE, line);
    }
    if let Some(t) = token.filter(|_| !request.places_the_token()) {
        let bearer =
            HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| "the token cannot be sent in a header")?;
        headers.append(header::AUTHORIZATION, bearer);
    }
    let (Ok(method), Ok(uri)) = (Method::from_bytes(request.method.as_bytes()), request.target.parse::<Uri>()) else {
        return Ok(None);
    };
    let (mut head, ()) = http::Request::new(()).into_parts();
    head.method = method;
    head.uri = uri;
    head.version = Version::HTTP_11;
    head.headers = headers;
    Ok(Some(head))
}

/// How a configured source is named in an explanation.
fn describe_source(s: &CredentialSource) -> String {
    match s {
        CredentialSource::Bearer { .. } => "bearer".to_owned(),
        CredentialSource::Header(h) => format!("header {h}"),
        CredentialSource::Cookie(c) => format!("cookie {c}"),
        CredentialSource::AmplifyCookie => "cookie amplify".to_owned(),
    }
}

/// The upstream headers by name, with every credential replaced by its length: the app may be
/// configured to receive them (`forward_token`), but an explanation never prints one.
fn redacted(h: &HeaderMap, sources: &[CredentialSource], credential_headers: &[HeaderName]) -> Vec<(String, String)> {
    let hidden = |v: &str| format!("<credential, {} bytes>", v.len());
    let mut out = sorted(h);
    for (name, value) in &mut out {
        if name == header::AUTHORIZATION.as_str() {
            *value = match value.split_once(' ') {
                Some((scheme, rest)) => format!("{scheme} {}", hidden(rest)),
                None => hidden(value),
            };
        } else if credential_headers.iter().any(|c| c.as_str() == name.as_str()) {
            *value = hidden(value);
        } else if name == header::COOKIE.as_str() {
            let is_credential = |cookie: &str| {
                sources.iter().any(|s| match s {
                    CredentialSource::Cookie(n) => n == cookie,
                    CredentialSource::AmplifyCookie => cookie.starts_with("CognitoIdentityServiceProvider."),
                    _ => false,
                })
            };
            *value = value
                .split(';')
                .map(str::trim)
                .map(|pair| match pair.split_once('=') {
                    Some((n, v)) if is_credential(n.trim()) => format!("{n}={}", hidden(v)),
                    _ => pair.to_owned(),
                })
                .collect::<Vec<_>>()
                .join("; ");
        }
    }
    out
}

fn sorted(h: &HeaderMap) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = h
        .iter()
        .map(|(n, v): (&HeaderName, &HeaderValue)| {
            (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned())
        })
        .collect();
    out.sort();
    out
}

/// The matching routes for display, with why the chosen one won.
fn candidates(routes: &[&Route]) -> Vec<Candidate> {
    routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let why = match i {
                0 => routes.get(1).map(|next| format!("beats `{}`: {}", next.name, route::precedence(r, next))),
                _ => Some(route::precedence(routes[0], r)),
            };
            candidate(r, i == 0, why)
        })
        .collect()
}

fn candidate(r: &Route, chosen: bool, why: Option<String>) -> Candidate {
    Candidate {
        name: r.name.clone(),
        pattern: r.path.to_string(),
        methods: r.methods.as_ref().map(|ms| ms.iter().map(|m| m.as_str().to_owned()).collect()),
        auth: match r.auth {
            AuthMode::None => "none",
            AuthMode::Optional => "optional",
            AuthMode::Required => "required",
        },
        mode: match r.mode {
            crate::config::Mode::Enforce => "enforce",
            crate::config::Mode::Audit => "audit",
        },
        chosen,
        why,
    }
}

/// Human-readable rendering.
pub fn render_text(ex: &Explanation) -> String {
    let mut o = String::new();
    let mut line = |label: &str, text: String| o.push_str(&format!("{label:<11}{text}\n"));
    line("request", format!("{} {}", ex.method, ex.path));
    match (&ex.normalised_path, &ex.path_error) {
        (Some(p), _) => line("path", format!("{p} (normalised; matched and forwarded as this)")),
        (None, Some(e)) => line("path", format!("refused: {e}")),
        (None, None) => {}
    }
    if ex.normalised_path.is_some() && ex.routes.is_empty() {
        line("routes", "none match".into());
    }
    for (i, r) in ex.routes.iter().enumerate() {
        let methods = r.methods.as_ref().map(|m| format!(" [{}]", m.join(", "))).unwrap_or_default();
        let mark = if r.chosen { "chosen" } else { "lost" };
        let why = r.why.as_deref().map(|w| format!(" — {w}")).unwrap_or_default();
        let text = format!("{} {}{} (auth: {}, mode: {}) {mark}{why}", r.name, r.pattern, methods, r.auth, r.mode);
        line(if i == 0 { "routes" } else { "" }, text);
    }
    let c = &ex.credential;
    let mut cred = match (c.found, c.sources.as_slice()) {
        ("token", [source]) => format!("token from {source}"),
        ("two_tokens", [a, b]) => format!("two tokens, from {a} and {b} (an id+access pair if they verify as one)"),
        ("malformed", _) => "malformed (a source holds something that is not a token)".to_owned(),
        ("not_read", _) => "not read".to_owned(),
        _ => "none".to_owned(),
    };
    if matches!(c.found, "token" | "two_tokens") {
        cred.push_str(match (c.kind, c.verified, &c.error) {
            ("claims", _, None) => " (claims: UNVERIFIED, signed locally, the signature proves nothing)",
            (_, true, _) => " (signature verified against the configured JWKS)",
            _ => " (did not verify)",
        });
    }
    if let Some(e) = &c.error {
        cred.push_str(&format!("; error: {e}"));
    }
    line("credential", cred);
    if let (Some(sub), Some(iss)) = (&c.sub, &c.issuer) {
        line(
            "",
            format!(
                "issuer {iss}, {} token, sub {sub}, client {}, groups {:?}, scope {:?}",
                c.token_use.unwrap_or("?"),
                c.client_id.as_deref().unwrap_or(""),
                c.groups.clone().unwrap_or_default(),
                c.scope.as_deref().unwrap_or("")
            ),
        );
    }
    if let Some(note) = c.note.as_ref().filter(|_| c.kind != "claims") {
        line("", note.clone());
    }
    for (i, ch) in ex.checks.iter().enumerate() {
        let mark = if ch.pass { "pass" } else { "FAIL" };
        line(
            if i == 0 { "checks" } else { "" },
            format!("{mark} {}: want {} — got {}", ch.requirement, ch.want, ch.got),
        );
    }
    if ex.forwarded {
        line("decision", format!("forwarded: {} ({}); the client gets the app's response", ex.decision, ex.reason));
    } else {
        line("decision", format!("{} {} ({})", ex.status, ex.decision, ex.reason));
    }
    if ex.forwarded {
        for (i, (n, v)) in ex.upstream_headers.iter().enumerate() {
            line(if i == 0 { "upstream" } else { "" }, format!("{n}: {v}"));
        }
    } else {
        line("upstream", "not forwarded".into());
        for (n, v) in ex.response_headers.iter().filter(|(n, _)| n == "www-authenticate" || n == "retry-after") {
            line("response", format!("{n}: {v}"));
        }
    }
    o
}

#[cfg(test)]
mod tests;
