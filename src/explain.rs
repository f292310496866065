//! `portcullis explain` and the engine behind `portcullis test` (SPEC §5): run one request
//! through the real pipeline pieces — `path::normalise`, `RouteTable::candidates`,
//! `Verifier::verify`, `policy::decide`, `headers::strip_untrusted` /
//! `headers::rewrite_for_upstream`, `Rejection::into_response` — without a network listener or
//! an upstream, and record every step.
//!
//! Credentials: a real token is verified against the configured issuers' JWKS (fetched). Claims
//! given as JSON (`--claims`, CASES.yaml) are completed from the issuer (`iss`, `exp`, `iat`,
//! `token_use`, `client_id`/`aud`), signed with a throw-away local key that this engine — and
//! only this engine — installs as every issuer's key set, and then go through the very same
//! verification and policy code. Such an explanation is marked `verified: false`: the signature
//! proves nothing about who sent it. Nothing here is used when serving.
//!
//! The per-requirement pass/fail list is for reading; the status and reason always come from
//! `policy::decide` itself (a test keeps the two in agreement).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::config::{AuthMode, Config, Require, TokenUse};
use crate::error::Rejection;
use crate::headers::{self, Forwarding};
use crate::issuer::LocalIssuer;
use crate::jwks::{FetchError, KeySource};
use crate::metrics::Metrics;
use crate::policy::{self, Authn, Permit};
use crate::route::{self, Route};
use crate::verify::{UseRule, Verified};
use crate::{Runtime, path};

/// The client address `explain` pretends the request came from (TEST-NET-1, RFC 5737).
pub const EXPLAIN_PEER: &str = "192.0.2.10:50000";
/// The `Host` the pretend client sends.
pub const EXPLAIN_HOST: &str = "app.example";
const REQUEST_ID: &str = "explain";

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
    /// A browser sign-in session (SPEC §8) whose user has these claims: minted locally as the
    /// session's id+access pair for `login.client_id` and verified as the proxy verifies a
    /// session's tokens (unverified, like `Claims`). Needs a `login` block.
    Session {
        claims: Map<String, Value>,
    },
}

/// One requirement of the chosen route, evaluated for display.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub requirement: String,
    pub pass: bool,
    /// What the route asks for.
    pub want: Value,
    /// What the token has.
    pub got: Value,
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
    /// `none`, `token` or `claims`.
    pub kind: &'static str,
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
    local: Option<LocalIssuer>,
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
        let local = LocalIssuer::generate("portcullis-explain")?;
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
        let now = crate::issuer::now();
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

    /// Explain one request.
    pub async fn explain(&self, method: &str, raw_path: &str, credential: &Credential) -> Explanation {
        self.explain_request(method, raw_path, credential, false).await
    }

    /// The id+access pair a session for `claims` would hold, minted with the local key.
    fn session_pair(&self, claims: &Map<String, Value>) -> Result<(String, String), String> {
        let login = self.runtime.config.login.as_ref().ok_or("a session needs a `login` block in the config")?;
        let local = self.local.as_ref().ok_or("a session needs an explainer made with for_claims")?;
        let issuer = Some(login.issuer.as_str());
        let mut access = claims.clone();
        access.insert("token_use".into(), json!("access"));
        access.insert("client_id".into(), json!(login.client_id));
        let mut id = claims.clone();
        id.insert("token_use".into(), json!("id"));
        id.insert("aud".into(), json!(login.client_id));
        id.remove("client_id");
        id.remove("scope");
        Ok((local.mint(&self.complete_claims(&id, issuer)?), local.mint(&self.complete_claims(&access, issuer)?)))
    }

    /// Explain one request; `navigation` marks it as a browser navigation
    /// (`Sec-Fetch-Mode: navigate`), which a `login` block may send to sign in (SPEC §8).
    pub async fn explain_request(
        &self,
        method: &str,
        raw_path: &str,
        credential: &Credential,
        navigation: bool,
    ) -> Explanation {
        let mut ex = Explanation {
            method: method.to_owned(),
            path: raw_path.to_owned(),
            normalised_path: None,
            path_error: None,
            routes: Vec::new(),
            route: None,
            credential: CredentialReport { kind: "none", ..Default::default() },
            checks: Vec::new(),
            status: 0,
            decision: "",
            reason: "",
            forwarded: false,
            upstream_headers: Vec::new(),
            response_headers: Vec::new(),
        };
        // Credentials as the client would present them (a Bearer header, or a session).
        let mut session = None;
        let token = match credential {
            Credential::None => None,
            Credential::Session { claims } => {
                ex.credential.kind = "session";
                ex.credential.note =
                    Some("a sign-in session whose tokens are minted locally from these claims (unverified)".to_owned());
                match self.session_pair(claims) {
                    Ok(pair) => session = Some(pair),
                    Err(e) => ex.credential.error = Some(e),
                }
                None
            }
            Credential::Token(t) => {
                ex.credential.kind = "token";
                Some(t.clone())
            }
            Credential::Claims { claims, issuer } => {
                ex.credential.kind = "claims";
                ex.credential.note = Some(
                    "claims given as JSON: signed locally for this explanation, so the signature proves nothing (unverified)"
                        .to_owned(),
                );
                match (self.complete_claims(claims, issuer.as_deref()), &self.local) {
                    (Ok(full), Some(local)) => Some(local.mint(&full)),
                    (Ok(_), None) => {
                        ex.credential.error = Some("claims need an explainer made with for_claims".to_owned());
                        None
                    }
                    (Err(e), _) => {
                        ex.credential.error = Some(e);
                        None
                    }
                }
            }
        };
        let session = session.as_ref().map(|(id, access)| (id.as_str(), access.as_str()));
        let outcome = self.decide(&mut ex, method, raw_path, token.as_deref(), session, navigation).await;
        match outcome {
            Ok(permit) => {
                ex.status = 200;
                ex.decision = permit.decision().as_str();
                ex.reason = permit.reason().as_str();
                ex.forwarded = true;
                ex.upstream_headers = self.upstream_headers(&permit, token.as_deref());
            }
            Err(rejection) => {
                ex.decision = rejection.decision().as_str();
                ex.reason = rejection.reason().as_str();
                let response = rejection.into_response(REQUEST_ID, None);
                ex.status = response.status().as_u16();
                ex.response_headers = sorted(response.headers());
            }
        }
        // A locally signed credential never counts as verified.
        ex.credential.verified = ex.credential.verified && matches!(credential, Credential::Token(_));
        ex
    }

    /// The decision steps, recording each one in `ex`; `Ok` means the request is forwarded
    /// (`status` 200 stands for "whatever the upstream answers").
    async fn decide(
        &self,
        ex: &mut Explanation,
        method: &str,
        raw_path: &str,
        token: Option<&str>,
        session: Option<(&str, &str)>,
        navigation: bool,
    ) -> Result<Permit, Rejection> {
        let rt = &self.runtime;
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| Rejection::BadRequest(crate::error::Reason::BadRequest))?;
        if method == Method::CONNECT || method == Method::TRACE {
            return Err(Rejection::MethodNotAllowed);
        }
        if !method.as_str().bytes().all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_') {
            return Err(Rejection::BadRequest(crate::error::Reason::BadRequest));
        }
        let target = raw_path.split('?').next().unwrap_or_default();
        let normalised = path::normalise(target).map_err(|e| {
            ex.path_error = Some(e.to_string());
            Rejection::BadRequest(crate::error::Reason::AmbiguousPath)
        })?;
        ex.normalised_path = Some(normalised.clone());

        let candidates = rt.routes.candidates(&method, &normalised);
        ex.routes = candidates
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let why = match i {
                    0 => {
                        candidates.get(1).map(|next| format!("beats `{}`: {}", next.name(), route::precedence(r, next)))
                    }
                    _ => Some(route::precedence(candidates[0], r)),
                };
                candidate(r, i == 0, why)
            })
            .collect();
        let route = *candidates.first().ok_or(Rejection::Forbidden(crate::error::Reason::NoRoute))?;
        ex.route = Some(route.name().to_owned());

        let authn = if route.config.auth == AuthMode::None {
            ex.credential.note.get_or_insert_with(|| "auth: none: credentials are not read".to_owned());
            Authn::Skipped
        } else {
            match (token, session, &rt.login) {
                // The proxy consults the session only when no other credential is present, and
                // verifies its pair with the same code (SPEC §8).
                (None, Some((id, access)), Some(login)) => {
                    match login.verify_tokens(&rt.verifier, id, access, None, None).await {
                        Ok(v) => {
                            self.report_identity(ex, &v);
                            ex.checks = requirement_checks(&route.config.require, &v, rt.issuer_names());
                            Authn::Verified(v)
                        }
                        Err(e) => {
                            ex.credential.error = Some(format!("{e:?}"));
                            Authn::Invalid(crate::verify::TokenError::BadClaim("session tokens"))
                        }
                    }
                }
                (token, _, _) => self.token_authn(ex, route, token).await,
            }
        };
        let outcome = policy::decide(route, authn, rt.issuer_names());
        // A navigation without a credential may be sent to sign in, by the proxy's own rule.
        outcome.map_err(|r| {
            let mut headers = HeaderMap::new();
            if navigation {
                headers.insert("sec-fetch-mode", HeaderValue::from_static("navigate"));
            }
            let return_to = raw_path.to_owned();
            let login = rt.login.as_ref();
            crate::login::endpoints::sign_in_instead(
                login,
                &route.config,
                &method,
                &headers,
                &return_to,
                r,
                &mut Vec::new(),
            )
        })
    }

    async fn token_authn(&self, ex: &mut Explanation, route: &Route, token: Option<&str>) -> Authn {
        let rt = &self.runtime;
        {
            match token {
                None if ex.credential.error.is_some() => {
                    Authn::Invalid(crate::verify::TokenError::Malformed("claims could not be completed"))
                }
                None => Authn::Anonymous,
                Some(t) => match rt.verifier.verify(t, UseRule::Issuer).await {
                    Ok(v) => {
                        self.report_identity(ex, &v);
                        ex.checks = requirement_checks(&route.config.require, &v, rt.issuer_names());
                        Authn::Verified(v)
                    }
                    Err(e) => {
                        ex.credential.error = Some(format!("{}: {e}", e.reason().as_str()));
                        Authn::Invalid(e)
                    }
                },
            }
        }
    }

    fn report_identity(&self, ex: &mut Explanation, v: &Verified) {
        let c = &mut ex.credential;
        c.verified = true;
        c.issuer = self.runtime.issuer_names().get(v.issuer).cloned();
        c.token_use = Some(v.token_use.as_str());
        c.sub = Some(v.sub.clone());
        c.client_id = Some(v.client_id.clone());
        c.groups = Some(v.groups.clone());
        c.scope = Some(v.scope.clone());
    }

    /// The request as a client would send it, rewritten exactly as the proxy rewrites it.
    fn upstream_headers(&self, permit: &Permit, token: Option<&str>) -> Vec<(String, String)> {
        let rt = &self.runtime;
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static(EXPLAIN_HOST));
        if let Some(t) = token.and_then(|t| HeaderValue::from_str(&format!("Bearer {t}")).ok()) {
            h.insert(header::AUTHORIZATION, t);
        }
        headers::strip_untrusted(&mut h, &rt.config.identity, &Metrics::new());
        let request_id = HeaderValue::from_static(REQUEST_ID);
        let forwarding = Forwarding {
            peer: EXPLAIN_PEER.parse().unwrap_or_else(|_| std::net::SocketAddr::from(([192, 0, 2, 10], 50000))),
            tls: rt.config.tls.is_some(),
            request_id: &request_id,
            identity: &rt.config.identity,
            credential_headers: &rt.credential_headers,
        };
        headers::rewrite_for_upstream(&mut h, permit, &forwarding);
        let mut out = sorted(&h);
        // Never print a credential, even one the app is configured to receive.
        for (name, value) in &mut out {
            if name == "authorization" {
                *value = format!("Bearer <the presented token, {} bytes>", token.map_or(0, str::len));
            }
        }
        out
    }
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

fn candidate(r: &Route, chosen: bool, why: Option<String>) -> Candidate {
    let c = &r.config;
    Candidate {
        name: c.name.clone(),
        pattern: c.path.clone(),
        methods: c.methods.as_ref().map(|ms| ms.iter().map(|m| m.as_str().to_owned()).collect()),
        auth: match c.auth {
            AuthMode::None => "none",
            AuthMode::Optional => "optional",
            AuthMode::Required => "required",
        },
        mode: match c.mode {
            crate::config::Mode::Enforce => "enforce",
            crate::config::Mode::Audit => "audit",
        },
        chosen,
        why,
    }
}

fn expand(s: &str, client_id: &str) -> String {
    s.replace("${client_id}", client_id)
}

/// Each `require` condition with the values compared (the order `policy` checks them in).
pub fn requirement_checks(req: &Require, v: &Verified, issuer_names: &[String]) -> Vec<Check> {
    let mut out = Vec::new();
    let id = v.client_id.as_str();
    let scopes: Vec<&str> = v.scopes().collect();
    if let Some(want) = req.token_use {
        out.push(Check {
            requirement: "token_use".into(),
            pass: want.admits(v.token_use),
            want: json!(want.as_str()),
            got: json!(v.token_use.as_str()),
        });
    }
    if let Some(allowed) = &req.issuers {
        let name = issuer_names.get(v.issuer).cloned().unwrap_or_default();
        out.push(Check {
            requirement: "issuers".into(),
            pass: allowed.contains(&name),
            want: json!(allowed),
            got: json!(name),
        });
    }
    let list = |l: &[String]| l.iter().map(|s| expand(s, id)).collect::<Vec<_>>();
    if let Some(any) = &req.scopes_any {
        let want = list(any);
        let pass = want.iter().any(|w| scopes.contains(&w.as_str()));
        out.push(Check { requirement: "scopes_any".into(), pass, want: json!(want), got: json!(scopes) });
    }
    if let Some(all) = &req.scopes_all {
        let want = list(all);
        let pass = want.iter().all(|w| scopes.contains(&w.as_str()));
        out.push(Check { requirement: "scopes_all".into(), pass, want: json!(want), got: json!(scopes) });
    }
    if let Some(any) = &req.groups_any {
        let want = list(any);
        let pass = want.iter().any(|w| v.groups.contains(w));
        out.push(Check { requirement: "groups_any".into(), pass, want: json!(want), got: json!(v.groups) });
    }
    if let Some(all) = &req.groups_all {
        let want = list(all);
        let pass = want.iter().all(|w| v.groups.contains(w));
        out.push(Check { requirement: "groups_all".into(), pass, want: json!(want), got: json!(v.groups) });
    }
    for (claim, allowed) in &req.claims {
        let want = list(allowed);
        let got = v.claims.get(claim).cloned().unwrap_or(Value::Null);
        let pass = matches!(&got, Value::String(s) if want.contains(s));
        out.push(Check { requirement: format!("claims.{claim}"), pass, want: json!(want), got });
    }
    out
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
    let mut cred = match c.kind {
        "token" if c.verified => "token (signature verified against the configured JWKS)".to_owned(),
        "token" => "token (did not verify)".to_owned(),
        "claims" => "claims (UNVERIFIED: signed locally, the signature proves nothing)".to_owned(),
        _ => "none".to_owned(),
    };
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
    if c.note.is_some() && c.kind != "claims" {
        line("", c.note.clone().unwrap_or_default());
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
