//! CA rotation, simulated end to end: the real issuer and Certificate reconcilers run against
//! an in-memory API server on a simulated clock while a root CA is replaced by one with a new
//! key, and workloads complete mutual TLS (rustls) with copies of their Secrets as old as a slow
//! kubelet may give them.
//!
//! This module is the fixture the scenarios share: the in-memory API server ([`Cluster`],
//! holding any number of issuers, with their Events and rotation phases kept per issuer), a
//! controller process driving the reconcilers over its watch caches ([`Controller`]), and the
//! TLS helpers. The scenarios: [`single_issuer`] (one issuer, five workloads) and [`hierarchy`]
//! (root → intermediate → two workloads, in the quickstart's shape).

mod hierarchy;
mod single_issuer;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Method, Response, StatusCode};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use kube::client::Body;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use serde_json::Value;

use crate::api::{Certificate, ClusterIssuer, Issuer, IssuerStatus, RotationPhase};
use crate::certificate::secret::certificate_of;
use crate::context::Context;
use crate::issuer::rotation::RotationSettings;
use crate::pki::tests::mtls::{self, Mounted, Refusal};
use crate::pki::{CertificateInfo, parse_certificate_chain};
use crate::telemetry::metrics::Caches;
use crate::testing::*;

/// The root CA Secret, the one the scenarios replace. No pod mounts it: its writes are not
/// kept in [`Cluster::history`].
const ROOT_SECRET: &str = "root-ca";

/// The keystore password of the simulations' workloads that ask for keystores.
const SIMULATION_PASSWORD: &str = "changeit";

/// The Event reasons of an issuer's rotation.
const ROTATION_EVENTS: [&str; 4] = [
    "RotationStarted",
    "TrustDistributed",
    "RotationCompleted",
    "EmergencyRotation",
];

/// A moment a few hours ago, in whole seconds: rustls checks validity against the real clock,
/// so the simulations play the last few hours.
fn simulated_start() -> Timestamp {
    let start = Timestamp::now() - SignedDuration::from_hours(3);
    Timestamp::from_second(start.as_second()).unwrap()
}

/// What the in-memory API server holds.
struct Cluster {
    secrets: BTreeMap<String, Secret>,
    configmaps: BTreeMap<String, Value>,
    /// Every write of each Secret but the root's: when, and what a pod mounting it would see.
    history: BTreeMap<String, Vec<(Timestamp, Arc<Mounted>)>>,
    certificates: BTreeMap<String, Certificate>,
    issuers: BTreeMap<String, Issuer>,
    /// The order in which a controller step reconciles the issuers, then the Certificates.
    issuer_order: Vec<String>,
    certificate_order: Vec<String>,
    /// Per issuer, its Event reasons in order.
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
    /// A cluster at `now` holding `issuers` and `certificates` (each at resourceVersion 1),
    /// which a controller step reconciles in the order given, and the root CA Secret `root`.
    fn new(
        now: Timestamp,
        issuers: Vec<Issuer>,
        certificates: Vec<Certificate>,
        root: Secret,
    ) -> Arc<Mutex<Self>> {
        let name = |meta: &kube::core::ObjectMeta| meta.name.clone().unwrap_or_default();
        let mut cluster = Cluster {
            secrets: BTreeMap::new(),
            configmaps: BTreeMap::new(),
            history: BTreeMap::new(),
            certificates: BTreeMap::new(),
            issuers: BTreeMap::new(),
            issuer_order: issuers.iter().map(|i| name(&i.metadata)).collect(),
            certificate_order: certificates.iter().map(|c| name(&c.metadata)).collect(),
            issuer_events: BTreeMap::new(),
            phases: BTreeMap::new(),
            secret_events: Vec::new(),
            next_version: 10,
            now,
        };
        for mut issuer in issuers {
            issuer.metadata.resource_version = Some("1".into());
            cluster.issuers.insert(name(&issuer.metadata), issuer);
        }
        for mut cert in certificates {
            cert.metadata.resource_version = Some("1".into());
            cluster.certificates.insert(name(&cert.metadata), cert);
        }
        cluster.store_secret(root);
        Arc::new(Mutex::new(cluster))
    }

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
            // Istio's plug-in CA keys, where asked for, follow the rotation write by write.
            let has = |key: &str| secret.data.as_ref().is_some_and(|d| d.contains_key(key));
            // A truststore, where asked for, holds exactly ca.crt's roots at every write:
            // both during a rotation's overlap.
            if has("truststore.p12") {
                let bytes = secret_data(&to_json(&secret), "truststore.p12");
                let store = crate::keystore::pkcs12::read(&bytes, Some(SIMULATION_PASSWORD)).unwrap();
                let mut trusted: Vec<Vec<u8>> = store.certificates.into_iter().map(|c| c.der).collect();
                let mut roots: Vec<Vec<u8>> = parse_certificate_chain(text("ca.crt").as_bytes())
                    .unwrap()
                    .into_iter()
                    .map(|c| c.der)
                    .collect();
                trusted.sort();
                roots.sort();
                assert_eq!(trusted, roots, "{name}: truststore.p12 holds ca.crt's roots");
            }
            if has("root-cert.pem") {
                assert_eq!(
                    text("root-cert.pem"),
                    text("ca.crt"),
                    "{name}: root-cert.pem is ca.crt"
                );
                let chain = parse_certificate_chain(text("cert-chain.pem").as_bytes()).unwrap();
                let own = parse_certificate_chain(text("ca-cert.pem").as_bytes()).unwrap();
                let tls = parse_certificate_chain(text("tls.crt").as_bytes()).unwrap();
                assert_eq!(
                    own[0].der, tls[0].der,
                    "{name}: ca-cert.pem is the CA's own certificate"
                );
                assert_eq!(chain[0].der, tls[0].der, "{name}: cert-chain.pem begins with it");
                let root = chain.last().unwrap();
                assert!(root.is_signed_by(root), "{name}: cert-chain.pem ends at a root");
                assert_eq!(text("ca-key.pem"), text("tls.key"), "{name}: ca-key.pem");
            }
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
            // The issuer's CRL ConfigMap (revocation): kept, not looked at here.
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
                if event["regarding"]["kind"] == "Issuer" {
                    let issuer = event["regarding"]["name"].as_str().unwrap_or_default();
                    self.issuer_events
                        .entry(issuer.to_owned())
                        .or_default()
                        .push(event["reason"].as_str().unwrap_or_default().to_owned());
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

    /// What workload `name` mounts once its kubelet has caught up: its Secret's last write.
    fn current(&self, name: &str) -> Arc<Mounted> {
        self.history[&format!("{name}-tls")].last().unwrap().1.clone()
    }

    /// Issuer `name`'s status, empty before its first write.
    fn issuer_status(&self, name: &str) -> IssuerStatus {
        self.issuers[name].status.clone().unwrap_or_default()
    }

    /// Issuer `name`'s rotation Events (no other), in order.
    fn rotation_events(&self, name: &str) -> Vec<String> {
        let events = self.issuer_events.get(name).into_iter().flatten();
        events
            .filter(|reason| ROTATION_EVENTS.contains(&reason.as_str()))
            .cloned()
            .collect()
    }

    /// Issuer `name`'s rotation phases as its status writes went through them, each change once.
    fn phase_changes(&self, name: &str) -> Vec<Option<RotationPhase>> {
        let mut phases: Vec<Option<RotationPhase>> = Vec::new();
        for p in &self.phases[name] {
            if phases.last() != Some(p) {
                phases.push(*p);
            }
        }
        phases
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
    certificates: reflector::store::Writer<crate::certificate::cached::CachedCertificate>,
}

impl Controller {
    fn start(cluster: &Arc<Mutex<Cluster>>, settings: RotationSettings) -> Self {
        let (client, handle) = mock_client();
        serve(handle, cluster.clone());
        let (issuer_store, issuers) = reflector::store::<DeserializeGuard<Issuer>>();
        let (certificate_store, certificates) =
            reflector::store::<crate::certificate::cached::CachedCertificate>();
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

    /// Reconciles each issuer, then each Certificate, once and in the cluster's order, as
    /// woken by the watches and their requeues, with the watches' news delivered before each.
    async fn step(&mut self, cluster: &Arc<Mutex<Cluster>>) {
        let (issuers, certificates) = {
            let c = cluster.lock().unwrap();
            (c.issuer_order.clone(), c.certificate_order.clone())
        };
        for name in &issuers {
            self.sync(cluster);
            let issuer = cluster.lock().unwrap().issuers[name].clone();
            crate::issuer::reconcile::reconcile(Arc::new(DeserializeGuard(Ok(issuer))), self.ctx.clone())
                .await
                .unwrap();
        }
        for name in &certificates {
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
                .apply_watcher_event(&watcher::Event::Apply(cert.clone().into()));
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

/// The fingerprints of the roots in `ca.crt`, in order.
fn roots(mounted: &Mounted) -> Vec<String> {
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
