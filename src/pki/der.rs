//! The few DER encodings certificates and key files need, written and read by hand.
//!
//! Certificates are assembled here rather than through rcgen because rcgen keeps a distinguished
//! name in a map: it cannot repeat an attribute (two `O=` values), cannot copy an issuer DN
//! byte for byte from an existing CA (multi-valued RDNs, `DC=` pairs, string types) and has no
//! Authority Information Access extension. Everything here is plain TLV arithmetic.

use super::PkiError;

pub(crate) const TAG_BOOLEAN: u8 = 0x01;
pub(crate) const TAG_INTEGER: u8 = 0x02;
pub(crate) const TAG_BIT_STRING: u8 = 0x03;
pub(crate) const TAG_OCTET_STRING: u8 = 0x04;
pub(crate) const TAG_NULL: u8 = 0x05;
pub(crate) const TAG_OID: u8 = 0x06;
pub(crate) const TAG_UTF8_STRING: u8 = 0x0c;
pub(crate) const TAG_PRINTABLE_STRING: u8 = 0x13;
pub(crate) const TAG_UTC_TIME: u8 = 0x17;
pub(crate) const TAG_GENERALIZED_TIME: u8 = 0x18;
pub(crate) const TAG_SEQUENCE: u8 = 0x30;
pub(crate) const TAG_SET: u8 = 0x31;

/// Tag of a context-specific `[n]` field; `constructed` for explicit tags and nested structures.
pub(crate) const fn context(n: u8, constructed: bool) -> u8 {
    0x80 | if constructed { 0x20 } else { 0 } | n
}

/// One tag-length-value element.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let len = content.len();
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

/// A constructed element whose content is the concatenation of `parts`.
pub(crate) fn constructed(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    tlv(tag, &parts.concat())
}

pub(crate) fn sequence(parts: &[&[u8]]) -> Vec<u8> {
    constructed(TAG_SEQUENCE, parts)
}

pub(crate) fn set(parts: &[&[u8]]) -> Vec<u8> {
    constructed(TAG_SET, parts)
}

pub(crate) fn null() -> Vec<u8> {
    tlv(TAG_NULL, &[])
}

pub(crate) fn boolean(value: bool) -> Vec<u8> {
    tlv(TAG_BOOLEAN, &[if value { 0xff } else { 0x00 }])
}

pub(crate) fn octet_string(content: &[u8]) -> Vec<u8> {
    tlv(TAG_OCTET_STRING, content)
}

/// A BIT STRING made of whole bytes.
pub(crate) fn bit_string(content: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(content.len() + 1);
    body.push(0);
    body.extend_from_slice(content);
    tlv(TAG_BIT_STRING, &body)
}

/// A non-negative INTEGER from big-endian magnitude bytes, minimally encoded.
pub(crate) fn unsigned_integer(magnitude: &[u8]) -> Vec<u8> {
    let skip = magnitude.iter().take_while(|b| **b == 0).count();
    let significant = magnitude.get(skip..).unwrap_or_default();
    let mut body = Vec::with_capacity(significant.len() + 1);
    // A set top bit would read as negative.
    if significant.first().is_none_or(|b| b & 0x80 != 0) {
        body.push(0);
    }
    body.extend_from_slice(significant);
    tlv(TAG_INTEGER, &body)
}

/// The content octets of an OBJECT IDENTIFIER (no tag, no length).
pub(crate) fn oid_content(arcs: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    let (first, rest) = match arcs {
        [a, b, rest @ ..] => (a.saturating_mul(40).saturating_add(*b), rest),
        [a] => (a.saturating_mul(40), &[][..]),
        [] => return out,
    };
    for arc in std::iter::once(first).chain(rest.iter().copied()) {
        // Base-128, most significant group first, continuation bit on all but the last.
        let mut groups = Vec::with_capacity(10);
        let mut value = arc;
        loop {
            groups.push((value & 0x7f) as u8);
            value >>= 7;
            if value == 0 {
                break;
            }
        }
        let n = groups.len();
        out.extend(
            groups
                .iter()
                .rev()
                .enumerate()
                .map(|(i, b)| if i + 1 < n { b | 0x80 } else { *b }),
        );
    }
    out
}

pub(crate) fn oid(arcs: &[u64]) -> Vec<u8> {
    tlv(TAG_OID, &oid_content(arcs))
}

/// Whether `content` (the value of an OID element) is the OID `arcs`.
pub(crate) fn oid_is(content: &[u8], arcs: &[u64]) -> bool {
    content == oid_content(arcs).as_slice()
}

/// A directory string: PrintableString when the text allows it, else UTF8String (as Go and
/// OpenSSL do, so names compare equal with what they produce).
pub(crate) fn directory_string(text: &str) -> Vec<u8> {
    let printable = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&b));
    let tag = if printable {
        TAG_PRINTABLE_STRING
    } else {
        TAG_UTF8_STRING
    };
    tlv(tag, text.as_bytes())
}

/// An X.509 `Time`: UTCTime through 2049, GeneralizedTime after (RFC 5280 §4.1.2.5), to the
/// second.
pub(crate) fn time(at: jiff::Timestamp) -> Result<Vec<u8>, PkiError> {
    let dt = jiff::tz::Offset::UTC.to_datetime(at);
    let year = dt.year();
    let rest = format!(
        "{:02}{:02}{:02}{:02}{:02}Z",
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    );
    match year {
        1950..=2049 => Ok(tlv(TAG_UTC_TIME, format!("{:02}{rest}", year % 100).as_bytes())),
        0..=9999 => Ok(tlv(TAG_GENERALIZED_TIME, format!("{year:04}{rest}").as_bytes())),
        _ => Err(PkiError::InvalidCertificate(format!(
            "time {at} cannot be encoded"
        ))),
    }
}

/// Reads consecutive DER elements from a buffer. Only low tag numbers (< 31), which is all that
/// key files use.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(der: &'a [u8]) -> Self {
        Self { rest: der }
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next element's tag and content.
    pub(crate) fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let (&tag, after_tag) = self.rest.split_first()?;
        let (&first_len, after_len) = after_tag.split_first()?;
        let (len, body) = if first_len < 0x80 {
            (usize::from(first_len), after_len)
        } else {
            let count = usize::from(first_len & 0x7f);
            if count == 0 || count > std::mem::size_of::<usize>() {
                return None;
            }
            let (len_bytes, body) = after_len.split_at_checked(count)?;
            let len = len_bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, body)
        };
        let (content, rest) = body.split_at_checked(len)?;
        self.rest = rest;
        Some((tag, content))
    }

    /// The next element's content if it has `tag`.
    pub(crate) fn expect(&mut self, tag: u8) -> Option<&'a [u8]> {
        match self.next()? {
            (t, content) if t == tag => Some(content),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lengths_use_minimal_octets() {
        assert_eq!(&tlv(0x04, &[0; 0x7f])[..2], &[0x04, 0x7f]);
        assert_eq!(&tlv(0x04, &[0; 0x80])[..3], &[0x04, 0x81, 0x80]);
        assert_eq!(&tlv(0x04, &[0; 0x1234])[..4], &[0x04, 0x82, 0x12, 0x34]);
    }

    #[test]
    fn oids_encode_like_the_rfc_examples() {
        // 1.2.840.113549.1.1.11 (sha256WithRSAEncryption)
        assert_eq!(
            oid(&[1, 2, 840, 113_549, 1, 1, 11]),
            [0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b]
        );
    }

    #[test]
    fn integers_stay_positive() {
        assert_eq!(unsigned_integer(&[0x00, 0x80]), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(unsigned_integer(&[0x00, 0x00, 0x7f]), [0x02, 0x01, 0x7f]);
        assert_eq!(unsigned_integer(&[]), [0x02, 0x01, 0x00]);
    }

    #[test]
    fn times_switch_to_generalized_after_2049() {
        let utc: jiff::Timestamp = "2049-12-31T23:59:59Z".parse().unwrap();
        assert_eq!(time(utc).unwrap(), tlv(TAG_UTC_TIME, b"491231235959Z"));
        let generalized: jiff::Timestamp = "2050-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            time(generalized).unwrap(),
            tlv(TAG_GENERALIZED_TIME, b"20500101000000Z")
        );
    }

    #[test]
    fn reader_walks_what_the_writer_wrote() {
        let der = sequence(&[&oid(&[2, 5, 29, 15]), &octet_string(&[0; 300])]);
        let mut outer = Reader::new(&der);
        let body = outer.expect(TAG_SEQUENCE).unwrap();
        assert!(outer.is_empty());
        let mut inner = Reader::new(body);
        assert!(oid_is(inner.expect(TAG_OID).unwrap(), &[2, 5, 29, 15]));
        assert_eq!(inner.expect(TAG_OCTET_STRING).unwrap().len(), 300);
        assert!(inner.next().is_none());
    }
}
