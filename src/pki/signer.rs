//! What signs: one interface for every signature certkeeper makes, whichever backend holds the
//! key (aws-lc-rs in process for keys read from Secrets, a PKCS#11 token for keys in an HSM).

use spki::AlgorithmIdentifierOwned;

use super::{PkiError, PrivateKey};

/// A key that signs. Implementations are blocking (an HSM round trip): async callers run them
/// under `spawn_blocking`.
pub trait Signer: Send + Sync {
    /// The DER SubjectPublicKeyInfo of the key that signs.
    fn spki(&self) -> &[u8];
    /// The signatureAlgorithm written into the to-be-signed structure and around it.
    fn signature_algorithm(&self) -> AlgorithmIdentifierOwned;
    /// Signs the DER `message`. The signature is final: DER `Ecdsa-Sig-Value` for ECDSA.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, PkiError>;
    /// `secret` or `pkcs11`: the `backend` label of the signing metrics.
    fn backend(&self) -> &'static str;
}

impl Signer for PrivateKey {
    fn spki(&self) -> &[u8] {
        PrivateKey::spki(self)
    }

    fn signature_algorithm(&self) -> AlgorithmIdentifierOwned {
        PrivateKey::signature_algorithm(self)
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, PkiError> {
        PrivateKey::sign(self, message)
    }

    fn backend(&self) -> &'static str {
        "secret"
    }
}
