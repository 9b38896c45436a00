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
        let mut requirements: Vec<Requirement> = selector
            .match_labels
            .iter()
            .flatten()
            .map(|(key, value)| Requirement::In(key.clone(), BTreeSet::from([value.clone()])))
            .collect();
        for expression in selector.match_expressions.iter().flatten() {
            let key = expression.key.clone();
            if key.is_empty() {
                return Err(InvalidSelector("a matchExpressions key is empty".into()));
            }
            let values: BTreeSet<String> = expression.values.iter().flatten().cloned().collect();
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
