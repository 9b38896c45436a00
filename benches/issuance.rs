//! Full issuance as the controller does it for one Certificate: generate the subject key, sign
//! it with a CA, and encode the Secret's PEM (tls.crt chain, ca.crt, tls.key).

use std::hint::black_box;

use certkeeper::pki::{
    CaKeyPair, CertificateTemplate, IssuerUrls, KeyAlgorithm, KeyEncoding, KeySpec, PrivateKey,
    SubjectFields, Usage, sign_self_signed, sign_with_ca,
};
use criterion::{Criterion, criterion_group, criterion_main};

/// A self-signed ECDSA P-256 root, read back the way an Issuer reads its Secret.
fn ca(now: jiff::Timestamp) -> CaKeyPair {
    let key = PrivateKey::generate(KeySpec {
        algorithm: KeyAlgorithm::Ecdsa,
        size: 256,
    })
    .expect("CA key");
    let template = CertificateTemplate {
        common_name: Some("Bench Root CA".into()),
        subject: SubjectFields {
            organizations: vec!["certkeeper".into()],
            ..Default::default()
        },
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

fn leaf(now: jiff::Timestamp) -> CertificateTemplate {
    CertificateTemplate {
        common_name: Some("api.shop.svc".into()),
        dns_names: vec!["api.shop.svc".into(), "api.shop.svc.cluster.local".into()],
        uris: vec!["spiffe://cluster.local/ns/shop/sa/api".into()],
        not_before: now,
        not_after: now + jiff::SignedDuration::from_hours(24),
        usages: vec![
            Usage::DigitalSignature,
            Usage::KeyEncipherment,
            Usage::ServerAuth,
            Usage::ClientAuth,
        ],
        ..Default::default()
    }
}

/// One issuance: key generation + signing + PEM encoding of everything the Secret holds.
fn issue(template: &CertificateTemplate, spec: KeySpec, ca: &CaKeyPair) -> (String, String, String) {
    let key = PrivateKey::generate(spec).expect("subject key");
    let issued = sign_with_ca(template, &key, ca).expect("signing");
    let tls_key = key.to_pem(KeyEncoding::Pkcs8).expect("key PEM");
    (issued.chain_pem, issued.ca_pem, tls_key)
}

fn issuance(c: &mut Criterion) {
    let now = jiff::Timestamp::now();
    let ca = ca(now);
    let template = leaf(now);

    let ecdsa = KeySpec {
        algorithm: KeyAlgorithm::Ecdsa,
        size: 256,
    };
    c.bench_function("issuance/ecdsa_p256", |b| {
        b.iter(|| black_box(issue(black_box(&template), ecdsa, &ca)))
    });

    // RSA key generation dominates and varies a lot (prime search): fewer, longer samples.
    let rsa = KeySpec {
        algorithm: KeyAlgorithm::Rsa,
        size: 2048,
    };
    let mut group = c.benchmark_group("issuance");
    group.sample_size(20);
    group.bench_function("rsa_2048", |b| {
        b.iter(|| black_box(issue(black_box(&template), rsa, &ca)))
    });
    group.finish();
}

criterion_group!(benches, issuance);
criterion_main!(benches);
