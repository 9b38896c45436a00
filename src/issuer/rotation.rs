//! Staged rotation of a CA issuer's trust anchor (SPEC "Trust distribution and CA rotation"):
//! from the CA its Secret holds now, the status it last wrote and how far its Certificates
//! have got, the next trust anchors, rotation phase and Events. Pure: the status carries all
//! of a rotation's state, so a restarted controller resumes where the last one stopped.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{IssuerStatus, Rotation, RotationPhase, TrustAnchor, TrustAnchorRole};
use crate::pki::CertificateInfo;

/// Issuer Event reasons of a rotation.
pub const ROTATION_STARTED: &str = "RotationStarted";
pub const TRUST_DISTRIBUTED: &str = "TrustDistributed";
pub const ROTATION_COMPLETED: &str = "RotationCompleted";
pub const EMERGENCY_ROTATION: &str = "EmergencyRotation";
pub const NOTHING_TO_DISTRUST: &str = "NothingToDistrust";
/// Certificates that could not be re-issued within the window were left under the old CA.
pub const ROTATION_LEFT_OUT: &str = "RotationLeftOut";

/// How long a distrust request made while nothing is to distrust waits for the CA change it
/// is meant for; after that it is recorded as answered, so a later routine rotation is not
/// cut short by an annotation left in place.
const DISTRUST_GRACE: SignedDuration = SignedDuration::from_hours(1);

/// The waits of a rotation (`--trust-propagation-delay`, `--rotation-reissue-window`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotationSettings {
    /// How long a written Secret or Bundle takes to reach every pod (kubelet sync, reloads).
    pub propagation_delay: SignedDuration,
    /// The span over which the certificates under the previous CA are re-issued.
    pub reissue_window: SignedDuration,
}

impl Default for RotationSettings {
    fn default() -> Self {
        Self {
            propagation_delay: SignedDuration::from_mins(5),
            reissue_window: SignedDuration::from_mins(10),
        }
    }
}

/// The CA an issuer's Secret holds now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaView {
    /// SHA-256 fingerprint of the CA certificate.
    pub fingerprint: String,
    /// The root the CA chains to.
    pub anchor: AnchorCertificate,
}

/// A root certificate, as a trust anchor records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnchorCertificate {
    pub fingerprint: String,
    pub not_after: Timestamp,
    pub pem: String,
}

impl AnchorCertificate {
    pub fn of(certificate: &CertificateInfo) -> Self {
        Self {
            fingerprint: certificate.fingerprint_sha256.clone(),
            not_after: certificate.not_after,
            pem: certificate.to_pem(),
        }
    }
}

/// How far an issuer's Certificates have got, from what the controller last found in their
/// Secrets. Certificates that are failing for reasons of their own are not waited for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Every Secret (and every Bundle sourcing the issuer) holds exactly the status's anchors.
    pub trust_distributed: bool,
    /// Every Secret holds a certificate signed by the current CA, but for `blocked` ones.
    pub reissued: bool,
    /// Certificates (`namespace/name`) still under the previous CA that cannot be re-issued
    /// now (`Issuing=False`: denied by a policy, failing): waited for until the re-issue window
    /// ends, then left out of the rotation.
    pub blocked: Vec<String>,
}

/// How many left-out Certificates an issuer's status and Event name; the rest are counted.
const LEFT_OUT_SHOWN: usize = 20;

/// An issuer Event to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationEvent {
    pub reason: &'static str,
    pub note: String,
    pub warning: bool,
}

/// What the issuer's status and Events should become.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub trust_anchors: Vec<TrustAnchor>,
    pub rotation: Option<Rotation>,
    pub distrusted_at: Option<Time>,
    pub events: Vec<RotationEvent>,
    /// When the rotation's next wait ends.
    pub wake_at: Option<Timestamp>,
}

/// When an issuer must look at its distrust request again (`requested_at`, the time of its
/// `certkeeper.io/distrust-previous-requested-at`, whole seconds): at that time when it is
/// ahead, and when its grace ends while it waits for the CA change it is meant for. None once
/// `distrusted_at` (the status) answers it.
pub fn distrust_wake_at(
    distrusted_at: Option<&Time>,
    requested_at: Option<Timestamp>,
    now: Timestamp,
) -> Option<Timestamp> {
    let at = requested_at.filter(|at| distrusted_at.map(|t| t.0) != Some(*at))?;
    [at, at + DISTRUST_GRACE].into_iter().find(|t| *t > now)
}

/// The ca.crt content for `anchors`: the current root first, then the previous ones by
/// fingerprint, so equal sets give equal bytes.
pub fn trust_pem(anchors: &[TrustAnchor]) -> String {
    let mut ordered: Vec<&TrustAnchor> = anchors.iter().collect();
    ordered.sort_by(|a, b| {
        (a.role != TrustAnchorRole::Current, &a.fingerprint_sha256)
            .cmp(&(b.role != TrustAnchorRole::Current, &b.fingerprint_sha256))
    });
    ordered.iter().map(|a| normalized_pem(&a.certificate)).collect()
}

/// One PEM block ending in a newline, whatever the status holds.
fn normalized_pem(pem: &str) -> String {
    let trimmed = pem.trim();
    format!("{trimmed}\n")
}

fn anchor(certificate: &AnchorCertificate, role: TrustAnchorRole, since: Timestamp) -> TrustAnchor {
    TrustAnchor {
        fingerprint_sha256: certificate.fingerprint.clone(),
        not_after: Some(Time(certificate.not_after)),
        role,
        since: Some(Time(since)),
        certificate: certificate.pem.clone(),
    }
}

fn short(fingerprint: &str) -> &str {
    fingerprint.get(..23).unwrap_or(fingerprint)
}

fn event(reason: &'static str, note: String) -> RotationEvent {
    RotationEvent {
        reason,
        note,
        warning: false,
    }
}

/// The next step of the issuer's rotation. `previous` is the status as last written;
/// `distrust_requested_at` is the issuer's `certkeeper.io/distrust-previous-requested-at`.
pub fn plan(
    previous: &IssuerStatus,
    ca: &CaView,
    progress: Progress,
    distrust_requested_at: Option<Timestamp>,
    settings: RotationSettings,
    now: Timestamp,
) -> Plan {
    let mut plan = Plan {
        trust_anchors: previous.trust_anchors.clone(),
        rotation: previous.rotation.clone(),
        distrusted_at: previous.distrusted_at.clone(),
        events: Vec::new(),
        wake_at: None,
    };
    let current = previous
        .trust_anchors
        .iter()
        .find(|a| a.role == TrustAnchorRole::Current);
    let mut started = false;
    match current {
        // First look at this CA: nothing to rotate from.
        None => {
            plan.trust_anchors = vec![anchor(&ca.anchor, TrustAnchorRole::Current, now)];
            plan.rotation = None;
        }
        Some(old) if old.fingerprint_sha256 != ca.anchor.fingerprint => {
            let mut anchors = vec![anchor(&ca.anchor, TrustAnchorRole::Current, now)];
            for a in &previous.trust_anchors {
                if a.fingerprint_sha256 == ca.anchor.fingerprint {
                    continue;
                }
                let mut kept = a.clone();
                if kept.role == TrustAnchorRole::Current {
                    kept.role = TrustAnchorRole::Previous;
                    kept.since = Some(Time(now));
                }
                anchors.push(kept);
            }
            plan.trust_anchors = anchors;
            plan.rotation = Some(Rotation {
                phase: RotationPhase::Distributing,
                started_at: Time(now),
                phase_started_at: Time(now),
                trust_distributed_at: None,
                previous_fingerprint_sha256: Some(old.fingerprint_sha256.clone()),
                ca_fingerprint_sha256: ca.fingerprint.clone(),
                left_out: Vec::new(),
            });
            plan.events.push(event(
                ROTATION_STARTED,
                format!(
                    "The CA's root changed from {} to {}: both roots are being distributed; \
                     nothing is re-issued until every Secret and Bundle holds both, plus {}",
                    short(&old.fingerprint_sha256),
                    short(&ca.anchor.fingerprint),
                    settings.propagation_delay
                ),
            ));
            started = true;
        }
        Some(_) => {
            let moving_to = plan.rotation.as_ref().map(|r| r.ca_fingerprint_sha256.as_str());
            let known = previous.ca_fingerprint_sha256.as_deref();
            let ca_changed = match moving_to {
                Some(target) => target != ca.fingerprint,
                None => known.is_some_and(|k| k != ca.fingerprint),
            };
            let has_previous = plan
                .trust_anchors
                .iter()
                .any(|a| a.role == TrustAnchorRole::Previous);
            let distributing = plan
                .rotation
                .as_ref()
                .is_some_and(|r| r.phase == RotationPhase::Distributing);
            if ca_changed && distributing {
                // Same roots to distribute; the certificates will move to this CA instead.
                if let Some(rotation) = plan.rotation.as_mut() {
                    rotation.ca_fingerprint_sha256 = ca.fingerprint.clone();
                }
            } else if ca_changed {
                plan.rotation = Some(Rotation {
                    phase: RotationPhase::Reissuing,
                    started_at: plan
                        .rotation
                        .as_ref()
                        .filter(|_| has_previous)
                        .map_or(Time(now), |r| r.started_at.clone()),
                    phase_started_at: Time(now),
                    trust_distributed_at: None,
                    previous_fingerprint_sha256: plan
                        .rotation
                        .as_ref()
                        .and_then(|r| r.previous_fingerprint_sha256.clone())
                        .filter(|_| has_previous),
                    ca_fingerprint_sha256: ca.fingerprint.clone(),
                    left_out: Vec::new(),
                });
                plan.events.push(event(
                    ROTATION_STARTED,
                    format!(
                        "The CA changed to {} under the same root {}: its certificates are \
                         re-issued over {}",
                        short(&ca.fingerprint),
                        short(&ca.anchor.fingerprint),
                        settings.reissue_window
                    ),
                ));
                started = true;
            }
        }
    }

    let nothing_to_distrust = plan.rotation.is_none()
        && !plan
            .trust_anchors
            .iter()
            .any(|a| a.role == TrustAnchorRole::Previous);
    if let Some(at) = distrust_requested_at
        && at <= now
        && previous.distrusted_at.as_ref().map(|t| t.0) != Some(at)
        // Asked for before the CA change was seen (the issuer's CA cache follows a watch of
        // its own): kept for the change, unless it is older than the grace.
        && !(nothing_to_distrust && now.duration_since(at) <= DISTRUST_GRACE)
    {
        let dropped: Vec<String> = plan
            .trust_anchors
            .iter()
            .filter(|a| a.role == TrustAnchorRole::Previous)
            .map(|a| short(&a.fingerprint_sha256).to_owned())
            .collect();
        let was_rotating = plan.rotation.is_some();
        plan.trust_anchors.retain(|a| a.role == TrustAnchorRole::Current);
        plan.rotation = None;
        plan.distrusted_at = Some(Time(at));
        plan.events.retain(|e| e.reason != ROTATION_STARTED);
        if nothing_to_distrust {
            // Answered, never silently: the CA change it was meant for did not come.
            plan.events.push(RotationEvent {
                reason: NOTHING_TO_DISTRUST,
                note: format!(
                    "Distrust of the previous CA requested at {at}: no previous root is trusted and \
                     the CA did not change within {DISTRUST_GRACE:#}; nothing distrusted"
                ),
                warning: true,
            });
        } else if was_rotating || !dropped.is_empty() {
            let roots = if dropped.is_empty() {
                "no previous root was trusted".to_owned()
            } else {
                format!("no longer trusting {}", dropped.join(", "))
            };
            plan.events.push(RotationEvent {
                reason: EMERGENCY_ROTATION,
                note: format!(
                    "Distrust of the previous CA requested at {at}: {roots}; every certificate \
                     not signed by the current CA is re-issued now"
                ),
                warning: true,
            });
        }
        return plan;
    }
    if started {
        return plan;
    }

    let Some(rotation) = plan.rotation.as_mut() else {
        return plan;
    };
    match rotation.phase {
        RotationPhase::Distributing => {
            if rotation.trust_distributed_at.is_none() && progress.trust_distributed {
                rotation.trust_distributed_at = Some(Time(now));
                plan.events.push(event(
                    TRUST_DISTRIBUTED,
                    format!(
                        "Every Secret and Bundle of this issuer holds the old and the new root; \
                         re-issuing starts after {}",
                        settings.propagation_delay
                    ),
                ));
            }
            if let Some(distributed) = &rotation.trust_distributed_at {
                let at = distributed.0 + settings.propagation_delay;
                if now >= at {
                    rotation.phase = RotationPhase::Reissuing;
                    rotation.phase_started_at = Time(now);
                } else {
                    plan.wake_at = Some(at);
                }
            }
        }
        RotationPhase::Reissuing => {
            let has_previous = plan
                .trust_anchors
                .iter()
                .any(|a| a.role == TrustAnchorRole::Previous);
            let last_slot = rotation.phase_started_at.0 + settings.reissue_window;
            // A Certificate that cannot be re-issued (denied, failing) does not hold the
            // rotation forever: once the window is over it is left out, and said so.
            let moved = progress.reissued && (progress.blocked.is_empty() || now >= last_slot);
            if moved && !progress.blocked.is_empty() {
                let mut named: Vec<String> = progress.blocked.iter().take(LEFT_OUT_SHOWN).cloned().collect();
                if progress.blocked.len() > LEFT_OUT_SHOWN {
                    named.push(format!("and {} more", progress.blocked.len() - LEFT_OUT_SHOWN));
                }
                rotation.left_out = named.clone();
                plan.events.push(RotationEvent {
                    reason: ROTATION_LEFT_OUT,
                    note: format!(
                        "{} Certificate(s) could not be re-issued within the {} window and keep a \
                         certificate of the previous CA: {}",
                        progress.blocked.len(),
                        settings.reissue_window,
                        named.join(", ")
                    ),
                    warning: true,
                });
            }
            if moved {
                if has_previous {
                    rotation.phase = RotationPhase::Retiring;
                    rotation.phase_started_at = Time(now);
                    plan.wake_at = Some(now + settings.propagation_delay);
                } else {
                    plan.rotation = None;
                    plan.events.push(event(
                        ROTATION_COMPLETED,
                        "Every certificate of this issuer is signed by the current CA".into(),
                    ));
                }
            } else {
                plan.wake_at = Some(last_slot.max(now));
            }
        }
        RotationPhase::Retiring => {
            let at = rotation.phase_started_at.0 + settings.propagation_delay;
            if now >= at {
                let retired: Vec<String> = plan
                    .trust_anchors
                    .iter()
                    .filter(|a| a.role == TrustAnchorRole::Previous)
                    .map(|a| short(&a.fingerprint_sha256).to_owned())
                    .collect();
                plan.trust_anchors.retain(|a| a.role == TrustAnchorRole::Current);
                plan.rotation = None;
                plan.events.push(event(
                    ROTATION_COMPLETED,
                    format!(
                        "Every certificate is under the new root; the previous root {} is no \
                         longer trusted",
                        retired.join(", ")
                    ),
                ));
            } else {
                plan.wake_at = Some(at);
            }
        }
    }
    plan
}

/// Whether an issuer below this one in a chain (root → intermediate → leaves) still trusts
/// a root this one is retiring, among the `others` issuers' statuses. The intermediate's issuer
/// lists that root until its own leaves have moved: as its current root until it sees its new
/// CA, then as its previous one in a rotation of its own, started after this one. An issuer
/// whose rotation started earlier is above this one, and waits for it in turn.
pub fn trusted_below<'a>(status: &IssuerStatus, mut others: impl Iterator<Item = &'a IssuerStatus>) -> bool {
    let retiring: Vec<&str> = status
        .trust_anchors
        .iter()
        .filter(|a| a.role == TrustAnchorRole::Previous)
        .map(|a| a.fingerprint_sha256.as_str())
        .collect();
    let started = status.rotation.as_ref().map(|r| r.started_at.0);
    others.any(|other| {
        let below = match (&other.rotation, started) {
            (Some(theirs), Some(ours)) => theirs.started_at.0 > ours,
            _ => true,
        };
        below
            && other
                .trust_anchors
                .iter()
                .any(|a| retiring.contains(&a.fingerprint_sha256.as_str()))
    })
}

/// Where a Certificate's re-issue stands against its issuer's rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RotationGate {
    /// A certificate not signed by the current CA is re-issued at once.
    Now,
    /// Not yet: the new root is still being distributed (or the issuer has not yet seen the
    /// CA the Certificate would be signed by). Renewals wait too.
    Hold,
    /// Re-issued at `from` plus the Certificate's share (UID jitter) of `window`.
    Spread { from: Timestamp, window: SignedDuration },
}

impl RotationGate {
    /// The gate of an issuer whose status is `status` for a Certificate whose signer's CA
    /// has `ca_fingerprint` and `anchor_fingerprint`.
    pub fn of(
        status: Option<&IssuerStatus>,
        ca_fingerprint: &str,
        anchor_fingerprint: &str,
        window: SignedDuration,
    ) -> Self {
        // An issuer that never reported a CA has no certificates under an older one.
        let Some(known) = status.and_then(|s| s.ca_fingerprint_sha256.as_deref().map(|k| (s, k))) else {
            return Self::Now;
        };
        let (status, known_ca) = known;
        let caught_up = known_ca == ca_fingerprint
            && (status.trust_anchors.is_empty()
                || status.trust_anchors.iter().any(|a| {
                    a.role == TrustAnchorRole::Current && a.fingerprint_sha256 == anchor_fingerprint
                }));
        if !caught_up {
            return Self::Hold;
        }
        match status.rotation.as_ref().map(|r| (r.phase, &r.phase_started_at)) {
            None | Some((RotationPhase::Retiring, _)) => Self::Now,
            Some((RotationPhase::Distributing, _)) => Self::Hold,
            Some((RotationPhase::Reissuing, from)) => Self::Spread { from: from.0, window },
        }
    }

    /// When a certificate not signed by the current CA is to be re-issued, for the
    /// Certificate with `uid`; None while held.
    pub fn reissue_at(&self, uid: &str) -> Option<Timestamp> {
        match *self {
            Self::Now => Some(Timestamp::MIN),
            Self::Hold => None,
            Self::Spread { from, window } => {
                let share = window.as_secs_f64() * crate::certificate::schedule::jitter_fraction(uid);
                Some(from + SignedDuration::from_secs(share as i64))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ts;

    const T0: &str = "2026-11-23T10:00:00Z";

    fn anchor_cert(fp: &str) -> AnchorCertificate {
        AnchorCertificate {
            fingerprint: fp.into(),
            not_after: ts("2036-01-01T00:00:00Z"),
            pem: format!("-----BEGIN CERTIFICATE-----\n{fp}\n-----END CERTIFICATE-----\n"),
        }
    }

    fn ca(ca_fp: &str, root_fp: &str) -> CaView {
        CaView {
            fingerprint: ca_fp.into(),
            anchor: anchor_cert(root_fp),
        }
    }

    fn settled(ca_fp: &str, root_fp: &str) -> IssuerStatus {
        let first = plan(
            &IssuerStatus::default(),
            &ca(ca_fp, root_fp),
            Progress::default(),
            None,
            RotationSettings::default(),
            ts(T0),
        );
        IssuerStatus {
            ca_fingerprint_sha256: Some(ca_fp.into()),
            trust_anchors: first.trust_anchors,
            rotation: first.rotation,
            ..Default::default()
        }
    }

    fn apply(status: &IssuerStatus, plan: &Plan, ca_fp: &str) -> IssuerStatus {
        IssuerStatus {
            ca_fingerprint_sha256: Some(ca_fp.into()),
            trust_anchors: plan.trust_anchors.clone(),
            rotation: plan.rotation.clone(),
            distrusted_at: plan.distrusted_at.clone(),
            ..status.clone()
        }
    }

    /// CA1 under root R1 replaced at minute 0 by CA2 under a new root R2: Distributing.
    fn distributing() -> IssuerStatus {
        let status = settled("CA1", "R1");
        let started = plan(
            &status,
            &ca("CA2", "R2"),
            NONE,
            None,
            RotationSettings::default(),
            at(0),
        );
        apply(&status, &started, "CA2")
    }

    fn at(minutes: i64) -> Timestamp {
        ts(T0) + SignedDuration::from_mins(minutes)
    }

    fn reasons(plan: &Plan) -> Vec<&'static str> {
        plan.events.iter().map(|e| e.reason).collect()
    }

    fn roles(plan: &Plan) -> Vec<(String, TrustAnchorRole)> {
        plan.trust_anchors
            .iter()
            .map(|a| (a.fingerprint_sha256.clone(), a.role))
            .collect()
    }

    const ALL: Progress = Progress {
        trust_distributed: true,
        reissued: true,
        blocked: Vec::new(),
    };
    const NONE: Progress = Progress {
        trust_distributed: false,
        reissued: false,
        blocked: Vec::new(),
    };

    #[test]
    fn the_first_look_adopts_the_root_without_a_rotation() {
        let status = settled("CA1", "R1");
        assert_eq!(status.trust_anchors.len(), 1);
        assert_eq!(status.trust_anchors[0].role, TrustAnchorRole::Current);
        assert_eq!(status.rotation, None);
    }

    #[test]
    fn a_certificate_that_cannot_be_reissued_is_left_out_after_the_window_and_named() {
        let s = RotationSettings::default();
        let mut status = settled("CA1", "R1");
        let new = ca("CA2", "R2");
        status = apply(&status, &plan(&status, &new, NONE, None, s, at(0)), "CA2");
        status = apply(&status, &plan(&status, &new, ALL, None, s, at(2)), "CA2");
        let p = plan(&status, &new, NONE, None, s, at(7));
        assert_eq!(p.rotation.as_ref().unwrap().phase, RotationPhase::Reissuing);
        status = apply(&status, &p, "CA2");

        // Everything else moved; one Certificate is denied by a policy (Issuing=False).
        let denied = Progress {
            blocked: vec!["shop/impostor".into()],
            ..ALL
        };
        // Within the window it is still waited for.
        let p = plan(&status, &new, denied.clone(), None, s, at(12));
        assert_eq!(p.rotation.as_ref().unwrap().phase, RotationPhase::Reissuing);
        assert_eq!(p.wake_at, Some(at(17)));
        assert!(p.events.is_empty());
        // At the window's end it is left out: the rotation moves on, names it, and warns once.
        let p = plan(&status, &new, denied.clone(), None, s, at(17));
        let rotation = p.rotation.clone().unwrap();
        assert_eq!(rotation.phase, RotationPhase::Retiring);
        assert_eq!(rotation.left_out, ["shop/impostor"]);
        assert_eq!(reasons(&p), [ROTATION_LEFT_OUT]);
        assert!(p.events[0].warning);
        assert!(p.events[0].note.contains("shop/impostor"), "{}", p.events[0].note);
        status = apply(&status, &p, "CA2");
        let p = plan(&status, &new, denied, None, s, at(18));
        assert!(p.events.is_empty(), "warned twice: {:?}", p.events);
    }

    #[test]
    fn a_new_root_walks_through_distributing_reissuing_and_retiring() {
        let s = RotationSettings::default();
        let mut status = settled("CA1", "R1");
        let new = ca("CA2", "R2");

        // The CA Secret now holds a CA under a new root.
        let p = plan(&status, &new, NONE, None, s, at(0));
        assert_eq!(reasons(&p), [ROTATION_STARTED]);
        assert_eq!(
            roles(&p),
            [
                ("R2".into(), TrustAnchorRole::Current),
                ("R1".into(), TrustAnchorRole::Previous)
            ]
        );
        let r = p.rotation.clone().unwrap();
        assert_eq!(r.phase, RotationPhase::Distributing);
        assert_eq!(r.previous_fingerprint_sha256.as_deref(), Some("R1"));
        status = apply(&status, &p, "CA2");

        // Not everything holds both roots yet: still distributing, no wait scheduled.
        let p = plan(&status, &new, NONE, None, s, at(1));
        assert_eq!(p.rotation, status.rotation);
        assert!(p.events.is_empty());

        // Everything holds both: the propagation delay starts.
        let p = plan(&status, &new, ALL, None, s, at(2));
        assert_eq!(reasons(&p), [TRUST_DISTRIBUTED]);
        assert_eq!(p.wake_at, Some(at(7)));
        status = apply(&status, &p, "CA2");

        // Before the delay: nothing; after it: Reissuing.
        let p = plan(&status, &new, ALL, None, s, at(6));
        assert_eq!(p.rotation.as_ref().unwrap().phase, RotationPhase::Distributing);
        let p = plan(&status, &new, NONE, None, s, at(7));
        assert_eq!(p.rotation.as_ref().unwrap().phase, RotationPhase::Reissuing);
        status = apply(&status, &p, "CA2");

        // Leaves still under the old CA: wait, at most until the window's last slot.
        let p = plan(&status, &new, NONE, None, s, at(8));
        assert_eq!(p.rotation.as_ref().unwrap().phase, RotationPhase::Reissuing);
        assert_eq!(p.wake_at, Some(at(17)));

        // All re-issued: Retiring, both roots still trusted for the delay.
        let p = plan(&status, &new, ALL, None, s, at(12));
        assert_eq!(p.rotation.as_ref().unwrap().phase, RotationPhase::Retiring);
        assert_eq!(p.trust_anchors.len(), 2);
        assert_eq!(p.wake_at, Some(at(17)));
        status = apply(&status, &p, "CA2");

        let p = plan(&status, &new, ALL, None, s, at(16));
        assert_eq!(p.trust_anchors.len(), 2);
        let p = plan(&status, &new, ALL, None, s, at(17));
        assert_eq!(reasons(&p), [ROTATION_COMPLETED]);
        assert_eq!(roles(&p), [("R2".into(), TrustAnchorRole::Current)]);
        assert_eq!(p.rotation, None);
    }

    #[test]
    fn an_intermediate_renewed_under_the_same_root_only_reissues() {
        let s = RotationSettings::default();
        let mut status = settled("CA1", "R1");
        let renewed = ca("CA2", "R1");
        let p = plan(&status, &renewed, NONE, None, s, at(0));
        assert_eq!(reasons(&p), [ROTATION_STARTED]);
        let r = p.rotation.clone().unwrap();
        assert_eq!(r.phase, RotationPhase::Reissuing);
        assert_eq!(r.previous_fingerprint_sha256, None);
        assert_eq!(p.trust_anchors.len(), 1);
        status = apply(&status, &p, "CA2");

        let p = plan(&status, &renewed, ALL, None, s, at(3));
        assert_eq!(reasons(&p), [ROTATION_COMPLETED]);
        assert_eq!(p.rotation, None);
    }

    #[test]
    fn emergency_drops_the_previous_root_at_once_and_only_once() {
        let s = RotationSettings::default();
        let mut status = distributing();
        let new = ca("CA2", "R2");
        let asked = at(1);
        let p = plan(&status, &new, NONE, Some(asked), s, at(1));
        assert_eq!(reasons(&p), [EMERGENCY_ROTATION]);
        assert!(p.events[0].warning);
        assert_eq!(roles(&p), [("R2".into(), TrustAnchorRole::Current)]);
        assert_eq!(p.rotation, None);
        status = apply(&status, &p, "CA2");

        // The annotation stays; the next routine rotation is not cut short by it.
        let newer = ca("CA3", "R3");
        let p = plan(&status, &newer, NONE, Some(asked), s, at(60));
        assert_eq!(reasons(&p), [ROTATION_STARTED]);
        assert_eq!(p.trust_anchors.len(), 2);
    }

    #[test]
    fn an_emergency_with_the_ca_change_in_the_same_look_never_distributes_the_old_root() {
        let status = settled("CA1", "R1");
        let p = plan(
            &status,
            &ca("CA2", "R2"),
            NONE,
            Some(at(0)),
            RotationSettings::default(),
            at(0),
        );
        assert_eq!(reasons(&p), [EMERGENCY_ROTATION]);
        assert_eq!(roles(&p), [("R2".into(), TrustAnchorRole::Current)]);
        assert_eq!(p.rotation, None);
    }

    #[test]
    fn a_distrust_request_seen_before_the_ca_change_waits_for_it_within_the_grace() {
        let s = RotationSettings::default();
        let status = settled("CA1", "R1");
        let asked = at(0);
        // Nothing to distrust yet: not consumed.
        let p = plan(&status, &ca("CA1", "R1"), NONE, Some(asked), s, at(1));
        assert_eq!(p.distrusted_at, None);
        assert!(p.events.is_empty());
        // The new CA arrives: the old root is never distributed.
        let p = plan(&status, &ca("CA2", "R2"), NONE, Some(asked), s, at(2));
        assert_eq!(reasons(&p), [EMERGENCY_ROTATION]);
        assert_eq!(roles(&p), [("R2".into(), TrustAnchorRole::Current)]);
        // Past the grace, an annotation with nothing to distrust is recorded and done with,
        // with a Warning saying so.
        let p = plan(&status, &ca("CA1", "R1"), NONE, Some(asked), s, at(61));
        assert_eq!(p.distrusted_at, Some(Time(asked)));
        assert_eq!(reasons(&p), [NOTHING_TO_DISTRUST]);
        assert!(p.events[0].warning);
        // The issuer looks again when the grace ends.
        assert_eq!(distrust_wake_at(None, Some(asked), at(1)), Some(at(60)));
        assert_eq!(
            distrust_wake_at(p.distrusted_at.as_ref(), Some(asked), at(61)),
            None
        );
    }

    #[test]
    fn a_distrust_request_dated_ahead_wakes_the_issuer_at_its_time() {
        let ahead = at(0) + SignedDuration::from_secs(1);
        assert_eq!(distrust_wake_at(None, Some(ahead), at(0)), Some(ahead));
        assert_eq!(
            distrust_wake_at(None, Some(ahead), ahead),
            Some(ahead + DISTRUST_GRACE),
            "due: acted on, or waiting for the CA change"
        );
        assert_eq!(
            distrust_wake_at(Some(&Time(ahead)), Some(ahead), at(0)),
            None,
            "answered"
        );
        assert_eq!(distrust_wake_at(None, None, at(0)), None);
    }

    #[test]
    fn a_distrust_request_dated_in_the_future_waits() {
        let status = distributing();
        let s = RotationSettings::default();
        let new = ca("CA2", "R2");
        let p = plan(&status, &new, NONE, Some(at(30)), s, at(1));
        assert_eq!(p.trust_anchors.len(), 2);
        assert!(p.events.is_empty());
    }

    #[test]
    fn a_second_root_change_mid_rotation_keeps_every_older_root_until_it_retires() {
        let s = RotationSettings::default();
        let status = distributing();
        let p = plan(&status, &ca("CA3", "R3"), NONE, None, s, at(1));
        assert_eq!(
            roles(&p),
            [
                ("R3".into(), TrustAnchorRole::Current),
                ("R2".into(), TrustAnchorRole::Previous),
                ("R1".into(), TrustAnchorRole::Previous)
            ]
        );
        assert_eq!(p.rotation.unwrap().phase, RotationPhase::Distributing);
    }

    #[test]
    fn an_intermediate_renewed_while_distributing_keeps_distributing() {
        let s = RotationSettings::default();
        let status = distributing();
        let p = plan(&status, &ca("CA3", "R2"), NONE, None, s, at(1));
        let r = p.rotation.unwrap();
        assert_eq!(r.phase, RotationPhase::Distributing);
        assert_eq!(r.ca_fingerprint_sha256, "CA3");
        assert_eq!(p.trust_anchors.len(), 2);
    }

    #[test]
    fn trust_pem_puts_the_current_root_first_and_is_stable() {
        let status = distributing();
        let pem = trust_pem(&status.trust_anchors);
        assert!(pem.find("R2").unwrap() < pem.find("R1").unwrap());
        let mut reversed = status.trust_anchors.clone();
        reversed.reverse();
        assert_eq!(trust_pem(&reversed), pem);
    }

    #[test]
    fn certificates_wait_while_the_issuer_distributes_or_has_not_caught_up() {
        let w = SignedDuration::from_mins(10);
        let mut status = settled("CA1", "R1");
        assert_eq!(RotationGate::of(Some(&status), "CA1", "R1", w), RotationGate::Now);
        // The CA Secret changed but the issuer has not looked yet.
        assert_eq!(
            RotationGate::of(Some(&status), "CA2", "R2", w),
            RotationGate::Hold
        );
        assert_eq!(RotationGate::of(None, "CA2", "R2", w), RotationGate::Now);
        status = distributing();
        assert_eq!(
            RotationGate::of(Some(&status), "CA2", "R2", w),
            RotationGate::Hold
        );
        status.rotation.as_mut().unwrap().phase = RotationPhase::Reissuing;
        status.rotation.as_mut().unwrap().phase_started_at = Time(at(10));
        let gate = RotationGate::of(Some(&status), "CA2", "R2", w);
        assert_eq!(
            gate,
            RotationGate::Spread {
                from: at(10),
                window: w
            }
        );
        let slot = gate.reissue_at("uid-1").unwrap();
        assert!(slot >= at(10) && slot <= at(20));
        assert_ne!(slot, gate.reissue_at("uid-2").unwrap());
        status.rotation.as_mut().unwrap().phase = RotationPhase::Retiring;
        assert_eq!(RotationGate::of(Some(&status), "CA2", "R2", w), RotationGate::Now);
    }
}
