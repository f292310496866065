//! The route table (SPEC §2 "Routes"): compiled patterns and [`RouteTable::find`], which picks
//! the most specific route for a normalised path and method, whatever the file order. Matching
//! sees only the normalised path — never the query (SECURITY RULE-12). Does not decide access
//! (`policy`) or normalise paths (`path`).

use std::cmp::Ordering;

use http::Method;

use crate::config::pattern::{Segment, literal_eq};
use crate::config::{self, Route};

#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<Route>,
    case_insensitive: bool,
}

/// Rank of what a pattern has at one position, for specificity: literal beats `*` beats the
/// pattern's end beats `**` (so exact `/x` beats `/x/**` for `/x`).
fn rank(s: Option<&Segment>) -> u8 {
    match s {
        Some(Segment::Literal(_)) => 3,
        Some(Segment::Star) => 2,
        None => 1,
        Some(Segment::Rest) => 0,
    }
}

impl RouteTable {
    pub fn new(routes: &[config::Route], case_insensitive: bool) -> Self {
        RouteTable { routes: routes.to_vec(), case_insensitive }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The most specific route for `method` and the normalised `path`, if any.
    pub fn find(&self, method: &Method, path: &str) -> Option<&Route> {
        self.candidates(method, path).into_iter().next()
    }

    /// Every matching route, most specific first (for `explain`).
    pub fn candidates(&self, method: &Method, path: &str) -> Vec<&Route> {
        // HEAD is matched as GET (SPEC §2).
        let method = if method == Method::HEAD { &Method::GET } else { method };
        // Every pattern also matches the path with one trailing slash.
        let body = if path.len() > 1 { path.strip_suffix('/').unwrap_or(path) } else { path };
        let body = body.trim_start_matches('/');
        let mut matched: Vec<&Route> = self
            .routes
            .iter()
            .filter(|r| r.methods.as_ref().is_none_or(|ms| ms.contains(method)))
            .filter(|r| self.matches(r.path.segments(), body))
            .collect();
        matched.sort_by(|a, b| specificity(b, a));
        matched
    }

    fn matches(&self, pattern: &[Segment], body: &str) -> bool {
        let mut segs = if body.is_empty() { None } else { Some(body.split('/')) };
        for (i, p) in pattern.iter().enumerate() {
            match p {
                Segment::Rest => {
                    debug_assert_eq!(i + 1, pattern.len());
                    return true;
                }
                Segment::Star => match segs.as_mut().and_then(Iterator::next) {
                    Some(s) if !s.is_empty() => {}
                    _ => return false,
                },
                Segment::Literal(lit) => match segs.as_mut().and_then(Iterator::next) {
                    Some(s) if literal_eq(lit, s, self.case_insensitive) => {}
                    _ => return false,
                },
            }
        }
        segs.is_none_or(|mut s| s.next().is_none())
    }
}

/// `Greater` when `a` is more specific than `b`.
fn specificity(a: &Route, b: &Route) -> Ordering {
    let (sa, sb) = (a.path.segments(), b.path.segments());
    let len = sa.len().max(sb.len()) + 1;
    for i in 0..len {
        let ord = rank(sa.get(i)).cmp(&rank(sb.get(i)));
        if ord != Ordering::Equal {
            return ord;
        }
    }
    // Same shape: a route that lists methods beats one that lists none.
    a.methods.is_some().cmp(&b.methods.is_some())
}

/// Why `winner` is preferred over `loser` when both match (for `explain`), in the terms of
/// [`specificity`]: the first segment where they differ, else the method listing, else file
/// order.
pub fn precedence(winner: &Route, loser: &Route) -> String {
    let describe = |s: Option<&Segment>| match s {
        Some(Segment::Literal(l)) => format!("literal `{l}`"),
        Some(Segment::Star) => "`*`".to_owned(),
        Some(Segment::Rest) => "`**`".to_owned(),
        None => "the pattern's end".to_owned(),
    };
    let (sw, sl) = (winner.path.segments(), loser.path.segments());
    let len = sw.len().max(sl.len()) + 1;
    for i in 0..len {
        let (a, b) = (sw.get(i), sl.get(i));
        if rank(a) != rank(b) {
            return format!("segment {}: {} beats {}", i + 1, describe(a), describe(b));
        }
    }
    if winner.methods.is_some() && loser.methods.is_none() {
        return "same pattern: it lists the request's method".to_owned();
    }
    "same pattern and methods: it comes first in the file".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthMode, Mode, Require};

    fn route(name: &str, path: &str, methods: Option<&[&str]>) -> config::Route {
        config::Route {
            name: name.into(),
            path: config::pattern::Pattern::parse(path).unwrap(),
            methods: methods.map(|ms| ms.iter().map(|m| Method::from_bytes(m.as_bytes()).unwrap()).collect()),
            auth: AuthMode::Required,
            mode: Mode::Enforce,
            require: Require::default(),
            login: true,
            span: crate::config::yaml::Span { line: 1, col: 1 },
        }
    }

    fn find<'a>(t: &'a RouteTable, m: &str, p: &str) -> Option<&'a str> {
        t.find(&Method::from_bytes(m.as_bytes()).unwrap(), p).map(|r| r.name.as_str())
    }

    fn spec_table() -> Vec<config::Route> {
        vec![
            route("health", "/health", None),
            route("gate", "/gates/control", Some(&["POST"])),
            route("admin", "/admin/**", None),
            route("profile", "/users/*/profile", None),
            route("app", "/**", None),
            route("exact-x", "/x", None),
            route("x-tree", "/x/**", None),
        ]
    }

    #[test]
    fn most_specific_route_wins_in_either_file_order() {
        let cases = [
            ("GET", "/health", Some("health")),
            ("GET", "/health/", Some("health")),
            ("GET", "/healthz", Some("app")),
            ("POST", "/gates/control", Some("gate")),
            ("GET", "/gates/control", Some("app")),
            ("GET", "/admin", Some("admin")),
            ("GET", "/admin/", Some("admin")),
            ("GET", "/admin/x/y", Some("admin")),
            ("GET", "/administrator", Some("app")), // RULE-03: segment-aware prefix
            ("GET", "/users/u1/profile", Some("profile")),
            ("GET", "/users//profile", Some("app")),
            ("GET", "/x", Some("exact-x")),
            ("GET", "/x/", Some("exact-x")),
            ("GET", "/x/y", Some("x-tree")),
            ("GET", "/", Some("app")),
            ("HEAD", "/health", Some("health")),
        ];
        let mut routes = spec_table();
        for order in 0..2 {
            if order == 1 {
                routes.reverse();
            }
            let table = RouteTable::new(&routes, false);
            for (m, p, want) in cases {
                assert_eq!(find(&table, m, p), want, "{m} {p} (order {order})");
            }
        }
    }

    #[test]
    fn no_route_when_nothing_matches() {
        let table = RouteTable::new(&[route("a", "/a/**", None), route("root", "/", None)], false);
        assert_eq!(find(&table, "GET", "/b"), None); // RULE-01
        assert_eq!(find(&table, "GET", "/"), Some("root"));
        assert_eq!(find(&table, "GET", "/a"), Some("a"));
    }

    #[test]
    fn method_listing_route_beats_unlisted_and_is_not_inherited() {
        // RULE-04: a listed method is never inherited by an unlisted one.
        let routes = [
            route("reports-read", "/reports/**", Some(&["GET"])),
            route("reports-admin", "/reports/**", Some(&["POST", "DELETE"])),
        ];
        let table = RouteTable::new(&routes, false);
        assert_eq!(find(&table, "GET", "/reports/x"), Some("reports-read"));
        assert_eq!(find(&table, "DELETE", "/reports/x"), Some("reports-admin"));
        assert_eq!(find(&table, "PUT", "/reports/x"), None);
        let routes = [route("any", "/r", None), route("post", "/r", Some(&["POST"]))];
        let table = RouteTable::new(&routes, false);
        assert_eq!(find(&table, "POST", "/r"), Some("post"));
        assert_eq!(find(&table, "GET", "/r"), Some("any"));
    }

    #[test]
    fn case_sensitivity_is_configurable() {
        let routes = [route("admin", "/Admin/**", None), route("app", "/**", None)];
        assert_eq!(find(&RouteTable::new(&routes, false), "GET", "/admin/x"), Some("app"));
        assert_eq!(find(&RouteTable::new(&routes, true), "GET", "/admin/x"), Some("admin"));
        assert_eq!(find(&RouteTable::new(&routes, true), "GET", "/ADMIN"), Some("admin"));
    }

    #[test]
    fn star_matches_exactly_one_segment() {
        let table = RouteTable::new(&[route("p", "/u/*/p", None)], false);
        assert_eq!(find(&table, "GET", "/u/1/p"), Some("p"));
        assert_eq!(find(&table, "GET", "/u/p"), None);
        assert_eq!(find(&table, "GET", "/u/1/2/p"), None);
        let table = RouteTable::new(&[route("s", "/*", None)], false);
        assert_eq!(find(&table, "GET", "/"), None);
        assert_eq!(find(&table, "GET", "/a"), Some("s"));
    }
}
