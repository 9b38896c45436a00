//! CA rotation of the quickstart hierarchy under running workloads: the root is renewed with a
//! new key (`kubectl annotate … renew-requested-at`), the root CA issuer distributes the new
//! root and re-issues the intermediate under it, and the intermediate CA issuer, whose trust
//! anchor that changes, distributes the new root to the service Secrets, re-issues the
//! services' certificates and retires the old root. Throughout, frontend and backend keep
//! completing mutual TLS with each other, each side using either its Secret as it is now or
//! as a slow kubelet may still mount it (a copy up to the propagation delay old).
//!
//! The chain of events (SPEC "Trust distribution and CA rotation"):
//! 1. Certificate `root-ca` (selfSigned, `rotationPolicy` Always by default) is re-issued with a
//!    new key: Secret `root-ca` holds a new self-signed root.
//! 2. Issuer `root-ca` sees its anchor change: `Distributing` (Secret `intermediate-ca` gets
//!    both roots in `ca.crt`), `Reissuing` (Certificate `intermediate-ca` re-issued under the
//!    new root, trigger CARotated), `Retiring`, done.
//! 3. Issuer `intermediate-ca` sees its CA re-issued under another root, so its anchor changes
//!    too: `Distributing` (`frontend-tls` and `backend-tls` get both roots, no re-issue),
//!    `Reissuing` (frontend and backend re-issued under the new intermediate), `Retiring`
//!    (the old root dropped from their `ca.crt`), done.
//!
//! `src/hierarchy_rotation_tests.rs` runs the same hierarchy through the real reconcilers
//! against an in-memory API server on a simulated clock, in a second.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use certkeeper::api::{Certificate, IssuerStatus, RENEW_REQUESTED_AT, RotationPhase, TrustAnchorRole};
use certkeeper::pki::parse_certificate_chain;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;

use crate::support::tls::{self, Purpose};
use crate::support::{TestEnv, TlsSecret, revision_of};

/// `--trust-propagation-delay` of the test's controller.
const PROPAGATION_DELAY: Duration = Duration::from_secs(20);
/// `--rotation-reissue-window` of the test's controller.
const REISSUE_WINDOW: Duration = Duration::from_secs(30);
/// How old the lagging copy of a Secret may be: the propagation delay less a margin for the
/// poll interval and the controller's own reaction time. A kubelet that takes longer than the
/// propagation delay to update a mounted Secret is outside what the delay promises.
const MOUNT_LAG: Duration = Duration::from_secs(15);
/// Interval of the reads and handshakes.
const TICK: Duration = Duration::from_secs(2);
/// The whole rotation, from the renewal request to both issuers done: two trust phases of
/// 20 s and two reissue windows of 30 s per issuer level would take about 2.5 minutes.
const ROTATION_TIMEOUT: Duration = Duration::from_secs(360);
/// How long the Secrets may fail to read in a row before the test gives up.
const READ_FAILURE_TIMEOUT: Duration = Duration::from_secs(30);

/// The example's workloads: (Certificate, Secret).
const SERVICES: [(&str, &str); 2] = [("frontend", "frontend-tls"), ("backend", "backend-tls")];
/// The example's CA issuers, root first.
const CA_ISSUERS: [&str; 2] = ["root-ca", "intermediate-ca"];
/// Every Certificate of the example.
const CERTIFICATES: [&str; 4] = ["root-ca", "intermediate-ca", "frontend", "backend"];

/// SHA-256 fingerprints (`AB:CD:…`, as the issuers report them) of the certificates of a PEM
/// bundle, in order.
fn fingerprints(pem: &str) -> Vec<String> {
    parse_certificate_chain(pem.as_bytes())
        .map(|certs| certs.into_iter().map(|c| c.fingerprint_sha256).collect())
        .unwrap_or_default()
}

/// One read of a workload Secret: what a pod mounting it sees from then on until the kubelet
/// syncs again. The kubelet swaps a Secret volume's files all at once, so `tls.crt`, `tls.key`
/// and `ca.crt` of a copy always belong together.
#[derive(Clone)]
struct Read {
    at: Instant,
    secret: TlsSecret,
    /// The `certkeeper.io/revision` annotation.
    revision: String,
    /// Fingerprints of tls.crt (leaf, intermediate) and ca.crt.
    chain: Vec<String>,
    roots: Vec<String>,
}

impl Read {
    fn of(secret: Secret) -> Self {
        let secret = TlsSecret::from_secret(secret);
        Self {
            at: Instant::now(),
            revision: secret
                .annotation("certkeeper.io/revision")
                .unwrap_or("?")
                .to_owned(),
            chain: fingerprints(&secret.chain),
            roots: fingerprints(&secret.ca),
            secret,
        }
    }
}

/// The phase an issuer's status shows, `-` for none.
fn phase_label(status: &IssuerStatus) -> String {
    match &status.rotation {
        Some(rotation) => format!("{:?}", rotation.phase),
        None => "-".to_owned(),
    }
}

/// What the test watched, for its checks and its failure messages.
struct Watch<'a> {
    env: &'a TestEnv,
    started: Instant,
    /// Per Secret, the reads at most [`MOUNT_LAG`] old, oldest first.
    history: BTreeMap<&'static str, VecDeque<Read>>,
    /// Names for the fingerprints the test knows ("old root", …).
    names: BTreeMap<String, String>,
    old_root: String,
    /// The new root, once Issuer root-ca reports it.
    new_root: Option<String>,
    /// Per issuer, the phases seen, with the seconds since the start when first seen.
    phases: BTreeMap<&'static str, Vec<(f64, String)>>,
    /// Per issuer, the status last read.
    statuses: BTreeMap<&'static str, IssuerStatus>,
    /// Per Secret, the revisions seen, with the phase of Issuer intermediate-ca just after.
    revisions: BTreeMap<&'static str, Vec<(String, String)>>,
    handshakes: usize,
    failing_since: Option<(Instant, String)>,
}

impl Watch<'_> {
    fn seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn name(&self, fingerprint: &str) -> String {
        self.names
            .get(fingerprint)
            .cloned()
            .unwrap_or_else(|| format!("unknown {}", fingerprint.get(..11).unwrap_or(fingerprint)))
    }

    fn learn(&mut self, fingerprint: &str, name: &str) {
        self.names
            .entry(fingerprint.to_owned())
            .or_insert_with(|| name.to_owned());
    }

    fn describe_read(&self, secret: &str, read: &Read) -> String {
        let chain: Vec<String> = read.chain.iter().map(|f| self.name(f)).collect();
        let roots: Vec<String> = read.roots.iter().map(|f| self.name(f)).collect();
        format!(
            "{secret} read {:.1}s ago: revision {}, tls.crt [{}], ca.crt [{}]",
            read.at.elapsed().as_secs_f64(),
            read.revision,
            chain.join(", "),
            roots.join(", ")
        )
    }

    fn describe_status(&self, status: &IssuerStatus) -> String {
        let anchors: Vec<String> = status
            .trust_anchors
            .iter()
            .map(|a| format!("{:?} {}", a.role, self.name(&a.fingerprint_sha256)))
            .collect();
        let rotation = match &status.rotation {
            Some(r) => format!(
                "{:?} since {} (started {}, trust distributed {:?})",
                r.phase,
                r.phase_started_at.0,
                r.started_at.0,
                r.trust_distributed_at.as_ref().map(|t| t.0.to_string())
            ),
            None => "none".to_owned(),
        };
        format!(
            "CA {}, trustAnchors [{}], rotation {rotation}",
            status
                .ca_fingerprint_sha256
                .as_deref()
                .map_or("?".to_owned(), |f| self.name(f)),
            anchors.join(", ")
        )
    }

    /// Everything seen so far, for a failure message.
    fn report(&self) -> String {
        let mut out = format!(
            "{:.0}s into the rotation test; {} handshakes completed\n",
            self.seconds(),
            self.handshakes
        );
        for (issuer, phases) in &self.phases {
            let seen: Vec<String> = phases.iter().map(|(t, p)| format!("{p} at {t:.0}s")).collect();
            let _ = writeln!(out, "Issuer {issuer} phases: {}", seen.join(" -> "));
        }
        for (issuer, status) in &self.statuses {
            let _ = writeln!(out, "Issuer {issuer} last seen: {}", self.describe_status(status));
        }
        for (secret, reads) in &self.history {
            if let Some(read) = reads.back() {
                let _ = writeln!(out, "{}", self.describe_read(secret, read));
            }
            if let Some(read) = reads.front() {
                let _ = writeln!(out, "  lagging copy: {}", self.describe_read(secret, read));
            }
        }
        out
    }

    fn fail(&self, what: &str) -> ! {
        panic!("{what}\n{}{}", self.report(), self.env.controller_log_tail(40))
    }

    /// Reads Secret `name` with kubectl, as anyone with access to the namespace can.
    fn read_secret(&self, name: &str) -> Result<Secret, String> {
        let json = self
            .env
            .try_kubectl(&["get", "secret", name, "--output", "json"])?;
        serde_json::from_str(&json).map_err(|e| format!("Secret {name} as kubectl prints it: {e}"))
    }

    /// A read failed: fine once, not for [`READ_FAILURE_TIMEOUT`].
    fn read_failed(&mut self, what: String) {
        let since = match &self.failing_since {
            Some((since, _)) => *since,
            None => Instant::now(),
        };
        if since.elapsed() >= READ_FAILURE_TIMEOUT {
            self.fail(&format!(
                "reads failed for {}s, last: {what}",
                READ_FAILURE_TIMEOUT.as_secs()
            ));
        }
        eprintln!("e2e rotation: a read failed (retrying): {what}");
        self.failing_since = Some((since, what));
    }

    /// One round: read both workload Secrets and both CA issuers, then complete mutual TLS
    /// between every pair of (fresh, lagging) copies in both directions. True once both
    /// issuers have finished rotating to the new root.
    async fn tick(&mut self) -> bool {
        self.env.assert_controller_running();
        let mut failed = None;
        for (_, secret) in SERVICES {
            match self.read_secret(secret) {
                Ok(found) => {
                    let read = Read::of(found);
                    let history = self.history.entry(secret).or_default();
                    history.push_back(read);
                    // Drop what is older than a kubelet may lag, keeping the newest read.
                    while history.len() > 1 && history.front().is_some_and(|r| r.at.elapsed() > MOUNT_LAG) {
                        history.pop_front();
                    }
                }
                Err(e) => failed = Some(e),
            }
        }
        for issuer in CA_ISSUERS {
            match self.env.issuers().get(issuer).await {
                Ok(found) => {
                    let status = found.status.unwrap_or_default();
                    self.observe_issuer(issuer, status);
                }
                Err(e) => failed = Some(format!("get Issuer {issuer}: {e}")),
            }
        }
        match failed {
            Some(e) => self.read_failed(e),
            None => {
                self.failing_since = None;
                // Judged only on a complete round: the issuer's phase read after the Secrets.
                self.observe_revisions();
            }
        }
        self.handshake_all();
        let new_root = self.new_root.clone();
        new_root.is_some_and(|root| {
            CA_ISSUERS.iter().all(|issuer| {
                self.statuses.get(issuer).is_some_and(|s| {
                    s.rotation.is_none()
                        && s.trust_anchors.len() == 1
                        && s.trust_anchors[0].role == TrustAnchorRole::Current
                        && s.trust_anchors[0].fingerprint_sha256 == root
                })
            })
        })
    }

    fn observe_issuer(&mut self, issuer: &'static str, status: IssuerStatus) {
        if issuer == "root-ca"
            && self.new_root.is_none()
            && let Some(current) = status
                .trust_anchors
                .iter()
                .find(|a| a.role == TrustAnchorRole::Current)
            && current.fingerprint_sha256 != self.old_root
        {
            let fingerprint = current.fingerprint_sha256.clone();
            self.learn(&fingerprint, "new root");
            eprintln!(
                "e2e rotation: {:.0}s: Issuer root-ca has the new root {fingerprint}",
                self.seconds()
            );
            self.new_root = Some(fingerprint);
        }
        if issuer == "intermediate-ca"
            && let Some(ca) = &status.ca_fingerprint_sha256
        {
            let ca = ca.clone();
            self.learn(&ca, "new intermediate");
        }
        let label = phase_label(&status);
        let seconds = self.seconds();
        let phases = self.phases.entry(issuer).or_default();
        if phases.last().is_none_or(|(_, last)| *last != label) {
            eprintln!("e2e rotation: {seconds:.0}s: Issuer {issuer} phase {label}");
            phases.push((seconds, label));
        }
        self.statuses.insert(issuer, status);
    }

    /// A workload Secret at a new revision was re-issued: only while its issuer re-issues.
    fn observe_revisions(&mut self) {
        let phase = self
            .statuses
            .get("intermediate-ca")
            .map(phase_label)
            .unwrap_or_default();
        for (_, secret) in SERVICES {
            let Some(read) = self.history.get(secret).and_then(|h| h.back()) else {
                continue;
            };
            let revision = read.revision.clone();
            let seen = self.revisions.entry(secret).or_default();
            if seen.last().is_some_and(|(last, _)| *last == revision) {
                continue;
            }
            let first = seen.is_empty();
            seen.push((revision.clone(), phase.clone()));
            if !first {
                eprintln!(
                    "e2e rotation: {:.0}s: {secret} at revision {revision} (Issuer intermediate-ca {phase})",
                    self.seconds()
                );
                let reissuing = [RotationPhase::Reissuing, RotationPhase::Retiring]
                    .iter()
                    .any(|p| format!("{p:?}") == phase);
                if !reissuing {
                    self.fail(&format!(
                        "{secret} was re-issued (revision {revision}) while Issuer intermediate-ca \
                         was in phase {phase}, not Reissuing: before the new root had reached \
                         every workload"
                    ));
                }
            }
        }
    }

    /// Mutual TLS between every copy of frontend and every copy of backend (the newest read
    /// and the oldest one within [`MOUNT_LAG`]), each way round; each side trusts its own copy's
    /// ca.crt. Every handshake must succeed.
    fn handshake_all(&mut self) {
        let copies = |secret: &str| -> Vec<Read> {
            let Some(history) = self.history.get(secret) else {
                return Vec::new();
            };
            let mut copies: Vec<Read> = history.back().into_iter().cloned().collect();
            if let Some(lagging) = history.front()
                && history.len() > 1
            {
                copies.push(lagging.clone());
            }
            copies
        };
        let (frontends, backends) = (copies("frontend-tls"), copies("backend-tls"));
        let mut done = 0;
        for frontend in &frontends {
            for backend in &backends {
                for (server_service, server, client) in [
                    ("frontend", (frontend, "frontend-tls"), (backend, "backend-tls")),
                    ("backend", (backend, "backend-tls"), (frontend, "frontend-tls")),
                ] {
                    let server_name = format!("{server_service}.{}.svc", self.env.namespace);
                    let (server_read, server_secret) = server;
                    let (client_read, client_secret) = client;
                    if let Err(e) = tls::mutual_tls_between(
                        &server_read.secret.key_pair(),
                        &server_read.secret.ca,
                        &server_name,
                        &client_read.secret.key_pair(),
                        &client_read.secret.ca,
                    ) {
                        self.fail(&format!(
                            "mutual TLS failed: {e}\n  server: {}\n  client: {}",
                            self.describe_read(server_secret, server_read),
                            self.describe_read(client_secret, client_read)
                        ));
                    }
                    done += 1;
                }
            }
        }
        self.handshakes += done;
    }
}

/// Waits until `issuer`'s status lists exactly one trust anchor, Current, and no rotation: the
/// state a rotation starts from and ends in. Returns that anchor's fingerprint.
async fn settled_anchor(env: &TestEnv, issuer: &str) -> String {
    let api = env.issuers();
    env.eventually(
        &format!("Issuer {issuer}: a single Current trust anchor and no rotation"),
        Duration::from_secs(60),
        async || {
            let found = api.get(issuer).await.map_err(|e| format!("get: {e}"))?;
            let status = found.status.unwrap_or_default();
            match status.trust_anchors.as_slice() {
                [only] if only.role == TrustAnchorRole::Current && status.rotation.is_none() => {
                    Ok(only.fingerprint_sha256.clone())
                }
                _ => Err(serde_json::to_string(&status).unwrap_or_default()),
            }
        },
    )
    .await
}

fn revision(cert: &Certificate) -> i64 {
    revision_of(cert).unwrap_or_else(|| panic!("{:?} has no status.revision", cert.metadata.name))
}

#[tokio::test]
async fn rotating_the_quickstart_root_keeps_mutual_tls_working_and_retires_the_old_root() {
    let delay = format!("{}s", PROPAGATION_DELAY.as_secs());
    let window = format!("{}s", REISSUE_WINDOW.as_secs());
    let Some(env) = TestEnv::start_with(
        "rotation",
        &[
            "--trust-propagation-delay",
            &delay,
            "--rotation-reissue-window",
            &window,
        ],
    )
    .await
    else {
        return;
    };
    let dir = env.work_dir.clone();

    // The quickstart, converged.
    env.apply_examples().await;
    let mut before = BTreeMap::new();
    for name in CERTIFICATES {
        before.insert(name, env.wait_ready(name).await);
    }
    for issuer in CA_ISSUERS {
        env.wait_issuer_ready(issuer).await;
    }
    let old_root = settled_anchor(&env, "root-ca").await;
    assert_eq!(
        settled_anchor(&env, "intermediate-ca").await,
        old_root,
        "both CA issuers' certificates chain to the root"
    );
    let old_root_secret = env.tls_secret("root-ca").await;
    assert_eq!(fingerprints(&old_root_secret.chain), [old_root.as_str()]);
    let old_intermediate = fingerprints(&env.tls_secret("intermediate-ca").await.chain)[0].clone();
    let mut pre_rotation = BTreeMap::new();
    for (_, secret) in SERVICES {
        pre_rotation.insert(secret, env.tls_secret(secret).await);
    }

    let mut watch = Watch {
        env: &env,
        started: Instant::now(),
        history: BTreeMap::new(),
        names: BTreeMap::new(),
        old_root: old_root.clone(),
        new_root: None,
        phases: BTreeMap::new(),
        statuses: BTreeMap::new(),
        revisions: BTreeMap::new(),
        handshakes: 0,
        failing_since: None,
    };
    watch.learn(&old_root, "old root");
    watch.learn(&old_intermediate, "old intermediate");
    for (_, secret) in SERVICES {
        let leaf = fingerprints(&pre_rotation[secret].chain)[0].clone();
        watch.learn(&leaf, &format!("{secret} leaf 1"));
    }
    // Mutual TLS works before anything changes.
    assert!(!watch.tick().await, "no rotation before the root is renewed");

    // Rotate the root: renew Certificate root-ca, as a user does, once the second of its
    // issuance has passed (a request counts when later than the certificate's notBefore).
    // Its default rotationPolicy (Always) gives the new root a new key.
    let root_not_before = before["root-ca"]
        .status
        .as_ref()
        .and_then(|s| s.not_before.clone())
        .expect("root-ca status.notBefore")
        .0;
    while Timestamp::now().as_second() <= root_not_before.as_second() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let requested_at = Timestamp::from_second(Timestamp::now().as_second()).expect("a whole second");
    env.kubectl(&[
        "annotate",
        "certificate",
        "root-ca",
        "--overwrite",
        &format!("{RENEW_REQUESTED_AT}={requested_at}"),
    ]);
    eprintln!("e2e rotation: renewal of the root requested at {requested_at}");

    // Under continuous handshakes until both issuers are done, and a propagation delay beyond:
    // the lagging copies must also survive the old root's removal.
    let deadline = Instant::now() + ROTATION_TIMEOUT;
    let mut finished: Option<Instant> = None;
    loop {
        let round = Instant::now();
        let done = watch.tick().await;
        match (done, finished) {
            (true, None) => {
                eprintln!("e2e rotation: {:.0}s: both issuers rotated", watch.seconds());
                finished = Some(Instant::now());
            }
            (false, Some(_)) => watch.fail("an issuer started rotating again after it had finished"),
            _ => {}
        }
        if finished.is_some_and(|at| at.elapsed() >= PROPAGATION_DELAY) {
            break;
        }
        if Instant::now() >= deadline {
            watch.fail(&format!(
                "timed out after {}s waiting for both CA issuers to finish rotating to the new root",
                ROTATION_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(TICK.saturating_sub(round.elapsed())).await;
    }
    let new_root = watch
        .new_root
        .clone()
        .expect("the new root is known once rotated");
    eprintln!("e2e rotation: done\n{}", watch.report());

    // Both issuers went through the phases in order; the trust phases last the propagation
    // delay, so a 2 s poll cannot miss them (a Reissuing phase may be over within a poll).
    for issuer in CA_ISSUERS {
        let seen: Vec<&str> = watch.phases[issuer].iter().map(|(_, p)| p.as_str()).collect();
        assert!(
            seen == ["-", "Distributing", "Reissuing", "Retiring", "-"]
                || seen == ["-", "Distributing", "Retiring", "-"],
            "Issuer {issuer} went through the phases {seen:?}\n{}",
            watch.report()
        );
    }

    // The new root: a new key, self-signed, in Secret root-ca.
    let root_secret = env.tls_secret("root-ca").await;
    assert_eq!(fingerprints(&root_secret.chain), [new_root.as_str()]);
    assert_eq!(fingerprints(&root_secret.ca), [new_root.as_str()]);
    assert_ne!(new_root, old_root);
    assert_ne!(root_secret.key, old_root_secret.key, "the new root has a new key");
    let new_root_pem = root_secret.ca.clone();

    // The intermediate: re-issued under the new root, which alone is left in its ca.crt.
    let intermediate = env.tls_secret("intermediate-ca").await;
    let intermediate_fp = fingerprints(&intermediate.chain);
    assert_ne!(intermediate_fp[0], old_intermediate, "a new intermediate");
    assert_eq!(
        fingerprints(&intermediate.ca),
        [new_root.as_str()],
        "intermediate-ca ca.crt holds only the new root"
    );
    tls::verify_chain(
        &dir,
        "rotated-intermediate-ca",
        &intermediate.chain,
        &new_root_pem,
        Purpose::Any,
    );
    let intermediate_issuer = watch.statuses["intermediate-ca"].clone();
    assert_eq!(
        intermediate_issuer.ca_fingerprint_sha256.as_deref(),
        Some(intermediate_fp[0].as_str()),
        "Issuer intermediate-ca reports the new intermediate"
    );

    // The workloads: under the new intermediate, trusting the new root only.
    let mut current = BTreeMap::new();
    for (_, secret_name) in SERVICES {
        let secret = env.tls_secret(secret_name).await;
        assert_eq!(
            fingerprints(&secret.ca),
            [new_root.as_str()],
            "{secret_name} ca.crt holds only the new root"
        );
        assert_eq!(
            fingerprints(&secret.chain).get(1),
            Some(&intermediate_fp[0]),
            "{secret_name} tls.crt carries the new intermediate"
        );
        let label = format!("rotated-{secret_name}");
        tls::verify_chain(&dir, &label, &secret.chain, &secret.ca, Purpose::TlsServer);
        tls::verify_chain(&dir, &label, &secret.chain, &secret.ca, Purpose::TlsClient);
        current.insert(secret_name, secret);
    }

    // Each certificate was issued once more, no more: the root on request, the intermediate
    // and the services for the rotation.
    for name in CERTIFICATES {
        let now = env
            .certificates()
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("get Certificate {name}: {e}"));
        assert_eq!(
            revision(&now),
            revision(&before[name]) + 1,
            "Certificate {name} re-issued exactly once during the rotation\n{}",
            watch.report()
        );
    }
    for (_, secret_name) in SERVICES {
        let revisions: Vec<&str> = watch.revisions[secret_name]
            .iter()
            .map(|(r, _)| r.as_str())
            .collect();
        assert_eq!(revisions, ["1", "2"], "{secret_name} revisions seen");
    }
    let root_renewed = env.wait_for_event("root-ca", "Normal", "Renewed").await;
    assert!(
        root_renewed
            .note
            .unwrap_or_default()
            .contains("ManuallyTriggered"),
        "root-ca renewed on request"
    );
    for name in ["intermediate-ca", "frontend", "backend"] {
        let renewed = env.wait_for_event(name, "Normal", "Renewed").await;
        let note = renewed.note.unwrap_or_default();
        assert!(
            note.contains("CARotated"),
            "{name} re-issued for the rotation: {note}"
        );
    }

    // Each CA issuer told the story in Events, without an emergency.
    for issuer in CA_ISSUERS {
        for reason in ["RotationStarted", "TrustDistributed", "RotationCompleted"] {
            env.wait_for_event_regarding("Issuer", issuer, "Normal", reason)
                .await;
        }
        let emergencies = env
            .events_regarding("Issuer", issuer)
            .await
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("EmergencyRotation"))
            .count();
        assert_eq!(emergencies, 0, "Issuer {issuer}: no EmergencyRotation");
    }

    // The old root is no longer trusted: a workload still presenting its pre-rotation
    // certificate is refused by one using its current Secret, either way round.
    for (old_name, current_name, current_service) in [
        ("frontend-tls", "backend-tls", "backend"),
        ("backend-tls", "frontend-tls", "frontend"),
    ] {
        let old = &pre_rotation[old_name];
        let now = &current[current_name];
        let old_service = old_name.trim_end_matches("-tls");
        for (server, server_name, client, what) in [
            (
                now,
                format!("{current_service}.{}.svc", env.namespace),
                old,
                format!("{current_name} (server) <- pre-rotation {old_name} (client)"),
            ),
            (
                old,
                format!("{old_service}.{}.svc", env.namespace),
                now,
                format!("pre-rotation {old_name} (server) <- {current_name} (client)"),
            ),
        ] {
            match tls::mutual_tls_between(
                &server.key_pair(),
                &server.ca,
                &server_name,
                &client.key_pair(),
                &client.ca,
            ) {
                Ok(_) => panic!("mutual TLS {what} succeeded, but the old root is retired"),
                Err(e) => assert!(
                    e.contains("invalid peer certificate") || e.contains("fatal alert"),
                    "mutual TLS {what} failed, but not by refusing a certificate: {e}"
                ),
            }
        }
    }
}
