//! `scan`: pages through the TLS Secrets and the labelled Secrets and ConfigMaps with the
//! user's own rights, and lists every certificate, soonest expiry first.

use http::Method;

use super::*;
use crate::cli::scan::{ScanArgs, run};
use crate::cli::{CliError, OutputFormat};
use crate::testing::{ca_secret, cli_client, to_json};

fn args(all: bool, within: Option<i64>, output: Option<OutputFormat>) -> ScanArgs {
    ScanArgs {
        cluster: Default::default(),
        namespace: None,
        all_namespaces: all,
        expiring_within: within.map(|d| jiff::SignedDuration::from_hours(24 * d)),
        label: crate::inventory::DEFAULT_LABEL.into(),
        output,
    }
}

/// A TLS Secret in `namespace` whose certificate started `days_before` days ago for `days`.
fn tls(namespace: &str, name: &str, cn: &str, days_before: i64, days: i64) -> Value {
    let start = now() - jiff::SignedDuration::from_hours(24 * days_before);
    to_json(&ca_secret(name, namespace, cn, start, days))
}

/// Plays the three lists of `scan -A`: TLS Secrets on two pages, labelled Secrets, labelled
/// ConfigMaps.
async fn answer_lists(server: &mut crate::testing::ApiServer) {
    let first = server.expect(Method::GET, "/api/v1/secrets").await;
    assert!(
        first.query.contains("fieldSelector=type%3Dkubernetes.io%2Ftls"),
        "{}",
        first.query
    );
    assert!(first.query.contains("limit=100"), "{}", first.query);
    let mut page = list(
        "SecretList",
        vec![tls("ingress", "old-site", "old.example", 728, 730)],
    );
    page["metadata"]["continue"] = json!("page-2");
    first.ok(page);
    let second = server.expect(Method::GET, "/api/v1/secrets").await;
    assert!(second.query.contains("continue=page-2"), "{}", second.query);
    let mut managed = tls("apps", "web-tls", "web.apps.svc", 1, 30);
    managed["metadata"]["annotations"] = json!({"cert-manager.io/certificate-name": "web"});
    second.ok(list("SecretList", vec![managed]));
    let labelled = server.expect(Method::GET, "/api/v1/secrets").await;
    assert!(
        labelled
            .query
            .contains("labelSelector=certkeeper.io%2Finventory%3Dtrue"),
        "{}",
        labelled.query
    );
    // Also a TLS Secret: one object, listed once.
    labelled.ok(list(
        "SecretList",
        vec![tls("ingress", "old-site", "old.example", 728, 730)],
    ));
    let maps = server.expect(Method::GET, "/api/v1/configmaps").await;
    let ca = tls("x", "x", "bundle-root", 40, 30);
    let pem = String::from_utf8(crate::testing::secret_data(&ca, "ca.crt")).unwrap();
    maps.ok(list(
        "ConfigMapList",
        vec![json!({"metadata": {"name": "trust", "namespace": "apps"}, "data": {"bundle.pem": pem, "note": "x"}})],
    ));
}

#[tokio::test]
async fn every_certificate_is_listed_soonest_expiry_first_with_who_manages_it() {
    let (client, mut server) = cli_client();
    let command = spawn(async move { run(&client, &args(true, None, None), now()).await });
    answer_lists(&mut server).await;
    let out = command.await.unwrap().unwrap().output;
    assert_printable(&out);
    let rows: Vec<&str> = out.lines().collect();
    assert!(rows[0].starts_with("NAMESPACE"), "{out}");
    assert_eq!(
        rows.len(),
        1 + 1 + 2 + 2,
        "expired root, old-site twice (tls.crt, ca.crt), web twice:\n{out}"
    );
    assert!(rows[1].contains("trust") && rows[1].contains("-10d0h"), "{out}");
    assert!(
        rows[2].contains("old-site") && rows[2].contains("2d0h") && rows[2].contains("none"),
        "{out}"
    );
    assert!(
        rows[5].contains("web-tls") && rows[5].contains("cert-manager"),
        "{out}"
    );
}

#[tokio::test]
async fn expiring_within_keeps_what_expires_soon_and_json_has_every_fact() {
    let (client, mut server) = cli_client();
    let command =
        spawn(async move { run(&client, &args(true, Some(7), Some(OutputFormat::Json)), now()).await });
    answer_lists(&mut server).await;
    let out = command.await.unwrap().unwrap().output;
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["trust", "old-site", "old-site"]);
    let row = &rows[1];
    for field in [
        "namespace",
        "kind",
        "managedBy",
        "state",
        "key",
        "subject",
        "subjectCn",
        "issuerCn",
        "dnsNames",
        "notBefore",
        "notAfter",
        "serial",
        "fingerprint",
    ] {
        assert!(row.get(field).is_some(), "{field} in {row}");
    }
    assert_eq!(row["state"], "expiring");
    assert_eq!(rows[0]["state"], "expired");
}

#[tokio::test]
async fn yaml_lists_the_same_rows_as_json() {
    let (client, mut server) = cli_client();
    let command =
        spawn(async move { run(&client, &args(true, Some(7), Some(OutputFormat::Yaml)), now()).await });
    answer_lists(&mut server).await;
    let out = command.await.unwrap().unwrap().output;
    let rows: Vec<Value> = serde_yaml::from_str(&out).unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["trust", "old-site", "old-site"]);
    assert_eq!(rows[1]["state"], "expiring");
    assert_eq!(rows[1]["managedBy"], "none");
    assert!(
        rows[1]["fingerprint"].as_str().is_some_and(|f| f.len() == 64),
        "{out}"
    );
}

#[tokio::test]
async fn a_forbidden_list_is_one_line_saying_so() {
    let (client, mut server) = cli_client();
    let command = spawn(async move { run(&client, &args(false, None, None), now()).await });
    for path in ["secrets", "secrets", "configmaps"] {
        let seen = server
            .expect(Method::GET, &format!("/api/v1/namespaces/{NAMESPACE}/{path}"))
            .await;
        seen.respond(
            http::StatusCode::FORBIDDEN,
            forbidden(&format!("{path} is forbidden")),
        );
    }
    let error = command.await.unwrap().unwrap_err();
    assert!(matches!(error, CliError::Forbidden { .. }), "{error}");
    assert!(
        error.to_string().contains("list TLS Secrets in namespace"),
        "{error}"
    );
}

#[tokio::test]
async fn a_list_refused_is_said_and_the_others_are_shown() {
    let (client, mut server) = cli_client();
    let command = spawn(async move { run(&client, &args(false, None, None), now()).await });
    let secrets = format!("/api/v1/namespaces/{NAMESPACE}/secrets");
    let seen = server.expect(Method::GET, &secrets).await;
    seen.ok(list("SecretList", vec![tls(NAMESPACE, "web-tls", "web", 1, 30)]));
    let seen = server.expect(Method::GET, &secrets).await;
    seen.ok(list("SecretList", vec![]));
    let seen = server
        .expect(Method::GET, &format!("/api/v1/namespaces/{NAMESPACE}/configmaps"))
        .await;
    seen.respond(http::StatusCode::FORBIDDEN, forbidden("configmaps is forbidden"));
    let outcome = command.await.unwrap().unwrap();
    assert!(outcome.output.contains("secret/web-tls"), "{}", outcome.output);
    assert_eq!(outcome.failures.len(), 1);
    assert!(
        outcome.failures[0].contains("ConfigMaps labelled"),
        "{:?}",
        outcome.failures
    );
    assert_eq!(
        outcome.summary,
        "1 of 3 lists failed: their certificates are not shown"
    );
}
