//! `status certificate`: one screen from four reads.

use http::Method;

use super::*;
use crate::cli::status::{StatusArgs, StatusObject, run};
use crate::cli::{CliError, NamespaceArgs, OutputFormat};
use crate::testing::{ca_secret, cli_client, to_json};

fn args(name: &str, output: Option<OutputFormat>) -> StatusArgs {
    StatusArgs {
        cluster: Default::default(),
        object: StatusObject::Certificate {
            name: name.into(),
            namespace: NamespaceArgs { namespace: None },
            output,
        },
    }
}

fn ready_status() -> Value {
    json!({
        "conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                        "message": "Certificate is up to date and has not expired",
                        "lastTransitionTime": "2026-11-30T11:00:00Z", "observedGeneration": 1}],
        "notBefore": "2026-11-30T11:00:00Z", "notAfter": "2026-12-01T11:00:00Z",
        "renewalTime": "2026-12-01T03:00:00Z", "revision": 3
    })
}

fn issuer_json(ready: &str, reason: &str, message: &str) -> Value {
    json!({
        "apiVersion": "certkeeper.io/v1", "kind": "Issuer",
        "metadata": {"name": "ca", "namespace": NAMESPACE},
        "spec": {"ca": {"secretName": "ca-key-pair"}},
        "status": {"conditions": [{"type": "Ready", "status": ready, "reason": reason,
                   "message": message, "lastTransitionTime": "2026-11-30T10:00:00Z"}]}
    })
}

fn event(reason: &str, note: &str, at: &str) -> Value {
    json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": format!("web.{reason}"), "namespace": NAMESPACE},
        "eventTime": at, "type": "Normal", "reason": reason, "note": note,
        "reportingController": "certkeeper.io/controller", "reportingInstance": "certkeeper",
        "action": reason,
        "regarding": {"kind": "Certificate", "name": "web", "namespace": NAMESPACE}
    })
}

#[tokio::test]
async fn status_shows_conditions_issuer_secret_contents_and_events() {
    let (client, mut server) = cli_client();
    let command = spawn(async move { run(&client, &args("web", None), now()).await });

    server
        .expect(
            Method::GET,
            "/apis/certkeeper.io/v1/namespaces/apps/certificates/web",
        )
        .await
        .ok(certificate_json("web", ready_status()));
    server
        .expect(Method::GET, "/apis/certkeeper.io/v1/namespaces/apps/issuers/ca")
        .await
        .ok(issuer_json("True", "KeyPairVerified", "Signing CA verified"));
    let secret = ca_secret(
        "web-tls",
        NAMESPACE,
        "web.apps.svc",
        ts("2026-11-30T11:00:00Z"),
        1,
    );
    server
        .expect(Method::GET, "/api/v1/namespaces/apps/secrets/web-tls")
        .await
        .ok(to_json(&secret));
    let events = server
        .expect(Method::GET, "/apis/events.k8s.io/v1/namespaces/apps/events")
        .await;
    assert!(
        events
            .query
            .contains("fieldSelector=regarding.kind%3DCertificate%2Cregarding.name%3Dweb"),
        "{}",
        events.query
    );
    events.ok(list(
        "EventList",
        vec![
            event(
                "Renewed",
                "Renewed (Renewing), serial 0a",
                "2026-11-30T11:00:00.000000Z",
            ),
            event("Issued", "Issued serial 01", "2026-11-29T11:00:00.000000Z"),
        ],
    ));

    let text = command.await.unwrap().unwrap();
    assert_printable(&text);
    for expected in [
        "Certificate apps/web",
        "Ready: True (Ready)",
        "revision: 3",
        "notAfter: 2026-12-01T11:00:00Z (23h 0m left)",
        "renewalTime: 2026-12-01T03:00:00Z",
        "Issuer apps/ca: Ready True (KeyPairVerified)",
        "Secret apps/web-tls:",
        "chain verified: yes",
        "private key: ECDSA P-256, matches the certificate",
        "subject: CN=web.apps.svc",
        "  2026-11-29T11:00:00Z Normal Issued: Issued serial 01",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    let issued = text.find("Issued").unwrap();
    let renewed = text.find("Renewed").unwrap();
    assert!(issued < renewed, "events oldest first:\n{text}");
}

#[tokio::test]
async fn status_as_json_for_scripts() {
    let (client, mut server) = cli_client();
    let command = spawn(async move { run(&client, &args("web", Some(OutputFormat::Json)), now()).await });
    let status = json!({"conditions": [{"type": "Ready", "status": "False",
        "reason": "IssuerNotReady", "message": "Issuer \"ca\" is not ready",
        "lastTransitionTime": "2026-11-30T11:00:00Z"}]});
    server
        .expect(
            Method::GET,
            "/apis/certkeeper.io/v1/namespaces/apps/certificates/web",
        )
        .await
        .ok(certificate_json("web", status));
    server
        .expect(Method::GET, "/apis/certkeeper.io/v1/namespaces/apps/issuers/ca")
        .await
        .ok(issuer_json(
            "False",
            "SecretNotFound",
            "Secret apps/ca-key-pair does not exist",
        ));
    server
        .expect(Method::GET, "/api/v1/namespaces/apps/secrets/web-tls")
        .await
        .not_found();
    server
        .expect(Method::GET, "/apis/events.k8s.io/v1/namespaces/apps/events")
        .await
        .ok(list("EventList", vec![]));

    let report: Value = serde_json::from_str(&command.await.unwrap().unwrap()).unwrap();
    assert_eq!(report["ready"], "False (IssuerNotReady)");
    assert_eq!(report["issuer"]["ready"], "False");
    assert_eq!(report["issuer"]["reason"], "SecretNotFound");
    assert_eq!(report["secret"]["unavailable"], "not found");
    assert_eq!(report["events"], json!([]));
}

#[tokio::test]
async fn a_secret_the_user_may_not_read_is_reported_not_fatal() {
    let (client, mut server) = cli_client();
    let command = spawn(async move { run(&client, &args("web", None), now()).await });
    server
        .expect(
            Method::GET,
            "/apis/certkeeper.io/v1/namespaces/apps/certificates/web",
        )
        .await
        .ok(certificate_json("web", ready_status()));
    server
        .expect(Method::GET, "/apis/certkeeper.io/v1/namespaces/apps/issuers/ca")
        .await
        .not_found();
    server
        .expect(Method::GET, "/api/v1/namespaces/apps/secrets/web-tls")
        .await
        .respond(
            http::StatusCode::FORBIDDEN,
            forbidden("secrets \"web-tls\" is forbidden"),
        );
    server
        .expect(Method::GET, "/apis/events.k8s.io/v1/namespaces/apps/events")
        .await
        .ok(list("EventList", vec![]));
    let text = command.await.unwrap().unwrap();
    assert!(text.contains("Issuer apps/ca: Ready not found"), "{text}");
    assert!(
        text.contains("forbidden: secrets \"web-tls\" is forbidden"),
        "{text}"
    );
}

#[tokio::test]
async fn a_missing_certificate_is_one_error() {
    let (client, mut server) = cli_client();
    let command = spawn(async move { run(&client, &args("nope", None), now()).await });
    server
        .expect(
            Method::GET,
            "/apis/certkeeper.io/v1/namespaces/apps/certificates/nope",
        )
        .await
        .not_found();
    let error = command.await.unwrap().unwrap_err();
    assert!(matches!(error, CliError::NotFound { .. }), "{error:?}");
    assert_eq!(error.to_string(), "Certificate apps/nope not found");
}

#[tokio::test]
async fn an_unreachable_api_server_is_one_readable_error() {
    // Nothing listens on port 1.
    let config = kube::Config::new("http://127.0.0.1:1".parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let error = run(&client, &args("web", None), now()).await.unwrap_err();
    assert!(matches!(error, CliError::Unreachable(_)), "{error:?}");
    let text = error.to_string();
    assert!(
        text.starts_with("cannot reach the Kubernetes API server: "),
        "{text}"
    );
    assert!(text.contains("Connection refused"), "{text}");
}

#[tokio::test]
async fn without_the_crds_status_says_to_install_them() {
    let (client, mut server) = cli_client();
    let command = spawn(async move { run(&client, &args("web", None), now()).await });
    server
        .expect(
            Method::GET,
            "/apis/certkeeper.io/v1/namespaces/apps/certificates/web",
        )
        .await
        .respond(
            http::StatusCode::NOT_FOUND,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                   "code": 404, "message": "the server could not find the requested resource"}),
        );
    let error = command.await.unwrap().unwrap_err().to_string();
    assert_eq!(
        error,
        "cannot get Certificate apps/web: the API server does not serve it; are the certkeeper \
         CRDs installed? (kubectl apply --server-side -f crds/certkeeper.yaml)"
    );
}

#[tokio::test]
async fn a_status_about_another_certificate_than_the_secret_holds_is_pointed_out() {
    let (client, mut server) = cli_client();
    let command = spawn(async move { run(&client, &args("web", None), now()).await });
    let mut status = ready_status();
    status["serialNumber"] = json!("0badc0ffee");
    server
        .expect(
            Method::GET,
            "/apis/certkeeper.io/v1/namespaces/apps/certificates/web",
        )
        .await
        .ok(certificate_json("web", status));
    server
        .expect(Method::GET, "/apis/certkeeper.io/v1/namespaces/apps/issuers/ca")
        .await
        .ok(issuer_json("True", "KeyPairVerified", "Signing CA verified"));
    let secret = ca_secret(
        "web-tls",
        NAMESPACE,
        "web.apps.svc",
        ts("2026-11-30T11:00:00Z"),
        1,
    );
    server
        .expect(Method::GET, "/api/v1/namespaces/apps/secrets/web-tls")
        .await
        .ok(to_json(&secret));
    server
        .expect(Method::GET, "/apis/events.k8s.io/v1/namespaces/apps/events")
        .await
        .ok(list("EventList", vec![]));
    let text = command.await.unwrap().unwrap();
    assert_printable(&text);
    assert!(
        text.contains("NOTE: status.serialNumber 0badc0ffee is not the Secret's certificate"),
        "{text}"
    );
}

#[tokio::test]
async fn a_ready_certificate_whose_secret_is_gone_is_pointed_out() {
    let (client, mut server) = cli_client();
    let command = spawn(async move { run(&client, &args("web", Some(OutputFormat::Yaml)), now()).await });
    server
        .expect(
            Method::GET,
            "/apis/certkeeper.io/v1/namespaces/apps/certificates/web",
        )
        .await
        .ok(certificate_json("web", ready_status()));
    server
        .expect(Method::GET, "/apis/certkeeper.io/v1/namespaces/apps/issuers/ca")
        .await
        .ok(issuer_json("True", "KeyPairVerified", "Signing CA verified"));
    server
        .expect(Method::GET, "/api/v1/namespaces/apps/secrets/web-tls")
        .await
        .not_found();
    server
        .expect(Method::GET, "/apis/events.k8s.io/v1/namespaces/apps/events")
        .await
        .ok(list("EventList", vec![]));
    let report: Value = serde_yaml::from_str(&command.await.unwrap().unwrap()).unwrap();
    assert_eq!(
        report["notes"],
        json!(["Ready, but the Secret does not exist: the controller re-issues it on its next look"])
    );
}
