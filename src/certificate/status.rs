//! The Certificate's status, computed from what the controller found and did. Pure; an
//! unchanged result means no write.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{CertificateStatus, ConditionStatus, condition, set_condition};
use crate::pki::CertificateInfo;

pub const READY: &str = "Ready";
pub const ISSUING: &str = "Issuing";

/// Reasons of the Ready condition besides the trigger reasons.
pub mod reason {
    pub const READY: &str = "Ready";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const ISSUER_NOT_FOUND: &str = "IssuerNotFound";
    pub const ISSUER_NOT_READY: &str = "IssuerNotReady";
    pub const FAILED: &str = "Failed";
    pub const PENDING: &str = "Pending";
    /// No CertificatePolicy that applies allows the request (or the CA's name constraints).
    pub const DENIED: &str = "Denied";
    /// The CertificatePolicies cannot be known: nothing is signed by an issuer one could guard.
    pub const POLICY_UNAVAILABLE: &str = "PolicyUnavailable";
    /// A keystore's password Secret is missing, lacks its key or holds no text: the Secret is
    /// left as it is.
    pub const KEYSTORE_PASSWORD_UNAVAILABLE: &str = "KeystorePasswordUnavailable";
}

/// Facts of the certificate now in the Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedFacts {
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub renewal_time: Timestamp,
    pub serial_hex: String,
    pub revision: i64,
}

impl IssuedFacts {
    pub fn new(leaf: &CertificateInfo, renewal_time: Timestamp, revision: i64) -> Self {
        Self {
            not_before: leaf.not_before,
            not_after: leaf.not_after,
            renewal_time,
            serial_hex: leaf.serial_hex.clone(),
            revision,
        }
    }
}

fn with_facts(status: &mut CertificateStatus, facts: &IssuedFacts) {
    status.not_before = Some(Time(facts.not_before));
    status.not_after = Some(Time(facts.not_after));
    status.renewal_time = Some(Time(facts.renewal_time));
    status.serial_number = Some(facts.serial_hex.clone());
    status.revision = Some(facts.revision);
    // A warning about an earlier revision is history once a new certificate is in place.
    if status
        .last_expiry_warning
        .as_ref()
        .is_some_and(|w| w.revision != facts.revision)
    {
        status.last_expiry_warning = None;
    }
}

/// The Secret holds a valid certificate for the current spec: Ready=True, no failures.
pub fn ready(
    previous: &CertificateStatus,
    facts: &IssuedFacts,
    generation: Option<i64>,
    now: Timestamp,
) -> CertificateStatus {
    let mut status = previous.clone();
    with_facts(&mut status, facts);
    set_condition(
        &mut status.conditions,
        condition(
            READY,
            ConditionStatus::True,
            reason::READY,
            "Certificate is up to date and has not expired",
            generation,
            now,
        ),
    );
    status.conditions.retain(|c| c.type_ != ISSUING);
    status.last_failure_time = None;
    status.failed_issuance_attempts = None;
    status.observed_generation = generation;
    status
}

/// The Secret holds a valid certificate for the spec and nothing is due, but the issuer cannot
/// sign (missing or not Ready): Ready stays True, and `Issuing=False` carries the issuer's
/// reason and message, so the trouble shows without calling the Secret bad (cert-manager's
/// meaning of Ready). Both conditions keep their transition times while unchanged.
pub fn ready_without_issuer(
    previous: &CertificateStatus,
    facts: &IssuedFacts,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> CertificateStatus {
    let mut status = ready(previous, facts, generation, now);
    status.conditions = previous.conditions.clone();
    set_condition(
        &mut status.conditions,
        condition(
            READY,
            ConditionStatus::True,
            reason::READY,
            "Certificate is up to date and has not expired",
            generation,
            now,
        ),
    );
    set_condition(
        &mut status.conditions,
        condition(ISSUING, ConditionStatus::False, reason, message, generation, now),
    );
    status
}

/// The Certificate cannot be acted on (invalid spec, missing or unready issuer). Ready=False
/// with `reason`; what is known of the current certificate stays.
pub fn not_ready(
    previous: &CertificateStatus,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> CertificateStatus {
    let mut status = previous.clone();
    set_condition(
        &mut status.conditions,
        condition(READY, ConditionStatus::False, reason, message, generation, now),
    );
    status.observed_generation = generation;
    status
}

/// An issuance attempt failed. Ready stays True only while the current certificate is still
/// valid for the spec (`current` is Some); otherwise Ready=False with the trigger's reason.
pub fn issuance_failed(
    previous: &CertificateStatus,
    current: Option<&IssuedFacts>,
    trigger_reason: &str,
    trigger_message: &str,
    error: &str,
    generation: Option<i64>,
    now: Timestamp,
) -> CertificateStatus {
    let mut status = match current {
        Some(facts) => {
            let mut s = ready(previous, facts, generation, now);
            s.conditions = previous.conditions.clone();
            set_condition(
                &mut s.conditions,
                condition(
                    READY,
                    ConditionStatus::True,
                    reason::READY,
                    "Certificate is valid, but its renewal is failing",
                    generation,
                    now,
                ),
            );
            s
        }
        None => not_ready(previous, trigger_reason, trigger_message, generation, now),
    };
    set_condition(
        &mut status.conditions,
        condition(
            ISSUING,
            ConditionStatus::False,
            reason::FAILED,
            format!("issuance failed ({trigger_reason}): {error}"),
            generation,
            now,
        ),
    );
    status.last_failure_time = Some(Time(now));
    status.failed_issuance_attempts = Some(previous.failed_issuance_attempts.unwrap_or(0) + 1);
    status.observed_generation = generation;
    status
}
