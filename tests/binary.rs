//! The real binary: a bad config exits non-zero naming file, line and column and never serves
//! (SECURITY OPS-06); SIGTERM turns readiness false at once, keeps serving for `shutdown.delay`,
//! then exits 0 (SECURITY OPS-01).

use std::process::Command;
use std::time::{Duration, Instant};

mod support;
use support::spawn_binary;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
}

fn temp_config(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("portcullis-bin-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("portcullis.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn bad_config_exits_nonzero_with_positions() {
    let path = temp_config(
        "bad",
        "listen: 127.0.0.1:0\nupstream:\n  url: http://127.0.0.1:1\n  timeout: 30\nissuers: []\nroutes:\n  - name: app\n    path: /**\n    auth: off\n",
    );
    let out = bin().args(["run", "--config"]).arg(&path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    assert!(err.contains(&format!("{file}:4:12:")), "{err}");
    assert!(err.contains(&format!("{file}:5:10:")), "{err}");
    assert!(err.contains(&format!("{file}:9:11:")), "{err}");
    assert!(err.contains("not starting"), "{err}");
    let check = bin().args(["check", "--config"]).arg(&path).output().unwrap();
    assert_eq!(check.status.code(), Some(1));
}

fn get(addr: &str, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split(' ').nth(1)?.parse().ok()
}

#[test]
fn sigterm_drains_then_exits_zero() {
    let dir = std::env::temp_dir().join(format!("portcullis-bin-{}-term", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let issuer = portcullis::tools::mint::SigningKey::generate("k1").unwrap();
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, issuer.jwks().to_string()).unwrap();
    let path = temp_config(
        "term",
        &format!(
            "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nupstream:\n  url: http://127.0.0.1:1\nissuers:\n  - name: m\n    issuer: http://127.0.0.1:1/p\n    jwks_file: {}\n    client_ids: [c]\n    token_use: access\nshutdown:\n  delay: 1s\n  grace: 2s\nroutes:\n  - name: public\n    path: /public\n    auth: none\n",
            jwks.display()
        ),
    );
    let (mut child, started) = spawn_binary(&path);
    let admin = started["admin"].as_str().unwrap().to_owned();
    let proxy = started["listen"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(&admin, "/readyz") != Some(200) {
        assert!(Instant::now() < deadline, "never became ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(get(&admin, "/readyz"), Some(503), "readiness false at once");
    assert_eq!(get(&admin, "/healthz"), Some(200), "liveness unaffected");
    assert_eq!(get(&proxy, "/public"), Some(502), "new connections still served during shutdown.delay");
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(code.success(), "{code:?}");
    assert_eq!(get(&proxy, "/public"), None, "listener closed after exit");
    let _ = std::fs::remove_dir_all(&dir);
}
