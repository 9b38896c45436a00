//! The PKI endpoint on every replica (SPEC "Revocation"): leader and standbys alike serve each
//! CA issuer's CRL and OCSP answers, from a watch of the CRL ConfigMaps that the leader's
//! issuer controllers write. A ConfigMap holds the signed CRL; the CA key that signs OCSP
//! answers is read from the CA Secret it names (in its own namespace), once per CA
//! certificate. OCSP answers say what that CRL says, so every replica answers alike, and a
//! standby serves from the moment it starts, not only once it leads.

use std::collections::HashSet;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::on_shutdown;
use super::watches::Watches;
use std::sync::Arc;

use crate::api::{CaIssuer, CaPkcs11, ClusterIssuer, Issuer};
use crate::cluster::ca::{HsmAccess, ready_on_token};
use crate::cluster::secrets::get_secret;
use crate::error::Error;
use crate::issuer::ca::parse_ca;
use crate::issuer::crl::{self, CrlConfigMap};
use crate::pkcs11::Pkcs11Registry;
use crate::pki::{CaKey, CaKeyPair};
use crate::revocation::{CLUSTER_SCOPE, PkiEndpoint, ServedIssuer};

/// Follows the CRL ConfigMaps of every namespace into `endpoint` until shutdown.
pub(super) async fn follow(
    watches: Watches,
    registry: Arc<Pkcs11Registry>,
    endpoint: PkiEndpoint,
    cluster_resource_namespace: String,
    shutdown: watch::Receiver<bool>,
) {
    let client = watches.client.clone();
    let config = watcher::Config::default().labels(crl::LABEL_ISSUER_KIND);
    let events = watches
        .process_watch("CRL configmaps", Api::<ConfigMap>::all(client.clone()), config)
        .events()
        .take_until(on_shutdown(shutdown));
    futures::pin_mut!(events);
    let mut relist = Relist::default();
    while let Some(event) = events.next().await {
        relist.follow(&endpoint, &event, &cluster_resource_namespace);
        match event {
            watcher::Event::Apply(configmap) | watcher::Event::InitApply(configmap) => {
                if let Err(error) = mirror(
                    &client,
                    &registry,
                    &endpoint,
                    &configmap,
                    &cluster_resource_namespace,
                )
                .await
                {
                    warn!(configmap = %format!("{}/{}", configmap.namespace().unwrap_or_default(), configmap.name_any()), %error, "cannot serve this CRL yet");
                }
            }
            watcher::Event::Delete(configmap) => {
                if let Some(found) = CrlConfigMap::read(&configmap, &cluster_resource_namespace) {
                    info!(scope = %found.scope, issuer = %found.issuer, "CRL ConfigMap deleted; no longer served");
                    endpoint.withdraw(&found.scope, &found.issuer);
                }
            }
            watcher::Event::Init | watcher::Event::InitDone => {}
        }
    }
}

/// A re-list of the CRL ConfigMaps (after a watch gap, a 410): the issuers served when it
/// began whose ConfigMap it has not listed yet. Whatever is left at its end was deleted during
/// the gap, when no Delete event could say so: it is withdrawn. (Only what was served before
/// the re-list began: an issuer the leader publishes meanwhile is not judged by a list that
/// may predate its ConfigMap.)
#[derive(Default)]
struct Relist {
    unlisted: Option<HashSet<(String, String)>>,
}

impl Relist {
    /// Follows one watch event; at the end of a re-list, withdraws from `endpoint` what it did
    /// not list, and returns it.
    fn follow(
        &mut self,
        endpoint: &PkiEndpoint,
        event: &watcher::Event<ConfigMap>,
        cluster_resource_namespace: &str,
    ) -> Vec<(String, String)> {
        match event {
            watcher::Event::Init => {
                self.unlisted = Some(endpoint.served().into_iter().collect());
            }
            watcher::Event::InitApply(configmap) => {
                if let (Some(unlisted), Some(found)) = (
                    self.unlisted.as_mut(),
                    CrlConfigMap::read(configmap, cluster_resource_namespace),
                ) {
                    unlisted.remove(&(found.scope, found.issuer));
                }
            }
            watcher::Event::InitDone => {
                let mut gone: Vec<_> = self.unlisted.take().unwrap_or_default().into_iter().collect();
                gone.sort();
                for (scope, issuer) in &gone {
                    info!(%scope, %issuer, "CRL ConfigMap gone during a watch gap; no longer served");
                    endpoint.withdraw(scope, issuer);
                }
                return gone;
            }
            watcher::Event::Apply(_) | watcher::Event::Delete(_) => {}
        }
        Vec::new()
    }
}

/// The `ca.pkcs11` of the CA issuer whose CRL `found` is, if it names one.
async fn issuer_pkcs11(client: &Client, found: &CrlConfigMap) -> Result<Option<CaPkcs11>, Error> {
    let (kind, object, spec) = if found.scope == CLUSTER_SCOPE {
        let read = Api::<ClusterIssuer>::all(client.clone())
            .get_opt(&found.issuer)
            .await;
        let object = found.issuer.clone();
        (
            "ClusterIssuer",
            object,
            read.map(|i| i.and_then(|i| i.spec.issuer.ca)),
        )
    } else {
        let read = Api::<Issuer>::namespaced(client.clone(), &found.namespace)
            .get_opt(&found.issuer)
            .await;
        let object = format!("{}/{}", found.namespace, found.issuer);
        ("Issuer", object, read.map(|i| i.and_then(|i| i.spec.ca)))
    };
    let spec = spec.map_err(|source| Error::ReadIssuer { kind, object, source })?;
    Ok(spec.and_then(|ca| ca.pkcs11))
}

/// Binds a CA key on a token for the OCSP answers this replica signs; the CRL is served
/// either way (it is signed by the leader and checked against the CA certificate here).
async fn bind_on_token(
    client: &Client,
    registry: &Arc<Pkcs11Registry>,
    found: &CrlConfigMap,
    ca: &CaKeyPair,
) -> Result<(), Error> {
    let CaKey::Hsm(key) = &ca.key else {
        return Ok(());
    };
    let namespaced = found.scope != CLUSTER_SCOPE;
    if namespaced && !registry.settings.allow_namespaced_issuers {
        return Ok(());
    }
    let hsm = HsmAccess {
        registry,
        namespaced,
        probe: false,
    };
    if let Err(problem) = ready_on_token(client, hsm, key).await? {
        debug!(scope = %found.scope, issuer = %found.issuer, %problem,
               "the CA key of a served CRL is not on its token now; OCSP answers wait for it");
    }
    Ok(())
}

/// Serves what the CRL ConfigMap `configmap` holds, unless the endpoint already serves that
/// CRL or a newer one of the same CA. Reads the CA Secret only for a CA it does not serve yet,
/// and serves only a CRL that CA signed.
pub async fn mirror(
    client: &Client,
    registry: &Arc<Pkcs11Registry>,
    endpoint: &PkiEndpoint,
    configmap: &ConfigMap,
    cluster_resource_namespace: &str,
) -> Result<(), Error> {
    let Some(found) = CrlConfigMap::read(configmap, cluster_resource_namespace) else {
        return Ok(());
    };
    let served = endpoint
        .issuer(&found.scope, &found.issuer)
        .filter(|s| s.ca().certificate().fingerprint_sha256 == found.ca_fingerprint);
    if let Some(served) = &served {
        // A key on a token not bound yet (or lost): tried again, so OCSP answers resume.
        bind_on_token(client, registry, &found, served.ca()).await?;
    }
    if served.as_ref().is_some_and(|s| s.crl().number >= found.number) {
        return Ok(());
    }
    let ca = match served {
        Some(served) => served.ca().clone(),
        None => {
            let mut ca = CaIssuer {
                secret_name: found.ca_secret.clone(),
                ..CaIssuer::default()
            };
            let secret = get_secret(client, &found.namespace, &found.ca_secret).await?;
            let holds_key = secret
                .as_ref()
                .and_then(|s| crate::certificate::secret::data(s, "tls.key"))
                .is_some_and(|key| !key.is_empty());
            if !holds_key {
                // Certificates only: the key is on a token, which the issuer names.
                ca.pkcs11 = issuer_pkcs11(client, &found).await?;
            }
            match parse_ca(&found.namespace, &ca, secret.as_ref()) {
                Ok(pair) => {
                    let pair = std::sync::Arc::new(pair);
                    bind_on_token(client, registry, &found, &pair).await?;
                    pair
                }
                Err(problem) => {
                    debug!(%problem, "the CA of a CRL ConfigMap cannot be read");
                    return Ok(());
                }
            }
        }
    };
    // A CA Secret replaced since the CRL was signed, or a CRL not signed by it: not served
    // (the leader signs a new one).
    let Some((revoked, crl)) = CrlConfigMap::verified(configmap, ca.certificate()) else {
        debug!(scope = %found.scope, issuer = %found.issuer, "a CRL ConfigMap its CA did not sign");
        return Ok(());
    };
    debug!(scope = %found.scope, issuer = %found.issuer, number = crl.number, "serving a CRL");
    endpoint.publish(&found.scope, &found.issuer, ServedIssuer::new(ca, revoked, crl));
    Ok(())
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;
    use crate::revocation::{RevocationReason, RevokedSerial, build_crl};
    use crate::testing::*;

    /// The CA issuer `root-ca` of NAMESPACE, parsed from `secret`.
    fn ca_of(secret: &k8s_openapi::api::core::v1::Secret) -> CaKeyPair {
        let issuer = CaIssuer {
            secret_name: "root-ca".into(),
            ..CaIssuer::default()
        };
        parse_ca(NAMESPACE, &issuer, Some(secret)).unwrap()
    }

    #[tokio::test]
    async fn a_standby_serves_the_crl_the_leader_stored_and_answers_ocsp_from_it() {
        let now = ts("2026-11-23T10:00:00Z");
        let secret = root_ca(now);
        let ca = ca_of(&secret);
        let revoked = vec![RevokedSerial {
            serial_hex: "0aff".into(),
            revoked_at: now,
            reason: RevocationReason::KeyCompromise,
        }];
        let signed = build_crl(&ca, &revoked, 3, now).unwrap();
        let fingerprint = ca.certificate().fingerprint_sha256.clone();
        let configmap = crl::desired_configmap(NAMESPACE, "Issuer", "ca", "root-ca", &signed, &fingerprint);

        // The controller's own client: every request is checked against its RBAC.
        let (ctx, mut api) = context(vec![], vec![], now);
        let client = ctx.client.clone();
        drop(ctx);
        let endpoint = PkiEndpoint::default();
        let (c, e, m) = (client.clone(), endpoint.clone(), configmap.clone());
        let task =
            tokio::spawn(
                async move { mirror(&c, &Arc::default(), &e, &m, CLUSTER_RESOURCE_NAMESPACE).await },
            );
        api.expect(Method::GET, "/api/v1/namespaces/apps/secrets/root-ca")
            .await
            .ok(to_json(&secret));
        task.await.unwrap().unwrap();
        let served = endpoint.issuer(NAMESPACE, "ca").expect("served");
        assert_eq!(served.crl(), &signed);
        let crl = endpoint.respond(&Method::GET, "/crl/apps/ca.crl", &[], now);
        assert_eq!(crl.status(), http::StatusCode::OK);

        // The same CRL again (a re-list): nothing is read.
        mirror(
            &client,
            &Arc::default(),
            &endpoint,
            &configmap,
            CLUSTER_RESOURCE_NAMESPACE,
        )
        .await
        .unwrap();
        // Someone who may write ConfigMaps there swaps in a newer CRL without the entry,
        // signed by a key of their own: not served; the CA's own CRL stays.
        let forger = root_ca(now);
        let forger = ca_of(&forger);
        let forged = build_crl(&forger, &[], 4, now).unwrap();
        let forged = crl::desired_configmap(NAMESPACE, "Issuer", "ca", "root-ca", &forged, &fingerprint);
        mirror(
            &client,
            &Arc::default(),
            &endpoint,
            &forged,
            CLUSTER_RESOURCE_NAMESPACE,
        )
        .await
        .unwrap();
        assert_eq!(endpoint.issuer(NAMESPACE, "ca").unwrap().crl(), &signed);
        drop(client);
        api.expect_no_more().await;
    }

    #[tokio::test]
    async fn a_standby_serves_the_crl_of_an_issuer_whose_key_is_on_a_token() {
        let now = ts("2026-11-23T10:00:00Z");
        let secret = root_ca(now);
        let leader_ca = ca_of(&secret);
        let signed = build_crl(&leader_ca, &[], 2, now).unwrap();
        let fingerprint = leader_ca.certificate().fingerprint_sha256.clone();
        let configmap = crl::desired_configmap(NAMESPACE, "Issuer", "ca", "root-ca", &signed, &fingerprint);
        // The CA Secret as an HSM issuer's: the certificate, an empty tls.key.
        let mut certificate_only = to_json(&secret);
        certificate_only["data"]["tls.key"] = "".into();
        let mut issuer = ca_issuer("ca", "root-ca");
        if let Some(ca) = issuer.spec.ca.as_mut() {
            ca.pkcs11 = Some(CaPkcs11 {
                uri: "pkcs11:token=ca;object=root".into(),
                pin_secret_ref: crate::api::SecretKeySelector {
                    name: "hsm-pin".into(),
                    key: "pin".into(),
                },
            });
        }
        let registry = Arc::new(Pkcs11Registry::new(crate::pkcs11::Pkcs11Settings {
            allow_namespaced_issuers: true,
            ..Default::default()
        }));

        let (ctx, mut api) = context(vec![], vec![], now);
        let client = ctx.client.clone();
        drop(ctx);
        let endpoint = PkiEndpoint::default();
        let (c, r, e, m) = (
            client.clone(),
            registry.clone(),
            endpoint.clone(),
            configmap.clone(),
        );
        let task = tokio::spawn(async move { mirror(&c, &r, &e, &m, CLUSTER_RESOURCE_NAMESPACE).await });
        api.expect(Method::GET, "/api/v1/namespaces/apps/secrets/root-ca")
            .await
            .ok(certificate_only);
        // No key in the Secret: the issuer names the token and the PIN Secret.
        api.expect(Method::GET, "/apis/certkeeper.io/v1/namespaces/apps/issuers/ca")
            .await
            .ok(to_json(&issuer));
        // Bound for OCSP answers: the PIN is read; this controller has no module, so the key
        // stays unbound, and the CRL is served all the same.
        api.expect(Method::GET, "/api/v1/namespaces/apps/secrets/hsm-pin")
            .await
            .not_found();
        task.await.unwrap().unwrap();
        let served = endpoint.issuer(NAMESPACE, "ca").expect("served");
        assert_eq!(served.crl(), &signed);
        assert!(matches!(served.ca().key, CaKey::Hsm(_)));
        let crl = endpoint.respond(&Method::GET, "/crl/apps/ca.crl", &[], now);
        assert_eq!(crl.status(), http::StatusCode::OK);
        // The same CRL again: the bind is not tried again within its retry pause; nothing read.
        mirror(
            &client,
            &registry,
            &endpoint,
            &configmap,
            CLUSTER_RESOURCE_NAMESPACE,
        )
        .await
        .unwrap();
        drop(client);
        api.expect_no_more().await;
    }

    #[test]
    fn a_relist_withdraws_the_crls_whose_configmap_it_no_longer_lists() {
        let now = ts("2026-11-23T10:00:00Z");
        let ca = ca_of(&root_ca(now));
        let ca = std::sync::Arc::new(ca);
        let signed = build_crl(&ca, &[], 1, now).unwrap();
        let fingerprint = ca.certificate().fingerprint_sha256.clone();
        let endpoint = PkiEndpoint::default();
        for name in ["kept", "deleted"] {
            endpoint.publish(
                NAMESPACE,
                name,
                ServedIssuer::new(ca.clone(), vec![], signed.clone()),
            );
        }
        let kept = crl::desired_configmap(NAMESPACE, "Issuer", "kept", "root-ca", &signed, &fingerprint);
        let mut relist = Relist::default();
        let mut follow =
            |event: watcher::Event<ConfigMap>| relist.follow(&endpoint, &event, CLUSTER_RESOURCE_NAMESPACE);

        // Outside a re-list, events withdraw nothing by themselves.
        assert!(follow(watcher::Event::Apply(kept.clone())).is_empty());
        // A 410, then the re-list: `deleted`'s ConfigMap went during the gap.
        assert!(follow(watcher::Event::Init).is_empty());
        assert!(follow(watcher::Event::InitApply(kept.clone())).is_empty());
        // Published by the leader while the list ran: not the list's to judge.
        endpoint.publish(
            NAMESPACE,
            "new",
            ServedIssuer::new(ca.clone(), vec![], signed.clone()),
        );
        let gone = follow(watcher::Event::InitDone);
        assert_eq!(gone, [(NAMESPACE.to_owned(), "deleted".to_owned())]);
        assert!(endpoint.issuer(NAMESPACE, "deleted").is_none());
        assert!(endpoint.issuer(NAMESPACE, "kept").is_some());
        assert!(endpoint.issuer(NAMESPACE, "new").is_some());
        // An InitDone with no re-list begun withdraws nothing.
        assert!(follow(watcher::Event::InitDone).is_empty());
    }
}
