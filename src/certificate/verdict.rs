//! What the last full look at a Certificate's Secret found, kept (in a `WatchedCache` that
//! follows the Secret's metadata watch) while the Secret stays at the version it was found at.
//! A reconcile woken by the controller's own writes, a deadline or an issuer's status then
//! judges the Certificate from the verdict, reading nothing. Pure.

use jiff::Timestamp;

use super::signer::Trust;
use super::status::IssuedFacts;
use super::triggers::Signer;
use crate::issuer::rotation::RotationGate;

/// A Certificate's Secret found to hold a valid certificate for the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Which Certificate object (a hash of its UID, see [`uid_hash`]), and which of its specs,
    /// it was found for.
    pub uid: u64,
    pub generation: Option<i64>,
    /// The values of `certkeeper.io/renew-requested-at` and `certkeeper.io/revoke-requested-at`
    /// it was judged with: another value is a new request, judged afresh.
    pub renew_requested_at: Option<Box<str>>,
    pub revoke_requested_at: Option<Box<str>>,
    /// When a request it saw still to be answered comes due: it holds only until then.
    pub requests_due_at: Option<Timestamp>,
    /// The CA it was judged against (SHA-256 of its certificate; None for selfSigned).
    pub signer: Option<[u8; 32]>,
    /// The `ca.crt` the Secret holds (SHA-256; None for selfSigned) and the issuer's rotation
    /// gate it was judged under: a rotation moving on is judged afresh.
    pub ca_pem: Option<[u8; 32]>,
    pub gate: RotationGate,
    /// Whether the certificate is signed by that CA (false: left under a rotated CA, to be
    /// re-issued at `reissue_at`, or held while the new root is distributed).
    pub under_current_ca: bool,
    pub reissue_at: Option<Timestamp>,
    pub facts: IssuedFacts,
    /// The Certificate's resourceVersion before and after the controller's last status write:
    /// a reconcile of the earlier version runs on a cache that has not seen that write yet.
    /// Boxed: once the write's echo has come, most verdicts keep none.
    pub status_written: Option<Box<(Box<str>, Box<str>)>>,
}

/// A Certificate's UID as a verdict keeps it: 8 bytes, not the 36 of the UID and its
/// allocation, for each of 10,000 verdicts. UIDs are random (set by the API server), so two
/// Certificates that follow each other under one name do not share a hash but by a 2^-64 chance.
pub fn uid_hash(uid: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(uid)
}

/// Who signs, as a verdict remembers it: the SHA-256 of the CA certificate.
pub fn signer_identity(signer: &Signer) -> Option<[u8; 32]> {
    match signer {
        Signer::SelfSigned => None,
        Signer::Ca(ca) => {
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &ca.certificate().der);
            digest.as_ref().try_into().ok()
        }
    }
}

/// The SHA-256 of the `ca.crt` `trust` asks for.
pub fn ca_pem_identity(trust: &Trust) -> Option<[u8; 32]> {
    let pem = trust.ca_pem.as_ref()?;
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, pem.as_bytes())
        .as_ref()
        .try_into()
        .ok()
}

/// What a reconcile knows before it reads the Secret.
#[derive(Clone, Copy, Debug)]
pub struct Current<'a> {
    pub uid: &'a str,
    pub generation: Option<i64>,
    pub renew_requested_at: Option<&'a str>,
    pub revoke_requested_at: Option<&'a str>,
    pub signer: Option<&'a [u8; 32]>,
    pub ca_pem: Option<&'a [u8; 32]>,
    pub gate: RotationGate,
    pub now: Timestamp,
}

impl Verdict {
    /// Whether the Secret still needs nothing: the same Certificate, spec, requests and CA as
    /// when it was judged, and neither a request it saw waiting, nor the renewal time, nor
    /// expiry come due. Anything else is judged by a full reconcile that reads the Secret.
    pub fn holds(&self, current: &Current<'_>) -> bool {
        self.signer.as_ref() == current.signer
            && self.ca_pem.as_ref() == current.ca_pem
            && self.gate == current.gate
            && self.reissue_at.is_none_or(|at| current.now < at)
            && self.holds_whatever_the_issuer(current)
    }

    /// Whether the Secret still holds a valid certificate for the spec with nothing due, as
    /// far as can be told without the issuer (missing or not Ready): the same Certificate,
    /// spec and requests, and neither the renewal time nor expiry reached.
    pub fn holds_whatever_the_issuer(&self, current: &Current<'_>) -> bool {
        self.uid == uid_hash(current.uid)
            && self.generation == current.generation
            && self.renew_requested_at.as_deref() == current.renew_requested_at
            && self.revoke_requested_at.as_deref() == current.revoke_requested_at
            && self.requests_due_at.is_none_or(|at| current.now < at)
            && current.now < self.facts.renewal_time
            && current.now < self.facts.not_after
    }

    /// Whether `resource_version` is the Certificate as it was before the controller's last
    /// status write, which the cache has not caught up with.
    pub fn precedes_own_status_write(&self, resource_version: Option<&str>) -> bool {
        matches!((self.status_written.as_deref(), resource_version), (Some((before, _)), Some(rv)) if &**before == rv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ts;

    fn verdict() -> Verdict {
        Verdict {
            uid: uid_hash("uid-web"),
            generation: Some(1),
            renew_requested_at: None,
            revoke_requested_at: None,
            requests_due_at: None,
            signer: Some([0xab; 32]),
            ca_pem: Some([0xcd; 32]),
            gate: RotationGate::Now,
            under_current_ca: true,
            reissue_at: None,
            facts: IssuedFacts {
                not_before: ts("2026-11-23T10:00:00Z"),
                not_after: ts("2026-11-24T10:00:00Z"),
                renewal_time: ts("2026-11-24T02:00:00Z"),
                serial_hex: "01".into(),
                revision: 1,
            },
            status_written: Some(Box::new(("10".into(), "11".into()))),
        }
    }

    fn current(now: &str) -> Current<'static> {
        Current {
            uid: "uid-web",
            generation: Some(1),
            renew_requested_at: None,
            revoke_requested_at: None,
            signer: Some(&[0xab; 32]),
            ca_pem: Some(&[0xcd; 32]),
            gate: RotationGate::Now,
            now: ts(now),
        }
    }

    #[test]
    fn holds_until_the_renewal_time_for_the_same_certificate_spec_and_ca() {
        let v = verdict();
        assert!(v.holds(&current("2026-11-23T12:00:00Z")));
        assert!(!v.holds(&current("2026-11-24T02:00:00Z")), "renewal due");
        assert!(!v.holds(&Current {
            generation: Some(2),
            ..current("2026-11-23T12:00:00Z")
        }));
        assert!(!v.holds(&Current {
            uid: "other",
            ..current("2026-11-23T12:00:00Z")
        }));
        assert!(!v.holds(&Current {
            signer: Some(&[0xef; 32]),
            ..current("2026-11-23T12:00:00Z")
        }));
        assert!(!v.holds(&Current {
            signer: None,
            ..current("2026-11-23T12:00:00Z")
        }));
        let requested = Current {
            renew_requested_at: Some("2026-11-23T11:00:00Z"),
            ..current("2026-11-23T12:00:00Z")
        };
        assert!(!v.holds(&requested), "a new renewal request is judged afresh");
        let revoke = Current {
            revoke_requested_at: Some("2026-11-23T11:00:00Z"),
            ..current("2026-11-23T12:00:00Z")
        };
        assert!(!v.holds(&revoke), "a revoke request is judged afresh");
    }

    #[test]
    fn a_rotation_moving_on_or_a_new_ca_crt_is_judged_afresh() {
        let v = verdict();
        let now = "2026-11-23T12:00:00Z";
        assert!(!v.holds(&Current {
            ca_pem: Some(&[0xee; 32]),
            ..current(now)
        }));
        assert!(!v.holds(&Current {
            gate: RotationGate::Hold,
            ..current(now)
        }));
        let waiting = Verdict {
            reissue_at: Some(ts("2026-11-23T11:00:00Z")),
            ..verdict()
        };
        assert!(waiting.holds(&current("2026-11-23T10:30:00Z")));
        assert!(
            !waiting.holds(&current("2026-11-23T11:00:00Z")),
            "its re-issue slot came"
        );
    }

    #[test]
    fn without_the_issuer_holds_for_the_same_spec_and_requests_until_due() {
        let v = verdict();
        let now = "2026-11-23T12:00:00Z";
        // The issuer is missing or not Ready: its CA and rotation are unknown.
        let unknown = Current {
            signer: None,
            ca_pem: None,
            gate: RotationGate::Hold,
            ..current(now)
        };
        assert!(!v.holds(&unknown));
        assert!(v.holds_whatever_the_issuer(&unknown));
        assert!(
            !v.holds_whatever_the_issuer(&current("2026-11-24T02:00:00Z")),
            "renewal due"
        );
        assert!(!v.holds_whatever_the_issuer(&Current {
            generation: Some(2),
            ..unknown
        }));
        assert!(!v.holds_whatever_the_issuer(&Current {
            renew_requested_at: Some("2026-11-23T11:00:00Z"),
            ..unknown
        }));
    }

    #[test]
    fn a_request_seen_waiting_is_judged_afresh_when_it_comes_due() {
        // Judged at 10:00:00.5 with a renewal requested for 10:00:01 (a command run on a clock
        // a second ahead): the request is the same when the requeue comes, but now it is due.
        let request = "2026-11-23T10:00:01Z";
        let waiting = Verdict {
            renew_requested_at: Some(request.into()),
            requests_due_at: Some(ts(request)),
            ..verdict()
        };
        let at = |now: &str| Current {
            renew_requested_at: Some(request),
            ..current(now)
        };
        assert!(waiting.holds(&at("2026-11-23T10:00:00.500Z")));
        assert!(
            !waiting.holds(&at("2026-11-23T10:00:01Z")),
            "the request came due"
        );
        assert!(!waiting.holds(&at("2026-11-23T10:00:02Z")));
    }

    #[test]
    fn knows_a_certificate_from_before_its_own_status_write() {
        let v = verdict();
        assert!(v.precedes_own_status_write(Some("10")));
        assert!(!v.precedes_own_status_write(Some("11")));
        assert!(!v.precedes_own_status_write(None));
    }
}
