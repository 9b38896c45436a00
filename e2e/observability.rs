//! What an SRE sees: the ExpiringSoon warning on time, and the metrics endpoint agreeing with
//! the Certificate's status.

use serde_json::json;

use crate::support::{TestEnv, certificate, selfsigned_issuer};

fn selfsigned_and_certificate(env: &TestEnv, name: &str, duration: &str) -> [serde_json::Value; 2] {
    [
        selfsigned_issuer("selfsigned"),
        certificate(env, name, "selfsigned", json!({ "duration": duration })),
    ]
}

#[tokio::test]
async fn expiring_soon_warning_fires_at_its_threshold_once() {
    // A 1 h certificate and a threshold of 59m50s: the warning falls due 10 s after issuance.
    let Some(env) = TestEnv::start_with("expiring-soon", &["--expiry-warning-thresholds", "59m50s"]).await
    else {
        return;
    };
    for object in selfsigned_and_certificate(&env, "short", "1h") {
        env.apply(object).await;
    }
    env.wait_ready("short").await;
    let event = env.wait_for_event("short", "Warning", "ExpiringSoon").await;
    let note = event.note.clone().unwrap_or_default();
    assert!(note.contains("less than 59m50s"), "{note}");

    let cert = env.wait_ready("short").await;
    let marker = cert
        .status
        .and_then(|s| s.last_expiry_warning)
        .expect("status.lastExpiryWarning after the warning");
    assert_eq!(
        (
            marker.revision,
            marker.reason.as_str(),
            marker.threshold.as_deref()
        ),
        (1, "ExpiringSoon", Some("59m50s"))
    );
    // One warning for this revision and threshold: one Event object (a repeat would at most
    // be counted in its series, never a second object).
    let warnings = env
        .certificate_events("short")
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("ExpiringSoon"))
        .count();
    assert_eq!(warnings, 1);
}

#[tokio::test]
async fn metrics_show_the_expiry_in_the_status_and_the_controller_is_ready() {
    let Some(env) = TestEnv::start("metrics").await else {
        return;
    };
    for object in selfsigned_and_certificate(&env, "web", "24h") {
        env.apply(object).await;
    }
    let cert = env.wait_ready("web").await;
    let not_after = cert
        .status
        .and_then(|s| s.not_after)
        .expect("status.notAfter")
        .0
        .as_second();

    assert_eq!(env.controller_http("/healthz").await.0, 200);
    let (code, body) = env.controller_http("/readyz").await;
    assert_eq!(code, 200, "{body}");
    // The gauges are read from the controller's cache, which sees the status shortly after
    // the API server has it.
    let series = format!(
        r#"certkeeper_certificate_expiration_timestamp_seconds{{namespace="{}",name="web",issuer_name="selfsigned",issuer_kind="Issuer"}} "#,
        env.namespace
    );
    let ready = format!(
        r#"certkeeper_certificate_ready_status{{namespace="{}",name="web",issuer_name="selfsigned",issuer_kind="Issuer",condition="True"}} 1"#,
        env.namespace
    );
    env.eventually(
        "/metrics to show the expiry in the status",
        std::time::Duration::from_secs(30),
        async || {
            let (code, metrics) = env.controller_http("/metrics").await;
            if code != 200 {
                return Err(format!("/metrics answered {code}"));
            }
            let value: i64 = metrics
                .lines()
                .find_map(|l| l.strip_prefix(&series))
                .ok_or_else(|| format!("no {series}"))?
                .trim()
                .parse()
                .map_err(|e| format!("not a whole number of seconds: {e}"))?;
            if value != not_after {
                return Err(format!("{value} is not status.notAfter {not_after}"));
            }
            if !metrics.lines().any(|l| l == ready) {
                return Err(format!("no {ready}"));
            }
            Ok(())
        },
    )
    .await;
}
