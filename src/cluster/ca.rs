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
use crate::api::{CaIssuer, CaPkcs11};
use crate::certificate::secret::SECRET_TYPE_TLS;
use crate::error::Error;
use crate::issuer::ca::{CaProblem, issuer_urls, parse_ca, validate_ca};
use crate::pkcs11::{Due, HsmError, HsmKey, HsmReason, Pkcs11Registry};
use crate::pki::{CaFacts, CaKey, CaKeyPair};

/// What a load needs for a CA whose key is on a token.
#[derive(Clone, Copy)]
pub struct HsmAccess<'a> {
    pub registry: &'a Arc<Pkcs11Registry>,
    /// An Issuer (not a ClusterIssuer): needs `--pkcs11-allow-namespaced-issuers`.
    pub namespaced: bool,
    /// The issuer's own check looks for the key on the token again now and then; a
    /// Certificate's load only signs.
    pub probe: bool,
}

/// A CA Secret as read: its key pair, or why it has none.
type Parsed = Result<Arc<CaKeyPair>, CaProblem>;

/// A CA Secret as read for an issuer's `ca.pkcs11`: a Secret's key pair, or a key on the token
/// its certificate names, or a refusal (`tls.key` beside `pkcs11`), depends on it.
#[derive(Clone, Debug)]
struct ReadFor {
    pkcs11: Option<CaPkcs11>,
    parsed: Parsed,
}

/// Parsed CA key pairs by Secret.
#[derive(Debug)]
pub struct CaKeyPairs {
    cache: WatchedCache<ReadFor>,
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
        hsm: HsmAccess<'_>,
        namespace: &str,
        ca: &CaIssuer,
        now: jiff::Timestamp,
    ) -> Result<Result<(Arc<CaKeyPair>, CaFacts), CaProblem>, Error> {
        if ca.pkcs11.is_some() && hsm.namespaced && !hsm.registry.settings.allow_namespaced_issuers {
            return Ok(Err(CaProblem::hsm(
                namespace,
                &ca.secret_name,
                &HsmError::new(
                    HsmReason::NotAllowed,
                    "a namespaced Issuer may not use a PKCS#11 key unless the controller runs with \
                     --pkcs11-allow-namespaced-issuers; use a ClusterIssuer",
                ),
            )));
        }
        let key: ObjectKey = (namespace.to_owned(), ca.secret_name.clone());
        let urls = issuer_urls(ca);
        let cached = self
            .cache
            .get(&key)
            .map(|(_, read)| read)
            // An issuer that gained, lost or changed `ca.pkcs11` reads its Secret again: the key
            // it signs with, and whether a `tls.key` is refused, follow from it.
            .filter(|read| read.pkcs11 == ca.pkcs11)
            .map(|read| read.parsed)
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
                    let read = ReadFor {
                        pkcs11: ca.pkcs11.clone(),
                        parsed: parsed.clone(),
                    };
                    self.cache.insert(&key, token, version, read);
                }
                parsed
            }
        };
        let pair = match parsed {
            Ok(pair) => pair,
            Err(problem) => return Ok(Err(problem)),
        };
        let facts = match validate_ca(namespace, &ca.secret_name, &pair, now) {
            Ok(facts) => facts,
            Err(problem) => return Ok(Err(problem)),
        };
        if let CaKey::Hsm(key) = &pair.key
            && let Err(e) = ready_on_token(client, hsm, key).await?
        {
            return Ok(Err(CaProblem::hsm(namespace, &ca.secret_name, &e)));
        }
        Ok(Ok((pair, facts)))
    }

    /// Follows one event of the TLS Secrets' metadata watch that wakes the issuers; returns
    /// the Secrets whose issuers must look again.
    pub fn observe(&self, event: &watcher::Event<PartialObjectMeta<Secret>>) -> Vec<ObjectKey> {
        self.cache.observe(event, |secret| {
            Some((secret.metadata.namespace.clone()?, secret.metadata.name.clone()?))
        })
    }
}

/// Binds the CA's key on its token when it is not bound (or broke a while ago), and on the
/// issuer's own check looks for it again now and then. The PIN Secret is read only to bind.
pub(crate) async fn ready_on_token(
    client: &Client,
    hsm: HsmAccess<'_>,
    key: &Arc<HsmKey>,
) -> Result<Result<(), HsmError>, Error> {
    let joined =
        |e: tokio::task::JoinError| HsmError::unavailable(format!("the token call ended abnormally: {e}"));
    Ok(match key.due(hsm.probe) {
        Due::Ready => Ok(()),
        Due::Broken(e) => Err(e),
        Due::Probe(bound) => {
            let checked = tokio::task::spawn_blocking(move || bound.check())
                .await
                .unwrap_or_else(|e| Err(joined(e)));
            key.probed(checked)
        }
        Due::Bind => {
            let pin = match read_pin(client, &key.pin).await? {
                Ok(pin) => pin,
                Err(e) => return Ok(key.bound(Err(e))),
            };
            let registry = hsm.registry.clone();
            let (uri, spki) = (key.uri.clone(), key.spki().to_vec());
            let opened =
                tokio::task::spawn_blocking(move || registry.open_key(&uri, &pin, &spki).map(Arc::new))
                    .await
                    .unwrap_or_else(|e| Err(joined(e)));
            key.bound(opened)
        }
    })
}

/// The PIN from its Secret, without the line end a file made with `echo` carries.
async fn read_pin(client: &Client, pin: &crate::pkcs11::PinRef) -> Result<Result<String, HsmError>, Error> {
    let failed = |why: String| HsmError::new(HsmReason::LoginFailed, why);
    let Some(secret) = get_secret(client, &pin.namespace, &pin.name).await? else {
        return Ok(Err(failed(format!(
            "the PIN Secret {}/{} does not exist",
            pin.namespace, pin.name
        ))));
    };
    let Some(value) = crate::certificate::secret::data(&secret, &pin.key) else {
        return Ok(Err(failed(format!(
            "the PIN Secret {}/{} has no key {}",
            pin.namespace, pin.name, pin.key
        ))));
    };
    let Ok(text) = std::str::from_utf8(value) else {
        return Ok(Err(failed(format!(
            "the PIN in Secret {}/{} (key {}) is not UTF-8 text",
            pin.namespace, pin.name, pin.key
        ))));
    };
    Ok(Ok(crate::pkcs11::registry::without_line_end(text).to_owned()))
}
