//! A shutdown request is never lost: `run` returns within a second of it whatever the phase
//! (reading the Lease, standing by, building the controllers, listing, running), over a
//! stand-in API server that is slow to answer, and a leader releases its Lease on the way out.

use std::time::Duration;

use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::stand_in::{Hold, StandIn};
use super::{LeaderElection, Settings, run};
use crate::testing::{CLUSTER_RESOURCE_NAMESPACE, certificate, mock_client, to_json};

const LEASES: &str = "/apis/coordination.k8s.io/v1/leases";
const LEASE: &str = "certkeeper-controller";

fn settings(leader_election: bool) -> Settings {
    Settings {
        leader_election: leader_election.then(|| LeaderElection {
            namespace: Some(CLUSTER_RESOURCE_NAMESPACE.into()),
            lease_name: LEASE.into(),
        }),
        ..crate::testing::controller_settings()
    }
}

/// The Lease, held by `holder` (renewed just now) or by nobody.
fn lease(holder: Option<&str>) -> serde_json::Value {
    let spec = match holder {
        Some(holder) => json!({
            "holderIdentity": holder, "leaseDurationSeconds": 15,
            "acquireTime": jiff::Timestamp::now().to_string(),
            "renewTime": jiff::Timestamp::now().to_string(),
        }),
        None => json!({}),
    };
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
           "metadata": {"name": LEASE, "namespace": CLUSTER_RESOURCE_NAMESPACE}, "spec": spec})
}

/// `run` over `api` (prepared by `prepare`), with a shutdown request sent once `phase` holds
/// (polled every 10 ms, for at most 10 s): whether `run` returned within a second of it.
async fn returns_within_a_second_of_shutdown(
    leader_election: bool,
    prepare: impl FnOnce(&StandIn),
    phase: impl Fn(&StandIn, &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> bool,
) -> (StandIn, Result<(), String>) {
    let (client, handle) = mock_client();
    let (api, mut requests) = StandIn::serve(handle);
    prepare(&api);
    let endpoint = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pki = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(run(client, settings(leader_election), endpoint, pki, shutdown));
    let reached = async {
        while !phase(&api, &mut requests) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), reached)
        .await
        .is_err()
    {
        return (api, Err("the phase was never reached".into()));
    }
    stop.send_replace(true);
    let outcome = match tokio::time::timeout(Duration::from_secs(1), running).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(format!("run failed: {e}")),
        Ok(Err(e)) => Err(format!("run panicked: {e}")),
        Err(_) => Err("still running a second after the shutdown request".into()),
    };
    (api, outcome)
}

fn saw(requests: &mut tokio::sync::mpsc::UnboundedReceiver<String>, wanted: &str) -> bool {
    while let Ok(request) = requests.try_recv() {
        if request == wanted {
            return true;
        }
    }
    false
}

#[tokio::test]
async fn shutdown_at_once_is_heard() {
    let (_, outcome) = returns_within_a_second_of_shutdown(false, |_| {}, |_, _| true).await;
    assert_eq!(outcome, Ok(()));
}

#[tokio::test]
async fn shutdown_while_the_first_lists_are_unanswered_is_heard() {
    let (_, outcome) = returns_within_a_second_of_shutdown(
        false,
        |api| api.hold(Hold::Lists),
        // Every watch of the term has asked for its list.
        |api, _| api.reads_waiting() >= 10,
    )
    .await;
    assert_eq!(outcome, Ok(()));
}

#[tokio::test]
async fn shutdown_while_running_is_heard() {
    let (_, outcome) = returns_within_a_second_of_shutdown(
        false,
        |api| {
            api.create(
                "/apis/certkeeper.io/v1/certificates",
                to_json(&certificate("web", "missing", &["web.apps.svc"])),
            )
        },
        |_, requests| {
            saw(
                requests,
                "PATCH /apis/certkeeper.io/v1/namespaces/apps/certificates/web/status",
            )
        },
    )
    .await;
    assert_eq!(outcome, Ok(()));
}

#[tokio::test]
async fn shutdown_while_the_lease_is_being_read_is_heard() {
    let (_, outcome) = returns_within_a_second_of_shutdown(
        true,
        |api| {
            api.create(LEASES, lease(None));
            api.hold(Hold::Reads);
        },
        |api, _| api.reads_waiting() >= 1,
    )
    .await;
    assert_eq!(outcome, Ok(()));
}

#[tokio::test]
async fn shutdown_of_a_standby_is_heard() {
    let (_, outcome) = returns_within_a_second_of_shutdown(
        true,
        |api| api.create(LEASES, lease(Some("the-other-replica"))),
        |_, requests| {
            saw(
                requests,
                &format!(
                    "GET /apis/coordination.k8s.io/v1/namespaces/{CLUSTER_RESOURCE_NAMESPACE}/leases/{LEASE}"
                ),
            )
        },
    )
    .await;
    assert_eq!(outcome, Ok(()));
}

/// The leader is listing (the API server slow to answer) when asked to stop: it stops within
/// a second and releases the Lease, so a standby takes over at once.
#[tokio::test]
async fn shutdown_of_a_leader_still_listing_is_heard_and_releases_the_lease() {
    let (api, outcome) = returns_within_a_second_of_shutdown(
        true,
        |api| {
            api.create(LEASES, lease(None));
            api.hold(Hold::Lists);
        },
        |api, _| {
            api.reads_waiting() >= 10
                && api
                    .object(LEASES, LEASE)
                    .is_some_and(|l| l["spec"]["holderIdentity"].is_string())
        },
    )
    .await;
    assert_eq!(outcome, Ok(()));
    let lease = api.object(LEASES, LEASE).unwrap();
    assert_eq!(
        lease["spec"].get("holderIdentity"),
        None,
        "the Lease was not released: {lease}"
    );
}
