//! `renew`: one merge patch of the renew-requested-at annotation per Certificate, under the
//! CLI's own field manager.

use http::Method;

use super::*;
use crate::cli::CliError;
use crate::cli::renew::{RenewArgs, run};
use crate::testing::cli_client;

fn args(names: &[&str]) -> RenewArgs {
    RenewArgs {
        cluster: Default::default(),
        names: names.iter().map(|s| s.to_string()).collect(),
        all: false,
        selector: None,
        namespace: None,
        all_namespaces: false,
    }
}

fn annotation_patch(at: &str) -> Value {
    json!({"metadata": {"annotations": {"certkeeper.io/renew-requested-at": at}}})
}

async fn expect_renewal(server: &mut crate::testing::ApiServer, namespace: &str, name: &str) {
    expect_renewal_at(server, namespace, name, "2026-11-30T12:00:00.000Z").await
}

async fn expect_renewal_at(server: &mut crate::testing::ApiServer, namespace: &str, name: &str, at: &str) {
    let path = format!("/apis/certkeeper.io/v1/namespaces/{namespace}/certificates/{name}");
    let patch = server.expect(Method::PATCH, &path).await;
    assert_eq!(patch.body, annotation_patch(at));
    assert!(
        patch.query.contains("fieldManager=certkeeper-cli"),
        "{}",
        patch.query
    );
    assert!(
        !patch.query.contains("force"),
        "a merge patch, not a forced apply: {}",
        patch.query
    );
    let mut answer = certificate_json(name, json!({}));
    answer["metadata"]["namespace"] = json!(namespace);
    patch.ok(answer);
}

#[tokio::test]
async fn renew_by_name_annotates_each_certificate() {
    let (client, mut server) = cli_client();
    // The annotation is now, in milliseconds: never ahead of the clock.
    let at = now() - jiff::SignedDuration::from_micros(249_500);
    let command = spawn(async move { run(&client, &args(&["web", "api"]), at).await });
    let value = "2026-11-30T11:59:59.750Z";
    expect_renewal_at(&mut server, NAMESPACE, "web", value).await;
    expect_renewal_at(&mut server, NAMESPACE, "api", value).await;
    let outcome = command.await.unwrap().unwrap();
    assert!(outcome.failures.is_empty());
    assert_printable(&outcome.output);
    assert_eq!(
        outcome.output,
        "Certificate apps/web: renewal requested at 2026-11-30T11:59:59.750Z\n\
         Certificate apps/api: renewal requested at 2026-11-30T11:59:59.750Z\n"
    );
    server.expect_no_more().await;
}

#[tokio::test]
async fn renew_all_in_all_namespaces_lists_then_annotates() {
    let (client, mut server) = cli_client();
    let command = spawn(async move {
        let args = RenewArgs {
            all: true,
            all_namespaces: true,
            ..args(&[])
        };
        run(&client, &args, now()).await
    });
    let mut other = certificate_json("db", json!({}));
    other["metadata"]["namespace"] = json!("data");
    server
        .expect(Method::GET, "/apis/certkeeper.io/v1/certificates")
        .await
        .ok(list(
            "CertificateList",
            vec![certificate_json("web", json!({})), other],
        ));
    expect_renewal(&mut server, NAMESPACE, "web").await;
    expect_renewal(&mut server, "data", "db").await;
    let outcome = command.await.unwrap().unwrap();
    assert!(
        outcome.output.contains("Certificate data/db: renewal requested"),
        "{}",
        outcome.output
    );
}

#[tokio::test]
async fn renew_by_label_selector_lists_with_the_selector() {
    let (client, mut server) = cli_client();
    let command = spawn(async move {
        let args = RenewArgs {
            selector: Some("app=web".into()),
            ..args(&[])
        };
        run(&client, &args, now()).await
    });
    let listed = server
        .expect(Method::GET, "/apis/certkeeper.io/v1/namespaces/apps/certificates")
        .await;
    assert!(
        listed.query.contains("labelSelector=app%3Dweb"),
        "{}",
        listed.query
    );
    listed.ok(list("CertificateList", vec![]));
    let outcome = command.await.unwrap().unwrap();
    assert_eq!(outcome.output, "no Certificates found in namespace apps\n");
    server.expect_no_more().await;
}

#[tokio::test]
async fn a_missing_certificate_fails_alone_and_the_exit_is_non_zero() {
    let (client, mut server) = cli_client();
    let command = spawn(async move { run(&client, &args(&["gone", "web"]), now()).await });
    server
        .expect(
            Method::PATCH,
            "/apis/certkeeper.io/v1/namespaces/apps/certificates/gone",
        )
        .await
        .not_found();
    expect_renewal(&mut server, NAMESPACE, "web").await;
    let outcome = command.await.unwrap().unwrap();
    assert_eq!(outcome.failures, ["Certificate apps/gone not found"]);
    assert_eq!(outcome.summary, "1 of 2 Certificates not renewed");
    assert!(outcome.output.contains("apps/web: renewal requested"));
}

#[tokio::test]
async fn renew_without_rights_says_forbidden() {
    let (client, mut server) = cli_client();
    let command = spawn(async move {
        let args = RenewArgs {
            all: true,
            ..args(&[])
        };
        run(&client, &args, now()).await
    });
    server
        .expect(Method::GET, "/apis/certkeeper.io/v1/namespaces/apps/certificates")
        .await
        .respond(
            http::StatusCode::FORBIDDEN,
            forbidden("certificates.certkeeper.io is forbidden: User \"dev\" cannot list"),
        );
    let error = command.await.unwrap().unwrap_err();
    assert!(matches!(error, CliError::Forbidden { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "forbidden: cannot list Certificates in namespace apps: certificates.certkeeper.io is \
         forbidden: User \"dev\" cannot list"
    );
}

#[test]
fn renew_needs_names_all_or_a_selector() {
    use clap::Parser;
    let parse = |args: &[&str]| crate::cli::Cli::try_parse_from(args);
    assert!(parse(&["certkeeper", "renew"]).is_err());
    assert!(parse(&["certkeeper", "renew", "web", "--all"]).is_err());
    assert!(parse(&["certkeeper", "renew", "web", "-A"]).is_err());
    assert!(parse(&["certkeeper", "renew", "-A", "-n", "x", "--all"]).is_err());
    assert!(parse(&["certkeeper", "renew", "--all", "-A"]).is_ok());
    assert!(parse(&["certkeeper", "renew", "-l", "app=web", "-n", "shop"]).is_ok());
}
