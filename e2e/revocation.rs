//! Revocation as the README tells users to do it: `kubectl annotate` a Certificate, and its
//! certificate is recorded as revoked, listed in the issuer's CRL ConfigMap and served by the
//! PKI endpoint, and the Certificate re-issued with a new key; `openssl verify -crl_check`
//! refuses the old certificate and accepts the new one.

use std::process::Command;
use std::time::Duration;

use certkeeper::api::CertificateRevocation;
use certkeeper::revocation::{PublishedCrl, REVOCATION_REASON, REVOKE_REQUESTED_AT};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use serde_json::json;

use crate::support::{TestEnv, certificate, revision_of, selfsigned_issuer};

/// The CRL in ConfigMap `name`, once it exists and reads.
async fn stored_crl(env: &TestEnv, name: &str) -> Result<(PublishedCrl, Vec<u8>, String), String> {
    let configmaps: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
    let cm = configmaps
        .get_opt(name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no ConfigMap {name} yet"))?;
    let der = cm
        .binary_data
        .as_ref()
        .and_then(|d| d.get("ca.crl"))
        .map(|b| b.0.clone())
        .ok_or("no ca.crl")?;
    let pem = cm
        .data
        .as_ref()
        .and_then(|d| d.get("ca.crl.pem"))
        .cloned()
        .ok_or("no ca.crl.pem")?;
    let crl = PublishedCrl::from_der(&der).ok_or("ca.crl does not parse")?;
    Ok((crl, der, pem))
}

#[tokio::test]
async fn revoking_by_annotation_lists_the_serial_in_the_crl_and_reissues_with_a_new_key() {
    let Some(env) = TestEnv::start("revocation").await else {
        return;
    };
    // A CA Issuer: a self-signed root issued by certkeeper itself.
    env.apply(selfsigned_issuer("selfsigned")).await;
    env.apply(certificate(
        &env,
        "root",
        "selfsigned",
        json!({ "secretName": "root-ca", "isCA": true, "commonName": "e2e root", "duration": "2160h" }),
    ))
    .await;
    env.wait_ready("root").await;
    env.apply(json!({
        "apiVersion": "certkeeper.io/v1",
        "kind": "Issuer",
        "metadata": { "name": "ca" },
        "spec": { "ca": { "secretName": "root-ca" } },
    }))
    .await;
    env.wait_issuer_ready("ca").await;
    env.apply(certificate(&env, "web", "ca", json!({ "duration": "24h" })))
        .await;
    let first = env.wait_ready("web").await;
    let old_serial = first
        .status
        .as_ref()
        .and_then(|s| s.serial_number.clone())
        .expect("status.serialNumber");
    let old = env.tls_secret("web-tls").await;
    // The issuer publishes an empty CRL before anything is revoked.
    env.eventually("the CRL ConfigMap ca-crl", Duration::from_secs(60), async || {
        stored_crl(&env, "ca-crl").await
    })
    .await;

    // As the README says: one kubectl annotate, after the second of issuance has passed.
    let not_before = first
        .status
        .as_ref()
        .and_then(|s| s.not_before.clone())
        .expect("notBefore")
        .0;
    while Timestamp::now().as_second() <= not_before.as_second() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let requested_at = Timestamp::from_second(Timestamp::now().as_second()).expect("a whole second");
    env.kubectl(&[
        "annotate",
        "certificate",
        "web",
        "--overwrite",
        &format!("{REVOKE_REQUESTED_AT}={requested_at}"),
        &format!("{REVOCATION_REASON}=keyCompromise"),
    ]);

    let second = env.wait_for_revision("web", 2, Duration::from_secs(60)).await;
    let new_serial = second
        .status
        .as_ref()
        .and_then(|s| s.serial_number.clone())
        .expect("status.serialNumber");
    assert_ne!(new_serial, old_serial);
    let new = env.tls_secret("web-tls").await;
    assert_ne!(new.key, old.key, "a new key");
    env.wait_for_event("web", "Normal", "Revoked").await;

    // The durable record, named after issuer and serial, owned by nothing.
    let records: Api<CertificateRevocation> = Api::namespaced(env.client.clone(), &env.namespace);
    let record = records
        .get(&format!("ca-{old_serial}"))
        .await
        .expect("the CertificateRevocation of the old serial");
    assert!(record.metadata.owner_references.is_none());
    assert_eq!(record.spec.revoked_at.map(|t| t.0), Some(requested_at));

    // The CRL lists it, and the PKI endpoint serves that CRL.
    let (crl, der, pem) = env
        .eventually(
            "the CRL to list the revoked serial",
            Duration::from_secs(60),
            async || {
                let (crl, der, pem) = stored_crl(&env, "ca-crl").await?;
                match crl.revoked.iter().any(|r| r.serial_hex == old_serial) {
                    true => Ok((crl, der, pem)),
                    false => Err(format!("CRL {} lists {:?}", crl.number, crl.revoked)),
                }
            },
        )
        .await;
    assert!(!crl.revoked.iter().any(|r| r.serial_hex == new_serial));
    let path = format!("/crl/{}/ca.crl", env.namespace);
    env.eventually(
        "the PKI endpoint to serve the CRL",
        Duration::from_secs(30),
        async || match env.controller_pki(&path).await {
            (200, body) if body == der => Ok(()),
            (code, body) => Err(format!("GET {path}: {code}, {} bytes", body.len())),
        },
    )
    .await;

    // openssl refuses the old certificate and accepts the new one.
    let dir = env.work_dir.join("revocation");
    std::fs::create_dir_all(&dir).expect("create the openssl directory");
    std::fs::write(dir.join("ca.crt"), &old.ca).expect("write ca.crt");
    std::fs::write(dir.join("crl.pem"), pem).expect("write crl.pem");
    std::fs::write(dir.join("old.crt"), old.leaf_pem()).expect("write old.crt");
    std::fs::write(dir.join("new.crt"), new.leaf_pem()).expect("write new.crt");
    let verify = |leaf: &str| {
        let output = Command::new("openssl")
            .args([
                "verify",
                "-crl_check",
                "-CAfile",
                "ca.crt",
                "-CRLfile",
                "crl.pem",
                leaf,
            ])
            .current_dir(&dir)
            .output()
            .expect("run `openssl`");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    };
    let (ok, out) = verify("old.crt");
    assert!(!ok && out.contains("certificate revoked"), "{out}");
    let (ok, out) = verify("new.crt");
    assert!(ok, "{out}");

    // The annotation left in place revokes nothing more.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let later = env.certificates().get("web").await.expect("get Certificate web");
    assert_eq!(revision_of(&later), Some(2));
}
