//! The Bundle controller: gathers trust anchors from issuers, Secrets, ConfigMaps and inline
//! PEM, and keeps a ConfigMap (and optionally a Secret) with them in every namespace a Bundle's
//! selector matches. Pure stages (`selector`, `sources`, `assemble`, `pkcs12`, `targets`,
//! `status`) decide; `reconcile` is the one writer.

pub mod assemble;
pub mod pkcs12;
pub mod reconcile;
pub mod selector;
pub mod sources;
pub mod status;
pub mod targets;

#[cfg(test)]
mod tests;
