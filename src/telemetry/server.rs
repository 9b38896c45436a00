//! The controller's HTTP endpoint (default `:9402`): `/metrics` in OpenMetrics text format,
//! `/healthz` (the process answers) and `/readyz` (every watch has listed its objects once, none
//! of them is failing, and the controller is not shutting down).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, warn};

use super::metrics::{CONTENT_TYPE, Metrics};

/// Whether the controller is ready: each watch reports its first complete list and its
/// failures, shutdown reports itself. A standby replica waiting for the leader election lease
/// is ready: waiting is its job, and a rolling update must be able to count it.
#[derive(Debug, Default)]
pub struct Readiness {
    /// The watches of the current leadership term.
    watches: Mutex<Vec<(String, SyncFlag, WatchHealth)>>,
    /// The watches every replica runs for the whole process (the PKI endpoint's).
    process_watches: Mutex<Vec<(String, WatchHealth)>>,
    standby: AtomicBool,
    shutting_down: AtomicBool,
}

/// A watch fails this many times in a row before `/readyz` says so: one error (a watch expired,
/// a connection reset) is retried at once and is no news.
pub const FAILING_AFTER_ERRORS: u32 = 3;
/// A watch whose last failure is this old, with no newer one, is taken to have recovered: its
/// backoff retries at least every 5 s, so a watch still failing has failed again by then. (A
/// watch re-established after failing says nothing until the next change it carries.)
pub const RECOVERED_AFTER: Duration = Duration::from_secs(15);

/// Whether a watch can serve its cache. It "cannot list" when its last FAILING_AFTER_ERRORS
/// attempts to list or watch all failed, and then until it lists completely again (when the
/// last failure was a list) or receives an event, or RECOVERED_AFTER passes without a failure
/// (when the list succeeded and only re-watching failed).
#[derive(Clone, Debug, Default)]
pub struct WatchHealth(Arc<Mutex<HealthState>>);

#[derive(Debug, Default)]
struct HealthState {
    errors_in_a_row: u32,
    last_error: Option<tokio::time::Instant>,
    /// The last list attempt failed, and none has completed since.
    list_failed: bool,
}

impl WatchHealth {
    /// The watch delivered something: an object, or (`listed`) the end of a complete list.
    pub fn progressed(&self, listed: bool) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        state.errors_in_a_row = 0;
        if listed {
            state.list_failed = false;
        }
    }

    /// The watch failed; `listing` when it was its list that failed.
    pub fn failed(&self, listing: bool) {
        let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        state.errors_in_a_row = state.errors_in_a_row.saturating_add(1);
        state.last_error = Some(tokio::time::Instant::now());
        if listing {
            state.list_failed = true;
        }
    }

    /// Whether the watch cannot serve its cache now (see the type).
    pub fn failing(&self) -> bool {
        let state = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if state.errors_in_a_row < FAILING_AFTER_ERRORS {
            return false;
        }
        state.list_failed || state.last_error.is_some_and(|at| at.elapsed() < RECOVERED_AFTER)
    }
}

/// Set once the watch it belongs to has listed every object; any number of tasks may wait for
/// it, and every one of them is woken.
///
/// Not kube's `Store::wait_until_ready`: in kube-runtime 5 a store's readiness is a
/// `DelayedInit` over a oneshot receiver, which keeps a single waker, so of several tasks
/// waiting on one store only the last to poll is woken (the Controller's own runner is always
/// one of them). Against a real API server `/readyz` then never turned 200. A tokio `watch`
/// channel wakes every receiver.
#[derive(Clone, Debug)]
pub struct SyncFlag(Arc<watch::Sender<bool>>);

impl Default for SyncFlag {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(false)))
    }
}

impl SyncFlag {
    pub fn synced(&self) {
        self.0.send_replace(true);
    }

    pub fn is_synced(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once `synced` has been called, at once if it already was.
    pub async fn wait(&self) {
        let mut synced = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = synced.wait_for(|synced| *synced).await;
    }
}

impl Readiness {
    /// Registers a watch that must sync before the controller is ready.
    pub fn watch(&self, name: impl Into<String>) -> SyncFlag {
        self.watch_with_health(name).0
    }

    /// Registers a watch of this leadership term that must sync, and must not be failing, for
    /// the controller to be ready.
    pub fn watch_with_health(&self, name: impl Into<String>) -> (SyncFlag, WatchHealth) {
        let flag = SyncFlag::default();
        let health = WatchHealth::default();
        self.watches.lock().unwrap_or_else(|p| p.into_inner()).push((
            name.into(),
            flag.clone(),
            health.clone(),
        ));
        (flag, health)
    }

    /// Registers a watch every replica runs, leading or not: the replica is not ready while it
    /// is failing.
    pub fn process_watch(&self, name: impl Into<String>) -> WatchHealth {
        let health = WatchHealth::default();
        self.process_watches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((name.into(), health.clone()));
        health
    }

    /// This replica waits for the lease; ready as it is.
    pub fn standby(&self) {
        self.watches.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.standby.store(true, Ordering::Release);
    }

    /// This replica starts leading: ready once the watches it now starts have listed.
    pub fn lead(&self) {
        self.watches.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.standby.store(false, Ordering::Release);
    }

    /// From now on the controller is not ready.
    pub fn shutting_down(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// Ok when ready; otherwise why not, in one line.
    pub fn check(&self) -> Result<(), String> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err("shutting down".into());
        }
        let mut failing: Vec<String> = self
            .process_watches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, health)| health.failing())
            .map(|(n, _)| n.clone())
            .collect();
        let standby = self.standby.load(Ordering::Acquire);
        let watches = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        if !standby {
            failing.extend(
                watches
                    .iter()
                    .filter(|(_, _, health)| health.failing())
                    .map(|(n, _, _)| n.clone()),
            );
        }
        if !failing.is_empty() {
            return Err(format!("cannot list: {}", failing.join(", ")));
        }
        if standby {
            return Ok(());
        }
        if watches.is_empty() {
            return Err("no watch started yet".into());
        }
        let waiting: Vec<&str> = watches
            .iter()
            .filter(|(_, flag, _)| !flag.is_synced())
            .map(|(n, _, _)| n.as_str())
            .collect();
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(format!("waiting for the initial list of: {}", waiting.join(", ")))
        }
    }
}

/// What the endpoint serves.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
}

fn text(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

const PLAIN: &str = "text/plain; charset=utf-8";

impl Endpoint {
    /// Answers one request.
    pub fn respond(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        if method != Method::GET && method != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "only GET\n".into());
        }
        match path {
            "/metrics" => match self.metrics.encode() {
                Ok(body) => text(StatusCode::OK, CONTENT_TYPE, body),
                Err(e) => text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    PLAIN,
                    format!("cannot encode metrics: {e}\n"),
                ),
            },
            "/healthz" => text(StatusCode::OK, PLAIN, "ok\n".into()),
            "/readyz" => match self.readiness.check() {
                Ok(()) => text(StatusCode::OK, PLAIN, "ok\n".into()),
                Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, PLAIN, format!("{why}\n")),
            },
            _ => text(StatusCode::NOT_FOUND, PLAIN, "not found\n".into()),
        }
    }

    /// Serves on `listener` until the process ends.
    pub async fn serve(self, listener: TcpListener) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "metrics endpoint: accept failed");
                    continue;
                }
            };
            let endpoint = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let response = endpoint.respond(req.method(), req.uri().path());
                    async move { Ok::<_, Infallible>(response) }
                });
                if let Err(e) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    debug!(%peer, error = %e, "metrics endpoint: connection ended with an error");
                }
            });
        }
    }
}

/// Binds the endpoint's address; a failure is a start-up error, reported before anything runs.
/// The IPv6 wildcard falls back to the IPv4 one on a host without IPv6.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    match TcpListener::bind(address).await {
        Err(e) if address.ip() == std::net::Ipv6Addr::UNSPECIFIED => {
            let v4 = SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, address.port()));
            debug!(error = %e, "no IPv6; listening on {v4}");
            TcpListener::bind(v4).await
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_after_every_watch_synced_and_not_while_shutting_down() {
        let readiness = Readiness::default();
        assert!(readiness.check().is_err(), "nothing started");
        let certificates = readiness.watch("certificates");
        let issuers = readiness.watch("issuers");
        assert_eq!(
            readiness.check(),
            Err("waiting for the initial list of: certificates, issuers".into())
        );
        certificates.synced();
        assert_eq!(
            readiness.check(),
            Err("waiting for the initial list of: issuers".into())
        );
        issuers.synced();
        assert_eq!(readiness.check(), Ok(()));
        readiness.shutting_down();
        assert_eq!(readiness.check(), Err("shutting down".into()));
    }

    /// "Cannot list": the last three attempts failed. One or two failures are retried and are
    /// no news; a failed list counts until a list completes; a watch that could not be
    /// re-established counts until it delivers or stays quiet for RECOVERED_AFTER.
    #[tokio::test(start_paused = true)]
    async fn a_watch_is_failing_only_after_three_failures_in_a_row_until_it_recovers() {
        let readiness = Readiness::default();
        let (synced, health) = readiness.watch_with_health("certificates");
        synced.synced();
        health.failed(false);
        health.failed(false);
        assert_eq!(readiness.check(), Ok(()), "two failures flapped /readyz");
        health.progressed(false);
        health.failed(false);
        health.failed(false);
        assert_eq!(readiness.check(), Ok(()), "the streak was not reset by an event");
        health.failed(false);
        assert_eq!(readiness.check(), Err("cannot list: certificates".into()));
        // Re-established, quiet: recovered once no failure came for RECOVERED_AFTER.
        tokio::time::advance(RECOVERED_AFTER).await;
        assert_eq!(readiness.check(), Ok(()));

        // Lists failing: not ready until a list completes, however long that takes.
        for _ in 0..3 {
            health.failed(true);
        }
        tokio::time::advance(RECOVERED_AFTER * 4).await;
        assert_eq!(readiness.check(), Err("cannot list: certificates".into()));
        health.progressed(true);
        assert_eq!(readiness.check(), Ok(()));

        // A process watch (the PKI endpoint's) counts for a standby too.
        readiness.standby();
        let crls = readiness.process_watch("CRL configmaps");
        for _ in 0..3 {
            crls.failed(true);
        }
        assert_eq!(readiness.check(), Err("cannot list: CRL configmaps".into()));
    }

    #[tokio::test]
    async fn serves_metrics_over_http_on_its_listener() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let address = listener.local_addr().unwrap();
        let endpoint = Endpoint {
            metrics: Arc::new(crate::testing::metrics(vec![], vec![], vec![])),
            readiness: Arc::new(Readiness::default()),
        };
        let server = tokio::spawn(endpoint.serve(listener));
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        server.abort();
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(
            response.contains("certkeeper_clock_time_seconds 1795435200"),
            "{response}"
        );
        assert!(response.trim_end().ends_with("# EOF"));
    }

    #[test]
    fn a_standby_replica_is_ready_and_a_new_leader_waits_for_its_watches() {
        let readiness = Readiness::default();
        readiness.standby();
        assert_eq!(readiness.check(), Ok(()));
        readiness.lead();
        let certificates = readiness.watch("certificates");
        assert!(readiness.check().is_err());
        certificates.synced();
        assert_eq!(readiness.check(), Ok(()));
        // Lease lost, then won again: the new term's watches list afresh.
        readiness.standby();
        readiness.lead();
        let again = readiness.watch("certificates");
        assert!(readiness.check().is_err());
        again.synced();
        assert_eq!(readiness.check(), Ok(()));
    }

    #[test]
    fn endpoints_answer_with_the_right_status_codes() {
        let endpoint = Endpoint {
            metrics: Arc::new(crate::testing::metrics(vec![], vec![], vec![])),
            readiness: Arc::new(Readiness::default()),
        };
        let status = |path: &str| endpoint.respond(&Method::GET, path).status();
        assert_eq!(status("/healthz"), StatusCode::OK);
        assert_eq!(status("/readyz"), StatusCode::SERVICE_UNAVAILABLE);
        endpoint.readiness.watch("certificates").synced();
        assert_eq!(status("/readyz"), StatusCode::OK);
        assert_eq!(status("/metrics"), StatusCode::OK);
        assert_eq!(status("/nope"), StatusCode::NOT_FOUND);
        assert_eq!(
            endpoint.respond(&Method::POST, "/metrics").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
        let metrics = endpoint.respond(&Method::GET, "/metrics");
        assert_eq!(metrics.headers().get(header::CONTENT_TYPE).unwrap(), CONTENT_TYPE);
    }
}
