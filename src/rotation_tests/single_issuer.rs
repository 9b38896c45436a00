//! CA rotation, simulated end to end: the real issuer and Certificate reconcilers run against
//! an in-memory API server on a simulated clock while the issuer's root CA is replaced by one
//! with a new key. After every step, every pair of workloads completes a mutual-TLS handshake
//! (rustls), each side mounting a copy of its Secret as old as a slow kubelet may give it (up
//! to the propagation delay). Also: the emergency rotation refuses the old root at once, a
//! restart in mid-rotation resumes it without issuing twice, and the same simulation with the
//! stages skipped does break handshakes, so the check is known to bite.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};

use super::{Cluster, Controller, ROOT_SECRET, Report, handshake, leaf, presenting, roots, simulated_start};
use crate::api::{DISTRUST_PREVIOUS_REQUESTED_AT, IssuerStatus, RotationPhase, TrustAnchorRole};
use crate::issuer::rotation::RotationSettings;
use crate::pki::tests::mtls::{Mounted, Refusal};
use crate::testing::*;

const ISSUER: &str = "ca";
const WORKLOADS: [&str; 5] = ["orders", "payments", "catalog", "cart", "search"];
const STEP: SignedDuration = SignedDuration::from_secs(15);

/// The simulation: workloads issued under the first root, the root replaced at `rotate_at`
/// (steps from the start), then `steps` steps. `lag` is how old a workload's copy of its
/// Secret may be; every pair is checked with each side fresh and each side as old as that.
struct Simulation {
    cluster: Arc<Mutex<Cluster>>,
    lag: SignedDuration,
    start: Timestamp,
    checked: HashMap<(usize, usize), bool>,
    report: Report,
}

impl Simulation {
    fn new(lag: SignedDuration) -> Self {
        let start = simulated_start();
        let issuer = ca_issuer(ISSUER, ROOT_SECRET);
        let certificates = WORKLOADS
            .iter()
            .map(|name| certificate(name, ISSUER, &[&format!("{name}.apps.svc")]))
            .collect();
        let root = ca_secret(
            ROOT_SECRET,
            NAMESPACE,
            "Mesh Root CA 1",
            start - SignedDuration::from_hours(24),
            365,
        );
        Self {
            cluster: Cluster::new(start, vec![issuer], certificates, root),
            lag,
            start,
            checked: HashMap::new(),
            report: Report::default(),
        }
    }

    fn now(&self) -> Timestamp {
        self.cluster.lock().unwrap().now
    }

    fn advance(&self) {
        self.cluster.lock().unwrap().now += STEP;
    }

    /// Replaces the CA Secret with a new root under a new key.
    fn replace_root(&self) {
        let mut c = self.cluster.lock().unwrap();
        let root = ca_secret(
            ROOT_SECRET,
            NAMESPACE,
            "Mesh Root CA 2",
            self.start - SignedDuration::from_hours(24),
            365,
        );
        c.store_secret(root);
    }

    fn annotate_issuer(&self, key: &str, value: &str) {
        let mut c = self.cluster.lock().unwrap();
        let version = c.version();
        let issuer = c.issuers.get_mut(ISSUER).unwrap();
        issuer
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(key.into(), value.into());
        issuer.metadata.resource_version = Some(version);
    }

    /// Every ordered pair of workloads, each side fresh or as old as the lag allows.
    fn check_handshakes(&mut self) {
        let now = self.now();
        let cluster = self.cluster.lock().unwrap();
        let ages = [SignedDuration::ZERO, self.lag];
        for client in WORKLOADS {
            for server in WORKLOADS {
                if client == server {
                    continue;
                }
                for client_age in ages {
                    for server_age in ages {
                        let (Some(c), Some(s)) = (
                            cluster.mounted(&format!("{client}-tls"), now - client_age),
                            cluster.mounted(&format!("{server}-tls"), now - server_age),
                        ) else {
                            continue;
                        };
                        // The same two copies shake hands the same way: check each pair once.
                        let key = (Arc::as_ptr(&c) as usize, Arc::as_ptr(&s) as usize);
                        if let Some(ok) = self.checked.get(&key) {
                            if !ok {
                                self.report.failures.push(format!(
                                    "{now}: {client} ({client_age:#} old) → {server} ({server_age:#} old): refused (as before)"
                                ));
                            }
                            continue;
                        }
                        self.report.handshakes += 1;
                        let result = handshake(&c, &s, server);
                        self.checked.insert(key, result.is_ok());
                        if let Err(why) = result {
                            self.report.failures.push(format!(
                                "{now}: {client} ({client_age:#} old) → {server} ({server_age:#} old): {why:?}"
                            ));
                        }
                    }
                }
            }
        }
    }

    /// Runs `steps` steps of `controller`, checking handshakes after each.
    async fn run(&mut self, controller: &mut Controller, steps: usize) {
        for _ in 0..steps {
            controller.step(&self.cluster).await;
            self.check_handshakes();
            self.advance();
        }
    }

    fn issuer_status(&self) -> IssuerStatus {
        self.cluster.lock().unwrap().issuer_status(ISSUER)
    }

    /// Distinct leaf serials each workload's Secret has held.
    fn serials(&self) -> BTreeMap<String, usize> {
        let c = self.cluster.lock().unwrap();
        c.history
            .iter()
            .map(|(name, writes)| {
                let serials: BTreeSet<String> = writes.iter().map(|(_, m)| leaf(m).serial_hex).collect();
                (name.clone(), serials.len())
            })
            .collect()
    }

    fn current(&self, name: &str) -> Arc<Mounted> {
        self.cluster.lock().unwrap().current(name)
    }
}

fn settings() -> RotationSettings {
    RotationSettings {
        propagation_delay: SignedDuration::from_mins(5),
        reissue_window: SignedDuration::from_mins(10),
    }
}

/// Steps that cover `d`.
fn steps(d: SignedDuration) -> usize {
    (d.as_secs() / STEP.as_secs()) as usize
}

/// Every Secret holds `new_root` alone; each workload still presenting its certificate from
/// `before` (trusting what it trusts now) is refused by its peer, and its current certificate
/// is accepted.
fn assert_only_the_new_root_is_trusted(sim: &Simulation, before: &[Arc<Mounted>], new_root: &str) {
    for (i, name) in WORKLOADS.iter().enumerate() {
        let now = sim.current(name);
        assert_eq!(
            BTreeSet::from_iter(roots(&now)),
            BTreeSet::from([new_root.to_owned()]),
            "{name}"
        );
        let peer = WORKLOADS[(i + 1) % WORKLOADS.len()];
        assert!(
            matches!(
                handshake(&presenting(&before[i], &now), &sim.current(peer), peer),
                Err(Refusal::ByServer(_))
            ),
            "{name}'s certificate under the old root is refused"
        );
        assert!(
            handshake(&now, &sim.current(peer), peer).is_ok(),
            "{name}'s new certificate"
        );
    }
}

#[tokio::test]
async fn a_root_rotation_never_fails_a_handshake_between_slow_reloading_peers() {
    let settings = settings();
    // A copy just younger than the propagation delay: the slowest kubelet the delay allows.
    let lag = settings.propagation_delay - STEP;
    let mut sim = Simulation::new(lag);
    let mut controller = Controller::start(&sim.cluster, settings);
    sim.run(&mut controller, steps(SignedDuration::from_mins(10)))
        .await;
    let first_root = sim.issuer_status().trust_anchors[0].fingerprint_sha256.clone();
    let before: Vec<Arc<Mounted>> = WORKLOADS.iter().map(|w| sim.current(w)).collect();

    sim.replace_root();
    // Distributing, then part of Reissuing; the controller restarts there (fresh caches).
    sim.run(&mut controller, steps(SignedDuration::from_mins(12)))
        .await;
    assert_eq!(
        sim.issuer_status().rotation.map(|r| r.phase),
        Some(RotationPhase::Reissuing),
        "the restart should land in mid-rotation"
    );
    let mut controller = Controller::start(&sim.cluster, settings);
    sim.run(&mut controller, steps(SignedDuration::from_mins(40)))
        .await;

    assert!(
        sim.report.handshakes > 100,
        "{} distinct handshakes",
        sim.report.handshakes
    );
    assert!(
        sim.report.failures.is_empty(),
        "{} of {} handshakes failed:\n{}",
        sim.report.failures.len(),
        sim.report.handshakes,
        sim.report.failures.join("\n")
    );
    let status = sim.issuer_status();
    assert_eq!(status.rotation, None, "the rotation ended");
    assert_eq!(status.trust_anchors.len(), 1);
    assert_eq!(status.trust_anchors[0].role, TrustAnchorRole::Current);
    let new_root = status.trust_anchors[0].fingerprint_sha256.clone();
    assert_ne!(new_root, first_root);
    {
        let c = sim.cluster.lock().unwrap();
        assert_eq!(
            c.issuer_events[ISSUER],
            ["RotationStarted", "TrustDistributed", "RotationCompleted"],
            "one Event per phase"
        );
        assert_eq!(
            c.phase_changes(ISSUER),
            [
                None,
                Some(RotationPhase::Distributing),
                Some(RotationPhase::Reissuing),
                Some(RotationPhase::Retiring),
                None
            ]
        );
    }
    // Nothing was re-issued more than once: the first certificate and its one successor.
    assert!(
        sim.serials().values().all(|n| *n == 2),
        "serials per Secret: {:?}",
        sim.serials()
    );
    // After it, only the new root is trusted: every Secret holds it alone, and a workload
    // still presenting a certificate under the old root is refused.
    assert_only_the_new_root_is_trusted(&sim, &before, &new_root);
}

#[tokio::test]
async fn an_emergency_rotation_refuses_the_old_root_at_once() {
    let settings = settings();
    let mut sim = Simulation::new(settings.propagation_delay - STEP);
    let mut controller = Controller::start(&sim.cluster, settings);
    sim.run(&mut controller, steps(SignedDuration::from_mins(5)))
        .await;
    let before: Vec<Arc<Mounted>> = WORKLOADS.iter().map(|w| sim.current(w)).collect();

    sim.replace_root();
    sim.run(&mut controller, 4).await;
    assert_eq!(
        sim.issuer_status().rotation.map(|r| r.phase),
        Some(RotationPhase::Distributing)
    );
    let asked = sim.now().to_string();
    sim.annotate_issuer(DISTRUST_PREVIOUS_REQUESTED_AT, &asked);
    // One step: the issuer drops the old root and every Certificate is re-issued at once.
    controller.step(&sim.cluster).await;
    let status = sim.issuer_status();
    assert_eq!(status.rotation, None);
    assert_eq!(status.trust_anchors.len(), 1);
    let new_root = status.trust_anchors[0].fingerprint_sha256.clone();
    assert_eq!(
        sim.cluster.lock().unwrap().issuer_events[ISSUER]
            .last()
            .map(String::as_str),
        Some("EmergencyRotation")
    );
    assert_only_the_new_root_is_trusted(&sim, &before, &new_root);
    // A restart afterwards does not re-issue again.
    let mut controller = Controller::start(&sim.cluster, settings);
    sim.run(&mut controller, 4).await;
    assert!(sim.serials().values().all(|n| *n == 2), "{:?}", sim.serials());
}

#[tokio::test]
async fn the_simulation_catches_a_rotation_that_does_not_wait_for_slow_peers() {
    // The same rotation with no propagation delay, and peers whose copies lag five minutes:
    // a re-issued peer meets one that has not yet seen the new root.
    let hasty = RotationSettings {
        propagation_delay: SignedDuration::ZERO,
        reissue_window: SignedDuration::from_mins(1),
    };
    let mut sim = Simulation::new(SignedDuration::from_mins(5));
    let mut controller = Controller::start(&sim.cluster, hasty);
    sim.run(&mut controller, steps(SignedDuration::from_mins(10)))
        .await;
    sim.replace_root();
    sim.run(&mut controller, steps(SignedDuration::from_mins(15)))
        .await;
    assert!(
        !sim.report.failures.is_empty(),
        "an unstaged rotation should have failed handshakes"
    );
}
