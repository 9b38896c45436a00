//! Revocation records: serials and reasons as people and GitOps repositories write them.

use proptest::prelude::*;

use super::*;

#[test]
fn reasons_parse_by_their_rfc_names_in_any_case() {
    assert_eq!(
        "keyCompromise".parse::<RevocationReason>().unwrap(),
        RevocationReason::KeyCompromise
    );
    assert_eq!(
        "KEYCOMPROMISE".parse::<RevocationReason>().unwrap(),
        RevocationReason::KeyCompromise
    );
    assert_eq!(
        "Key Compromise".parse::<RevocationReason>().unwrap(),
        RevocationReason::KeyCompromise
    );
    assert_eq!(
        "cACompromise".parse::<RevocationReason>().unwrap(),
        RevocationReason::CaCompromise
    );
    assert_eq!(
        "removeFromCRL".parse::<RevocationReason>().unwrap(),
        RevocationReason::RemoveFromCrl
    );
    assert_eq!(RevocationReason::Superseded.to_string(), "superseded");
    assert!(matches!(
        "stolen".parse::<RevocationReason>(),
        Err(RevocationError::UnknownReason(_))
    ));
}

#[test]
fn the_default_reason_is_unspecified() {
    let record = RevokedSerial::parse("01", "2025-06-01T12:00:00Z", None).unwrap();
    assert_eq!(record.reason, RevocationReason::Unspecified);
}

#[test]
fn serials_parse_with_colons_any_case_and_a_0x_prefix() {
    assert_eq!(parse_serial("3A:4F:00").unwrap(), [0x3a, 0x4f, 0x00]);
    assert_eq!(parse_serial("0x3a4f00").unwrap(), [0x3a, 0x4f, 0x00]);
    // Leading zero octets and odd digit counts are the same number.
    assert_eq!(parse_serial("00:00:0a:bc").unwrap(), [0x0a, 0xbc]);
    assert_eq!(parse_serial("abc").unwrap(), [0x0a, 0xbc]);
}

#[test]
fn records_normalise_the_serial_as_certificate_info_prints_it() {
    let record = RevokedSerial::parse(" 00:3A:4F ", "2025-06-01T12:00:00Z", Some("superseded")).unwrap();
    assert_eq!(record.serial_hex, "3a4f");
    assert_eq!(record.revoked_at, at("2025-06-01T12:00:00Z"));
    assert_eq!(record.reason, RevocationReason::Superseded);
}

#[test]
fn empty_zero_non_hex_and_overlong_serials_are_refused() {
    for bad in [
        "",
        "  ",
        ":",
        "00",
        "0x",
        "xyz",
        "12 34",
        "-1",
        &"7f".repeat(21),
        &format!("80{}", "00".repeat(19)),
    ] {
        assert!(
            matches!(parse_serial(bad), Err(RevocationError::InvalidSerial { .. })),
            "{bad:?}"
        );
    }
    // 20 octets with a clear top bit fit.
    assert!(parse_serial(&"7f".repeat(20)).is_ok());
}

#[test]
fn a_record_with_a_bad_time_is_refused() {
    assert!(matches!(
        RevokedSerial::parse("01", "yesterday", None),
        Err(RevocationError::InvalidRevocationTime(_))
    ));
}

proptest! {
    #[test]
    fn the_record_parser_never_panics(serial in ".{0,80}", time in ".{0,40}", reason in proptest::option::of(".{0,30}")) {
        let _ = RevokedSerial::parse(&serial, &time, reason.as_deref());
    }

    #[test]
    fn the_serial_parser_never_panics_on_hexish_text(serial in "[0-9a-fA-FxX: ]{0,64}") {
        let _ = parse_serial(&serial);
    }

    #[test]
    fn serials_round_trip_through_their_hex(octets in proptest::collection::vec(any::<u8>(), 1..20)) {
        let hex: String = octets.iter().map(|b| format!("{b:02x}")).collect();
        let expected: Vec<u8> = octets.iter().copied().skip_while(|b| *b == 0).collect();
        match parse_serial(&hex) {
            Ok(parsed) => prop_assert_eq!(parsed, expected),
            Err(_) => prop_assert!(expected.is_empty()),
        }
    }
}
