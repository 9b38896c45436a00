//! CSRs for CA keys (`certkeeper ca init --csr`, `ca csr`): what an offline root sees in them,
//! and the intermediate CA it signs from them.

use const_oid::db::{rfc5280, rfc5912};
use der::asn1::OctetString;
use der::{Decode, Encode};
use x509_cert::ext::Extension;
use x509_cert::request::CertReq;

use super::openssl::{openssl, openssl_available, write};
use super::*;

/// The key types a CA key can have, with a name for failure messages.
fn ca_keys() -> Vec<(&'static str, PrivateKey)> {
    vec![
        ("p256", key(KeyAlgorithm::Ecdsa, 256)),
        ("p384", key(KeyAlgorithm::Ecdsa, 384)),
        ("rsa2048", key(KeyAlgorithm::Rsa, 2048)),
        ("ed25519", key(KeyAlgorithm::Ed25519, 0)),
    ]
}

fn decode(csr_pem: &str) -> CertReq {
    let block = pem::parse(csr_pem).expect("CSR PEM");
    assert_eq!(block.tag(), "CERTIFICATE REQUEST");
    CertReq::from_der(block.contents()).expect("CSR DER")
}

/// The subject of a CSR as the DER it holds, not re-encoded.
fn csr_subject_der(csr_pem: &str) -> Vec<u8> {
    use x509_parser::prelude::FromDer;
    let block = pem::parse(csr_pem).expect("CSR PEM");
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(block.contents())
        .expect("CSR DER");
    csr.certification_request_info.subject.as_raw().to_vec()
}

/// The DER subject of the first certificate in `pem`.
fn subject_der(pem: &str) -> Vec<u8> {
    let certs = chain(pem);
    let x509 = parse::parse_der(&certs[0].der).expect("certificate");
    x509.subject().as_raw().to_vec()
}

/// An offline root made by OpenSSL alone, as a root ceremony would: `root.pem` and `root.key`.
fn openssl_root(dir: &std::path::Path) {
    write(
        dir,
        "root.cnf",
        "[req]\nprompt = no\ndistinguished_name = dn\nx509_extensions = root\n\
         [dn]\nCN = Offline Root\nO = Example\n\
         [root]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier = hash\n",
    );
    let (ok, out) = openssl(
        dir,
        &[
            "req",
            "-x509",
            "-config",
            "root.cnf",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-nodes",
            "-keyout",
            "root.key",
            "-out",
            "root.pem",
            "-days",
            "3650",
        ],
    )
    .expect("openssl");
    assert!(ok, "root: {out}");
}

#[test]
fn a_ca_csr_carries_the_signers_key_and_the_subject_our_certificates_write() {
    for (name, key) in ca_keys() {
        let csr_pem = build_ca_csr("Example HSM CA", Some("Exämple Corp"), &key).unwrap();
        let csr = decode(&csr_pem);
        let signer: &dyn Signer = &key;
        assert_eq!(csr.info.public_key.to_der().unwrap(), signer.spki(), "{name}");
        assert_eq!(csr.algorithm, signer.signature_algorithm(), "{name}");

        // The same names in a certificate certkeeper signs: same DER, PrintableString and
        // UTF8String alike.
        let template = CertificateTemplate {
            subject: SubjectFields {
                organizations: vec!["Exämple Corp".into()],
                ..Default::default()
            },
            ..ca_template("Example HSM CA", now(), 365)
        };
        let certificate = sign_self_signed(&template, &key).unwrap();
        assert_eq!(
            csr_subject_der(&csr_pem),
            subject_der(&certificate.certificate_pem),
            "{name}"
        );

        // One attribute, the extensionRequest, whose subjectKeyIdentifier is the crate's.
        assert_eq!(csr.info.attributes.len(), 1, "{name}");
        let attribute = csr.info.attributes.get(0).unwrap();
        assert_eq!(attribute.oid, rfc5912::ID_EXTENSION_REQ);
        let requested: Vec<Extension> = attribute.values.get(0).unwrap().decode_as().unwrap();
        let critical: Vec<_> = requested
            .iter()
            .filter(|e| e.critical)
            .map(|e| e.extn_id)
            .collect();
        assert_eq!(
            critical,
            [rfc5280::ID_CE_KEY_USAGE, rfc5280::ID_CE_BASIC_CONSTRAINTS],
            "{name}"
        );
        let ski = requested
            .iter()
            .find(|e| e.extn_id == rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER)
            .expect("subjectKeyIdentifier requested");
        let expected = OctetString::new(cert::key_identifier(signer.spki()).unwrap()).unwrap();
        assert_eq!(ski.extn_value.as_bytes(), expected.to_der().unwrap(), "{name}");
    }
}

#[test]
fn a_ca_csr_without_organization_names_only_the_common_name() {
    let csr = decode(&build_ca_csr("Example HSM CA", None, &ecdsa_p256()).unwrap());
    assert_eq!(csr.info.subject.to_string(), "CN=Example HSM CA");
}

#[test]
fn a_ca_csr_refuses_names_an_x509_name_cannot_hold() {
    let key = ecdsa_p256();
    for (common_name, organization) in [
        ("", None),
        (&*"a".repeat(65), None),
        ("Example HSM CA", Some("")),
        ("Example HSM CA", Some(&*"o".repeat(65))),
    ] {
        let refused = build_ca_csr(common_name, organization, &key);
        assert!(
            matches!(refused, Err(PkiError::InvalidCertificate(_))),
            "{common_name:?} {organization:?}: {refused:?}"
        );
    }
    // 64 characters, not bytes: "ä" is two bytes in UTF-8.
    assert!(build_ca_csr(&"ä".repeat(64), None, &key).is_ok());
}

#[test]
fn openssl_verifies_a_ca_csr_and_reads_its_requested_extensions() {
    if !openssl_available("openssl_verifies_a_ca_csr_and_reads_its_requested_extensions") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, key) in ca_keys() {
        write(
            dir.path(),
            "ca.csr",
            build_ca_csr("Example HSM CA", Some("Example"), &key).unwrap(),
        );
        let (ok, out) = openssl(dir.path(), &["req", "-in", "ca.csr", "-verify", "-noout"]).unwrap();
        assert!(ok && out.contains("verify OK"), "{name}: {out}");
        let (ok, text) = openssl(
            dir.path(),
            &["req", "-in", "ca.csr", "-noout", "-text", "-nameopt", "RFC2253"],
        )
        .unwrap();
        assert!(ok, "{name}: {text}");
        for expected in [
            "Subject: CN=Example HSM CA,O=Example",
            "Requested Extensions:",
            "X509v3 Key Usage: critical\n                    Digital Signature, Certificate Sign, CRL Sign",
            "X509v3 Basic Constraints: critical\n                    CA:TRUE",
            "X509v3 Subject Key Identifier",
        ] {
            assert!(text.contains(expected), "{name}: missing {expected:?} in\n{text}");
        }
    }
}

#[test]
fn an_offline_root_signs_a_ca_csr_into_a_valid_intermediate_ca() {
    if !openssl_available("an_offline_root_signs_a_ca_csr_into_a_valid_intermediate_ca") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    openssl_root(dir.path());
    let root_pem = std::fs::read_to_string(dir.path().join("root.pem")).unwrap();
    for (name, key) in ca_keys() {
        let csr_pem = build_ca_csr("Example HSM CA", Some("Exämple Corp"), &key).unwrap();
        write(dir.path(), "ca.csr", &csr_pem);
        let (ok, out) = openssl(
            dir.path(),
            &[
                "x509",
                "-req",
                "-in",
                "ca.csr",
                "-CA",
                "root.pem",
                "-CAkey",
                "root.key",
                "-copy_extensions",
                "copyall",
                "-days",
                "365",
                "-set_serial",
                "0x1001",
                "-out",
                "intermediate.pem",
            ],
        )
        .unwrap();
        assert!(ok, "{name}: {out}");
        let intermediate_pem = std::fs::read_to_string(dir.path().join("intermediate.pem")).unwrap();

        let ca = CaKeyPair::from_pem(
            intermediate_pem.as_bytes(),
            key.to_pem(KeyEncoding::Pkcs8).unwrap().as_bytes(),
            Some(root_pem.as_bytes()),
            IssuerUrls::default(),
        )
        .unwrap();
        ca.validate(jiff::Timestamp::now()).unwrap();
        assert!(ca.certificate().is_ca, "{name}");
        assert!(ca.certificate().is_signed_by(ca.anchor()), "{name}");
        assert_eq!(
            subject_der(&intermediate_pem),
            csr_subject_der(&csr_pem),
            "{name}: the root changed the subject"
        );
        // The requested key identifier is the one the intermediate carries.
        let x509 = parse::parse_der(&ca.certificate().der).unwrap();
        assert_eq!(
            cert::subject_key_id_of(&x509),
            Some(cert::key_identifier(key.spki()).unwrap()),
            "{name}"
        );

        // And the intermediate signs leaves OpenSSL accepts up to the offline root.
        let issued = sign_with_ca(&leaf_template(jiff::Timestamp::now()), &ecdsa_p256(), &ca).unwrap();
        write(dir.path(), "leaf.pem", &issued.certificate_pem);
        let (ok, out) = openssl(
            dir.path(),
            &[
                "verify",
                "-x509_strict",
                "-CAfile",
                "root.pem",
                "-untrusted",
                "intermediate.pem",
                "leaf.pem",
            ],
        )
        .unwrap();
        assert!(ok && out.contains("leaf.pem: OK"), "{name}: {out}");
    }
}
