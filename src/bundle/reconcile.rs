//! One Bundle reconcile, in stages: dereference (sources, selected namespaces, existing targets,
//! from the caches and the cluster-resource namespace) → assemble and plan (pure) → write
//! (targets, status, Event). Only this file talks to the API for Bundles; an unchanged Bundle
//! causes no write.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use super::assemble::Assembled;
use super::selector::NamespaceSelector;
use super::sources::{self, Source, SourceProblem};
use super::status::{self, READY, reason};
use super::targets::{self, Content, Plan};
use crate::api::{Bundle, BundleStatus, ClusterIssuer, Issuer, find_condition};
use crate::certificate::schedule::requeue_after;
use crate::cluster::secrets::get_secret;
use crate::context::{Context, FIELD_MANAGER};
use crate::error::Error;
use crate::issuer::IssuerObject;
use crate::pki::CertificateInfo;
use crate::telemetry::events;
use crate::telemetry::server::SyncFlag;

const CONFIG_MAP: &str = "ConfigMap";
const SECRET: &str = "Secret";
/// How many target writes run at once: a new Bundle reaches a thousand namespaces in seconds
/// without flooding the API server.
const WRITES_IN_FLIGHT: usize = 8;

/// How soon to look again while the caches the Bundle controller reads have not listed yet.
const CACHES_SYNCING: Duration = Duration::from_secs(1);

/// What the Bundle controller reads besides the shared context: its own caches, each fed by the
/// watch that also wakes the Bundles, so a reconcile never reads older state than woke it.
pub struct BundleContext {
    pub ctx: Arc<Context>,
    /// Namespaces' metadata, with their labels.
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Metadata of the target ConfigMaps and Secrets (label `certkeeper.io/bundle`).
    pub config_map_targets: Store<PartialObjectMeta<ConfigMap>>,
    pub secret_targets: Store<PartialObjectMeta<Secret>>,
    /// Issuers, for the trust anchors in their status.
    pub issuers: Store<DeserializeGuard<Issuer>>,
    pub cluster_issuers: Store<DeserializeGuard<ClusterIssuer>>,
    /// Set when each of those caches holds a complete list: until then targets could be
    /// judged missing or unselected that are not.
    pub synced: Vec<SyncFlag>,
    /// The versions certkeeper's own writes gave the targets.
    pub written: targets::WrittenVersions,
}

/// What one reconcile observed before deciding.
struct Observed<'a> {
    bundle: &'a Bundle,
    selector: NamespaceSelector,
    previous: BundleStatus,
    now: Timestamp,
}

pub async fn reconcile(
    guard: Arc<DeserializeGuard<Bundle>>,
    bctx: Arc<BundleContext>,
) -> Result<Action, Error> {
    let bundle = match &guard.0 {
        Ok(bundle) => bundle,
        Err(invalid) => {
            warn!(name = ?invalid.metadata.name, error = %invalid.error, "cannot read Bundle");
            return Ok(Action::await_change());
        }
    };
    // Owner references hand a deleted Bundle's targets to the garbage collector.
    if bundle.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    if !bctx.synced.iter().all(SyncFlag::is_synced) {
        debug!(bundle = %bundle.name_any(), "caches not synced yet");
        return Ok(Action::requeue(CACHES_SYNCING));
    }
    let ctx = &bctx.ctx;
    let now = ctx.now();
    let previous = bundle.status.clone().unwrap_or_default();
    let selector = match NamespaceSelector::new(bundle.spec.target.namespace_selector.as_ref()) {
        Ok(selector) => selector,
        Err(e) => {
            report_not_ready(
                ctx,
                bundle,
                &previous,
                reason::INVALID_SELECTOR,
                &e.to_string(),
                now,
            )
            .await?;
            return Ok(Action::await_change());
        }
    };
    let observed = Observed {
        bundle,
        selector,
        previous,
        now,
    };
    let certificates = match read_sources(&bctx, bundle).await? {
        Ok(certificates) => certificates,
        Err(problem) => {
            report_not_ready(
                ctx,
                bundle,
                &observed.previous,
                problem.reason,
                &problem.message,
                now,
            )
            .await?;
            // The watches of issuers, source Secrets and ConfigMaps wake the Bundle on a fix.
            return Ok(Action::await_change());
        }
    };
    let assembled = Assembled::new(certificates, now);
    if assembled.is_empty() {
        let message = "every certificate of the sources has expired";
        report_not_ready(
            ctx,
            bundle,
            &observed.previous,
            reason::NO_CERTIFICATES,
            message,
            now,
        )
        .await?;
        return Ok(Action::await_change());
    }
    distribute(&bctx, &observed, &assembled).await
}

/// The certificates of every source, or the problems of those that give none.
async fn read_sources(
    bctx: &BundleContext,
    bundle: &Bundle,
) -> Result<Result<Vec<CertificateInfo>, SourceProblem>, Error> {
    let crn = &bctx.ctx.cluster_resource_namespace;
    let mut certificates = Vec::new();
    let mut problems: Vec<SourceProblem> = Vec::new();
    for source in &bundle.spec.sources {
        let read = match sources::source_kind(source) {
            Ok(kind) => read_source(bctx, kind).await?,
            Err(problem) => Err(problem),
        };
        match read.and_then(|(described, pems)| sources::certificates(&described, &pems)) {
            Ok(found) => certificates.extend(found),
            Err(problem) => problems.push(problem),
        }
    }
    let Some(first) = problems.first() else {
        return Ok(Ok(certificates));
    };
    let message = problems
        .iter()
        .map(|p| p.message.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    debug!(bundle = %bundle.name_any(), %crn, %message, "sources unusable");
    Ok(Err(SourceProblem {
        reason: first.reason,
        message,
    }))
}

/// One source's PEM texts and how to name it, read from the caches or the cluster-resource
/// namespace.
async fn read_source(
    bctx: &BundleContext,
    source: Source<'_>,
) -> Result<Result<(String, Vec<String>), SourceProblem>, Error> {
    let ctx = &bctx.ctx;
    let crn = ctx.cluster_resource_namespace.as_str();
    let described = sources::describe(source, crn);
    let pems = match source {
        Source::Issuer(issuer) => {
            let status = match issuer.kind.as_str() {
                "ClusterIssuer" => cached_status(&bctx.cluster_issuers, ObjectRef::new(&issuer.name)),
                _ => cached_status(
                    &bctx.issuers,
                    ObjectRef::new(&issuer.name).within(issuer.namespace.as_deref().unwrap_or_default()),
                ),
            };
            match status {
                Some(status) => sources::issuer_anchors(&described, status.as_ref()),
                None => Err(SourceProblem::not_found(format!("{described} not found"))),
            }
        }
        Source::Secret(key) => {
            let secret = get_secret(&ctx.client, crn, &key.name).await?;
            sources::secret_value(&described, secret.as_ref(), &key.key).map(|pem| vec![pem])
        }
        Source::ConfigMap(key) => {
            let config_map = Api::<ConfigMap>::namespaced(ctx.client.clone(), crn)
                .get_opt(&key.name)
                .await
                .map_err(|source| Error::ReadConfigMap {
                    namespace: crn.to_owned(),
                    name: key.name.clone(),
                    source,
                })?;
            sources::config_map_value(&described, config_map.as_ref(), &key.key).map(|pem| vec![pem])
        }
        Source::InLine(pem) => Ok(vec![pem.to_owned()]),
    };
    Ok(pems.map(|pems| (described, pems)))
}

/// The status of a cached issuer: `None` when there is no such issuer, `Some(None)` when it has
/// no status (or could not be read).
fn cached_status<K: IssuerObject>(
    store: &Store<DeserializeGuard<K>>,
    key: ObjectRef<DeserializeGuard<K>>,
) -> Option<Option<crate::api::IssuerStatus>> {
    let guard = store.get(&key)?;
    Some(guard.0.as_ref().ok().and_then(|i| i.issuer_status().cloned()))
}

/// Writes the bundle into every selected namespace that lacks it, removes it from those no
/// longer selected, and reports how many hold it.
async fn distribute(
    bctx: &BundleContext,
    observed: &Observed<'_>,
    assembled: &Assembled,
) -> Result<Action, Error> {
    let Observed {
        bundle,
        selector,
        previous,
        now,
    } = observed;
    let ctx = &bctx.ctx;
    let name = bundle.name_any();
    let content = Content::new(bundle, assembled).map_err(|e| Error::EncodeTruststore {
        object: name.clone(),
        reason: e.to_string(),
    })?;
    let (selected, terminating) =
        targets::selected_namespaces(bctx.namespaces.state().iter().map(|n| &n.metadata), selector);
    let config_maps = targets::existing_targets(
        &name,
        CONFIG_MAP,
        bctx.config_map_targets.state().iter().map(|t| t.as_ref()),
        &bctx.written,
    );
    let secrets = targets::existing_targets(
        &name,
        SECRET,
        bctx.secret_targets.state().iter().map(|t| t.as_ref()),
        &bctx.written,
    );
    let plan = targets::plan(
        &selected,
        &terminating,
        &config_maps,
        &secrets,
        bundle.spec.target.secret.is_some(),
        &content.hash,
    );
    let failures = write_targets(bctx, bundle, &content, &plan).await;
    let unsynced: std::collections::BTreeSet<&String> = failures
        .iter()
        .filter_map(|(namespace, _)| selected.get(namespace))
        .collect();
    let synced = plan.targets.saturating_sub(unsynced.len());
    let status = status::distributed(
        previous,
        assembled,
        plan.targets,
        synced,
        bundle.metadata.generation,
        *now,
    );
    write_status(ctx, bundle, previous, &status).await?;
    announce(ctx, bundle, previous, &status).await;
    if let Some((_, error)) = failures.into_iter().next() {
        return Err(error);
    }
    // Look again when the next certificate expires, to drop it from the bundle on time.
    Ok(match assembled.next_expiry() {
        Some(at) => Action::requeue(requeue_after(*now, &[at])),
        None => Action::await_change(),
    })
}

/// Carries out `plan`, a few writes at a time. A namespace that refuses its write (a quota,
/// an admission webhook) does not keep the others from theirs: the failures are returned, by
/// namespace.
async fn write_targets(
    bctx: &BundleContext,
    bundle: &Bundle,
    content: &Content,
    plan: &Plan,
) -> Vec<(String, Error)> {
    let name = bundle.name_any();
    if !plan.writes_nothing() {
        info!(bundle = %name, configmaps = plan.apply_config_maps.len(), secrets = plan.apply_secrets.len(),
              removed = plan.delete_config_maps.len() + plan.delete_secrets.len(), "writing bundle targets");
    }
    let ctx = &bctx.ctx;
    let written = &bctx.written;
    let name = name.as_str();
    let config_maps = plan.apply_config_maps.iter().map(|namespace| {
        let desired = targets::desired_config_map(bundle, namespace, content);
        async move {
            let version = apply(ctx, CONFIG_MAP, namespace, name, &desired).await?;
            written.wrote(CONFIG_MAP, namespace, name, version);
            Ok(())
        }
        .boxed()
    });
    let secrets = plan.apply_secrets.iter().filter_map(|namespace| {
        let desired = targets::desired_secret(bundle, namespace, content)?;
        Some(
            async move {
                let version = apply(ctx, SECRET, namespace, name, &desired).await?;
                written.wrote(SECRET, namespace, name, version);
                Ok(())
            }
            .boxed(),
        )
    });
    let removals = (plan.delete_config_maps.iter().map(|ns| (CONFIG_MAP, ns)))
        .chain(plan.delete_secrets.iter().map(|ns| (SECRET, ns)))
        .map(|(kind, namespace)| {
            async move {
                match kind {
                    CONFIG_MAP => delete::<ConfigMap>(ctx, kind, namespace, name).await?,
                    _ => delete::<Secret>(ctx, kind, namespace, name).await?,
                }
                written.removed(kind, namespace, name);
                Ok(())
            }
            .boxed()
        });
    let namespaces = (plan.apply_config_maps.iter())
        .chain(&plan.apply_secrets)
        .chain(&plan.delete_config_maps)
        .chain(&plan.delete_secrets);
    let writes: Vec<_> = config_maps
        .chain(secrets)
        .chain(removals)
        .zip(namespaces)
        .map(|(write, namespace)| write.map(move |result: Result<(), Error>| (namespace.clone(), result)))
        .collect();
    futures::stream::iter(writes)
        .buffered(WRITES_IN_FLIGHT)
        .filter_map(|(namespace, result)| async move { result.err().map(|e| (namespace, e)) })
        .collect()
        .await
}

/// Server-side apply of one target under certkeeper's field manager: keys others wrote stay.
/// Returns the resourceVersion the API server gave it.
async fn apply<K>(
    ctx: &Context,
    kind: &'static str,
    namespace: &str,
    name: &str,
    desired: &K,
) -> Result<Option<String>, Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    Api::<K>::namespaced(ctx.client.clone(), namespace)
        .patch(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(desired),
        )
        .await
        .map(|written| written.meta().resource_version.clone())
        .map_err(|source| Error::ApplyTarget {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        })
}

/// Deletes one target; one already gone is fine.
async fn delete<K>(ctx: &Context, kind: &'static str, namespace: &str, name: &str) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    match Api::<K>::namespaced(ctx.client.clone(), namespace)
        .delete(name, &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(Error::DeleteTarget {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        }),
    }
}

/// The Bundle cannot be built: Ready=False with `why`, targets left as they are, and a Warning
/// Event when that is news.
async fn report_not_ready(
    ctx: &Context,
    bundle: &Bundle,
    previous: &BundleStatus,
    why: &str,
    message: &str,
    now: Timestamp,
) -> Result<(), Error> {
    let status = status::not_ready(previous, why, message, bundle.metadata.generation, now);
    write_status(ctx, bundle, previous, &status).await?;
    announce(ctx, bundle, previous, &status).await;
    Ok(())
}

/// A Warning Event when the Bundle turns not ready, or stays so for another reason.
async fn announce(ctx: &Context, bundle: &Bundle, previous: &BundleStatus, status: &BundleStatus) {
    let before = find_condition(&previous.conditions, READY).map(|c| (&c.status, &c.reason, &c.message));
    let Some(after) = find_condition(&status.conditions, READY) else {
        return;
    };
    if before == Some((&after.status, &after.reason, &after.message)) {
        return;
    }
    info!(bundle = %bundle.name_any(), ready = %after.status, reason = %after.reason, message = %after.message, "bundle readiness changed");
    if after.status != "True" {
        events::publish(
            ctx,
            events::not_ready(&after.reason, &after.message),
            &bundle.object_ref(&()),
        )
        .await;
    }
}

/// Writes the status with server-side apply, only when it changed.
async fn write_status(
    ctx: &Context,
    bundle: &Bundle,
    previous: &BundleStatus,
    status: &BundleStatus,
) -> Result<(), Error> {
    if status == previous {
        return Ok(());
    }
    let patch = serde_json::json!({
        "apiVersion": Bundle::api_version(&()),
        "kind": "Bundle",
        "status": status,
    });
    Api::<Bundle>::all(ctx.client.clone())
        .patch_status(
            &bundle.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| Error::PatchStatus {
            kind: "Bundle",
            object: bundle.name_any(),
            source,
        })?;
    Ok(())
}
