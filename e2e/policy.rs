//! Issuance policy on a real API server: one ClusterIssuer shared by two namespaces, one
//! CertificatePolicy selecting them by label. Each namespace gets its own SPIFFE ID and is
//! refused the other's (Ready=False, Denied, a Warning Event, no Secret); a policy edit that
//! allows it lets the refused Certificate be issued within seconds.

use std::time::Duration;

use certkeeper::api::{Certificate, CertificatePolicy};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::support::{Leftovers, TestEnv, ready, ready_condition};

const TIMEOUT: Duration = Duration::from_secs(60);

fn workload(name: &str, namespace: &str, spiffe_namespace: &str) -> serde_json::Value {
    json!({
        "apiVersion": "certkeeper.io/v1", "kind": "Certificate",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "secretName": format!("{name}-tls"),
            "duration": "24h",
            "uris": [format!("spiffe://cluster.local/ns/{spiffe_namespace}/sa/{name}")],
            "issuerRef": {"kind": "ClusterIssuer", "name": "PLACEHOLDER"},
        },
    })
}

#[tokio::test]
async fn each_namespace_gets_its_own_identity_from_a_shared_issuer_and_is_refused_the_others() {
    let Some(env) = TestEnv::start("policy").await else {
        return;
    };
    let ns_a = env.namespace.clone();
    let ns_b = format!("{ns_a}-b");
    // Cluster-scoped objects are named after the test namespace.
    let (root, mesh, policy_name) = (format!("{ns_a}-root"), format!("{ns_a}-mesh"), ns_a.clone());
    let label = "certkeeper.io/e2e-mesh";
    // They go with the test, passed or failed.
    let _leftovers = Leftovers(vec![
        ("certificatepolicy", policy_name.clone()),
        ("clusterissuer", mesh.clone()),
        ("clusterissuer", root.clone()),
        ("namespace", ns_b.clone()),
    ]);

    // The shared CA: a self-signed root in the cluster-resource namespace (the test's own),
    // and the ClusterIssuer every team references.
    env.apply(json!({"apiVersion": "certkeeper.io/v1", "kind": "ClusterIssuer",
                     "metadata": {"name": root}, "spec": {"selfSigned": {}}}))
        .await;
    env.apply(json!({"apiVersion": "certkeeper.io/v1", "kind": "Certificate",
                     "metadata": {"name": "mesh-ca"},
                     "spec": {"isCA": true, "commonName": "e2e mesh CA", "duration": "8760h",
                              "secretName": "mesh-ca", "issuerRef": {"kind": "ClusterIssuer", "name": root}}}))
        .await;
    env.wait_ready("mesh-ca").await;
    env.apply(json!({"apiVersion": "certkeeper.io/v1", "kind": "ClusterIssuer",
                     "metadata": {"name": mesh}, "spec": {"requirePolicy": true, "ca": {"secretName": "mesh-ca"}}}))
        .await;

    // Two namespaces in the mesh: the test's own, and a second one.
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    let params = PatchParams::apply("certkeeper-e2e");
    for ns in [&ns_a, &ns_b] {
        let labelled = json!({"apiVersion": "v1", "kind": "Namespace",
                              "metadata": {"name": ns, "labels": {label: ns_a}}});
        namespaces
            .patch(ns, &params, &Patch::Apply(labelled))
            .await
            .unwrap_or_else(|e| panic!("label namespace {ns}: {e}"));
    }
    env.apply(json!({
        "apiVersion": "certkeeper.io/v1", "kind": "CertificatePolicy",
        "metadata": {"name": policy_name},
        "spec": {
            "selector": {
                "issuerRef": {"kind": "ClusterIssuer", "name": mesh},
                "namespaces": {"matchLabels": {label: ns_a}},
            },
            "allowed": {"uris": {"values": ["spiffe://cluster.local/ns/{namespace}/sa/*"], "required": true}},
            "constraints": {"maxDuration": "24h", "privateKey": {"algorithm": "ECDSA"}},
        },
    }))
    .await;
    let policies: Api<CertificatePolicy> = Api::all(env.client.clone());
    env.eventually("CertificatePolicy Ready=True", TIMEOUT, async || {
        let policy = policies
            .get(&policy_name)
            .await
            .map_err(|e| format!("get: {e}"))?;
        let conditions = policy.status.map(|s| s.conditions).unwrap_or_default();
        match conditions.iter().find(|c| c.type_ == "Ready") {
            Some(c) if c.status == "True" => Ok(()),
            other => Err(format!("Ready: {other:?}")),
        }
    })
    .await;

    // Each namespace asks for its own identity, and namespace B also for A's.
    let apply_in = async |namespace: &str, mut object: serde_json::Value| {
        object["spec"]["issuerRef"]["name"] = json!(mesh);
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        Api::<Certificate>::namespaced(env.client.clone(), namespace)
            .patch(&name, &params, &Patch::Apply(&object))
            .await
            .unwrap_or_else(|e| panic!("apply Certificate {namespace}/{name}: {e}"));
    };
    apply_in(&ns_a, workload("api", &ns_a, &ns_a)).await;
    apply_in(&ns_b, workload("web", &ns_b, &ns_b)).await;
    apply_in(&ns_b, workload("impostor", &ns_b, &ns_a)).await;

    let certificate_in = |namespace: &str, name: &str| {
        let api = Api::<Certificate>::namespaced(env.client.clone(), namespace);
        let name = name.to_owned();
        async move { api.get(&name).await.map_err(|e| format!("get: {e}")) }
    };
    for (namespace, name) in [(&ns_a, "api"), (&ns_b, "web")] {
        env.eventually(
            &format!("Certificate {namespace}/{name} Ready"),
            TIMEOUT,
            async || ready(&certificate_in(namespace, name).await?),
        )
        .await;
    }
    let denied = env
        .eventually("Certificate impostor Denied", TIMEOUT, async || {
            let cert = certificate_in(&ns_b, "impostor").await?;
            let c = ready_condition(&cert).ok_or("no Ready condition")?.clone();
            match (c.status.as_str(), c.reason.as_str()) {
                ("False", "Denied") => Ok(c.message),
                _ => Err(format!("Ready {} {}: {}", c.status, c.reason, c.message)),
            }
        })
        .await;
    assert!(
        denied.contains(&format!("spiffe://cluster.local/ns/{ns_a}/sa/impostor"))
            && denied.contains(&policy_name),
        "the denial names the refused URI and the policy: {denied}"
    );
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &ns_b);
    assert!(
        secrets
            .get_opt("impostor-tls")
            .await
            .expect("get Secret")
            .is_none(),
        "a denied Certificate got a Secret"
    );
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(env.client.clone(), &ns_b);
    env.eventually("a Warning Event Denied on the impostor", TIMEOUT, async || {
        let list = events
            .list(&Default::default())
            .await
            .map_err(|e| format!("list: {e}"))?;
        list.items
            .iter()
            .find(|e| {
                e.reason.as_deref() == Some("Denied")
                    && e.type_.as_deref() == Some("Warning")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("impostor")
            })
            .map(|_| ())
            .ok_or_else(|| "no Denied Event yet".to_owned())
    })
    .await;

    // The platform team widens the policy for B (a rule anyone can read in the policy): the
    // impostor is issued within seconds, with no edit of the Certificate.
    env.apply(json!({
        "apiVersion": "certkeeper.io/v1", "kind": "CertificatePolicy",
        "metadata": {"name": policy_name},
        "spec": {
            "selector": {
                "issuerRef": {"kind": "ClusterIssuer", "name": mesh},
                "namespaces": {"matchLabels": {label: ns_a}},
            },
            "allowed": {"uris": {"values": ["spiffe://cluster.local/ns/{namespace}/sa/*",
                                            format!("spiffe://cluster.local/ns/{ns_a}/sa/impostor")], "required": true}},
            "constraints": {"maxDuration": "24h", "privateKey": {"algorithm": "ECDSA"}},
        },
    }))
    .await;
    env.eventually(
        "the impostor Ready after the policy edit",
        Duration::from_secs(20),
        async || ready(&certificate_in(&ns_b, "impostor").await?),
    )
    .await;
}
