//! The issuer reconciler against a mocked API server.

use std::sync::Arc;

use http::Method;
use jiff::SignedDuration;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use serde_json::Value;

use super::reconcile::reconcile;
use crate::api::{ClusterIssuer, Issuer};
use crate::testing::*;

const NOW: &str = "2026-11-23T10:00:00Z";

fn answer<K: serde::Serialize>(seen: Seen, object: &K) -> Value {
    let status = seen.body["status"].clone();
    let mut json = to_json(object);
    json["status"] = status.clone();
    seen.ok(json);
    status
}

fn ready(status: &Value) -> (String, String) {
    let c = &status["conditions"][0];
    (
        c["status"].as_str().unwrap().into(),
        c["reason"].as_str().unwrap().into(),
    )
}

#[tokio::test]
async fn ca_issuer_with_a_valid_key_pair_is_ready_and_reports_the_ca() {
    let issuer = ca_issuer("ca", "root-ca");
    let ca = ca_secret(
        "root-ca",
        NAMESPACE,
        "root",
        ts(NOW) - SignedDuration::from_hours(1),
        30,
    );
    let (ctx, mut api) = context(vec![], vec![], ts(NOW));
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(issuer.clone()))),
        ctx.clone(),
    ));
    api.expect(Method::GET, "/api/v1/namespaces/apps/secrets/root-ca")
        .await
        .ok(to_json(&ca));
    let status = answer(
        api.expect(
            Method::PATCH,
            "/apis/certkeeper.io/v1/namespaces/apps/issuers/ca/status",
        )
        .await,
        &issuer,
    );
    expect_crl_published(&mut api, NAMESPACE, "ca").await;
    let action = task.await.unwrap().unwrap();
    drop(ctx);
    api.expect_no_more().await;
    assert_eq!(ready(&status), ("True".into(), "KeyPairVerified".into()));
    let not_after = ts(NOW) - SignedDuration::from_hours(1) + SignedDuration::from_hours(24 * 30);
    assert_eq!(status["caNotAfter"], not_after.to_string());
    assert!(status["caFingerprintSHA256"].as_str().unwrap().contains(':'));
    // Woken again when the CRL is half way through its 24 h (before the CA expires).
    assert_eq!(
        action,
        Action::requeue(std::time::Duration::from_secs(12 * 3600 + 1))
    );
}

/// Expects the first publication of the CRL of `issuer`: its ConfigMap is looked for (missing)
/// and server-side applied. Returns the ConfigMap written.
async fn expect_crl_published(api: &mut ApiServer, namespace: &str, issuer: &str) -> Value {
    let path = format!("/api/v1/namespaces/{namespace}/configmaps/{issuer}-crl");
    api.expect(Method::GET, &path).await.not_found();
    let apply = api.expect(Method::PATCH, &path).await;
    let body = apply.body.clone();
    apply.echo();
    assert_eq!(body["apiVersion"], "v1");
    assert_eq!(body["kind"], "ConfigMap");
    body
}

#[tokio::test]
async fn ca_issuer_without_its_secret_is_not_ready_with_a_warning() {
    let issuer = ca_issuer("ca", "missing");
    let (ctx, mut api) = context(vec![], vec![], ts(NOW));
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(issuer.clone()))),
        ctx.clone(),
    ));
    api.expect(Method::GET, "/api/v1/namespaces/apps/secrets/missing")
        .await
        .not_found();
    let status = answer(
        api.expect(
            Method::PATCH,
            "/apis/certkeeper.io/v1/namespaces/apps/issuers/ca/status",
        )
        .await,
        &issuer,
    );
    let event = api
        .expect(Method::POST, "/apis/events.k8s.io/v1/namespaces/apps/events")
        .await;
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["reason"], "SecretNotFound");
    event.echo();
    task.await.unwrap().unwrap();
    drop(ctx);
    api.expect_no_more().await;
    assert_eq!(ready(&status), ("False".into(), "SecretNotFound".into()));
}

#[tokio::test]
async fn expired_ca_is_not_ready() {
    let issuer = ca_issuer("ca", "old-ca");
    let ca = ca_secret(
        "old-ca",
        NAMESPACE,
        "old",
        ts(NOW) - SignedDuration::from_hours(24 * 40),
        30,
    );
    let (ctx, mut api) = context(vec![], vec![], ts(NOW));
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(issuer.clone()))),
        ctx.clone(),
    ));
    api.expect(Method::GET, "/api/v1/namespaces/apps/secrets/old-ca")
        .await
        .ok(to_json(&ca));
    let status = answer(
        api.expect(
            Method::PATCH,
            "/apis/certkeeper.io/v1/namespaces/apps/issuers/ca/status",
        )
        .await,
        &issuer,
    );
    api.expect(Method::POST, "/apis/events.k8s.io/v1/namespaces/apps/events")
        .await
        .echo();
    task.await.unwrap().unwrap();
    assert_eq!(ready(&status), ("False".into(), "Expired".into()));
}

#[tokio::test]
async fn cluster_issuer_reads_only_the_cluster_resource_namespace() {
    let issuer: ClusterIssuer = ca_cluster_issuer("ca", "root-ca");
    let ca = ca_secret(
        "root-ca",
        CLUSTER_RESOURCE_NAMESPACE,
        "root",
        ts(NOW) - SignedDuration::from_hours(1),
        30,
    );
    let (ctx, mut api) = context(vec![], vec![], ts(NOW));
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(issuer.clone()))),
        ctx.clone(),
    ));
    api.expect(
        Method::GET,
        "/api/v1/namespaces/certkeeper-system/secrets/root-ca",
    )
    .await
    .ok(to_json(&ca));
    let status = answer(
        api.expect(Method::PATCH, "/apis/certkeeper.io/v1/clusterissuers/ca/status")
            .await,
        &issuer,
    );
    // Its CRL lives in the cluster-resource namespace too.
    expect_crl_published(&mut api, CLUSTER_RESOURCE_NAMESPACE, "ca").await;
    task.await.unwrap().unwrap();
    assert_eq!(ready(&status), ("True".into(), "KeyPairVerified".into()));
    assert!(
        ctx.pki.issuer("cluster", "ca").is_some(),
        "served under /crl/cluster/ca.crl"
    );
}

#[tokio::test]
async fn unchanged_self_signed_issuer_makes_no_write() {
    let mut issuer: Issuer = self_signed_issuer("self");
    let (ctx, mut api) = context(vec![], vec![], ts(NOW));
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(issuer.clone()))),
        ctx.clone(),
    ));
    let status = answer(
        api.expect(
            Method::PATCH,
            "/apis/certkeeper.io/v1/namespaces/apps/issuers/self/status",
        )
        .await,
        &issuer,
    );
    task.await.unwrap().unwrap();
    drop(ctx);
    api.expect_no_more().await;
    assert_eq!(ready(&status), ("True".into(), "IsReady".into()));

    issuer.status = Some(serde_json::from_value(status).unwrap());
    let (ctx, api) = context(vec![], vec![], ts(NOW) + SignedDuration::from_hours(1));
    let task = tokio::spawn(reconcile(Arc::new(DeserializeGuard(Ok(issuer))), ctx.clone()));
    assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
    drop(ctx);
    api.expect_no_more().await;
}

/// A record revoking `serial` of the Issuer `ca` in NAMESPACE.
fn record(name: &str, serial: &str, at: &str) -> crate::api::CertificateRevocation {
    let mut r = crate::api::CertificateRevocation::new(
        name,
        crate::api::CertificateRevocationSpec {
            issuer_ref: crate::api::IssuerRef {
                name: "ca".into(),
                kind: Some("Issuer".into()),
                group: Some("certkeeper.io".into()),
            },
            serial_number: serial.into(),
            reason: Some(crate::api::RevocationReasonName::KeyCompromise),
            revoked_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ts(at))),
        },
    );
    r.metadata.namespace = Some(NAMESPACE.into());
    r
}

/// The CRL a ConfigMap body holds.
fn crl_of(configmap: &Value) -> crate::revocation::PublishedCrl {
    let cm: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(configmap.clone()).unwrap();
    let der = &cm.binary_data.unwrap()["ca.crl"].0;
    let pem = &cm.data.unwrap()["ca.crl.pem"];
    assert!(pem.starts_with("-----BEGIN X509 CRL-----"));
    crate::revocation::PublishedCrl::from_der(der).unwrap()
}

/// Reconciles the Ready issuer `issuer` with `records` cached at `at`, answering the CA Secret
/// read; the status is already what it will write.
async fn reconcile_ready(
    issuer: &Issuer,
    ca: &k8s_openapi::api::core::v1::Secret,
    records: &kube::runtime::reflector::store::Writer<DeserializeGuard<crate::api::CertificateRevocation>>,
    at: jiff::Timestamp,
) -> (
    tokio::task::JoinHandle<Result<Action, crate::error::Error>>,
    Arc<crate::context::Context>,
    ApiServer,
) {
    let (ctx, mut api) = context_with_records(vec![], vec![], records.as_reader(), Arc::new(move || at));
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(issuer.clone()))),
        ctx.clone(),
    ));
    api.expect(Method::GET, "/api/v1/namespaces/apps/secrets/root-ca")
        .await
        .ok(to_json(ca));
    (task, ctx, api)
}

/// Expects the status write of the record `record` and returns it with that status, as the
/// watch brings it back.
async fn expect_record_status(
    api: &mut ApiServer,
    record: crate::api::CertificateRevocation,
) -> crate::api::CertificateRevocation {
    let name = record.metadata.name.clone().unwrap();
    let seen = api
        .expect(
            Method::PATCH,
            &format!("/apis/certkeeper.io/v1/namespaces/apps/certificaterevocations/{name}/status"),
        )
        .await;
    assert_eq!(seen.body["kind"], "CertificateRevocation");
    let status = answer(seen, &record);
    let mut record = record;
    record.status = Some(serde_json::from_value(status).unwrap());
    record
}

#[tokio::test]
async fn a_ca_issuer_publishes_its_crl_over_its_records_and_keeps_numbering_after_a_restart() {
    use kube::runtime::watcher::Event;
    let ca = ca_secret(
        "root-ca",
        NAMESPACE,
        "root",
        ts(NOW) - SignedDuration::from_hours(1),
        30,
    );
    let mut records = kube::runtime::reflector::store::Writer::default();
    records.apply_watcher_event(&Event::Apply(DeserializeGuard(Ok(record("ca-0a", "0a", NOW)))));
    let mut issuer = ca_issuer("ca", "root-ca");

    // First publication: status, then the ConfigMap with the record, then served.
    let (task, ctx, mut api) = reconcile_ready(&issuer, &ca, &records, ts(NOW)).await;
    let status = answer(
        api.expect(
            Method::PATCH,
            "/apis/certkeeper.io/v1/namespaces/apps/issuers/ca/status",
        )
        .await,
        &issuer,
    );
    let configmap = expect_crl_published(&mut api, NAMESPACE, "ca").await;
    // The record learns that it is listed.
    let listed = expect_record_status(&mut api, record("ca-0a", "0a", NOW)).await;
    let condition = &listed.status.as_ref().unwrap().conditions[0];
    assert_eq!(
        (
            condition.type_.as_str(),
            condition.status.as_str(),
            condition.reason.as_str()
        ),
        ("Ready", "True", "Published")
    );
    records.apply_watcher_event(&Event::Apply(DeserializeGuard(Ok(listed))));
    task.await.unwrap().unwrap();
    let first = crl_of(&configmap);
    assert_eq!(first.revoked.len(), 1);
    assert_eq!(first.revoked[0].serial_hex, "0a");
    assert_eq!(first.this_update, ts(NOW));
    assert_eq!(first.next_update, ts(NOW) + SignedDuration::from_hours(24));
    assert!(configmap["metadata"].get("ownerReferences").is_none());
    assert_eq!(
        configmap["metadata"]["annotations"]["certkeeper.io/issuer-kind"],
        "Issuer"
    );
    let served = ctx.pki.issuer(NAMESPACE, "ca").unwrap();
    assert_eq!(served.crl().number, first.number);
    drop(ctx);
    api.expect_no_more().await;
    issuer.status = Some(serde_json::from_value(status).unwrap());

    // A restarted controller, an hour later, nothing changed: it reads the stored CRL once,
    // serves it, and writes nothing.
    let stored = configmap.clone();
    let later = ts(NOW) + SignedDuration::from_hours(1);
    let (task, ctx, mut api) = reconcile_ready(&issuer, &ca, &records, later).await;
    api.expect(Method::GET, "/api/v1/namespaces/apps/configmaps/ca-crl")
        .await
        .ok(stored.clone());
    let action = task.await.unwrap().unwrap();
    assert_eq!(
        action,
        Action::requeue(std::time::Duration::from_secs(11 * 3600 + 1))
    );
    assert_eq!(
        ctx.pki.issuer(NAMESPACE, "ca").unwrap().crl().number,
        first.number
    );
    drop(ctx);
    api.expect_no_more().await;

    // Restarted again after a second record: a new CRL with both, numbered above the stored.
    records.apply_watcher_event(&Event::Apply(DeserializeGuard(Ok(record(
        "ca-0b",
        "0b",
        "2026-11-23T10:30:00Z",
    )))));
    let (task, ctx, mut api) = reconcile_ready(&issuer, &ca, &records, later).await;
    api.expect(Method::GET, "/api/v1/namespaces/apps/configmaps/ca-crl")
        .await
        .ok(stored);
    let apply = api
        .expect(Method::PATCH, "/api/v1/namespaces/apps/configmaps/ca-crl")
        .await;
    let second = crl_of(&apply.body);
    apply.echo();
    let listed = expect_record_status(&mut api, record("ca-0b", "0b", "2026-11-23T10:30:00Z")).await;
    records.apply_watcher_event(&Event::Apply(DeserializeGuard(Ok(listed))));
    task.await.unwrap().unwrap();
    assert!(second.number > first.number);
    let serials: Vec<&str> = second.revoked.iter().map(|r| r.serial_hex.as_str()).collect();
    assert_eq!(serials, ["0a", "0b"]);
    // The same context needs no read next time, and re-signs only at half-life.
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(issuer.clone()))),
        ctx.clone(),
    ));
    task.await.unwrap().unwrap();
    drop(ctx);
    api.expect_no_more().await;
}
