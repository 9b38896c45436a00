//! The certificate inventory in the whole controller (`runner::run`) against the in-memory API
//! server, which streams watches as kube-apiserver does (an object that stops matching a
//! selector is DELETED for that watch): a hand-made TLS Secret expiring in 2 days is read once,
//! reported in the metrics and warned about on the Secret; a change is read again, a relabelled
//! ConfigMap and a deleted Secret leave the metrics; a restarted controller does not warn twice.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{InventorySettings, Settings, run};
use crate::testing::api_server::InMemoryApiServer;
use crate::testing::{ca_secret, to_json};

const WITHIN: Duration = Duration::from_secs(20);

async fn start(server: &InMemoryApiServer) -> (tokio::task::JoinHandle<()>, std::net::SocketAddr) {
    start_with(server, None).await
}

async fn start_with(
    server: &InMemoryApiServer,
    namespaces: Option<&str>,
) -> (tokio::task::JoinHandle<()>, std::net::SocketAddr) {
    let settings = Settings {
        inventory: Some(InventorySettings {
            namespaces: namespaces.map(Into::into),
            label: crate::inventory::DEFAULT_LABEL.into(),
            own_grace: Duration::from_secs(1),
        }),
        ..crate::testing::controller_settings()
    };
    let endpoint = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = endpoint.local_addr().unwrap();
    let pki = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = server.client();
    let task = tokio::spawn(async move {
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        let _ = run(client, settings, endpoint, pki, shutdown).await;
    });
    (task, address)
}

async fn scrape(address: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}

/// The inventory series of `name` in the scrape.
fn series<'a>(metrics: &'a str, name: &str) -> Vec<&'a str> {
    metrics
        .lines()
        .filter(|l| l.starts_with("certkeeper_inventory_certificate_expiration_timestamp_seconds{"))
        .filter(|l| l.contains(&format!("name=\"{name}\"")))
        .collect()
}

async fn until(what: &str, check: impl AsyncFn() -> bool) {
    let done = tokio::time::timeout(WITHIN, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert!(done.await.is_ok(), "timed out waiting for {what}");
}

fn warnings_about(server: &InMemoryApiServer, name: &str) -> Vec<Value> {
    server
        .changes()
        .into_iter()
        .filter(|c| c.id.0 == "events.k8s.io" && c.before.is_none())
        .filter_map(|c| c.after)
        .filter(|e| e["regarding"]["name"] == name && e["type"] == "Warning")
        .collect()
}

fn gets_of(server: &InMemoryApiServer, path: &str) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| *r == &format!("GET {path}"))
        .count()
}

#[tokio::test]
async fn foreign_certificates_are_read_once_reported_warned_about_once_and_forgotten() {
    let server = InMemoryApiServer::default();
    let now = jiff::Timestamp::now();
    let hours = jiff::SignedDuration::from_hours;
    // Made by hand two years ago... or 28 days ago for 30: 2 days left.
    let web = to_json(&ca_secret(
        "web-tls",
        "apps",
        "web.apps.svc",
        now - hours(24 * 28),
        30,
    ));
    server.put(web.clone());
    let bundle_pem = crate::testing::secret_data(&web, "ca.crt");
    server.put(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "trust", "namespace": "apps", "labels": {"certkeeper.io/inventory": "true"}},
        "data": {"ca-bundle.pem": String::from_utf8(bundle_pem.clone()).unwrap()}
    }));
    // Not a TLS Secret and not labelled: never read.
    let mut opaque = web.clone();
    opaque["type"] = "Opaque".into();
    opaque["metadata"]["name"] = "opaque".into();
    server.put(opaque);
    let (controller, metrics) = start(&server).await;

    until("the Secret and ConfigMap in the metrics", async || {
        let m = scrape(metrics).await;
        series(&m, "web-tls").len() == 2 && series(&m, "trust").len() == 1
    })
    .await;
    let m = scrape(metrics).await;
    let row = series(&m, "web-tls")
        .into_iter()
        .find(|l| l.contains("key=\"tls.crt\""))
        .unwrap();
    for label in [
        "namespace=\"apps\"",
        "kind=\"Secret\"",
        "subject_cn=\"web.apps.svc\"",
        "issuer_cn=\"web.apps.svc\"",
        "managed_by=\"none\"",
    ] {
        assert!(row.contains(label), "{label} in {row}");
    }
    assert!(series(&m, "opaque").is_empty());
    assert!(
        m.contains("certkeeper_inventory_certificates{state=\"expiring\"} 3"),
        "{m}"
    );
    assert_eq!(gets_of(&server, "/api/v1/namespaces/apps/secrets/web-tls"), 1);
    assert_eq!(gets_of(&server, "/api/v1/namespaces/apps/secrets/opaque"), 0);
    // The inventory's lists and watches (TLS Secrets by type, labelled Secrets and ConfigMaps)
    // ask for metadata only: no Secret's data crosses the wire unless it changed.
    let inventory_reads: Vec<_> = server
        .collection_reads()
        .into_iter()
        .filter(|(read, _)| {
            read.contains("type%3Dkubernetes.io%2Ftls")
                || read.contains("type=kubernetes.io/tls")
                || read.contains("certkeeper.io%2Finventory")
                || read.contains("certkeeper.io/inventory")
        })
        .collect();
    assert!(inventory_reads.len() >= 3, "{inventory_reads:?}");
    assert!(
        inventory_reads.iter().all(|(_, metadata_only)| *metadata_only),
        "{inventory_reads:?}"
    );
    for resource in ["/api/v1/secrets?", "/api/v1/configmaps?"] {
        assert!(
            inventory_reads.iter().any(|(read, _)| read.starts_with(resource)),
            "{resource} in {inventory_reads:?}"
        );
    }
    until("the ExpiringSoon warning on the Secret", async || {
        !warnings_about(&server, "web-tls").is_empty()
    })
    .await;
    let sent = warnings_about(&server, "web-tls");
    assert_eq!(sent.len(), 1, "one certificate, in tls.crt and ca.crt: {sent:?}");
    assert_eq!(sent[0]["reason"], "ExpiringSoon");
    assert_eq!(sent[0]["regarding"]["kind"], "Secret");
    assert!(sent[0]["note"].as_str().unwrap().contains("72h0m0s"));
    let event_name = sent[0]["metadata"]["name"].as_str().unwrap().to_owned();

    // The warning is recorded beside the controller, with its certificate's notAfter.
    let ledger_id = (
        "".to_owned(),
        "configmaps".to_owned(),
        crate::testing::CLUSTER_RESOURCE_NAMESPACE.to_owned(),
        crate::inventory::ledger::NAME.to_owned(),
    );
    let hash = event_name.rsplit_once('.').unwrap().1.to_owned();
    until("the warning in the ledger", async || {
        server.get(&ledger_id).is_some_and(|map| {
            map["data"]["sent"]
                .as_str()
                .is_some_and(|lines| lines.lines().any(|l| l.starts_with(&format!("{hash} "))))
        })
    })
    .await;

    // Restarted after the API server deleted the Event (`--event-ttl`, 1 h by default): the
    // Secret is read again, and the warning is neither sent again nor even tried.
    controller.abort();
    let _ = controller.await;
    server.delete(&(
        "events.k8s.io".into(),
        "events".into(),
        "apps".into(),
        event_name.clone(),
    ));
    let posts = |server: &InMemoryApiServer| {
        server
            .requests()
            .iter()
            .filter(|r| *r == "POST /apis/events.k8s.io/v1/namespaces/apps/events")
            .count()
    };
    let posted = posts(&server);
    let gets = gets_of(&server, "/api/v1/namespaces/apps/secrets/web-tls");
    let (controller, metrics) = start(&server).await;
    until("the Secret read again", async || {
        gets_of(&server, "/api/v1/namespaces/apps/secrets/web-tls") > gets
    })
    .await;
    // A read that finds a warning due looks for warnings 1 s later: give it two.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(posts(&server), posted, "the ledger says it was sent");
    assert_eq!(warnings_about(&server, "web-tls").len(), 1);

    // Renewed by hand: read again, the new certificate reported.
    let gets = gets_of(&server, "/api/v1/namespaces/apps/secrets/web-tls");
    let renewed = to_json(&ca_secret("web-tls", "apps", "web-2026", now, 90));
    server.put(renewed);
    until("the renewed certificate", async || {
        let m = scrape(metrics).await;
        series(&m, "web-tls")
            .iter()
            .all(|l| l.contains("subject_cn=\"web-2026\""))
    })
    .await;
    assert_eq!(
        gets_of(&server, "/api/v1/namespaces/apps/secrets/web-tls"),
        gets + 1
    );

    // The ConfigMap loses its label; the Secret is deleted.
    let mut trust = server
        .get(&("".into(), "configmaps".into(), "apps".into(), "trust".into()))
        .unwrap();
    trust["metadata"]["labels"] = json!({});
    server.put(trust);
    server.delete(&("".into(), "secrets".into(), "apps".into(), "web-tls".into()));
    until("both gone from the metrics", async || {
        let m = scrape(metrics).await;
        series(&m, "web-tls").is_empty() && series(&m, "trust").is_empty()
    })
    .await;
    controller.abort();
}

/// certkeeper's own Secret is reported with `managed_by="certkeeper"` from what the certificate
/// controller wrote: the inventory makes no read of it, and sends it no warning (its
/// Certificate has its own).
#[tokio::test]
async fn certkeepers_own_secrets_are_reported_from_its_writes_without_a_read() {
    use crate::testing::{NAMESPACE, certificate, self_signed_issuer};
    let server = InMemoryApiServer::default();
    server.put(to_json(&self_signed_issuer("selfsigned")));
    server.put(to_json(&certificate("web", "selfsigned", &["web.example"])));
    let (controller, metrics) = start(&server).await;
    until("the Certificate's Secret in the inventory", async || {
        series(&scrape(metrics).await, "web-tls").len() == 2
    })
    .await;
    let m = scrape(metrics).await;
    assert!(
        series(&m, "web-tls")
            .iter()
            .all(|l| l.contains("managed_by=\"certkeeper\"")),
        "{m}"
    );
    // Not read at all: the certificate controller's first issuance creates it without a read.
    let path = format!("/api/v1/namespaces/{NAMESPACE}/secrets/web-tls");
    assert_eq!(gets_of(&server, &path), 0, "{:?}", server.requests());
    assert!(warnings_about(&server, "web-tls").is_empty());
    controller.abort();
}

fn namespace(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

/// With `--inventory-namespaces`, only the namespaces the selector picks are read; a namespace
/// labelled later is read then, and one unlabelled leaves the metrics.
#[tokio::test]
async fn only_the_selected_namespaces_are_read() {
    let server = InMemoryApiServer::default();
    let now = jiff::Timestamp::now();
    server.put(namespace("shop", json!({"inventory": "on"})));
    server.put(namespace("lab", json!({})));
    for ns in ["shop", "lab"] {
        server.put(to_json(&ca_secret("site-tls", ns, "site", now, 90)));
    }
    let (controller, metrics) = start_with(&server, Some("inventory=on")).await;
    let in_namespace = |m: &str, ns: &str| {
        series(m, "site-tls")
            .iter()
            .any(|l| l.contains(&format!("namespace=\"{ns}\"")))
    };
    until("the selected namespace's Secret", async || {
        in_namespace(&scrape(metrics).await, "shop")
    })
    .await;
    assert!(!in_namespace(&scrape(metrics).await, "lab"));
    assert_eq!(gets_of(&server, "/api/v1/namespaces/lab/secrets/site-tls"), 0);

    server.put(namespace("lab", json!({"inventory": "on"})));
    until("the namespace labelled later", async || {
        in_namespace(&scrape(metrics).await, "lab")
    })
    .await;
    server.put(namespace("shop", json!({})));
    until("the namespace unlabelled", async || {
        !in_namespace(&scrape(metrics).await, "shop")
    })
    .await;
    assert_eq!(gets_of(&server, "/api/v1/namespaces/shop/secrets/site-tls"), 1);
    controller.abort();
}

/// A Secret of certkeeper's own whose Certificate cannot be issued (its issuer is missing), so
/// that its controller never tells what it holds, is read after the grace, like any other.
#[tokio::test]
async fn an_own_secret_nobody_tells_about_is_read_after_the_grace() {
    use crate::testing::{NAMESPACE, certificate};
    let server = InMemoryApiServer::default();
    let now = jiff::Timestamp::now();
    server.put(to_json(&certificate("web", "missing-issuer", &["web.example"])));
    let mut left = to_json(&ca_secret("web-tls", NAMESPACE, "left-behind", now, 30));
    left["metadata"]["labels"] = json!({"certkeeper.io/certificate-name": "web"});
    server.put(left);
    let (controller, metrics) = start(&server).await;
    until("the untold own Secret in the metrics", async || {
        series(&scrape(metrics).await, "web-tls")
            .iter()
            .any(|l| l.contains("subject_cn=\"left-behind\"") && l.contains("managed_by=\"certkeeper\""))
    })
    .await;
    controller.abort();
}
