//! Errors of the controllers: each says what failed and on which object.

/// A reconcile failure that the error policy turns into a retry with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading Secret {namespace}/{name}: {source}")]
    ReadSecret {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing Secret {namespace}/{name}: {source}")]
    ApplySecret {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing CertificateRevocation {namespace}/{name}: {source}")]
    ApplyRevocation {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing ConfigMap {namespace}/{name}: {source}")]
    ApplyConfigMap {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("reading {kind} {object}: {source}")]
    ReadIssuer {
        kind: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("reading ConfigMap {namespace}/{name}: {source}")]
    ReadConfigMap {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{kind} {object}: cannot sign its CRL: {reason}")]
    SignCrl {
        kind: &'static str,
        object: String,
        reason: String,
    },
    #[error("updating the status of {kind} {object}: {source}")]
    PatchStatus {
        kind: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing the {kind} target {namespace}/{name} of a Bundle: {source}")]
    ApplyTarget {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("removing the {kind} target {namespace}/{name} of a Bundle: {source}")]
    DeleteTarget {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("encoding the PKCS#12 truststore of Bundle {object}: {reason}")]
    EncodeTruststore { object: String, reason: String },
    #[error("the issuance task for Certificate {object} did not finish: {reason}")]
    IssuanceTask { object: String, reason: String },
    #[error("{kind} {object} has no {field}")]
    MissingField {
        kind: &'static str,
        object: String,
        field: &'static str,
    },
}

/// Whether a request failed because the API server could not serve it right now (not
/// reachable, overloaded, restarting, timing out), rather than because of what was asked.
pub fn is_unavailable(error: &kube::Error) -> bool {
    match error {
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        kube::Error::Api(status) => matches!(status.code, 409 | 429 | 500 | 502 | 503 | 504),
        _ => false,
    }
}

impl Error {
    /// Whether the API server refused the write with 409 Conflict: the object was not what the
    /// write's precondition said.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            Self::ApplySecret {
                source: kube::Error::Api(status),
                ..
            } if status.code == 409
        )
    }

    /// Whether the API server refused to create the Secret because its namespace is being
    /// deleted (403, cause `NamespaceTerminating`): the Certificate goes with it, nothing failed.
    pub fn namespace_terminating(&self) -> bool {
        let Self::ApplySecret {
            source: kube::Error::Api(status),
            ..
        } = self
        else {
            return false;
        };
        status.code == 403
            && status
                .details
                .as_ref()
                .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
    }

    /// Whether the API server, not the object, made this reconcile fail: it is retried within
    /// seconds and is not a failure of the object.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::ReadSecret { source, .. }
            | Self::ApplySecret { source, .. }
            | Self::PatchStatus { source, .. }
            | Self::ReadConfigMap { source, .. }
            | Self::ReadIssuer { source, .. }
            | Self::ApplyTarget { source, .. }
            | Self::DeleteTarget { source, .. }
            | Self::ApplyRevocation { source, .. }
            | Self::ApplyConfigMap { source, .. } => is_unavailable(source),
            Self::IssuanceTask { .. }
            | Self::MissingField { .. }
            | Self::EncodeTruststore { .. }
            | Self::SignCrl { .. } => false,
        }
    }

    /// A short, bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::ReadSecret { .. } => "read_secret",
            Self::ApplySecret { .. } => "apply_secret",
            Self::PatchStatus { .. } => "patch_status",
            Self::ApplyRevocation { .. } => "apply_revocation",
            Self::ApplyConfigMap { .. } => "apply_configmap",
            Self::ReadConfigMap { .. } => "read_configmap",
            Self::ReadIssuer { .. } => "read_issuer",
            Self::SignCrl { .. } => "sign_crl",
            Self::IssuanceTask { .. } => "issuance_task",
            Self::MissingField { .. } => "missing_field",
            Self::ApplyTarget { .. } => "apply_target",
            Self::DeleteTarget { .. } => "delete_target",
            Self::EncodeTruststore { .. } => "encode_truststore",
        }
    }
}
