//! Revocation through the controllers, end to end but for the cluster: the Certificate
//! controller revokes an annotated Certificate (record, new key), the issuer controller signs a
//! CRL over the record into its ConfigMap and serves it with OCSP, and `openssl verify
//! -crl_check` and `openssl ocsp` refuse the revoked leaf and accept its successor.

use std::sync::Arc;

use http::Method;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use serde_json::Value;

use super::openssl::{openssl, openssl_available, write};
use crate::api::{Certificate, CertificateRevocation};
use crate::testing::*;

const CA_SECRET_PATH: &str = "/api/v1/namespaces/apps/secrets/root-ca";
const SECRET_PATH: &str = "/api/v1/namespaces/apps/secrets/web-tls";
const STATUS_PATH: &str = "/apis/certkeeper.io/v1/namespaces/apps/certificates/web/status";
const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/apps/events";

/// One Certificate reconcile at `at` with the Secret holding `secret` (None: missing); returns
/// the record written (if any) and the new Secret.
async fn certificate_reconcile(
    cert: &Certificate,
    ca: &k8s_openapi::api::core::v1::Secret,
    secret: Option<&Value>,
    records: &Writer<DeserializeGuard<CertificateRevocation>>,
    at: jiff::Timestamp,
) -> (Option<Value>, Value) {
    let (ctx, mut api) = context_with_records(
        vec![ca_issuer("ca", "root-ca")],
        vec![],
        records.as_reader(),
        Arc::new(move || at),
    );
    let task = tokio::spawn(crate::certificate::reconcile::reconcile(
        Arc::new(DeserializeGuard(Ok(cert.clone()))),
        ctx.clone(),
    ));
    api.expect(Method::GET, CA_SECRET_PATH).await.ok(to_json(ca));
    // A first issuance (no Secret yet, none in the status) creates the Secret without a read.
    if let Some(secret) = secret {
        api.expect(Method::GET, SECRET_PATH).await.ok(secret.clone());
    }
    let mut record = None;
    if let Some(secret) = secret {
        let seen = api
            .expect(
                Method::PATCH,
                &format!(
                    "/apis/certkeeper.io/v1/namespaces/apps/certificaterevocations/ca-{}",
                    leaf_serial(secret)
                ),
            )
            .await;
        record = Some(seen.body.clone());
        seen.echo();
    }
    let apply = api.expect(Method::PATCH, SECRET_PATH).await;
    let written = apply.body.clone();
    apply.echo();
    answer_status(api.expect(Method::PATCH, STATUS_PATH).await, cert);
    let events = if secret.is_some() { 2 } else { 1 };
    for _ in 0..events {
        api.expect(Method::POST, EVENTS_PATH).await.echo();
    }
    task.await.unwrap().unwrap();
    drop(ctx);
    api.expect_no_more().await;
    (record, written)
}

fn leaf_serial(secret: &Value) -> String {
    crate::pki::parse_certificate_chain(&secret_data(secret, "tls.crt")).unwrap()[0]
        .serial_hex
        .clone()
}

#[tokio::test]
async fn openssl_refuses_a_certificate_revoked_through_the_controllers_and_accepts_its_successor() {
    if !openssl_available(
        "openssl_refuses_a_certificate_revoked_through_the_controllers_and_accepts_its_successor",
    ) {
        return;
    }
    // openssl checks CRL and OCSP times against its own clock: run near it.
    let now = crate::certificate::spec::truncate_to_second(jiff::Timestamp::now());
    let issued_at = now - jiff::SignedDuration::from_hours(1);
    let ca = root_ca(issued_at);
    let cert = certificate("web", "ca", &["web.apps.svc"]);
    let mut records = Writer::default();

    let (_, first) = certificate_reconcile(&cert, &ca, None, &records, issued_at).await;
    let mut revoked = cert.clone();
    revoked.metadata.annotations = Some(
        [
            (
                "certkeeper.io/revoke-requested-at".to_owned(),
                (issued_at + jiff::SignedDuration::from_mins(30)).to_string(),
            ),
            (
                "certkeeper.io/revocation-reason".to_owned(),
                "keyCompromise".to_owned(),
            ),
        ]
        .into(),
    );
    let (record, second) = certificate_reconcile(&revoked, &ca, Some(&first), &records, now).await;
    let record: CertificateRevocation = serde_json::from_value(record.unwrap()).unwrap();
    // The watch brings the record into the cache.
    let record_json = to_json(&record);
    records.apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(record))));

    // The issuer controller publishes the CRL over it.
    let issuer = ca_issuer("ca", "root-ca");
    let (ctx, mut api) = context_with_records(vec![], vec![], records.as_reader(), Arc::new(move || now));
    let task = tokio::spawn(crate::issuer::reconcile::reconcile(
        Arc::new(DeserializeGuard(Ok(issuer.clone()))),
        ctx.clone(),
    ));
    api.expect(Method::GET, CA_SECRET_PATH).await.ok(to_json(&ca));
    let status = api
        .expect(
            Method::PATCH,
            "/apis/certkeeper.io/v1/namespaces/apps/issuers/ca/status",
        )
        .await;
    let mut answer = to_json(&issuer);
    answer["status"] = status.body["status"].clone();
    status.ok(answer);
    api.expect(Method::GET, "/api/v1/namespaces/apps/configmaps/ca-crl")
        .await
        .not_found();
    let apply = api
        .expect(Method::PATCH, "/api/v1/namespaces/apps/configmaps/ca-crl")
        .await;
    let configmap: k8s_openapi::api::core::v1::ConfigMap =
        serde_json::from_value(apply.body.clone()).unwrap();
    apply.echo();
    let listed = api
        .expect(
            Method::PATCH,
            &format!(
                "/apis/certkeeper.io/v1/namespaces/apps/certificaterevocations/ca-{}/status",
                leaf_serial(&first)
            ),
        )
        .await;
    assert_eq!(listed.body["status"]["conditions"][0]["reason"], "Published");
    let mut answer = record_json;
    answer["status"] = listed.body["status"].clone();
    listed.ok(answer);
    task.await.unwrap().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    write(path, "ca.crt", secret_data(&first, "ca.crt"));
    write(path, "old.crt", secret_data(&first, "tls.crt"));
    write(path, "new.crt", secret_data(&second, "tls.crt"));
    write(path, "ca.crl.pem", &configmap.data.unwrap()["ca.crl.pem"]);
    let verify = |leaf: &str| {
        openssl(
            path,
            &[
                "verify",
                "-crl_check",
                "-CAfile",
                "ca.crt",
                "-CRLfile",
                "ca.crl.pem",
                leaf,
            ],
        )
        .unwrap()
    };
    let (ok, out) = verify("old.crt");
    assert!(!ok && out.contains("certificate revoked"), "{out}");
    let (ok, out) = verify("new.crt");
    assert!(ok, "{out}");

    // OCSP, as the endpoint every replica serves answers it.
    for (leaf, expected) in [("old.crt", "old.crt: revoked"), ("new.crt", "new.crt: good")] {
        let (ok, out) = openssl(
            path,
            &[
                "ocsp",
                "-issuer",
                "ca.crt",
                "-cert",
                leaf,
                "-reqout",
                "req.der",
                "-no_nonce",
            ],
        )
        .unwrap();
        assert!(ok, "{out}");
        let request = std::fs::read(path.join("req.der")).unwrap();
        let response = ctx.pki.respond(&Method::POST, "/ocsp/apps/ca", &request, now);
        assert_eq!(response.status(), http::StatusCode::OK);
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        write(path, "resp.der", body.as_ref());
        let (ok, out) = openssl(
            path,
            &[
                "ocsp",
                "-respin",
                "resp.der",
                "-issuer",
                "ca.crt",
                "-cert",
                leaf,
                "-CAfile",
                "ca.crt",
                "-no_nonce",
            ],
        )
        .unwrap();
        assert!(ok, "{out}");
        assert!(out.contains("Response verify OK"), "{out}");
        assert!(out.contains(expected), "{out}");
    }
    drop(ctx);
    api.expect_no_more().await;
}
