//! Where certkeeper's types meet the RustCrypto formats crates (`der`, `x509-cert`): X.509
//! times from jiff, names kept as the DER an issuer wrote, typed extensions, and the signed
//! envelope (`SEQUENCE { tbs, signatureAlgorithm, signature }`) certificates and CRLs share,
//! signed with aws-lc-rs.

use const_oid::AssociatedOid;
use der::asn1::{AnyRef, BitString, GeneralizedTime, OctetString, UtcTime};
use der::{DateTime, Decode, Encode, Sequence};
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::Extension;
use x509_cert::time::Time;

use super::{PkiError, Signer};

/// A `der` failure as a `PkiError` that says what was being encoded.
pub(crate) fn encoding(what: &'static str) -> impl Fn(der::Error) -> PkiError {
    move |e| PkiError::Encoding(format!("{what}: {e}"))
}

/// `at` without its fraction of a second: X.509 and OCSP times are written to the second, so
/// everything compared with what they say is truncated the same way.
pub(crate) fn to_second(at: jiff::Timestamp) -> jiff::Timestamp {
    jiff::Timestamp::from_second(at.as_second()).unwrap_or(at)
}

/// An X.509 `Time`: UTCTime through 2049, GeneralizedTime after (RFC 5280 §4.1.2.5), to the
/// second.
pub(crate) fn time(at: jiff::Timestamp) -> Result<Time, PkiError> {
    let dt = jiff::tz::Offset::UTC.to_datetime(at);
    let unencodable = || PkiError::InvalidCertificate(format!("time {at} cannot be encoded"));
    let year = u16::try_from(dt.year()).map_err(|_| unencodable())?;
    let as_u8 = |v: i8| u8::try_from(v).map_err(|_| unencodable());
    let date_time = DateTime::new(
        year,
        as_u8(dt.month())?,
        as_u8(dt.day())?,
        as_u8(dt.hour())?,
        as_u8(dt.minute())?,
        as_u8(dt.second())?,
    )
    .map_err(|_| unencodable())?;
    if year < 2050 {
        UtcTime::from_date_time(date_time)
            .map(Time::UtcTime)
            .map_err(|_| unencodable())
    } else {
        Ok(Time::GeneralTime(GeneralizedTime::from_date_time(date_time)))
    }
}

/// A DER element kept as its bytes. Names go through this rather than `x509_cert::name::Name`:
/// decoding a Name sorts the attributes of a multi-valued RDN, and an issuer DN must be the CA's
/// subject byte for byte or path building by raw comparison (Go, rustls) fails.
pub(crate) fn raw<'a>(der: &'a [u8], what: &'static str) -> Result<AnyRef<'a>, PkiError> {
    AnyRef::from_der(der).map_err(|e| PkiError::InvalidCertificate(format!("{what}: {e}")))
}

/// An extension holding `value`, DER-encoded. DEFAULT FALSE `critical` is left out in DER by
/// the `x509-cert` type itself.
pub(crate) fn extension<T: AssociatedOid + Encode>(value: &T, critical: bool) -> Result<Extension, PkiError> {
    let der = value.to_der().map_err(encoding("extension value"))?;
    Ok(Extension {
        extn_id: T::OID,
        critical,
        extn_value: OctetString::new(der).map_err(encoding("extension value"))?,
    })
}

/// `SEQUENCE { tbs, signatureAlgorithm, signature }`, the shape of a Certificate and of a
/// CertificateList.
#[derive(Sequence)]
struct Signed<'a> {
    tbs: AnyRef<'a>,
    signature_algorithm: AlgorithmIdentifierOwned,
    signature: BitString,
}

/// Encodes `tbs`, signs it with `signer` and wraps both. `tbs` must name
/// `signer.signature_algorithm()` as its own signature field.
pub(crate) fn sign<T: Encode>(tbs: &T, signer: &dyn Signer) -> Result<Vec<u8>, PkiError> {
    let tbs_der = tbs.to_der().map_err(encoding("to-be-signed structure"))?;
    let signature = signer.sign(&tbs_der)?;
    Signed {
        tbs: AnyRef::from_der(&tbs_der).map_err(encoding("to-be-signed structure"))?,
        signature_algorithm: signer.signature_algorithm(),
        signature: BitString::from_bytes(&signature).map_err(encoding("signature"))?,
    }
    .to_der()
    .map_err(encoding("signed structure"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_switch_to_generalized_after_2049() {
        let utc: jiff::Timestamp = "2049-12-31T23:59:59Z".parse().unwrap();
        assert_eq!(time(utc).unwrap().to_der().unwrap()[2..], *b"491231235959Z");
        assert!(matches!(time(utc).unwrap(), Time::UtcTime(_)));
        let generalized: jiff::Timestamp = "2050-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            time(generalized).unwrap().to_der().unwrap()[2..],
            *b"20500101000000Z"
        );
        assert!(matches!(time(generalized).unwrap(), Time::GeneralTime(_)));
    }

    #[test]
    fn a_raw_element_encodes_to_the_bytes_it_was_read_from() {
        // A SET whose two elements are out of DER order: a decoded SET OF would sort them.
        let der = [0x31, 0x06, 0x02, 0x01, 0x02, 0x02, 0x01, 0x01];
        assert_eq!(raw(&der, "test").unwrap().to_der().unwrap(), der);
    }
}
