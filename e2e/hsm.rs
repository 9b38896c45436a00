//! CA keys in an HSM on a real cluster, as the README's walkthrough does it on SoftHSM2: an
//! empty token, `certkeeper ca init` making the key on it and a self-signed root, the CA
//! Secret holding only the certificate, the controller with `--pkcs11-module`, a leaf that
//! openssl verifies; then the offline-root path: `ca init --csr`, the CSR signed by an openssl
//! root outside the cluster, the chain loaded, a leaf verified up to that root.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::support::tls::openssl;
use crate::support::{Leftovers, TestEnv, certificate, enabled, random_suffix};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// A PIN no log line could hold by chance.
const PIN: &str = "e2e-pin-7361";

/// A token directory with one token labelled `ca`, its configuration and the PIN file.
fn softhsm(dir: &Path) -> (PathBuf, PathBuf) {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).expect("create the token directory");
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            tokens.display()
        ),
    )
    .expect("write softhsm2.conf");
    let out = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "ca",
            "--pin",
            PIN,
            "--so-pin",
            "5678",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("run softhsm2-util");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pin = dir.join("pin");
    std::fs::write(&pin, PIN).expect("write the PIN file");
    (conf, pin)
}

/// `certkeeper ARGS` with the token's configuration; its stdout.
fn certkeeper(conf: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_certkeeper"))
        .args(args)
        .env("SOFTHSM2_CONF", conf)
        .output()
        .expect("run certkeeper");
    assert!(
        out.status.success(),
        "certkeeper {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_cluster_issuer_with_its_key_on_softhsm_issues_leaves_openssl_verifies() {
    if !enabled() {
        println!("{}", crate::support::SKIP_MESSAGE);
        return;
    }
    if !Path::new(MODULE).exists() {
        println!("e2e hsm: skipped, SoftHSM2 is not installed here (apt-get install softhsm2)");
        return;
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("e2e")
        .join(format!("hsm-{}", random_suffix()));
    std::fs::create_dir_all(&dir).expect("create the work directory");
    let (conf, pin) = softhsm(&dir);
    let (conf_s, pin_s, dir_s) = (
        conf.to_str().unwrap(),
        pin.to_str().unwrap(),
        dir.to_str().unwrap(),
    );

    // The key made on the token, a self-signed root for it.
    let root_crt = dir.join("root.crt");
    certkeeper(
        &conf,
        &[
            "ca",
            "init",
            "--key",
            "pkcs11:token=ca;object=root-2026",
            "--module",
            MODULE,
            "--pin-file",
            pin_s,
            "--common-name",
            "e2e HSM Root",
            "--algorithm",
            "ecdsa-p256",
            "--self-signed",
            "--duration",
            "8760h",
            "--out",
            root_crt.to_str().unwrap(),
        ],
    );
    // The offline root's path: a CSR for an intermediate whose key is made on the token.
    let csr = dir.join("issuing.csr");
    certkeeper(
        &conf,
        &[
            "ca",
            "init",
            "--key",
            "pkcs11:token=ca;object=issuing-2026",
            "--module",
            MODULE,
            "--pin-file",
            pin_s,
            "--common-name",
            "e2e HSM Issuing CA",
            "--csr",
            "--out",
            csr.to_str().unwrap(),
        ],
    );
    openssl(&dir, &["req", "-in", "issuing.csr", "-verify", "-noout"]);
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "offline-root.key",
            "-out",
            "offline-root.crt",
            "-days",
            "30",
            "-subj",
            "/CN=e2e offline root",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "issuing.csr",
            "-CA",
            "offline-root.crt",
            "-CAkey",
            "offline-root.key",
            "-copy_extensions",
            "copyall",
            "-days",
            "20",
            "-out",
            "issuing.crt",
        ],
    );

    let Some(env) = TestEnv::start_with_env(
        "hsm",
        &["--pkcs11-module", &format!("softhsm={MODULE}")],
        &[("SOFTHSM2_CONF", conf_s)],
    )
    .await
    else {
        return;
    };
    let suffix = random_suffix();
    let (root_issuer, issuing_issuer) = (format!("hsm-root-{suffix}"), format!("hsm-issuing-{suffix}"));
    let _leftovers = Leftovers(vec![
        ("clusterissuer", root_issuer.clone()),
        ("clusterissuer", issuing_issuer.clone()),
    ]);
    // As the README: the CA Secrets hold certificates only, the PIN Secret sits beside them.
    let create = |args: &[&str]| {
        let mut all = vec!["create", "secret", "generic"];
        all.extend_from_slice(args);
        env.kubectl(&all);
    };
    create(&[
        "hsm-root-ca",
        "--type",
        "kubernetes.io/tls",
        &format!("--from-file=tls.crt={dir_s}/root.crt"),
        "--from-literal=tls.key=",
    ]);
    create(&[
        "hsm-issuing-ca",
        "--type",
        "kubernetes.io/tls",
        &format!("--from-file=tls.crt={dir_s}/issuing.crt"),
        &format!("--from-file=ca.crt={dir_s}/offline-root.crt"),
        "--from-literal=tls.key=",
    ]);
    create(&["hsm-pin", &format!("--from-file=pin={pin_s}")]);
    for (name, secret, object) in [
        (&root_issuer, "hsm-root-ca", "root-2026"),
        (&issuing_issuer, "hsm-issuing-ca", "issuing-2026"),
    ] {
        env.apply(json!({
            "apiVersion": "certkeeper.io/v1", "kind": "ClusterIssuer",
            "metadata": {"name": name},
            "spec": {"ca": {"secretName": secret, "pkcs11": {
                "uri": format!("pkcs11:token=ca;object={object}"),
                "pinSecretRef": {"name": "hsm-pin", "key": "pin"}
            }}}
        }))
        .await;
    }
    for (leaf, issuer) in [("web", &root_issuer), ("api", &issuing_issuer)] {
        let mut cert = certificate(&env, leaf, issuer, json!({}));
        cert["spec"]["issuerRef"]["kind"] = "ClusterIssuer".into();
        env.apply(cert).await;
    }
    env.wait_ready("web").await;
    env.wait_ready("api").await;

    let web = env.tls_secret("web-tls").await;
    std::fs::write(dir.join("web.crt"), web.leaf_pem()).expect("write web.crt");
    let out = openssl(&dir, &["verify", "-CAfile", "root.crt", "web.crt"]);
    assert!(out.contains("web.crt: OK"), "{out}");
    let api = env.tls_secret("api-tls").await;
    std::fs::write(dir.join("api.crt"), api.leaf_pem()).expect("write api.crt");
    let out = openssl(
        &dir,
        &[
            "verify",
            "-CAfile",
            "offline-root.crt",
            "-untrusted",
            "issuing.crt",
            "api.crt",
        ],
    );
    assert!(out.contains("api.crt: OK"), "{out}");
    // The controller's own log never shows the PIN.
    assert!(!env.controller_log_tail(5000).contains(PIN), "the PIN in the log");
}
