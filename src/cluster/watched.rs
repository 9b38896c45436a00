//! A value derived from one watched object (a parsed CA key pair, what a Certificate's Secret
//! was found to hold), kept for as long as the object's watch shows it at the resourceVersion
//! the value was derived from. Every event of the watch passes through `observe` before it
//! wakes a controller, so a reconcile woken by a change never finds the old value; an event
//! that only repeats the cached version (the echo of the controller's own write, a re-list)
//! is reported as such, so it need not wake anyone.

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
    Version(String),
    Deleted,
}

#[derive(Debug)]
struct Entry<V> {
    seen: Seen,
    /// Listed again since the current re-list began.
    listed: bool,
    /// The value and the resourceVersion it was derived from; boxed, so that the table (which
    /// keeps spare room) holds one pointer per object, not the value.
    cached: Option<Box<(String, V)>>,
}

/// Values by object, each valid while the watch shows the object at its version.
#[derive(Debug)]
pub struct WatchedCache<V> {
    entries: Mutex<HashMap<ObjectKey, Entry<V>>>,
}

impl<V> Default for WatchedCache<V> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
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
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, Entry<V>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value of `key` and the version it was derived from, while still current.
    pub fn get(&self, key: &ObjectKey) -> Option<(String, V)> {
        self.lock().get(key).and_then(|e| e.cached.as_deref().cloned())
    }

    /// Starts tracking `key` before reading it from the API server.
    pub fn begin(&self, key: &ObjectKey) -> ReadToken {
        let mut entries = self.lock();
        let entry = entries.entry(key.clone()).or_insert(Entry {
            seen: Seen::Nothing,
            listed: true,
            cached: None,
        });
        ReadToken(entry.seen.clone())
    }

    /// Keeps `value`, derived from `key` at `version` by a read that began with `token`, unless
    /// the watch has since shown something else: a newer version not yet read, or a deletion.
    /// The watch may already show `version` itself (the echo of a write often arrives before
    /// the write's own response). Returns whether the value was kept.
    pub fn insert(&self, key: &ObjectKey, token: ReadToken, version: &str, value: V) -> bool {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(key) else {
            return false;
        };
        let current = entry.seen == token.0 || entry.seen == Seen::Version(version.to_owned());
        if current {
            entry.cached = Some(Box::new((version.to_owned(), value)));
        }
        current
    }

    /// Changes the cached value of `key` in place, while there is one.
    pub fn update(&self, key: &ObjectKey, change: impl FnOnce(&mut V)) {
        if let Some(cached) = self.lock().get_mut(key).and_then(|e| e.cached.as_mut()) {
            change(&mut cached.1);
        }
    }

    /// Drops the value of `key`, so that the next reconcile reads afresh.
    pub fn invalidate(&self, key: &ObjectKey) {
        if let Some(entry) = self.lock().get_mut(key) {
            entry.cached = None;
        }
    }

    /// Stops tracking `key` (its owner is gone).
    pub fn forget(&self, key: &ObjectKey) {
        self.lock().remove(key);
    }

    /// The watch shows `key` at `version`.
    fn applied(&self, key: &ObjectKey, version: &str) -> Observed {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(key) else {
            return Observed::Changed;
        };
        entry.seen = Seen::Version(version.to_owned());
        entry.listed = true;
        match entry.cached.as_deref() {
            Some((cached, _)) if cached == version => Observed::Unchanged,
            _ => {
                entry.cached = None;
                Observed::Changed
            }
        }
    }

    /// The watch shows `key` deleted.
    fn deleted(&self, key: &ObjectKey) -> Observed {
        if let Some(entry) = self.lock().get_mut(key) {
            entry.seen = Seen::Deleted;
            entry.cached = None;
        }
        Observed::Changed
    }

    /// Applies one watch event, `key_of` naming the entry an object belongs to, and returns
    /// the objects whose owner must look again: the one the event is about, unless the event
    /// only repeats the cached version (the echo of the controller's own write, a re-list);
    /// and, when a re-list ends, every tracked object it no longer listed (deleted while the
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
                        unlisted.push(key.clone());
                    }
                    entry.seen = Seen::Deleted;
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
