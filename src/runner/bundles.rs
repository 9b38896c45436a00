//! The Bundle controller's wiring: what wakes a Bundle. Its own watch, namespaces (created,
//! relabelled, deleted), its targets (changed or removed by someone else), the issuers and the
//! cluster-resource namespace's Secrets and ConfigMaps that Bundles source. Each watch that
//! feeds a cache the reconciles read fills it before it wakes anyone.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::Api;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use super::Wiring;
use super::reconciles::{OWN_ANNOTATIONS, error_policy, object_ref, observed, trim_for_cache};
use crate::api::{BUNDLE_LABEL, Bundle, ClusterIssuer, Issuer};
use crate::bundle::reconcile::BundleContext;
use crate::bundle::sources::{uses_config_map, uses_issuer, uses_secret};
use crate::error::Error;
use crate::telemetry::metrics::ControllerKind;

async fn reconcile(obj: Arc<DeserializeGuard<Bundle>>, bctx: Arc<BundleContext>) -> Result<Action, Error> {
    let run = crate::bundle::reconcile::reconcile(obj.clone(), bctx.clone());
    observed(ControllerKind::Bundle, obj.as_ref(), &bctx.ctx, run).await
}

fn bundle_error_policy(
    obj: Arc<DeserializeGuard<Bundle>>,
    error: &Error,
    bctx: Arc<BundleContext>,
) -> Action {
    error_policy(obj, error, bctx.ctx.clone())
}

/// Runs the Bundle controller `bundles` (over the shared Bundle watch) until shutdown.
pub(super) fn run(
    wiring: &Wiring,
    bundles: Controller<DeserializeGuard<Bundle>>,
) -> impl std::future::Future<Output = ()> + use<> {
    let watches = &wiring.watches;
    let client = watches.client.clone();
    let crn = wiring.cluster_resource_namespace.as_str();
    let any = watcher::Config::default().any_semantic();
    let targets = watcher::Config::default().labels(BUNDLE_LABEL);
    let (namespaces, namespace_events) = watches.cached(
        "bundle namespaces",
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        any.clone(),
        trim_keeping_labels,
    );
    let (config_map_targets, config_map_target_events) = watches.cached(
        "bundle configmap targets",
        Api::<PartialObjectMeta<ConfigMap>>::all(client.clone()),
        targets.clone(),
        trim_keeping_labels,
    );
    let (secret_targets, secret_target_events) = watches.cached(
        "bundle secret targets",
        Api::<PartialObjectMeta<Secret>>::all(client.clone()),
        targets,
        trim_keeping_labels,
    );
    let (issuers, issuer_events) = watches.cached(
        "bundle issuers",
        Api::<DeserializeGuard<Issuer>>::all(client.clone()),
        any.clone(),
        trim_for_cache,
    );
    let (cluster_issuers, cluster_issuer_events) = watches.cached(
        "bundle clusterissuers",
        Api::<DeserializeGuard<ClusterIssuer>>::all(client.clone()),
        any.clone(),
        trim_for_cache,
    );
    let synced = vec![
        namespace_events.synced(),
        config_map_target_events.synced(),
        secret_target_events.synced(),
        issuer_events.synced(),
        cluster_issuer_events.synced(),
    ];
    // Sources in the cluster-resource namespace: metadata only, nothing cached; the reconcile
    // reads the one it needs.
    let source_secrets = watches.watch(
        "bundle source secrets",
        Api::<PartialObjectMeta<Secret>>::namespaced(client.clone(), crn),
        any.clone(),
    );
    let source_config_maps = watches.watch(
        "bundle source configmaps",
        Api::<PartialObjectMeta<ConfigMap>>::namespaced(client, crn),
        any,
    );
    let store = bundles.store();
    let [
        by_namespace,
        by_issuer,
        by_cluster_issuer,
        by_secret,
        by_config_map,
    ] = [(); 5].map(|()| store.clone());
    let bctx = Arc::new(BundleContext {
        ctx: wiring.ctx.clone(),
        namespaces,
        config_map_targets,
        secret_targets,
        issuers,
        cluster_issuers,
        synced,
        written: Default::default(),
    });
    bundles
        .watches_stream(namespace_events.touched(), move |_| {
            bundles_where(&by_namespace, |_| true)
        })
        .watches_stream(config_map_target_events.touched(), |target| {
            bundle_of_target(&target)
        })
        .watches_stream(secret_target_events.touched(), |target| bundle_of_target(&target))
        .watches_stream(issuer_events.touched(), move |issuer| {
            let (name, namespace) = (issuer.name_any(), issuer.namespace());
            bundles_where(&by_issuer, |b| {
                uses_issuer(b, "Issuer", &name, namespace.as_deref())
            })
        })
        .watches_stream(cluster_issuer_events.touched(), move |issuer| {
            let name = issuer.name_any();
            bundles_where(&by_cluster_issuer, |b| {
                uses_issuer(b, "ClusterIssuer", &name, None)
            })
        })
        .watches_stream(source_secrets.touched(), move |secret| {
            let name = secret.name_any();
            bundles_where(&by_secret, |b| uses_secret(b, &name))
        })
        .watches_stream(source_config_maps.touched(), move |config_map| {
            let name = config_map.name_any();
            bundles_where(&by_config_map, |b| uses_config_map(b, &name))
        })
        .with_config(wiring.config.clone())
        .graceful_shutdown_on(wiring.on_shutdown())
        .run(reconcile, bundle_error_policy, bctx)
        .for_each(|_| async {})
}

/// The Bundles of `bundles` for which `uses` holds: the ones to wake when what they use changes.
pub fn bundles_where(
    bundles: &Store<DeserializeGuard<Bundle>>,
    uses: impl Fn(&Bundle) -> bool,
) -> Vec<ObjectRef<DeserializeGuard<Bundle>>> {
    bundles
        .state()
        .iter()
        .filter_map(|guard| guard.0.as_ref().ok())
        .filter(|bundle| uses(bundle))
        .map(object_ref)
        .collect()
}

/// The Bundle a target belongs to, by its `certkeeper.io/bundle` label.
fn bundle_of_target<K: Resource>(target: &K) -> Option<ObjectRef<DeserializeGuard<Bundle>>> {
    let name = target.meta().labels.as_ref()?.get(BUNDLE_LABEL)?;
    Some(ObjectRef::new(name))
}

/// Drops what the Bundle controller never reads of a namespace's or a target's metadata:
/// managedFields and the annotations of others. Labels stay: selectors and targets need them.
fn trim_keeping_labels<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|key, _| key.starts_with(OWN_ANNOTATIONS));
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::store;

    fn bundle(name: &str, sources: serde_json::Value) -> Bundle {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "certkeeper.io/v1", "kind": "Bundle",
            "metadata": {"name": name, "uid": format!("uid-{name}"), "generation": 1},
            "spec": {"sources": sources, "target": {"configMap": {"key": "ca.crt"}}},
        }))
        .unwrap()
    }

    #[test]
    fn a_source_change_wakes_exactly_the_bundles_that_use_it() {
        let bundles = store(vec![
            bundle(
                "a",
                serde_json::json!([{"issuer": {"kind": "Issuer", "name": "ca", "namespace": "apps"}}]),
            ),
            bundle(
                "b",
                serde_json::json!([{"issuer": {"kind": "ClusterIssuer", "name": "ca"}}]),
            ),
            bundle(
                "c",
                serde_json::json!([{"secret": {"name": "roots", "key": "ca.crt"}}]),
            ),
            bundle(
                "d",
                serde_json::json!([{"configMap": {"name": "roots", "key": "ca.crt"}}]),
            ),
        ]);
        let names = |refs: Vec<ObjectRef<DeserializeGuard<Bundle>>>| {
            refs.into_iter().map(|r| r.name).collect::<Vec<_>>()
        };
        let woken = |uses: &dyn Fn(&Bundle) -> bool| names(bundles_where(&bundles, uses));
        assert_eq!(woken(&|b| uses_issuer(b, "Issuer", "ca", Some("apps"))), ["a"]);
        assert!(woken(&|b| uses_issuer(b, "Issuer", "ca", Some("other"))).is_empty());
        assert_eq!(woken(&|b| uses_issuer(b, "ClusterIssuer", "ca", None)), ["b"]);
        assert_eq!(woken(&|b| uses_secret(b, "roots")), ["c"]);
        assert_eq!(woken(&|b| uses_config_map(b, "roots")), ["d"]);
        // A target wakes the Bundle its label names.
        let mut target = k8s_openapi::api::core::v1::ConfigMap::default();
        target.metadata.labels = Some([(BUNDLE_LABEL.to_owned(), "a".to_owned())].into());
        assert_eq!(bundle_of_target(&target).map(|r| r.name), Some("a".to_owned()));
    }

    #[test]
    fn namespaces_and_targets_are_cached_with_their_labels() {
        let mut namespace = PartialObjectMeta::<Namespace>::default();
        namespace.metadata.labels = Some([("trust".to_owned(), "yes".to_owned())].into());
        namespace.metadata.annotations = Some(
            [
                ("kubectl.kubernetes.io/last-applied-configuration", "{...}"),
                ("certkeeper.io/bundle-hash", "h"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
        );
        namespace.metadata.managed_fields = Some(vec![Default::default()]);
        trim_keeping_labels(&mut namespace);
        assert_eq!(namespace.metadata.labels.as_ref().unwrap()["trust"], "yes");
        assert_eq!(namespace.metadata.managed_fields, None);
        assert_eq!(
            namespace.metadata.annotations.unwrap().keys().collect::<Vec<_>>(),
            ["certkeeper.io/bundle-hash"]
        );
    }
}
