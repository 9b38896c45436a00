//! What the load run creates in the cluster and how it reads readiness back: the namespace,
//! the CA Secret and Issuer, the Certificates, and the count of those that are Ready.

use std::collections::HashSet;
use std::time::Duration;

use certkeeper::api::{
    CaIssuer, Certificate, CertificateSpec, GROUP, Issuer, IssuerRef, IssuerSpec, PrivateKeySpec,
    find_condition,
};
use certkeeper::pki::{
    CertificateTemplate, KeyAlgorithm, KeyEncoding, KeySpec, PkiError, PrivateKey, sign_self_signed,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use k8s_openapi::apimachinery::pkg::version::Info;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};

use crate::LoadError;
use crate::report::one_line;

/// Label on the load namespaces, so leftovers can be found: `kubectl delete ns -l certkeeper.io/load=true`.
pub const LOAD_LABEL: &str = "certkeeper.io/load";
/// The CA Secret and the CA Issuer that reads it.
pub const CA_SECRET: &str = "load-ca";
pub const ISSUER: &str = "load-ca";
/// Lifetime of every Certificate: the workload certificates of the spec.
const CERTIFICATE_DURATION: &str = "24h";
/// How many times a create is tried when the API server is overloaded or the connection drops.
const CREATE_ATTEMPTS: u32 = 5;
/// How long the first request may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a deleted namespace is looked at.
const NAMESPACE_POLL: Duration = Duration::from_secs(1);

/// A client from KUBECONFIG and the server's version; the version call is the first that
/// needs the server, so it is what tells "unreachable".
pub async fn connect() -> Result<(Client, Info), LoadError> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| LoadError::NoConfig(one_line(&e.to_string())))?;
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config).map_err(|e| LoadError::NoConfig(describe(&e)))?;
    // kube's read timeout is made for watches (minutes); a server that accepts connections
    // but does not answer should fail sooner.
    let unreachable = |detail| LoadError::Unreachable {
        server: server.clone(),
        detail,
    };
    let version = tokio::time::timeout(CONNECT_TIMEOUT, client.apiserver_version())
        .await
        .map_err(|_| unreachable(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())))?
        .map_err(|e| unreachable(describe(&e)))?;
    Ok((client, version))
}

/// Fails with the install command when the certkeeper CRDs are missing.
pub async fn check_crds(client: &Client) -> Result<(), LoadError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [crd_name::<Certificate>(), crd_name::<Issuer>()] {
        let found = api
            .get_opt(&crd)
            .await
            .map_err(kube_failed(format!("read CustomResourceDefinition {crd}")))?;
        if found.is_none() {
            return Err(LoadError::CrdMissing { crd });
        }
    }
    Ok(())
}

/// `<plural>.<group>`, the name of a kind's CRD.
fn crd_name<K: Resource<DynamicType = ()>>() -> String {
    format!("{}.{}", K::plural(&()), K::group(&()))
}

/// Creates the run's namespace; one that already exists is refused, so the tool never deletes
/// a namespace it did not create.
pub async fn create_namespace(client: &Client, name: &str) -> Result<(), LoadError> {
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some([(LOAD_LABEL.to_owned(), "true".to_owned())].into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    match Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_already_exists() => {
            Err(LoadError::NamespaceExists(name.to_owned()))
        }
        Err(e) => Err(kube_failed(format!("create namespace {name}"))(e)),
    }
}

/// Asks for the namespace's deletion (gone already is fine).
pub async fn delete_namespace(client: &Client, name: &str) -> Result<(), LoadError> {
    match Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
        Err(e) => Err(kube_failed(format!(
            "delete namespace {name} (delete it with `kubectl delete namespace {name}`)"
        ))(e)),
    }
}

/// Waits until the namespace is gone: true, or `bound` passed: false.
pub async fn wait_namespace_gone(client: &Client, name: &str, bound: Duration) -> Result<bool, LoadError> {
    let api = Api::<Namespace>::all(client.clone());
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let found = api
            .get_opt(name)
            .await
            .map_err(kube_failed(format!("read namespace {name}")))?;
        if found.is_none() {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(NAMESPACE_POLL).await;
    }
}

/// The load CA's certificate: 30 days from 5 minutes ago (cert sign and CRL sign come with
/// is_ca).
fn ca_template(now: jiff::Timestamp, common_name: &str) -> Result<CertificateTemplate, PkiError> {
    let bound = |e: jiff::Error| PkiError::InvalidCertificate(format!("CA validity: {e}"));
    Ok(CertificateTemplate {
        common_name: Some(common_name.into()),
        not_before: now
            .checked_sub(jiff::SignedDuration::from_mins(5))
            .map_err(bound)?,
        not_after: now
            .checked_add(jiff::SignedDuration::from_hours(24 * 30))
            .map_err(bound)?,
        is_ca: true,
        ..CertificateTemplate::default()
    })
}

/// The CA Secret: a self-signed ECDSA P-256 CA generated here, valid from five minutes before
/// `now` (clock skew between this machine and the controller) for 30 days, well beyond the
/// 24 h Certificates, so no leaf is shortened to the CA's end and re-issued for it.
pub fn ca_secret(now: jiff::Timestamp) -> Result<Secret, PkiError> {
    let key = PrivateKey::generate(KeySpec {
        algorithm: KeyAlgorithm::Ecdsa,
        size: 256,
    })?;
    let template = ca_template(now, "certkeeper-load CA")?;
    let issued = sign_self_signed(&template, &key)?;
    let key_pem = key.to_pem(KeyEncoding::Pkcs8)?;
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(CA_SECRET.to_owned()),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(
            [
                ("tls.crt".to_owned(), ByteString(issued.chain_pem.into_bytes())),
                ("tls.key".to_owned(), ByteString(key_pem.into_bytes())),
            ]
            .into(),
        ),
        ..Secret::default()
    })
}

/// Runs `work` (key generation: CPU work) off the runtime's workers, as pki's rule says.
pub async fn generate<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> Result<T, PkiError> + Send + 'static,
) -> Result<T, LoadError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| LoadError::Kube {
            action: what.to_owned(),
            detail: e.to_string(),
        })?
        .map_err(LoadError::from)
}

/// The PIN Secret of an HSM-held load CA.
pub const PIN_SECRET: &str = "certkeeper-load-pin";

/// A CA whose key is made on the token `uri` names (through `module`): the CA Secret holds the
/// certificate only, with the empty `tls.key` a `kubernetes.io/tls` Secret must have.
pub fn hsm_ca_secret(
    now: jiff::Timestamp,
    module: &std::path::Path,
    uri: &str,
    pin: &str,
) -> Result<Secret, PkiError> {
    use certkeeper::pkcs11::{Pkcs11Registry, Pkcs11Settings, Pkcs11Uri, generate};
    let uri: Pkcs11Uri = uri
        .parse()
        .map_err(|e: certkeeper::pkcs11::uri::UriError| PkiError::InvalidKey(e.to_string()))?;
    let registry = Pkcs11Registry::new(Pkcs11Settings {
        modules: vec![("load".into(), module.to_owned())],
        ..Pkcs11Settings::default()
    });
    let key = registry
        .module_for(&uri)
        .and_then(|module| {
            generate::generate_key_pair(&module, &uri, pin, generate::TokenKeyAlgorithm::EcdsaP256)
        })
        .and_then(|spki| registry.open_key(&uri, pin, &spki))?;
    let template = ca_template(now, "certkeeper-load HSM CA")?;
    let issued = sign_self_signed(&template, &key)?;
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(CA_SECRET.to_owned()),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/tls".to_owned()),
        data: Some(
            [
                ("tls.crt".to_owned(), ByteString(issued.chain_pem.into_bytes())),
                ("tls.key".to_owned(), ByteString(Vec::new())),
            ]
            .into(),
        ),
        ..Secret::default()
    })
}

/// The PIN Secret beside the CA Secret.
pub fn pin_secret(pin: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(PIN_SECRET.to_owned()),
            ..ObjectMeta::default()
        },
        data: Some([("pin".to_owned(), ByteString(pin.as_bytes().to_vec()))].into()),
        ..Secret::default()
    }
}

/// The CA Issuer reading [`CA_SECRET`], its key on the token `uri` names.
pub fn hsm_ca_issuer(uri: &str) -> Issuer {
    let mut issuer = ca_issuer();
    if let Some(ca) = issuer.spec.ca.as_mut() {
        ca.pkcs11 = Some(certkeeper::api::CaPkcs11 {
            uri: uri.to_owned(),
            pin_secret_ref: certkeeper::api::SecretKeySelector {
                name: PIN_SECRET.to_owned(),
                key: "pin".to_owned(),
            },
        });
    }
    issuer
}

/// The CA Issuer reading [`CA_SECRET`].
pub fn ca_issuer() -> Issuer {
    Issuer::new(
        ISSUER,
        IssuerSpec {
            ca: Some(CaIssuer {
                secret_name: CA_SECRET.to_owned(),
                ..CaIssuer::default()
            }),
            ..IssuerSpec::default()
        },
    )
}

/// Certificate number `index`: `cert-<index>`, Secret `cert-<index>-tls`, DNS name
/// `cert-<index>.<namespace>.svc`, 24 h, signed by the CA Issuer.
pub fn certificate(index: u32, namespace: &str, algorithm: KeyAlgorithm) -> Certificate {
    let name = format!("cert-{index}");
    Certificate::new(
        &name,
        CertificateSpec {
            secret_name: format!("{name}-tls"),
            issuer_ref: IssuerRef {
                name: ISSUER.to_owned(),
                kind: Some("Issuer".to_owned()),
                group: Some(GROUP.to_owned()),
            },
            dns_names: Some(vec![format!("{name}.{namespace}.svc")]),
            duration: Some(CERTIFICATE_DURATION.to_owned()),
            private_key: Some(PrivateKeySpec {
                algorithm: Some(algorithm),
                ..PrivateKeySpec::default()
            }),
            ..CertificateSpec::default()
        },
    )
}

/// Creates one Certificate, retrying what an API server under load answers with a retry in
/// mind (429, 5xx) or a dropped connection. A retry that finds the object was created by the
/// attempt before counts as created.
pub async fn create_certificate(api: &Api<Certificate>, certificate: &Certificate) -> Result<(), LoadError> {
    let name = certificate.name_any();
    let mut attempt = 1;
    loop {
        match api.create(&PostParams::default(), certificate).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if attempt > 1 && status.is_already_exists() => return Ok(()),
            Err(e) if attempt < CREATE_ATTEMPTS && is_retryable(&e) => {
                tokio::time::sleep(Duration::from_millis(200) * 2u32.pow(attempt - 1)).await;
                attempt += 1;
            }
            Err(e) => return Err(kube_failed(format!("create Certificate {name}"))(e)),
        }
    }
}

fn is_retryable(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => status.code == 429 || (500..600).contains(&status.code),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

/// Ready=True computed for the current spec: the condition's observedGeneration is the object's
/// generation (what `kubectl wait --for=condition=Ready` and the e2e suite read).
fn ready(conditions: &[Condition], generation: Option<i64>) -> Result<(), String> {
    let c = find_condition(conditions, "Ready").ok_or("no Ready condition yet")?;
    if c.status != "True" {
        return Err(format!("Ready={} ({}: {})", c.status, c.reason, c.message));
    }
    if c.observed_generation != generation {
        return Err(format!(
            "Ready=True for generation {:?}, object generation {:?}",
            c.observed_generation, generation
        ));
    }
    Ok(())
}

pub fn certificate_ready(certificate: &Certificate) -> bool {
    let conditions = certificate.status.as_ref().map_or(&[][..], |s| &s.conditions[..]);
    ready(conditions, certificate.metadata.generation).is_ok()
}

/// Ok when the Issuer is Ready for its generation; otherwise what it says instead.
pub fn issuer_readiness(issuer: &Issuer) -> Result<(), String> {
    let conditions = issuer.status.as_ref().map_or(&[][..], |s| &s.conditions[..]);
    ready(conditions, issuer.metadata.generation)
}

/// The names of the Certificates that are Ready, kept from the watch's events. A restarted
/// watch relists; the new list replaces the old set once it is complete.
#[derive(Debug, Default)]
pub struct ReadyTracker {
    ready: HashSet<String>,
    relisting: Option<HashSet<String>>,
}

impl ReadyTracker {
    pub fn apply(&mut self, event: watcher::Event<Certificate>) {
        match event {
            watcher::Event::Apply(cert) => Self::observe(&mut self.ready, &cert),
            watcher::Event::Delete(cert) => {
                self.ready.remove(&cert.name_any());
            }
            watcher::Event::Init => self.relisting = Some(HashSet::new()),
            watcher::Event::InitApply(cert) => match &mut self.relisting {
                Some(set) => Self::observe(set, &cert),
                None => Self::observe(&mut self.ready, &cert),
            },
            watcher::Event::InitDone => {
                if let Some(set) = self.relisting.take() {
                    self.ready = set;
                }
            }
        }
    }

    fn observe(set: &mut HashSet<String>, cert: &Certificate) {
        if certificate_ready(cert) {
            set.insert(cert.name_any());
        } else {
            set.remove(&cert.name_any());
        }
    }

    /// How many are Ready now.
    pub fn ready(&self) -> usize {
        self.ready.len()
    }

    /// Whether the Certificate `name` is Ready now.
    pub fn is_ready(&self, name: &str) -> bool {
        self.ready.contains(name)
    }
}

/// Turns a kube error into "what failed: why".
pub fn kube_failed(action: impl Into<String>) -> impl FnOnce(kube::Error) -> LoadError {
    let action = action.into();
    move |e| LoadError::Kube {
        action,
        detail: describe(&e),
    }
}

/// A kube error in one line: the API's own message for API errors (kube's Display repeats the
/// whole Status), the chain of causes for the rest (a refused connection is three levels down).
pub fn describe(error: &kube::Error) -> String {
    if let kube::Error::Api(status) = error {
        return match (status.message.is_empty(), status.reason.is_empty()) {
            (false, _) => format!("{} (HTTP {})", status.message, status.code),
            (true, false) => format!("{} (HTTP {})", status.reason, status.code),
            (true, true) => format!("HTTP {}", status.code),
        };
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Many errors already print their cause; do not say it twice.
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    one_line(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use certkeeper::api::{CertificateStatus, IssuerStatus};
    use certkeeper::pki::CaKeyPair;
    use certkeeper::pki::IssuerUrls;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::core::Status;
    use serde_json::json;

    fn condition(status: &str, generation: i64) -> Condition {
        Condition {
            type_: "Ready".into(),
            status: status.into(),
            reason: "Issued".into(),
            message: "m".into(),
            observed_generation: Some(generation),
            last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
        }
    }

    fn cert(name: &str, generation: i64, ready: Option<(&str, i64)>) -> Certificate {
        let mut cert = certificate(1, "ns", KeyAlgorithm::Ecdsa);
        cert.metadata.name = Some(name.into());
        cert.metadata.generation = Some(generation);
        cert.status = ready.map(|(status, observed)| CertificateStatus {
            conditions: vec![condition(status, observed)],
            ..CertificateStatus::default()
        });
        cert
    }

    #[test]
    fn certificates_ask_for_a_24h_certificate_from_the_ca_issuer() {
        let cert = certificate(7, "load-ns", KeyAlgorithm::Rsa);
        assert_eq!(cert.metadata.name.as_deref(), Some("cert-7"));
        assert_eq!(
            serde_json::to_value(&cert.spec).unwrap(),
            json!({
                "secretName": "cert-7-tls",
                "issuerRef": {"name": "load-ca", "kind": "Issuer", "group": "certkeeper.io"},
                "dnsNames": ["cert-7.load-ns.svc"],
                "duration": "24h",
                "privateKey": {"algorithm": "RSA"},
            })
        );
    }

    #[test]
    fn the_issuer_reads_the_ca_secret() {
        let issuer = ca_issuer();
        assert_eq!(issuer.metadata.name.as_deref(), Some(ISSUER));
        assert_eq!(
            serde_json::to_value(&issuer.spec).unwrap(),
            json!({"ca": {"secretName": CA_SECRET}})
        );
    }

    #[test]
    fn the_ca_secret_holds_a_ca_the_controller_accepts() {
        let now = jiff::Timestamp::now();
        let secret = ca_secret(now).unwrap();
        assert_eq!(secret.metadata.name.as_deref(), Some(CA_SECRET));
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        let data = secret.data.unwrap();
        let ca = CaKeyPair::from_pem(
            &data["tls.crt"].0,
            &data["tls.key"].0,
            None,
            IssuerUrls::default(),
        )
        .unwrap();
        let facts = ca.validate(now).unwrap();
        assert!(facts.not_after > now + jiff::SignedDuration::from_hours(24 * 29));
    }

    #[test]
    fn ready_means_true_for_the_current_generation() {
        assert!(certificate_ready(&cert("a", 2, Some(("True", 2)))));
        assert!(
            !certificate_ready(&cert("a", 2, Some(("True", 1)))),
            "stale generation"
        );
        assert!(!certificate_ready(&cert("a", 1, Some(("False", 1)))));
        assert!(!certificate_ready(&cert("a", 1, None)));
    }

    #[test]
    fn an_issuer_without_status_says_so() {
        let mut issuer = ca_issuer();
        assert_eq!(issuer_readiness(&issuer), Err("no Ready condition yet".into()));
        issuer.metadata.generation = Some(1);
        issuer.status = Some(IssuerStatus {
            conditions: vec![condition("True", 1)],
            ..IssuerStatus::default()
        });
        assert_eq!(issuer_readiness(&issuer), Ok(()));
    }

    #[test]
    fn the_tracker_counts_certificates_that_turn_ready_and_forgets_deleted_ones() {
        let mut tracker = ReadyTracker::default();
        tracker.apply(watcher::Event::Init);
        tracker.apply(watcher::Event::InitApply(cert("a", 1, None)));
        tracker.apply(watcher::Event::InitDone);
        assert_eq!(tracker.ready(), 0);
        assert!(!tracker.is_ready("a"));
        tracker.apply(watcher::Event::Apply(cert("a", 1, Some(("True", 1)))));
        tracker.apply(watcher::Event::Apply(cert("b", 1, Some(("True", 1)))));
        tracker.apply(watcher::Event::Apply(cert("b", 1, Some(("True", 1)))));
        assert_eq!(tracker.ready(), 2, "a repeated event counts once");
        assert!(tracker.is_ready("a") && tracker.is_ready("b"));
        tracker.apply(watcher::Event::Apply(cert("b", 2, Some(("True", 1)))));
        assert_eq!(
            tracker.ready(),
            1,
            "a spec change makes it not Ready until observed"
        );
        tracker.apply(watcher::Event::Delete(cert("a", 1, Some(("True", 1)))));
        assert_eq!(tracker.ready(), 0);
    }

    #[test]
    fn a_relist_replaces_the_set_once_complete() {
        let mut tracker = ReadyTracker::default();
        tracker.apply(watcher::Event::Apply(cert("gone", 1, Some(("True", 1)))));
        tracker.apply(watcher::Event::Init);
        tracker.apply(watcher::Event::InitApply(cert("x", 1, Some(("True", 1)))));
        tracker.apply(watcher::Event::InitApply(cert("y", 1, Some(("True", 1)))));
        assert_eq!(
            tracker.ready(),
            1,
            "the old set stands until the list is complete"
        );
        tracker.apply(watcher::Event::InitDone);
        assert_eq!(tracker.ready(), 2);
    }

    #[test]
    fn api_errors_read_as_the_servers_message() {
        let status = Status::failure(
            "namespaces \"x\" is forbidden: User \"bob\" cannot create",
            "Forbidden",
        )
        .with_code(403);
        let err = kube::Error::Api(status.boxed());
        assert_eq!(
            describe(&err),
            "namespaces \"x\" is forbidden: User \"bob\" cannot create (HTTP 403)"
        );
        assert!(!is_retryable(&err));
        let busy = kube::Error::Api(Status::failure("", "TooManyRequests").with_code(429).boxed());
        assert_eq!(describe(&busy), "TooManyRequests (HTTP 429)");
        assert!(is_retryable(&busy));
    }

    #[test]
    fn crd_names_are_plural_dot_group() {
        assert_eq!(crd_name::<Certificate>(), "certificates.certkeeper.io");
        assert_eq!(crd_name::<Issuer>(), "issuers.certkeeper.io");
    }
}
