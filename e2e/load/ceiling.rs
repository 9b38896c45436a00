//! `--ceiling`: the API server's own limit for the writes issuing a Certificate takes, with no
//! controller in the loop. For each Certificate the tool makes, in order, the four writes a
//! controller's issuance makes on the critical path and beside it: the user's create, the
//! Secret (server-side apply, a real certificate, key and CA of the same sizes), the status
//! (server-side apply of the status subresource: Ready, times, revision, serial) and the Event
//! (events.k8s.io/v1). Certificates are worked on `--create-concurrency` at a time, the
//! namespace's Certificates watched as the throughput run watches them. The rate
//! is what a controller can at most reach on this server; the throughput run is compared with it.

use std::time::{Duration, Instant};

use certkeeper::api::{Certificate, CertificateStatus};
use certkeeper::certificate::secret;
use certkeeper::pki::{
    CertificateTemplate, KeyAlgorithm, KeyEncoding, KeySpec, PkiError, PrivateKey, sign_self_signed,
};
use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::LoadError;
use crate::cluster::{self, kube_failed};

/// The field manager of the writes, as the controller's.
const MANAGER: &str = "certkeeper";

/// What every Secret holds: one leaf, its key and the CA, made once (the API server does not
/// look inside; the sizes are what matter).
struct Payload {
    certificate: String,
    key: String,
    ca: String,
    serial: String,
}

fn payload(now: jiff::Timestamp) -> Result<Payload, PkiError> {
    // The same CA the throughput run's Issuer reads.
    let ca_secret = cluster::ca_secret(now)?;
    let ca = ca_secret
        .data
        .as_ref()
        .and_then(|data| data.get("tls.crt"))
        .map(|pem| String::from_utf8_lossy(&pem.0).into_owned())
        .unwrap_or_default();
    let bound = |e: jiff::Error| PkiError::InvalidCertificate(format!("validity: {e}"));
    let key = PrivateKey::generate(KeySpec {
        algorithm: KeyAlgorithm::Ecdsa,
        size: 256,
    })?;
    let leaf = sign_self_signed(
        &CertificateTemplate {
            dns_names: vec!["cert-1.certkeeper-load.svc".into()],
            not_before: now,
            not_after: now
                .checked_add(jiff::SignedDuration::from_hours(24))
                .map_err(bound)?,
            ..CertificateTemplate::default()
        },
        &key,
    )?;
    Ok(Payload {
        certificate: leaf.chain_pem,
        key: key.to_pem(KeyEncoding::Pkcs8)?,
        ca,
        serial: "5c1d7e0f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d".into(),
    })
}

/// Makes the writes of `count` issuances in `namespace`; returns how long they took.
pub async fn measure(
    client: &Client,
    namespace: &str,
    count: u32,
    concurrency: u32,
    algorithm: KeyAlgorithm,
) -> Result<Duration, LoadError> {
    let now = jiff::Timestamp::now();
    let payload = cluster::generate("generate the ceiling's certificate", move || payload(now)).await?;
    let certificates: Api<Certificate> = Api::namespaced(client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let payload = &payload;
    // The throughput run watches the namespace's Certificates to see them Ready; so does this
    // run, so that the API server serves the same watch in both.
    let watching = tokio::spawn(
        kube::runtime::watcher(certificates.clone(), kube::runtime::watcher::Config::default())
            .for_each(|_| async {}),
    );
    let start = Instant::now();
    let mut writes = std::pin::pin!(
        futures::stream::iter(1..=count)
            .map(|index| {
                let (certificates, secrets, events) = (certificates.clone(), secrets.clone(), events.clone());
                async move {
                    issue(
                        &certificates,
                        &secrets,
                        &events,
                        namespace,
                        index,
                        algorithm,
                        payload,
                    )
                    .await
                }
            })
            .buffer_unordered(usize::try_from(concurrency).unwrap_or(usize::MAX))
    );
    let mut result = Ok(());
    while let Some(done) = writes.next().await {
        if let Err(e) = done {
            result = Err(e);
            break;
        }
    }
    let elapsed = start.elapsed();
    watching.abort();
    result.map(|()| elapsed)
}

/// The four writes of one issuance.
async fn issue(
    certificates: &Api<Certificate>,
    secrets: &Api<Secret>,
    events: &Api<Event>,
    namespace: &str,
    index: u32,
    algorithm: KeyAlgorithm,
    payload: &Payload,
) -> Result<(), LoadError> {
    let certificate = cluster::certificate(index, namespace, algorithm);
    let name = certificate.name_any();
    let created = certificates
        .create(&PostParams::default(), &certificate)
        .await
        .map_err(kube_failed(format!("create Certificate {name}")))?;
    let secret_name = certificate.spec.secret_name.clone();
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret_name,
            "labels": {secret::LABEL_CERTIFICATE_NAME: name},
            "annotations": {
                secret::ANN_CERTIFICATE_NAME: name,
                secret::ANN_ISSUER_NAME: cluster::ISSUER,
                secret::ANN_ISSUER_KIND: "Issuer",
                secret::ANN_ISSUER_GROUP: certkeeper::api::GROUP,
                secret::ANN_COMMON_NAME: "",
                secret::ANN_ALT_NAMES: format!("{name}.{namespace}.svc"),
                secret::ANN_IP_SANS: "",
                secret::ANN_URI_SANS: "",
                secret::ANN_REVISION: "1",
            },
        },
        "type": "kubernetes.io/tls",
        "data": {
            "tls.crt": ByteString(payload.certificate.clone().into_bytes()),
            "tls.key": ByteString(payload.key.clone().into_bytes()),
            "ca.crt": ByteString(payload.ca.clone().into_bytes()),
        },
    });
    let apply = PatchParams::apply(MANAGER).force();
    secrets
        .patch(&secret_name, &apply, &Patch::Apply(&secret))
        .await
        .map_err(kube_failed(format!("apply Secret {secret_name}")))?;
    let now = Time(jiff::Timestamp::now());
    let status = CertificateStatus {
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "Ready".into(),
            message: "Certificate is up to date and has not expired".into(),
            last_transition_time: now.clone(),
            observed_generation: created.metadata.generation,
        }],
        not_before: Some(now.clone()),
        not_after: Some(now.clone()),
        renewal_time: Some(now.clone()),
        revision: Some(1),
        serial_number: Some(payload.serial.clone()),
        observed_generation: created.metadata.generation,
        ..CertificateStatus::default()
    };
    let patch = json!({
        "apiVersion": "certkeeper.io/v1",
        "kind": "Certificate",
        "status": status,
    });
    certificates
        .patch_status(&name, &apply, &Patch::Apply(&patch))
        .await
        .map_err(kube_failed(format!("apply the status of Certificate {name}")))?;
    let event = Event {
        metadata: ObjectMeta {
            // As kube's recorder names them: the object's name and a unique suffix.
            name: Some(format!("{name}.{:x}", jiff::Timestamp::now().as_nanosecond())),
            namespace: Some(namespace.to_owned()),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(jiff::Timestamp::now())),
        action: Some("Issue".into()),
        reason: Some("Issued".into()),
        note: Some("Certificate issued, revision 1".into()),
        type_: Some("Normal".into()),
        reporting_controller: Some("certkeeper.io/controller".into()),
        reporting_instance: Some("certkeeper-load-ceiling".into()),
        regarding: Some(ObjectReference {
            api_version: Some("certkeeper.io/v1".into()),
            kind: Some("Certificate".into()),
            name: Some(name.clone()),
            namespace: Some(namespace.to_owned()),
            uid: created.metadata.uid.clone(),
            ..ObjectReference::default()
        }),
        ..Event::default()
    };
    events
        .create(&PostParams::default(), &event)
        .await
        .map_err(kube_failed(format!("create the Event of Certificate {name}")))?;
    Ok(())
}

/// How many of the namespace's Certificates carry a status the ceiling run did not write (a
/// controller acted on them, so the measured rate is below the server's ceiling).
pub async fn touched_by_a_controller(client: &Client, namespace: &str) -> Result<usize, LoadError> {
    let certificates: Api<Certificate> = Api::namespaced(client.clone(), namespace);
    let listed = certificates
        .list(&Default::default())
        .await
        .map_err(kube_failed(format!("list the Certificates of {namespace}")))?;
    Ok(listed
        .items
        .iter()
        .filter(|c| {
            c.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status != "True")
                    || s.conditions.len() != 1
            })
        })
        .count())
}
