//! The policies as the controller knows them: every CertificatePolicy compiled once, from its
//! watch, and the labels of every namespace, from theirs. Reconciles read it without a request.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::watcher::Event;

use super::compile::CompiledPolicy;
use super::decide::{self, IssuerId, PolicyDecision, Request};
use crate::api::CertificatePolicy;

/// The compiled policies and namespace labels, shared by the policy watch (writer) and the
/// Certificate reconciles (readers).
#[derive(Clone)]
pub struct Policies(Arc<RwLock<State>>);

struct State {
    /// The policy watch has listed once: until then nothing guarded can be judged.
    listed: bool,
    /// `--require-policy`: every issuer is guarded.
    require_everywhere: bool,
    policies: Vec<Arc<CompiledPolicy>>,
    /// The policies of a re-list in progress; what it does not list is gone at its end.
    relisting: Option<Vec<Arc<CompiledPolicy>>>,
    namespaces_listed: bool,
    namespaces: BTreeMap<String, BTreeMap<String, String>>,
    namespaces_relisting: Option<BTreeMap<String, BTreeMap<String, String>>>,
}

/// What a policy event changed: the policies, as they were and as they are, whose selection
/// may now decide differently (whose Certificates to look at again).
#[derive(Default)]
pub struct Changed(pub Vec<Arc<CompiledPolicy>>);

impl Policies {
    /// Policies not listed yet: nothing an issuer that could be guarded signs is allowed until
    /// the watch lists them.
    pub fn unlisted(require_everywhere: bool) -> Self {
        Self(Arc::new(RwLock::new(State {
            listed: false,
            require_everywhere,
            policies: Vec::new(),
            relisting: None,
            namespaces_listed: false,
            namespaces: BTreeMap::new(),
            namespaces_relisting: None,
        })))
    }

    /// A fixed set of policies, listed, with namespace labels known: for the offline command
    /// line and tests.
    pub fn fixed(
        policies: Vec<CompiledPolicy>,
        namespaces: BTreeMap<String, BTreeMap<String, String>>,
        require_everywhere: bool,
    ) -> Self {
        let this = Self::unlisted(require_everywhere);
        {
            let mut state = this.write();
            state.listed = true;
            state.namespaces_listed = true;
            state.policies = policies.into_iter().map(Arc::new).collect();
            state.namespaces = namespaces;
        }
        this
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.0.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the policy watch has listed.
    pub fn is_listed(&self) -> bool {
        self.read().listed
    }

    /// The compiled policy `name`.
    pub fn get(&self, name: &str) -> Option<Arc<CompiledPolicy>> {
        self.read().policies.iter().find(|p| p.name == name).cloned()
    }

    /// Whether some policy selects namespaces by label.
    pub fn reads_labels(&self) -> bool {
        self.read().policies.iter().any(|p| p.selector.reads_labels())
    }

    /// What each policy says of `request` for `issuer` (empty before the policies are listed).
    pub fn explain(&self, issuer: &IssuerId<'_>, request: &Request<'_>) -> Vec<(String, super::Explained)> {
        let state = self.read();
        let labels = state
            .namespaces
            .get(request.namespace)
            .cloned()
            .unwrap_or_default();
        super::explain(&state.policies, issuer, Some(&labels), request)
    }

    /// Judges `request` for `issuer`.
    pub fn decide(&self, issuer: &IssuerId<'_>, request: &Request<'_>) -> PolicyDecision {
        let state = self.read();
        if !state.listed {
            return PolicyDecision::Unavailable(
                "the CertificatePolicies have not been listed yet (is the CertificatePolicy CRD installed, and may certkeeper list them?)"
                    .into(),
            );
        }
        let labels = match state.namespaces_listed {
            true => Some(
                state
                    .namespaces
                    .get(request.namespace)
                    .cloned()
                    .unwrap_or_default(),
            ),
            false => None,
        };
        // Judged outside the lock: a CEL rule may take a while, and the policy watch must not
        // wait for it to record a change.
        let (policies, require_everywhere) = (state.policies.clone(), state.require_everywhere);
        drop(state);
        decide::decide(&policies, issuer, labels.as_ref(), request, require_everywhere)
    }

    /// Whether any policy has CEL rules (`spec.validations`), whose evaluation may take long
    /// enough to be kept off the thread that runs the watches and reconciles.
    pub fn has_cel_rules(&self) -> bool {
        self.read()
            .policies
            .iter()
            .any(|p| p.rules.as_ref().is_ok_and(|r| !r.validations.is_empty()))
    }

    /// Follows one event of the policy watch; returns the policies whose Certificates may now
    /// be judged differently. A re-list or a status write that changes no spec changes nothing.
    pub fn observe(&self, event: &Event<DeserializeGuard<CertificatePolicy>>) -> Changed {
        let mut state = self.write();
        match event {
            Event::Init => {
                state.relisting = Some(Vec::new());
                Changed::default()
            }
            Event::InitApply(guard) => {
                let compiled = Arc::new(compile(guard));
                let previous = find(&state.policies, &compiled.name);
                if let Some(relisting) = state.relisting.as_mut() {
                    relisting.push(compiled.clone());
                }
                // Held at once, so that a Certificate woken for it reads it.
                state.policies.retain(|p| p.name != compiled.name);
                state.policies.push(compiled.clone());
                changed(previous, compiled)
            }
            Event::InitDone => {
                let listed = state.relisting.take().unwrap_or_default();
                let gone: Vec<Arc<CompiledPolicy>> = state
                    .policies
                    .iter()
                    .filter(|p| find(&listed, &p.name).is_none())
                    .cloned()
                    .collect();
                let first_list = !state.listed;
                state.policies = listed;
                state.listed = true;
                match first_list {
                    // The first list: every guarded Certificate is waiting for it.
                    true => Changed(state.policies.clone()),
                    false => Changed(gone),
                }
            }
            Event::Apply(guard) => {
                let compiled = Arc::new(compile(guard));
                let previous = find(&state.policies, &compiled.name);
                state.policies.retain(|p| p.name != compiled.name);
                state.policies.push(compiled.clone());
                changed(previous, compiled)
            }
            Event::Delete(guard) => {
                let name = guard.name_any();
                let previous = find(&state.policies, &name);
                state.policies.retain(|p| p.name != name);
                Changed(previous.into_iter().collect())
            }
        }
    }

    /// Follows one event of the namespace watch; returns the namespaces whose labels changed.
    pub fn observe_namespace(&self, event: &Event<PartialObjectMeta<Namespace>>) -> Vec<String> {
        let mut state = self.write();
        let labels = |ns: &PartialObjectMeta<Namespace>| ns.labels().clone();
        match event {
            Event::Init => {
                state.namespaces_relisting = Some(BTreeMap::new());
                Vec::new()
            }
            Event::InitApply(ns) => {
                let name = ns.name_any();
                let changed = state.namespaces.get(&name) != Some(&labels(ns));
                if let Some(relisting) = state.namespaces_relisting.as_mut() {
                    relisting.insert(name.clone(), labels(ns));
                }
                state.namespaces.insert(name.clone(), labels(ns));
                if changed { vec![name] } else { Vec::new() }
            }
            Event::InitDone => {
                let listed = state.namespaces_relisting.take().unwrap_or_default();
                let gone = state
                    .namespaces
                    .keys()
                    .filter(|n| !listed.contains_key(*n))
                    .cloned()
                    .collect();
                state.namespaces = listed;
                state.namespaces_listed = true;
                gone
            }
            Event::Apply(ns) => {
                let name = ns.name_any();
                let previous = state.namespaces.insert(name.clone(), labels(ns));
                if previous.as_ref() != Some(&labels(ns)) {
                    vec![name]
                } else {
                    Vec::new()
                }
            }
            Event::Delete(ns) => {
                let name = ns.name_any();
                state.namespaces.remove(&name);
                vec![name]
            }
        }
    }
}

fn find(policies: &[Arc<CompiledPolicy>], name: &str) -> Option<Arc<CompiledPolicy>> {
    policies.iter().find(|p| p.name == name).cloned()
}

fn compile(guard: &DeserializeGuard<CertificatePolicy>) -> CompiledPolicy {
    match &guard.0 {
        Ok(policy) => CompiledPolicy::compile(policy),
        Err(invalid) => CompiledPolicy::unreadable(
            invalid.metadata.name.clone().unwrap_or_default(),
            invalid.metadata.generation,
            format!("the object cannot be read: {}", invalid.error),
        ),
    }
}

/// The policies to look at again after `previous` became `current`: none when the spec is the
/// same (a status write, a re-list).
fn changed(previous: Option<Arc<CompiledPolicy>>, current: Arc<CompiledPolicy>) -> Changed {
    match previous {
        Some(previous) if previous.spec == current.spec && previous.spec.is_some() => Changed::default(),
        Some(previous) => Changed(vec![previous, current]),
        None => Changed(vec![current]),
    }
}
