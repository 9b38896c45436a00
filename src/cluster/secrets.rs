//! Reading a Secret by name.

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;

use crate::error::Error;

/// Reads the Secret `name` in `namespace`; `None` when it does not exist.
pub async fn get_secret(client: &Client, namespace: &str, name: &str) -> Result<Option<Secret>, Error> {
    Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|source| Error::ReadSecret {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        })
}
