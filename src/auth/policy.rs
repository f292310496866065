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
use crate::http::error::{Decision, Forbidden, InvalidToken, Reason, Rejection};

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

/// Every `require` condition of `require` with the values compared, in the order [`decide`]
/// checks them. The status and reason always come from `decide` itself.
pub fn checks(require: &Require, v: &Verified, issuer_names: &[String]) -> Vec<Check> {
    requirements(require).map(|r| r.check(v, issuer_names)).collect()
}

/// `${client_id}` replaced by the verified token's client id; no allocation without a template.
fn expand<'a>(s: &'a str, client_id: &str) -> Cow<'a, str> {
    if s.contains("${client_id}") { Cow::Owned(s.replace("${client_id}", client_id)) } else { Cow::Borrowed(s) }
}

#[cfg(test)]
mod tests {
    //! `decide` on identities built with `Verified::for_tests`: no keys, no signatures, one row
    //! per rule of SPEC §2 "Routes".
    use super::*;
    use crate::auth::identity::Unencodable;
    use crate::auth::verify::TokenError;
    use crate::config::Route;
    use crate::config::pattern::Pattern;
    use crate::config::yaml::Span;
    use serde_json::json;

    fn route(auth: AuthMode, mode: Mode, require: Require) -> Route {
        Route {
            name: "r".into(),
            path: Pattern::parse("/r").unwrap(),
            methods: None,
            auth,
            mode,
            require,
            span: Span { line: 1, col: 1 },
        }
    }

    fn required(require: Require) -> Route {
        route(AuthMode::Required, Mode::Enforce, require)
    }

    fn list(items: &[&str]) -> Option<Vec<String>> {
        Some(items.iter().map(|s| s.to_string()).collect())
    }

    fn user(groups: &[&str], scope: &str) -> Arc<Verified> {
        let mut v = Verified::for_tests("u-1");
        v.groups = groups.iter().map(|s| s.to_string()).collect();
        v.scope = scope.to_owned();
        Arc::new(v)
    }

    const NAMES: &[String] = &[];

    fn outcome(route: &Route, authn: Authn) -> Result<(Decision, Reason, bool), Rejection> {
        decide(route, authn, &["main".to_owned(), "partner".to_owned()])
            .map(|p| (p.decision(), p.reason(), p.identity().is_some()))
    }

    #[test]
    fn authentication_outcomes_by_auth_mode() {
        let none = route(AuthMode::None, Mode::Enforce, Require::default());
        let optional = route(AuthMode::Optional, Mode::Enforce, Require::default());
        let req = required(Require::default());
        let public = Ok((Decision::Public, Reason::Public, false));
        assert_eq!(outcome(&none, Authn::Verified(user(&[], ""))), public, "auth: none never adds identity");
        assert_eq!(outcome(&none, Authn::Invalid(TokenError::Expired)), public, "auth: none ignores tokens");
        assert_eq!(outcome(&optional, Authn::Anonymous), public);
        assert_eq!(outcome(&req, Authn::Skipped), public, "a passed-through preflight");
        assert_eq!(outcome(&req, Authn::Anonymous), Err(Rejection::MissingToken));
        // An invalid token is never treated as anonymous, even where anonymous may pass.
        let expired = Err(Rejection::InvalidToken(InvalidToken::Expired));
        assert_eq!(outcome(&optional, Authn::Invalid(TokenError::Expired)), expired);
        assert_eq!(outcome(&req, Authn::Invalid(TokenError::Clock)), Err(Rejection::KeysUnavailable));
        assert_eq!(outcome(&optional, Authn::Verified(user(&[], ""))), Ok((Decision::Allow, Reason::Ok, true)));
    }

    #[test]
    fn each_requirement_denies_with_its_own_refusal() {
        let scope = |s: &str| Rejection::InsufficientScope { scope: s.to_owned() };
        let table: Vec<(Require, Arc<Verified>, Result<(), Rejection>)> = vec![
            (Require { scopes_any: list(&["a", "b"]), ..Default::default() }, user(&[], "x b"), Ok(())),
            (Require { scopes_any: list(&["a", "b"]), ..Default::default() }, user(&[], "x"), Err(scope("a b"))),
            // `${client_id}` is the verified token's client, in the check and in the refusal.
            (
                Require { scopes_all: list(&["openid", "Admins-${client_id}"]), ..Default::default() },
                user(&[], "openid Admins-test-client"),
                Ok(()),
            ),
            (
                Require { scopes_all: list(&["openid", "Admins-${client_id}"]), ..Default::default() },
                user(&[], "openid"),
                Err(scope("openid Admins-test-client")),
            ),
            // Group names compare exactly, case included (SECURITY CLV-08).
            (Require { groups_any: list(&["Admins"]), ..Default::default() }, user(&["Admins"], ""), Ok(())),
            (
                Require { groups_any: list(&["Admins"]), ..Default::default() },
                user(&["admins", "Admins "], ""),
                Err(Rejection::Forbidden(Forbidden::Group)),
            ),
            (
                Require { groups_all: list(&["a", "b"]), ..Default::default() },
                user(&["a"], ""),
                Err(Rejection::Forbidden(Forbidden::Group)),
            ),
            (
                Require { token_use: Some(TokenUse::Id), ..Default::default() },
                user(&[], ""),
                Err(Rejection::InvalidToken(InvalidToken::BadTokenUse)),
            ),
            (
                Require { issuers: list(&["partner"]), ..Default::default() },
                user(&[], ""),
                Err(Rejection::Forbidden(Forbidden::Issuer)),
            ),
            (Require { issuers: list(&["main"]), ..Default::default() }, user(&[], ""), Ok(())),
        ];
        for (require, who, want) in table {
            let got = decide(&required(require.clone()), Authn::Verified(who), &["main".to_owned()]).map(|_| ());
            assert_eq!(got, want, "{require:?}");
        }
    }

    #[test]
    fn claim_rules_match_strings_only() {
        let require =
            Require { claims: vec![("level".into(), vec!["1".into(), "${client_id}".into()])], ..Default::default() };
        let with = |value: serde_json::Value| {
            let mut v = Verified::for_tests("u");
            v.claims.insert("level".into(), value);
            decide(&required(require.clone()), Authn::Verified(Arc::new(v)), NAMES).map(|_| ())
        };
        assert_eq!(with(json!("1")), Ok(()));
        assert_eq!(with(json!("test-client")), Ok(()), "templates expand to the token's client id");
        let denied = Err(Rejection::Forbidden(Forbidden::Claim));
        assert_eq!(with(json!(1)), denied, "no coercion of numbers");
        assert_eq!(with(json!(["1"])), denied);
        assert_eq!(with(json!(null)), denied);
    }

    #[test]
    fn a_pair_satisfies_either_token_use() {
        for want in [TokenUse::Id, TokenUse::Access] {
            let require = Require { token_use: Some(want), ..Default::default() };
            let mut pair = Verified::for_tests("u");
            pair.paired = true;
            assert!(decide(&required(require), Authn::Verified(Arc::new(pair)), NAMES).is_ok(), "{want:?}");
        }
    }

    #[test]
    fn unencodable_identity_is_refused_never_truncated() {
        let mut v = Verified::for_tests("u");
        v.identity = Err(Unencodable);
        let got = decide(&required(Require::default()), Authn::Verified(Arc::new(v)), NAMES).map(|_| ());
        assert_eq!(got, Err(Rejection::UnencodableClaim));
    }

    #[test]
    fn audit_mode_forwards_what_it_would_deny() {
        let audit = |require: Require| route(AuthMode::Required, Mode::Audit, require);
        let groups = Require { groups_any: list(&["Admins"]), ..Default::default() };
        // A verified identity that fails a rule is forwarded with its identity.
        assert_eq!(
            outcome(&audit(groups.clone()), Authn::Verified(user(&["Staff"], ""))),
            Ok((Decision::AuditDeny, Reason::ForbiddenGroup, true))
        );
        // No identity without a verified token.
        assert_eq!(
            outcome(&audit(groups.clone()), Authn::Anonymous),
            Ok((Decision::AuditDeny, Reason::MissingToken, false))
        );
        assert_eq!(
            outcome(&audit(groups.clone()), Authn::Invalid(TokenError::Expired)),
            Ok((Decision::AuditDeny, Reason::Expired, false))
        );
        // Nor when the identity cannot be encoded.
        let mut v = Verified::for_tests("u");
        v.identity = Err(Unencodable);
        assert_eq!(
            outcome(&audit(groups.clone()), Authn::Verified(Arc::new(v))),
            Ok((Decision::AuditDeny, Reason::ForbiddenGroup, false))
        );
        // Missing keys are never waved through: there is nothing to audit.
        assert_eq!(
            outcome(&audit(groups), Authn::Invalid(TokenError::KeysUnavailable)),
            Err(Rejection::KeysUnavailable)
        );
    }

    #[test]
    fn checks_list_every_requirement_in_decision_order() {
        let require = Require {
            token_use: Some(TokenUse::Access),
            scopes_any: list(&["s-${client_id}"]),
            groups_any: list(&["g"]),
            claims: vec![("c".into(), vec!["v".into()])],
            ..Default::default()
        };
        let v = user(&["g"], "s-test-client");
        let got: Vec<(String, bool)> =
            checks(&require, &v, NAMES).into_iter().map(|c| (c.requirement, c.pass)).collect();
        let want = [("token_use", true), ("scopes_any", true), ("groups_any", true), ("claims.c", false)];
        assert_eq!(got, want.map(|(r, p)| (r.to_owned(), p)));
        assert_eq!(checks(&require, &v, NAMES)[1].want, json!(["s-test-client"]));
    }
}
