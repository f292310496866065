//! The access decision (SPEC §2 "Routes", `require`, `mode`): [`decide`] turns a route and the
//! authentication outcome into a [`Permit`] or a [`Rejection`]. This is the only module that can
//! make a `Permit`, and forwarding requires one — so no request reaches the upstream without a
//! decision, and identity headers only ever come from a token this function accepted. Route
//! decisions are never cached.

use std::borrow::Cow;
use std::sync::Arc;

use crate::auth::identity::PreparedIdentity;
use crate::auth::verify::{TokenError, Verified};
use crate::config::Route;
use crate::config::{AuthMode, Mode, Require};
use crate::http::error::{Decision, Reason, Rejection};

/// What authentication produced for this request.
#[derive(Debug)]
pub enum Authn {
    /// Credentials were not read (`auth: none`, CORS preflight pass-through).
    Skipped,
    /// No credential was presented.
    Anonymous,
    /// A credential was presented and failed.
    Invalid(TokenError),
    /// A credential verified.
    Verified(Arc<Verified>),
}

/// Permission to forward. Fields are private: only [`decide`] constructs one.
#[derive(Debug)]
pub struct Permit {
    identity: Option<Arc<Verified>>,
    decision: Decision,
    reason: Reason,
}

impl Permit {
    /// The identity to forward, present only when a token verified and its headers encode.
    pub fn identity(&self) -> Option<&PreparedIdentity> {
        self.identity.as_ref().and_then(|v| v.identity.as_ref().ok())
    }
    pub fn verified(&self) -> Option<&Arc<Verified>> {
        self.identity.as_ref()
    }
    pub fn decision(&self) -> Decision {
        self.decision
    }
    /// `ok`/`public`, or for `audit_deny` the reason the rule would have denied.
    pub fn reason(&self) -> Reason {
        self.reason
    }
}

/// Decide whether a request on `route` may pass. `issuers` are the configured issuer names by
/// index, for `require.issuers`.
pub fn decide(route: &Route, authn: Authn, issuer_names: &[String]) -> Result<Permit, Rejection> {
    let config = route;
    let outcome = evaluate(config.auth, &config.require, authn, issuer_names);
    match (outcome, config.mode) {
        (Ok(permit), _) => Ok(permit),
        (Err((rejection, _)), Mode::Enforce) => Err(rejection),
        // Shadow rollout: forward anyway, recording what would have happened. Identity is only
        // added when the token verified and encodes (SPEC §2 `mode: audit`).
        (Err((rejection, verified)), Mode::Audit) => match rejection {
            Rejection::KeysUnavailable => Err(rejection),
            _ => Ok(Permit {
                identity: verified.filter(|v| v.identity.is_ok()),
                decision: Decision::AuditDeny,
                reason: rejection.reason(),
            }),
        },
    }
}

type Denial = (Rejection, Option<Arc<Verified>>);

fn evaluate(auth: AuthMode, require: &Require, authn: Authn, issuer_names: &[String]) -> Result<Permit, Denial> {
    let public = || Permit { identity: None, decision: Decision::Public, reason: Reason::Public };
    let verified = match (auth, authn) {
        (AuthMode::None, _) | (_, Authn::Skipped) => return Ok(public()),
        (AuthMode::Optional, Authn::Anonymous) => return Ok(public()),
        (AuthMode::Required, Authn::Anonymous) => return Err((Rejection::MissingToken, None)),
        // An invalid token is never silently treated as anonymous, even on optional routes.
        (_, Authn::Invalid(TokenError::KeysUnavailable | TokenError::Clock)) => {
            return Err((Rejection::KeysUnavailable, None));
        }
        (_, Authn::Invalid(e)) => return Err((Rejection::InvalidToken(e.reason()), None)),
        (_, Authn::Verified(v)) => v,
    };
    match check(require, &verified, issuer_names) {
        Ok(()) => {}
        Err(rejection) => return Err((rejection, Some(verified))),
    }
    if verified.identity.is_err() {
        return Err((Rejection::UnencodableClaim, None));
    }
    Ok(Permit { identity: Some(verified), decision: Decision::Allow, reason: Reason::Ok })
}

/// Every `require` condition, in a fixed order: token kind and issuer (401, the token is not
/// valid for this route), then scopes, groups, claims (403).
fn check(require: &Require, v: &Verified, issuer_names: &[String]) -> Result<(), Rejection> {
    if let Some(want) = require.token_use
        && !v.satisfies_use(want)
    {
        return Err(Rejection::InvalidToken(Reason::BadTokenUse));
    }
    if let Some(allowed) = &require.issuers {
        let name = issuer_names.get(v.issuer).map(String::as_str).unwrap_or_default();
        if !allowed.iter().any(|a| a == name) {
            return Err(Rejection::InvalidToken(Reason::BadIss));
        }
    }
    // Requirement strings are expanded once each; only templated ones allocate.
    let id = v.client_id.as_str();
    let has_scope = |want: &str| {
        let want = expand(want, id);
        v.scopes().any(|s| s == want)
    };
    let scope_denial = |list: &[String]| Rejection::InsufficientScope {
        scope: list.iter().map(|s| expand(s, id)).collect::<Vec<_>>().join(" "),
    };
    if let Some(any) = &require.scopes_any
        && !any.iter().any(|s| has_scope(s))
    {
        return Err(scope_denial(any));
    }
    if let Some(all) = &require.scopes_all
        && !all.iter().all(|s| has_scope(s))
    {
        return Err(scope_denial(all));
    }
    // Group names are compared exactly and case-sensitively (SECURITY CLV-08).
    let in_group = |want: &str| {
        let want = expand(want, id);
        v.groups.iter().any(|g| *g == want)
    };
    if let Some(any) = &require.groups_any
        && !any.iter().any(|g| in_group(g))
    {
        return Err(Rejection::Forbidden(Reason::ForbiddenGroup));
    }
    if let Some(all) = &require.groups_all
        && !all.iter().all(|g| in_group(g))
    {
        return Err(Rejection::Forbidden(Reason::ForbiddenGroup));
    }
    for (claim, allowed) in &require.claims {
        let ok = match v.claims.get(claim) {
            Some(serde_json::Value::String(actual)) => allowed.iter().any(|a| expand(a, id) == actual.as_str()),
            // Only string claims can satisfy a claim rule; no coercion of numbers or booleans.
            _ => false,
        };
        if !ok {
            return Err(Rejection::Forbidden(Reason::ForbiddenClaim));
        }
    }
    Ok(())
}

/// `${client_id}` replaced by the verified token's client id; no allocation without a template.
fn expand<'a>(s: &'a str, client_id: &str) -> Cow<'a, str> {
    if s.contains("${client_id}") { Cow::Owned(s.replace("${client_id}", client_id)) } else { Cow::Borrowed(s) }
}
