//! What Portcullis tells operators: the Prometheus registry, the log setup and the buffered
//! access-log writer. Records what the other rooms report; decides nothing.

pub mod log;
pub mod logbuf;
pub mod metrics;
