//! The `CertificatePolicy` kind: which identities a namespace may have signed by which issuer.
//! A platform team writes these; `issuance_policy/` judges each Certificate against them.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::certificate::GO_DURATION_PATTERN;
use crate::pki::{KeyAlgorithm, Usage};

/// What Certificates of the selected namespaces may ask the selected issuers for. An issuer
/// some policy selects signs only what at least one policy that applies allows in full.
// kube-derive takes one printcolumn(...) per column, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "certkeeper.io",
    version = "v1",
    kind = "CertificatePolicy",
    status = "CertificatePolicyStatus",
    shortname = "certpolicy",
    shortname = "certpolicies",
    doc = "Which names, keys and lifetimes Certificates of the selected namespaces may have signed by the selected issuers.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Issuer",
        type_ = "string",
        json_path = ".spec.selector.issuerRef.name"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct CertificatePolicySpec {
    /// Which Certificates the policy applies to: every selector it sets must match. No
    /// selector: every Certificate of every issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<PolicySelector>,
    /// What a Certificate may ask for. A field not listed must be absent from the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<AllowedRequest>,
    /// Bounds on the lifetime and the private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<PolicyConstraints>,
    /// CEL rules over the request (`self`, the Certificate's spec after defaulting) with
    /// `cr.namespace` and `cr.name`, for what the patterns cannot say. Each must be true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub validations: Option<Vec<PolicyValidation>>,
}

/// Which Certificates a policy applies to.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicySelector {
    /// The issuers the policy guards. Absent: every issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<PolicyIssuerRef>,
    /// The namespaces whose Certificates the policy applies to. Absent: every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<NamespaceSelector>,
}

/// Issuers by kind and name.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyIssuerRef {
    /// `Issuer` or `ClusterIssuer`. Absent: both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Issuer", "ClusterIssuer"]))]
    pub kind: Option<String>,
    /// The issuer's name; `*` matches any run of characters. Absent: any name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub name: Option<String>,
}

/// Namespaces by name and by label; both must match when both are set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceSelector {
    /// Namespace names; `*` matches any run of characters. One must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000), inner(length(min = 1, max = 63)))]
    pub match_names: Option<Vec<String>>,
    /// Labels the namespace must carry, each with this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
}

/// What a Certificate may ask for. Every name field lists patterns: `*` matches inside one DNS
/// label or one URI path segment, never across `.` or `/`; `{namespace}` and `{name}` stand for
/// the Certificate's own and fill a whole label or segment.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllowedRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<AllowedValues>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_names: Option<AllowedValues>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uris: Option<AllowedValues>,
    /// CIDRs (`10.0.0.0/8`, `fd00::/8`) or single addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_addresses: Option<AllowedValues>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_addresses: Option<AllowedValues>,
    /// Whether a CA certificate (`isCA: true`) may be asked for. Default false.
    #[serde(default, rename = "isCA", skip_serializing_if = "Option::is_none")]
    pub is_ca: Option<bool>,
    /// The usages a Certificate may carry. Absent: only the default usages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usages: Option<Vec<Usage>>,
    /// Subject DN parts; free text, `*` matches any run of characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Box<AllowedSubject>>,
    /// For CA requests: the domains and ranges the CA's own `spec.nameConstraints` must stay
    /// within. Absent: a request may carry no name constraints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_constraints: Option<AllowedNameConstraints>,
}

/// What a CA asked for may sign, as its X.509 name constraints say.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllowedNameConstraints {
    /// Per name type, where the CA's permitted subtrees may lie. A type listed here must be
    /// constrained by the request (at least one permitted entry, each within one of these); a
    /// type not listed may not be permitted. Excluded entries only narrow and are always allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permitted: Option<AllowedSubtrees>,
}

/// Bounds for a CA's permitted subtrees. Domains may hold `{namespace}` and `{name}` as whole
/// labels; a requested entry is within `team.svc` when it is `team.svc`, `.team.svc` or a
/// subdomain of it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllowedSubtrees {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 253)))]
    pub dns_domains: Option<Vec<String>>,
    /// CIDRs; a requested range must lie inside one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 64)))]
    pub ip_ranges: Option<Vec<String>>,
    /// Mailboxes, hosts or `.domains`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 320)))]
    pub email_addresses: Option<Vec<String>>,
    /// URI hosts or `.domains`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 253)))]
    pub uri_domains: Option<Vec<String>>,
}

/// The patterns a field's values must each match, and whether the field must be set.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllowedValues {
    /// Patterns; each requested value must match one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000), inner(length(min = 1, max = 2048)))]
    pub values: Option<Vec<String>>,
    /// The request must set the field (at least one value). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
}

/// Subject DN parts a Certificate may ask for.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllowedSubject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organizations: Option<AllowedValues>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organizational_units: Option<AllowedValues>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub countries: Option<AllowedValues>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub localities: Option<AllowedValues>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provinces: Option<AllowedValues>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street_addresses: Option<AllowedValues>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_codes: Option<AllowedValues>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<AllowedValues>,
}

/// Bounds on what is signed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyConstraints {
    /// Shortest lifetime (Go duration) a Certificate may ask for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = GO_DURATION_PATTERN))]
    pub min_duration: Option<String>,
    /// Longest lifetime (Go duration); the default 2160h counts when a Certificate sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = GO_DURATION_PATTERN))]
    pub max_duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<KeyConstraints>,
}

/// Bounds on the private key.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyConstraints {
    /// The only algorithm allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<KeyAlgorithm>,
    /// Smallest key size in bits (RSA modulus, ECDSA curve; Ed25519 counts as 256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 16384))]
    pub min_size: Option<i32>,
    /// Largest key size in bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 16384))]
    pub max_size: Option<i32>,
}

/// One CEL rule and the message a denial shows.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyValidation {
    /// A CEL expression over `self` (the request) and `cr` (`cr.namespace`, `cr.name`).
    #[schemars(length(min = 1, max = 2048))]
    pub rule: String,
    /// Shown when the rule is false. Default: the rule itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub message: Option<String>,
}

/// Whether the policy could be read.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificatePolicyStatus {
    /// `Ready`: True when every pattern and rule parses; False (allowing nothing) otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}
