//! Shared fixture for the fuzz targets: one parsed config, a verifier whose key cache holds a
//! freshly generated RS256 key, a token that key signed, and its verified identity. Built once per
//! process (the fuzzer calls a target millions of times).

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use portcullis::config::{self, Config};
use portcullis::tools::mint::{self, SigningKey};
use portcullis::auth::jwks::{FetchError, IssuerKeys, KeySource, Settings};
use portcullis::telemetry::metrics::Metrics;
use portcullis::auth::verify::{IssuerRuntime, Verified, Verifier};

pub const ISS: &str = "https://issuer.example/pool";
pub const CLIENT: &str = "fuzz-client";

pub const YAML: &str = "listen: 127.0.0.1:0
admin_listen: 127.0.0.1:1
upstream:
  url: http://127.0.0.1:1
issuers:
  - name: main
    issuer: https://issuer.example/pool
    jwks_file: /nonexistent
    client_ids: [fuzz-client]
    token_use: access
identity_headers:
  sub: X-User-Sub
  groups: X-User-Groups
  claims:
    X-User-Email: email
routes:
  - name: public
    path: /public/**
    auth: none
  - name: app
    path: /**
";

struct Static(Bytes);

impl KeySource for Static {
    fn fetch(&self, _: u64) -> futures_core_shim::BoxFuture<'_, Result<Bytes, FetchError>> {
        let b = self.0.clone();
        Box::pin(async move { Ok(b) })
    }
}

/// `futures_core::future::BoxFuture`, spelled out so the fuzz crate needs no extra dependency.
mod futures_core_shim {
    pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
}

pub struct Fixture {
    pub runtime: tokio::runtime::Runtime,
    pub config: Config,
    pub metrics: Arc<Metrics>,
    pub issuer: SigningKey,
    pub verifier: Verifier,
    pub token: String,
    pub verified: Arc<Verified>,
}

pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let config = config::parse(YAML, "fuzz.yaml", &|_| None).expect("fixture config");
        let metrics = Arc::new(Metrics::new());
        let issuer = SigningKey::generate("k1").expect("key");
        let keys = IssuerKeys::new(
            "main",
            Box::new(Static(Bytes::from(issuer.jwks().to_string()))),
            Settings::from(&config.jwks),
            metrics.clone(),
        );
        runtime.block_on(keys.refresh()).expect("keys load");
        let verifier =
            Verifier::new(vec![IssuerRuntime { config: config.issuers[0].clone(), keys }], &config, metrics.clone());
        let mut claims = mint::access_claims(ISS, CLIENT, "user-1", &["Admins", "a,b"], "openid");
        claims["email"] = serde_json::json!("user@example.com");
        let token = issuer.mint(&claims);
        let verified = runtime
            .block_on(verifier.verify(&token, portcullis::auth::verify::UseRule::Issuer))
            .expect("fixture token verifies");
        Fixture { runtime, config, metrics, issuer, verifier, token, verified }
    })
}
