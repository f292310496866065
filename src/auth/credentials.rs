//! Where tokens come from (SPEC §2 "Credentials"): `Authorization: Bearer`, a named header, a
//! plain cookie or Amplify's `CookieStorage` cookies. [`extract`] reads every configured source
//! and returns at most the distinct tokens found, or refuses ambiguity (several values in one
//! source). It never verifies anything and never logs a token.

use http::header::{self, HeaderMap, HeaderName};

use crate::config::CredentialSource;
use crate::http::cookie;

/// A token as found, with the configured source that held it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub value: String,
    /// Index into the configured `credentials` (the first source that held this token).
    pub source: usize,
}

/// What the configured sources yielded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    None,
    /// One token (possibly found in several sources).
    One(Token),
    /// Two distinct tokens (a candidate id+access pair).
    Two(Token, Token),
}

impl Found {
    /// Where the credential came from, without the token.
    pub fn presented(&self) -> Presented {
        match self {
            Found::None => Presented::Nothing,
            Found::One(t) => Presented::One { source: t.source },
            Found::Two(a, b) => Presented::Two { sources: [a.source, b.source] },
        }
    }
}

/// Which configured sources a request's credential came from — never the token itself, so it
/// can be logged, shown by `explain` and kept after the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Presented {
    /// Credentials were not read: `auth: none`, a passed-through preflight, or the request was
    /// refused before this step.
    #[default]
    NotRead,
    /// No configured source held a token.
    Nothing,
    /// A source held something that is not a token (401 `malformed_token`).
    Malformed,
    /// One token; `source` indexes the configured `credentials`.
    One { source: usize },
    /// Two distinct tokens: an id+access pair if they verify as one.
    Two { sources: [usize; 2] },
    /// No configured source held a token; the browser sign-in session (SPEC §8) did: its
    /// id+access pair.
    Session,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// A source held more than one value, or more than two distinct tokens were presented:
    /// 400 `malformed_token`.
    #[error("ambiguous credentials")]
    Ambiguous,
    /// A source was present but empty or not a token: 401 `malformed_token`.
    #[error("malformed credential")]
    Malformed,
}

const AMPLIFY_PREFIX: &str = "CognitoIdentityServiceProvider.";

/// Read every source. `client_ids` are the configured app clients (only their Amplify cookies
/// are considered).
pub fn extract(
    headers: &HeaderMap,
    sources: &[CredentialSource],
    client_ids: &[String],
) -> Result<Found, CredentialError> {
    let mut tokens: Vec<Token> = Vec::new();
    for (index, source) in sources.iter().enumerate() {
        let found = match source {
            CredentialSource::Bearer { allow_raw } => bearer(headers, *allow_raw)?,
            CredentialSource::Header(name) => named_header(headers, name)?,
            CredentialSource::Cookie(name) => cookie(headers, name)?,
            CredentialSource::AmplifyCookie => amplify(headers, client_ids)?,
        };
        for value in found {
            if !tokens.iter().any(|t| t.value == value) {
                tokens.push(Token { value, source: index });
            }
        }
    }
    match tokens.len() {
        0 => Ok(Found::None),
        1 => Ok(Found::One(tokens.remove(0))),
        2 => {
            let second = tokens.remove(1);
            Ok(Found::Two(tokens.remove(0), second))
        }
        _ => Err(CredentialError::Ambiguous),
    }
}

fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a [u8]>, CredentialError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        // Two field lines: which one would the app have used? Refuse (SPEC §2).
        return Err(CredentialError::Ambiguous);
    }
    Ok(first.map(|v| v.as_bytes()))
}

/// `Authorization: Bearer <jwt>`: scheme case-insensitive (RFC 9110 §11.1), separated by one or
/// more spaces; the token itself must be a single JWT-shaped word. A comma (two credentials joined
/// into one field) is ambiguous. Other schemes (Basic, …) are not credentials here.
fn bearer(headers: &HeaderMap, allow_raw: bool) -> Result<Vec<String>, CredentialError> {
    let Some(value) = single(headers, &header::AUTHORIZATION)? else { return Ok(Vec::new()) };
    let value = std::str::from_utf8(value).map_err(|_| CredentialError::Malformed)?;
    if value.contains(',') {
        return Err(CredentialError::Ambiguous);
    }
    let token = match value.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim_start_matches(' '),
        Some(_) => return Ok(Vec::new()),
        None if value.eq_ignore_ascii_case("bearer") => "",
        None if allow_raw && value.contains('.') => value,
        None if value.is_empty() => "",
        None => return Ok(Vec::new()),
    };
    token_word(token).map(|t| vec![t])
}

/// A token must be one non-empty word of visible ASCII (the verifier checks the JWT alphabet).
fn token_word(s: &str) -> Result<String, CredentialError> {
    if s.is_empty() || !visible_ascii(s.as_bytes()) {
        return Err(CredentialError::Malformed);
    }
    Ok(s.to_owned())
}

/// Every byte is visible ASCII (`!`..=`~`). Written without an early exit so the compiler turns
/// it into a vector loop: a token is about 1 KB, and the byte-at-a-time `all(is_ascii_graphic)`
/// cost ~8k instructions per request, the largest single item of a cached request's own work
/// (docs/profiling.md).
fn visible_ascii(s: &[u8]) -> bool {
    s.iter().fold(0u8, |bad, &b| bad | u8::from(b.wrapping_sub(0x21) >= 0x5e)) == 0
}

fn named_header(headers: &HeaderMap, name: &HeaderName) -> Result<Vec<String>, CredentialError> {
    let Some(value) = single(headers, name)? else { return Ok(Vec::new()) };
    let value = std::str::from_utf8(value).map_err(|_| CredentialError::Malformed)?;
    if value.contains(',') {
        return Err(CredentialError::Ambiguous);
    }
    token_word(value.trim()).map(|t| vec![t])
}

fn cookie(headers: &HeaderMap, name: &str) -> Result<Vec<String>, CredentialError> {
    let mut found: Option<&str> = None;
    for v in cookie::values(headers, name) {
        match found {
            Some(prev) if prev != v => return Err(CredentialError::Ambiguous),
            _ => found = Some(v),
        }
    }
    match found {
        None => Ok(Vec::new()),
        Some(v) => token_word(v).map(|t| vec![t]),
    }
}

/// Amplify `CookieStorage`: `CognitoIdentityServiceProvider.<client>.<user>.accessToken|idToken`,
/// with `…<client>.LastAuthUser` naming the user when several are present.
fn amplify(headers: &HeaderMap, client_ids: &[String]) -> Result<Vec<String>, CredentialError> {
    let mut out: Vec<String> = Vec::new();
    for client in client_ids {
        let prefix = format!("{AMPLIFY_PREFIX}{client}.");
        let mut last_user: Option<&str> = None;
        let mut entries: Vec<(&str, &str, &str)> = Vec::new(); // (user, kind, value)
        for (name, value) in cookie::named_values(headers) {
            let Some(rest) = name.strip_prefix(&prefix) else { continue };
            if rest == "LastAuthUser" {
                match last_user {
                    Some(prev) if prev != value => return Err(CredentialError::Ambiguous),
                    _ => last_user = Some(value),
                }
                continue;
            }
            if let Some((user, kind)) = rest.rsplit_once('.')
                && matches!(kind, "accessToken" | "idToken")
            {
                entries.push((user, kind, value));
            }
        }
        if entries.is_empty() {
            continue;
        }
        let user = match last_user {
            Some(u) => u,
            None => {
                let first = entries[0].0;
                if entries.iter().any(|(u, _, _)| *u != first) {
                    return Err(CredentialError::Ambiguous);
                }
                first
            }
        };
        for kind in ["idToken", "accessToken"] {
            let mut value: Option<&str> = None;
            for (u, k, v) in &entries {
                if *u == user && *k == kind {
                    match value {
                        Some(prev) if prev != *v => return Err(CredentialError::Ambiguous),
                        _ => value = Some(v),
                    }
                }
            }
            if let Some(v) = value {
                let t = token_word(v)?;
                if !out.contains(&t) {
                    out.push(t);
                }
            }
        }
    }
    Ok(out)
}

/// Remove the credential cookies from `Cookie`, keeping the app's other cookies.
pub fn strip_credential_cookies(headers: &mut HeaderMap, sources: &[CredentialSource], client_ids: &[String]) {
    if !sources.iter().any(|s| matches!(s, CredentialSource::Cookie(_) | CredentialSource::AmplifyCookie)) {
        return;
    }
    cookie::remove_where(headers, |name| {
        sources.iter().any(|s| match s {
            CredentialSource::Cookie(n) => n == name,
            CredentialSource::AmplifyCookie => name.strip_prefix(AMPLIFY_PREFIX).is_some_and(|rest| {
                client_ids.iter().any(|c| rest.strip_prefix(c.as_str()).is_some_and(|r| r.starts_with('.')))
            }),
            _ => false,
        })
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const T: &str = "eyJh.eyJi.c2ln";

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        m
    }

    fn one(t: &str, source: usize) -> Found {
        Found::One(Token { value: t.into(), source })
    }

    fn bearer_only() -> Vec<CredentialSource> {
        vec![CredentialSource::Bearer { allow_raw: false }]
    }

    #[test]
    fn visible_ascii_is_exactly_bang_to_tilde() {
        for b in 0..=255u8 {
            assert_eq!(visible_ascii(&[b'a', b, b'z']), b.is_ascii_graphic(), "byte {b:#04x}");
        }
        assert!(visible_ascii(b""));
        // Past the vector width too: a bad byte anywhere in a long token is found.
        let mut long = vec![b'x'; 1000];
        assert!(visible_ascii(&long));
        long[997] = b' ';
        assert!(!visible_ascii(&long));
    }

    #[test]
    fn bearer_variants() {
        // TOK-01 / TOK-02: deterministic handling of each spelling.
        let b = bearer_only();
        let cases: &[(&str, Result<Found, CredentialError>)] = &[
            (&format!("Bearer {T}"), Ok(one(T, 0))),
            (&format!("bearer {T}"), Ok(one(T, 0))),
            (&format!("BEARER {T}"), Ok(one(T, 0))),
            (&format!("Bearer  {T}"), Ok(one(T, 0))),
            ("Bearer", Err(CredentialError::Malformed)),
            ("Bearer ", Err(CredentialError::Malformed)),
            ("", Err(CredentialError::Malformed)),
            (&format!("Bearer {T},extra"), Err(CredentialError::Ambiguous)),
            (&format!("Bearer {T}, Bearer {T}"), Err(CredentialError::Ambiguous)),
            ("Basic dXNlcjpwYXNz", Ok(Found::None)),
            (T, Ok(Found::None)),
        ];
        for (value, want) in cases {
            assert_eq!(&extract(&h(&[("authorization", value)]), &b, &[]), want, "{value:?}");
        }
        let tab = h(&[]);
        let mut tab = tab;
        tab.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer\t{T}")).unwrap());
        assert_eq!(extract(&tab, &b, &[]), Ok(Found::None));
    }

    #[test]
    fn raw_token_only_when_allowed() {
        let raw = vec![CredentialSource::Bearer { allow_raw: true }];
        assert_eq!(extract(&h(&[("authorization", T)]), &raw, &[]), Ok(one(T, 0)));
    }

    #[test]
    fn two_authorization_lines_are_ambiguous() {
        let headers = h(&[("authorization", &format!("Bearer {T}")), ("authorization", &format!("Bearer {T}"))]);
        assert_eq!(extract(&headers, &bearer_only(), &[]), Err(CredentialError::Ambiguous));
    }

    #[test]
    fn query_and_unconfigured_cookies_are_not_credentials() {
        // TOK-04: only configured locations count.
        let headers = h(&[("cookie", &format!("access_token={T}"))]);
        assert_eq!(extract(&headers, &bearer_only(), &[]), Ok(Found::None));
    }

    #[test]
    fn same_token_in_two_sources_is_one_credential() {
        let sources = vec![
            CredentialSource::Bearer { allow_raw: false },
            CredentialSource::Header(HeaderName::from_static("accesstoken")),
        ];
        let headers = h(&[("authorization", &format!("Bearer {T}")), ("accesstoken", T)]);
        assert_eq!(extract(&headers, &sources, &[]), Ok(one(T, 0)));
        let headers = h(&[("authorization", &format!("Bearer {T}")), ("accesstoken", "eyJo.eyJw.c2ln")]);
        let two = Found::Two(Token { value: T.into(), source: 0 }, Token { value: "eyJo.eyJw.c2ln".into(), source: 1 });
        assert_eq!(extract(&headers, &sources, &[]), Ok(two.clone()));
        assert_eq!(two.presented(), Presented::Two { sources: [0, 1] });
    }

    #[test]
    fn cookies_plain_and_amplify() {
        let plain = vec![CredentialSource::Cookie("session_jwt".into())];
        let headers = h(&[("cookie", &format!("theme=dark; session_jwt={T}"))]);
        assert_eq!(extract(&headers, &plain, &[]), Ok(one(T, 0)));
        let headers = h(&[("cookie", &format!("session_jwt={T}; session_jwt=eyJo.eyJw.c2ln"))]);
        assert_eq!(extract(&headers, &plain, &[]), Err(CredentialError::Ambiguous));

        let amp = vec![CredentialSource::AmplifyCookie];
        let p = "CognitoIdentityServiceProvider.client1";
        let headers = h(&[(
            "cookie",
            &format!("{p}.alice.accessToken={T}; {p}.bob.accessToken=eyJo.eyJw.c2ln; {p}.LastAuthUser=alice"),
        )]);
        assert_eq!(extract(&headers, &amp, &["client1".to_owned()]), Ok(one(T, 0)));
        let headers = h(&[("cookie", &format!("{p}.alice.accessToken={T}; {p}.bob.accessToken=eyJo.eyJw.c2ln"))]);
        assert_eq!(extract(&headers, &amp, &["client1".to_owned()]), Err(CredentialError::Ambiguous));
        // Unconfigured client ids are ignored.
        assert_eq!(extract(&headers, &amp, &["other".to_owned()]), Ok(Found::None));
    }

    #[test]
    fn credential_cookies_are_cut_and_others_kept() {
        let sources = vec![CredentialSource::Cookie("session_jwt".into())];
        let mut headers = h(&[("cookie", &format!("theme=dark; session_jwt={T}; lang=en"))]);
        strip_credential_cookies(&mut headers, &sources, &[]);
        assert_eq!(headers.get(header::COOKIE).unwrap(), "theme=dark; lang=en");
    }
}
