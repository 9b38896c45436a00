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
    let action = task.await.unwrap().unwrap();
    drop(ctx);
    api.expect_no_more().await;
    assert_eq!(ready(&status), ("True".into(), "KeyPairVerified".into()));
    let not_after = ts(NOW) - SignedDuration::from_hours(1) + SignedDuration::from_hours(24 * 30);
    assert_eq!(status["caNotAfter"], not_after.to_string());
    assert!(status["caFingerprintSHA256"].as_str().unwrap().contains(':'));
    // Woken again when the CA expires.
    let wait = not_after.duration_since(ts(NOW)).as_secs() as u64;
    assert_eq!(
        action,
        Action::requeue(std::time::Duration::from_secs(wait.min(24 * 3600) + 1))
    );
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
    task.await.unwrap().unwrap();
    assert_eq!(ready(&status), ("True".into(), "KeyPairVerified".into()));
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
