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
    /// The same routes as a segment trie, for [`RouteTable::find`].
    trie: Trie,
}

/// The patterns as a trie of segments, so that finding the route for a path costs a few map
/// lookups per path segment instead of a pass over every route (10,000 routes match in well
/// under a microsecond). Searched depth first in specificity order — at every position a literal
/// before `*` before the pattern's end before `**` — so the first route found is the one
/// [`specificity`] ranks first; ties (same shape) go to a route listing the method, then to file
/// order, as in [`RouteTable::candidates`] (a property test compares the two).
#[derive(Debug, Default)]
struct Trie {
    nodes: Vec<Node>,
}

#[derive(Debug, Default)]
struct Node {
    /// Literal segment (lower-cased when matching is case-insensitive) → node.
    literals: std::collections::HashMap<Box<str>, usize>,
    star: Option<usize>,
    /// Routes whose pattern ends here, and routes with `**` here, in file order.
    end: Vec<usize>,
    rest: Vec<usize>,
}

impl Trie {
    fn new(routes: &[Route], case_insensitive: bool) -> Trie {
        let mut trie = Trie { nodes: vec![Node::default()] };
        for (index, route) in routes.iter().enumerate() {
            let mut at = 0;
            let mut rest = false;
            for seg in route.path.segments() {
                at = match seg {
                    Segment::Literal(lit) => {
                        let key: Box<str> =
                            if case_insensitive { lit.to_ascii_lowercase().into() } else { lit.as_str().into() };
                        match trie.nodes[at].literals.get(&key) {
                            Some(&next) => next,
                            None => {
                                let next = trie.push();
                                trie.nodes[at].literals.insert(key, next);
                                next
                            }
                        }
                    }
                    Segment::Star => match trie.nodes[at].star {
                        Some(next) => next,
                        None => {
                            let next = trie.push();
                            trie.nodes[at].star = Some(next);
                            next
                        }
                    },
                    // `**` is only ever last (config validation).
                    Segment::Rest => {
                        rest = true;
                        break;
                    }
                };
            }
            if rest { trie.nodes[at].rest.push(index) } else { trie.nodes[at].end.push(index) }
        }
        trie
    }

    fn push(&mut self) -> usize {
        self.nodes.push(Node::default());
        self.nodes.len() - 1
    }

    /// `path` is what is left of the path body after this node (`None`: nothing, not even an
    /// empty segment).
    fn find(&self, routes: &[Route], node: usize, path: Option<&str>, method: &Method) -> Option<usize> {
        let n = &self.nodes[node];
        match path {
            Some(p) => {
                let (seg, tail) = match p.split_once('/') {
                    Some((seg, tail)) => (seg, Some(tail)),
                    None => (p, None),
                };
                if let Some(&next) = n.literals.get(seg)
                    && let Some(found) = self.find(routes, next, tail, method)
                {
                    return Some(found);
                }
                if !seg.is_empty()
                    && let Some(next) = n.star
                    && let Some(found) = self.find(routes, next, tail, method)
                {
                    return Some(found);
                }
                pick(routes, &n.rest, method)
            }
            None => pick(routes, &n.end, method).or_else(|| pick(routes, &n.rest, method)),
        }
    }
}

/// Among same-shape routes (file order): the first that lists `method`, else the first that
/// lists no methods.
fn pick(routes: &[Route], same_shape: &[usize], method: &Method) -> Option<usize> {
    let mut unlisted = None;
    for &i in same_shape {
        match &routes[i].methods {
            Some(ms) if ms.contains(method) => return Some(i),
            Some(_) => {}
            None => {
                unlisted.get_or_insert(i);
            }
        }
    }
    unlisted
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
        RouteTable { trie: Trie::new(routes, case_insensitive), routes: routes.to_vec(), case_insensitive }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The most specific route for `method` and the normalised `path`, if any.
    pub fn find(&self, method: &Method, path: &str) -> Option<&Route> {
        let method = if method == Method::HEAD { &Method::GET } else { method };
        let body = if path.len() > 1 { path.strip_suffix('/').unwrap_or(path) } else { path };
        let body = body.trim_start_matches('/');
        let lowered;
        let body = if self.case_insensitive && body.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = body.to_ascii_lowercase();
            lowered.as_str()
        } else {
            body
        };
        let start = if body.is_empty() { None } else { Some(body) };
        self.trie.find(&self.routes, 0, start, method).map(|i| &self.routes[i])
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

    proptest::proptest! {
        /// The trie finds exactly the route the full ranking puts first, for random tables
        /// (duplicates, method lists, both case modes) and random paths over the same words.
        #[test]
        fn trie_find_agrees_with_the_full_ranking(
            patterns in proptest::collection::vec(
                (proptest::collection::vec(0usize..6, 0..4), proptest::bool::ANY, 0usize..3), 1..24),
            paths in proptest::collection::vec(proptest::collection::vec(0usize..7, 0..5), 1..16),
            trailing in proptest::bool::ANY,
            case_insensitive in proptest::bool::ANY,
        ) {
            const WORDS: [&str; 7] = ["a", "B", "b", "*", "c", "", "A"];
            let routes: Vec<config::Route> = patterns
                .iter()
                .enumerate()
                .map(|(i, (segs, rest, methods))| {
                    let mut path: String = segs.iter().map(|&w| format!("/{}", WORDS[w.min(4)])).collect();
                    if *rest { path.push_str("/**"); }
                    if path.is_empty() { path.push('/'); }
                    let methods: Option<&[&str]> = match methods { 0 => None, 1 => Some(&["GET"]), _ => Some(&["POST", "GET"]) };
                    route(&format!("r{i}"), &path, methods)
                })
                .collect();
            let table = RouteTable::new(&routes, case_insensitive);
            for p in &paths {
                let mut path: String = p.iter().map(|&w| format!("/{}", WORDS[w])).collect();
                if path.is_empty() || trailing { path.push('/'); }
                for m in [Method::GET, Method::POST, Method::HEAD, Method::DELETE] {
                    let want = table.candidates(&m, &path).first().map(|r| r.name.clone());
                    let got = table.find(&m, &path).map(|r| r.name.clone());
                    proptest::prop_assert_eq!(got, want, "{} {}", m, path);
                }
            }
        }
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
