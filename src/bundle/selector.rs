//! Which namespaces a Bundle's `namespaceSelector` matches, with the semantics of the API
//! server's label selectors (apimachinery `LabelSelectorAsSelector`): `matchLabels` and
//! `matchExpressions` ANDed; `In`/`NotIn` need values, `Exists`/`DoesNotExist` take none;
//! `NotIn` and `DoesNotExist` match a namespace without the key. An empty selector matches
//! every namespace; so does an omitted one (the Bundle's contract: all namespaces).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// A selector the API server would refuse, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid namespaceSelector: {0}")]
pub struct InvalidSelector(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A validated namespace selector.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NamespaceSelector(Vec<Requirement>);

impl NamespaceSelector {
    /// Validates `selector`; `None` selects every namespace.
    pub fn new(selector: Option<&LabelSelector>) -> Result<Self, InvalidSelector> {
        let Some(selector) = selector else {
            return Ok(Self::default());
        };
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            check_key(key)?;
            check_value(key, value)?;
            requirements.push(Requirement::In(key.clone(), BTreeSet::from([value.clone()])));
        }
        for expression in selector.match_expressions.iter().flatten() {
            let key = expression.key.clone();
            check_key(&key)?;
            let values: BTreeSet<String> = expression.values.iter().flatten().cloned().collect();
            for value in &values {
                check_value(&key, value)?;
            }
            let requirement = match expression.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(InvalidSelector(format!(
                        "operator {} on {key} needs at least one value",
                        expression.operator
                    )));
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(InvalidSelector(format!(
                        "operator {} on {key} takes no values",
                        expression.operator
                    )));
                }
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                other => {
                    return Err(InvalidSelector(format!(
                        "unknown operator {other:?} on {key} (In, NotIn, Exists or DoesNotExist)"
                    )));
                }
            };
            requirements.push(requirement);
        }
        Ok(Self(requirements))
    }

    /// Whether a namespace with `labels` is selected.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|requirement| match requirement {
            Requirement::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            Requirement::NotIn(key, values) => labels.get(key).is_none_or(|v| !values.contains(v)),
            Requirement::Exists(key) => labels.contains_key(key),
            Requirement::DoesNotExist(key) => !labels.contains_key(key),
        })
    }
}

/// A label name part: at most 63 characters, alphanumeric at both ends, `-`, `_`, `.` inside.
fn is_name(part: &str) -> bool {
    let bytes = part.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A DNS subdomain (RFC 1123): at most 253 characters of lower-case labels.
fn is_dns_subdomain(prefix: &str) -> bool {
    prefix.len() <= 253
        && prefix.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= 63
                && bytes
                    .first()
                    .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && bytes
                    .last()
                    .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        })
}

/// A label key: a qualified name, `[prefix/]name`.
fn check_key(key: &str) -> Result<(), InvalidSelector> {
    let valid = match key.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_name(name),
        None => is_name(key),
    };
    match valid {
        true => Ok(()),
        false => Err(InvalidSelector(format!("{key:?} is not a valid label key"))),
    }
}

/// A label value: empty, or a name part.
fn check_value(key: &str, value: &str) -> Result<(), InvalidSelector> {
    match value.is_empty() || is_name(value) {
        true => Ok(()),
        false => Err(InvalidSelector(format!(
            "{value:?} is not a valid value for label {key}"
        ))),
    }
}
