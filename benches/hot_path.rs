//! Micro-benchmarks of the request hot path (README "Performance", docs/profiling.md):
//! token verification cold (cache disabled: decode, RSA verify, claims, identity encoding) and
//! cached (digest + lookup + expiry/key checks), route matching on tables of 10, 1,000 and 10,000
//! routes, the header work every forwarded request does (strip untrusted + rewrite for the
//! upstream), the whole decision (`decision::authorize`) on a cached token, and opening a
//! Cognito-sized session cookie against hashing it (why sessions use a memo of opened values).
//!
//! `cargo bench --bench hot_path` measures; `cargo test --all-targets` runs each benchmark once
//! (divan's test mode), so the assertions in the fixtures keep them honest.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use divan::{Bencher, black_box};
use http::{HeaderMap, HeaderValue, Method};
use portcullis::auth::jwks::{self, FetchError, IssuerKeys, KeySource};
use portcullis::auth::policy::{self, Authn};
use portcullis::auth::route::RouteTable;
use portcullis::auth::verify::{IssuerRuntime, UseRule, Verifier};
use portcullis::config::{self, Config};
use portcullis::proxy::decision::{self, Conn, Verdict};
use portcullis::proxy::headers::{self, Forwarding};
use portcullis::proxy::runtime::Runtime;
use portcullis::telemetry::metrics::Metrics;
use portcullis::tools::mint::{SigningKey, access_claims};

fn main() {
    divan::main();
}

const ISS: &str = "http://127.0.0.1:9000/us-east-1_TEST";
const CLIENT: &str = "3n4b5urk1ft4fl3mg5e62d9ado";

struct Static(Bytes);
impl KeySource for Static {
    fn fetch(&self, _: u64) -> futures_core::future::BoxFuture<'_, Result<Bytes, FetchError>> {
        let b = self.0.clone();
        Box::pin(async move { Ok(b) })
    }
}

/// The benchmark config: one issuer, `routes` extra routes before the catch-all, a cache of
/// `cache` entries (0 disables it).
fn config(routes: usize, cache: usize) -> Config {
    let mut yaml = format!(
        "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:1\nupstream:\n  url: http://127.0.0.1:1\n\
         issuers:\n  - name: main\n    issuer: {ISS}\n    jwks_file: /nonexistent\n    client_ids: [{CLIENT}]\n    \
         token_use: access\nlimits:\n  token_cache_entries: {cache}\nroutes:\n"
    );
    // A realistic mix: a public health route per service, a tree, a one-segment wildcard and a
    // method-specific admin route.
    for i in 0..routes {
        let (path, extra) = match i % 4 {
            0 => (format!("/svc{i}/health"), "    auth: none\n"),
            1 => (format!("/svc{i}/**"), "    require:\n      groups_any: [admins]\n"),
            2 => (format!("/svc{i}/items/*/detail"), ""),
            _ => (format!("/svc{i}/admin"), "    methods: [POST, DELETE]\n"),
        };
        yaml.push_str(&format!("  - name: r{i}\n    path: {path}\n{extra}"));
    }
    yaml.push_str("  - name: all\n    path: /**\n    require:\n      groups_any: [admins]\n");
    config::parse(&yaml, "bench.yaml", &|_| None).expect("bench config")
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    verifier: Verifier,
    token: String,
}

fn fixture(cache: usize) -> Fixture {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let issuer = SigningKey::generate("k1").unwrap();
    let cfg = config(0, cache);
    let metrics = Arc::new(Metrics::new());
    let source = Box::new(Static(Bytes::from(issuer.jwks().to_string())));
    let keys = IssuerKeys::new("main", source, jwks::Settings::from(&cfg.jwks), metrics.clone());
    rt.block_on(keys.refresh()).expect("keys load");
    let verifier = Verifier::new(vec![IssuerRuntime { config: cfg.issuers[0].clone(), keys }], &cfg, metrics);
    let token = issuer.mint(&access_claims(ISS, CLIENT, "0f4ea2b0-3c51-4a3c-9d2b-6b4d2f8f6f11", &["admins"], "openid"));
    assert!(rt.block_on(verifier.verify(&token, UseRule::Issuer)).is_ok(), "the bench token verifies");
    Fixture { rt, verifier, token }
}

#[divan::bench]
fn verify_cold(b: Bencher) {
    let f = fixture(0);
    b.bench_local(|| f.rt.block_on(f.verifier.verify(black_box(&f.token), UseRule::Issuer)).is_ok());
}

#[divan::bench]
fn verify_cached(b: Bencher) {
    let f = fixture(1000);
    b.bench_local(|| f.rt.block_on(f.verifier.verify(black_box(&f.token), UseRule::Issuer)).is_ok());
}

/// Route tables of 10, 1,000 and 10,000 routes (plus the catch-all).
const ROUTES: &[usize] = &[10, 1_000, 10_000];

fn table(n: usize) -> RouteTable {
    let cfg = config(n, 0);
    RouteTable::new(&cfg.routes, false)
}

/// The last route index below `n` of kind `kind` (`i % 4`), so the match sits at the table's end.
fn last_of_kind(n: usize, kind: usize) -> usize {
    (0..n).rev().find(|i| i % 4 == kind).unwrap()
}

fn bench_find(b: Bencher, n: usize, path: &str, want: &str) {
    let table = table(n);
    assert_eq!(table.find(&Method::GET, path).map(|r| r.name.as_str()), Some(want), "{path}");
    b.bench_local(|| table.find(black_box(&Method::GET), black_box(path)).map(|r| r.name.len()));
}

/// `/svcN/items/*/detail`: literal, literal, `*`, literal.
#[divan::bench(args = ROUTES)]
fn route_find_star(b: Bencher, n: usize) {
    let i = last_of_kind(n, 2);
    bench_find(b, n, &format!("/svc{i}/items/42/detail"), &format!("r{i}"));
}

/// `/svcN/**` with three segments below it.
#[divan::bench(args = ROUTES)]
fn route_find_tree(b: Bencher, n: usize) {
    let i = last_of_kind(n, 1);
    bench_find(b, n, &format!("/svc{i}/a/b/c"), &format!("r{i}"));
}

/// A path no specific route matches: the catch-all `/**`.
#[divan::bench(args = ROUTES)]
fn route_find_fallback(b: Bencher, n: usize) {
    bench_find(b, n, "/nothing/here", "all");
}

/// A typical browser request as it arrives, plus two headers that must be stripped.
fn request_headers(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "app.example.com"),
        ("user-agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"),
        ("accept", "application/json, text/plain, */*"),
        ("accept-language", "en-GB,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("referer", "https://app.example.com/dashboard"),
        ("origin", "https://app.example.com"),
        ("connection", "keep-alive"),
        ("cookie", "theme=dark; session_hint=1"),
        ("x-user-sub", "forged"),
        ("x-forwarded-for", "203.0.113.7"),
    ] {
        h.append(k, HeaderValue::from_static(v));
    }
    h.insert("authorization", HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
    h
}

#[divan::bench]
fn header_rewrite(b: Bencher) {
    let f = fixture(1000);
    let cfg = config(0, 1000);
    let table = RouteTable::new(&cfg.routes, false);
    let route = table.find(&Method::GET, "/bench").unwrap();
    let verified = f.rt.block_on(f.verifier.verify(&f.token, UseRule::Issuer)).unwrap();
    let permit = policy::decide(route, Authn::Verified(verified), &["main".to_owned()]).ok().unwrap();
    let request_id = HeaderValue::from_static("0123456789abcdef0123456789abcdef");
    let fwd = Forwarding {
        peer: SocketAddr::from(([10, 0, 0, 7], 51234)),
        tls: false,
        request_id: &request_id,
        identity: &cfg.identity,
        credential_headers: &[],
    };
    let template = request_headers(&f.token);
    let mut check = template.clone();
    headers::strip_untrusted(&mut check, &cfg.identity);
    headers::rewrite_for_upstream(&mut check, &permit, &fwd);
    assert_eq!(check.get("x-user-sub").unwrap(), "0f4ea2b0-3c51-4a3c-9d2b-6b4d2f8f6f11");
    assert!(check.get("authorization").is_none());
    b.with_inputs(|| template.clone()).bench_local_values(|mut h| {
        headers::strip_untrusted(&mut h, &cfg.identity);
        headers::rewrite_for_upstream(&mut h, &permit, &fwd);
        h
    });
}

/// The whole decision a proxied request pays for before its upstream call, as the pipeline calls
/// it: `decision::authorize` on a cached token against one config snapshot (checks, strip,
/// normalise, route, credential, verify, policy, header rewrite).
#[divan::bench]
fn authorize_cached(b: Bencher) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let issuer = SigningKey::generate("k1").unwrap();
    let source: Box<dyn KeySource> = Box::new(Static(Bytes::from(issuer.jwks().to_string())));
    let snapshot = rt.block_on(async {
        let snapshot = Runtime::build(config(200, 1000), &Arc::new(Metrics::new()), vec![Some(source)]).unwrap();
        for i in snapshot.verifier.issuers() {
            i.keys.refresh().await.expect("keys load");
        }
        snapshot
    });
    let token = issuer.mint(&access_claims(ISS, CLIENT, "0f4ea2b0-3c51-4a3c-9d2b-6b4d2f8f6f11", &["admins"], "openid"));
    let conn = Conn { peer: SocketAddr::from(([10, 0, 0, 7], 51234)), tls: false };
    let request_id = HeaderValue::from_static("0123456789abcdef0123456789abcdef");
    let head = || {
        let mut req = http::Request::get("/svc197/a/b/c").body(()).unwrap();
        *req.headers_mut() = request_headers(&token);
        req.into_parts().0
    };
    let decide = |mut head: http::request::Parts| {
        let mut verdict = Verdict::default();
        let permit = rt.block_on(decision::authorize(&snapshot, &mut head, conn, &request_id, &mut verdict));
        (permit.is_ok(), head)
    };
    // Twice: a token is cached on its second verification.
    assert!(decide(head()).0 && decide(head()).0, "the bench request is allowed");
    b.with_inputs(head).bench_local_values(decide);
}

/// Opening a session cookie the size of a real Cognito one (SPEC §8; about 2.5 KB sealed): base64
/// decode + AES-256-GCM-SIV open + decode, against the SHA-256 digest of the same value.
#[divan::bench]
fn session_cookie_open(b: Bencher) {
    use portcullis::auth::login::seal::{Purpose, Sealer};
    use portcullis::auth::login::sessions::SessionCookie;
    let sealer = Sealer::new(&[config::Secret(vec![7; 32])], Purpose::Session).unwrap();
    let refresh = "r".repeat(1_800);
    let cookie = SessionCookie::new("0f4ea2b0-3c51-4a3c-9d2b-6b4d2f8f6f11", &refresh, 86_400).unwrap();
    let sealed = sealer.seal(b"__Host-portcullis", &cookie.encode().unwrap()).unwrap();
    b.bench_local(|| {
        let (plain, _) = sealer.open(b"__Host-portcullis", black_box(&sealed)).unwrap();
        SessionCookie::decode(&plain).unwrap()
    });
}

#[divan::bench]
fn session_cookie_digest(b: Bencher) {
    let sealed = "A".repeat(2_531);
    b.bench_local(|| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, black_box(sealed.as_bytes())));
}
