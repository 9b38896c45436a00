//! Key pairs made on the token (`certkeeper ca init`): the private key is generated there,
//! sensitive and not extractable, and never exists anywhere else.

use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::Attribute;
use cryptoki::types::AuthPin;

use super::encode::{self, ED25519_PARAMS, P256_PARAMS, P384_PARAMS};
use super::error::{HsmError, HsmReason, failed};
use super::module::Module;
use super::pool::{TokenSelector, open_rw_and_log_in, pin_hash};
use super::uri::Pkcs11Uri;

/// The key algorithms `ca init` makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenKeyAlgorithm {
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
    #[value(name = "ecdsa-p384")]
    EcdsaP384,
    #[value(name = "rsa-2048")]
    Rsa2048,
    #[value(name = "rsa-3072")]
    Rsa3072,
    #[value(name = "rsa-4096")]
    Rsa4096,
    #[value(name = "ed25519")]
    Ed25519,
}

/// The token selector of a URI.
pub fn token_of(uri: &Pkcs11Uri) -> TokenSelector {
    TokenSelector {
        label: uri.token.clone(),
        serial: uri.serial.clone(),
        manufacturer: uri.manufacturer.clone(),
        model: uri.model.clone(),
        slot_id: uri.slot_id,
    }
}

/// Generates a key pair on the token `uri` names, labelled with its `object` (and `id`, or 16
/// random bytes), refusing when any object with that label or id exists. Returns the public
/// key as a SubjectPublicKeyInfo. Blocking.
pub fn generate_key_pair(
    module: &Module,
    uri: &Pkcs11Uri,
    pin: &str,
    algorithm: TokenKeyAlgorithm,
) -> Result<Vec<u8>, HsmError> {
    let label = uri
        .object
        .clone()
        .ok_or_else(|| HsmError::unsupported("the key URI must name the new key with object="))?;
    let gate = module.enter()?;
    let (session, _login) = open_rw_and_log_in(
        module,
        &gate,
        &token_of(uri),
        &AuthPin::from(pin.to_owned()),
        pin_hash(pin.as_bytes()),
    )?;
    let existing = session
        .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
        .map_err(|e| failed("C_FindObjects", &e))?;
    if !existing.is_empty() {
        return Err(HsmError::new(
            HsmReason::KeyAmbiguous,
            format!("the token already holds an object labelled {label:?}: choose a new label for a new key"),
        ));
    }
    let id = match &uri.id {
        Some(id) => {
            let existing = session
                .find_objects(&[Attribute::Id(id.clone())])
                .map_err(|e| failed("C_FindObjects", &e))?;
            if !existing.is_empty() {
                return Err(HsmError::new(
                    HsmReason::KeyAmbiguous,
                    format!(
                        "the token already holds an object with id {}",
                        crate::pki::lower_hex(id)
                    ),
                ));
            }
            id.clone()
        }
        None => {
            let mut id = vec![0; 16];
            aws_lc_rs::rand::fill(&mut id)
                .map_err(|_| HsmError::unavailable("no random bytes for the key id"))?;
            id
        }
    };
    let slot = session
        .get_session_info()
        .map_err(|e| failed("C_GetSessionInfo", &e))?
        .slot_id();
    let mechanisms = gate
        .pkcs11()
        .get_mechanism_list(slot)
        .map_err(|e| failed("C_GetMechanismList", &e))?;
    let (mechanism, needed, per_algorithm): (Mechanism<'static>, MechanismType, Vec<Attribute>) =
        match algorithm {
            TokenKeyAlgorithm::EcdsaP256 => (
                Mechanism::EccKeyPairGen,
                MechanismType::ECC_KEY_PAIR_GEN,
                vec![Attribute::EcParams(P256_PARAMS.to_vec())],
            ),
            TokenKeyAlgorithm::EcdsaP384 => (
                Mechanism::EccKeyPairGen,
                MechanismType::ECC_KEY_PAIR_GEN,
                vec![Attribute::EcParams(P384_PARAMS.to_vec())],
            ),
            TokenKeyAlgorithm::Rsa2048 | TokenKeyAlgorithm::Rsa3072 | TokenKeyAlgorithm::Rsa4096 => {
                let bits: u64 = match algorithm {
                    TokenKeyAlgorithm::Rsa2048 => 2048,
                    TokenKeyAlgorithm::Rsa4096 => 4096,
                    _ => 3072,
                };
                (
                    Mechanism::RsaPkcsKeyPairGen,
                    MechanismType::RSA_PKCS_KEY_PAIR_GEN,
                    vec![
                        Attribute::ModulusBits(bits.into()),
                        Attribute::PublicExponent(vec![1, 0, 1]),
                    ],
                )
            }
            TokenKeyAlgorithm::Ed25519 => {
                if !mechanisms.contains(&MechanismType::EDDSA) {
                    return Err(HsmError::unsupported(
                        "the token does not offer EdDSA (CKM_EDDSA)",
                    ));
                }
                (
                    Mechanism::EccEdwardsKeyPairGen,
                    MechanismType::ECC_EDWARDS_KEY_PAIR_GEN,
                    vec![Attribute::EcParams(ED25519_PARAMS.to_vec())],
                )
            }
        };
    if !mechanisms.contains(&needed) {
        return Err(HsmError::unsupported(format!(
            "the token cannot generate {algorithm:?} keys"
        )));
    }
    let mut public = vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Id(id.clone()),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    public.extend(per_algorithm);
    // SoftHSM (and the standard) default CKA_SENSITIVE to false: say everything explicitly.
    let private = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Id(id),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    let (public_handle, _) = session
        .generate_key_pair(&mechanism, &public, &private)
        .map_err(|e| failed("C_GenerateKeyPair", &e))?;
    let attributes = session
        .get_attributes(
            public_handle,
            &[
                cryptoki::object::AttributeType::EcParams,
                cryptoki::object::AttributeType::EcPoint,
                cryptoki::object::AttributeType::Modulus,
                cryptoki::object::AttributeType::PublicExponent,
            ],
        )
        .map_err(|e| failed("C_GetAttributeValue", &e))?;
    let mut values = std::collections::HashMap::new();
    for a in attributes {
        match a {
            Attribute::EcParams(v) => values.insert("params", v),
            Attribute::EcPoint(v) => values.insert("point", v),
            Attribute::Modulus(v) => values.insert("n", v),
            Attribute::PublicExponent(v) => values.insert("e", v),
            _ => None,
        };
    }
    let spki = match (
        values.get("params"),
        values.get("point"),
        values.get("n"),
        values.get("e"),
    ) {
        (Some(params), Some(point), _, _) => encode::ec_spki(params, point),
        (_, _, Some(n), Some(e)) => encode::rsa_spki(n, e),
        _ => {
            return Err(HsmError::unsupported(
                "the token does not show the new public key",
            ));
        }
    }
    .map_err(|e| HsmError::unsupported(e.to_string()))?;
    Ok(spki)
}
