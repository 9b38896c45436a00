//! The CLI's tests: each command against the mocked API server (every request asserted),
//! `issue` end to end on `manifests/examples/`, `convert` on cert-manager's documented
//! examples (`src/cli/testdata/cert-manager/`), `ca` on a SoftHSM2 token, and the error paths.

mod ca;
mod check;
mod convert;
mod help;
mod inspect;
mod issue;
mod policy;
mod renew;
mod revoke;
mod scan;
mod status;

use std::future::Future;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::text::WIDTH;
use crate::testing::{NAMESPACE, ts};

/// `manifests/examples/`, as `issue -f manifests/examples/` reads it.
fn examples() -> Vec<crate::cli::manifests::Document> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/examples");
    crate::cli::manifests::read_all(&[dir]).unwrap()
}

/// `issue`'s settings with its defaults, writing under `out_dir`.
fn issue_settings(out_dir: &std::path::Path) -> crate::cli::issue::Settings {
    crate::cli::issue::Settings {
        out_dir: out_dir.to_owned(),
        default_namespace: "default".into(),
        cluster_resource_namespace: "certkeeper-system".into(),
    }
}

/// The instant the commands run at.
fn now() -> Timestamp {
    ts("2026-11-30T12:00:00Z")
}

/// Runs a command in the background while the test plays the API server.
fn spawn<F>(command: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(command)
}

/// Every line of `text` fits in 100 columns, and no private key is in it.
fn assert_printable(text: &str) {
    for line in text.lines() {
        assert!(
            line.chars().count() <= WIDTH,
            "line longer than {WIDTH}: {line:?}"
        );
    }
    assert!(!text.contains("PRIVATE KEY"), "key material in output:\n{text}");
}

/// A Certificate `name` in NAMESPACE issued by the Issuer `ca`, as the API server returns it.
fn certificate_json(name: &str, status: Value) -> Value {
    json!({
        "apiVersion": "certkeeper.io/v1", "kind": "Certificate",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": format!("uid-{name}"),
                     "generation": 1, "resourceVersion": "7"},
        "spec": {"secretName": format!("{name}-tls"), "dnsNames": [format!("{name}.apps.svc")],
                 "issuerRef": {"name": "ca", "kind": "Issuer", "group": "certkeeper.io"}},
        "status": status,
    })
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

fn forbidden(message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden",
           "code": 403, "message": message})
}
