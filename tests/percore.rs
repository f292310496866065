//! Thread-per-core serving (`portcullis::serve::percore`) against real sockets: what serving the proxy
//! listener from several threads, each with its own `SO_REUSEPORT` listener and runtime, could
//! break. A config reload must be seen by every core, drain must cover every core's requests,
//! `limits.max_connections` must cap the whole process (not each core), and the verified-token
//! cache must be one cache for every core.
//!
//! Which core serves a connection is read from `portcullis_core_connections_total{core}`: one
//! connection at a time, so the one counter that moved names the core. Connections are opened
//! until every core has one (the kernel hashes them over the listeners), with a bound.

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use portcullis::App;
use portcullis::serve::reload::{Outcome, Reloader, Trigger};
use portcullis::tools::mint::SigningKey;
use support::*;

const CORES: usize = 4;

struct Fixture {
    p: Proxy,
    dir: PathBuf,
    path: PathBuf,
    reloader: Arc<Reloader>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Fixture {
    /// Start on `CORES` core threads with `config("access", rest)` written to a file (so that it
    /// can be reloaded as `portcullis run` does).
    async fn start(name: &str, rest: &str) -> Fixture {
        let dir = temp_dir(name);
        let issuer = SigningKey::generate("k1").unwrap();
        let jwks = JwksServer::start(issuer.jwks()).await;
        let echo = Echo::start().await;
        let yaml = config("access", rest)
            .replace("@ISSUER@", &jwks.issuer_url())
            .replace("@JWKS@", &jwks.jwks_url())
            .replace("@UPSTREAM@", &echo.url());
        let path = dir.join("portcullis.yaml");
        std::fs::write(&path, &yaml).unwrap();
        let cfg = portcullis::config::load(&path, &|_| None).unwrap_or_else(|e| panic!("{e}"));
        let app = App::start_on_cores(cfg, Vec::new(), CORES).await.expect("app starts");
        let reloader = Reloader::new(&app, &path, Box::new(|_| None));
        let p = Proxy::new(app, jwks, echo, issuer);
        p.wait_ready().await;
        Fixture { p, dir, path, reloader }
    }

    fn accepted_per_core(&self) -> Vec<f64> {
        let text = self.p.metrics();
        (0..CORES).map(|c| metric(&text, "portcullis_core_connections_total", &[("core", &c.to_string())])).collect()
    }

    /// Open a keep-alive connection, send `request` on it, and return it with its answer and the
    /// core that accepted it (`None` if no core's counter moved: refused at the cap).
    async fn open(&self, request: &[u8]) -> (RawConn, RawResponse, Option<usize>) {
        let before = self.accepted_per_core();
        let mut conn = RawConn::connect(self.p.proxy_addr).await;
        let response = conn.send(request).await;
        let after = self.accepted_per_core();
        let moved: Vec<usize> = (0..CORES).filter(|&c| after[c] != before[c]).collect();
        assert!(moved.len() <= 1, "one connection at a time, yet cores {moved:?} accepted");
        (conn, response, moved.first().copied())
    }

    /// One open keep-alive connection per core (index = core), each having answered `request`
    /// with `status`.
    async fn connection_per_core(&self, request: &[u8], status: u16) -> Vec<RawConn> {
        let mut slots: Vec<Option<RawConn>> = (0..CORES).map(|_| None).collect();
        // With 4 listeners, 400 connections all missing one core has probability (3/4)^400.
        for _ in 0..400 {
            let (conn, response, core) = self.open(request).await;
            assert_eq!(response.status, status, "{}", response.text);
            let core = core.expect("every connection is accepted below the cap");
            if slots[core].is_none() {
                slots[core] = Some(conn);
            }
            if slots.iter().all(Option::is_some) {
                return slots.into_iter().flatten().collect();
            }
        }
        panic!(
            "the kernel never spread 400 connections over all {CORES} listeners: {slots:?}",
            slots = slots.iter().map(Option::is_some).collect::<Vec<_>>()
        );
    }
}

fn get(path: &str, auth: &str) -> Vec<u8> {
    request_bytes("GET", path, &[("Authorization", auth), ("Connection", "keep-alive")])
}

/// `/api/**` open to `group` only.
fn routes_for(group: &str) -> String {
    format!("routes:\n  - name: api\n    path: /api/**\n    require:\n      groups_any: [{group}]\n")
}

/// A reload swaps one snapshot that every core reads: connections opened before it, on every
/// core, get the new rules on their next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_is_seen_by_every_core() {
    let f = Fixture::start("percore-reload", &routes_for("Admins")).await;
    let auth = format!("Bearer {}", f.p.mint_access("alice", &["Readers"], "openid"));
    let mut conns = f.connection_per_core(&get("/api/before", &auth), 403).await;

    let yaml = std::fs::read_to_string(&f.path).unwrap().replace("[Admins]", "[Readers]");
    std::fs::write(&f.path, yaml).unwrap();
    let outcome = f.reloader.reload(Trigger::Signal).await.expect("reload applies");
    assert!(matches!(outcome, Outcome::Applied { generation: 2, .. }), "{outcome:?}");
    let accepted = f.accepted_per_core();

    for (core, conn) in conns.iter_mut().enumerate() {
        let after = conn.send(&get("/api/after", &auth)).await;
        assert_eq!(after.status, 200, "core {core} still serves the old rules: {}", after.text);
    }
    // The same connections answered: no new connection was needed to see the change.
    assert_eq!(f.accepted_per_core(), accepted, "the requests after the reload opened new connections");
}

/// SECURITY OPS-01 per core: stopping waits for the in-flight requests of every core, each
/// gets its full answer, and afterwards no listener of the group accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_finishes_in_flight_requests_on_every_core() {
    let mut f = Fixture::start("percore-drain", &routes_for("Admins")).await;
    let auth = format!("Bearer {}", f.p.mint_access("alice", &["Admins"], "openid"));
    let conns = f.connection_per_core(&get("/api/warm", &auth), 200).await;
    let seen = f.p.echo.count();

    // One slow request in flight on every core.
    let mut in_flight = Vec::new();
    for (core, mut conn) in conns.into_iter().enumerate() {
        let req = get(&format!("/api/slow-{core}?echo_delay_ms=500"), &auth);
        in_flight.push(tokio::spawn(async move { conn.send(&req).await }));
    }
    f.p.echo.wait_for_count(seen + CORES).await;

    let app = f.p.take_app();
    let stopped = tokio::spawn(app.stop());
    for (core, task) in in_flight.into_iter().enumerate() {
        let r = task.await.unwrap();
        assert_eq!(r.status, 200, "core {core}'s in-flight request was cut: {}", r.text);
        assert!(r.text.contains(&format!("/api/slow-{core}")), "{}", r.text);
    }
    stopped.await.unwrap();
    // Every listener of the group is closed: nothing accepts on the port any more.
    for _ in 0..4 * CORES {
        assert!(tokio::net::TcpStream::connect(f.p.proxy_addr).await.is_err(), "a core still accepts after stop");
    }
}

/// SECURITY DOS-07: `limits.max_connections` is one cap for the process. Per-core caps would
/// let each core take its own share (here up to 4 × 3 connections).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_caps_the_whole_process_not_each_core() {
    let rest = format!("limits:\n  max_connections: 3\n{}", routes_for("Admins"));
    let f = Fixture::start("percore-cap", &rest).await;
    let auth = format!("Bearer {}", f.p.mint_access("alice", &["Admins"], "openid"));
    let mut served = Vec::new();
    let mut refused = 0;
    for _ in 0..24 {
        let (conn, response, core) = f.open(&get("/api/x", &auth)).await;
        if response.status == 200 {
            served.push((conn, core.expect("a served connection was accepted by a core")));
        } else {
            assert!(core.is_none(), "a refused connection counted as accepted: {}", response.text);
            refused += 1;
        }
    }
    assert_eq!(served.len(), 3, "served {} connections at once with max_connections: 3", served.len());
    assert_eq!(refused, 21);
    assert_eq!(f.p.metric("portcullis_connections_rejected_total", &[]), 21.0);

    // A slot freed on any core is usable from any core.
    drop(served.pop());
    eventually("a freed slot serves a new connection", || async {
        let (_conn, response, _) = f.open(&get("/api/again", &auth)).await;
        response.status == 200
    })
    .await;
}

/// The verified-token cache is one cache (in the config snapshot) shared by every core: a token
/// admitted on one core is a hit on another (its bound is `limits.token_cache_entries` for the
/// whole process, not per core).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_cache_is_shared_by_every_core() {
    let f = Fixture::start("percore-cache", &routes_for("Admins")).await;
    let warm = format!("Bearer {}", f.p.mint_access("warm-up", &["Admins"], "openid"));
    let mut conns = f.connection_per_core(&get("/api/warm", &warm), 200).await;

    let auth = format!("Bearer {}", f.p.mint_access("alice", &["Admins"], "openid"));
    let hits = || f.p.metric("portcullis_token_cache_hits_total", &[]);
    let misses = || f.p.metric("portcullis_token_cache_misses_total", &[]);
    // Admitted on its second verification, both on core 0.
    for _ in 0..2 {
        assert_eq!(conns[0].send(&get("/api/a", &auth)).await.status, 200);
    }
    for (core, conn) in conns.iter_mut().enumerate().skip(1) {
        let (h, m) = (hits(), misses());
        assert_eq!(conn.send(&get("/api/b", &auth)).await.status, 200);
        assert_eq!((hits() - h, misses() - m), (1.0, 0.0), "core {core} did not find core 0's entry");
    }
}
