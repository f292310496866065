//! What Portcullis tells operators: the Prometheus registry and the log setup. Records what the
//! other rooms report; decides nothing.

pub mod log;
pub mod metrics;
