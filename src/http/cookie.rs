//! Reading and pruning the request's `Cookie` fields (RFC 6265 §4.2), shared by every credential
//! that travels in a cookie: the configured cookie sources and Amplify cookies
//! (`auth::credentials`) and the sign-in's session and login cookies (`auth::login`). One parser,
//! so what one of them reads as a cookie's name is what the other strips before forwarding.
//! Knows nothing of which cookies matter.

use http::HeaderMap;
use http::header::{self, HeaderValue};

/// Every `name=value` pair across all `Cookie` fields (HTTP/2 may split them), trimmed, empty
/// pairs skipped. Fields that are not visible ASCII are skipped whole.
pub fn pairs(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|p| !p.is_empty())
}

/// The name of one pair (the whole pair when it has no `=`).
pub fn name(pair: &str) -> &str {
    pair.split_once('=').map_or(pair, |(n, _)| n.trim())
}

/// Every `(name, value)` with a `=`, the value unquoted.
pub fn named_values(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    pairs(headers).filter_map(|pair| {
        let (n, v) = pair.split_once('=')?;
        Some((n.trim(), v.trim().trim_matches('"')))
    })
}

/// Every value of the cookie `name`.
pub fn values<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    named_values(headers).filter_map(move |(n, v)| (n == name).then_some(v))
}

/// Remove every pair whose name `doomed` picks, keeping the others, in order, as one field.
/// Leaves the fields untouched (no allocation) when nothing is picked.
pub fn remove_where(headers: &mut HeaderMap, doomed: impl Fn(&str) -> bool) {
    if !pairs(headers).any(|pair| doomed(name(pair))) {
        return;
    }
    let kept: Vec<&str> = pairs(headers).filter(|pair| !doomed(name(pair))).collect();
    let joined = kept.join("; ");
    headers.remove(header::COOKIE);
    if !joined.is_empty()
        && let Ok(v) = HeaderValue::from_str(&joined)
    {
        headers.insert(header::COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(lines: &[&str]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for l in lines {
            m.append(header::COOKIE, HeaderValue::from_str(l).unwrap());
        }
        m
    }

    #[test]
    fn values_across_fields_trimmed_and_unquoted() {
        let m = h(&["a=1; s=\"x\"", " s = y ;;b", "c=3"]);
        assert_eq!(values(&m, "s").collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(pairs(&m).map(name).collect::<Vec<_>>(), ["a", "s", "s", "b", "c"]);
    }

    #[test]
    fn remove_where_keeps_the_others_in_order_and_drops_an_empty_field() {
        let mut m = h(&["a=1; s=x", "b=2; s=y"]);
        remove_where(&mut m, |n| n == "s");
        assert_eq!(m.get_all(header::COOKIE).iter().collect::<Vec<_>>(), ["a=1; b=2"]);
        let mut m = h(&["s=x"]);
        remove_where(&mut m, |n| n == "s");
        assert!(m.get(header::COOKIE).is_none());
        let mut m = h(&["a=1", "b=2"]);
        remove_where(&mut m, |n| n == "s");
        assert_eq!(m.get_all(header::COOKIE).iter().count(), 2, "untouched when nothing matches");
    }
}
