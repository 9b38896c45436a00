//! Running certkeeper as operators do: restarts that change nothing, two replicas of which
//! only the Lease holder writes, and what happens to a Secret when its Certificate is deleted.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams};
use serde_json::json;

use crate::support::{TestEnv, certificate, revision_of, selfsigned_issuer};

/// The value of the sample `series` (name and labels exactly as exposed), 0 when absent.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

const CERTIFICATE_RECONCILES: &str =
    r#"certkeeper_reconcile_total{controller="certificate",result="success"}"#;

#[tokio::test]
async fn restarting_the_controller_leaves_valid_certificates_untouched() {
    let Some(mut env) = TestEnv::start("restart").await else {
        return;
    };
    env.apply(selfsigned_issuer("selfsigned")).await;
    env.apply(certificate(&env, "steady", "selfsigned", json!({})))
        .await;
    let before = env.wait_ready("steady").await;
    let secret_before = env
        .secrets()
        .get("steady-tls")
        .await
        .expect("get Secret steady-tls");

    env.restart_controller().await;
    // The new controller has looked at the Certificate once it has reconciled it.
    env.eventually(
        "the restarted controller to reconcile the Certificate",
        Duration::from_secs(60),
        async || {
            let (_, metrics) = env.controller_http("/metrics").await;
            match sample(&metrics, CERTIFICATE_RECONCILES) {
                n if n >= 1.0 => Ok(()),
                _ => Err("no certificate reconcile yet".to_owned()),
            }
        },
    )
    .await;

    let after = env.wait_ready("steady").await;
    assert_eq!(revision_of(&after), revision_of(&before), "re-issued on restart");
    let secret_after = env
        .secrets()
        .get("steady-tls")
        .await
        .expect("get Secret steady-tls");
    assert_eq!(
        secret_after.metadata.resource_version, secret_before.metadata.resource_version,
        "the Secret was written on restart"
    );
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "the status was written on restart"
    );
}

/// The holder of the controller's Lease in the test namespace, once it has one.
async fn lease_holder(env: &TestEnv) -> Result<String, String> {
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.namespace);
    let lease = leases
        .get("certkeeper-controller")
        .await
        .map_err(|e| format!("get Lease certkeeper-controller: {e}"))?;
    lease
        .spec
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
        .ok_or_else(|| "the Lease has no holder".to_owned())
}

/// Who reported the `Issued` Event about Certificate `name`.
async fn issued_by(env: &TestEnv, name: &str) -> Vec<String> {
    env.certificate_events(name)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Issued"))
        .filter_map(|e| e.reporting_instance)
        .collect()
}

/// Both controllers elect with the Lease in the test namespace.
const ELECTING: [&str; 3] = ["--leader-elect", "--leader-election-namespace", "{namespace}"];

#[tokio::test]
async fn two_controllers_only_the_lease_holder_writes_and_a_standby_takes_over() {
    let Some(mut env) = TestEnv::start_with("leader-election", &ELECTING).await else {
        return;
    };
    let holder = env
        .eventually(
            "the first controller to hold the Lease",
            Duration::from_secs(60),
            async || lease_holder(&env).await,
        )
        .await;
    assert_eq!(holder, "controller");
    let standby = env.spawn_controller("standby", &ELECTING);
    env.eventually(
        "the standby to be ready",
        Duration::from_secs(60),
        async || match standby.http_get("/readyz").await {
            (200, _) => Ok(()),
            (code, body) => Err(format!("/readyz {code}: {body}")),
        },
    )
    .await;

    env.apply(selfsigned_issuer("selfsigned")).await;
    env.apply(certificate(&env, "one", "selfsigned", json!({}))).await;
    env.wait_ready("one").await;
    env.wait_for_event("one", "Normal", "Issued").await;
    assert_eq!(issued_by(&env, "one").await, ["controller"]);
    standby.assert_running();
    let (_, standby_metrics) = standby.http_get("/metrics").await;
    assert_eq!(
        sample(&standby_metrics, CERTIFICATE_RECONCILES),
        0.0,
        "the standby reconciled"
    );

    // The leader dies without releasing the Lease: the standby takes over once it expires.
    env.kill_controller();
    let killed = Instant::now();
    let holder = env
        .eventually(
            "the standby to take the Lease",
            Duration::from_secs(60),
            async || match lease_holder(&env).await? {
                h if h == "standby" => Ok(h),
                h => Err(format!("held by {h}")),
            },
        )
        .await;
    eprintln!(
        "e2e leader-election: {holder} took over {:.1}s after the leader was killed (lease 15 s)",
        killed.elapsed().as_secs_f64()
    );
    env.apply(certificate(&env, "two", "selfsigned", json!({}))).await;
    env.wait_ready("two").await;
    env.wait_for_event("two", "Normal", "Issued").await;
    assert_eq!(issued_by(&env, "two").await, ["standby"]);
}

#[tokio::test]
async fn deleting_a_certificate_deletes_its_secret_only_with_policy_delete() {
    let Some(env) = TestEnv::start("deletion-policy").await else {
        return;
    };
    env.apply(selfsigned_issuer("selfsigned")).await;
    env.apply(certificate(
        &env,
        "kept",
        "selfsigned",
        json!({"secretDeletionPolicy": "Orphan"}),
    ))
    .await;
    env.apply(certificate(
        &env,
        "removed",
        "selfsigned",
        json!({"secretDeletionPolicy": "Delete"}),
    ))
    .await;
    env.wait_ready("kept").await;
    env.wait_ready("removed").await;

    for name in ["kept", "removed"] {
        env.certificates()
            .delete(name, &DeleteParams::foreground())
            .await
            .unwrap_or_else(|e| panic!("delete Certificate {name}: {e}"));
    }
    // The garbage collector removes the owned Secret.
    env.eventually(
        "Secret removed-tls to be deleted",
        Duration::from_secs(60),
        async || match env.secrets().get_opt("removed-tls").await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err("still there".to_owned()),
            Err(e) => Err(format!("get: {e}")),
        },
    )
    .await;
    let kept = env
        .secrets()
        .get_opt("kept-tls")
        .await
        .expect("get Secret kept-tls");
    let kept = kept.expect("Secret kept-tls (policy Orphan) was deleted with its Certificate");
    assert!(kept.metadata.owner_references.unwrap_or_default().is_empty());
}
