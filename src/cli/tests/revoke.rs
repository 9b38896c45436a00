//! `revoke certificate`: one merge patch of both revoke annotations, under the CLI's own field
//! manager; a reason that is not an RFC 5280 name is refused before any request.

use clap::Parser;
use http::Method;

use super::*;
use crate::cli::revoke::{RevokeArgs, RevokeObject, run};
use crate::cli::{Cli, Command};
use crate::testing::cli_client;

fn parse(args: &[&str]) -> Result<RevokeArgs, clap::Error> {
    match Cli::try_parse_from(args)?.command {
        Command::Revoke(args) => Ok(args),
        other => panic!("not revoke: {other:?}"),
    }
}

#[tokio::test]
async fn revoke_annotates_the_certificate_with_time_and_reason() {
    let args = parse(&[
        "certkeeper",
        "revoke",
        "certificate",
        "web",
        "--reason",
        "key-compromise",
        "-n",
        "shop",
    ])
    .unwrap();
    let (client, mut server) = cli_client();
    // Now, in milliseconds (never rounded up).
    let at = now() - jiff::SignedDuration::from_millis(250);
    let command = spawn(async move { run(&client, &args, at).await });
    let patch = server
        .expect(
            Method::PATCH,
            "/apis/certkeeper.io/v1/namespaces/shop/certificates/web",
        )
        .await;
    assert_eq!(
        patch.body,
        json!({"metadata": {"annotations": {
            "certkeeper.io/revoke-requested-at": "2026-11-30T11:59:59.750Z",
            "certkeeper.io/revocation-reason": "keyCompromise",
        }}})
    );
    assert!(
        patch.query.contains("fieldManager=certkeeper-cli"),
        "{}",
        patch.query
    );
    let mut answer = certificate_json("web", json!({}));
    answer["metadata"]["namespace"] = json!("shop");
    patch.ok(answer);
    let outcome = command.await.unwrap().unwrap();
    assert!(outcome.failures.is_empty());
    assert_printable(&outcome.output);
    assert_eq!(
        outcome.output,
        "Certificate shop/web: revocation requested at 2026-11-30T11:59:59.750Z (reason keyCompromise)\n"
    );
    server.expect_no_more().await;
}

#[tokio::test]
async fn revoke_without_a_reason_says_unspecified_in_the_default_namespace() {
    let args = parse(&["certkeeper", "revoke", "cert", "web"]).unwrap();
    let RevokeObject::Certificate { reason, .. } = &args.object;
    assert_eq!(reason.name(), "unspecified");
    let (client, mut server) = cli_client();
    let command = spawn(async move { run(&client, &args, now()).await });
    let patch = server
        .expect(
            Method::PATCH,
            "/apis/certkeeper.io/v1/namespaces/apps/certificates/web",
        )
        .await;
    assert_eq!(
        patch.body["metadata"]["annotations"]["certkeeper.io/revocation-reason"],
        "unspecified"
    );
    patch.ok(certificate_json("web", json!({})));
    command.await.unwrap().unwrap();
    server.expect_no_more().await;
}

#[tokio::test]
async fn revoking_a_missing_certificate_says_so() {
    let args = parse(&["certkeeper", "revoke", "certificate", "gone"]).unwrap();
    let (client, mut server) = cli_client();
    let command = spawn(async move { run(&client, &args, now()).await });
    server
        .expect(
            Method::PATCH,
            "/apis/certkeeper.io/v1/namespaces/apps/certificates/gone",
        )
        .await
        .not_found();
    let error = command.await.unwrap().unwrap_err();
    assert!(error.to_string().contains("apps/gone"), "{error}");
    server.expect_no_more().await;
}

#[test]
fn an_unknown_reason_is_refused_before_any_request() {
    let error = parse(&["certkeeper", "revoke", "certificate", "web", "--reason", "oops"]).unwrap_err();
    assert!(error.to_string().contains("unknown revocation reason"), "{error}");
}
