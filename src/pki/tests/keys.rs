//! Private keys: generation, both encodings, keys written by OpenSSL.

use x509_parser::prelude::{FromDer, SubjectPublicKeyInfo};

use super::*;

/// Generates a key, writes it in `encoding`, reads it back, and checks it is the same key.
fn assert_roundtrip(spec: KeySpec, encoding: KeyEncoding, label: &str) {
    let key = PrivateKey::generate(spec).expect("generate");
    assert_eq!(key.spec(), spec);
    let pem = key.to_pem(encoding).expect("to_pem");
    assert!(pem.starts_with(&format!("-----BEGIN {label}-----\n")), "{pem}");
    let back = PrivateKey::from_pem(pem.as_bytes()).expect("from_pem");
    assert_eq!(back.spec(), spec);
    assert_eq!(back.public_key_der(), key.public_key_der());
    // Writing the parsed key again gives the same document.
    assert_eq!(back.to_pem(encoding).expect("to_pem again"), pem);
}

#[test]
fn ecdsa_p256_key_roundtrips_through_pkcs8() {
    let spec = KeySpec {
        algorithm: KeyAlgorithm::Ecdsa,
        size: 256,
    };
    assert_roundtrip(spec, KeyEncoding::Pkcs8, "PRIVATE KEY");
}

#[test]
fn ecdsa_p256_key_roundtrips_through_sec1() {
    let spec = KeySpec {
        algorithm: KeyAlgorithm::Ecdsa,
        size: 256,
    };
    assert_roundtrip(spec, KeyEncoding::Pkcs1, "EC PRIVATE KEY");
}

#[test]
fn ecdsa_p384_key_roundtrips_through_pkcs8_and_sec1() {
    let spec = KeySpec {
        algorithm: KeyAlgorithm::Ecdsa,
        size: 384,
    };
    assert_roundtrip(spec, KeyEncoding::Pkcs8, "PRIVATE KEY");
    assert_roundtrip(spec, KeyEncoding::Pkcs1, "EC PRIVATE KEY");
}

#[test]
fn rsa_keys_of_every_size_roundtrip_through_pkcs8_and_pkcs1() {
    for size in [2048, 3072, 4096] {
        let spec = KeySpec {
            algorithm: KeyAlgorithm::Rsa,
            size,
        };
        assert_roundtrip(spec, KeyEncoding::Pkcs8, "PRIVATE KEY");
        assert_roundtrip(spec, KeyEncoding::Pkcs1, "RSA PRIVATE KEY");
    }
}

#[test]
fn ed25519_key_roundtrips_through_pkcs8() {
    let spec = KeySpec {
        algorithm: KeyAlgorithm::Ed25519,
        size: 0,
    };
    assert_roundtrip(spec, KeyEncoding::Pkcs8, "PRIVATE KEY");
}

#[test]
fn ed25519_has_no_pkcs1_encoding() {
    let key = key(KeyAlgorithm::Ed25519, 0);
    assert!(matches!(
        key.to_pem(KeyEncoding::Pkcs1),
        Err(PkiError::UnsupportedKey(_))
    ));
    assert!(matches!(
        key.to_der(KeyEncoding::Pkcs1),
        Err(PkiError::UnsupportedKey(_))
    ));
}

#[test]
fn unsupported_key_sizes_are_refused() {
    for (algorithm, size) in [
        (KeyAlgorithm::Ecdsa, 521),
        (KeyAlgorithm::Ecdsa, 0),
        (KeyAlgorithm::Rsa, 1024),
        (KeyAlgorithm::Rsa, 8192),
        (KeyAlgorithm::Ed25519, 256),
    ] {
        let result = PrivateKey::generate(KeySpec { algorithm, size });
        assert!(
            matches!(result, Err(PkiError::UnsupportedKey(_))),
            "{algorithm:?} {size}"
        );
    }
}

#[test]
fn to_der_is_the_der_inside_the_pem() {
    for (key, encodings) in [
        (ecdsa_p256(), &[KeyEncoding::Pkcs8, KeyEncoding::Pkcs1][..]),
        (
            key(KeyAlgorithm::Rsa, 2048),
            &[KeyEncoding::Pkcs8, KeyEncoding::Pkcs1][..],
        ),
        (key(KeyAlgorithm::Ed25519, 0), &[KeyEncoding::Pkcs8][..]),
    ] {
        for encoding in encodings {
            let pem = pem::parse(key.to_pem(*encoding).unwrap()).unwrap();
            assert_eq!(
                pem.contents(),
                key.to_der(*encoding).unwrap(),
                "{key:?} {encoding:?}"
            );
        }
    }
}

#[test]
fn sec1_output_names_its_curve_and_carries_the_public_key() {
    for (size, curve) in [(256, "1.2.840.10045.3.1.7"), (384, "1.3.132.0.34")] {
        let key = key(KeyAlgorithm::Ecdsa, size);
        let encoded = key.to_der(KeyEncoding::Pkcs1).unwrap();
        let parsed = <sec1::EcPrivateKey as der::Decode>::from_der(&encoded).unwrap();
        assert_eq!(parsed.private_key.len(), size as usize / 8);
        let Some(sec1::EcParameters::NamedCurve(named)) = parsed.parameters else {
            panic!("no [0] parameters");
        };
        assert_eq!(named, const_oid::ObjectIdentifier::new_unwrap(curve));
        let point = parsed.public_key.expect("[1] public key");
        let (_, spki) = SubjectPublicKeyInfo::from_der(key.spki()).unwrap();
        assert_eq!(point, &spki.subject_public_key.data[..]);
    }
}

#[test]
fn public_key_der_is_the_subject_public_key_info() {
    for (algorithm, size, oid) in [
        (KeyAlgorithm::Ecdsa, 256, "1.2.840.10045.2.1"),
        (KeyAlgorithm::Rsa, 2048, "1.2.840.113549.1.1.1"),
        (KeyAlgorithm::Ed25519, 0, "1.3.101.112"),
    ] {
        let der = key(algorithm, size).public_key_der();
        let (rest, spki) = SubjectPublicKeyInfo::from_der(&der).unwrap();
        assert!(rest.is_empty());
        assert_eq!(spki.algorithm.algorithm.to_id_string(), oid);
    }
}

#[test]
fn debug_output_shows_no_key_material() {
    let key = key(KeyAlgorithm::Ed25519, 0);
    let debug = format!("{key:?}");
    assert!(debug.starts_with("PrivateKey { spec: KeySpec { algorithm: Ed25519, size: 0 }"));
    let pem = key.to_pem(KeyEncoding::Pkcs8).unwrap();
    let body = pem.lines().nth(1).unwrap();
    assert!(!debug.contains(&body[..16]), "{debug}");
}

#[test]
fn malformed_key_errors_do_not_quote_the_input() {
    let secret = "-----BEGIN PRIVATE KEY-----\nTUlJQ1NFQ1JFVEtFWU1BVEVSSUFM!!\n-----END PRIVATE KEY-----\n";
    let err = PrivateKey::from_pem(secret.as_bytes()).unwrap_err().to_string();
    assert!(!err.contains("TUlJQ1NF") && !err.contains("!!"), "{err}");
    let not_a_key = "-----BEGIN PRIVATE KEY-----\nTUlJQ1NFQ1JFVEtFWU1BVEVSSUFM\n-----END PRIVATE KEY-----\n";
    let err = PrivateKey::from_pem(not_a_key.as_bytes()).unwrap_err();
    assert!(matches!(err, PkiError::InvalidKey(_)), "{err}");
    assert!(!err.to_string().contains("TUlJQ1NF"), "{err}");
}

#[test]
fn pem_without_a_key_block_is_invalid() {
    let err = PrivateKey::from_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    assert!(matches!(err, Err(PkiError::InvalidKey(_))));
    assert!(matches!(PrivateKey::from_pem(b""), Err(PkiError::InvalidKey(_))));
}

#[test]
fn encrypted_keys_are_unsupported() {
    let pem = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
    assert!(matches!(
        PrivateKey::from_pem(pem.as_bytes()),
        Err(PkiError::UnsupportedKey(_))
    ));
}

#[test]
fn openssl_written_keys_parse() {
    let fixtures = [
        (
            include_str!("../testdata/rsa2048-pkcs1.key"),
            KeyAlgorithm::Rsa,
            2048,
        ),
        (
            include_str!("../testdata/rsa3072-pkcs8.key"),
            KeyAlgorithm::Rsa,
            3072,
        ),
        (
            include_str!("../testdata/ec-p256-sec1.key"),
            KeyAlgorithm::Ecdsa,
            256,
        ),
        (
            include_str!("../testdata/ec-p384-sec1.key"),
            KeyAlgorithm::Ecdsa,
            384,
        ),
        (
            include_str!("../testdata/ec-p256-pkcs8.key"),
            KeyAlgorithm::Ecdsa,
            256,
        ),
        (
            include_str!("../testdata/ec-p384-pkcs8.key"),
            KeyAlgorithm::Ecdsa,
            384,
        ),
        (
            include_str!("../testdata/ed25519-pkcs8.key"),
            KeyAlgorithm::Ed25519,
            0,
        ),
    ];
    for (pem, algorithm, size) in fixtures {
        let key =
            PrivateKey::from_pem(pem.as_bytes()).unwrap_or_else(|e| panic!("{algorithm:?} {size}: {e}"));
        assert_eq!(key.spec(), KeySpec { algorithm, size });
        // The other encoding reads back as the same key.
        let reencoded = key.to_pem(KeyEncoding::Pkcs8).unwrap();
        let back = PrivateKey::from_pem(reencoded.as_bytes()).unwrap();
        assert_eq!(back.public_key_der(), key.public_key_der());
    }
}

#[test]
fn openssl_pkcs1_and_sec1_keys_are_written_back_unchanged() {
    // OpenSSL's own PKCS#1 / SEC1 output is the reference encoding.
    for pem in [
        include_str!("../testdata/rsa2048-pkcs1.key"),
        include_str!("../testdata/ec-p384-sec1.key"),
    ] {
        let key = PrivateKey::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(key.to_pem(KeyEncoding::Pkcs1).unwrap(), pem);
    }
    // `openssl ecparam -genkey` adds an EC PARAMETERS block, which is not part of the key.
    let with_params = include_str!("../testdata/ec-p256-sec1.key");
    let key_block = &with_params[with_params.find("-----BEGIN EC PRIVATE KEY").unwrap()..];
    let key = PrivateKey::from_pem(with_params.as_bytes()).unwrap();
    assert_eq!(key.to_pem(KeyEncoding::Pkcs1).unwrap(), key_block);
}
