//! Independent checks by the `openssl` command line tool: our CRLs make `openssl verify`
//! refuse a revoked leaf, and `openssl ocsp` reads our answers. Skipped (with one printed
//! line) where the binary is missing; CI installs it.

use super::*;
pub(super) use crate::pki::tests::openssl::{openssl, openssl_available, write};

pub(super) fn ca_pem(ca: &CaKeyPair) -> String {
    crate::pki::encode_pem("CERTIFICATE", ca.certificate().der.clone())
}

#[test]
fn openssl_verifies_the_crl_signature_and_reads_its_entries() {
    if !openssl_available("openssl_verifies_the_crl_signature_and_reads_its_entries") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let now = jiff::Timestamp::now();
    let ca = root_ca_with(KeyAlgorithm::Rsa, 2048, now - hours(1));
    let records = [revoked("3a4f", now - hours(1), RevocationReason::KeyCompromise)];
    let crl = build_crl(&ca, &records, 42, now).unwrap();
    write(dir.path(), "ca.crt", ca_pem(&ca));
    write(dir.path(), "ca.crl", &crl.der);

    let (ok, out) = openssl(
        dir.path(),
        &[
            "crl", "-inform", "DER", "-in", "ca.crl", "-CAfile", "ca.crt", "-noout", "-text",
        ],
    )
    .unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("verify OK"), "{out}");
    assert!(out.contains("Version 2"), "{out}");
    assert!(out.contains("X509v3 CRL Number: \n                42"), "{out}");
    assert!(out.contains("Serial Number: 3A4F"), "{out}");
    assert!(out.contains("Key Compromise"), "{out}");
}

#[test]
fn openssl_verify_with_crl_check_refuses_a_revoked_leaf_and_accepts_a_good_one() {
    if !openssl_available("openssl_verify_with_crl_check_refuses_a_revoked_leaf_and_accepts_a_good_one") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let now = jiff::Timestamp::now();
    for (algorithm, size) in [
        (KeyAlgorithm::Ecdsa, 256),
        (KeyAlgorithm::Rsa, 2048),
        (KeyAlgorithm::Ed25519, 0),
    ] {
        let ca = root_ca_with(algorithm, size, now - hours(1));
        let bad = leaf(&ca, now - hours(1));
        let good = leaf(&ca, now - hours(1));
        let records = [revoked(
            &bad.serial_hex,
            now - hours(1),
            RevocationReason::KeyCompromise,
        )];
        let crl = build_crl(&ca, &records, 1, now).unwrap();
        write(dir.path(), "ca.crt", ca_pem(&ca));
        write(dir.path(), "crl.pem", &crl.pem);
        write(dir.path(), "bad.crt", &bad.certificate_pem);
        write(dir.path(), "good.crt", &good.certificate_pem);

        let verify = |leaf: &str| {
            openssl(
                dir.path(),
                &[
                    "verify",
                    "-crl_check",
                    "-CAfile",
                    "ca.crt",
                    "-CRLfile",
                    "crl.pem",
                    leaf,
                ],
            )
            .unwrap()
        };
        let (ok, out) = verify("bad.crt");
        assert!(!ok, "{algorithm:?}: revoked leaf accepted: {out}");
        assert!(out.contains("certificate revoked"), "{algorithm:?}: {out}");
        let (ok, out) = verify("good.crt");
        assert!(ok, "{algorithm:?}: good leaf refused: {out}");
    }
}
