//! The quickstart, as a new user lives it: apply the example CA hierarchy, wait for it, look
//! at it with kubectl, verify the chains with openssl, and use the two service certificates
//! for a mutual-TLS connection.

use std::collections::BTreeMap;

use jiff::SignedDuration;

use crate::support::tls::{self, Purpose};
use crate::support::{TestEnv, TlsSecret, revision_of};

/// The example's leaf certificates: (Certificate, Secret).
const SERVICES: [(&str, &str); 2] = [("frontend", "frontend-tls"), ("backend", "backend-tls")];

#[tokio::test]
async fn quickstart_hierarchy_issues_chains_that_complete_mutual_tls() {
    let Some(env) = TestEnv::start("quickstart").await else {
        return;
    };
    let ns = env.namespace.clone();
    let dir = env.work_dir.clone();

    let applied = env.apply_examples().await;
    let certificates: Vec<&str> = applied
        .iter()
        .filter(|(kind, _)| kind == "Certificate")
        .map(|(_, name)| name.as_str())
        .collect();
    assert_eq!(
        certificates,
        ["root-ca", "intermediate-ca", "frontend", "backend"],
        "the example Certificates, in order"
    );

    // `kubectl wait --for=condition=Ready certificate --all`: the whole hierarchy converges
    // although it was applied at once (each CA Issuer waits for its Secret).
    let mut ready = BTreeMap::new();
    for name in &certificates {
        ready.insert(*name, env.wait_ready(name).await);
    }
    env.wait_issuer_ready("selfsigned").await;
    for name in ["root-ca", "intermediate-ca"] {
        let issuer = env.wait_issuer_ready(name).await;
        let status = issuer.status.unwrap_or_default();
        assert!(
            status.ca_not_after.is_some(),
            "Issuer {name} reports its CA's notAfter"
        );
        assert!(
            status.ca_fingerprint_sha256.is_some(),
            "Issuer {name} reports its CA's fingerprint"
        );
    }

    // The root: self-signed, alone in tls.crt and in ca.crt.
    let root = env.tls_secret("root-ca").await;
    let root_chain = root.chain_der();
    assert_eq!(
        root_chain.len(),
        1,
        "root-ca tls.crt holds the self-signed root alone"
    );
    assert_eq!(
        tls::certificates_der(&root.ca),
        root_chain,
        "root-ca ca.crt is the root itself"
    );
    let root_pem = root.ca.clone();
    let root_text = tls::describe(&dir, "root-ca", &root_pem);
    assert!(root_text.contains("CA:TRUE"), "the root is a CA:\n{root_text}");
    assert!(
        root_text.contains("ASN1 OID: secp384r1"),
        "the root has the ECDSA P-384 key it asked for:\n{root_text}"
    );
    assert!(
        root_text.contains("CN = certkeeper demo root CA")
            || root_text.contains("CN=certkeeper demo root CA")
    );

    // The intermediate: signed by the root; tls.crt excludes the root, ca.crt is the root.
    let intermediate = env.tls_secret("intermediate-ca").await;
    let intermediate_chain = intermediate.chain_der();
    assert_eq!(
        intermediate_chain.len(),
        1,
        "intermediate-ca tls.crt holds the intermediate without the root"
    );
    assert_eq!(
        tls::certificates_der(&intermediate.ca),
        root_chain,
        "intermediate-ca ca.crt is the root"
    );
    tls::verify_chain(
        &dir,
        "intermediate-ca",
        &intermediate.chain,
        &root_pem,
        Purpose::Any,
    );
    let intermediate_text = tls::describe(&dir, "intermediate-ca", &intermediate.leaf_pem());
    assert!(
        intermediate_text.contains("CA:TRUE"),
        "the intermediate is a CA:\n{intermediate_text}"
    );

    let mut services: BTreeMap<&str, TlsSecret> = BTreeMap::new();
    for (name, secret_name) in SERVICES {
        let secret = env.tls_secret(secret_name).await;
        let chain = secret.chain_der();
        assert_eq!(
            chain.len(),
            2,
            "{secret_name} tls.crt: the leaf, then the intermediate"
        );
        assert_eq!(
            chain[1], intermediate_chain[0],
            "{secret_name} tls.crt carries the current intermediate"
        );
        assert_eq!(
            tls::certificates_der(&secret.ca),
            root_chain,
            "{secret_name} ca.crt is the root"
        );

        // The Secret's metadata (SPEC "The Secret").
        assert_eq!(
            secret.label("certkeeper.io/certificate-name"),
            Some(name),
            "{secret_name} label"
        );
        for (annotation, want) in [
            ("certkeeper.io/certificate-name", name),
            ("certkeeper.io/issuer-name", "intermediate-ca"),
            ("certkeeper.io/issuer-kind", "Issuer"),
            ("certkeeper.io/issuer-group", "certkeeper.io"),
            ("certkeeper.io/revision", "1"),
        ] {
            assert_eq!(
                secret.annotation(annotation),
                Some(want),
                "{secret_name} annotation {annotation}"
            );
        }
        let dns_name = format!("{name}.{ns}.svc");
        let spiffe_id = format!("spiffe://cluster.local/ns/{ns}/sa/{name}");
        assert_eq!(
            secret.annotation("certkeeper.io/alt-names"),
            Some(dns_name.as_str())
        );
        assert_eq!(
            secret.annotation("certkeeper.io/uri-sans"),
            Some(spiffe_id.as_str())
        );

        // openssl, not certkeeper's own parser, says the chain leads to the root, for both
        // ends of mTLS (the default usages).
        tls::verify_chain(&dir, secret_name, &secret.chain, &root_pem, Purpose::TlsServer);
        tls::verify_chain(&dir, secret_name, &secret.chain, &root_pem, Purpose::TlsClient);
        let leaf_pem = secret.leaf_pem();
        let text = tls::describe(&dir, secret_name, &leaf_pem);
        assert!(
            text.contains(&format!("DNS:{dns_name}")),
            "{secret_name} has DNS SAN {dns_name}:\n{text}"
        );
        assert!(
            text.contains(&format!("URI:{spiffe_id}")),
            "{secret_name} has URI SAN {spiffe_id}:\n{text}"
        );
        assert!(text.contains("CA:FALSE"), "{secret_name} is not a CA:\n{text}");

        // The status describes what is in the Secret.
        let status = ready[name].status.clone().unwrap_or_default();
        assert_eq!(
            status.serial_number.as_deref(),
            Some(tls::serial_number(&dir, secret_name, &leaf_pem).as_str()),
            "{name} status.serialNumber is the Secret's certificate's"
        );
        assert_eq!(status.revision, Some(1), "{name} first issuance is revision 1");
        let (not_before, not_after, renewal) = (
            status.not_before.expect("status.notBefore").0,
            status.not_after.expect("status.notAfter").0,
            status.renewal_time.expect("status.renewalTime").0,
        );
        assert_eq!(
            not_after.duration_since(not_before),
            SignedDuration::from_hours(24),
            "{name} lives 24h"
        );
        // Default renewBefore is a third of the lifetime (8h), less a jitter of at most 10 %
        // of min(8h, 16h) = 48 min.
        let latest = not_after - SignedDuration::from_hours(8);
        assert!(
            renewal <= latest && renewal >= latest - SignedDuration::from_mins(48),
            "{name} renewalTime {renewal} not within 48 min before {latest}"
        );
        services.insert(name, secret);
    }

    // `kubectl get certs`: the printer columns a user reads.
    let table = env.kubectl(&["get", "certs"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "SECRET", "ISSUER", "EXPIRES", "AGE"],
        "kubectl get certs:\n{table}"
    );
    let rows: BTreeMap<&str, Vec<&str>> = lines
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter_map(|cells| Some((*cells.first()?, cells)))
        .collect();
    for (name, cert) in &ready {
        let row = rows
            .get(name)
            .unwrap_or_else(|| panic!("kubectl get certs lists {name}:\n{table}"));
        let status = cert.status.clone().unwrap_or_default();
        let not_after =
            serde_json::to_value(status.not_after.expect("status.notAfter")).expect("notAfter as JSON");
        assert_eq!(row.get(1), Some(&"True"), "{name} READY:\n{table}");
        assert_eq!(
            row.get(2).copied(),
            Some(cert.spec.secret_name.as_str()),
            "{name} SECRET:\n{table}"
        );
        assert_eq!(
            row.get(3).copied(),
            Some(cert.spec.issuer_ref.name.as_str()),
            "{name} ISSUER:\n{table}"
        );
        // A printer column of type `date` shows the age of a timestamp, and `<invalid>` for any
        // time in the future, which notAfter always is; EXPIRES must show the time itself.
        assert_eq!(
            row.get(4).copied(),
            not_after.as_str(),
            "{name} EXPIRES shows notAfter:\n{table}"
        );
    }
    let issuers = env.kubectl(&["get", "issuers"]);
    assert!(
        !issuers.contains("<invalid>"),
        "kubectl get issuers shows no <invalid> cell:\n{issuers}"
    );

    // A real mutual-TLS connection on 127.0.0.1: frontend serves, backend connects; each
    // trusts only the root from its own ca.crt.
    let frontend = &services["frontend"];
    let backend = &services["backend"];
    let server_name = format!("frontend.{ns}.svc");
    let handshake = tls::mutual_tls(
        &frontend.key_pair(),
        &server_name,
        &backend.key_pair(),
        &backend.ca,
    )
    .unwrap_or_else(|e| panic!("mTLS frontend (server) <- backend (client): {e}"));
    assert_eq!(
        handshake.server_leaf,
        frontend.chain_der()[0],
        "the client saw the frontend certificate"
    );
    assert_eq!(
        handshake.client_leaf,
        backend.chain_der()[0],
        "the server saw the backend certificate"
    );
    eprintln!(
        "e2e quickstart: mTLS handshake completed over {}",
        handshake.protocol
    );
    // The reverse direction too: the default usages make every leaf both server and client.
    let server_name = format!("backend.{ns}.svc");
    tls::mutual_tls(
        &backend.key_pair(),
        &server_name,
        &frontend.key_pair(),
        &frontend.ca,
    )
    .unwrap_or_else(|e| panic!("mTLS backend (server) <- frontend (client): {e}"));

    // One Normal `Issued` Event per Certificate; no Event carries key material.
    for name in &certificates {
        env.wait_for_event(name, "Normal", "Issued").await;
        for event in env.certificate_events(name).await {
            let note = event.note.unwrap_or_default();
            assert!(
                !note.contains("PRIVATE KEY"),
                "Event about {name} leaks key material: {note}"
            );
        }
        assert_eq!(revision_of(&ready[name]), Some(1));
    }
}
