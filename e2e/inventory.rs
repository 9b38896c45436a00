//! The certificate inventory on a real cluster: a TLS Secret made by hand (certkeeper did not
//! issue it) that expires in 2 days is in the metrics, gets one ExpiringSoon Warning Event on
//! the Secret itself (not repeated by a restarted controller), and `certkeeper scan` lists it
//! beside a certkeeper-issued Secret.

use std::process::Command;
use std::time::Duration;

use base64::Engine;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::support::{EVENT_TIMEOUT, TestEnv, certificate, selfsigned_issuer};

/// A self-signed certificate for `cn`, valid from 28 days ago until 2 days from now, and its key.
fn hand_made(cn: &str) -> (String, String) {
    use certkeeper::pki::{
        CertificateTemplate, KeyAlgorithm, KeyEncoding, KeySpec, PrivateKey, sign_self_signed,
    };
    let key = PrivateKey::generate(KeySpec {
        algorithm: KeyAlgorithm::Ecdsa,
        size: 256,
    })
    .expect("an ECDSA key");
    let now = Timestamp::now();
    let template = CertificateTemplate {
        common_name: Some(cn.into()),
        dns_names: vec![cn.into()],
        not_before: now - SignedDuration::from_hours(24 * 28),
        not_after: now + SignedDuration::from_hours(48),
        ..Default::default()
    };
    let issued = sign_self_signed(&template, &key).expect("a self-signed certificate");
    (
        issued.chain_pem,
        key.to_pem(KeyEncoding::Pkcs8).expect("the key as PEM"),
    )
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn scan(env: &TestEnv) -> Vec<Value> {
    let output = Command::new(env!("CARGO_BIN_EXE_certkeeper"))
        .args([
            "scan",
            "-n",
            &env.namespace,
            "--expiring-within",
            "400d",
            "-o",
            "json",
        ])
        .output()
        .expect("run certkeeper scan");
    assert!(
        output.status.success(),
        "certkeeper scan failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("scan -o json is JSON")
}

#[tokio::test]
async fn a_hand_made_tls_secret_expiring_in_two_days_is_watched_warned_about_once_and_scanned() {
    let Some(mut env) = TestEnv::start("inventory").await else {
        return;
    };
    let (cert_pem, key_pem) = hand_made("legacy.example");
    env.apply(json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "legacy-tls"},
        "data": {"tls.crt": b64(&cert_pem), "tls.key": b64(&key_pem)}
    }))
    .await;
    env.apply(selfsigned_issuer("selfsigned")).await;
    env.apply(certificate(&env, "web", "selfsigned", json!({}))).await;
    env.wait_ready("web").await;

    // The metrics: the hand-made one (managed by nobody) and certkeeper's own.
    let namespace = env.namespace.clone();
    // Whether the scrape has the tls.crt series of Secret `name`, managed by `managed_by`.
    let found = |body: &str, name: &str, managed_by: &str| {
        let prefix = format!(
            r#"certkeeper_inventory_certificate_expiration_timestamp_seconds{{namespace="{namespace}",kind="Secret",name="{name}",key="tls.crt","#
        );
        let managed = format!(r#"managed_by="{managed_by}""#);
        body.lines()
            .any(|l| l.starts_with(&prefix) && l.contains(&managed))
    };
    env.eventually(
        "both Secrets in the inventory metrics",
        EVENT_TIMEOUT,
        async || {
            let (_, body) = env.controller_http("/metrics").await;
            match (
                found(&body, "legacy-tls", "none"),
                found(&body, "web-tls", "certkeeper"),
            ) {
                (true, true) => Ok(()),
                seen => Err(format!("legacy-tls, web-tls found: {seen:?}")),
            }
        },
    )
    .await;
    let (_, body) = env.controller_http("/metrics").await;
    let legacy = body
        .lines()
        .find(|l| {
            l.contains("name=\"legacy-tls\"") && l.starts_with("certkeeper_inventory_certificate_expiration")
        })
        .expect("the legacy-tls series");
    assert!(legacy.contains("subject_cn=\"legacy.example\""), "{legacy}");

    // One ExpiringSoon Warning on the Secret: 2 days left, under the 3-day threshold.
    let event = env
        .wait_for_event_regarding("Secret", "legacy-tls", "Warning", "ExpiringSoon")
        .await;
    let note = event.note.clone().unwrap_or_default();
    assert!(
        note.contains("less than 72h0m0s") && note.contains("legacy.example"),
        "{note}"
    );
    assert!(
        env.events_regarding("Secret", "web-tls").await.is_empty(),
        "certkeeper's own Secret is warned about on its Certificate, not by the inventory"
    );

    // A restarted controller reads the Secret again and does not warn a second time.
    env.restart_controller().await;
    env.eventually(
        "the Secret in the restarted controller's metrics",
        EVENT_TIMEOUT,
        async || {
            let (_, body) = env.controller_http("/metrics").await;
            match found(&body, "legacy-tls", "none") {
                true => Ok(()),
                false => Err("not yet".into()),
            }
        },
    )
    .await;
    // The warnings are looked for right after a read and every 30 s.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let warnings: Vec<_> = env
        .events_regarding("Secret", "legacy-tls")
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("ExpiringSoon"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");

    // `certkeeper scan`, with the user's own rights: soonest expiry first, who manages each.
    let rows = scan(&env);
    let names: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or_default(),
                r["key"].as_str().unwrap_or_default(),
                r["managedBy"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        names.first(),
        Some(&("legacy-tls", "tls.crt", "none")),
        "{rows:?}"
    );
    assert!(names.contains(&("web-tls", "tls.crt", "certkeeper")), "{rows:?}");
    assert_eq!(rows[0]["state"], "expiring");
}
