//! Issuance policy (CertificatePolicy): which Certificates an issuer may sign.

pub mod cel;
pub mod patterns;
