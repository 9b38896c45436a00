//! What every reconcile shares: the client, the one event recorder, the metrics, the issuer
//! caches, the clock and the settings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jiff::SignedDuration;
use kube::Client;
use kube::core::DeserializeGuard;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;

use crate::api::{Bundle, ClusterIssuer, Issuer};
use crate::certificate::verdict::Verdict;
use crate::cluster::WatchedCache;
use crate::cluster::ca::CaKeyPairs;
use crate::cluster::revocations::Revocations;
use crate::issuance_policy::Policies;
use crate::issuer::rotation::RotationSettings;
use crate::revocation::PkiEndpoint;
use crate::telemetry::metrics::{Caches, Metrics};

/// The field manager of every server-side apply certkeeper makes.
pub const FIELD_MANAGER: &str = "certkeeper";

/// The current time. Injected so tests decide what "now" is.
pub type Clock = Arc<dyn Fn() -> jiff::Timestamp + Send + Sync>;

/// The real clock.
pub fn system_clock() -> Clock {
    Arc::new(jiff::Timestamp::now)
}

/// Shared state of the controllers.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub issuers: Store<DeserializeGuard<Issuer>>,
    pub cluster_issuers: Store<DeserializeGuard<ClusterIssuer>>,
    /// Every CertificateRevocation, from its watch: the revoked serials of each issuer.
    pub revocations: Revocations,
    /// What the PKI endpoint serves: each CA issuer's key pair, revoked serials and CRL.
    pub pki: PkiEndpoint,
    /// The only namespace a ClusterIssuer reads CA Secrets from.
    pub cluster_resource_namespace: String,
    /// Remaining validities that deserve an ExpiringSoon warning (`--expiry-warning-thresholds`).
    pub expiry_thresholds: Vec<SignedDuration>,
    pub clock: Clock,
    pub metrics: Arc<Metrics>,
    /// Consecutive reconcile errors per object, for the error policy's backoff.
    pub error_counts: Mutex<HashMap<String, u32>>,
    /// CA key pairs by Secret resourceVersion, of Issuers and of ClusterIssuers: each follows
    /// the Secret watch that wakes the issuers of its kind.
    pub issuer_ca_key_pairs: Arc<CaKeyPairs>,
    pub cluster_issuer_ca_key_pairs: Arc<CaKeyPairs>,
    /// The PKCS#11 modules and token sessions of CA keys in HSMs (`--pkcs11-*`).
    pub pkcs11: Arc<crate::pkcs11::Pkcs11Registry>,
    /// What each Certificate's Secret was last found to hold, while it is unchanged.
    pub verdicts: Arc<WatchedCache<Verdict>>,
    /// Every Certificate, for the issuers that follow their progress through a rotation.
    pub certificates: Store<crate::certificate::cached::CachedCertificate>,
    /// The waits of CA rotations.
    pub rotation: RotationSettings,
    /// Every Bundle, for the issuers whose rotation waits for the Bundles that source them.
    pub bundles: Store<DeserializeGuard<Bundle>>,
    /// Request annotation values already warned about (one Warning Event per value).
    pub warned_requests: crate::telemetry::events::WarnedRequests,
    /// Since when issuers have been waiting for their controller to judge their current spec.
    pub unjudged_issuers: crate::certificate::signer::UnjudgedIssuers,
    /// The CertificatePolicies and namespace labels, from their watches. A context made
    /// here has none, listed (nothing guarded); a leadership term gives it the watched ones.
    pub policies: Policies,
    /// Which Certificates read keystore passwords from which Secrets.
    pub password_refs: Arc<crate::certificate::keystores::PasswordRefs>,
    /// The certificate inventory, told the facts of the Secrets certkeeper writes; None
    /// with `--inventory=false`.
    pub inventory: Option<Arc<crate::inventory::Inventory>>,
}

impl Context {
    /// A context over the controllers' caches, with metrics of its own that read them.
    pub fn new(
        client: Client,
        caches: Caches,
        cluster_resource_namespace: String,
        expiry_thresholds: Vec<SignedDuration>,
    ) -> Self {
        let metrics = Arc::new(Metrics::new(caches.clone()));
        Self::with_metrics(
            client,
            caches,
            cluster_resource_namespace,
            expiry_thresholds,
            metrics,
        )
    }

    /// A context over the controllers' caches, reporting into `metrics` (which outlive one
    /// leadership term), which from now on read these caches.
    pub fn with_metrics(
        client: Client,
        caches: Caches,
        cluster_resource_namespace: String,
        expiry_thresholds: Vec<SignedDuration>,
        metrics: Arc<Metrics>,
    ) -> Self {
        metrics.observe(caches.clone());
        let reporter = Reporter {
            controller: "certkeeper".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            issuers: caches.issuers.clone(),
            cluster_issuers: caches.cluster_issuers.clone(),
            revocations: caches.revocations.clone(),
            pki: PkiEndpoint::default(),
            cluster_resource_namespace,
            expiry_thresholds,
            clock: caches.clock.clone(),
            metrics,
            error_counts: Mutex::new(HashMap::new()),
            issuer_ca_key_pairs: Arc::default(),
            cluster_issuer_ca_key_pairs: Arc::default(),
            pkcs11: Arc::default(),
            verdicts: Arc::default(),
            certificates: caches.certificates.clone(),
            rotation: RotationSettings::default(),
            // Empty until the leadership term shares the Bundle controller's cache.
            bundles: kube::runtime::reflector::store().0,
            warned_requests: Default::default(),
            unjudged_issuers: Default::default(),
            policies: Policies::fixed(Vec::new(), Default::default(), false),
            password_refs: Arc::default(),
            inventory: None,
        }
    }

    /// The CA key pairs of issuers of `kind` (`Issuer` or `ClusterIssuer`).
    /// How a load of a `kind` issuer's CA reaches its token; `probe` for the issuer's check.
    pub fn hsm(&self, kind: &str, probe: bool) -> crate::cluster::ca::HsmAccess<'_> {
        crate::cluster::ca::HsmAccess {
            registry: &self.pkcs11,
            namespaced: kind != "ClusterIssuer",
            probe,
        }
    }

    pub fn ca_key_pairs(&self, kind: &str) -> &CaKeyPairs {
        match kind {
            "ClusterIssuer" => &self.cluster_issuer_ca_key_pairs,
            _ => &self.issuer_ca_key_pairs,
        }
    }

    pub fn now(&self) -> jiff::Timestamp {
        (self.clock)()
    }

    /// Records one more consecutive error for `key` and returns the count.
    pub fn record_error(&self, key: &str) -> u32 {
        let mut counts = self.error_counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    /// Forgets the errors of `key` after a successful reconcile.
    pub fn clear_errors(&self, key: &str) {
        let mut counts = self.error_counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.remove(key);
    }
}
