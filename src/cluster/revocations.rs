//! The revocation records of an issuer (`CertificateRevocation` objects), read from the watch's
//! cache: what the Certificate controller checks Secrets against, what the issuer controller
//! signs CRLs over and what the metrics count. No request; the one write (a record made for a
//! revoked Certificate) is built here and applied by the Certificate controller.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;

use crate::api::{CertificateRevocation, CertificateRevocationSpec, GROUP, IssuerRef};
use crate::pki::serial_hex;
use crate::revocation::{REVOKE_REQUESTED_AT, RevocationError, RevokeRequest, RevokedSerial, parse_serial};

/// The cache of every CertificateRevocation the controller watches.
pub type Revocations = Store<DeserializeGuard<CertificateRevocation>>;

/// On a record the Certificate controller made: the Certificate (`namespace/name`) whose
/// annotation asked for it. With the request's value (the Certificate's
/// `certkeeper.io/revoke-requested-at`, copied onto the record) it says the request was
/// answered, so a restart never revokes the re-issued certificate too, even when the status
/// write saying so was lost.
pub const REVOKED_CERTIFICATE: &str = "certkeeper.io/certificate";

/// An issuer whose records are looked up: its kind, name, and the namespace its records
/// live in (its own for an Issuer, the cluster-resource namespace for a ClusterIssuer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IssuerRecords<'a> {
    pub kind: &'a str,
    pub name: &'a str,
    pub namespace: &'a str,
}

impl IssuerRecords<'_> {
    /// Whether `record` is one of this issuer's.
    fn holds(&self, record: &CertificateRevocation) -> bool {
        let issuer = &record.spec.issuer_ref;
        record.metadata.namespace.as_deref() == Some(self.namespace)
            && issuer.group() == GROUP
            && issuer.kind() == self.kind
            && issuer.name == self.name
    }

    /// The issuer's revoked serials, one per serial (the earliest record of it), sorted by
    /// serial: the same list on every replica and after every restart. Records that cannot be
    /// read are left out (the CRD's schema refuses most of them); `invalid` gets their names.
    pub fn revoked(
        &self,
        store: &Revocations,
        invalid: &mut Vec<(String, RevocationError)>,
    ) -> Vec<RevokedSerial> {
        let mut by_serial: BTreeMap<(usize, String), RevokedSerial> = BTreeMap::new();
        for guard in store.state() {
            let Ok(record) = &guard.0 else { continue };
            if !self.holds(record) {
                continue;
            }
            match revoked_serial(record) {
                Ok(serial) => {
                    let key = (serial.serial_hex.len(), serial.serial_hex.clone());
                    match by_serial.get(&key) {
                        Some(known) if known.revoked_at <= serial.revoked_at => {}
                        _ => {
                            by_serial.insert(key, serial);
                        }
                    }
                }
                Err(e) => invalid.push((record.metadata.name.clone().unwrap_or_default(), e)),
            }
        }
        by_serial.into_values().collect()
    }

    /// The issuer's record objects, as cached.
    pub fn records(&self, store: &Revocations) -> Vec<CertificateRevocation> {
        store
            .state()
            .iter()
            .filter_map(|g| g.0.as_ref().ok())
            .filter(|r| self.holds(r))
            .cloned()
            .collect()
    }

    /// Whether a record made for the Certificate `certificate` (`namespace/name`) at `request`
    /// exists: that revoke request was answered. Records written before they carried the
    /// request's value are matched by their time (whole seconds, as their requests were).
    pub fn answered(&self, store: &Revocations, certificate: &str, request: &RevokeRequest) -> bool {
        store
            .state()
            .iter()
            .filter_map(|g| g.0.as_ref().ok())
            .any(|record| {
                let annotation = |key| record.metadata.annotations.as_ref().and_then(|a| a.get(key));
                let made_for = match annotation(REVOKE_REQUESTED_AT) {
                    Some(value) => *value == request.value,
                    None => record.spec.revoked_at.as_ref().map(|t| t.0) == Some(request.requested_at),
                };
                self.holds(record)
                    && annotation(REVOKED_CERTIFICATE).is_some_and(|c| c == certificate)
                    && made_for
            })
    }
}

/// What a record says: its serial (normalised as `CertificateInfo::serial_hex`), its time
/// (`revokedAt`, else when the object was created) and reason.
pub fn revoked_serial(record: &CertificateRevocation) -> Result<RevokedSerial, RevocationError> {
    let magnitude = parse_serial(&record.spec.serial_number)?;
    let revoked_at = record
        .spec
        .revoked_at
        .as_ref()
        .or(record.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
        .ok_or_else(|| RevocationError::InvalidRevocationTime(String::new()))?;
    Ok(RevokedSerial {
        serial_hex: serial_hex(&magnitude),
        revoked_at,
        reason: record.spec.reason.unwrap_or_default().into(),
    })
}

/// Number of distinct revoked serials per issuer, keyed by (records namespace, issuer kind,
/// issuer name): the `certkeeper_revoked_certificates` gauge.
pub fn counts(store: &Revocations) -> HashMap<(String, String, String), i64> {
    let mut serials: HashMap<(String, String, String), std::collections::HashSet<String>> = HashMap::new();
    for guard in store.state() {
        let Ok(record) = &guard.0 else { continue };
        let issuer = &record.spec.issuer_ref;
        let (Some(namespace), Ok(serial)) = (&record.metadata.namespace, revoked_serial(record)) else {
            continue;
        };
        if issuer.group() != GROUP {
            continue;
        }
        serials
            .entry((namespace.clone(), issuer.kind().to_owned(), issuer.name.clone()))
            .or_default()
            .insert(serial.serial_hex);
    }
    serials
        .into_iter()
        .map(|(issuer, serials)| (issuer, i64::try_from(serials.len()).unwrap_or(i64::MAX)))
        .collect()
}

/// Kubernetes object names are at most 253 characters.
const MAX_NAME: usize = 253;

/// The name of the record the controller writes for `serial_hex` of an issuer: `<issuer>-<serial>`
/// (`clusterissuer-<issuer>-<serial>` for a ClusterIssuer, whose records share the
/// cluster-resource namespace with that namespace's Issuers). Longer than 253 characters, it
/// is cut and ends in a hash of the whole, so it stays unique and deterministic.
pub fn record_name(kind: &str, issuer: &str, serial_hex: &str) -> String {
    let full = match kind {
        "ClusterIssuer" => format!("clusterissuer-{issuer}-{serial_hex}"),
        _ => format!("{issuer}-{serial_hex}"),
    };
    if full.len() <= MAX_NAME {
        return full;
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, full.as_bytes());
    let hash = crate::pki::lower_hex(&digest.as_ref()[..8]);
    let keep = MAX_NAME - hash.len() - 1;
    // Names are ASCII; cut, and never end the kept part on a separator.
    let head = full[..keep].trim_end_matches(['-', '.']);
    format!("{head}-{hash}")
}

/// The record revoking `revoked` of the issuer `issuer_ref`, made for the Certificate
/// `certificate` (`namespace/name`) at its request `request` (the value of its
/// `certkeeper.io/revoke-requested-at`), in `namespace` (where the issuer's records live).
pub fn desired_record(
    issuer_ref: &IssuerRef,
    namespace: &str,
    revoked: &RevokedSerial,
    certificate: &str,
    request: &str,
) -> CertificateRevocation {
    let kind = issuer_ref.kind().to_owned();
    let mut record = CertificateRevocation::new(
        &record_name(&kind, &issuer_ref.name, &revoked.serial_hex),
        CertificateRevocationSpec {
            issuer_ref: IssuerRef {
                name: issuer_ref.name.clone(),
                kind: Some(kind),
                group: Some(GROUP.to_owned()),
            },
            serial_number: revoked.serial_hex.clone(),
            reason: Some(revoked.reason.into()),
            revoked_at: Some(Time(revoked.revoked_at)),
        },
    );
    record.metadata.namespace = Some(namespace.to_owned());
    record.metadata.annotations = Some(
        [
            (REVOKED_CERTIFICATE.to_owned(), certificate.to_owned()),
            (REVOKE_REQUESTED_AT.to_owned(), request.to_owned()),
        ]
        .into(),
    );
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::RevocationReason;
    use crate::testing::{store, ts};

    fn record(
        name: &str,
        namespace: &str,
        kind: &str,
        serial: &str,
        at: Option<&str>,
    ) -> CertificateRevocation {
        let mut r = CertificateRevocation::new(
            name,
            CertificateRevocationSpec {
                issuer_ref: IssuerRef {
                    name: "ca".into(),
                    kind: Some(kind.into()),
                    group: None,
                },
                serial_number: serial.into(),
                reason: None,
                revoked_at: at.map(|t| Time(ts(t))),
            },
        );
        r.metadata.namespace = Some(namespace.into());
        r.metadata.creation_timestamp = Some(Time(ts("2026-11-20T00:00:00Z")));
        r
    }

    #[test]
    fn an_issuers_records_are_its_own_deduplicated_and_sorted() {
        let records = store(vec![
            record("b", "apps", "Issuer", "0A:FF", Some("2026-11-23T10:00:00Z")),
            record("a", "apps", "Issuer", "0x0aff", Some("2026-11-22T10:00:00Z")),
            record("c", "apps", "Issuer", "09", None),
            record("other-ns", "elsewhere", "Issuer", "01", None),
            record("cluster", "apps", "ClusterIssuer", "02", None),
        ]);
        let issuer = IssuerRecords {
            kind: "Issuer",
            name: "ca",
            namespace: "apps",
        };
        let revoked = issuer.revoked(&records, &mut Vec::new());
        let serials: Vec<(&str, jiff::Timestamp)> = revoked
            .iter()
            .map(|r| (r.serial_hex.as_str(), r.revoked_at))
            .collect();
        assert_eq!(
            serials,
            [
                ("09", ts("2026-11-20T00:00:00Z")),
                ("0aff", ts("2026-11-22T10:00:00Z")),
            ]
        );
        assert!(revoked.iter().all(|r| r.reason == RevocationReason::Unspecified));
        let counted = counts(&records);
        assert_eq!(counted[&("apps".into(), "Issuer".into(), "ca".into())], 2);
        assert_eq!(counted[&("apps".into(), "ClusterIssuer".into(), "ca".into())], 1);
    }

    #[test]
    fn an_unreadable_record_is_reported_not_used() {
        let records = store(vec![record("bad", "apps", "Issuer", "zz", None)]);
        let issuer = IssuerRecords {
            kind: "Issuer",
            name: "ca",
            namespace: "apps",
        };
        let mut invalid = Vec::new();
        assert!(issuer.revoked(&records, &mut invalid).is_empty());
        assert_eq!(invalid.len(), 1);
        assert_eq!(invalid[0].0, "bad");
    }

    #[test]
    fn record_names_are_deterministic_valid_and_short_enough() {
        assert_eq!(record_name("Issuer", "ca", "0aff"), "ca-0aff");
        assert_eq!(
            record_name("ClusterIssuer", "ca", "0aff"),
            "clusterissuer-ca-0aff"
        );
        let long = "a".repeat(250);
        let name = record_name("Issuer", &long, "0aff");
        assert_eq!(name.len(), 253);
        assert_eq!(name, record_name("Issuer", &long, "0aff"));
        assert_ne!(name, record_name("Issuer", &long, "0afe"));
    }

    #[test]
    fn a_written_record_answers_its_request() {
        let issuer_ref = IssuerRef {
            name: "ca".into(),
            kind: None,
            group: None,
        };
        let revoked = RevokedSerial {
            serial_hex: "0aff".into(),
            revoked_at: ts("2026-11-23T10:00:00Z"),
            reason: RevocationReason::KeyCompromise,
        };
        let written = desired_record(
            &issuer_ref,
            "apps",
            &revoked,
            "apps/web",
            "2026-11-23T10:00:00.250Z",
        );
        assert_eq!(written.metadata.name.as_deref(), Some("ca-0aff"));
        let json = serde_json::to_value(&written).unwrap();
        assert_eq!(json["apiVersion"], "certkeeper.io/v1");
        assert_eq!(json["kind"], "CertificateRevocation");
        assert_eq!(json["spec"]["reason"], "keyCompromise");
        assert_eq!(json["spec"]["issuerRef"]["kind"], "Issuer");
        assert_eq!(json["spec"]["revokedAt"], "2026-11-23T10:00:00Z");
        let records = store(vec![written]);
        let issuer = IssuerRecords {
            kind: "Issuer",
            name: "ca",
            namespace: "apps",
        };
        let request = |value: &str| RevokeRequest {
            value: value.into(),
            requested_at: value.parse().unwrap(),
            reason: RevocationReason::KeyCompromise,
        };
        assert!(issuer.answered(&records, "apps/web", &request("2026-11-23T10:00:00.250Z")));
        // Another request in the same second is another request.
        assert!(!issuer.answered(&records, "apps/web", &request("2026-11-23T10:00:00.750Z")));
        assert!(!issuer.answered(&records, "apps/web", &request("2026-11-23T11:00:00Z")));
        assert!(!issuer.answered(&records, "apps/api", &request("2026-11-23T10:00:00.250Z")));
        assert_eq!(
            issuer.revoked(&records, &mut Vec::new()),
            std::slice::from_ref(&revoked)
        );

        // A record written before records carried the request's value: matched by its time.
        let mut legacy = desired_record(&issuer_ref, "apps", &revoked, "apps/web", "");
        if let Some(a) = legacy.metadata.annotations.as_mut() {
            a.remove(REVOKE_REQUESTED_AT);
        }
        let records = store(vec![legacy]);
        assert!(issuer.answered(&records, "apps/web", &request("2026-11-23T10:00:00Z")));
        assert!(!issuer.answered(&records, "apps/web", &request("2026-11-23T11:00:00Z")));
    }
}
