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
use super::status::{IssuerHealth, READY, issuer_status};
use crate::api::find_condition;
use crate::context::{Context, FIELD_MANAGER};
use crate::error::Error;

/// A broken issuer is looked at again after this long even without a watch event (a CA
/// Secret of another type than kubernetes.io/tls is not watched).
const BROKEN_RECHECK: Duration = Duration::from_secs(300);

/// Display name `namespace/name` or `name`.
pub fn object_name<K: Resource>(obj: &K) -> String {
    match obj.meta().namespace.as_deref() {
        Some(ns) => format!("{ns}/{}", obj.meta().name.as_deref().unwrap_or("")),
        None => obj.meta().name.clone().unwrap_or_default(),
    }
}

/// Judges an issuer: selfSigned is always healthy; a CA issuer's Secret is read and checked.
pub async fn health<K: IssuerObject>(
    issuer: &K,
    ctx: &Context,
    now: jiff::Timestamp,
) -> Result<IssuerHealth, Error> {
    let spec = issuer.issuer_spec();
    Ok(match (&spec.self_signed, &spec.ca) {
        (Some(_), None) => IssuerHealth::SelfSigned,
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
                Ok((_, facts)) => IssuerHealth::Ca(facts),
                Err(problem) => IssuerHealth::Broken(problem),
            }
        }
        _ => IssuerHealth::InvalidSpec("exactly one of spec.selfSigned or spec.ca must be set".into()),
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
    let health = health(issuer, &ctx, now).await?;
    let previous = issuer.issuer_status().cloned().unwrap_or_default();
    let status = issuer_status(&previous, &health, issuer.meta().generation, now);
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
    Ok(match &health {
        // Look again the moment the CA expires, so Ready turns False on time.
        IssuerHealth::Ca(facts) => Action::requeue(crate::certificate::schedule::requeue_after(
            now,
            &[facts.not_after],
        )),
        IssuerHealth::Broken(_) => Action::requeue(BROKEN_RECHECK),
        IssuerHealth::SelfSigned | IssuerHealth::InvalidSpec(_) => Action::await_change(),
    })
}
