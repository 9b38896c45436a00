//! `convert -f FILE|DIR|-`: cert-manager.io/v1 Certificates, Issuers and ClusterIssuers to
//! certkeeper.io/v1, printed as YAML. The apiVersion, issuerRef groups and `cert-manager.io/`
//! annotation and label keys change; anything certkeeper cannot serve (ACME, Vault, Venafi,
//! external issuers, fields it does not know, `cert-manager.io/` annotations on other objects
//! such as Ingresses) is named per object and nothing is dropped silently. Other objects pass
//! through unchanged.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::manifests::{self, Document};
use super::{CliError, Outcome};
use crate::api::{Certificate, ClusterIssuer, GROUP, Issuer};

const CERT_MANAGER_GROUP: &str = "cert-manager.io";
const CERT_MANAGER_PREFIX: &str = "cert-manager.io/";
/// Issuer types of cert-manager that certkeeper does not implement.
const UNSUPPORTED_ISSUERS: [(&str, &str); 3] = [("acme", "ACME"), ("vault", "Vault"), ("venafi", "Venafi")];
/// Server-set metadata, meaningless in a manifest to apply elsewhere.
const SERVER_METADATA: [&str; 7] = [
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
];

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  certkeeper convert -f cert-manager/ > certkeeper.yaml\n  \
                        kubectl get certificates.cert-manager.io -A -o yaml | certkeeper convert -f -"
)]
pub struct ConvertArgs {
    /// Manifest file, directory (its *.yaml, *.yml, *.json) or `-` for stdin; repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
}

pub fn run(args: &ConvertArgs) -> Result<Outcome, CliError> {
    let documents = manifests::read_all(&args.files)?;
    convert_all(&documents)
}

/// The converted objects as one multi-document YAML, and a line per object that cannot be.
pub fn convert_all(documents: &[Document]) -> Result<Outcome, CliError> {
    let mut outcome = Outcome::default();
    for document in documents {
        match convert(document) {
            Ok(object) => {
                let yaml = serde_yaml::to_string(&object)
                    .map_err(|e| CliError::Invalid(format!("cannot render YAML: {e}")))?;
                outcome.output.push_str("---\n");
                outcome.output.push_str(&yaml);
            }
            Err(why) => outcome.fail(format!("{} ({}): {why}", document.describe(), document.source)),
        }
    }
    outcome.summary = format!(
        "{} of {} objects cannot be converted; nothing was left out silently",
        outcome.failures.len(),
        documents.len()
    );
    Ok(outcome)
}

/// `document` as a certkeeper.io object: itself, or a cert-manager.io one converted. `None`
/// for any other group, and for a conversion that fails, which `outcome` is told.
pub fn certkeeper_object(document: &Document, outcome: &mut Outcome) -> Option<Value> {
    match document.api_version().split_once('/') {
        Some(("cert-manager.io", _)) => match convert(document) {
            Ok(object) => Some(object),
            Err(why) => {
                outcome.fail(format!("{} ({}): {why}", document.describe(), document.source));
                None
            }
        },
        Some((GROUP, _)) => Some(document.object.clone()),
        _ => None,
    }
}

/// One object converted, or why it cannot be.
pub fn convert(document: &Document) -> Result<Value, String> {
    let api_version = document.api_version();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    if group != CERT_MANAGER_GROUP {
        if group.ends_with(".cert-manager.io") {
            return Err(format!(
                "{api_version} is not served by certkeeper (only Certificates, Issuers and \
                 ClusterIssuers are)"
            ));
        }
        let annotations = document
            .object
            .pointer("/metadata/annotations")
            .and_then(Value::as_object);
        if let Some(key) = annotations
            .into_iter()
            .flat_map(|a| a.keys())
            .find(|k| k.starts_with(CERT_MANAGER_PREFIX))
        {
            return Err(format!(
                "annotation {key} asks cert-manager (ingress-shim, CA injector) for a \
                 certificate; certkeeper does not act on annotations: write a Certificate"
            ));
        }
        return Ok(document.object.clone());
    }
    if version != "v1" {
        return Err(format!(
            "{api_version} is not supported: convert from cert-manager.io/v1"
        ));
    }
    let mut object = document.object.clone();
    object["apiVersion"] = Value::from(format!("{GROUP}/v1"));
    clean_metadata(&mut object);
    if let Some(status) = object.as_object_mut() {
        status.remove("status");
    }
    match document.kind() {
        "Certificate" => {
            let spec = object.get_mut("spec").ok_or("it has no spec")?;
            convert_issuer_ref(spec)?;
            if let Some(template) = spec.get_mut("secretTemplate") {
                rename_keys(template.get_mut("annotations"));
                rename_keys(template.get_mut("labels"));
            }
            check_nothing_dropped::<Certificate>(&object)?;
        }
        "Issuer" | "ClusterIssuer" => {
            let spec = object
                .get("spec")
                .and_then(Value::as_object)
                .ok_or("it has no spec")?;
            for (field, name) in UNSUPPORTED_ISSUERS {
                if spec.contains_key(field) {
                    return Err(format!(
                        "{name} issuers are not served by certkeeper (only selfSigned and ca)"
                    ));
                }
            }
            match document.kind() {
                "Issuer" => check_nothing_dropped::<Issuer>(&object)?,
                _ => check_nothing_dropped::<ClusterIssuer>(&object)?,
            }
        }
        other => {
            return Err(format!(
                "kind {other} has no certkeeper counterpart (only Certificates, Issuers and \
                 ClusterIssuers are converted)"
            ));
        }
    }
    Ok(object)
}

/// Renames `cert-manager.io/` annotation and label keys, drops server-set fields.
fn clean_metadata(object: &mut Value) {
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    for field in SERVER_METADATA {
        metadata.remove(field);
    }
    if let Some(Value::Object(annotations)) = metadata.get_mut("annotations") {
        annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    rename_keys(metadata.get_mut("annotations"));
    rename_keys(metadata.get_mut("labels"));
    let empty = |v: Option<&Value>| v.and_then(Value::as_object).is_some_and(Map::is_empty);
    if empty(metadata.get("annotations")) {
        metadata.remove("annotations");
    }
}

fn rename_keys(map: Option<&mut Value>) {
    let Some(Value::Object(map)) = map else {
        return;
    };
    let renamed: Map<String, Value> = std::mem::take(map)
        .into_iter()
        .map(|(k, v)| match k.strip_prefix(CERT_MANAGER_PREFIX) {
            Some(rest) => (format!("certkeeper.io/{rest}"), v),
            None => (k, v),
        })
        .collect();
    *map = renamed;
}

/// issuerRef.group cert-manager.io (or none) becomes certkeeper.io; another group is an
/// external issuer certkeeper cannot serve.
fn convert_issuer_ref(spec: &mut Value) -> Result<(), String> {
    let issuer_ref = spec.get_mut("issuerRef").ok_or("spec.issuerRef is missing")?;
    match issuer_ref.get("group").and_then(Value::as_str) {
        None | Some("") | Some(CERT_MANAGER_GROUP) => {
            issuer_ref["group"] = Value::from(GROUP);
            Ok(())
        }
        Some(other) => Err(format!(
            "spec.issuerRef.group {other} is an external issuer, which certkeeper cannot serve"
        )),
    }
}

/// Reads `object` as the certkeeper type and fails on any field that would be lost: an
/// unknown field is a feature certkeeper does not have, and dropping it would change what is
/// issued.
fn check_nothing_dropped<K: DeserializeOwned + Serialize>(object: &Value) -> Result<(), String> {
    let (_, lost) = typed_with_unknown_fields::<K>(object)?;
    match lost.is_empty() {
        true => Ok(()),
        false => Err(format!("not supported by certkeeper: {}", lost.join(", "))),
    }
}

/// `object` read as `K`, and the paths of its spec that `K` does not have (what the API
/// server's strict field validation refuses, and serde would silently skip).
pub fn typed_with_unknown_fields<K: DeserializeOwned + Serialize>(
    object: &Value,
) -> Result<(K, Vec<String>), String> {
    let typed: K = serde_json::from_value(object.clone()).map_err(|e| format!("invalid: {e}"))?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut lost = Vec::new();
    if let Some(input) = object.get("spec") {
        missing(input, back.get("spec").unwrap_or(&Value::Null), "spec", &mut lost);
    }
    Ok((typed, lost))
}

/// Paths of `input` that `output` lacks.
fn missing(input: &Value, output: &Value, path: &str, lost: &mut Vec<String>) {
    match (input, output) {
        (Value::Object(input), Value::Object(output)) => {
            for (key, value) in input {
                let path = format!("{path}.{key}");
                match output.get(key) {
                    _ if value.is_null() => {}
                    None => lost.push(path),
                    Some(out) => missing(value, out, &path, lost),
                }
            }
        }
        (Value::Array(input), Value::Array(output)) => {
            for (i, value) in input.iter().enumerate() {
                if let Some(out) = output.get(i) {
                    missing(value, out, &format!("{path}[{i}]"), lost);
                }
            }
        }
        (Value::Object(_), Value::Null) => lost.push(path.to_owned()),
        _ => {}
    }
}
