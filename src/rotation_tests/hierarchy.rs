//! CA rotation through a two-level hierarchy, simulated in the quickstart's shape (the same
//! as the e2e test `e2e/rotation.rs` runs against a real cluster): a root CA Secret `root-ca`
//! and its Issuer; Certificate `intermediate-ca` (isCA) issued by that Issuer into Secret
//! `intermediate-ca`, read by Issuer `intermediate-ca`; and two workloads issued by it. The
//! root is replaced by one under a new key and the same name, as renewing the quickstart's
//! root Certificate does. Issuer root-ca rotates and re-issues the intermediate under the new
//! root; Issuer intermediate-ca then sees its anchor change and rotates in turn. Every step,
//! the workloads complete mutual TLS with copies of their Secrets as old as the propagation
//! delay allows; each Certificate is re-issued exactly once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;

use super::{Cluster, Controller, ROOT_SECRET, Report, handshake, leaf, presenting, roots, simulated_start};
use crate::api::{RotationPhase, TrustAnchorRole};
use crate::issuer::rotation::RotationSettings;
use crate::pki::tests::mtls::Mounted;
use crate::testing::*;

const ISSUERS: [&str; 2] = ["root-ca", "intermediate-ca"];
const INTERMEDIATE: &str = "intermediate-ca";
const WORKLOADS: [&str; 2] = ["frontend", "backend"];
const STEP: SignedDuration = SignedDuration::from_secs(5);
/// The e2e test's settings.
const SETTINGS: RotationSettings = RotationSettings {
    propagation_delay: SignedDuration::from_secs(20),
    reissue_window: SignedDuration::from_secs(30),
};

/// Runs `steps` steps, each followed by mutual TLS between the workloads both ways, each
/// side's copy fresh or `lag` old.
/// Where the workloads of a simulation take the roots they trust from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Trust {
    /// Their own Secret's ca.crt (the quickstart).
    OwnSecret,
    /// The mesh CA's Secret's ca.crt / root-cert.pem, which istiod hands out (Istio).
    MeshCaSecret,
    /// The root issuer's trust anchors, as a Bundle copies them into a ConfigMap (Linkerd's
    /// linkerd-identity-trust-roots).
    RootAnchors,
}

/// What the simulated workloads trust over time: the root issuer's anchors (PEM) after each
/// step.
#[derive(Default)]
struct AnchorHistory(Vec<(Timestamp, String)>);

impl AnchorHistory {
    fn at(&self, at: Timestamp) -> Option<String> {
        self.0
            .iter()
            .rev()
            .find(|(t, _)| *t <= at)
            .map(|(_, pem)| pem.clone())
    }
}

async fn run(
    controller: &mut Controller,
    cluster: &Arc<Mutex<Cluster>>,
    steps: usize,
    lag: SignedDuration,
    report: &mut Report,
    (mesh_trust, anchors): (Trust, &mut AnchorHistory),
) {
    for _ in 0..steps {
        controller.step(cluster).await;
        let mut c = cluster.lock().unwrap();
        let root_anchors: String = c
            .issuer_status("root-ca")
            .trust_anchors
            .iter()
            .map(|a| a.certificate.clone())
            .collect();
        if !root_anchors.is_empty() {
            anchors.0.push((c.now, root_anchors));
        }
        for (client, server) in [("frontend", "backend"), ("backend", "frontend")] {
            for client_age in [SignedDuration::ZERO, lag] {
                for server_age in [SignedDuration::ZERO, lag] {
                    let (Some(client_view), Some(server_view)) = (
                        c.mounted(&format!("{client}-tls"), c.now - client_age),
                        c.mounted(&format!("{server}-tls"), c.now - server_age),
                    ) else {
                        continue;
                    };
                    // In a mesh, a workload trusts the roots the mesh CA's Secret lists (Istio's
                    // root-cert.pem, which istiod hands out), as of its copy's age.
                    let (client_view, server_view) = match mesh_trust {
                        Trust::OwnSecret => (client_view, server_view),
                        Trust::MeshCaSecret | Trust::RootAnchors => {
                            let trust = |view: Arc<Mounted>, age: SignedDuration| {
                                let roots = match mesh_trust {
                                    Trust::RootAnchors => anchors.at(c.now - age),
                                    _ => c.mounted(INTERMEDIATE, c.now - age).map(|m| m.ca_crt.clone()),
                                };
                                roots.map(|ca_crt| {
                                    Arc::new(Mounted {
                                        tls_crt: view.tls_crt.clone(),
                                        tls_key: view.tls_key.clone(),
                                        ca_crt,
                                    })
                                })
                            };
                            let (Some(client), Some(server)) =
                                (trust(client_view, client_age), trust(server_view, server_age))
                            else {
                                continue;
                            };
                            (client, server)
                        }
                    };
                    report.handshakes += 1;
                    if let Err(why) = handshake(&client_view, &server_view, server) {
                        report.failures.push(format!(
                            "{}: {client} ({client_age:#} old) -> {server} ({server_age:#} old): {why:?}",
                            c.now
                        ));
                    }
                }
            }
        }
        c.now += STEP;
    }
}

fn root_secret(not_before: Timestamp) -> Secret {
    // The same name both times: a renewed root Certificate keeps its subject.
    ca_secret(ROOT_SECRET, NAMESPACE, "demo root CA", not_before, 365)
}

#[tokio::test]
async fn a_root_rotation_through_an_intermediate_reissues_each_certificate_once_and_never_fails_a_handshake()
{
    rotate_through_an_intermediate(Trust::OwnSecret).await;
}

/// Linkerd's layout (manifests/examples/linkerd/): the proxies trust the trust anchors a Bundle
/// copies from the root issuer's status (linkerd-identity-trust-roots), as a lagging copy
/// shows them, and are signed by the identity issuer (the intermediate).
#[tokio::test]
async fn linkerds_trust_roots_keep_both_anchors_through_a_rotation_and_no_handshake_fails() {
    rotate_through_an_intermediate(Trust::RootAnchors).await;
}

/// Istio's plug-in CA layout (manifests/examples/istio/): the intermediate also writes
/// ca-cert.pem, ca-key.pem, cert-chain.pem and root-cert.pem (checked at every write), and the
/// workloads trust the root-cert.pem istiod hands out, not their own ca.crt.
#[tokio::test]
async fn istios_plug_in_ca_keys_follow_a_root_rotation_and_no_handshake_fails() {
    rotate_through_an_intermediate(Trust::MeshCaSecret).await;
}

async fn rotate_through_an_intermediate(mesh_trust: Trust) {
    let start = simulated_start();
    let istio = mesh_trust == Trust::MeshCaSecret;
    let mut anchors = AnchorHistory::default();
    let mut intermediate = certificate(INTERMEDIATE, "root-ca", &[]);
    if istio {
        intermediate.spec.additional_output_formats = Some(vec![crate::api::AdditionalOutputFormat {
            type_: crate::api::OutputFormatType::IstioCaCerts,
        }]);
    }
    intermediate.spec.secret_name = INTERMEDIATE.into();
    intermediate.spec.dns_names = None;
    intermediate.spec.is_ca = Some(true);
    intermediate.spec.common_name = Some("demo intermediate CA".into());
    intermediate.spec.duration = Some("2160h".into());
    // The intermediate first, then the workloads: the order a controller step reconciles them.
    let mut certificates = vec![intermediate];
    for name in WORKLOADS {
        let mut workload = certificate(name, INTERMEDIATE, &[&format!("{name}.apps.svc")]);
        // In the mesh variant the workloads keep a PKCS#12 truststore too, checked at every
        // write (super::Cluster::store_secret).
        if istio {
            workload.spec.keystores = Some(Box::new(
                serde_json::from_value(serde_json::json!({"pkcs12": {
                    "create": true,
                    "password": super::SIMULATION_PASSWORD,
                    "profile": "Modern2023",
                }}))
                .unwrap(),
            ));
        }
        certificates.push(workload);
    }
    let issuers = ISSUERS.iter().map(|name| ca_issuer(name, name)).collect();
    let cluster = Cluster::new(
        start,
        issuers,
        certificates,
        root_secret(start - SignedDuration::from_hours(24)),
    );
    let mut controller = Controller::start(&cluster, SETTINGS);
    // A copy just younger than the propagation delay: the slowest kubelet the delay allows.
    let lag = SETTINGS.propagation_delay - STEP;
    let mut report = Report::default();
    run(
        &mut controller,
        &cluster,
        12,
        lag,
        &mut report,
        (mesh_trust, &mut anchors),
    )
    .await;
    let old_root = {
        let c = cluster.lock().unwrap();
        for name in ISSUERS {
            let status = c.issuers[name].status.clone().unwrap_or_default();
            assert_eq!(status.trust_anchors.len(), 1, "{name}: {status:?}");
        }
        c.issuers["root-ca"].status.clone().unwrap().trust_anchors[0]
            .fingerprint_sha256
            .clone()
    };
    let before: BTreeMap<&str, Arc<Mounted>> = {
        let c = cluster.lock().unwrap();
        WORKLOADS.iter().map(|w| (*w, c.current(w))).collect()
    };
    assert!(report.failures.is_empty(), "{:#?}", report.failures);

    {
        let mut c = cluster.lock().unwrap();
        let renewed = root_secret(start - SignedDuration::from_hours(24));
        c.store_secret(renewed);
    }
    // Two rotations of at most 20 + 30 + 20 s each, one after the other, and a margin.
    run(
        &mut controller,
        &cluster,
        60,
        lag,
        &mut report,
        (mesh_trust, &mut anchors),
    )
    .await;
    let Report { failures, handshakes } = report;

    assert!(handshakes > 200, "{handshakes} handshakes");
    assert!(
        failures.is_empty(),
        "{} of {handshakes} handshakes failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    if mesh_trust == Trust::RootAnchors {
        let both = anchors
            .0
            .iter()
            .filter(|(_, pem)| pem.matches("BEGIN CERTIFICATE").count() == 2);
        assert!(
            both.count() >= 4,
            "the trust roots held both anchors through the overlap"
        );
        let last = &anchors.0.last().unwrap().1;
        assert_eq!(
            last.matches("BEGIN CERTIFICATE").count(),
            1,
            "and the new one alone at the end"
        );
    }
    let c = cluster.lock().unwrap();
    if istio {
        for name in WORKLOADS {
            let data = c.secrets[&format!("{name}-tls")].data.clone().unwrap_or_default();
            assert!(
                data.contains_key("truststore.p12"),
                "{name}-tls has truststore.p12"
            );
        }
        let data = c.secrets[INTERMEDIATE].data.clone().unwrap_or_default();
        for key in ["ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"] {
            assert!(data.contains_key(key), "the mesh CA's Secret has {key}");
        }
    }
    let new_root = c.issuers["root-ca"].status.clone().unwrap().trust_anchors[0]
        .fingerprint_sha256
        .clone();
    assert_ne!(new_root, old_root);
    for name in ISSUERS {
        let status = c.issuers[name].status.clone().unwrap_or_default();
        assert_eq!(status.rotation, None, "{name}: the rotation ended");
        assert_eq!(status.trust_anchors.len(), 1, "{name}");
        assert_eq!(status.trust_anchors[0].role, TrustAnchorRole::Current);
        assert_eq!(status.trust_anchors[0].fingerprint_sha256, new_root, "{name}");
        assert_eq!(
            c.rotation_events(name),
            ["RotationStarted", "TrustDistributed", "RotationCompleted"],
            "{name}: one Event per phase"
        );
        assert_eq!(
            c.phase_changes(name),
            [
                None,
                Some(RotationPhase::Distributing),
                Some(RotationPhase::Reissuing),
                Some(RotationPhase::Retiring),
                None
            ],
            "{name}"
        );
    }
    // Each certificate under the root was issued twice: before and once for the rotation.
    for (name, writes) in &c.history {
        let serials: BTreeSet<String> = writes.iter().map(|(_, m)| leaf(m).serial_hex).collect();
        assert_eq!(serials.len(), 2, "{name}: {serials:?}");
        let last = &writes.last().unwrap().1;
        assert_eq!(
            roots(last),
            [new_root.as_str()],
            "{name} trusts the new root alone"
        );
    }
    for (name, cert) in &c.certificates {
        assert_eq!(cert.status.as_ref().and_then(|s| s.revision), Some(2), "{name}");
    }
    // A workload still presenting its first certificate is refused.
    for (i, name) in WORKLOADS.iter().enumerate() {
        let peer = WORKLOADS[(i + 1) % WORKLOADS.len()];
        let now = c.current(name);
        let stale = presenting(&before[name], &now);
        let peer_now = c.current(peer);
        assert!(handshake(&stale, &peer_now, peer).is_err(), "{name}");
        assert!(handshake(&now, &peer_now, peer).is_ok(), "{name}");
    }
}
