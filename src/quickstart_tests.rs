//! The quickstart (manifests/examples/) against the whole controller (`runner::run`) and the
//! in-memory API server, with its objects applied in the first second after the start, as a
//! new user's `kubectl apply -k` does. The CA Secret the Certificate `root-ca` writes must wake
//! the Issuer `root-ca` however its watch event and the reads of it race (issue 24): the
//! event arriving after a Certificate read the Secret, the Secret first seen in the watch's
//! initial list, or already there when the controller starts. Every Certificate and Issuer
//! turns Ready, and no Certificate is signed by an issuer whose status did not say Ready.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::runner::run;
use crate::testing::api_server::{InMemoryApiServer, ObjectId, id_of};
use crate::testing::{ca_secret, to_json};

const NAMESPACE: &str = "certkeeper-demo";
/// How long the quickstart may take to converge (it takes a few seconds).
const CONVERGED_WITHIN: Duration = Duration::from_secs(30);

/// The quickstart's objects, in the order `kubectl apply -k manifests/examples/` applies them.
fn quickstart() -> Vec<Value> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/examples");
    let files = [
        "namespace.yaml",
        "01-selfsigned-issuer.yaml",
        "02-root-ca.yaml",
        "03-intermediate-ca.yaml",
        "04-services.yaml",
    ];
    let mut objects = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let object = Value::deserialize(document).unwrap();
            if !object.is_null() {
                objects.push(object);
            }
        }
    }
    objects
}

fn is(object: &Value, kind: &str, name: &str) -> bool {
    object["kind"] == kind && object["metadata"]["name"] == name
}

fn id(resource: &str, name: &str) -> ObjectId {
    let group = match resource {
        "secrets" => "",
        _ => crate::api::GROUP,
    };
    (group.into(), resource.into(), NAMESPACE.into(), name.into())
}

fn ready(object: &Value) -> bool {
    object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Starts the controller against `server`.
async fn start(server: &InMemoryApiServer) -> tokio::task::JoinHandle<()> {
    let settings = crate::testing::controller_settings();
    let endpoint = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pki = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = server.client();
    tokio::spawn(async move {
        // Never asked to stop: the test aborts the task.
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        let _ = run(client, settings, endpoint, pki, shutdown).await;
    })
}

/// Waits until `done` holds of the server, panicking with `what` and the objects' statuses
/// after `within`.
async fn wait_until(
    server: &InMemoryApiServer,
    what: &str,
    within: Duration,
    done: impl Fn(&InMemoryApiServer) -> bool,
) {
    let waited = tokio::time::timeout(within, async {
        while !done(server) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    if waited.await.is_err() {
        let statuses: Vec<String> = ["issuers", "certificates"]
            .iter()
            .flat_map(|resource| {
                quickstart()
                    .into_iter()
                    .filter(|o| id_of(o).1 == *resource)
                    .map(|o| id_of(&o).3)
                    .map(|name| {
                        let status = server.get(&id(resource, &name)).map(|o| o["status"].clone());
                        format!("{resource}/{name}: {}", status.unwrap_or_default())
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        panic!(
            "timed out after {within:?} waiting for {what}:\n{}",
            statuses.join("\n")
        );
    }
}

/// Every Certificate and Issuer of the quickstart is Ready.
fn all_ready(server: &InMemoryApiServer) -> bool {
    quickstart()
        .iter()
        .filter(|o| o["kind"] == "Certificate" || o["kind"] == "Issuer")
        .all(|o| server.get(&id_of(o)).is_some_and(|o| ready(&o)))
}

/// The version at which `issuer` first said Ready, and at which `secret` was first written:
/// the second must come after the first.
fn assert_signed_only_once_ready(server: &InMemoryApiServer, issuer: &str, secret: &str) {
    let changes = server.changes();
    let ready_at = changes
        .iter()
        .find(|c| c.id == id("issuers", issuer) && c.after.as_ref().is_some_and(ready))
        .map(|c| c.version);
    let written_at = changes
        .iter()
        .find(|c| c.id == id("secrets", secret) && c.after.is_some())
        .map(|c| c.version);
    match (ready_at, written_at) {
        (Some(ready), Some(written)) => assert!(
            written > ready,
            "Secret {secret} was signed (version {written}) before Issuer {issuer} said Ready (version {ready})"
        ),
        _ => panic!("Issuer {issuer} Ready at {ready_at:?}, Secret {secret} written at {written_at:?}"),
    }
}

fn assert_converged_in_order(server: &InMemoryApiServer) {
    assert_signed_only_once_ready(server, "root-ca", "intermediate-ca");
    assert_signed_only_once_ready(server, "intermediate-ca", "frontend-tls");
    assert_signed_only_once_ready(server, "intermediate-ca", "backend-tls");
}

/// Applies the quickstart with the Issuer `root-ca` judged (SecretNotFound) before the
/// Certificate `root-ca` writes its Secret, and the Certificate `intermediate-ca` applied the
/// moment that Secret exists: it reads the Secret before the Issuer's watch shows it.
async fn apply_racing_the_ca_secret(server: &InMemoryApiServer) -> usize {
    let objects = quickstart();
    let (root, intermediate) = (
        |o: &Value| is(o, "Certificate", "root-ca"),
        |o: &Value| is(o, "Certificate", "intermediate-ca"),
    );
    for object in objects.iter().filter(|o| !root(o) && !intermediate(o)) {
        server.put(object.clone());
    }
    wait_until(server, "Issuer root-ca judged", Duration::from_secs(10), |s| {
        s.get(&id("issuers", "root-ca"))
            .is_some_and(|o| !o["status"]["conditions"].is_null())
    })
    .await;
    server.put(objects.iter().find(|o| root(o)).unwrap().clone());
    wait_until(server, "Secret root-ca", Duration::from_secs(10), |s| {
        s.get(&id("secrets", "root-ca")).is_some()
    })
    .await;
    let requests_before = server.requests().len();
    server.put(objects.iter().find(|o| intermediate(o)).unwrap().clone());
    requests_before
}

#[tokio::test]
async fn quickstart_converges_when_the_ca_secret_event_comes_after_a_certificate_read_it() {
    let server = InMemoryApiServer::default();
    // The watch cache lags behind the reads: Secret events arrive a second late.
    server.lag_watches("secrets", Duration::from_secs(1));
    let controller = start(&server).await;
    apply_racing_the_ca_secret(&server).await;
    wait_until(
        &server,
        "every Certificate and Issuer Ready",
        CONVERGED_WITHIN,
        all_ready,
    )
    .await;
    assert_converged_in_order(&server);
    controller.abort();
}

#[tokio::test]
async fn quickstart_converges_when_the_ca_secret_is_first_seen_in_the_watchs_initial_list() {
    let server = InMemoryApiServer::default();
    // The issuers' CA Secret watch (TLS Secrets) lists only once a Certificate has read the
    // Secret: it first shows it in its initial list.
    let held = server.hold_lists("secrets", "fieldSelector=type");
    let controller = start(&server).await;
    let from = apply_racing_the_ca_secret(&server).await;
    let read = "GET /api/v1/namespaces/certkeeper-demo/secrets/root-ca";
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while !server.requests()[from..].iter().any(|r| r == read) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    held.release();
    wait_until(
        &server,
        "every Certificate and Issuer Ready",
        CONVERGED_WITHIN,
        all_ready,
    )
    .await;
    assert_converged_in_order(&server);
    controller.abort();
}

#[tokio::test]
async fn quickstart_converges_when_the_ca_secret_is_there_before_the_issuers_are_listed() {
    let server = InMemoryApiServer::default();
    // A restart: the root CA was issued by an earlier run; the Issuer's status still says
    // what that run last found. Its Secret is listed before the issuers are.
    let held = server.hold_lists("issuers", "");
    for object in quickstart() {
        let mut object = object;
        if is(&object, "Issuer", "root-ca") {
            object["status"] = json!({"conditions": [{
                "type": "Ready", "status": "False", "reason": "SecretNotFound",
                "message": "Secret certkeeper-demo/root-ca does not exist", "observedGeneration": 1,
                "lastTransitionTime": "2026-11-23T10:00:00Z"}]});
        }
        server.put(object);
    }
    let now = jiff::Timestamp::now();
    let root = ca_secret(
        "root-ca",
        NAMESPACE,
        "root",
        now - jiff::SignedDuration::from_hours(1),
        365,
    );
    server.put(to_json(&root));
    let controller = start(&server).await;
    wait_until(
        &server,
        "the CA Secret watch listed",
        Duration::from_secs(10),
        |s| s.requests().iter().any(|r| r == "GET /api/v1/secrets"),
    )
    .await;
    held.release();
    wait_until(
        &server,
        "every Certificate and Issuer Ready",
        CONVERGED_WITHIN,
        all_ready,
    )
    .await;
    assert_converged_in_order(&server);
    controller.abort();
}
