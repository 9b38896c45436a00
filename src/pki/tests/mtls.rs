//! The Secrets we write work for real mutual TLS: rustls, in memory, each side trusting only
//! `ca.crt` and presenting `tls.crt` + `tls.key`.

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig,
    ServerConnection,
};

use super::*;

/// What a workload mounts from its Secret (shared with the CLI's `issue` tests).
pub(crate) struct Mounted {
    pub(crate) tls_crt: String,
    pub(crate) tls_key: String,
    pub(crate) ca_crt: String,
}

fn issue(template: &CertificateTemplate, key_spec: KeySpec, ca: &CaKeyPair) -> Mounted {
    let key = PrivateKey::generate(key_spec).unwrap();
    let issued = sign_with_ca(template, &key, ca).unwrap();
    Mounted {
        tls_crt: issued.chain_pem,
        tls_key: key.to_pem(KeyEncoding::Pkcs8).unwrap(),
        ca_crt: issued.ca_pem,
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn certificates(pem: &str) -> Vec<CertificateDer<'static>> {
    parse_pem_certificates(pem.as_bytes())
        .unwrap()
        .into_iter()
        .map(CertificateDer::from)
        .collect()
}

fn private_key(pem: &str) -> PrivateKeyDer<'static> {
    let der = pem::parse(pem).unwrap().into_contents();
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der))
}

fn trust(ca_crt: &str) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_crt) {
        roots.add(cert).unwrap();
    }
    Arc::new(roots)
}

pub(crate) fn server(mounted: &Mounted) -> Connection {
    let verifier = WebPkiClientVerifier::builder_with_provider(trust(&mounted.ca_crt), provider())
        .build()
        .unwrap();
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certificates(&mounted.tls_crt), private_key(&mounted.tls_key))
        .unwrap();
    Connection::Server(ServerConnection::new(Arc::new(config)).unwrap())
}

pub(crate) fn client(mounted: &Mounted, server_name: &str) -> Connection {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(trust(&mounted.ca_crt))
        .with_client_auth_cert(certificates(&mounted.tls_crt), private_key(&mounted.tls_key))
        .unwrap();
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    Connection::Client(ClientConnection::new(Arc::new(config), name).unwrap())
}

#[derive(Debug)]
pub(crate) enum Refusal {
    ByServer(rustls::Error),
    ByClient(rustls::Error),
}

/// Moves every pending TLS record from `from` to `to`. True if anything moved.
fn pump(from: &mut Connection, to: &mut Connection) -> Result<bool, rustls::Error> {
    let mut records = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut records).unwrap();
    }
    let mut pending = records.as_slice();
    while !pending.is_empty() {
        to.read_tls(&mut pending).unwrap();
        to.process_new_packets()?;
    }
    Ok(!records.is_empty())
}

/// Shuttles bytes until both sides are done handshaking and nothing is in flight.
pub(crate) fn handshake(client: &mut Connection, server: &mut Connection) -> Result<(), Refusal> {
    for _ in 0..16 {
        let sent = pump(client, server).map_err(Refusal::ByServer)?;
        let answered = pump(server, client).map_err(Refusal::ByClient)?;
        if !sent && !answered && !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
    }
    panic!("handshake made no progress");
}

pub(crate) fn exchange(from: &mut Connection, to: &mut Connection, message: &[u8]) -> Vec<u8> {
    from.writer().write_all(message).unwrap();
    assert!(pump(from, to).unwrap());
    let mut received = vec![0; message.len()];
    to.reader().read_exact(&mut received).unwrap();
    received
}

struct Workloads {
    server: Mounted,
    client: Mounted,
}

/// Two workloads under one intermediate below a self-signed root, valid now (rustls checks
/// validity against the system clock).
fn workloads(server_key: KeySpec, client_key: KeySpec) -> Workloads {
    let from = jiff::Timestamp::now() - hours(1);
    let root = root_ca("Mesh Root CA", from);
    let intermediate = intermediate_ca(&root, from);
    let server = issue(&leaf_template(from), server_key, &intermediate);
    let client_template = CertificateTemplate {
        common_name: None,
        dns_names: vec![],
        uris: vec!["spiffe://cluster.local/ns/shop/sa/checkout".into()],
        ..leaf_template(from)
    };
    let client = issue(&client_template, client_key, &intermediate);
    Workloads { server, client }
}

const P256: KeySpec = KeySpec {
    algorithm: KeyAlgorithm::Ecdsa,
    size: 256,
};

#[test]
fn mutual_tls_handshake_succeeds_between_two_issued_leaves() {
    let rsa = KeySpec {
        algorithm: KeyAlgorithm::Rsa,
        size: 2048,
    };
    let Workloads {
        server: server_secret,
        client: client_secret,
    } = workloads(P256, rsa);
    assert_eq!(
        certificates(&server_secret.tls_crt).len(),
        2,
        "leaf + intermediate"
    );
    assert_eq!(certificates(&server_secret.ca_crt).len(), 1, "the root alone");

    let mut server = server(&server_secret);
    let mut client = client(&client_secret, "api.example.svc");
    handshake(&mut client, &mut server).expect("handshake");

    assert_eq!(
        exchange(&mut client, &mut server, b"GET /healthz"),
        b"GET /healthz"
    );
    assert_eq!(exchange(&mut server, &mut client, b"200 OK"), b"200 OK");

    // The server saw the client's SPIFFE identity through the intermediate.
    let presented = server.peer_certificates().expect("client certificate").to_vec();
    assert_eq!(presented.len(), 2);
    let pem = super::super::key::encode_pem("CERTIFICATE", presented[0].to_vec());
    assert_eq!(only(&pem).uris, ["spiffe://cluster.local/ns/shop/sa/checkout"]);
}

#[test]
fn mutual_tls_works_with_every_server_key_type() {
    for server_key in [
        P256,
        KeySpec {
            algorithm: KeyAlgorithm::Ecdsa,
            size: 384,
        },
        KeySpec {
            algorithm: KeyAlgorithm::Rsa,
            size: 3072,
        },
        KeySpec {
            algorithm: KeyAlgorithm::Ed25519,
            size: 0,
        },
    ] {
        let Workloads {
            server: server_secret,
            client: client_secret,
        } = workloads(server_key, P256);
        let mut server = server(&server_secret);
        let mut client = client(&client_secret, "api.example.svc.cluster.local");
        handshake(&mut client, &mut server).unwrap_or_else(|e| panic!("{server_key:?}: {e:?}"));
        assert_eq!(exchange(&mut client, &mut server, b"ping"), b"ping");
    }
}

#[test]
fn server_refuses_a_client_from_a_stranger_ca() {
    let Workloads {
        server: server_secret,
        ..
    } = workloads(P256, P256);
    let from = jiff::Timestamp::now() - hours(1);
    let stranger_root = root_ca("Mesh Root CA", from);
    let stranger_intermediate = intermediate_ca(&stranger_root, from);
    let mut stranger = issue(&leaf_template(from), P256, &stranger_intermediate);
    // The stranger trusts the real root, so only the server's check can stop it.
    stranger.ca_crt = server_secret.ca_crt.clone();

    let mut server = server(&server_secret);
    let mut client = client(&stranger, "api.example.svc");
    match handshake(&mut client, &mut server) {
        Err(Refusal::ByServer(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ))) => {}
        other => panic!("expected the server to refuse the client certificate, got {other:?}"),
    }
}

#[test]
fn client_refuses_a_server_name_the_certificate_does_not_carry() {
    let Workloads {
        server: server_secret,
        client: client_secret,
    } = workloads(P256, P256);
    let mut server = server(&server_secret);
    let mut client = client(&client_secret, "db.example.svc");
    match handshake(&mut client, &mut server) {
        Err(Refusal::ByClient(rustls::Error::InvalidCertificate(_))) => {}
        other => panic!("expected the client to refuse the server name, got {other:?}"),
    }
}
