//! Hot reload (SPEC §6) against real files, a real directory watcher and real sockets: applied,
//! rejected (old config keeps serving), Kubernetes ConfigMap symlink swaps, partial writes, a
//! new issuer whose keys cannot load, settings that need a restart, an in-flight request keeping
//! its snapshot, and TLS certificate rotation mid-run.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use portcullis::App;
use portcullis::serve::reload::{Outcome, Reloader, Trigger};
use portcullis::tools::mint::SigningKey;
use serde_json::Value;
use support::*;

struct Fixture {
    p: Proxy,
    dir: PathBuf,
    /// The path Portcullis was started with.
    path: PathBuf,
    reloader: Arc<Reloader>,
    watcher: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(w) = &self.watcher {
            w.abort();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Routes for generation "A": `/api/**` needs any signed-in user.
const ROUTES_A: &str =
    "routes:\n  - name: public\n    path: /public/**\n    auth: none\n  - name: api\n    path: /api/**\n";

/// `routes` with the api route narrowed to a group.
fn routes_group(group: &str) -> String {
    format!("{ROUTES_A}    require:\n      groups_any: [{group}]\n")
}

impl Fixture {
    /// Start with the config written by `write` into a fresh directory; `watch` starts the
    /// directory watcher as `portcullis run` does.
    async fn start(name: &str, rest: &str, watch: bool, layout: Layout) -> Fixture {
        let dir = temp_dir(name);
        let issuer = SigningKey::generate("k1").unwrap();
        let jwks = JwksServer::start(issuer.jwks()).await;
        let echo = Echo::start().await;
        let fill = |yaml: &str| {
            yaml.replace("@ISSUER@", &jwks.issuer_url())
                .replace("@JWKS@", &jwks.jwks_url())
                .replace("@UPSTREAM@", &echo.url())
        };
        let yaml = fill(&config("access", rest));
        let path = match layout {
            Layout::Plain => {
                let path = dir.join("portcullis.yaml");
                std::fs::write(&path, &yaml).unwrap();
                path
            }
            Layout::ConfigMap => configmap_init(&dir, &yaml),
        };
        let cfg = portcullis::config::load(&path, &|_| None).unwrap_or_else(|e| panic!("{e}"));
        let app = App::start(cfg).await.expect("app starts");
        let reloader = Reloader::new(&app, &path, Box::new(|_| None));
        let watcher = watch.then(|| reloader.spawn_watcher().expect("watcher"));
        let p = Proxy::new(app, jwks, echo, issuer);
        p.wait_ready().await;
        Fixture { p, dir, path, reloader, watcher }
    }

    /// The config text for `rest`, with this fixture's JWKS and upstream filled in.
    fn yaml(&self, rest: &str) -> String {
        config("access", rest)
            .replace("@ISSUER@", &self.p.jwks.issuer_url())
            .replace("@JWKS@", &self.p.jwks.jwks_url())
            .replace("@UPSTREAM@", &self.p.echo.url())
    }

    fn generation(&self) -> f64 {
        self.p.metric("portcullis_config_generation", &[])
    }

    fn reloads(&self, result: &str) -> f64 {
        self.p.metric("portcullis_config_reloads_total", &[("result", result)])
    }

    /// Write like an editor that saves to a temporary file and renames it over the original.
    fn write_and_rename(&self, text: &str) {
        let tmp = self.dir.join(".portcullis.yaml.swp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }

    async fn status(&self, path: &str, token: &str) -> u16 {
        self.p.get(path, Some(token)).await.status().as_u16()
    }
}

#[derive(Clone, Copy)]
enum Layout {
    Plain,
    ConfigMap,
}

/// The kubelet's ConfigMap volume layout: `dir/..<ts>/portcullis.yaml`, `dir/..data -> ..<ts>`,
/// `dir/portcullis.yaml -> ..data/portcullis.yaml`. Returns the user-facing path.
fn configmap_init(dir: &Path, yaml: &str) -> PathBuf {
    let ts = dir.join("..2026_01_01_00_00_00.000000001");
    std::fs::create_dir_all(&ts).unwrap();
    std::fs::write(ts.join("portcullis.yaml"), yaml).unwrap();
    std::os::unix::fs::symlink(ts.file_name().unwrap(), dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/portcullis.yaml", dir.join("portcullis.yaml")).unwrap();
    dir.join("portcullis.yaml")
}

/// What the kubelet does on an update: write a new timestamped directory, point a temporary
/// symlink at it and rename that over `..data` (one atomic switch), then remove the old one.
fn configmap_swap(dir: &Path, n: usize, yaml: &str) {
    let old = std::fs::read_link(dir.join("..data")).unwrap();
    let ts_name = format!("..2026_01_01_00_00_{n:02}.000000001");
    let ts = dir.join(&ts_name);
    std::fs::create_dir_all(&ts).unwrap();
    std::fs::write(ts.join("portcullis.yaml"), yaml).unwrap();
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(&ts_name, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join(old)).unwrap();
}

#[tokio::test]
async fn file_change_is_applied_and_counted() {
    let f = Fixture::start("applied", ROUTES_A, true, Layout::Plain).await;
    let token = f.p.mint_access("u1", &["Staff"], "openid");
    assert_eq!(f.status("/api/x", &token).await, 200);
    assert_eq!(f.generation(), 1.0);
    let hits = f.p.jwks.hits();

    f.write_and_rename(&f.yaml(&routes_group("Admins")));
    eventually("the narrowed rule applies", || async { f.status("/api/x", &token).await == 403 }).await;
    assert_eq!(f.generation(), 2.0);
    assert_eq!(f.reloads("ok"), 1.0);
    assert_eq!(f.reloads("error"), 0.0);
    // The unchanged issuer kept its key cache: no JWKS refetch, no cold start.
    assert_eq!(f.p.jwks.hits(), hits, "an unchanged issuer is not refetched on reload");
    assert_eq!(f.status("/public/x", &token).await, 200);
}

#[tokio::test]
async fn invalid_file_is_rejected_with_position_and_old_config_keeps_serving() {
    let f = Fixture::start("rejected", ROUTES_A, true, Layout::Plain).await;
    let token = f.p.mint_access("u1", &[], "openid");
    let broken = f.yaml(ROUTES_A).replace("    path: /api/**\n", "    path: /api/**\n    auth: off\n");
    f.write_and_rename(&broken);
    eventually("the watcher meters the rejected reload", || async { f.reloads("error") >= 1.0 }).await;
    assert_eq!(f.generation(), 1.0, "nothing was applied");
    assert_eq!(f.status("/api/x", &token).await, 200, "the old config keeps serving");
    // The same rejection, asked for directly (as SIGHUP does), names file, line and column.
    let err = f.reloader.reload(Trigger::Signal).await.unwrap_err();
    let text = err.to_string();
    let line = broken.lines().position(|l| l.contains("auth: off")).unwrap() + 1;
    assert!(text.contains(&format!("{}:{line}:11:", f.path.display())), "{text}");
    assert_eq!(f.generation(), 1.0);
    assert_eq!(f.reloads("error"), 2.0);
    // Unrelated files changing in the directory do not re-parse (and re-log) the rejected file;
    // fixing it is applied.
    std::fs::write(f.dir.join("unrelated.log"), "x").unwrap();
    f.write_and_rename(&f.yaml(&routes_group("Admins")));
    eventually("the fixed file is applied", || async { f.generation() == 2.0 }).await;
    assert_eq!(f.reloads("error"), 2.0, "the rejected content was not re-counted");
}

#[tokio::test]
async fn sighup_reapplies_unchanged_content_and_file_events_do_not() {
    let f = Fixture::start("sighup", ROUTES_A, false, Layout::Plain).await;
    let out = f.reloader.reload(Trigger::Signal).await.unwrap();
    assert_eq!(out, Outcome::Applied { generation: 2, restart_needed: vec![] });
    assert_eq!(f.reloader.reload(Trigger::FileChange).await.unwrap(), Outcome::Unchanged);
    assert_eq!(f.generation(), 2.0);
}

#[tokio::test]
async fn configmap_symlink_swaps_are_each_applied() {
    let f = Fixture::start("configmap", &routes_group("G0"), true, Layout::ConfigMap).await;
    let token = f.p.mint_access("u1", &["G3"], "openid");
    assert_eq!(f.status("/api/x", &token).await, 403);
    for n in 1..=3 {
        configmap_swap(&f.dir, n, &f.yaml(&routes_group(&format!("G{n}"))));
        let want = 1.0 + n as f64;
        eventually(&format!("swap {n} applied"), || async { f.generation() == want }).await;
        let rt = f.p.shared.runtime.load();
        let api = rt.config.routes.iter().find(|r| r.name == "api").unwrap();
        assert_eq!(api.require.groups_any, Some(vec![format!("G{n}")]), "swap {n}");
    }
    assert_eq!(f.status("/api/x", &token).await, 200, "the third swap's rule is live");
    assert_eq!(f.reloads("error"), 0.0);
}

#[tokio::test]
async fn a_partial_write_is_never_applied() {
    let f = Fixture::start("partial", ROUTES_A, true, Layout::Plain).await;
    let full = f.yaml(&routes_group("Admins"));
    // Written in place in two steps, as a slow writer would: the first half is not a valid
    // config (cut inside the routes list).
    let cut = full.find("  - name: api").unwrap() + 9;
    {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().write(true).truncate(true).open(&f.path).unwrap();
        file.write_all(&full.as_bytes()[..cut]).unwrap();
        file.flush().unwrap();
        file.write_all(&full.as_bytes()[cut..]).unwrap();
    }
    eventually("the complete file is applied", || async { f.generation() == 2.0 }).await;
    let rt = f.p.shared.runtime.load();
    let api = rt.config.routes.iter().find(|r| r.name == "api").expect("the api route is there");
    assert_eq!(api.require.groups_any, Some(vec!["Admins".to_owned()]));
}

#[tokio::test]
async fn in_flight_request_keeps_its_snapshot() {
    let f = Fixture::start("inflight", ROUTES_A, false, Layout::Plain).await;
    let token = f.p.mint_access("u1", &[], "openid");
    // A slow request, allowed by config A, is inside the upstream when config B lands.
    let slow = {
        let (client, url, token) = (f.p.client.clone(), f.p.url("/api/slow?echo_delay_ms=1500"), token.clone());
        tokio::spawn(async move { client.get(url).bearer_auth(token).send().await.unwrap() })
    };
    f.p.echo.wait_for_count(1).await;
    // B: no api route at all, and a different upstream.
    let b = f
        .yaml(&ROUTES_A.replace("  - name: api\n    path: /api/**\n", ""))
        .replace(&format!("url: \"{}\"", f.p.echo.url()), &format!("url: \"http://127.0.0.1:{}\"", closed_port()));
    std::fs::write(&f.path, b).unwrap();
    f.reloader.reload(Trigger::Signal).await.unwrap();
    assert_eq!(f.status("/api/x", &token).await, 403, "new requests see config B");
    let resp = slow.await.unwrap();
    assert_eq!(resp.status(), 200, "the request that started under A finishes under A");
    assert_eq!(f.p.metric("portcullis_requests_total", &[("route", "api"), ("decision", "allow")]), 1.0);
}

#[tokio::test]
async fn new_issuer_without_keys_is_rejected() {
    let f = Fixture::start("newissuer", ROUTES_A, false, Layout::Plain).await;
    let bad = f.yaml(ROUTES_A).replace(
        "issuers:\n",
        &format!(
            "jwks:\n  fetch_timeout: 200ms\nissuers:\n  - name: other\n    issuer: http://127.0.0.1:{port}/pool\n    jwks_uri: http://127.0.0.1:{port}/jwks.json\n    client_ids: [x]\n    token_use: access\n",
            port = closed_port()
        ),
    );
    std::fs::write(&f.path, bad).unwrap();
    let err = f.reloader.reload(Trigger::Signal).await.unwrap_err();
    assert!(err.to_string().contains("issuer `other`: no usable JWKS"), "{err}");
    assert_eq!(f.generation(), 1.0);
    assert_eq!(f.reloads("error"), 1.0);
    assert_eq!(f.p.readyz().await, 200, "readiness is untouched");
}

#[tokio::test]
async fn listener_changes_are_reported_as_needing_a_restart() {
    let f = Fixture::start("restart", ROUTES_A, false, Layout::Plain).await;
    let token = f.p.mint_access("u1", &["Staff"], "openid");
    let moved = f.yaml(&routes_group("Admins")).replacen("listen: \"127.0.0.1:0\"", "listen: \"127.0.0.1:1\"", 1);
    std::fs::write(&f.path, moved).unwrap();
    match f.reloader.reload(Trigger::Signal).await.unwrap() {
        Outcome::Applied { restart_needed, .. } => {
            assert_eq!(restart_needed, vec!["listen (127.0.0.1:0 → 127.0.0.1:1)".to_owned()]);
        }
        other => panic!("{other:?}"),
    }
    // The rest applied; the listener is the old one.
    assert_eq!(f.status("/api/x", &token).await, 403);
}

fn tls_client(cert_pem: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(cert_pem).unwrap()])
        .build()
        .unwrap()
}

#[tokio::test]
async fn tls_certificate_rotation_is_picked_up_without_restart() {
    // cert-manager style: the Secret volume swaps `..data`; the config names tls/tls.crt.
    let certs = temp_dir("tls-certs");
    let (a_crt, a_key) = self_signed_cert(&certs, "first", "IP:127.0.0.1");
    let (b_crt, b_key) = self_signed_cert(&certs, "second", "IP:127.0.0.1");
    let tls_dir = temp_dir("tls-secret");
    let install = |n: usize, crt: &Path, key: &Path| {
        let ts_name = format!("..2026_{n:02}");
        let ts = tls_dir.join(&ts_name);
        std::fs::create_dir_all(&ts).unwrap();
        std::fs::copy(crt, ts.join("tls.crt")).unwrap();
        std::fs::copy(key, ts.join("tls.key")).unwrap();
        let tmp = tls_dir.join("..data_tmp");
        std::os::unix::fs::symlink(&ts_name, &tmp).unwrap();
        std::fs::rename(&tmp, tls_dir.join("..data")).unwrap();
    };
    install(1, &a_crt, &a_key);
    for f in ["tls.crt", "tls.key"] {
        std::os::unix::fs::symlink(format!("..data/{f}"), tls_dir.join(f)).unwrap();
    }
    let rest = format!(
        "tls:\n  cert_file: {}\n  key_file: {}\n{ROUTES_A}",
        tls_dir.join("tls.crt").display(),
        tls_dir.join("tls.key").display()
    );
    let f = Fixture::start("tls", &rest, true, Layout::Plain).await;
    let (a_pem, b_pem) = (std::fs::read(&a_crt).unwrap(), std::fs::read(&b_crt).unwrap());
    let url = format!("https://{}/public/x", f.p.proxy_addr);
    // A client that trusts only the first certificate, holding a connection open across the swap.
    let old_client = tls_client(&a_pem);
    assert_eq!(old_client.get(&url).send().await.unwrap().status(), 200);
    assert!(tls_client(&b_pem).get(&url).send().await.is_err(), "the second cert is not served yet");

    install(2, &b_crt, &b_key);
    eventually("the rotated certificate is served", || async {
        tls_client(&b_pem).get(&url).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(tls_client(&a_pem).get(&url).send().await.is_err(), "new handshakes get the new certificate");
    // The connection made before the swap keeps working (its handshake is done).
    assert_eq!(old_client.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(f.generation(), 2.0);

    // A half-done rotation (certificate replaced, key not matching) is refused; B keeps serving.
    std::fs::copy(&a_crt, tls_dir.join("..2026_02/tls.crt")).unwrap();
    let err = f.reloader.reload(Trigger::Signal).await.unwrap_err();
    assert!(err.to_string().contains("key_file does not match cert_file"), "{err}");
    assert_eq!(tls_client(&b_pem).get(&url).send().await.unwrap().status(), 200);
    let _ = std::fs::remove_dir_all(&certs);
    let _ = std::fs::remove_dir_all(&tls_dir);
}

/// `GET` over a plain socket, returning the body (blocking; for the binary test).
fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(3))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn the_binary_reloads_on_sighup_and_on_file_change() {
    use std::time::{Duration, Instant};
    let dir = temp_dir("binary");
    let issuer = SigningKey::generate("k1").unwrap();
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, issuer.jwks().to_string()).unwrap();
    let yaml = |route: &str| {
        format!(
            "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nupstream:\n  url: http://127.0.0.1:1\nissuers:\n  - name: m\n    issuer: http://127.0.0.1:1/p\n    jwks_file: {}\n    client_ids: [c]\n    token_use: access\nroutes:\n  - name: {route}\n    path: /public\n    auth: none\n",
            jwks.display()
        )
    };
    let path = dir.join("portcullis.yaml");
    std::fs::write(&path, yaml("first")).unwrap();
    let (mut child, started) = spawn_binary(&path);
    let admin = started["admin"].as_str().unwrap().to_owned();
    let generation = || {
        let text = http_get(&admin, "/metrics").unwrap_or_default();
        metric(&text, "portcullis_config_generation", &[])
    };
    let wait_for = |want: f64, what: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while generation() != want {
            assert!(Instant::now() < deadline, "{what}: generation stayed {}", generation());
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for(1.0, "start");
    let hup = Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap();
    assert!(hup.success());
    wait_for(2.0, "SIGHUP re-applies unchanged content");
    std::fs::write(&path, yaml("second")).unwrap();
    wait_for(3.0, "a file edit is applied");
    let text = http_get(&admin, "/metrics").unwrap_or_default();
    assert_eq!(metric(&text, "portcullis_config_reloads_total", &[("result", "ok")]), 2.0);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Lint findings are logged when the binary starts and again for every applied reload (they used
/// to be logged at start only; `check` printed them twice). Reads the binary's JSON log lines.
#[test]
fn the_binary_logs_lint_warnings_at_start_and_after_each_reload() {
    use std::sync::mpsc::Receiver;
    use std::time::{Duration, Instant};
    let dir = temp_dir("lint-log");
    let issuer = SigningKey::generate("k1").unwrap();
    let jwks = dir.join("jwks.json");
    std::fs::write(&jwks, issuer.jwks().to_string()).unwrap();
    let yaml = |route: &str| {
        format!(
            "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nupstream:\n  url: http://127.0.0.1:1\nissuers:\n  - name: m\n    issuer: http://127.0.0.1:1/p\n    jwks_file: {}\n    client_ids: [c]\n    token_use: access\nroutes:\n{route}",
            jwks.display()
        )
    };
    let path = dir.join("portcullis.yaml");
    std::fs::write(&path, yaml("  - {name: rollout, path: /r, mode: audit, require: {groups_any: [G]}}\n")).unwrap();
    let (mut child, _started, logs) = spawn_binary_with_logs(&path);
    // Waits (bounded) for a warning with `code`, and returns the messages seen on the way.
    let warning = |logs: &Receiver<Value>, code: &str| -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = logs.recv_timeout(left).unwrap_or_else(|_| panic!("no `{code}` warning; saw {seen:?}"));
            if line["level"] == "WARN" && line["code"] == code {
                return seen;
            }
            seen.push(line["message"].as_str().unwrap_or_default().to_owned());
        }
    };
    warning(&logs, "audit_mode");
    std::fs::write(
        &path,
        yaml("  - {name: admin, path: /admin/**}\n  - {name: peek, path: /admin/status, auth: none}\n"),
    )
    .unwrap();
    // SIGHUP rather than waiting for the watcher: the handler is installed before the start
    // line, so the reload cannot be missed (a file event may reload too; reloads are serialised).
    let hup = Command::new("kill").args(["-HUP", &child.id().to_string()]).status().unwrap();
    assert!(hup.success());
    let before = warning(&logs, "public_under_protected");
    assert!(before.iter().any(|m| m == "config reloaded"), "the finding belongs to the reload: {before:?}");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
