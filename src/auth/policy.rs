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
use serde::Serialize;

use crate::config::{AuthMode, Mode, Require, TokenUse};
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
/// valid for this route), then scopes, groups, claims (403). The first that does not hold decides.
fn check(require: &Require, v: &Verified, issuer_names: &[String]) -> Result<(), Rejection> {
    match requirements(require).find(|r| !r.holds(v, issuer_names)) {
        Some(failed) => Err(failed.denial(v)),
        None => Ok(()),
    }
}

/// One `require` condition. [`check`] stops at the first that does not hold; [`checks`] lists
/// them all for `explain` — the same conditions, in the same order, evaluated by the same code.
#[derive(Debug, Clone, Copy)]
enum Requirement<'r> {
    TokenUse(TokenUse),
    Issuers(&'r [String]),
    ScopesAny(&'r [String]),
    ScopesAll(&'r [String]),
    GroupsAny(&'r [String]),
    GroupsAll(&'r [String]),
    Claim(&'r str, &'r [String]),
}

fn requirements(r: &Require) -> impl Iterator<Item = Requirement<'_>> {
    r.token_use
        .map(Requirement::TokenUse)
        .into_iter()
        .chain(r.issuers.as_deref().map(Requirement::Issuers))
        .chain(r.scopes_any.as_deref().map(Requirement::ScopesAny))
        .chain(r.scopes_all.as_deref().map(Requirement::ScopesAll))
        .chain(r.groups_any.as_deref().map(Requirement::GroupsAny))
        .chain(r.groups_all.as_deref().map(Requirement::GroupsAll))
        .chain(r.claims.iter().map(|(claim, allowed)| Requirement::Claim(claim, allowed)))
}

impl Requirement<'_> {
    fn holds(&self, v: &Verified, issuer_names: &[String]) -> bool {
        // Requirement strings are expanded once each; only templated ones allocate.
        let id = v.client_id.as_str();
        let has_scope = |want: &String| {
            let want = expand(want, id);
            v.scopes().any(|s| s == want)
        };
        // Group names are compared exactly and case-sensitively (SECURITY CLV-08).
        let in_group = |want: &String| {
            let want = expand(want, id);
            v.groups.iter().any(|g| *g == want)
        };
        match *self {
            Requirement::TokenUse(want) => v.satisfies_use(want),
            Requirement::Issuers(allowed) => {
                let name = issuer_names.get(v.issuer).map(String::as_str).unwrap_or_default();
                allowed.iter().any(|a| a == name)
            }
            Requirement::ScopesAny(any) => any.iter().any(has_scope),
            Requirement::ScopesAll(all) => all.iter().all(has_scope),
            Requirement::GroupsAny(any) => any.iter().any(in_group),
            Requirement::GroupsAll(all) => all.iter().all(in_group),
            Requirement::Claim(claim, allowed) => match v.claims.get(claim) {
                Some(serde_json::Value::String(actual)) => allowed.iter().any(|a| expand(a, id) == actual.as_str()),
                // Only string claims can satisfy a claim rule; no coercion of numbers or booleans.
                _ => false,
            },
        }
    }

    /// The refusal when this condition does not hold.
    fn denial(&self, v: &Verified) -> Rejection {
        match *self {
            Requirement::TokenUse(_) => Rejection::InvalidToken(Reason::BadTokenUse),
            Requirement::Issuers(_) => Rejection::InvalidToken(Reason::BadIss),
            // The scopes that would satisfy the route, from config (never from the token).
            Requirement::ScopesAny(list) | Requirement::ScopesAll(list) => Rejection::InsufficientScope {
                scope: list.iter().map(|s| expand(s, &v.client_id)).collect::<Vec<_>>().join(" "),
            },
            Requirement::GroupsAny(_) | Requirement::GroupsAll(_) => Rejection::Forbidden(Reason::ForbiddenGroup),
            Requirement::Claim(..) => Rejection::Forbidden(Reason::ForbiddenClaim),
        }
    }

    /// For display: what the route asks for (templates expanded) and what the identity has.
    fn check(&self, v: &Verified, issuer_names: &[String]) -> Check {
        use serde_json::{Value, json};
        let id = v.client_id.as_str();
        let list = |l: &[String]| json!(l.iter().map(|s| expand(s, id)).collect::<Vec<_>>());
        let scopes = || json!(v.scopes().collect::<Vec<_>>());
        let (requirement, want, got) = match *self {
            Requirement::TokenUse(want) => ("token_use".to_owned(), json!(want.as_str()), json!(v.token_use.as_str())),
            Requirement::Issuers(allowed) => {
                ("issuers".to_owned(), json!(allowed), json!(issuer_names.get(v.issuer).cloned().unwrap_or_default()))
            }
            Requirement::ScopesAny(l) => ("scopes_any".to_owned(), list(l), scopes()),
            Requirement::ScopesAll(l) => ("scopes_all".to_owned(), list(l), scopes()),
            Requirement::GroupsAny(l) => ("groups_any".to_owned(), list(l), json!(v.groups)),
            Requirement::GroupsAll(l) => ("groups_all".to_owned(), list(l), json!(v.groups)),
            Requirement::Claim(claim, l) => {
                (format!("claims.{claim}"), list(l), v.claims.get(claim).cloned().unwrap_or(Value::Null))
            }
        };
        Check { requirement, pass: self.holds(v, issuer_names), want, got }
    }
}

/// One `require` condition of a route, evaluated for display (`explain`, `test`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub requirement: String,
    pub pass: bool,
    /// What the route asks for.
    pub want: serde_json::Value,
    /// What the token has.
    pub got: serde_json::Value,
}

/// Every `require` condition of `require` with the values compared, in the order [`decide`]
/// checks them. The status and reason always come from `decide` itself.
pub fn checks(require: &Require, v: &Verified, issuer_names: &[String]) -> Vec<Check> {
    requirements(require).map(|r| r.check(v, issuer_names)).collect()
}

/// `${client_id}` replaced by the verified token's client id; no allocation without a template.
fn expand<'a>(s: &'a str, client_id: &str) -> Cow<'a, str> {
    if s.contains("${client_id}") { Cow::Owned(s.replace("${client_id}", client_id)) } else { Cow::Borrowed(s) }
}
