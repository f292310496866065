//! Per-issuer signing-key cache (SPEC §2 "JWKS"), split along its seams: [`KeySource`] is where
//! key sets come from (HTTPS, a file, a test double — `sources`), [`IssuerKeys`] validates and
//! swaps them and answers "which key has this kid?" with the unknown-`kid` cooldown ("penalty
//! box") and single-flight refetch (`cache`), and [`Refresher`] keeps them fresh in the
//! background (`refresher`). It does not know about tokens: `verify` asks it for a key by `kid`.
//!
//! Time uses `tokio::time::Instant` (monotonic, pausable in tests); only the exported
//! last-success timestamp uses the wall clock.

mod cache;
mod refresher;
mod sources;

pub use cache::{IssuerKeys, Key, KeySet, Lookup, Settings, parse};
pub use refresher::Refresher;
pub(crate) use sources::outbound_client;
pub use sources::{FetchError, FileSource, HttpSource, KeySource, source_for};

#[cfg(test)]
mod tests;
