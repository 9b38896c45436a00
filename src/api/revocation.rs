//! The `CertificateRevocation` kind: one revoked serial of one issuer, durable on its own.
//! Written by people (GitOps) for any serial, or by the Certificate controller when a
//! Certificate is annotated for revocation; never owned by a Certificate or an issuer, so
//! deleting and re-creating either loses no revocation.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::IssuerRef;

/// A serial number in hex, `:` between octets and a `0x` prefix allowed (as `openssl x509
/// -serial` and browsers print it); at most 20 octets.
pub(crate) const SERIAL_PATTERN: &str = r"^(0[xX])?[0-9a-fA-F:]+$";

/// A revoked certificate of an issuer, by serial. For an Issuer it lives in the issuer's
/// namespace, for a ClusterIssuer in the cluster-resource namespace.
// kube-derive takes one printcolumn(...) per column, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "certkeeper.io",
    version = "v1",
    kind = "CertificateRevocation",
    namespaced,
    status = "CertificateRevocationStatus",
    shortname = "revocation",
    shortname = "revocations",
    doc = "A revoked certificate of an Issuer or ClusterIssuer, by serial: listed in the issuer's CRL and answered `revoked` by its OCSP responder.",
    printcolumn(name = "Issuer", type_ = "string", json_path = ".spec.issuerRef.name"),
    printcolumn(name = "Serial", type_ = "string", json_path = ".spec.serialNumber"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".spec.reason"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRevocationSpec {
    /// The issuer that signed the revoked certificate. An Issuer must be in this object's
    /// namespace; a ClusterIssuer's revocations live in the cluster-resource namespace.
    pub issuer_ref: IssuerRef,
    /// Serial number of the revoked certificate in hex (`0a:1b:…`, `0A1B…` or `0x0a1b…`).
    #[schemars(length(min = 1, max = 64), regex(pattern = SERIAL_PATTERN))]
    pub serial_number: String,
    /// RFC 5280 reason. Default unspecified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<RevocationReasonName>,
    /// When the certificate was revoked. Default: when this object was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<Time>,
}

/// The RFC 5280 reason codes, by their RFC names.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum RevocationReasonName {
    #[default]
    #[serde(rename = "unspecified")]
    Unspecified,
    #[serde(rename = "keyCompromise")]
    KeyCompromise,
    #[serde(rename = "cACompromise")]
    CaCompromise,
    #[serde(rename = "affiliationChanged")]
    AffiliationChanged,
    #[serde(rename = "superseded")]
    Superseded,
    #[serde(rename = "cessationOfOperation")]
    CessationOfOperation,
    #[serde(rename = "certificateHold")]
    CertificateHold,
    #[serde(rename = "removeFromCRL")]
    RemoveFromCrl,
    #[serde(rename = "privilegeWithdrawn")]
    PrivilegeWithdrawn,
    #[serde(rename = "aACompromise")]
    AaCompromise,
}

/// What the controller observed about a revocation.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateRevocationStatus {
    /// `Ready`: True once the serial is in the issuer's published CRL.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The metadata.generation this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl From<RevocationReasonName> for crate::revocation::RevocationReason {
    fn from(name: RevocationReasonName) -> Self {
        use crate::revocation::RevocationReason as R;
        match name {
            RevocationReasonName::Unspecified => R::Unspecified,
            RevocationReasonName::KeyCompromise => R::KeyCompromise,
            RevocationReasonName::CaCompromise => R::CaCompromise,
            RevocationReasonName::AffiliationChanged => R::AffiliationChanged,
            RevocationReasonName::Superseded => R::Superseded,
            RevocationReasonName::CessationOfOperation => R::CessationOfOperation,
            RevocationReasonName::CertificateHold => R::CertificateHold,
            RevocationReasonName::RemoveFromCrl => R::RemoveFromCrl,
            RevocationReasonName::PrivilegeWithdrawn => R::PrivilegeWithdrawn,
            RevocationReasonName::AaCompromise => R::AaCompromise,
        }
    }
}

impl From<crate::revocation::RevocationReason> for RevocationReasonName {
    fn from(reason: crate::revocation::RevocationReason) -> Self {
        use crate::revocation::RevocationReason as R;
        match reason {
            R::Unspecified => RevocationReasonName::Unspecified,
            R::KeyCompromise => RevocationReasonName::KeyCompromise,
            R::CaCompromise => RevocationReasonName::CaCompromise,
            R::AffiliationChanged => RevocationReasonName::AffiliationChanged,
            R::Superseded => RevocationReasonName::Superseded,
            R::CessationOfOperation => RevocationReasonName::CessationOfOperation,
            R::CertificateHold => RevocationReasonName::CertificateHold,
            R::RemoveFromCrl => RevocationReasonName::RemoveFromCrl,
            R::PrivilegeWithdrawn => RevocationReasonName::PrivilegeWithdrawn,
            R::AaCompromise => RevocationReasonName::AaCompromise,
        }
    }
}
