//! Reading existing certificates: what a Secret holds, in a form the trigger policies compare.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use const_oid::ObjectIdentifier;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::x509::AttributeTypeAndValue;

use super::cert::{
    OID_COMMON_NAME, OID_COUNTRY, OID_LOCALITY, OID_ORGANIZATION, OID_ORGANIZATIONAL_UNIT, OID_POSTAL_CODE,
    OID_PROVINCE, OID_SERIAL_NUMBER, OID_STREET_ADDRESS,
};
use super::key::{key_spec_from_spki, same_public_key};
use super::{KeySpec, NameConstraints, PkiError, PrivateKey, SubjectFields, Usage};

/// The facts of one parsed certificate that renewal decisions need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateInfo {
    /// DER of the whole certificate.
    pub der: Vec<u8>,
    /// Lower-case hex of the serial number, no separators, no leading zero bytes.
    pub serial_hex: String,
    pub not_before: jiff::Timestamp,
    pub not_after: jiff::Timestamp,
    pub common_name: Option<String>,
    pub subject: SubjectFields,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub uris: Vec<String>,
    pub email_addresses: Vec<String>,
    pub is_ca: bool,
    /// The NameConstraints extension, if any.
    pub name_constraints: Option<NameConstraints>,
    /// Key usages and extended key usages together.
    pub usages: BTreeSet<Usage>,
    /// Algorithm and size of the certified public key.
    pub key_spec: KeySpec,
    /// DER SubjectPublicKeyInfo of the certified key.
    pub public_key_der: Vec<u8>,
    /// Issuer and subject DNs equal and the signature verifies with the certificate's own key.
    pub self_signed: bool,
    /// SHA-256 of `der`, upper-case hex with colons (`AB:CD:…`), as `openssl x509 -fingerprint`.
    pub fingerprint_sha256: String,
}

impl CertificateInfo {
    /// The certificate as one PEM block, LF line endings.
    pub fn to_pem(&self) -> String {
        super::key::encode_pem("CERTIFICATE", self.der.clone())
    }

    /// True when `issuer`'s key verifies this certificate's signature and the issuer DN matches.
    pub fn is_signed_by(&self, issuer: &CertificateInfo) -> bool {
        let (Ok(cert), Ok(issuer)) = (parse_der(&self.der), parse_der(&issuer.der)) else {
            return false;
        };
        cert.issuer().as_raw() == issuer.subject().as_raw()
            && cert.verify_signature(Some(issuer.public_key())).is_ok()
    }

    /// True when `key` is the private half of the certified public key.
    pub fn key_matches(&self, key: &PrivateKey) -> bool {
        same_public_key(&self.public_key_der, key.spki())
    }

    fn from_der(der: &[u8]) -> Result<Self, PkiError> {
        let cert = parse_der(der)?;
        let invalid = |what: &str, e: x509_parser::error::X509Error| {
            PkiError::InvalidCertificate(format!("{what}: {e}"))
        };
        let timestamp = |t: x509_parser::time::ASN1Time| {
            jiff::Timestamp::from_second(t.timestamp())
                .map_err(|e| PkiError::InvalidCertificate(format!("validity: {e}")))
        };

        let mut common_name = None;
        let mut subject = SubjectFields::default();
        for attribute in cert.subject().iter_attributes() {
            let oid = attribute.attr_type().as_bytes();
            let value = attribute_text(attribute);
            if oid_is(oid, OID_COMMON_NAME) {
                common_name.get_or_insert(value);
            } else if oid_is(oid, OID_ORGANIZATION) {
                subject.organizations.push(value);
            } else if oid_is(oid, OID_ORGANIZATIONAL_UNIT) {
                subject.organizational_units.push(value);
            } else if oid_is(oid, OID_COUNTRY) {
                subject.countries.push(value);
            } else if oid_is(oid, OID_LOCALITY) {
                subject.localities.push(value);
            } else if oid_is(oid, OID_PROVINCE) {
                subject.provinces.push(value);
            } else if oid_is(oid, OID_STREET_ADDRESS) {
                subject.street_addresses.push(value);
            } else if oid_is(oid, OID_POSTAL_CODE) {
                subject.postal_codes.push(value);
            } else if oid_is(oid, OID_SERIAL_NUMBER) {
                subject.serial_number.get_or_insert(value);
            }
        }

        let AltNames {
            dns_names,
            ip_addresses,
            uris,
            email_addresses,
        } = alt_names(&cert).map_err(|e| invalid("subjectAltName", e))?;

        let is_ca = cert
            .basic_constraints()
            .map_err(|e| invalid("basicConstraints", e))?
            .is_some_and(|bc| bc.value.ca);
        let name_constraints = cert
            .name_constraints()
            .map_err(|e| invalid("nameConstraints", e))?
            .map(|ext| NameConstraints::from_parsed(ext.critical, ext.value));

        let mut usages = BTreeSet::new();
        if let Some(ku) = cert.key_usage().map_err(|e| invalid("keyUsage", e))? {
            usages.extend(
                (0..9u8)
                    .filter(|bit| ku.value.flags & (1 << bit) != 0)
                    .filter_map(Usage::from_key_usage_bit),
            );
        }
        if let Some(eku) = cert.extended_key_usage().map_err(|e| invalid("extKeyUsage", e))? {
            let eku = eku.value;
            let known = [
                (eku.any, Usage::Any),
                (eku.server_auth, Usage::ServerAuth),
                (eku.client_auth, Usage::ClientAuth),
                (eku.code_signing, Usage::CodeSigning),
                (eku.email_protection, Usage::EmailProtection),
                (eku.time_stamping, Usage::Timestamping),
                (eku.ocsp_signing, Usage::OcspSigning),
            ];
            usages.extend(known.iter().filter(|(set, _)| *set).map(|(_, usage)| *usage));
            usages.extend(
                eku.other
                    .iter()
                    .filter_map(|oid| Usage::from_extended_oid(oid.as_bytes())),
            );
        }

        let public_key_der = cert.public_key().raw.to_vec();
        let self_signed =
            cert.issuer().as_raw() == cert.subject().as_raw() && cert.verify_signature(None).is_ok();
        Ok(CertificateInfo {
            der: der.to_vec(),
            serial_hex: serial_hex(cert.raw_serial()),
            not_before: timestamp(cert.validity().not_before)?,
            not_after: timestamp(cert.validity().not_after)?,
            common_name,
            subject,
            dns_names,
            ip_addresses,
            uris,
            email_addresses,
            is_ca,
            name_constraints,
            usages,
            key_spec: key_spec_from_spki(&public_key_der)?,
            public_key_der,
            self_signed,
            fingerprint_sha256: fingerprint_sha256(der),
        })
    }
}

/// Every `CERTIFICATE` block of a PEM bundle, in order, as raw DER. A bundle without one is
/// `NoCertificate`.
pub fn parse_pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, PkiError> {
    // Generic message: the bundle may hold a key block, and the PEM error could quote it.
    let blocks = pem::parse_many(pem).map_err(|_| PkiError::InvalidCertificate("malformed PEM".into()))?;
    let certificates: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|block| block.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect();
    if certificates.is_empty() {
        return Err(PkiError::NoCertificate);
    }
    Ok(certificates)
}

/// Parses a PEM bundle (leaf first) into certificate facts. Empty input is `NoCertificate`.
pub fn parse_certificate_chain(pem: &[u8]) -> Result<Vec<CertificateInfo>, PkiError> {
    parse_pem_certificates(pem)?
        .iter()
        .map(|der| CertificateInfo::from_der(der))
        .collect()
}

/// Whether `content` (an OID's content octets, as x509-parser gives them) is `oid`.
fn oid_is(content: &[u8], oid: ObjectIdentifier) -> bool {
    content == oid.as_bytes()
}

pub(crate) fn parse_der(der: &[u8]) -> Result<X509Certificate<'_>, PkiError> {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, cert)| cert)
        .map_err(|e| PkiError::InvalidCertificate(e.to_string()))
}

/// The names of a certificate's subjectAltName extension, by kind.
#[derive(Debug, Default)]
pub(crate) struct AltNames {
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub uris: Vec<String>,
    pub email_addresses: Vec<String>,
}

/// The subjectAltName names of `cert` (none without the extension).
pub(crate) fn alt_names(cert: &X509Certificate<'_>) -> Result<AltNames, x509_parser::error::X509Error> {
    let mut names = AltNames::default();
    let san = cert.subject_alternative_name()?;
    for name in san.iter().flat_map(|ext| ext.value.general_names.iter()) {
        match name {
            GeneralName::DNSName(dns) => names.dns_names.push((*dns).to_owned()),
            GeneralName::URI(uri) => names.uris.push((*uri).to_owned()),
            GeneralName::RFC822Name(email) => names.email_addresses.push((*email).to_owned()),
            GeneralName::IPAddress(bytes) => {
                if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                    names.ip_addresses.push(IpAddr::V4(Ipv4Addr::from(v4)));
                } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                    names.ip_addresses.push(IpAddr::V6(Ipv6Addr::from(v6)));
                }
            }
            _ => {}
        }
    }
    Ok(names)
}

/// Lower-case hex of `bytes`.
pub(crate) fn lower_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lower-case hex of a DER INTEGER's content without leading zero octets ("00" for zero).
pub(crate) fn serial_hex(raw: &[u8]) -> String {
    let skip = raw.iter().take_while(|b| **b == 0).count();
    match raw.get(skip..) {
        Some(rest) if !rest.is_empty() => lower_hex(rest),
        _ => "00".to_owned(),
    }
}

/// Upper-case, colon-separated SHA-256, the format of `openssl x509 -fingerprint -sha256`.
fn fingerprint_sha256(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A DN attribute as text: the string types x509-parser decodes, BMPString (UTF-16), and
/// anything else lossily rather than dropping the attribute.
fn attribute_text(attribute: &AttributeTypeAndValue<'_>) -> String {
    if let Ok(text) = attribute.as_str() {
        return text.to_owned();
    }
    let raw = attribute.as_slice();
    if attribute.attr_value().tag() == x509_parser::der_parser::asn1_rs::Tag::BmpString {
        let units: Vec<u16> = raw
            .chunks_exact(2)
            .filter_map(|pair| match pair {
                [high, low] => Some(u16::from_be_bytes([*high, *low])),
                _ => None,
            })
            .collect();
        return String::from_utf16_lossy(&units);
    }
    String::from_utf8_lossy(raw).into_owned()
}
