//! What the last full look at a Certificate's Secret found, kept (in a `WatchedCache` that
//! follows the Secret's metadata watch) while the Secret stays at the version it was found at.
//! A reconcile woken by the controller's own writes, a deadline or an issuer's status then
//! judges the Certificate from the verdict, reading nothing. Pure.

use jiff::Timestamp;

use super::status::IssuedFacts;
use super::triggers::Signer;

/// A Certificate's Secret found to hold a valid certificate for the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Which Certificate object, and which of its specs, it was found for.
    pub uid: String,
    pub generation: Option<i64>,
    /// The renewal request it already answered.
    pub renew_requested_at: Option<Timestamp>,
    /// The revoke request (`certkeeper.io/revoke-requested-at`) it already answered.
    pub revoke_requested_at: Option<Timestamp>,
    /// The CA the certificate chains to (SHA-256 of its certificate; None for selfSigned).
    pub signer: Option<[u8; 32]>,
    pub facts: IssuedFacts,
    /// The Certificate's resourceVersion before and after the controller's last status write:
    /// a reconcile of the earlier version runs on a cache that has not seen that write yet.
    pub status_written: Option<(String, String)>,
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

/// What a reconcile knows before it reads the Secret.
#[derive(Clone, Copy, Debug)]
pub struct Current<'a> {
    pub uid: &'a str,
    pub generation: Option<i64>,
    pub renew_requested_at: Option<Timestamp>,
    pub revoke_requested_at: Option<Timestamp>,
    pub signer: Option<&'a [u8; 32]>,
    pub now: Timestamp,
}

impl Verdict {
    /// Whether the Secret still needs nothing: the same Certificate, spec, renewal request and
    /// CA as when it was judged, and neither the renewal time nor expiry reached. Anything else
    /// is judged by a full reconcile that reads the Secret.
    pub fn holds(&self, current: &Current<'_>) -> bool {
        self.uid == current.uid
            && self.generation == current.generation
            && self.renew_requested_at == current.renew_requested_at
            && self.revoke_requested_at == current.revoke_requested_at
            && self.signer.as_ref() == current.signer
            && current.now < self.facts.renewal_time
            && current.now < self.facts.not_after
    }

    /// Whether `resource_version` is the Certificate as it was before the controller's last
    /// status write, which the cache has not caught up with.
    pub fn precedes_own_status_write(&self, resource_version: Option<&str>) -> bool {
        matches!((&self.status_written, resource_version), (Some((before, _)), Some(rv)) if before == rv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ts;

    fn verdict() -> Verdict {
        Verdict {
            uid: "uid-web".into(),
            generation: Some(1),
            renew_requested_at: None,
            revoke_requested_at: None,
            signer: Some([0xab; 32]),
            facts: IssuedFacts {
                not_before: ts("2026-11-23T10:00:00Z"),
                not_after: ts("2026-11-24T10:00:00Z"),
                renewal_time: ts("2026-11-24T02:00:00Z"),
                serial_hex: "01".into(),
                revision: 1,
            },
            status_written: Some(("10".into(), "11".into())),
        }
    }

    fn current(now: &str) -> Current<'static> {
        Current {
            uid: "uid-web",
            generation: Some(1),
            renew_requested_at: None,
            revoke_requested_at: None,
            signer: Some(&[0xab; 32]),
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
            renew_requested_at: Some(ts("2026-11-23T11:00:00Z")),
            ..current("2026-11-23T12:00:00Z")
        };
        assert!(!v.holds(&requested), "a new renewal request is judged afresh");
        let revoke = Current {
            revoke_requested_at: Some(ts("2026-11-23T11:00:00Z")),
            ..current("2026-11-23T12:00:00Z")
        };
        assert!(!v.holds(&revoke), "a revoke request is judged afresh");
    }

    #[test]
    fn knows_a_certificate_from_before_its_own_status_write() {
        let v = verdict();
        assert!(v.precedes_own_status_write(Some("10")));
        assert!(!v.precedes_own_status_write(Some("11")));
        assert!(!v.precedes_own_status_write(None));
    }
}
