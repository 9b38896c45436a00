//! The certificate inventory (SPEC "Certificate inventory"): every certificate in the cluster,
//! not only certkeeper's own, watched for expiry. `kubernetes.io/tls` Secrets, and Secrets and
//! ConfigMaps carrying the inventory label, are watched metadata-only; an object is read when
//! its resourceVersion changes and only the facts of its certificates are kept (`store`). They
//! become metrics (`telemetry::metrics`), Warning Events on the object (`warnings`) and the
//! answer of `certkeeper scan`. The watches are wired in `runner/inventory.rs`.

pub mod facts;
pub mod ledger;
pub mod store;
pub mod warnings;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;

pub use facts::{CertificateFacts, ManagedBy, ObjectFacts, State};
pub use store::{Inventory, Kind, ObjectKey, Seen};

/// `--inventory-label` default: Opaque Secrets and ConfigMaps with it are read for PEM bundles.
pub const DEFAULT_LABEL: &str = "certkeeper.io/inventory=true";

/// The type of the Secrets the inventory always watches.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";

fn managed_by(labels: &BTreeMap<String, String>, annotations: &BTreeMap<String, String>) -> ManagedBy {
    ManagedBy::of(|k| labels.contains_key(k), |k| annotations.contains_key(k))
}

/// Who manages an object, from its metadata.
pub fn managed_by_meta(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> ManagedBy {
    let empty = BTreeMap::new();
    managed_by(
        meta.labels.as_ref().unwrap_or(&empty),
        meta.annotations.as_ref().unwrap_or(&empty),
    )
}

/// What a Secret's metadata says, for the store.
pub fn seen_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Seen {
    Seen {
        uid: meta.uid.clone().unwrap_or_default(),
        version: meta.resource_version.clone().unwrap_or_default(),
        managed_by: managed_by_meta(meta),
    }
}

/// The certificates of a Secret.
pub fn read_secret(secret: &Secret) -> ObjectFacts {
    let tls = secret.type_.as_deref() == Some(TLS_SECRET_TYPE);
    let data = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.0.as_slice()));
    facts::read_object(data, tls)
}

/// The certificates of certkeeper's own Secret: its `tls.crt` and `ca.crt`, as written.
pub fn own_facts(tls_crt: &[u8], ca_crt: &[u8]) -> ObjectFacts {
    facts::read_object([("ca.crt", ca_crt), ("tls.crt", tls_crt)], true)
}

/// The certificates of a ConfigMap, in `data` and `binaryData`.
pub fn read_configmap(map: &ConfigMap) -> ObjectFacts {
    let text = map.data.iter().flatten().map(|(k, v)| (k.as_str(), v.as_bytes()));
    let binary = map
        .binary_data
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), v.0.as_slice()));
    facts::read_object(text.chain(binary), false)
}

/// The key of a watched object.
pub fn key_of<K: kube::Resource>(kind: Kind, object: &K) -> ObjectKey {
    ObjectKey {
        kind,
        namespace: object.namespace().unwrap_or_default(),
        name: object.name_any(),
    }
}
