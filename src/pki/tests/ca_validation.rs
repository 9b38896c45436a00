//! Reading a CA Secret and deciding whether it can sign.

use super::chains::OPENSSL_CA_FINGERPRINT;
use super::*;

const OPENSSL_CA_CRT: &[u8] = include_bytes!("../testdata/openssl-ca.crt");
const OPENSSL_CA_KEY: &[u8] = include_bytes!("../testdata/openssl-ca.key");

fn ca_from(tls_crt: &str, key: &PrivateKey) -> Result<CaKeyPair, PkiError> {
    CaKeyPair::from_pem(
        tls_crt.as_bytes(),
        key.to_pem(KeyEncoding::Pkcs8).unwrap().as_bytes(),
        None,
        IssuerUrls::default(),
    )
}

#[test]
fn valid_ca_reports_not_after_and_fingerprint() {
    let ca = CaKeyPair::from_pem(OPENSSL_CA_CRT, OPENSSL_CA_KEY, None, IssuerUrls::default())
        .expect("OpenSSL CA with a PKCS#1 key");
    let facts = ca.validate(now()).unwrap();
    assert_eq!(facts.not_after, ca.certificate().not_after);
    assert_eq!(facts.fingerprint_sha256, OPENSSL_CA_FINGERPRINT);
}

#[test]
fn ca_keys_are_read_in_every_encoding() {
    let key = ecdsa_p256();
    let root = sign_self_signed(&ca_template("Root", now(), 10), &key).unwrap();
    for encoding in [KeyEncoding::Pkcs8, KeyEncoding::Pkcs1] {
        let ca = CaKeyPair::from_pem(
            root.chain_pem.as_bytes(),
            key.to_pem(encoding).unwrap().as_bytes(),
            None,
            IssuerUrls::default(),
        )
        .unwrap();
        assert!(ca.validate(now()).is_ok());
    }
}

#[test]
fn key_of_another_certificate_is_a_key_mismatch() {
    let root = sign_self_signed(&ca_template("Root", now(), 10), &ecdsa_p256()).unwrap();
    let result = ca_from(&root.chain_pem, &ecdsa_p256());
    assert!(matches!(result, Err(PkiError::KeyMismatch)), "{result:?}");

    let result = CaKeyPair::from_pem(
        OPENSSL_CA_CRT,
        include_bytes!("../testdata/rsa2048-pkcs1.key"),
        None,
        IssuerUrls::default(),
    );
    assert!(matches!(result, Err(PkiError::KeyMismatch)), "{result:?}");
}

#[test]
fn leaf_certificate_is_not_a_ca() {
    let key = ecdsa_p256();
    let leaf = sign_self_signed(&leaf_template(now()), &key).unwrap();
    let ca = ca_from(&leaf.chain_pem, &key).unwrap();
    assert!(matches!(ca.validate(now()), Err(PkiError::NotACa(_))));
}

#[test]
fn ca_without_cert_sign_usage_is_not_a_ca() {
    let ca = CaKeyPair::from_pem(
        include_bytes!("../testdata/no-cert-sign-ca.crt"),
        include_bytes!("../testdata/ec-p256-sec1.key"),
        None,
        IssuerUrls::default(),
    )
    .unwrap();
    assert!(ca.certificate().is_ca);
    let result = ca.validate(now());
    assert!(
        matches!(&result, Err(PkiError::NotACa(why)) if why.contains("keyCertSign")),
        "{result:?}"
    );
}

#[test]
fn ca_is_valid_until_the_instant_of_not_after() {
    let key = ecdsa_p256();
    let root = sign_self_signed(&ca_template("Root", now(), 10), &key).unwrap();
    let ca = ca_from(&root.chain_pem, &key).unwrap();
    let not_after = ca.certificate().not_after;
    assert!(
        ca.validate(not_after - jiff::SignedDuration::from_secs(1))
            .is_ok()
    );
    assert!(matches!(ca.validate(not_after), Err(PkiError::Expired(t)) if t == not_after));
    assert!(matches!(ca.validate(not_after + hours(1)), Err(PkiError::Expired(t)) if t == not_after));
}

#[test]
fn ca_crt_root_is_kept_only_when_the_chain_lacks_it() {
    let root = root_ca("Example Root CA", now() - hours(1));
    let intermediate = intermediate_ca(&root, now() - hours(1));
    assert!(intermediate.root.is_some());

    // A self-signed CA whose ca.crt repeats itself has no separate root.
    let key = ecdsa_p256();
    let self_signed = sign_self_signed(&ca_template("Root", now(), 10), &key).unwrap();
    let ca = CaKeyPair::from_pem(
        self_signed.chain_pem.as_bytes(),
        key.to_pem(KeyEncoding::Pkcs8).unwrap().as_bytes(),
        Some(self_signed.ca_pem.as_bytes()),
        IssuerUrls::default(),
    )
    .unwrap();
    assert!(ca.root.is_none());

    // An empty ca.crt (cert-manager writes one when it knows no root) is no root.
    let ca = CaKeyPair::from_pem(
        self_signed.chain_pem.as_bytes(),
        key.to_pem(KeyEncoding::Pkcs8).unwrap().as_bytes(),
        Some(b""),
        IssuerUrls::default(),
    )
    .unwrap();
    assert!(ca.root.is_none());
}

#[test]
fn ca_crt_bundle_picks_the_root_that_issued_the_chain() {
    let root = root_ca("Example Root CA", now() - hours(1));
    let other = root_ca("Other Root CA", now() - hours(1));
    let key = ecdsa_p256();
    let int = sign_with_ca(&ca_template("Intermediate", now(), 365), &key, &root).unwrap();
    let bundle = format!(
        "{}{}",
        super::super::key::encode_pem("CERTIFICATE", other.certificate().der.clone()),
        int.ca_pem
    );
    let ca = CaKeyPair::from_pem(
        int.certificate_pem.as_bytes(),
        key.to_pem(KeyEncoding::Pkcs8).unwrap().as_bytes(),
        Some(bundle.as_bytes()),
        IssuerUrls::default(),
    )
    .unwrap();
    assert_eq!(ca.root.map(|r| r.der), Some(root.certificate().der.clone()));
}

#[test]
fn unreadable_ca_data_is_refused() {
    let key = ecdsa_p256();
    let root = sign_self_signed(&ca_template("Root", now(), 10), &key).unwrap();
    let key_pem = key.to_pem(KeyEncoding::Pkcs8).unwrap();
    let no_cert = CaKeyPair::from_pem(b"", key_pem.as_bytes(), None, IssuerUrls::default());
    assert!(matches!(no_cert, Err(PkiError::NoCertificate)));
    let bad_key = CaKeyPair::from_pem(root.chain_pem.as_bytes(), b"nope", None, IssuerUrls::default());
    assert!(matches!(bad_key, Err(PkiError::InvalidKey(_))));
    let garbage = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    // The chain ends in a self-signed root, so ca.crt is not consulted.
    let root_with_bad_ca_crt = CaKeyPair::from_pem(
        root.chain_pem.as_bytes(),
        key_pem.as_bytes(),
        Some(garbage),
        IssuerUrls::default(),
    );
    assert!(root_with_bad_ca_crt.is_ok());
    // Below an intermediate it is, and must parse.
    let root_ca = root_ca("Example Root CA", now() - hours(1));
    let int_key = ecdsa_p256();
    let int = sign_with_ca(&ca_template("Intermediate", now(), 365), &int_key, &root_ca).unwrap();
    let int_with_bad_ca_crt = CaKeyPair::from_pem(
        int.certificate_pem.as_bytes(),
        int_key.to_pem(KeyEncoding::Pkcs8).unwrap().as_bytes(),
        Some(garbage),
        IssuerUrls::default(),
    );
    assert!(matches!(
        int_with_bad_ca_crt,
        Err(PkiError::InvalidCertificate(_))
    ));
}
