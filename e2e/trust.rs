//! Trust distribution: a Bundle sourcing a CA issuer's trust anchors lands as a ConfigMap in
//! the namespaces its selector matches, and leaves a namespace relabelled out of it.

use std::time::Duration;

use certkeeper::api::{BUNDLE_LABEL, Bundle};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;

use crate::support::{TestEnv, certificate, selfsigned_issuer};

const TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_bundle_from_an_issuer_reaches_a_labelled_namespace_and_leaves_it_when_relabelled() {
    let Some(env) = TestEnv::start("bundle").await else {
        return;
    };
    // A CA issuer: a self-signed root CA Certificate, and an Issuer signing with it.
    env.apply(selfsigned_issuer("selfsigned")).await;
    env.apply(certificate(
        &env,
        "root-ca",
        "selfsigned",
        // The Issuer below reads Secret `root-ca`: name it so (the helper's default is
        // `root-ca-tls`, which left the Issuer rightly reporting SecretNotFound).
        json!({"isCA": true, "commonName": "e2e bundle root", "duration": "8760h", "secretName": "root-ca"}),
    ))
    .await;
    env.wait_ready("root-ca").await;
    env.apply(json!({
        "apiVersion": "certkeeper.io/v1", "kind": "Issuer",
        "metadata": {"name": "root-ca"},
        "spec": {"ca": {"secretName": "root-ca"}},
    }))
    .await;
    let issuer = env.wait_issuer_ready("root-ca").await;
    let fingerprint = issuer
        .status
        .and_then(|s| s.ca_fingerprint_sha256)
        .expect("a CA issuer reports its fingerprint");

    // The test namespace, labelled into the Bundle's selector.
    let label = "certkeeper.io/e2e-bundle";
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    let relabel = |value: &str| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": env.namespace, "labels": {label: value}}});
    let params = PatchParams::apply("certkeeper-e2e");
    namespaces
        .patch(&env.namespace, &params, &Patch::Apply(relabel(&env.namespace)))
        .await
        .expect("label the test namespace");
    // Named after the test namespace: Bundles are cluster-scoped.
    let name = env.namespace.clone();
    // The Bundle is cluster-scoped: it goes with the test, passed or failed.
    let _leftovers = crate::support::Leftovers(vec![("bundle", name.clone())]);
    env.apply(json!({
        "apiVersion": "certkeeper.io/v1", "kind": "Bundle",
        "metadata": {"name": name},
        "spec": {
            "sources": [{"issuer": {"kind": "Issuer", "name": "root-ca", "namespace": env.namespace}}],
            "target": {
                "configMap": {"key": "ca.crt"},
                "pkcs12": {"key": "truststore.p12"},
                "namespaceSelector": {"matchLabels": {label: env.namespace}},
            },
        },
    }))
    .await;

    let config_maps: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
    let target = env
        .eventually(
            "the Bundle's ConfigMap in the test namespace",
            TIMEOUT,
            async || {
                let found = config_maps
                    .get_opt(&name)
                    .await
                    .map_err(|e| format!("get: {e}"))?
                    .ok_or("no ConfigMap yet")?;
                Ok(found)
            },
        )
        .await;
    let labels = target.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get(BUNDLE_LABEL), Some(&name));
    let pem = target.data.clone().unwrap_or_default()["ca.crt"].clone();
    let held: Vec<String> = certkeeper::pki::parse_certificate_chain(pem.as_bytes())
        .expect("the target holds PEM certificates")
        .into_iter()
        .map(|c| c.fingerprint_sha256)
        .collect();
    assert!(
        held.contains(&fingerprint),
        "{held:?} lacks the issuer's root {fingerprint}"
    );
    assert!(
        target
            .binary_data
            .unwrap_or_default()
            .contains_key("truststore.p12")
    );
    let bundles: Api<Bundle> = Api::all(env.client.clone());
    env.eventually("Bundle Ready=True", TIMEOUT, async || {
        let bundle = bundles.get(&name).await.map_err(|e| format!("get: {e}"))?;
        let status = bundle.status.unwrap_or_default();
        match status.conditions.iter().find(|c| c.type_ == "Ready") {
            Some(c) if c.status == "True" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // Relabelled out of the selector: the target goes.
    namespaces
        .patch(&env.namespace, &params, &Patch::Apply(relabel("elsewhere")))
        .await
        .expect("relabel the test namespace");
    env.eventually("the ConfigMap removed", TIMEOUT, async || {
        match config_maps
            .get_opt(&name)
            .await
            .map_err(|e| format!("get: {e}"))?
        {
            None => Ok(()),
            Some(_) => Err("still there".to_owned()),
        }
    })
    .await;
    bundles
        .delete(&name, &DeleteParams::default())
        .await
        .expect("delete the Bundle");
}
