//! The CertificateRevocation records: one cached watch, shared by the certificate controller
//! (a record re-issues the Certificate whose certificate it revokes) and the issuer controllers
//! (a record changes its issuer's CRL). Each record's event wakes them after the cache holds it.

use futures::StreamExt;
use futures::channel::mpsc::{UnboundedReceiver, unbounded};
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use super::certificates::certificates_for_issuer;
use super::on_shutdown;
use super::reconciles::trim_for_cache;
use super::watches::Watches;
use crate::api::{CertificateRevocation, ClusterIssuer, GROUP, Issuer};
use crate::certificate::cached::CachedCertificate;
use crate::cluster::revocations::Revocations;
use crate::pki::serial_hex;
use crate::revocation::parse_serial;
use crate::telemetry::server::SyncFlag;

/// What the records wake, each a controller's extra trigger.
pub(super) struct RecordWakes {
    pub(super) certificates: UnboundedReceiver<ObjectRef<CachedCertificate>>,
    pub(super) issuers: UnboundedReceiver<ObjectRef<DeserializeGuard<Issuer>>>,
    pub(super) cluster_issuers: UnboundedReceiver<ObjectRef<DeserializeGuard<ClusterIssuer>>>,
}

/// The records' cache, its sync flag, what they wake, and the task that keeps them current
/// until shutdown.
pub(super) fn follow(
    watches: &Watches,
    certificates: Store<CachedCertificate>,
    cluster_resource_namespace: String,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> (
    Revocations,
    SyncFlag,
    RecordWakes,
    impl std::future::Future<Output = ()> + Send + 'static,
) {
    let (cache, records) = watches.cached(
        "certificaterevocations",
        Api::<DeserializeGuard<CertificateRevocation>>::all(watches.client.clone()),
        watcher::Config::default().any_semantic(),
        trim_for_cache,
    );
    let synced = records.synced();
    let (wake_certificates, certificates_to_wake) = unbounded();
    let (wake_issuers, issuers_to_wake) = unbounded();
    let (wake_cluster_issuers, cluster_issuers_to_wake) = unbounded();
    let crn = cluster_resource_namespace;
    let task = records
        .touched()
        .take_until(on_shutdown(shutdown))
        .for_each(move |touched| {
            if let Ok(DeserializeGuard(Ok(record))) = &touched {
                for cert in certificates_for_revocation(&certificates, record, &crn) {
                    let _ = wake_certificates.unbounded_send(cert);
                }
                match issuer_of_revocation(record, &crn) {
                    Some(RecordIssuer::Issuer(r)) => drop(wake_issuers.unbounded_send(r)),
                    Some(RecordIssuer::ClusterIssuer(r)) => drop(wake_cluster_issuers.unbounded_send(r)),
                    None => {}
                }
            }
            async {}
        });
    let wakes = RecordWakes {
        certificates: certificates_to_wake,
        issuers: issuers_to_wake,
        cluster_issuers: cluster_issuers_to_wake,
    };
    (cache, synced, wakes, task)
}

/// The Certificates whose certificate (as their status reports it) a revocation record
/// revokes: the ones to wake when the record appears, so their Secret is re-issued.
pub fn certificates_for_revocation(
    certificates: &Store<CachedCertificate>,
    record: &CertificateRevocation,
    cluster_resource_namespace: &str,
) -> Vec<ObjectRef<CachedCertificate>> {
    let issuer = &record.spec.issuer_ref;
    let Ok(serial) = parse_serial(&record.spec.serial_number) else {
        return Vec::new();
    };
    let serial = serial_hex(&serial);
    let namespace = match issuer.is_cluster() {
        true if record.metadata.namespace.as_deref() == Some(cluster_resource_namespace) => None,
        true => return Vec::new(),
        false => record.metadata.namespace.as_deref(),
    };
    if issuer.group() != GROUP {
        return Vec::new();
    }
    certificates_for_issuer(certificates, issuer.kind(), &issuer.name, namespace)
        .into_iter()
        .filter(|r| {
            certificates.get(r).is_some_and(|cert| {
                cert.summary()
                    .and_then(|s| s.serial_number())
                    .is_some_and(|s| s == serial)
            })
        })
        .collect()
}

/// Where a revocation record wakes: the Issuer it names (in its namespace), or the
/// ClusterIssuer it names when it lives in the cluster-resource namespace.
enum RecordIssuer {
    Issuer(ObjectRef<DeserializeGuard<Issuer>>),
    ClusterIssuer(ObjectRef<DeserializeGuard<ClusterIssuer>>),
}

fn issuer_of_revocation(
    record: &CertificateRevocation,
    cluster_resource_namespace: &str,
) -> Option<RecordIssuer> {
    let issuer = &record.spec.issuer_ref;
    let namespace = record.metadata.namespace.as_deref()?;
    if issuer.group() != GROUP {
        return None;
    }
    match issuer.kind() {
        "Issuer" => Some(RecordIssuer::Issuer(
            ObjectRef::new(&issuer.name).within(namespace),
        )),
        "ClusterIssuer" if namespace == cluster_resource_namespace => {
            Some(RecordIssuer::ClusterIssuer(ObjectRef::new(&issuer.name)))
        }
        _ => None,
    }
}
