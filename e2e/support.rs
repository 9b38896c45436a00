//! The end-to-end harness: a fresh namespace and a real `certkeeper controller` process per
//! test, against the cluster of KUBECONFIG, and the waits and reads the tests share.
//!
//! Everything a test creates lives in its namespace, which is deleted when the test ends
//! (kept with `CERTKEEPER_E2E_KEEP=1`). The CRDs are installed from `crds/certkeeper.yaml`,
//! the file users apply, and left installed: deleting them would delete every Certificate in
//! the cluster.

pub mod tls;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use certkeeper::api::{Bundle, Certificate, CertificatePolicy, ClusterIssuer, Issuer};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Client, Resource};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::MutexGuard;

/// The one line a test prints when the suite is not enabled.
pub const SKIP_MESSAGE: &str = "e2e: skipped (set CERTKEEPER_E2E=1 and KUBECONFIG to run against a cluster)";
/// Field manager of everything the tests apply (the controller's is `certkeeper`).
pub const FIELD_MANAGER: &str = "certkeeper-e2e";
/// Label on the test namespaces, so leftovers can be found: `kubectl delete ns -l certkeeper.io/e2e`.
pub const NAMESPACE_LABEL: &str = "certkeeper.io/e2e";
/// The example namespace, replaced by the test namespace when the examples are applied.
pub const EXAMPLE_NAMESPACE: &str = "certkeeper-demo";

/// Interval of every poll.
pub const POLL: Duration = Duration::from_secs(1);
/// How long a Certificate may take to become Ready (a whole CA hierarchy included).
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long an Event may take to appear after the status that announced it.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Every test starts a controller that watches all namespaces, and two controllers would
/// issue the same Certificates twice; so tests take turns even when the test harness runs them
/// on several threads. A tokio Mutex works across the tests' separate runtimes.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Whether the suite should talk to a cluster.
pub fn enabled() -> bool {
    std::env::var("CERTKEEPER_E2E").is_ok_and(|v| v == "1")
}

/// A test's world: a client, its own namespace, a running controller, and a directory under
/// `target/` for the controller log and the files handed to openssl.
pub struct TestEnv {
    pub client: Client,
    pub namespace: String,
    pub work_dir: PathBuf,
    // Dropped in this order: stop the controller, then delete the namespace, then let the
    // next test run.
    controller: ControllerProcess,
    controller_args: Vec<String>,
    /// Variables added to the controller's environment (a PKCS#11 module's configuration).
    controller_env: Vec<(String, String)>,
    /// Set once a test killed the controller on purpose.
    controller_killed: bool,
    /// How long waits found the API server away (a restart in the middle of the suite).
    away: std::sync::Mutex<Duration>,
    _namespace: NamespaceGuard,
    _turn: MutexGuard<'static, ()>,
}

impl TestEnv {
    /// Sets up the cluster side of test `test`, or prints [`SKIP_MESSAGE`] and returns None
    /// when `CERTKEEPER_E2E=1` is not set.
    pub async fn start(test: &str) -> Option<Self> {
        Self::start_with(test, &[]).await
    }

    /// [`TestEnv::start`], with `controller_args` added to the controller's command line
    /// (`{namespace}` in one stands for the test namespace).
    pub async fn start_with(test: &str, controller_args: &[&str]) -> Option<Self> {
        Self::start_with_env(test, controller_args, &[]).await
    }

    /// [`TestEnv::start_with`], with `env` added to the controller's environment.
    pub async fn start_with_env(test: &str, controller_args: &[&str], env: &[(&str, &str)]) -> Option<Self> {
        if !enabled() {
            println!("{SKIP_MESSAGE}");
            return None;
        }
        let turn = ONE_AT_A_TIME.lock().await;
        let client = Client::try_default()
            .await
            .expect("a Kubernetes client from KUBECONFIG (or ~/.kube/config)");
        wait_for_api_server(&client).await;
        install_crds(&client).await;

        let namespace = format!("certkeeper-e2e-{}", random_suffix());
        let ns_guard = NamespaceGuard::create(&client, &namespace, test).await;
        let work_dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("e2e")
            .join(&namespace);
        std::fs::create_dir_all(&work_dir).unwrap_or_else(|e| panic!("create {}: {e}", work_dir.display()));
        // The test namespace doubles as the cluster-resource namespace, so a ClusterIssuer's
        // CA Secret is cleaned up with everything else.
        let controller_args: Vec<String> = controller_args.iter().map(|a| a.to_string()).collect();
        let controller_env: Vec<(String, String)> =
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let controller = ControllerProcess::spawn(
            &namespace,
            &work_dir,
            "controller",
            &controller_args,
            &controller_env,
        );
        eprintln!(
            "e2e {test}: namespace {namespace}, controller log {}",
            controller.log.display()
        );
        Some(Self {
            client,
            namespace,
            work_dir,
            controller,
            controller_args,
            controller_env,
            controller_killed: false,
            away: std::sync::Mutex::new(Duration::ZERO),
            _namespace: ns_guard,
            _turn: turn,
        })
    }

    pub fn certificates(&self) -> Api<Certificate> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn issuers(&self) -> Api<Issuer> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Server-side applies one certkeeper object (`Issuer`, `Certificate`, `ClusterIssuer`,
    /// `Bundle`, `CertificatePolicy`) or a `Secret`
    /// given as the JSON a user would write; a namespaced one goes into the test namespace.
    /// Strict field validation makes the API server refuse a misspelled field instead of
    /// silently dropping it.
    pub async fn apply(&self, mut object: Value) {
        let kind = object["kind"].as_str().expect("object has a kind").to_owned();
        let name = object["metadata"]["name"]
            .as_str()
            .expect("object has metadata.name")
            .to_owned();
        let (resource, namespaced) = match kind.as_str() {
            "Certificate" => (ApiResource::erase::<Certificate>(&()), true),
            "Issuer" => (ApiResource::erase::<Issuer>(&()), true),
            "ClusterIssuer" => (ApiResource::erase::<ClusterIssuer>(&()), false),
            "Bundle" => (ApiResource::erase::<Bundle>(&()), false),
            "CertificatePolicy" => (ApiResource::erase::<CertificatePolicy>(&()), false),
            "Secret" => (ApiResource::erase::<Secret>(&()), true),
            other => panic!("the e2e suite does not apply {other} objects"),
        };
        let api: Api<DynamicObject> = if namespaced {
            object["metadata"]["namespace"] = Value::from(self.namespace.clone());
            Api::namespaced_with(self.client.clone(), &self.namespace, &resource)
        } else {
            Api::all_with(self.client.clone(), &resource)
        };
        let params = PatchParams::apply(FIELD_MANAGER).validation_strict();
        api.patch(&name, &params, &Patch::Apply(&object))
            .await
            .unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
    }

    /// Applies the quickstart's examples as `kubectl apply -k manifests/examples/` would,
    /// into the test namespace: every file `kustomization.yaml` lists, in order, with
    /// `certkeeper-demo` replaced by the test namespace (in metadata and in the DNS names and
    /// SPIFFE IDs alike) and the Namespace object left out. Returns (kind, name) of each
    /// object applied.
    pub async fn apply_examples(&self) -> Vec<(String, String)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/examples");
        let kustomization: Value = read_yaml_documents(&dir.join("kustomization.yaml"), None)
            .into_iter()
            .next()
            .expect("kustomization.yaml is not empty");
        let resources = kustomization["resources"]
            .as_array()
            .expect("kustomization.yaml lists resources");
        let mut applied = Vec::new();
        for file in resources {
            let file = file.as_str().expect("resources are file names");
            for object in read_yaml_documents(&dir.join(file), Some(&self.namespace)) {
                let kind = object["kind"].as_str().unwrap_or_default().to_owned();
                if kind == "Namespace" {
                    continue;
                }
                assert_eq!(
                    object["metadata"]["namespace"].as_str(),
                    Some(self.namespace.as_str()),
                    "{file}: every example object names its namespace, so `kubectl apply -f` works too"
                );
                let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
                self.apply(object).await;
                applied.push((kind, name));
            }
        }
        applied
    }

    /// Polls `probe` every second until it returns Ok, for at most `timeout`. On timeout the
    /// test fails with `what`, the last thing the probe saw, and the end of the controller log.
    /// A controller that exited fails the test at once.
    pub async fn eventually<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl AsyncFnMut() -> Result<T, String>,
    ) -> T {
        let mut deadline = Instant::now() + timeout;
        let mut paused = Duration::ZERO;
        loop {
            if !self.controller_killed {
                self.controller.assert_running();
            }
            let started = Instant::now();
            let last = match probe().await {
                Ok(found) => return found,
                Err(last) => last,
            };
            // The time the API server is away (a restart in the middle of the suite) is not
            // the controller's: the deadline moves by it, up to OUTAGE_ALLOWANCE in all.
            if paused < OUTAGE_ALLOWANCE && !api_server_answers(&self.client).await {
                let away = started.elapsed() + POLL;
                paused += away;
                deadline += away;
                *self.away.lock().unwrap_or_else(|p| p.into_inner()) += away;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {}s waiting for {what}\nlast observed: {last}\n{}",
                    timeout.as_secs(),
                    self.controller.log_tail(40)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// How long the waits so far found the API server away: what a timing check allows more
    /// when the server restarted in the middle of it.
    pub fn api_server_away(&self) -> Duration {
        *self.away.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until Certificate `name` satisfies `check` (Err: why not yet).
    pub async fn wait_for_certificate(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Certificate) -> Result<(), String>,
    ) -> Certificate {
        let api = self.certificates();
        self.eventually(&format!("Certificate {name}: {what}"), timeout, async || {
            let cert = api.get(name).await.map_err(|e| format!("get: {e}"))?;
            check(&cert).map_err(|why| format!("{why}; status {}", status_json(&cert)))?;
            Ok(cert)
        })
        .await
    }

    /// `kubectl wait --for=condition=Ready certificate/NAME`.
    pub async fn wait_ready(&self, name: &str) -> Certificate {
        self.wait_for_certificate(name, "Ready=True", READY_TIMEOUT, ready)
            .await
    }

    /// Waits until Issuer `name` is Ready=True for its current generation.
    pub async fn wait_issuer_ready(&self, name: &str) -> Issuer {
        let api = self.issuers();
        self.eventually(&format!("Issuer {name}: Ready=True"), READY_TIMEOUT, async || {
            let issuer = api.get(name).await.map_err(|e| format!("get: {e}"))?;
            let status = issuer.status.clone().unwrap_or_default();
            let c = condition(&status.conditions, "Ready").ok_or("no Ready condition")?;
            if c.status == "True" && c.observed_generation == issuer.metadata.generation {
                Ok(issuer)
            } else {
                Err(format!(
                    "status {}",
                    serde_json::to_string(&status).unwrap_or_default()
                ))
            }
        })
        .await
    }

    /// Waits until Certificate `name` is Ready with `status.revision` at least `revision`.
    pub async fn wait_for_revision(&self, name: &str, revision: i64, timeout: Duration) -> Certificate {
        self.wait_for_certificate(
            name,
            &format!("Ready=True at revision {revision} or later"),
            timeout,
            |cert| {
                ready(cert)?;
                match revision_of(cert) {
                    Some(r) if r >= revision => Ok(()),
                    other => Err(format!("revision is {other:?}")),
                }
            },
        )
        .await
    }

    /// Events (events.k8s.io/v1) in the test namespace regarding Certificate `name`.
    pub async fn certificate_events(&self, name: &str) -> Vec<Event> {
        self.events_regarding("Certificate", name).await
    }

    /// Events (events.k8s.io/v1) in the test namespace regarding the `kind` named `name`.
    pub async fn events_regarding(&self, kind: &str, name: &str) -> Vec<Event> {
        self.try_events_regarding(kind, name)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `events_regarding`, or why the Events could not be listed (the API server away).
    pub async fn try_events_regarding(&self, kind: &str, name: &str) -> Result<Vec<Event>, String> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        // Filtered here rather than with a field selector: the namespace is the test's own and
        // small, and this does not depend on which selectors the server converts.
        let events = api
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("list Events: {e}"))?;
        Ok(events
            .items
            .into_iter()
            .filter(|e| {
                e.regarding
                    .as_ref()
                    .is_some_and(|r| r.kind.as_deref() == Some(kind) && r.name.as_deref() == Some(name))
            })
            .collect())
    }

    /// Waits for an Event of `type_` and `reason` regarding Certificate `name`.
    pub async fn wait_for_event(&self, name: &str, type_: &str, reason: &str) -> Event {
        self.wait_for_event_regarding("Certificate", name, type_, reason)
            .await
    }

    /// Waits for an Event of `type_` and `reason` regarding the `kind` named `name`.
    pub async fn wait_for_event_regarding(&self, kind: &str, name: &str, type_: &str, reason: &str) -> Event {
        self.eventually(
            &format!("a {type_} Event {reason} regarding {kind} {name}"),
            EVENT_TIMEOUT,
            async || {
                // An API server away (restarting) is waited for, not a failure.
                let events = self.try_events_regarding(kind, name).await?;
                let seen: Vec<String> = events
                    .iter()
                    .map(|e| {
                        format!(
                            "{}/{}",
                            e.type_.as_deref().unwrap_or("?"),
                            e.reason.as_deref().unwrap_or("?")
                        )
                    })
                    .collect();
                events
                    .into_iter()
                    .find(|e| e.type_.as_deref() == Some(type_) && e.reason.as_deref() == Some(reason))
                    .ok_or_else(|| format!("events so far: {seen:?}"))
            },
        )
        .await
    }

    /// The TLS Secret `name`, checked for the layout every certkeeper Secret has.
    pub async fn tls_secret(&self, name: &str) -> TlsSecret {
        let secret = self
            .secrets()
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("get Secret {name}: {e}"));
        TlsSecret::from_secret(secret)
    }

    /// GETs `path` (`/metrics`, `/readyz`, …) from the controller's HTTP endpoint: the status
    /// code and the body.
    pub async fn controller_http(&self, path: &str) -> (u16, String) {
        self.controller.assert_running();
        self.controller.http_get(path).await
    }

    /// GETs `path` from the controller's PKI endpoint (CRLs, OCSP): the status code and body.
    pub async fn controller_pki(&self, path: &str) -> (u16, Vec<u8>) {
        self.controller.assert_running();
        self.controller.pki_get(path).await
    }

    /// Stops the controller (SIGTERM) and starts a new one with the same arguments, as a
    /// rollout or a crash would; returns once the new one answers /readyz with 200.
    pub async fn restart_controller(&mut self) {
        self.controller.stop();
        self.controller = ControllerProcess::spawn(
            &self.namespace,
            &self.work_dir,
            "controller-restarted",
            &self.controller_args,
            &self.controller_env,
        );
        self.eventually(
            "the restarted controller to be ready",
            READY_TIMEOUT,
            async || match self.controller.http_get("/readyz").await {
                (200, _) => Ok(()),
                (code, body) => Err(format!("/readyz {code}: {body}")),
            },
        )
        .await;
    }

    /// SIGKILLs the controller, as a node failure would: no graceful shutdown, no Lease release.
    pub fn kill_controller(&mut self) {
        self.controller.kill();
        self.controller_killed = true;
    }

    /// Starts a further controller process named `name` (its POD_NAME, so its leader election
    /// identity and Event reporting instance) with `args`; stopped when dropped.
    pub fn spawn_controller(&self, name: &str, args: &[&str]) -> ControllerProcess {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        ControllerProcess::spawn(&self.namespace, &self.work_dir, name, &args, &self.controller_env)
    }

    /// Runs `kubectl ARGS -n NAMESPACE` (the same KUBECONFIG as the client) and returns stdout.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.try_kubectl(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`TestEnv::kubectl`], with a failure (kubectl exiting non-zero) returned rather than
    /// failing the test: for polls that should survive one refused request.
    pub fn try_kubectl(&self, args: &[&str]) -> Result<String, String> {
        let output = Command::new("kubectl")
            .args(args)
            .args(["--namespace", &self.namespace])
            .output()
            .expect("run `kubectl` (is it on PATH?)");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "`kubectl {}` failed ({}):\n{stdout}{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// Fails the test at once, with the log, when the controller has exited.
    pub fn assert_controller_running(&self) {
        if !self.controller_killed {
            self.controller.assert_running();
        }
    }

    /// The last `lines` lines of the controller log, with a heading naming the file: for the
    /// failure messages of tests that poll by themselves.
    pub fn controller_log_tail(&self, lines: usize) -> String {
        self.controller.log_tail(lines)
    }
}

/// `selfSigned: {}` Issuer `name`.
pub fn selfsigned_issuer(name: &str) -> Value {
    json!({
        "apiVersion": "certkeeper.io/v1",
        "kind": "Issuer",
        "metadata": { "name": name },
        "spec": { "selfSigned": {} },
    })
}

/// Certificate `name` for `<name>.<namespace>.svc` into Secret `<name>-tls`, from Issuer
/// `issuer`, with `extra` merged into its spec.
pub fn certificate(env: &TestEnv, name: &str, issuer: &str, extra: Value) -> Value {
    let mut spec = json!({
        "secretName": format!("{name}-tls"),
        "dnsNames": [format!("{name}.{}.svc", env.namespace)],
        "issuerRef": { "name": issuer, "kind": "Issuer", "group": "certkeeper.io" },
    });
    if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        spec.extend(extra);
    }
    json!({
        "apiVersion": "certkeeper.io/v1",
        "kind": "Certificate",
        "metadata": { "name": name },
        "spec": spec,
    })
}

/// The condition of `type_` in a condition list.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// The Ready condition of a Certificate.
pub fn ready_condition(cert: &Certificate) -> Option<&Condition> {
    cert.status
        .as_ref()
        .and_then(|s| condition(&s.conditions, "Ready"))
}

/// Ready=True as `kubectl wait --for=condition=Ready` reads it, and computed for the current
/// spec: the condition's observedGeneration is the object's generation (API conventions).
pub fn ready(cert: &Certificate) -> Result<(), String> {
    let c = ready_condition(cert).ok_or("no Ready condition")?;
    if c.status != "True" {
        return Err(format!("Ready={} ({}: {})", c.status, c.reason, c.message));
    }
    if c.observed_generation != cert.metadata.generation {
        return Err(format!(
            "Ready=True observed generation {:?}, object generation {:?}",
            c.observed_generation, cert.metadata.generation
        ));
    }
    Ok(())
}

/// `status.revision`.
pub fn revision_of(cert: &Certificate) -> Option<i64> {
    cert.status.as_ref().and_then(|s| s.revision)
}

fn status_json(cert: &Certificate) -> String {
    serde_json::to_string(&cert.status).unwrap_or_default()
}

/// A Secret in certkeeper's layout: type kubernetes.io/tls with tls.crt, tls.key and ca.crt.
#[derive(Clone)]
pub struct TlsSecret {
    pub secret: Secret,
    /// `tls.crt`: leaf, then the chain without the self-signed root.
    pub chain: String,
    /// `tls.key`.
    pub key: String,
    /// `ca.crt`: the root.
    pub ca: String,
}

impl TlsSecret {
    pub fn from_secret(secret: Secret) -> Self {
        let name = secret.metadata.name.clone().unwrap_or_default();
        assert_eq!(
            secret.type_.as_deref(),
            Some("kubernetes.io/tls"),
            "Secret {name}: type"
        );
        let text = |key: &str| {
            let bytes = secret
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .unwrap_or_else(|| panic!("Secret {name} has no {key}"));
            let text = String::from_utf8(bytes.0.clone())
                .unwrap_or_else(|_| panic!("Secret {name}: {key} is not PEM text"));
            assert!(!text.trim().is_empty(), "Secret {name}: {key} is empty");
            text
        };
        let (chain, key, ca) = (text("tls.crt"), text("tls.key"), text("ca.crt"));
        Self {
            secret,
            chain,
            key,
            ca,
        }
    }

    /// The certificates of tls.crt, leaf first, as DER.
    pub fn chain_der(&self) -> Vec<Vec<u8>> {
        tls::certificates_der(&self.chain)
    }

    /// The leaf (first certificate of tls.crt) as PEM.
    pub fn leaf_pem(&self) -> String {
        tls::to_pem(self.chain_der().first().expect("tls.crt holds a certificate"))
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.secret.metadata.labels.as_ref()?.get(key).map(String::as_str)
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.secret
            .metadata
            .annotations
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }

    pub fn key_pair(&self) -> tls::KeyPairPem<'_> {
        tls::KeyPairPem {
            chain: &self.chain,
            key: &self.key,
        }
    }
}

/// The documents of a YAML file as JSON values; with `namespace`, every `certkeeper-demo` in
/// the text is replaced by it first.
fn read_yaml_documents(path: &Path, namespace: Option<&str>) -> Vec<Value> {
    let mut text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    if let Some(namespace) = namespace {
        text = text.replace(EXAMPLE_NAMESPACE, namespace);
    }
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("parse {}: {e}", path.display())))
        .filter(|doc| !doc.is_null())
        .collect()
}

/// How much API-server absence a test's waits tolerate in all (see [`TestEnv::eventually`]).
const OUTAGE_ALLOWANCE: Duration = Duration::from_secs(180);

/// Whether the API server answers at all (its version), whatever it says.
async fn api_server_answers(client: &Client) -> bool {
    tokio::time::timeout(Duration::from_secs(5), client.apiserver_version())
        .await
        .is_ok_and(|answer| answer.is_ok())
}

/// Waits up to OUTAGE_ALLOWANCE for the API server to answer: a test that starts while it
/// restarts begins once it is back.
async fn wait_for_api_server(client: &Client) {
    let deadline = Instant::now() + OUTAGE_ALLOWANCE;
    while !api_server_answers(client).await {
        assert!(
            Instant::now() < deadline,
            "the API server did not answer within {}s",
            OUTAGE_ALLOWANCE.as_secs()
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Runs `request`, again after the API server comes back if the server did not answer it (a
/// restart in the middle of the suite); an answer refusing it fails the test with `what`.
async fn while_away<T>(
    client: &Client,
    what: &str,
    mut request: impl AsyncFnMut() -> Result<T, kube::Error>,
) -> T {
    let deadline = Instant::now() + OUTAGE_ALLOWANCE;
    loop {
        match request().await {
            Ok(done) => return done,
            // No answer from the server (refused, reset): it is away, or going.
            Err(e) if Instant::now() < deadline && !matches!(e, kube::Error::Api(_)) => {
                eprintln!("e2e: {what}: {e}; waiting for the API server");
                tokio::time::sleep(POLL).await;
                wait_for_api_server(client).await;
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// Installs (or updates) the CRDs from `crds/certkeeper.yaml` with server-side apply and waits
/// until the API server serves them.
async fn install_crds(client: &Client) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/certkeeper.yaml");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    // Forced: a CRD installed earlier by `kubectl apply --server-side` belongs to kubectl's
    // field manager, and the suite must test the file as it is now.
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut names = Vec::new();
    for doc in read_yaml_documents(&path, None) {
        let crd: CustomResourceDefinition = serde_json::from_value(doc)
            .unwrap_or_else(|e| panic!("{} holds a CRD that does not parse: {e}", path.display()));
        let name = crd.metadata.name.clone().expect("CRD has a name");
        let what = format!("install CRD {name} (cluster-admin needed)");
        while_away(client, &what, async || {
            api.patch(&name, &params, &Patch::Apply(&crd)).await
        })
        .await;
        names.push(name);
    }
    for kind in [
        Certificate::crd_name(),
        Issuer::crd_name(),
        ClusterIssuer::crd_name(),
    ] {
        assert!(names.contains(&kind), "crds/certkeeper.yaml has no {kind}");
    }
    for name in names {
        tokio::time::timeout(
            Duration::from_secs(60),
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .unwrap_or_else(|_| panic!("CRD {name} not Established within 60s"))
        .unwrap_or_else(|e| panic!("watch CRD {name}: {e}"));
    }
}

/// `<plural>.<group>` of a certkeeper kind.
trait CrdName {
    fn crd_name() -> String;
}

impl<K: Resource<DynamicType = ()>> CrdName for K {
    fn crd_name() -> String {
        format!("{}.{}", K::plural(&()), K::group(&()))
    }
}

/// Six random lower-case letters and digits: namespaces of concurrent runs (several CI jobs on
/// one cluster) do not collide.
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 6];
    aws_lc_rs::rand::fill(&mut bytes).expect("random bytes");
    bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// The test namespace; deleted on drop, also when the test fails.
struct NamespaceGuard {
    name: String,
}

impl NamespaceGuard {
    async fn create(client: &Client, name: &str, test: &str) -> Self {
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some([(NAMESPACE_LABEL.to_owned(), "true".to_owned())].into()),
                annotations: Some([(format!("{NAMESPACE_LABEL}-test"), test.to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let api = Api::<Namespace>::all(client.clone());
        while_away(client, &format!("create namespace {name}"), async || {
            match api.create(&PostParams::default(), &namespace).await {
                // A create that reached the server before it went away.
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(namespace.clone()),
                other => other,
            }
        })
        .await;
        Self {
            name: name.to_owned(),
        }
    }
}

impl Drop for NamespaceGuard {
    fn drop(&mut self) {
        if std::env::var("CERTKEEPER_E2E_KEEP").is_ok_and(|v| v == "1") {
            eprintln!("e2e: keeping namespace {} (CERTKEEPER_E2E_KEEP=1)", self.name);
            return;
        }
        // Drop cannot await, and the client's connection lives on the test's runtime, which
        // may be shutting down; kubectl is synchronous and on PATH anyway. --wait=false: the
        // namespace finalizes in the background while the next test runs.
        let deleted = Command::new("kubectl")
            .args([
                "delete",
                "namespace",
                &self.name,
                "--wait=false",
                "--ignore-not-found",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !deleted.is_ok_and(|s| s.success()) {
            eprintln!("e2e: could not delete namespace {}; delete it by hand", self.name);
        }
    }
}

/// Objects outside the test namespace (cluster-scoped ones, a second namespace) that go with
/// the test, whether it passes or fails: `kubectl delete` in Drop, as [`NamespaceGuard`].
pub struct Leftovers(pub Vec<(&'static str, String)>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        if std::env::var("CERTKEEPER_E2E_KEEP").is_ok_and(|v| v == "1") {
            return;
        }
        for (resource, name) in &self.0 {
            let deleted = Command::new("kubectl")
                .args(["delete", resource, name, "--wait=false", "--ignore-not-found"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if !deleted.is_ok_and(|s| s.success()) {
                eprintln!("e2e: could not delete {resource} {name}; delete it by hand");
            }
        }
    }
}

/// `certkeeper controller`, the binary cargo built for this test target, running against the
/// same kubeconfig; its stdout and stderr go to a log file. Stopped on drop.
pub struct ControllerProcess {
    child: Mutex<Child>,
    log: PathBuf,
    /// Where it serves /metrics, /healthz and /readyz.
    http: std::net::SocketAddr,
    /// Where it serves CRLs and OCSP (`--pki-bind-address`).
    pki: std::net::SocketAddr,
}

impl ControllerProcess {
    /// Starts `certkeeper controller` as POD_NAME `name`, logging to `WORK_DIR/NAME.log`.
    fn spawn(
        cluster_resource_namespace: &str,
        work_dir: &Path,
        name: &str,
        extra_args: &[String],
        env: &[(String, String)],
    ) -> Self {
        let log = &work_dir.join(format!("{name}.log"));
        // A free loopback port, so a controller already running on this machine is no obstacle.
        let http = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("find a free loopback port");
        // The PKI endpoint too: several controllers of one test must not share :9403.
        let pki = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("find a free loopback port");
        let file = File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let stderr = file.try_clone().expect("duplicate the log file handle");
        let mut command = Command::new(env!("CARGO_BIN_EXE_certkeeper"));
        command
            .args([
                "controller",
                "--cluster-resource-namespace",
                cluster_resource_namespace,
                "--metrics-bind-address",
                &http.to_string(),
                "--pki-bind-address",
                &pki.to_string(),
            ])
            // `{namespace}` in an argument stands for the test namespace, unknown to the test
            // when it writes the arguments.
            .args(
                extra_args
                    .iter()
                    .map(|a| a.replace("{namespace}", cluster_resource_namespace)),
            )
            .env("POD_NAME", name)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr);
        if std::env::var_os("RUST_LOG").is_none() {
            command.env("RUST_LOG", "info,certkeeper=debug");
        }
        let child = command.spawn().expect("start `certkeeper controller`");
        Self {
            child: Mutex::new(child),
            log: log.to_owned(),
            http,
            pki,
        }
    }

    /// GETs `path` (`/crl/...`) from the controller's PKI endpoint: the status code and the
    /// body's bytes (a CRL is DER); code 0 when nothing answers (yet).
    pub async fn pki_get(&self, path: &str) -> (u16, Vec<u8>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut stream) = tokio::net::TcpStream::connect(self.pki).await else {
            return (0, Vec::new());
        };
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send the request");
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .expect("read the response");
        let split = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or(response.len());
        let head = String::from_utf8_lossy(&response[..split]).into_owned();
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP response: {head}"));
        (code, response.get(split + 4..).unwrap_or_default().to_vec())
    }

    /// GETs `path` from the controller's HTTP endpoint: the status code and the body; code 0
    /// when nothing answers (yet).
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut stream) = tokio::net::TcpStream::connect(self.http).await else {
            return (0, format!("nothing listens on {}", self.http));
        };
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send the request");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .await
            .expect("read the response");
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP response: {head}"));
        (code, body.to_owned())
    }

    /// Fails the test at once, with the log, when the controller has exited.
    pub fn assert_running(&self) {
        let exited = self
            .child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .try_wait()
            .expect("query the controller process");
        if let Some(status) = exited {
            panic!("the controller exited ({status})\n{}", self.log_tail(40));
        }
    }

    /// The last `lines` lines of the controller log, with a heading naming the file.
    fn log_tail(&self, lines: usize) -> String {
        let all: Vec<String> = File::open(&self.log)
            .map(|f| BufReader::new(f).lines().map_while(Result::ok).collect())
            .unwrap_or_default();
        let tail = all[all.len().saturating_sub(lines)..].join("\n");
        format!(
            "--- controller log, last {lines} lines of {} ---\n{tail}",
            self.log.display()
        )
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

impl ControllerProcess {
    /// SIGKILL at once.
    pub fn kill(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGTERM, as Kubernetes stops a pod; SIGKILL if it is still running 10 s later.
    pub fn stop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|p| p.into_inner());
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        // SIGTERM first: the controller shuts down gracefully on it and flushes its log. If it
        // has not exited within 10 s, SIGKILL.
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("e2e: the controller ignored SIGTERM for 10s; killing it");
        let _ = child.kill();
        let _ = child.wait();
    }
}
