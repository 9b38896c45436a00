//! When things happen: renewal time with UID-derived jitter, failure backoff, and the next
//! instant the controller must look at a Certificate. Pure functions of their inputs and `now`.

use jiff::{SignedDuration, Timestamp};

use super::spec::RenewBefore;

/// First retry after a failed issuance.
pub const BACKOFF_INITIAL: SignedDuration = SignedDuration::from_secs(10);
/// Longest wait between retries.
pub const BACKOFF_CAP: SignedDuration = SignedDuration::from_mins(5);
/// Jitter spreads renewals over at most this fraction of the shorter of renewBefore and
/// (lifetime - renewBefore).
const JITTER_FRACTION: f64 = 0.10;
/// The controller never sleeps longer than this on one object (a change it missed is caught up
/// within a day); waking early simply finds nothing to do.
pub const MAX_REQUEUE: SignedDuration = SignedDuration::from_hours(24);

/// How long before notAfter the certificate with this lifetime renews. A renewBefore that
/// does not fit the actual lifetime (say a certificate capped by its CA's expiry) falls back
/// to a third of the lifetime, as cert-manager does.
pub fn renew_before(lifetime: SignedDuration, policy: RenewBefore) -> SignedDuration {
    let third = lifetime / 3;
    let wanted = match policy {
        RenewBefore::Default => third,
        RenewBefore::Fixed(d) => d,
        RenewBefore::Percentage(p) => SignedDuration::from_secs(lifetime.as_secs() * i64::from(p) / 100),
    };
    if wanted <= SignedDuration::ZERO || wanted >= lifetime {
        third
    } else {
        wanted
    }
}

/// A number in [0, 1) derived from the Certificate's UID: the same Certificate always gets the
/// same jitter, Certificates created together get different ones.
pub fn jitter_fraction(uid: &str) -> f64 {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, uid.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    // 53 bits fill an f64 mantissa exactly.
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

/// notAfter − renewBefore − jitter, in whole seconds. Never before notBefore.
pub fn renewal_time(
    not_before: Timestamp,
    not_after: Timestamp,
    policy: RenewBefore,
    uid: &str,
) -> Timestamp {
    let lifetime = not_after.duration_since(not_before);
    if lifetime <= SignedDuration::ZERO {
        return not_before;
    }
    let before = renew_before(lifetime, policy);
    let window = before.min(lifetime - before);
    let jitter_secs = (window.as_secs() as f64 * JITTER_FRACTION * jitter_fraction(uid)) as i64;
    let at = not_after.as_second() - before.as_secs() - jitter_secs;
    Timestamp::from_second(at.max(not_before.as_second())).unwrap_or(not_before)
}

/// Wait after the `attempts`-th consecutive failure: 10 s, 20 s, 40 s, … capped at 5 min.
pub fn backoff(attempts: u32) -> SignedDuration {
    let exp = attempts.saturating_sub(1).min(16);
    let secs = BACKOFF_INITIAL.as_secs().saturating_mul(1i64 << exp);
    SignedDuration::from_secs(secs).min(BACKOFF_CAP)
}

/// What a reconcile of a Certificate asks for next: to be looked at again after a wait, or
/// only when something changes. The runner keeps the wait in its own compact schedule
/// (`runner/deadlines.rs`) rather than as a requeue in kube's scheduler; `From` gives kube's
/// `Action` for the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Next(Option<std::time::Duration>);

impl Next {
    /// Look again after `wait`.
    pub const fn requeue(wait: std::time::Duration) -> Self {
        Self(Some(wait))
    }

    /// Look again only on a change.
    pub const fn await_change() -> Self {
        Self(None)
    }

    /// The wait asked for, if any.
    pub const fn requeue_after(&self) -> Option<std::time::Duration> {
        self.0
    }
}

impl From<Next> for kube::runtime::controller::Action {
    fn from(next: Next) -> Self {
        match next.0 {
            Some(wait) => Self::requeue(wait),
            None => Self::await_change(),
        }
    }
}

impl PartialEq<kube::runtime::controller::Action> for Next {
    // kube's Action offers no getter, so the comparison goes through one (an Option<Duration>:
    // nothing is allocated).
    #[allow(clippy::cmp_owned)]
    fn eq(&self, other: &kube::runtime::controller::Action) -> bool {
        kube::runtime::controller::Action::from(*self) == *other
    }
}

/// How long to sleep until the earliest of `deadlines` still in the future, capped at
/// `MAX_REQUEUE`. Rounds up to whole seconds plus one, so the
/// controller wakes at or just after the instant (status times have second precision).
pub fn requeue_after(now: Timestamp, deadlines: &[Timestamp]) -> std::time::Duration {
    let next = deadlines
        .iter()
        .filter(|d| **d > now)
        .min()
        .map(|d| d.duration_since(now))
        .unwrap_or(MAX_REQUEUE)
        .min(MAX_REQUEUE);
    let secs = next.as_secs() + i64::from(next.subsec_nanos() > 0) + 1;
    std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn renews_at_two_thirds_of_lifetime_before_jitter() {
        let nb = ts("2026-01-01T00:00:00Z");
        let na = nb + SignedDuration::from_hours(24);
        let t = renewal_time(nb, na, RenewBefore::Default, "uid-a");
        // renewBefore = 8h; jitter ≤ 10 % of min(8h, 16h) = 48 min.
        let latest = na - SignedDuration::from_hours(8);
        assert!(t <= latest);
        assert!(t >= latest - SignedDuration::from_mins(48));
    }

    #[test]
    fn renewal_never_moves_before_issuance() {
        let nb = ts("2026-01-01T00:00:00Z");
        let na = nb + SignedDuration::from_hours(1);
        for uid in ["a", "b", "c", "d", "e", "f"] {
            let t = renewal_time(nb, na, RenewBefore::Percentage(99), uid);
            assert!(t >= nb, "{uid}: {t}");
            assert!(t < na);
        }
    }

    #[test]
    fn same_uid_same_renewal_time() {
        let nb = ts("2026-01-01T00:00:00Z");
        let na = nb + SignedDuration::from_hours(2160);
        assert_eq!(
            renewal_time(nb, na, RenewBefore::Default, "7c1f"),
            renewal_time(nb, na, RenewBefore::Default, "7c1f")
        );
    }

    #[test]
    fn certificates_issued_together_renew_spread_out() {
        let nb = ts("2026-01-01T00:00:00Z");
        let na = nb + SignedDuration::from_hours(24);
        let times: std::collections::BTreeSet<_> = (0..100)
            .map(|i| renewal_time(nb, na, RenewBefore::Default, &format!("uid-{i}")))
            .collect();
        assert!(times.len() > 90, "only {} distinct renewal times", times.len());
        let spread = times.last().unwrap().duration_since(*times.first().unwrap());
        assert!(spread > SignedDuration::from_mins(30), "spread {spread:?}");
    }

    #[test]
    fn fixed_renew_before_is_honoured() {
        let nb = ts("2026-01-01T00:00:00Z");
        let na = nb + SignedDuration::from_hours(24);
        let t = renewal_time(nb, na, RenewBefore::Fixed(SignedDuration::from_hours(2)), "x");
        let latest = na - SignedDuration::from_hours(2);
        assert!(t <= latest && t >= latest - SignedDuration::from_mins(12));
    }

    #[test]
    fn percentage_renew_before_is_share_of_lifetime_remaining() {
        assert_eq!(
            renew_before(SignedDuration::from_mins(60), RenewBefore::Percentage(25)),
            SignedDuration::from_mins(15)
        );
    }

    #[test]
    fn renew_before_longer_than_lifetime_falls_back_to_a_third() {
        assert_eq!(
            renew_before(
                SignedDuration::from_hours(3),
                RenewBefore::Fixed(SignedDuration::from_hours(5))
            ),
            SignedDuration::from_hours(1)
        );
    }

    #[test]
    fn backoff_doubles_from_ten_seconds_to_five_minutes() {
        let secs: Vec<i64> = (1..=7).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, vec![10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff(1000).as_secs(), 300);
    }

    #[test]
    fn requeues_at_the_earliest_future_deadline() {
        let now = ts("2026-01-01T00:00:00Z");
        let d = requeue_after(
            now,
            &[
                now + SignedDuration::from_secs(100),
                now - SignedDuration::from_secs(5),
                now + SignedDuration::from_secs(50),
            ],
        );
        assert_eq!(d.as_secs(), 51);
    }

    #[test]
    fn requeue_is_capped_for_long_lived_certificates() {
        let now = ts("2026-01-01T00:00:00Z");
        let d = requeue_after(now, &[now + SignedDuration::from_hours(24 * 365 * 10)]);
        assert_eq!(d.as_secs(), 24 * 3600 + 1);
    }
}
