//! Test support shared by the controllers' tests: a mocked API server that asserts every
//! request in order (the kube-rs controller-rs pattern), a context around it, and fixtures;
//! and, in `api_server`, an in-memory API server with lists and watches for tests that run the
//! whole controller.

pub mod api_server;
pub mod softhsm;

use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::client::Body;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde_json::{Value, json};

use crate::api::{
    Certificate, CertificateSpec, ClusterIssuer, ClusterIssuerSpec, Issuer, IssuerRef, IssuerSpec,
    IssuerStatus,
};
use crate::certificate::expiry::DEFAULT_THRESHOLDS;
use crate::context::Context;
use crate::telemetry::metrics::{Caches, Metrics};

pub const NAMESPACE: &str = "apps";
pub const CLUSTER_RESOURCE_NAMESPACE: &str = "certkeeper-system";

pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// The mocked API server: each `expect` takes the next request the reconciler made, checks its
/// method and path, and answers it.
pub struct ApiServer {
    handle: Handle,
    /// Whether each request must be granted by the controller's RBAC (`access::API_ACCESS`)
    /// and each patch be its server-side apply. Off for the CLI, which runs with the user's
    /// own rights and field manager.
    controller_access: bool,
}

/// One request as the reconciler sent it.
pub struct Seen {
    pub method: Method,
    pub path: String,
    /// The query string, `""` when there is none.
    pub query: String,
    pub body: Value,
    send: tower_test::mock::SendResponse<Response<Body>>,
}

impl Seen {
    pub fn respond(self, status: StatusCode, body: Value) {
        let bytes = serde_json::to_vec(&body).unwrap();
        self.send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(bytes))
                .unwrap(),
        );
    }

    pub fn ok(self, body: Value) {
        self.respond(StatusCode::OK, body)
    }

    pub fn not_found(self) {
        let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                          "reason": "NotFound", "code": 404, "message": "not found"});
        self.respond(StatusCode::NOT_FOUND, body)
    }

    /// Answers with the request's own body (what a server-side apply returns, near enough).
    /// A create-only apply's resourceVersion is a precondition, not what the object gets.
    pub fn echo(self) {
        let mut body = self.body.clone();
        if body["metadata"]["resourceVersion"] == crate::certificate::secret::NO_OBJECT_HOLDS
            && let Some(metadata) = body["metadata"].as_object_mut()
        {
            metadata.remove("resourceVersion");
        }
        self.ok(body)
    }
}

impl ApiServer {
    /// The next request; asserts method and path (the path without the query string).
    pub async fn expect(&mut self, method: Method, path: &str) -> Seen {
        let seen = self.receive(&format!("{method} {path}")).await;
        assert_eq!(
            (&seen.method, seen.path.as_str()),
            (&method, path),
            "unexpected request; body: {}",
            seen.body
        );
        seen
    }

    /// The next request, which must be one of `allowed` (method and path).
    pub async fn expect_one_of(&mut self, allowed: &[(Method, &str)]) -> Seen {
        let seen = self.receive(&format!("one of {allowed:?}")).await;
        assert!(
            allowed.iter().any(|(m, p)| *m == seen.method && *p == seen.path),
            "unexpected request {} {}; expected one of {allowed:?}",
            seen.method,
            seen.path
        );
        seen
    }

    /// The next request, an Event about an object in `namespace`: created, or, when the same
    /// reason was published about the same object minutes ago, the merge patch with which the
    /// recorder counts it again (an Event series, which keeps the first Event's note).
    pub async fn expect_event(&mut self, namespace: &str) -> Seen {
        let events = format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events");
        let seen = self.receive(&format!("an Event in {namespace}")).await;
        let created = seen.method == Method::POST && seen.path == events;
        let counted = seen.method == Method::PATCH && seen.path.starts_with(&format!("{events}/"));
        assert!(
            created || counted,
            "expected an Event, got {} {}; body: {}",
            seen.method,
            seen.path,
            seen.body
        );
        seen
    }

    /// The next request, checked against the controller's RBAC and server-side apply.
    async fn receive(&mut self, expected: &str) -> Seen {
        let next = tokio::time::timeout(std::time::Duration::from_secs(20), self.handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {expected}"));
        let (request, send) = next.unwrap_or_else(|| panic!("no more requests; expected {expected}"));
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        if self.controller_access {
            assert_granted(&parts);
        }
        // The recorder counts an Event repeated within minutes with a merge patch of its own.
        let event_series = parts.uri.path().starts_with("/apis/events.k8s.io/");
        if self.controller_access && parts.method == Method::PATCH && !event_series {
            let query = parts.uri.query().unwrap_or_default();
            assert!(
                query.contains("fieldManager=certkeeper"),
                "patch without our field manager: {query}"
            );
            assert!(
                query.contains("force=true"),
                "server-side apply must force: {query}"
            );
        }
        Seen {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            body,
            send,
        }
    }

    /// The mock's handle, for a test that answers requests itself.
    pub fn into_handle(self) -> Handle {
        self.handle
    }

    /// Asserts no request is waiting to be answered (call after the reconcile returned).
    pub fn assert_idle(&mut self) {
        use futures::FutureExt;
        if let Some(next) = self.handle.next_request().now_or_never() {
            match next {
                Some((request, _)) => panic!("unexpected request {} {}", request.method(), request.uri()),
                None => panic!("the client is gone"),
            }
        }
    }

    /// Asserts the reconciler made no further request (call after it returned and the
    /// context was dropped).
    pub async fn expect_no_more(mut self) {
        if let Some((request, _)) = self.handle.next_request().await {
            panic!("unexpected request {} {}", request.method(), request.uri());
        }
    }
}

/// What the API server authorizes a request as: group, resource (`resource/subresource`), verb,
/// and the namespace of a namespaced request.
#[derive(Debug)]
pub struct Authorization {
    pub group: String,
    pub resource: String,
    pub verb: &'static str,
    pub namespace: Option<String>,
}

impl Authorization {
    /// Whether `access::API_ACCESS` grants it. The controller of these tests runs in
    /// CLUSTER_RESOURCE_NAMESPACE, the only namespace its own-namespace entries cover.
    pub fn is_granted(&self) -> bool {
        crate::access::API_ACCESS.iter().any(|a| {
            (a.group, a.resource, a.verb) == (self.group.as_str(), self.resource.as_str(), self.verb)
                && (a.scope == crate::access::Scope::Cluster
                    || self.namespace.as_deref() == Some(CLUSTER_RESOURCE_NAMESPACE))
        })
    }
}

/// The authorizations a request needs, derived from method and path as the API server does:
/// GET of a named object → get, of a collection → list (watch with `watch=true`), POST → create,
/// PATCH → patch, PUT → update, DELETE → delete. A server-side apply of an object (not of a
/// subresource) creates it when missing, which the API server authorizes as create: both.
pub fn authorizations(request: &http::request::Parts) -> Vec<Authorization> {
    let path = request.uri.path();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => panic!("not a resource request: {path}"),
    };
    let (namespace, rest) = match rest {
        ["namespaces", namespace, rest @ ..] if !rest.is_empty() => (Some(namespace.to_string()), rest),
        _ => (None, rest),
    };
    let (resource, named) = match rest {
        [resource] => (resource.to_string(), false),
        [resource, _name] => (resource.to_string(), true),
        [resource, _name, subresource] => (format!("{resource}/{subresource}"), true),
        _ => panic!("not a resource request: {path}"),
    };
    let query = request.uri.query().unwrap_or_default();
    let watch = query.split('&').any(|p| p == "watch=true" || p == "watch=1");
    let verb = match (&request.method, named) {
        (&Method::GET, _) if watch => "watch",
        (&Method::GET, true) => "get",
        (&Method::GET, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PATCH, _) => "patch",
        (&Method::PUT, _) => "update",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        (method, _) => panic!("unexpected method {method} {path}"),
    };
    let apply = request
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|c| c == "application/apply-patch+yaml");
    let mut verbs = vec![verb];
    if apply && !resource.contains('/') {
        verbs.push("create");
    }
    verbs
        .into_iter()
        .map(|verb| Authorization {
            group: group.to_owned(),
            resource: resource.clone(),
            verb,
            namespace: namespace.clone(),
        })
        .collect()
}

/// Panics unless `access::API_ACCESS`, and so the RBAC in manifests/, allows the request.
fn assert_granted(request: &http::request::Parts) {
    for needed in authorizations(request) {
        assert!(
            needed.is_granted(),
            "{} {} needs {needed:?}, which access::API_ACCESS (and the RBAC in manifests/) does not grant",
            request.method,
            request.uri
        );
    }
}

/// A context whose client talks to the mocked API server, with the given issuers cached and a
/// fixed clock.
pub fn context(
    issuers: Vec<Issuer>,
    cluster_issuers: Vec<ClusterIssuer>,
    now: Timestamp,
) -> (Arc<Context>, ApiServer) {
    context_with_clock(issuers, cluster_issuers, Arc::new(move || now))
}

/// A context like `context`'s, whose clock is `clock`.
pub fn context_with_clock(
    issuers: Vec<Issuer>,
    cluster_issuers: Vec<ClusterIssuer>,
    clock: crate::context::Clock,
) -> (Arc<Context>, ApiServer) {
    context_with_records(issuers, cluster_issuers, store(Vec::new()), clock)
}

/// A context like `context_with_clock`'s whose cache of CertificateRevocations is `records`
/// (a store the test may keep writing to, as the watch would).
pub fn context_with_records(
    issuers: Vec<Issuer>,
    cluster_issuers: Vec<ClusterIssuer>,
    records: crate::cluster::revocations::Revocations,
    clock: crate::context::Clock,
) -> (Arc<Context>, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    // As the issuer controller leaves them: an issuer given without a status is cached as
    // judged Ready (Certificates sign only under issuers whose status says so).
    let issuers = issuers.into_iter().map(|mut i| {
        i.status
            .get_or_insert_with(|| judged_ready(i.metadata.generation));
        i
    });
    let cluster_issuers = cluster_issuers.into_iter().map(|mut i| {
        i.status
            .get_or_insert_with(|| judged_ready(i.metadata.generation));
        i
    });
    let caches = Caches {
        certificates: cached_store(Vec::new()),
        issuers: store(issuers.collect()),
        cluster_issuers: store(cluster_issuers.collect()),
        revocations: records,
        cluster_resource_namespace: CLUSTER_RESOURCE_NAMESPACE.into(),
        clock,
    };
    let ctx = Context::new(
        client,
        caches,
        CLUSTER_RESOURCE_NAMESPACE.into(),
        DEFAULT_THRESHOLDS.to_vec(),
    );
    let server = ApiServer {
        handle,
        controller_access: true,
    };
    (Arc::new(ctx), server)
}

/// An issuer's status once its controller has judged it Ready at `generation`.
pub fn judged_ready(generation: Option<i64>) -> IssuerStatus {
    let ready = crate::api::condition(
        "Ready",
        crate::api::ConditionStatus::True,
        "KeyPairVerified",
        "judged Ready",
        generation,
        ts("2026-01-01T00:00:00Z"),
    );
    IssuerStatus {
        conditions: vec![ready],
        ..IssuerStatus::default()
    }
}

/// A client for the CLI's tests, whose default namespace is NAMESPACE, and the mocked API
/// server behind it. Requests are not checked against the controller's RBAC: the CLI acts
/// with the rights of whoever runs it.
pub fn cli_client() -> (Client, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = ApiServer {
        handle,
        controller_access: false,
    };
    (Client::new(service, NAMESPACE), server)
}

/// Metrics over caches holding these objects, at a fixed clock.
pub fn metrics(
    certificates: Vec<Certificate>,
    issuers: Vec<Issuer>,
    cluster_issuers: Vec<ClusterIssuer>,
) -> Metrics {
    Metrics::new(Caches {
        certificates: cached_store(certificates),
        issuers: store(issuers),
        cluster_issuers: store(cluster_issuers),
        revocations: store(Vec::new()),
        cluster_resource_namespace: CLUSTER_RESOURCE_NAMESPACE.into(),
        clock: Arc::new(|| ts("2026-11-23T12:00:00Z")),
    })
}

/// The certificate controller's cache holding these Certificates.
pub fn cached_store(certificates: Vec<Certificate>) -> Store<crate::certificate::cached::CachedCertificate> {
    let mut writer = reflector::store::Writer::<crate::certificate::cached::CachedCertificate>::default();
    for certificate in certificates {
        writer.apply_watcher_event(&watcher::Event::Apply(certificate.into()));
    }
    writer.as_reader()
}

pub fn store<K>(objects: Vec<K>) -> Store<DeserializeGuard<K>>
where
    K: Resource<DynamicType = ()> + Clone,
    DeserializeGuard<K>: Resource<DynamicType = ()> + Clone,
{
    let mut writer = reflector::store::Writer::<DeserializeGuard<K>>::default();
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(object))));
    }
    writer.as_reader()
}

pub fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

pub fn self_signed_issuer(name: &str) -> Issuer {
    let mut issuer = Issuer::new(
        name,
        IssuerSpec {
            self_signed: Some(Default::default()),
            ca: None,
            require_policy: None,
        },
    );
    issuer.metadata.namespace = Some(NAMESPACE.into());
    issuer
}

pub fn ca_issuer(name: &str, secret: &str) -> Issuer {
    let mut issuer = Issuer::new(
        name,
        IssuerSpec {
            self_signed: None,
            ca: Some(crate::api::CaIssuer {
                secret_name: secret.into(),
                ..Default::default()
            }),
            require_policy: None,
        },
    );
    issuer.metadata.namespace = Some(NAMESPACE.into());
    issuer
}

pub fn ca_cluster_issuer(name: &str, secret: &str) -> ClusterIssuer {
    ClusterIssuer::new(
        name,
        ClusterIssuerSpec {
            issuer: IssuerSpec {
                self_signed: None,
                ca: Some(crate::api::CaIssuer {
                    secret_name: secret.into(),
                    ..Default::default()
                }),
                require_policy: None,
            },
        },
    )
}

/// A Certificate `name` in NAMESPACE for `dns_names`, issued by the Issuer `issuer`.
pub fn certificate(name: &str, issuer: &str, dns_names: &[&str]) -> Certificate {
    let mut cert = Certificate::new(
        name,
        CertificateSpec {
            secret_name: format!("{name}-tls"),
            issuer_ref: IssuerRef {
                name: issuer.into(),
                kind: None,
                group: None,
            },
            dns_names: Some(dns_names.iter().map(|s| s.to_string()).collect()),
            duration: Some("24h".into()),
            ..Default::default()
        },
    );
    cert.metadata.namespace = Some(NAMESPACE.into());
    cert.metadata.uid = Some(format!("uid-{name}"));
    cert.metadata.generation = Some(1);
    cert
}

/// A self-signed CA key pair as a kubernetes.io/tls Secret `name` in `namespace`, valid from
/// `not_before` for `days`.
pub fn ca_secret(name: &str, namespace: &str, common_name: &str, not_before: Timestamp, days: i64) -> Secret {
    use crate::pki::{
        CertificateTemplate, KeyAlgorithm, KeyEncoding, KeySpec, PrivateKey, Usage, sign_self_signed,
    };
    let key = PrivateKey::generate(KeySpec {
        algorithm: KeyAlgorithm::Ecdsa,
        size: 256,
    })
    .unwrap();
    let template = CertificateTemplate {
        common_name: Some(common_name.into()),
        not_before,
        not_after: not_before + jiff::SignedDuration::from_hours(24 * days),
        is_ca: true,
        usages: vec![Usage::DigitalSignature, Usage::CertSign, Usage::CrlSign],
        ..Default::default()
    };
    let issued = sign_self_signed(&template, &key).unwrap();
    let key_pem = key.to_pem(KeyEncoding::Pkcs8).unwrap();
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": "1"},
        "data": {
            "tls.crt": b64(issued.chain_pem.as_bytes()),
            "tls.key": b64(key_pem.as_bytes()),
            "ca.crt": b64(issued.ca_pem.as_bytes()),
        }
    }))
    .unwrap()
}

/// The CA Secret `root-ca` in NAMESPACE that the reconciler tests issue under: a root valid
/// from a day before `now` for a year.
pub fn root_ca(now: Timestamp) -> Secret {
    ca_secret(
        "root-ca",
        NAMESPACE,
        "root",
        now - jiff::SignedDuration::from_hours(24),
        365,
    )
}

/// Answers a status patch as the API server does: the object with its new status. Returns the
/// status written.
pub fn answer_status(seen: Seen, cert: &Certificate) -> Value {
    let status = seen.body["status"].clone();
    let mut object = to_json(cert);
    object["status"] = status.clone();
    seen.ok(object);
    status
}

/// Standard base64, as Kubernetes encodes Secret data in JSON.
pub fn b64(bytes: &[u8]) -> String {
    serde_json::to_value(k8s_openapi::ByteString(bytes.to_vec()))
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

/// Decodes one data key of a Secret given as JSON.
pub fn secret_data(secret: &Value, key: &str) -> Vec<u8> {
    let s: Secret = serde_json::from_value(secret.clone()).unwrap();
    s.data
        .unwrap()
        .get(key)
        .unwrap_or_else(|| panic!("Secret has no {key}"))
        .0
        .clone()
}

pub fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap()
}

/// A stand-in for the API server, for tests that run whole controllers: every list (a GET of a
/// collection) is answered with the items given for its path (none by default) and
/// `resourceVersion` "1", as one page; every watch (`watch=true`) is accepted and then held
/// open with no event, as a real API server holds a quiet watch; a GET of a named object
/// answers 404; a PATCH or POST answers with its own body. Every request must be granted by
/// `access::API_ACCESS`, and each is reported, as `METHOD path`, on the returned channel.
pub fn serve_lists(
    mut handle: Handle,
    items: std::collections::HashMap<String, Vec<Value>>,
) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (seen, requests) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut open_watches = Vec::new();
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            assert_granted(&parts);
            let path = parts.uri.path().to_owned();
            let query = parts.uri.query().unwrap_or_default().to_owned();
            let _ = seen.send(format!("{} {path}", parts.method));
            let respond = |send: tower_test::mock::SendResponse<Response<Body>>, status, body: Vec<u8>| {
                send.send_response(Response::builder().status(status).body(Body::from(body)).unwrap())
            };
            let segments = path.trim_start_matches('/').split('/').count();
            let collection = match path.starts_with("/api/") {
                true => segments % 2 == 1,
                false => segments % 2 == 0,
            };
            match parts.method {
                Method::GET if query.split('&').any(|p| p == "watch=true") => open_watches.push(send),
                Method::GET if collection => {
                    let metadata_only = parts
                        .headers
                        .get(http::header::ACCEPT)
                        .and_then(|a| a.to_str().ok())
                        .is_some_and(|a| a.contains("as=PartialObjectMetadataList"));
                    let (api_version, kind) = match metadata_only {
                        true => ("meta.k8s.io/v1", "PartialObjectMetadataList"),
                        false => ("v1", "List"),
                    };
                    let list = json!({
                        "apiVersion": api_version, "kind": kind,
                        "metadata": {"resourceVersion": "1"},
                        "items": items.get(&path).cloned().unwrap_or_default(),
                    });
                    respond(send, StatusCode::OK, serde_json::to_vec(&list).unwrap());
                }
                Method::GET => {
                    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                        "reason": "NotFound", "code": 404, "message": "not found"});
                    respond(send, StatusCode::NOT_FOUND, serde_json::to_vec(&status).unwrap());
                }
                Method::PATCH | Method::POST => {
                    let bytes = body.collect_bytes().await.unwrap();
                    respond(send, StatusCode::OK, bytes.to_vec());
                }
                other => panic!("unexpected {other} {path}?{query}"),
            }
        }
        drop(open_watches);
    });
    requests
}

/// A client whose requests reach `handle`.
pub fn mock_client() -> (Client, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

/// A Certificate reconcile running in the background while the test plays the API server.
pub type Reconciling =
    tokio::task::JoinHandle<Result<crate::certificate::schedule::Next, crate::error::Error>>;

/// Starts reconciling `cert` with `ctx`.
pub fn spawn_reconcile(cert: &Certificate, ctx: &Arc<Context>) -> Reconciling {
    let guard = Arc::new(DeserializeGuard(Ok(cert.clone())));
    tokio::spawn(crate::certificate::reconcile::reconcile(guard, ctx.clone()))
}

/// Waits for the reconcile `task` to end and checks it made no request beyond those answered.
pub async fn finish_reconcile(
    task: Reconciling,
    ctx: Arc<Context>,
    api: ApiServer,
) -> crate::certificate::schedule::Next {
    let action = task.await.unwrap().unwrap();
    drop(ctx);
    api.expect_no_more().await;
    action
}

/// `cert` with the status `status` (as JSON the reconcile wrote).
pub fn with_status(cert: &Certificate, status: &Value) -> Certificate {
    let mut cert = cert.clone();
    cert.status = Some(serde_json::from_value(status.clone()).unwrap());
    cert
}

/// The controller's settings of the tests that run it whole: two reconciles at once, the
/// default expiry thresholds, no leader election, no required policy, no inventory.
pub fn controller_settings() -> crate::runner::Settings {
    crate::runner::Settings {
        cluster_resource_namespace: Some(CLUSTER_RESOURCE_NAMESPACE.into()),
        concurrency: 2,
        expiry_thresholds: crate::certificate::expiry::DEFAULT_THRESHOLDS.to_vec(),
        rotation: Default::default(),
        leader_election: None,
        require_policy: false,
        inventory: None,
        pkcs11: Default::default(),
    }
}
