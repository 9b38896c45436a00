//! Issued certificates carry exactly what the template and the issuer asked for.

use std::collections::BTreeSet;

use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::prelude::X509Certificate;

use super::super::parse::parse_der;
use super::*;

fn full_template(from: jiff::Timestamp) -> CertificateTemplate {
    CertificateTemplate {
        common_name: Some("payments".into()),
        subject: SubjectFields {
            organizations: vec!["Example Corp".into(), "Example Holdings".into()],
            organizational_units: vec!["Platform".into()],
            countries: vec!["DE".into()],
            localities: vec!["Berlin".into()],
            provinces: vec!["Berlin".into()],
            street_addresses: vec!["Unter den Linden 1".into()],
            postal_codes: vec!["10117".into()],
            serial_number: Some("4711".into()),
        },
        dns_names: vec!["payments.prod.svc".into(), "payments.example.com".into()],
        ip_addresses: vec![ip("10.0.0.7"), ip("fd00::7")],
        uris: vec!["spiffe://cluster.local/ns/prod/sa/payments".into()],
        email_addresses: vec!["payments@example.com".into()],
        not_before: from,
        not_after: from + hours(24),
        is_ca: false,
        usages: vec![
            Usage::DigitalSignature,
            Usage::KeyEncipherment,
            Usage::ServerAuth,
            Usage::ClientAuth,
        ],
        name_constraints: None,
    }
}

/// Every template field is read back unchanged.
fn assert_carries_template(info: &CertificateInfo, template: &CertificateTemplate) {
    assert_eq!(info.common_name, template.common_name);
    assert_eq!(info.subject, template.subject);
    assert_eq!(info.dns_names, template.dns_names);
    assert_eq!(info.ip_addresses, template.ip_addresses);
    assert_eq!(info.uris, template.uris);
    assert_eq!(info.email_addresses, template.email_addresses);
    assert_eq!(info.not_before, template.not_before);
    assert_eq!(info.not_after, template.not_after);
    assert_eq!(info.is_ca, template.is_ca);
    let expected: BTreeSet<Usage> = template.usages.iter().map(|u| u.canonical()).collect();
    assert_eq!(info.usages, expected);
}

fn extension<'a>(
    cert: &'a X509Certificate<'a>,
    oid: &str,
) -> Option<&'a x509_parser::extensions::X509Extension<'a>> {
    cert.iter_extensions().find(|e| e.oid.to_id_string() == oid)
}

fn key_ids(cert: &X509Certificate<'_>) -> (Vec<u8>, Vec<u8>) {
    let mut ski = Vec::new();
    let mut aki = Vec::new();
    for ext in cert.iter_extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => ski = id.0.to_vec(),
            ParsedExtension::AuthorityKeyIdentifier(id) => {
                aki = id.key_identifier.as_ref().expect("keyIdentifier").0.to_vec()
            }
            _ => {}
        }
    }
    (ski, aki)
}

#[test]
fn self_signed_certificate_carries_every_template_field() {
    let key = ecdsa_p256();
    let template = full_template(now());
    let issued = sign_self_signed(&template, &key).unwrap();
    let info = only(&issued.certificate_pem);

    assert_carries_template(&info, &template);
    assert!(info.self_signed);
    assert!(info.key_matches(&key));
    assert_eq!(info.key_spec, key.spec());
    assert_eq!(info.public_key_der, key.public_key_der());
    assert_eq!(info.serial_hex, issued.serial_hex);
    assert_eq!(
        (issued.not_before, issued.not_after),
        (template.not_before, template.not_after)
    );
}

#[test]
fn ca_signed_leaf_carries_every_template_field_and_the_issuer_urls() {
    let mut ca = root_ca("Example Root CA", now() - hours(1));
    ca.urls = IssuerUrls {
        crl_distribution_points: vec!["http://crl.example.com/root.crl".into()],
        ocsp_servers: vec!["http://ocsp.example.com".into()],
        issuing_certificate_urls: vec!["http://pki.example.com/root.crt".into()],
    };
    let key = key(KeyAlgorithm::Rsa, 2048);
    let template = full_template(now());
    let issued = sign_with_ca(&template, &key, &ca).unwrap();
    let info = only(&issued.certificate_pem);

    assert_carries_template(&info, &template);
    assert!(!info.self_signed);
    assert!(info.is_signed_by(ca.certificate()));
    assert!(info.key_matches(&key));
    assert_eq!(
        info.key_spec,
        KeySpec {
            algorithm: KeyAlgorithm::Rsa,
            size: 2048
        }
    );

    let cert = parse_der(&info.der).unwrap();
    let Some(ParsedExtension::AuthorityInfoAccess(aia)) =
        extension(&cert, "1.3.6.1.5.5.7.1.1").map(|e| e.parsed_extension())
    else {
        panic!("no AIA extension");
    };
    let access: Vec<(String, String)> = aia
        .accessdescs
        .iter()
        .map(|d| match &d.access_location {
            GeneralName::URI(uri) => (d.access_method.to_id_string(), uri.to_string()),
            other => panic!("unexpected location {other:?}"),
        })
        .collect();
    assert_eq!(
        access,
        [
            (
                "1.3.6.1.5.5.7.48.1".to_string(),
                "http://ocsp.example.com".to_string()
            ),
            (
                "1.3.6.1.5.5.7.48.2".to_string(),
                "http://pki.example.com/root.crt".to_string()
            ),
        ]
    );
    let Some(ParsedExtension::CRLDistributionPoints(crl)) =
        extension(&cert, "2.5.29.31").map(|e| e.parsed_extension())
    else {
        panic!("no CRL distribution points");
    };
    let Some(DistributionPointName::FullName(names)) = &crl.points[0].distribution_point else {
        panic!("no fullName");
    };
    assert_eq!(names, &[GeneralName::URI("http://crl.example.com/root.crl")]);
}

#[test]
fn urls_are_left_out_when_the_issuer_sets_none() {
    let ca = root_ca("Example Root CA", now() - hours(1));
    let issued = sign_with_ca(&leaf_template(now()), &ecdsa_p256(), &ca).unwrap();
    let cert_der = only(&issued.certificate_pem).der;
    let cert = parse_der(&cert_der).unwrap();
    assert!(extension(&cert, "1.3.6.1.5.5.7.1.1").is_none());
    assert!(extension(&cert, "2.5.29.31").is_none());
}

#[test]
fn spiffe_uri_san_is_written_verbatim() {
    let ca = root_ca("Example Root CA", now() - hours(1));
    let template = CertificateTemplate {
        common_name: None,
        dns_names: vec![],
        uris: vec!["spiffe://td/ns/x/sa/y".into()],
        ..leaf_template(now())
    };
    let issued = sign_with_ca(&template, &ecdsa_p256(), &ca).unwrap();
    let info = only(&issued.certificate_pem);
    assert_eq!(info.uris, ["spiffe://td/ns/x/sa/y"]);
    assert_eq!(info.common_name, None);

    // With an empty subject the SAN extension must be critical (RFC 5280 §4.2.1.6).
    let cert = parse_der(&info.der).unwrap();
    assert!(extension(&cert, "2.5.29.17").unwrap().critical);
    assert_eq!(cert.subject().iter_attributes().count(), 0);
}

#[test]
fn san_is_not_critical_when_the_subject_has_a_name() {
    let issued = sign_self_signed(&leaf_template(now()), &ecdsa_p256()).unwrap();
    let der = only(&issued.certificate_pem).der;
    assert!(
        !extension(&parse_der(&der).unwrap(), "2.5.29.17")
            .unwrap()
            .critical
    );
}

#[test]
fn serial_is_20_random_positive_octets() {
    let key = ecdsa_p256();
    let serials: BTreeSet<String> = (0..16)
        .map(|_| {
            let issued = sign_self_signed(&leaf_template(now()), &key).unwrap();
            let info = only(&issued.certificate_pem);
            assert_eq!(info.serial_hex, issued.serial_hex);
            let raw = parse_der(&info.der).unwrap().raw_serial().to_vec();
            assert_eq!(raw.len(), 20, "{}", info.serial_hex);
            assert!(raw[0] & 0x80 == 0 && raw[0] != 0);
            assert_eq!(issued.serial_hex, issued.serial_hex.to_lowercase());
            issued.serial_hex
        })
        .collect();
    assert_eq!(serials.len(), 16);
}

#[test]
fn validity_is_truncated_to_the_second() {
    let from = at("2025-06-01T12:00:00.750Z");
    let template = CertificateTemplate {
        not_after: at("2025-06-02T12:00:00.999Z"),
        ..leaf_template(from)
    };
    let issued = sign_self_signed(&template, &ecdsa_p256()).unwrap();
    assert_eq!(issued.not_before, at("2025-06-01T12:00:00Z"));
    assert_eq!(issued.not_after, at("2025-06-02T12:00:00Z"));
    let info = only(&issued.certificate_pem);
    assert_eq!(
        (info.not_before, info.not_after),
        (issued.not_before, issued.not_after)
    );
}

#[test]
fn dates_after_2049_are_written_and_read_back() {
    let template = CertificateTemplate {
        not_after: at("2125-01-01T00:00:00Z"),
        ..leaf_template(now())
    };
    let info = only(
        &sign_self_signed(&template, &ecdsa_p256())
            .unwrap()
            .certificate_pem,
    );
    assert_eq!(info.not_after, at("2125-01-01T00:00:00Z"));
}

#[test]
fn not_after_is_capped_at_the_ca_not_after() {
    let ca = root_ca("Short Root", now() - hours(1));
    let ca_not_after = ca.certificate().not_after;
    let template = CertificateTemplate {
        not_after: ca_not_after + hours(24 * 30),
        ..leaf_template(ca_not_after - hours(24))
    };
    let issued = sign_with_ca(&template, &ecdsa_p256(), &ca).unwrap();
    assert_eq!(issued.not_after, ca_not_after);
    assert_eq!(only(&issued.certificate_pem).not_after, ca_not_after);

    // A template that ends before the CA is left alone.
    let issued = sign_with_ca(&leaf_template(now()), &ecdsa_p256(), &ca).unwrap();
    assert_eq!(issued.not_after, now() + hours(24));
}

#[test]
fn issuing_from_an_expired_ca_is_refused() {
    let ca = root_ca("Old Root", now() - hours(24 * 3651));
    let ca_not_after = ca.certificate().not_after;
    let result = sign_with_ca(&leaf_template(now()), &ecdsa_p256(), &ca);
    assert!(
        matches!(result, Err(PkiError::Expired(t)) if t == ca_not_after),
        "{result:?}"
    );
}

#[test]
fn empty_validity_is_refused() {
    let template = CertificateTemplate {
        not_after: now(),
        ..leaf_template(now())
    };
    let result = sign_self_signed(&template, &ecdsa_p256());
    assert!(
        matches!(result, Err(PkiError::InvalidCertificate(_))),
        "{result:?}"
    );
}

#[test]
fn ca_certificate_gets_cert_sign_and_crl_sign() {
    let key = ecdsa_p256();
    let issued = sign_self_signed(&ca_template("Root", now(), 10), &key).unwrap();
    let info = only(&issued.certificate_pem);
    assert!(info.is_ca);
    assert_eq!(
        info.usages,
        BTreeSet::from([Usage::DigitalSignature, Usage::CertSign, Usage::CrlSign])
    );
    let cert = parse_der(&info.der).unwrap();
    let bc = cert.basic_constraints().unwrap().unwrap();
    assert!(bc.critical && bc.value.ca && bc.value.path_len_constraint.is_none());
    assert!(cert.key_usage().unwrap().unwrap().critical);
}

#[test]
fn leaf_has_critical_basic_constraints_without_ca() {
    let issued = sign_self_signed(&leaf_template(now()), &ecdsa_p256()).unwrap();
    let cert_der = only(&issued.certificate_pem).der;
    let cert = parse_der(&cert_der).unwrap();
    let bc = cert.basic_constraints().unwrap().unwrap();
    assert!(bc.critical && !bc.value.ca);
    assert!(cert.key_usage().unwrap().unwrap().critical);
    assert!(!cert.extended_key_usage().unwrap().unwrap().critical);
}

#[test]
fn every_usage_survives_issuance() {
    let usages = vec![
        Usage::Signing,
        Usage::DigitalSignature,
        Usage::ContentCommitment,
        Usage::KeyEncipherment,
        Usage::KeyAgreement,
        Usage::DataEncipherment,
        Usage::CertSign,
        Usage::CrlSign,
        Usage::EncipherOnly,
        Usage::DecipherOnly,
        Usage::Any,
        Usage::ServerAuth,
        Usage::ClientAuth,
        Usage::CodeSigning,
        Usage::EmailProtection,
        Usage::Smime,
        Usage::IpsecEndSystem,
        Usage::IpsecTunnel,
        Usage::IpsecUser,
        Usage::Timestamping,
        Usage::OcspSigning,
        Usage::MicrosoftSgc,
        Usage::NetscapeSgc,
    ];
    let template = CertificateTemplate {
        usages: usages.clone(),
        ..leaf_template(now())
    };
    let info = only(
        &sign_self_signed(&template, &ecdsa_p256())
            .unwrap()
            .certificate_pem,
    );
    let expected: BTreeSet<Usage> = usages.iter().map(|u| u.canonical()).collect();
    assert_eq!(info.usages, expected);
    assert_eq!(expected.len(), 21, "signing and s/mime are aliases");
}

#[test]
fn no_usages_means_no_usage_extensions() {
    let template = CertificateTemplate {
        usages: vec![],
        ..leaf_template(now())
    };
    let info = only(
        &sign_self_signed(&template, &ecdsa_p256())
            .unwrap()
            .certificate_pem,
    );
    assert!(info.usages.is_empty());
    let cert = parse_der(&info.der).unwrap();
    assert!(cert.key_usage().unwrap().is_none());
    assert!(cert.extended_key_usage().unwrap().is_none());
}

#[test]
fn self_signed_authority_key_id_is_its_own_subject_key_id() {
    let issued = sign_self_signed(&leaf_template(now()), &ecdsa_p256()).unwrap();
    let der = only(&issued.certificate_pem).der;
    let (ski, aki) = key_ids(&parse_der(&der).unwrap());
    assert_eq!(ski.len(), 20);
    assert_eq!(ski, aki);
}

#[test]
fn leaf_authority_key_id_is_the_ca_subject_key_id() {
    let ca = root_ca("Example Root CA", now() - hours(1));
    let issued = sign_with_ca(&leaf_template(now()), &ecdsa_p256(), &ca).unwrap();
    let leaf_der = only(&issued.certificate_pem).der;
    let (leaf_ski, leaf_aki) = key_ids(&parse_der(&leaf_der).unwrap());
    let (ca_ski, _) = key_ids(&parse_der(&ca.certificate().der).unwrap());
    assert_eq!(leaf_aki, ca_ski);
    assert_ne!(leaf_ski, ca_ski);
}

#[test]
fn signature_algorithm_follows_the_signing_key() {
    for (algorithm, size, oid) in [
        (KeyAlgorithm::Ecdsa, 256, "1.2.840.10045.4.3.2"),
        (KeyAlgorithm::Ecdsa, 384, "1.2.840.10045.4.3.3"),
        (KeyAlgorithm::Rsa, 2048, "1.2.840.113549.1.1.11"),
        (KeyAlgorithm::Ed25519, 0, "1.3.101.112"),
    ] {
        let ca_key = key(algorithm, size);
        let ca_pem = sign_self_signed(&ca_template("Root", now(), 10), &ca_key).unwrap();
        let ca = CaKeyPair::from_pem(
            ca_pem.chain_pem.as_bytes(),
            ca_key.to_pem(KeyEncoding::Pkcs8).unwrap().as_bytes(),
            None,
            IssuerUrls::default(),
        )
        .unwrap();
        // The subject key type does not matter: the issuer's key signs.
        let issued = sign_with_ca(&leaf_template(now()), &ecdsa_p256(), &ca).unwrap();
        let info = only(&issued.certificate_pem);
        assert!(info.is_signed_by(ca.certificate()), "{algorithm:?} {size}");
        let cert = parse_der(&info.der).unwrap();
        assert_eq!(cert.signature_algorithm.algorithm.to_id_string(), oid);
        assert_eq!(cert.tbs_certificate.signature.algorithm.to_id_string(), oid);
        assert_eq!(
            only(&ca_pem.certificate_pem).key_spec,
            KeySpec { algorithm, size }
        );
    }
}

#[test]
fn issuer_dn_is_copied_byte_for_byte_from_an_openssl_ca() {
    // Repeated DC and O, and a multi-valued RDN: a re-encoded DN would differ.
    let ca = CaKeyPair::from_pem(
        include_bytes!("../testdata/openssl-ca.crt"),
        include_bytes!("../testdata/openssl-ca.key"),
        None,
        IssuerUrls::default(),
    )
    .unwrap();
    let issued = sign_with_ca(&leaf_template(now()), &ecdsa_p256(), &ca).unwrap();
    let leaf = only(&issued.certificate_pem);
    let leaf_x509 = parse_der(&leaf.der).unwrap();
    let ca_x509 = parse_der(&ca.certificate().der).unwrap();
    assert_eq!(leaf_x509.issuer().as_raw(), ca_x509.subject().as_raw());
    assert!(leaf.is_signed_by(ca.certificate()));
    // OpenSSL's SHA-1 key identifier is carried over, not recomputed.
    assert_eq!(key_ids(&leaf_x509).1, key_ids(&ca_x509).0);
    assert_eq!(
        ca.certificate().subject.organizations,
        ["Example Org", "Second Org"]
    );
}

#[test]
fn certificate_without_any_name_is_refused() {
    let template = CertificateTemplate {
        common_name: None,
        dns_names: vec![],
        ..leaf_template(now())
    };
    let result = sign_self_signed(&template, &ecdsa_p256());
    assert!(
        matches!(result, Err(PkiError::InvalidCertificate(_))),
        "{result:?}"
    );
}

#[test]
fn non_ascii_names_are_refused() {
    for template in [
        CertificateTemplate {
            dns_names: vec!["bücher.example".into()],
            ..leaf_template(now())
        },
        CertificateTemplate {
            uris: vec!["spiffe://tä/x".into()],
            ..leaf_template(now())
        },
        CertificateTemplate {
            uris: vec!["no-scheme".into()],
            ..leaf_template(now())
        },
    ] {
        let result = sign_self_signed(&template, &ecdsa_p256());
        assert!(
            matches!(result, Err(PkiError::InvalidCertificate(_))),
            "{result:?}"
        );
    }
}

#[test]
fn non_ascii_subject_fields_are_utf8() {
    let template = CertificateTemplate {
        common_name: Some("Zürich Gateway".into()),
        subject: SubjectFields {
            localities: vec!["Zürich".into()],
            ..Default::default()
        },
        ..leaf_template(now())
    };
    let info = only(
        &sign_self_signed(&template, &ecdsa_p256())
            .unwrap()
            .certificate_pem,
    );
    assert_eq!(info.common_name.as_deref(), Some("Zürich Gateway"));
    assert_eq!(info.subject.localities, ["Zürich"]);
}

#[test]
fn mismatched_ca_key_is_refused_when_signing() {
    let mut ca = root_ca("Example Root CA", now() - hours(1));
    ca.key = crate::pki::CaKey::Secret(ecdsa_p256());
    let result = sign_with_ca(&leaf_template(now()), &ecdsa_p256(), &ca);
    assert!(matches!(result, Err(PkiError::KeyMismatch)), "{result:?}");
}
