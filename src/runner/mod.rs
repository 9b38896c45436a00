//! `certkeeper controller`: connect to the cluster, wire the three controllers and their
//! watches, run until SIGTERM. `connect` reaches the API server, `leadership` follows the
//! Lease, `controllers` builds one leadership term's controllers and their watches.

mod connect;
mod controllers;
mod leadership;
mod pki;
mod retry;
#[cfg(test)]
mod watch_fault_tests;

pub use connect::{Connected, connect};
pub use controllers::{certificates_for_issuer, trim_for_cache};
pub use leadership::{LEASE_DURATION, LEASE_GRACE};
pub use retry::transient_retry;

use std::sync::Arc;

use futures::FutureExt;
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
use controllers::Term;
use leadership::{follow_lease, leader_identity, leadership_unconfirmed};

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

pub(crate) async fn on_shutdown(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Runs until shutdown, serving metrics and health on `endpoint`: the controllers at once, or,
/// with leader election, only while this replica holds the Lease.
///
/// The PKI endpoint (`pki`: CRLs and OCSP) is served by every replica, from the CRL
/// ConfigMaps the leader writes (`pki::follow`).
pub async fn run(
    client: Client,
    settings: Settings,
    endpoint: TcpListener,
    pki: TcpListener,
) -> Result<(), RunError> {
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
    let pki_endpoint = PkiEndpoint::default();
    match pki.local_addr() {
        Ok(address) => info!(%address, "serving CRLs and OCSP"),
        Err(e) => warn!(error = %e, "PKI endpoint has no local address"),
    }
    tokio::spawn(pki_endpoint.clone().serve(pki));
    // Every replica, leading or not, serves the CRLs the leader stores (runner/pki.rs).
    tokio::spawn(pki::follow(
        client.clone(),
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
