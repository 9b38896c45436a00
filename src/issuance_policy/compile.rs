//! A CertificatePolicy read once into what the decision needs: patterns compiled, durations
//! parsed, CEL rules compiled. A policy that does not parse keeps its selector (it still guards
//! what it names) and allows nothing.

use std::collections::{BTreeMap, BTreeSet};

use jiff::SignedDuration;

use super::cel::Rule;
use super::patterns::{FieldKind, Pattern};
use crate::api::{AllowedNameConstraints, AllowedValues, CertificatePolicy, CertificatePolicySpec};
use crate::certificate::spec::{constraint_domain, constraint_email};
use crate::pki::{IpRange, KeyAlgorithm, Usage};

/// One policy, ready to judge requests.
pub struct CompiledPolicy {
    pub name: String,
    pub generation: Option<i64>,
    /// The spec it was compiled from: a re-list or a status write that leaves it unchanged
    /// changes nothing.
    pub spec: Option<CertificatePolicySpec>,
    pub selector: Selector,
    /// What it allows, or why it could not be read (it then allows nothing).
    pub rules: Result<Rules, String>,
}

/// Which Certificates a policy applies to. `None` fields match everything.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    pub issuer_kind: Option<String>,
    pub issuer_name: Option<Pattern>,
    pub namespace_names: Option<Vec<Pattern>>,
    pub namespace_labels: Option<BTreeMap<String, String>>,
}

impl Selector {
    /// Whether the policy guards the issuer of `kind` named `name`.
    pub fn selects_issuer(&self, kind: &str, name: &str) -> bool {
        self.issuer_kind.as_deref().is_none_or(|k| k == kind)
            && self.issuer_name.as_ref().is_none_or(|p| p.matches(name, "", ""))
    }

    /// Whether the policy applies to Certificates of `namespace`, whose labels are `labels`
    /// (`None`: not known). `None` when the answer needs labels not known.
    pub fn selects_namespace(
        &self,
        namespace: &str,
        labels: Option<&BTreeMap<String, String>>,
    ) -> Option<bool> {
        if let Some(names) = &self.namespace_names
            && !names.iter().any(|p| p.matches(namespace, "", ""))
        {
            return Some(false);
        }
        match &self.namespace_labels {
            None => Some(true),
            Some(wanted) => {
                let labels = labels?;
                Some(wanted.iter().all(|(k, v)| labels.get(k) == Some(v)))
            }
        }
    }

    /// Whether the answer of `selects_namespace` depends on namespace labels.
    pub fn reads_labels(&self) -> bool {
        self.namespace_labels.is_some()
    }
}

/// A field of the request: not listed (must be absent) or listed with its patterns.
#[derive(Debug)]
pub enum Field {
    Unlisted,
    Listed { patterns: Vec<Pattern>, required: bool },
}

/// What a readable policy allows.
pub struct Rules {
    pub common_name: Field,
    pub dns_names: Field,
    pub uris: Field,
    pub ip_addresses: Field,
    pub email_addresses: Field,
    pub is_ca: bool,
    /// `None`: only the default usages.
    pub usages: Option<BTreeSet<Usage>>,
    /// Subject DN parts in the order `SubjectFields` lists them, by their spec path.
    pub subject: Vec<(&'static str, Field)>,
    pub min_duration: Option<SignedDuration>,
    pub max_duration: Option<SignedDuration>,
    pub key_algorithm: Option<KeyAlgorithm>,
    pub key_min_size: Option<u32>,
    pub key_max_size: Option<u32>,
    /// CEL rules with the message a denial shows.
    pub validations: Vec<(Rule, String)>,
    /// `allowed.nameConstraints`; `None`: a request may carry none.
    pub name_constraints: Option<NameConstraintRules>,
}

/// Where a CA's permitted subtrees may lie, per name type; `None` for a type not listed. The
/// domains may hold `{namespace}` and `{name}` (see [`fill`]).
#[derive(Debug, Default)]
pub struct NameConstraintRules {
    pub dns_domains: Option<Vec<String>>,
    pub ip_ranges: Option<Vec<IpRange>>,
    pub email_addresses: Option<Vec<String>>,
    pub uri_domains: Option<Vec<String>>,
}

/// A domain of `allowed.nameConstraints` for the Certificate `name` in `namespace`.
pub fn fill(domain: &str, namespace: &str, name: &str) -> String {
    domain.replace("{namespace}", namespace).replace("{name}", name)
}

/// The spec paths of the subject fields, in `SubjectFields` order.
pub const SUBJECT_FIELDS: [&str; 8] = [
    "organizations",
    "organizationalUnits",
    "countries",
    "localities",
    "provinces",
    "streetAddresses",
    "postalCodes",
    "serialNumber",
];

impl CompiledPolicy {
    /// Reads `policy`. Never fails: what does not parse is kept as the reason it allows nothing.
    pub fn compile(policy: &CertificatePolicy) -> CompiledPolicy {
        let name = policy.metadata.name.clone().unwrap_or_default();
        let generation = policy.metadata.generation;
        let spec = &policy.spec;
        let (selector, selector_problem) = match compile_selector(spec) {
            Ok(selector) => (selector, None),
            // Fail closed: a selector that does not parse guards every issuer it could name.
            Err(why) => (unreadable_selector(spec), Some(why)),
        };
        let rules = match selector_problem {
            Some(why) => Err(why),
            None => compile_rules(spec),
        };
        CompiledPolicy {
            name,
            generation,
            spec: Some(spec.clone()),
            selector,
            rules,
        }
    }

    /// A policy whose object could not be read at all: it guards every issuer and allows
    /// nothing.
    pub fn unreadable(name: String, generation: Option<i64>, why: String) -> CompiledPolicy {
        CompiledPolicy {
            name,
            generation,
            spec: None,
            selector: Selector::default(),
            rules: Err(why),
        }
    }
}

/// The selector of a policy whose selector does not parse: the issuer kind it names (its
/// name pattern may be what failed), every namespace.
fn unreadable_selector(spec: &CertificatePolicySpec) -> Selector {
    Selector {
        issuer_kind: spec
            .selector
            .as_ref()
            .and_then(|s| s.issuer_ref.as_ref())
            .and_then(|r| r.kind.clone()),
        ..Selector::default()
    }
}

fn compile_selector(spec: &CertificatePolicySpec) -> Result<Selector, String> {
    let Some(selector) = &spec.selector else {
        return Ok(Selector::default());
    };
    let glob = |field: &str, value: &str| {
        Pattern::compile(FieldKind::Text, value).map_err(|e| format!("spec.selector.{field}: {e}"))
    };
    let issuer_ref = selector.issuer_ref.as_ref();
    let issuer_name = match issuer_ref.and_then(|r| r.name.as_deref()) {
        Some(name) => Some(glob("issuerRef.name", name)?),
        None => None,
    };
    let namespaces = selector.namespaces.as_ref();
    let namespace_names = match namespaces.and_then(|n| n.match_names.as_ref()) {
        Some(names) => Some(
            names
                .iter()
                .map(|n| glob("namespaces.matchNames", n))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };
    Ok(Selector {
        issuer_kind: issuer_ref.and_then(|r| r.kind.clone()),
        issuer_name,
        namespace_names,
        namespace_labels: namespaces.and_then(|n| n.match_labels.clone()),
    })
}

fn compile_field(path: &str, kind: FieldKind, allowed: Option<&AllowedValues>) -> Result<Field, String> {
    let Some(allowed) = allowed else {
        return Ok(Field::Unlisted);
    };
    let patterns = allowed
        .values
        .iter()
        .flatten()
        .map(|value| {
            let compiled = match kind {
                // A commonName is usually a host name: judged label by label when its pattern
                // reads as one, as free text otherwise.
                FieldKind::Dns if path == "commonName" => Pattern::compile(FieldKind::Dns, value)
                    .or_else(|_| Pattern::compile(FieldKind::Text, value)),
                kind => Pattern::compile(kind, value),
            };
            compiled.map_err(|e| format!("spec.allowed.{path}.values: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Field::Listed {
        patterns,
        required: allowed.required.unwrap_or(false),
    })
}

fn parse_duration(path: &str, value: Option<&str>) -> Result<Option<SignedDuration>, String> {
    let Some(value) = value else {
        return Ok(None);
    };
    crate::certificate::spec::parse_go_duration(value)
        .map(Some)
        .map_err(|e| format!("spec.constraints.{path}: {e}"))
}

fn key_size(path: &str, value: Option<i32>) -> Result<Option<u32>, String> {
    value
        .map(|v| {
            u32::try_from(v).map_err(|_| format!("spec.constraints.privateKey.{path} must not be negative"))
        })
        .transpose()
}

fn compile_rules(spec: &CertificatePolicySpec) -> Result<Rules, String> {
    let allowed = spec.allowed.clone().unwrap_or_default();
    let subject = allowed.subject.clone().unwrap_or_default();
    let subject_values = [
        &subject.organizations,
        &subject.organizational_units,
        &subject.countries,
        &subject.localities,
        &subject.provinces,
        &subject.street_addresses,
        &subject.postal_codes,
        &subject.serial_number,
    ];
    let subject = SUBJECT_FIELDS
        .iter()
        .zip(subject_values)
        .map(|(path, values)| {
            compile_field(&format!("subject.{path}"), FieldKind::Text, values.as_ref()).map(|f| (*path, f))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let constraints = spec.constraints.clone().unwrap_or_default();
    let min_duration = parse_duration("minDuration", constraints.min_duration.as_deref())?;
    let max_duration = parse_duration("maxDuration", constraints.max_duration.as_deref())?;
    if let (Some(min), Some(max)) = (min_duration, max_duration)
        && min > max
    {
        return Err(
            "spec.constraints.minDuration is longer than maxDuration: nothing could be allowed".into(),
        );
    }
    let key = constraints.private_key.unwrap_or_default();
    let key_min_size = key_size("minSize", key.min_size)?;
    let key_max_size = key_size("maxSize", key.max_size)?;
    if let (Some(min), Some(max)) = (key_min_size, key_max_size)
        && min > max
    {
        return Err(
            "spec.constraints.privateKey.minSize is larger than maxSize: nothing could be allowed".into(),
        );
    }
    let validations = spec
        .validations
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, v)| {
            let rule = Rule::compile(&v.rule).map_err(|e| format!("spec.validations[{i}].rule: {e}"))?;
            let message = v
                .message
                .clone()
                .unwrap_or_else(|| format!("rule {:?} is false", v.rule));
            Ok((rule, message))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Rules {
        common_name: compile_field("commonName", FieldKind::Dns, allowed.common_name.as_ref())?,
        dns_names: compile_field("dnsNames", FieldKind::Dns, allowed.dns_names.as_ref())?,
        uris: compile_field("uris", FieldKind::Uri, allowed.uris.as_ref())?,
        ip_addresses: compile_field("ipAddresses", FieldKind::Ip, allowed.ip_addresses.as_ref())?,
        email_addresses: compile_field(
            "emailAddresses",
            FieldKind::Email,
            allowed.email_addresses.as_ref(),
        )?,
        is_ca: allowed.is_ca.unwrap_or(false),
        usages: allowed
            .usages
            .as_ref()
            .map(|u| u.iter().map(|u| u.canonical()).collect()),
        subject,
        min_duration,
        max_duration,
        key_algorithm: key.algorithm,
        key_min_size,
        key_max_size,
        validations,
        name_constraints: allowed
            .name_constraints
            .as_ref()
            .map(compile_name_constraints)
            .transpose()?,
    })
}

fn compile_name_constraints(allowed: &AllowedNameConstraints) -> Result<NameConstraintRules, String> {
    let Some(permitted) = &allowed.permitted else {
        return Ok(NameConstraintRules::default());
    };
    let path = "spec.allowed.nameConstraints.permitted";
    let listed = |field: &str, values: &Option<Vec<String>>| -> Result<Option<Vec<String>>, String> {
        match values {
            Some(values) if values.is_empty() => Err(format!(
                "{path}.{field} lists nothing, so no CA could be allowed; leave {field} out to allow no {field}"
            )),
            other => Ok(other.clone()),
        }
    };
    let domains = |field: &str, values: &Option<Vec<String>>, email: bool| {
        let values = listed(field, values)?;
        for value in values.iter().flatten() {
            constraint_template(value, email).map_err(|why| format!("{path}.{field}: {value:?} {why}"))?;
        }
        Ok::<_, String>(values)
    };
    let ip_ranges = listed("ipRanges", &permitted.ip_ranges)?
        .map(|ranges| {
            ranges
                .iter()
                .map(|range| IpRange::from_cidr(range).map_err(|why| format!("{path}.ipRanges: {why}")))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    Ok(NameConstraintRules {
        dns_domains: domains("dnsDomains", &permitted.dns_domains, false)?,
        ip_ranges,
        email_addresses: domains("emailAddresses", &permitted.email_addresses, true)?,
        uri_domains: domains("uriDomains", &permitted.uri_domains, false)?,
    })
}

/// A name constraint domain (or, for `email`, a mailbox, host or `.domain`) whose labels may be
/// `{namespace}` or `{name}`, whole.
fn constraint_template(value: &str, email: bool) -> Result<(), &'static str> {
    if value.contains('*') {
        return Err(
            "is a pattern; write a domain: its subdomains are within it (team.svc covers a.team.svc)",
        );
    }
    let whole = value
        .split(['.', '@'])
        .filter(|part| part.contains(['{', '}']))
        .all(|part| part == "{namespace}" || part == "{name}");
    if !whole {
        return Err("holds a placeholder that is not a whole label ({namespace} or {name})");
    }
    let sample = fill(value, "ns", "name");
    match email {
        true => constraint_email(&sample),
        false => constraint_domain(&sample),
    }
}
