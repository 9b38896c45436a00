//! `inspect secret NAME` and `inspect file PATH`: decode a TLS Secret, a PEM file or a
//! directory written by `issue` (tls.crt, tls.key, ca.crt).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use serde::Serialize;

use super::material::{self, Material};
use super::{CliError, ClusterArgs, NamespaceArgs, OutputFormat, namespace_or_default, render};
use crate::certificate::keystores::STORE_KEYS;
use crate::certificate::secret::{CA_CRT, TLS_CRT, TLS_KEY, data};
use crate::keystore::{self, KeystoreError, StoreContents};
use crate::pki::parse_certificate_chain;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  certkeeper inspect secret frontend-tls -n certkeeper-demo\n  \
                        certkeeper inspect file certs/certkeeper-demo/frontend-tls/"
)]
pub struct InspectArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(subcommand)]
    pub target: Target,
}

#[derive(Debug, Subcommand)]
pub enum Target {
    /// Decode a TLS Secret: tls.crt, tls.key (type only) and ca.crt.
    #[command(after_help = "Example:\n  certkeeper inspect secret frontend-tls -n certkeeper-demo -o yaml")]
    Secret {
        /// Name of the Secret.
        name: String,
        #[command(flatten)]
        namespace: NamespaceArgs,
        /// Print JSON or YAML instead of text.
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Decode a PEM file (certificates, optionally a key), or a directory holding tls.crt,
    /// tls.key and ca.crt as `certkeeper issue` writes them.
    #[command(
        after_help = "Examples:\n  certkeeper inspect file certs/certkeeper-demo/frontend-tls/\n  \
                            certkeeper inspect file server.pem --ca ca.pem"
    )]
    File {
        /// A PEM file or a directory.
        path: PathBuf,
        /// PEM file of the trusted root(s) to verify the chain against.
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Print JSON or YAML instead of text.
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
        #[command(flatten)]
        password: PasswordArgs,
    },
}

/// The password of keystores (`.p12`, `.jks`, or such keys of a Secret).
#[derive(Debug, Default, Args)]
pub struct PasswordArgs {
    /// The keystores' password.
    #[arg(long, conflicts_with = "password_file")]
    pub password: Option<String>,
    /// A file holding the keystores' password (a trailing newline is ignored).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
}

impl PasswordArgs {
    fn read(&self) -> Result<Option<String>, CliError> {
        match (&self.password, &self.password_file) {
            (Some(password), _) => Ok(Some(password.clone())),
            (None, Some(path)) => {
                let bytes = read(path)?;
                let text = String::from_utf8(bytes).map_err(|_| CliError::Read {
                    path: path.display().to_string(),
                    reason: "the password is not UTF-8 text".into(),
                })?;
                Ok(Some(text.trim_end_matches(['\n', '\r']).to_owned()))
            }
            (None, None) => Ok(None),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Inspected {
    source: String,
    #[serde(flatten)]
    material: Material,
    /// The keystores found beside the PEM (or the store inspected).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stores: Vec<StoreDescription>,
}

/// What a keystore holds, as far as it could be opened.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StoreDescription {
    name: String,
    format: &'static str,
    /// Entries: the key entries with the length of their chain, the trusted certificates.
    entries: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
}

pub async fn run(client: Option<&Client>, args: &InspectArgs, now: Timestamp) -> Result<String, CliError> {
    let (inspected, output) = match &args.target {
        Target::Secret {
            name,
            namespace,
            output,
            password,
        } => {
            let client = client.ok_or_else(|| CliError::NoCluster("no client".into()))?;
            let namespace = namespace_or_default(&namespace.namespace, client);
            let password = password.read()?;
            (
                inspect_secret(client, &namespace, name, password.as_deref(), now).await?,
                *output,
            )
        }
        Target::File {
            path,
            ca,
            output,
            password,
        } => (
            inspect_path(path, ca.as_deref(), password.read()?.as_deref(), now)?,
            *output,
        ),
    };
    match output {
        Some(format) => render(&inspected, format),
        None => {
            let mut out = format!("{}\n", inspected.source);
            material::write_text(&mut out, &inspected.material, 2);
            for store in &inspected.stores {
                out.push_str(&format!("  {} ({})\n", store.name, store.format));
                for entry in &store.entries {
                    out.push_str(&format!("    {entry}\n"));
                }
                if let Some(problem) = &store.problem {
                    out.push_str(&format!("    {problem}\n"));
                }
            }
            Ok(out)
        }
    }
}

async fn inspect_secret(
    client: &Client,
    namespace: &str,
    name: &str,
    password: Option<&str>,
    now: Timestamp,
) -> Result<Inspected, CliError> {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .map_err(|e| {
            CliError::api(
                format!("get Secret {namespace}/{name}"),
                format!("Secret {namespace}/{name}"),
                e,
            )
        })?;
    let type_ = secret.type_.as_deref().unwrap_or("Opaque");
    let stores = STORE_KEYS
        .iter()
        .filter_map(|key| data(&secret, key).map(|bytes| describe_store(key, bytes, password).0))
        .collect();
    Ok(Inspected {
        source: format!("Secret {namespace}/{name} (type {type_})"),
        material: describe_secret(&secret, now),
        stores,
    })
}

/// Whether `bytes` are a JKS file (its magic number) rather than PKCS#12.
fn is_jks(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xfe, 0xed, 0xfe, 0xed])
}

/// A keystore described, and what it holds when it opened.
fn describe_store(
    name: &str,
    bytes: &[u8],
    password: Option<&str>,
) -> (StoreDescription, Option<StoreContents>) {
    let format = if is_jks(bytes) { "JKS" } else { "PKCS#12" };
    let opened = match (is_jks(bytes), password) {
        (true, Some(password)) => keystore::jks::read(bytes, password),
        (true, None) => {
            return (
                StoreDescription {
                    name: name.to_owned(),
                    format,
                    entries: Vec::new(),
                    problem: Some("protected: give --password or --password-file to open it".into()),
                },
                None,
            );
        }
        // A PKCS#12 file may have no password at all (a Bundle's truststore).
        (false, password) => keystore::pkcs12::read(bytes, password).map_err(|e| match password {
            None => KeystoreError::Malformed(format!("{e}; give --password or --password-file to open it")),
            Some(_) => e,
        }),
    };
    match opened {
        Ok(contents) => {
            let subject = |der: &[u8]| {
                parse_certificate_chain(pem_of("CERTIFICATE", der).as_bytes())
                    .ok()
                    .and_then(|c| c.into_iter().next())
                    .map(|c| match c.common_name {
                        Some(cn) => format!("CN={cn}"),
                        None => "(no commonName)".into(),
                    })
                    .unwrap_or_else(|| "(unreadable certificate)".into())
            };
            let mut entries: Vec<String> = contents
                .keys
                .iter()
                .map(|key| {
                    let chain = contents
                        .certificates
                        .iter()
                        .filter(|c| !c.trusted && c.key_id.is_some() && c.key_id == key.key_id)
                        .count();
                    format!(
                        "{:?}: private key with {chain} certificate(s)",
                        key.alias.as_deref().unwrap_or("")
                    )
                })
                .collect();
            for certificate in &contents.certificates {
                let kind = match (certificate.trusted, &certificate.key_id) {
                    (true, _) => "trusted certificate",
                    (false, Some(_)) => continue,
                    (false, None) => "certificate",
                };
                entries.push(format!(
                    "{:?}: {kind} {}",
                    certificate.alias.as_deref().unwrap_or(""),
                    subject(&certificate.der)
                ));
            }
            let description = StoreDescription {
                name: name.to_owned(),
                format,
                entries,
                problem: None,
            };
            (description, Some(contents))
        }
        Err(e) => (
            StoreDescription {
                name: name.to_owned(),
                format,
                entries: Vec::new(),
                problem: Some(format!("cannot open: {e}")),
            },
            None,
        ),
    }
}

fn pem_of(tag: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(tag, der.to_vec()))
}

/// A keystore file read as the PEM material it holds: its key's chain, the key, the trusted
/// certificates as `ca.crt`.
fn store_material(contents: &StoreContents) -> (String, Option<String>, String) {
    let key = contents.keys.first();
    let chain: String = contents
        .certificates
        .iter()
        .filter(|c| !c.trusted && key.is_none_or(|k| c.key_id.is_none() || c.key_id == k.key_id))
        .map(|c| pem_of("CERTIFICATE", &c.der))
        .collect();
    let ca: String = contents
        .certificates
        .iter()
        .filter(|c| c.trusted)
        .map(|c| pem_of("CERTIFICATE", &c.der))
        .collect();
    (chain, key.map(|k| pem_of("PRIVATE KEY", &k.pkcs8)), ca)
}

/// A Secret's tls.crt, tls.key and ca.crt, described.
pub fn describe_secret(secret: &Secret, now: Timestamp) -> Material {
    material::describe(
        data(secret, TLS_CRT),
        data(secret, TLS_KEY),
        data(secret, CA_CRT),
        now,
    )
}

fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>, CliError> {
    match path.exists() {
        true => read(path).map(Some),
        false => Ok(None),
    }
}

fn inspect_path(
    path: &Path,
    ca: Option<&Path>,
    password: Option<&str>,
    now: Timestamp,
) -> Result<Inspected, CliError> {
    let ca = ca.map(read).transpose()?;
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
    if path.is_file() && matches!(extension, "p12" | "pfx" | "jks") {
        let bytes = read(path)?;
        let name = path.display().to_string();
        let (description, contents) = describe_store(&name, &bytes, password);
        let material = match &contents {
            Some(contents) => {
                let (chain, key, trusted) = store_material(contents);
                let ca = ca.or_else(|| (!trusted.is_empty()).then(|| trusted.into_bytes()));
                let chain = (!chain.is_empty()).then(|| chain.into_bytes());
                material::describe(
                    chain.as_deref(),
                    key.as_ref().map(String::as_bytes),
                    ca.as_deref(),
                    now,
                )
            }
            None => material::describe(None, None, ca.as_deref(), now),
        };
        return Ok(Inspected {
            source: name,
            material,
            stores: vec![description],
        });
    }
    let (crt, key, ca) = if path.is_dir() {
        let crt = read_if_present(&path.join(TLS_CRT))?;
        let key = read_if_present(&path.join(TLS_KEY))?;
        let ca = match ca {
            Some(ca) => Some(ca),
            None => read_if_present(&path.join(CA_CRT))?,
        };
        (crt, key, ca)
    } else {
        let pem = read(path)?;
        // A key is looked for only where a PEM block says there is one.
        let key = String::from_utf8_lossy(&pem)
            .contains("PRIVATE KEY-----")
            .then(|| pem.clone());
        (Some(pem), key, ca)
    };
    let mut stores = Vec::new();
    if path.is_dir() {
        for key in STORE_KEYS {
            if let Some(bytes) = read_if_present(&path.join(key))? {
                stores.push(describe_store(key, &bytes, password).0);
            }
        }
    }
    Ok(Inspected {
        source: path.display().to_string(),
        material: material::describe(crt.as_deref(), key.as_deref(), ca.as_deref(), now),
        stores,
    })
}
