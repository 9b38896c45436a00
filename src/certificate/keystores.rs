//! A Certificate's keystores (`spec.keystores`): what the spec asks for, the passwords it
//! names, and the store bytes that go into the Secret. A store already in the Secret that
//! still opens with the password and holds the same key and certificates is kept byte for
//! byte (stores carry random salts: writing anew would change the Secret at every look).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

use super::secret::SecretMaterial;
use crate::api::{CertificateKeystores, Pkcs12Profile, SecretKeySelector};
use crate::keystore::{self, KeystoreError, Profile, Protection, StoreMaterial};

pub const KEYSTORE_P12: &str = "keystore.p12";
pub const TRUSTSTORE_P12: &str = "truststore.p12";
pub const KEYSTORE_JKS: &str = "keystore.jks";
pub const TRUSTSTORE_JKS: &str = "truststore.jks";
/// Every key a store may take in the Secret.
pub const STORE_KEYS: [&str; 4] = [KEYSTORE_P12, TRUSTSTORE_P12, KEYSTORE_JKS, TRUSTSTORE_JKS];
/// The key entry's alias when the spec names none (cert-manager's).
pub const DEFAULT_ALIAS: &str = "certificate";

/// Where a store's password comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// `password`, in the spec.
    Literal(String),
    /// `passwordSecretRef`: a key of a Secret in the Certificate's namespace.
    Secret { name: String, key: String },
}

impl std::fmt::Debug for PasswordSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Literal(_) => f.write_str("Literal(redacted)"),
            Self::Secret { name, key } => write!(f, "Secret({name}/{key})"),
        }
    }
}

/// The stores a spec asks for (`create: true`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeystoreSpec {
    pub pkcs12: Option<(PasswordSource, Profile)>,
    /// The password and the key entry's alias.
    pub jks: Option<(PasswordSource, String)>,
}

impl KeystoreSpec {
    pub fn is_empty(&self) -> bool {
        self.pkcs12.is_none() && self.jks.is_none()
    }

    /// The password Secrets it reads, by name.
    pub fn password_secrets(&self) -> impl Iterator<Item = &str> {
        let pkcs12 = self.pkcs12.as_ref().map(|(source, _)| source);
        let jks = self.jks.as_ref().map(|(source, _)| source);
        pkcs12.into_iter().chain(jks).filter_map(|source| match source {
            PasswordSource::Secret { name, .. } => Some(name.as_str()),
            PasswordSource::Literal(_) => None,
        })
    }
}

fn source(
    path: &str,
    secret_ref: Option<&SecretKeySelector>,
    literal: Option<&String>,
) -> Result<PasswordSource, String> {
    match (secret_ref, literal) {
        (Some(r), None) => Ok(PasswordSource::Secret {
            name: r.name.clone(),
            key: r.key.clone(),
        }),
        (None, Some(p)) if !p.is_empty() => Ok(PasswordSource::Literal(p.clone())),
        _ => Err(format!(
            "{path}: exactly one of password and passwordSecretRef must be set"
        )),
    }
}

/// `spec.keystores` as the controller acts on it.
pub fn validate(keystores: Option<&CertificateKeystores>) -> Result<KeystoreSpec, String> {
    let Some(keystores) = keystores else {
        return Ok(KeystoreSpec::default());
    };
    let pkcs12 = match &keystores.pkcs12 {
        Some(p) if p.create => {
            let profile = match p.profile.unwrap_or_default() {
                Pkcs12Profile::LegacyRc2 => Profile::LegacyRc2,
                Pkcs12Profile::LegacyDes => Profile::LegacyDes,
                Pkcs12Profile::Modern2023 => Profile::Modern2023,
            };
            let source = source(
                "spec.keystores.pkcs12",
                p.password_secret_ref.as_ref(),
                p.password.as_ref(),
            )?;
            Some((source, profile))
        }
        _ => None,
    };
    let jks = match &keystores.jks {
        Some(j) if j.create => {
            let source = source(
                "spec.keystores.jks",
                j.password_secret_ref.as_ref(),
                j.password.as_ref(),
            )?;
            let alias = j.alias.clone().unwrap_or_else(|| DEFAULT_ALIAS.to_owned());
            Some((source, alias))
        }
        _ => None,
    };
    Ok(KeystoreSpec { pkcs12, jks })
}

/// The passwords, read.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Passwords {
    pub pkcs12: Option<String>,
    pub jks: Option<String>,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passwords(redacted)")
    }
}

/// Reads the passwords of `spec` from the Secrets `read` returns by name (`None`: not
/// found). Err: what is missing, for the status.
pub fn passwords<'a>(
    spec: &KeystoreSpec,
    namespace: &str,
    mut read: impl FnMut(&str) -> Option<&'a Secret>,
) -> Result<Passwords, String> {
    let mut one = |field: &str, source: &PasswordSource| -> Result<String, String> {
        match source {
            PasswordSource::Literal(password) => Ok(password.clone()),
            PasswordSource::Secret { name, key } => {
                let secret = read(name).ok_or_else(|| {
                    format!("{field}.passwordSecretRef: Secret \"{namespace}/{name}\" not found")
                })?;
                let value = secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|v| v.0.as_slice())
                    .or_else(|| {
                        secret
                            .string_data
                            .as_ref()
                            .and_then(|d| d.get(key))
                            .map(|v| v.as_bytes())
                    })
                    .ok_or_else(|| {
                        format!(
                            "{field}.passwordSecretRef: Secret \"{namespace}/{name}\" has no key \"{key}\""
                        )
                    })?;
                let password = std::str::from_utf8(value)
                    .map_err(|_| {
                        format!("{field}.passwordSecretRef: key \"{key}\" of Secret \"{namespace}/{name}\" is not UTF-8 text")
                    })?
                    .trim_end_matches(['\n', '\r']);
                match password.is_empty() {
                    true => Err(format!(
                        "{field}.passwordSecretRef: key \"{key}\" of Secret \"{namespace}/{name}\" is empty"
                    )),
                    false => Ok(password.to_owned()),
                }
            }
        }
    };
    Ok(Passwords {
        pkcs12: spec
            .pkcs12
            .as_ref()
            .map(|(source, _)| one("spec.keystores.pkcs12", source))
            .transpose()?,
        jks: spec
            .jks
            .as_ref()
            .map(|(source, _)| one("spec.keystores.jks", source))
            .transpose()?,
    })
}

/// DER certificates of a PEM bundle (what cannot be read is left out: the Secret's own
/// checks judge it).
fn ders(pem: &str) -> Vec<Vec<u8>> {
    crate::pki::parse_pem_certificates(pem.as_bytes()).unwrap_or_default()
}

/// The store bytes the Secret should hold for `material`, keeping what `existing` already
/// holds wherever it opens with the password and holds the same things.
pub fn stores(
    spec: &KeystoreSpec,
    passwords: &Passwords,
    secret_material: &SecretMaterial,
    existing: Option<&Secret>,
    now: jiff::Timestamp,
) -> Result<BTreeMap<String, Vec<u8>>, KeystoreError> {
    let mut out = BTreeMap::new();
    if spec.is_empty() {
        return Ok(out);
    }
    let created_ms = u64::try_from(now.as_millisecond()).unwrap_or_default();
    let (chain, cas) = (ders(&secret_material.chain_pem), ders(&secret_material.ca_pem));
    let material = StoreMaterial {
        key_pkcs8: &secret_material.key_pkcs8,
        chain: &chain,
        cas: &cas,
    };
    let current = |key: &str| {
        existing
            .and_then(|s| s.data.as_ref())
            .and_then(|d| d.get(key))
            .map(|v| v.0.as_slice())
    };
    if let (Some((_, profile)), Some(password)) = (&spec.pkcs12, &passwords.pkcs12) {
        let protection = Protection {
            password,
            profile: *profile,
        };
        let keep = |key: &str, holds: &dyn Fn(&keystore::StoreContents) -> bool| {
            current(key).filter(|bytes| {
                keystore::pkcs12::read(bytes, Some(password)).is_ok_and(|c| holds(&c) && c.encrypted)
            })
        };
        let keystore = match keep(KEYSTORE_P12, &|c| material.in_pkcs12_keystore(c)) {
            Some(bytes) => bytes.to_vec(),
            None => material.pkcs12_keystore(DEFAULT_ALIAS, &protection)?,
        };
        out.insert(KEYSTORE_P12.to_owned(), keystore);
        if !cas.is_empty() {
            let truststore = match keep(TRUSTSTORE_P12, &|c| material.in_truststore(c)) {
                Some(bytes) => bytes.to_vec(),
                None => material.pkcs12_truststore(&protection)?,
            };
            out.insert(TRUSTSTORE_P12.to_owned(), truststore);
        }
    }
    if let (Some((_, alias)), Some(password)) = (&spec.jks, &passwords.jks) {
        let keep = |key: &str, holds: &dyn Fn(&keystore::StoreContents) -> bool| {
            current(key).filter(|bytes| keystore::jks::read(bytes, password).is_ok_and(|c| holds(&c)))
        };
        let aliased =
            |c: &keystore::StoreContents| c.keys.iter().all(|k| k.alias.as_deref() == Some(alias.as_str()));
        let keystore = match keep(KEYSTORE_JKS, &|c| material.in_jks_keystore(c) && aliased(c)) {
            Some(bytes) => bytes.to_vec(),
            None => material.jks_keystore(alias, password, created_ms)?,
        };
        out.insert(KEYSTORE_JKS.to_owned(), keystore);
        if !cas.is_empty() {
            let truststore = match keep(TRUSTSTORE_JKS, &|c| material.in_truststore(c)) {
                Some(bytes) => bytes.to_vec(),
                None => material.jks_truststore(password, created_ms)?,
            };
            out.insert(TRUSTSTORE_JKS.to_owned(), truststore);
        }
    }
    Ok(out)
}

/// Which Certificates read their keystore passwords from which Secrets: what a change of such
/// a Secret wakes. Filled by the reconciles (a Certificate's references as its spec last
/// said), read by the password Secrets' watch; Certificates without keystores take no room.
#[derive(Debug, Default)]
pub struct PasswordRefs(std::sync::Mutex<PasswordIndex>);

#[derive(Debug, Default)]
struct PasswordIndex {
    /// (namespace, Secret) → Certificates.
    by_secret: std::collections::HashMap<(String, String), std::collections::BTreeSet<String>>,
    /// (namespace, Certificate) → Secrets.
    by_certificate: std::collections::HashMap<(String, String), Vec<String>>,
}

impl PasswordRefs {
    /// Records that Certificate `certificate` of `namespace` reads `secrets` (replacing what it
    /// read before; none forgets it).
    pub fn set<'a>(&self, namespace: &str, certificate: &str, secrets: impl Iterator<Item = &'a str>) {
        let mut secrets: Vec<String> = secrets.map(str::to_owned).collect();
        secrets.sort();
        secrets.dedup();
        let mut index = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let key = (namespace.to_owned(), certificate.to_owned());
        if index.by_certificate.get(&key).is_some_and(|had| *had == secrets)
            || (secrets.is_empty() && !index.by_certificate.contains_key(&key))
        {
            return;
        }
        for old in index.by_certificate.remove(&key).unwrap_or_default() {
            let secret = (namespace.to_owned(), old);
            if let Some(readers) = index.by_secret.get_mut(&secret) {
                readers.remove(certificate);
                if readers.is_empty() {
                    index.by_secret.remove(&secret);
                }
            }
        }
        for secret in &secrets {
            index
                .by_secret
                .entry((namespace.to_owned(), secret.clone()))
                .or_default()
                .insert(certificate.to_owned());
        }
        if !secrets.is_empty() {
            index.by_certificate.insert(key, secrets);
        }
    }

    /// The Certificates of `namespace` that read Secret `secret`.
    pub fn readers(&self, namespace: &str, secret: &str) -> Vec<String> {
        let index = self.0.lock().unwrap_or_else(|p| p.into_inner());
        index
            .by_secret
            .get(&(namespace.to_owned(), secret.to_owned()))
            .map(|readers| readers.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_references_follow_the_spec_and_are_forgotten() {
        let refs = PasswordRefs::default();
        refs.set("apps", "web", ["pw", "pw"].into_iter());
        refs.set("apps", "api", ["pw", "other"].into_iter());
        assert_eq!(refs.readers("apps", "pw"), ["api", "web"]);
        assert_eq!(refs.readers("shop", "pw"), Vec::<String>::new());
        refs.set("apps", "web", ["new"].into_iter());
        assert_eq!(refs.readers("apps", "pw"), ["api"]);
        assert_eq!(refs.readers("apps", "new"), ["web"]);
        refs.set("apps", "api", std::iter::empty());
        assert!(refs.readers("apps", "pw").is_empty() && refs.readers("apps", "other").is_empty());
        assert_eq!(refs.0.lock().unwrap().by_secret.len(), 1);
    }
}
