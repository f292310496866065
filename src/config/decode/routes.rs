//! `routes:` — patterns, methods, `auth`, `mode` and `require`, with the cross-checks between
//! routes (duplicate names, same pattern with overlapping methods) and against the issuers.

use std::collections::HashMap;

use http::Method;

use super::{enumerated, field, required, token_use};
use crate::config::model::*;
use crate::config::pattern::{Pattern, literal_eq};
use crate::config::yaml::{self, Node, Reader, field_path};

pub(super) const ROUTE_KEYS: &[&str] = &["name", "path", "methods", "auth", "mode", "require", "login"];

pub(super) const REQUIRE_KEYS: &[&str] =
    &["scopes_any", "scopes_all", "groups_any", "groups_all", "token_use", "issuers", "claims"];

pub(super) fn routes(
    r: &mut Reader,
    n: &Node,
    issuers: &[Issuer],
    case_insensitive: bool,
    pairs: bool,
) -> Option<Vec<Route>> {
    let items = r.seq(n, "routes")?;
    if items.is_empty() {
        r.error(n.span, "routes", "at least one route is required (unmatched requests are denied)");
        return None;
    }
    let mut out: Vec<Route> = Vec::new();
    let mut ok = true;
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("routes[{i}]");
        let Some(route) = route(r, item, &p, issuers, pairs) else {
            ok = false;
            continue;
        };
        if let Some(first) = names.insert(route.name.clone(), route.span.line) {
            r.error(item.span, &p, format!("duplicate route name `{}` (first at line {first})", route.name));
            ok = false;
        }
        for other in &out {
            // SPEC §2: the same pattern is ambiguous when both routes list an overlapping method or
            // both list none; when only one lists methods, that one wins for them — no conflict.
            let same_pattern = literal_eq(other.path.as_str(), route.path.as_str(), case_insensitive);
            let ambiguous = other.methods.is_some() == route.methods.is_some() && other.shares_a_method_with(&route);
            if same_pattern && ambiguous {
                r.error(
                    item.span,
                    &p,
                    format!(
                        "route `{}` has the same path `{}` and overlapping methods as route `{}` (line {}); which one applies would be ambiguous",
                        route.name, route.path, other.name, other.span.line
                    ),
                );
                ok = false;
            }
        }
        out.push(route);
    }
    ok.then_some(out)
}

fn route(r: &mut Reader, n: &Node, p: &str, issuers: &[Issuer], pairs: bool) -> Option<Route> {
    let m = r.map(n, p, ROUTE_KEYS)?;
    let name = required(r, &m, "name", p).and_then(|n| {
        let s = r.string(n, &field_path(p, "name"))?;
        if s.is_empty() || s == "none" || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            r.error(
                n.span,
                &field_path(p, "name"),
                "route names use letters, digits, `-`, `_` and `.` (and `none` is reserved)",
            );
            return None;
        }
        Some(s)
    });
    let path = required(r, &m, "path", p).and_then(|n| {
        let s = r.string(n, &field_path(p, "path"))?;
        match Pattern::parse(&s) {
            Ok(pattern) => Some(pattern),
            Err(e) => {
                r.error(n.span, &field_path(p, "path"), e);
                None
            }
        }
    });
    let methods = match m.get("methods") {
        Some(n) => {
            let list = r.string_list(n, &field_path(p, "methods"));
            list.and_then(|l| {
                let mut out = Vec::new();
                for s in l {
                    let bad = |why: &str| format!("`{s}`: {why}");
                    let err = if s.is_empty() || !s.bytes().all(|b| b.is_ascii_uppercase()) {
                        Some(bad("methods are upper-case tokens such as GET or POST"))
                    } else if s == "HEAD" {
                        Some(bad("HEAD is matched as GET; list GET"))
                    } else if s == "CONNECT" || s == "TRACE" {
                        Some(bad("CONNECT and TRACE are always refused"))
                    } else {
                        None
                    };
                    if let Some(e) = err {
                        r.error(n.span, &field_path(p, "methods"), e);
                        return None;
                    }
                    let method = Method::from_bytes(s.as_bytes()).ok()?;
                    if out.contains(&method) {
                        r.error(n.span, &field_path(p, "methods"), format!("`{s}` is listed twice"));
                        return None;
                    }
                    out.push(method);
                }
                Some(Some(out))
            })
        }
        None => Some(None),
    };
    let auth = field(r, &m, "auth", p, AuthMode::Required, |r, n, p| {
        enumerated(
            r,
            n,
            p,
            &[("required", AuthMode::Required), ("optional", AuthMode::Optional), ("none", AuthMode::None)],
        )
    });
    let mode = field(r, &m, "mode", p, Mode::Enforce, |r, n, p| {
        enumerated(r, n, p, &[("enforce", Mode::Enforce), ("audit", Mode::Audit)])
    });
    let require = match m.get("require") {
        Some(rn) => {
            if auth == AuthMode::None {
                r.error(
                    rn.span,
                    &field_path(p, "require"),
                    "`require` has no effect on an `auth: none` route; remove it or use `auth: required`",
                );
                None
            } else {
                require(r, rn, &field_path(p, "require"), issuers, pairs)
            }
        }
        None => Some(Require::default()),
    };
    if auth == AuthMode::None
        && mode == Mode::Audit
        && let Some(mn) = m.get("mode")
    {
        r.error(mn.span, &field_path(p, "mode"), "`mode: audit` has nothing to audit on an `auth: none` route");
    }
    let login = field(r, &m, "login", p, true, |r, n, p| r.bool(n, p));
    Some(Route { name: name?, path: path?, methods: methods?, auth, mode, require: require?, login, span: n.span })
}

fn template_list(
    r: &mut Reader,
    m: &yaml::MapView,
    key: &str,
    p: &str,
    header_safe: bool,
) -> Option<Option<Vec<String>>> {
    let Some(n) = m.get(key) else { return Some(None) };
    let path = field_path(p, key);
    let list = r.string_list(n, &path)?;
    for s in &list {
        if let Err(e) = check_template(s) {
            r.error(n.span, &path, e);
            return None;
        }
        // Scopes are echoed in `WWW-Authenticate: … scope="…"`, so they must be quotable.
        if header_safe && !s.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\') {
            r.error(n.span, &path, format!("`{s}`: scopes are printable ASCII without spaces, quotes or backslashes"));
            return None;
        }
    }
    Some(Some(list))
}

/// `${client_id}` is the only runtime template; anything else that looks like one is a typo.
fn check_template(s: &str) -> Result<(), String> {
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        let after = &rest[i + 2..];
        match after.find('}') {
            Some(j) if &after[..j] == "client_id" => rest = &after[j + 1..],
            Some(j) => return Err(format!("`${{{}}}` is not a known template (only ${{client_id}})", &after[..j])),
            None => return Err(format!("`{s}`: unterminated `${{`")),
        }
    }
    Ok(())
}

fn require(r: &mut Reader, n: &Node, p: &str, issuers: &[Issuer], pairs: bool) -> Option<Require> {
    let m = r.map(n, p, REQUIRE_KEYS)?;
    let scopes_any = template_list(r, &m, "scopes_any", p, true);
    let scopes_all = template_list(r, &m, "scopes_all", p, true);
    let groups_any = template_list(r, &m, "groups_any", p, false);
    let groups_all = template_list(r, &m, "groups_all", p, false);
    let token_use_req = match m.get("token_use") {
        Some(tn) => token_use(r, tn, &field_path(p, "token_use")).map(Some),
        None => Some(None),
    };
    let route_issuers = match m.get("issuers") {
        Some(inode) => r.string_list(inode, &field_path(p, "issuers")).and_then(|list| {
            for name in &list {
                if !issuers.iter().any(|i| &i.name == name) {
                    r.error(inode.span, &field_path(p, "issuers"), format!("no issuer is named `{name}`"));
                    return None;
                }
            }
            Some(Some(list))
        }),
        None => Some(None),
    };
    let mut claims = Vec::new();
    let mut claims_ok = true;
    if let Some(cn) = m.get("claims") {
        let cp = field_path(p, "claims");
        match &cn.value {
            yaml::Value::Map(entries) if !entries.is_empty() => {
                for (k, v) in entries {
                    let Some(claim) = r.string(k, &cp) else {
                        claims_ok = false;
                        continue;
                    };
                    let vp = format!("{cp}.{claim}");
                    let values = match &v.value {
                        yaml::Value::Seq(_) => r.string_list(v, &vp),
                        _ => r.string(v, &vp).map(|s| vec![s]),
                    };
                    match values {
                        Some(vals) if vals.iter().all(|s| check_template(s).is_ok()) => claims.push((claim, vals)),
                        Some(_) => {
                            r.error(v.span, &vp, "only ${client_id} may be used as a template");
                            claims_ok = false;
                        }
                        None => claims_ok = false,
                    }
                }
            }
            yaml::Value::Map(_) => {
                r.error(cn.span, &cp, "must not be empty");
                claims_ok = false;
            }
            _ => {
                r.error(cn.span, &cp, "expected a mapping of claim name to value or list of values");
                claims_ok = false;
            }
        }
    }
    let require = Require {
        scopes_any: scopes_any?,
        scopes_all: scopes_all?,
        groups_any: groups_any?,
        groups_all: groups_all?,
        token_use: token_use_req?,
        issuers: route_issuers?,
        claims,
    };
    if !claims_ok {
        return None;
    }
    // A route narrowed to a token use that an admitted issuer never accepts could never pass
    // for that issuer's tokens — almost certainly a mistake (SPEC §2 `require.token_use`) —
    // unless the credentials can carry an id+access pair, which satisfies either use.
    if let Some(want) = require.token_use
        && want != TokenUse::Any
        && !pairs
    {
        for iss in issuers {
            let admitted = require.issuers.as_ref().is_none_or(|names| names.contains(&iss.name));
            if admitted && !iss.token_use.admits(want) {
                if let Some(tn) = m.get("token_use") {
                    r.error(
                        tn.span,
                        &field_path(p, "token_use"),
                        format!(
                            "issuer `{}` only accepts {} tokens, so `token_use: {}` could never pass for it",
                            iss.name,
                            iss.token_use.as_str(),
                            want.as_str()
                        ),
                    );
                }
                return None;
            }
        }
    }
    Some(require)
}
