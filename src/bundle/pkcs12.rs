//! A Bundle's PKCS#12 truststore, for JVM workloads: its certificates as trusted entries,
//! neither encrypted nor MAC-protected (the certificates are public; Java 18+ and OpenSSL read
//! such a "password-less" store as go-pkcs12's `Passwordless` encoder writes it), through the
//! encoder the Certificates' keystores use (`keystore::pkcs12`). No salt without a password, so
//! the same certificates always give the same bytes.

pub use crate::keystore::pkcs12::JAVA_TRUSTED_KEY_USAGE;
use crate::keystore::{self, KeystoreError};
use crate::pki::CertificateInfo;

/// The alias of a certificate in the store: its SHA-256 fingerprint in lower-case hex, unique
/// and stable.
pub fn alias(certificate: &CertificateInfo) -> String {
    certificate.fingerprint_sha256.replace(':', "").to_lowercase()
}

/// The DER of a PKCS#12 truststore holding `certificates`, in their order.
pub fn truststore(certificates: &[CertificateInfo]) -> Result<Vec<u8>, KeystoreError> {
    let aliased: Vec<(String, Vec<u8>)> = certificates.iter().map(|c| (alias(c), c.der.clone())).collect();
    keystore::pkcs12::truststore(&aliased, None)
}
