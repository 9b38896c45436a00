//! One leadership term's controllers: the caches they share, the watches that wake them,
//! and the glue that counts, times and retries each reconcile.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::watch;
use tracing::{Instrument, debug, info, info_span, warn};

use super::retry::{transient_retry, watch_backoff};
use super::{Settings, on_shutdown};
use crate::api::{BUNDLE_LABEL, Bundle, Certificate, CertificateRevocation, ClusterIssuer, GROUP, Issuer};
use crate::bundle::reconcile::BundleContext;
use crate::bundle::sources::{uses_config_map, uses_issuer, uses_secret};
use crate::certificate::schedule::backoff;
use crate::certificate::secret::{LABEL_CERTIFICATE_NAME, SECRET_TYPE_TLS, certificate_of};
use crate::certificate::verdict::Verdict;
use crate::cluster::{ObjectKey, WatchedCache};
use crate::context::Context;
use crate::error::Error;
use crate::issuer::IssuerObject;
use crate::pki::serial_hex;
use crate::revocation::{PkiEndpoint, parse_serial};
use crate::telemetry::metrics::{Caches, ControllerKind, Metrics};
use crate::telemetry::server::{Readiness, SyncFlag};
use kube::runtime::reflector;

fn error_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// Retries a failed reconcile: within seconds when the API server was unavailable (1 s
/// doubling to 5 s), else with the per-object exponential backoff (10 s → 5 min).
fn error_policy<K: Resource<DynamicType = ()>>(
    obj: Arc<DeserializeGuard<K>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let key = error_key(obj.as_ref());
    let n = ctx.record_error(&key);
    let wait = if error.is_transient() {
        transient_retry(n)
    } else {
        Duration::from_secs(backoff(n).as_secs().unsigned_abs())
    };
    warn!(object = %key, %error, retry_in_ms = wait.as_millis() as u64, "reconcile failed");
    Action::requeue(wait)
}

/// Runs one reconcile inside a span naming the object, counts and times it, and forgets the
/// object's error streak when it succeeds.
async fn observed<K: Resource<DynamicType = ()>>(
    controller: ControllerKind,
    obj: &K,
    ctx: &Context,
    reconcile: impl std::future::Future<Output = Result<Action, Error>>,
) -> Result<Action, Error> {
    // `object` is namespace/name (just the name for cluster-scoped kinds); not `name`, which
    // JSON logs already use for the span's own name.
    let namespace = obj.namespace();
    let object = match &namespace {
        Some(ns) => format!("{ns}/{}", obj.name_any()),
        None => obj.name_any(),
    };
    let span = info_span!(
        "reconcile",
        controller = controller.label(),
        namespace = namespace.unwrap_or_default(),
        %object,
    );
    let started = std::time::Instant::now();
    let result = reconcile.instrument(span).await;
    ctx.metrics
        .reconcile(controller, result.is_ok(), started.elapsed());
    if result.is_ok() {
        ctx.clear_errors(&error_key(obj));
    }
    result
}

async fn certificate_reconcile(
    obj: Arc<DeserializeGuard<Certificate>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let run = crate::certificate::reconcile::reconcile(obj.clone(), ctx.clone());
    observed(ControllerKind::Certificate, obj.as_ref(), &ctx, run).await
}

async fn issuer_reconcile<K: IssuerObject>(
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

async fn bundle_reconcile(
    obj: Arc<DeserializeGuard<Bundle>>,
    bctx: Arc<BundleContext>,
) -> Result<Action, Error> {
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

/// The cache key of `obj` in a controller of `DeserializeGuard<K>`.
fn object_ref<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectRef<DeserializeGuard<K>> {
    let r = ObjectRef::new(&obj.name_any());
    match obj.namespace() {
        Some(ns) => r.within(&ns),
        None => r,
    }
}

/// The Certificates that reference an issuer of `kind` named `name` (in `namespace` for an
/// Issuer): the ones to wake when the issuer changes.
pub fn certificates_for_issuer(
    certificates: &Store<DeserializeGuard<Certificate>>,
    kind: &str,
    name: &str,
    namespace: Option<&str>,
) -> Vec<ObjectRef<DeserializeGuard<Certificate>>> {
    certificates
        .state()
        .iter()
        .filter_map(|guard| guard.0.as_ref().ok())
        .filter(|cert| cert.references(kind, name, namespace))
        .map(object_ref)
        .collect()
}

/// The Certificates whose certificate (as their status reports it) a revocation record
/// revokes: the ones to wake when the record appears, so their Secret is re-issued.
pub fn certificates_for_revocation(
    certificates: &Store<DeserializeGuard<Certificate>>,
    record: &CertificateRevocation,
    cluster_resource_namespace: &str,
) -> Vec<ObjectRef<DeserializeGuard<Certificate>>> {
    let issuer = &record.spec.issuer_ref;
    let Ok(serial) = parse_serial(&record.spec.serial_number) else {
        return Vec::new();
    };
    let serial = serial_hex(&serial);
    let namespace = match issuer.is_cluster() {
        true if record.metadata.namespace.as_deref() == Some(cluster_resource_namespace) => None,
        true => return Vec::new(),
        false => record.metadata.namespace.as_deref(),
    };
    if issuer.group() != GROUP {
        return Vec::new();
    }
    certificates_for_issuer(certificates, issuer.kind(), &issuer.name, namespace)
        .into_iter()
        .filter(|r| {
            certificates.get(r).is_some_and(|guard| {
                guard.0.as_ref().is_ok_and(|cert| {
                    cert.status
                        .as_ref()
                        .and_then(|s| s.serial_number.as_deref())
                        .is_some_and(|s| s == serial)
                })
            })
        })
        .collect()
}

/// Where a revocation record wakes: the Issuer it names (in its namespace), or the
/// ClusterIssuer it names when it lives in the cluster-resource namespace.
enum RecordIssuer {
    Issuer(ObjectRef<DeserializeGuard<Issuer>>),
    ClusterIssuer(ObjectRef<DeserializeGuard<ClusterIssuer>>),
}

fn issuer_of_revocation(
    record: &CertificateRevocation,
    cluster_resource_namespace: &str,
) -> Option<RecordIssuer> {
    let issuer = &record.spec.issuer_ref;
    let namespace = record.metadata.namespace.as_deref()?;
    if issuer.group() != GROUP {
        return None;
    }
    match issuer.kind() {
        "Issuer" => Some(RecordIssuer::Issuer(
            ObjectRef::new(&issuer.name).within(namespace),
        )),
        "ClusterIssuer" if namespace == cluster_resource_namespace => {
            Some(RecordIssuer::ClusterIssuer(ObjectRef::new(&issuer.name)))
        }
        _ => None,
    }
}

/// The issuers of kind `K` whose CA Secret is `secret` (in `namespace`).
fn issuers_for_secret<K: IssuerObject>(
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

/// A watch of `api` whose objects (trimmed by `trim`) also fill a cache of their own, read by
/// reconciles; `synced` is set once that cache holds the first complete list.
fn cached_watch<K: Cached>(
    api: Api<K>,
    config: watcher::Config,
    trim: fn(&mut K),
    synced: SyncFlag,
) -> (
    Store<K>,
    impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static,
) {
    let (reader, writer) = reflector::store();
    let events = watcher(api, config)
        .backoff(watch_backoff())
        .modify(trim)
        .reflect(writer);
    (reader, report_sync(events, synced).touched_objects())
}

/// Runs the Bundle controller: woken by its Bundles, by namespaces (created, relabelled,
/// deleted), by its targets (changed or removed by someone else), by the issuers and the
/// cluster-resource namespace's Secrets and ConfigMaps that Bundles source. Each watch that
/// feeds a cache the reconciles read fills it before it wakes anyone.
fn bundle_controller(
    bundles: Controller<DeserializeGuard<Bundle>>,
    client: Client,
    cluster_resource_namespace: &str,
    readiness: &Readiness,
    config: ControllerConfig,
    shutdown: watch::Receiver<bool>,
    ctx: Arc<Context>,
) -> impl std::future::Future<Output = ()> {
    let any = watcher::Config::default().any_semantic();
    let synced = [
        "bundle namespaces",
        "bundle configmap targets",
        "bundle secret targets",
        "bundle issuers",
        "bundle clusterissuers",
    ]
    .map(|name| readiness.watch(name));
    let targets = watcher::Config::default().labels(BUNDLE_LABEL);
    let (namespaces, namespace_events) = cached_watch(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        any.clone(),
        trim_keeping_labels,
        synced[0].clone(),
    );
    let (config_map_targets, config_map_target_events) = cached_watch(
        Api::<PartialObjectMeta<ConfigMap>>::all(client.clone()),
        targets.clone(),
        trim_keeping_labels,
        synced[1].clone(),
    );
    let (secret_targets, secret_target_events) = cached_watch(
        Api::<PartialObjectMeta<Secret>>::all(client.clone()),
        targets,
        trim_keeping_labels,
        synced[2].clone(),
    );
    let (issuers, issuer_events) = cached_watch(
        Api::<DeserializeGuard<Issuer>>::all(client.clone()),
        any.clone(),
        trim_for_cache,
        synced[3].clone(),
    );
    let (cluster_issuers, cluster_issuer_events) = cached_watch(
        Api::<DeserializeGuard<ClusterIssuer>>::all(client.clone()),
        any.clone(),
        trim_for_cache,
        synced[4].clone(),
    );
    // Sources in the cluster-resource namespace: metadata only, nothing cached; the reconcile
    // reads the one it needs.
    let source_secrets = report_sync(
        watcher(
            Api::<PartialObjectMeta<Secret>>::namespaced(client.clone(), cluster_resource_namespace),
            any.clone(),
        )
        .backoff(watch_backoff()),
        readiness.watch("bundle source secrets"),
    )
    .touched_objects();
    let source_config_maps = report_sync(
        watcher(
            Api::<PartialObjectMeta<ConfigMap>>::namespaced(client.clone(), cluster_resource_namespace),
            any,
        )
        .backoff(watch_backoff()),
        readiness.watch("bundle source configmaps"),
    )
    .touched_objects();
    let store = bundles.store();
    let [
        by_namespace,
        by_issuer,
        by_cluster_issuer,
        by_secret,
        by_config_map,
    ] = [(); 5].map(|()| store.clone());
    let bctx = Arc::new(BundleContext {
        ctx,
        namespaces,
        config_map_targets,
        secret_targets,
        issuers,
        cluster_issuers,
        synced: synced.to_vec(),
        written: Default::default(),
    });
    bundles
        .watches_stream(namespace_events, move |_| bundles_where(&by_namespace, |_| true))
        .watches_stream(config_map_target_events, |target| bundle_of_target(&target))
        .watches_stream(secret_target_events, |target| bundle_of_target(&target))
        .watches_stream(issuer_events, move |issuer| {
            let (name, namespace) = (issuer.name_any(), issuer.namespace());
            bundles_where(&by_issuer, |b| {
                uses_issuer(b, "Issuer", &name, namespace.as_deref())
            })
        })
        .watches_stream(cluster_issuer_events, move |issuer| {
            let name = issuer.name_any();
            bundles_where(&by_cluster_issuer, |b| {
                uses_issuer(b, "ClusterIssuer", &name, None)
            })
        })
        .watches_stream(source_secrets, move |secret| {
            let name = secret.name_any();
            bundles_where(&by_secret, |b| uses_secret(b, &name))
        })
        .watches_stream(source_config_maps, move |config_map| {
            let name = config_map.name_any();
            bundles_where(&by_config_map, |b| uses_config_map(b, &name))
        })
        .with_config(config)
        .graceful_shutdown_on(on_shutdown(shutdown))
        .run(bundle_reconcile, bundle_error_policy, bctx)
        .for_each(|_| async {})
}

/// Runs an issuer controller of kind `K`, woken by the metadata of the TLS Secrets in
/// `secrets` that its issuers name. The same events keep its kind's CA key pairs current.
/// The issuers are also woken by `records` (their revocation records changed), and start only
/// once `records_synced`: a CRL is never signed over a partial list of records.
#[allow(clippy::too_many_arguments)]
fn issuer_controller<K: IssuerObject>(
    controller: Controller<DeserializeGuard<K>>,
    secrets: Api<PartialObjectMeta<Secret>>,
    secrets_synced: SyncFlag,
    records: futures::channel::mpsc::UnboundedReceiver<ObjectRef<DeserializeGuard<K>>>,
    records_synced: SyncFlag,
    cluster_resource_namespace: &str,
    config: ControllerConfig,
    shutdown: watch::Receiver<bool>,
    ctx: Arc<Context>,
) -> impl std::future::Future<Output = ()> {
    let store = controller.store();
    let crn = cluster_resource_namespace.to_owned();
    let tls_secrets = watcher::Config::default().fields(&format!("type={SECRET_TYPE_TLS}"));
    let observer = ctx.clone();
    let events = report_sync(
        watcher(secrets, tls_secrets).backoff(watch_backoff()),
        secrets_synced,
    );
    let changed = to_look_at(events, move |event| observer.ca_key_pairs(K::KIND).observe(event));
    let controller = controller
        .reconcile_on(changed.flat_map(move |(namespace, name)| {
            futures::stream::iter(issuers_for_secret(&store, &namespace, &name, &crn))
        }))
        .reconcile_on(records)
        .with_config(config)
        .graceful_shutdown_on(on_shutdown(shutdown));
    async move {
        records_synced.wait().await;
        controller
            .run(issuer_reconcile::<K>, error_policy::<K>, ctx)
            .for_each(|_| async {})
            .await;
    }
}

/// The objects (namespace and name) that `observe` picks out of the watch events `events`
/// as needing a look: a controller's trigger stream. A watch error is retried by the watch's
/// backoff.
pub(crate) fn to_look_at<K>(
    events: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    observe: impl Fn(&watcher::Event<K>) -> Vec<ObjectKey>,
) -> impl futures::Stream<Item = ObjectKey> {
    events.flat_map(move |event| {
        let keys = match event {
            Ok(event) => observe(&event),
            Err(error) => {
                debug!(%error, "watch failed; retrying");
                Vec::new()
            }
        };
        futures::stream::iter(keys)
    })
}

/// The prefix of the annotations the controller reads (renewal requests and the like).
const OWN_ANNOTATIONS: &str = "certkeeper.io/";

/// Drops from an object what the controller never reads before it is cached: managedFields,
/// labels, and every annotation but certkeeper.io's (kubectl's last-applied copy, GitOps
/// tools' tracking data) are most of a Certificate's size (`cargo bench --bench
/// cache_memory`).
pub fn trim_for_cache<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    meta.labels = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|key, _| key.starts_with(OWN_ANNOTATIONS));
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// What a controller's cache can hold.
trait Cached:
    Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static
{
}

impl<K> Cached for K where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// A controller of `K` whose cache holds trimmed objects (`Controller::new` caches them whole),
/// fed by a watch of `api`. `synced` is set once the cache holds the first complete list.
fn cached_controller<K: Cached>(api: Api<K>, config: watcher::Config, synced: SyncFlag) -> Controller<K> {
    controller_over(watcher(api, config).backoff(watch_backoff()), synced)
}

/// A controller over the watch events `events`, caching trimmed objects. `synced` is set
/// after the reflector has stored the first complete list, so whoever waits on it reads a
/// full cache. Nothing here waits on the store itself (see `SyncFlag`).
fn controller_over<K: Cached>(
    events: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    synced: SyncFlag,
) -> Controller<K> {
    let (reader, writer) = kube::runtime::reflector::store();
    let trigger = report_sync(events.modify(trim_for_cache::<K>).reflect(writer), synced).applied_objects();
    Controller::for_stream(trigger, reader)
}

/// Marks `flag` synced when the watch stream has listed every object once.
fn report_sync<K>(
    stream: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
    flag: SyncFlag,
) -> impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> {
    stream.inspect(move |event| {
        if matches!(event, Ok(watcher::Event::InitDone)) {
            flag.synced();
        }
    })
}

/// What one leadership term needs: everything to build the controllers afresh.
pub(super) struct Term {
    pub(super) client: Client,
    pub(super) settings: Settings,
    pub(super) cluster_resource_namespace: String,
    pub(super) readiness: Arc<Readiness>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) clock: crate::context::Clock,
    pub(super) shutdown: watch::Receiver<bool>,
    /// The PKI endpoint the issuer controllers publish CRLs and OCSP signers to.
    pub(super) pki: PkiEndpoint,
}

impl Term {
    /// Builds and runs the four controllers until shutdown.
    pub(super) async fn lead(&self) {
        let client = self.client.clone();
        let settings = &self.settings;
        let cluster_resource_namespace = self.cluster_resource_namespace.clone();
        let readiness = self.readiness.clone();
        let shutdown = self.shutdown.clone();
        info!(%cluster_resource_namespace, concurrency = settings.concurrency, "starting controllers");
        let config = ControllerConfig::default().concurrency(settings.concurrency);
        let watch_config = watcher::Config::default().any_semantic();
        let issuers_synced = readiness.watch("issuers");
        let cluster_issuers_synced = readiness.watch("clusterissuers");
        let issuers = cached_controller(
            Api::<DeserializeGuard<Issuer>>::all(client.clone()),
            watch_config.clone(),
            issuers_synced.clone(),
        );
        let cluster_issuers = cached_controller(
            Api::<DeserializeGuard<ClusterIssuer>>::all(client.clone()),
            watch_config.clone(),
            cluster_issuers_synced.clone(),
        );
        // Verdicts of deleted Certificates are dropped with them.
        let verdicts: Arc<WatchedCache<Verdict>> = Arc::default();
        let forget = verdicts.clone();
        let certificate_events = watcher(
            Api::<DeserializeGuard<Certificate>>::all(client.clone()),
            watch_config.clone(),
        )
        .backoff(watch_backoff())
        .inspect(move |event| {
            if let Ok(watcher::Event::Delete(cert)) = event {
                forget.forget(&(cert.namespace().unwrap_or_default(), cert.name_any()));
            }
        });
        let certificates = controller_over(certificate_events, readiness.watch("certificates"));
        let issuer_store = issuers.store();
        let cluster_issuer_store = cluster_issuers.store();
        let store = certificates.store();

        // Revocation records: one reflected watch. Each record's event wakes the Certificates
        // whose certificate it revokes and the issuer whose CRL it changes, after the cache
        // holds it.
        let revocations_synced = readiness.watch("certificaterevocations");
        let (revocations, revocation_writer) = kube::runtime::reflector::store();
        let (wake_certificates, certificates_to_wake) = futures::channel::mpsc::unbounded();
        let (wake_issuers, issuers_to_wake) = futures::channel::mpsc::unbounded();
        let (wake_cluster_issuers, cluster_issuers_to_wake) = futures::channel::mpsc::unbounded();
        let by_revocation = store.clone();
        let crn = cluster_resource_namespace.clone();
        let revocation_watch = report_sync(
            watcher(
                Api::<DeserializeGuard<CertificateRevocation>>::all(client.clone()),
                watch_config.clone(),
            )
            .backoff(watch_backoff())
            .modify(trim_for_cache::<DeserializeGuard<CertificateRevocation>>)
            .reflect(revocation_writer),
            revocations_synced.clone(),
        )
        .touched_objects()
        .take_until(on_shutdown(shutdown.clone()))
        .for_each(move |touched| {
            if let Ok(DeserializeGuard(Ok(record))) = &touched {
                for cert in certificates_for_revocation(&by_revocation, record, &crn) {
                    let _ = wake_certificates.unbounded_send(cert);
                }
                match issuer_of_revocation(record, &crn) {
                    Some(RecordIssuer::Issuer(r)) => drop(wake_issuers.unbounded_send(r)),
                    Some(RecordIssuer::ClusterIssuer(r)) => drop(wake_cluster_issuers.unbounded_send(r)),
                    None => {}
                }
            }
            async {}
        });
        let mut ctx = Context::with_metrics(
            client.clone(),
            Caches {
                certificates: store.clone(),
                issuers: issuer_store.clone(),
                cluster_issuers: cluster_issuer_store.clone(),
                revocations,
                cluster_resource_namespace: cluster_resource_namespace.clone(),
                clock: self.clock.clone(),
            },
            cluster_resource_namespace.clone(),
            settings.expiry_thresholds.clone(),
            self.metrics.clone(),
        );
        ctx.verdicts = verdicts.clone();
        ctx.rotation = settings.rotation;
        ctx.pki = self.pki.clone();
        // Bundles: trust anchors distributed into namespaces. Issuers read their cache too: a
        // rotation waits until every Bundle sourcing the issuer holds both roots.
        let bundle_watch = cached_controller(
            Api::<DeserializeGuard<Bundle>>::all(client.clone()),
            watch_config.clone(),
            readiness.watch("bundles"),
        );
        ctx.bundles = bundle_watch.store();
        let ctx = Arc::new(ctx);
        let bundles = bundle_controller(
            bundle_watch,
            client.clone(),
            &cluster_resource_namespace,
            &readiness,
            config.clone(),
            shutdown.clone(),
            ctx.clone(),
        );

        // Issuers are woken by their CA Secret: TLS Secrets are watched metadata-only, a
        // ClusterIssuer's only in the cluster-resource namespace.
        let issuers = issuer_controller(
            issuers,
            Api::all(client.clone()),
            readiness.watch("issuer CA secrets"),
            issuers_to_wake,
            revocations_synced.clone(),
            &cluster_resource_namespace,
            config.clone(),
            shutdown.clone(),
            ctx.clone(),
        );
        let cluster_issuers = issuer_controller(
            cluster_issuers,
            Api::namespaced(client.clone(), &cluster_resource_namespace),
            readiness.watch("clusterissuer CA secrets"),
            cluster_issuers_to_wake,
            revocations_synced.clone(),
            &cluster_resource_namespace,
            config.clone(),
            shutdown.clone(),
            ctx.clone(),
        );

        // Certificates are woken by their own Secret (label-selected, metadata-only) and by
        // changes to the issuer they reference. A Secret event that shows the version a
        // verdict was reached on (the echo of the controller's own apply) wakes nobody.
        let by_issuer = store.clone();
        let by_cluster_issuer = store.clone();
        let secret_events = report_sync(
            watcher(
                Api::<PartialObjectMeta<Secret>>::all(client.clone()),
                watcher::Config::default().labels(LABEL_CERTIFICATE_NAME),
            )
            .backoff(watch_backoff()),
            readiness.watch("certificate secrets"),
        );
        let secret_changes = to_look_at(secret_events, move |event| {
            verdicts.observe(event, certificate_of)
        });
        let certificates = certificates
            .reconcile_on(secret_changes.map(|(namespace, name)| ObjectRef::new(&name).within(&namespace)))
            .reconcile_on(certificates_to_wake)
            .watches_stream(
                report_sync(
                    watcher(
                        Api::<DeserializeGuard<Issuer>>::all(client.clone()),
                        watch_config.clone(),
                    )
                    .backoff(watch_backoff()),
                    readiness.watch("certificate issuers"),
                )
                .touched_objects(),
                move |issuer| {
                    certificates_for_issuer(
                        &by_issuer,
                        "Issuer",
                        &issuer.name_any(),
                        issuer.namespace().as_deref(),
                    )
                },
            )
            .watches_stream(
                report_sync(
                    watcher(
                        Api::<DeserializeGuard<ClusterIssuer>>::all(client.clone()),
                        watch_config,
                    )
                    .backoff(watch_backoff()),
                    readiness.watch("certificate clusterissuers"),
                )
                .touched_objects(),
                move |issuer| {
                    certificates_for_issuer(&by_cluster_issuer, "ClusterIssuer", &issuer.name_any(), None)
                },
            )
            .with_config(config.clone())
            .graceful_shutdown_on(on_shutdown(shutdown.clone()));
        let certificates = async move {
            // Certificates are judged against their issuers and the revoked serials: wait until
            // those caches are full.
            issuers_synced.wait().await;
            cluster_issuers_synced.wait().await;
            revocations_synced.wait().await;
            info!("issuer caches synced; reconciling certificates");
            certificates
                .run(certificate_reconcile, error_policy::<Certificate>, ctx.clone())
                .for_each(|_| async {})
                .await;
        };

        tokio::join!(issuers, cluster_issuers, certificates, bundles, revocation_watch);
        info!("controllers stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{
        CLUSTER_RESOURCE_NAMESPACE, ca_cluster_issuer, ca_issuer, certificate, self_signed_issuer,
    };
    use kube::runtime::reflector;

    /// One leadership term over `client`, at the fixed time `now`, with default settings; its
    /// readiness, and the sender that would shut it down.
    fn test_term(client: Client, now: jiff::Timestamp) -> (Term, Arc<Readiness>, watch::Sender<bool>) {
        let readiness = Arc::new(Readiness::default());
        let clock: crate::context::Clock = Arc::new(move || now);
        let (stop, shutdown) = watch::channel(false);
        let term = Term {
            client,
            settings: Settings {
                cluster_resource_namespace: Some(CLUSTER_RESOURCE_NAMESPACE.into()),
                concurrency: 2,
                expiry_thresholds: crate::certificate::expiry::DEFAULT_THRESHOLDS.to_vec(),
                rotation: Default::default(),
                leader_election: None,
            },
            cluster_resource_namespace: CLUSTER_RESOURCE_NAMESPACE.into(),
            readiness: readiness.clone(),
            metrics: Arc::new(Metrics::new(super::super::idle_caches(clock.clone()))),
            clock,
            shutdown,
            pki: PkiEndpoint::default(),
        };
        (term, readiness, stop)
    }

    fn store<K: Resource<DynamicType = ()> + Clone>(objects: Vec<K>) -> Store<DeserializeGuard<K>>
    where
        DeserializeGuard<K>: Resource<DynamicType = ()> + Clone,
    {
        let mut writer = reflector::store::Writer::<DeserializeGuard<K>>::default();
        for o in objects {
            writer.apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(o))));
        }
        writer.as_reader()
    }

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn json_logs_of_a_reconcile_are_one_object_per_line_naming_the_object() {
        use crate::telemetry::logs::{LogFormat, subscriber};
        let captured = Captured::default();
        let writer = captured.clone();
        let sub = subscriber(
            LogFormat::Json,
            tracing_subscriber::EnvFilter::new("info"),
            move || writer.clone(),
        );
        let _default = tracing::subscriber::set_default(sub);
        let (ctx, _api) = crate::testing::context(vec![], vec![], crate::testing::ts("2026-11-23T10:00:00Z"));
        let cert = certificate("web", "ca", &["web.apps.svc"]);
        let result = observed(ControllerKind::Certificate, &cert, &ctx, async {
            info!(secret = "web-tls", "issuing certificate");
            info!("certificate issued");
            Ok(Action::await_change())
        })
        .await;
        assert!(result.is_ok());

        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object: {l}: {e}")))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        for line in &lines {
            assert_eq!(line["span"]["controller"], "certificate");
            assert_eq!(line["span"]["namespace"], "apps");
            assert_eq!(line["span"]["object"], "apps/web");
            assert_eq!(line["level"], "INFO");
        }
        assert_eq!(lines[0]["secret"], "web-tls");
        // The reconcile was counted and timed.
        let metrics = ctx.metrics.encode().unwrap();
        assert!(
            metrics.contains(r#"certkeeper_reconcile_total{controller="certificate",result="success"} 1"#)
        );
        assert!(
            metrics.contains(r#"certkeeper_reconcile_duration_seconds_count{controller="certificate"} 1"#)
        );
    }

    #[test]
    fn issuer_change_wakes_exactly_the_certificates_that_reference_it() {
        let mut other_ns = certificate("c", "ca", &["c"]);
        other_ns.metadata.namespace = Some("elsewhere".into());
        let mut cluster = certificate("d", "ca", &["d"]);
        cluster.spec.issuer_ref.kind = Some("ClusterIssuer".into());
        let certs = store(vec![
            certificate("a", "ca", &["a"]),
            certificate("b", "self", &["b"]),
            other_ns,
            cluster,
        ]);
        let woken = certificates_for_issuer(&certs, "Issuer", "ca", Some("apps"));
        assert_eq!(woken.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["a"]);
        let woken = certificates_for_issuer(&certs, "ClusterIssuer", "ca", None);
        assert_eq!(woken.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["d"]);
    }

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

    /// The upstream fault `SyncFlag` works around, as first reproduced outside the project:
    /// two tasks wait on one kube store; the writer lists; only one of them is woken. If this
    /// fails because both are woken, kube-runtime fixed it and `SyncFlag` may be retired.
    #[tokio::test(start_paused = true)]
    async fn kube_store_readiness_wakes_only_one_of_two_waiters() {
        use k8s_openapi::api::core::v1::ConfigMap;
        let (reader, mut writer) = reflector::store::<ConfigMap>();
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let reader = reader.clone();
                tokio::spawn(async move { reader.wait_until_ready().await })
            })
            .collect();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let woken = waiters.iter().filter(|w| w.is_finished()).count();
        assert_eq!(woken, 1, "kube's store readiness now wakes every waiter");
    }

    #[tokio::test(start_paused = true)]
    async fn a_sync_flag_wakes_every_waiter_and_later_ones_at_once() {
        let flag = SyncFlag::default();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let flag = flag.clone();
                tokio::spawn(async move { flag.wait().await })
            })
            .collect();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        flag.synced();
        for waiter in waiters {
            tokio::time::timeout(Duration::from_secs(2), waiter)
                .await
                .expect("a waiter was not woken")
                .unwrap();
        }
        tokio::time::timeout(Duration::from_secs(2), flag.wait())
            .await
            .expect("a late waiter waits");
    }

    /// A leadership term as it runs against a real API server: the three controllers with
    /// their real stores (each also awaited by kube's own runner) and every watch, over a
    /// stand-in that lists one Certificate and holds every watch open. `/readyz` must turn 200,
    /// and the certificate controller, which waits for the issuer caches, must reconcile.
    #[tokio::test]
    async fn a_leader_becomes_ready_and_reconciles_once_its_watches_have_listed() {
        use crate::testing::{mock_client, serve_lists, to_json, ts};
        let (client, handle) = mock_client();
        let cert = certificate("web", "missing", &["web.apps.svc"]);
        let items = [(
            "/apis/certkeeper.io/v1/certificates".to_owned(),
            vec![to_json(&cert)],
        )];
        let mut requests = serve_lists(handle, items.into_iter().collect());
        let (term, readiness, _stop) = test_term(client, ts("2026-11-23T10:00:00Z"));
        readiness.lead();
        let running = tokio::spawn(async move { term.lead().await });

        let status = "PATCH /apis/certkeeper.io/v1/namespaces/apps/certificates/web/status";
        let reconciled = async {
            while let Some(request) = requests.recv().await {
                if request == status {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), reconciled)
            .await
            .expect("the certificate controller never reconciled");
        let ready = async {
            while readiness.check().is_err() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(10), ready)
            .await
            .is_err()
        {
            panic!("never ready: {:?}", readiness.check());
        }
        running.abort();
    }

    #[test]
    fn the_cache_keeps_only_what_the_controller_reads_of_metadata() {
        let mut cert = certificate("web", "ca", &["web.apps.svc"]);
        cert.metadata.labels = Some([("app.kubernetes.io/name".to_owned(), "web".to_owned())].into());
        cert.metadata.annotations = Some(
            [
                ("kubectl.kubernetes.io/last-applied-configuration", "{...}"),
                (
                    "argocd.argoproj.io/tracking-id",
                    "shop:certkeeper.io/Certificate:apps/web",
                ),
                ("certkeeper.io/renew-requested-at", "2026-11-23T10:00:00Z"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
        );
        cert.metadata.managed_fields = Some(vec![Default::default()]);
        trim_for_cache(&mut cert);
        assert_eq!(cert.metadata.labels, None);
        assert_eq!(cert.metadata.managed_fields, None);
        let kept: Vec<&String> = cert
            .metadata
            .annotations
            .iter()
            .flatten()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(kept, ["certkeeper.io/renew-requested-at"]);
        assert_eq!(cert.metadata.uid.as_deref(), Some("uid-web"));
    }

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

    /// A leadership term against a stand-in API server that lists one Bundle (inline PEM) and
    /// one namespace: once its caches have listed, the Bundle controller writes the target.
    #[tokio::test]
    async fn a_leader_writes_a_bundle_into_a_listed_namespace() {
        use crate::testing::{ca_secret, mock_client, serve_lists, to_json, ts};
        let (client, handle) = mock_client();
        let now = ts("2026-11-23T10:00:00Z");
        let root = ca_secret("x", "x", "root", now - jiff::SignedDuration::from_hours(24), 365);
        let pem = String::from_utf8(root.data.unwrap()["ca.crt"].0.clone()).unwrap();
        let trust = bundle("trust", serde_json::json!([{"inLine": pem}]));
        let namespace = serde_json::json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": "apps", "resourceVersion": "1"},
        });
        let items = [
            ("/apis/certkeeper.io/v1/bundles".to_owned(), vec![to_json(&trust)]),
            ("/api/v1/namespaces".to_owned(), vec![namespace]),
        ];
        let mut requests = serve_lists(handle, items.into_iter().collect());
        let (term, readiness, _stop) = test_term(client, now);
        readiness.lead();
        let running = tokio::spawn(async move { term.lead().await });
        let target = "PATCH /api/v1/namespaces/apps/configmaps/trust";
        let written = async {
            while let Some(request) = requests.recv().await {
                if request == target {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), written)
            .await
            .expect("the Bundle controller never wrote its target");
        running.abort();
    }
}
