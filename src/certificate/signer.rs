//! Resolving a Certificate's issuerRef to something that can sign, under the namespace rules:
//! an Issuer only in the Certificate's namespace, a ClusterIssuer's CA Secret only in the
//! cluster-resource namespace. An issuer signs only while its own status says it is Ready for
//! its current spec (the one source of truth for its readiness) and its CA Secret still holds
//! a usable key pair.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::runtime::reflector::ObjectRef;

use super::status::reason;
use super::triggers::Signer;
use crate::api::{Certificate, GROUP, IssuerRef, IssuerSpec, IssuerStatus, find_condition};
use crate::context::Context;
use crate::error::Error;
use crate::issuer::rotation::{RotationGate, trust_pem};
use crate::issuer::status::READY;

/// The issuer could not be used; the reason is the Certificate's Ready reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignerProblem {
    NotFound(String),
    NotReady(String),
    /// Its CA is usable, but its own status does not say Ready for its current spec: Ready=False
    /// at its current generation (the cache this was read from may lag behind the watch event
    /// that woke the Certificate), or not judged for longer than `UNJUDGED_GRACE`. Reported,
    /// and soon looked at again.
    StatusNotReady(String),
    /// Its controller has not judged its current spec yet (no Ready condition, or one observed
    /// at an older generation), for less than `UNJUDGED_GRACE` as far as this process has
    /// seen: nothing is wrong yet, so the Certificate writes nothing and waits. An issuer edit
    /// wakes all its Certificates as it starts the issuer's own reconcile; reporting this would
    /// flip each of them and write twice, for nothing.
    Unjudged(String),
    /// No CertificatePolicy that applies allows the request, or the CA's name constraints do
    /// not: why. Looked at again when a policy, the namespace's labels or the Certificate change.
    Denied(String),
    /// The policies cannot be known (not listed yet, the CRD missing or forbidden): nothing is
    /// signed by an issuer a policy could guard.
    PolicyUnavailable(String),
}

/// How soon a Certificate is looked at again, without a watch event, when its issuer is
/// missing or broken (the issuer watch normally wakes it first).
const ISSUER_RECHECK: std::time::Duration = std::time::Duration::from_secs(300);

/// How soon when its issuer's status has not yet caught up with a usable CA or a new spec (from
/// memory, no request while the CA Secret is unchanged).
const UNJUDGED_RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

/// How long Certificates wait, silently, for their issuer's controller to judge its current
/// spec, from when this process first saw it unjudged at that generation. Past it (its
/// controller failing, say), they report the issuer not ready as for any other problem.
pub const UNJUDGED_GRACE: jiff::SignedDuration = jiff::SignedDuration::from_mins(1);

impl SignerProblem {
    /// The Certificate's reason: `IssuerNotFound` or `IssuerNotReady`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound(_) => reason::ISSUER_NOT_FOUND,
            Self::NotReady(_) | Self::StatusNotReady(_) | Self::Unjudged(_) => reason::ISSUER_NOT_READY,
            Self::Denied(_) => reason::DENIED,
            Self::PolicyUnavailable(_) => reason::POLICY_UNAVAILABLE,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Self::NotFound(m)
            | Self::NotReady(m)
            | Self::StatusNotReady(m)
            | Self::Unjudged(m)
            | Self::Denied(m)
            | Self::PolicyUnavailable(m) => m,
        }
    }

    /// How long to wait, at most, before looking at the issuer again.
    pub fn recheck_after(&self) -> std::time::Duration {
        match self {
            Self::StatusNotReady(_) | Self::Unjudged(_) | Self::PolicyUnavailable(_) => UNJUDGED_RECHECK,
            // A denial is looked at again on a change (policy, namespace, Certificate), not
            // on a backoff; this is only the slow safety net.
            Self::NotFound(_) | Self::NotReady(_) | Self::Denied(_) => ISSUER_RECHECK,
        }
    }
}

/// When each issuer was first seen, by this process's Certificate reconciles, not judged at its
/// current generation: what bounds the silence of `SignerProblem::Unjudged`. An entry goes as
/// soon as a Certificate finds its issuer judged; one of an issuer deleted while unjudged stays
/// until the leadership term ends.
#[derive(Default)]
pub struct UnjudgedIssuers(Mutex<HashMap<IssuerKey, SeenUnjudged>>);

/// The uid and generation an issuer was seen unjudged at, and since when.
type SeenUnjudged = (Option<String>, Option<i64>, jiff::Timestamp);

/// An issuer's kind, namespace (empty for a ClusterIssuer) and name.
type IssuerKey = (String, String, String);

impl UnjudgedIssuers {
    /// Since when the issuer `key` (uid `uid`) has been seen unjudged at `generation`: `now`
    /// if this is the first time.
    fn since(
        &self,
        key: IssuerKey,
        uid: Option<String>,
        generation: Option<i64>,
        now: jiff::Timestamp,
    ) -> jiff::Timestamp {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let entry = seen.entry(key).or_insert_with(|| (uid.clone(), generation, now));
        if (&entry.0, entry.1) != (&uid, generation) {
            *entry = (uid, generation, now);
        }
        entry.2
    }

    /// The issuer `key` has been judged.
    fn judged(&self, key: &IssuerKey) {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !seen.is_empty() {
            seen.remove(key);
        }
    }
}

/// What the issuer's own Ready condition says of its current spec.
enum Judgement {
    Ready,
    /// Judged at its current generation, not Ready: why.
    NotReady(String),
    /// Not judged at its current generation yet: why not.
    Unjudged(String),
}

/// Whether the issuer's own Ready condition says True for its current spec (observed at its
/// generation); else why not.
fn judge(status: Option<&IssuerStatus>, generation: Option<i64>) -> Judgement {
    match status.and_then(|s| find_condition(&s.conditions, READY)) {
        None => Judgement::Unjudged("its controller has not judged it yet".into()),
        Some(c) if c.observed_generation != generation => {
            Judgement::Unjudged("its controller has not judged its current spec yet".into())
        }
        Some(c) if c.status != "True" => Judgement::NotReady(format!("{}: {}", c.reason, c.message)),
        Some(_) => Judgement::Ready,
    }
}

fn describe(issuer_ref: &IssuerRef) -> String {
    format!("{} {:?}", issuer_ref.kind(), issuer_ref.name)
}

/// An issuer as the caches hold it: spec, generation, status, and where its CA Secret lives.
struct Found {
    spec: IssuerSpec,
    uid: Option<String>,
    generation: Option<i64>,
    status: Option<IssuerStatus>,
    ca_namespace: String,
}

/// Looks up the issuer in the caches, and which namespace its CA Secret lives in.
fn lookup(cert: &Certificate, ctx: &Context) -> Result<Found, SignerProblem> {
    let issuer_ref = &cert.spec.issuer_ref;
    if issuer_ref.group() != GROUP {
        return Err(SignerProblem::NotFound(format!(
            "issuerRef.group {:?} is not served by certkeeper (expected {GROUP})",
            issuer_ref.group()
        )));
    }
    let namespace = cert.metadata.namespace.clone().unwrap_or_default();
    let (found, ca_namespace) = match issuer_ref.kind() {
        "Issuer" => {
            let key = ObjectRef::new(&issuer_ref.name).within(&namespace);
            let found = ctx.issuers.get(&key).map(|g| {
                g.0.clone()
                    .map(|i| (i.spec, i.metadata.uid, i.metadata.generation, i.status))
                    .map_err(|e| e.error)
            });
            (found, namespace.clone())
        }
        "ClusterIssuer" => {
            let found = ctx
                .cluster_issuers
                .get(&ObjectRef::new(&issuer_ref.name))
                .map(|g| {
                    g.0.clone()
                        .map(|i| (i.spec.issuer, i.metadata.uid, i.metadata.generation, i.status))
                        .map_err(|e| e.error)
                });
            (found, ctx.cluster_resource_namespace.clone())
        }
        other => {
            return Err(SignerProblem::NotFound(format!(
                "issuerRef.kind {other:?} is not Issuer or ClusterIssuer"
            )));
        }
    };
    match found {
        None => Err(SignerProblem::NotFound(match issuer_ref.is_cluster() {
            true => format!("{} does not exist", describe(issuer_ref)),
            false => format!("{} does not exist in namespace {namespace}", describe(issuer_ref)),
        })),
        Some(Err(e)) => Err(SignerProblem::NotReady(format!(
            "{} cannot be read: {e}",
            describe(issuer_ref)
        ))),
        Some(Ok((spec, uid, generation, status))) => Ok(Found {
            spec,
            uid,
            generation,
            status,
            ca_namespace,
        }),
    }
}

/// How the Certificate's Secret should trust its issuer: `ca.crt`, and where a re-issue under
/// a rotated CA stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trust {
    /// `ca.crt` for a CA issuer: the roots of the issuer's status (both during a rotation),
    /// and the signing CA's own root even before the issuer has seen it. None: selfSigned.
    pub ca_pem: Option<String>,
    pub gate: RotationGate,
    /// The issuer is rotating its CA (or has not yet seen the CA it signs with). The issuer
    /// cache this was read from may lag behind the watch event that woke the Certificate, and
    /// only a fresh read ends a rotation for it: look again soon until it is over.
    pub settling: bool,
}

/// How soon a Certificate under a rotating issuer is looked at again (from memory, no request
/// unless its issuer's rotation moved on).
const ROTATION_RECHECK: jiff::SignedDuration = jiff::SignedDuration::from_secs(10);

impl Trust {
    /// What a selfSigned issuer means: each certificate is its own root, nothing rotates.
    pub fn self_signed() -> Self {
        Self {
            ca_pem: None,
            gate: RotationGate::Now,
            settling: false,
        }
    }

    /// When to look again for the rotation's sake, if it is under way.
    pub fn recheck_at(&self, now: jiff::Timestamp) -> Option<jiff::Timestamp> {
        self.settling.then(|| now + ROTATION_RECHECK)
    }

    /// The trust for `signer` under an issuer whose status is `status`.
    pub fn of(signer: &Signer, status: Option<&IssuerStatus>, window: jiff::SignedDuration) -> Self {
        let Signer::Ca(ca) = signer else {
            return Self::self_signed();
        };
        let anchor = ca.anchor();
        let anchors = status.map(|s| s.trust_anchors.as_slice()).unwrap_or_default();
        let mut ca_pem = String::new();
        if !anchors
            .iter()
            .any(|a| a.fingerprint_sha256 == anchor.fingerprint_sha256)
        {
            ca_pem.push_str(&anchor.to_pem());
        }
        ca_pem.push_str(&trust_pem(anchors));
        let gate = RotationGate::of(
            status,
            &ca.certificate().fingerprint_sha256,
            &anchor.fingerprint_sha256,
            window,
        );
        Self {
            ca_pem: Some(ca_pem),
            gate,
            settling: gate == RotationGate::Hold || status.is_some_and(|s| s.rotation.is_some()),
        }
    }
}

/// Whether the issuer `cert` references sets `spec.requirePolicy` (false when not found: a
/// missing issuer signs nothing anyway).
pub fn requires_policy(cert: &Certificate, ctx: &Context) -> bool {
    lookup(cert, ctx).is_ok_and(|found| found.spec.require_policy == Some(true))
}

/// The signer for `cert`: its issuer from the caches, and for a CA issuer the key pair of the
/// current CA Secret (read once per resourceVersion), validated at `now`; with the trust its
/// Secret should hold.
pub async fn resolve(
    cert: &Certificate,
    ctx: &Context,
    now: jiff::Timestamp,
) -> Result<Result<(Signer, Trust), SignerProblem>, Error> {
    let found = match lookup(cert, ctx) {
        Ok(found) => found,
        Err(problem) => return Ok(Err(problem)),
    };
    let issuer = describe(&cert.spec.issuer_ref);
    let issuer_ref = &cert.spec.issuer_ref;
    let key = match issuer_ref.is_cluster() {
        true => (
            issuer_ref.kind().to_owned(),
            String::new(),
            issuer_ref.name.clone(),
        ),
        false => (
            issuer_ref.kind().to_owned(),
            cert.metadata.namespace.clone().unwrap_or_default(),
            issuer_ref.name.clone(),
        ),
    };
    let judged = match judge(found.status.as_ref(), found.generation) {
        Judgement::Ready => {
            ctx.unjudged_issuers.judged(&key);
            Ok(())
        }
        Judgement::NotReady(why) => {
            ctx.unjudged_issuers.judged(&key);
            Err(SignerProblem::StatusNotReady(format!(
                "{issuer} is not ready: {why}"
            )))
        }
        Judgement::Unjudged(why) => {
            // Before the CA is even looked at: its controller is about to judge that too.
            let since = ctx
                .unjudged_issuers
                .since(key, found.uid.clone(), found.generation, now);
            let message = format!("{issuer} is not ready: {why}");
            if now < since + UNJUDGED_GRACE {
                return Ok(Err(SignerProblem::Unjudged(message)));
            }
            Err(SignerProblem::StatusNotReady(message))
        }
    };
    Ok(match (&found.spec.self_signed, &found.spec.ca) {
        (Some(_), None) => judged.map(|()| (Signer::SelfSigned, Trust::self_signed())),
        (None, Some(ca)) => {
            match ctx
                .ca_key_pairs(cert.spec.issuer_ref.kind())
                .load(
                    &ctx.client,
                    ctx.hsm(cert.spec.issuer_ref.kind(), false),
                    &found.ca_namespace,
                    ca,
                    now,
                )
                .await?
            {
                Ok((pair, _)) => judged.map(|()| {
                    let signer = Signer::Ca(pair);
                    let trust = Trust::of(&signer, found.status.as_ref(), ctx.rotation.reissue_window);
                    (signer, trust)
                }),
                Err(problem) => Err(SignerProblem::NotReady(format!(
                    "{issuer} is not ready: {problem}"
                ))),
            }
        }
        _ => Err(SignerProblem::NotReady(format!(
            "{issuer} must set exactly one of selfSigned or ca"
        ))),
    })
}
