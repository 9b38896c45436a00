//! The value patterns of a CertificatePolicy (`allowed.<field>.values`): compiling a pattern
//! written for a DNS name, URI, IP address, email address or free-text subject field, and
//! deciding whether a requested value matches it for a given Certificate. Pure; no Kubernetes.
//!
//! `*` is deliberately narrow (SPEC "Issuance policy"): inside one DNS label, URI path segment or
//! email part it stands for one or more characters and never crosses a `.` or `/`; only in free
//! text does it match any run. `{namespace}` and `{name}` stand for the Certificate's namespace and
//! name and must fill a whole label or segment, so `*.{namespace}.svc` for namespace `team` can
//! never allow a name in `team-b`. Anything a pattern cannot express is refused (fail closed).

use std::fmt;
use std::net::IpAddr;

/// Which field a pattern is written for; it decides the pattern language.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    Dns,
    Uri,
    Ip,
    Email,
    Text,
}

impl fmt::Display for FieldKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Dns => "DNS name",
            Self::Uri => "URI",
            Self::Ip => "IP",
            Self::Email => "email",
            Self::Text => "text",
        })
    }
}

/// A pattern that does not compile; the message names the pattern and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatternError(pub String);

/// A compiled pattern of one [`FieldKind`].
#[derive(Clone, Debug)]
pub struct Pattern {
    kind: FieldKind,
    source: String,
    compiled: Compiled,
}

#[derive(Clone, Debug)]
enum Compiled {
    Dns(Vec<Part>),
    Uri(UriPattern),
    Ip(IpNetwork),
    Email { local: Part, domain: Vec<Part> },
    Text(Vec<TextToken>),
}

/// `{namespace}` or `{name}`: the Certificate's namespace or name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placeholder {
    Namespace,
    Name,
}

impl Placeholder {
    fn parse(inner: &str) -> Option<Self> {
        match inner {
            "namespace" => Some(Self::Namespace),
            "name" => Some(Self::Name),
            _ => None,
        }
    }

    fn value<'a>(self, namespace: &'a str, name: &'a str) -> &'a str {
        match self {
            Self::Namespace => namespace,
            Self::Name => name,
        }
    }
}

/// One DNS label, URI path segment or email part of a pattern.
#[derive(Clone, Debug)]
enum Part {
    /// The whole part is the Certificate's namespace or name.
    Placeholder(Placeholder),
    /// Literal pieces with a `*` (one or more characters) between each two; a single piece is an
    /// exact literal, `["", ""]` is a bare `*`.
    Glob(Vec<String>),
}

impl Part {
    fn is_bare_star(&self) -> bool {
        matches!(self, Part::Glob(pieces) if pieces.len() == 2 && pieces.iter().all(String::is_empty))
    }

    fn is_literal(&self, literal: &str) -> bool {
        matches!(self, Part::Glob(pieces) if pieces.len() == 1 && pieces[0] == literal)
    }

    /// `value` must already be in the part's comparison form (lowercased for DNS labels).
    fn matches(&self, value: &str, namespace: &str, name: &str, lowercase: bool) -> bool {
        if value.is_empty() && !self.is_literal("") {
            return false;
        }
        match self {
            Part::Placeholder(placeholder) => {
                let wanted = placeholder.value(namespace, name);
                if lowercase {
                    value == wanted.to_ascii_lowercase()
                } else {
                    value == wanted
                }
            }
            Part::Glob(pieces) => glob_match(pieces, value, 1),
        }
    }
}

/// A piece of a free-text pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum TextToken {
    Literal(String),
    Star,
    Placeholder(Placeholder),
}

#[derive(Clone, Debug)]
struct UriPattern {
    /// Lowercased: schemes are case-insensitive (RFC 3986 §3.1).
    scheme: String,
    authority: Option<Authority<String>>,
    path: Vec<Part>,
    query: Option<String>,
    fragment: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Authority<S> {
    userinfo: Option<S>,
    host: S,
    port: Option<S>,
}

/// An address and prefix length, both of the same family; IPv4-mapped IPv6 is stored as IPv4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct IpNetwork {
    address: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    fn contains(&self, address: IpAddr) -> bool {
        match (self.address, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                prefix_bits_equal(&network.octets(), &address.octets(), self.prefix)
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                prefix_bits_equal(&network.octets(), &address.octets(), self.prefix)
            }
            // Families never mix: `::/0` allows every IPv6 address, not every IPv4 one.
            _ => false,
        }
    }
}

fn prefix_bits_equal(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[full] & mask == b[full] & mask
}

impl Pattern {
    /// Compiles `source` as a pattern for a field of `kind`.
    pub fn compile(kind: FieldKind, source: &str) -> Result<Pattern, PatternError> {
        let error = |what: String| PatternError(format!("{kind} pattern {source:?}: {what}"));
        let compiled = match kind {
            FieldKind::Dns => Compiled::Dns(compile_dns(source).map_err(error)?),
            FieldKind::Uri => Compiled::Uri(compile_uri(source).map_err(error)?),
            FieldKind::Ip => Compiled::Ip(compile_ip(source).map_err(error)?),
            FieldKind::Email => {
                let (local, domain) = compile_email(source).map_err(error)?;
                Compiled::Email { local, domain }
            }
            FieldKind::Text => Compiled::Text(compile_text(source).map_err(error)?),
        };
        Ok(Pattern {
            kind,
            source: source.to_owned(),
            compiled,
        })
    }

    /// Whether `value` (as the Certificate requests it) is allowed for a Certificate `name`
    /// in `namespace`. IP values come as their textual form.
    pub fn matches(&self, value: &str, namespace: &str, name: &str) -> bool {
        match &self.compiled {
            Compiled::Dns(labels) => dns_matches(labels, value, namespace, name),
            Compiled::Uri(pattern) => uri_matches(pattern, value, namespace, name),
            Compiled::Ip(network) => value
                .parse::<IpAddr>()
                .is_ok_and(|address| network.contains(address.to_canonical())),
            Compiled::Email { local, domain } => email_matches(local, domain, value, namespace, name),
            Compiled::Text(tokens) => text_matches(tokens, value, namespace, name),
        }
    }

    /// The pattern as written in the policy.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The field kind the pattern was compiled for.
    pub fn kind(&self) -> FieldKind {
        self.kind
    }
}

/// Whether `value` is `pieces` joined by runs of at least `min_per_star` bytes.
///
/// Leftmost matching of each middle piece is enough: a later occurrence never leaves more room for
/// the pieces after it. Bytes are safe for UTF-8 text since a literal match starts on a character
/// boundary, and "at least one byte" is "at least one character" for a non-empty run.
fn glob_match(pieces: &[String], value: &str, min_per_star: usize) -> bool {
    let value = value.as_bytes();
    let (Some(first), Some(last)) = (pieces.first(), pieces.last()) else {
        return value.is_empty();
    };
    if pieces.len() == 1 {
        return value == first.as_bytes();
    }
    if !value.starts_with(first.as_bytes()) || value.len() < last.len() {
        return false;
    }
    let last_start = value.len() - last.len();
    let mut position = first.len();
    for piece in &pieces[1..pieces.len() - 1] {
        position += min_per_star;
        if position > last_start {
            return false;
        }
        match find(&value[position..last_start], piece.as_bytes()) {
            Some(offset) => position += offset + piece.len(),
            None => return false,
        }
    }
    position + min_per_star <= last_start && value.ends_with(last.as_bytes())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|window| window == needle)
}

/// Splits a part on `*` into literal pieces, or reads it as a placeholder that fills it whole.
/// `what` names the part in messages ("label", "path segment", "local part").
fn compile_part(part: &str, what: &str) -> Result<Part, String> {
    if part.contains(['{', '}']) {
        let placeholder = part
            .strip_prefix('{')
            .and_then(|rest| rest.strip_suffix('}'))
            .filter(|inner| !inner.contains(['{', '}']));
        let Some(inner) = placeholder else {
            if part.contains('*') {
                return Err(format!(
                    "{what} {part:?} holds both a placeholder and '*'; a placeholder must fill \
                     the whole {what}"
                ));
            }
            return Err(format!(
                "{what} {part:?}: a placeholder ({{namespace}} or {{name}}) must fill the whole {what}"
            ));
        };
        return Placeholder::parse(inner).map(Part::Placeholder).ok_or_else(|| {
            format!("unknown placeholder {{{inner}}}; only {{namespace}} and {{name}} exist")
        });
    }
    if part.contains("**") {
        return Err(format!(
            "{what} {part:?} has '**'; '*' matches one or more characters inside one {what} only"
        ));
    }
    Ok(Part::Glob(part.split('*').map(str::to_owned).collect()))
}

fn compile_dns(source: &str) -> Result<Vec<Part>, String> {
    if !source.is_ascii() {
        return Err(
            "is not ASCII; write an internationalized name as its xn-- A-label \
             (for example xn--bcher-kva.example for bücher.example)"
                .to_owned(),
        );
    }
    compile_dns_labels(&source.to_ascii_lowercase())
}

fn compile_dns_labels(domain: &str) -> Result<Vec<Part>, String> {
    if domain.is_empty() {
        return Err("is empty".to_owned());
    }
    domain
        .split('.')
        .map(|label| {
            if label.is_empty() {
                return Err("has an empty label (a leading, trailing or doubled '.')".to_owned());
            }
            if let Some(bad) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*' | '{' | '}')))
            {
                return Err(format!("label {label:?} holds {bad:?}, which no DNS name can"));
            }
            compile_part(label, "label")
        })
        .collect()
}

/// Whether a requested DNS name label can be compared at all: ASCII letters, digits, `-`, `_`.
fn is_plain_label(label: &str) -> bool {
    !label.is_empty()
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn dns_matches(labels: &[Part], value: &str, namespace: &str, name: &str) -> bool {
    let value = value.to_ascii_lowercase();
    let value_labels: Vec<&str> = value.split('.').collect();
    value_labels.len() == labels.len()
        && labels
            .iter()
            .zip(&value_labels)
            .enumerate()
            .all(|(index, (pattern, label))| {
                if *label == "*" {
                    // A requested wildcard, only as the leftmost label (RFC 6125 §6.4.3), needs a
                    // pattern label that is a bare `*` too: `web-*` must not allow `*`.
                    index == 0 && pattern.is_bare_star()
                } else {
                    is_plain_label(label) && pattern.matches(label, namespace, name, true)
                }
            })
}

/// The parts of an absolute URI (RFC 3986 §3), borrowed from its text. Nothing is decoded or
/// normalised: the pattern and the value are compared as written.
#[derive(Debug, PartialEq, Eq)]
struct UriParts<'a> {
    scheme: &'a str,
    authority: Option<Authority<&'a str>>,
    path: &'a str,
    query: Option<&'a str>,
    fragment: Option<&'a str>,
}

/// Characters a URI may hold (RFC 3986 §2), plus what a pattern adds (`{`, `}`).
fn is_uri_char(c: char, pattern: bool) -> bool {
    c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%".contains(c) || (pattern && (c == '{' || c == '}'))
}

fn parse_uri(text: &str, pattern: bool) -> Result<UriParts<'_>, String> {
    if let Some(bad) = text.chars().find(|c| !is_uri_char(*c, pattern)) {
        return Err(format!(
            "holds {bad:?}, which a URI may only hold percent-encoded"
        ));
    }
    check_percent_encoding(text)?;
    let (scheme, rest) = text
        .split_once(':')
        .ok_or_else(|| "has no scheme (such as spiffe:)".to_owned())?;
    let mut scheme_chars = scheme.chars();
    let scheme_ok = scheme_chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme_chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return Err(format!("scheme {scheme:?} is not a URI scheme"));
    }
    let (rest, fragment) = match rest.split_once('#') {
        Some((rest, fragment)) => (rest, Some(fragment)),
        None => (rest, None),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = match rest.strip_prefix("//") {
        Some(rest) => {
            let end = rest.find('/').unwrap_or(rest.len());
            (Some(parse_authority(&rest[..end])?), &rest[end..])
        }
        None => (None, rest),
    };
    Ok(UriParts {
        scheme,
        authority,
        path,
        query,
        fragment,
    })
}

fn check_percent_encoding(text: &str) -> Result<(), String> {
    let bytes = text.as_bytes();
    for (index, byte) in bytes.iter().enumerate() {
        if *byte == b'%' {
            let hex = bytes.get(index + 1..index + 3);
            if !hex.is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) {
                return Err("has a '%' that is not followed by two hex digits".to_owned());
            }
        }
    }
    Ok(())
}

fn parse_authority(authority: &str) -> Result<Authority<&str>, String> {
    let (userinfo, host_port) = match authority.split_once('@') {
        Some((userinfo, host_port)) => (Some(userinfo), host_port),
        None => (None, authority),
    };
    if host_port.contains('@') {
        return Err("has more than one '@' in its authority".to_owned());
    }
    let (host, port) = if host_port.starts_with('[') {
        // An IP literal: `[v6]` then an optional `:port`.
        let end = host_port
            .find(']')
            .ok_or_else(|| "has an unclosed '[' in its host".to_owned())?;
        let (host, after) = host_port.split_at(end + 1);
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("has {after:?} after its IP literal host")),
            },
        }
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err("has an empty host".to_owned());
    }
    if port.is_some_and(|port| !port.bytes().all(|b| b.is_ascii_digit())) {
        return Err("has a port that is not a number".to_owned());
    }
    Ok(Authority { userinfo, host, port })
}

/// A path segment a glob or placeholder must never match: a dot segment (`.`, `..`, also
/// percent-encoded) or one holding an encoded `/`, which some servers decode into a separator.
fn is_special_segment(segment: &str) -> bool {
    let lower = segment.to_ascii_lowercase();
    let decoded_dots = lower.replace("%2e", ".");
    decoded_dots == "." || decoded_dots == ".." || lower.contains("%2f")
}

fn compile_uri(source: &str) -> Result<UriPattern, String> {
    let parts = parse_uri(source, true)?;
    let literal = |what: &str, text: &str| {
        if text.contains(['*', '{', '}']) {
            Err(format!(
                "its {what} {text:?} holds '*' or a placeholder; only path segments may"
            ))
        } else {
            Ok(text.to_owned())
        }
    };
    let authority = match parts.authority {
        Some(authority) => Some(Authority {
            userinfo: authority
                .userinfo
                .map(|userinfo| literal("userinfo", userinfo))
                .transpose()?,
            host: literal("host", authority.host)?,
            port: authority.port.map(str::to_owned),
        }),
        None => None,
    };
    let path = parts
        .path
        .split('/')
        .map(|segment| {
            let part = compile_part(segment, "path segment")?;
            if is_special_segment(segment) && !matches!(&part, Part::Glob(p) if p.len() == 1) {
                return Err(format!(
                    "path segment {segment:?} mixes '*' with a dot segment or an encoded '/'"
                ));
            }
            Ok(part)
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(UriPattern {
        scheme: parts.scheme.to_ascii_lowercase(),
        authority,
        path,
        query: parts.query.map(|q| literal("query", q)).transpose()?,
        fragment: parts.fragment.map(|f| literal("fragment", f)).transpose()?,
    })
}

fn uri_matches(pattern: &UriPattern, value: &str, namespace: &str, name: &str) -> bool {
    let Ok(parts) = parse_uri(value, false) else {
        return false;
    };
    let authority_matches = match (&pattern.authority, &parts.authority) {
        (None, None) => true,
        (Some(wanted), Some(got)) => {
            wanted.userinfo.as_deref() == got.userinfo
                && wanted.host == got.host
                && wanted.port.as_deref() == got.port
        }
        _ => false,
    };
    let segments: Vec<&str> = parts.path.split('/').collect();
    parts.scheme.eq_ignore_ascii_case(&pattern.scheme)
        && authority_matches
        && pattern.query.as_deref() == parts.query
        && pattern.fragment.as_deref() == parts.fragment
        && segments.len() == pattern.path.len()
        && pattern.path.iter().zip(&segments).all(|(part, segment)| {
            if is_special_segment(segment) {
                part.is_literal(segment)
            } else {
                part.matches(segment, namespace, name, false)
            }
        })
}

fn compile_ip(source: &str) -> Result<IpNetwork, String> {
    if source.contains(['*', '{', '}']) {
        return Err(
            "IP patterns are CIDRs (10.0.0.0/8, fd00::/8) or single addresses; \
                    '*' and placeholders are not allowed"
                .to_owned(),
        );
    }
    let (address_text, prefix_text) = match source.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (source, None),
    };
    let address: IpAddr = address_text
        .parse()
        .map_err(|_| format!("{address_text:?} is not an IP address"))?;
    let max_prefix = if address.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix_text {
        Some(text) => text
            .parse::<u8>()
            .ok()
            .filter(|prefix| *prefix <= max_prefix && !text.starts_with('+'))
            .ok_or_else(|| format!("prefix length {text:?} is not a number from 0 to {max_prefix}"))?,
        None => max_prefix,
    };
    let network = match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            // `::ffff:10.0.0.0/104` is `10.0.0.0/8`; a shorter prefix stays an IPv6 network.
            Some(v4) if prefix >= 96 => IpNetwork {
                address: IpAddr::V4(v4),
                prefix: prefix - 96,
            },
            _ => IpNetwork { address, prefix },
        },
        IpAddr::V4(_) => IpNetwork { address, prefix },
    };
    if has_host_bits(network) {
        return Err(format!(
            "has bits set past its /{prefix} prefix; write the network address"
        ));
    }
    Ok(network)
}

fn has_host_bits(network: IpNetwork) -> bool {
    let (octets, bits): (Vec<u8>, u8) = match network.address {
        IpAddr::V4(v4) => (v4.octets().to_vec(), 32),
        IpAddr::V6(v6) => (v6.octets().to_vec(), 128),
    };
    (network.prefix..bits).any(|bit| octets[usize::from(bit / 8)] & (0x80 >> (bit % 8)) != 0)
}

fn compile_email(source: &str) -> Result<(Part, Vec<Part>), String> {
    let (local, domain) = source.split_once('@').ok_or_else(|| "has no '@'".to_owned())?;
    if domain.contains('@') {
        return Err("has more than one '@'".to_owned());
    }
    if local.is_empty() {
        return Err("has an empty local part".to_owned());
    }
    if local.contains(|c: char| c.is_whitespace() || c.is_control() || c == '"') {
        return Err(
            "local part holds whitespace or a quote; quoted local parts are not supported".to_owned(),
        );
    }
    if !domain.is_ascii() {
        return Err("domain is not ASCII; write it as its xn-- A-label".to_owned());
    }
    let local = compile_part(local, "local part")?;
    let domain = compile_dns_labels(&domain.to_ascii_lowercase())?;
    Ok((local, domain))
}

fn email_matches(local: &Part, domain: &[Part], value: &str, namespace: &str, name: &str) -> bool {
    let Some((value_local, value_domain)) = value.split_once('@') else {
        return false;
    };
    let value_domain = value_domain.to_ascii_lowercase();
    let value_labels: Vec<&str> = value_domain.split('.').collect();
    !value_domain.contains('@')
        && !value_local.contains(|c: char| c.is_whitespace() || c.is_control() || c == '"')
        && local.matches(value_local, namespace, name, false)
        && value_labels.len() == domain.len()
        && domain
            .iter()
            .zip(&value_labels)
            .all(|(part, label)| is_plain_label(label) && part.matches(label, namespace, name, true))
}

fn compile_text(source: &str) -> Result<Vec<TextToken>, String> {
    let mut tokens = Vec::new();
    let mut literal = String::new();
    let mut rest = source;
    while let Some(c) = rest.chars().next() {
        match c {
            '*' => {
                flush_literal(&mut literal, &mut tokens);
                // `**` is the same run as `*` in free text.
                if tokens.last() != Some(&TextToken::Star) {
                    tokens.push(TextToken::Star);
                }
                rest = &rest[1..];
            }
            '{' => {
                let end = rest
                    .find('}')
                    .ok_or_else(|| "has a '{' without a closing '}'".to_owned())?;
                let inner = &rest[1..end];
                let placeholder = Placeholder::parse(inner).ok_or_else(|| {
                    format!("unknown placeholder {{{inner}}}; only {{namespace}} and {{name}} exist")
                })?;
                flush_literal(&mut literal, &mut tokens);
                tokens.push(TextToken::Placeholder(placeholder));
                rest = &rest[end + 1..];
            }
            '}' => return Err("has a '}' without an opening '{'".to_owned()),
            _ => {
                literal.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    flush_literal(&mut literal, &mut tokens);
    Ok(tokens)
}

fn flush_literal(literal: &mut String, tokens: &mut Vec<TextToken>) {
    if !literal.is_empty() {
        tokens.push(TextToken::Literal(std::mem::take(literal)));
    }
}

fn text_matches(tokens: &[TextToken], value: &str, namespace: &str, name: &str) -> bool {
    // Placeholders become literal text (a `*` in a name would not be a wildcard), then the
    // literal runs between stars are matched with zero-or-more-character stars.
    let mut pieces = Vec::new();
    let mut current = String::new();
    for token in tokens {
        match token {
            TextToken::Star => pieces.push(std::mem::take(&mut current)),
            TextToken::Literal(text) => current.push_str(text),
            TextToken::Placeholder(placeholder) => current.push_str(placeholder.value(namespace, name)),
        }
    }
    pieces.push(current);
    glob_match(&pieces, value, 0)
}

#[cfg(test)]
#[path = "patterns_tests.rs"]
mod tests;
