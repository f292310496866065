//! The `login` block (SPEC §8 "Browser sign-in"): decoded from the spanned YAML tree into a
//! validated [`Login`], with every refusal `check` makes reported at its file:line:col. Owns the
//! shape and the static rules of the block (issuer and client exist, secrets are long enough,
//! URLs are https off loopback, `scopes` has `openid`, the cookie is `__Host-`); does not own what
//! the values do at run time (`auth::login`).

use std::time::Duration;

use super::super::model::{
    Issuer, Login, LoginEndpoints as Endpoints, LoginSession as Session, MIN_SECRET_BYTES, Secret, is_loopback_host,
    origin,
};
use super::super::yaml::{self, Node, Reader, field_path as join};
use super::{field, required};

pub(super) const LOGIN_KEYS: &[&str] = &[
    "issuer",
    "client_id",
    "client_secret",
    "domain",
    "endpoints",
    "public_url",
    "scopes",
    "after_logout_url",
    "session",
];
pub(super) const ENDPOINT_KEYS: &[&str] = &["authorize", "token", "revoke", "logout"];
pub(super) const SESSION_KEYS: &[&str] = &["secrets", "lifetime", "cookie"];

/// URLs Portcullis sends browsers to or calls: https, or http on a loopback host (SPEC §8).
fn check_url(s: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = s.parse().map_err(|_| format!("`{s}` is not a URL"))?;
    let host = uri.host().ok_or_else(|| format!("`{s}` has no host"))?;
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(format!("`{s}`: credentials in the URL are not supported"));
    }
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if is_loopback_host(host) => Ok(uri),
        Some("http") => Err(format!("`{s}`: http:// is only allowed for loopback hosts; use https://")),
        _ => Err(format!("`{s}` must be an https:// URL")),
    }
}

fn url(r: &mut Reader, n: &Node, path: &str) -> Option<String> {
    let s = r.string(n, path)?;
    match check_url(&s) {
        Ok(_) => Some(s),
        Err(e) => {
            r.error(n.span, path, e);
            None
        }
    }
}

pub(super) fn decode(r: &mut Reader, n: &Node, issuers: Option<&[Issuer]>) -> Option<Login> {
    let p = "login";
    let m = r.map(n, p, LOGIN_KEYS)?;
    let issuer = required(r, &m, "issuer", p).and_then(|n| {
        let name = r.string(n, "login.issuer")?;
        let issuers = issuers?;
        match issuers.iter().position(|i| i.name == name) {
            Some(i) => Some((name, i, n)),
            None => {
                r.error(n.span, "login.issuer", format!("no issuer is named `{name}`"));
                None
            }
        }
    });
    let client_id = required(r, &m, "client_id", p).and_then(|n| r.string(n, "login.client_id").map(|c| (c, n)));
    // The client must be one the issuer accepts, or no token from the sign-in could verify.
    if let (Some((name, index, _)), Some((client, cn))) = (&issuer, &client_id)
        && let Some(iss) = issuers.and_then(|i| i.get(*index))
        && !iss.client_ids.contains(client)
    {
        r.error(
            cn.span,
            "login.client_id",
            format!("`{client}` is not among the client_ids of issuer `{name}`; add it there"),
        );
    }
    let client_secret = m.get("client_secret").and_then(|n| {
        let s = r.string(n, "login.client_secret")?;
        if s.is_empty() {
            r.error(n.span, "login.client_secret", "must not be empty (omit it for a public client)");
            return None;
        }
        Some(Secret(s.into_bytes()))
    });
    let endpoints = match (m.get("domain"), m.get("endpoints")) {
        (Some(_), Some(e)) => {
            r.error(e.span, "login.endpoints", "use either `domain` or `endpoints`, not both");
            None
        }
        (None, None) => {
            r.error(m.span(), p, "`domain` (the Cognito domain) or `endpoints` is required in login");
            None
        }
        (Some(d), None) => url(r, d, "login.domain").and_then(|s| {
            let uri: http::Uri = s.parse().ok()?;
            if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
                r.error(
                    d.span,
                    "login.domain",
                    "the domain is an origin such as https://myapp.auth.eu-west-1.amazoncognito.com (no path)",
                );
                return None;
            }
            let base = s.trim_end_matches('/');
            Some(Endpoints {
                authorize: format!("{base}/oauth2/authorize"),
                token: format!("{base}/oauth2/token"),
                revoke: Some(format!("{base}/oauth2/revoke")),
                logout: Some(format!("{base}/logout")),
            })
        }),
        (None, Some(e)) => {
            let ep = "login.endpoints";
            r.map(e, ep, ENDPOINT_KEYS).and_then(|em| {
                let authorize = required(r, &em, "authorize", ep).and_then(|n| url(r, n, &join(ep, "authorize")));
                let token = required(r, &em, "token", ep).and_then(|n| url(r, n, &join(ep, "token")));
                let revoke = em.get("revoke").map(|n| url(r, n, &join(ep, "revoke")));
                let logout = em.get("logout").map(|n| url(r, n, &join(ep, "logout")));
                let (revoke, logout) =
                    (revoke.map_or(Some(None), |v| v.map(Some)), logout.map_or(Some(None), |v| v.map(Some)));
                Some(Endpoints { authorize: authorize?, token: token?, revoke: revoke?, logout: logout? })
            })
        }
    };
    let public_url = required(r, &m, "public_url", p).and_then(|n| {
        let s = url(r, n, "login.public_url")?;
        let uri: http::Uri = s.parse().ok()?;
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            r.error(
                n.span,
                "login.public_url",
                "public_url is the origin browsers use, such as https://app.example.com (no path)",
            );
            return None;
        }
        origin(&s)
    });
    let scopes =
        field(r, &m, "scopes", p, Some(vec!["openid".into(), "email".into(), "profile".into()]), |r, n, path| {
            let list = r.string_list(n, path)?;
            if let Some(bad) = list
                .iter()
                .find(|s| s.is_empty() || !s.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\'))
            {
                r.error(n.span, path, format!("`{bad}`: scopes are printable ASCII without spaces or quotes"));
                return Some(None);
            }
            if !list.iter().any(|s| s == "openid") {
                r.error(n.span, path, "scopes must include `openid` (the sign-in needs an id token)");
                return Some(None);
            }
            Some(Some(list))
        });
    let after_logout = m.get("after_logout_url").map(|n| (url(r, n, "login.after_logout_url"), n.span));
    let session = required(r, &m, "session", p).and_then(|n| session(r, n));

    let (issuer, issuer_index, _) = issuer?;
    let public_url = public_url?;
    let (after_logout_url, after_logout_span) = match after_logout {
        Some((u, span)) => (u?, Some(span)),
        None => (format!("{public_url}/"), None),
    };
    Some(Login {
        issuer,
        issuer_index,
        client_id: client_id?.0,
        client_secret,
        endpoints: endpoints?,
        public_url,
        scopes: scopes?,
        after_logout_url,
        session: session?,
        after_logout_span,
    })
}

fn session(r: &mut Reader, n: &Node) -> Option<Session> {
    let p = "login.session";
    let m = r.map(n, p, SESSION_KEYS)?;
    let secrets = required(r, &m, "secrets", p).and_then(|n| {
        let list = r.string_list(n, "login.session.secrets")?;
        let mut ok = true;
        for (i, s) in list.iter().enumerate() {
            // Secrets are key material for the cookie cipher: short ones can be guessed offline
            // from any one cookie (SPEC §8; SECURITY LOGIN-05).
            if s.len() < MIN_SECRET_BYTES {
                let at = match &n.value {
                    yaml::Value::Seq(items) => items.get(i).map_or(n.span, |it| it.span),
                    _ => n.span,
                };
                r.error(
                    at,
                    &format!("login.session.secrets[{i}]"),
                    format!("a session secret must be at least {MIN_SECRET_BYTES} bytes (this one has {})", s.len()),
                );
                ok = false;
            }
        }
        ok.then(|| list.into_iter().map(|s| Secret(s.into_bytes())).collect::<Vec<_>>())
    });
    let lifetime = field(r, &m, "lifetime", p, Duration::from_secs(12 * 3600), |r, n, p| r.duration(n, p));
    if (lifetime.is_zero() || lifetime > Duration::from_secs(3650 * 24 * 3600))
        && let Some(n) = m.get("lifetime")
    {
        r.error(n.span, "login.session.lifetime", "must be greater than 0 and at most 3650d");
    }
    let cookie = field(r, &m, "cookie", p, Some("__Host-portcullis".to_owned()), |r, n, path| {
        let c = r.string(n, path)?;
        // `__Host-`: the browser only accepts it Secure, with Path=/ and no Domain, so a sibling
        // subdomain cannot plant or shadow it (RFC 6265bis; SECURITY LOGIN-05).
        if !c.starts_with("__Host-")
            || c.len() == "__Host-".len()
            || !c.bytes().all(super::credentials::is_cookie_name_byte)
        {
            r.error(
                n.span,
                path,
                format!("`{c}`: the session cookie name must start with `__Host-` and be a valid cookie name"),
            );
            return Some(None);
        }
        Some(Some(c))
    });
    Some(Session { secrets: secrets?, lifetime, cookie: cookie? })
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    const BASE: &str = r#"listen: 127.0.0.1:8080
upstream:
  url: http://127.0.0.1:8000
issuers:
  - name: main
    cognito: {region: eu-west-1, user_pool_id: eu-west-1_AbCdEf123}
    client_ids: [7abc123example]
    token_use: access
routes:
  - name: app
    path: /**
  - name: api
    path: /api/**
    login: false
"#;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn with_login(login: &str) -> String {
        format!("{BASE}login:\n{login}")
    }

    fn good() -> String {
        format!(
            "  issuer: main\n  client_id: 7abc123example\n  domain: https://myapp.auth.eu-west-1.amazoncognito.com\n  public_url: https://app.example.com\n  session:\n    secrets: [\"{SECRET}\"]\n"
        )
    }

    fn errors(yaml: &str) -> Vec<String> {
        match parse(yaml, "p.yaml", &|_| None) {
            Ok(_) => Vec::new(),
            Err(e) => e.messages,
        }
    }

    #[test]
    fn a_cognito_domain_gives_the_four_endpoints_and_defaults() {
        let c = parse(&with_login(&good()), "p.yaml", &|_| None).unwrap();
        let l = c.login.unwrap();
        assert_eq!(l.endpoints.authorize, "https://myapp.auth.eu-west-1.amazoncognito.com/oauth2/authorize");
        assert_eq!(l.endpoints.token, "https://myapp.auth.eu-west-1.amazoncognito.com/oauth2/token");
        assert_eq!(l.endpoints.revoke.as_deref(), Some("https://myapp.auth.eu-west-1.amazoncognito.com/oauth2/revoke"));
        assert_eq!(l.endpoints.logout.as_deref(), Some("https://myapp.auth.eu-west-1.amazoncognito.com/logout"));
        assert_eq!(l.redirect_uri(), "https://app.example.com/.portcullis/callback");
        assert_eq!(l.after_logout_url, "https://app.example.com/");
        assert_eq!(l.scopes, ["openid", "email", "profile"]);
        assert_eq!(l.session.cookie, "__Host-portcullis");
        assert_eq!(l.session.lifetime.as_secs(), 12 * 3600);
        assert!(!c.routes[1].login && c.routes[0].login);
        assert!(!format!("{l:?}").contains(SECRET), "Debug never prints a secret");
    }

    #[test]
    fn check_refuses_what_spec_8_lists_at_file_line_col() {
        let cases: &[(&str, &str, &str)] = &[
            ("client_id: 7abc123example", "client_id: someone-else", "not among the client_ids"),
            (SECRET, "too-short-secret", "at least 32 bytes"),
            ("https://app.example.com", "http://app.example.com", "only allowed for loopback"),
            (
                "https://myapp.auth.eu-west-1.amazoncognito.com",
                "http://myapp.auth.eu-west-1.amazoncognito.com",
                "only allowed for loopback",
            ),
            ("issuer: main", "issuer: other", "no issuer is named"),
        ];
        for (from, to, want) in cases {
            let yaml = with_login(&good().replace(from, to));
            let errs = errors(&yaml);
            assert!(
                errs.iter().any(|e| e.contains(want) && e.starts_with("p.yaml:") && e.split(':').nth(2).is_some()),
                "{to}: {errs:#?}"
            );
        }
        let no_openid = with_login(&format!("{}  scopes: [email]\n", good()));
        assert!(errors(&no_openid).iter().any(|e| e.contains("include `openid`")));
        let cookie = with_login(&good().replace("session:\n", "session:\n    cookie: portcullis\n"));
        assert!(errors(&cookie).iter().any(|e| e.contains("__Host-")));
        let both = with_login(&format!(
            "{}  endpoints: {{authorize: https://a.example/x, token: https://a.example/t}}\n",
            good()
        ));
        assert!(errors(&both).iter().any(|e| e.contains("not both")));
    }

    #[test]
    fn loopback_http_endpoints_are_accepted() {
        let login = good().replace(
            "  domain: https://myapp.auth.eu-west-1.amazoncognito.com\n",
            "  endpoints: {authorize: \"http://127.0.0.1:9000/oauth2/authorize\", token: \"http://localhost:9000/oauth2/token\"}\n",
        );
        let c =
            parse(&with_login(&login.replace("https://app.example.com", "http://127.0.0.1:8080")), "p.yaml", &|_| None)
                .unwrap();
        let l = c.login.unwrap();
        assert_eq!(l.endpoints.revoke, None);
        assert_eq!(l.public_url, "http://127.0.0.1:8080");
    }

    #[test]
    fn after_logout_url_off_the_public_origin_is_a_warning() {
        let yaml = with_login(&format!("{}  after_logout_url: https://elsewhere.example.com/\n", good()));
        let c = parse(&yaml, "p.yaml", &|_| None).unwrap();
        let codes = |c: &crate::config::Config| crate::config::lint::lint(c).iter().map(|f| f.code).collect::<Vec<_>>();
        assert!(codes(&c).contains(&"login_logout_origin"), "{:?}", codes(&c));
        let c = parse(&with_login(&good()), "p.yaml", &|_| None).unwrap();
        assert!(!codes(&c).contains(&"login_logout_origin"));
    }
}
