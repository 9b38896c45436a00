//! A Certificate's life after its first issuance: renewal on time, renewal on request,
//! recovery of a deleted Secret, a Certificate applied again over the Secret it left, and an
//! issuer that appears late.

use std::time::Duration;

use certkeeper::api::{Certificate, RENEW_REQUESTED_AT};
use jiff::{SignedDuration, Timestamp};
use kube::api::DeleteParams;
use serde_json::json;

use crate::support::tls;
use crate::support::{TestEnv, certificate, ready_condition, revision_of, selfsigned_issuer};

/// The serial number of the certificate now in Secret `secret_name`, read by openssl.
async fn secret_serial(env: &TestEnv, secret_name: &str, label: &str) -> String {
    let secret = env.tls_secret(secret_name).await;
    tls::serial_number(&env.work_dir, label, &secret.leaf_pem())
}

fn status_times(cert: &Certificate) -> (Timestamp, Timestamp, Timestamp) {
    let status = cert.status.clone().unwrap_or_default();
    (
        status.not_before.expect("status.notBefore").0,
        status.not_after.expect("status.notAfter").0,
        status.renewal_time.expect("status.renewalTime").0,
    )
}

#[tokio::test]
async fn short_lived_certificate_renews_at_its_renewal_time() {
    let Some(env) = TestEnv::start("renewal").await else {
        return;
    };
    env.apply(selfsigned_issuer("selfsigned")).await;
    // 1h with renewBeforePercentage 99: renewBefore is 3564 s, so renewal is due 36 s after
    // issuance, less a jitter of at most 10 % of min(3564 s, 36 s).
    env.apply(certificate(
        &env,
        "short-lived",
        "selfsigned",
        json!({ "duration": "1h", "renewBeforePercentage": 99 }),
    ))
    .await;
    let first = env.wait_ready("short-lived").await;
    assert_eq!(revision_of(&first), Some(1));
    let (not_before, not_after, renewal) = status_times(&first);
    assert_eq!(
        not_after.duration_since(not_before),
        SignedDuration::from_hours(1)
    );
    assert!(
        renewal <= not_before + SignedDuration::from_secs(36)
            && renewal >= not_before + SignedDuration::from_secs(32),
        "renewalTime {renewal} is 32-36 s after notBefore {not_before}"
    );
    let first_serial = secret_serial(&env, "short-lived-tls", "short-lived-1").await;
    assert_eq!(
        first.status.as_ref().and_then(|s| s.serial_number.as_deref()),
        Some(first_serial.as_str())
    );

    // Nothing but the clock triggers this: the controller must have scheduled it.
    let away_before = env.api_server_away();
    let renewed = env
        .wait_for_revision("short-lived", 2, Duration::from_secs(180))
        .await;
    let second_serial = secret_serial(&env, "short-lived-tls", "short-lived-2").await;
    assert_ne!(second_serial, first_serial, "the Secret holds a new certificate");
    let (renewed_not_before, _, _) = status_times(&renewed);
    assert!(
        renewed_not_before >= renewal,
        "renewed at {renewed_not_before}, before its renewalTime {renewal}"
    );
    // The controller requeues at the renewal time itself, not at some later resync. (If this
    // test was slow to look, the certificate may already be at revision 3; that one is later
    // still, so only check when we caught revision 2.)
    if revision_of(&renewed) == Some(2) {
        // An API server away meanwhile (restarted in the middle of the suite) delays it by as
        // long: nothing can be written then.
        let away = env.api_server_away() - away_before;
        let allowed = SignedDuration::from_secs(15) + SignedDuration::try_from(away).unwrap_or_default();
        assert!(
            renewed_not_before <= renewal + allowed,
            "renewed at {renewed_not_before}, more than {allowed:#} after its renewalTime {renewal} \
             (the API server was away {away:?} of it)"
        );
    }
    let event = env.wait_for_event("short-lived", "Normal", "Renewed").await;
    let note = event.note.unwrap_or_default();
    assert!(
        note.contains("Renewing"),
        "the Renewed Event names the trigger: {note}"
    );
}

#[tokio::test]
async fn renew_requested_annotation_reissues_once() {
    let Some(env) = TestEnv::start("renew-requested").await else {
        return;
    };
    env.apply(selfsigned_issuer("selfsigned")).await;
    env.apply(certificate(
        &env,
        "on-demand",
        "selfsigned",
        json!({ "duration": "24h" }),
    ))
    .await;
    let first = env.wait_ready("on-demand").await;
    let revision = revision_of(&first).expect("status.revision");
    let first_serial = secret_serial(&env, "on-demand-tls", "on-demand-1").await;

    // A request counts when it is later than the current certificate's notBefore, both in
    // whole seconds: let the second of issuance pass first.
    let (not_before, _, _) = status_times(&first);
    while Timestamp::now().as_second() <= not_before.as_second() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let requested_at = Timestamp::from_second(Timestamp::now().as_second()).expect("a whole-second time");
    // As the README tells users to: kubectl annotate.
    env.kubectl(&[
        "annotate",
        "certificate",
        "on-demand",
        "--overwrite",
        &format!("{RENEW_REQUESTED_AT}={requested_at}"),
    ]);

    env.wait_for_revision("on-demand", revision + 1, Duration::from_secs(60))
        .await;
    assert_ne!(
        secret_serial(&env, "on-demand-tls", "on-demand-2").await,
        first_serial
    );
    let event = env.wait_for_event("on-demand", "Normal", "Renewed").await;
    let note = event.note.unwrap_or_default();
    assert!(
        note.contains("ManuallyTriggered"),
        "the Renewed Event names the trigger: {note}"
    );

    // One request, one re-issuance: the annotation stays, and must not trigger again.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let settled = env
        .certificates()
        .get("on-demand")
        .await
        .expect("get Certificate on-demand");
    assert_eq!(
        revision_of(&settled),
        Some(revision + 1),
        "the annotation re-issued more than once"
    );
}

#[tokio::test]
async fn deleted_secret_is_issued_again() {
    let Some(env) = TestEnv::start("secret-deletion").await else {
        return;
    };
    env.apply(selfsigned_issuer("selfsigned")).await;
    env.apply(certificate(&env, "phoenix", "selfsigned", json!({})))
        .await;
    let first = env.wait_ready("phoenix").await;
    let revision = revision_of(&first).expect("status.revision");
    let first_serial = secret_serial(&env, "phoenix-tls", "phoenix-1").await;

    env.secrets()
        .delete("phoenix-tls", &DeleteParams::default())
        .await
        .expect("delete Secret phoenix-tls");

    env.wait_for_revision("phoenix", revision + 1, Duration::from_secs(60))
        .await;
    let secret = env.tls_secret("phoenix-tls").await;
    assert_eq!(secret.label("certkeeper.io/certificate-name"), Some("phoenix"));
    let second_serial = tls::serial_number(&env.work_dir, "phoenix-2", &secret.leaf_pem());
    assert_ne!(
        second_serial, first_serial,
        "a new certificate, not a restored copy"
    );
    let expected_revision = (revision + 1).to_string();
    assert_eq!(
        secret.annotation("certkeeper.io/revision"),
        Some(expected_revision.as_str())
    );
    let event = env.wait_for_event("phoenix", "Normal", "Renewed").await;
    let note = event.note.unwrap_or_default();
    assert!(
        note.contains("DoesNotExist"),
        "the Renewed Event names the trigger: {note}"
    );
}

/// A first issuance writes its Secret without reading it first, with an apply that only
/// creates: a Secret already there (left by a deleted Certificate, or restored from a backup
/// before its Certificate) refuses it, and is read and kept, not replaced.
#[tokio::test]
async fn a_certificate_applied_again_keeps_the_secret_it_left() {
    let Some(env) = TestEnv::start("reapplied").await else {
        return;
    };
    env.apply(selfsigned_issuer("selfsigned")).await;
    let manifest = certificate(&env, "again", "selfsigned", json!({}));
    env.apply(manifest.clone()).await;
    env.wait_ready("again").await;
    let first_serial = secret_serial(&env, "again-tls", "again-1").await;

    // Deleted (the Secret stays: no owner reference by default), then applied again.
    env.certificates()
        .delete("again", &DeleteParams::default())
        .await
        .expect("delete Certificate again");
    let api = env.certificates();
    env.eventually(
        "Certificate again deleted",
        Duration::from_secs(30),
        async || match api.get_opt("again").await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err("still there".to_owned()),
            Err(e) => Err(format!("get: {e}")),
        },
    )
    .await;
    env.apply(manifest).await;
    let again = env.wait_ready("again").await;
    assert_eq!(
        revision_of(&again),
        Some(1),
        "the Secret's certificate, at the revision it was issued with"
    );
    let serial = secret_serial(&env, "again-tls", "again-2").await;
    assert_eq!(
        serial, first_serial,
        "the Secret left behind is kept, not replaced"
    );
}

#[tokio::test]
async fn missing_issuer_is_reported_until_it_is_created() {
    let Some(env) = TestEnv::start("missing-issuer").await else {
        return;
    };
    env.apply(certificate(&env, "early-bird", "late-issuer", json!({})))
        .await;

    let waiting = env
        .wait_for_certificate(
            "early-bird",
            "Ready=False IssuerNotFound",
            Duration::from_secs(60),
            |cert| match ready_condition(cert) {
                Some(c) if c.status == "False" && c.reason == "IssuerNotFound" => Ok(()),
                Some(c) => Err(format!("Ready={} ({})", c.status, c.reason)),
                None => Err("no Ready condition".into()),
            },
        )
        .await;
    let message = ready_condition(&waiting)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("late-issuer"),
        "the condition names the missing issuer: {message}"
    );
    env.wait_for_event("early-bird", "Warning", "IssuerNotFound")
        .await;
    assert!(
        env.secrets()
            .get_opt("early-bird-tls")
            .await
            .expect("get Secret")
            .is_none(),
        "no Secret without an issuer"
    );

    // The Issuer's arrival wakes the Certificate (the controller's fallback recheck is
    // minutes away, beyond this wait).
    env.apply(selfsigned_issuer("late-issuer")).await;
    let ready = env.wait_ready("early-bird").await;
    assert_eq!(revision_of(&ready), Some(1));
    env.tls_secret("early-bird-tls").await;
}
