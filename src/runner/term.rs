//! One leadership term: the caches the controllers share, built once, and the controllers
//! over them (`certificates.rs`, `issuers.rs`, `bundles.rs`, `revocations.rs`), joined until
//! shutdown. Every watch is made by `watches.rs`.

use std::sync::Arc;

use kube::Client;
use kube::ResourceExt;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::controller::Config as ControllerConfig;
use kube::runtime::watcher;
use tokio::sync::watch;
use tracing::info;

use super::reconciles::trim_for_cache;
use super::watches::{Watches, controller};
use super::{Settings, bundles, certificates, inventory, issuers, on_shutdown, policies, revocations};
use crate::api::{Bundle, ClusterIssuer, Issuer};
use crate::certificate::cached::CachedCertificate;
use crate::certificate::verdict::Verdict;
use crate::cluster::WatchedCache;
use crate::context::Context;
use crate::issuance_policy::Policies;
use crate::revocation::PkiEndpoint;
use crate::telemetry::metrics::{Caches, Metrics};
use crate::telemetry::server::{Readiness, SyncFlag};

/// What one leadership term needs: everything to build the controllers afresh.
pub(super) struct Term {
    pub(super) client: Client,
    pub(super) settings: Settings,
    pub(super) cluster_resource_namespace: String,
    pub(super) readiness: Arc<Readiness>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) clock: crate::context::Clock,
    pub(super) shutdown: watch::Receiver<bool>,
    /// The PKI endpoint the issuer controllers publish CRLs and OCSP signers to.
    pub(super) pki: PkiEndpoint,
}

/// What every controller's wiring is given: the way to watch, the shared caches (in `ctx`),
/// the controllers' settings and the shutdown signal.
#[derive(Clone)]
pub(super) struct Wiring {
    pub(super) watches: Watches,
    pub(super) ctx: Arc<Context>,
    pub(super) config: ControllerConfig,
    pub(super) shutdown: watch::Receiver<bool>,
    pub(super) cluster_resource_namespace: String,
}

impl Wiring {
    /// Resolves on shutdown.
    pub(super) fn on_shutdown(&self) -> impl std::future::Future<Output = ()> + Send + Sync + 'static {
        on_shutdown(self.shutdown.clone())
    }

    /// Runs a controller (`run`) until it ends: on shutdown, once its running reconciles finish.
    /// kube holds a controller's reconciles until its own cache has listed (`own_cache`), and
    /// a controller shut down before that would wait for a list nobody makes any more: it is
    /// dropped at once instead (it has nothing running).
    pub(super) async fn run_controller(
        &self,
        own_cache: SyncFlag,
        run: impl std::future::Future<Output = ()>,
    ) {
        let unlisted_at_shutdown = async {
            self.on_shutdown().await;
            if own_cache.is_synced() {
                futures::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = run => {},
            () = unlisted_at_shutdown => {},
        }
    }

    /// Waits until every flag of `flags` is synced: `true`, or `false` if shutdown came first.
    pub(super) async fn synced(&self, flags: &[SyncFlag]) -> bool {
        let all = async {
            for flag in flags {
                flag.wait().await;
            }
        };
        tokio::select! {
            biased;
            () = self.on_shutdown() => false,
            () = all => true,
        }
    }
}

impl Term {
    /// Builds the shared caches and runs the four controllers over them until shutdown.
    pub(super) async fn lead(&self) {
        let settings = &self.settings;
        let crn = self.cluster_resource_namespace.clone();
        info!(cluster_resource_namespace = %crn, concurrency = settings.concurrency, "starting controllers");
        let watches = Watches {
            client: self.client.clone(),
            readiness: self.readiness.clone(),
            metrics: self.metrics.clone(),
        };
        let client = self.client.clone();
        let any = watcher::Config::default().any_semantic();

        // Each kind's own watch feeds both its controller and the cache every controller reads.
        // An issuer's events also wake its Certificates, once that cache holds the change:
        // a Certificate woken by its issuer never reads the issuer as it was before.
        let (issuer_changes, changed_issuers) = futures::channel::mpsc::unbounded();
        let (cache, events) = watches.cached(
            "issuers",
            Api::<DeserializeGuard<Issuer>>::all(client.clone()),
            any.clone(),
            trim_for_cache,
        );
        let tell = issuer_changes.clone();
        let events = events.inspect(move |event| certificates::announce(&tell, "Issuer", event));
        let (issuers, issuers_synced) = controller(events, cache);
        let (cache, events) = watches.cached(
            "clusterissuers",
            Api::<DeserializeGuard<ClusterIssuer>>::all(client.clone()),
            any.clone(),
            trim_for_cache,
        );
        let events =
            events.inspect(move |event| certificates::announce(&issuer_changes, "ClusterIssuer", event));
        let (cluster_issuers, cluster_issuers_synced) = controller(events, cache);
        // Verdicts of deleted Certificates are dropped with them.
        let verdicts: Arc<WatchedCache<Verdict>> = Arc::default();
        let forget = verdicts.clone();
        let (cache, events) = watches.cached(
            "certificates",
            Api::<CachedCertificate>::all(client.clone()),
            any.clone(),
            trim_for_cache,
        );
        let (certificates, certificates_synced) = controller(
            events.inspect(move |event| {
                if let watcher::Event::Delete(cert) = event {
                    forget.forget(&(cert.namespace().unwrap_or_default(), cert.name_any()));
                }
            }),
            cache,
        );
        let (revocations, revocations_synced, wakes, records) =
            revocations::follow(&watches, certificates.store(), crn.clone(), self.shutdown.clone());
        // Bundles: trust anchors distributed into namespaces. Issuers read their cache too: a
        // rotation waits until every Bundle sourcing the issuer holds both roots.
        let (cache, events) = watches.cached(
            "bundles",
            Api::<DeserializeGuard<Bundle>>::all(client.clone()),
            any,
            trim_for_cache,
        );
        let (bundles, bundles_synced) = controller(events, cache);

        // CertificatePolicies, compiled as their watch delivers them, with the namespaces' labels.
        let policy_index = Policies::unlisted(settings.require_policy);
        let followed = policies::follow(
            &watches,
            policy_index.clone(),
            certificates.store(),
            self.shutdown.clone(),
        );

        let mut ctx = Context::with_metrics(
            client.clone(),
            Caches {
                certificates: certificates.store(),
                issuers: issuers.store(),
                cluster_issuers: cluster_issuers.store(),
                revocations,
                cluster_resource_namespace: crn.clone(),
                clock: self.clock.clone(),
            },
            crn.clone(),
            settings.expiry_thresholds.clone(),
            self.metrics.clone(),
        );
        ctx.verdicts = verdicts.clone();
        ctx.rotation = settings.rotation;
        ctx.pki = self.pki.clone();
        ctx.bundles = bundles.store();
        ctx.policies = policy_index;
        ctx.pkcs11 = settings.pkcs11.clone();
        // The certificate inventory: every certificate in the cluster, not only certkeeper's.
        let inventory = settings.inventory.clone().map(|watched| {
            let inventory = Arc::new(crate::inventory::Inventory::default());
            self.metrics
                .observe_inventory(Some(crate::telemetry::metrics::InventoryView {
                    inventory: inventory.clone(),
                    expiring_within: settings
                        .expiry_thresholds
                        .iter()
                        .copied()
                        .max()
                        .unwrap_or_default(),
                }));
            (inventory, watched)
        });
        ctx.inventory = inventory.as_ref().map(|(inventory, _)| inventory.clone());
        let wiring = Wiring {
            watches,
            ctx: Arc::new(ctx),
            config: ControllerConfig::default().concurrency(settings.concurrency),
            shutdown: self.shutdown.clone(),
            cluster_resource_namespace: crn.clone(),
        };

        let bundles = wiring.run_controller(bundles_synced, bundles::run(&wiring, bundles));
        let issuers = issuers::run(
            &wiring,
            (issuers, issuers_synced.clone()),
            Api::all(client.clone()),
            "issuer CA secrets",
            wakes.issuers,
            revocations_synced.clone(),
        );
        let cluster_issuers = issuers::run(
            &wiring,
            (cluster_issuers, cluster_issuers_synced.clone()),
            Api::namespaced(client, &crn),
            "clusterissuer CA secrets",
            wakes.cluster_issuers,
            revocations_synced.clone(),
        );
        let policies_listed = followed.controller.1.clone();
        let policy_controller = policies::run(&wiring, followed.controller);
        // Certificates are judged against their issuers, the revoked serials and the policies.
        let certificates = certificates::run(
            &wiring,
            (certificates, certificates_synced.clone()),
            verdicts,
            wakes.certificates,
            changed_issuers,
            (followed.wakes, policies_listed),
            vec![issuers_synced, cluster_issuers_synced, revocations_synced],
        );
        let inventory = match inventory {
            Some((inventory, watched)) => futures::future::Either::Left(inventory::run(
                &wiring,
                inventory,
                watched,
                settings.expiry_thresholds.clone(),
                (wiring.ctx.certificates.clone(), certificates_synced.clone()),
            )),
            None => futures::future::Either::Right(futures::future::ready(())),
        };
        tokio::join!(
            inventory,
            issuers,
            cluster_issuers,
            certificates,
            bundles,
            records,
            policy_controller,
            followed.namespaces
        );
        info!("controllers stopped");
    }
}
