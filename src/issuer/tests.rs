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

/// Answers the status PATCH of the Issuer `apps/ca` with `issuer` and that status.
async fn answer_status(api: &mut ApiServer, issuer: &Issuer) -> Value {
    let seen = api
        .expect(
            Method::PATCH,
            "/apis/certkeeper.io/v1/namespaces/apps/issuers/ca/status",
        )
        .await;
    answer(seen, issuer)
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
    let status = answer_status(&mut api, &issuer).await;
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
    let status = answer_status(&mut api, &issuer).await;
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
async fn a_namespaced_issuer_naming_a_token_is_refused_before_anything_is_read_or_loaded() {
    let mut issuer = ca_issuer("ca", "root-ca");
    if let Some(ca) = issuer.spec.ca.as_mut() {
        ca.pkcs11 = Some(crate::api::CaPkcs11 {
            uri: "pkcs11:token=ca;object=root;module-path=/tmp/evil.so".into(),
            pin_secret_ref: crate::api::SecretKeySelector {
                name: "hsm-pin".into(),
                key: "pin".into(),
            },
        });
    }
    // The controller runs without --pkcs11-allow-namespaced-issuers (the default).
    let (ctx, mut api) = context(vec![], vec![], ts(NOW));
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(issuer.clone()))),
        ctx.clone(),
    ));
    // No Secret read, no PIN read: straight to the status.
    let status = answer_status(&mut api, &issuer).await;
    let event = api
        .expect(Method::POST, "/apis/events.k8s.io/v1/namespaces/apps/events")
        .await;
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["reason"], "HSMNotAllowed");
    assert!(
        event.body["note"]
            .as_str()
            .is_some_and(|n| n.contains("--pkcs11-allow-namespaced-issuers")),
        "{}",
        event.body
    );
    event.echo();
    let action = task.await.unwrap().unwrap();
    drop(ctx);
    api.expect_no_more().await;
    assert_eq!(ready(&status), ("False".into(), "HSMNotAllowed".into()));
    // Only a change of the issuer or of the controller lifts it: not looked at every 5 s.
    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(300)));
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
    let status = answer_status(&mut api, &issuer).await;
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
    let status = answer_status(&mut api, &issuer).await;
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
    // The CRL's signature is audited (telemetry::audit) and counted.
    let text = ctx.metrics.encode().unwrap();
    assert!(
        text.contains(&format!(
            r#"certkeeper_ca_signatures_total{{issuer_kind="Issuer",namespace="{NAMESPACE}",issuer="ca",what="crl",result="success"}} 1"#
        )),
        "{text}"
    );
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

/// CA rotation, phase by phase: each reconcile's requests in order.
mod rotation {
    use super::*;
    use crate::api::{RotationPhase, TrustAnchorRole};
    use crate::certificate::verdict::Verdict;
    use crate::context::Context;
    use crate::issuer::rotation::{RotationGate, trust_pem};

    const ISSUER_STATUS: &str = "/apis/certkeeper.io/v1/namespaces/apps/issuers/ca/status";
    const CA_PATH: &str = "/api/v1/namespaces/apps/secrets/root-ca";
    const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/apps/events";

    fn root(name: &str) -> k8s_openapi::api::core::v1::Secret {
        ca_secret(
            "root-ca",
            NAMESPACE,
            name,
            ts(NOW) - SignedDuration::from_hours(1),
            365,
        )
    }

    /// Reconciles `issuer` at `at` in a context `prepare` sets up: the CA Secret is `ca`, the
    /// CRL is published afresh. Returns the status written (if any), the Events, the action.
    async fn reconcile_issuer(
        issuer: &Issuer,
        ca: &k8s_openapi::api::core::v1::Secret,
        at: jiff::Timestamp,
        prepare: impl FnOnce(&mut Context),
    ) -> (Option<Value>, Vec<Value>, Action) {
        let (mut ctx, mut api) = context(vec![], vec![], at);
        prepare(Arc::get_mut(&mut ctx).unwrap());
        let task = tokio::spawn(reconcile(
            Arc::new(DeserializeGuard(Ok(issuer.clone()))),
            ctx.clone(),
        ));
        api.expect(Method::GET, CA_PATH).await.ok(to_json(ca));
        let mut status = None;
        let mut events = Vec::new();
        // Status first, then its Events, then the CRL (published afresh by a new process).
        let mut next = api
            .expect_one_of(&[
                (Method::PATCH, ISSUER_STATUS),
                (Method::GET, "/api/v1/namespaces/apps/configmaps/ca-crl"),
            ])
            .await;
        if next.path == ISSUER_STATUS {
            status = Some(answer(next, issuer));
            loop {
                next = api
                    .expect_one_of(&[
                        (Method::POST, EVENTS),
                        (Method::GET, "/api/v1/namespaces/apps/configmaps/ca-crl"),
                    ])
                    .await;
                if next.path != EVENTS {
                    break;
                }
                events.push(next.body.clone());
                next.echo();
            }
        }
        next.not_found();
        api.expect(Method::PATCH, "/api/v1/namespaces/apps/configmaps/ca-crl")
            .await
            .echo();
        let action = task.await.unwrap().unwrap();
        drop(ctx);
        api.expect_no_more().await;
        (status, events, action)
    }

    fn with_status(issuer: &Issuer, status: &Value) -> Issuer {
        let mut issuer = issuer.clone();
        issuer.status = Some(serde_json::from_value(status.clone()).unwrap());
        issuer
    }

    fn reasons(events: &[Value]) -> Vec<&str> {
        events.iter().map(|e| e["reason"].as_str().unwrap()).collect()
    }

    /// The issuer after its first look at `old`, then at `new` an hour later: Distributing.
    async fn distributing(
        old: &k8s_openapi::api::core::v1::Secret,
        new: &k8s_openapi::api::core::v1::Secret,
    ) -> Issuer {
        let issuer = ca_issuer("ca", "root-ca");
        let (status, events, _) = reconcile_issuer(&issuer, old, ts(NOW), |_| {}).await;
        assert!(events.is_empty(), "adopting the first root is no rotation");
        let issuer = with_status(&issuer, &status.unwrap());
        let (status, _, _) =
            reconcile_issuer(&issuer, new, ts(NOW) + SignedDuration::from_hours(1), |_| {}).await;
        with_status(&issuer, &status.unwrap())
    }

    /// `web`, issued under the issuer, Ready; and what its Secret was found to hold.
    fn ready_web(ca_pem: &str, under_current_ca: bool) -> (crate::api::Certificate, Verdict) {
        let mut cert = certificate("web", "ca", &["web.apps.svc"]);
        cert.status = Some(
            serde_json::from_value(serde_json::json!({
                "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "",
                                "lastTransitionTime": NOW}]
            }))
            .unwrap(),
        );
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, ca_pem.as_bytes());
        let verdict = Verdict {
            uid: crate::certificate::verdict::uid_hash("uid-web"),
            generation: Some(1),
            renew_requested_at: None,
            revoke_requested_at: None,
            requests_due_at: None,
            signer: None,
            ca_pem: digest.as_ref().try_into().ok(),
            gate: RotationGate::Hold,
            under_current_ca,
            reissue_at: None,
            facts: crate::certificate::status::IssuedFacts {
                not_before: ts(NOW),
                not_after: ts(NOW) + SignedDuration::from_hours(24),
                renewal_time: ts(NOW) + SignedDuration::from_hours(16),
                serial_hex: "01".into(),
                revision: 1,
            },
            status_written: None,
        };
        (cert, verdict)
    }

    fn remember(ctx: &mut Context, cert: crate::api::Certificate, verdict: Verdict) {
        let key = (NAMESPACE.to_owned(), "web".to_owned());
        let token = ctx.verdicts.begin(&key);
        assert!(ctx.verdicts.insert(&key, token, "7", verdict));
        ctx.certificates = crate::testing::cached_store(vec![cert]);
    }

    #[tokio::test]
    async fn a_new_root_starts_distributing_both_roots_and_says_so() {
        let (old, new) = (root("root 1"), root("root 2"));
        let issuer = distributing(&old, &new).await;
        let status = issuer.status.as_ref().unwrap();
        let roles: Vec<TrustAnchorRole> = status.trust_anchors.iter().map(|a| a.role).collect();
        assert_eq!(roles, [TrustAnchorRole::Current, TrustAnchorRole::Previous]);
        let rotation = status.rotation.as_ref().unwrap();
        assert_eq!(rotation.phase, RotationPhase::Distributing);
        assert_eq!(
            rotation.previous_fingerprint_sha256.as_ref(),
            Some(&status.trust_anchors[1].fingerprint_sha256)
        );
        // The Event, from the same reconcile.
        let issuer0 = ca_issuer("ca", "root-ca");
        let (first, _, _) = reconcile_issuer(&issuer0, &old, ts(NOW), |_| {}).await;
        let (_, events, action) = reconcile_issuer(
            &with_status(&issuer0, &first.unwrap()),
            &new,
            ts(NOW) + SignedDuration::from_hours(1),
            |_| {},
        )
        .await;
        assert_eq!(reasons(&events), ["RotationStarted"]);
        assert_eq!(events[0]["type"], "Normal");
        // Looked at again within seconds, to follow the Certificates.
        assert_eq!(action, Action::requeue(std::time::Duration::from_secs(5)));
    }

    #[tokio::test]
    async fn distributing_waits_for_every_secret_then_for_the_propagation_delay() {
        let (old, new) = (root("root 1"), root("root 2"));
        let issuer = distributing(&old, &new).await;
        let both = trust_pem(&issuer.status.as_ref().unwrap().trust_anchors);
        let at = ts(NOW) + SignedDuration::from_hours(2);

        // A Ready Certificate not looked at since a restart: wait, write nothing.
        let (cert, _) = ready_web(&both, false);
        let (status, events, _) = reconcile_issuer(&issuer, &new, at, |ctx| {
            ctx.certificates = crate::testing::cached_store(vec![cert]);
        })
        .await;
        assert_eq!((status, events.len()), (None, 0));

        // Its Secret still holds only the old root: wait.
        let old_only = trust_pem(&issuer.status.as_ref().unwrap().trust_anchors[1..]);
        let (status, _, _) = reconcile_issuer(&issuer, &new, at, |ctx| {
            let (cert, verdict) = ready_web(&old_only, false);
            remember(ctx, cert, verdict);
        })
        .await;
        assert_eq!(status, None);

        // Both roots everywhere: the delay starts.
        let (status, events, action) = reconcile_issuer(&issuer, &new, at, |ctx| {
            let (cert, verdict) = ready_web(&both, false);
            remember(ctx, cert, verdict);
        })
        .await;
        let status = status.unwrap();
        assert_eq!(status["rotation"]["trustDistributedAt"], at.to_string());
        assert_eq!(reasons(&events), ["TrustDistributed"]);
        assert_eq!(action, Action::requeue(std::time::Duration::from_secs(5)));

        // After the delay: Reissuing.
        let issuer = with_status(&issuer, &status);
        let later = at + SignedDuration::from_mins(5);
        let (status, events, _) = reconcile_issuer(&issuer, &new, later, |ctx| {
            let (cert, verdict) = ready_web(&both, false);
            remember(ctx, cert, verdict);
        })
        .await;
        assert_eq!(status.unwrap()["rotation"]["phase"], "Reissuing");
        assert!(events.is_empty());
    }

    #[tokio::test]
    async fn a_bundle_sourcing_the_issuer_holds_the_rotation_until_it_has_both_roots() {
        let (old, new) = (root("root 1"), root("root 2"));
        let issuer = distributing(&old, &new).await;
        let anchors = issuer.status.as_ref().unwrap().trust_anchors.clone();
        let both = trust_pem(&anchors);
        let bundle =
            |fingerprints: Vec<String>| {
                let mut bundle: crate::api::Bundle = serde_json::from_value(serde_json::json!({
                "apiVersion": "certkeeper.io/v1", "kind": "Bundle",
                "metadata": {"name": "mesh", "generation": 1},
                "spec": {"sources": [{"issuer": {"kind": "Issuer", "name": "ca", "namespace": NAMESPACE}}],
                         "target": {"configMap": {"key": "ca.crt"}}},
            }))
            .unwrap();
                bundle.status = Some(serde_json::from_value(serde_json::json!({
                "conditions": [{"type": "Ready", "status": "True", "reason": "Synced", "message": "",
                                "lastTransitionTime": NOW}],
                "fingerprints": fingerprints, "targets": 3, "syncedTargets": 3, "observedGeneration": 1,
            }))
            .unwrap());
                bundle
            };
        let at = ts(NOW) + SignedDuration::from_hours(2);
        let stale = bundle(vec![anchors[1].fingerprint_sha256.clone()]);
        let (status, _, _) = reconcile_issuer(&issuer, &new, at, |ctx| {
            let (cert, verdict) = ready_web(&both, false);
            remember(ctx, cert, verdict);
            ctx.bundles = store(vec![stale]);
        })
        .await;
        assert_eq!(status, None, "the Bundle's targets lack the new root");

        let synced = bundle(anchors.iter().map(|a| a.fingerprint_sha256.clone()).collect());
        let (status, _, _) = reconcile_issuer(&issuer, &new, at, |ctx| {
            let (cert, verdict) = ready_web(&both, false);
            remember(ctx, cert, verdict);
            ctx.bundles = store(vec![synced]);
        })
        .await;
        assert_eq!(status.unwrap()["rotation"]["trustDistributedAt"], at.to_string());
    }

    #[tokio::test]
    async fn a_restart_in_mid_reissue_resumes_from_the_status_without_writing() {
        let (old, new) = (root("root 1"), root("root 2"));
        let mut issuer = distributing(&old, &new).await;
        let rotation = issuer.status.as_mut().unwrap().rotation.as_mut().unwrap();
        rotation.phase = RotationPhase::Reissuing;
        let both = trust_pem(&issuer.status.as_ref().unwrap().trust_anchors);
        // A new process: no verdicts yet, the Certificate not re-judged.
        let (cert, _) = ready_web(&both, false);
        let at = ts(NOW) + SignedDuration::from_hours(3);
        let (status, events, action) = reconcile_issuer(&issuer, &new, at, |ctx| {
            ctx.certificates = crate::testing::cached_store(vec![cert]);
        })
        .await;
        assert_eq!((status, events.len()), (None, 0));
        assert_eq!(action, Action::requeue(std::time::Duration::from_secs(5)));

        // Once the Certificate is found re-issued under the new CA: Retiring.
        let (status, _, _) = reconcile_issuer(&issuer, &new, at, |ctx| {
            let (cert, mut verdict) = ready_web(&both, true);
            let ca = crate::pki::parse_certificate_chain(&secret_data(&to_json(&new), "tls.crt"))
                .unwrap()
                .remove(0);
            let id = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &ca.der);
            verdict.signer = id.as_ref().try_into().ok();
            remember(ctx, cert, verdict);
        })
        .await;
        assert_eq!(status.unwrap()["rotation"]["phase"], "Retiring");
    }

    #[tokio::test]
    async fn a_root_is_retired_only_once_no_issuer_below_it_still_trusts_it() {
        let (old, new) = (root("root 1"), root("root 2"));
        let mut issuer = distributing(&old, &new).await;
        let status = issuer.status.as_mut().unwrap();
        status.rotation.as_mut().unwrap().phase = RotationPhase::Reissuing;
        let started = status.rotation.as_ref().unwrap().started_at.clone();
        let old_root = status.trust_anchors[1].clone();
        let both = trust_pem(&status.trust_anchors);
        let new_ca = crate::pki::parse_certificate_chain(&secret_data(&to_json(&new), "tls.crt"))
            .unwrap()
            .remove(0);
        let reissued = || {
            let (cert, mut verdict) = ready_web(&both, true);
            let id = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &new_ca.der);
            verdict.signer = id.as_ref().try_into().ok();
            (cert, verdict)
        };
        // An intermediate's issuer, below this root, that has not moved yet: it still lists
        // the old root as its own.
        let mut below = ca_issuer("intermediate-ca", "intermediate-ca");
        below.status = Some(crate::api::IssuerStatus {
            trust_anchors: vec![crate::api::TrustAnchor {
                role: TrustAnchorRole::Current,
                ..old_root.clone()
            }],
            ..Default::default()
        });
        let at = ts(NOW) + SignedDuration::from_hours(3);
        let (status, _, _) = reconcile_issuer(&issuer, &new, at, |ctx| {
            let (cert, verdict) = reissued();
            remember(ctx, cert, verdict);
            ctx.issuers = store(vec![below.clone()]);
        })
        .await;
        assert_eq!(
            status, None,
            "the intermediate's leaves still chain to the old root"
        );

        // An issuer whose own rotation started earlier is above this one: not waited for.
        let mut above = below.clone();
        above.status.as_mut().unwrap().rotation = Some(crate::api::Rotation {
            phase: RotationPhase::Reissuing,
            started_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                started.0 - SignedDuration::from_mins(1),
            ),
            phase_started_at: started.clone(),
            trust_distributed_at: None,
            previous_fingerprint_sha256: None,
            ca_fingerprint_sha256: "AB".into(),
            left_out: Vec::new(),
        });
        let (status, _, _) = reconcile_issuer(&issuer, &new, at, |ctx| {
            let (cert, verdict) = reissued();
            remember(ctx, cert, verdict);
            ctx.issuers = store(vec![above]);
        })
        .await;
        assert_eq!(status.unwrap()["rotation"]["phase"], "Retiring");
    }

    #[tokio::test]
    async fn a_distrust_request_dated_a_second_ahead_is_acted_on_at_its_time() {
        let (old, new) = (root("root 1"), root("root 2"));
        let mut issuer = distributing(&old, &new).await;
        let now = ts(NOW) + SignedDuration::from_hours(2);
        let asked = now + SignedDuration::from_secs(1);
        issuer.metadata.annotations = Some(
            [(
                crate::api::DISTRUST_PREVIOUS_REQUESTED_AT.to_owned(),
                asked.to_string(),
            )]
            .into(),
        );
        // Not yet: both roots stay, and the issuer looks again at the request's time (not at
        // its next rotation poll, nor never).
        let (status, events, action) = reconcile_issuer(&issuer, &new, now, |_| {}).await;
        assert!(!reasons(&events).contains(&"EmergencyRotation"));
        if let Some(status) = &status {
            assert_eq!(status["trustAnchors"].as_array().unwrap().len(), 2);
            issuer = with_status(&issuer, status);
        }
        let wait = crate::certificate::schedule::requeue_after(now, &[asked]);
        assert_eq!(action, Action::requeue(wait));
        // Then: acted on.
        let then = now + SignedDuration::try_from(wait).unwrap();
        let (status, events, _) = reconcile_issuer(&issuer, &new, then, |_| {}).await;
        let status = status.unwrap();
        assert_eq!(status["trustAnchors"].as_array().unwrap().len(), 1);
        assert_eq!(status["distrustedAt"], asked.to_string());
        assert_eq!(reasons(&events), ["EmergencyRotation"]);
    }

    #[tokio::test]
    async fn an_unreadable_distrust_request_distrusts_nothing_and_says_why() {
        let mut issuer = ca_issuer("ca", "root-ca");
        let ca = root("root 1");
        let (status, _, _) = reconcile_issuer(&issuer, &ca, ts(NOW), |_| {}).await;
        issuer = with_status(&issuer, &status.unwrap());
        issuer.metadata.annotations = Some(
            [(
                crate::api::DISTRUST_PREVIOUS_REQUESTED_AT.to_owned(),
                "now please".to_owned(),
            )]
            .into(),
        );
        let (ctx, mut api) = context(vec![], vec![], ts(NOW));
        let task = tokio::spawn(reconcile(
            Arc::new(DeserializeGuard(Ok(issuer.clone()))),
            ctx.clone(),
        ));
        api.expect(Method::GET, CA_PATH).await.ok(to_json(&ca));
        let warning = api.expect(Method::POST, EVENTS).await;
        assert_eq!(warning.body["type"], "Warning");
        assert_eq!(warning.body["reason"], "InvalidDistrustRequest");
        assert!(warning.body["note"].as_str().unwrap().contains("now please"));
        warning.echo();
        api.expect(Method::GET, "/api/v1/namespaces/apps/configmaps/ca-crl")
            .await
            .not_found();
        api.expect(Method::PATCH, "/api/v1/namespaces/apps/configmaps/ca-crl")
            .await
            .echo();
        task.await.unwrap().unwrap();
        // Looked at again: not warned about twice (the CRL is served from memory now).
        let task = tokio::spawn(reconcile(
            Arc::new(DeserializeGuard(Ok(issuer.clone()))),
            ctx.clone(),
        ));
        tokio::select! {
            done = task => done.unwrap().unwrap(),
            _ = api.expect(Method::DELETE, "no request at all") => unreachable!(),
        };
    }

    #[tokio::test]
    async fn an_emergency_distrusts_the_previous_root_at_once_with_a_warning() {
        let (old, new) = (root("root 1"), root("root 2"));
        let mut issuer = distributing(&old, &new).await;
        let asked = ts(NOW) + SignedDuration::from_hours(2);
        issuer.metadata.annotations = Some(
            [(
                crate::api::DISTRUST_PREVIOUS_REQUESTED_AT.to_owned(),
                asked.to_string(),
            )]
            .into(),
        );
        let (status, events, _) = reconcile_issuer(&issuer, &new, asked, |_| {}).await;
        let status = status.unwrap();
        assert_eq!(status["trustAnchors"].as_array().unwrap().len(), 1);
        assert_eq!(status["trustAnchors"][0]["role"], "Current");
        assert!(status.get("rotation").is_none());
        assert_eq!(status["distrustedAt"], asked.to_string());
        assert_eq!(reasons(&events), ["EmergencyRotation"]);
        assert_eq!(events[0]["type"], "Warning");
    }
}
