//! `renew NAME... | --all | -l SELECTOR`: requests renewal by setting the
//! `certkeeper.io/renew-requested-at` annotation to now, as a merge patch under the field
//! manager `certkeeper-cli` (never the controller's own), and says what was asked. The
//! controller re-issues once that time has come (`ManuallyTriggered`) and records the value
//! as answered (`status.lastRenewRequest`).

use clap::Args;
use jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::{CliError, ClusterArgs, Outcome, namespace_or_default};
use crate::api::{Certificate, RENEW_REQUESTED_AT};

/// The field manager of the CLI's writes.
pub const CLI_FIELD_MANAGER: &str = "certkeeper-cli";

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  certkeeper renew frontend backend -n certkeeper-demo\n  \
                        certkeeper renew --all -n certkeeper-demo\n  \
                        certkeeper renew -l app=web -A"
)]
pub struct RenewArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Names of the Certificates to renew.
    #[arg(required_unless_present_any = ["all", "selector"], conflicts_with_all = ["all", "selector", "all_namespaces"])]
    pub names: Vec<String>,
    /// Renew every Certificate of the namespace (or of all namespaces with -A).
    #[arg(long, conflicts_with = "selector")]
    pub all: bool,
    /// Renew the Certificates matching this label selector.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Namespace [default: the current kubeconfig context's namespace, as kubectl].
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// In all namespaces (with --all or -l).
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
}

pub async fn run(client: &Client, args: &RenewArgs, now: Timestamp) -> Result<Outcome, CliError> {
    let namespace = namespace_or_default(&args.namespace, client);
    let targets: Vec<(String, String)> = if args.names.is_empty() {
        let api: Api<Certificate> = match args.all_namespaces {
            true => Api::all(client.clone()),
            false => Api::namespaced(client.clone(), &namespace),
        };
        let mut params = ListParams::default();
        if let Some(selector) = &args.selector {
            params = params.labels(selector);
        }
        let where_ = match args.all_namespaces {
            true => "all namespaces".to_owned(),
            false => format!("namespace {namespace}"),
        };
        let list = api
            .list(&params)
            .await
            .map_err(|e| CliError::api(format!("list Certificates in {where_}"), "the Certificate API", e))?;
        if list.items.is_empty() {
            return Ok(Outcome::ok(format!("no Certificates found in {where_}\n")));
        }
        list.items
            .iter()
            .map(|c| (c.namespace().unwrap_or_default(), c.name_any()))
            .collect()
    } else {
        args.names
            .iter()
            .map(|n| (namespace.clone(), n.clone()))
            .collect()
    };

    let at = request_time(now);
    let patch = json!({"metadata": {"annotations": {RENEW_REQUESTED_AT: at.to_string()}}});
    let params = PatchParams {
        field_manager: Some(CLI_FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let mut outcome = Outcome::default();
    for (namespace, name) in &targets {
        let object = format!("Certificate {namespace}/{name}");
        let result = Api::<Certificate>::namespaced(client.clone(), namespace)
            .patch(name, &params, &Patch::Merge(&patch))
            .await;
        match result {
            Ok(_) => outcome.line(format!("{object}: renewal requested at {at}")),
            Err(e) => outcome.fail(CliError::api(format!("annotate {object}"), &object, e).to_string()),
        }
    }
    outcome.summary = format!(
        "{} of {} Certificates not renewed",
        outcome.failures.len(),
        targets.len()
    );
    Ok(outcome)
}

/// The value a request annotation gets: now, RFC 3339 in milliseconds. Never ahead of the
/// clock (a request dated ahead waits for its time), and distinct from a request made a moment
/// before, which the controller has answered (it records the value it answered, so whole
/// seconds, as `date -u +%FT%TZ` writes them, work as well).
pub fn request_time(now: Timestamp) -> String {
    let millis = Timestamp::from_millisecond(now.as_millisecond()).unwrap_or(now);
    format!("{millis:.3}")
}
