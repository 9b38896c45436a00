//! Behaviour of the pki module, checked through its public API, by OpenSSL and by rustls.
//!
//! Shared fixtures live here: a fixed instant, templates, and CA hierarchies built with the
//! module itself. Files written by OpenSSL are under `src/pki/testdata/`.

mod ca_validation;
mod certificates;
mod chains;
mod csr;
mod keys;
pub(crate) mod mtls;
mod name_constraints;
pub(crate) mod openssl;

use std::net::IpAddr;

use super::*;

/// The instant most tests run at.
pub(super) fn now() -> jiff::Timestamp {
    at("2025-06-01T12:00:00Z")
}

pub(super) fn at(rfc3339: &str) -> jiff::Timestamp {
    rfc3339.parse().expect("test timestamp")
}

pub(super) fn hours(n: i64) -> jiff::SignedDuration {
    jiff::SignedDuration::from_hours(n)
}

pub(super) fn ecdsa_p256() -> PrivateKey {
    PrivateKey::generate(KeySpec {
        algorithm: KeyAlgorithm::Ecdsa,
        size: 256,
    })
    .expect("P-256 key")
}

pub(super) fn key(algorithm: KeyAlgorithm, size: u32) -> PrivateKey {
    PrivateKey::generate(KeySpec { algorithm, size }).expect("key generation")
}

/// A workload leaf valid for 24 h from `from`, with the default mTLS usages.
pub(super) fn leaf_template(from: jiff::Timestamp) -> CertificateTemplate {
    CertificateTemplate {
        common_name: Some("api.example.svc".into()),
        dns_names: vec!["api.example.svc".into(), "api.example.svc.cluster.local".into()],
        not_before: from,
        not_after: from + hours(24),
        usages: vec![
            Usage::DigitalSignature,
            Usage::KeyEncipherment,
            Usage::ServerAuth,
            Usage::ClientAuth,
        ],
        ..Default::default()
    }
}

/// A CA certificate template valid for `days` from `from`.
pub(super) fn ca_template(common_name: &str, from: jiff::Timestamp, days: i64) -> CertificateTemplate {
    CertificateTemplate {
        common_name: Some(common_name.into()),
        subject: SubjectFields {
            organizations: vec!["Example".into()],
            ..Default::default()
        },
        not_before: from,
        not_after: from + hours(24 * days),
        is_ca: true,
        usages: vec![Usage::DigitalSignature],
        ..Default::default()
    }
}

/// A self-signed root CA as an Issuer would read it from its Secret.
pub(super) fn root_ca(common_name: &str, from: jiff::Timestamp) -> CaKeyPair {
    let key = ecdsa_p256();
    let root = sign_self_signed(&ca_template(common_name, from, 3650), &key).expect("root");
    CaKeyPair::from_pem(
        root.chain_pem.as_bytes(),
        key.to_pem(KeyEncoding::Pkcs8).expect("pem").as_bytes(),
        None,
        IssuerUrls::default(),
    )
    .expect("root key pair")
}

/// An intermediate CA signed by `root`, read back from a Secret whose `tls.crt` holds only the
/// intermediate and whose `ca.crt` holds the root (cert-manager's layout for a CA Certificate).
pub(super) fn intermediate_ca(root: &CaKeyPair, from: jiff::Timestamp) -> CaKeyPair {
    let key = ecdsa_p256();
    let issued = sign_with_ca(&ca_template("Example Intermediate CA", from, 365), &key, root).expect("int");
    CaKeyPair::from_pem(
        issued.certificate_pem.as_bytes(),
        key.to_pem(KeyEncoding::Pkcs8).expect("pem").as_bytes(),
        Some(issued.ca_pem.as_bytes()),
        IssuerUrls::default(),
    )
    .expect("intermediate key pair")
}

/// Parses a PEM bundle that must hold certificates.
pub(super) fn chain(pem: &str) -> Vec<CertificateInfo> {
    parse_certificate_chain(pem.as_bytes()).expect("certificate chain")
}

pub(super) fn only(pem: &str) -> CertificateInfo {
    let mut certs = chain(pem);
    assert_eq!(certs.len(), 1, "expected exactly one certificate");
    certs.remove(0)
}

pub(super) fn ip(text: &str) -> IpAddr {
    text.parse().expect("test IP")
}
