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
use crate::certificate::secret::{CA_CRT, TLS_CRT, TLS_KEY, data};

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
    },
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Inspected {
    source: String,
    #[serde(flatten)]
    material: Material,
}

pub async fn run(client: Option<&Client>, args: &InspectArgs, now: Timestamp) -> Result<String, CliError> {
    let (inspected, output) = match &args.target {
        Target::Secret {
            name,
            namespace,
            output,
        } => {
            let client = client.ok_or_else(|| CliError::NoCluster("no client".into()))?;
            let namespace = namespace_or_default(&namespace.namespace, client);
            (inspect_secret(client, &namespace, name, now).await?, *output)
        }
        Target::File { path, ca, output } => (inspect_path(path, ca.as_deref(), now)?, *output),
    };
    match output {
        Some(format) => render(&inspected, format),
        None => {
            let mut out = format!("{}\n", inspected.source);
            material::write_text(&mut out, &inspected.material, 2);
            Ok(out)
        }
    }
}

async fn inspect_secret(
    client: &Client,
    namespace: &str,
    name: &str,
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
    Ok(Inspected {
        source: format!("Secret {namespace}/{name} (type {type_})"),
        material: describe_secret(&secret, now),
    })
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

fn inspect_path(path: &Path, ca: Option<&Path>, now: Timestamp) -> Result<Inspected, CliError> {
    let ca = ca.map(read).transpose()?;
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
    Ok(Inspected {
        source: path.display().to_string(),
        material: material::describe(crt.as_deref(), key.as_deref(), ca.as_deref(), now),
    })
}
