//! Revoking a Certificate by annotation (SPEC "Revocation"): what the annotations ask for,
//! which record that adds, and whether the certificate a Secret holds is revoked. Pure; the
//! Certificate controller records and re-issues.

use std::collections::BTreeMap;

use super::{RevocationError, RevocationReason, RevokedSerial};
use crate::pki::CertificateInfo;

/// `certkeeper.io/revoke-requested-at: <RFC 3339>` on a Certificate.
pub const REVOKE_REQUESTED_AT: &str = "certkeeper.io/revoke-requested-at";
/// `certkeeper.io/revocation-reason: <RFC 5280 reason name>`, default `unspecified`.
pub const REVOCATION_REASON: &str = "certkeeper.io/revocation-reason";

/// A revocation asked for through a Certificate's annotations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokeRequest {
    /// `revoke-requested-at` as written: what the Certificate's status records once answered.
    pub value: String,
    pub requested_at: jiff::Timestamp,
    pub reason: RevocationReason,
}

impl RevokeRequest {
    /// The request the annotations make: `None` without `revoke-requested-at`, an error when
    /// either annotation cannot be read (the Certificate reports it; nothing is revoked on a
    /// guess).
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Result<Option<Self>, RevocationError> {
        let Some(at) = annotations.get(REVOKE_REQUESTED_AT) else {
            return Ok(None);
        };
        let requested_at = at
            .trim()
            .parse()
            .map_err(|_| RevocationError::InvalidRequestTime(at.chars().take(64).collect()))?;
        let reason = match annotations.get(REVOCATION_REASON) {
            Some(name) => name.parse()?,
            None => RevocationReason::Unspecified,
        };
        Ok(Some(Self {
            value: at.clone(),
            requested_at,
            reason,
        }))
    }

    /// The record revoking `leaf`, the certificate the Secret holds when this request (still
    /// to be answered, see `certificate::requests`) comes due: none before its time, nor when
    /// `leaf` is revoked already. Dated at the request, so recording it twice gives the same
    /// record.
    pub fn revokes(
        &self,
        leaf: &CertificateInfo,
        revoked: &[RevokedSerial],
        now: jiff::Timestamp,
    ) -> Option<RevokedSerial> {
        let due = self.requested_at <= now;
        (due && revocation_of(leaf, revoked).is_none()).then(|| RevokedSerial {
            serial_hex: leaf.serial_hex.clone(),
            revoked_at: self.requested_at,
            reason: self.reason,
        })
    }
}

/// The record revoking `leaf`, if any: a Secret holding it must be re-issued with a new key
/// (the Certificate controller's `Revoked` trigger).
pub fn revocation_of<'a>(leaf: &CertificateInfo, revoked: &'a [RevokedSerial]) -> Option<&'a RevokedSerial> {
    revoked.iter().find(|r| r.serial_hex == leaf.serial_hex)
}
