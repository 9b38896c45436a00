//! The target objects of a Bundle — a ConfigMap (and a Secret when asked) named like the
//! Bundle in each selected namespace — and the plan that brings the cluster to them: which
//! namespaces to write and which targets to remove. Pure.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use super::assemble::Assembled;
use super::pkcs12;
use super::selector::NamespaceSelector;
use crate::api::{BUNDLE_LABEL, Bundle};

/// Annotation on each target: a digest of everything certkeeper writes into it, so a target
/// already holding the current bundle is recognised from its metadata alone.
pub const HASH_ANNOTATION: &str = "certkeeper.io/bundle-hash";

/// What every target of one Bundle holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    pub pem: String,
    pub pkcs12: Option<Vec<u8>>,
    /// Digest of the Bundle's identity, target keys and the content above.
    pub hash: String,
}

impl Content {
    pub fn new(bundle: &Bundle, assembled: &Assembled) -> Result<Self, crate::keystore::KeystoreError> {
        let target = &bundle.spec.target;
        let pem = assembled.pem();
        let pkcs12 = match &target.pkcs12 {
            Some(_) => Some(pkcs12::truststore(&assembled.certificates)?),
            None => None,
        };
        let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let uid = bundle.metadata.uid.as_deref().unwrap_or_default();
        let keys = [
            Some(target.config_map.key.as_str()),
            target.secret.as_ref().map(|s| s.key.as_str()),
            target.pkcs12.as_ref().map(|p| p.key.as_str()),
        ];
        for part in [uid]
            .into_iter()
            .chain(keys.into_iter().map(|k| k.unwrap_or_default()))
        {
            context.update(part.as_bytes());
            context.update(&[0]);
        }
        context.update(pem.as_bytes());
        context.update(&[0]);
        context.update(pkcs12.as_deref().unwrap_or_default());
        let hash = crate::pki::lower_hex(&context.finish().as_ref()[..16]);
        Ok(Self { pem, pkcs12, hash })
    }
}

/// The owner reference that lets the API server's garbage collector remove a target when its
/// Bundle is deleted, controller or not. No blockOwnerDeletion: that would need update rights
/// on bundles/finalizers, and nothing waits for targets to go.
pub fn owner_reference(bundle: &Bundle) -> OwnerReference {
    OwnerReference {
        api_version: Bundle::api_version(&()).into_owned(),
        kind: Bundle::kind(&()).into_owned(),
        name: bundle.name_any(),
        uid: bundle.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

fn target_meta(bundle: &Bundle, namespace: &str, content: &Content) -> ObjectMeta {
    ObjectMeta {
        name: Some(bundle.name_any()),
        namespace: Some(namespace.to_owned()),
        labels: Some(BTreeMap::from([(BUNDLE_LABEL.to_owned(), bundle.name_any())])),
        annotations: Some(BTreeMap::from([(
            HASH_ANNOTATION.to_owned(),
            content.hash.clone(),
        )])),
        owner_references: Some(vec![owner_reference(bundle)]),
        ..ObjectMeta::default()
    }
}

/// The ConfigMap target in `namespace`: PEM under the configMap key, the truststore (if asked)
/// in binaryData.
pub fn desired_config_map(bundle: &Bundle, namespace: &str, content: &Content) -> ConfigMap {
    let target = &bundle.spec.target;
    ConfigMap {
        metadata: target_meta(bundle, namespace, content),
        data: Some(BTreeMap::from([(
            target.config_map.key.clone(),
            content.pem.clone(),
        )])),
        binary_data: target
            .pkcs12
            .as_ref()
            .zip(content.pkcs12.as_ref())
            .map(|(key, der)| BTreeMap::from([(key.key.clone(), ByteString(der.clone()))])),
        ..ConfigMap::default()
    }
}

/// The Secret target in `namespace` (type Opaque), when the Bundle asks for one.
pub fn desired_secret(bundle: &Bundle, namespace: &str, content: &Content) -> Option<Secret> {
    let target = &bundle.spec.target;
    let key = target.secret.as_ref()?;
    let mut data = BTreeMap::from([(key.key.clone(), ByteString(content.pem.clone().into_bytes()))]);
    if let (Some(key), Some(der)) = (&target.pkcs12, &content.pkcs12) {
        data.insert(key.key.clone(), ByteString(der.clone()));
    }
    Some(Secret {
        metadata: target_meta(bundle, namespace, content),
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Secret::default()
    })
}

/// The namespaces `selector` selects, and those being deleted (whose targets go with them and
/// which refuse new objects), from the namespaces' metadata.
pub fn selected_namespaces<'a>(
    namespaces: impl IntoIterator<Item = &'a ObjectMeta>,
    selector: &NamespaceSelector,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut selected = BTreeSet::new();
    let mut terminating = BTreeSet::new();
    let empty = BTreeMap::new();
    for namespace in namespaces {
        let Some(name) = namespace.name.clone() else {
            continue;
        };
        if namespace.deletion_timestamp.is_some() {
            terminating.insert(name);
        } else if selector.matches(namespace.labels.as_ref().unwrap_or(&empty)) {
            selected.insert(name);
        }
    }
    (selected, terminating)
}

/// The targets of one kind that exist: namespace → their hash annotation.
pub type Existing = BTreeMap<String, Option<String>>;

/// What to write and remove so that every selected namespace holds `hash`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub apply_config_maps: Vec<String>,
    pub apply_secrets: Vec<String>,
    pub delete_config_maps: Vec<String>,
    pub delete_secrets: Vec<String>,
    /// Selected namespaces.
    pub targets: usize,
}

pub fn plan(
    selected: &BTreeSet<String>,
    terminating: &BTreeSet<String>,
    config_maps: &Existing,
    secrets: &Existing,
    want_secret: bool,
    hash: &str,
) -> Plan {
    let stale = |existing: &Existing, namespace: &String| {
        existing.get(namespace).and_then(|h| h.as_deref()) != Some(hash)
    };
    let unselected = |existing: &Existing| {
        existing
            .keys()
            .filter(|ns| !selected.contains(*ns) && !terminating.contains(*ns))
            .cloned()
            .collect::<Vec<_>>()
    };
    Plan {
        apply_config_maps: selected
            .iter()
            .filter(|ns| stale(config_maps, ns))
            .cloned()
            .collect(),
        apply_secrets: match want_secret {
            true => selected.iter().filter(|ns| stale(secrets, ns)).cloned().collect(),
            false => Vec::new(),
        },
        delete_config_maps: unselected(config_maps),
        delete_secrets: match want_secret {
            true => unselected(secrets),
            false => secrets
                .keys()
                .filter(|ns| !terminating.contains(*ns))
                .cloned()
                .collect(),
        },
        targets: selected.len(),
    }
}

impl Plan {
    pub fn writes_nothing(&self) -> bool {
        self.apply_config_maps.is_empty()
            && self.apply_secrets.is_empty()
            && self.delete_config_maps.is_empty()
            && self.delete_secrets.is_empty()
    }
}

/// The resourceVersion each target had after certkeeper last wrote it, by (kind, namespace,
/// name). A cached target at another version was changed by someone else since (its data
/// edited, a key removed), even if its hash annotation still matches: it is written again.
/// Empty after a restart, when the annotation alone decides.
#[derive(Debug, Default)]
pub struct WrittenVersions(
    std::sync::Mutex<std::collections::HashMap<(&'static str, String, String), String>>,
);

impl WrittenVersions {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<(&'static str, String, String), String>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the version a write of a target returned.
    pub fn wrote(&self, kind: &'static str, namespace: &str, name: &str, version: Option<String>) {
        let key = (kind, namespace.to_owned(), name.to_owned());
        match version {
            Some(version) => self.lock().insert(key, version),
            None => self.lock().remove(&key),
        };
    }

    /// Forgets a removed target.
    pub fn removed(&self, kind: &'static str, namespace: &str, name: &str) {
        self.lock().remove(&(kind, namespace.to_owned(), name.to_owned()));
    }

    /// Whether a target seen at `version` may differ from what certkeeper last wrote.
    fn changed_since_written(
        &self,
        kind: &'static str,
        namespace: &str,
        name: &str,
        version: Option<&str>,
    ) -> bool {
        let key = (kind, namespace.to_owned(), name.to_owned());
        self.lock()
            .get(&key)
            .is_some_and(|written| Some(written.as_str()) != version)
    }
}

/// The targets of `kind` of the Bundle `bundle` in a cache of target metadata: those of its
/// name labelled with it, with their hash annotation — none for a target changed by someone
/// else since certkeeper wrote it.
pub fn existing_targets<'a, K: Resource + 'a>(
    bundle: &str,
    kind: &'static str,
    cached: impl IntoIterator<Item = &'a K>,
    written: &WrittenVersions,
) -> Existing {
    cached
        .into_iter()
        .filter(|t| {
            t.meta().name.as_deref() == Some(bundle)
                && t.meta()
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(BUNDLE_LABEL))
                    .map(String::as_str)
                    == Some(bundle)
        })
        .filter_map(|t| {
            let meta = t.meta();
            let namespace = meta.namespace.clone()?;
            let tampered =
                written.changed_since_written(kind, &namespace, bundle, meta.resource_version.as_deref());
            let hash = match tampered {
                true => None,
                false => meta
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(HASH_ANNOTATION))
                    .cloned(),
            };
            Some((namespace, hash))
        })
        .collect()
}
