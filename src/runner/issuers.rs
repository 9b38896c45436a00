//! The issuer controllers' wiring (one for Issuers, one for ClusterIssuers): what wakes an
//! issuer. Its own watch (the shared issuer cache), its CA Secret (TLS Secrets, metadata only;
//! a ClusterIssuer's only in the cluster-resource namespace), whose events also keep its
//! kind's CA key pairs current, and its revocation records. It starts once the record cache
//! is full: a CRL is never signed over a partial list of records.

use std::sync::Arc;

use futures::StreamExt;
use futures::channel::mpsc::UnboundedReceiver;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use super::Wiring;
use super::reconciles::{error_policy, object_ref, observed};
use super::watches::to_look_at;
use crate::certificate::secret::SECRET_TYPE_TLS;
use crate::context::Context;
use crate::error::Error;
use crate::issuer::IssuerObject;
use crate::telemetry::metrics::ControllerKind;
use crate::telemetry::server::SyncFlag;

async fn reconcile<K: IssuerObject>(
    obj: Arc<DeserializeGuard<K>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let kind = if K::kind(&()) == "ClusterIssuer" {
        ControllerKind::ClusterIssuer
    } else {
        ControllerKind::Issuer
    };
    let run = crate::issuer::reconcile::reconcile(obj.clone(), ctx.clone());
    observed(kind, obj.as_ref(), &ctx, run).await
}

/// Runs the issuer controller `controller` of kind `K` (its cache synced: `own_cache`) until
/// shutdown, woken by the TLS Secrets of `secrets` (watched as `secrets_watch`) that its
/// issuers name and by `records`.
pub(super) fn run<K: IssuerObject>(
    wiring: &Wiring,
    (controller, own_cache): (Controller<DeserializeGuard<K>>, SyncFlag),
    secrets: Api<PartialObjectMeta<Secret>>,
    secrets_watch: &str,
    records: UnboundedReceiver<ObjectRef<DeserializeGuard<K>>>,
    records_synced: SyncFlag,
) -> impl std::future::Future<Output = ()> + use<K> {
    let store = controller.store();
    let crn = wiring.cluster_resource_namespace.clone();
    let tls_secrets = watcher::Config::default().fields(&format!("type={SECRET_TYPE_TLS}"));
    let observer = wiring.ctx.clone();
    let events = wiring.watches.watch(secrets_watch, secrets, tls_secrets);
    let changed = to_look_at(events, move |event| observer.ca_key_pairs(K::KIND).observe(event));
    let controller = controller
        .reconcile_on(changed.flat_map(move |(namespace, name)| {
            futures::stream::iter(issuers_for_secret(&store, &namespace, &name, &crn))
        }))
        .reconcile_on(records)
        .with_config(wiring.config.clone())
        .graceful_shutdown_on(wiring.on_shutdown());
    let ctx = wiring.ctx.clone();
    let wiring = wiring.clone();
    async move {
        if !wiring.synced(&[records_synced]).await {
            return;
        }
        let run = controller
            .run(reconcile::<K>, error_policy::<DeserializeGuard<K>>, ctx)
            .for_each(|_| async {});
        wiring.run_controller(own_cache, run).await;
    }
}

/// The issuers of kind `K` whose CA Secret is `secret` (in `namespace`).
pub(super) fn issuers_for_secret<K: IssuerObject>(
    issuers: &Store<DeserializeGuard<K>>,
    namespace: &str,
    secret: &str,
    cluster_resource_namespace: &str,
) -> Vec<ObjectRef<DeserializeGuard<K>>> {
    issuers
        .state()
        .iter()
        .filter_map(|guard| guard.0.as_ref().ok())
        .filter(|issuer| {
            issuer
                .issuer_spec()
                .ca
                .as_ref()
                .is_some_and(|ca| ca.secret_name == secret)
                && issuer.ca_namespace(cluster_resource_namespace).as_deref() == Some(namespace)
        })
        .map(object_ref)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{ca_cluster_issuer, ca_issuer, self_signed_issuer, store};

    #[test]
    fn ca_secret_change_wakes_only_issuers_allowed_to_read_it() {
        let issuers = store(vec![
            ca_issuer("ca", "root"),
            ca_issuer("other", "other"),
            self_signed_issuer("s"),
        ]);
        let woken = issuers_for_secret(&issuers, "apps", "root", "certkeeper-system");
        assert_eq!(woken.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["ca"]);
        // The same name in another namespace is not this Issuer's Secret.
        assert!(issuers_for_secret(&issuers, "elsewhere", "root", "certkeeper-system").is_empty());
        let cluster = store(vec![ca_cluster_issuer("cca", "root")]);
        assert_eq!(
            issuers_for_secret(&cluster, "certkeeper-system", "root", "certkeeper-system").len(),
            1
        );
        assert!(issuers_for_secret(&cluster, "apps", "root", "certkeeper-system").is_empty());
    }
}
