//! The whole controller (`certkeeper::runner::run`: every watch, cache and reconcile) at
//! 10,000 Certificates with their Secrets. This process is a stand-in API server over plain
//! HTTP on loopback; the controller runs in a child process of its own, so its resident memory
//! is its own. Two runs, as a cluster would see them:
//!
//! 1. issue: 10,000 Certificates under one CA Issuer and no Secrets; the controller issues
//!    them all. Reports the time, certs/s (the stand-in answers at once, so this is the
//!    controller's own speed on a machine it shares with the stand-in), the requests by kind
//!    per Certificate, and the controller's peak resident memory while /metrics is scraped
//!    every 500 ms (as `certkeeper-load` samples it on a cluster).
//! 2. restart: a new controller over what run 1 left (10,000 valid Secrets, Ready statuses).
//!    Reports the time until every Certificate was looked at, that nothing was re-issued, the
//!    requests, and the settled controller's resident memory before and after /metrics
//!    scrapes (one, then three).
//!
//! The stand-in sends what a kube-apiserver 1.35 sends, from objects captured on one
//! (`benches/fixtures/`, see its README): every object with its uid, creationTimestamp,
//! generation, resourceVersion and managedFields; each Certificate as `kubectl apply` created
//! it (kubectl's last-applied annotation), then with the status the controller wrote and that
//! write's managedFields entry; Secrets with the metadata certkeeper applied plus the server's,
//! whole on a GET, as PartialObjectMetadata on a metadata-only list or watch; Events answered
//! with the object created. Lists as the server answers the watcher's: kube-runtime 5 lists
//! (`ListWatch`, never `sendInitialEvents`) in pages of 500 and, with a limit set, kube-core
//! leaves out `resourceVersion=0` even for `any_semantic()`, so every list is read from etcd in
//! pages with `continue` and `remainingItemCount`; a `resourceVersion=0` list would be served
//! whole, the limit ignored, as the watch cache does. Watches stay open
//! and send every change after the listed version (the controller's own writes echo back, as
//! on a cluster), a BOOKMARK every `BOOKMARK_INTERVAL` when asked for, and end after
//! `timeoutSeconds`.
//!
//! Run: `cargo bench --bench controller_memory` (prints figures; bytes, not criterion times).
//! `COUNT=1000` runs a smaller fleet; `FOREIGN=10000` adds TLS Secrets certkeeper did not issue
//! (the certificate inventory's); `CONTROLLER_ARGS="--inventory=false"` adds to the controller's
//! command line; `HOLD_SECONDS=N` holds the restarted controller N s
//! before measuring it (time to attach a profiler or `gdb`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certkeeper::pki::{CertificateTemplate, KeyAlgorithm, KeyEncoding, KeySpec, PrivateKey, Usage};
use futures::StreamExt;
use futures::channel::mpsc;
use http::{Method, Request, Response, StatusCode};
use hyper::body::{Bytes, Frame};
use serde_json::{Value, json};

const NAMESPACE: &str = "apps";
const CRN: &str = "certkeeper-system";

/// A real API server sends a bookmark about once a minute (60 s apart in the capture); the
/// stand-in sends one every second, so that each run of a few seconds sees several.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);

/// The captures (`benches/fixtures/README.md`): objects of namespace `bench-capture`, made
/// for Certificate `svc-00000`; each object here is the capture with its own names.
mod captured {
    pub const NAMESPACE: &str = "bench-capture";
    pub const CERTIFICATE_NAME: &str = "svc-00000";
    /// `CERTIFICATE_APPLIED` was captured from a second Certificate, named so.
    pub const CERTIFICATE_APPLIED_NAME: &str = "svc-00001";
    pub const CERTIFICATE_APPLIED: &str = include_str!("fixtures/certificate-applied.json");
    pub const CERTIFICATE_READY: &str = include_str!("fixtures/certificate-ready.json");
    /// A Certificate `certkeeper-load` created (typed POST: no last-applied annotation), Ready.
    pub const CERTIFICATE_BY_LOAD: &str = include_str!("fixtures/certificate-ready-created-by-load.json");
    pub const LOAD_NAMESPACE: &str = "certkeeper-load-ooqteq";
    pub const LOAD_NAME: &str = "cert-42";
    pub const ISSUER_READY: &str = include_str!("fixtures/issuer-ready.json");
    pub const SECRET: &str = include_str!("fixtures/secret-metadata-full-get.json");
    pub const CA_SECRET: &str = include_str!("fixtures/ca-secret-partial-object-metadata.json");
    pub const CRL_CONFIG_MAP: &str = include_str!("fixtures/crl-configmap-metadata.json");
    pub const EVENT: &str = include_str!("fixtures/event.json");
    pub const NAMESPACE_OBJECT: &str = include_str!("fixtures/namespace.json");
}

/// `FOREIGN=N`: N TLS Secrets certkeeper did not issue (as cert-manager writes them: a leaf of
/// its own in `tls.crt`, one shared root in `ca.crt`), which the certificate inventory reads
/// once each. Run with and without to see what they add.
fn foreign() -> usize {
    std::env::var("FOREIGN")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Foreign TLS Secret `i` in namespace `default`, with the shared root `ca_pem`.
fn foreign_secret(i: usize, uid: String, ca_pem: &str) -> Value {
    let key = PrivateKey::generate(KeySpec {
        algorithm: KeyAlgorithm::Ecdsa,
        size: 256,
    })
    .expect("leaf key");
    let now = jiff::Timestamp::now();
    let name = format!("legacy-{i:05}");
    let template = CertificateTemplate {
        common_name: Some(format!("{name}.default.svc")),
        dns_names: vec![
            format!("{name}.default.svc"),
            format!("{name}.default.svc.cluster.local"),
        ],
        not_before: now - jiff::SignedDuration::from_hours(24),
        not_after: now + jiff::SignedDuration::from_hours(24 * 90),
        ..Default::default()
    };
    let leaf = certkeeper::pki::sign_self_signed(&template, &key).expect("leaf certificate");
    let key_pem = key.to_pem(KeyEncoding::Pkcs8).expect("leaf key PEM");
    json!({"kind": "Secret", "apiVersion": "v1", "type": "kubernetes.io/tls",
           "metadata": {"name": format!("{name}-tls"), "namespace": "default", "uid": uid,
                        "creationTimestamp": now.to_string(),
                        "annotations": {"cert-manager.io/certificate-name": name,
                                        "cert-manager.io/issuer-name": "ca", "cert-manager.io/issuer-kind": "Issuer",
                                        "cert-manager.io/common-name": format!("{name}.default.svc")},
                        "labels": {"controller.cert-manager.io/fao": "true"}},
           "data": {"tls.crt": b64(leaf.chain_pem.as_bytes()), "tls.key": b64(key_pem.as_bytes()),
                    "ca.crt": b64(ca_pem.as_bytes())}})
}

fn count() -> usize {
    std::env::var("COUNT")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(10_000)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The kinds the controller lists, watches, reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Resource {
    Certificates,
    Issuers,
    ClusterIssuers,
    CertificateRevocations,
    Bundles,
    CertificatePolicies,
    Secrets,
    ConfigMaps,
    Namespaces,
    Events,
}

impl Resource {
    fn from_plural(plural: &str) -> Option<Self> {
        Some(match plural {
            "certificates" => Self::Certificates,
            "issuers" => Self::Issuers,
            "clusterissuers" => Self::ClusterIssuers,
            "certificaterevocations" => Self::CertificateRevocations,
            "bundles" => Self::Bundles,
            "certificatepolicies" => Self::CertificatePolicies,
            "secrets" => Self::Secrets,
            "configmaps" => Self::ConfigMaps,
            "namespaces" => Self::Namespaces,
            "events" => Self::Events,
            _ => return None,
        })
    }

    /// apiVersion and kind, as lists and bookmarks name them.
    fn type_meta(self) -> (&'static str, &'static str) {
        match self {
            Self::Certificates => ("certkeeper.io/v1", "Certificate"),
            Self::Issuers => ("certkeeper.io/v1", "Issuer"),
            Self::ClusterIssuers => ("certkeeper.io/v1", "ClusterIssuer"),
            Self::CertificateRevocations => ("certkeeper.io/v1", "CertificateRevocation"),
            Self::Bundles => ("certkeeper.io/v1", "Bundle"),
            Self::CertificatePolicies => ("certkeeper.io/v1", "CertificatePolicy"),
            Self::Secrets => ("v1", "Secret"),
            Self::ConfigMaps => ("v1", "ConfigMap"),
            Self::Namespaces => ("v1", "Namespace"),
            Self::Events => ("events.k8s.io/v1", "Event"),
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Self::Certificates => "certificates",
            Self::Issuers => "issuers",
            Self::ClusterIssuers => "clusterissuers",
            Self::CertificateRevocations => "certificaterevocations",
            Self::Bundles => "bundles",
            Self::CertificatePolicies => "certificatepolicies",
            Self::Secrets => "secrets",
            Self::ConfigMaps => "configmaps",
            Self::Namespaces => "namespaces",
            Self::Events => "events",
        }
    }
}

/// One stored object: the JSON a GET answers, the JSON a metadata-only request gets, and
/// what selectors look at.
struct Stored {
    json: Vec<u8>,
    partial: Vec<u8>,
    version: u64,
    labels: BTreeMap<String, String>,
    secret_type: String,
}

impl Stored {
    fn new(object: &Value) -> Self {
        let metadata = object["metadata"].clone();
        let version = metadata["resourceVersion"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let labels = metadata["labels"]
            .as_object()
            .map(|labels| {
                labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let partial =
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata});
        Self {
            json: serde_json::to_vec(object).unwrap_or_default(),
            partial: serde_json::to_vec(&partial).unwrap_or_default(),
            version,
            labels,
            secret_type: object["type"].as_str().unwrap_or_default().to_owned(),
        }
    }

    fn object(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or_default()
    }
}

/// What a list or a watch selects: a namespace, a label selector, a field selector.
#[derive(Clone, Default)]
struct Selection {
    namespace: Option<String>,
    labels: Vec<(String, Option<String>, bool)>,
    fields: Vec<(String, String)>,
}

impl Selection {
    fn new(namespace: Option<&str>, query: &BTreeMap<String, String>) -> Self {
        let terms = |name: &str| -> Vec<String> {
            query
                .get(name)
                .map(|s| {
                    s.split(',')
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        // `key`, `!key`, `key=value`, `key==value`, `key!=value`: what the controller sends.
        let labels = terms("labelSelector")
            .into_iter()
            .map(|term| {
                if let Some((k, v)) = term.split_once("!=") {
                    (k.to_owned(), Some(v.to_owned()), false)
                } else if let Some((k, v)) = term.split_once('=') {
                    (k.to_owned(), Some(v.trim_start_matches('=').to_owned()), true)
                } else if let Some(k) = term.strip_prefix('!') {
                    (k.to_owned(), None, false)
                } else {
                    (term, None, true)
                }
            })
            .collect();
        let fields = terms("fieldSelector")
            .into_iter()
            .filter_map(|term| {
                let (k, v) = term.split_once('=')?;
                Some((k.to_owned(), v.trim_start_matches('=').to_owned()))
            })
            .collect();
        Self {
            namespace: namespace.map(str::to_owned),
            labels,
            fields,
        }
    }

    fn selects(&self, namespace: &str, name: &str, stored: &Stored) -> bool {
        if self.namespace.as_deref().is_some_and(|ns| ns != namespace) {
            return false;
        }
        let labels_match = self.labels.iter().all(|(key, value, equal)| {
            let found = stored.labels.get(key);
            match value {
                None => found.is_some() == *equal,
                Some(value) => (found == Some(value)) == *equal,
            }
        });
        let fields_match = self.fields.iter().all(|(field, value)| match field.as_str() {
            "type" => &stored.secret_type == value,
            "metadata.name" => name == value,
            "metadata.namespace" => namespace == value,
            _ => true,
        });
        labels_match && fields_match
    }
}

/// An open watch: what it selects, and where its events go.
struct Watch {
    resource: Resource,
    selection: Selection,
    metadata_only: bool,
    sender: mpsc::UnboundedSender<Bytes>,
}

/// What the stand-in API server holds, as etcd does; and its open watches.
#[derive(Default)]
struct State {
    objects: BTreeMap<(Resource, String, String), Stored>,
    version: u64,
    uids: u64,
    watches: Vec<Watch>,
}

/// A captured object given the names of Certificate `name` in the bench's namespace (every
/// occurrence, kubectl's last-applied copy included) and a uid of its own.
fn from_capture(captured: &str, name: &str, uid: String) -> Value {
    let text = captured
        .replace(captured::CERTIFICATE_NAME, name)
        .replace(captured::CERTIFICATE_APPLIED_NAME, name)
        .replace(captured::NAMESPACE, NAMESPACE);
    let mut object: Value = serde_json::from_str(&text).expect("a captured object");
    object["metadata"]["uid"] = uid.into();
    object
}

/// The managedFields entries of a capture whose manager is certkeeper writing `subresource`.
fn certkeeper_entry(captured: &str, subresource: Option<&str>) -> Vec<Value> {
    let object: Value = serde_json::from_str(captured).expect("a captured object");
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["manager"] == "certkeeper" && e["subresource"].as_str() == subresource)
        .cloned()
        .collect()
}

/// Now, to the second, as managedFields and creationTimestamps show it.
fn now() -> String {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

/// Puts certkeeper's `entries` (times set to now) in place of its entries for the same
/// subresource, first, as the API server orders them after a write.
fn record_manager(object: &mut Value, entries: &[Value]) {
    let mut fields: Vec<Value> = object["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for entry in entries {
        fields.retain(|e| !(e["manager"] == entry["manager"] && e["subresource"] == entry["subresource"]));
        let mut entry = entry.clone();
        entry["time"] = now().into();
        fields.insert(0, entry);
    }
    object["metadata"]["managedFields"] = fields.into();
}

impl State {
    fn uid(&mut self) -> String {
        self.uids += 1;
        format!("6f1c2a9e-1b2c-4d5e-8f90-{:012x}", self.uids)
    }

    fn get(&self, resource: Resource, namespace: &str, name: &str) -> Option<&Stored> {
        self.objects
            .get(&(resource, namespace.to_owned(), name.to_owned()))
    }

    /// Stores `object` at the next resourceVersion and tells the watches that select it.
    fn put(&mut self, resource: Resource, mut object: Value) -> Vec<u8> {
        self.version += 1;
        object["metadata"]["resourceVersion"] = self.version.to_string().into();
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        let stored = Stored::new(&object);
        let key = (resource, namespace, name);
        let event = match self.objects.contains_key(&key) {
            true => "MODIFIED",
            false => "ADDED",
        };
        self.watches.retain(|watch| {
            if watch.resource != resource || !watch.selection.selects(&key.1, &key.2, &stored) {
                return !watch.sender.is_closed();
            }
            let object = match watch.metadata_only {
                true => &stored.partial,
                false => &stored.json,
            };
            watch.sender.unbounded_send(watch_event(event, object)).is_ok()
        });
        let json = stored.json.clone();
        self.objects.insert(key, stored);
        json
    }

    /// Certificate `i`, as `kubectl apply` created it; or, with `CERTIFICATES=load`, as
    /// `certkeeper-load` did (to compare with a run of it on a cluster).
    fn create_certificate(&mut self, i: usize) {
        let uid = self.uid();
        let certificate = match std::env::var("CERTIFICATES").is_ok_and(|c| c == "load") {
            false => from_capture(captured::CERTIFICATE_APPLIED, &format!("svc-{i:05}"), uid),
            true => {
                let text = captured::CERTIFICATE_BY_LOAD
                    .replace(captured::LOAD_NAMESPACE, NAMESPACE)
                    .replace(&format!("\"{}", captured::LOAD_NAME), &format!("\"cert-{i}"));
                let mut certificate: Value = serde_json::from_str(&text).expect("a captured Certificate");
                certificate["metadata"]["uid"] = uid.into();
                certificate["spec"]["issuerRef"]["name"] = "ca".into();
                // As it was created: before the controller wrote its status.
                if let Some(object) = certificate.as_object_mut() {
                    object.remove("status");
                }
                if let Some(fields) = certificate["metadata"]["managedFields"].as_array_mut() {
                    fields.retain(|e| e["manager"] != "certkeeper");
                }
                certificate
            }
        };
        self.put(Resource::Certificates, certificate);
    }
}

/// One line of a watch response.
fn watch_event(kind: &str, object: &[u8]) -> Bytes {
    let mut line = Vec::with_capacity(object.len() + 32);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    line.into()
}

/// Requests by `METHOD kind`.
#[derive(Default)]
struct Counts(Mutex<BTreeMap<String, usize>>);

impl Counts {
    fn add(&self, what: String) {
        *self.0.lock().unwrap().entry(what).or_default() += 1;
    }
    fn get(&self, what: &str) -> usize {
        self.0.lock().unwrap().get(what).copied().unwrap_or(0)
    }
}

fn b64(bytes: &[u8]) -> Value {
    serde_json::to_value(k8s_openapi::ByteString(bytes.to_vec())).expect("base64")
}

/// The CA Secret, as `kubectl create secret tls` made the captured one, with a key of its own.
fn ca_secret(uid: String) -> Value {
    let key = PrivateKey::generate(KeySpec {
        algorithm: KeyAlgorithm::Ecdsa,
        size: 256,
    })
    .expect("CA key");
    let now = jiff::Timestamp::now();
    let template = CertificateTemplate {
        common_name: Some("Bench Root CA".into()),
        not_before: now - jiff::SignedDuration::from_hours(1),
        not_after: now + jiff::SignedDuration::from_hours(24 * 365),
        is_ca: true,
        usages: vec![Usage::DigitalSignature, Usage::CertSign, Usage::CrlSign],
        ..Default::default()
    };
    let root = certkeeper::pki::sign_self_signed(&template, &key).expect("CA certificate");
    let key_pem = key.to_pem(KeyEncoding::Pkcs8).expect("CA key PEM");
    let captured = from_capture(captured::CA_SECRET, captured::CERTIFICATE_NAME, uid);
    json!({"kind": "Secret", "apiVersion": "v1", "metadata": captured["metadata"], "type": "kubernetes.io/tls",
           "data": {"tls.crt": b64(root.chain_pem.as_bytes()), "tls.key": b64(key_pem.as_bytes())}})
}

fn initial_state() -> State {
    let mut state = State::default();
    for namespace in [NAMESPACE, CRN, "default", "kube-system"] {
        let uid = state.uid();
        let object = serde_json::from_str::<Value>(
            &captured::NAMESPACE_OBJECT.replace(captured::NAMESPACE, namespace),
        );
        let mut object = object.expect("a captured namespace");
        object["metadata"]["uid"] = uid.into();
        state.put(Resource::Namespaces, object);
    }
    let uid = state.uid();
    let secret = ca_secret(uid);
    let ca_pem = secret["data"]["tls.crt"].clone();
    state.put(Resource::Secrets, secret);
    let ca_pem: k8s_openapi::ByteString = serde_json::from_value(ca_pem).expect("the root's PEM");
    let ca_pem = String::from_utf8_lossy(&ca_pem.0).into_owned();
    for i in 0..foreign() {
        let uid = state.uid();
        state.put(Resource::Secrets, foreign_secret(i, uid, &ca_pem));
    }
    // The Issuer as kubectl apply created it: no status yet, nor certkeeper's entry for it.
    let uid = state.uid();
    let mut issuer = from_capture(captured::ISSUER_READY, captured::CERTIFICATE_NAME, uid);
    if let Some(object) = issuer.as_object_mut() {
        object.remove("status");
    }
    if let Some(fields) = issuer["metadata"]["managedFields"].as_array_mut() {
        fields.retain(|e| e["manager"] != "certkeeper");
    }
    state.put(Resource::Issuers, issuer);
    for i in 0..count() {
        state.create_certificate(i);
    }
    let certificates = state
        .objects
        .keys()
        .filter(|(r, _, _)| *r == Resource::Certificates);
    assert_eq!(certificates.count(), count(), "one stored Certificate each");
    state
}

/// The query's parameters, percent-decoded.
fn parameters(query: &str) -> BTreeMap<String, String> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                    match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(b) => out.push(b),
                        None => out.extend_from_slice(&bytes[i..i + 3]),
                    }
                    i += 3;
                }
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (!k.is_empty()).then(|| (decode(k), decode(v)))
        })
        .collect()
}

/// What a request addresses: `/api/v1/...` or `/apis/<group>/<version>/...`.
struct Target {
    resource: Resource,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn target(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let rest = match segments.as_slice() {
        ["api", "v1", rest @ ..] => rest,
        ["apis", _, _, rest @ ..] => rest,
        _ => return None,
    };
    let owned = |s: Option<&&str>| s.map(|s| (*s).to_owned());
    match rest {
        ["namespaces"] => Some(Target {
            resource: Resource::Namespaces,
            namespace: None,
            name: None,
            subresource: None,
        }),
        ["namespaces", name] => Some(Target {
            resource: Resource::Namespaces,
            namespace: None,
            name: Some((*name).to_owned()),
            subresource: None,
        }),
        ["namespaces", namespace, plural, rest @ ..] => Some(Target {
            resource: Resource::from_plural(plural)?,
            namespace: Some((*namespace).to_owned()),
            name: owned(rest.first()),
            subresource: owned(rest.get(1)),
        }),
        [plural, rest @ ..] => Some(Target {
            resource: Resource::from_plural(plural)?,
            namespace: None,
            name: owned(rest.first()),
            subresource: owned(rest.get(1)),
        }),
        [] => None,
    }
}

/// A failure `Status` about the object `target` names, as the API server words it.
fn failure(target: &Target, code: StatusCode, reason: &str, message: &str) -> (StatusCode, Vec<u8>) {
    let name = target.name.clone().unwrap_or_default();
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": message, "reason": reason,
                      "details": {"name": name, "kind": target.resource.plural()}, "code": code.as_u16()});
    (code, serde_json::to_vec(&body).unwrap_or_default())
}

/// The API server's 404.
fn not_found(target: &Target) -> (StatusCode, Vec<u8>) {
    let (plural, name) = (target.resource.plural(), target.name.clone().unwrap_or_default());
    failure(
        target,
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{plural} \"{name}\" not found"),
    )
}

/// The API server's answer to a write whose resourceVersion precondition the object does not meet.
fn conflict(target: &Target) -> (StatusCode, Vec<u8>) {
    let (plural, name) = (target.resource.plural(), target.name.clone().unwrap_or_default());
    let message = format!(
        "Operation cannot be fulfilled on {plural} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
    );
    failure(target, StatusCode::CONFLICT, "Conflict", &message)
}

/// A list as the API server answers kube-runtime's watcher: with `resourceVersion=0` the whole
/// list from the watch cache, whatever the limit (as kube-apiserver 1.35 answered in the
/// capture); otherwise a page of `limit` from the `continue` offset, with the count left.
fn list(state: &State, target: &Target, query: &BTreeMap<String, String>, metadata_only: bool) -> Vec<u8> {
    let selection = Selection::new(target.namespace.as_deref(), query);
    let selected: Vec<&Stored> = state
        .objects
        .iter()
        .filter(|((resource, namespace, name), stored)| {
            *resource == target.resource && selection.selects(namespace, name, stored)
        })
        .map(|(_, stored)| stored)
        .collect();
    let from_cache = query.get("resourceVersion").is_some_and(|v| v == "0");
    let start = match from_cache {
        true => 0,
        false => query
            .get("continue")
            .and_then(|c| c.parse::<usize>().ok())
            .unwrap_or(0)
            .min(selected.len()),
    };
    let end = match (
        from_cache,
        query.get("limit").and_then(|l| l.parse::<usize>().ok()),
    ) {
        (false, Some(limit)) if limit > 0 => (start + limit).min(selected.len()),
        _ => selected.len(),
    };
    let (api_version, kind) = target.resource.type_meta();
    let (api_version, kind) = match metadata_only {
        true => (
            "meta.k8s.io/v1".to_owned(),
            "PartialObjectMetadataList".to_owned(),
        ),
        false => (api_version.to_owned(), format!("{kind}List")),
    };
    let mut metadata = json!({"resourceVersion": state.version.to_string()});
    if end < selected.len() {
        metadata["continue"] = end.to_string().into();
        metadata["remainingItemCount"] = (selected.len() - end).into();
    }
    let mut body =
        serde_json::to_vec(&json!({"kind": kind, "apiVersion": api_version, "metadata": metadata}))
            .unwrap_or_default();
    body.pop();
    body.extend_from_slice(b",\"items\":[");
    for (i, stored) in selected[start..end].iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(match metadata_only {
            true => &stored.partial,
            false => &stored.json,
        });
    }
    body.extend_from_slice(b"]}");
    body
}

/// Opens a watch: the objects changed after the requested resourceVersion first, then every
/// change as it happens, a bookmark every `BOOKMARK_INTERVAL` when asked for; ends after
/// `timeoutSeconds`.
fn watch(
    state: &Arc<Mutex<State>>,
    target: &Target,
    query: &BTreeMap<String, String>,
    metadata_only: bool,
) -> impl futures::Stream<Item = Bytes> + Send + 'static {
    let selection = Selection::new(target.namespace.as_deref(), query);
    let since: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (sender, receiver) = mpsc::unbounded();
    {
        let mut state = state.lock().unwrap();
        let event = match since {
            0 => "ADDED",
            _ => "MODIFIED",
        };
        for ((resource, namespace, name), stored) in &state.objects {
            if *resource == target.resource
                && stored.version > since
                && selection.selects(namespace, name, stored)
            {
                let object = match metadata_only {
                    true => &stored.partial,
                    false => &stored.json,
                };
                let _ = sender.unbounded_send(watch_event(event, object));
            }
        }
        state.watches.push(Watch {
            resource: target.resource,
            selection,
            metadata_only,
            sender: sender.clone(),
        });
    }
    if query.get("allowWatchBookmarks").is_some_and(|b| b == "true") {
        let (api_version, kind) = match metadata_only {
            true => ("meta.k8s.io/v1", "PartialObjectMetadata"),
            false => target.resource.type_meta(),
        };
        let state = state.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(BOOKMARK_INTERVAL);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                // Under the lock, so the bookmark follows every event it vouches for.
                let state = state.lock().unwrap();
                let bookmark = json!({"kind": kind, "apiVersion": api_version,
                                      "metadata": {"resourceVersion": state.version.to_string()}});
                let bookmark = serde_json::to_vec(&bookmark).unwrap_or_default();
                if sender.unbounded_send(watch_event("BOOKMARK", &bookmark)).is_err() {
                    break;
                }
            }
        });
    }
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    receiver.take_until(tokio::time::sleep(timeout))
}

/// Answers one request that is not a watch from `state`.
fn answer(
    state: &Mutex<State>,
    method: &Method,
    target: &Target,
    query: &BTreeMap<String, String>,
    metadata_only: bool,
    body: &[u8],
) -> (StatusCode, Vec<u8>) {
    let mut state = state.lock().unwrap();
    let namespace = target.namespace.clone().unwrap_or_default();
    let body: Value = serde_json::from_slice(body).unwrap_or_default();
    match (method, &target.name, target.subresource.as_deref()) {
        (&Method::GET, None, None) => (StatusCode::OK, list(&state, target, query, metadata_only)),
        (&Method::GET, Some(name), None) => match state.get(target.resource, &namespace, name) {
            Some(stored) => (
                StatusCode::OK,
                match metadata_only {
                    true => stored.partial.clone(),
                    false => stored.json.clone(),
                },
            ),
            None => not_found(target),
        },
        // Status written by server-side apply: the status the controller sent, and the
        // managedFields entry its write makes.
        (&Method::PATCH, Some(name), Some("status")) => {
            let Some(stored) = state.get(target.resource, &namespace, name) else {
                return not_found(target);
            };
            let mut object = stored.object();
            object["status"] = body["status"].clone();
            let captured = match target.resource {
                Resource::Certificates => captured::CERTIFICATE_READY,
                _ => captured::ISSUER_READY,
            };
            record_manager(&mut object, &certkeeper_entry(captured, Some("status")));
            (StatusCode::OK, state.put(target.resource, object))
        }
        // Secrets and CRL ConfigMaps applied: the captured object's server-side metadata
        // (uid, creationTimestamp, managedFields) with what the controller applied.
        (&Method::PATCH, Some(name), None)
            if matches!(target.resource, Resource::Secrets | Resource::ConfigMaps) =>
        {
            let existing = state.get(target.resource, &namespace, name).map(Stored::object);
            // A resourceVersion in the apply is a precondition on the object found (the
            // controller's create-only apply of a first issuance); a created one has none.
            if let (Some(wanted), Some(found)) = (body["metadata"]["resourceVersion"].as_str(), &existing)
                && found["metadata"]["resourceVersion"].as_str() != Some(wanted)
            {
                return conflict(target);
            }
            let created = existing.is_none();
            let certificate = body["metadata"]["labels"]["certkeeper.io/certificate-name"]
                .as_str()
                .unwrap_or(captured::CERTIFICATE_NAME)
                .to_owned();
            let captured = match target.resource {
                Resource::Secrets => captured::SECRET,
                _ => captured::CRL_CONFIG_MAP,
            };
            let uid = state.uid();
            let mut object = existing.unwrap_or_else(|| from_capture(captured, &certificate, uid));
            for field in ["name", "namespace", "labels", "annotations"] {
                if !body["metadata"][field].is_null() {
                    object["metadata"][field] = body["metadata"][field].clone();
                }
            }
            for field in ["type", "data", "binaryData"] {
                if !body[field].is_null() {
                    object[field] = body[field].clone();
                }
            }
            record_manager(&mut object, &certkeeper_entry(captured, None));
            let status = match created {
                true => StatusCode::CREATED,
                false => StatusCode::OK,
            };
            (status, state.put(target.resource, object))
        }
        // An Event created: answered with the object the API server made of it (not kept:
        // nothing watches Events).
        (&Method::POST | &Method::PATCH, _, None) if target.resource == Resource::Events => {
            let uid = state.uid();
            let mut event = from_capture(captured::EVENT, captured::CERTIFICATE_NAME, uid);
            if let Some(fields) = body.as_object() {
                for (field, value) in fields {
                    if field == "metadata" {
                        for (k, v) in value.as_object().into_iter().flatten() {
                            event["metadata"][k] = v.clone();
                        }
                    } else {
                        event[field] = value.clone();
                    }
                }
            }
            state.version += 1;
            event["metadata"]["resourceVersion"] = state.version.to_string().into();
            event["metadata"]["creationTimestamp"] = now().into();
            if let Some(fields) = event["metadata"]["managedFields"].as_array_mut() {
                for entry in fields {
                    entry["time"] = now().into();
                }
            }
            (
                StatusCode::CREATED,
                serde_json::to_vec(&event).unwrap_or_default(),
            )
        }
        _ => not_found(target),
    }
}

/// A response body: whole, or a watch's lines as they come.
type Answer = http_body_util::Either<
    http_body_util::Full<Bytes>,
    http_body_util::StreamBody<
        futures::stream::BoxStream<'static, Result<Frame<Bytes>, std::convert::Infallible>>,
    >,
>;

fn json_response(status: StatusCode, body: Answer) -> Response<Answer> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// Serves `state` over HTTP on `listener` until the process ends.
fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<Mutex<State>>,
    counts: Arc<Counts>,
    last_request: Arc<Mutex<Instant>>,
) {
    use http_body_util::{BodyExt, Either, Full, StreamBody};
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (state, counts, last_request) = (state.clone(), counts.clone(), last_request.clone());
            let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                let (state, counts, last_request) = (state.clone(), counts.clone(), last_request.clone());
                async move {
                    let (parts, body) = request.into_parts();
                    let query = parameters(parts.uri.query().unwrap_or_default());
                    let path = parts.uri.path().to_owned();
                    let metadata_only = parts
                        .headers
                        .get(http::header::ACCEPT)
                        .and_then(|a| a.to_str().ok())
                        .is_some_and(|a| a.contains("as=PartialObjectMetadata"));
                    if path == "/version" {
                        let version = json!({"major": "1", "minor": "35", "gitVersion": "v1.35.6-stand-in",
                                             "gitCommit": "", "gitTreeState": "", "buildDate": "", "goVersion": "",
                                             "compiler": "", "platform": "linux/amd64"});
                        let bytes = serde_json::to_vec(&version).unwrap_or_default();
                        return Ok::<_, std::convert::Infallible>(json_response(
                            StatusCode::OK,
                            Either::Left(Full::new(bytes.into())),
                        ));
                    }
                    let Some(target) = target(&path) else {
                        return Ok(json_response(
                            StatusCode::NOT_FOUND,
                            Either::Left(Full::default()),
                        ));
                    };
                    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
                        let lines = watch(&state, &target, &query, metadata_only)
                            .map(|line| Ok(Frame::data(line)))
                            .boxed();
                        return Ok(json_response(
                            StatusCode::OK,
                            Either::Right(StreamBody::new(lines)),
                        ));
                    }
                    *last_request.lock().unwrap() = Instant::now();
                    let kind = match target.subresource.as_deref() {
                        Some("status") => "status",
                        _ => target.resource.plural(),
                    };
                    counts.add(format!("{} {kind}", parts.method));
                    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let (status, bytes) =
                        answer(&state, &parts.method, &target, &query, metadata_only, &body);
                    Ok(json_response(status, Either::Left(Full::new(bytes.into()))))
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

/// The controller: the `certkeeper controller` binary in a child process, with a kubeconfig
/// naming the stand-in.
struct Controller {
    child: std::process::Child,
    metrics_port: u16,
    _kubeconfig: tempfile::NamedTempFile,
}

impl Controller {
    fn start(api: std::net::SocketAddr) -> Self {
        use std::io::Write;
        let mut kubeconfig = tempfile::NamedTempFile::new().expect("kubeconfig");
        write!(
            kubeconfig,
            "apiVersion: v1\nkind: Config\nclusters: [{{name: bench, cluster: {{server: 'http://{api}'}}}}]\n\
             users: [{{name: bench, user: {{}}}}]\n\
             contexts: [{{name: bench, context: {{cluster: bench, user: bench, namespace: {NAMESPACE}}}}}]\n\
             current-context: bench\n"
        )
        .expect("kubeconfig");
        let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        // `CONTROLLER_WRAPPER="valgrind --tool=massif"` (or heaptrack) runs it under a profiler.
        let log = std::env::var("CONTROLLER_LOG").ok();
        let wrapper = std::env::var("CONTROLLER_WRAPPER").unwrap_or_default();
        let mut command: Vec<&str> = wrapper.split_whitespace().collect();
        command.push(env!("CARGO_BIN_EXE_certkeeper"));
        let child = std::process::Command::new(command[0])
            .args(&command[1..])
            .args([
                "controller",
                "--cluster-resource-namespace",
                CRN,
                "--metrics-bind-address",
            ])
            .arg(format!("127.0.0.1:{metrics_port}"))
            // Any free port: the bench reads no CRL.
            .args(["--pki-bind-address", "127.0.0.1:0"])
            // `CONTROLLER_ARGS="--inventory=false"`: the controller without what it names.
            .args(
                std::env::var("CONTROLLER_ARGS")
                    .unwrap_or_default()
                    .split_whitespace(),
            )
            .env("KUBECONFIG", kubeconfig.path())
            // `CONTROLLER_LOG=debug` shows the controller's log (RUST_LOG's syntax).
            .env("RUST_LOG", log.as_deref().unwrap_or("warn"))
            .stderr(match log {
                Some(_) => std::process::Stdio::inherit(),
                None => std::process::Stdio::null(),
            })
            .spawn()
            .expect("certkeeper controller");
        Self {
            child,
            metrics_port,
            _kubeconfig: kubeconfig,
        }
    }

    /// The CPU time the controller has used so far (user and system), in seconds.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // After the command's closing parenthesis: state is field 3, utime 14 and stime 15.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // Clock ticks are 100 per second on Linux.
        (ticks(11) + ticks(12)) as f64 / 100.0
    }

    fn status(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with(field))?.to_owned();
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .map_or(0, |kib| kib * 1024)
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        // SIGTERM first, so that a profiler wrapping the controller writes its report.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a controller over `state` until `done` says the work is over and no request came for
/// a second; returns it (still running) and the time the work took. With `sample`, /metrics
/// is scraped every 500 ms meanwhile, as `certkeeper-load` samples the controller's memory.
async fn run_controller(
    state: Arc<Mutex<State>>,
    counts: Arc<Counts>,
    sample: bool,
    done: impl Fn(&Counts) -> bool,
) -> (Controller, Duration) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let api = listener.local_addr().expect("address");
    let last_request = Arc::new(Mutex::new(Instant::now()));
    serve(listener, state, counts.clone(), last_request.clone());
    let started = Instant::now();
    let controller = Controller::start(api);
    let mut next_sample = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if sample && Instant::now() >= next_sample {
            scrape(controller.metrics_port).await;
            next_sample = Instant::now() + Duration::from_millis(500);
        }
        let quiet = last_request.lock().unwrap().elapsed() > Duration::from_secs(1);
        if done(&counts) && quiet {
            break;
        }
    }
    (controller, started.elapsed() - Duration::from_secs(1))
}

fn report_counts(counts: &Counts, per: usize) {
    let counts = counts.0.lock().unwrap();
    let line: Vec<String> = counts
        .iter()
        .map(|(what, n)| format!("{what} {n} ({:.2} each)", *n as f64 / per as f64))
        .collect();
    println!("  requests: {}", line.join(", "));
}

/// One /metrics scrape; its text.
async fn scrape(port: u16) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return String::new();
    };
    let _ = stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

/// `process_resident_memory_bytes` as a scrape reports it (measured while the scrape's text
/// is in memory).
fn reported_resident(scrape: &str) -> u64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

async fn bench() {
    let n = count();
    let state = Arc::new(Mutex::new(initial_state()));

    let counts = Arc::new(Counts::default());
    // A first issuance reads no Secret (its apply only creates one); each foreign Secret is read
    // once by the inventory.
    let (controller, elapsed) = run_controller(state.clone(), counts.clone(), true, |c| {
        c.get("PATCH status") >= n && c.get("GET secrets") >= foreign()
    })
    .await;
    println!(
        "issue: {n} Certificates issued in {:.1} s ({:.0} certs/s; the stand-in answers at once)",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
    report_counts(&counts, n);
    println!(
        "  controller peak resident (/metrics scraped every 500 ms): {:.1} MiB",
        mib(controller.status("VmHWM:"))
    );
    println!(
        "  controller CPU (user and system) so far: {:.2} s",
        controller.cpu_seconds()
    );
    drop(controller);

    let counts = Arc::new(Counts::default());
    let (controller, elapsed) = run_controller(state, counts.clone(), false, |c| {
        c.get("GET secrets") >= n + foreign()
    })
    .await;
    println!(
        "restart: {n} valid Certificates looked at in {:.1} s ({:.0}/s); re-issued: {}",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        counts.get("PATCH secrets")
    );
    report_counts(&counts, n);
    println!(
        "  controller CPU (user and system) so far: {:.2} s",
        controller.cpu_seconds()
    );
    if let Some(hold) = std::env::var("HOLD_SECONDS").ok().and_then(|s| s.parse().ok()) {
        println!("  holding {hold} s (pid {})", controller.child.id());
        tokio::time::sleep(Duration::from_secs(hold)).await;
    }
    let settled = controller.status("VmRSS:");
    let (anonymous, file) = (controller.status("RssAnon:"), controller.status("RssFile:"));
    let peak = controller.status("VmHWM:");
    let text = scrape(controller.metrics_port).await;
    let after_one = controller.status("VmRSS:");
    // Prometheus scrapes again and again; the second scrape's text lands beside the first's.
    let mut last = text.clone();
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        last = scrape(controller.metrics_port).await;
    }
    println!(
        "  controller resident, settled: {:.1} MiB (peak {:.1} MiB); after one /metrics scrape ({:.1} MiB of text): {:.1} MiB; after three: {:.1} MiB (process_resident_memory_bytes said {:.1} MiB)",
        mib(settled),
        mib(peak),
        mib(text.len() as u64),
        mib(after_one),
        mib(controller.status("VmRSS:")),
        mib(reported_resident(&last)),
    );
    // What of it is the heap and stacks, and what the binary's code and data read from disk.
    println!(
        "  of the settled figure: {:.1} MiB anonymous (heap, stacks), {:.1} MiB file-backed (the binary's code and data)",
        mib(anonymous),
        mib(file),
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(bench());
    // Held-open watches would keep the runtime busy; the figures are out.
    std::process::exit(0);
}
