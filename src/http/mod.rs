//! Request and response plumbing with no policy and no config: the streamed body type, the path
//! normaliser, `Cookie` parsing, percent-encoding, the well-formedness checks on a request head, and the one mapping from a refusal
//! to an HTTP response.

pub(crate) mod body;
pub mod cookie;
pub mod error;
pub mod path;
pub mod percent;
pub(crate) mod request;
