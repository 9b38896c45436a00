//! Key usages and extended key usages, by their cert-manager names.

use const_oid::ObjectIdentifier;
use const_oid::db::rfc5280;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A key usage or extended key usage, spelled as cert-manager spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Usage {
    #[serde(rename = "signing")]
    Signing,
    #[serde(rename = "digital signature")]
    DigitalSignature,
    #[serde(rename = "content commitment")]
    ContentCommitment,
    #[serde(rename = "key encipherment")]
    KeyEncipherment,
    #[serde(rename = "key agreement")]
    KeyAgreement,
    #[serde(rename = "data encipherment")]
    DataEncipherment,
    #[serde(rename = "cert sign")]
    CertSign,
    #[serde(rename = "crl sign")]
    CrlSign,
    #[serde(rename = "encipher only")]
    EncipherOnly,
    #[serde(rename = "decipher only")]
    DecipherOnly,
    #[serde(rename = "any")]
    Any,
    #[serde(rename = "server auth")]
    ServerAuth,
    #[serde(rename = "client auth")]
    ClientAuth,
    #[serde(rename = "code signing")]
    CodeSigning,
    #[serde(rename = "email protection")]
    EmailProtection,
    #[serde(rename = "s/mime")]
    Smime,
    #[serde(rename = "ipsec end system")]
    IpsecEndSystem,
    #[serde(rename = "ipsec tunnel")]
    IpsecTunnel,
    #[serde(rename = "ipsec user")]
    IpsecUser,
    #[serde(rename = "timestamping")]
    Timestamping,
    #[serde(rename = "ocsp signing")]
    OcspSigning,
    #[serde(rename = "microsoft sgc")]
    MicrosoftSgc,
    #[serde(rename = "netscape sgc")]
    NetscapeSgc,
}

/// Where a usage lives in a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UsageEncoding {
    /// Bit number in the KeyUsage BIT STRING (RFC 5280 §4.2.1.3).
    KeyUsage(u8),
    /// An ExtendedKeyUsage purpose OID.
    Extended(ObjectIdentifier),
}

pub(crate) const KU_DIGITAL_SIGNATURE: u8 = 0;
pub(crate) const KU_CONTENT_COMMITMENT: u8 = 1;
pub(crate) const KU_KEY_ENCIPHERMENT: u8 = 2;
pub(crate) const KU_DATA_ENCIPHERMENT: u8 = 3;
pub(crate) const KU_KEY_AGREEMENT: u8 = 4;
pub(crate) const KU_KEY_CERT_SIGN: u8 = 5;
pub(crate) const KU_CRL_SIGN: u8 = 6;
pub(crate) const KU_ENCIPHER_ONLY: u8 = 7;
pub(crate) const KU_DECIPHER_ONLY: u8 = 8;

const EKU_ANY: ObjectIdentifier = rfc5280::ANY_EXTENDED_KEY_USAGE;
const EKU_SERVER_AUTH: ObjectIdentifier = rfc5280::ID_KP_SERVER_AUTH;
const EKU_CLIENT_AUTH: ObjectIdentifier = rfc5280::ID_KP_CLIENT_AUTH;
const EKU_CODE_SIGNING: ObjectIdentifier = rfc5280::ID_KP_CODE_SIGNING;
const EKU_EMAIL_PROTECTION: ObjectIdentifier = rfc5280::ID_KP_EMAIL_PROTECTION;
const EKU_IPSEC_END_SYSTEM: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.5");
const EKU_IPSEC_TUNNEL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.6");
const EKU_IPSEC_USER: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.7");
const EKU_TIMESTAMPING: ObjectIdentifier = rfc5280::ID_KP_TIME_STAMPING;
const EKU_OCSP_SIGNING: ObjectIdentifier = rfc5280::ID_KP_OCSP_SIGNING;
const EKU_MICROSOFT_SGC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.311.10.3.3");
const EKU_NETSCAPE_SGC: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.113730.4.1");

/// Every ExtendedKeyUsage purpose we write and read back.
const EXTENDED: [(ObjectIdentifier, Usage); 12] = [
    (EKU_ANY, Usage::Any),
    (EKU_SERVER_AUTH, Usage::ServerAuth),
    (EKU_CLIENT_AUTH, Usage::ClientAuth),
    (EKU_CODE_SIGNING, Usage::CodeSigning),
    (EKU_EMAIL_PROTECTION, Usage::EmailProtection),
    (EKU_IPSEC_END_SYSTEM, Usage::IpsecEndSystem),
    (EKU_IPSEC_TUNNEL, Usage::IpsecTunnel),
    (EKU_IPSEC_USER, Usage::IpsecUser),
    (EKU_TIMESTAMPING, Usage::Timestamping),
    (EKU_OCSP_SIGNING, Usage::OcspSigning),
    (EKU_MICROSOFT_SGC, Usage::MicrosoftSgc),
    (EKU_NETSCAPE_SGC, Usage::NetscapeSgc),
];

/// Every KeyUsage bit, in bit order.
const KEY_USAGE_BITS: [(u8, Usage); 9] = [
    (KU_DIGITAL_SIGNATURE, Usage::DigitalSignature),
    (KU_CONTENT_COMMITMENT, Usage::ContentCommitment),
    (KU_KEY_ENCIPHERMENT, Usage::KeyEncipherment),
    (KU_DATA_ENCIPHERMENT, Usage::DataEncipherment),
    (KU_KEY_AGREEMENT, Usage::KeyAgreement),
    (KU_KEY_CERT_SIGN, Usage::CertSign),
    (KU_CRL_SIGN, Usage::CrlSign),
    (KU_ENCIPHER_ONLY, Usage::EncipherOnly),
    (KU_DECIPHER_ONLY, Usage::DecipherOnly),
];

impl Usage {
    /// The name a certificate reads back as. cert-manager has two spellings for two bits:
    /// `signing` is digitalSignature and `s/mime` is emailProtection, so a certificate issued
    /// for `signing` parses as `digital signature`. Compare requested and parsed usages through
    /// this.
    pub fn canonical(self) -> Usage {
        match self {
            Usage::Signing => Usage::DigitalSignature,
            Usage::Smime => Usage::EmailProtection,
            other => other,
        }
    }

    pub(crate) fn encoding(self) -> UsageEncoding {
        let canonical = self.canonical();
        if let Some((bit, _)) = KEY_USAGE_BITS.iter().find(|(_, u)| *u == canonical) {
            return UsageEncoding::KeyUsage(*bit);
        }
        match EXTENDED.iter().find(|(_, u)| *u == canonical) {
            Some((oid, _)) => UsageEncoding::Extended(*oid),
            // Unreachable: every canonical usage is in one of the two tables.
            None => UsageEncoding::Extended(EKU_ANY),
        }
    }

    pub(crate) fn from_key_usage_bit(bit: u8) -> Option<Usage> {
        KEY_USAGE_BITS.iter().find(|(b, _)| *b == bit).map(|(_, u)| *u)
    }

    /// The usage of an ExtendedKeyUsage purpose, given the OID's content octets.
    pub(crate) fn from_extended_oid(oid: &[u8]) -> Option<Usage> {
        EXTENDED
            .iter()
            .find(|(known, _)| known.as_bytes() == oid)
            .map(|(_, u)| *u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Usage; 23] = [
        Usage::Signing,
        Usage::DigitalSignature,
        Usage::ContentCommitment,
        Usage::KeyEncipherment,
        Usage::KeyAgreement,
        Usage::DataEncipherment,
        Usage::CertSign,
        Usage::CrlSign,
        Usage::EncipherOnly,
        Usage::DecipherOnly,
        Usage::Any,
        Usage::ServerAuth,
        Usage::ClientAuth,
        Usage::CodeSigning,
        Usage::EmailProtection,
        Usage::Smime,
        Usage::IpsecEndSystem,
        Usage::IpsecTunnel,
        Usage::IpsecUser,
        Usage::Timestamping,
        Usage::OcspSigning,
        Usage::MicrosoftSgc,
        Usage::NetscapeSgc,
    ];

    #[test]
    fn every_usage_reads_back_as_its_canonical_name() {
        for usage in ALL {
            let back = match usage.encoding() {
                UsageEncoding::KeyUsage(bit) => Usage::from_key_usage_bit(bit),
                UsageEncoding::Extended(oid) => Usage::from_extended_oid(oid.as_bytes()),
            };
            assert_eq!(back, Some(usage.canonical()), "{usage:?}");
        }
    }
}
