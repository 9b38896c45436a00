//! `ca init` and `ca csr` on a real SoftHSM2 token (each test in a process and token directory
//! of its own, `testing::softhsm`), judged by openssl; and the refusals that come before any
//! token is touched.

use std::path::{Path, PathBuf};

use clap::Parser;
use cryptoki::object::{Attribute, AttributeType, ObjectClass};
use cryptoki::types::AuthPin;

use crate::cli::ca::{CaArgs, Written};
use crate::cli::{Cli, CliError, Command};
use crate::pkcs11::generate::token_of;
use crate::pkcs11::module::Module;
use crate::pkcs11::pool::{open_and_log_in, pin_hash};
use crate::pki::tests::openssl::{openssl, openssl_available};
use crate::pki::{KeyAlgorithm, KeyEncoding, KeySpec, PrivateKey, parse_certificate_chain};
use crate::softhsm_token;
use crate::testing::softhsm::{MODULE, PIN};

const ALGORITHMS: [&str; 6] = [
    "ecdsa-p256",
    "ecdsa-p384",
    "rsa-2048",
    "rsa-3072",
    "rsa-4096",
    "ed25519",
];

fn parse(args: &[&str]) -> Result<CaArgs, clap::Error> {
    let argv = ["certkeeper", "ca"].iter().chain(args);
    match Cli::try_parse_from(argv)?.command {
        Command::Ca(args) => Ok(args),
        other => panic!("not a ca command: {other:?}"),
    }
}

/// `certkeeper ca ARGS...`, as `dispatch` runs it.
fn ca(args: &[&str]) -> Result<Written, CliError> {
    let args = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    crate::cli::ca::run(&args, jiff::Timestamp::now())
}

fn refused(args: &[&str]) -> String {
    match ca(args) {
        Ok(written) => panic!("{args:?} was accepted: {}", written.line),
        Err(e) => {
            let message = e.to_string();
            assert!(!message.contains('\n'), "not one line: {message:?}");
            message
        }
    }
}

/// A directory with the PIN file, written as `echo` writes it.
fn workspace() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let pin = dir.path().join("pin");
    std::fs::write(&pin, format!("{PIN}\n")).unwrap();
    (dir, pin)
}

fn key_uri(label: &str) -> String {
    format!("pkcs11:token=ca;object={label}")
}

/// `--key`, `--module`, `--pin-file`, `--common-name` for the key `label`.
fn key_args<'a>(uri: &'a str, pin: &'a Path, common_name: &'a str) -> Vec<&'a str> {
    vec![
        "--key",
        uri,
        "--module",
        MODULE,
        "--pin-file",
        pin.to_str().unwrap(),
        "--common-name",
        common_name,
    ]
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// CKA_SENSITIVE, CKA_EXTRACTABLE and CKA_NEVER_EXTRACTABLE of the private key `label`, read
/// on a session of our own.
fn private_key_flags(label: &str) -> (bool, bool, bool) {
    let module = Module::new("softhsm", MODULE);
    let gate = module.enter().unwrap();
    let uri = key_uri(label).parse().unwrap();
    let (session, _login) = open_and_log_in(
        &module,
        &gate,
        &token_of(&uri),
        &AuthPin::from(PIN.to_owned()),
        pin_hash(PIN.as_bytes()),
    )
    .unwrap();
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(label.as_bytes().to_vec()),
        ])
        .unwrap();
    let [private] = found.as_slice() else {
        panic!("{} private keys labelled {label}", found.len())
    };
    let mut flags = (false, true, false);
    for attribute in session
        .get_attributes(
            *private,
            &[
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::NeverExtractable,
            ],
        )
        .unwrap()
    {
        match attribute {
            Attribute::Sensitive(b) => flags.0 = b,
            Attribute::Extractable(b) => flags.1 = b,
            Attribute::NeverExtractable(b) => flags.2 = b,
            _ => {}
        }
    }
    flags
}

#[test]
fn ca_init_self_signed_makes_a_root_openssl_accepts_with_every_algorithm() {
    let _token = softhsm_token!(ca_init_self_signed_makes_a_root_openssl_accepts_with_every_algorithm);
    let (dir, pin) = workspace();
    for algorithm in ALGORITHMS {
        let label = format!("root-{algorithm}");
        let uri = key_uri(&label);
        let out = dir.path().join(format!("{algorithm}.crt"));
        let cn = format!("HSM Root {algorithm}");
        let mut args = vec!["init"];
        args.extend(key_args(&uri, &pin, &cn));
        args.extend([
            "--algorithm",
            algorithm,
            "--self-signed",
            "--duration",
            "8760h",
            "--out",
            path(&out),
        ]);
        let written = ca(&args).unwrap_or_else(|e| panic!("{algorithm}: {e}"));
        assert!(
            written
                .line
                .contains(&format!("{label:?} ({algorithm}) made on the token"))
                && written.line.contains(path(&out)),
            "{}",
            written.line
        );
        let pem = std::fs::read_to_string(&out).unwrap();
        assert_eq!(pem, written.pem);
        let certificate = &parse_certificate_chain(pem.as_bytes()).unwrap()[0];
        assert!(certificate.self_signed, "{algorithm}");
        let lifetime = certificate.not_after.duration_since(certificate.not_before);
        assert_eq!(lifetime, jiff::SignedDuration::from_hours(8760), "{algorithm}");

        // The key is the token's alone.
        assert_eq!(private_key_flags(&label), (true, false, true), "{algorithm}");

        if !openssl_available("ca_init_self_signed_makes_a_root_openssl_accepts_with_every_algorithm") {
            continue;
        }
        let file = format!("{algorithm}.crt");
        let (ok, text) = openssl(dir.path(), &["x509", "-in", &file, "-noout", "-text"]).unwrap();
        assert!(ok, "{algorithm}: {text}");
        for expected in [
            "CA:TRUE",
            "Digital Signature, Certificate Sign, CRL Sign",
            "X509v3 Subject Key Identifier",
            "X509v3 Authority Key Identifier",
            &format!("Subject: CN = HSM Root {algorithm}"),
        ] {
            assert!(text.contains(expected), "{algorithm}: no {expected:?} in\n{text}");
        }
        let (ok, text) = openssl(dir.path(), &["verify", "-CAfile", &file, &file]).unwrap();
        assert!(ok && text.contains(": OK"), "{algorithm}: {text}");
    }
}

#[test]
fn ca_init_refuses_a_label_the_token_already_holds() {
    let _token = softhsm_token!(ca_init_refuses_a_label_the_token_already_holds);
    let (dir, pin) = workspace();
    let uri = key_uri("root-2026");
    let out = dir.path().join("root.crt");
    let run = |extra: &[&str]| {
        let mut args = vec!["init"];
        args.extend(key_args(&uri, &pin, "HSM Root"));
        args.extend(["--out", path(&out)]);
        args.extend(extra);
        ca(&args)
    };
    // A duration it cannot use is refused before the key is made: the label stays free.
    let refusal = match run(&["--self-signed", "--duration", "30m"]) {
        Err(e) => e.to_string(),
        Ok(w) => panic!("accepted: {}", w.line),
    };
    assert!(refusal.contains("--duration"), "{refusal}");
    run(&["--self-signed"]).unwrap();
    let first = std::fs::read_to_string(&out).unwrap();

    for again in [&["--self-signed"][..], &["--csr"][..]] {
        let message = match run(again) {
            Err(e) => e.to_string(),
            Ok(w) => panic!("the label was made twice: {}", w.line),
        };
        assert!(!message.contains('\n'), "{message:?}");
        assert!(
            message.contains("already holds an object labelled \"root-2026\""),
            "{message}"
        );
    }
    // Nothing was overwritten.
    assert_eq!(std::fs::read_to_string(&out).unwrap(), first);
}

#[test]
fn ca_init_csr_asks_an_offline_root_for_a_ca_certificate() {
    let _token = softhsm_token!(ca_init_csr_asks_an_offline_root_for_a_ca_certificate);
    let (dir, pin) = workspace();
    let uri = key_uri("issuing-2026");
    let out = dir.path().join("issuing.csr");
    let mut args = vec!["init"];
    args.extend(key_args(&uri, &pin, "HSM Issuing CA"));
    args.extend(["--algorithm", "ecdsa-p384", "--csr", "--out", path(&out)]);
    let written = ca(&args).unwrap();
    assert!(
        written.line.contains("CSR for \"HSM Issuing CA\""),
        "{}",
        written.line
    );
    assert!(written.pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
    assert_eq!(private_key_flags("issuing-2026"), (true, false, true));
    if !openssl_available("ca_init_csr_asks_an_offline_root_for_a_ca_certificate") {
        return;
    }
    let (ok, text) = openssl(
        dir.path(),
        &["req", "-in", "issuing.csr", "-verify", "-noout", "-text"],
    )
    .unwrap();
    assert!(ok, "{text}");
    for expected in [
        "CA:TRUE",
        "Digital Signature, Certificate Sign, CRL Sign",
        "Subject: CN = HSM Issuing CA",
        "NIST CURVE: P-384",
    ] {
        assert!(text.contains(expected), "no {expected:?} in\n{text}");
    }
}

#[test]
fn ca_csr_writes_a_request_for_a_key_already_on_the_token() {
    let token = softhsm_token!(ca_csr_writes_a_request_for_a_key_already_on_the_token);
    let (dir, pin) = workspace();
    // A key `ca init` made, with its root certificate.
    let uri = key_uri("root-2026");
    let root = dir.path().join("root.crt");
    let mut args = vec!["init"];
    args.extend(key_args(&uri, &pin, "HSM Root"));
    args.extend(["--algorithm", "rsa-2048", "--self-signed", "--out", path(&root)]);
    ca(&args).unwrap();
    // And keys moved from Secrets onto the token.
    let imported = [
        ("moved-ec", "0a", KeyAlgorithm::Ecdsa, 256),
        ("moved-rsa", "0b", KeyAlgorithm::Rsa, 2048),
    ]
    .map(|(label, id, algorithm, size)| {
        let key = PrivateKey::generate(KeySpec { algorithm, size }).unwrap();
        token.import(&key.to_pem(KeyEncoding::Pkcs8).unwrap(), label, id);
        (label, key.public_key_der())
    });

    let root_spki = parse_certificate_chain(std::fs::read(&root).unwrap().as_slice()).unwrap()[0]
        .public_key_der
        .clone();
    for (label, spki) in [("root-2026", root_spki)].into_iter().chain(imported) {
        let uri = key_uri(label);
        let file = format!("{label}.csr");
        let out = dir.path().join(&file);
        let mut args = vec!["csr"];
        args.extend(key_args(&uri, &pin, "HSM Issuing CA"));
        args.extend(["--out", path(&out)]);
        let written = ca(&args).unwrap_or_else(|e| panic!("{label}: {e}"));
        assert!(written.line.contains(&uri), "{}", written.line);
        let pem = pem::parse(std::fs::read(&out).unwrap()).unwrap();
        let request = <x509_cert::request::CertReq as der::Decode>::from_der(pem.contents()).unwrap();
        let requested = der::Encode::to_der(&request.info.public_key).unwrap();
        assert!(crate::pki::same_public_key(&requested, &spki), "{label}");
        if openssl_available("ca_csr_writes_a_request_for_a_key_already_on_the_token") {
            let (ok, text) =
                openssl(dir.path(), &["req", "-in", &file, "-verify", "-noout", "-text"]).unwrap();
            assert!(ok && text.contains("CA:TRUE"), "{label}: {text}");
        }
    }

    // A key that is not there.
    let mut args = vec!["csr"];
    let missing = key_uri("root-2027");
    args.extend(key_args(&missing, &pin, "HSM Issuing CA"));
    let message = refused(&args);
    assert!(
        message.contains("no private key object=\"root-2027\""),
        "{message}"
    );
}

#[test]
fn ca_commands_refuse_a_wrong_pin_in_one_line_without_showing_it() {
    let _token = softhsm_token!(ca_commands_refuse_a_wrong_pin_in_one_line_without_showing_it);
    let (dir, _) = workspace();
    let wrong = dir.path().join("wrong-pin");
    std::fs::write(&wrong, "98765\n").unwrap();
    let uri = key_uri("root-2026");
    let mut args = vec!["init"];
    args.extend(key_args(&uri, &wrong, "HSM Root"));
    args.push("--self-signed");
    let message = refused(&args);
    assert!(message.contains("refused the PIN"), "{message}");
    assert!(
        message.starts_with("pkcs11:token=ca;object=root-2026: "),
        "{message}"
    );
    assert!(!message.contains("98765"), "{message}");
}

#[test]
fn a_key_uri_carrying_a_pin_is_refused_without_showing_it() {
    let (_dir, pin) = workspace();
    for uri in [
        "pkcs11:token=ca;object=root?pin-value=424242",
        "pkcs11:token=ca;object=root?pin-source=file:/424242",
    ] {
        let mut args = vec!["init"];
        args.extend(key_args(uri, &pin, "HSM Root"));
        args.push("--csr");
        let message = refused(&args);
        assert!(message.contains("never from the URI"), "{message}");
        assert!(!message.contains("424242"), "{message}");
    }
}

#[test]
fn ca_init_wants_exactly_one_of_self_signed_and_csr() {
    let base = [
        "init",
        "--key",
        "pkcs11:token=ca;object=root",
        "--pin-file",
        "pin",
        "--common-name",
        "Root",
    ];
    let with = |extra: &[&'static str]| {
        let mut args = base.to_vec();
        args.extend(extra);
        parse(&args)
    };
    for extra in [
        &[][..],
        &["--self-signed", "--csr"][..],
        &["--csr", "--duration", "24h"][..],
        &["--self-signed", "--algorithm", "dsa-1024"][..],
    ] {
        assert!(with(extra).is_err(), "{extra:?} was accepted");
    }
    let parsed = with(&["--self-signed"]).unwrap();
    let crate::cli::ca::CaCommand::Init(init) = parsed.what else {
        panic!("not init")
    };
    assert_eq!(
        init.algorithm,
        crate::pkcs11::generate::TokenKeyAlgorithm::EcdsaP256
    );
    assert!(with(&["--csr", "--algorithm", "ed25519"]).is_ok());
    assert!(parse(&["csr", "--key", "pkcs11:token=ca;object=k", "--pin-file", "p"]).is_err());
}

#[test]
fn ca_commands_need_to_know_the_module() {
    let (_dir, pin) = workspace();
    let pin = path(&pin);
    let message = refused(&[
        "csr",
        "--key",
        "pkcs11:token=ca;object=root",
        "--pin-file",
        pin,
        "--common-name",
        "Root",
    ]);
    assert!(message.contains("--module PATH"), "{message}");
    let message = refused(&[
        "csr",
        "--key",
        "pkcs11:token=ca;object=root?module-path=/opt/other/p11.so",
        "--module",
        MODULE,
        "--pin-file",
        pin,
        "--common-name",
        "Root",
    ]);
    assert!(
        message.contains("module-path=/opt/other/p11.so is not --module"),
        "{message}"
    );
    // A key named by neither label nor id.
    let message = refused(&[
        "init",
        "--key",
        "pkcs11:token=ca",
        "--module",
        MODULE,
        "--pin-file",
        pin,
        "--common-name",
        "Root",
        "--csr",
    ]);
    assert!(message.contains("object="), "{message}");
}
