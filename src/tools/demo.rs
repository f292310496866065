//! `portcullis demo`: a zero-setup quickstart. Starts, on loopback, a local issuer (fresh RSA
//! key, JWKS over HTTP), a tiny echo app that reports what it received, and the real proxy with
//! a built-in policy — then prints ready-to-paste `curl` lines with freshly minted tokens. The
//! policy goes through the same parser and pipeline as any config file.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

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

/// Serve `body` as JSON on every path (the demo's JWKS endpoint).
pub async fn serve_json(listener: TcpListener, doc: Arc<String>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let doc = doc.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |_req: Request<Incoming>| {
                let doc = doc.clone();
                async move {
                    let mut r = Response::new(body::full(doc.as_bytes().to_vec()));
                    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
                    Ok::<_, Infallible>(r)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

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

/// Everything the demo started.
pub struct Demo {
    pub app: crate::serve::app::App,
    pub admin_token: String,
    pub user_token: String,
}

/// Start the demo on `listen` / `admin`.
pub async fn start(listen: SocketAddr, admin: SocketAddr) -> Result<Demo, String> {
    let issuer = SigningKey::generate("demo-key-1")?;
    let jwks_listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let jwks_addr = jwks_listener.local_addr().map_err(|e| e.to_string())?;
    let iss = format!("http://{jwks_addr}/demo_pool");
    tokio::spawn(serve_json(jwks_listener, Arc::new(issuer.jwks().to_string())));
    let echo_listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let echo_addr = echo_listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(serve_echo(echo_listener));

    let yaml = DEMO_CONFIG
        .replace("@LISTEN@", &listen.to_string())
        .replace("@ADMIN@", &admin.to_string())
        .replace("@UPSTREAM@", &format!("http://{echo_addr}"))
        .replace("@ISSUER@", &iss)
        .replace("@JWKS@", &format!("{iss}/.well-known/jwks.json"));
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
    Ok(Demo { app, admin_token, user_token })
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
         Press Ctrl-C to stop.\n",
        user = d.user_token,
        admin = d.admin_token,
    )
}
