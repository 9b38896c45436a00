//! The `Certificate` kind: what a user asks for, and what the controller reports.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use crate::pki::{KeyAlgorithm, KeyEncoding, Usage};

/// Go duration syntax (`24h`, `90m`, `1h30m`), as `time.ParseDuration` and kube's `Duration` read it.
pub(crate) const GO_DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// A certificate to keep issued and renewed in a `kubernetes.io/tls` Secret.
// kube-derive takes one printcolumn(...) per column, which clippy mistakes for duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "certkeeper.io",
    version = "v1",
    kind = "Certificate",
    namespaced,
    status = "CertificateStatus",
    shortname = "cert",
    shortname = "certs",
    doc = "A certificate that certkeeper issues into a kubernetes.io/tls Secret and renews before it expires.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(name = "Secret", type_ = "string", json_path = ".spec.secretName"),
    printcolumn(name = "Issuer", type_ = "string", json_path = ".spec.issuerRef.name"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.notAfter"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(
    validation = Rule::new("!has(self.renewBefore) || !has(self.renewBeforePercentage)").message("renewBefore and renewBeforePercentage are mutually exclusive"),
    validation = Rule::new("!has(self.nameConstraints) || (has(self.isCA) && self.isCA)").message("nameConstraints is only allowed with isCA: true"),
    validation = Rule::new("has(self.commonName) || (has(self.dnsNames) && size(self.dnsNames) > 0) || (has(self.ipAddresses) && size(self.ipAddresses) > 0) || (has(self.uris) && size(self.uris) > 0) || (has(self.emailAddresses) && size(self.emailAddresses) > 0)").message("at least one of commonName, dnsNames, ipAddresses, uris or emailAddresses must be set"),
)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSpec {
    /// Name of the Secret, in the Certificate's namespace, that receives the key pair.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,

    /// The Issuer or ClusterIssuer that signs this certificate.
    pub issuer_ref: IssuerRef,

    /// Common name of the subject; at most 64 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub common_name: Option<String>,

    /// DNS subject alternative names (ASCII; an internationalized name as its xn-- A-label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000), inner(length(min = 1, max = 253)))]
    pub dns_names: Option<Vec<String>>,

    /// IP address subject alternative names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000), inner(length(min = 1, max = 45)))]
    pub ip_addresses: Option<Vec<String>>,

    /// URI subject alternative names, such as SPIFFE IDs (`spiffe://trust-domain/path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000), inner(length(min = 1, max = 2048)))]
    pub uris: Option<Vec<String>>,

    /// Email subject alternative names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000), inner(length(min = 1, max = 254)))]
    pub email_addresses: Option<Vec<String>>,

    /// Subject distinguished name parts beyond the common name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Box<Subject>>,

    /// Requested lifetime in Go duration syntax. Default 2160h (90 days); minimum 1h.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = GO_DURATION_PATTERN))]
    pub duration: Option<String>,

    /// Renew this long before notAfter; must be shorter than the duration. Default: a third of
    /// the certificate's actual lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = GO_DURATION_PATTERN))]
    pub renew_before: Option<String>,

    /// Renew when this percentage of the lifetime remains (1-99); exclusive with renewBefore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 99))]
    pub renew_before_percentage: Option<i32>,

    /// Issue a CA certificate (basicConstraints CA:TRUE, cert sign, CRL sign).
    #[serde(default, rename = "isCA", skip_serializing_if = "Option::is_none")]
    pub is_ca: Option<bool>,

    /// X.509 name constraints written into the CA certificate (only with isCA): the names the
    /// certificates it signs may (permitted) and may not (excluded) carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_constraints: Option<NameConstraintsSpec>,

    /// Key usages and extended key usages. Default: digital signature, key encipherment (RSA
    /// only), server auth and client auth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usages: Option<Vec<Usage>>,

    /// Private key options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<PrivateKeySpec>,

    /// Labels and annotations copied onto the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_template: Option<Box<SecretTemplate>>,

    /// Extra keys written into the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_output_formats: Option<Vec<AdditionalOutputFormat>>,

    /// Keystores written into the Secret beside the PEM keys (cert-manager's field): PKCS#12
    /// (`keystore.p12`, `truststore.p12`) and JKS (`keystore.jks`, `truststore.jks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keystores: Option<Box<CertificateKeystores>>,

    /// What happens to the Secret when the Certificate is deleted. Default Orphan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_deletion_policy: Option<SecretDeletionPolicy>,
}

/// The issuer kind a reference without one means.
pub const DEFAULT_ISSUER_KIND: &str = "Issuer";

/// Reference to the issuer of a Certificate.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    /// Name of the Issuer (in the Certificate's namespace) or ClusterIssuer.
    #[schemars(length(min = 1))]
    pub name: String,
    /// `Issuer` (default) or `ClusterIssuer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["Issuer", "ClusterIssuer"]))]
    pub kind: Option<String>,
    /// API group of the issuer: certkeeper.io.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["certkeeper.io"]))]
    pub group: Option<String>,
}

impl IssuerRef {
    /// The kind, defaulted to `Issuer`.
    pub fn kind(&self) -> &str {
        self.kind.as_deref().unwrap_or(DEFAULT_ISSUER_KIND)
    }

    /// The group, defaulted to `certkeeper.io`.
    pub fn group(&self) -> &str {
        self.group.as_deref().unwrap_or(super::GROUP)
    }

    /// Whether this refers to a ClusterIssuer.
    pub fn is_cluster(&self) -> bool {
        self.kind() == "ClusterIssuer"
    }
}

impl Certificate {
    /// Whether the Certificate references the issuer of `kind` named `name`, which for an
    /// Issuer (`namespace` Some) must be in the Certificate's own namespace. The group is not
    /// looked at.
    pub fn references(&self, kind: &str, name: &str, namespace: Option<&str>) -> bool {
        let issuer_ref = &self.spec.issuer_ref;
        issuer_ref.kind() == kind
            && issuer_ref.name == name
            && (namespace.is_none() || self.metadata.namespace.as_deref() == namespace)
    }
}

/// Subject DN parts (cert-manager's `spec.subject`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organizations: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organizational_units: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub countries: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub localities: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provinces: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street_addresses: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_codes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
}

/// Name constraints of a CA certificate (cert-manager's `spec.nameConstraints`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NameConstraintsSpec {
    /// Mark the extension critical (RFC 5280 asks for it; some older clients refuse it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critical: Option<bool>,
    /// Names the certificates below this CA may carry: for each type listed, one of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permitted: Option<NameConstraintItem>,
    /// Names the certificates below this CA may not carry; checked before permitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded: Option<NameConstraintItem>,
}

/// One side of the name constraints, by name type.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NameConstraintItem {
    /// DNS domains: `team.svc` is the domain and its subdomains, `.team.svc` only subdomains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000), inner(length(min = 1, max = 253)))]
    pub dns_domains: Option<Vec<String>>,
    /// IP ranges in CIDR notation (`10.0.0.0/8`, `fd00::/8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000), inner(length(min = 1, max = 49)))]
    pub ip_ranges: Option<Vec<String>>,
    /// Email: a mailbox (`ops@team.svc`), a host (`team.svc`) or `.team.svc` (its subdomains).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000), inner(length(min = 1, max = 254)))]
    pub email_addresses: Option<Vec<String>>,
    /// URI hosts: `team.svc` that host, `.team.svc` its subdomains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1000), inner(length(min = 1, max = 253)))]
    pub uri_domains: Option<Vec<String>>,
}

/// Private key options (cert-manager's `spec.privateKey`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.size) || !has(self.algorithm) || (self.algorithm == 'RSA' && (self.size == 2048 || self.size == 3072 || self.size == 4096)) || (self.algorithm == 'ECDSA' && (self.size == 256 || self.size == 384)) || self.algorithm == 'Ed25519'").message("size must be 2048, 3072 or 4096 for RSA and 256 or 384 for ECDSA"))]
pub struct PrivateKeySpec {
    /// RSA, ECDSA (default) or Ed25519.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<KeyAlgorithm>,
    /// RSA: 2048 (default), 3072, 4096. ECDSA: 256 (default), 384. Ignored for Ed25519.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i32>,
    /// PKCS1 or PKCS8 (default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<KeyEncoding>,
    /// Always (default): a new key at every issuance. Never: re-use the Secret's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_policy: Option<PrivateKeyRotationPolicy>,
}

/// Whether a re-issuance generates a new private key.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum PrivateKeyRotationPolicy {
    #[default]
    Always,
    Never,
}

/// Labels and annotations copied onto the Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretTemplate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The keystores of a Certificate.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateKeystores {
    /// `keystore.p12` (the key, its chain and the CAs) and `truststore.p12` (the CAs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkcs12: Option<Pkcs12Keystore>,
    /// `keystore.jks` (the key with its chain under `alias`, the CAs) and `truststore.jks`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jks: Option<JksKeystore>,
}

/// A PKCS#12 keystore and truststore, encrypted with one password.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.password) != has(self.passwordSecretRef)").message("exactly one of password and passwordSecretRef must be set"))]
pub struct Pkcs12Keystore {
    /// Write the stores. False: they are not written (and removed if they were).
    pub create: bool,
    /// The key of a Secret in the Certificate's namespace that holds the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeySelector>,
    /// The password itself, in the Certificate (anyone who can read it can read the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub password: Option<String>,
    /// Encryption and MAC: `LegacyRC2` (default, as cert-manager), `LegacyDES` or
    /// `Modern2023` (AES-256-CBC, PBKDF2-HMAC-SHA-256, SHA-256 MAC; OpenSSL 3, Java 12+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Pkcs12Profile>,
}

/// A JKS keystore and truststore.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.password) != has(self.passwordSecretRef)").message("exactly one of password and passwordSecretRef must be set"))]
pub struct JksKeystore {
    /// Write the stores. False: they are not written (and removed if they were).
    pub create: bool,
    /// The key of a Secret in the Certificate's namespace that holds the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeySelector>,
    /// The password itself, in the Certificate (anyone who can read it can read the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub password: Option<String>,
    /// The alias of the key entry. Default `certificate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub alias: Option<String>,
}

/// A key of a Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeySelector {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key in the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// cert-manager's PKCS#12 profiles.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum Pkcs12Profile {
    #[default]
    #[serde(rename = "LegacyRC2")]
    LegacyRc2,
    #[serde(rename = "LegacyDES")]
    LegacyDes,
    Modern2023,
}

/// An extra output written into the Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdditionalOutputFormat {
    #[serde(rename = "type")]
    pub type_: OutputFormatType,
}

/// `CombinedPEM` writes `tls-combined.pem` (key then chain); `DER` writes `key.der`;
/// `IstioCACerts` (certkeeper's) writes the plug-in CA keys older istiod reads from `cacerts`:
/// `ca-cert.pem`, `ca-key.pem`, `cert-chain.pem`, `root-cert.pem`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum OutputFormatType {
    #[serde(rename = "CombinedPEM")]
    CombinedPem,
    #[serde(rename = "DER")]
    Der,
    #[serde(rename = "IstioCACerts")]
    IstioCaCerts,
}

/// Orphan (default) leaves the Secret behind when the Certificate is deleted; Delete gives the
/// Secret an owner reference so Kubernetes deletes it with the Certificate.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
pub enum SecretDeletionPolicy {
    #[default]
    Orphan,
    Delete,
}

/// What the controller observed and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    /// `Ready` and `Issuing` conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// notBefore of the certificate in the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Time>,
    /// notAfter of the certificate in the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Time>,
    /// When the controller will renew the certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_time: Option<Time>,
    /// 1 on first issuance, +1 for each re-issuance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// Serial number of the certificate in the Secret, lower-case hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<String>,
    /// When the last issuance attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_time: Option<Time>,
    /// Consecutive failed issuance attempts; reset by a success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_issuance_attempts: Option<i64>,
    /// The metadata.generation this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The last expiry warning sent about the current revision, so that a restarted controller
    /// does not repeat it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_expiry_warning: Option<ExpiryWarningStatus>,
    /// The value of `certkeeper.io/renew-requested-at` last answered (by a certificate issued
    /// at or after its time): another value is a new request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_renew_request: Option<String>,
    /// The value of `certkeeper.io/revoke-requested-at` last answered (the certificate then in
    /// the Secret revoked, or nothing there to revoke): another value is a new request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_revoke_request: Option<String>,
}

/// An expiry warning already published as an Event.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExpiryWarningStatus {
    /// The revision the warning was about.
    pub revision: i64,
    /// `ExpiringSoon` or `Expired`.
    pub reason: String,
    /// For ExpiringSoon, the remaining-validity threshold that was crossed (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<String>,
}
