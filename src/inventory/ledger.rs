//! The record of the expiry warnings sent, kept in a ConfigMap beside the controller
//! (`certkeeper-inventory-warnings` in `--cluster-resource-namespace`). A warning's Event has a
//! name derived from what it is about, so a restarted controller that tries again gets
//! AlreadyExists; but an API server deletes Events after its `--event-ttl` (1 h by default),
//! and a controller restarted after that would warn again. The ledger outlives the Events: one
//! line per warning sent, its hash and the notAfter of the certificate it was about. Pure, but
//! for `load` and `save`.

use std::collections::{BTreeMap, HashSet};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::context::FIELD_MANAGER;

/// The ConfigMap's name.
pub const NAME: &str = "certkeeper-inventory-warnings";
/// The key of its data that holds the lines.
pub const KEY: &str = "sent";
/// A warning no object in the inventory holds any more is forgotten this long after the
/// certificate's notAfter: long enough for a restarted controller to read every object again.
pub const FORGET_AFTER: SignedDuration = SignedDuration::from_hours(7 * 24);
/// At most this many lines (28 bytes each): a ConfigMap holds at most 1 MiB.
pub const MAX_ENTRIES: usize = 30_000;

/// The warnings sent: hash → the notAfter of the certificate warned about (Unix seconds).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    entries: BTreeMap<u64, i64>,
}

impl Ledger {
    /// The ledger in `text`; a line it cannot read is skipped (a warning sent again at worst).
    pub fn parse(text: &str) -> Self {
        let entries = text
            .lines()
            .filter_map(|line| {
                let (hash, not_after) = line.trim().split_once(' ')?;
                let hash = u64::from_str_radix(hash, 16).ok()?;
                let not_after = not_after.trim().parse::<i64>().ok()?;
                Some((hash, not_after))
            })
            .collect();
        Self { entries }
    }

    /// One line per warning, by hash.
    pub fn render(&self) -> String {
        self.entries
            .iter()
            .map(|(hash, not_after)| format!("{hash:016x} {not_after}\n"))
            .collect()
    }

    pub fn contains(&self, hash: u64) -> bool {
        self.entries.contains_key(&hash)
    }

    /// Records a warning sent about a certificate valid until `not_after`. True when new.
    pub fn insert(&mut self, hash: u64, not_after: Timestamp) -> bool {
        self.entries.insert(hash, not_after.as_second()).is_none()
    }

    /// Adds what `other` holds.
    pub fn merge(&mut self, other: Ledger) {
        self.entries.extend(other.entries);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets the warnings about certificates past notAfter by `FORGET_AFTER` that no object
    /// holds (`held`: the hashes of the warnings the inventory's objects were sent, asked for
    /// only when some warning is that old), then, above `MAX_ENTRIES`, those about the
    /// certificates that expired first. True when anything was forgotten.
    pub fn prune(&mut self, now: Timestamp, held: impl FnOnce() -> HashSet<u64>) -> bool {
        let before = self.entries.len();
        let forget_before = (now - FORGET_AFTER).as_second();
        if self.entries.values().any(|not_after| *not_after < forget_before) {
            let held = held();
            self.entries
                .retain(|hash, not_after| *not_after >= forget_before || held.contains(hash));
        }
        if self.entries.len() > MAX_ENTRIES {
            let mut by_expiry: Vec<(i64, u64)> = self.entries.iter().map(|(h, n)| (*n, *h)).collect();
            by_expiry.sort_unstable();
            let excess = self.entries.len() - MAX_ENTRIES;
            for (_, hash) in by_expiry.into_iter().take(excess) {
                self.entries.remove(&hash);
            }
        }
        self.entries.len() != before
    }
}

/// Reads the ledger; a ConfigMap that does not exist is an empty ledger.
pub async fn load(api: &Api<ConfigMap>) -> Result<Ledger, kube::Error> {
    Ok(api
        .get_opt(NAME)
        .await?
        .and_then(|map| map.data)
        .and_then(|data| data.get(KEY).map(|text| Ledger::parse(text)))
        .unwrap_or_default())
}

/// Writes the ledger (server-side apply: the ConfigMap is made when missing).
pub async fn save(api: &Api<ConfigMap>, ledger: &Ledger) -> Result<(), kube::Error> {
    let map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": NAME,
            "labels": {"app.kubernetes.io/managed-by": "certkeeper"},
        },
        "data": {KEY: ledger.render()},
    });
    api.patch(
        NAME,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&map),
    )
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn lines_are_read_back_as_written_and_garbage_is_skipped() {
        let mut ledger = Ledger::default();
        assert!(ledger.insert(0xdead_beef, at(1_800_000_000)));
        assert!(!ledger.insert(0xdead_beef, at(1_800_000_000)));
        ledger.insert(u64::MAX, at(1_700_000_000));
        let text = ledger.render();
        assert_eq!(text, "00000000deadbeef 1800000000\nffffffffffffffff 1700000000\n");
        assert_eq!(Ledger::parse(&text), ledger);
        let read = Ledger::parse(&format!("{text}not a line\nzz 12\n0001 x\n\n  0002 5  \n"));
        assert_eq!(read.len(), 3);
        assert!(read.contains(2) && read.contains(0xdead_beef) && !read.contains(1));
    }

    #[test]
    fn a_warning_nobody_holds_is_forgotten_a_week_after_its_certificate_expired() {
        let now = at(1_800_000_000);
        let week = FORGET_AFTER.as_secs();
        let mut ledger = Ledger::default();
        ledger.insert(1, at(now.as_second() + 3600)); // still valid
        ledger.insert(2, at(now.as_second() - week + 60)); // expired 6 days 23 h ago
        ledger.insert(3, at(now.as_second() - week - 60)); // over a week ago, nobody holds it
        ledger.insert(4, at(now.as_second() - 10 * week)); // long expired, its Secret still there
        let held: HashSet<u64> = [4].into();
        assert!(ledger.prune(now, || held.clone()));
        assert!(ledger.contains(1) && ledger.contains(2) && ledger.contains(4));
        assert!(!ledger.contains(3));
        assert!(!ledger.prune(now, || held.clone()), "nothing more to forget");
        // With nothing that old, which objects hold what is not asked.
        let mut fresh = Ledger::default();
        fresh.insert(5, at(now.as_second() - week + 60));
        assert!(!fresh.prune(now, || panic!("held asked for")));
    }

    #[test]
    fn above_the_cap_the_warnings_about_the_first_expired_go_first() {
        let now = at(1_800_000_000);
        let mut ledger = Ledger::default();
        for i in 0..(MAX_ENTRIES as u64 + 5) {
            ledger.insert(i, at(now.as_second() + i as i64));
        }
        assert!(ledger.prune(now, HashSet::new));
        assert_eq!(ledger.len(), MAX_ENTRIES);
        assert!(!ledger.contains(4) && ledger.contains(5));
        // The cap keeps the ConfigMap under its 1 MiB.
        assert!(ledger.render().len() < 1024 * 1024 - 4096);
    }
}
