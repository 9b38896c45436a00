//! Validation of a Certificate's spec into a `ValidatedSpec`: defaults applied, durations
//! parsed, addresses checked. Pure; what the schema cannot refuse is refused here.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::str::FromStr;

use jiff::SignedDuration;

use crate::api::{
    CertificateSpec, IssuerRef, OutputFormatType, PrivateKeyRotationPolicy, SecretDeletionPolicy,
};
use crate::pki::{CertificateTemplate, KeyAlgorithm, KeyEncoding, KeySpec, SubjectFields, Usage};

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
    /// The usages the certificate must carry, defaults applied (`isCA` adds cert and CRL sign).
    pub usages: BTreeSet<Usage>,
    pub key: KeySpec,
    pub key_encoding: KeyEncoding,
    pub rotation_policy: PrivateKeyRotationPolicy,
    pub combined_pem: bool,
    pub der_key: bool,
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
        usages,
        key: KeySpec { algorithm, size },
        key_encoding,
        rotation_policy: pk.rotation_policy.unwrap_or_default(),
        combined_pem: formats.iter().any(|f| f.type_ == OutputFormatType::CombinedPem),
        der_key: formats.iter().any(|f| f.type_ == OutputFormatType::Der),
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
        }
    }
}

/// X.509 validity has second precision; so do our timestamps.
pub fn truncate_to_second(t: jiff::Timestamp) -> jiff::Timestamp {
    jiff::Timestamp::from_second(t.as_second()).unwrap_or(t)
}
