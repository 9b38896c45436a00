//! `check api`: discovery, the four CRDs established, a dry-run create.

use http::Method;

use super::*;
use crate::cli::CliError;
use crate::cli::check::{CheckArgs, CheckWhat, run};
use crate::testing::{ApiServer, cli_client};

fn args(wait: Option<std::time::Duration>) -> CheckArgs {
    CheckArgs {
        cluster: Default::default(),
        what: CheckWhat::Api {
            wait,
            namespace: None,
        },
    }
}

fn discovery() -> Value {
    let resource = |name: &str, kind: &str, namespaced: bool| {
        json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind,
               "verbs": ["get", "list", "create"]})
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "certkeeper.io/v1",
           "resources": [resource("certificates", "Certificate", true),
                         resource("issuers", "Issuer", true),
                         resource("clusterissuers", "ClusterIssuer", false),
                         resource("bundles", "Bundle", false),
                         resource("certificaterevocations", "CertificateRevocation", true),
                         resource("certificatepolicies", "CertificatePolicy", false)]})
}

fn crd(name: &str, established: &str) -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": name},
           "spec": {"group": "certkeeper.io", "scope": "Namespaced", "versions": [],
                    "names": {"plural": "x", "kind": "X"}},
           "status": {"conditions": [{"type": "Established", "status": established,
                                      "reason": "InitialNamesAccepted", "message": "not yet"}]}})
}

async fn answer_healthy(server: &mut ApiServer) {
    server
        .expect(Method::GET, "/apis/certkeeper.io/v1")
        .await
        .ok(discovery());
    for name in [
        "certificates",
        "issuers",
        "clusterissuers",
        "bundles",
        "certificaterevocations",
        "certificatepolicies",
    ] {
        let name = format!("{name}.certkeeper.io");
        let path = format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}");
        server.expect(Method::GET, &path).await.ok(crd(&name, "True"));
    }
    let create = server
        .expect(
            Method::POST,
            "/apis/certkeeper.io/v1/namespaces/apps/certificates",
        )
        .await;
    assert!(create.query.contains("dryRun=All"), "{}", create.query);
    assert_eq!(create.body["metadata"]["generateName"], "certkeeper-check-api-");
    create.echo();
}

#[tokio::test]
async fn a_healthy_api_passes_every_check() {
    let (client, mut server) = cli_client();
    let command = spawn(async move { run(&client, &args(None)).await });
    answer_healthy(&mut server).await;
    let text = command.await.unwrap().unwrap();
    assert_printable(&text);
    assert!(text.contains("dry-run create in namespace apps"), "{text}");
    server.expect_no_more().await;
}

#[tokio::test]
async fn without_the_crds_the_check_fails_with_the_fix() {
    let (client, mut server) = cli_client();
    let command = spawn(async move { run(&client, &args(None)).await });
    server
        .expect(Method::GET, "/apis/certkeeper.io/v1")
        .await
        .not_found();
    let error = command.await.unwrap().unwrap_err().to_string();
    assert!(
        error.contains("the certkeeper.io/v1 API is not served"),
        "{error}"
    );
    assert!(
        error.contains("kubectl apply --server-side -f crds/certkeeper.yaml"),
        "{error}"
    );
}

#[tokio::test]
async fn a_crd_not_yet_established_fails_the_check() {
    let (client, mut server) = cli_client();
    let command = spawn(async move { run(&client, &args(None)).await });
    server
        .expect(Method::GET, "/apis/certkeeper.io/v1")
        .await
        .ok(discovery());
    server
        .expect(
            Method::GET,
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/certificates.certkeeper.io",
        )
        .await
        .ok(crd("certificates.certkeeper.io", "False"));
    let error = command.await.unwrap().unwrap_err().to_string();
    assert_eq!(
        error,
        "CustomResourceDefinition certificates.certkeeper.io is not established: not yet"
    );
}

#[tokio::test]
async fn a_refused_dry_run_fails_the_check() {
    let (client, mut server) = cli_client();
    let command = spawn(async move { run(&client, &args(None)).await });
    server
        .expect(Method::GET, "/apis/certkeeper.io/v1")
        .await
        .ok(discovery());
    for name in [
        "certificates",
        "issuers",
        "clusterissuers",
        "bundles",
        "certificaterevocations",
        "certificatepolicies",
    ] {
        let name = format!("{name}.certkeeper.io");
        let path = format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}");
        server.expect(Method::GET, &path).await.ok(crd(&name, "True"));
    }
    server
        .expect(
            Method::POST,
            "/apis/certkeeper.io/v1/namespaces/apps/certificates",
        )
        .await
        .respond(
            http::StatusCode::FORBIDDEN,
            forbidden("User \"ci\" cannot create"),
        );
    let error = command.await.unwrap().unwrap_err();
    assert!(matches!(error, CliError::Forbidden { .. }), "{error:?}");
}

#[tokio::test(start_paused = true)]
async fn wait_retries_until_the_api_is_usable() {
    let (client, mut server) = cli_client();
    let wait = Some(std::time::Duration::from_secs(30));
    let command = spawn(async move { run(&client, &args(wait)).await });
    server
        .expect(Method::GET, "/apis/certkeeper.io/v1")
        .await
        .not_found();
    server
        .expect(Method::GET, "/apis/certkeeper.io/v1")
        .await
        .not_found();
    answer_healthy(&mut server).await;
    assert!(command.await.unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn wait_gives_up_at_the_deadline_with_the_last_reason() {
    let (client, mut server) = cli_client();
    let wait = Some(std::time::Duration::from_secs(5));
    let command = spawn(async move { run(&client, &args(wait)).await });
    // Attempts at 0 s, 2 s; the next (4 s + 2 s) would pass the deadline.
    for _ in 0..3 {
        server
            .expect(Method::GET, "/apis/certkeeper.io/v1")
            .await
            .not_found();
    }
    let error = command.await.unwrap().unwrap_err().to_string();
    assert!(
        error.starts_with("the certkeeper API is not usable after 5s: the certkeeper.io/v1 API"),
        "{error}"
    );
}
