//! Revocation, as the Certificate controller does it against the mocked API server: the revoke
//! annotation writes the record first and re-issues with a new key; a record written by anyone
//! for the serial in the Secret re-issues it; a restarted controller answers a request once.

use std::sync::Arc;

use super::schedule::Next;
use http::Method;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use serde_json::Value;

use super::reconcile::reconcile;
use crate::api::{
    Certificate, CertificateRevocation, CertificateRevocationSpec, IssuerRef, PrivateKeyRotationPolicy,
};
use crate::context::Context;
use crate::pki::parse_certificate_chain;
use crate::testing::*;

const NOW: &str = "2026-11-23T10:00:00Z";
const REQUESTED: &str = "2026-11-23T10:30:00Z";
const CA_SECRET_PATH: &str = "/api/v1/namespaces/apps/secrets/root-ca";
const SECRET_PATH: &str = "/api/v1/namespaces/apps/secrets/web-tls";
const STATUS_PATH: &str = "/apis/certkeeper.io/v1/namespaces/apps/certificates/web/status";
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/apps/events";
const RECORDS_PATH: &str = "/apis/certkeeper.io/v1/namespaces/apps/certificaterevocations";

fn leaf_of(secret: &Value) -> crate::pki::CertificateInfo {
    parse_certificate_chain(&secret_data(secret, "tls.crt"))
        .unwrap()
        .remove(0)
}

/// A context under the CA Issuer `ca` whose record cache is `records`.
fn under_ca(
    records: &Writer<DeserializeGuard<CertificateRevocation>>,
    at: Timestamp,
) -> (Arc<Context>, ApiServer) {
    context_with_records(
        vec![ca_issuer("ca", "root-ca")],
        vec![],
        records.as_reader(),
        Arc::new(move || at),
    )
}

fn add(records: &mut Writer<DeserializeGuard<CertificateRevocation>>, record: CertificateRevocation) {
    records.apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(record))));
}

/// The writes of an issuance: Secret, status, then the Events (returned by reason).
async fn expect_issuance(
    api: &mut ApiServer,
    cert: &Certificate,
    events: usize,
) -> (Value, Value, Vec<Value>) {
    let apply = api.expect(Method::PATCH, SECRET_PATH).await;
    let secret = apply.body.clone();
    apply.echo();
    let status = answer_status(api.expect(Method::PATCH, STATUS_PATH).await, cert);
    let mut published = Vec::new();
    for _ in 0..events {
        let event = api.expect(Method::POST, EVENTS_PATH).await;
        published.push(event.body.clone());
        event.echo();
    }
    (secret, status, published)
}

/// `web` issued at NOW under `ca` (rotationPolicy Never, so only revocation changes the key).
async fn issued(ca: &Secret) -> (Certificate, Value) {
    let mut cert = certificate("web", "ca", &["web.apps.svc"]);
    cert.spec.private_key = Some(crate::api::PrivateKeySpec {
        rotation_policy: Some(PrivateKeyRotationPolicy::Never),
        ..Default::default()
    });
    let records = Writer::default();
    let (ctx, mut api) = under_ca(&records, ts(NOW));
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(cert.clone()))),
        ctx.clone(),
    ));
    api.expect(Method::GET, CA_SECRET_PATH).await.ok(to_json(ca));
    let (secret, status, _) = expect_issuance(&mut api, &cert, 1).await;
    task.await.unwrap().unwrap();
    cert.status = Some(serde_json::from_value(status).unwrap());
    (cert, secret)
}

fn annotated(cert: &Certificate, at: &str, reason: Option<&str>) -> Certificate {
    let mut cert = cert.clone();
    let mut annotations =
        std::collections::BTreeMap::from([("certkeeper.io/revoke-requested-at".to_owned(), at.to_owned())]);
    if let Some(reason) = reason {
        annotations.insert("certkeeper.io/revocation-reason".into(), reason.into());
    }
    cert.metadata.annotations = Some(annotations);
    cert
}

#[tokio::test]
async fn revoke_annotation_records_the_serial_first_then_reissues_with_a_new_key() {
    let ca = root_ca(ts(NOW));
    let (cert, secret) = issued(&ca).await;
    let old = leaf_of(&secret);
    let cert = annotated(&cert, REQUESTED, Some("keyCompromise"));

    let records = Writer::default();
    let (ctx, mut api) = under_ca(&records, ts(NOW) + SignedDuration::from_hours(1));
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(cert.clone()))),
        ctx.clone(),
    ));
    api.expect(Method::GET, CA_SECRET_PATH).await.ok(to_json(&ca));
    api.expect(Method::GET, SECRET_PATH).await.ok(secret.clone());
    // The record, server-side applied before anything is issued.
    let name = format!("ca-{}", old.serial_hex);
    let record = api.expect(Method::PATCH, &format!("{RECORDS_PATH}/{name}")).await;
    assert!(
        record.query.contains("fieldManager=certkeeper"),
        "{}",
        record.query
    );
    let body = record.body.clone();
    record.echo();
    assert_eq!(body["apiVersion"], "certkeeper.io/v1");
    assert_eq!(body["kind"], "CertificateRevocation");
    assert_eq!(body["metadata"]["namespace"], "apps");
    assert_eq!(
        body["metadata"]["annotations"]["certkeeper.io/certificate"],
        "apps/web"
    );
    assert!(
        body["metadata"].get("ownerReferences").is_none(),
        "records outlive Certificates"
    );
    assert_eq!(
        body["spec"],
        serde_json::json!({
            "issuerRef": {"name": "ca", "kind": "Issuer", "group": "certkeeper.io"},
            "serialNumber": old.serial_hex,
            "reason": "keyCompromise",
            "revokedAt": REQUESTED,
        })
    );
    let (again, status, events) = expect_issuance(&mut api, &cert, 2).await;
    finish_reconcile(task, ctx, api).await;

    let new = leaf_of(&again);
    assert_ne!(new.serial_hex, old.serial_hex);
    assert_ne!(
        secret_data(&again, "tls.key"),
        secret_data(&secret, "tls.key"),
        "a revoked certificate's key is not used again, even with rotationPolicy Never"
    );
    assert_eq!(status["revision"], 2);
    assert_eq!(events[0]["reason"], "Revoked");
    assert_eq!(events[0]["type"], "Normal");
    let note = events[0]["note"].as_str().unwrap();
    assert!(
        note.contains(&old.serial_hex) && note.contains("keyCompromise"),
        "{note}"
    );
    assert_eq!(events[1]["reason"], "Renewed");
    assert!(events[1]["note"].as_str().unwrap().contains("Revoked"));
}

#[tokio::test]
async fn a_declarative_record_for_the_serial_in_the_secret_reissues_it() {
    let ca = root_ca(ts(NOW));
    let (cert, secret) = issued(&ca).await;
    let old = leaf_of(&secret);
    // Written by someone else (GitOps), with colons and upper case, no time and no reason.
    let spaced: Vec<String> = old
        .serial_hex
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).into_owned())
        .collect();
    let mut record = CertificateRevocation::new(
        "leaked",
        CertificateRevocationSpec {
            issuer_ref: IssuerRef {
                name: "ca".into(),
                kind: None,
                group: None,
            },
            serial_number: spaced.join(":"),
            reason: None,
            revoked_at: None,
        },
    );
    record.metadata.namespace = Some(NAMESPACE.into());
    record.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        ts(NOW) + SignedDuration::from_mins(10),
    ));
    let mut records = Writer::default();
    add(&mut records, record);

    let (ctx, mut api) = under_ca(&records, ts(NOW) + SignedDuration::from_hours(1));
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(cert.clone()))),
        ctx.clone(),
    ));
    api.expect(Method::GET, CA_SECRET_PATH).await.ok(to_json(&ca));
    api.expect(Method::GET, SECRET_PATH).await.ok(secret.clone());
    // No record to write: the Secret is re-issued at once.
    let (again, _, events) = expect_issuance(&mut api, &cert, 2).await;
    finish_reconcile(task, ctx, api).await;
    assert_ne!(leaf_of(&again).serial_hex, old.serial_hex);
    assert_ne!(secret_data(&again, "tls.key"), secret_data(&secret, "tls.key"));
    assert_eq!(events[0]["reason"], "Revoked");
    assert!(events[0]["note"].as_str().unwrap().contains("unspecified"));
}

#[tokio::test]
async fn after_a_restart_an_answered_request_revokes_nothing_more() {
    let ca = root_ca(ts(NOW));
    let (cert, secret) = issued(&ca).await;
    let cert = annotated(&cert, REQUESTED, None);
    let later = ts(NOW) + SignedDuration::from_hours(1);

    // The first controller records and re-issues.
    let mut records = Writer::default();
    let (ctx, mut api) = under_ca(&records, later);
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(cert.clone()))),
        ctx.clone(),
    ));
    api.expect(Method::GET, CA_SECRET_PATH).await.ok(to_json(&ca));
    api.expect(Method::GET, SECRET_PATH).await.ok(secret.clone());
    let record = api
        .expect(
            Method::PATCH,
            &format!("{RECORDS_PATH}/ca-{}", leaf_of(&secret).serial_hex),
        )
        .await;
    let written: CertificateRevocation = serde_json::from_value(record.body.clone()).unwrap();
    record.echo();
    let (again, status, _) = expect_issuance(&mut api, &cert, 2).await;
    finish_reconcile(task, ctx, api).await;

    // A fresh controller (its watch lists the record) at a later instant: the Secret holds the
    // re-issued certificate and the request is answered; nothing is written.
    add(&mut records, written);
    let mut cert = cert;
    cert.status = Some(serde_json::from_value(status).unwrap());
    let (ctx, mut api) = under_ca(&records, later + SignedDuration::from_mins(5));
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(cert.clone()))),
        ctx.clone(),
    ));
    api.expect(Method::GET, CA_SECRET_PATH).await.ok(to_json(&ca));
    api.expect(Method::GET, SECRET_PATH).await.ok(again.clone());
    finish_reconcile(task, ctx, api).await;
}

#[tokio::test]
async fn a_revoke_request_in_the_future_waits_for_its_time() {
    let ca = root_ca(ts(NOW));
    let (cert, secret) = issued(&ca).await;
    let at = ts(NOW) + SignedDuration::from_hours(2);
    // The status is as the issuance wrote it: nothing to report but the time to look again.
    let cert = annotated(&cert, &at.to_string(), None);
    let records = Writer::default();
    let (ctx, mut api) = under_ca(&records, ts(NOW) + SignedDuration::from_hours(1));
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(cert.clone()))),
        ctx.clone(),
    ));
    api.expect(Method::GET, CA_SECRET_PATH).await.ok(to_json(&ca));
    api.expect(Method::GET, SECRET_PATH).await.ok(secret.clone());
    let action = finish_reconcile(task, ctx, api).await;
    assert_eq!(action, Next::requeue(std::time::Duration::from_secs(3601)));
}

#[tokio::test]
async fn a_cluster_issuers_record_lives_in_the_cluster_resource_namespace() {
    let ca = ca_secret(
        "root-ca",
        CLUSTER_RESOURCE_NAMESPACE,
        "root",
        ts(NOW) - SignedDuration::from_hours(1),
        30,
    );
    let mut cert = certificate("web", "cluster-ca", &["web.apps.svc"]);
    cert.spec.issuer_ref.kind = Some("ClusterIssuer".into());
    let ca_path = "/api/v1/namespaces/certkeeper-system/secrets/root-ca";
    let cluster = || vec![ca_cluster_issuer("cluster-ca", "root-ca")];

    let records = Writer::default();
    let at = ts(NOW);
    let (ctx, mut api) = context_with_records(vec![], cluster(), records.as_reader(), Arc::new(move || at));
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(cert.clone()))),
        ctx.clone(),
    ));
    api.expect(Method::GET, ca_path).await.ok(to_json(&ca));
    let (secret, _, _) = expect_issuance(&mut api, &cert, 1).await;
    finish_reconcile(task, ctx, api).await;
    let serial = leaf_of(&secret).serial_hex;

    let cert = annotated(&cert, REQUESTED, Some("superseded"));
    let later = ts(NOW) + SignedDuration::from_hours(1);
    let (ctx, mut api) =
        context_with_records(vec![], cluster(), records.as_reader(), Arc::new(move || later));
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(cert.clone()))),
        ctx.clone(),
    ));
    api.expect(Method::GET, ca_path).await.ok(to_json(&ca));
    api.expect(Method::GET, SECRET_PATH).await.ok(secret.clone());
    let record = api
        .expect(
            Method::PATCH,
            &format!(
                "/apis/certkeeper.io/v1/namespaces/certkeeper-system/certificaterevocations/clusterissuer-cluster-ca-{serial}"
            ),
        )
        .await;
    assert_eq!(record.body["spec"]["issuerRef"]["kind"], "ClusterIssuer");
    assert_eq!(record.body["spec"]["reason"], "superseded");
    assert_eq!(
        record.body["metadata"]["annotations"]["certkeeper.io/certificate"],
        "apps/web"
    );
    record.echo();
    expect_issuance(&mut api, &cert, 2).await;
    finish_reconcile(task, ctx, api).await;
}

#[tokio::test]
async fn an_unreadable_revoke_request_revokes_nothing_and_says_why() {
    let ca = root_ca(ts(NOW));
    let (cert, secret) = issued(&ca).await;
    let cert = annotated(&cert, "yesterday", Some("keyCompromise"));
    let records = Writer::default();
    let (ctx, mut api) = under_ca(&records, ts(NOW) + SignedDuration::from_hours(1));
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(cert.clone()))),
        ctx.clone(),
    ));
    api.expect(Method::GET, CA_SECRET_PATH).await.ok(to_json(&ca));
    let event = api.expect(Method::POST, EVENTS_PATH).await;
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["reason"], "InvalidRevokeRequest");
    assert!(event.body["note"].as_str().unwrap().contains("yesterday"));
    event.echo();
    api.expect(Method::GET, SECRET_PATH).await.ok(secret);
    finish_reconcile(task, ctx, api).await;
}
