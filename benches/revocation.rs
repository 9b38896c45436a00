//! Revocation's two hot paths for one CA issuer: signing its CRL with 10,000 entries, and
//! answering one OCSP request (parse, look up among 10,000 revoked serials, sign, encode).

use std::collections::HashMap;
use std::hint::black_box;

use certkeeper::pki::{
    CaKeyPair, CertificateTemplate, IssuerUrls, KeyAlgorithm, KeyEncoding, KeySpec, PrivateKey, Usage,
    sign_self_signed,
};
use certkeeper::revocation::{RevocationReason, RevokedSerial, build_crl, respond_ocsp};
use criterion::{Criterion, criterion_group, criterion_main};
use der::Encode;
use der::asn1::OctetString;
use x509_ocsp::{CertId, OcspRequest, Request, TbsRequest};

const ENTRIES: usize = 10_000;

/// A self-signed root of `algorithm`, read back the way an Issuer reads its Secret.
fn ca(now: jiff::Timestamp, algorithm: KeyAlgorithm, size: u32) -> CaKeyPair {
    let key = PrivateKey::generate(KeySpec { algorithm, size }).expect("CA key");
    let template = CertificateTemplate {
        common_name: Some("Bench Root CA".into()),
        not_before: now,
        not_after: now + jiff::SignedDuration::from_hours(24 * 365),
        is_ca: true,
        usages: vec![Usage::DigitalSignature],
        ..Default::default()
    };
    let root = sign_self_signed(&template, &key).expect("CA certificate");
    let key_pem = key.to_pem(KeyEncoding::Pkcs8).expect("CA key PEM");
    CaKeyPair::from_pem(
        root.chain_pem.as_bytes(),
        key_pem.as_bytes(),
        None,
        IssuerUrls::default(),
    )
    .expect("CA key pair")
}

/// 10,000 revoked 20-octet serials, a quarter of them keyCompromise.
fn records(now: jiff::Timestamp) -> Vec<RevokedSerial> {
    (0..ENTRIES)
        .map(|i| RevokedSerial {
            serial_hex: format!("10{:038x}", i as u128 * 7919),
            revoked_at: now - jiff::SignedDuration::from_secs(i as i64),
            reason: if i % 4 == 0 {
                RevocationReason::KeyCompromise
            } else {
                RevocationReason::Superseded
            },
        })
        .collect()
}

/// A DER OCSP request for `serial` of `ca`, SHA-1 CertID and a nonce, as `openssl ocsp` sends.
fn request(ca: &CaKeyPair, serial: &[u8]) -> Vec<u8> {
    let (_, x509) = x509_parser::parse_x509_certificate(&ca.certificate().der).expect("CA certificate");
    let sha1 = |data: &[u8]| {
        OctetString::new(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, data).as_ref(),
        )
        .expect("hash")
    };
    let cert_id = CertId {
        hash_algorithm: spki::AlgorithmIdentifierOwned {
            oid: const_oid::ObjectIdentifier::new_unwrap("1.3.14.3.2.26"),
            parameters: Some(der::asn1::Any::null()),
        },
        issuer_name_hash: sha1(x509.subject().as_raw()),
        issuer_key_hash: sha1(&x509.public_key().subject_public_key.data),
        serial_number: x509_cert::serial_number::SerialNumber::new(serial).expect("serial"),
    };
    let nonce = OctetString::new(
        OctetString::new(&[7u8; 16][..])
            .expect("nonce")
            .to_der()
            .expect("nonce"),
    )
    .expect("nonce");
    OcspRequest {
        tbs_request: TbsRequest {
            version: x509_ocsp::Version::V1,
            requestor_name: None,
            request_list: vec![Request {
                req_cert: cert_id,
                single_request_extensions: None,
            }],
            request_extensions: Some(vec![x509_cert::ext::Extension {
                extn_id: const_oid::db::rfc6960::ID_PKIX_OCSP_NONCE,
                critical: false,
                extn_value: nonce,
            }]),
        },
        optional_signature: None,
    }
    .to_der()
    .expect("request")
}

fn revocation(c: &mut Criterion) {
    let now = jiff::Timestamp::now();
    let records = records(now);
    let mut group = c.benchmark_group("revocation");
    group.sample_size(20);
    for (name, algorithm, size) in [
        ("p256", KeyAlgorithm::Ecdsa, 256),
        ("rsa2048", KeyAlgorithm::Rsa, 2048),
    ] {
        let ca = ca(now, algorithm, size);
        let bytes = build_crl(&ca, &records, 1, now).expect("CRL").der.len();
        println!("revocation/crl_10000_entries/{name}: a CRL of {bytes} bytes");
        group.bench_function(format!("crl_10000_entries/{name}"), |b| {
            b.iter(|| black_box(build_crl(&ca, black_box(&records), 1, now).expect("CRL")))
        });
        let revoked = certkeeper::revocation::parse_serial(&records[ENTRIES - 1].serial_hex).expect("serial");
        let der = request(&ca, &revoked);
        // Indexed by serial, as the PKI endpoint keeps them.
        let by_serial: HashMap<String, RevokedSerial> = records
            .iter()
            .map(|r| (r.serial_hex.clone(), r.clone()))
            .collect();
        group.bench_function(format!("ocsp_response/{name}"), |b| {
            b.iter(|| {
                black_box(respond_ocsp(&ca, black_box(&by_serial), black_box(&der), now).expect("response"))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, revocation);
criterion_main!(benches);
