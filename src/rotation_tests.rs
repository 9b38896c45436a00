//! CA rotation, simulated end to end: the real issuer and Certificate reconcilers run against
//! an in-memory API server on a simulated clock while the issuer's root CA is replaced by one
//! with a new key. After every step, every pair of workloads completes a mutual-TLS handshake
//! (rustls), each side mounting a copy of its Secret as old as a slow kubelet may give it (up
//! to the propagation delay). Also: the emergency rotation refuses the old root at once, a
//! restart in mid-rotation resumes it without issuing twice, and the same simulation with the
//! stages skipped does break handshakes, so the check is known to bite.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use http::{Method, Response, StatusCode};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use kube::client::Body;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use serde_json::Value;

use crate::api::{
    Certificate, ClusterIssuer, DISTRUST_PREVIOUS_REQUESTED_AT, Issuer, IssuerStatus, RotationPhase,
    TrustAnchorRole,
};
use crate::certificate::secret::certificate_of;
use crate::context::Context;
use crate::issuer::rotation::RotationSettings;
use crate::pki::tests::mtls::{self, Mounted, Refusal};
use crate::pki::{CertificateInfo, parse_certificate_chain};
use crate::telemetry::metrics::Caches;
use crate::testing::*;

const CA_SECRET: &str = "root-ca";
const WORKLOADS: [&str; 5] = ["orders", "payments", "catalog", "cart", "search"];
const STEP: SignedDuration = SignedDuration::from_secs(15);

/// What the in-memory API server holds.
struct Cluster {
    secrets: BTreeMap<String, Secret>,
    configmaps: BTreeMap<String, Value>,
    /// Every write of each workload Secret: when, and what a pod mounting it would see.
    history: BTreeMap<String, Vec<(Timestamp, Arc<Mounted>)>>,
    certificates: BTreeMap<String, Certificate>,
    issuer: Issuer,
    /// Issuer Event reasons, in order.
    issuer_events: Vec<String>,
    /// The rotation phase after each issuer status write.
    phases: Vec<Option<RotationPhase>>,
    secret_events: Vec<watcher::Event<PartialObjectMeta<Secret>>>,
    next_version: u64,
    now: Timestamp,
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
        if name != CA_SECRET {
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
                    None => (
                        StatusCode::NOT_FOUND,
                        serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                       "reason": "NotFound", "code": 404}),
                    ),
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
                    _,
                    "status",
                ],
            ) => {
                let patch: Value = serde_json::from_slice(body).unwrap();
                let version = self.version();
                let status: IssuerStatus = serde_json::from_value(patch["status"].clone()).unwrap();
                self.phases.push(status.rotation.as_ref().map(|r| r.phase));
                self.issuer.status = Some(status);
                self.issuer.metadata.resource_version = Some(version);
                (StatusCode::OK, to_json(&self.issuer))
            }
            // The issuer's CRL ConfigMap (revocation): kept, not looked at here.
            (&Method::GET, ["api", "v1", "namespaces", _, "configmaps", name]) => {
                match self.configmaps.get(*name) {
                    Some(configmap) => (StatusCode::OK, configmap.clone()),
                    None => (
                        StatusCode::NOT_FOUND,
                        serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                           "reason": "NotFound", "code": 404}),
                    ),
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
                if event["regarding"]["kind"] == "Issuer" {
                    self.issuer_events
                        .push(event["reason"].as_str().unwrap_or_default().to_owned());
                }
                (StatusCode::OK, event)
            }
            _ => panic!("unexpected {method} {path}"),
        }
    }

    /// What workload `name` mounts at `at`: its Secret as last written at or before then.
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

/// A controller process: its context, and the writers of its caches (its watches).
struct Controller {
    ctx: Arc<Context>,
    issuers: reflector::store::Writer<DeserializeGuard<Issuer>>,
    certificates: reflector::store::Writer<DeserializeGuard<Certificate>>,
}

impl Controller {
    fn start(cluster: &Arc<Mutex<Cluster>>, settings: RotationSettings) -> Self {
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
        ctx.rotation = settings;
        Self {
            ctx: Arc::new(ctx),
            issuers,
            certificates,
        }
    }

    /// Delivers what the watches would have seen, then reconciles the issuer and every
    /// Certificate once, as woken by the watches and their requeues.
    async fn step(&mut self, cluster: &Arc<Mutex<Cluster>>) {
        self.sync(cluster);
        let issuer = cluster.lock().unwrap().issuer.clone();
        crate::issuer::reconcile::reconcile(Arc::new(DeserializeGuard(Ok(issuer))), self.ctx.clone())
            .await
            .unwrap();
        for name in WORKLOADS {
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
        self.issuers
            .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(c.issuer.clone()))));
        for cert in c.certificates.values() {
            self.certificates
                .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(cert.clone()))));
        }
    }
}

/// Whether workload `client` (mounting `client_view`) and workload `server` complete mTLS.
fn handshake(client_view: &Mounted, server_view: &Mounted, server: &str) -> Result<(), Refusal> {
    let mut server_side = mtls::server(server_view);
    let mut client_side = mtls::client(client_view, &format!("{server}.apps.svc"));
    mtls::handshake(&mut client_side, &mut server_side)
}

/// A workload still presenting `old`'s certificate (a stolen key, a pod never restarted)
/// while trusting what `current` trusts.
fn presenting(old: &Mounted, current: &Mounted) -> Mounted {
    Mounted {
        tls_crt: old.tls_crt.clone(),
        tls_key: old.tls_key.clone(),
        ca_crt: current.ca_crt.clone(),
    }
}

fn leaf(mounted: &Mounted) -> CertificateInfo {
    parse_certificate_chain(mounted.tls_crt.as_bytes())
        .unwrap()
        .remove(0)
}

fn roots(mounted: &Mounted) -> BTreeSet<String> {
    parse_certificate_chain(mounted.ca_crt.as_bytes())
        .unwrap()
        .into_iter()
        .map(|c| c.fingerprint_sha256)
        .collect()
}

/// What one simulated rotation showed.
#[derive(Default)]
struct Report {
    /// Handshakes that failed: when, who, and why.
    failures: Vec<String>,
    handshakes: usize,
}

/// The simulation: workloads issued under the first root, the root replaced at `rotate_at`
/// (steps from the start), then `steps` steps. `lag` is how old a workload's copy of its
/// Secret may be; every pair is checked with each side fresh and each side as old as that.
struct Simulation {
    cluster: Arc<Mutex<Cluster>>,
    lag: SignedDuration,
    start: Timestamp,
    checked: HashMap<(usize, usize), bool>,
    report: Report,
}

impl Simulation {
    fn new(lag: SignedDuration) -> Self {
        // rustls checks validity against the real clock: simulate the last few hours.
        let start = Timestamp::now() - SignedDuration::from_hours(3);
        let start = Timestamp::from_second(start.as_second()).unwrap();
        let mut issuer = ca_issuer("ca", CA_SECRET);
        issuer.metadata.resource_version = Some("1".into());
        let certificates = WORKLOADS
            .iter()
            .map(|name| {
                let mut cert = certificate(name, "ca", &[&format!("{name}.apps.svc")]);
                cert.metadata.resource_version = Some("1".into());
                ((*name).to_owned(), cert)
            })
            .collect();
        let mut cluster = Cluster {
            secrets: BTreeMap::new(),
            configmaps: BTreeMap::new(),
            history: BTreeMap::new(),
            certificates,
            issuer,
            issuer_events: Vec::new(),
            phases: Vec::new(),
            secret_events: Vec::new(),
            next_version: 10,
            now: start,
        };
        let root = ca_secret(
            CA_SECRET,
            NAMESPACE,
            "Mesh Root CA 1",
            start - SignedDuration::from_hours(24),
            365,
        );
        cluster.store_secret(root);
        Self {
            cluster: Arc::new(Mutex::new(cluster)),
            lag,
            start,
            checked: HashMap::new(),
            report: Report::default(),
        }
    }

    fn now(&self) -> Timestamp {
        self.cluster.lock().unwrap().now
    }

    fn advance(&self) {
        self.cluster.lock().unwrap().now += STEP;
    }

    /// Replaces the CA Secret with a new root under a new key.
    fn replace_root(&self) {
        let mut c = self.cluster.lock().unwrap();
        let root = ca_secret(
            CA_SECRET,
            NAMESPACE,
            "Mesh Root CA 2",
            self.start - SignedDuration::from_hours(24),
            365,
        );
        c.store_secret(root);
    }

    fn annotate_issuer(&self, key: &str, value: &str) {
        let mut c = self.cluster.lock().unwrap();
        c.issuer
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(key.into(), value.into());
        let version = c.version();
        c.issuer.metadata.resource_version = Some(version);
    }

    /// Every ordered pair of workloads, each side fresh or as old as the lag allows.
    fn check_handshakes(&mut self) {
        let now = self.now();
        let cluster = self.cluster.lock().unwrap();
        let ages = [SignedDuration::ZERO, self.lag];
        for client in WORKLOADS {
            for server in WORKLOADS {
                if client == server {
                    continue;
                }
                for client_age in ages {
                    for server_age in ages {
                        let (Some(c), Some(s)) = (
                            cluster.mounted(&format!("{client}-tls"), now - client_age),
                            cluster.mounted(&format!("{server}-tls"), now - server_age),
                        ) else {
                            continue;
                        };
                        // The same two copies shake hands the same way: check each pair once.
                        let key = (Arc::as_ptr(&c) as usize, Arc::as_ptr(&s) as usize);
                        if let Some(ok) = self.checked.get(&key) {
                            if !ok {
                                self.report.failures.push(format!(
                                    "{now}: {client} ({client_age:#} old) → {server} ({server_age:#} old): refused (as before)"
                                ));
                            }
                            continue;
                        }
                        self.report.handshakes += 1;
                        let result = handshake(&c, &s, server);
                        self.checked.insert(key, result.is_ok());
                        if let Err(why) = result {
                            self.report.failures.push(format!(
                                "{now}: {client} ({client_age:#} old) → {server} ({server_age:#} old): {why:?}"
                            ));
                        }
                    }
                }
            }
        }
    }

    /// Runs `steps` steps of `controller`, checking handshakes after each.
    async fn run(&mut self, controller: &mut Controller, steps: usize) {
        for _ in 0..steps {
            controller.step(&self.cluster).await;
            self.check_handshakes();
            self.advance();
        }
    }

    fn issuer_status(&self) -> IssuerStatus {
        self.cluster
            .lock()
            .unwrap()
            .issuer
            .status
            .clone()
            .unwrap_or_default()
    }

    /// Distinct leaf serials each workload's Secret has held.
    fn serials(&self) -> BTreeMap<String, usize> {
        let c = self.cluster.lock().unwrap();
        c.history
            .iter()
            .map(|(name, writes)| {
                let serials: BTreeSet<String> = writes.iter().map(|(_, m)| leaf(m).serial_hex).collect();
                (name.clone(), serials.len())
            })
            .collect()
    }

    fn current(&self, name: &str) -> Arc<Mounted> {
        let c = self.cluster.lock().unwrap();
        c.history[&format!("{name}-tls")].last().unwrap().1.clone()
    }
}

fn settings() -> RotationSettings {
    RotationSettings {
        propagation_delay: SignedDuration::from_mins(5),
        reissue_window: SignedDuration::from_mins(10),
    }
}

/// Steps that cover `d`.
fn steps(d: SignedDuration) -> usize {
    (d.as_secs() / STEP.as_secs()) as usize
}

#[tokio::test]
async fn a_root_rotation_never_fails_a_handshake_between_slow_reloading_peers() {
    let settings = settings();
    // A copy just younger than the propagation delay: the slowest kubelet the delay allows.
    let lag = settings.propagation_delay - STEP;
    let mut sim = Simulation::new(lag);
    let mut controller = Controller::start(&sim.cluster, settings);
    sim.run(&mut controller, steps(SignedDuration::from_mins(10)))
        .await;
    let first_root = sim.issuer_status().trust_anchors[0].fingerprint_sha256.clone();
    let before: Vec<Arc<Mounted>> = WORKLOADS.iter().map(|w| sim.current(w)).collect();

    sim.replace_root();
    // Distributing, then part of Reissuing; the controller restarts there (fresh caches).
    sim.run(&mut controller, steps(SignedDuration::from_mins(12)))
        .await;
    assert_eq!(
        sim.issuer_status().rotation.map(|r| r.phase),
        Some(RotationPhase::Reissuing),
        "the restart should land in mid-rotation"
    );
    let mut controller = Controller::start(&sim.cluster, settings);
    sim.run(&mut controller, steps(SignedDuration::from_mins(40)))
        .await;

    assert!(
        sim.report.handshakes > 100,
        "{} distinct handshakes",
        sim.report.handshakes
    );
    assert!(
        sim.report.failures.is_empty(),
        "{} of {} handshakes failed:\n{}",
        sim.report.failures.len(),
        sim.report.handshakes,
        sim.report.failures.join("\n")
    );
    let status = sim.issuer_status();
    assert_eq!(status.rotation, None, "the rotation ended");
    assert_eq!(status.trust_anchors.len(), 1);
    assert_eq!(status.trust_anchors[0].role, TrustAnchorRole::Current);
    let new_root = status.trust_anchors[0].fingerprint_sha256.clone();
    assert_ne!(new_root, first_root);
    {
        let c = sim.cluster.lock().unwrap();
        assert_eq!(
            c.issuer_events,
            ["RotationStarted", "TrustDistributed", "RotationCompleted"],
            "one Event per phase"
        );
        let phases: Vec<Option<RotationPhase>> = c.phases.iter().copied().fold(Vec::new(), |mut seen, p| {
            if seen.last() != Some(&p) {
                seen.push(p);
            }
            seen
        });
        assert_eq!(
            phases,
            [
                None,
                Some(RotationPhase::Distributing),
                Some(RotationPhase::Reissuing),
                Some(RotationPhase::Retiring),
                None
            ]
        );
    }
    // Nothing was re-issued more than once: the first certificate and its one successor.
    assert!(
        sim.serials().values().all(|n| *n == 2),
        "serials per Secret: {:?}",
        sim.serials()
    );
    // After it, only the new root is trusted: every Secret holds it alone, and a workload
    // still presenting a certificate under the old root is refused.
    for (i, name) in WORKLOADS.iter().enumerate() {
        let now = sim.current(name);
        assert_eq!(roots(&now), BTreeSet::from([new_root.clone()]), "{name}");
        let peer = WORKLOADS[(i + 1) % WORKLOADS.len()];
        assert!(
            matches!(
                handshake(&presenting(&before[i], &now), &sim.current(peer), peer),
                Err(Refusal::ByServer(_))
            ),
            "{name}'s old certificate is refused"
        );
    }
}

#[tokio::test]
async fn an_emergency_rotation_refuses_the_old_root_at_once() {
    let settings = settings();
    let mut sim = Simulation::new(settings.propagation_delay - STEP);
    let mut controller = Controller::start(&sim.cluster, settings);
    sim.run(&mut controller, steps(SignedDuration::from_mins(5)))
        .await;
    let before: Vec<Arc<Mounted>> = WORKLOADS.iter().map(|w| sim.current(w)).collect();

    sim.replace_root();
    sim.run(&mut controller, 4).await;
    assert_eq!(
        sim.issuer_status().rotation.map(|r| r.phase),
        Some(RotationPhase::Distributing)
    );
    let asked = sim.now().to_string();
    sim.annotate_issuer(DISTRUST_PREVIOUS_REQUESTED_AT, &asked);
    // One step: the issuer drops the old root and every Certificate is re-issued at once.
    controller.step(&sim.cluster).await;
    let status = sim.issuer_status();
    assert_eq!(status.rotation, None);
    assert_eq!(status.trust_anchors.len(), 1);
    let new_root = status.trust_anchors[0].fingerprint_sha256.clone();
    assert_eq!(
        sim.cluster
            .lock()
            .unwrap()
            .issuer_events
            .last()
            .map(String::as_str),
        Some("EmergencyRotation")
    );
    for (i, name) in WORKLOADS.iter().enumerate() {
        let now = sim.current(name);
        assert_eq!(roots(&now), BTreeSet::from([new_root.clone()]), "{name}");
        let peer = WORKLOADS[(i + 1) % WORKLOADS.len()];
        assert!(
            matches!(
                handshake(&presenting(&before[i], &now), &sim.current(peer), peer),
                Err(Refusal::ByServer(_))
            ),
            "{name}'s certificate under the old root is refused at once"
        );
        assert!(handshake(&now, &sim.current(peer), peer).is_ok());
    }
    // A restart afterwards does not re-issue again.
    let mut controller = Controller::start(&sim.cluster, settings);
    sim.run(&mut controller, 4).await;
    assert!(sim.serials().values().all(|n| *n == 2), "{:?}", sim.serials());
}

#[tokio::test]
async fn the_simulation_catches_a_rotation_that_does_not_wait_for_slow_peers() {
    // The same rotation with no propagation delay, and peers whose copies lag five minutes:
    // a re-issued peer meets one that has not yet seen the new root.
    let hasty = RotationSettings {
        propagation_delay: SignedDuration::ZERO,
        reissue_window: SignedDuration::from_mins(1),
    };
    let mut sim = Simulation::new(SignedDuration::from_mins(5));
    let mut controller = Controller::start(&sim.cluster, hasty);
    sim.run(&mut controller, steps(SignedDuration::from_mins(10)))
        .await;
    sim.replace_root();
    sim.run(&mut controller, steps(SignedDuration::from_mins(15)))
        .await;
    assert!(
        !sim.report.failures.is_empty(),
        "an unstaged rotation should have failed handshakes"
    );
}
