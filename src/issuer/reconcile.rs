//! One issuer reconcile: read the CA Secret, judge it, write the status if it changed, and
//! for a CA issuer keep its CRL published (ConfigMap and PKI endpoint).

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::IssuerObject;
use super::crl;
use super::rotation::{self, AnchorCertificate, CaView, Progress, RotationEvent, trust_pem};
use super::status::{IssuerHealth, READY, issuer_status};
use crate::api::{
    CertificateRevocation, DISTRUST_PREVIOUS_REQUESTED_AT, IssuerStatus, TrustAnchorRole, find_condition,
};
use crate::bundle::sources::uses_issuer;
use crate::bundle::status::distributes;
use crate::cluster::revocations::{IssuerRecords, revoked_serial};
use crate::context::{Context, FIELD_MANAGER};
use crate::error::Error;
use crate::pki::CaKeyPair;
use crate::revocation::{
    CLUSTER_SCOPE, PublishedCrl, ServedIssuer, build_crl, crl_due, crl_resign_at, next_crl_number,
};
use crate::telemetry::events;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;

/// A broken issuer is looked at again after this long even without a watch event (a CA
/// Secret of another type than kubernetes.io/tls is not watched).
const BROKEN_RECHECK: Duration = Duration::from_secs(300);

/// How often an issuer in the middle of a rotation looks at its Certificates' progress (read
/// from the controller's memory, no API request).
const ROTATION_POLL: Duration = Duration::from_secs(5);

/// Display name `namespace/name` or `name`.
pub fn object_name<K: Resource>(obj: &K) -> String {
    match obj.meta().namespace.as_deref() {
        Some(ns) => format!("{ns}/{}", obj.meta().name.as_deref().unwrap_or("")),
        None => obj.meta().name.clone().unwrap_or_default(),
    }
}

/// Judges an issuer: selfSigned is always healthy; a CA issuer's Secret is read and checked,
/// and its key pair returned when usable.
pub async fn health<K: IssuerObject>(
    issuer: &K,
    ctx: &Context,
    now: jiff::Timestamp,
) -> Result<(IssuerHealth, Option<Arc<CaKeyPair>>), Error> {
    let spec = issuer.issuer_spec();
    Ok(match (&spec.self_signed, &spec.ca) {
        (Some(_), None) => (IssuerHealth::SelfSigned, None),
        (None, Some(ca)) => {
            let namespace = issuer
                .ca_namespace(&ctx.cluster_resource_namespace)
                .ok_or_else(|| Error::MissingField {
                    kind: K::KIND,
                    object: object_name(issuer),
                    field: "metadata.namespace",
                })?;
            match ctx
                .ca_key_pairs(K::KIND)
                .load(&ctx.client, ctx.hsm(K::KIND, true), &namespace, ca, now)
                .await?
            {
                Ok((pair, facts)) => (IssuerHealth::Ca(facts), Some(pair)),
                Err(problem) => (IssuerHealth::Broken(problem), None),
            }
        }
        _ => (
            IssuerHealth::InvalidSpec("exactly one of spec.selfSigned or spec.ca must be set".into()),
            None,
        ),
    })
}

/// How far the issuer's Certificates and Bundles have got through a rotation, from what the
/// certificate controller last found in their Secrets (its verdicts) and what each Bundle
/// sourcing the issuer reports of its targets. A Certificate that is not Ready
/// for reasons of its own is not waited for; one not yet looked at since a restart is.
fn progress<K: IssuerObject>(
    issuer: &K,
    ctx: &Context,
    previous: &IssuerStatus,
    pair: &CaKeyPair,
    now: jiff::Timestamp,
) -> Progress {
    let expected_ca_pem = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        trust_pem(&previous.trust_anchors).as_bytes(),
    );
    let ca_id = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &pair.certificate().der);
    let name = issuer.name_any();
    let namespace = issuer.meta().namespace.clone();
    let mut progress = Progress {
        trust_distributed: true,
        reissued: true,
        blocked: Vec::new(),
    };
    // A Bundle leaves expired certificates out: an expired previous root is not waited for.
    let anchors: Vec<String> = previous
        .trust_anchors
        .iter()
        .filter(|a| a.not_after.as_ref().is_none_or(|t| t.0 > now))
        .map(|a| a.fingerprint_sha256.clone())
        .collect();
    for guard in ctx.bundles.state() {
        let Ok(bundle) = &guard.0 else { continue };
        if uses_issuer(bundle, K::KIND, &name, namespace.as_deref()) {
            progress.trust_distributed &= distributes(bundle, &anchors);
        }
    }
    if previous
        .trust_anchors
        .iter()
        .any(|a| a.role == TrustAnchorRole::Previous)
    {
        let is_self = |kind: &str, other_name: Option<&String>, other_ns: Option<&String>| {
            kind == K::KIND && other_name == Some(&name) && other_ns == namespace.as_ref()
        };
        let issuers = ctx.issuers.state();
        let others_issuers = issuers
            .iter()
            .filter_map(|g| g.0.as_ref().ok())
            .filter(|i| !is_self("Issuer", i.metadata.name.as_ref(), i.metadata.namespace.as_ref()));
        let cluster_issuers = ctx.cluster_issuers.state();
        let others_cluster = cluster_issuers
            .iter()
            .filter_map(|g| g.0.as_ref().ok())
            .filter(|i| !is_self("ClusterIssuer", i.metadata.name.as_ref(), None));
        let others = others_issuers
            .filter_map(|i| i.status.as_ref())
            .chain(others_cluster.filter_map(|i| i.status.as_ref()));
        if rotation::trusted_below(previous, others) {
            progress.reissued = false;
        }
    }
    for cert in ctx.certificates.state() {
        let (Some(issuer_ref), Some(summary)) = (cert.issuer_ref(), cert.summary()) else {
            continue;
        };
        let ours =
            cert.references(K::KIND, &name, namespace.as_deref()) && issuer_ref.group() == crate::api::GROUP;
        if !ours || summary.ready() != "True" {
            continue;
        }
        let key = (cert.namespace().unwrap_or_default(), cert.name_any());
        let Some((_, verdict)) = ctx.verdicts.get(&key) else {
            return Progress::default();
        };
        progress.trust_distributed &=
            verdict.ca_pem.as_ref().map(<[u8; 32]>::as_slice) == Some(expected_ca_pem.as_ref());
        let moved = verdict.under_current_ca
            && verdict.signer.as_ref().map(<[u8; 32]>::as_slice) == Some(ca_id.as_ref());
        // Ready, but nothing can be issued for it now (a policy denies it, issuance fails).
        let blocked = summary.issuing_false();
        match (moved, blocked) {
            (true, _) => {}
            (false, true) => progress.blocked.push(format!("{}/{}", key.0, key.1)),
            (false, false) => progress.reissued = false,
        }
    }
    progress
}

/// The issuer's `certkeeper.io/distrust-previous-requested-at`, when an RFC 3339 time. A value
/// that is not distrusts nothing; the issuer gets a Warning Event saying why, once per value.
async fn distrust_requested_at<K: IssuerObject>(issuer: &K, ctx: &Context) -> Option<jiff::Timestamp> {
    let object = format!("{} {}", K::KIND, object_name(issuer));
    let Some(value) = issuer.annotations().get(DISTRUST_PREVIOUS_REQUESTED_AT) else {
        ctx.warned_requests
            .forget(&object, DISTRUST_PREVIOUS_REQUESTED_AT);
        return None;
    };
    match value.trim().parse::<jiff::Timestamp>() {
        Ok(at) => {
            ctx.warned_requests
                .forget(&object, DISTRUST_PREVIOUS_REQUESTED_AT);
            // Whole seconds, as the status stores the request it acted on.
            jiff::Timestamp::from_second(at.as_second()).ok()
        }
        Err(e) => {
            if ctx
                .warned_requests
                .first(&object, DISTRUST_PREVIOUS_REQUESTED_AT, value)
            {
                warn!(kind = K::KIND, issuer = %object_name(issuer), %value, error = %e, "ignoring {DISTRUST_PREVIOUS_REQUESTED_AT}: not an RFC 3339 time");
                let shown: String = value.chars().take(64).collect();
                let why = format!("{DISTRUST_PREVIOUS_REQUESTED_AT} {shown:?} is not an RFC 3339 time");
                events::publish(
                    ctx,
                    events::invalid_distrust_request(&why),
                    &issuer.object_ref(&()),
                )
                .await;
            }
            None
        }
    }
}

/// Where an issuer's revocation records and CRL ConfigMap live: its own namespace for an
/// Issuer, the cluster-resource namespace for a ClusterIssuer.
fn records_namespace<K: IssuerObject>(issuer: &K, ctx: &Context) -> String {
    match K::KIND {
        "ClusterIssuer" => ctx.cluster_resource_namespace.clone(),
        _ => issuer.meta().namespace.clone().unwrap_or_default(),
    }
}

/// The PKI endpoint's path segment for an issuer: its namespace, `cluster` for a ClusterIssuer.
fn endpoint_scope<K: IssuerObject>(issuer: &K) -> String {
    match K::KIND {
        "ClusterIssuer" => CLUSTER_SCOPE.to_owned(),
        _ => issuer.meta().namespace.clone().unwrap_or_default(),
    }
}

/// Keeps a CA issuer's CRL current: signed over its revocation records, re-signed when they
/// change, at half-life and when the CA changes, stored in its ConfigMap and served by the PKI
/// endpoint. The stored CRL is read once per process (what the endpoint serves says the rest),
/// so its number keeps increasing across restarts. Returns when to re-sign.
async fn publish_crl<K: IssuerObject>(
    issuer: &K,
    ctx: &Context,
    ca: &Arc<CaKeyPair>,
    now: jiff::Timestamp,
) -> Result<jiff::Timestamp, Error> {
    let namespace = records_namespace(issuer, ctx);
    let name = issuer.name_any();
    let scope = endpoint_scope(issuer);
    let fingerprint = ca.certificate().fingerprint_sha256.clone();
    let mut invalid = Vec::new();
    let revoked = IssuerRecords {
        kind: K::KIND,
        name: &name,
        namespace: &namespace,
    }
    .revoked(&ctx.revocations, &mut invalid);
    for (record, error) in &invalid {
        warn!(kind = K::KIND, issuer = %object_name(issuer), %record, %error, "ignoring an unreadable CertificateRevocation");
    }

    // What is published: what this process serves, else what the ConfigMap holds.
    let served = ctx
        .pki
        .issuer(&scope, &name)
        .filter(|s| s.ca().certificate().fingerprint_sha256 == fingerprint);
    let (published, current, floor) = match &served {
        Some(served) => {
            let crl = served.crl();
            (PublishedCrl::from_der(&crl.der), Some(crl.clone()), None)
        }
        None => {
            let stored = get_configmap(ctx, &namespace, &crl::configmap_name(&name)).await?;
            match &stored {
                Some(cm) => match crl::stored_crl(cm, ca.certificate()) {
                    Some((published, signed)) => (Some(published), Some(signed), None),
                    None => (None, None, crl::stored_number(cm)),
                },
                None => (None, None, None),
            }
        }
    };
    let crl = match crl_due(published.as_ref(), &revoked, now) {
        None => match current {
            Some(crl) => crl,
            None => return Ok(now),
        },
        Some(why) => {
            let number = next_crl_number(published.as_ref().or(floor.as_ref()), now);
            let started = std::time::Instant::now();
            // Signed by the CA key, perhaps on an HSM: off the async workers.
            let signed = {
                let (ca, revoked) = (ca.clone(), revoked.clone());
                tokio::task::spawn_blocking(move || build_crl(&ca, &revoked, number, now))
                    .await
                    .unwrap_or_else(|e| {
                        Err(crate::revocation::RevocationError::from(
                            crate::pki::PkiError::Signing(format!("the signing task ended abnormally: {e}")),
                        ))
                    })
            };
            let id = crate::telemetry::audit::IssuerId::new(
                K::KIND,
                &issuer.namespace().unwrap_or_default(),
                &name,
            );
            let facts = crate::telemetry::audit::SignedFacts::crl(
                number,
                signed.as_ref().ok().map(|crl| crl.der.as_slice()),
            );
            let signature = crate::telemetry::audit::CaSignature {
                what: crate::telemetry::audit::Signed::Crl,
                issuer: &id,
                ca,
                certificate: "",
                facts: &facts,
            };
            let error = signed.as_ref().err().map(ToString::to_string);
            crate::telemetry::audit::record(
                Some(&ctx.metrics),
                &signature,
                started.elapsed(),
                error.as_deref(),
            );
            let crl = signed.map_err(|e| Error::SignCrl {
                kind: K::KIND,
                object: object_name(issuer),
                reason: e.to_string(),
            })?;
            info!(kind = K::KIND, issuer = %object_name(issuer), number, revoked = revoked.len(), why = ?why, "publishing a new CRL");
            let ca_secret = issuer
                .issuer_spec()
                .ca
                .as_ref()
                .map(|ca| ca.secret_name.as_str())
                .unwrap_or_default();
            let desired = crl::desired_configmap(&namespace, K::KIND, &name, ca_secret, &crl, &fingerprint);
            apply_configmap(ctx, &desired).await?;
            crl
        }
    };
    let resign_at = crl_resign_at(crl.this_update, crl.next_update);
    let unchanged = served.as_ref().is_some_and(|s| s.crl() == &crl);
    if !unchanged {
        ctx.pki
            .publish(&scope, &name, ServedIssuer::new(ca.clone(), revoked, crl));
    }
    report_records::<K>(ctx, &namespace, &name, now).await?;
    Ok(resign_at)
}

/// Tells each of the issuer's records, in its status, whether the published CRL lists it;
/// writes only the statuses that change.
async fn report_records<K: IssuerObject>(
    ctx: &Context,
    namespace: &str,
    name: &str,
    now: jiff::Timestamp,
) -> Result<(), Error> {
    let issuer = format!("{} {name}", K::KIND);
    let records = IssuerRecords {
        kind: K::KIND,
        name,
        namespace,
    }
    .records(&ctx.revocations);
    let api = Api::<CertificateRevocation>::namespaced(ctx.client.clone(), namespace);
    for record in records {
        let parsed = revoked_serial(&record);
        let status = crl::record_status(
            record.status.as_ref(),
            parsed.as_ref(),
            &issuer,
            record.metadata.generation,
            now,
        );
        if record.status.as_ref() == Some(&status) {
            continue;
        }
        let record_name = record.name_any();
        let patch = serde_json::json!({
            "apiVersion": CertificateRevocation::api_version(&()),
            "kind": "CertificateRevocation",
            "status": status,
        });
        api.patch_status(
            &record_name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| Error::PatchStatus {
            kind: "CertificateRevocation",
            object: format!("{namespace}/{record_name}"),
            source,
        })?;
    }
    Ok(())
}

async fn get_configmap(ctx: &Context, namespace: &str, name: &str) -> Result<Option<ConfigMap>, Error> {
    Api::<ConfigMap>::namespaced(ctx.client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|source| Error::ReadConfigMap {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        })
}

async fn apply_configmap(ctx: &Context, desired: &ConfigMap) -> Result<(), Error> {
    let namespace = desired.metadata.namespace.clone().unwrap_or_default();
    let name = desired.metadata.name.clone().unwrap_or_default();
    let mut body = serde_json::to_value(desired).map_err(|e| Error::SignCrl {
        kind: "ConfigMap",
        object: format!("{namespace}/{name}"),
        reason: e.to_string(),
    })?;
    // Server-side apply needs the type, which k8s-openapi does not serialize by itself.
    body["apiVersion"] = "v1".into();
    body["kind"] = "ConfigMap".into();
    Api::<ConfigMap>::namespaced(ctx.client.clone(), &namespace)
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map(|_| ())
        .map_err(|source| Error::ApplyConfigMap {
            namespace,
            name,
            source,
        })
}

pub async fn reconcile<K: IssuerObject>(
    guard: Arc<DeserializeGuard<K>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let issuer = match &guard.0 {
        Ok(issuer) => issuer,
        Err(invalid) => {
            warn!(kind = K::KIND, name = ?invalid.metadata.name, namespace = ?invalid.metadata.namespace, error = %invalid.error, "cannot read issuer");
            return Ok(Action::await_change());
        }
    };
    let now = ctx.now();
    let (health, pair) = health(issuer, &ctx, now).await?;
    let previous = issuer.issuer_status().cloned().unwrap_or_default();
    let mut status = issuer_status(&previous, &health, issuer.meta().generation, now);
    let mut rotation_events: Vec<RotationEvent> = Vec::new();
    let mut rotation_wake = None;
    let distrust = distrust_requested_at(issuer, &ctx).await;
    match (&health, &pair) {
        (IssuerHealth::Ca(facts), Some(pair)) => {
            let ca = CaView {
                fingerprint: facts.fingerprint_sha256.clone(),
                anchor: AnchorCertificate::of(pair.anchor()),
            };
            // Only a rotation under way looks at its progress: no walk over every Certificate
            // in an issuer's ordinary reconciles.
            let progress = match previous.rotation {
                Some(_) => progress(issuer, &ctx, &previous, pair, now),
                None => Progress::default(),
            };
            let plan = rotation::plan(&previous, &ca, progress, distrust, ctx.rotation, now);
            status.trust_anchors = plan.trust_anchors;
            status.rotation = plan.rotation;
            status.distrusted_at = plan.distrusted_at;
            rotation_events = plan.events;
            // A distrust request dated ahead is acted on at its time, not at the next poll.
            let distrust_wake = rotation::distrust_wake_at(status.distrusted_at.as_ref(), distrust, now);
            rotation_wake = plan.wake_at.into_iter().chain(distrust_wake).min();
        }
        (IssuerHealth::SelfSigned | IssuerHealth::InvalidSpec(_), _) => {
            status.trust_anchors.clear();
            status.rotation = None;
        }
        // A broken CA Secret says nothing about the roots: keep them, and any rotation, as
        // they were until it is fixed.
        _ => {}
    }
    if status != previous {
        let api = K::api(ctx.client.clone(), issuer.meta().namespace.as_deref());
        let patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::KIND,
            "status": status,
        });
        api.patch_status(
            &issuer.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| Error::PatchStatus {
            kind: K::KIND,
            object: object_name(issuer),
            source,
        })?;
        let before = find_condition(&previous.conditions, READY);
        let after = find_condition(&status.conditions, READY);
        if let Some(after) = after
            && before.map(|b| (&b.status, &b.reason)) != Some((&after.status, &after.reason))
        {
            info!(kind = K::KIND, issuer = %object_name(issuer), ready = %after.status, reason = %after.reason, "issuer readiness changed");
            if after.status != "True" {
                let event = Event {
                    type_: EventType::Warning,
                    reason: after.reason.clone(),
                    note: Some(after.message.clone()),
                    action: "CheckIssuer".into(),
                    secondary: None,
                };
                if let Err(e) = ctx.recorder.publish(&event, &issuer.object_ref(&())).await {
                    warn!(error = %e, "could not publish event");
                }
            }
        }
    }
    // After the status: a restart resumes from the status and never repeats an Event.
    for event in rotation_events {
        info!(kind = K::KIND, issuer = %object_name(issuer), reason = event.reason, note = %event.note, "CA rotation");
        let event = Event {
            type_: if event.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: event.reason.into(),
            note: Some(event.note),
            action: "RotateCA".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &issuer.object_ref(&())).await {
            warn!(error = %e, "could not publish event");
        }
    }
    // A CA issuer that cannot sign publishes nothing new; relying parties keep its last CRL.
    let resign_at = match &pair {
        Some(ca) => Some(publish_crl(issuer, &ctx, ca, now).await?),
        None => None,
    };
    Ok(match &health {
        // Look again the moment the CA expires, so Ready turns False on time, and when the CRL
        // is due to be signed again; during a rotation, soon, to follow the Certificates'
        // progress.
        IssuerHealth::Ca(facts) => {
            let mut deadlines = vec![facts.not_after];
            deadlines.extend(rotation_wake);
            deadlines.extend(resign_at);
            let wait = crate::certificate::schedule::requeue_after(now, &deadlines);
            let wait = match &pair {
                // A token can go away unseen by any watch: look for the key now and then.
                Some(ca) if matches!(ca.key, crate::pki::CaKey::Hsm(_)) => {
                    wait.min(crate::pkcs11::registry::PROBE_EVERY)
                }
                _ => wait,
            };
            Action::requeue(if status.rotation.is_some() {
                wait.min(ROTATION_POLL)
            } else {
                wait
            })
        }
        // A token comes back on its own, unseen by any watch: look again within seconds.
        IssuerHealth::Broken(problem) if problem.token_may_return() => {
            Action::requeue(crate::pkcs11::registry::RETRY_BROKEN)
        }
        IssuerHealth::Broken(_) => Action::requeue(BROKEN_RECHECK),
        IssuerHealth::SelfSigned | IssuerHealth::InvalidSpec(_) => Action::await_change(),
    })
}
