//! The CRL of a CA issuer (RFC 5280 §5): version 2, the CA's DN byte for byte as issuer,
//! thisUpdate = now, nextUpdate = now + 24 h, one entry per revoked serial with its reason,
//! cRLNumber and authorityKeyIdentifier, signed by the CA key.

use der::Sequence;
use der::asn1::{AnyRef, OctetString, Uint};
use spki::AlgorithmIdentifierOwned;
use x509_cert::Version;
use x509_cert::crl::RevokedCert;
use x509_cert::ext::Extensions;
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, CrlNumber};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Time;

use super::{RevocationError, RevocationReason, RevokedSerial, encoding_failed};
use crate::pki::asn1;
use crate::pki::{CaKeyPair, Signer, encode_pem, serial_hex};

/// How long a CRL is valid: its nextUpdate is thisUpdate plus this (SPEC "Revocation").
pub const CRL_VALIDITY: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// A signed CRL and the facts its re-signing depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCrl {
    pub der: Vec<u8>,
    pub pem: String,
    pub number: u64,
    pub this_update: jiff::Timestamp,
    pub next_update: jiff::Timestamp,
}

/// RFC 5280 TBSCertList, as `x509_cert::crl::TbsCertList` but with the issuer kept as the CA's
/// DER (see `pki::asn1::raw`).
#[derive(Sequence)]
struct TbsCertList<'a> {
    version: Version,
    signature: AlgorithmIdentifierOwned,
    issuer: AnyRef<'a>,
    this_update: Time,
    next_update: Option<Time>,
    revoked_certificates: Option<Vec<RevokedCert>>,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    crl_extensions: Option<Extensions>,
}

/// Signs the CRL number `number` of `ca` over `revoked`, valid from `now` for `CRL_VALIDITY`.
/// Entries are sorted by serial so the same list always gives the same CRL body.
pub fn build_crl(
    ca: &CaKeyPair,
    revoked: &[RevokedSerial],
    number: u64,
    now: jiff::Timestamp,
) -> Result<SignedCrl, RevocationError> {
    let identity = ca.identity()?;
    let this_update = asn1::to_second(now);
    let next_update = this_update + CRL_VALIDITY;

    let mut sorted: Vec<&RevokedSerial> = revoked.iter().collect();
    sorted.sort_by(|a, b| (a.serial_hex.len(), &a.serial_hex).cmp(&(b.serial_hex.len(), &b.serial_hex)));
    sorted.dedup_by(|a, b| a.serial_hex == b.serial_hex);
    let mut entries = Vec::with_capacity(sorted.len());
    for record in sorted {
        entries.push(entry(record)?);
    }

    let number_octets = number.to_be_bytes();
    let extensions = vec![
        asn1::extension(
            &CrlNumber(Uint::new(&number_octets).map_err(encoding_failed("CRL number"))?),
            false,
        )?,
        asn1::extension(
            &AuthorityKeyIdentifier {
                key_identifier: Some(
                    OctetString::new(identity.key_id).map_err(encoding_failed("authority key identifier"))?,
                ),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            },
            false,
        )?,
    ];
    let tbs = TbsCertList {
        version: Version::V2,
        signature: ca.key.signature_algorithm(),
        issuer: asn1::raw(&identity.subject_der, "CA subject name")?,
        this_update: asn1::time(this_update)?,
        next_update: Some(asn1::time(next_update)?),
        // RFC 5280 §5.1.2.6: absent, not empty, when nothing is revoked.
        revoked_certificates: (!entries.is_empty()).then_some(entries),
        crl_extensions: Some(extensions),
    };
    let der = asn1::sign(&tbs, &ca.key)?;
    let pem = encode_pem("X509 CRL", der.clone());
    Ok(SignedCrl {
        der,
        pem,
        number,
        this_update,
        next_update,
    })
}

/// What a published CRL says, read back from its DER (the ConfigMap that holds it is the only
/// state the controller needs to decide the next one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedCrl {
    pub number: u64,
    pub this_update: jiff::Timestamp,
    pub next_update: jiff::Timestamp,
    /// The entries, sorted by serial as `build_crl` writes them.
    pub revoked: Vec<RevokedSerial>,
}

impl PublishedCrl {
    /// Reads a CRL `build_crl` (or anyone) wrote. `None` when it does not parse, has no
    /// nextUpdate or a CRL number beyond 64 bits: such a CRL is simply replaced.
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let (_, crl) = x509_parser::parse_x509_crl(der).ok()?;
        let number = u64::try_from(crl.crl_number()?).ok()?;
        let timestamp = |t: x509_parser::time::ASN1Time| jiff::Timestamp::from_second(t.timestamp()).ok();
        let mut revoked = Vec::new();
        for entry in crl.iter_revoked_certificates() {
            revoked.push(RevokedSerial {
                serial_hex: serial_hex(entry.raw_serial()),
                revoked_at: timestamp(entry.revocation_date)?,
                reason: entry
                    .reason_code()
                    .and_then(|(_, code)| RevocationReason::from_code(code.0))
                    .unwrap_or_default(),
            });
        }
        sort_by_serial(&mut revoked);
        Some(Self {
            number,
            this_update: timestamp(crl.last_update())?,
            next_update: timestamp(crl.next_update()?)?,
            revoked,
        })
    }
}

impl PublishedCrl {
    /// Reads a CRL as `from_der` does, only when `ca` signed it: issued under the CA's name and
    /// its signature verified with the CA's key. What a ConfigMap holds is served and trusted
    /// only so: anyone who may write that ConfigMap could otherwise drop entries from it.
    pub fn signed_by(der: &[u8], ca: &crate::pki::CertificateInfo) -> Option<Self> {
        let (_, crl) = x509_parser::parse_x509_crl(der).ok()?;
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca.der).ok()?;
        if crl.issuer().as_raw() != ca_cert.subject().as_raw() {
            return None;
        }
        crl.verify_signature(ca_cert.public_key()).ok()?;
        Self::from_der(der)
    }
}

/// Why a CA issuer needs a new CRL now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrlDue {
    /// None is published, or the published one cannot be read.
    Missing,
    /// A serial was revoked (or a record changed) since the published CRL was signed.
    ListChanged,
    /// The published CRL has reached half its life (`crl_resign_at`).
    HalfLife,
}

/// Whether `published` must be replaced at `now` for the records `revoked`, and why.
pub fn crl_due(
    published: Option<&PublishedCrl>,
    revoked: &[RevokedSerial],
    now: jiff::Timestamp,
) -> Option<CrlDue> {
    let Some(published) = published else {
        return Some(CrlDue::Missing);
    };
    let mut wanted: Vec<RevokedSerial> = revoked
        .iter()
        .map(|r| RevokedSerial {
            revoked_at: asn1::to_second(r.revoked_at),
            ..r.clone()
        })
        .collect();
    sort_by_serial(&mut wanted);
    if wanted != published.revoked {
        Some(CrlDue::ListChanged)
    } else if now >= crl_resign_at(published.this_update, published.next_update) {
        Some(CrlDue::HalfLife)
    } else {
        None
    }
}

/// The number of the next CRL: above the published one, and never below the current Unix
/// second, so numbers keep increasing even when the stored CRL was lost (RFC 5280 §5.2.3
/// asks only that they increase).
pub fn next_crl_number(published: Option<&PublishedCrl>, now: jiff::Timestamp) -> u64 {
    let floor = u64::try_from(now.as_second()).unwrap_or(0);
    published.map_or(floor, |p| p.number.saturating_add(1).max(floor))
}

/// Sorted by serial as a number, one entry per serial.
fn sort_by_serial(records: &mut Vec<RevokedSerial>) {
    records.sort_by(|a, b| (a.serial_hex.len(), &a.serial_hex).cmp(&(b.serial_hex.len(), &b.serial_hex)));
    records.dedup_by(|a, b| a.serial_hex == b.serial_hex);
}

/// When a CRL valid from `this_update` to `next_update` is re-signed: at half its life (SPEC),
/// so a relying party that fetched it late still holds a valid one while the next is published.
pub fn crl_resign_at(this_update: jiff::Timestamp, next_update: jiff::Timestamp) -> jiff::Timestamp {
    let life = next_update.duration_since(this_update);
    this_update + life / 2
}

fn entry(record: &RevokedSerial) -> Result<RevokedCert, RevocationError> {
    let serial = record.serial_octets()?;
    // RFC 5280 §5.3.1: reasonCode unspecified SHOULD be absent.
    let crl_entry_extensions = match record.reason {
        RevocationReason::Unspecified => None,
        reason => Some(vec![asn1::extension(&reason.crl_reason(), false)?]),
    };
    Ok(RevokedCert {
        serial_number: SerialNumber::new(&serial).map_err(encoding_failed("revoked serial"))?,
        revocation_date: asn1::time(asn1::to_second(record.revoked_at))?,
        crl_entry_extensions,
    })
}
