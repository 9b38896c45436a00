//! CA key pairs read from a Secret, and their validation.

use super::cert::{key_identifier, subject_key_id_of};
use super::parse::parse_der;
use std::sync::Arc;

use spki::AlgorithmIdentifierOwned;

use super::{CertificateInfo, PkiError, PrivateKey, RequestedNames, Signer, parse_certificate_chain};
use crate::pkcs11::HsmKey;

/// URLs a CA issuer writes into the certificates it signs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IssuerUrls {
    pub crl_distribution_points: Vec<String>,
    pub ocsp_servers: Vec<String>,
    pub issuing_certificate_urls: Vec<String>,
}

/// A CA's private key: read from its Secret, or on a token (never in process).
#[derive(Debug)]
pub enum CaKey {
    Secret(PrivateKey),
    Hsm(Arc<HsmKey>),
}

impl CaKey {
    /// The key itself when it was read from a Secret.
    pub fn private_key(&self) -> Option<&PrivateKey> {
        match self {
            Self::Secret(key) => Some(key),
            Self::Hsm(_) => None,
        }
    }
}

impl Signer for CaKey {
    fn spki(&self) -> &[u8] {
        match self {
            Self::Secret(key) => Signer::spki(key),
            Self::Hsm(key) => key.spki(),
        }
    }

    fn signature_algorithm(&self) -> AlgorithmIdentifierOwned {
        match self {
            Self::Secret(key) => Signer::signature_algorithm(key),
            Self::Hsm(key) => key.signature_algorithm(),
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, PkiError> {
        match self {
            Self::Secret(key) => Signer::sign(key, message),
            Self::Hsm(key) => key.sign(message),
        }
    }

    fn backend(&self) -> &'static str {
        match self {
            Self::Secret(key) => Signer::backend(key),
            Self::Hsm(key) => key.backend(),
        }
    }
}

/// A CA certificate (with its chain) and its private key.
#[derive(Debug)]
pub struct CaKeyPair {
    /// The CA certificate first, then its chain towards the root.
    pub chain: Vec<CertificateInfo>,
    pub key: CaKey,
    /// The root from `ca.crt` when the chain does not end in a self-signed certificate.
    pub root: Option<CertificateInfo>,
    pub urls: IssuerUrls,
    /// Where the key is, for the audit trail: `secret:NAMESPACE/NAME` or the PKCS#11 URI
    /// (which never holds a PIN); empty until `with_key_reference` says.
    pub key_reference: String,
}

/// How the things a CA signs name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CaIdentity {
    /// The CA certificate's subject DN, DER, byte for byte: the issuer of what it signs.
    pub(crate) subject_der: Vec<u8>,
    /// The CA's key identifier, for the authorityKeyIdentifier of what it signs.
    pub(crate) key_id: Vec<u8>,
}

/// What an Issuer's status reports about its CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaFacts {
    pub not_after: jiff::Timestamp,
    /// SHA-256 fingerprint of the CA certificate, as `CertificateInfo::fingerprint_sha256`.
    pub fingerprint_sha256: String,
}

impl CaKeyPair {
    /// Reads a `kubernetes.io/tls` Secret's data: `tls.crt` (CA first, chain may follow),
    /// `tls.key` (PKCS#1, PKCS#8 or SEC1) and an optional `ca.crt`. Checks the key matches the
    /// CA certificate (`KeyMismatch`) but not CA-ness or expiry: see `validate`.
    pub fn from_pem(
        tls_crt: &[u8],
        tls_key: &[u8],
        ca_crt: Option<&[u8]>,
        urls: IssuerUrls,
    ) -> Result<Self, PkiError> {
        let chain = parse_certificate_chain(tls_crt)?;
        let key = PrivateKey::from_pem(tls_key)?;
        let ca = chain.first().ok_or(PkiError::NoCertificate)?;
        if !ca.key_matches(&key) {
            return Err(PkiError::KeyMismatch);
        }
        let root = match ca_crt {
            Some(pem) => root_from_bundle(pem, &chain)?,
            None => None,
        };
        Ok(Self {
            chain,
            key: CaKey::Secret(key),
            root,
            urls,
            key_reference: String::new(),
        })
    }

    /// A CA whose key stays on a token: `tls.crt` (CA first, chain may follow) and an optional
    /// `ca.crt`; `key` is made for the CA certificate's public key by `make_key`.
    pub fn with_hsm_key(
        tls_crt: &[u8],
        ca_crt: Option<&[u8]>,
        urls: IssuerUrls,
        make_key: impl FnOnce(&CertificateInfo) -> Result<HsmKey, PkiError>,
    ) -> Result<Self, PkiError> {
        let chain = parse_certificate_chain(tls_crt)?;
        let ca = chain.first().ok_or(PkiError::NoCertificate)?;
        let key = Arc::new(make_key(ca)?);
        let root = match ca_crt {
            Some(pem) => root_from_bundle(pem, &chain)?,
            None => None,
        };
        Ok(Self {
            chain,
            key: CaKey::Hsm(key),
            root,
            urls,
            key_reference: String::new(),
        })
    }

    /// This pair, its key known by `reference` in the audit trail.
    pub fn with_key_reference(mut self, reference: String) -> Self {
        self.key_reference = reference;
        self
    }

    /// The CA certificate itself.
    pub fn certificate(&self) -> &CertificateInfo {
        &self.chain[0]
    }

    /// The trust anchor: the root at the top of the chain (`ca.crt`'s root when `tls.crt`
    /// stops below it), or the highest certificate known.
    pub fn anchor(&self) -> &CertificateInfo {
        match self.chain.last() {
            Some(top) if !top.self_signed => self.root.as_ref().unwrap_or(top),
            Some(top) => top,
            None => self.certificate(),
        }
    }

    /// Whether this CA, or one above it known here, carries name constraints: only then is
    /// there anything to check (most CAs have none, and the check sits on every reconcile).
    pub fn has_name_constraints(&self) -> bool {
        self.chain
            .iter()
            .chain(self.root.iter())
            .any(|ca| ca.name_constraints.is_some())
    }

    /// Why this CA must not sign a certificate with `names`: which name lies outside the name
    /// constraints of which CA, this one or one above it (the root of `ca.crt` included).
    /// None when every CA known allows every name.
    pub fn name_constraints_refusal(&self, names: &RequestedNames) -> Option<String> {
        super::name_constraints::check_chain(self.chain.iter().chain(self.root.iter()), names).err()
    }

    /// The CA's subject DN and key identifier. The key identifier is the CA certificate's
    /// SKI whatever method computed it (OpenSSL uses SHA-1), else RFC 7093's.
    pub(crate) fn identity(&self) -> Result<CaIdentity, PkiError> {
        let ca = self.chain.first().ok_or(PkiError::NoCertificate)?;
        let x509 = parse_der(&ca.der)?;
        let key_id = match subject_key_id_of(&x509) {
            Some(id) => id,
            None => key_identifier(&ca.public_key_der)?,
        };
        Ok(CaIdentity {
            subject_der: x509.subject().as_raw().to_vec(),
            key_id,
        })
    }

    /// Checks the CA can sign at `now`: basicConstraints CA:TRUE and keyCertSign (`NotACa`),
    /// not expired (`Expired`).
    pub fn validate(&self, now: jiff::Timestamp) -> Result<CaFacts, PkiError> {
        let ca = self.chain.first().ok_or(PkiError::NoCertificate)?;
        let x509 = parse_der(&ca.der)?;
        let invalid = |e: x509_parser::error::X509Error| PkiError::InvalidCertificate(e.to_string());
        match x509.basic_constraints().map_err(invalid)? {
            Some(bc) if bc.value.ca => {}
            Some(_) => return Err(PkiError::NotACa("basicConstraints has CA:FALSE".into())),
            None => return Err(PkiError::NotACa("no basicConstraints extension".into())),
        }
        // Without a keyUsage extension every usage is allowed (RFC 5280 §4.2.1.3).
        if let Some(ku) = x509.key_usage().map_err(invalid)?
            && !ku.value.key_cert_sign()
        {
            return Err(PkiError::NotACa("keyUsage lacks keyCertSign".into()));
        }
        if now >= ca.not_after {
            return Err(PkiError::Expired(ca.not_after));
        }
        Ok(CaFacts {
            not_after: ca.not_after,
            fingerprint_sha256: ca.fingerprint_sha256.clone(),
        })
    }
}

/// The root `ca.crt` adds: none when the chain already ends in a self-signed certificate or
/// `ca.crt` only repeats the top of the chain. A bundle may hold several roots, so prefer the
/// one that issued the top of the chain.
fn root_from_bundle(ca_crt: &[u8], chain: &[CertificateInfo]) -> Result<Option<CertificateInfo>, PkiError> {
    let Some(top) = chain.last() else {
        return Ok(None);
    };
    if top.self_signed {
        return Ok(None);
    }
    let candidates = match parse_certificate_chain(ca_crt) {
        Ok(candidates) => candidates,
        // cert-manager writes an empty `ca.crt` when it knows no root.
        Err(PkiError::NoCertificate) => return Ok(None),
        Err(e) => return Err(e),
    };
    let chosen = candidates
        .iter()
        .find(|c| top.is_signed_by(c))
        .or(candidates.first());
    Ok(chosen.filter(|c| c.der != top.der).cloned())
}
