//! Behaviour of the revocation module through its public API, checked by x509-parser, by the
//! `x509-ocsp` decoder and by the `openssl` command line tool.

mod controllers;
mod crl;
mod ocsp;
mod openssl;
mod records;
mod request;
mod server;

use der::Encode;
use der::asn1::OctetString;
use x509_cert::serial_number::SerialNumber;
use x509_ocsp::{CertId, OcspRequest, Request, TbsRequest};

use super::*;
use crate::pki::{
    CaKeyPair, CertificateTemplate, IssuedCertificate, IssuerUrls, KeyAlgorithm, KeyEncoding, KeySpec,
    PrivateKey, Usage, sign_self_signed, sign_with_ca,
};

pub(super) fn at(rfc3339: &str) -> jiff::Timestamp {
    rfc3339.parse().expect("test timestamp")
}

/// The instant most tests run at.
pub(super) fn now() -> jiff::Timestamp {
    at("2025-06-01T12:00:00Z")
}

pub(super) fn hours(n: i64) -> jiff::SignedDuration {
    jiff::SignedDuration::from_hours(n)
}

pub(super) fn key(algorithm: KeyAlgorithm, size: u32) -> PrivateKey {
    PrivateKey::generate(KeySpec { algorithm, size }).expect("key generation")
}

/// A root CA of `algorithm` valid for ten years from `from`, as an Issuer reads it from its
/// Secret, naming a CRL and an OCSP responder.
pub(super) fn root_ca_with(algorithm: KeyAlgorithm, size: u32, from: jiff::Timestamp) -> CaKeyPair {
    let ca_key = key(algorithm, size);
    let template = CertificateTemplate {
        common_name: Some("Example Root CA".into()),
        not_before: from,
        not_after: from + hours(24 * 3650),
        is_ca: true,
        usages: vec![Usage::DigitalSignature],
        ..Default::default()
    };
    let root = sign_self_signed(&template, &ca_key).expect("root");
    CaKeyPair::from_pem(
        root.chain_pem.as_bytes(),
        ca_key.to_pem(KeyEncoding::Pkcs8).expect("pem").as_bytes(),
        None,
        IssuerUrls {
            crl_distribution_points: vec!["http://certkeeper-pki.certkeeper-system/crl/demo/root.crl".into()],
            ocsp_servers: vec!["http://certkeeper-pki.certkeeper-system/ocsp/demo/root".into()],
            issuing_certificate_urls: vec![],
        },
    )
    .expect("root key pair")
}

pub(super) fn root_ca(from: jiff::Timestamp) -> CaKeyPair {
    root_ca_with(KeyAlgorithm::Ecdsa, 256, from)
}

/// A 24 h leaf signed by `ca`.
pub(super) fn leaf(ca: &CaKeyPair, from: jiff::Timestamp) -> IssuedCertificate {
    let template = CertificateTemplate {
        common_name: Some("api.example.svc".into()),
        dns_names: vec!["api.example.svc".into()],
        not_before: from,
        not_after: from + hours(24),
        usages: vec![Usage::DigitalSignature, Usage::ServerAuth],
        ..Default::default()
    };
    sign_with_ca(&template, &key(KeyAlgorithm::Ecdsa, 256), ca).expect("leaf")
}

pub(super) fn revoked(serial_hex: &str, at: jiff::Timestamp, reason: RevocationReason) -> RevokedSerial {
    RevokedSerial {
        serial_hex: serial_hex.to_owned(),
        revoked_at: at,
        reason,
    }
}

/// Which hash a test CertID is computed with.
#[derive(Clone, Copy)]
pub(super) enum Hash {
    Sha1,
    Sha256,
}

/// A CertID for `serial_hex` under `ca`, as a client computes it.
pub(super) fn cert_id(ca: &CaKeyPair, serial_hex: &str, hash: Hash) -> CertId {
    let (oid, algorithm) = match hash {
        Hash::Sha1 => ("1.3.14.3.2.26", &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY),
        Hash::Sha256 => ("2.16.840.1.101.3.4.2.1", &aws_lc_rs::digest::SHA256),
    };
    let identity = ca.identity().unwrap();
    let key_bits = crate::pki::public_key_bits(&ca.certificate().public_key_der).unwrap();
    CertId {
        hash_algorithm: spki::AlgorithmIdentifierOwned {
            oid: const_oid::ObjectIdentifier::new_unwrap(oid),
            parameters: Some(der::asn1::Any::null()),
        },
        issuer_name_hash: OctetString::new(
            aws_lc_rs::digest::digest(algorithm, &identity.subject_der).as_ref(),
        )
        .unwrap(),
        issuer_key_hash: OctetString::new(aws_lc_rs::digest::digest(algorithm, &key_bits).as_ref()).unwrap(),
        serial_number: SerialNumber::new(&parse_serial(serial_hex).unwrap()).unwrap(),
    }
}

/// A DER OCSPRequest about `ids`, with a nonce extension when `nonce` is given.
pub(super) fn request(ids: Vec<CertId>, nonce: Option<&[u8]>) -> Vec<u8> {
    let request_extensions = nonce.map(|value| {
        vec![x509_cert::ext::Extension {
            extn_id: const_oid::db::rfc6960::ID_PKIX_OCSP_NONCE,
            critical: false,
            extn_value: OctetString::new(OctetString::new(value).unwrap().to_der().unwrap()).unwrap(),
        }]
    });
    OcspRequest {
        tbs_request: TbsRequest {
            version: x509_ocsp::Version::V1,
            requestor_name: None,
            request_list: ids
                .into_iter()
                .map(|req_cert| Request {
                    req_cert,
                    single_request_extensions: None,
                })
                .collect(),
            request_extensions,
        },
        optional_signature: None,
    }
    .to_der()
    .unwrap()
}
