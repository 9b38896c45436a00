//! What a TLS Secret (or a PEM file) really holds, described for people: every certificate of
//! the chain, the key, and whether the chain verifies to `ca.crt`. Pure: `inspect` and
//! `status` both render it. Private keys are described by type only, never shown.

use std::fmt::Write as _;

use jiff::Timestamp;
use serde::Serialize;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::text::{field, field_joined};
use crate::pki::{CertificateInfo, KeyAlgorithm, KeySpec, PrivateKey, parse_certificate_chain};

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Material {
    /// `tls.crt`: the leaf first, then the chain.
    pub chain: Vec<CertificateDescription>,
    /// `ca.crt`: the trusted root(s).
    pub ca: Vec<CertificateDescription>,
    pub key: Option<KeyDescription>,
    /// Whether the chain verifies, up to a certificate of `ca.crt`, at the time of asking.
    pub chain_verified: bool,
    pub verification: String,
    /// What could not be read (a missing or unparsable part).
    pub problems: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateDescription {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    pub time_left: String,
    pub key: String,
    pub is_ca: bool,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<String>,
    pub uris: Vec<String>,
    pub email_addresses: Vec<String>,
    pub usages: Vec<String>,
    pub extensions: Vec<String>,
    pub fingerprint_sha256: String,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyDescription {
    #[serde(rename = "type")]
    pub type_: String,
    pub matches_certificate: bool,
}

/// Describes the three parts of a TLS Secret (any may be missing) at `now`.
pub fn describe(
    tls_crt: Option<&[u8]>,
    tls_key: Option<&[u8]>,
    ca_crt: Option<&[u8]>,
    now: Timestamp,
) -> Material {
    let mut problems = Vec::new();
    let mut certificates = |name: &str, pem: Option<&[u8]>| -> Vec<CertificateInfo> {
        match pem.map(parse_certificate_chain) {
            None => {
                problems.push(format!("{name} is missing"));
                Vec::new()
            }
            Some(Ok(list)) if list.is_empty() => {
                problems.push(format!("{name} holds no certificate"));
                Vec::new()
            }
            Some(Ok(list)) => list,
            Some(Err(e)) => {
                problems.push(format!("{name} cannot be parsed: {e}"));
                Vec::new()
            }
        }
    };
    let chain = certificates("tls.crt", tls_crt);
    let ca = match ca_crt {
        Some(_) => certificates("ca.crt", ca_crt),
        None => Vec::new(),
    };
    let key = match tls_key.map(PrivateKey::from_pem) {
        None => None,
        Some(Ok(key)) => Some(KeyDescription {
            type_: key_name(key.spec()),
            matches_certificate: chain.first().is_some_and(|leaf| leaf.key_matches(&key)),
        }),
        // The pki error never quotes key material.
        Some(Err(e)) => {
            problems.push(format!("tls.key cannot be parsed: {e}"));
            None
        }
    };
    let (chain_verified, verification) = match verify(&chain, &ca, ca_crt.is_some(), now) {
        Ok(how) => (true, how),
        Err(why) => (false, why),
    };
    Material {
        chain: chain.iter().map(|c| describe_certificate(c, now)).collect(),
        ca: ca.iter().map(|c| describe_certificate(c, now)).collect(),
        key,
        chain_verified,
        verification,
        problems,
    }
}

/// Each certificate signed by the next, the last by a certificate of `ca` (or itself in `ca`),
/// all valid at `now`.
fn verify(
    chain: &[CertificateInfo],
    ca: &[CertificateInfo],
    has_ca: bool,
    now: Timestamp,
) -> Result<String, String> {
    let last = chain.last().ok_or("there is no certificate to verify")?;
    for (i, pair) in chain.windows(2).enumerate() {
        if !pair[0].is_signed_by(&pair[1]) {
            return Err(format!(
                "certificate {} of tls.crt is not signed by certificate {}",
                i + 1,
                i + 2
            ));
        }
    }
    let root = if !has_ca {
        if last.self_signed {
            last
        } else {
            return Err("no ca.crt to verify the chain against".into());
        }
    } else if let Some(root) = ca.iter().find(|r| r.der == last.der) {
        root
    } else if let Some(root) = ca.iter().find(|r| last.is_signed_by(r)) {
        root
    } else {
        return Err("the chain does not lead to a certificate of ca.crt".into());
    };
    for cert in chain.iter().chain(std::iter::once(root)) {
        let name = cert.common_name.as_deref().unwrap_or(&cert.serial_hex);
        if now >= cert.not_after {
            return Err(format!("{name:?} expired at {}", cert.not_after));
        }
        if now < cert.not_before {
            return Err(format!("{name:?} is not valid before {}", cert.not_before));
        }
    }
    Ok(match has_ca {
        true => "the chain verifies to ca.crt".into(),
        false => "the chain verifies to its self-signed root".into(),
    })
}

fn describe_certificate(info: &CertificateInfo, now: Timestamp) -> CertificateDescription {
    let parsed = X509Certificate::from_der(&info.der).ok().map(|(_, c)| c);
    let (subject, issuer, extensions) = match &parsed {
        Some(cert) => (
            cert.subject().to_string(),
            cert.issuer().to_string(),
            cert.extensions().iter().map(describe_extension).collect(),
        ),
        None => Default::default(),
    };
    let usages = info
        .usages
        .iter()
        .filter_map(|u| serde_json::to_value(u).ok())
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    CertificateDescription {
        subject,
        issuer,
        serial: info.serial_hex.clone(),
        not_before: info.not_before,
        not_after: info.not_after,
        time_left: time_left(now, info.not_after),
        key: key_name(info.key_spec),
        is_ca: info.is_ca,
        dns_names: info.dns_names.clone(),
        ip_addresses: info.ip_addresses.iter().map(ToString::to_string).collect(),
        uris: info.uris.clone(),
        email_addresses: info.email_addresses.clone(),
        usages,
        extensions,
        fingerprint_sha256: info.fingerprint_sha256.clone(),
    }
}

fn describe_extension(ext: &x509_parser::extensions::X509Extension<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let name = x509_parser::objects::oid2sn(&ext.oid, registry)
        .map(str::to_owned)
        .unwrap_or_else(|_| ext.oid.to_id_string());
    let detail = match ext.parsed_extension() {
        ParsedExtension::BasicConstraints(bc) => match (bc.ca, bc.path_len_constraint) {
            (true, Some(n)) => format!("CA:TRUE, pathlen:{n}"),
            (true, None) => "CA:TRUE".into(),
            (false, _) => "CA:FALSE".into(),
        },
        ParsedExtension::CRLDistributionPoints(points) => points
            .iter()
            .flat_map(|p| match &p.distribution_point {
                Some(x509_parser::extensions::DistributionPointName::FullName(names)) => {
                    names.iter().filter_map(uri).collect::<Vec<_>>()
                }
                _ => Vec::new(),
            })
            .collect::<Vec<_>>()
            .join(", "),
        ParsedExtension::AuthorityInfoAccess(aia) => aia
            .accessdescs
            .iter()
            .filter_map(|d| uri(&d.access_location))
            .collect::<Vec<_>>()
            .join(", "),
        _ => String::new(),
    };
    let critical = if ext.critical { " (critical)" } else { "" };
    match detail.is_empty() {
        true => format!("{name}{critical}"),
        false => format!("{name}{critical}: {detail}"),
    }
}

fn uri(name: &GeneralName<'_>) -> Option<String> {
    match name {
        GeneralName::URI(u) => Some((*u).to_owned()),
        _ => None,
    }
}

/// "ECDSA P-256", "RSA 2048", "Ed25519".
pub fn key_name(spec: KeySpec) -> String {
    match spec.algorithm {
        KeyAlgorithm::Ecdsa => format!("ECDSA P-{}", spec.size),
        KeyAlgorithm::Rsa => format!("RSA {}", spec.size),
        KeyAlgorithm::Ed25519 => "Ed25519".into(),
    }
}

/// "89d 23h left", "3h 12m left", "expired 2h 5m ago".
pub fn time_left(now: Timestamp, not_after: Timestamp) -> String {
    let left = not_after.duration_since(now);
    let secs = left.as_secs().unsigned_abs();
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60);
    let span = match (d, h) {
        (0, 0) => format!("{m}m"),
        (0, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    };
    match left.is_negative() || left.is_zero() {
        true => format!("expired {span} ago"),
        false => format!("{span} left"),
    }
}

/// The text form shared by `inspect` and `status`, indented by `indent`.
pub fn write_text(out: &mut String, material: &Material, indent: usize) {
    let pad = " ".repeat(indent);
    for problem in &material.problems {
        let _ = writeln!(out, "{pad}problem: {problem}");
    }
    let verdict = if material.chain_verified { "yes" } else { "NO" };
    field(
        out,
        indent,
        "chain verified",
        &[format!("{verdict} ({})", material.verification)],
    );
    match &material.key {
        Some(key) => {
            let matches = if key.matches_certificate {
                "matches the certificate"
            } else {
                "DOES NOT match the certificate"
            };
            let _ = writeln!(out, "{pad}private key: {}, {matches}", key.type_);
        }
        None => {
            let _ = writeln!(out, "{pad}private key: none");
        }
    }
    let total = material.chain.len();
    for (i, cert) in material.chain.iter().enumerate() {
        let role = match i {
            0 => "leaf".to_owned(),
            _ => format!("issuer of certificate {i}"),
        };
        let _ = writeln!(out, "{pad}certificate {}/{total} ({role}):", i + 1);
        write_certificate(out, cert, indent + 2);
    }
    for (i, cert) in material.ca.iter().enumerate() {
        let _ = writeln!(out, "{pad}ca.crt {}/{}:", i + 1, material.ca.len());
        write_certificate(out, cert, indent + 2);
    }
}

fn write_certificate(out: &mut String, cert: &CertificateDescription, indent: usize) {
    let one = |s: String| vec![s];
    let subject = match cert.subject.is_empty() {
        true => "(empty)".to_owned(),
        false => cert.subject.clone(),
    };
    field(out, indent, "subject", &one(subject));
    field(out, indent, "issuer", &one(cert.issuer.clone()));
    let sans: Vec<String> = (cert.dns_names.iter().map(|n| format!("DNS:{n}")))
        .chain(cert.ip_addresses.iter().map(|n| format!("IP:{n}")))
        .chain(cert.uris.iter().map(|n| format!("URI:{n}")))
        .chain(cert.email_addresses.iter().map(|n| format!("email:{n}")))
        .collect();
    field(out, indent, "SANs", &sans);
    field(
        out,
        indent,
        "validity",
        &one(format!(
            "{} to {} ({})",
            cert.not_before, cert.not_after, cert.time_left
        )),
    );
    let ca = if cert.is_ca { ", CA" } else { "" };
    field(out, indent, "key", &one(format!("{}{ca}", cert.key)));
    field(out, indent, "serial", &one(cert.serial.clone()));
    let bytes: Vec<String> = cert.fingerprint_sha256.split(':').map(str::to_owned).collect();
    field_joined(out, indent, "SHA-256", &bytes, ":");
    field(out, indent, "usages", &cert.usages);
    field(out, indent, "extensions", &cert.extensions);
}
