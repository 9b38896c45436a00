//! The CustomResourceDefinitions, as `certkeeper crd` prints them and `crds/` holds them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

use super::{Certificate, ClusterIssuer, Issuer};

/// Every CRD certkeeper serves, in a stable order.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    let mut crds = vec![Certificate::crd(), Issuer::crd(), ClusterIssuer::crd()];
    for crd in &mut crds {
        for version in &mut crd.spec.versions {
            if let Some(schema) = version
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
            {
                drop_nullable(schema);
            }
        }
    }
    crds
}

/// Optional fields are simply absent in Kubernetes objects. Without `nullable`, the API server
/// prunes an explicit `null` (as a templating tool may write) instead of storing it, so CEL rules
/// never see a null and the controller never reads one.
fn drop_nullable(schema: &mut JSONSchemaProps) {
    schema.nullable = None;
    let children = schema
        .properties
        .iter_mut()
        .flat_map(|p| p.values_mut())
        .chain(schema.items.iter_mut().filter_map(|items| match items {
            JSONSchemaPropsOrArray::Schema(s) => Some(s.as_mut()),
            JSONSchemaPropsOrArray::Schemas(_) => None,
        }))
        .chain(schema.additional_properties.iter_mut().filter_map(|a| match a {
            JSONSchemaPropsOrBool::Schema(s) => Some(s.as_mut()),
            JSONSchemaPropsOrBool::Bool(_) => None,
        }));
    for child in children {
        drop_nullable(child);
    }
}

/// The CRDs as one multi-document YAML stream.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in all_crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Certificate, ClusterIssuer, Issuer};
    use serde_json::json;

    #[test]
    fn crds_directory_is_up_to_date() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/certkeeper.yaml");
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        let generated = crds_yaml().unwrap();
        assert!(
            committed == generated,
            "crds/certkeeper.yaml is stale: run `cargo run -- crd > crds/certkeeper.yaml` and commit it"
        );
    }

    fn cert(spec: serde_json::Value) -> serde_json::Value {
        json!({"apiVersion": "certkeeper.io/v1", "kind": "Certificate",
               "metadata": {"name": "c", "namespace": "n"}, "spec": spec})
    }

    fn certificate_rules_pass(spec: serde_json::Value) -> bool {
        kube::core::cel::validate_cel_schema::<Certificate>(&cert(spec), None).is_ok()
    }

    #[test]
    fn schema_refuses_renew_before_with_renew_before_percentage() {
        let base = json!({"secretName": "s", "issuerRef": {"name": "i"}, "dnsNames": ["a.example"]});
        assert!(certificate_rules_pass(base.clone()));
        let mut both = base.clone();
        both["renewBefore"] = json!("1h");
        both["renewBeforePercentage"] = json!(20);
        assert!(!certificate_rules_pass(both));
    }

    #[test]
    fn schema_refuses_a_certificate_without_any_name() {
        assert!(!certificate_rules_pass(
            json!({"secretName": "s", "issuerRef": {"name": "i"}})
        ));
        assert!(!certificate_rules_pass(
            json!({"secretName": "s", "issuerRef": {"name": "i"}, "dnsNames": []})
        ));
        assert!(certificate_rules_pass(
            json!({"secretName": "s", "issuerRef": {"name": "i"}, "commonName": "x"})
        ));
        assert!(certificate_rules_pass(
            json!({"secretName": "s", "issuerRef": {"name": "i"}, "uris": ["spiffe://td/ns/a/sa/b"]})
        ));
    }

    #[test]
    fn schema_refuses_a_key_size_the_algorithm_does_not_have() {
        let with_key = |key: serde_json::Value| {
            certificate_rules_pass(
                json!({"secretName": "s", "issuerRef": {"name": "i"}, "commonName": "x", "privateKey": key}),
            )
        };
        assert!(with_key(json!({"algorithm": "RSA", "size": 3072})));
        assert!(with_key(json!({"algorithm": "ECDSA", "size": 384})));
        assert!(with_key(json!({"algorithm": "Ed25519"})));
        assert!(!with_key(json!({"algorithm": "RSA", "size": 256})));
        assert!(!with_key(json!({"algorithm": "ECDSA", "size": 2048})));
    }

    #[test]
    fn schema_requires_exactly_one_issuer_type() {
        let issuer = |spec: serde_json::Value| json!({"apiVersion": "certkeeper.io/v1", "kind": "Issuer", "metadata": {"name": "i"}, "spec": spec});
        let ok = |spec: serde_json::Value| {
            kube::core::cel::validate_cel_schema::<Issuer>(&issuer(spec), None).is_ok()
        };
        let ok_cluster = |spec: serde_json::Value| {
            kube::core::cel::validate_cel_schema::<ClusterIssuer>(&issuer(spec), None).is_ok()
        };
        assert!(ok(json!({"selfSigned": {}})));
        assert!(ok(json!({"ca": {"secretName": "ca"}})));
        assert!(!ok(json!({})));
        assert!(!ok(json!({"selfSigned": {}, "ca": {"secretName": "ca"}})));
        assert!(ok_cluster(json!({"selfSigned": {}})));
        assert!(!ok_cluster(json!({})));
        assert!(!ok_cluster(json!({"selfSigned": {}, "ca": {"secretName": "ca"}})));
    }

    #[test]
    fn schema_has_enums_pattern_and_printer_columns() {
        let yaml = crds_yaml().unwrap();
        for needle in [
            "- ECDSA",
            "- PKCS1",
            "- Never",
            "- ClusterIssuer",
            "- server auth",
            "- CombinedPEM",
            "- Delete",
            "pattern: ^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$",
            "jsonPath: .status.notAfter",
            "- cert",
            "- certs",
            "- iss",
            "- ciss",
        ] {
            assert!(yaml.contains(needle), "CRDs lack {needle:?}");
        }
        let cert = &all_crds()[0];
        let version = &cert.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some()
        );
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(columns, ["Ready", "Secret", "Issuer", "Expires", "Age"]);
    }
}
