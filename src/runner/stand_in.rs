//! A stand-in API server for a whole leadership term, over kube's mocked client, that answers
//! as kube-apiserver does where the runner's behaviour depends on it: it keeps objects per
//! collection, lists them at a resourceVersion, holds watches open and answers a held watch
//! with what happens (then ends it, as the server's watch timeout does), replays to a watch
//! what happened after the version it resumes from, and sends `410 Gone` as an ERROR event.
//! Faults: every watch of one collection answered with 410, a refused connection or 403; a
//! restart after which every watch resuming from before it gets 410 (the held ones spread
//! over time); reads held unanswered (an API server slow to answer). Named objects are read from
//! the collections (404 when missing); a patch of a Lease merges into it, any other write is
//! echoed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tower_test::mock::SendResponse;

use crate::testing::Handle;

/// How the watches of a collection fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `410 Gone` as an ERROR event: the watcher lists again.
    Gone,
    /// The connection is refused before any answer.
    Refused,
    /// `403 Forbidden`, as for a Role that lost a rule or a CRD removed under it.
    Forbidden,
}

type Send = SendResponse<Response<Body>>;

struct Held {
    collection: String,
    namespace: Option<String>,
    send: Send,
}

#[derive(Default)]
struct State {
    version: u64,
    /// Objects by collection path (all namespaces: `/apis/certkeeper.io/v1/certificates`),
    /// each with the version it was written at.
    objects: HashMap<String, Vec<(u64, Value)>>,
    watches: Vec<Held>,
    faults: HashMap<String, Fault>,
    faults_served: HashMap<String, usize>,
    /// Watches resuming from a version below this get 410.
    restarted_at: u64,
    /// Which reads are held unanswered.
    hold: Hold,
    held_reads: Vec<Send>,
}

/// Which reads the stand-in leaves unanswered: an API server slow to answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Hold {
    #[default]
    Nothing,
    /// Lists (a watch's first step).
    Lists,
    /// Lists and reads of single objects (a Lease).
    Reads,
}

/// The stand-in: add objects, inject faults, see the requests.
#[derive(Clone)]
pub struct StandIn {
    state: Arc<Mutex<State>>,
}

/// Splits a path into its collection (all namespaces), its namespace and the object's name
/// and subresource, if any.
fn parse(path: &str) -> (String, Option<String>, Option<String>) {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (prefix, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => (format!("/api/{version}"), rest),
        ["apis", group, version, rest @ ..] => (format!("/apis/{group}/{version}"), rest),
        _ => panic!("not a resource path: {path}"),
    };
    match rest {
        ["namespaces", ns, resource, name @ ..] => (
            format!("{prefix}/{resource}"),
            Some((*ns).to_owned()),
            name.first().map(|n| (*n).to_owned()),
        ),
        [resource, name @ ..] => (
            format!("{prefix}/{resource}"),
            None,
            name.first().map(|n| (*n).to_owned()),
        ),
        [] => panic!("not a resource path: {path}"),
    }
}

fn namespace_of(object: &Value) -> Option<&str> {
    object["metadata"]["namespace"].as_str()
}

fn in_scope(object: &Value, namespace: &Option<String>) -> bool {
    namespace.is_none() || namespace_of(object) == namespace.as_deref()
}

fn respond(send: Send, status: StatusCode, body: Vec<u8>) {
    send.send_response(Response::builder().status(status).body(Body::from(body)).unwrap());
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
           "code": code, "message": format!("{reason} (stand-in)")})
}

fn events(events: &[(&str, Value)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (kind, object) in events {
        body.extend(serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap());
        body.push(b'\n');
    }
    body
}

fn gone() -> Vec<u8> {
    events(&[("ERROR", status(410, "Expired"))])
}

impl StandIn {
    /// Serves `handle` until the client is dropped; returns the stand-in and every request it
    /// sees, as "METHOD /path".
    pub fn serve(mut handle: Handle) -> (Self, UnboundedReceiver<String>) {
        let stand_in = Self {
            state: Arc::default(),
        };
        let (seen, requests) = unbounded_channel();
        let server = stand_in.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let body = body.collect_bytes().await.unwrap_or_default();
                server.answer(&parts, &body, send, &seen);
            }
        });
        (stand_in, requests)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn answer(&self, parts: &http::request::Parts, body: &[u8], send: Send, seen: &UnboundedSender<String>) {
        let path = parts.uri.path().to_owned();
        let query = parts.uri.query().unwrap_or_default().to_owned();
        let _ = seen.send(format!("{} {path}", parts.method));
        let (collection, namespace, name) = parse(&path);
        let mut state = self.state();
        match (&parts.method, name) {
            (&Method::GET, None) if query.split('&').any(|p| p == "watch=true") => {
                let from: u64 = query
                    .split('&')
                    .find_map(|p| p.strip_prefix("resourceVersion="))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if from < state.restarted_at {
                    return respond(send, StatusCode::OK, gone());
                }
                if let Some(fault) = state.faults.get(&collection).copied() {
                    *state.faults_served.entry(collection).or_default() += 1;
                    return match fault {
                        Fault::Gone => respond(send, StatusCode::OK, gone()),
                        Fault::Refused => drop(send),
                        Fault::Forbidden => respond(
                            send,
                            StatusCode::FORBIDDEN,
                            serde_json::to_vec(&status(403, "Forbidden")).unwrap(),
                        ),
                    };
                }
                // What happened since `from`, at once; else held until something happens.
                let missed: Vec<(&str, Value)> = state
                    .objects
                    .get(&collection)
                    .into_iter()
                    .flatten()
                    .filter(|(version, object)| *version > from && in_scope(object, &namespace))
                    .map(|(_, object)| ("ADDED", object.clone()))
                    .collect();
                if missed.is_empty() {
                    state.watches.push(Held {
                        collection,
                        namespace,
                        send,
                    });
                } else {
                    respond(send, StatusCode::OK, events(&missed));
                }
            }
            (&Method::GET, None) => {
                if state.hold != Hold::Nothing {
                    state.held_reads.push(send);
                } else {
                    let list = Self::list(&state, &collection, &namespace, parts);
                    respond(send, StatusCode::OK, list);
                }
            }
            (&Method::GET, Some(_)) if state.hold == Hold::Reads => state.held_reads.push(send),
            (&Method::GET, Some(name)) => match Self::find(&state, &collection, &namespace, &name) {
                Some(object) => respond(send, StatusCode::OK, serde_json::to_vec(object).unwrap()),
                None => respond(
                    send,
                    StatusCode::NOT_FOUND,
                    serde_json::to_vec(&status(404, "NotFound")).unwrap(),
                ),
            },
            (&Method::PATCH, Some(name)) if collection.ends_with("/leases") => {
                let patch: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                let version = state.version + 1;
                state.version = version;
                let Some(lease) = state.objects.get_mut(&collection).and_then(|all| {
                    all.iter_mut()
                        .find(|(_, o)| o["metadata"]["name"] == name.as_str())
                }) else {
                    return respond(
                        send,
                        StatusCode::NOT_FOUND,
                        serde_json::to_vec(&status(404, "NotFound")).unwrap(),
                    );
                };
                lease.0 = version;
                lease.1["metadata"]["resourceVersion"] = json!(version.to_string());
                if let Some(spec) = patch["spec"].as_object() {
                    for (key, value) in spec {
                        match value {
                            Value::Null => drop(lease.1["spec"].as_object_mut().map(|s| s.remove(key))),
                            value => lease.1["spec"][key] = value.clone(),
                        }
                    }
                }
                respond(send, StatusCode::OK, serde_json::to_vec(&lease.1).unwrap());
            }
            (&Method::PATCH | &Method::POST | &Method::PUT, _) => {
                respond(send, StatusCode::OK, body.to_vec())
            }
            (&Method::DELETE, _) => respond(send, StatusCode::OK, serde_json::to_vec(&json!({})).unwrap()),
            (other, _) => panic!("unexpected {other} {path}?{query}"),
        }
    }

    fn list(
        state: &State,
        collection: &str,
        namespace: &Option<String>,
        parts: &http::request::Parts,
    ) -> Vec<u8> {
        let metadata_only = parts
            .headers
            .get(http::header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("as=PartialObjectMetadataList"));
        let (api_version, kind) = match metadata_only {
            true => ("meta.k8s.io/v1", "PartialObjectMetadataList"),
            false => ("v1", "List"),
        };
        let items: Vec<&Value> = state
            .objects
            .get(collection)
            .into_iter()
            .flatten()
            .filter(|(_, object)| in_scope(object, namespace))
            .map(|(_, object)| object)
            .collect();
        serde_json::to_vec(&json!({
            "apiVersion": api_version, "kind": kind,
            "metadata": {"resourceVersion": state.version.to_string()},
            "items": items,
        }))
        .unwrap()
    }

    fn find<'a>(
        state: &'a State,
        collection: &str,
        namespace: &Option<String>,
        name: &str,
    ) -> Option<&'a Value> {
        state
            .objects
            .get(collection)?
            .iter()
            .map(|(_, object)| object)
            .find(|object| object["metadata"]["name"] == name && namespace_of(object) == namespace.as_deref())
    }

    /// Stores `object` in `collection` (its all-namespaces path) and tells the watches of it.
    pub fn create(&self, collection: &str, mut object: Value) {
        let mut state = self.state();
        state.version += 1;
        let version = state.version;
        object["metadata"]["resourceVersion"] = json!(version.to_string());
        state
            .objects
            .entry(collection.to_owned())
            .or_default()
            .push((version, object.clone()));
        let (told, kept): (Vec<Held>, Vec<Held>) = std::mem::take(&mut state.watches)
            .into_iter()
            .partition(|held| held.collection == collection && in_scope(&object, &held.namespace));
        state.watches = kept;
        for held in told {
            respond(held.send, StatusCode::OK, events(&[("ADDED", object.clone())]));
        }
    }

    /// From now on every watch of `collection` fails with `fault` (lists still answer).
    pub fn fail_watches(&self, collection: &str, fault: Fault) {
        let mut state = self.state();
        state.faults.insert(collection.to_owned(), fault);
        // The watches open now fail too, as the server's next answer.
        let (failed, kept): (Vec<Held>, Vec<Held>) = std::mem::take(&mut state.watches)
            .into_iter()
            .partition(|held| held.collection == collection);
        state.watches = kept;
        for held in failed {
            *state.faults_served.entry(collection.to_owned()).or_default() += 1;
            match fault {
                Fault::Gone => respond(held.send, StatusCode::OK, gone()),
                Fault::Refused | Fault::Forbidden => respond(held.send, StatusCode::OK, Vec::new()),
            }
        }
    }

    /// How many faulty answers the watches of `collection` got.
    pub fn faults_served(&self, collection: &str) -> usize {
        self.state().faults_served.get(collection).copied().unwrap_or(0)
    }

    /// The API server restarts: its watch cache starts afresh, so a watch resuming from
    /// before now gets 410. The watches open now get it one by one, `spread` apart, as their
    /// connections notice.
    pub fn restart(&self, spread: Duration) {
        let held = {
            let mut state = self.state();
            state.version += 1;
            state.restarted_at = state.version;
            std::mem::take(&mut state.watches)
        };
        tokio::spawn(async move {
            for watch in held {
                respond(watch.send, StatusCode::OK, gone());
                tokio::time::sleep(spread).await;
            }
        });
    }

    /// From now on, leaves the reads `hold` says unanswered.
    pub fn hold(&self, hold: Hold) {
        self.state().hold = hold;
    }

    /// How many reads wait for an answer.
    pub fn reads_waiting(&self) -> usize {
        self.state().held_reads.len()
    }

    /// The object `name` of `collection` as the stand-in holds it now.
    pub fn object(&self, collection: &str, name: &str) -> Option<Value> {
        self.state()
            .objects
            .get(collection)?
            .iter()
            .map(|(_, object)| object)
            .find(|object| object["metadata"]["name"] == name)
            .cloned()
    }
}
