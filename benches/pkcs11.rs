//! Signing with a CA key on a PKCS#11 token (SoftHSM2) beside the same algorithm in process
//! (aws-lc-rs), per algorithm, and a leaf issued by an HSM-held CA beside a Secret-held one.
//! The HSM path includes what certkeeper adds: the digest, the pool's session thread, the DER
//! encoding of ECDSA and the verification of every signature.
//!
//! Needs SoftHSM2 (`apt-get install softhsm2`); the bench makes its own token directory and runs
//! itself again with `SOFTHSM2_CONF` pointing at it (SoftHSM reads it once per process).
//! `cargo bench --bench pkcs11`.

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use certkeeper::pkcs11::generate::{TokenKeyAlgorithm, generate_key_pair};
use certkeeper::pkcs11::{HsmKey, PinRef, Pkcs11Registry, Pkcs11Settings, Pkcs11Uri};
use certkeeper::pki::{
    CaKey, CaKeyPair, CertificateTemplate, IssuerUrls, KeyAlgorithm, KeyEncoding, KeySpec, PrivateKey,
    Signer, Usage, sign_self_signed, sign_with_ca,
};
use criterion::Criterion;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "1234";

/// In the parent: a token directory and a run of this bench with it. Returns false there.
fn in_child_with_token() -> bool {
    if std::env::var_os("SOFTHSM2_CONF").is_some() && std::env::var_os("CERTKEEPER_BENCH_CHILD").is_some() {
        return true;
    }
    if !Path::new(MODULE).exists() {
        println!("pkcs11 bench: skipped, SoftHSM2 is not installed ({MODULE})");
        std::process::exit(0);
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let tokens = dir.path().join("tokens");
    std::fs::create_dir_all(&tokens).expect("the token directory");
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            tokens.display()
        ),
    )
    .expect("softhsm2.conf");
    let init = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "bench",
            "--pin",
            PIN,
            "--so-pin",
            "5678",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util");
    assert!(init.status.success(), "{}", String::from_utf8_lossy(&init.stderr));
    let status = Command::new(std::env::current_exe().expect("this bench"))
        .args(std::env::args().skip(1))
        .env("SOFTHSM2_CONF", &conf)
        .env("CERTKEEPER_BENCH_CHILD", "1")
        .status()
        .expect("run the bench with the token");
    std::process::exit(status.code().unwrap_or(1));
}

fn template(cn: &str, ca: bool) -> CertificateTemplate {
    let now = jiff::Timestamp::now();
    CertificateTemplate {
        common_name: Some(cn.into()),
        dns_names: if ca { vec![] } else { vec![cn.into()] },
        not_before: now,
        not_after: now + jiff::SignedDuration::from_hours(if ca { 24 * 365 } else { 24 }),
        is_ca: ca,
        usages: vec![Usage::DigitalSignature],
        ..Default::default()
    }
}

fn main() {
    if !in_child_with_token() {
        return;
    }
    let registry = Arc::new(Pkcs11Registry::new(Pkcs11Settings {
        modules: vec![("softhsm".into(), MODULE.into())],
        ..Pkcs11Settings::default()
    }));
    let mut criterion = Criterion::default().configure_from_args();
    let message = vec![0x5a; 400];
    let algorithms = [
        (
            "ecdsa-p256",
            TokenKeyAlgorithm::EcdsaP256,
            KeySpec {
                algorithm: KeyAlgorithm::Ecdsa,
                size: 256,
            },
        ),
        (
            "ecdsa-p384",
            TokenKeyAlgorithm::EcdsaP384,
            KeySpec {
                algorithm: KeyAlgorithm::Ecdsa,
                size: 384,
            },
        ),
        (
            "rsa-2048",
            TokenKeyAlgorithm::Rsa2048,
            KeySpec {
                algorithm: KeyAlgorithm::Rsa,
                size: 2048,
            },
        ),
        (
            "ed25519",
            TokenKeyAlgorithm::Ed25519,
            KeySpec {
                algorithm: KeyAlgorithm::Ed25519,
                size: 0,
            },
        ),
    ];
    let mut group = criterion.benchmark_group("sign");
    for (name, on_token, in_process) in algorithms {
        let uri: Pkcs11Uri = format!("pkcs11:token=bench;object={name}").parse().expect("URI");
        let module = registry.module_for(&uri).expect("module");
        let spki = generate_key_pair(&module, &uri, PIN, on_token).expect("key on the token");
        let hsm = registry.open_key(&uri, PIN, &spki).expect("key");
        let local = PrivateKey::generate(in_process).expect("key in process");
        group.bench_function(format!("aws-lc/{name}"), |b| {
            b.iter(|| black_box(local.sign(black_box(&message)).expect("sign")))
        });
        group.bench_function(format!("softhsm/{name}"), |b| {
            b.iter(|| black_box(hsm.sign(black_box(&message)).expect("sign")))
        });
    }
    group.finish();

    // A leaf issued by an ECDSA P-256 root: key in its Secret vs key on the token.
    let uri: Pkcs11Uri = "pkcs11:token=bench;object=root".parse().expect("URI");
    let spki = generate_key_pair(
        &registry.module_for(&uri).expect("module"),
        &uri,
        PIN,
        TokenKeyAlgorithm::EcdsaP256,
    )
    .expect("root key on the token");
    let key = registry.open_key(&uri, PIN, &spki).expect("root key");
    let root = sign_self_signed(&template("Bench HSM Root", true), &key).expect("root");
    let on_token = CaKeyPair::with_hsm_key(
        root.certificate_pem.as_bytes(),
        None,
        IssuerUrls::default(),
        |ca| {
            HsmKey::new(
                uri.clone(),
                PinRef {
                    namespace: "bench".into(),
                    name: "pin".into(),
                    key: "pin".into(),
                },
                &ca.public_key_der,
            )
        },
    )
    .expect("HSM CA");
    let CaKey::Hsm(bound) = &on_token.key else {
        unreachable!()
    };
    bound.bound(Ok(Arc::new(key))).expect("bound");
    let local_key = PrivateKey::generate(KeySpec {
        algorithm: KeyAlgorithm::Ecdsa,
        size: 256,
    })
    .expect("key");
    let local_root = sign_self_signed(&template("Bench Root", true), &local_key).expect("root");
    let in_secret = CaKeyPair::from_pem(
        local_root.certificate_pem.as_bytes(),
        local_key.to_pem(KeyEncoding::Pkcs8).expect("pem").as_bytes(),
        None,
        IssuerUrls::default(),
    )
    .expect("Secret CA");
    let subject = PrivateKey::generate(KeySpec {
        algorithm: KeyAlgorithm::Ecdsa,
        size: 256,
    })
    .expect("leaf key");
    let leaf = template("api.shop.svc", false);
    let mut group = criterion.benchmark_group("issue_leaf");
    group.bench_function("ca-key-in-secret", |b| {
        b.iter(|| black_box(sign_with_ca(&leaf, &subject, &in_secret).expect("leaf")))
    });
    group.bench_function("ca-key-on-softhsm", |b| {
        b.iter(|| black_box(sign_with_ca(&leaf, &subject, &on_token).expect("leaf")))
    });
    group.finish();
    criterion.final_summary();
}
