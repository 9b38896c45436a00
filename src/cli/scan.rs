//! `scan [-A | -n NS] [--expiring-within D] [-o json|yaml]`: every certificate in the cluster's
//! `kubernetes.io/tls` Secrets and in the Secrets and ConfigMaps with the inventory label,
//! soonest expiry first, with who manages it. It reads the cluster with the user's own rights
//! (no controller needed), a page at a time, and keeps only the facts (SPEC "Certificate
//! inventory"): the same reading as the controller's inventory.

use std::collections::BTreeMap;

use clap::Args;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{ListParams, ObjectList};
use kube::{Api, Client};
use serde::Serialize;

use super::{CliError, ClusterArgs, Outcome, OutputFormat, namespace_or_default, render};
use crate::inventory::{self, CertificateFacts, ManagedBy, ObjectFacts, State};

/// Objects per list request: Secrets can be large, a page bounds what is held at once.
const PAGE: u32 = 100;

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  certkeeper scan -A --expiring-within 30d\n  \
                        certkeeper scan -n ingress -o json")]
pub struct ScanArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Namespace [default: the current kubeconfig context's namespace, as kubectl].
    #[arg(short, long)]
    pub namespace: Option<String>,
    /// In all namespaces.
    #[arg(short = 'A', long, conflicts_with = "namespace")]
    pub all_namespaces: bool,
    /// Only certificates that expire within this long (Go duration, or days: 30d), expired
    /// ones included.
    #[arg(long, value_parser = parse_within)]
    pub expiring_within: Option<SignedDuration>,
    /// Label selector of the Opaque Secrets and ConfigMaps read for PEM certificates, as the
    /// controller's --inventory-label.
    #[arg(long, default_value = inventory::DEFAULT_LABEL)]
    pub label: String,
    /// Print JSON or YAML instead of a table.
    #[arg(short, long, value_enum)]
    pub output: Option<OutputFormat>,
}

/// `30d`, or a Go duration (`720h`).
fn parse_within(value: &str) -> Result<SignedDuration, String> {
    if let Some(days) = value.strip_suffix('d')
        && let Ok(days) = days.parse::<i64>()
        && (0..=36_500).contains(&days)
    {
        return Ok(SignedDuration::from_hours(days * 24));
    }
    crate::certificate::expiry::parse_threshold(value)
        .map_err(|_| format!("{value:?} is not a duration such as 30d or 72h"))
}

/// One row of the answer: a certificate, or an object that holds none that can be read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Found {
    pub namespace: String,
    pub kind: &'static str,
    pub name: String,
    pub managed_by: ManagedBy,
    pub state: State,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateFacts>,
    /// Why a value could not be read (its content is never quoted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<inventory::facts::Unreadable>,
}

fn found(
    namespace: &str,
    kind: &'static str,
    name: &str,
    managed_by: ManagedBy,
    facts: ObjectFacts,
    now: Timestamp,
    expiring_within: SignedDuration,
) -> Vec<Found> {
    let row = |state, certificate, unreadable| Found {
        namespace: namespace.to_owned(),
        kind,
        name: name.to_owned(),
        managed_by,
        state,
        certificate,
        unreadable,
    };
    let mut rows: Vec<Found> = facts
        .certificates
        .into_iter()
        .map(|c| row(State::of(c.not_after, now, expiring_within), Some(c), None))
        .collect();
    rows.extend(
        facts
            .unreadable
            .into_iter()
            .map(|u| row(State::Unreadable, None, Some(u))),
    );
    rows
}

/// Lists every page of `api` matching `params`, handing each object to `each`.
async fn each_page<K>(
    api: &Api<K>,
    params: ListParams,
    what: &str,
    mut each: impl FnMut(K),
) -> Result<(), CliError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut params = params.limit(PAGE);
    loop {
        let page: ObjectList<K> = api
            .list(&params)
            .await
            .map_err(|e| CliError::api(format!("list {what}"), what.to_owned(), e))?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        page.items.into_iter().for_each(&mut each);
        match next {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(()),
        }
    }
}

pub async fn run(client: &Client, args: &ScanArgs, now: Timestamp) -> Result<Outcome, CliError> {
    let namespace = namespace_or_default(&args.namespace, client);
    let (secrets, maps): (Api<Secret>, Api<ConfigMap>) = match args.all_namespaces {
        true => (Api::all(client.clone()), Api::all(client.clone())),
        false => (
            Api::namespaced(client.clone(), &namespace),
            Api::namespaced(client.clone(), &namespace),
        ),
    };
    let where_ = match args.all_namespaces {
        true => "all namespaces".to_owned(),
        false => format!("namespace {namespace}"),
    };
    let expiring_within = args
        .expiring_within
        .unwrap_or(crate::certificate::expiry::DEFAULT_THRESHOLDS[0]);
    // A TLS Secret that also carries the label is one object.
    let mut objects: BTreeMap<(String, &'static str, String), Vec<Found>> = BTreeMap::new();
    let mut add =
        |kind: &'static str, meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, facts| {
            let (ns, name) = (
                meta.namespace.clone().unwrap_or_default(),
                meta.name.clone().unwrap_or_default(),
            );
            let rows = found(
                &ns,
                kind,
                &name,
                inventory::managed_by_meta(meta),
                facts,
                now,
                expiring_within,
            );
            objects.insert((ns, kind, name), rows);
        };
    // Each list that fails is said on a line of its own; the others are still shown.
    let tls = ListParams::default().fields(&format!("type={}", inventory::TLS_SECRET_TYPE));
    let listed_tls = each_page(&secrets, tls, &format!("TLS Secrets in {where_}"), |s| {
        add("Secret", &s.metadata, inventory::read_secret(&s))
    })
    .await;
    let labelled = ListParams::default().labels(&args.label);
    let listed_secrets = each_page(
        &secrets,
        labelled.clone(),
        &format!("Secrets labelled {} in {where_}", args.label),
        |s| add("Secret", &s.metadata, inventory::read_secret(&s)),
    )
    .await;
    let listed_maps = each_page(
        &maps,
        labelled,
        &format!("ConfigMaps labelled {} in {where_}", args.label),
        |m| {
            let facts = inventory::read_configmap(&m);
            add("ConfigMap", &m.metadata, facts)
        },
    )
    .await;
    let mut failed: Vec<CliError> = [listed_tls, listed_secrets, listed_maps]
        .into_iter()
        .filter_map(Result::err)
        .collect();
    if failed.len() == 3 {
        return Err(failed.remove(0));
    }

    let mut rows: Vec<Found> = objects.into_values().flatten().collect();
    if let Some(within) = args.expiring_within {
        let until = now.checked_add(within).unwrap_or(Timestamp::MAX);
        rows.retain(|r| r.certificate.as_ref().is_some_and(|c| c.not_after < until));
    }
    // Soonest expiry first; what cannot be read last.
    rows.sort_by(|a, b| {
        let at = |r: &Found| r.certificate.as_ref().map(|c| c.not_after);
        (at(a).is_none(), at(a), &a.namespace, &a.name).cmp(&(at(b).is_none(), at(b), &b.namespace, &b.name))
    });
    let output = match args.output {
        Some(format) => render(&rows, format)?,
        None => table(&rows, now, &where_),
    };
    Ok(Outcome {
        output,
        summary: format!(
            "{} of 3 lists failed: their certificates are not shown",
            failed.len()
        ),
        failures: failed.iter().map(ToString::to_string).collect(),
    })
}

/// Time left, as a person reads it: `2d4h`, `3h12m`; `-5d0h` expired 5 days ago.
fn left(not_after: Timestamp, now: Timestamp) -> String {
    let secs = not_after.duration_since(now).as_secs();
    let span = |s: i64| match (s / 86_400, s / 3600 % 24, s / 60 % 60) {
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h{m}m"),
        (d, h, _) => format!("{d}d{h}h"),
    };
    match secs {
        s if s <= 0 => format!("-{}", span(-s)),
        s => span(s),
    }
}

fn table(rows: &[Found], now: Timestamp, where_: &str) -> String {
    if rows.is_empty() {
        return format!("no certificates found in {where_}\n");
    }
    let header = [
        "NAMESPACE",
        "OBJECT",
        "KEY",
        "SUBJECT",
        "ISSUER",
        "EXPIRES",
        "LEFT",
        "MANAGED BY",
    ];
    let lines: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            let (key, subject, issuer, not_after, remaining) = match (&r.certificate, &r.unreadable) {
                (Some(c), _) => (
                    c.key.clone(),
                    // No CN (most workload certificates): the first name it is for.
                    match c.subject_cn.is_empty() {
                        false => inventory::facts::truncated_cn(&c.subject_cn).to_owned(),
                        true => c
                            .dns_names
                            .first()
                            .or(c.uris.first())
                            .cloned()
                            .unwrap_or_default(),
                    },
                    inventory::facts::truncated_cn(&c.issuer_cn).to_owned(),
                    c.not_after.strftime("%Y-%m-%d").to_string(),
                    left(c.not_after, now),
                ),
                (None, Some(u)) => (
                    u.key.clone(),
                    format!("unreadable: {}", u.reason),
                    String::new(),
                    String::new(),
                    String::new(),
                ),
                (None, None) => Default::default(),
            };
            [
                r.namespace.clone(),
                format!("{}/{}", r.kind.to_lowercase(), r.name),
                key,
                subject,
                issuer,
                not_after,
                remaining,
                r.managed_by.label().to_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for line in &lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut write = |cells: &[&str]| {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                out.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        out.push('\n');
    };
    write(&header);
    for line in &lines {
        write(&line.each_ref().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_takes_days_and_go_durations() {
        assert_eq!(parse_within("30d"), Ok(SignedDuration::from_hours(720)));
        assert_eq!(parse_within("72h"), Ok(SignedDuration::from_hours(72)));
        assert!(parse_within("soon").is_err());
        assert!(parse_within("-3d").is_err());
    }

    #[test]
    fn time_left_reads_as_a_person_would() {
        let now = crate::testing::ts("2026-06-01T00:00:00Z");
        let h = SignedDuration::from_hours;
        assert_eq!(left(now + h(52), now), "2d4h");
        assert_eq!(left(now + h(3) + SignedDuration::from_mins(12), now), "3h12m");
        assert_eq!(left(now - h(120), now), "-5d0h");
    }
}
