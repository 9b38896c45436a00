//! PKCS#12 (RFC 7292) keystores and truststores, written and read through the `pkcs12` and
//! `cms` crates' typed structures. One encoder for the Certificate's `keystore.p12` and
//! `truststore.p12` and the Bundle's password-less truststore.
//!
//! Protected stores follow go-pkcs12's encoders, which cert-manager uses, profile by profile:
//! - `LegacyRC2`: certificates under pbeWithSHAAnd40BitRC2-CBC, the key under
//!   pbeWithSHAAnd3-KeyTripleDES-CBC, an HMAC-SHA-1 MAC; 2048 iterations, 8-byte salts.
//! - `LegacyDES`: certificates and key under pbeWithSHAAnd3-KeyTripleDES-CBC, HMAC-SHA-1 MAC.
//! - `Modern2023`: certificates and key under PBES2 (PBKDF2-HMAC-SHA-256, AES-256-CBC), an
//!   HMAC-SHA-256 MAC; 2048 iterations, 16-byte salts.
//!
//! A password-less store (the Bundle's) has neither encryption nor MAC. Every certificate bag of
//! a truststore carries Oracle's trusted-key-usage attribute, so that Java reads it as a
//! `trustedCertEntry`.

use aws_lc_rs::cipher::{
    AES_256, DecryptionContext, EncryptionContext, PaddedBlockDecryptingKey, PaddedBlockEncryptingKey,
    UnboundCipherKey,
};
use aws_lc_rs::{hmac, pbkdf2};
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, InnerIvInit, KeyIvInit};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::encrypted_data::EncryptedData;
use cms::enveloped_data::EncryptedContentInfo;
use const_oid::ObjectIdentifier;
use der::asn1::{BmpString, ContextSpecific, OctetString, SetOfVec};
use der::{Any, Decode, Encode};
use pkcs12::cert_type::CertBag;
use pkcs12::digest_info::DigestInfo;
use pkcs12::kdf::{Pkcs12KeyType, derive_key_utf8};
use pkcs12::mac_data::MacData;
use pkcs12::pbe_params::{EncryptedPrivateKeyInfo, Pbes2Params, Pbkdf2Params, Pkcs12PbeParams};
use pkcs12::pfx::{Pfx, Version};
use pkcs12::safe_bag::SafeBag;
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attribute;

use super::{KeystoreError, Profile, Protection, StoreContents, StoredCertificate};

/// PKCS#7 `data` and `encryptedData` content types.
const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const ID_ENCRYPTED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.6");
/// PKCS#9 friendlyName (the alias) and localKeyId (pairs a key with its certificate).
const FRIENDLY_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.20");
const LOCAL_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.21");
/// Oracle's "trusted key usage" bag attribute, which makes Java read a certificate bag as a
/// trusted certificate entry.
pub const JAVA_TRUSTED_KEY_USAGE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("2.16.840.1.113894.746875.1.1");
/// anyExtendedKeyUsage: trusted for every purpose.
const ANY_EXTENDED_KEY_USAGE: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37.0");
const PKCS8_SHROUDED_KEY_BAG: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.12.10.1.2");
const PBES2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.5.13");
const PBKDF2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.5.12");
const HMAC_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.2.9");
const AES_256_CBC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.42");
const SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const TRIPLE_DES: ObjectIdentifier = pkcs12::PKCS_12_PBE_WITH_SHAAND3_KEY_TRIPLE_DES_CBC;
const RC2_40: ObjectIdentifier = pkcs12::PKCS_12_PBEWITH_SHAAND40_BIT_RC2_CBC;

/// Iterations of the key derivation, as go-pkcs12 writes them.
const ITERATIONS: u32 = 2048;

/// Work a store read from elsewhere may ask for; more is refused rather than computed.
const MAX_ITERATIONS: u32 = 10_000_000;

/// The algorithms of a profile: for certificates, for the key, and the MAC's digest.
struct Algorithms {
    certificates: ObjectIdentifier,
    key: ObjectIdentifier,
    mac: Mac,
    salt_len: usize,
    mac_iterations: u32,
}

#[derive(Clone, Copy)]
enum Mac {
    Sha1,
    Sha256,
}

fn algorithms(profile: Profile) -> Algorithms {
    match profile {
        Profile::LegacyRc2 => Algorithms {
            certificates: RC2_40,
            key: TRIPLE_DES,
            mac: Mac::Sha1,
            salt_len: 8,
            mac_iterations: 1,
        },
        Profile::LegacyDes => Algorithms {
            certificates: TRIPLE_DES,
            key: TRIPLE_DES,
            mac: Mac::Sha1,
            salt_len: 8,
            mac_iterations: 1,
        },
        Profile::Modern2023 => Algorithms {
            certificates: PBES2,
            key: PBES2,
            mac: Mac::Sha256,
            salt_len: 16,
            mac_iterations: ITERATIONS,
        },
    }
}

fn random(len: usize) -> Result<Vec<u8>, KeystoreError> {
    let mut bytes = vec![0u8; len];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| KeystoreError::Crypto("no randomness"))?;
    Ok(bytes)
}

fn attribute(oid: ObjectIdentifier, value: Any) -> der::Result<Attribute> {
    Ok(Attribute {
        oid,
        values: SetOfVec::try_from(vec![value])?,
    })
}

fn friendly_name(alias: &str) -> der::Result<Attribute> {
    attribute(FRIENDLY_NAME, Any::encode_from(&BmpString::from_utf8(alias)?)?)
}

fn local_key_id(id: &[u8]) -> der::Result<Attribute> {
    attribute(LOCAL_KEY_ID, Any::encode_from(&OctetString::new(id)?)?)
}

/// A certificate bag with `attributes`.
fn cert_bag(der: &[u8], attributes: Vec<Attribute>) -> der::Result<SafeBag> {
    let bag = CertBag {
        cert_id: pkcs12::PKCS_12_X509_CERT_OID,
        cert_value: OctetString::new(der)?,
    };
    Ok(SafeBag {
        bag_id: pkcs12::PKCS_12_CERT_BAG_OID,
        bag_value: bag.to_der()?,
        bag_attributes: (!attributes.is_empty())
            .then(|| SetOfVec::try_from(attributes))
            .transpose()?,
    })
}

/// A certificate Java trusts, under `alias`.
fn trusted_bag(der: &[u8], alias: &str) -> der::Result<SafeBag> {
    cert_bag(
        der,
        vec![
            friendly_name(alias)?,
            attribute(JAVA_TRUSTED_KEY_USAGE, Any::encode_from(&ANY_EXTENDED_KEY_USAGE)?)?,
        ],
    )
}

/// `data` content info around `content`.
fn data(content: Vec<u8>) -> der::Result<ContentInfo> {
    Ok(ContentInfo {
        content_type: ID_DATA,
        content: Any::encode_from(&OctetString::new(content)?)?,
    })
}

/// Encrypts `plain` under `algorithm` with a fresh salt (and IV): the algorithm identifier
/// with its parameters, and the ciphertext.
fn encrypt(
    algorithm: ObjectIdentifier,
    protection: &Protection<'_>,
    salt_len: usize,
    plain: &[u8],
) -> Result<(AlgorithmIdentifierOwned, Vec<u8>), KeystoreError> {
    let salt = random(salt_len)?;
    let password = protection.password;
    if algorithm == PBES2 {
        let iv = random(16)?;
        let mut key = [0u8; 32];
        pbkdf2_sha256(password, &salt, ITERATIONS, &mut key);
        let params = Pbes2Params {
            kdf: AlgorithmIdentifierOwned {
                oid: PBKDF2,
                parameters: Some(Any::encode_from(&Pbkdf2Params {
                    salt: OctetString::new(salt)?,
                    iteration_count: ITERATIONS,
                    key_length: None,
                    prf: AlgorithmIdentifierOwned {
                        oid: HMAC_WITH_SHA256,
                        parameters: Some(Any::null()),
                    },
                })?),
            },
            encryption: AlgorithmIdentifierOwned {
                oid: AES_256_CBC,
                parameters: Some(Any::encode_from(&OctetString::new(iv.clone())?)?),
            },
        };
        let unbound = UnboundCipherKey::new(&AES_256, &key).map_err(|_| KeystoreError::Crypto("AES key"))?;
        let cipher =
            PaddedBlockEncryptingKey::cbc_pkcs7(unbound).map_err(|_| KeystoreError::Crypto("AES-CBC"))?;
        let iv: [u8; 16] = iv.try_into().map_err(|_| KeystoreError::Crypto("IV length"))?;
        let mut out = plain.to_vec();
        cipher
            .less_safe_encrypt(&mut out, EncryptionContext::Iv128(iv.into()))
            .map_err(|_| KeystoreError::Crypto("AES-CBC encryption"))?;
        let identifier = AlgorithmIdentifierOwned {
            oid: PBES2,
            parameters: Some(Any::encode_from(&params)?),
        };
        return Ok((identifier, out));
    }
    let iterations = ITERATIONS as i32;
    let out = legacy_cipher(algorithm, password, &salt, iterations, plain, true)?;
    let identifier = AlgorithmIdentifierOwned {
        oid: algorithm,
        parameters: Some(Any::encode_from(&Pkcs12PbeParams {
            salt: OctetString::new(salt)?,
            iterations,
        })?),
    };
    Ok((identifier, out))
}

fn pbkdf2_sha256(password: &str, salt: &[u8], iterations: u32, out: &mut [u8]) {
    let iterations = std::num::NonZeroU32::new(iterations.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        salt,
        password.as_bytes(),
        out,
    );
}

/// The PKCS#12 PBE ciphers (RFC 7292 appendix B/C): key and IV from the PKCS#12 KDF with
/// SHA-1, then 3DES or 40-bit RC2 in CBC mode.
fn legacy_cipher(
    algorithm: ObjectIdentifier,
    password: &str,
    salt: &[u8],
    iterations: i32,
    input: &[u8],
    encrypting: bool,
) -> Result<Vec<u8>, KeystoreError> {
    let derive = |kind, len| {
        derive_key_utf8::<sha1::Sha1>(password, salt, kind, iterations, len)
            .map_err(|_| KeystoreError::Crypto("the password is not text a keystore can hold"))
    };
    let iv = derive(Pkcs12KeyType::Iv, 8)?;
    let bad = |_| KeystoreError::Crypto("wrong password or damaged data");
    if algorithm == TRIPLE_DES {
        let key = derive(Pkcs12KeyType::EncryptionKey, 24)?;
        return match encrypting {
            true => Ok(cbc::Encryptor::<des::TdesEde3>::new_from_slices(&key, &iv)
                .map_err(|_| KeystoreError::Crypto("3DES key"))?
                .encrypt_padded_vec_mut::<Pkcs7>(input)),
            false => cbc::Decryptor::<des::TdesEde3>::new_from_slices(&key, &iv)
                .map_err(|_| KeystoreError::Crypto("3DES key"))?
                .decrypt_padded_vec_mut::<Pkcs7>(input)
                .map_err(bad),
        };
    }
    if algorithm == RC2_40 {
        let key = derive(Pkcs12KeyType::EncryptionKey, 5)?;
        let rc2 = rc2::Rc2::new_with_eff_key_len(&key, 40);
        let iv: [u8; 8] = iv.try_into().map_err(|_| KeystoreError::Crypto("IV length"))?;
        return match encrypting {
            true => Ok(cbc::Encryptor::<rc2::Rc2>::inner_iv_init(rc2, &iv.into())
                .encrypt_padded_vec_mut::<Pkcs7>(input)),
            false => cbc::Decryptor::<rc2::Rc2>::inner_iv_init(rc2, &iv.into())
                .decrypt_padded_vec_mut::<Pkcs7>(input)
                .map_err(bad),
        };
    }
    Err(KeystoreError::Unsupported(format!(
        "encryption algorithm {algorithm}"
    )))
}

/// Decrypts what [`encrypt`] (or another writer using the same algorithms) encrypted.
fn decrypt(
    algorithm: &AlgorithmIdentifierOwned,
    password: &str,
    input: &[u8],
) -> Result<Vec<u8>, KeystoreError> {
    let params = algorithm
        .parameters
        .as_ref()
        .ok_or_else(|| KeystoreError::Malformed("encryption without parameters".into()))?;
    if algorithm.oid == PBES2 {
        let params: Pbes2Params = params.decode_as()?;
        if params.kdf.oid != PBKDF2 || params.encryption.oid != AES_256_CBC {
            return Err(KeystoreError::Unsupported(format!(
                "PBES2 with {} and {}",
                params.kdf.oid, params.encryption.oid
            )));
        }
        let kdf: Pbkdf2Params = params
            .kdf
            .parameters
            .as_ref()
            .ok_or_else(|| KeystoreError::Malformed("PBKDF2 without parameters".into()))?
            .decode_as()?;
        if kdf.prf.oid != HMAC_WITH_SHA256 {
            return Err(KeystoreError::Unsupported(format!("PBKDF2 with {}", kdf.prf.oid)));
        }
        check_iterations(kdf.iteration_count)?;
        let iv: OctetString = params
            .encryption
            .parameters
            .as_ref()
            .ok_or_else(|| KeystoreError::Malformed("AES-CBC without an IV".into()))?
            .decode_as()?;
        let iv: [u8; 16] = iv
            .as_bytes()
            .try_into()
            .map_err(|_| KeystoreError::Malformed("an AES-CBC IV that is not 16 bytes".into()))?;
        let mut key = [0u8; 32];
        pbkdf2_sha256(password, kdf.salt.as_bytes(), kdf.iteration_count, &mut key);
        let unbound = UnboundCipherKey::new(&AES_256, &key).map_err(|_| KeystoreError::Crypto("AES key"))?;
        let cipher =
            PaddedBlockDecryptingKey::cbc_pkcs7(unbound).map_err(|_| KeystoreError::Crypto("AES-CBC"))?;
        let mut buffer = input.to_vec();
        let plain = cipher
            .decrypt(&mut buffer, DecryptionContext::Iv128(iv.into()))
            .map_err(|_| KeystoreError::Crypto("wrong password or damaged data"))?;
        return Ok(plain.to_vec());
    }
    let params: Pkcs12PbeParams = params.decode_as()?;
    check_iterations(u32::try_from(params.iterations).unwrap_or(u32::MAX))?;
    legacy_cipher(
        algorithm.oid,
        password,
        params.salt.as_bytes(),
        params.iterations,
        input,
        false,
    )
}

fn check_iterations(iterations: u32) -> Result<(), KeystoreError> {
    match iterations <= MAX_ITERATIONS {
        true => Ok(()),
        false => Err(KeystoreError::Unsupported(format!(
            "{iterations} key derivation iterations (at most {MAX_ITERATIONS} are read)"
        ))),
    }
}

/// `encryptedData` content info holding `bags` encrypted under `algorithm`.
fn encrypted_data(
    bags: &Vec<SafeBag>,
    algorithm: ObjectIdentifier,
    protection: &Protection<'_>,
    salt_len: usize,
) -> Result<ContentInfo, KeystoreError> {
    let (content_enc_alg, ciphertext) = encrypt(algorithm, protection, salt_len, &bags.to_der()?)?;
    let encrypted = EncryptedData {
        version: CmsVersion::V0,
        enc_content_info: EncryptedContentInfo {
            content_type: ID_DATA,
            content_enc_alg,
            encrypted_content: Some(OctetString::new(ciphertext)?),
        },
        unprotected_attrs: None,
    };
    Ok(ContentInfo {
        content_type: ID_ENCRYPTED_DATA,
        content: Any::encode_from(&encrypted)?,
    })
}

/// The HMAC of `content` keyed from the password through the PKCS#12 KDF.
fn mac(
    kind: Mac,
    password: &str,
    salt: &[u8],
    iterations: i32,
    content: &[u8],
) -> Result<Vec<u8>, KeystoreError> {
    let bad = |_| KeystoreError::Crypto("the password is not text a keystore can hold");
    let (key, algorithm) = match kind {
        Mac::Sha1 => (
            derive_key_utf8::<sha1::Sha1>(password, salt, Pkcs12KeyType::Mac, iterations, 20).map_err(bad)?,
            hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        ),
        Mac::Sha256 => (
            derive_key_utf8::<sha2::Sha256>(password, salt, Pkcs12KeyType::Mac, iterations, 32)
                .map_err(bad)?,
            hmac::HMAC_SHA256,
        ),
    };
    Ok(hmac::sign(&hmac::Key::new(algorithm, &key), content)
        .as_ref()
        .to_vec())
}

/// The PFX around `contents`, with a MAC when protected.
fn pfx(contents: Vec<ContentInfo>, protection: Option<&Protection<'_>>) -> Result<Vec<u8>, KeystoreError> {
    let auth_safe = contents.to_der()?;
    let mac_data = match protection {
        None => None,
        Some(protection) => {
            let algorithms = algorithms(protection.profile);
            let salt = random(algorithms.salt_len)?;
            let iterations = algorithms.mac_iterations as i32;
            let digest = mac(algorithms.mac, protection.password, &salt, iterations, &auth_safe)?;
            let oid = match algorithms.mac {
                Mac::Sha1 => SHA1,
                Mac::Sha256 => SHA256,
            };
            Some(MacData {
                mac: DigestInfo {
                    algorithm: AlgorithmIdentifierOwned {
                        oid,
                        parameters: Some(Any::null()),
                    },
                    digest: OctetString::new(digest)?,
                },
                mac_salt: OctetString::new(salt)?,
                iterations,
            })
        }
    };
    Ok(Pfx {
        version: Version::V3,
        auth_safe: data(auth_safe)?,
        mac_data,
    }
    .to_der()?)
}

/// A truststore of `certificates` (DER), each under its alias: password-less without
/// `protection` (the Bundle's), else encrypted and MAC-protected as the profile says.
pub fn truststore(
    certificates: &[(String, Vec<u8>)],
    protection: Option<&Protection<'_>>,
) -> Result<Vec<u8>, KeystoreError> {
    let bags = certificates
        .iter()
        .map(|(alias, der)| trusted_bag(der, alias))
        .collect::<der::Result<Vec<_>>>()?;
    let content = match protection {
        None => data(bags.to_der()?)?,
        Some(protection) => {
            let algorithms = algorithms(protection.profile);
            encrypted_data(&bags, algorithms.certificates, protection, algorithms.salt_len)?
        }
    };
    pfx(vec![content], protection)
}

/// A keystore: the private key (PKCS#8 DER) under `alias` with `chain` (leaf first, DER), then
/// the CA certificates `cas` for building the chain, as go-pkcs12's `Encode` writes it.
pub fn keystore(
    key_pkcs8: &[u8],
    chain: &[Vec<u8>],
    cas: &[Vec<u8>],
    alias: &str,
    protection: &Protection<'_>,
) -> Result<Vec<u8>, KeystoreError> {
    let leaf = chain
        .first()
        .ok_or_else(|| KeystoreError::Malformed("a keystore needs a certificate".into()))?;
    let key_id = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, leaf);
    let key_id = key_id.as_ref();
    let mut bags = vec![cert_bag(
        leaf,
        vec![friendly_name(alias)?, local_key_id(key_id)?],
    )?];
    for der in chain.iter().skip(1).chain(cas) {
        if der != leaf {
            bags.push(cert_bag(der, Vec::new())?);
        }
    }
    let algorithms = algorithms(protection.profile);
    let (encryption_algorithm, encrypted) =
        encrypt(algorithms.key, protection, algorithms.salt_len, key_pkcs8)?;
    let shrouded = EncryptedPrivateKeyInfo {
        encryption_algorithm,
        encrypted_data: OctetString::new(encrypted)?,
    };
    let key_bag = SafeBag {
        bag_id: PKCS8_SHROUDED_KEY_BAG,
        bag_value: shrouded.to_der()?,
        bag_attributes: Some(SetOfVec::try_from(vec![
            friendly_name(alias)?,
            local_key_id(key_id)?,
        ])?),
    };
    let contents = vec![
        encrypted_data(&bags, algorithms.certificates, protection, algorithms.salt_len)?,
        data(vec![key_bag].to_der()?)?,
    ];
    pfx(contents, Some(protection))
}

/// Reads a PKCS#12 store with `password` (`None`: a password-less store): its certificates
/// and keys. The MAC, when there is one, is verified first.
pub fn read(der: &[u8], password: Option<&str>) -> Result<StoreContents, KeystoreError> {
    let pfx = Pfx::from_der(der)?;
    if pfx.auth_safe.content_type != ID_DATA {
        return Err(KeystoreError::Unsupported(
            "a public-key protected PKCS#12 file".into(),
        ));
    }
    let auth_safe: OctetString = pfx.auth_safe.content.decode_as()?;
    let auth_safe = auth_safe.as_bytes();
    let password = password.unwrap_or_default();
    if let Some(mac_data) = &pfx.mac_data {
        let kind = match mac_data.mac.algorithm.oid {
            SHA1 => Mac::Sha1,
            SHA256 => Mac::Sha256,
            other => return Err(KeystoreError::Unsupported(format!("MAC digest {other}"))),
        };
        check_iterations(u32::try_from(mac_data.iterations).unwrap_or(u32::MAX))?;
        let expected = mac(
            kind,
            password,
            mac_data.mac_salt.as_bytes(),
            mac_data.iterations,
            auth_safe,
        )?;
        if expected != mac_data.mac.digest.as_bytes() {
            return Err(KeystoreError::WrongPassword);
        }
    }
    let mut contents = StoreContents {
        mac: pfx.mac_data.is_some(),
        ..StoreContents::default()
    };
    for info in Vec::<ContentInfo>::from_der(auth_safe)? {
        let bags = match info.content_type {
            ID_DATA => info.content.decode_as::<OctetString>()?.as_bytes().to_vec(),
            ID_ENCRYPTED_DATA => {
                let encrypted: EncryptedData = info.content.decode_as()?;
                let content = encrypted.enc_content_info;
                let ciphertext = content
                    .encrypted_content
                    .ok_or_else(|| KeystoreError::Malformed("encryptedData without content".into()))?;
                contents.encrypted = true;
                decrypt(&content.content_enc_alg, password, ciphertext.as_bytes())?
            }
            other => return Err(KeystoreError::Unsupported(format!("content type {other}"))),
        };
        for bag in Vec::<SafeBag>::from_der(&bags)? {
            read_bag(&bag, password, &mut contents)?;
        }
    }
    Ok(contents)
}

fn read_bag(bag: &SafeBag, password: &str, contents: &mut StoreContents) -> Result<(), KeystoreError> {
    let attributes: Vec<&Attribute> = bag.bag_attributes.iter().flat_map(|a| a.iter()).collect();
    let value = |oid| {
        attributes
            .iter()
            .find(|a| a.oid == oid)
            .and_then(|a| a.values.get(0))
    };
    let alias = value(FRIENDLY_NAME)
        .and_then(|v| v.decode_as::<BmpString>().ok())
        .map(|s| s.to_string());
    let key_id = value(LOCAL_KEY_ID)
        .and_then(|v| v.decode_as::<OctetString>().ok())
        .map(|s| s.as_bytes().to_vec());
    if bag.bag_id == pkcs12::PKCS_12_CERT_BAG_OID {
        let bag_value = ContextSpecific::<CertBag>::from_der(&bag.bag_value)?.value;
        contents.certificates.push(StoredCertificate {
            alias,
            der: bag_value.cert_value.as_bytes().to_vec(),
            trusted: value(JAVA_TRUSTED_KEY_USAGE).is_some(),
            key_id,
        });
    } else if bag.bag_id == PKCS8_SHROUDED_KEY_BAG {
        let shrouded = ContextSpecific::<EncryptedPrivateKeyInfo>::from_der(&bag.bag_value)?.value;
        let key = decrypt(
            &shrouded.encryption_algorithm,
            password,
            shrouded.encrypted_data.as_bytes(),
        )?;
        contents.keys.push(super::StoredKey {
            alias,
            pkcs8: key,
            key_id,
        });
    }
    Ok(())
}
