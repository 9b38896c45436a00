//! manifests/monitoring against the metrics certkeeper really exports: every alert and dashboard
//! query must parse as PromQL and select only sample names, labels and label values found in the
//! exposition of a fully populated registry, so a renamed metric or label breaks a test here
//! instead of silently emptying an alert.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use promql_parser::label::MatchOp;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{self, Expr, LabelModifier, VectorMatchCardinality, VectorSelector};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde::Deserialize;
use serde_json::{Value, json};

use super::metrics::{InventoryView, Metrics};
use super::metrics_tests::{Exposition, populated_metrics};
use crate::inventory::store::{LABELLED_CONFIGMAPS, TLS_SECRETS};
use crate::inventory::{self, Inventory, Kind, ManagedBy, Seen};
use crate::testing::{ca_secret, ts};

const MONITORING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/monitoring");
const PROMETHEUS_RULE: &str = include_str!("../../manifests/monitoring/prometheusrule.yaml");
const DASHBOARD: &str = include_str!("../../manifests/monitoring/grafana-dashboard.json");
const KUSTOMIZATION: &str = include_str!("../../manifests/monitoring/kustomization.yaml");
const SERVICE_MONITOR: &str = include_str!("../../manifests/monitoring/servicemonitor.yaml");
const METRICS_SERVICE: &str = include_str!("../../manifests/service.yaml");

/// Sample name → label name → the values seen, from the exposition.
struct Exported(BTreeMap<String, BTreeMap<String, BTreeSet<String>>>);

/// `populated_metrics` observing an inventory that holds a certificate in a Secret of each
/// manager's, and a ConfigMap with a certificate and a value that is none.
fn populated_with_inventory() -> Metrics {
    let found = Inventory::default();
    let issued = ts("2026-11-01T00:00:00Z");
    let seen = |managed_by| Seen {
        uid: "uid".into(),
        version: "1".into(),
        managed_by,
    };
    for (name, managed_by) in [
        ("web-tls", ManagedBy::None),
        ("ingress-tls", ManagedBy::CertManager),
        ("api-tls", ManagedBy::Certkeeper),
    ] {
        let secret = ca_secret(name, "apps", &format!("{name}.apps.svc"), issued, 30);
        let object = inventory::key_of(Kind::Secret, &secret);
        found.found(
            &object,
            TLS_SECRETS,
            &seen(managed_by),
            &inventory::read_secret(&secret),
        );
    }
    let ca = ca_secret("trust", "apps", "trust-root", issued, 365);
    let ca_pem = String::from_utf8(ca.data.unwrap()["ca.crt"].0.clone()).unwrap();
    let broken = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
    let bundle: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "trust-bundle", "namespace": "apps"},
        "data": {"ca.crt": ca_pem, "broken.pem": broken}
    }))
    .unwrap();
    let object = inventory::key_of(Kind::ConfigMap, &bundle);
    found.found(
        &object,
        LABELLED_CONFIGMAPS,
        &seen(ManagedBy::None),
        &inventory::read_configmap(&bundle),
    );

    let metrics = populated_metrics();
    metrics.observe_inventory(Some(InventoryView {
        inventory: Arc::new(found),
        expiring_within: jiff::SignedDuration::from_hours(168),
    }));
    metrics
}

impl Exported {
    fn scrape() -> Self {
        let exposition = Exposition::parse(&populated_with_inventory().encode().unwrap());
        let mut samples: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
        for sample in exposition.samples() {
            let labels = samples.entry(sample.name.clone()).or_default();
            for (label, value) in &sample.labels {
                labels.entry(label.clone()).or_default().insert(value.clone());
            }
        }
        Self(samples)
    }
}

/// What is wrong with one query: each selector and label use checked against `exported`.
struct Check<'a> {
    exported: &'a Exported,
    problems: Vec<String>,
}

impl Check<'_> {
    /// The label names the series of `expr` carry; records every problem found on the way.
    fn labels_of(&mut self, expr: &Expr) -> BTreeSet<String> {
        match expr {
            Expr::VectorSelector(vs) => self.selector(vs),
            Expr::MatrixSelector(ms) => self.selector(&ms.vs),
            Expr::Paren(p) => self.labels_of(&p.expr),
            Expr::Unary(u) => self.labels_of(&u.expr),
            Expr::Subquery(s) => self.labels_of(&s.expr),
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => BTreeSet::new(),
            Expr::Aggregate(a) => {
                if let Some(param) = &a.param {
                    self.labels_of(param);
                }
                let inner = self.labels_of(&a.expr);
                match &a.modifier {
                    Some(LabelModifier::Include(by)) => {
                        self.require(&by.labels, &inner, &format!("{} by", a.op));
                        by.labels.iter().cloned().collect()
                    }
                    Some(LabelModifier::Exclude(without)) => inner
                        .into_iter()
                        .filter(|l| !without.labels.contains(l))
                        .collect(),
                    None => BTreeSet::new(),
                }
            }
            Expr::Binary(b) => {
                let lhs = self.labels_of(&b.lhs);
                let rhs = self.labels_of(&b.rhs);
                if let Some(modifier) = &b.modifier {
                    if let Some(LabelModifier::Include(on)) = &modifier.matching {
                        self.require(&on.labels, &lhs, "on (left side)");
                        self.require(&on.labels, &rhs, "on (right side)");
                    }
                    if let VectorMatchCardinality::OneToMany(_) = modifier.card {
                        return rhs;
                    }
                }
                if b.lhs.value_type() == ValueType::Scalar {
                    rhs
                } else if b.op.to_string() == "or" {
                    lhs.union(&rhs).cloned().collect()
                } else {
                    lhs
                }
            }
            Expr::Call(call) => {
                let args: Vec<BTreeSet<String>> = call.args.args.iter().map(|a| self.labels_of(a)).collect();
                match call.func.name {
                    // Its vector is the second argument, and must keep the buckets' `le`.
                    "histogram_quantile" => {
                        let mut buckets = args[1].clone();
                        if !buckets.remove("le") {
                            self.problems
                                .push(format!("histogram_quantile over series without `le`: {expr}"));
                        }
                        buckets
                    }
                    _ => args.into_iter().flatten().collect(),
                }
            }
        }
    }

    /// The labels of the sample `vs` selects, after checking that certkeeper exports it and
    /// that each matcher names one of its labels (and, for `=` and `!=`, a value it takes: a
    /// misspelt `!=` would match everything).
    fn selector(&mut self, vs: &VectorSelector) -> BTreeSet<String> {
        let name = vs.name.clone().or_else(|| {
            vs.matchers
                .matchers
                .iter()
                .find(|m| m.name == "__name__" && matches!(m.op, MatchOp::Equal))
                .map(|m| m.value.clone())
        });
        let Some(name) = name else {
            self.problems.push(format!("{vs} selects no metric by name"));
            return BTreeSet::new();
        };
        let Some(labels) = self.exported.0.get(&name) else {
            self.problems
                .push(format!("{name} is not a sample certkeeper exports"));
            return BTreeSet::new();
        };
        for matcher in vs.matchers.matchers.iter().filter(|m| m.name != "__name__") {
            match labels.get(&matcher.name) {
                None => self
                    .problems
                    .push(format!("{name} has no label {:?}", matcher.name)),
                Some(values)
                    if matches!(matcher.op, MatchOp::Equal | MatchOp::NotEqual)
                        && !values.contains(&matcher.value) =>
                {
                    self.problems.push(format!(
                        "no {name} series has {}={:?}",
                        matcher.name, matcher.value
                    ))
                }
                Some(_) => {}
            }
        }
        assert!(
            vs.matchers.or_matchers.is_empty(),
            "`or` matchers are not checked: {vs}"
        );
        labels.keys().cloned().collect()
    }

    fn require(&mut self, needed: &[String], present: &BTreeSet<String>, context: &str) {
        for label in needed.iter().filter(|l| !present.contains(*l)) {
            self.problems.push(format!(
                "{context} ({label}): no selected series carries {label:?}"
            ));
        }
    }
}

/// Parses `query` and checks it against `exported`: the labels its result carries, or the
/// problems found.
fn check(query: &str, exported: &Exported) -> Result<BTreeSet<String>, String> {
    let expr = parser::parse(query).map_err(|e| format!("not PromQL: {e}\n{query}"))?;
    let mut check = Check {
        exported,
        problems: Vec::new(),
    };
    let labels = check.labels_of(&expr);
    if check.problems.is_empty() {
        Ok(labels)
    } else {
        Err(format!("{query}\n  {}", check.problems.join("\n  ")))
    }
}

/// Replaces Grafana's variables with values Grafana could put there.
fn substitute_grafana_variables(query: &str) -> String {
    let substituted = query
        .replace("$__rate_interval", "2m")
        .replace("$__interval", "1m")
        .replace("$__range", "1d")
        .replace("${namespace}", "apps")
        .replace("$namespace", "apps");
    assert!(!substituted.contains('$'), "unknown Grafana variable in {query}");
    substituted
}

/// The `{{label}}` names a template (legend or alert annotation) refers to.
fn template_labels(template: &str, prefix: &str) -> BTreeSet<String> {
    template
        .split("{{")
        .skip(1)
        .filter_map(|t| t.split("}}").next())
        .flat_map(|inside| inside.split_whitespace())
        .filter_map(|word| word.strip_prefix(prefix))
        .map(|label| label.trim_end_matches(['}', ')']).to_owned())
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PrometheusRule {
    api_version: String,
    kind: String,
    metadata: Metadata,
    spec: RuleSpec,
}

#[derive(Deserialize)]
struct Metadata {
    name: String,
    namespace: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct RuleSpec {
    groups: Vec<RuleGroup>,
}

#[derive(Deserialize)]
struct RuleGroup {
    rules: Vec<Rule>,
}

/// A rule as the Prometheus Operator reads it; an unknown field (a typo) fails the test.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    alert: Option<String>,
    expr: String,
    #[serde(rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

fn prometheus_rule() -> PrometheusRule {
    serde_yaml::from_str(PROMETHEUS_RULE).expect("prometheusrule.yaml is a PrometheusRule")
}

fn alerts() -> Vec<Rule> {
    let rules: Vec<Rule> = prometheus_rule()
        .spec
        .groups
        .into_iter()
        .flat_map(|g| g.rules)
        .collect();
    assert!(
        rules.iter().all(|r| r.alert.is_some()),
        "only alerting rules are expected"
    );
    rules
}

#[test]
fn prometheus_rule_alerts_on_expiry_readiness_issuance_failures_ca_expiry_and_the_inventory() {
    let rule = prometheus_rule();
    assert_eq!(rule.api_version, "monitoring.coreos.com/v1");
    assert_eq!(rule.kind, "PrometheusRule");
    assert_eq!(rule.metadata.name, "certkeeper");
    assert_eq!(rule.metadata.namespace, "certkeeper-system");
    assert!(
        rule.metadata.labels.contains_key("release"),
        "kube-prometheus-stack selects rules by `release`"
    );

    let severities: BTreeMap<String, String> = alerts()
        .into_iter()
        .map(|r| {
            (
                r.alert.unwrap(),
                r.labels.get("severity").cloned().unwrap_or_default(),
            )
        })
        .collect();
    let expected = [
        ("CertificateExpiringSoon", "warning"),
        ("CertificateExpiryCritical", "critical"),
        ("CertificateNotReady", "warning"),
        ("CertificateIssuanceFailing", "warning"),
        ("IssuerNotReady", "warning"),
        ("CAExpiringSoon", "warning"),
        // At the thresholds and severities of the Certificate alerts.
        ("InventoryCertificateExpiringSoon", "warning"),
        ("InventoryCertificateExpiryCritical", "critical"),
        ("InventoryCertificateExpired", "critical"),
        ("InventoryCertificatesUnreadable", "warning"),
    ];
    for (alert, severity) in expected {
        assert_eq!(
            severities.get(alert).map(String::as_str),
            Some(severity),
            "{alert}"
        );
    }
    for (alert, severity) in &severities {
        assert!(
            ["warning", "critical"].contains(&severity.as_str()),
            "{alert}: severity {severity:?}"
        );
    }
}

#[test]
fn alert_expressions_are_promql_over_exported_metrics() {
    let exported = Exported::scrape();
    let problems: Vec<String> = alerts()
        .iter()
        .filter_map(|r| {
            check(&r.expr, &exported)
                .err()
                .map(|e| format!("{}: {e}", r.alert.as_ref().unwrap()))
        })
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_alert_waits_and_names_what_it_alerts_on() {
    let exported = Exported::scrape();
    for rule in alerts() {
        let alert = rule.alert.as_deref().unwrap();
        let duration = rule
            .for_
            .as_deref()
            .unwrap_or_else(|| panic!("{alert} has no `for`"));
        promql_parser::util::parse_duration(duration)
            .unwrap_or_else(|e| panic!("{alert}: for {duration:?}: {e}"));
        let labels = check(&rule.expr, &exported).unwrap();
        for key in ["summary", "description"] {
            let text = rule
                .annotations
                .get(key)
                .unwrap_or_else(|| panic!("{alert} has no {key}"));
            let used = template_labels(text, "$labels.");
            // A label the expression does not keep renders empty.
            let missing: Vec<&String> = used.difference(&labels).collect();
            assert!(
                missing.is_empty(),
                "{alert} {key} uses {missing:?}; the expression keeps {labels:?}"
            );
            if labels.contains("name") {
                assert!(used.contains("name"), "{alert} {key} does not name the object");
            }
        }
    }
}

/// The vector selectors of an expression.
struct Selectors(Vec<VectorSelector>);

impl ExprVisitor for Selectors {
    type Error = std::convert::Infallible;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Self::Error> {
        match expr {
            Expr::VectorSelector(vs) => self.0.push(vs.clone()),
            Expr::MatrixSelector(ms) => self.0.push(ms.vs.clone()),
            _ => {}
        }
        Ok(true)
    }
}

fn selectors(query: &str) -> Vec<VectorSelector> {
    let mut found = Selectors(Vec::new());
    walk_expr(&mut found, &parser::parse(query).unwrap()).unwrap();
    found.0
}

/// An alert over the inventory's certificate series is one per certificate, says where it is
/// found, and leaves out certkeeper's own, whose Certificate alerts already.
#[test]
fn inventory_alerts_name_each_foreign_certificate_and_leave_certkeepers_own_out() {
    let exported = Exported::scrape();
    let per_certificate: Vec<Rule> = alerts()
        .into_iter()
        .filter(|r| {
            selectors(&r.expr).iter().any(|vs| {
                vs.name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("certkeeper_inventory_certificate_"))
            })
        })
        .collect();
    assert_eq!(per_certificate.len(), 3, "expiring soon, critical, expired");
    let where_found = ["namespace", "kind", "name", "key", "subject_cn"];
    for rule in per_certificate {
        let alert = rule.alert.as_deref().unwrap();
        let labels = check(&rule.expr, &exported).unwrap();
        for label in where_found.iter().chain(&["fingerprint"]) {
            assert!(labels.contains(*label), "{alert} drops {label}: {labels:?}");
        }
        let description = template_labels(&rule.annotations["description"], "$labels.");
        for label in where_found {
            assert!(description.contains(label), "{alert} description lacks {label}");
        }
        let leaves_out_certkeeper = selectors(&rule.expr).iter().any(|vs| {
            vs.matchers.matchers.iter().any(|m| {
                m.name == "managed_by" && matches!(m.op, MatchOp::NotEqual) && m.value == "certkeeper"
            })
        });
        assert!(
            leaves_out_certkeeper,
            "{alert} pages for certkeeper's own certificates too"
        );
    }
}

/// `promtool` on the PATH (Debian's `prometheus` package), if any.
fn promtool() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("promtool"))
        .find(|candidate| candidate.is_file())
}

/// One `input_series` entry of a promtool rule test.
fn input_series(name: &str, labels: &str, values: &str) -> String {
    format!("  - series: '{name}{{{labels}}}'\n    values: '{values}'\n")
}

/// A `promql_expr_test` entry: exactly `alerts`, as (alertname, name) with "" for an alert
/// that names no object, are firing at `at`.
fn firing(at: &str, alerts: &[(&str, &str)]) -> String {
    let samples: String = alerts
        .iter()
        .map(|(alert, name)| {
            let name = match *name {
                "" => String::new(),
                name => format!(",name=\"{name}\""),
            };
            format!("      - labels: '{{alertname=\"{alert}\"{name}}}'\n        value: 1\n")
        })
        .collect();
    let samples = if samples.is_empty() {
        "      []\n".to_owned()
    } else {
        samples
    };
    format!(
        "  - expr: 'count by (alertname, name) (ALERTS{{alertstate=\"firing\"}})'\n    eval_time: {at}\n    exp_samples:\n{samples}"
    )
}

/// Runs the shipped rules through Prometheus' own rule engine (`promtool test rules`) over
/// `series`, sampled every minute, checking `tests`. False, and says so, without promtool.
fn promtool_test_rules(series: &str, tests: &str) -> bool {
    let Some(promtool) = promtool() else {
        println!(
            "skipped: promtool not found (Debian package `prometheus`); the alert rules were not evaluated"
        );
        return false;
    };
    let rule: serde_yaml::Value = serde_yaml::from_str(PROMETHEUS_RULE).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_yaml::to_string(&rule["spec"]).unwrap(),
    )
    .unwrap();
    let test = format!(
        "rule_files: [rules.yaml]\nevaluation_interval: 1m\ntests:\n- interval: 1m\n  input_series:\n{series}  promql_expr_test:\n{tests}"
    );
    std::fs::write(dir.path().join("test.yaml"), test).unwrap();
    let output = std::process::Command::new(promtool)
        .args(["test", "rules", "test.yaml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "promtool test rules failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    true
}

/// The alert rules over an issuer outage, by Prometheus' own rule engine (`promtool test
/// rules`): an Issuer turns NotReady at minute 5 under 100 Certificates, another Issuer stays
/// Ready. Each certificate has 24 h left and renews in 16 h, except `svc-000`, due at minute 60
/// with 4 h left, whose Ready turns False then (it needs renewing and its issuer cannot sign).
/// One issuer alert; no certificate alert until one is due, then alerts for that one only.
#[test]
fn an_issuer_outage_over_a_hundred_certificates_alerts_once_until_one_is_due() {
    let mut series = String::new();
    for (issuer, ready) in [("ca", "1x4 0x196"), ("other", "1x200")] {
        let labels =
            |condition| format!(r#"namespace="apps",name="{issuer}",kind="Issuer",condition="{condition}""#);
        let not_ready = if issuer == "ca" { "0x4 1x196" } else { "0x200" };
        series += &input_series("certkeeper_issuer_ready_status", &labels("True"), ready);
        series += &input_series("certkeeper_issuer_ready_status", &labels("False"), not_ready);
    }
    for i in 0..100 {
        let cert = format!(r#"namespace="apps",name="svc-{i:03}",issuer_name="ca",issuer_kind="Issuer""#);
        let due = i == 0;
        let (ready, not_ready) = match due {
            true => ("1x60 0x140", "0x60 1x140"),
            false => ("1x200", "0x200"),
        };
        series += &input_series(
            "certkeeper_certificate_ready_status",
            &format!(r#"{cert},condition="True""#),
            ready,
        );
        series += &input_series(
            "certkeeper_certificate_ready_status",
            &format!(r#"{cert},condition="False""#),
            not_ready,
        );
        let (expires, renews) = match due {
            true => (4 * 3600, 3600),
            false => (24 * 3600, 16 * 3600),
        };
        series += &input_series(
            "certkeeper_certificate_expiration_timestamp_seconds",
            &cert,
            &format!("{expires}x200"),
        );
        series += &input_series(
            "certkeeper_certificate_renewal_timestamp_seconds",
            &cert,
            &format!("{renews}x200"),
        );
    }
    let issuer = ("IssuerNotReady", "ca");
    let due = [
        ("CertificateExpiringSoon", "svc-000"),
        ("CertificateExpiryCritical", "svc-000"),
        ("CertificateNotReady", "svc-000"),
    ];
    let tests = [
        firing("14m", &[]),
        firing("16m", &[issuer]),
        firing("59m", &[issuer]),
        firing("90m", &[&[issuer][..], &due[..]].concat()),
    ]
    .concat();
    promtool_test_rules(&series, &tests);
}

/// The inventory alerts by Prometheus' rule engine, the clock starting at 0: certificates
/// found in Secrets and a ConfigMap, valid from `not_before` to `not_after` seconds. A foreign
/// certificate alerts at each threshold it crosses; certkeeper's own never do (its Certificate
/// alerts), nor does a short-lived one not yet due for renewal. `edge-bundle` expires at
/// minute 30: critical before, expired after. Unreadable values appear at minute 10 and alert
/// an hour later.
#[test]
fn inventory_alerts_fire_for_foreign_certificates_and_never_for_certkeepers_own() {
    const H: i64 = 3600;
    const D: i64 = 24 * H;
    let found = [
        // (kind, name, managed_by, not_before, not_after)
        ("Secret", "web-tls", "none", -60 * D, 3 * D),
        ("Secret", "ingress-tls", "cert-manager", -60 * D, 12 * H),
        ("Secret", "api-tls", "certkeeper", -60 * D, 12 * H),
        ("Secret", "short-tls", "none", -28 * H, 20 * H),
        ("Secret", "old-tls", "none", -366 * D, -D),
        ("Secret", "old-api-tls", "certkeeper", -90 * D, -D),
        ("ConfigMap", "edge-bundle", "none", -90 * D, 30 * 60),
    ];
    let mut series = String::new();
    for (kind, name, managed_by, not_before, not_after) in found {
        let key = if kind == "Secret" { "tls.crt" } else { "ca.crt" };
        let labels = format!(
            r#"namespace="apps",kind="{kind}",name="{name}",key="{key}",fingerprint="{name}-sha256",subject_cn="{name}.apps.svc",issuer_cn="ca",managed_by="{managed_by}""#
        );
        series += &input_series(
            "certkeeper_inventory_certificate_expiration_timestamp_seconds",
            &labels,
            &format!("{not_after}x100"),
        );
        series += &input_series(
            "certkeeper_inventory_certificate_not_before_timestamp_seconds",
            &labels,
            &format!("{not_before}x100"),
        );
    }
    series += &input_series(
        "certkeeper_inventory_certificates",
        r#"state="unreadable""#,
        "0x9 2x90",
    );
    let soon = [
        ("InventoryCertificateExpiringSoon", "web-tls"),
        ("InventoryCertificateExpiringSoon", "ingress-tls"),
        ("InventoryCertificateExpiryCritical", "ingress-tls"),
        ("InventoryCertificateExpired", "old-tls"),
    ];
    let edge_due = [
        ("InventoryCertificateExpiringSoon", "edge-bundle"),
        ("InventoryCertificateExpiryCritical", "edge-bundle"),
    ];
    let edge_expired = [("InventoryCertificateExpired", "edge-bundle")];
    let unreadable = [("InventoryCertificatesUnreadable", "")];
    let tests = [
        firing("4m", &[]),
        firing("16m", &[&soon[..], &edge_due[..]].concat()),
        firing("40m", &[&soon[..], &edge_expired[..]].concat()),
        firing("65m", &[&soon[..], &edge_expired[..]].concat()),
        firing("75m", &[&soon[..], &edge_expired[..], &unreadable[..]].concat()),
    ]
    .concat();
    promtool_test_rules(&series, &tests);
}

/// The dashboard's panels, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(panels: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in panels.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD).expect("grafana-dashboard.json is JSON")
}

#[test]
fn dashboard_queries_are_promql_over_exported_metrics() {
    let exported = Exported::scrape();
    let dashboard = dashboard();
    let mut problems = Vec::new();
    let mut queries = 0;
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let Some(expr) = target["expr"].as_str() else {
                continue;
            };
            queries += 1;
            match check(&substitute_grafana_variables(expr), &exported) {
                Err(e) => problems.push(format!("{title}: {e}")),
                Ok(labels) => {
                    // A legend naming a label the query drops shows an empty name.
                    let legend = target["legendFormat"].as_str().unwrap_or_default();
                    let missing: Vec<String> =
                        template_labels(legend, "").difference(&labels).cloned().collect();
                    if !missing.is_empty() {
                        problems.push(format!(
                            "{title}: legend uses {missing:?}; the query keeps {labels:?}"
                        ));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(queries >= 10, "only {queries} queries found");
}

#[test]
fn dashboard_shows_expiry_readiness_issuance_reconciles_cas_and_the_inventory() {
    let dashboard = dashboard();
    let titles: BTreeSet<&str> = panels(&dashboard)
        .iter()
        .filter_map(|p| p["title"].as_str())
        .collect();
    for title in [
        "Certificates by time until expiry",
        "Not ready certificates",
        "Issuance rate by result",
        "Issuance latency",
        "Reconcile errors by controller",
        "CA certificates by time until expiry",
        "Certificates in the cluster",
    ] {
        assert!(titles.contains(title), "no panel {title:?} in {titles:?}");
    }
    let queries: Vec<&str> = panels(&dashboard)
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str())
        .collect();
    assert!(
        queries.iter().any(|q| q.contains("histogram_quantile(0.99")),
        "no latency quantile"
    );
}

/// Grafana places panels on a 24-column grid; two panels on the same cells hide each other.
#[test]
fn dashboard_panels_have_unique_ids_and_do_not_overlap() {
    let dashboard = dashboard();
    let panels = panels(&dashboard);
    let ids: BTreeSet<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids repeat");
    // Nested panels of a collapsed row have positions of their own; none are used here.
    let top = dashboard["panels"].as_array().unwrap();
    let cells = |p: &Value| {
        let at = |k: &str| p["gridPos"][k].as_u64().unwrap();
        (at("x"), at("y"), at("w"), at("h"))
    };
    for (i, a) in top.iter().enumerate() {
        let (x, y, w, h) = cells(a);
        assert!(x + w <= 24, "{} is wider than the grid", a["title"]);
        for b in &top[i + 1..] {
            let (bx, by, bw, bh) = cells(b);
            let apart = x + w <= bx || bx + bw <= x || y + h <= by || by + bh <= y;
            assert!(apart, "{} and {} overlap", a["title"], b["title"]);
        }
    }
}

/// The inventory's table: one row per certificate found, where it is, who manages it and
/// when it expires, soonest first.
#[test]
fn inventory_table_lists_every_certificate_found_soonest_expiry_first() {
    let dashboard = dashboard();
    let panels = panels(&dashboard);
    let table = panels
        .iter()
        .find(|p| p["title"] == "Certificates in the cluster")
        .unwrap();
    assert_eq!(table["type"], "table");
    let organize = table["transformations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "organize")
        .unwrap();
    let renamed = &organize["options"]["renameByName"];
    let index = &organize["options"]["indexByName"];
    let mut columns: Vec<(u64, &str, &str)> = renamed
        .as_object()
        .unwrap()
        .iter()
        .map(|(field, title)| {
            (
                index[field].as_u64().unwrap(),
                field.as_str(),
                title.as_str().unwrap(),
            )
        })
        .collect();
    columns.sort();
    let titles: Vec<&str> = columns.iter().map(|(_, _, title)| *title).collect();
    assert_eq!(
        titles,
        [
            "Namespace",
            "Kind",
            "Name",
            "Key",
            "Subject CN",
            "Issuer CN",
            "Managed by",
            "Expires at",
            "Expires in"
        ]
    );
    let hidden = &organize["options"]["excludeByName"];
    assert_eq!(
        hidden["fingerprint"], true,
        "grouped by certificate, the fingerprint not shown"
    );

    // "Expires in" is the remaining validity, and sorts the table ascending.
    let field = |title: &str| {
        columns
            .iter()
            .find(|(_, _, t)| *t == title)
            .map(|(_, field, _)| field.strip_prefix("Value #").unwrap())
            .unwrap()
    };
    let query = |ref_id: &str| {
        table["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["refId"] == ref_id)
            .and_then(|t| t["expr"].as_str())
            .unwrap()
    };
    let expires_in = query(field("Expires in"));
    assert!(
        expires_in.contains("certkeeper_inventory_certificate_expiration_timestamp_seconds")
            && expires_in.ends_with("- time())"),
        "{expires_in}"
    );
    assert!(
        query(field("Expires at")).ends_with("* 1000"),
        "Grafana dates are milliseconds"
    );
    let sort = table["transformations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "sortBy")
        .unwrap();
    assert_eq!(
        sort["options"]["sort"],
        json!([{"field": "Expires in", "desc": false}])
    );
    assert_eq!(
        table["options"]["sortBy"],
        json!([{"displayName": "Expires in", "desc": false}])
    );
}

#[test]
fn dashboard_queries_its_datasource_and_namespace_through_variables() {
    let exported = Exported::scrape();
    let dashboard = dashboard();
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no variable {name}"))
    };
    let datasource = variable("datasource");
    assert_eq!(
        (&datasource["type"], &datasource["query"]),
        (&Value::from("datasource"), &Value::from("prometheus"))
    );

    // Every panel and query reads from the chosen datasource.
    for panel in panels(&dashboard) {
        let title = &panel["title"];
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "panel {title}");
        for target in panel["targets"].as_array().into_iter().flatten() {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "a query of {title}");
        }
    }

    // label_values(<selector>, <label>): a Grafana function around a selector.
    let namespace = variable("namespace");
    assert_eq!(namespace["datasource"]["uid"], "${datasource}");
    let query = namespace["query"]["query"]
        .as_str()
        .or(namespace["query"].as_str())
        .unwrap();
    let inner = query
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not label_values(…): {query}"));
    let (selector, label) = inner.rsplit_once(',').unwrap();
    let labels = check(selector.trim(), &exported).unwrap();
    assert!(labels.contains(label.trim()), "{selector} has no label {label}");
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Kustomization {
    namespace: String,
    resources: Vec<String>,
    config_map_generator: Vec<Generator>,
}

#[derive(Deserialize)]
struct Generator {
    name: String,
    files: Vec<String>,
    options: GeneratorOptions,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GeneratorOptions {
    disable_name_suffix_hash: bool,
    labels: BTreeMap<String, String>,
}

#[test]
fn monitoring_kustomization_ships_the_rule_and_the_dashboard_for_grafanas_sidecar() {
    let kustomization: Kustomization = serde_yaml::from_str(KUSTOMIZATION).unwrap();
    assert_eq!(kustomization.namespace, "certkeeper-system");
    assert!(
        kustomization
            .resources
            .contains(&"prometheusrule.yaml".to_owned())
    );
    for resource in &kustomization.resources {
        assert!(
            Path::new(MONITORING).join(resource).is_file(),
            "{resource} is missing"
        );
    }
    let [dashboard] = kustomization.config_map_generator.as_slice() else {
        panic!("one ConfigMap, the dashboard's")
    };
    assert_eq!(dashboard.name, "certkeeper-grafana-dashboard");
    assert_eq!(dashboard.files, ["certkeeper.json=grafana-dashboard.json"]);
    assert!(
        dashboard.options.disable_name_suffix_hash,
        "a stable name, so an update replaces it"
    );
    assert_eq!(
        dashboard
            .options
            .labels
            .get("grafana_dashboard")
            .map(String::as_str),
        Some("1")
    );
}

#[test]
fn service_monitor_scrapes_the_metrics_service_keeping_the_objects_namespace() {
    let monitor: Value = serde_yaml::from_str(SERVICE_MONITOR).unwrap();
    let service: Value = serde_yaml::from_str(METRICS_SERVICE).unwrap();
    let selector = monitor["spec"]["selector"]["matchLabels"].as_object().unwrap();
    for (label, value) in selector {
        assert_eq!(
            &service["metadata"]["labels"][label], value,
            "the Service lacks {label}"
        );
    }
    let port = service["spec"]["ports"][0]["name"].as_str().unwrap();
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], port);
    // The target's namespace label would rename the exported one to exported_namespace.
    let drops_namespace = endpoint["relabelings"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["action"] == "labeldrop" && r["regex"] == "namespace");
    assert!(
        drops_namespace,
        "the target's namespace label must not shadow the exported one"
    );
}

#[test]
fn query_check_rejects_what_certkeeper_does_not_export() {
    let exported = Exported::scrape();
    let rejected = [
        "sum(rate(certkeeper_issuance_total[5m])",
        "certkeeper_certificate_expiration_seconds",
        // A histogram's family name is no sample.
        "certkeeper_issuance_duration_seconds",
        r#"certkeeper_issuance_total{status="failure"}"#,
        r#"certkeeper_issuance_total{result="failed"}"#,
        "sum by (exported_namespace) (certkeeper_certificate_ready_status)",
        "histogram_quantile(0.9, sum by (controller) (rate(certkeeper_reconcile_duration_seconds_bucket[5m])))",
        "certkeeper_certificate_expiration_timestamp_seconds - on (instance) group_left certkeeper_clock_time_seconds",
        r#"certkeeper_inventory_certificates{state="expiring_soon"}"#,
        // A misspelt `!=` would keep every series.
        r#"certkeeper_inventory_certificate_expiration_timestamp_seconds{managed_by!="certkeepr"}"#,
        "min by (namespace, name, issuer_name) (certkeeper_inventory_certificate_expiration_timestamp_seconds)",
    ];
    for query in rejected {
        assert!(check(query, &exported).is_err(), "accepted {query}");
    }
    let accepted = r#"sum by (issuer_kind) (rate(certkeeper_issuance_total{result="failure"}[5m])) > 0"#;
    assert_eq!(
        check(accepted, &exported),
        Ok(BTreeSet::from(["issuer_kind".to_owned()]))
    );
}
