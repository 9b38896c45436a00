//! certkeeper: a Kubernetes operator that issues certificates from in-cluster CAs into TLS
//! Secrets and renews them before they expire.

pub mod access;
pub mod api;
pub mod bundle;
pub mod certificate;
pub mod cli;
pub mod cluster;
pub mod context;
#[cfg(test)]
mod deploy_tests;
pub mod error;
#[cfg(test)]
mod fault_tests;
pub mod inventory;
pub mod issuance_policy;
pub mod issuer;
pub mod keystore;
pub mod pkcs11;
pub mod pki;
#[cfg(test)]
mod quickstart_tests;
pub mod revocation;
#[cfg(test)]
mod rotation_tests;
pub mod runner;
pub mod telemetry;
#[cfg(test)]
pub mod testing;
