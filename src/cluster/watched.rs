//! A value derived from one watched object (a parsed CA key pair, what a Certificate's Secret
//! was found to hold), kept for as long as the object's watch shows it at the resourceVersion
//! the value was derived from. Every event of the watch passes through `observe` before it
//! wakes a controller, so a reconcile woken by a change never finds the old value. Which
//! events wake the object's owner depends on who reads the values ([`Readers`]): an event the
//! owner has already seen (the echo of its own write, a re-list) need not wake it, but a value
//! read by another controller says nothing of what the owner has seen.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::Resource;
use kube::runtime::watcher;

/// Namespace and name of an object.
pub type ObjectKey = (String, String);

/// The last thing the watch said about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Nothing,
    Version(Box<str>),
    Deleted,
}

#[derive(Debug)]
struct Entry<V> {
    seen: Seen,
    /// Listed again since the current re-list began.
    listed: bool,
    /// The version the owner was last woken for (`Readers::Shared` only).
    woken: Option<Box<str>>,
    /// The value and the resourceVersion it was derived from; boxed, so that the table (which
    /// keeps spare room) holds one pointer per object, not the value.
    cached: Option<Box<(Box<str>, V)>>,
}

/// Who reads a cache's values, which decides what an event showing the cached version means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Readers {
    /// Only the owner that the events wake reads the values (a Certificate, the verdict on its
    /// own Secret): a value at the event's version was derived by the owner itself, so the
    /// event (the echo of its own write, a re-list) wakes nobody.
    #[default]
    Owner,
    /// Other controllers read the values too (CA key pairs: the Certificates they sign read
    /// them as well as their issuers). Another reader may derive the value at a version before
    /// its event arrives, which says nothing of what the owner has seen: every version the
    /// watch shows wakes the owner once; only a repeat of the version it was woken for (a
    /// re-list) does not.
    Shared,
}

/// Values by object, each valid while the watch shows the object at its version.
#[derive(Debug)]
pub struct WatchedCache<V> {
    /// Keyed by `namespace/name` in one allocation (see [`joined`]): the table keeps spare
    /// room, and at 10,000 objects each byte of key in it is 16 KB.
    entries: Mutex<HashMap<Box<str>, Entry<V>>>,
    readers: Readers,
}

/// `namespace/name`: neither may hold a `/`, so it splits back unambiguously.
fn joined((namespace, name): &ObjectKey) -> Box<str> {
    format!("{namespace}/{name}").into()
}

/// The key `joined` made.
fn split(key: &str) -> ObjectKey {
    let (namespace, name) = key.split_once('/').unwrap_or(("", key));
    (namespace.to_owned(), name.to_owned())
}

impl<V> Default for WatchedCache<V> {
    fn default() -> Self {
        Self::new(Readers::Owner)
    }
}

impl<V> WatchedCache<V> {
    /// An empty cache whose values are read by `readers`.
    pub fn new(readers: Readers) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            readers,
        }
    }
}

/// What the watch had shown of an object when a read of it began; handed back to `insert`.
#[derive(Clone, Debug)]
pub struct ReadToken(Seen);

/// What an event meant for the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Observed {
    /// The event shows the version the cached value was derived from: nothing changed.
    Unchanged,
    /// Anything else: a new version, a deletion, or an object the cache knows nothing of.
    Changed,
}

impl<V: Clone> WatchedCache<V> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Entry<V>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value of `key` and the version it was derived from, while still current.
    pub fn get(&self, key: &ObjectKey) -> Option<(String, V)> {
        let key = joined(key);
        let entries = self.lock();
        let (version, value) = entries.get(&key)?.cached.as_deref()?;
        Some((version.to_string(), value.clone()))
    }

    /// Starts tracking `key` before reading it from the API server.
    pub fn begin(&self, key: &ObjectKey) -> ReadToken {
        let key = joined(key);
        let mut entries = self.lock();
        let entry = entries.entry(key).or_insert(Entry {
            seen: Seen::Nothing,
            listed: true,
            woken: None,
            cached: None,
        });
        ReadToken(entry.seen.clone())
    }

    /// Keeps `value`, derived from `key` at `version` by a read that began with `token`, unless
    /// the watch has since shown something else: a newer version not yet read, or a deletion.
    /// The watch may already show `version` itself (the echo of a write often arrives before
    /// the write's own response). Returns whether the value was kept.
    pub fn insert(&self, key: &ObjectKey, token: ReadToken, version: &str, value: V) -> bool {
        let key = joined(key);
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(&key) else {
            return false;
        };
        let current =
            entry.seen == token.0 || matches!(&entry.seen, Seen::Version(seen) if **seen == *version);
        if current {
            entry.cached = Some(Box::new((version.into(), value)));
        }
        current
    }

    /// Changes the cached value of `key` in place, while there is one.
    pub fn update(&self, key: &ObjectKey, change: impl FnOnce(&mut V)) {
        let key = joined(key);
        if let Some(cached) = self.lock().get_mut(&key).and_then(|e| e.cached.as_mut()) {
            change(&mut cached.1);
        }
    }

    /// Drops the value of `key`, so that the next reconcile reads afresh.
    pub fn invalidate(&self, key: &ObjectKey) {
        let key = joined(key);
        if let Some(entry) = self.lock().get_mut(&key) {
            entry.cached = None;
        }
    }

    /// Stops tracking `key` (its owner is gone).
    pub fn forget(&self, key: &ObjectKey) {
        let key = joined(key);
        self.lock().remove(&key);
    }

    /// The watch shows `key` at `version`.
    fn applied(&self, key: &ObjectKey, version: &str) -> Observed {
        let key = joined(key);
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(&key) else {
            return Observed::Changed;
        };
        entry.seen = Seen::Version(version.into());
        entry.listed = true;
        let current = entry
            .cached
            .as_deref()
            .is_some_and(|(cached, _)| **cached == *version);
        if !current {
            entry.cached = None;
        }
        let seen_by_owner = match self.readers {
            Readers::Owner => current,
            Readers::Shared => entry.woken.replace(version.into()).as_deref() == Some(version),
        };
        match seen_by_owner {
            true => Observed::Unchanged,
            false => Observed::Changed,
        }
    }

    /// The watch shows `key` deleted.
    fn deleted(&self, key: &ObjectKey) -> Observed {
        let key = joined(key);
        if let Some(entry) = self.lock().get_mut(&key) {
            entry.seen = Seen::Deleted;
            entry.woken = None;
            entry.cached = None;
        }
        Observed::Changed
    }

    /// Applies one watch event, `key_of` naming the entry an object belongs to, and returns
    /// the objects whose owner must look again: the one the event is about, unless the owner
    /// has seen that version already (see [`Readers`]); and, when a re-list ends, every tracked object it no longer listed (deleted while the
    /// watch was down: a deletion with no event of its own must still wake its owner).
    pub fn observe<K: Resource>(
        &self,
        event: &watcher::Event<K>,
        key_of: impl Fn(&K) -> Option<ObjectKey>,
    ) -> Vec<ObjectKey> {
        match event {
            watcher::Event::Apply(object) | watcher::Event::InitApply(object) => {
                let Some(key) = key_of(object) else {
                    return Vec::new();
                };
                let observed = match object.meta().resource_version.as_deref() {
                    Some(version) => self.applied(&key, version),
                    None => self.deleted(&key),
                };
                match observed {
                    Observed::Unchanged => Vec::new(),
                    Observed::Changed => vec![key],
                }
            }
            watcher::Event::Delete(object) => match key_of(object) {
                Some(key) => {
                    self.deleted(&key);
                    vec![key]
                }
                None => Vec::new(),
            },
            watcher::Event::Init => {
                for entry in self.lock().values_mut() {
                    entry.listed = false;
                }
                Vec::new()
            }
            watcher::Event::InitDone => {
                let mut unlisted = Vec::new();
                for (key, entry) in self.lock().iter_mut().filter(|(_, e)| !e.listed) {
                    entry.listed = true;
                    if entry.seen != Seen::Deleted {
                        unlisted.push(split(key));
                    }
                    entry.seen = Seen::Deleted;
                    entry.woken = None;
                    entry.cached = None;
                }
                unlisted
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    fn key() -> ObjectKey {
        ("apps".into(), "web".into())
    }

    fn object(version: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                namespace: Some("apps".into()),
                name: Some("web".into()),
                resource_version: Some(version.into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    fn key_of(o: &ConfigMap) -> Option<ObjectKey> {
        Some((o.metadata.namespace.clone()?, o.metadata.name.clone()?))
    }

    #[test]
    fn a_value_lasts_while_the_watch_shows_its_version() {
        let cache = WatchedCache::default();
        let token = cache.begin(&key());
        assert!(cache.insert(&key(), token, "5", "five"));
        assert_eq!(cache.get(&key()), Some(("5".into(), "five")));
        // A re-list repeating version 5: unchanged, kept.
        assert!(cache.observe(&watcher::Event::Init, key_of).is_empty());
        assert!(
            cache
                .observe(&watcher::Event::InitApply(object("5")), key_of)
                .is_empty()
        );
        assert!(cache.observe(&watcher::Event::InitDone, key_of).is_empty());
        assert!(cache.get(&key()).is_some());
        // Version 6: gone.
        assert_eq!(
            cache.observe(&watcher::Event::Apply(object("6")), key_of),
            [key()]
        );
        assert_eq!(cache.get(&key()), None);
    }

    #[test]
    fn a_read_overtaken_by_a_newer_version_is_not_kept() {
        let cache = WatchedCache::default();
        let token = cache.begin(&key());
        // The read returned version 5, but version 6 was seen meanwhile.
        cache.observe(&watcher::Event::Apply(object("6")), key_of);
        assert!(!cache.insert(&key(), token, "5", "five"));
        assert_eq!(cache.get(&key()), None);
        // Deleted meanwhile: not kept either.
        let token = cache.begin(&key());
        cache.observe(&watcher::Event::Delete(object("6")), key_of);
        assert!(!cache.insert(&key(), token, "6", "six"));
    }

    #[test]
    fn the_echo_of_a_write_may_come_before_its_answer() {
        let cache = WatchedCache::default();
        let token = cache.begin(&key());
        assert_eq!(
            cache.observe(&watcher::Event::Apply(object("7")), key_of),
            [key()]
        );
        assert!(cache.insert(&key(), token, "7", "seven"));
        assert!(
            cache
                .observe(&watcher::Event::Apply(object("7")), key_of)
                .is_empty()
        );
    }

    #[test]
    fn a_relist_that_no_longer_lists_an_object_drops_its_value_and_wakes_its_owner() {
        let cache = WatchedCache::default();
        let token = cache.begin(&key());
        assert!(cache.insert(&key(), token, "5", "five"));
        cache.observe(&watcher::Event::Init, key_of);
        assert_eq!(cache.observe(&watcher::Event::InitDone, key_of), [key()]);
        assert_eq!(cache.get(&key()), None);
    }

    /// The key is kept as one `namespace/name` string and given back as it came, cluster-scoped
    /// objects (no namespace) included.
    #[test]
    fn a_key_is_kept_joined_and_given_back_split() {
        for key in [key(), (String::new(), "root-ca".to_owned())] {
            assert_eq!(split(&joined(&key)), key);
        }
        let cache = WatchedCache::<&'static str>::default();
        cache.begin(&(String::new(), "root-ca".to_owned()));
        cache.observe(&watcher::Event::Init, key_of);
        assert_eq!(
            cache.observe(&watcher::Event::InitDone, key_of),
            [(String::new(), "root-ca".to_owned())]
        );
    }

    fn apply(cache: &WatchedCache<&'static str>, version: &str) -> Vec<ObjectKey> {
        cache.observe(&watcher::Event::Apply(object(version)), key_of)
    }

    #[test]
    fn a_shared_value_read_by_another_before_its_event_still_wakes_the_owner() {
        // Issue 24: the owner (an Issuer) looked while the object was missing; another reader
        // (a Certificate signing with it) read version 7 before the watch delivered it.
        let cache = WatchedCache::new(Readers::Shared);
        let _owner_read = cache.begin(&key());
        let token = cache.begin(&key());
        assert!(cache.insert(&key(), token, "7", "seven"));
        assert_eq!(apply(&cache, "7"), [key()], "the owner never saw version 7");
        assert_eq!(cache.get(&key()), Some(("7".into(), "seven")), "the value stays");
        // A repeat of the version it was woken for (a re-list) wakes nobody.
        cache.observe(&watcher::Event::Init, key_of);
        assert!(
            cache
                .observe(&watcher::Event::InitApply(object("7")), key_of)
                .is_empty()
        );
        assert!(cache.observe(&watcher::Event::InitDone, key_of).is_empty());
        // Every new version wakes it, read by someone first or not.
        let token = cache.begin(&key());
        assert!(cache.insert(&key(), token, "8", "eight"));
        assert_eq!(apply(&cache, "8"), [key()]);
        assert_eq!(apply(&cache, "9"), [key()]);
        assert_eq!(cache.get(&key()), None);
    }

    #[test]
    fn a_shared_value_wakes_the_owner_after_a_deletion_and_its_return() {
        let cache = WatchedCache::new(Readers::Shared);
        let token = cache.begin(&key());
        assert!(cache.insert(&key(), token, "5", "five"));
        assert_eq!(apply(&cache, "5"), [key()]);
        assert_eq!(
            cache.observe(&watcher::Event::Delete(object("5")), key_of),
            [key()]
        );
        // Created again and read by another reader before its event: still news.
        let token = cache.begin(&key());
        assert!(cache.insert(&key(), token, "5", "five again"));
        assert_eq!(apply(&cache, "5"), [key()]);
        // Deleted while the watch was down: the re-list's end wakes the owner, and so does
        // the object's return after it.
        cache.observe(&watcher::Event::Init, key_of);
        assert_eq!(cache.observe(&watcher::Event::InitDone, key_of), [key()]);
        assert_eq!(apply(&cache, "6"), [key()]);
    }

    #[test]
    fn an_owned_value_read_before_its_event_is_the_owners_own_echo() {
        // The verdict on a Certificate's own Secret: the reader is the owner.
        let cache = WatchedCache::default();
        let token = cache.begin(&key());
        assert!(cache.insert(&key(), token, "7", "seven"));
        assert!(apply(&cache, "7").is_empty());
        assert_eq!(apply(&cache, "8"), [key()]);
    }

    #[test]
    fn objects_never_read_are_not_tracked() {
        let cache: WatchedCache<&str> = WatchedCache::default();
        assert_eq!(
            cache.observe(&watcher::Event::Apply(object("1")), key_of),
            [key()]
        );
        assert_eq!(cache.lock().len(), 0);
        let token = cache.begin(&key());
        assert!(cache.insert(&key(), token, "1", "one"));
        cache.update(&key(), |v| *v = "uno");
        assert_eq!(cache.get(&key()), Some(("1".into(), "uno")));
        cache.forget(&key());
        assert_eq!(cache.lock().len(), 0);
    }
}
