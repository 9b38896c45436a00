//! The audit trail of CA signatures (issue 23, item 6): every signature a CA issuer's key makes
//! (a certificate, a CRL, an OCSP response), whichever holds the key, is one line on the log
//! target `certkeeper::audit` (one JSON object per line with `--log-format json`, as the install
//! runs) and is counted in `certkeeper_ca_signatures_total{backend,signed,result}` and timed in
//! `certkeeper_ca_sign_duration_seconds{backend}`. The line says what was signed, by which CA
//! (its certificate's fingerprint), for whom and how long it took; never a key, a PIN or the
//! signature.

use std::time::Duration;

use tracing::{info, warn};

use super::metrics::Metrics;

/// The log target of the audit lines: `RUST_LOG=certkeeper::audit=info` keeps them alone.
pub const TARGET: &str = "certkeeper::audit";

/// Where a CA's key is: a Secret's `tls.key` (the only backend so far).
pub const BACKEND_SECRET: &str = "secret";

/// What a CA signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signed {
    Certificate,
    Crl,
    OcspResponse,
}

impl Signed {
    pub fn label(self) -> &'static str {
        match self {
            Self::Certificate => "certificate",
            Self::Crl => "crl",
            Self::OcspResponse => "ocsp",
        }
    }
}

/// One CA signature, as the audit line says it.
#[derive(Clone, Copy, Debug)]
pub struct CaSignature<'a> {
    pub signed: Signed,
    /// The issuer whose CA signed: `Issuer ns/name` or `ClusterIssuer name`.
    pub issuer: &'a str,
    /// SHA-256 fingerprint of the CA certificate.
    pub ca: &'a str,
    /// The serial of the certificate signed, the CRL's number, or the serial an OCSP response
    /// answers for ("" when the request named none).
    pub serial: &'a str,
    /// For whom: the Certificate (`ns/name`) a certificate was issued for, the PKI endpoint for
    /// an OCSP response, the issuer itself for its CRL.
    pub requester: &'a str,
    pub backend: &'static str,
}

/// Records `signature`, which took `elapsed` and failed with `error` if any (its text names no
/// key material: it comes from the pki layer, whose errors never do).
pub fn record(
    metrics: Option<&Metrics>,
    signature: &CaSignature<'_>,
    elapsed: Duration,
    error: Option<&str>,
) {
    let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
    match error {
        None => info!(
            target: TARGET,
            signed = signature.signed.label(),
            issuer = signature.issuer,
            ca = signature.ca,
            serial = signature.serial,
            requester = signature.requester,
            backend = signature.backend,
            elapsed_ms,
            result = "success",
            "CA signature"
        ),
        Some(error) => warn!(
            target: TARGET,
            signed = signature.signed.label(),
            issuer = signature.issuer,
            ca = signature.ca,
            serial = signature.serial,
            requester = signature.requester,
            backend = signature.backend,
            elapsed_ms,
            result = "failure",
            error,
            "CA signature failed"
        ),
    }
    if let Some(metrics) = metrics {
        metrics.ca_signature(
            signature.backend,
            signature.signed.label(),
            error.is_none(),
            elapsed,
        );
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::{Arc, Mutex};

    /// The audit lines `work` logs, as the JSON log format writes them (one per line).
    pub(crate) fn captured(work: impl FnOnce()) -> Vec<String> {
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = crate::telemetry::logs::subscriber(
            crate::telemetry::logs::LogFormat::Json,
            tracing_subscriber::EnvFilter::new(format!("{}=info", super::TARGET)),
            move || writer.clone(),
        );
        tracing::subscriber::with_default(subscriber, work);
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn a_failed_signature_is_a_warning_line_and_a_failure_count() {
        let metrics = crate::testing::metrics(vec![], vec![], vec![]);
        let signature = super::CaSignature {
            signed: super::Signed::Crl,
            issuer: "ClusterIssuer mesh-ca",
            ca: "AB:CD",
            serial: "7",
            requester: "ClusterIssuer mesh-ca",
            backend: super::BACKEND_SECRET,
        };
        let lines = captured(|| {
            super::record(
                Some(&metrics),
                &signature,
                std::time::Duration::from_millis(3),
                Some("signing failed"),
            )
        });
        let line: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(
            (line["level"].as_str(), line["result"].as_str()),
            (Some("WARN"), Some("failure"))
        );
        assert_eq!(line["error"], "signing failed");
        let text = metrics.encode().unwrap();
        assert!(
            text.contains(
                r#"certkeeper_ca_signatures_total{backend="secret",signed="crl",result="failure"} 1"#
            ),
            "{text}"
        );
    }
}
