//! Route path patterns (SPEC §2 "Routes"): `/a/b` exact, `*` one non-empty segment, a trailing
//! `/**` the prefix and everything below it. A [`Pattern`] is checked and split into segments once,
//! at load; the route table matches requests against the segments and the lints compare them. No
//! regexes, and no second parser of the same text.

use std::fmt;

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// `*`: exactly one non-empty segment.
    Star,
    /// A trailing `**`: the prefix itself and everything below it.
    Rest,
}

/// A checked route pattern: the text as written and its segments (a trailing `/` dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    segments: Vec<Segment>,
}

impl Pattern {
    /// Check `text` — `/`-rooted, literal segments already in normalised form (or they could
    /// never match), `*` as a whole segment, `**` only last — and split it into segments.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        check(text)?;
        let trimmed = text.trim_start_matches('/');
        let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
        let segments = if trimmed.is_empty() {
            Vec::new()
        } else {
            trimmed
                .split('/')
                .map(|s| match s {
                    "*" => Segment::Star,
                    "**" => Segment::Rest,
                    lit => Segment::Literal(lit.to_owned()),
                })
                .collect()
        };
        Ok(Pattern { text: text.to_owned(), segments })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Whether the two patterns match exactly the same paths (`/a` and `/a/` do).
    pub fn same_paths(&self, other: &Pattern, case_insensitive: bool) -> bool {
        self.segments.len() == other.segments.len()
            && self.segments.iter().zip(&other.segments).all(|(a, b)| same_segment(a, b, case_insensitive))
    }

    /// Whether every path `inner` matches is also matched by `self`.
    pub fn covers(&self, inner: &Pattern, case_insensitive: bool) -> bool {
        for (k, seg) in self.segments.iter().enumerate() {
            if *seg == Segment::Rest {
                return true;
            }
            let Some(other) = inner.segments.get(k) else { return false };
            match (seg, other) {
                (Segment::Star, Segment::Rest) => return false,
                (Segment::Star, _) => {}
                (Segment::Literal(a), Segment::Literal(b)) if literal_eq(a, b, case_insensitive) => {}
                _ => return false,
            }
        }
        inner.segments.len() == self.segments.len()
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Literal comparison as the route table does it (`match.case_insensitive`).
pub fn literal_eq(a: &str, b: &str, case_insensitive: bool) -> bool {
    if case_insensitive { a.eq_ignore_ascii_case(b) } else { a == b }
}

fn same_segment(a: &Segment, b: &Segment, case_insensitive: bool) -> bool {
    match (a, b) {
        (Segment::Literal(a), Segment::Literal(b)) => literal_eq(a, b, case_insensitive),
        (a, b) => a == b,
    }
}

fn check(pattern: &str) -> Result<(), String> {
    if !pattern.starts_with('/') {
        return Err("a route path starts with `/`".into());
    }
    let body = pattern.strip_suffix('/').filter(|_| pattern.len() > 1).unwrap_or(pattern);
    if body.len() > 1 {
        let segments: Vec<&str> = body[1..].split('/').collect();
        for (i, seg) in segments.iter().enumerate() {
            match *seg {
                "" => return Err("empty segment (`//`) in route path".into()),
                "**" if i + 1 != segments.len() => return Err("`**` is only allowed as the last segment".into()),
                "**" | "*" => {}
                s if s.contains('*') => {
                    return Err(format!("`{s}`: `*` must be a whole segment (no regexes or partial globs)"));
                }
                "." | ".." => return Err("`.` and `..` segments never match a normalised path".into()),
                _ => {}
            }
        }
    }
    // Literal text must be what the normaliser would produce, or it could never match.
    let literal: String = pattern.replace("**", "x").replace('*', "x");
    match crate::http::path::normalise(&literal) {
        Ok(n) if n == literal => Ok(()),
        Ok(n) => {
            Err(format!("route path is not in normalised form (requests are matched as `{}`)", n.replace('x', "*")))
        }
        Err(e) => Err(format!("route path would never match: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Pattern {
        Pattern::parse(s).unwrap()
    }

    #[test]
    fn segments_and_shapes() {
        assert_eq!(p("/").segments(), &[]);
        assert_eq!(p("/a/*/**").segments(), &[Segment::Literal("a".into()), Segment::Star, Segment::Rest]);
        assert!(p("/a/b").same_paths(&p("/a/b/"), false));
        assert!(!p("/A/b").same_paths(&p("/a/b"), false));
        assert!(p("/A/b").same_paths(&p("/a/b"), true));
        assert!(!p("/a/*").same_paths(&p("/a/b"), false));
    }

    #[test]
    fn covering() {
        assert!(p("/admin/**").covers(&p("/admin/x/status"), false));
        assert!(p("/admin/**").covers(&p("/admin/*/status"), false));
        assert!(!p("/admin/**").covers(&p("/administrator"), false));
        assert!(p("/u/*").covers(&p("/u/me"), false));
        assert!(!p("/u/*").covers(&p("/u/**"), false));
        assert!(!p("/u/me").covers(&p("/u/*"), false));
        assert!(p("/U/**").covers(&p("/u/x"), true));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["a/b", "/a//b", "/a/**/b", "/a*", "/a/./b", "/a/%2e%2e", "/a/%7e"] {
            assert!(Pattern::parse(bad).is_err(), "{bad}");
        }
    }
}
