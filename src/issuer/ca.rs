//! Reading a CA issuer's key pair from its Secret and judging it. Pure.

use k8s_openapi::api::core::v1::Secret;

use crate::api::CaIssuer;
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
}

impl CaProblem {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::SecretNotFound { .. } => "SecretNotFound",
            Self::InvalidKeyPair { .. } => "InvalidKeyPair",
            Self::NotACa { .. } => "NotACA",
            Self::Expired { .. } => "Expired",
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
    let (Some(crt), Some(key)) = (get("tls.crt"), get("tls.key")) else {
        return Err(CaProblem::InvalidKeyPair {
            namespace,
            name,
            why: "tls.crt or tls.key is missing".into(),
        });
    };
    CaKeyPair::from_pem(crt, key, get("ca.crt"), issuer_urls(ca)).map_err(|e| CaProblem::InvalidKeyPair {
        namespace,
        name,
        why: e.to_string(),
    })
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
