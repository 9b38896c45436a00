//! How the controller retries when the API server is the problem: watches re-connect within
//! seconds, and a reconcile that failed on an unavailable API server retries within seconds
//! too, without counting as a failure of the Certificate. An outage of the API server is not a
//! failure of the objects it holds.

use std::time::Duration;

use kube::runtime::utils::{Backoff, ResetTimerBackoff};

/// The first wait of a watch that failed.
const WATCH_BACKOFF_INITIAL: Duration = Duration::from_millis(500);
/// The longest wait between two attempts to re-establish a watch: once the API server is back,
/// every watch lists again within this long. (kube's default waits up to 30 s.)
pub const WATCH_BACKOFF_CAP: Duration = Duration::from_secs(5);
/// A watch that has run this long without error starts its backoff afresh.
const WATCH_BACKOFF_RESET: Duration = Duration::from_secs(60);

/// The longest wait before a reconcile that failed on an unavailable API server is retried.
pub const TRANSIENT_RETRY_CAP: Duration = Duration::from_secs(5);

/// Exponential backoff for watches: 0.5 s doubling to 5 s, each wait shortened by up to a
/// quarter at random so that many watches do not re-connect in lockstep.
#[derive(Clone, Debug)]
pub struct WatchBackoff {
    next: Duration,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self {
            next: WATCH_BACKOFF_INITIAL,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let wait = self.next;
        self.next = (self.next * 2).min(WATCH_BACKOFF_CAP);
        let mut byte = [0u8; 1];
        let jitter = match aws_lc_rs::rand::fill(&mut byte) {
            Ok(()) => wait.mul_f64(f64::from(byte[0]) / 255.0 / 4.0),
            Err(_) => Duration::ZERO,
        };
        Some(wait - jitter)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = WATCH_BACKOFF_INITIAL;
    }
}

/// The backoff every watch of the controller uses.
pub fn watch_backoff() -> ResetTimerBackoff<WatchBackoff> {
    ResetTimerBackoff::new(WatchBackoff::default(), WATCH_BACKOFF_RESET)
}

/// Wait after the `attempts`-th consecutive reconcile that failed on an unavailable API
/// server: 1 s, 2 s, 4 s, then 5 s.
pub fn transient_retry(attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(8);
    (Duration::from_secs(1) * (1 << exp)).min(TRANSIENT_RETRY_CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_reconnect_within_five_seconds_whatever_the_outage() {
        let waits: Vec<Duration> = WatchBackoff::default().take(20).collect();
        assert!(waits.iter().all(|w| *w <= WATCH_BACKOFF_CAP), "{waits:?}");
        assert!(waits[0] <= Duration::from_millis(500) && waits[0] >= Duration::from_millis(375));
        assert!(waits[19] >= Duration::from_millis(3750), "{waits:?}");
        let mut backoff = WatchBackoff::default();
        backoff.by_ref().take(10).for_each(drop);
        backoff.reset();
        assert!(backoff.next().is_some_and(|w| w <= WATCH_BACKOFF_INITIAL));
    }

    #[test]
    fn reconciles_failed_by_the_api_server_retry_within_five_seconds() {
        let waits: Vec<u64> = (1..=8).map(|n| transient_retry(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5, 5, 5, 5]);
    }
}
