//! Keystores read back here and by the tools the consumers use: `openssl pkcs12` for every
//! profile, `keytool -list` for PKCS#12 and JKS.

use std::path::Path;
use std::process::Command;

use super::*;
use crate::pki::tests::openssl::{openssl, openssl_available, write};
use crate::pki::{
    CaKeyPair, CertificateTemplate, IssuerUrls, KeyAlgorithm, KeyEncoding, KeySpec, PrivateKey, Usage,
    parse_certificate_chain, sign_self_signed, sign_with_ca,
};

const PASSWORD: &str = "changeit-Ü1";
const PROFILES: [Profile; 3] = [Profile::LegacyRc2, Profile::LegacyDes, Profile::Modern2023];

/// A key, its leaf signed by an intermediate, the intermediate, and the root (DER).
struct Fixture {
    key: Vec<u8>,
    chain: Vec<Vec<u8>>,
    cas: Vec<Vec<u8>>,
}

impl Fixture {
    fn material(&self) -> StoreMaterial<'_> {
        StoreMaterial {
            key_pkcs8: &self.key,
            chain: &self.chain,
            cas: &self.cas,
        }
    }
}

fn ca_template(cn: &str) -> CertificateTemplate {
    let now = jiff::Timestamp::now();
    CertificateTemplate {
        common_name: Some(cn.into()),
        not_before: now - jiff::SignedDuration::from_hours(1),
        not_after: now + jiff::SignedDuration::from_hours(24 * 30),
        is_ca: true,
        usages: vec![Usage::DigitalSignature],
        ..Default::default()
    }
}

fn fixture(algorithm: KeyAlgorithm, size: u32) -> Fixture {
    let ecdsa = KeySpec {
        algorithm: KeyAlgorithm::Ecdsa,
        size: 256,
    };
    let root_key = PrivateKey::generate(ecdsa).unwrap();
    let root = sign_self_signed(&ca_template("keystore root"), &root_key).unwrap();
    let root_pair = CaKeyPair::from_pem(
        root.chain_pem.as_bytes(),
        root_key.to_pem(KeyEncoding::Pkcs8).unwrap().as_bytes(),
        None,
        IssuerUrls::default(),
    )
    .unwrap();
    let leaf_key = PrivateKey::generate(KeySpec { algorithm, size }).unwrap();
    let now = jiff::Timestamp::now();
    let template = CertificateTemplate {
        common_name: Some("java-app.sandbox.svc".into()),
        dns_names: vec!["java-app.sandbox.svc".into()],
        not_before: now - jiff::SignedDuration::from_hours(1),
        not_after: now + jiff::SignedDuration::from_hours(24),
        usages: vec![Usage::DigitalSignature, Usage::ServerAuth, Usage::ClientAuth],
        ..Default::default()
    };
    let leaf = sign_with_ca(&template, &leaf_key, &root_pair).unwrap();
    let der = |pem: &str| -> Vec<Vec<u8>> {
        parse_certificate_chain(pem.as_bytes())
            .unwrap()
            .into_iter()
            .map(|c| c.der)
            .collect()
    };
    Fixture {
        key: leaf_key.to_der(KeyEncoding::Pkcs8).unwrap(),
        chain: der(&leaf.certificate_pem),
        cas: der(&root.chain_pem),
    }
}

fn protection(profile: Profile) -> Protection<'static> {
    Protection {
        password: PASSWORD,
        profile,
    }
}

#[test]
fn every_pkcs12_profile_reads_back_with_the_password_and_not_without() {
    let f = fixture(KeyAlgorithm::Ecdsa, 256);
    let material = f.material();
    for profile in PROFILES {
        let keystore = material
            .pkcs12_keystore("certificate", &protection(profile))
            .unwrap();
        let contents = pkcs12::read(&keystore, Some(PASSWORD)).unwrap();
        assert!(contents.mac && contents.encrypted, "{profile:?}");
        assert!(
            material.in_pkcs12_keystore(&contents),
            "{profile:?}: {contents:?}"
        );
        assert_eq!(contents.keys[0].alias.as_deref(), Some("certificate"));
        assert!(matches!(
            pkcs12::read(&keystore, Some("wrong")),
            Err(KeystoreError::WrongPassword)
        ));
        // Random salts: the same material never gives the same bytes twice.
        assert_ne!(
            keystore,
            material
                .pkcs12_keystore("certificate", &protection(profile))
                .unwrap()
        );

        let truststore = material.pkcs12_truststore(&protection(profile)).unwrap();
        let contents = pkcs12::read(&truststore, Some(PASSWORD)).unwrap();
        assert!(material.in_truststore(&contents), "{profile:?}: {contents:?}");
        assert!(!material.in_pkcs12_keystore(&contents));
        assert_eq!(contents.certificates[0].alias.as_deref(), Some("ca"));
    }
}

#[test]
fn a_store_of_other_material_is_not_up_to_date() {
    let (a, b) = (
        fixture(KeyAlgorithm::Ecdsa, 256),
        fixture(KeyAlgorithm::Ecdsa, 256),
    );
    let keystore = a
        .material()
        .pkcs12_keystore("certificate", &protection(Profile::Modern2023))
        .unwrap();
    let contents = pkcs12::read(&keystore, Some(PASSWORD)).unwrap();
    assert!(a.material().in_pkcs12_keystore(&contents));
    assert!(!b.material().in_pkcs12_keystore(&contents));
    // Another CA in ca.crt (a rotation's second root): the truststore must be written again.
    let mut rotated = a.cas.clone();
    rotated.extend(b.cas.clone());
    let wider = StoreMaterial {
        cas: &rotated,
        ..a.material()
    };
    let truststore = a.material().jks_truststore(PASSWORD, 0).unwrap();
    let contents = jks::read(&truststore, PASSWORD).unwrap();
    assert!(a.material().in_truststore(&contents));
    assert!(!wider.in_truststore(&contents));
}

#[test]
fn jks_reads_back_and_refuses_a_wrong_password_or_a_changed_byte() {
    let f = fixture(KeyAlgorithm::Rsa, 2048);
    let material = f.material();
    let keystore = material
        .jks_keystore("certificate", PASSWORD, 1_700_000_000_000)
        .unwrap();
    let contents = jks::read(&keystore, PASSWORD).unwrap();
    assert!(material.in_jks_keystore(&contents), "{contents:?}");
    assert!(matches!(
        jks::read(&keystore, "wrong"),
        Err(KeystoreError::WrongPassword)
    ));
    let mut tampered = keystore.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 1;
    assert!(jks::read(&tampered, PASSWORD).is_err());
    assert!(jks::read(&keystore[..keystore.len() - 3], PASSWORD).is_err());
    assert!(jks::read(b"not a keystore", PASSWORD).is_err());
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    for bytes in [&b""[..], b"\x30\x03\x02\x01\x03", &[0xff; 64]] {
        assert!(pkcs12::read(bytes, Some(PASSWORD)).is_err());
        assert!(jks::read(bytes, PASSWORD).is_err());
    }
}

#[test]
fn keys_never_show_in_debug_output() {
    let f = fixture(KeyAlgorithm::Ecdsa, 256);
    let keystore = f.material().jks_keystore("certificate", PASSWORD, 0).unwrap();
    let contents = jks::read(&keystore, PASSWORD).unwrap();
    let shown = format!("{contents:?}");
    assert!(shown.contains("(redacted)"), "{shown}");
    assert!(!shown.contains(&format!("{:?}", f.key)), "{shown}");
}

/// `keytool -list` on `file`: its output, or None without a JDK.
fn keytool_list(dir: &Path, file: &str, store_type: &str, password: &str) -> Option<String> {
    let output = Command::new("keytool")
        .args([
            "-list",
            "-v",
            "-storetype",
            store_type,
            "-keystore",
            file,
            "-storepass",
            password,
        ])
        .current_dir(dir)
        .output()
        .ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "keytool -list {file}: {text}");
    Some(text)
}

#[test]
fn openssl_reads_every_pkcs12_profile_with_the_key_and_chain() {
    if !openssl_available("openssl_reads_every_pkcs12_profile_with_the_key_and_chain") {
        return;
    }
    let f = fixture(KeyAlgorithm::Ecdsa, 256);
    let material = f.material();
    let dir = tempfile::tempdir().unwrap();
    let pass = format!("pass:{PASSWORD}");
    for profile in PROFILES {
        let name = format!("{profile:?}.p12");
        write(
            dir.path(),
            &name,
            material
                .pkcs12_keystore("certificate", &protection(profile))
                .unwrap(),
        );
        // OpenSSL 3 reads RC2 only with its legacy provider.
        let mut args = vec!["pkcs12", "-in", &name, "-passin", &pass, "-nodes", "-info"];
        if profile == Profile::LegacyRc2 {
            args.push("-legacy");
        }
        let (ok, out) = openssl(dir.path(), &args).unwrap();
        assert!(ok, "{profile:?}: {out}");
        assert_eq!(out.matches("BEGIN CERTIFICATE").count(), 2, "{profile:?}: {out}");
        assert_eq!(out.matches("BEGIN PRIVATE KEY").count(), 1, "{profile:?}: {out}");
        assert!(out.contains("friendlyName: certificate"), "{profile:?}: {out}");
        let expected = match profile {
            Profile::LegacyRc2 => [
                "pbeWithSHA1And40BitRC2-CBC",
                "pbeWithSHA1And3-KeyTripleDES-CBC",
                "MAC: sha1",
            ],
            Profile::LegacyDes => [
                "pbeWithSHA1And3-KeyTripleDES-CBC",
                "pbeWithSHA1And3-KeyTripleDES-CBC",
                "MAC: sha1",
            ],
            Profile::Modern2023 => ["PBES2, PBKDF2, AES-256-CBC", "hmacWithSHA256", "MAC: sha256"],
        };
        for text in expected {
            assert!(out.contains(text), "{profile:?} lacks {text}: {out}");
        }
        let (ok, out) = openssl(
            dir.path(),
            &["pkcs12", "-in", &name, "-passin", "pass:wrong", "-nodes"],
        )
        .unwrap();
        assert!(!ok, "{profile:?} opened with a wrong password: {out}");

        let trust = format!("{profile:?}-trust.p12");
        write(
            dir.path(),
            &trust,
            material.pkcs12_truststore(&protection(profile)).unwrap(),
        );
        let mut args = vec!["pkcs12", "-in", &trust, "-passin", &pass, "-nokeys"];
        if profile == Profile::LegacyRc2 {
            args.push("-legacy");
        }
        let (ok, out) = openssl(dir.path(), &args).unwrap();
        assert!(ok, "{profile:?} truststore: {out}");
        assert_eq!(out.matches("BEGIN CERTIFICATE").count(), 1, "{profile:?}: {out}");
    }
    // The DER key parses with openssl as well.
    write(dir.path(), "key.der", &f.key);
    let (ok, out) = openssl(
        dir.path(),
        &["pkey", "-inform", "DER", "-in", "key.der", "-noout"],
    )
    .unwrap();
    assert!(ok, "{out}");
}

#[test]
fn keytool_lists_the_pkcs12_and_jks_stores_with_their_entries() {
    let f = fixture(KeyAlgorithm::Rsa, 2048);
    let material = f.material();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "keystore.jks",
        material
            .jks_keystore("certificate", PASSWORD, 1_700_000_000_000)
            .unwrap(),
    );
    let Some(text) = keytool_list(dir.path(), "keystore.jks", "JKS", PASSWORD) else {
        println!("keytool not found: the JKS and PKCS#12 stores were checked in process only");
        return;
    };
    assert!(text.contains("Alias name: certificate"), "{text}");
    assert!(text.contains("Entry type: PrivateKeyEntry"), "{text}");
    assert!(text.contains("Certificate chain length: 1"), "{text}");
    assert!(
        text.contains("Alias name: ca") && text.contains("trustedCertEntry"),
        "{text}"
    );
    write(
        dir.path(),
        "truststore.jks",
        material.jks_truststore(PASSWORD, 1_700_000_000_000).unwrap(),
    );
    let text = keytool_list(dir.path(), "truststore.jks", "JKS", PASSWORD).unwrap();
    assert_eq!(text.matches("trustedCertEntry").count(), 1, "{text}");

    // Java reads RC2 no more by default; the 3DES and AES profiles it does, with an ASCII
    // password only ("Password is not ASCII").
    for profile in [Profile::LegacyDes, Profile::Modern2023] {
        let protection = Protection {
            password: "changeit",
            profile,
        };
        write(
            dir.path(),
            "keystore.p12",
            material.pkcs12_keystore("certificate", &protection).unwrap(),
        );
        let text = keytool_list(dir.path(), "keystore.p12", "PKCS12", "changeit").unwrap();
        assert!(text.contains("Alias name: certificate"), "{profile:?}: {text}");
        assert!(
            text.contains("Entry type: PrivateKeyEntry"),
            "{profile:?}: {text}"
        );
        assert!(
            text.contains("Certificate chain length: 2"),
            "{profile:?}: {text}"
        );
        write(
            dir.path(),
            "truststore.p12",
            material.pkcs12_truststore(&protection).unwrap(),
        );
        let text = keytool_list(dir.path(), "truststore.p12", "PKCS12", "changeit").unwrap();
        assert!(
            text.contains("Alias name: ca") && text.contains("trustedCertEntry"),
            "{profile:?}: {text}"
        );
    }
}

#[test]
fn a_workload_handshakes_with_what_it_reads_from_the_keystore_and_truststore() {
    use crate::pki::tests::mtls::{Mounted, client, handshake, server};
    let f = fixture(KeyAlgorithm::Ecdsa, 256);
    let material = f.material();
    let pem = |tag: &str, der: &[u8]| pem::encode(&pem::Pem::new(tag, der.to_vec()));
    for profile in PROFILES {
        let keystore = pkcs12::read(
            &material
                .pkcs12_keystore("certificate", &protection(profile))
                .unwrap(),
            Some(PASSWORD),
        )
        .unwrap();
        let truststore = pkcs12::read(
            &material.pkcs12_truststore(&protection(profile)).unwrap(),
            Some(PASSWORD),
        )
        .unwrap();
        let leaf = keystore
            .certificates
            .iter()
            .find(|c| c.key_id == keystore.keys[0].key_id)
            .unwrap();
        let mounted = Mounted {
            tls_crt: pem("CERTIFICATE", &leaf.der),
            tls_key: pem("PRIVATE KEY", &keystore.keys[0].pkcs8),
            ca_crt: truststore
                .certificates
                .iter()
                .map(|c| pem("CERTIFICATE", &c.der))
                .collect(),
        };
        let (mut server, mut client) = (server(&mounted), client(&mounted, "java-app.sandbox.svc"));
        handshake(&mut client, &mut server).unwrap_or_else(|e| panic!("{profile:?}: {e:?}"));
    }
}
