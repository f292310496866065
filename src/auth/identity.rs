//! Identity headers (SPEC §4): how a verified identity becomes header values — `sub`, the
//! groups in `csv` or `json` form, mapped claims — encoded once per verified token and never
//! truncated. Which headers are removed or set on a request is `proxy::headers`' business; this
//! module only encodes.

use http::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value};

use crate::config::{self, GroupsFormat};

/// Identity headers, encoded once per verified token.
#[derive(Debug, Clone)]
pub struct PreparedIdentity {
    pub sub: HeaderValue,
    pub groups: HeaderValue,
    pub claims: Vec<(HeaderName, HeaderValue)>,
}

/// The identity cannot be forwarded: a claim is not printable text, or everything together is
/// over `limits.max_identity_header_bytes` (never truncated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("identity cannot be encoded as headers")]
pub struct Unencodable;

/// Encode the identity headers for a verified token.
pub fn prepare_identity(
    sub: &str,
    groups: &[String],
    claims: &Map<String, Value>,
    config: &config::IdentityHeaders,
    max_bytes: usize,
) -> Result<PreparedIdentity, Unencodable> {
    let sub = printable(sub).ok_or(Unencodable)?;
    let groups = match config.groups_format {
        GroupsFormat::Csv => encode_groups_csv(groups),
        GroupsFormat::Json => encode_groups_json(groups),
    };
    let groups = HeaderValue::from_str(&groups).map_err(|_| Unencodable)?;
    let mut mapped = Vec::new();
    for (name, claim) in &config.claims {
        let text = match claims.get(claim) {
            None | Some(Value::Null) => continue, // absent claim ⇒ header absent
            Some(Value::String(s)) => printable(s).ok_or(Unencodable)?,
            Some(Value::Number(n)) => HeaderValue::from_str(&n.to_string()).map_err(|_| Unencodable)?,
            Some(Value::Bool(b)) => HeaderValue::from_static(if *b { "true" } else { "false" }),
            Some(_) => return Err(Unencodable),
        };
        mapped.push((name.clone(), text));
    }
    let total = config.sub.as_str().len()
        + sub.len()
        + config.groups.as_str().len()
        + groups.len()
        + mapped.iter().map(|(n, v)| n.as_str().len() + v.len()).sum::<usize>();
    if total > max_bytes {
        return Err(Unencodable);
    }
    Ok(PreparedIdentity { sub, groups, claims: mapped })
}

/// Visible ASCII and inner spaces only: what every upstream stack reads the same way. Control
/// characters (CR/LF/NUL) can never reach a header (SECURITY CLV-04).
fn printable(s: &str) -> Option<HeaderValue> {
    if s.is_empty() || s.starts_with(' ') || s.ends_with(' ') || !s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return None;
    }
    HeaderValue::from_str(s).ok()
}

/// `csv`: names joined by `,`, each percent-encoded outside `A-Z a-z 0-9 - . _ ~`, so a name
/// containing `,` cannot forge a second group.
pub fn encode_groups_csv(groups: &[String]) -> String {
    groups.iter().map(|g| crate::http::percent::encode(g)).collect::<Vec<_>>().join(",")
}

/// `json`: a JSON array with every non-ASCII or control character `\u`-escaped.
pub fn encode_groups_json(groups: &[String]) -> String {
    let mut out = String::from("[");
    for (i, g) in groups.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        for c in g.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
                c => {
                    let mut buf = [0u16; 2];
                    for unit in c.encode_utf16(&mut buf) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
            }
        }
        out.push('"');
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn identity() -> config::IdentityHeaders {
        config::IdentityHeaders {
            sub: HeaderName::from_static("x-user-sub"),
            groups: HeaderName::from_static("x-user-groups"),
            groups_format: GroupsFormat::Csv,
            claims: vec![(HeaderName::from_static("x-user-email"), "email".into())],
            forward_token: false,
        }
    }

    #[test]
    fn csv_groups_cannot_forge_another_group() {
        let groups = vec!["a,b".to_owned(), "Ünïcode".to_owned(), "x y".to_owned(), "plain-1._~".to_owned()];
        assert_eq!(encode_groups_csv(&groups), "a%2Cb,%C3%9Cn%C3%AFcode,x%20y,plain-1._~");
        assert_eq!(encode_groups_csv(&[]), "");
        assert_eq!(encode_groups_json(&groups), r#"["a,b","\u00dcn\u00efcode","x y","plain-1._~"]"#);
        assert_eq!(encode_groups_json(&["q\"\\\n".to_owned()]), r#"["q\"\\\u000a"]"#);
    }

    #[test]
    fn prepare_identity_rules() {
        let id = identity();
        let claims = json!({"email": "a@example.com"});
        let ok = prepare_identity("u1", &["g".into()], claims.as_object().unwrap(), &id, 8192).unwrap();
        assert_eq!(ok.sub, "u1");
        assert_eq!(ok.claims[0].1, "a@example.com");
        // Absent claim → no header.
        let none = prepare_identity("u1", &[], json!({}).as_object().unwrap(), &id, 8192).unwrap();
        assert!(none.claims.is_empty());
        assert_eq!(none.groups, "");
        // CLV-04: control characters, non-strings and oversize are unencodable.
        for bad in
            [json!({"email": "a\r\nb"}), json!({"email": {"x": 1}}), json!({"email": ["a"]}), json!({"email": "ü@x"})]
        {
            assert!(prepare_identity("u1", &[], bad.as_object().unwrap(), &id, 8192).is_err(), "{bad}");
        }
        let number = prepare_identity("u1", &[], json!({"email": 42}).as_object().unwrap(), &id, 8192).unwrap();
        assert_eq!(number.claims[0].1, "42");
        assert!(prepare_identity("u1", &["x".repeat(9000)], json!({}).as_object().unwrap(), &id, 8192).is_err());
    }
}
