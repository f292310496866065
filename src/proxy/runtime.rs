//! One config snapshot made runnable ([`Runtime`]: route table, verifier with its key caches,
//! upstream client, the browser sign-in's state) and the state every connection shares ([`Shared`]: metrics, the current
//! snapshot, draining). A request loads one snapshot and uses it from start to end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use http::HeaderName;

use crate::auth::jwks::{self, IssuerKeys, KeySource, Refresher};
use crate::auth::login::LoginRuntime;
use crate::auth::route::RouteTable;
use crate::auth::verify::{IssuerRuntime, Verifier};
use crate::config::{self, Config, CredentialSource};
use crate::proxy::upstream::UpstreamClient;
use crate::telemetry::metrics::Metrics;

/// Everything built from one config: what a request uses from start to end.
pub struct Runtime {
    pub config: Config,
    pub routes: RouteTable,
    pub verifier: Verifier,
    pub upstream: UpstreamClient,
    /// Header credential sources, removed before forwarding unless `forward_token`.
    pub credential_headers: Vec<HeaderName>,
    /// Browser sign-in (SPEC §8), when `login` is configured.
    pub login: Option<LoginRuntime>,
    client_ids: Vec<String>,
    issuer_names: Vec<String>,
    /// One per issuer, shared with the next snapshot when a reload keeps that issuer's key
    /// cache: the refresher stops only when no snapshot uses the cache any more.
    refreshers: Vec<Arc<Refresher>>,
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
            refreshers.push(Arc::new(Refresher::start(&keys)));
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
        let login = LoginRuntime::build(&config, metrics, previous.and_then(|p| p.login.as_ref()))?;
        Ok(Runtime {
            login,
            routes: RouteTable::new(&config.routes, config.case_insensitive),
            verifier: Verifier::new(issuers, &config, metrics.clone()),
            upstream: UpstreamClient::new(&config.upstream),
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
    /// Shared state for the first snapshot (not draining).
    pub fn new(metrics: Arc<Metrics>, runtime: Runtime) -> Self {
        Shared { metrics, runtime: ArcSwap::from_pointee(runtime), draining: AtomicBool::new(false) }
    }

    /// Readiness turns false for good: the process is leaving (SIGTERM).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
        self.metrics.ready.set(0.0);
    }

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
