//! The operator verbs beside `run`: `explain`, `test` (cases), `demo`, and the local token
//! minter they and the test suites use. They call the proxy's own decision code; they never copy
//! a step of it.

pub mod cases;
pub mod check;
pub mod demo;
pub mod explain;
pub mod mint;

/// Output of the operator verbs (`check`, `explain`, `test`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}
