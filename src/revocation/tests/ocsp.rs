//! OCSP answers as the `x509-ocsp` decoder reads them, and requests that cannot be read.

use base64::Engine as _;
use der::Decode;
use proptest::prelude::*;
use x509_ocsp::{BasicOcspResponse, CertStatus, OcspResponse, OcspResponseStatus, ResponderId};

use super::*;

const NONE: &[RevokedSerial] = &[];

/// The BasicOCSPResponse inside a successful OCSPResponse.
fn basic(der: &[u8]) -> BasicOcspResponse {
    let response = OcspResponse::from_der(der).expect("OCSPResponse");
    assert_eq!(response.response_status, OcspResponseStatus::Successful);
    let bytes = response.response_bytes.expect("responseBytes");
    assert_eq!(bytes.response_type, const_oid::db::rfc6960::ID_PKIX_OCSP_BASIC);
    BasicOcspResponse::from_der(bytes.response.as_bytes()).expect("BasicOCSPResponse")
}

fn status(der: &[u8]) -> OcspResponseStatus {
    OcspResponse::from_der(der).expect("OCSPResponse").response_status
}

fn timestamp(time: &x509_ocsp::OcspGeneralizedTime) -> i64 {
    time.0.to_unix_duration().as_secs() as i64
}

#[test]
fn a_revoked_serial_is_revoked_with_its_time_and_reason() {
    let ca = root_ca(now() - hours(1));
    let issued = leaf(&ca, now() - hours(1));
    let records = [revoked(
        &issued.serial_hex,
        now() - hours(1),
        RevocationReason::KeyCompromise,
    )];
    let der = respond_ocsp(
        &ca,
        &records,
        &request(vec![cert_id(&ca, &issued.serial_hex, Hash::Sha1)], None),
        now(),
    )
    .unwrap();
    let response = basic(&der);
    let single = &response.tbs_response_data.responses[0];
    let CertStatus::Revoked(info) = &single.cert_status else {
        panic!("not revoked: {:?}", single.cert_status);
    };
    assert_eq!(timestamp(&info.revocation_time), (now() - hours(1)).as_second());
    assert_eq!(
        info.revocation_reason,
        Some(x509_cert::ext::pkix::CrlReason::KeyCompromise)
    );
}

#[test]
fn an_unrevoked_serial_of_this_ca_is_good_for_an_hour() {
    let ca = root_ca(now() - hours(1));
    let issued = leaf(&ca, now() - hours(1));
    let records = [revoked("0abc", now(), RevocationReason::KeyCompromise)];
    let der = respond_ocsp(
        &ca,
        &records,
        &request(vec![cert_id(&ca, &issued.serial_hex, Hash::Sha1)], None),
        now(),
    )
    .unwrap();
    let response = basic(&der);
    let single = &response.tbs_response_data.responses[0];
    assert!(matches!(single.cert_status, CertStatus::Good(_)));
    assert_eq!(timestamp(&single.this_update), now().as_second());
    assert_eq!(
        timestamp(single.next_update.as_ref().unwrap()),
        (now() + OCSP_VALIDITY).as_second()
    );
    assert_eq!(
        timestamp(&response.tbs_response_data.produced_at),
        now().as_second()
    );
}

#[test]
fn a_serial_of_another_issuer_is_unknown_even_if_revoked_here() {
    let ca = root_ca(now() - hours(1));
    let other = root_ca(now() - hours(1));
    let records = [revoked("3a4f", now(), RevocationReason::KeyCompromise)];
    let der = respond_ocsp(
        &ca,
        &records,
        &request(vec![cert_id(&other, "3a4f", Hash::Sha1)], None),
        now(),
    )
    .unwrap();
    assert!(matches!(
        basic(&der).tbs_response_data.responses[0].cert_status,
        CertStatus::Unknown(_)
    ));
}

#[test]
fn sha256_cert_ids_are_answered_and_each_request_gets_its_answer_in_order() {
    let ca = root_ca(now() - hours(1));
    let records = [revoked("02", now(), RevocationReason::Superseded)];
    let ids = vec![cert_id(&ca, "01", Hash::Sha256), cert_id(&ca, "02", Hash::Sha256)];
    let der = respond_ocsp(&ca, &records, &request(ids.clone(), None), now()).unwrap();
    let responses = basic(&der).tbs_response_data.responses;
    assert_eq!(responses.len(), 2);
    assert_eq!(responses[0].cert_id, ids[0]);
    assert!(matches!(responses[0].cert_status, CertStatus::Good(_)));
    assert!(matches!(responses[1].cert_status, CertStatus::Revoked(_)));
}

#[test]
fn the_nonce_is_echoed() {
    let ca = root_ca(now() - hours(1));
    let der = respond_ocsp(
        &ca,
        &[],
        &request(vec![cert_id(&ca, "01", Hash::Sha1)], Some(b"0123456789abcdef")),
        now(),
    )
    .unwrap();
    let extensions = basic(&der)
        .tbs_response_data
        .response_extensions
        .expect("extensions");
    assert_eq!(extensions.len(), 1);
    assert_eq!(extensions[0].extn_id, const_oid::db::rfc6960::ID_PKIX_OCSP_NONCE);
    let echoed = der::asn1::OctetString::from_der(extensions[0].extn_value.as_bytes()).unwrap();
    assert_eq!(echoed.as_bytes(), b"0123456789abcdef");

    let without = respond_ocsp(
        &ca,
        &[],
        &request(vec![cert_id(&ca, "01", Hash::Sha1)], None),
        now(),
    )
    .unwrap();
    assert!(basic(&without).tbs_response_data.response_extensions.is_none());
}

#[test]
fn the_response_is_signed_by_the_ca_key_and_names_it_by_key_hash() {
    let ca = root_ca(now() - hours(1));
    let der = respond_ocsp(
        &ca,
        &[],
        &request(vec![cert_id(&ca, "01", Hash::Sha1)], None),
        now(),
    )
    .unwrap();
    let response = basic(&der);
    let key_bits = crate::pki::public_key_bits(&ca.certificate().public_key_der).unwrap();
    let ResponderId::ByKey(hash) = &response.tbs_response_data.responder_id else {
        panic!("responder named by name");
    };
    let expected = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &key_bits);
    assert_eq!(hash.as_bytes(), expected.as_ref());

    let signed = der::Encode::to_der(&response.tbs_response_data).unwrap();
    aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1, &key_bits)
        .verify(&signed, response.signature.raw_bytes())
        .expect("signature verifies");
}

#[test]
fn malformed_requests_get_the_malformed_request_status() {
    let ca = root_ca(now() - hours(1));
    let good = request(vec![cert_id(&ca, "01", Hash::Sha1)], None);
    let no_certificates = request(vec![], None);
    for bad in [
        &b""[..],
        b"not DER",
        &good[..good.len() - 1],
        &no_certificates,
        &[0x30, 0x80, 0x00, 0x00],
    ] {
        let der = respond_ocsp(&ca, NONE, bad, now()).unwrap();
        assert_eq!(status(&der), OcspResponseStatus::MalformedRequest, "{bad:02x?}");
        assert!(OcspResponse::from_der(&der).unwrap().response_bytes.is_none());
    }
}

#[test]
fn error_responses_carry_only_their_status() {
    let der = ocsp_error_response(OcspResponseStatus::Unauthorized).unwrap();
    assert_eq!(status(&der), OcspResponseStatus::Unauthorized);
    assert_eq!(
        OcspRequestError::Unauthorized.status(),
        OcspResponseStatus::Unauthorized
    );
    assert_eq!(
        OcspRequestError::Empty.status(),
        OcspResponseStatus::MalformedRequest
    );
}

#[test]
fn get_requests_decode_from_url_encoded_base64_padded_or_not() {
    let ca = root_ca(now() - hours(1));
    let der = request(vec![cert_id(&ca, "01", Hash::Sha1)], None);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    let escaped = b64.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D");
    assert_eq!(ocsp_request_from_get_path(&b64).unwrap(), der);
    assert_eq!(ocsp_request_from_get_path(&escaped).unwrap(), der);
    assert_eq!(
        ocsp_request_from_get_path(b64.trim_end_matches('=')).unwrap(),
        der
    );
    assert_eq!(ocsp_request_from_get_path(&format!("/{b64}")).unwrap(), der);
    for bad in ["%", "%zz", "%+1", "!!!!", "%FF%FE"] {
        assert_eq!(
            ocsp_request_from_get_path(bad),
            Err(OcspRequestError::NotBase64),
            "{bad}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bytes_get_an_answer_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let ca = fixture();
        let der = respond_ocsp(ca, NONE, &bytes, now()).unwrap();
        let answer = status(&der);
        prop_assert!(matches!(answer, OcspResponseStatus::MalformedRequest | OcspResponseStatus::Successful));
    }

    #[test]
    fn mutated_requests_get_an_answer_never_a_panic(index in 0usize..200, value in any::<u8>(), cut in 0usize..200) {
        let ca = fixture();
        let mut der = request(vec![cert_id(ca, "01", Hash::Sha1)], Some(b"nonce"));
        let len = der.len();
        if let Some(byte) = der.get_mut(index % len) {
            *byte = value;
        }
        der.truncate(der.len() - cut % der.len());
        let answer = status(&respond_ocsp(ca, NONE, &der, now()).unwrap());
        prop_assert!(matches!(answer, OcspResponseStatus::MalformedRequest | OcspResponseStatus::Successful));
    }

    #[test]
    fn any_get_path_decodes_or_is_refused_never_a_panic(path in ".{0,200}") {
        let _ = ocsp_request_from_get_path(&path);
    }
}

/// One CA for all proptest cases: key generation per case would dominate.
fn fixture() -> &'static CaKeyPair {
    static CA: std::sync::OnceLock<CaKeyPair> = std::sync::OnceLock::new();
    CA.get_or_init(|| root_ca(now() - hours(1)))
}

#[test]
fn a_map_by_serial_answers_as_the_list_does() {
    let ca = root_ca(now() - hours(1));
    let records = vec![revoked("3a4f", now(), RevocationReason::KeyCompromise)];
    let map: std::collections::HashMap<String, RevokedSerial> = records
        .iter()
        .map(|r| (r.serial_hex.clone(), r.clone()))
        .collect();
    let der = request(
        vec![cert_id(&ca, "3a4f", Hash::Sha1), cert_id(&ca, "01", Hash::Sha1)],
        None,
    );
    let from_list = basic(&respond_ocsp(&ca, &records, &der, now()).unwrap());
    let from_map = basic(&respond_ocsp(&ca, &map, &der, now()).unwrap());
    assert_eq!(
        from_list.tbs_response_data.responses,
        from_map.tbs_response_data.responses
    );
}
