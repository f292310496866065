//! The running process: listeners (proxy and admin), the core threads that serve the proxy
//! listener, the app that binds them, and hot reload.

pub(crate) mod admin;
pub(crate) mod app;
pub(crate) mod linger;
pub mod percore;
pub mod reload;
pub(crate) mod server;
