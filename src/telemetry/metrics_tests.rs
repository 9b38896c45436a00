//! The `/metrics` exposition as a scraper reads it: each test encodes a registry over fixture
//! caches, parses the OpenMetrics text back into families and samples, and checks SPEC
//! "Metrics" series by series — names, label sets, values and types.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher;

use super::metrics::{Caches, ControllerKind, Metrics};
use crate::api::{Certificate, CertificateStatus, ConditionStatus, IssuerStatus, condition};
use crate::certificate::cached::CachedCertificate;
use crate::testing::{self, NAMESPACE, ts};

/// The fixture clock of `testing::metrics`.
const NOW: &str = "2026-11-23T12:00:00Z";

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone)]
pub(super) struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One metric family: its `# TYPE` (and `# UNIT`) and the samples that follow it.
#[derive(Debug)]
pub(super) struct Family {
    pub name: String,
    pub kind: String,
    pub unit: Option<String>,
    pub samples: Vec<Sample>,
}

/// A parsed OpenMetrics text exposition.
#[derive(Debug)]
pub(super) struct Exposition {
    pub families: Vec<Family>,
}

impl Exposition {
    /// Parses `text`, panicking on anything a strict OpenMetrics reader would reject that
    /// prometheus-client could plausibly get wrong: a sample outside its family, a suffix its
    /// type does not allow, a malformed label set, or a missing final `# EOF`.
    pub fn parse(text: &str) -> Self {
        let body = text
            .strip_suffix("# EOF\n")
            .unwrap_or_else(|| panic!("exposition does not end with `# EOF`:\n{text}"));
        let mut families: Vec<Family> = Vec::new();
        for line in body.lines() {
            if let Some(comment) = line.strip_prefix("# ") {
                let mut parts = comment.splitn(3, ' ');
                let (keyword, name, rest) = (parts.next(), parts.next(), parts.next());
                let name = name.unwrap_or_else(|| panic!("bad descriptor line {line:?}"));
                match keyword {
                    Some("HELP") => {}
                    Some("TYPE") => families.push(Family {
                        name: name.to_owned(),
                        kind: rest.unwrap_or_else(|| panic!("no type in {line:?}")).to_owned(),
                        unit: None,
                        samples: Vec::new(),
                    }),
                    Some("UNIT") => {
                        let family = families.last_mut().filter(|f| f.name == name);
                        let family = family.unwrap_or_else(|| panic!("UNIT before its TYPE: {line:?}"));
                        family.unit = rest.map(str::to_owned);
                    }
                    _ => panic!("unknown descriptor line {line:?}"),
                }
                continue;
            }
            let sample = parse_sample(line);
            let family = families
                .last_mut()
                .unwrap_or_else(|| panic!("sample before any TYPE: {line:?}"));
            let suffix = sample.name.strip_prefix(family.name.as_str());
            let allowed: &[&str] = match family.kind.as_str() {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                _ => &[""],
            };
            assert!(
                suffix.is_some_and(|s| allowed.contains(&s)),
                "sample {} does not belong to {} family {}",
                sample.name,
                family.kind,
                family.name
            );
            family.samples.push(sample);
        }
        let names: BTreeSet<&str> = families.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names.len(),
            families.len(),
            "a family is described twice:\n{text}"
        );
        Self { families }
    }

    pub fn family(&self, name: &str) -> &Family {
        self.families
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no family {name} in {:#?}", self.names()))
    }

    fn names(&self) -> Vec<&str> {
        self.families.iter().map(|f| f.name.as_str()).collect()
    }

    /// Every sample of every family.
    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.families.iter().flat_map(|f| &f.samples)
    }

    /// The samples named `name` (a sample name: `…_total`, `…_bucket`, a gauge's name).
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> {
        self.samples().filter(move |s| s.name == name)
    }

    /// The value of the one sample with exactly these labels.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let wanted = label_map(labels);
        let found: Vec<&Sample> = self.named(name).filter(|s| s.labels == wanted).collect();
        match found.as_slice() {
            [one] => one.value,
            _ => panic!(
                "{} samples {name}{wanted:?}; there are {:#?}",
                found.len(),
                self.named(name).collect::<Vec<_>>()
            ),
        }
    }

    /// Whether any sample of `name` carries `label=value`.
    pub fn has_series_with(&self, name: &str, label: &str, value: &str) -> bool {
        self.named(name)
            .any(|s| s.labels.get(label).map(String::as_str) == Some(value))
    }
}

fn label_map(labels: &[(&str, &str)]) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `name{a="x",b="y"} value`, with OpenMetrics escapes in label values.
fn parse_sample(line: &str) -> Sample {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("no value in {line:?}"));
    let name = &line[..name_end];
    assert!(is_metric_name(name), "bad metric name in {line:?}");
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(mut set) = rest.strip_prefix('{') {
        loop {
            if let Some(after) = set.strip_prefix('}') {
                rest = after;
                break;
            }
            let (label, after) = set
                .split_once("=\"")
                .unwrap_or_else(|| panic!("label without quoted value in {line:?}"));
            assert!(is_label_name(label), "bad label name {label:?} in {line:?}");
            let (value, after) = quoted_value(after, line);
            assert!(
                labels.insert(label.to_owned(), value).is_none(),
                "repeated label in {line:?}"
            );
            set = after.strip_prefix(',').unwrap_or(after);
        }
    }
    let value = rest
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("no space before the value in {line:?}"));
    assert!(!value.contains(' '), "timestamp or exemplar in {line:?}");
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("bad value {v:?} in {line:?}")),
    };
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

/// A label value up to its closing quote, unescaped, and what follows the quote.
fn quoted_value<'a>(s: &'a str, line: &str) -> (String, &'a str) {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (value, &s[i + 1..]),
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('n') => value.push('\n'),
                Some(c @ ('"' | '\\')) => value.push(c),
                other => panic!("bad escape {other:?} in {line:?}"),
            },
            c => value.push(c),
        }
    }
    panic!("unterminated label value in {line:?}")
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
fn ready(status: ConditionStatus) -> Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    vec![condition("Ready", status, "Fixture", "fixture", Some(1), ts(NOW))]
}

/// A Certificate whose Secret holds a certificate valid `not_before`..`not_after`, renewed at
/// `renewal`, with Ready `status`.
fn issued(
    mut cert: Certificate,
    not_before: &str,
    not_after: &str,
    renewal: &str,
    status: ConditionStatus,
) -> Certificate {
    cert.status = Some(CertificateStatus {
        conditions: ready(status),
        not_before: Some(Time(ts(not_before))),
        not_after: Some(Time(ts(not_after))),
        renewal_time: Some(Time(ts(renewal))),
        revision: Some(1),
        ..Default::default()
    });
    cert
}

fn ca_status(ca_not_after: &str, status: ConditionStatus) -> Option<IssuerStatus> {
    Some(IssuerStatus {
        conditions: ready(status),
        ca_not_after: Some(Time(ts(ca_not_after))),
        ..Default::default()
    })
}

/// `web`: issued by the Issuer `ca` on 2026-11-01, valid until 2027-01-30, Ready.
fn ready_web() -> Certificate {
    issued(
        testing::certificate("web", "ca", &["web.apps.svc"]),
        "2026-11-01T00:00:00Z",
        "2027-01-30T00:00:00Z",
        "2026-12-31T00:00:00Z",
        ConditionStatus::True,
    )
}

/// Every kind of object and every event the metrics know about:
/// - `web`: issued by the Issuer `ca`, Ready;
/// - `api`: issued by the ClusterIssuer `root`, not Ready (its renewal is overdue);
/// - `pending`: no status yet;
/// - Issuers `ca` (a Ready CA) and `selfsigned` (no status), ClusterIssuer `root` (a CA, not
///   Ready);
/// - one issuance success and one failure, and a success and an error of every controller.
pub(super) fn populated_metrics() -> Metrics {
    let web = ready_web();
    let mut api = testing::certificate("api", "root", &["api.apps.svc"]);
    api.spec.issuer_ref.kind = Some("ClusterIssuer".into());
    let api = issued(
        api,
        "2026-10-01T00:00:00Z",
        "2026-11-26T00:00:00Z",
        "2026-11-07T00:00:00Z",
        ConditionStatus::False,
    );
    let pending = testing::certificate("pending", "ca", &["pending.apps.svc"]);

    let mut ca = testing::ca_issuer("ca", "ca-key-pair");
    ca.status = ca_status("2036-11-01T00:00:00Z", ConditionStatus::True);
    let selfsigned = testing::self_signed_issuer("selfsigned");
    let mut root = testing::ca_cluster_issuer("root", "root-ca");
    root.status = ca_status("2026-12-10T00:00:00Z", ConditionStatus::False);

    let metrics = testing::metrics(vec![web, api, pending], vec![ca, selfsigned], vec![root]);
    metrics.issuance("Issuer", true, Duration::from_millis(250));
    metrics.issuance("ClusterIssuer", false, Duration::from_millis(3));
    for controller in [
        ControllerKind::Certificate,
        ControllerKind::Issuer,
        ControllerKind::ClusterIssuer,
    ] {
        metrics.reconcile(controller, true, Duration::from_millis(40));
        metrics.reconcile(controller, false, Duration::from_millis(2));
    }
    metrics
}

fn scrape(metrics: &Metrics) -> Exposition {
    Exposition::parse(&metrics.encode().unwrap())
}

fn unix(s: &str) -> f64 {
    ts(s).as_second() as f64
}

const CERTIFICATE_LABELS: [&str; 4] = ["namespace", "name", "issuer_name", "issuer_kind"];

/// The label names of every sample named `name`, which must all carry the same set.
fn label_names(exposition: &Exposition, name: &str) -> BTreeSet<String> {
    let sets: BTreeSet<BTreeSet<String>> = exposition
        .named(name)
        .map(|s| s.labels.keys().cloned().collect())
        .collect();
    assert_eq!(
        sets.len(),
        1,
        "samples of {name} carry different label sets: {sets:?}"
    );
    sets.into_iter().next().unwrap()
}

fn names(labels: &[&str]) -> BTreeSet<String> {
    labels.iter().map(|l| l.to_string()).collect()
}

#[test]
fn exposition_is_openmetrics_text_ending_in_eof() {
    let text = populated_metrics().encode().unwrap();
    assert!(text.ends_with("\n# EOF\n"), "{text}");
    assert_eq!(text.matches("# EOF").count(), 1);
    // Parsing checks every line; a family per SPEC metric must be there.
    let exposition = Exposition::parse(&text);
    assert!(exposition.families.len() >= 12, "{:#?}", exposition.names());
}

#[test]
fn every_spec_metric_is_declared_with_its_type_and_unit() {
    let exposition = scrape(&populated_metrics());
    let expected = [
        (
            "certkeeper_certificate_expiration_timestamp_seconds",
            "gauge",
            Some("seconds"),
        ),
        (
            "certkeeper_certificate_not_before_timestamp_seconds",
            "gauge",
            Some("seconds"),
        ),
        (
            "certkeeper_certificate_renewal_timestamp_seconds",
            "gauge",
            Some("seconds"),
        ),
        ("certkeeper_certificate_ready_status", "gauge", None),
        ("certkeeper_issuer_ready_status", "gauge", None),
        (
            "certkeeper_ca_expiration_timestamp_seconds",
            "gauge",
            Some("seconds"),
        ),
        ("certkeeper_clock_time_seconds", "gauge", Some("seconds")),
        // OpenMetrics names a counter family without `_total`; its samples carry it.
        ("certkeeper_issuance", "counter", None),
        (
            "certkeeper_issuance_duration_seconds",
            "histogram",
            Some("seconds"),
        ),
        ("certkeeper_reconcile", "counter", None),
        (
            "certkeeper_reconcile_duration_seconds",
            "histogram",
            Some("seconds"),
        ),
    ];
    for (name, kind, unit) in expected {
        let family = exposition.family(name);
        assert_eq!(family.kind, kind, "TYPE of {name}");
        assert_eq!(family.unit.as_deref(), unit, "UNIT of {name}");
        assert!(!family.samples.is_empty(), "{name} has no samples");
    }
    assert!(exposition.named("certkeeper_issuance_total").next().is_some());
    assert!(exposition.named("certkeeper_reconcile_total").next().is_some());
}

#[test]
fn certificate_time_series_carry_namespace_name_and_issuer() {
    let exposition = scrape(&populated_metrics());
    let web = [
        ("namespace", NAMESPACE),
        ("name", "web"),
        ("issuer_name", "ca"),
        ("issuer_kind", "Issuer"),
    ];
    let api = [
        ("namespace", NAMESPACE),
        ("name", "api"),
        ("issuer_name", "root"),
        ("issuer_kind", "ClusterIssuer"),
    ];
    for name in [
        "certkeeper_certificate_expiration_timestamp_seconds",
        "certkeeper_certificate_not_before_timestamp_seconds",
        "certkeeper_certificate_renewal_timestamp_seconds",
    ] {
        assert_eq!(
            label_names(&exposition, name),
            names(&CERTIFICATE_LABELS),
            "{name}"
        );
    }
    let expiration = "certkeeper_certificate_expiration_timestamp_seconds";
    assert_eq!(exposition.value(expiration, &web), unix("2027-01-30T00:00:00Z"));
    // Whole Unix seconds, not milliseconds: 2027-01-30T00:00:00Z.
    assert_eq!(exposition.value(expiration, &web), 1_801_267_200.0);
    assert_eq!(exposition.value(expiration, &api), unix("2026-11-26T00:00:00Z"));
    let not_before = "certkeeper_certificate_not_before_timestamp_seconds";
    assert_eq!(exposition.value(not_before, &web), unix("2026-11-01T00:00:00Z"));
    assert_eq!(exposition.value(not_before, &api), unix("2026-10-01T00:00:00Z"));
    let renewal = "certkeeper_certificate_renewal_timestamp_seconds";
    assert_eq!(exposition.value(renewal, &web), unix("2026-12-31T00:00:00Z"));
    assert_eq!(exposition.value(renewal, &api), unix("2026-11-07T00:00:00Z"));
}

#[test]
fn certificate_without_status_has_no_time_series() {
    let exposition = scrape(&populated_metrics());
    for name in [
        "certkeeper_certificate_expiration_timestamp_seconds",
        "certkeeper_certificate_not_before_timestamp_seconds",
        "certkeeper_certificate_renewal_timestamp_seconds",
    ] {
        assert_eq!(exposition.named(name).count(), 2, "{name}: web and api only");
        assert!(!exposition.has_series_with(name, "name", "pending"), "{name}");
    }
}

/// A ready-status metric of one object: 1 for its `current` condition, 0 for the other two.
fn assert_one_hot(exposition: &Exposition, metric: &str, object: &[(&str, &str)], current: &str) {
    for condition in ["True", "False", "Unknown"] {
        let mut labels = object.to_vec();
        labels.push(("condition", condition));
        let expected = if condition == current { 1.0 } else { 0.0 };
        assert_eq!(
            exposition.value(metric, &labels),
            expected,
            "{object:?} {condition}"
        );
    }
}

#[test]
fn certificate_ready_status_is_one_for_the_current_condition_only() {
    let exposition = scrape(&populated_metrics());
    let ready = "certkeeper_certificate_ready_status";
    let mut with_condition = CERTIFICATE_LABELS.to_vec();
    with_condition.push("condition");
    assert_eq!(label_names(&exposition, ready), names(&with_condition));
    let cases = [
        ("web", "ca", "Issuer", "True"),
        ("api", "root", "ClusterIssuer", "False"),
        // No status yet: Unknown.
        ("pending", "ca", "Issuer", "Unknown"),
    ];
    for (name, issuer, kind, current) in cases {
        let object = [
            ("namespace", NAMESPACE),
            ("name", name),
            ("issuer_name", issuer),
            ("issuer_kind", kind),
        ];
        assert_one_hot(&exposition, ready, &object, current);
    }
    assert_eq!(exposition.named(ready).count(), 9, "three series per Certificate");
}

#[test]
fn issuer_ready_status_covers_issuers_and_cluster_issuers() {
    let exposition = scrape(&populated_metrics());
    let ready = "certkeeper_issuer_ready_status";
    assert_eq!(
        label_names(&exposition, ready),
        names(&["namespace", "name", "kind", "condition"])
    );
    let cases = [
        (NAMESPACE, "ca", "Issuer", "True"),
        (NAMESPACE, "selfsigned", "Issuer", "Unknown"),
        // A ClusterIssuer has no namespace: an empty label, which Prometheus treats as absent.
        ("", "root", "ClusterIssuer", "False"),
    ];
    for (namespace, name, kind, current) in cases {
        let object = [("namespace", namespace), ("name", name), ("kind", kind)];
        assert_one_hot(&exposition, ready, &object, current);
    }
    assert_eq!(exposition.named(ready).count(), 9);
}

#[test]
fn ca_expiration_is_the_issuers_ca_not_after() {
    let exposition = scrape(&populated_metrics());
    let ca = "certkeeper_ca_expiration_timestamp_seconds";
    assert_eq!(
        label_names(&exposition, ca),
        names(&["namespace", "name", "kind"])
    );
    let issuer = [("namespace", NAMESPACE), ("name", "ca"), ("kind", "Issuer")];
    assert_eq!(exposition.value(ca, &issuer), unix("2036-11-01T00:00:00Z"));
    let cluster_issuer = [("namespace", ""), ("name", "root"), ("kind", "ClusterIssuer")];
    assert_eq!(
        exposition.value(ca, &cluster_issuer),
        unix("2026-12-10T00:00:00Z")
    );
    // The self-signed issuer has no CA of its own.
    assert!(!exposition.has_series_with(ca, "name", "selfsigned"));
}

#[test]
fn clock_time_is_the_controllers_clock() {
    let exposition = scrape(&populated_metrics());
    assert_eq!(exposition.value("certkeeper_clock_time_seconds", &[]), unix(NOW));
}

#[test]
fn issuance_is_counted_by_issuer_kind_and_result() {
    let exposition = scrape(&populated_metrics());
    let total = "certkeeper_issuance_total";
    assert_eq!(label_names(&exposition, total), names(&["issuer_kind", "result"]));
    let count = |kind, result| exposition.value(total, &[("issuer_kind", kind), ("result", result)]);
    assert_eq!(count("Issuer", "success"), 1.0);
    assert_eq!(count("Issuer", "failure"), 0.0);
    assert_eq!(count("ClusterIssuer", "success"), 0.0);
    assert_eq!(count("ClusterIssuer", "failure"), 1.0);
}

#[test]
fn issuance_duration_times_successful_issuances() {
    let exposition = scrape(&populated_metrics());
    let name = "certkeeper_issuance_duration_seconds";
    // One histogram for all issuers: no labels but the buckets' `le`.
    assert_eq!(
        label_names(&exposition, &format!("{name}_bucket")),
        names(&["le"])
    );
    assert_eq!(
        exposition.value(&format!("{name}_count"), &[]),
        1.0,
        "the failure is not timed"
    );
    assert_eq!(exposition.value(&format!("{name}_sum"), &[]), 0.25);
    for bucket in exposition.named(&format!("{name}_bucket")) {
        let le: f64 = match bucket.labels["le"].as_str() {
            "+Inf" => f64::INFINITY,
            le => le.parse().unwrap(),
        };
        let expected = if le >= 0.25 { 1.0 } else { 0.0 };
        assert_eq!(bucket.value, expected, "bucket le={le}");
    }
    assert!(exposition.has_series_with(&format!("{name}_bucket"), "le", "+Inf"));
}

#[test]
fn reconciles_are_counted_and_timed_by_controller() {
    let metrics = testing::metrics(Vec::new(), Vec::new(), Vec::new());
    metrics.reconcile(ControllerKind::Certificate, true, Duration::from_millis(40));
    metrics.reconcile(ControllerKind::Certificate, true, Duration::from_millis(60));
    metrics.reconcile(ControllerKind::ClusterIssuer, false, Duration::from_millis(5));
    let exposition = scrape(&metrics);
    let total = "certkeeper_reconcile_total";
    assert_eq!(label_names(&exposition, total), names(&["controller", "result"]));
    let count =
        |controller, result| exposition.value(total, &[("controller", controller), ("result", result)]);
    assert_eq!(count("certificate", "success"), 2.0);
    assert_eq!(count("certificate", "error"), 0.0);
    assert_eq!(count("clusterissuer", "error"), 1.0);
    assert_eq!(count("issuer", "success"), 0.0);

    let duration = "certkeeper_reconcile_duration_seconds";
    assert_eq!(
        label_names(&exposition, &format!("{duration}_bucket")),
        names(&["controller", "le"])
    );
    let certificate = [("controller", "certificate")];
    assert_eq!(exposition.value(&format!("{duration}_count"), &certificate), 2.0);
    assert!((exposition.value(&format!("{duration}_sum"), &certificate) - 0.1).abs() < 1e-9);
    // Errors are timed too.
    assert_eq!(
        exposition.value(&format!("{duration}_count"), &[("controller", "clusterissuer")]),
        1.0
    );
}

#[test]
fn counters_start_at_zero_so_the_first_failure_shows_as_an_increase() {
    let exposition = scrape(&testing::metrics(Vec::new(), Vec::new(), Vec::new()));
    for kind in ["Issuer", "ClusterIssuer"] {
        for result in ["success", "failure"] {
            let labels = [("issuer_kind", kind), ("result", result)];
            assert_eq!(
                exposition.value("certkeeper_issuance_total", &labels),
                0.0,
                "{kind} {result}"
            );
        }
    }
    for controller in ["certificate", "issuer", "clusterissuer"] {
        for result in ["success", "error"] {
            let labels = [("controller", controller), ("result", result)];
            assert_eq!(
                exposition.value("certkeeper_reconcile_total", &labels),
                0.0,
                "{controller} {result}"
            );
        }
    }
}

/// Feeds a reflector cache as the watcher would.
fn apply<K: Resource<DynamicType = ()> + Clone>(writer: &mut Writer<DeserializeGuard<K>>, object: K)
where
    DeserializeGuard<K>: Resource<DynamicType = ()> + Clone,
{
    writer.apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(object))));
}

fn delete<K: Resource<DynamicType = ()> + Clone>(writer: &mut Writer<DeserializeGuard<K>>, object: K)
where
    DeserializeGuard<K>: Resource<DynamicType = ()> + Clone,
{
    writer.apply_watcher_event(&watcher::Event::Delete(DeserializeGuard(Ok(object))));
}

/// Feeds the certificate controller's cache as its watcher would.
fn apply_certificate(writer: &mut Writer<CachedCertificate>, certificate: Certificate) {
    writer.apply_watcher_event(&watcher::Event::Apply(certificate.into()));
}

fn delete_certificate(writer: &mut Writer<CachedCertificate>, certificate: Certificate) {
    writer.apply_watcher_event(&watcher::Event::Delete(certificate.into()));
}

/// Metrics reading caches that the returned writers fill.
struct WatchedCaches {
    certificates: Writer<CachedCertificate>,
    issuers: Writer<DeserializeGuard<crate::api::Issuer>>,
    cluster_issuers: Writer<DeserializeGuard<crate::api::ClusterIssuer>>,
    metrics: Metrics,
}

fn watched_caches() -> WatchedCaches {
    let certificates = Writer::default();
    let issuers = Writer::default();
    let cluster_issuers = Writer::default();
    let metrics = Metrics::new(Caches {
        certificates: certificates.as_reader(),
        issuers: issuers.as_reader(),
        cluster_issuers: cluster_issuers.as_reader(),
        revocations: Writer::default().as_reader(),
        cluster_resource_namespace: String::new(),
        clock: Arc::new(|| ts(NOW)),
    });
    WatchedCaches {
        certificates,
        issuers,
        cluster_issuers,
        metrics,
    }
}

/// Every sample that names `name` in its `name` label.
fn series_of(exposition: &Exposition, name: &str) -> Vec<String> {
    exposition
        .samples()
        .filter(|s| s.labels.get("name").map(String::as_str) == Some(name))
        .map(|s| format!("{}{:?}", s.name, s.labels))
        .collect()
}

#[test]
fn series_of_a_deleted_certificate_disappear() {
    let mut watched = watched_caches();
    let web = ready_web();
    let other = testing::certificate("other", "ca", &["other.apps.svc"]);
    apply_certificate(&mut watched.certificates, web.clone());
    apply_certificate(&mut watched.certificates, other);
    // Three times and three Ready conditions.
    assert_eq!(series_of(&scrape(&watched.metrics), "web").len(), 6);

    delete_certificate(&mut watched.certificates, web);
    let exposition = scrape(&watched.metrics);
    assert_eq!(series_of(&exposition, "web"), Vec::<String>::new());
    assert_eq!(
        series_of(&exposition, "other").len(),
        3,
        "the other Certificate stays"
    );
}

#[test]
fn series_of_deleted_issuers_disappear() {
    let mut watched = watched_caches();
    let mut ca = testing::ca_issuer("ca", "ca-key-pair");
    ca.status = ca_status("2036-11-01T00:00:00Z", ConditionStatus::True);
    let mut root = testing::ca_cluster_issuer("root", "root-ca");
    root.status = ca_status("2031-01-01T00:00:00Z", ConditionStatus::True);
    apply(&mut watched.issuers, ca.clone());
    apply(&mut watched.cluster_issuers, root.clone());
    let exposition = scrape(&watched.metrics);
    // Three Ready conditions, the CA's expiry and the revoked serials (none) each.
    assert_eq!(series_of(&exposition, "ca").len(), 5);
    assert_eq!(series_of(&exposition, "root").len(), 5);
    assert!(
        series_of(&exposition, "ca")
            .iter()
            .any(|s| s.starts_with("certkeeper_revoked_certificates{"))
    );

    delete(&mut watched.issuers, ca);
    delete(&mut watched.cluster_issuers, root);
    let exposition = scrape(&watched.metrics);
    assert_eq!(series_of(&exposition, "ca"), Vec::<String>::new());
    assert_eq!(series_of(&exposition, "root"), Vec::<String>::new());
    // The families stay declared, empty.
    assert!(
        exposition
            .family("certkeeper_issuer_ready_status")
            .samples
            .is_empty()
    );
}

#[test]
fn an_unreadable_certificate_counts_as_not_ready() {
    let mut caches = watched_caches();
    let invalid: DeserializeGuard<Certificate> = serde_json::from_value(serde_json::json!({
        "apiVersion": "certkeeper.io/v1", "kind": "Certificate",
        "metadata": {"name": "broken", "namespace": "apps"},
        "spec": {"secretName": 42},
    }))
    .unwrap();
    assert!(invalid.0.is_err());
    caches
        .certificates
        .apply_watcher_event(&watcher::Event::Apply(CachedCertificate::from(invalid)));
    let exposition = scrape(&caches.metrics);
    let object = [
        ("namespace", "apps"),
        ("name", "broken"),
        ("issuer_name", ""),
        ("issuer_kind", ""),
    ];
    assert_one_hot(
        &exposition,
        "certkeeper_certificate_ready_status",
        &object,
        "False",
    );
}

#[test]
fn revoked_certificates_counts_each_ca_issuers_distinct_revoked_serials() {
    let record = |name: &str, namespace: &str, kind: &str, issuer: &str, serial: &str| {
        let mut r = crate::api::CertificateRevocation::new(
            name,
            crate::api::CertificateRevocationSpec {
                issuer_ref: crate::api::IssuerRef {
                    name: issuer.into(),
                    kind: Some(kind.into()),
                    group: None,
                },
                serial_number: serial.into(),
                reason: None,
                revoked_at: Some(Time(ts(NOW))),
            },
        );
        r.metadata.namespace = Some(namespace.into());
        r
    };
    let metrics = Metrics::new(Caches {
        certificates: testing::cached_store(Vec::new()),
        issuers: testing::store(vec![
            testing::ca_issuer("ca", "ca-key-pair"),
            testing::self_signed_issuer("self"),
        ]),
        cluster_issuers: testing::store(vec![testing::ca_cluster_issuer("root", "root-ca")]),
        revocations: testing::store(vec![
            record("a", NAMESPACE, "Issuer", "ca", "0a"),
            // The same serial twice is one revoked certificate.
            record("a-again", NAMESPACE, "Issuer", "ca", "0A"),
            record("b", NAMESPACE, "Issuer", "ca", "0b"),
            record(
                "c",
                testing::CLUSTER_RESOURCE_NAMESPACE,
                "ClusterIssuer",
                "root",
                "0c",
            ),
            // Not where a ClusterIssuer's records live: not counted.
            record("d", NAMESPACE, "ClusterIssuer", "root", "0d"),
        ]),
        cluster_resource_namespace: testing::CLUSTER_RESOURCE_NAMESPACE.into(),
        clock: Arc::new(|| ts(NOW)),
    });
    let exposition = scrape(&metrics);
    let counts: BTreeMap<(String, String), f64> = exposition
        .named("certkeeper_revoked_certificates")
        .map(|s| ((s.labels["kind"].clone(), s.labels["name"].clone()), s.value))
        .collect();
    assert_eq!(
        counts,
        BTreeMap::from([
            (("ClusterIssuer".to_owned(), "root".to_owned()), 1.0),
            (("Issuer".to_owned(), "ca".to_owned()), 2.0),
        ]),
        "one series per CA issuer, none for a selfSigned one"
    );
}

#[test]
fn rotation_phase_is_one_hot_for_each_ca_issuer_with_trust_anchors() {
    use crate::api::{Rotation, RotationPhase, TrustAnchor};
    let anchor = TrustAnchor {
        fingerprint_sha256: "AB".into(),
        certificate: "pem".into(),
        ..Default::default()
    };
    let mut rotating = testing::ca_issuer("rotating", "ca-key-pair");
    rotating.status = ca_status("2036-11-01T00:00:00Z", ConditionStatus::True);
    if let Some(status) = rotating.status.as_mut() {
        status.trust_anchors = vec![anchor.clone()];
        status.rotation = Some(Rotation {
            phase: RotationPhase::Reissuing,
            started_at: Time(ts(NOW)),
            phase_started_at: Time(ts(NOW)),
            trust_distributed_at: None,
            previous_fingerprint_sha256: None,
            ca_fingerprint_sha256: "CD".into(),
            left_out: Vec::new(),
        });
    }
    let mut settled = testing::ca_cluster_issuer("root", "root-ca");
    settled.status = ca_status("2036-11-01T00:00:00Z", ConditionStatus::True);
    if let Some(status) = settled.status.as_mut() {
        status.trust_anchors = vec![anchor];
    }
    let selfsigned = testing::self_signed_issuer("selfsigned");
    let metrics = testing::metrics(vec![], vec![rotating, selfsigned], vec![settled]);
    let exposition = scrape(&metrics);
    let phase = "certkeeper_issuer_rotation_phase";
    assert_eq!(
        label_names(&exposition, phase),
        names(&["namespace", "name", "kind", "phase"])
    );
    let value = |namespace: &str, name: &str, kind: &str, p: &str| {
        exposition.value(
            phase,
            &[
                ("namespace", namespace),
                ("name", name),
                ("kind", kind),
                ("phase", p),
            ],
        )
    };
    for p in ["None", "Distributing", "Reissuing", "Retiring"] {
        let rotating = if p == "Reissuing" { 1.0 } else { 0.0 };
        let settled = if p == "None" { 1.0 } else { 0.0 };
        assert_eq!(value(NAMESPACE, "rotating", "Issuer", p), rotating, "{p}");
        assert_eq!(value("", "root", "ClusterIssuer", p), settled, "{p}");
    }
    // A selfSigned issuer has no root of its own to rotate.
    assert!(!exposition.has_series_with(phase, "name", "selfsigned"));
}

/// The inventory's gauges as a scraper reads them: one series per certificate of each object
/// with the SPEC's labels (a CN cut to 64 characters, quotes escaped), the counts by state and
/// the certificates beyond the 100 of one object; none once the inventory is not observed
/// (a standby replica).
#[test]
fn inventory_series_carry_the_spec_labels_and_counts() {
    use crate::inventory::store::{LABELLED_CONFIGMAPS, TLS_SECRETS};
    use crate::inventory::{self, Inventory, Kind, ManagedBy, Seen};
    let found = Inventory::default();
    let seen = |managed_by| Seen {
        uid: "uid".into(),
        version: "1".into(),
        managed_by,
    };
    // notAfter 2026-11-25: 2 days after NOW, so `expiring`.
    let long_cn = format!("\"quoted\" {}", "x".repeat(100));
    let secret = testing::ca_secret("legacy-tls", NAMESPACE, &long_cn, ts("2026-10-26T00:00:00Z"), 30);
    let object = inventory::key_of(Kind::Secret, &secret);
    found.found(
        &object,
        TLS_SECRETS,
        &seen(ManagedBy::CertManager),
        &inventory::read_secret(&secret),
    );
    let pem = String::from_utf8(secret.data.as_ref().unwrap()["tls.crt"].0.clone()).unwrap();
    let bundle: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "roots", "namespace": NAMESPACE},
        "data": {"bundle.pem": pem.repeat(102), "a-junk.pem": "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"}
    }))
    .unwrap();
    let object = inventory::key_of(Kind::ConfigMap, &bundle);
    found.found(
        &object,
        LABELLED_CONFIGMAPS,
        &seen(ManagedBy::None),
        &inventory::read_configmap(&bundle),
    );

    let metrics = testing::metrics(vec![], vec![], vec![]);
    metrics.observe_inventory(Some(super::metrics::InventoryView {
        inventory: Arc::new(found),
        expiring_within: jiff::SignedDuration::from_hours(168),
    }));
    let exposition = scrape(&metrics);
    let name = "certkeeper_inventory_certificate_expiration_timestamp_seconds";
    let family = exposition.family("certkeeper_inventory_certificate_expiration_timestamp_seconds");
    assert_eq!(
        (family.kind.as_str(), family.unit.as_deref()),
        ("gauge", Some("seconds"))
    );
    assert_eq!(
        label_names(&exposition, name),
        names(&[
            "namespace",
            "kind",
            "name",
            "key",
            "fingerprint",
            "subject_cn",
            "issuer_cn",
            "managed_by"
        ])
    );
    let legacy: Vec<&Sample> = exposition
        .named(name)
        .filter(|s| s.labels["name"] == "legacy-tls")
        .collect();
    assert_eq!(legacy.len(), 2, "tls.crt and ca.crt");
    let cn = &legacy[0].labels["subject_cn"];
    assert_eq!(cn.chars().count(), 64);
    assert!(cn.starts_with("\"quoted\" x"), "{cn}");
    assert_eq!(legacy[0].labels["managed_by"], "cert-manager");
    assert_eq!(legacy[0].labels["kind"], "Secret");
    assert_eq!(legacy[0].value, unix("2026-11-25T00:00:00Z"));
    let roots = exposition
        .named(name)
        .filter(|s| s.labels["name"] == "roots")
        .count();
    // 102 copies of one certificate: 100 read, 2 counted, one series.
    assert_eq!(roots, 1, "the same certificate twice under one key is one series");
    assert_eq!(
        exposition.value("certkeeper_inventory_certificates", &[("state", "expiring")]),
        3.0
    );
    assert_eq!(
        exposition.value("certkeeper_inventory_certificates", &[("state", "unreadable")]),
        1.0
    );
    assert_eq!(
        exposition.value("certkeeper_inventory_certificates", &[("state", "valid")]),
        0.0
    );
    assert_eq!(
        exposition.value("certkeeper_inventory_omitted_certificates", &[]),
        2.0
    );

    metrics.observe_inventory(None);
    let exposition = scrape(&metrics);
    assert_eq!(exposition.named(name).count(), 0);
}
