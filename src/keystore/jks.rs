//! Java KeyStore (JKS) files, as `keytool` and keystore-go (which cert-manager uses) write them:
//! magic `FEEDFEED`, version 2, entries (a private key with its chain, or a trusted
//! certificate), then a SHA-1 integrity check keyed with the password. The private key is
//! protected with Sun's key protector (a SHA-1 keystream, OID 1.3.6.1.4.1.42.2.17.1.1).
//!
//! No maintained Rust crate writes JKS; the format is small and fixed (Java reads but no longer
//! writes it by default), so it is written here, its ASN.1 through the `pkcs12` crate's types,
//! and checked against `keytool` in the tests.

use aws_lc_rs::digest::{Context, SHA1_FOR_LEGACY_USE_ONLY};
use const_oid::ObjectIdentifier;
use der::asn1::OctetString;
use der::{Any, Decode, Encode};
use pkcs12::pbe_params::EncryptedPrivateKeyInfo;
use spki::AlgorithmIdentifierOwned;

use super::{KeystoreError, StoreContents, StoredCertificate, StoredKey};

const MAGIC: u32 = 0xFEED_FEED;
const VERSION: u32 = 2;
const PRIVATE_KEY_ENTRY: u32 = 1;
const TRUSTED_CERT_ENTRY: u32 = 2;
/// Sun's proprietary key protection algorithm.
const KEY_PROTECTOR: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.42.2.17.1.1");
const WHITENER: &[u8] = b"Mighty Aphrodite";
const SHA1_LEN: usize = 20;
/// Entries and certificates a file read from elsewhere may hold; more is refused.
const MAX_ENTRIES: u32 = 10_000;

/// The password as the JKS digests take it: UTF-16 code units, big-endian.
fn password_bytes(password: &str) -> Vec<u8> {
    password.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

fn sha1(parts: &[&[u8]]) -> [u8; SHA1_LEN] {
    let mut context = Context::new(&SHA1_FOR_LEGACY_USE_ONLY);
    for part in parts {
        context.update(part);
    }
    let mut out = [0u8; SHA1_LEN];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// XORs `data` with the key protector's keystream for `salt`.
fn keystream_xor(password: &[u8], salt: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut digest = sha1(&[password, salt]);
    for chunk in data.chunks(SHA1_LEN) {
        out.extend(chunk.iter().zip(digest).map(|(b, k)| b ^ k));
        digest = sha1(&[password, &digest]);
    }
    out
}

/// Sun's key protector around `pkcs8`: salt, encrypted key, check digest.
fn protect(pkcs8: &[u8], password: &[u8]) -> Result<Vec<u8>, KeystoreError> {
    let mut salt = [0u8; SHA1_LEN];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| KeystoreError::Crypto("no randomness"))?;
    let mut protected = salt.to_vec();
    protected.extend(keystream_xor(password, &salt, pkcs8));
    protected.extend(sha1(&[password, pkcs8]));
    let info = EncryptedPrivateKeyInfo {
        encryption_algorithm: AlgorithmIdentifierOwned {
            oid: KEY_PROTECTOR,
            parameters: Some(Any::null()),
        },
        encrypted_data: OctetString::new(protected)?,
    };
    Ok(info.to_der()?)
}

fn unprotect(der: &[u8], password: &[u8]) -> Result<Vec<u8>, KeystoreError> {
    let info = EncryptedPrivateKeyInfo::from_der(der)?;
    if info.encryption_algorithm.oid != KEY_PROTECTOR {
        return Err(KeystoreError::Unsupported(format!(
            "JKS key protection {}",
            info.encryption_algorithm.oid
        )));
    }
    let protected = info.encrypted_data.as_bytes();
    if protected.len() < 2 * SHA1_LEN {
        return Err(KeystoreError::Malformed(
            "a JKS key entry too short to hold a key".into(),
        ));
    }
    let (salt, rest) = protected.split_at(SHA1_LEN);
    let (encrypted, check) = rest.split_at(rest.len() - SHA1_LEN);
    let key = keystream_xor(password, salt, encrypted);
    match sha1(&[password, &key]) == check {
        true => Ok(key),
        false => Err(KeystoreError::WrongPassword),
    }
}

/// Writes JKS fields.
struct Writer(Vec<u8>);

impl Writer {
    fn u32(&mut self, value: u32) {
        self.0.extend(value.to_be_bytes());
    }

    fn bytes(&mut self, value: &[u8]) -> Result<(), KeystoreError> {
        let len =
            u32::try_from(value.len()).map_err(|_| KeystoreError::Malformed("an entry over 4 GiB".into()))?;
        self.u32(len);
        self.0.extend(value);
        Ok(())
    }

    /// Java's `writeUTF`: a u16 length, then (for the ASCII aliases used here) the bytes.
    fn utf(&mut self, value: &str) -> Result<(), KeystoreError> {
        let bytes = java_utf8(value);
        let len = u16::try_from(bytes.len())
            .map_err(|_| KeystoreError::Malformed("an alias over 64 KiB".into()))?;
        self.0.extend(len.to_be_bytes());
        self.0.extend(bytes);
        Ok(())
    }

    fn certificate(&mut self, der: &[u8]) -> Result<(), KeystoreError> {
        self.utf("X.509")?;
        self.bytes(der)
    }
}

/// Java's modified UTF-8: NUL as two bytes, characters beyond the BMP as surrogate pairs.
fn java_utf8(value: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for unit in value.encode_utf16() {
        match unit {
            0x0001..=0x007f => out.push(unit as u8),
            0x0000 | 0x0080..=0x07ff => {
                out.push(0xc0 | (unit >> 6) as u8);
                out.push(0x80 | (unit & 0x3f) as u8);
            }
            _ => {
                out.push(0xe0 | (unit >> 12) as u8);
                out.push(0x80 | ((unit >> 6) & 0x3f) as u8);
                out.push(0x80 | (unit & 0x3f) as u8);
            }
        }
    }
    out
}

/// One entry of a store to write.
pub enum Entry<'a> {
    /// A private key (PKCS#8 DER) with its chain, leaf first.
    Key {
        alias: &'a str,
        pkcs8: &'a [u8],
        chain: &'a [Vec<u8>],
    },
    Trusted {
        alias: &'a str,
        der: &'a [u8],
    },
}

/// A JKS file holding `entries`, dated `created_ms` (milliseconds since the epoch).
pub fn write(entries: &[Entry<'_>], password: &str, created_ms: u64) -> Result<Vec<u8>, KeystoreError> {
    let password = password_bytes(password);
    let mut w = Writer(Vec::new());
    w.u32(MAGIC);
    w.u32(VERSION);
    w.u32(u32::try_from(entries.len()).map_err(|_| KeystoreError::Malformed("too many entries".into()))?);
    for entry in entries {
        match entry {
            Entry::Key { alias, pkcs8, chain } => {
                w.u32(PRIVATE_KEY_ENTRY);
                w.utf(alias)?;
                w.0.extend(created_ms.to_be_bytes());
                w.bytes(&protect(pkcs8, &password)?)?;
                w.u32(
                    u32::try_from(chain.len())
                        .map_err(|_| KeystoreError::Malformed("too long a chain".into()))?,
                );
                for der in *chain {
                    w.certificate(der)?;
                }
            }
            Entry::Trusted { alias, der } => {
                w.u32(TRUSTED_CERT_ENTRY);
                w.utf(alias)?;
                w.0.extend(created_ms.to_be_bytes());
                w.certificate(der)?;
            }
        }
    }
    let check = sha1(&[&password, WHITENER, &w.0]);
    w.0.extend(check);
    Ok(w.0)
}

/// Reads JKS fields, refusing to run past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], KeystoreError> {
        if self.0.len() < len {
            return Err(KeystoreError::Malformed(
                "the JKS file ends inside an entry".into(),
            ));
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, KeystoreError> {
        let bytes = self.take(4)?;
        Ok(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    fn bytes(&mut self) -> Result<&'a [u8], KeystoreError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn utf(&mut self) -> Result<String, KeystoreError> {
        let len = self.take(2)?;
        let len = u16::from_be_bytes([len[0], len[1]]) as usize;
        // Aliases certkeeper reads are its own (ASCII); others are shown as best read.
        Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
    }

    fn certificate(&mut self) -> Result<Vec<u8>, KeystoreError> {
        let kind = self.utf()?;
        if kind != "X.509" {
            return Err(KeystoreError::Unsupported(format!("{kind} certificates")));
        }
        Ok(self.bytes()?.to_vec())
    }
}

/// Reads a JKS file with `password`: the integrity check first, then every entry.
pub fn read(bytes: &[u8], password: &str) -> Result<StoreContents, KeystoreError> {
    let password = password_bytes(password);
    if bytes.len() < 12 + SHA1_LEN {
        return Err(KeystoreError::Malformed("too short to be a JKS file".into()));
    }
    let (body, check) = bytes.split_at(bytes.len() - SHA1_LEN);
    let mut r = Reader(body);
    if r.u32()? != MAGIC {
        return Err(KeystoreError::Malformed("not a JKS file (no FEEDFEED)".into()));
    }
    let version = r.u32()?;
    if version != VERSION {
        return Err(KeystoreError::Unsupported(format!("JKS version {version}")));
    }
    if sha1(&[&password, WHITENER, body]) != check {
        return Err(KeystoreError::WrongPassword);
    }
    let count = r.u32()?;
    if count > MAX_ENTRIES {
        return Err(KeystoreError::Unsupported(format!("{count} entries")));
    }
    let mut contents = StoreContents {
        mac: true,
        encrypted: true,
        ..StoreContents::default()
    };
    for _ in 0..count {
        let tag = r.u32()?;
        let alias = r.utf()?;
        r.take(8)?;
        match tag {
            PRIVATE_KEY_ENTRY => {
                let pkcs8 = unprotect(r.bytes()?, &password)?;
                let chain = r.u32()?;
                if chain > MAX_ENTRIES {
                    return Err(KeystoreError::Unsupported(format!("a chain of {chain}")));
                }
                let key_id = Some(alias.as_bytes().to_vec());
                for _ in 0..chain {
                    contents.certificates.push(StoredCertificate {
                        alias: Some(alias.clone()),
                        der: r.certificate()?,
                        trusted: false,
                        key_id: key_id.clone(),
                    });
                }
                contents.keys.push(StoredKey {
                    alias: Some(alias),
                    pkcs8,
                    key_id,
                });
            }
            TRUSTED_CERT_ENTRY => contents.certificates.push(StoredCertificate {
                alias: Some(alias),
                der: r.certificate()?,
                trusted: true,
                key_id: None,
            }),
            other => return Err(KeystoreError::Unsupported(format!("JKS entry type {other}"))),
        }
    }
    Ok(contents)
}
