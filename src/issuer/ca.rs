//! Reading a CA issuer's key pair from its Secret and judging it. Pure.

use k8s_openapi::api::core::v1::Secret;

use crate::api::CaIssuer;
use crate::pkcs11::{HsmError, HsmKey, HsmReason, PinRef, Pkcs11Uri};
use crate::pki::{CaFacts, CaKeyPair, IssuerUrls, PkiError};

/// Why a CA issuer cannot sign; `reason()` is the Issuer's Ready condition reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CaProblem {
    #[error("Secret {namespace}/{name} does not exist")]
    SecretNotFound { namespace: String, name: String },
    #[error("Secret {namespace}/{name} does not hold a valid key pair: {why}")]
    InvalidKeyPair {
        namespace: String,
        name: String,
        why: String,
    },
    #[error("the certificate in Secret {namespace}/{name} is not a CA: {why}")]
    NotACa {
        namespace: String,
        name: String,
        why: String,
    },
    #[error("the CA certificate in Secret {namespace}/{name} expired at {not_after}")]
    Expired {
        namespace: String,
        name: String,
        not_after: jiff::Timestamp,
    },
    /// The CA key is on a token, and the token (or the reference to it) is the trouble.
    #[error("the CA key of Secret {namespace}/{name}: {message}")]
    Hsm {
        namespace: String,
        name: String,
        reason: &'static str,
        message: String,
    },
}

impl CaProblem {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::SecretNotFound { .. } => "SecretNotFound",
            Self::InvalidKeyPair { .. } => "InvalidKeyPair",
            Self::NotACa { .. } => "NotACA",
            Self::Expired { .. } => "Expired",
            Self::Hsm { reason, .. } => reason,
        }
    }

    /// An HSM failure for the CA Secret `namespace/name`.
    pub fn hsm(namespace: &str, name: &str, error: &HsmError) -> Self {
        Self::Hsm {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            reason: error.reason.condition_reason(),
            message: error.message.clone(),
        }
    }

    /// Whether a token is the trouble, one that may come back on its own: looked at again
    /// within seconds, not minutes. A refusal that only a change of the issuer or of the
    /// controller's flags can lift (`HSMNotAllowed`, a module or URI certkeeper cannot use) is
    /// looked at again like any other broken issuer.
    pub fn token_may_return(&self) -> bool {
        match self {
            Self::Hsm { reason, .. } => ![
                HsmReason::NotAllowed.condition_reason(),
                HsmReason::Unsupported.condition_reason(),
            ]
            .contains(reason),
            _ => false,
        }
    }
}

/// The URLs a CA issuer writes into what it signs.
pub fn issuer_urls(ca: &CaIssuer) -> IssuerUrls {
    IssuerUrls {
        crl_distribution_points: ca.crl_distribution_points.clone().unwrap_or_default(),
        ocsp_servers: ca.ocsp_servers.clone().unwrap_or_default(),
        issuing_certificate_urls: ca.issuing_certificate_urls.clone().unwrap_or_default(),
    }
}

/// Parses and validates the CA Secret `secret` (None: it does not exist) at `now`.
pub fn load_ca(
    namespace: &str,
    ca: &CaIssuer,
    secret: Option<&Secret>,
    now: jiff::Timestamp,
) -> Result<(CaKeyPair, CaFacts), CaProblem> {
    let pair = parse_ca(namespace, ca, secret)?;
    let facts = validate_ca(namespace, &ca.secret_name, &pair, now)?;
    Ok((pair, facts))
}

/// Reads the key pair of the CA Secret `secret` (None: it does not exist), without judging it.
pub fn parse_ca(namespace: &str, ca: &CaIssuer, secret: Option<&Secret>) -> Result<CaKeyPair, CaProblem> {
    let name = ca.secret_name.clone();
    let namespace = namespace.to_owned();
    let Some(secret) = secret else {
        return Err(CaProblem::SecretNotFound { namespace, name });
    };
    let get = |key: &str| crate::certificate::secret::data(secret, key);
    if let Some(pkcs11) = &ca.pkcs11 {
        return parse_hsm_ca(&namespace, &name, ca, pkcs11, secret);
    }
    let (Some(crt), Some(key)) = (get("tls.crt"), get("tls.key")) else {
        return Err(CaProblem::InvalidKeyPair {
            namespace,
            name,
            why: "tls.crt or tls.key is missing".into(),
        });
    };
    let reference = format!("secret:{namespace}/{name}");
    CaKeyPair::from_pem(crt, key, get("ca.crt"), issuer_urls(ca))
        .map(|pair| pair.with_key_reference(reference))
        .map_err(|e| CaProblem::InvalidKeyPair {
            namespace,
            name,
            why: e.to_string(),
        })
}

/// The CA of a Secret holding only certificates, its key on the token `pkcs11.uri` names. An
/// empty `tls.key` counts as none (a `kubernetes.io/tls` Secret must have the key, and a
/// Secret of that type is followed by the controller's watch); any other `tls.key` is refused:
/// the key belongs on the token.
fn parse_hsm_ca(
    namespace: &str,
    name: &str,
    ca: &CaIssuer,
    pkcs11: &crate::api::CaPkcs11,
    secret: &Secret,
) -> Result<CaKeyPair, CaProblem> {
    let invalid = |why: String| CaProblem::InvalidKeyPair {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        why,
    };
    let get = |key: &str| crate::certificate::secret::data(secret, key);
    if get("tls.key").is_some_and(|key| !key.is_empty()) {
        return Err(invalid(
            "the Secret holds a tls.key beside spec.ca.pkcs11: a CA whose key is on a token keeps \
             no key in its Secret; remove tls.key (or leave it empty)"
                .into(),
        ));
    }
    let Some(crt) = get("tls.crt") else {
        return Err(invalid("tls.crt is missing".into()));
    };
    let uri: Pkcs11Uri = pkcs11
        .uri
        .parse()
        .map_err(|e: crate::pkcs11::uri::UriError| invalid(e.to_string()))?;
    uri.check_key_reference().map_err(|e| invalid(e.to_string()))?;
    let pin = PinRef {
        namespace: namespace.to_owned(),
        name: pkcs11.pin_secret_ref.name.clone(),
        key: pkcs11.pin_secret_ref.key.clone(),
    };
    let reference = uri.to_string();
    CaKeyPair::with_hsm_key(crt, get("ca.crt"), issuer_urls(ca), |cert| {
        HsmKey::new(uri, pin, &cert.public_key_der)
    })
    .map(|pair| pair.with_key_reference(reference))
    .map_err(|e| invalid(e.to_string()))
}

/// Judges a CA key pair read from the Secret `namespace/name`: a CA, not expired at `now`.
pub fn validate_ca(
    namespace: &str,
    name: &str,
    pair: &CaKeyPair,
    now: jiff::Timestamp,
) -> Result<CaFacts, CaProblem> {
    let (namespace, name) = (namespace.to_owned(), name.to_owned());
    match pair.validate(now) {
        Ok(facts) => Ok(facts),
        Err(PkiError::Expired(not_after)) => Err(CaProblem::Expired {
            namespace,
            name,
            not_after,
        }),
        Err(PkiError::NotACa(why)) => Err(CaProblem::NotACa { namespace, name, why }),
        Err(e) => Err(CaProblem::InvalidKeyPair {
            namespace,
            name,
            why: e.to_string(),
        }),
    }
}
