//! CA key pairs, read and parsed once per CA Secret resourceVersion and shared by the issuer
//! and certificate controllers. The cache follows the metadata watch of TLS Secrets that wakes
//! the issuers, so a changed CA Secret is read afresh before anyone is woken by the change;
//! and every version that watch shows wakes the issuers, even one a Certificate read first.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;

use super::secrets::get_secret;
use super::watched::{ObjectKey, Readers, WatchedCache};
use crate::api::CaIssuer;
use crate::certificate::secret::SECRET_TYPE_TLS;
use crate::error::Error;
use crate::issuer::ca::{CaProblem, issuer_urls, parse_ca, validate_ca};
use crate::pki::{CaFacts, CaKeyPair};

/// A CA Secret as read: its key pair, or why it has none.
type Parsed = Result<Arc<CaKeyPair>, CaProblem>;

/// Parsed CA key pairs by Secret.
#[derive(Debug)]
pub struct CaKeyPairs {
    cache: WatchedCache<Parsed>,
}

impl Default for CaKeyPairs {
    fn default() -> Self {
        // Read by the Certificates that sign with them too, not only by the issuers woken.
        Self {
            cache: WatchedCache::new(Readers::Shared),
        }
    }
}

impl CaKeyPairs {
    /// The key pair of the CA issuer `ca` whose Secret lives in `namespace`, judged at `now`;
    /// the Secret is read only when the cache has no current copy of it.
    pub async fn load(
        &self,
        client: &Client,
        namespace: &str,
        ca: &CaIssuer,
        now: jiff::Timestamp,
    ) -> Result<Result<(Arc<CaKeyPair>, CaFacts), CaProblem>, Error> {
        let key: ObjectKey = (namespace.to_owned(), ca.secret_name.clone());
        let urls = issuer_urls(ca);
        let cached = self
            .cache
            .get(&key)
            .map(|(_, parsed)| parsed)
            .filter(|parsed| match parsed {
                // Two issuers may share a Secret and differ in the URLs they write.
                Ok(pair) => pair.urls == urls,
                Err(_) => true,
            });
        let parsed = match cached {
            Some(parsed) => parsed,
            None => {
                let token = self.cache.begin(&key);
                let secret = get_secret(client, namespace, &ca.secret_name).await?;
                let parsed = parse_ca(namespace, ca, secret.as_ref()).map(Arc::new);
                // Only a TLS Secret is watched, so only its changes would be seen.
                if let Some(secret) = &secret
                    && secret.type_.as_deref() == Some(SECRET_TYPE_TLS)
                    && let Some(version) = &secret.metadata.resource_version
                {
                    self.cache.insert(&key, token, version, parsed.clone());
                }
                parsed
            }
        };
        Ok(parsed.and_then(|pair| {
            let facts = validate_ca(namespace, &ca.secret_name, &pair, now)?;
            Ok((pair, facts))
        }))
    }

    /// Follows one event of the TLS Secrets' metadata watch that wakes the issuers; returns
    /// the Secrets whose issuers must look again.
    pub fn observe(&self, event: &watcher::Event<PartialObjectMeta<Secret>>) -> Vec<ObjectKey> {
        self.cache.observe(event, |secret| {
            Some((secret.metadata.namespace.clone()?, secret.metadata.name.clone()?))
        })
    }
}
