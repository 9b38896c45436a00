//! What the inventory keeps of a certificate found in a Secret or ConfigMap: facts, never the
//! data itself. Pure: a value of a data key in, the certificates it holds (or why none could
//! be read) out. Nothing read here ever reaches a message: a reason names the key and what was
//! wrong, not what the value held (it may be a private key).

use jiff::Timestamp;

use crate::pki::lower_hex;

/// At most this many certificates of one object are kept (and reported); the rest are counted.
pub const MAX_CERTIFICATES_PER_OBJECT: usize = 100;
/// A common name is cut to this many characters in metric labels.
pub const MAX_CN_CHARS: usize = 64;

/// Who writes an object's certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ManagedBy {
    Certkeeper,
    CertManager,
    None,
}

impl ManagedBy {
    pub fn label(self) -> &'static str {
        match self {
            Self::Certkeeper => "certkeeper",
            Self::CertManager => "cert-manager",
            Self::None => "none",
        }
    }

    /// From an object's labels and annotations: certkeeper's own first (a Certificate's Secret,
    /// a Bundle's target), then cert-manager's, else nobody.
    pub fn of(labels: impl Fn(&str) -> bool, annotations: impl Fn(&str) -> bool) -> Self {
        let own = [
            crate::certificate::secret::LABEL_CERTIFICATE_NAME,
            crate::api::BUNDLE_LABEL,
        ];
        if own.iter().any(|k| labels(k) || annotations(k)) {
            return Self::Certkeeper;
        }
        if annotations("cert-manager.io/certificate-name")
            || annotations("cert-manager.io/issuer-name")
            || labels("controller.cert-manager.io/fao")
        {
            return Self::CertManager;
        }
        Self::None
    }
}

/// One certificate, as the inventory knows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateFacts {
    /// The data key it was found under (`tls.crt`, `ca.crt`, `bundle.pem`, …).
    pub key: String,
    /// Its position among the certificates of that key, from 0.
    pub index: usize,
    pub subject: String,
    pub subject_cn: String,
    pub issuer: String,
    pub issuer_cn: String,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<String>,
    pub uris: Vec<String>,
    #[serde(with = "jiff::fmt::serde::timestamp::second::required")]
    pub not_before: Timestamp,
    #[serde(with = "jiff::fmt::serde::timestamp::second::required")]
    pub not_after: Timestamp,
    pub serial: String,
    /// SHA-256 of the DER, lowercase hex.
    pub fingerprint: String,
    pub is_ca: bool,
}

/// A key whose value could not be read, and why (no content quoted).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Unreadable {
    pub key: String,
    pub reason: String,
}

/// Everything read from one object's data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectFacts {
    /// Up to `MAX_CERTIFICATES_PER_OBJECT`, in key order then bundle order.
    pub certificates: Vec<CertificateFacts>,
    pub unreadable: Vec<Unreadable>,
    /// Certificates beyond the limit: counted, not read.
    pub omitted: usize,
}

/// Keys whose values may be a DER certificate (`key.der` is a private key: never looked into).
fn der_key(key: &str) -> bool {
    [".crt", ".cer", ".der"].iter().any(|ext| key.ends_with(ext)) && !key.contains("key")
}

/// Reads every certificate of an object's data (`key`, value), in key order. `tls` is a
/// `kubernetes.io/tls` Secret: one whose `tls.crt` holds no certificate is unreadable under
/// `tls.crt` (a key without its certificate, even beside a `ca.crt`); so is a labelled object
/// that holds none.
pub fn read_object<'a>(data: impl IntoIterator<Item = (&'a str, &'a [u8])>, tls: bool) -> ObjectFacts {
    let mut facts = ObjectFacts::default();
    for (key, value) in data {
        read_value(key, value, &mut facts);
    }
    let missing = if tls {
        let told = |key: &str| key == "tls.crt";
        !facts.certificates.iter().any(|c| told(&c.key))
            && !facts.unreadable.iter().any(|u| told(&u.key))
            && facts.omitted == 0
    } else {
        facts.certificates.is_empty() && facts.unreadable.is_empty() && facts.omitted == 0
    };
    if missing {
        facts.unreadable.push(Unreadable {
            key: if tls { "tls.crt" } else { "" }.to_owned(),
            reason: "no certificate found".to_owned(),
        });
    }
    facts
}

fn read_value(key: &str, value: &[u8], facts: &mut ObjectFacts) {
    // Junk is bounded like certificates: a value of thousands of broken blocks is a few.
    let unreadable = |facts: &mut ObjectFacts, reason: String| {
        if facts.unreadable.len() < MAX_CERTIFICATES_PER_OBJECT {
            facts.unreadable.push(Unreadable {
                key: key.to_owned(),
                reason,
            })
        }
    };
    if value.windows(11).any(|w| w == b"-----BEGIN ") {
        // Blocks one at a time: a bundle of thousands is counted past the limit, not decoded.
        let Ok(text) = std::str::from_utf8(value) else {
            return unreadable(facts, "PEM that is not UTF-8".into());
        };
        let mut index = 0;
        for block in text.split("-----BEGIN ").skip(1) {
            let Some((label, _)) = block.split_once("-----") else {
                return unreadable(facts, "malformed PEM".into());
            };
            if label != "CERTIFICATE" {
                // A private key or anything else: not a certificate, never looked into.
                continue;
            }
            if facts.certificates.len() >= MAX_CERTIFICATES_PER_OBJECT {
                facts.omitted += 1;
                continue;
            }
            let pem = format!("-----BEGIN {block}");
            match pem::parse(pem.as_bytes()) {
                Ok(parsed) => match certificate_facts(key, index, parsed.contents()) {
                    Ok(cert) => facts.certificates.push(cert),
                    Err(reason) => unreadable(facts, format!("certificate {index}: {reason}")),
                },
                Err(_) => unreadable(facts, format!("certificate {index}: malformed PEM")),
            }
            index += 1;
        }
    } else if der_key(key) && value.first() == Some(&0x30) {
        if facts.certificates.len() >= MAX_CERTIFICATES_PER_OBJECT {
            facts.omitted += 1;
            return;
        }
        match certificate_facts(key, 0, value) {
            Ok(cert) => facts.certificates.push(cert),
            Err(reason) => unreadable(facts, reason),
        }
    }
}

/// The facts of one DER certificate.
pub fn certificate_facts(key: &str, index: usize, der: &[u8]) -> Result<CertificateFacts, String> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let cn = |name: &x509_parser::x509::X509Name<'_>| {
        name.iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    // A subjectAltName that does not parse leaves the names out; the dates are what count.
    let names = crate::pki::alt_names(&cert).unwrap_or_default();
    let time = |t: x509_parser::time::ASN1Time| {
        Timestamp::from_second(t.timestamp()).map_err(|e| format!("validity out of range: {e}"))
    };
    Ok(CertificateFacts {
        key: key.to_owned(),
        index,
        subject: cert.subject().to_string(),
        subject_cn: cn(cert.subject()),
        issuer: cert.issuer().to_string(),
        issuer_cn: cn(cert.issuer()),
        dns_names: names.dns_names,
        ip_addresses: names.ip_addresses.iter().map(ToString::to_string).collect(),
        uris: names.uris,
        not_before: time(cert.validity().not_before)?,
        not_after: time(cert.validity().not_after)?,
        // As `certkeeper inspect` and the Certificate's status write it.
        serial: crate::pki::serial_hex(cert.raw_serial()),
        fingerprint: lower_hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der).as_ref()),
        is_ca: cert.is_ca(),
    })
}

/// `text` cut to `MAX_CN_CHARS` characters.
pub fn truncated_cn(text: &str) -> &str {
    match text.char_indices().nth(MAX_CN_CHARS) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// Where an object's certificates stand at `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Valid,
    /// Less than the longest warning threshold left.
    Expiring,
    Expired,
    Unreadable,
}

impl State {
    pub const ALL: [State; 4] = [Self::Valid, Self::Expiring, Self::Expired, Self::Unreadable];

    pub fn label(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Expiring => "expiring",
            Self::Expired => "expired",
            Self::Unreadable => "unreadable",
        }
    }

    /// The state of a certificate valid until `not_after`, `expiring_within` being the longest
    /// warning threshold.
    pub fn of(not_after: Timestamp, now: Timestamp, expiring_within: jiff::SignedDuration) -> Self {
        if now >= not_after {
            Self::Expired
        } else if not_after.duration_since(now) < expiring_within {
            Self::Expiring
        } else {
            Self::Valid
        }
    }
}
