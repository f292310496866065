//! Everything the access decision is made of: the route table, where credentials come from,
//! signing keys, token verification, the identity headers a verified token becomes, and the
//! policy that turns all of it into a `Permit` or a refusal. Knows nothing about sockets or the
//! upstream.

pub(crate) mod credentials;
pub(crate) mod identity;
pub mod jwks;
pub mod login;
pub mod policy;
pub mod route;
pub mod verify;
