//! Issuance policy (CertificatePolicy): which names, keys and lifetimes a Certificate may have
//! signed by an issuer a policy guards. Pure: `compile` reads a policy once, `decide` judges a
//! request against the policies with the reason a denial shows; `index` holds what the watches
//! say (policies and namespace labels) for the reconciles to read without a request.

pub mod cel;
mod compile;
mod decide;
mod index;
pub mod patterns;

#[cfg(test)]
mod name_constraint_tests;
#[cfg(test)]
mod tests;

pub use compile::{CompiledPolicy, Selector};
pub use decide::{
    Explained, IssuerId, PolicyDecision, Request, decide, explain, go_duration, judge, request_json,
};
pub use index::{Changed, Policies};
