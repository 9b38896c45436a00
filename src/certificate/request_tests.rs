//! How many API requests a Certificate costs, against the mocked API server with one context
//! kept across reconciles as the controller keeps it: a first issuance reads nothing and writes
//! three times (the Secret, create-only; the status; the Event), a Secret that is there after all
//! refuses the create and is read once; the echoes of those writes and a steady-state
//! reconcile make no request at all; a CA Secret is read once per resourceVersion; revocation
//! records come from their watch's cache, never a request.

use std::sync::{Arc, Mutex};

use super::schedule::Next;
use http::Method;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::watcher::Event;
use serde_json::Value;

use super::reconcile::reconcile;
use super::secret::certificate_of;
use crate::api::Certificate;
use crate::context::Context;
use crate::testing::*;

pub(super) const NOW: &str = "2026-11-23T10:00:00Z";
pub(super) const CA_SECRET_PATH: &str = "/api/v1/namespaces/apps/secrets/root-ca";
pub(super) const SECRET_PATH: &str = "/api/v1/namespaces/apps/secrets/web-tls";
pub(super) const STATUS_PATH: &str = "/apis/certkeeper.io/v1/namespaces/apps/certificates/web/status";
pub(super) const EVENTS_PATH: &str = "/apis/events.k8s.io/v1/namespaces/apps/events";

/// The Certificate's resourceVersion as the cache first has it, and after the status write.
pub(super) const CERT_VERSION: &str = "200";
pub(super) const CERT_VERSION_AFTER_STATUS: &str = "201";
/// The Secret's resourceVersion after the apply.
pub(super) const SECRET_VERSION: &str = "101";

/// A context under the CA Issuer `ca`, with a clock the test moves.
pub(super) fn setup() -> (Arc<Context>, ApiServer, Arc<Mutex<Timestamp>>) {
    let now = Arc::new(Mutex::new(ts(NOW)));
    let clock = now.clone();
    let (ctx, api) = context_with_clock(
        vec![ca_issuer("ca", "root-ca")],
        vec![],
        Arc::new(move || *clock.lock().unwrap()),
    );
    (ctx, api, now)
}

fn web_key() -> (String, String) {
    (NAMESPACE.to_owned(), "web".to_owned())
}

pub(super) fn web() -> Certificate {
    let mut cert = certificate("web", "ca", &["web.apps.svc"]);
    cert.metadata.resource_version = Some(CERT_VERSION.into());
    cert
}

pub(super) async fn run(cert: &Certificate, ctx: &Arc<Context>) -> Next {
    reconcile(Arc::new(DeserializeGuard(Ok(cert.clone()))), ctx.clone())
        .await
        .unwrap()
}

/// The Secret's metadata as its watch shows it.
fn metadata_of(secret: &Value) -> PartialObjectMeta<Secret> {
    let secret: Secret = serde_json::from_value(secret.clone()).unwrap();
    PartialObjectMeta {
        types: None,
        metadata: secret.metadata,
        _phantom: Default::default(),
    }
}

/// What the first issuance wrote: the Secret (as stored) and the Certificate after it.
pub(super) struct Issued {
    pub(super) secret: Value,
    pub(super) cert: Certificate,
}

/// Issues `web` with the CA already cached, asserting its requests: no read, three writes, the
/// Secret's apply create-only. `before_apply_answer` runs when the apply has reached the API
/// server, before its answer.
pub(super) async fn issue_web(
    ctx: &Arc<Context>,
    api: &mut ApiServer,
    before_apply_answer: impl FnOnce(&Value),
) -> Issued {
    let cert = web();
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(cert.clone()))),
        ctx.clone(),
    ));
    let apply = api.expect(Method::PATCH, SECRET_PATH).await;
    assert_eq!(
        apply.body["metadata"]["resourceVersion"],
        super::secret::NO_OBJECT_HOLDS,
        "a first issuance's apply only creates the Secret"
    );
    let mut secret = apply.body.clone();
    secret["metadata"]["resourceVersion"] = SECRET_VERSION.into();
    before_apply_answer(&secret);
    apply.ok(secret.clone());
    let patch = api.expect(Method::PATCH, STATUS_PATH).await;
    let mut after = to_json(&cert);
    after["status"] = patch.body["status"].clone();
    after["metadata"]["resourceVersion"] = CERT_VERSION_AFTER_STATUS.into();
    patch.ok(after.clone());
    api.expect(Method::POST, EVENTS_PATH).await.echo();
    task.await.unwrap().unwrap();
    api.assert_idle();
    Issued {
        secret,
        cert: serde_json::from_value(after).unwrap(),
    }
}

/// Reads the CA Secret into the cache, as the issuer's own reconcile does first.
pub(super) async fn cache_the_ca(ctx: &Arc<Context>, api: &mut ApiServer, ca: &Secret) {
    let loading = {
        let ctx = ctx.clone();
        let issuer = ca_issuer("ca", "root-ca");
        tokio::spawn(async move {
            let ca = issuer.spec.ca.unwrap();
            ctx.issuer_ca_key_pairs
                .load(&ctx.client, ctx.hsm("Issuer", false), NAMESPACE, &ca, ctx.now())
                .await
                .unwrap()
                .unwrap();
        })
    };
    api.expect(Method::GET, CA_SECRET_PATH).await.ok(to_json(ca));
    loading.await.unwrap();
}

#[tokio::test]
async fn an_issuer_that_moves_its_key_to_a_token_reads_its_secret_again_and_a_left_tls_key_is_refused() {
    let (ctx, mut api, _now) = setup();
    let secret = root_ca(ts(NOW));
    cache_the_ca(&ctx, &mut api, &secret).await;
    // The same Secret (same version, still holding tls.key), the issuer now naming a token.
    let mut ca = ca_issuer("ca", "root-ca").spec.ca.unwrap();
    ca.pkcs11 = Some(crate::api::CaPkcs11 {
        uri: "pkcs11:token=ca;object=root".into(),
        pin_secret_ref: crate::api::SecretKeySelector {
            name: "hsm-pin".into(),
            key: "pin".into(),
        },
    });
    let loading = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            ctx.issuer_ca_key_pairs
                .load(
                    &ctx.client,
                    ctx.hsm("ClusterIssuer", false),
                    NAMESPACE,
                    &ca,
                    ctx.now(),
                )
                .await
        })
    };
    api.expect(Method::GET, CA_SECRET_PATH).await.ok(to_json(&secret));
    let loaded = loading.await.unwrap().unwrap();
    let Err(problem) = loaded else {
        panic!("the Secret's key was used although the issuer names a token")
    };
    assert!(
        problem.to_string().contains("tls.key beside spec.ca.pkcs11"),
        "{problem}"
    );
    api.assert_idle();
}

#[tokio::test]
async fn a_first_issuance_reads_nothing_writes_three_times_and_its_echoes_make_no_request() {
    let (ctx, mut api, now) = setup();
    cache_the_ca(&ctx, &mut api, &root_ca(ts(NOW))).await;
    let issued = issue_web(&ctx, &mut api, |_| {}).await;

    // The echo of the Secret apply reaches the Secret watch: it wakes nobody.
    let echo = Event::Apply(metadata_of(&issued.secret));
    assert!(ctx.verdicts.observe(&echo, certificate_of).is_empty());

    // A reconcile of the Certificate as the cache had it before the status write: none.
    *now.lock().unwrap() = ts(NOW) + SignedDuration::from_secs(1);
    run(&web(), &ctx).await;
    api.assert_idle();

    // The echo of the status write: no request.
    run(&issued.cert, &ctx).await;
    api.assert_idle();

    // Steady state: hours later, woken by a deadline or an issuer: still none.
    *now.lock().unwrap() = ts(NOW) + SignedDuration::from_hours(5);
    let action = run(&issued.cert, &ctx).await;
    api.assert_idle();
    assert_ne!(action, Next::await_change(), "requeued at its next deadline");
}

/// The API server's 409 to a write whose resourceVersion precondition the Secret does not meet.
fn conflict() -> (http::StatusCode, Value) {
    (
        http::StatusCode::CONFLICT,
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict",
                           "code": 409, "message": "Operation cannot be fulfilled on secrets \"web-tls\": the object has been modified; please apply your changes to the latest version and try again"}),
    )
}

/// A first issuance of `web` whose create-only apply is refused with `refusal`, after which the
/// Secret is read and found as `there`. Returns the reconcile, still running.
async fn refused_then_read(
    ctx: &Arc<Context>,
    api: &mut ApiServer,
    (code, body): (http::StatusCode, Value),
    there: &Value,
) -> tokio::task::JoinHandle<Result<Next, crate::error::Error>> {
    let task = tokio::spawn(reconcile(Arc::new(DeserializeGuard(Ok(web()))), ctx.clone()));
    let refused = api.expect(Method::PATCH, SECRET_PATH).await;
    assert_eq!(
        refused.body["metadata"]["resourceVersion"],
        super::secret::NO_OBJECT_HOLDS
    );
    refused.respond(code, body);
    api.expect(Method::GET, SECRET_PATH).await.ok(there.clone());
    task
}

/// `web` issued by one controller; then a new one (nothing remembered, the CA cached) to which
/// the Certificate comes again without status, its Secret left in place (a restore, a
/// Certificate deleted and applied again). Returns what was issued, the new context and its API.
async fn applied_again_over_its_secret() -> (Issued, Arc<Context>, ApiServer) {
    let (ctx, mut api, _now) = setup();
    let ca = root_ca(ts(NOW));
    cache_the_ca(&ctx, &mut api, &ca).await;
    let issued = issue_web(&ctx, &mut api, |_| {}).await;
    let (fresh, mut api, _now) = setup();
    cache_the_ca(&fresh, &mut api, &ca).await;
    (issued, fresh, api)
}

#[tokio::test]
async fn a_valid_secret_there_before_the_first_issuance_refuses_the_create_and_is_kept() {
    let (issued, ctx, mut api) = applied_again_over_its_secret().await;
    let task = refused_then_read(&ctx, &mut api, conflict(), &issued.secret).await;
    // Kept: no Secret write; the status says Ready with the Secret's certificate.
    let status = api.expect(Method::PATCH, STATUS_PATH).await;
    let serial = issued.cert.status.as_ref().and_then(|s| s.serial_number.clone());
    assert_eq!(status.body["status"]["serialNumber"], serial.unwrap());
    assert_eq!(status.body["status"]["revision"], 1);
    answer_status(status, &web());
    task.await.unwrap().unwrap();
    api.assert_idle();
}

#[tokio::test]
async fn a_first_issuance_refused_for_another_reason_reads_the_secret_before_reporting_anything() {
    let (issued, ctx, mut api) = applied_again_over_its_secret().await;
    // A webhook (run before the API server checks the precondition) refuses the apply.
    let denied = (
        http::StatusCode::BAD_REQUEST,
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "BadRequest",
                           "code": 400, "message": "admission webhook \"secrets.example\" denied the request"}),
    );
    // Not reported as a failure: the Secret is read, and it holds a valid certificate.
    let task = refused_then_read(&ctx, &mut api, denied, &issued.secret).await;
    let status = api.expect(Method::PATCH, STATUS_PATH).await;
    assert_eq!(status.body["status"]["revision"], 1);
    assert!(
        status.body["status"].get("failedIssuanceAttempts").is_none(),
        "{}",
        status.body
    );
    answer_status(status, &web());
    task.await.unwrap().unwrap();
    api.assert_idle();
    let text = ctx.metrics.encode().unwrap();
    let failures = r#"certkeeper_issuance_total{issuer_kind="Issuer",result="failure"} 0"#;
    assert!(text.contains(failures), "{text}");
}

#[tokio::test]
async fn an_unusable_secret_there_before_the_first_issuance_is_read_then_replaced() {
    let (ctx, mut api, _now) = setup();
    cache_the_ca(&ctx, &mut api, &root_ca(ts(NOW))).await;
    let mut there = to_json(&root_ca(ts(NOW)));
    there["metadata"]["name"] = "web-tls".into();
    there["metadata"]["resourceVersion"] = "42".into();
    there["data"]["tls.crt"] = "bm90IGEgY2VydGlmaWNhdGU=".into();
    let task = refused_then_read(&ctx, &mut api, conflict(), &there).await;
    // Read, it is replaced by a forced apply with no precondition.
    let apply = api.expect(Method::PATCH, SECRET_PATH).await;
    assert!(
        apply.body["metadata"].get("resourceVersion").is_none(),
        "{}",
        apply.body
    );
    apply.echo();
    answer_status(api.expect(Method::PATCH, STATUS_PATH).await, &web());
    api.expect(Method::POST, EVENTS_PATH).await.echo();
    task.await.unwrap().unwrap();
    api.assert_idle();
}

#[tokio::test]
async fn the_secret_echo_may_arrive_before_the_apply_answer_and_still_costs_nothing() {
    let (ctx, mut api, _now) = setup();
    cache_the_ca(&ctx, &mut api, &root_ca(ts(NOW))).await;
    let verdicts = ctx.verdicts.clone();
    let issued = issue_web(&ctx, &mut api, |secret| {
        // The watch delivers the new version before the apply's own answer: this event wakes
        // the Certificate...
        let echo = Event::Apply(metadata_of(secret));
        assert_eq!(verdicts.observe(&echo, certificate_of), [web_key()]);
    })
    .await;
    // ...whose reconcile then finds the verdict reached on that very version: no request.
    run(&issued.cert, &ctx).await;
    api.assert_idle();
}

#[tokio::test]
async fn a_secret_changed_by_someone_else_is_read_again() {
    let (ctx, mut api, _now) = setup();
    cache_the_ca(&ctx, &mut api, &root_ca(ts(NOW))).await;
    let issued = issue_web(&ctx, &mut api, |_| {}).await;

    let mut edited = issued.secret.clone();
    edited["metadata"]["resourceVersion"] = "150".into();
    edited["metadata"]["labels"]["team"] = "payments".into();
    let event = Event::Apply(metadata_of(&edited));
    assert_eq!(ctx.verdicts.observe(&event, certificate_of), [web_key()]);

    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(issued.cert.clone()))),
        ctx.clone(),
    ));
    api.expect(Method::GET, SECRET_PATH).await.ok(edited);
    task.await.unwrap().unwrap();
    api.assert_idle();

    // A deleted Secret is read again too (and re-issued).
    assert_eq!(
        ctx.verdicts
            .observe(&Event::Delete(metadata_of(&issued.secret)), certificate_of),
        [web_key()]
    );
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(issued.cert.clone()))),
        ctx.clone(),
    ));
    api.expect(Method::GET, SECRET_PATH).await.not_found();
    api.expect(Method::PATCH, SECRET_PATH).await.echo();
    answer_status(api.expect(Method::PATCH, STATUS_PATH).await, &issued.cert);
    api.expect(Method::POST, EVENTS_PATH).await.echo();
    task.await.unwrap().unwrap();
    api.assert_idle();
}

#[tokio::test]
async fn a_ca_secret_is_read_once_per_resource_version() {
    let (ctx, mut api, _now) = setup();
    let ca = root_ca(ts(NOW));
    // Two Certificates under one CA: the CA Secret is read once, by the first.
    for name in ["a", "b"] {
        let cert = certificate(name, "ca", &[&format!("{name}.apps.svc")]);
        let task = tokio::spawn(reconcile(
            Arc::new(DeserializeGuard(Ok(cert.clone()))),
            ctx.clone(),
        ));
        if name == "a" {
            api.expect(Method::GET, CA_SECRET_PATH).await.ok(to_json(&ca));
        }
        let secret = format!("/api/v1/namespaces/apps/secrets/{name}-tls");
        let status = format!("/apis/certkeeper.io/v1/namespaces/apps/certificates/{name}/status");
        api.expect(Method::PATCH, &secret).await.echo();
        answer_status(api.expect(Method::PATCH, &status).await, &cert);
        api.expect(Method::POST, EVENTS_PATH).await.echo();
        task.await.unwrap().unwrap();
        api.assert_idle();
    }

    // The CA Secret's watch shows the version the Certificates read: it wakes the issuer,
    // which has not seen it (issue 24), and nothing needs to be read again.
    let meta = metadata_of(&to_json(&ca));
    let root_ca = [(NAMESPACE.to_owned(), "root-ca".to_owned())];
    assert_eq!(
        ctx.issuer_ca_key_pairs.observe(&Event::Apply(meta.clone())),
        root_ca
    );
    let ca_spec = ca_issuer("ca", "root-ca").spec.ca.unwrap();
    let cached = ctx.issuer_ca_key_pairs.load(
        &ctx.client,
        ctx.hsm("Issuer", false),
        NAMESPACE,
        &ca_spec,
        ctx.now(),
    );
    let cached = tokio::time::timeout(std::time::Duration::from_secs(5), cached).await;
    assert!(cached.expect("the CA was read again").unwrap().is_ok());
    api.assert_idle();
    // A re-list repeating that version wakes nobody.
    assert!(
        ctx.issuer_ca_key_pairs
            .observe(&Event::Apply(meta.clone()))
            .is_empty()
    );
    // A new version of it (the CA re-issued): read at the next use.
    let mut rotated = meta;
    rotated.metadata.resource_version = Some("2".into());
    assert_eq!(ctx.issuer_ca_key_pairs.observe(&Event::Apply(rotated)), root_ca);
    let cert = certificate("c", "ca", &["c.apps.svc"]);
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(cert.clone()))),
        ctx.clone(),
    ));
    api.expect(Method::GET, CA_SECRET_PATH).await.ok(to_json(&ca));
    api.expect(Method::PATCH, "/api/v1/namespaces/apps/secrets/c-tls")
        .await
        .echo();
    answer_status(
        api.expect(
            Method::PATCH,
            "/apis/certkeeper.io/v1/namespaces/apps/certificates/c/status",
        )
        .await,
        &cert,
    );
    api.expect(Method::POST, EVENTS_PATH).await.echo();
    task.await.unwrap().unwrap();
    api.assert_idle();
}

/// A CertificateRevocation of the Issuer `ca` for `serial`, as a person writes it.
fn revocation(name: &str, serial: &str) -> crate::api::CertificateRevocation {
    let mut record = crate::api::CertificateRevocation::new(
        name,
        crate::api::CertificateRevocationSpec {
            issuer_ref: crate::api::IssuerRef {
                name: "ca".into(),
                kind: None,
                group: None,
            },
            serial_number: serial.into(),
            reason: None,
            revoked_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ts(NOW))),
        },
    );
    record.metadata.namespace = Some(NAMESPACE.into());
    record
}

#[tokio::test]
async fn revocation_records_are_read_from_the_cache_and_only_the_secrets_own_serial_costs_a_read() {
    use kube::runtime::reflector::store::Writer;
    let now = Arc::new(Mutex::new(ts(NOW)));
    let clock = now.clone();
    let mut records = Writer::default();
    let (ctx, mut api) = context_with_records(
        vec![ca_issuer("ca", "root-ca")],
        vec![],
        records.as_reader(),
        Arc::new(move || *clock.lock().unwrap()),
    );
    cache_the_ca(&ctx, &mut api, &root_ca(ts(NOW))).await;
    let issued = issue_web(&ctx, &mut api, |_| {}).await;
    let serial = issued
        .cert
        .status
        .as_ref()
        .unwrap()
        .serial_number
        .clone()
        .unwrap();

    // A record of another serial reaches the cache: the steady state still reads nothing.
    records.apply_watcher_event(&Event::Apply(DeserializeGuard(Ok(revocation(
        "other", "0badc0de",
    )))));
    *now.lock().unwrap() = ts(NOW) + SignedDuration::from_hours(1);
    run(&issued.cert, &ctx).await;
    api.assert_idle();

    // A record of the Secret's serial: the verdict no longer holds; one read, then the
    // issuance's writes and the Revoked Event.
    records.apply_watcher_event(&Event::Apply(DeserializeGuard(Ok(revocation("leaked", &serial)))));
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(issued.cert.clone()))),
        ctx.clone(),
    ));
    api.expect(Method::GET, SECRET_PATH)
        .await
        .ok(issued.secret.clone());
    api.expect(Method::PATCH, SECRET_PATH).await.echo();
    answer_status(api.expect(Method::PATCH, STATUS_PATH).await, &issued.cert);
    let revoked = api.expect(Method::POST, EVENTS_PATH).await;
    assert_eq!(revoked.body["reason"], "Revoked");
    revoked.echo();
    api.expect(Method::POST, EVENTS_PATH).await.echo();
    task.await.unwrap().unwrap();
    api.assert_idle();
}

/// Answers a status patch as the API server does, at resourceVersion `version`: the
/// Certificate the watch then shows.
fn status_written(patch: Seen, cert: &Certificate, version: &str) -> Certificate {
    let mut after = to_json(cert);
    after["status"] = patch.body["status"].clone();
    after["metadata"]["resourceVersion"] = version.into();
    patch.ok(after.clone());
    serde_json::from_value(after).unwrap()
}

/// The status and reason of condition `type_`, if present.
fn condition_of(cert: &Certificate, type_: &str) -> Option<(String, String)> {
    let status = cert.status.as_ref()?;
    let c = crate::api::find_condition(&status.conditions, type_)?;
    Some((c.status.clone(), c.reason.clone()))
}

/// The CA Secret `ca` at `version`, its key replaced with garbage when `broken`; the cache
/// learns of it from its watch.
fn ca_at(ctx: &Context, ca: &Secret, version: &str, broken: bool) -> Value {
    let mut secret = to_json(ca);
    secret["metadata"]["resourceVersion"] = version.into();
    if broken {
        secret["data"]["tls.key"] = b64(b"garbage").into();
    }
    ctx.issuer_ca_key_pairs
        .observe(&Event::Apply(metadata_of(&secret)));
    secret
}

#[tokio::test]
async fn an_issuer_outage_leaves_a_valid_certificate_ready_and_renews_it_once_when_it_is_back() {
    let (ctx, mut api, now) = setup();
    let ca = root_ca(ts(NOW));
    cache_the_ca(&ctx, &mut api, &ca).await;
    let issued = issue_web(&ctx, &mut api, |_| {}).await;
    ctx.verdicts
        .observe(&Event::Apply(metadata_of(&issued.secret)), certificate_of);
    let ready = Some(("True".to_owned(), "Ready".to_owned()));

    // The CA Secret's key is replaced with garbage (issue 21), an hour after issuance: the
    // Secret is valid and not due, so the Certificate stays Ready; the issuer's trouble is on
    // Issuing, with one Warning. The Secret is not read: its verdict holds.
    *now.lock().unwrap() = ts(NOW) + SignedDuration::from_hours(1);
    let broken = ca_at(&ctx, &root_ca(ts(NOW)), "2", true);
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(issued.cert.clone()))),
        ctx.clone(),
    ));
    api.expect(Method::GET, CA_SECRET_PATH).await.ok(broken);
    let cert = status_written(api.expect(Method::PATCH, STATUS_PATH).await, &issued.cert, "300");
    let warning = api.expect(Method::POST, EVENTS_PATH).await;
    assert_eq!(
        (&warning.body["type"], &warning.body["reason"]),
        (&"Warning".into(), &"IssuerNotReady".into())
    );
    warning.echo();
    task.await.unwrap().unwrap();
    api.assert_idle();
    assert_eq!(condition_of(&cert, "Ready"), ready);
    let issuing = Some(("False".to_owned(), "IssuerNotReady".to_owned()));
    assert_eq!(condition_of(&cert, "Issuing"), issuing);
    // Looked at again while it lasts: no request, no second Warning.
    run(&cert, &ctx).await;
    api.assert_idle();

    // The issuer is back (the CA Secret restored): Ready as it was, Issuing cleared, nothing
    // re-issued and the Secret not read.
    let fixed = ca_at(&ctx, &ca, "3", false);
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(cert.clone()))),
        ctx.clone(),
    ));
    api.expect(Method::GET, CA_SECRET_PATH).await.ok(fixed);
    let cert = status_written(api.expect(Method::PATCH, STATUS_PATH).await, &cert, "301");
    task.await.unwrap().unwrap();
    api.assert_idle();
    assert_eq!(condition_of(&cert, "Ready"), ready);
    assert_eq!(condition_of(&cert, "Issuing"), None);

    // Broken again hours later, and now due for renewal: Ready=False with the issuer's
    // reason. (kube's Recorder folds repeats within 6 minutes of wall-clock time into the
    // first Event: a fresh context, its caches carried over, stands for the hours between.)
    let clock = now.clone();
    let (mut fresh, mut api) = context_with_clock(
        vec![ca_issuer("ca", "root-ca")],
        vec![],
        Arc::new(move || *clock.lock().unwrap()),
    );
    let carried = Arc::get_mut(&mut fresh).unwrap();
    carried.verdicts = ctx.verdicts.clone();
    carried.issuer_ca_key_pairs = ctx.issuer_ca_key_pairs.clone();
    let ctx = fresh;
    let broken = ca_at(&ctx, &root_ca(ts(NOW)), "4", true);
    *now.lock().unwrap() = ts(NOW) + SignedDuration::from_hours(17);
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(cert.clone()))),
        ctx.clone(),
    ));
    api.expect(Method::GET, CA_SECRET_PATH).await.ok(broken);
    api.expect(Method::GET, SECRET_PATH)
        .await
        .ok(issued.secret.clone());
    let cert = status_written(api.expect(Method::PATCH, STATUS_PATH).await, &cert, "302");
    api.expect(Method::POST, EVENTS_PATH).await.echo();
    task.await.unwrap().unwrap();
    api.assert_idle();
    let not_ready = Some(("False".to_owned(), "IssuerNotReady".to_owned()));
    assert_eq!(condition_of(&cert, "Ready"), not_ready);

    // Back again: renewed once, then nothing more to do.
    let fixed = ca_at(&ctx, &ca, "5", false);
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(cert.clone()))),
        ctx.clone(),
    ));
    api.expect(Method::GET, CA_SECRET_PATH).await.ok(fixed);
    api.expect(Method::GET, SECRET_PATH)
        .await
        .ok(issued.secret.clone());
    let apply = api.expect(Method::PATCH, SECRET_PATH).await;
    let mut renewed = apply.body.clone();
    renewed["metadata"]["resourceVersion"] = "160".into();
    apply.ok(renewed.clone());
    let cert = status_written(api.expect(Method::PATCH, STATUS_PATH).await, &cert, "303");
    let event = api.expect(Method::POST, EVENTS_PATH).await;
    assert_eq!(event.body["reason"], "Renewed");
    event.echo();
    task.await.unwrap().unwrap();
    api.assert_idle();
    assert_eq!(condition_of(&cert, "Ready"), ready);
    assert!(
        ctx.verdicts
            .observe(&Event::Apply(metadata_of(&renewed)), certificate_of)
            .is_empty()
    );
    run(&cert, &ctx).await;
    api.assert_idle();
}

/// A context like `ctx`'s whose issuer `ca` was edited to generation 2 and is still judged
/// Ready at generation 1 (its controller has not caught up), with `ctx`'s caches carried over.
fn after_an_issuer_edit(ctx: &Arc<Context>, clock: &Arc<Mutex<Timestamp>>) -> (Arc<Context>, ApiServer) {
    let mut issuer = ca_issuer("ca", "root-ca");
    issuer.metadata.generation = Some(2);
    issuer.status = Some(judged_ready(Some(1)));
    let clock = clock.clone();
    let (mut fresh, api) = context_with_clock(vec![issuer], vec![], Arc::new(move || *clock.lock().unwrap()));
    let carried = Arc::get_mut(&mut fresh).unwrap();
    carried.verdicts = ctx.verdicts.clone();
    carried.issuer_ca_key_pairs = ctx.issuer_ca_key_pairs.clone();
    (fresh, api)
}

#[tokio::test]
async fn an_issuer_edit_not_yet_judged_costs_its_certificates_no_request() {
    let (ctx, mut api, now) = setup();
    cache_the_ca(&ctx, &mut api, &root_ca(ts(NOW))).await;
    let issued = issue_web(&ctx, &mut api, |_| {}).await;
    ctx.verdicts
        .observe(&Event::Apply(metadata_of(&issued.secret)), certificate_of);

    // `kubectl edit issuer ca`: the edit's event wakes the Certificates as the issuer's own
    // reconcile starts; its Ready condition still says generation 1. No write, no Event: the
    // Certificate looks again soon, and the issuer's status echo wakes it anyway.
    *now.lock().unwrap() = ts(NOW) + SignedDuration::from_hours(1);
    let (ctx, mut api) = after_an_issuer_edit(&ctx, &now);
    let recheck = Next::requeue(std::time::Duration::from_secs(5));
    assert_eq!(run(&issued.cert, &ctx).await, recheck);
    api.assert_idle();
    // A Certificate new beside it, no Secret yet: it waits too, without a request.
    let fresh = certificate("fresh", "ca", &["fresh.apps.svc"]);
    assert_eq!(run(&fresh, &ctx).await, recheck);
    api.assert_idle();
    *now.lock().unwrap() += SignedDuration::from_secs(55);
    assert_eq!(run(&issued.cert, &ctx).await, recheck);
    api.assert_idle();

    // Its controller never judges it (failing, say): a minute after this process first saw
    // it unjudged, the Certificate says so as for any issuer not ready: still Ready (its
    // Secret is valid), Issuing=False, one Warning.
    *now.lock().unwrap() += SignedDuration::from_secs(6);
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(issued.cert.clone()))),
        ctx.clone(),
    ));
    let patch = api.expect(Method::PATCH, STATUS_PATH).await;
    let issuing = &patch.body["status"]["conditions"];
    assert!(issuing.to_string().contains("current spec"), "{issuing}");
    let cert = status_written(patch, &issued.cert, "300");
    let warning = api.expect(Method::POST, EVENTS_PATH).await;
    assert_eq!(warning.body["reason"], "IssuerNotReady");
    warning.echo();
    assert_eq!(task.await.unwrap().unwrap(), recheck);
    api.assert_idle();
    assert_eq!(
        condition_of(&cert, "Ready"),
        Some(("True".to_owned(), "Ready".to_owned()))
    );
    assert_eq!(
        condition_of(&cert, "Issuing"),
        Some(("False".to_owned(), "IssuerNotReady".to_owned()))
    );
}
