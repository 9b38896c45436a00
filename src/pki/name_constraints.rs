//! X.509 name constraints (RFC 5280 §4.2.1.10): the extension a CA certificate carries, written
//! through `x509-cert` and read through x509-parser, and the CA issuer's check that what it is
//! asked to sign stays within the constraints of every CA above it.
//!
//! Matching follows RFC 5280 where verifiers agree and the stricter of OpenSSL and Go where they
//! do not, so that nothing is signed that a common verifier refuses:
//! - dNSName: `team.svc` is the domain and its subdomains, by whole labels, case-insensitively;
//!   `.team.svc` only its subdomains (OpenSSL, Go). A wildcard SAN `*.team.svc` is refused when
//!   an excluded domain is one label below `team.svc`, which the wildcard would cover.
//! - iPAddress: address and mask, same family only (an IPv4 address never matches an IPv6
//!   range, IPv4-mapped or not).
//! - rfc822Name: a mailbox (`ops@team.svc`, exact), a host (`team.svc`, every mailbox there) or
//!   `.team.svc` (mailboxes at its subdomains); hosts case-insensitive, local parts not.
//! - uniformResourceIdentifier: the URI's host; `team.svc` that host exactly, `.team.svc` its
//!   subdomains (RFC 5280, OpenSSL; Go also lets `team.svc` cover subdomains). A URI without a
//!   host, or with an IP literal, cannot be checked and is refused wherever URIs are constrained.
//! - directoryName: the subject DN must begin with the constraint's RDNs (string values compared
//!   case- and space-insensitively); an empty subject is not checked, as OpenSSL does.
//! - The commonName counts as a dNSName when there is no DNS SAN and it looks like a hostname
//!   (OpenSSL's rule: letters, digits, `-`, `_`, at least two labels), for CAs as for leaves.
//! - A sub-CA's own constraints: each permitted entry it asks for must lie within a permitted
//!   entry of the same type of every CA above that has one, and within none of their excluded
//!   entries. Types it leaves unconstrained are not refused: verifiers intersect the
//!   constraints along the chain, so the parent's still hold.

use std::fmt;
use std::net::IpAddr;

use der::asn1::{Ia5String, OctetString};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::constraints::name::{
    GeneralSubtree, GeneralSubtrees, NameConstraints as X509NameConstraints,
};
use x509_cert::ext::pkix::name::GeneralName;

use super::asn1::{self, encoding};
use super::{CertificateInfo, CertificateTemplate, PkiError, SubjectFields};

/// A NameConstraints extension: what a CA may sign names for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameConstraints {
    /// Whether the extension is marked critical (RFC 5280 says it MUST be; cert-manager's
    /// default is not, for clients that do not implement it).
    pub critical: bool,
    pub permitted: NameSubtrees,
    pub excluded: NameSubtrees,
}

/// The subtrees of one side (permitted or excluded), by name type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameSubtrees {
    /// dNSName: `team.svc` (itself and subdomains) or `.team.svc` (subdomains only).
    pub dns_domains: Vec<String>,
    pub ip_ranges: Vec<IpRange>,
    /// rfc822Name: a mailbox, a host or `.domain`.
    pub email_addresses: Vec<String>,
    /// uniformResourceIdentifier: a host or `.domain`.
    pub uri_domains: Vec<String>,
    /// directoryName subtrees, DER Names (only read from certificates made elsewhere).
    pub directory_names: Vec<Vec<u8>>,
    /// Subtrees of types certkeeper never issues names of (otherName, registeredID, …): they
    /// constrain nothing it signs, and are kept so that a comparison sees them.
    pub other: Vec<String>,
    /// Subtrees that could not be read (a dNSName that is not text, an iPAddress of the wrong
    /// length): a CA carrying one signs nothing, since what it forbids is unknown.
    pub unreadable: Vec<String>,
}

/// An iPAddress subtree: an address and a mask of the same family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpRange {
    pub address: IpAddr,
    pub mask: IpAddr,
}

/// The names a certificate about to be signed will carry, as the name constraint check reads
/// them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestedNames {
    pub common_name: Option<String>,
    /// The subject DN's other parts, checked against directoryName constraints.
    pub subject: SubjectFields,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub uris: Vec<String>,
    pub email_addresses: Vec<String>,
    /// For a sub-CA: the constraints it will carry.
    pub name_constraints: Option<NameConstraints>,
}

impl From<&CertificateTemplate> for RequestedNames {
    fn from(template: &CertificateTemplate) -> Self {
        Self {
            common_name: template.common_name.clone(),
            subject: template.subject.clone(),
            dns_names: template.dns_names.clone(),
            ip_addresses: template.ip_addresses.clone(),
            uris: template.uris.clone(),
            email_addresses: template.email_addresses.clone(),
            name_constraints: template.name_constraints.clone(),
        }
    }
}

/// Whether a certificate with these names, signed by `chain` (the signing CA first, then its
/// issuers up to the root as far as known), is within every CA's NameConstraints.
/// Err(message) says which name and which CA: "dnsName \"x.other.svc\" is outside the name
/// constraints of CA \"team-ca\" (permitted dnsDomains: team.svc)".
pub fn check_name_constraints(chain: &[CertificateInfo], names: &RequestedNames) -> Result<(), String> {
    check_chain(chain.iter(), names)
}

/// `check_name_constraints` over any sequence of CA certificates.
pub(super) fn check_chain<'a>(
    chain: impl IntoIterator<Item = &'a CertificateInfo>,
    names: &RequestedNames,
) -> Result<(), String> {
    for ca in chain {
        if let Some(constraints) = &ca.name_constraints {
            Judge {
                ca: &ca_label(ca),
                constraints,
            }
            .names(names)?;
        }
    }
    Ok(())
}

/// How a message names a CA: its common name, else its SHA-256 fingerprint.
fn ca_label(ca: &CertificateInfo) -> String {
    match &ca.common_name {
        Some(cn) if !cn.is_empty() => cn.clone(),
        _ => format!("SHA-256 {}", ca.fingerprint_sha256),
    }
}

impl NameConstraints {
    /// Whether neither side lists anything (RFC 5280 forbids writing such an extension).
    pub fn is_empty(&self) -> bool {
        self.permitted.is_empty() && self.excluded.is_empty()
    }

    /// Equal up to the order and repetition of the entries: what a certificate holds compared
    /// with what a spec asks for.
    pub fn equivalent(&self, other: &Self) -> bool {
        self.critical == other.critical
            && self.permitted.sorted() == other.permitted.sorted()
            && self.excluded.sorted() == other.excluded.sorted()
    }

    /// The extension, typed; None when there is nothing to constrain.
    pub(super) fn to_extension(&self) -> Result<Option<Extension>, PkiError> {
        if self.is_empty() {
            return Ok(None);
        }
        let value = X509NameConstraints {
            permitted_subtrees: self.permitted.to_x509()?,
            excluded_subtrees: self.excluded.to_x509()?,
        };
        asn1::extension(&value, self.critical).map(Some)
    }

    /// The constraints of a parsed extension.
    pub(super) fn from_parsed(critical: bool, parsed: &x509_parser::extensions::NameConstraints<'_>) -> Self {
        Self {
            critical,
            permitted: NameSubtrees::from_parsed(parsed.permitted_subtrees.as_deref()),
            excluded: NameSubtrees::from_parsed(parsed.excluded_subtrees.as_deref()),
        }
    }
}

impl NameSubtrees {
    pub fn is_empty(&self) -> bool {
        self.dns_domains.is_empty()
            && self.ip_ranges.is_empty()
            && self.email_addresses.is_empty()
            && self.uri_domains.is_empty()
            && self.directory_names.is_empty()
            && self.other.is_empty()
            && self.unreadable.is_empty()
    }

    fn sorted(&self) -> Self {
        fn sort<T: Ord + Clone>(v: &[T]) -> Vec<T> {
            let mut v = v.to_vec();
            v.sort();
            v.dedup();
            v
        }
        Self {
            dns_domains: sort(&self.dns_domains),
            ip_ranges: sort(&self.ip_ranges),
            email_addresses: sort(&self.email_addresses),
            uri_domains: sort(&self.uri_domains),
            directory_names: sort(&self.directory_names),
            other: sort(&self.other),
            unreadable: sort(&self.unreadable),
        }
    }

    /// GeneralSubtrees in the order dNSName, iPAddress, rfc822Name, URI (as Go writes them);
    /// None when empty, since the SEQUENCE must hold at least one.
    fn to_x509(&self) -> Result<Option<GeneralSubtrees>, PkiError> {
        if !self.directory_names.is_empty() || !self.other.is_empty() || !self.unreadable.is_empty() {
            return Err(PkiError::InvalidCertificate(
                "only dnsDomains, ipRanges, emailAddresses and uriDomains name constraints can be written"
                    .into(),
            ));
        }
        let mut bases = Vec::new();
        for domain in &self.dns_domains {
            bases.push(GeneralName::DnsName(ia5(domain, "dnsDomains")?));
        }
        for range in &self.ip_ranges {
            let octets = OctetString::new(range.octets()).map_err(encoding("ipRanges"))?;
            bases.push(GeneralName::IpAddress(octets));
        }
        for email in &self.email_addresses {
            bases.push(GeneralName::Rfc822Name(ia5(email, "emailAddresses")?));
        }
        for domain in &self.uri_domains {
            bases.push(GeneralName::UniformResourceIdentifier(ia5(domain, "uriDomains")?));
        }
        if bases.is_empty() {
            return Ok(None);
        }
        let subtrees = bases
            .into_iter()
            .map(|base| GeneralSubtree {
                base,
                minimum: 0,
                maximum: None,
            })
            .collect();
        Ok(Some(subtrees))
    }

    fn from_parsed(subtrees: Option<&[x509_parser::extensions::GeneralSubtree<'_>]>) -> Self {
        use x509_parser::extensions::GeneralName as Parsed;
        let mut out = Self::default();
        for subtree in subtrees.unwrap_or_default() {
            match &subtree.base {
                Parsed::DNSName(domain) => out.dns_domains.push((*domain).to_owned()),
                Parsed::RFC822Name(email) => out.email_addresses.push((*email).to_owned()),
                Parsed::URI(domain) => out.uri_domains.push((*domain).to_owned()),
                Parsed::IPAddress(octets) => match IpRange::from_octets(octets) {
                    Some(range) => out.ip_ranges.push(range),
                    None => out
                        .unreadable
                        .push(format!("an iPAddress of {} octets", octets.len())),
                },
                Parsed::DirectoryName(name) => out.directory_names.push(name.as_raw().to_vec()),
                Parsed::OtherName(oid, _) => out.other.push(format!("otherName {oid}")),
                Parsed::RegisteredID(oid) => out.other.push(format!("registeredID {oid}")),
                Parsed::X400Address(_) => out.other.push("x400Address".into()),
                Parsed::EDIPartyName(_) => out.other.push("ediPartyName".into()),
                Parsed::Invalid(tag, _) => out
                    .unreadable
                    .push(format!("a malformed GeneralName [{}]", tag.0)),
            }
        }
        out
    }
}

/// An IA5String for a constraint; IA5 is ASCII, so anything else is refused, not mangled.
fn ia5(value: &str, field: &str) -> Result<Ia5String, PkiError> {
    let refused = || {
        PkiError::InvalidCertificate(format!(
            "name constraint {field} {value:?} must be non-empty ASCII"
        ))
    };
    if value.is_empty() || !value.is_ascii() {
        return Err(refused());
    }
    Ia5String::new(value).map_err(|_| refused())
}

fn octets_of(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn ip_of(octets: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(octets) {
        Some(IpAddr::from(v4))
    } else {
        <[u8; 16]>::try_from(octets).ok().map(IpAddr::from)
    }
}

impl IpRange {
    /// Reads `address/prefix-length` (`10.0.0.0/8`, `fd00::/8`); host bits are cleared, as Go's
    /// `net.ParseCIDR` (and so cert-manager) does.
    pub fn from_cidr(text: &str) -> Result<Self, String> {
        let not_cidr = || format!("{text:?} is not a CIDR range (address/prefix length, e.g. 10.0.0.0/8)");
        let (address, prefix) = text.split_once('/').ok_or_else(not_cidr)?;
        let address: IpAddr = address.parse().map_err(|_| not_cidr())?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(not_cidr());
        }
        let bits = octets_of(address).len() * 8;
        let prefix: usize = prefix.parse().map_err(|_| not_cidr())?;
        if prefix > bits {
            return Err(format!("{text:?}: the prefix length is at most {bits}"));
        }
        let mask: Vec<u8> = (0..bits / 8)
            .map(|i| {
                let ones = prefix.saturating_sub(i * 8).min(8);
                // The top `ones` bits: shifted in a u16 so that 8 stays in range.
                (0xff00u16 >> ones) as u8
            })
            .collect();
        let masked: Vec<u8> = octets_of(address).iter().zip(&mask).map(|(a, m)| a & m).collect();
        match (ip_of(&masked), ip_of(&mask)) {
            (Some(address), Some(mask)) => Ok(Self { address, mask }),
            _ => Err(not_cidr()),
        }
    }

    /// From the extension's `address || mask` octets (8 for IPv4, 32 for IPv6).
    fn from_octets(octets: &[u8]) -> Option<Self> {
        if octets.len() != 8 && octets.len() != 32 {
            return None;
        }
        let (address, mask) = octets.split_at(octets.len() / 2);
        Some(Self {
            address: ip_of(address)?,
            mask: ip_of(mask)?,
        })
    }

    /// `address || mask`, as the extension carries it.
    fn octets(&self) -> Vec<u8> {
        let mut out = octets_of(self.address);
        out.extend(octets_of(self.mask));
        out
    }

    /// Whether `ip` is in the range: same family, equal under the mask.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (ip, address, mask) = (octets_of(ip), octets_of(self.address), octets_of(self.mask));
        ip.len() == mask.len()
            && address.len() == mask.len()
            && ip
                .iter()
                .zip(&address)
                .zip(&mask)
                .all(|((i, a), m)| i & m == a & m)
    }

    /// Whether every address of `self` is in `parent`.
    pub fn within(&self, parent: &IpRange) -> bool {
        let (mask, parent_mask) = (octets_of(self.mask), octets_of(parent.mask));
        // Every bit the parent fixes, the child fixes too, and to the same value.
        mask.len() == parent_mask.len()
            && mask.iter().zip(&parent_mask).all(|(m, p)| p & !m == 0)
            && parent.contains(self.address)
    }

    /// The prefix length when the mask is contiguous.
    fn prefix_len(&self) -> Option<u32> {
        let mask = octets_of(self.mask);
        let ones: u32 = mask.iter().map(|b| b.count_ones()).sum();
        let leading = mask
            .iter()
            .position(|b| *b != 0xff)
            .map_or(ones, |i| i as u32 * 8 + mask[i].leading_ones());
        (ones == leading).then_some(ones)
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.prefix_len() {
            Some(prefix) => write!(f, "{}/{prefix}", self.address),
            None => write!(f, "{}/{}", self.address, self.mask),
        }
    }
}

/// dNSName `name` within constraint `constraint`: whole labels, case-insensitive; a leading
/// `.` means subdomains only; the empty constraint matches everything.
fn dns_matches(name: &str, constraint: &str) -> bool {
    let (name, constraint) = (name.to_ascii_lowercase(), constraint.to_ascii_lowercase());
    if constraint.is_empty() {
        return true;
    }
    if constraint.starts_with('.') {
        name.len() > constraint.len() && name.ends_with(&constraint)
    } else {
        name == constraint || name.ends_with(&format!(".{constraint}"))
    }
}

/// A wildcard name `*.team.svc` covers `x.team.svc` for any one label `x`: an excluded
/// `x.team.svc` must refuse it although the name does not end with it.
fn wildcard_covers(name: &str, excluded: &str) -> bool {
    let Some(base) = name.strip_prefix("*.") else {
        return false;
    };
    let (base, excluded) = (base.to_ascii_lowercase(), excluded.to_ascii_lowercase());
    excluded
        .strip_suffix(&base)
        .and_then(|label| label.strip_suffix('.'))
        .is_some_and(|label| !label.is_empty() && !label.contains('.'))
}

/// A host under a URI constraint: `.domain` is its strict subdomains, anything else that host.
fn host_matches(host: &str, constraint: &str) -> bool {
    let (host, constraint) = (host.to_ascii_lowercase(), constraint.to_ascii_lowercase());
    if constraint.is_empty() {
        return true;
    }
    if constraint.starts_with('.') {
        host.len() > constraint.len() && host.ends_with(&constraint)
    } else {
        host == constraint
    }
}

/// rfc822Name `email` within `constraint` (RFC 5280 §4.2.1.10): a mailbox exactly (the local
/// part case-sensitive), a host's every mailbox, or `.domain`'s subdomains.
fn email_matches(email: &str, constraint: &str) -> bool {
    let Some((local, host)) = email.rsplit_once('@') else {
        return false;
    };
    if constraint.is_empty() {
        return true;
    }
    match constraint.rsplit_once('@') {
        // `@host` is the host (OpenSSL reads it so).
        Some(("", want_host)) => host.eq_ignore_ascii_case(want_host),
        Some((want_local, want_host)) => local == want_local && host.eq_ignore_ascii_case(want_host),
        None => host_matches(host, constraint),
    }
}

/// The host of a URI with an authority (`scheme://[userinfo@]host[:port]/…`); None when it
/// has none or it is an IP literal, which constraints cannot be checked against.
fn uri_host(uri: &str) -> Option<&str> {
    let (_, rest) = uri.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if host_port.starts_with('[') {
        return None;
    }
    let host = host_port.split(':').next().unwrap_or_default();
    (!host.is_empty() && host.parse::<IpAddr>().is_err()).then_some(host)
}

/// The commonName as a DNS name when it looks like one (OpenSSL's `cn2dnsid`): letters,
/// digits, `_`, and `-` or `.` only inside, a `.` never next to another `.` or a `-`, and at
/// least two labels.
fn hostname_like(cn: &str) -> bool {
    let bytes = cn.as_bytes();
    let mut dotted = false;
    for (i, &c) in bytes.iter().enumerate() {
        if c.is_ascii_alphanumeric() || c == b'_' {
            continue;
        }
        let inside = i > 0 && i + 1 < bytes.len();
        if inside && c == b'-' {
            continue;
        }
        if inside && c == b'.' && bytes[i + 1] != b'.' && bytes[i - 1] != b'-' && bytes[i + 1] != b'-' {
            dotted = true;
            continue;
        }
        return false;
    }
    dotted
}

/// The name types whose subtrees are domains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainSubtree {
    Dns,
    Uri,
    Email,
}

/// Whether the subtree `child` of `kind` lies entirely within the subtree `parent`: every name
/// `child` permits, `parent` permits too.
pub fn subtree_within(kind: DomainSubtree, child: &str, parent: &str) -> bool {
    match kind {
        DomainSubtree::Dns => dns_within(child, parent),
        DomainSubtree::Uri => uri_within(child, parent),
        DomainSubtree::Email => email_within(child, parent),
    }
}

/// dNSName subtree `child` entirely within `parent`.
fn dns_within(child: &str, parent: &str) -> bool {
    if parent.is_empty() {
        return true;
    }
    match child.strip_prefix('.') {
        Some(domain) => dns_matches(domain, parent) || child.eq_ignore_ascii_case(parent),
        None => !child.is_empty() && dns_matches(child, parent),
    }
}

/// URI subtree `child` entirely within `parent`.
fn uri_within(child: &str, parent: &str) -> bool {
    if parent.is_empty() {
        return true;
    }
    match child.strip_prefix('.') {
        Some(domain) => {
            parent.starts_with('.') && (child.eq_ignore_ascii_case(parent) || host_matches(domain, parent))
        }
        None => !child.is_empty() && host_matches(child, parent),
    }
}

/// rfc822Name subtree `child` entirely within `parent`.
fn email_within(child: &str, parent: &str) -> bool {
    if parent.is_empty() {
        return true;
    }
    if child.contains('@') {
        return email_matches(child, parent);
    }
    if parent.contains('@') || child.is_empty() {
        return false;
    }
    match child.strip_prefix('.') {
        Some(domain) => {
            parent.starts_with('.') && (child.eq_ignore_ascii_case(parent) || host_matches(domain, parent))
        }
        None => host_matches(child, parent),
    }
}

/// Entries for a message: the first few, then how many more.
fn listed<T: fmt::Display>(entries: &[T]) -> String {
    const SHOWN: usize = 5;
    let mut text: Vec<String> = entries.iter().take(SHOWN).map(|e| format!("{e}")).collect();
    if entries.len() > SHOWN {
        text.push(format!("and {} more", entries.len() - SHOWN));
    }
    text.join(", ")
}

/// One CA's constraints, judging one request.
struct Judge<'a> {
    ca: &'a str,
    constraints: &'a NameConstraints,
}

impl Judge<'_> {
    fn names(&self, names: &RequestedNames) -> Result<(), String> {
        let (permitted, excluded) = (&self.constraints.permitted, &self.constraints.excluded);
        if let Some(why) = permitted.unreadable.first().or(excluded.unreadable.first()) {
            return Err(format!(
                "CA {:?} has name constraints certkeeper cannot read ({why}), so it signs nothing",
                self.ca
            ));
        }
        for name in &names.dns_names {
            self.dns("dnsName", name)?;
        }
        if names.dns_names.is_empty()
            && let Some(cn) = names.common_name.as_deref().filter(|cn| hostname_like(cn))
        {
            self.dns("commonName (a hostname, and there is no dnsName)", cn)?;
        }
        for ip in &names.ip_addresses {
            let shown = ip.to_string();
            self.judge(
                "iPAddress",
                &shown,
                "ipRanges",
                &permitted.ip_ranges,
                &excluded.ip_ranges,
                |r| r.contains(*ip),
            )?;
        }
        for email in &names.email_addresses {
            let (p, e) = (&permitted.email_addresses, &excluded.email_addresses);
            let constrained = !p.is_empty() || !e.is_empty();
            if constrained && !email.contains('@') {
                return Err(self.unchecked("rfc822Name", email, "it has no @"));
            }
            self.judge("rfc822Name", email, "emailAddresses", p, e, |c| {
                email_matches(email, c)
            })?;
        }
        for uri in &names.uris {
            let (p, e) = (&permitted.uri_domains, &excluded.uri_domains);
            if p.is_empty() && e.is_empty() {
                continue;
            }
            let Some(host) = uri_host(uri) else {
                return Err(self.unchecked(
                    "uniformResourceIdentifier",
                    uri,
                    "it has no host name (an IP literal or no authority)",
                ));
            };
            self.judge("uniformResourceIdentifier", uri, "uriDomains", p, e, |c| {
                host_matches(host, c)
            })?;
        }
        self.subject(names)?;
        if let Some(child) = &names.name_constraints {
            self.sub_ca(child)?;
        }
        Ok(())
    }

    fn dns(&self, kind: &str, name: &str) -> Result<(), String> {
        let (permitted, excluded) = (&self.constraints.permitted, &self.constraints.excluded);
        if let Some(hit) = excluded
            .dns_domains
            .iter()
            .find(|c| dns_matches(name, c) || wildcard_covers(name, c))
        {
            return Err(self.outside(kind, name, &format!("excluded dnsDomains: {hit}")));
        }
        self.judge(kind, name, "dnsDomains", &permitted.dns_domains, &[], |c| {
            dns_matches(name, c)
        })
    }

    /// Excluded first: a name in any excluded subtree is refused; then, where this type has
    /// permitted subtrees, the name must be in one of them.
    fn judge<C: fmt::Display>(
        &self,
        kind: &str,
        name: &str,
        field: &str,
        permitted: &[C],
        excluded: &[C],
        matches: impl Fn(&C) -> bool,
    ) -> Result<(), String> {
        if let Some(hit) = excluded.iter().find(|c| matches(c)) {
            return Err(self.outside(kind, name, &format!("excluded {field}: {hit}")));
        }
        if !permitted.is_empty() && !permitted.iter().any(&matches) {
            return Err(self.outside(kind, name, &format!("permitted {field}: {}", listed(permitted))));
        }
        Ok(())
    }

    fn outside(&self, kind: &str, name: &str, subtrees: &str) -> String {
        format!(
            "{kind} {name:?} is outside the name constraints of CA {:?} ({subtrees})",
            self.ca
        )
    }

    fn unchecked(&self, kind: &str, name: &str, why: &str) -> String {
        format!(
            "{kind} {name:?} cannot be checked against the name constraints of CA {:?}: {why}",
            self.ca
        )
    }

    /// directoryName subtrees against the subject DN as it will be written.
    fn subject(&self, names: &RequestedNames) -> Result<(), String> {
        let (permitted, excluded) = (
            &self.constraints.permitted.directory_names,
            &self.constraints.excluded.directory_names,
        );
        if permitted.is_empty() && excluded.is_empty() {
            return Ok(());
        }
        let template = CertificateTemplate {
            common_name: names.common_name.clone(),
            subject: names.subject.clone(),
            ..Default::default()
        };
        let der = super::cert::subject_name(&template).map_err(|e| format!("subject: {e}"))?;
        let subject = parse_name(&der).ok_or("subject: cannot be read back")?;
        if subject.iter().next().is_none() {
            return Ok(());
        }
        let shown = subject.to_string();
        let readable: Vec<DirectoryName> = permitted.iter().map(|d| DirectoryName(d.as_slice())).collect();
        let excluded: Vec<DirectoryName> = excluded.iter().map(|d| DirectoryName(d.as_slice())).collect();
        self.judge("subject", &shown, "directoryNames", &readable, &excluded, |c| {
            parse_name(c.0).is_some_and(|base| dn_starts_with(&subject, &base))
        })
    }

    fn sub_ca(&self, child: &NameConstraints) -> Result<(), String> {
        let (permitted, excluded) = (&self.constraints.permitted, &self.constraints.excluded);
        let asked = &child.permitted;
        self.sub_ca_side(
            "dnsDomains",
            &asked.dns_domains,
            (&permitted.dns_domains, &excluded.dns_domains),
            dns_within,
        )?;
        self.sub_ca_side(
            "emailAddresses",
            &asked.email_addresses,
            (&permitted.email_addresses, &excluded.email_addresses),
            email_within,
        )?;
        self.sub_ca_side(
            "uriDomains",
            &asked.uri_domains,
            (&permitted.uri_domains, &excluded.uri_domains),
            uri_within,
        )?;
        for range in &asked.ip_ranges {
            let shown = range.to_string();
            let kind = "nameConstraints.permitted.ipRanges entry";
            // An excluded range that overlaps only part of the asked range is left to verifiers.
            self.judge(
                kind,
                &shown,
                "ipRanges",
                &permitted.ip_ranges,
                &excluded.ip_ranges,
                |c| range.within(c),
            )?;
        }
        Ok(())
    }

    /// A sub-CA's permitted entries of one type against this CA's (permitted, excluded).
    fn sub_ca_side(
        &self,
        field: &str,
        asked: &[String],
        (permitted, excluded): (&[String], &[String]),
        within: fn(&str, &str) -> bool,
    ) -> Result<(), String> {
        let kind = format!("nameConstraints.permitted.{field} entry");
        for entry in asked {
            self.judge(&kind, entry, field, permitted, excluded, |c| within(entry, c))?;
        }
        Ok(())
    }
}

/// A directoryName subtree as a message shows it.
struct DirectoryName<'a>(&'a [u8]);

impl fmt::Display for DirectoryName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match parse_name(self.0) {
            Some(name) => write!(f, "{name}"),
            None => write!(f, "(unreadable name)"),
        }
    }
}

fn parse_name(der: &[u8]) -> Option<x509_parser::x509::X509Name<'_>> {
    use x509_parser::prelude::FromDer;
    x509_parser::x509::X509Name::from_der(der)
        .ok()
        .map(|(_, name)| name)
}

/// RFC 5280 §7.1: `name` begins with `base`'s RDNs, each RDN holding the same attributes.
fn dn_starts_with(name: &x509_parser::x509::X509Name<'_>, base: &x509_parser::x509::X509Name<'_>) -> bool {
    let rdns: Vec<_> = name.iter().collect();
    let base_rdns: Vec<_> = base.iter().collect();
    base_rdns.len() <= rdns.len()
        && base_rdns.iter().zip(&rdns).all(|(want, have)| {
            let (want, have): (Vec<_>, Vec<_>) = (want.iter().collect(), have.iter().collect());
            want.len() == have.len() && want.iter().all(|w| have.iter().any(|h| same_attribute(w, h)))
        })
}

/// Same type and value; string values compared case-insensitively with runs of spaces folded
/// (a simplification of RFC 4518 that OpenSSL's canonical encoding also makes).
fn same_attribute(
    a: &x509_parser::x509::AttributeTypeAndValue<'_>,
    b: &x509_parser::x509::AttributeTypeAndValue<'_>,
) -> bool {
    let fold = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    a.attr_type() == b.attr_type()
        && match (a.as_str(), b.as_str()) {
            (Ok(x), Ok(y)) => fold(x) == fold(y),
            _ => a.as_slice() == b.as_slice(),
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_constraints_match_whole_labels_case_insensitively() {
        assert!(dns_matches("team.svc", "team.svc"));
        assert!(dns_matches("a.b.Team.SVC", "team.svc"));
        assert!(!dns_matches("xteam.svc", "team.svc"));
        assert!(!dns_matches("team.svc", ".team.svc"));
        assert!(dns_matches("a.team.svc", ".team.svc"));
        assert!(dns_matches("anything.example", ""));
    }

    #[test]
    fn a_wildcard_covers_an_excluded_name_one_label_below_its_base() {
        assert!(wildcard_covers("*.team.svc", "secret.team.svc"));
        assert!(!wildcard_covers("*.team.svc", "a.secret.team.svc"));
        assert!(!wildcard_covers("*.team.svc", "team.svc"));
        assert!(!wildcard_covers("api.team.svc", "secret.team.svc"));
    }

    #[test]
    fn cidr_ranges_are_read_masked_and_shown_as_written() {
        let range = IpRange::from_cidr("10.1.2.3/8").unwrap();
        assert_eq!(range.to_string(), "10.0.0.0/8");
        assert_eq!(range.octets(), [10, 0, 0, 0, 255, 0, 0, 0]);
        let v6 = IpRange::from_cidr("fd00:abcd::/20").unwrap();
        assert_eq!(v6.to_string(), "fd00:a000::/20");
        assert_eq!(v6.octets().len(), 32);
        assert_eq!(IpRange::from_cidr("0.0.0.0/0").unwrap().to_string(), "0.0.0.0/0");
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "::/129",
            "x/8",
        ] {
            assert!(IpRange::from_cidr(bad).is_err(), "{bad}");
        }
        let odd = IpRange::from_octets(&[10, 0, 0, 0, 255, 0, 255, 0]).unwrap();
        assert_eq!(odd.to_string(), "10.0.0.0/255.0.255.0");
    }

    #[test]
    fn ranges_nest_only_within_the_same_family_and_a_wider_mask() {
        let wide = IpRange::from_cidr("10.0.0.0/8").unwrap();
        let narrow = IpRange::from_cidr("10.1.0.0/16").unwrap();
        assert!(narrow.within(&wide));
        assert!(!wide.within(&narrow));
        assert!(!IpRange::from_cidr("11.0.0.0/16").unwrap().within(&wide));
        assert!(!IpRange::from_cidr("::ffff:10.0.0.0/104").unwrap().within(&wide));
    }

    #[test]
    fn uri_hosts_are_read_from_the_authority() {
        assert_eq!(
            uri_host("spiffe://cluster.local/ns/a/sa/b"),
            Some("cluster.local")
        );
        assert_eq!(
            uri_host("https://user@api.team.svc:8443/x?y"),
            Some("api.team.svc")
        );
        assert_eq!(uri_host("urn:uuid:1234"), None);
        assert_eq!(uri_host("https://10.0.0.1/"), None);
        assert_eq!(uri_host("https://[fd00::1]:443/"), None);
    }

    #[test]
    fn hostname_like_follows_openssl() {
        assert!(hostname_like("api.team.svc"));
        assert!(hostname_like("my_host.example"));
        assert!(!hostname_like("Team CA"));
        assert!(!hostname_like("localhost"));
        assert!(!hostname_like("a..b"));
        assert!(!hostname_like("-a.b"));
        assert!(!hostname_like("a-.b"));
    }

    #[test]
    fn email_constraints_read_as_openssl_reads_them() {
        assert!(email_matches("ops@team.svc", "@Team.svc"));
        assert!(email_matches("ops@TEAM.svc", "ops@team.svc"));
        assert!(!email_matches("OPS@team.svc", "ops@team.svc"));
        assert!(!email_matches("no-at-sign", "team.svc"));
    }

    #[test]
    fn subtrees_nest() {
        assert!(dns_within("a.team.svc", "team.svc"));
        assert!(dns_within(".team.svc", "team.svc"));
        assert!(dns_within(".team.svc", ".team.svc"));
        assert!(!dns_within("team.svc", ".team.svc"));
        assert!(!dns_within("svc", "team.svc"));
        assert!(uri_within("cluster.local", "cluster.local"));
        assert!(!uri_within("a.cluster.local", "cluster.local"));
        assert!(uri_within(".a.cluster.local", ".cluster.local"));
        assert!(!uri_within(".cluster.local", "cluster.local"));
        assert!(email_within("ops@team.svc", "team.svc"));
        assert!(email_within("team.svc", "team.svc"));
        assert!(email_within("a.team.svc", ".team.svc"));
        assert!(!email_within("team.svc", "ops@team.svc"));
        assert!(!email_within(".team.svc", "team.svc"));
    }
}
