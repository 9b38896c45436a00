//! `certkeeper controller`: runs the operator against the cluster of the current kubeconfig
//! (or in-cluster).

use std::net::SocketAddr;

use clap::Args;
use jiff::SignedDuration;

use super::CliError;
use crate::certificate::expiry;
use crate::issuer::rotation::RotationSettings;
use crate::runner;
use crate::telemetry::logs::{self, LogFormat};

#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// Namespace the ClusterIssuers read CA Secrets from [default: the controller's own
    /// namespace, or certkeeper-system outside a cluster].
    #[arg(long)]
    pub cluster_resource_namespace: Option<String>,
    /// How many objects are reconciled at once per controller.
    // A reconcile mostly waits for the API server (three writes on a first issuance), so the
    // rate is about this many over one reconcile's time: 8 kept the controller at 77 % of the
    // API server's ceiling for the same writes on the local kube-apiserver, 32 reached it
    // (`certkeeper-load --ceiling`, README "Load test against a cluster").
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Threads that run the reconciles, watches and HTTP endpoints. 1 runs them all on one
    /// thread, which costs the least CPU per issuance (no wake-ups between threads); more let
    /// the controller use more cores where the API server takes writes faster than one core
    /// can make them. Signing, keystores, CEL policy rules and HSM calls run on threads of
    /// their own either way.
    // 1: 0.96 s of controller CPU per 1000 first issuances against 1.34 s on a thread per core
    // (2 cores, local kube-apiserver; README "Load test against a cluster").
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub worker_threads: u16,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Address of the HTTP endpoint serving /metrics, /healthz and /readyz.
    /// `:PORT` listens on every IPv6 and IPv4 address (IPv4 only where IPv6 is off).
    #[arg(long, default_value = ":9402", value_parser = parse_bind_address)]
    pub metrics_bind_address: SocketAddr,
    /// Address of the HTTP endpoint serving CRLs (`/crl/{namespace}/{issuer}.crl`) and OCSP
    /// (`/ocsp/{namespace}/{issuer}`) of the CA issuers; `cluster` stands for a ClusterIssuer's
    /// namespace.
    #[arg(long, default_value = ":9403", value_parser = parse_bind_address)]
    pub pki_bind_address: SocketAddr,
    /// Remaining validities (Go durations, comma-separated) at which a Certificate gets an
    /// ExpiringSoon warning; only those shorter than its lifetime apply.
    #[arg(long, value_delimiter = ',', default_value = "168h,72h,24h", value_parser = expiry::parse_threshold)]
    pub expiry_warning_thresholds: Vec<SignedDuration>,
    /// Reconcile only while holding a coordination.k8s.io Lease, so that several replicas are
    /// safe (`--leader-elect` or `--leader-elect=true`; the install manifests set it).
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Namespace of the leader election Lease [default: the controller's own namespace, or
    /// certkeeper-system outside a cluster].
    #[arg(long)]
    pub leader_election_namespace: Option<String>,
    /// Name of the leader election Lease.
    #[arg(long, default_value = "certkeeper-controller")]
    pub leader_election_id: String,

    /// Guard every issuer: a Certificate is signed only when a CertificatePolicy allows it,
    /// and one that no policy selects is denied. Recommended for clusters shared by teams.
    #[arg(long)]
    pub require_policy: bool,
    /// During a CA rotation, how long every pod may take to see a written Secret or Bundle
    /// (kubelet sync plus application reload): waited after the new root is distributed and
    /// again before the old one is dropped (Go duration).
    #[arg(long, default_value = "5m", value_parser = expiry::parse_threshold)]
    pub trust_propagation_delay: SignedDuration,
    /// During a CA rotation, the span over which the certificates under the previous CA are
    /// re-issued, each at a slot derived from its UID (Go duration).
    #[arg(long, default_value = "10m", value_parser = expiry::parse_threshold)]
    pub rotation_reissue_window: SignedDuration,

    /// Watch every certificate in the cluster for expiry, not only certkeeper's own: every
    /// kubernetes.io/tls Secret, and the Secrets and ConfigMaps with --inventory-label
    /// (metrics, ExpiringSoon/Expired Events on the object). `--inventory=false` turns it off.
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub inventory: bool,
    /// Label selector of the namespaces the inventory watches [default: every namespace].
    #[arg(long)]
    pub inventory_namespaces: Option<String>,
    /// Label selector of the Opaque Secrets and ConfigMaps the inventory reads for PEM
    /// certificates under any key.
    #[arg(long, default_value = crate::inventory::DEFAULT_LABEL, value_parser = non_empty_selector)]
    pub inventory_label: String,

    /// A PKCS#11 module CA keys in HSMs are used through, as NAME=PATH (repeatable). Issuers
    /// name a module by NAME (`module-name=` in their URI); they can never make the controller
    /// load a module it was not given.
    #[arg(long = "pkcs11-module", value_parser = parse_module)]
    pub pkcs11_modules: Vec<(String, std::path::PathBuf)>,
    /// Logged-in sessions per token: how many signatures a token makes at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub pkcs11_sessions: u16,
    /// How long one call into a token may take before the issuer reports it unavailable (Go
    /// duration).
    #[arg(long, default_value = "10s", value_parser = parse_call_timeout)]
    pub pkcs11_sign_timeout: SignedDuration,
    /// Let namespaced Issuers use PKCS#11 keys; by default only ClusterIssuers may.
    #[arg(long, default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub pkcs11_allow_namespaced_issuers: bool,
}

/// `NAME=PATH` of `--pkcs11-module`.
fn parse_module(value: &str) -> Result<(String, std::path::PathBuf), String> {
    match value.split_once('=') {
        Some((name, path)) if !name.is_empty() && !path.is_empty() => Ok((name.to_owned(), path.into())),
        _ => Err(format!(
            "{value:?} is not NAME=PATH, e.g. softhsm=/usr/lib/softhsm/libsofthsm2.so"
        )),
    }
}

/// `--pkcs11-sign-timeout`: a Go duration above zero (zero would fail every call).
fn parse_call_timeout(value: &str) -> Result<SignedDuration, String> {
    match expiry::parse_threshold(value)? {
        d if d.is_zero() => Err("a token call needs some time; give a duration such as 10s".into()),
        d => Ok(d),
    }
}

/// Two `--pkcs11-module` of one NAME: which one an issuer's `module-name=` means is unclear.
fn duplicate_module(modules: &[(String, std::path::PathBuf)]) -> Option<&str> {
    let mut names = std::collections::HashSet::new();
    modules
        .iter()
        .map(|(name, _)| name.as_str())
        .find(|name| !names.insert(*name))
}

/// A label selector that selects something less than everything: an empty one would read
/// every Secret and ConfigMap of the cluster.
fn non_empty_selector(value: &str) -> Result<String, String> {
    match value.trim() {
        "" => Err("an empty selector would read every Secret and ConfigMap; name a label such as certkeeper.io/inventory=true".into()),
        selector => Ok(selector.to_owned()),
    }
}

/// `host:port`, or `:port` for every interface as Go programs (and cert-manager) accept: the
/// IPv6 wildcard, which on Linux takes IPv4 too, so IPv6-only clusters can probe it.
fn parse_bind_address(value: &str) -> Result<SocketAddr, String> {
    let full = match value.strip_prefix(':') {
        Some(port) => format!("[::]:{port}"),
        None => value.to_owned(),
    };
    full.parse()
        .map_err(|_| format!("{value:?} is not an address such as :9402 or 127.0.0.1:9402"))
}

pub async fn run(args: ControllerArgs) -> Result<(), CliError> {
    if let Some(name) = duplicate_module(&args.pkcs11_modules) {
        return Err(CliError::Invalid(format!(
            "--pkcs11-module {name}= is given twice; give each module a name of its own"
        )));
    }
    // First of all: from here on a SIGTERM is a shutdown request, whatever the phase.
    let shutdown = runner::shutdown_on_signals();
    // Connect before logging starts, so a failure is the one line `main` prints.
    let Some(connected) = runner::unless_shutdown(&shutdown, runner::connect()).await else {
        return Ok(());
    };
    let connected = connected.map_err(CliError::controller)?;
    let endpoint = crate::telemetry::server::bind(args.metrics_bind_address)
        .await
        .map_err(|e| {
            CliError::controller(runner::RunError::Listen {
                address: args.metrics_bind_address.to_string(),
                reason: e.to_string(),
            })
        })?;
    let pki = crate::telemetry::server::bind(args.pki_bind_address)
        .await
        .map_err(|e| {
            CliError::controller(runner::RunError::ListenPki {
                address: args.pki_bind_address.to_string(),
                reason: e.to_string(),
            })
        })?;
    logs::init(args.log_format);
    tracing::info!(server = %connected.server, version = %connected.version, "connected to the API server");
    runner::run(
        connected.client,
        runner::Settings {
            cluster_resource_namespace: args.cluster_resource_namespace,
            concurrency: args.concurrency,
            expiry_thresholds: args.expiry_warning_thresholds,
            rotation: RotationSettings {
                propagation_delay: args.trust_propagation_delay,
                reissue_window: args.rotation_reissue_window,
            },
            leader_election: args.leader_elect.then_some(runner::LeaderElection {
                namespace: args.leader_election_namespace,
                lease_name: args.leader_election_id,
            }),
            require_policy: args.require_policy,
            inventory: args.inventory.then(|| runner::InventorySettings {
                namespaces: args.inventory_namespaces.filter(|s| !s.is_empty()),
                label: args.inventory_label,
                own_grace: runner::OWN_GRACE,
            }),
            pkcs11: std::sync::Arc::new(crate::pkcs11::Pkcs11Registry::new(
                crate::pkcs11::Pkcs11Settings {
                    modules: args.pkcs11_modules,
                    sessions: usize::from(args.pkcs11_sessions),
                    sign_timeout: args.pkcs11_sign_timeout.unsigned_abs(),
                    allow_namespaced_issuers: args.pkcs11_allow_namespaced_issuers,
                },
            )),
        },
        endpoint,
        pki,
        shutdown,
    )
    .await
    .map_err(CliError::controller)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn port_only_addresses_listen_on_every_interface() {
        assert_eq!(parse_bind_address(":9402"), Ok("[::]:9402".parse().unwrap()));
        assert_eq!(
            parse_bind_address("127.0.0.1:9402"),
            Ok("127.0.0.1:9402".parse().unwrap())
        );
        assert!(parse_bind_address("9402").is_err());
    }

    #[test]
    fn one_thread_runs_everything_unless_more_are_asked_for() {
        let threads = |args: &[&str]| Cli::try_parse_from(args).map(|cli| cli.worker_threads());
        assert_eq!(threads(&["certkeeper", "controller"]).unwrap(), 1);
        assert_eq!(
            threads(&["certkeeper", "controller", "--worker-threads", "4"]).unwrap(),
            4
        );
        assert!(threads(&["certkeeper", "controller", "--worker-threads", "0"]).is_err());
        // Every other command runs on one thread.
        assert_eq!(threads(&["certkeeper", "crd"]).unwrap(), 1);
    }

    #[test]
    fn leader_election_is_off_unless_asked_for() {
        let parse = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
            Command::Controller(args) => args.leader_elect,
            _ => unreachable!(),
        };
        assert!(!parse(&["certkeeper", "controller"]));
        assert!(parse(&["certkeeper", "controller", "--leader-elect"]));
        assert!(parse(&["certkeeper", "controller", "--leader-elect=true"]));
        assert!(!parse(&["certkeeper", "controller", "--leader-elect=false"]));
    }

    #[test]
    fn a_token_call_needs_a_timeout_above_zero_and_each_module_a_name_of_its_own() {
        assert!(parse_call_timeout("0s").is_err());
        assert!(parse_call_timeout("0").is_err());
        assert_eq!(parse_call_timeout("10s"), Ok(SignedDuration::from_secs(10)));
        let modules = |names: &[&str]| -> Vec<(String, std::path::PathBuf)> {
            names
                .iter()
                .map(|n| (n.to_string(), "/lib/x.so".into()))
                .collect()
        };
        assert_eq!(duplicate_module(&modules(&["a", "b"])), None);
        assert_eq!(duplicate_module(&modules(&["a", "b", "a"])), Some("a"));
    }

    #[test]
    fn the_inventory_is_on_unless_turned_off() {
        let parse = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
            Command::Controller(args) => (args.inventory, args.inventory_label),
            _ => unreachable!(),
        };
        assert_eq!(
            parse(&["certkeeper", "controller"]),
            (true, "certkeeper.io/inventory=true".to_owned())
        );
        assert!(parse(&["certkeeper", "controller", "--inventory"]).0);
        assert!(parse(&["certkeeper", "controller", "--inventory=true"]).0);
        assert!(!parse(&["certkeeper", "controller", "--inventory=false"]).0);
        assert!(Cli::try_parse_from(["certkeeper", "controller", "--inventory-label="]).is_err());
    }
}
