//! Browser sign-in (SPEC §8) end to end on real loopback sockets: a real [`portcullis::App`], the
//! recording echo app, and a small in-process OpenID provider shaped like Cognito
//! (tests/support/oidc.rs). A test "browser" follows redirects by hand and keeps cookies in a jar,
//! so every `Location` and `Set-Cookie` is checked. Two `App`s on the same secrets stand for two
//! replicas. SECURITY LOGIN-01..10 are pinned here (and in tests/login_logs.rs for LOGIN-06's
//! logs).

#[path = "support/oidc.rs"]
mod oidc;
#[path = "support/signin.rs"]
mod signin;
mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use oidc::{Provider, TokenMode};
use portcullis::App;
use serde_json::{Value, json};
use signin::*;
use support::Echo;

#[tokio::test]
async fn a_navigation_is_sent_to_authorize_with_pkce_state_and_nonce() {
    // SECURITY LOGIN-02, LOGIN-09: a navigation with no credential gets a 302 to the authorize
    // endpoint carrying PKCE S256, state and nonce; the verifier lives only in the sealed cookie.
    let rig = Rig::start().await;
    let r = rig.nav("/reports/q3?year=2026", &Jar::default()).await;
    assert_eq!(r.status(), 302);
    let loc = location(&r);
    assert!(loc.starts_with(&rig.provider.url("/oauth2/authorize?")), "{loc}");
    let q = query(&loc);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], oidc::CLIENT);
    assert_eq!(q["redirect_uri"], format!("{PUBLIC}/.portcullis/callback"));
    assert_eq!(q["scope"], "openid email profile");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43);
    assert!(q["state"].len() >= 22 && q["nonce"].len() >= 22 && q["state"] != q["nonce"]);
    let cookies = set_cookies(&r);
    let login = cookies.iter().find(|c| c.starts_with(&format!("{LOGIN_COOKIE}="))).expect("login cookie");
    for attr in ["Path=/", "Max-Age=600", "Secure", "HttpOnly", "SameSite=Lax"] {
        assert!(login.contains(attr), "{login}");
    }
    assert!(!login.contains("Domain") && !login.contains(&q["state"]) && !login.contains(&q["nonce"]));
    assert_eq!(rig.echo.count(), 0);
    // Another navigation starts a second pending sign-in with fresh values; a fourth drops the
    // oldest, so the cookie stays one cookie of bounded size.
    let mut jar = Jar::default();
    jar.update(&r);
    let mut sizes = Vec::new();
    for _ in 0..5 {
        let again = rig.nav("/", &jar).await;
        assert_ne!(query(&location(&again))["state"], q["state"]);
        jar.update(&again);
        sizes.push(jar.0[LOGIN_COOKIE].len());
    }
    assert_eq!(sizes[2], sizes[4], "at most 3 pending sign-ins: {sizes:?}");
}

#[tokio::test]
async fn only_navigations_are_redirected_everything_else_gets_the_401() {
    // SECURITY LOGIN-09: fetch(), API calls, POSTs, `login: false` routes and `auth: optional`
    // routes never get a redirect.
    let rig = Rig::start().await;
    let none = Jar::default();
    let r = rig.fetch("/page", &none).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"portcullis\"");
    let r = rig.http.get(rig.url("/page")).header("accept", "application/json").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = rig.http.get(rig.url("/page")).send().await.unwrap();
    assert_eq!(r.status(), 401, "curl with */* is not a navigation");
    let r = rig
        .http
        .post(rig.url("/page"))
        .header("sec-fetch-mode", "navigate")
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a POST is never redirected");
    let r = rig.nav("/api/things", &none).await;
    assert_eq!(r.status(), 401, "login: false");
    let r = rig.nav("/maybe/x", &none).await;
    assert_eq!(r.status(), 200, "auth: optional lets anonymous pass");
    let r = rig.http.get(rig.url("/page")).header("accept", "text/html,application/xhtml+xml").send().await.unwrap();
    assert_eq!(r.status(), 302, "Accept: text/html without Sec-Fetch-Mode is a navigation");
    assert_eq!(rig.provider.state.authorize_calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn signing_in_lands_on_the_saved_path_and_forwards_identity_like_a_pair() {
    // SECURITY LOGIN-02, LOGIN-05, LOGIN-06.
    let rig = Rig::start().await;
    rig.provider.set_user("alice-sub", &["Readers", "Staff"]);
    let mut jar = Jar::default();
    let done = rig.sign_in("/reports/q3?year=2026", &mut jar).await;
    assert_eq!(done.status(), 303);
    assert_eq!(location(&done), format!("{PUBLIC}/reports/q3?year=2026"));
    // PKCE and client authentication reached the provider (it checks the verifier).
    let basic = rig.provider.state.last_token_auth.lock().unwrap().clone().unwrap();
    assert!(basic.starts_with("Basic "), "{basic}");
    // The session cookie: one `__Host-` cookie, HttpOnly, Secure, SameSite=Lax, Path=/, no Domain,
    // at most 3,500 bytes with a Cognito-sized refresh token; the login cookie is cleared.
    let cookies = set_cookies(&done);
    let session = cookies.iter().find(|c| c.starts_with(&format!("{COOKIE}="))).unwrap();
    for attr in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax", "Max-Age=43200"] {
        assert!(session.contains(attr), "{session}");
    }
    assert!(!session.contains("Domain"));
    assert!(session.len() <= 3500, "{} bytes", session.len());
    println!(
        "measured Set-Cookie for the session: {} bytes (cookie value {} bytes)",
        session.len(),
        jar.session().len()
    );
    assert!(cleared(&done, LOGIN_COOKIE));
    assert_eq!(rig.metric("portcullis_logins_total", &[("result", "ok")]), 1.0);

    let r = rig.nav("/reports/q3?year=2026", &jar).await;
    assert_eq!(r.status(), 200);
    let seen = rig.echo.last();
    assert_eq!(seen.one("x-user-sub"), Some("alice-sub"));
    assert_eq!(seen.one("x-user-groups"), Some("Readers,Staff"));
    assert_eq!(seen.one("x-user-email"), Some("alice-sub@example.test"), "claim headers from the id token");
    // The app's own cookies pass; the session and login cookies never do.
    assert_eq!(seen.one("cookie"), Some("theme=dark"));
    assert!(seen.one("authorization").is_none());
    // A fetch() from the page is authenticated by the session too; the admin page is a 403.
    assert_eq!(rig.fetch("/data.json", &jar).await.status(), 200);
    assert_eq!(rig.nav("/admin/users", &jar).await.status(), 403);
    assert_eq!(rig.provider.refreshes(), 0, "fresh tokens are kept in memory");
}

#[tokio::test]
async fn a_callback_without_its_pending_sign_in_is_400_and_nothing_is_exchanged() {
    // SECURITY LOGIN-01: missing, altered, another browser's, or already used state.
    let rig = Rig::start().await;
    let mut victim = Jar::default();
    let start = rig.nav("/", &victim).await;
    victim.update(&start);
    let at_provider = rig.http.get(location(&start)).send().await.unwrap();
    let callback = location(&at_provider);
    let path = callback.strip_prefix(PUBLIC).unwrap().to_owned();
    let state = query(&callback)["state"].clone();
    let code = query(&callback)["code"].clone();

    let mut attacker = Jar::default();
    attacker.update(&rig.nav("/", &Jar::default()).await);
    let cases = [
        ("missing state", format!("/.portcullis/callback?code={code}"), victim.clone()),
        ("altered state", format!("/.portcullis/callback?code={code}&state={state}x"), victim.clone()),
        ("another browser's login cookie", path.clone(), attacker),
        ("no login cookie", path.clone(), Jar::default()),
        ("two states", format!("{path}&state={state}"), victim.clone()),
    ];
    for (what, target, jar) in cases {
        let r = rig.http.get(rig.url(&target)).header("cookie", jar.header()).send().await.unwrap();
        assert_eq!(r.status(), 400, "{what}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "login_failed", "{what}");
    }
    assert_eq!(rig.provider.token_calls(), 0, "the token endpoint was never called");
    assert_eq!(rig.metric("portcullis_logins_total", &[("result", "state_mismatch")]), 5.0);
    assert_eq!(rig.metric("portcullis_requests_total", &[("reason", "login_failed"), ("route", ".portcullis")]), 5.0);

    // The genuine callback works once; replaying it (with the cookie as it was) is a 400.
    let ok = rig.http.get(rig.url(&path)).header("cookie", victim.header()).send().await.unwrap();
    assert_eq!(ok.status(), 303);
    let mut after = victim.clone();
    after.update(&ok);
    let replay = rig.http.get(rig.url(&path)).header("cookie", after.header()).send().await.unwrap();
    assert_eq!(replay.status(), 400);
    assert!(set_cookies(&replay).iter().all(|c| !c.starts_with(&format!("{COOKIE}=")) || c.contains("Max-Age=0")));
    assert_eq!(rig.provider.token_calls(), 1);
}

#[tokio::test]
async fn a_provider_error_is_401_login_failed() {
    let rig = Rig::start().await;
    rig.provider.state.authorize_error.store(true, Ordering::SeqCst);
    let mut jar = Jar::default();
    let r = rig.sign_in("/", &mut jar).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "login_failed");
    assert!(jar.session().is_empty());
    assert_eq!(rig.provider.token_calls(), 0);
    assert_eq!(rig.metric("portcullis_logins_total", &[("result", "idp_error")]), 1.0);
}

#[tokio::test]
async fn substituted_or_invalid_tokens_at_the_callback_make_no_session() {
    // SECURITY LOGIN-03: wrong or missing nonce, wrong aud, another client's access token, sub
    // mismatch, at_hash mismatch, bad signature, expired, wrong iss.
    let rig = Rig::start().await;
    type T = Box<dyn Fn(&mut Value, &mut Value) + Send + Sync>;
    let cases: Vec<(&str, Option<T>, bool)> = vec![
        ("wrong nonce", Some(Box::new(|id, _| id["nonce"] = json!("another-sign-in"))), false),
        ("missing nonce", Some(Box::new(|id, _| drop(id.as_object_mut().unwrap().remove("nonce")))), false),
        ("wrong aud", Some(Box::new(|id, _| id["aud"] = json!("other-client"))), false),
        ("another client's access token", Some(Box::new(|_, a| a["client_id"] = json!("other-client"))), false),
        ("sub mismatch", Some(Box::new(|id, _| id["sub"] = json!("mallory"))), false),
        ("at_hash mismatch", Some(Box::new(|id, _| id["at_hash"] = json!("wrong"))), false),
        ("expired", Some(Box::new(|id, _| id["exp"] = json!(portcullis::tools::mint::now() - 3600))), false),
        (
            "wrong iss",
            Some(Box::new(|id, a| {
                id["iss"] = json!("https://evil.example/pool");
                a["iss"] = json!("https://evil.example/pool");
            })),
            false,
        ),
        ("bad signature", None, true),
    ];
    for (what, tamper, bad_signature) in cases {
        rig.provider.set_tamper(tamper);
        rig.provider.state.bad_signature.store(bad_signature, Ordering::SeqCst);
        let mut jar = Jar::default();
        let r = rig.sign_in("/", &mut jar).await;
        assert_eq!(r.status(), 401, "{what}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "login_failed", "{what}");
        assert!(jar.session().is_empty(), "{what}: no session");
    }
    assert_eq!(rig.metric("portcullis_logins_total", &[("result", "token_invalid")]), 9.0);
    rig.provider.set_tamper(None);
    rig.provider.state.bad_signature.store(false, Ordering::SeqCst);
    signed_in(&rig).await;
}

#[tokio::test]
async fn return_paths_never_leave_the_public_origin() {
    // SECURITY LOGIN-04: open-redirect attempts through `rd` land on `/` of public_url.
    let rig = Rig::start().await;
    for (rd, want) in [
        ("%2Freports%3Fq%3D1", "/reports?q=1"),
        ("%2F%2Fevil.example", "/"),
        ("%2F%5Cevil.example", "/"),
        ("https%3A%2F%2Fevil.example", "/"),
        ("%2F%252F%252Fevil.example", "/%2F%2Fevil.example"),
        ("%2F%09%2Fevil.example", "/"),
        ("%2F%0A%2Fevil.example", "/"),
        ("%5C%5Cevil.example", "/"),
        ("%20%2F%2Fevil.example", "/"),
        ("javascript%3Aalert(1)", "/"),
        ("", "/"),
    ] {
        let mut jar = Jar::default();
        let start = rig.http.get(rig.url(&format!("/.portcullis/login?rd={rd}"))).send().await.unwrap();
        assert_eq!(start.status(), 302, "{rd}");
        jar.update(&start);
        let done = rig.complete(&location(&start), &mut jar).await;
        assert_eq!(done.status(), 303, "{rd}");
        assert_eq!(location(&done), format!("{PUBLIC}{want}"), "rd={rd}");
    }
    assert_eq!(rig.echo.count(), 0);
}

#[tokio::test]
async fn tampered_truncated_expired_and_foreign_cookies_are_no_credential_and_cleared() {
    // SECURITY LOGIN-05.
    let rig = Rig::start().await;
    let jar = signed_in(&rig).await;
    let good = jar.session().to_owned();
    let mut flipped = good.clone().into_bytes();
    flipped[40] = if flipped[40] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    // A change in the middle keeps the length and the first and last 64 bytes (the memo of
    // opened cookies buckets by those), so it must be refused by the full comparison.
    let mut middle = good.clone().into_bytes();
    let m = middle.len() / 2;
    middle[m] = if middle[m] == b'A' { b'B' } else { b'A' };
    let middle = String::from_utf8(middle).unwrap();
    // The genuine cookie is served first, so each bad value is tried against a warm memo.
    assert_eq!(rig.nav("/page", &jar).await.status(), 200);
    let served = rig.echo.count();
    // An expired session sealed with the right secret, and a valid one sealed with another.
    let runtime = rig.login();
    let login = runtime.login.as_ref().unwrap();
    let (expired, _) = login.open_session(&headers_with(&good)).unwrap();
    let mut expired = portcullis::auth::login::sessions::SessionCookie::clone(&expired);
    expired.expires = portcullis::tools::mint::now() as u64 - 1;
    let expired = cookie_value(&login.seal_session(&expired).unwrap());
    let foreign_rig = Rig::replica(&rig.provider, &[S3]).await;
    let foreign_runtime = foreign_rig.login();
    let (live, _) = login.open_session(&headers_with(&good)).unwrap();
    let foreign = cookie_value(&foreign_runtime.login.as_ref().unwrap().seal_session(&live).unwrap());
    for (what, value) in [
        ("tampered", flipped),
        ("tampered in the middle", middle),
        ("truncated", good[..good.len() - 10].to_owned()),
        ("extended", format!("{good}AAAA")),
        ("expired", expired),
        ("foreign secret", foreign),
        ("garbage", "not-a-cookie".to_owned()),
    ] {
        let bad = jar.with_session(&value);
        let r = rig.nav("/page", &bad).await;
        assert_eq!(r.status(), 302, "{what}: a navigation is sent to sign in");
        assert!(cleared(&r, COOKIE), "{what}: the cookie is cleared");
        let r = rig.fetch("/page", &bad).await;
        assert_eq!(r.status(), 401, "{what}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"portcullis\"", "{what}: no credential");
    }
    assert_eq!(rig.echo.count(), served, "no bad cookie reached the app");
    assert_eq!(rig.nav("/page", &jar).await.status(), 200, "the genuine cookie still works");
}

#[tokio::test]
async fn any_replica_with_the_same_secrets_serves_the_session() {
    let a = Rig::start().await;
    let jar = signed_in(&a).await;
    let b = Rig::replica(&a.provider, &[S1]).await;
    let r = b.nav("/page", &jar).await;
    assert_eq!(r.status(), 200);
    assert_eq!(b.echo.last().one("x-user-sub"), Some("alice-sub"));
    assert_eq!(a.provider.refreshes(), 1, "the second replica refreshed once to get tokens");
    assert_eq!(b.metric("portcullis_session_refresh_total", &[("result", "ok")]), 1.0);
    assert_eq!(b.nav("/page", &jar).await.status(), 200);
    assert_eq!(a.provider.refreshes(), 1, "then serves from memory");
}

#[tokio::test]
async fn rotating_secrets_keeps_sessions_and_rewrites_the_cookie() {
    let a = Rig::start().await;
    let mut jar = signed_in(&a).await;
    // The next config puts a new secret first: old cookies still open, and come back re-sealed.
    let b = Rig::replica(&a.provider, &[S2, S1]).await;
    let r = b.nav("/page", &jar).await;
    assert_eq!(r.status(), 200);
    assert!(set_cookies(&r).iter().any(|c| c.starts_with(&format!("{COOKIE}=")) && !c.contains("Max-Age=0")));
    jar.update(&r);
    // Once the old secret is retired, the re-sealed cookie still works.
    let c = Rig::replica(&a.provider, &[S2]).await;
    assert_eq!(c.nav("/page", &jar).await.status(), 200);
    // And the old process, which never knew the new secret, cannot open it.
    assert_eq!(a.fetch("/page", &jar).await.status(), 401);
}

impl Rig {
    /// A rig whose config lives in a file with the session `secrets`, so a test can reload it.
    async fn from_file(name: &str, secrets: &[&str]) -> (Rig, std::path::PathBuf) {
        let provider = Provider::start().await;
        let echo = Echo::start().await;
        let path = support::temp_dir(name).join("portcullis.yaml");
        std::fs::write(&path, yaml(&provider, &echo, secrets)).unwrap();
        let config = portcullis::config::load(&path, &|_| None).unwrap();
        let app = App::start(config).await.unwrap();
        let http = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        (Rig { app, provider, echo, http }, path)
    }

    /// Rewrite the config file with `secrets` and apply it as a SIGHUP would.
    async fn reload(&self, path: &std::path::Path, secrets: &[&str]) {
        std::fs::write(path, yaml(&self.provider, &self.echo, secrets)).unwrap();
        let reloader = portcullis::serve::reload::Reloader::new(&self.app, path, Box::new(|_| None));
        reloader.reload(portcullis::serve::reload::Trigger::Signal).await.expect("reload applies");
    }
}

#[tokio::test]
async fn a_hot_reload_that_rotates_secrets_signs_nobody_out() {
    let (rig, path) = Rig::from_file("login-reload", &[S1]).await;
    let provider = rig.provider.clone();
    let mut jar = signed_in(&rig).await;
    rig.reload(&path, &[S2, S1]).await;
    let r = rig.nav("/page", &jar).await;
    assert_eq!(r.status(), 200);
    assert_eq!(provider.refreshes(), 0, "the session's tokens survived the reload");
    jar.update(&r);
    assert_eq!(rig.nav("/page", &jar).await.status(), 200);
}

#[tokio::test]
async fn a_hot_reload_that_retires_a_secret_refuses_cookies_it_sealed_even_after_serving_them() {
    // The memo of opened cookies belongs to one snapshot: a cookie served (and remembered) under
    // S1 must not outlive S1's removal (SECURITY LOGIN-05).
    let (rig, path) = Rig::from_file("login-retire", &[S1]).await;
    let jar = signed_in(&rig).await;
    assert_eq!(rig.nav("/page", &jar).await.status(), 200);
    assert_eq!(rig.nav("/page", &jar).await.status(), 200, "served again, from the memo");
    let served = rig.echo.count();
    rig.reload(&path, &[S2]).await;
    let r = rig.fetch("/page", &jar).await;
    assert_eq!(r.status(), 401, "sealed under a retired secret");
    assert!(cleared(&r, COOKIE));
    assert_eq!(rig.echo.count(), served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_on_a_replica_refreshes_once_and_writes_the_rotated_token_back() {
    // SECURITY LOGIN-07: twenty tabs at once on a replica holding no tokens for the session.
    let a = Rig::start().await;
    let jar = signed_in(&a).await;
    a.provider.state.rotate.store(true, Ordering::SeqCst);
    *a.provider.state.refresh_delay.lock().unwrap() = Duration::from_millis(300);
    let b = Rig::replica(&a.provider, &[S1]).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (http, url, cookie) = (b.http.clone(), b.url(&format!("/tab/{i}")), jar.header());
        tasks.push(tokio::spawn(async move {
            http.get(url).header("sec-fetch-mode", "navigate").header("cookie", cookie).send().await.unwrap()
        }));
    }
    let mut rewritten = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status(), 200);
        if let Some(c) = set_cookies(&r).into_iter().find(|c| c.starts_with(&format!("{COOKIE}="))) {
            rewritten.push(c);
        }
    }
    assert_eq!(a.provider.refreshes(), 1, "exactly one refresh for the whole burst");
    assert_eq!(rewritten.len(), 20, "every response carries the cookie with the rotated refresh token");
    // The old refresh token is dead at the provider (rotated); the written-back one works on a
    // third replica, which must refresh with it.
    let mut updated = jar.clone();
    updated.0.insert(COOKIE.into(), rewritten[0].split(';').next().unwrap().split_once('=').unwrap().1.to_owned());
    let c = Rig::replica(&a.provider, &[S1]).await;
    assert_eq!(c.nav("/page", &updated).await.status(), 200);
    assert_eq!(a.provider.refreshes(), 2);
    let d = Rig::replica(&a.provider, &[S1]).await;
    assert_eq!(d.fetch("/page", &jar).await.status(), 401, "the pre-rotation cookie is refused at the provider");
}

#[tokio::test]
async fn a_refused_refresh_ends_the_session() {
    let a = Rig::start().await;
    let jar = signed_in(&a).await;
    a.provider.set_mode(TokenMode::InvalidGrant);
    let b = Rig::replica(&a.provider, &[S1]).await;
    let r = b.fetch("/page", &jar).await;
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("error=\"invalid_token\""));
    assert!(cleared(&r, COOKIE));
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error_description"], "the session has expired; sign in again");
    assert_eq!(b.metric("portcullis_requests_total", &[("reason", "session_expired")]), 1.0);
    assert_eq!(b.metric("portcullis_session_refresh_total", &[("result", "rejected")]), 1.0);
    // The ended session is not retried at the provider; a navigation is sent to sign in again.
    let r = b.nav("/page", &jar).await;
    assert_eq!(r.status(), 302);
    assert!(location(&r).starts_with(&a.provider.url("/oauth2/authorize?")));
    assert!(cleared(&r, COOKIE));
    assert_eq!(a.provider.refreshes(), 1);
}

#[tokio::test]
async fn a_provider_that_is_down_gives_503_and_keeps_the_session() {
    // SECURITY LOGIN-10.
    let a = Rig::start().await;
    let jar = signed_in(&a).await;
    a.provider.set_mode(TokenMode::Down);
    let b = Rig::replica(&a.provider, &[S1]).await;
    for r in [b.nav("/page", &jar).await, b.fetch("/page", &jar).await] {
        assert_eq!(r.status(), 503);
        assert!(r.headers().contains_key("retry-after"));
        assert!(set_cookies(&r).is_empty(), "the session is kept");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error_description"],
            "the identity provider is temporarily unavailable"
        );
    }
    assert_eq!(b.metric("portcullis_requests_total", &[("reason", "idp_unavailable"), ("decision", "error")]), 2.0);
    assert_eq!(b.metric("portcullis_session_refresh_total", &[("result", "error")]), 2.0);
    a.provider.set_mode(TokenMode::Ok);
    assert_eq!(b.nav("/page", &jar).await.status(), 200, "works again once the provider is back");
    // A callback whose token endpoint is down is a 503 too.
    a.provider.set_mode(TokenMode::Down);
    let mut fresh = Jar::default();
    let r = a.sign_in("/", &mut fresh).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn a_provider_that_hangs_gives_a_bounded_503_and_keeps_the_session() {
    // SECURITY LOGIN-10: a slow token endpoint costs at most the call timeout, never a hang.
    let a = Rig::start().await;
    let jar = signed_in(&a).await;
    a.provider.set_mode(TokenMode::Hang);
    let b = Rig::replica(&a.provider, &[S1]).await;
    let r = b.fetch("/page", &jar).await;
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert!(set_cookies(&r).is_empty(), "the session is kept");
    a.provider.set_mode(TokenMode::Ok);
    assert_eq!(b.fetch("/page", &jar).await.status(), 200);
}

#[tokio::test]
async fn a_bearer_token_wins_over_the_session() {
    let rig = Rig::start().await;
    let jar = signed_in(&rig).await;
    let refreshes = rig.provider.refreshes();
    let bob = rig.provider.mint_access("bob-sub", &["Admins"]);
    let r = rig.http.get(rig.url("/admin/x")).bearer_auth(&bob).header("cookie", jar.header()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let seen = rig.echo.last();
    assert_eq!(seen.one("x-user-sub"), Some("bob-sub"));
    assert_eq!(seen.one("cookie"), Some("theme=dark"), "the session cookie is still cut");
    // An invalid bearer token is judged alone, not rescued by the session.
    let r = rig
        .http
        .get(rig.url("/page"))
        .bearer_auth("eyJhbGciOiJub25lIn0.e30.x")
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(rig.provider.refreshes(), refreshes);
}

#[tokio::test]
async fn sign_out_revokes_clears_and_goes_to_the_cognito_logout_endpoint() {
    // SECURITY LOGIN-08.
    let rig = Rig::start().await;
    let jar = signed_in(&rig).await;
    // A cross-site GET (an <img> on another site), or one without Sec-Fetch-Site, does nothing.
    for site in [Some("cross-site"), Some("same-site"), None] {
        let mut req = rig.http.get(rig.url("/.portcullis/logout")).header("cookie", jar.header());
        if let Some(s) = site {
            req = req.header("sec-fetch-site", s);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 403, "{site:?}");
        assert!(set_cookies(&r).is_empty(), "{site:?}");
    }
    assert_eq!(rig.provider.state.revoke_calls.load(Ordering::SeqCst), 0);
    assert_eq!(rig.nav("/page", &jar).await.status(), 200, "still signed in");

    let r = rig.http.post(rig.url("/.portcullis/logout")).header("cookie", jar.header()).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let loc = location(&r);
    assert!(loc.starts_with(&rig.provider.url("/logout?")), "{loc}");
    let q = query(&loc);
    assert_eq!(q["client_id"], oidc::CLIENT);
    assert_eq!(q["logout_uri"], format!("{PUBLIC}/bye"));
    assert!(cleared(&r, COOKIE) && cleared(&r, LOGIN_COOKIE));
    assert_eq!(rig.provider.state.revoke_calls.load(Ordering::SeqCst), 1);
    let revoked = rig.provider.state.revoked.lock().unwrap().clone();
    let (session, _) = rig.login().login.as_ref().unwrap().open_session(&headers_with(jar.session())).unwrap();
    assert_eq!(revoked, vec![session.refresh_token.clone()]);
    // The old cookie no longer works here (tokens dropped) nor at another replica (revoked).
    assert_eq!(rig.fetch("/page", &jar).await.status(), 401);
    let other = Rig::replica(&rig.provider, &[S1]).await;
    assert_eq!(other.fetch("/page", &jar).await.status(), 401);
    assert_eq!(rig.nav("/page", &jar).await.status(), 302, "the next navigation asks for sign-in");

    // A same-origin GET (a sign-out link) signs out as well.
    let jar = signed_in(&rig).await;
    let r = rig
        .http
        .get(rig.url("/.portcullis/logout"))
        .header("sec-fetch-site", "same-origin")
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(rig.provider.state.revoke_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn nothing_under_the_reserved_prefix_is_ever_forwarded() {
    let rig = Rig::start().await;
    let jar = signed_in(&rig).await;
    let bearer = rig.provider.mint_access("bob-sub", &["Admins"]);
    rig.echo.clear();
    for path in [
        "/.portcullis",
        "/.portcullis/",
        "/.portcullis/anything",
        "/.PORTCULLIS/callback",
        "/.Portcullis/logout/x",
        "/x/../.portcullis/admin",
        "/.portcullis/callback/../../.portcullis/x",
    ] {
        for auth in [None, Some(bearer.as_str())] {
            let mut req =
                rig.http.get(rig.url(path)).header("cookie", jar.header()).header("sec-fetch-mode", "navigate");
            if let Some(t) = auth {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.unwrap();
            assert_ne!(r.status(), 200, "{path}");
        }
    }
    let r = rig.http.put(rig.url("/.portcullis/callback")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    // The reserved paths get every proxied request's head refusals too (SPEC §2): TRACE is 405,
    // a target over limits.max_uri_bytes is 414, a client identity header never survives.
    let r = rig.http.request(reqwest::Method::TRACE, rig.url("/.portcullis/login")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let long = format!("/.portcullis/login?rd=/{}", "a".repeat(20_000));
    let r = rig.http.get(rig.url(&long)).send().await.unwrap();
    assert_eq!(r.status(), 414);
    assert_eq!(rig.echo.count(), 0, "the app saw nothing");
}
