//! A Bundle's status, computed from what a reconcile found and did. Nothing in it changes
//! unless the bundle or its targets did, so an unchanged Bundle writes no status.

use jiff::Timestamp;

use super::assemble::Assembled;
use crate::api::{Bundle, BundleStatus, ConditionStatus, condition, find_condition, set_condition};

pub const READY: &str = "Ready";

/// The reasons of the `Ready` condition (user-facing, like cert-manager's).
pub mod reason {
    /// Every selected namespace holds the current bundle.
    pub const SYNCED: &str = "Synced";
    /// A source names an issuer, Secret, ConfigMap or key that does not exist (or an issuer
    /// without trust anchors).
    pub const SOURCE_NOT_FOUND: &str = "SourceNotFound";
    /// A source holds something other than PEM certificates.
    pub const INVALID_SOURCE: &str = "InvalidSource";
    /// The namespaceSelector is one the API server would refuse.
    pub const INVALID_SELECTOR: &str = "InvalidSelector";
    /// Every certificate of the sources has expired.
    pub const NO_CERTIFICATES: &str = "NoCertificates";
    /// Some targets could not be written.
    pub const TARGETS_NOT_SYNCED: &str = "TargetsNotSynced";
}

fn to_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The bundle `assembled` is in `synced` of the `targets` selected namespaces.
pub fn distributed(
    previous: &BundleStatus,
    assembled: &Assembled,
    targets: usize,
    synced: usize,
    generation: Option<i64>,
    now: Timestamp,
) -> BundleStatus {
    let mut status = previous.clone();
    status.fingerprints = assembled.fingerprints();
    status.certificates = Some(to_i32(assembled.certificates.len()));
    status.targets = Some(to_i32(targets));
    status.synced_targets = Some(to_i32(synced));
    status.observed_generation = generation;
    let ready = if synced == targets {
        let noun = if assembled.certificates.len() == 1 {
            "certificate"
        } else {
            "certificates"
        };
        condition(
            READY,
            ConditionStatus::True,
            reason::SYNCED,
            format!("{} {noun} in {targets} namespaces", assembled.certificates.len()),
            generation,
            now,
        )
    } else {
        condition(
            READY,
            ConditionStatus::False,
            reason::TARGETS_NOT_SYNCED,
            format!("{synced} of {targets} namespaces hold the current bundle"),
            generation,
            now,
        )
    };
    set_condition(&mut status.conditions, ready);
    status
}

/// The bundle cannot be built: Ready=False with `why`; what the status said of the targets,
/// which are left as they were, stays.
pub fn not_ready(
    previous: &BundleStatus,
    why: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> BundleStatus {
    let mut status = previous.clone();
    status.observed_generation = generation;
    set_condition(
        &mut status.conditions,
        condition(READY, ConditionStatus::False, why, message, generation, now),
    );
    status
}

/// Whether every target of `bundle` holds each certificate of `fingerprints`, as its status
/// reports for its current generation: what a CA rotation waits for before it moves on from
/// distributing a new root.
pub fn distributes(bundle: &Bundle, fingerprints: &[String]) -> bool {
    let Some(status) = &bundle.status else {
        return false;
    };
    let ready = find_condition(&status.conditions, READY).is_some_and(|c| c.status == "True");
    ready
        && status.observed_generation == bundle.metadata.generation
        && status.synced_targets == status.targets
        && fingerprints.iter().all(|f| status.fingerprints.contains(f))
}
