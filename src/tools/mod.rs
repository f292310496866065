//! The operator verbs beside `run`: `explain`, `test` (cases), `demo`, and the local token
//! minter they and the test suites use. They call the proxy's own decision code; they never copy
//! a step of it.

pub mod cases;
pub mod demo;
pub mod explain;
pub mod mint;
