//! The operator verbs through the real binary: `check` exit codes, lints and JSON; `explain`
//! with a real token verified against a JWKS; `test` on the shipped example cases and on failing
//! cases; `schema` matching the committed file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use portcullis::tools::mint::{self, SigningKey};
use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portcullis-verbs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A config whose only issuer trusts `jwks_file` (so `explain --token` verifies offline).
fn local_config(dir: &Path, issuer: &SigningKey, routes: &str) -> PathBuf {
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, issuer.jwks().to_string()).unwrap();
    let path = dir.join("portcullis.yaml");
    std::fs::write(
        &path,
        format!(
            "listen: 127.0.0.1:8080\nupstream:\n  url: http://127.0.0.1:8000\nissuers:\n  - name: main\n    issuer: https://idp.example/pool\n    jwks_file: {}\n    client_ids: [app]\n    token_use: access\nroutes:\n{routes}",
            jwks.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn check_exit_codes_and_json_lints() {
    let ok = bin().args(["check", "--config"]).arg(root().join("config.example.yaml")).output().unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    assert!(stdout(&ok).contains("ok: 1 issuer(s), 6 route(s), 0 warning(s)"), "{}", stdout(&ok));

    let dir = temp_dir("check");
    let issuer = SigningKey::generate("k").unwrap();
    let warned = local_config(
        &dir,
        &issuer,
        "  - {name: admin, path: /admin/**, require: {groups_any: [Admins]}}\n  - {name: peek, path: /admin/status, auth: none}\n  - {name: twin, path: /admin/status/, auth: none}\n  - {name: rollout, path: /r, mode: audit, require: {groups_any: [G]}}\n",
    );
    let out = bin().args(["check", "--format", "json", "--config"]).arg(&warned).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "warnings never fail the check: {}", stdout(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["ok"], true);
    let codes: Vec<(&str, &str)> = report["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["code"].as_str().unwrap(), w["route"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        codes,
        vec![
            ("public_under_protected", "peek"),
            ("unreachable_route", "twin"),
            ("public_under_protected", "twin"),
            ("audit_mode", "rollout"),
        ]
    );
    let text = bin().args(["check", "--config"]).arg(&warned).output().unwrap();
    assert!(stdout(&text).contains("warning: ") && stdout(&text).contains("[unreachable_route]"), "{}", stdout(&text));

    std::fs::write(&warned, std::fs::read_to_string(&warned).unwrap().replace("token_use: access", "token_use: maybe"))
        .unwrap();
    let bad = bin().args(["check", "--format", "json", "--config"]).arg(&warned).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let report: Value = serde_json::from_str(&stdout(&bad)).unwrap();
    assert_eq!(report["ok"], false);
    let first = report["errors"][0].as_str().unwrap();
    assert!(first.contains(&format!("{}:9:16:", warned.display())) && first.contains("maybe"), "{first}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn explain_verifies_a_real_token_and_shows_the_upstream_headers() {
    let dir = temp_dir("explain");
    let issuer = SigningKey::generate("k").unwrap();
    let config = local_config(
        &dir,
        &issuer,
        "  - {name: admin, path: /admin/**, require: {groups_any: [Admins]}}\n  - {name: app, path: /**}\n",
    );
    let token = issuer.mint(&mint::access_claims("https://idp.example/pool", "app", "ann", &["Admins"], "openid"));
    // `--token -` reads the token from stdin, keeping it out of the process list.
    let mut child = bin()
        .args(["explain", "--format", "json", "--path", "/admin//users", "--token", "-", "--config"])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(token.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let ex: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(ex["normalised_path"], "/admin/users");
    assert_eq!(ex["route"], "admin");
    assert_eq!(ex["credential"]["verified"], true);
    assert_eq!(ex["status"], 200);
    let headers: Vec<(String, String)> = serde_json::from_value(ex["upstream_headers"].clone()).unwrap();
    assert!(headers.contains(&("x-user-sub".into(), "ann".into())), "{headers:?}");
    assert!(!stdout(&out).contains(&token), "the token is never printed");

    // The same token against a key set that does not hold its key.
    let other = SigningKey::generate("k").unwrap();
    std::fs::write(dir.join("jwks.json"), other.jwks().to_string()).unwrap();
    let out =
        bin().args(["explain", "--path", "/admin/x", "--token", &token, "--config"]).arg(&config).output().unwrap();
    let text = stdout(&out);
    assert!(text.contains("401 deny (bad_signature)") && text.contains("did not verify"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_shipped_example_cases_pass() {
    let out = bin()
        .args(["test", "--config"])
        .arg(root().join("config.example.yaml"))
        .arg(root().join("cases.example.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(stdout(&out).contains("10 case(s): 10 passed, 0 failed"), "{}", stdout(&out));
}

#[test]
fn failing_cases_exit_one_with_a_readable_report() {
    let dir = temp_dir("cases");
    let issuer = SigningKey::generate("k").unwrap();
    let config = local_config(
        &dir,
        &issuer,
        "  - {name: admin, path: /admin/**, require: {groups_any: [Admins]}}\n  - {name: app, path: /**}\n",
    );
    let token = issuer.mint(&mint::access_claims("https://idp.example/pool", "app", "tok-user", &[], "openid"));
    let cases = dir.join("cases.yaml");
    std::fs::write(
        &cases,
        format!(
            "cases:\n  - name: staff get in\n    request: {{path: /admin/x}}\n    claims: {{sub: s, \"cognito:groups\": [Staff]}}\n    expect: {{status: 200}}\n  - name: real token on the app\n    request: {{path: /x}}\n    token: {token}\n    expect: {{status: 200, headers: {{X-User-Sub: tok-user, X-User-Groups: \"\"}}}}\n  - name: wrong header expectation\n    request: {{path: /x}}\n    claims: {{sub: s}}\n    expect: {{status: 200, headers: {{X-User-Sub: someone-else}}}}\n"
        ),
    )
    .unwrap();
    let out = bin().args(["test", "--config"]).arg(&config).arg(&cases).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let file = cases.display().to_string();
    assert!(text.contains("FAIL  staff get in"), "{text}");
    assert!(text.contains(&format!("{file}:2: expected status 200, got 403 (deny, forbidden_group)")), "{text}");
    assert!(text.contains("PASS  real token on the app"), "{text}");
    assert!(text.contains(&format!("{file}:10: expected upstream header X-User-Sub: someone-else, got s")), "{text}");
    assert!(text.contains("3 case(s): 1 passed, 2 failed"), "{text}");
    assert!(!text.contains(&token));

    let json = bin().args(["test", "--format", "json", "--config"]).arg(&config).arg(&cases).output().unwrap();
    let report: Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!((report["passed"].as_u64(), report["failed"].as_u64()), (Some(1), Some(2)));

    std::fs::write(&cases, "cases:\n  - name: typo\n    request: {path: /x}\n    expcet: {status: 200}\n").unwrap();
    let out = bin().args(["test", "--config"]).arg(&config).arg(&cases).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("{file}:4:5:")), "{out:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn schema_verb_prints_the_committed_schema() {
    let out = bin().arg("schema").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let committed = std::fs::read_to_string(root().join("portcullis.schema.json")).unwrap();
    assert_eq!(stdout(&out), committed);
    let schema: Value = serde_json::from_str(&committed).unwrap();
    assert_eq!(schema["additionalProperties"], false);
}

#[test]
fn explain_takes_headers_and_cookies_and_places_the_token() {
    let dir = temp_dir("explain-sources");
    let issuer = SigningKey::generate("k").unwrap();
    let config = local_config(&dir, &issuer, "  - {name: app, path: /**}\n");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("routes:\n", "credentials:\n  - bearer\n  - cookie: session_jwt\nroutes:\n");
    std::fs::write(&config, text).unwrap();
    let out = bin()
        .args(["explain", "--format", "json", "--path", "/x", "--claims", r#"{"sub":"u-7"}"#])
        .args(["--cookie", "theme=dark", "--cookie", "session_jwt=${token}", "--header", "X-User-Sub: forged"])
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let ex: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(ex["status"], 200, "{ex}");
    assert_eq!(ex["credential"]["found"], "token");
    assert_eq!(ex["credential"]["sources"], serde_json::json!(["cookie session_jwt"]));
    let headers: Vec<(String, String)> = serde_json::from_value(ex["upstream_headers"].clone()).unwrap();
    assert!(headers.contains(&("cookie".into(), "theme=dark".into())), "{headers:?}");
    assert!(headers.contains(&("x-user-sub".into(), "u-7".into())), "the forged header is replaced: {headers:?}");
    assert!(!headers.iter().any(|(n, _)| n == "authorization"), "the token went where ${{token}} said");

    let bad =
        bin().args(["explain", "--path", "/x", "--header", "no colon"]).arg("--config").arg(&config).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("Name: value"));
    let _ = std::fs::remove_dir_all(&dir);
}
