//! Expiry warnings (SPEC "Events"): at which remaining validities a certificate is warned
//! about, which warning is due at an instant, and the status marker that keeps a restarted
//! controller from repeating one. Pure functions of the status and `now`.
//!
//! The warnings are about the certificate the status describes (`notAfter`, `revision`): the
//! one in the Secret, whether or not its renewal is succeeding.

use std::str::FromStr;

use jiff::{SignedDuration, Timestamp};

use super::schedule;
use super::spec::RenewBefore;
use super::status::READY;
use crate::api::{CertificateStatus, ConditionStatus, ExpiryWarningStatus, condition, set_condition};

/// `--expiry-warning-thresholds` default: a week, three days, a day.
pub const DEFAULT_THRESHOLDS: [SignedDuration; 3] = [
    SignedDuration::from_hours(168),
    SignedDuration::from_hours(72),
    SignedDuration::from_hours(24),
];

/// Event and condition reason of the warning sent while a certificate is still valid.
pub const EXPIRING_SOON: &str = "ExpiringSoon";
/// Event and Ready reason once notAfter has passed.
pub const EXPIRED: &str = "Expired";

/// A warning that is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Warning {
    /// Remaining validity dropped below `threshold`.
    ExpiringSoon { threshold: SignedDuration },
    /// notAfter passed.
    Expired,
}

/// The expiry schedule of the certificate a status describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiryWatch {
    pub revision: i64,
    pub not_after: Timestamp,
    /// Remaining validities that deserve a warning, longest first.
    pub thresholds: Vec<SignedDuration>,
}

impl ExpiryWatch {
    /// The schedule of the certificate in `status`, or None while nothing was issued. The
    /// thresholds are the `configured` ones shorter than the lifetime, and half of the
    /// renewBefore that `policy` gives for that lifetime (below it, renewal is failing).
    pub fn of(
        status: &CertificateStatus,
        configured: &[SignedDuration],
        policy: RenewBefore,
    ) -> Option<Self> {
        let revision = status.revision?;
        let not_after = status.not_after.as_ref()?.0;
        let not_before = status.not_before.as_ref().map_or(not_after, |t| t.0);
        let lifetime = not_after.duration_since(not_before);
        let mut thresholds: Vec<SignedDuration> = configured
            .iter()
            .copied()
            .filter(|t| *t > SignedDuration::ZERO && *t < lifetime)
            .collect();
        if lifetime > SignedDuration::ZERO {
            let half = schedule::renew_before(lifetime, policy) / 2;
            if half > SignedDuration::ZERO {
                thresholds.push(half);
            }
        }
        thresholds.sort_unstable_by(|a, b| b.cmp(a));
        thresholds.dedup();
        Some(Self {
            revision,
            not_after,
            thresholds,
        })
    }

    /// The warning due at `now`, unless `sent` (the status marker) shows it already went out
    /// for this revision. Of several thresholds crossed at once only the shortest is reported.
    pub fn due(&self, sent: Option<&ExpiryWarningStatus>, now: Timestamp) -> Option<Warning> {
        let sent = sent.filter(|s| s.revision == self.revision);
        if now >= self.not_after {
            return match sent {
                Some(s) if s.reason == EXPIRED => None,
                _ => Some(Warning::Expired),
            };
        }
        let crossed = self
            .thresholds
            .iter()
            .copied()
            .filter(|t| now >= self.not_after - *t)
            .min()?;
        match sent {
            Some(s) if s.reason == EXPIRED => None,
            Some(s)
                if s.threshold
                    .as_deref()
                    .and_then(parse)
                    .is_some_and(|done| done <= crossed) =>
            {
                None
            }
            _ => Some(Warning::ExpiringSoon { threshold: crossed }),
        }
    }

    /// Every instant at which a warning falls due: notAfter − each threshold, and notAfter.
    pub fn deadlines(&self) -> Vec<Timestamp> {
        let mut at: Vec<Timestamp> = self.thresholds.iter().map(|t| self.not_after - *t).collect();
        at.push(self.not_after);
        at
    }

    /// The marker that records `warning` as sent.
    pub fn marker(&self, warning: Warning) -> ExpiryWarningStatus {
        match warning {
            Warning::ExpiringSoon { threshold } => ExpiryWarningStatus {
                revision: self.revision,
                reason: EXPIRING_SOON.into(),
                threshold: Some(go_duration(threshold)),
            },
            Warning::Expired => ExpiryWarningStatus {
                revision: self.revision,
                reason: EXPIRED.into(),
                threshold: None,
            },
        }
    }
}

/// What expiry means for the `status` about to be written: Ready=False past notAfter, and the
/// warning due now recorded in its marker. Returns that warning (to publish once the status is
/// written, so a failed write cannot lead to a repeat) and the instants of the next ones.
pub fn apply(
    status: &mut CertificateStatus,
    configured: &[SignedDuration],
    policy: RenewBefore,
    generation: Option<i64>,
    now: Timestamp,
) -> (Option<Warning>, Vec<Timestamp>) {
    mark_expired(status, generation, now);
    let Some(watch) = ExpiryWatch::of(status, configured, policy) else {
        return (None, Vec::new());
    };
    let warning = watch.due(status.last_expiry_warning.as_ref(), now);
    if let Some(warning) = warning {
        status.last_expiry_warning = Some(watch.marker(warning));
    }
    (warning, watch.deadlines())
}

/// Ready=False with reason Expired once the certificate in `status` is past its notAfter,
/// whatever else is wrong (a missing issuer, a failing renewal): that is what matters now.
pub fn mark_expired(status: &mut CertificateStatus, generation: Option<i64>, now: Timestamp) {
    let Some(not_after) = status.not_after.as_ref().map(|t| t.0) else {
        return;
    };
    if now < not_after {
        return;
    }
    set_condition(
        &mut status.conditions,
        condition(
            READY,
            ConditionStatus::False,
            EXPIRED,
            expired_message(not_after),
            generation,
            now,
        ),
    );
}

/// The one wording of "this certificate expired", shared by the trigger and the condition.
pub fn expired_message(not_after: Timestamp) -> String {
    format!("the certificate expired at {not_after}")
}

/// Parses `--expiry-warning-thresholds` items: Go durations, as Kubernetes writes them.
pub fn parse_threshold(value: &str) -> Result<SignedDuration, String> {
    parse(value.trim()).ok_or_else(|| format!("{value:?} is not a positive Go duration such as 72h or 90m"))
}

fn parse(value: &str) -> Option<SignedDuration> {
    let d = kube::core::Duration::from_str(value).ok()?;
    if d.is_negative() {
        return None;
    }
    SignedDuration::try_from(std::time::Duration::from(d)).ok()
}

/// Go's `time.Duration.String()` for whole seconds: `72h0m0s`, `1h30m0s`, `45s`.
pub fn go_duration(d: SignedDuration) -> String {
    let secs = d.as_secs().max(0);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn issued(not_before: &str, lifetime: SignedDuration, revision: i64) -> CertificateStatus {
        let nb = ts(not_before);
        CertificateStatus {
            not_before: Some(Time(nb)),
            not_after: Some(Time(nb + lifetime)),
            revision: Some(revision),
            ..CertificateStatus::default()
        }
    }

    const H: fn(i64) -> SignedDuration = SignedDuration::from_hours;

    #[test]
    fn thresholds_longer_than_the_lifetime_do_not_apply() {
        let status = issued("2026-01-01T00:00:00Z", H(24), 1);
        let watch = ExpiryWatch::of(&status, &DEFAULT_THRESHOLDS, RenewBefore::Default).unwrap();
        // 168h and 72h exceed the lifetime, 24h equals it; half of the 8h renewBefore remains.
        assert_eq!(watch.thresholds, vec![H(4)]);
    }

    #[test]
    fn ninety_day_certificate_is_warned_a_week_three_days_and_a_day_ahead() {
        let status = issued("2026-01-01T00:00:00Z", H(2160), 1);
        let watch = ExpiryWatch::of(&status, &DEFAULT_THRESHOLDS, RenewBefore::Default).unwrap();
        // Half of the 720h renewBefore comes first.
        assert_eq!(watch.thresholds, vec![H(360), H(168), H(72), H(24)]);
        let not_after = ts("2026-01-01T00:00:00Z") + H(2160);
        assert_eq!(watch.deadlines().last(), Some(&not_after));
        assert!(watch.deadlines().contains(&(not_after - H(72))));
    }

    #[test]
    fn expiring_soon_falls_due_exactly_at_the_threshold() {
        let status = issued("2026-01-01T00:00:00Z", H(24), 1);
        let watch = ExpiryWatch::of(&status, &DEFAULT_THRESHOLDS, RenewBefore::Default).unwrap();
        let at = watch.not_after - H(4);
        assert_eq!(watch.due(None, at - SignedDuration::from_secs(1)), None);
        assert_eq!(
            watch.due(None, at),
            Some(Warning::ExpiringSoon { threshold: H(4) })
        );
    }

    #[test]
    fn each_threshold_warns_once_per_revision() {
        let status = issued("2026-01-01T00:00:00Z", H(2160), 2);
        let watch = ExpiryWatch::of(&status, &DEFAULT_THRESHOLDS, RenewBefore::Default).unwrap();
        let at_72h = watch.not_after - H(72);
        let warning = watch.due(None, at_72h).unwrap();
        assert_eq!(warning, Warning::ExpiringSoon { threshold: H(72) });
        let sent = watch.marker(warning);
        assert_eq!(sent.threshold.as_deref(), Some("72h0m0s"));
        // Later, still above the next threshold: nothing new.
        assert_eq!(watch.due(Some(&sent), at_72h + H(24)), None);
        // The next threshold warns again.
        assert_eq!(
            watch.due(Some(&sent), watch.not_after - H(24)),
            Some(Warning::ExpiringSoon { threshold: H(24) })
        );
        // A marker of an older revision does not count.
        let old = ExpiryWarningStatus {
            revision: 1,
            ..sent.clone()
        };
        assert!(watch.due(Some(&old), at_72h).is_some());
    }

    #[test]
    fn several_thresholds_crossed_at_once_give_one_warning() {
        let status = issued("2026-01-01T00:00:00Z", H(2160), 1);
        let watch = ExpiryWatch::of(&status, &DEFAULT_THRESHOLDS, RenewBefore::Default).unwrap();
        let now = watch.not_after - H(10);
        assert_eq!(
            watch.due(None, now),
            Some(Warning::ExpiringSoon { threshold: H(24) })
        );
    }

    #[test]
    fn expired_is_due_at_not_after_and_only_once() {
        let status = issued("2026-01-01T00:00:00Z", H(24), 1);
        let watch = ExpiryWatch::of(&status, &DEFAULT_THRESHOLDS, RenewBefore::Default).unwrap();
        let soon = watch.marker(Warning::ExpiringSoon { threshold: H(4) });
        assert_eq!(watch.due(Some(&soon), watch.not_after), Some(Warning::Expired));
        let expired = watch.marker(Warning::Expired);
        assert_eq!(watch.due(Some(&expired), watch.not_after + H(1)), None);
    }

    #[test]
    fn nothing_is_watched_before_the_first_issuance() {
        assert_eq!(
            ExpiryWatch::of(
                &CertificateStatus::default(),
                &DEFAULT_THRESHOLDS,
                RenewBefore::Default
            ),
            None
        );
    }

    #[test]
    fn ready_turns_false_with_reason_expired_at_not_after() {
        let mut status = issued("2026-01-01T00:00:00Z", H(24), 1);
        let not_after = status.not_after.clone().unwrap().0;
        mark_expired(&mut status, Some(1), not_after - SignedDuration::from_secs(1));
        assert!(status.conditions.is_empty());
        mark_expired(&mut status, Some(1), not_after);
        let ready = &status.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "Expired")
        );
    }

    #[test]
    fn thresholds_parse_as_go_durations() {
        assert_eq!(parse_threshold("72h"), Ok(H(72)));
        assert_eq!(parse_threshold(" 1h30m"), Ok(SignedDuration::from_mins(90)));
        assert!(parse_threshold("3d").is_err());
        assert!(parse_threshold("-1h").is_err());
        assert_eq!(go_duration(SignedDuration::from_mins(90)), "1h30m0s");
        assert_eq!(go_duration(SignedDuration::from_secs(45)), "45s");
        assert_eq!(go_duration(SignedDuration::from_secs(125)), "2m5s");
    }
}
