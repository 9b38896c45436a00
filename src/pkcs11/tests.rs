//! Keys on a real SoftHSM2 token, each test in a process and token directory of its own
//! (`testing::softhsm`): every algorithm signs a leaf, a CRL and an OCSP answer that openssl
//! verifies; every Ready refusal; sessions and tokens lost and back; wrong PINs counted;
//! concurrency through the pool; a token that hangs.

use std::sync::Arc;

use super::generate::{TokenKeyAlgorithm, generate_key_pair};
use super::*;
use crate::pki::tests::openssl::{openssl, write};
use crate::pki::{
    CaKey, CaKeyPair, CertificateTemplate, IssuerUrls, KeyAlgorithm, KeySpec, PrivateKey, Usage,
    sign_self_signed, sign_with_ca,
};
use crate::revocation::{RevocationReason, RevokedSerial, build_crl, respond_ocsp};
use crate::softhsm_token;
use crate::testing::softhsm::{MODULE, PIN};

fn settings() -> Pkcs11Settings {
    Pkcs11Settings {
        modules: vec![("softhsm".into(), MODULE.into())],
        ..Pkcs11Settings::default()
    }
}

fn uri(label: &str) -> Pkcs11Uri {
    format!("pkcs11:token=ca;object={label}").parse().unwrap()
}

fn pin_ref() -> PinRef {
    PinRef {
        namespace: "certkeeper-system".into(),
        name: "hsm-pin".into(),
        key: "pin".into(),
    }
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

fn ca_template(cn: &str) -> CertificateTemplate {
    CertificateTemplate {
        common_name: Some(cn.into()),
        not_before: now() - jiff::SignedDuration::from_hours(1),
        not_after: now() + jiff::SignedDuration::from_hours(24 * 365),
        is_ca: true,
        usages: vec![Usage::DigitalSignature],
        ..Default::default()
    }
}

/// A root CA whose key is made on the token, as `ca init --self-signed` makes it, bound.
fn hsm_root(registry: &Pkcs11Registry, label: &str, algorithm: TokenKeyAlgorithm) -> CaKeyPair {
    let uri = uri(label);
    let module = registry.module_for(&uri).unwrap();
    let spki = generate_key_pair(&module, &uri, PIN, algorithm).unwrap();
    let key = registry.open_key(&uri, PIN, &spki).unwrap();
    let root = sign_self_signed(&ca_template(&format!("HSM Root {label}")), &key).unwrap();
    bind(registry, root.certificate_pem.as_bytes(), &uri)
}

/// The CA Secret's `tls.crt` with its key on the token, bound as the issuer binds it.
fn bind(registry: &Pkcs11Registry, tls_crt: &[u8], uri: &Pkcs11Uri) -> CaKeyPair {
    let pair = CaKeyPair::with_hsm_key(tls_crt, None, IssuerUrls::default(), |ca| {
        HsmKey::new(uri.clone(), pin_ref(), &ca.public_key_der)
    })
    .unwrap();
    let CaKey::Hsm(hsm) = &pair.key else {
        unreachable!()
    };
    let key = registry
        .open_key(uri, PIN, &pair.certificate().public_key_der)
        .unwrap();
    hsm.bound(Ok(Arc::new(key))).unwrap();
    pair
}

fn leaf_template() -> CertificateTemplate {
    CertificateTemplate {
        common_name: Some("api.example.svc".into()),
        dns_names: vec!["api.example.svc".into()],
        not_before: now() - jiff::SignedDuration::from_mins(1),
        not_after: now() + jiff::SignedDuration::from_hours(24),
        usages: vec![Usage::DigitalSignature, Usage::ServerAuth],
        ..Default::default()
    }
}

fn leaf_key() -> PrivateKey {
    PrivateKey::generate(KeySpec {
        algorithm: KeyAlgorithm::Ecdsa,
        size: 256,
    })
    .unwrap()
}

/// A leaf, a CRL revoking it and an OCSP answer about it, all signed on the token; openssl
/// verifies each.
fn signs_everything_openssl_accepts(algorithm: TokenKeyAlgorithm) {
    let registry = Pkcs11Registry::new(settings());
    let ca = hsm_root(&registry, "root", algorithm);
    let leaf = sign_with_ca(&leaf_template(), &leaf_key(), &ca).unwrap();
    let crl = build_crl(
        &ca,
        &[RevokedSerial {
            serial_hex: leaf.serial_hex.clone(),
            revoked_at: now(),
            reason: RevocationReason::KeyCompromise,
        }],
        1,
        now(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_pem = crate::pki::encode_pem("CERTIFICATE", ca.certificate().der.clone());
    write(dir.path(), "ca.crt", &ca_pem);
    write(dir.path(), "leaf.crt", &leaf.certificate_pem);
    write(dir.path(), "ca.crl", &crl.der);
    let (ok, out) = openssl(dir.path(), &["verify", "-CAfile", "ca.crt", "leaf.crt"]).unwrap();
    assert!(ok && out.contains("leaf.crt: OK"), "{out}");
    let (ok, out) = openssl(
        dir.path(),
        &[
            "crl", "-inform", "DER", "-in", "ca.crl", "-CAfile", "ca.crt", "-noout",
        ],
    )
    .unwrap();
    assert!(ok && out.contains("verify OK"), "{out}");
    let (ok, out) = openssl(
        dir.path(),
        &[
            "ocsp",
            "-issuer",
            "ca.crt",
            "-cert",
            "leaf.crt",
            "-reqout",
            "req.der",
            "-no_nonce",
        ],
    )
    .unwrap();
    assert!(ok, "{out}");
    let request = std::fs::read(dir.path().join("req.der")).unwrap();
    let revoked = [RevokedSerial {
        serial_hex: leaf.serial_hex.clone(),
        revoked_at: now(),
        reason: RevocationReason::KeyCompromise,
    }];
    let response = respond_ocsp(&ca, &revoked[..], &request, now()).unwrap();
    write(dir.path(), "resp.der", &response);
    let (ok, out) = openssl(
        dir.path(),
        &[
            "ocsp", "-respin", "resp.der", "-CAfile", "ca.crt", "-issuer", "ca.crt", "-cert", "leaf.crt",
        ],
    )
    .unwrap();
    assert!(
        ok && out.contains("Response verify OK") && out.contains("revoked"),
        "{out}"
    );
}

#[test]
fn ecdsa_p256_on_the_token_signs_leaves_crls_and_ocsp() {
    let _token = softhsm_token!(ecdsa_p256_on_the_token_signs_leaves_crls_and_ocsp);
    signs_everything_openssl_accepts(TokenKeyAlgorithm::EcdsaP256);
}

#[test]
fn ecdsa_p384_on_the_token_signs_leaves_crls_and_ocsp() {
    let _token = softhsm_token!(ecdsa_p384_on_the_token_signs_leaves_crls_and_ocsp);
    signs_everything_openssl_accepts(TokenKeyAlgorithm::EcdsaP384);
}

#[test]
fn rsa_2048_on_the_token_signs_leaves_crls_and_ocsp() {
    let _token = softhsm_token!(rsa_2048_on_the_token_signs_leaves_crls_and_ocsp);
    signs_everything_openssl_accepts(TokenKeyAlgorithm::Rsa2048);
}

#[test]
fn rsa_3072_on_the_token_signs_leaves_crls_and_ocsp() {
    let _token = softhsm_token!(rsa_3072_on_the_token_signs_leaves_crls_and_ocsp);
    signs_everything_openssl_accepts(TokenKeyAlgorithm::Rsa3072);
}

#[test]
fn ed25519_on_the_token_signs_leaves_crls_and_ocsp() {
    let _token = softhsm_token!(ed25519_on_the_token_signs_leaves_crls_and_ocsp);
    signs_everything_openssl_accepts(TokenKeyAlgorithm::Ed25519);
}
