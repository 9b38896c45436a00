//! What can go wrong with a key on a token, as the Issuer's Ready reasons name it, and how
//! each PKCS#11 return value is answered.

use cryptoki::error::{Error as P11Error, RvError};

/// Why an HSM-held CA key cannot sign; each maps to an Issuer Ready reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HsmReason {
    /// The module does not load or initialise, the token is absent, or it did not answer.
    Unavailable,
    /// The PIN was refused (or is locked, or differs from the one the token is logged in with).
    LoginFailed,
    KeyNotFound,
    KeyAmbiguous,
    /// The private key may leave the token: not CKA_SENSITIVE, or CKA_EXTRACTABLE.
    KeyExtractable,
    /// The key on the token is not the key of the CA certificate.
    KeyMismatch,
    /// A reference or key certkeeper cannot use (URI, module, mechanism, key kind).
    Unsupported,
    /// A namespaced Issuer, without `--pkcs11-allow-namespaced-issuers`.
    NotAllowed,
}

impl HsmReason {
    /// The Issuer's Ready condition reason.
    pub fn condition_reason(self) -> &'static str {
        match self {
            Self::Unavailable => "HSMUnavailable",
            Self::LoginFailed => "HSMLoginFailed",
            Self::KeyNotFound => "KeyNotFound",
            Self::KeyAmbiguous => "KeyAmbiguous",
            Self::KeyExtractable => "KeyExtractable",
            Self::KeyMismatch => "KeyMismatch",
            Self::Unsupported => "InvalidKeyPair",
            Self::NotAllowed => "HSMNotAllowed",
        }
    }
}

/// An HSM failure with what failed, never a PIN or key bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HsmError {
    pub reason: HsmReason,
    pub message: String,
}

impl HsmError {
    pub fn new(reason: HsmReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(HsmReason::Unavailable, message)
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(HsmReason::Unsupported, message)
    }
}

/// How a failed PKCS#11 call is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// The PIN was refused: no retry with that PIN for a minute.
    LoginRefused,
    /// The session is gone or confused: drop it, open another, log in, retry once.
    Session,
    /// An object handle went stale: find the key again, retry once.
    Handle,
    /// The token or device is gone: re-initialise the module, retry once.
    Token,
    /// The key or mechanism is misconfigured: retrying cannot help.
    Permanent,
}

/// The class of a `cryptoki` error (docs/pkcs11-research.md, "Error classes").
pub fn classify(error: &P11Error) -> Class {
    let P11Error::Pkcs11(rv, _) = error else {
        // Library loading, missing symbols: the module is not usable.
        return Class::Token;
    };
    match rv {
        RvError::PinIncorrect
        | RvError::PinInvalid
        | RvError::PinLenRange
        | RvError::PinExpired
        | RvError::PinLocked => Class::LoginRefused,
        RvError::SessionHandleInvalid
        | RvError::SessionClosed
        | RvError::UserNotLoggedIn
        | RvError::OperationActive
        | RvError::OperationNotInitialized
        | RvError::SessionCount => Class::Session,
        RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid => Class::Handle,
        RvError::KeyFunctionNotPermitted
        | RvError::KeyTypeInconsistent
        | RvError::MechanismInvalid
        | RvError::MechanismParamInvalid
        | RvError::DataLenRange
        | RvError::KeySizeRange => Class::Permanent,
        // TokenNotPresent, TokenNotRecognized, DeviceRemoved, DeviceError, SlotIdInvalid,
        // GeneralError, CryptokiNotInitialized, FunctionFailed, DeviceMemory and the rest.
        _ => Class::Token,
    }
}

/// `what` failed with `error`, as an HsmError of the reason its class implies.
pub fn failed(what: &str, error: &P11Error) -> HsmError {
    let reason = match classify(error) {
        Class::LoginRefused => HsmReason::LoginFailed,
        Class::Permanent => HsmReason::Unsupported,
        Class::Session | Class::Handle | Class::Token => HsmReason::Unavailable,
    };
    HsmError::new(reason, format!("{what}: {}", describe(error)))
}

/// A short description: the function and the return value's name (`C_Sign: PinIncorrect`),
/// not cryptoki's paragraph-long prose.
pub fn describe(error: &P11Error) -> String {
    match error {
        P11Error::Pkcs11(rv, function) => format!("C_{function:?} returned {rv:?}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::context::Function;

    fn rv(rv: RvError) -> P11Error {
        P11Error::Pkcs11(rv, Function::Sign)
    }

    #[test]
    fn return_values_are_answered_by_their_class() {
        assert_eq!(classify(&rv(RvError::PinIncorrect)), Class::LoginRefused);
        assert_eq!(classify(&rv(RvError::PinLocked)), Class::LoginRefused);
        assert_eq!(classify(&rv(RvError::SessionHandleInvalid)), Class::Session);
        assert_eq!(classify(&rv(RvError::OperationNotInitialized)), Class::Session);
        assert_eq!(classify(&rv(RvError::ObjectHandleInvalid)), Class::Handle);
        assert_eq!(classify(&rv(RvError::TokenNotPresent)), Class::Token);
        assert_eq!(classify(&rv(RvError::DeviceRemoved)), Class::Token);
        assert_eq!(classify(&rv(RvError::GeneralError)), Class::Token);
        assert_eq!(classify(&rv(RvError::KeyFunctionNotPermitted)), Class::Permanent);
        assert_eq!(classify(&P11Error::NullFunctionPointer), Class::Token);
        assert_eq!(
            failed("C_Login", &rv(RvError::PinIncorrect)).reason,
            HsmReason::LoginFailed
        );
        assert_eq!(
            failed("C_Sign", &rv(RvError::DeviceRemoved)).reason,
            HsmReason::Unavailable
        );
    }
}
