//! The Bundle controller: its pure stages, then scenarios against the mocked API server, every
//! request asserted in order.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::Method;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement, Time};
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::assemble::Assembled;
use super::pkcs12;
use super::reconcile::{BundleContext, reconcile};
use super::selector::NamespaceSelector;
use super::targets::{self, Content, HASH_ANNOTATION};
use crate::api::{
    BUNDLE_LABEL, Bundle, BundleSource, BundleSpec, BundleTarget, ClusterIssuer, IssuerSource, IssuerStatus,
    KeySource, TargetKey, TrustAnchor, TrustAnchorRole,
};
use crate::pki::{CertificateInfo, parse_certificate_chain};
use crate::telemetry::server::SyncFlag;
use crate::testing::{ApiServer, CLUSTER_RESOURCE_NAMESPACE, b64, ca_cluster_issuer, ca_secret, context, ts};

const NOW: &str = "2026-11-23T10:00:00Z";

fn now() -> Timestamp {
    ts(NOW)
}

/// A self-signed root named `cn`, valid from a day before NOW for `days`, as PEM.
fn root_pem(cn: &str, days: i64) -> String {
    let secret = ca_secret("x", "x", cn, now() - SignedDuration::from_hours(24), days);
    String::from_utf8(secret.data.unwrap()["ca.crt"].0.clone()).unwrap()
}

fn info(pem: &str) -> CertificateInfo {
    parse_certificate_chain(pem.as_bytes()).unwrap().remove(0)
}

fn in_line(pem: &str) -> BundleSource {
    BundleSource {
        in_line: Some(pem.to_owned()),
        ..BundleSource::default()
    }
}

fn bundle(sources: Vec<BundleSource>, selector: Option<LabelSelector>) -> Bundle {
    let mut bundle = Bundle::new(
        "trust",
        BundleSpec {
            sources,
            target: BundleTarget {
                config_map: TargetKey { key: "ca.crt".into() },
                namespace_selector: selector,
                ..BundleTarget::default()
            },
        },
    );
    bundle.metadata.uid = Some("uid-trust".into());
    bundle.metadata.generation = Some(1);
    bundle
}

fn labelled(labels: &[(&str, &str)]) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn namespace(name: &str, labels: &[(&str, &str)]) -> PartialObjectMeta<Namespace> {
    let mut ns = PartialObjectMeta::<Namespace>::default();
    ns.metadata.name = Some(name.into());
    ns.metadata.labels = Some(labelled(labels));
    ns
}

fn trust_selector() -> LabelSelector {
    LabelSelector {
        match_labels: Some(labelled(&[("trust", "yes")])),
        match_expressions: None,
    }
}

/// The metadata of a target of the Bundle `trust` in `namespace`, as the target watch caches it.
fn target_meta<K: Default>(namespace: &str, hash: &str) -> PartialObjectMeta<K> {
    let mut meta = PartialObjectMeta::<K>::default();
    meta.metadata.name = Some("trust".into());
    meta.metadata.namespace = Some(namespace.into());
    meta.metadata.labels = Some(labelled(&[(BUNDLE_LABEL, "trust")]));
    meta.metadata.annotations = Some(labelled(&[(HASH_ANNOTATION, hash)]));
    meta
}

fn plain_store<K>(objects: Vec<K>) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone,
{
    let mut writer = reflector::store::Writer::<K>::default();
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::Apply(object));
    }
    writer.as_reader()
}

/// What the caches hold for one scenario.
#[derive(Default)]
struct Cluster {
    namespaces: Vec<PartialObjectMeta<Namespace>>,
    config_maps: Vec<PartialObjectMeta<ConfigMap>>,
    secrets: Vec<PartialObjectMeta<Secret>>,
    cluster_issuers: Vec<ClusterIssuer>,
}

fn bundle_context(cluster: Cluster) -> (Arc<BundleContext>, ApiServer) {
    let (ctx, api) = context(vec![], vec![], now());
    let synced = SyncFlag::default();
    synced.synced();
    let bctx = BundleContext {
        ctx,
        namespaces: plain_store(cluster.namespaces),
        config_map_targets: plain_store(cluster.config_maps),
        secret_targets: plain_store(cluster.secrets),
        issuers: crate::testing::store(vec![]),
        cluster_issuers: crate::testing::store(cluster.cluster_issuers),
        synced: vec![synced],
        written: Default::default(),
    };
    (Arc::new(bctx), api)
}

async fn run(bundle: &Bundle, bctx: &Arc<BundleContext>) -> kube::runtime::controller::Action {
    reconcile(Arc::new(DeserializeGuard(Ok(bundle.clone()))), bctx.clone())
        .await
        .unwrap()
}

/// The hash the targets of `bundle` carry when they hold `pems`.
fn hash_of(bundle: &Bundle, pems: &[&str]) -> String {
    let assembled = Assembled::new(pems.iter().map(|p| info(p)), now());
    Content::new(bundle, &assembled).unwrap().hash
}

// ---- pure stages ----

#[test]
fn the_bundle_is_deduplicated_sorted_by_fingerprint_and_without_expired_certificates() {
    let a = info(&root_pem("a", 365));
    let b = info(&root_pem("b", 365));
    let mut expired = info(&root_pem("old", 365));
    expired.not_after = now() - SignedDuration::from_secs(1);
    let assembled = Assembled::new([b.clone(), a.clone(), expired, b.clone()], now());
    let mut expected = vec![a.fingerprint_sha256.clone(), b.fingerprint_sha256.clone()];
    expected.sort();
    assert_eq!(assembled.fingerprints(), expected);
    // The same certificates in any order give the same bytes.
    let again = Assembled::new([a.clone(), b.clone()], now());
    assert_eq!(again.pem(), assembled.pem());
    assert_eq!(
        parse_certificate_chain(assembled.pem().as_bytes()).unwrap().len(),
        2
    );
    assert!(!assembled.pem().contains('\r'));
    assert_eq!(assembled.next_expiry(), Some(a.not_after.min(b.not_after)));
}

#[test]
fn a_certificate_leaves_the_bundle_at_the_instant_it_expires() {
    let a = info(&root_pem("a", 1));
    assert_eq!(
        Assembled::new([a.clone()], a.not_after - SignedDuration::from_secs(1))
            .certificates
            .len(),
        1
    );
    assert!(Assembled::new([a.clone()], a.not_after).is_empty());
}

#[test]
fn the_namespace_selector_follows_the_api_servers_label_selector_semantics() {
    let select = |selector: Option<LabelSelector>, labels: &[(&str, &str)]| {
        NamespaceSelector::new(selector.as_ref())
            .unwrap()
            .matches(&labelled(labels))
    };
    let expression = |key: &str, operator: &str, values: &[&str]| LabelSelector {
        match_labels: None,
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).to_owned()).collect()),
        }]),
    };
    // Omitted and empty selectors select every namespace.
    assert!(select(None, &[]));
    assert!(select(Some(LabelSelector::default()), &[("a", "b")]));
    assert!(select(Some(trust_selector()), &[("trust", "yes"), ("x", "y")]));
    assert!(!select(Some(trust_selector()), &[("trust", "no")]));
    assert!(select(
        Some(expression("env", "In", &["prod", "staging"])),
        &[("env", "prod")]
    ));
    assert!(!select(Some(expression("env", "In", &["prod"])), &[]));
    // NotIn and DoesNotExist select a namespace without the key.
    assert!(select(Some(expression("env", "NotIn", &["dev"])), &[]));
    assert!(!select(
        Some(expression("env", "NotIn", &["dev"])),
        &[("env", "dev")]
    ));
    assert!(select(Some(expression("env", "Exists", &[])), &[("env", "")]));
    assert!(select(
        Some(expression("env", "DoesNotExist", &[])),
        &[("other", "x")]
    ));
    // matchLabels and matchExpressions are ANDed.
    let mut both = trust_selector();
    both.match_expressions = expression("env", "In", &["prod"]).match_expressions;
    assert!(select(Some(both.clone()), &[("trust", "yes"), ("env", "prod")]));
    assert!(!select(Some(both), &[("trust", "yes")]));
    // What the API server refuses is refused.
    for invalid in [
        expression("env", "In", &[]),
        expression("env", "NotIn", &[]),
        expression("env", "Exists", &["x"]),
        expression("env", "Equals", &["x"]),
        expression("", "Exists", &[]),
        expression("has space", "Exists", &[]),
        expression("Example.com/x", "Exists", &[]),
        expression("env", "In", &["not valid!"]),
        LabelSelector {
            match_labels: Some(labelled(&[("-x", "y")])),
            match_expressions: None,
        },
    ] {
        assert!(NamespaceSelector::new(Some(&invalid)).is_err(), "{invalid:?}");
    }
}

#[test]
fn a_bundle_distributes_a_root_once_every_target_holds_it_for_its_generation() {
    let root = info(&root_pem("root", 365));
    let other = info(&root_pem("other", 365));
    let mut b = bundle(vec![], None);
    let fingerprint = vec![root.fingerprint_sha256.clone()];
    assert!(!super::status::distributes(&b, &fingerprint));
    let assembled = Assembled::new([root.clone()], now());
    b.status = Some(super::status::distributed(
        &Default::default(),
        &assembled,
        3,
        3,
        Some(1),
        now(),
    ));
    assert!(super::status::distributes(&b, &fingerprint));
    assert!(!super::status::distributes(
        &b,
        std::slice::from_ref(&other.fingerprint_sha256)
    ));
    // Not yet in every namespace, or computed for an older spec: not distributed.
    let partly = super::status::distributed(&Default::default(), &assembled, 3, 2, Some(1), now());
    b.status = Some(partly);
    assert!(!super::status::distributes(&b, &fingerprint));
    b.status = Some(super::status::distributed(
        &Default::default(),
        &assembled,
        3,
        3,
        Some(1),
        now(),
    ));
    b.metadata.generation = Some(2);
    assert!(!super::status::distributes(&b, &fingerprint));
}

#[test]
fn the_plan_writes_stale_targets_and_removes_unselected_ones() {
    let set = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect();
    let existing = |entries: &[(&str, &str)]| -> targets::Existing {
        entries
            .iter()
            .map(|(ns, h)| ((*ns).to_owned(), Some((*h).to_owned())))
            .collect()
    };
    let plan = targets::plan(
        &set(&["a", "b", "c"]),
        &set(&["dying"]),
        &existing(&[("a", "h"), ("b", "old"), ("gone", "h"), ("dying", "h")]),
        &existing(&[("a", "h")]),
        false,
        "h",
    );
    assert_eq!(plan.apply_config_maps, ["b", "c"]);
    assert_eq!(plan.delete_config_maps, ["gone"]);
    // No Secret asked for: the Secret targets go.
    assert_eq!(plan.delete_secrets, ["a"]);
    assert!(plan.apply_secrets.is_empty());
    assert_eq!(plan.targets, 3);
    let settled = targets::plan(
        &set(&["a"]),
        &set(&[]),
        &existing(&[("a", "h")]),
        &existing(&[("a", "h")]),
        true,
        "h",
    );
    assert!(settled.writes_nothing());
}

#[test]
fn a_source_must_be_exactly_one_kind_and_an_issuer_needs_its_namespace() {
    use super::sources::source_kind;
    assert!(source_kind(&BundleSource::default()).is_err());
    let both = BundleSource {
        in_line: Some("x".into()),
        secret: Some(KeySource {
            name: "s".into(),
            key: "k".into(),
        }),
        ..BundleSource::default()
    };
    assert_eq!(source_kind(&both).unwrap_err().reason, "InvalidSource");
    let issuer = |kind: &str, namespace: Option<&str>| BundleSource {
        issuer: Some(IssuerSource {
            kind: kind.into(),
            name: "ca".into(),
            namespace: namespace.map(Into::into),
        }),
        ..BundleSource::default()
    };
    assert!(source_kind(&issuer("Issuer", None)).is_err());
    assert!(source_kind(&issuer("Issuer", Some("apps"))).is_ok());
    assert!(source_kind(&issuer("ClusterIssuer", None)).is_ok());
}

#[test]
fn targets_are_labelled_owned_by_the_bundle_and_hold_the_pem() {
    let pem = root_pem("a", 365);
    let mut b = bundle(vec![in_line(&pem)], None);
    b.spec.target.secret = Some(TargetKey { key: "ca.crt".into() });
    b.spec.target.pkcs12 = Some(TargetKey {
        key: "truststore.p12".into(),
    });
    let content = Content::new(&b, &Assembled::new([info(&pem)], now())).unwrap();
    let config_map = targets::desired_config_map(&b, "apps", &content);
    assert_eq!(
        config_map.metadata.labels.as_ref().unwrap()[BUNDLE_LABEL],
        "trust"
    );
    assert_eq!(config_map.data.as_ref().unwrap()["ca.crt"], pem);
    assert!(
        config_map
            .binary_data
            .as_ref()
            .unwrap()
            .contains_key("truststore.p12")
    );
    let owner = &config_map.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Bundle", "uid-trust", Some(true))
    );
    assert_eq!(owner.block_owner_deletion, None);
    let secret = targets::desired_secret(&b, "apps", &content).unwrap();
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    assert_eq!(secret.data.as_ref().unwrap().len(), 2);
    // The hash follows the content and the target keys.
    let mut other_key = b.clone();
    other_key.spec.target.config_map.key = "bundle.pem".into();
    assert_ne!(hash_of(&b, &[&pem]), hash_of(&other_key, &[&pem]));
    assert_eq!(hash_of(&b, &[&pem]), content.hash);
}

#[test]
fn the_truststore_holds_each_certificate_as_a_java_trusted_entry() {
    use der::Decode;
    let certs = [info(&root_pem("a", 365)), info(&root_pem("b", 365))];
    let der = pkcs12::truststore(&certs).unwrap();
    // Deterministic: no salt, no MAC.
    assert_eq!(der, pkcs12::truststore(&certs).unwrap());
    let pfx = ::pkcs12::pfx::Pfx::from_der(&der).unwrap();
    assert!(pfx.mac_data.is_none());
    let outer = pfx
        .auth_safe
        .content
        .decode_as::<der::asn1::OctetString>()
        .unwrap();
    let safes: Vec<cms::content_info::ContentInfo> = Vec::from_der(outer.as_bytes()).unwrap();
    let inner = safes[0].content.decode_as::<der::asn1::OctetString>().unwrap();
    let bags: Vec<::pkcs12::safe_bag::SafeBag> = Vec::from_der(inner.as_bytes()).unwrap();
    assert_eq!(bags.len(), 2);
    for (bag, cert) in bags.iter().zip(&certs) {
        assert_eq!(bag.bag_id, ::pkcs12::PKCS_12_CERT_BAG_OID);
        let attributes = bag.bag_attributes.as_ref().unwrap();
        assert!(attributes.iter().any(|a| a.oid == pkcs12::JAVA_TRUSTED_KEY_USAGE));
        // Decoded, a bag's value keeps its explicit [0] wrapper.
        let cert_bag = der::asn1::ContextSpecific::<::pkcs12::cert_type::CertBag>::from_der(&bag.bag_value)
            .unwrap()
            .value;
        assert_eq!(cert_bag.cert_value.as_bytes(), cert.der.as_slice());
    }
}

#[test]
fn openssl_and_keytool_read_the_truststore_without_a_password() {
    use crate::pki::tests::openssl::{openssl, openssl_available, write};
    if !openssl_available("openssl_and_keytool_read_the_truststore_without_a_password") {
        return;
    }
    let certs = [info(&root_pem("alpha", 365)), info(&root_pem("beta", 365))];
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "trust.p12", pkcs12::truststore(&certs).unwrap());
    let (ok, out) = openssl(
        dir.path(),
        &[
            "pkcs12",
            "-info",
            "-nokeys",
            "-passin",
            "pass:",
            "-in",
            "trust.p12",
        ],
    )
    .unwrap();
    assert!(ok, "{out}");
    assert_eq!(out.matches("-----BEGIN CERTIFICATE-----").count(), 2, "{out}");
    assert!(
        out.contains("subject=CN = alpha") && out.contains("subject=CN = beta"),
        "{out}"
    );
    let keytool = std::process::Command::new("keytool")
        .args([
            "-list",
            "-storetype",
            "PKCS12",
            "-keystore",
            "trust.p12",
            "-storepass",
            "",
        ])
        .current_dir(dir.path())
        .output();
    match keytool {
        Ok(output) => {
            let text = String::from_utf8_lossy(&output.stdout);
            assert_eq!(text.matches("trustedCertEntry").count(), 2, "{text}");
            assert!(text.contains(&pkcs12::alias(&certs[0])), "{text}");
        }
        Err(_) => println!("keytool not found: only openssl checked the truststore"),
    }
}

// ---- scenarios against the mocked API server ----

const STATUS_PATH: &str = "/apis/certkeeper.io/v1/bundles/trust/status";

/// Answers a status patch as the API server does: the Bundle with its new status.
fn answer_status(seen: crate::testing::Seen, bundle: &Bundle) {
    let mut object = crate::testing::to_json(bundle);
    object["status"] = seen.body["status"].clone();
    seen.ok(object);
}

#[tokio::test]
async fn a_selected_namespace_receives_the_bundle_and_others_do_not() {
    let pem = root_pem("root", 365);
    let b = bundle(vec![in_line(&pem)], Some(trust_selector()));
    let (bctx, mut api) = bundle_context(Cluster {
        namespaces: vec![namespace("apps", &[("trust", "yes")]), namespace("other", &[])],
        ..Cluster::default()
    });
    let server = async {
        let seen = api
            .expect(Method::PATCH, "/api/v1/namespaces/apps/configmaps/trust")
            .await;
        assert_eq!(seen.body["data"]["ca.crt"], pem);
        assert_eq!(seen.body["metadata"]["labels"][BUNDLE_LABEL], "trust");
        assert_eq!(seen.body["metadata"]["ownerReferences"][0]["uid"], "uid-trust");
        assert_eq!(
            seen.body["metadata"]["annotations"][HASH_ANNOTATION],
            hash_of(&b, &[&pem])
        );
        seen.echo();
        let seen = api.expect(Method::PATCH, STATUS_PATH).await;
        let status = &seen.body["status"];
        assert_eq!(status["conditions"][0]["status"], "True");
        assert_eq!(status["conditions"][0]["reason"], "Synced");
        assert_eq!(status["targets"], 1);
        assert_eq!(status["syncedTargets"], 1);
        assert_eq!(status["certificates"], 1);
        assert_eq!(status["fingerprints"][0], info(&pem).fingerprint_sha256);
        answer_status(seen, &b);
        api
    };
    let (action, mut api) = tokio::join!(run(&b, &bctx), server);
    // Looked at again when the root expires, to drop it then.
    let at_expiry = crate::certificate::schedule::requeue_after(now(), &[info(&pem).not_after]);
    assert_eq!(action, kube::runtime::controller::Action::requeue(at_expiry));
    api.assert_idle();
}

#[tokio::test]
async fn an_unchanged_bundle_writes_nothing() {
    let pem = root_pem("root", 365);
    let mut b = bundle(vec![in_line(&pem)], Some(trust_selector()));
    let (bctx, mut api) = bundle_context(Cluster {
        namespaces: vec![namespace("apps", &[("trust", "yes")])],
        config_maps: vec![target_meta("apps", &hash_of(&b, &[&pem]))],
        ..Cluster::default()
    });
    b.status = Some(crate::bundle::status::distributed(
        &Default::default(),
        &Assembled::new([info(&pem)], now()),
        1,
        1,
        Some(1),
        now(),
    ));
    run(&b, &bctx).await;
    api.assert_idle();
}

#[tokio::test]
async fn a_namespace_relabelled_out_of_the_selector_loses_its_target() {
    let pem = root_pem("root", 365);
    let b = bundle(vec![in_line(&pem)], Some(trust_selector()));
    let hash = hash_of(&b, &[&pem]);
    let (bctx, mut api) = bundle_context(Cluster {
        namespaces: vec![
            namespace("apps", &[("trust", "no")]),
            namespace("web", &[("trust", "yes")]),
        ],
        config_maps: vec![target_meta("apps", &hash), target_meta("web", &hash)],
        ..Cluster::default()
    });
    let server = async {
        api.expect(Method::DELETE, "/api/v1/namespaces/apps/configmaps/trust")
            .await
            .ok(json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}));
        let seen = api.expect(Method::PATCH, STATUS_PATH).await;
        assert_eq!(seen.body["status"]["targets"], 1);
        answer_status(seen, &b);
        api
    };
    let (_, mut api) = tokio::join!(run(&b, &bctx), server);
    api.assert_idle();
}

#[tokio::test]
async fn a_changed_source_rewrites_every_target() {
    let old = root_pem("old", 365);
    let new = root_pem("new", 365);
    let b = bundle(vec![in_line(&new), in_line(&old)], None);
    let stale = hash_of(&b, &[&old]);
    let (bctx, mut api) = bundle_context(Cluster {
        namespaces: vec![namespace("apps", &[]), namespace("web", &[])],
        config_maps: vec![target_meta("apps", &stale), target_meta("web", &stale)],
        ..Cluster::default()
    });
    let server = async {
        for ns in ["apps", "web"] {
            let seen = api
                .expect(
                    Method::PATCH,
                    &format!("/api/v1/namespaces/{ns}/configmaps/trust"),
                )
                .await;
            let written = seen.body["data"]["ca.crt"].as_str().unwrap().to_owned();
            assert_eq!(parse_certificate_chain(written.as_bytes()).unwrap().len(), 2);
            seen.echo();
        }
        let seen = api.expect(Method::PATCH, STATUS_PATH).await;
        assert_eq!(seen.body["status"]["certificates"], 2);
        assert_eq!(seen.body["status"]["syncedTargets"], 2);
        answer_status(seen, &b);
        api
    };
    let (_, mut api) = tokio::join!(run(&b, &bctx), server);
    api.assert_idle();
}

#[tokio::test]
async fn a_missing_source_sets_ready_false_warns_and_leaves_the_targets_alone() {
    let pem = root_pem("root", 365);
    let b = bundle(
        vec![
            in_line(&pem),
            BundleSource {
                secret: Some(KeySource {
                    name: "corporate-roots".into(),
                    key: "ca.crt".into(),
                }),
                ..BundleSource::default()
            },
        ],
        None,
    );
    // A namespace without its target: still nothing is written while a source is missing.
    let (bctx, mut api) = bundle_context(Cluster {
        namespaces: vec![namespace("apps", &[]), namespace("new", &[])],
        config_maps: vec![target_meta("apps", "previous")],
        ..Cluster::default()
    });
    let server = async {
        api.expect(
            Method::GET,
            &format!("/api/v1/namespaces/{CLUSTER_RESOURCE_NAMESPACE}/secrets/corporate-roots"),
        )
        .await
        .not_found();
        let seen = api.expect(Method::PATCH, STATUS_PATH).await;
        let condition = &seen.body["status"]["conditions"][0];
        assert_eq!(condition["status"], "False");
        assert_eq!(condition["reason"], "SourceNotFound");
        assert!(
            condition["message"]
                .as_str()
                .unwrap()
                .contains("certkeeper-system/corporate-roots")
        );
        answer_status(seen, &b);
        let event = api
            .expect(Method::POST, "/apis/events.k8s.io/v1/namespaces/default/events")
            .await;
        assert_eq!(event.body["type"], "Warning");
        assert_eq!(event.body["reason"], "SourceNotFound");
        assert_eq!(event.body["regarding"]["kind"], "Bundle");
        event.echo();
        api
    };
    let (_, mut api) = tokio::join!(run(&b, &bctx), server);
    api.assert_idle();
}

#[tokio::test]
async fn a_source_that_does_not_parse_is_invalid_and_changes_no_target() {
    let b = bundle(
        vec![BundleSource {
            config_map: Some(KeySource {
                name: "roots".into(),
                key: "ca.crt".into(),
            }),
            ..BundleSource::default()
        }],
        None,
    );
    let (bctx, mut api) = bundle_context(Cluster {
        namespaces: vec![namespace("apps", &[])],
        config_maps: vec![target_meta("apps", "previous")],
        ..Cluster::default()
    });
    let server = async {
        api.expect(
            Method::GET,
            &format!("/api/v1/namespaces/{CLUSTER_RESOURCE_NAMESPACE}/configmaps/roots"),
        )
        .await
        .ok(json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "roots", "namespace": CLUSTER_RESOURCE_NAMESPACE},
                   "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n"}}));
        let seen = api.expect(Method::PATCH, STATUS_PATH).await;
        assert_eq!(seen.body["status"]["conditions"][0]["reason"], "InvalidSource");
        answer_status(seen, &b);
        api.expect(Method::POST, "/apis/events.k8s.io/v1/namespaces/default/events")
            .await
            .echo();
        api
    };
    let (_, mut api) = tokio::join!(run(&b, &bctx), server);
    api.assert_idle();
}

#[tokio::test]
async fn an_issuer_source_gives_its_current_and_previous_anchors_in_a_secret_and_truststore_too() {
    let current = root_pem("current", 365);
    let previous = root_pem("previous", 365);
    let mut issuer = ca_cluster_issuer("ca", "root-ca");
    let anchor = |pem: &str, role| TrustAnchor {
        fingerprint_sha256: info(pem).fingerprint_sha256,
        not_after: Some(Time(info(pem).not_after)),
        role,
        since: None,
        certificate: pem.to_owned(),
    };
    issuer.status = Some(IssuerStatus {
        trust_anchors: vec![
            anchor(&current, TrustAnchorRole::Current),
            anchor(&previous, TrustAnchorRole::Previous),
        ],
        ..IssuerStatus::default()
    });
    let mut b = bundle(
        vec![BundleSource {
            issuer: Some(IssuerSource {
                kind: "ClusterIssuer".into(),
                name: "ca".into(),
                namespace: None,
            }),
            ..BundleSource::default()
        }],
        None,
    );
    b.spec.target.secret = Some(TargetKey { key: "ca.crt".into() });
    b.spec.target.pkcs12 = Some(TargetKey {
        key: "truststore.p12".into(),
    });
    let (bctx, mut api) = bundle_context(Cluster {
        namespaces: vec![namespace("apps", &[])],
        cluster_issuers: vec![issuer],
        ..Cluster::default()
    });
    let server = async {
        let seen = api
            .expect(Method::PATCH, "/api/v1/namespaces/apps/configmaps/trust")
            .await;
        let pem = seen.body["data"]["ca.crt"].as_str().unwrap().to_owned();
        let fingerprints: Vec<String> = parse_certificate_chain(pem.as_bytes())
            .unwrap()
            .into_iter()
            .map(|c| c.fingerprint_sha256)
            .collect();
        assert!(fingerprints.contains(&info(&current).fingerprint_sha256));
        assert!(fingerprints.contains(&info(&previous).fingerprint_sha256));
        assert!(seen.body["binaryData"]["truststore.p12"].is_string());
        seen.echo();
        let seen = api
            .expect(Method::PATCH, "/api/v1/namespaces/apps/secrets/trust")
            .await;
        assert_eq!(seen.body["type"], "Opaque");
        assert_eq!(seen.body["data"]["ca.crt"], b64(pem.as_bytes()));
        assert!(seen.body["data"]["truststore.p12"].is_string());
        seen.echo();
        answer_status(api.expect(Method::PATCH, STATUS_PATH).await, &b);
        api
    };
    let (_, mut api) = tokio::join!(run(&b, &bctx), server);
    api.assert_idle();
}

#[tokio::test]
async fn a_deleted_bundle_is_left_to_the_garbage_collector() {
    let pem = root_pem("root", 365);
    let mut b = bundle(vec![in_line(&pem)], None);
    b.metadata.deletion_timestamp = Some(Time(now()));
    let (bctx, mut api) = bundle_context(Cluster {
        namespaces: vec![namespace("apps", &[])],
        config_maps: vec![target_meta("apps", "previous")],
        ..Cluster::default()
    });
    let action = run(&b, &bctx).await;
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    // The targets carry the Bundle as their controlling owner (checked on every write above),
    // so the API server's garbage collector removes them, controller running or not.
    api.assert_idle();
    assert_eq!(b.name_any(), "trust");
}

#[tokio::test]
async fn nothing_is_decided_before_the_caches_have_listed() {
    let pem = root_pem("root", 365);
    let b = bundle(vec![in_line(&pem)], None);
    let (ctx, mut api) = context(vec![], vec![], now());
    let bctx = Arc::new(BundleContext {
        ctx,
        namespaces: plain_store(vec![]),
        config_map_targets: plain_store(vec![]),
        secret_targets: plain_store(vec![]),
        issuers: crate::testing::store(vec![]),
        cluster_issuers: crate::testing::store(vec![]),
        synced: vec![SyncFlag::default()],
        written: Default::default(),
    });
    let action = run(&b, &bctx).await;
    assert_ne!(action, kube::runtime::controller::Action::await_change());
    api.assert_idle();
}

#[tokio::test]
async fn a_target_someone_else_changed_is_written_again_and_an_untouched_one_is_not() {
    let pem = root_pem("root", 365);
    let mut b = bundle(vec![in_line(&pem)], None);
    b.status = Some(crate::bundle::status::distributed(
        &Default::default(),
        &Assembled::new([info(&pem)], now()),
        1,
        1,
        Some(1),
        now(),
    ));
    let cached_at = |version: &str| {
        let mut target = target_meta::<ConfigMap>("apps", &hash_of(&b, &[&pem]));
        target.metadata.resource_version = Some(version.into());
        target
    };
    // The cache shows the version certkeeper's write returned: nothing to do.
    let (bctx, mut api) = bundle_context(Cluster {
        namespaces: vec![namespace("apps", &[])],
        config_maps: vec![cached_at("5")],
        ..Cluster::default()
    });
    bctx.written.wrote("ConfigMap", "apps", "trust", Some("5".into()));
    run(&b, &bctx).await;
    api.assert_idle();

    // Someone edited it since (same hash annotation, new version): written again.
    let (bctx, mut api) = bundle_context(Cluster {
        namespaces: vec![namespace("apps", &[])],
        config_maps: vec![cached_at("7")],
        ..Cluster::default()
    });
    bctx.written.wrote("ConfigMap", "apps", "trust", Some("5".into()));
    let server = async {
        let seen = api
            .expect(Method::PATCH, "/api/v1/namespaces/apps/configmaps/trust")
            .await;
        let mut written = seen.body.clone();
        written["metadata"]["resourceVersion"] = json!("8");
        seen.ok(written);
        api
    };
    let (_, mut api) = tokio::join!(run(&b, &bctx), server);
    api.assert_idle();
    // The version that write returned is what the next look compares with.
    let seen_at_8 = targets::existing_targets("trust", "ConfigMap", [&cached_at("8")], &bctx.written);
    assert_eq!(seen_at_8["apps"], Some(hash_of(&b, &[&pem])));
    let seen_at_7 = targets::existing_targets("trust", "ConfigMap", [&cached_at("7")], &bctx.written);
    assert_eq!(seen_at_7["apps"], None);
}

#[tokio::test]
async fn a_namespace_that_refuses_its_target_does_not_keep_the_others_from_theirs() {
    let pem = root_pem("root", 365);
    let b = bundle(vec![in_line(&pem)], None);
    let (bctx, mut api) = bundle_context(Cluster {
        namespaces: vec![namespace("full", &[]), namespace("web", &[])],
        ..Cluster::default()
    });
    let server = async {
        api.expect(Method::PATCH, "/api/v1/namespaces/full/configmaps/trust")
            .await
            .respond(
                http::StatusCode::FORBIDDEN,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden",
                       "code": 403, "message": "exceeded quota: count/configmaps=10"}),
            );
        api.expect(Method::PATCH, "/api/v1/namespaces/web/configmaps/trust")
            .await
            .echo();
        let seen = api.expect(Method::PATCH, STATUS_PATH).await;
        let status = &seen.body["status"];
        assert_eq!(status["conditions"][0]["status"], "False");
        assert_eq!(status["conditions"][0]["reason"], "TargetsNotSynced");
        assert_eq!(
            (&status["targets"], &status["syncedTargets"]),
            (&json!(2), &json!(1))
        );
        answer_status(seen, &b);
        let event = api
            .expect(Method::POST, "/apis/events.k8s.io/v1/namespaces/default/events")
            .await;
        assert_eq!(event.body["reason"], "TargetsNotSynced");
        event.echo();
        api
    };
    let (result, mut api) = tokio::join!(
        reconcile(Arc::new(DeserializeGuard(Ok(b.clone()))), bctx.clone()),
        server
    );
    // Retried with the error policy's backoff, naming the namespace that refused.
    let error = result.unwrap_err();
    assert!(error.to_string().contains("full/trust"), "{error}");
    assert!(!error.is_transient());
    api.assert_idle();
}

#[test]
fn the_example_bundle_is_valid_and_selects_the_example_namespace() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/examples");
    let text = std::fs::read_to_string(dir.join("trust/bundle.yaml")).unwrap();
    let value: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    kube::core::cel::validate_cel_schema::<Bundle>(&value, None).unwrap();
    let example: Bundle = serde_json::from_value(value.clone()).unwrap();
    assert_eq!(
        crate::testing::to_json(&example),
        value,
        "a field the type does not know"
    );
    assert!(super::sources::source_kind(&example.spec.sources[0]).is_ok());
    let namespace: Namespace =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("namespace.yaml")).unwrap()).unwrap();
    let selector = NamespaceSelector::new(example.spec.target.namespace_selector.as_ref()).unwrap();
    assert!(selector.matches(namespace.metadata.labels.as_ref().unwrap()));
}
