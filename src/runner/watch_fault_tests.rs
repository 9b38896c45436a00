//! Watch faults, with kube's real watcher over a scripted API server that answers as
//! kube-apiserver does: a watch that ends, a watch whose connection breaks, and a watch
//! expired with 410 Gone (an ERROR event, as the API server sends it). The watcher watches
//! again, or re-lists; what changed in the gap wakes its Certificate (a Secret deleted while
//! nobody watched too), and what did not (a re-list repeats every object) wakes nobody, so
//! nothing is re-issued.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use http::{Method, Response, StatusCode};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::client::Body;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;
use serde_json::{Value, json};

use super::watches::{Watches, to_look_at};
use crate::certificate::secret::{LABEL_CERTIFICATE_NAME, certificate_of};
use crate::certificate::verdict::Verdict;
use crate::cluster::WatchedCache;
use crate::testing::{Handle, mock_client};

fn secret(name: &str, version: &str) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
           "metadata": {"name": format!("{name}-tls"), "namespace": "apps", "resourceVersion": version,
                        "labels": {LABEL_CERTIFICATE_NAME: name}}})
}

fn list(items: Vec<Value>, version: &str) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList",
                               "metadata": {"resourceVersion": version}, "items": items}),
    )
    .unwrap()
}

fn watch_events(events: &[(&str, Value)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (kind, object) in events {
        body.extend(serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap());
        body.push(b'\n');
    }
    body
}

fn gone() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired",
           "code": 410, "message": "too old resource version"})
}

/// One scripted answer: for a list or a watch request, in order.
enum Answer {
    List(Vec<u8>),
    /// A watch that sends these bytes and ends.
    Watch(Vec<u8>),
    /// A watch whose connection breaks before it answers.
    WatchBroken,
    /// A watch held open, quiet.
    Hold,
}

/// Answers requests in order from `script`, checking each is the list or watch expected.
fn serve(mut handle: Handle, script: Vec<Answer>) {
    tokio::spawn(async move {
        let mut held = Vec::new();
        for answer in script {
            let Some((request, send)) = handle.next_request().await else {
                return;
            };
            let watching = request.uri().query().unwrap_or_default().contains("watch=true");
            assert_eq!(request.method(), Method::GET);
            let (status, body) = match answer {
                Answer::List(body) => {
                    assert!(!watching, "expected a list, got {}", request.uri());
                    (StatusCode::OK, body)
                }
                Answer::Watch(body) => {
                    assert!(watching, "expected a watch, got {}", request.uri());
                    (StatusCode::OK, body)
                }
                Answer::WatchBroken => {
                    assert!(watching, "expected a watch, got {}", request.uri());
                    drop(send);
                    continue;
                }
                Answer::Hold => {
                    assert!(watching, "expected a watch, got {}", request.uri());
                    held.push(send);
                    continue;
                }
            };
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = status;
            send.send_response(response);
        }
        // Anything more is a further watch: hold it open.
        while let Some((_, send)) = handle.next_request().await {
            held.push(send);
        }
    });
}

/// The verdicts of Certificates `a` and `b`, reached on their Secrets at versions 10 and 11.
fn verdicts() -> Arc<WatchedCache<Verdict>> {
    let verdicts: Arc<WatchedCache<Verdict>> = Arc::default();
    for (name, version) in [("a", "10"), ("b", "11")] {
        let key = ("apps".to_owned(), name.to_owned());
        let token = verdicts.begin(&key);
        let facts = crate::certificate::status::IssuedFacts {
            not_before: crate::testing::ts("2026-11-23T10:00:00Z"),
            not_after: crate::testing::ts("2026-11-24T10:00:00Z"),
            renewal_time: crate::testing::ts("2026-11-24T02:00:00Z"),
            serial_hex: "01".into(),
            revision: 1,
        };
        let verdict = Verdict {
            uid: crate::certificate::verdict::uid_hash(&format!("uid-{name}")),
            generation: Some(1),
            renew_requested_at: None,
            revoke_requested_at: None,
            requests_due_at: None,
            signer: None,
            ca_pem: None,
            gate: crate::issuer::rotation::RotationGate::Now,
            under_current_ca: true,
            reissue_at: None,
            facts,
            status_written: None,
        };
        assert!(verdicts.insert(&key, token, version, verdict));
    }
    verdicts
}

/// The Certificates the Secret watch wakes, in order, until it has woken `count` (or 5 s pass).
async fn woken(script: Vec<Answer>, verdicts: Arc<WatchedCache<Verdict>>, count: usize) -> Vec<String> {
    let (client, handle) = mock_client();
    serve(handle, script);
    let watches = Watches {
        client: client.clone(),
        readiness: Arc::default(),
        metrics: Arc::new(crate::testing::metrics(vec![], vec![], vec![])),
    };
    let events = watches.watch(
        "certificate secrets",
        Api::<PartialObjectMeta<Secret>>::all(client),
        watcher::Config::default().labels(LABEL_CERTIFICATE_NAME),
    );
    let observer = verdicts.clone();
    let changes = to_look_at(events, move |event| observer.observe(event, certificate_of))
        .map(|(_, name)| name)
        .take(count)
        .collect::<Vec<_>>();
    tokio::time::timeout(Duration::from_secs(5), changes)
        .await
        .unwrap_or_default()
}

#[tokio::test]
async fn a_watch_that_ends_is_watched_again_and_misses_nothing() {
    let script = vec![
        Answer::List(list(vec![secret("a", "10"), secret("b", "11")], "11")),
        // The watch delivers b's new version, then the server ends it.
        Answer::Watch(watch_events(&[("MODIFIED", secret("b", "12"))])),
        // Watched again from there: a changes.
        Answer::Watch(watch_events(&[("MODIFIED", secret("a", "13"))])),
        Answer::Hold,
    ];
    // The initial list repeats what the verdicts hold: nobody is woken by it.
    assert_eq!(woken(script, verdicts(), 2).await, ["b", "a"]);
}

#[tokio::test]
async fn a_watch_expired_by_an_error_event_relists_and_wakes_only_what_changed() {
    let script = vec![
        Answer::List(list(vec![secret("a", "10"), secret("b", "11")], "11")),
        Answer::Watch(watch_events(&[("ERROR", gone())])),
        // Re-listed: b changed while nobody watched, a did not.
        Answer::List(list(vec![secret("a", "10"), secret("b", "14")], "14")),
        Answer::Hold,
    ];
    let verdicts = verdicts();
    assert_eq!(woken(script, verdicts.clone(), 1).await, ["b"]);
    // a's verdict survived the re-list: its reconcile still reads nothing.
    assert!(verdicts.get(&("apps".into(), "a".into())).is_some());
    assert!(verdicts.get(&("apps".into(), "b".into())).is_none());
}

#[tokio::test]
async fn a_broken_watch_is_watched_again_from_where_it_was() {
    let script = vec![
        Answer::List(list(vec![secret("a", "10"), secret("b", "11")], "11")),
        Answer::WatchBroken,
        // Watched again from version 11: the API server replays b's deletion.
        Answer::Watch(watch_events(&[("DELETED", secret("b", "15"))])),
        Answer::Hold,
    ];
    let verdicts = verdicts();
    assert_eq!(woken(script, verdicts.clone(), 1).await, ["b"]);
    assert!(verdicts.get(&("apps".into(), "a".into())).is_some());
}

#[tokio::test]
async fn a_secret_deleted_while_the_watch_was_expired_wakes_its_certificate() {
    let script = vec![
        Answer::List(list(vec![secret("a", "10"), secret("b", "11")], "11")),
        Answer::Watch(watch_events(&[("ERROR", gone())])),
        // Re-listed: b's Secret was deleted while nobody watched; no event says so.
        Answer::List(list(vec![secret("a", "10")], "15")),
        Answer::Hold,
    ];
    let verdicts = verdicts();
    assert_eq!(woken(script, verdicts.clone(), 1).await, ["b"]);
    assert!(verdicts.get(&("apps".into(), "b".into())).is_none());
    assert!(verdicts.get(&("apps".into(), "a".into())).is_some());
}
