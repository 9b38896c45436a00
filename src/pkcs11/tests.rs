//! Keys on a real SoftHSM2 token, each test in a process and token directory of its own
//! (`testing::softhsm`): every algorithm signs a leaf, a CRL and an OCSP answer that openssl
//! verifies; every Ready refusal; sessions and tokens lost and back; wrong PINs counted;
//! concurrency through the pool; a token that hangs.

use std::sync::Arc;

use super::generate::{self, TokenKeyAlgorithm, generate_key_pair};
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

/// The key `label` with its public key, made on the token.
fn make_key(registry: &Pkcs11Registry, label: &str, algorithm: TokenKeyAlgorithm) -> Vec<u8> {
    let uri = uri(label);
    generate_key_pair(&registry.module_for(&uri).unwrap(), &uri, PIN, algorithm).unwrap()
}

fn refusal(result: Result<Pkcs11Key, HsmError>) -> HsmError {
    match result {
        Ok(key) => panic!("{} was accepted", key.reference()),
        Err(e) => e,
    }
}

#[test]
fn a_key_that_is_not_there_is_key_not_found() {
    let _token = softhsm_token!(a_key_that_is_not_there_is_key_not_found);
    let registry = Pkcs11Registry::new(settings());
    let spki = make_key(&registry, "root", TokenKeyAlgorithm::EcdsaP256);
    let e = refusal(registry.open_key(&uri("root-2027"), PIN, &spki));
    assert_eq!(e.reason, HsmReason::KeyNotFound, "{e}");
    assert!(e.message.contains("root-2027"), "{e}");
}

#[test]
fn two_keys_under_one_label_are_ambiguous() {
    let token = softhsm_token!(two_keys_under_one_label_are_ambiguous);
    let registry = Pkcs11Registry::new(settings());
    let key = leaf_key();
    let pem = key.to_pem(crate::pki::KeyEncoding::Pkcs8).unwrap();
    token.import(&pem, "twice", "01");
    token.import(&pem, "twice", "02");
    let e = refusal(registry.open_key(&uri("twice"), PIN, &key.public_key_der()));
    assert_eq!(e.reason, HsmReason::KeyAmbiguous, "{e}");
    // Naming it by id as well picks one.
    let by_id: Pkcs11Uri = "pkcs11:token=ca;object=twice;id=%02".parse().unwrap();
    registry.open_key(&by_id, PIN, &key.public_key_der()).unwrap();
}

#[test]
fn a_key_that_can_leave_the_token_is_refused() {
    let _token = softhsm_token!(a_key_that_can_leave_the_token_is_refused);
    let registry = Pkcs11Registry::new(settings());
    let uri = uri("loose");
    let module = registry.module_for(&uri).unwrap();
    // SoftHSM's default when a template says nothing: CKA_SENSITIVE false.
    let spki = {
        use cryptoki::mechanism::Mechanism;
        use cryptoki::object::{Attribute, AttributeType};
        let gate = module.enter().unwrap();
        let (session, _login) = pool::open_rw_and_log_in(
            &module,
            &gate,
            &generate::token_of(&uri),
            &cryptoki::types::AuthPin::from(PIN.to_owned()),
            pool::pin_hash(PIN.as_bytes()),
        )
        .unwrap();
        let label = Attribute::Label(b"loose".to_vec());
        let (public, _) = session
            .generate_key_pair(
                &Mechanism::EccKeyPairGen,
                &[
                    Attribute::Token(true),
                    Attribute::EcParams(encode::P256_PARAMS.to_vec()),
                    label.clone(),
                    Attribute::Id(vec![7]),
                ],
                &[
                    Attribute::Token(true),
                    Attribute::Sign(true),
                    label,
                    Attribute::Id(vec![7]),
                ],
            )
            .unwrap();
        let attributes = session
            .get_attributes(public, &[AttributeType::EcParams, AttributeType::EcPoint])
            .unwrap();
        let (Attribute::EcParams(params), Attribute::EcPoint(point)) = (&attributes[0], &attributes[1])
        else {
            panic!("{attributes:?}")
        };
        encode::ec_spki(params, point).unwrap()
    };
    let e = refusal(registry.open_key(&uri, PIN, &spki));
    assert_eq!(e.reason, HsmReason::KeyExtractable, "{e}");
    assert!(e.message.contains("CKA_SENSITIVE false"), "{e}");
}

#[test]
fn a_key_that_is_not_the_certificates_is_a_mismatch() {
    let _token = softhsm_token!(a_key_that_is_not_the_certificates_is_a_mismatch);
    let registry = Pkcs11Registry::new(settings());
    make_key(&registry, "root", TokenKeyAlgorithm::EcdsaP256);
    let other = leaf_key();
    let e = refusal(registry.open_key(&uri("root"), PIN, &other.public_key_der()));
    assert_eq!(e.reason, HsmReason::KeyMismatch, "{e}");
    // Another algorithm altogether.
    let rsa = PrivateKey::generate(KeySpec {
        algorithm: KeyAlgorithm::Rsa,
        size: 2048,
    })
    .unwrap();
    let e = refusal(registry.open_key(&uri("root"), PIN, &rsa.public_key_der()));
    assert_eq!(e.reason, HsmReason::KeyMismatch, "{e}");
}

#[test]
fn a_refused_pin_is_not_offered_again_for_a_minute_but_a_new_pin_is() {
    let _token = softhsm_token!(a_refused_pin_is_not_offered_again_for_a_minute_but_a_new_pin_is);
    let registry = Pkcs11Registry::new(settings());
    let spki = make_key(&registry, "root", TokenKeyAlgorithm::EcdsaP256);
    let module = registry.module_for(&uri("root")).unwrap();
    // Key generation logged in once; closing its session logged the token out.
    let before = module.login_attempts();
    let e = refusal(registry.open_key(&uri("root"), "0000", &spki));
    assert_eq!(e.reason, HsmReason::LoginFailed, "{e}");
    assert!(!e.message.contains("0000"), "{e}");
    assert_eq!(module.login_attempts(), before + 1);
    for _ in 0..5 {
        let e = refusal(registry.open_key(&uri("root"), "0000", &spki));
        assert_eq!(e.reason, HsmReason::LoginFailed, "{e}");
        assert!(e.message.contains("refused this PIN"), "{e}");
    }
    assert_eq!(
        module.login_attempts(),
        before + 1,
        "the refused PIN was offered again"
    );
    // The PIN Secret corrected: tried at once.
    registry.open_key(&uri("root"), PIN, &spki).unwrap();
    assert_eq!(module.login_attempts(), before + 2);
    // Logged in now: a second C_Login would succeed whatever its PIN, so another PIN is refused
    // without asking the token.
    let e = refusal(registry.open_key(&uri("root"), "9999", &spki));
    assert_eq!(e.reason, HsmReason::LoginFailed, "{e}");
    assert!(e.message.contains("different PIN"), "{e}");
}

#[test]
fn a_wrong_pin_offered_by_many_at_once_reaches_the_token_once() {
    let _token = softhsm_token!(a_wrong_pin_offered_by_many_at_once_reaches_the_token_once);
    let registry = Arc::new(Pkcs11Registry::new(settings()));
    let spki = make_key(&registry, "root", TokenKeyAlgorithm::EcdsaP256);
    let module = registry.module_for(&uri("root")).unwrap();
    let before = module.login_attempts();
    // An issuer and its Certificates binding at the same moment, each through its own call.
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let binds: Vec<_> = (0..8)
        .map(|_| {
            let (registry, spki, barrier) = (registry.clone(), spki.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                refusal(registry.open_key(&uri("root"), "0000", &spki))
            })
        })
        .collect();
    for bind in binds {
        assert_eq!(bind.join().unwrap().reason, HsmReason::LoginFailed);
    }
    assert_eq!(
        module.login_attempts(),
        before + 1,
        "a token that locks after three failures must see one"
    );
}

#[test]
fn a_ca_key_moved_from_its_secret_onto_the_token_signs_for_the_same_certificate() {
    let token = softhsm_token!(a_ca_key_moved_from_its_secret_onto_the_token_signs_for_the_same_certificate);
    let registry = Pkcs11Registry::new(settings());
    let key = PrivateKey::generate(KeySpec {
        algorithm: KeyAlgorithm::Ecdsa,
        size: 384,
    })
    .unwrap();
    let root = sign_self_signed(&ca_template("Secret-held Root"), &key).unwrap();
    let pem = key.to_pem(crate::pki::KeyEncoding::Pkcs8).unwrap();
    let in_secret = CaKeyPair::from_pem(
        root.chain_pem.as_bytes(),
        pem.as_bytes(),
        None,
        IssuerUrls::default(),
    )
    .unwrap();
    let before = sign_with_ca(&leaf_template(), &leaf_key(), &in_secret).unwrap();
    token.import(&pem, "migrated", "0a");
    let on_token = bind(&registry, root.chain_pem.as_bytes(), &uri("migrated"));
    let after = sign_with_ca(&leaf_template(), &leaf_key(), &on_token).unwrap();
    // Same CA certificate, same anchor: what it signed before and after chains to it alike.
    assert_eq!(before.ca_pem, after.ca_pem);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ca.crt", &root.certificate_pem);
    write(dir.path(), "before.crt", &before.certificate_pem);
    write(dir.path(), "after.crt", &after.certificate_pem);
    let (ok, out) = openssl(
        dir.path(),
        &["verify", "-CAfile", "ca.crt", "before.crt", "after.crt"],
    )
    .unwrap();
    assert!(
        ok && out.contains("before.crt: OK") && out.contains("after.crt: OK"),
        "{out}"
    );
}

#[test]
fn many_signatures_at_once_share_the_pool_and_all_verify() {
    let _token = softhsm_token!(many_signatures_at_once_share_the_pool_and_all_verify);
    let registry = Pkcs11Registry::new(Pkcs11Settings {
        sessions: 4,
        ..settings()
    });
    let spki = make_key(&registry, "root", TokenKeyAlgorithm::EcdsaP256);
    let key = Arc::new(registry.open_key(&uri("root"), PIN, &spki).unwrap());
    let pool = registry.pool(&uri("root"), PIN).unwrap();
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let key = key.clone();
            let pool = pool.clone();
            std::thread::spawn(move || {
                for i in 0..12 {
                    let message = format!("message {t}/{i}");
                    let signature = crate::pki::Signer::sign(key.as_ref(), message.as_bytes()).unwrap();
                    let bits = crate::pki::public_key_bits(crate::pki::Signer::spki(key.as_ref())).unwrap();
                    aws_lc_rs::signature::UnparsedPublicKey::new(
                        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
                        bits,
                    )
                    .verify(message.as_bytes(), &signature)
                    .unwrap();
                    assert!(pool.sessions() <= 4, "{} sessions", pool.sessions());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(pool.sessions() <= 4);
}

#[test]
fn a_token_that_hangs_is_given_up_on_within_the_timeout_and_the_pool_recovers() {
    let _token = softhsm_token!(a_token_that_hangs_is_given_up_on_within_the_timeout_and_the_pool_recovers);
    let hang = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = hang.clone();
    let registry = Pkcs11Registry::new(Pkcs11Settings {
        sessions: 2,
        sign_timeout: std::time::Duration::from_millis(500),
        ..settings()
    })
    .with_before_call(Arc::new(move || {
        if flag.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(1500));
        }
    }));
    let spki = make_key(&registry, "root", TokenKeyAlgorithm::EcdsaP256);
    let key = registry.open_key(&uri("root"), PIN, &spki).unwrap();
    hang.store(true, std::sync::atomic::Ordering::SeqCst);
    let started = std::time::Instant::now();
    let e = crate::pki::Signer::sign(&key, b"tbs").unwrap_err();
    assert!(
        started.elapsed() < std::time::Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
    assert!(e.to_string().contains("did not answer within"), "{e}");
    let crate::pki::PkiError::Hsm(e) = e else {
        panic!("{e}")
    };
    assert_eq!(e.reason, HsmReason::Unavailable);
    hang.store(false, std::sync::atomic::Ordering::SeqCst);
    let pool = registry.pool(&uri("root"), PIN).unwrap();
    assert!(pool.sessions() <= 2);
    // The hung session comes back when its call returns; signing goes on.
    crate::pki::Signer::sign(&key, b"tbs").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    crate::pki::Signer::sign(&key, b"tbs").unwrap();
    assert!(pool.sessions() <= 2);
}

#[test]
fn a_token_that_goes_away_makes_the_key_unavailable_and_it_signs_again_when_it_returns() {
    let token =
        softhsm_token!(a_token_that_goes_away_makes_the_key_unavailable_and_it_signs_again_when_it_returns);
    let registry = Arc::new(Pkcs11Registry::new(settings()));
    let ca = hsm_root(&registry, "root", TokenKeyAlgorithm::EcdsaP256);
    let CaKey::Hsm(hsm) = &ca.key else { unreachable!() };
    sign_with_ca(&leaf_template(), &leaf_key(), &ca).unwrap();

    let [dir] = token.token_dirs().try_into().unwrap();
    let away = token.root.join("away");
    std::fs::rename(&dir, &away).unwrap();
    let e = sign_with_ca(&leaf_template(), &leaf_key(), &ca).unwrap_err();
    let crate::pki::PkiError::Hsm(e) = e else {
        panic!("{e}")
    };
    assert_eq!(e.reason, HsmReason::Unavailable, "{e}");
    // The issuer's next look says so; nothing is signed meanwhile.
    assert!(matches!(hsm.due(true), Due::Broken(_)));
    assert!(sign_with_ca(&leaf_template(), &leaf_key(), &ca).is_err());

    std::fs::rename(&away, &dir).unwrap();
    // As the issuer's reconcile does, every few seconds: bind again once the retry is due.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Due::Bind = hsm.due(true) {
            let opened = registry.open_key(&hsm.uri, PIN, hsm.spki()).map(Arc::new);
            if hsm.bound(opened).is_ok() {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not back within 20 s: {:?}",
            hsm.problem()
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    sign_with_ca(&leaf_template(), &leaf_key(), &ca).unwrap();
}
