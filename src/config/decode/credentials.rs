//! `credentials:` — where tokens are read from (bearer, a named header, cookies).

use http::HeaderName;

use super::field;
use crate::config::model::*;
use crate::config::yaml::{self, Node, Reader, field_path};

pub(super) const BEARER_KEYS: &[&str] = &["allow_raw"];

pub(super) fn credentials(r: &mut Reader, n: &Node) -> Option<Vec<CredentialSource>> {
    let items = r.seq(n, "credentials")?;
    if items.is_empty() {
        r.error(n.span, "credentials", "must not be empty");
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let p = format!("credentials[{i}]");
        let source = match &item.value {
            yaml::Value::Scalar { .. } => {
                let s = r.string(item, &p);
                match s.as_deref() {
                    Some("bearer") => Some(CredentialSource::Bearer { allow_raw: false }),
                    Some(other) => {
                        r.error(
                            item.span,
                            &p,
                            format!(
                                "`{other}` is not a credential source (bearer, header: NAME, cookie: NAME|amplify)"
                            ),
                        );
                        None
                    }
                    None => None,
                }
            }
            yaml::Value::Map(entries) if entries.len() == 1 => {
                let (k, v) = &entries[0];
                let key = r.string(k, &p);
                match key.as_deref() {
                    Some("bearer") => {
                        r.map(v, &field_path(&p, "bearer"), BEARER_KEYS).map(|bm| CredentialSource::Bearer {
                            allow_raw: field(r, &bm, "allow_raw", &field_path(&p, "bearer"), false, |r, n, p| {
                                r.bool(n, p)
                            }),
                        })
                    }
                    Some("header") => {
                        r.string(v, &field_path(&p, "header")).and_then(|h| match HeaderName::try_from(h.as_str()) {
                            // Every client header holding a byte outside `A-Z a-z 0-9 -` is
                            // dropped on arrival (SECURITY HDR-04), so such a source could never
                            // yield a token.
                            Ok(_) if !is_plain_name(&h) => {
                                r.error(
                                    v.span,
                                    &field_path(&p, "header"),
                                    format!(
                                        "`{h}`: header names holding anything but letters, digits and `-` are \
                                         dropped on arrival; use `-`"
                                    ),
                                );
                                None
                            }
                            Ok(name) if name != http::header::AUTHORIZATION && name != http::header::COOKIE => {
                                Some(CredentialSource::Header(name))
                            }
                            Ok(_) => {
                                r.error(
                                    v.span,
                                    &field_path(&p, "header"),
                                    "use `bearer` for Authorization and `cookie:` for cookies",
                                );
                                None
                            }
                            Err(_) => {
                                r.error(v.span, &field_path(&p, "header"), format!("`{h}` is not a valid header name"));
                                None
                            }
                        })
                    }
                    Some("cookie") => r.string(v, &field_path(&p, "cookie")).and_then(|c| {
                        if c == "amplify" {
                            Some(CredentialSource::AmplifyCookie)
                        } else if !c.is_empty() && c.bytes().all(is_cookie_name_byte) {
                            Some(CredentialSource::Cookie(c))
                        } else {
                            r.error(v.span, &field_path(&p, "cookie"), format!("`{c}` is not a valid cookie name"));
                            None
                        }
                    }),
                    Some(other) => {
                        r.error(k.span, &p, format!("`{other}` is not a credential source (bearer, header, cookie)"));
                        None
                    }
                    None => None,
                }
            }
            _ => {
                r.error(item.span, &p, "expected `bearer`, `header: NAME` or `cookie: NAME`");
                None
            }
        };
        match source {
            Some(s) if out.contains(&s) => {
                r.error(item.span, &p, "this credential source is listed twice");
                ok = false;
            }
            Some(s) => out.push(s),
            None => ok = false,
        }
    }
    let bearers = out.iter().filter(|s| matches!(s, CredentialSource::Bearer { .. })).count();
    if bearers > 1 {
        r.error(n.span, "credentials", "`bearer` is listed more than once");
        ok = false;
    }
    ok.then_some(out)
}

pub(super) fn is_cookie_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
