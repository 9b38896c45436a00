//! Private keys: generation, PEM/DER encoding (PKCS#1, PKCS#8, SEC1) and parsing.
//!
//! Keys are aws-lc-rs key pairs (the one crypto stack of the crate). PKCS#1 and SEC1 are
//! derived from the PKCS#8 document, which wraps them.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use const_oid::ObjectIdentifier;
use const_oid::db::{rfc5912, rfc8410};
use der::{Decode, Encode};
use pkcs8::PrivateKeyInfo;
use schemars::JsonSchema;
use sec1::{EcParameters, EcPrivateKey};
use serde::{Deserialize, Serialize};
use spki::AlgorithmIdentifierOwned;
use x509_parser::prelude::{FromDer, SubjectPublicKeyInfo};
use x509_parser::public_key::PublicKey as ParsedPublicKey;

use super::PkiError;

/// Key algorithm, spelled as in cert-manager's `privateKey.algorithm`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum KeyAlgorithm {
    #[serde(rename = "RSA")]
    Rsa,
    #[default]
    #[serde(rename = "ECDSA")]
    Ecdsa,
    #[serde(rename = "Ed25519")]
    Ed25519,
}

/// Private key encoding, spelled as in cert-manager's `privateKey.encoding`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum KeyEncoding {
    #[serde(rename = "PKCS1")]
    Pkcs1,
    #[default]
    #[serde(rename = "PKCS8")]
    Pkcs8,
}

/// Algorithm plus size: RSA modulus bits (2048/3072/4096), ECDSA curve bits (256/384),
/// 0 for Ed25519.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeySpec {
    pub algorithm: KeyAlgorithm,
    pub size: u32,
}

const OID_RSA_ENCRYPTION: ObjectIdentifier = rfc5912::RSA_ENCRYPTION;
const OID_EC_PUBLIC_KEY: ObjectIdentifier = rfc5912::ID_EC_PUBLIC_KEY;
const OID_P256: ObjectIdentifier = rfc5912::SECP_256_R_1;
const OID_P384: ObjectIdentifier = rfc5912::SECP_384_R_1;
const OID_ED25519: ObjectIdentifier = rfc8410::ID_ED_25519;
const OID_ECDSA_WITH_SHA256: ObjectIdentifier = rfc5912::ECDSA_WITH_SHA_256;
const OID_ECDSA_WITH_SHA384: ObjectIdentifier = rfc5912::ECDSA_WITH_SHA_384;
const OID_SHA256_WITH_RSA: ObjectIdentifier = rfc5912::SHA_256_WITH_RSA_ENCRYPTION;

const PEM_PKCS8: &str = "PRIVATE KEY";
const PEM_PKCS1_RSA: &str = "RSA PRIVATE KEY";
const PEM_SEC1_EC: &str = "EC PRIVATE KEY";
const PEM_ENCRYPTED: &str = "ENCRYPTED PRIVATE KEY";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
}

impl Curve {
    fn from_bits(bits: u32) -> Option<Self> {
        match bits {
            256 => Some(Curve::P256),
            384 => Some(Curve::P384),
            _ => None,
        }
    }

    fn from_oid(oid: ObjectIdentifier) -> Option<Self> {
        match oid {
            OID_P256 => Some(Curve::P256),
            OID_P384 => Some(Curve::P384),
            _ => None,
        }
    }

    fn oid(self) -> ObjectIdentifier {
        match self {
            Curve::P256 => OID_P256,
            Curve::P384 => OID_P384,
        }
    }

    /// P-256 signs with SHA-256 and P-384 with SHA-384 (RFC 5480 §4).
    fn signing(self) -> &'static signature::EcdsaSigningAlgorithm {
        match self {
            Curve::P256 => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            Curve::P384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        }
    }
}

enum KeyPair {
    Ecdsa(EcdsaKeyPair, Curve),
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A private key. Its `Debug` never shows key material.
pub struct PrivateKey {
    pair: KeyPair,
    spec: KeySpec,
    /// DER SubjectPublicKeyInfo, computed once: every signing and key comparison needs it.
    spki: Vec<u8>,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey")
            .field("spec", &self.spec())
            .finish_non_exhaustive()
    }
}

/// aws-lc-rs errors carry no key bytes, only a kind; keep it that way by never formatting input.
fn rejected(what: &str, err: impl std::fmt::Display) -> PkiError {
    PkiError::InvalidKey(format!("{what}: {err}"))
}

impl PrivateKey {
    /// Generates a new key. CPU-bound (RSA: tens to hundreds of ms): not for async workers.
    pub fn generate(spec: KeySpec) -> Result<Self, PkiError> {
        let pair = match spec.algorithm {
            KeyAlgorithm::Ecdsa => {
                let curve = Curve::from_bits(spec.size).ok_or_else(|| {
                    PkiError::UnsupportedKey(format!("ECDSA keys are 256 or 384 bits, not {}", spec.size))
                })?;
                let pair = EcdsaKeyPair::generate(curve.signing())
                    .map_err(|e| rejected("ECDSA key generation failed", e))?;
                KeyPair::Ecdsa(pair, curve)
            }
            KeyAlgorithm::Rsa => {
                let size = match spec.size {
                    2048 => KeySize::Rsa2048,
                    3072 => KeySize::Rsa3072,
                    4096 => KeySize::Rsa4096,
                    other => {
                        return Err(PkiError::UnsupportedKey(format!(
                            "RSA keys are 2048, 3072 or 4096 bits, not {other}"
                        )));
                    }
                };
                let pair =
                    RsaKeyPair::generate(size).map_err(|e| rejected("RSA key generation failed", e))?;
                KeyPair::Rsa(pair)
            }
            KeyAlgorithm::Ed25519 => {
                if spec.size != 0 {
                    return Err(PkiError::UnsupportedKey(format!(
                        "Ed25519 keys have no size, got {}",
                        spec.size
                    )));
                }
                let pair =
                    Ed25519KeyPair::generate().map_err(|e| rejected("Ed25519 key generation failed", e))?;
                KeyPair::Ed25519(pair)
            }
        };
        Self::from_pair(pair)
    }

    /// Parses a PEM private key: PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or
    /// SEC1 (`EC PRIVATE KEY`).
    pub fn from_pem(pem: &[u8]) -> Result<Self, PkiError> {
        // The PEM error would quote the offending base64, which is key material.
        let blocks = pem::parse_many(pem).map_err(|_| PkiError::InvalidKey("malformed PEM".into()))?;
        // `openssl ecparam -genkey` puts an `EC PARAMETERS` block first: skip non-key blocks.
        let block = blocks
            .iter()
            .find(|b| [PEM_PKCS8, PEM_PKCS1_RSA, PEM_SEC1_EC, PEM_ENCRYPTED].contains(&b.tag()))
            .ok_or_else(|| PkiError::InvalidKey("no private key PEM block".into()))?;
        match block.tag() {
            PEM_PKCS8 => Self::from_pkcs8_der(block.contents()),
            PEM_PKCS1_RSA => {
                let pair = RsaKeyPair::from_der(block.contents())
                    .map_err(|e| rejected("PKCS#1 RSA key rejected", e))?;
                Self::from_pair(KeyPair::Rsa(pair))
            }
            PEM_SEC1_EC => Self::from_sec1_der(block.contents()),
            _ => Err(PkiError::UnsupportedKey(
                "encrypted private keys are not supported".into(),
            )),
        }
    }

    /// Algorithm and size of this key.
    pub fn spec(&self) -> KeySpec {
        self.spec
    }

    /// PEM in the requested encoding. PKCS#1 means `RSA PRIVATE KEY` for RSA and SEC1
    /// `EC PRIVATE KEY` (with the curve parameters) for ECDSA; Ed25519 has no PKCS#1 form.
    pub fn to_pem(&self, encoding: KeyEncoding) -> Result<String, PkiError> {
        let label = match (encoding, &self.pair) {
            (KeyEncoding::Pkcs8, _) => PEM_PKCS8,
            (KeyEncoding::Pkcs1, KeyPair::Rsa(_)) => PEM_PKCS1_RSA,
            (KeyEncoding::Pkcs1, KeyPair::Ecdsa(..)) => PEM_SEC1_EC,
            (KeyEncoding::Pkcs1, KeyPair::Ed25519(_)) => return Err(no_pkcs1_for_ed25519()),
        };
        Ok(encode_pem(label, self.to_der(encoding)?))
    }

    /// DER in the requested encoding (the bytes inside `to_pem`).
    pub fn to_der(&self, encoding: KeyEncoding) -> Result<Vec<u8>, PkiError> {
        let pkcs8 = self.pkcs8_der()?;
        match (encoding, &self.pair) {
            (KeyEncoding::Pkcs8, _) => Ok(pkcs8),
            // PKCS#8 wraps the PKCS#1 RSAPrivateKey as is.
            (KeyEncoding::Pkcs1, KeyPair::Rsa(_)) => pkcs8_inner_key(&pkcs8).map(<[u8]>::to_vec),
            (KeyEncoding::Pkcs1, KeyPair::Ecdsa(_, curve)) => self.sec1_der(&pkcs8, *curve),
            (KeyEncoding::Pkcs1, KeyPair::Ed25519(_)) => Err(no_pkcs1_for_ed25519()),
        }
    }

    /// The DER SubjectPublicKeyInfo of this key.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.spki.clone()
    }

    /// The DER SubjectPublicKeyInfo, borrowed.
    pub(crate) fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// The AlgorithmIdentifier of the signatures this key makes: ecdsa-with-SHA256 (P-256),
    /// ecdsa-with-SHA384 (P-384), sha256WithRSAEncryption (PKCS#1 v1.5), Ed25519.
    pub(crate) fn signature_algorithm(&self) -> AlgorithmIdentifierOwned {
        signature_algorithm_for(self.spec)
    }

    /// Signs `message` with the algorithm of `signature_algorithm_der`.
    pub(crate) fn sign(&self, message: &[u8]) -> Result<Vec<u8>, PkiError> {
        let failed = |e: aws_lc_rs::error::Unspecified| PkiError::Signing(e.to_string());
        match &self.pair {
            KeyPair::Ecdsa(pair, _) => Ok(pair
                .sign(&SystemRandom::new(), message)
                .map_err(failed)?
                .as_ref()
                .to_vec()),
            KeyPair::Rsa(pair) => {
                let mut out = vec![0; pair.public_modulus_len()];
                pair.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    message,
                    &mut out,
                )
                .map_err(failed)?;
                Ok(out)
            }
            KeyPair::Ed25519(pair) => Ok(pair.try_sign(message).map_err(failed)?.as_ref().to_vec()),
        }
    }

    fn from_pair(pair: KeyPair) -> Result<Self, PkiError> {
        let spki = match &pair {
            KeyPair::Ecdsa(p, _) => p.public_key().as_der().map(|d| d.as_ref().to_vec()),
            KeyPair::Rsa(p) => p.public_key().as_der().map(|d| d.as_ref().to_vec()),
            KeyPair::Ed25519(p) => {
                AsDer::<PublicKeyX509Der>::as_der(p.public_key()).map(|d| d.as_ref().to_vec())
            }
        }
        .map_err(|e| rejected("cannot encode the public key", e))?;
        let spec = key_spec_from_spki(&spki)?;
        Ok(Self { pair, spec, spki })
    }

    fn from_pkcs8_der(pkcs8: &[u8]) -> Result<Self, PkiError> {
        let info = PrivateKeyInfo::from_der(pkcs8)
            .map_err(|_| PkiError::InvalidKey("malformed PKCS#8 document".into()))?;
        let oid = info.algorithm.oid;

        let pair = if oid == OID_RSA_ENCRYPTION {
            KeyPair::Rsa(RsaKeyPair::from_pkcs8(pkcs8).map_err(|e| rejected("PKCS#8 RSA key rejected", e))?)
        } else if oid == OID_EC_PUBLIC_KEY {
            let curve = info
                .algorithm
                .parameters_oid()
                .ok()
                .and_then(Curve::from_oid)
                .ok_or_else(|| PkiError::UnsupportedKey("ECDSA keys must use P-256 or P-384".into()))?;
            let pair = EcdsaKeyPair::from_pkcs8(curve.signing(), pkcs8)
                .map_err(|e| rejected("PKCS#8 ECDSA key rejected", e))?;
            KeyPair::Ecdsa(pair, curve)
        } else if oid == OID_ED25519 {
            // Accepts the v1 documents OpenSSL writes as well as v2 ones with the public key.
            KeyPair::Ed25519(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
                    .map_err(|e| rejected("PKCS#8 Ed25519 key rejected", e))?,
            )
        } else {
            return Err(PkiError::UnsupportedKey(
                "PKCS#8 key is not RSA, ECDSA or Ed25519".into(),
            ));
        };
        Self::from_pair(pair)
    }

    fn from_sec1_der(sec1: &[u8]) -> Result<Self, PkiError> {
        let parsed = EcPrivateKey::from_der(sec1)
            .map_err(|_| PkiError::InvalidKey("malformed SEC1 EC private key".into()))?;
        let scalar = parsed.private_key;
        let named_curve = match parsed.parameters {
            Some(EcParameters::NamedCurve(oid)) => Some(
                Curve::from_oid(oid)
                    .ok_or_else(|| PkiError::UnsupportedKey("ECDSA keys must use P-256 or P-384".into()))?,
            ),
            None => None,
        };
        // Without parameters (allowed by RFC 5915) the scalar's length tells the curve.
        let curve = match named_curve {
            Some(curve) => curve,
            None => match scalar.len() {
                32 => Curve::P256,
                48 => Curve::P384,
                _ => {
                    return Err(PkiError::UnsupportedKey(
                        "ECDSA keys must use P-256 or P-384".into(),
                    ));
                }
            },
        };
        let pair = EcdsaKeyPair::from_private_key_der(curve.signing(), sec1)
            .map_err(|e| rejected("SEC1 ECDSA key rejected", e))?;
        Self::from_pair(KeyPair::Ecdsa(pair, curve))
    }

    fn pkcs8_der(&self) -> Result<Vec<u8>, PkiError> {
        let encoded = match &self.pair {
            KeyPair::Ecdsa(p, _) => p.to_pkcs8v1().map(|d| d.as_ref().to_vec()),
            KeyPair::Rsa(p) => AsDer::<Pkcs8V1Der>::as_der(p).map(|d| d.as_ref().to_vec()),
            KeyPair::Ed25519(p) => p.to_pkcs8v1().map(|d| d.as_ref().to_vec()),
        };
        encoded.map_err(|e| rejected("cannot encode the private key", e))
    }

    /// SEC1 `ECPrivateKey` with the named curve and the public key, as OpenSSL writes it: the
    /// copy inside PKCS#8 leaves the curve out (it is in the AlgorithmIdentifier), and tools
    /// reading `EC PRIVATE KEY` files need it.
    fn sec1_der(&self, pkcs8: &[u8], curve: Curve) -> Result<Vec<u8>, PkiError> {
        let malformed = || PkiError::InvalidKey("cannot re-encode the EC private key".into());
        let inner = EcPrivateKey::from_der(pkcs8_inner_key(pkcs8)?).map_err(|_| malformed())?;
        let point = public_key_bits(&self.spki).ok_or_else(malformed)?;
        EcPrivateKey {
            private_key: inner.private_key,
            parameters: Some(EcParameters::NamedCurve(curve.oid())),
            public_key: Some(&point),
        }
        .to_der()
        .map_err(|_| malformed())
    }
}

fn no_pkcs1_for_ed25519() -> PkiError {
    PkiError::UnsupportedKey("Ed25519 keys have no PKCS#1 encoding: use PKCS8".into())
}

/// The `privateKey` OCTET STRING content of a PKCS#8 PrivateKeyInfo.
fn pkcs8_inner_key(pkcs8: &[u8]) -> Result<&[u8], PkiError> {
    PrivateKeyInfo::from_der(pkcs8)
        .map(|info| info.private_key)
        .map_err(|_| PkiError::InvalidKey("malformed PKCS#8 document".into()))
}

pub(crate) fn encode_pem(label: &str, der: Vec<u8>) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// The subjectPublicKey bits of a DER SubjectPublicKeyInfo.
pub(crate) fn public_key_bits(spki: &[u8]) -> Option<Vec<u8>> {
    let (_, parsed) = SubjectPublicKeyInfo::from_der(spki).ok()?;
    Some(parsed.subject_public_key.data.to_vec())
}

/// The AlgorithmIdentifier of the signatures a key of `spec` makes: ecdsa-with-SHA256 (P-256),
/// ecdsa-with-SHA384 (P-384), sha256WithRSAEncryption (PKCS#1 v1.5), Ed25519. The same for a
/// key in process and one on a token.
pub(crate) fn signature_algorithm_for(spec: KeySpec) -> AlgorithmIdentifierOwned {
    let (oid, parameters) = match spec.algorithm {
        KeyAlgorithm::Ecdsa if spec.size == 384 => (OID_ECDSA_WITH_SHA384, None),
        KeyAlgorithm::Ecdsa => (OID_ECDSA_WITH_SHA256, None),
        // RFC 4055 §5: the parameters of the RSA PKCS#1 v1.5 algorithms are an explicit NULL.
        KeyAlgorithm::Rsa => (OID_SHA256_WITH_RSA, Some(der::asn1::Any::null())),
        KeyAlgorithm::Ed25519 => (OID_ED25519, None),
    };
    AlgorithmIdentifierOwned { oid, parameters }
}

/// Whether two SubjectPublicKeyInfos hold the same key: same algorithm and same key bits,
/// whatever optional parameters either encoding carries.
pub(crate) fn same_public_key(a: &[u8], b: &[u8]) -> bool {
    match (
        SubjectPublicKeyInfo::from_der(a),
        SubjectPublicKeyInfo::from_der(b),
    ) {
        (Ok((_, a)), Ok((_, b))) => {
            a.algorithm.algorithm == b.algorithm.algorithm
                && a.subject_public_key.data == b.subject_public_key.data
        }
        _ => false,
    }
}

/// Algorithm and size of the key in a DER SubjectPublicKeyInfo.
pub(crate) fn key_spec_from_spki(spki: &[u8]) -> Result<KeySpec, PkiError> {
    let invalid = |e: String| PkiError::InvalidCertificate(format!("public key: {e}"));
    let (_, parsed) = SubjectPublicKeyInfo::from_der(spki).map_err(|e| invalid(e.to_string()))?;
    let oid = parsed.algorithm.algorithm.as_bytes();
    if oid == OID_RSA_ENCRYPTION.as_bytes() {
        let Ok(ParsedPublicKey::RSA(rsa)) = parsed.parsed() else {
            return Err(invalid("malformed RSA public key".into()));
        };
        Ok(KeySpec {
            algorithm: KeyAlgorithm::Rsa,
            size: modulus_bits(rsa.modulus),
        })
    } else if oid == OID_EC_PUBLIC_KEY.as_bytes() {
        let curve_oid = parsed.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
        let size = match curve_oid.as_ref().map(|o| o.as_bytes()) {
            Some(c) if c == OID_P256.as_bytes() => 256,
            Some(c) if c == OID_P384.as_bytes() => 384,
            // Other curves (P-521, brainpool) are reported by their point size so a spec
            // comparison sees them differ; we never sign with them.
            _ => match parsed.parsed() {
                Ok(ParsedPublicKey::EC(point)) => u32::try_from(point.key_size()).unwrap_or(0),
                _ => 0,
            },
        };
        Ok(KeySpec {
            algorithm: KeyAlgorithm::Ecdsa,
            size,
        })
    } else if oid == OID_ED25519.as_bytes() {
        Ok(KeySpec {
            algorithm: KeyAlgorithm::Ed25519,
            size: 0,
        })
    } else {
        Err(PkiError::UnsupportedKey(format!(
            "public key algorithm {} is not RSA, ECDSA or Ed25519",
            parsed.algorithm.algorithm
        )))
    }
}

/// Bit length of a big-endian modulus, ignoring sign padding.
fn modulus_bits(modulus: &[u8]) -> u32 {
    let skip = modulus.iter().take_while(|b| **b == 0).count();
    match modulus.get(skip..) {
        Some([first, rest @ ..]) => u32::try_from(rest.len() * 8)
            .unwrap_or(u32::MAX)
            .saturating_add(8 - first.leading_zeros()),
        _ => 0,
    }
}
