//! The command line: `controller` runs the operator, `crd` prints the CRDs, and the commands
//! people on call and developers reach for: `status`, `renew`, `revoke`, `inspect`, `scan`, `check`, `convert`,
//! `policy check`, `issue` (no cluster needed) and `ca init`/`ca csr` (a CA key on a PKCS#11
//! token). One file per command; each shares the controller's pure code (spec validation,
//! triggers, pki, pkcs11) rather than a copy of it.
//!
//! The binary also works as a kubectl plugin: linked or installed as `kubectl-certkeeper`, it
//! is run as `kubectl certkeeper ...` and its help says so.

pub mod ca;
pub mod check;
pub mod controller;
pub mod convert;
pub mod inspect;
pub mod issue;
pub mod manifests;
pub mod material;
pub mod policy;
pub mod renew;
pub mod revoke;
pub mod scan;
pub mod status;
pub mod text;

#[cfg(test)]
mod tests;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::Serialize;

pub use controller::ControllerArgs;

/// The name the binary has as a kubectl plugin.
pub const PLUGIN_BINARY: &str = "kubectl-certkeeper";

#[derive(Debug, Parser)]
#[command(
    name = "certkeeper",
    version,
    about = "Kubernetes certificate operator: in-cluster CAs, TLS Secrets, renewal on time",
    after_help = "Examples:\n  certkeeper issue -f manifests/examples/ --out-dir certs/\n  \
                  certkeeper status certificate frontend -n certkeeper-demo"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the operator against the cluster of the current kubeconfig (or in-cluster).
    #[command(after_help = "Example:\n  certkeeper controller --leader-elect=false")]
    Controller(ControllerArgs),
    /// Print the CustomResourceDefinitions as YAML.
    #[command(after_help = "Example:\n  certkeeper crd > crds/certkeeper.yaml")]
    Crd,
    /// Why a Certificate is (not) ready: conditions, times, issuer, Secret contents, Events.
    Status(status::StatusArgs),
    /// Request renewal of Certificates (the certkeeper.io/renew-requested-at annotation).
    Renew(renew::RenewArgs),
    /// Revoke a Certificate's current certificate and re-issue it with a new key.
    Revoke(revoke::RevokeArgs),
    /// Decode a TLS Secret or a PEM file: every certificate of the chain, key, verification.
    Inspect(inspect::InspectArgs),
    /// Check that the certkeeper API is installed and usable.
    Check(check::CheckArgs),
    /// Convert cert-manager.io/v1 manifests to certkeeper.io/v1, printing YAML.
    Convert(convert::ConvertArgs),
    /// Issue certificates from manifests into files, without a cluster.
    Issue(issue::IssueArgs),
    /// Judge Certificates against the CertificatePolicies, as the controller would.
    Policy(policy::PolicyArgs),
    /// List every certificate in the cluster's TLS Secrets (and labelled Secrets and
    /// ConfigMaps), soonest expiry first, with who manages it.
    Scan(scan::ScanArgs),
    /// CA keys on a PKCS#11 token (an HSM): make one with a self-signed certificate or a CSR
    /// (`ca init`), or a CSR for one already there (`ca csr`).
    Ca(ca::CaArgs),
}

/// `-n/--namespace` and `-A`, as kubectl spells them.
#[derive(Debug, Clone, Args)]
pub struct NamespaceArgs {
    /// Namespace [default: the current kubeconfig context's namespace, as kubectl].
    #[arg(short, long)]
    pub namespace: Option<String>,
}

/// Which cluster, as kubectl's `--kubeconfig` and `--context` choose it (a kubectl plugin gets
/// them as typed).
#[derive(Debug, Clone, Default, Args)]
pub struct ClusterArgs {
    /// Path to the kubeconfig file [default: KUBECONFIG, else ~/.kube/config, else in-cluster].
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use [default: the current context].
    #[arg(long, global = true)]
    pub context: Option<String>,
}

/// `-o json|yaml` for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Json,
    Yaml,
}

/// The message of the API server's 404 for a path no resource is served at.
const UNKNOWN_RESOURCE: &str = "the server could not find the requested resource";

/// What a command can fail with; `main` prints it as one line, `certkeeper: ...`.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("no cluster: {0}")]
    NoCluster(String),
    #[error("cannot reach the Kubernetes API server: {0}")]
    Unreachable(String),
    #[error("{what} not found")]
    NotFound { what: String },
    #[error(
        "cannot {action}: the API server does not serve it; are the certkeeper CRDs installed? \
         (kubectl apply --server-side -f crds/certkeeper.yaml)"
    )]
    NotServed { action: String },
    #[error("forbidden: cannot {action}: {message}")]
    Forbidden { action: String, message: String },
    #[error("cannot {action}: {reason}")]
    Api { action: String, reason: String },
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("{0}")]
    Invalid(String),
    /// Some objects failed; each was reported on its own line already.
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    Controller(String),
    /// The token refused or failed: the key reference (never a PIN) and what went wrong.
    #[error("{key}: {message}")]
    Hsm { key: String, message: String },
}

impl CliError {
    fn controller(e: impl std::fmt::Display) -> Self {
        Self::Controller(e.to_string())
    }

    /// A failed API call, in words: `action` says what was attempted ("get Certificate
    /// shop/web"), `what` names the object for a not-found.
    pub fn api(action: impl Into<String>, what: impl Into<String>, error: kube::Error) -> Self {
        let action = action.into();
        match error {
            // What the API server answers for a resource it has no handler for (no CRD).
            kube::Error::Api(status) if status.is_not_found() && status.message == UNKNOWN_RESOURCE => {
                Self::NotServed { action }
            }
            kube::Error::Api(status) if status.is_not_found() => Self::NotFound { what: what.into() },
            kube::Error::Api(status) if status.is_forbidden() => Self::Forbidden {
                action,
                message: status.message,
            },
            kube::Error::Api(status) => Self::Api {
                action,
                reason: format!("{} ({})", status.message, status.code),
            },
            kube::Error::HyperError(e) => Self::Unreachable(with_causes(&e)),
            kube::Error::Service(e) => Self::Unreachable(with_causes(e.as_ref())),
            other => Self::Api {
                action,
                reason: other.to_string(),
            },
        }
    }
}

/// What a command over several objects did: its output, and one line per object that failed
/// (printed on stderr, and the exit is non-zero).
#[derive(Debug, Default)]
pub struct Outcome {
    pub output: String,
    pub failures: Vec<String>,
    /// The last line when something failed ("2 of 5 Certificates not renewed").
    pub summary: String,
}

impl Outcome {
    pub fn ok(output: String) -> Self {
        Self {
            output,
            ..Self::default()
        }
    }

    pub fn line(&mut self, line: impl AsRef<str>) {
        self.output.push_str(line.as_ref());
        self.output.push('\n');
    }

    pub fn fail(&mut self, failure: impl Into<String>) {
        self.failures.push(failure.into());
    }

    /// Prints the output, then each failure as its own `certkeeper: ...` line.
    fn finish(self) -> Result<(), CliError> {
        print!("{}", self.output);
        if self.failures.is_empty() {
            return Ok(());
        }
        for failure in &self.failures {
            eprintln!("certkeeper: {failure}");
        }
        Err(CliError::Failed(self.summary))
    }
}

/// An error and its causes, `outer: inner: innermost` ("client error (Connect): tcp connect
/// error: Connection refused"), each said once.
fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

/// A client as kubectl would make it: `--kubeconfig`, else KUBECONFIG or ~/.kube/config, at
/// `--context` or the current context; else in-cluster. Its default namespace is the context's
/// namespace (or the service account's in a pod).
pub async fn connect(cluster: &ClusterArgs) -> Result<Client, CliError> {
    let options = KubeConfigOptions {
        context: cluster.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match (&cluster.kubeconfig, &cluster.context) {
        (Some(path), _) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|e| CliError::Read {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| CliError::NoCluster(format!("{}: {}", path.display(), with_causes(&e))))
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| CliError::NoCluster(with_causes(&e))),
        (None, None) => kube::Config::infer().await.map_err(|e| {
            CliError::NoCluster(format!(
                "no usable kubeconfig (KUBECONFIG, ~/.kube/config) and not in a cluster: {}",
                with_causes(&e)
            ))
        }),
    }?;
    Client::try_from(config).map_err(|e| CliError::Unreachable(e.to_string()))
}

/// The namespace to act in: `-n`, else the client's default (the kubeconfig context's).
pub fn namespace_or_default(namespace: &Option<String>, client: &Client) -> String {
    namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned())
}

/// `value` as JSON or YAML.
pub fn render<T: Serialize>(value: &T, format: OutputFormat) -> Result<String, CliError> {
    match format {
        OutputFormat::Json => serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(|e| CliError::Invalid(format!("cannot render JSON: {e}"))),
        OutputFormat::Yaml => {
            serde_yaml::to_string(value).map_err(|e| CliError::Invalid(format!("cannot render YAML: {e}")))
        }
    }
}

/// The command tree, named as invoked: `kubectl certkeeper` when argv[0] is
/// `kubectl-certkeeper`, so usage lines and examples say what to type.
pub fn command_for(argv0: &OsStr) -> clap::Command {
    let command = Cli::command().max_term_width(text::WIDTH);
    let plugin = Path::new(argv0)
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.strip_suffix(".exe").unwrap_or(n) == PLUGIN_BINARY);
    if plugin {
        as_plugin(command.bin_name("kubectl certkeeper")).mut_subcommand("ca", |ca| {
            ca.mut_subcommand("init", |init| {
                init.override_usage(ca::init_usage("kubectl certkeeper"))
            })
        })
    } else {
        command
    }
}

fn as_plugin(command: clap::Command) -> clap::Command {
    let help = command.get_after_help().map(|h| {
        h.to_string()
            .replace("  certkeeper ", "  kubectl certkeeper ")
            .replace("| certkeeper ", "| kubectl certkeeper ")
    });
    let children: Vec<String> = command
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect();
    let mut command = match help {
        Some(help) => command.after_help(help),
        None => command,
    };
    for child in children {
        command = command.mut_subcommand(child, as_plugin);
    }
    command
}

impl Cli {
    /// How many threads the command's runtime should have: the controller's
    /// `--worker-threads`; 1 for every other command.
    pub fn worker_threads(&self) -> usize {
        match &self.command {
            Command::Controller(args) => usize::from(args.worker_threads),
            _ => 1,
        }
    }
}

/// Parses the process's arguments (exits with clap's message on a usage error).
pub fn parse() -> Cli {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let matches = command_for(&argv0).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Runs the command; an `Err` is printed by `main` as one line with a non-zero exit.
pub async fn dispatch(cli: Cli) -> Result<(), CliError> {
    let now = jiff::Timestamp::now();
    match cli.command {
        Command::Crd => {
            let yaml = crate::api::crds_yaml()
                .map_err(|e| CliError::Invalid(format!("cannot render the CRDs: {e}")))?;
            print!("{yaml}");
            Ok(())
        }
        Command::Controller(args) => controller::run(args).await,
        Command::Status(args) => {
            let client = connect(&args.cluster).await?;
            print!("{}", status::run(&client, &args, now).await?);
            Ok(())
        }
        Command::Renew(args) => {
            let client = connect(&args.cluster).await?;
            renew::run(&client, &args, now).await?.finish()
        }
        Command::Revoke(args) => {
            let client = connect(&args.cluster).await?;
            revoke::run(&client, &args, now).await?.finish()
        }
        Command::Inspect(args) => {
            let client = match &args.target {
                inspect::Target::Secret { .. } => Some(connect(&args.cluster).await?),
                inspect::Target::File { .. } => None,
            };
            print!("{}", inspect::run(client.as_ref(), &args, now).await?);
            Ok(())
        }
        Command::Check(args) => {
            let client = connect(&args.cluster).await?;
            print!("{}", check::run(&client, &args).await?);
            Ok(())
        }
        Command::Convert(args) => convert::run(&args)?.finish(),
        Command::Issue(args) => issue::run(&args, now)?.finish(),
        Command::Policy(args) => policy::run(&args).await?.finish(),
        Command::Scan(args) => {
            let client = connect(&args.cluster).await?;
            scan::run(&client, &args, now).await?.finish()
        }
        // The token is called synchronously.
        Command::Ca(args) => tokio::task::spawn_blocking(move || ca::run(&args, now))
            .await
            .map_err(|e| CliError::Failed(format!("the ca command did not finish: {e}")))??
            .finish(),
    }
}
