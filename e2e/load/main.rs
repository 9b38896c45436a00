//! `certkeeper-load`: how fast a running certkeeper controller brings many Certificates to
//! Ready, and how much memory it needs while doing so.
//!
//! Against the cluster KUBECONFIG names, with the controller already running there (installed
//! in the cluster, or `certkeeper controller` on a laptop), it creates a fresh namespace
//! labelled `certkeeper.io/load=true`, a CA Issuer backed by a CA generated locally, and then
//! `--count` Certificates (24 h, one DNS name each) with bounded concurrency. It measures the
//! time from the first create until every Certificate is Ready=True for its current generation,
//! and the peak of the controller's `process_resident_memory_bytes`, sampled every 500 ms from
//! its `/metrics` (through the API server's pod proxy, or from `--metrics-url` for a controller
//! run from a laptop). The namespace is deleted at the end, also on Ctrl-C, unless `--keep`.
//!
//! Run: `cargo run --release --bin certkeeper-load -- --count 1000`
//! (laptop-run controller: add `--metrics-url http://127.0.0.1:9402/metrics`).

mod ceiling;
mod cluster;
mod memory;
mod report;

use std::pin::pin;
use std::process::ExitCode;
use std::time::Duration;

use certkeeper::api::{Certificate, Issuer};
use certkeeper::pki::{KeyAlgorithm, PkiError};
use clap::{Parser, ValueEnum};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::time::Instant;

use crate::cluster::ReadyTracker;
use crate::memory::{MetricsSource, MetricsUrl, Sampler};

/// How often a progress line goes to stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// How long the namespace may take to go once deleted; it finishes on its own after that.
const NAMESPACE_DELETE_BOUND: Duration = Duration::from_secs(180);
/// How often the Issuer is polled while waiting for it.
const ISSUER_POLL: Duration = Duration::from_millis(500);

/// Measure how fast the certkeeper controller running in the current cluster issues Certificates.
#[derive(Debug, Parser)]
#[command(name = "certkeeper-load", version)]
struct Args {
    /// How many Certificates to create.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    count: u32,

    /// Namespace to create for the run [default: certkeeper-load-<random>]. It must not exist yet.
    #[arg(long)]
    namespace: Option<String>,

    /// How many creates are in flight at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    create_concurrency: u32,

    /// Time budget, from the start, for the Issuer and then every Certificate to become Ready
    /// (Go duration syntax: 90s, 10m, 1h30m).
    #[arg(long, default_value = "10m", value_parser = parse_timeout)]
    timeout: Duration,

    /// Key algorithm of the Certificates.
    #[arg(long, value_enum, ignore_case = true, default_value_t = LeafKeyAlgorithm::Ecdsa)]
    key_algorithm: LeafKeyAlgorithm,

    /// Scrape the controller's metrics here (plain http://, e.g. a laptop-run controller at
    /// http://127.0.0.1:9402/metrics) instead of through the API server's pod proxy.
    #[arg(long, value_parser = MetricsUrl::parse)]
    metrics_url: Option<MetricsUrl>,

    /// Namespace of the controller pods whose memory is sampled (without --metrics-url).
    #[arg(long, default_value = "certkeeper-system")]
    controller_namespace: String,

    /// Label selector of the controller pods (without --metrics-url).
    #[arg(long, default_value = "app.kubernetes.io/name=certkeeper")]
    controller_selector: String,

    /// Keep the namespace and everything in it at the end.
    #[arg(long)]
    keep: bool,

    /// Latency mode: create the Certificates one at a time, each only once the one before is
    /// Ready, and report the time from each create to its Ready (p50, p90, p99, max) instead of
    /// the throughput.
    #[arg(long, conflicts_with = "ceiling")]
    latency: bool,

    /// Ceiling mode, with no controller running: the tool makes the writes of each issuance
    /// itself (create the Certificate, apply its Secret, apply its status, create its Event),
    /// `--create-concurrency` Certificates at a time, and reports the API server's rate for
    /// them: the most any controller could reach on this server.
    #[arg(long)]
    ceiling: bool,

    /// Sign with a CA key on a PKCS#11 token instead of one in a Secret: the label of the token
    /// (made with `softhsm2-util --init-token`, say). The tool makes a new key on it
    /// (`load-<namespace>`) and its root, writes the CA Secret with the certificate only and a
    /// PIN Secret, and the Issuer names the key. The controller needs `--pkcs11-module` and
    /// `--pkcs11-allow-namespaced-issuers`; the tool reaches the token through `--pkcs11-module`
    /// and `--pin-file` too.
    #[arg(long, requires_all = ["pkcs11_module", "pin_file"], conflicts_with = "ceiling")]
    pkcs11_token: Option<String>,

    /// The PKCS#11 module the tool makes the key with (the controller's own `--pkcs11-module`
    /// PATH).
    #[arg(long)]
    pkcs11_module: Option<std::path::PathBuf>,

    /// The token's user PIN, in a file.
    #[arg(long)]
    pin_file: Option<std::path::PathBuf>,
}

/// The key algorithms a load run offers, spelled as `privateKey.algorithm` spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LeafKeyAlgorithm {
    #[value(name = "ECDSA")]
    Ecdsa,
    #[value(name = "RSA")]
    Rsa,
}

impl LeafKeyAlgorithm {
    fn algorithm(self) -> KeyAlgorithm {
        match self {
            Self::Ecdsa => KeyAlgorithm::Ecdsa,
            Self::Rsa => KeyAlgorithm::Rsa,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Ecdsa => "ECDSA",
            Self::Rsa => "RSA",
        }
    }
}

/// A Go duration (kube's `Duration` parses exactly what `time.ParseDuration` does), positive.
fn parse_timeout(value: &str) -> Result<Duration, String> {
    let parsed: kube::core::Duration = value
        .parse()
        .map_err(|e| format!("{value:?} is not a duration such as 90s, 10m or 1h30m: {e}"))?;
    if parsed.is_negative() || Duration::from(parsed).is_zero() {
        return Err(format!("{value:?}: the timeout must be positive"));
    }
    Ok(parsed.into())
}

/// `certkeeper-load-<suffix>`.
fn default_namespace(suffix: &str) -> String {
    format!("certkeeper-load-{suffix}")
}

/// Six random lower-case letters and digits, so concurrent runs on one cluster do not collide.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 6];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // Uniqueness, not secrecy, is the point: the clock will do.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        bytes.copy_from_slice(&nanos.to_le_bytes().repeat(2)[..6]);
    }
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

/// Why a run failed; printed by `main` as one line.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    #[error("no Kubernetes configuration (KUBECONFIG, ~/.kube/config or in-cluster): {0}")]
    NoConfig(String),
    #[error("cannot reach the Kubernetes API server {server} (from the current kubeconfig): {detail}")]
    Unreachable { server: String, detail: String },
    #[error(
        "the CRD {crd} is not installed in this cluster; install the CRDs with `kubectl apply -f crds/` or `kubectl apply -k manifests/`"
    )]
    CrdMissing { crd: String },
    #[error(
        "namespace {0} already exists; certkeeper-load only uses a namespace it creates (pick another --namespace)"
    )]
    NamespaceExists(String),
    #[error("{action}: {detail}")]
    Kube { action: String, detail: String },
    #[error("generate the load CA: {0}")]
    Ca(#[from] PkiError),
    #[error(
        "Issuer {issuer} not Ready within {waited}: {last}; is the certkeeper controller running against this cluster?"
    )]
    IssuerNotReady {
        issuer: String,
        waited: String,
        last: String,
    },
    #[error("timed out after {waited}: {ready} of {count} Certificates Ready ({created} created)")]
    Timeout {
        waited: String,
        ready: usize,
        created: u32,
        count: u32,
    },
    #[error("the watch on Certificates ended unexpectedly ({ready} of {count} Ready)")]
    WatchEnded { ready: usize, count: u32 },
    #[error("interrupted")]
    Interrupted,
}

impl LoadError {
    fn exit_code(&self) -> ExitCode {
        match self {
            // The shell's convention for SIGINT.
            Self::Interrupted => ExitCode::from(130),
            _ => ExitCode::FAILURE,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("certkeeper-load: {}", report::one_line(&e.to_string()));
            e.exit_code()
        }
    }
}

/// Everything a run reports at the end.
struct Outcome {
    elapsed: Duration,
    memory: memory::PeakMemory,
    /// Create → Ready of each Certificate, in latency mode.
    latencies: Option<Vec<Duration>>,
}

async fn run(args: Args) -> Result<(), LoadError> {
    let (client, version) = cluster::connect().await?;
    cluster::check_crds(&client).await?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| default_namespace(&random_suffix()));
    cluster::create_namespace(&client, &namespace).await?;
    let server = report::server_version(&version);
    let creates = if args.latency {
        "one at a time".to_owned()
    } else if args.ceiling {
        format!(
            "ceiling: the writes of {} issuances at once, no controller",
            args.create_concurrency
        )
    } else {
        format!("{} concurrent creates", args.create_concurrency)
    };
    eprintln!(
        "certkeeper-load: {server}; namespace {namespace}; {} {} Certificates, {creates}, timeout {}",
        args.count,
        args.key_algorithm.name(),
        report::duration(args.timeout),
    );

    // From here on the namespace exists: every way out goes through the cleanup below.
    if args.ceiling {
        let measured = tokio::select! {
            outcome = ceiling(&client, &namespace, &args) => outcome,
            Ok(()) = tokio::signal::ctrl_c() => Err(LoadError::Interrupted),
        };
        if let Ok(line) = &measured {
            println!("{line}");
            println!("cluster {server}; {creates}, namespace {namespace}");
        }
        let cleaned = cleanup(&client, &namespace, args.keep).await;
        measured?;
        return cleaned;
    }
    let measured = tokio::select! {
        outcome = measure(&client, &namespace, &args) => outcome,
        Ok(()) = tokio::signal::ctrl_c() => Err(LoadError::Interrupted),
    };
    if let Ok(outcome) = &measured {
        println!(
            "{}",
            report::summary_line(
                args.count,
                outcome.elapsed,
                &outcome.memory,
                args.metrics_url.as_ref()
            )
        );
        if let Some(latencies) = &outcome.latencies {
            println!("{}", report::latency_line(latencies));
        }
        println!(
            "cluster {server}; {} Certificates from one CA Issuer, {creates}, namespace {namespace}",
            args.key_algorithm.name(),
        );
    }
    let cleaned = cleanup(&client, &namespace, args.keep).await;
    measured?;
    cleaned
}

/// Ceiling mode (see `ceiling.rs`): the summary line, with a warning when a controller acted
/// on the Certificates meanwhile.
async fn ceiling(client: &Client, namespace: &str, args: &Args) -> Result<String, LoadError> {
    let elapsed = ceiling::measure(
        client,
        namespace,
        args.count,
        args.create_concurrency,
        args.key_algorithm.algorithm(),
    )
    .await?;
    let mut line = report::ceiling_line(args.count, elapsed);
    let touched = ceiling::touched_by_a_controller(client, namespace).await?;
    if touched > 0 {
        line.push_str(&format!(
            "; warning: a controller wrote the status of {touched} of them, so this is below the ceiling (stop the controller for a ceiling run)"
        ));
    }
    Ok(line)
}

/// Deletes the namespace (unless `keep`) and waits for it, bounded; a second Ctrl-C stops the
/// waiting, not the deletion.
async fn cleanup(client: &Client, namespace: &str, keep: bool) -> Result<(), LoadError> {
    if keep {
        eprintln!(
            "certkeeper-load: keeping namespace {namespace} (--keep); delete it with `kubectl delete namespace {namespace}`"
        );
        return Ok(());
    }
    eprintln!("certkeeper-load: deleting namespace {namespace} (Ctrl-C: stop waiting for it)");
    cluster::delete_namespace(client, namespace).await?;
    tokio::select! {
        gone = cluster::wait_namespace_gone(client, namespace, NAMESPACE_DELETE_BOUND) => {
            if !gone? {
                eprintln!(
                    "certkeeper-load: namespace {namespace} still terminating after {}; it goes away on its own",
                    report::duration(NAMESPACE_DELETE_BOUND)
                );
            }
        }
        Ok(()) = tokio::signal::ctrl_c() => {
            eprintln!("certkeeper-load: not waiting for namespace {namespace} to go; its deletion goes on in the cluster");
        }
    }
    Ok(())
}

/// The measured part: CA, Issuer, then N Certificates until all are Ready, with the memory
/// sampler running throughout.
async fn measure(client: &Client, namespace: &str, args: &Args) -> Result<Outcome, LoadError> {
    let deadline = Instant::now() + args.timeout;
    let source = match &args.metrics_url {
        Some(url) => MetricsSource::Url(url.clone()),
        None => MetricsSource::Pods {
            client: client.clone(),
            namespace: args.controller_namespace.clone(),
            selector: args.controller_selector.clone(),
        },
    };
    // Sampling starts before any load so that a scrape that cannot work says so early.
    let sampler = Sampler::start(source);

    create_ca_issuer(client, namespace, deadline, args).await?;
    eprintln!(
        "certkeeper-load: Issuer {} Ready; creating Certificates",
        cluster::ISSUER
    );

    let certificates: Api<Certificate> = Api::namespaced(client.clone(), namespace);
    let algorithm = args.key_algorithm.algorithm();
    let count = args.count;
    // Started before the first create; its initial list catches anything created meanwhile.
    let mut watch = pin!(watcher(certificates.clone(), watcher::Config::default()).default_backoff());
    if args.latency {
        return measure_latency(&certificates, namespace, args, watch, deadline, &sampler).await;
    }
    let mut creates = pin!(
        futures::stream::iter(1..=count)
            .map(|index| {
                let api = certificates.clone();
                let certificate = cluster::certificate(index, namespace, algorithm);
                async move { cluster::create_certificate(&api, &certificate).await }
            })
            .buffer_unordered(usize::try_from(args.create_concurrency).unwrap_or(usize::MAX))
    );
    let mut progress = tokio::time::interval_at(Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    let mut timeout = pin!(tokio::time::sleep_until(deadline));
    let mut tracker = ReadyTracker::default();
    let mut created = 0u32;
    let mut watch_error_reported = false;

    let start = Instant::now();
    loop {
        tokio::select! {
            Some(result) = creates.next(), if created < count => {
                result?;
                created += 1;
            }
            event = watch.next() => match event {
                Some(Ok(event)) => {
                    tracker.apply(event);
                    if tracker.ready() >= count as usize {
                        break;
                    }
                }
                Some(Err(e)) => {
                    // The watcher retries with backoff on its own; say so once.
                    if !watch_error_reported {
                        eprintln!("certkeeper-load: watch on Certificates failed, retrying: {}", report::one_line(&e.to_string()));
                        watch_error_reported = true;
                    }
                }
                None => return Err(LoadError::WatchEnded { ready: tracker.ready(), count }),
            },
            _ = progress.tick() => {
                let peak = sampler.snapshot().peak_bytes();
                eprintln!("{}", report::progress_line(start.elapsed(), created, tracker.ready(), count, peak));
            }
            () = &mut timeout => {
                return Err(LoadError::Timeout {
                    waited: report::duration(args.timeout),
                    ready: tracker.ready(),
                    created,
                    count,
                });
            }
        }
    }
    let elapsed = start.elapsed();
    Ok(Outcome {
        elapsed,
        memory: sampler.snapshot(),
        latencies: None,
    })
}

/// Latency mode: one Certificate at a time, the next created only once the one before is
/// Ready, so each create → Ready is the controller's and the API server's path for one object,
/// with no queue in front of it.
async fn measure_latency(
    certificates: &Api<Certificate>,
    namespace: &str,
    args: &Args,
    mut watch: std::pin::Pin<
        &mut impl futures::Stream<Item = Result<watcher::Event<Certificate>, watcher::Error>>,
    >,
    deadline: Instant,
    sampler: &Sampler,
) -> Result<Outcome, LoadError> {
    let count = args.count;
    let algorithm = args.key_algorithm.algorithm();
    let mut tracker = ReadyTracker::default();
    let mut latencies = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    let mut progress = tokio::time::interval_at(Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    let mut timeout = pin!(tokio::time::sleep_until(deadline));
    let start = Instant::now();
    for index in 1..=count {
        let certificate = cluster::certificate(index, namespace, algorithm);
        let name = certificate.metadata.name.clone().unwrap_or_default();
        let created_at = Instant::now();
        cluster::create_certificate(certificates, &certificate).await?;
        while !tracker.is_ready(&name) {
            tokio::select! {
                event = watch.next() => match event {
                    Some(Ok(event)) => tracker.apply(event),
                    // The watcher retries with backoff on its own.
                    Some(Err(_)) => {}
                    None => return Err(LoadError::WatchEnded { ready: tracker.ready(), count }),
                },
                _ = progress.tick() => {
                    let peak = sampler.snapshot().peak_bytes();
                    eprintln!("{}", report::progress_line(start.elapsed(), index, tracker.ready(), count, peak));
                }
                () = &mut timeout => {
                    return Err(LoadError::Timeout {
                        waited: report::duration(args.timeout),
                        ready: tracker.ready(),
                        created: index,
                        count,
                    });
                }
            }
        }
        latencies.push(created_at.elapsed());
    }
    Ok(Outcome {
        elapsed: start.elapsed(),
        memory: sampler.snapshot(),
        latencies: Some(latencies),
    })
}

/// Creates the CA Secret and the CA Issuer and waits until the Issuer is Ready.
async fn create_ca_issuer(
    client: &Client,
    namespace: &str,
    deadline: Instant,
    args: &Args,
) -> Result<(), LoadError> {
    let timeout = args.timeout;
    let now = jiff::Timestamp::now();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let (secret, issuer) = match (&args.pkcs11_token, &args.pkcs11_module, &args.pin_file) {
        (Some(token), Some(module), Some(pin_file)) => {
            let pin = std::fs::read_to_string(pin_file).map_err(|e| LoadError::Kube {
                action: format!("read the PIN file {}", pin_file.display()),
                detail: e.to_string(),
            })?;
            let pin = certkeeper::pkcs11::registry::without_line_end(&pin).to_owned();
            let uri = format!("pkcs11:token={token};object=load-{namespace}");
            let (module, key_pin) = (module.clone(), pin.clone());
            let key_uri = uri.clone();
            let secret = cluster::generate("make the load CA's key on the token", move || {
                cluster::hsm_ca_secret(now, &module, &key_uri, &key_pin)
            })
            .await?;
            secrets
                .create(&PostParams::default(), &cluster::pin_secret(&pin))
                .await
                .map_err(cluster::kube_failed(format!(
                    "create the PIN Secret in {namespace}"
                )))?;
            (secret, cluster::hsm_ca_issuer(&uri))
        }
        _ => (
            cluster::generate("generate the load CA", move || cluster::ca_secret(now)).await?,
            cluster::ca_issuer(),
        ),
    };
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .map_err(cluster::kube_failed(format!(
            "create Secret {}/{}",
            namespace,
            cluster::CA_SECRET
        )))?;
    let issuers: Api<Issuer> = Api::namespaced(client.clone(), namespace);
    issuers
        .create(&PostParams::default(), &issuer)
        .await
        .map_err(cluster::kube_failed(format!(
            "create Issuer {namespace}/{}",
            cluster::ISSUER
        )))?;
    loop {
        let issuer = issuers
            .get(cluster::ISSUER)
            .await
            .map_err(cluster::kube_failed(format!(
                "read Issuer {}/{}",
                namespace,
                cluster::ISSUER
            )))?;
        let state = cluster::issuer_readiness(&issuer);
        if state.is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(LoadError::IssuerNotReady {
                issuer: format!("{namespace}/{}", cluster::ISSUER),
                waited: report::duration(timeout),
                last: state.err().unwrap_or_default(),
            });
        }
        tokio::time::sleep(ISSUER_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("certkeeper-load").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Args::command().debug_assert();
    }

    #[test]
    fn defaults_are_a_thousand_ecdsa_certificates_in_ten_minutes() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.count, 1000);
        assert_eq!(args.namespace, None);
        assert_eq!(args.create_concurrency, 32);
        assert_eq!(args.timeout, Duration::from_secs(600));
        assert_eq!(args.key_algorithm, LeafKeyAlgorithm::Ecdsa);
        assert_eq!(args.metrics_url, None);
        assert_eq!(args.controller_namespace, "certkeeper-system");
        assert_eq!(args.controller_selector, "app.kubernetes.io/name=certkeeper");
        assert!(!args.keep);
        assert!(!args.latency);
    }

    #[test]
    fn every_flag_is_read() {
        let args = parse(&[
            "--count",
            "50",
            "--namespace",
            "load-test",
            "--create-concurrency",
            "4",
            "--timeout",
            "1h30m",
            "--key-algorithm",
            "rsa",
            "--metrics-url",
            "http://127.0.0.1:9402/metrics",
            "--controller-namespace",
            "ops",
            "--controller-selector",
            "app=ck",
            "--keep",
            "--latency",
        ])
        .unwrap();
        assert_eq!(args.count, 50);
        assert_eq!(args.namespace.as_deref(), Some("load-test"));
        assert_eq!(args.create_concurrency, 4);
        assert_eq!(args.timeout, Duration::from_secs(5400));
        assert_eq!(args.key_algorithm, LeafKeyAlgorithm::Rsa);
        assert_eq!(args.key_algorithm.algorithm(), KeyAlgorithm::Rsa);
        assert_eq!(
            args.metrics_url.map(|u| u.to_string()).as_deref(),
            Some("http://127.0.0.1:9402/metrics")
        );
        assert_eq!(args.controller_namespace, "ops");
        assert_eq!(args.controller_selector, "app=ck");
        assert!(args.keep);
        assert!(args.latency);
    }

    #[test]
    fn timeouts_are_go_durations_and_positive() {
        assert_eq!(parse_timeout("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_timeout("1.5m"), Ok(Duration::from_secs(90)));
        assert!(parse_timeout("10").is_err(), "a unit is required");
        assert!(parse_timeout("10 minutes").is_err());
        assert!(parse_timeout("0s").is_err());
        assert!(parse_timeout("-5m").is_err());
    }

    #[test]
    fn zero_counts_are_refused() {
        assert!(parse(&["--count", "0"]).is_err());
        assert!(parse(&["--create-concurrency", "0"]).is_err());
    }

    #[test]
    fn only_ecdsa_and_rsa_are_offered() {
        assert_eq!(
            parse(&["--key-algorithm", "ECDSA"]).unwrap().key_algorithm,
            LeafKeyAlgorithm::Ecdsa
        );
        assert!(parse(&["--key-algorithm", "Ed25519"]).is_err());
    }

    #[test]
    fn the_default_namespace_is_labelled_by_its_random_suffix() {
        let suffix = random_suffix();
        assert_eq!(suffix.len(), 6);
        assert!(
            suffix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
        assert_eq!(default_namespace("ab12cd"), "certkeeper-load-ab12cd");
    }

    #[test]
    fn failures_are_one_line_naming_the_fix() {
        let missing = LoadError::CrdMissing {
            crd: "certificates.certkeeper.io".into(),
        };
        assert_eq!(
            missing.to_string(),
            "the CRD certificates.certkeeper.io is not installed in this cluster; install the CRDs with \
             `kubectl apply -f crds/` or `kubectl apply -k manifests/`"
        );
        let timeout = LoadError::Timeout {
            waited: "10m".into(),
            ready: 512,
            created: 1000,
            count: 1000,
        };
        assert_eq!(
            timeout.to_string(),
            "timed out after 10m: 512 of 1000 Certificates Ready (1000 created)"
        );
        assert_eq!(LoadError::Interrupted.exit_code(), ExitCode::from(130));
    }
}
