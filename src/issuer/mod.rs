//! The Issuer and ClusterIssuer controllers: check that each issuer can sign and report it
//! in the `Ready` condition, with the CA's expiry and fingerprint.

pub mod ca;
pub mod crl;
pub mod reconcile;
pub mod rotation;
pub mod status;

use kube::api::Api;
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{ClusterIssuer, Issuer, IssuerSpec, IssuerStatus};

/// What the two issuer kinds have in common for the controllers.
pub trait IssuerObject:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + std::fmt::Debug + Send + Sync + 'static
{
    const KIND: &'static str;
    fn issuer_spec(&self) -> &IssuerSpec;
    fn issuer_status(&self) -> Option<&IssuerStatus>;
    /// The only namespace this issuer may read its CA Secret from.
    fn ca_namespace(&self, cluster_resource_namespace: &str) -> Option<String>;
    /// The API for objects of this kind in `namespace` (ignored for cluster-scoped kinds).
    fn api(client: Client, namespace: Option<&str>) -> Api<Self>;
}

impl IssuerObject for Issuer {
    const KIND: &'static str = "Issuer";
    fn issuer_spec(&self) -> &IssuerSpec {
        &self.spec
    }
    fn issuer_status(&self) -> Option<&IssuerStatus> {
        self.status.as_ref()
    }
    fn ca_namespace(&self, _: &str) -> Option<String> {
        self.metadata.namespace.clone()
    }
    fn api(client: Client, namespace: Option<&str>) -> Api<Self> {
        match namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        }
    }
}

impl IssuerObject for ClusterIssuer {
    const KIND: &'static str = "ClusterIssuer";
    fn issuer_spec(&self) -> &IssuerSpec {
        &self.spec.issuer
    }
    fn issuer_status(&self) -> Option<&IssuerStatus> {
        self.status.as_ref()
    }
    fn ca_namespace(&self, cluster_resource_namespace: &str) -> Option<String> {
        Some(cluster_resource_namespace.to_owned())
    }
    fn api(client: Client, _: Option<&str>) -> Api<Self> {
        Api::all(client)
    }
}

#[cfg(test)]
mod tests;
