//! Building and signing certificates, and assembling the chain a Secret carries.
//!
//! The TBSCertificate is assembled from `x509-cert` structures and signed with aws-lc-rs. The
//! issuer DN is the CA's subject DN byte for byte (see `asn1::raw`), subject attributes can
//! repeat, and AIA/CRL URLs are exactly what the issuer asks for. Extensions follow what
//! cert-manager (Go's crypto/x509) writes.

use std::net::IpAddr;

use const_oid::ObjectIdentifier;
use const_oid::db::{rfc4519, rfc5280};
use der::asn1::{AnyRef, Ia5String, OctetString, PrintableStringRef, SetOfVec, Utf8StringRef};
use der::{Encode, Sequence};
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::certificate::Version;
use x509_cert::ext::Extensions;
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AccessDescription, AuthorityInfoAccessSyntax, AuthorityKeyIdentifier, BasicConstraints,
    CrlDistributionPoints, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectAltName, SubjectKeyIdentifier,
};
use x509_cert::name::{RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Validity;

use super::asn1::{self, encoding};
use super::key::{encode_pem, public_key_bits, same_public_key};
use super::parse::serial_hex;
use super::usage::{KU_CRL_SIGN, KU_KEY_CERT_SIGN, UsageEncoding};
use super::{CaKeyPair, IssuerUrls, NameConstraints, PkiError, PrivateKey, Signer, Usage};

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
    /// The NameConstraints extension of a CA certificate.
    pub name_constraints: Option<NameConstraints>,
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

/// Signs `template` with the subject's own key (the selfSigned issuer, or a new root CA whose
/// key is on a token).
pub fn sign_self_signed(
    template: &CertificateTemplate,
    key: &dyn Signer,
) -> Result<IssuedCertificate, PkiError> {
    let subject = subject_name(template)?;
    let key_id = key_identifier(key.spki())?;
    let not_before = asn1::to_second(template.not_before);
    let not_after = asn1::to_second(template.not_after);
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
    let identity = ca.identity()?;

    let not_before = asn1::to_second(template.not_before);
    let not_after = asn1::to_second(template.not_after).min(ca_cert.not_after);
    if ca_cert.not_after <= not_before {
        return Err(PkiError::Expired(ca_cert.not_after));
    }
    let subject = subject_name(template)?;
    let subject_key_id = key_identifier(subject_key.spki())?;
    let signed = sign(
        &Draft {
            template,
            issuer_name: &identity.subject_der,
            subject_name: &subject,
            subject_spki: subject_key.spki(),
            not_before,
            not_after,
            subject_key_id: &subject_key_id,
            authority_key_id: &identity.key_id,
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

// The subject attributes certkeeper writes and reads back.
pub(super) const OID_COUNTRY: ObjectIdentifier = rfc4519::C;
pub(super) const OID_PROVINCE: ObjectIdentifier = rfc4519::ST;
pub(super) const OID_LOCALITY: ObjectIdentifier = rfc4519::L;
pub(super) const OID_STREET_ADDRESS: ObjectIdentifier = rfc4519::STREET;
pub(super) const OID_POSTAL_CODE: ObjectIdentifier = rfc4519::POSTAL_CODE;
pub(super) const OID_ORGANIZATION: ObjectIdentifier = rfc4519::O;
pub(super) const OID_ORGANIZATIONAL_UNIT: ObjectIdentifier = rfc4519::OU;
pub(super) const OID_COMMON_NAME: ObjectIdentifier = rfc4519::CN;
pub(super) const OID_SERIAL_NUMBER: ObjectIdentifier = rfc4519::SERIAL_NUMBER;

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

/// RFC 5280 TBSCertificate, as `x509_cert::TbsCertificate` but with the names and the key
/// kept as the DER they were given in (see `asn1::raw`).
#[derive(Sequence)]
struct TbsCertificate<'a> {
    #[asn1(context_specific = "0", default = "Default::default")]
    version: Version,
    serial_number: SerialNumber,
    signature: AlgorithmIdentifierOwned,
    issuer: AnyRef<'a>,
    validity: Validity,
    subject: AnyRef<'a>,
    subject_public_key_info: AnyRef<'a>,
    #[asn1(context_specific = "3", tag_mode = "EXPLICIT", optional = "true")]
    extensions: Option<Extensions>,
}

fn sign(draft: &Draft<'_>, signer: &dyn Signer) -> Result<Signed, PkiError> {
    if draft.not_after <= draft.not_before {
        return Err(PkiError::InvalidCertificate(format!(
            "notAfter {} is not after notBefore {}",
            draft.not_after, draft.not_before
        )));
    }
    let serial = random_serial()?;
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&serial).map_err(encoding("serial number"))?,
        signature: signer.signature_algorithm(),
        issuer: asn1::raw(draft.issuer_name, "issuer name")?,
        validity: Validity {
            not_before: asn1::time(draft.not_before)?,
            not_after: asn1::time(draft.not_after)?,
        },
        subject: asn1::raw(draft.subject_name, "subject name")?,
        subject_public_key_info: asn1::raw(draft.subject_spki, "subject public key")?,
        extensions: Some(extensions(draft)?),
    };
    Ok(Signed {
        der: asn1::sign(&tbs, signer)?,
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
pub(crate) fn subject_key_id_of(cert: &x509_parser::certificate::X509Certificate<'_>) -> Option<Vec<u8>> {
    use x509_parser::extensions::ParsedExtension;
    cert.iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
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
pub(super) fn subject_name(template: &CertificateTemplate) -> Result<Vec<u8>, PkiError> {
    let s = &template.subject;
    let attributes: [(ObjectIdentifier, Vec<&String>); 9] = [
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
    let mut rdns = Vec::new();
    for (oid, values) in attributes {
        for value in values {
            let attribute = AttributeTypeAndValue {
                oid,
                value: directory_string(value)?,
            };
            let set = SetOfVec::try_from(vec![attribute]).map_err(encoding("subject name"))?;
            rdns.push(RelativeDistinguishedName::from(set));
        }
    }
    RdnSequence(rdns).to_der().map_err(encoding("subject name"))
}

/// A directory string: PrintableString when the text allows it, else UTF8String (as Go and
/// OpenSSL do, so names compare equal with what they produce).
fn directory_string(text: &str) -> Result<der::asn1::Any, PkiError> {
    let any = match PrintableStringRef::new(text) {
        Ok(printable) => der::asn1::Any::encode_from(&printable),
        Err(_) => Utf8StringRef::new(text).and_then(|utf8| der::asn1::Any::encode_from(&utf8)),
    };
    any.map_err(encoding("subject attribute"))
}

fn extensions(draft: &Draft<'_>) -> Result<Extensions, PkiError> {
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
        // `KeyUsages` flag n is named bit n, as our bit numbers are.
        let flags = der::flagset::FlagSet::<KeyUsages>::new(key_usage_bits)
            .map_err(|_| PkiError::InvalidCertificate(format!("key usage bits {key_usage_bits:#x}")))?;
        out.push(asn1::extension(&KeyUsage(flags), true)?);
    }
    if !extended.is_empty() {
        out.push(asn1::extension(&ExtendedKeyUsage(extended), false)?);
    }

    // cA defaults to FALSE, so a leaf's value is the empty SEQUENCE (as Go writes it).
    let basic_constraints = BasicConstraints {
        ca: template.is_ca,
        path_len_constraint: None,
    };
    out.push(asn1::extension(&basic_constraints, true)?);
    if let Some(constraints) = &template.name_constraints {
        // RFC 5280 §4.2.1.10: only a CA certificate may constrain what is signed below it.
        if !template.is_ca && !constraints.is_empty() {
            return Err(PkiError::InvalidCertificate(
                "name constraints belong only in a CA certificate".into(),
            ));
        }
        out.extend(constraints.to_extension()?);
    }
    out.push(asn1::extension(
        &SubjectKeyIdentifier(octets(draft.subject_key_id)?),
        false,
    )?);
    out.push(asn1::extension(
        &AuthorityKeyIdentifier {
            key_identifier: Some(octets(draft.authority_key_id)?),
            authority_cert_issuer: None,
            authority_cert_serial_number: None,
        },
        false,
    )?);

    let names = general_names(template)?;
    if !names.is_empty() {
        // RFC 5280 §4.2.1.6: critical when the subject is empty.
        out.push(asn1::extension(
            &SubjectAltName(names),
            subject_is_empty(template),
        )?);
    } else if subject_is_empty(template) {
        return Err(PkiError::InvalidCertificate(
            "a certificate needs a common name, a subject field or a subject alternative name".into(),
        ));
    }

    if let Some(urls) = draft.urls {
        let mut access = Vec::new();
        for url in &urls.ocsp_servers {
            access.push(AccessDescription {
                access_method: rfc5280::ID_AD_OCSP,
                access_location: GeneralName::UniformResourceIdentifier(ia5(url, "access location")?),
            });
        }
        for url in &urls.issuing_certificate_urls {
            access.push(AccessDescription {
                access_method: rfc5280::ID_AD_CA_ISSUERS,
                access_location: GeneralName::UniformResourceIdentifier(ia5(url, "access location")?),
            });
        }
        if !access.is_empty() {
            out.push(asn1::extension(&AuthorityInfoAccessSyntax(access), false)?);
        }
        // One DistributionPoint per URL, each a fullName.
        let mut points = Vec::new();
        for url in &urls.crl_distribution_points {
            let uri = GeneralName::UniformResourceIdentifier(ia5(url, "CRL distribution point")?);
            points.push(DistributionPoint {
                distribution_point: Some(DistributionPointName::FullName(vec![uri])),
                reasons: None,
                crl_issuer: None,
            });
        }
        if !points.is_empty() {
            out.push(asn1::extension(&CrlDistributionPoints(points), false)?);
        }
    }
    Ok(out)
}

fn octets(bytes: &[u8]) -> Result<OctetString, PkiError> {
    OctetString::new(bytes).map_err(encoding("key identifier"))
}

/// An IA5String; IA5 is ASCII, so anything else is refused rather than mangled.
fn ia5(value: &str, what: &str) -> Result<Ia5String, PkiError> {
    let refused = || PkiError::InvalidCertificate(format!("{what} {value:?} must be non-empty ASCII"));
    if value.is_empty() || !value.is_ascii() {
        return Err(refused());
    }
    Ia5String::new(value).map_err(|_| refused())
}

fn general_names(template: &CertificateTemplate) -> Result<Vec<GeneralName>, PkiError> {
    let mut names = Vec::new();
    for dns in &template.dns_names {
        names.push(GeneralName::DnsName(ia5(dns, "DNS name")?));
    }
    for ip in &template.ip_addresses {
        let octets = match ip {
            IpAddr::V4(v4) => OctetString::new(v4.octets().to_vec()),
            IpAddr::V6(v6) => OctetString::new(v6.octets().to_vec()),
        };
        names.push(GeneralName::IpAddress(octets.map_err(encoding("IP address"))?));
    }
    for uri in &template.uris {
        if !uri.contains(':') {
            return Err(PkiError::InvalidCertificate(format!("URI {uri:?} has no scheme")));
        }
        names.push(GeneralName::UniformResourceIdentifier(ia5(uri, "URI")?));
    }
    for email in &template.email_addresses {
        names.push(GeneralName::Rfc822Name(ia5(email, "email address")?));
    }
    Ok(names)
}

/// `tls.crt` and `ca.crt` for a certificate signed by `ca` (SPEC "The Secret"): the chain stops
/// before a self-signed root, and the root (or the highest certificate known) is the CA bundle.
fn assemble_chain(certificate_pem: &str, ca: &CaKeyPair) -> (String, String) {
    let Some((top, below_top)) = ca.chain.split_last() else {
        return (certificate_pem.to_owned(), certificate_pem.to_owned());
    };
    let intermediates = if top.self_signed { below_top } else { &ca.chain[..] };
    let root = ca.anchor();
    let mut chain_pem = certificate_pem.to_owned();
    for cert in intermediates {
        chain_pem.push_str(&encode_pem(PEM_CERTIFICATE, cert.der.clone()));
    }
    (chain_pem, encode_pem(PEM_CERTIFICATE, root.der.clone()))
}

#[cfg(test)]
mod tests {
    use der::{Decode, Header, Tag};

    use super::super::parse::parse_der;
    use super::*;
    use crate::pki::{KeyAlgorithm, KeyEncoding, KeySpec};

    fn constructed(tag: Tag, parts: &[Vec<u8>]) -> Vec<u8> {
        let body = parts.concat();
        let length = der::Length::try_from(body.len()).unwrap();
        let mut out = Header::new(tag, length).unwrap().to_der().unwrap();
        out.extend(body);
        out
    }

    fn attribute(oid: ObjectIdentifier, text: &str) -> Vec<u8> {
        AttributeTypeAndValue {
            oid,
            value: directory_string(text).unwrap(),
        }
        .to_der()
        .unwrap()
    }

    /// DC=com, DC=example, O=Example, O=Example Ops, then one RDN {CN=Root CA, OU=PKI} whose
    /// SET is out of DER order (OU's encoding sorts first): what some older CAs wrote.
    fn unsorted_dn() -> Vec<u8> {
        let dc = ObjectIdentifier::new_unwrap("0.9.2342.19200300.100.1.25");
        let ia5 = |text: &str| {
            AttributeTypeAndValue {
                oid: dc,
                value: der::asn1::Any::encode_from(&Ia5String::new(text).unwrap()).unwrap(),
            }
            .to_der()
            .unwrap()
        };
        let rdn = |parts: &[Vec<u8>]| constructed(Tag::Set, parts);
        constructed(
            Tag::Sequence,
            &[
                rdn(&[ia5("com")]),
                rdn(&[ia5("example")]),
                rdn(&[attribute(OID_ORGANIZATION, "Example")]),
                rdn(&[attribute(OID_ORGANIZATION, "Example Ops")]),
                rdn(&[
                    attribute(OID_COMMON_NAME, "Root CA"),
                    attribute(OID_ORGANIZATIONAL_UNIT, "PKI"),
                ]),
            ],
        )
    }

    #[test]
    fn issuer_dn_out_of_der_order_is_copied_byte_for_byte() {
        let dn = unsorted_dn();
        // The premise: a library Name would re-encode this DN differently.
        let reencoded = x509_cert::name::Name::from_der(&dn).unwrap().to_der().unwrap();
        assert_ne!(reencoded, dn);

        let spec = KeySpec {
            algorithm: KeyAlgorithm::Ecdsa,
            size: 256,
        };
        let ca_key = PrivateKey::generate(spec).unwrap();
        let not_before: jiff::Timestamp = "2025-06-01T00:00:00Z".parse().unwrap();
        let ca_template = CertificateTemplate {
            common_name: Some("Root CA".into()),
            not_before,
            not_after: not_before + jiff::SignedDuration::from_hours(24 * 365),
            is_ca: true,
            ..Default::default()
        };
        let key_id = key_identifier(ca_key.spki()).unwrap();
        let ca_der = sign(
            &Draft {
                template: &ca_template,
                issuer_name: &dn,
                subject_name: &dn,
                subject_spki: ca_key.spki(),
                not_before,
                not_after: ca_template.not_after,
                subject_key_id: &key_id,
                authority_key_id: &key_id,
                urls: None,
            },
            &ca_key,
        )
        .unwrap()
        .der;
        let ca = CaKeyPair::from_pem(
            encode_pem(PEM_CERTIFICATE, ca_der).as_bytes(),
            ca_key.to_pem(KeyEncoding::Pkcs8).unwrap().as_bytes(),
            None,
            IssuerUrls::default(),
        )
        .unwrap();

        let leaf_template = CertificateTemplate {
            common_name: Some("leaf".into()),
            not_before,
            not_after: not_before + jiff::SignedDuration::from_hours(24),
            ..Default::default()
        };
        let leaf_key = PrivateKey::generate(spec).unwrap();
        let issued = sign_with_ca(&leaf_template, &leaf_key, &ca).unwrap();
        let leaf = super::super::parse_certificate_chain(issued.certificate_pem.as_bytes()).unwrap();
        assert_eq!(parse_der(&leaf[0].der).unwrap().issuer().as_raw(), dn.as_slice());
        assert!(leaf[0].is_signed_by(ca.certificate()));
    }
}
