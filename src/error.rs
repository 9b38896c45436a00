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
    #[error("updating the status of {kind} {object}: {source}")]
    PatchStatus {
        kind: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("the issuance task for Certificate {object} did not finish: {reason}")]
    IssuanceTask { object: String, reason: String },
    #[error("{kind} {object} has no {field}")]
    MissingField {
        kind: &'static str,
        object: String,
        field: &'static str,
    },
}

impl Error {
    /// A short, bounded label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::ReadSecret { .. } => "read_secret",
            Self::ApplySecret { .. } => "apply_secret",
            Self::PatchStatus { .. } => "patch_status",
            Self::IssuanceTask { .. } => "issuance_task",
            Self::MissingField { .. } => "missing_field",
        }
    }
}
