//! `certkeeper controller`: connect to the cluster, wire the three controllers and their
//! watches, run until SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use kube_lease_manager::LeaseManagerBuilder;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::api::{Certificate, ClusterIssuer, Issuer};
use crate::certificate::schedule::backoff;
use crate::certificate::secret::{LABEL_CERTIFICATE_NAME, SECRET_TYPE_TLS};
use crate::context::{Context, system_clock};
use crate::error::Error;
use crate::issuer::IssuerObject;
use crate::telemetry::metrics::{Caches, ControllerKind, Metrics};
use crate::telemetry::server::{Endpoint, Readiness, SyncFlag};

/// Settings of the controller process.
#[derive(Clone, Debug)]
pub struct Settings {
    pub cluster_resource_namespace: Option<String>,
    pub concurrency: u16,
    pub expiry_thresholds: Vec<jiff::SignedDuration>,
    /// Reconcile only while holding this Lease; None runs at once (one replica, a laptop).
    pub leader_election: Option<LeaderElection>,
}

/// Where the leader election Lease lives.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    /// Namespace of the Lease [default: the controller's own].
    pub namespace: Option<String>,
    pub lease_name: String,
}

/// Why the controller could not start, or had to stop. Printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "no Kubernetes configuration found (not in a cluster, and no usable KUBECONFIG or ~/.kube/config): {0}"
    )]
    NoConfig(String),
    #[error("cannot reach the Kubernetes API server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("cannot listen on {address} for /metrics, /healthz and /readyz: {reason}")]
    Listen { address: String, reason: String },
    #[error("cannot use the leader election Lease {lease}: {reason}")]
    Lease { lease: String, reason: String },
    #[error(
        "stopped reconciling: leadership of the Lease {lease} could not be confirmed ({reason}); exiting so that this replica restarts as a standby"
    )]
    LeadershipUnconfirmed { lease: String, reason: String },
}

/// How long to wait for the API server to answer at start-up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// A client whose API server answered.
pub struct Connected {
    pub client: Client,
    pub server: String,
    pub version: String,
}

/// Builds a client with the standard resolution (in-cluster, then KUBECONFIG / ~/.kube/config)
/// and checks the API server answers.
pub async fn connect() -> Result<Connected, RunError> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| RunError::NoConfig(e.to_string()))?;
    let url = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|e| RunError::Unreachable {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    match tokio::time::timeout(CONNECT_TIMEOUT, client.apiserver_version()).await {
        Ok(Ok(version)) => Ok(Connected {
            client,
            server: url,
            version: version.git_version,
        }),
        Ok(Err(e)) => Err(RunError::Unreachable {
            url,
            reason: e.to_string(),
        }),
        Err(_) => Err(RunError::Unreachable {
            url,
            reason: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
        }),
    }
}

/// The namespace the controller runs in, or `certkeeper-system` outside a cluster.
pub fn default_cluster_resource_namespace() -> String {
    if let Ok(ns) = std::env::var("POD_NAMESPACE")
        && !ns.is_empty()
    {
        return ns;
    }
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "certkeeper-system".to_owned())
}

/// Resolves on the first SIGTERM or Ctrl-C; every controller shuts down gracefully on it.
fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c().map(|_| ());
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    warn!(error = %e, "cannot listen for SIGTERM");
                    futures::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let term = futures::future::pending::<()>();
        futures::future::select(Box::pin(ctrl_c), Box::pin(term)).await;
        info!("shutdown requested; finishing running reconciles");
        let _ = tx.send(true);
    });
    rx
}

async fn on_shutdown(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

fn error_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// Retries a failed reconcile with the per-object exponential backoff (10 s → 5 min).
fn error_policy<K: Resource<DynamicType = ()>>(
    obj: Arc<DeserializeGuard<K>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let key = error_key(obj.as_ref());
    let n = ctx.record_error(&key);
    let wait = backoff(n);
    warn!(object = %key, %error, retry_in_s = wait.as_secs(), "reconcile failed");
    Action::requeue(Duration::from_secs(wait.as_secs().unsigned_abs()))
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
        .filter(|cert| {
            cert.spec.issuer_ref.kind() == kind
                && cert.spec.issuer_ref.name == name
                && (namespace.is_none() || cert.metadata.namespace.as_deref() == namespace)
        })
        .map(object_ref)
        .collect()
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

/// Runs an issuer controller of kind `K`, woken by the metadata of the TLS Secrets in
/// `secrets` that its issuers name.
fn issuer_controller<K: IssuerObject>(
    controller: Controller<DeserializeGuard<K>>,
    secrets: Api<PartialObjectMeta<Secret>>,
    secrets_synced: SyncFlag,
    cluster_resource_namespace: &str,
    config: ControllerConfig,
    shutdown: watch::Receiver<bool>,
    ctx: Arc<Context>,
) -> impl std::future::Future<Output = ()> {
    let store = controller.store();
    let crn = cluster_resource_namespace.to_owned();
    let tls_secrets = watcher::Config::default().fields(&format!("type={SECRET_TYPE_TLS}"));
    controller
        .watches_stream(
            report_sync(watcher(secrets, tls_secrets), secrets_synced).touched_objects(),
            move |secret| {
                issuers_for_secret(
                    &store,
                    &secret.namespace().unwrap_or_default(),
                    &secret.name_any(),
                    &crn,
                )
            },
        )
        .with_config(config)
        .graceful_shutdown_on(on_shutdown(shutdown))
        .run(issuer_reconcile::<K>, error_policy::<K>, ctx)
        .for_each(|_| async {})
}

/// The annotation `kubectl apply` (client-side) leaves: a copy of the whole object.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops from an object what the controller never reads before it is cached: managedFields
/// and kubectl's last-applied copy are most of a Certificate's size (`cargo bench --bench
/// cache_memory`).
pub fn trim_for_cache<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// A controller of `K` whose cache holds trimmed objects (`Controller::new` caches them whole).
fn cached_controller<K>(api: Api<K>, config: watcher::Config) -> Controller<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = kube::runtime::reflector::store();
    let trigger = watcher(api, config)
        .default_backoff()
        .modify(trim_for_cache::<K>)
        .reflect(writer)
        .applied_objects();
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

/// Marks `flag` synced when the controller's own cache is full.
fn report_store_sync<K>(store: Store<K>, flag: SyncFlag)
where
    K: kube::runtime::reflector::Lookup + Clone + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    tokio::spawn(async move {
        if store.wait_until_ready().await.is_ok() {
            flag.synced();
        }
    });
}

/// Runs until shutdown, serving metrics and health on `endpoint`: the controllers at once, or,
/// with leader election, only while this replica holds the Lease.
pub async fn run(client: Client, settings: Settings, endpoint: TcpListener) -> Result<(), RunError> {
    let cluster_resource_namespace = settings
        .cluster_resource_namespace
        .clone()
        .unwrap_or_else(default_cluster_resource_namespace);
    let shutdown = shutdown_signal();
    let readiness = Arc::new(Readiness::default());
    let clock = system_clock();
    let metrics = Arc::new(Metrics::new(idle_caches(clock.clone())));

    let server = Endpoint {
        metrics: metrics.clone(),
        readiness: readiness.clone(),
    };
    match endpoint.local_addr() {
        Ok(address) => info!(%address, "serving /metrics, /healthz and /readyz"),
        Err(e) => warn!(error = %e, "metrics endpoint has no local address"),
    }
    tokio::spawn(server.serve(endpoint));
    {
        let readiness = readiness.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            on_shutdown(shutdown).await;
            readiness.shutting_down();
        });
    }
    let term = Term {
        client: client.clone(),
        settings: settings.clone(),
        cluster_resource_namespace: cluster_resource_namespace.clone(),
        readiness: readiness.clone(),
        metrics: metrics.clone(),
        clock: clock.clone(),
        shutdown: shutdown.clone(),
    };
    let Some(election) = settings.leader_election.clone() else {
        readiness.lead();
        term.lead().await;
        return Ok(());
    };

    // By default the Lease lives in the controller's own namespace, where the install's Role
    // lets it write Leases.
    let namespace = election
        .namespace
        .clone()
        .unwrap_or_else(default_cluster_resource_namespace);
    let lease = format!("{namespace}/{}", election.lease_name);
    let identity = leader_identity();
    let manager = LeaseManagerBuilder::new(client.clone(), &election.lease_name)
        .with_namespace(&namespace)
        .with_identity(&identity)
        .with_duration(LEASE_DURATION.as_secs())
        .with_grace(LEASE_GRACE.as_secs())
        .build()
        .await
        .map_err(|e| RunError::Lease {
            lease: lease.clone(),
            reason: e.to_string(),
        })?;
    info!(%lease, %identity, "waiting for leadership");
    let (leader, lease_task) = manager.watch().await;
    let standby = || {
        readiness.standby();
        metrics.observe(idle_caches(clock.clone()));
    };
    let leases: Api<Lease> = Api::namespaced(client, &namespace);
    let outcome = follow_lease(
        leader,
        shutdown,
        standby,
        || {
            readiness.lead();
            term.lead()
        },
        || {
            leadership_unconfirmed(
                leases.clone(),
                election.lease_name.clone(),
                identity.clone(),
                clock.clone(),
            )
        },
    )
    .await;
    // `follow_lease` dropped the channel, so the manager releases the Lease if it holds it;
    // a standby notices when it next looks, at the latest when the Lease would have expired.
    match tokio::time::timeout(LEASE_GRACE, lease_task).await {
        Ok(Ok(Ok(_))) => info!("released the lease"),
        Ok(Ok(Err(e))) => warn!(error = %e, "could not release the lease; it expires by itself"),
        Ok(Err(e)) => warn!(error = %e, "the lease task failed"),
        Err(_) => warn!("releasing the lease timed out; it expires by itself"),
    }
    outcome.map_err(|reason| RunError::LeadershipUnconfirmed { lease, reason })
}

/// Leads while `leader` says this replica holds the Lease, stands by otherwise, until
/// shutdown. `lead` runs the controllers until shutdown; when the Lease is lost its future is
/// dropped at once, which cancels every reconcile at its next step, so nothing more is written.
/// `unconfirmed` watches a term from outside the lease manager and resolves, with the reason,
/// when leadership can no longer be confirmed: the controllers stop the same way and this
/// returns the reason, since the lease manager may still believe it leads.
/// Consumes `leader`, so the lease manager releases the Lease when this returns.
async fn follow_lease<F, G>(
    mut leader: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
    standby: impl Fn(),
    lead: impl Fn() -> F,
    unconfirmed: impl Fn() -> G,
) -> Result<(), String>
where
    F: std::future::Future<Output = ()>,
    G: std::future::Future<Output = String>,
{
    loop {
        standby();
        tokio::select! {
            won = leader.wait_for(|leading| *leading) => if won.is_err() { return Ok(()) },
            _ = on_shutdown(shutdown.clone()) => return Ok(()),
        }
        info!("acquired the lease; reconciling");
        tokio::select! {
            // Ends on shutdown, after the running reconciles finish.
            () = lead() => return Ok(()),
            _ = leader.wait_for(|leading| !*leading) => {
                warn!("lost the lease; stopped reconciling, standing by");
            }
            reason = unconfirmed() => {
                warn!(%reason, "leadership unconfirmed; stopped reconciling");
                return Err(reason);
            }
        }
    }
}

/// How often a leader checks the Lease on the server.
const LEASE_CHECK_PERIOD: Duration = Duration::from_secs(1);
/// A leader stops when its last renewal the server shows is older than this: renewals come
/// every LEASE_DURATION - LEASE_GRACE (10 s), and a standby may take the Lease once
/// LEASE_DURATION (15 s) has passed, so this leaves both margins.
const RENEW_DEADLINE: Duration = Duration::from_secs(13);

/// Resolves, with the reason, once the Lease on the server can no longer be confirmed to name
/// `identity` with a renewal younger than RENEW_DEADLINE. The lease manager only reports a
/// change it has seen, and a renewal that hangs or keeps failing is not one; yet the
/// controllers may still reach the API server, and a standby takes the Lease when it expires.
async fn leadership_unconfirmed(
    leases: Api<Lease>,
    name: String,
    identity: String,
    clock: crate::context::Clock,
) -> String {
    // Acquiring renewed it just now.
    let mut renewed = clock();
    loop {
        tokio::time::sleep(LEASE_CHECK_PERIOD).await;
        match tokio::time::timeout(LEASE_CHECK_PERIOD, leases.get(&name)).await {
            Ok(Ok(lease)) => {
                let spec = lease.spec.unwrap_or_default();
                if spec.holder_identity.as_deref() != Some(identity.as_str()) {
                    return format!(
                        "it is held by {}",
                        spec.holder_identity.as_deref().unwrap_or("nobody")
                    );
                }
                // The lease manager writes renewTime from this process's own clock.
                if let Some(at) = spec.renew_time {
                    renewed = renewed.max(at.0);
                }
            }
            Ok(Err(e)) => debug!(error = %e, "cannot read the Lease"),
            Err(_) => debug!("reading the Lease timed out"),
        }
        let age = clock().duration_since(renewed);
        if age > jiff::SignedDuration::try_from(RENEW_DEADLINE).unwrap_or(jiff::SignedDuration::MAX) {
            return format!("its last renewal was {}s ago", age.as_secs());
        }
    }
}

/// How long a Lease stays valid without renewal: the longest a standby waits after a leader
/// dies.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// The leader renews this long before the Lease expires.
pub const LEASE_GRACE: Duration = Duration::from_secs(5);

/// Who this replica is in the Lease: the pod name, or a random name outside a cluster.
fn leader_identity() -> String {
    match std::env::var("POD_NAME") {
        Ok(name) if !name.is_empty() => name,
        _ => format!("certkeeper-{}", std::process::id()),
    }
}

/// Empty caches: what a replica that does not lead reports.
fn idle_caches(clock: crate::context::Clock) -> Caches {
    Caches {
        certificates: kube::runtime::reflector::store::Writer::default().as_reader(),
        issuers: kube::runtime::reflector::store::Writer::default().as_reader(),
        cluster_issuers: kube::runtime::reflector::store::Writer::default().as_reader(),
        clock,
    }
}

/// What one leadership term needs: everything to build the controllers afresh.
struct Term {
    client: Client,
    settings: Settings,
    cluster_resource_namespace: String,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
    clock: crate::context::Clock,
    shutdown: watch::Receiver<bool>,
}

impl Term {
    /// Builds and runs the three controllers until shutdown.
    async fn lead(&self) {
        let client = self.client.clone();
        let settings = &self.settings;
        let cluster_resource_namespace = self.cluster_resource_namespace.clone();
        let readiness = self.readiness.clone();
        let shutdown = self.shutdown.clone();
        info!(%cluster_resource_namespace, concurrency = settings.concurrency, "starting controllers");
        let config = ControllerConfig::default().concurrency(settings.concurrency);
        let watch_config = watcher::Config::default().any_semantic();
        let issuers = cached_controller(
            Api::<DeserializeGuard<Issuer>>::all(client.clone()),
            watch_config.clone(),
        );
        let cluster_issuers = cached_controller(
            Api::<DeserializeGuard<ClusterIssuer>>::all(client.clone()),
            watch_config.clone(),
        );
        let certificates = cached_controller(
            Api::<DeserializeGuard<Certificate>>::all(client.clone()),
            watch_config.clone(),
        );
        let issuer_store = issuers.store();
        let cluster_issuer_store = cluster_issuers.store();
        let store = certificates.store();
        report_store_sync(issuer_store.clone(), readiness.watch("issuers"));
        report_store_sync(cluster_issuer_store.clone(), readiness.watch("clusterissuers"));
        report_store_sync(store.clone(), readiness.watch("certificates"));
        let ctx = Arc::new(Context::with_metrics(
            client.clone(),
            Caches {
                certificates: store.clone(),
                issuers: issuer_store.clone(),
                cluster_issuers: cluster_issuer_store.clone(),
                clock: self.clock.clone(),
            },
            cluster_resource_namespace.clone(),
            settings.expiry_thresholds.clone(),
            self.metrics.clone(),
        ));

        // Issuers are woken by their CA Secret: TLS Secrets are watched metadata-only, a
        // ClusterIssuer's only in the cluster-resource namespace.
        let issuers = issuer_controller(
            issuers,
            Api::all(client.clone()),
            readiness.watch("issuer CA secrets"),
            &cluster_resource_namespace,
            config.clone(),
            shutdown.clone(),
            ctx.clone(),
        );
        let cluster_issuers = issuer_controller(
            cluster_issuers,
            Api::namespaced(client.clone(), &cluster_resource_namespace),
            readiness.watch("clusterissuer CA secrets"),
            &cluster_resource_namespace,
            config.clone(),
            shutdown.clone(),
            ctx.clone(),
        );

        // Certificates are woken by their own Secret (label-selected, metadata-only) and by
        // changes to the issuer they reference.
        let by_issuer = store.clone();
        let by_cluster_issuer = store.clone();
        let certificates = certificates
            .watches_stream(
                report_sync(
                    watcher(
                        Api::<PartialObjectMeta<Secret>>::all(client.clone()),
                        watcher::Config::default().labels(LABEL_CERTIFICATE_NAME),
                    ),
                    readiness.watch("certificate secrets"),
                )
                .touched_objects(),
                |secret| {
                    let namespace = secret.namespace().unwrap_or_default();
                    secret
                        .labels()
                        .get(LABEL_CERTIFICATE_NAME)
                        .map(|name| ObjectRef::new(name).within(&namespace))
                },
            )
            .watches_stream(
                report_sync(
                    watcher(
                        Api::<DeserializeGuard<Issuer>>::all(client.clone()),
                        watch_config.clone(),
                    ),
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
                    ),
                    readiness.watch("certificate clusterissuers"),
                )
                .touched_objects(),
                move |issuer| {
                    certificates_for_issuer(&by_cluster_issuer, "ClusterIssuer", &issuer.name_any(), None)
                },
            )
            .with_config(config)
            .graceful_shutdown_on(on_shutdown(shutdown.clone()));
        let certificates = async move {
            // Certificates are judged against their issuers: wait until the issuer caches are full.
            if issuer_store.wait_until_ready().await.is_err()
                || cluster_issuer_store.wait_until_ready().await.is_err()
            {
                return;
            }
            info!("issuer caches synced; reconciling certificates");
            certificates
                .run(certificate_reconcile, error_policy::<Certificate>, ctx.clone())
                .for_each(|_| async {})
                .await;
        };

        tokio::join!(issuers, cluster_issuers, certificates);
        info!("controllers stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{ca_cluster_issuer, ca_issuer, certificate, self_signed_issuer};
    use kube::runtime::reflector;

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

    /// Sets its flag when dropped: tells when a leadership term's future is gone.
    struct DropFlag(Arc<std::sync::atomic::AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn only_the_lease_holder_reconciles_and_losing_the_lease_stops_writes_at_once() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let (lease, leader) = watch::channel(false);
        let (stop, shutdown) = watch::channel(false);
        let standbys = Arc::new(AtomicUsize::new(0));
        let terms = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicBool::new(false));
        let (write, mut writes) = tokio::sync::mpsc::unbounded_channel::<usize>();
        let follower = {
            let (standbys, terms, dropped, shutdown2) =
                (standbys.clone(), terms.clone(), dropped.clone(), shutdown.clone());
            tokio::spawn(async move {
                follow_lease(
                    leader,
                    shutdown,
                    || {
                        standbys.fetch_add(1, Ordering::SeqCst);
                    },
                    || {
                        // A stand-in for the controllers: writes for as long as it is polled,
                        // ends on shutdown.
                        let term = terms.fetch_add(1, Ordering::SeqCst) + 1;
                        dropped.store(false, Ordering::SeqCst);
                        let guard = DropFlag(dropped.clone());
                        let write = write.clone();
                        let shutdown = shutdown2.clone();
                        async move {
                            let _guard = guard;
                            let writing = async {
                                loop {
                                    let _ = write.send(term);
                                    tokio::task::yield_now().await;
                                }
                            };
                            tokio::select! {
                                () = writing => {},
                                () = on_shutdown(shutdown) => {},
                            }
                        }
                    },
                    futures::future::pending::<String>,
                )
                .await
            })
        };

        // Standing by: nothing runs.
        tokio::task::yield_now().await;
        assert_eq!(terms.load(Ordering::SeqCst), 0);
        assert_eq!(standbys.load(Ordering::SeqCst), 1);

        // The lease is won: the controllers run.
        lease.send(true).unwrap();
        assert_eq!(writes.recv().await, Some(1));

        // The lease is lost: the term is dropped, and after that nothing more is written.
        lease.send(false).unwrap();
        while !dropped.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        while writes.try_recv().is_ok() {}
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert!(writes.try_recv().is_err(), "written after the lease was lost");
        assert_eq!(standbys.load(Ordering::SeqCst), 2);

        // Won again: a new term; shutdown then ends it and the follower.
        lease.send(true).unwrap();
        while writes.recv().await != Some(2) {}
        stop.send(true).unwrap();
        assert_eq!(follower.await.unwrap(), Ok(()));
        assert_eq!(terms.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn unconfirmed_leadership_stops_the_controllers_and_ends_the_process() {
        let (_lease, leader) = watch::channel(true);
        let (_stop, shutdown) = watch::channel(false);
        let outcome = follow_lease(
            leader,
            shutdown,
            || {},
            futures::future::pending::<()>,
            || async { "its last renewal was 14s ago".to_owned() },
        )
        .await;
        assert_eq!(outcome, Err("its last renewal was 14s ago".to_owned()));
    }

    fn lease(holder: &str, renewed: &str) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "certkeeper-controller", "namespace": "certkeeper-system"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renewed},
        })
    }

    use http::Method;

    const LEASE_PATH: &str =
        "/apis/coordination.k8s.io/v1/namespaces/certkeeper-system/leases/certkeeper-controller";

    /// Runs the leadership check against the mocked API server, with a clock that starts at
    /// `start` and follows tokio's (paused) time.
    fn check_leadership(start: &str) -> (tokio::task::JoinHandle<String>, crate::testing::ApiServer) {
        let start = crate::testing::ts(start);
        let (ctx, api) = crate::testing::context(vec![], vec![], start);
        let leases = Api::<Lease>::namespaced(ctx.client.clone(), "certkeeper-system");
        let began = tokio::time::Instant::now();
        let clock: crate::context::Clock =
            Arc::new(move || start + jiff::SignedDuration::try_from(began.elapsed()).unwrap());
        let task = tokio::spawn(leadership_unconfirmed(
            leases,
            "certkeeper-controller".into(),
            "certkeeper-0".into(),
            clock,
        ));
        (task, api)
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_whose_renewals_stall_stops_before_the_lease_can_expire() {
        let (task, mut api) = check_leadership("2026-11-23T10:00:09Z");
        // One second later: renewed 10 s ago, normal just before the next renewal.
        api.expect(Method::GET, LEASE_PATH)
            .await
            .ok(lease("certkeeper-0", "2026-11-23T10:00:00.000000Z"));
        // Then the API server stops answering and no renewal is seen again: the leader keeps
        // going until its last renewal is older than the 13 s deadline, then stops, a second
        // before a standby could take the 15 s Lease.
        for _ in 0..3 {
            drop(api.expect(Method::GET, LEASE_PATH).await);
        }
        assert_eq!(task.await.unwrap(), "its last renewal was 14s ago");
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_seeing_another_holder_stops_at_once() {
        let (task, mut api) = check_leadership("2026-11-23T10:00:01Z");
        api.expect(Method::GET, LEASE_PATH)
            .await
            .ok(lease("certkeeper-1", "2026-11-23T10:00:00.000000Z"));
        assert_eq!(task.await.unwrap(), "it is held by certkeeper-1");
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
}
