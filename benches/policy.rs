//! The issuance policy's cost per Certificate reconcile: 10,000 Certificates in 100 team
//! namespaces, under 100 CertificatePolicies (one per team: its SPIFFE IDs and Service names,
//! selected by namespace label, plus one cluster-wide policy with a CEL rule), all guarding one
//! ClusterIssuer. Judging reads only memory (no API request): the figure is the decision alone.

use std::collections::BTreeMap;
use std::hint::black_box;

use certkeeper::api::{CertificatePolicy, CertificateSpec};
use certkeeper::certificate::spec::{ValidatedSpec, validate};
use certkeeper::issuance_policy::{CompiledPolicy, IssuerId, Policies, PolicyDecision, Request};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

const TEAMS: usize = 100;
const CERTIFICATES: usize = 10_000;

fn team_policy(team: usize) -> CompiledPolicy {
    let spec = json!({
        "selector": {
            "issuerRef": {"kind": "ClusterIssuer", "name": "mesh-ca"},
            "namespaces": {"matchNames": [format!("team-{team}")], "matchLabels": {"mesh": "on"}},
        },
        "allowed": {
            "uris": {"values": ["spiffe://cluster.local/ns/{namespace}/sa/*"], "required": true},
            "dnsNames": {"values": ["*.{namespace}.svc", "*.{namespace}.svc.cluster.local"]},
            "usages": ["digital signature", "server auth", "client auth"],
        },
        "constraints": {"maxDuration": "24h", "privateKey": {"algorithm": "ECDSA"}},
    });
    let policy = CertificatePolicy::new(
        &format!("team-{team}"),
        serde_json::from_value(spec).expect("policy"),
    );
    CompiledPolicy::compile(&policy)
}

/// The 100th policy: cluster-wide, with a CEL rule every request is judged by.
fn cel_policy() -> CompiledPolicy {
    let spec = json!({
        "selector": {"issuerRef": {"kind": "ClusterIssuer", "name": "mesh-ca"}},
        "allowed": {
            "uris": {"values": ["spiffe://cluster.local/ns/{namespace}/sa/*"]},
            "dnsNames": {"values": ["*.{namespace}.svc"]},
        },
        "validations": [{"rule": "self.dnsNames.all(n, n.endsWith('.' + cr.namespace + '.svc'))"}],
    });
    CompiledPolicy::compile(&CertificatePolicy::new(
        "cel",
        serde_json::from_value(spec).expect("policy"),
    ))
}

fn workload(index: usize) -> (String, String, ValidatedSpec) {
    let namespace = format!("team-{}", index % TEAMS);
    let name = format!("svc-{index}");
    let spec: CertificateSpec = serde_json::from_value(json!({
        "secretName": format!("{name}-tls"),
        "duration": "24h",
        "uris": [format!("spiffe://cluster.local/ns/{namespace}/sa/{name}")],
        "dnsNames": [format!("{name}.{namespace}.svc")],
        "issuerRef": {"kind": "ClusterIssuer", "name": "mesh-ca"},
    }))
    .expect("certificate");
    let spec = validate(&spec).expect("valid spec");
    (namespace, name, spec)
}

fn bench(c: &mut Criterion) {
    let mut policies: Vec<CompiledPolicy> = (0..TEAMS - 1).map(team_policy).collect();
    policies.push(cel_policy());
    let labels: BTreeMap<String, BTreeMap<String, String>> = (0..TEAMS)
        .map(|t| {
            (
                format!("team-{t}"),
                BTreeMap::from([("mesh".to_owned(), "on".to_owned())]),
            )
        })
        .collect();
    let index = Policies::fixed(policies, labels, false);
    let workloads: Vec<_> = (0..CERTIFICATES).map(workload).collect();
    let issuer = IssuerId {
        kind: "ClusterIssuer",
        name: "mesh-ca",
        require_policy: false,
    };
    // Every one of them is allowed (the decision walks to the allowing policy).
    for (namespace, name, spec) in &workloads {
        let request = Request {
            namespace,
            name,
            spec,
        };
        assert!(matches!(
            index.decide(&issuer, &request),
            PolicyDecision::Allowed(_)
        ));
    }
    let mut next = 0;
    c.bench_function(
        "policy_decision_1_of_10000_certificates_under_100_policies",
        |b| {
            b.iter(|| {
                let (namespace, name, spec) = &workloads[next % CERTIFICATES];
                next += 1;
                let request = Request {
                    namespace,
                    name,
                    spec,
                };
                black_box(index.decide(&issuer, &request))
            })
        },
    );
    let denied = workload(7);
    let impostor = (denied.0.clone(), denied.1.clone(), workload(8).2);
    c.bench_function("policy_decision_denied_under_100_policies", |b| {
        b.iter(|| {
            let request = Request {
                namespace: &impostor.0,
                name: &impostor.1,
                spec: &impostor.2,
            };
            black_box(index.decide(&issuer, &request))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
