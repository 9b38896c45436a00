//! A ClusterIssuer whose key is on a SoftHSM2 token, in the whole controller (`runner::run`)
//! against the in-memory API server: it turns Ready and its Certificate is issued; the token
//! goes away: the issuer says HSMUnavailable within seconds, its valid Certificate stays Ready,
//! no Secret is written and a Certificate created meanwhile waits; the token comes back: the
//! issuer is Ready and the waiting Certificate issued within 20 s.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::generate::{TokenKeyAlgorithm, generate_key_pair};
use super::{Pkcs11Registry, Pkcs11Settings, Pkcs11Uri};
use crate::pki::{CertificateTemplate, Usage, sign_self_signed};
use crate::runner::run;
use crate::softhsm_token;
use crate::testing::CLUSTER_RESOURCE_NAMESPACE;
use crate::testing::api_server::{InMemoryApiServer, ObjectId};
use crate::testing::softhsm::{MODULE, PIN};

const WITHIN: Duration = Duration::from_secs(20);

fn registry() -> Arc<Pkcs11Registry> {
    Arc::new(Pkcs11Registry::new(Pkcs11Settings {
        modules: vec![("softhsm".into(), MODULE.into())],
        ..Pkcs11Settings::default()
    }))
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn certificate(name: &str) -> Value {
    json!({
        "apiVersion": "certkeeper.io/v1", "kind": "Certificate",
        "metadata": {"name": name, "namespace": "apps"},
        "spec": {
            "secretName": format!("{name}-tls"),
            "dnsNames": [format!("{name}.apps.svc")],
            "issuerRef": {"name": "hsm-ca", "kind": "ClusterIssuer"},
        }
    })
}

fn id(group: &str, resource: &str, namespace: &str, name: &str) -> ObjectId {
    (group.into(), resource.into(), namespace.into(), name.into())
}

fn condition(object: &Option<Value>) -> (String, String) {
    let ready = object
        .as_ref()
        .and_then(|o| o["status"]["conditions"].as_array().cloned())
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready");
    match ready {
        Some(c) => (
            c["status"].as_str().unwrap_or("").to_owned(),
            c["reason"].as_str().unwrap_or("").to_owned(),
        ),
        None => (String::new(), String::new()),
    }
}

async fn until(
    server: &InMemoryApiServer,
    what: &str,
    within: Duration,
    done: impl Fn(&InMemoryApiServer) -> bool,
) {
    let waited = tokio::time::timeout(within, async {
        while !done(server) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    if waited.await.is_err() {
        let issuer = server.get(&id(crate::api::GROUP, "clusterissuers", "", "hsm-ca"));
        panic!(
            "timed out after {within:?} waiting for {what}; issuer: {:?}",
            issuer.map(|o| o["status"].clone())
        );
    }
}

#[tokio::test]
async fn an_hsm_issuer_issues_goes_unavailable_with_its_token_keeps_certificates_ready_and_recovers() {
    let token = softhsm_token!(
        an_hsm_issuer_issues_goes_unavailable_with_its_token_keeps_certificates_ready_and_recovers
    );
    let registry = registry();
    let uri: Pkcs11Uri = "pkcs11:token=ca;object=root-2026".parse().unwrap();
    let spki = generate_key_pair(
        &registry.module_for(&uri).unwrap(),
        &uri,
        PIN,
        TokenKeyAlgorithm::EcdsaP256,
    )
    .unwrap();
    let key = registry.open_key(&uri, PIN, &spki).unwrap();
    let now = jiff::Timestamp::now();
    let root = sign_self_signed(
        &CertificateTemplate {
            common_name: Some("HSM Root".into()),
            not_before: now - jiff::SignedDuration::from_hours(1),
            not_after: now + jiff::SignedDuration::from_hours(24 * 365),
            is_ca: true,
            usages: vec![Usage::DigitalSignature],
            ..Default::default()
        },
        &key,
    )
    .unwrap();
    drop(key);

    let server = InMemoryApiServer::default();
    // A kubernetes.io/tls Secret (so the controller's watch follows it) with an empty key.
    server.put(json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "hsm-root-ca", "namespace": CLUSTER_RESOURCE_NAMESPACE},
        "data": {"tls.crt": b64(root.certificate_pem.as_bytes()), "tls.key": ""}
    }));
    server.put(json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": "hsm-pin", "namespace": CLUSTER_RESOURCE_NAMESPACE},
        "data": {"pin": b64(format!("{PIN}\n").as_bytes())}
    }));
    server.put(json!({
        "apiVersion": "certkeeper.io/v1", "kind": "ClusterIssuer",
        "metadata": {"name": "hsm-ca"},
        "spec": {"ca": {"secretName": "hsm-root-ca", "pkcs11": {
            "uri": "pkcs11:token=ca;object=root-2026",
            "pinSecretRef": {"name": "hsm-pin", "key": "pin"}
        }}}
    }));
    server.put(certificate("web"));

    let settings = crate::runner::Settings {
        pkcs11: registry.clone(),
        ..crate::testing::controller_settings()
    };
    let endpoint = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pki = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = server.client();
    let controller = tokio::spawn(async move {
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        let _ = run(client, settings, endpoint, pki, shutdown).await;
    });

    let issuer_id = id(crate::api::GROUP, "clusterissuers", "", "hsm-ca");
    let web_id = id(crate::api::GROUP, "certificates", "apps", "web");
    let web_secret = id("", "secrets", "apps", "web-tls");
    until(&server, "the issuer and its Certificate Ready", WITHIN, |s| {
        condition(&s.get(&issuer_id)).0 == "True" && condition(&s.get(&web_id)).0 == "True"
    })
    .await;
    // Signed on the token: the leaf chains to the root whose key never left it.
    let secret = server.get(&web_secret).unwrap();
    let ca_crt = base64::engine::general_purpose::STANDARD
        .decode(secret["data"]["ca.crt"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        String::from_utf8(ca_crt).unwrap().trim(),
        root.certificate_pem.trim()
    );
    let written = secret["metadata"]["resourceVersion"].clone();

    // The token goes away.
    let [dir] = token.token_dirs().try_into().unwrap();
    let away = token.root.join("away");
    std::fs::rename(&dir, &away).unwrap();
    until(&server, "the issuer HSMUnavailable", WITHIN, |s| {
        condition(&s.get(&issuer_id)) == ("False".into(), "HSMUnavailable".into())
    })
    .await;
    server.put(certificate("api"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        condition(&server.get(&web_id)).0,
        "True",
        "a valid Certificate stays Ready"
    );
    assert_eq!(
        server.get(&web_secret).unwrap()["metadata"]["resourceVersion"],
        written,
        "no Secret changes during the outage"
    );
    assert!(server.get(&id("", "secrets", "apps", "api-tls")).is_none());

    // The token returns.
    std::fs::rename(&away, &dir).unwrap();
    let back = std::time::Instant::now();
    until(
        &server,
        "the issuer Ready and the new Certificate issued",
        WITHIN,
        |s| {
            condition(&s.get(&issuer_id)).0 == "True"
                && condition(&s.get(&id(crate::api::GROUP, "certificates", "apps", "api"))).0 == "True"
        },
    )
    .await;
    println!("recovered {:?} after the token's return", back.elapsed());
    controller.abort();
}
