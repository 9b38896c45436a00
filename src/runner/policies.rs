//! The issuance policy's wiring: the CertificatePolicy watch and a metadata watch of the
//! namespaces (for `matchLabels`), both followed into the compiled policies every Certificate
//! reconcile reads (`ctx.policies`); a change wakes the Certificates it may concern, from the
//! Certificate cache (no request). The policy controller writes each policy's Ready condition.

use std::sync::Arc;

use futures::StreamExt;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use k8s_openapi::api::core::v1::{Namespace, ObjectReference};
use kube::api::{Api, Patch, PatchParams};
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::Wiring;
use super::reconciles::{error_policy, observed};
use super::watches::{Watches, controller};
use crate::api::{CertificatePolicy, ConditionStatus, condition, find_condition};
use crate::certificate::cached::CachedCertificate;
use crate::context::{Context, FIELD_MANAGER};
use crate::error::Error;
use crate::issuance_policy::{Changed, Policies};
use crate::telemetry::events;
use crate::telemetry::metrics::ControllerKind;
use crate::telemetry::server::SyncFlag;

/// The Ready reasons of a CertificatePolicy.
pub mod reason {
    /// Every pattern and rule parses.
    pub const VALID: &str = "Valid";
    /// Something does not parse: the policy allows nothing.
    pub const INVALID: &str = "Invalid";
}

/// The Certificates to wake for policy and namespace changes.
pub(super) type CertificateWakes = UnboundedReceiver<ObjectRef<CachedCertificate>>;

/// What `follow` wires: the policy controller, the flag set once the policies are listed, the
/// Certificates to wake, and the task following the namespaces.
pub(super) struct Followed<F> {
    pub(super) controller: (Controller<DeserializeGuard<CertificatePolicy>>, SyncFlag),
    pub(super) wakes: CertificateWakes,
    pub(super) namespaces: F,
}

/// Follows the policy and namespace watches into `policies`.
pub(super) fn follow(
    watches: &Watches,
    policies: Policies,
    certificates: Store<CachedCertificate>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Followed<impl std::future::Future<Output = ()> + Send + 'static> {
    let (wake, wakes) = unbounded();
    let (cache, events) = watches.cached(
        "certificatepolicies",
        Api::<DeserializeGuard<CertificatePolicy>>::all(watches.client.clone()),
        watcher::Config::default().any_semantic(),
        super::reconciles::trim_for_cache,
    );
    let (index, tell, by_policy) = (policies.clone(), wake.clone(), certificates.clone());
    let events = events.inspect(move |event| {
        let changed = index.observe(event);
        wake_for_policies(&tell, &by_policy, &changed);
    });
    let controller = controller(events, cache);
    let namespace_events = watches.watch(
        "policy namespaces",
        Api::<PartialObjectMeta<Namespace>>::all(watches.client.clone()),
        watcher::Config::default().any_semantic(),
    );
    let namespaces = namespace_events
        .events()
        .take_until(super::on_shutdown(shutdown))
        .for_each(move |event| {
            let changed = policies.observe_namespace(&event);
            if !changed.is_empty() && policies.reads_labels() {
                for cert in certificates.state().iter() {
                    if cert.issuer_ref().is_some()
                        && changed
                            .iter()
                            .any(|n| cert.meta().namespace.as_deref() == Some(n))
                    {
                        let _ = wake.unbounded_send(super::certificates::cached_ref(cert));
                    }
                }
            }
            async {}
        });
    Followed {
        controller,
        wakes,
        namespaces,
    }
}

/// Wakes the Certificates whose issuer a changed policy (as it was, or as it is) guards.
fn wake_for_policies(
    wake: &UnboundedSender<ObjectRef<CachedCertificate>>,
    certificates: &Store<CachedCertificate>,
    changed: &Changed,
) {
    if changed.0.is_empty() {
        return;
    }
    for cert in certificates.state().iter() {
        let Some(issuer) = cert.issuer_ref() else { continue };
        let namespace = cert.meta().namespace.as_deref().unwrap_or_default();
        let concerned = changed.0.iter().any(|p| {
            p.selector.selects_issuer(issuer.kind(), issuer.name())
                && p.selector.selects_namespace(namespace, None) != Some(false)
        });
        if concerned {
            // The controller may be gone (shutdown): nobody left to wake.
            let _ = wake.unbounded_send(super::certificates::cached_ref(cert));
        }
    }
}

/// Runs the policy controller until shutdown: it writes each policy's Ready condition.
pub(super) fn run(
    wiring: &Wiring,
    (policies, own_cache): (Controller<DeserializeGuard<CertificatePolicy>>, SyncFlag),
) -> impl std::future::Future<Output = ()> + use<> {
    let ctx = wiring.ctx.clone();
    let policies = policies
        .with_config(wiring.config.clone())
        .graceful_shutdown_on(wiring.on_shutdown());
    let wiring = wiring.clone();
    async move {
        let run = policies
            .run(
                reconcile,
                error_policy::<DeserializeGuard<CertificatePolicy>>,
                ctx,
            )
            .for_each(|_| async {});
        wiring.run_controller(own_cache, run).await;
    }
}

async fn reconcile(
    guard: Arc<DeserializeGuard<CertificatePolicy>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let run = write_status(guard.clone(), ctx.clone());
    observed(ControllerKind::CertificatePolicy, guard.as_ref(), &ctx, run).await
}

/// Writes the policy's Ready condition when it says something new, with a Warning Event when
/// the policy cannot be read.
async fn write_status(
    guard: Arc<DeserializeGuard<CertificatePolicy>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let name = guard.name_any();
    let Some(compiled) = ctx.policies.get(&name) else {
        return Ok(Action::await_change());
    };
    let generation = guard.meta().generation;
    let (status, why, message) = match &compiled.rules {
        Ok(_) => (
            ConditionStatus::True,
            reason::VALID,
            "every pattern and rule parses".to_owned(),
        ),
        Err(why) => (
            ConditionStatus::False,
            reason::INVALID,
            format!("{why}; the policy allows nothing"),
        ),
    };
    let current = match &guard.0 {
        Ok(policy) => policy.status.clone().unwrap_or_default().conditions,
        Err(_) => Vec::new(),
    };
    let existing = find_condition(&current, "Ready");
    let unchanged = existing.is_some_and(|c| {
        c.status == status.as_str()
            && c.reason == why
            && c.message == message
            && c.observed_generation == generation
    });
    if unchanged {
        return Ok(Action::await_change());
    }
    let mut ready = condition("Ready", status, why, message.clone(), generation, ctx.now());
    if let Some(existing) = existing
        && existing.status == ready.status
    {
        ready.last_transition_time = existing.last_transition_time.clone();
    }
    let patch = serde_json::json!({
        "apiVersion": CertificatePolicy::api_version(&()),
        "kind": "CertificatePolicy",
        "status": { "conditions": [ready] },
    });
    Api::<CertificatePolicy>::all(ctx.client.clone())
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| Error::PatchStatus {
            kind: "CertificatePolicy",
            object: name.clone(),
            source,
        })?;
    match status {
        ConditionStatus::True => info!(policy = %name, "policy accepted"),
        _ => {
            warn!(policy = %name, %message, "policy cannot be read; it allows nothing");
            let regarding = ObjectReference {
                api_version: Some(CertificatePolicy::api_version(&()).into_owned()),
                kind: Some("CertificatePolicy".into()),
                name: Some(name),
                uid: guard.meta().uid.clone(),
                ..ObjectReference::default()
            };
            events::publish(&ctx, events::not_ready(why, &message), &regarding).await;
        }
    }
    Ok(Action::await_change())
}
