//! SECURITY DEP-03: the build never resolves to a dependency version with a known request
//! smuggling, flood or token-confusion bug. `scripts/deny.sh` (run by `scripts/test.sh`) checks
//! the whole graph against the RustSec advisory database; this test pins the minimum versions the
//! catalog names, so a lockfile downgrade fails even where the advisory database is unavailable.

use std::collections::HashMap;

/// `name → versions` of every package in Cargo.lock.
fn locked_versions() -> HashMap<String, Vec<Vec<u64>>> {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).expect("Cargo.lock");
    let mut out: HashMap<String, Vec<Vec<u64>>> = HashMap::new();
    let mut name = None;
    for line in lock.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_owned());
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name.take()) {
            let v = v.trim_matches('"').split(['-', '+']).next().unwrap_or_default();
            out.entry(n).or_default().push(v.split('.').map(|p| p.parse().unwrap_or(0)).collect());
        }
    }
    out
}

#[test]
fn locked_versions_are_at_least_the_fixed_releases() {
    let locked = locked_versions();
    // (crate, minimum, why)
    let minimums: &[(&str, &[u64], &str)] = &[
        ("hyper", &[1, 11, 0], "CL before TE kept in the request (hyper #4123)"),
        ("h2", &[0, 4, 4], "CONTINUATION flood, RUSTSEC-2024-0332"),
        ("jsonwebtoken", &[10, 3, 0], "claim type confusion, GHSA-h395-gr6q-cpjc"),
        ("rustls", &[0, 23, 0], "current supported line"),
        ("reqwest", &[0, 13, 0], "current line"),
    ];
    for (name, min, why) in minimums {
        let versions = locked.get(*name).unwrap_or_else(|| panic!("{name} is not in Cargo.lock"));
        for v in versions {
            assert!(v.as_slice() >= *min, "{name} {v:?} is older than {min:?}: {why}");
        }
    }
}

/// One HTTP parser, one h2 implementation, one TLS stack, one JWT library: a second copy of any of
/// them would be a second place where framing or verification can disagree.
#[test]
fn security_critical_crates_appear_once() {
    let locked = locked_versions();
    for name in ["hyper", "h2", "http", "httparse", "rustls", "rustls-webpki", "jsonwebtoken"] {
        let versions = locked.get(name).map(Vec::len).unwrap_or(0);
        assert_eq!(versions, 1, "{name} is locked at {versions} versions");
    }
}

#[test]
fn jsonwebtoken_has_an_explicit_crypto_backend() {
    // jsonwebtoken 10 panics at runtime when no backend feature is selected.
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).expect("Cargo.toml");
    let line = manifest.lines().find(|l| l.starts_with("jsonwebtoken")).expect("jsonwebtoken dependency");
    assert!(line.contains("aws_lc_rs") || line.contains("rust_crypto"), "{line}");
    assert!(line.contains("default-features = false"), "{line}");
}
