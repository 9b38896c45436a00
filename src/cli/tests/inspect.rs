//! `inspect secret` and `inspect file`: what the material is, whether the key matches and the
//! chain verifies; never the key itself.

use std::path::PathBuf;

use http::Method;
use jiff::SignedDuration;

use super::*;
use crate::cli::inspect::{InspectArgs, Target, run};
use crate::cli::issue::issue_all;
use crate::cli::{CliError, NamespaceArgs, OutputFormat};
use crate::testing::{ca_secret, cli_client, to_json};

/// The example hierarchy issued into a temporary directory at `now()`.
fn issued() -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let outcome = issue_all(&examples(), &issue_settings(out.path()), now());
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    out
}

fn file(path: PathBuf, ca: Option<PathBuf>, output: Option<OutputFormat>) -> InspectArgs {
    InspectArgs {
        cluster: Default::default(),
        target: Target::File {
            path,
            ca,
            output,
            password: Default::default(),
        },
    }
}

async fn inspect(args: InspectArgs, at: Timestamp) -> String {
    let text = run(None, &args, at).await.unwrap();
    match &args.target {
        // JSON and YAML are for programs: a fingerprint stays one value, however long.
        Target::File { output: Some(_), .. } => assert!(!text.contains("PRIVATE KEY")),
        _ => assert_printable(&text),
    }
    text
}

#[tokio::test]
async fn an_issued_directory_shows_the_chain_the_key_and_a_verified_chain() {
    let out = issued();
    let dir = out.path().join("certkeeper-demo/frontend-tls");
    let text = inspect(file(dir, None, None), now()).await;
    for expected in [
        "chain verified: yes (the chain verifies to ca.crt)",
        "private key: ECDSA P-256, matches the certificate",
        "certificate 1/2 (leaf):",
        "SANs: DNS:frontend.certkeeper-demo.svc,",
        "URI:spiffe://cluster.local/ns/certkeeper-demo/sa/frontend",
        "validity: 2026-11-30T12:00:00Z to 2026-12-01T12:00:00Z (1d 0h left)",
        "usages: digital signature, server auth, client auth",
        "basicConstraints (critical): CA:FALSE",
        "certificate 2/2 (issuer of certificate 1):",
        "subject: CN=certkeeper demo intermediate CA",
        "ca.crt 1/1:",
        "key: ECDSA P-384, CA",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[tokio::test]
async fn a_key_of_another_certificate_is_reported_as_not_matching() {
    let out = issued();
    let demo = out.path().join("certkeeper-demo");
    std::fs::copy(
        demo.join("backend-tls/tls.key"),
        demo.join("frontend-tls/tls.key"),
    )
    .unwrap();
    let text = inspect(file(demo.join("frontend-tls"), None, None), now()).await;
    assert!(
        text.contains("private key: ECDSA P-256, DOES NOT match the certificate"),
        "{text}"
    );
}

#[tokio::test]
async fn a_chain_checked_against_a_stranger_root_does_not_verify() {
    let (out, stranger) = (issued(), issued());
    let leaf = out.path().join("certkeeper-demo/frontend-tls/tls.crt");
    let ca = stranger.path().join("certkeeper-demo/root-ca/ca.crt");
    let text = inspect(file(leaf, Some(ca), None), now()).await;
    assert!(
        text.contains("chain verified: NO (the chain does not lead to a certificate of ca.crt)"),
        "{text}"
    );
    assert!(text.contains("private key: none"), "{text}");
}

#[tokio::test]
async fn an_expired_certificate_does_not_verify_and_says_when_it_expired() {
    let out = issued();
    let dir = out.path().join("certkeeper-demo/frontend-tls");
    let text = inspect(file(dir, None, None), now() + SignedDuration::from_hours(25)).await;
    assert!(text.contains("chain verified: NO"), "{text}");
    assert!(text.contains("expired at 2026-12-01T12:00:00Z"), "{text}");
    assert!(text.contains("(expired 1h 0m ago)"), "{text}");
}

#[tokio::test]
async fn a_pem_bundle_with_its_key_is_read_as_one_file() {
    let out = issued();
    let dir = out.path().join("certkeeper-demo/backend-tls");
    let bundle = out.path().join("bundle.pem");
    let text = std::fs::read_to_string(dir.join("tls.key")).unwrap()
        + &std::fs::read_to_string(dir.join("tls.crt")).unwrap();
    std::fs::write(&bundle, text).unwrap();
    let yaml = inspect(
        file(bundle, Some(dir.join("ca.crt")), Some(OutputFormat::Yaml)),
        now(),
    )
    .await;
    let report: Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(report["chainVerified"], true);
    assert_eq!(report["key"]["matchesCertificate"], true);
    assert_eq!(
        report["chain"][0]["dnsNames"],
        json!(["backend.certkeeper-demo.svc"])
    );
}

#[tokio::test]
async fn inspect_secret_reads_the_secret_of_the_namespace() {
    let (client, mut server) = cli_client();
    let command = spawn(async move {
        let args = InspectArgs {
            cluster: Default::default(),
            target: Target::Secret {
                password: Default::default(),
                name: "web-tls".into(),
                namespace: NamespaceArgs {
                    namespace: Some("shop".into()),
                },
                output: None,
            },
        };
        run(Some(&client), &args, now()).await
    });
    let secret = ca_secret("web-tls", "shop", "web CA", ts("2026-11-30T00:00:00Z"), 30);
    server
        .expect(Method::GET, "/api/v1/namespaces/shop/secrets/web-tls")
        .await
        .ok(to_json(&secret));
    let text = command.await.unwrap().unwrap();
    assert_printable(&text);
    assert!(
        text.starts_with("Secret shop/web-tls (type kubernetes.io/tls)\n"),
        "{text}"
    );
    assert!(text.contains("chain verified: yes"), "{text}");
    assert!(text.contains("(29d 12h left)"), "{text}");
}

#[tokio::test]
async fn inspect_of_a_missing_secret_is_one_error() {
    let (client, mut server) = cli_client();
    let command = spawn(async move {
        let args = InspectArgs {
            cluster: Default::default(),
            target: Target::Secret {
                password: Default::default(),
                name: "nope".into(),
                namespace: NamespaceArgs { namespace: None },
                output: None,
            },
        };
        run(Some(&client), &args, now()).await
    });
    server
        .expect(Method::GET, "/api/v1/namespaces/apps/secrets/nope")
        .await
        .not_found();
    let error = command.await.unwrap().unwrap_err();
    assert!(matches!(error, CliError::NotFound { .. }));
    assert_eq!(error.to_string(), "Secret apps/nope not found");
}

#[tokio::test]
async fn inspect_of_a_missing_file_is_one_error() {
    let error = run(None, &file("/nonexistent.pem".into(), None, None), now())
        .await
        .unwrap_err();
    assert!(
        error.to_string().starts_with("cannot read /nonexistent.pem: "),
        "{error}"
    );
}

#[tokio::test]
async fn keystores_are_listed_beside_the_pem_and_opened_with_the_password() {
    use crate::cli::inspect::PasswordArgs;
    let out = tempfile::tempdir().unwrap();
    let documents = crate::cli::manifests::parse(
        "test.yaml",
        "apiVersion: certkeeper.io/v1\nkind: Issuer\nmetadata: {name: root, namespace: apps}\n\
         spec: {selfSigned: {}}\n---\napiVersion: certkeeper.io/v1\nkind: Certificate\n\
         metadata: {name: app, namespace: apps}\nspec:\n  secretName: app-tls\n  commonName: app.apps.svc\n\
         \x20 issuerRef: {name: root}\n  keystores:\n\
         \x20   pkcs12: {create: true, profile: Modern2023, password: changeit}\n\
         \x20   jks: {create: true, password: changeit, alias: app}\n",
    )
    .unwrap();
    let outcome = issue_all(&documents, &issue_settings(out.path()), now());
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    let dir = out.path().join("apps/app-tls");
    let with_password = |path: PathBuf, password: Option<&str>| InspectArgs {
        cluster: Default::default(),
        target: Target::File {
            path,
            ca: None,
            output: None,
            password: PasswordArgs {
                password: password.map(str::to_owned),
                password_file: None,
            },
        },
    };
    let text = inspect(with_password(dir.clone(), Some("changeit")), now()).await;
    for expected in [
        "keystore.p12 (PKCS#12)",
        "\"certificate\": private key with 1 certificate(s)",
        "truststore.jks (JKS)",
        "\"app\": private key with 1 certificate(s)",
        "\"ca\": trusted certificate CN=app.apps.svc",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    // A keystore file on its own: its key and chain, described as tls.crt and tls.key are.
    let text = inspect(with_password(dir.join("keystore.jks"), Some("changeit")), now()).await;
    assert!(
        text.contains("private key: ECDSA P-256, matches the certificate"),
        "{text}"
    );
    assert!(text.contains("chain verified: yes"), "{text}");
    let text = inspect(with_password(dir.join("keystore.p12"), Some("wrong")), now()).await;
    assert!(
        text.contains("cannot open: the password does not open the store"),
        "{text}"
    );
    let text = inspect(with_password(dir.join("keystore.jks"), None), now()).await;
    assert!(
        text.contains("protected: give --password or --password-file"),
        "{text}"
    );
}
