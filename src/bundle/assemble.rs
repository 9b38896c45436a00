//! The bundle's content: the sources' certificates, deduplicated, without the expired ones,
//! sorted by fingerprint, so the same certificates always give the same bytes and an
//! unchanged Bundle writes nothing.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::pki::{CertificateInfo, encode_pem};

/// The certificates a Bundle distributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assembled {
    /// In bundle order: by SHA-256 fingerprint.
    pub certificates: Vec<CertificateInfo>,
}

impl Assembled {
    /// Deduplicates `certificates` (the same DER from several sources counts once), drops those
    /// expired at `now`, and sorts the rest by fingerprint.
    pub fn new(certificates: impl IntoIterator<Item = CertificateInfo>, now: Timestamp) -> Self {
        let unique: BTreeMap<String, CertificateInfo> = certificates
            .into_iter()
            .filter(|c| c.not_after > now)
            .map(|c| (c.fingerprint_sha256.clone(), c))
            .collect();
        Self {
            certificates: unique.into_values().collect(),
        }
    }

    /// The certificates as concatenated PEM blocks (LF line endings).
    pub fn pem(&self) -> String {
        self.certificates
            .iter()
            .map(|c| encode_pem("CERTIFICATE", c.der.clone()))
            .collect()
    }

    /// Their fingerprints, in bundle order.
    pub fn fingerprints(&self) -> Vec<String> {
        self.certificates
            .iter()
            .map(|c| c.fingerprint_sha256.clone())
            .collect()
    }

    /// When the next certificate expires and must leave the bundle.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.certificates.iter().map(|c| c.not_after).min()
    }

    pub fn is_empty(&self) -> bool {
        self.certificates.is_empty()
    }
}
