//! A small in-process OpenID provider for the sign-in tests (SPEC §8), shaped like Cognito: it
//! serves `/oauth2/authorize` (redirects straight back with a code and the state), `/oauth2/token`
//! (the `authorization_code` grant with PKCE S256 and optional HTTP Basic client authentication,
//! and the `refresh_token` grant, optionally rotating refresh tokens), `/oauth2/revoke`,
//! `/logout` and its JWKS. Tokens are RS256, minted with [`SigningKey`] and Cognito-shaped claims
//! (`token_use`, `client_id`, `cognito:groups`, `nonce`, `at_hash`, a shared `origin_jti`).
//! Refresh tokens are ~1.8 KB, like Cognito's JWE refresh tokens. It counts every call, can be
//! told to refuse refreshes (`invalid_grant`) or to be down, and can tamper with what it mints.
//! A hyper server on 127.0.0.1:0.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use portcullis::tools::mint::{self as issuer, SigningKey};
use serde_json::{Value, json};

pub const CLIENT: &str = "test-client";
pub const SECRET: &str = "provider-client-secret";

/// How the token endpoint behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenMode {
    Ok,
    /// Every grant is refused with 400 `invalid_grant`.
    InvalidGrant,
    /// The connection is closed without a response.
    Down,
    /// The request is read and never answered (for 60 s).
    Hang,
}

/// Changes applied to (id claims, access claims) before signing, or the signed tokens.
pub type Tamper = Box<dyn Fn(&mut Value, &mut Value) + Send + Sync>;

#[derive(Debug, Clone)]
pub struct User {
    pub sub: String,
    pub groups: Vec<String>,
}

struct Code {
    nonce: String,
    challenge: String,
    redirect_uri: String,
    user: User,
}

pub struct State {
    issuer: SigningKey,
    /// A second key the JWKS does not publish (bad signatures).
    stranger: SigningKey,
    pub iss: Mutex<String>,
    codes: Mutex<HashMap<String, Code>>,
    refresh: Mutex<HashMap<String, User>>,
    pub revoked: Mutex<Vec<String>>,
    pub user: Mutex<User>,
    pub mode: Mutex<TokenMode>,
    pub rotate: AtomicBool,
    pub ttl_secs: Mutex<i64>,
    pub tamper: Mutex<Option<Tamper>>,
    /// Sign with the unpublished key.
    pub bad_signature: AtomicBool,
    /// Redirect back from authorize with `error=access_denied`.
    pub authorize_error: AtomicBool,
    /// Answer refreshes after this long (so a burst really overlaps one refresh).
    pub refresh_delay: Mutex<Duration>,
    pub authorize_calls: AtomicUsize,
    pub code_calls: AtomicUsize,
    pub refresh_calls: AtomicUsize,
    pub revoke_calls: AtomicUsize,
    pub logout_calls: AtomicUsize,
    /// The query of the last authorize request, decoded.
    pub last_authorize: Mutex<HashMap<String, String>>,
    /// The `Authorization` header of the last token request.
    pub last_token_auth: Mutex<Option<String>>,
    pub last_logout_query: Mutex<String>,
    counter: AtomicUsize,
}

#[derive(Clone)]
pub struct Provider {
    pub addr: SocketAddr,
    pub state: Arc<State>,
}

impl Provider {
    pub async fn start() -> Provider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind provider");
        let addr = listener.local_addr().expect("provider addr");
        let state = Arc::new(State {
            issuer: SigningKey::generate("idp-k1").expect("RSA key"),
            stranger: SigningKey::generate("idp-k1").expect("RSA key"),
            iss: Mutex::new(format!("http://{addr}/pool")),
            codes: Mutex::default(),
            refresh: Mutex::default(),
            revoked: Mutex::default(),
            user: Mutex::new(User { sub: "alice-sub".into(), groups: vec!["Readers".into()] }),
            mode: Mutex::new(TokenMode::Ok),
            rotate: AtomicBool::new(false),
            ttl_secs: Mutex::new(3600),
            tamper: Mutex::new(None),
            bad_signature: AtomicBool::new(false),
            authorize_error: AtomicBool::new(false),
            refresh_delay: Mutex::new(Duration::ZERO),
            authorize_calls: AtomicUsize::new(0),
            code_calls: AtomicUsize::new(0),
            refresh_calls: AtomicUsize::new(0),
            revoke_calls: AtomicUsize::new(0),
            logout_calls: AtomicUsize::new(0),
            last_authorize: Mutex::default(),
            last_token_auth: Mutex::new(None),
            last_logout_query: Mutex::default(),
            counter: AtomicUsize::new(0),
        });
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let st = st.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| serve(st.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Provider { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn iss(&self) -> String {
        self.state.iss.lock().unwrap().clone()
    }

    pub fn jwks_url(&self) -> String {
        self.url("/pool/.well-known/jwks.json")
    }

    pub fn set_user(&self, sub: &str, groups: &[&str]) {
        *self.state.user.lock().unwrap() =
            User { sub: sub.into(), groups: groups.iter().map(|g| g.to_string()).collect() };
    }

    pub fn set_mode(&self, mode: TokenMode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    pub fn set_tamper(&self, f: Option<Tamper>) {
        *self.state.tamper.lock().unwrap() = f;
    }

    pub fn refreshes(&self) -> usize {
        self.state.refresh_calls.load(Ordering::SeqCst)
    }

    pub fn token_calls(&self) -> usize {
        self.state.code_calls.load(Ordering::SeqCst) + self.refreshes()
    }

    /// An access token for `sub`, signed by the provider's published key (a bearer caller).
    pub fn mint_access(&self, sub: &str, groups: &[&str]) -> String {
        self.state.issuer.mint(&issuer::access_claims(&self.iss(), CLIENT, sub, groups, "openid email profile"))
    }

    /// A JWE-compact-shaped refresh token of ~1.8 KB (Cognito's are 1,700–1,900 chars).
    fn new_refresh_token(&self) -> String {
        let n = self.state.counter.fetch_add(1, Ordering::SeqCst);
        let random: String = (0..3).map(|_| format!("{:032x}", rand::random::<u128>())).collect();
        let head = URL_SAFE_NO_PAD.encode(r#"{"cty":"JWT","enc":"A256GCM","alg":"RSA-OAEP"}"#);
        let body = format!("{n:08}{random}").repeat(14);
        format!("{head}.{}.{}.{}.{}", &body[..342], &body[..16], &body[..1380], &random[..22])
    }

    /// Id, access and refresh tokens for `user` (with `nonce` for a code grant).
    fn mint_set(&self, user: &User, nonce: Option<&str>, refresh: Option<String>) -> Value {
        let st = &self.state;
        let iss = self.iss();
        let groups: Vec<&str> = user.groups.iter().map(String::as_str).collect();
        let ttl = *st.ttl_secs.lock().unwrap();
        let origin = format!("{:032x}", rand::random::<u128>());
        let mut access = issuer::access_claims(&iss, CLIENT, &user.sub, &groups, "openid email profile");
        access["exp"] = json!(issuer::now() + ttl);
        access["origin_jti"] = json!(origin);
        let mut id = issuer::id_claims(&iss, CLIENT, &user.sub, &groups, &format!("{}@example.test", user.sub));
        id["exp"] = json!(issuer::now() + ttl);
        id["origin_jti"] = json!(origin);
        if let Some(n) = nonce {
            id["nonce"] = json!(n);
        }
        if let Some(t) = st.tamper.lock().unwrap().as_ref() {
            t(&mut id, &mut access);
        }
        let key = if st.bad_signature.load(Ordering::SeqCst) { &st.stranger } else { &st.issuer };
        let access_token = key.mint(&access);
        if id.get("at_hash").is_none() {
            id["at_hash"] = json!(portcullis::auth::verify::at_hash(access_token.as_bytes()));
        } else if id["at_hash"] == json!("wrong") {
            id["at_hash"] = json!(portcullis::auth::verify::at_hash(b"another access token"));
        }
        let id_token = key.mint(&id);
        let mut out =
            json!({"access_token": access_token, "id_token": id_token, "token_type": "Bearer", "expires_in": ttl});
        if let Some(r) = refresh {
            out["refresh_token"] = json!(r);
        }
        out
    }
}

fn form(body: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            (
                portcullis::auth::login::oauth::decode(k).unwrap_or_default(),
                portcullis::auth::login::oauth::decode(v).unwrap_or_default(),
            )
        })
        .collect()
}

fn reply(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, ctype.parse().unwrap());
    r
}

fn json_reply(status: StatusCode, v: Value) -> Response<Full<Bytes>> {
    reply(status, "application/json", v.to_string())
}

async fn serve(st: Arc<State>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let provider = Provider { addr: "127.0.0.1:0".parse().unwrap(), state: st.clone() };
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let auth = req.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let enc = portcullis::http::percent::encode;
    Ok(match path.as_str() {
        "/pool/.well-known/jwks.json" => json_reply(StatusCode::OK, st.issuer.jwks()),
        "/oauth2/authorize" => {
            st.authorize_calls.fetch_add(1, Ordering::SeqCst);
            let q = form(query.as_bytes());
            *st.last_authorize.lock().unwrap() = q.clone();
            let redirect = q.get("redirect_uri").cloned().unwrap_or_default();
            let state = q.get("state").cloned().unwrap_or_default();
            let location = if st.authorize_error.load(Ordering::SeqCst) {
                format!("{redirect}?error=access_denied&state={}", enc(&state))
            } else {
                let code = format!("code-{:032x}", rand::random::<u128>());
                st.codes.lock().unwrap().insert(
                    code.clone(),
                    Code {
                        nonce: q.get("nonce").cloned().unwrap_or_default(),
                        challenge: q.get("code_challenge").cloned().unwrap_or_default(),
                        redirect_uri: redirect.clone(),
                        user: st.user.lock().unwrap().clone(),
                    },
                );
                format!("{redirect}?code={code}&state={}", enc(&state))
            };
            let mut r = reply(StatusCode::FOUND, "text/plain", "");
            r.headers_mut().insert(http::header::LOCATION, location.parse().unwrap());
            r
        }
        "/oauth2/token" => {
            let mode = *st.mode.lock().unwrap();
            if mode == TokenMode::Down {
                return Err(std::io::Error::other("down"));
            }
            if mode == TokenMode::Hang {
                tokio::time::sleep(Duration::from_secs(60)).await;
                return Err(std::io::Error::other("hung"));
            }
            let f = form(&body);
            *st.last_token_auth.lock().unwrap() = auth.clone();
            let grant = f.get("grant_type").cloned().unwrap_or_default();
            if grant == "refresh_token" {
                st.refresh_calls.fetch_add(1, Ordering::SeqCst);
                let delay = *st.refresh_delay.lock().unwrap();
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
            } else {
                st.code_calls.fetch_add(1, Ordering::SeqCst);
            }
            let expected = format!("Basic {}", STANDARD.encode(format!("{CLIENT}:{SECRET}")));
            if auth.as_deref() != Some(expected.as_str()) {
                return Ok(json_reply(StatusCode::UNAUTHORIZED, json!({"error": "invalid_client"})));
            }
            if mode == TokenMode::InvalidGrant {
                return Ok(json_reply(StatusCode::BAD_REQUEST, json!({"error": "invalid_grant"})));
            }
            let invalid = || json_reply(StatusCode::BAD_REQUEST, json!({"error": "invalid_grant"}));
            match grant.as_str() {
                "authorization_code" => {
                    let Some(code) = f.get("code").and_then(|c| st.codes.lock().unwrap().remove(c)) else {
                        return Ok(invalid());
                    };
                    // PKCE S256 (RFC 7636 §4.6): the verifier must hash to the challenge.
                    let verifier = f.get("code_verifier").cloned().unwrap_or_default();
                    let hashed = URL_SAFE_NO_PAD
                        .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()));
                    if hashed != code.challenge || f.get("redirect_uri") != Some(&code.redirect_uri) {
                        return Ok(invalid());
                    }
                    let refresh = provider.new_refresh_token();
                    st.refresh.lock().unwrap().insert(refresh.clone(), code.user.clone());
                    json_reply(StatusCode::OK, provider.mint_set(&code.user, Some(&code.nonce), Some(refresh)))
                }
                "refresh_token" => {
                    let token = f.get("refresh_token").cloned().unwrap_or_default();
                    let user = st.refresh.lock().unwrap().get(&token).cloned();
                    let Some(user) = user else { return Ok(invalid()) };
                    let rotated = st.rotate.load(Ordering::SeqCst).then(|| {
                        let new = provider.new_refresh_token();
                        let mut map = st.refresh.lock().unwrap();
                        map.remove(&token);
                        map.insert(new.clone(), user.clone());
                        new
                    });
                    json_reply(StatusCode::OK, provider.mint_set(&user, None, rotated))
                }
                _ => json_reply(StatusCode::BAD_REQUEST, json!({"error": "unsupported_grant_type"})),
            }
        }
        "/oauth2/revoke" => {
            st.revoke_calls.fetch_add(1, Ordering::SeqCst);
            let token = form(&body).get("token").cloned().unwrap_or_default();
            st.refresh.lock().unwrap().remove(&token);
            st.revoked.lock().unwrap().push(token);
            reply(StatusCode::OK, "text/plain", "")
        }
        "/logout" => {
            st.logout_calls.fetch_add(1, Ordering::SeqCst);
            *st.last_logout_query.lock().unwrap() = query;
            reply(StatusCode::OK, "text/html", "<p>signed out</p>")
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found"),
    })
}
