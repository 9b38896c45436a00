//! Keystores and truststores for consumers that do not read PEM: PKCS#12 (`pkcs12`) and Java
//! KeyStore (`jks`) files, written as cert-manager writes them and read back to tell whether
//! one still holds what it should. Pure: no Kubernetes, no I/O.
//!
//! What a Certificate's stores hold (SPEC "Keystores and output formats"): the keystore, the
//! private key with its chain under the key alias (`certificate` unless set) and the CAs of
//! `ca.crt` (`ca`, `ca-1`, ...); the truststore, the CAs of `ca.crt`. Stores carry random
//! salts, so whether one is up to date is decided by what it holds ([`StoreContents::holds`]),
//! never by its bytes.

pub mod jks;
pub mod pkcs12;

#[cfg(test)]
mod tests;

/// How a PKCS#12 file is encrypted and MAC-protected: cert-manager's profiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Profile {
    /// RC2-40 for certificates, 3DES for the key, SHA-1 MAC (cert-manager's default).
    LegacyRc2,
    /// 3DES for both, SHA-1 MAC: for old readers that lack RC2 (OpenSSL 3 without `-legacy`).
    LegacyDes,
    /// PBES2 (PBKDF2-HMAC-SHA-256, AES-256-CBC), SHA-256 MAC.
    Modern2023,
}

/// A password and the profile it is applied with.
#[derive(Clone, Copy)]
pub struct Protection<'a> {
    pub password: &'a str,
    pub profile: Profile,
}

/// Why a store could not be written or read. Never holds key material or the password.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("ASN.1: {0}")]
    Der(#[from] der::Error),
    #[error("{0}")]
    Crypto(&'static str),
    #[error("the password does not open the store (or the store was altered)")]
    WrongPassword,
    #[error("malformed store: {0}")]
    Malformed(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The thread that made the stores ended without an answer.
    #[error("the keystore task failed: {0}")]
    Task(String),
}

/// A certificate found in a store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCertificate {
    pub alias: Option<String>,
    pub der: Vec<u8>,
    /// A trusted entry (Java's `trustedCertEntry`), not part of a key's chain.
    pub trusted: bool,
    /// Pairs it with a key (PKCS#12 localKeyId; for JKS the alias of its key entry).
    pub key_id: Option<Vec<u8>>,
}

/// A private key found in a store, decrypted.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub alias: Option<String>,
    /// PKCS#8 DER.
    pub pkcs8: Vec<u8>,
    pub key_id: Option<Vec<u8>>,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("alias", &self.alias)
            .field("pkcs8", &"(redacted)")
            .finish()
    }
}

/// What a store holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreContents {
    pub certificates: Vec<StoredCertificate>,
    pub keys: Vec<StoredKey>,
    /// Whether it has a MAC (PKCS#12) or integrity check (JKS).
    pub mac: bool,
    /// Whether its certificates were encrypted.
    pub encrypted: bool,
}

impl StoreContents {
    /// Whether the store holds exactly `key` (if any) and exactly these certificates, as
    /// trusted entries or not: what decides that a store need not be written again.
    pub fn holds(&self, key: Option<&[u8]>, certificates: &[&[u8]], trusted: &[&[u8]]) -> bool {
        let keys: Vec<&[u8]> = self.keys.iter().map(|k| k.pkcs8.as_slice()).collect();
        fn sorted(mut v: Vec<&[u8]>) -> Vec<&[u8]> {
            v.sort();
            v.dedup();
            v
        }
        let have_chain: Vec<&[u8]> = self
            .certificates
            .iter()
            .filter(|c| !c.trusted)
            .map(|c| c.der.as_slice())
            .collect();
        let have_trusted: Vec<&[u8]> = self
            .certificates
            .iter()
            .filter(|c| c.trusted)
            .map(|c| c.der.as_slice())
            .collect();
        keys == key.into_iter().collect::<Vec<_>>()
            && sorted(have_chain) == sorted(certificates.to_vec())
            && sorted(have_trusted) == sorted(trusted.to_vec())
    }
}

/// The alias of the `index`th CA of `ca.crt`: `ca`, `ca-1`, `ca-2`, ...
pub fn ca_alias(index: usize) -> String {
    match index {
        0 => "ca".to_owned(),
        n => format!("ca-{n}"),
    }
}

/// What a Certificate's stores are made of: DER throughout.
pub struct StoreMaterial<'a> {
    pub key_pkcs8: &'a [u8],
    /// tls.crt: the leaf, then its chain.
    pub chain: &'a [Vec<u8>],
    /// ca.crt's certificates.
    pub cas: &'a [Vec<u8>],
}

impl StoreMaterial<'_> {
    /// The CAs of `ca.crt` under their aliases.
    fn aliased_cas(&self) -> Vec<(String, Vec<u8>)> {
        self.cas
            .iter()
            .enumerate()
            .map(|(i, der)| (ca_alias(i), der.clone()))
            .collect()
    }

    /// `keystore.p12`: the key and chain, then the CAs (untrusted bags, for the chain), as
    /// go-pkcs12's `Encode` writes them.
    pub fn pkcs12_keystore(
        &self,
        alias: &str,
        protection: &Protection<'_>,
    ) -> Result<Vec<u8>, KeystoreError> {
        pkcs12::keystore(self.key_pkcs8, self.chain, self.cas, alias, protection)
    }

    /// `truststore.p12`: the CAs as trusted entries.
    pub fn pkcs12_truststore(&self, protection: &Protection<'_>) -> Result<Vec<u8>, KeystoreError> {
        pkcs12::truststore(&self.aliased_cas(), Some(protection))
    }

    /// `keystore.jks`: the key with its chain under `alias`, the CAs as trusted entries.
    pub fn jks_keystore(
        &self,
        alias: &str,
        password: &str,
        created_ms: u64,
    ) -> Result<Vec<u8>, KeystoreError> {
        let cas = self.aliased_cas();
        let mut entries = vec![jks::Entry::Key {
            alias,
            pkcs8: self.key_pkcs8,
            chain: self.chain,
        }];
        entries.extend(cas.iter().map(|(alias, der)| jks::Entry::Trusted { alias, der }));
        jks::write(&entries, password, created_ms)
    }

    /// `truststore.jks`: the CAs as trusted entries.
    pub fn jks_truststore(&self, password: &str, created_ms: u64) -> Result<Vec<u8>, KeystoreError> {
        let cas = self.aliased_cas();
        let entries: Vec<_> = cas
            .iter()
            .map(|(alias, der)| jks::Entry::Trusted { alias, der })
            .collect();
        jks::write(&entries, password, created_ms)
    }

    /// Whether `contents`, read from a `keystore.p12`, holds this material.
    pub fn in_pkcs12_keystore(&self, contents: &StoreContents) -> bool {
        let mut chain: Vec<&[u8]> = self.chain.iter().map(Vec::as_slice).collect();
        chain.extend(self.cas.iter().map(Vec::as_slice));
        contents.holds(Some(self.key_pkcs8), &chain, &[])
    }

    /// Whether `contents`, read from a `keystore.jks`, holds this material.
    pub fn in_jks_keystore(&self, contents: &StoreContents) -> bool {
        let chain: Vec<&[u8]> = self.chain.iter().map(Vec::as_slice).collect();
        let cas: Vec<&[u8]> = self.cas.iter().map(Vec::as_slice).collect();
        contents.holds(Some(self.key_pkcs8), &chain, &cas)
    }

    /// Whether `contents`, read from a truststore, holds exactly the CAs.
    pub fn in_truststore(&self, contents: &StoreContents) -> bool {
        let cas: Vec<&[u8]> = self.cas.iter().map(Vec::as_slice).collect();
        contents.holds(None, &[], &cas)
    }
}
