//! The Grafana dashboard (deploy/grafana-dashboard.json) only charts what Portcullis exports: every
//! `portcullis_*` name in its queries is registered with help text, every `decision` value a query
//! selects is one the proxy records, and the refusal and error panels follow SPEC §6's split —
//! client-caused refusals are `deny`, `error` is kept for faults of Portcullis or the app and for
//! clients that went away — with only real reasons named in their descriptions.

use std::collections::BTreeSet;

use portcullis::http::error::{Decision, Reason, Rejection};
use portcullis::telemetry::metrics::Metrics;

fn dashboard() -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana-dashboard.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn exprs(panel: &serde_json::Value) -> Vec<&str> {
    panel["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap()).collect()
}

#[test]
fn every_dashboard_metric_exists() {
    let dash = dashboard();
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
        for expr in exprs(panel) {
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

/// The `decision` values a selector names: `decision="x"` or `decision=~"x|y"`.
fn decision_selectors(expr: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("decision") {
        rest = &rest[i + "decision".len()..];
        let value = rest.trim_start_matches(['=', '~', '!']);
        if value.len() == rest.len() || !value.starts_with('"') {
            continue;
        }
        let value = &value[1..];
        let end = value.find('"').unwrap_or(value.len());
        out.push(value[..end].split('|').map(str::to_owned).collect());
    }
    out
}

/// Reason-shaped words (`snake_case`) in a description.
fn reason_words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_lowercase() || c == '_'))
        .filter(|w| w.contains('_') && !w.starts_with('_') && !w.ends_with('_'))
        .map(str::to_owned)
        .collect()
}

#[test]
fn refusals_and_errors_follow_the_spec_decision_split() {
    let dash = dashboard();
    let decisions: BTreeSet<&str> = Decision::ALL.iter().map(|d| d.as_str()).collect();
    let reasons: BTreeSet<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    // The reasons that come with decision="error", asked of the product, not written down here.
    let faults = [
        Rejection::KeysUnavailable,
        Rejection::UpstreamConnect,
        Rejection::UpstreamReset,
        Rejection::UpstreamProtocol,
        Rejection::UpstreamTimeout,
        Rejection::ClientAbort,
    ];
    assert!(faults.iter().all(|r| r.decision() == Decision::Error));
    let error_reasons: BTreeSet<String> = faults.iter().map(|r| r.reason().as_str().to_owned()).collect();

    let panels = dash["panels"].as_array().unwrap();
    let mut by_decision = std::collections::BTreeMap::new();
    for panel in panels {
        for expr in exprs(panel) {
            for values in decision_selectors(expr) {
                for v in &values {
                    assert!(decisions.contains(v.as_str()), "{expr}: decision {v:?} is never recorded");
                }
                if expr.contains("by (reason)") && values.len() == 1 {
                    by_decision.insert(values[0].clone(), panel);
                }
            }
        }
    }
    let deny = by_decision.get("deny").expect("a panel of client-caused refusals by reason (decision=\"deny\")");
    let error = by_decision.get("error").expect("a panel of errors by reason (decision=\"error\")");
    let named = |p: &serde_json::Value| reason_words(p["description"].as_str().unwrap_or_default());
    for word in named(deny) {
        assert!(reasons.contains(word.as_str()), "refusal panel names `{word}`, which is not a reason");
        assert!(!error_reasons.contains(&word), "refusal panel names `{word}`, which is an error, not a denial");
    }
    assert_eq!(named(error), error_reasons, "the error panel's description lists exactly the error reasons");
}
