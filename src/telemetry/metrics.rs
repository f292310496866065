//! Prometheus metrics (SPEC §6), owned by the running app rather than a global registry so that
//! tests can start several apps in one process. Labels are bounded by construction: route names
//! come from config, reasons and decisions are closed enums, issuer names come from config.
//! Rendering for `/metrics` is in `admin`.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::http::error::{Decision, Reason};

const NS: &str = "portcullis";

/// Every metric Portcullis exports.
pub struct Metrics {
    registry: Registry,
    pub requests_total: IntCounterVec,
    pub request_duration_seconds: HistogramVec,
    pub auth_duration_seconds: Histogram,
    pub upstream_duration_seconds: HistogramVec,
    pub jwks_fetch_total: IntCounterVec,
    pub jwks_refetch_suppressed_total: IntCounterVec,
    pub jwks_keys: IntGaugeVec,
    pub jwks_last_success_timestamp_seconds: GaugeVec,
    pub token_cache_hits_total: IntCounter,
    pub token_cache_misses_total: IntCounter,
    pub token_cache_entries: IntGauge,
    pub stripped_headers_total: IntCounterVec,
    pub config_reloads_total: IntCounterVec,
    pub config_generation: IntGauge,
    pub upstream_errors_total: IntCounterVec,
    pub ready: Gauge,
    pub connections_rejected_total: IntCounter,
    pub core_connections_total: IntCounterVec,
    pub log_lines_dropped_total: IntCounter,
    /// Browser sign-ins by result (SPEC §6, §8).
    pub logins_total: IntCounterVec,
    /// Session token refreshes by result (SPEC §6, §8).
    pub session_refresh_total: IntCounterVec,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(NS)
}

fn hopts(name: &str, help: &str, buckets: Vec<f64>) -> HistogramOpts {
    HistogramOpts::new(name, help).namespace(NS).buckets(buckets)
}

/// Buckets from 10 µs to 10 s: auth runs in microseconds, upstreams in milliseconds.
fn latency_buckets() -> Vec<f64> {
    vec![
        0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
        0.5, 1.0, 2.5, 5.0, 10.0,
    ]
}

impl Metrics {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let registry = Registry::new();
        let m = Metrics {
            requests_total: IntCounterVec::new(
                opts("requests_total", "Requests by route, decision and reason."),
                &["route", "decision", "reason"],
            )
            .expect("static metric definition"),
            request_duration_seconds: HistogramVec::new(
                hopts("request_duration_seconds", "Whole request latency as seen by Portcullis.", latency_buckets()),
                &["route"],
            )
            .expect("static metric definition"),
            auth_duration_seconds: Histogram::with_opts(hopts(
                "auth_duration_seconds",
                "Portcullis's own cost per request: path, route, credential, verification and policy.",
                latency_buckets(),
            ))
            .expect("static metric definition"),
            upstream_duration_seconds: HistogramVec::new(
                hopts("upstream_duration_seconds", "Time until the upstream's response headers.", latency_buckets()),
                &["route"],
            )
            .expect("static metric definition"),
            jwks_fetch_total: IntCounterVec::new(
                opts("jwks_fetch_total", "JWKS fetches by issuer and result."),
                &["issuer", "result"],
            )
            .expect("static metric definition"),
            jwks_refetch_suppressed_total: IntCounterVec::new(
                opts(
                    "jwks_refetch_suppressed_total",
                    "Unknown-kid refetches skipped because the issuer is in its cooldown window.",
                ),
                &["issuer"],
            )
            .expect("static metric definition"),
            jwks_keys: IntGaugeVec::new(opts("jwks_keys", "Usable keys per issuer."), &["issuer"])
                .expect("static metric definition"),
            jwks_last_success_timestamp_seconds: GaugeVec::new(
                opts("jwks_last_success_timestamp_seconds", "Unix time of the last successful JWKS fetch."),
                &["issuer"],
            )
            .expect("static metric definition"),
            token_cache_hits_total: IntCounter::with_opts(opts("token_cache_hits_total", "Verified-token cache hits."))
                .expect("static metric definition"),
            token_cache_misses_total: IntCounter::with_opts(opts(
                "token_cache_misses_total",
                "Verified-token cache misses.",
            ))
            .expect("static metric definition"),
            token_cache_entries: IntGauge::with_opts(opts(
                "token_cache_entries",
                "Entries in the verified-token cache.",
            ))
            .expect("static metric definition"),
            stripped_headers_total: IntCounterVec::new(
                opts("stripped_headers_total", "Client headers removed before forwarding, by kind."),
                &["kind"],
            )
            .expect("static metric definition"),
            config_reloads_total: IntCounterVec::new(
                opts("config_reloads_total", "Configuration reloads by result."),
                &["result"],
            )
            .expect("static metric definition"),
            config_generation: IntGauge::with_opts(opts("config_generation", "Applied configuration generation."))
                .expect("static metric definition"),
            upstream_errors_total: IntCounterVec::new(
                opts("upstream_errors_total", "Upstream failures by kind."),
                &["kind"],
            )
            .expect("static metric definition"),
            ready: Gauge::with_opts(opts("ready", "1 when ready to serve, 0 otherwise."))
                .expect("static metric definition"),
            connections_rejected_total: IntCounter::with_opts(opts(
                "connections_rejected_total",
                "Connections closed at accept because limits.max_connections was reached.",
            ))
            .expect("static metric definition"),
            core_connections_total: IntCounterVec::new(
                opts("core_connections_total", "Connections accepted, by the core (thread) that serves them."),
                &["core"],
            )
            .expect("static metric definition"),
            log_lines_dropped_total: IntCounter::with_opts(opts(
                "log_lines_dropped_total",
                "Access-log lines lost because writing the log failed (process-wide).",
            ))
            .expect("static metric definition"),
            logins_total: IntCounterVec::new(
                opts(
                    "logins_total",
                    "Browser sign-in callbacks by result: ok, state_mismatch, idp_error, exchange_failed, token_invalid.",
                ),
                &["result"],
            )
            .expect("static metric definition"),
            session_refresh_total: IntCounterVec::new(
                opts("session_refresh_total", "Sign-in session token refreshes by result: ok, rejected, error."),
                &["result"],
            )
            .expect("static metric definition"),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.requests_total.clone()),
            Box::new(m.request_duration_seconds.clone()),
            Box::new(m.auth_duration_seconds.clone()),
            Box::new(m.upstream_duration_seconds.clone()),
            Box::new(m.jwks_fetch_total.clone()),
            Box::new(m.jwks_refetch_suppressed_total.clone()),
            Box::new(m.jwks_keys.clone()),
            Box::new(m.jwks_last_success_timestamp_seconds.clone()),
            Box::new(m.token_cache_hits_total.clone()),
            Box::new(m.token_cache_misses_total.clone()),
            Box::new(m.token_cache_entries.clone()),
            Box::new(m.stripped_headers_total.clone()),
            Box::new(m.config_reloads_total.clone()),
            Box::new(m.config_generation.clone()),
            Box::new(m.upstream_errors_total.clone()),
            Box::new(m.ready.clone()),
            Box::new(m.connections_rejected_total.clone()),
            Box::new(m.core_connections_total.clone()),
            Box::new(m.log_lines_dropped_total.clone()),
            Box::new(m.logins_total.clone()),
            Box::new(m.session_refresh_total.clone()),
        ];
        for c in collectors {
            m.registry.register(c).expect("metric names are unique");
        }
        m
    }

    pub fn record_request(&self, route: &str, decision: Decision, reason: Reason, seconds: f64) {
        self.requests_total.with_label_values(&[route, decision.as_str(), reason.as_str()]).inc();
        self.request_duration_seconds.with_label_values(&[route]).observe(seconds);
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        // The log buffers are process-wide (`logbuf`); catch the counter up with them.
        let dropped = crate::telemetry::logbuf::dropped_total();
        let shown = self.log_lines_dropped_total.get();
        if dropped > shown {
            self.log_lines_dropped_total.inc_by(dropped - shown);
        }
        let mut buf = Vec::new();
        let families = self.registry.gather();
        if TextEncoder::new().encode(&families, &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spec_metric_is_exported_with_help() {
        let m = Metrics::new();
        // Touch the vectors so they render.
        m.record_request("app", Decision::Allow, Reason::Ok, 0.001);
        m.jwks_fetch_total.with_label_values(&["main", "ok"]).inc();
        m.jwks_keys.with_label_values(&["main"]).set(2);
        m.jwks_last_success_timestamp_seconds.with_label_values(&["main"]).set(1.0);
        m.upstream_duration_seconds.with_label_values(&["app"]).observe(0.01);
        m.stripped_headers_total.with_label_values(&["identity"]).inc();
        m.config_reloads_total.with_label_values(&["ok"]).inc();
        m.upstream_errors_total.with_label_values(&["connect"]).inc();
        m.logins_total.with_label_values(&["ok"]).inc();
        m.session_refresh_total.with_label_values(&["ok"]).inc();
        let text = m.render();
        for name in [
            "requests_total",
            "request_duration_seconds",
            "auth_duration_seconds",
            "upstream_duration_seconds",
            "jwks_fetch_total",
            "jwks_keys",
            "jwks_last_success_timestamp_seconds",
            "token_cache_hits_total",
            "token_cache_misses_total",
            "token_cache_entries",
            "stripped_headers_total",
            "config_reloads_total",
            "config_generation",
            "upstream_errors_total",
            "ready",
            "log_lines_dropped_total",
            "logins_total",
            "session_refresh_total",
        ] {
            assert!(text.contains(&format!("# HELP portcullis_{name} ")), "missing {name}");
        }
    }
}
