//! An issuer's status from what its CA looks like. Pure.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::ca::CaProblem;
use crate::api::{ConditionStatus, IssuerStatus, condition, set_condition};
use crate::pki::CaFacts;

pub const READY: &str = "Ready";

/// What the issuer controller found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IssuerHealth {
    SelfSigned,
    Ca(CaFacts),
    Broken(CaProblem),
    /// The spec names neither or both issuer types (the CRD normally refuses this).
    InvalidSpec(String),
}

/// The status for `health`, keeping condition transition times that did not change.
pub fn issuer_status(
    previous: &IssuerStatus,
    health: &IssuerHealth,
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> IssuerStatus {
    let mut status = previous.clone();
    let (st, reason, message) = match health {
        IssuerHealth::SelfSigned => (
            ConditionStatus::True,
            "IsReady".to_owned(),
            "selfSigned issuer is ready".to_owned(),
        ),
        IssuerHealth::Ca(facts) => (
            ConditionStatus::True,
            "KeyPairVerified".to_owned(),
            format!("CA key pair verified; the CA expires at {}", facts.not_after),
        ),
        IssuerHealth::Broken(problem) => (
            ConditionStatus::False,
            problem.reason().to_owned(),
            problem.to_string(),
        ),
        IssuerHealth::InvalidSpec(why) => (ConditionStatus::False, "InvalidSpec".to_owned(), why.clone()),
    };
    set_condition(
        &mut status.conditions,
        condition(READY, st, &reason, message, generation, now),
    );
    match health {
        IssuerHealth::Ca(facts) => {
            status.ca_not_after = Some(Time(facts.not_after));
            status.ca_fingerprint_sha256 = Some(facts.fingerprint_sha256.clone());
        }
        IssuerHealth::SelfSigned | IssuerHealth::InvalidSpec(_) => {
            status.ca_not_after = None;
            status.ca_fingerprint_sha256 = None;
        }
        // A broken CA Secret says nothing about the CA; keep what was last known.
        IssuerHealth::Broken(CaProblem::Expired { not_after, .. }) => {
            status.ca_not_after = Some(Time(*not_after));
        }
        IssuerHealth::Broken(_) => {}
    }
    status.observed_generation = generation;
    status
}
