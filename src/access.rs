//! The Kubernetes API access the controller needs: one entry per (group, resource, verb, scope)
//! it uses, each saying where in the code. The RBAC in `manifests/rbac.yaml` must grant exactly
//! these (`deploy_tests`), and the mocked API server of the reconciler tests refuses any request
//! not covered here (`testing::ApiServer::expect`), so code, list and manifests stay in step.

/// Where an access is granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// In every namespace, and for cluster-scoped resources: the ClusterRole.
    Cluster,
    /// Only in the namespace the controller runs in: the Role.
    OwnNamespace,
}

/// One kind of request the controller makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ApiAccess {
    /// API group; `""` is the core group (`/api/v1`).
    pub group: &'static str,
    /// Resource, `resource/subresource` for a subresource.
    pub resource: &'static str,
    /// RBAC verb as the API server authorizes the request.
    pub verb: &'static str,
    pub scope: Scope,
}

const fn cluster(group: &'static str, resource: &'static str, verb: &'static str) -> ApiAccess {
    ApiAccess {
        group,
        resource,
        verb,
        scope: Scope::Cluster,
    }
}

const fn own_namespace(group: &'static str, resource: &'static str, verb: &'static str) -> ApiAccess {
    ApiAccess {
        group,
        resource,
        verb,
        scope: Scope::OwnNamespace,
    }
}

/// Everything the controller does with the API, nothing more.
pub const API_ACCESS: &[ApiAccess] = &[
    // runner.rs: the three controllers and the reflectors that wake Certificates on issuer
    // changes watch these kinds in all namespaces (list, then watch). Reconciles read the cache.
    cluster("certkeeper.io", "certificates", "list"),
    cluster("certkeeper.io", "certificates", "watch"),
    cluster("certkeeper.io", "issuers", "list"),
    cluster("certkeeper.io", "issuers", "watch"),
    cluster("certkeeper.io", "clusterissuers", "list"),
    cluster("certkeeper.io", "clusterissuers", "watch"),
    // runner/pki.rs: a standby serving the CRL of an issuer whose key is on a token reads the
    // issuer once, for the key's URI and PIN Secret (its CA Secret holds no key).
    cluster("certkeeper.io", "issuers", "get"),
    cluster("certkeeper.io", "clusterissuers", "get"),
    // runner/controllers.rs: the revocation records, watched in all namespaces into one cache
    // (cluster/revocations.rs) that Certificates and issuers read.
    cluster("certkeeper.io", "certificaterevocations", "list"),
    cluster("certkeeper.io", "certificaterevocations", "watch"),
    // certificate/reconcile.rs apply_revocation: server-side apply of the record revoking an
    // annotated Certificate's certificate (create when new).
    cluster("certkeeper.io", "certificaterevocations", "patch"),
    cluster("certkeeper.io", "certificaterevocations", "create"),
    // runner/policies.rs follow: the CertificatePolicies, watched into the compiled policies
    // every Certificate reconcile reads (namespaces list and watch, for matchLabels: below).
    cluster("certkeeper.io", "certificatepolicies", "list"),
    cluster("certkeeper.io", "certificatepolicies", "watch"),
    // runner/policies.rs write_status: server-side apply of a policy's Ready condition.
    cluster("certkeeper.io", "certificatepolicies/status", "patch"),
    // certificate/reconcile.rs write_status: server-side apply of the status.
    cluster("certkeeper.io", "certificates/status", "patch"),
    // issuer/reconcile.rs report_records: server-side apply of a revocation record's status
    // (listed in its issuer's CRL, or unreadable).
    cluster("certkeeper.io", "certificaterevocations/status", "patch"),
    // issuer/reconcile.rs reconcile: server-side apply of the status, both issuer kinds.
    cluster("certkeeper.io", "issuers/status", "patch"),
    cluster("certkeeper.io", "clusterissuers/status", "patch"),
    // cluster/secrets.rs get_secret: a CA Secret (cluster/ca.rs, once per resourceVersion, for
    // issuers and Certificates) and a Certificate's current Secret (certificate/reconcile.rs);
    // runner/inventory.rs read: a TLS or inventory-labelled Secret at a version not read yet.
    cluster("", "secrets", "get"),
    // runner.rs: metadata-only watches of TLS Secrets (issuers' CA Secrets) and of the
    // label-selected certificate Secrets, in all namespaces; runner/inventory.rs: every
    // `kubernetes.io/tls` Secret (field selector) and the inventory-labelled ones.
    cluster("", "secrets", "list"),
    cluster("", "secrets", "watch"),
    // certificate/reconcile.rs apply_secret: server-side apply of the key pair; when the Secret
    // does not exist yet the API server authorizes the apply as create.
    cluster("", "secrets", "patch"),
    cluster("", "secrets", "create"),
    // issuer/reconcile.rs publish_crl: a CA issuer's CRL ConfigMap `<issuer>-crl`, read once per
    // process and server-side applied (create when new), in any issuer's namespace;
    // runner/inventory.rs read: an inventory-labelled ConfigMap at a version not read yet.
    cluster("", "configmaps", "get"),
    // runner/pki.rs follow: every replica watches the CRL ConfigMaps (label-selected, all
    // namespaces) and serves them, reading each CA Secret once (secrets get, above).
    cluster("", "configmaps", "list"),
    cluster("", "configmaps", "watch"),
    cluster("", "configmaps", "patch"),
    cluster("", "configmaps", "create"),
    // telemetry/events.rs publish and issuer/reconcile.rs: kube's Recorder creates an Event in
    // the object's namespace ("default" for a ClusterIssuer) and patches it on a repeat;
    // inventory/warnings.rs publish: an expiry warning on a Secret or ConfigMap, created under
    // a name of its own (AlreadyExists: sent before).
    cluster("events.k8s.io", "events", "create"),
    cluster("events.k8s.io", "events", "patch"),
    // runner/controllers.rs bundle_controller: the Bundles, and what wakes them: namespaces
    // (metadata only, for their labels), the targets (ConfigMaps and Secrets labelled
    // certkeeper.io/bundle, metadata only, all namespaces; the source ConfigMaps of the
    // cluster-resource namespace fall under the same grant).
    // (configmaps list and watch: above).
    cluster("certkeeper.io", "bundles", "list"),
    cluster("certkeeper.io", "bundles", "watch"),
    cluster("", "namespaces", "list"),
    cluster("", "namespaces", "watch"),
    // bundle/reconcile.rs write_status: server-side apply of the status.
    cluster("certkeeper.io", "bundles/status", "patch"),
    // bundle/reconcile.rs read_source: a configMap source, only in the cluster-resource
    // namespace (configmaps get above; a secret source is read with the `secrets get`).
    // bundle/reconcile.rs apply and delete: the targets in every selected namespace, written
    // with server-side apply (configmaps patch and create above) and removed when no longer
    // selected.
    cluster("", "configmaps", "delete"),
    cluster("", "secrets", "delete"),
    // Leader election (kube-lease-manager): reads the Lease, creates it if missing, patches it
    // to acquire and renew. Only the controller's own namespace.
    own_namespace("coordination.k8s.io", "leases", "get"),
    own_namespace("coordination.k8s.io", "leases", "create"),
    own_namespace("coordination.k8s.io", "leases", "patch"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{CLUSTER_RESOURCE_NAMESPACE, authorizations};

    fn needed(method: &str, uri: &str, content_type: Option<&str>) -> Vec<(String, String, &'static str)> {
        let mut request = http::Request::builder().method(method).uri(uri);
        if let Some(content_type) = content_type {
            request = request.header(http::header::CONTENT_TYPE, content_type);
        }
        let (parts, ()) = request.body(()).unwrap().into_parts();
        authorizations(&parts)
            .into_iter()
            .map(|a| (a.group, a.resource, a.verb))
            .collect()
    }

    fn one(group: &str, resource: &str, verb: &'static str) -> Vec<(String, String, &'static str)> {
        vec![(group.into(), resource.into(), verb)]
    }

    #[test]
    fn requests_are_authorized_as_the_api_server_derives_them() {
        assert_eq!(
            needed("GET", "/api/v1/namespaces/apps/secrets/web-tls", None),
            one("", "secrets", "get")
        );
        assert_eq!(
            needed("GET", "/api/v1/secrets?labelSelector=x", None),
            one("", "secrets", "list")
        );
        assert_eq!(
            needed("GET", "/api/v1/secrets?watch=true&resourceVersion=1", None),
            one("", "secrets", "watch")
        );
        assert_eq!(
            needed(
                "PATCH",
                "/apis/certkeeper.io/v1/namespaces/apps/certificates/web/status?fieldManager=certkeeper",
                Some("application/apply-patch+yaml")
            ),
            one("certkeeper.io", "certificates/status", "patch")
        );
        assert_eq!(
            needed(
                "POST",
                "/apis/events.k8s.io/v1/namespaces/apps/events",
                Some("application/json")
            ),
            one("events.k8s.io", "events", "create")
        );
        assert_eq!(
            needed("PUT", "/apis/coordination.k8s.io/v1/namespaces/x/leases/l", None),
            one("coordination.k8s.io", "leases", "update")
        );
        assert_eq!(
            needed("DELETE", "/api/v1/namespaces/apps/secrets/web-tls", None),
            one("", "secrets", "delete")
        );
        // The namespaces resource itself is not a namespace prefix.
        assert_eq!(
            needed("GET", "/api/v1/namespaces/apps", None),
            one("", "namespaces", "get")
        );
    }

    #[test]
    fn a_server_side_apply_of_an_object_needs_create_too() {
        assert_eq!(
            needed(
                "PATCH",
                "/api/v1/namespaces/apps/secrets/web-tls",
                Some("application/apply-patch+yaml")
            ),
            vec![
                ("".into(), "secrets".into(), "patch"),
                ("".into(), "secrets".into(), "create"),
            ]
        );
        assert_eq!(
            needed(
                "PATCH",
                "/api/v1/namespaces/apps/secrets/web-tls",
                Some("application/merge-patch+json")
            ),
            one("", "secrets", "patch")
        );
    }

    #[test]
    fn namespaced_access_is_granted_only_in_the_controllers_namespace() {
        let lease = |ns: &str| {
            let (parts, ()) = http::Request::builder()
                .method("GET")
                .uri(format!(
                    "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/certkeeper"
                ))
                .body(())
                .unwrap()
                .into_parts();
            authorizations(&parts)
        };
        assert!(lease(CLUSTER_RESOURCE_NAMESPACE).iter().all(|a| a.is_granted()));
        assert!(!lease("apps").iter().all(|a| a.is_granted()));
    }

    #[test]
    fn entries_are_unique() {
        let mut sorted = API_ACCESS.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), API_ACCESS.len());
    }
}
