//! Memory of the controller's Certificate cache at scale, and the cost of one /metrics scrape
//! over it: 10,000 Certificates as the API server sends them from a GitOps repository
//! (managedFields, labels, kubectl's last-applied annotation, a GitOps tracking annotation,
//! a full status) are put into a reflector store, raw, and as the controller caches them
//! (`CachedCertificate`, trimmed by `certkeeper::runner::trim_for_cache`). The whole controller, Secrets included, is
//! measured by `cargo bench --bench controller_memory`.
//!
//! Run: `cargo bench --bench cache_memory` (prints figures; not a criterion benchmark, since
//! what matters is bytes, not time).

use std::sync::Arc;
use std::time::Instant;

use certkeeper::api::Certificate;
use certkeeper::certificate::cached::CachedCertificate;
use certkeeper::telemetry::metrics::{Caches, Metrics};
use kube::core::DeserializeGuard;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;
use serde_json::json;

const COUNT: usize = 10_000;

/// Certificate `i` as a watch event carries it.
fn certificate(i: usize) -> serde_json::Value {
    let name = format!("svc-{i:05}");
    let spec = json!({
        "secretName": format!("{name}-tls"),
        "dnsNames": [format!("{name}.apps.svc"), format!("{name}.apps.svc.cluster.local")],
        "uris": [format!("spiffe://cluster.local/ns/apps/sa/{name}")],
        "duration": "24h",
        "issuerRef": {"name": "intermediate-ca", "kind": "Issuer", "group": "certkeeper.io"},
    });
    let applied = json!({"apiVersion": "certkeeper.io/v1", "kind": "Certificate",
                         "metadata": {"name": name, "namespace": "apps"}, "spec": spec});
    json!({
        "apiVersion": "certkeeper.io/v1",
        "kind": "Certificate",
        "metadata": {
            "name": name,
            "namespace": "apps",
            "uid": format!("6f1c2a9e-1b2c-4d5e-8f90-{i:012}"),
            "resourceVersion": format!("{}", 100_000 + i),
            "generation": 1,
            "creationTimestamp": "2026-11-23T10:00:00Z",
            "labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "shop"},
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": applied.to_string(),
                "argocd.argoproj.io/tracking-id": format!("shop:certkeeper.io/Certificate:apps/{name}"),
            },
            "managedFields": [
                {"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "certkeeper.io/v1",
                 "time": "2026-11-23T10:00:00Z", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}}},
                              "f:spec": {".": {}, "f:dnsNames": {}, "f:duration": {}, "f:issuerRef": {".": {}, "f:group": {}, "f:kind": {}, "f:name": {}},
                                         "f:secretName": {}, "f:uris": {}}}},
                {"manager": "certkeeper", "operation": "Apply", "apiVersion": "certkeeper.io/v1", "subresource": "status",
                 "time": "2026-11-23T10:00:01Z", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:status": {"f:conditions": {"k:{\"type\":\"Ready\"}": {".": {}, "f:lastTransitionTime": {}, "f:message": {},
                              "f:observedGeneration": {}, "f:reason": {}, "f:status": {}, "f:type": {}}},
                              "f:notAfter": {}, "f:notBefore": {}, "f:observedGeneration": {}, "f:renewalTime": {}, "f:revision": {}, "f:serialNumber": {}}}},
            ],
        },
        "spec": spec,
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready",
                            "message": "Certificate is up to date and has not expired",
                            "lastTransitionTime": "2026-11-23T10:00:01Z", "observedGeneration": 1}],
            "notBefore": "2026-11-23T10:00:00Z",
            "notAfter": "2026-11-24T10:00:00Z",
            "renewalTime": "2026-11-24T02:00:00Z",
            "revision": 1,
            "serialNumber": "4f3a9c0d1e2b3a4f5e6d7c8b9a0f1e2d3c4b5a69",
            "observedGeneration": 1,
        },
    })
}

fn resident_bytes() -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<i64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Fills a store with COUNT Certificates, each passed through `trim`; returns the store's
/// reader and the growth of resident memory.
fn fill<K>(trim: impl Fn(&mut K)) -> (kube::runtime::reflector::Store<K>, i64)
where
    K: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned + Clone,
{
    let before = resident_bytes();
    let mut writer = Writer::<K>::default();
    for i in 0..COUNT {
        let mut object: K = serde_json::from_value(certificate(i)).expect("a Certificate");
        trim(&mut object);
        writer.apply_watcher_event(&watcher::Event::Apply(object));
    }
    let reader = writer.as_reader();
    (reader, resident_bytes() - before)
}

fn mib(bytes: i64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    // `cargo bench` passes --bench; nothing else is expected. Trimmed first: memory freed by
    // one fill would be reused by the next and hide its growth, so both stay alive.
    let baseline = resident_bytes();
    let (trimmed, trimmed_growth) = fill::<CachedCertificate>(certkeeper::runner::trim_for_cache);
    println!(
        "{COUNT} Certificates cached as the controller caches them (no managedFields, labels or foreign annotations; spec and status as compact JSON): +{:.1} MiB resident ({:.0} bytes each)",
        mib(trimmed_growth),
        trimmed_growth as f64 / COUNT as f64
    );
    let (raw, raw_growth) = fill::<DeserializeGuard<Certificate>>(|_| {});
    println!(
        "{COUNT} Certificates cached as received: +{:.1} MiB resident ({:.0} bytes each)",
        mib(raw_growth),
        raw_growth as f64 / COUNT as f64
    );
    drop(raw);

    let metrics = Metrics::new(Caches {
        certificates: trimmed,
        issuers: Writer::default().as_reader(),
        cluster_issuers: Writer::default().as_reader(),
        revocations: Writer::default().as_reader(),
        cluster_resource_namespace: String::new(),
        clock: Arc::new(jiff::Timestamp::now),
    });
    let started = Instant::now();
    let text = metrics.encode().expect("encode /metrics");
    println!(
        "one /metrics scrape over {COUNT} Certificates: {:.1} MiB of text in {:.0} ms",
        mib(text.len() as i64),
        started.elapsed().as_secs_f64() * 1000.0
    );
    println!(
        "process resident at the end: {:.1} MiB (baseline {:.1} MiB)",
        mib(resident_bytes()),
        mib(baseline)
    );
}
