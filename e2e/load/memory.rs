//! The controller's memory during a run: scraping `process_resident_memory_bytes` from its
//! `/metrics` every 500 ms, directly or through the API server's pod proxy, and keeping the peak.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::cluster::describe;

/// The gauge sampled: the standard process metric, which the controller exports.
pub const METRIC: &str = "process_resident_memory_bytes";
/// The controller's metrics port (`--metrics-bind-address` default `:9402`).
const CONTROLLER_METRICS_PORT: u16 = 9402;
const SAMPLE_INTERVAL: Duration = Duration::from_millis(500);
/// A scrape slower than this is a failed sample, so one hung pod does not stall the others.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// Metrics of a few thousand Certificates are a few MB; anything far beyond is not metrics.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

/// The value of `metric` without labels or with any labels, as the largest of its samples;
/// None when the text has no finite sample of it. Reads Prometheus and OpenMetrics text alike:
/// comments, `# EOF`, label sets (quoted values may hold `}`), optional timestamps.
pub fn gauge_value(text: &str, metric: &str) -> Option<f64> {
    text.lines()
        .filter_map(|line| sample_value(line, metric))
        .reduce(f64::max)
}

fn sample_value(line: &str, metric: &str) -> Option<f64> {
    let line = line.trim();
    if line.starts_with('#') {
        return None;
    }
    let rest = line.strip_prefix(metric)?;
    let rest = match rest.strip_prefix('{') {
        Some(labels) => after_labels(labels)?,
        // Anything else after the name is a longer name, such as `..._bytes_total`.
        None if rest.starts_with([' ', '\t']) => rest,
        None => return None,
    };
    let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
    value.is_finite().then_some(value)
}

/// What follows the `}` that closes a label set, quotes and escapes respected.
fn after_labels(labels: &str) -> Option<&str> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in labels.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(&labels[i + 1..]),
            _ => {}
        }
    }
    None
}

/// A plain-HTTP metrics URL (`http://host[:port][/path]`, path default `/metrics`). The
/// controller serves plain HTTP, and a laptop or in-cluster address needs nothing more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsUrl {
    /// What goes into the Host header: host and port as written.
    authority: String,
    host: String,
    port: u16,
    path: String,
}

impl MetricsUrl {
    pub fn parse(value: &str) -> Result<Self, String> {
        let Some(rest) = value.strip_prefix("http://") else {
            return Err(format!(
                "{value:?} is not a plain http:// URL such as http://127.0.0.1:9402/metrics (the controller serves plain HTTP)"
            ));
        };
        let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        let path = if path.is_empty() || path.starts_with('?') {
            format!("/metrics{path}")
        } else {
            path.to_owned()
        };
        let bad_port = |_| format!("{value:?}: the port is not a number from 0 to 65535");
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            // An IPv6 literal: [::1]:9402.
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| format!("{value:?}: unclosed [ in the host"))?;
            match after.strip_prefix(':') {
                Some(port) => (host, port.parse().map_err(bad_port)?),
                None if after.is_empty() => (host, 80),
                None => return Err(format!("{value:?}: unexpected {after:?} after the host")),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, port.parse().map_err(bad_port)?),
                None => (authority, 80),
            }
        };
        if host.is_empty() {
            return Err(format!("{value:?} has no host"));
        }
        Ok(Self {
            authority: authority.to_owned(),
            host: host.to_owned(),
            port,
            path,
        })
    }

    /// The GET request, HTTP/1.0 so the answer is never chunked and ends when the connection does.
    fn request(&self) -> String {
        format!(
            "GET {} HTTP/1.0\r\nHost: {}\r\nAccept: text/plain\r\nUser-Agent: certkeeper-load\r\n\r\n",
            self.path, self.authority
        )
    }

    async fn get(&self) -> Result<String, String> {
        let mut stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connect to {}: {e}", self.authority))?;
        stream
            .write_all(self.request().as_bytes())
            .await
            .map_err(|e| format!("send the request to {}: {e}", self.authority))?;
        let mut response = Vec::new();
        (&mut stream)
            .take(MAX_RESPONSE_BYTES)
            .read_to_end(&mut response)
            .await
            .map_err(|e| format!("read the answer of {}: {e}", self.authority))?;
        http_body(&response).map(str::to_owned)
    }
}

impl fmt::Display for MetricsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.authority, self.path)
    }
}

/// The body of an HTTP/1.x response with status 200.
fn http_body(response: &[u8]) -> Result<&str, String> {
    let text = std::str::from_utf8(response).map_err(|_| "the answer is not UTF-8 text".to_owned())?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "the answer is not an HTTP response".to_owned())?;
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let code = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .ok_or_else(|| format!("the answer starts with {status_line:?}, not an HTTP status line"))?;
    if code != "200" {
        return Err(format!(
            "HTTP {}",
            status_line.split_once(' ').map_or(code, |(_, s)| s)
        ));
    }
    if lines.any(|h| h.to_ascii_lowercase().starts_with("transfer-encoding:")) {
        return Err("the answer has a transfer encoding, which an HTTP/1.0 request does not expect".into());
    }
    Ok(body)
}

/// `GET` of a pod's port through the API server: needs `get pods/proxy` in that namespace,
/// and nothing on the laptop but the kubeconfig.
fn pod_metrics_path(namespace: &str, pod: &str, port: u16) -> String {
    format!("/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy/metrics")
}

/// Where the controller's metrics come from.
pub enum MetricsSource {
    Url(MetricsUrl),
    /// Every running pod the selector matches, through the API server's pod proxy.
    Pods {
        client: Client,
        namespace: String,
        selector: String,
    },
}

/// The peak seen so far, over time and over pods, and what went wrong with the samples that
/// failed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeakMemory {
    peak: Option<f64>,
    /// The pods (or the URL) that gave at least one sample.
    sampled: BTreeSet<String>,
    last_error: Option<String>,
    warned: bool,
}

impl PeakMemory {
    pub fn peak_bytes(&self) -> Option<f64> {
        self.peak
    }

    /// How many pods (or URLs) gave at least one sample.
    pub fn sampled(&self) -> usize {
        self.sampled.len()
    }

    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Records one scrape of `target`: its gauge value or why there is none. Returns a warning
    /// to print the first time a scrape fails, so a run that cannot measure memory says so
    /// early rather than only at the end.
    pub fn record(&mut self, target: &str, result: Result<f64, String>) -> Option<String> {
        match result {
            Ok(bytes) => {
                self.peak = Some(self.peak.map_or(bytes, |peak| peak.max(bytes)));
                self.sampled.insert(target.to_owned());
                None
            }
            Err(why) => {
                let error = format!("{target}: {why}");
                self.last_error = Some(error.clone());
                (!std::mem::replace(&mut self.warned, true)).then_some(error)
            }
        }
    }
}

/// Samples the controller's memory in the background until dropped.
pub struct Sampler {
    peak: Arc<Mutex<PeakMemory>>,
    task: JoinHandle<()>,
}

impl Sampler {
    pub fn start(source: MetricsSource) -> Self {
        let peak = Arc::new(Mutex::new(PeakMemory::default()));
        let task = tokio::spawn(sample(source, peak.clone()));
        Self { peak, task }
    }

    pub fn snapshot(&self) -> PeakMemory {
        self.peak.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn sample(source: MetricsSource, peak: Arc<Mutex<PeakMemory>>) {
    let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
    // A slow scrape delays the next one instead of causing a burst.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pods: Vec<String> = Vec::new();
    loop {
        tick.tick().await;
        let results = scrape_round(&source, &mut pods).await;
        let mut peak = peak.lock().unwrap_or_else(|p| p.into_inner());
        for (target, result) in results {
            if let Some(warning) = peak.record(&target, result) {
                eprintln!(
                    "certkeeper-load: cannot sample the controller's memory (will keep trying): {warning}"
                );
            }
        }
    }
}

/// One sample of every target: (what was scraped, its gauge value or why none). `pods` is the
/// pod list kept between rounds.
async fn scrape_round(source: &MetricsSource, pods: &mut Vec<String>) -> Vec<(String, Result<f64, String>)> {
    match source {
        MetricsSource::Url(url) => {
            let result = within_timeout(url.get()).await;
            vec![(url.to_string(), result.and_then(|text| value_in(&text)))]
        }
        MetricsSource::Pods {
            client,
            namespace,
            selector,
        } => {
            if pods.is_empty() {
                match controller_pods(client, namespace, selector).await {
                    Ok(found) => *pods = found,
                    Err(why) => return vec![(format!("pods {selector} in namespace {namespace}"), Err(why))],
                }
            }
            let scrapes = pods.iter().map(|pod| async move {
                let result = within_timeout(scrape_pod(client, namespace, pod)).await;
                (
                    format!("pod {namespace}/{pod}"),
                    result.and_then(|text| value_in(&text)),
                )
            });
            let results = futures::future::join_all(scrapes).await;
            // A pod that failed may be gone (rollout, restart): list again next time.
            if results.iter().any(|(_, r)| r.is_err()) {
                pods.clear();
            }
            results
        }
    }
}

async fn within_timeout(scrape: impl Future<Output = Result<String, String>>) -> Result<String, String> {
    tokio::time::timeout(SCRAPE_TIMEOUT, scrape)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", SCRAPE_TIMEOUT.as_secs())))
}

fn value_in(text: &str) -> Result<f64, String> {
    gauge_value(text, METRIC).ok_or_else(|| format!("the metrics have no {METRIC} sample"))
}

/// Names of the running pods `selector` matches.
async fn controller_pods(client: &Client, namespace: &str, selector: &str) -> Result<Vec<String>, String> {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(selector))
        .await
        .map_err(|e| format!("list pods: {}", describe(&e)))?;
    let running: Vec<String> = pods
        .items
        .iter()
        .filter(|pod| pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .map(|pod| pod.name_any())
        .collect();
    if running.is_empty() {
        return Err(format!(
            "no running pod matches {selector} in namespace {namespace} (controller run elsewhere? pass --metrics-url)"
        ));
    }
    Ok(running)
}

async fn scrape_pod(client: &Client, namespace: &str, pod: &str) -> Result<String, String> {
    let request = http::Request::get(pod_metrics_path(namespace, pod, CONTROLLER_METRICS_PORT))
        .header(http::header::ACCEPT, "text/plain")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    client.request_text(request).await.map_err(|e| describe(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENMETRICS: &str = "\
# HELP certkeeper_clock_time_seconds The controller's clock, as a Unix time
# TYPE certkeeper_clock_time_seconds gauge
# UNIT certkeeper_clock_time_seconds seconds
certkeeper_clock_time_seconds 1767225600
# HELP process_resident_memory_bytes Resident memory of the controller process.
# TYPE process_resident_memory_bytes gauge
# UNIT process_resident_memory_bytes bytes
process_resident_memory_bytes 43200512
# EOF
";

    #[test]
    fn reads_the_gauge_from_openmetrics_text() {
        assert_eq!(gauge_value(OPENMETRICS, METRIC), Some(43_200_512.0));
    }

    #[test]
    fn comments_and_eof_are_not_samples() {
        let text = "# process_resident_memory_bytes 1\n# EOF\n";
        assert_eq!(gauge_value(text, METRIC), None);
    }

    #[test]
    fn reads_labelled_samples_and_keeps_the_largest() {
        let text = "\
process_resident_memory_bytes{pod=\"a\"} 1.5e7
process_resident_memory_bytes{pod=\"b}\",note=\"quote \\\" inside\"} 2.5e+07 1767225600000
process_resident_memory_bytes{} 100
";
        assert_eq!(gauge_value(text, METRIC), Some(25_000_000.0));
    }

    #[test]
    fn longer_names_and_broken_values_are_not_the_gauge() {
        let text = "\
process_resident_memory_bytes_total 999999999
process_resident_memory_bytes_max 999999999
process_resident_memory_bytes NaN
process_resident_memory_bytes{unclosed=\"x\" 5
process_resident_memory_bytes 12345
";
        assert_eq!(gauge_value(text, METRIC), Some(12345.0));
        assert_eq!(
            gauge_value("process_resident_memory_bytes  \t 7\r\n", METRIC),
            Some(7.0)
        );
        assert_eq!(gauge_value("", METRIC), None);
    }

    #[test]
    fn metrics_urls_are_plain_http_with_metrics_as_the_default_path() {
        let url = MetricsUrl::parse("http://127.0.0.1:9402/metrics").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("127.0.0.1", 9402, "/metrics")
        );
        assert_eq!(url.to_string(), "http://127.0.0.1:9402/metrics");
        assert_eq!(
            url.request(),
            "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1:9402\r\nAccept: text/plain\r\nUser-Agent: certkeeper-load\r\n\r\n"
        );

        let bare = MetricsUrl::parse("http://certkeeper.certkeeper-system.svc").unwrap();
        assert_eq!((bare.port, bare.path.as_str()), (80, "/metrics"));
        let v6 = MetricsUrl::parse("http://[::1]:9402").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 9402));
        assert_eq!(v6.to_string(), "http://[::1]:9402/metrics");

        assert!(MetricsUrl::parse("https://127.0.0.1:9402/metrics").is_err());
        assert!(MetricsUrl::parse("127.0.0.1:9402").is_err());
        assert!(MetricsUrl::parse("http://:9402/metrics").is_err());
        assert!(MetricsUrl::parse("http://localhost:http/metrics").is_err());
    }

    #[test]
    fn only_a_200_answer_has_a_body() {
        let ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/openmetrics-text\r\n\r\nprocess_resident_memory_bytes 1\n";
        assert_eq!(http_body(ok), Ok("process_resident_memory_bytes 1\n"));
        assert_eq!(
            http_body(b"HTTP/1.0 404 Not Found\r\n\r\nnope"),
            Err("HTTP 404 Not Found".to_owned())
        );
        assert!(http_body(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(
            http_body(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
                .is_err()
        );
    }

    #[test]
    fn pod_proxy_path_names_the_port() {
        assert_eq!(
            pod_metrics_path("certkeeper-system", "certkeeper-7d9f-abcde", 9402),
            "/api/v1/namespaces/certkeeper-system/pods/certkeeper-7d9f-abcde:9402/proxy/metrics"
        );
    }

    #[test]
    fn the_peak_is_the_maximum_over_time_and_pods_and_the_first_failure_warns_once() {
        let mut peak = PeakMemory::default();
        assert_eq!(peak.peak_bytes(), None);
        assert_eq!(
            peak.record("pod a", Err("HTTP 503".into())),
            Some("pod a: HTTP 503".into())
        );
        assert_eq!(
            peak.record("pod b", Err("timeout".into())),
            None,
            "warned already"
        );
        assert_eq!(peak.record("pod a", Ok(10.0)), None);
        peak.record("pod b", Ok(30.0));
        peak.record("pod a", Ok(20.0));
        assert_eq!(peak.peak_bytes(), Some(30.0));
        assert_eq!(peak.sampled(), 2);
        assert_eq!(peak.last_error(), Some("pod b: timeout"));
    }

    #[tokio::test]
    async fn a_metrics_url_is_scraped_over_plain_http() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 1024];
            let n = socket.read(&mut request).await.unwrap();
            let request = String::from_utf8_lossy(&request[..n]).into_owned();
            socket
                .write_all(format!("HTTP/1.0 200 OK\r\n\r\n{OPENMETRICS}").as_bytes())
                .await
                .unwrap();
            request
        });
        let url = MetricsUrl::parse(&format!("http://127.0.0.1:{port}/metrics")).unwrap();
        let text = url.get().await.unwrap();
        assert_eq!(value_in(&text), Ok(43_200_512.0));
        assert!(server.await.unwrap().starts_with("GET /metrics HTTP/1.0\r\n"));
    }

    #[tokio::test]
    async fn a_closed_port_is_a_failed_sample_not_a_crash() {
        // Bind and drop to get a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = MetricsUrl::parse(&format!("http://127.0.0.1:{port}/metrics")).unwrap();
        let err = within_timeout(url.get()).await.unwrap_err();
        assert!(
            err.starts_with(&format!("connect to 127.0.0.1:{port}: ")),
            "{err}"
        );
    }
}
