//! The running process: listeners (proxy and admin), the app that binds them, and hot reload.

pub mod admin;
pub mod app;
pub mod reload;
pub mod server;
