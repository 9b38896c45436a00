//! The decision as the SPEC states it, policy by policy, without a cluster.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::core::DeserializeGuard;
use kube::runtime::watcher::Event;
use serde_json::json;

use super::*;
use crate::api::{CertificatePolicy, CertificateSpec};
use crate::certificate::spec::{ValidatedSpec, validate};

/// A policy from its spec, as a user would write it.
fn policy(name: &str, spec: serde_json::Value) -> CertificatePolicy {
    let mut policy = CertificatePolicy::new(name, serde_json::from_value(spec).unwrap());
    policy.metadata.generation = Some(1);
    policy
}

fn compiled(name: &str, spec: serde_json::Value) -> Arc<CompiledPolicy> {
    Arc::new(CompiledPolicy::compile(&policy(name, spec)))
}

/// A Certificate spec after defaulting, from what a user would write (issuer `mesh-ca`, a
/// ClusterIssuer, unless the spec names another).
fn request_spec(spec: serde_json::Value) -> ValidatedSpec {
    let mut spec = spec;
    let object = spec.as_object_mut().unwrap();
    object.entry("secretName").or_insert(json!("tls"));
    object
        .entry("issuerRef")
        .or_insert(json!({"kind": "ClusterIssuer", "name": "mesh-ca"}));
    let spec: CertificateSpec = serde_json::from_value(spec).unwrap();
    validate(&spec).unwrap()
}

const MESH_CA: IssuerId<'static> = IssuerId {
    kind: "ClusterIssuer",
    name: "mesh-ca",
    require_policy: false,
};

fn decide_in(
    policies: &[Arc<CompiledPolicy>],
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
    spec: &ValidatedSpec,
) -> PolicyDecision {
    let request = Request {
        namespace,
        name: "api",
        spec,
    };
    decide(policies, &MESH_CA, labels, &request, false)
}

/// The README's example: each namespace labelled `mesh: on` gets exactly its own SPIFFE IDs and
/// service names, ECDSA only, at most 24 h, never a CA.
fn mesh_policy() -> Arc<CompiledPolicy> {
    compiled(
        "mesh-identities",
        json!({
            "selector": {
                "issuerRef": {"kind": "ClusterIssuer", "name": "mesh-ca"},
                "namespaces": {"matchLabels": {"mesh": "on"}},
            },
            "allowed": {
                "uris": {"values": ["spiffe://cluster.local/ns/{namespace}/sa/*"], "required": true},
                "dnsNames": {"values": ["*.{namespace}.svc", "*.{namespace}.svc.cluster.local"]},
                "usages": ["digital signature", "server auth", "client auth"],
            },
            "constraints": {
                "maxDuration": "24h",
                "privateKey": {"algorithm": "ECDSA"},
            },
        }),
    )
}

fn mesh_on() -> BTreeMap<String, String> {
    BTreeMap::from([("mesh".to_owned(), "on".to_owned())])
}

fn workload(namespace: &str) -> ValidatedSpec {
    request_spec(json!({
        "uris": [format!("spiffe://cluster.local/ns/{namespace}/sa/api")],
        "dnsNames": [format!("api.{namespace}.svc")],
        "duration": "24h",
    }))
}

#[test]
fn an_issuer_no_policy_selects_signs_what_it_is_asked() {
    let other = compiled("other", json!({"selector": {"issuerRef": {"name": "team-*"}}}));
    let spec = workload("payments");
    assert_eq!(
        decide_in(&[other], "payments", Some(&mesh_on()), &spec),
        PolicyDecision::Unguarded
    );
}

#[test]
fn each_namespace_gets_its_own_identity_and_is_refused_the_others() {
    let policies = [mesh_policy()];
    assert_eq!(
        decide_in(&policies, "payments", Some(&mesh_on()), &workload("payments")),
        PolicyDecision::Allowed("mesh-identities".into())
    );
    let PolicyDecision::Denied(why) = decide_in(&policies, "shop", Some(&mesh_on()), &workload("payments"))
    else {
        panic!("another namespace's identity was allowed");
    };
    assert_eq!(
        why,
        "denied by CertificatePolicy \"mesh-identities\": spec.dnsNames \"api.payments.svc\" is not allowed \
         (allowed: *.{namespace}.svc, *.{namespace}.svc.cluster.local)"
    );
}

#[test]
fn a_guarded_issuer_denies_a_namespace_no_policy_selects() {
    let policies = [mesh_policy()];
    let unlabelled = BTreeMap::new();
    assert_eq!(
        decide_in(&policies, "payments", Some(&unlabelled), &workload("payments")),
        PolicyDecision::Denied(
            "no CertificatePolicy selects namespace \"payments\" for ClusterIssuer \"mesh-ca\"".into()
        )
    );
}

#[test]
fn require_policy_guards_every_issuer() {
    let spec = workload("payments");
    let request = Request {
        namespace: "payments",
        name: "api",
        spec: &spec,
    };
    let denied = PolicyDecision::Denied(
        "no CertificatePolicy selects namespace \"payments\" for ClusterIssuer \"mesh-ca\"".into(),
    );
    assert_eq!(decide(&[], &MESH_CA, None, &request, true), denied);
    let requiring = IssuerId {
        require_policy: true,
        ..MESH_CA
    };
    assert_eq!(decide(&[], &requiring, None, &request, false), denied);
    assert_eq!(
        decide(&[], &MESH_CA, None, &request, false),
        PolicyDecision::Unguarded
    );
}

#[test]
fn labels_not_known_yet_decide_nothing() {
    let decision = decide_in(&[mesh_policy()], "payments", None, &workload("payments"));
    assert!(matches!(decision, PolicyDecision::Unavailable(_)), "{decision:?}");
}

#[test]
fn a_field_the_policy_does_not_list_must_be_absent() {
    let spec = request_spec(json!({
        "uris": ["spiffe://cluster.local/ns/payments/sa/api"],
        "emailAddresses": ["ops@example.com"],
        "duration": "24h",
    }));
    let PolicyDecision::Denied(why) = decide_in(&[mesh_policy()], "payments", Some(&mesh_on()), &spec) else {
        panic!("an unlisted field was allowed");
    };
    assert!(
        why.ends_with(
            "spec.emailAddresses \"ops@example.com\" is not allowed (the policy allows no emailAddresses)"
        ),
        "{why}"
    );
}

#[test]
fn a_required_field_must_be_set() {
    let spec = request_spec(json!({"dnsNames": ["api.payments.svc"], "duration": "24h"}));
    let PolicyDecision::Denied(why) = decide_in(&[mesh_policy()], "payments", Some(&mesh_on()), &spec) else {
        panic!("a request without the required URI was allowed");
    };
    assert!(why.ends_with("spec.uris is required"), "{why}");
}

#[test]
fn a_ca_is_allowed_only_when_the_policy_says_so() {
    let spec = request_spec(json!({
        "uris": ["spiffe://cluster.local/ns/payments/sa/api"],
        "isCA": true,
        "duration": "24h",
    }));
    let PolicyDecision::Denied(why) = decide_in(&[mesh_policy()], "payments", Some(&mesh_on()), &spec) else {
        panic!("a sub-CA was allowed");
    };
    assert!(
        why.ends_with("spec.isCA: a CA certificate is not allowed"),
        "{why}"
    );
}

#[test]
fn the_default_lifetime_counts_against_a_maximum() {
    // No duration: 2160h, far above the 24h the policy allows.
    let spec = request_spec(json!({"uris": ["spiffe://cluster.local/ns/payments/sa/api"]}));
    let PolicyDecision::Denied(why) = decide_in(&[mesh_policy()], "payments", Some(&mesh_on()), &spec) else {
        panic!("the default 90 days were allowed");
    };
    assert!(
        why.ends_with("spec.duration 2160h is longer than the maximum 24h"),
        "{why}"
    );
}

#[test]
fn the_key_algorithm_and_size_are_bounded() {
    let rsa = request_spec(json!({
        "uris": ["spiffe://cluster.local/ns/payments/sa/api"],
        "duration": "24h",
        "privateKey": {"algorithm": "RSA", "size": 2048},
        "usages": ["digital signature", "server auth"],
    }));
    let PolicyDecision::Denied(why) = decide_in(&[mesh_policy()], "payments", Some(&mesh_on()), &rsa) else {
        panic!("an RSA key was allowed");
    };
    assert!(
        why.ends_with("spec.privateKey.algorithm RSA is not allowed (allowed: ECDSA)"),
        "{why}"
    );

    let sized = compiled(
        "sized",
        json!({
            "allowed": {"dnsNames": {"values": ["*.payments.svc"]}},
            "constraints": {"privateKey": {"minSize": 3072}},
        }),
    );
    let spec = request_spec(json!({"dnsNames": ["a.payments.svc"], "privateKey": {"algorithm": "RSA"}}));
    let PolicyDecision::Denied(why) = decide_in(&[sized], "payments", None, &spec) else {
        panic!("a 2048-bit key was allowed");
    };
    assert!(
        why.ends_with("spec.privateKey.size 2048 is below the minimum 3072"),
        "{why}"
    );
}

#[test]
fn usages_are_the_defaults_unless_the_policy_lists_more() {
    let names_only = compiled(
        "names",
        json!({"allowed": {"dnsNames": {"values": ["*.payments.svc"]}}}),
    );
    let defaults = request_spec(json!({"dnsNames": ["a.payments.svc"]}));
    assert_eq!(
        decide_in(std::slice::from_ref(&names_only), "payments", None, &defaults),
        PolicyDecision::Allowed("names".into())
    );
    let signing = request_spec(json!({"dnsNames": ["a.payments.svc"], "usages": ["code signing"]}));
    let PolicyDecision::Denied(why) = decide_in(&[names_only], "payments", None, &signing) else {
        panic!("code signing was allowed");
    };
    assert!(
        why.contains("spec.usages \"code signing\" is not allowed"),
        "{why}"
    );
}

#[test]
fn one_policy_allowing_all_of_it_is_enough() {
    let narrow = compiled(
        "narrow",
        json!({"selector": {"issuerRef": {"name": "mesh-*"}}, "allowed": {"dnsNames": {"values": ["a.payments.svc"]}}}),
    );
    let wide = compiled(
        "wide",
        json!({"selector": {"issuerRef": {"name": "mesh-ca"}}, "allowed": {"dnsNames": {"values": ["*.payments.svc"]}}}),
    );
    let spec = request_spec(json!({"dnsNames": ["b.payments.svc"]}));
    assert_eq!(
        decide_in(&[narrow.clone(), wide], "payments", None, &spec),
        PolicyDecision::Allowed("wide".into())
    );
    let PolicyDecision::Denied(why) = decide_in(&[narrow], "payments", None, &spec) else {
        panic!("denied by the only policy, yet allowed");
    };
    assert!(
        why.starts_with("denied by CertificatePolicy \"narrow\": spec.dnsNames"),
        "{why}"
    );
}

#[test]
fn a_policy_that_does_not_parse_still_guards_and_allows_nothing() {
    let broken = compiled(
        "broken",
        json!({
            "selector": {"issuerRef": {"kind": "ClusterIssuer", "name": "mesh-ca"}},
            "allowed": {"dnsNames": {"values": ["*.payments.svc"]}},
            "constraints": {"minDuration": "48h", "maxDuration": "24h"},
        }),
    );
    let why = broken.rules.as_ref().err().cloned().unwrap();
    assert!(why.contains("minDuration is longer than maxDuration"), "{why}");
    let spec = request_spec(json!({"dnsNames": ["a.payments.svc"]}));
    let PolicyDecision::Denied(denial) = decide_in(&[broken], "payments", None, &spec) else {
        panic!("a broken policy allowed a request");
    };
    assert!(
        denial.contains("CertificatePolicy \"broken\" is not Ready"),
        "{denial}"
    );
}

#[test]
fn a_cel_rule_says_what_patterns_cannot() {
    let ruled = compiled(
        "ruled",
        json!({
            "allowed": {"dnsNames": {"values": ["*.payments.svc", "*.shop.svc"]}},
            "validations": [{
                "rule": "self.dnsNames.all(n, n.endsWith('.' + cr.namespace + '.svc'))",
                "message": "every DNS name must be in the Certificate's own namespace",
            }],
        }),
    );
    let own = request_spec(json!({"dnsNames": ["a.payments.svc"]}));
    assert_eq!(
        decide_in(std::slice::from_ref(&ruled), "payments", None, &own),
        PolicyDecision::Allowed("ruled".into())
    );
    let foreign = request_spec(json!({"dnsNames": ["a.shop.svc"]}));
    let PolicyDecision::Denied(why) = decide_in(&[ruled], "payments", None, &foreign) else {
        panic!("the rule did not deny");
    };
    assert!(
        why.ends_with("every DNS name must be in the Certificate's own namespace"),
        "{why}"
    );
}

fn guard(policy: CertificatePolicy) -> DeserializeGuard<CertificatePolicy> {
    DeserializeGuard(Ok(policy))
}

#[test]
fn the_index_tells_what_changed_and_nothing_for_a_status_write() {
    let policies = Policies::unlisted(false);
    let spec = workload("payments");
    let request = Request {
        namespace: "payments",
        name: "api",
        spec: &spec,
    };
    assert!(matches!(
        policies.decide(&MESH_CA, &request),
        PolicyDecision::Unavailable(_)
    ));

    let mesh = policy(
        "mesh",
        json!({"selector": {"issuerRef": {"name": "mesh-ca"}}, "allowed": {"uris": {"values": ["spiffe://cluster.local/ns/{namespace}/sa/*"]}, "dnsNames": {"values": ["*.{namespace}.svc"]}}}),
    );
    policies.observe(&Event::Init);
    let changed = policies.observe(&Event::InitApply(guard(mesh.clone())));
    assert_eq!(changed.0.len(), 1);
    policies.observe(&Event::InitDone);
    policies.observe_namespace(&Event::Init);
    policies.observe_namespace(&Event::InitDone);
    assert_eq!(
        policies.decide(&MESH_CA, &request),
        PolicyDecision::Allowed("mesh".into())
    );

    // Our own status write: same spec, nothing to look at again.
    let mut written = mesh.clone();
    written.status = Some(Default::default());
    assert!(policies.observe(&Event::Apply(guard(written))).0.is_empty());

    // Tightened: both versions are reported, and the decision follows at once.
    let mut tightened = mesh.clone();
    tightened.spec.allowed.as_mut().unwrap().dns_names = None;
    tightened.metadata.generation = Some(2);
    assert_eq!(policies.observe(&Event::Apply(guard(tightened))).0.len(), 2);
    assert!(matches!(
        policies.decide(&MESH_CA, &request),
        PolicyDecision::Denied(_)
    ));

    // A re-list that no longer lists it: gone, and reported.
    policies.observe(&Event::Init);
    let changed = policies.observe(&Event::InitDone);
    assert_eq!(changed.0.len(), 1);
    assert_eq!(policies.decide(&MESH_CA, &request), PolicyDecision::Unguarded);
}
