//! `spec.keystores` on a real API server: the CRD's rules accept cert-manager's fields, the
//! stores land in the Secret and open with their password (openssl, keytool), a new password
//! rewrites them without a new certificate, and a missing password Secret is reported.

use std::time::Duration;

use certkeeper::keystore;
use serde_json::json;

use crate::support::{TestEnv, certificate, ready_condition, revision_of, selfsigned_issuer};

fn password_secret(password: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "java-keystore"},
        "stringData": {"password": password},
    })
}

fn store(secret: &k8s_openapi::api::core::v1::Secret, key: &str) -> Option<Vec<u8>> {
    secret.data.as_ref()?.get(key).map(|v| v.0.clone())
}

#[tokio::test]
async fn keystores_are_written_opened_and_rewritten_for_a_new_password() {
    let Some(env) = TestEnv::start("keystores").await else {
        return;
    };
    env.apply(selfsigned_issuer("selfsigned")).await;
    env.apply(password_secret("first-pass")).await;
    env.apply(certificate(
        &env,
        "java",
        "selfsigned",
        json!({
            // Java refuses a certificate whose issuer DN is empty: a self-signed one needs a name.
            "commonName": "java",
            "keystores": {
                "pkcs12": {
                    "create": true,
                    "profile": "Modern2023",
                    "passwordSecretRef": {"name": "java-keystore", "key": "password"},
                },
                "jks": {"create": true, "password": "jks-pass", "alias": "java"},
            },
        }),
    ))
    .await;
    let ready = env.wait_ready("java").await;
    assert_eq!(revision_of(&ready), Some(1));
    let secret = env.secrets().get("java-tls").await.expect("Secret java-tls");
    for key in ["keystore.p12", "truststore.p12", "keystore.jks", "truststore.jks"] {
        assert!(store(&secret, key).is_some(), "Secret java-tls has no {key}");
    }
    let p12 = store(&secret, "keystore.p12").unwrap();
    let contents = keystore::pkcs12::read(&p12, Some("first-pass")).expect("keystore.p12 opens");
    assert_eq!(contents.keys.len(), 1);
    // openssl reads it too.
    let path = env.work_dir.join("keystore.p12");
    std::fs::write(&path, &p12).unwrap();
    let output = std::process::Command::new("openssl")
        .args([
            "pkcs12",
            "-in",
            "keystore.p12",
            "-passin",
            "pass:first-pass",
            "-nokeys",
        ])
        .current_dir(&env.work_dir)
        .output()
        .expect("openssl runs");
    assert!(
        output.status.success(),
        "openssl pkcs12: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // keytool, where a JDK is installed.
    std::fs::write(
        env.work_dir.join("keystore.jks"),
        store(&secret, "keystore.jks").unwrap(),
    )
    .unwrap();
    if let Ok(output) = std::process::Command::new("keytool")
        .args([
            "-list",
            "-storetype",
            "JKS",
            "-keystore",
            "keystore.jks",
            "-storepass",
            "jks-pass",
        ])
        .current_dir(&env.work_dir)
        .output()
    {
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && text.contains("java, "),
            "keytool -list: {text}"
        );
    }
    let tls_crt = store(&secret, "tls.crt");

    // A new password: the password Secret's watch wakes the Certificate; the certificate stays.
    env.apply(password_secret("second-pass")).await;
    env.eventually(
        "keystore.p12 under the new password",
        Duration::from_secs(60),
        async || {
            let secret = env
                .secrets()
                .get("java-tls")
                .await
                .map_err(|e| format!("get: {e}"))?;
            let p12 = store(&secret, "keystore.p12").ok_or("no keystore.p12")?;
            keystore::pkcs12::read(&p12, Some("second-pass"))
                .map(|_| ())
                .map_err(|e| format!("keystore.p12: {e}"))
        },
    )
    .await;
    let secret = env.secrets().get("java-tls").await.expect("Secret java-tls");
    assert_eq!(
        store(&secret, "tls.crt"),
        tls_crt,
        "no new certificate for a new password"
    );
    let cert = env.certificates().get("java").await.expect("Certificate java");
    assert_eq!(revision_of(&cert), Some(1));

    // A Certificate whose password Secret does not exist: reported, nothing written.
    env.apply(certificate(
        &env,
        "orphan",
        "selfsigned",
        json!({
            "keystores": {"pkcs12": {
                "create": true,
                "passwordSecretRef": {"name": "no-such-secret", "key": "password"},
            }},
        }),
    ))
    .await;
    env.wait_for_certificate(
        "orphan",
        "Ready=False, KeystorePasswordUnavailable",
        Duration::from_secs(30),
        |cert| {
            let ready = ready_condition(cert).ok_or("no Ready condition")?;
            match (ready.status.as_str(), ready.reason.as_str()) {
                ("False", "KeystorePasswordUnavailable") => Ok(()),
                other => Err(format!("Ready {other:?}")),
            }
        },
    )
    .await;
    env.wait_for_event("orphan", "Warning", "KeystorePasswordUnavailable")
        .await;
    assert!(env.secrets().get_opt("orphan-tls").await.unwrap().is_none());
}
