//! Checks of the install manifests (`manifests/` and `crds/`) with no cluster and no external
//! tool: every document parses into its Kubernetes type without losing a field, the
//! kustomizations list every file, the Deployment is hardened and probed the way the controller
//! serves, and the RBAC grants exactly `access::API_ACCESS`. `manifests/examples/` and
//! `manifests/monitoring/` are separate kustomizations, tested elsewhere.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::Parser;
use k8s_openapi::Resource;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Namespace, PodSpec, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::access::{API_ACCESS, Scope};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const NAMESPACE: &str = "certkeeper-system";
const SERVICE_ACCOUNT: &str = "certkeeper";
/// Subdirectories of manifests/ that are not part of the install.
const NOT_IN_BASE: &[&str] = &["examples", "monitoring"];
const METRICS_PORT_NAME: &str = "http-metrics";
const IMAGE: &str = "ghcr.io/certkeeper/certkeeper";

/// Every kind the install may contain; anything else fails the tests.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "a few dozen objects in a test; boxing only adds noise"
)]
enum Object {
    Namespace(Namespace),
    ServiceAccount(ServiceAccount),
    ClusterRole(ClusterRole),
    ClusterRoleBinding(ClusterRoleBinding),
    Role(Role),
    RoleBinding(RoleBinding),
    Deployment(Deployment),
    Service(Service),
    PodDisruptionBudget(PodDisruptionBudget),
    CustomResourceDefinition(CustomResourceDefinition),
}

/// The subset of a kustomization these manifests use; anything else is refused so that a new
/// field is looked at here first.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Kustomization {
    api_version: String,
    kind: String,
    namespace: Option<String>,
    resources: Vec<String>,
    #[serde(default)]
    images: Vec<KustomizeImage>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KustomizeImage {
    name: String,
    new_name: Option<String>,
    new_tag: Option<String>,
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn kustomization(dir: &str) -> Kustomization {
    let path = Path::new(ROOT).join(dir).join("kustomization.yaml");
    let k: Kustomization =
        serde_yaml::from_str(&read(&path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        k.api_version,
        "kustomize.config.k8s.io/v1beta1",
        "{}",
        path.display()
    );
    assert_eq!(k.kind, "Kustomization", "{}", path.display());
    k
}

/// The YAML files under `dir` except kustomization.yaml, recursively, skipping NOT_IN_BASE.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !NOT_IN_BASE.contains(&name.as_str()) {
                files.extend(yaml_files(&path));
            }
        } else if (name.ends_with(".yaml") || name.ends_with(".yml")) && name != "kustomization.yaml" {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Removes nulls, which a typed round trip drops and which mean "absent" to the API server.
fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

/// The first place where `written` and `parsed` differ, as a JSON path.
fn difference(written: &Value, parsed: &Value, path: &str) -> Option<String> {
    match (written, parsed) {
        (Value::Object(a), Value::Object(b)) => a
            .iter()
            .find_map(|(k, v)| match b.get(k) {
                None => Some(format!("{path}.{k} (unknown field)")),
                Some(w) => difference(v, w, &format!("{path}.{k}")),
            })
            .or_else(|| {
                b.keys()
                    .find(|k| !a.contains_key(*k))
                    .map(|k| format!("{path}.{k} (added)"))
            }),
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (v, w))| difference(v, w, &format!("{path}[{i}]"))),
        _ => (written != parsed).then(|| format!("{path}: {written} became {parsed}")),
    }
}

/// Parses `value` as `T`, refusing it if the round trip loses or changes anything: k8s-openapi
/// ignores unknown fields, so a misspelt field would otherwise pass unnoticed.
fn strictly<T: Resource + DeserializeOwned + serde::Serialize>(value: &Value) -> Result<T, String> {
    let object: T =
        serde_json::from_value(value.clone()).map_err(|e| format!("not a valid {}: {e}", T::KIND))?;
    let parsed = serde_json::to_value(&object).map_err(|e| e.to_string())?;
    match difference(&without_nulls(value.clone()), &parsed, "") {
        Some(at) => Err(format!("{} does not deserialize field {at}", T::KIND)),
        None => Ok(object),
    }
}

fn parse(value: &Value) -> Result<Object, String> {
    Ok(match value["kind"].as_str().unwrap_or_default() {
        "Namespace" => Object::Namespace(strictly(value)?),
        "ServiceAccount" => Object::ServiceAccount(strictly(value)?),
        "ClusterRole" => Object::ClusterRole(strictly(value)?),
        "ClusterRoleBinding" => Object::ClusterRoleBinding(strictly(value)?),
        "Role" => Object::Role(strictly(value)?),
        "RoleBinding" => Object::RoleBinding(strictly(value)?),
        "Deployment" => Object::Deployment(strictly(value)?),
        "Service" => Object::Service(strictly(value)?),
        "PodDisruptionBudget" => Object::PodDisruptionBudget(strictly(value)?),
        "CustomResourceDefinition" => Object::CustomResourceDefinition(strictly(value)?),
        other => return Err(format!("kind {other:?} is not expected in the install manifests")),
    })
}

/// Every document of the install: manifests/ (without NOT_IN_BASE) and crds/.
fn install() -> Vec<Object> {
    let mut files = yaml_files(&Path::new(ROOT).join("manifests"));
    files.extend(yaml_files(&Path::new(ROOT).join("crds")));
    let mut objects = Vec::new();
    for file in files {
        let text = read(&file);
        for (i, document) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let origin = format!("{} document {}", file.display(), i + 1);
            let yaml = serde_yaml::Value::deserialize(document).unwrap_or_else(|e| panic!("{origin}: {e}"));
            if yaml.is_null() {
                continue;
            }
            let json = serde_json::to_value(yaml).unwrap_or_else(|e| panic!("{origin}: {e}"));
            objects.push(parse(&json).unwrap_or_else(|e| panic!("{origin}: {e}")));
        }
    }
    objects
}

fn of_kind<T>(objects: &[Object], pick: impl Fn(&Object) -> Option<&T>) -> Vec<&T> {
    objects.iter().filter_map(pick).collect()
}

fn deployment(objects: &[Object]) -> &Deployment {
    let found = of_kind(objects, |o| match o {
        Object::Deployment(d) => Some(d),
        _ => None,
    });
    assert_eq!(found.len(), 1, "exactly one Deployment");
    found[0]
}

fn pod_spec(deployment: &Deployment) -> &PodSpec {
    deployment.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

fn controller_container(deployment: &Deployment) -> &Container {
    let containers = &pod_spec(deployment).containers;
    assert_eq!(containers.len(), 1, "one container");
    &containers[0]
}

fn pod_labels(deployment: &Deployment) -> std::collections::BTreeMap<String, String> {
    let template = &deployment.spec.as_ref().unwrap().template;
    template.metadata.as_ref().unwrap().labels.clone().unwrap()
}

/// The port `--metrics-bind-address=` names (`:9402` or `host:9402`).
fn metrics_port(container: &Container) -> i32 {
    let args = container.args.as_deref().unwrap_or_default();
    let address = args
        .iter()
        .find_map(|a| a.strip_prefix("--metrics-bind-address="))
        .expect("args set --metrics-bind-address");
    address.rsplit(':').next().unwrap().parse().unwrap()
}

/// Expands RBAC rules into (group, resource, verb), refusing what least privilege rules out.
fn grants(rules: &[PolicyRule], role: &str) -> BTreeSet<(String, String, String)> {
    let mut granted = BTreeSet::new();
    for rule in rules {
        assert!(rule.non_resource_urls.is_none(), "{role}: no non-resource URLs");
        let groups = rule.api_groups.as_deref().unwrap_or_default();
        let resources = rule.resources.as_deref().unwrap_or_default();
        for group in groups {
            for resource in resources {
                for verb in &rule.verbs {
                    assert!(
                        ![group, resource, verb].iter().any(|s| s.contains('*')),
                        "{role}: no wildcards ({group} {resource} {verb})"
                    );
                    let new = granted.insert((group.clone(), resource.clone(), verb.clone()));
                    assert!(new, "{role}: {group} {resource} {verb} granted twice");
                }
            }
        }
    }
    granted
}

fn api_access(scope: Scope) -> BTreeSet<(String, String, String)> {
    API_ACCESS
        .iter()
        .filter(|a| a.scope == scope)
        .map(|a| (a.group.to_owned(), a.resource.to_owned(), a.verb.to_owned()))
        .collect()
}

fn binds_our_service_account(subjects: Option<&Vec<Subject>>, binding: &str) {
    let subjects = subjects.map(Vec::as_slice).unwrap_or_default();
    assert_eq!(subjects.len(), 1, "{binding}: one subject");
    assert_eq!(subjects[0].kind, "ServiceAccount", "{binding}");
    assert_eq!(subjects[0].name, SERVICE_ACCOUNT, "{binding}");
    assert_eq!(subjects[0].namespace.as_deref(), Some(NAMESPACE), "{binding}");
}

#[test]
fn every_document_parses_into_its_kubernetes_type() {
    let objects = install();
    let kinds: BTreeSet<&str> = objects
        .iter()
        .map(|o| match o {
            Object::Namespace(_) => "Namespace",
            Object::ServiceAccount(_) => "ServiceAccount",
            Object::ClusterRole(_) => "ClusterRole",
            Object::ClusterRoleBinding(_) => "ClusterRoleBinding",
            Object::Role(_) => "Role",
            Object::RoleBinding(_) => "RoleBinding",
            Object::Deployment(_) => "Deployment",
            Object::Service(_) => "Service",
            Object::PodDisruptionBudget(_) => "PodDisruptionBudget",
            Object::CustomResourceDefinition(_) => "CustomResourceDefinition",
        })
        .collect();
    // Each kind the install needs is there.
    assert_eq!(kinds.len(), 10, "{kinds:?}");
    let crds = of_kind(&objects, |o| match o {
        Object::CustomResourceDefinition(c) => Some(c),
        _ => None,
    });
    assert_eq!(crds.len(), crate::api::all_crds().len());
}

#[test]
fn the_strict_parse_refuses_misspelt_fields_and_unknown_kinds() {
    let account = serde_json::json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "x"}, "automountServiceAcountToken": true,
    });
    let err = parse(&account).unwrap_err();
    assert!(err.contains(".automountServiceAcountToken"), "{err}");
    let mut deployment = serde_json::to_value(deployment(&install())).unwrap();
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] =
        true.into();
    let err = parse(&deployment).unwrap_err();
    assert!(err.contains("securityContext.readOnlyRootFileSystem"), "{err}");
    let err = parse(&serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap"})).unwrap_err();
    assert!(err.contains("ConfigMap"), "{err}");
}

#[test]
fn namespaced_objects_live_in_the_controllers_namespace() {
    let objects = install();
    let namespaces = of_kind(&objects, |o| match o {
        Object::Namespace(n) => Some(n),
        _ => None,
    });
    assert_eq!(namespaces.len(), 1);
    assert_eq!(namespaces[0].metadata.name.as_deref(), Some(NAMESPACE));
    for object in &objects {
        let meta = match object {
            Object::ServiceAccount(o) => &o.metadata,
            Object::Role(o) => &o.metadata,
            Object::RoleBinding(o) => &o.metadata,
            Object::Deployment(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::PodDisruptionBudget(o) => &o.metadata,
            _ => continue,
        };
        assert_eq!(meta.namespace.as_deref(), Some(NAMESPACE), "{:?}", meta.name);
    }
}

#[test]
fn kustomizations_list_every_file_and_only_the_install() {
    let base = kustomization("manifests");
    assert_eq!(base.namespace.as_deref(), Some(NAMESPACE));
    let manifests = Path::new(ROOT).join("manifests");
    let mut expected: BTreeSet<String> = yaml_files(&manifests)
        .iter()
        .map(|f| f.strip_prefix(&manifests).unwrap().to_string_lossy().into_owned())
        .collect();
    // crds/ is a kustomization of its own: kustomize will not load files outside the root.
    expected.insert("../crds".into());
    let listed: BTreeSet<String> = base.resources.iter().cloned().collect();
    assert_eq!(listed.len(), base.resources.len(), "a resource listed twice");
    assert_eq!(listed, expected);
    for excluded in NOT_IN_BASE {
        assert!(
            !listed.iter().any(|r| r.starts_with(excluded)),
            "{excluded} is not part of the install"
        );
    }

    let crds = kustomization("crds");
    let crd_files: BTreeSet<String> = yaml_files(&Path::new(ROOT).join("crds"))
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(crds.resources.iter().cloned().collect::<BTreeSet<_>>(), crd_files);
}

#[test]
fn the_controller_image_can_be_retagged_by_kustomize() {
    let objects = install();
    let image = controller_container(deployment(&objects)).image.clone().unwrap();
    let (name, tag) = image.rsplit_once(':').unwrap();
    assert_eq!(name, IMAGE);
    assert_eq!(
        tag,
        env!("CARGO_PKG_VERSION"),
        "the manifests install this release"
    );
    let base = kustomization("manifests");
    let entry = base
        .images
        .iter()
        .find(|i| i.name == IMAGE)
        .expect("images: names the controller");
    assert_eq!(entry.new_name, None);
    assert_eq!(entry.new_tag.as_deref(), Some(tag));
}

#[test]
fn deployment_runs_two_leader_elected_replicas_with_json_logs() {
    let objects = install();
    let deployment = deployment(&objects);
    assert_eq!(deployment.spec.as_ref().unwrap().replicas, Some(2));
    let container = controller_container(deployment);
    let args = container.args.clone().unwrap();
    assert_eq!(args.first().map(String::as_str), Some("controller"));
    assert!(args.contains(&"--leader-elect=true".to_owned()), "{args:?}");
    assert!(args.contains(&"--log-format=json".to_owned()), "{args:?}");
    // The Lease identity and namespace come from the downward API.
    let env = container.env.as_deref().unwrap_or_default();
    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let var = env
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("env {name}"));
        let from = var.value_from.as_ref().and_then(|v| v.field_ref.as_ref());
        assert_eq!(from.map(|f| f.field_path.as_str()), Some(field), "{name}");
    }
}

#[test]
fn deployment_args_are_accepted_by_the_cli() {
    let objects = install();
    let args = controller_container(deployment(&objects)).args.clone().unwrap();
    let parsed = crate::cli::Cli::try_parse_from(std::iter::once("certkeeper".to_owned()).chain(args));
    if let Err(e) = parsed {
        panic!("the Deployment's args are refused by `certkeeper`: {e}");
    }
}

#[test]
fn deployment_is_restricted() {
    let objects = install();
    let deployment = deployment(&objects);
    let pod = pod_spec(deployment);
    assert_eq!(pod.service_account_name.as_deref(), Some(SERVICE_ACCOUNT));
    assert_eq!(pod.automount_service_account_token, Some(true));
    assert_eq!(pod.termination_grace_period_seconds, Some(30));
    assert_ne!(pod.host_network, Some(true));
    let pod_security = pod.security_context.as_ref().expect("pod securityContext");
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(pod_security.run_as_user, Some(65532));
    let seccomp = pod_security.seccomp_profile.as_ref().expect("pod seccompProfile");
    assert_eq!(seccomp.type_, "RuntimeDefault");

    let container = controller_container(deployment);
    let security = container
        .security_context
        .as_ref()
        .expect("container securityContext");
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_ne!(security.privileged, Some(true));
    // Set here too, or a container-level value could override the pod's.
    assert_ne!(security.run_as_non_root, Some(false));
    assert!(security.run_as_user.is_none_or(|u| u == 65532));
    assert!(
        security
            .seccomp_profile
            .as_ref()
            .is_none_or(|s| s.type_ == "RuntimeDefault")
    );
    let capabilities = security.capabilities.as_ref().expect("capabilities");
    assert_eq!(capabilities.drop.as_deref(), Some(&["ALL".to_owned()][..]));
    assert!(capabilities.add.as_deref().unwrap_or_default().is_empty());
}

#[test]
fn deployment_requests_resources_without_a_cpu_limit() {
    let objects = install();
    let resources = controller_container(deployment(&objects))
        .resources
        .clone()
        .unwrap();
    let requests = resources.requests.unwrap_or_default();
    let limits = resources.limits.unwrap_or_default();
    assert!(requests.contains_key("cpu") && requests.contains_key("memory"));
    assert!(limits.contains_key("memory"));
    // A CPU limit would throttle key generation bursts for nothing.
    assert!(!limits.contains_key("cpu"));
}

#[test]
fn probes_and_service_point_at_the_metrics_endpoint() {
    let objects = install();
    let deployment = deployment(&objects);
    let container = controller_container(deployment);
    let port = metrics_port(container);
    let ports = container.ports.as_deref().unwrap_or_default();
    let declared = ports
        .iter()
        .find(|p| p.name.as_deref() == Some(METRICS_PORT_NAME))
        .expect("a port named http-metrics");
    assert_eq!(
        declared.container_port, port,
        "the port --metrics-bind-address listens on"
    );
    let points_at_metrics = |target: &IntOrString| match target {
        IntOrString::String(name) => name == METRICS_PORT_NAME,
        IntOrString::Int(n) => *n == port,
    };
    for (probe, path) in [
        (container.liveness_probe.as_ref(), "/healthz"),
        (container.readiness_probe.as_ref(), "/readyz"),
    ] {
        let get = probe
            .and_then(|p| p.http_get.as_ref())
            .unwrap_or_else(|| panic!("{path} probe"));
        assert_eq!(get.path.as_deref(), Some(path));
        assert!(points_at_metrics(&get.port), "{path} probe on the metrics port");
    }

    let services = of_kind(&objects, |o| match o {
        Object::Service(s) => Some(s),
        _ => None,
    });
    assert_eq!(services.len(), 2);
    let service = services
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some("certkeeper-metrics"))
        .expect("Service certkeeper-metrics");
    let spec = service.spec.as_ref().unwrap();
    let labels = pod_labels(deployment);
    let selector = spec.selector.clone().unwrap_or_default();
    assert!(!selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let service_port = &spec.ports.as_ref().unwrap()[0];
    assert_eq!(service_port.port, 9402);
    assert!(points_at_metrics(service_port.target_port.as_ref().unwrap()));

    // The PKI endpoint: --pki-bind-address, its container port, and the certkeeper-pki Service.
    let args = container.args.as_deref().unwrap_or_default();
    let pki_port: i32 = args
        .iter()
        .find_map(|a| a.strip_prefix("--pki-bind-address="))
        .expect("args set --pki-bind-address")
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let declared = ports
        .iter()
        .find(|p| p.name.as_deref() == Some("http-pki"))
        .expect("a port named http-pki");
    assert_eq!(declared.container_port, pki_port);
    let pki = services
        .iter()
        .find(|s| s.metadata.name.as_deref() == Some("certkeeper-pki"))
        .expect("Service certkeeper-pki");
    let spec = pki.spec.as_ref().unwrap();
    let selector = spec.selector.clone().unwrap_or_default();
    assert!(!selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let port = &spec.ports.as_ref().unwrap()[0];
    assert_eq!(port.port, 9403);
    assert_eq!(port.target_port, Some(IntOrString::String("http-pki".into())));
}

#[test]
fn disruption_budget_and_anti_affinity_select_the_controller_pods() {
    let objects = install();
    let deployment = deployment(&objects);
    let labels = pod_labels(deployment);
    let selects_pods = |selector: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>| {
        let wanted = selector.and_then(|s| s.match_labels.clone()).unwrap_or_default();
        !wanted.is_empty() && wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
    };
    assert!(selects_pods(Some(&deployment.spec.as_ref().unwrap().selector)));
    let budgets = of_kind(&objects, |o| match o {
        Object::PodDisruptionBudget(p) => Some(p),
        _ => None,
    });
    assert_eq!(budgets.len(), 1);
    let budget = budgets[0].spec.as_ref().unwrap();
    assert_eq!(budget.min_available, Some(IntOrString::Int(1)));
    assert!(selects_pods(budget.selector.as_ref()));
    let anti_affinity = pod_spec(deployment)
        .affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .expect("pod anti-affinity");
    // Soft: a one-node cluster still runs both replicas.
    assert!(
        anti_affinity
            .required_during_scheduling_ignored_during_execution
            .is_none()
    );
    let preferred = anti_affinity
        .preferred_during_scheduling_ignored_during_execution
        .as_deref()
        .unwrap_or_default();
    assert!(preferred.iter().any(|p| {
        p.pod_affinity_term.topology_key == "kubernetes.io/hostname"
            && selects_pods(p.pod_affinity_term.label_selector.as_ref())
    }));
}

#[test]
fn rbac_grants_exactly_what_the_code_uses() {
    let objects = install();
    let cluster_roles = of_kind(&objects, |o| match o {
        Object::ClusterRole(r) => Some(r),
        _ => None,
    });
    let roles = of_kind(&objects, |o| match o {
        Object::Role(r) => Some(r),
        _ => None,
    });
    assert_eq!(
        (cluster_roles.len(), roles.len()),
        (1, 1),
        "one ClusterRole and one Role"
    );
    let (cluster_role, role) = (cluster_roles[0], roles[0]);
    assert!(cluster_role.aggregation_rule.is_none());
    assert_eq!(
        grants(cluster_role.rules.as_deref().unwrap_or_default(), "ClusterRole"),
        api_access(Scope::Cluster),
        "ClusterRole rules versus access::API_ACCESS (Scope::Cluster)"
    );
    assert_eq!(
        grants(role.rules.as_deref().unwrap_or_default(), "Role"),
        api_access(Scope::OwnNamespace),
        "Role rules versus access::API_ACCESS (Scope::OwnNamespace)"
    );

    let cluster_bindings = of_kind(&objects, |o| match o {
        Object::ClusterRoleBinding(b) => Some(b),
        _ => None,
    });
    assert_eq!(cluster_bindings.len(), 1);
    let binding = cluster_bindings[0];
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(Some(&binding.role_ref.name), cluster_role.metadata.name.as_ref());
    binds_our_service_account(binding.subjects.as_ref(), "ClusterRoleBinding");

    let bindings = of_kind(&objects, |o| match o {
        Object::RoleBinding(b) => Some(b),
        _ => None,
    });
    assert_eq!(bindings.len(), 1);
    let binding = bindings[0];
    assert_eq!(binding.role_ref.kind, "Role");
    assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
    binds_our_service_account(binding.subjects.as_ref(), "RoleBinding");

    let accounts = of_kind(&objects, |o| match o {
        Object::ServiceAccount(a) => Some(a),
        _ => None,
    });
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].metadata.name.as_deref(), Some(SERVICE_ACCOUNT));
}
