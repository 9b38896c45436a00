//! Leader election: lead while holding the Lease, stand by otherwise, and stop when
//! leadership can no longer be confirmed.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::on_shutdown;

/// Leads while `leader` says this replica holds the Lease, stands by otherwise, until
/// shutdown. `lead` runs the controllers until shutdown; when the Lease is lost its future is
/// dropped at once, which cancels every reconcile at its next step, so nothing more is written.
/// `unconfirmed` watches a term from outside the lease manager and resolves, with the reason,
/// when leadership can no longer be confirmed: the controllers stop the same way and this
/// returns the reason, since the lease manager may still believe it leads.
/// Consumes `leader`, so the lease manager releases the Lease when this returns.
pub(super) async fn follow_lease<F, G>(
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
pub(super) async fn leadership_unconfirmed(
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
pub(super) fn leader_identity() -> String {
    match std::env::var("POD_NAME") {
        Ok(name) if !name.is_empty() => name,
        _ => format!("certkeeper-{}", std::process::id()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

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
}
