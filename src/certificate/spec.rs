//! Validation of a Certificate's spec into a `ValidatedSpec`: defaults applied, durations
//! parsed, addresses checked. Pure; what the schema cannot refuse is refused here.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::str::FromStr;

use jiff::SignedDuration;

use crate::api::{
    CertificateSpec, IssuerRef, NameConstraintItem, NameConstraintsSpec, OutputFormatType,
    PrivateKeyRotationPolicy, SecretDeletionPolicy,
};
use crate::pki::{
    CertificateTemplate, IpRange, KeyAlgorithm, KeyEncoding, KeySpec, NameConstraints, NameSubtrees,
    SubjectFields, Usage,
};

/// Default lifetime: 90 days, as cert-manager.
pub const DEFAULT_DURATION: SignedDuration = SignedDuration::from_hours(2160);
/// Shortest lifetime accepted.
pub const MINIMUM_DURATION: SignedDuration = SignedDuration::from_hours(1);

/// A spec the controller can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatedSpec {
    pub secret_name: String,
    pub issuer_ref: IssuerRef,
    pub common_name: Option<String>,
    pub subject: SubjectFields,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub uris: Vec<String>,
    pub email_addresses: Vec<String>,
    pub duration: SignedDuration,
    pub renew_before: RenewBefore,
    pub is_ca: bool,
    /// The NameConstraints extension of a CA certificate; None when the spec lists nothing.
    pub name_constraints: Option<NameConstraints>,
    /// The usages the certificate must carry, defaults applied (`isCA` adds cert and CRL sign).
    pub usages: BTreeSet<Usage>,
    pub key: KeySpec,
    pub key_encoding: KeyEncoding,
    pub rotation_policy: PrivateKeyRotationPolicy,
    pub combined_pem: bool,
    pub der_key: bool,
    /// Istio's plug-in CA keys (`ca-cert.pem`, `ca-key.pem`, `cert-chain.pem`, `root-cert.pem`).
    pub istio_ca_certs: bool,
    /// The keystores to write (`spec.keystores`, `create: true`).
    pub keystores: super::keystores::KeystoreSpec,
    pub deletion_policy: SecretDeletionPolicy,
}

/// How far before notAfter to renew.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenewBefore {
    /// A third of the lifetime (the default).
    Default,
    Fixed(SignedDuration),
    /// A percentage (1-99) of the lifetime.
    Percentage(u8),
}

/// Why a spec cannot be acted on; the message is shown to the user as is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

/// The longest lifetime a certificate may ask for: X.509 times end in the year 9999, and no
/// in-cluster CA needs a century.
pub const MAXIMUM_DURATION: SignedDuration = SignedDuration::from_hours(100 * 365 * 24);

fn parse_duration(field: &str, value: &str) -> Result<SignedDuration, SpecError> {
    parse_go_duration(value).map_err(|why| SpecError(format!("spec.{field} {why}")))
}

/// A Go duration (`24h`, `90m`), as Kubernetes reads it, not negative and at most 10 digits a
/// number; the error says what is wrong with `value`.
pub(crate) fn parse_go_duration(value: &str) -> Result<SignedDuration, String> {
    // kube's parser panics on a number too large for a std Duration; the schema's pattern lets
    // any number of digits through. No sane duration has a number of more than 10 digits.
    let longest_number = value
        .split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    if longest_number > 10 {
        return Err(format!("{value:?} is too long"));
    }
    let parsed =
        kube::core::Duration::from_str(value).map_err(|e| format!("{value:?} is not a Go duration: {e}"))?;
    if parsed.is_negative() {
        return Err(format!("{value:?} must not be negative"));
    }
    let std: std::time::Duration = parsed.into();
    SignedDuration::try_from(std).map_err(|_| format!("{value:?} is too long"))
}

fn list(value: &Option<Vec<String>>) -> Vec<String> {
    value.clone().unwrap_or_default()
}

/// The usages of a Certificate that lists none (before `isCA` adds cert and CRL sign).
pub fn default_usages(is_ca: bool, algorithm: KeyAlgorithm) -> BTreeSet<Usage> {
    // A CA gets no TLS usages by default: verifiers such as Go's treat a CA's extended key
    // usages as limits on everything below it.
    if is_ca {
        return BTreeSet::from([Usage::DigitalSignature]);
    }
    let mut usages = BTreeSet::from([Usage::DigitalSignature, Usage::ServerAuth, Usage::ClientAuth]);
    if algorithm == KeyAlgorithm::Rsa {
        usages.insert(Usage::KeyEncipherment);
    }
    usages
}

/// At most this many entries in each list of names (also the schema's maxItems).
pub const MAX_NAMES: usize = 1000;
/// At most this many bytes of names in all: the certificate carries them, tls-combined.pem
/// carries them again, and the Secret's annotations list them, within Kubernetes' 1 MiB per
/// Secret and 256 KiB of annotations.
pub const MAX_NAME_BYTES: usize = 100_000;

/// A name as an error message shows it: at most 64 characters.
fn shown(name: &str) -> String {
    match name.char_indices().nth(64) {
        Some((end, _)) => format!("{:?}…", &name[..end]),
        None => format!("{name:?}"),
    }
}

/// The names are IA5Strings in a certificate: ASCII, printable, no spaces.
fn is_ia5_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic())
}

/// Checks the lists of names fit a certificate and a Secret.
fn check_names(spec: &CertificateSpec) -> Result<(), SpecError> {
    let lists = [
        ("dnsNames", &spec.dns_names, 253),
        ("ipAddresses", &spec.ip_addresses, 45),
        ("uris", &spec.uris, 2048),
        ("emailAddresses", &spec.email_addresses, 254),
    ];
    let mut total = 0;
    for (field, names, max_len) in lists {
        let names = names.as_deref().unwrap_or_default();
        if names.len() > MAX_NAMES {
            return Err(SpecError(format!(
                "spec.{field} has {} entries; at most {MAX_NAMES} are allowed",
                names.len()
            )));
        }
        for name in names {
            total += name.len();
            if name.len() > max_len {
                return Err(SpecError(format!(
                    "spec.{field}: {} is {} bytes long; at most {max_len} are allowed",
                    shown(name),
                    name.len()
                )));
            }
            let fits = match field {
                "dnsNames" | "uris" => is_ia5_token(name),
                "emailAddresses" => is_ia5_token(name) && name.contains('@'),
                _ => true,
            };
            if !fits {
                let hint = match field {
                    "dnsNames" => "an ASCII DNS name; write an internationalized name as its xn-- A-label",
                    "uris" => "an ASCII URI; percent-encode anything else",
                    _ => "an ASCII email address",
                };
                return Err(SpecError(format!("spec.{field}: {} is not {hint}", shown(name))));
            }
        }
    }
    if total > MAX_NAME_BYTES {
        return Err(SpecError(format!(
            "the names in spec add up to {total} bytes; at most {MAX_NAME_BYTES} fit a Secret"
        )));
    }
    Ok(())
}

/// `spec.nameConstraints` checked entry by entry; None when it lists nothing, since RFC 5280
/// forbids an empty extension (cert-manager then writes none either).
fn name_constraints(spec: &NameConstraintsSpec) -> Result<Option<NameConstraints>, SpecError> {
    let constraints = NameConstraints {
        critical: spec.critical.unwrap_or(false),
        permitted: name_subtrees("permitted", spec.permitted.as_ref())?,
        excluded: name_subtrees("excluded", spec.excluded.as_ref())?,
    };
    Ok((!constraints.is_empty()).then_some(constraints))
}

fn name_subtrees(side: &str, item: Option<&NameConstraintItem>) -> Result<NameSubtrees, SpecError> {
    let Some(item) = item else {
        return Ok(NameSubtrees::default());
    };
    let entries = |field: &str, values: &Option<Vec<String>>| -> Result<Vec<String>, SpecError> {
        let values = list(values);
        if values.len() > MAX_NAMES {
            return Err(SpecError(format!(
                "spec.nameConstraints.{side}.{field} has {} entries; at most {MAX_NAMES} are allowed",
                values.len()
            )));
        }
        Ok(values)
    };
    let refused = |field: &str, value: &str, why: &str| {
        SpecError(format!(
            "spec.nameConstraints.{side}.{field}: {} {why}",
            shown(value)
        ))
    };
    let dns_domains = entries("dnsDomains", &item.dns_domains)?;
    for domain in &dns_domains {
        constraint_domain(domain).map_err(|why| refused("dnsDomains", domain, why))?;
    }
    let uri_domains = entries("uriDomains", &item.uri_domains)?;
    for domain in &uri_domains {
        constraint_domain(domain).map_err(|why| refused("uriDomains", domain, why))?;
    }
    let email_addresses = entries("emailAddresses", &item.email_addresses)?;
    for email in &email_addresses {
        constraint_email(email).map_err(|why| refused("emailAddresses", email, why))?;
    }
    let ip_ranges = entries("ipRanges", &item.ip_ranges)?
        .iter()
        .map(|range| {
            IpRange::from_cidr(range)
                .map_err(|why| SpecError(format!("spec.nameConstraints.{side}.ipRanges: {why}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NameSubtrees {
        dns_domains,
        ip_ranges,
        email_addresses,
        uri_domains,
        ..Default::default()
    })
}

/// An rfc822Name constraint: a mailbox (`local@host`), a host or a `.domain`.
pub(crate) fn constraint_email(email: &str) -> Result<(), &'static str> {
    match email.split_once('@') {
        Some((local, host)) if is_ia5_token(local) && !host.starts_with('.') => constraint_domain(host),
        Some(_) => Err("is not a mailbox (local@host), a host or a .domain"),
        None => constraint_domain(email),
    }
}

/// A domain as a name constraint: ASCII labels of letters, digits, `-` and `_`, optionally
/// after one leading `.` (subdomains only). Patterns are not constraints: `*` is refused.
pub(crate) fn constraint_domain(domain: &str) -> Result<(), &'static str> {
    if domain.contains('*') {
        return Err(
            "is a pattern; a constraint is a domain: team.svc (itself and its subdomains) or .team.svc (subdomains only)",
        );
    }
    let labels = domain.strip_prefix('.').unwrap_or(domain);
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if domain.len() > 253 || !labels.split('.').all(label_ok) {
        return Err("is not a domain (ASCII labels separated by dots, an optional leading dot)");
    }
    Ok(())
}

/// Validates and defaults a Certificate spec.
pub fn validate(spec: &CertificateSpec) -> Result<ValidatedSpec, SpecError> {
    let duration = match &spec.duration {
        Some(d) => parse_duration("duration", d)?,
        None => DEFAULT_DURATION,
    };
    if duration > MAXIMUM_DURATION {
        return Err(SpecError(format!(
            "spec.duration {} is longer than the maximum of 876000h (100 years)",
            spec.duration.as_deref().unwrap_or_default()
        )));
    }
    if duration < MINIMUM_DURATION {
        return Err(SpecError(format!(
            "spec.duration {} is shorter than the minimum of 1h",
            spec.duration.as_deref().unwrap_or_default()
        )));
    }
    let renew_before = match (&spec.renew_before, spec.renew_before_percentage) {
        (Some(_), Some(_)) => {
            return Err(SpecError(
                "spec.renewBefore and spec.renewBeforePercentage are mutually exclusive".into(),
            ));
        }
        (Some(rb), None) => {
            let rb = parse_duration("renewBefore", rb)?;
            if rb >= duration {
                return Err(SpecError(format!(
                    "spec.renewBefore ({}) must be shorter than spec.duration ({})",
                    spec.renew_before.as_deref().unwrap_or_default(),
                    spec.duration.as_deref().unwrap_or("2160h")
                )));
            }
            if rb.is_zero() {
                return Err(SpecError("spec.renewBefore must be greater than zero".into()));
            }
            RenewBefore::Fixed(rb)
        }
        (None, Some(p)) => match u8::try_from(p) {
            Ok(p @ 1..=99) => RenewBefore::Percentage(p),
            _ => {
                return Err(SpecError(format!(
                    "spec.renewBeforePercentage {p} must be between 1 and 99"
                )));
            }
        },
        (None, None) => RenewBefore::Default,
    };

    check_names(spec)?;
    let common_name = spec.common_name.clone().filter(|cn| !cn.is_empty());
    if let Some(cn) = &common_name
        && cn.chars().count() > 64
    {
        return Err(SpecError("spec.commonName is longer than 64 characters".into()));
    }
    let ip_addresses = list(&spec.ip_addresses)
        .iter()
        .map(|ip| {
            IpAddr::from_str(ip)
                .map_err(|_| SpecError(format!("spec.ipAddresses: {} is not an IP address", shown(ip))))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let dns_names = list(&spec.dns_names);
    let uris = list(&spec.uris);
    for uri in &uris {
        if !uri.contains(':') {
            return Err(SpecError(format!(
                "spec.uris: {} is not an absolute URI",
                shown(uri)
            )));
        }
    }
    let email_addresses = list(&spec.email_addresses);
    if common_name.is_none()
        && dns_names.is_empty()
        && ip_addresses.is_empty()
        && uris.is_empty()
        && email_addresses.is_empty()
    {
        return Err(SpecError(
            "at least one of spec.commonName, dnsNames, ipAddresses, uris or emailAddresses must be set"
                .into(),
        ));
    }

    let pk = spec.private_key.clone().unwrap_or_default();
    let algorithm = pk.algorithm.unwrap_or_default();
    let size = match (algorithm, pk.size) {
        (KeyAlgorithm::Rsa, None) => 2048,
        (KeyAlgorithm::Rsa, Some(s @ (2048 | 3072 | 4096))) => s as u32,
        (KeyAlgorithm::Ecdsa, None) => 256,
        (KeyAlgorithm::Ecdsa, Some(s @ (256 | 384))) => s as u32,
        (KeyAlgorithm::Ed25519, _) => 0,
        (alg, Some(s)) => {
            return Err(SpecError(format!(
                "spec.privateKey.size {s} is not supported for {alg:?}: RSA takes 2048, 3072 or 4096, ECDSA 256 or 384"
            )));
        }
    };
    let key_encoding = pk.encoding.unwrap_or_default();
    if algorithm == KeyAlgorithm::Ed25519 && key_encoding == KeyEncoding::Pkcs1 {
        return Err(SpecError(
            "spec.privateKey.encoding PKCS1 is not possible for Ed25519 keys; use PKCS8".into(),
        ));
    }

    let is_ca = spec.is_ca.unwrap_or(false);
    let mut usages: BTreeSet<Usage> = match &spec.usages {
        // cert-manager's aliases ("signing", "s/mime") are the same bits as their canonical names.
        Some(u) if !u.is_empty() => u.iter().map(|u| u.canonical()).collect(),
        _ => default_usages(is_ca, algorithm),
    };
    if is_ca {
        usages.insert(Usage::CertSign);
        usages.insert(Usage::CrlSign);
    }

    let name_constraints = match &spec.name_constraints {
        Some(_) if !is_ca => {
            return Err(SpecError(
                "spec.nameConstraints is only allowed with spec.isCA: true".into(),
            ));
        }
        Some(constraints) => name_constraints(constraints)?,
        None => None,
    };

    let s = spec.subject.clone().unwrap_or_default();
    let formats = spec.additional_output_formats.clone().unwrap_or_default();
    Ok(ValidatedSpec {
        secret_name: spec.secret_name.clone(),
        issuer_ref: spec.issuer_ref.clone(),
        common_name,
        subject: SubjectFields {
            organizations: list(&s.organizations),
            organizational_units: list(&s.organizational_units),
            countries: list(&s.countries),
            localities: list(&s.localities),
            provinces: list(&s.provinces),
            street_addresses: list(&s.street_addresses),
            postal_codes: list(&s.postal_codes),
            serial_number: s.serial_number.filter(|n| !n.is_empty()),
        },
        dns_names,
        ip_addresses,
        uris,
        email_addresses,
        duration,
        renew_before,
        is_ca,
        name_constraints,
        usages,
        key: KeySpec { algorithm, size },
        key_encoding,
        rotation_policy: pk.rotation_policy.unwrap_or_default(),
        combined_pem: formats.iter().any(|f| f.type_ == OutputFormatType::CombinedPem),
        der_key: formats.iter().any(|f| f.type_ == OutputFormatType::Der),
        istio_ca_certs: formats.iter().any(|f| f.type_ == OutputFormatType::IstioCaCerts),
        keystores: super::keystores::validate(spec.keystores.as_deref()).map_err(SpecError)?,
        deletion_policy: spec.secret_deletion_policy.unwrap_or_default(),
    })
}

impl ValidatedSpec {
    /// The certificate to sign, valid from `now` for the requested duration.
    pub fn template(&self, now: jiff::Timestamp) -> CertificateTemplate {
        let not_before = truncate_to_second(now);
        CertificateTemplate {
            common_name: self.common_name.clone(),
            subject: self.subject.clone(),
            dns_names: self.dns_names.clone(),
            ip_addresses: self.ip_addresses.clone(),
            uris: self.uris.clone(),
            email_addresses: self.email_addresses.clone(),
            not_before,
            not_after: not_before.saturating_add(self.duration).unwrap_or(not_before),
            is_ca: self.is_ca,
            usages: self.usages.iter().copied().collect(),
            name_constraints: self.name_constraints.clone(),
        }
    }
}

/// X.509 validity has second precision; so do our timestamps.
pub fn truncate_to_second(t: jiff::Timestamp) -> jiff::Timestamp {
    jiff::Timestamp::from_second(t.as_second()).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::certificate;

    fn ca_spec(constraints: serde_json::Value) -> CertificateSpec {
        let mut spec = certificate("team-ca", "root", &[]).spec;
        spec.dns_names = None;
        spec.common_name = Some("Team CA".into());
        spec.is_ca = Some(true);
        spec.name_constraints = Some(serde_json::from_value(constraints).unwrap());
        spec
    }

    #[test]
    fn name_constraints_become_the_template_of_the_ca_certificate() {
        let spec = validate(&ca_spec(serde_json::json!({
            "critical": true,
            "permitted": {"dnsDomains": ["team.svc", ".cluster.local"], "ipRanges": ["10.1.2.3/8", "fd00::/8"],
                          "emailAddresses": ["ops@team.svc", "team.svc", ".team.svc"], "uriDomains": ["cluster.local"]},
            "excluded": {"dnsDomains": ["secret.team.svc"]}
        })))
        .unwrap();
        let constraints = spec.name_constraints.clone().unwrap();
        assert!(constraints.critical);
        assert_eq!(constraints.permitted.dns_domains, ["team.svc", ".cluster.local"]);
        // Host bits are cleared, as cert-manager (Go's net.ParseCIDR) does.
        assert_eq!(
            constraints
                .permitted
                .ip_ranges
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["10.0.0.0/8", "fd00::/8"]
        );
        assert_eq!(constraints.excluded.dns_domains, ["secret.team.svc"]);
        assert_eq!(
            spec.template(jiff::Timestamp::UNIX_EPOCH).name_constraints,
            Some(constraints)
        );
    }

    #[test]
    fn name_constraints_are_refused_on_a_certificate_that_is_not_a_ca() {
        let mut spec = ca_spec(serde_json::json!({"permitted": {"dnsDomains": ["team.svc"]}}));
        spec.is_ca = None;
        spec.dns_names = Some(vec!["api.team.svc".into()]);
        assert_eq!(
            validate(&spec).unwrap_err().0,
            "spec.nameConstraints is only allowed with spec.isCA: true"
        );
        spec.is_ca = Some(false);
        assert!(validate(&spec).is_err());
    }

    #[test]
    fn name_constraints_listing_nothing_write_no_extension() {
        for empty in [
            serde_json::json!({}),
            serde_json::json!({"critical": true, "permitted": {}, "excluded": {"dnsDomains": []}}),
        ] {
            assert_eq!(validate(&ca_spec(empty)).unwrap().name_constraints, None);
        }
    }

    #[test]
    fn bad_name_constraint_entries_are_refused_naming_the_field() {
        let refused = |constraints: serde_json::Value| validate(&ca_spec(constraints)).unwrap_err().0;
        assert_eq!(
            refused(serde_json::json!({"permitted": {"ipRanges": ["10.0.0.0"]}})),
            "spec.nameConstraints.permitted.ipRanges: \"10.0.0.0\" is not a CIDR range (address/prefix length, e.g. 10.0.0.0/8)"
        );
        assert_eq!(
            refused(serde_json::json!({"excluded": {"ipRanges": ["10.0.0.0/40"]}})),
            "spec.nameConstraints.excluded.ipRanges: \"10.0.0.0/40\": the prefix length is at most 32"
        );
        assert!(
            refused(serde_json::json!({"permitted": {"dnsDomains": ["*.team.svc"]}}))
                .starts_with("spec.nameConstraints.permitted.dnsDomains: \"*.team.svc\" is a pattern")
        );
        for (field, bad) in [
            ("dnsDomains", "team..svc"),
            ("dnsDomains", "team.svc."),
            ("dnsDomains", "tëam.svc"),
            ("uriDomains", "https://team.svc"),
            ("emailAddresses", "a@b@team.svc"),
            ("emailAddresses", "ops@.team.svc"),
            ("emailAddresses", "@team.svc"),
        ] {
            let message = refused(serde_json::json!({"permitted": {field: [bad]}}));
            assert!(
                message.starts_with(&format!("spec.nameConstraints.permitted.{field}: {bad:?}")),
                "{field} {bad}: {message}"
            );
        }
    }
}
