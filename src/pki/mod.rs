//! X.509 work with no Kubernetes in it: key generation and encoding, certificate signing,
//! signing requests for CA keys, parsing of existing certificates and keys, chain assembly, CA
//! validation and the name constraints a CA puts on what it signs.
//!
//! Everything here is pure and synchronous. Key generation (RSA above all, ~90 ms per key)
//! is CPU-bound: callers on an async runtime run it under `tokio::task::spawn_blocking`.

pub(crate) mod asn1;
mod ca;
mod cert;
mod csr;
mod key;
mod name_constraints;
mod parse;
mod signer;
mod usage;

#[cfg(test)]
pub(crate) mod tests;

pub use ca::{CaFacts, CaKey, CaKeyPair, IssuerUrls};
pub use cert::{CertificateTemplate, IssuedCertificate, SubjectFields, sign_self_signed, sign_with_ca};
pub use csr::build_ca_csr;
pub(crate) use csr::check_name_length;
pub use key::{KeyAlgorithm, KeyEncoding, KeySpec, PrivateKey};
pub(crate) use key::{
    encode_pem, key_spec_from_spki, public_key_bits, same_public_key, signature_algorithm_for,
};
pub use name_constraints::{
    DomainSubtree, IpRange, NameConstraints, NameSubtrees, RequestedNames, check_name_constraints,
    subtree_within,
};
pub use parse::{CertificateInfo, parse_certificate_chain, parse_pem_certificates};
pub(crate) use parse::{alt_names, lower_hex, serial_hex};
pub use signer::Signer;
pub use usage::Usage;

/// What went wrong in the X.509 layer. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("unsupported key: {0}")]
    UnsupportedKey(String),
    #[error("invalid private key: {0}")]
    InvalidKey(String),
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),
    #[error("no certificate found in PEM data")]
    NoCertificate,
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    #[error("certificate is not a CA: {0}")]
    NotACa(String),
    #[error("CA certificate expired at {0}")]
    Expired(jiff::Timestamp),
    #[error("signing failed: {0}")]
    Signing(String),
    #[error("DER encoding failed: {0}")]
    Encoding(String),
    /// The key is on a token, and the token failed or refused.
    #[error("{0}")]
    Hsm(#[from] crate::pkcs11::HsmError),
}
