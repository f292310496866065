//! Logging setup and the helpers that keep attacker-controlled text safe in logs: values are
//! escaped by the formatter (JSON or `Debug`-quoted text) and truncated here, so a client cannot
//! forge log lines or flood them (SECURITY OBS-02). Tokens are never passed to the logger at
//! all: callers log reasons, never credentials (OBS-01).

use std::fmt;

/// The longest attacker-controlled value written to a log line.
pub const MAX_LOGGED_CHARS: usize = 256;

/// A value shortened to at most `MAX_LOGGED_CHARS` characters, with control characters
/// replaced, for `%` display in log fields.
pub struct Truncated<'a>(&'a str);

pub fn truncate(s: &str) -> Truncated<'_> {
    Truncated(s)
}

impl fmt::Display for Truncated<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The common case in one write: short (bytes ≥ chars) and nothing to replace.
        if self.0.len() <= MAX_LOGGED_CHARS && !self.0.chars().any(char::is_control) {
            return f.write_str(self.0);
        }
        for (count, c) in self.0.chars().enumerate() {
            if count == MAX_LOGGED_CHARS {
                return f.write_str("…");
            }
            if c.is_control() {
                write!(f, "\\u{{{:x}}}", c as u32)?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Text,
}

/// Install the global subscriber. `RUST_LOG` wins over `level` when set. True when this call
/// installed it (a second init — tests, demo — keeps the first subscriber); the binary then turns
/// on the buffered access log for JSON (`logbuf::install`).
pub fn init(format: Format, level: &str) -> bool {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match format {
        Format::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        Format::Text => builder.with_ansi(false).try_init(),
    };
    result.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_and_neutralises_control_characters() {
        let forged = "a\n{\"level\":\"info\"}\u{1b}[31m";
        let shown = truncate(forged).to_string();
        assert!(!shown.contains('\n'));
        assert!(!shown.contains('\u{1b}'));
        let long = "x".repeat(10_000);
        assert_eq!(truncate(&long).to_string().chars().count(), MAX_LOGGED_CHARS + 1);
    }
}
