//! End-to-end tests: certkeeper against a real cluster, used as a user would use it (see
//! e2e/README.md). Without `CERTKEEPER_E2E=1` every test prints one line and passes.
//!
//! Run: `CERTKEEPER_E2E=1 cargo test --test e2e -- --test-threads=1`

mod cli;
mod hsm;
mod inventory;
mod keystores;
mod lifecycle;
mod observability;
mod operations;
mod policy;
mod revocation;
mod rotation;
mod support;
mod trust;
mod user_story;
