//! `convert` on cert-manager's documented examples (src/cli/testdata/cert-manager/).

use std::path::{Path, PathBuf};

use super::*;
use crate::api::{Certificate, ClusterIssuer, Issuer};
use crate::cli::convert::{ConvertArgs, convert_all, run};
use crate::cli::manifests::{self, Document};

fn testdata(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/cli/testdata/cert-manager")
        .join(file)
}

fn read(file: &str) -> Vec<Document> {
    manifests::read_all(&[testdata(file)]).unwrap()
}

/// The converted objects, parsed back.
fn converted(file: &str) -> Vec<Value> {
    let outcome = convert_all(&read(file)).unwrap();
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    manifests::parse("output", &outcome.output)
        .unwrap()
        .into_iter()
        .map(|d| d.object)
        .collect()
}

#[test]
fn a_ca_issuer_converts_with_its_urls() {
    let [issuer] = converted("01-ca-issuer.yaml").try_into().unwrap();
    assert_eq!(issuer["apiVersion"], "certkeeper.io/v1");
    let issuer: Issuer = serde_json::from_value(issuer).unwrap();
    let ca = issuer.spec.ca.unwrap();
    assert_eq!(ca.secret_name, "ca-key-pair");
    assert_eq!(ca.ocsp_servers.unwrap(), ["http://ocsp.sandbox.example.com"]);
}

#[test]
fn a_self_signed_cluster_issuer_converts() {
    let [issuer] = converted("02-selfsigned-clusterissuer.yaml").try_into().unwrap();
    let issuer: ClusterIssuer = serde_json::from_value(issuer).unwrap();
    assert!(issuer.spec.issuer.self_signed.is_some());
}

#[test]
fn a_certificate_keeps_every_field_and_changes_group_and_annotations() {
    let [before] = read("03-certificate.yaml").try_into().unwrap();
    let [after] = converted("03-certificate.yaml").try_into().unwrap();
    assert_eq!(after["apiVersion"], "certkeeper.io/v1");
    assert_eq!(after["spec"]["issuerRef"]["group"], "certkeeper.io");
    let annotations = &after["metadata"]["annotations"];
    assert_eq!(annotations["certkeeper.io/issue-temporary-certificate"], "false");
    assert_eq!(annotations["owner"], "payments@example.com");
    assert!(
        annotations
            .get("cert-manager.io/issue-temporary-certificate")
            .is_none()
    );
    let template = &after["spec"]["secretTemplate"]["annotations"];
    assert_eq!(template["certkeeper.io/allow-direct-injection"], "true");

    // Everything else is as it was.
    let mut expected = before.object["spec"].clone();
    expected["issuerRef"]["group"] = json!("certkeeper.io");
    let annotations = expected["secretTemplate"]["annotations"].as_object_mut().unwrap();
    let value = annotations
        .remove("cert-manager.io/allow-direct-injection")
        .unwrap();
    annotations.insert("certkeeper.io/allow-direct-injection".into(), value);
    assert_eq!(after["spec"], expected);

    let typed: Certificate = serde_json::from_value(after).unwrap();
    let spec = crate::certificate::spec::validate(&typed.spec).unwrap();
    assert_eq!(spec.key.size, 2048);
    assert!(spec.combined_pem);
}

#[test]
fn acme_vault_and_external_issuers_are_named_per_object_and_keystores_convert() {
    let outcome = run(&ConvertArgs {
        files: vec![testdata("")],
    })
    .unwrap();
    let failures = outcome.failures.join("\n");
    assert_eq!(outcome.failures.len(), 3, "{failures}");
    for expected in [
        "ClusterIssuer letsencrypt-staging (",
        "04-acme-clusterissuer.yaml): ACME issuers are not served by certkeeper (only selfSigned and ca)",
        "Issuer sandbox/vault-issuer (",
        "05-vault-issuer.yaml): Vault issuers are not served by certkeeper",
        "Certificate sandbox/pca-cert (",
        "spec.issuerRef.group awspca.cert-manager.io is an external issuer, which certkeeper cannot serve",
    ] {
        assert!(
            failures.contains(expected),
            "missing {expected:?} in:\n{failures}"
        );
    }
    assert_eq!(
        outcome.summary,
        "3 of 7 objects cannot be converted; nothing was left out silently"
    );
    // The four that convert are still printed, the keystores and output formats unchanged.
    let converted = manifests::parse("output", &outcome.output).unwrap();
    assert_eq!(converted.len(), 4);
    let java = converted
        .iter()
        .find(|d| d.object["metadata"]["name"] == "java-app")
        .expect("java-app converted");
    let spec = &java.object["spec"];
    assert_eq!(spec["keystores"]["pkcs12"]["profile"], "Modern2023");
    assert_eq!(spec["keystores"]["jks"]["alias"], "java-app");
    assert_eq!(
        spec["keystores"]["jks"]["passwordSecretRef"],
        serde_json::json!({"name": "java-app-keystore-password", "key": "password"})
    );
    assert_eq!(spec["additionalOutputFormats"][1]["type"], "CombinedPEM");
}

#[test]
fn objects_of_other_apis_pass_through_and_server_fields_are_dropped() {
    let documents = manifests::parse(
        "stdin",
        r#"
apiVersion: v1
kind: Namespace
metadata: {name: sandbox}
---
apiVersion: v1
kind: List
items:
  - apiVersion: cert-manager.io/v1
    kind: Issuer
    metadata:
      name: selfsigned
      namespace: sandbox
      uid: 0c2a
      resourceVersion: "12"
      managedFields: [{manager: kubectl}]
      annotations:
        kubectl.kubernetes.io/last-applied-configuration: "{}"
    spec: {selfSigned: {}}
    status: {conditions: []}
"#,
    )
    .unwrap();
    let outcome = convert_all(&documents).unwrap();
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    let objects: Vec<Value> = manifests::parse("output", &outcome.output)
        .unwrap()
        .into_iter()
        .map(|d| d.object)
        .collect();
    assert_eq!(
        objects[0],
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "sandbox"}})
    );
    assert_eq!(
        objects[1],
        json!({"apiVersion": "certkeeper.io/v1", "kind": "Issuer",
               "metadata": {"name": "selfsigned", "namespace": "sandbox"},
               "spec": {"selfSigned": {}}})
    );
}

#[test]
fn other_cert_manager_kinds_are_refused() {
    let documents = manifests::parse(
        "stdin",
        "apiVersion: cert-manager.io/v1\nkind: CertificateRequest\nmetadata: {name: r, namespace: a}\n\
         ---\napiVersion: acme.cert-manager.io/v1\nkind: Order\nmetadata: {name: o, namespace: a}\n",
    )
    .unwrap();
    let outcome = convert_all(&documents).unwrap();
    assert_eq!(outcome.failures.len(), 2, "{:?}", outcome.failures);
    assert!(outcome.failures[0].starts_with("CertificateRequest a/r (stdin): kind CertificateRequest"));
    assert!(outcome.failures[1].contains("acme.cert-manager.io/v1 is not served by certkeeper"));
}

#[test]
fn cert_manager_annotations_on_an_ingress_are_named_not_passed_on() {
    let documents = manifests::parse(
        "ingress.yaml",
        r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: shop
  annotations: {cert-manager.io/cluster-issuer: letsencrypt}
spec: {rules: []}
"#,
    )
    .unwrap();
    let outcome = convert_all(&documents).unwrap();
    assert_eq!(
        outcome.failures,
        [
            "Ingress shop/web (ingress.yaml): annotation cert-manager.io/cluster-issuer asks \
          cert-manager (ingress-shim, CA injector) for a certificate; certkeeper does not act on \
          annotations: write a Certificate"
        ]
    );
    assert_eq!(outcome.output, "");
}

#[test]
fn name_constraints_of_a_ca_certificate_are_carried_over_unchanged() {
    let documents = manifests::parse(
        "stdin",
        r#"
apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: team-ca, namespace: sandbox}
spec:
  secretName: team-ca
  commonName: Team CA
  isCA: true
  issuerRef: {name: root, kind: ClusterIssuer}
  nameConstraints:
    critical: true
    permitted:
      dnsDomains: [team.svc, .cluster.local]
      ipRanges: [10.0.0.0/8, "fd00::/8"]
      emailAddresses: [.team.svc]
      uriDomains: [cluster.local]
    excluded:
      dnsDomains: [secret.team.svc]
"#,
    )
    .unwrap();
    let outcome = convert_all(&documents).unwrap();
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    let [after] = manifests::parse("output", &outcome.output)
        .unwrap()
        .into_iter()
        .map(|d| d.object)
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    assert_eq!(
        after["spec"]["nameConstraints"],
        documents[0].object["spec"]["nameConstraints"]
    );
    let typed: Certificate = serde_json::from_value(after).unwrap();
    let spec = crate::certificate::spec::validate(&typed.spec).unwrap();
    let constraints = spec.name_constraints.unwrap();
    assert!(constraints.critical);
    assert_eq!(constraints.excluded.dns_domains, ["secret.team.svc"]);
}
