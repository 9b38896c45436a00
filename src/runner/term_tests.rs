//! A leadership term as it runs against an API server: the controllers with their real caches
//! and every watch, over stand-ins that list and hold watches open.

use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::sync::watch;

use super::idle_caches;
use super::term::Term;
use crate::revocation::PkiEndpoint;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::server::Readiness;
use crate::testing::{CLUSTER_RESOURCE_NAMESPACE, certificate};

/// One leadership term over `client`, at the fixed time `now`, with default settings; its
/// readiness, and the sender that would shut it down.
pub(super) fn test_term(client: Client, now: jiff::Timestamp) -> (Term, Arc<Readiness>, watch::Sender<bool>) {
    let readiness = Arc::new(Readiness::default());
    let clock: crate::context::Clock = Arc::new(move || now);
    let (stop, shutdown) = watch::channel(false);
    let term = Term {
        client,
        settings: crate::testing::controller_settings(),
        cluster_resource_namespace: CLUSTER_RESOURCE_NAMESPACE.into(),
        readiness: readiness.clone(),
        metrics: Arc::new(Metrics::new(idle_caches(clock.clone()))),
        clock,
        shutdown,
        pki: PkiEndpoint::default(),
    };
    (term, readiness, stop)
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

/// A leadership term against a stand-in API server that lists one Bundle (inline PEM) and
/// one namespace: once its caches have listed, the Bundle controller writes the target.
#[tokio::test]
async fn a_leader_writes_a_bundle_into_a_listed_namespace() {
    use crate::testing::{ca_secret, mock_client, serve_lists, ts};
    let (client, handle) = mock_client();
    let now = ts("2026-11-23T10:00:00Z");
    let root = ca_secret("x", "x", "root", now - jiff::SignedDuration::from_hours(24), 365);
    let pem = String::from_utf8(root.data.unwrap()["ca.crt"].0.clone()).unwrap();
    let trust = serde_json::json!({
        "apiVersion": "certkeeper.io/v1", "kind": "Bundle",
        "metadata": {"name": "trust", "uid": "uid-trust", "generation": 1},
        "spec": {"sources": [{"inLine": pem}], "target": {"configMap": {"key": "ca.crt"}}},
    });
    let namespace = serde_json::json!({
        "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
        "metadata": {"name": "apps", "resourceVersion": "1"},
    });
    let items = [
        ("/apis/certkeeper.io/v1/bundles".to_owned(), vec![trust]),
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

use super::stand_in::{Fault, StandIn};
use crate::testing::{ca_cluster_issuer, ca_issuer, ca_secret, mock_client, to_json, ts};

const NOW: &str = "2026-11-23T10:00:00Z";
const CERTIFICATES: &str = "/apis/certkeeper.io/v1/certificates";
const ISSUERS: &str = "/apis/certkeeper.io/v1/issuers";
const CLUSTER_ISSUERS: &str = "/apis/certkeeper.io/v1/clusterissuers";
const BUNDLES: &str = "/apis/certkeeper.io/v1/bundles";
const REVOCATIONS: &str = "/apis/certkeeper.io/v1/certificaterevocations";
const SECRETS: &str = "/api/v1/secrets";
const CONFIG_MAPS: &str = "/api/v1/configmaps";
const NAMESPACES: &str = "/api/v1/namespaces";

/// Every collection a leadership term watches: each is an input of at least one controller
/// (Secrets of three: the certificate's own, the issuers' CA, the Bundles' targets and sources).
const WATCHED: [&str; 8] = [
    CERTIFICATES,
    ISSUERS,
    CLUSTER_ISSUERS,
    BUNDLES,
    REVOCATIONS,
    SECRETS,
    CONFIG_MAPS,
    NAMESPACES,
];

/// A new object for each controller, the collection it is created in, and the write that
/// shows its controller reconciled it.
fn newcomers() -> Vec<(&'static str, serde_json::Value, &'static str)> {
    let root = ca_secret(
        "x",
        "x",
        "root",
        ts(NOW) - jiff::SignedDuration::from_hours(24),
        365,
    );
    let pem = String::from_utf8(root.data.unwrap()["ca.crt"].0.clone()).unwrap();
    let bundle = serde_json::json!({
        "apiVersion": "certkeeper.io/v1", "kind": "Bundle",
        "metadata": {"name": "fresh-trust", "uid": "uid-fresh-trust", "generation": 1},
        "spec": {"sources": [{"inLine": pem}], "target": {"configMap": {"key": "ca.crt"}}},
    });
    vec![
        (
            CERTIFICATES,
            to_json(&certificate("fresh", "missing", &["fresh.apps.svc"])),
            "PATCH /apis/certkeeper.io/v1/namespaces/apps/certificates/fresh/status",
        ),
        (
            ISSUERS,
            to_json(&ca_issuer("fresh-ca", "absent")),
            "PATCH /apis/certkeeper.io/v1/namespaces/apps/issuers/fresh-ca/status",
        ),
        (
            CLUSTER_ISSUERS,
            to_json(&ca_cluster_issuer("fresh-cluster-ca", "absent")),
            "PATCH /apis/certkeeper.io/v1/clusterissuers/fresh-cluster-ca/status",
        ),
        (
            BUNDLES,
            bundle,
            "PATCH /api/v1/namespaces/apps/configmaps/fresh-trust",
        ),
    ]
}

fn namespace(name: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// A term over a stand-in holding the namespace `apps`, ready (every watch listed).
async fn ready_term() -> (
    StandIn,
    tokio::sync::mpsc::UnboundedReceiver<String>,
    Arc<Readiness>,
    watch::Sender<bool>,
) {
    let (client, handle) = mock_client();
    let (api, requests) = StandIn::serve(handle);
    api.create(NAMESPACES, namespace("apps"));
    let (term, readiness, stop) = test_term(client, ts(NOW));
    readiness.lead();
    tokio::spawn(async move { term.lead().await });
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
    (api, requests, readiness, stop)
}

/// Creates every newcomer not in `skip`; the writes that show they were reconciled within
/// `within`, or those that did not come.
async fn reconciled_within(
    api: &StandIn,
    requests: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    skip: &str,
    within: Duration,
) -> Result<(), Vec<&'static str>> {
    let mut expected: Vec<&'static str> = Vec::new();
    for (collection, object, write) in newcomers() {
        if collection != skip {
            api.create(collection, object);
            expected.push(write);
        }
    }
    let all = async {
        while !expected.is_empty() {
            match requests.recv().await {
                Some(request) => expected.retain(|w| *w != request),
                None => break,
            }
        }
    };
    let _ = tokio::time::timeout(within, all).await;
    match expected.is_empty() {
        true => Ok(()),
        false => Err(expected),
    }
}

/// One collection's watches keep failing with `fault` (each has failed several times):
/// objects created meanwhile for every controller (but the one whose own watch fails) are
/// reconciled within 2 s, as if nothing failed. /readyz says which watch cannot serve its
/// cache while a watch cannot even start (refused, forbidden); a watch expiring (410) lists
/// again at once and is no cause.
async fn a_failing_watch_slows_no_other_input(fault: Fault) {
    let runs = WATCHED.map(|collection| async move {
        let (api, mut requests, readiness, _stop) = ready_term().await;
        api.fail_watches(collection, fault);
        // Long enough for kube's default trigger backoff to have paused a controller for
        // longer than the 2 s allowed below (0.8 s doubling, with each error).
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(
            api.faults_served(collection) >= 3,
            "{collection}: too few faults served"
        );
        while requests.try_recv().is_ok() {}
        let outcome = reconciled_within(&api, &mut requests, collection, Duration::from_secs(2)).await;
        let ready = readiness.check();
        (collection, outcome, ready)
    });
    let mut failures = Vec::new();
    for (collection, outcome, ready) in futures::future::join_all(runs).await {
        if let Err(missing) = outcome {
            failures.push(format!(
                "{fault:?} on every watch of {collection}: not reconciled within 2 s: {missing:?}"
            ));
        }
        match fault {
            Fault::Gone if ready.is_err() => failures.push(format!("{collection}: not ready: {ready:?}")),
            Fault::Refused | Fault::Forbidden
                if !ready.as_ref().is_err_and(|why| why.contains("cannot list")) =>
            {
                failures.push(format!("{fault:?} on {collection}: /readyz says {ready:?}"))
            }
            _ => {}
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_expiring_again_and_again_slow_no_other_input() {
    a_failing_watch_slows_no_other_input(Fault::Gone).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_refused_again_and_again_slow_no_other_input() {
    a_failing_watch_slows_no_other_input(Fault::Refused).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_forbidden_again_and_again_slow_no_other_input() {
    a_failing_watch_slows_no_other_input(Fault::Forbidden).await;
}

/// The API server restarts: every watch resuming from before gets 410, the open ones as their
/// connections notice, over 3 s. Objects created once it is back are reconciled within 20 s.
#[tokio::test]
async fn after_an_api_server_restart_new_objects_are_reconciled_within_20_s() {
    let (api, mut requests, readiness, _stop) = ready_term().await;
    api.restart(Duration::from_millis(150));
    tokio::time::sleep(Duration::from_millis(200)).await;
    while requests.try_recv().is_ok() {}
    let outcome = reconciled_within(&api, &mut requests, "", Duration::from_secs(20)).await;
    assert_eq!(
        outcome,
        Ok(()),
        "not reconciled within 20 s of the API server's return"
    );
    // Every watch listed again: nothing keeps /readyz from 200.
    assert_eq!(readiness.check(), Ok(()));
}
