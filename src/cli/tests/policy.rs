//! `certkeeper policy check` with --policies (no cluster) and `issue` under a policy: the
//! README's mesh example, judged by the controller's decision.

use super::*;
use crate::cli::Outcome;
use crate::cli::manifests;
use crate::cli::policy::{PolicySet, check_all};

fn example(file: &str) -> Vec<manifests::Document> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("manifests/examples/policy")
        .join(file);
    manifests::read_all(&[path]).unwrap()
}

fn mesh_policies(outcome: &mut Outcome) -> PolicySet {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/examples/policy");
    let documents = manifests::read_all(&[dir]).unwrap();
    PolicySet::from_documents(&documents, "default", false, outcome)
}

#[test]
fn the_mesh_example_allows_each_namespace_its_own_identity() {
    let mut outcome = Outcome::default();
    let set = mesh_policies(&mut outcome);
    check_all(&example("workloads.yaml"), &set, "default", &mut outcome);
    assert_printable(&outcome.output);
    assert!(outcome.failures.is_empty(), "{:?}", outcome.failures);
    assert_eq!(
        outcome.output,
        "Certificate payments/api (ClusterIssuer \"mesh-ca\"): allowed by CertificatePolicy \"mesh-identities\"\n  \
         CertificatePolicy \"mesh-identities\" allows it\n\
         Certificate shop/web (ClusterIssuer \"mesh-ca\"): allowed by CertificatePolicy \"mesh-identities\"\n  \
         CertificatePolicy \"mesh-identities\" allows it\n"
    );
}

#[test]
fn impersonating_another_namespace_is_denied_with_the_field_and_a_non_zero_exit() {
    let mut outcome = Outcome::default();
    let set = mesh_policies(&mut outcome);
    check_all(&example("impersonation.yaml"), &set, "default", &mut outcome);
    assert_printable(&outcome.output);
    let text = outcome.output.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        text.contains(
            "Certificate shop/not-payments (ClusterIssuer \"mesh-ca\"): denied by CertificatePolicy \
             \"mesh-identities\": spec.uris \"spiffe://cluster.local/ns/payments/sa/api\" is not allowed"
        ),
        "{}",
        outcome.output
    );
    assert_eq!(
        outcome.failures,
        ["Certificate shop/not-payments (ClusterIssuer \"mesh-ca\") would be denied"]
    );
    assert_eq!(outcome.summary, "1 of 1 Certificates would be denied");
}

#[test]
fn a_namespace_outside_the_selector_is_told_so() {
    let mut outcome = Outcome::default();
    let set = mesh_policies(&mut outcome);
    let certificate = manifests::parse(
        "test.yaml",
        "apiVersion: certkeeper.io/v1\nkind: Certificate\nmetadata: {name: api, namespace: legacy}\n\
         spec: {secretName: api-tls, duration: 24h, uris: ['spiffe://cluster.local/ns/legacy/sa/api'],\n\
         \x20 issuerRef: {kind: ClusterIssuer, name: mesh-ca}}\n",
    )
    .unwrap();
    check_all(&certificate, &set, "default", &mut outcome);
    let text = outcome.output.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        text.contains(
            "denied: no CertificatePolicy selects namespace \"legacy\" for ClusterIssuer \"mesh-ca\""
        ),
        "{}",
        outcome.output
    );
    assert!(
        text.contains("CertificatePolicy \"mesh-identities\" does not select its namespace"),
        "{text}"
    );
}

#[test]
fn issue_refuses_what_a_policy_among_its_manifests_denies() {
    let dir = tempfile::tempdir().unwrap();
    // The directory holds impersonation.yaml too, as `issue -f manifests/examples/policy/` reads it.
    let documents = manifests::read_all(&[
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/examples/policy")
    ])
    .unwrap();
    let outcome = crate::cli::issue::issue_all(&documents, &issue_settings(dir.path()), now());
    assert_printable(&outcome.output);
    // The mesh CA and both workloads are issued; the impersonation is not, and says why.
    assert!(
        outcome.output.contains("certkeeper-system/mesh-ca"),
        "{}",
        outcome.output
    );
    assert!(dir.path().join("payments/api-tls/tls.crt").exists());
    assert!(dir.path().join("shop/web-tls/tls.crt").exists());
    assert!(!dir.path().join("shop/not-payments-tls").exists());
    assert_eq!(outcome.failures.len(), 1, "{:?}", outcome.failures);
    assert!(
        outcome.failures[0].contains("Denied: denied by CertificatePolicy \"mesh-identities\": spec.uris"),
        "{:?}",
        outcome.failures
    );
}

#[test]
fn a_team_ca_is_allowed_within_its_own_domain_and_denied_beyond_it() {
    let mut outcome = Outcome::default();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/examples/policy");
    let documents = manifests::read_all(&[root.clone(), root.join("team-ca")]).unwrap();
    let set = PolicySet::from_documents(&documents, "default", false, &mut outcome);
    let certificates = manifests::read_all(&[root.join("team-ca/certificates.yaml")]).unwrap();
    check_all(&certificates, &set, "default", &mut outcome);
    assert_printable(&outcome.output);
    let text = outcome.output.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        text.contains(
            "Certificate payments/payments-ca (ClusterIssuer \"mesh-ca\"): allowed by CertificatePolicy \"team-cas\""
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "CertificatePolicy \"team-cas\" refuses: spec.nameConstraints.permitted.dnsDomains \"svc\" is not \
             within shop.svc, shop.svc.cluster.local"
        ),
        "{text}"
    );
    assert_eq!(
        outcome.failures,
        ["Certificate shop/shop-ca (ClusterIssuer \"mesh-ca\") would be denied"]
    );
}
