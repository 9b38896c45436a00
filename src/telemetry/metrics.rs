//! The Prometheus metrics of SPEC "Metrics". Per-object gauges are read at scrape time from
//! the controllers' caches, so the series of a deleted object disappear with it and a
//! reconcile never writes them; counters and histograms are recorded by the controllers.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kube::core::DeserializeGuard;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::api::{ClusterIssuer, Issuer, IssuerStatus, RotationPhase, ready_status};
use crate::certificate::cached::Summary;
use crate::context::Clock;
use kube::Resource;

/// Content type of the OpenMetrics text format that `encode` produces.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `controller` label of reconcile metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ControllerKind {
    Certificate,
    Issuer,
    ClusterIssuer,
    Bundle,
    CertificatePolicy,
}

impl ControllerKind {
    pub fn label(self) -> &'static str {
        match self {
            Self::Certificate => "certificate",
            Self::Issuer => "issuer",
            Self::ClusterIssuer => "clusterissuer",
            Self::Bundle => "bundle",
            Self::CertificatePolicy => "certificatepolicy",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct IssuanceLabels {
    issuer_kind: String,
    result: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReconcileLabels {
    controller: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CaSignatureLabels {
    issuer_kind: &'static str,
    namespace: String,
    issuer: String,
    what: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BackendLabels {
    backend: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ControllerLabels {
    controller: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct WatchLabels {
    /// The resource watched (plural, as in the API path): `certificates`, `secrets`, ...
    resource: String,
    /// Which of the controller's watches of that resource.
    watch: String,
}

type DurationHistograms = Family<ControllerLabels, Histogram, fn() -> Histogram>;

/// Latency buckets from 1 ms to about 33 s: signing takes microseconds (ECDSA) to a second
/// (RSA 4096); a reconcile adds API round trips.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Every metric certkeeper exports, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    caches: Arc<RwLock<Caches>>,
    issuance: Family<IssuanceLabels, Counter>,
    issuance_duration: Histogram,
    reconciles: Family<ReconcileLabels, Counter>,
    reconcile_duration: DurationHistograms,
    watch_errors: Family<WatchLabels, Counter>,
    ca_signatures: Family<CaSignatureLabels, Counter>,
    ca_sign_duration: Family<BackendLabels, Histogram>,
    inventory: Arc<RwLock<Option<InventoryView>>>,
    /// The length of the last /metrics text.
    last_scrape_len: std::sync::atomic::AtomicUsize,
}

/// What the inventory gauges read: the inventory of the term that leads, and the remaining
/// validity under which a certificate counts as expiring (the longest warning threshold).
#[derive(Clone, Debug)]
pub struct InventoryView {
    pub inventory: Arc<crate::inventory::Inventory>,
    pub expiring_within: jiff::SignedDuration,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The caches the per-object gauges are read from.
#[derive(Clone)]
pub struct Caches {
    pub certificates: Store<crate::certificate::cached::CachedCertificate>,
    pub issuers: Store<DeserializeGuard<Issuer>>,
    pub cluster_issuers: Store<DeserializeGuard<ClusterIssuer>>,
    /// The CertificateRevocation records, and the namespace a ClusterIssuer's live in.
    pub revocations: crate::cluster::revocations::Revocations,
    pub cluster_resource_namespace: String,
    pub clock: Clock,
}

impl Metrics {
    pub fn new(caches: Caches) -> Self {
        let mut registry = Registry::default();
        let issuance = Family::<IssuanceLabels, Counter>::default();
        registry.register(
            "certkeeper_issuance",
            "Certificate issuance attempts, by issuer kind and result (success, failure, denied)",
            issuance.clone(),
        );
        let issuance_duration = duration_histogram();
        registry.register_with_unit(
            "certkeeper_issuance_duration",
            "Time to issue one certificate: key generation, signing and the Secret write",
            Unit::Seconds,
            issuance_duration.clone(),
        );
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "certkeeper_reconcile",
            "Reconciles, by controller and result (success, error)",
            reconciles.clone(),
        );
        let reconcile_duration: DurationHistograms = Family::new_with_constructor(duration_histogram);
        registry.register_with_unit(
            "certkeeper_reconcile_duration",
            "Time one reconcile takes, by controller",
            Unit::Seconds,
            reconcile_duration.clone(),
        );
        let watch_errors = Family::<WatchLabels, Counter>::default();
        registry.register(
            "certkeeper_watch_errors",
            "Watch failures (a list or watch refused, broken or expired), by resource and watch; each is retried by its watch alone",
            watch_errors.clone(),
        );
        let ca_signatures = Family::<CaSignatureLabels, Counter>::default();
        registry.register(
            "certkeeper_ca_signatures",
            "Signatures made with a CA issuer's key, by issuer (issuer_kind, namespace: empty for a ClusterIssuer, issuer), what was signed (certificate, crl, ocsp) and result",
            ca_signatures.clone(),
        );
        let ca_sign_duration: Family<BackendLabels, Histogram> =
            Family::new_with_constructor(duration_histogram);
        registry.register_with_unit(
            "certkeeper_ca_sign_duration",
            "Time one signature with a CA issuer's key takes, by where the key is",
            Unit::Seconds,
            ca_sign_duration.clone(),
        );
        // Every counter series exists from the start at 0: one born at 1 shows no `increase()`,
        // so the first failure after a restart would slip past the IssuanceFailing alert.
        for issuer_kind in ["Issuer", "ClusterIssuer"] {
            for result in ["success", "failure"] {
                drop(issuance.get_or_create(&IssuanceLabels {
                    issuer_kind: issuer_kind.to_owned(),
                    result,
                }));
            }
        }
        for controller in [
            ControllerKind::Certificate,
            ControllerKind::Issuer,
            ControllerKind::ClusterIssuer,
            ControllerKind::Bundle,
            ControllerKind::CertificatePolicy,
        ] {
            for result in ["success", "error"] {
                drop(reconciles.get_or_create(&ReconcileLabels {
                    controller: controller.label(),
                    result,
                }));
            }
        }
        let caches = Arc::new(RwLock::new(caches));
        registry.register_collector(Box::new(ObjectGauges(caches.clone())));
        let inventory = Arc::new(RwLock::new(None));
        registry.register_collector(Box::new(InventoryGauges {
            caches: caches.clone(),
            inventory: inventory.clone(),
        }));
        Self {
            registry,
            caches,
            issuance,
            issuance_duration,
            reconciles,
            reconcile_duration,
            watch_errors,
            ca_signatures,
            ca_sign_duration,
            inventory,
            last_scrape_len: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// One signature with a CA issuer's key (`telemetry::audit`).
    pub fn ca_signature(
        &self,
        issuer: &crate::telemetry::audit::IssuerId,
        what: &'static str,
        backend: &'static str,
        success: bool,
        elapsed: Duration,
    ) {
        let result = if success { "success" } else { "failure" };
        self.ca_signatures
            .get_or_create(&CaSignatureLabels {
                issuer_kind: issuer.kind,
                namespace: issuer.namespace.clone(),
                issuer: issuer.name.clone(),
                what,
                result,
            })
            .inc();
        self.ca_sign_duration
            .get_or_create(&BackendLabels { backend })
            .observe(elapsed.as_secs_f64());
    }

    /// Reads the inventory gauges from `view` from now on (None: no inventory, or standing by).
    pub fn observe_inventory(&self, view: Option<InventoryView>) {
        *self.inventory.write().unwrap_or_else(|p| p.into_inner()) = view;
    }

    /// Reads the per-object gauges from `caches` from now on: those of a new leadership term,
    /// or empty ones while standing by (only the leader reports objects).
    pub fn observe(&self, caches: Caches) {
        *self.caches.write().unwrap_or_else(|p| p.into_inner()) = caches;
    }

    /// One issuance attempt finished after `elapsed`.
    pub fn issuance(&self, issuer_kind: &str, success: bool, elapsed: Duration) {
        self.issuance
            .get_or_create(&IssuanceLabels {
                issuer_kind: issuer_kind.to_owned(),
                result: if success { "success" } else { "failure" },
            })
            .inc();
        if success {
            self.issuance_duration.observe(elapsed.as_secs_f64());
        }
    }

    /// An issuance refused by the issuance policy (once per distinct denial of a Certificate).
    pub fn issuance_denied(&self, issuer_kind: &str) {
        self.issuance
            .get_or_create(&IssuanceLabels {
                issuer_kind: issuer_kind.to_owned(),
                result: "denied",
            })
            .inc();
    }

    /// One reconcile of `controller` finished after `elapsed`.
    pub fn reconcile(&self, controller: ControllerKind, success: bool, elapsed: Duration) {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                controller: controller.label(),
                result: if success { "success" } else { "error" },
            })
            .inc();
        self.reconcile_duration
            .get_or_create(&ControllerLabels {
                controller: controller.label(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// A watch of `resource` named `watch` started: its error series exists from now on, at 0.
    pub fn watch_started(&self, resource: &str, watch: &str) {
        drop(self.watch_errors.get_or_create(&WatchLabels {
            resource: resource.to_owned(),
            watch: watch.to_owned(),
        }));
    }

    /// The watch of `resource` named `watch` failed once.
    pub fn watch_error(&self, resource: &str, watch: &str) {
        self.watch_errors
            .get_or_create(&WatchLabels {
                resource: resource.to_owned(),
                watch: watch.to_owned(),
            })
            .inc();
    }

    /// The exposition in OpenMetrics text format.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        // Sized from the last scrape: a text of many MiB grown by doubling would hold the old
        // buffer and one twice as large at once.
        let last = self.last_scrape_len.load(std::sync::atomic::Ordering::Relaxed);
        let mut out = String::with_capacity(last + last / 16);
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        self.last_scrape_len
            .store(out.len(), std::sync::atomic::Ordering::Relaxed);
        Ok(out)
    }
}

/// The gauges derived from the cached objects, computed at each scrape.
struct ObjectGauges(Arc<RwLock<Caches>>);

impl fmt::Debug for ObjectGauges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ObjectGauges")
    }
}

const CONDITIONS: [&str; 3] = ["True", "False", "Unknown"];
/// The values of `certkeeper_issuer_rotation_phase`'s `phase` label.
const ROTATION_PHASES: [&str; 4] = ["None", "Distributing", "Reissuing", "Retiring"];

/// Writes one gauge family: a descriptor, then one sample per `(labels, value)`.
fn gauge_family<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    samples: impl Iterator<Item = (Vec<(&'a str, &'a str)>, i64)>,
) -> fmt::Result {
    let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, value) in samples {
        // An unlabelled sample is written bare: `name 1`, not `name{} 1`.
        if labels.is_empty() {
            ConstGauge::new(value).encode(family)?;
            break;
        }
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// One issuer as the gauges see it.
struct IssuerRow<'a> {
    namespace: &'a str,
    name: &'a str,
    kind: &'static str,
    status: Option<&'a IssuerStatus>,
    /// A CA issuer, which publishes a CRL.
    ca: bool,
}

/// A readable Certificate, as the metrics read it from the cache.
struct Row<'a> {
    namespace: &'a str,
    name: &'a str,
    issuer: &'a crate::certificate::cached::CachedIssuerRef,
    summary: &'a Summary,
}

fn cert_labels<'a>(c: &Row<'a>) -> Vec<(&'a str, &'a str)> {
    vec![
        ("namespace", c.namespace),
        ("name", c.name),
        ("issuer_name", c.issuer.name()),
        ("issuer_kind", c.issuer.kind()),
    ]
}

fn issuer_labels<'a>(r: &IssuerRow<'a>) -> Vec<(&'a str, &'a str)> {
    vec![("namespace", r.namespace), ("name", r.name), ("kind", r.kind)]
}

impl Collector for ObjectGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let caches = self.0.read().unwrap_or_else(|p| p.into_inner()).clone();
        let caches = &caches;
        let cached = caches.certificates.state();
        // What the cache projects of each readable Certificate: its issuer and status times.
        let certificates: Vec<Row> = cached
            .iter()
            .filter_map(|c| {
                Some(Row {
                    namespace: c.meta().namespace.as_deref().unwrap_or_default(),
                    name: c.meta().name.as_deref().unwrap_or_default(),
                    issuer: c.issuer_ref()?,
                    summary: c.summary()?,
                })
            })
            .collect();
        // A Certificate the controller cannot read is not Ready; its issuer is unknown.
        let unreadable = cached.iter().filter(|c| c.invalid().is_some()).map(|invalid| {
            vec![
                (
                    "namespace",
                    invalid.meta().namespace.as_deref().unwrap_or_default(),
                ),
                ("name", invalid.meta().name.as_deref().unwrap_or_default()),
                ("issuer_name", ""),
                ("issuer_kind", ""),
            ]
        });
        let unit = Some(&Unit::Seconds);
        type Pick = fn(&Summary) -> Option<jiff::Timestamp>;
        let times: [(&str, &str, Pick); 3] = [
            (
                "certkeeper_certificate_expiration_timestamp",
                "notAfter of the certificate in the Secret, as a Unix time",
                |s| s.not_after(),
            ),
            (
                "certkeeper_certificate_not_before_timestamp",
                "notBefore of the certificate in the Secret, as a Unix time",
                |s| s.not_before(),
            ),
            (
                "certkeeper_certificate_renewal_timestamp",
                "When the controller renews the certificate, as a Unix time",
                |s| s.renewal_time(),
            ),
        ];
        for (name, help, pick) in times {
            gauge_family(
                &mut encoder,
                name,
                help,
                unit,
                certificates.iter().filter_map(|c| {
                    let at = pick(c.summary)?;
                    Some((cert_labels(c), at.as_second()))
                }),
            )?;
        }
        gauge_family(
            &mut encoder,
            "certkeeper_certificate_ready_status",
            "The Certificate's Ready condition: 1 for its current status, 0 for the others",
            None,
            certificates
                .iter()
                .map(|c| (cert_labels(c), c.summary.ready()))
                .chain(unreadable.map(|labels| (labels, "False")))
                .flat_map(|(labels, current)| {
                    CONDITIONS.into_iter().map(move |condition| {
                        let mut labels = labels.clone();
                        labels.push(("condition", condition));
                        (labels, i64::from(condition == current))
                    })
                }),
        )?;

        let issuers = caches.issuers.state();
        let cluster_issuers = caches.cluster_issuers.state();
        let rows: Vec<IssuerRow> = issuers
            .iter()
            .filter_map(|g| g.0.as_ref().ok())
            .map(|i| IssuerRow {
                namespace: i.metadata.namespace.as_deref().unwrap_or_default(),
                name: i.metadata.name.as_deref().unwrap_or_default(),
                kind: "Issuer",
                status: i.status.as_ref(),
                ca: i.spec.ca.is_some(),
            })
            .chain(
                cluster_issuers
                    .iter()
                    .filter_map(|g| g.0.as_ref().ok())
                    .map(|i| IssuerRow {
                        namespace: "",
                        name: i.metadata.name.as_deref().unwrap_or_default(),
                        kind: "ClusterIssuer",
                        status: i.status.as_ref(),
                        ca: i.spec.issuer.ca.is_some(),
                    }),
            )
            .collect();
        gauge_family(
            &mut encoder,
            "certkeeper_issuer_ready_status",
            "The issuer's Ready condition: 1 for its current status, 0 for the others",
            None,
            rows.iter().flat_map(|r| {
                let current = r.status.map_or("Unknown", |s| ready_status(&s.conditions));
                CONDITIONS.into_iter().map(move |condition| {
                    let mut labels = issuer_labels(r);
                    labels.push(("condition", condition));
                    (labels, i64::from(condition == current))
                })
            }),
        )?;
        gauge_family(
            &mut encoder,
            "certkeeper_issuer_rotation_phase",
            "A CA issuer's rotation phase: 1 for the phase it is in (None when not rotating), 0 for the others",
            None,
            rows.iter()
                .filter(|r| r.status.is_some_and(|s| !s.trust_anchors.is_empty()))
                .flat_map(|r| {
                    let current = r
                        .status
                        .and_then(|s| s.rotation.as_ref())
                        .map_or("None", |rotation| match rotation.phase {
                            RotationPhase::Distributing => "Distributing",
                            RotationPhase::Reissuing => "Reissuing",
                            RotationPhase::Retiring => "Retiring",
                        });
                    ROTATION_PHASES.into_iter().map(move |phase| {
                        let mut labels = issuer_labels(r);
                        labels.push(("phase", phase));
                        (labels, i64::from(phase == current))
                    })
                }),
        )?;
        gauge_family(
            &mut encoder,
            "certkeeper_ca_expiration_timestamp",
            "notAfter of a CA issuer's own certificate, as a Unix time",
            unit,
            rows.iter().filter_map(|r| {
                let at = r.status?.ca_not_after.as_ref()?;
                Some((issuer_labels(r), at.0.as_second()))
            }),
        )?;
        let revoked = crate::cluster::revocations::counts(&caches.revocations);
        gauge_family(
            &mut encoder,
            "certkeeper_revoked_certificates",
            "Serials a CA issuer has revoked (its CertificateRevocation records), as its CRL lists them",
            None,
            rows.iter().filter(|r| r.ca).map(|r| {
                let records_namespace = match r.kind {
                    "ClusterIssuer" => caches.cluster_resource_namespace.as_str(),
                    _ => r.namespace,
                };
                let key = (records_namespace.to_owned(), r.kind.to_owned(), r.name.to_owned());
                (issuer_labels(r), revoked.get(&key).copied().unwrap_or(0))
            }),
        )?;
        gauge_family(
            &mut encoder,
            "certkeeper_clock_time",
            "The controller's clock, as a Unix time; compare with the expiration timestamps",
            unit,
            std::iter::once((Vec::new(), (caches.clock)().as_second())),
        )?;
        // The standard process metric, which the load tool samples for peak memory.
        if let Some(bytes) = resident_memory_bytes() {
            gauge_family(
                &mut encoder,
                "process_resident_memory",
                "Resident memory of the controller process",
                Some(&Unit::Bytes),
                std::iter::once((Vec::new(), bytes)),
            )?;
        }
        Ok(())
    }
}

/// The inventory's gauges (SPEC "Certificate inventory"): one series per certificate found,
/// and the counts by state. Written only while an inventory is observed.
struct InventoryGauges {
    caches: Arc<RwLock<Caches>>,
    inventory: Arc<RwLock<Option<InventoryView>>>,
}

impl fmt::Debug for InventoryGauges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InventoryGauges")
    }
}

impl Collector for InventoryGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let Some(view) = self.inventory.read().unwrap_or_else(|p| p.into_inner()).clone() else {
            return Ok(());
        };
        let clock = self
            .caches
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clock
            .clone();
        // Borrowed from the store, under its lock: a scrape copies no name.
        fn labels<'a>(r: &crate::inventory::store::RowRef<'a>) -> Vec<(&'static str, &'a str)> {
            vec![
                ("namespace", r.object.namespace.as_str()),
                ("kind", r.object.kind.label()),
                ("name", r.object.name.as_str()),
                ("key", r.key),
                ("fingerprint", &r.certificate.fingerprint),
                ("subject_cn", &r.certificate.subject_cn),
                ("issuer_cn", &r.certificate.issuer_cn),
                ("managed_by", r.managed_by.label()),
            ]
        }
        let unit = Some(&Unit::Seconds);
        type Pick = fn(&crate::inventory::store::KeptCertificate) -> i64;
        let times: [(&str, &str, Pick); 2] = [
            (
                "certkeeper_inventory_certificate_expiration_timestamp",
                "notAfter of a certificate found in a Secret or ConfigMap, as a Unix time",
                |c| c.not_after.as_second(),
            ),
            (
                "certkeeper_inventory_certificate_not_before_timestamp",
                "notBefore of a certificate found in a Secret or ConfigMap, as a Unix time",
                |c| c.not_before.as_second(),
            ),
        ];
        view.inventory.with_rows(|rows| {
            for (name, help, pick) in times {
                gauge_family(
                    &mut encoder,
                    name,
                    help,
                    unit,
                    rows.iter().map(|r| (labels(r), pick(r.certificate))),
                )?;
            }
            Ok::<(), fmt::Error>(())
        })?;
        let (counts, omitted) = view.inventory.counts(clock(), view.expiring_within);
        gauge_family(
            &mut encoder,
            "certkeeper_inventory_certificates",
            "Certificates found in Secrets and ConfigMaps, by state (valid, expiring: less than the longest warning threshold left, expired, unreadable: a value that could not be read)",
            None,
            crate::inventory::State::ALL.iter().map(|state| {
                let count = counts.get(state).copied().unwrap_or(0);
                (
                    vec![("state", state.label())],
                    i64::try_from(count).unwrap_or(i64::MAX),
                )
            }),
        )?;
        gauge_family(
            &mut encoder,
            "certkeeper_inventory_omitted_certificates",
            "Certificates beyond the 100 read of one object: counted, not reported",
            None,
            std::iter::once((Vec::new(), i64::try_from(omitted).unwrap_or(i64::MAX))),
        )?;
        Ok(())
    }
}

/// Resident set size from /proc (Linux, where the controller runs); None elsewhere. VmRSS is
/// in kB whatever the page size.
fn resident_memory_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
