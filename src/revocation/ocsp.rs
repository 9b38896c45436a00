//! OCSP (RFC 6960) answers of a CA issuer: a request parsed from DER (a POST body, or the
//! base64 of a GET path), a BasicOCSPResponse signed by the CA key with the responder named by
//! key hash, one SingleResponse per requested certificate, the nonce echoed. Requests that
//! cannot be read get an unsigned error status, never a panic.

use base64::Engine as _;
use const_oid::ObjectIdentifier;
use const_oid::db::{rfc5912, rfc6960};
use der::asn1::{BitString, Null, OctetString};
use der::{Decode, Encode};
use x509_cert::ext::Extension;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspGeneralizedTime, OcspRequest, OcspResponse,
    OcspResponseStatus, ResponderId, ResponseBytes, ResponseData, RevokedInfo, SingleResponse, Version,
};

use super::{RevocationError, RevokedSerials, encoding_failed};
use crate::pki::asn1;
use crate::pki::{CaKeyPair, PkiError, Signer, public_key_bits, serial_hex};

/// How long an answer may be cached: its nextUpdate is thisUpdate plus this. Shorter than a
/// CRL's day, since answers are signed on demand and a revocation should reach clients soon.
pub const OCSP_VALIDITY: jiff::SignedDuration = jiff::SignedDuration::from_hours(1);

/// Why a request could not be answered, each with the RFC 6960 status it is answered with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcspRequestError {
    #[error("the request is not base64 in the URL path")]
    NotBase64,
    #[error("the request is not a DER OCSPRequest: {0}")]
    NotDer(String),
    #[error("the request asks about no certificate")]
    Empty,
    #[error("the responder does not serve this issuer")]
    Unauthorized,
}

impl OcspRequestError {
    pub fn status(&self) -> OcspResponseStatus {
        match self {
            OcspRequestError::Unauthorized => OcspResponseStatus::Unauthorized,
            _ => OcspResponseStatus::MalformedRequest,
        }
    }
}

/// Parses a DER OCSPRequest. The optional requestor signature is not checked: answers are
/// public, as CRLs are.
pub fn parse_ocsp_request(der: &[u8]) -> Result<OcspRequest, OcspRequestError> {
    let request = OcspRequest::from_der(der).map_err(|e| OcspRequestError::NotDer(e.to_string()))?;
    if request.tbs_request.request_list.is_empty() {
        return Err(OcspRequestError::Empty);
    }
    Ok(request)
}

/// The DER request of a GET (RFC 6960 Appendix A.1): the URL-encoded base64 of the request,
/// the path after the responder's own prefix. Clients differ in what they percent-encode and
/// whether they pad, so both are accepted.
pub fn ocsp_request_from_get_path(encoded: &str) -> Result<Vec<u8>, OcspRequestError> {
    let decoded = percent_decode(encoded.trim_start_matches('/')).ok_or(OcspRequestError::NotBase64)?;
    let trimmed = decoded.trim_end_matches('=');
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(trimmed)
        .map_err(|_| OcspRequestError::NotBase64)
}

/// An unsigned OCSPResponse with an error status (no responseBytes).
pub fn ocsp_error_response(status: OcspResponseStatus) -> Result<Vec<u8>, RevocationError> {
    OcspResponse {
        response_status: status,
        response_bytes: None,
    }
    .to_der()
    .map_err(encoding_failed("OCSP error response"))
}

/// The answer of `ca` to the DER request `request_der` at `now`: a signed BasicOCSPResponse
/// when the request parses, else the error status it deserves. For each requested certificate:
/// `revoked` (with time and reason) when `revoked` lists its serial, `good` when the CertID
/// names this CA, `unknown` when it names another issuer or a hash this responder does not
/// compute. `Err` only when the CA cannot sign.
pub fn respond_ocsp(
    ca: &CaKeyPair,
    revoked: &(impl RevokedSerials + ?Sized),
    request_der: &[u8],
    now: jiff::Timestamp,
) -> Result<Vec<u8>, RevocationError> {
    let request = match parse_ocsp_request(request_der) {
        Ok(request) => request,
        Err(e) => return ocsp_error_response(e.status()),
    };
    let identity = ca.identity()?;
    let key_bits = public_key_bits(&ca.certificate().public_key_der)
        .ok_or_else(|| PkiError::InvalidKey("malformed CA public key".into()))?;
    let this_update = asn1::to_second(now);
    let next_update = this_update + OCSP_VALIDITY;

    let mut responses = Vec::with_capacity(request.tbs_request.request_list.len());
    for single in &request.tbs_request.request_list {
        let cert_id = &single.req_cert;
        let ours = names_issuer(cert_id, &identity.subject_der, &key_bits);
        let serial = serial_hex(cert_id.serial_number.as_bytes());
        let cert_status = match revoked.find(&serial) {
            Some(record) if ours => CertStatus::Revoked(RevokedInfo {
                revocation_time: generalized(record.revoked_at)?,
                revocation_reason: Some(record.reason.crl_reason()),
            }),
            None if ours => CertStatus::Good(Null),
            _ => CertStatus::Unknown(Null),
        };
        responses.push(SingleResponse {
            cert_id: cert_id.clone(),
            cert_status,
            this_update: generalized(this_update)?,
            next_update: Some(generalized(next_update)?),
            single_extensions: None,
        });
    }

    let key_hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &key_bits);
    let data = ResponseData {
        version: Version::V1,
        responder_id: ResponderId::ByKey(
            OctetString::new(key_hash.as_ref()).map_err(encoding_failed("responder key hash"))?,
        ),
        produced_at: generalized(this_update)?,
        responses,
        response_extensions: nonce(&request).map(|n| vec![n]),
    };
    let data_der = data.to_der().map_err(encoding_failed("OCSP response data"))?;
    let signature = ca.key.sign(&data_der)?;
    let basic = BasicOcspResponse {
        tbs_response_data: data,
        signature_algorithm: ca.key.signature_algorithm(),
        signature: BitString::from_bytes(&signature).map_err(encoding_failed("OCSP signature"))?,
        certs: None,
    };
    OcspResponse {
        response_status: OcspResponseStatus::Successful,
        response_bytes: Some(ResponseBytes {
            response_type: rfc6960::ID_PKIX_OCSP_BASIC,
            response: OctetString::new(basic.to_der().map_err(encoding_failed("BasicOCSPResponse"))?)
                .map_err(encoding_failed("BasicOCSPResponse"))?,
        }),
    }
    .to_der()
    .map_err(encoding_failed("OCSP response"))
}

/// The request's nonce extension, echoed as is (RFC 8954).
fn nonce(request: &OcspRequest) -> Option<Extension> {
    request
        .tbs_request
        .request_extensions
        .iter()
        .flatten()
        .find(|ext| ext.extn_id == rfc6960::ID_PKIX_OCSP_NONCE)
        .map(|ext| Extension {
            critical: false,
            ..ext.clone()
        })
}

/// Whether a CertID's issuer hashes are those of this CA, in the hash it names.
fn names_issuer(cert_id: &CertId, subject_der: &[u8], key_bits: &[u8]) -> bool {
    let Some(algorithm) = digest_algorithm(cert_id.hash_algorithm.oid) else {
        return false;
    };
    let name_hash = aws_lc_rs::digest::digest(algorithm, subject_der);
    let key_hash = aws_lc_rs::digest::digest(algorithm, key_bits);
    cert_id.issuer_name_hash.as_bytes() == name_hash.as_ref()
        && cert_id.issuer_key_hash.as_bytes() == key_hash.as_ref()
}

/// SHA-1 is what most clients still send (openssl's default).
const ID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");

fn digest_algorithm(oid: ObjectIdentifier) -> Option<&'static aws_lc_rs::digest::Algorithm> {
    match oid {
        ID_SHA1 => Some(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY),
        rfc5912::ID_SHA_256 => Some(&aws_lc_rs::digest::SHA256),
        rfc5912::ID_SHA_384 => Some(&aws_lc_rs::digest::SHA384),
        rfc5912::ID_SHA_512 => Some(&aws_lc_rs::digest::SHA512),
        _ => None,
    }
}

fn generalized(at: jiff::Timestamp) -> Result<OcspGeneralizedTime, RevocationError> {
    // OCSP times are always GeneralizedTime (RFC 6960 §4.2.1).
    Ok(OcspGeneralizedTime::from(asn1::time(asn1::to_second(at))?))
}

/// `%XX` escapes decoded; `None` for a broken escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            // from_str_radix alone would take a sign: "%+1".
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
