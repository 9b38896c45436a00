//! CA rotation through a two-level hierarchy, simulated in the quickstart's shape (the same
//! as the e2e test `e2e/rotation.rs` runs against a real cluster): a root CA Secret `root-ca`
//! and its Issuer; Certificate `intermediate-ca` (isCA) issued by that Issuer into Secret
//! `intermediate-ca`, read by Issuer `intermediate-ca`; and two workloads issued by it. The
//! root is replaced by one under a new key and the same name, as renewing the quickstart's
//! root Certificate does. Issuer root-ca rotates and re-issues the intermediate under the new
//! root; Issuer intermediate-ca then sees its anchor change and rotates in turn. Every step,
//! the workloads complete mutual TLS with copies of their Secrets as old as the propagation
//! delay allows; each Certificate is re-issued exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use http::{Method, Response, StatusCode};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use kube::client::Body;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use serde_json::Value;

use crate::api::{Certificate, ClusterIssuer, Issuer, IssuerStatus, RotationPhase, TrustAnchorRole};
use crate::certificate::secret::certificate_of;
use crate::context::Context;
use crate::issuer::rotation::RotationSettings;
use crate::pki::tests::mtls::{self, Mounted};
use crate::pki::{CertificateInfo, parse_certificate_chain};
use crate::telemetry::metrics::Caches;
use crate::testing::*;

const ROOT_SECRET: &str = "root-ca";
const ISSUERS: [&str; 2] = ["root-ca", "intermediate-ca"];
const INTERMEDIATE: &str = "intermediate-ca";
const WORKLOADS: [&str; 2] = ["frontend", "backend"];
const STEP: SignedDuration = SignedDuration::from_secs(5);
/// The e2e test's settings.
const SETTINGS: RotationSettings = RotationSettings {
    propagation_delay: SignedDuration::from_secs(20),
    reissue_window: SignedDuration::from_secs(30),
};

struct Cluster {
    secrets: BTreeMap<String, Secret>,
    configmaps: BTreeMap<String, Value>,
    /// Every write of each Secret but the root's: when, and what a pod mounting it sees.
    history: BTreeMap<String, Vec<(Timestamp, Arc<Mounted>)>>,
    certificates: BTreeMap<String, Certificate>,
    issuers: BTreeMap<String, Issuer>,
    /// Per issuer, its rotation Event reasons in order.
    issuer_events: BTreeMap<String, Vec<String>>,
    /// Per issuer, the rotation phase after each status write.
    phases: BTreeMap<String, Vec<Option<RotationPhase>>>,
    secret_events: Vec<watcher::Event<PartialObjectMeta<Secret>>>,
    next_version: u64,
    now: Timestamp,
}

fn not_found() -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "reason": "NotFound", "code": 404}),
    )
}

impl Cluster {
    fn version(&mut self) -> String {
        self.next_version += 1;
        self.next_version.to_string()
    }

    fn store_secret(&mut self, mut secret: Secret) -> Secret {
        let name = secret.metadata.name.clone().unwrap_or_default();
        secret.metadata.resource_version = Some(self.version());
        self.secret_events.push(watcher::Event::Apply(PartialObjectMeta {
            types: None,
            metadata: secret.metadata.clone(),
            _phantom: Default::default(),
        }));
        if name != ROOT_SECRET {
            let text = |key: &str| String::from_utf8(secret_data(&to_json(&secret), key)).unwrap();
            let mounted = Mounted {
                tls_crt: text("tls.crt"),
                tls_key: text("tls.key"),
                ca_crt: text("ca.crt"),
            };
            self.history
                .entry(name.clone())
                .or_default()
                .push((self.now, Arc::new(mounted)));
        }
        self.secrets.insert(name, secret.clone());
        secret
    }

    fn answer(&mut self, method: &Method, path: &str, body: &[u8]) -> (StatusCode, Value) {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            (&Method::GET, ["api", "v1", "namespaces", _, "secrets", name]) => {
                match self.secrets.get(*name) {
                    Some(secret) => (StatusCode::OK, to_json(secret)),
                    None => not_found(),
                }
            }
            (&Method::PATCH, ["api", "v1", "namespaces", _, "secrets", _]) => {
                let secret: Secret = serde_json::from_slice(body).unwrap();
                (StatusCode::OK, to_json(&self.store_secret(secret)))
            }
            (
                &Method::PATCH,
                [
                    "apis",
                    "certkeeper.io",
                    "v1",
                    "namespaces",
                    _,
                    "certificates",
                    name,
                    "status",
                ],
            ) => {
                let patch: Value = serde_json::from_slice(body).unwrap();
                let version = self.version();
                let cert = self.certificates.get_mut(*name).unwrap();
                cert.status = serde_json::from_value(patch["status"].clone()).unwrap();
                cert.metadata.resource_version = Some(version);
                (StatusCode::OK, to_json(cert))
            }
            (
                &Method::PATCH,
                [
                    "apis",
                    "certkeeper.io",
                    "v1",
                    "namespaces",
                    _,
                    "issuers",
                    name,
                    "status",
                ],
            ) => {
                let patch: Value = serde_json::from_slice(body).unwrap();
                let version = self.version();
                let status: IssuerStatus = serde_json::from_value(patch["status"].clone()).unwrap();
                self.phases
                    .entry((*name).to_owned())
                    .or_default()
                    .push(status.rotation.as_ref().map(|r| r.phase));
                let issuer = self.issuers.get_mut(*name).unwrap();
                issuer.status = Some(status);
                issuer.metadata.resource_version = Some(version);
                (StatusCode::OK, to_json(issuer))
            }
            (&Method::GET, ["api", "v1", "namespaces", _, "configmaps", name]) => {
                match self.configmaps.get(*name) {
                    Some(configmap) => (StatusCode::OK, configmap.clone()),
                    None => not_found(),
                }
            }
            (&Method::PATCH, ["api", "v1", "namespaces", _, "configmaps", name]) => {
                let mut configmap: Value = serde_json::from_slice(body).unwrap();
                configmap["metadata"]["resourceVersion"] = self.version().into();
                self.configmaps.insert((*name).to_owned(), configmap.clone());
                (StatusCode::OK, configmap)
            }
            (&Method::POST | &Method::PATCH, ["apis", "events.k8s.io", ..]) => {
                let event: Value = serde_json::from_slice(body).unwrap_or_default();
                let reason = event["reason"].as_str().unwrap_or_default();
                let rotation = matches!(
                    reason,
                    "RotationStarted" | "TrustDistributed" | "RotationCompleted" | "EmergencyRotation"
                );
                if event["regarding"]["kind"] == "Issuer" && rotation {
                    let issuer = event["regarding"]["name"].as_str().unwrap_or_default();
                    self.issuer_events
                        .entry(issuer.to_owned())
                        .or_default()
                        .push(reason.to_owned());
                }
                (StatusCode::OK, event)
            }
            _ => panic!("unexpected {method} {path}"),
        }
    }

    /// What a pod mounting Secret `name` sees at `at`: the Secret as last written by then.
    fn mounted(&self, name: &str, at: Timestamp) -> Option<Arc<Mounted>> {
        self.history
            .get(name)?
            .iter()
            .rev()
            .find(|(written, _)| *written <= at)
            .map(|(_, m)| m.clone())
    }
}

fn serve(mut handle: Handle, cluster: Arc<Mutex<Cluster>>) {
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let body = body.collect_bytes().await.unwrap_or_default();
            let (status, json) = cluster
                .lock()
                .unwrap()
                .answer(&parts.method, parts.uri.path(), &body);
            let mut response = Response::new(Body::from(serde_json::to_vec(&json).unwrap()));
            *response.status_mut() = status;
            send.send_response(response);
        }
    });
}

struct Controller {
    ctx: Arc<Context>,
    issuers: reflector::store::Writer<DeserializeGuard<Issuer>>,
    certificates: reflector::store::Writer<DeserializeGuard<Certificate>>,
}

impl Controller {
    fn start(cluster: &Arc<Mutex<Cluster>>) -> Self {
        let (client, handle) = mock_client();
        serve(handle, cluster.clone());
        let (issuer_store, issuers) = reflector::store::<DeserializeGuard<Issuer>>();
        let (certificate_store, certificates) = reflector::store::<DeserializeGuard<Certificate>>();
        let clock_source = cluster.clone();
        let cluster_issuers: Store<DeserializeGuard<ClusterIssuer>> = store(Vec::new());
        let mut ctx = Context::new(
            client,
            Caches {
                certificates: certificate_store,
                issuers: issuer_store,
                cluster_issuers,
                revocations: store(Vec::new()),
                cluster_resource_namespace: CLUSTER_RESOURCE_NAMESPACE.into(),
                clock: Arc::new(move || clock_source.lock().unwrap().now),
            },
            CLUSTER_RESOURCE_NAMESPACE.into(),
            crate::certificate::expiry::DEFAULT_THRESHOLDS.to_vec(),
        );
        ctx.rotation = SETTINGS;
        Self {
            ctx: Arc::new(ctx),
            issuers,
            certificates,
        }
    }

    /// Reconciles each issuer, then each Certificate (the intermediate first), once, with the
    /// watches' news delivered before each.
    async fn step(&mut self, cluster: &Arc<Mutex<Cluster>>) {
        for name in ISSUERS {
            self.sync(cluster);
            let issuer = cluster.lock().unwrap().issuers[name].clone();
            crate::issuer::reconcile::reconcile(Arc::new(DeserializeGuard(Ok(issuer))), self.ctx.clone())
                .await
                .unwrap();
        }
        for name in [INTERMEDIATE].into_iter().chain(WORKLOADS) {
            self.sync(cluster);
            let cert = cluster.lock().unwrap().certificates[name].clone();
            crate::certificate::reconcile::reconcile(Arc::new(DeserializeGuard(Ok(cert))), self.ctx.clone())
                .await
                .unwrap();
        }
        self.sync(cluster);
    }

    fn sync(&mut self, cluster: &Arc<Mutex<Cluster>>) {
        let mut c = cluster.lock().unwrap();
        for event in std::mem::take(&mut c.secret_events) {
            self.ctx.verdicts.observe(&event, certificate_of);
            self.ctx.issuer_ca_key_pairs.observe(&event);
        }
        for issuer in c.issuers.values() {
            self.issuers
                .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(issuer.clone()))));
        }
        for cert in c.certificates.values() {
            self.certificates
                .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(cert.clone()))));
        }
    }
}

fn leaf(mounted: &Mounted) -> CertificateInfo {
    parse_certificate_chain(mounted.tls_crt.as_bytes())
        .unwrap()
        .remove(0)
}

fn roots(mounted: &Mounted) -> Vec<String> {
    parse_certificate_chain(mounted.ca_crt.as_bytes())
        .unwrap()
        .into_iter()
        .map(|c| c.fingerprint_sha256)
        .collect()
}

fn handshake(client: &Mounted, server: &Mounted, server_workload: &str) -> Result<(), mtls::Refusal> {
    let mut server_side = mtls::server(server);
    let mut client_side = mtls::client(client, &format!("{server_workload}.apps.svc"));
    mtls::handshake(&mut client_side, &mut server_side)
}

#[derive(Default)]
struct Report {
    /// Handshakes that failed: when, who, and why.
    failures: Vec<String>,
    handshakes: usize,
}

/// Runs `steps` steps, each followed by mutual TLS between the workloads both ways, each
/// side's copy fresh or `lag` old.
async fn run(
    controller: &mut Controller,
    cluster: &Arc<Mutex<Cluster>>,
    steps: usize,
    lag: SignedDuration,
    report: &mut Report,
) {
    for _ in 0..steps {
        controller.step(cluster).await;
        let mut c = cluster.lock().unwrap();
        for (client, server) in [("frontend", "backend"), ("backend", "frontend")] {
            for client_age in [SignedDuration::ZERO, lag] {
                for server_age in [SignedDuration::ZERO, lag] {
                    let (Some(client_view), Some(server_view)) = (
                        c.mounted(&format!("{client}-tls"), c.now - client_age),
                        c.mounted(&format!("{server}-tls"), c.now - server_age),
                    ) else {
                        continue;
                    };
                    report.handshakes += 1;
                    if let Err(why) = handshake(&client_view, &server_view, server) {
                        report.failures.push(format!(
                            "{}: {client} ({client_age:#} old) -> {server} ({server_age:#} old): {why:?}",
                            c.now
                        ));
                    }
                }
            }
        }
        c.now += STEP;
    }
}

fn root_secret(not_before: Timestamp) -> Secret {
    // The same name both times: a renewed root Certificate keeps its subject.
    ca_secret(ROOT_SECRET, NAMESPACE, "demo root CA", not_before, 365)
}

#[tokio::test]
async fn a_root_rotation_through_an_intermediate_reissues_each_certificate_once_and_never_fails_a_handshake()
{
    // rustls checks validity against the real clock: simulate the last few hours.
    let start =
        Timestamp::from_second((Timestamp::now() - SignedDuration::from_hours(3)).as_second()).unwrap();
    let mut intermediate = certificate(INTERMEDIATE, "root-ca", &[]);
    intermediate.spec.secret_name = INTERMEDIATE.into();
    intermediate.spec.dns_names = None;
    intermediate.spec.is_ca = Some(true);
    intermediate.spec.common_name = Some("demo intermediate CA".into());
    intermediate.spec.duration = Some("2160h".into());
    let mut certificates = BTreeMap::from([(INTERMEDIATE.to_owned(), intermediate)]);
    for name in WORKLOADS {
        certificates.insert(
            name.to_owned(),
            certificate(name, INTERMEDIATE, &[&format!("{name}.apps.svc")]),
        );
    }
    for cert in certificates.values_mut() {
        cert.metadata.resource_version = Some("1".into());
    }
    let issuers = ISSUERS
        .iter()
        .map(|name| {
            let mut issuer = ca_issuer(name, name);
            issuer.metadata.resource_version = Some("1".into());
            ((*name).to_owned(), issuer)
        })
        .collect();
    let mut cluster = Cluster {
        secrets: BTreeMap::new(),
        configmaps: BTreeMap::new(),
        history: BTreeMap::new(),
        certificates,
        issuers,
        issuer_events: BTreeMap::new(),
        phases: BTreeMap::new(),
        secret_events: Vec::new(),
        next_version: 10,
        now: start,
    };
    cluster.store_secret(root_secret(start - SignedDuration::from_hours(24)));
    let cluster = Arc::new(Mutex::new(cluster));
    let mut controller = Controller::start(&cluster);
    // A copy just younger than the propagation delay: the slowest kubelet the delay allows.
    let lag = SETTINGS.propagation_delay - STEP;
    let mut report = Report::default();
    run(&mut controller, &cluster, 12, lag, &mut report).await;
    let old_root = {
        let c = cluster.lock().unwrap();
        for name in ISSUERS {
            let status = c.issuers[name].status.clone().unwrap_or_default();
            assert_eq!(status.trust_anchors.len(), 1, "{name}: {status:?}");
        }
        c.issuers["root-ca"].status.clone().unwrap().trust_anchors[0]
            .fingerprint_sha256
            .clone()
    };
    let before: BTreeMap<&str, Arc<Mounted>> = {
        let c = cluster.lock().unwrap();
        WORKLOADS
            .iter()
            .map(|w| (*w, c.history[&format!("{w}-tls")].last().unwrap().1.clone()))
            .collect()
    };
    assert!(report.failures.is_empty(), "{:#?}", report.failures);

    {
        let mut c = cluster.lock().unwrap();
        let renewed = root_secret(start - SignedDuration::from_hours(24));
        c.store_secret(renewed);
    }
    // Two rotations of at most 20 + 30 + 20 s each, one after the other, and a margin.
    run(&mut controller, &cluster, 60, lag, &mut report).await;
    let Report { failures, handshakes } = report;

    assert!(handshakes > 200, "{handshakes} handshakes");
    assert!(
        failures.is_empty(),
        "{} of {handshakes} handshakes failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let c = cluster.lock().unwrap();
    let new_root = c.issuers["root-ca"].status.clone().unwrap().trust_anchors[0]
        .fingerprint_sha256
        .clone();
    assert_ne!(new_root, old_root);
    for name in ISSUERS {
        let status = c.issuers[name].status.clone().unwrap_or_default();
        assert_eq!(status.rotation, None, "{name}: the rotation ended");
        assert_eq!(status.trust_anchors.len(), 1, "{name}");
        assert_eq!(status.trust_anchors[0].role, TrustAnchorRole::Current);
        assert_eq!(status.trust_anchors[0].fingerprint_sha256, new_root, "{name}");
        assert_eq!(
            c.issuer_events.get(name).cloned().unwrap_or_default(),
            ["RotationStarted", "TrustDistributed", "RotationCompleted"],
            "{name}: one Event per phase"
        );
        let mut phases: Vec<Option<RotationPhase>> = Vec::new();
        for p in &c.phases[name] {
            if phases.last() != Some(p) {
                phases.push(*p);
            }
        }
        assert_eq!(
            phases,
            [
                None,
                Some(RotationPhase::Distributing),
                Some(RotationPhase::Reissuing),
                Some(RotationPhase::Retiring),
                None
            ],
            "{name}"
        );
    }
    // Each certificate under the root was issued twice: before and once for the rotation.
    for (name, writes) in &c.history {
        let serials: BTreeSet<String> = writes.iter().map(|(_, m)| leaf(m).serial_hex).collect();
        assert_eq!(serials.len(), 2, "{name}: {serials:?}");
        let last = &writes.last().unwrap().1;
        assert_eq!(
            roots(last),
            [new_root.as_str()],
            "{name} trusts the new root alone"
        );
    }
    for (name, cert) in &c.certificates {
        assert_eq!(cert.status.as_ref().and_then(|s| s.revision), Some(2), "{name}");
    }
    // A workload still presenting its first certificate is refused.
    for (i, name) in WORKLOADS.iter().enumerate() {
        let peer = WORKLOADS[(i + 1) % WORKLOADS.len()];
        let now = c.history[&format!("{name}-tls")].last().unwrap().1.clone();
        let stale = Mounted {
            tls_crt: before[name].tls_crt.clone(),
            tls_key: before[name].tls_key.clone(),
            ca_crt: now.ca_crt.clone(),
        };
        let peer_now = c.history[&format!("{peer}-tls")].last().unwrap().1.clone();
        assert!(handshake(&stale, &peer_now, peer).is_err(), "{name}");
        assert!(handshake(&now, &peer_now, peer).is_ok(), "{name}");
    }
}
