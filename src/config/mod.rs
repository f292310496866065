//! The configuration file (SPEC §2): [`load`] and [`parse`] read the strict, spanned YAML tree
//! (`yaml`) and decode it section by section (`decode`) into the typed values of `model`. Every
//! problem is collected and reported at once with file, line and column; a config with any error
//! is never returned. Owns validation of values and of cross-references (issuer names, route
//! patterns — `pattern` —, templates). The lints (`lint`) are separate: decoding never runs them.
//! Does not own route matching (`auth::route`) or what the values do at run time.

use std::path::Path;

mod decode;
pub mod lint;
mod model;
pub(crate) mod pattern;
pub mod schema;
pub(crate) mod yaml;

pub use decode::{SCHEMA_KEYS, check_jwks_uri};
pub use model::*;
use yaml::{Diagnostic, Reader};

/// A config that failed to load: every diagnostic, already rendered with file:line:col.
#[derive(Debug, thiserror::Error)]
#[error("{}", .messages.join("\n"))]
pub struct ConfigError {
    pub messages: Vec<String>,
}

/// Read and validate the file at `path`. `env` looks up `${env:NAME}` values.
pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let source = std::fs::read_to_string(path)
        .map_err(|e| ConfigError { messages: vec![format!("{file}: cannot read config: {e}")] })?;
    parse(&source, &file, env)
}

/// Validate `source` (named `file` in messages).
pub fn parse(source: &str, file: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let render = |ds: Vec<Diagnostic>| ConfigError { messages: ds.iter().map(|d| yaml::render(file, d)).collect() };
    let root = match yaml::parse(source) {
        Ok(Some(root)) => root,
        Ok(None) => {
            return Err(ConfigError { messages: vec![format!("{file}: the config file is empty")] });
        }
        Err(ds) => return Err(render(ds)),
    };
    let mut r = Reader::new(env);
    let config = decode::decode(&mut r, &root);
    if r.has_errors() {
        return Err(render(r.diagnostics()));
    }
    config.ok_or_else(|| ConfigError { messages: vec![format!("{file}: invalid config")] })
}

#[cfg(test)]
mod tests;
