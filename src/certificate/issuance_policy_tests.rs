//! A Certificate under a guarded issuer, against the mocked API: every request the reconcile
//! makes when a CertificatePolicy denies it, allows it after an edit, denies its renewal after
//! a tightening, or cannot be read.

use std::sync::Arc;

use super::schedule::Next;
use http::Method;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::api::CertificatePolicy;
use crate::context::Context;
use crate::issuance_policy::{CompiledPolicy, Policies};
use crate::testing::*;

const NOW: &str = "2026-11-23T10:00:00Z";
const CA_SECRET_PATH: &str = "/api/v1/namespaces/apps/secrets/root-ca";
const SECRET_PATH: &str = "/api/v1/namespaces/apps/secrets/web-tls";
const STATUS_PATH: &str = "/apis/certkeeper.io/v1/namespaces/apps/certificates/web/status";
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/apps/events";

/// A policy guarding the Issuer `ca` that allows `dns_patterns` and nothing else.
fn policy(dns_patterns: &[&str]) -> CompiledPolicy {
    let spec = json!({
        "selector": {"issuerRef": {"kind": "Issuer", "name": "ca"}},
        "allowed": {"dnsNames": {"values": dns_patterns}},
    });
    CompiledPolicy::compile(&CertificatePolicy::new(
        "team-names",
        serde_json::from_value(spec).unwrap(),
    ))
}

/// A context at `at` with the CA Issuer `ca` and `policies` (listed, no namespace labels).
fn context_with(policies: Vec<CompiledPolicy>, at: Timestamp) -> (Arc<Context>, ApiServer) {
    let (mut ctx, api) = context(vec![ca_issuer("ca", "root-ca")], vec![], at);
    Arc::get_mut(&mut ctx).expect("a fresh context").policies =
        Policies::fixed(policies, Default::default(), false);
    (ctx, api)
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap()
}

const DENIAL: &str = "denied by CertificatePolicy \"team-names\": spec.dnsNames \"web.apps.svc\" is not allowed \
                      (allowed: *.other.svc)";

#[tokio::test]
async fn a_denied_certificate_gets_nothing_signed_and_says_why() {
    let cert = certificate("web", "ca", &["web.apps.svc"]);
    let (ctx, mut api) = context_with(vec![policy(&["*.other.svc"])], ts(NOW));
    let task = spawn_reconcile(&cert, &ctx);
    api.expect(Method::GET, CA_SECRET_PATH)
        .await
        .ok(to_json(&root_ca(ts(NOW))));
    // Nothing in the Secret to keep: Ready=False, Denied, one Warning; no Secret write.
    api.expect(Method::GET, SECRET_PATH).await.not_found();
    let status = answer_status(api.expect(Method::PATCH, STATUS_PATH).await, &cert);
    let event = api.expect(Method::POST, EVENTS_PATH).await;
    let said = format!("{DENIAL} (the Secret needs a new certificate: the Secret does not exist)");
    assert_eq!(
        (&event.body["type"], &event.body["reason"], &event.body["note"]),
        (&json!("Warning"), &json!("Denied"), &json!(said))
    );
    event.echo();
    let metrics = ctx.metrics.encode().unwrap();
    finish_reconcile(task, ctx, api).await;
    let ready = condition(&status, "Ready");
    assert_eq!(
        (&ready["status"], &ready["reason"], &ready["message"]),
        (&json!("False"), &json!("Denied"), &json!(said))
    );
    assert!(
        metrics.contains(r#"certkeeper_issuance_total{issuer_kind="Issuer",result="denied"} 1"#),
        "{metrics}"
    );

    // Looked at again, unchanged: no second status write, no second Warning.
    let cert = with_status(&cert, &status);
    let (ctx, mut api) = context_with(
        vec![policy(&["*.other.svc"])],
        ts(NOW) + SignedDuration::from_mins(1),
    );
    let task = spawn_reconcile(&cert, &ctx);
    api.expect(Method::GET, CA_SECRET_PATH)
        .await
        .ok(to_json(&root_ca(ts(NOW))));
    api.expect(Method::GET, SECRET_PATH).await.not_found();
    let metrics = ctx.metrics.encode().unwrap();
    finish_reconcile(task, ctx, api).await;
    assert!(
        !metrics.contains(r#"result="denied"} 1"#),
        "counted twice: {metrics}"
    );
}

#[tokio::test]
async fn a_certificate_is_issued_once_the_policy_allows_it() {
    let cert = certificate("web", "ca", &["web.apps.svc"]);
    let (ctx, mut api) = context_with(vec![policy(&["*.other.svc", "*.{namespace}.svc"])], ts(NOW));
    let task = spawn_reconcile(&cert, &ctx);
    api.expect(Method::GET, CA_SECRET_PATH)
        .await
        .ok(to_json(&root_ca(ts(NOW))));
    let apply = api.expect(Method::PATCH, SECRET_PATH).await;
    apply.echo();
    let status = answer_status(api.expect(Method::PATCH, STATUS_PATH).await, &cert);
    let event = api.expect(Method::POST, EVENTS_PATH).await;
    assert_eq!(event.body["reason"], "Issued");
    event.echo();
    finish_reconcile(task, ctx, api).await;
    assert_eq!(condition(&status, "Ready")["status"], "True");
}

#[tokio::test]
async fn a_policy_tightened_after_issuance_denies_the_renewal_only() {
    // Issued while nothing guarded the issuer.
    let cert = certificate("web", "ca", &["web.apps.svc"]);
    let (ctx, mut api) = context_with(vec![], ts(NOW));
    let task = spawn_reconcile(&cert, &ctx);
    api.expect(Method::GET, CA_SECRET_PATH)
        .await
        .ok(to_json(&root_ca(ts(NOW))));
    let apply = api.expect(Method::PATCH, SECRET_PATH).await;
    let secret = apply.body.clone();
    apply.echo();
    let status = answer_status(api.expect(Method::PATCH, STATUS_PATH).await, &cert);
    api.expect(Method::POST, EVENTS_PATH).await.echo();
    finish_reconcile(task, ctx, api).await;
    let cert = with_status(&cert, &status);

    // An hour later a policy no longer allows its name: the certificate in place stays (Ready),
    // Issuing=False says it could not be renewed, one Warning.
    let (ctx, mut api) = context_with(
        vec![policy(&["*.other.svc"])],
        ts(NOW) + SignedDuration::from_hours(1),
    );
    let task = spawn_reconcile(&cert, &ctx);
    api.expect(Method::GET, CA_SECRET_PATH)
        .await
        .ok(to_json(&root_ca(ts(NOW))));
    api.expect(Method::GET, SECRET_PATH).await.ok(secret.clone());
    let status = answer_status(api.expect(Method::PATCH, STATUS_PATH).await, &cert);
    let event = api.expect(Method::POST, EVENTS_PATH).await;
    assert_eq!(
        (&event.body["reason"], &event.body["note"]),
        (&json!("Denied"), &json!(DENIAL))
    );
    event.echo();
    finish_reconcile(task, ctx, api).await;
    assert_eq!(condition(&status, "Ready")["status"], "True");
    let issuing = condition(&status, "Issuing");
    assert_eq!(
        (&issuing["status"], &issuing["reason"]),
        (&json!("False"), &json!("Denied"))
    );
    let cert = with_status(&cert, &status);

    // Due for renewal: denied, Ready=False; warned already, so no second Warning.
    let (ctx, mut api) = context_with(
        vec![policy(&["*.other.svc"])],
        ts(NOW) + SignedDuration::from_hours(17),
    );
    let task = spawn_reconcile(&cert, &ctx);
    api.expect(Method::GET, CA_SECRET_PATH)
        .await
        .ok(to_json(&root_ca(ts(NOW))));
    api.expect(Method::GET, SECRET_PATH).await.ok(secret);
    let status = answer_status(api.expect(Method::PATCH, STATUS_PATH).await, &cert);
    finish_reconcile(task, ctx, api).await;
    let ready = condition(&status, "Ready");
    assert_eq!(
        (&ready["status"], &ready["reason"]),
        (&json!("False"), &json!("Denied"))
    );
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.starts_with(DENIAL) && message.contains("renewal time"),
        "{message}"
    );
}

#[tokio::test]
async fn a_policy_that_does_not_parse_denies() {
    let spec = json!({
        "selector": {"issuerRef": {"kind": "Issuer", "name": "ca"}},
        "allowed": {"dnsNames": {"values": ["*.{namespace}.svc"]}},
        "constraints": {"minDuration": "48h", "maxDuration": "24h"},
    });
    let broken = CompiledPolicy::compile(&CertificatePolicy::new(
        "broken",
        serde_json::from_value(spec).unwrap(),
    ));
    let cert = certificate("web", "ca", &["web.apps.svc"]);
    let (ctx, mut api) = context_with(vec![broken], ts(NOW));
    let task = spawn_reconcile(&cert, &ctx);
    api.expect(Method::GET, CA_SECRET_PATH)
        .await
        .ok(to_json(&root_ca(ts(NOW))));
    api.expect(Method::GET, SECRET_PATH).await.not_found();
    let status = answer_status(api.expect(Method::PATCH, STATUS_PATH).await, &cert);
    api.expect(Method::POST, EVENTS_PATH).await.echo();
    finish_reconcile(task, ctx, api).await;
    let ready = condition(&status, "Ready");
    assert_eq!(ready["reason"], "Denied");
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.contains("CertificatePolicy \"broken\" is not Ready") && message.contains("minDuration"),
        "{message}"
    );
}

#[tokio::test]
async fn nothing_is_signed_while_the_policies_are_not_listed() {
    let cert = certificate("web", "ca", &["web.apps.svc"]);
    let (mut ctx, mut api) = context(vec![ca_issuer("ca", "root-ca")], vec![], ts(NOW));
    Arc::get_mut(&mut ctx).unwrap().policies = Policies::unlisted(false);
    let task = spawn_reconcile(&cert, &ctx);
    api.expect(Method::GET, CA_SECRET_PATH)
        .await
        .ok(to_json(&root_ca(ts(NOW))));
    api.expect(Method::GET, SECRET_PATH).await.not_found();
    let status = answer_status(api.expect(Method::PATCH, STATUS_PATH).await, &cert);
    api.expect(Method::POST, EVENTS_PATH).await.echo();
    let action = finish_reconcile(task, ctx, api).await;
    assert_eq!(condition(&status, "Ready")["reason"], "PolicyUnavailable");
    assert_eq!(action, Next::requeue(std::time::Duration::from_secs(5)));
}

/// The CA Secret `root-ca` holding a root whose name constraints permit only `team.svc`.
fn constrained_root() -> k8s_openapi::api::core::v1::Secret {
    use crate::pki::{
        CertificateTemplate, KeyAlgorithm, KeyEncoding, KeySpec, NameConstraints, NameSubtrees, PrivateKey,
        Usage, sign_self_signed,
    };
    let key = PrivateKey::generate(KeySpec {
        algorithm: KeyAlgorithm::Ecdsa,
        size: 256,
    })
    .unwrap();
    let not_before = ts(NOW) - SignedDuration::from_hours(24);
    let template = CertificateTemplate {
        common_name: Some("team-ca".into()),
        not_before,
        not_after: not_before + SignedDuration::from_hours(24 * 365),
        is_ca: true,
        usages: vec![Usage::DigitalSignature, Usage::CertSign, Usage::CrlSign],
        name_constraints: Some(NameConstraints {
            critical: true,
            permitted: NameSubtrees {
                dns_domains: vec!["team.svc".into()],
                ..Default::default()
            },
            excluded: NameSubtrees::default(),
        }),
        ..Default::default()
    };
    let issued = sign_self_signed(&template, &key).unwrap();
    let key_pem = key.to_pem(KeyEncoding::Pkcs8).unwrap();
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "root-ca", "namespace": NAMESPACE, "resourceVersion": "1"},
        "data": {
            "tls.crt": b64(issued.chain_pem.as_bytes()),
            "tls.key": b64(key_pem.as_bytes()),
            "ca.crt": b64(issued.ca_pem.as_bytes()),
        },
    }))
    .unwrap()
}

#[tokio::test]
async fn a_ca_issuer_refuses_a_name_outside_its_cas_name_constraints() {
    // No policy at all: the CA's own constraints are enough to refuse.
    let cert = certificate("web", "ca", &["web.apps.svc"]);
    let (ctx, mut api) = context_with(vec![], ts(NOW));
    let task = spawn_reconcile(&cert, &ctx);
    api.expect(Method::GET, CA_SECRET_PATH)
        .await
        .ok(to_json(&constrained_root()));
    api.expect(Method::GET, SECRET_PATH).await.not_found();
    let status = answer_status(api.expect(Method::PATCH, STATUS_PATH).await, &cert);
    let event = api.expect(Method::POST, EVENTS_PATH).await;
    assert_eq!(event.body["reason"], "Denied");
    event.echo();
    finish_reconcile(task, ctx, api).await;
    let ready = condition(&status, "Ready");
    assert_eq!(ready["reason"], "Denied");
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.contains("\"web.apps.svc\" is outside the name constraints of CA \"team-ca\""),
        "{message}"
    );

    // Inside them: issued.
    let inside = certificate("web", "ca", &["web.team.svc"]);
    let (ctx, mut api) = context_with(vec![], ts(NOW));
    let task = spawn_reconcile(&inside, &ctx);
    api.expect(Method::GET, CA_SECRET_PATH)
        .await
        .ok(to_json(&constrained_root()));
    api.expect(Method::PATCH, SECRET_PATH).await.echo();
    answer_status(api.expect(Method::PATCH, STATUS_PATH).await, &inside);
    api.expect(Method::POST, EVENTS_PATH).await.echo();
    finish_reconcile(task, ctx, api).await;
}
