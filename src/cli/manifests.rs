//! Reading Kubernetes manifests from files, directories or stdin (`-`): multi-document YAML or
//! JSON, `kind: List` flattened. Shared by `convert` and `issue`.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::CliError;

/// One object of a manifest, and where it came from.
#[derive(Debug, Clone)]
pub struct Document {
    pub source: String,
    pub object: Value,
}

impl Document {
    pub fn str(&self, pointer: &str) -> Option<&str> {
        self.object.pointer(pointer).and_then(Value::as_str)
    }

    pub fn kind(&self) -> &str {
        self.str("/kind").unwrap_or_default()
    }

    pub fn api_version(&self) -> &str {
        self.str("/apiVersion").unwrap_or_default()
    }

    /// `Kind namespace/name` or `Kind name`, as errors name objects.
    pub fn describe(&self) -> String {
        let name = self.str("/metadata/name").unwrap_or("(no name)");
        match self.str("/metadata/namespace") {
            Some(ns) => format!("{} {ns}/{name}", self.kind()),
            None => format!("{} {name}", self.kind()),
        }
    }
}

/// Every object in `paths`, in order: files as given, a directory's `*.yaml`, `*.yml` and
/// `*.json` files sorted by name, `-` for stdin.
pub fn read_all(paths: &[PathBuf]) -> Result<Vec<Document>, CliError> {
    let mut documents = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| CliError::Read {
                    path: "stdin".into(),
                    reason: e.to_string(),
                })?;
            documents.extend(parse("stdin", &text)?);
        } else if path.is_dir() {
            for file in manifest_files(path)? {
                documents.extend(parse_file(&file)?);
            }
        } else {
            documents.extend(parse_file(path)?);
        }
    }
    Ok(documents)
}

fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>, CliError> {
    let error = |e: std::io::Error| CliError::Read {
        path: dir.display().to_string(),
        reason: e.to_string(),
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(error)? {
        let path = entry.map_err(error)?.path();
        let manifest = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        if manifest && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn parse_file(path: &Path) -> Result<Vec<Document>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    parse(&path.display().to_string(), &text)
}

/// The objects of one multi-document YAML (or JSON) text.
pub fn parse(source: &str, text: &str) -> Result<Vec<Document>, CliError> {
    let mut documents = Vec::new();
    for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(document).map_err(|e| CliError::Read {
            path: source.to_owned(),
            reason: format!("document {} is not valid YAML: {e}", i + 1),
        })?;
        match value {
            Value::Null => {}
            Value::Object(_) if value.get("kind").and_then(Value::as_str) == Some("List") => {
                let items = value.get("items").and_then(Value::as_array).cloned();
                for object in items.unwrap_or_default() {
                    documents.push(Document {
                        source: source.to_owned(),
                        object,
                    });
                }
            }
            Value::Object(_) => documents.push(Document {
                source: source.to_owned(),
                object: value,
            }),
            _ => {
                return Err(CliError::Read {
                    path: source.to_owned(),
                    reason: format!("document {} is not a Kubernetes object", i + 1),
                });
            }
        }
    }
    Ok(documents)
}
