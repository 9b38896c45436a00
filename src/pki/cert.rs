//! Building and signing certificates, and assembling the chain a Secret carries.
//!
//! The TBSCertificate is written field by field (see `der`) so the issuer DN is the CA's subject
//! DN byte for byte, subject attributes can repeat, and AIA/CRL URLs are exactly what the issuer
//! asks for. Extensions follow what cert-manager (Go's crypto/x509) writes.

use std::net::IpAddr;

use super::key::{encode_pem, public_key_bits, same_public_key};
use super::parse::{parse_der, serial_hex};
use super::usage::{KU_CRL_SIGN, KU_KEY_CERT_SIGN, UsageEncoding};
use super::{CaKeyPair, CertificateInfo, IssuerUrls, PkiError, PrivateKey, Usage, der};

/// Subject DN parts beyond the common name (cert-manager's `spec.subject`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubjectFields {
    pub organizations: Vec<String>,
    pub organizational_units: Vec<String>,
    pub countries: Vec<String>,
    pub localities: Vec<String>,
    pub provinces: Vec<String>,
    pub street_addresses: Vec<String>,
    pub postal_codes: Vec<String>,
    pub serial_number: Option<String>,
}

/// Everything a new certificate says about its subject.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertificateTemplate {
    pub common_name: Option<String>,
    pub subject: SubjectFields,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub uris: Vec<String>,
    pub email_addresses: Vec<String>,
    pub not_before: jiff::Timestamp,
    pub not_after: jiff::Timestamp,
    pub is_ca: bool,
    /// Key usages and extended key usages; `is_ca` adds cert sign and CRL sign.
    pub usages: Vec<Usage>,
}

/// A freshly signed certificate with the PEM the Secret needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// The new certificate alone, PEM.
    pub certificate_pem: String,
    /// `tls.crt`: the new certificate, then the chain up to but excluding a self-signed root.
    pub chain_pem: String,
    /// `ca.crt`: the root, or the highest certificate known.
    pub ca_pem: String,
    pub serial_hex: String,
    pub not_before: jiff::Timestamp,
    pub not_after: jiff::Timestamp,
}

/// Signs `template` with the subject's own key (the selfSigned issuer).
pub fn sign_self_signed(
    template: &CertificateTemplate,
    key: &PrivateKey,
) -> Result<IssuedCertificate, PkiError> {
    let subject = subject_name(template);
    let key_id = key_identifier(key.spki())?;
    let not_before = to_second(template.not_before);
    let not_after = to_second(template.not_after);
    let signed = sign(
        &Draft {
            template,
            issuer_name: &subject,
            subject_name: &subject,
            subject_spki: key.spki(),
            not_before,
            not_after,
            subject_key_id: &key_id,
            authority_key_id: &key_id,
            urls: None,
        },
        key,
    )?;
    let pem = encode_pem(PEM_CERTIFICATE, signed.der);
    Ok(IssuedCertificate {
        certificate_pem: pem.clone(),
        chain_pem: pem.clone(),
        ca_pem: pem,
        serial_hex: signed.serial_hex,
        not_before,
        not_after,
    })
}

/// Signs `template` for `subject_key` with a CA key pair. `not_after` is capped at the CA's own
/// `notAfter`.
pub fn sign_with_ca(
    template: &CertificateTemplate,
    subject_key: &PrivateKey,
    ca: &CaKeyPair,
) -> Result<IssuedCertificate, PkiError> {
    let ca_cert = ca.chain.first().ok_or(PkiError::NoCertificate)?;
    // `CaKeyPair::from_pem` checks this too, but the fields are public.
    if !same_public_key(ca.key.spki(), &ca_cert.public_key_der) {
        return Err(PkiError::KeyMismatch);
    }
    let ca_x509 = parse_der(&ca_cert.der)?;
    // AKI must equal the CA's SKI whatever method computed it (OpenSSL uses SHA-1).
    let authority_key_id = match subject_key_id_of(&ca_x509) {
        Some(id) => id,
        None => key_identifier(&ca_cert.public_key_der)?,
    };

    let not_before = to_second(template.not_before);
    let not_after = to_second(template.not_after).min(ca_cert.not_after);
    if ca_cert.not_after <= not_before {
        return Err(PkiError::Expired(ca_cert.not_after));
    }
    let subject = subject_name(template);
    let subject_key_id = key_identifier(subject_key.spki())?;
    let signed = sign(
        &Draft {
            template,
            issuer_name: ca_x509.subject().as_raw(),
            subject_name: &subject,
            subject_spki: subject_key.spki(),
            not_before,
            not_after,
            subject_key_id: &subject_key_id,
            authority_key_id: &authority_key_id,
            urls: Some(&ca.urls),
        },
        &ca.key,
    )?;

    let certificate_pem = encode_pem(PEM_CERTIFICATE, signed.der);
    let (chain_pem, ca_pem) = assemble_chain(&certificate_pem, ca);
    Ok(IssuedCertificate {
        certificate_pem,
        chain_pem,
        ca_pem,
        serial_hex: signed.serial_hex,
        not_before,
        not_after,
    })
}

const PEM_CERTIFICATE: &str = "CERTIFICATE";

const OID_COUNTRY: &[u64] = &[2, 5, 4, 6];
const OID_PROVINCE: &[u64] = &[2, 5, 4, 8];
const OID_LOCALITY: &[u64] = &[2, 5, 4, 7];
const OID_STREET_ADDRESS: &[u64] = &[2, 5, 4, 9];
const OID_POSTAL_CODE: &[u64] = &[2, 5, 4, 17];
const OID_ORGANIZATION: &[u64] = &[2, 5, 4, 10];
const OID_ORGANIZATIONAL_UNIT: &[u64] = &[2, 5, 4, 11];
const OID_COMMON_NAME: &[u64] = &[2, 5, 4, 3];
const OID_SERIAL_NUMBER: &[u64] = &[2, 5, 4, 5];

const OID_SUBJECT_KEY_IDENTIFIER: &[u64] = &[2, 5, 29, 14];
const OID_KEY_USAGE: &[u64] = &[2, 5, 29, 15];
const OID_SUBJECT_ALT_NAME: &[u64] = &[2, 5, 29, 17];
const OID_BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];
const OID_CRL_DISTRIBUTION_POINTS: &[u64] = &[2, 5, 29, 31];
const OID_AUTHORITY_KEY_IDENTIFIER: &[u64] = &[2, 5, 29, 35];
const OID_EXTENDED_KEY_USAGE: &[u64] = &[2, 5, 29, 37];
const OID_AUTHORITY_INFO_ACCESS: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 1, 1];
const OID_ACCESS_OCSP: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 1];
const OID_ACCESS_CA_ISSUERS: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 48, 2];

/// GeneralName tags (RFC 5280 §4.2.1.6), all IMPLICIT primitives.
const GN_EMAIL: u8 = der::context(1, false);
const GN_DNS: u8 = der::context(2, false);
const GN_URI: u8 = der::context(6, false);
const GN_IP: u8 = der::context(7, false);

/// RFC 5280 §4.1.2.2: at most 20 octets.
const SERIAL_LEN: usize = 20;

/// What goes into one TBSCertificate besides the template.
struct Draft<'a> {
    template: &'a CertificateTemplate,
    /// DER Name, copied verbatim.
    issuer_name: &'a [u8],
    subject_name: &'a [u8],
    subject_spki: &'a [u8],
    not_before: jiff::Timestamp,
    not_after: jiff::Timestamp,
    subject_key_id: &'a [u8],
    authority_key_id: &'a [u8],
    urls: Option<&'a IssuerUrls>,
}

struct Signed {
    der: Vec<u8>,
    serial_hex: String,
}

fn sign(draft: &Draft<'_>, signer: &PrivateKey) -> Result<Signed, PkiError> {
    if draft.not_after <= draft.not_before {
        return Err(PkiError::InvalidCertificate(format!(
            "notAfter {} is not after notBefore {}",
            draft.not_after, draft.not_before
        )));
    }
    let serial = random_serial()?;
    let signature_algorithm = signer.signature_algorithm_der();
    let extensions = extensions(draft)?;
    let extension_refs: Vec<&[u8]> = extensions.iter().map(Vec::as_slice).collect();
    let tbs = der::sequence(&[
        // version [0] EXPLICIT v3
        &der::tlv(der::context(0, true), &der::tlv(der::TAG_INTEGER, &[2])),
        &der::unsigned_integer(&serial),
        &signature_algorithm,
        draft.issuer_name,
        &der::sequence(&[&der::time(draft.not_before)?, &der::time(draft.not_after)?]),
        draft.subject_name,
        draft.subject_spki,
        &der::tlv(der::context(3, true), &der::sequence(&extension_refs)),
    ]);
    let signature = signer.sign(&tbs)?;
    let der = der::sequence(&[&tbs, &signature_algorithm, &der::bit_string(&signature)]);
    Ok(Signed {
        der,
        serial_hex: serial_hex(&serial),
    })
}

/// 20 random octets, first one in 1..=0x7f: positive, and always 20 octets long once encoded.
fn random_serial() -> Result<[u8; SERIAL_LEN], PkiError> {
    let mut serial = [0u8; SERIAL_LEN];
    aws_lc_rs::rand::fill(&mut serial).map_err(|e| PkiError::Signing(e.to_string()))?;
    if let Some(first) = serial.first_mut() {
        *first = (*first & 0x7f).max(1);
    }
    Ok(serial)
}

/// Subject key identifier: RFC 7093 §2 method 1, the leftmost 160 bits of the SHA-256 of the
/// subjectPublicKey bits.
pub(crate) fn key_identifier(spki: &[u8]) -> Result<Vec<u8>, PkiError> {
    let bits =
        public_key_bits(spki).ok_or_else(|| PkiError::InvalidKey("malformed SubjectPublicKeyInfo".into()))?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bits);
    Ok(digest.as_ref().iter().take(20).copied().collect())
}

/// The SubjectKeyIdentifier extension value of a parsed certificate, if any.
fn subject_key_id_of(cert: &x509_parser::certificate::X509Certificate<'_>) -> Option<Vec<u8>> {
    use x509_parser::extensions::ParsedExtension;
    cert.iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
}

fn to_second(at: jiff::Timestamp) -> jiff::Timestamp {
    jiff::Timestamp::from_second(at.as_second()).unwrap_or(at)
}

fn subject_is_empty(template: &CertificateTemplate) -> bool {
    let s = &template.subject;
    template.common_name.is_none()
        && s.organizations.is_empty()
        && s.organizational_units.is_empty()
        && s.countries.is_empty()
        && s.localities.is_empty()
        && s.provinces.is_empty()
        && s.street_addresses.is_empty()
        && s.postal_codes.is_empty()
        && s.serial_number.is_none()
}

/// The subject DN in the order Go's `pkix.Name` writes it, one attribute per RDN, so a
/// certificate re-issued here for a cert-manager user has the same subject bytes.
fn subject_name(template: &CertificateTemplate) -> Vec<u8> {
    let s = &template.subject;
    let attributes: [(&[u64], Vec<&String>); 9] = [
        (OID_COUNTRY, s.countries.iter().collect()),
        (OID_PROVINCE, s.provinces.iter().collect()),
        (OID_LOCALITY, s.localities.iter().collect()),
        (OID_STREET_ADDRESS, s.street_addresses.iter().collect()),
        (OID_POSTAL_CODE, s.postal_codes.iter().collect()),
        (OID_ORGANIZATION, s.organizations.iter().collect()),
        (OID_ORGANIZATIONAL_UNIT, s.organizational_units.iter().collect()),
        (OID_COMMON_NAME, template.common_name.iter().collect()),
        (OID_SERIAL_NUMBER, s.serial_number.iter().collect()),
    ];
    let rdns: Vec<Vec<u8>> = attributes
        .iter()
        .flat_map(|(oid, values)| {
            values
                .iter()
                .map(|value| der::set(&[&der::sequence(&[&der::oid(oid), &der::directory_string(value)])]))
        })
        .collect();
    let refs: Vec<&[u8]> = rdns.iter().map(Vec::as_slice).collect();
    der::sequence(&refs)
}

fn extension(oid: &[u64], critical: bool, value: &[u8]) -> Vec<u8> {
    if critical {
        der::sequence(&[&der::oid(oid), &der::boolean(true), &der::octet_string(value)])
    } else {
        // DEFAULT FALSE must be omitted in DER.
        der::sequence(&[&der::oid(oid), &der::octet_string(value)])
    }
}

fn extensions(draft: &Draft<'_>) -> Result<Vec<Vec<u8>>, PkiError> {
    let template = draft.template;
    let mut out = Vec::new();

    let mut key_usage_bits = 0u16;
    let mut extended = Vec::new();
    for usage in &template.usages {
        match usage.encoding() {
            UsageEncoding::KeyUsage(bit) => key_usage_bits |= 1 << bit,
            UsageEncoding::Extended(oid) => {
                if !extended.contains(&oid) {
                    extended.push(oid);
                }
            }
        }
    }
    if template.is_ca {
        key_usage_bits |= (1 << KU_KEY_CERT_SIGN) | (1 << KU_CRL_SIGN);
    }
    if key_usage_bits != 0 {
        out.push(extension(OID_KEY_USAGE, true, &key_usage_value(key_usage_bits)));
    }
    if !extended.is_empty() {
        let oids: Vec<Vec<u8>> = extended.iter().map(|oid| der::oid(oid)).collect();
        let refs: Vec<&[u8]> = oids.iter().map(Vec::as_slice).collect();
        out.push(extension(OID_EXTENDED_KEY_USAGE, false, &der::sequence(&refs)));
    }

    // cA defaults to FALSE, so a leaf's value is the empty SEQUENCE (as Go writes it).
    let basic_constraints = if template.is_ca {
        der::sequence(&[&der::boolean(true)])
    } else {
        der::sequence(&[])
    };
    out.push(extension(OID_BASIC_CONSTRAINTS, true, &basic_constraints));
    out.push(extension(
        OID_SUBJECT_KEY_IDENTIFIER,
        false,
        &der::octet_string(draft.subject_key_id),
    ));
    out.push(extension(
        OID_AUTHORITY_KEY_IDENTIFIER,
        false,
        &der::sequence(&[&der::tlv(der::context(0, false), draft.authority_key_id)]),
    ));

    let names = general_names(template)?;
    if !names.is_empty() {
        let refs: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
        // RFC 5280 §4.2.1.6: critical when the subject is empty.
        out.push(extension(
            OID_SUBJECT_ALT_NAME,
            subject_is_empty(template),
            &der::sequence(&refs),
        ));
    } else if subject_is_empty(template) {
        return Err(PkiError::InvalidCertificate(
            "a certificate needs a common name, a subject field or a subject alternative name".into(),
        ));
    }

    if let Some(urls) = draft.urls {
        let mut access = Vec::new();
        for url in &urls.ocsp_servers {
            access.push(access_description(OID_ACCESS_OCSP, url)?);
        }
        for url in &urls.issuing_certificate_urls {
            access.push(access_description(OID_ACCESS_CA_ISSUERS, url)?);
        }
        if !access.is_empty() {
            let refs: Vec<&[u8]> = access.iter().map(Vec::as_slice).collect();
            out.push(extension(OID_AUTHORITY_INFO_ACCESS, false, &der::sequence(&refs)));
        }
        // One DistributionPoint per URL, each a fullName [0] inside distributionPoint [0].
        let mut points = Vec::new();
        for url in &urls.crl_distribution_points {
            let uri = ia5(GN_URI, url, "CRL distribution point")?;
            let full_name = der::tlv(der::context(0, true), &uri);
            points.push(der::sequence(&[&der::tlv(der::context(0, true), &full_name)]));
        }
        if !points.is_empty() {
            let refs: Vec<&[u8]> = points.iter().map(Vec::as_slice).collect();
            out.push(extension(
                OID_CRL_DISTRIBUTION_POINTS,
                false,
                &der::sequence(&refs),
            ));
        }
    }
    Ok(out)
}

/// A KeyUsage BIT STRING: bit n of `bits` is named bit n, trailing zero bits dropped (X.690
/// §11.2.2).
fn key_usage_value(bits: u16) -> Vec<u8> {
    let used = 16 - bits.leading_zeros() as usize;
    let octets = used.div_ceil(8);
    // Named bit 0 is the most significant bit of the first octet.
    let msb_first = bits.reverse_bits().to_be_bytes();
    let mut body = vec![(octets * 8 - used) as u8];
    body.extend(msb_first.iter().take(octets));
    der::tlv(der::TAG_BIT_STRING, &body)
}

fn access_description(method: &[u64], url: &str) -> Result<Vec<u8>, PkiError> {
    Ok(der::sequence(&[
        &der::oid(method),
        &ia5(GN_URI, url, "access location")?,
    ]))
}

/// An IA5String GeneralName; IA5 is ASCII, so anything else is refused rather than mangled.
fn ia5(tag: u8, value: &str, what: &str) -> Result<Vec<u8>, PkiError> {
    if value.is_empty() || !value.is_ascii() {
        return Err(PkiError::InvalidCertificate(format!(
            "{what} {value:?} must be non-empty ASCII"
        )));
    }
    Ok(der::tlv(tag, value.as_bytes()))
}

fn general_names(template: &CertificateTemplate) -> Result<Vec<Vec<u8>>, PkiError> {
    let mut names = Vec::new();
    for dns in &template.dns_names {
        names.push(ia5(GN_DNS, dns, "DNS name")?);
    }
    for ip in &template.ip_addresses {
        names.push(match ip {
            IpAddr::V4(v4) => der::tlv(GN_IP, &v4.octets()),
            IpAddr::V6(v6) => der::tlv(GN_IP, &v6.octets()),
        });
    }
    for uri in &template.uris {
        if !uri.contains(':') {
            return Err(PkiError::InvalidCertificate(format!("URI {uri:?} has no scheme")));
        }
        names.push(ia5(GN_URI, uri, "URI")?);
    }
    for email in &template.email_addresses {
        names.push(ia5(GN_EMAIL, email, "email address")?);
    }
    Ok(names)
}

/// `tls.crt` and `ca.crt` for a certificate signed by `ca` (SPEC "The Secret"): the chain stops
/// before a self-signed root, and the root (or the highest certificate known) is the CA bundle.
fn assemble_chain(certificate_pem: &str, ca: &CaKeyPair) -> (String, String) {
    let Some((top, below_top)) = ca.chain.split_last() else {
        return (certificate_pem.to_owned(), certificate_pem.to_owned());
    };
    let (intermediates, root): (&[CertificateInfo], &CertificateInfo) = if top.self_signed {
        (below_top, top)
    } else {
        (&ca.chain, ca.root.as_ref().unwrap_or(top))
    };
    let mut chain_pem = certificate_pem.to_owned();
    for cert in intermediates {
        chain_pem.push_str(&encode_pem(PEM_CERTIFICATE, cert.der.clone()));
    }
    (chain_pem, encode_pem(PEM_CERTIFICATE, root.der.clone()))
}
