//! `portcullis demo`: a zero-setup quickstart. Starts, on loopback, a local issuer (fresh RSA
//! key, JWKS over HTTP), a tiny echo app that reports what it received, and the real proxy with
//! a built-in policy — then prints ready-to-paste `curl` lines with freshly minted tokens. The
//! policy goes through the same parser and pipeline as any config file.
//!
//! The local issuer also offers browser sign-in (SPEC §8): a sign-in page listing the demo users
//! and the four OAuth endpoints Cognito has (`/oauth2/authorize`, `/oauth2/token` with PKCE S256,
//! `/oauth2/revoke`, `/logout`), so opening the proxy's address in a browser signs you in and shows
//! what the echo app received. It is a demo: no passwords, everything in memory.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http::{Request, Response, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::http::body::{self, ProxyBody};
use crate::tools::mint::{self, SigningKey};

pub const DEMO_CLIENT_ID: &str = "demo-client";

/// The demo's policy. `@ISSUER@`, `@JWKS@`, `@UPSTREAM@`, `@LISTEN@`, `@ADMIN@` are filled in.
pub const DEMO_CONFIG: &str = r#"
listen: "@LISTEN@"
admin_listen: "@ADMIN@"
upstream:
  url: "@UPSTREAM@"
issuers:
  - name: demo
    issuer: "@ISSUER@"
    jwks_uri: "@JWKS@"
    client_ids: [demo-client]
    token_use: access
login:
  issuer: demo
  client_id: demo-client
  endpoints:
    authorize: "@IDP@/oauth2/authorize"
    token: "@IDP@/oauth2/token"
    revoke: "@IDP@/oauth2/revoke"
    logout: "@IDP@/logout"
  public_url: "@PUBLIC@"
  session:
    secrets: ["@SECRET@"]
routes:
  - name: public
    path: /public/**
    auth: none
  - name: admin
    path: /admin/**
    require:
      groups_any: [Admins]
  - name: app
    path: /**
"#;

/// The echo app: answers with the method, path, query and the identity headers it received.
pub async fn serve_echo(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            let svc = service_fn(echo);
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn echo(req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let doc = serde_json::json!({
        "app": "portcullis demo echo",
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query(),
        "x-user-sub": header("x-user-sub"),
        "x-user-groups": header("x-user-groups"),
        "authorization_forwarded": req.headers().contains_key(header::AUTHORIZATION),
    });
    let _ = req.into_body().collect().await;
    let mut r = Response::new(body::full(format!("{doc:#}\n")));
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    Ok(r)
}

/// The demo's users: (`sub`, groups, what the sign-in page says).
pub const DEMO_USERS: &[(&str, &[&str], &str)] =
    &[("alice-0001", &["Admins"], "Alice (group Admins)"), ("bob-0002", &["Readers"], "Bob (group Readers)")];

/// What the demo's OAuth endpoints remember (in memory; a demo, not a provider).
struct IdpState {
    issuer: SigningKey,
    iss: String,
    /// `<public_url>/.portcullis/callback`: the only redirect_uri accepted.
    redirect_uri: String,
    /// `<public_url>/`: the only logout_uri followed.
    logout_uri: String,
    /// code → (sub, nonce, code_challenge)
    codes: Mutex<HashMap<String, (String, String, String)>>,
    /// refresh token → sub
    refresh: Mutex<HashMap<String, String>>,
}

fn html(status: http::StatusCode, page: String) -> Response<ProxyBody> {
    let mut r = Response::new(body::full(page));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/html; charset=utf-8"));
    r
}

fn json_response(status: http::StatusCode, v: serde_json::Value) -> Response<ProxyBody> {
    let mut r = Response::new(body::full(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    r
}

fn redirect_to(location: &str) -> Response<ProxyBody> {
    let mut r = Response::new(body::full(bytes::Bytes::new()));
    *r.status_mut() = http::StatusCode::FOUND;
    if let Ok(v) = header::HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

fn params(s: &str) -> HashMap<String, String> {
    s.split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((crate::auth::login::oauth::decode(k)?, crate::auth::login::oauth::decode(v)?)))
        .collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

impl IdpState {
    /// Id, access and refresh tokens for `sub` (with the sign-in's `nonce` for a code grant).
    fn tokens(&self, sub: &str, nonce: Option<&str>) -> serde_json::Value {
        let groups = DEMO_USERS.iter().find(|(s, _, _)| *s == sub).map_or(&[][..], |(_, g, _)| *g);
        let origin = format!("{:032x}", rand::random::<u128>());
        let mut access = mint::access_claims(&self.iss, DEMO_CLIENT_ID, sub, groups, "openid email profile");
        access["origin_jti"] = serde_json::json!(origin);
        let access = self.issuer.mint(&access);
        let mut id = mint::id_claims(&self.iss, DEMO_CLIENT_ID, sub, groups, &format!("{sub}@demo.example"));
        id["origin_jti"] = serde_json::json!(origin);
        id["at_hash"] = serde_json::json!(crate::auth::verify::at_hash(access.as_bytes()));
        if let Some(n) = nonce {
            id["nonce"] = serde_json::json!(n);
        }
        serde_json::json!({"access_token": access, "id_token": self.issuer.mint(&id), "token_type": "Bearer", "expires_in": 3600})
    }

    async fn serve(self: Arc<Self>, req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
        use http::StatusCode;
        let path = req.uri().path().to_owned();
        let query = params(req.uri().query().unwrap_or_default());
        let form = match req.into_body().collect().await {
            Ok(b) => params(&String::from_utf8_lossy(&b.to_bytes())),
            Err(_) => HashMap::new(),
        };
        let bad = |e: &str| json_response(StatusCode::BAD_REQUEST, serde_json::json!({"error": e}));
        Ok(match path.as_str() {
            "/oauth2/authorize" => {
                let get = |k: &str| query.get(k).cloned().unwrap_or_default();
                if get("redirect_uri") != self.redirect_uri || get("client_id") != DEMO_CLIENT_ID {
                    return Ok(html(StatusCode::BAD_REQUEST, "<p>redirect_mismatch</p>".into()));
                }
                if get("code_challenge_method") != "S256" || get("response_type") != "code" {
                    return Ok(html(StatusCode::BAD_REQUEST, "<p>invalid_request</p>".into()));
                }
                match query.get("user").filter(|u| DEMO_USERS.iter().any(|(s, _, _)| s == *u)) {
                    Some(user) => {
                        let code = crate::auth::login::random_token(24).unwrap_or_default();
                        self.codes
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(code.clone(), (user.clone(), get("nonce"), get("code_challenge")));
                        let enc = crate::http::percent::encode;
                        redirect_to(&format!("{}?code={}&state={}", self.redirect_uri, enc(&code), enc(&get("state"))))
                    }
                    None => {
                        // The sign-in page: one link per demo user, carrying the request along.
                        let base = format!("/oauth2/authorize?{}", req_query(&query));
                        let users: String = DEMO_USERS
                            .iter()
                            .map(|(sub, _, label)| {
                                let href = escape(&format!("{base}&user={sub}"));
                                format!("<li><a href=\"{href}\">Sign in as {}</a></li>", escape(label))
                            })
                            .collect();
                        html(
                            StatusCode::OK,
                            format!(
                                "<!doctype html><title>Portcullis demo sign-in</title><h1>Portcullis demo sign-in</h1>\
                                 <p>This page stands in for Cognito's managed login. Pick a user:</p><ul>{users}</ul>"
                            ),
                        )
                    }
                }
            }
            "/oauth2/token" => match form.get("grant_type").map(String::as_str) {
                Some("authorization_code") => {
                    let code =
                        form.get("code").and_then(|c| self.codes.lock().unwrap_or_else(|e| e.into_inner()).remove(c));
                    let Some((sub, nonce, challenge)) = code else { return Ok(bad("invalid_grant")) };
                    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
                    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
                    use base64::Engine;
                    let hashed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
                    if hashed != challenge || form.get("redirect_uri") != Some(&self.redirect_uri) {
                        return Ok(bad("invalid_grant"));
                    }
                    let refresh = crate::auth::login::random_token(48).unwrap_or_default();
                    self.refresh.lock().unwrap_or_else(|e| e.into_inner()).insert(refresh.clone(), sub.clone());
                    let mut set = self.tokens(&sub, Some(&nonce));
                    set["refresh_token"] = serde_json::json!(refresh);
                    json_response(StatusCode::OK, set)
                }
                Some("refresh_token") => {
                    let token = form.get("refresh_token").cloned().unwrap_or_default();
                    let sub = self.refresh.lock().unwrap_or_else(|e| e.into_inner()).get(&token).cloned();
                    match sub {
                        Some(sub) => json_response(StatusCode::OK, self.tokens(&sub, None)),
                        None => bad("invalid_grant"),
                    }
                }
                _ => bad("unsupported_grant_type"),
            },
            "/oauth2/revoke" => {
                if let Some(t) = form.get("token") {
                    self.refresh.lock().unwrap_or_else(|e| e.into_inner()).remove(t);
                }
                json_response(StatusCode::OK, serde_json::json!({}))
            }
            "/logout" => match query.get("logout_uri") {
                Some(u) if *u == self.logout_uri => redirect_to(u),
                _ => html(StatusCode::OK, "<p>Signed out.</p>".into()),
            },
            _ => json_response(StatusCode::OK, self.issuer.jwks()),
        })
    }
}

/// The authorize request's own parameters, re-encoded (the sign-in page's links carry them).
fn req_query(q: &HashMap<String, String>) -> String {
    let keys = [
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
    ];
    let pairs: Vec<(&str, &str)> = keys.iter().filter_map(|k| q.get(*k).map(|v| (*k, v.as_str()))).collect();
    crate::auth::login::oauth::form(&pairs)
}

/// Serve the demo's local identity provider (JWKS, sign-in page, OAuth endpoints).
async fn serve_idp(listener: TcpListener, state: Arc<IdpState>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| state.clone().serve(req));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

/// Everything the demo started.
pub struct Demo {
    pub app: crate::serve::app::App,
    pub admin_token: String,
    pub user_token: String,
    /// Where to point a browser (the proxy, as `public_url`).
    pub browser_url: String,
}

/// Start the demo on `listen` / `admin`.
pub async fn start(listen: SocketAddr, admin: SocketAddr) -> Result<Demo, String> {
    let issuer = SigningKey::generate("demo-key-1")?;
    let jwks_listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let jwks_addr = jwks_listener.local_addr().map_err(|e| e.to_string())?;
    let iss = format!("http://{jwks_addr}/demo_pool");
    // The browser reaches the proxy at `public_url`: with an ephemeral port (tests), find a free
    // one first; a wildcard address is reached through loopback.
    let listen = if listen.port() == 0 {
        let probe = std::net::TcpListener::bind((listen.ip(), 0)).map_err(|e| e.to_string())?;
        probe.local_addr().map_err(|e| e.to_string())?
    } else {
        listen
    };
    let host = if listen.ip().is_unspecified() { "127.0.0.1".to_owned() } else { listen.ip().to_string() };
    let public = format!("http://{}", SocketAddr::new(host.parse().map_err(|_| "listen address")?, listen.port()));
    let secret = crate::auth::login::random_token(32).ok_or("no randomness")?;
    let idp = Arc::new(IdpState {
        issuer,
        iss: iss.clone(),
        redirect_uri: format!("{public}/.portcullis/callback"),
        logout_uri: format!("{public}/"),
        codes: Mutex::default(),
        refresh: Mutex::default(),
    });
    tokio::spawn(serve_idp(jwks_listener, idp.clone()));
    let issuer = &idp.issuer;
    let echo_listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let echo_addr = echo_listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(serve_echo(echo_listener));

    let yaml = DEMO_CONFIG
        .replace("@LISTEN@", &listen.to_string())
        .replace("@ADMIN@", &admin.to_string())
        .replace("@UPSTREAM@", &format!("http://{echo_addr}"))
        .replace("@ISSUER@", &iss)
        .replace("@JWKS@", &format!("{iss}/.well-known/jwks.json"))
        .replace("@IDP@", &format!("http://{jwks_addr}"))
        .replace("@PUBLIC@", &public)
        .replace("@SECRET@", &secret);
    let config = crate::config::parse(&yaml, "<demo>", &|_| None).map_err(|e| e.to_string())?;
    let app = crate::serve::app::App::start(config).await?;
    let admin_token =
        issuer.mint(&mint::access_claims(&iss, DEMO_CLIENT_ID, "alice-0001", &["Admins"], "openid email"));
    let user_token = issuer.mint(&mint::access_claims(&iss, DEMO_CLIENT_ID, "bob-0002", &["Readers"], "openid email"));
    // Wait (bounded) for the first JWKS fetch so the printed commands work at once.
    for _ in 0..100 {
        if app.shared.is_ready() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Ok(Demo { app, admin_token, user_token, browser_url: format!("{public}/") })
}

/// The lines `portcullis demo` prints: each example is one line starting with `curl `.
pub fn instructions(d: &Demo) -> String {
    let p = d.app.proxy_addr;
    let a = d.app.admin_addr;
    format!(
        "Portcullis demo is running: proxy http://{p}, admin http://{a}\n\
         A local issuer signs tokens, an echo app shows what it receives. Try:\n\n\
         # public route, no token needed (identity headers are stripped, never added)\n\
         curl -s http://{p}/public/hello\n\
         # no token on a protected route: 401\n\
         curl -si http://{p}/orders\n\
         # a signed-in user (group Readers): 200, the app sees X-User-Sub and X-User-Groups\n\
         curl -s -H 'Authorization: Bearer {user}' http://{p}/orders\n\
         # the same user on the Admins-only route: 403\n\
         curl -si -H 'Authorization: Bearer {user}' http://{p}/admin/panel\n\
         # an admin (group Admins): 200\n\
         curl -s -H 'Authorization: Bearer {admin}' http://{p}/admin/panel\n\
         # a forged identity header is stripped before the app sees it\n\
         curl -s -H 'Authorization: Bearer {user}' -H 'X-User-Groups: Admins' http://{p}/orders\n\
         # metrics and readiness live on the admin port only\n\
         curl -s http://{a}/readyz\n\n\
         Or sign in with the browser (alice is an admin, bob a reader):\n\
         open {browser} in a browser\n\n\
         Press Ctrl-C to stop.\n",
        user = d.user_token,
        admin = d.admin_token,
        browser = d.browser_url,
    )
}
