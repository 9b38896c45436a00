//! Reading a Secret by name.

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;

use crate::error::Error;

/// Reads the Secret `name` in `namespace`; `None` when it does not exist.
pub async fn get_secret(client: &Client, namespace: &str, name: &str) -> Result<Option<Secret>, Error> {
    Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|source| Error::ReadSecret {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        })
}

/// Which Secrets exist, as the watch of every Secret's metadata shows them: enough to know that
/// a Certificate's Secret does not exist without asking the API server (a first issuance then
/// makes no read). Kept as 64-bit hashes of `namespace/name` (16 bytes or so per Secret in the
/// cluster): a collision can only make a missing Secret look present, which costs one read.
/// Absence is trusted only while the watch has listed and not begun listing again since.
#[derive(Debug, Default)]
pub struct SecretNames {
    state: std::sync::Mutex<NamesState>,
}

#[derive(Debug, Default)]
struct NamesState {
    hasher: std::hash::RandomState,
    present: std::collections::HashSet<u64>,
    /// The names of a list under way, swapped in when it is complete.
    listing: Option<std::collections::HashSet<u64>>,
    listed: bool,
}

impl NamesState {
    fn hash(&self, namespace: &str, name: &str) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one((namespace, name))
    }
}

impl SecretNames {
    fn lock(&self) -> std::sync::MutexGuard<'_, NamesState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Follows one event of the watch of every Secret's metadata.
    pub fn observe<K: kube::Resource>(&self, event: &kube::runtime::watcher::Event<K>) {
        use kube::runtime::watcher::Event;
        let mut state = self.lock();
        let key = |state: &NamesState, object: &K| {
            let meta = object.meta();
            state.hash(
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default(),
            )
        };
        match event {
            Event::Init => {
                state.listing = Some(std::collections::HashSet::new());
                // Until this list is complete, what was seen may be stale.
                state.listed = false;
            }
            Event::InitApply(object) => {
                let hash = key(&state, object);
                match state.listing.as_mut() {
                    Some(listing) => listing.insert(hash),
                    None => state.present.insert(hash),
                };
            }
            Event::InitDone => {
                if let Some(mut listing) = state.listing.take() {
                    listing.shrink_to_fit();
                    state.present = listing;
                }
                state.listed = true;
            }
            Event::Apply(object) => {
                let hash = key(&state, object);
                state.present.insert(hash);
            }
            Event::Delete(object) => {
                let hash = key(&state, object);
                state.present.remove(&hash);
            }
        }
    }

    /// Notes a Secret the controller has just written, before its watch event arrives.
    pub fn written(&self, namespace: &str, name: &str) {
        let mut state = self.lock();
        let hash = state.hash(namespace, name);
        state.present.insert(hash);
        if let Some(listing) = state.listing.as_mut() {
            listing.insert(hash);
        }
    }

    /// Whether the watch shows that `namespace`/`name` does not exist.
    pub fn known_absent(&self, namespace: &str, name: &str) -> bool {
        let state = self.lock();
        state.listed && !state.present.contains(&state.hash(namespace, name))
    }
}

/// Reads the Secret `name` in `namespace` unless `names` shows it does not exist; `None` when
/// it does not.
pub async fn get_secret_unless_absent(
    client: &Client,
    names: &SecretNames,
    namespace: &str,
    name: &str,
) -> Result<Option<Secret>, Error> {
    if names.known_absent(namespace, name) {
        return Ok(None);
    }
    get_secret(client, namespace, name).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::runtime::watcher::Event;

    fn secret(namespace: &str, name: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                namespace: Some(namespace.into()),
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            ..Secret::default()
        }
    }

    #[test]
    fn absence_is_known_only_once_listed_and_follows_every_event() {
        let names = SecretNames::default();
        assert!(!names.known_absent("apps", "web-tls"), "nothing listed yet");
        names.observe(&Event::<Secret>::Init);
        names.observe(&Event::InitApply(secret("apps", "db-tls")));
        assert!(!names.known_absent("apps", "web-tls"), "the list is not complete");
        names.observe(&Event::<Secret>::InitDone);
        assert!(names.known_absent("apps", "web-tls"));
        assert!(!names.known_absent("apps", "db-tls"));
        assert!(names.known_absent("other", "db-tls"), "namespaces are told apart");
        names.observe(&Event::Apply(secret("apps", "web-tls")));
        assert!(!names.known_absent("apps", "web-tls"));
        names.observe(&Event::Delete(secret("apps", "db-tls")));
        assert!(names.known_absent("apps", "db-tls"));
        // A re-list (after a 410, a restart): stale until complete, then exactly what it listed.
        names.observe(&Event::<Secret>::Init);
        assert!(!names.known_absent("apps", "db-tls"));
        names.observe(&Event::InitApply(secret("apps", "db-tls")));
        names.observe(&Event::<Secret>::InitDone);
        assert!(!names.known_absent("apps", "db-tls"));
        assert!(
            names.known_absent("apps", "web-tls"),
            "deleted while the watch was away"
        );
        // What the controller wrote is present before its event arrives.
        names.written("apps", "web-tls");
        assert!(!names.known_absent("apps", "web-tls"));
    }
}
