//! `decide` on identities built with `Verified::for_tests`: no keys, no signatures, one row
//! per rule of SPEC §2 "Routes".
use super::*;
use crate::auth::identity::Unencodable;
use crate::auth::verify::TokenError;
use crate::config::Route;
use crate::config::TokenUse;
use crate::config::pattern::Pattern;
use crate::config::yaml::Span;
use crate::http::error::{Forbidden, InvalidToken};
use serde_json::json;

fn route(auth: AuthMode, mode: Mode, require: Require) -> Route {
    Route {
        name: "r".into(),
        path: Pattern::parse("/r").unwrap(),
        methods: None,
        auth,
        mode,
        require,
        login: true,
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
    assert_eq!(outcome(&audit(groups), Authn::Invalid(TokenError::KeysUnavailable)), Err(Rejection::KeysUnavailable));
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
    let got: Vec<(String, bool)> = checks(&require, &v, NAMES).into_iter().map(|c| (c.requirement, c.pass)).collect();
    let want = [("token_use", true), ("scopes_any", true), ("groups_any", true), ("claims.c", false)];
    assert_eq!(got, want.map(|(r, p)| (r.to_owned(), p)));
    assert_eq!(checks(&require, &v, NAMES)[1].want, json!(["s-test-client"]));
}
