//! `check api [--wait DURATION]`: the certkeeper.io/v1 API is served, its four CRDs are
//! established, and a Certificate passes a server-side dry-run create. Scripts and CI wait on
//! it; the exit is non-zero with the reason otherwise.

use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Subcommand};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::PostParams;
use kube::{Api, Client};

use super::renew::CLI_FIELD_MANAGER;
use super::{CliError, ClusterArgs, namespace_or_default};
use crate::api::{Certificate, CertificateSpec, GROUP, IssuerRef};

/// The resources of certkeeper.io/v1, plural, as discovery lists them.
/// A controller without the CertificateRevocation CRD never gets ready (its watch of records
/// never lists), and one without the CertificatePolicy CRD signs nothing (PolicyUnavailable),
/// so those are checked too.
const RESOURCES: [&str; 6] = [
    "certificates",
    "issuers",
    "clusterissuers",
    "bundles",
    "certificaterevocations",
    "certificatepolicies",
];
/// Between two attempts of `--wait`.
const RETRY_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  certkeeper check api\n  certkeeper check api --wait 2m")]
pub struct CheckArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(subcommand)]
    pub what: CheckWhat,
}

#[derive(Debug, Subcommand)]
pub enum CheckWhat {
    /// The CRDs are installed and established, and a Certificate passes a dry-run create.
    #[command(after_help = "Examples:\n  certkeeper check api\n  \
                            certkeeper check api --wait 2m -n certkeeper-demo")]
    Api {
        /// Keep trying until the API is usable or this much time passed (Go duration: 30s, 2m).
        #[arg(long, value_parser = parse_wait)]
        wait: Option<Duration>,
        /// Namespace of the dry-run Certificate [default: the kubeconfig context's].
        #[arg(short, long)]
        namespace: Option<String>,
    },
}

fn parse_wait(value: &str) -> Result<Duration, String> {
    kube::core::Duration::from_str(value)
        .map_err(|e| format!("{value:?} is not a duration such as 30s or 2m: {e}"))
        .and_then(|d| match d.is_negative() {
            true => Err(format!("{value:?} is negative")),
            false => Ok(d.into()),
        })
}

pub async fn run(client: &Client, args: &CheckArgs) -> Result<String, CliError> {
    let CheckWhat::Api { wait, namespace } = &args.what;
    let namespace = namespace_or_default(namespace, client);
    let deadline = tokio::time::Instant::now() + wait.unwrap_or_default();
    loop {
        match check_api(client, &namespace).await {
            Ok(report) => return Ok(report),
            Err(e) if tokio::time::Instant::now() + RETRY_EVERY <= deadline => {
                tracing::debug!(error = %e, "API not usable yet");
                tokio::time::sleep(RETRY_EVERY).await;
            }
            Err(e) => {
                return Err(match wait {
                    Some(w) => CliError::Failed(format!(
                        "the certkeeper API is not usable after {}: {e}",
                        crate::certificate::expiry::go_duration(
                            jiff::SignedDuration::try_from(*w).unwrap_or_default()
                        )
                    )),
                    None => e,
                });
            }
        }
    }
}

/// One attempt; the error says the first thing that is wrong.
async fn check_api(client: &Client, namespace: &str) -> Result<String, CliError> {
    let api_version = format!("{GROUP}/v1");
    let resources = client
        .list_api_group_resources(&api_version)
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) if s.is_not_found() => CliError::Invalid(format!(
                "the {api_version} API is not served: are the CRDs installed? \
             (kubectl apply --server-side -f crds/certkeeper.yaml)"
            )),
            e => CliError::api(format!("discover {api_version}"), api_version.clone(), e),
        })?;
    for resource in RESOURCES {
        if !resources.resources.iter().any(|r| r.name == resource) {
            return Err(CliError::Invalid(format!(
                "the {api_version} API does not serve {resource}: is the CRD installed?"
            )));
        }
    }
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for resource in RESOURCES {
        let name = format!("{resource}.{GROUP}");
        let crd = crds.get(&name).await.map_err(|e| {
            CliError::api(
                format!("get CustomResourceDefinition {name}"),
                format!("CustomResourceDefinition {name}"),
                e,
            )
        })?;
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "Established");
        match established {
            Some(c) if c.status == "True" => {}
            Some(c) => {
                return Err(CliError::Invalid(format!(
                    "CustomResourceDefinition {name} is not established: {}",
                    c.message.unwrap_or(c.reason.unwrap_or_default())
                )));
            }
            None => {
                return Err(CliError::Invalid(format!(
                    "CustomResourceDefinition {name} is not established yet"
                )));
            }
        }
    }
    let mut probe = Certificate::new(
        "",
        CertificateSpec {
            secret_name: "certkeeper-check-api".into(),
            issuer_ref: IssuerRef {
                name: "certkeeper-check-api".into(),
                kind: Some("Issuer".into()),
                group: Some(GROUP.into()),
            },
            dns_names: Some(vec!["check-api.certkeeper.io".into()]),
            ..CertificateSpec::default()
        },
    );
    probe.metadata.name = None;
    probe.metadata.generate_name = Some("certkeeper-check-api-".into());
    let params = PostParams {
        dry_run: true,
        field_manager: Some(CLI_FIELD_MANAGER.into()),
    };
    Api::<Certificate>::namespaced(client.clone(), namespace)
        .create(&params, &probe)
        .await
        .map_err(|e| {
            CliError::api(
                format!("dry-run create a Certificate in namespace {namespace}"),
                format!("namespace {namespace}"),
                e,
            )
        })?;
    let mut report = format!("{api_version} is served\n");
    for resource in RESOURCES {
        report.push_str(&format!(
            "CustomResourceDefinition {resource}.{GROUP} is established\n"
        ));
    }
    report.push_str(&format!(
        "a Certificate passes a server-side dry-run create in namespace {namespace}\n"
    ));
    Ok(report)
}
