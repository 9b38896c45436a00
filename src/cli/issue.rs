//! `issue -f FILE|DIR... --out-dir DIR`: issues certificates with no cluster, from the same
//! manifests the cluster will use. Issuers, ClusterIssuers and Certificates are read, the CA
//! hierarchy is resolved in dependency order, and each Certificate's Secret is written as
//! files, `DIR/NAMESPACE/SECRETNAME/{tls.crt,tls.key,ca.crt}`. Everything that decides runs the
//! controller's code: spec validation and defaults, CA loading, the trigger policies (so a
//! re-run keeps what is still valid and matches), renewal times, signing and the Secret layout.
//! CertificatePolicies among the manifests guard their issuers as they would in the cluster.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use super::manifests::{self, Document};
use super::policy::PolicySet;
use super::text::wrap;
use super::{CliError, Outcome, convert};
use crate::api::{
    Certificate, ClusterIssuer, GROUP, Issuer, IssuerSpec, PrivateKeyRotationPolicy, RENEW_REQUESTED_AT,
};
use crate::certificate::keystores;
use crate::certificate::reconcile::sign;
use crate::certificate::requests::{Pending, RenewRequest};
use crate::certificate::schedule;
use crate::certificate::secret::{self, SecretState};
use crate::certificate::spec::{self, ValidatedSpec};
use crate::certificate::triggers::{self, Decision, PolicyInput, Signer};
use crate::issuance_policy::PolicyDecision;
use crate::issuer::ca::load_ca;

/// Data keys holding private key material: written mode 0600.
const KEY_FILES: [&str; 8] = [
    secret::TLS_KEY,
    secret::ISTIO_CA_KEY,
    secret::KEY_DER,
    secret::COMBINED_PEM,
    keystores::KEYSTORE_P12,
    keystores::TRUSTSTORE_P12,
    keystores::KEYSTORE_JKS,
    keystores::TRUSTSTORE_JKS,
];

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  certkeeper issue -f manifests/examples/ --out-dir certs/\n  \
                        certkeeper issue -f ca.yaml -f services.yaml --out-dir certs/ -n dev\n\n\
                        Re-running keeps certificates that are still valid and match their spec."
)]
pub struct IssueArgs {
    /// Manifest file, directory (its *.yaml, *.yml, *.json) or `-` for stdin; repeatable.
    /// cert-manager.io/v1 objects are converted as `certkeeper convert` does.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Where to write NAMESPACE/SECRETNAME/{tls.crt,tls.key,ca.crt}.
    #[arg(long)]
    pub out_dir: PathBuf,
    /// Namespace of the objects that have none.
    #[arg(short, long, default_value = "default")]
    pub namespace: String,
    /// Namespace the ClusterIssuers read CA Secrets from.
    #[arg(long, default_value = "certkeeper-system")]
    pub cluster_resource_namespace: String,
}

pub fn run(args: &IssueArgs, now: Timestamp) -> Result<Outcome, CliError> {
    let documents = manifests::read_all(&args.files)?;
    let settings = Settings {
        out_dir: args.out_dir.clone(),
        default_namespace: args.namespace.clone(),
        cluster_resource_namespace: args.cluster_resource_namespace.clone(),
    };
    Ok(issue_all(&documents, &settings, now))
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub out_dir: PathBuf,
    pub default_namespace: String,
    pub cluster_resource_namespace: String,
}

/// What the manifests hold, namespaces defaulted.
#[derive(Default)]
struct Objects {
    issuers: BTreeMap<(String, String), Issuer>,
    cluster_issuers: BTreeMap<String, ClusterIssuer>,
    certificates: Vec<Certificate>,
    /// Secrets among the manifests: the keystores' passwords.
    secrets: BTreeMap<SecretKey, Secret>,
}

/// The namespace and name of a Secret.
type SecretKey = (String, String);

/// Where one Certificate's issuer gets its signing key from.
#[derive(Clone)]
enum Source {
    SelfSigned,
    /// A CA issuer: its CA Secret, and the Certificate producing it (if any in the manifests).
    Ca {
        issuer: String,
        ca: Box<crate::api::CaIssuer>,
        secret: SecretKey,
        producer: Option<usize>,
    },
}

/// Issues every Certificate of `documents`; one line per object that fails.
pub fn issue_all(documents: &[Document], settings: &Settings, now: Timestamp) -> Outcome {
    let mut outcome = Outcome::default();
    let objects = load(documents, settings, &mut outcome);
    // The CertificatePolicies among the manifests guard their issuers here as in a cluster.
    let policies = PolicySet::from_documents(documents, &settings.default_namespace, false, &mut outcome);
    let unreadable = outcome.failures.len();
    let certificates = &objects.certificates;
    let total = certificates.len();

    // Which Certificate writes which Secret.
    let mut producers: HashMap<SecretKey, usize> = HashMap::new();
    let mut failed: BTreeMap<usize, String> = BTreeMap::new();
    for (i, cert) in certificates.iter().enumerate() {
        let key = (
            cert.namespace().unwrap_or_default(),
            cert.spec.secret_name.clone(),
        );
        if let Some(&other) = producers.get(&key) {
            let message = format!(
                "spec.secretName {} is also the Secret of {}",
                key.1,
                name(&certificates[other])
            );
            failed.insert(i, message);
        } else {
            producers.insert(key, i);
        }
    }

    // Validate and resolve issuers: pure, before anything is written.
    let mut plans: BTreeMap<usize, (ValidatedSpec, Source)> = BTreeMap::new();
    for (i, cert) in certificates.iter().enumerate() {
        if failed.contains_key(&i) {
            continue;
        }
        let planned = spec::validate(&cert.spec)
            .map_err(|e| e.0)
            .and_then(|spec| match policies.decide(cert, &spec) {
                PolicyDecision::Denied(why) | PolicyDecision::Unavailable(why) => {
                    Err(format!("Denied: {why}"))
                }
                PolicyDecision::Unguarded | PolicyDecision::Allowed(_) => Ok(spec),
            })
            .and_then(|spec| Ok((spec, source(cert, &objects, &producers, settings)?)));
        match planned {
            Ok(plan) => {
                plans.insert(i, plan);
            }
            Err(why) => {
                failed.insert(i, why);
            }
        }
    }

    // Dependency order: a CA's Certificate before those its issuer signs; cycles named.
    let order = order(certificates, &plans, &mut failed);

    let mut results: BTreeMap<usize, Result<(), ()>> = BTreeMap::new();
    for i in order {
        let cert = &certificates[i];
        let Some((spec, source)) = plans.get(&i).filter(|_| !failed.contains_key(&i)) else {
            continue;
        };
        if let Source::Ca {
            producer: Some(p), ..
        } = source
            && results.get(p) != Some(&Ok(()))
        {
            failed.insert(
                i,
                format!(
                    "its issuer's CA, {}, could not be issued",
                    name(&certificates[*p])
                ),
            );
            continue;
        }
        match issue_one(cert, spec, source, settings, &objects.secrets, now) {
            Ok(line) => {
                outcome.line(line);
                results.insert(i, Ok(()));
            }
            Err(why) => {
                failed.insert(i, why);
                results.insert(i, Err(()));
            }
        }
    }
    for (i, why) in &failed {
        outcome.fail(format!("{}: {why}", name(&certificates[*i])));
    }
    let issued = total - failed.len();
    outcome.summary = format!("{} of {total} Certificates could not be issued", failed.len());
    if unreadable > 0 {
        outcome.summary += &format!(", and {unreadable} objects could not be read");
    }
    if total == 0 && outcome.failures.is_empty() {
        outcome.line("no Certificates in the manifests");
    } else if failed.is_empty() {
        outcome.line(format!(
            "{issued} Certificates under {}",
            settings.out_dir.display()
        ));
    }
    outcome
}

fn name(cert: &Certificate) -> String {
    format!(
        "Certificate {}/{}",
        cert.namespace().unwrap_or_default(),
        cert.name_any()
    )
}

/// Reads the Issuers, ClusterIssuers and Certificates (cert-manager.io/v1 converted first);
/// other kinds (Namespaces, a kustomization) are ignored.
fn load(documents: &[Document], settings: &Settings, outcome: &mut Outcome) -> Objects {
    let mut objects = Objects::default();
    for document in documents {
        if document.api_version() == "v1" && document.kind() == "Secret" {
            match serde_json::from_value::<Secret>(document.object.clone()) {
                Ok(secret) => {
                    let ns = secret.metadata.namespace.clone();
                    let key = (
                        ns.unwrap_or(settings.default_namespace.clone()),
                        secret.metadata.name.clone().unwrap_or_default(),
                    );
                    objects.secrets.insert(key, secret);
                }
                Err(e) => outcome.fail(format!("{} ({}): {e}", document.describe(), document.source)),
            }
            continue;
        }
        // certkeeper.io objects of the version the API serves only.
        if document
            .api_version()
            .split_once('/')
            .is_some_and(|(group, v)| group == GROUP && v != "v1")
        {
            continue;
        }
        let Some(object) = convert::certkeeper_object(document, outcome) else {
            continue;
        };
        let failed = |outcome: &mut Outcome, e: &dyn std::fmt::Display| {
            outcome.fail(format!("{} ({}): {e}", document.describe(), document.source))
        };
        match document.kind() {
            "Issuer" => match typed::<Issuer>(&object) {
                Ok(mut issuer) => {
                    let ns = issuer.namespace().unwrap_or(settings.default_namespace.clone());
                    issuer.metadata.namespace = Some(ns.clone());
                    let key = (ns, issuer.name_any());
                    if objects.issuers.contains_key(&key) {
                        failed(outcome, &"defined twice");
                    }
                    objects.issuers.insert(key, issuer);
                }
                Err(e) => failed(outcome, &e),
            },
            "ClusterIssuer" => match typed::<ClusterIssuer>(&object) {
                Ok(mut issuer) => {
                    issuer.metadata.namespace = None;
                    if objects.cluster_issuers.contains_key(&issuer.name_any()) {
                        failed(outcome, &"defined twice");
                    }
                    objects.cluster_issuers.insert(issuer.name_any(), issuer);
                }
                Err(e) => failed(outcome, &e),
            },
            "Certificate" => match typed::<Certificate>(&object) {
                Ok(mut cert) => {
                    let ns = cert.namespace().unwrap_or(settings.default_namespace.clone());
                    cert.metadata.namespace = Some(ns);
                    let duplicate = objects
                        .certificates
                        .iter()
                        .any(|c| c.namespace() == cert.namespace() && c.name_any() == cert.name_any());
                    if duplicate {
                        failed(outcome, &"defined twice");
                    } else {
                        objects.certificates.push(cert);
                    }
                }
                Err(e) => failed(outcome, &e),
            },
            _ => {}
        }
    }
    objects
}

/// `object` as `K`; a field `K` does not know is an error, as the API server's strict field
/// validation makes it (a misspelled `dnsName` must not issue a certificate without names).
fn typed<K: serde::de::DeserializeOwned + serde::Serialize>(object: &serde_json::Value) -> Result<K, String> {
    let (typed, unknown) = convert::typed_with_unknown_fields::<K>(object)?;
    match unknown.is_empty() {
        true => Ok(typed),
        false => Err(format!("unknown field {}", unknown.join(", "))),
    }
}

/// The issuer a Certificate references, as the controller's `signer::resolve` reads it,
/// from the manifests instead of the cluster.
fn source(
    cert: &Certificate,
    objects: &Objects,
    producers: &HashMap<SecretKey, usize>,
    settings: &Settings,
) -> Result<Source, String> {
    let issuer_ref = &cert.spec.issuer_ref;
    if issuer_ref.group() != GROUP {
        return Err(format!(
            "issuerRef.group {:?} is not served by certkeeper (expected {GROUP})",
            issuer_ref.group()
        ));
    }
    let namespace = cert.namespace().unwrap_or_default();
    let (spec, described, ca_namespace): (&IssuerSpec, String, String) = match issuer_ref.kind() {
        "Issuer" => {
            let issuer = objects
                .issuers
                .get(&(namespace.clone(), issuer_ref.name.clone()))
                .ok_or_else(|| format!("Issuer {namespace}/{} is not in the manifests", issuer_ref.name))?;
            let described = format!("Issuer {namespace}/{}", issuer_ref.name);
            (&issuer.spec, described, namespace)
        }
        "ClusterIssuer" => {
            let issuer = objects
                .cluster_issuers
                .get(&issuer_ref.name)
                .ok_or_else(|| format!("ClusterIssuer {} is not in the manifests", issuer_ref.name))?;
            let described = format!("ClusterIssuer {}", issuer_ref.name);
            (
                &issuer.spec.issuer,
                described,
                settings.cluster_resource_namespace.clone(),
            )
        }
        other => return Err(format!("issuerRef.kind {other:?} is not Issuer or ClusterIssuer")),
    };
    match (&spec.self_signed, &spec.ca) {
        (Some(_), None) => Ok(Source::SelfSigned),
        (None, Some(ca)) if ca.pkcs11.is_some() => Err(format!(
            "{described} keeps its CA key on an HSM (spec.ca.pkcs11): `certkeeper issue` signs \
             only with keys in files; issue these Certificates in the cluster"
        )),
        (None, Some(ca)) => {
            let secret = (ca_namespace, ca.secret_name.clone());
            let producer = producers.get(&secret).copied();
            if producer.is_none() && !secret_dir(settings, &secret).join(secret::TLS_CRT).exists() {
                return Err(format!(
                    "{described}: its CA Secret {}/{} is neither issued by a Certificate of the \
                     manifests nor present in {}",
                    secret.0,
                    secret.1,
                    secret_dir(settings, &secret).display()
                ));
            }
            Ok(Source::Ca {
                issuer: described,
                ca: Box::new(ca.clone()),
                secret,
                producer,
            })
        }
        _ => Err(format!("{described} must set exactly one of selfSigned or ca")),
    }
}

/// The Certificates in an order where each comes after the one producing its issuer's CA.
/// Those on a cycle are marked failed, naming the cycle.
fn order(
    certificates: &[Certificate],
    plans: &BTreeMap<usize, (ValidatedSpec, Source)>,
    failed: &mut BTreeMap<usize, String>,
) -> Vec<usize> {
    let depends_on = |i: usize| match plans.get(&i) {
        Some((_, Source::Ca { producer, .. })) => *producer,
        _ => None,
    };
    let mut done: BTreeSet<usize> = BTreeSet::new();
    let mut order = Vec::new();
    for start in plans.keys().copied() {
        // Each Certificate depends on at most one other: follow the path.
        let mut path: Vec<usize> = Vec::new();
        let mut at = Some(start);
        while let Some(i) = at {
            if done.contains(&i) {
                break;
            }
            if let Some(pos) = path.iter().position(|&p| p == i) {
                let cycle: Vec<usize> = path[pos..].to_vec();
                let mut names: Vec<String> = cycle.iter().map(|&c| name(&certificates[c])).collect();
                names.push(name(&certificates[i]));
                let message = format!(
                    "its issuer's CA depends on itself: {} (each signed by the CA of the next)",
                    names.join(" -> ")
                );
                for c in cycle {
                    failed.insert(c, message.clone());
                }
                break;
            }
            path.push(i);
            at = depends_on(i);
        }
        for &i in path.iter().rev() {
            if done.insert(i) {
                order.push(i);
            }
        }
    }
    order
}

fn secret_dir(settings: &Settings, (namespace, name): &SecretKey) -> PathBuf {
    settings.out_dir.join(namespace).join(name)
}

/// The files of a Secret directory as the Secret the controller would read; `None` when the
/// directory does not exist. The issuer annotations are the spec's: files carry no metadata,
/// and a change of issuer still shows as a chain no longer signed by it (`CARotated`).
fn read_secret_dir(dir: &Path, spec: Option<&ValidatedSpec>) -> Result<Option<Secret>, String> {
    if !dir.is_dir() {
        return Ok(None);
    }
    let mut data = BTreeMap::new();
    for key in [secret::TLS_CRT, secret::TLS_KEY, secret::CA_CRT] {
        let path = dir.join(key);
        if path.exists() {
            let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            data.insert(key.to_owned(), ByteString(bytes));
        }
    }
    let mut secret = Secret {
        data: Some(data),
        type_: Some(secret::SECRET_TYPE_TLS.into()),
        ..Secret::default()
    };
    if let Some(spec) = spec {
        secret.metadata.annotations = Some(BTreeMap::from([
            (secret::ANN_ISSUER_NAME.to_owned(), spec.issuer_ref.name.clone()),
            (
                secret::ANN_ISSUER_KIND.to_owned(),
                spec.issuer_ref.kind().to_owned(),
            ),
            (
                secret::ANN_ISSUER_GROUP.to_owned(),
                spec.issuer_ref.group().to_owned(),
            ),
        ]));
    }
    Ok(Some(secret))
}

/// One Certificate, as the controller's reconcile decides it: the trigger policies over what
/// the files hold, then signing and the Secret layout. Returns the line to print.
fn issue_one(
    cert: &Certificate,
    spec: &ValidatedSpec,
    source: &Source,
    settings: &Settings,
    secrets: &BTreeMap<SecretKey, Secret>,
    now: Timestamp,
) -> Result<String, String> {
    // As the controller: a password that cannot be read stops the Certificate, files untouched.
    let namespace = cert.namespace().unwrap_or_default();
    let passwords = keystores::passwords(&spec.keystores, &namespace, |name| {
        secrets.get(&(namespace.clone(), name.to_owned()))
    })?;
    let signer = match source {
        Source::SelfSigned => Signer::SelfSigned,
        Source::Ca {
            issuer,
            ca,
            secret: key,
            ..
        } => {
            let secret = read_secret_dir(&secret_dir(settings, key), None)?;
            let (pair, _) = load_ca(&key.0, ca, secret.as_ref(), now)
                .map_err(|problem| format!("{issuer} is not ready: {problem}"))?;
            Signer::Ca(Arc::new(pair))
        }
    };
    let dir = secret_dir(settings, &(namespace.clone(), spec.secret_name.clone()));
    let current_files = read_secret_dir(&dir, Some(spec))?;
    let state = secret::read(current_files.as_ref());
    // Offline there is no UID: the jitter is keyed on the object's name instead.
    let uid = cert
        .metadata
        .uid
        .clone()
        .unwrap_or_else(|| format!("{namespace}/{}", cert.name_any()));
    let renewal_time = match &state {
        SecretState::Present(c) => Some(schedule::renewal_time(
            c.leaf().not_before,
            c.leaf().not_after,
            spec.renew_before,
            &uid,
        )),
        _ => None,
    };
    // Judged as the controller judges it: offline there is no status but the manifest's.
    let renew_request = cert
        .annotations()
        .get(RENEW_REQUESTED_AT)
        .and_then(|v| RenewRequest::parse(v).ok());
    let pending = Pending::of(
        renew_request.as_ref(),
        None,
        false,
        &cert.status.clone().unwrap_or_default(),
        match &state {
            SecretState::Present(c) => Some(c.leaf().not_before),
            _ => None,
        },
    );
    let renew_requested_at = pending.renew.map(|r| r.at);
    let input = PolicyInput {
        spec,
        signer: &signer,
        renewal_time,
        renew_requested_at,
        // Offline there is no issuer status, hence no rotation to stage.
        rotation: crate::issuer::rotation::RotationGate::Now,
        uid: &uid,
        // Offline there are no revocation records to read or write.
        revoked: &[],
        revoke_request: None,
        now,
    };
    let trigger = match triggers::evaluate(&input, &state) {
        Decision::UpToDate(current) => {
            if !spec.keystores.is_empty() {
                write_stores(
                    &dir,
                    spec,
                    &passwords,
                    current,
                    current_secret_with_stores(&dir, current_files.clone().unwrap_or_default())?,
                    now,
                )?;
            }
            let at = renewal_time.unwrap_or(current.leaf().not_after);
            let text = format!(
                "{namespace}/{}: valid until {}, renewal at {at}",
                cert.name_any(),
                current.leaf().not_after
            );
            return Ok(wrap("kept   ", &text, 7));
        }
        Decision::Issue(trigger) => trigger,
    };
    // As the controller: rotationPolicy Never keeps a key of the right type.
    let reuse = match state {
        SecretState::Present(current)
            if spec.rotation_policy == PrivateKeyRotationPolicy::Never && current.key.spec() == spec.key =>
        {
            Some(current.key)
        }
        _ => None,
    };
    let mut issued = sign(spec, &signer, reuse, now, None).map_err(|e| format!("signing failed: {e}"))?;
    let material = &mut issued.material;
    material.stores = stores(spec, &passwords, material, None, now)?;
    let desired = secret::desired_secret(cert, spec, &issued.leaf, &issued.material, 1);
    write_secret_dir(&dir, &desired)?;
    let text = format!(
        "{namespace}/{} ({}: {}) into {}",
        cert.name_any(),
        trigger.reason.as_str(),
        trigger.message,
        dir.display()
    );
    Ok(wrap("issued", &text, 7))
}

/// Writes every data key of the Secret as a file; key material mode 0600. Each file is
/// written to a temporary name and renamed, so a reader never sees half a key.
fn write_secret_dir(dir: &Path, desired: &Secret) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (key, value) in desired.data.iter().flatten() {
        let path = dir.join(key);
        let temporary = dir.join(format!(".{key}.tmp"));
        let private = KEY_FILES.contains(&key.as_str());
        write_file(&temporary, &value.0, private)
            .and_then(|()| std::fs::rename(&temporary, &path))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    // An output the spec no longer asks for would leave a stale copy of a private key.
    let wanted = desired.data.as_ref();
    for key in [secret::COMBINED_PEM, secret::KEY_DER]
        .into_iter()
        .chain(keystores::STORE_KEYS)
        .chain(secret::ISTIO_KEYS)
    {
        let path = dir.join(key);
        if !wanted.is_some_and(|d| d.contains_key(key)) && path.exists() {
            std::fs::remove_file(&path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// The keystores for `material`, keeping those of `existing` that still hold it.
fn stores(
    spec: &ValidatedSpec,
    passwords: &keystores::Passwords,
    material: &secret::SecretMaterial,
    existing: Option<&Secret>,
    now: Timestamp,
) -> Result<BTreeMap<String, Vec<u8>>, String> {
    keystores::stores(&spec.keystores, passwords, material, existing, now)
        .map_err(|e| format!("cannot write the keystores: {e}"))
}

/// The Secret directory with its store files, as `keystores::stores` compares them.
fn current_secret_with_stores(dir: &Path, mut secret: Secret) -> Result<Secret, String> {
    let data = secret.data.get_or_insert_with(BTreeMap::new);
    for key in keystores::STORE_KEYS {
        let path = dir.join(key);
        if path.exists() {
            let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            data.insert(key.to_owned(), ByteString(bytes));
        }
    }
    Ok(secret)
}

/// A valid certificate kept: its keystores written where missing, stale (a new password, a
/// new `ca.crt`) or damaged, without a new certificate.
fn write_stores(
    dir: &Path,
    spec: &ValidatedSpec,
    passwords: &keystores::Passwords,
    current: &secret::CurrentKeyPair,
    existing: Secret,
    now: Timestamp,
) -> Result<(), String> {
    let text = |key: &str| {
        existing
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            .unwrap_or_default()
    };
    let material = secret::SecretMaterial {
        chain_pem: text(secret::TLS_CRT),
        key_pem: String::new(),
        key_der: None,
        ca_pem: text(secret::CA_CRT),
        key_pkcs8: current
            .key
            .to_der(crate::pki::KeyEncoding::Pkcs8)
            .map_err(|e| format!("cannot read the key: {e}"))?,
        stores: BTreeMap::new(),
    };
    let wanted = stores(spec, passwords, &material, Some(&existing), now)?;
    let have = existing.data.unwrap_or_default();
    for (key, bytes) in &wanted {
        if have.get(key).map(|v| &v.0) != Some(bytes) {
            let path = dir.join(key);
            let temporary = dir.join(format!(".{key}.tmp"));
            write_file(&temporary, bytes, true)
                .and_then(|()| std::fs::rename(&temporary, &path))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
    }
    for key in keystores::STORE_KEYS {
        let path = dir.join(key);
        if !wanted.contains_key(key) && path.exists() {
            std::fs::remove_file(&path).map_err(|e| format!("cannot remove {}: {e}", path.display()))?;
        }
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        options.mode(if private { 0o600 } else { 0o644 });
        let mut file = options.open(path)?;
        // The mode of open() applies only to a new file.
        let mode = if private { 0o600 } else { 0o644 };
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = private;
        let mut file = options.open(path)?;
        file.write_all(bytes)?;
        file.sync_all()
    }
}
