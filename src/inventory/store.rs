//! The inventory's memory: for each watched object, who manages it, which of its versions the
//! facts were read from, and the facts of its certificates, compact (no Secret data, no DN
//! strings beyond the common names). A certificate found in many objects (a CA in every
//! `ca.crt`) is kept once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use jiff::{SignedDuration, Timestamp};

use super::facts::{ManagedBy, ObjectFacts, State, truncated_cn};
use super::warnings::{self, PendingWarning};
use crate::cluster::uid::Uid;

/// What kind of object certificates were found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Secret,
    ConfigMap,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Self::Secret => "Secret",
            Self::ConfigMap => "ConfigMap",
        }
    }
}

/// One watched object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

/// Which watch shows an object: the TLS Secret watch, the labelled Secret watch, the labelled
/// ConfigMap watch. An object stays while one of them shows it.
pub type Source = u8;
pub const TLS_SECRETS: Source = 1;
pub const LABELLED_SECRETS: Source = 2;
pub const LABELLED_CONFIGMAPS: Source = 4;
/// Not a watch: the facts of certkeeper's own Secret, told by the certificate controller as it
/// reads or writes it, may come before the watch shows the Secret.
const OWN: Source = 8;
/// Every watch.
const WATCHES: Source = TLS_SECRETS | LABELLED_SECRETS | LABELLED_CONFIGMAPS;
/// Not a source: found unread by the last `sweep_unread`.
const UNREAD_AT_SWEEP: Source = 16;

/// A certificate as kept: what the metrics and the warnings need.
#[derive(Debug, PartialEq, Eq)]
pub struct KeptCertificate {
    pub subject_cn: Box<str>,
    /// Shared: the leaves of one CA name it alike.
    pub issuer_cn: Arc<str>,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub fingerprint: Box<str>,
}

/// The facts read from one version of an object.
#[derive(Debug)]
struct Facts {
    version: Box<str>,
    certificates: Box<[(Arc<str>, Arc<KeptCertificate>)]>,
    unreadable: u32,
    omitted: u32,
}

#[derive(Debug)]
struct Entry {
    sources: Source,
    /// Compact (a UUID in 16 bytes): one for each of the cluster's TLS Secrets.
    uid: Uid,
    /// The version the watches last showed.
    shown: Box<str>,
    managed_by: ManagedBy,
    /// None until read (or while its namespace is not watched).
    facts: Option<Facts>,
    /// The warnings already sent (their Event names' hashes); boxed, two words where a `Vec`
    /// takes three, in each of many entries that have none.
    sent: Box<[u64]>,
}

#[derive(Debug, Default)]
struct Kept {
    /// The namespaces watched; None: every one.
    namespaces: Option<HashSet<String>>,
    objects: HashMap<ObjectKey, Entry>,
    certificates: HashSet<ByFingerprint>,
    /// Key names and issuer common names, each kept once.
    strings: HashSet<Arc<str>>,
}

/// A kept certificate, found by its fingerprint.
#[derive(Debug)]
struct ByFingerprint(Arc<KeptCertificate>);

impl PartialEq for ByFingerprint {
    fn eq(&self, other: &Self) -> bool {
        self.0.fingerprint == other.0.fingerprint
    }
}

impl Eq for ByFingerprint {}

impl std::hash::Hash for ByFingerprint {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.fingerprint.hash(state);
    }
}

impl std::borrow::Borrow<str> for ByFingerprint {
    fn borrow(&self) -> &str {
        &self.0.fingerprint
    }
}

/// `text` from `strings`, added when new.
fn interned(strings: &mut HashSet<Arc<str>>, text: &str) -> Arc<str> {
    match strings.get(text) {
        Some(kept) => kept.clone(),
        None => {
            let kept: Arc<str> = text.into();
            strings.insert(kept.clone());
            kept
        }
    }
}

/// Every certificate the inventory knows of, shared by its watches, the metrics and the
/// warnings.
#[derive(Debug, Default)]
pub struct Inventory(Mutex<Kept>);

/// What the metadata watch says of an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub uid: String,
    pub version: String,
    pub managed_by: ManagedBy,
}

/// One certificate, as the metrics read it under the store's lock.
#[derive(Clone, Copy, Debug)]
pub struct RowRef<'a> {
    pub object: &'a ObjectKey,
    pub key: &'a str,
    pub managed_by: ManagedBy,
    pub certificate: &'a Arc<KeptCertificate>,
}

/// One certificate row, copied out of the store (tests).
#[cfg(test)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub object: ObjectKey,
    pub key: String,
    pub managed_by: ManagedBy,
    pub certificate: Arc<KeptCertificate>,
}

impl Inventory {
    fn lock(&self) -> MutexGuard<'_, Kept> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The watch `source` shows `object` as `seen`. True when its facts must be read: it is
    /// new, or changed since they were read.
    pub fn seen(&self, object: &ObjectKey, source: Source, seen: &Seen) -> bool {
        let mut kept = self.lock();
        if !kept.objects.contains_key(object) {
            let entry = Entry {
                sources: 0,
                uid: Uid::new(&seen.uid),
                shown: seen.version.as_str().into(),
                managed_by: seen.managed_by,
                facts: None,
                sent: Box::default(),
            };
            kept.objects.insert(object.clone(), entry);
        }
        let Some(entry) = kept.objects.get_mut(object) else {
            return true;
        };
        entry.sources |= source;
        let mut old = None;
        if !entry.uid.is(&seen.uid) {
            // Deleted and made again under the same name: a new object, whose certificates
            // are not the old one's. (No uid yet: told about by its controller before any
            // watch showed it.)
            if !entry.uid.is_empty() {
                entry.sent = Box::default();
                old = entry.facts.take();
            }
            entry.uid = Uid::new(&seen.uid);
        }
        if *entry.shown != *seen.version {
            entry.shown = seen.version.as_str().into();
            // A new version: its controller gets a whole grace to tell about it.
            entry.sources &= !UNREAD_AT_SWEEP;
        }
        entry.managed_by = seen.managed_by;
        let read = entry.facts.as_ref().is_none_or(|f| *f.version != *seen.version);
        kept.release(old);
        read
    }

    /// The watched objects whose facts were not those of the version the watches showed at
    /// this sweep nor at the one before: certkeeper's own Secrets its controller has not told
    /// about (every other is read at once), to read now. Called every grace period, so such a
    /// Secret waits between one and two of them.
    pub fn sweep_unread(&self) -> Vec<ObjectKey> {
        let mut kept = self.lock();
        let namespaces = kept.namespaces.clone();
        let mut due = Vec::new();
        for (key, entry) in &mut kept.objects {
            let watched = namespaces.as_ref().is_none_or(|n| n.contains(&key.namespace));
            let unread = entry.sources & WATCHES != 0
                && watched
                && entry.facts.as_ref().is_none_or(|f| f.version != entry.shown);
            match (unread, entry.sources & UNREAD_AT_SWEEP != 0) {
                (true, true) => {
                    entry.sources &= !UNREAD_AT_SWEEP;
                    due.push(key.clone());
                }
                (true, false) => entry.sources |= UNREAD_AT_SWEEP,
                (false, _) => entry.sources &= !UNREAD_AT_SWEEP,
            }
        }
        due
    }

    /// Watches only `namespaces` (None: every one) from now on; the facts of objects elsewhere
    /// are dropped. Returns the objects of newly watched namespaces whose facts are not read.
    pub fn watch_namespaces(&self, namespaces: Option<HashSet<String>>) -> Vec<ObjectKey> {
        let mut kept = self.lock();
        let before = kept.namespaces.replace(HashSet::new());
        kept.namespaces = namespaces;
        let was = |ns: &str| before.as_ref().is_none_or(|b| b.contains(ns));
        let mut dropped = Vec::new();
        let mut unread = Vec::new();
        let selection = kept.namespaces.clone();
        let is = |ns: &str| selection.as_ref().is_none_or(|s| s.contains(ns));
        for (key, entry) in &mut kept.objects {
            if !is(&key.namespace) {
                dropped.extend(entry.facts.take());
            } else if !was(&key.namespace) && entry.facts.is_none() && entry.sources & WATCHES != 0 {
                unread.push(ObjectKey::clone(key));
            }
        }
        for old in dropped {
            kept.release(Some(old));
        }
        unread
    }

    /// Whether objects in `namespace` are watched.
    pub fn watches(&self, namespace: &str) -> bool {
        self.lock()
            .namespaces
            .as_ref()
            .is_none_or(|n| n.contains(namespace))
    }

    /// The watch `source` no longer shows `object` (deleted, or no longer selected). Once none
    /// does, it is forgotten.
    pub fn gone(&self, object: &ObjectKey, source: Source) {
        let mut kept = self.lock();
        let Some(entry) = kept.objects.get_mut(object) else {
            return;
        };
        entry.sources &= !source;
        if entry.sources & WATCHES == 0 {
            let old = kept.objects.remove(object).and_then(|e| e.facts);
            kept.release(old);
        }
    }

    /// After the watch `source` listed again: what it did not list is gone for it.
    /// An object only told about (certkeeper's own Secret, written after the list was taken)
    /// is not touched.
    pub fn listed(&self, source: Source, listed: &HashSet<ObjectKey>) {
        let mut kept = self.lock();
        let mut dropped = Vec::new();
        kept.objects.retain(|key, entry| {
            if entry.sources & source == 0 || listed.contains(key) {
                return true;
            }
            entry.sources &= !source;
            let shown = entry.sources & WATCHES != 0;
            if !shown {
                dropped.extend(entry.facts.take());
            }
            shown
        });
        for old in dropped {
            kept.release(Some(old));
        }
    }

    /// The facts read from `object` at `seen.version`. Kept only while a watch shows the object
    /// (a read that raced its deletion is dropped).
    pub fn record(&self, object: &ObjectKey, seen: &Seen, facts: &ObjectFacts) {
        let mut kept = self.lock();
        let Kept {
            namespaces,
            objects,
            certificates,
            strings,
        } = &mut *kept;
        // A read that finished after its namespace stopped being watched is dropped.
        if namespaces
            .as_ref()
            .is_some_and(|n| !n.contains(&object.namespace))
        {
            return;
        }
        let Some(entry) = objects.get_mut(object) else {
            return;
        };
        // The same certificate twice under one key (a bundle concatenated twice) is one series.
        let mut once = HashSet::new();
        let certs = facts
            .certificates
            .iter()
            .filter(|c| once.insert((c.key.as_str(), c.fingerprint.as_str())))
            .map(|c| {
                let key = interned(strings, &c.key);
                let kept = match certificates.get(c.fingerprint.as_str()) {
                    Some(kept) => kept.0.clone(),
                    None => {
                        let kept = Arc::new(KeptCertificate {
                            subject_cn: truncated_cn(&c.subject_cn).into(),
                            issuer_cn: interned(strings, truncated_cn(&c.issuer_cn)),
                            not_before: c.not_before,
                            not_after: c.not_after,
                            fingerprint: c.fingerprint.as_str().into(),
                        });
                        certificates.insert(ByFingerprint(kept.clone()));
                        kept
                    }
                };
                (key, kept)
            })
            .collect();
        if !entry.uid.is(&seen.uid) {
            entry.uid = Uid::new(&seen.uid);
            entry.sent = Box::default();
        }
        entry.managed_by = seen.managed_by;
        let old = entry.facts.replace(Facts {
            version: seen.version.as_str().into(),
            certificates: certs,
            unreadable: u32::try_from(facts.unreadable.len()).unwrap_or(u32::MAX),
            omitted: u32::try_from(facts.omitted).unwrap_or(u32::MAX),
        });
        kept.release(old);
    }

    /// The facts of certkeeper's own Secret `object` at `version`, from the certificate
    /// controller that has just read or written it: the inventory reads nothing for it.
    pub fn record_own(&self, object: &ObjectKey, version: &str, facts: &ObjectFacts) {
        let uid = {
            let mut kept = self.lock();
            if kept
                .namespaces
                .as_ref()
                .is_some_and(|n| !n.contains(&object.namespace))
            {
                return;
            }
            if !kept.objects.contains_key(object) {
                let entry = Entry {
                    sources: OWN,
                    uid: Uid::Empty,
                    shown: version.into(),
                    managed_by: ManagedBy::Certkeeper,
                    facts: None,
                    sent: Box::default(),
                };
                kept.objects.insert(object.clone(), entry);
            }
            let Some(entry) = kept.objects.get_mut(object) else {
                return;
            };
            if entry.facts.as_ref().is_some_and(|f| *f.version == *version) {
                return;
            }
            entry.uid.to_string()
        };
        let seen = Seen {
            uid,
            version: version.to_owned(),
            managed_by: ManagedBy::Certkeeper,
        };
        self.record(object, &seen, facts);
    }

    /// Whether the facts of `object` were read at `version`.
    pub fn holds(&self, object: &ObjectKey, version: &str) -> bool {
        self.lock()
            .objects
            .get(object)
            .and_then(|e| e.facts.as_ref())
            .is_some_and(|f| *f.version == *version)
    }

    /// Calls `f` with every certificate, in object then key order, under the lock: nothing
    /// of the store outlives it (a scrape holding a certificate would keep it from being
    /// forgotten).
    pub fn with_rows<R>(&self, f: impl FnOnce(&[RowRef<'_>]) -> R) -> R {
        let kept = self.lock();
        let mut rows: Vec<RowRef<'_>> = kept
            .objects
            .iter()
            .filter_map(|(key, entry)| Some((key, entry, entry.facts.as_ref()?)))
            .flat_map(|(key, entry, facts)| {
                facts.certificates.iter().map(|(k, c)| RowRef {
                    object: key,
                    key: k,
                    managed_by: entry.managed_by,
                    certificate: c,
                })
            })
            .collect();
        rows.sort_by(|a, b| (a.object, a.key).cmp(&(b.object, b.key)));
        f(&rows)
    }

    /// A watch shows `object` as `seen`, and its facts read at that version are `facts` (tests).
    #[cfg(test)]
    pub fn found(&self, object: &ObjectKey, source: Source, seen: &Seen, facts: &ObjectFacts) {
        self.seen(object, source, seen);
        self.record(object, seen, facts);
    }

    /// Every certificate row, copied out (for tests).
    #[cfg(test)]
    pub fn rows(&self) -> Vec<Row> {
        self.with_rows(|rows| {
            rows.iter()
                .map(|r| Row {
                    object: ObjectKey::clone(r.object),
                    key: r.key.to_string(),
                    managed_by: r.managed_by,
                    certificate: r.certificate.clone(),
                })
                .collect()
        })
    }

    /// How many certificates are in each state at `now` (unreadable: values that could not be
    /// read), and how many were beyond the per-object limit.
    pub fn counts(&self, now: Timestamp, expiring_within: SignedDuration) -> (HashMap<State, u64>, u64) {
        let kept = self.lock();
        let mut counts: HashMap<State, u64> = State::ALL.iter().map(|s| (*s, 0)).collect();
        let mut omitted = 0;
        for facts in kept.objects.values().filter_map(|e| e.facts.as_ref()) {
            for (_, c) in &facts.certificates {
                *counts
                    .entry(State::of(c.not_after, now, expiring_within))
                    .or_default() += 1;
            }
            *counts.entry(State::Unreadable).or_default() += u64::from(facts.unreadable);
            omitted += u64::from(facts.omitted);
        }
        (counts, omitted)
    }

    /// The warnings due at `now` and not sent yet: for certificates nobody else warns about
    /// (not certkeeper's own).
    pub fn due_warnings(&self, thresholds: &[SignedDuration], now: Timestamp) -> Vec<PendingWarning> {
        let kept = self.lock();
        let mut due = Vec::new();
        for (key, entry) in &kept.objects {
            if entry.managed_by == ManagedBy::Certkeeper {
                continue;
            }
            let Some(facts) = &entry.facts else { continue };
            let start = due.len();
            for (data_key, cert) in &facts.certificates {
                let Some(warning) = warnings::due(cert, thresholds, now) else {
                    continue;
                };
                let pending = PendingWarning::new(key, &entry.uid.to_string(), data_key, cert, warning);
                let again = due[start..]
                    .iter()
                    .any(|d: &PendingWarning| d.hash == pending.hash);
                if !entry.sent.contains(&pending.hash) && !again {
                    due.push(pending);
                }
            }
        }
        due.sort_by(|a, b| (&a.object, &a.event_name).cmp(&(&b.object, &b.event_name)));
        due
    }

    /// `warning` went out (or had already: its Event exists).
    pub fn sent(&self, warning: &PendingWarning) {
        let mut kept = self.lock();
        if let Some(entry) = kept.objects.get_mut(&warning.object)
            && entry.uid.is(&warning.uid)
            && !entry.sent.contains(&warning.hash)
        {
            let mut sent = std::mem::take(&mut entry.sent).into_vec();
            sent.push(warning.hash);
            entry.sent = sent.into_boxed_slice();
        }
    }

    /// The hashes of the warnings sent to the objects the inventory holds.
    pub fn sent_hashes(&self) -> HashSet<u64> {
        let kept = self.lock();
        kept.objects
            .values()
            .flat_map(|e| e.sent.iter().copied())
            .collect()
    }

    /// How many objects are watched, and how many of them have facts.
    pub fn objects(&self) -> (usize, usize) {
        let kept = self.lock();
        let read = kept.objects.values().filter(|e| e.facts.is_some()).count();
        (kept.objects.len(), read)
    }
}

impl Kept {
    /// Drops `old` facts, then forgets those of its certificates and key names no object
    /// holds any more.
    fn release(&mut self, old: Option<Facts>) {
        let Some(old) = old else { return };
        let held: Vec<(Arc<str>, Arc<KeptCertificate>)> = old.certificates.to_vec();
        drop(old);
        for (key, cert) in held {
            // Held here, and by the set: nobody else.
            if Arc::strong_count(&cert) == 2 {
                self.certificates.remove(&*cert.fingerprint);
                let issuer = cert.issuer_cn.clone();
                drop(cert);
                if Arc::strong_count(&issuer) == 2 {
                    self.strings.remove(&*issuer);
                }
            }
            if Arc::strong_count(&key) == 2 {
                self.strings.remove(&*key);
            }
        }
    }
}
