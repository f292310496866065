//! `portcullis check` (SPEC §5): the report for one config file — every load error with its
//! position, or the lint findings of a config that loads. Warnings never fail the check.

use crate::config::lint::lint;
use crate::config::{Config, ConfigError};
use crate::tools::OutputFormat;

/// The `portcullis check` report for a load result: the text to print and whether the config is
/// valid (exit 0) — warnings never fail the check.
pub fn report(file: &str, loaded: &Result<Config, ConfigError>, format: OutputFormat) -> (String, bool) {
    // The lints run once, here: decoding does not run them (it used to, and `check` linted twice).
    let findings = loaded.as_ref().map(lint).unwrap_or_default();
    let errors: &[String] = match loaded {
        Ok(_) => &[],
        Err(e) => &e.messages,
    };
    let ok = loaded.is_ok();
    let text = match format {
        OutputFormat::Json => {
            let counts = loaded.as_ref().ok().map(|c| (c.issuers.len(), c.routes.len()));
            let doc = serde_json::json!({
                "file": file,
                "ok": ok,
                "errors": errors,
                "warnings": findings,
                "issuers": counts.map(|c| c.0),
                "routes": counts.map(|c| c.1),
            });
            format!("{}\n", serde_json::to_string_pretty(&doc).unwrap_or_default())
        }
        OutputFormat::Text => {
            let mut out = String::new();
            for e in errors {
                out.push_str(&format!("error: {e}\n"));
            }
            for w in &findings {
                out.push_str(&format!("warning: {file}: {w}\n"));
            }
            match loaded {
                Ok(c) => out.push_str(&format!(
                    "ok: {} issuer(s), {} route(s), {} warning(s)\n",
                    c.issuers.len(),
                    c.routes.len(),
                    findings.len()
                )),
                Err(e) => out
                    .push_str(&format!("invalid: {} error(s); not a config Portcullis would load\n", e.messages.len())),
            }
            out
        }
    };
    (text, ok)
}
