//! An in-memory API server for tests that run the whole controller (`runner::run`): it keeps
//! objects with resourceVersions from one counter (as etcd does), answers lists (label and
//! field selectors, metadata-only when asked) and holds watches open, streaming each change to
//! every watch it matches, as kube-apiserver does: a watch from an older version replays what
//! came after it, an object that stops matching a selector is DELETED for that watch, and
//! every watch opens with a bookmark. Server-side applies create or update an object (its
//! `status` subresource replaces the status; an unchanged object is not written); creations
//! (Events) are kept. Every request must be granted by the controller's RBAC.
//!
//! A test applies and deletes objects itself, holds back the answer of chosen lists, and
//! delays the events of chosen watches, as an API server's watch cache lags behind its reads.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::watch;

/// A response body: whole, or a watch's stream.
type ResponseBody = UnsyncBoxBody<Bytes, Infallible>;

/// Where an object lives: API group ("" for core), resource, namespace ("" when cluster-scoped),
/// name.
pub type ObjectId = (String, String, String, String);

/// One change, as the watches see it.
#[derive(Clone, Debug)]
pub struct Change {
    pub version: u64,
    pub id: ObjectId,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// A request's target, from its path.
#[derive(Clone, Debug)]
struct Target {
    group: String,
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

impl Target {
    fn parse(path: &str) -> Option<Self> {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (group, rest) = match segments.as_slice() {
            ["api", _version, rest @ ..] => ("", rest),
            ["apis", group, _version, rest @ ..] => (*group, rest),
            _ => return None,
        };
        let (namespace, rest) = match rest {
            ["namespaces", namespace, rest @ ..] if !rest.is_empty() => (Some(namespace.to_string()), rest),
            _ => (None, rest),
        };
        let (resource, name, subresource) = match rest {
            [resource] => (resource, None, None),
            [resource, name] => (resource, Some(name.to_string()), None),
            [resource, name, sub] => (resource, Some(name.to_string()), Some(sub.to_string())),
            _ => return None,
        };
        Some(Self {
            group: group.to_owned(),
            resource: resource.to_string(),
            namespace,
            name,
            subresource,
        })
    }

    fn id(&self) -> ObjectId {
        (
            self.group.clone(),
            self.resource.clone(),
            self.namespace.clone().unwrap_or_default(),
            self.name.clone().unwrap_or_default(),
        )
    }

    /// Whether `id` is in this collection.
    fn holds(&self, id: &ObjectId) -> bool {
        id.0 == self.group && id.1 == self.resource && self.namespace.as_ref().is_none_or(|ns| *ns == id.2)
    }
}

/// Decodes a query parameter (`%XX`, `+`).
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| decode(v))
}

/// A label or field selector: `key`, `!key`, `key=value`, `key==value`, `key!=value`, joined
/// by commas. Field keys are dotted paths into the object.
#[derive(Clone, Debug, Default)]
struct Selector {
    labels: Vec<String>,
    fields: Vec<String>,
}

impl Selector {
    fn of(query: &str) -> Self {
        let split = |s: Option<String>| {
            s.map(|s| {
                s.split(',')
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
        };
        Self {
            labels: split(query_param(query, "labelSelector")),
            fields: split(query_param(query, "fieldSelector")),
        }
    }

    fn matches(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        let label = |k: &str| labels.get(k).and_then(Value::as_str).map(str::to_owned);
        let field = |k: &str| {
            let mut at = object;
            for part in k.split('.') {
                at = &at[part];
            }
            at.as_str().map(str::to_owned)
        };
        let holds = |requirement: &str, get: &dyn Fn(&str) -> Option<String>| {
            if let Some((k, v)) = requirement.split_once("!=") {
                get(k).as_deref() != Some(v)
            } else if let Some((k, v)) = requirement.split_once("==").or(requirement.split_once('=')) {
                get(k).as_deref() == Some(v)
            } else if let Some(k) = requirement.strip_prefix('!') {
                get(k).is_none()
            } else {
                get(requirement).is_some()
            }
        };
        self.labels.iter().all(|r| holds(r, &label)) && self.fields.iter().all(|r| holds(r, &field))
    }
}

/// An open watch.
struct Watch {
    target: Target,
    selector: Selector,
    metadata_only: bool,
    /// Events, each due at an instant (the watch's lag after the change).
    events: mpsc::UnboundedSender<(tokio::time::Instant, Bytes)>,
    lag: Duration,
}

/// What the server holds.
#[derive(Default)]
struct State {
    version: u64,
    objects: BTreeMap<ObjectId, Value>,
    changes: Vec<Change>,
    watches: Vec<Watch>,
    requests: Vec<String>,
    /// Every list and watch: `path?query`, and whether it asked for metadata only.
    collection_reads: Vec<(String, bool)>,
    /// Lists held back: resource, a part of the query, and the gate that opens them.
    held: Vec<(String, String, watch::Receiver<bool>)>,
    /// Watch lags: resource, a part of the query, and the lag.
    lags: Vec<(String, String, Duration)>,
}

/// The in-memory API server; clones share it.
#[derive(Clone, Default)]
pub struct InMemoryApiServer {
    state: Arc<Mutex<State>>,
}

/// Opens a list held back by `InMemoryApiServer::hold_lists` when dropped or released.
pub struct HeldList(watch::Sender<bool>);

impl HeldList {
    pub fn release(self) {
        let _ = self.0.send(true);
    }
}

impl Drop for HeldList {
    fn drop(&mut self) {
        let _ = self.0.send(true);
    }
}

/// The resource of a kind, as the quickstart's kinds are named (`Issuer` → `issuers`).
fn resource_of(kind: &str) -> String {
    format!("{}s", kind.to_lowercase())
}

/// The id of `object` (its apiVersion, kind and metadata).
pub fn id_of(object: &Value) -> ObjectId {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (
        group.to_owned(),
        resource_of(object["kind"].as_str().unwrap_or_default()),
        text(&object["metadata"]["namespace"]),
        text(&object["metadata"]["name"]),
    )
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
           "code": code, "message": message})
}

fn whole(status: StatusCode, body: &Value) -> Response<ResponseBody> {
    let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    Response::builder()
        .status(status)
        .body(Full::new(bytes).boxed_unsync())
        .unwrap()
}

/// The object as a metadata-only request sees it.
fn metadata_of(object: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
           "metadata": object["metadata"].clone()})
}

fn event_line(type_: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": type_, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

impl State {
    fn next_version(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    /// Stores `after` (None: deletes) at a new version and tells the watches.
    fn write(&mut self, id: ObjectId, after: Option<Value>) -> Option<Value> {
        let version = self.next_version();
        let after = after.map(|mut object| {
            object["metadata"]["resourceVersion"] = version.to_string().into();
            object
        });
        let before = match &after {
            Some(object) => self.objects.insert(id.clone(), object.clone()),
            None => self.objects.remove(&id),
        };
        let change = Change {
            version,
            id,
            before,
            after: after.clone(),
        };
        let now = tokio::time::Instant::now();
        self.watches.retain(|w| match event_for(w, &change) {
            Some(bytes) => w.events.unbounded_send((now + w.lag, bytes)).is_ok(),
            None => !w.events.is_closed(),
        });
        self.changes.push(change);
        after
    }
}

/// What `change` means to `watch`: ADDED, MODIFIED or DELETED (an object that stops matching
/// its selector is deleted for it), or nothing.
fn event_for(watch: &Watch, change: &Change) -> Option<Bytes> {
    if !watch.target.holds(&change.id) {
        return None;
    }
    let shown = |o: &Value| match watch.metadata_only {
        true => metadata_of(o),
        false => o.clone(),
    };
    let before = change.before.as_ref().filter(|o| watch.selector.matches(o));
    let after = change.after.as_ref().filter(|o| watch.selector.matches(o));
    match (before, after) {
        (None, Some(after)) => Some(event_line("ADDED", &shown(after))),
        (Some(_), Some(after)) => Some(event_line("MODIFIED", &shown(after))),
        (Some(before), None) => {
            // The last state, at the version of its deletion (or of its leaving the selector).
            let mut last = change.after.clone().unwrap_or_else(|| before.clone());
            last["metadata"]["resourceVersion"] = change.version.to_string().into();
            Some(event_line("DELETED", &shown(&last)))
        }
        _ => None,
    }
}

/// What the API server sets on an object it creates.
fn created_metadata(id: &ObjectId, object: &mut Value) {
    object["metadata"]["uid"] = format!("uid-{}-{}-{}", id.1, id.2, id.3).into();
    object["metadata"]["creationTimestamp"] = jiff::Timestamp::now().to_string().into();
    if id.0 == crate::api::GROUP {
        object["metadata"]["generation"] = 1.into();
    }
}

/// Merges `patch` into `object` as a JSON merge patch does.
fn merge(object: &mut Value, patch: &Value) {
    match (object.as_object_mut(), patch.as_object()) {
        (Some(target), Some(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        _ => *object = patch.clone(),
    }
}

impl InMemoryApiServer {
    /// A client whose requests this server answers.
    pub fn client(&self) -> Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<ResponseBody>>();
        let server = self.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let server = server.clone();
                tokio::spawn(async move { send.send_response(server.answer(request).await) });
            }
        });
        Client::new(service, "default")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Holds back the answers of lists of `resource` whose query contains `query`, until the
    /// returned gate is released (or dropped).
    pub fn hold_lists(&self, resource: &str, query: &str) -> HeldList {
        let (open, gate) = watch::channel(false);
        self.lock()
            .held
            .push((resource.to_owned(), query.to_owned(), gate));
        HeldList(open)
    }

    /// Delays by `lag` the events of watches of `resource` opened from now on.
    pub fn lag_watches(&self, resource: &str, lag: Duration) {
        self.lock().lags.push((resource.to_owned(), String::new(), lag));
    }

    /// Creates or replaces `object` (status included) as a client with every right would.
    pub fn put(&self, mut object: Value) -> Value {
        let id = id_of(&object);
        let mut state = self.lock();
        match state.objects.get(&id) {
            Some(existing) => {
                object["metadata"]["uid"] = existing["metadata"]["uid"].clone();
                let generation = existing["metadata"]["generation"].as_i64();
                let changed = existing["spec"] != object["spec"];
                if let Some(generation) = generation {
                    object["metadata"]["generation"] = (generation + i64::from(changed)).into();
                }
            }
            None => created_metadata(&id, &mut object),
        }
        state.write(id, Some(object)).unwrap_or_default()
    }

    /// Deletes an object, if it exists.
    pub fn delete(&self, id: &ObjectId) {
        let mut state = self.lock();
        if state.objects.contains_key(id) {
            state.write(id.clone(), None);
        }
    }

    pub fn get(&self, id: &ObjectId) -> Option<Value> {
        self.lock().objects.get(id).cloned()
    }

    /// Every change so far, in order.
    pub fn changes(&self) -> Vec<Change> {
        self.lock().changes.clone()
    }

    /// Every request so far, as `METHOD path`.
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    /// Every list and watch so far, as `path?query`, with whether it asked for metadata only
    /// (`Accept: ...;as=PartialObjectMetadata...`).
    pub fn collection_reads(&self) -> Vec<(String, bool)> {
        self.lock().collection_reads.clone()
    }

    async fn answer(&self, request: Request<Body>) -> Response<ResponseBody> {
        let (parts, body) = request.into_parts();
        super::assert_granted(&parts);
        let body = body.collect_bytes().await.unwrap_or_default();
        let path = parts.uri.path().to_owned();
        let query = parts.uri.query().unwrap_or_default().to_owned();
        self.lock().requests.push(format!("{} {path}", parts.method));
        let Some(target) = Target::parse(&path) else {
            return whole(
                StatusCode::NOT_FOUND,
                &status_body(404, "NotFound", "no such path"),
            );
        };
        let metadata_only = parts
            .headers
            .get(http::header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("as=PartialObjectMetadata"));
        if parts.method == Method::GET && target.name.is_none() {
            let read = (format!("{path}?{query}"), metadata_only);
            self.lock().collection_reads.push(read);
        }
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        match (&parts.method, &target.name) {
            (&Method::GET, None) if query_param(&query, "watch").as_deref() == Some("true") => {
                self.watch(target, &query, metadata_only)
            }
            (&Method::GET, None) => self.list(target, &query, metadata_only).await,
            (&Method::GET, Some(_)) => match self.get(&target.id()) {
                Some(object) => whole(StatusCode::OK, &object),
                None => whole(StatusCode::NOT_FOUND, &status_body(404, "NotFound", "not found")),
            },
            (&Method::PATCH, Some(_)) => self.patch(&target, body),
            (&Method::POST, None) => self.create(&target, body),
            (method, _) => panic!("the in-memory API server does not serve {method} {path}"),
        }
    }

    async fn list(&self, target: Target, query: &str, metadata_only: bool) -> Response<ResponseBody> {
        let gates: Vec<_> = self
            .lock()
            .held
            .iter()
            .filter(|(resource, part, _)| *resource == target.resource && query.contains(part.as_str()))
            .map(|(_, _, gate)| gate.clone())
            .collect();
        for mut gate in gates {
            let _ = gate.wait_for(|open| *open).await;
        }
        let selector = Selector::of(query);
        let state = self.lock();
        let items: Vec<Value> = state
            .objects
            .iter()
            .filter(|(id, object)| target.holds(id) && selector.matches(object))
            .map(|(_, object)| match metadata_only {
                true => metadata_of(object),
                false => object.clone(),
            })
            .collect();
        let (api_version, kind) = match metadata_only {
            true => ("meta.k8s.io/v1", "PartialObjectMetadataList"),
            false => ("v1", "List"),
        };
        let list = json!({"apiVersion": api_version, "kind": kind,
                          "metadata": {"resourceVersion": state.version.to_string()}, "items": items});
        whole(StatusCode::OK, &list)
    }

    fn watch(&self, target: Target, query: &str, metadata_only: bool) -> Response<ResponseBody> {
        let from: u64 = query_param(query, "resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let (events, mut due) = mpsc::unbounded::<(tokio::time::Instant, Bytes)>();
        let (frames, body) = mpsc::unbounded::<Result<Frame<Bytes>, Infallible>>();
        let mut state = self.lock();
        let lag = state
            .lags
            .iter()
            .filter(|(resource, part, _)| *resource == target.resource && query.contains(part.as_str()))
            .map(|(_, _, lag)| *lag)
            .max()
            .unwrap_or_default();
        let watch = Watch {
            target,
            selector: Selector::of(query),
            metadata_only,
            events,
            lag,
        };
        let now = tokio::time::Instant::now();
        for change in state.changes.iter().filter(|c| c.version > from) {
            if let Some(bytes) = event_for(&watch, change) {
                let _ = watch.events.unbounded_send((now, bytes));
            }
        }
        let bookmark = json!({"apiVersion": "v1", "kind": "Bookmark",
                              "metadata": {"resourceVersion": state.version.to_string()}});
        let _ = watch
            .events
            .unbounded_send((now + lag, event_line("BOOKMARK", &bookmark)));
        state.watches.push(watch);
        drop(state);
        // Delivers each event when it is due, in order.
        tokio::spawn(async move {
            while let Some((at, bytes)) = due.next().await {
                tokio::time::sleep_until(at).await;
                if frames.unbounded_send(Ok(Frame::data(bytes))).is_err() {
                    return;
                }
            }
        });
        Response::builder()
            .status(StatusCode::OK)
            .body(StreamBody::new(body).boxed_unsync())
            .unwrap()
    }

    /// A server-side apply (or merge patch) of an object or of its status.
    fn patch(&self, target: &Target, body: Value) -> Response<ResponseBody> {
        let id = target.id();
        let mut state = self.lock();
        let existing = state.objects.get(&id).cloned();
        // A resourceVersion in the patch is a precondition on the object found, as the API
        // server's update path checks it; an object created has none to meet.
        if let (Some(wanted), Some(found)) = (body["metadata"]["resourceVersion"].as_str(), &existing)
            && found["metadata"]["resourceVersion"].as_str() != Some(wanted)
        {
            return whole(
                StatusCode::CONFLICT,
                &status_body(409, "Conflict", "the object has been modified"),
            );
        }
        let object = match (target.subresource.as_deref(), existing) {
            (Some("status"), None) => {
                return whole(StatusCode::NOT_FOUND, &status_body(404, "NotFound", "not found"));
            }
            (Some("status"), Some(mut object)) => {
                object["status"] = body["status"].clone();
                object
            }
            (Some(other), _) => panic!("the in-memory API server has no subresource {other}"),
            (None, existing) => {
                let created = existing.is_none();
                let mut object = existing.unwrap_or_else(|| json!({"metadata": {}}));
                let old_spec = object["spec"].clone();
                let mut patch = body.clone();
                if let Some(patch) = patch.as_object_mut() {
                    patch.remove("status");
                }
                merge(&mut object, &patch);
                if created {
                    created_metadata(&id, &mut object);
                } else if old_spec != object["spec"]
                    && let Some(generation) = object["metadata"]["generation"].as_i64()
                {
                    object["metadata"]["generation"] = (generation + 1).into();
                }
                object
            }
        };
        // An apply that changes nothing writes nothing.
        if let Some(existing) = state.objects.get(&id) {
            let mut unversioned = existing.clone();
            unversioned["metadata"]["resourceVersion"] = object["metadata"]["resourceVersion"].clone();
            if unversioned == object {
                return whole(StatusCode::OK, existing);
            }
        }
        let stored = state.write(id, Some(object)).unwrap_or_default();
        whole(StatusCode::OK, &stored)
    }

    fn create(&self, target: &Target, mut body: Value) -> Response<ResponseBody> {
        let mut state = self.lock();
        let version = state.version + 1;
        let name = match body["metadata"]["name"].as_str() {
            Some(name) => name.to_owned(),
            None => format!(
                "{}{version}",
                body["metadata"]["generateName"].as_str().unwrap_or("object-")
            ),
        };
        body["metadata"]["name"] = name.clone().into();
        let mut id = target.id();
        id.3 = name;
        if state.objects.contains_key(&id) {
            return whole(
                StatusCode::CONFLICT,
                &status_body(409, "AlreadyExists", "already exists"),
            );
        }
        let stored = state.write(id, Some(body)).unwrap_or_default();
        whole(StatusCode::CREATED, &stored)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_and_query_parameters_read_as_the_api_server_reads_them() {
        assert_eq!(decode("type%3Dkubernetes.io%2Ftls"), "type=kubernetes.io/tls");
        let secret = json!({"type": "kubernetes.io/tls",
                            "metadata": {"labels": {"certkeeper.io/certificate-name": "web"}}});
        let selector = Selector::of("fieldSelector=type%3Dkubernetes.io%2Ftls&watch=true");
        assert!(selector.matches(&secret));
        assert!(!selector.matches(&json!({"type": "Opaque"})));
        let selector = Selector::of("labelSelector=certkeeper.io%2Fcertificate-name");
        assert!(selector.matches(&secret));
        assert!(!selector.matches(&json!({"metadata": {}})));
        let target = Target::parse("/apis/certkeeper.io/v1/namespaces/apps/issuers/ca/status").unwrap();
        assert_eq!(
            (
                target.resource.as_str(),
                target.namespace.as_deref(),
                target.subresource.as_deref()
            ),
            ("issuers", Some("apps"), Some("status"))
        );
        let all = Target::parse("/api/v1/secrets").unwrap();
        assert!(all.holds(&("".into(), "secrets".into(), "apps".into(), "x".into())));
        assert!(Target::parse("/api/v1/namespaces/apps").unwrap().name.is_some());
    }
}
