//! One revoked serial of one issuer: what a CRL entry and an OCSP `revoked` status say.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use x509_cert::ext::pkix::CrlReason;

use super::RevocationError;
use crate::pki::serial_hex;

/// RFC 5280 §5.3.1 reason codes, by their RFC names (`keyCompromise`, ...). Code 7 is unused
/// in the RFC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RevocationReason {
    #[default]
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    CertificateHold,
    RemoveFromCrl,
    PrivilegeWithdrawn,
    AaCompromise,
}

const REASON_NAMES: [(RevocationReason, &str); 10] = [
    (RevocationReason::Unspecified, "unspecified"),
    (RevocationReason::KeyCompromise, "keyCompromise"),
    (RevocationReason::CaCompromise, "cACompromise"),
    (RevocationReason::AffiliationChanged, "affiliationChanged"),
    (RevocationReason::Superseded, "superseded"),
    (RevocationReason::CessationOfOperation, "cessationOfOperation"),
    (RevocationReason::CertificateHold, "certificateHold"),
    (RevocationReason::RemoveFromCrl, "removeFromCRL"),
    (RevocationReason::PrivilegeWithdrawn, "privilegeWithdrawn"),
    (RevocationReason::AaCompromise, "aACompromise"),
];

impl RevocationReason {
    /// The RFC 5280 name.
    pub fn name(self) -> &'static str {
        REASON_NAMES
            .iter()
            .find(|(reason, _)| *reason == self)
            .map_or("unspecified", |(_, name)| name)
    }

    /// The reason of an RFC 5280 reasonCode value; `None` for 7 and unknown codes.
    pub fn from_code(code: u8) -> Option<Self> {
        let reason = match code {
            0 => RevocationReason::Unspecified,
            1 => RevocationReason::KeyCompromise,
            2 => RevocationReason::CaCompromise,
            3 => RevocationReason::AffiliationChanged,
            4 => RevocationReason::Superseded,
            5 => RevocationReason::CessationOfOperation,
            6 => RevocationReason::CertificateHold,
            8 => RevocationReason::RemoveFromCrl,
            9 => RevocationReason::PrivilegeWithdrawn,
            10 => RevocationReason::AaCompromise,
            _ => return None,
        };
        Some(reason)
    }

    pub(crate) fn crl_reason(self) -> CrlReason {
        match self {
            RevocationReason::Unspecified => CrlReason::Unspecified,
            RevocationReason::KeyCompromise => CrlReason::KeyCompromise,
            RevocationReason::CaCompromise => CrlReason::CaCompromise,
            RevocationReason::AffiliationChanged => CrlReason::AffiliationChanged,
            RevocationReason::Superseded => CrlReason::Superseded,
            RevocationReason::CessationOfOperation => CrlReason::CessationOfOperation,
            RevocationReason::CertificateHold => CrlReason::CertificateHold,
            RevocationReason::RemoveFromCrl => CrlReason::RemoveFromCRL,
            RevocationReason::PrivilegeWithdrawn => CrlReason::PrivilegeWithdrawn,
            RevocationReason::AaCompromise => CrlReason::AaCompromise,
        }
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses an RFC 5280 reason name. Case-insensitive, since people type `keycompromise` and
/// openssl prints `Key Compromise`: spaces and dashes are ignored too.
impl FromStr for RevocationReason {
    type Err = RevocationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let folded: String = text
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '_'))
            .collect::<String>()
            .to_ascii_lowercase();
        REASON_NAMES
            .iter()
            .find(|(_, name)| name.to_ascii_lowercase() == folded)
            .map(|(reason, _)| *reason)
            .ok_or_else(|| RevocationError::UnknownReason(text.chars().take(64).collect()))
    }
}

/// A revoked certificate of one issuer, by serial.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RevokedSerial {
    /// Lower-case hex without leading zero octets, as `CertificateInfo::serial_hex`.
    pub serial_hex: String,
    pub revoked_at: jiff::Timestamp,
    pub reason: RevocationReason,
}

impl RevokedSerial {
    /// A record from its text form, as a person or a GitOps repository writes it: the serial
    /// in hex (colons allowed, as `openssl x509 -serial` and browsers print it), an RFC 3339
    /// instant and an optional reason name.
    pub fn parse(serial: &str, revoked_at: &str, reason: Option<&str>) -> Result<Self, RevocationError> {
        let magnitude = parse_serial(serial)?;
        let revoked_at = revoked_at
            .trim()
            .parse()
            .map_err(|_| RevocationError::InvalidRevocationTime(revoked_at.chars().take(64).collect()))?;
        let reason = match reason {
            Some(name) => name.parse()?,
            None => RevocationReason::Unspecified,
        };
        Ok(Self {
            serial_hex: serial_hex(&magnitude),
            revoked_at,
            reason,
        })
    }

    /// The serial's big-endian magnitude octets.
    pub(crate) fn serial_octets(&self) -> Result<Vec<u8>, RevocationError> {
        parse_serial(&self.serial_hex)
    }
}

/// Where an OCSP answer looks a serial up: a list is scanned, a map by `serial_hex` (what the
/// PKI endpoint keeps, for 10,000 revocations and more) is indexed.
pub trait RevokedSerials {
    /// The record of `serial_hex` (as `RevokedSerial::serial_hex`), if revoked.
    fn find(&self, serial_hex: &str) -> Option<&RevokedSerial>;
}

impl RevokedSerials for [RevokedSerial] {
    fn find(&self, serial_hex: &str) -> Option<&RevokedSerial> {
        self.iter().find(|r| r.serial_hex == serial_hex)
    }
}

impl<const N: usize> RevokedSerials for [RevokedSerial; N] {
    fn find(&self, serial_hex: &str) -> Option<&RevokedSerial> {
        self.as_slice().find(serial_hex)
    }
}

impl RevokedSerials for Vec<RevokedSerial> {
    fn find(&self, serial_hex: &str) -> Option<&RevokedSerial> {
        self.as_slice().find(serial_hex)
    }
}

impl RevokedSerials for HashMap<String, RevokedSerial> {
    fn find(&self, serial_hex: &str) -> Option<&RevokedSerial> {
        self.get(serial_hex)
    }
}

/// RFC 5280 §4.1.2.2: at most 20 octets.
const MAX_SERIAL_OCTETS: usize = 20;

/// A serial number in hex (upper or lower case, `:` between octets allowed, a `0x` prefix
/// allowed) as its big-endian octets, leading zeros removed. Refuses empty, non-hex, zero and
/// over-long (more than 20 octets) serials.
pub fn parse_serial(text: &str) -> Result<Vec<u8>, RevocationError> {
    let invalid = |reason| RevocationError::InvalidSerial {
        serial: text.chars().take(64).collect(),
        reason,
    };
    let trimmed = text.trim();
    let trimmed = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
        .unwrap_or(trimmed);
    let digits: Vec<u8> = trimmed.bytes().filter(|b| *b != b':').collect();
    if digits.is_empty() {
        return Err(invalid("empty"));
    }
    let mut nibbles = Vec::with_capacity(digits.len());
    for digit in digits {
        let value = char::from(digit)
            .to_digit(16)
            .ok_or_else(|| invalid("not hexadecimal"))?;
        nibbles.push(value as u8);
    }
    // An odd count has an implicit leading zero nibble.
    if nibbles.len() % 2 == 1 {
        nibbles.insert(0, 0);
    }
    let octets: Vec<u8> = nibbles
        .chunks_exact(2)
        .map(|pair| match pair {
            [high, low] => (high << 4) | low,
            _ => 0,
        })
        .skip_while(|octet| *octet == 0)
        .collect();
    if octets.is_empty() {
        return Err(invalid("zero is not a certificate serial"));
    }
    // A serial with the top bit set gains a zero octet in DER; RFC 5280 counts that octet.
    let encoded_len = octets.len() + usize::from(octets.first().is_some_and(|b| b & 0x80 != 0));
    if encoded_len > MAX_SERIAL_OCTETS {
        return Err(invalid("longer than 20 octets"));
    }
    Ok(octets)
}
