//! `certkeeper controller`: connect to the cluster, wire the controllers and their watches,
//! run until SIGTERM. `connect` reaches the API server, `leadership` follows the Lease, `term`
//! builds one leadership term's shared caches and joins the controllers, each wired in a file
//! of its own (`certificates`, `issuers`, `bundles`, `revocations`); every watch is made by
//! `watches`. A shutdown request is heard in every phase: `Shutdown` is installed first.

mod bundles;
mod certificates;
mod connect;
mod deadlines;
mod inventory;
#[cfg(test)]
mod inventory_tests;
mod issuers;
mod leadership;
mod pki;
mod policies;
mod reconciles;
mod retry;
mod revocations;
#[cfg(test)]
mod shutdown_tests;
#[cfg(test)]
mod stand_in;
mod term;
#[cfg(test)]
mod term_tests;
#[cfg(test)]
mod watch_fault_tests;
mod watches;

pub use certificates::certificates_for_issuer;
pub use connect::{Connected, connect};
pub use inventory::{InventorySettings, OWN_GRACE};
pub use leadership::{LEASE_DURATION, LEASE_GRACE};
pub use reconciles::trim_for_cache;
pub use retry::transient_retry;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::context::system_clock;
use crate::revocation::PkiEndpoint;
use crate::telemetry::metrics::{Caches, Metrics};
use crate::telemetry::server::{Endpoint, Readiness};
use leadership::{follow_lease, leader_identity, leadership_unconfirmed};
use term::{Term, Wiring};
use watches::Watches;

/// Settings of the controller process.
#[derive(Clone, Debug)]
pub struct Settings {
    pub cluster_resource_namespace: Option<String>,
    pub concurrency: u16,
    pub expiry_thresholds: Vec<jiff::SignedDuration>,
    /// The waits of CA rotations.
    pub rotation: crate::issuer::rotation::RotationSettings,
    /// Reconcile only while holding this Lease; None runs at once (one replica, a laptop).
    pub leader_election: Option<LeaderElection>,
    /// `--require-policy`: every issuer is guarded; a Certificate no CertificatePolicy
    /// allows is denied.
    pub require_policy: bool,
    /// The certificate inventory (`--inventory`): what it watches; None: off.
    pub inventory: Option<InventorySettings>,
    /// The PKCS#11 modules of CA keys in HSMs, shared by every leadership term (a token stays
    /// logged in across them).
    pub pkcs11: Arc<crate::pkcs11::Pkcs11Registry>,
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
    #[error("cannot listen on {address} for CRLs and OCSP: {reason}")]
    ListenPki { address: String, reason: String },
    #[error("cannot use the leader election Lease {lease}: {reason}")]
    Lease { lease: String, reason: String },
    #[error(
        "stopped reconciling: leadership of the Lease {lease} could not be confirmed ({reason}); exiting so that this replica restarts as a standby"
    )]
    LeadershipUnconfirmed { lease: String, reason: String },
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

/// A shutdown request, heard in every phase of the process: connecting, checking the API,
/// waiting for leadership, building the controllers, listing, running.
pub type Shutdown = watch::Receiver<bool>;

/// After a shutdown request, how long running reconciles may take to finish before the
/// controllers are dropped: below Kubernetes' default termination grace period (30 s).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Installs the SIGTERM and Ctrl-C handlers now (before anything else can wait), and returns
/// the request the first of them sets. A signal that arrives at any later moment is heard.
pub fn shutdown_on_signals() -> Shutdown {
    let (tx, rx) = watch::channel(false);
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        // `signal` installs the handler when called, not when first polled.
        [SignalKind::terminate(), SignalKind::interrupt()].map(|kind| match signal(kind) {
            Ok(stream) => Some(stream),
            Err(e) => {
                warn!(error = %e, "cannot listen for a shutdown signal");
                None
            }
        })
    };
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let [term, interrupt] = signals;
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => drop(s.recv().await),
                    None => futures::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(term) => {},
                () = wait(interrupt) => {},
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        info!("shutdown requested; finishing running reconciles");
        tx.send_replace(true);
    });
    rx
}

/// `work`'s output, or None if shutdown is requested first (`work` is then dropped).
pub async fn unless_shutdown<F: std::future::Future>(shutdown: &Shutdown, work: F) -> Option<F::Output> {
    tokio::select! {
        biased;
        () = on_shutdown(shutdown.clone()) => None,
        out = work => Some(out),
    }
}

/// Runs `term` (which ends by itself on shutdown once its running reconciles finish), but
/// gives it at most SHUTDOWN_GRACE after the shutdown request.
async fn within_grace(shutdown: Shutdown, term: impl std::future::Future<Output = ()>) {
    let deadline = async {
        on_shutdown(shutdown).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
        warn!("running reconciles did not finish in time; stopping them");
    };
    tokio::select! {
        () = term => {},
        () = deadline => {},
    }
}

pub(crate) async fn on_shutdown(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Runs until `shutdown`, serving metrics and health on `endpoint`: the controllers at once, or,
/// with leader election, only while this replica holds the Lease, which it releases on the way
/// out.
///
/// The PKI endpoint (`pki`: CRLs and OCSP) is served by every replica, from the CRL
/// ConfigMaps the leader writes (`pki::follow`).
pub async fn run(
    client: Client,
    settings: Settings,
    endpoint: TcpListener,
    pki: TcpListener,
    shutdown: Shutdown,
) -> Result<(), RunError> {
    let cluster_resource_namespace = settings
        .cluster_resource_namespace
        .clone()
        .unwrap_or_else(default_cluster_resource_namespace);
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
    let pki_endpoint = PkiEndpoint::with_metrics(metrics.clone());
    match pki.local_addr() {
        Ok(address) => info!(%address, "serving CRLs and OCSP"),
        Err(e) => warn!(error = %e, "PKI endpoint has no local address"),
    }
    tokio::spawn(pki_endpoint.clone().serve(pki));
    // Every replica, leading or not, serves the CRLs the leader stores (runner/pki.rs).
    let process_watches = Watches {
        client: client.clone(),
        readiness: readiness.clone(),
        metrics: metrics.clone(),
    };
    tokio::spawn(pki::follow(
        process_watches,
        settings.pkcs11.clone(),
        pki_endpoint.clone(),
        cluster_resource_namespace.clone(),
        shutdown.clone(),
    ));
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
        pki: pki_endpoint.clone(),
    };
    let Some(election) = settings.leader_election.clone() else {
        readiness.lead();
        within_grace(shutdown, term.lead()).await;
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
        .build();
    // Building reads (or creates) the Lease: an API server slow to answer must not hold a
    // shutdown up.
    let Some(manager) = unless_shutdown(&shutdown, manager).await else {
        return Ok(());
    };
    let manager = manager.map_err(|e| RunError::Lease {
        lease: lease.clone(),
        reason: e.to_string(),
    })?;
    info!(%lease, %identity, "waiting for leadership");
    let (leader, lease_task) = manager.watch().await;
    let standby = || {
        readiness.standby();
        metrics.observe(idle_caches(clock.clone()));
        metrics.observe_inventory(None);
    };
    let leases: Api<Lease> = Api::namespaced(client, &namespace);
    let outcome = follow_lease(
        leader,
        shutdown.clone(),
        standby,
        || {
            readiness.lead();
            within_grace(shutdown.clone(), term.lead())
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

/// Empty caches: what a replica that does not lead reports.
pub(super) fn idle_caches(clock: crate::context::Clock) -> Caches {
    Caches {
        certificates: kube::runtime::reflector::store::Writer::default().as_reader(),
        issuers: kube::runtime::reflector::store::Writer::default().as_reader(),
        cluster_issuers: kube::runtime::reflector::store::Writer::default().as_reader(),
        revocations: kube::runtime::reflector::store::Writer::default().as_reader(),
        cluster_resource_namespace: String::new(),
        clock,
    }
}
