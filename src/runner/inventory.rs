//! The inventory's wiring (SPEC "Certificate inventory"): three metadata-only watches
//! (`kubernetes.io/tls` Secrets by field selector, Secrets and ConfigMaps by the inventory
//! label), and, with `--inventory-namespaces`, one of the namespaces that selector picks. An
//! object is read (one GET) when a watch shows it at a version its facts were not read from,
//! a few reads at a time; certkeeper's own Secrets are not read: the certificate controller
//! tells the inventory what it wrote. Warnings due are sent every `WARNING_CHECK`, and as soon
//! as a read finds one.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc;
use futures::stream::BoxStream;
use jiff::SignedDuration;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use super::Wiring;
use crate::certificate::cached::CachedCertificate;
use crate::certificate::secret::LABEL_CERTIFICATE_NAME;
use crate::inventory::ledger::Ledger;
use crate::inventory::store::{LABELLED_CONFIGMAPS, LABELLED_SECRETS, Source, TLS_SECRETS};
use crate::inventory::{self, Inventory, Kind, ObjectKey, TLS_SECRET_TYPE, warnings};
use crate::telemetry::server::SyncFlag;

/// How often the warnings due are looked for.
pub(super) const WARNING_CHECK: Duration = Duration::from_secs(30);
/// The ledger of warnings sent forgets nothing until the controller has run this long.
const FORGET_NOT_BEFORE: SignedDuration = SignedDuration::from_hours(1);
/// Reads in flight at once: the inventory never competes with issuance for the API server.
const READS_AT_ONCE: usize = 4;
/// A read that failed is tried again after this long.
const READ_RETRY: Duration = Duration::from_secs(30);

/// What the inventory watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventorySettings {
    /// Label selector of the namespaces watched; None: every namespace.
    pub namespaces: Option<String>,
    /// Label selector of the Opaque Secrets and ConfigMaps read for PEM bundles.
    pub label: String,
    /// How long certkeeper's own Secret may go untold before it is read (`OWN_GRACE`).
    pub own_grace: Duration,
}

/// One watch's event, whichever kind it watches.
enum Seen {
    Init,
    Apply(ObjectMeta),
    Delete(ObjectMeta),
    InitDone,
}

fn seen<K>(event: watcher::Event<PartialObjectMeta<K>>) -> Seen {
    match event {
        watcher::Event::Init => Seen::Init,
        watcher::Event::InitApply(o) | watcher::Event::Apply(o) => Seen::Apply(o.metadata),
        watcher::Event::Delete(o) => Seen::Delete(o.metadata),
        watcher::Event::InitDone => Seen::InitDone,
    }
}

fn kind_of(source: Source) -> Kind {
    match source {
        LABELLED_CONFIGMAPS => Kind::ConfigMap,
        _ => Kind::Secret,
    }
}

fn key_of(source: Source, meta: &ObjectMeta) -> ObjectKey {
    ObjectKey {
        kind: kind_of(source),
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
    }
}

/// How often the inventory looks for certkeeper's own Secrets whose controller has not told
/// what they hold; one found twice in a row is read like any other: a Certificate that cannot be issued, or a Secret left
/// behind by a change of `secretName`, is told about by nobody.
pub const OWN_GRACE: Duration = Duration::from_secs(60);

/// The reads to make: each object once, however often it changes while queued.
#[derive(Clone)]
struct Reads {
    queued: Arc<Mutex<HashSet<ObjectKey>>>,
    send: mpsc::UnboundedSender<ObjectKey>,
}

impl Reads {
    fn queue(&self, key: ObjectKey) {
        let mut queued = self.queued.lock().unwrap_or_else(|p| p.into_inner());
        if queued.insert(key.clone()) {
            let _ = self.send.unbounded_send(key);
        }
    }

    fn started(&self, key: &ObjectKey) {
        self.queued.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

/// Whether `meta` is a Secret the certificate controller wrote for a Certificate that exists:
/// its facts come from that controller (which reads every Secret once after a start, and
/// tells what it writes).
fn told_by_certificates(certificates: &Store<CachedCertificate>, key: &ObjectKey, meta: &ObjectMeta) -> bool {
    let Some(certificate) = meta.labels.as_ref().and_then(|l| l.get(LABEL_CERTIFICATE_NAME)) else {
        return false;
    };
    key.kind == Kind::Secret
        && certificates
            .get(&ObjectRef::new(certificate).within(&key.namespace))
            .is_some()
}

/// Runs the inventory until shutdown.
pub(super) fn run(
    wiring: &Wiring,
    inventory: Arc<Inventory>,
    settings: InventorySettings,
    thresholds: Vec<SignedDuration>,
    (certificates, certificates_listed): (Store<CachedCertificate>, SyncFlag),
) -> impl std::future::Future<Output = ()> + use<> {
    let client = wiring.watches.client.clone();
    let watches = &wiring.watches;
    let tls = watches.watch(
        "inventory tls secrets",
        Api::<PartialObjectMeta<Secret>>::all(client.clone()),
        watcher::Config::default().fields(&format!("type={TLS_SECRET_TYPE}")),
    );
    let labelled_secrets = watches.watch(
        "inventory labelled secrets",
        Api::<PartialObjectMeta<Secret>>::all(client.clone()),
        watcher::Config::default().labels(&settings.label),
    );
    let labelled_maps = watches.watch(
        "inventory labelled configmaps",
        Api::<PartialObjectMeta<ConfigMap>>::all(client.clone()),
        watcher::Config::default().labels(&settings.label),
    );
    let objects: BoxStream<'static, (Source, Seen)> = futures::stream::select_all([
        tls.events().map(|e| (TLS_SECRETS, seen(e))).boxed(),
        labelled_secrets
            .events()
            .map(|e| (LABELLED_SECRETS, seen(e)))
            .boxed(),
        labelled_maps
            .events()
            .map(|e| (LABELLED_CONFIGMAPS, seen(e)))
            .boxed(),
    ])
    .boxed();
    let namespaces = settings.namespaces.as_ref().map(|selector| {
        watches
            .watch(
                "inventory namespaces",
                Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
                watcher::Config::default().labels(selector),
            )
            .events()
            .map(seen)
            .boxed()
    });
    let (send, reads) = mpsc::unbounded();
    let reads_queue = Reads {
        queued: Arc::default(),
        send,
    };
    let found = Arc::new(Notify::new());
    let wiring = wiring.clone();
    let clock = wiring.ctx.clock.clone();
    async move {
        // A Secret of certkeeper's own is told by the certificate controller, once its
        // Certificate is known: until the Certificates are listed, every one would be read.
        if !wiring.synced(&[certificates_listed]).await {
            return;
        }
        info!(namespaces = settings.namespaces.as_deref().unwrap_or("all"), label = %settings.label, "watching the certificate inventory");
        let follow = follow(
            (objects, namespaces),
            inventory.clone(),
            reads_queue.clone(),
            certificates,
            settings.own_grace,
        );
        let read = read_all(
            client.clone(),
            reads,
            reads_queue,
            inventory.clone(),
            found.clone(),
        );
        let ledger = Api::namespaced(client.clone(), &wiring.cluster_resource_namespace);
        let warn = send_warnings(client, inventory, thresholds, found, clock, ledger);
        tokio::select! {
            () = wiring.on_shutdown() => {},
            () = async { tokio::join!(follow, read, warn); } => {},
        }
    }
}

/// Follows the watches: keeps the store's metadata and the namespaces watched, queues the
/// reads.
async fn follow(
    (mut objects, namespaces): (
        BoxStream<'static, (Source, Seen)>,
        Option<BoxStream<'static, Seen>>,
    ),
    inventory: Arc<Inventory>,
    reads: Reads,
    certificates: Store<CachedCertificate>,
    own_grace: Duration,
) {
    // With a selector, no namespace is watched until the namespace watch shows it.
    let mut selected: HashSet<String> = HashSet::new();
    let mut selecting: Option<HashSet<String>> = None;
    if namespaces.is_some() {
        inventory.watch_namespaces(Some(HashSet::new()));
    }
    let mut namespaces = namespaces.unwrap_or_else(|| futures::stream::pending().boxed());
    let mut listing: HashMap<Source, HashSet<ObjectKey>> = HashMap::new();
    // certkeeper's own Secrets that their controller did not tell about are read after one
    // to two of these.
    let mut sweep = tokio::time::interval(own_grace);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let select = |selected: &HashSet<String>| {
        for key in inventory.watch_namespaces(Some(selected.clone())) {
            reads.queue(key);
        }
    };
    loop {
        tokio::select! {
            event = objects.next() => {
                let Some((source, event)) = event else { return };
                match event {
                    Seen::Init => {
                        listing.insert(source, HashSet::new());
                    }
                    Seen::InitDone => {
                        if let Some(listed) = listing.remove(&source) {
                            inventory.listed(source, &listed);
                        }
                    }
                    Seen::Apply(meta) => {
                        let key = key_of(source, &meta);
                        if let Some(listed) = listing.get_mut(&source) {
                            listed.insert(key.clone());
                        }
                        let changed = inventory.seen(&key, source, &inventory::seen_of(&meta));
                        if changed
                            && inventory.watches(&key.namespace)
                            && !told_by_certificates(&certificates, &key, &meta)
                        {
                            reads.queue(key);
                        }
                    }
                    Seen::Delete(meta) => inventory.gone(&key_of(source, &meta), source),
                }
            }
            _ = sweep.tick() => {
                for key in inventory.sweep_unread() {
                    debug!(kind = key.kind.label(), namespace = %key.namespace, name = %key.name,
                           "not told about, nor read yet; reading it");
                    reads.queue(key);
                }
            }
            event = namespaces.next() => {
                let Some(event) = event else { continue };
                match event {
                    Seen::Init => selecting = Some(HashSet::new()),
                    Seen::Apply(meta) => {
                        let name = meta.name.unwrap_or_default();
                        if let Some(listing) = &mut selecting {
                            listing.insert(name.clone());
                        }
                        if selected.insert(name) {
                            select(&selected);
                        }
                    }
                    Seen::Delete(meta) => {
                        if selected.remove(&meta.name.unwrap_or_default()) {
                            select(&selected);
                        }
                    }
                    Seen::InitDone => {
                        if let Some(listed) = selecting.take()
                            && listed != selected
                        {
                            selected = listed;
                            select(&selected);
                        }
                    }
                }
            }
        }
    }
}

/// Makes the queued reads, `READS_AT_ONCE` at a time, and records what they find.
async fn read_all(
    client: kube::Client,
    queued: mpsc::UnboundedReceiver<ObjectKey>,
    reads: Reads,
    inventory: Arc<Inventory>,
    found: Arc<Notify>,
) {
    queued
        .for_each_concurrent(READS_AT_ONCE, |key| {
            let (client, reads, inventory, found) = (client.clone(), reads.clone(), inventory.clone(), found.clone());
            async move {
                reads.started(&key);
                match read(&client, &key).await {
                    Ok(Some((seen, facts))) => {
                        for unreadable in &facts.unreadable {
                            debug!(kind = key.kind.label(), namespace = %key.namespace, name = %key.name,
                                   key = %unreadable.key, reason = %unreadable.reason, "certificate not readable");
                        }
                        inventory.record(&key, &seen, &facts);
                        found.notify_one();
                    }
                    // Deleted since: the watch says so too.
                    Ok(None) => {}
                    Err(error) => {
                        warn!(kind = key.kind.label(), namespace = %key.namespace, name = %key.name, %error,
                              "cannot read an object of the certificate inventory; trying again later");
                        tokio::spawn(async move {
                            tokio::time::sleep(READ_RETRY).await;
                            reads.queue(key);
                        });
                    }
                }
            }
        })
        .await;
}

/// One read: the object's metadata and the facts of its certificates.
async fn read(
    client: &kube::Client,
    key: &ObjectKey,
) -> Result<Option<(inventory::Seen, inventory::ObjectFacts)>, kube::Error> {
    Ok(match key.kind {
        Kind::Secret => Api::<Secret>::namespaced(client.clone(), &key.namespace)
            .get_opt(&key.name)
            .await?
            .map(|s| (inventory::seen_of(&s.metadata), inventory::read_secret(&s))),
        Kind::ConfigMap => Api::<ConfigMap>::namespaced(client.clone(), &key.namespace)
            .get_opt(&key.name)
            .await?
            .map(|m| (inventory::seen_of(&m.metadata), inventory::read_configmap(&m))),
    })
}

/// Sends the warnings due, every `WARNING_CHECK` and whenever a read found something, and
/// records them in the ledger (`inventory::ledger`), so that a controller restarted after the
/// API server deleted their Events (`--event-ttl`) does not send them again. Until the ledger
/// is read, warnings go out all the same (their Event names keep them from repeating within
/// the TTL), and it is not written: what it held is never lost to a write made without it.
async fn send_warnings(
    client: kube::Client,
    inventory: Arc<Inventory>,
    thresholds: Vec<SignedDuration>,
    found: Arc<Notify>,
    clock: crate::context::Clock,
    at: Api<ConfigMap>,
) {
    let mut ledger = Ledger::default();
    let ledger_at = format!(
        "{}/{}",
        at.namespace().unwrap_or_default(),
        inventory::ledger::NAME
    );
    let started = clock();
    let mut loaded = false;
    let mut unsaved = false;
    loop {
        if !loaded {
            match inventory::ledger::load(&at).await {
                Ok(read) => {
                    debug!(warnings = read.len(), "expiry warnings sent before read");
                    ledger.merge(read);
                    loaded = true;
                }
                Err(error) => {
                    warn!(configmap = %ledger_at,
                          %error, "cannot read the expiry warnings sent before; trying again later");
                }
            }
        }
        let now = clock();
        for warning in inventory.due_warnings(&thresholds, now) {
            if ledger.contains(warning.hash) {
                inventory.sent(&warning);
                continue;
            }
            match warnings::publish(&client, &warning, now).await {
                Ok(created) => {
                    if created {
                        info!(kind = warning.object.kind.label(), namespace = %warning.object.namespace,
                              name = %warning.object.name, reason = warning.reason, "certificate expiry warning sent");
                    }
                    inventory.sent(&warning);
                    unsaved |= ledger.insert(warning.hash, warning.not_after);
                }
                // Tried again at the next look; the others go out meanwhile.
                Err(error) => {
                    warn!(kind = warning.object.kind.label(), namespace = %warning.object.namespace,
                          name = %warning.object.name, %error, "cannot send an expiry warning; trying again later");
                }
            }
        }
        if loaded {
            // Only once every object has surely been read again since the start: until then
            // a warning no object holds may be about one not read yet.
            if now.duration_since(started) >= FORGET_NOT_BEFORE {
                unsaved |= ledger.prune(now, || inventory.sent_hashes());
            }
            if unsaved {
                match inventory::ledger::save(&at, &ledger).await {
                    Ok(()) => unsaved = false,
                    Err(error) => {
                        warn!(configmap = %ledger_at,
                              %error, "cannot record the expiry warnings sent; trying again later");
                    }
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(WARNING_CHECK) => {},
            () = found.notified() => {
                // Reads come in bursts: one look after the burst.
                tokio::time::sleep(Duration::from_secs(1)).await;
            },
        }
    }
}
