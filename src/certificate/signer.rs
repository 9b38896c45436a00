//! Resolving a Certificate's issuerRef to something that can sign, under the namespace rules:
//! an Issuer only in the Certificate's namespace, a ClusterIssuer's CA Secret only in the
//! cluster-resource namespace.

use kube::runtime::reflector::ObjectRef;

use super::triggers::Signer;
use crate::api::{Certificate, GROUP, IssuerRef, IssuerSpec};
use crate::context::Context;
use crate::error::Error;

/// The issuer could not be used; the reason is the Certificate's Ready reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignerProblem {
    NotFound(String),
    NotReady(String),
}

fn describe(issuer_ref: &IssuerRef) -> String {
    format!("{} {:?}", issuer_ref.kind(), issuer_ref.name)
}

/// Looks up the issuer spec in the caches, and which namespace its CA Secret lives in.
fn lookup(cert: &Certificate, ctx: &Context) -> Result<(IssuerSpec, String), SignerProblem> {
    let issuer_ref = &cert.spec.issuer_ref;
    if issuer_ref.group() != GROUP {
        return Err(SignerProblem::NotFound(format!(
            "issuerRef.group {:?} is not served by certkeeper (expected {GROUP})",
            issuer_ref.group()
        )));
    }
    let namespace = cert.metadata.namespace.clone().unwrap_or_default();
    let (found, ca_namespace) = match issuer_ref.kind() {
        "Issuer" => {
            let key = ObjectRef::new(&issuer_ref.name).within(&namespace);
            let found = ctx
                .issuers
                .get(&key)
                .map(|g| g.0.clone().map(|i| i.spec).map_err(|e| e.error));
            (found, namespace.clone())
        }
        "ClusterIssuer" => {
            let found = ctx
                .cluster_issuers
                .get(&ObjectRef::new(&issuer_ref.name))
                .map(|g| g.0.clone().map(|i| i.spec.issuer).map_err(|e| e.error));
            (found, ctx.cluster_resource_namespace.clone())
        }
        other => {
            return Err(SignerProblem::NotFound(format!(
                "issuerRef.kind {other:?} is not Issuer or ClusterIssuer"
            )));
        }
    };
    match found {
        None => Err(SignerProblem::NotFound(match issuer_ref.is_cluster() {
            true => format!("{} does not exist", describe(issuer_ref)),
            false => format!("{} does not exist in namespace {namespace}", describe(issuer_ref)),
        })),
        Some(Err(e)) => Err(SignerProblem::NotReady(format!(
            "{} cannot be read: {e}",
            describe(issuer_ref)
        ))),
        Some(Ok(spec)) => Ok((spec, ca_namespace)),
    }
}

/// The signer for `cert`: its issuer from the caches, and for a CA issuer the key pair of the
/// current CA Secret (read once per resourceVersion), validated at `now`.
pub async fn resolve(
    cert: &Certificate,
    ctx: &Context,
    now: jiff::Timestamp,
) -> Result<Result<Signer, SignerProblem>, Error> {
    let (spec, ca_namespace) = match lookup(cert, ctx) {
        Ok(found) => found,
        Err(problem) => return Ok(Err(problem)),
    };
    let issuer = describe(&cert.spec.issuer_ref);
    Ok(match (&spec.self_signed, &spec.ca) {
        (Some(_), None) => Ok(Signer::SelfSigned),
        (None, Some(ca)) => {
            match ctx
                .ca_key_pairs(cert.spec.issuer_ref.kind())
                .load(&ctx.client, &ca_namespace, ca, now)
                .await?
            {
                Ok((pair, _)) => Ok(Signer::Ca(pair)),
                Err(problem) => Err(SignerProblem::NotReady(format!(
                    "{issuer} is not ready: {problem}"
                ))),
            }
        }
        _ => Err(SignerProblem::NotReady(format!(
            "{issuer} must set exactly one of selfSigned or ca"
        ))),
    })
}
