//! The glue around every reconcile: a span naming the object, the reconcile counted and timed,
//! and one error policy that turns a failure into a retry.

use std::sync::Arc;
use std::time::Duration;

use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::{Instrument, info_span, warn};

use super::retry::transient_retry;
use crate::certificate::schedule::backoff;
use crate::context::Context;
use crate::error::Error;
use crate::telemetry::metrics::ControllerKind;

fn error_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        obj.namespace().unwrap_or_default(),
        obj.name_any()
    )
}

/// Retries a failed reconcile: within seconds when the API server was unavailable (1 s
/// doubling to 5 s), else with the per-object exponential backoff (10 s → 5 min).
pub(super) fn error_policy<K: Resource<DynamicType = ()>>(
    obj: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let key = error_key(obj.as_ref());
    let n = ctx.record_error(&key);
    let wait = if error.is_transient() {
        transient_retry(n)
    } else {
        Duration::from_secs(backoff(n).as_secs().unsigned_abs())
    };
    warn!(object = %key, %error, retry_in_ms = wait.as_millis() as u64, "reconcile failed");
    Action::requeue(wait)
}

/// Runs one reconcile inside a span naming the object, counts and times it, and forgets the
/// object's error streak when it succeeds.
pub(super) async fn observed<K: Resource<DynamicType = ()>, T>(
    controller: ControllerKind,
    obj: &K,
    ctx: &Context,
    reconcile: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    // `object` is namespace/name (just the name for cluster-scoped kinds); not `name`, which
    // JSON logs already use for the span's own name.
    let namespace = obj.namespace();
    let object = match &namespace {
        Some(ns) => format!("{ns}/{}", obj.name_any()),
        None => obj.name_any(),
    };
    let span = info_span!(
        "reconcile",
        controller = controller.label(),
        namespace = namespace.unwrap_or_default(),
        %object,
    );
    let started = std::time::Instant::now();
    let result = reconcile.instrument(span).await;
    ctx.metrics
        .reconcile(controller, result.is_ok(), started.elapsed());
    if result.is_ok() {
        ctx.clear_errors(&error_key(obj));
    }
    result
}

/// The cache key of `obj` in a controller of `DeserializeGuard<K>`.
pub(super) fn object_ref<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectRef<DeserializeGuard<K>> {
    let r = ObjectRef::new(&obj.name_any());
    match obj.namespace() {
        Some(ns) => r.within(&ns),
        None => r,
    }
}

/// The prefix of the annotations the controller reads (renewal requests and the like).
pub(super) const OWN_ANNOTATIONS: &str = "certkeeper.io/";

/// Drops from an object what the controller never reads before it is cached: managedFields,
/// labels, and every annotation but certkeeper.io's (kubectl's last-applied copy, GitOps
/// tools' tracking data) are most of a Certificate's size (`cargo bench --bench
/// cache_memory`).
pub fn trim_for_cache<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    meta.labels = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|key, _| key.starts_with(OWN_ANNOTATIONS));
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::metrics::ControllerKind;
    use crate::testing::certificate;
    use tracing::info;

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn json_logs_of_a_reconcile_are_one_object_per_line_naming_the_object() {
        use crate::telemetry::logs::{LogFormat, subscriber};
        let captured = Captured::default();
        let writer = captured.clone();
        let sub = subscriber(
            LogFormat::Json,
            tracing_subscriber::EnvFilter::new("info"),
            move || writer.clone(),
        );
        let _default = tracing::subscriber::set_default(sub);
        let (ctx, _api) = crate::testing::context(vec![], vec![], crate::testing::ts("2026-11-23T10:00:00Z"));
        let cert = certificate("web", "ca", &["web.apps.svc"]);
        let result = observed(ControllerKind::Certificate, &cert, &ctx, async {
            info!(secret = "web-tls", "issuing certificate");
            info!("certificate issued");
            Ok(Action::await_change())
        })
        .await;
        assert!(result.is_ok());

        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object: {l}: {e}")))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        for line in &lines {
            assert_eq!(line["span"]["controller"], "certificate");
            assert_eq!(line["span"]["namespace"], "apps");
            assert_eq!(line["span"]["object"], "apps/web");
            assert_eq!(line["level"], "INFO");
        }
        assert_eq!(lines[0]["secret"], "web-tls");
        // The reconcile was counted and timed.
        let metrics = ctx.metrics.encode().unwrap();
        assert!(
            metrics.contains(r#"certkeeper_reconcile_total{controller="certificate",result="success"} 1"#)
        );
        assert!(
            metrics.contains(r#"certkeeper_reconcile_duration_seconds_count{controller="certificate"} 1"#)
        );
    }

    #[test]
    fn the_cache_keeps_only_what_the_controller_reads_of_metadata() {
        let mut cert = certificate("web", "ca", &["web.apps.svc"]);
        cert.metadata.labels = Some([("app.kubernetes.io/name".to_owned(), "web".to_owned())].into());
        cert.metadata.annotations = Some(
            [
                ("kubectl.kubernetes.io/last-applied-configuration", "{...}"),
                (
                    "argocd.argoproj.io/tracking-id",
                    "shop:certkeeper.io/Certificate:apps/web",
                ),
                ("certkeeper.io/renew-requested-at", "2026-11-23T10:00:00Z"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
        );
        cert.metadata.managed_fields = Some(vec![Default::default()]);
        trim_for_cache(&mut cert);
        assert_eq!(cert.metadata.labels, None);
        assert_eq!(cert.metadata.managed_fields, None);
        let kept: Vec<&String> = cert
            .metadata
            .annotations
            .iter()
            .flatten()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(kept, ["certkeeper.io/renew-requested-at"]);
        assert_eq!(cert.metadata.uid.as_deref(), Some("uid-web"));
    }
}
