//! The decision: is what a Certificate will have signed allowed by the policies that guard its
//! issuer? Pure; the reason strings are what the status and the Event carry.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::compile::{CompiledPolicy, Field, Rules, fill};
use crate::certificate::spec::{ValidatedSpec, default_usages};
use crate::pki::{DomainSubtree, IpRange, KeyAlgorithm, NameConstraints, Usage, subtree_within};

/// What will be signed for the Certificate `name` in `namespace`: its spec after defaulting.
pub struct Request<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub spec: &'a ValidatedSpec,
}

/// The issuer a Certificate names, as the policies select it.
pub struct IssuerId<'a> {
    /// `Issuer` or `ClusterIssuer`.
    pub kind: &'a str,
    pub name: &'a str,
    /// The issuer's `spec.requirePolicy`.
    pub require_policy: bool,
}

/// What the policies say of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyDecision {
    /// No policy guards the issuer: it signs what it is asked.
    Unguarded,
    /// The named policy allows all of it.
    Allowed(String),
    /// Nothing allows it: why, naming each applicable policy and what it refused.
    Denied(String),
    /// The policies cannot be known now (not listed yet, the CRD missing): nothing is signed.
    Unavailable(String),
}

/// Judges `request` for `issuer` against every policy. `require_everywhere` is
/// `--require-policy`. `labels` are the namespace's labels, `None` when not known.
pub fn decide(
    policies: &[Arc<CompiledPolicy>],
    issuer: &IssuerId<'_>,
    labels: Option<&BTreeMap<String, String>>,
    request: &Request<'_>,
    require_everywhere: bool,
) -> PolicyDecision {
    let guarding: Vec<&Arc<CompiledPolicy>> = policies
        .iter()
        .filter(|p| p.selector.selects_issuer(issuer.kind, issuer.name))
        .collect();
    if guarding.is_empty() && !issuer.require_policy && !require_everywhere {
        return PolicyDecision::Unguarded;
    }
    let mut applicable = Vec::new();
    for policy in guarding {
        match policy.selector.selects_namespace(request.namespace, labels) {
            Some(true) => applicable.push(policy),
            Some(false) => {}
            None => {
                return PolicyDecision::Unavailable(format!(
                    "the labels of namespace {:?} are not known yet (CertificatePolicy {:?} selects by label)",
                    request.namespace, policy.name
                ));
            }
        }
    }
    if applicable.is_empty() {
        return PolicyDecision::Denied(format!(
            "no CertificatePolicy selects namespace {:?} for {} {:?}",
            request.namespace, issuer.kind, issuer.name
        ));
    }
    let mut refusals = Vec::new();
    for policy in applicable {
        match &policy.rules {
            Ok(rules) => match judge(rules, request) {
                Ok(()) => return PolicyDecision::Allowed(policy.name.clone()),
                Err(why) => refusals.push(format!("CertificatePolicy {:?}: {why}", policy.name)),
            },
            Err(why) => refusals.push(format!(
                "CertificatePolicy {:?} is not Ready ({why})",
                policy.name
            )),
        }
    }
    PolicyDecision::Denied(format!("denied by {}", refusals.join("; ")))
}

/// Whether `rules` allow all of `request`: the first field refused, else Ok.
pub fn judge(rules: &Rules, request: &Request<'_>) -> Result<(), String> {
    let spec = request.spec;
    let (ns, name) = (request.namespace, request.name);
    let common_name: Vec<String> = spec.common_name.iter().cloned().collect();
    check_field("commonName", &common_name, &rules.common_name, ns, name)?;
    check_field("dnsNames", &spec.dns_names, &rules.dns_names, ns, name)?;
    check_field("uris", &spec.uris, &rules.uris, ns, name)?;
    let ips: Vec<String> = spec.ip_addresses.iter().map(ToString::to_string).collect();
    check_field("ipAddresses", &ips, &rules.ip_addresses, ns, name)?;
    check_field(
        "emailAddresses",
        &spec.email_addresses,
        &rules.email_addresses,
        ns,
        name,
    )?;
    let subject = &spec.subject;
    let serial: Vec<String> = subject.serial_number.iter().cloned().collect();
    let subject_values = [
        &subject.organizations,
        &subject.organizational_units,
        &subject.countries,
        &subject.localities,
        &subject.provinces,
        &subject.street_addresses,
        &subject.postal_codes,
        &serial,
    ];
    for ((path, field), values) in rules.subject.iter().zip(subject_values) {
        check_field(&format!("subject.{path}"), values, field, ns, name)?;
    }
    if spec.is_ca && !rules.is_ca {
        return Err("spec.isCA: a CA certificate is not allowed".into());
    }
    check_name_constraints(rules, request)?;
    check_usages(rules, spec)?;
    if let Some(min) = rules.min_duration
        && spec.duration < min
    {
        return Err(format!(
            "spec.duration {} is shorter than the minimum {}",
            go_duration(spec.duration),
            go_duration(min)
        ));
    }
    if let Some(max) = rules.max_duration
        && spec.duration > max
    {
        return Err(format!(
            "spec.duration {} is longer than the maximum {}",
            go_duration(spec.duration),
            go_duration(max)
        ));
    }
    check_key(rules, spec)?;
    if !rules.validations.is_empty() {
        let request_json = request_json(spec);
        for (rule, message) in &rules.validations {
            match rule.evaluate(&request_json, ns, name) {
                Ok(true) => {}
                Ok(false) => return Err(message.clone()),
                Err(error) => return Err(format!("{message} (the rule could not be evaluated: {error})")),
            }
        }
    }
    Ok(())
}

/// A value as a message shows it: at most 64 characters.
fn shown(value: &str) -> String {
    match value.char_indices().nth(64) {
        Some((end, _)) => format!("{:?}…", &value[..end]),
        None => format!("{value:?}"),
    }
}

fn check_field(
    path: &str,
    values: &[String],
    field: &Field,
    namespace: &str,
    name: &str,
) -> Result<(), String> {
    match field {
        Field::Unlisted => match values.first() {
            None => Ok(()),
            Some(value) => Err(format!(
                "spec.{path} {} is not allowed (the policy allows no {path})",
                shown(value)
            )),
        },
        Field::Listed { patterns, required } => {
            if *required && values.is_empty() {
                return Err(format!("spec.{path} is required"));
            }
            match values
                .iter()
                .find(|v| !patterns.iter().any(|p| p.matches(v, namespace, name)))
            {
                None => Ok(()),
                Some(value) => {
                    let allowed: Vec<&str> = patterns.iter().map(|p| p.source()).collect();
                    Err(format!(
                        "spec.{path} {} is not allowed (allowed: {})",
                        shown(value),
                        if allowed.is_empty() {
                            "none".into()
                        } else {
                            allowed.join(", ")
                        }
                    ))
                }
            }
        }
    }
}

/// A CA's own name constraints against `allowed.nameConstraints`: every name type the policy
/// lists must be constrained, within the policy's domains; a type it does not list may not be
/// permitted. Excluded subtrees only narrow what the CA signs and are not judged.
fn check_name_constraints(rules: &Rules, request: &Request<'_>) -> Result<(), String> {
    let asked = request.spec.name_constraints.as_ref();
    let Some(bounds) = &rules.name_constraints else {
        return match asked {
            None => Ok(()),
            Some(_) => {
                Err("spec.nameConstraints is not allowed (the policy allows no nameConstraints)".into())
            }
        };
    };
    if !request.spec.is_ca {
        return Ok(());
    }
    let none = NameConstraints::default();
    let asked = &asked.unwrap_or(&none).permitted;
    let (ns, name) = (request.namespace, request.name);
    let domains = [
        (
            "dnsDomains",
            DomainSubtree::Dns,
            &asked.dns_domains,
            &bounds.dns_domains,
        ),
        (
            "emailAddresses",
            DomainSubtree::Email,
            &asked.email_addresses,
            &bounds.email_addresses,
        ),
        (
            "uriDomains",
            DomainSubtree::Uri,
            &asked.uri_domains,
            &bounds.uri_domains,
        ),
    ];
    for (field, kind, asked, allowed) in domains {
        let allowed: Option<Vec<String>> = allowed
            .as_ref()
            .map(|domains| domains.iter().map(|d| fill(d, ns, name)).collect());
        subtrees_within(
            field,
            asked,
            allowed.as_deref(),
            |entry: &String, bound: &String| subtree_within(kind, entry, bound),
        )?;
    }
    subtrees_within(
        "ipRanges",
        &asked.ip_ranges,
        bounds.ip_ranges.as_deref(),
        |range: &IpRange, bound: &IpRange| range.within(bound),
    )
}

/// One name type's permitted entries, `asked`, against the bounds the policy lists for it.
fn subtrees_within<A: std::fmt::Display, B: std::fmt::Display>(
    field: &str,
    asked: &[A],
    allowed: Option<&[B]>,
    within: impl Fn(&A, &B) -> bool,
) -> Result<(), String> {
    let path = format!("spec.nameConstraints.permitted.{field}");
    let Some(allowed) = allowed else {
        return match asked.first() {
            None => Ok(()),
            Some(entry) => Err(format!(
                "{path} {} is not allowed (the policy allows no {field})",
                shown(&entry.to_string())
            )),
        };
    };
    let bounds: Vec<String> = allowed.iter().map(ToString::to_string).collect();
    if asked.is_empty() {
        return Err(format!(
            "{path} is required: a CA without it could sign any name of that type (allowed: within {})",
            bounds.join(", ")
        ));
    }
    match asked
        .iter()
        .find(|entry| !allowed.iter().any(|b| within(entry, b)))
    {
        None => Ok(()),
        Some(entry) => Err(format!(
            "{path} {} is not within {}",
            shown(&entry.to_string()),
            bounds.join(", ")
        )),
    }
}

fn check_usages(rules: &Rules, spec: &ValidatedSpec) -> Result<(), String> {
    // A CA's cert sign and CRL sign come with isCA, judged above.
    let implied: BTreeSet<Usage> = match spec.is_ca {
        true => BTreeSet::from([Usage::CertSign, Usage::CrlSign]),
        false => BTreeSet::new(),
    };
    let (allowed, what) = match &rules.usages {
        Some(listed) => (listed.clone(), "allowed"),
        None => (
            default_usages(spec.is_ca, spec.key.algorithm),
            "the policy lists none: only the defaults",
        ),
    };
    match spec
        .usages
        .iter()
        .find(|u| !allowed.contains(u) && !implied.contains(u))
    {
        None => Ok(()),
        Some(usage) => {
            let names: Vec<String> = allowed.iter().map(|u| usage_name(*u)).collect();
            Err(format!(
                "spec.usages {:?} is not allowed ({what}: {})",
                usage_name(*usage),
                names.join(", ")
            ))
        }
    }
}

fn usage_name(usage: Usage) -> String {
    serde_json::to_value(usage)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{usage:?}"))
}

fn algorithm_name(algorithm: KeyAlgorithm) -> &'static str {
    match algorithm {
        KeyAlgorithm::Rsa => "RSA",
        KeyAlgorithm::Ecdsa => "ECDSA",
        KeyAlgorithm::Ed25519 => "Ed25519",
    }
}

/// The key judged is the spec's. Under `rotationPolicy: Never` the Secret's key is reused only
/// when its algorithm and size are the spec's (`certificate/reconcile.rs`), so it is the same.
fn check_key(rules: &Rules, spec: &ValidatedSpec) -> Result<(), String> {
    let key = &spec.key;
    if let Some(algorithm) = rules.key_algorithm
        && key.algorithm != algorithm
    {
        return Err(format!(
            "spec.privateKey.algorithm {} is not allowed (allowed: {})",
            algorithm_name(key.algorithm),
            algorithm_name(algorithm)
        ));
    }
    // Ed25519 keys have no size setting: they count as 256 bits.
    let size = match key.algorithm {
        KeyAlgorithm::Ed25519 => 256,
        _ => key.size,
    };
    if let Some(min) = rules.key_min_size
        && size < min
    {
        return Err(format!("spec.privateKey.size {size} is below the minimum {min}"));
    }
    if let Some(max) = rules.key_max_size
        && size > max
    {
        return Err(format!("spec.privateKey.size {size} is above the maximum {max}"));
    }
    Ok(())
}

/// A duration as Go and CEL's `duration()` read it, in whole units where it can.
pub fn go_duration(d: jiff::SignedDuration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 {
        return format!("{}ms", d.as_millis());
    }
    match (secs % 3600, secs % 60) {
        (0, _) => format!("{}h", secs / 3600),
        (_, 0) => format!("{}m", secs / 60),
        _ => format!("{secs}s"),
    }
}

/// The request as CEL rules see it (`self`): the Certificate's spec after defaulting.
pub fn request_json(spec: &ValidatedSpec) -> serde_json::Value {
    let subject = &spec.subject;
    serde_json::json!({
        "commonName": spec.common_name,
        "dnsNames": spec.dns_names,
        "ipAddresses": spec.ip_addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "uris": spec.uris,
        "emailAddresses": spec.email_addresses,
        "subject": {
            "organizations": subject.organizations,
            "organizationalUnits": subject.organizational_units,
            "countries": subject.countries,
            "localities": subject.localities,
            "provinces": subject.provinces,
            "streetAddresses": subject.street_addresses,
            "postalCodes": subject.postal_codes,
            "serialNumber": subject.serial_number,
        },
        "isCA": spec.is_ca,
        "usages": spec.usages.iter().map(|u| usage_name(*u)).collect::<Vec<_>>(),
        "duration": go_duration(spec.duration),
        "privateKey": {
            "algorithm": algorithm_name(spec.key.algorithm),
            "size": spec.key.size,
        },
        "issuerRef": {
            "kind": spec.issuer_ref.kind(),
            "name": spec.issuer_ref.name,
        },
        "nameConstraints": spec.name_constraints.as_ref().map(|c| serde_json::json!({
            "critical": c.critical,
            "permitted": subtrees_json(&c.permitted),
            "excluded": subtrees_json(&c.excluded),
        })),
    })
}

fn subtrees_json(subtrees: &crate::pki::NameSubtrees) -> serde_json::Value {
    serde_json::json!({
        "dnsDomains": subtrees.dns_domains,
        "ipRanges": subtrees.ip_ranges.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "emailAddresses": subtrees.email_addresses,
        "uriDomains": subtrees.uri_domains,
    })
}

/// What one policy says of a request, for people (`certkeeper policy check`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Explained {
    /// It does not guard the Certificate's issuer.
    OtherIssuer,
    /// It guards the issuer but does not select the Certificate's namespace.
    OtherNamespace,
    Allows,
    Refuses(String),
    /// It cannot be read: it allows nothing.
    NotReady(String),
}

/// What each policy says of `request` for `issuer`, by name; `decide` gives the outcome.
pub fn explain(
    policies: &[Arc<CompiledPolicy>],
    issuer: &IssuerId<'_>,
    labels: Option<&BTreeMap<String, String>>,
    request: &Request<'_>,
) -> Vec<(String, Explained)> {
    policies
        .iter()
        .map(|policy| {
            let said = if !policy.selector.selects_issuer(issuer.kind, issuer.name) {
                Explained::OtherIssuer
            } else if policy.selector.selects_namespace(request.namespace, labels) == Some(false) {
                Explained::OtherNamespace
            } else {
                match &policy.rules {
                    Err(why) => Explained::NotReady(why.clone()),
                    Ok(rules) => match judge(rules, request) {
                        Ok(()) => Explained::Allows,
                        Err(why) => Explained::Refuses(why),
                    },
                }
            };
            (policy.name.clone(), said)
        })
        .collect()
}
