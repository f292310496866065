//! What each `require` condition of a route means (SPEC §2 "Routes"): whether a verified identity
//! meets it, the refusal when it does not, and how to show it. `policy` applies them in order and
//! stops at the first that fails; `explain` lists them all — one definition serves both.

use serde::Serialize;

use super::expand;
use crate::auth::verify::Verified;
use crate::config::{Require, TokenUse};
use crate::http::error::{Forbidden, InvalidToken, Rejection};

/// One `require` condition. `policy::check` stops at the first that does not hold; [`checks`]
/// lists them all for `explain` — the same conditions, in the same order, evaluated by the same
/// code.
#[derive(Debug, Clone, Copy)]
pub(super) enum Requirement<'r> {
    TokenUse(TokenUse),
    Issuers(&'r [String]),
    ScopesAny(&'r [String]),
    ScopesAll(&'r [String]),
    GroupsAny(&'r [String]),
    GroupsAll(&'r [String]),
    Claim(&'r str, &'r [String]),
}

/// The conditions of `r`, in the order they are checked.
pub(super) fn each(r: &Require) -> impl Iterator<Item = Requirement<'_>> {
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
    pub(super) fn holds(&self, v: &Verified, issuer_names: &[String]) -> bool {
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
    pub(super) fn denial(&self, v: &Verified) -> Rejection {
        match *self {
            Requirement::TokenUse(_) => Rejection::InvalidToken(InvalidToken::BadTokenUse),
            // The token verified against its own pool; it is simply not admitted here. A 401 would
            // tell a browser app to refresh and retry, which can never succeed (SPEC §3: 403).
            Requirement::Issuers(_) => Rejection::Forbidden(Forbidden::Issuer),
            // The scopes that would satisfy the route, from config (never from the token).
            Requirement::ScopesAny(list) | Requirement::ScopesAll(list) => Rejection::InsufficientScope {
                scope: list.iter().map(|s| expand(s, &v.client_id)).collect::<Vec<_>>().join(" "),
            },
            Requirement::GroupsAny(_) | Requirement::GroupsAll(_) => Rejection::Forbidden(Forbidden::Group),
            Requirement::Claim(..) => Rejection::Forbidden(Forbidden::Claim),
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

/// Every `require` condition of `require` with the values compared, in the order `policy::decide`
/// checks them. The status and reason always come from `decide` itself.
pub fn checks(require: &Require, v: &Verified, issuer_names: &[String]) -> Vec<Check> {
    each(require).map(|r| r.check(v, issuer_names)).collect()
}
