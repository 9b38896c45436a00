//! manifests/monitoring against the metrics certkeeper really exports: every alert and dashboard
//! query must parse as PromQL and select only sample names, labels and label values found in the
//! exposition of a fully populated registry, so a renamed metric or label breaks a test here
//! instead of silently emptying an alert.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use promql_parser::label::MatchOp;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{self, Expr, LabelModifier, VectorMatchCardinality, VectorSelector};
use serde::Deserialize;
use serde_json::Value;

use super::metrics_tests::{Exposition, populated_metrics};

const MONITORING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests/monitoring");
const PROMETHEUS_RULE: &str = include_str!("../../manifests/monitoring/prometheusrule.yaml");
const DASHBOARD: &str = include_str!("../../manifests/monitoring/grafana-dashboard.json");
const KUSTOMIZATION: &str = include_str!("../../manifests/monitoring/kustomization.yaml");
const SERVICE_MONITOR: &str = include_str!("../../manifests/monitoring/servicemonitor.yaml");
const METRICS_SERVICE: &str = include_str!("../../manifests/service.yaml");

/// Sample name → label name → the values seen, from the exposition.
struct Exported(BTreeMap<String, BTreeMap<String, BTreeSet<String>>>);

impl Exported {
    fn scrape() -> Self {
        let exposition = Exposition::parse(&populated_metrics().encode().unwrap());
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
    /// that each matcher names one of its labels (and, for `=`, a value it takes).
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
                Some(values) if matches!(matcher.op, MatchOp::Equal) && !values.contains(&matcher.value) => {
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
fn prometheus_rule_alerts_on_expiry_readiness_issuance_failures_and_ca_expiry() {
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

/// `promtool` on the PATH (Debian's `prometheus` package), if any.
fn promtool() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("promtool"))
        .find(|candidate| candidate.is_file())
}

/// The alert rules over an issuer outage, by Prometheus' own rule engine (`promtool test
/// rules`): an Issuer turns NotReady at minute 5 under 100 Certificates, another Issuer stays
/// Ready. Each certificate has 24 h left and renews in 16 h, except `svc-000`, due at minute 60
/// with 4 h left, whose Ready turns False then (it needs renewing and its issuer cannot sign).
/// One issuer alert; no certificate alert until one is due, then alerts for that one only.
#[test]
fn an_issuer_outage_over_a_hundred_certificates_alerts_once_until_one_is_due() {
    let Some(promtool) = promtool() else {
        println!(
            "skipped: promtool not found (Debian package `prometheus`); the alert rules were not evaluated"
        );
        return;
    };
    let rule: serde_yaml::Value = serde_yaml::from_str(PROMETHEUS_RULE).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_yaml::to_string(&rule["spec"]).unwrap(),
    )
    .unwrap();
    let mut series = String::new();
    let mut add = |name: &str, labels: String, values: &str| {
        series.push_str(&format!(
            "  - series: '{name}{{{labels}}}'\n    values: '{values}'\n"
        ));
    };
    for (issuer, ready) in [("ca", "1x4 0x196"), ("other", "1x200")] {
        let labels =
            |condition| format!(r#"namespace="apps",name="{issuer}",kind="Issuer",condition="{condition}""#);
        let not_ready = if issuer == "ca" { "0x4 1x196" } else { "0x200" };
        add("certkeeper_issuer_ready_status", labels("True"), ready);
        add("certkeeper_issuer_ready_status", labels("False"), not_ready);
    }
    for i in 0..100 {
        let cert = format!(r#"namespace="apps",name="svc-{i:03}",issuer_name="ca",issuer_kind="Issuer""#);
        let due = i == 0;
        let (ready, not_ready) = match due {
            true => ("1x60 0x140", "0x60 1x140"),
            false => ("1x200", "0x200"),
        };
        add(
            "certkeeper_certificate_ready_status",
            format!(r#"{cert},condition="True""#),
            ready,
        );
        add(
            "certkeeper_certificate_ready_status",
            format!(r#"{cert},condition="False""#),
            not_ready,
        );
        let (expires, renews) = match due {
            true => (4 * 3600, 3600),
            false => (24 * 3600, 16 * 3600),
        };
        add(
            "certkeeper_certificate_expiration_timestamp_seconds",
            cert.clone(),
            &format!("{expires}x200"),
        );
        add(
            "certkeeper_certificate_renewal_timestamp_seconds",
            cert,
            &format!("{renews}x200"),
        );
    }
    let firing = |at: &str, alerts: &[(&str, &str)]| {
        let samples: String = alerts
            .iter()
            .map(|(alert, name)| {
                format!("      - labels: '{{alertname=\"{alert}\",name=\"{name}\"}}'\n        value: 1\n")
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
    };
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
fn dashboard_shows_expiry_readiness_issuance_reconciles_and_cas() {
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
