//! SECURITY LOGIN-06: no code, token, refresh token or cookie value reaches a log line, at any
//! level, through sign-in, refresh (with rotation), a failed callback and sign-out. One test per
//! binary, because it installs the process-wide subscriber (every crate's events at TRACE, as the
//! binary's JSON lines, captured in memory) — as tests/logs.rs does for bearer tokens.

#[path = "support/oidc.rs"]
mod oidc;
#[path = "support/signin.rs"]
mod signin;
mod support;

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use signin::*;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_refresh_and_sign_out_log_no_code_token_or_cookie_at_trace() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .try_init()
        .expect("the only subscriber in this test binary");

    let a = Rig::start().await;
    let mut secrets: Vec<(&str, String)> = Vec::new();
    // A sign-in, recording the code and state the browser carried.
    let mut jar = Jar::default();
    let start = a.nav("/reports", &jar).await;
    jar.update(&start);
    let at_provider = a.http.get(location(&start)).send().await.unwrap();
    let callback = location(&at_provider);
    let q = query(&callback);
    secrets.push(("code", q["code"].clone()));
    secrets.push(("login cookie", jar.0[LOGIN_COOKIE].clone()));
    let done =
        a.http.get(a.url(callback.strip_prefix(PUBLIC).unwrap())).header("cookie", jar.header()).send().await.unwrap();
    assert_eq!(done.status(), 303);
    jar.update(&done);
    secrets.push(("session cookie", jar.session().to_owned()));
    let runtime = a.login();
    let (session, _) = runtime.login.as_ref().unwrap().open_session(&headers_with(jar.session())).unwrap();
    secrets.push(("refresh token", session.refresh_token.clone()));
    assert_eq!(a.nav("/reports", &jar).await.status(), 200);

    // A refresh with rotation on a replica, the written-back cookie, then sign-out there.
    a.provider.state.rotate.store(true, Ordering::SeqCst);
    let b = Rig::replica(&a.provider, &[S1]).await;
    let r = b.nav("/reports", &jar).await;
    assert_eq!(r.status(), 200);
    jar.update(&r);
    secrets.push(("rotated session cookie", jar.session().to_owned()));
    let runtime_b = b.login();
    let (rotated, _) = runtime_b.login.as_ref().unwrap().open_session(&headers_with(jar.session())).unwrap();
    assert_ne!(rotated.refresh_token, session.refresh_token);
    secrets.push(("rotated refresh token", rotated.refresh_token.clone()));
    // A replayed callback, a refused one, and sign-out.
    let _ =
        a.http.get(a.url(callback.strip_prefix(PUBLIC).unwrap())).header("cookie", jar.header()).send().await.unwrap();
    let r = b.http.post(b.url("/.portcullis/logout")).header("cookie", jar.header()).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(a.provider.state.revoke_calls.load(Ordering::SeqCst), 1);
    // And a refused refresh on a third replica.
    let c = Rig::replica(&a.provider, &[S1]).await;
    assert_eq!(c.fetch("/reports", &jar).await.status(), 401);

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).expect("utf-8 logs");
    assert!(logs.lines().count() > 50, "expected trace output");
    assert!(logs.contains("signed in"), "the sign-in is logged");
    for (what, secret) in &secrets {
        assert!(secret.len() >= 16, "{what}");
        if let Some(line) = logs.lines().find(|l| l.contains(secret.as_str())) {
            panic!("a {what} was logged:\n{line}");
        }
        // Not even a long piece of it (a token cut for length).
        let piece = &secret[secret.len() / 2..secret.len() / 2 + 12];
        if let Some(line) = logs.lines().find(|l| l.contains(piece)) {
            panic!("part of a {what} was logged:\n{line}");
        }
    }
    // No access or id token either: nothing JWT-shaped (`eyJ` + 10 base64url characters + `.`).
    let b = logs.as_bytes();
    let mut i = 0;
    while let Some(at) = logs[i..].find("eyJ") {
        let start = i + at;
        let mut j = start + 3;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'-' || b[j] == b'_') {
            j += 1;
        }
        assert!(j - start - 3 < 10 || j >= b.len() || b[j] != b'.', "a JWT-shaped value was logged near {start}");
        i = start + 3;
    }
}
