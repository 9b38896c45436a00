//! Pure encodings between what a PKCS#11 token hands over and what X.509 wants: ECDSA `r||s`
//! as DER, the DigestInfo `CKM_RSA_PKCS` signs, and SubjectPublicKeyInfos from a key object's
//! attributes (to compare the token's key with the CA certificate's) and back.
//!
//! Tokens differ in how they write the same key (docs/pkcs11-research.md §0, §5): an EC point
//! raw or in an OCTET STRING, Ed25519's curve as an OID or as pkcs11-tool's PrintableString.
//! Every form is read here, so the code that talks to the token never looks at bytes.

use const_oid::ObjectIdentifier;
use const_oid::db::{rfc5912, rfc8410};
use der::asn1::{Any, AnyRef, BitString, BitStringRef, OctetStringRef, PrintableStringRef, UintRef};
use der::{Decode, Encode, Sequence};
use spki::{
    AlgorithmIdentifierOwned, AlgorithmIdentifierRef, SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef,
};

use crate::pki::PkiError;
use crate::pki::asn1::encoding;

/// CKA_EC_PARAMS of a P-256 key: the DER OID 1.2.840.10045.3.1.7 (prime256v1).
pub const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// CKA_EC_PARAMS of a P-384 key: the DER OID 1.3.132.0.34 (secp384r1).
pub const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
/// CKA_EC_PARAMS of an Ed25519 key as certkeeper writes it: the DER OID 1.3.101.112 (RFC 8410).
pub const ED25519_PARAMS: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

/// pkcs11-tool writes Ed25519's CKA_EC_PARAMS as this PrintableString instead of the OID.
const EDWARDS25519_NAME: &str = "edwards25519";

/// RFC 3279 `Ecdsa-Sig-Value`: what X.509 carries in a signature BIT STRING. `UintRef` drops
/// leading zeros and DER adds one `0x00` when the top bit is set, which is exactly the rule.
#[derive(Sequence)]
struct EcdsaSigValue<'a> {
    r: UintRef<'a>,
    s: UintRef<'a>,
}

/// RFC 8017 `DigestInfo`, the input of a PKCS#1 v1.5 signature.
#[derive(Sequence)]
struct DigestInfo<'a> {
    digest_algorithm: AlgorithmIdentifierRef<'a>,
    digest: OctetStringRef<'a>,
}

/// RFC 8017 `RSAPublicKey`, inside an rsaEncryption SubjectPublicKeyInfo.
#[derive(Sequence)]
struct RsaPublicKey<'a> {
    modulus: UintRef<'a>,
    public_exponent: UintRef<'a>,
}

/// The curves certkeeper's CA keys may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
    Ed25519,
}

impl Curve {
    fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::Ed25519 => "Ed25519",
        }
    }

    /// Length of the public key as X.509 carries it: `04||X||Y` for the NIST curves, the 32
    /// bytes of RFC 8032 for Ed25519.
    fn point_len(self) -> usize {
        match self {
            Curve::P256 => 65,
            Curve::P384 => 97,
            Curve::Ed25519 => 32,
        }
    }

    fn oid(self) -> ObjectIdentifier {
        match self {
            Curve::P256 => rfc5912::SECP_256_R_1,
            Curve::P384 => rfc5912::SECP_384_R_1,
            Curve::Ed25519 => rfc8410::ID_ED_25519,
        }
    }

    fn is_point(self, bytes: &[u8]) -> bool {
        bytes.len() == self.point_len() && (self == Curve::Ed25519 || bytes.first() == Some(&0x04))
    }

    fn from_oid(oid: ObjectIdentifier) -> Result<Self, PkiError> {
        match oid {
            rfc5912::SECP_256_R_1 => Ok(Curve::P256),
            rfc5912::SECP_384_R_1 => Ok(Curve::P384),
            rfc8410::ID_ED_25519 => Ok(Curve::Ed25519),
            other => {
                let name = const_oid::db::DB.by_oid(&other).unwrap_or("unknown");
                Err(unsupported(format!("curve {other} ({name})")))
            }
        }
    }
}

fn unsupported(found: String) -> PkiError {
    PkiError::UnsupportedKey(format!(
        "{found}; certkeeper takes P-256, P-384, Ed25519 and RSA keys"
    ))
}

/// ECDSA raw `r||s` (as CKM_ECDSA returns it) → DER `Ecdsa-Sig-Value` (RFC 3279), the form
/// X.509, CRLs and OCSP carry. `field_len` is 32 (P-256) or 48 (P-384); a signature of any other
/// length than twice that is refused, since a short one would be read as a different (r, s).
pub fn ecdsa_raw_to_der(raw: &[u8], field_len: usize) -> Result<Vec<u8>, PkiError> {
    let curve = match field_len {
        32 => Curve::P256,
        48 => Curve::P384,
        other => {
            return Err(PkiError::UnsupportedKey(format!(
                "ECDSA with {other}-byte field elements; certkeeper signs with P-256 (32) and P-384 (48)"
            )));
        }
    };
    if raw.len() != 2 * field_len {
        return Err(PkiError::Signing(format!(
            "the token returned a {}-byte ECDSA signature; {} gives r||s in {} bytes",
            raw.len(),
            curve.name(),
            2 * field_len
        )));
    }
    let (r, s) = raw.split_at(field_len);
    // Zero is never a valid r or s; it would still encode, as INTEGER 0.
    if r.iter().all(|&b| b == 0) || s.iter().all(|&b| b == 0) {
        return Err(PkiError::Signing(
            "the token returned an ECDSA signature with r or s zero".into(),
        ));
    }
    let value = EcdsaSigValue {
        r: UintRef::new(r).map_err(encoding("ECDSA r"))?,
        s: UintRef::new(s).map_err(encoding("ECDSA s"))?,
    };
    value.to_der().map_err(encoding("Ecdsa-Sig-Value"))
}

/// DER `DigestInfo` for SHA-256 around `digest`: what `CKM_RSA_PKCS` must be given to make a
/// PKCS#1 v1.5 SHA-256 signature, for tokens without `CKM_SHA256_RSA_PKCS` (the two give the
/// same signature). The parameters are an explicit NULL, as RFC 8017 §9.2 writes them.
pub fn digest_info_sha256(digest: &[u8]) -> Result<Vec<u8>, PkiError> {
    if digest.len() != 32 {
        return Err(PkiError::Signing(format!(
            "a SHA-256 digest is 32 bytes, not {}",
            digest.len()
        )));
    }
    DigestInfo {
        digest_algorithm: AlgorithmIdentifierRef {
            oid: rfc5912::ID_SHA_256,
            parameters: Some(AnyRef::NULL),
        },
        digest: OctetStringRef::new(digest).map_err(encoding("DigestInfo digest"))?,
    }
    .to_der()
    .map_err(encoding("DigestInfo"))
}

/// SubjectPublicKeyInfo DER from an EC or Edwards key object's CKA_EC_PARAMS and CKA_EC_POINT,
/// encoded as aws-lc-rs encodes the same key, so it compares byte for byte with a certificate's.
/// P-256 and P-384 (named-curve OID; point `04||X||Y`, raw or in an OCTET STRING) and Ed25519
/// (the OID or the PrintableString `edwards25519`; 32 bytes, raw or in an OCTET STRING).
/// Anything else is `UnsupportedKey`, naming what was found. The point is not checked to lie on
/// the curve: it is only ever compared with the certificate's key.
pub fn ec_spki(ec_params: &[u8], ec_point: &[u8]) -> Result<Vec<u8>, PkiError> {
    let curve = curve_from_params(ec_params)?;
    let point = point_bytes(curve, ec_point)?;
    let algorithm = match curve {
        Curve::P256 | Curve::P384 => AlgorithmIdentifierOwned {
            oid: rfc5912::ID_EC_PUBLIC_KEY,
            parameters: Some(Any::from(curve.oid())),
        },
        // RFC 8410 §3: the parameters are absent, whatever the token's CKA_EC_PARAMS said.
        Curve::Ed25519 => AlgorithmIdentifierOwned {
            oid: rfc8410::ID_ED_25519,
            parameters: None,
        },
    };
    SubjectPublicKeyInfoOwned {
        algorithm,
        subject_public_key: BitString::from_bytes(point).map_err(encoding("public key"))?,
    }
    .to_der()
    .map_err(encoding("SubjectPublicKeyInfo"))
}

/// SubjectPublicKeyInfo DER (rsaEncryption, NULL parameters as RFC 3279 and aws-lc-rs write
/// them) from CKA_MODULUS and CKA_PUBLIC_EXPONENT, big-endian. Leading zero bytes, which some
/// tokens leave in, are dropped so the encoding is the one DER allows.
pub fn rsa_spki(modulus: &[u8], public_exponent: &[u8]) -> Result<Vec<u8>, PkiError> {
    let key = RsaPublicKey {
        modulus: rsa_integer(modulus, "CKA_MODULUS")?,
        public_exponent: rsa_integer(public_exponent, "CKA_PUBLIC_EXPONENT")?,
    }
    .to_der()
    .map_err(encoding("RSAPublicKey"))?;
    SubjectPublicKeyInfoOwned {
        algorithm: AlgorithmIdentifierOwned {
            oid: rfc5912::RSA_ENCRYPTION,
            parameters: Some(Any::null()),
        },
        subject_public_key: BitString::from_bytes(&key).map_err(encoding("public key"))?,
    }
    .to_der()
    .map_err(encoding("SubjectPublicKeyInfo"))
}

/// A positive RSA integer from a token attribute. Zero (or nothing) would still encode, as a
/// key no certificate can hold.
fn rsa_integer<'a>(bytes: &'a [u8], what: &str) -> Result<UintRef<'a>, PkiError> {
    if bytes.iter().all(|&b| b == 0) {
        return Err(PkiError::InvalidKey(format!("{what} is empty or zero")));
    }
    UintRef::new(bytes).map_err(|e| PkiError::InvalidKey(format!("{what}: {e}")))
}

/// CKA_EC_PARAMS (DER) and the raw public point, as `ec_params_and_point` returns them.
pub type EcParamsAndPoint = (Vec<u8>, Vec<u8>);

/// The reverse of `ec_spki`: CKA_EC_PARAMS (DER OID; `ED25519_PARAMS` for Ed25519) and the raw
/// public point (`04||X||Y`, or Ed25519's 32 bytes) of an SPKI, for a key import to check what
/// the token holds. `None` for an RSA key, whose public half is not a point. Tokens want
/// CKA_EC_POINT wrapped in an OCTET STRING: the caller wraps it.
pub fn ec_params_and_point(spki: &[u8]) -> Result<Option<EcParamsAndPoint>, PkiError> {
    let spki = SubjectPublicKeyInfoRef::from_der(spki)
        .map_err(|e| PkiError::InvalidKey(format!("SubjectPublicKeyInfo: {e}")))?;
    let key = key_bytes(spki.subject_public_key)?;
    let (params, curve) = match spki.algorithm.oid {
        rfc5912::RSA_ENCRYPTION => return Ok(None),
        rfc5912::ID_EC_PUBLIC_KEY => {
            let params = spki
                .algorithm
                .parameters
                .ok_or_else(|| PkiError::InvalidKey("an EC key without curve parameters".into()))?
                .to_der()
                .map_err(encoding("EC parameters"))?;
            let curve = curve_from_params(&params)?;
            if curve == Curve::Ed25519 {
                return Err(PkiError::InvalidKey("an id-ecPublicKey naming Ed25519".into()));
            }
            (params, curve)
        }
        rfc8410::ID_ED_25519 => (ED25519_PARAMS.to_vec(), Curve::Ed25519),
        other => {
            let name = const_oid::db::DB.by_oid(&other).unwrap_or("unknown");
            return Err(unsupported(format!("key algorithm {other} ({name})")));
        }
    };
    if !curve.is_point(key) {
        return Err(PkiError::InvalidKey(format!(
            "a {} public key of {} bytes (expected {})",
            curve.name(),
            key.len(),
            curve.point_len()
        )));
    }
    Ok(Some((params, key.to_vec())))
}

/// The curve CKA_EC_PARAMS names: a named-curve OID, or a curve name in a PrintableString
/// (pkcs11-tool's `edwards25519`). Explicit curve parameters are refused: no CA key needs them.
fn curve_from_params(ec_params: &[u8]) -> Result<Curve, PkiError> {
    if let Ok(oid) = ObjectIdentifier::from_der(ec_params) {
        return Curve::from_oid(oid);
    }
    if let Ok(name) = PrintableStringRef::from_der(ec_params) {
        return match name.as_str() {
            EDWARDS25519_NAME => Ok(Curve::Ed25519),
            other => Err(unsupported(format!("curve name {other:?} in CKA_EC_PARAMS"))),
        };
    }
    let found = match ec_params.first() {
        Some(0x30) => "explicit curve parameters in CKA_EC_PARAMS (name the curve by its OID)".to_string(),
        Some(tag) => format!(
            "CKA_EC_PARAMS of {} bytes starting {tag:#04x}, neither a curve OID nor a name",
            ec_params.len()
        ),
        None => "an empty CKA_EC_PARAMS".to_string(),
    };
    Err(unsupported(found))
}

/// The public key bytes of CKA_EC_POINT: the point as it is, or unwrapped from the OCTET STRING
/// PKCS#11 specifies. Lengths tell the two forms apart (a wrapped point is 2 bytes longer).
fn point_bytes(curve: Curve, ec_point: &[u8]) -> Result<&[u8], PkiError> {
    if curve.is_point(ec_point) {
        return Ok(ec_point);
    }
    match OctetStringRef::from_der(ec_point) {
        Ok(wrapped) if curve.is_point(wrapped.as_bytes()) => Ok(wrapped.as_bytes()),
        _ => Err(unsupported(format!(
            "CKA_EC_POINT of {} bytes for {}, neither its {}-byte {} nor that in an OCTET STRING",
            ec_point.len(),
            curve.name(),
            curve.point_len(),
            if curve == Curve::Ed25519 {
                "public key"
            } else {
                "uncompressed point 04||X||Y"
            },
        ))),
    }
}

/// The bytes of an SPKI's key BIT STRING; keys are whole bytes.
fn key_bytes(bits: BitStringRef<'_>) -> Result<&[u8], PkiError> {
    bits.as_bytes()
        .ok_or_else(|| PkiError::InvalidKey("a public key that is not a whole number of bytes".into()))
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, UnparsedPublicKey};

    use super::*;
    use crate::pki::{KeyAlgorithm, KeySpec, PrivateKey};

    fn key(algorithm: KeyAlgorithm, size: u32) -> PrivateKey {
        PrivateKey::generate(KeySpec { algorithm, size }).unwrap()
    }

    /// OCTET STRING around `bytes`, as PKCS#11 writes CKA_EC_POINT.
    fn wrapped(bytes: &[u8]) -> Vec<u8> {
        OctetStringRef::new(bytes).unwrap().to_der().unwrap()
    }

    #[test]
    fn params_constants_are_the_curve_oids() {
        assert_eq!(P256_PARAMS, rfc5912::SECP_256_R_1.to_der().unwrap());
        assert_eq!(P384_PARAMS, rfc5912::SECP_384_R_1.to_der().unwrap());
        assert_eq!(ED25519_PARAMS, rfc8410::ID_ED_25519.to_der().unwrap());
    }

    #[test]
    fn ecdsa_raw_signatures_verify_as_der() {
        let cases = [
            (
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &signature::ECDSA_P256_SHA256_ASN1,
                32,
            ),
            (
                &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                &signature::ECDSA_P384_SHA384_ASN1,
                48,
            ),
        ];
        let rng = SystemRandom::new();
        for (signing, verifying, field_len) in cases {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &rng).unwrap();
            let pair = EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref()).unwrap();
            let public = UnparsedPublicKey::new(verifying, pair.public_key().as_ref().to_vec());
            // Enough signatures that some r and s have the top bit set and some a leading zero.
            for i in 0..32u8 {
                let message = [b'm', i];
                let raw = pair.sign(&rng, &message).unwrap();
                assert_eq!(raw.as_ref().len(), 2 * field_len);
                let der = ecdsa_raw_to_der(raw.as_ref(), field_len).unwrap();
                public.verify(&message, &der).unwrap();
                assert!(public.verify(b"other", &der).is_err());
            }
        }
    }

    #[test]
    fn ecdsa_der_pads_high_bit_and_strips_leading_zeros() {
        // r: top bit set → INTEGER gains a 0x00. s: two leading zeros → dropped.
        let mut raw = vec![0x80];
        raw.extend([0x01; 31]);
        raw.extend([0x00, 0x00]);
        raw.extend([0x05; 30]);
        let mut expected = vec![0x30, 0x43, 0x02, 0x21, 0x00, 0x80];
        expected.extend([0x01; 31]);
        expected.extend([0x02, 0x1e]);
        expected.extend([0x05; 30]);
        assert_eq!(ecdsa_raw_to_der(&raw, 32).unwrap(), expected);

        // s: a leading zero before a top-bit byte → the zero is dropped, then one is put back.
        let mut raw = vec![0x7f; 48];
        raw.push(0x00);
        raw.extend([0xff; 47]);
        let mut expected = vec![0x30, 0x64, 0x02, 0x30];
        expected.extend([0x7f; 48]);
        expected.extend([0x02, 0x30, 0x00]);
        expected.extend([0xff; 47]);
        assert_eq!(ecdsa_raw_to_der(&raw, 48).unwrap(), expected);
    }

    #[test]
    fn ecdsa_wrong_lengths_are_refused() {
        for (len, field_len) in [(0, 32), (63, 32), (65, 32), (96, 32), (64, 48), (97, 48)] {
            let err = ecdsa_raw_to_der(&vec![1; len], field_len).unwrap_err();
            assert!(matches!(err, PkiError::Signing(_)), "{len}/{field_len}: {err}");
        }
        let err = ecdsa_raw_to_der(&[1; 132], 66).unwrap_err();
        assert!(matches!(err, PkiError::UnsupportedKey(_)), "{err}");
    }

    #[test]
    fn ecdsa_zero_r_or_s_is_refused() {
        let mut raw = vec![0; 32];
        raw.extend([1; 32]);
        assert!(matches!(ecdsa_raw_to_der(&raw, 32), Err(PkiError::Signing(_))));
        raw.reverse();
        assert!(matches!(ecdsa_raw_to_der(&raw, 32), Err(PkiError::Signing(_))));
    }

    #[test]
    fn digest_info_sha256_has_the_pkcs1_prefix() {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"to be signed");
        let info = digest_info_sha256(digest.as_ref()).unwrap();
        let prefix = [
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
            0x00, 0x04, 0x20,
        ];
        assert_eq!(info[..19], prefix);
        assert_eq!(info[19..], *digest.as_ref());
        assert!(digest_info_sha256(&[0; 31]).is_err());
        assert!(digest_info_sha256(&[0; 48]).is_err());
    }

    #[test]
    fn ec_spki_rebuilds_generated_keys_byte_for_byte() {
        for (algorithm, size, params) in [
            (KeyAlgorithm::Ecdsa, 256, P256_PARAMS),
            (KeyAlgorithm::Ecdsa, 384, P384_PARAMS),
            (KeyAlgorithm::Ed25519, 0, ED25519_PARAMS),
        ] {
            let spki = key(algorithm, size).public_key_der();
            let (found_params, point) = ec_params_and_point(&spki).unwrap().unwrap();
            assert_eq!(found_params, params);
            assert_eq!(
                ec_spki(params, &point).unwrap(),
                spki,
                "{algorithm:?} {size}, raw point"
            );
            assert_eq!(
                ec_spki(params, &wrapped(&point)).unwrap(),
                spki,
                "{algorithm:?} {size}, wrapped"
            );
        }
    }

    #[test]
    fn ed25519_params_may_be_the_printable_string() {
        let spki = key(KeyAlgorithm::Ed25519, 0).public_key_der();
        let (_, point) = ec_params_and_point(&spki).unwrap().unwrap();
        // What pkcs11-tool writes (docs/pkcs11-research.md §0, item 8).
        let name = [
            0x13, 0x0c, b'e', b'd', b'w', b'a', b'r', b'd', b's', b'2', b'5', b'5', b'1', b'9',
        ];
        assert_eq!(
            PrintableStringRef::new(EDWARDS25519_NAME)
                .unwrap()
                .to_der()
                .unwrap(),
            name
        );
        assert_eq!(ec_spki(&name, &point).unwrap(), spki);
        assert_eq!(ec_spki(&name, &wrapped(&point)).unwrap(), spki);
    }

    #[test]
    fn rsa_spki_rebuilds_generated_key_byte_for_byte() {
        let spki = key(KeyAlgorithm::Rsa, 2048).public_key_der();
        assert_eq!(ec_params_and_point(&spki).unwrap(), None);
        let parsed = SubjectPublicKeyInfoRef::from_der(&spki).unwrap();
        let rsa = RsaPublicKey::from_der(parsed.subject_public_key.raw_bytes()).unwrap();
        let (n, e) = (rsa.modulus.as_bytes(), rsa.public_exponent.as_bytes());
        assert_eq!(n.len(), 256);
        assert_eq!(rsa_spki(n, e).unwrap(), spki);
        // Tokens may hand over leading zero bytes.
        let padded_n = [&[0, 0][..], n].concat();
        assert_eq!(rsa_spki(&padded_n, &[0, 1, 0, 1]).unwrap(), spki);
    }

    #[test]
    fn rsa_spki_refuses_empty_or_zero_values() {
        assert!(matches!(rsa_spki(&[], &[1, 0, 1]), Err(PkiError::InvalidKey(_))));
        assert!(matches!(
            rsa_spki(&[0; 256], &[1, 0, 1]),
            Err(PkiError::InvalidKey(_))
        ));
        assert!(matches!(
            rsa_spki(&[0xc5; 256], &[]),
            Err(PkiError::InvalidKey(_))
        ));
    }

    #[test]
    fn unsupported_curves_are_refused_naming_them() {
        let point = [0x04; 133];
        let p521 = rfc5912::SECP_521_R_1.to_der().unwrap();
        let err = ec_spki(&p521, &point).unwrap_err();
        assert!(
            matches!(&err, PkiError::UnsupportedKey(m) if m.contains("1.3.132.0.35")),
            "{err}"
        );
        let x25519 = rfc8410::ID_X_25519.to_der().unwrap();
        let err = ec_spki(&x25519, &[1; 32]).unwrap_err();
        assert!(err.to_string().contains("1.3.101.110"), "{err}");
        let curve448 = PrintableStringRef::new("edwards448").unwrap().to_der().unwrap();
        let err = ec_spki(&curve448, &[1; 57]).unwrap_err();
        assert!(err.to_string().contains("\"edwards448\""), "{err}");
        let err = ec_spki(&[0x30, 0x03, 0x02, 0x01, 0x01], &point).unwrap_err();
        assert!(err.to_string().contains("explicit curve parameters"), "{err}");
        let err = ec_spki(&[], &point).unwrap_err();
        assert!(err.to_string().contains("empty CKA_EC_PARAMS"), "{err}");
    }

    #[test]
    fn malformed_points_are_refused() {
        let spki = key(KeyAlgorithm::Ecdsa, 256).public_key_der();
        let (_, point) = ec_params_and_point(&spki).unwrap().unwrap();
        let compressed = [&[0x02], &point[1..33]].concat();
        for bad in [
            &point[..64],
            &compressed[..],
            &wrapped(&compressed),
            &point[1..],
            &[][..],
        ] {
            let err = ec_spki(P256_PARAMS, bad).unwrap_err();
            assert!(
                matches!(&err, PkiError::UnsupportedKey(m) if m.contains("CKA_EC_POINT")),
                "{err}"
            );
        }
        // A P-256 point under P-384 parameters.
        assert!(ec_spki(P384_PARAMS, &point).is_err());
        assert!(ec_spki(ED25519_PARAMS, &[1; 31]).is_err());
        assert!(ec_spki(ED25519_PARAMS, &wrapped(&[1; 33])).is_err());
    }

    #[test]
    fn ec_params_and_point_refuses_other_algorithms() {
        let dsa = SubjectPublicKeyInfoOwned {
            algorithm: AlgorithmIdentifierOwned {
                oid: rfc5912::ID_DSA,
                parameters: None,
            },
            subject_public_key: BitString::from_bytes(&[1, 2, 3]).unwrap(),
        }
        .to_der()
        .unwrap();
        assert!(matches!(
            ec_params_and_point(&dsa),
            Err(PkiError::UnsupportedKey(_))
        ));
        assert!(matches!(
            ec_params_and_point(b"not der"),
            Err(PkiError::InvalidKey(_))
        ));
    }
}
