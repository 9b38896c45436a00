//! `revoke certificate NAME [--reason R]`: requests revocation of a Certificate's current
//! certificate by setting `certkeeper.io/revoke-requested-at` (now, as `renew` writes it) and
//! `certkeeper.io/revocation-reason` in one merge patch under the CLI's field manager. The
//! controller records the revocation (a CertificateRevocation), then re-issues with a new key
//! (`Revoked`), and records the value as answered (`status.lastRevokeRequest`).

use clap::{Args, Subcommand};
use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use super::renew::{CLI_FIELD_MANAGER, request_time};
use super::{CliError, ClusterArgs, NamespaceArgs, Outcome, namespace_or_default};
use crate::api::Certificate;
use crate::revocation::{REVOCATION_REASON, REVOKE_REQUESTED_AT, RevocationReason};

#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  certkeeper revoke certificate frontend --reason keyCompromise -n certkeeper-demo"
)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(subcommand)]
    pub object: RevokeObject,
}

#[derive(Debug, Subcommand)]
pub enum RevokeObject {
    /// Revoke the certificate a Certificate's Secret holds now, and re-issue it with a new key.
    #[command(
        visible_alias = "cert",
        after_help = "Examples:\n  certkeeper revoke certificate frontend -n certkeeper-demo\n  \
                      certkeeper revoke cert frontend --reason keyCompromise -n certkeeper-demo"
    )]
    Certificate {
        /// Name of the Certificate.
        name: String,
        /// RFC 5280 reason: unspecified, keyCompromise, cACompromise, affiliationChanged,
        /// superseded, cessationOfOperation, certificateHold, privilegeWithdrawn, aACompromise.
        #[arg(long, default_value = "unspecified", value_parser = parse_reason)]
        reason: RevocationReason,
        #[command(flatten)]
        namespace: NamespaceArgs,
    },
}

fn parse_reason(value: &str) -> Result<RevocationReason, String> {
    value
        .parse()
        .map_err(|e: crate::revocation::RevocationError| e.to_string())
}

pub async fn run(client: &Client, args: &RevokeArgs, now: Timestamp) -> Result<Outcome, CliError> {
    let RevokeObject::Certificate {
        name,
        reason,
        namespace,
    } = &args.object;
    let namespace = namespace_or_default(&namespace.namespace, client);
    let at = request_time(now);
    // The reason is always written, so an earlier request's reason never lingers.
    let patch = json!({"metadata": {"annotations": {
        REVOKE_REQUESTED_AT: at,
        REVOCATION_REASON: reason.name(),
    }}});
    let params = PatchParams {
        field_manager: Some(CLI_FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let object = format!("Certificate {namespace}/{name}");
    Api::<Certificate>::namespaced(client.clone(), &namespace)
        .patch(name, &params, &Patch::Merge(&patch))
        .await
        .map_err(|e| CliError::api(format!("annotate {object}"), &object, e))?;
    Ok(Outcome::ok(format!(
        "{object}: revocation requested at {at} (reason {reason})\n"
    )))
}
