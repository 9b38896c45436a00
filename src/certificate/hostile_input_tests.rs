//! Hostile input, property-tested: whatever a Secret holds and whatever a spec says, the
//! controller ends in a clear refusal (`InvalidSpec` for a spec, a re-issue for a Secret) or a
//! certificate that says exactly what was asked, never a panic, and never key material in a
//! message.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use proptest::prelude::*;

use super::secret::{SecretState, read};
use super::spec::{MAX_NAME_BYTES, MAX_NAMES, validate};
use crate::api::{CertificateSpec, IssuerRef, Subject};
use crate::pki::{
    CaKeyPair, IssuerUrls, KeyAlgorithm, KeyEncoding, KeySpec, PrivateKey, parse_certificate_chain,
    sign_self_signed, sign_with_ca,
};

fn secret(crt: Vec<u8>, key: Vec<u8>) -> Secret {
    Secret {
        data: Some(BTreeMap::from([
            ("tls.crt".to_owned(), ByteString(crt)),
            ("tls.key".to_owned(), ByteString(key)),
        ])),
        ..Secret::default()
    }
}

fn pem(label: &str, der: &[u8]) -> Vec<u8> {
    pem::encode(&pem::Pem::new(label, der.to_vec())).into_bytes()
}

const LABELS: [&str; 5] = [
    "CERTIFICATE",
    "PRIVATE KEY",
    "RSA PRIVATE KEY",
    "EC PRIVATE KEY",
    "ENCRYPTED PRIVATE KEY",
];

/// One key of each algorithm and encoding, generated once (RSA keys take time).
fn key_pems() -> &'static [String] {
    static KEYS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        [
            (KeyAlgorithm::Ecdsa, 256, KeyEncoding::Pkcs8),
            (KeyAlgorithm::Ecdsa, 384, KeyEncoding::Pkcs1),
            (KeyAlgorithm::Ed25519, 0, KeyEncoding::Pkcs8),
            (KeyAlgorithm::Rsa, 2048, KeyEncoding::Pkcs1),
            (KeyAlgorithm::Rsa, 2048, KeyEncoding::Pkcs8),
        ]
        .map(|(algorithm, size, encoding)| {
            let key = PrivateKey::generate(KeySpec { algorithm, size }).unwrap();
            key.to_pem(encoding).unwrap()
        })
        .to_vec()
    })
}

/// The base64 body of a PEM block, as runs of 16 characters: none may appear in a message.
fn secret_runs(pem_text: &str) -> Vec<String> {
    let body: String = pem_text.lines().filter(|l| !l.starts_with("-----")).collect();
    body.as_bytes()
        .chunks(16)
        .filter(|c| c.len() == 16)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

fn refused_cleanly(state: &SecretState) -> bool {
    !matches!(state, SecretState::Present(_))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn secret_data_of_any_bytes_is_refused_without_a_panic(
        crt in proptest::collection::vec(any::<u8>(), 0..4096),
        key in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        prop_assert!(refused_cleanly(&read(Some(&secret(crt, key)))));
    }

    #[test]
    fn pem_armour_around_garbage_is_refused_without_a_panic(
        crt_label in proptest::sample::select(LABELS.to_vec()),
        key_label in proptest::sample::select(LABELS.to_vec()),
        crt in proptest::collection::vec(any::<u8>(), 0..2048),
        key in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let state = read(Some(&secret(pem(crt_label, &crt), pem(key_label, &key))));
        prop_assert!(refused_cleanly(&state));
    }

    #[test]
    fn a_damaged_key_of_every_encoding_is_refused_without_showing_it(
        which in 0usize..5,
        position in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        truncate in any::<bool>(),
    ) {
        let key_pem = &key_pems()[which];
        let block = pem::parse(key_pem).unwrap();
        let mut der = block.contents().to_vec();
        let at = position.index(der.len());
        if truncate { der.truncate(at) } else { der[at] ^= byte | 1 }
        let damaged = pem(block.tag(), &der);
        match PrivateKey::from_pem(&damaged) {
            Ok(_) => {} // A flipped bit in a field that does not matter: still a key.
            Err(e) => {
                let message = e.to_string();
                for run in secret_runs(key_pem) {
                    prop_assert!(!message.contains(&run), "the message shows the key: {message}");
                }
                let state = read(Some(&secret(b"-".to_vec(), damaged)));
                prop_assert!(refused_cleanly(&state));
                if let SecretState::Invalid(why) = state {
                    for run in secret_runs(key_pem) {
                        prop_assert!(!why.contains(&run), "the reason shows the key: {why}");
                    }
                }
            }
        }
    }

    #[test]
    fn any_duration_string_is_accepted_or_refused_clearly(
        duration in "\\PC{0,24}",
        renew_before in proptest::option::of("[0-9.]{0,12}(ns|us|µs|ms|s|m|h){0,3}"),
        near_valid in "[0-9]{1,20}(\\.[0-9]{1,10})?(ns|us|ms|s|m|h)",
    ) {
        for duration in [duration, near_valid] {
            let spec = CertificateSpec {
                duration: Some(duration),
                renew_before: renew_before.clone(),
                ..spec_for(&["a.example"])
            };
            match validate(&spec) {
                Ok(valid) => {
                    // Whatever was accepted can be signed.
                    let key = PrivateKey::generate(valid.key).unwrap();
                    prop_assert!(sign_self_signed(&valid.template(crate::testing::ts("2026-11-23T10:00:00Z")), &key).is_ok());
                }
                Err(e) => prop_assert!(e.0.starts_with("spec."), "{}", e.0),
            }
        }
    }

    #[test]
    fn any_names_are_refused_clearly_or_signed_exactly(
        dns in proptest::collection::vec(dns_name(), 0..12),
        ips in proptest::collection::vec(ip_address(), 0..6),
        uris in proptest::collection::vec(uri(), 0..6),
        emails in proptest::collection::vec(email(), 0..4),
        common_name in proptest::option::of("\\PC{0,70}"),
    ) {
        let spec = CertificateSpec {
            dns_names: Some(dns),
            ip_addresses: Some(ips),
            uris: Some(uris),
            email_addresses: Some(emails),
            common_name,
            ..spec_for(&[])
        };
        match validate(&spec) {
            Ok(valid) => {
                let leaf = sign_and_read(&valid);
                prop_assert_eq!(sorted(&leaf.dns_names), sorted(&valid.dns_names));
                prop_assert_eq!(sorted(&leaf.uris), sorted(&valid.uris));
                prop_assert_eq!(sorted(&leaf.email_addresses), sorted(&valid.email_addresses));
                prop_assert_eq!(&leaf.ip_addresses, &valid.ip_addresses);
                prop_assert_eq!(&leaf.common_name, &valid.common_name);
            }
            Err(e) => {
                prop_assert!(e.0.contains("spec"), "{}", e.0);
                prop_assert!(e.0.len() < 400, "a message of {} bytes", e.0.len());
            }
        }
    }

    #[test]
    fn a_subject_with_every_attribute_is_signed_as_written(
        parts in proptest::collection::vec(proptest::collection::vec("[\\PC&&[^\\u{0}]]{1,40}", 0..3), 7),
        serial_number in proptest::option::of("[A-Za-z0-9]{1,40}"),
    ) {
        let subject = Subject {
            organizations: Some(parts[0].clone()),
            organizational_units: Some(parts[1].clone()),
            countries: Some(parts[2].clone()),
            localities: Some(parts[3].clone()),
            provinces: Some(parts[4].clone()),
            street_addresses: Some(parts[5].clone()),
            postal_codes: Some(parts[6].clone()),
            serial_number,
        };
        let spec = CertificateSpec { subject: Some(Box::new(subject)), ..spec_for(&["a.example"]) };
        if let Ok(valid) = validate(&spec) {
            let leaf = sign_and_read(&valid);
            prop_assert_eq!(leaf.subject, valid.subject);
        }
    }
}

fn dns_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9-]{1,20}(\\.[a-z0-9-]{1,20}){0,3}",
        "\\*\\.[a-z0-9-]{1,20}\\.example",
        "xn--[a-z0-9]{1,20}\\.example",
        "[a-zü]{1,10}\\.bücher\\.example",
        "\\PC{0,40}",
        "[a-z]{250,300}",
    ]
}

fn ip_address() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<std::net::Ipv4Addr>().prop_map(|ip| ip.to_string()),
        any::<std::net::Ipv6Addr>().prop_map(|ip| ip.to_string()),
        "[0-9a-f:.]{0,45}",
    ]
}

fn uri() -> impl Strategy<Value = String> {
    prop_oneof![
        "spiffe://[a-z.]{1,20}/ns/[a-z]{1,10}/sa/[a-z]{1,10}",
        "https://[a-z.]{1,20}(:[0-9]{1,5})?/[a-zA-Z0-9/%?=&]{0,40}",
        "urn:[a-z]{1,8}:\\PC{0,20}",
        "\\PC{0,30}",
    ]
}

fn email() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z.+]{1,20}@[a-z.]{1,20}", "\\PC{0,30}"]
}

fn sorted(names: &[String]) -> Vec<String> {
    let mut names = names.to_vec();
    names.sort();
    names
}

fn spec_for(dns_names: &[&str]) -> CertificateSpec {
    CertificateSpec {
        secret_name: "web-tls".into(),
        issuer_ref: IssuerRef {
            name: "ca".into(),
            kind: None,
            group: None,
        },
        dns_names: Some(dns_names.iter().map(|s| s.to_string()).collect()),
        ..CertificateSpec::default()
    }
}

/// A CA shared by the signing checks.
fn ca() -> &'static CaKeyPair {
    static CA: std::sync::OnceLock<CaKeyPair> = std::sync::OnceLock::new();
    CA.get_or_init(|| {
        let secret = crate::testing::ca_secret(
            "root",
            "apps",
            "root",
            crate::testing::ts("2026-01-01T00:00:00Z"),
            3650,
        );
        let data = secret.data.unwrap();
        CaKeyPair::from_pem(
            &data["tls.crt"].0,
            &data["tls.key"].0,
            None,
            IssuerUrls::default(),
        )
        .unwrap()
    })
}

fn sign_and_read(valid: &super::spec::ValidatedSpec) -> crate::pki::CertificateInfo {
    let key = PrivateKey::generate(valid.key).unwrap();
    let issued = sign_with_ca(
        &valid.template(crate::testing::ts("2026-11-23T10:00:00Z")),
        &key,
        ca(),
    )
    .unwrap_or_else(|e| panic!("an accepted spec could not be signed: {e}"));
    parse_certificate_chain(issued.certificate_pem.as_bytes())
        .unwrap()
        .remove(0)
}

#[test]
fn a_thousand_names_of_the_longest_kind_fit_or_are_refused_with_the_limit() {
    let long = |i: usize| format!("{i:04}.{}.example", "a".repeat(240));
    let spec = CertificateSpec {
        dns_names: Some((0..MAX_NAMES).map(long).collect()),
        ..spec_for(&[])
    };
    let refused = validate(&spec).unwrap_err();
    assert!(refused.0.contains(&MAX_NAME_BYTES.to_string()), "{}", refused.0);

    // As many as fit: signed, and every name is in the certificate.
    let fit = MAX_NAME_BYTES / long(0).len();
    let spec = CertificateSpec {
        dns_names: Some((0..fit).map(long).collect()),
        ..spec_for(&[])
    };
    let valid = validate(&spec).unwrap();
    assert_eq!(sign_and_read(&valid).dns_names.len(), fit);

    let spec = CertificateSpec {
        dns_names: Some((0..=MAX_NAMES).map(|i| format!("n{i}.example")).collect()),
        ..spec_for(&[])
    };
    assert!(validate(&spec).unwrap_err().0.contains("at most 1000"));
}

#[test]
fn a_megabyte_of_garbage_in_a_secret_is_refused_without_a_panic() {
    let garbage: Vec<u8> = (0..1024 * 1024)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert!(refused_cleanly(&read(Some(&secret(
        garbage.clone(),
        garbage.clone()
    )))));
    // A megabyte of PEM blocks that hold nothing valid.
    let blocks: Vec<u8> = (0..2000)
        .flat_map(|i| pem("CERTIFICATE", &garbage[i * 300..i * 300 + 300]))
        .collect();
    assert!(refused_cleanly(&read(Some(&secret(blocks.clone(), blocks)))));
}

#[test]
fn internationalized_names_are_refused_with_the_a_label_hint() {
    let refused = validate(&spec_for(&["bücher.example"])).unwrap_err();
    assert!(refused.0.contains("xn--"), "{}", refused.0);
    assert!(validate(&spec_for(&["xn--bcher-kva.example", "*.example.com"])).is_ok());
}
