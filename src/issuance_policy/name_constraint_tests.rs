//! `allowed.nameConstraints`: a team's sub-CA may only be asked for with X.509 name constraints
//! that keep it inside what the policy gives the team.

use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::api::{CertificatePolicy, CertificateSpec};
use crate::certificate::spec::validate;

const MESH_CA: IssuerId<'static> = IssuerId {
    kind: "ClusterIssuer",
    name: "mesh-ca",
    require_policy: false,
};

fn compiled(spec: serde_json::Value) -> Arc<CompiledPolicy> {
    let mut policy = CertificatePolicy::new("team-cas", serde_json::from_value(spec).unwrap());
    policy.metadata.generation = Some(1);
    Arc::new(CompiledPolicy::compile(&policy))
}

/// Each namespace may have a CA for its own service domain, its own mail domain and the
/// cluster's 10.8.0.0/16.
fn team_cas() -> Arc<CompiledPolicy> {
    compiled(json!({
        "selector": {"issuerRef": {"name": "mesh-ca"}},
        "allowed": {
            "commonName": {"values": ["{namespace} CA"]},
            "isCA": true,
            "nameConstraints": {"permitted": {
                "dnsDomains": ["{namespace}.svc", "{namespace}.example.com"],
                "ipRanges": ["10.8.0.0/16"],
            }},
        },
    }))
}

/// A CA request of namespace `team` with these name constraints (`null`: none).
fn decide_ca(
    policy: &Arc<CompiledPolicy>,
    namespace: &str,
    constraints: serde_json::Value,
) -> PolicyDecision {
    let mut spec = json!({
        "secretName": "ca",
        "issuerRef": {"kind": "ClusterIssuer", "name": "mesh-ca"},
        "commonName": format!("{namespace} CA"),
        "isCA": true,
    });
    if !constraints.is_null() {
        spec["nameConstraints"] = constraints;
    }
    let spec: CertificateSpec = serde_json::from_value(spec).unwrap();
    let spec = validate(&spec).unwrap();
    let request = Request {
        namespace,
        name: "ca",
        spec: &spec,
    };
    decide(std::slice::from_ref(policy), &MESH_CA, None, &request, false)
}

fn denied(decision: PolicyDecision) -> String {
    match decision {
        PolicyDecision::Denied(why) => why,
        other => panic!("allowed: {other:?}"),
    }
}

#[test]
fn a_ca_constrained_to_its_own_domains_is_allowed() {
    let policy = team_cas();
    for constraints in [
        json!({"permitted": {"dnsDomains": ["payments.svc"], "ipRanges": ["10.8.0.0/16"]}}),
        // Narrower is within: a subdomain, subdomains only, a smaller range; excluded entries
        // only narrow further.
        json!({
            "critical": true,
            "permitted": {
                "dnsDomains": ["api.payments.svc", ".payments.example.com"],
                "ipRanges": ["10.8.3.0/24"],
            },
            "excluded": {"dnsDomains": ["admin.payments.svc"], "uriDomains": ["evil.example"]},
        }),
        // Case does not matter in DNS.
        json!({"permitted": {"dnsDomains": ["Payments.SVC"], "ipRanges": ["10.8.0.0/17"]}}),
    ] {
        assert_eq!(
            decide_ca(&policy, "payments", constraints.clone()),
            PolicyDecision::Allowed("team-cas".into()),
            "{constraints}"
        );
    }
}

#[test]
fn a_ca_reaching_outside_its_domains_is_denied() {
    let policy = team_cas();
    let cases = [
        (
            json!({"permitted": {"dnsDomains": ["shop.svc"], "ipRanges": ["10.8.0.0/16"]}}),
            "spec.nameConstraints.permitted.dnsDomains \"shop.svc\" is not within payments.svc, payments.example.com",
        ),
        // The parent domain is wider than the one allowed.
        (
            json!({"permitted": {"dnsDomains": ["svc"], "ipRanges": ["10.8.0.0/16"]}}),
            "spec.nameConstraints.permitted.dnsDomains \"svc\" is not within payments.svc, payments.example.com",
        ),
        // A namespace that is a prefix of another gets only its own.
        (
            json!({"permitted": {"dnsDomains": ["payments-admin.svc"], "ipRanges": ["10.8.0.0/16"]}}),
            "spec.nameConstraints.permitted.dnsDomains \"payments-admin.svc\" is not within payments.svc, payments.example.com",
        ),
        (
            json!({"permitted": {"dnsDomains": ["payments.svc"], "ipRanges": ["10.0.0.0/8"]}}),
            "spec.nameConstraints.permitted.ipRanges \"10.0.0.0/8\" is not within 10.8.0.0/16",
        ),
        (
            json!({"permitted": {"dnsDomains": ["payments.svc"], "ipRanges": ["fd00::/8"]}}),
            "spec.nameConstraints.permitted.ipRanges \"fd00::/8\" is not within 10.8.0.0/16",
        ),
        // A type the policy lists must be constrained: otherwise the CA signs any such name.
        (
            json!({"permitted": {"ipRanges": ["10.8.0.0/16"]}}),
            "spec.nameConstraints.permitted.dnsDomains is required: a CA without it could sign any name of \
             that type (allowed: within payments.svc, payments.example.com)",
        ),
        (
            json!(null),
            "spec.nameConstraints.permitted.dnsDomains is required: a CA without it could sign any name of \
             that type (allowed: within payments.svc, payments.example.com)",
        ),
        // A type the policy does not list may not be permitted.
        (
            json!({"permitted": {
                "dnsDomains": ["payments.svc"],
                "ipRanges": ["10.8.0.0/16"],
                "uriDomains": ["payments.svc"],
            }}),
            "spec.nameConstraints.permitted.uriDomains \"payments.svc\" is not allowed (the policy allows no uriDomains)",
        ),
    ];
    for (constraints, reason) in cases {
        let why = denied(decide_ca(&policy, "payments", constraints.clone()));
        assert_eq!(
            why,
            format!("denied by CertificatePolicy \"team-cas\": {reason}"),
            "{constraints}"
        );
    }
}

#[test]
fn a_policy_without_name_constraints_allows_none_in_a_request() {
    let policy = compiled(json!({"allowed": {"commonName": {"values": ["* CA"]}, "isCA": true}}));
    assert_eq!(
        decide_ca(&policy, "payments", json!(null)),
        PolicyDecision::Allowed("team-cas".into())
    );
    let why = denied(decide_ca(
        &policy,
        "payments",
        json!({"permitted": {"dnsDomains": ["payments.svc"]}}),
    ));
    assert!(
        why.ends_with("spec.nameConstraints is not allowed (the policy allows no nameConstraints)"),
        "{why}"
    );
}

#[test]
fn name_constraint_bounds_that_do_not_parse_make_the_policy_not_ready() {
    let cases = [
        (
            json!({"dnsDomains": ["*.{namespace}.svc"]}),
            "spec.allowed.nameConstraints.permitted.dnsDomains: \"*.{namespace}.svc\" is a pattern; write a \
             domain: its subdomains are within it (team.svc covers a.team.svc)",
        ),
        (
            json!({"dnsDomains": ["team-{namespace}.svc"]}),
            "spec.allowed.nameConstraints.permitted.dnsDomains: \"team-{namespace}.svc\" holds a placeholder \
             that is not a whole label ({namespace} or {name})",
        ),
        (
            json!({"ipRanges": ["10.8.0.0/33"]}),
            "spec.allowed.nameConstraints.permitted.ipRanges: ",
        ),
        (
            json!({"uriDomains": []}),
            "spec.allowed.nameConstraints.permitted.uriDomains lists nothing, so no CA could be allowed; leave \
             uriDomains out to allow no uriDomains",
        ),
        (
            json!({"emailAddresses": ["a@@{namespace}.example"]}),
            "spec.allowed.nameConstraints.permitted.emailAddresses: \"a@@{namespace}.example\" ",
        ),
    ];
    for (permitted, reason) in cases {
        let policy =
            compiled(json!({"allowed": {"isCA": true, "nameConstraints": {"permitted": permitted}}}));
        let Err(why) = &policy.rules else {
            panic!("{permitted} compiled");
        };
        assert!(why.starts_with(reason), "{why}");
    }
}

#[test]
fn email_and_uri_bounds_take_the_namespace() {
    let policy = compiled(json!({
        "allowed": {
            "commonName": {"values": ["{namespace} CA"]},
            "isCA": true,
            "nameConstraints": {"permitted": {
                "emailAddresses": ["{namespace}.example.com", "ops@example.com"],
                "uriDomains": [".{namespace}.mesh.local"],
            }},
        },
    }));
    assert_eq!(
        decide_ca(
            &policy,
            "payments",
            json!({"permitted": {
                "emailAddresses": ["payments.example.com", "ops@example.com"],
                "uriDomains": [".payments.mesh.local", "api.payments.mesh.local"],
            }}),
        ),
        PolicyDecision::Allowed("team-cas".into())
    );
    let why = denied(decide_ca(
        &policy,
        "payments",
        json!({"permitted": {"emailAddresses": ["example.com"], "uriDomains": [".payments.mesh.local"]}}),
    ));
    assert!(
        why.ends_with(
            "spec.nameConstraints.permitted.emailAddresses \"example.com\" is not within payments.example.com, \
             ops@example.com"
        ),
        "{why}"
    );
    // `.payments.mesh.local` is its subdomains only: the host itself is not within it.
    let why = denied(decide_ca(
        &policy,
        "payments",
        json!({"permitted": {"emailAddresses": ["ops@example.com"], "uriDomains": ["payments.mesh.local"]}}),
    ));
    assert!(
        why.ends_with(
            "spec.nameConstraints.permitted.uriDomains \"payments.mesh.local\" is not within .payments.mesh.local"
        ),
        "{why}"
    );
}

#[test]
fn cel_rules_see_the_name_constraints() {
    let policy = compiled(json!({
        "allowed": {
            "commonName": {"values": ["* CA"]},
            "isCA": true,
            "nameConstraints": {"permitted": {"dnsDomains": ["{namespace}.svc"]}},
        },
        "validations": [{
            "rule": "self.nameConstraints.critical",
            "message": "a team CA's name constraints must be critical",
        }],
    }));
    let why = denied(decide_ca(
        &policy,
        "payments",
        json!({"permitted": {"dnsDomains": ["payments.svc"]}}),
    ));
    assert!(
        why.ends_with("a team CA's name constraints must be critical"),
        "{why}"
    );
    assert_eq!(
        decide_ca(
            &policy,
            "payments",
            json!({"critical": true, "permitted": {"dnsDomains": ["payments.svc"]}}),
        ),
        PolicyDecision::Allowed("team-cas".into())
    );
}
