//! The one way the controller watches the API server. `Watches::watch` and `Watches::cached`
//! give every watch the same backoff (`retry.rs`, per watch), the same error handling (logged,
//! counted in `certkeeper_watch_errors_total`, reported to `/readyz`, then dropped) and a sync
//! flag. What comes out, a `Watched`, carries no errors: a Controller fed from it cannot be
//! paused by one. (kube's `Controller::run` wraps all of a controller's triggers in one
//! `StreamBackoff`, so one watch's error would stop every input; `controller` also sets that
//! backoff to one that never pauses, as a second guard.)

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use kube::api::Api;
use kube::runtime::controller::Controller;
use kube::runtime::reflector::{self, Store};
use kube::runtime::utils::Backoff;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use tracing::{info, warn};

use super::retry::watch_backoff;
use crate::cluster::ObjectKey;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::server::{Readiness, SyncFlag, WatchHealth};

/// What a watch can watch and cache.
pub(super) trait Watchable:
    Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static
{
}

impl<K> Watchable for K where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// Makes the watches of one leadership term (or of the process), each registered with
/// `/readyz` and the metrics.
#[derive(Clone)]
pub(super) struct Watches {
    pub(super) client: Client,
    pub(super) readiness: Arc<Readiness>,
    pub(super) metrics: Arc<Metrics>,
}

/// The events of one watch, its errors already handled: all a controller may be fed.
pub(super) struct Watched<K> {
    events: BoxStream<'static, watcher::Event<K>>,
    synced: SyncFlag,
}

impl Watches {
    /// A watch of `api` named `name` (in logs, metrics and `/readyz`), its objects cached
    /// nowhere. Its sync flag is set once it has listed every object.
    pub(super) fn watch<K: Watchable>(&self, name: &str, api: Api<K>, config: watcher::Config) -> Watched<K> {
        let (synced, health) = self.readiness.watch_with_health(name);
        let events = watcher(api, config).backoff(watch_backoff());
        self.guard::<K>(name, events, synced, health)
    }

    /// A watch of `api` whose objects, trimmed by `trim`, also fill a cache read by reconciles.
    /// Its sync flag is set once that cache holds the first complete list.
    pub(super) fn cached<K: Watchable>(
        &self,
        name: &str,
        api: Api<K>,
        config: watcher::Config,
        trim: fn(&mut K),
    ) -> (Store<K>, Watched<K>) {
        let (synced, health) = self.readiness.watch_with_health(name);
        let (reader, writer) = reflector::store();
        let events = watcher(api, config)
            .backoff(watch_backoff())
            .modify(trim)
            .reflect(writer);
        (reader, self.guard::<K>(name, events, synced, health))
    }

    /// A watch every replica runs for the whole process, leading or not (the PKI endpoint's):
    /// counted and reported to `/readyz` while failing, but no part of a term's sync.
    pub(super) fn process_watch<K: Watchable>(
        &self,
        name: &str,
        api: Api<K>,
        config: watcher::Config,
    ) -> Watched<K> {
        let health = self.readiness.process_watch(name);
        let events = watcher(api, config).backoff(watch_backoff());
        self.guard::<K>(name, events, SyncFlag::default(), health)
    }

    /// Handles the errors of `events`: each is logged, counted and reported, then dropped
    /// (the watch's own backoff has already paced the retry). Marks `synced` after the first
    /// complete list.
    fn guard<K: Resource<DynamicType = ()> + Send + 'static>(
        &self,
        name: &str,
        events: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
        synced: SyncFlag,
        health: WatchHealth,
    ) -> Watched<K> {
        let resource = K::plural(&()).into_owned();
        let name = name.to_owned();
        self.metrics.watch_started(&resource, &name);
        let metrics = self.metrics.clone();
        let flag = synced.clone();
        let events = events
            .filter_map(move |event| {
                let event = match event {
                    Ok(event) => {
                        match &event {
                            watcher::Event::InitDone => {
                                flag.synced();
                                health.progressed(true);
                            }
                            // `Init` comes before the list is even asked for: no news.
                            watcher::Event::Init => {}
                            watcher::Event::InitApply(_)
                            | watcher::Event::Apply(_)
                            | watcher::Event::Delete(_) => health.progressed(false),
                        }
                        Some(event)
                    }
                    Err(error) => {
                        let listing = matches!(error, watcher::Error::InitialListFailed(_));
                        health.failed(listing);
                        metrics.watch_error(&resource, &name);
                        // A watch expired (410) lists again: routine, unless it keeps
                        // happening, which the counter shows.
                        let expired = matches!(&error, watcher::Error::WatchError(status) if status.code == 410);
                        if expired {
                            info!(watch = %name, %resource, %error, "watch expired; listing again");
                        } else {
                            warn!(watch = %name, %resource, %error, "watch failed; retrying this watch alone");
                        }
                        None
                    }
                };
                futures::future::ready(event)
            })
            .boxed();
        Watched { events, synced }
    }
}

impl<K: Send + 'static> Watched<K> {
    /// Set once the watch has listed every object (and filled its cache, if it has one).
    pub(super) fn synced(&self) -> SyncFlag {
        self.synced.clone()
    }

    /// Calls `f` on each event as it passes.
    pub(super) fn inspect(self, f: impl Fn(&watcher::Event<K>) + Send + 'static) -> Self {
        Self {
            events: self.events.inspect(f).boxed(),
            synced: self.synced,
        }
    }

    /// The events themselves.
    pub(super) fn events(self) -> BoxStream<'static, watcher::Event<K>> {
        self.events
    }

    /// The objects added, changed or listed, in the form `Controller::for_stream` takes; never
    /// an error.
    pub(super) fn applied(self) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static {
        self.events.map(Ok).applied_objects()
    }

    /// The objects added, changed, listed or deleted, in the form `watches_stream` takes; never
    /// an error.
    pub(super) fn touched(self) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static {
        self.events.map(Ok).touched_objects()
    }
}

/// A controller of `K` over `watched`, serving from `cache`, whose trigger stream is never
/// paused (see the module); and the flag set once that cache has listed.
pub(super) fn controller<K: Watchable>(watched: Watched<K>, cache: Store<K>) -> (Controller<K>, SyncFlag)
where
    K::DynamicType: std::hash::Hash + Eq + Clone + Unpin,
{
    let synced = watched.synced();
    let controller = Controller::for_stream(watched.applied(), cache).trigger_backoff(NeverPause);
    (controller, synced)
}

/// A `Backoff` that never pauses and never gives up (`None` would end the trigger stream).
#[derive(Clone, Copy, Debug)]
pub(super) struct NeverPause;

impl Iterator for NeverPause {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl Backoff for NeverPause {
    fn reset(&mut self) {}
}

/// The objects (namespace and name) that `observe` picks out of `watched`'s events as needing
/// a look: a controller's trigger stream.
pub(crate) fn to_look_at<K: Send + 'static>(
    watched: Watched<K>,
    observe: impl Fn(&watcher::Event<K>) -> Vec<ObjectKey>,
) -> impl futures::Stream<Item = ObjectKey> {
    watched
        .events()
        .flat_map(move |event| futures::stream::iter(observe(&event)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::server::SyncFlag;
    use kube::runtime::reflector;

    /// What a controller is fed carries no error: each is counted per resource and watch,
    /// and reported to `/readyz` (three in a row: "cannot list"); the sync flag is set by the
    /// end of the first complete list.
    #[tokio::test]
    async fn watch_errors_are_counted_reported_and_never_passed_on() {
        use k8s_openapi::api::core::v1::Secret;
        let (client, _handle) = crate::testing::mock_client();
        let watches = Watches {
            client,
            readiness: Arc::default(),
            metrics: Arc::new(crate::testing::metrics(vec![], vec![], vec![])),
        };
        let (synced, health) = watches.readiness.watch_with_health("certificate secrets");
        let failed = || Err(watcher::Error::NoResourceVersion);
        let events = futures::stream::iter(vec![
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(Secret::default())),
            Ok(watcher::Event::InitDone),
            failed(),
            failed(),
            failed(),
        ]);
        let watched = watches.guard::<Secret>("certificate secrets", events, synced.clone(), health);
        let passed: Vec<_> = watched.events().collect().await;
        assert_eq!(passed.len(), 3, "an error was passed on: {passed:?}");
        assert!(synced.is_synced());
        let metrics = watches.metrics.encode().unwrap();
        assert!(
            metrics.contains(
                r#"certkeeper_watch_errors_total{resource="secrets",watch="certificate secrets"} 3"#
            ),
            "{metrics}"
        );
        assert_eq!(
            watches.readiness.check(),
            Err("cannot list: certificate secrets".into())
        );
    }

    #[test]
    fn a_controller_trigger_backoff_never_pauses_nor_gives_up() {
        let mut backoff = NeverPause;
        assert!(backoff.by_ref().take(1000).all(|wait| wait == Duration::ZERO));
        backoff.reset();
        assert_eq!(backoff.next(), Some(Duration::ZERO));
    }
    /// The upstream fault `SyncFlag` works around, as first reproduced outside the project:
    /// two tasks wait on one kube store; the writer lists; only one of them is woken. If this
    /// fails because both are woken, kube-runtime fixed it and `SyncFlag` may be retired.
    #[tokio::test(start_paused = true)]
    async fn kube_store_readiness_wakes_only_one_of_two_waiters() {
        use k8s_openapi::api::core::v1::ConfigMap;
        let (reader, mut writer) = reflector::store::<ConfigMap>();
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let reader = reader.clone();
                tokio::spawn(async move { reader.wait_until_ready().await })
            })
            .collect();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let woken = waiters.iter().filter(|w| w.is_finished()).count();
        assert_eq!(woken, 1, "kube's store readiness now wakes every waiter");
    }

    #[tokio::test(start_paused = true)]
    async fn a_sync_flag_wakes_every_waiter_and_later_ones_at_once() {
        let flag = SyncFlag::default();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let flag = flag.clone();
                tokio::spawn(async move { flag.wait().await })
            })
            .collect();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        flag.synced();
        for waiter in waiters {
            tokio::time::timeout(Duration::from_secs(2), waiter)
                .await
                .expect("a waiter was not woken")
                .unwrap();
        }
        tokio::time::timeout(Duration::from_secs(2), flag.wait())
            .await
            .expect("a late waiter waits");
    }
}
