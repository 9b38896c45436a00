//! Faults: the Certificate reconciler driven to convergence against an in-memory API server
//! that keeps state as a real one does (Secrets with resourceVersions, the Certificate and its
//! status, Events) and fails chosen requests the ways a real one fails (500, 503, 504, 429,
//! 409, a connection reset before the request reached it, and an answer lost after the write
//! was made). Each scenario (first issuance, renewal, CA rotation, Secret deleted, spec
//! changed, issuer flapping) runs once with every single request failed by every kind of
//! fault, and under random fault schedules (proptest). After every write and at the end:
//!
//! - a Secret never holds a broken, mismatched or foreign-issuer pair, and is never emptied;
//! - one trigger leads to at most one new certificate (a Secret written whose answer or status
//!   patch was lost is adopted, not issued again);
//! - the status converges to what the Secret holds: Ready, its serial and revision, no failure
//!   counted (an unavailable API server is not a failure of the Certificate);
//! - no panic, and the reconciles converge in a bounded number of rounds, within seconds of
//!   simulated time per fault; no status or Event ever calls an unavailable API server a failed
//!   issuance.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use http::{Method, Response, StatusCode};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use kube::client::Body;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::watcher::Event;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::api::{Certificate, ClusterIssuer, Issuer};
use crate::certificate::reconcile::reconcile;
use crate::certificate::secret::certificate_of;
use crate::context::Context;
use crate::pki::{CertificateInfo, PrivateKey, parse_certificate_chain};
use crate::testing::*;

const T0: &str = "2026-11-23T10:00:00Z";
const CA_SECRET: &str = "root-ca";
const SECRET: &str = "web-tls";

/// How a request fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// An error status; nothing was written.
    Status(u16),
    /// The connection broke before the request reached the server.
    Reset,
    /// The server made the write, then the connection broke before its answer.
    LostAnswer,
    /// A GET of the CA Secret answers 404 (the issuer's CA flaps away and back).
    CaNotFound,
}

const FAULTS: [Fault; 8] = [
    Fault::Status(500),
    Fault::Status(503),
    Fault::Status(504),
    Fault::Status(429),
    Fault::Status(409),
    Fault::Reset,
    Fault::LostAnswer,
    Fault::CaNotFound,
];

/// What the in-memory API server holds and saw.
struct Cluster {
    secrets: BTreeMap<String, Secret>,
    /// Certificates by name.
    certificates: BTreeMap<String, Certificate>,
    next_version: u64,
    /// Requests served so far; the index of the next one.
    served: usize,
    faults: BTreeMap<usize, Fault>,
    /// Besides `faults`: each request fails with this chance (per mille), from this generator.
    random_faults: Option<(u32, Xorshift)>,
    /// Watch events of Secrets not yet delivered to the controller.
    secret_events: Vec<Event<PartialObjectMeta<Secret>>>,
    /// Every certificate a Secret write stored, leaf serial by write (not kept by the soak,
    /// which stores millions).
    stored_serials: Vec<String>,
    keep_serials: bool,
    /// The CA a Secret written now must chain to.
    expected_ca: CertificateInfo,
    /// Invariant violations seen while serving.
    violations: Vec<String>,
}

fn metadata(secret: &Secret) -> PartialObjectMeta<Secret> {
    PartialObjectMeta {
        types: None,
        metadata: secret.metadata.clone(),
        _phantom: Default::default(),
    }
}

fn status_error(code: u16) -> Vec<u8> {
    let reason = match code {
        404 => "NotFound",
        409 => "Conflict",
        429 => "TooManyRequests",
        504 => "Timeout",
        _ => "InternalError",
    };
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                      "reason": reason, "code": code, "message": "injected fault"});
    serde_json::to_vec(&body).unwrap()
}

/// A small deterministic generator for random fault schedules.
#[derive(Clone, Debug)]
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

impl Cluster {
    fn new(secrets: BTreeMap<String, Secret>, certificates: Vec<Certificate>, expected_ca: &Secret) -> Self {
        Self {
            secrets,
            certificates: certificates
                .into_iter()
                .map(|c| (c.metadata.name.clone().unwrap_or_default(), c))
                .collect(),
            next_version: 100,
            served: 0,
            faults: BTreeMap::new(),
            random_faults: None,
            secret_events: Vec::new(),
            stored_serials: Vec::new(),
            keep_serials: true,
            expected_ca: leaf_of_ca(expected_ca),
            violations: Vec::new(),
        }
    }

    /// How request `index` fails, if it does.
    fn fault_at(&mut self, index: usize) -> Option<Fault> {
        if let Some(fault) = self.faults.get(&index) {
            return Some(*fault);
        }
        let (per_mille, generator) = self.random_faults.as_mut()?;
        let roll = generator.next();
        (roll % 1000 < u64::from(*per_mille)).then(|| FAULTS[(roll / 1000) as usize % (FAULTS.len() - 1)])
    }

    fn version(&mut self) -> String {
        self.next_version += 1;
        self.next_version.to_string()
    }

    /// Checks a Secret about to be stored: complete, parseable, its key matching, signed by
    /// the issuer's current CA.
    fn check_secret_write(&mut self, secret: &Secret) {
        let data = |key: &str| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|b| b.0.clone())
                .unwrap_or_default()
        };
        let (crt, key) = (data("tls.crt"), data("tls.key"));
        if crt.is_empty() || key.is_empty() {
            self.violations
                .push("a Secret write without tls.crt or tls.key".into());
            return;
        }
        let leaf = match parse_certificate_chain(&crt) {
            Ok(chain) if !chain.is_empty() => chain[0].clone(),
            _ => {
                self.violations
                    .push("a Secret write with an unparseable tls.crt".into());
                return;
            }
        };
        match PrivateKey::from_pem(&key) {
            Ok(key) if leaf.key_matches(&key) => {}
            _ => self
                .violations
                .push("a Secret write whose key does not match".into()),
        }
        if !leaf.is_signed_by(&self.expected_ca) {
            self.violations.push("a Secret write signed by another CA".into());
        }
        if self.keep_serials {
            self.stored_serials.push(leaf.serial_hex.clone());
        }
    }

    /// Answers one request: the status and body, and whether the write (if any) was made.
    fn answer(&mut self, method: &Method, path: &str, body: &[u8]) -> (StatusCode, Vec<u8>) {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            (&Method::GET, ["api", "v1", "namespaces", _, "secrets", name]) => {
                match self.secrets.get(*name) {
                    Some(secret) => (StatusCode::OK, serde_json::to_vec(secret).unwrap()),
                    None => (StatusCode::NOT_FOUND, status_error(404)),
                }
            }
            (&Method::PATCH, ["api", "v1", "namespaces", _, "secrets", name]) => {
                let mut secret: Secret = serde_json::from_slice(body).unwrap();
                // A resourceVersion in the apply is a precondition on the Secret found.
                if let (Some(wanted), Some(found)) = (
                    secret.metadata.resource_version.as_deref(),
                    self.secrets.get(*name),
                ) && found.metadata.resource_version.as_deref() != Some(wanted)
                {
                    return (StatusCode::CONFLICT, status_error(409));
                }
                self.check_secret_write(&secret);
                secret.metadata.resource_version = Some(self.version());
                self.secret_events.push(Event::Apply(metadata(&secret)));
                self.secrets.insert((*name).to_owned(), secret.clone());
                (StatusCode::OK, serde_json::to_vec(&secret).unwrap())
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
                if patch["status"].get("failedIssuanceAttempts").is_some() {
                    self.violations
                        .push("an unavailable API server was recorded as a failed issuance".into());
                }
                let certificate = self.certificates.get_mut(*name).unwrap();
                certificate.status = serde_json::from_value(patch["status"].clone()).unwrap();
                certificate.metadata.resource_version = Some(version);
                (StatusCode::OK, serde_json::to_vec(certificate).unwrap())
            }
            (&Method::POST | &Method::PATCH, ["apis", "events.k8s.io", ..]) => {
                let event: Value = serde_json::from_slice(body).unwrap_or_default();
                if event["reason"] == "IssuanceFailed" {
                    self.violations
                        .push("an unavailable API server was reported as IssuanceFailed".into());
                }
                (StatusCode::OK, body.to_vec())
            }
            _ => panic!("unexpected {method} {path}"),
        }
    }
}

/// Serves `cluster` to the reconciler's client, injecting its faults.
fn serve(mut handle: Handle, cluster: Arc<Mutex<Cluster>>) {
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let body = body.collect_bytes().await.unwrap_or_default();
            let path = parts.uri.path().to_owned();
            let mut cluster = cluster.lock().unwrap();
            let index = cluster.served;
            cluster.served += 1;
            let is_ca_read = parts.method == Method::GET && path.ends_with(&format!("/secrets/{CA_SECRET}"));
            let fault = cluster.fault_at(index);
            let (status, bytes) = match fault {
                Some(Fault::Status(code)) => (StatusCode::from_u16(code).unwrap(), status_error(code)),
                Some(Fault::Reset) => {
                    drop(send);
                    continue;
                }
                Some(Fault::LostAnswer) => {
                    cluster.answer(&parts.method, &path, &body);
                    drop(send);
                    continue;
                }
                Some(Fault::CaNotFound) if is_ca_read => (StatusCode::NOT_FOUND, status_error(404)),
                _ => cluster.answer(&parts.method, &path, &body),
            };
            let mut response = Response::new(Body::from(bytes));
            *response.status_mut() = status;
            send.send_response(response);
        }
    });
}

/// One scenario: where it starts, and what changed to set it off.
#[derive(Clone, Copy, Debug)]
pub enum Scenario {
    FirstIssuance,
    Renewal,
    CaRotation,
    SecretDeleted,
    SpecChanged,
    IssuerFlapping,
}

const SCENARIOS: [Scenario; 6] = [
    Scenario::FirstIssuance,
    Scenario::Renewal,
    Scenario::CaRotation,
    Scenario::SecretDeleted,
    Scenario::SpecChanged,
    Scenario::IssuerFlapping,
];

fn ca(not_before: Timestamp, name: &str) -> Secret {
    ca_secret(CA_SECRET, NAMESPACE, name, not_before, 365)
}

fn leaf_of_ca(secret: &Secret) -> CertificateInfo {
    let crt = secret.data.as_ref().unwrap()["tls.crt"].0.clone();
    parse_certificate_chain(&crt).unwrap().remove(0)
}

fn web() -> Certificate {
    let mut cert = certificate("web", "ca", &["web.apps.svc"]);
    cert.metadata.resource_version = Some("1".into());
    cert
}

/// The outcome of one run.
#[derive(Debug)]
pub struct Outcome {
    pub violations: Vec<String>,
    /// Certificates stored in the Secret during the run (after the scenario's trigger).
    pub new_certificates: usize,
    /// Requests served in the faulted part of the run.
    pub requests: usize,
}

/// A controller's context and an in-memory API server in the scenario's starting state, at
/// the instant its trigger holds, with `faults` to inject.
async fn run(scenario: Scenario, faults: BTreeMap<usize, Fault>) -> Outcome {
    let t0 = ts(T0);
    let old_ca = ca(t0 - SignedDuration::from_hours(24), "root");
    // The starting state, made by a fault-free first issuance where one is needed.
    let (mut secrets, mut certificate) = (BTreeMap::new(), web());
    secrets.insert(CA_SECRET.to_owned(), old_ca.clone());
    let mut now = t0;
    if !matches!(scenario, Scenario::FirstIssuance) {
        let issued = converge(secrets.clone(), certificate.clone(), &old_ca, BTreeMap::new(), t0).await;
        assert!(issued.0.violations.is_empty(), "{:?}", issued.0.violations);
        (secrets, certificate) = (issued.1, issued.2);
    }
    let mut expected_ca = old_ca.clone();
    match scenario {
        Scenario::FirstIssuance | Scenario::IssuerFlapping => {}
        Scenario::Renewal => now = t0 + SignedDuration::from_hours(17),
        Scenario::CaRotation => {
            now = t0 + SignedDuration::from_hours(1);
            expected_ca = ca(now - SignedDuration::from_mins(5), "root-2");
            secrets.insert(CA_SECRET.to_owned(), expected_ca.clone());
        }
        Scenario::SecretDeleted => {
            now = t0 + SignedDuration::from_hours(1);
            secrets.remove(SECRET);
        }
        Scenario::SpecChanged => {
            now = t0 + SignedDuration::from_hours(1);
            certificate.spec.dns_names = Some(vec!["web.apps.svc".into(), "web.example.com".into()]);
            certificate.metadata.generation = Some(2);
        }
    }
    if matches!(scenario, Scenario::IssuerFlapping) {
        // Flapping: after the first issuance, the CA Secret reads as missing at the faulted
        // requests; once it is back the certificate in place is kept.
        now = t0 + SignedDuration::from_hours(1);
    }
    let before = secrets.get(SECRET).map(|s| {
        let crt = s.data.as_ref().unwrap()["tls.crt"].0.clone();
        parse_certificate_chain(&crt).unwrap().remove(0).serial_hex
    });
    let (outcome, secrets, certificate) = converge(secrets, certificate, &expected_ca, faults, now).await;
    let mut outcome = outcome;
    // The end state: what the Secret holds and what the status says agree.
    match secrets.get(SECRET) {
        None => outcome.violations.push("no Secret at the end".into()),
        Some(secret) => {
            let crt = secret.data.as_ref().unwrap()["tls.crt"].0.clone();
            let leaf = parse_certificate_chain(&crt).unwrap().remove(0);
            let status = certificate.status.clone().unwrap_or_default();
            if status.serial_number.as_deref() != Some(leaf.serial_hex.as_str()) {
                outcome
                    .violations
                    .push("the status names another serial than the Secret's".into());
            }
            let revision = secret
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("certkeeper.io/revision"));
            if status.revision.map(|r| r.to_string()).as_ref() != revision {
                outcome
                    .violations
                    .push("the status names another revision than the Secret's".into());
            }
            if status.failed_issuance_attempts.is_some() {
                outcome
                    .violations
                    .push("an unavailable API server counted as a failed issuance".into());
            }
            let ready = crate::api::find_condition(&status.conditions, "Ready");
            if ready.map(|c| c.status.as_str()) != Some("True") {
                outcome
                    .violations
                    .push(format!("not Ready at the end: {ready:?}"));
            }
            if !leaf.is_signed_by(&leaf_of_ca(&expected_ca)) {
                outcome
                    .violations
                    .push("the Secret is not signed by the current CA at the end".into());
            }
            let expected_new = match scenario {
                Scenario::IssuerFlapping => 0,
                _ => 1,
            };
            if outcome.new_certificates > expected_new {
                outcome.violations.push(format!(
                    "{} new certificates for one trigger",
                    outcome.new_certificates
                ));
            }
            if expected_new == 0 && before.as_deref() != Some(leaf.serial_hex.as_str()) {
                outcome
                    .violations
                    .push("a valid certificate was replaced without a trigger".into());
            }
        }
    }
    outcome
}

/// Reconciles the Certificate until nothing changes, as the controller would: every Secret
/// event goes through the verdicts before the next reconcile, an error is retried after the
/// error policy's wait, a requeue runs at its time. Returns the outcome and the end state.
async fn converge(
    secrets: BTreeMap<String, Secret>,
    certificate: Certificate,
    expected_ca: &Secret,
    faults: BTreeMap<usize, Fault>,
    start: Timestamp,
) -> (Outcome, BTreeMap<String, Secret>, Certificate) {
    let now = Arc::new(Mutex::new(start));
    let clock = now.clone();
    let issuers: Vec<Issuer> = vec![ca_issuer("ca", CA_SECRET)];
    let (ctx, api): (Arc<Context>, ApiServer) = context_with_clock(
        issuers,
        Vec::<ClusterIssuer>::new(),
        Arc::new(move || *clock.lock().unwrap()),
    );
    let mut state = Cluster::new(secrets, vec![certificate], expected_ca);
    state.faults = faults;
    let cluster = Arc::new(Mutex::new(state));
    serve(api.into_handle(), cluster.clone());
    let mut rounds = 0;
    let mut converged = false;
    while rounds < 40 && !converged {
        rounds += 1;
        let (cert, events, served_before) = {
            let mut c = cluster.lock().unwrap();
            (
                c.certificates["web"].clone(),
                std::mem::take(&mut c.secret_events),
                c.served,
            )
        };
        // The watch delivers what changed before the controller looks again.
        for event in &events {
            ctx.verdicts.observe(event, certificate_of);
        }
        let result = reconcile(Arc::new(DeserializeGuard(Ok(cert))), ctx.clone()).await;
        let served = cluster.lock().unwrap().served - served_before;
        // Converged: a reconcile that succeeds without a single request.
        converged = result.is_ok() && served == 0;
        let wait = match &result {
            Err(e) if e.is_transient() => SignedDuration::from_secs(5),
            Err(_) => SignedDuration::from_mins(5),
            Ok(_) => SignedDuration::from_secs(1),
        };
        *now.lock().unwrap() += wait;
    }
    let c = cluster.lock().unwrap();
    let mut violations = c.violations.clone();
    if !converged {
        violations.push(format!("did not converge in {rounds} rounds"));
    }
    // Each fault costs one retry of at most TRANSIENT_RETRY_CAP (5 s).
    let took = now.lock().unwrap().duration_since(start);
    if took > SignedDuration::from_secs(5 * c.faults.len() as i64 + 10) {
        violations.push(format!("took {took:#} of simulated time to converge"));
    }
    let outcome = Outcome {
        violations,
        new_certificates: c.stored_serials.iter().collect::<BTreeSet<_>>().len(),
        requests: c.served,
    };
    (outcome, c.secrets.clone(), c.certificates["web"].clone())
}

/// How many requests a scenario makes without faults: the indices worth faulting.
async fn requests_of(scenario: Scenario) -> usize {
    run(scenario, BTreeMap::new()).await.requests
}

#[tokio::test]
async fn every_request_failed_every_way_in_every_scenario_loses_nothing() {
    let mut failures = Vec::new();
    for scenario in SCENARIOS {
        let requests = requests_of(scenario).await;
        assert!(requests > 0, "{scenario:?} made no request");
        for index in 0..requests {
            for fault in FAULTS {
                let outcome = run(scenario, [(index, fault)].into()).await;
                if !outcome.violations.is_empty() {
                    failures.push(format!(
                        "{scenario:?}, request {index} {fault:?}: {:?}",
                        outcome.violations
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} runs broke an invariant:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn fault() -> impl Strategy<Value = Fault> {
    proptest::sample::select(FAULTS.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_fault_schedules_lose_nothing(
        scenario in proptest::sample::select(SCENARIOS.to_vec()),
        faults in proptest::collection::btree_map(0usize..14, fault(), 0..6),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let outcome = runtime.block_on(run(scenario, faults.clone()));
        prop_assert!(outcome.violations.is_empty(), "{scenario:?} {faults:?}: {:?}", outcome.violations);
    }
}

fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// A soak (run by hand, in release: `SOAK_COUNT=1000 SOAK_HOURS=24 cargo test --release --lib
/// soak -- --ignored --nocapture`): SOAK_COUNT Certificates of 1 h renewed at 99 % (every
/// 36 s), for SOAK_HOURS of simulated time, against the in-memory API server failing
/// SOAK_FAULTS_PER_MILLE of requests at random. The controller's requeues and error policy are
/// followed exactly; the clock jumps from one due reconcile to the next. Every renewal is
/// classed on time (within 10 s of its renewal time: a fault costs one retry of up to 5 s),
/// late, early or missed (the certificate expired).
///
/// kube's event Recorder keeps the Events of the last 6 minutes of wall-clock time to
/// aggregate repeats; simulated time runs far faster, so the soak gives the controller a fresh
/// context (its caches carried over) every simulated 6 minutes, as the real clock would empty
/// that cache.
#[tokio::test(flavor = "current_thread")]
#[ignore = "a soak: minutes of CPU; run by hand in release"]
async fn soak_renewals_under_random_faults_are_never_missed_nor_early() {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (count, hours, per_mille) = (
        env("SOAK_COUNT", 1000) as usize,
        env("SOAK_HOURS", 24),
        env("SOAK_FAULTS_PER_MILLE", 30),
    );
    let t0 = ts(T0);
    let ca_secret = ca(t0 - SignedDuration::from_hours(24), "root");
    let names: Vec<String> = (0..count).map(|i| format!("svc-{i:05}")).collect();
    let certificates: Vec<Certificate> = names
        .iter()
        .map(|name| {
            let mut cert = certificate(name, "ca", &[&format!("{name}.apps.svc")]);
            cert.spec.duration = Some("1h".into());
            cert.spec.renew_before_percentage = Some(99);
            cert.metadata.resource_version = Some("1".into());
            cert
        })
        .collect();
    let mut state = Cluster::new(
        [(CA_SECRET.to_owned(), ca_secret.clone())].into(),
        certificates,
        &ca_secret,
    );
    state.random_faults = Some((per_mille as u32, Xorshift(0x9e37_79b9_7f4a_7c15)));
    state.keep_serials = false;
    let cluster = Arc::new(Mutex::new(state));
    let now = Arc::new(Mutex::new(t0));
    let clock = now.clone();
    let fresh_context = |previous: Option<&Arc<Context>>| {
        let clock = clock.clone();
        let (mut ctx, api) = context_with_clock(
            vec![ca_issuer("ca", CA_SECRET)],
            Vec::<ClusterIssuer>::new(),
            Arc::new(move || *clock.lock().unwrap()),
        );
        if let (Some(previous), Some(fresh)) = (previous, Arc::get_mut(&mut ctx)) {
            fresh.verdicts = previous.verdicts.clone();
            fresh.issuer_ca_key_pairs = previous.issuer_ca_key_pairs.clone();
        }
        serve(api.into_handle(), cluster.clone());
        ctx
    };
    let mut ctx = fresh_context(None);
    let mut context_since = t0;

    let end = t0 + SignedDuration::from_hours(hours as i64);
    let mut due: BinaryHeap<Reverse<(Timestamp, usize)>> = (0..count).map(|i| Reverse((t0, i))).collect();
    let mut errors = vec![0u32; count];
    // What each Certificate's status said before its last reconcile: (revision, renewal, notAfter).
    let mut last: Vec<Option<(i64, Timestamp, Timestamp)>> = vec![None; count];
    let (mut on_time, mut late, mut early, mut missed, mut reconciles) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut worst_late = SignedDuration::ZERO;
    let started = std::time::Instant::now();
    let mut memory_at_start = 0;
    while let Some(Reverse((at, i))) = due.pop() {
        if at >= end {
            break;
        }
        if memory_at_start == 0 && at >= t0 + SignedDuration::from_hours(1) {
            memory_at_start = resident_bytes();
        }
        *now.lock().unwrap() = at;
        if at.duration_since(context_since) >= SignedDuration::from_mins(6) {
            ctx = fresh_context(Some(&ctx));
            context_since = at;
        }
        let (cert, events) = {
            let mut c = cluster.lock().unwrap();
            (
                c.certificates[&names[i]].clone(),
                std::mem::take(&mut c.secret_events),
            )
        };
        for event in &events {
            ctx.verdicts.observe(event, certificate_of);
        }
        reconciles += 1;
        let result = reconcile(Arc::new(DeserializeGuard(Ok(cert))), ctx.clone()).await;
        let wait = match &result {
            Ok(action) => {
                errors[i] = 0;
                action
                    .requeue_after()
                    .unwrap_or(std::time::Duration::from_secs(3600))
            }
            Err(e) => {
                errors[i] += 1;
                if e.is_transient() {
                    crate::runner::transient_retry(errors[i])
                } else {
                    std::time::Duration::from_secs(
                        crate::certificate::schedule::backoff(errors[i]).as_secs() as u64
                    )
                }
            }
        };
        let status = cluster.lock().unwrap().certificates[&names[i]]
            .status
            .clone()
            .unwrap_or_default();
        if let (Some(revision), Some(renewal), Some(not_after)) = (
            status.revision,
            status.renewal_time.as_ref(),
            status.not_after.as_ref(),
        ) {
            if let Some((before, renewal_due, expires)) = last[i]
                && revision > before
            {
                let issued = status.not_before.as_ref().map_or(at, |t| t.0);
                if issued < renewal_due {
                    early += 1;
                } else if issued > expires {
                    missed += 1;
                } else if issued.duration_since(renewal_due) <= SignedDuration::from_secs(10) {
                    on_time += 1;
                } else {
                    late += 1;
                    worst_late = worst_late.max(issued.duration_since(renewal_due));
                }
            }
            last[i] = Some((revision, renewal.0, not_after.0));
        }
        let next = at + SignedDuration::try_from(wait).unwrap_or(SignedDuration::from_hours(1));
        due.push(Reverse((next, i)));
    }
    // A certificate whose notAfter passed before the end without a renewal was missed.
    for state in last.iter().flatten() {
        if state.2 < end {
            missed += 1;
        }
    }
    let served = cluster.lock().unwrap().served;
    let memory_at_end = resident_bytes();
    println!(
        "soak: {count} Certificates, {hours} h simulated, {per_mille}/1000 requests failed at random; \
         {reconciles} reconciles, {served} requests, {:.0} s of CPU",
        started.elapsed().as_secs_f64()
    );
    println!(
        "renewals: {on_time} on time (within 10 s), {late} late (worst {worst_late:#}), {early} early, {missed} missed"
    );
    println!(
        "resident memory after the first hour {:.1} MiB, at the end {:.1} MiB",
        memory_at_start as f64 / 1048576.0,
        memory_at_end as f64 / 1048576.0
    );
    let violations = cluster.lock().unwrap().violations.clone();
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!((missed, early), (0, 0));
    assert!(on_time > 0);
}
