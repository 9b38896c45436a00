//! The `certkeeper.io/v1` API: Certificate, Issuer, ClusterIssuer, Bundle,
//! CertificateRevocation and CertificatePolicy, and the CRDs derived from them.

mod bundle;
mod certificate;
mod condition;
mod crd;
mod issuer;
mod policy;
mod revocation;

pub use bundle::{
    BUNDLE_LABEL, Bundle, BundleSource, BundleSpec, BundleStatus, BundleTarget, IssuerSource, KeySource,
    TargetKey,
};
pub use certificate::{
    AdditionalOutputFormat, Certificate, CertificateKeystores, CertificateSpec, CertificateStatus,
    DEFAULT_ISSUER_KIND, ExpiryWarningStatus, IssuerRef, JksKeystore, NameConstraintItem,
    NameConstraintsSpec, OutputFormatType, Pkcs12Keystore, Pkcs12Profile, PrivateKeyRotationPolicy,
    PrivateKeySpec, SecretDeletionPolicy, SecretKeySelector, SecretTemplate, Subject,
};
pub use condition::{ConditionStatus, condition, find_condition, ready_status, set_condition};
pub use crd::{all_crds, crds_yaml};
pub use issuer::{
    CaIssuer, CaPkcs11, ClusterIssuer, ClusterIssuerSpec, Issuer, IssuerSpec, IssuerStatus, Rotation,
    RotationPhase, SelfSignedIssuer, TrustAnchor, TrustAnchorRole,
};
pub use policy::{
    AllowedNameConstraints, AllowedRequest, AllowedSubject, AllowedSubtrees, AllowedValues,
    CertificatePolicy, CertificatePolicySpec, CertificatePolicyStatus, KeyConstraints, NamespaceSelector,
    PolicyConstraints, PolicyIssuerRef, PolicySelector, PolicyValidation,
};
pub use revocation::{
    CertificateRevocation, CertificateRevocationSpec, CertificateRevocationStatus, RevocationReasonName,
};

/// API group of every certkeeper kind.
pub const GROUP: &str = "certkeeper.io";
/// Prefix of certkeeper's labels and annotations.
pub const ANNOTATION_PREFIX: &str = "certkeeper.io/";
/// Annotation on a Certificate that requests a renewal (RFC 3339 time of the request).
pub const RENEW_REQUESTED_AT: &str = "certkeeper.io/renew-requested-at";
/// Annotation on an Issuer or ClusterIssuer that distrusts its previous root at once (RFC 3339
/// time of the request): an emergency rotation after a key compromise.
pub const DISTRUST_PREVIOUS_REQUESTED_AT: &str = "certkeeper.io/distrust-previous-requested-at";
