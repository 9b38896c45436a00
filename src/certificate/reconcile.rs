//! One Certificate reconcile, in stages: dereference (issuer, CA, Secret) → validate and
//! decide (pure) → issue (crypto off the async workers) → write (Secret, status, Event).
//! Only this file talks to the API for Certificates; an unchanged Certificate causes no write.

use std::sync::Arc;

use super::schedule::Next;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use kube::api::{Api, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::{Resource, ResourceExt};
use tracing::{debug, info, warn};

use super::expiry::{self, Warning};
use super::keystores::{self, Passwords};
use super::requests::{Answered, Pending, RenewRequest};
use super::schedule::{self, backoff, requeue_after};
use super::secret::{self, CurrentKeyPair, SecretMaterial, SecretState};
use super::signer::{self, SignerProblem, Trust};
use super::spec::{self, RenewBefore, ValidatedSpec};
use super::status::{self, ISSUING, IssuedFacts, READY, reason};
use super::triggers::{self, Decision, PolicyInput, Signer, Trigger, TriggerReason};
use super::verdict::{self, Verdict, ca_pem_identity, signer_identity, uid_hash};
use crate::api::{Certificate, CertificateRevocation, CertificateStatus, RENEW_REQUESTED_AT, find_condition};
use crate::cluster::ObjectKey;
use crate::cluster::revocations::{IssuerRecords, desired_record};
use crate::cluster::secrets::get_secret;
use crate::cluster::watched::ReadToken;
use crate::context::{Context, FIELD_MANAGER};
use crate::error::Error;
use crate::issuance_policy::{IssuerId, PolicyDecision, Request};
use crate::issuer::reconcile::object_name;
use crate::issuer::rotation::RotationGate;
use crate::pki::{self, CertificateInfo, PkiError, PrivateKey};
use crate::revocation::{REVOCATION_REASON, REVOKE_REQUESTED_AT, RevokeRequest, RevokedSerial};
use crate::telemetry::events;

/// What one reconcile observed before deciding; the stages take it together.
struct Observed<'a> {
    cert: &'a Certificate,
    /// The Certificate's namespace and name: its key in `Context::verdicts`.
    key: ObjectKey,
    spec: ValidatedSpec,
    signer: Signer,
    /// The `ca.crt` to hold, and where the issuer's CA rotation stands.
    trust: Trust,
    /// `certkeeper.io/renew-requested-at`, when set and readable.
    renew_request: Option<RenewRequest>,
    /// `certkeeper.io/revoke-requested-at` (with its reason), when set and readable.
    revoke_request: Option<RevokeRequest>,
    /// A record made for this Certificate at that revoke request exists: it was answered.
    revoke_recorded: bool,
    /// The issuer's revoked serials, from the CertificateRevocation cache.
    revoked: Vec<RevokedSerial>,
    /// The namespace the issuer's revocation records live in.
    records_namespace: String,
    previous: CertificateStatus,
    now: Timestamp,
    /// The keystores' passwords, read.
    passwords: Passwords,
}

/// How soon a Certificate whose keystore password Secret is missing or unusable looks again,
/// besides the wake of the password Secrets' watch.
const PASSWORD_RECHECK: std::time::Duration = std::time::Duration::from_secs(30);

pub async fn reconcile(guard: Arc<DeserializeGuard<Certificate>>, ctx: Arc<Context>) -> Result<Next, Error> {
    let cert = match &guard.0 {
        Ok(cert) => cert,
        Err(invalid) => {
            warn!(name = ?invalid.metadata.name, namespace = ?invalid.metadata.namespace, error = %invalid.error, "cannot read Certificate");
            let regarding = ObjectReference {
                api_version: Some(Certificate::api_version(&()).into_owned()),
                kind: Some("Certificate".into()),
                name: invalid.metadata.name.clone(),
                namespace: invalid.metadata.namespace.clone(),
                uid: invalid.metadata.uid.clone(),
                resource_version: invalid.metadata.resource_version.clone(),
                ..ObjectReference::default()
            };
            events::publish(
                &ctx,
                events::not_ready(reason::INVALID_SPEC, &invalid.error),
                &regarding,
            )
            .await;
            return Ok(Next::await_change());
        }
    };
    let now = ctx.now();
    let previous = cert.status.clone().unwrap_or_default();
    let key = (cert.namespace().unwrap_or_default(), cert.name_any());

    let spec = match spec::validate(&cert.spec) {
        Ok(spec) => spec,
        Err(e) => {
            ctx.verdicts.invalidate(&key);
            let policy = RenewBefore::Default;
            let deadlines =
                report_not_ready(cert, &ctx, &previous, reason::INVALID_SPEC, &e.0, policy, now).await?;
            // Only a change can fix the spec; until then only expiry deadlines matter.
            return Ok(if deadlines.iter().any(|d| *d > now) {
                Next::requeue(requeue_after(now, &deadlines))
            } else {
                Next::await_change()
            });
        }
    };
    let (signer, trust) = match signer::resolve(cert, &ctx, now).await? {
        Ok(found) => found,
        // Its issuer is being judged: its status write wakes the Certificate; nothing to say.
        Err(problem @ SignerProblem::Unjudged(_)) => {
            debug!(certificate = %object_name(cert), reason = problem.message(), "waiting for the issuer to be judged");
            return Ok(Next::requeue(problem.recheck_after()));
        }
        Err(problem) => return without_issuer(&ctx, cert, &key, &spec, &problem, &previous, now).await,
    };
    if let Some(problem) = policy_problem(cert, &ctx, &spec, &key, &signer, now).await {
        return without_issuer(&ctx, cert, &key, &spec, &problem, &previous, now).await;
    }
    // The password Secrets' watch wakes the Certificates that read them.
    ctx.password_refs
        .set(&key.0, &key.1, spec.keystores.password_secrets());
    let passwords = match read_passwords(&ctx, &key.0, &spec.keystores).await? {
        Ok(passwords) => passwords,
        Err(message) => {
            // Nothing is written: the Secret keeps what it holds until the password is back.
            ctx.verdicts.invalidate(&key);
            let why = reason::KEYSTORE_PASSWORD_UNAVAILABLE;
            let mut deadlines =
                report_not_ready(cert, &ctx, &previous, why, &message, spec.renew_before, now).await?;
            deadlines.push(now + PASSWORD_RECHECK);
            return Ok(Next::requeue(requeue_after(now, &deadlines)));
        }
    };
    let records_namespace = records_namespace(ctx.as_ref(), &spec, &key);
    let records = issuer_records(&spec, &records_namespace);
    let revoked = records.revoked(&ctx.revocations, &mut Vec::new());
    let renew_request = renew_request(cert, &ctx).await;
    let revoke_request = revoke_request(cert, &ctx).await;
    let certificate = format!("{}/{}", key.0, key.1);
    let revoke_recorded = revoke_request
        .as_ref()
        .is_some_and(|r| records.answered(&ctx.revocations, &certificate, r));
    let observed = Observed {
        cert,
        key,
        spec,
        signer,
        trust,
        renew_request,
        revoke_request,
        revoke_recorded,
        revoked,
        records_namespace,
        previous,
        now,
        passwords,
    };

    // Judged before and nothing changed since: no need to read the Secret.
    let uid = cert.metadata.uid.clone().unwrap_or_default();
    let signer_id = signer_identity(&observed.signer);
    let ca_pem_id = ca_pem_identity(&observed.trust);
    let current = verdict::Current {
        uid: &uid,
        generation: cert.metadata.generation,
        renew_requested_at: annotation(cert, RENEW_REQUESTED_AT),
        revoke_requested_at: annotation(cert, REVOKE_REQUESTED_AT),
        signer: signer_id.as_ref(),
        ca_pem: ca_pem_id.as_ref(),
        gate: observed.trust.gate,
        now,
    };
    // A password read from a Secret may have changed since: such Certificates are judged anew.
    let reads_passwords = observed.spec.keystores.password_secrets().next().is_some();
    if !reads_passwords
        && let Some((_, verdict)) = ctx.verdicts.get(&observed.key)
        && verdict.holds(&current)
        && revocation_of_serial(&observed.revoked, &verdict.facts.serial_hex).is_none()
    {
        if verdict.precedes_own_status_write(cert.metadata.resource_version.as_deref()) {
            let facts = verdict.facts;
            // The echo of that write is on its way and wakes this Certificate again.
            debug!(certificate = %object_name(cert), "waiting for the echo of the status write");
            let mut deadlines = vec![facts.renewal_time, facts.not_after];
            deadlines.extend(verdict.reissue_at);
            deadlines.extend(verdict.requests_due_at);
            deadlines.extend(observed.trust.recheck_at(now));
            return Ok(Next::requeue(requeue_after(now, &deadlines)));
        }
        let waits = Waits {
            reissue_at: verdict.reissue_at,
            requests_due_at: verdict.requests_due_at,
        };
        return report_ready(&ctx, &observed, verdict.facts, waits).await;
    }

    // A Certificate its status shows never issued, nor tried, nor asked to revoke, most likely
    // has no Secret yet: it is not read first. The apply that writes one is then conditional
    // (`SecretWrite::IfAbsent`): a Secret that does exist (a restore, a Certificate re-created
    // over its Secret) refuses it, and is read and judged as any other.
    let mut write = match never_issued(&observed) {
        true => SecretWrite::IfAbsent,
        false => SecretWrite::Read,
    };
    loop {
        match judge(&ctx, &observed, &uid, write).await? {
            Judged::Done(next) => return Ok(next),
            // Only a reconcile that did not read the Secret asks to read it; after a read, a
            // write replaces what it read and a failure is reported, so this is taken once at most.
            Judged::ReadFirst => write = SecretWrite::Read,
        }
    }
}

/// Whether the Certificate's status shows no issuance ever made or tried, and nothing asks to
/// revoke a certificate: then its Secret is not read before the first one is written.
fn never_issued(observed: &Observed<'_>) -> bool {
    let status = &observed.previous;
    status.revision.is_none()
        && status.not_after.is_none()
        && status.serial_number.is_none()
        && status.last_failure_time.is_none()
        && status.failed_issuance_attempts.is_none()
        && observed.revoke_request.is_none()
}

/// How a reconcile learns what the Secret holds before it decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SecretWrite {
    /// Read it from the API server; a write replaces whatever is there.
    Read,
    /// Take it as missing without reading it; the write only creates it, and is refused if a
    /// Secret exists by that name.
    IfAbsent,
}

/// What a reconcile came to.
enum Judged {
    Done(Next),
    /// The Secret was taken as missing, and the write found it there or the issuance failed:
    /// it is to be read and judged before anything is written or reported.
    ReadFirst,
}

/// Judges the Secret against the Certificate and acts: keeps it or issues.
async fn judge(
    ctx: &Context,
    observed: &Observed<'_>,
    uid: &str,
    write: SecretWrite,
) -> Result<Judged, Error> {
    let now = observed.now;
    let token = ctx.verdicts.begin(&observed.key);
    let namespace = &observed.key.0;
    let current_secret = match write {
        SecretWrite::Read => get_secret(&ctx.client, namespace, &observed.spec.secret_name).await?,
        SecretWrite::IfAbsent => None,
    };
    let state = secret::read(current_secret.as_ref());
    // While the issuer distributes a new root, renewals wait too (see `held_renewal_time`).
    let renewal_time = match &state {
        SecretState::Present(c) => Some(triggers::held_renewal_time(
            schedule::renewal_time(
                c.leaf().not_before,
                c.leaf().not_after,
                observed.spec.renew_before,
                uid,
            ),
            c.leaf().not_after,
            observed.trust.gate,
        )),
        _ => None,
    };
    let pending = Pending::of(
        observed.renew_request.as_ref(),
        observed.revoke_request.as_ref(),
        observed.revoke_recorded,
        &observed.previous,
        match &state {
            SecretState::Present(c) => Some(c.leaf().not_before),
            _ => None,
        },
    );
    let input = PolicyInput {
        spec: &observed.spec,
        signer: &observed.signer,
        renewal_time,
        renew_requested_at: pending.renew.as_ref().map(|r| r.at),
        rotation: observed.trust.gate,
        uid,
        revoked: &observed.revoked,
        revoke_request: pending.revoke.clone(),
        now,
    };
    match triggers::evaluate(&input, &state) {
        Decision::UpToDate(current) => {
            let renewal_time = renewal_time.unwrap_or(current.leaf().not_after);
            let rotation = RotationWait {
                under_current_ca: match &observed.signer {
                    Signer::Ca(ca) => current.leaf().is_signed_by(ca.certificate()),
                    Signer::SelfSigned => true,
                },
                reissue_at: triggers::rotation_reissue_at(&input, current.leaf()),
                requests_due_at: pending.next_due(now),
            };
            keep(
                ctx,
                observed,
                token,
                current,
                current_secret.as_ref(),
                renewal_time,
                rotation,
            )
            .await
            .map(Judged::Done)
        }
        Decision::Issue(trigger) => {
            let revocation = match (&state, trigger.reason) {
                (SecretState::Present(current), TriggerReason::Revoked) => {
                    revocation_of_leaf(observed, &pending, current.leaf())
                }
                _ => None,
            };
            let issuance = Issuance {
                trigger,
                state,
                renewal_time,
                revocation,
                pending,
            };
            issue(ctx, observed, token, issuance, write).await
        }
    }
}

/// The issuer cannot sign: missing, not Ready, or its CA unusable. `Ready` still says only
/// whether the Secret holds a valid certificate for the spec (cert-manager's meaning): while it
/// does and nothing is due, the Certificate stays Ready and the issuer's trouble is reported
/// beside it (`Issuing=False` with the issuer's reason, a Warning Event once); once it is due,
/// or the spec changed, or the Secret is broken, `Ready=False` with the issuer's reason. The
/// Secret is judged from its verdict while that holds (no request), which is kept for the
/// issuer's return: its status change wakes the Certificate.
async fn without_issuer(
    ctx: &Context,
    cert: &Certificate,
    key: &ObjectKey,
    spec: &ValidatedSpec,
    problem: &SignerProblem,
    previous: &CertificateStatus,
    now: Timestamp,
) -> Result<Next, Error> {
    let (why, message) = (problem.reason(), problem.message());
    if matches!(problem, SignerProblem::Denied(_)) && !already_said(previous, why, message) {
        ctx.metrics.issuance_denied(spec.issuer_ref.kind());
    }
    // Read without a warning: an unreadable request is warned about when it can be acted on.
    let renew_request = annotation(cert, RENEW_REQUESTED_AT).and_then(|v| RenewRequest::parse(v).ok());
    let revoke_request = RevokeRequest::from_annotations(cert.annotations()).ok().flatten();
    let records_namespace = records_namespace(ctx, spec, key);
    let records = issuer_records(spec, &records_namespace);
    let revoked = records.revoked(&ctx.revocations, &mut Vec::new());
    let certificate = format!("{}/{}", key.0, key.1);
    let revoke_recorded = revoke_request
        .as_ref()
        .is_some_and(|r| records.answered(&ctx.revocations, &certificate, r));
    // What is still to be answered of the requests, for a certificate issued at `not_before`.
    let pending = |not_before| {
        Pending::of(
            renew_request.as_ref(),
            revoke_request.as_ref(),
            revoke_recorded,
            previous,
            Some(not_before),
        )
    };
    let uid = cert.metadata.uid.clone().unwrap_or_default();
    let current = verdict::Current {
        uid: &uid,
        generation: cert.metadata.generation,
        renew_requested_at: annotation(cert, RENEW_REQUESTED_AT),
        revoke_requested_at: annotation(cert, REVOKE_REQUESTED_AT),
        signer: None,
        ca_pem: None,
        gate: RotationGate::Now,
        now,
    };
    let facts = match ctx.verdicts.get(key) {
        Some((_, verdict))
            if verdict.holds_whatever_the_issuer(&current)
                && revocation_of_serial(&revoked, &verdict.facts.serial_hex).is_none() =>
        {
            Ok(verdict.facts)
        }
        _ => {
            let state = secret::read(get_secret(&ctx.client, &key.0, &spec.secret_name).await?.as_ref());
            triggers::usable(&state).and_then(|current| {
                let leaf = current.leaf();
                let renewal_time =
                    schedule::renewal_time(leaf.not_before, leaf.not_after, spec.renew_before, &uid);
                let revision = previous.revision.max(current.revision).unwrap_or(1);
                let pending = pending(leaf.not_before);
                let due = triggers::without_issuer(
                    spec,
                    renewal_time,
                    pending.renew_due(now).map(|r| r.at),
                    &revoked,
                    pending.revoke_due(now),
                    current,
                    now,
                );
                match due {
                    Some(trigger) => Err(trigger),
                    None => Ok(IssuedFacts::new(leaf, renewal_time, revision)),
                }
            })
        }
    };
    let facts = match facts {
        Ok(facts) => facts,
        Err(trigger) => {
            let message = format!(
                "{message} (the Secret needs a new certificate: {})",
                trigger.message
            );
            // Warned about the issuer already, while the certificate was still good: the
            // status says the rest (a second Warning of that reason would only be folded into
            // the first by the recorder).
            let warned = find_condition(&previous.conditions, ISSUING)
                .is_some_and(|c| c.status == "False" && c.reason == why);
            let deadlines = match warned {
                true => {
                    let generation = cert.metadata.generation;
                    let status = status::not_ready(previous, why, &message, generation, now);
                    settle(cert, ctx, previous, status, spec.renew_before, now)
                        .await?
                        .1
                }
                false => report_not_ready(cert, ctx, previous, why, &message, spec.renew_before, now).await?,
            };
            return Ok(Next::requeue(
                requeue_after(now, &deadlines).min(problem.recheck_after()),
            ));
        }
    };
    let generation = cert.metadata.generation;
    let status = status::ready_without_issuer(previous, &facts, why, message, generation, now);
    let (status, mut deadlines) = settle(cert, ctx, previous, status, spec.renew_before, now).await?;
    let issuing = |s: &CertificateStatus| {
        find_condition(&s.conditions, ISSUING)
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    if issuing(previous) != issuing(&status) {
        warn!(certificate = %object_name(cert), reason = why, %message, "the issuer cannot sign; the certificate in place is valid");
        events::publish(ctx, events::not_ready(why, message), &cert.object_ref(&())).await;
    }
    deadlines.extend([facts.renewal_time, facts.not_after]);
    deadlines.extend(pending(facts.not_before).next_due(now));
    Ok(Next::requeue(
        requeue_after(now, &deadlines).min(problem.recheck_after()),
    ))
}

/// Whether the status already reports `why` with `message` (Ready or Issuing): a denial
/// is counted once, not at every look.
fn already_said(status: &CertificateStatus, why: &str, message: &str) -> bool {
    [READY, ISSUING].iter().any(|kind| {
        find_condition(&status.conditions, kind)
            .is_some_and(|c| c.status == "False" && c.reason == why && c.message.starts_with(message))
    })
}

/// Why the issuance policy does not let the Certificate's issuer sign what its spec asks for,
/// or the CA's name constraints, if it does not. Read from memory: no request.
async fn policy_problem(
    cert: &Certificate,
    ctx: &Context,
    spec: &ValidatedSpec,
    key: &ObjectKey,
    signer: &Signer,
    now: Timestamp,
) -> Option<SignerProblem> {
    // A CA issuer never signs what its CA's name constraints (or those above it) forbid:
    // every client would reject it.
    if let Signer::Ca(ca) = signer
        && ca.has_name_constraints()
    {
        let names = pki::RequestedNames::from(&spec.template(now));
        if let Some(why) = ca.name_constraints_refusal(&names) {
            return Some(SignerProblem::Denied(why));
        }
    }
    let require_policy = signer::requires_policy(cert, ctx);
    // CEL rules run on a blocking thread: a costly rule (up to the cost limit) never holds up
    // the watches and the other reconciles. Without any, the decision is a few comparisons.
    let decision = match ctx.policies.has_cel_rules() {
        false => decide(&ctx.policies, spec, key, require_policy),
        true => {
            let (policies, spec, key) = (ctx.policies.clone(), spec.clone(), key.clone());
            tokio::task::spawn_blocking(move || decide(&policies, &spec, &key, require_policy))
                .await
                .unwrap_or_else(|e| PolicyDecision::Unavailable(format!("the policy check failed: {e}")))
        }
    };
    match decision {
        PolicyDecision::Unguarded | PolicyDecision::Allowed(_) => None,
        PolicyDecision::Denied(why) => Some(SignerProblem::Denied(why)),
        PolicyDecision::Unavailable(why) => Some(SignerProblem::PolicyUnavailable(why)),
    }
}

/// What the issuance policies say of the Certificate `key` with `spec`.
fn decide(
    policies: &crate::issuance_policy::Policies,
    spec: &ValidatedSpec,
    key: &ObjectKey,
    require_policy: bool,
) -> PolicyDecision {
    let issuer = IssuerId {
        kind: spec.issuer_ref.kind(),
        name: &spec.issuer_ref.name,
        require_policy,
    };
    let request = Request {
        namespace: &key.0,
        name: &key.1,
        spec,
    };
    policies.decide(&issuer, &request)
}

/// Where the revocation records of the Certificate's issuer live: the Certificate's namespace
/// for an Issuer, the cluster-resource namespace for a ClusterIssuer.
fn records_namespace(ctx: &Context, spec: &ValidatedSpec, key: &ObjectKey) -> String {
    match spec.issuer_ref.is_cluster() {
        true => ctx.cluster_resource_namespace.clone(),
        false => key.0.clone(),
    }
}

/// The revocation records of the Certificate's issuer, in `namespace`.
fn issuer_records<'a>(spec: &'a ValidatedSpec, namespace: &'a str) -> IssuerRecords<'a> {
    IssuerRecords {
        kind: spec.issuer_ref.kind(),
        name: &spec.issuer_ref.name,
        namespace,
    }
}

/// The revocation of the certificate a Secret holds, when the `Revoked` trigger fired for it.
struct Revocation {
    record: RevokedSerial,
    /// The revoke request whose record is still to be written (None: the record exists).
    to_write: Option<String>,
    /// The revoked certificate's notAfter.
    not_after: Timestamp,
}

/// What revokes `leaf`: an existing record of its serial, else the record the pending revoke
/// request asks for.
fn revocation_of_leaf(
    observed: &Observed<'_>,
    pending: &Pending,
    leaf: &CertificateInfo,
) -> Option<Revocation> {
    if let Some(record) = revocation_of_serial(&observed.revoked, &leaf.serial_hex) {
        return Some(Revocation {
            record: record.clone(),
            to_write: None,
            not_after: leaf.not_after,
        });
    }
    let request = pending.revoke.as_ref()?;
    request
        .revokes(leaf, &observed.revoked, observed.now)
        .map(|record| Revocation {
            record,
            to_write: Some(request.value.clone()),
            not_after: leaf.not_after,
        })
}

fn revocation_of_serial<'a>(revoked: &'a [RevokedSerial], serial_hex: &str) -> Option<&'a RevokedSerial> {
    revoked.iter().find(|r| r.serial_hex == serial_hex)
}

/// The value of the annotation `key` on `cert`.
fn annotation<'a>(cert: &'a Certificate, key: &str) -> Option<&'a str> {
    cert.annotations().get(key).map(String::as_str)
}

/// The annotations `certkeeper.io/revoke-requested-at` and `certkeeper.io/revocation-reason`,
/// when set. A value that cannot be read revokes nothing (never on a guess); the Certificate
/// gets a Warning Event saying why, once per value.
async fn revoke_request(cert: &Certificate, ctx: &Context) -> Option<RevokeRequest> {
    let object = format!("Certificate {}", object_name(cert));
    match RevokeRequest::from_annotations(cert.annotations()) {
        Ok(request) => {
            ctx.warned_requests.forget(&object, REVOKE_REQUESTED_AT);
            request
        }
        Err(e) => {
            // The reason is part of the request: a corrected reason is a new value to warn about.
            let value = [REVOKE_REQUESTED_AT, REVOCATION_REASON]
                .map(|key| annotation(cert, key).unwrap_or_default())
                .join(" ");
            if ctx.warned_requests.first(&object, REVOKE_REQUESTED_AT, &value) {
                warn!(certificate = %object_name(cert), error = %e, "ignoring the revoke request");
                let event = events::invalid_revoke_request(&e.to_string());
                events::publish(ctx, event, &cert.object_ref(&())).await;
            }
            None
        }
    }
}

/// Writes the record revoking the Certificate's current certificate, before anything is
/// re-issued: once it exists, the serial is revoked whatever happens next.
async fn apply_revocation(
    ctx: &Context,
    observed: &Observed<'_>,
    record: &RevokedSerial,
    request: &str,
) -> Result<(), Error> {
    let certificate = format!("{}/{}", observed.key.0, observed.key.1);
    let desired = desired_record(
        &observed.spec.issuer_ref,
        &observed.records_namespace,
        record,
        &certificate,
        request,
    );
    let name = desired.metadata.name.clone().unwrap_or_default();
    let namespace = observed.records_namespace.clone();
    Api::<CertificateRevocation>::namespaced(ctx.client.clone(), &namespace)
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&desired),
        )
        .await
        .map(|_| ())
        .map_err(|source| Error::ApplyRevocation {
            namespace,
            name,
            source,
        })
}

/// The annotation `certkeeper.io/renew-requested-at`, when it is an RFC 3339 time. A value
/// that is not renews nothing; the Certificate gets a Warning Event saying why, once per value.
async fn renew_request(cert: &Certificate, ctx: &Context) -> Option<RenewRequest> {
    let object = format!("Certificate {}", object_name(cert));
    let Some(value) = annotation(cert, RENEW_REQUESTED_AT) else {
        ctx.warned_requests.forget(&object, RENEW_REQUESTED_AT);
        return None;
    };
    match RenewRequest::parse(value) {
        Ok(request) => {
            ctx.warned_requests.forget(&object, RENEW_REQUESTED_AT);
            Some(request)
        }
        Err(e) => {
            if ctx.warned_requests.first(&object, RENEW_REQUESTED_AT, value) {
                warn!(certificate = %object_name(cert), %value, error = %e, "ignoring {RENEW_REQUESTED_AT}: not an RFC 3339 time");
                let shown: String = value.chars().take(64).collect();
                let why = format!("{RENEW_REQUESTED_AT} {shown:?} is not an RFC 3339 time");
                events::publish(ctx, events::invalid_renew_request(&why), &cert.object_ref(&())).await;
            }
            None
        }
    }
}

/// What a kept certificate waits for: its place in its issuer's CA rotation, and the requests
/// still ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RotationWait {
    /// Signed by the issuer's current CA.
    under_current_ca: bool,
    /// Left under the previous CA, its re-issue slot.
    reissue_at: Option<Timestamp>,
    /// When a request still to be answered comes due.
    requests_due_at: Option<Timestamp>,
}

/// The instants a Ready Certificate must be looked at again, besides its renewal and expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Waits {
    reissue_at: Option<Timestamp>,
    requests_due_at: Option<Timestamp>,
}

/// Remembers that the Secret, read with `token`, holds at `version` a valid certificate for
/// the spec with these `facts`.
fn remember(
    ctx: &Context,
    observed: &Observed<'_>,
    token: ReadToken,
    version: Option<&str>,
    facts: &IssuedFacts,
    rotation: RotationWait,
) {
    let Some(version) = version else { return };
    let verdict = Verdict {
        uid: uid_hash(observed.cert.metadata.uid.as_deref().unwrap_or_default()),
        generation: observed.cert.metadata.generation,
        renew_requested_at: annotation(observed.cert, RENEW_REQUESTED_AT).map(Into::into),
        revoke_requested_at: annotation(observed.cert, REVOKE_REQUESTED_AT).map(Into::into),
        requests_due_at: rotation.requests_due_at,
        signer: signer_identity(&observed.signer),
        ca_pem: ca_pem_identity(&observed.trust),
        gate: observed.trust.gate,
        under_current_ca: rotation.under_current_ca,
        reissue_at: rotation.reissue_at,
        facts: facts.clone(),
        status_written: None,
    };
    ctx.verdicts.insert(&observed.key, token, version, verdict);
}

/// Tells the certificate inventory what the Secret holds at `version`, which this reconcile
/// has read or written: the inventory does not read certkeeper's own Secrets.
fn tell_inventory(
    ctx: &Context,
    observed: &Observed<'_>,
    version: Option<&str>,
    tls_crt: &[u8],
    ca_crt: &[u8],
) {
    let (Some(inventory), Some(version)) = (&ctx.inventory, version) else {
        return;
    };
    let object = crate::inventory::ObjectKey {
        kind: crate::inventory::Kind::Secret,
        namespace: observed.key.0.clone(),
        name: observed.spec.secret_name.clone(),
    };
    if !inventory.holds(&object, version) {
        inventory.record_own(&object, version, &crate::inventory::own_facts(tls_crt, ca_crt));
    }
}

/// Nothing to issue: keep the Secret's metadata and extra outputs in step with the spec and
/// report Ready.
async fn keep(
    ctx: &Context,
    observed: &Observed<'_>,
    token: ReadToken,
    current: &CurrentKeyPair,
    current_secret: Option<&Secret>,
    renewal_time: Timestamp,
    rotation: RotationWait,
) -> Result<Next, Error> {
    let Observed { cert, spec, .. } = observed;
    let leaf = current.leaf();
    // The larger of the two: a reconcile may read a status older than the Secret it sees.
    let revision = observed.previous.revision.max(current.revision).unwrap_or(1);
    let mut version = current_secret.and_then(|s| s.metadata.resource_version.clone());
    // What the Secret holds at `version`, for the inventory: as read, or as rewritten.
    let mut written = None;
    if let Some(existing) = current_secret {
        match material_from_secret(existing, current, observed).await {
            Ok(material) => {
                let desired = secret::desired_secret(cert, spec, leaf, &material, revision);
                if !secret::secret_up_to_date(existing, &desired, cert) {
                    info!(certificate = %object_name(*cert), "updating Secret metadata and outputs");
                    // Not an issuance: a failure retries with the error policy's backoff.
                    version = apply_secret(ctx, &desired).await?;
                    written = Some(material);
                }
            }
            Err(e) => {
                warn!(certificate = %object_name(*cert), error = %e, "cannot re-encode the Secret's key");
                version = None;
            }
        }
    }
    let facts = IssuedFacts::new(leaf, renewal_time, revision);
    remember(ctx, observed, token, version.as_deref(), &facts, rotation);
    match (&written, current_secret) {
        (Some(material), _) => tell_inventory(
            ctx,
            observed,
            version.as_deref(),
            material.chain_pem.as_bytes(),
            material.ca_pem.as_bytes(),
        ),
        (None, Some(existing)) => {
            let data = |key| secret::data(existing, key).unwrap_or_default();
            tell_inventory(ctx, observed, version.as_deref(), data("tls.crt"), data("ca.crt"));
        }
        (None, None) => {}
    }
    let waits = Waits {
        reissue_at: rotation.reissue_at,
        requests_due_at: rotation.requests_due_at,
    };
    report_ready(ctx, observed, facts, waits).await
}

/// The Secret holds a valid certificate for the spec: Ready, and look again at its deadlines.
async fn report_ready(
    ctx: &Context,
    observed: &Observed<'_>,
    facts: IssuedFacts,
    waits: Waits,
) -> Result<Next, Error> {
    let Observed {
        cert, previous, now, ..
    } = observed;
    let status = status::ready(previous, &facts, cert.metadata.generation, *now);
    let (_, mut deadlines) = settle(cert, ctx, previous, status, observed.spec.renew_before, *now).await?;
    deadlines.extend([facts.renewal_time, facts.not_after]);
    deadlines.extend(waits.reissue_at);
    deadlines.extend(waits.requests_due_at);
    deadlines.extend(observed.trust.recheck_at(*now));
    Ok(Next::requeue(requeue_after(*now, &deadlines)))
}

/// The Secret's current material, re-encoded as the spec now asks, with the `ca.crt` the
/// issuer's trust asks for (both roots during a CA rotation).
async fn material_from_secret(
    existing: &Secret,
    current: &CurrentKeyPair,
    observed: &Observed<'_>,
) -> Result<SecretMaterial, MaterialError> {
    let (spec, trust) = (&observed.spec, &observed.trust);
    let text = |key: &str| secret::data(existing, key).map(|b| String::from_utf8_lossy(b).into_owned());
    let chain_pem = text(secret::TLS_CRT).unwrap_or_default();
    let ca_pem = match (&trust.ca_pem, text(secret::CA_CRT)) {
        (Some(trusted), _) => trusted.clone(),
        (None, Some(ca)) => ca,
        (None, None) => current
            .chain
            .last()
            .map(CertificateInfo::to_pem)
            .unwrap_or_default(),
    };
    let material = SecretMaterial {
        chain_pem,
        key_pem: current.key.to_pem(spec.key_encoding)?,
        key_der: if spec.der_key {
            Some(current.key.to_der(spec.key_encoding)?)
        } else {
            None
        },
        ca_pem,
        key_pkcs8: current.key.to_der(pki::KeyEncoding::Pkcs8)?,
        stores: Default::default(),
    };
    Ok(with_stores(material, spec, &observed.passwords, Some(existing), observed.now).await?)
}

/// Why the Secret's material could not be put together.
#[derive(Debug, thiserror::Error)]
enum MaterialError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("cannot write the keystores: {0}")]
    Keystore(#[from] crate::keystore::KeystoreError),
}

/// `material` with the keystores the spec asks for, keeping those of `existing` that still
/// hold it.
///
/// Opening a store may derive keys for as many iterations as the store says (up to
/// `keystore::pkcs12`'s limit), so the stores are made on a blocking thread, never on the one
/// that runs the watches and reconciles.
async fn with_stores(
    mut material: SecretMaterial,
    spec: &ValidatedSpec,
    passwords: &Passwords,
    existing: Option<&Secret>,
    now: Timestamp,
) -> Result<SecretMaterial, crate::keystore::KeystoreError> {
    if spec.keystores.is_empty() {
        return Ok(material);
    }
    let (keystores, passwords, existing) = (spec.keystores.clone(), passwords.clone(), existing.cloned());
    tokio::task::spawn_blocking(move || {
        material.stores = keystores::stores(&keystores, &passwords, &material, existing.as_ref(), now)?;
        Ok(material)
    })
    .await
    .map_err(|e| crate::keystore::KeystoreError::Task(e.to_string()))?
}

/// The keystores' passwords: from the spec, or read from their Secrets. Err(message) when a
/// Secret or its key is missing.
async fn read_passwords(
    ctx: &Context,
    namespace: &str,
    spec: &keystores::KeystoreSpec,
) -> Result<Result<Passwords, String>, Error> {
    let mut secrets = std::collections::BTreeMap::new();
    for name in spec.password_secrets() {
        if !secrets.contains_key(name) {
            let secret = get_secret(&ctx.client, namespace, name).await?;
            secrets.insert(name.to_owned(), secret);
        }
    }
    Ok(keystores::passwords(spec, namespace, |name| {
        secrets.get(name).and_then(Option::as_ref)
    }))
}

/// When the next attempt may run after failures, unless something changed that deserves an
/// immediate retry (a spec change, a newer renewal request).
fn retry_at(
    previous: &CertificateStatus,
    generation: Option<i64>,
    requested_at: Option<Timestamp>,
) -> Option<Timestamp> {
    let attempts = u32::try_from(previous.failed_issuance_attempts?).ok()?;
    let last = previous.last_failure_time.as_ref()?.0;
    if previous.observed_generation != generation || requested_at.is_some_and(|r| r > last) {
        return None;
    }
    Some(last + backoff(attempts))
}

/// What one issuance produces, computed off the async workers.
pub(crate) struct Issued {
    pub(crate) leaf: CertificateInfo,
    pub(crate) material: SecretMaterial,
}

/// Who a CA signature is audited for (`telemetry::audit`): the controller's issuances.
pub(crate) struct SignAudit {
    pub(crate) metrics: Arc<crate::telemetry::metrics::Metrics>,
    pub(crate) issuer: crate::telemetry::audit::IssuerId,
    /// The Certificate, `ns/name`.
    pub(crate) certificate: String,
}

/// Generates (or reuses) the key and signs: the one issuance of the controller and of the
/// offline `certkeeper issue`. A CA's signature is audited when `audit` says for whom.
pub(crate) fn sign(
    spec: &ValidatedSpec,
    signer: &Signer,
    reuse: Option<PrivateKey>,
    now: Timestamp,
    audit: Option<&SignAudit>,
) -> Result<Issued, PkiError> {
    let key = match reuse {
        Some(key) => key,
        None => PrivateKey::generate(spec.key)?,
    };
    let template = spec.template(now);
    let (certificate, ca_signature) = match signer {
        Signer::SelfSigned => (pki::sign_self_signed(&template, &key), None),
        Signer::Ca(ca) => {
            let started = std::time::Instant::now();
            let signed = pki::sign_with_ca(&template, &key, ca);
            (signed, Some((ca, started.elapsed())))
        }
    };
    let parsed = certificate.and_then(|certificate| {
        let leaf = pki::parse_certificate_chain(certificate.certificate_pem.as_bytes())?
            .into_iter()
            .next()
            .ok_or(PkiError::NoCertificate)?;
        Ok((certificate, leaf))
    });
    if let (Some(audit), Some((ca, elapsed))) = (audit, ca_signature) {
        let error = parsed.as_ref().err().map(ToString::to_string);
        let facts = parsed
            .as_ref()
            .map(|(_, leaf)| crate::telemetry::audit::SignedFacts::certificate(leaf))
            .unwrap_or_default();
        let signature = crate::telemetry::audit::CaSignature {
            what: crate::telemetry::audit::Signed::Certificate,
            issuer: &audit.issuer,
            ca,
            certificate: &audit.certificate,
            facts: &facts,
        };
        crate::telemetry::audit::record(Some(&audit.metrics), &signature, elapsed, error.as_deref());
    }
    let (certificate, leaf) = parsed?;
    Ok(Issued {
        leaf,
        material: SecretMaterial {
            chain_pem: certificate.chain_pem,
            key_pem: key.to_pem(spec.key_encoding)?,
            key_der: if spec.der_key {
                Some(key.to_der(spec.key_encoding)?)
            } else {
                None
            },
            ca_pem: certificate.ca_pem,
            key_pkcs8: key.to_der(pki::KeyEncoding::Pkcs8)?,
            stores: Default::default(),
        },
    })
}

/// A trigger fired: issue a new certificate (unless backing off from failures), write the
/// Secret, then the status, then one Event.
/// What a fired trigger is to issue from: the Secret as read, and the requests it answers.
struct Issuance {
    trigger: Trigger,
    state: SecretState,
    renewal_time: Option<Timestamp>,
    revocation: Option<Revocation>,
    pending: Pending,
}

async fn issue(
    ctx: &Context,
    observed: &Observed<'_>,
    token: ReadToken,
    issuance: Issuance,
    write: SecretWrite,
) -> Result<Judged, Error> {
    let Issuance {
        trigger,
        state,
        renewal_time,
        revocation,
        pending,
    } = issuance;
    let Observed {
        cert,
        spec,
        previous,
        now,
        ..
    } = observed;
    let now = *now;
    let generation = cert.metadata.generation;
    // Revoking does not wait for a failed issuance's backoff.
    if let Some(revocation) = &revocation
        && let Some(request) = &revocation.to_write
    {
        info!(certificate = %object_name(*cert), serial = %revocation.record.serial_hex, reason = %revocation.record.reason, "recording the revocation");
        apply_revocation(ctx, observed, &revocation.record, request).await?;
    }
    // A revoke request that came due is answered, whatever follows: the certificate it was
    // made for is revoked now, or there is no certificate to revoke (and the one issued now
    // is not it).
    let readable = matches!(state, SecretState::Present(_));
    let revoke_due = pending.revoke_due(now);
    if let Some(request) = revoke_due.filter(|_| !readable) {
        warn!(certificate = %object_name(*cert), requested_at = %request.requested_at, "nothing to revoke: the Secret holds no readable certificate");
        let event =
            events::nothing_to_revoke(request.requested_at, "the Secret holds no readable certificate");
        events::publish(ctx, event, &cert.object_ref(&())).await;
    }
    let answered_anyway = Answered {
        renew: None,
        revoke: revoke_due
            .filter(|_| trigger.reason == TriggerReason::Revoked || !readable)
            .map(|r| r.value.clone()),
    };
    if let Some(at) = retry_at(previous, generation, pending.renew.as_ref().map(|r| r.at))
        && now < at
    {
        debug!(certificate = %object_name(*cert), retry_at = %at, "backing off after failed issuance");
        // Expiry does not wait for the backoff to end.
        let status = answered_anyway.record(previous.clone());
        let (_, mut deadlines) = settle(cert, ctx, previous, status, spec.renew_before, now).await?;
        deadlines.push(at);
        deadlines.extend(pending.next_due(now));
        return Ok(Judged::Done(Next::requeue(requeue_after(now, &deadlines))));
    }

    let (current_facts, current_revision, reuse) = match state {
        SecretState::Present(current) => {
            // The larger of the two: a reconcile may read a status older than the Secret.
            let revision = previous.revision.max(current.revision);
            let facts = (!trigger.reason.invalidates_current()).then(|| {
                IssuedFacts::new(
                    current.leaf(),
                    renewal_time.unwrap_or(current.leaf().not_after),
                    revision.unwrap_or(1),
                )
            });
            // A revoked certificate's key is never used again.
            let reuse = (spec.rotation_policy == crate::api::PrivateKeyRotationPolicy::Never
                && current.key.spec() == spec.key
                && trigger.reason != TriggerReason::Revoked)
                .then_some(current.key);
            (facts, revision, reuse)
        }
        _ => (None, previous.revision, None),
    };

    info!(certificate = %object_name(*cert), reason = trigger.reason.as_str(), message = %trigger.message, "issuing certificate");
    let job_spec = spec.clone();
    let signer = observed.signer.clone();
    let started = std::time::Instant::now();
    let issuer_kind = spec.issuer_ref.kind().to_owned();
    let audit = SignAudit {
        metrics: ctx.metrics.clone(),
        issuer: crate::telemetry::audit::IssuerId::new(
            spec.issuer_ref.kind(),
            &cert.namespace().unwrap_or_default(),
            &spec.issuer_ref.name,
        ),
        certificate: object_name(*cert),
    };
    let outcome = tokio::task::spawn_blocking(move || sign(&job_spec, &signer, reuse, now, Some(&audit)))
        .await
        .map_err(|e| Error::IssuanceTask {
            object: object_name(*cert),
            reason: e.to_string(),
        })?;
    debug!(certificate = %object_name(*cert), elapsed_ms = started.elapsed().as_millis() as u64, "signing finished");

    // A failure while the Secret was only taken as missing is not reported yet: the Secret
    // may be there and valid (the apply refused by a webhook before its precondition, a
    // restored Secret under an issuer that cannot sign now). It is read first, and a failure
    // is reported from what it holds.
    let failed = |cause: String| {
        let unread = write == SecretWrite::IfAbsent;
        if !unread {
            ctx.metrics.issuance(&issuer_kind, false, started.elapsed());
            ctx.verdicts.invalidate(&observed.key);
        }
        let policy = spec.renew_before;
        let trigger = &trigger;
        let current = current_facts.as_ref();
        let previous = answered_anyway.record(previous.clone());
        async move {
            if unread {
                debug!(certificate = %object_name(*cert), %cause, "failed with the Secret unread; reading it");
                return Ok(Judged::ReadFirst);
            }
            fail(
                cert,
                ctx,
                &observed.previous,
                &previous,
                current,
                trigger,
                &cause,
                policy,
                now,
            )
            .await
            .map(Judged::Done)
        }
    };
    let mut issued = match outcome {
        Ok(issued) => issued,
        Err(e) => return failed(format!("signing failed: {e}")).await,
    };
    if let Some(trusted) = &observed.trust.ca_pem {
        issued.material.ca_pem = trusted.clone();
    }
    issued.material = match with_stores(issued.material, spec, &observed.passwords, None, now).await {
        Ok(material) => material,
        Err(e) => return failed(format!("cannot write the keystores: {e}")).await,
    };
    let revision = current_revision.unwrap_or(0) + 1;
    let mut desired = secret::desired_secret(cert, spec, &issued.leaf, &issued.material, revision);
    if write == SecretWrite::IfAbsent {
        secret::create_only(&mut desired);
    }
    let version = match apply_secret(ctx, &desired).await {
        Ok(version) => version,
        // Taken as missing, the Secret exists after all: nothing was written; it is read now.
        Err(e) if write == SecretWrite::IfAbsent && e.is_conflict() => {
            debug!(certificate = %object_name(*cert), "its Secret exists; reading it");
            return Ok(Judged::ReadFirst);
        }
        // The API server could not take the write (or its answer was lost): not a failure of
        // this Certificate. Retried within seconds; a Secret the write did reach is adopted.
        Err(e) if e.is_transient() => {
            ctx.verdicts.invalidate(&observed.key);
            return Err(e);
        }
        // Its namespace is being deleted, and the Certificate with it: no failure to report
        // (no status, no Event, nothing counted), and nothing to try again.
        Err(e) if e.namespace_terminating() => {
            debug!(certificate = %object_name(*cert), "its namespace is being deleted; not issuing");
            ctx.verdicts.invalidate(&observed.key);
            return Ok(Judged::Done(Next::await_change()));
        }
        Err(e) => return failed(e.to_string()).await,
    };
    ctx.metrics.issuance(&issuer_kind, true, started.elapsed());

    let leaf = &issued.leaf;
    let uid = cert.metadata.uid.clone().unwrap_or_default();
    let renewal_time = schedule::renewal_time(leaf.not_before, leaf.not_after, spec.renew_before, &uid);
    let facts = IssuedFacts::new(leaf, renewal_time, revision);
    let waits = RotationWait {
        under_current_ca: true,
        reissue_at: None,
        requests_due_at: pending.next_due(now),
    };
    remember(ctx, observed, token, version.as_deref(), &facts, waits);
    tell_inventory(
        ctx,
        observed,
        version.as_deref(),
        issued.material.chain_pem.as_bytes(),
        issued.material.ca_pem.as_bytes(),
    );
    // A renewal requested up to now is answered by the certificate issued now.
    let answered = Answered {
        renew: (observed.renew_request.as_ref())
            .filter(|r| r.at <= now)
            .map(|r| r.value.clone()),
        ..answered_anyway
    };
    let status = answered.record(status::ready(previous, &facts, generation, now));
    let (_, mut deadlines) = settle(cert, ctx, previous, status, spec.renew_before, now).await?;
    info!(certificate = %object_name(*cert), serial = %leaf.serial_hex, not_after = %leaf.not_after, revision, "certificate issued");
    if let Some(revocation) = &revocation {
        let record = &revocation.record;
        let event = match &observed.signer {
            // Nobody publishes a selfSigned issuer's revocations: say so, not "revoked".
            Signer::SelfSigned => events::revocation_not_published(&record.serial_hex, revocation.not_after),
            Signer::Ca(_) => events::revoked(&record.serial_hex, record.reason.name(), record.revoked_at),
        };
        events::publish(ctx, event, &cert.object_ref(&())).await;
    }
    let event = if revision == 1 {
        events::issued(&leaf.serial_hex, leaf.not_after)
    } else {
        events::renewed(
            trigger.reason.as_str(),
            &trigger.message,
            &leaf.serial_hex,
            leaf.not_after,
        )
    };
    events::publish(ctx, event, &cert.object_ref(&())).await;
    deadlines.extend([renewal_time, leaf.not_after]);
    deadlines.extend(pending.next_due(now));
    deadlines.extend(observed.trust.recheck_at(now));
    Ok(Judged::Done(Next::requeue(requeue_after(now, &deadlines))))
}

/// An issuance attempt failed: record it in the status, warn, and back off. `base` is the
/// status as read (`previous`) with the requests answered anyway.
#[allow(clippy::too_many_arguments)]
async fn fail(
    cert: &Certificate,
    ctx: &Context,
    previous: &CertificateStatus,
    base: &CertificateStatus,
    current: Option<&IssuedFacts>,
    trigger: &Trigger,
    cause: &str,
    policy: RenewBefore,
    now: Timestamp,
) -> Result<Next, Error> {
    warn!(certificate = %object_name(cert), reason = trigger.reason.as_str(), error = %cause, "issuance failed");
    let status = status::issuance_failed(
        base,
        current,
        trigger.reason.as_str(),
        &trigger.message,
        cause,
        cert.metadata.generation,
        now,
    );
    let attempts = u32::try_from(status.failed_issuance_attempts.unwrap_or(1)).unwrap_or(u32::MAX);
    let retry = now + backoff(attempts);
    let (_, mut deadlines) = settle(cert, ctx, previous, status, policy, now).await?;
    events::publish(ctx, events::issuance_failed(cause, retry), &cert.object_ref(&())).await;
    deadlines.push(retry);
    Ok(Next::requeue(requeue_after(now, &deadlines)))
}

/// The Certificate cannot be acted on: Ready=False and, when that is news, a Warning Event.
/// Returns the instants of the coming expiry warnings of the certificate still in the Secret.
async fn report_not_ready(
    cert: &Certificate,
    ctx: &Context,
    previous: &CertificateStatus,
    why: &str,
    message: &str,
    policy: RenewBefore,
    now: Timestamp,
) -> Result<Vec<Timestamp>, Error> {
    let status = status::not_ready(previous, why, message, cert.metadata.generation, now);
    let (status, deadlines) = settle(cert, ctx, previous, status, policy, now).await?;
    let before = find_condition(&previous.conditions, READY).map(|c| (&c.status, &c.reason, &c.message));
    let after = find_condition(&status.conditions, READY);
    // Past notAfter the reason is Expired, and the Expired warning has said so.
    if let Some(after) = after
        && after.reason == why
        && before != Some((&after.status, &after.reason, &after.message))
    {
        warn!(certificate = %object_name(cert), reason = why, %message, "certificate not ready");
        events::publish(ctx, events::not_ready(why, message), &cert.object_ref(&())).await;
    }
    Ok(deadlines)
}

/// Writes `status` with what expiry means for it (Ready=False past notAfter, the warning now
/// due), then publishes that warning: status first, so a restart never repeats a warning.
/// Returns the written status and the instants of the coming expiry warnings.
async fn settle(
    cert: &Certificate,
    ctx: &Context,
    previous: &CertificateStatus,
    mut status: CertificateStatus,
    policy: RenewBefore,
    now: Timestamp,
) -> Result<(CertificateStatus, Vec<Timestamp>), Error> {
    let (warning, deadlines) = expiry::apply(
        &mut status,
        &ctx.expiry_thresholds,
        policy,
        cert.metadata.generation,
        now,
    );
    write_status(cert, ctx, previous, &status).await?;
    if let (Some(warning), Some(not_after)) = (warning, status.not_after.as_ref()) {
        let not_after = not_after.0;
        let event = match warning {
            Warning::ExpiringSoon { threshold } => {
                let threshold = expiry::go_duration(threshold);
                warn!(certificate = %object_name(cert), %not_after, %threshold, "certificate expiring soon");
                events::expiring_soon(
                    not_after,
                    &threshold,
                    status.renewal_time.as_ref().map(|t| t.0),
                    now,
                )
            }
            Warning::Expired => {
                warn!(certificate = %object_name(cert), %not_after, "certificate expired");
                events::expired(not_after)
            }
        };
        events::publish(ctx, event, &cert.object_ref(&())).await;
    }
    Ok((status, deadlines))
}

/// Writes the Secret in one server-side apply: every key together, under one field manager.
/// Returns the resourceVersion the API server gave it.
async fn apply_secret(ctx: &Context, desired: &Secret) -> Result<Option<String>, Error> {
    let namespace = desired.metadata.namespace.clone().unwrap_or_default();
    let name = desired.metadata.name.clone().unwrap_or_default();
    Api::<Secret>::namespaced(ctx.client.clone(), &namespace)
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(desired),
        )
        .await
        .map(|written| written.metadata.resource_version)
        .map_err(|source| Error::ApplySecret {
            namespace,
            name,
            source,
        })
}

/// Writes the status with server-side apply, only when it changed, and tells the Certificate's
/// verdict which resourceVersion the write replaced.
async fn write_status(
    cert: &Certificate,
    ctx: &Context,
    previous: &CertificateStatus,
    status: &CertificateStatus,
) -> Result<(), Error> {
    if status == previous {
        return Ok(());
    }
    let patch = serde_json::json!({
        "apiVersion": Certificate::api_version(&()),
        "kind": "Certificate",
        "status": status,
    });
    let namespace = cert.namespace().unwrap_or_default();
    let written = Api::<Certificate>::namespaced(ctx.client.clone(), &namespace)
        .patch_status(
            &cert.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| Error::PatchStatus {
            kind: "Certificate",
            object: object_name(cert),
            source,
        })?;
    if let (Some(before), Some(after)) = (
        cert.metadata.resource_version.clone(),
        written.metadata.resource_version,
    ) {
        ctx.verdicts.update(&(namespace, cert.name_any()), |verdict| {
            verdict.status_written = Some(Box::new((before.into(), after.into())));
        });
    }
    Ok(())
}
