//! The Certificate controller. A certificate's life: `spec` validates the request, `secret`
//! reads what the Secret holds, `triggers` decide whether to (re-)issue, `schedule` says when
//! to look again, `expiry` when to warn, `requests` which renew and revoke annotations are still
//! to be answered, `status` says what to report, and `reconcile` is the one place that talks
//! to the API. `signer` resolves the issuer reference.

pub mod cached;
pub mod expiry;
pub mod keystores;
pub mod reconcile;
pub mod requests;
pub mod schedule;
pub mod secret;
pub mod signer;
pub mod spec;
pub mod status;
pub mod triggers;
pub mod verdict;

#[cfg(test)]
mod hostile_input_tests;
#[cfg(test)]
mod issuance_policy_tests;
#[cfg(test)]
mod keystore_tests;
#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod request_annotation_tests;
#[cfg(test)]
mod request_tests;
#[cfg(test)]
mod revocation_tests;
#[cfg(test)]
mod tests;
