//! One issuer reconcile: read the CA Secret, judge it, write the status if it changed.

use std::sync::Arc;
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::IssuerObject;
use super::rotation::{self, AnchorCertificate, CaView, Progress, RotationEvent, trust_pem};
use super::status::{IssuerHealth, READY, issuer_status};
use crate::api::{DISTRUST_PREVIOUS_REQUESTED_AT, IssuerStatus, find_condition};
use crate::context::{Context, FIELD_MANAGER};
use crate::error::Error;
use crate::pki::CaKeyPair;

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
                .load(&ctx.client, &namespace, ca, now)
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

/// How far the issuer's Certificates have got through a rotation, from what the certificate
/// controller last found in their Secrets (its verdicts). A Certificate that is not Ready
/// for reasons of its own is not waited for; one not yet looked at since a restart is.
fn progress<K: IssuerObject>(
    issuer: &K,
    ctx: &Context,
    previous: &IssuerStatus,
    pair: &CaKeyPair,
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
    };
    for guard in ctx.certificates.state() {
        let Ok(cert) = &guard.0 else { continue };
        let issuer_ref = &cert.spec.issuer_ref;
        let ours = issuer_ref.kind() == K::KIND
            && issuer_ref.group() == crate::api::GROUP
            && issuer_ref.name == name
            && (namespace.is_none() || cert.metadata.namespace == namespace);
        let ready = cert
            .status
            .as_ref()
            .and_then(|s| find_condition(&s.conditions, READY))
            .is_some_and(|c| c.status == "True");
        if !ours || !ready {
            continue;
        }
        let key = (cert.namespace().unwrap_or_default(), cert.name_any());
        let Some((_, verdict)) = ctx.verdicts.get(&key) else {
            return Progress::default();
        };
        progress.trust_distributed &=
            verdict.ca_pem.as_ref().map(<[u8; 32]>::as_slice) == Some(expected_ca_pem.as_ref());
        progress.reissued &= verdict.under_current_ca
            && verdict.signer.as_ref().map(<[u8; 32]>::as_slice) == Some(ca_id.as_ref());
    }
    progress
}

/// The issuer's `certkeeper.io/distrust-previous-requested-at`, when an RFC 3339 time.
fn distrust_requested_at<K: IssuerObject>(issuer: &K) -> Option<jiff::Timestamp> {
    let value = issuer.annotations().get(DISTRUST_PREVIOUS_REQUESTED_AT)?;
    match value.parse() {
        Ok(at) => Some(at),
        Err(e) => {
            warn!(kind = K::KIND, issuer = %object_name(issuer), %value, error = %e, "ignoring {DISTRUST_PREVIOUS_REQUESTED_AT}: not an RFC 3339 time");
            None
        }
    }
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
    match (&health, &pair) {
        (IssuerHealth::Ca(facts), Some(pair)) => {
            let ca = CaView {
                fingerprint: facts.fingerprint_sha256.clone(),
                anchor: AnchorCertificate::of(pair.anchor()),
            };
            let progress = progress(issuer, &ctx, &previous, pair);
            let plan = rotation::plan(
                &previous,
                &ca,
                progress,
                distrust_requested_at(issuer),
                ctx.rotation,
                now,
            );
            status.trust_anchors = plan.trust_anchors;
            status.rotation = plan.rotation;
            status.distrusted_at = plan.distrusted_at;
            rotation_events = plan.events;
            rotation_wake = plan.wake_at;
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
    Ok(match &health {
        // Look again the moment the CA expires, so Ready turns False on time; during a
        // rotation, soon, to follow the Certificates' progress.
        IssuerHealth::Ca(facts) => {
            let mut deadlines = vec![facts.not_after];
            deadlines.extend(rotation_wake);
            let wait = crate::certificate::schedule::requeue_after(now, &deadlines);
            Action::requeue(if status.rotation.is_some() {
                wait.min(ROTATION_POLL)
            } else {
                wait
            })
        }
        IssuerHealth::Broken(_) => Action::requeue(BROKEN_RECHECK),
        IssuerHealth::SelfSigned | IssuerHealth::InvalidSpec(_) => Action::await_change(),
    })
}
