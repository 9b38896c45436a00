//! Which TLS Secrets exist, as the metadata watch of every `kubernetes.io/tls` Secret (the one
//! that wakes the Issuers) shows them, so that a first issuance need not read a Secret the
//! watch has never seen: a request less on the path from apply to Ready.
//!
//! Only "absent" is ever trusted, and only while the watch holds a complete list: a name the
//! index holds is read as before. Names are kept as 64-bit hashes (a few bytes each at 10,000
//! Secrets); a collision can only make a missing Secret look present, which costs a read.

use std::collections::HashSet;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;

#[derive(Debug, Default)]
struct Names {
    present: HashSet<u64>,
    /// The names listed so far by a re-list under way (`Init` .. `InitDone`).
    relisting: Option<HashSet<u64>>,
    /// The watch has listed completely at least once, and no re-list is under way.
    complete: bool,
}

/// The TLS Secrets the watch shows, by namespace and name.
#[derive(Debug, Default)]
pub struct TlsSecretNames {
    names: Mutex<Names>,
}

fn key(namespace: &str, name: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    (namespace, name).hash(&mut hasher);
    hasher.finish()
}

fn key_of(secret: &PartialObjectMeta<Secret>) -> Option<u64> {
    Some(key(
        secret.metadata.namespace.as_deref()?,
        secret.metadata.name.as_deref()?,
    ))
}

impl TlsSecretNames {
    fn lock(&self) -> std::sync::MutexGuard<'_, Names> {
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the watch, holding a complete list, shows no TLS Secret `namespace/name`. False
    /// whenever it cannot say (before the first list, during a re-list): then read it.
    pub fn known_absent(&self, namespace: &str, name: &str) -> bool {
        let names = self.lock();
        names.complete && !names.present.contains(&key(namespace, name))
    }

    /// The controller wrote `namespace/name`: present from now on, even before the watch's echo.
    pub fn wrote(&self, namespace: &str, name: &str) {
        let k = key(namespace, name);
        let mut names = self.lock();
        names.present.insert(k);
        if let Some(relisting) = names.relisting.as_mut() {
            relisting.insert(k);
        }
    }

    /// Follows one event of the TLS Secrets' metadata watch.
    pub fn observe(&self, event: &watcher::Event<PartialObjectMeta<Secret>>) {
        let mut names = self.lock();
        match event {
            watcher::Event::Init => {
                names.relisting = Some(HashSet::new());
                names.complete = false;
            }
            watcher::Event::InitApply(secret) => {
                if let Some(k) = key_of(secret) {
                    names.present.insert(k);
                    if let Some(relisting) = names.relisting.as_mut() {
                        relisting.insert(k);
                    }
                }
            }
            watcher::Event::InitDone => {
                if let Some(listed) = names.relisting.take() {
                    names.present = listed;
                }
                names.complete = true;
            }
            watcher::Event::Apply(secret) => {
                if let Some(k) = key_of(secret) {
                    names.present.insert(k);
                    if let Some(relisting) = names.relisting.as_mut() {
                        relisting.insert(k);
                    }
                }
            }
            watcher::Event::Delete(secret) => {
                if let Some(k) = key_of(secret) {
                    names.present.remove(&k);
                    if let Some(relisting) = names.relisting.as_mut() {
                        relisting.remove(&k);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(namespace: &str, name: &str) -> PartialObjectMeta<Secret> {
        let mut secret = PartialObjectMeta::<Secret>::default();
        secret.metadata.namespace = Some(namespace.into());
        secret.metadata.name = Some(name.into());
        secret.metadata.resource_version = Some("1".into());
        secret
    }

    #[test]
    fn nothing_is_known_absent_before_the_first_complete_list() {
        let names = TlsSecretNames::default();
        assert!(!names.known_absent("apps", "web-tls"));
        names.observe(&watcher::Event::Init);
        names.observe(&watcher::Event::InitApply(secret("apps", "api-tls")));
        assert!(
            !names.known_absent("apps", "web-tls"),
            "the list is not complete yet"
        );
        names.observe(&watcher::Event::InitDone);
        assert!(names.known_absent("apps", "web-tls"));
        assert!(!names.known_absent("apps", "api-tls"));
        assert!(
            names.known_absent("other", "api-tls"),
            "the same name in another namespace"
        );
    }

    #[test]
    fn live_events_and_own_writes_keep_the_index_current() {
        let names = TlsSecretNames::default();
        names.observe(&watcher::Event::Init);
        names.observe(&watcher::Event::InitDone);
        names.observe(&watcher::Event::Apply(secret("apps", "a")));
        assert!(!names.known_absent("apps", "a"));
        names.observe(&watcher::Event::Delete(secret("apps", "a")));
        assert!(names.known_absent("apps", "a"));
        // Written by the controller, its echo not yet seen: present.
        names.wrote("apps", "b");
        assert!(!names.known_absent("apps", "b"));
    }

    #[test]
    fn a_relist_trusts_nothing_until_complete_and_then_drops_what_it_did_not_list() {
        let names = TlsSecretNames::default();
        names.observe(&watcher::Event::Init);
        names.observe(&watcher::Event::InitApply(secret("apps", "kept")));
        names.observe(&watcher::Event::InitApply(secret("apps", "gone")));
        names.observe(&watcher::Event::InitDone);
        // The watch expired (410) and lists again.
        names.observe(&watcher::Event::Init);
        assert!(!names.known_absent("apps", "new"), "no claim while re-listing");
        names.observe(&watcher::Event::InitApply(secret("apps", "kept")));
        names.wrote("apps", "written-meanwhile");
        names.observe(&watcher::Event::InitDone);
        assert!(!names.known_absent("apps", "kept"));
        assert!(!names.known_absent("apps", "written-meanwhile"));
        assert!(
            names.known_absent("apps", "gone"),
            "deleted while the watch was down"
        );
    }
}
