//! `policy check -f FILE [-n NS] [--policies DIR]`: for each Certificate in the files, which
//! CertificatePolicies apply and what each says, judged by the controller's own decision —
//! against the cluster's policies, namespaces and issuers, or with `--policies` against files
//! and no cluster. `issue` judges its Certificates with the same `PolicySet`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde_json::Value;

use super::manifests::{self, Document};
use super::text::wrap;
use super::{CliError, ClusterArgs, Outcome, convert, namespace_or_default};
use crate::api::{Certificate, CertificatePolicy, ClusterIssuer, GROUP, Issuer};
use crate::certificate::spec;
use crate::issuance_policy::{CompiledPolicy, Explained, IssuerId, Policies, PolicyDecision, Request};

#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(subcommand)]
    pub what: PolicyCommand,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Which CertificatePolicies apply to each Certificate of the files, and whether each
    /// allows it and why. Exits non-zero when one is denied.
    #[command(
        after_help = "Examples:\n  certkeeper policy check -f certificate.yaml -n payments\n  \
                            certkeeper policy check -f certs/ --policies manifests/examples/policy/\n\n\
                            With --policies no cluster is read: the CertificatePolicies, Namespaces \
                            (for their labels) and issuers (for spec.requirePolicy) come from those files."
    )]
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Manifest file, directory or `-` holding the Certificates to judge; repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Namespace of the Certificates that have none [default: the kubeconfig context's, or
    /// `default` with --policies].
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// Judge against the CertificatePolicies (and Namespaces, issuers) of these files instead
    /// of the cluster's; repeatable.
    #[arg(long)]
    pub policies: Vec<PathBuf>,
    /// As the controller's --require-policy: every issuer is guarded.
    #[arg(long)]
    pub require_policy: bool,
}

/// The policies, namespace labels and issuers that require a policy, from one place.
pub struct PolicySet {
    pub policies: Policies,
    /// Issuers with `spec.requirePolicy: true`: (kind, namespace or "", name).
    pub requiring: BTreeSet<(String, String, String)>,
}

impl PolicySet {
    /// The set from manifests: CertificatePolicies, Namespaces (their labels; a namespace not
    /// among them has none) and issuers. Objects that cannot be read are failures.
    pub fn from_documents(
        documents: &[Document],
        default_namespace: &str,
        require_everywhere: bool,
        outcome: &mut Outcome,
    ) -> PolicySet {
        let mut policies = Vec::new();
        let mut namespaces = BTreeMap::new();
        let mut requiring = BTreeSet::new();
        for document in documents {
            let object = match document.api_version().split_once('/') {
                Some(("cert-manager.io", _)) => match convert::convert(document) {
                    Ok(object) => object,
                    Err(_) => continue,
                },
                _ => document.object.clone(),
            };
            let failed = |outcome: &mut Outcome, e: &dyn std::fmt::Display| {
                outcome.fail(format!("{} ({}): {e}", document.describe(), document.source))
            };
            match (document.kind(), document.api_version()) {
                ("CertificatePolicy", version) if version.starts_with(GROUP) => {
                    match serde_json::from_value::<CertificatePolicy>(object) {
                        Ok(policy) => policies.push(CompiledPolicy::compile(&policy)),
                        Err(e) => failed(outcome, &e),
                    }
                }
                ("Namespace", "v1") => match serde_json::from_value::<Namespace>(object) {
                    Ok(namespace) => {
                        namespaces.insert(namespace.name_any(), namespace.labels().clone());
                    }
                    Err(e) => failed(outcome, &e),
                },
                ("Issuer", _) | ("ClusterIssuer", _)
                    if object.pointer("/spec/requirePolicy") == Some(&Value::Bool(true)) =>
                {
                    let kind = document.kind().to_owned();
                    let namespace = match kind.as_str() {
                        "Issuer" => document.str("/metadata/namespace").unwrap_or(default_namespace),
                        _ => "",
                    };
                    let name = document.str("/metadata/name").unwrap_or_default();
                    requiring.insert((kind, namespace.to_owned(), name.to_owned()));
                }
                _ => {}
            }
        }
        PolicySet {
            policies: Policies::fixed(policies, namespaces, require_everywhere),
            requiring,
        }
    }

    /// The set from the cluster: every CertificatePolicy and Namespace, and the issuers that
    /// require a policy.
    pub async fn from_cluster(client: &Client, require_everywhere: bool) -> Result<PolicySet, CliError> {
        let list = |what: &str, e: kube::Error| CliError::api(format!("list {what}"), what, e);
        let policies = Api::<CertificatePolicy>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| list("CertificatePolicies", e))?;
        let namespaces = Api::<Namespace>::all(client.clone())
            .list_metadata(&ListParams::default())
            .await
            .map_err(|e| list("Namespaces", e))?;
        let mut requiring = BTreeSet::new();
        let issuers = Api::<Issuer>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| list("Issuers", e))?;
        for issuer in issuers
            .items
            .iter()
            .filter(|i| i.spec.require_policy == Some(true))
        {
            requiring.insert((
                "Issuer".into(),
                issuer.namespace().unwrap_or_default(),
                issuer.name_any(),
            ));
        }
        let cluster_issuers = Api::<ClusterIssuer>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| list("ClusterIssuers", e))?;
        for issuer in cluster_issuers
            .items
            .iter()
            .filter(|i| i.spec.issuer.require_policy == Some(true))
        {
            requiring.insert(("ClusterIssuer".into(), String::new(), issuer.name_any()));
        }
        Ok(PolicySet {
            policies: Policies::fixed(
                policies.items.iter().map(CompiledPolicy::compile).collect(),
                namespaces
                    .items
                    .iter()
                    .map(|n| (n.name_any(), n.labels().clone()))
                    .collect(),
                require_everywhere,
            ),
            requiring,
        })
    }

    fn issuer<'a>(&self, cert: &'a Certificate) -> IssuerId<'a> {
        let issuer_ref = &cert.spec.issuer_ref;
        let namespace = match issuer_ref.is_cluster() {
            true => String::new(),
            false => cert.namespace().unwrap_or_default(),
        };
        let key = (issuer_ref.kind().to_owned(), namespace, issuer_ref.name.clone());
        IssuerId {
            kind: issuer_ref.kind(),
            name: &issuer_ref.name,
            require_policy: self.requiring.contains(&key),
        }
    }

    /// What the policies decide for `cert`, whose spec is `spec`.
    pub fn decide(&self, cert: &Certificate, spec: &spec::ValidatedSpec) -> PolicyDecision {
        let (namespace, name) = (cert.namespace().unwrap_or_default(), cert.name_any());
        let request = Request {
            namespace: &namespace,
            name: &name,
            spec,
        };
        self.policies.decide(&self.issuer(cert), &request)
    }

    fn explain(&self, cert: &Certificate, spec: &spec::ValidatedSpec) -> Vec<(String, Explained)> {
        let (namespace, name) = (cert.namespace().unwrap_or_default(), cert.name_any());
        let request = Request {
            namespace: &namespace,
            name: &name,
            spec,
        };
        self.policies.explain(&self.issuer(cert), &request)
    }
}

pub async fn run(args: &PolicyArgs) -> Result<Outcome, CliError> {
    let PolicyCommand::Check(check) = &args.what;
    let documents = manifests::read_all(&check.files)?;
    let mut outcome = Outcome::default();
    let (set, namespace) = match check.policies.is_empty() {
        true => {
            let client = super::connect(&args.cluster).await?;
            let namespace = namespace_or_default(&check.namespace, &client);
            (
                PolicySet::from_cluster(&client, check.require_policy).await?,
                namespace,
            )
        }
        false => {
            let namespace = check.namespace.clone().unwrap_or_else(|| "default".into());
            let policy_documents = manifests::read_all(&check.policies)?;
            let set =
                PolicySet::from_documents(&policy_documents, &namespace, check.require_policy, &mut outcome);
            (set, namespace)
        }
    };
    check_all(&documents, &set, &namespace, &mut outcome);
    Ok(outcome)
}

/// Judges every Certificate of `documents`: a paragraph each; a denied one is a failure.
pub fn check_all(documents: &[Document], set: &PolicySet, default_namespace: &str, outcome: &mut Outcome) {
    let mut judged = 0;
    let mut denied = 0;
    for document in documents.iter().filter(|d| d.kind() == "Certificate") {
        let Some(object) = convert::certkeeper_object(document, outcome) else {
            continue;
        };
        let mut cert = match serde_json::from_value::<Certificate>(object) {
            Ok(cert) => cert,
            Err(e) => {
                outcome.fail(format!("{} ({}): {e}", document.describe(), document.source));
                continue;
            }
        };
        if cert.metadata.namespace.is_none() {
            cert.metadata.namespace = Some(default_namespace.to_owned());
        }
        let described = format!(
            "Certificate {}/{} ({} {:?})",
            cert.namespace().unwrap_or_default(),
            cert.name_any(),
            cert.spec.issuer_ref.kind(),
            cert.spec.issuer_ref.name
        );
        let spec = match spec::validate(&cert.spec) {
            Ok(spec) => spec,
            Err(e) => {
                outcome.fail(format!("{described}: invalid spec: {}", e.0));
                continue;
            }
        };
        judged += 1;
        let decision = set.decide(&cert, &spec);
        let verdict = match &decision {
            PolicyDecision::Unguarded => "allowed: no CertificatePolicy guards its issuer".to_owned(),
            PolicyDecision::Allowed(policy) => format!("allowed by CertificatePolicy {policy:?}"),
            PolicyDecision::Denied(why) if why.starts_with("denied") => why.clone(),
            PolicyDecision::Denied(why) => format!("denied: {why}"),
            PolicyDecision::Unavailable(why) => format!("cannot be judged: {why}"),
        };
        outcome.line(wrap(&format!("{described}:"), &verdict, 4));
        for (policy, said) in set.explain(&cert, &spec) {
            let line = match said {
                Explained::OtherIssuer => continue,
                Explained::OtherNamespace => "does not select its namespace".to_owned(),
                Explained::Allows => "allows it".to_owned(),
                Explained::Refuses(why) => format!("refuses: {why}"),
                Explained::NotReady(why) => format!("is not Ready, allows nothing: {why}"),
            };
            outcome.line(wrap(&format!("  CertificatePolicy {policy:?}"), &line, 6));
        }
        if matches!(
            decision,
            PolicyDecision::Denied(_) | PolicyDecision::Unavailable(_)
        ) {
            denied += 1;
            outcome.fail(format!("{described} would be denied"));
        }
    }
    if denied > 0 {
        outcome.summary = format!("{denied} of {judged} Certificates would be denied");
    }
}
