//! Acting on the decision: the config snapshot a request runs against, the pipeline that
//! sequences one request from arrival to access log, header rewriting and the upstream client.

pub mod decision;
pub mod headers;
pub mod login;
pub(crate) mod pipeline;
pub mod runtime;
pub mod upstream;
