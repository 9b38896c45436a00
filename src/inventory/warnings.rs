//! Expiry warnings for certificates certkeeper did not issue (SPEC "Certificate inventory"):
//! `ExpiringSoon` at each `--expiry-warning-thresholds` threshold shorter than the certificate's
//! lifetime, `Expired` once it passed, as Warning Events on the Secret or ConfigMap. Each has a
//! name derived from the object, the certificate and the warning, so that the one Event is
//! created once: a controller that restarts and tries again gets AlreadyExists, and knows it
//! was sent. Pure, but for `publish`.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

use super::store::{KeptCertificate, ObjectKey};
use crate::certificate::expiry::{EXPIRED, EXPIRING_SOON, Warning, go_duration};

/// The warning due for `cert` at `now`: Expired past notAfter, else the shortest threshold
/// crossed among those shorter than its lifetime.
pub fn due(cert: &KeptCertificate, thresholds: &[SignedDuration], now: Timestamp) -> Option<Warning> {
    if now >= cert.not_after {
        return Some(Warning::Expired);
    }
    let lifetime = cert.not_after.duration_since(cert.not_before);
    let left = cert.not_after.duration_since(now);
    thresholds
        .iter()
        .copied()
        .filter(|t| *t > SignedDuration::ZERO && *t < lifetime && left < *t)
        .min()
        .map(|threshold| Warning::ExpiringSoon { threshold })
}

/// A warning to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingWarning {
    pub object: ObjectKey,
    pub uid: String,
    /// The Event's name: the object's, then a hash of what the warning is about.
    pub event_name: String,
    pub hash: u64,
    /// The notAfter of the certificate warned about.
    pub not_after: Timestamp,
    pub reason: &'static str,
    pub note: String,
}

impl PendingWarning {
    pub fn new(object: &ObjectKey, uid: &str, key: &str, cert: &KeptCertificate, warning: Warning) -> Self {
        let (reason, threshold) = match warning {
            Warning::ExpiringSoon { threshold } => (EXPIRING_SOON, Some(threshold)),
            Warning::Expired => (EXPIRED, None),
        };
        // The certificate, not the key it is under: one found in `tls.crt` and `ca.crt` (a
        // self-signed one) is warned about once.
        let what = format!(
            "{uid}\0{}\0{reason}\0{}",
            cert.fingerprint,
            threshold.map(|t| t.as_secs()).unwrap_or_default()
        );
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, what.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest.as_ref()[..8]);
        let hash = u64::from_be_bytes(first);
        // A name is at most 253 characters; the object's is cut to leave room for the hash.
        let prefix: String = object.name.chars().take(200).collect();
        // A name cut after a `-` or `.` would not be a DNS subdomain once the hash follows.
        let prefix = prefix.trim_end_matches(['-', '.']);
        let subject = match cert.subject_cn.is_empty() {
            true => String::new(),
            false => format!(" (CN {})", cert.subject_cn),
        };
        let note = match threshold {
            Some(t) => format!(
                "The certificate in {key}{subject} expires at {}, less than {} from now; \
                 certkeeper does not manage it: renew it where it was made",
                cert.not_after,
                go_duration(t)
            ),
            None => format!(
                "The certificate in {key}{subject} expired at {}; certkeeper does not manage it: \
                 renew it where it was made",
                cert.not_after
            ),
        };
        Self {
            object: object.clone(),
            uid: uid.to_owned(),
            event_name: format!("{prefix}.{hash:016x}"),
            hash,
            not_after: cert.not_after,
            reason,
            note,
        }
    }

    /// The events.k8s.io/v1 Event that carries the warning.
    pub fn event(&self, now: Timestamp, instance: &str) -> Event {
        Event {
            metadata: ObjectMeta {
                name: Some(self.event_name.clone()),
                namespace: Some(self.object.namespace.clone()),
                ..ObjectMeta::default()
            },
            action: Some("CheckExpiry".into()),
            reason: Some(self.reason.into()),
            note: Some(self.note.clone()),
            type_: Some("Warning".into()),
            event_time: Some(MicroTime(now)),
            reporting_controller: Some("certkeeper".into()),
            reporting_instance: Some(instance.into()),
            regarding: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some(self.object.kind.label().into()),
                namespace: Some(self.object.namespace.clone()),
                name: Some(self.object.name.clone()),
                uid: Some(self.uid.clone()),
                ..ObjectReference::default()
            }),
            ..Event::default()
        }
    }
}

/// Creates the warning's Event. Ok(true): created now; Ok(false): it existed (sent before).
pub async fn publish(
    client: &kube::Client,
    warning: &PendingWarning,
    now: Timestamp,
) -> Result<bool, kube::Error> {
    let instance = std::env::var("POD_NAME").unwrap_or_else(|_| "certkeeper".into());
    let events: Api<Event> = Api::namespaced(client.clone(), &warning.object.namespace);
    match events
        .create(&PostParams::default(), &warning.event(now, &instance))
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}
