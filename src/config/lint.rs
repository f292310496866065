//! Lint warnings for a valid config: things that load but are probably not what the author
//! meant. Each finding has a stable `code` for CI (`check --format json`). Errors are not here —
//! a config with errors never loads (`decode`) — and decoding never runs the lints: `check`
//! prints them, `run` and every applied reload log them ([`log_findings`]).
//!
//! Codes: `audit_mode`, `forward_token`, `user_writable_claim`, `unreachable_route`,
//! `shadowed_route`, `public_under_protected`, `unsatisfiable`, `non_loopback_upstream`,
//! `login_logout_origin`.

use std::collections::HashMap;

use http::Method;
use serde::Serialize;

use crate::config::pattern::Segment;
use crate::config::{AuthMode, Config, CredentialSource, Mode, Route, TokenUse, UpstreamTarget};

/// One warning about a loadable config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub code: &'static str,
    /// The route it is about, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Line of that route in the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {} [{}]", self.message, self.code),
            None => write!(f, "{} [{}]", self.message, self.code),
        }
    }
}

fn finding(code: &'static str, route: Option<&Route>, message: String) -> Finding {
    Finding { code, route: route.map(|r| r.name.clone()), line: route.map(|r| r.span.line), message }
}

/// Every finding, in a stable order: per route in file order, then global ones.
pub fn lint(c: &Config) -> Vec<Finding> {
    let ix = Index::new(c);
    let mut out = Vec::new();
    for (i, route) in c.routes.iter().enumerate() {
        if route.mode == Mode::Audit {
            out.push(finding(
                "audit_mode",
                Some(route),
                format!("route `{}` is in audit mode: it forwards requests its rules would deny", route.name),
            ));
        }
        for (claim, _) in &route.require.claims {
            if crate::config::is_user_writable(claim) {
                out.push(finding(
                    "user_writable_claim",
                    Some(route),
                    format!(
                        "route `{}` requires claim `{claim}`, which users may be able to change themselves; prefer groups or scopes",
                        route.name
                    ),
                ));
            }
        }
        out.extend(reachability(c, i, &ix));
        out.extend(public_under_protected(c, i, &ix));
        out.extend(unsatisfiable(c, route));
    }
    if c.identity.forward_token {
        out.push(finding(
            "forward_token",
            None,
            "identity_headers.forward_token is true: the app receives the raw credential".to_owned(),
        ));
    }
    out.extend(login(c));
    // The trust boundary (SECURITY DEP-01): identity headers mean something only if nothing but
    // Portcullis can reach the app. An upstream on a routable address usually means the app
    // listens there too, where any pod can send it `X-User-Sub` directly.
    if let UpstreamTarget::Http { authority } = &c.upstream.target
        && !crate::config::is_loopback_host(authority.host())
    {
        out.push(finding(
            "non_loopback_upstream",
            None,
            format!(
                "upstream {authority} is not a loopback address: make sure the app is reachable only through \
                 Portcullis (bind it to 127.0.0.1 or a unix socket), or anyone who reaches it can set identity headers"
            ),
        ));
    }
    out
}

/// One segment of a pattern as the lints compare it: literals case-folded when matching is
/// case-insensitive, so that two patterns have equal shapes exactly when `Pattern::same_paths`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Shape {
    Literal(String),
    Star,
    Rest,
}

fn shape(route: &Route, case_insensitive: bool) -> Vec<Shape> {
    route
        .path
        .segments()
        .iter()
        .map(|seg| match seg {
            Segment::Literal(l) if case_insensitive => Shape::Literal(l.to_ascii_lowercase()),
            Segment::Literal(l) => Shape::Literal(l.clone()),
            Segment::Star => Shape::Star,
            Segment::Rest => Shape::Rest,
        })
        .collect()
}

/// Every route's shape computed once, and the routes grouped the two ways the checks look them
/// up, so that linting (at every start and reload) stays linear in the number of routes instead
/// of comparing every pair (10,000 routes: 10^8 comparisons).
struct Index {
    shapes: Vec<Vec<Shape>>,
    /// Shape → the routes with it, in file order.
    by_shape: HashMap<Vec<Shape>, Vec<usize>>,
    /// First literal segment → the protected routes whose pattern starts with it, in file order.
    protected_by_first: HashMap<Shape, Vec<usize>>,
}

impl Index {
    fn new(c: &Config) -> Index {
        let shapes: Vec<Vec<Shape>> = c.routes.iter().map(|r| shape(r, c.case_insensitive)).collect();
        let mut by_shape: HashMap<Vec<Shape>, Vec<usize>> = HashMap::new();
        let mut protected_by_first: HashMap<Shape, Vec<usize>> = HashMap::new();
        for (i, sh) in shapes.iter().enumerate() {
            by_shape.entry(sh.clone()).or_default().push(i);
            if c.routes[i].auth == AuthMode::Required
                && let Some(first @ Shape::Literal(_)) = sh.first()
            {
                protected_by_first.entry(first.clone()).or_default().push(i);
            }
        }
        Index { shapes, by_shape, protected_by_first }
    }
}

fn method_names(ms: &[Method]) -> String {
    ms.iter().map(Method::as_str).collect::<Vec<_>>().join(", ")
}

/// Routes with the same shape compete only on methods: one that lists the method beats one that
/// lists none, and between equals the earlier in the file wins (`RouteTable::candidates` sorts
/// stably). A route can so lose some methods (shadowed) or all of them (unreachable).
fn reachability(c: &Config, i: usize, ix: &Index) -> Vec<Finding> {
    let r = &c.routes[i];
    let same: Vec<(usize, &Route)> =
        ix.by_shape[&ix.shapes[i]].iter().filter(|&&j| j != i).map(|&j| (j, &c.routes[j])).collect();
    if same.is_empty() {
        return Vec::new();
    }
    match &r.methods {
        None => {
            if let Some((_, earlier)) = same.iter().find(|(j, o)| *j < i && o.methods.is_none()) {
                return vec![finding(
                    "unreachable_route",
                    Some(r),
                    format!(
                        "route `{}` ({}) never matches: route `{}` ({}) matches the same paths and methods and comes first",
                        r.name, r.path, earlier.name, earlier.path
                    ),
                )];
            }
            let mut taken: Vec<Method> = Vec::new();
            let mut by = Vec::new();
            for (_, o) in &same {
                if let Some(ms) = &o.methods {
                    taken.extend(ms.iter().cloned());
                    by.push(format!("`{}`", o.name));
                }
            }
            if taken.is_empty() {
                return Vec::new();
            }
            vec![finding(
                "shadowed_route",
                Some(r),
                format!(
                    "route `{}` ({}) never handles {}: {} list(s) those methods for the same paths and win{}",
                    r.name,
                    r.path,
                    method_names(&taken),
                    by.join(", "),
                    weaker_note(r, same.iter().map(|(_, o)| *o).filter(|o| o.methods.is_some()))
                ),
            )]
        }
        Some(mine) => {
            let lost: Vec<Method> = mine
                .iter()
                .filter(|m| same.iter().any(|(j, o)| *j < i && o.methods.as_ref().is_some_and(|ms| ms.contains(m))))
                .cloned()
                .collect();
            if lost.is_empty() {
                Vec::new()
            } else if lost.len() == mine.len() {
                vec![finding(
                    "unreachable_route",
                    Some(r),
                    format!(
                        "route `{}` ({}) never matches: earlier routes with the same paths list all its methods",
                        r.name, r.path
                    ),
                )]
            } else {
                vec![finding(
                    "shadowed_route",
                    Some(r),
                    format!(
                        "route `{}` ({}) never handles {}: an earlier route with the same paths lists them",
                        r.name,
                        r.path,
                        method_names(&lost)
                    ),
                )]
            }
        }
    }
}

/// Appended when a winner asks for less than the shadowed route: the likely mistake.
fn weaker_note<'a>(r: &Route, winners: impl Iterator<Item = &'a Route>) -> String {
    let weaker: Vec<String> =
        winners.filter(|w| strictness(w) < strictness(r)).map(|w| format!("`{}`", w.name)).collect();
    if weaker.is_empty() { String::new() } else { format!(" — and {} require(s) less", weaker.join(", ")) }
}

/// A coarse order: public < optional < signed-in < signed-in with requirements.
fn strictness(r: &Route) -> u8 {
    match r.auth {
        AuthMode::None => 0,
        AuthMode::Optional => 1,
        AuthMode::Required if r.require == Default::default() => 2,
        AuthMode::Required => 3,
    }
}

/// A public (or anonymous-allowed) route nested inside a protected subtree wins there because it
/// is more specific — often intended (`/admin/health`), sometimes a hole. The catch-all `/**` is
/// not a "prefix": public routes beside it are the normal layout.
fn public_under_protected(c: &Config, i: usize, ix: &Index) -> Vec<Finding> {
    let s = &c.routes[i];
    if s.auth == AuthMode::Required {
        return Vec::new();
    }
    let ci = c.case_insensitive;
    let mut out = Vec::new();
    // Only a protected route with a literal first segment counts, and to cover `s` that segment
    // must be `s`'s first one (`Pattern::covers`): only those routes are looked at.
    let candidates = ix.shapes[i].first().and_then(|first| ix.protected_by_first.get(first));
    for &j in candidates.into_iter().flatten() {
        let r = &c.routes[j];
        // Here the question is whether one request could reach both routes, so a route without
        // `methods` (every method) shares methods with any other.
        if r.auth == AuthMode::Required
            && !r.path.same_paths(&s.path, ci)
            && r.path.covers(&s.path, ci)
            && r.shares_a_method_with(s)
        {
            let what =
                if s.auth == AuthMode::None { "public (auth: none)" } else { "anonymous-allowed (auth: optional)" };
            out.push(finding(
                "public_under_protected",
                Some(s),
                format!(
                    "route `{}` ({}) is {what} inside protected route `{}` ({}) and wins there as the more specific route",
                    s.name, s.path, r.name, r.path
                ),
            ));
        }
    }
    out
}

/// Requirements no admitted issuer's tokens can meet.
fn unsatisfiable(c: &Config, r: &Route) -> Vec<Finding> {
    if r.auth == AuthMode::None {
        return Vec::new();
    }
    let req = &r.require;
    let admitted: Vec<_> =
        c.issuers.iter().filter(|i| req.issuers.as_ref().is_none_or(|names| names.contains(&i.name))).collect();
    let mut out = Vec::new();
    // Cognito id tokens carry no `scope` claim: scope rules on an id-token-only route never pass
    // — unless the credentials can carry an id+access pair, whose scopes come from the access half.
    let pairs = c.credentials.len() > 1 || c.credentials.iter().any(|s| matches!(s, CredentialSource::AmplifyCookie));
    let id_only = !pairs
        && !admitted.is_empty()
        && admitted.iter().all(|i| match req.token_use {
            Some(TokenUse::Id) => true,
            Some(_) => false,
            None => i.token_use == TokenUse::Id,
        });
    if id_only && (req.scopes_any.is_some() || req.scopes_all.is_some()) {
        out.push(finding(
            "unsatisfiable",
            Some(r),
            format!(
                "route `{}` requires scopes but admits only id tokens, which carry no `scope` claim (Cognito puts scopes in access tokens)",
                r.name
            ),
        ));
    }
    for (claim, allowed) in &req.claims {
        let possible: Option<Vec<String>> = match claim.as_str() {
            "client_id" | "aud" => Some(admitted.iter().flat_map(|i| i.client_ids.iter().cloned()).collect()),
            "iss" => Some(admitted.iter().map(|i| i.issuer.clone()).collect()),
            "token_use" => Some(vec!["access".into(), "id".into()]),
            _ => None,
        };
        if let Some(possible) = possible
            && !allowed.iter().any(|a| a.contains("${client_id}") || possible.contains(a))
        {
            out.push(finding(
                "unsatisfiable",
                Some(r),
                format!(
                    "route `{}` requires `{claim}` to be one of [{}], which no admitted issuer's verified tokens can carry",
                    r.name,
                    allowed.join(", ")
                ),
            ));
        }
    }
    out
}

/// Log every finding as a warning: `run` does at start and every applied reload does, so an
/// operator sees in the log what `portcullis check` would print.
pub fn log_findings(c: &Config) {
    for f in lint(c) {
        tracing::warn!(code = f.code, route = f.route.as_deref(), "{f}");
    }
}

/// `check` warnings about the `login` block (SPEC §8).
fn login(c: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(l) = &c.login
        && crate::config::origin(&l.after_logout_url) != Some(l.public_url.clone())
    {
        let mut f = finding(
            "login_logout_origin",
            None,
            format!(
                "login.after_logout_url {} is not on public_url's origin {}: users leave the app after signing out",
                l.after_logout_url, l.public_url
            ),
        );
        f.line = l.after_logout_span.map(|s| s.line);
        out.push(f);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(routes: &str) -> Vec<(&'static str, Option<String>)> {
        codes_with("token_use: access", routes)
    }

    fn codes_with(token_use: &str, routes: &str) -> Vec<(&'static str, Option<String>)> {
        let yaml = format!(
            "listen: 127.0.0.1:8080\nupstream:\n  url: http://127.0.0.1:8000\nissuers:\n  - name: main\n    issuer: https://idp.example/pool\n    jwks_uri: https://idp.example/pool/jwks.json\n    client_ids: [abc]\n    {token_use}\nroutes:\n{routes}"
        );
        let c = crate::config::parse(&yaml, "t.yaml", &|_| None).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        lint(&c).into_iter().map(|f| (f.code, f.route)).collect()
    }

    fn one(code: &'static str, route: &str) -> Vec<(&'static str, Option<String>)> {
        vec![(code, Some(route.to_owned()))]
    }

    #[test]
    fn the_spec_layout_is_clean() {
        let routes = "  - {name: health, path: /health, auth: none}\n  - {name: admin, path: /admin/**, require: {groups_any: [Admins]}}\n  - {name: app, path: /**}\n";
        assert_eq!(codes(routes), vec![]);
    }

    #[test]
    fn trailing_slash_twin_is_unreachable() {
        let routes = "  - {name: a, path: /a/b}\n  - {name: b, path: /a/b/, auth: none}\n";
        assert_eq!(codes(routes), one("unreachable_route", "b"));
    }

    #[test]
    fn method_listing_route_shadows_an_unlisted_one() {
        let routes = "  - {name: strict, path: /r, require: {groups_any: [Admins]}}\n  - {name: open-get, path: /r, methods: [GET], auth: none}\n";
        let found = codes(routes);
        assert!(found.contains(&("shadowed_route", Some("strict".into()))), "{found:?}");
    }

    #[test]
    fn listed_methods_all_taken_by_an_earlier_twin_is_unreachable() {
        let routes =
            "  - {name: first, path: /r, methods: [GET, POST]}\n  - {name: second, path: /r/, methods: [POST]}\n";
        assert_eq!(codes(routes), one("unreachable_route", "second"));
        let routes =
            "  - {name: first, path: /r, methods: [GET]}\n  - {name: second, path: /r/, methods: [GET, PUT]}\n";
        assert_eq!(codes(routes), one("shadowed_route", "second"));
    }

    #[test]
    fn public_route_inside_a_protected_prefix() {
        let routes = "  - {name: admin, path: /admin/**, require: {groups_any: [Admins]}}\n  - {name: peek, path: /admin/*/status, auth: none}\n  - {name: app, path: /**}\n";
        assert_eq!(codes(routes), one("public_under_protected", "peek"));
        // A route without `methods` competes for every method, so it wins POST inside the
        // POST-only protected subtree (the same-pattern conflict rule does not apply here).
        let routes =
            "  - {name: admin, path: /admin/**, methods: [POST]}\n  - {name: peek, path: /admin/x, auth: none}\n";
        assert_eq!(codes(routes), one("public_under_protected", "peek"));
        // Disjoint methods: the public route never competes with the protected one.
        let routes = "  - {name: admin, path: /admin/**, methods: [POST]}\n  - {name: peek, path: /admin/x, methods: [GET], auth: none}\n";
        assert_eq!(codes(routes), vec![]);
        // Not nested: `/admin/**` does not cover `/administrator`.
        let routes = "  - {name: admin, path: /admin/**}\n  - {name: other, path: /administrator, auth: none}\n";
        assert_eq!(codes(routes), vec![]);
    }

    #[test]
    fn unsatisfiable_requirements() {
        let routes = "  - {name: profile, path: /me, require: {scopes_any: [profile]}}\n";
        assert_eq!(codes_with("token_use: id", routes), one("unsatisfiable", "profile"));
        assert_eq!(codes_with("token_use: access", routes), vec![]);
        let routes = "  - {name: c, path: /c, require: {claims: {client_id: other-app}}}\n";
        assert_eq!(codes(routes), one("unsatisfiable", "c"));
        let routes = "  - {name: c, path: /c, require: {claims: {client_id: abc}}}\n";
        assert_eq!(codes(routes), vec![]);
    }

    #[test]
    fn audit_forward_token_and_user_writable_claims() {
        let routes = "  - {name: r, path: /r, mode: audit, require: {claims: {email: a@b.c}}}\n";
        assert_eq!(codes(routes), vec![("audit_mode", Some("r".into())), ("user_writable_claim", Some("r".into()))]);
        let yaml = "listen: 127.0.0.1:8080\nupstream:\n  url: http://127.0.0.1:8000\nidentity_headers:\n  forward_token: true\nissuers:\n  - name: main\n    issuer: https://idp.example/pool\n    jwks_uri: https://idp.example/pool/jwks.json\n    client_ids: [abc]\n    token_use: access\nroutes:\n  - {name: r, path: /r}\n";
        let c = crate::config::parse(yaml, "t.yaml", &|_| None).unwrap();
        assert_eq!(lint(&c).into_iter().map(|f| f.code).collect::<Vec<_>>(), vec!["forward_token"]);
    }
}
