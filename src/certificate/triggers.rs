//! The renewal policies: small pure checks, each saying whether the Secret must be re-issued
//! and why. The reason strings are user-facing (status conditions, Events), cert-manager style.

use std::collections::BTreeSet;

use jiff::Timestamp;

use super::secret::{CurrentKeyPair, SecretState};
use super::spec::ValidatedSpec;
use crate::issuer::rotation::RotationGate;
use crate::pki::{CaKeyPair, CertificateInfo};
use crate::revocation::{RevokeRequest, RevokedSerial, revocation_of};

/// Why a certificate is (re-)issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TriggerReason {
    SecretMissing,
    MissingData,
    InvalidData,
    KeyMismatch,
    IncorrectIssuer,
    SpecMismatch,
    CaRotated,
    Revoked,
    Expired,
    ManuallyTriggered,
    RenewalDue,
}

impl TriggerReason {
    /// The reason string shown in conditions and Events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SecretMissing => "DoesNotExist",
            Self::MissingData => "MissingData",
            Self::InvalidData => "InvalidData",
            Self::KeyMismatch => "InvalidKeyPair",
            Self::IncorrectIssuer => "IncorrectIssuer",
            Self::SpecMismatch => "SecretMismatch",
            Self::CaRotated => "CARotated",
            Self::Revoked => "Revoked",
            Self::Expired => "Expired",
            Self::ManuallyTriggered => "ManuallyTriggered",
            Self::RenewalDue => "Renewing",
        }
    }

    /// Whether the certificate in the Secret is unusable for the current spec, so the
    /// Certificate is not Ready until a new one is issued. Renewal, a manual request and a
    /// rotated CA leave a still-valid certificate in place meanwhile.
    pub fn invalidates_current(self) -> bool {
        !matches!(self, Self::RenewalDue | Self::ManuallyTriggered | Self::CaRotated)
    }
}

/// A fired policy: the reason and a sentence for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trigger {
    pub reason: TriggerReason,
    pub message: String,
}

fn fire(reason: TriggerReason, message: impl Into<String>) -> Option<Trigger> {
    Some(Trigger {
        reason,
        message: message.into(),
    })
}

/// How the referenced issuer signs.
#[derive(Debug, Clone)]
pub enum Signer {
    SelfSigned,
    Ca(std::sync::Arc<CaKeyPair>),
}

/// Everything the policies look at besides the Secret.
pub struct PolicyInput<'a> {
    pub spec: &'a ValidatedSpec,
    pub signer: &'a Signer,
    /// When the current certificate is due for renewal.
    pub renewal_time: Option<Timestamp>,
    /// The time of the renew request still to be answered (`certkeeper.io/renew-requested-at`,
    /// see `requests::Pending`).
    pub renew_requested_at: Option<Timestamp>,
    /// Where the issuer's CA rotation stands, and the Certificate's UID that spreads re-issues.
    pub rotation: RotationGate,
    pub uid: &'a str,
    /// The issuer's revoked serials.
    pub revoked: &'a [RevokedSerial],
    /// The revoke request still to be answered (`certkeeper.io/revoke-requested-at` and reason).
    pub revoke_request: Option<RevokeRequest>,
    pub now: Timestamp,
}

/// The outcome of the policies.
#[derive(Debug)]
pub enum Decision<'a> {
    /// The Secret holds a valid certificate for the spec.
    UpToDate(&'a CurrentKeyPair),
    /// The first policy that fired.
    Issue(Trigger),
}

/// Runs the policies in order; the first that fires decides.
pub fn evaluate<'a>(input: &PolicyInput<'_>, secret: &'a SecretState) -> Decision<'a> {
    let current = match usable(secret) {
        Ok(current) => current,
        Err(trigger) => return Decision::Issue(trigger),
    };
    match policies(input, current) {
        Some(trigger) => Decision::Issue(trigger),
        None => Decision::UpToDate(current),
    }
}

/// The key pair the Secret holds, or why it holds none.
pub fn usable(secret: &SecretState) -> Result<&CurrentKeyPair, Trigger> {
    match secret {
        SecretState::Missing => Err(Trigger {
            reason: TriggerReason::SecretMissing,
            message: "the Secret does not exist".into(),
        }),
        SecretState::MissingData(key) => Err(Trigger {
            reason: TriggerReason::MissingData,
            message: format!("the Secret has no {key}"),
        }),
        SecretState::Invalid(why) => Err(Trigger {
            reason: TriggerReason::InvalidData,
            message: why.clone(),
        }),
        SecretState::Present(current) => Ok(current),
    }
}

/// The policies that need no issuer, for a Secret judged while its issuer is missing or not
/// Ready: None when it holds a valid certificate for the spec with nothing due, else the first
/// that fires. The issuer's CA is unknown, so a lifetime shorter than the spec's counts as
/// capped by the CA that signed it, and a CA rotation is left for when the issuer is back.
pub fn without_issuer(
    spec: &ValidatedSpec,
    renewal_time: Timestamp,
    renew_requested_at: Option<Timestamp>,
    revoked: &[RevokedSerial],
    revoke_request: Option<&RevokeRequest>,
    current: &CurrentKeyPair,
    now: Timestamp,
) -> Option<Trigger> {
    let leaf = current.leaf();
    let capped = leaf.not_after.duration_since(leaf.not_before) < spec.duration;
    self::revoked(revoked, revoke_request, leaf, now)
        .or_else(|| key_mismatch(current))
        .or_else(|| incorrect_issuer(spec, current))
        .or_else(|| differences(spec, current, capped))
        .or_else(|| expired(leaf, now))
        .or_else(|| manually_triggered(renew_requested_at, now))
        .or_else(|| renewal_due(Some(renewal_time), now))
}

/// The policies that look at a parseable Secret, in order.
fn policies(input: &PolicyInput<'_>, current: &CurrentKeyPair) -> Option<Trigger> {
    revoked(
        input.revoked,
        input.revoke_request.as_ref(),
        current.leaf(),
        input.now,
    )
    .or_else(|| key_mismatch(current))
    .or_else(|| incorrect_issuer(input.spec, current))
    .or_else(|| spec_mismatch(input.spec, input.signer, current))
    .or_else(|| ca_rotated(input.signer, current.leaf(), input.rotation, input.uid, input.now))
    .or_else(|| expired(current.leaf(), input.now))
    // A requested renewal waits, as a due one does, while a new root is being distributed.
    .or_else(|| {
        (input.rotation != RotationGate::Hold)
            .then(|| manually_triggered(input.renew_requested_at, input.now))
            .flatten()
    })
    .or_else(|| renewal_due(input.renewal_time, input.now))
}

/// The certificate is revoked (its serial is in the issuer's records), or a revoke request
/// still to be answered has come due: re-issued at once, with a new key whatever the rotation
/// policy, before any other policy is asked.
pub fn revoked(
    revoked: &[RevokedSerial],
    request: Option<&RevokeRequest>,
    leaf: &CertificateInfo,
    now: Timestamp,
) -> Option<Trigger> {
    if let Some(record) = revocation_of(leaf, revoked) {
        return fire(
            TriggerReason::Revoked,
            format!(
                "the certificate with serial {} was revoked at {} ({})",
                record.serial_hex, record.revoked_at, record.reason
            ),
        );
    }
    let request = request?;
    request.revokes(leaf, revoked, now).and(fire(
        TriggerReason::Revoked,
        format!(
            "revocation was requested at {} ({})",
            request.requested_at, request.reason
        ),
    ))
}

/// The Secret's private key is not the certificate's.
pub fn key_mismatch(current: &CurrentKeyPair) -> Option<Trigger> {
    if current.leaf().key_matches(&current.key) {
        None
    } else {
        fire(
            TriggerReason::KeyMismatch,
            "the private key in the Secret does not match the certificate",
        )
    }
}

/// The Secret was issued by another issuer than the one referenced now.
pub fn incorrect_issuer(spec: &ValidatedSpec, current: &CurrentKeyPair) -> Option<Trigger> {
    let want = [
        spec.issuer_ref.name.as_str(),
        spec.issuer_ref.kind(),
        spec.issuer_ref.group(),
    ];
    let have = [
        current.issuer_name.as_deref().unwrap_or(""),
        current.issuer_kind.as_deref().unwrap_or(""),
        current.issuer_group.as_deref().unwrap_or(""),
    ];
    if want == have {
        None
    } else {
        fire(
            TriggerReason::IncorrectIssuer,
            format!(
                "the Secret was issued by {} {:?}, the Certificate now references {} {:?}",
                if have[1].is_empty() {
                    "unknown issuer"
                } else {
                    have[1]
                },
                have[0],
                want[1],
                want[0]
            ),
        )
    }
}

fn set<T: Ord + Clone>(v: &[T]) -> BTreeSet<T> {
    v.iter().cloned().collect()
}

/// The certificate no longer says what the spec asks for: names, subject, usages, isCA, name
/// constraints, key type or size, or lifetime.
pub fn spec_mismatch(spec: &ValidatedSpec, signer: &Signer, current: &CurrentKeyPair) -> Option<Trigger> {
    let leaf = current.leaf();
    // A CA issuer caps a certificate at its own notAfter; that is not a mismatch. The CA that
    // capped it is the one that signed it (next in its chain), which after a CA rotation is no
    // longer the issuer's: judged by the issuer's, every capped leaf would look mismatched and
    // be re-issued at once, skipping the rotation's stages.
    // When that CA is not in tls.crt (a root signs leaves directly), a shorter lifetime under
    // a CA that is no longer the issuer's is left to `ca_rotated`, which re-issues in stages.
    let lifetime = leaf.not_after.duration_since(leaf.not_before);
    let capped_by = |ca: &CertificateInfo| ca.not_after == leaf.not_after && leaf.is_signed_by(ca);
    let capped = lifetime != spec.duration
        && match signer {
            Signer::Ca(ca) if ca.certificate().not_after == leaf.not_after => true,
            Signer::Ca(ca) => {
                current.chain.get(1).is_some_and(capped_by)
                    || (lifetime < spec.duration && !leaf.is_signed_by(ca.certificate()))
            }
            Signer::SelfSigned => false,
        };
    differences(spec, current, capped)
}

/// What of the certificate differs from the spec; a lifetime that differs only counts when
/// it was not `capped` by the CA that signed it.
fn differences(spec: &ValidatedSpec, current: &CurrentKeyPair, capped: bool) -> Option<Trigger> {
    let leaf = current.leaf();
    let mut differs: Vec<&str> = Vec::new();
    if spec.common_name != leaf.common_name {
        differs.push("commonName");
    }
    if set(&spec.dns_names) != set(&leaf.dns_names) {
        differs.push("dnsNames");
    }
    if set(&spec.ip_addresses) != set(&leaf.ip_addresses) {
        differs.push("ipAddresses");
    }
    if set(&spec.uris) != set(&leaf.uris) {
        differs.push("uris");
    }
    if set(&spec.email_addresses) != set(&leaf.email_addresses) {
        differs.push("emailAddresses");
    }
    let (a, b) = (&spec.subject, &leaf.subject);
    if set(&a.organizations) != set(&b.organizations)
        || set(&a.organizational_units) != set(&b.organizational_units)
        || set(&a.countries) != set(&b.countries)
        || set(&a.localities) != set(&b.localities)
        || set(&a.provinces) != set(&b.provinces)
        || set(&a.street_addresses) != set(&b.street_addresses)
        || set(&a.postal_codes) != set(&b.postal_codes)
        || a.serial_number != b.serial_number
    {
        differs.push("subject");
    }
    if spec.is_ca != leaf.is_ca {
        differs.push("isCA");
    }
    if spec.usages != leaf.usages {
        differs.push("usages");
    }
    let same_constraints = match (&spec.name_constraints, &leaf.name_constraints) {
        (Some(want), Some(have)) => want.equivalent(have),
        (want, have) => want.is_none() && have.is_none(),
    };
    if !same_constraints {
        differs.push("nameConstraints");
    }
    if spec.key != leaf.key_spec {
        differs.push("privateKey");
    }
    let lifetime = leaf.not_after.duration_since(leaf.not_before);
    if lifetime != spec.duration && !capped {
        differs.push("duration");
    }
    if differs.is_empty() {
        None
    } else {
        fire(
            TriggerReason::SpecMismatch,
            format!("the certificate differs from the spec in: {}", differs.join(", ")),
        )
    }
}

/// The certificate was not signed by the issuer's current CA (or, for a selfSigned issuer, is
/// not self-signed): the CA was rotated or the issuer changed type. Under a CA rotation the
/// re-issue waits for the issuer's `gate`: until the new root is distributed, then the
/// Certificate's slot in the reissue window.
pub fn ca_rotated(
    signer: &Signer,
    leaf: &CertificateInfo,
    gate: RotationGate,
    uid: &str,
    now: Timestamp,
) -> Option<Trigger> {
    match signer {
        Signer::SelfSigned if leaf.self_signed => None,
        Signer::SelfSigned => fire(
            TriggerReason::CaRotated,
            "the certificate is not self-signed but the issuer is selfSigned",
        ),
        Signer::Ca(ca) if leaf.is_signed_by(ca.certificate()) => None,
        Signer::Ca(ca) => match gate.reissue_at(uid) {
            Some(at) if now >= at => fire(
                TriggerReason::CaRotated,
                format!(
                    "the certificate was not signed by the issuer's current CA (SHA-256 {})",
                    ca.certificate().fingerprint_sha256
                ),
            ),
            _ => None,
        },
    }
}

/// When a certificate left under a rotated CA is due for re-issue, if it is waiting for one
/// (None: signed by the current CA, or held until the issuer has distributed the new root).
pub fn rotation_reissue_at(input: &PolicyInput<'_>, leaf: &CertificateInfo) -> Option<Timestamp> {
    match input.signer {
        Signer::Ca(ca) if !leaf.is_signed_by(ca.certificate()) => input.rotation.reissue_at(input.uid),
        _ => None,
    }
}

/// The renewal time while the issuer holds re-issues back (its new root is still being
/// distributed): pushed to halfway between the renewal time and notAfter, so a renewal
/// waits for the distribution but never for long enough to let the certificate expire.
pub fn held_renewal_time(renewal_time: Timestamp, not_after: Timestamp, gate: RotationGate) -> Timestamp {
    match gate {
        RotationGate::Hold if renewal_time < not_after => {
            renewal_time + not_after.duration_since(renewal_time) / 2
        }
        _ => renewal_time,
    }
}

/// notAfter has passed.
pub fn expired(leaf: &CertificateInfo, now: Timestamp) -> Option<Trigger> {
    if now >= leaf.not_after {
        fire(
            TriggerReason::Expired,
            super::expiry::expired_message(leaf.not_after),
        )
    } else {
        None
    }
}

/// A renewal request still to be answered has come due. One dated in the future waits until
/// its time (`Pending::next_due` wakes the Certificate then).
pub fn manually_triggered(requested_at: Option<Timestamp>, now: Timestamp) -> Option<Trigger> {
    match requested_at {
        Some(at) if at <= now => fire(
            TriggerReason::ManuallyTriggered,
            format!("renewal was requested at {at}"),
        ),
        _ => None,
    }
}

/// The renewal time has been reached.
pub fn renewal_due(renewal_time: Option<Timestamp>, now: Timestamp) -> Option<Trigger> {
    match renewal_time {
        Some(at) if now >= at => fire(
            TriggerReason::RenewalDue,
            format!("the renewal time {at} has been reached"),
        ),
        _ => None,
    }
}
