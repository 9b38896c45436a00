//! What every reconcile shares: the client, the one event recorder, the issuer caches, the
//! clock and the settings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::Client;
use kube::core::DeserializeGuard;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;

use crate::api::{ClusterIssuer, Issuer};

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
    /// The only namespace a ClusterIssuer reads CA Secrets from.
    pub cluster_resource_namespace: String,
    pub clock: Clock,
    /// Consecutive reconcile errors per object, for the error policy's backoff.
    pub error_counts: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        issuers: Store<DeserializeGuard<Issuer>>,
        cluster_issuers: Store<DeserializeGuard<ClusterIssuer>>,
        cluster_resource_namespace: String,
        clock: Clock,
    ) -> Self {
        let reporter = Reporter {
            controller: "certkeeper".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            issuers,
            cluster_issuers,
            cluster_resource_namespace,
            clock,
            error_counts: Mutex::new(HashMap::new()),
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
