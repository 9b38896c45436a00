//! The whole controller (`certkeeper::runner::run`: every watch, cache and reconcile) at
//! 10,000 Certificates with their Secrets. This process is a stand-in API server over plain
//! HTTP on loopback (lists, held-open watches, gets, server-side applies, status patches,
//! Events); the controller runs in a child process of its own, so its resident memory is its
//! own. Two runs, as a cluster would see them:
//!
//! 1. issue: 10,000 Certificates under one CA Issuer and no Secrets; the controller issues
//!    them all. Reports the time, certs/s (the stand-in answers at once, so this is the
//!    controller's own speed on a machine it shares with the stand-in), the requests by kind
//!    per Certificate, and the controller's peak resident memory.
//! 2. restart: a new controller over what run 1 left (10,000 valid Secrets, Ready statuses).
//!    Reports the time until every Certificate was looked at, that nothing was re-issued, the
//!    requests, and the settled controller's resident memory before and after one /metrics
//!    scrape.
//!
//! Run: `cargo bench --bench controller_memory` (prints figures; bytes, not criterion times).
//! `COUNT=1000` runs a smaller fleet.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certkeeper::pki::{CertificateTemplate, KeyAlgorithm, KeyEncoding, KeySpec, PrivateKey, Usage};
use http::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

const NAMESPACE: &str = "apps";
const CRN: &str = "certkeeper-system";

fn count() -> usize {
    std::env::var("COUNT")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(10_000)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// What the stand-in API server holds, as JSON bytes: compact, like etcd.
#[derive(Default)]
struct State {
    certificates: BTreeMap<String, Vec<u8>>,
    secrets: BTreeMap<String, Vec<u8>>,
    issuer: Vec<u8>,
    ca_secret: Vec<u8>,
    next_version: u64,
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

fn certificate(i: usize) -> Value {
    let name = format!("svc-{i:05}");
    json!({
        "apiVersion": "certkeeper.io/v1", "kind": "Certificate",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": format!("6f1c2a9e-1b2c-4d5e-8f90-{i:012}"),
                     "resourceVersion": "1", "generation": 1, "creationTimestamp": "2026-11-23T10:00:00Z"},
        "spec": {
            "secretName": format!("{name}-tls"),
            "dnsNames": [format!("{name}.apps.svc"), format!("{name}.apps.svc.cluster.local")],
            "uris": [format!("spiffe://cluster.local/ns/apps/sa/{name}")],
            "duration": "24h",
            "issuerRef": {"name": "ca", "kind": "Issuer", "group": "certkeeper.io"},
        },
    })
}

fn b64(bytes: &[u8]) -> Value {
    serde_json::to_value(k8s_openapi::ByteString(bytes.to_vec())).expect("base64")
}

fn ca_secret() -> Value {
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
    json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
           "metadata": {"name": "root-ca", "namespace": NAMESPACE, "resourceVersion": "1"},
           "data": {"tls.crt": b64(root.chain_pem.as_bytes()), "tls.key": b64(key_pem.as_bytes())}})
}

fn initial_state() -> State {
    let mut state = State {
        issuer: serde_json::to_vec(&json!({
            "apiVersion": "certkeeper.io/v1", "kind": "Issuer",
            "metadata": {"name": "ca", "namespace": NAMESPACE, "resourceVersion": "1", "generation": 1},
            "spec": {"ca": {"secretName": "root-ca"}},
        }))
        .expect("issuer"),
        ca_secret: serde_json::to_vec(&ca_secret()).expect("CA Secret"),
        next_version: 10,
        ..State::default()
    };
    for i in 0..count() {
        let cert = certificate(i);
        let name = cert["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        state
            .certificates
            .insert(name, serde_json::to_vec(&cert).expect("certificate"));
    }
    state
}

/// The metadata of a stored Secret, as a metadata-only watch lists it.
fn metadata_only(secret: &[u8]) -> Value {
    let mut secret: Value = serde_json::from_slice(secret).unwrap_or_default();
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": secret["metadata"].take()})
}

/// One page of a list, as the API server pages it: `limit` items from the `continue` offset.
fn list(items: Vec<Value>, metadata_only: bool, query: &str) -> Vec<u8> {
    let (api_version, kind) = match metadata_only {
        true => ("meta.k8s.io/v1", "PartialObjectMetadataList"),
        false => ("v1", "List"),
    };
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse::<usize>().ok())
    };
    let start = param("continue").unwrap_or(0).min(items.len());
    let end = param("limit").map_or(items.len(), |limit| (start + limit).min(items.len()));
    let mut metadata = json!({"resourceVersion": "5"});
    if end < items.len() {
        metadata["continue"] = end.to_string().into();
    }
    let page: Vec<Value> = items.into_iter().skip(start).take(end - start).collect();
    serde_json::to_vec(&json!({"apiVersion": api_version, "kind": kind, "metadata": metadata, "items": page}))
        .unwrap_or_default()
}

fn not_found() -> (StatusCode, Vec<u8>) {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                      "reason": "NotFound", "code": 404, "message": "not found"});
    (
        StatusCode::NOT_FOUND,
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

/// Answers one request from `state`; watches are held open by the caller.
fn answer(
    state: &Mutex<State>,
    method: &Method,
    path: &str,
    query: &str,
    accept: &str,
    body: &[u8],
) -> (StatusCode, Vec<u8>) {
    let mut state = state.lock().unwrap();
    let metadata = accept.contains("as=PartialObjectMetadataList");
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::GET, ["version"]) => {
            let version = json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-stand-in",
                                 "gitCommit": "", "gitTreeState": "", "buildDate": "", "goVersion": "",
                                 "compiler": "", "platform": "linux/amd64"});
            (StatusCode::OK, serde_json::to_vec(&version).unwrap_or_default())
        }
        (&Method::GET, ["apis", "certkeeper.io", "v1", "certificates"]) => {
            let items = state
                .certificates
                .values()
                .map(|c| serde_json::from_slice(c).unwrap_or_default())
                .collect();
            (StatusCode::OK, list(items, false, query))
        }
        (&Method::GET, ["apis", "certkeeper.io", "v1", "issuers"]) => (
            StatusCode::OK,
            list(
                vec![serde_json::from_slice(&state.issuer).unwrap_or_default()],
                false,
                query,
            ),
        ),
        (&Method::GET, ["apis", "certkeeper.io", "v1", "clusterissuers"]) => {
            (StatusCode::OK, list(vec![], false, query))
        }
        // No revocations: the records and the CRL ConfigMaps every replica watches are empty.
        (&Method::GET, ["apis", "certkeeper.io", "v1", "certificaterevocations"]) => {
            (StatusCode::OK, list(vec![], false, query))
        }
        (&Method::GET, ["api", "v1", "configmaps"]) => (StatusCode::OK, list(vec![], false, query)),
        // The CA Issuer's CRL ConfigMap: missing, then applied (and not watched back).
        (&Method::PATCH, ["api", "v1", "namespaces", _, "configmaps", _]) => (StatusCode::OK, body.to_vec()),
        (&Method::GET, ["api", "v1", "secrets"]) => {
            let mut items: Vec<Value> = state.secrets.values().map(|s| metadata_only(s)).collect();
            if query.contains("fieldSelector") {
                items.push(metadata_only(&state.ca_secret));
            }
            (StatusCode::OK, list(items, metadata, query))
        }
        (&Method::GET, ["api", "v1", "namespaces", _, "secrets"]) => {
            (StatusCode::OK, list(vec![], metadata, query))
        }
        (&Method::GET, ["api", "v1", "namespaces", _, "secrets", "root-ca"]) => {
            (StatusCode::OK, state.ca_secret.clone())
        }
        (&Method::GET, ["api", "v1", "namespaces", _, "secrets", name]) => match state.secrets.get(*name) {
            Some(secret) => (StatusCode::OK, secret.clone()),
            None => not_found(),
        },
        (&Method::PATCH, ["api", "v1", "namespaces", _, "secrets", name]) => {
            state.next_version += 1;
            let mut secret: Value = serde_json::from_slice(body).unwrap_or_default();
            secret["metadata"]["resourceVersion"] = state.next_version.to_string().into();
            let bytes = serde_json::to_vec(&secret).unwrap_or_default();
            state.secrets.insert((*name).to_owned(), bytes.clone());
            (StatusCode::OK, bytes)
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
            state.next_version += 1;
            let version = state.next_version.to_string();
            let patch: Value = serde_json::from_slice(body).unwrap_or_default();
            let Some(stored) = state.certificates.get_mut(*name) else {
                return not_found();
            };
            let mut cert: Value = serde_json::from_slice(stored).unwrap_or_default();
            cert["status"] = patch["status"].clone();
            cert["metadata"]["resourceVersion"] = version.into();
            *stored = serde_json::to_vec(&cert).unwrap_or_default();
            (StatusCode::OK, stored.clone())
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
            let mut issuer: Value = serde_json::from_slice(&state.issuer).unwrap_or_default();
            let patch: Value = serde_json::from_slice(body).unwrap_or_default();
            issuer["status"] = patch["status"].clone();
            (StatusCode::OK, serde_json::to_vec(&issuer).unwrap_or_default())
        }
        (&Method::POST | &Method::PATCH, ["apis", "events.k8s.io", ..]) => (StatusCode::OK, body.to_vec()),
        _ => not_found(),
    }
}

/// A body that never ends: a watch with nothing to say.
type Answer = http_body_util::Either<
    http_body_util::Full<hyper::body::Bytes>,
    http_body_util::StreamBody<
        futures::stream::Pending<Result<hyper::body::Frame<hyper::body::Bytes>, std::convert::Infallible>>,
    >,
>;

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
                    let query = parts.uri.query().unwrap_or_default().to_owned();
                    if query.contains("watch=true") {
                        let pending = StreamBody::new(futures::stream::pending());
                        return Ok::<_, std::convert::Infallible>(Response::new(Either::Right(pending)));
                    }
                    *last_request.lock().unwrap() = Instant::now();
                    let path = parts.uri.path().to_owned();
                    let kind = path
                        .trim_start_matches('/')
                        .split('/')
                        .rfind(|s| {
                            [
                                "secrets",
                                "certificates",
                                "issuers",
                                "clusterissuers",
                                "events",
                                "status",
                            ]
                            .contains(s)
                        })
                        .unwrap_or("other");
                    counts.add(format!("{} {kind}", parts.method));
                    let accept = parts
                        .headers
                        .get(http::header::ACCEPT)
                        .and_then(|a| a.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    let (status, bytes) = answer(&state, &parts.method, &path, &query, &accept, &body);
                    let mut response: Response<Answer> = Response::new(Either::Left(Full::new(bytes.into())));
                    *response.status_mut() = status;
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    );
                    Ok(response)
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
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_certkeeper"))
            .args([
                "controller",
                "--cluster-resource-namespace",
                CRN,
                "--metrics-bind-address",
            ])
            .arg(format!("127.0.0.1:{metrics_port}"))
            // Any free port: the bench reads no CRL.
            .args(["--pki-bind-address", "127.0.0.1:0"])
            .env("KUBECONFIG", kubeconfig.path())
            .env("RUST_LOG", "warn")
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("certkeeper controller");
        Self {
            child,
            metrics_port,
            _kubeconfig: kubeconfig,
        }
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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a controller over `state` until `done` says the work is over and no request came for
/// a second; returns it (still running) and the time the work took.
async fn run_controller(
    state: Arc<Mutex<State>>,
    counts: Arc<Counts>,
    done: impl Fn(&Counts) -> bool,
) -> (Controller, Duration) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let api = listener.local_addr().expect("address");
    let last_request = Arc::new(Mutex::new(Instant::now()));
    serve(listener, state, counts.clone(), last_request.clone());
    let started = Instant::now();
    let controller = Controller::start(api);
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
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

async fn scrape(port: u16) -> usize {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return 0;
    };
    let _ = stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    response.len()
}

async fn bench() {
    let n = count();
    let state = Arc::new(Mutex::new(initial_state()));

    let counts = Arc::new(Counts::default());
    let (controller, elapsed) =
        run_controller(state.clone(), counts.clone(), |c| c.get("PATCH status") >= n).await;
    println!(
        "issue: {n} Certificates issued in {:.1} s ({:.0} certs/s; the stand-in answers at once)",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
    report_counts(&counts, n);
    println!(
        "  controller peak resident: {:.1} MiB",
        mib(controller.status("VmHWM:"))
    );
    drop(controller);

    let counts = Arc::new(Counts::default());
    let (controller, elapsed) = run_controller(state, counts.clone(), |c| c.get("GET secrets") >= n).await;
    println!(
        "restart: {n} valid Certificates looked at in {:.1} s ({:.0}/s); re-issued: {}",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        counts.get("PATCH secrets")
    );
    report_counts(&counts, n);
    let settled = controller.status("VmRSS:");
    let bytes = scrape(controller.metrics_port).await;
    println!(
        "  controller resident, settled: {:.1} MiB (peak {:.1} MiB); after one /metrics scrape ({:.1} MiB of text): {:.1} MiB",
        mib(settled),
        mib(controller.status("VmHWM:")),
        mib(bytes as u64),
        mib(controller.status("VmRSS:")),
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
