//! The PKI endpoint: its routes answered in memory, then `openssl ocsp` against it over TCP.

use std::io::{Read, Write};

use base64::Engine as _;
use der::Decode;
use http::{Method, StatusCode, header};
use http_body_util::BodyExt;
use x509_ocsp::{BasicOcspResponse, CertStatus, OcspResponse, OcspResponseStatus};

use super::openssl::{ca_pem, openssl, openssl_available, write};
use super::*;

/// An endpoint serving one CA issuer `demo/root` whose first leaf is revoked, and both leaves.
fn endpoint(now: jiff::Timestamp) -> (PkiEndpoint, CaKeyPair, IssuedCertificate, IssuedCertificate) {
    serving(PkiEndpoint::default(), now)
}

/// `endpoint`, publishing into `endpoint`.
fn serving(
    endpoint: PkiEndpoint,
    now: jiff::Timestamp,
) -> (PkiEndpoint, CaKeyPair, IssuedCertificate, IssuedCertificate) {
    let ca = root_ca(now - hours(1));
    let bad = leaf(&ca, now - hours(1));
    let good = leaf(&ca, now - hours(1));
    let revoked = vec![revoked(
        &bad.serial_hex,
        now - hours(1),
        RevocationReason::KeyCompromise,
    )];
    let crl = build_crl(&ca, &revoked, 1, now).unwrap();
    // The endpoint owns its copy of the key pair, as the issuer controller hands it over.
    let copy = CaKeyPair::from_pem(
        ca_pem(&ca).as_bytes(),
        ca.key
            .private_key()
            .unwrap()
            .to_pem(KeyEncoding::Pkcs8)
            .unwrap()
            .as_bytes(),
        None,
        IssuerUrls::default(),
    )
    .unwrap();
    endpoint.publish("demo", "root", ServedIssuer::new(copy, revoked, crl));
    (endpoint, ca, bad, good)
}

fn body(response: http::Response<http_body_util::Full<hyper::body::Bytes>>) -> (StatusCode, String, Vec<u8>) {
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = futures::executor::block_on(response.into_body().collect())
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, content_type, bytes)
}

fn cert_statuses(der: &[u8]) -> Vec<CertStatus> {
    let response = OcspResponse::from_der(der).unwrap();
    assert_eq!(response.response_status, OcspResponseStatus::Successful);
    let basic = BasicOcspResponse::from_der(response.response_bytes.unwrap().response.as_bytes()).unwrap();
    basic
        .tbs_response_data
        .responses
        .into_iter()
        .map(|r| r.cert_status)
        .collect()
}

fn ocsp_status(der: &[u8]) -> OcspResponseStatus {
    OcspResponse::from_der(der).unwrap().response_status
}

#[test]
fn the_crl_is_served_at_its_path_as_application_pkix_crl() {
    let (endpoint, ..) = endpoint(now());
    let (status, content_type, der) = body(endpoint.respond(&Method::GET, "/crl/demo/root.crl", &[], now()));
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::OK, "application/pkix-crl")
    );
    assert!(x509_parser::parse_x509_crl(&der).is_ok());

    for path in [
        "/crl/demo/other.crl",
        "/crl/other/root.crl",
        "/crl/demo/root",
        "/crl/demo/a/root.crl",
        "/",
    ] {
        let (status, ..) = body(endpoint.respond(&Method::GET, path, &[], now()));
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, ..) = body(endpoint.respond(&Method::PUT, "/crl/demo/root.crl", &[], now()));
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[test]
fn a_cluster_issuer_is_served_under_cluster_and_a_withdrawn_issuer_no_longer() {
    let (endpoint, ..) = endpoint(now());
    let ca = root_ca(now() - hours(1));
    let crl = build_crl(&ca, &[], 1, now()).unwrap();
    endpoint.publish(CLUSTER_SCOPE, "root", ServedIssuer::new(ca, vec![], crl));
    let (status, ..) = body(endpoint.respond(&Method::GET, "/crl/cluster/root.crl", &[], now()));
    assert_eq!(status, StatusCode::OK);

    endpoint.withdraw(CLUSTER_SCOPE, "root");
    let (status, ..) = body(endpoint.respond(&Method::GET, "/crl/cluster/root.crl", &[], now()));
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[test]
fn ocsp_post_and_get_give_the_same_answers() {
    let (endpoint, ca, bad, good) = endpoint(now());
    let der = request(
        vec![
            cert_id(&ca, &bad.serial_hex, Hash::Sha1),
            cert_id(&ca, &good.serial_hex, Hash::Sha1),
        ],
        None,
    );
    let (status, content_type, posted) =
        body(endpoint.respond(&Method::POST, "/ocsp/demo/root", &der, now()));
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::OK, "application/ocsp-response")
    );
    let encoded = base64::engine::general_purpose::STANDARD.encode(&der);
    let (status, _, fetched) =
        body(endpoint.respond(&Method::GET, &format!("/ocsp/demo/root/{encoded}"), &[], now()));
    assert_eq!(status, StatusCode::OK);

    for answer in [posted, fetched] {
        let statuses = cert_statuses(&answer);
        assert!(matches!(statuses[0], CertStatus::Revoked(_)), "{statuses:?}");
        assert!(matches!(statuses[1], CertStatus::Good(_)), "{statuses:?}");
    }
}

#[test]
fn ocsp_errors_are_http_200_with_an_rfc_6960_status() {
    let (endpoint, ca, bad, _) = endpoint(now());
    let der = request(vec![cert_id(&ca, &bad.serial_hex, Hash::Sha1)], None);
    let cases: [(Method, &str, &[u8], OcspResponseStatus); 4] = [
        (
            Method::POST,
            "/ocsp/demo/other",
            &der,
            OcspResponseStatus::Unauthorized,
        ),
        (
            Method::POST,
            "/ocsp/demo/root",
            b"garbage",
            OcspResponseStatus::MalformedRequest,
        ),
        (
            Method::POST,
            "/ocsp/demo/root",
            b"",
            OcspResponseStatus::MalformedRequest,
        ),
        (
            Method::GET,
            "/ocsp/demo/root/%%%",
            b"",
            OcspResponseStatus::MalformedRequest,
        ),
    ];
    for (method, path, request_body, expected) in cases {
        let (status, _, answer) = body(endpoint.respond(&method, path, request_body, now()));
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(ocsp_status(&answer), expected, "{path}");
    }
}

/// Serves `endpoint` on a loopback port from a thread of its own; returns the base URL.
fn serve(endpoint: PkiEndpoint) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            endpoint.serve(listener).await;
        });
    });
    format!("http://{address}")
}

/// A plain HTTP/1.1 GET; the response body.
fn http_get(base: &str, path: &str) -> Vec<u8> {
    let address = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    response[split + 4..].to_vec()
}

#[test]
fn openssl_ocsp_over_tcp_says_revoked_with_the_reason_and_good_for_the_other() {
    if !openssl_available("openssl_ocsp_over_tcp_says_revoked_with_the_reason_and_good_for_the_other") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (endpoint, ca, bad, good) = endpoint(jiff::Timestamp::now());
    let base = serve(endpoint);
    write(dir.path(), "ca.crt", ca_pem(&ca));
    write(dir.path(), "bad.crt", &bad.certificate_pem);
    write(dir.path(), "good.crt", &good.certificate_pem);

    let url = format!("{base}/ocsp/demo/root");
    let (ok, out) = openssl(
        dir.path(),
        &[
            "ocsp", "-issuer", "ca.crt", "-cert", "bad.crt", "-cert", "good.crt", "-CAfile", "ca.crt",
            "-url", &url, "-nonce",
        ],
    )
    .unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("Response verify OK"), "{out}");
    assert!(out.contains("bad.crt: revoked"), "{out}");
    assert!(out.contains("Reason: keyCompromise"), "{out}");
    assert!(out.contains("good.crt: good"), "{out}");
    assert!(!out.contains("WARNING"), "{out}");
}

#[test]
fn openssl_reads_what_a_get_fetches_the_crl_and_an_ocsp_answer() {
    if !openssl_available("openssl_reads_what_a_get_fetches_the_crl_and_an_ocsp_answer") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (endpoint, ca, bad, _) = endpoint(jiff::Timestamp::now());
    let base = serve(endpoint);
    write(dir.path(), "ca.crt", ca_pem(&ca));
    write(dir.path(), "bad.crt", &bad.certificate_pem);

    write(dir.path(), "root.crl", http_get(&base, "/crl/demo/root.crl"));
    let (ok, out) = openssl(
        dir.path(),
        &[
            "crl", "-inform", "DER", "-in", "root.crl", "-CAfile", "ca.crt", "-noout",
        ],
    )
    .unwrap();
    assert!(ok && out.contains("verify OK"), "{out}");

    let (ok, out) = openssl(
        dir.path(),
        &[
            "ocsp", "-issuer", "ca.crt", "-cert", "bad.crt", "-reqout", "req.der",
        ],
    )
    .unwrap();
    assert!(ok, "{out}");
    let der = std::fs::read(dir.path().join("req.der")).unwrap();
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(der)
        .replace('/', "%2F")
        .replace('+', "%2B");
    write(
        dir.path(),
        "resp.der",
        http_get(&base, &format!("/ocsp/demo/root/{encoded}")),
    );
    let (ok, out) = openssl(
        dir.path(),
        // The answer echoes the nonce of req.der, not of the request this invocation would make.
        &[
            "ocsp",
            "-respin",
            "resp.der",
            "-issuer",
            "ca.crt",
            "-cert",
            "bad.crt",
            "-CAfile",
            "ca.crt",
            "-resp_text",
            "-no_nonce",
        ],
    )
    .unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("Response verify OK"), "{out}");
    assert!(out.contains("bad.crt: revoked"), "{out}");
    assert!(out.contains("Responder Id: "), "{out}");
}

/// Every OCSP answer the CA signs is audited: one line on `certkeeper::audit` naming the
/// issuer, the CA and the serials answered for (never the key or the signature), and counted
/// in `certkeeper_ca_signatures_total`; an unsigned error answer is neither.
#[test]
fn each_signed_ocsp_answer_is_one_audit_line_and_one_count() {
    let metrics = std::sync::Arc::new(crate::testing::metrics(vec![], vec![], vec![]));
    let (endpoint, ca, bad, good) = serving(PkiEndpoint::with_metrics(metrics.clone()), now());
    let der = request(
        vec![
            cert_id(&ca, &bad.serial_hex, Hash::Sha1),
            cert_id(&ca, &good.serial_hex, Hash::Sha1),
        ],
        None,
    );
    let lines = crate::telemetry::audit::tests::captured(|| {
        body(endpoint.respond(&Method::POST, "/ocsp/demo/root", &der, now()));
        body(endpoint.respond(&Method::POST, "/ocsp/demo/root", b"garbage", now()));
    });
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(line["target"], "certkeeper::audit");
    assert_eq!(line["what"], "ocsp");
    assert_eq!(
        (&line["issuer_kind"], &line["issuer_namespace"], &line["issuer"]),
        (&"Issuer".into(), &"demo".into(), &"root".into())
    );
    assert_eq!(line["backend"], "secret");
    assert_eq!(line["signed_sha256"].as_str().map(str::len), Some(64));
    assert_eq!(line["ca"], ca.certificate().fingerprint_sha256.as_str());
    assert_eq!(line["serial"], format!("{},{}", bad.serial_hex, good.serial_hex));
    assert_eq!(line["result"], "success");
    assert!(!lines[0].contains("PRIVATE"));
    let text = metrics.encode().unwrap();
    assert!(
        text.contains(
            r#"certkeeper_ca_signatures_total{issuer_kind="Issuer",namespace="demo",issuer="root",what="ocsp",result="success"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"certkeeper_ca_sign_duration_seconds_count{backend="secret"} 1"#),
        "{text}"
    );
}
