//! A UID as the caches keep it beside each of many objects. The API server writes every UID
//! as a lower-case UUID: 16 bytes, where the string takes 36 characters and an allocation of
//! 48. Anything else is kept as it came, so that what is given back is always the very string.

use std::fmt;

/// A UID, compact (see the module). Empty: none known yet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Uid {
    #[default]
    Empty,
    Uuid([u8; 16]),
    Other(Box<str>),
}

impl Uid {
    pub fn new(uid: &str) -> Self {
        match uuid_bytes(uid) {
            Some(bytes) => Self::Uuid(bytes),
            None if uid.is_empty() => Self::Empty,
            None => Self::Other(uid.into()),
        }
    }

    /// Whether this is the UID `uid` (the empty string for none).
    pub fn is(&self, uid: &str) -> bool {
        match self {
            Self::Empty => uid.is_empty(),
            Self::Uuid(bytes) => uuid_bytes(uid).as_ref() == Some(bytes),
            Self::Other(kept) => **kept == *uid,
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::Empty
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => Ok(()),
            Self::Uuid(bytes) => f.write_str(&uuid_string(bytes)),
            Self::Other(kept) => f.write_str(kept),
        }
    }
}

/// `uid` as 16 bytes, when it is a UUID in the lower-case form the API server writes
/// (`8-4-4-4-12` hex digits): written back by [`uuid_string`], it is the very same string.
pub fn uuid_bytes(uid: &str) -> Option<[u8; 16]> {
    let bytes = uid.as_bytes();
    if bytes.len() != 36 || [8, 13, 18, 23].iter().any(|&i| bytes[i] != b'-') {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut digits = bytes.iter().filter(|&&c| c != b'-');
    let mut out = [0u8; 16];
    for byte in &mut out {
        let (high, low) = (digits.next()?, digits.next()?);
        *byte = (digit(*high)? << 4) | digit(*low)?;
    }
    Some(out)
}

/// The UUID `bytes` stand for, in the API server's form.
pub fn uuid_string(bytes: &[u8; 16]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(36);
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uuid_is_kept_as_bytes_and_given_back_unchanged() {
        let uid = "6f1c2a9e-1b2c-4d5e-8f90-0123456789ab";
        assert_eq!(uuid_bytes(uid).map(|b| uuid_string(&b)).as_deref(), Some(uid));
        assert!(matches!(Uid::new(uid), Uid::Uuid(_)));
        assert_eq!(Uid::new(uid).to_string(), uid);
        assert!(Uid::new(uid).is(uid));
        assert!(!Uid::new(uid).is("6f1c2a9e-1b2c-4d5e-8f90-0123456789ac"));
        assert!(!Uid::new(uid).is(""));
    }

    #[test]
    fn anything_else_is_kept_as_it_came() {
        for other in [
            "uid-web",
            "6F1C2A9E-1B2C-4D5E-8F90-0123456789AB",
            "6f1c2a9e1b2c-4d5e-8f90-0123456789ab-",
            "6f1c2a9e-1b2c-4d5e-8f90-0123456789a",
            "6f1c2a9e-1b2c-4d5e-8f90-0123456789ag",
        ] {
            assert_eq!(uuid_bytes(other), None, "{other}");
            let uid = Uid::new(other);
            assert_eq!(uid, Uid::Other(other.into()));
            assert_eq!(uid.to_string(), other);
            assert!(uid.is(other));
        }
        assert!(Uid::new("").is_empty());
        assert!(Uid::new("").is(""));
        assert_eq!(Uid::new("").to_string(), "");
    }

    #[test]
    fn it_takes_24_bytes() {
        assert_eq!(std::mem::size_of::<Uid>(), 24);
    }
}
