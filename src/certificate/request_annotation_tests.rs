//! Renew and revoke requests by annotation (SPEC "Requests by annotation") against the mocked
//! API server, every request asserted, with one context kept across reconciles as the
//! controller keeps it (so the verdict path is taken whenever it can be): a request is acted on
//! exactly once, as soon as its time has come, however it is dated (in the past, this very
//! second, the second of issuance, a second or a minute ahead); one that cannot be read or
//! acted on gets one Warning Event; and what `certkeeper renew` and `certkeeper revoke` write is
//! acted on by the controller.

use std::sync::{Arc, Mutex};

use super::schedule::Next;
use http::Method;
use jiff::{SignedDuration, Timestamp};
use kube::core::DeserializeGuard;
use serde_json::Value;

use super::reconcile::reconcile;
use super::request_tests::{
    CA_SECRET_PATH, EVENTS_PATH, Issued, NOW, SECRET_PATH, STATUS_PATH, cache_the_ca, issue_web, setup,
};
use super::schedule::requeue_after;
use crate::api::Certificate;
use crate::context::Context;
use crate::error::Error;
use crate::pki::parse_certificate_chain;
use crate::testing::*;

/// When `web` is issued: its notBefore is 10:00:00, the second this instant is in.
const ISSUED_AT: &str = "2026-11-23T10:00:00.300Z";
const RECORDS_PATH: &str = "/apis/certkeeper.io/v1/namespaces/apps/certificaterevocations";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ask {
    Renew,
    Revoke,
}

impl Ask {
    fn annotation(self) -> &'static str {
        match self {
            Ask::Renew => "certkeeper.io/renew-requested-at",
            Ask::Revoke => "certkeeper.io/revoke-requested-at",
        }
    }

    /// The status field recording the request answered.
    fn answered(self) -> &'static str {
        match self {
            Ask::Renew => "lastRenewRequest",
            Ask::Revoke => "lastRevokeRequest",
        }
    }
}

/// The controller's side: its context, the mocked API server, its clock, and `web` as the
/// API server and the controller's caches now hold it.
struct Controller {
    ctx: Arc<Context>,
    api: ApiServer,
    clock: Arc<Mutex<Timestamp>>,
    web: Issued,
}

impl Controller {
    fn set_clock(&self, at: Timestamp) {
        *self.clock.lock().unwrap() = at;
    }

    fn now(&self) -> Timestamp {
        *self.clock.lock().unwrap()
    }

    fn spawn(&self, cert: &Certificate) -> tokio::task::JoinHandle<Result<Next, Error>> {
        tokio::spawn(reconcile(
            Arc::new(DeserializeGuard(Ok(cert.clone()))),
            self.ctx.clone(),
        ))
    }
}

/// `web` issued at ISSUED_AT, and the echo of its status write judged from the verdict (no
/// request): the verdict is cached when a request arrives.
async fn issued() -> Controller {
    let (ctx, mut api, clock) = setup();
    *clock.lock().unwrap() = ts(ISSUED_AT);
    cache_the_ca(&ctx, &mut api, &root_ca(ts(NOW))).await;
    let web = issue_web(&ctx, &mut api, |_| {}).await;
    quiet(&ctx, &mut api, &web.cert).await;
    Controller { ctx, api, clock, web }
}

/// Reconciles `cert` and asserts it makes no request (an unexpected one fails the test rather
/// than waiting for an answer forever).
async fn quiet(ctx: &Arc<Context>, api: &mut ApiServer, cert: &Certificate) -> Next {
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(cert.clone()))),
        ctx.clone(),
    ));
    tokio::select! {
        done = task => done.unwrap().unwrap(),
        _ = api.expect(Method::DELETE, "no request at all") => unreachable!(),
    }
}

/// `cert` with the annotation `ask` set to `value`, as the API server then holds it.
fn asking(cert: &Certificate, ask: Ask, value: &str) -> Certificate {
    let mut cert = cert.clone();
    cert.metadata
        .annotations
        .get_or_insert_default()
        .insert(ask.annotation().into(), value.into());
    bump(&mut cert);
    cert
}

/// A new resourceVersion, as every write to the object gets.
fn bump(cert: &mut Certificate) {
    let version: u64 = cert
        .metadata
        .resource_version
        .as_deref()
        .unwrap_or("0")
        .parse()
        .unwrap();
    cert.metadata.resource_version = Some((version + 1).to_string());
}

fn serial_of(secret: &Value) -> String {
    parse_certificate_chain(&secret_data(secret, "tls.crt"))
        .unwrap()
        .remove(0)
        .serial_hex
}

/// Expects the issuance answering the request `value` of `ask` on `cert` (whose Secret held
/// `secret` until now): for a revocation the record first, then the Secret, the status recording
/// the value, and the Events. Returns the Secret and status written.
async fn expect_answer(
    api: &mut ApiServer,
    cert: &Certificate,
    ask: Ask,
    value: &str,
    secret: &Value,
) -> (Value, Value) {
    let serial = serial_of(secret);
    if ask == Ask::Revoke {
        let record = api
            .expect(Method::PATCH, &format!("{RECORDS_PATH}/ca-{serial}"))
            .await;
        assert_eq!(
            record.body["metadata"]["annotations"][ask.annotation()],
            value,
            "the record says which request it answers"
        );
        record.echo();
    }
    let apply = api.expect(Method::PATCH, SECRET_PATH).await;
    let mut written = apply.body.clone();
    let version: u64 = secret["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    written["metadata"]["resourceVersion"] = (version + 1).to_string().into();
    apply.ok(written.clone());
    assert_ne!(serial_of(&written), serial, "re-issued");
    let status = answer_status(api.expect(Method::PATCH, STATUS_PATH).await, cert);
    assert_eq!(status[ask.answered()], value, "{status}");
    // A repeated Event is counted in the first one's series, which keeps its note.
    let note = |event: &crate::testing::Seen| {
        let note = event.body["note"].as_str().unwrap_or_default().to_owned();
        (event.method == Method::POST).then_some(note)
    };
    if ask == Ask::Revoke {
        let revoked = api.expect_event(NAMESPACE).await;
        assert_eq!(revoked.body["reason"], "Revoked");
        if let Some(note) = note(&revoked) {
            assert!(note.contains(&serial), "{note}");
        }
        revoked.echo();
    }
    let renewed = api.expect_event(NAMESPACE).await;
    assert_eq!(renewed.body["reason"], "Renewed");
    let trigger = match ask {
        Ask::Renew => "ManuallyTriggered",
        Ask::Revoke => "Revoked",
    };
    if let Some(note) = note(&renewed) {
        assert!(note.contains(trigger), "{note}");
    }
    renewed.echo();
    (written, status)
}

/// The request `value` of `ask` reaches `web` at `arrives`: see `answered_once`.
async fn acted_on_once(c: Controller, ask: Ask, value: &str, arrives: Timestamp) -> Controller {
    let cert = asking(&c.web.cert, ask, value);
    answered_once(c, ask, cert, arrives).await
}

/// `cert`, `web` with a request `ask` in its annotations, reaches the controller at `arrives`:
/// one read of the Secret; if the request is dated ahead, nothing more but a requeue at its
/// time, when the Secret is read again; then the issuance answering it. Its echo and a
/// reconcile an hour later make no request: answered once. Returns the controller with `web`
/// as it is then.
async fn answered_once(mut c: Controller, ask: Ask, cert: Certificate, arrives: Timestamp) -> Controller {
    let value = cert.metadata.annotations.as_ref().unwrap()[ask.annotation()].clone();
    let value = value.as_str();
    let case = format!("{ask:?} {value} arriving at {arrives}");
    let at: Timestamp = value.parse().unwrap();
    c.set_clock(arrives);
    let mut task = c.spawn(&cert);
    c.api
        .expect(Method::GET, SECRET_PATH)
        .await
        .ok(c.web.secret.clone());
    if at > arrives {
        let action = task.await.unwrap().unwrap();
        c.api.assert_idle();
        let wait = requeue_after(arrives, &[at]);
        assert_eq!(action, Next::requeue(wait), "{case}: woken at its time");
        // The requeue comes due: the same Certificate, the request now due.
        c.set_clock(arrives + SignedDuration::try_from(wait).unwrap());
        task = c.spawn(&cert);
        c.api
            .expect(Method::GET, SECRET_PATH)
            .await
            .ok(c.web.secret.clone());
    }
    let (secret, status) = expect_answer(&mut c.api, &cert, ask, value, &c.web.secret).await;
    task.await.unwrap().unwrap();
    c.api.assert_idle();

    let mut answered = cert.clone();
    answered.status = Some(serde_json::from_value(status).unwrap());
    bump(&mut answered);
    quiet(&c.ctx, &mut c.api, &answered).await;
    c.set_clock(c.now() + SignedDuration::from_hours(1));
    quiet(&c.ctx, &mut c.api, &answered).await;
    c.web = Issued {
        secret,
        cert: answered,
    };
    c
}

/// Every way a request is dated, relative to when it reaches the controller (`web` was issued
/// at 10:00:00.300).
fn datings() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("in the past", "2026-11-23T10:05:00Z", "2026-11-23T10:05:30Z"),
        (
            "this very second",
            "2026-11-23T10:05:00Z",
            "2026-11-23T10:05:00.400Z",
        ),
        (
            "in the second of issuance",
            "2026-11-23T10:00:00Z",
            "2026-11-23T10:00:00.600Z",
        ),
        (
            "a second ahead",
            "2026-11-23T10:05:01Z",
            "2026-11-23T10:05:00.400Z",
        ),
        ("a minute ahead", "2026-11-23T10:06:00Z", "2026-11-23T10:05:00Z"),
        (
            "to the millisecond",
            "2026-11-23T10:05:00.400Z",
            "2026-11-23T10:05:00.400Z",
        ),
    ]
}

#[tokio::test]
async fn a_renew_request_is_acted_on_exactly_once_however_it_is_dated() {
    for (dating, value, arrives) in datings() {
        eprintln!("renew request {dating}");
        acted_on_once(issued().await, Ask::Renew, value, ts(arrives)).await;
    }
}

#[tokio::test]
async fn a_revoke_request_is_acted_on_exactly_once_however_it_is_dated() {
    for (dating, value, arrives) in datings() {
        eprintln!("revoke request {dating}");
        acted_on_once(issued().await, Ask::Revoke, value, ts(arrives)).await;
    }
}

#[tokio::test]
async fn a_request_arriving_while_the_verdict_on_an_answered_one_is_cached_is_acted_on_too() {
    let c = issued().await;
    let c = acted_on_once(
        c,
        Ask::Renew,
        "2026-11-23T10:05:00Z",
        ts("2026-11-23T10:05:00.400Z"),
    )
    .await;
    // The verdict now remembers the first request, answered; the second comes a second ahead,
    // then the first revoke request, then a renewal again in the same second.
    let c = acted_on_once(
        c,
        Ask::Renew,
        "2026-11-23T12:00:01Z",
        ts("2026-11-23T12:00:00.500Z"),
    )
    .await;
    let c = acted_on_once(
        c,
        Ask::Revoke,
        "2026-11-23T13:00:01Z",
        ts("2026-11-23T13:00:00.500Z"),
    )
    .await;
    acted_on_once(
        c,
        Ask::Renew,
        "2026-11-23T14:00:00.600Z",
        ts("2026-11-23T14:00:00.600Z"),
    )
    .await;
}

#[tokio::test]
async fn a_request_older_than_the_certificate_is_not_acted_on_after_an_upgrade() {
    // A status written before requests were recorded: a request older than the certificate in
    // the Secret was answered by that controller. One read, no write, no requeue for it.
    let mut c = issued().await;
    for ask in [Ask::Renew, Ask::Revoke] {
        let cert = asking(&c.web.cert, ask, "2026-11-23T09:59:59Z");
        c.set_clock(ts("2026-11-23T10:30:00Z"));
        let task = c.spawn(&cert);
        c.api
            .expect(Method::GET, SECRET_PATH)
            .await
            .ok(c.web.secret.clone());
        let action = task.await.unwrap().unwrap();
        c.api.assert_idle();
        assert_ne!(action, Next::requeue(std::time::Duration::from_secs(1)));
        quiet(&c.ctx, &mut c.api, &cert).await;
        c.web.cert = cert;
    }
}

#[tokio::test]
async fn an_unreadable_renew_request_gets_one_warning_per_value_and_renews_nothing() {
    let mut c = issued().await;
    c.set_clock(ts("2026-11-23T10:30:00Z"));
    let cert = asking(&c.web.cert, Ask::Renew, "yesterday");
    let task = c.spawn(&cert);
    let warning = c.api.expect(Method::POST, EVENTS_PATH).await;
    assert_eq!(warning.body["type"], "Warning");
    assert_eq!(warning.body["reason"], "InvalidRenewRequest");
    assert!(warning.body["note"].as_str().unwrap().contains("\"yesterday\""));
    warning.echo();
    c.api
        .expect(Method::GET, SECRET_PATH)
        .await
        .ok(c.web.secret.clone());
    task.await.unwrap().unwrap();
    c.api.assert_idle();
    // Reconciled again (a deadline, an issuer): no second Warning, nothing read.
    quiet(&c.ctx, &mut c.api, &cert).await;
    // Another unreadable value: warned about too.
    let cert = asking(&cert, Ask::Renew, "tomorrow");
    let task = c.spawn(&cert);
    // (The recorder counts it in the first Warning's series, whose note it keeps.)
    let warning = c.api.expect_event(NAMESPACE).await;
    assert_eq!(warning.body["reason"], "InvalidRenewRequest");
    warning.echo();
    c.api
        .expect(Method::GET, SECRET_PATH)
        .await
        .ok(c.web.secret.clone());
    task.await.unwrap().unwrap();
    c.api.assert_idle();
    c.web.cert = cert;
    // Corrected: acted on.
    acted_on_once(
        c,
        Ask::Renew,
        "2026-11-23T10:30:00Z",
        ts("2026-11-23T10:30:00.500Z"),
    )
    .await;
}

#[tokio::test]
async fn an_unreadable_revoke_request_is_warned_about_once() {
    let mut c = issued().await;
    c.set_clock(ts("2026-11-23T10:30:00Z"));
    let mut cert = asking(&c.web.cert, Ask::Revoke, "2026-11-23T10:29:00Z");
    cert.metadata
        .annotations
        .get_or_insert_default()
        .insert("certkeeper.io/revocation-reason".into(), "oops".into());
    let task = c.spawn(&cert);
    let warning = c.api.expect(Method::POST, EVENTS_PATH).await;
    assert_eq!(warning.body["reason"], "InvalidRevokeRequest");
    warning.echo();
    c.api
        .expect(Method::GET, SECRET_PATH)
        .await
        .ok(c.web.secret.clone());
    task.await.unwrap().unwrap();
    c.api.assert_idle();
    quiet(&c.ctx, &mut c.api, &cert).await;
}

#[tokio::test]
async fn a_revoke_request_with_no_certificate_to_revoke_says_so_and_revokes_nothing_issued_later() {
    let (ctx, mut api, clock) = setup();
    *clock.lock().unwrap() = ts(ISSUED_AT);
    let ca = root_ca(ts(NOW));
    cache_the_ca(&ctx, &mut api, &ca).await;
    // Created with a revoke request from before it existed.
    let mut cert = super::request_tests::web();
    let value = "2026-11-23T09:00:00Z";
    cert.metadata.annotations = Some([(Ask::Revoke.annotation().to_owned(), value.to_owned())].into());
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(cert.clone()))),
        ctx.clone(),
    ));
    api.expect(Method::GET, SECRET_PATH).await.not_found();
    let warning = api.expect(Method::POST, EVENTS_PATH).await;
    assert_eq!(warning.body["type"], "Warning");
    assert_eq!(warning.body["reason"], "NothingToRevoke");
    warning.echo();
    let apply = api.expect(Method::PATCH, SECRET_PATH).await;
    let mut secret = apply.body.clone();
    secret["metadata"]["resourceVersion"] = "101".into();
    apply.ok(secret.clone());
    let status = answer_status(api.expect(Method::PATCH, STATUS_PATH).await, &cert);
    assert_eq!(status["lastRevokeRequest"], value);
    let event = api.expect(Method::POST, EVENTS_PATH).await;
    assert_eq!(event.body["reason"], "Issued");
    event.echo();
    task.await.unwrap().unwrap();
    api.assert_idle();

    // The certificate issued now is not revoked by it, on the verdict path or after a restart.
    let mut issued = cert.clone();
    issued.status = Some(serde_json::from_value(status).unwrap());
    bump(&mut issued);
    *clock.lock().unwrap() = ts(ISSUED_AT) + SignedDuration::from_hours(1);
    quiet(&ctx, &mut api, &issued).await;
    let (restarted, mut api) = context(vec![ca_issuer("ca", "root-ca")], vec![], ts(ISSUED_AT));
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(issued.clone()))),
        restarted.clone(),
    ));
    api.expect(Method::GET, CA_SECRET_PATH).await.ok(to_json(&ca));
    api.expect(Method::GET, SECRET_PATH).await.ok(secret);
    tokio::select! {
        done = task => done.unwrap().unwrap(),
        _ = api.expect(Method::DELETE, "no more requests") => unreachable!(),
    };
    drop(restarted);
    api.expect_no_more().await;
}

#[tokio::test]
async fn revoking_a_self_signed_certificate_warns_that_nobody_publishes_it() {
    let at = ts(ISSUED_AT);
    let (ctx, mut api) = context(
        vec![self_signed_issuer("self")],
        vec![],
        at + SignedDuration::from_hours(1),
    );
    let cert = certificate("web", "self", &["web.apps.svc"]);
    let issued = crate::certificate::reconcile::sign(
        &super::spec::validate(&cert.spec).unwrap(),
        &super::triggers::Signer::SelfSigned,
        None,
        at,
        None,
    )
    .unwrap();
    let spec = super::spec::validate(&cert.spec).unwrap();
    let secret = to_json(&super::secret::desired_secret(
        &cert,
        &spec,
        &issued.leaf,
        &issued.material,
        1,
    ));
    let value = "2026-11-23T10:30:00Z";
    let cert = asking(&cert, Ask::Revoke, value);
    let task = tokio::spawn(reconcile(
        Arc::new(DeserializeGuard(Ok(cert.clone()))),
        ctx.clone(),
    ));
    api.expect(Method::GET, SECRET_PATH).await.ok(secret.clone());
    let record = api
        .expect(
            Method::PATCH,
            &format!("{RECORDS_PATH}/self-{}", issued.leaf.serial_hex),
        )
        .await;
    record.echo();
    api.expect(Method::PATCH, SECRET_PATH).await.echo();
    let status = answer_status(api.expect(Method::PATCH, STATUS_PATH).await, &cert);
    assert_eq!(status["lastRevokeRequest"], value);
    let warning = api.expect(Method::POST, EVENTS_PATH).await;
    assert_eq!(warning.body["type"], "Warning");
    assert_eq!(warning.body["reason"], "RevocationNotPublished");
    let note = warning.body["note"].as_str().unwrap().to_owned();
    assert!(note.contains(&issued.leaf.serial_hex), "{note}");
    warning.echo();
    api.expect(Method::POST, EVENTS_PATH).await.echo();
    task.await.unwrap().unwrap();
    drop(ctx);
    api.expect_no_more().await;
}

/// The commands' side: what `certkeeper renew web` or `certkeeper revoke certificate web`
/// writes, run at `at` against a mocked API server holding `cert`; returns `cert` as the API
/// server then holds it (the merge patch applied).
async fn command(ask: Ask, cert: &Certificate, at: Timestamp) -> Certificate {
    use clap::Parser;
    let (client, mut server) = cli_client();
    let args = match ask {
        Ask::Renew => vec!["certkeeper", "renew", "web"],
        Ask::Revoke => vec![
            "certkeeper",
            "revoke",
            "certificate",
            "web",
            "--reason",
            "keyCompromise",
        ],
    };
    let command = crate::cli::Cli::try_parse_from(args).unwrap().command;
    let running = tokio::spawn(async move {
        match command {
            crate::cli::Command::Renew(args) => crate::cli::renew::run(&client, &args, at).await,
            crate::cli::Command::Revoke(args) => crate::cli::revoke::run(&client, &args, at).await,
            other => panic!("not a request: {other:?}"),
        }
    });
    let patch = server
        .expect(
            Method::PATCH,
            "/apis/certkeeper.io/v1/namespaces/apps/certificates/web",
        )
        .await;
    let mut annotated = cert.clone();
    for (key, value) in patch.body["metadata"]["annotations"].as_object().unwrap() {
        annotated
            .metadata
            .annotations
            .get_or_insert_default()
            .insert(key.clone(), value.as_str().unwrap().to_owned());
    }
    bump(&mut annotated);
    patch.ok(to_json(&annotated));
    let outcome = running.await.unwrap().unwrap();
    assert!(outcome.failures.is_empty());
    server.expect_no_more().await;
    annotated
}

#[tokio::test]
async fn what_the_commands_write_is_acted_on_once_even_in_the_second_of_issuance() {
    for ask in [Ask::Renew, Ask::Revoke] {
        // Run 400 ms after the issuance, on the controller's clock or on one a second ahead.
        for skew in [SignedDuration::ZERO, SignedDuration::from_secs(1)] {
            let c = issued().await;
            let run_at = ts(ISSUED_AT) + SignedDuration::from_millis(400);
            let cert = command(ask, &c.web.cert, run_at + skew).await;
            eprintln!(
                "{ask:?} on a clock {skew:#} ahead: {:?}",
                cert.metadata.annotations
            );
            // The controller sees the annotation 10 ms later.
            answered_once(c, ask, cert, run_at + SignedDuration::from_millis(10)).await;
        }
    }
}
