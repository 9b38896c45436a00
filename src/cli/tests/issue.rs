//! `certkeeper issue`: manifests in, verified files out, with no cluster.

use std::path::{Path, PathBuf};
use std::process::Command;

use jiff::SignedDuration;

use super::*;
use crate::cli::issue::issue_all;
use crate::cli::manifests::{self, Document};
use crate::cli::{CliError, Outcome};
use crate::pki::tests::mtls::{self, Mounted};

fn issue(documents: &[Document], out_dir: &Path, now: Timestamp) -> Outcome {
    let outcome = issue_all(documents, &issue_settings(out_dir), now);
    assert_printable(&outcome.output);
    outcome
}

fn yaml(text: &str) -> Vec<Document> {
    manifests::parse("test.yaml", text).unwrap()
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn mounted(dir: &Path) -> Mounted {
    Mounted {
        tls_crt: read(dir.join("tls.crt")),
        tls_key: read(dir.join("tls.key")),
        ca_crt: read(dir.join("ca.crt")),
    }
}

fn openssl_verify(dir: &Path) -> Option<(bool, String)> {
    let output = Command::new("openssl")
        .args(["verify", "-CAfile", "ca.crt", "-untrusted", "tls.crt", "tls.crt"])
        .current_dir(dir)
        .output()
        .ok()?;
    let text =
        String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    Some((output.status.success(), text))
}

#[test]
fn the_examples_issue_a_verified_mtls_set_in_one_run() {
    let out = tempfile::tempdir().unwrap();
    // rustls checks validity against the real clock.
    let outcome = issue(&examples(), out.path(), Timestamp::now());
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    let demo = out.path().join("certkeeper-demo");
    for secret in ["root-ca", "intermediate-ca", "frontend-tls", "backend-tls"] {
        for file in ["tls.crt", "tls.key", "ca.crt"] {
            assert!(demo.join(secret).join(file).is_file(), "{secret}/{file}");
        }
    }
    let issued: Vec<&str> = outcome
        .output
        .lines()
        .filter(|l| l.starts_with("issued"))
        .collect();
    assert_eq!(issued.len(), 4, "{}", outcome.output);
    assert!(
        issued[0].contains("certkeeper-demo/root-ca"),
        "root first: {}",
        outcome.output
    );
    assert!(
        issued[1].contains("certkeeper-demo/intermediate-ca"),
        "{}",
        outcome.output
    );

    for leaf in ["frontend-tls", "backend-tls"] {
        match openssl_verify(&demo.join(leaf)) {
            Some((ok, text)) => assert!(ok, "openssl verify {leaf}: {text}"),
            None => println!("openssl verify skipped: no `openssl` binary on PATH"),
        }
    }

    let frontend = mounted(&demo.join("frontend-tls"));
    let backend = mounted(&demo.join("backend-tls"));
    let mut server = mtls::server(&backend);
    let mut client = mtls::client(&frontend, "backend.certkeeper-demo.svc");
    mtls::handshake(&mut client, &mut server).expect("mTLS handshake between the issued leaves");
    assert_eq!(mtls::exchange(&mut client, &mut server, b"ping"), b"ping");
    let presented = server.peer_certificates().expect("client certificate").to_vec();
    let pem = pem::encode(&pem::Pem::new("CERTIFICATE", presented[0].to_vec()));
    let leaf = &crate::pki::parse_certificate_chain(pem.as_bytes()).unwrap()[0];
    assert_eq!(
        leaf.uris,
        ["spiffe://cluster.local/ns/certkeeper-demo/sa/frontend"]
    );
}

#[cfg(unix)]
#[test]
fn key_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt as _;
    let out = tempfile::tempdir().unwrap();
    issue(&examples(), out.path(), now());
    let dir = out.path().join("certkeeper-demo/frontend-tls");
    let mode = |f: &str| std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("tls.key"), 0o600);
    assert_eq!(mode("tls.crt"), 0o644);
}

#[test]
fn a_rerun_keeps_certificates_that_are_valid_and_match() {
    let out = tempfile::tempdir().unwrap();
    issue(&examples(), out.path(), now());
    let key = out.path().join("certkeeper-demo/frontend-tls/tls.key");
    let before = read(key.clone());
    let outcome = issue(&examples(), out.path(), now() + SignedDuration::from_hours(1));
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    assert_eq!(
        outcome.output.lines().filter(|l| l.starts_with("kept")).count(),
        4,
        "{}",
        outcome.output
    );
    assert!(!outcome.output.contains("issued"), "{}", outcome.output);
    assert_eq!(read(key), before);
}

#[test]
fn a_rerun_past_the_renewal_time_renews_the_leaves_only() {
    let out = tempfile::tempdir().unwrap();
    issue(&examples(), out.path(), now());
    // 24 h leaves renew about 8 h before they expire; the CAs live for months.
    let outcome = issue(&examples(), out.path(), now() + SignedDuration::from_hours(20));
    let renewed: Vec<&str> = outcome
        .output
        .lines()
        .filter(|l| l.starts_with("issued"))
        .collect();
    assert_eq!(renewed.len(), 2, "{}", outcome.output);
    assert!(
        renewed.iter().all(|l| l.contains("(Renewing:")),
        "{}",
        outcome.output
    );
    assert!(
        outcome.output.contains("kept   certkeeper-demo/root-ca"),
        "{}",
        outcome.output
    );
}

#[test]
fn a_changed_spec_reissues_that_certificate_and_a_new_ca_reissues_what_it_signed() {
    let out = tempfile::tempdir().unwrap();
    let mut documents = examples();
    issue(&documents, out.path(), now());
    let frontend = documents
        .iter_mut()
        .find(|d| d.describe() == "Certificate certkeeper-demo/frontend")
        .unwrap();
    frontend.object["spec"]["dnsNames"] = json!(["frontend.certkeeper-demo.svc", "www.example.com"]);
    let outcome = issue(&documents, out.path(), now());
    let issued: Vec<&str> = outcome
        .output
        .lines()
        .filter(|l| l.starts_with("issued"))
        .collect();
    assert_eq!(issued.len(), 1, "{}", outcome.output);
    assert!(
        issued[0].contains("frontend (SecretMismatch:"),
        "{}",
        outcome.output
    );

    // A new intermediate: the leaves it signed are re-issued at once (CARotated).
    std::fs::remove_dir_all(out.path().join("certkeeper-demo/intermediate-ca")).unwrap();
    let outcome = issue(&documents, out.path(), now());
    assert!(
        outcome.output.contains("intermediate-ca (DoesNotExist:"),
        "{}",
        outcome.output
    );
    assert_eq!(
        outcome.output.matches("(CARotated:").count(),
        2,
        "{}",
        outcome.output
    );
}

#[test]
fn a_cycle_is_named_per_object_and_fails() {
    let out = tempfile::tempdir().unwrap();
    let documents = yaml(
        r#"
apiVersion: certkeeper.io/v1
kind: Issuer
metadata: {name: a, namespace: loop}
spec: {ca: {secretName: a-ca}}
---
apiVersion: certkeeper.io/v1
kind: Issuer
metadata: {name: b, namespace: loop}
spec: {ca: {secretName: b-ca}}
---
apiVersion: certkeeper.io/v1
kind: Certificate
metadata: {name: a-ca, namespace: loop}
spec: {isCA: true, commonName: a, secretName: a-ca, issuerRef: {name: b}}
---
apiVersion: certkeeper.io/v1
kind: Certificate
metadata: {name: b-ca, namespace: loop}
spec: {isCA: true, commonName: b, secretName: b-ca, issuerRef: {name: a}}
"#,
    );
    let outcome = issue(&documents, out.path(), now());
    assert_eq!(outcome.failures.len(), 2, "{:?}", outcome.failures);
    for failure in &outcome.failures {
        assert!(failure.contains("depends on itself"), "{failure}");
        assert!(
            failure.contains("Certificate loop/a-ca -> Certificate loop/b-ca"),
            "{failure}"
        );
    }
    assert!(!out.path().join("loop").exists());
}

#[test]
fn a_missing_issuer_and_a_bad_spec_are_one_line_each_and_the_rest_is_issued() {
    let out = tempfile::tempdir().unwrap();
    let documents = yaml(
        r#"
apiVersion: certkeeper.io/v1
kind: Issuer
metadata: {name: selfsigned}
spec: {selfSigned: {}}
---
apiVersion: certkeeper.io/v1
kind: Certificate
metadata: {name: good}
spec: {commonName: good, secretName: good-tls, issuerRef: {name: selfsigned}}
---
apiVersion: certkeeper.io/v1
kind: Certificate
metadata: {name: orphan}
spec: {commonName: orphan, secretName: orphan-tls, issuerRef: {name: nowhere}}
---
apiVersion: certkeeper.io/v1
kind: Certificate
metadata: {name: short}
spec: {commonName: short, duration: 10m, secretName: short-tls, issuerRef: {name: selfsigned}}
---
apiVersion: certkeeper.io/v1
kind: Certificate
metadata: {name: signed-by-missing-ca}
spec: {commonName: x, secretName: x-tls, issuerRef: {name: ca, kind: ClusterIssuer}}
---
apiVersion: certkeeper.io/v1
kind: ClusterIssuer
metadata: {name: ca}
spec: {ca: {secretName: nobody-makes-this}}
"#,
    );
    let outcome = issue(&documents, out.path(), now());
    let failures = outcome.failures.join("\n");
    assert_eq!(outcome.failures.len(), 3, "{failures}");
    assert!(
        failures.contains("Certificate default/orphan: Issuer default/nowhere is not in the manifests"),
        "{failures}"
    );
    assert!(
        failures.contains("Certificate default/short: spec.duration 10m is shorter than the minimum"),
        "{failures}"
    );
    assert!(
        failures.contains("ClusterIssuer ca: its CA Secret certkeeper-system/nobody-makes-this is neither"),
        "{failures}"
    );
    assert_eq!(outcome.summary, "3 of 4 Certificates could not be issued");
    // A manifest without namespace goes to `default`.
    assert!(out.path().join("default/good-tls/tls.crt").is_file());
}

#[test]
fn a_cluster_issuer_reads_its_ca_from_the_cluster_resource_namespace() {
    let out = tempfile::tempdir().unwrap();
    let documents = yaml(
        r#"
apiVersion: certkeeper.io/v1
kind: ClusterIssuer
metadata: {name: bootstrap}
spec: {selfSigned: {}}
---
apiVersion: certkeeper.io/v1
kind: Certificate
metadata: {name: root, namespace: certkeeper-system}
spec: {isCA: true, commonName: root, secretName: root-ca, issuerRef: {name: bootstrap, kind: ClusterIssuer}}
---
apiVersion: certkeeper.io/v1
kind: ClusterIssuer
metadata: {name: root}
spec: {ca: {secretName: root-ca}}
---
apiVersion: certkeeper.io/v1
kind: Certificate
metadata: {name: web, namespace: shop}
spec: {dnsNames: [web.shop.svc], secretName: web-tls, issuerRef: {name: root, kind: ClusterIssuer}}
"#,
    );
    let outcome = issue(&documents, out.path(), now());
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    let web = read(out.path().join("shop/web-tls/ca.crt"));
    assert_eq!(web, read(out.path().join("certkeeper-system/root-ca/tls.crt")));
}

#[test]
fn cert_manager_manifests_are_issued_as_converted() {
    let out = tempfile::tempdir().unwrap();
    let documents = yaml(
        r#"
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: selfsigned, namespace: dev}
spec: {selfSigned: {}}
---
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: api, namespace: dev}
spec:
  secretName: api-tls
  dnsNames: [api.dev.svc]
  issuerRef: {name: selfsigned, kind: Issuer, group: cert-manager.io}
"#,
    );
    let outcome = issue(&documents, out.path(), now());
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    assert!(out.path().join("dev/api-tls/tls.key").is_file());
}

#[test]
fn an_unreadable_manifest_is_an_error() {
    let args = crate::cli::issue::IssueArgs {
        files: vec!["/nonexistent/certs.yaml".into()],
        out_dir: "/tmp/unused".into(),
        namespace: "default".into(),
        cluster_resource_namespace: "certkeeper-system".into(),
    };
    match crate::cli::issue::run(&args, now()) {
        Err(CliError::Read { path, .. }) => assert_eq!(path, "/nonexistent/certs.yaml"),
        other => panic!("expected a read error, got {other:?}"),
    }
}

#[test]
fn an_issuer_certkeeper_cannot_serve_fails_with_the_certificates_it_would_sign() {
    let out = tempfile::tempdir().unwrap();
    let documents = yaml(
        r#"
apiVersion: cert-manager.io/v1
kind: Issuer
metadata: {name: letsencrypt, namespace: web}
spec: {acme: {server: "https://acme.example/directory", privateKeySecretRef: {name: k}}}
---
apiVersion: certkeeper.io/v1
kind: Certificate
metadata: {name: site, namespace: web}
spec: {dnsNames: [example.com], secretName: site-tls, issuerRef: {name: letsencrypt}}
"#,
    );
    let outcome = issue(&documents, out.path(), now());
    assert_eq!(
        outcome.failures,
        [
            "Issuer web/letsencrypt (test.yaml): ACME issuers are not served by certkeeper (only \
             selfSigned and ca)",
            "Certificate web/site: Issuer web/letsencrypt is not in the manifests",
        ]
    );
    assert_eq!(
        outcome.summary,
        "1 of 1 Certificates could not be issued, and 1 objects could not be read"
    );
}

#[test]
fn a_ca_put_in_the_output_directory_by_hand_signs_for_its_issuer() {
    let out = tempfile::tempdir().unwrap();
    let ca = crate::testing::ca_secret("corp-ca", "team", "Corp CA", now(), 365);
    let dir = out.path().join("team/corp-ca");
    std::fs::create_dir_all(&dir).unwrap();
    for key in ["tls.crt", "tls.key", "ca.crt"] {
        std::fs::write(
            dir.join(key),
            crate::testing::secret_data(&crate::testing::to_json(&ca), key),
        )
        .unwrap();
    }
    let documents = yaml(
        r#"
apiVersion: certkeeper.io/v1
kind: Issuer
metadata: {name: corp, namespace: team}
spec: {ca: {secretName: corp-ca}}
---
apiVersion: certkeeper.io/v1
kind: Certificate
metadata: {name: api, namespace: team}
spec:
  dnsNames: [api.team.svc]
  secretName: api-tls
  issuerRef: {name: corp}
  additionalOutputFormats: [{type: CombinedPEM}]
"#,
    );
    let outcome = issue(&documents, out.path(), now());
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    let api = out.path().join("team/api-tls");
    assert_eq!(read(api.join("ca.crt")), read(dir.join("tls.crt")));
    assert!(api.join("tls-combined.pem").is_file());

    // Without CombinedPEM the combined file, a copy of the key, goes away on the next issue.
    let mut documents = documents;
    documents[1].object["spec"]
        .as_object_mut()
        .unwrap()
        .remove("additionalOutputFormats");
    std::fs::remove_file(api.join("tls.crt")).unwrap();
    let outcome = issue(&documents, out.path(), now());
    assert!(outcome.output.contains("(MissingData:"), "{}", outcome.output);
    assert!(!api.join("tls-combined.pem").exists());
}

#[test]
fn a_misspelled_field_is_refused_as_the_api_server_would() {
    let out = tempfile::tempdir().unwrap();
    let documents = yaml(
        r#"
apiVersion: certkeeper.io/v1
kind: Issuer
metadata: {name: selfsigned}
spec: {selfSigned: {}}
---
apiVersion: certkeeper.io/v1
kind: Certificate
metadata: {name: web}
spec: {dnsName: [web.default.svc], commonName: web, secretName: web-tls, issuerRef: {name: selfsigned}}
"#,
    );
    let outcome = issue(&documents, out.path(), now());
    assert_eq!(
        outcome.failures,
        ["Certificate web (test.yaml): unknown field spec.dnsName"]
    );
    assert!(!out.path().join("default/web-tls").exists());
}

/// A self-signed CA and a Certificate with both keystores, the PKCS#12 password in a Secret
/// among the manifests (`password` is its value; `None`: no such Secret).
fn keystore_manifests(password: Option<&str>) -> Vec<Document> {
    let secret = match password {
        Some(password) => format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: app-keystore, namespace: apps}}\n\
             stringData: {{password: {password}}}\n"
        ),
        None => String::new(),
    };
    yaml(&format!(
        "apiVersion: certkeeper.io/v1\nkind: Issuer\nmetadata: {{name: selfsigned, namespace: apps}}\n\
         spec: {{selfSigned: {{}}}}\n\
         ---\napiVersion: certkeeper.io/v1\nkind: Certificate\nmetadata: {{name: app, namespace: apps}}\n\
         spec:\n  secretName: app-tls\n  dnsNames: [app.apps.svc]\n  issuerRef: {{name: selfsigned}}\n\
         \x20 keystores:\n\
         \x20   pkcs12: {{create: true, profile: LegacyDES, passwordSecretRef: {{name: app-keystore, key: password}}}}\n\
         \x20   jks: {{create: true, password: jks-pass}}\n\
         {secret}"
    ))
}

#[test]
fn issue_writes_the_keystores_and_rewrites_them_for_a_new_password_only() {
    use crate::keystore;
    let out = tempfile::tempdir().unwrap();
    let outcome = issue(&keystore_manifests(Some("first")), out.path(), now());
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    let dir = out.path().join("apps/app-tls");
    let bytes = |file: &str| std::fs::read(dir.join(file)).unwrap();
    for file in ["keystore.p12", "truststore.p12", "keystore.jks", "truststore.jks"] {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join(file)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        assert!(!bytes(file).is_empty(), "{file}");
    }
    let p12 = keystore::pkcs12::read(&bytes("keystore.p12"), Some("first")).unwrap();
    assert_eq!(p12.keys.len(), 1);
    assert_eq!(
        keystore::jks::read(&bytes("keystore.jks"), "jks-pass")
            .unwrap()
            .keys
            .len(),
        1
    );
    let (crt, p12_before, jks_before) = (bytes("tls.crt"), bytes("keystore.p12"), bytes("keystore.jks"));

    // Run again: kept, nothing rewritten.
    let outcome = issue(&keystore_manifests(Some("first")), out.path(), now());
    assert!(outcome.output.contains("kept"), "{}", outcome.output);
    assert_eq!(bytes("keystore.p12"), p12_before);

    // A new password: the PKCS#12 stores are rewritten, the certificate and JKS stay.
    let outcome = issue(&keystore_manifests(Some("second")), out.path(), now());
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    assert_eq!(bytes("tls.crt"), crt);
    assert_eq!(bytes("keystore.jks"), jks_before);
    assert!(keystore::pkcs12::read(&bytes("keystore.p12"), Some("second")).is_ok());
    assert!(keystore::pkcs12::read(&bytes("truststore.p12"), Some("second")).is_ok());

    // No password Secret: the Certificate fails and its files stay as they are.
    let outcome = issue(&keystore_manifests(None), out.path(), now());
    assert_eq!(
        outcome.failures,
        [
            "Certificate apps/app: spec.keystores.pkcs12.passwordSecretRef: Secret \"apps/app-keystore\" not found"
        ]
    );
    assert!(keystore::pkcs12::read(&bytes("keystore.p12"), Some("second")).is_ok());
}

#[test]
fn the_mesh_examples_issue_istios_plug_in_ca_and_linkerds_identity_issuer() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/examples");
    let out = tempfile::tempdir().unwrap();
    let documents = manifests::read_all(&[root.join("istio")]).unwrap();
    let outcome = issue(&documents, out.path(), now());
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    let cacerts = out.path().join("istio-system/cacerts");
    for file in [
        "tls.crt",
        "tls.key",
        "ca.crt",
        "ca-cert.pem",
        "ca-key.pem",
        "cert-chain.pem",
        "root-cert.pem",
    ] {
        assert!(cacerts.join(file).is_file(), "cacerts/{file}");
    }
    assert_eq!(read(cacerts.join("root-cert.pem")), read(cacerts.join("ca.crt")));
    assert_eq!(
        read(cacerts.join("cert-chain.pem"))
            .matches("BEGIN CERTIFICATE")
            .count(),
        2
    );

    let documents = manifests::read_all(&[root.join("linkerd")]).unwrap();
    let outcome = issue(&documents, out.path(), now());
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    let issuer = crate::pki::parse_certificate_chain(
        read(out.path().join("linkerd/linkerd-identity-issuer/tls.crt")).as_bytes(),
    )
    .unwrap()
    .remove(0);
    assert!(issuer.is_ca);
    assert_eq!(
        issuer.not_after.duration_since(issuer.not_before),
        SignedDuration::from_hours(48)
    );
    assert_eq!(
        issuer.common_name.as_deref(),
        Some("identity.linkerd.cluster.local")
    );
}
