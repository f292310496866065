//! The source layout of README "Architecture", checked on the source itself: the rooms (folders
//! under `src/`) depend on each other one way only, down to `http`; no two modules import each
//! other in a circle; `lib.rs` is the module list; no file but the YAML reader passes 800 lines;
//! every file opens with a `//!` paragraph.
//!
//! Dependencies are read from product code: every `crate::…` path (grouped `use` trees
//! included) and every `super::…` path, outside comments and outside `#[cfg(test)]` items and
//! `tests.rs` files — tests may reach anywhere, as dev-dependencies may.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The rooms and the rooms each may use.
const MAY_USE: &[(&str, &[&str])] = &[
    ("http", &[]),
    ("config", &["http"]),
    ("telemetry", &["http"]),
    ("auth", &["http", "config", "telemetry"]),
    ("proxy", &["http", "config", "telemetry", "auth"]),
    ("serve", &["http", "config", "telemetry", "auth", "proxy"]),
    ("tools", &["http", "config", "telemetry", "auth", "proxy", "serve"]),
];

/// Longest chain of rooms below each room, as README "Architecture" states it.
const LEVELS: &[(&str, usize)] =
    &[("http", 0), ("config", 1), ("telemetry", 1), ("auth", 2), ("proxy", 3), ("serve", 4), ("tools", 5)];

const MAX_LINES: usize = 800;
/// The strict YAML reader: one parser and its tests, kept whole on purpose.
const LONG_FILES_ALLOWED: &[&str] = &["src/config/yaml.rs"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `src/`, relative to the crate root.
fn files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&src(), &mut out);
    out
}

fn rel(p: &Path) -> String {
    p.strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap().display().to_string()
}

/// The module path of a file: `src/auth/verify/checks.rs` → `auth::verify::checks`,
/// `src/auth/mod.rs` → `auth`, `src/lib.rs` → `` (the crate root).
fn module_of(p: &Path) -> Vec<String> {
    let r = p.strip_prefix(src()).unwrap();
    let mut parts: Vec<String> = r.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    match last.as_str() {
        "mod.rs" | "lib.rs" | "main.rs" => {}
        f => parts.push(f.trim_end_matches(".rs").to_owned()),
    }
    parts
}

/// Product code of a file: comments removed, `#[cfg(test)]` items skipped.
fn product_code(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(|l| l.split("//").next().unwrap_or_default()).collect();
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() == "#[cfg(test)]" {
            // Skip the item that follows: one `…;` line, or everything up to its closing brace.
            i += 1;
            while i < lines.len() && lines[i].trim().starts_with("#[") {
                i += 1;
            }
            let mut depth = 0i32;
            while i < lines.len() {
                let l = lines[i];
                depth += l.matches('{').count() as i32 - l.matches('}').count() as i32;
                i += 1;
                if depth <= 0 && (l.trim_end().ends_with(';') || l.trim_end().ends_with('}')) {
                    break;
                }
            }
            continue;
        }
        out.push_str(lines[i]);
        out.push('\n');
        i += 1;
    }
    out
}

/// Parse a path tree at `s` (after `crate::` or `super::`): `a::b`, `a::{b, c::d}`, `a::*`.
fn path_tree(s: &[u8], mut i: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix;
    loop {
        while i < s.len() && s[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < s.len() && s[i] == b'{' {
            i += 1;
            loop {
                i = path_tree(s, i, path.clone(), out);
                while i < s.len() && s[i].is_ascii_whitespace() {
                    i += 1;
                }
                match s.get(i) {
                    Some(b',') => i += 1,
                    Some(b'}') => return i + 1,
                    _ => return i,
                }
                while i < s.len() && s[i].is_ascii_whitespace() {
                    i += 1;
                }
                if s.get(i) == Some(&b'}') {
                    return i + 1;
                }
            }
        }
        let start = i;
        while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'_' || s[i] == b'*') {
            i += 1;
        }
        if i > start {
            let ident = String::from_utf8_lossy(&s[start..i]).into_owned();
            if ident != "self" && ident != "*" {
                path.push(ident);
            }
        }
        if s[i..].starts_with(b"::") {
            i += 2;
            continue;
        }
        out.push(path);
        return i;
    }
}

/// Every module path a file's product code refers to (`crate::` and `super::` paths).
fn references(module: &[String], code: &str) -> Vec<Vec<String>> {
    let s = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let boundary = i == 0 || !(s[i - 1].is_ascii_alphanumeric() || s[i - 1] == b'_' || s[i - 1] == b':');
        if boundary && s[i..].starts_with(b"crate::") {
            i = path_tree(s, i + 7, Vec::new(), &mut out);
        } else if boundary && s[i..].starts_with(b"super::") {
            let mut base = module.to_vec();
            let mut j = i;
            while s[j..].starts_with(b"super::") {
                base.pop();
                j += 7;
            }
            i = path_tree(s, j, base, &mut out);
        } else {
            i += 1;
        }
    }
    out
}

/// The deepest known module a path names.
fn resolve(path: &[String], modules: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| modules.contains(p))
}

/// Module → modules it uses (product code only), for every file but `main.rs` and `tests.rs`.
fn graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let product: Vec<PathBuf> = files()
        .into_iter()
        .filter(|p| !p.ends_with("tests.rs") && !p.ends_with("main.rs") && !rel(p).contains("/tests/"))
        .collect();
    let modules: BTreeSet<Vec<String>> = product.iter().map(|p| module_of(p)).collect();
    let mut g = BTreeMap::new();
    for p in &product {
        let me = module_of(p);
        let code = product_code(&std::fs::read_to_string(p).unwrap());
        let uses: BTreeSet<Vec<String>> =
            references(&me, &code).iter().filter_map(|r| resolve(r, &modules)).filter(|m| *m != me).collect();
        g.insert(me, uses);
    }
    g
}

fn room(m: &[String]) -> &str {
    m.first().map_or("lib", String::as_str)
}

#[test]
fn rooms_depend_one_way_down_to_http() {
    let allowed: BTreeMap<&str, &[&str]> = MAY_USE.iter().copied().collect();
    let mut wrong = Vec::new();
    let mut uses: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let g = graph();
    for (from, tos) in &g {
        for to in tos {
            let (a, b) = (room(from), room(to));
            if a == "lib" || a == b {
                continue;
            }
            uses.entry(a).or_default().insert(b);
            if !allowed.get(a).is_some_and(|ok| ok.contains(&b)) {
                wrong.push(format!("{} uses {}", from.join("::"), to.join("::")));
            }
        }
    }
    assert!(wrong.is_empty(), "dependencies that point the wrong way:\n{}", wrong.join("\n"));
    // The declared order is itself one way, so no cycle between rooms can pass the check above.
    for (i, (room, may)) in MAY_USE.iter().enumerate() {
        assert!(
            may.iter().all(|m| MAY_USE[..i].iter().any(|(r, _)| r == m)),
            "{room} may use a room declared after it"
        );
    }
    // The levels README "Architecture" gives: the longest chain of rooms actually used below each.
    fn level<'a>(r: &'a str, uses: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> usize {
        uses.get(r).map_or(0, |below| below.iter().map(|b| 1 + level(b, uses)).max().unwrap_or(0))
    }
    let levels: Vec<(&str, usize)> = LEVELS.iter().map(|(r, _)| (*r, level(r, &uses))).collect();
    assert_eq!(levels, LEVELS, "rooms actually used: {uses:?}");
}

#[test]
fn no_modules_import_each_other_in_a_circle() {
    // Parent and child modules always see each other (a `mod.rs` re-exports its children); every
    // other import must form a DAG, within a room as between rooms.
    let related = |a: &[String], b: &[String]| a.starts_with(b) || b.starts_with(a);
    let g: BTreeMap<Vec<String>, Vec<Vec<String>>> = graph()
        .into_iter()
        .map(|(m, uses)| {
            let keep = uses.into_iter().filter(|u| !related(&m, u)).collect();
            (m, keep)
        })
        .collect();
    // Depth-first search with colours; the stack holds the current path for the report.
    fn visit(
        m: &Vec<String>,
        g: &BTreeMap<Vec<String>, Vec<Vec<String>>>,
        done: &mut BTreeSet<Vec<String>>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|s| s == m) {
            let mut cycle: Vec<String> = stack[at..].iter().map(|s| s.join("::")).collect();
            cycle.push(m.join("::"));
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        stack.push(m.clone());
        for next in g.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, g, done, stack) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(m.clone());
        None
    }
    let mut done = BTreeSet::new();
    for m in g.keys() {
        if let Some(cycle) = visit(m, &g, &mut done, &mut Vec::new()) {
            panic!("import cycle: {}", cycle.join(" → "));
        }
    }
}

#[test]
fn the_parser_reads_grouped_and_relative_paths() {
    let me = vec!["auth".to_owned(), "verify".to_owned(), "checks".to_owned()];
    let code = "use crate::{http::error::{A, B}, config::{self, pattern::Pattern}};\nuse super::strict_json::X;\nlet x = crate::proxy::headers::f(super::super::route::y);\n";
    let got: Vec<String> = references(&me, code).iter().map(|p| p.join("::")).collect();
    assert_eq!(
        got,
        [
            "http::error::A",
            "http::error::B",
            "config",
            "config::pattern::Pattern",
            "auth::verify::strict_json::X",
            "proxy::headers::f",
            "auth::route::y"
        ]
    );
    let code = "fn a() {}\n#[cfg(test)]\nmod tests {\n    use crate::tools::mint;\n}\n#[cfg(test)]\nmod other;\nfn b() { crate::http::x() }\n";
    assert_eq!(product_code(code).matches("crate::").count(), 1, "test items are skipped");
}

#[test]
fn lib_rs_is_the_module_list() {
    let text = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let ok = line.starts_with("//")
            || line.starts_with("#![")
            || (line.starts_with("pub mod ") || line.starts_with("mod ") || line.starts_with("pub(crate) mod "))
                && line.ends_with(';')
            || line.starts_with("pub use ") && line.ends_with(';');
        assert!(ok, "lib.rs holds only the module list and re-exports: {line}");
    }
}

#[test]
fn no_file_but_the_yaml_reader_is_over_800_lines() {
    let long: Vec<String> = files()
        .iter()
        .filter(|p| !LONG_FILES_ALLOWED.contains(&rel(p).as_str()))
        .filter_map(|p| {
            let n = std::fs::read_to_string(p).unwrap().lines().count();
            (n > MAX_LINES).then(|| format!("{} ({n} lines)", rel(p)))
        })
        .collect();
    assert!(long.is_empty(), "split these along their seams: {long:?}");
}

#[test]
fn every_file_opens_with_a_module_doc() {
    let missing: Vec<String> = files()
        .iter()
        .filter(|p| !p.ends_with("tests.rs"))
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            !text.lines().find(|l| !l.trim().is_empty()).is_some_and(|l| l.starts_with("//!"))
        })
        .map(|p| rel(p))
        .collect();
    assert!(missing.is_empty(), "open these with a `//!` paragraph on what they own: {missing:?}");
}
