//! The Secret a Certificate owns: reading what is there, and building what should be there
//! (SPEC "The Secret"). Pure.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use super::spec::ValidatedSpec;
use crate::api::{Certificate, SecretDeletionPolicy};
use crate::pki::{CertificateInfo, PrivateKey, parse_certificate_chain};

pub const TLS_CRT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
pub const CA_CRT: &str = "ca.crt";
pub const COMBINED_PEM: &str = "tls-combined.pem";
/// Istio's plug-in CA keys, as `istioctl` and Istio's docs name them in the `cacerts` Secret.
pub const ISTIO_CA_CERT: &str = "ca-cert.pem";
pub const ISTIO_CA_KEY: &str = "ca-key.pem";
pub const ISTIO_CERT_CHAIN: &str = "cert-chain.pem";
pub const ISTIO_ROOT_CERT: &str = "root-cert.pem";
pub const ISTIO_KEYS: [&str; 4] = [ISTIO_CA_CERT, ISTIO_CA_KEY, ISTIO_CERT_CHAIN, ISTIO_ROOT_CERT];
pub const KEY_DER: &str = "key.der";
pub const SECRET_TYPE_TLS: &str = "kubernetes.io/tls";

/// The label that marks a Secret as a Certificate's, and names it.
pub const LABEL_CERTIFICATE_NAME: &str = "certkeeper.io/certificate-name";
pub const ANN_CERTIFICATE_NAME: &str = "certkeeper.io/certificate-name";
pub const ANN_ISSUER_NAME: &str = "certkeeper.io/issuer-name";
pub const ANN_ISSUER_KIND: &str = "certkeeper.io/issuer-kind";
pub const ANN_ISSUER_GROUP: &str = "certkeeper.io/issuer-group";
pub const ANN_COMMON_NAME: &str = "certkeeper.io/common-name";
pub const ANN_ALT_NAMES: &str = "certkeeper.io/alt-names";
pub const ANN_IP_SANS: &str = "certkeeper.io/ip-sans";
pub const ANN_URI_SANS: &str = "certkeeper.io/uri-sans";
pub const ANN_REVISION: &str = "certkeeper.io/revision";

/// The Certificate (namespace and name) a Secret belongs to, by its label.
pub fn certificate_of<S: Resource>(secret: &S) -> Option<crate::cluster::ObjectKey> {
    let meta = secret.meta();
    Some((
        meta.namespace.clone()?,
        meta.labels.as_ref()?.get(LABEL_CERTIFICATE_NAME)?.clone(),
    ))
}

/// What the Certificate's Secret holds, as the policies see it.
#[derive(Debug)]
pub enum SecretState {
    Missing,
    /// A required key is absent or empty.
    MissingData(&'static str),
    /// The certificate or key cannot be parsed (the message says which).
    Invalid(String),
    Present(CurrentKeyPair),
}

/// A parseable certificate chain and key from the Secret.
#[derive(Debug)]
pub struct CurrentKeyPair {
    /// Leaf first; never empty.
    pub chain: Vec<CertificateInfo>,
    pub key: PrivateKey,
    pub issuer_name: Option<String>,
    pub issuer_kind: Option<String>,
    pub issuer_group: Option<String>,
    pub revision: Option<i64>,
}

impl CurrentKeyPair {
    pub fn leaf(&self) -> &CertificateInfo {
        // `read` only builds a CurrentKeyPair from a non-empty chain.
        &self.chain[0]
    }
}

/// The non-empty value of `key` in a Secret's data.
pub fn data<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.as_slice())
        .filter(|b| !b.is_empty())
}

fn annotation(secret: &Secret, key: &str) -> Option<String> {
    secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .cloned()
}

/// Reads a Secret (or its absence) into what the policies need.
pub fn read(secret: Option<&Secret>) -> SecretState {
    let Some(secret) = secret else {
        return SecretState::Missing;
    };
    let Some(crt) = data(secret, TLS_CRT) else {
        return SecretState::MissingData(TLS_CRT);
    };
    let Some(key) = data(secret, TLS_KEY) else {
        return SecretState::MissingData(TLS_KEY);
    };
    let chain = match parse_certificate_chain(crt) {
        Ok(chain) if !chain.is_empty() => chain,
        Ok(_) => return SecretState::Invalid(format!("{TLS_CRT} holds no certificate")),
        Err(e) => return SecretState::Invalid(format!("{TLS_CRT} cannot be parsed: {e}")),
    };
    let key = match PrivateKey::from_pem(key) {
        Ok(k) => k,
        Err(e) => return SecretState::Invalid(format!("{TLS_KEY} cannot be parsed: {e}")),
    };
    SecretState::Present(CurrentKeyPair {
        chain,
        key,
        issuer_name: annotation(secret, ANN_ISSUER_NAME),
        issuer_kind: annotation(secret, ANN_ISSUER_KIND),
        issuer_group: annotation(secret, ANN_ISSUER_GROUP),
        revision: annotation(secret, ANN_REVISION).and_then(|r| r.parse().ok()),
    })
}

/// The PEM that goes into the Secret's data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretMaterial {
    /// tls.crt: leaf then chain without the self-signed root.
    pub chain_pem: String,
    /// tls.key, in the spec's encoding.
    pub key_pem: String,
    /// key.der, when the DER output is requested.
    pub key_der: Option<Vec<u8>>,
    /// ca.crt.
    pub ca_pem: String,
    /// The key as PKCS#8 DER, for the keystores.
    pub key_pkcs8: Vec<u8>,
    /// The keystores (`keystore.p12`, ...), by Secret key.
    pub stores: BTreeMap<String, Vec<u8>>,
}

/// The owner reference that makes Kubernetes delete the Secret with its Certificate.
pub fn owner_reference(cert: &Certificate) -> Option<OwnerReference> {
    cert.controller_owner_ref(&())
}

/// A resourceVersion no object holds: the largest a storage revision can be written as.
pub const NO_OBJECT_HOLDS: &str = "18446744073709551615";

/// Makes the apply of `desired` create the Secret only. The API server takes a resourceVersion in
/// an apply as a precondition on the object it finds (409 Conflict when they differ), and has
/// none to check when it creates the object: with one no object holds, a Secret that exists
/// refuses the apply, whatever the watches have shown so far, and a missing one is created.
pub fn create_only(desired: &mut Secret) {
    desired.metadata.resource_version = Some(NO_OBJECT_HOLDS.to_owned());
}

/// The Secret as certkeeper wants it: exactly the fields its server-side apply owns.
pub fn desired_secret(
    cert: &Certificate,
    spec: &ValidatedSpec,
    leaf: &CertificateInfo,
    material: &SecretMaterial,
    revision: i64,
) -> Secret {
    let name = cert.metadata.name.clone().unwrap_or_default();
    let template = cert.spec.secret_template.clone().unwrap_or_default();

    let mut labels = template.labels.unwrap_or_default();
    labels.insert(LABEL_CERTIFICATE_NAME.into(), name.clone());

    let mut annotations = template.annotations.unwrap_or_default();
    let join = |v: Vec<String>| v.join(",");
    annotations.extend([
        (ANN_CERTIFICATE_NAME.to_owned(), name.clone()),
        (ANN_ISSUER_NAME.to_owned(), spec.issuer_ref.name.clone()),
        (ANN_ISSUER_KIND.to_owned(), spec.issuer_ref.kind().to_owned()),
        (ANN_ISSUER_GROUP.to_owned(), spec.issuer_ref.group().to_owned()),
        (
            ANN_COMMON_NAME.to_owned(),
            leaf.common_name.clone().unwrap_or_default(),
        ),
        (ANN_ALT_NAMES.to_owned(), join(leaf.dns_names.clone())),
        (
            ANN_IP_SANS.to_owned(),
            join(leaf.ip_addresses.iter().map(ToString::to_string).collect()),
        ),
        (ANN_URI_SANS.to_owned(), join(leaf.uris.clone())),
        (ANN_REVISION.to_owned(), revision.to_string()),
    ]);

    let mut data = BTreeMap::from([
        (
            TLS_CRT.to_owned(),
            ByteString(material.chain_pem.clone().into_bytes()),
        ),
        (
            TLS_KEY.to_owned(),
            ByteString(material.key_pem.clone().into_bytes()),
        ),
        (
            CA_CRT.to_owned(),
            ByteString(material.ca_pem.clone().into_bytes()),
        ),
    ]);
    if spec.combined_pem {
        // cert-manager's layout: the key, then the chain.
        let combined = format!("{}\n{}", material.key_pem.trim_end(), material.chain_pem);
        data.insert(COMBINED_PEM.to_owned(), ByteString(combined.into_bytes()));
    }
    if spec.istio_ca_certs {
        // ca-cert.pem the CA's own certificate, cert-chain.pem it and its issuers up to and
        // including the root, root-cert.pem the roots istiod distributes (ca.crt: both during
        // a rotation).
        let own = crate::pki::parse_pem_certificates(material.chain_pem.as_bytes())
            .ok()
            .and_then(|c| c.into_iter().next())
            .map(|der| pem::encode(&pem::Pem::new("CERTIFICATE", der)))
            .unwrap_or_default();
        let mut chain = material.chain_pem.trim_end().to_owned();
        if let Some(root) = crate::pki::parse_pem_certificates(material.ca_pem.as_bytes())
            .ok()
            .and_then(|c| c.into_iter().next())
        {
            let root = pem::encode(&pem::Pem::new("CERTIFICATE", root));
            if !chain.contains(root.trim()) {
                chain = format!("{chain}\n{}", root.trim_end());
            }
        }
        for (key, value) in [
            (ISTIO_CA_CERT, own),
            (ISTIO_CA_KEY, material.key_pem.clone()),
            (ISTIO_CERT_CHAIN, format!("{chain}\n")),
            (ISTIO_ROOT_CERT, material.ca_pem.clone()),
        ] {
            data.insert(key.to_owned(), ByteString(value.into_bytes()));
        }
    }
    if let Some(der) = &material.key_der {
        data.insert(KEY_DER.to_owned(), ByteString(der.clone()));
    }
    for (key, store) in &material.stores {
        data.insert(key.clone(), ByteString(store.clone()));
    }

    let owner_references = match spec.deletion_policy {
        SecretDeletionPolicy::Delete => owner_reference(cert).map(|o| vec![o]),
        SecretDeletionPolicy::Orphan => None,
    };

    Secret {
        metadata: ObjectMeta {
            name: Some(spec.secret_name.clone()),
            namespace: cert.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references,
            ..ObjectMeta::default()
        },
        type_: Some(SECRET_TYPE_TLS.to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

/// Whether `current` already carries everything `desired` sets (others may add more), and
/// none of the optional outputs or the owner reference that certkeeper no longer wants.
pub fn secret_up_to_date(current: &Secret, desired: &Secret, cert: &Certificate) -> bool {
    let subset = |have: &Option<BTreeMap<String, String>>, want: &Option<BTreeMap<String, String>>| {
        want.iter()
            .flatten()
            .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    let want_data = desired.data.clone().unwrap_or_default();
    let have_data = current.data.clone().unwrap_or_default();
    let data_ok = want_data.iter().all(|(k, v)| have_data.get(k) == Some(v))
        && [COMBINED_PEM, KEY_DER]
            .iter()
            .chain(&super::keystores::STORE_KEYS)
            .chain(&ISTIO_KEYS)
            .all(|k| want_data.contains_key(*k) || !have_data.contains_key(*k));
    let uid = cert.metadata.uid.as_deref();
    let has_our_owner = current
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| Some(o.uid.as_str()) == uid);
    let wants_owner = desired
        .metadata
        .owner_references
        .as_ref()
        .is_some_and(|o| !o.is_empty());
    current.type_.as_deref() == Some(SECRET_TYPE_TLS)
        && subset(&current.metadata.labels, &desired.metadata.labels)
        && subset(&current.metadata.annotations, &desired.metadata.annotations)
        && data_ok
        && has_our_owner == wants_owner
}
