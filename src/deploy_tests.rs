//! Checks of the install manifests (`manifests/` and `crds/`) with no cluster and no external
//! tool: every document parses into its Kubernetes type without losing a field, the
//! kustomizations list every file, the Deployment is hardened and probed the way the controller
//! serves, and the RBAC grants exactly `access::API_ACCESS`. The PKCS#11 component
//! (`manifests/pkcs11/`) is checked against the install it patches, and rendered by kubectl's
//! kustomize when kubectl is on the PATH. `manifests/examples/` and `manifests/monitoring/` are
//! separate kustomizations, tested elsewhere.

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
const NOT_IN_BASE: &[&str] = &["examples", "monitoring", "pkcs11"];
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
    strictly_as(value, T::KIND)
}

/// `strictly` for a part of an object (a patch's PodSpec), named `what` in errors.
fn strictly_as<T: DeserializeOwned + serde::Serialize>(value: &Value, what: &str) -> Result<T, String> {
    let object: T = serde_json::from_value(value.clone()).map_err(|e| format!("not a valid {what}: {e}"))?;
    let parsed = serde_json::to_value(&object).map_err(|e| e.to_string())?;
    match difference(&without_nulls(value.clone()), &parsed, "") {
        Some(at) => Err(format!("{what} does not deserialize field {at}")),
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

// The PKCS#11 component (manifests/pkcs11/): what it adds, checked against the install it patches.

const PKCS11_COMPONENT: &str = "manifests/pkcs11";
/// Files beside the component that it deliberately does not apply.
const PKCS11_EXAMPLES: &[&str] = &["clusterissuer.yaml"];
/// The overlay README "In a cluster" shows, in a directory beside manifests/. It cannot live
/// under manifests/: kustomize refuses a base that contains its overlay.
const PKCS11_OVERLAY: &str = "apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../manifests
components:
  - ../manifests/pkcs11
";
const PIN_KEY: &str = "pin";

/// The subset of a kustomize Component manifests/pkcs11/ uses.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Component {
    api_version: String,
    kind: String,
    resources: Vec<String>,
    config_map_generator: Vec<ConfigMapGenerator>,
    patches: Vec<KustomizePatch>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConfigMapGenerator {
    name: String,
    namespace: Option<String>,
    files: Vec<String>,
    /// Labels only; not checked.
    #[serde(rename = "options")]
    _options: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KustomizePatch {
    path: String,
    target: PatchTarget,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct PatchTarget {
    group: String,
    version: String,
    kind: String,
    name: String,
}

/// One JSON 6902 operation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonPatchOp {
    op: String,
    path: String,
    value: Value,
}

fn pkcs11_text(file: &str) -> String {
    read(&Path::new(ROOT).join(PKCS11_COMPONENT).join(file))
}

fn pkcs11_yaml(file: &str) -> Value {
    serde_yaml::from_str(&pkcs11_text(file)).unwrap_or_else(|e| panic!("{PKCS11_COMPONENT}/{file}: {e}"))
}

fn pkcs11_component() -> Component {
    let component: Component = serde_yaml::from_str(&pkcs11_text("kustomization.yaml"))
        .unwrap_or_else(|e| panic!("{PKCS11_COMPONENT}/kustomization.yaml: {e}"));
    assert_eq!(component.api_version, "kustomize.config.k8s.io/v1alpha1");
    assert_eq!(component.kind, "Component");
    component
}

/// The patch file of the component applied with kustomize's strategic merge, and the JSON 6902 one.
fn pkcs11_patches(component: &Component) -> (&KustomizePatch, &KustomizePatch) {
    assert_eq!(component.patches.len(), 2, "{:?}", component.patches);
    let is_json6902 = |p: &&KustomizePatch| pkcs11_yaml(&p.path).is_array();
    let merge = component
        .patches
        .iter()
        .find(|p| !is_json6902(p))
        .expect("a strategic merge patch");
    let json6902 = component
        .patches
        .iter()
        .find(is_json6902)
        .expect("a JSON 6902 patch");
    (merge, json6902)
}

/// The long name of the controller's flag whose field is `id`, from the CLI's definition.
fn controller_flag(id: &str) -> String {
    use clap::CommandFactory;
    let command = crate::cli::Cli::command();
    let controller = command
        .find_subcommand("controller")
        .expect("controller subcommand");
    let arg = controller
        .get_arguments()
        .find(|a| a.get_id() == id)
        .unwrap_or_else(|| panic!("controller has no argument {id}"));
    format!("--{}", arg.get_long().expect("a long flag"))
}

/// What `certkeeper` makes of a container's args: the controller's arguments.
fn controller_args(args: &[String]) -> crate::cli::ControllerArgs {
    let parsed =
        crate::cli::Cli::try_parse_from(std::iter::once("certkeeper".to_owned()).chain(args.iter().cloned()));
    match parsed
        .unwrap_or_else(|e| panic!("args refused by `certkeeper`: {e}"))
        .command
    {
        crate::cli::Command::Controller(args) => args,
        other => panic!("not the controller: {other:?}"),
    }
}

fn mount_of<'a>(container: &'a Container, volume: &str) -> &'a k8s_openapi::api::core::v1::VolumeMount {
    container
        .volume_mounts
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|m| m.name == volume)
        .unwrap_or_else(|| panic!("container {} does not mount {volume}", container.name))
}

fn env_value<'a>(container: &'a Container, name: &str) -> &'a str {
    container
        .env
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|e| e.name == name)
        .and_then(|e| e.value.as_deref())
        .unwrap_or_else(|| panic!("env {name} in {}", container.name))
}

#[test]
fn pkcs11_component_is_a_component_that_references_every_file() {
    let component = pkcs11_component();
    let dir = Path::new(ROOT).join(PKCS11_COMPONENT);
    let mut present = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        assert!(
            !path.is_dir(),
            "{}: the component has no subdirectories",
            path.display()
        );
        present.insert(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    present.remove("kustomization.yaml");
    let mut referenced: Vec<String> = component.resources.clone();
    referenced.extend(
        component
            .config_map_generator
            .iter()
            .flat_map(|g| g.files.clone()),
    );
    referenced.extend(component.patches.iter().map(|p| p.path.clone()));
    referenced.extend(PKCS11_EXAMPLES.iter().map(|e| (*e).to_owned()));
    let listed: BTreeSet<String> = referenced.iter().cloned().collect();
    assert_eq!(listed.len(), referenced.len(), "a file referenced twice");
    assert_eq!(
        listed, present,
        "every file of {PKCS11_COMPONENT} is used by the component or an example"
    );
    for example in PKCS11_EXAMPLES {
        assert!(
            !component.resources.iter().any(|r| r == example),
            "{example} is an example only"
        );
    }
    // Namespaced like the install, whichever overlay adds it.
    for generator in &component.config_map_generator {
        assert_eq!(
            generator.namespace.as_deref(),
            Some(NAMESPACE),
            "{}",
            generator.name
        );
    }
}

#[test]
fn pkcs11_component_patches_the_install_deployment_and_its_controller() {
    let objects = install();
    let base = deployment(&objects);
    let base_controller = controller_container(base);
    let component = pkcs11_component();
    let (merge, json6902) = pkcs11_patches(&component);
    let target = PatchTarget {
        group: "apps".into(),
        version: "v1".into(),
        kind: Deployment::KIND.into(),
        name: base.metadata.name.clone().unwrap(),
    };
    assert_eq!(merge.target, target);
    assert_eq!(json6902.target, target);

    // The strategic merge patch: a Deployment by the install's name, its controller by name.
    let patch = pkcs11_yaml(&merge.path);
    assert_eq!(patch["apiVersion"], "apps/v1");
    assert_eq!(patch["kind"], Deployment::KIND);
    assert_eq!(patch["metadata"]["name"].as_str(), base.metadata.name.as_deref());
    let pod: PodSpec = strictly_as(&patch["spec"]["template"]["spec"], "PodSpec")
        .unwrap_or_else(|e| panic!("{}: {e}", merge.path));
    assert_eq!(
        pod.containers.len(),
        1,
        "the patch merges into the controller only"
    );
    let controller = &pod.containers[0];
    assert_eq!(
        controller.name, base_controller.name,
        "merged by name into the install's container"
    );
    let init = pod.init_containers.as_deref().unwrap_or_default();
    assert_eq!(init.len(), 1, "one init container");
    let init = &init[0];
    assert!(
        pod_spec(base).init_containers.is_none(),
        "the install has no init container to merge with"
    );
    // The init container is as restricted as the controller.
    assert_eq!(init.security_context, base_controller.security_context);
    assert!(
        init.resources
            .as_ref()
            .is_some_and(|r| r.limits.as_ref().is_some_and(|l| l.contains_key("memory")))
    );

    // The JSON 6902 patch appends the flag to the controller's args.
    let ops: Vec<JsonPatchOp> = serde_json::from_value(pkcs11_yaml(&json6902.path)).unwrap();
    assert_eq!(ops.len(), 1, "{ops:?}");
    assert_eq!(ops[0].op, "add");
    assert_eq!(
        ops[0].path, "/spec/template/spec/containers/0/args/-",
        "appended to containers/0, which is the controller (the install's only container)"
    );
    let flag = ops[0].value.as_str().expect("a string arg");
    let (name, value) = flag
        .split_once('=')
        .expect("--flag=value, as the install writes its args");
    assert_eq!(name, controller_flag("pkcs11_modules"));
    let mut args = base_controller.args.clone().unwrap();
    args.push(flag.to_owned());
    let modules = controller_args(&args).pkcs11_modules;
    assert_eq!(modules.len(), 1, "{value}");
    let (module, library) = &modules[0];
    assert_eq!(module, "hsm");

    // The library: copied by the init container into an emptyDir the controller mounts
    // read-only at the directory the flag names.
    let volume = |name: &str| {
        pod.volumes
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("volume {name}"))
            .clone()
    };
    let library_dir = library.parent().unwrap();
    let lib_mount = controller
        .volume_mounts
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|m| Path::new(&m.mount_path) == library_dir)
        .unwrap_or_else(|| panic!("nothing mounted at {}", library_dir.display()));
    assert_eq!(
        lib_mount.read_only,
        Some(true),
        "the controller cannot change its module"
    );
    assert!(volume(&lib_mount.name).empty_dir.is_some());
    let init_mount = mount_of(init, &lib_mount.name);
    assert_ne!(init_mount.read_only, Some(true));
    let command = init.command.as_deref().unwrap_or_default();
    assert_eq!(
        command.last().map(Path::new),
        Some(
            Path::new(&init_mount.mount_path)
                .join(library.file_name().unwrap())
                .as_path()
        ),
        "the init container copies the library where the flag finds it: {command:?}"
    );
    assert!(
        init.image.as_deref().is_some_and(|i| i.contains("replace")),
        "a placeholder image, marked"
    );

    // The configuration: the generated ConfigMap mounted read-only, the variable pointing at a
    // file in it. SoftHSM2's variable is the example; other modules name theirs.
    assert_eq!(component.config_map_generator.len(), 1);
    let generator = &component.config_map_generator[0];
    let config = pod
        .volumes
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|v| v.config_map.as_ref().is_some_and(|c| c.name == generator.name))
        .expect("a volume of the generated ConfigMap");
    let config_mount = mount_of(controller, &config.name);
    assert_eq!(config_mount.read_only, Some(true));
    let conf = Path::new(env_value(controller, "SOFTHSM2_CONF"));
    assert_eq!(conf.parent(), Some(Path::new(&config_mount.mount_path)));
    let conf_file = conf.file_name().unwrap().to_string_lossy();
    assert!(
        generator.files.iter().any(|f| *f == conf_file),
        "{conf_file} is in the ConfigMap"
    );

    // Every mount is of a volume the patch declares, none the install already has, and the
    // install's mounts and env stay (the patch adds names of its own).
    for mount in init
        .volume_mounts
        .iter()
        .chain(&controller.volume_mounts)
        .flatten()
    {
        volume(&mount.name);
    }
    let base_volumes = pod_spec(base).volumes.as_deref().unwrap_or_default();
    for added in pod.volumes.as_deref().unwrap_or_default() {
        assert!(
            !base_volumes.iter().any(|v| v.name == added.name),
            "{} already exists",
            added.name
        );
    }
    for var in controller.env.as_deref().unwrap_or_default() {
        let base_env = base_controller.env.as_deref().unwrap_or_default();
        assert!(
            !base_env.iter().any(|e| e.name == var.name),
            "env {} would replace the install's",
            var.name
        );
    }
}

#[test]
fn pkcs11_pin_secret_is_a_data_less_placeholder_named_by_the_example_issuer() {
    let component = pkcs11_component();
    let secret_file = component
        .resources
        .iter()
        .find(|r| pkcs11_yaml(r)["kind"] == "Secret")
        .expect("a Secret among the component's resources");
    let secret: k8s_openapi::api::core::v1::Secret =
        strictly(&pkcs11_yaml(secret_file)).unwrap_or_else(|e| panic!("{secret_file}: {e}"));
    // Beside the CA Secret of a ClusterIssuer: the controller's namespace, by default its
    // --cluster-resource-namespace.
    assert_eq!(secret.metadata.namespace.as_deref(), Some(NAMESPACE));
    // No data: applying the component again must never overwrite the real PIN, made out of band.
    assert!(
        secret.data.is_none() && secret.string_data.is_none(),
        "{secret_file} holds no PIN"
    );
    assert!(pkcs11_text(secret_file).contains("out of band"));

    let value = pkcs11_yaml("clusterissuer.yaml");
    let issuer: crate::api::ClusterIssuer = serde_json::from_value(value.clone()).unwrap();
    assert_eq!(
        crate::testing::to_json(&issuer),
        value,
        "a field the type does not know"
    );
    let pkcs11 = issuer
        .spec
        .issuer
        .ca
        .as_ref()
        .and_then(|ca| ca.pkcs11.as_ref())
        .expect("spec.ca.pkcs11");
    assert_eq!(pkcs11.pin_secret_ref.name, secret.metadata.name.clone().unwrap());
    assert_eq!(pkcs11.pin_secret_ref.key, PIN_KEY);
    let uri: crate::pkcs11::uri::Pkcs11Uri = pkcs11.uri.parse().unwrap();
    uri.check_key_reference().unwrap();
    assert!(uri.module_path.is_none());
    assert!(uri.module_name.as_deref().is_none_or(|m| m == "hsm"));
}

/// `kubectl` on the PATH, if any.
fn kubectl() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("kubectl"))
        .find(|candidate| candidate.is_file())
}

#[test]
fn pkcs11_overlay_renders_the_install_with_the_module() {
    let Some(kubectl) = kubectl() else {
        println!("skipped: kubectl not found; the PKCS#11 overlay was not rendered");
        return;
    };
    // The README's layout: an overlay directory beside manifests/ (and crds/, which it
    // includes). Links, since kustomize takes no absolute paths.
    let dir = tempfile::tempdir().unwrap();
    for linked in ["manifests", "crds"] {
        std::os::unix::fs::symlink(Path::new(ROOT).join(linked), dir.path().join(linked)).unwrap();
    }
    let overlay = dir.path().join("overlay");
    std::fs::create_dir(&overlay).unwrap();
    std::fs::write(overlay.join("kustomization.yaml"), PKCS11_OVERLAY).unwrap();
    let output = std::process::Command::new(kubectl)
        .arg("kustomize")
        .arg(&overlay)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "kubectl kustomize failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rendered: Vec<Value> = serde_yaml::Deserializer::from_slice(&output.stdout)
        .map(|d| serde_json::to_value(serde_yaml::Value::deserialize(d).unwrap()).unwrap())
        .filter(|v| !v.is_null())
        .collect();
    let named = |kind: &str| -> Vec<&Value> { rendered.iter().filter(|v| v["kind"] == kind).collect() };

    let [deployment] = named("Deployment")[..] else {
        panic!("one Deployment")
    };
    let deployment: Deployment = strictly(deployment).unwrap();
    let base_objects = install();
    let base = controller_container(self::deployment(&base_objects));
    let pod = pod_spec(&deployment);
    let controller = controller_container(&deployment);
    let init = pod.init_containers.as_deref().unwrap_or_default();
    assert_eq!(
        init.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["pkcs11-module"]
    );

    // The install's args, then the module.
    let args = controller.args.clone().unwrap();
    let base_args = base.args.clone().unwrap();
    assert_eq!(args[..base_args.len()], base_args[..]);
    assert_eq!(
        controller_args(&args).pkcs11_modules,
        [("hsm".to_owned(), PathBuf::from("/opt/pkcs11/lib/libpkcs11.so"))]
    );
    // The install's env and the module's.
    for name in ["POD_NAME", "POD_NAMESPACE", "SOFTHSM2_CONF"] {
        assert!(
            controller
                .env
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|e| e.name == name),
            "env {name}"
        );
    }
    for (volume, path) in [
        ("pkcs11-lib", "/opt/pkcs11/lib"),
        ("pkcs11-config", "/etc/pkcs11"),
        ("pkcs11-state", "/var/lib/pkcs11"),
    ] {
        assert_eq!(mount_of(controller, volume).mount_path, path);
    }
    // The ConfigMap under its hashed name, referenced by that name.
    let [config_map] = named("ConfigMap")[..] else {
        panic!("one ConfigMap")
    };
    let config_name = config_map["metadata"]["name"].as_str().unwrap();
    assert!(config_name.starts_with("certkeeper-pkcs11-"), "{config_name}");
    assert_eq!(config_map["metadata"]["namespace"], NAMESPACE);
    assert!(
        pod.volumes
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|v| { v.config_map.as_ref().is_some_and(|c| c.name == config_name) })
    );
    let [secret] = named("Secret")[..] else {
        panic!("one Secret")
    };
    assert_eq!(secret["metadata"]["name"], "certkeeper-hsm-pin");
    assert_eq!(secret["metadata"]["namespace"], NAMESPACE);
}
