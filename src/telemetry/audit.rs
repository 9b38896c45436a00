//! The audit trail of CA signatures (issue 23, item 6; SPEC "CA keys in an HSM"): every
//! signature a CA issuer's key makes (a certificate, a CRL, an OCSP response), whichever holds
//! the key, is one line on the log target `certkeeper::audit` (one JSON object per line with
//! `--log-format json`, as the install runs) and is counted in
//! `certkeeper_ca_signatures_total{issuer_kind,namespace,issuer,what,result}` and timed in
//! `certkeeper_ca_sign_duration_seconds{backend}`. The line says what was signed, by which
//! issuer, key and CA, for which Certificate, and the SHA-256 of the bytes the key signed; never
//! a key, a PIN or the signature.

use std::time::Duration;

use der::{Decode, Encode};
use tracing::{info, warn};

use super::metrics::Metrics;
use crate::pki::{CaKeyPair, CertificateInfo};

/// The log target of the audit lines: `RUST_LOG=certkeeper::audit=info` keeps them alone.
pub const TARGET: &str = "certkeeper::audit";

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

/// The issuer whose CA key signed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IssuerId {
    /// `Issuer` or `ClusterIssuer`.
    pub kind: &'static str,
    /// The Issuer's namespace; empty for a ClusterIssuer.
    pub namespace: String,
    pub name: String,
}

impl IssuerId {
    /// The issuer an `issuerRef` of kind `kind` names from `namespace`.
    pub fn new(kind: &str, namespace: &str, name: &str) -> Self {
        let (kind, namespace) = match kind {
            "ClusterIssuer" => ("ClusterIssuer", String::new()),
            _ => ("Issuer", namespace.to_owned()),
        };
        Self {
            kind,
            namespace,
            name: name.to_owned(),
        }
    }
}

/// What the audit line says of the object signed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignedFacts {
    /// The certificate's serial, the CRL's number, or the serials an OCSP answer is for
    /// (lower-case hex, comma-separated; empty when the request named none).
    pub serial: String,
    /// The certificate's subject DN (RFC 4514); empty for CRLs and OCSP answers.
    pub subject: String,
    /// The certificate's subjectAltNames (`DNS:…`, `IP:…`, `URI:…`, `email:…`).
    pub sans: Vec<String>,
    /// Lower-case hex SHA-256 of the bytes the key signed (the TBSCertificate, TBSCertList or
    /// ResponseData); empty when there is no signed object (a failure).
    pub signed_sha256: String,
}

impl SignedFacts {
    /// A certificate the CA issued.
    pub fn certificate(leaf: &CertificateInfo) -> Self {
        let parsed = x509_cert::Certificate::from_der(&leaf.der).ok();
        let sans = (leaf.dns_names.iter().map(|n| format!("DNS:{n}")))
            .chain(leaf.ip_addresses.iter().map(|ip| format!("IP:{ip}")))
            .chain(leaf.uris.iter().map(|u| format!("URI:{u}")))
            .chain(leaf.email_addresses.iter().map(|e| format!("email:{e}")))
            .collect();
        Self {
            serial: leaf.serial_hex.clone(),
            subject: parsed
                .as_ref()
                .map(|c| c.tbs_certificate.subject.to_string())
                .unwrap_or_default(),
            sans,
            signed_sha256: parsed
                .and_then(|c| c.tbs_certificate.to_der().ok())
                .map(|tbs| sha256_hex(&tbs))
                .unwrap_or_default(),
        }
    }

    /// A CRL, `der` when it was signed.
    pub fn crl(number: u64, der: Option<&[u8]>) -> Self {
        Self {
            serial: number.to_string(),
            signed_sha256: der
                .and_then(|der| x509_cert::crl::CertificateList::from_der(der).ok())
                .and_then(|crl| crl.tbs_cert_list.to_der().ok())
                .map(|tbs| sha256_hex(&tbs))
                .unwrap_or_default(),
            ..Self::default()
        }
    }

    /// An OCSP answer for `serials`, `response` (an OCSPResponse) when it was made.
    pub fn ocsp(serials: Vec<String>, response: Option<&[u8]>) -> Self {
        let signed = response
            .and_then(|der| x509_ocsp::OcspResponse::from_der(der).ok())
            .and_then(|r| r.response_bytes)
            .and_then(|bytes| x509_ocsp::BasicOcspResponse::from_der(bytes.response.as_bytes()).ok())
            .and_then(|basic| basic.tbs_response_data.to_der().ok());
        Self {
            serial: serials.join(","),
            signed_sha256: signed.map(|tbs| sha256_hex(&tbs)).unwrap_or_default(),
            ..Self::default()
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    crate::pki::lower_hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

/// One CA signature, as the audit line says it.
#[derive(Clone, Copy, Debug)]
pub struct CaSignature<'a> {
    pub what: Signed,
    pub issuer: &'a IssuerId,
    /// The CA that signed: its certificate's fingerprint, its key's reference and backend.
    pub ca: &'a CaKeyPair,
    /// The Certificate (`namespace/name`) a certificate was issued for; empty for CRLs and
    /// OCSP answers.
    pub certificate: &'a str,
    pub facts: &'a SignedFacts,
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
    let (issuer, facts, ca) = (signature.issuer, signature.facts, signature.ca);
    let backend = crate::pki::Signer::backend(&ca.key);
    let sans = facts.sans.join(",");
    macro_rules! line {
        ($level:ident, $result:literal, $($extra:tt)*) => {
            $level!(
                target: TARGET,
                what = signature.what.label(),
                issuer_kind = issuer.kind,
                issuer_namespace = issuer.namespace.as_str(),
                issuer = issuer.name.as_str(),
                key = ca.key_reference.as_str(),
                ca = ca.certificate().fingerprint_sha256.as_str(),
                serial = facts.serial.as_str(),
                subject = facts.subject.as_str(),
                sans = sans.as_str(),
                certificate = signature.certificate,
                signed_sha256 = facts.signed_sha256.as_str(),
                backend,
                elapsed_ms,
                result = $result,
                $($extra)*
            )
        };
    }
    match error {
        None => line!(info, "success", "CA signature"),
        Some(error) => line!(warn, "failure", error, "CA signature failed"),
    }
    if let Some(metrics) = metrics {
        metrics.ca_signature(issuer, signature.what.label(), backend, error.is_none(), elapsed);
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

    /// A root CA whose key is in the Secret `apps/root-ca`, and a leaf it signed.
    fn ca_and_leaf() -> (crate::pki::CaKeyPair, crate::pki::CertificateInfo) {
        use crate::pki::{
            CaKeyPair, CertificateTemplate, IssuerUrls, KeyAlgorithm, KeyEncoding, KeySpec, PrivateKey, Usage,
        };
        let now = jiff::Timestamp::from_second(1_790_000_000).unwrap();
        let spec = KeySpec {
            algorithm: KeyAlgorithm::Ecdsa,
            size: 256,
        };
        let ca_key = PrivateKey::generate(spec).unwrap();
        let template = CertificateTemplate {
            common_name: Some("Audit Root".into()),
            not_before: now,
            not_after: now + jiff::SignedDuration::from_hours(24 * 365),
            is_ca: true,
            usages: vec![Usage::DigitalSignature],
            ..Default::default()
        };
        let root = crate::pki::sign_self_signed(&template, &ca_key).unwrap();
        let ca = CaKeyPair::from_pem(
            root.chain_pem.as_bytes(),
            ca_key.to_pem(KeyEncoding::Pkcs8).unwrap().as_bytes(),
            None,
            IssuerUrls::default(),
        )
        .unwrap()
        .with_key_reference("secret:apps/root-ca".into());
        let leaf = CertificateTemplate {
            common_name: Some("web".into()),
            dns_names: vec!["web.apps.svc".into()],
            uris: vec!["spiffe://cluster.local/ns/apps/sa/web".into()],
            not_before: now,
            not_after: now + jiff::SignedDuration::from_hours(24),
            usages: vec![Usage::DigitalSignature, Usage::ServerAuth],
            ..Default::default()
        };
        let leaf = crate::pki::sign_with_ca(&leaf, &PrivateKey::generate(spec).unwrap(), &ca).unwrap();
        let leaf = crate::pki::parse_certificate_chain(leaf.certificate_pem.as_bytes())
            .unwrap()
            .remove(0);
        (ca, leaf)
    }

    /// SPEC: time, issuer kind/namespace/name, key reference, what, serial, subject, SANs, the
    /// Certificate, SHA-256 of what was signed (the TBSCertificate, as x509-parser cuts it out
    /// independently of our encoder); counted per issuer and timed per backend.
    #[test]
    fn a_certificate_signature_is_one_line_with_every_fact_the_spec_names() {
        let (ca, leaf) = ca_and_leaf();
        let metrics = crate::testing::metrics(vec![], vec![], vec![]);
        let issuer = super::IssuerId::new("Issuer", "apps", "ca");
        let facts = super::SignedFacts::certificate(&leaf);
        let signature = super::CaSignature {
            what: super::Signed::Certificate,
            issuer: &issuer,
            ca: &ca,
            certificate: "apps/web",
            facts: &facts,
        };
        let lines = captured(|| {
            super::record(
                Some(&metrics),
                &signature,
                std::time::Duration::from_millis(2),
                None,
            )
        });
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&leaf.der).unwrap();
        let tbs = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, parsed.tbs_certificate.as_ref());
        for (field, want) in [
            ("target", "certkeeper::audit"),
            ("level", "INFO"),
            ("what", "certificate"),
            ("issuer_kind", "Issuer"),
            ("issuer_namespace", "apps"),
            ("issuer", "ca"),
            ("key", "secret:apps/root-ca"),
            ("ca", ca.certificate().fingerprint_sha256.as_str()),
            ("serial", leaf.serial_hex.as_str()),
            ("subject", "CN=web"),
            (
                "sans",
                "DNS:web.apps.svc,URI:spiffe://cluster.local/ns/apps/sa/web",
            ),
            ("certificate", "apps/web"),
            ("signed_sha256", crate::pki::lower_hex(tbs.as_ref()).as_str()),
            ("backend", "secret"),
            ("result", "success"),
        ] {
            assert_eq!(line[field].as_str(), Some(want), "{field}: {line}");
        }
        assert!(line["timestamp"].is_string(), "{line}");
        assert!(!lines[0].contains("PRIVATE"), "{line}");
        let text = metrics.encode().unwrap();
        assert!(
            text.contains(
                r#"certkeeper_ca_signatures_total{issuer_kind="Issuer",namespace="apps",issuer="ca",what="certificate",result="success"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"certkeeper_ca_sign_duration_seconds_count{backend="secret"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn a_failed_signature_is_a_warning_line_and_a_failure_count() {
        let (ca, _) = ca_and_leaf();
        let metrics = crate::testing::metrics(vec![], vec![], vec![]);
        let issuer = super::IssuerId::new("ClusterIssuer", "certkeeper-system", "mesh-ca");
        let facts = super::SignedFacts::crl(7, None);
        let signature = super::CaSignature {
            what: super::Signed::Crl,
            issuer: &issuer,
            ca: &ca,
            certificate: "",
            facts: &facts,
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
        assert_eq!(
            (line["serial"].as_str(), line["signed_sha256"].as_str()),
            (Some("7"), Some(""))
        );
        let text = metrics.encode().unwrap();
        assert!(
            text.contains(
                r#"certkeeper_ca_signatures_total{issuer_kind="ClusterIssuer",namespace="",issuer="mesh-ca",what="crl",result="failure"} 1"#
            ),
            "{text}"
        );
    }
}
