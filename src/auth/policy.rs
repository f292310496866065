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
        (_, Authn::Invalid(e)) => return Err((Rejection::from(e), None)),
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

/// Every `require` condition, in a fixed order: token kind (401: the token is not of a kind this
/// route accepts), then issuer, scopes, groups, claims (403: a valid token whose route requirement
/// is not met, SPEC §3). The first that does not hold decides.
fn check(require: &Require, v: &Verified, issuer_names: &[String]) -> Result<(), Rejection> {
    match requirements::each(require).find(|r| !r.holds(v, issuer_names)) {
        Some(failed) => Err(failed.denial(v)),
        None => Ok(()),
    }
}

/// `${client_id}` replaced by the verified token's client id; no allocation without a template.
fn expand<'a>(s: &'a str, client_id: &str) -> Cow<'a, str> {
    if s.contains("${client_id}") { Cow::Owned(s.replace("${client_id}", client_id)) } else { Cow::Borrowed(s) }
}

mod requirements;
pub use requirements::{Check, checks};

#[cfg(test)]
mod tests;
