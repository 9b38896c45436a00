//! The `Bundle` kind (cluster-scoped): trust anchors gathered from issuers, Secrets, ConfigMaps
//! and inline PEM, distributed as a ConfigMap (and optionally a Secret) into namespaces.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Label on every target a Bundle writes: the Bundle's name.
pub const BUNDLE_LABEL: &str = "certkeeper.io/bundle";

/// A set of trusted certificates, kept in a ConfigMap (and optionally a Secret) of the Bundle's
/// name in every namespace its selector matches.
// kube-derive takes one printcolumn(...) per column, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "certkeeper.io",
    version = "v1",
    kind = "Bundle",
    status = "BundleStatus",
    shortname = "bundle",
    doc = "Trusted certificates distributed into namespaces as a ConfigMap (and optionally a Secret).",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(name = "Certificates", type_ = "integer", json_path = ".status.certificates"),
    printcolumn(name = "Targets", type_ = "integer", json_path = ".status.targets"),
    printcolumn(
        name = "Synced",
        type_ = "integer",
        json_path = ".status.syncedTargets",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    derive = "Default"
)]
#[serde(rename_all = "camelCase")]
pub struct BundleSpec {
    /// Where the certificates come from; the bundle holds the union of all sources.
    #[schemars(length(min = 1, max = 100))]
    pub sources: Vec<BundleSource>,
    /// Where the bundle is written.
    pub target: BundleTarget,
}

/// One source of certificates: exactly one of `issuer`, `secret`, `configMap` or `inLine` (a
/// structural `oneOf` added in `crd.rs`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleSource {
    /// The trust anchors of an Issuer or ClusterIssuer (`status.trustAnchors`, current and
    /// previous).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<IssuerSource>,
    /// A key of a Secret in the cluster-resource namespace, PEM with one or more certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<KeySource>,
    /// A key of a ConfigMap in the cluster-resource namespace, PEM with one or more
    /// certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<KeySource>,
    /// PEM with one or more certificates, written in the Bundle itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 262144))]
    pub in_line: Option<String>,
}

/// An issuer whose trust anchors a Bundle distributes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
// `namespace` is a CEL reserved word, escaped as `__namespace__`.
#[x_kube(validation = Rule::new("self.kind == 'ClusterIssuer' || has(self.__namespace__)").message("an Issuer source needs its namespace"))]
#[serde(rename_all = "camelCase")]
pub struct IssuerSource {
    /// `Issuer` or `ClusterIssuer`.
    #[schemars(extend("enum" = ["Issuer", "ClusterIssuer"]))]
    pub kind: String,
    /// Name of the issuer.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of an Issuer (required for `Issuer`, ignored for `ClusterIssuer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

/// A key of a Secret or ConfigMap in the cluster-resource namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
pub struct KeySource {
    /// Name of the object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key holding PEM certificates.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Where a Bundle's certificates are written.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
// A ConfigMap refuses one key in both data and binaryData; a Secret has one data map.
#[x_kube(
    validation = Rule::new("!has(self.pkcs12) || self.pkcs12.key != self.configMap.key").message("pkcs12.key must differ from configMap.key"),
    validation = Rule::new("!has(self.pkcs12) || !has(self.secret) || self.pkcs12.key != self.secret.key").message("pkcs12.key must differ from secret.key"),
)]
#[serde(rename_all = "camelCase")]
pub struct BundleTarget {
    /// The key of the target ConfigMap that holds the certificates as PEM.
    pub config_map: TargetKey,
    /// Also write a Secret (type Opaque) with the certificates as PEM under this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<TargetKey>,
    /// Also write a PKCS#12 truststore (no password; certificates only, each a Java
    /// `trustedCertEntry`) under this key: binaryData of the ConfigMap, data of the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkcs12: Option<TargetKey>,
    /// The namespaces that receive the bundle; all namespaces when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

/// A key in a target object.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
pub struct TargetKey {
    /// The data key, e.g. `ca.crt`.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// What the controller observed about a Bundle.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BundleStatus {
    /// The `Ready` condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// SHA-256 fingerprints of the certificates in the bundle, `AB:CD:…`, in bundle order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fingerprints: Vec<String>,
    /// How many certificates the bundle holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<i32>,
    /// How many namespaces the selector matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<i32>,
    /// How many of those hold the current bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_targets: Option<i32>,
    /// The metadata.generation this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
