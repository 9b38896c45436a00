//! Reaching the API server at start-up, with the standard kubeconfig resolution.

use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::{Body, ConfigExt};
use kube::{Client, Config};
use tower::ServiceBuilder;
use tower::retry::RetryLayer;

use super::RunError;

/// How long to wait for the API server to answer at start-up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a connection to the API server may stay idle before it is closed. kube's own
/// client keeps every connection a burst of requests opened, for good (it sets no pool timer):
/// after a restart over 10,000 Certificates, 92 connections, 57 KB each with TLS (3.3 MiB, on
/// the local kube-apiserver). Connections in use (every watch) are not idle; a request after a
/// quiet spell pays one TLS handshake.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// A client whose API server answered.
pub struct Connected {
    pub client: Client,
    pub server: String,
    pub version: String,
}

/// Builds a client with the standard resolution (in-cluster, then KUBECONFIG / ~/.kube/config)
/// and checks the API server answers.
pub async fn connect() -> Result<Connected, RunError> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| RunError::NoConfig(e.to_string()))?;
    let url = config.cluster_url.to_string();
    let client = client(config).map_err(|e| RunError::Unreachable {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    match tokio::time::timeout(CONNECT_TIMEOUT, client.apiserver_version()).await {
        Ok(Ok(version)) => Ok(Connected {
            client,
            server: url,
            version: version.git_version,
        }),
        Ok(Err(e)) => Err(RunError::Unreachable {
            url,
            reason: e.to_string(),
        }),
        Err(_) => Err(RunError::Unreachable {
            url,
            reason: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
        }),
    }
}

/// The API client: kube's own stack (`ClientBuilder::try_from`: timeouts, base URI, retries of
/// 429/503/504, authentication, extra headers), with idle connections closed after
/// [`IDLE_TIMEOUT`]. A proxy, or an exec plugin (whose client certificates expire and make kube
/// rebuild its client), is left to kube's builder as it is.
pub fn client(config: Config) -> Result<Client, kube::Error> {
    client_closing_idle_after(config, IDLE_TIMEOUT)
}

fn client_closing_idle_after(config: Config, idle: Duration) -> Result<Client, kube::Error> {
    if config.proxy_url.is_some() || config.auth_info.exec.is_some() {
        return Client::try_from(config);
    }
    // As kube's builder does: the process' TLS provider, unless one is installed already.
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let https = config.rustls_https_connector_with_connector(http)?;
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let hyper: hyper_util::client::legacy::Client<_, Body> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(idle)
            .pool_timer(TokioTimer::new())
            .build(connector);
    let retry = config
        .default_retry
        .then(|| RetryLayer::new(kube::client::retry::RetryPolicy::server_retry()));
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(retry)
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(hyper);
    Ok(Client::new(service, config.default_namespace))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A plain-HTTP stand-in answering `/version`, counting the connections open to it.
    async fn server() -> (String, Arc<AtomicUsize>) {
        use hyper::server::conn::http1;
        use hyper::service::service_fn;
        use hyper_util::rt::TokioIo;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let open = Arc::new(AtomicUsize::new(0));
        let counted = open.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let open = counted.clone();
                open.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let answer = service_fn(|_| async {
                        let body = r#"{"major":"1","minor":"35","gitVersion":"v1.35.0","gitCommit":"","gitTreeState":"","buildDate":"2026-01-01T00:00:00Z","goVersion":"go","compiler":"gc","platform":"linux/amd64"}"#;
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
                            hyper::body::Bytes::from(body),
                        )))
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), answer)
                        .await;
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        (url, open)
    }

    /// The connection a request opened is closed once idle for the timeout; kube's own builder
    /// keeps it for good, which is what this replaces.
    #[tokio::test]
    async fn an_idle_connection_is_closed_after_the_timeout() {
        let (url, open) = server().await;
        let config = Config::new(url.parse().unwrap());
        let client = client_closing_idle_after(config.clone(), Duration::from_millis(200)).unwrap();
        assert_eq!(client.apiserver_version().await.unwrap().git_version, "v1.35.0");
        assert_eq!(open.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(open.load(Ordering::SeqCst), 0, "the idle connection is closed");
        // And reopened when needed.
        assert_eq!(client.apiserver_version().await.unwrap().git_version, "v1.35.0");

        let (url, open) = server().await;
        let kube_default = Client::try_from(Config::new(url.parse().unwrap())).unwrap();
        kube_default.apiserver_version().await.unwrap();
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(open.load(Ordering::SeqCst), 1, "kube's builder keeps it");
    }

    /// Behind a proxy kube's own builder is used as it is: here, built without kube's proxy
    /// feature, it refuses the same way.
    #[tokio::test]
    async fn a_proxy_is_left_to_kube() {
        let mut config = Config::new("https://10.0.0.1:6443".parse().unwrap());
        config.proxy_url = Some("http://proxy.example:3128".parse().unwrap());
        let ours = client(config.clone()).err().map(|e| e.to_string());
        let kubes = Client::try_from(config).err().map(|e| e.to_string());
        assert!(ours.is_some());
        assert_eq!(ours, kubes);
    }
}
