//! The real binary's access log with the buffered fast path (`portcullis::telemetry::logbuf`): every request
//! served before SIGTERM has its line on stderr by the time the process has exited — none lost
//! in a core's buffer — and every line is one JSON object without a token (SECURITY OBS-01,
//! OBS-02).

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_access_line_reaches_stderr_before_exit_after_sigterm() {
    let dir = temp_dir("access-log");
    let issuer = portcullis::tools::mint::SigningKey::generate("k1").unwrap();
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, issuer.jwks().to_string()).unwrap();
    let echo = Echo::start().await;
    let iss = "http://127.0.0.1:1/pool";
    let path = dir.join("portcullis.yaml");
    std::fs::write(
        &path,
        format!(
            "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nupstream:\n  url: {}\nissuers:\n  - name: m\n    issuer: {iss}\n    jwks_file: {}\n    client_ids: [{CLIENT_ID}]\n    token_use: access\nshutdown:\n  delay: 0s\n  grace: 5s\nroutes:\n  - name: api\n    path: /api/**\n    require:\n      groups_any: [Admins]\n",
            echo.url(),
            jwks.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["--log-format", "json", "run", "--config"])
        .arg(&path)
        .env("TOKIO_WORKER_THREADS", "2")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in BufReader::new(stderr).lines() {
            let line = line.expect("stderr is UTF-8 lines");
            let _ = tx.send(line.clone());
            all.push(line);
        }
        all
    });
    let started: Value = loop {
        let line = rx.recv_timeout(WAIT).expect("the binary logs its start");
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        if v["message"] == "portcullis started" {
            break v;
        }
    };
    let proxy = started["listen"].as_str().unwrap().to_owned();
    let admin = started["admin"].as_str().unwrap().to_owned();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    eventually("ready", || async {
        client.get(format!("http://{admin}/readyz")).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;

    let claims = |groups: &[&str]| portcullis::tools::mint::access_claims(iss, CLIENT_ID, "u-1", groups, "openid");
    let admin_token = issuer.mint(&claims(&["Admins"]));
    let reader_token = issuer.mint(&claims(&["Readers"]));
    // Several connections at once (so both cores serve some), allowed and refused requests.
    let mut sent = 0;
    let mut tasks = Vec::new();
    for c in 0..8 {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let (proxy, admin_token, reader_token) = (proxy.clone(), admin_token.clone(), reader_token.clone());
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..25 {
                let token = if i % 5 == 0 { &reader_token } else { &admin_token };
                let r = client
                    .get(format!("http://{proxy}/api/c{c}/r{i}?q=\"x\""))
                    .bearer_auth(token)
                    .send()
                    .await
                    .expect("served");
                statuses.push(r.status().as_u16());
            }
            statuses
        }));
    }
    for t in tasks {
        let statuses = t.await.unwrap();
        sent += statuses.len();
        assert!(statuses.iter().all(|s| *s == 200 || *s == 403), "{statuses:?}");
    }

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let code = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(code.success(), "{code:?}");
    let lines = reader.join().unwrap();

    let mut access = 0;
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for t in [&admin_token, &reader_token] {
            assert!(!line.contains(t.as_str()), "a token was logged: {line}");
        }
        if v["target"] == "portcullis::access" {
            access += 1;
            assert!(v["path"].as_str().is_some_and(|p| p.starts_with("/api/c")), "{line}");
            assert!(v["status"] == 200 || v["status"] == 403, "{line}");
        }
    }
    assert_eq!(access, sent, "every request has exactly one access line");
    let _ = std::fs::remove_dir_all(&dir);
}
