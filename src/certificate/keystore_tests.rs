//! `spec.keystores` against a mocked API server: the stores written with the certificate, a
//! password change or a removal rewriting them without a new certificate, a missing password
//! Secret leaving the Secret alone.

use http::Method;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};

use crate::api::Certificate;
use crate::keystore::{self, StoreMaterial};
use crate::pki::parse_pem_certificates;
use crate::testing::*;

const NOW: &str = "2026-11-23T10:00:00Z";
const CA_SECRET_PATH: &str = "/api/v1/namespaces/apps/secrets/root-ca";
const SECRET_PATH: &str = "/api/v1/namespaces/apps/secrets/web-tls";
const PASSWORD_PATH: &str = "/api/v1/namespaces/apps/secrets/web-keystore";
const STATUS_PATH: &str = "/apis/certkeeper.io/v1/namespaces/apps/certificates/web/status";
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/apps/events";

/// `web` under the CA Issuer `ca`, with a PKCS#12 store whose password is in the Secret
/// `web-keystore` and a JKS store with a literal password.
fn keystore_certificate() -> Certificate {
    let mut cert = certificate("web", "ca", &["web.apps.svc"]);
    cert.spec.keystores = Some(Box::new(
        serde_json::from_value(json!({
            "pkcs12": {
                "create": true,
                "passwordSecretRef": {"name": "web-keystore", "key": "password"},
                "profile": "Modern2023",
            },
            "jks": {"create": true, "password": "jks-secret", "alias": "web"},
        }))
        .unwrap(),
    ));
    cert
}

fn password_secret(password: &str) -> Value {
    let mut secret = Secret::default();
    secret.metadata.name = Some("web-keystore".into());
    secret.metadata.namespace = Some("apps".into());
    secret.data = Some([("password".to_owned(), ByteString(password.as_bytes().to_vec()))].into());
    to_json(&secret)
}

/// Starts a reconcile of `cert` at `at` and answers the reads of the CA Secret and of the
/// password Secret (`None`: not found).
async fn start(
    cert: &Certificate,
    ca: &Secret,
    at: Timestamp,
    password: Option<&str>,
) -> (
    tokio::task::JoinHandle<Result<super::schedule::Next, crate::error::Error>>,
    std::sync::Arc<crate::context::Context>,
    ApiServer,
) {
    let (ctx, mut api) = context(vec![ca_issuer("ca", "root-ca")], vec![], at);
    let task = spawn_reconcile(cert, &ctx);
    api.expect(Method::GET, CA_SECRET_PATH).await.ok(to_json(ca));
    let read = api.expect(Method::GET, PASSWORD_PATH).await;
    match password {
        Some(password) => read.ok(password_secret(password)),
        None => read.not_found(),
    }
    (task, ctx, api)
}

fn data(secret: &Value, key: &str) -> Vec<u8> {
    secret_data(secret, key)
}

/// What the stores should hold, from the Secret's PEM keys.
fn check_stores(secret: &Value, pkcs12_password: &str) {
    let key_pem = String::from_utf8(data(secret, "tls.key")).unwrap();
    let key = pem::parse(&key_pem).unwrap().into_contents();
    let chain = parse_pem_certificates(&data(secret, "tls.crt")).unwrap();
    let cas = parse_pem_certificates(&data(secret, "ca.crt")).unwrap();
    let material = StoreMaterial {
        key_pkcs8: &key,
        chain: &chain,
        cas: &cas,
    };
    let p12 = keystore::pkcs12::read(&data(secret, "keystore.p12"), Some(pkcs12_password)).unwrap();
    assert!(material.in_pkcs12_keystore(&p12));
    let trust = keystore::pkcs12::read(&data(secret, "truststore.p12"), Some(pkcs12_password)).unwrap();
    assert!(material.in_truststore(&trust));
    let jks = keystore::jks::read(&data(secret, "keystore.jks"), "jks-secret").unwrap();
    assert!(material.in_jks_keystore(&jks));
    assert_eq!(jks.keys[0].alias.as_deref(), Some("web"));
    let jks_trust = keystore::jks::read(&data(secret, "truststore.jks"), "jks-secret").unwrap();
    assert!(material.in_truststore(&jks_trust));
}

/// Issues `cert` at NOW with the password `first`: the Secret and status written.
async fn issued(cert: &Certificate, ca: &Secret, first: &str) -> (Value, Value) {
    let (task, ctx, mut api) = start(cert, ca, ts(NOW), Some(first)).await;
    let apply = api.expect(Method::PATCH, SECRET_PATH).await;
    let secret = apply.body.clone();
    apply.echo();
    let status = answer_status(api.expect(Method::PATCH, STATUS_PATH).await, cert);
    api.expect(Method::POST, EVENTS_PATH).await.echo();
    finish_reconcile(task, ctx, api).await;
    (secret, status)
}

/// Reconciles `cert` an hour after NOW over `secret`, with the PKCS#12 password `password`:
/// the Secret it writes again, with no new certificate (no status write, no Event).
async fn rewritten(cert: &Certificate, ca: &Secret, secret: &Value, password: &str) -> Value {
    let (task, ctx, mut api) = start(cert, ca, ts(NOW) + SignedDuration::from_hours(1), Some(password)).await;
    api.expect(Method::GET, SECRET_PATH).await.ok(secret.clone());
    let apply = api.expect(Method::PATCH, SECRET_PATH).await;
    let rewritten = apply.body.clone();
    apply.echo();
    finish_reconcile(task, ctx, api).await;
    rewritten
}

#[tokio::test]
async fn the_stores_are_written_with_the_certificate() {
    let cert = keystore_certificate();
    let ca = root_ca(ts(NOW));
    let (secret, status) = issued(&cert, &ca, "p12-secret").await;
    check_stores(&secret, "p12-secret");
    assert_eq!(status["revision"], 1);
    // The password is in no key of the Secret and in no annotation.
    let text = secret.to_string();
    assert!(!text.contains("p12-secret") && !text.contains("jks-secret"));
}

#[tokio::test]
async fn stores_that_still_hold_the_certificate_are_not_written_again() {
    let cert = keystore_certificate();
    let ca = root_ca(ts(NOW));
    let (secret, status) = issued(&cert, &ca, "p12-secret").await;
    let cert = with_status(&cert, &status);
    let (task, ctx, mut api) = start(
        &cert,
        &ca,
        ts(NOW) + SignedDuration::from_hours(1),
        Some("p12-secret"),
    )
    .await;
    api.expect(Method::GET, SECRET_PATH).await.ok(secret);
    let refs = ctx.password_refs.clone();
    let action = finish_reconcile(task, ctx, api).await;
    // The password Secret's watch tells of a change: no polling.
    assert_ne!(
        action,
        super::schedule::Next::requeue(std::time::Duration::from_secs(31))
    );
    assert_eq!(refs.readers("apps", "web-keystore"), ["web"]);
}

#[tokio::test]
async fn a_changed_password_rewrites_the_stores_without_a_new_certificate() {
    let cert = keystore_certificate();
    let ca = root_ca(ts(NOW));
    let (secret, status) = issued(&cert, &ca, "p12-secret").await;
    let cert = with_status(&cert, &status);
    let rewritten = rewritten(&cert, &ca, &secret, "rotated").await;
    check_stores(&rewritten, "rotated");
    assert_eq!(
        data(&rewritten, "tls.crt"),
        data(&secret, "tls.crt"),
        "no new certificate"
    );
    assert_eq!(data(&rewritten, "tls.key"), data(&secret, "tls.key"));
    // The JKS stores, whose password did not change, are kept byte for byte.
    assert_eq!(data(&rewritten, "keystore.jks"), data(&secret, "keystore.jks"));
    assert!(keystore::pkcs12::read(&data(&rewritten, "keystore.p12"), Some("p12-secret")).is_err());
}

#[tokio::test]
async fn a_tampered_store_is_written_again() {
    let cert = keystore_certificate();
    let ca = root_ca(ts(NOW));
    let (mut secret, status) = issued(&cert, &ca, "p12-secret").await;
    let cert = with_status(&cert, &status);
    secret["data"]["keystore.jks"] = json!(b64(b"garbage"));
    let rewritten = rewritten(&cert, &ca, &secret, "p12-secret").await;
    check_stores(&rewritten, "p12-secret");
    assert_eq!(data(&rewritten, "keystore.p12"), data(&secret, "keystore.p12"));
}

#[tokio::test]
async fn a_store_no_longer_asked_for_is_removed() {
    let cert = keystore_certificate();
    let ca = root_ca(ts(NOW));
    let (secret, status) = issued(&cert, &ca, "p12-secret").await;
    let mut cert = with_status(&cert, &status);
    if let Some(stores) = cert.spec.keystores.as_mut() {
        stores.jks = None;
    }
    cert.metadata.generation = Some(2);
    let (task, ctx, mut api) = start(
        &cert,
        &ca,
        ts(NOW) + SignedDuration::from_hours(1),
        Some("p12-secret"),
    )
    .await;
    api.expect(Method::GET, SECRET_PATH).await.ok(secret.clone());
    let apply = api.expect(Method::PATCH, SECRET_PATH).await;
    let rewritten = apply.body.clone();
    apply.echo();
    answer_status(api.expect(Method::PATCH, STATUS_PATH).await, &cert);
    finish_reconcile(task, ctx, api).await;
    let keys: Vec<&str> = rewritten["data"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["ca.crt", "keystore.p12", "tls.crt", "tls.key", "truststore.p12"]
    );
    assert_eq!(data(&rewritten, "tls.crt"), data(&secret, "tls.crt"));
}

#[tokio::test]
async fn a_missing_password_secret_leaves_the_secret_alone_and_says_why() {
    let cert = keystore_certificate();
    let (task, ctx, mut api) = start(&cert, &root_ca(ts(NOW)), ts(NOW), None).await;
    let status = answer_status(api.expect(Method::PATCH, STATUS_PATH).await, &cert);
    let event = api.expect(Method::POST, EVENTS_PATH).await;
    let body = event.body.clone();
    event.echo();
    let action = finish_reconcile(task, ctx, api).await;
    let ready = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "KeystorePasswordUnavailable");
    assert_eq!(
        ready["message"],
        "spec.keystores.pkcs12.passwordSecretRef: Secret \"apps/web-keystore\" not found"
    );
    assert_eq!(body["type"], "Warning");
    assert_eq!(body["reason"], "KeystorePasswordUnavailable");
    assert_eq!(
        action,
        super::schedule::Next::requeue(std::time::Duration::from_secs(31))
    );
}

#[tokio::test]
async fn a_password_secret_without_its_key_is_reported_with_the_key() {
    let cert = keystore_certificate();
    let (ctx, mut api) = context(vec![ca_issuer("ca", "root-ca")], vec![], ts(NOW));
    let task = spawn_reconcile(&cert, &ctx);
    api.expect(Method::GET, CA_SECRET_PATH)
        .await
        .ok(to_json(&root_ca(ts(NOW))));
    let mut wrong_key = password_secret("x");
    wrong_key["data"] = json!({"pass": b64(b"x")});
    api.expect(Method::GET, PASSWORD_PATH).await.ok(wrong_key);
    let status = answer_status(api.expect(Method::PATCH, STATUS_PATH).await, &cert);
    api.expect(Method::POST, EVENTS_PATH).await.echo();
    finish_reconcile(task, ctx, api).await;
    assert!(
        status.to_string().contains(
            "spec.keystores.pkcs12.passwordSecretRef: Secret \\\"apps/web-keystore\\\" has no key \\\"password\\\""
        ),
        "{status}"
    );
}
