//! Portcullis: an authenticating reverse proxy that verifies Amazon Cognito JWTs locally and
//! forwards allowed requests with trusted identity headers. The binary (`main.rs`) is a thin CLI
//! over this library, so integration tests start exactly what production runs.
//!
//! This file is the module list and nothing else. Rooms by concern, each depending only on the
//! ones listed before it (README "Architecture"; `tests/layout.rs` checks it):
//! `http` → `config`, `telemetry` → `auth` → `proxy` → `serve` → `tools`.
#![forbid(unsafe_code)]
#![warn(clippy::disallowed_methods)]

pub mod http;

pub mod config;
pub mod telemetry;

pub mod auth;

pub mod proxy;

pub mod serve;

pub mod tools;

pub use serve::app::App;
