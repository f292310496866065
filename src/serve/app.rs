//! A running Portcullis ([`App`]): binds the proxy and admin listeners, builds the first
//! [`Runtime`] snapshot and serves until told to drain and stop (SPEC §6). The proxy listener is
//! served by the core threads (`percore`); the admin listener, reloads and JWKS refreshers run on
//! the runtime that started the app.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::auth::jwks::KeySource;
use crate::config::Config;
use crate::proxy::runtime::{Runtime, Shared};
use crate::serve::{admin, percore, server};
use crate::telemetry::metrics::Metrics;

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
        Self::start_on_cores(config, sources, percore::default_cores()).await
    }

    /// As [`App::start_with_sources`], serving the proxy listener on `cores` core threads
    /// (`percore`; at least one).
    pub async fn start_on_cores(
        config: Config,
        sources: Vec<Option<Box<dyn KeySource>>>,
        cores: usize,
    ) -> Result<App, String> {
        let metrics = Arc::new(Metrics::new());
        let tls_certs = match &config.tls {
            Some(t) => Some(server::CertStore::load(t)?),
            None => None,
        };
        let tls = match &tls_certs {
            Some(store) => Some(server::tls_acceptor(store.clone())?),
            None => None,
        };
        let proxy_listener =
            percore::bind(config.listen, cores).map_err(|e| format!("listen {}: {e}", config.listen))?;
        let admin_listener =
            server::bind(config.admin_listen).map_err(|e| format!("admin_listen {}: {e}", config.admin_listen))?;
        let proxy_addr = proxy_listener.local_addr();
        let admin_addr = admin_listener.local_addr().map_err(|e| e.to_string())?;
        let settings = server::ListenerSettings::from(&config);
        let runtime = Runtime::build(config, &metrics, sources)?;
        metrics.config_generation.set(1);
        metrics.config_reloads_total.with_label_values(&["ok"]).inc_by(0);
        metrics.config_reloads_total.with_label_values(&["error"]).inc_by(0);
        let shared = Arc::new(Shared::new(metrics, runtime));
        let (stop_accepting, stop_rx) = tokio::sync::watch::channel(false);
        let proxy_task = percore::spawn(shared.clone(), proxy_listener, tls, settings, stop_rx.clone())
            .map_err(|e| format!("cannot start the core threads: {e}"))?;
        let admin_task = tokio::spawn(admin::serve(shared.clone(), admin_listener, stop_rx));
        Ok(App { shared, proxy_addr, admin_addr, tls_certs, stop_accepting, proxy_task, admin_task })
    }

    /// SIGTERM, step one: readiness turns false at once; connections are still accepted.
    pub fn begin_drain(&self) {
        self.shared.start_draining();
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
