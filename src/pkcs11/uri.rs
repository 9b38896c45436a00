//! RFC 7512 PKCS#11 URIs as an Issuer names its CA key (`pkcs11:token=ca;object=root-2026`):
//! parsing, the refusals that keep a key reference unambiguous and PIN-free, and the canonical
//! form written to logs and audit lines.
//!
//! Our own parser: the crates on offer pull in a second PKCS#11 stack or return values still
//! percent-encoded (docs/pkcs11-research.md §3). Values are RFC-strict: `id=01` is the two bytes
//! `0x30 0x31`; the byte `0x01` that `pkcs11-tool --id 01` writes is `id=%01`.

use std::fmt;
use std::str::FromStr;

/// What an Issuer's `pkcs11.uri` names: a token (by label, serial and friends), a key on it
/// (by label and/or id), and which of the controller's modules to load it from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// The token's label (CK_TOKEN_INFO `label`).
    pub token: Option<String>,
    /// CK_TOKEN_INFO `manufacturerID`.
    pub manufacturer: Option<String>,
    /// CK_TOKEN_INFO `serialNumber`.
    pub serial: Option<String>,
    /// CK_TOKEN_INFO `model`.
    pub model: Option<String>,
    /// The key's CKA_LABEL.
    pub object: Option<String>,
    /// The key's CKA_ID: raw bytes after percent-decoding.
    pub id: Option<Vec<u8>>,
    /// The slot, decimal. Slot ids can change when a token is re-initialised, so a key
    /// reference should not rely on it alone.
    pub slot_id: Option<u64>,
    /// Query attribute: a NAME of `--pkcs11-module NAME=PATH`.
    pub module_name: Option<String>,
    /// Query attribute: must equal a configured module path (an Issuer never picks code to load).
    pub module_path: Option<String>,
}

/// A URI certkeeper refuses, with the reason. `uri` is the input as given, except when the input
/// carries a PIN: then it is withheld, so the error can be logged, put in a status and an Event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PKCS#11 URI {uri:?}: {why}")]
pub struct UriError {
    pub uri: String,
    pub why: String,
}

/// Stands in for an input that carries a PIN, in every error about it.
const PIN_WITHHELD: &str = "<not shown: it carries a PIN>";

const SCHEME: &str = "pkcs11:";

const PIN_REFUSED: &str = "the PIN comes from pinSecretRef (or --pin-file), never from the URI";

/// Path attributes certkeeper reads. The RFC's slot-description, slot-manufacturer and
/// library-* are left out on purpose: a CA key is found by its token and its own label or id.
const PATH_ATTRIBUTES: [&str; 8] = [
    "token",
    "manufacturer",
    "serial",
    "model",
    "slot-id",
    "object",
    "id",
    "type",
];

const QUERY_ATTRIBUTES: [&str; 2] = ["module-name", "module-path"];

/// Which part of the URI an attribute was found in: the RFC keeps the two sets apart.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Path,
    Query,
}

impl FromStr for Pkcs11Uri {
    type Err = UriError;

    fn from_str(input: &str) -> Result<Self, UriError> {
        let shown = if carries_pin(input) {
            PIN_WITHHELD.to_string()
        } else {
            input.to_string()
        };
        let refuse = |why: String| UriError {
            uri: shown.clone(),
            why,
        };

        let scheme_ok = input
            .get(..SCHEME.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(SCHEME));
        let rest = match input.get(SCHEME.len()..) {
            Some(rest) if scheme_ok => rest,
            _ => return Err(refuse("not a PKCS#11 URI: it must start with pkcs11:".into())),
        };
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, query),
            None => (rest, ""),
        };
        let attributes: Vec<(Part, &str, &str)> = split_part(path, ';', Part::Path)
            .chain(split_part(query, '&', Part::Query))
            .collect::<Result<_, _>>()
            .map_err(refuse)?;

        // PINs first, before any other complaint, so that no message is about a URI with a PIN.
        if let Some((_, name, _)) = attributes.iter().find(|(_, name, _)| is_pin_attribute(name)) {
            return Err(refuse(format!("{name}: {PIN_REFUSED}")));
        }

        let mut uri = Pkcs11Uri::default();
        let mut seen: Vec<&str> = Vec::new();
        for (part, name, raw) in attributes {
            check_placement(part, name).map_err(refuse)?;
            if seen.contains(&name) {
                return Err(refuse(format!("{name} is given twice")));
            }
            seen.push(name);
            let bytes = percent_decode(raw).map_err(|why| refuse(format!("{name}: {why}")))?;
            let text = || {
                String::from_utf8(bytes.clone())
                    .map_err(|_| refuse(format!("{name} is not UTF-8 after percent-decoding")))
            };
            match name {
                "token" => uri.token = Some(text()?),
                "manufacturer" => uri.manufacturer = Some(text()?),
                "serial" => uri.serial = Some(text()?),
                "model" => uri.model = Some(text()?),
                "object" => uri.object = Some(text()?),
                "id" => uri.id = Some(bytes),
                "slot-id" => uri.slot_id = Some(parse_slot_id(&text()?).map_err(refuse)?),
                "type" => check_type(&text()?).map_err(refuse)?,
                "module-name" => uri.module_name = Some(text()?),
                "module-path" => uri.module_path = Some(text()?),
                // check_placement let through only the names above.
                other => return Err(refuse(format!("certkeeper does not read {other}"))),
            }
        }
        Ok(uri)
    }
}

impl Pkcs11Uri {
    /// Refusals for a URI that names a CA key. The token must be named by what identifies it
    /// (label or serial; a slot id alone changes when a token is re-initialised), and the key by
    /// its label or id. A `type` other than `private` is already refused by the parser.
    pub fn check_key_reference(&self) -> Result<(), UriError> {
        let refuse = |why: &str| UriError {
            uri: self.to_string(),
            why: why.to_string(),
        };
        if self.token.is_none() && self.serial.is_none() {
            return Err(refuse(
                "name the token by token= (its label) or serial= (or both)",
            ));
        }
        if self.object.is_none() && self.id.is_none() {
            return Err(refuse("name the key by object= (its label) or id= (or both)"));
        }
        // An empty value is valid RFC 7512 but names nothing a CA key can be found by.
        let empty = [
            ("token", self.token.as_ref().is_some_and(String::is_empty)),
            ("serial", self.serial.as_ref().is_some_and(String::is_empty)),
            ("object", self.object.as_ref().is_some_and(String::is_empty)),
            ("id", self.id.as_ref().is_some_and(Vec::is_empty)),
        ];
        if let Some((name, _)) = empty.iter().find(|(_, is_empty)| *is_empty) {
            return Err(refuse(&format!(
                "{name}= is empty: give the value it should match"
            )));
        }
        Ok(())
    }
}

/// The canonical form: token, manufacturer, serial, model, slot-id, object, id, then the query;
/// values percent-encoded where the RFC asks, `id` always as `%XX` bytes, so the same key
/// reference is always written the same way in logs and audit lines. It never carries a PIN:
/// the parser refuses them.
impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SCHEME)?;
        let slot_id = self.slot_id.map(|id| id.to_string());
        let path = [
            ("token", self.token.as_deref()),
            ("manufacturer", self.manufacturer.as_deref()),
            ("serial", self.serial.as_deref()),
            ("model", self.model.as_deref()),
            ("slot-id", slot_id.as_deref()),
            ("object", self.object.as_deref()),
        ];
        let mut separator = "";
        for (name, value) in path {
            if let Some(value) = value {
                write!(
                    f,
                    "{separator}{name}={}",
                    percent_encode(value.as_bytes(), Part::Path)
                )?;
                separator = ";";
            }
        }
        if let Some(id) = &self.id {
            write!(f, "{separator}id=")?;
            for byte in id {
                write!(f, "%{byte:02X}")?;
            }
        }
        let query = [
            ("module-name", &self.module_name),
            ("module-path", &self.module_path),
        ];
        let mut separator = "?";
        for (name, value) in query {
            if let Some(value) = value {
                write!(
                    f,
                    "{separator}{name}={}",
                    percent_encode(value.as_bytes(), Part::Query)
                )?;
                separator = "&";
            }
        }
        Ok(())
    }
}

/// `name=value` pairs of one part, names and values still raw. An empty part has no attributes
/// (`pkcs11:` is a valid URI); an empty piece between separators is refused, as the RFC's
/// grammar has no place for one.
fn split_part(
    text: &str,
    separator: char,
    part: Part,
) -> impl Iterator<Item = Result<(Part, &str, &str), String>> {
    let pieces = if text.is_empty() {
        None
    } else {
        Some(text.split(separator))
    };
    pieces.into_iter().flatten().map(move |piece| {
        if piece.is_empty() {
            return Err(format!(
                "an empty attribute: nothing between two {separator} or after the last"
            ));
        }
        let (name, value) = piece
            .split_once('=')
            .ok_or_else(|| format!("{piece} has no =value"))?;
        if name.is_empty() {
            return Err("an attribute has an empty name".to_string());
        }
        Ok((part, name, value))
    })
}

/// Whether any attribute name looks like a PIN attribute, however it is spelled: the input is
/// then never repeated in an error. Deliberately broad (any name containing `pin`), since a
/// misspelt or escaped `pin-value` would otherwise be echoed as an "unknown attribute".
fn carries_pin(input: &str) -> bool {
    input
        .split([';', '?', '&'])
        .map(|piece| piece.split_once('=').map_or(piece, |(name, _)| name))
        .any(|name| name.to_ascii_lowercase().contains("pin"))
}

fn is_pin_attribute(name: &str) -> bool {
    name.eq_ignore_ascii_case("pin-value") || name.eq_ignore_ascii_case("pin-source")
}

/// Known attributes in the wrong part are refused with where they belong; unknown ones with what
/// certkeeper matches on instead (p11-kit, too, matches nothing on an unknown attribute).
fn check_placement(part: Part, name: &str) -> Result<(), String> {
    let in_path = PATH_ATTRIBUTES.contains(&name);
    let in_query = QUERY_ATTRIBUTES.contains(&name);
    match part {
        Part::Path if in_path => Ok(()),
        Part::Query if in_query => Ok(()),
        Part::Path if in_query => Err(format!(
            "{name} is a query attribute: put it after ? (pkcs11:token=...;object=...?{name}=...)"
        )),
        Part::Query if in_path => Err(format!("{name} is a path attribute: put it before the ?")),
        Part::Path => Err(format!(
            "certkeeper does not match on {name}; name the token by token= or serial="
        )),
        Part::Query => Err(format!(
            "certkeeper does not take {name} in the query; it reads module-name= and module-path= there"
        )),
    }
}

fn check_type(value: &str) -> Result<(), String> {
    if value == "private" {
        Ok(())
    } else {
        Err(format!(
            "type={value} names no private key; a CA key reference names the private key (type=private, or no type)"
        ))
    }
}

fn parse_slot_id(value: &str) -> Result<u64, String> {
    // u64::from_str alone would take a sign: "+1".
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("slot-id={value} is not a decimal number"));
    }
    value.parse().map_err(|_| format!("slot-id={value} is too large"))
}

/// `%XX` escapes decoded to bytes. Raw whitespace and control characters are refused rather
/// than kept or dropped: RFC 7512 wants them escaped, and p11-kit silently drops whitespace, so
/// `token=My Token` would match differently elsewhere.
fn percent_decode(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
                .ok_or_else(|| "% must be followed by two hex digits".to_string())?;
            out.push((hex_value(hex[0]) << 4) | hex_value(hex[1]));
            i += 3;
        } else if b.is_ascii_whitespace() || b.is_ascii_control() {
            return Err(format!(
                "raw character {:?}: percent-encode it (%{b:02X})",
                char::from(b)
            ));
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(out)
}

/// The value of one ASCII hex digit (the caller has checked it is one).
fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        _ => 0,
    }
}

/// Escapes everything but RFC 3986 unreserved characters and the reserved ones RFC 7512 lets
/// stand in a value (`:[]@!$'()*+,=`, and `/` in the query where module paths live).
fn percent_encode(bytes: &[u8], part: Part) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        let raw = b.is_ascii_alphanumeric()
            || b"-._~:[]@!$'()*+,=".contains(&b)
            || (part == Part::Query && b == b'/');
        if raw {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(uri: &str) -> Pkcs11Uri {
        match uri.parse() {
            Ok(parsed) => parsed,
            Err(e) => panic!("{uri} refused: {e}"),
        }
    }

    fn refusal(uri: &str) -> UriError {
        match uri.parse::<Pkcs11Uri>() {
            Ok(parsed) => panic!("{uri} accepted as {parsed:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn parses_token_object_and_id() {
        let uri = parse("pkcs11:token=ca;object=root-2026;id=%01");
        assert_eq!(
            uri,
            Pkcs11Uri {
                token: Some("ca".into()),
                object: Some("root-2026".into()),
                id: Some(vec![0x01]),
                ..Pkcs11Uri::default()
            }
        );
        assert_eq!(uri.check_key_reference(), Ok(()));
    }

    #[test]
    fn id_is_rfc_strict_bytes_not_hex() {
        assert_eq!(parse("pkcs11:id=01").id, Some(vec![0x30, 0x31]));
        assert_eq!(parse("pkcs11:id=%01").id, Some(vec![0x01]));
        // Escapes take either case; id keeps bytes that are not UTF-8.
        assert_eq!(parse("pkcs11:id=%Ba%dd%ff").id, Some(vec![0xba, 0xdd, 0xff]));
    }

    #[test]
    fn scheme_is_case_insensitive() {
        assert_eq!(parse("PKCS11:token=ca").token, Some("ca".into()));
        assert_eq!(parse("Pkcs11:token=ca").token, Some("ca".into()));
    }

    #[test]
    fn empty_uri_parses_but_names_no_key() {
        assert_eq!(parse("pkcs11:"), Pkcs11Uri::default());
        let err = parse("pkcs11:").check_key_reference().unwrap_err();
        assert!(err.why.contains("token="), "{err}");
    }

    #[test]
    fn other_schemes_are_refused() {
        for input in [
            "",
            "pkcs11",
            "pkcs12:token=ca",
            "token=ca;object=k",
            "https://hsm/",
        ] {
            let err = refusal(input);
            assert!(err.why.contains("must start with pkcs11:"), "{err}");
        }
    }

    #[test]
    fn values_are_percent_decoded_and_utf8() {
        let uri = parse("pkcs11:token=My%20CA%3B%25;object=a%C3%A1b");
        assert_eq!(uri.token.as_deref(), Some("My CA;%"));
        assert_eq!(uri.object.as_deref(), Some("aáb"));
        let err = refusal("pkcs11:object=%ff");
        assert!(err.why.contains("object is not UTF-8"), "{err}");
    }

    #[test]
    fn broken_escapes_are_refused() {
        for input in [
            "pkcs11:object=a%",
            "pkcs11:object=a%4",
            "pkcs11:object=%zz",
            "pkcs11:id=%+1",
        ] {
            let err = refusal(input);
            assert!(err.why.contains("two hex digits"), "{input}: {err}");
        }
    }

    #[test]
    fn raw_spaces_and_control_characters_are_refused() {
        let err = refusal("pkcs11:token=My Token");
        assert!(err.why.contains("%20"), "{err}");
        let err = refusal("pkcs11:token=ca;object=k\n");
        assert!(err.why.contains("%0A"), "{err}");
    }

    #[test]
    fn slot_id_is_decimal() {
        assert_eq!(parse("pkcs11:slot-id=809787936").slot_id, Some(809_787_936));
        assert_eq!(
            parse(&format!("pkcs11:slot-id={}", u64::MAX)).slot_id,
            Some(u64::MAX)
        );
        for bad in ["0x30", "+1", "-1", "", "18446744073709551616"] {
            let err = refusal(&format!("pkcs11:slot-id={bad}"));
            assert!(err.why.contains("slot-id"), "{bad}: {err}");
        }
    }

    #[test]
    fn type_private_is_accepted_and_other_types_refused() {
        assert_eq!(
            parse("pkcs11:token=ca;object=k;type=private").object.as_deref(),
            Some("k")
        );
        for other in ["public", "cert", "secret-key", "data", "PRIVATE"] {
            let err = refusal(&format!("pkcs11:token=ca;object=k;type={other}"));
            assert!(err.why.contains("names the private key"), "{other}: {err}");
        }
    }

    #[test]
    fn pins_are_refused_and_never_echoed() {
        for input in [
            "pkcs11:token=ca;object=k?pin-value=123456",
            "pkcs11:token=ca;object=k?pin-source=file:/etc/pin",
            "pkcs11:token=ca;pin-value=123456;object=k",
            "pkcs11:token=ca;object=k?PIN-VALUE=123456",
        ] {
            let err = refusal(input);
            assert!(err.why.contains("pinSecretRef"), "{err}");
            assert_eq!(err.uri, PIN_WITHHELD);
            assert!(!err.to_string().contains("123456"), "{err}");
        }
    }

    #[test]
    fn pins_are_refused_before_anything_else() {
        // An unknown attribute and a duplicate come first, yet the refusal is about the PIN.
        let err = refusal("pkcs11:x-vendor=1;token=a;token=b?pin-value=123456");
        assert!(err.why.contains("pinSecretRef"), "{err}");
        assert!(!err.to_string().contains("123456"));
    }

    #[test]
    fn inputs_looking_like_a_pin_are_not_echoed() {
        // Not a PIN attribute by the RFC's spelling, still never repeated in an error.
        for input in [
            "pkcs11:token=ca;pin%2Dvalue=123456",
            "pkcs11:token=ca;x-pin=123456",
            "pin-value=123456",
        ] {
            let err = refusal(input);
            assert_eq!(err.uri, PIN_WITHHELD, "{input}");
            assert!(!err.to_string().contains("123456"), "{err}");
        }
    }

    #[test]
    fn other_errors_quote_the_input() {
        let err = refusal("pkcs11:token=ca;color=blue");
        assert_eq!(err.uri, "pkcs11:token=ca;color=blue");
        assert_eq!(
            err.to_string(),
            "PKCS#11 URI \"pkcs11:token=ca;color=blue\": certkeeper does not match on color; \
             name the token by token= or serial="
        );
    }

    #[test]
    fn unknown_attributes_are_refused_naming_them() {
        for name in [
            "slot-description",
            "slot-manufacturer",
            "library-manufacturer",
            "library-description",
            "library-version",
            "x-vendor",
            "Token",
        ] {
            let err = refusal(&format!("pkcs11:{name}=v;object=k"));
            assert_eq!(
                err.why,
                format!("certkeeper does not match on {name}; name the token by token= or serial=")
            );
        }
        let err = refusal("pkcs11:token=ca;object=k?x-vendor=1");
        assert!(err.why.contains("does not take x-vendor in the query"), "{err}");
    }

    #[test]
    fn attributes_given_twice_are_refused() {
        let err = refusal("pkcs11:token=a;object=k;token=b");
        assert_eq!(err.why, "token is given twice");
        let err = refusal("pkcs11:token=a;object=k?module-name=x&module-name=y");
        assert_eq!(err.why, "module-name is given twice");
    }

    #[test]
    fn empty_names_and_pieces_are_refused() {
        for input in [
            "pkcs11:token=ca;;object=k",
            "pkcs11:token=ca;",
            "pkcs11:;token=ca",
            "pkcs11:token=ca?&module-name=m",
        ] {
            assert!(refusal(input).why.starts_with("an empty attribute"), "{input}");
        }
        let err = refusal("pkcs11:token=ca;=k");
        assert_eq!(err.why, "an attribute has an empty name");
        let err = refusal("pkcs11:token");
        assert_eq!(err.why, "token has no =value");
    }

    #[test]
    fn attributes_in_the_wrong_part_are_refused() {
        let err = refusal("pkcs11:module-path=/usr/lib/softhsm/libsofthsm2.so;token=ca;object=k");
        assert!(
            err.why
                .contains("module-path is a query attribute: put it after ?"),
            "{err}"
        );
        let err = refusal("pkcs11:object=k?token=ca");
        assert_eq!(err.why, "token is a path attribute: put it before the ?");
    }

    #[test]
    fn query_carries_module_name_and_path() {
        let uri =
            parse("pkcs11:token=ca;object=k?module-name=softhsm&module-path=/usr/lib/softhsm/libsofthsm2.so");
        assert_eq!(uri.module_name.as_deref(), Some("softhsm"));
        assert_eq!(
            uri.module_path.as_deref(),
            Some("/usr/lib/softhsm/libsofthsm2.so")
        );
    }

    #[test]
    fn key_reference_needs_token_and_key() {
        let err = parse("pkcs11:object=k;id=%01").check_key_reference().unwrap_err();
        assert!(err.why.contains("name the token"), "{err}");
        let err = parse("pkcs11:slot-id=3;object=k")
            .check_key_reference()
            .unwrap_err();
        assert!(err.why.contains("name the token"), "{err}");
        let err = parse("pkcs11:token=ca;serial=1234")
            .check_key_reference()
            .unwrap_err();
        assert!(err.why.contains("name the key"), "{err}");
        assert_eq!(err.uri, "pkcs11:token=ca;serial=1234");
        for ok in [
            "pkcs11:serial=1234;id=%a1",
            "pkcs11:token=ca;object=k",
            "pkcs11:token=ca;serial=1;object=k;id=%01",
        ] {
            assert_eq!(parse(ok).check_key_reference(), Ok(()), "{ok}");
        }
    }

    #[test]
    fn key_reference_refuses_empty_values() {
        let err = parse("pkcs11:token=;object=k").check_key_reference().unwrap_err();
        assert!(err.why.contains("token= is empty"), "{err}");
        let err = parse("pkcs11:token=ca;id=").check_key_reference().unwrap_err();
        assert!(err.why.contains("id= is empty"), "{err}");
    }

    #[test]
    fn display_is_canonical() {
        let uri = parse(
            "pkcs11:id=01;object=root%202026;serial=DECC;token=My%20CA?module-path=/opt/p11.so&module-name=hsm",
        );
        assert_eq!(
            uri.to_string(),
            "pkcs11:token=My%20CA;serial=DECC;object=root%202026;id=%30%31?module-name=hsm&module-path=/opt/p11.so"
        );
        let uri = parse("pkcs11:model=1.0;manufacturer=Snake%20Oil,%20Inc.;slot-id=7;token=a%2Fb%3B%25");
        assert_eq!(
            uri.to_string(),
            "pkcs11:token=a%2Fb%3B%25;manufacturer=Snake%20Oil,%20Inc.;model=1.0;slot-id=7"
        );
        assert_eq!(Pkcs11Uri::default().to_string(), "pkcs11:");
    }

    #[test]
    fn display_parses_back_to_the_same_uri() {
        let uri = Pkcs11Uri {
            token: Some("tök ;?&=/%".into()),
            manufacturer: Some("Snake Oil, Inc.".into()),
            serial: Some("0001".into()),
            model: Some("m#1".into()),
            object: Some("root\u{7f}".into()),
            id: Some(vec![0, 0x30, 0xff]),
            slot_id: Some(42),
            module_name: Some("a&b".into()),
            module_path: Some("/usr/lib/with space/p11.so".into()),
        };
        assert_eq!(parse(&uri.to_string()), uri);
    }

    /// RFC 7512 §3.3: the examples that use only what certkeeper reads parse; the others are
    /// refused for the first thing certkeeper does not take.
    #[test]
    fn rfc7512_examples() {
        assert_eq!(parse("pkcs11:"), Pkcs11Uri::default());
        let uri = parse("pkcs11:object=my-sign-key;type=private?module-name=mypkcs11");
        assert_eq!(uri.object.as_deref(), Some("my-sign-key"));
        assert_eq!(uri.module_name.as_deref(), Some("mypkcs11"));
        let uri = parse("pkcs11:object=my-sign-key;type=private?module-path=/mnt/libmypkcs11.so.1");
        assert_eq!(uri.module_path.as_deref(), Some("/mnt/libmypkcs11.so.1"));

        let refused = [
            ("pkcs11:object=my-pubkey;type=public", "names the private key"),
            (
                "pkcs11:object=my-key;type=private?pin-source=file:/etc/token",
                "pinSecretRef",
            ),
            (
                "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;\
                 model=1.0;object=my-certificate;type=cert;id=%69%95%3E%5C%F4%BD%EC%91;serial=\
                 ?pin-source=file:/etc/token_pin",
                "pinSecretRef",
            ),
            (
                "pkcs11:token=Software%20PKCS%2311%20softtoken;manufacturer=Snake%20Oil,%20Inc.\
                 ?pin-value=the-pin",
                "pinSecretRef",
            ),
            (
                "pkcs11:slot-description=Sun%20Metaslot",
                "does not match on slot-description",
            ),
            (
                "pkcs11:library-manufacturer=Snake%20Oil,%20Inc.;library-description=Soft%20Token%20Library;\
                 library-version=1.23",
                "does not match on library-manufacturer",
            ),
            (
                "pkcs11:token=My%20token%25%20created%20by%20Joe;library-version=3;\
                 id=%01%02%03%Ba%dd%Ca%fe%04%05%06",
                "does not match on library-version",
            ),
            (
                "pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=my-certificate;type=cert",
                "names the private key",
            ),
            (
                "pkcs11:token=Name%20with%20a%20small%20A%20with%20acute:%20%C3%A1;object=my-certificate;type=cert",
                "names the private key",
            ),
            (
                "pkcs11:token=my-token;object=my-certificate;type=cert;vendor-aaa=value-a\
                 ?pin-source=file:/etc/token_pin&vendor-bbb=value-b",
                "pinSecretRef",
            ),
        ];
        for (input, why) in refused {
            let err = refusal(input);
            assert!(err.why.contains(why), "{input}: {err}");
        }
        assert!(
            !refusal("pkcs11:token=x?pin-value=the-pin")
                .to_string()
                .contains("the-pin")
        );
    }

    /// The RFC's refused examples with the parts certkeeper does not take left out: the values
    /// decode as the RFC says.
    #[test]
    fn rfc7512_example_values_decode() {
        let uri = parse(
            "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;manufacturer=Snake%20Oil,%20Inc.;\
             model=1.0;object=my-certificate;id=%69%95%3E%5C%F4%BD%EC%91;serial=",
        );
        assert_eq!(
            uri,
            Pkcs11Uri {
                token: Some("The Software PKCS#11 Softtoken".into()),
                manufacturer: Some("Snake Oil, Inc.".into()),
                serial: Some(String::new()),
                model: Some("1.0".into()),
                object: Some("my-certificate".into()),
                id: Some(vec![0x69, 0x95, 0x3e, 0x5c, 0xf4, 0xbd, 0xec, 0x91]),
                ..Pkcs11Uri::default()
            }
        );
        let uri = parse("pkcs11:token=My%20token%25%20created%20by%20Joe;id=%01%02%03%Ba%dd%Ca%fe%04%05%06");
        assert_eq!(uri.token.as_deref(), Some("My token% created by Joe"));
        assert_eq!(uri.id, Some(vec![1, 2, 3, 0xba, 0xdd, 0xca, 0xfe, 4, 5, 6]));
        let uri = parse("pkcs11:token=A%20name%20with%20a%20substring%20%25%3B;object=my-certificate");
        assert_eq!(uri.token.as_deref(), Some("A name with a substring %;"));
        let uri =
            parse("pkcs11:token=Name%20with%20a%20small%20A%20with%20acute:%20%C3%A1;object=my-certificate");
        assert_eq!(uri.token.as_deref(), Some("Name with a small A with acute: á"));
    }
}
