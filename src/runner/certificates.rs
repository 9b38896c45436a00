//! The certificate controller's wiring: what wakes a Certificate. Its own watch (the shared
//! Certificate cache), its Secret (label-selected, metadata only), the Secrets its keystore
//! passwords are read from (every Secret's metadata, mapped through `PasswordRefs`), the issuer it references
//! (told by the issuer caches' own watches, after the cache holds the change), and a
//! revocation record revoking its certificate. It starts
//! once the issuer and record caches are full: a Certificate is judged against them.

use std::sync::Arc;

use futures::StreamExt;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use tracing::info;

use super::Wiring;
use super::deadlines::Deadlines;
use super::reconciles::{error_policy, observed};
use super::watches::to_look_at;
use crate::certificate::cached::CachedCertificate;
use crate::certificate::secret::{LABEL_CERTIFICATE_NAME, certificate_of};
use crate::certificate::verdict::Verdict;
use crate::cluster::WatchedCache;
use crate::context::Context;
use crate::error::Error;
use crate::telemetry::metrics::ControllerKind;
use crate::telemetry::server::SyncFlag;

/// Reconciles one Certificate; the wait it asks for goes to `deadlines`, not to kube's
/// scheduler (see `deadlines.rs`).
async fn reconcile(
    obj: Arc<CachedCertificate>,
    ctx: Arc<Context>,
    deadlines: Arc<Deadlines>,
) -> Result<Action, Error> {
    // Decoded for this reconcile only: the cache keeps the compact form.
    let run = crate::certificate::reconcile::reconcile(Arc::new(obj.guard()), ctx.clone());
    let next = observed(ControllerKind::Certificate, obj.as_ref(), &ctx, run).await?;
    let (namespace, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
    let at = next
        .requeue_after()
        .map(|wait| tokio::time::Instant::now() + wait);
    deadlines.set((&namespace, &name), at);
    Ok(Action::await_change())
}

/// Runs the certificate controller `certificates` (over the shared Certificate watch) until
/// shutdown. `records` are the Certificates revocation records wake; `judged_against` the
/// caches to wait for. A Secret event that shows the version a verdict was reached on (the
/// echo of the controller's own apply) wakes nobody.
pub(super) fn run(
    wiring: &Wiring,
    (certificates, own_cache): (Controller<CachedCertificate>, SyncFlag),
    verdicts: Arc<WatchedCache<Verdict>>,
    records: UnboundedReceiver<ObjectRef<CachedCertificate>>,
    issuers: UnboundedReceiver<IssuerChanged>,
    (policy_wakes, policies_listed): (UnboundedReceiver<ObjectRef<CachedCertificate>>, SyncFlag),
    judged_against: Vec<SyncFlag>,
) -> impl std::future::Future<Output = ()> + use<> {
    let client = wiring.watches.client.clone();
    let store = certificates.store();
    let secrets = wiring.watches.watch(
        "certificate secrets",
        Api::<PartialObjectMeta<Secret>>::all(client.clone()),
        watcher::Config::default().labels(LABEL_CERTIFICATE_NAME),
    );
    let secret_changes = to_look_at(secrets, move |event| verdicts.observe(event, certificate_of));
    // Keystore passwords live in Secrets of the users' own (no label): every Secret's metadata
    // is watched, and a change wakes the Certificates that read it.
    let refs = wiring.ctx.password_refs.clone();
    let passwords = wiring.watches.watch(
        "keystore password secrets",
        Api::<PartialObjectMeta<Secret>>::all(client.clone()),
        watcher::Config::default(),
    );
    let password_changes = to_look_at(passwords, move |event| password_readers(&refs, event));
    let by_issuer = store;
    let deadlines = Arc::new(Deadlines::default());
    let certificates = certificates
        .reconcile_on(secret_changes.map(|(namespace, name)| ObjectRef::new(&name).within(&namespace)))
        .reconcile_on(password_changes.map(|(namespace, name)| ObjectRef::new(&name).within(&namespace)))
        .reconcile_on(records)
        .reconcile_on(policy_wakes)
        .reconcile_on(
            deadlines
                .clone()
                .due()
                .map(|(namespace, name)| ObjectRef::new(&name).within(&namespace)),
        )
        .reconcile_on(issuers.flat_map(move |changed| {
            futures::stream::iter(certificates_for_issuer(
                &by_issuer,
                changed.kind,
                &changed.name,
                changed.namespace.as_deref(),
            ))
        }))
        .with_config(wiring.config.clone())
        .graceful_shutdown_on(wiring.on_shutdown());
    let ctx = wiring.ctx.clone();
    let wiring = wiring.clone();
    async move {
        if !wiring.synced(&judged_against).await {
            return;
        }
        // Judged against the policies too, but a policy watch that cannot list (the CRD
        // missing, forbidden) must not keep every Certificate silent: past the grace, those of
        // issuers a policy could guard report PolicyUnavailable.
        let listed = tokio::time::timeout(POLICY_LIST_GRACE, wiring.synced(&[policies_listed])).await;
        if listed == Ok(false) {
            return;
        }
        info!("issuer caches synced; reconciling certificates");
        let run = certificates
            .run(
                move |obj, ctx| reconcile(obj, ctx, deadlines.clone()),
                error_policy::<CachedCertificate>,
                ctx,
            )
            .for_each(|_| async {});
        wiring.run_controller(own_cache, run).await;
    }
}

/// The Certificates that read the keystore password Secret an event is about.
fn password_readers(
    refs: &crate::certificate::keystores::PasswordRefs,
    event: &watcher::Event<PartialObjectMeta<Secret>>,
) -> Vec<crate::cluster::ObjectKey> {
    let (watcher::Event::Apply(secret) | watcher::Event::InitApply(secret) | watcher::Event::Delete(secret)) =
        event
    else {
        return Vec::new();
    };
    let namespace = secret.namespace().unwrap_or_default();
    refs.readers(&namespace, &secret.name_any())
        .into_iter()
        .map(|certificate| (namespace.clone(), certificate))
        .collect()
}

/// How long the certificate controller waits for the CertificatePolicies to be listed before it
/// starts anyway (Certificates then report `PolicyUnavailable` until they are).
const POLICY_LIST_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// An issuer added, changed, listed or deleted, as the issuer cache now holds it.
#[derive(Debug)]
pub(super) struct IssuerChanged {
    kind: &'static str,
    name: String,
    namespace: Option<String>,
}

/// Tells the certificate controller of the issuer (of `kind`) an event of the issuer cache's
/// own watch is about.
pub(super) fn announce<K: Resource>(
    to: &UnboundedSender<IssuerChanged>,
    kind: &'static str,
    event: &watcher::Event<K>,
) {
    let (watcher::Event::Apply(issuer) | watcher::Event::InitApply(issuer) | watcher::Event::Delete(issuer)) =
        event
    else {
        return;
    };
    // The controller may be gone (shutdown): nobody left to wake.
    let _ = to.unbounded_send(IssuerChanged {
        kind,
        name: issuer.name_any(),
        namespace: issuer.namespace(),
    });
}

/// The Certificates that reference an issuer of `kind` named `name` (in `namespace` for an
/// Issuer): the ones to wake when the issuer changes.
pub fn certificates_for_issuer(
    certificates: &Store<CachedCertificate>,
    kind: &str,
    name: &str,
    namespace: Option<&str>,
) -> Vec<ObjectRef<CachedCertificate>> {
    certificates
        .state()
        .iter()
        .filter(|cert| cert.references(kind, name, namespace))
        .map(|cert| cached_ref(cert))
        .collect()
}

/// The cache key of a Certificate in the certificate controller.
pub(super) fn cached_ref(cert: &CachedCertificate) -> ObjectRef<CachedCertificate> {
    ObjectRef::new(&cert.name_any()).within(&cert.namespace().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{cached_store, certificate};

    /// The wait a reconcile asks for goes to the runner's schedule, not to kube's: kube is
    /// told to wait for a change, and the Certificate comes due from `deadlines` when the wait
    /// is over (here the 300 s recheck of a missing issuer).
    #[tokio::test(start_paused = true)]
    async fn the_wait_a_reconcile_asks_for_is_kept_by_the_deadlines() {
        use crate::testing::{answer_status, context, ts};
        use http::Method;
        let cert = certificate("web", "nowhere", &["web.apps.svc"]);
        let (ctx, mut api) = context(vec![], vec![], ts("2026-11-23T10:00:00Z"));
        let deadlines = Arc::new(Deadlines::default());
        let start = tokio::time::Instant::now();
        let task = tokio::spawn(reconcile(
            Arc::new(CachedCertificate::from(cert.clone())),
            ctx.clone(),
            deadlines.clone(),
        ));
        api.expect(Method::GET, "/api/v1/namespaces/apps/secrets/web-tls")
            .await
            .not_found();
        answer_status(
            api.expect(
                Method::PATCH,
                "/apis/certkeeper.io/v1/namespaces/apps/certificates/web/status",
            )
            .await,
            &cert,
        );
        api.expect_event("apps").await.echo();
        let action = task.await.unwrap().unwrap();
        assert_eq!(action, Action::await_change());
        let due = Box::pin(deadlines.due()).next().await;
        assert_eq!(due, Some(("apps".to_owned(), "web".to_owned())));
        assert_eq!(start.elapsed().as_secs(), 300);
    }

    #[test]
    fn issuer_change_wakes_exactly_the_certificates_that_reference_it() {
        let mut other_ns = certificate("c", "ca", &["c"]);
        other_ns.metadata.namespace = Some("elsewhere".into());
        let mut cluster = certificate("d", "ca", &["d"]);
        cluster.spec.issuer_ref.kind = Some("ClusterIssuer".into());
        let certs = cached_store(vec![
            certificate("a", "ca", &["a"]),
            certificate("b", "self", &["b"]),
            other_ns,
            cluster,
        ]);
        let woken = certificates_for_issuer(&certs, "Issuer", "ca", Some("apps"));
        assert_eq!(woken.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["a"]);
        let woken = certificates_for_issuer(&certs, "ClusterIssuer", "ca", None);
        assert_eq!(woken.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["d"]);
    }
}
