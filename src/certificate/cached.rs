//! A Certificate as the controller caches it. kube's typed store keeps each Certificate as its
//! Rust struct: every optional field of the spec and status takes its room whether set or not
//! (1.2 KB per Certificate before a single string, `cargo bench --bench controller_memory`).
//! Here the metadata stays typed (the store and the controller key on it), the few fields read
//! across every Certificate at once (its issuer, the times and conditions the metrics and the
//! issuers' rotation progress read) are projected, and spec and status are kept as the compact
//! JSON they came in, without what is projected, decoded for the one Certificate a reconcile
//! works on. The projection is packed (times as seconds, the UID as 16 bytes) so that each
//! Certificate fits a 512-byte allocation: at 10,000 Certificates every 128 bytes is 1.2 MiB.

use std::borrow::Cow;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Resource;
use kube::core::{DeserializeGuard, NamespaceResourceScope, error_boundary::InvalidObject};
use serde::{Deserialize, Serialize};

use crate::api::{Certificate, CertificateSpec, CertificateStatus, IssuerRef, find_condition, ready_status};
use crate::certificate::status::ISSUING;
use crate::cluster::uid::{uuid_bytes, uuid_string};

/// A Certificate in the controller's cache (see the module). 496 bytes, so that kube's store
/// keeps it in a 512-byte allocation (with the `Arc`'s counts), not a 640-byte one.
#[derive(Clone, Debug)]
pub struct CachedCertificate {
    /// Without the UID when it is kept in `Projected::uid`.
    metadata: ObjectMeta,
    body: Result<Projected, Box<str>>,
}

/// What a readable Certificate keeps.
#[derive(Clone, Debug)]
struct Projected {
    issuer_ref: CachedIssuerRef,
    summary: Summary,
    /// `{"spec": …, "status": …}` as JSON, without what `issuer_ref` and `summary` hold
    /// (`spec.issuerRef`, the status' times and serial number: a third of it).
    json: Box<str>,
    /// The UID, when it is a UUID as the API server writes it: 16 bytes here instead of its
    /// 36 characters in the metadata and again in the key kube's store copies from it.
    uid: Option<[u8; 16]>,
}

/// The issuer reference as the cache keeps it (48 bytes, not `IssuerRef`'s 72).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedIssuerRef {
    name: Box<str>,
    kind: Option<Box<str>>,
    group: Option<Box<str>>,
}

impl CachedIssuerRef {
    fn new(issuer_ref: &IssuerRef) -> Self {
        Self {
            name: issuer_ref.name.as_str().into(),
            kind: issuer_ref.kind.as_deref().map(Box::from),
            group: issuer_ref.group.as_deref().map(Box::from),
        }
    }

    /// The issuer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kind, defaulted to `Issuer` (as [`IssuerRef::kind`]).
    pub fn kind(&self) -> &str {
        self.kind.as_deref().unwrap_or(crate::api::DEFAULT_ISSUER_KIND)
    }

    /// The group, defaulted to `certkeeper.io` (as [`IssuerRef::group`]).
    pub fn group(&self) -> &str {
        self.group.as_deref().unwrap_or(crate::api::GROUP)
    }

    fn to_issuer_ref(&self) -> IssuerRef {
        IssuerRef {
            name: self.name.to_string(),
            kind: self.kind.as_deref().map(String::from),
            group: self.group.as_deref().map(String::from),
        }
    }
}

/// The status fields read across every Certificate at once, packed: the times as Unix seconds
/// (a `Time` is whole seconds on the wire: k8s-openapi and the API server both write `%S`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    not_before: Seconds,
    not_after: Seconds,
    renewal_time: Seconds,
    serial_number: Option<Box<str>>,
    ready: Ready,
    issuing_false: bool,
}

/// A time as Unix seconds; `i64::MIN` for none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seconds(i64);

impl Seconds {
    fn new(time: Option<&Time>) -> Self {
        Self(time.map_or(i64::MIN, |t| t.0.as_second()))
    }

    fn get(self) -> Option<Timestamp> {
        (self.0 != i64::MIN)
            .then(|| Timestamp::from_second(self.0).ok())
            .flatten()
    }
}

/// The Ready condition's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ready {
    True,
    False,
    Unknown,
}

impl Summary {
    pub fn not_before(&self) -> Option<Timestamp> {
        self.not_before.get()
    }

    pub fn not_after(&self) -> Option<Timestamp> {
        self.not_after.get()
    }

    pub fn renewal_time(&self) -> Option<Timestamp> {
        self.renewal_time.get()
    }

    /// The Ready condition's status: "True", "False" or "Unknown" (none).
    pub fn ready(&self) -> &'static str {
        match self.ready {
            Ready::True => "True",
            Ready::False => "False",
            Ready::Unknown => "Unknown",
        }
    }

    /// Whether the Issuing condition says False (nothing can be issued for it now).
    pub fn issuing_false(&self) -> bool {
        self.issuing_false
    }

    pub fn serial_number(&self) -> Option<&str> {
        self.serial_number.as_deref()
    }
}

#[derive(Serialize)]
struct BodyRef<'a> {
    spec: &'a CertificateSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: &'a Option<CertificateStatus>,
}

#[derive(Deserialize)]
struct Body {
    spec: CertificateSpec,
    #[serde(default)]
    status: Option<CertificateStatus>,
}

fn summary(status: Option<&CertificateStatus>) -> Summary {
    let ready = match status.map_or("Unknown", |s| ready_status(&s.conditions)) {
        "True" => Ready::True,
        "False" => Ready::False,
        _ => Ready::Unknown,
    };
    Summary {
        not_before: Seconds::new(status.and_then(|s| s.not_before.as_ref())),
        not_after: Seconds::new(status.and_then(|s| s.not_after.as_ref())),
        renewal_time: Seconds::new(status.and_then(|s| s.renewal_time.as_ref())),
        ready,
        issuing_false: status
            .is_some_and(|s| find_condition(&s.conditions, ISSUING).is_some_and(|c| c.status == "False")),
        serial_number: status.and_then(|s| s.serial_number.as_deref()).map(Box::from),
    }
}

impl From<DeserializeGuard<Certificate>> for CachedCertificate {
    fn from(guard: DeserializeGuard<Certificate>) -> Self {
        match guard.0 {
            Ok(cert) => Self::from(cert),
            Err(invalid) => Self {
                metadata: invalid.metadata,
                body: Err(invalid.error.into()),
            },
        }
    }
}

/// `{"spec": …, "status": …}` of `cert` without what the projection keeps beside it.
fn unprojected_json(cert: &Certificate) -> serde_json::Result<String> {
    let status = cert.status.as_ref().map(|status| CertificateStatus {
        not_before: None,
        not_after: None,
        renewal_time: None,
        serial_number: None,
        ..status.clone()
    });
    let mut body = serde_json::to_value(BodyRef {
        spec: &cert.spec,
        status: &status,
    })?;
    if let Some(spec) = body.get_mut("spec").and_then(serde_json::Value::as_object_mut) {
        spec.remove(ISSUER_REF);
    }
    serde_json::to_string(&body)
}

/// The `spec` field `issuer_ref` is kept in.
const ISSUER_REF: &str = "issuerRef";

impl From<Certificate> for CachedCertificate {
    fn from(cert: Certificate) -> Self {
        match unprojected_json(&cert) {
            Ok(json) => {
                let mut metadata = cert.metadata;
                let uid = metadata.uid.as_deref().and_then(uuid_bytes);
                if uid.is_some() {
                    metadata.uid = None;
                }
                Self {
                    body: Ok(Projected {
                        issuer_ref: CachedIssuerRef::new(&cert.spec.issuer_ref),
                        summary: summary(cert.status.as_ref()),
                        json: json.into(),
                        uid,
                    }),
                    metadata,
                }
            }
            // A struct of strings, numbers and maps always serializes; kept readable anyway.
            Err(e) => Self {
                metadata: cert.metadata,
                body: Err(format!("cannot keep the Certificate: {e}").into()),
            },
        }
    }
}

impl CachedCertificate {
    /// The metadata as the API server sent it (trimmed for the cache), the UID put back.
    /// `meta()` (what kube's store keys on) lacks the UID when it is kept projected.
    pub fn metadata(&self) -> ObjectMeta {
        let mut metadata = self.metadata.clone();
        if let Ok(Projected { uid: Some(uid), .. }) = &self.body {
            metadata.uid = Some(uuid_string(uid));
        }
        metadata
    }

    /// Its UID. An inherent method, so that it is called rather than `ResourceExt::uid`,
    /// which reads `meta()`.
    pub fn uid(&self) -> Option<String> {
        match &self.body {
            Ok(Projected { uid: Some(uid), .. }) => Some(uuid_string(uid)),
            _ => self.metadata.uid.clone(),
        }
    }

    /// The Certificate itself, decoded; the error a Certificate that cannot be read has.
    pub fn guard(&self) -> DeserializeGuard<Certificate> {
        let metadata = self.metadata();
        let decoded = match &self.body {
            Ok(projected) => projected
                .decode()
                .map(|body| Certificate {
                    metadata: metadata.clone(),
                    spec: body.spec,
                    status: body.status,
                })
                .map_err(|e| InvalidObject {
                    error: e.to_string(),
                    metadata,
                }),
            Err(error) => Err(InvalidObject {
                error: error.to_string(),
                metadata,
            }),
        };
        DeserializeGuard(decoded)
    }

    /// Why it cannot be read.
    pub fn invalid(&self) -> Option<&str> {
        self.body.as_ref().err().map(|e| &**e)
    }

    /// The issuer it references, when it can be read.
    pub fn issuer_ref(&self) -> Option<&CachedIssuerRef> {
        self.body.as_ref().ok().map(|p| &p.issuer_ref)
    }

    /// Its status fields read across Certificates, when it can be read.
    pub fn summary(&self) -> Option<&Summary> {
        self.body.as_ref().ok().map(|p| &p.summary)
    }

    /// Whether it references the issuer of `kind` named `name` (in `namespace` for an Issuer).
    pub fn references(&self, kind: &str, name: &str, namespace: Option<&str>) -> bool {
        self.issuer_ref().is_some_and(|issuer_ref| {
            issuer_ref.kind() == kind
                && issuer_ref.name() == name
                && (namespace.is_none() || self.metadata.namespace.as_deref() == namespace)
        })
    }
}

impl Projected {
    /// Spec and status as they came, what is projected put back.
    fn decode(&self) -> serde_json::Result<Body> {
        let mut body: serde_json::Value = serde_json::from_str(&self.json)?;
        if let Some(spec) = body.get_mut("spec").and_then(serde_json::Value::as_object_mut) {
            spec.insert(
                ISSUER_REF.into(),
                serde_json::to_value(self.issuer_ref.to_issuer_ref())?,
            );
        }
        let mut body: Body = serde_json::from_value(body)?;
        if let Some(status) = body.status.as_mut() {
            let summary = &self.summary;
            status.not_before = summary.not_before().map(Time);
            status.not_after = summary.not_after().map(Time);
            status.renewal_time = summary.renewal_time().map(Time);
            status.serial_number = summary.serial_number().map(String::from);
        }
        Ok(body)
    }
}

impl Resource for CachedCertificate {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        Certificate::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        Certificate::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        Certificate::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        Certificate::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl<'de> Deserialize<'de> for CachedCertificate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        DeserializeGuard::<Certificate>::deserialize(deserializer).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::certificate;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn issued() -> Certificate {
        let mut cert = certificate("web", "ca", &["web.apps.svc"]);
        cert.metadata.resource_version = Some("42".into());
        cert.spec.duration = Some("24h".into());
        cert.status = Some(CertificateStatus {
            conditions: vec![Condition {
                type_: crate::certificate::status::READY.into(),
                status: "True".into(),
                reason: "Ready".into(),
                message: "Certificate is up to date and has not expired".into(),
                last_transition_time: Time("2026-11-23T10:00:00Z".parse().unwrap()),
                observed_generation: Some(1),
            }],
            not_before: Some(Time("2026-11-23T10:00:00Z".parse().unwrap())),
            not_after: Some(Time("2026-11-24T10:00:00Z".parse().unwrap())),
            renewal_time: Some(Time("2026-11-24T02:00:00Z".parse().unwrap())),
            serial_number: Some("0a1b".into()),
            revision: Some(1),
            ..CertificateStatus::default()
        });
        cert
    }

    /// What the cache keeps decodes to the very Certificate the API server sent.
    #[test]
    fn a_cached_certificate_decodes_to_the_certificate_it_was_made_from() {
        let cert = issued();
        let json = serde_json::to_string(&cert).unwrap();
        let cached: CachedCertificate = serde_json::from_str(&json).unwrap();
        let json_of = |c: Option<Certificate>| serde_json::to_value(c).unwrap();
        assert_eq!(json_of(cached.guard().0.ok()), json_of(Some(cert.clone())));
        assert_eq!(cached.meta().resource_version.as_deref(), Some("42"));
        assert!(cached.references("Issuer", "ca", Some("apps")));
        assert!(!cached.references("Issuer", "ca", Some("other")));
        assert!(!cached.references("ClusterIssuer", "ca", None));
        let summary = cached.summary().unwrap();
        assert_eq!(summary.ready(), "True");
        assert_eq!(summary.not_after(), Some("2026-11-24T10:00:00Z".parse().unwrap()));
        assert_eq!(summary.serial_number(), Some("0a1b"));
        assert!(!summary.issuing_false());

        let mut bare = cert.clone();
        bare.status = None;
        let cached = CachedCertificate::from(bare.clone());
        assert_eq!(json_of(cached.guard().0.ok()), json_of(Some(bare)));
        assert_eq!(cached.summary().unwrap().ready(), "Unknown");

        // A status with nothing projected stays a status, not none.
        let mut empty = cert;
        empty.status = Some(CertificateStatus::default());
        let cached = CachedCertificate::from(empty.clone());
        assert_eq!(json_of(cached.guard().0.ok()), json_of(Some(empty)));
    }

    /// What is projected is kept once: not again in the JSON beside it.
    #[test]
    fn the_projected_fields_are_not_kept_twice() {
        let cached = CachedCertificate::from(issued());
        let Ok(projected) = &cached.body else {
            panic!("readable")
        };
        for field in [
            "issuerRef",
            "notBefore",
            "notAfter",
            "renewalTime",
            "serialNumber",
        ] {
            assert!(!projected.json.contains(field), "{field} in {}", projected.json);
        }
        assert!(projected.json.contains("\"revision\":1"), "{}", projected.json);
    }

    /// A Certificate that cannot be read stays in the cache with its error and metadata, as
    /// kube's `DeserializeGuard` keeps it: its reconcile reports it.
    #[test]
    fn an_unreadable_certificate_keeps_its_error_and_metadata() {
        let json = serde_json::json!({
            "apiVersion": "certkeeper.io/v1", "kind": "Certificate",
            "metadata": {"name": "bad", "namespace": "apps"},
            "spec": {"secretName": 7},
        });
        let cached: CachedCertificate = serde_json::from_value(json.clone()).unwrap();
        let guarded: DeserializeGuard<Certificate> = serde_json::from_value(json).unwrap();
        assert!(cached.invalid().is_some());
        assert!(cached.issuer_ref().is_none());
        let guard = cached.guard();
        let invalid = guard.0.unwrap_err();
        assert_eq!(invalid.metadata.name.as_deref(), Some("bad"));
        assert_eq!(invalid.error, guarded.0.unwrap_err().error);
    }

    /// A UUID (as the API server writes every UID) is kept as 16 bytes (`cluster::uid`) and
    /// given back as the very string; kube's store, which keys on `meta()`, copies none of it.
    /// Anything else stays in the metadata as it came.
    #[test]
    fn a_uuid_uid_is_kept_as_bytes_and_given_back_unchanged() {
        let uid = "6f1c2a9e-1b2c-4d5e-8f90-0123456789ab";
        let mut cert = issued();
        cert.metadata.uid = Some(uid.into());
        let cached = CachedCertificate::from(cert.clone());
        assert_eq!(cached.meta().uid, None);
        assert_eq!(cached.uid().as_deref(), Some(uid));
        assert_eq!(cached.metadata().uid.as_deref(), Some(uid));
        let json_of = |c: Option<Certificate>| serde_json::to_value(c).unwrap();
        assert_eq!(json_of(cached.guard().0.ok()), json_of(Some(cert.clone())));

        cert.metadata.uid = Some("uid-web".into());
        let cached = CachedCertificate::from(cert);
        assert_eq!(cached.meta().uid.as_deref(), Some("uid-web"));
        assert_eq!(cached.uid().as_deref(), Some("uid-web"));
    }

    /// The status times are kept as seconds, which is all a `Time` carries on the wire.
    #[test]
    fn the_summary_gives_back_the_times_and_conditions() {
        let cached = CachedCertificate::from(issued());
        let summary = cached.summary().unwrap();
        assert_eq!(
            summary.not_before(),
            Some("2026-11-23T10:00:00Z".parse().unwrap())
        );
        assert_eq!(
            summary.renewal_time(),
            Some("2026-11-24T02:00:00Z".parse().unwrap())
        );
        let mut bare = issued();
        bare.status = Some(CertificateStatus {
            conditions: vec![Condition {
                type_: ISSUING.into(),
                status: "False".into(),
                reason: "Denied".into(),
                message: String::new(),
                last_transition_time: Time("2026-11-23T10:00:00Z".parse().unwrap()),
                observed_generation: None,
            }],
            ..CertificateStatus::default()
        });
        let cached = CachedCertificate::from(bare);
        let summary = cached.summary().unwrap();
        assert_eq!(
            (summary.not_before(), summary.not_after(), summary.renewal_time()),
            (None, None, None)
        );
        assert_eq!(summary.serial_number(), None);
        assert_eq!(summary.ready(), "Unknown");
        assert!(summary.issuing_false());
    }

    /// kube's store keeps each Certificate in an `Arc`: two counts and the value. 512 bytes is
    /// one of jemalloc's size classes; a byte more and each takes 640.
    #[test]
    fn a_cached_certificate_fits_a_512_byte_allocation() {
        assert!(
            std::mem::size_of::<CachedCertificate>() + 2 * std::mem::size_of::<usize>() <= 512,
            "{}",
            std::mem::size_of::<CachedCertificate>()
        );
    }

    /// The point of it: far smaller than the typed Certificate it stands for.
    #[test]
    fn the_cached_form_is_a_fraction_of_the_typed_one() {
        assert!(
            std::mem::size_of::<CachedCertificate>() * 2 < std::mem::size_of::<Certificate>(),
            "{} vs {}",
            std::mem::size_of::<CachedCertificate>(),
            std::mem::size_of::<Certificate>()
        );
    }
}
