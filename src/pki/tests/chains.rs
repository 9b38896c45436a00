//! What `tls.crt` and `ca.crt` hold, and who signed whom.

use super::*;

fn ders(pem: &str) -> Vec<Vec<u8>> {
    chain(pem).into_iter().map(|c| c.der).collect()
}

#[test]
fn self_signed_chain_and_ca_are_the_certificate() {
    let issued = sign_self_signed(&leaf_template(now()), &ecdsa_p256()).unwrap();
    assert_eq!(issued.chain_pem, issued.certificate_pem);
    assert_eq!(issued.ca_pem, issued.certificate_pem);
    assert_eq!(chain(&issued.chain_pem).len(), 1);
}

#[test]
fn leaf_chain_excludes_self_signed_root() {
    let root = root_ca("Example Root CA", now() - hours(1));
    let intermediate = intermediate_ca(&root, now() - hours(1));
    // tls.crt held only the intermediate; ca.crt gave the root.
    assert_eq!(intermediate.chain.len(), 1);
    assert_eq!(
        intermediate.root.as_ref().map(|r| &r.der),
        Some(&root.certificate().der)
    );

    let issued = sign_with_ca(&leaf_template(now()), &ecdsa_p256(), &intermediate).unwrap();
    let leaf = only(&issued.certificate_pem);
    assert_eq!(
        ders(&issued.chain_pem),
        [leaf.der.clone(), intermediate.certificate().der.clone()]
    );
    assert_eq!(ders(&issued.ca_pem), [root.certificate().der.clone()]);
}

#[test]
fn root_inside_the_ca_tls_crt_goes_to_ca_crt_not_tls_crt() {
    let root = root_ca("Example Root CA", now() - hours(1));
    let key = ecdsa_p256();
    let int = sign_with_ca(&ca_template("Example Intermediate CA", now(), 365), &key, &root).unwrap();
    // A CA Secret whose tls.crt carries its whole chain, root included.
    let tls_crt = format!("{}{}", int.certificate_pem, int.ca_pem);
    let intermediate = CaKeyPair::from_pem(
        tls_crt.as_bytes(),
        key.to_pem(KeyEncoding::Pkcs1).unwrap().as_bytes(),
        Some(int.ca_pem.as_bytes()),
        IssuerUrls::default(),
    )
    .unwrap();
    assert_eq!(intermediate.chain.len(), 2);
    assert!(intermediate.root.is_none(), "ca.crt repeats the end of the chain");

    let issued = sign_with_ca(&leaf_template(now()), &ecdsa_p256(), &intermediate).unwrap();
    let leaf_der = only(&issued.certificate_pem).der;
    assert_eq!(
        ders(&issued.chain_pem),
        [leaf_der, intermediate.certificate().der.clone()]
    );
    assert_eq!(ders(&issued.ca_pem), [root.certificate().der.clone()]);
}

#[test]
fn ca_crt_is_the_highest_certificate_known_without_a_root() {
    let root = root_ca("Example Root CA", now() - hours(1));
    let key = ecdsa_p256();
    let int = sign_with_ca(&ca_template("Example Intermediate CA", now(), 365), &key, &root).unwrap();
    let intermediate = CaKeyPair::from_pem(
        int.certificate_pem.as_bytes(),
        key.to_pem(KeyEncoding::Pkcs8).unwrap().as_bytes(),
        None,
        IssuerUrls::default(),
    )
    .unwrap();

    let issued = sign_with_ca(&leaf_template(now()), &ecdsa_p256(), &intermediate).unwrap();
    let leaf_der = only(&issued.certificate_pem).der;
    let int_der = intermediate.certificate().der.clone();
    assert_eq!(ders(&issued.chain_pem), [leaf_der, int_der.clone()]);
    assert_eq!(ders(&issued.ca_pem), [int_der]);
}

#[test]
fn leaf_signed_by_a_root_has_a_one_certificate_chain() {
    let root = root_ca("Example Root CA", now() - hours(1));
    let issued = sign_with_ca(&leaf_template(now()), &ecdsa_p256(), &root).unwrap();
    assert_eq!(issued.chain_pem, issued.certificate_pem);
    assert_eq!(ders(&issued.ca_pem), [root.certificate().der.clone()]);
}

#[test]
fn chain_pem_parses_leaf_first() {
    let root = root_ca("Example Root CA", now() - hours(1));
    let intermediate = intermediate_ca(&root, now() - hours(1));
    let issued = sign_with_ca(&leaf_template(now()), &ecdsa_p256(), &intermediate).unwrap();
    let certs = chain(&issued.chain_pem);
    assert_eq!(certs[0].serial_hex, issued.serial_hex);
    assert!(certs[0].is_signed_by(&certs[1]));
    assert!(certs[1].is_signed_by(root.certificate()));
}

#[test]
fn is_signed_by_checks_the_issuer_name_and_the_signature() {
    let root = root_ca("Example Root CA", now() - hours(1));
    let intermediate = intermediate_ca(&root, now() - hours(1));
    let leaf = only(
        &sign_with_ca(&leaf_template(now()), &ecdsa_p256(), &intermediate)
            .unwrap()
            .certificate_pem,
    );

    assert!(leaf.is_signed_by(intermediate.certificate()));
    assert!(intermediate.certificate().is_signed_by(root.certificate()));
    assert!(root.certificate().is_signed_by(root.certificate()));
    assert!(!leaf.is_signed_by(root.certificate()), "wrong issuer DN and key");
    assert!(!leaf.is_signed_by(&leaf));

    // A rotated CA: same DN, new key. Leaves of the old CA are not signed by it.
    let rotated = intermediate_ca(&root, now() - hours(1));
    assert_eq!(
        rotated.certificate().subject,
        intermediate.certificate().subject,
        "same subject DN"
    );
    assert!(!leaf.is_signed_by(rotated.certificate()));
}

#[test]
fn parse_pem_certificates_keeps_only_certificate_blocks() {
    let root = root_ca("Example Root CA", now() - hours(1));
    let cert_pem = sign_with_ca(&leaf_template(now()), &ecdsa_p256(), &root)
        .unwrap()
        .chain_pem;
    let bundle = format!(
        "{}{cert_pem}{}",
        ecdsa_p256().to_pem(KeyEncoding::Pkcs8).unwrap(),
        sign_self_signed(&leaf_template(now()), &ecdsa_p256())
            .unwrap()
            .certificate_pem
    );
    assert_eq!(parse_pem_certificates(bundle.as_bytes()).unwrap().len(), 2);
}

#[test]
fn empty_or_certificate_free_pem_is_no_certificate() {
    assert!(matches!(
        parse_certificate_chain(b""),
        Err(PkiError::NoCertificate)
    ));
    let key_only = ecdsa_p256().to_pem(KeyEncoding::Pkcs8).unwrap();
    assert!(matches!(
        parse_certificate_chain(key_only.as_bytes()),
        Err(PkiError::NoCertificate)
    ));
    let garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert!(matches!(
        parse_certificate_chain(garbage),
        Err(PkiError::InvalidCertificate(_))
    ));
}

#[test]
fn fingerprint_is_upper_case_hex_with_colons() {
    let info = only(include_str!("../testdata/openssl-ca.crt"));
    // `openssl x509 -in src/pki/testdata/openssl-ca.crt -noout -fingerprint -sha256`
    assert_eq!(info.fingerprint_sha256, OPENSSL_CA_FINGERPRINT);
    // Leading zero nibble kept: only zero *octets* are stripped.
    assert_eq!(info.serial_hex, OPENSSL_CA_SERIAL);
    assert!(info.self_signed);
    assert!(info.is_ca);
    assert_eq!(
        info.key_spec,
        KeySpec {
            algorithm: KeyAlgorithm::Rsa,
            size: 2048
        }
    );
}

pub(super) const OPENSSL_CA_FINGERPRINT: &str =
    "EA:35:CE:A9:83:5B:55:84:B6:EB:DE:F3:8C:E4:01:D0:A6:89:3F:BF:3F:E9:1B:68:E8:7D:37:2E:34:2D:83:BB";
/// `openssl x509 -serial` of the same certificate, lower-cased.
pub(super) const OPENSSL_CA_SERIAL: &str = "0eb41dbea4eededc0d42ea8ee5169ddf5b58b0cd";

#[test]
fn text_around_pem_blocks_is_ignored() {
    // Bundles assembled by hand often carry comments or `openssl x509 -text` output.
    let cert = sign_self_signed(&leaf_template(now()), &ecdsa_p256())
        .unwrap()
        .certificate_pem;
    let bundle = format!("# workload certificate\nsubject=CN = api\n{cert}\n# end\n");
    assert_eq!(chain(&bundle).len(), 1);
    let crlf = cert.replace('\n', "\r\n");
    assert_eq!(chain(&crlf).len(), 1);
}
