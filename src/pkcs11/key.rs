//! A CA key on a token: found, judged (the Issuer's Ready checks) and used to sign.

use std::sync::{Arc, Mutex};

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use spki::AlgorithmIdentifierOwned;

use super::encode;
use super::error::{Class, HsmError, HsmReason};
use super::pool::{CallError, TokenPool, p11};
use crate::pki::{
    KeyAlgorithm, PkiError, Signer, key_spec_from_spki, public_key_bits, same_public_key,
    signature_algorithm_for,
};

/// Which key on the token: its label (`object=`) and/or id (`id=`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeySelector {
    pub label: Option<String>,
    pub id: Option<Vec<u8>>,
}

impl std::fmt::Display for KeySelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(label) = &self.label {
            parts.push(format!("object={label:?}"));
        }
        if let Some(id) = &self.id {
            parts.push(format!("id={}", crate::pki::lower_hex(id)));
        }
        write!(f, "{}", parts.join(" "))
    }
}

impl KeySelector {
    fn template(&self, class: ObjectClass) -> Vec<Attribute> {
        let mut template = vec![Attribute::Class(class)];
        if let Some(label) = &self.label {
            template.push(Attribute::Label(label.as_bytes().to_vec()));
        }
        if let Some(id) = &self.id {
            template.push(Attribute::Id(id.clone()));
        }
        template
    }
}

/// How the token is asked to sign, from the CA certificate's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    /// CKM_ECDSA over a digest computed here; the token returns raw r‖s.
    Ecdsa { p384: bool },
    /// CKM_SHA256_RSA_PKCS over the message (`on_token`), else CKM_RSA_PKCS over a DigestInfo.
    Rsa { on_token: bool },
    /// CKM_EDDSA (Ed25519) over the message.
    Ed25519,
}

impl Scheme {
    fn mechanism(self) -> Mechanism<'static> {
        match self {
            Self::Ecdsa { .. } => Mechanism::Ecdsa,
            Self::Rsa { on_token: true } => Mechanism::Sha256RsaPkcs,
            Self::Rsa { on_token: false } => Mechanism::RsaPkcs,
            Self::Ed25519 => Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Ed25519)),
        }
    }

    fn verification(self) -> &'static dyn VerificationAlgorithm {
        match self {
            Self::Ecdsa { p384: false } => &signature::ECDSA_P256_SHA256_ASN1,
            Self::Ecdsa { p384: true } => &signature::ECDSA_P384_SHA384_ASN1,
            Self::Rsa { .. } => &signature::RSA_PKCS1_2048_8192_SHA256,
            Self::Ed25519 => &signature::ED25519,
        }
    }

    /// What the token signs for `message`.
    fn payload(self, message: &[u8]) -> Result<Vec<u8>, PkiError> {
        use aws_lc_rs::digest::{SHA256, SHA384, digest};
        Ok(match self {
            Self::Ecdsa { p384: false } => digest(&SHA256, message).as_ref().to_vec(),
            Self::Ecdsa { p384: true } => digest(&SHA384, message).as_ref().to_vec(),
            Self::Rsa { on_token: true } | Self::Ed25519 => message.to_vec(),
            Self::Rsa { on_token: false } => encode::digest_info_sha256(digest(&SHA256, message).as_ref())?,
        })
    }

    /// The token's signature as X.509 carries it.
    fn finish(self, raw: Vec<u8>) -> Result<Vec<u8>, PkiError> {
        match self {
            Self::Ecdsa { p384 } => encode::ecdsa_raw_to_der(&raw, if p384 { 48 } else { 32 }),
            _ => Ok(raw),
        }
    }
}

/// The key's handle, valid within one generation of the module.
#[derive(Default)]
struct Handle(Mutex<Option<(ObjectHandle, u64)>>);

impl Handle {
    fn get(&self, generation: u64) -> Option<ObjectHandle> {
        match *self.0.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((handle, g)) if g == generation => Some(handle),
            _ => None,
        }
    }

    fn set(&self, handle: ObjectHandle, generation: u64) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((handle, generation));
    }
}

/// A CA private key on a token, checked against its certificate.
pub struct Pkcs11Key {
    pool: Arc<TokenPool>,
    selector: KeySelector,
    /// The key reference for messages and audit lines (the URI, which never carries a PIN).
    reference: String,
    /// The CA certificate's SubjectPublicKeyInfo: every signature is verified against it.
    spki: Vec<u8>,
    algorithm: AlgorithmIdentifierOwned,
    scheme: Scheme,
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Key")
            .field("reference", &self.reference)
            .finish_non_exhaustive()
    }
}

/// The one private key `selector` names, or why there is not exactly one.
fn find_private(session: &Session, selector: &KeySelector) -> Result<ObjectHandle, CallError> {
    let found = session
        .find_objects(&selector.template(ObjectClass::PRIVATE_KEY))
        .map_err(p11("C_FindObjects"))?;
    match found.as_slice() {
        [handle] => Ok(*handle),
        [] => Err(HsmError::new(
            HsmReason::KeyNotFound,
            format!("no private key {selector} on the token"),
        )
        .into()),
        many => Err(HsmError::new(
            HsmReason::KeyAmbiguous,
            format!(
                "{} private keys match {selector} on the token; name one by object= and id=",
                many.len()
            ),
        )
        .into()),
    }
}

/// Reads one attribute's value, None when the token leaves it out.
fn attribute(attributes: &[Attribute], pick: impl Fn(&Attribute) -> Option<Vec<u8>>) -> Option<Vec<u8>> {
    attributes.iter().find_map(pick)
}

/// The public key on the token as a SubjectPublicKeyInfo: RSA from the private key's modulus,
/// EC and EdDSA from the public-key object with the same id (private ones carry no point).
fn token_spki(
    session: &Session,
    private: ObjectHandle,
    selector: &KeySelector,
    key_type: KeyType,
) -> Result<Option<Vec<u8>>, CallError> {
    if key_type == KeyType::RSA {
        let attributes = session
            .get_attributes(private, &[AttributeType::Modulus, AttributeType::PublicExponent])
            .map_err(p11("C_GetAttributeValue"))?;
        let modulus = attribute(&attributes, |a| match a {
            Attribute::Modulus(v) => Some(v.clone()),
            _ => None,
        });
        let exponent = attribute(&attributes, |a| match a {
            Attribute::PublicExponent(v) => Some(v.clone()),
            _ => None,
        });
        return match (modulus, exponent) {
            (Some(n), Some(e)) => Ok(Some(
                encode::rsa_spki(&n, &e).map_err(|e| HsmError::unsupported(e.to_string()))?,
            )),
            _ => Ok(None),
        };
    }
    let id = session
        .get_attributes(private, &[AttributeType::Id])
        .map_err(p11("C_GetAttributeValue"))?
        .into_iter()
        .find_map(|a| match a {
            Attribute::Id(id) if !id.is_empty() => Some(id),
            _ => None,
        });
    let public_selector = match id {
        Some(id) => KeySelector {
            label: None,
            id: Some(id),
        },
        None => selector.clone(),
    };
    let publics = session
        .find_objects(&public_selector.template(ObjectClass::PUBLIC_KEY))
        .map_err(p11("C_FindObjects"))?;
    let [public] = publics.as_slice() else {
        return Ok(None);
    };
    let attributes = session
        .get_attributes(*public, &[AttributeType::EcParams, AttributeType::EcPoint])
        .map_err(p11("C_GetAttributeValue"))?;
    let params = attribute(&attributes, |a| match a {
        Attribute::EcParams(v) => Some(v.clone()),
        _ => None,
    });
    let point = attribute(&attributes, |a| match a {
        Attribute::EcPoint(v) => Some(v.clone()),
        _ => None,
    });
    match (params, point) {
        (Some(params), Some(point)) => Ok(Some(
            encode::ec_spki(&params, &point).map_err(|e| HsmError::unsupported(e.to_string()))?,
        )),
        _ => Ok(None),
    }
}

/// The public key of the one private key `selector` names, as the token holds it (`ca csr`:
/// a request for a key whose certificate is not at hand). Blocking.
pub fn token_public_key(pool: &TokenPool, selector: KeySelector) -> Result<Vec<u8>, HsmError> {
    pool.call(move |session, _| {
        let private = find_private(session, &selector)?;
        let key_type = session
            .get_attributes(private, &[AttributeType::KeyType])
            .map_err(p11("C_GetAttributeValue"))?
            .into_iter()
            .find_map(|a| match a {
                Attribute::KeyType(t) => Some(t),
                _ => None,
            })
            .ok_or_else(|| HsmError::unsupported("the token does not say the key's type"))?;
        token_spki(session, private, &selector, key_type)?.ok_or_else(|| {
            HsmError::unsupported(format!(
                "the token shows no public key for {selector} (an EC key's point is on its public-key object, with the same id)"
            ))
            .into()
        })
    })
    .map_err(CallError::into_hsm)
}

impl Pkcs11Key {
    /// Finds the key `selector` names on the pool's token and runs the Ready checks in order:
    /// the token answers and takes the PIN (HSMUnavailable, HSMLoginFailed), exactly one key
    /// (KeyNotFound, KeyAmbiguous), it cannot leave the token (KeyExtractable), it is the key of
    /// `certificate_spki` (KeyMismatch), and the token offers the mechanism it needs.
    /// Blocking.
    pub fn open(
        pool: Arc<TokenPool>,
        selector: KeySelector,
        reference: String,
        certificate_spki: &[u8],
    ) -> Result<Self, HsmError> {
        let spec = key_spec_from_spki(certificate_spki).map_err(|e| HsmError::unsupported(e.to_string()))?;
        let algorithm = signature_algorithm_for(spec);
        let scheme_wanted = match spec.algorithm {
            KeyAlgorithm::Ecdsa => Scheme::Ecdsa {
                p384: spec.size == 384,
            },
            KeyAlgorithm::Rsa => Scheme::Rsa { on_token: true },
            KeyAlgorithm::Ed25519 => Scheme::Ed25519,
        };
        let handle = Arc::new(Handle::default());
        let certificate_spki = certificate_spki.to_vec();
        let job_selector = selector.clone();
        let job_handle = handle.clone();
        let job_spki = certificate_spki.clone();
        let scheme = pool
            .call(move |session, generation| {
                let private = find_private(session, &job_selector)?;
                let attributes = session
                    .get_attributes(
                        private,
                        &[
                            AttributeType::KeyType,
                            AttributeType::Sensitive,
                            AttributeType::Extractable,
                            AttributeType::AlwaysAuthenticate,
                        ],
                    )
                    .map_err(p11("C_GetAttributeValue"))?;
                let mut key_type = None;
                let (mut sensitive, mut extractable, mut always_authenticate) = (None, None, false);
                for a in &attributes {
                    match a {
                        Attribute::KeyType(t) => key_type = Some(*t),
                        Attribute::Sensitive(b) => sensitive = Some(*b),
                        Attribute::Extractable(b) => extractable = Some(*b),
                        Attribute::AlwaysAuthenticate(b) => always_authenticate = *b,
                        _ => {}
                    }
                }
                if sensitive != Some(true) || extractable != Some(false) {
                    return Err(HsmError::new(
                        HsmReason::KeyExtractable,
                        format!(
                            "the private key {job_selector} can leave the token (CKA_SENSITIVE {}, CKA_EXTRACTABLE {}): a CA key must be sensitive and not extractable",
                            flag(sensitive),
                            flag(extractable)
                        ),
                    )
                    .into());
                }
                if always_authenticate {
                    return Err(HsmError::unsupported(format!(
                        "the private key {job_selector} wants the PIN again for every signature (CKA_ALWAYS_AUTHENTICATE), which certkeeper does not do"
                    ))
                    .into());
                }
                let key_type = key_type.ok_or_else(|| HsmError::unsupported("the token does not say the key's type"))?;
                let expected = match scheme_wanted {
                    Scheme::Ecdsa { .. } => KeyType::EC,
                    Scheme::Rsa { .. } => KeyType::RSA,
                    Scheme::Ed25519 => KeyType::EC_EDWARDS,
                };
                if key_type != expected {
                    return Err(HsmError::new(
                        HsmReason::KeyMismatch,
                        format!("the private key {job_selector} is a {key_type} key; the CA certificate's is not"),
                    )
                    .into());
                }
                match token_spki(session, private, &job_selector, key_type)? {
                    Some(spki) if same_public_key(&spki, &job_spki) => {}
                    Some(_) => {
                        return Err(HsmError::new(
                            HsmReason::KeyMismatch,
                            format!("the public key of {job_selector} on the token is not the CA certificate's"),
                        )
                        .into());
                    }
                    // No public key to compare: the signature check below decides.
                    None => {}
                }
                job_handle.set(private, generation);
                Ok(scheme_wanted)
            })
            .map_err(CallError::into_hsm)?;
        let mut key = Self {
            pool,
            selector,
            reference,
            spki: certificate_spki,
            algorithm,
            scheme,
            handle,
        };
        key.choose_mechanism()?;
        // A signature that verifies against the certificate settles KeyMismatch for keys with
        // no public key on the token, and proves the mechanism works.
        key.sign_checked(b"certkeeper: does this key sign for its certificate?")
            .map_err(|e| match e {
                PkiError::Hsm(e) => e,
                other => HsmError::new(HsmReason::KeyMismatch, other.to_string()),
            })?;
        Ok(key)
    }

    /// RSA: whether the token hashes (CKM_SHA256_RSA_PKCS) or only pads (CKM_RSA_PKCS);
    /// ECDSA and EdDSA: that it offers the mechanism at all.
    fn choose_mechanism(&mut self) -> Result<(), HsmError> {
        let scheme = self.scheme;
        let mechanisms = self
            .pool
            .call(move |session, _| {
                let slot = session
                    .get_session_info()
                    .map_err(p11("C_GetSessionInfo"))?
                    .slot_id();
                Ok(slot)
            })
            .map_err(CallError::into_hsm)
            .and_then(|slot| {
                let gate = self.pool.module.enter()?;
                gate.pkcs11()
                    .get_mechanism_list(slot)
                    .map_err(|e| super::error::failed("C_GetMechanismList", &e))
            })?;
        let has = |m: MechanismType| mechanisms.contains(&m);
        self.scheme = match scheme {
            Scheme::Rsa { .. } if has(MechanismType::SHA256_RSA_PKCS) => Scheme::Rsa { on_token: true },
            Scheme::Rsa { .. } if has(MechanismType::RSA_PKCS) => Scheme::Rsa { on_token: false },
            Scheme::Ecdsa { .. } if has(MechanismType::ECDSA) => scheme,
            Scheme::Ed25519 if has(MechanismType::EDDSA) => scheme,
            _ => {
                return Err(HsmError::unsupported(format!(
                    "the token does not offer the mechanism a {} key signs with",
                    match scheme {
                        Scheme::Ecdsa { .. } => "ECDSA (CKM_ECDSA)",
                        Scheme::Rsa { .. } => "RSA (CKM_SHA256_RSA_PKCS or CKM_RSA_PKCS)",
                        Scheme::Ed25519 => "Ed25519 (CKM_EDDSA)",
                    }
                )));
            }
        };
        Ok(())
    }

    /// The key reference (its URI).
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// Whether the key is still there and usable: finds it again on a pooled session.
    /// Blocking; used by the issuer's periodic check.
    pub fn check(&self) -> Result<(), HsmError> {
        let selector = self.selector.clone();
        let handle = self.handle.clone();
        self.with_retry(move || {
            let selector = selector.clone();
            let handle = handle.clone();
            move |session: &Session, generation| {
                let private = find_private(session, &selector)?;
                handle.set(private, generation);
                Ok(())
            }
        })
    }

    /// Runs the job `make` builds, once more after a session error (on a fresh session) or a
    /// token error (after re-initialising the module).
    fn with_retry<T: Send + 'static, J>(&self, make: impl Fn() -> J) -> Result<T, HsmError>
    where
        J: FnOnce(&Session, u64) -> Result<T, CallError> + Send + 'static,
    {
        let generation = self.pool.module.generation();
        match self.pool.call(make()) {
            Ok(value) => Ok(value),
            Err(e) => match e.class() {
                Some(Class::Session) => self.pool.call(make()).map_err(CallError::into_hsm),
                Some(Class::Token) => {
                    self.pool.module.reinitialise(generation)?;
                    self.pool.call(make()).map_err(CallError::into_hsm)
                }
                // A key found before and gone now: most often its token went away under a
                // logged-in session (SoftHSM then finds nothing rather than failing). Only a
                // fresh look after re-initialising tells a removed token from a deleted key.
                None if matches!(&e, CallError::Hsm(h) if h.reason == HsmReason::KeyNotFound) => {
                    self.pool.module.reinitialise(generation)?;
                    self.pool.call(make()).map_err(CallError::into_hsm)
                }
                _ => Err(e.into_hsm()),
            },
        }
    }

    /// Signs on the token and checks the signature against the certificate's public key.
    fn sign_checked(&self, message: &[u8]) -> Result<Vec<u8>, PkiError> {
        let scheme = self.scheme;
        let payload = Arc::new(scheme.payload(message)?);
        let selector = self.selector.clone();
        let handle = self.handle.clone();
        let raw = self.with_retry(move || {
            let payload = payload.clone();
            let selector = selector.clone();
            let handle = handle.clone();
            move |session: &Session, generation| {
                let private = match handle.get(generation) {
                    Some(h) => h,
                    None => {
                        let h = find_private(session, &selector)?;
                        handle.set(h, generation);
                        h
                    }
                };
                match session.sign(&scheme.mechanism(), private, &payload) {
                    Err(e) if matches!(super::error::classify(&e), Class::Handle) => {
                        // The handle went stale: find the key again, once.
                        let h = find_private(session, &selector)?;
                        handle.set(h, generation);
                        session
                            .sign(&scheme.mechanism(), h, &payload)
                            .map_err(p11("C_Sign"))
                    }
                    other => other.map_err(p11("C_Sign")),
                }
            }
        })?;
        let signature = scheme.finish(raw)?;
        let bits = public_key_bits(&self.spki).ok_or_else(|| {
            PkiError::InvalidCertificate("the CA certificate's public key cannot be read".into())
        })?;
        UnparsedPublicKey::new(scheme.verification(), bits)
            .verify(message, &signature)
            .map_err(|_| {
                PkiError::Hsm(HsmError::new(
                    HsmReason::KeyMismatch,
                    format!(
                        "the token's signature with {} does not verify against the CA certificate's public key",
                        self.reference
                    ),
                ))
            })?;
        Ok(signature)
    }
}

fn flag(value: Option<bool>) -> &'static str {
    match value {
        Some(true) => "true",
        Some(false) => "false",
        None => "not given",
    }
}

impl Signer for Pkcs11Key {
    fn spki(&self) -> &[u8] {
        &self.spki
    }

    fn signature_algorithm(&self) -> AlgorithmIdentifierOwned {
        self.algorithm.clone()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, PkiError> {
        self.sign_checked(message)
    }

    fn backend(&self) -> &'static str {
        "pkcs11"
    }
}
