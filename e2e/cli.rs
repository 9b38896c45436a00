//! The command line against a real cluster, as someone on call types it: `check api`,
//! `status certificate`, `inspect secret`, `renew`, and a missing Certificate's one-line error.

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{TestEnv, certificate, revision_of, selfsigned_issuer};

/// Runs `certkeeper ARGS -n NAMESPACE` with the test's KUBECONFIG.
fn certkeeper(env: &TestEnv, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_certkeeper"))
        .args(args)
        .args(["-n", &env.namespace])
        .output()
        .expect("run certkeeper")
}

fn stdout(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "`certkeeper {what}` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn on_call_commands_answer_from_the_cluster() {
    let Some(env) = TestEnv::start("cli").await else {
        return;
    };
    let checked = stdout(&certkeeper(&env, &["check", "api"]), "check api");
    assert!(
        checked.contains("passes a server-side dry-run create"),
        "{checked}"
    );

    env.apply(selfsigned_issuer("selfsigned")).await;
    env.apply(certificate(&env, "web", "selfsigned", json!({}))).await;
    let before = env.wait_ready("web").await;

    let status = stdout(
        &certkeeper(&env, &["status", "certificate", "web", "-o", "json"]),
        "status certificate web",
    );
    let status: Value = serde_json::from_str(&status).expect("status -o json is JSON");
    assert_eq!(status["ready"], "True (Ready)");
    assert_eq!(status["secret"]["material"]["chainVerified"], true);
    assert_eq!(status["secret"]["material"]["key"]["matchesCertificate"], true);
    assert!(
        status["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["reason"] == "Issued")),
        "{status}"
    );

    let inspected = stdout(
        &certkeeper(&env, &["inspect", "secret", "web-tls"]),
        "inspect secret",
    );
    assert!(inspected.contains("chain verified: yes"), "{inspected}");
    assert!(!inspected.contains("PRIVATE KEY"), "{inspected}");

    let renewed = stdout(&certkeeper(&env, &["renew", "web"]), "renew web");
    assert!(renewed.contains("renewal requested at"), "{renewed}");
    let revision = revision_of(&before).unwrap_or(1);
    env.wait_for_revision("web", revision + 1, Duration::from_secs(60))
        .await;

    let missing = certkeeper(&env, &["status", "certificate", "nope"]);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(
        stderr.trim_end(),
        format!("certkeeper: Certificate {}/nope not found", env.namespace)
    );
}
