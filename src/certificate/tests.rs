//! The Certificate reconciler against a mocked API server: every request it makes, in order.

use std::sync::Arc;

use super::schedule::Next;
use http::{Method, StatusCode};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::api::{Certificate, ClusterIssuer, Issuer, IssuerStatus};
use crate::context::Context;
use crate::pki::parse_certificate_chain;
use crate::testing::*;

const NOW: &str = "2026-11-23T10:00:00Z";
const CA_SECRET_PATH: &str = "/api/v1/namespaces/apps/secrets/root-ca";
const SECRET_PATH: &str = "/api/v1/namespaces/apps/secrets/web-tls";
const STATUS_PATH: &str = "/apis/certkeeper.io/v1/namespaces/apps/certificates/web/status";
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/apps/events";

/// What one issuance wrote.
struct Written {
    secret: Value,
    status: Value,
    event: Value,
}

/// Expects Secret apply → status patch → Event, the three writes of an issuance.
async fn expect_writes(api: &mut ApiServer, cert: &Certificate) -> Written {
    let apply = api.expect(Method::PATCH, SECRET_PATH).await;
    let secret = apply.body.clone();
    apply.echo();
    let status = answer_status(api.expect(Method::PATCH, STATUS_PATH).await, cert);
    let event = api.expect(Method::POST, EVENTS_PATH).await;
    let body = event.body.clone();
    event.echo();
    Written {
        secret,
        status,
        event: body,
    }
}

fn ready(status: &Value) -> (String, String) {
    let c = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    (
        c["status"].as_str().unwrap().into(),
        c["reason"].as_str().unwrap().into(),
    )
}

fn leaf_of(secret: &Value) -> crate::pki::CertificateInfo {
    parse_certificate_chain(&secret_data(secret, "tls.crt"))
        .unwrap()
        .remove(0)
}

/// Starts reconciling `cert` at `at` with the CA Issuer `ca` cached, and answers the read of
/// its CA Secret `ca_secret`: the first request of every reconcile under that issuer.
async fn start_under_ca(
    cert: &Certificate,
    ca_secret: &k8s_openapi::api::core::v1::Secret,
    at: Timestamp,
) -> (
    tokio::task::JoinHandle<Result<Next, crate::error::Error>>,
    Arc<Context>,
    ApiServer,
) {
    let (ctx, mut api) = context(vec![ca_issuer("ca", "root-ca")], vec![], at);
    let task = spawn_reconcile(cert, &ctx);
    api.expect(Method::GET, CA_SECRET_PATH)
        .await
        .ok(to_json(ca_secret));
    (task, ctx, api)
}

/// Issues `web` under the CA Issuer `ca` at NOW and returns what was written.
async fn first_issuance(cert: &Certificate, ca: &k8s_openapi::api::core::v1::Secret) -> Written {
    let (ctx, mut api) = context(vec![ca_issuer("ca", "root-ca")], vec![], ts(NOW));
    let task = spawn_reconcile(cert, &ctx);
    api.expect(Method::GET, CA_SECRET_PATH).await.ok(to_json(ca));
    let written = expect_writes(&mut api, cert).await;
    finish_reconcile(task, ctx, api).await;
    written
}

#[tokio::test]
async fn first_issuance_writes_secret_then_status_then_issued_event() {
    let ca = root_ca(ts(NOW));
    let cert = certificate("web", "ca", &["web.apps.svc"]);
    let (task, ctx, mut api) = start_under_ca(&cert, &ca, ts(NOW)).await;
    let metrics = ctx.metrics.clone();
    let written = expect_writes(&mut api, &cert).await;
    let action = finish_reconcile(task, ctx, api).await;
    // The CA's signature is audited (telemetry::audit) and counted.
    let text = metrics.encode().unwrap();
    assert!(
        text.contains(
            r#"certkeeper_ca_signatures_total{issuer_kind="Issuer",namespace="apps",issuer="ca",what="certificate",result="success"} 1"#
        ),
        "{text}"
    );

    // The Secret: one apply with every key, the SPEC labels and annotations.
    let s = &written.secret;
    assert_eq!(s["type"], "kubernetes.io/tls");
    assert_eq!(s["metadata"]["labels"]["certkeeper.io/certificate-name"], "web");
    let ann = &s["metadata"]["annotations"];
    assert_eq!(ann["certkeeper.io/issuer-name"], "ca");
    assert_eq!(ann["certkeeper.io/issuer-kind"], "Issuer");
    assert_eq!(ann["certkeeper.io/issuer-group"], "certkeeper.io");
    assert_eq!(ann["certkeeper.io/alt-names"], "web.apps.svc");
    assert_eq!(ann["certkeeper.io/revision"], "1");
    assert!(
        s["metadata"].get("ownerReferences").is_none(),
        "Orphan is the default"
    );
    let leaf = leaf_of(s);
    assert_eq!(leaf.dns_names, vec!["web.apps.svc".to_string()]);
    assert_eq!(leaf.not_before, ts(NOW));
    assert_eq!(leaf.not_after, ts(NOW) + SignedDuration::from_hours(24));
    let ca_info = parse_certificate_chain(&secret_data(&to_json(&ca), "tls.crt"))
        .unwrap()
        .remove(0);
    assert!(leaf.is_signed_by(&ca_info));
    assert_eq!(secret_data(s, "ca.crt"), secret_data(&to_json(&ca), "tls.crt"));
    assert!(
        String::from_utf8(secret_data(s, "tls.key"))
            .unwrap()
            .contains("BEGIN PRIVATE KEY")
    );

    // The status: Ready, revision 1, the certificate's facts.
    let st = &written.status;
    assert_eq!(ready(st), ("True".into(), "Ready".into()));
    assert_eq!(st["revision"], 1);
    assert_eq!(st["notAfter"], "2026-11-24T10:00:00Z");
    assert_eq!(st["serialNumber"], leaf.serial_hex.as_str());
    assert_eq!(st["observedGeneration"], 1);
    let renewal: Timestamp = st["renewalTime"].as_str().unwrap().parse().unwrap();
    assert!(
        renewal <= ts("2026-11-24T02:00:00Z") && renewal >= ts("2026-11-24T01:12:00Z"),
        "{renewal}"
    );

    // The Event.
    assert_eq!(written.event["reason"], "Issued");
    assert_eq!(written.event["type"], "Normal");
    assert!(written.event["note"].as_str().unwrap().contains(&leaf.serial_hex));

    // Requeued at the renewal time.
    let wait = renewal.duration_since(ts(NOW)).as_secs() as u64;
    assert_eq!(action, Next::requeue(std::time::Duration::from_secs(wait + 1)));
}

#[tokio::test]
async fn nothing_to_do_makes_no_write() {
    let ca = root_ca(ts(NOW));
    let cert = certificate("web", "ca", &["web.apps.svc"]);
    let written = first_issuance(&cert, &ca).await;
    let cert = with_status(&cert, &written.status);

    let later = ts(NOW) + SignedDuration::from_hours(3);
    let (task, ctx, mut api) = start_under_ca(&cert, &ca, later).await;
    api.expect(Method::GET, SECRET_PATH)
        .await
        .ok(written.secret.clone());
    finish_reconcile(task, ctx, api).await;
}

#[tokio::test]
async fn secret_deleted_is_reissued_with_next_revision() {
    let ca = root_ca(ts(NOW));
    let cert = certificate("web", "ca", &["web.apps.svc"]);
    let written = first_issuance(&cert, &ca).await;
    let cert = with_status(&cert, &written.status);

    let (task, ctx, mut api) = start_under_ca(&cert, &ca, ts(NOW) + SignedDuration::from_hours(1)).await;
    api.expect(Method::GET, SECRET_PATH).await.not_found();
    let again = expect_writes(&mut api, &cert).await;
    finish_reconcile(task, ctx, api).await;
    assert_eq!(again.status["revision"], 2);
    assert_eq!(
        again.secret["metadata"]["annotations"]["certkeeper.io/revision"],
        "2"
    );
    assert_eq!(again.event["reason"], "Renewed");
    assert!(again.event["note"].as_str().unwrap().contains("DoesNotExist"));
}

#[tokio::test]
async fn spec_change_reissues_with_the_new_names() {
    let ca = root_ca(ts(NOW));
    let cert = certificate("web", "ca", &["web.apps.svc"]);
    let written = first_issuance(&cert, &ca).await;
    let mut cert = with_status(&cert, &written.status);
    cert.spec.dns_names = Some(vec!["web.apps.svc".into(), "web.example.com".into()]);
    cert.metadata.generation = Some(2);

    let (task, ctx, mut api) = start_under_ca(&cert, &ca, ts(NOW) + SignedDuration::from_mins(5)).await;
    api.expect(Method::GET, SECRET_PATH)
        .await
        .ok(written.secret.clone());
    let again = expect_writes(&mut api, &cert).await;
    finish_reconcile(task, ctx, api).await;
    assert_eq!(
        leaf_of(&again.secret).dns_names,
        vec!["web.apps.svc".to_string(), "web.example.com".to_string()]
    );
    assert_eq!(again.status["observedGeneration"], 2);
    assert!(again.event["note"].as_str().unwrap().contains("SecretMismatch"));
}

#[tokio::test]
async fn renewal_due_reissues_at_the_renewal_time() {
    let ca = root_ca(ts(NOW));
    let cert = certificate("web", "ca", &["web.apps.svc"]);
    let written = first_issuance(&cert, &ca).await;
    let cert = with_status(&cert, &written.status);
    let renewal: Timestamp = written.status["renewalTime"].as_str().unwrap().parse().unwrap();

    // One second before: nothing.
    let (task, ctx, mut api) = start_under_ca(&cert, &ca, renewal - SignedDuration::from_secs(1)).await;
    api.expect(Method::GET, SECRET_PATH)
        .await
        .ok(written.secret.clone());
    let action = finish_reconcile(task, ctx, api).await;
    assert_eq!(action, Next::requeue(std::time::Duration::from_secs(2)));

    // At the renewal time: a new certificate with a new key.
    let (task, ctx, mut api) = start_under_ca(&cert, &ca, renewal).await;
    api.expect(Method::GET, SECRET_PATH)
        .await
        .ok(written.secret.clone());
    let again = expect_writes(&mut api, &cert).await;
    finish_reconcile(task, ctx, api).await;
    assert!(again.event["note"].as_str().unwrap().contains("Renewing"));
    assert_eq!(leaf_of(&again.secret).not_before, renewal);
    assert_ne!(
        secret_data(&again.secret, "tls.key"),
        secret_data(&written.secret, "tls.key")
    );
}

#[tokio::test]
async fn rotation_policy_never_keeps_the_key() {
    let ca = root_ca(ts(NOW));
    let mut cert = certificate("web", "ca", &["web.apps.svc"]);
    cert.spec.private_key = Some(crate::api::PrivateKeySpec {
        rotation_policy: Some(crate::api::PrivateKeyRotationPolicy::Never),
        ..Default::default()
    });
    let written = first_issuance(&cert, &ca).await;
    let mut cert = with_status(&cert, &written.status);
    cert.metadata.annotations = Some(
        [(
            "certkeeper.io/renew-requested-at".to_string(),
            "2026-11-23T10:30:00Z".to_string(),
        )]
        .into(),
    );

    let (task, ctx, mut api) = start_under_ca(&cert, &ca, ts(NOW) + SignedDuration::from_hours(1)).await;
    api.expect(Method::GET, SECRET_PATH)
        .await
        .ok(written.secret.clone());
    let again = expect_writes(&mut api, &cert).await;
    finish_reconcile(task, ctx, api).await;
    assert!(
        again.event["note"]
            .as_str()
            .unwrap()
            .contains("ManuallyTriggered")
    );
    assert_eq!(
        secret_data(&again.secret, "tls.key"),
        secret_data(&written.secret, "tls.key")
    );
    assert_ne!(
        leaf_of(&again.secret).serial_hex,
        leaf_of(&written.secret).serial_hex
    );
}

#[tokio::test]
async fn ca_rotation_reissues_leaves() {
    let ca = root_ca(ts(NOW));
    let cert = certificate("web", "ca", &["web.apps.svc"]);
    let written = first_issuance(&cert, &ca).await;
    let cert = with_status(&cert, &written.status);
    let rotated = ca_secret("root-ca", NAMESPACE, "root", ts(NOW), 365);

    let (ctx, mut api) = context(
        vec![ca_issuer("ca", "root-ca")],
        vec![],
        ts(NOW) + SignedDuration::from_hours(1),
    );
    let task = spawn_reconcile(&cert, &ctx);
    api.expect(Method::GET, CA_SECRET_PATH)
        .await
        .ok(to_json(&rotated));
    api.expect(Method::GET, SECRET_PATH)
        .await
        .ok(written.secret.clone());
    let again = expect_writes(&mut api, &cert).await;
    finish_reconcile(task, ctx, api).await;
    assert!(again.event["note"].as_str().unwrap().contains("CARotated"));
    let new_ca = parse_certificate_chain(&secret_data(&to_json(&rotated), "tls.crt"))
        .unwrap()
        .remove(0);
    assert!(leaf_of(&again.secret).is_signed_by(&new_ca));
    assert_eq!(
        secret_data(&again.secret, "ca.crt"),
        secret_data(&to_json(&rotated), "tls.crt")
    );
}

#[tokio::test]
async fn issuer_missing_sets_ready_false_and_warns_once() {
    let cert = certificate("web", "nowhere", &["web.apps.svc"]);
    let (ctx, mut api) = context(vec![], vec![], ts(NOW));
    let task = spawn_reconcile(&cert, &ctx);
    // No Secret to keep: not Ready, for the issuer's reason.
    api.expect(Method::GET, SECRET_PATH).await.not_found();
    let status = answer_status(api.expect(Method::PATCH, STATUS_PATH).await, &cert);
    let event = api.expect(Method::POST, EVENTS_PATH).await;
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["reason"], "IssuerNotFound");
    event.echo();
    finish_reconcile(task, ctx, api).await;
    assert_eq!(ready(&status), ("False".into(), "IssuerNotFound".into()));
    assert!(
        status["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("\"nowhere\"")
    );

    // Reconciled again with that status: nothing to write, no second Warning.
    let cert = with_status(&cert, &status);
    let (ctx, mut api) = context(vec![], vec![], ts(NOW) + SignedDuration::from_mins(1));
    let task = spawn_reconcile(&cert, &ctx);
    api.expect(Method::GET, SECRET_PATH).await.not_found();
    finish_reconcile(task, ctx, api).await;
}

/// The issuer `ca` with its CA Secret `root-ca`, whose own status says `Ready=False`
/// (SecretNotFound): what its controller found before the Secret was written.
fn issuer_still_judged_without_its_secret() -> Issuer {
    let mut issuer = ca_issuer("ca", "root-ca");
    issuer.status = Some(crate::api::IssuerStatus {
        conditions: vec![crate::api::condition(
            "Ready",
            crate::api::ConditionStatus::False,
            "SecretNotFound",
            "Secret apps/root-ca does not exist",
            None,
            ts(NOW),
        )],
        ..Default::default()
    });
    issuer
}

#[tokio::test]
async fn nothing_is_signed_under_an_issuer_whose_own_status_is_not_ready() {
    // The CA Secret is usable by now, but the issuer has not judged it yet (issue 24): its
    // status is the one source of truth, so the Certificate waits, and looks again soon.
    let cert = certificate("web", "ca", &["web.apps.svc"]);
    let ca = root_ca(ts(NOW));
    let (ctx, mut api) = context(vec![issuer_still_judged_without_its_secret()], vec![], ts(NOW));
    let task = spawn_reconcile(&cert, &ctx);
    api.expect(Method::GET, CA_SECRET_PATH).await.ok(to_json(&ca));
    api.expect(Method::GET, SECRET_PATH).await.not_found();
    let status = answer_status(api.expect(Method::PATCH, STATUS_PATH).await, &cert);
    let event = api.expect(Method::POST, EVENTS_PATH).await;
    assert_eq!(event.body["reason"], "IssuerNotReady");
    event.echo();
    let action = finish_reconcile(task, ctx, api).await;
    assert_eq!(ready(&status), ("False".into(), "IssuerNotReady".into()));
    let message = status["conditions"][0]["message"].as_str().unwrap();
    assert!(message.contains("SecretNotFound"), "{message}");
    assert_eq!(action, Next::requeue(std::time::Duration::from_secs(5)));

    // Ready, but judged for an older spec of the issuer (just edited), or not judged at all
    // (just created): its controller is about to judge it, so the Certificate waits without a
    // word (no request at all), and looks again soon. (Past a minute of that, it reports the
    // issuer not ready: request_tests.rs.)
    for status in [Some(judged_ready(Some(1))), Some(IssuerStatus::default())] {
        let mut issuer = ca_issuer("ca", "root-ca");
        issuer.metadata.generation = Some(2);
        issuer.status = status;
        let (ctx, api) = context(vec![issuer], vec![], ts(NOW));
        let task = spawn_reconcile(&cert, &ctx);
        let action = finish_reconcile(task, ctx, api).await;
        assert_eq!(action, Next::requeue(std::time::Duration::from_secs(5)));
    }
}

#[tokio::test]
async fn invalid_spec_sets_ready_false_without_issuing() {
    let mut cert = certificate("web", "ca", &["web.apps.svc"]);
    cert.spec.duration = Some("30m".into());
    let (ctx, mut api) = context(vec![ca_issuer("ca", "root-ca")], vec![], ts(NOW));
    let task = spawn_reconcile(&cert, &ctx);
    let status = answer_status(api.expect(Method::PATCH, STATUS_PATH).await, &cert);
    let event = api.expect(Method::POST, EVENTS_PATH).await;
    assert_eq!(event.body["reason"], "InvalidSpec");
    event.echo();
    let action = finish_reconcile(task, ctx, api).await;
    assert_eq!(action, Next::await_change());
    assert_eq!(ready(&status), ("False".into(), "InvalidSpec".into()));
}

#[tokio::test]
async fn cluster_issuer_reads_its_ca_only_from_the_cluster_resource_namespace() {
    let ca = ca_secret(
        "root-ca",
        CLUSTER_RESOURCE_NAMESPACE,
        "root",
        ts(NOW) - SignedDuration::from_hours(1),
        30,
    );
    let mut cert = certificate("web", "cluster-ca", &["web.apps.svc"]);
    cert.spec.issuer_ref.kind = Some("ClusterIssuer".into());
    let issuers: Vec<Issuer> = vec![];
    let cluster: Vec<ClusterIssuer> = vec![ca_cluster_issuer("cluster-ca", "root-ca")];
    let (ctx, mut api) = context(issuers, cluster, ts(NOW));
    let task = spawn_reconcile(&cert, &ctx);
    api.expect(
        Method::GET,
        "/api/v1/namespaces/certkeeper-system/secrets/root-ca",
    )
    .await
    .ok(to_json(&ca));
    let written = expect_writes(&mut api, &cert).await;
    finish_reconcile(task, ctx, api).await;
    assert_eq!(
        written.secret["metadata"]["annotations"]["certkeeper.io/issuer-kind"],
        "ClusterIssuer"
    );
}

#[tokio::test]
async fn self_signed_issuer_writes_the_certificate_as_its_own_ca() {
    let mut cert = certificate("web", "self", &["web.apps.svc"]);
    cert.spec.secret_deletion_policy = Some(crate::api::SecretDeletionPolicy::Delete);
    let (ctx, mut api) = context(vec![self_signed_issuer("self")], vec![], ts(NOW));
    let task = spawn_reconcile(&cert, &ctx);
    let written = expect_writes(&mut api, &cert).await;
    finish_reconcile(task, ctx, api).await;
    assert_eq!(
        secret_data(&written.secret, "ca.crt"),
        secret_data(&written.secret, "tls.crt")
    );
    let owner = &written.secret["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Certificate");
    assert_eq!(owner["uid"], "uid-web");
    assert_eq!(owner["controller"], true);
}

#[tokio::test]
async fn failed_issuance_backs_off_and_a_spec_change_retries_at_once() {
    let ca = root_ca(ts(NOW));
    let cert = certificate("web", "ca", &["web.apps.svc"]);
    let (task, ctx, mut api) = start_under_ca(&cert, &ca, ts(NOW)).await;
    let invalid = || {
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Invalid", "code": 422,
               "message": "Secret \"web-tls\" is invalid: type: Invalid value: \"kubernetes.io/tls\": field is immutable"})
    };
    // The create-only apply refused: nothing is reported before the Secret is read.
    let apply = api.expect(Method::PATCH, SECRET_PATH).await;
    assert_eq!(
        apply.body["metadata"]["resourceVersion"],
        super::secret::NO_OBJECT_HOLDS
    );
    apply.respond(StatusCode::UNPROCESSABLE_ENTITY, invalid());
    api.expect(Method::GET, SECRET_PATH).await.not_found();
    let apply = api.expect(Method::PATCH, SECRET_PATH).await;
    assert!(apply.body["metadata"].get("resourceVersion").is_none());
    apply.respond(StatusCode::UNPROCESSABLE_ENTITY, invalid());
    let status = answer_status(api.expect(Method::PATCH, STATUS_PATH).await, &cert);
    let event = api.expect(Method::POST, EVENTS_PATH).await;
    assert_eq!(event.body["reason"], "IssuanceFailed");
    assert!(
        event.body["note"]
            .as_str()
            .unwrap()
            .contains("field is immutable")
    );
    assert!(
        event.body["note"]
            .as_str()
            .unwrap()
            .contains("2026-11-23T10:00:10Z")
    );
    event.echo();
    let action = finish_reconcile(task, ctx, api).await;
    assert_eq!(action, Next::requeue(std::time::Duration::from_secs(11)));
    assert_eq!(status["failedIssuanceAttempts"], 1);
    assert_eq!(status["lastFailureTime"], NOW);
    assert_eq!(ready(&status), ("False".into(), "DoesNotExist".into()));
    let issuing = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Issuing")
        .unwrap();
    assert_eq!(issuing["status"], "False");

    // Woken again 5 s later (say by its own status write): still backing off, no write.
    let cert = with_status(&cert, &status);
    let (task, ctx, mut api) = start_under_ca(&cert, &ca, ts(NOW) + SignedDuration::from_secs(5)).await;
    api.expect(Method::GET, SECRET_PATH).await.not_found();
    let action = finish_reconcile(task, ctx, api).await;
    assert_eq!(action, Next::requeue(std::time::Duration::from_secs(6)));

    // A spec change retries at once.
    let mut changed = cert.clone();
    changed.metadata.generation = Some(2);
    let (task, ctx, mut api) = start_under_ca(&changed, &ca, ts(NOW) + SignedDuration::from_secs(5)).await;
    api.expect(Method::GET, SECRET_PATH).await.not_found();
    let written = expect_writes(&mut api, &changed).await;
    finish_reconcile(task, ctx, api).await;
    assert_eq!(written.status.get("failedIssuanceAttempts"), None);
    assert_eq!(written.event["reason"], "Issued");
}

/// Issues `web` at NOW (24 h, renewBefore 8 h: due about 16 h in, its one expiry threshold
/// 4 h before notAfter), then returns it with its status and Secret once it is due with no
/// issuer left to renew it: not Ready, for the issuer's reason.
async fn issued_then_orphaned() -> (Certificate, Value) {
    let cert = certificate("web", "ca", &["web.apps.svc"]);
    let written = first_issuance(&cert, &root_ca(ts(NOW))).await;
    let cert = with_status(&cert, &written.status);
    // The issuer is gone and the renewal is due: every later reconcile reports IssuerNotFound.
    let (ctx, mut api) = context(vec![], vec![], ts(NOW) + SignedDuration::from_hours(17));
    let task = spawn_reconcile(&cert, &ctx);
    api.expect(Method::GET, SECRET_PATH)
        .await
        .ok(written.secret.clone());
    let status = answer_status(api.expect(Method::PATCH, STATUS_PATH).await, &cert);
    api.expect(Method::POST, EVENTS_PATH).await.echo();
    finish_reconcile(task, ctx, api).await;
    assert_eq!(ready(&status), ("False".into(), "IssuerNotFound".into()));
    (with_status(&cert, &status), written.secret)
}

/// Starts reconciling `cert` at `at` with no issuer in the caches.
fn orphaned_at(
    cert: &Certificate,
    at: Timestamp,
) -> (
    tokio::task::JoinHandle<Result<Next, crate::error::Error>>,
    Arc<Context>,
    ApiServer,
) {
    let (ctx, api) = context(vec![], vec![], at);
    (spawn_reconcile(cert, &ctx), ctx, api)
}

#[tokio::test]
async fn a_valid_certificate_stays_ready_without_its_issuer_until_it_is_due() {
    let cert = certificate("web", "ca", &["web.apps.svc"]);
    let written = first_issuance(&cert, &root_ca(ts(NOW))).await;
    let cert = with_status(&cert, &written.status);

    // The issuer is gone an hour later (a restarted controller: no verdict, one read). The
    // Secret is valid and not due: Ready stays True; Issuing=False says why nothing could be
    // issued now, with one Warning.
    let (task, ctx, mut api) = orphaned_at(&cert, ts(NOW) + SignedDuration::from_hours(1));
    api.expect(Method::GET, SECRET_PATH)
        .await
        .ok(written.secret.clone());
    let status = answer_status(api.expect(Method::PATCH, STATUS_PATH).await, &cert);
    let event = api.expect(Method::POST, EVENTS_PATH).await;
    assert_eq!(
        (&event.body["type"], &event.body["reason"]),
        (&json!("Warning"), &json!("IssuerNotFound"))
    );
    event.echo();
    let action = finish_reconcile(task, ctx, api).await;
    assert_eq!(ready(&status), ("True".into(), "Ready".into()));
    let issuing = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Issuing")
        .unwrap();
    assert_eq!(
        (&issuing["status"], &issuing["reason"]),
        (&json!("False"), &json!("IssuerNotFound"))
    );
    // Looked at again at the issuer recheck, well before the renewal time.
    assert_eq!(action, Next::requeue(std::time::Duration::from_secs(300)));

    // Due for renewal with the issuer still gone: Ready=False with the issuer's reason, and
    // the message says what the Secret needs. Warned about already: no second Warning.
    let cert = with_status(&cert, &status);
    let (task, ctx, mut api) = orphaned_at(&cert, ts(NOW) + SignedDuration::from_hours(17));
    api.expect(Method::GET, SECRET_PATH)
        .await
        .ok(written.secret.clone());
    let status = answer_status(api.expect(Method::PATCH, STATUS_PATH).await, &cert);
    finish_reconcile(task, ctx, api).await;
    assert_eq!(ready(&status), ("False".into(), "IssuerNotFound".into()));
    let message = status["conditions"][0]["message"].as_str().unwrap();
    assert!(message.contains("renewal time"), "{message}");
}

fn event_note(event: &Value) -> &str {
    event["note"].as_str().unwrap()
}

#[tokio::test]
async fn expiring_soon_is_warned_at_the_threshold_and_not_again_after_a_restart() {
    let (cert, secret) = issued_then_orphaned().await;
    let not_after = ts(NOW) + SignedDuration::from_hours(24);
    let threshold = not_after - SignedDuration::from_hours(4);

    // One minute before the threshold: nothing to write, and the controller comes back
    // exactly at the threshold (rounded up to the next second).
    let (task, ctx, mut api) = orphaned_at(&cert, threshold - SignedDuration::from_mins(1));
    api.expect(Method::GET, SECRET_PATH).await.ok(secret.clone());
    let action = finish_reconcile(task, ctx, api).await;
    assert_eq!(action, Next::requeue(std::time::Duration::from_secs(61)));

    // At the threshold: the marker in the status first, then the Warning.
    let (task, ctx, mut api) = orphaned_at(&cert, threshold);
    api.expect(Method::GET, SECRET_PATH).await.ok(secret.clone());
    let status = answer_status(api.expect(Method::PATCH, STATUS_PATH).await, &cert);
    let event = api.expect(Method::POST, EVENTS_PATH).await;
    assert_eq!(
        (&event.body["type"], &event.body["reason"]),
        (&json!("Warning"), &json!("ExpiringSoon"))
    );
    let note = event_note(&event.body).to_owned();
    event.echo();
    finish_reconcile(task, ctx, api).await;
    assert!(note.contains("less than 4h0m0s"), "{note}");
    assert!(note.contains("renewal was due at"), "{note}");
    assert_eq!(
        status["lastExpiryWarning"],
        json!({"revision": 1, "reason": "ExpiringSoon", "threshold": "4h0m0s"})
    );
    assert_eq!(ready(&status), ("False".into(), "IssuerNotFound".into()));

    // A restarted controller reads the marker from the status: no second warning, no write.
    let cert = with_status(&cert, &status);
    let (task, ctx, mut api) = orphaned_at(&cert, threshold + SignedDuration::from_mins(10));
    api.expect(Method::GET, SECRET_PATH).await.ok(secret);
    let action = finish_reconcile(task, ctx, api).await;
    // The issuer recheck comes before the expiry at notAfter.
    assert_eq!(action, Next::requeue(std::time::Duration::from_secs(300)));
}

#[tokio::test]
async fn ready_turns_false_with_reason_expired_at_not_after_and_warns_once() {
    let (cert, secret) = issued_then_orphaned().await;
    let not_after = ts(NOW) + SignedDuration::from_hours(24);

    let (task, ctx, mut api) = orphaned_at(&cert, not_after);
    api.expect(Method::GET, SECRET_PATH).await.ok(secret.clone());
    let status = answer_status(api.expect(Method::PATCH, STATUS_PATH).await, &cert);
    let event = api.expect(Method::POST, EVENTS_PATH).await;
    assert_eq!(event.body["reason"], "Expired");
    assert!(event_note(&event.body).contains("2026-11-24T10:00:00Z"));
    event.echo();
    finish_reconcile(task, ctx, api).await;
    assert_eq!(ready(&status), ("False".into(), "Expired".into()));
    // Several thresholds passed unseen are not replayed: Expired says it all.
    assert_eq!(status["lastExpiryWarning"]["reason"], "Expired");

    let cert = with_status(&cert, &status);
    let (task, ctx, mut api) = orphaned_at(&cert, not_after + SignedDuration::from_hours(1));
    api.expect(Method::GET, SECRET_PATH).await.ok(secret);
    finish_reconcile(task, ctx, api).await;
}

#[tokio::test]
async fn expiry_during_failure_backoff_is_reported_without_waiting_for_the_retry() {
    let ca = root_ca(ts(NOW));
    let cert = certificate("web", "ca", &["web.apps.svc"]);
    let written = first_issuance(&cert, &ca).await;
    let not_after = ts(NOW) + SignedDuration::from_hours(24);
    // The last renewal attempt failed 5 s before notAfter; its retry is 5 s after it.
    let mut status = written.status.clone();
    status["failedIssuanceAttempts"] = json!(1);
    status["lastFailureTime"] = json!("2026-11-24T09:59:55Z");
    status["lastExpiryWarning"] = json!({"revision": 1, "reason": "ExpiringSoon", "threshold": "4h0m0s"});
    let cert = with_status(&cert, &status);

    let (task, ctx, mut api) = start_under_ca(&cert, &ca, not_after).await;
    api.expect(Method::GET, SECRET_PATH)
        .await
        .ok(written.secret.clone());
    let status = answer_status(api.expect(Method::PATCH, STATUS_PATH).await, &cert);
    let event = api.expect(Method::POST, EVENTS_PATH).await;
    assert_eq!(event.body["reason"], "Expired");
    event.echo();
    let action = finish_reconcile(task, ctx, api).await;
    assert_eq!(ready(&status), ("False".into(), "Expired".into()));
    assert_eq!(action, Next::requeue(std::time::Duration::from_secs(6)));
}

#[tokio::test]
async fn a_new_revision_forgets_the_previous_expiry_warning() {
    let ca = root_ca(ts(NOW));
    let cert = certificate("web", "ca", &["web.apps.svc"]);
    let written = first_issuance(&cert, &ca).await;
    let mut status = written.status.clone();
    status["lastExpiryWarning"] = json!({"revision": 1, "reason": "ExpiringSoon", "threshold": "4h0m0s"});
    let cert = with_status(&cert, &status);

    // The Secret is gone: re-issued as revision 2, and the old warning is history.
    let (task, ctx, mut api) = start_under_ca(&cert, &ca, ts(NOW) + SignedDuration::from_hours(21)).await;
    api.expect(Method::GET, SECRET_PATH).await.not_found();
    let again = expect_writes(&mut api, &cert).await;
    finish_reconcile(task, ctx, api).await;
    assert_eq!(again.status["revision"], 2);
    assert_eq!(again.status.get("lastExpiryWarning"), None);
}

/// The issuer `ca` as its controller reports it mid-rotation: moved to the CA in `new_ca`
/// (a new root), still trusting the root in `old_ca`, in `phase` since `phase_since`.
fn rotating_issuer(
    old_ca: &k8s_openapi::api::core::v1::Secret,
    new_ca: &k8s_openapi::api::core::v1::Secret,
    phase: crate::api::RotationPhase,
    phase_since: Timestamp,
) -> Issuer {
    use crate::api::{IssuerStatus, Rotation, TrustAnchor, TrustAnchorRole};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    let root = |secret: &k8s_openapi::api::core::v1::Secret| {
        parse_certificate_chain(&secret_data(&to_json(secret), "tls.crt"))
            .unwrap()
            .remove(0)
    };
    let (old, new) = (root(old_ca), root(new_ca));
    let anchor = |c: &crate::pki::CertificateInfo, role| TrustAnchor {
        fingerprint_sha256: c.fingerprint_sha256.clone(),
        not_after: Some(Time(c.not_after)),
        role,
        since: Some(Time(phase_since)),
        certificate: c.to_pem(),
    };
    let mut issuer = ca_issuer("ca", "root-ca");
    issuer.status = Some(IssuerStatus {
        ca_fingerprint_sha256: Some(new.fingerprint_sha256.clone()),
        conditions: judged_ready(issuer.metadata.generation).conditions,
        trust_anchors: vec![
            anchor(&new, TrustAnchorRole::Current),
            anchor(&old, TrustAnchorRole::Previous),
        ],
        rotation: Some(Rotation {
            phase,
            started_at: Time(phase_since),
            phase_started_at: Time(phase_since),
            trust_distributed_at: None,
            previous_fingerprint_sha256: Some(old.fingerprint_sha256.clone()),
            ca_fingerprint_sha256: new.fingerprint_sha256.clone(),
            left_out: Vec::new(),
        }),
        ..Default::default()
    });
    issuer
}

fn roots_in(secret: &Value) -> Vec<String> {
    parse_certificate_chain(&secret_data(secret, "ca.crt"))
        .unwrap()
        .into_iter()
        .map(|c| c.fingerprint_sha256)
        .collect()
}

#[tokio::test]
async fn while_a_new_root_is_distributed_the_secret_gets_both_roots_and_keeps_its_certificate() {
    let cert = certificate("web", "ca", &["web.apps.svc"]);
    distribute_without_reissue(cert, root_ca(ts(NOW))).await;
}

#[tokio::test]
async fn a_leaf_capped_at_its_old_cas_expiry_is_not_a_spec_mismatch_under_the_new_ca() {
    // 90 days asked of a CA that expires in 29: the leaf is capped at the CA's notAfter.
    let mut cert = certificate("web", "ca", &["web.apps.svc"]);
    cert.spec.duration = Some("2160h".into());
    let old_ca = ca_secret(
        "root-ca",
        NAMESPACE,
        "root",
        ts(NOW) - SignedDuration::from_hours(24),
        30,
    );
    distribute_without_reissue(cert, old_ca).await;
}

/// Issues `cert` under `old_ca`, then shows a reconcile under a new root being distributed:
/// the Secret gets both roots and keeps its certificate and key; no Event.
async fn distribute_without_reissue(cert: Certificate, old_ca: k8s_openapi::api::core::v1::Secret) {
    let written = first_issuance(&cert, &old_ca).await;
    let cert = with_status(&cert, &written.status);
    let new_ca = ca_secret("root-ca", NAMESPACE, "root 2", ts(NOW), 365);
    let later = ts(NOW) + SignedDuration::from_hours(1);
    let issuer = rotating_issuer(&old_ca, &new_ca, crate::api::RotationPhase::Distributing, later);

    let (ctx, mut api) = context(vec![issuer], vec![], later);
    let task = spawn_reconcile(&cert, &ctx);
    api.expect(Method::GET, CA_SECRET_PATH).await.ok(to_json(&new_ca));
    api.expect(Method::GET, SECRET_PATH)
        .await
        .ok(written.secret.clone());
    let apply = api.expect(Method::PATCH, SECRET_PATH).await;
    let updated = apply.body.clone();
    apply.echo();
    // The status shows the renewal held back until the new root is everywhere; no Event:
    // nothing was issued.
    let status = answer_status(api.expect(Method::PATCH, STATUS_PATH).await, &cert);
    let action = finish_reconcile(task, ctx, api).await;
    // Looked at again within seconds while the issuer rotates: its cache may have lagged.
    assert_eq!(action, Next::requeue(std::time::Duration::from_secs(11)));
    let held: Timestamp = status["renewalTime"].as_str().unwrap().parse().unwrap();
    let planned: Timestamp = written.status["renewalTime"].as_str().unwrap().parse().unwrap();
    assert!(held > planned, "{held} > {planned}");
    assert_eq!(status["revision"], 1);
    assert_eq!(
        secret_data(&updated, "tls.crt"),
        secret_data(&written.secret, "tls.crt")
    );
    assert_eq!(
        secret_data(&updated, "tls.key"),
        secret_data(&written.secret, "tls.key")
    );
    let fingerprint = |s: &k8s_openapi::api::core::v1::Secret| {
        parse_certificate_chain(&secret_data(&to_json(s), "tls.crt"))
            .unwrap()
            .remove(0)
            .fingerprint_sha256
    };
    assert_eq!(roots_in(&updated), [fingerprint(&new_ca), fingerprint(&old_ca)]);
    assert_eq!(updated["metadata"]["annotations"]["certkeeper.io/revision"], "1");
}

#[tokio::test]
async fn while_reissuing_a_certificate_waits_for_its_slot_then_is_reissued_once() {
    let old_ca = root_ca(ts(NOW));
    let cert = certificate("web", "ca", &["web.apps.svc"]);
    let written = first_issuance(&cert, &old_ca).await;
    let cert = with_status(&cert, &written.status);
    let new_ca = ca_secret("root-ca", NAMESPACE, "root 2", ts(NOW), 365);
    let from = ts(NOW) + SignedDuration::from_hours(1);
    let issuer = rotating_issuer(&old_ca, &new_ca, crate::api::RotationPhase::Reissuing, from);
    let gate = crate::issuer::rotation::RotationGate::Spread {
        from,
        window: crate::issuer::rotation::RotationSettings::default().reissue_window,
    };
    let slot = gate.reissue_at("uid-web").unwrap();
    assert!(
        slot > from,
        "the jitter of uid-web puts it after the window's start"
    );
    // What Distributing left: the same certificate, both roots.
    let mut secret = written.secret.clone();
    let both = parse_certificate_chain(&secret_data(&to_json(&new_ca), "tls.crt"))
        .unwrap()
        .remove(0)
        .to_pem()
        + &parse_certificate_chain(&secret_data(&to_json(&old_ca), "tls.crt"))
            .unwrap()
            .remove(0)
            .to_pem();
    secret["data"]["ca.crt"] = json!(b64(both.as_bytes()));

    // Before its slot: read, nothing written, woken at the slot.
    let (ctx, mut api) = context(vec![issuer.clone()], vec![], from);
    let task = spawn_reconcile(&cert, &ctx);
    api.expect(Method::GET, CA_SECRET_PATH).await.ok(to_json(&new_ca));
    api.expect(Method::GET, SECRET_PATH).await.ok(secret.clone());
    let action = finish_reconcile(task, ctx, api).await;
    let wait = slot.duration_since(from).as_secs() as u64;
    assert_eq!(action, Next::requeue(std::time::Duration::from_secs(wait + 1)));

    // At its slot: re-issued under the new CA, both roots still trusted.
    let (ctx, mut api) = context(vec![issuer], vec![], slot);
    let task = spawn_reconcile(&cert, &ctx);
    api.expect(Method::GET, CA_SECRET_PATH).await.ok(to_json(&new_ca));
    api.expect(Method::GET, SECRET_PATH).await.ok(secret);
    let again = expect_writes(&mut api, &cert).await;
    finish_reconcile(task, ctx, api).await;
    assert!(again.event["note"].as_str().unwrap().contains("CARotated"));
    let new_root = parse_certificate_chain(&secret_data(&to_json(&new_ca), "tls.crt"))
        .unwrap()
        .remove(0);
    assert!(leaf_of(&again.secret).is_signed_by(&new_root));
    assert_eq!(roots_in(&again.secret).len(), 2);
    assert_eq!(again.status["revision"], 2);
}

/// A namespace being deleted refuses the Secret's creation (403 NamespaceTerminating): the
/// Certificate goes with it, so nothing is reported as failed (no status, no Event) and nothing
/// is tried again; the deletion is the next change.
#[tokio::test]
async fn a_namespace_being_deleted_is_no_failure_and_no_retry() {
    let ca = root_ca(ts(NOW));
    let cert = certificate("web", "ca", &["web.apps.svc"]);
    let (task, ctx, mut api) = start_under_ca(&cert, &ca, ts(NOW)).await;
    let apply = api.expect(Method::PATCH, SECRET_PATH).await;
    apply.respond(
        StatusCode::FORBIDDEN,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
               "message": "secrets \"web-tls\" is forbidden: unable to create new content in namespace apps because it is being terminated",
               "details": {"name": "web-tls", "kind": "secrets",
                           "causes": [{"reason": "NamespaceTerminating", "message": "namespace apps is being terminated",
                                       "field": "metadata.namespace"}]}}),
    );
    let metrics = ctx.metrics.clone();
    let action = finish_reconcile(task, ctx, api).await;
    assert_eq!(action, Next::await_change());
    let text = metrics.encode().unwrap();
    assert!(
        text.contains(r#"certkeeper_issuance_total{issuer_kind="Issuer",result="failure"} 0"#),
        "{text}"
    );
}
