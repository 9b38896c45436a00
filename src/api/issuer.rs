//! The `Issuer` (namespaced) and `ClusterIssuer` (cluster-scoped) kinds. Both share one spec.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// How an issuer signs: exactly one of `selfSigned` or `ca`.
// kube-derive takes one printcolumn(...) per column, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "certkeeper.io",
    version = "v1",
    kind = "Issuer",
    namespaced,
    status = "IssuerStatus",
    shortname = "iss",
    doc = "An issuer of certificates for the Certificates in its own namespace.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(name = "CA Expires", type_ = "string", json_path = ".status.caNotAfter"),
    printcolumn(name = "Rotation", type_ = "string", json_path = ".status.rotation.phase"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    derive = "Default"
)]
// Exactly one of selfSigned or ca: a structural `oneOf` added in `crd.rs`, not a CEL rule,
// which API servers before 1.29 cannot evaluate over the property-less `selfSigned: {}`.
#[serde(rename_all = "camelCase")]
pub struct IssuerSpec {
    /// Each certificate signs itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_signed: Option<SelfSignedIssuer>,
    /// Certificates are signed by the key pair in a kubernetes.io/tls Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<CaIssuer>,
    /// Sign only what a CertificatePolicy allows, even when no policy selects this issuer (so
    /// that deleting the last policy denies instead of opening). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_policy: Option<bool>,
}

/// A cluster-wide issuer: the same spec as `Issuer`, usable from every namespace. A CA
/// ClusterIssuer reads its Secret from the cluster-resource namespace only.
// kube-derive takes one printcolumn(...) per column, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "certkeeper.io",
    version = "v1",
    kind = "ClusterIssuer",
    status = "IssuerStatus",
    shortname = "ciss",
    doc = "An issuer of certificates for Certificates in every namespace.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(name = "CA Expires", type_ = "string", json_path = ".status.caNotAfter"),
    printcolumn(name = "Rotation", type_ = "string", json_path = ".status.rotation.phase"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    derive = "Default"
)]
pub struct ClusterIssuerSpec {
    #[serde(flatten)]
    pub issuer: IssuerSpec,
}

/// The selfSigned issuer has no options.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
pub struct SelfSignedIssuer {}

/// A CA issuer: the CA's key pair lives in a kubernetes.io/tls Secret (`tls.crt` = the CA
/// certificate, optionally followed by its chain; `tls.key`). An Issuer reads it from its own
/// namespace, a ClusterIssuer from the cluster-resource namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaIssuer {
    /// Name of the Secret holding the CA key pair.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// CRL distribution point URLs written into issued certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crl_distribution_points: Option<Vec<String>>,
    /// OCSP server URLs written into issued certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocsp_servers: Option<Vec<String>>,
    /// URLs where the issuing CA certificate can be fetched, written into issued certificates.
    #[serde(
        default,
        rename = "issuingCertificateURLs",
        skip_serializing_if = "Option::is_none"
    )]
    pub issuing_certificate_urls: Option<Vec<String>>,
    /// The CA key stays in a hardware security module: the Secret holds only the CA
    /// certificate (`tls.crt`, optional `ca.crt`) and the key is used through PKCS#11.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkcs11: Option<CaPkcs11>,
}

/// A CA key on a PKCS#11 token.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaPkcs11 {
    /// RFC 7512 URI naming the token and the key, e.g. `pkcs11:token=ca;object=root-2026`
    /// (`module-name=` picks one of the controller's modules when it has several).
    #[schemars(length(min = 8, max = 1024))]
    pub uri: String,
    /// The token's user PIN: a key of a Secret in the CA Secret's namespace.
    pub pin_secret_ref: super::SecretKeySelector,
}

/// What the controller observed about an issuer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerStatus {
    /// The `Ready` condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// notAfter of the CA certificate (CA issuers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_not_after: Option<Time>,
    /// SHA-256 fingerprint of the CA certificate (CA issuers), `AB:CD:…`.
    #[serde(
        default,
        rename = "caFingerprintSHA256",
        skip_serializing_if = "Option::is_none"
    )]
    pub ca_fingerprint_sha256: Option<String>,
    /// The roots this issuer's certificates chain to (CA issuers): the current one and, during a
    /// rotation, the previous one. Bundles that source the issuer and the `ca.crt` of every
    /// Secret it signs hold exactly these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_anchors: Vec<TrustAnchor>,
    /// The rotation in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Rotation>,
    /// The `certkeeper.io/distrust-previous-requested-at` request last acted on, so an
    /// annotation left in place does not cut short a later routine rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distrusted_at: Option<Time>,
    /// The metadata.generation this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A root certificate an issuer's certificates chain to.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrustAnchor {
    /// SHA-256 fingerprint of the root certificate, `AB:CD:…`.
    #[serde(rename = "fingerprintSHA256")]
    pub fingerprint_sha256: String,
    /// notAfter of the root certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Time>,
    /// `Current` (the CA Secret's root) or `Previous` (kept trusted until the rotation retires it).
    pub role: TrustAnchorRole,
    /// When the anchor took this role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
    /// The root certificate, PEM. Kept here because a previous root is in no Secret any more
    /// once its CA was replaced, and a restarted controller must still distribute it.
    pub certificate: String,
}

/// The role of a trust anchor.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum TrustAnchorRole {
    /// The root of the issuer's CA Secret.
    #[default]
    Current,
    /// The root before a rotation; trusted until the rotation retires it.
    Previous,
}

/// A CA rotation in progress.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    /// The phase the rotation is in.
    pub phase: RotationPhase,
    /// When the rotation started (the CA change was first seen).
    pub started_at: Time,
    /// When the current phase began; the phase's waits count from here.
    pub phase_started_at: Time,
    /// When every Secret the issuer signs and every Bundle that sources it was seen holding
    /// both roots (Distributing); the propagation delay counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_distributed_at: Option<Time>,
    /// SHA-256 fingerprint of the root being retired; absent when the CA changed under the same
    /// root (an intermediate renewed), which needs no trust phases.
    #[serde(
        default,
        rename = "previousFingerprintSHA256",
        skip_serializing_if = "Option::is_none"
    )]
    pub previous_fingerprint_sha256: Option<String>,
    /// SHA-256 fingerprint of the CA certificate the rotation moves certificates to.
    #[serde(rename = "caFingerprintSHA256")]
    pub ca_fingerprint_sha256: String,
    /// Certificates (`namespace/name`) that could not be re-issued within the re-issue window
    /// (denied by a policy, failing) and were left under the previous CA.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
}

/// The phases of a CA rotation.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum RotationPhase {
    /// Old and new roots are being distributed; nothing is re-issued yet.
    #[default]
    Distributing,
    /// Certificates under the previous CA are re-issued, spread over the reissue window.
    Reissuing,
    /// Nothing is left under the previous root; it is dropped after the propagation delay.
    Retiring,
}
