//! Checking issued key pairs the way their users will: the `openssl` command line verifies
//! chains and reads certificates (an oracle independent of certkeeper's own X.509 code), and
//! rustls completes a real mutual-TLS handshake over 127.0.0.1.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection, StreamOwned};

/// No step of the handshake may wait longer than this: a broken peer fails the test instead
/// of hanging it.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// The CERTIFICATE blocks of a PEM bundle, in order, as DER.
pub fn certificates_der(bundle: &str) -> Vec<Vec<u8>> {
    pem::parse_many(bundle)
        .expect("a PEM bundle")
        .into_iter()
        .filter(|block| block.tag() == "CERTIFICATE")
        .map(|block| block.into_contents())
        .collect()
}

/// One DER certificate as PEM.
pub fn to_pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

/// Runs `openssl ARGS` in `dir` and returns its stdout; fails the test with everything openssl
/// said when it exits non-zero.
pub fn openssl(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run `openssl` (is it on PATH?)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "`openssl {}` failed ({}):\n{stdout}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn write(dir: &Path, file: &str, contents: &str) {
    std::fs::write(dir.join(file), contents)
        .unwrap_or_else(|e| panic!("write {file} in {}: {e}", dir.display()));
}

/// What `openssl verify` is asked to check besides the signatures and validity periods.
#[derive(Clone, Copy, Debug)]
pub enum Purpose {
    /// The certificate itself (a CA certificate): no extended key usage required.
    Any,
    /// TLS server: `serverAuth` and a usable key usage.
    TlsServer,
    /// TLS client: `clientAuth` and a usable key usage.
    TlsClient,
}

/// `openssl verify -x509_strict -CAfile ROOT -untrusted REST LEAF`, where LEAF and REST come
/// from `chain_pem` (a `tls.crt`): the chain must lead from the leaf to `root_pem` using only
/// what the Secret holds. `label` names the files left in `dir` for a post-mortem.
pub fn verify_chain(dir: &Path, label: &str, chain_pem: &str, root_pem: &str, purpose: Purpose) {
    let chain = certificates_der(chain_pem);
    let (leaf, rest) = chain
        .split_first()
        .unwrap_or_else(|| panic!("{label}: tls.crt holds no certificate"));
    let leaf_file = format!("{label}.leaf.pem");
    let root_file = format!("{label}.root.pem");
    let untrusted_file = format!("{label}.untrusted.pem");
    write(dir, &leaf_file, &to_pem(leaf));
    write(dir, &root_file, root_pem);
    // -x509_strict: RFC 5280 conformance (CA basicConstraints critical, key identifiers, …),
    // which TLS libraries stricter than OpenSSL's default insist on.
    let mut args = vec!["verify", "-x509_strict", "-CAfile", &root_file];
    if !rest.is_empty() {
        write(
            dir,
            &untrusted_file,
            &rest.iter().map(|c| to_pem(c)).collect::<String>(),
        );
        args.extend(["-untrusted", &untrusted_file]);
    }
    match purpose {
        Purpose::Any => {}
        Purpose::TlsServer => args.extend(["-purpose", "sslserver"]),
        Purpose::TlsClient => args.extend(["-purpose", "sslclient"]),
    }
    args.push(&leaf_file);
    let out = openssl(dir, &args);
    assert_eq!(
        out.trim(),
        format!("{leaf_file}: OK"),
        "{label}: openssl verify ({purpose:?})"
    );
}

/// The certificate's serial number as `openssl x509 -serial` reads it: lower-case hex of
/// whole bytes without leading zero bytes, the form of `status.serialNumber`.
pub fn serial_number(dir: &Path, label: &str, cert_pem: &str) -> String {
    let file = format!("{label}.serial.pem");
    write(dir, &file, cert_pem);
    let out = openssl(dir, &["x509", "-noout", "-serial", "-in", &file]);
    let hex = out
        .trim()
        .strip_prefix("serial=")
        .unwrap_or_else(|| panic!("{label}: unexpected `openssl x509 -serial` output {out:?}"));
    // openssl prints whole bytes ("0A1B…"); drop zero bytes only, never a single nibble.
    let mut hex = hex.to_ascii_lowercase();
    while hex.len() > 2 && hex.starts_with("00") {
        hex.drain(..2);
    }
    hex
}

/// `openssl x509 -text` of one certificate, for assertions on extensions.
pub fn describe(dir: &Path, label: &str, cert_pem: &str) -> String {
    let file = format!("{label}.text.pem");
    write(dir, &file, cert_pem);
    openssl(dir, &["x509", "-noout", "-text", "-in", &file])
}

/// A key pair as a Secret holds it: `tls.crt` (leaf first) and `tls.key`.
pub struct KeyPairPem<'a> {
    pub chain: &'a str,
    pub key: &'a str,
}

/// What each side of a completed handshake saw of the other.
#[derive(Debug)]
pub struct Handshake {
    /// The leaf the server presented, as the client received it.
    pub server_leaf: Vec<u8>,
    /// The leaf the client presented, as the server received it.
    pub client_leaf: Vec<u8>,
    pub protocol: String,
}

fn chain_of(pair: &KeyPairPem<'_>) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_slice_iter(pair.chain.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls.crt: {e}"))?;
    if chain.is_empty() {
        return Err("tls.crt holds no certificate".into());
    }
    Ok(chain)
}

fn key_of(pair: &KeyPairPem<'_>) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pair.key.as_bytes()).map_err(|e| format!("tls.key: {e}"))
}

/// A mutual-TLS exchange on 127.0.0.1: the server presents `server` and requires a client
/// certificate that chains to `root_pem`; the client presents `client`, trusts only `root_pem`
/// and checks the server's certificate for `server_name`. One line goes each way so the
/// handshake is finished on both sides (in TLS 1.3 the server judges the client's certificate
/// after the client already thinks it is done).
pub fn mutual_tls(
    server: &KeyPairPem<'_>,
    server_name: &str,
    client: &KeyPairPem<'_>,
    root_pem: &str,
) -> Result<Handshake, String> {
    mutual_tls_between(server, root_pem, server_name, client, root_pem)
}

/// The roots of a `ca.crt` (one or more PEM certificates) as a rustls trust store.
fn trust_store(ca_pem: &str) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(der.map_err(|e| format!("ca.crt: {e}"))?)
            .map_err(|e| format!("ca.crt is not a usable trust anchor: {e}"))?;
    }
    if roots.is_empty() {
        return Err("ca.crt holds no certificate".into());
    }
    Ok(Arc::new(roots))
}

/// [`mutual_tls`] between two workloads that each trust their own `ca.crt`, as two pods do:
/// the server requires a client certificate chaining to one of `server_trusts`, the client
/// accepts a server certificate chaining to one of `client_trusts`.
pub fn mutual_tls_between(
    server: &KeyPairPem<'_>,
    server_trusts: &str,
    server_name: &str,
    client: &KeyPairPem<'_>,
    client_trusts: &str,
) -> Result<Handshake, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server_roots = trust_store(server_trusts).map_err(|e| format!("server {e}"))?;
    let client_roots = trust_store(client_trusts).map_err(|e| format!("client {e}"))?;

    let client_verifier = WebPkiClientVerifier::builder_with_provider(server_roots, provider.clone())
        .build()
        .map_err(|e| format!("client verifier: {e}"))?;
    let server_config = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain_of(server)?, key_of(server)?)
        .map_err(|e| format!("server key pair: {e}"))?;
    let client_config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(client_roots)
        .with_client_auth_cert(chain_of(client)?, key_of(client)?)
        .map_err(|e| format!("client key pair: {e}"))?;
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|e| format!("server name {server_name:?}: {e}"))?;

    let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(|e| format!("bind 127.0.0.1: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let server_side = std::thread::spawn(move || -> Result<Vec<u8>, String> {
        let (tcp, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
        set_timeouts(&tcp)?;
        let conn = ServerConnection::new(Arc::new(server_config)).map_err(|e| e.to_string())?;
        let mut tls = StreamOwned::new(conn, tcp);
        let mut line = String::new();
        BufReader::new(&mut tls)
            .read_line(&mut line)
            .map_err(|e| format!("server read: {e}"))?;
        if line != "ping\n" {
            return Err(format!("server received {line:?}"));
        }
        tls.write_all(b"pong\n")
            .and_then(|()| tls.flush())
            .map_err(|e| format!("server write: {e}"))?;
        let peer = tls
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec());
        tls.conn.send_close_notify();
        let _ = tls.flush();
        peer.ok_or_else(|| "the client presented no certificate".to_owned())
    });

    // If the connect fails, the server thread stays blocked in accept; the test fails anyway
    // and the thread ends with the process.
    let tcp = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    set_timeouts(&tcp)?;
    let conn = ClientConnection::new(Arc::new(client_config), name).map_err(|e| e.to_string())?;
    let mut tls = StreamOwned::new(conn, tcp);
    let client_result = (|| -> Result<(Vec<u8>, String), String> {
        tls.write_all(b"ping\n")
            .and_then(|()| tls.flush())
            .map_err(|e| format!("client write: {e}"))?;
        let mut line = String::new();
        BufReader::new(&mut tls)
            .read_line(&mut line)
            .map_err(|e| format!("client read: {e}"))?;
        if line != "pong\n" {
            return Err(format!("client received {line:?}"));
        }
        let server_leaf = tls
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec());
        let protocol = tls
            .conn
            .protocol_version()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default();
        Ok((
            server_leaf.ok_or("the server presented no certificate")?,
            protocol,
        ))
    })();
    drop(tls);
    let server_result = server_side
        .join()
        .map_err(|_| "the server thread panicked".to_owned())?;
    // The server's error explains a client-side failure better (it says why it refused the
    // client certificate), so report it first.
    let client_leaf = server_result.map_err(|e| format!("server side: {e}"))?;
    let (server_leaf, protocol) = client_result.map_err(|e| format!("client side: {e}"))?;
    Ok(Handshake {
        server_leaf,
        client_leaf,
        protocol,
    })
}

fn set_timeouts(tcp: &TcpStream) -> Result<(), String> {
    tcp.set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| tcp.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| format!("socket timeouts: {e}"))
}
