//! The Grafana dashboard (deploy/grafana-dashboard.json) only charts metrics Portcullis exports:
//! every `portcullis_*` name in its queries is registered with help text.

use portcullis::error::{Decision, Reason};
use portcullis::metrics::Metrics;

#[test]
fn every_dashboard_metric_exists() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana-dashboard.json");
    let dash: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let m = Metrics::new();
    // Touch every labelled family so it renders.
    m.record_request("app", Decision::Allow, Reason::Ok, 0.001);
    m.upstream_duration_seconds.with_label_values(&["app"]).observe(0.01);
    m.jwks_fetch_total.with_label_values(&["main", "ok"]).inc();
    m.jwks_keys.with_label_values(&["main"]).set(1);
    m.jwks_last_success_timestamp_seconds.with_label_values(&["main"]).set(1.0);
    m.config_reloads_total.with_label_values(&["ok"]).inc();
    m.upstream_errors_total.with_label_values(&["connect"]).inc();
    m.logins_total.with_label_values(&["ok"]).inc();
    m.session_refresh_total.with_label_values(&["ok"]).inc();
    let text = m.render();
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    let mut names = Vec::new();
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(i) = rest.find("portcullis_") {
                let name: String = rest[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                rest = &rest[i + name.len()..];
                let base = name.trim_end_matches("_bucket").to_owned();
                names.push(base);
            }
        }
    }
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        assert!(text.contains(&format!("# HELP {name} ")), "the dashboard charts `{name}`, which is not exported");
    }
}
