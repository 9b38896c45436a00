//! The pure parts of the Certificate controller: spec validation, trigger policies, the
//! Secret layout and status, at exact instants and without any client.

use jiff::SignedDuration;
use k8s_openapi::api::core::v1::Secret;

use super::secret::{self, CurrentKeyPair, SecretMaterial, SecretState};
use super::spec::{self, RenewBefore};
use super::status;
use super::triggers::{self, Decision, PolicyInput, Signer, TriggerReason};
use crate::api::{Certificate, SecretTemplate};
use crate::pki::{KeyAlgorithm, KeySpec, PrivateKey, Usage, parse_certificate_chain, sign_self_signed};
use crate::testing::{certificate, ts};

const NOW: &str = "2026-11-23T10:00:00Z";

/// A self-signed key pair for `cert` issued at NOW, as the Secret would hold it.
fn issued(cert: &Certificate) -> (CurrentKeyPair, SecretMaterial) {
    let spec = spec::validate(&cert.spec).unwrap();
    let key = PrivateKey::generate(spec.key).unwrap();
    let certificate = sign_self_signed(&spec.template(ts(NOW)), &key).unwrap();
    let material = SecretMaterial {
        chain_pem: certificate.chain_pem.clone(),
        key_pem: key.to_pem(spec.key_encoding).unwrap(),
        key_der: None,
        ca_pem: certificate.ca_pem.clone(),
        key_pkcs8: key.to_der(crate::pki::KeyEncoding::Pkcs8).unwrap(),
        stores: Default::default(),
    };
    let current = CurrentKeyPair {
        chain: parse_certificate_chain(certificate.chain_pem.as_bytes()).unwrap(),
        key,
        issuer_name: Some(cert.spec.issuer_ref.name.clone()),
        issuer_kind: Some("Issuer".into()),
        issuer_group: Some("certkeeper.io".into()),
        revision: Some(1),
    };
    (current, material)
}

fn decide(
    cert: &Certificate,
    state: &SecretState,
    now: &str,
    requested: Option<&str>,
) -> Option<TriggerReason> {
    let spec = spec::validate(&cert.spec).unwrap();
    let renewal_time = match state {
        SecretState::Present(c) => Some(super::schedule::renewal_time(
            c.leaf().not_before,
            c.leaf().not_after,
            spec.renew_before,
            "uid",
        )),
        _ => None,
    };
    // Which request is still to be answered, as the controller judges it (a status written
    // before requests were recorded: see `requests::unanswered`).
    let request = requested.map(|r| super::requests::RenewRequest::parse(r).unwrap());
    let not_before = match state {
        SecretState::Present(c) => Some(c.leaf().not_before),
        _ => None,
    };
    let pending =
        super::requests::Pending::of(request.as_ref(), None, false, &Default::default(), not_before);
    let input = PolicyInput {
        spec: &spec,
        signer: &Signer::SelfSigned,
        renewal_time,
        renew_requested_at: pending.renew.map(|r| r.at),
        rotation: crate::issuer::rotation::RotationGate::Now,
        uid: "uid",
        revoked: &[],
        revoke_request: None,
        now: ts(now),
    };
    match triggers::evaluate(&input, state) {
        Decision::UpToDate(_) => None,
        Decision::Issue(t) => Some(t.reason),
    }
}

#[test]
fn spec_defaults_follow_cert_manager_plus_client_auth() {
    let cert = certificate("web", "ca", &["web"]);
    let mut spec_in = cert.spec.clone();
    spec_in.duration = None;
    let spec = spec::validate(&spec_in).unwrap();
    assert_eq!(spec.duration, SignedDuration::from_hours(2160));
    assert_eq!(
        spec.key,
        KeySpec {
            algorithm: KeyAlgorithm::Ecdsa,
            size: 256
        }
    );
    assert_eq!(spec.renew_before, RenewBefore::Default);
    assert_eq!(
        spec.usages.iter().copied().collect::<Vec<_>>(),
        vec![Usage::DigitalSignature, Usage::ServerAuth, Usage::ClientAuth]
    );
    spec_in.private_key = Some(crate::api::PrivateKeySpec {
        algorithm: Some(KeyAlgorithm::Rsa),
        ..Default::default()
    });
    let rsa = spec::validate(&spec_in).unwrap();
    assert_eq!(rsa.key.size, 2048);
    assert!(rsa.usages.contains(&Usage::KeyEncipherment));
}

#[test]
fn spec_refuses_what_the_schema_cannot() {
    let base = certificate("web", "ca", &["web"]).spec;
    let refused = |f: &dyn Fn(&mut crate::api::CertificateSpec)| {
        let mut s = base.clone();
        f(&mut s);
        spec::validate(&s).unwrap_err().0
    };
    assert!(refused(&|s| s.duration = Some("59m".into())).contains("minimum of 1h"));
    assert!(refused(&|s| s.renew_before = Some("24h".into())).contains("shorter than spec.duration"));
    assert!(refused(&|s| s.ip_addresses = Some(vec!["10.0.0.300".into()])).contains("not an IP address"));
    assert!(refused(&|s| s.duration = Some("1 day".into())).contains("not a Go duration"));
    assert!(
        refused(&|s| s.private_key = Some(crate::api::PrivateKeySpec {
            algorithm: Some(KeyAlgorithm::Ed25519),
            encoding: Some(crate::pki::KeyEncoding::Pkcs1),
            ..Default::default()
        }))
        .contains("Ed25519")
    );
}

#[test]
fn ca_certificate_gets_cert_sign_and_crl_sign_but_no_tls_usages() {
    let mut cert = certificate("root", "self", &[]);
    cert.spec.dns_names = None;
    cert.spec.common_name = Some("root".into());
    cert.spec.is_ca = Some(true);
    let spec = spec::validate(&cert.spec).unwrap();
    assert_eq!(
        spec.usages.iter().copied().collect::<Vec<_>>(),
        vec![Usage::DigitalSignature, Usage::CertSign, Usage::CrlSign],
        "a CA gets no server/client auth by default"
    );
}

#[test]
fn missing_secret_and_missing_data_trigger_issuance() {
    let cert = certificate("web", "self", &["web"]);
    assert_eq!(
        decide(&cert, &SecretState::Missing, NOW, None),
        Some(TriggerReason::SecretMissing)
    );
    assert_eq!(
        decide(&cert, &secret::read(Some(&Secret::default())), NOW, None),
        Some(TriggerReason::MissingData)
    );
    let garbage: Secret = serde_json::from_value(serde_json::json!({
        "data": {"tls.crt": crate::testing::b64(b"not pem"), "tls.key": crate::testing::b64(b"nope")}
    }))
    .unwrap();
    assert_eq!(
        decide(&cert, &secret::read(Some(&garbage)), NOW, None),
        Some(TriggerReason::InvalidData)
    );
}

#[test]
fn valid_secret_needs_nothing_until_renewal_time() {
    let cert = certificate("web", "self", &["web"]);
    let (current, _) = issued(&cert);
    let state = SecretState::Present(current);
    assert_eq!(decide(&cert, &state, "2026-11-24T00:00:00Z", None), None);
    // renewBefore = 8 h of 24 h, jitter ≤ 48 min: due by 02:00, not before 01:12.
    assert_eq!(decide(&cert, &state, "2026-11-24T01:11:59Z", None), None);
    assert_eq!(
        decide(&cert, &state, "2026-11-24T02:00:00Z", None),
        Some(TriggerReason::RenewalDue)
    );
    assert_eq!(
        decide(&cert, &state, "2026-11-24T10:00:00Z", None),
        Some(TriggerReason::Expired)
    );
}

#[test]
fn foreign_key_is_an_invalid_key_pair() {
    let cert = certificate("web", "self", &["web"]);
    let (mut current, _) = issued(&cert);
    current.key = PrivateKey::generate(KeySpec {
        algorithm: KeyAlgorithm::Ecdsa,
        size: 256,
    })
    .unwrap();
    assert_eq!(
        decide(&cert, &SecretState::Present(current), NOW, None),
        Some(TriggerReason::KeyMismatch)
    );
}

#[test]
fn changed_issuer_ref_is_an_incorrect_issuer() {
    let cert = certificate("web", "self", &["web"]);
    let (current, _) = issued(&cert);
    let mut moved = cert.clone();
    moved.spec.issuer_ref.name = "other".into();
    assert_eq!(
        decide(&moved, &SecretState::Present(current), NOW, None),
        Some(TriggerReason::IncorrectIssuer)
    );
}

#[test]
fn spec_mismatch_names_what_differs() {
    let cert = certificate("web", "self", &["web"]);
    let (current, _) = issued(&cert);
    let mut changed = cert.clone();
    changed.spec.dns_names = Some(vec!["web".into(), "www".into()]);
    changed.spec.duration = Some("48h".into());
    let spec = spec::validate(&changed.spec).unwrap();
    let trigger = triggers::spec_mismatch(&spec, &Signer::SelfSigned, &current).unwrap();
    assert_eq!(trigger.reason, TriggerReason::SpecMismatch);
    assert_eq!(
        trigger.message,
        "the certificate differs from the spec in: dnsNames, duration"
    );
    // Order of names does not matter.
    let mut reordered = cert.clone();
    reordered.spec.dns_names = Some(vec!["web".into()]);
    let spec = spec::validate(&reordered.spec).unwrap();
    assert!(triggers::spec_mismatch(&spec, &Signer::SelfSigned, &current).is_none());
}

#[test]
fn a_ca_certificate_whose_name_constraints_differ_from_the_spec_is_reissued() {
    let mut cert = certificate("team-ca", "self", &[]);
    cert.spec.dns_names = None;
    cert.spec.common_name = Some("Team CA".into());
    cert.spec.is_ca = Some(true);
    let team = |domains: serde_json::Value| {
        Some(
            serde_json::from_value(
                serde_json::json!({"critical": true, "permitted": {"dnsDomains": domains}}),
            )
            .unwrap(),
        )
    };
    cert.spec.name_constraints = team(serde_json::json!(["team.svc", "cluster.local"]));
    let (current, _) = issued(&cert);
    let mismatch = |c: &Certificate| {
        let spec = spec::validate(&c.spec).unwrap();
        triggers::spec_mismatch(&spec, &Signer::SelfSigned, &current).map(|t| t.message)
    };
    assert_eq!(mismatch(&cert), None);
    // The order of the entries does not matter.
    let mut reordered = cert.clone();
    reordered.spec.name_constraints = team(serde_json::json!(["cluster.local", "team.svc"]));
    assert_eq!(mismatch(&reordered), None);

    let expected = Some("the certificate differs from the spec in: nameConstraints".to_owned());
    let mut narrowed = cert.clone();
    narrowed.spec.name_constraints = team(serde_json::json!(["team.svc"]));
    assert_eq!(mismatch(&narrowed), expected);
    let mut not_critical = cert.clone();
    if let Some(nc) = not_critical.spec.name_constraints.as_mut() {
        nc.critical = None;
    }
    assert_eq!(mismatch(&not_critical), expected);
    let mut dropped = cert.clone();
    dropped.spec.name_constraints = None;
    assert_eq!(mismatch(&dropped), expected);

    // A CA certificate issued before the spec asked for constraints lacks them.
    let (unconstrained, _) = issued(&dropped);
    let spec = spec::validate(&cert.spec).unwrap();
    let trigger = triggers::spec_mismatch(&spec, &Signer::SelfSigned, &unconstrained).unwrap();
    assert_eq!(trigger.reason, TriggerReason::SpecMismatch);
    assert_eq!(Some(trigger.message), expected);
}

#[test]
fn renewal_request_after_issuance_triggers_once_and_future_requests_wait() {
    let cert = certificate("web", "self", &["web"]);
    let (current, _) = issued(&cert);
    let state = SecretState::Present(current);
    let later = "2026-11-23T11:00:00Z";
    assert_eq!(
        decide(&cert, &state, later, Some("2026-11-23T10:30:00Z")),
        Some(TriggerReason::ManuallyTriggered)
    );
    // Requested before this certificate was issued: already satisfied.
    assert_eq!(decide(&cert, &state, later, Some("2026-11-23T09:00:00Z")), None);
    // Requested for a time still to come (clock skew): waits for it.
    assert_eq!(decide(&cert, &state, later, Some("2026-11-23T12:00:00Z")), None);
}

#[test]
fn secret_layout_has_every_spec_key_label_and_annotation() {
    let mut cert = certificate("web", "self", &["web", "web.apps.svc"]);
    cert.spec.ip_addresses = Some(vec!["10.0.0.1".into()]);
    cert.spec.uris = Some(vec!["spiffe://cluster.local/ns/apps/sa/web".into()]);
    cert.spec.secret_template = Some(Box::new(SecretTemplate {
        labels: Some([("team".to_string(), "a".to_string())].into()),
        annotations: Some([("note".to_string(), "x".to_string())].into()),
    }));
    cert.spec.additional_output_formats = Some(vec![
        crate::api::AdditionalOutputFormat {
            type_: crate::api::OutputFormatType::CombinedPem,
        },
        crate::api::AdditionalOutputFormat {
            type_: crate::api::OutputFormatType::Der,
        },
    ]);
    let spec = spec::validate(&cert.spec).unwrap();
    let (current, mut material) = issued(&cert);
    material.key_der = Some(current.key.to_der(spec.key_encoding).unwrap());
    let s = secret::desired_secret(&cert, &spec, current.leaf(), &material, 3);
    assert_eq!(s.type_.as_deref(), Some("kubernetes.io/tls"));
    let labels = s.metadata.labels.clone().unwrap();
    assert_eq!(labels["certkeeper.io/certificate-name"], "web");
    assert_eq!(labels["team"], "a");
    let ann = s.metadata.annotations.clone().unwrap();
    assert_eq!(ann["certkeeper.io/alt-names"], "web,web.apps.svc");
    assert_eq!(ann["certkeeper.io/ip-sans"], "10.0.0.1");
    assert_eq!(
        ann["certkeeper.io/uri-sans"],
        "spiffe://cluster.local/ns/apps/sa/web"
    );
    assert_eq!(ann["certkeeper.io/revision"], "3");
    assert_eq!(ann["note"], "x");
    let data = s.data.clone().unwrap();
    let keys: Vec<_> = data.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["ca.crt", "key.der", "tls-combined.pem", "tls.crt", "tls.key"]
    );
    let combined = String::from_utf8(data["tls-combined.pem"].0.clone()).unwrap();
    assert!(combined.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(combined.contains("-----BEGIN CERTIFICATE-----"));

    // What others add is fine; what we own drifting is not.
    let mut current_secret = s.clone();
    current_secret
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("other".into(), "y".into());
    current_secret
        .data
        .as_mut()
        .unwrap()
        .insert("extra".into(), k8s_openapi::ByteString(b"z".to_vec()));
    assert!(secret::secret_up_to_date(&current_secret, &s, &cert));
    current_secret.metadata.labels.as_mut().unwrap().remove("team");
    assert!(!secret::secret_up_to_date(&current_secret, &s, &cert));
}

#[test]
fn failure_keeps_ready_while_the_current_certificate_is_valid() {
    let cert = certificate("web", "self", &["web"]);
    let (current, _) = issued(&cert);
    let facts = status::IssuedFacts::new(current.leaf(), ts("2026-11-24T02:00:00Z"), 1);
    let ready = status::ready(&Default::default(), &facts, Some(1), ts(NOW));
    let failed = status::issuance_failed(
        &ready,
        Some(&facts),
        "Renewing",
        "due",
        "CA gone",
        Some(1),
        ts("2026-11-24T02:00:00Z"),
    );
    let r = crate::api::find_condition(&failed.conditions, status::READY).unwrap();
    assert_eq!(r.status, "True");
    assert_eq!(failed.failed_issuance_attempts, Some(1));
    let again = status::issuance_failed(
        &failed,
        Some(&facts),
        "Renewing",
        "due",
        "CA gone",
        Some(1),
        ts("2026-11-24T02:00:10Z"),
    );
    assert_eq!(again.failed_issuance_attempts, Some(2));
    // The Ready condition did not transition: its time is kept.
    let r2 = crate::api::find_condition(&again.conditions, status::READY).unwrap();
    assert_eq!(r2.last_transition_time, r.last_transition_time);
}
