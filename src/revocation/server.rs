//! The PKI endpoint (SPEC "Revocation"; `--pki-bind-address`, default `:9403`, Service
//! `certkeeper-pki`), in the manner of `telemetry::server`: `GET /crl/{namespace}/{issuer}.crl`
//! and OCSP (RFC 6960, GET and POST) at `/ocsp/{namespace}/{issuer}`, `cluster` in place of the
//! namespace for a ClusterIssuer.
//!
//! The endpoint only answers from what it was given: the issuer controller publishes each CA
//! issuer's key pair, revoked serials and current CRL, and withdraws them when the issuer goes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, PoisonError, RwLock};

use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tracing::{debug, warn};
use x509_ocsp::OcspResponseStatus;

use super::{
    OcspRequestError, RevokedSerial, SignedCrl, ocsp_error_response, ocsp_request_from_get_path, respond_ocsp,
};
use crate::pki::CaKeyPair;

/// The path segment that stands for the namespace of a ClusterIssuer.
pub const CLUSTER_SCOPE: &str = "cluster";

/// OCSP requests are a few hundred bytes; anything much larger is not one.
const MAX_OCSP_REQUEST: usize = 64 * 1024;

const CONTENT_TYPE_CRL: &str = "application/pkix-crl";
const CONTENT_TYPE_OCSP: &str = "application/ocsp-response";
const PLAIN: &str = "text/plain; charset=utf-8";

/// What the endpoint serves for one CA issuer.
#[derive(Debug)]
pub struct ServedIssuer {
    ca: Arc<CaKeyPair>,
    /// By serial: an OCSP answer looks one up among thousands.
    revoked: HashMap<String, RevokedSerial>,
    crl: SignedCrl,
}

impl ServedIssuer {
    /// `ca` with its revoked serials and the CRL signed over them.
    pub fn new(ca: impl Into<Arc<CaKeyPair>>, revoked: Vec<RevokedSerial>, crl: SignedCrl) -> Self {
        let revoked = revoked.into_iter().map(|r| (r.serial_hex.clone(), r)).collect();
        Self {
            ca: ca.into(),
            revoked,
            crl,
        }
    }

    /// The CRL served.
    pub fn crl(&self) -> &SignedCrl {
        &self.crl
    }

    /// The CA key pair that signs the CRL and the OCSP answers.
    pub fn ca(&self) -> &Arc<CaKeyPair> {
        &self.ca
    }
}

/// Which issuer: its namespace (`CLUSTER_SCOPE` for a ClusterIssuer) and name.
type IssuerKey = (String, String);

/// The CRL and OCSP endpoint. Clones share the published issuers.
#[derive(Clone, Debug, Default)]
pub struct PkiEndpoint {
    issuers: Arc<RwLock<HashMap<IssuerKey, Arc<ServedIssuer>>>>,
    /// Where its OCSP signatures are counted (`telemetry::audit`); None: logged only.
    metrics: Option<Arc<crate::telemetry::metrics::Metrics>>,
}

impl PkiEndpoint {
    /// An endpoint that counts its signatures in `metrics`.
    pub fn with_metrics(metrics: Arc<crate::telemetry::metrics::Metrics>) -> Self {
        Self {
            metrics: Some(metrics),
            ..Self::default()
        }
    }

    /// Serves `issuer` under `scope`/`name` from now on, replacing what was there.
    pub fn publish(&self, scope: &str, name: &str, issuer: ServedIssuer) {
        self.issuers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((scope.to_owned(), name.to_owned()), Arc::new(issuer));
    }

    /// Stops serving `scope`/`name`.
    pub fn withdraw(&self, scope: &str, name: &str) {
        self.issuers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(scope.to_owned(), name.to_owned()));
    }

    /// The scope and name of every issuer served.
    pub fn served(&self) -> Vec<(String, String)> {
        self.issuers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// What is served for `scope`/`name`, if anything.
    pub fn issuer(&self, scope: &str, name: &str) -> Option<Arc<ServedIssuer>> {
        self.issuers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(scope.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Answers one request at `now`. `body` is the request body (empty for a GET).
    pub fn respond(
        &self,
        method: &Method,
        path: &str,
        body: &[u8],
        now: jiff::Timestamp,
    ) -> Response<Full<Bytes>> {
        let segments: Vec<&str> = path.trim_start_matches('/').splitn(4, '/').collect();
        match (method, segments.as_slice()) {
            (&Method::GET | &Method::HEAD, ["crl", scope, file]) => match file.strip_suffix(".crl") {
                Some(name) => match self.issuer(scope, name) {
                    Some(issuer) => reply(StatusCode::OK, CONTENT_TYPE_CRL, issuer.crl.der.clone()),
                    None => reply(StatusCode::NOT_FOUND, PLAIN, "no such CA issuer\n"),
                },
                None => reply(StatusCode::NOT_FOUND, PLAIN, "not found\n"),
            },
            (&Method::POST, ["ocsp", scope, name]) => self.ocsp(scope, name, Ok(body.to_vec()), now),
            (&Method::GET, ["ocsp", scope, name, encoded]) => {
                self.ocsp(scope, name, ocsp_request_from_get_path(encoded), now)
            }
            (_, ["crl", _, _] | ["ocsp", _, _] | ["ocsp", _, _, _]) => {
                reply(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "method not allowed\n")
            }
            _ => reply(StatusCode::NOT_FOUND, PLAIN, "not found\n"),
        }
    }

    /// RFC 6960 Appendix A: every OCSP outcome, errors included, is an HTTP 200 carrying an
    /// OCSPResponse; only a response that cannot be produced at all is a 500.
    fn ocsp(
        &self,
        scope: &str,
        name: &str,
        request: Result<Vec<u8>, OcspRequestError>,
        now: jiff::Timestamp,
    ) -> Response<Full<Bytes>> {
        let answer = match (self.issuer(scope, name), request) {
            (None, _) => ocsp_error_response(OcspResponseStatus::Unauthorized),
            (Some(_), Err(e)) => ocsp_error_response(e.status()),
            (Some(issuer), Ok(der)) => {
                let started = std::time::Instant::now();
                let answer = respond_ocsp(&issuer.ca, &issuer.revoked, &der, now);
                self.audit(scope, name, &issuer, &der, started.elapsed(), answer.as_ref());
                answer.or_else(|e| {
                    warn!(scope, issuer = name, error = %e, "OCSP: cannot sign a response");
                    ocsp_error_response(OcspResponseStatus::InternalError)
                })
            }
        };
        match answer {
            Ok(der) => reply(StatusCode::OK, CONTENT_TYPE_OCSP, der),
            Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, PLAIN, format!("{e}\n")),
        }
    }

    /// Audits the signature of `answer` to `request` (a request that does not parse is
    /// answered unsigned: nothing to audit).
    fn audit(
        &self,
        scope: &str,
        name: &str,
        issuer: &ServedIssuer,
        request: &[u8],
        elapsed: std::time::Duration,
        answer: Result<&Vec<u8>, &super::RevocationError>,
    ) {
        let Ok(parsed) = super::ocsp::parse_ocsp_request(request) else {
            return;
        };
        let serials: Vec<String> = parsed
            .tbs_request
            .request_list
            .iter()
            .map(|r| crate::pki::serial_hex(r.req_cert.serial_number.as_bytes()))
            .collect();
        let id = match scope {
            CLUSTER_SCOPE => crate::telemetry::audit::IssuerId::new("ClusterIssuer", "", name),
            namespace => crate::telemetry::audit::IssuerId::new("Issuer", namespace, name),
        };
        let facts = crate::telemetry::audit::SignedFacts::ocsp(serials, answer.ok().map(Vec::as_slice));
        let signature = crate::telemetry::audit::CaSignature {
            what: crate::telemetry::audit::Signed::OcspResponse,
            issuer: &id,
            ca: &issuer.ca,
            certificate: "",
            facts: &facts,
        };
        let error = answer.err().map(ToString::to_string);
        crate::telemetry::audit::record(self.metrics.as_deref(), &signature, elapsed, error.as_deref());
    }

    /// Serves on `listener` until the process ends.
    pub async fn serve(self, listener: TcpListener) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "PKI endpoint: accept failed");
                    continue;
                }
            };
            let endpoint = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let endpoint = endpoint.clone();
                    async move { Ok::<_, Infallible>(endpoint.handle(req).await) }
                });
                if let Err(e) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    debug!(%peer, error = %e, "PKI endpoint: connection ended with an error");
                }
            });
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = match Limited::new(body, MAX_OCSP_REQUEST).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return match ocsp_error_response(OcspResponseStatus::MalformedRequest) {
                    Ok(der) => reply(StatusCode::OK, CONTENT_TYPE_OCSP, der),
                    Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, PLAIN, format!("{e}\n")),
                };
            }
        };
        // An OCSP answer is signed by the CA key, which may be a round trip to an HSM: off the
        // async workers.
        let endpoint = self.clone();
        let answered = tokio::task::spawn_blocking(move || {
            endpoint.respond(&parts.method, parts.uri.path(), &body, jiff::Timestamp::now())
        })
        .await;
        answered.unwrap_or_else(|e| reply(StatusCode::INTERNAL_SERVER_ERROR, PLAIN, format!("{e}\n")))
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}
