//! `status certificate NAME`: the one screen someone on call needs. Conditions, revision and
//! times; the issuer and whether it is ready; what the Secret really holds; recent Events.

use std::fmt::Write as _;

use clap::{Args, Subcommand};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde::Serialize;

use super::material::{self, Material};
use super::text::{field, field_joined, wrap};
use super::{CliError, ClusterArgs, NamespaceArgs, OutputFormat, namespace_or_default, render};
use crate::api::{
    Certificate, CertificateStatus, ClusterIssuer, GROUP, Issuer, IssuerStatus, RENEW_REQUESTED_AT,
    find_condition,
};
use crate::certificate::requests::{RenewRequest, unanswered};
use crate::certificate::status::READY;

/// How many of the most recent Events are shown.
const EVENTS_SHOWN: usize = 10;

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  certkeeper status certificate frontend -n certkeeper-demo")]
pub struct StatusArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(subcommand)]
    pub object: StatusObject,
}

#[derive(Debug, Subcommand)]
pub enum StatusObject {
    /// Conditions, times, issuer, Secret contents and recent Events of a Certificate.
    #[command(
        visible_alias = "cert",
        after_help = "Examples:\n  certkeeper status certificate frontend -n certkeeper-demo\n  \
                      certkeeper status cert frontend -n certkeeper-demo -o json"
    )]
    Certificate {
        /// Name of the Certificate.
        name: String,
        #[command(flatten)]
        namespace: NamespaceArgs,
        /// Print JSON or YAML instead of text.
        #[arg(short, long, value_enum)]
        output: Option<OutputFormat>,
    },
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateReport {
    pub namespace: String,
    pub name: String,
    pub ready: String,
    pub conditions: Vec<ConditionReport>,
    pub revision: Option<i64>,
    pub not_before: Option<Timestamp>,
    pub not_after: Option<Timestamp>,
    pub time_left: Option<String>,
    pub renewal_time: Option<Timestamp>,
    pub failed_issuance_attempts: Option<i64>,
    pub last_failure_time: Option<Timestamp>,
    pub renew_requested_at: Option<String>,
    pub issuer: IssuerReport,
    pub secret: SecretReport,
    /// Where the status and the Secret disagree.
    pub notes: Vec<String>,
    pub events: Vec<EventReport>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionReport {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: Timestamp,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuerReport {
    pub kind: String,
    pub name: String,
    /// "True", "False", "Unknown", or what kept us from knowing ("not found").
    pub ready: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub ca_not_after: Option<Timestamp>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretReport {
    pub name: String,
    /// Why the Secret's contents are not shown (missing, forbidden).
    pub unavailable: Option<String>,
    pub material: Option<Material>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventReport {
    pub time: Option<Timestamp>,
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub count: i32,
    pub note: String,
}

pub async fn run(client: &Client, args: &StatusArgs, now: Timestamp) -> Result<String, CliError> {
    let StatusObject::Certificate {
        name,
        namespace,
        output,
    } = &args.object;
    let namespace = namespace_or_default(&namespace.namespace, client);
    let report = certificate_report(client, &namespace, name, now).await?;
    match output {
        Some(format) => render(&report, *format),
        None => Ok(text(&report)),
    }
}

/// Reads the Certificate (an error if that fails), its issuer, Secret and Events (shown as
/// unavailable if that fails: someone on call may not be allowed to read Secrets).
pub async fn certificate_report(
    client: &Client,
    namespace: &str,
    name: &str,
    now: Timestamp,
) -> Result<CertificateReport, CliError> {
    let object = format!("Certificate {namespace}/{name}");
    let cert = Api::<Certificate>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .map_err(|e| CliError::api(format!("get {object}"), &object, e))?;
    let status = cert.status.clone().unwrap_or_default();
    let ready = match find_condition(&status.conditions, READY) {
        Some(c) => format!("{} ({})", c.status, c.reason),
        None => "Unknown (no Ready condition yet: is the controller running?)".into(),
    };
    let conditions = status
        .conditions
        .iter()
        .map(|c| ConditionReport {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            last_transition_time: c.last_transition_time.0,
        })
        .collect();
    let issuer = issuer_report(client, &cert).await;
    let secret = secret_report(client, namespace, &cert.spec.secret_name, now).await;
    let events = events(client, namespace, name).await;
    let notes = disagreements(&status, &secret);
    // Shown while the controller has still to answer it.
    let renew_requested_at = cert
        .annotations()
        .get(RENEW_REQUESTED_AT)
        .filter(|value| match RenewRequest::parse(value) {
            Ok(r) => unanswered(
                &r.value,
                r.at,
                status.last_renew_request.as_deref(),
                status.not_before.as_ref().map(|t| t.0),
            ),
            Err(_) => true,
        })
        .cloned();
    Ok(CertificateReport {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        ready,
        conditions,
        revision: status.revision,
        not_before: status.not_before.map(|t| t.0),
        not_after: status.not_after.as_ref().map(|t| t.0),
        time_left: status.not_after.as_ref().map(|t| material::time_left(now, t.0)),
        renewal_time: status.renewal_time.map(|t| t.0),
        failed_issuance_attempts: status.failed_issuance_attempts,
        last_failure_time: status.last_failure_time.map(|t| t.0),
        renew_requested_at,
        issuer,
        secret,
        notes,
        events,
    })
}

/// What an on-call engineer should not have to spot: the status describing another
/// certificate than the Secret holds, or a Ready certificate without its Secret.
fn disagreements(status: &CertificateStatus, secret: &SecretReport) -> Vec<String> {
    let mut notes = Vec::new();
    let ready = find_condition(&status.conditions, READY).is_some_and(|c| c.status == "True");
    match (&secret.unavailable, &secret.material) {
        (Some(why), _) if why == "not found" && ready => notes.push(
            "Ready, but the Secret does not exist: the controller re-issues it on its next look".into(),
        ),
        (None, Some(material)) => {
            let leaf = material.chain.first().map(|c| c.serial.as_str());
            if let (Some(status_serial), Some(leaf)) = (status.serial_number.as_deref(), leaf)
                && status_serial != leaf
            {
                notes.push(format!(
                    "status.serialNumber {status_serial} is not the Secret's certificate \
                     ({leaf}): the Secret changed after the controller last wrote the status"
                ));
            }
            if material.key.as_ref().is_some_and(|k| !k.matches_certificate) {
                notes.push("the Secret's key does not match its certificate (InvalidKeyPair)".into());
            }
        }
        _ => {}
    }
    notes
}

async fn issuer_report(client: &Client, cert: &Certificate) -> IssuerReport {
    let issuer_ref = &cert.spec.issuer_ref;
    let namespace = cert.namespace().unwrap_or_default();
    let mut report = IssuerReport {
        kind: issuer_ref.kind().to_owned(),
        name: issuer_ref.name.clone(),
        ready: "Unknown".into(),
        reason: None,
        message: None,
        ca_not_after: None,
    };
    if issuer_ref.group() != GROUP {
        report.ready = format!("not served by certkeeper (group {})", issuer_ref.group());
        return report;
    }
    let found: Result<Option<IssuerStatus>, kube::Error> = match issuer_ref.kind() {
        "ClusterIssuer" => Api::<ClusterIssuer>::all(client.clone())
            .get(&issuer_ref.name)
            .await
            .map(|i| i.status),
        "Issuer" => Api::<Issuer>::namespaced(client.clone(), &namespace)
            .get(&issuer_ref.name)
            .await
            .map(|i| i.status),
        other => {
            report.ready = format!("unknown kind {other:?}");
            return report;
        }
    };
    match found {
        Ok(status) => {
            let status = status.unwrap_or_default();
            if let Some(c) = find_condition(&status.conditions, READY) {
                report.ready = c.status.clone();
                report.reason = Some(c.reason.clone());
                report.message = Some(c.message.clone());
            }
            report.ca_not_after = status.ca_not_after.map(|t| t.0);
        }
        Err(e) => report.ready = unavailable(e),
    }
    report
}

async fn secret_report(client: &Client, namespace: &str, name: &str, now: Timestamp) -> SecretReport {
    let (unavailable, material) = match Api::<Secret>::namespaced(client.clone(), namespace)
        .get(name)
        .await
    {
        Ok(secret) => (None, Some(super::inspect::describe_secret(&secret, now))),
        Err(e) => (Some(unavailable(e)), None),
    };
    SecretReport {
        name: name.to_owned(),
        unavailable,
        material,
    }
}

/// The most recent Events about the Certificate, oldest first.
async fn events(client: &Client, namespace: &str, name: &str) -> Vec<EventReport> {
    let params = ListParams::default().fields(&format!("regarding.kind=Certificate,regarding.name={name}"));
    let Ok(list) = Api::<Event>::namespaced(client.clone(), namespace)
        .list(&params)
        .await
    else {
        return Vec::new();
    };
    let mut events: Vec<EventReport> = list
        .items
        .into_iter()
        .map(|e| {
            let time = e
                .series
                .as_ref()
                .map(|s| s.last_observed_time.0)
                .or(e.event_time.as_ref().map(|t| t.0))
                .or(e.deprecated_last_timestamp.as_ref().map(|t| t.0))
                .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0));
            EventReport {
                time,
                type_: e.type_.unwrap_or_default(),
                reason: e.reason.unwrap_or_default(),
                count: e.series.map(|s| s.count).unwrap_or(1),
                note: e.note.unwrap_or_default(),
            }
        })
        .collect();
    events.sort_by_key(|e| e.time);
    let skip = events.len().saturating_sub(EVENTS_SHOWN);
    events.drain(..skip);
    events
}

fn unavailable(e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.is_not_found() => "not found".into(),
        kube::Error::Api(s) if s.is_forbidden() => format!("forbidden: {}", s.message),
        other => format!("cannot read: {other}"),
    }
}

fn time(t: Option<Timestamp>) -> String {
    t.map(|t| t.to_string()).unwrap_or_else(|| "-".into())
}

fn text(r: &CertificateReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Certificate {}/{}", r.namespace, r.name);
    field(&mut out, 2, "Ready", std::slice::from_ref(&r.ready));
    for c in &r.conditions {
        let head = format!(
            "{} {} ({}, since {})",
            c.type_, c.status, c.reason, c.last_transition_time
        );
        field(&mut out, 2, "condition", &[head]);
        if !c.message.is_empty() {
            prose(&mut out, 4, "message", &c.message);
        }
    }
    let revision = r.revision.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
    let _ = writeln!(out, "  revision: {revision}");
    let _ = writeln!(out, "  notBefore: {}", time(r.not_before));
    let left = r
        .time_left
        .as_deref()
        .map(|l| format!(" ({l})"))
        .unwrap_or_default();
    let _ = writeln!(out, "  notAfter: {}{left}", time(r.not_after));
    let _ = writeln!(out, "  renewalTime: {}", time(r.renewal_time));
    if let Some(n) = r.failed_issuance_attempts {
        let _ = writeln!(
            out,
            "  failed issuance attempts: {n}, last at {}",
            time(r.last_failure_time)
        );
    }
    if let Some(at) = &r.renew_requested_at {
        let _ = writeln!(out, "  renewal requested at: {at}");
    }
    let i = &r.issuer;
    let reason = i.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
    let issuer = match i.kind.as_str() {
        "Issuer" => format!("Issuer {}/{}", r.namespace, i.name),
        kind => format!("{kind} {}", i.name),
    };
    let _ = writeln!(out, "{issuer}: Ready {}{reason}", i.ready);
    if let Some(m) = i.message.as_deref().filter(|m| !m.is_empty()) {
        prose(&mut out, 2, "message", m);
    }
    if let Some(t) = i.ca_not_after {
        let _ = writeln!(out, "  CA notAfter: {t}");
    }
    for note in &r.notes {
        let _ = writeln!(out, "{}", wrap("NOTE:", note, 6));
    }
    let _ = writeln!(out, "Secret {}/{}:", r.namespace, r.secret.name);
    match (&r.secret.unavailable, &r.secret.material) {
        (Some(why), _) => {
            let _ = writeln!(out, "  {why}");
        }
        (None, Some(material)) => material::write_text(&mut out, material, 2),
        (None, None) => {}
    }
    if r.events.is_empty() {
        let _ = writeln!(out, "Events: none");
    } else {
        let _ = writeln!(out, "Events (oldest first):");
        for e in &r.events {
            let count = if e.count > 1 {
                format!(" x{}", e.count)
            } else {
                String::new()
            };
            let head = format!("  {} {} {}{count}:", time(e.time), e.type_, e.reason);
            let _ = writeln!(out, "{}", wrap(&head, &e.note, 4));
        }
    }
    out
}

/// A message wrapped at word boundaries.
fn prose(out: &mut String, indent: usize, label: &str, message: &str) {
    let words: Vec<String> = message.split_whitespace().map(str::to_owned).collect();
    field_joined(out, indent, label, &words, " ");
}
