//! The CRL a CA issuer publishes (SPEC "Revocation"): kept in the ConfigMap `<issuer>-crl`
//! (`ca.crl` DER in binaryData, `ca.crl.pem` in data) in the namespace its records live in.
//! Pure: which ConfigMap, what it holds, and what a stored one says. The issuer reconcile
//! reads it (once per process), decides with `revocation::crl_due` and writes.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;

use crate::api::{CertificateRevocationStatus, ConditionStatus, condition, set_condition};
use crate::issuer::status::READY;
use crate::pki::CertificateInfo;
use crate::revocation::{PublishedCrl, RevocationError, RevokedSerial, SignedCrl};

/// Keys of the CRL ConfigMap.
pub const CRL_DER_KEY: &str = "ca.crl";
pub const CRL_PEM_KEY: &str = "ca.crl.pem";
/// Annotations of the CRL ConfigMap: whose CRL it is, and the CA certificate that signed it
/// (a CRL signed by a replaced CA is signed again at once).
pub const ANNOTATION_ISSUER_NAME: &str = "certkeeper.io/issuer-name";
pub const ANNOTATION_ISSUER_KIND: &str = "certkeeper.io/issuer-kind";
pub const ANNOTATION_CA_FINGERPRINT: &str = "certkeeper.io/ca-fingerprint-sha256";
pub const ANNOTATION_CRL_NUMBER: &str = "certkeeper.io/crl-number";
/// The CA Secret (in the ConfigMap's namespace) whose key signed the CRL: where every replica
/// finds the key that signs OCSP answers.
pub const ANNOTATION_CA_SECRET: &str = "certkeeper.io/ca-secret";
/// Label of every CRL ConfigMap (the issuer's kind), which every replica's watch selects.
pub const LABEL_ISSUER_KIND: &str = "certkeeper.io/crl-issuer-kind";

/// The name of an issuer's CRL ConfigMap.
pub fn configmap_name(issuer: &str) -> String {
    format!("{issuer}-crl")
}

/// The CRL ConfigMap of the issuer `kind`/`issuer` in `namespace`, holding `crl` signed by
/// the CA with the SHA-256 fingerprint `ca_fingerprint`.
pub fn desired_configmap(
    namespace: &str,
    kind: &str,
    issuer: &str,
    ca_secret: &str,
    crl: &SignedCrl,
    ca_fingerprint: &str,
) -> ConfigMap {
    let annotations = BTreeMap::from([
        (ANNOTATION_CA_SECRET.to_owned(), ca_secret.to_owned()),
        (ANNOTATION_ISSUER_NAME.to_owned(), issuer.to_owned()),
        (ANNOTATION_ISSUER_KIND.to_owned(), kind.to_owned()),
        (ANNOTATION_CA_FINGERPRINT.to_owned(), ca_fingerprint.to_owned()),
        (ANNOTATION_CRL_NUMBER.to_owned(), crl.number.to_string()),
    ]);
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(configmap_name(issuer)),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([(LABEL_ISSUER_KIND.to_owned(), kind.to_owned())])),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        binary_data: Some(BTreeMap::from([(
            CRL_DER_KEY.to_owned(),
            ByteString(crl.der.clone()),
        )])),
        data: Some(BTreeMap::from([(CRL_PEM_KEY.to_owned(), crl.pem.clone())])),
        ..ConfigMap::default()
    }
}

/// The CRL a stored ConfigMap holds, when `ca` signed it (its signature is checked: whoever
/// may write the ConfigMap cannot un-revoke a serial) and it can be read: what it says (for
/// `crl_due` and `next_crl_number`) and the CRL itself (served as it is while it is current).
/// `None` otherwise: a new CRL is signed.
pub fn stored_crl(configmap: &ConfigMap, ca: &CertificateInfo) -> Option<(PublishedCrl, SignedCrl)> {
    let der = configmap.binary_data.as_ref()?.get(CRL_DER_KEY)?.0.clone();
    let published = PublishedCrl::signed_by(&der, ca)?;
    let pem = configmap
        .data
        .as_ref()
        .and_then(|d| d.get(CRL_PEM_KEY).cloned())
        .unwrap_or_else(|| crate::pki::encode_pem("X509 CRL", der.clone()));
    let signed = SignedCrl {
        der,
        pem,
        number: published.number,
        this_update: published.this_update,
        next_update: published.next_update,
    };
    Some((published, signed))
}

/// A CRL ConfigMap as every replica's PKI endpoint reads it, before its CRL is verified.
#[derive(Debug)]
pub struct CrlConfigMap {
    /// The endpoint's path segment: the namespace, `cluster` for a ClusterIssuer.
    pub scope: String,
    pub issuer: String,
    /// The ConfigMap's namespace, where the CA Secret is too.
    pub namespace: String,
    pub ca_secret: String,
    /// The CA that signed the CRL, as the ConfigMap claims; `verified` checks the signature.
    pub ca_fingerprint: String,
    /// The CRL number, as the ConfigMap claims.
    pub number: u64,
}

impl CrlConfigMap {
    /// What `configmap` claims, when it is a CRL ConfigMap as `desired_configmap` writes it. A
    /// ClusterIssuer's only counts in the cluster-resource namespace, so no one who may write
    /// ConfigMaps elsewhere can stand in for a ClusterIssuer's CRL.
    pub fn read(configmap: &ConfigMap, cluster_resource_namespace: &str) -> Option<Self> {
        let annotations = configmap.metadata.annotations.as_ref()?;
        let namespace = configmap.metadata.namespace.clone()?;
        let issuer = annotations.get(ANNOTATION_ISSUER_NAME)?.clone();
        let scope = match annotations.get(ANNOTATION_ISSUER_KIND)?.as_str() {
            "ClusterIssuer" if namespace == cluster_resource_namespace => {
                crate::revocation::CLUSTER_SCOPE.to_owned()
            }
            "Issuer" => namespace.clone(),
            _ => return None,
        };
        Some(Self {
            scope,
            issuer,
            namespace,
            ca_secret: annotations.get(ANNOTATION_CA_SECRET)?.clone(),
            ca_fingerprint: annotations.get(ANNOTATION_CA_FINGERPRINT)?.clone(),
            number: stored_number(configmap)?.number,
        })
    }

    /// The CRL's entries and the CRL itself, when `ca` signed it.
    pub fn verified(configmap: &ConfigMap, ca: &CertificateInfo) -> Option<(Vec<RevokedSerial>, SignedCrl)> {
        let (published, crl) = stored_crl(configmap, ca)?;
        Some((published.revoked, crl))
    }
}

/// Reasons of a CertificateRevocation's Ready condition.
pub const REASON_PUBLISHED: &str = "Published";
pub const REASON_INVALID_RECORD: &str = "InvalidRecord";

/// The status of a CertificateRevocation of the issuer `issuer` (`Kind name`) once its CRL is
/// published: Ready when its serial is listed, not Ready (and not listed) when it cannot be
/// read. The message names no CRL number, so re-signing the CRL rewrites no record.
pub fn record_status(
    previous: Option<&CertificateRevocationStatus>,
    parsed: Result<&RevokedSerial, &RevocationError>,
    issuer: &str,
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> CertificateRevocationStatus {
    let mut status = previous.cloned().unwrap_or_default();
    let (st, reason, message) = match parsed {
        Ok(serial) => (
            ConditionStatus::True,
            REASON_PUBLISHED,
            format!("serial {} is listed in the CRL of {issuer}", serial.serial_hex),
        ),
        Err(e) => (ConditionStatus::False, REASON_INVALID_RECORD, e.to_string()),
    };
    set_condition(
        &mut status.conditions,
        condition(READY, st, reason, message, generation, now),
    );
    status.observed_generation = generation;
    status
}

/// The number a stored CRL carries even when it cannot be used (signed by a replaced CA): the
/// next CRL's number must still be above it.
pub fn stored_number(configmap: &ConfigMap) -> Option<PublishedCrl> {
    let der = &configmap.binary_data.as_ref()?.get(CRL_DER_KEY)?.0;
    PublishedCrl::from_der(der)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::{RevocationReason, RevokedSerial, build_crl};
    use crate::testing::ts;

    fn ca() -> crate::pki::CaKeyPair {
        let secret = crate::testing::root_ca(ts("2026-11-23T10:00:00Z"));
        crate::issuer::ca::parse_ca(
            "apps",
            &crate::api::CaIssuer {
                secret_name: "root-ca".into(),
                ..Default::default()
            },
            Some(&secret),
        )
        .unwrap()
    }

    #[test]
    fn a_stored_crl_reads_back_only_under_the_ca_that_signed_it() {
        let ca = ca();
        let revoked = vec![RevokedSerial {
            serial_hex: "0aff".into(),
            revoked_at: ts("2026-11-23T09:00:00Z"),
            reason: RevocationReason::KeyCompromise,
        }];
        let crl = build_crl(&ca, &revoked, 7, ts("2026-11-23T10:00:00Z")).unwrap();
        let fingerprint = &ca.certificate().fingerprint_sha256;
        let cm = desired_configmap("apps", "Issuer", "root", "root-ca", &crl, fingerprint);
        assert_eq!(cm.metadata.name.as_deref(), Some("root-crl"));
        let json = serde_json::to_value(&cm).unwrap();
        assert!(json["binaryData"]["ca.crl"].is_string());
        assert!(
            json["data"]["ca.crl.pem"]
                .as_str()
                .unwrap()
                .starts_with("-----BEGIN X509 CRL-----")
        );
        let (published, signed) = stored_crl(&cm, ca.certificate()).unwrap();
        assert_eq!(signed, crl);
        assert_eq!(published.number, 7);
        assert_eq!(published.revoked, revoked);
        let other = self::ca();
        assert!(stored_crl(&cm, other.certificate()).is_none(), "another CA's CRL");
        assert_eq!(stored_number(&cm).map(|p| p.number), Some(7));
        let read = CrlConfigMap::read(&cm, "certkeeper-system").unwrap();
        assert_eq!((read.scope.as_str(), read.issuer.as_str()), ("apps", "root"));
        assert_eq!((read.ca_secret.as_str(), read.number), ("root-ca", 7));
        assert_eq!(CrlConfigMap::verified(&cm, ca.certificate()).unwrap().0, revoked);
        // A ClusterIssuer's CRL counts only in the cluster-resource namespace.
        let cluster = desired_configmap("apps", "ClusterIssuer", "root", "root-ca", &crl, fingerprint);
        assert!(CrlConfigMap::read(&cluster, "certkeeper-system").is_none());
        let cluster = desired_configmap(
            "certkeeper-system",
            "ClusterIssuer",
            "root",
            "root-ca",
            &crl,
            fingerprint,
        );
        assert_eq!(
            CrlConfigMap::read(&cluster, "certkeeper-system").unwrap().scope,
            "cluster"
        );
        assert_eq!(
            json["metadata"]["labels"]["certkeeper.io/crl-issuer-kind"],
            "Issuer"
        );
    }

    #[test]
    fn a_crl_altered_in_its_configmap_is_not_trusted() {
        let ca = ca();
        let revoked = vec![RevokedSerial {
            serial_hex: "0aff".into(),
            revoked_at: ts("2026-11-23T09:00:00Z"),
            reason: RevocationReason::KeyCompromise,
        }];
        let crl = build_crl(&ca, &revoked, 7, ts("2026-11-23T10:00:00Z")).unwrap();
        let fingerprint = &ca.certificate().fingerprint_sha256;
        // Someone who may write the ConfigMap drops the entry: with a CRL signed by a key of
        // their own, or with the real one's bytes changed.
        let forger = self::ca();
        let forged = build_crl(&forger, &[], 8, ts("2026-11-23T10:00:00Z")).unwrap();
        let cm = desired_configmap("apps", "Issuer", "root", "root-ca", &forged, fingerprint);
        assert!(stored_crl(&cm, ca.certificate()).is_none());
        let mut tampered = crl.clone();
        let last = tampered.der.len() - 1;
        tampered.der[last] ^= 1;
        let cm = desired_configmap("apps", "Issuer", "root", "root-ca", &tampered, fingerprint);
        assert!(stored_crl(&cm, ca.certificate()).is_none());
    }
}
