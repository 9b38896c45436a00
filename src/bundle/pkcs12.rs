//! A PKCS#12 truststore of a bundle's certificates, for JVM workloads: certificate bags only,
//! neither encrypted nor MAC-protected (the certificates are public; Java 18+ and OpenSSL read
//! such a "password-less" store as go-pkcs12's `Passwordless` encoder writes it). Each bag
//! carries Oracle's trusted-key-usage attribute, so `keytool -list` shows a `trustedCertEntry`,
//! as go-pkcs12's `EncodeTrustStore` and trust-manager write it.
//!
//! Built from the `pkcs12` and `cms` crates' typed structures; no randomness, so the same
//! certificates always give the same bytes.

use cms::content_info::ContentInfo;
use const_oid::ObjectIdentifier;
use der::asn1::{BmpString, OctetString, SetOfVec};
use der::{Any, Encode};
use pkcs12::cert_type::CertBag;
use pkcs12::pfx::{Pfx, Version};
use pkcs12::safe_bag::SafeBag;
use x509_cert::attr::Attribute;

use crate::pki::CertificateInfo;

/// PKCS#7 `data` content type.
const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
/// PKCS#9 friendlyName: the alias keytool shows.
const FRIENDLY_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.20");
/// Oracle's "trusted key usage" bag attribute, which makes Java read a certificate bag as a
/// trusted certificate entry.
pub const JAVA_TRUSTED_KEY_USAGE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.16.840.1.113894.746875.1.1");
/// anyExtendedKeyUsage: trusted for every purpose.
const ANY_EXTENDED_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37.0");

/// The alias of a certificate in the store: its SHA-256 fingerprint in lower-case hex, unique
/// and stable.
pub fn alias(certificate: &CertificateInfo) -> String {
    certificate.fingerprint_sha256.replace(':', "").to_lowercase()
}

fn attribute(oid: ObjectIdentifier, value: Any) -> der::Result<Attribute> {
    Ok(Attribute {
        oid,
        values: SetOfVec::try_from(vec![value])?,
    })
}

fn cert_bag(certificate: &CertificateInfo) -> der::Result<SafeBag> {
    let bag = CertBag {
        cert_id: pkcs12::PKCS_12_X509_CERT_OID,
        cert_value: OctetString::new(certificate.der.clone())?,
    };
    let attributes = SetOfVec::try_from(vec![
        attribute(
            FRIENDLY_NAME,
            Any::encode_from(&BmpString::from_utf8(&alias(certificate))?)?,
        )?,
        attribute(JAVA_TRUSTED_KEY_USAGE, Any::encode_from(&ANY_EXTENDED_KEY_USAGE)?)?,
    ])?;
    Ok(SafeBag {
        bag_id: pkcs12::PKCS_12_CERT_BAG_OID,
        bag_value: bag.to_der()?,
        bag_attributes: Some(attributes),
    })
}

/// `data` content info around `content`.
fn data(content: Vec<u8>) -> der::Result<ContentInfo> {
    Ok(ContentInfo {
        content_type: ID_DATA,
        content: Any::encode_from(&OctetString::new(content)?)?,
    })
}

/// The DER of a PKCS#12 truststore holding `certificates`, in their order.
pub fn truststore(certificates: &[CertificateInfo]) -> der::Result<Vec<u8>> {
    let bags = certificates
        .iter()
        .map(cert_bag)
        .collect::<der::Result<Vec<_>>>()?;
    let authenticated_safe = vec![data(bags.to_der()?)?];
    Pfx {
        version: Version::V3,
        auth_safe: data(authenticated_safe.to_der()?)?,
        mac_data: None,
    }
    .to_der()
}
