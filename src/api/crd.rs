//! The CustomResourceDefinitions, as `certkeeper crd` prints them and `crds/` holds them.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

use super::{Bundle, Certificate, CertificatePolicy, CertificateRevocation, ClusterIssuer, Issuer};

/// Every CRD certkeeper serves, in a stable order.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    let issuer_kinds = [
        Issuer::crd().spec.names.kind,
        ClusterIssuer::crd().spec.names.kind,
    ];
    let bundle_kind = Bundle::crd().spec.names.kind;
    let mut crds = vec![
        Certificate::crd(),
        Issuer::crd(),
        ClusterIssuer::crd(),
        Bundle::crd(),
        CertificateRevocation::crd(),
        CertificatePolicy::crd(),
    ];
    for crd in &mut crds {
        let is_issuer = issuer_kinds.contains(&crd.spec.names.kind);
        let is_bundle = crd.spec.names.kind == bundle_kind;
        for version in &mut crd.spec.versions {
            if let Some(schema) = version
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
            {
                drop_nullable(schema);
                if is_issuer && let Some(spec) = schema.properties.as_mut().and_then(|p| p.get_mut("spec")) {
                    require_exactly_one(spec, &["selfSigned", "ca"]);
                }
                if is_bundle && let Some(source) = bundle_source_schema(schema) {
                    require_exactly_one(source, &["issuer", "secret", "configMap", "inLine"]);
                }
            }
        }
    }
    crds
}

/// The schema of one item of a Bundle's `spec.sources`.
fn bundle_source_schema(schema: &mut JSONSchemaProps) -> Option<&mut JSONSchemaProps> {
    let spec = schema.properties.as_mut()?.get_mut("spec")?;
    let sources = spec.properties.as_mut()?.get_mut("sources")?;
    match sources.items.as_mut()? {
        JSONSchemaPropsOrArray::Schema(item) => Some(item.as_mut()),
        JSONSchemaPropsOrArray::Schemas(_) => None,
    }
}

/// Exactly one of `fields` must be set, as a structural `oneOf` of `required` lists: evaluated
/// by every API server (CEL rules only from 1.25, and before 1.29 not over an object schema
/// without properties such as `selfSigned: {}`).
fn require_exactly_one(schema: &mut JSONSchemaProps, fields: &[&str]) {
    schema.one_of = Some(
        fields
            .iter()
            .map(|field| JSONSchemaProps {
                required: Some(vec![(*field).to_owned()]),
                ..JSONSchemaProps::default()
            })
            .collect(),
    );
}

/// Optional fields are simply absent in Kubernetes objects. Without `nullable`, the API server
/// prunes an explicit `null` (as a templating tool may write) instead of storing it, so CEL rules
/// never see a null and the controller never reads one. For the same reason an optional enum
/// lists no `null`: kubectl refuses a CRD with one against API servers that publish no OpenAPI
/// v3 (`unknown object type "nil"`).
fn drop_nullable(schema: &mut JSONSchemaProps) {
    schema.nullable = None;
    if let Some(values) = schema.enum_.as_mut() {
        values.retain(|v| !v.0.is_null());
    }
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
    use crate::api::Certificate;
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
    fn schema_refuses_name_constraints_without_is_ca() {
        let with = |is_ca: Option<bool>| {
            let mut spec = json!({"secretName": "s", "issuerRef": {"name": "i"}, "commonName": "Team CA",
                                  "nameConstraints": {"permitted": {"dnsDomains": ["team.svc"]}}});
            if let Some(is_ca) = is_ca {
                spec["isCA"] = json!(is_ca);
            }
            certificate_rules_pass(spec)
        };
        assert!(with(Some(true)));
        assert!(!with(Some(false)));
        assert!(!with(None));
    }

    /// The openAPIV3Schema of the CRD of `kind`, as JSON.
    fn schema_of(kind: &str) -> serde_json::Value {
        let crd = all_crds()
            .into_iter()
            .find(|c| c.spec.names.kind == kind)
            .unwrap();
        serde_json::to_value(&crd.spec.versions[0].schema.as_ref().unwrap().open_api_v3_schema).unwrap()
    }

    /// Whether `value` satisfies the `oneOf`s of `schema` and of its properties, as the API
    /// server evaluates the `oneOf: [{required: [...]}, ...]` form used here.
    fn one_of_holds(schema: &serde_json::Value, value: &serde_json::Value) -> bool {
        let matches = |branch: &serde_json::Value| {
            branch["required"]
                .as_array()
                .unwrap()
                .iter()
                .all(|field| value.get(field.as_str().unwrap()).is_some())
        };
        let here = match schema["oneOf"].as_array() {
            Some(branches) => branches.iter().filter(|b| matches(b)).count() == 1,
            None => true,
        };
        here && schema["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .all(|(name, child)| value.get(name).is_none_or(|v| one_of_holds(child, v)))
    }

    #[test]
    fn schema_requires_exactly_one_issuer_type_on_every_api_server() {
        for kind in ["Issuer", "ClusterIssuer"] {
            let schema = schema_of(kind);
            let object = |spec: serde_json::Value| json!({"metadata": {"name": "i"}, "spec": spec});
            assert!(one_of_holds(&schema, &object(json!({"selfSigned": {}}))));
            assert!(one_of_holds(
                &schema,
                &object(json!({"ca": {"secretName": "ca"}}))
            ));
            assert!(!one_of_holds(&schema, &object(json!({}))));
            assert!(!one_of_holds(
                &schema,
                &object(json!({"selfSigned": {}, "ca": {"secretName": "ca"}}))
            ));
            // Structural: a oneOf branch may only name required fields the schema defines.
            for branch in schema["properties"]["spec"]["oneOf"].as_array().unwrap() {
                assert_eq!(
                    branch.as_object().unwrap().keys().collect::<Vec<_>>(),
                    ["required"]
                );
                let field = branch["required"][0].as_str().unwrap();
                assert!(schema["properties"]["spec"]["properties"].get(field).is_some());
            }
        }
    }

    #[test]
    fn schema_refuses_an_issuer_source_without_the_issuers_namespace() {
        let bundle = |issuer: serde_json::Value| {
            json!({"apiVersion": "certkeeper.io/v1", "kind": "Bundle", "metadata": {"name": "b"},
                   "spec": {"sources": [{"issuer": issuer}], "target": {"configMap": {"key": "ca.crt"}}}})
        };
        let passes = |issuer| {
            kube::core::cel::validate_cel_schema::<crate::api::Bundle>(&bundle(issuer), None).is_ok()
        };
        assert!(passes(json!({"kind": "ClusterIssuer", "name": "ca"})));
        assert!(passes(
            json!({"kind": "Issuer", "name": "ca", "namespace": "apps"})
        ));
        assert!(!passes(json!({"kind": "Issuer", "name": "ca"})));
    }

    #[test]
    fn schema_refuses_a_truststore_key_that_collides_with_the_pem_key() {
        let passes = |target: serde_json::Value| {
            let bundle = json!({"apiVersion": "certkeeper.io/v1", "kind": "Bundle", "metadata": {"name": "b"},
                                "spec": {"sources": [{"inLine": "x"}], "target": target}});
            kube::core::cel::validate_cel_schema::<crate::api::Bundle>(&bundle, None).is_ok()
        };
        assert!(passes(
            json!({"configMap": {"key": "ca.crt"}, "pkcs12": {"key": "truststore.p12"}})
        ));
        assert!(!passes(
            json!({"configMap": {"key": "ca.crt"}, "pkcs12": {"key": "ca.crt"}})
        ));
        assert!(!passes(json!({"configMap": {"key": "ca.crt"},
                                "secret": {"key": "trust.p12"}, "pkcs12": {"key": "trust.p12"}})));
        assert!(passes(
            json!({"configMap": {"key": "ca.crt"}, "secret": {"key": "ca.crt"}})
        ));
    }

    #[test]
    fn schema_requires_exactly_one_kind_of_bundle_source_on_every_api_server() {
        let schema = schema_of("Bundle");
        let source = &schema["properties"]["spec"]["properties"]["sources"]["items"];
        let holds = |value: serde_json::Value| one_of_holds(source, &value);
        assert!(holds(json!({"issuer": {"kind": "ClusterIssuer", "name": "ca"}})));
        assert!(holds(json!({"secret": {"name": "s", "key": "ca.crt"}})));
        assert!(holds(json!({"configMap": {"name": "c", "key": "ca.crt"}})));
        assert!(holds(json!({"inLine": "-----BEGIN CERTIFICATE-----"})));
        assert!(!holds(json!({})));
        assert!(!holds(
            json!({"inLine": "x", "secret": {"name": "s", "key": "ca.crt"}})
        ));
        for branch in source["oneOf"].as_array().unwrap() {
            assert_eq!(
                branch.as_object().unwrap().keys().collect::<Vec<_>>(),
                ["required"]
            );
            let field = branch["required"][0].as_str().unwrap();
            assert!(source["properties"].get(field).is_some(), "{field}");
        }
        let bundle = all_crds()
            .into_iter()
            .find(|c| c.spec.names.kind == "Bundle")
            .unwrap();
        assert_eq!(bundle.spec.scope, "Cluster");
        assert_eq!(
            status_and_columns(&bundle),
            ["Ready", "Certificates", "Targets", "Synced", "Age"]
        );
    }

    /// Every schema node below `schema` (itself included), depth first.
    fn nodes(schema: &serde_json::Value) -> Vec<&serde_json::Value> {
        let mut all = vec![schema];
        let children = schema["properties"]
            .as_object()
            .into_iter()
            .flat_map(|p| p.values())
            .chain(schema.get("items"))
            .chain(schema.get("additionalProperties").filter(|a| a.is_object()));
        for child in children {
            all.extend(nodes(child));
        }
        all
    }

    #[test]
    fn no_enum_lists_null_for_api_servers_without_openapi_v3() {
        let yaml = crds_yaml().unwrap();
        assert!(
            !yaml.lines().any(|l| l.trim() == "- null"),
            "crds/ lists null in an enum"
        );
        for kind in [
            "Certificate",
            "Issuer",
            "ClusterIssuer",
            "Bundle",
            "CertificateRevocation",
        ] {
            for node in nodes(&schema_of(kind)) {
                if let Some(values) = node["enum"].as_array() {
                    assert!(!values.iter().any(|v| v.is_null()), "{kind}: {node}");
                }
            }
        }
    }

    /// API servers before 1.29 cannot evaluate a CEL rule over an object whose schema has
    /// neither properties nor additionalProperties (Kubernetes issue 120226).
    #[test]
    fn no_cel_rule_reaches_an_object_schema_that_api_servers_before_1_29_cannot_read() {
        let mut rules = 0;
        for kind in [
            "Certificate",
            "Issuer",
            "ClusterIssuer",
            "Bundle",
            "CertificateRevocation",
        ] {
            for node in nodes(&schema_of(kind)) {
                if node.get("x-kubernetes-validations").is_none() {
                    continue;
                }
                rules += 1;
                for reached in nodes(node) {
                    if reached["type"] == "object" {
                        assert!(
                            reached.get("properties").is_some()
                                || reached.get("additionalProperties").is_some()
                                || reached["x-kubernetes-preserve-unknown-fields"] == true,
                            "{kind}: a CEL rule reaches an object schema without properties: {reached}"
                        );
                    }
                }
            }
        }
        assert!(rules > 0, "no CEL rule checked");
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
            "- bundle",
            "jsonPath: .status.syncedTargets",
            "- revocation",
            "- keyCompromise",
            "jsonPath: .spec.serialNumber",
        ] {
            assert!(yaml.contains(needle), "CRDs lack {needle:?}");
        }
        assert_eq!(
            status_and_columns(&all_crds()[0]),
            ["Ready", "Secret", "Issuer", "Expires", "Age"]
        );
    }

    #[test]
    fn issuers_show_their_ca_expiry_and_rotation_phase() {
        for crd in [Issuer::crd(), ClusterIssuer::crd()] {
            assert_eq!(
                status_and_columns(&crd),
                ["Ready", "CA Expires", "Rotation", "Age"]
            );
        }
    }

    /// The printer columns of a CRD whose (first) version has the status subresource.
    fn status_and_columns(crd: &CustomResourceDefinition) -> Vec<String> {
        let version = &crd.spec.versions[0];
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{} has no status subresource",
            crd.spec.names.kind
        );
        version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect()
    }

    #[test]
    fn a_revocation_names_its_issuer_serial_and_reason() {
        let crd = CertificateRevocation::crd();
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(status_and_columns(&crd), ["Issuer", "Serial", "Reason", "Age"]);
        let spec = &schema_of("CertificateRevocation")["properties"]["spec"];
        let required: Vec<&str> = spec["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(required, ["issuerRef", "serialNumber"]);
        let reasons = spec["properties"]["reason"]["enum"].as_array().unwrap();
        assert_eq!(reasons.len(), 10);
        assert!(reasons.contains(&json!("keyCompromise")));
        assert!(reasons.contains(&json!("removeFromCRL")));
    }
}
