//! Reaching the API server at start-up, with the standard kubeconfig resolution.

use std::time::Duration;

use kube::Client;

use super::RunError;

/// How long to wait for the API server to answer at start-up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

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
    let client = Client::try_from(config).map_err(|e| RunError::Unreachable {
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
