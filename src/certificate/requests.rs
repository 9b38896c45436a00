//! Requests by annotation on a Certificate (SPEC "Requests by annotation"): renew
//! (`certkeeper.io/renew-requested-at`) and revoke (`certkeeper.io/revoke-requested-at`), each
//! an RFC 3339 time. Which are still to be answered, and when they come due. Pure.
//!
//! The status records the annotation value it last answered (`lastRenewRequest`,
//! `lastRevokeRequest`): any other value is a new request, acted on once its time has come,
//! whatever second the certificate in the Secret was issued in.

use jiff::Timestamp;

use crate::api::CertificateStatus;
use crate::revocation::RevokeRequest;

/// A renew request: the annotation's value as written, and the time it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenewRequest {
    pub value: String,
    pub at: Timestamp,
}

impl RenewRequest {
    /// `value` read as an RFC 3339 time: whole seconds as `date -u +%FT%TZ` writes them, or
    /// with a fraction as `certkeeper renew` does.
    pub fn parse(value: &str) -> Result<Self, jiff::Error> {
        Ok(Self {
            value: value.to_owned(),
            at: value.trim().parse()?,
        })
    }
}

/// Whether the request `value`, dated `at`, is still to be answered: it is not the value the
/// status last answered (`last`). A status written before requests were recorded (`last`
/// None) is judged as the controller that wrote it judged it: a request dated before the
/// certificate in the Secret was issued (`not_before`) was answered by that issuance, or was
/// made for a certificate since replaced. One dated in that very second may have come after
/// the issuance, and is acted on: a renewal too many is harmless, a dropped request is not.
pub fn unanswered(value: &str, at: Timestamp, last: Option<&str>, not_before: Option<Timestamp>) -> bool {
    match last {
        Some(last) => last != value,
        None => not_before.is_none_or(|nb| at >= nb),
    }
}

/// The requests still to be answered, whether or not their time has come.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    pub renew: Option<RenewRequest>,
    pub revoke: Option<RevokeRequest>,
}

impl Pending {
    /// What is pending of `renew` and `revoke` for a Certificate whose status is `status` and
    /// whose Secret holds a certificate issued at `not_before` (None: no certificate).
    /// `revoke_recorded`: a revocation record made for this very request exists (the status
    /// write that would have said so may have been lost).
    pub fn of(
        renew: Option<&RenewRequest>,
        revoke: Option<&RevokeRequest>,
        revoke_recorded: bool,
        status: &CertificateStatus,
        not_before: Option<Timestamp>,
    ) -> Self {
        let renew = renew
            .filter(|r| unanswered(&r.value, r.at, status.last_renew_request.as_deref(), not_before))
            .cloned();
        let revoke = revoke
            .filter(|_| !revoke_recorded)
            .filter(|r| {
                unanswered(
                    &r.value,
                    r.requested_at,
                    status.last_revoke_request.as_deref(),
                    not_before,
                )
            })
            .cloned();
        Self { renew, revoke }
    }

    /// The earliest time a pending request comes due, when still ahead of `now`: what was
    /// judged before then holds only until then.
    pub fn next_due(&self, now: Timestamp) -> Option<Timestamp> {
        let renew = self.renew.as_ref().map(|r| r.at);
        let revoke = self.revoke.as_ref().map(|r| r.requested_at);
        renew.into_iter().chain(revoke).filter(|at| *at > now).min()
    }

    /// The pending renew request, once its time has come.
    pub fn renew_due(&self, now: Timestamp) -> Option<&RenewRequest> {
        self.renew.as_ref().filter(|r| r.at <= now)
    }

    /// The pending revoke request, once its time has come.
    pub fn revoke_due(&self, now: Timestamp) -> Option<&RevokeRequest> {
        self.revoke.as_ref().filter(|r| r.requested_at <= now)
    }
}

/// The request values a reconcile answered, to record in the status it writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answered {
    pub renew: Option<String>,
    pub revoke: Option<String>,
}

impl Answered {
    /// `status` recording these answers; what was answered before stays.
    pub fn record(&self, mut status: CertificateStatus) -> CertificateStatus {
        if let Some(value) = &self.renew {
            status.last_renew_request = Some(value.clone());
        }
        if let Some(value) = &self.revoke {
            status.last_revoke_request = Some(value.clone());
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::RevocationReason;
    use crate::testing::ts;

    fn renew(value: &str) -> RenewRequest {
        RenewRequest::parse(value).unwrap()
    }

    fn revoke(value: &str) -> RevokeRequest {
        RevokeRequest {
            value: value.into(),
            requested_at: ts(value),
            reason: RevocationReason::KeyCompromise,
        }
    }

    fn status(renew: Option<&str>, revoke: Option<&str>) -> CertificateStatus {
        CertificateStatus {
            last_renew_request: renew.map(Into::into),
            last_revoke_request: revoke.map(Into::into),
            ..CertificateStatus::default()
        }
    }

    #[test]
    fn kubectl_and_cli_values_both_parse() {
        assert_eq!(renew("2026-11-23T10:00:00Z").at, ts("2026-11-23T10:00:00Z"));
        let cli = renew("2026-11-23T10:00:00.250Z");
        assert_eq!(
            cli.at,
            ts("2026-11-23T10:00:00Z") + jiff::SignedDuration::from_millis(250)
        );
        assert_eq!(cli.value, "2026-11-23T10:00:00.250Z");
        assert_eq!(renew("2026-11-23T11:00:00+01:00").at, ts("2026-11-23T10:00:00Z"));
        assert!(RenewRequest::parse("yesterday").is_err());
        assert!(RenewRequest::parse("2026-11-23").is_err());
    }

    #[test]
    fn a_request_is_answered_by_its_value_in_the_status_whatever_its_time() {
        let nb = Some(ts("2026-11-23T10:00:00Z"));
        let answered = status(Some("2026-11-23T10:00:00Z"), None);
        let at = ts("2026-11-23T10:00:00Z");
        assert!(!unanswered(
            "2026-11-23T10:00:00Z",
            at,
            Some("2026-11-23T10:00:00Z"),
            nb
        ));
        // In the second of issuance, and a value older than the certificate: new values.
        assert!(unanswered(
            "2026-11-23T10:00:00Z",
            at,
            Some("2026-11-23T09:00:00Z"),
            nb
        ));
        let older = ts("2026-11-23T09:30:00Z");
        assert!(unanswered(
            "2026-11-23T09:30:00Z",
            older,
            Some("2026-11-23T09:00:00Z"),
            nb
        ));
        let p = Pending::of(Some(&renew("2026-11-23T10:00:00Z")), None, false, &answered, nb);
        assert_eq!(p, Pending::default());
    }

    #[test]
    fn a_status_from_before_requests_were_recorded_answers_what_is_older_than_the_certificate() {
        let nb = Some(ts("2026-11-23T10:00:00Z"));
        let legacy = status(None, None);
        // Older than the certificate: answered on upgrade, nothing re-issued.
        let old = Pending::of(
            Some(&renew("2026-11-23T09:59:59Z")),
            Some(&revoke("2026-11-23T09:59:59Z")),
            false,
            &legacy,
            nb,
        );
        assert_eq!(old, Pending::default());
        // In the second of issuance or after: acted on.
        let same = Pending::of(
            Some(&renew("2026-11-23T10:00:00Z")),
            Some(&revoke("2026-11-23T10:00:00Z")),
            false,
            &legacy,
            nb,
        );
        assert!(same.renew.is_some() && same.revoke.is_some());
        // No certificate yet: pending (the first issuance answers a renewal).
        let none = Pending::of(Some(&renew("2026-11-23T09:00:00Z")), None, false, &legacy, None);
        assert!(none.renew.is_some());
    }

    #[test]
    fn a_revoke_request_with_its_record_written_is_answered() {
        let p = Pending::of(
            None,
            Some(&revoke("2026-11-23T10:30:00Z")),
            true,
            &status(None, None),
            Some(ts("2026-11-23T10:00:00Z")),
        );
        assert_eq!(p.revoke, None);
    }

    #[test]
    fn the_next_due_is_the_earliest_pending_request_still_ahead() {
        let p = Pending {
            renew: Some(renew("2026-11-23T10:01:00Z")),
            revoke: Some(revoke("2026-11-23T10:00:01Z")),
        };
        let now = ts("2026-11-23T10:00:00.500Z");
        assert_eq!(p.next_due(now), Some(ts("2026-11-23T10:00:01Z")));
        assert_eq!(p.revoke_due(now), None);
        let later = ts("2026-11-23T10:00:01Z");
        assert_eq!(p.next_due(later), Some(ts("2026-11-23T10:01:00Z")));
        assert!(p.revoke_due(later).is_some());
        assert_eq!(p.renew_due(later), None);
        assert_eq!(p.next_due(ts("2026-11-23T10:01:00Z")), None);
    }

    #[test]
    fn answers_are_recorded_and_earlier_ones_kept() {
        let answered = Answered {
            renew: Some("2026-11-23T10:00:00Z".into()),
            revoke: None,
        };
        let recorded = answered.record(status(None, Some("2026-11-22T10:00:00Z")));
        assert_eq!(
            recorded,
            status(Some("2026-11-23T10:00:00Z"), Some("2026-11-22T10:00:00Z"))
        );
    }
}
