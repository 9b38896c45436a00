//! Revocation, with no Kubernetes in it: the records of revoked serials, the CRL a CA issuer
//! signs over them, and the OCSP (RFC 6960) answers about them.
//!
//! Everything but `server` is pure: it takes the CA key pair, the records and `now`, and
//! returns DER. `server` answers HTTP from what it is given. Where the records are kept and
//! when a CRL is re-signed are the controller's business.

mod crl;
mod ocsp;
mod record;
mod request;
mod server;

#[cfg(test)]
mod tests;

pub use crl::{
    CRL_VALIDITY, CrlDue, PublishedCrl, SignedCrl, build_crl, crl_due, crl_resign_at, next_crl_number,
};
pub use ocsp::{
    OCSP_VALIDITY, OcspRequestError, ocsp_error_response, ocsp_request_from_get_path, parse_ocsp_request,
    respond_ocsp,
};
pub use record::{RevocationReason, RevokedSerial, RevokedSerials, parse_serial};
pub use request::{REVOCATION_REASON, REVOKE_REQUESTED_AT, RevokeRequest, revocation_of};
pub use server::{CLUSTER_SCOPE, PkiEndpoint, ServedIssuer};

use crate::pki::PkiError;

/// What went wrong while building a CRL or an OCSP response. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    #[error("serial number {serial:?}: {reason}")]
    InvalidSerial { serial: String, reason: &'static str },
    #[error("revocation time {0:?} is not an RFC 3339 time")]
    InvalidRevocationTime(String),
    #[error("{REVOKE_REQUESTED_AT} {0:?} is not an RFC 3339 time")]
    InvalidRequestTime(String),
    #[error("unknown revocation reason {0:?} (expected an RFC 5280 name such as keyCompromise)")]
    UnknownReason(String),
    #[error("the CA cannot sign: {0}")]
    Pki(#[from] PkiError),
}

/// A `der` failure while encoding `what`, as a `RevocationError`.
fn encoding_failed(what: &'static str) -> impl Fn(der::Error) -> RevocationError {
    move |e| RevocationError::Pki(crate::pki::asn1::encoding(what)(e))
}
