//! Independent checks by the `openssl` command line tool. Skipped (with one printed line) where
//! the binary is missing; CI installs it.

use std::path::Path;
use std::process::Command;

use super::*;

/// Runs `openssl args…` in `dir`; `None` when there is no openssl binary.
pub(crate) fn openssl(dir: &Path, args: &[&str]) -> Option<(bool, String)> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Some((output.status.success(), text))
}

pub(crate) fn openssl_available(test: &str) -> bool {
    let found = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        println!("{test}: skipped, no `openssl` binary on PATH");
    }
    found
}

pub(crate) fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) {
    std::fs::write(dir.join(name), contents).unwrap();
}

/// Splits a Secret's `tls.crt` into the leaf and the intermediates after it.
fn split_chain(chain_pem: &str) -> (String, String) {
    let certs = parse_pem_certificates(chain_pem.as_bytes()).unwrap();
    let pem = |der: &Vec<u8>| super::super::key::encode_pem("CERTIFICATE", der.clone());
    let leaf = pem(&certs[0]);
    let rest: String = certs[1..].iter().map(pem).collect();
    (leaf, rest)
}

#[test]
fn openssl_verifies_the_chain_we_write() {
    if !openssl_available("openssl_verifies_the_chain_we_write") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let from = jiff::Timestamp::now() - hours(1);
    let root = root_ca("Example Root CA", from);
    let intermediate = intermediate_ca(&root, from);
    for (name, key_spec) in [
        (
            "p256",
            KeySpec {
                algorithm: KeyAlgorithm::Ecdsa,
                size: 256,
            },
        ),
        (
            "rsa",
            KeySpec {
                algorithm: KeyAlgorithm::Rsa,
                size: 2048,
            },
        ),
        (
            "ed25519",
            KeySpec {
                algorithm: KeyAlgorithm::Ed25519,
                size: 0,
            },
        ),
    ] {
        let key = PrivateKey::generate(key_spec).unwrap();
        let issued = sign_with_ca(&leaf_template(from), &key, &intermediate).unwrap();
        let (leaf, intermediates) = split_chain(&issued.chain_pem);
        write(dir.path(), "ca.crt", &issued.ca_pem);
        write(dir.path(), "intermediates.pem", &intermediates);
        write(dir.path(), "leaf.pem", &leaf);
        let (ok, out) = openssl(
            dir.path(),
            &[
                "verify",
                "-x509_strict",
                "-purpose",
                "sslserver",
                "-CAfile",
                "ca.crt",
                "-untrusted",
                "intermediates.pem",
                "leaf.pem",
            ],
        )
        .unwrap();
        assert!(ok && out.contains("leaf.pem: OK"), "{name}: {out}");

        // And the client side of mTLS.
        let (ok, out) = openssl(
            dir.path(),
            &[
                "verify",
                "-purpose",
                "sslclient",
                "-CAfile",
                "ca.crt",
                "-untrusted",
                "intermediates.pem",
                "leaf.pem",
            ],
        )
        .unwrap();
        assert!(ok, "{name}: {out}");

        // Without the intermediate the leaf does not verify: tls.crt must carry it.
        let (ok, _) = openssl(dir.path(), &["verify", "-CAfile", "ca.crt", "leaf.pem"]).unwrap();
        assert!(!ok, "{name}: verified without the intermediate");
    }
}

#[test]
fn openssl_verifies_a_leaf_from_an_openssl_ca() {
    if !openssl_available("openssl_verifies_a_leaf_from_an_openssl_ca") {
        return;
    }
    let ca = CaKeyPair::from_pem(
        include_bytes!("../testdata/openssl-ca.crt"),
        include_bytes!("../testdata/openssl-ca.key"),
        None,
        IssuerUrls::default(),
    )
    .unwrap();
    let from = jiff::Timestamp::now() - hours(1);
    let issued = sign_with_ca(&leaf_template(from), &ecdsa_p256(), &ca).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ca.crt", &issued.ca_pem);
    write(dir.path(), "tls.crt", &issued.chain_pem);
    let (ok, out) = openssl(
        dir.path(),
        &["verify", "-x509_strict", "-CAfile", "ca.crt", "tls.crt"],
    )
    .unwrap();
    assert!(ok && out.contains("tls.crt: OK"), "{out}");
}

#[test]
fn openssl_reads_our_pkcs1_and_sec1_keys() {
    if !openssl_available("openssl_reads_our_pkcs1_and_sec1_keys") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for (name, spec, expect) in [
        (
            "rsa.key",
            KeySpec {
                algorithm: KeyAlgorithm::Rsa,
                size: 2048,
            },
            "Private-Key: (2048 bit",
        ),
        (
            "p256.key",
            KeySpec {
                algorithm: KeyAlgorithm::Ecdsa,
                size: 256,
            },
            "ASN1 OID: prime256v1",
        ),
        (
            "p384.key",
            KeySpec {
                algorithm: KeyAlgorithm::Ecdsa,
                size: 384,
            },
            "ASN1 OID: secp384r1",
        ),
    ] {
        let key = PrivateKey::generate(spec).unwrap();
        write(dir.path(), name, key.to_pem(KeyEncoding::Pkcs1).unwrap());
        let (ok, out) = openssl(dir.path(), &["pkey", "-in", name, "-noout", "-text"]).unwrap();
        assert!(ok && out.contains(expect), "{name}: {out}");
        if spec.algorithm == KeyAlgorithm::Ecdsa {
            assert!(out.contains("pub:"), "{name} lacks its public key: {out}");
        }
        // OpenSSL's public key is ours.
        let (ok, out) = openssl(dir.path(), &["pkey", "-in", name, "-pubout"]).unwrap();
        assert!(ok, "{out}");
        let spki = pem::parse(out.as_bytes()).unwrap();
        assert_eq!(spki.contents(), key.public_key_der(), "{name}");
        // And the EC key check passes.
        if spec.algorithm == KeyAlgorithm::Ecdsa {
            let (ok, out) = openssl(dir.path(), &["ec", "-in", name, "-check", "-noout"]).unwrap();
            assert!(ok && out.contains("EC Key valid"), "{name}: {out}");
        }
    }
    // PKCS#8 of every key type as well.
    for spec in [
        KeySpec {
            algorithm: KeyAlgorithm::Ecdsa,
            size: 384,
        },
        KeySpec {
            algorithm: KeyAlgorithm::Rsa,
            size: 2048,
        },
        KeySpec {
            algorithm: KeyAlgorithm::Ed25519,
            size: 0,
        },
    ] {
        let key = PrivateKey::generate(spec).unwrap();
        write(dir.path(), "k8.key", key.to_pem(KeyEncoding::Pkcs8).unwrap());
        let (ok, out) = openssl(dir.path(), &["pkey", "-in", "k8.key", "-noout"]).unwrap();
        assert!(ok, "{spec:?}: {out}");
    }
}

#[test]
fn openssl_sees_every_field_we_write() {
    if !openssl_available("openssl_sees_every_field_we_write") {
        return;
    }
    let mut ca = root_ca("Example Root CA", now());
    ca.urls = IssuerUrls {
        crl_distribution_points: vec!["http://crl.example.com/root.crl".into()],
        ocsp_servers: vec!["http://ocsp.example.com".into()],
        issuing_certificate_urls: vec!["http://pki.example.com/root.crt".into()],
    };
    let template = CertificateTemplate {
        subject: SubjectFields {
            organizations: vec!["Example Corp".into()],
            countries: vec!["DE".into()],
            ..Default::default()
        },
        ip_addresses: vec![ip("10.0.0.7")],
        uris: vec!["spiffe://td/ns/x/sa/y".into()],
        email_addresses: vec!["ops@example.com".into()],
        ..leaf_template(now())
    };
    let issued = sign_with_ca(&template, &ecdsa_p256(), &ca).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "leaf.pem", &issued.certificate_pem);
    let (ok, text) = openssl(
        dir.path(),
        &[
            "x509", "-in", "leaf.pem", "-noout", "-text", "-nameopt", "RFC2253",
        ],
    )
    .unwrap();
    assert!(ok, "{text}");
    for expected in [
        "Subject: CN=api.example.svc,O=Example Corp,C=DE",
        "Issuer: CN=Example Root CA,O=Example",
        "Not Before: Jun  1 12:00:00 2025 GMT",
        "Not After : Jun  2 12:00:00 2025 GMT",
        "Signature Algorithm: ecdsa-with-SHA256",
        "X509v3 Key Usage: critical\n                Digital Signature, Key Encipherment",
        "TLS Web Server Authentication, TLS Web Client Authentication",
        "X509v3 Basic Constraints: critical\n                CA:FALSE",
        "DNS:api.example.svc, DNS:api.example.svc.cluster.local, IP Address:10.0.0.7, URI:spiffe://td/ns/x/sa/y, email:ops@example.com",
        "OCSP - URI:http://ocsp.example.com",
        "CA Issuers - URI:http://pki.example.com/root.crt",
        "URI:http://crl.example.com/root.crl",
        "X509v3 Subject Key Identifier",
        "X509v3 Authority Key Identifier",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    let (ok, out) = openssl(dir.path(), &["x509", "-in", "leaf.pem", "-noout", "-serial"]).unwrap();
    assert!(ok);
    assert_eq!(out.trim().to_lowercase(), format!("serial={}", issued.serial_hex));
}
