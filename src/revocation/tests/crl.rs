//! CRLs as x509-parser reads them.

use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::x509::ReasonCode;

use super::*;

fn parse(der: &[u8]) -> CertificateRevocationList<'_> {
    let (rest, crl) = CertificateRevocationList::from_der(der).expect("CRL parses");
    assert!(rest.is_empty());
    crl
}

fn ca_x509(ca: &CaKeyPair) -> X509Certificate<'_> {
    X509Certificate::from_der(&ca.certificate().der).unwrap().1
}

#[test]
fn crl_is_version_2_valid_for_a_day_with_its_number() {
    let ca = root_ca(now() - hours(1));
    let crl = build_crl(&ca, &[], 7, now()).unwrap();
    assert_eq!((crl.this_update, crl.next_update), (now(), now() + hours(24)));

    let parsed = parse(&crl.der);
    assert_eq!(parsed.version().map(|v| v.0), Some(1));
    assert_eq!(parsed.last_update().timestamp(), now().as_second());
    assert_eq!(
        parsed.next_update().unwrap().timestamp(),
        (now() + hours(24)).as_second()
    );
    assert_eq!(parsed.crl_number().map(|n| n.to_string()), Some("7".to_string()));
    assert_eq!(parsed.iter_revoked_certificates().count(), 0);
    assert!(crl.pem.starts_with("-----BEGIN X509 CRL-----\n"));
}

#[test]
fn crl_issuer_is_the_ca_subject_byte_for_byte_and_its_aki_the_ca_ski() {
    // An OpenSSL CA: repeated DC and O, a multi-valued RDN, a SHA-1 SKI.
    let ca = CaKeyPair::from_pem(
        include_bytes!("../../pki/testdata/openssl-ca.crt"),
        include_bytes!("../../pki/testdata/openssl-ca.key"),
        None,
        IssuerUrls::default(),
    )
    .unwrap();
    let crl = build_crl(&ca, &[], 1, now()).unwrap();
    let parsed = parse(&crl.der);
    let x509 = ca_x509(&ca);
    assert_eq!(parsed.issuer().as_raw(), x509.subject().as_raw());

    let ski = x509
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
        .unwrap();
    let aki = parsed
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|id| id.0.to_vec())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(aki, ski);
}

#[test]
fn entries_carry_serial_revocation_date_and_reason() {
    let ca = root_ca(now() - hours(1));
    let records = [
        revoked("3a4f", now() - hours(2), RevocationReason::KeyCompromise),
        revoked("7f00ff", now() - hours(3), RevocationReason::Unspecified),
    ];
    let crl = build_crl(&ca, &records, 2, now()).unwrap();
    let parsed = parse(&crl.der);
    let entries: Vec<(String, i64, Option<ReasonCode>)> = parsed
        .iter_revoked_certificates()
        .map(|entry| {
            (
                crate::pki::serial_hex(entry.raw_serial()),
                entry.revocation_date.timestamp(),
                entry.reason_code().map(|(_, code)| code),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            (
                "3a4f".to_string(),
                (now() - hours(2)).as_second(),
                Some(ReasonCode::KeyCompromise)
            ),
            // unspecified: no reasonCode extension (RFC 5280 §5.3.1).
            ("7f00ff".to_string(), (now() - hours(3)).as_second(), None),
        ]
    );
}

#[test]
fn the_same_serial_listed_twice_is_one_entry() {
    let ca = root_ca(now() - hours(1));
    let records = [
        revoked("01", now(), RevocationReason::KeyCompromise),
        revoked("01", now(), RevocationReason::KeyCompromise),
    ];
    let crl = build_crl(&ca, &records, 1, now()).unwrap();
    assert_eq!(parse(&crl.der).iter_revoked_certificates().count(), 1);
}

#[test]
fn crl_signature_verifies_with_the_ca_key_for_every_key_type() {
    for (algorithm, size) in [
        (KeyAlgorithm::Ecdsa, 256),
        (KeyAlgorithm::Ecdsa, 384),
        (KeyAlgorithm::Rsa, 2048),
        (KeyAlgorithm::Ed25519, 0),
    ] {
        let ca = root_ca_with(algorithm, size, now() - hours(1));
        let records = [revoked("0102", now(), RevocationReason::Superseded)];
        let crl = build_crl(&ca, &records, 1, now()).unwrap();
        let x509 = ca_x509(&ca);
        parse(&crl.der)
            .verify_signature(x509.public_key())
            .unwrap_or_else(|e| panic!("{algorithm:?} {size}: {e}"));
    }
}

#[test]
fn crl_is_re_signed_at_half_its_life() {
    assert_eq!(crl_resign_at(now(), now() + CRL_VALIDITY), now() + hours(12));
}

#[test]
fn validity_is_truncated_to_the_second() {
    let ca = root_ca(now() - hours(1));
    let crl = build_crl(&ca, &[], 1, now() + jiff::SignedDuration::from_millis(750)).unwrap();
    assert_eq!(crl.this_update, now());
}

#[test]
fn a_published_crl_reads_back_as_what_was_signed() {
    let ca = root_ca(now() - hours(1));
    let records = [
        revoked("7f00ff", now() - hours(3), RevocationReason::Unspecified),
        revoked("3a4f", now() - hours(2), RevocationReason::KeyCompromise),
    ];
    let crl = build_crl(&ca, &records, 9, now()).unwrap();
    let published = PublishedCrl::from_der(&crl.der).unwrap();
    assert_eq!(published.number, 9);
    assert_eq!(
        (published.this_update, published.next_update),
        (now(), now() + hours(24))
    );
    assert_eq!(published.revoked, [records[1].clone(), records[0].clone()]);
    assert_eq!(PublishedCrl::from_der(b"not a CRL"), None);
}

#[test]
fn a_new_crl_is_due_when_missing_when_the_list_changes_and_at_half_life() {
    let ca = root_ca(now() - hours(1));
    let records = vec![revoked("3a4f", now() - hours(2), RevocationReason::KeyCompromise)];
    let published = PublishedCrl::from_der(&build_crl(&ca, &records, 1, now()).unwrap().der).unwrap();

    assert_eq!(crl_due(None, &records, now()), Some(CrlDue::Missing));
    assert_eq!(crl_due(Some(&published), &records, now()), None);
    assert_eq!(
        crl_due(Some(&published), &records, now() + hours(12) - hours(1)),
        None
    );
    assert_eq!(
        crl_due(Some(&published), &records, now() + hours(12)),
        Some(CrlDue::HalfLife)
    );

    let mut more = records.clone();
    more.push(revoked("01", now(), RevocationReason::Superseded));
    assert_eq!(crl_due(Some(&published), &more, now()), Some(CrlDue::ListChanged));
    let mut other_reason = records.clone();
    other_reason[0].reason = RevocationReason::CaCompromise;
    assert_eq!(
        crl_due(Some(&published), &other_reason, now()),
        Some(CrlDue::ListChanged)
    );
    // Sub-second revocation times are written to the second: not a change.
    let mut finer = records.clone();
    finer[0].revoked_at += jiff::SignedDuration::from_millis(400);
    assert_eq!(crl_due(Some(&published), &finer, now()), None);
}

#[test]
fn crl_numbers_increase_even_when_the_published_crl_was_lost() {
    let ca = root_ca(now() - hours(1));
    let first = next_crl_number(None, now());
    assert_eq!(first, now().as_second() as u64);
    let published = PublishedCrl::from_der(&build_crl(&ca, &[], first, now()).unwrap().der).unwrap();
    // Re-signed within the same second, the number still goes up.
    assert_eq!(next_crl_number(Some(&published), now()), first + 1);
    // Lost and re-created later: the clock keeps it above every earlier number.
    assert!(next_crl_number(None, now() + hours(1)) > first + 1);
}
