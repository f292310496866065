//! The sign-in test rig (SPEC §8): one Portcullis [`App`] in front of the recording echo app,
//! signing in at the in-process provider of `oidc.rs`, and a test "browser" that follows redirects
//! by hand and keeps cookies in a [`Jar`], so every `Location` and `Set-Cookie` can be checked.
//! Used by tests/login.rs and tests/login_logs.rs (included with `#[path]`, next to `oidc.rs`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use portcullis::App;

use super::oidc::{self, Provider};
use super::support::{Echo, WAIT, metric};

pub const PUBLIC: &str = "https://app.example.test";
pub const S1: &str = "first-session-secret-0123456789abcdef";
pub const S2: &str = "second-session-secret-0123456789abcdef";
pub const S3: &str = "foreign-session-secret-0123456789abcdef";
pub const COOKIE: &str = "__Host-portcullis";
pub const LOGIN_COOKIE: &str = "__Host-portcullis-login";

pub fn yaml(p: &Provider, echo: &Echo, secrets: &[&str]) -> String {
    let secrets: Vec<String> = secrets.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        r#"listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
upstream:
  url: "{echo}"
issuers:
  - name: main
    issuer: "{iss}"
    jwks_uri: "{jwks}"
    client_ids: [{client}]
    token_use: access
identity_headers:
  claims:
    X-User-Email: email
login:
  issuer: main
  client_id: {client}
  client_secret: "{secret}"
  endpoints:
    authorize: "{authorize}"
    token: "{token}"
    revoke: "{revoke}"
    logout: "{logout}"
  public_url: {PUBLIC}
  after_logout_url: {PUBLIC}/bye
  session:
    secrets: [{secrets}]
routes:
  - name: health
    path: /health
    auth: none
  - name: api
    path: /api/**
    login: false
  - name: maybe
    path: /maybe/**
    auth: optional
  - name: admin
    path: /admin/**
    require:
      groups_any: [Admins]
  - name: app
    path: /**
"#,
        echo = echo.url(),
        iss = p.iss(),
        jwks = p.jwks_url(),
        client = oidc::CLIENT,
        secret = oidc::SECRET,
        authorize = p.url("/oauth2/authorize"),
        token = p.url("/oauth2/token"),
        revoke = p.url("/oauth2/revoke"),
        logout = p.url("/logout"),
        secrets = secrets.join(", "),
    )
}

/// One Portcullis process in front of the echo app, signing in at `provider`.
pub struct Rig {
    pub app: App,
    pub provider: Provider,
    pub echo: Echo,
    pub http: reqwest::Client,
}

impl Rig {
    pub async fn start() -> Rig {
        Rig::replica(&Provider::start().await, &[S1]).await
    }

    /// Another process on the same provider (a replica, or a restart with other secrets).
    pub async fn replica(provider: &Provider, secrets: &[&str]) -> Rig {
        let echo = Echo::start().await;
        let config = portcullis::config::parse(&yaml(provider, &echo, secrets), "login.yaml", &|_| None)
            .unwrap_or_else(|e| panic!("{e}"));
        let app = App::start(config).await.expect("app starts");
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let rig = Rig { app, provider: provider.clone(), echo, http };
        let deadline = std::time::Instant::now() + WAIT;
        while rig.http.get(format!("http://{}/readyz", rig.app.admin_addr)).send().await.map(|r| r.status()).ok()
            != Some(reqwest::StatusCode::OK)
        {
            assert!(std::time::Instant::now() < deadline, "not ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        rig
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.app.proxy_addr)
    }

    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric(&self.app.shared.metrics.render(), name, labels)
    }

    pub fn login(&self) -> std::sync::Arc<portcullis::proxy::runtime::Runtime> {
        self.app.shared.runtime.load_full()
    }

    /// A browser navigation.
    pub async fn nav(&self, path: &str, jar: &Jar) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .header("sec-fetch-mode", "navigate")
            .header("cookie", jar.header())
            .send()
            .await
            .unwrap()
    }

    /// A `fetch()` from page script.
    pub async fn fetch(&self, path: &str, jar: &Jar) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .header("sec-fetch-mode", "cors")
            .header("accept", "application/json")
            .header("cookie", jar.header())
            .send()
            .await
            .unwrap()
    }

    /// Follow a sign-in from a protected navigation to `path` to the callback's response
    /// (the jar keeps every cookie set on the way).
    pub async fn sign_in(&self, path: &str, jar: &mut Jar) -> reqwest::Response {
        let start = self.nav(path, jar).await;
        assert_eq!(start.status(), 302, "a navigation is sent to sign in");
        jar.update(&start);
        let authorize = location(&start);
        self.complete(&authorize, jar).await
    }

    /// Visit the authorize URL at the provider and bring its callback back to Portcullis.
    pub async fn complete(&self, authorize: &str, jar: &mut Jar) -> reqwest::Response {
        let at_provider = self.http.get(authorize).send().await.unwrap();
        assert_eq!(at_provider.status(), 302);
        let callback = location(&at_provider);
        let path = callback.strip_prefix(PUBLIC).expect("the provider redirects to public_url's callback");
        let done = self.http.get(self.url(path)).header("cookie", jar.header()).send().await.unwrap();
        jar.update(&done);
        done
    }
}

pub fn location(r: &reqwest::Response) -> String {
    r.headers().get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

pub fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

pub fn cleared(r: &reqwest::Response, name: &str) -> bool {
    set_cookies(r).iter().any(|c| c.starts_with(&format!("{name}=;")) && c.contains("Max-Age=0"))
}

pub fn query(url: &str) -> BTreeMap<String, String> {
    url.split_once('?')
        .map(|(_, q)| q)
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), portcullis::auth::login::oauth::decode(v).unwrap()))
        .collect()
}

/// A browser's cookies for the proxy's origin.
#[derive(Clone, Default, Debug)]
pub struct Jar(pub BTreeMap<String, String>);

impl Jar {
    pub fn update(&mut self, r: &reqwest::Response) {
        for c in set_cookies(r) {
            let (pair, attrs) = c.split_once(';').unwrap_or((&c, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_owned(), value.to_owned());
            }
        }
    }
    pub fn header(&self) -> String {
        let mut pairs: Vec<String> = vec!["theme=dark".into()];
        pairs.extend(self.0.iter().map(|(k, v)| format!("{k}={v}")));
        pairs.join("; ")
    }
    pub fn session(&self) -> &str {
        self.0.get(COOKIE).map(String::as_str).unwrap_or_default()
    }
    pub fn with_session(&self, value: &str) -> Jar {
        let mut j = self.clone();
        j.0.insert(COOKIE.into(), value.into());
        j
    }
}

pub async fn signed_in(rig: &Rig) -> Jar {
    let mut jar = Jar::default();
    let done = rig.sign_in("/", &mut jar).await;
    assert_eq!(done.status(), 303, "{:?}", done.text().await);
    assert!(!jar.session().is_empty());
    jar
}

pub fn headers_with(session: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert("cookie", format!("{COOKIE}={session}").parse().unwrap());
    h
}

pub fn cookie_value(set_cookie: &http::HeaderValue) -> String {
    let s = set_cookie.to_str().unwrap();
    s.split(';').next().unwrap().split_once('=').unwrap().1.to_owned()
}
