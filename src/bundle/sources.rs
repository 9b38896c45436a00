//! What a Bundle's sources hold: which object each names, and the certificates found there.
//! The reads themselves are `reconcile`'s; everything here is pure.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};

use super::status::reason;
use crate::api::{Bundle, BundleSource, IssuerSource, IssuerStatus, KeySource};
use crate::pki::{CertificateInfo, PkiError, parse_certificate_chain};

/// One source, as exactly one of its four kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    Issuer(&'a IssuerSource),
    Secret(&'a KeySource),
    ConfigMap(&'a KeySource),
    InLine(&'a str),
}

/// Why a source gives no certificates; `reason` is the Bundle's Ready reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceProblem {
    pub reason: &'static str,
    pub message: String,
}

impl SourceProblem {
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            reason: reason::SOURCE_NOT_FOUND,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            reason: reason::INVALID_SOURCE,
            message: message.into(),
        }
    }
}

/// Which kind `source` is. The CRD's `oneOf` refuses anything else; a Bundle written past it
/// (or an Issuer source without a namespace) is refused here.
pub fn source_kind(source: &BundleSource) -> Result<Source<'_>, SourceProblem> {
    let kinds = [
        source.issuer.as_ref().map(Source::Issuer),
        source.secret.as_ref().map(Source::Secret),
        source.config_map.as_ref().map(Source::ConfigMap),
        source.in_line.as_deref().map(Source::InLine),
    ];
    let mut set = kinds.into_iter().flatten();
    match (set.next(), set.next()) {
        (Some(Source::Issuer(issuer)), None)
            if issuer.kind == "Issuer" && issuer.namespace.as_deref().is_none_or(str::is_empty) =>
        {
            Err(SourceProblem::invalid(format!(
                "the source Issuer {} needs a namespace",
                issuer.name
            )))
        }
        (Some(Source::Issuer(issuer)), None)
            if !matches!(issuer.kind.as_str(), "Issuer" | "ClusterIssuer") =>
        {
            Err(SourceProblem::invalid(format!(
                "unknown issuer kind {:?}",
                issuer.kind
            )))
        }
        (Some(kind), None) => Ok(kind),
        _ => Err(SourceProblem::invalid(
            "each source must set exactly one of issuer, secret, configMap or inLine",
        )),
    }
}

/// How a source is named in messages.
pub fn describe(source: Source<'_>, cluster_resource_namespace: &str) -> String {
    match source {
        Source::Issuer(issuer) if issuer.kind == "Issuer" => format!(
            "Issuer {}/{}",
            issuer.namespace.as_deref().unwrap_or_default(),
            issuer.name
        ),
        Source::Issuer(issuer) => format!("{} {}", issuer.kind, issuer.name),
        Source::Secret(s) => format!("Secret {cluster_resource_namespace}/{} key {}", s.name, s.key),
        Source::ConfigMap(c) => format!("ConfigMap {cluster_resource_namespace}/{} key {}", c.name, c.key),
        Source::InLine(_) => "inLine".to_owned(),
    }
}

/// The PEM of an issuer's trust anchors (current and previous), from its status.
pub fn issuer_anchors(described: &str, status: Option<&IssuerStatus>) -> Result<Vec<String>, SourceProblem> {
    let anchors: Vec<String> = status
        .iter()
        .flat_map(|s| &s.trust_anchors)
        .map(|a| a.certificate.clone())
        .collect();
    if anchors.is_empty() {
        return Err(SourceProblem::not_found(format!(
            "{described} lists no trust anchors in status.trustAnchors (not a ready CA issuer)"
        )));
    }
    Ok(anchors)
}

/// The text under `key` of a Secret's data.
pub fn secret_value(described: &str, secret: Option<&Secret>, key: &str) -> Result<String, SourceProblem> {
    let secret = secret.ok_or_else(|| SourceProblem::not_found(format!("{described}: Secret not found")))?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or_else(|| SourceProblem::not_found(format!("{described}: no such key")))?;
    String::from_utf8(bytes.0.clone())
        .map_err(|_| SourceProblem::invalid(format!("{described}: not PEM text")))
}

/// The text under `key` of a ConfigMap's data (or binaryData).
pub fn config_map_value(
    described: &str,
    config_map: Option<&ConfigMap>,
    key: &str,
) -> Result<String, SourceProblem> {
    let config_map =
        config_map.ok_or_else(|| SourceProblem::not_found(format!("{described}: ConfigMap not found")))?;
    if let Some(text) = config_map.data.as_ref().and_then(|d| d.get(key)) {
        return Ok(text.clone());
    }
    let bytes = config_map
        .binary_data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or_else(|| SourceProblem::not_found(format!("{described}: no such key")))?;
    String::from_utf8(bytes.0.clone())
        .map_err(|_| SourceProblem::invalid(format!("{described}: not PEM text")))
}

/// The certificates in one source's PEM texts. Text with no certificate, or a certificate
/// that does not parse, makes the source invalid: a half-read source is never distributed.
pub fn certificates(described: &str, pems: &[String]) -> Result<Vec<CertificateInfo>, SourceProblem> {
    let mut all = Vec::new();
    for pem in pems {
        let parsed = parse_certificate_chain(pem.as_bytes()).map_err(|e| match e {
            PkiError::NoCertificate => SourceProblem::invalid(format!("{described}: no PEM certificate")),
            e => SourceProblem::invalid(format!("{described}: {e}")),
        })?;
        all.extend(parsed);
    }
    Ok(all)
}

/// Whether `bundle` sources the issuer of `kind` named `name` (in `namespace` for an Issuer).
pub fn uses_issuer(bundle: &Bundle, kind: &str, name: &str, namespace: Option<&str>) -> bool {
    bundle
        .spec
        .sources
        .iter()
        .filter_map(|s| s.issuer.as_ref())
        .any(|i| {
            i.kind == kind
                && i.name == name
                && (kind == "ClusterIssuer" || i.namespace.as_deref() == namespace)
        })
}

/// Whether `bundle` sources the Secret `name` of the cluster-resource namespace.
pub fn uses_secret(bundle: &Bundle, name: &str) -> bool {
    bundle
        .spec
        .sources
        .iter()
        .filter_map(|s| s.secret.as_ref())
        .any(|k| k.name == name)
}

/// Whether `bundle` sources the ConfigMap `name` of the cluster-resource namespace.
pub fn uses_config_map(bundle: &Bundle, name: &str) -> bool {
    bundle
        .spec
        .sources
        .iter()
        .filter_map(|s| s.config_map.as_ref())
        .any(|k| k.name == name)
}
