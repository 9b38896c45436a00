//! Revocation requested through a Certificate's annotations.

use std::collections::BTreeMap;

use super::*;
use crate::pki::parse_certificate_chain;

fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn leaf_info(ca: &CaKeyPair, from: jiff::Timestamp) -> crate::pki::CertificateInfo {
    parse_certificate_chain(leaf(ca, from).certificate_pem.as_bytes())
        .unwrap()
        .remove(0)
}

#[test]
fn annotations_ask_for_a_revocation_with_an_optional_reason() {
    assert_eq!(RevokeRequest::from_annotations(&annotations(&[])).unwrap(), None);
    let request =
        RevokeRequest::from_annotations(&annotations(&[(REVOKE_REQUESTED_AT, "2025-06-01T12:00:00Z")]))
            .unwrap()
            .unwrap();
    assert_eq!(
        (request.requested_at, request.reason),
        (now(), RevocationReason::Unspecified)
    );
    assert_eq!(request.value, "2025-06-01T12:00:00Z", "the value as written");
    let request = RevokeRequest::from_annotations(&annotations(&[
        (REVOKE_REQUESTED_AT, "2025-06-01T12:00:00Z"),
        (REVOCATION_REASON, "keyCompromise"),
    ]))
    .unwrap()
    .unwrap();
    assert_eq!(request.reason, RevocationReason::KeyCompromise);
}

#[test]
fn unreadable_annotations_are_errors_not_guesses() {
    assert!(matches!(
        RevokeRequest::from_annotations(&annotations(&[(REVOKE_REQUESTED_AT, "now")])),
        Err(RevocationError::InvalidRequestTime(_))
    ));
    assert!(matches!(
        RevokeRequest::from_annotations(&annotations(&[
            (REVOKE_REQUESTED_AT, "2025-06-01T12:00:00Z"),
            (REVOCATION_REASON, "lost it")
        ])),
        Err(RevocationError::UnknownReason(_))
    ));
}

#[test]
fn a_request_revokes_the_certificate_issued_before_it_once() {
    let ca = root_ca(now() - hours(48));
    let current = leaf_info(&ca, now() - hours(2));
    let request = RevokeRequest {
        value: String::new(),
        requested_at: now() - hours(1),
        reason: RevocationReason::KeyCompromise,
    };
    let record = request.revokes(&current, &[], now()).expect("revokes");
    assert_eq!(
        record,
        revoked(
            &current.serial_hex,
            now() - hours(1),
            RevocationReason::KeyCompromise
        )
    );
    assert_eq!(
        revocation_of(&current, std::slice::from_ref(&record)),
        Some(&record)
    );
    // Already recorded: nothing more to add.
    assert_eq!(
        request.revokes(&current, std::slice::from_ref(&record), now()),
        None
    );
}

#[test]
fn a_request_dated_in_the_future_waits() {
    let ca = root_ca(now() - hours(48));
    let current = leaf_info(&ca, now() - hours(2));
    let request = RevokeRequest {
        value: String::new(),
        requested_at: now() + hours(1),
        reason: RevocationReason::Superseded,
    };
    assert_eq!(request.revokes(&current, &[], now()), None);
    assert!(request.revokes(&current, &[], now() + hours(1)).is_some());
}
