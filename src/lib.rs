//! Portcullis: an authenticating reverse proxy that verifies Amazon Cognito JWTs locally and
//! forwards allowed requests with trusted identity headers. This crate root wires the pieces into
//! a running [`App`]; the binary (`main.rs`) is a thin CLI over it, so integration tests start
//! exactly what production runs.
#![forbid(unsafe_code)]

pub mod admin;
pub mod body;
pub mod cases;
pub mod config;
pub mod credentials;
pub mod demo;
pub mod error;
pub mod explain;
pub mod headers;
pub mod issuer;
pub mod jwks;
pub mod lint;
pub mod log;
pub mod login;
pub mod metrics;
pub mod path;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod route;
pub mod schema;
pub mod server;
pub mod upstream;
pub mod verify;
pub mod yaml;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use http::HeaderName;

use crate::config::{Config, CredentialSource};
use crate::jwks::{IssuerKeys, KeySource};
use crate::metrics::Metrics;
use crate::route::RouteTable;
use crate::upstream::Upstream;
use crate::verify::{IssuerRuntime, Verifier};

/// Everything built from one config: what a request uses from start to end.
pub struct Runtime {
    pub config: Config,
    pub routes: RouteTable,
    pub verifier: Verifier,
    pub upstream: Upstream,
    /// Header credential sources, removed before forwarding unless `forward_token`.
    pub credential_headers: Vec<HeaderName>,
    /// Browser sign-in (SPEC §8), when `login` is configured.
    pub login: Option<login::LoginRuntime>,
    client_ids: Vec<String>,
    issuer_names: Vec<String>,
    /// One per issuer, shared with the next snapshot when a reload keeps that issuer's key
    /// cache: the refresher stops only when no snapshot uses the cache any more.
    refreshers: Vec<Arc<Refresher>>,
}

/// Aborts an issuer's JWKS refresher when the last snapshot using it is dropped.
pub struct Refresher(tokio::task::AbortHandle);

impl Drop for Refresher {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Runtime {
    /// Build from a validated config. `sources` overrides the key source per issuer (tests);
    /// otherwise the config's `jwks_uri`/`jwks_file`/`cognito` decides. Must run inside Tokio.
    pub fn build(
        config: Config,
        metrics: &Arc<Metrics>,
        sources: Vec<Option<Box<dyn KeySource>>>,
    ) -> Result<Self, String> {
        Self::build_next(config, metrics, sources, None)
    }

    /// As [`Runtime::build`], for a reload: an issuer whose name, `iss`, key location and
    /// `jwks:` settings are unchanged keeps `previous`'s key cache (no refetch, no cold start)
    /// and its refresher.
    pub fn build_next(
        config: Config,
        metrics: &Arc<Metrics>,
        mut sources: Vec<Option<Box<dyn KeySource>>>,
        previous: Option<&Runtime>,
    ) -> Result<Self, String> {
        let settings = jwks::Settings::from(&config.jwks);
        let mut issuers = Vec::new();
        let mut refreshers = Vec::new();
        sources.resize_with(config.issuers.len(), || None);
        for (iss, source) in config.issuers.iter().zip(sources) {
            let reused = previous.filter(|_| source.is_none()).and_then(|prev| prev.reusable_keys(iss, &config.jwks));
            if let Some((keys, refresher)) = reused {
                refreshers.push(refresher);
                issuers.push(IssuerRuntime { config: iss.clone(), keys });
                continue;
            }
            let source = match source {
                Some(s) => s,
                None => jwks::source_for(&iss.keys, &config.jwks)?,
            };
            let keys = IssuerKeys::new(&iss.name, source, settings.clone(), metrics.clone());
            refreshers.push(Arc::new(Refresher(keys.spawn_refresher().abort_handle())));
            issuers.push(IssuerRuntime { config: iss.clone(), keys });
        }
        let client_ids = config.issuers.iter().flat_map(|i| i.client_ids.iter().cloned()).collect();
        let credential_headers = config
            .credentials
            .iter()
            .filter_map(|c| match c {
                CredentialSource::Header(h) => Some(h.clone()),
                _ => None,
            })
            .collect();
        let login = login::LoginRuntime::build(&config, previous.and_then(|p| p.login.as_ref()))?;
        Ok(Runtime {
            login,
            routes: RouteTable::new(&config.routes, config.case_insensitive),
            verifier: Verifier::new(issuers, &config, metrics.clone()),
            upstream: Upstream::new(&config.upstream),
            credential_headers,
            client_ids,
            issuer_names: config.issuers.iter().map(|i| i.name.clone()).collect(),
            refreshers,
            config,
        })
    }

    /// This snapshot's key cache for `iss`, if the issuer is the same one with the same key
    /// location and the `jwks:` settings did not change.
    fn reusable_keys(&self, iss: &config::Issuer, jwks: &config::Jwks) -> Option<(Arc<IssuerKeys>, Arc<Refresher>)> {
        if self.config.jwks != *jwks {
            return None;
        }
        let i = self.verifier.issuers().iter().position(|old| {
            old.config.name == iss.name && old.config.issuer == iss.issuer && old.config.keys == iss.keys
        })?;
        Some((self.verifier.issuers()[i].keys.clone(), self.refreshers.get(i)?.clone()))
    }

    /// Every configured app client id (for Amplify cookie names).
    pub fn client_ids(&self) -> &[String] {
        &self.client_ids
    }

    /// Issuer names by index (for `require.issuers`).
    pub fn issuer_names(&self) -> &[String] {
        &self.issuer_names
    }

    /// Every issuer has usable keys.
    pub fn keys_ready(&self) -> bool {
        self.verifier.issuers().iter().all(|i| i.keys.is_usable())
    }
}

/// State shared by every connection of a running app.
pub struct Shared {
    pub metrics: Arc<Metrics>,
    pub runtime: ArcSwap<Runtime>,
    draining: AtomicBool,
}

impl Shared {
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
    /// Ready: config loaded, every issuer has usable keys, not draining.
    pub fn is_ready(&self) -> bool {
        let ready = !self.is_draining() && self.runtime.load().keys_ready();
        self.metrics.ready.set(if ready { 1.0 } else { 0.0 });
        ready
    }
}

/// A running Portcullis: proxy and admin listeners bound and serving.
pub struct App {
    pub shared: Arc<Shared>,
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// The serving certificate when `listen` terminates TLS (swapped by reloads).
    pub tls_certs: Option<Arc<server::CertStore>>,
    stop_accepting: tokio::sync::watch::Sender<bool>,
    proxy_task: tokio::task::JoinHandle<()>,
    admin_task: tokio::task::JoinHandle<()>,
}

impl App {
    /// Bind both listeners (the config's addresses) and start serving.
    pub async fn start(config: Config) -> Result<App, String> {
        Self::start_with_sources(config, Vec::new()).await
    }

    /// As [`App::start`], with per-issuer key sources overriding the config (tests).
    pub async fn start_with_sources(config: Config, sources: Vec<Option<Box<dyn KeySource>>>) -> Result<App, String> {
        let metrics = Arc::new(Metrics::new());
        let tls_certs = match &config.tls {
            Some(t) => Some(server::CertStore::load(t)?),
            None => None,
        };
        let tls = match &tls_certs {
            Some(store) => Some(server::tls_acceptor(store.clone())?),
            None => None,
        };
        let proxy_listener = server::bind(config.listen).map_err(|e| format!("listen {}: {e}", config.listen))?;
        let admin_listener =
            server::bind(config.admin_listen).map_err(|e| format!("admin_listen {}: {e}", config.admin_listen))?;
        let proxy_addr = proxy_listener.local_addr().map_err(|e| e.to_string())?;
        let admin_addr = admin_listener.local_addr().map_err(|e| e.to_string())?;
        let settings = server::Settings::from(&config);
        let runtime = Runtime::build(config, &metrics, sources)?;
        metrics.config_generation.set(1);
        metrics.config_reloads_total.with_label_values(&["ok"]).inc_by(0);
        metrics.config_reloads_total.with_label_values(&["error"]).inc_by(0);
        let shared =
            Arc::new(Shared { metrics, runtime: ArcSwap::from_pointee(runtime), draining: AtomicBool::new(false) });
        let (stop_accepting, stop_rx) = tokio::sync::watch::channel(false);
        let proxy_task = tokio::spawn(server::serve(shared.clone(), proxy_listener, tls, settings, stop_rx.clone()));
        let admin_task = tokio::spawn(admin::serve(shared.clone(), admin_listener, stop_rx));
        Ok(App { shared, proxy_addr, admin_addr, tls_certs, stop_accepting, proxy_task, admin_task })
    }

    /// SIGTERM, step one: readiness turns false at once; connections are still accepted.
    pub fn begin_drain(&self) {
        self.shared.draining.store(true, Ordering::Release);
        self.shared.metrics.ready.set(0.0);
        tracing::info!("draining: readiness is false, still accepting for shutdown.delay");
    }

    /// The whole SIGTERM sequence (SPEC §6): drain, keep accepting for `shutdown.delay`, stop
    /// accepting, let in-flight requests finish for up to `shutdown.grace`.
    pub async fn shutdown(self) {
        let shutdown = self.shared.runtime.load().config.shutdown.clone();
        self.begin_drain();
        tokio::time::sleep(shutdown.delay).await;
        self.stop().await;
    }

    /// Stop accepting now and drain in-flight requests (bounded by `shutdown.grace`).
    pub async fn stop(self) {
        tracing::info!("closing listeners; draining in-flight requests");
        let _ = self.stop_accepting.send(true);
        let _ = self.proxy_task.await;
        self.admin_task.abort();
        tracing::info!("shutdown complete");
    }
}
