//! Name constraints: the extension as written and read back, the CA issuer's check, and the
//! same verdicts from OpenSSL and rustls on leaves signed without the check.

use rustls::CertificateError;

use super::mtls::{Mounted, Refusal, client, handshake, server};
use super::openssl::{openssl, openssl_available, write};
use super::*;

fn dns(domains: &[&str]) -> NameSubtrees {
    NameSubtrees {
        dns_domains: domains.iter().map(|d| d.to_string()).collect(),
        ..Default::default()
    }
}

fn ranges(cidrs: &[&str]) -> Vec<IpRange> {
    cidrs.iter().map(|c| IpRange::from_cidr(c).unwrap()).collect()
}

fn constraints(permitted: NameSubtrees, excluded: NameSubtrees) -> NameConstraints {
    NameConstraints {
        critical: true,
        permitted,
        excluded,
    }
}

/// The constraints most tests use: team.svc and 10/8 permitted, secret.team.svc excluded.
fn team_constraints() -> NameConstraints {
    constraints(
        NameSubtrees {
            ip_ranges: ranges(&["10.0.0.0/8"]),
            ..dns(&["team.svc"])
        },
        dns(&["secret.team.svc"]),
    )
}

fn constrained_template(
    common_name: &str,
    from: jiff::Timestamp,
    nc: NameConstraints,
) -> CertificateTemplate {
    CertificateTemplate {
        name_constraints: Some(nc),
        ..ca_template(common_name, from, 3650)
    }
}

/// A self-signed root carrying `nc`.
fn constrained_root(common_name: &str, from: jiff::Timestamp, nc: NameConstraints) -> CaKeyPair {
    let key = ecdsa_p256();
    let root = sign_self_signed(&constrained_template(common_name, from, nc), &key).unwrap();
    CaKeyPair::from_pem(
        root.chain_pem.as_bytes(),
        key.to_pem(KeyEncoding::Pkcs8).unwrap().as_bytes(),
        None,
        IssuerUrls::default(),
    )
    .unwrap()
}

/// An intermediate below `parent`, with `nc` if given, read back as cert-manager lays out a CA
/// Certificate's Secret (tls.crt the intermediate, ca.crt the root).
fn sub_ca(parent: &CaKeyPair, from: jiff::Timestamp, nc: Option<NameConstraints>) -> CaKeyPair {
    let key = ecdsa_p256();
    let template = CertificateTemplate {
        name_constraints: nc,
        ..ca_template("Team Sub CA", from, 365)
    };
    let issued = sign_with_ca(&template, &key, parent).unwrap();
    CaKeyPair::from_pem(
        issued.certificate_pem.as_bytes(),
        key.to_pem(KeyEncoding::Pkcs8).unwrap().as_bytes(),
        Some(issued.ca_pem.as_bytes()),
        IssuerUrls::default(),
    )
    .unwrap()
}

fn names(dns_names: &[&str]) -> RequestedNames {
    RequestedNames {
        dns_names: dns_names.iter().map(|d| d.to_string()).collect(),
        ..Default::default()
    }
}

/// The verdict of a root carrying `nc` on `request`.
fn verdict(nc: NameConstraints, request: &RequestedNames) -> Result<(), String> {
    let root = constrained_root("team-ca", now(), nc);
    check_name_constraints(&root.chain, request)
}

#[test]
fn the_extension_is_read_back_as_written() {
    let nc = constraints(
        NameSubtrees {
            dns_domains: vec!["team.svc".into(), ".cluster.local".into()],
            ip_ranges: ranges(&["10.0.0.0/8", "fd00::/8"]),
            email_addresses: vec!["ops@team.svc".into(), ".team.svc".into()],
            uri_domains: vec!["cluster.local".into()],
            ..Default::default()
        },
        NameSubtrees {
            ip_ranges: ranges(&["10.9.0.0/16"]),
            ..dns(&["secret.team.svc"])
        },
    );
    let root = constrained_root("team-ca", now(), nc.clone());
    assert_eq!(root.certificate().name_constraints, Some(nc.clone()));

    let not_critical = NameConstraints {
        critical: false,
        ..nc
    };
    let root = constrained_root("team-ca", now(), not_critical.clone());
    assert_eq!(root.certificate().name_constraints, Some(not_critical));
}

#[test]
fn empty_constraints_write_no_extension_and_a_leaf_cannot_carry_them() {
    let root = constrained_root("team-ca", now(), NameConstraints::default());
    assert_eq!(root.certificate().name_constraints, None);

    let leaf = CertificateTemplate {
        name_constraints: Some(team_constraints()),
        ..leaf_template(now())
    };
    let refused = sign_self_signed(&leaf, &ecdsa_p256()).unwrap_err();
    assert!(
        refused.to_string().contains("only in a CA certificate"),
        "{refused}"
    );
}

#[test]
fn equivalent_constraints_ignore_order_and_repetition() {
    let a = constraints(dns(&["a.svc", "b.svc"]), NameSubtrees::default());
    let b = constraints(dns(&["b.svc", "a.svc", "b.svc"]), NameSubtrees::default());
    assert!(a.equivalent(&b));
    let c = NameConstraints {
        critical: false,
        ..b.clone()
    };
    assert!(!a.equivalent(&c));
    assert!(!a.equivalent(&constraints(dns(&["a.svc"]), NameSubtrees::default())));
}

#[test]
fn a_dns_name_outside_the_permitted_domains_is_refused_naming_the_ca() {
    assert_eq!(
        verdict(team_constraints(), &names(&["api.team.svc", "team.svc"])),
        Ok(())
    );
    assert_eq!(
        verdict(team_constraints(), &names(&["api.team.svc", "x.other.svc"])),
        Err(
            "dnsName \"x.other.svc\" is outside the name constraints of CA \"team-ca\" \
             (permitted dnsDomains: team.svc)"
                .into()
        )
    );
}

#[test]
fn dns_domains_match_whole_labels_and_ignore_case() {
    assert!(verdict(team_constraints(), &names(&["xteam.svc"])).is_err());
    assert!(verdict(team_constraints(), &names(&["svc"])).is_err());
    assert_eq!(verdict(team_constraints(), &names(&["API.Team.SVC"])), Ok(()));
    let upper = constraints(dns(&["Team.SVC"]), NameSubtrees::default());
    assert_eq!(verdict(upper.clone(), &names(&["a.team.svc"])), Ok(()));
    // Excluded domains ignore case too.
    let excluded = constraints(NameSubtrees::default(), dns(&["Secret.Team.Svc"]));
    assert!(verdict(excluded, &names(&["db.SECRET.team.svc"])).is_err());
}

#[test]
fn a_leading_dot_permits_subdomains_only() {
    let nc = constraints(dns(&[".team.svc"]), NameSubtrees::default());
    assert_eq!(verdict(nc.clone(), &names(&["a.team.svc"])), Ok(()));
    assert!(verdict(nc, &names(&["team.svc"])).is_err());
}

#[test]
fn excluded_is_checked_before_permitted() {
    assert_eq!(
        verdict(team_constraints(), &names(&["db.secret.team.svc"])),
        Err(
            "dnsName \"db.secret.team.svc\" is outside the name constraints of CA \"team-ca\" \
             (excluded dnsDomains: secret.team.svc)"
                .into()
        )
    );
    // Excluded wins even where the same name is permitted explicitly.
    let both = constraints(dns(&["api.team.svc"]), dns(&["api.team.svc"]));
    assert!(
        verdict(both, &names(&["api.team.svc"]))
            .unwrap_err()
            .contains("excluded")
    );
}

#[test]
fn a_wildcard_that_would_cover_an_excluded_name_is_refused() {
    let refused = verdict(team_constraints(), &names(&["*.team.svc"])).unwrap_err();
    assert!(
        refused.contains("excluded dnsDomains: secret.team.svc"),
        "{refused}"
    );
    assert_eq!(verdict(team_constraints(), &names(&["*.api.team.svc"])), Ok(()));
}

#[test]
fn ip_addresses_are_matched_by_mask_in_their_own_family() {
    let nc = constraints(
        NameSubtrees {
            ip_ranges: ranges(&["10.0.0.0/8", "fd00:1234::/32"]),
            ..Default::default()
        },
        NameSubtrees {
            ip_ranges: ranges(&["10.9.0.0/16", "fd00:1234:0:9::/64"]),
            ..Default::default()
        },
    );
    let ips = |list: &[&str]| RequestedNames {
        ip_addresses: list.iter().map(|i| ip(i)).collect(),
        ..Default::default()
    };
    assert_eq!(verdict(nc.clone(), &ips(&["10.1.2.3", "fd00:1234:5::1"])), Ok(()));
    assert_eq!(
        verdict(nc.clone(), &ips(&["192.168.1.1"])),
        Err(
            "iPAddress \"192.168.1.1\" is outside the name constraints of CA \"team-ca\" \
             (permitted ipRanges: 10.0.0.0/8, fd00:1234::/32)"
                .into()
        )
    );
    assert!(verdict(nc.clone(), &ips(&["fd00:1235::1"])).is_err());
    assert!(
        verdict(nc.clone(), &ips(&["fd00:1234:0:9::7"]))
            .unwrap_err()
            .contains("excluded ipRanges: fd00:1234:0:9::/64")
    );
    assert!(
        verdict(nc.clone(), &ips(&["10.9.1.1"]))
            .unwrap_err()
            .contains("excluded")
    );

    // An IPv4 range says nothing about IPv6 addresses, IPv4-mapped ones included: with only
    // IPv4 ranges permitted, every IPv6 address is outside.
    let v4_only = constraints(
        NameSubtrees {
            ip_ranges: ranges(&["10.0.0.0/8"]),
            ..Default::default()
        },
        NameSubtrees::default(),
    );
    assert!(verdict(v4_only.clone(), &ips(&["::ffff:10.0.0.1"])).is_err());
    assert!(verdict(v4_only, &ips(&["fd00::1"])).is_err());
}

#[test]
fn a_name_type_without_permitted_entries_is_not_constrained() {
    let request = RequestedNames {
        ip_addresses: vec![ip("192.168.1.1")],
        uris: vec!["urn:uuid:6e8bc430".into()],
        email_addresses: vec!["anyone@anywhere.example".into()],
        ..names(&["api.team.svc"])
    };
    let dns_only = constraints(dns(&["team.svc"]), NameSubtrees::default());
    assert_eq!(verdict(dns_only, &request), Ok(()));
}

#[test]
fn email_constraints_are_a_mailbox_a_host_or_subdomains() {
    let nc = constraints(
        NameSubtrees {
            email_addresses: vec![
                "ops@team.svc".into(),
                "mail.example".into(),
                ".corp.example".into(),
            ],
            ..Default::default()
        },
        NameSubtrees {
            email_addresses: vec!["ceo@mail.example".into()],
            ..Default::default()
        },
    );
    let emails = |list: &[&str]| RequestedNames {
        email_addresses: list.iter().map(|e| e.to_string()).collect(),
        ..Default::default()
    };
    assert_eq!(
        verdict(
            nc.clone(),
            &emails(&["ops@TEAM.svc", "anyone@Mail.Example", "x@eu.corp.example"])
        ),
        Ok(())
    );
    for outside in [
        "dev@team.svc",       // another mailbox at a host only one mailbox is permitted at
        "Ops@team.svc",       // local parts are case-sensitive
        "x@sub.mail.example", // a host constraint does not cover subdomains
        "x@corp.example",     // `.corp.example` covers only subdomains
        "ceo@mail.example",   // excluded
    ] {
        let refused = verdict(nc.clone(), &emails(&[outside]));
        assert!(refused.is_err(), "{outside} was allowed");
        assert!(refused.unwrap_err().starts_with("rfc822Name"));
    }
}

#[test]
fn uri_constraints_match_the_host_exactly_or_its_subdomains() {
    let nc = constraints(
        NameSubtrees {
            uri_domains: vec!["cluster.local".into(), ".team.svc".into()],
            ..Default::default()
        },
        NameSubtrees::default(),
    );
    let uris = |list: &[&str]| RequestedNames {
        uris: list.iter().map(|u| u.to_string()).collect(),
        ..Default::default()
    };
    assert_eq!(
        verdict(
            nc.clone(),
            &uris(&[
                "spiffe://cluster.local/ns/team/sa/api",
                "https://api.team.svc:8443/x"
            ])
        ),
        Ok(())
    );
    assert!(verdict(nc.clone(), &uris(&["spiffe://other.local/ns/a"])).is_err());
    // RFC 5280 and OpenSSL: a host constraint is that host only.
    assert!(verdict(nc.clone(), &uris(&["spiffe://eu.cluster.local/ns/a"])).is_err());
    assert!(verdict(nc.clone(), &uris(&["https://team.svc/"])).is_err());
    assert_eq!(
        verdict(nc, &uris(&["urn:uuid:6e8bc430"])),
        Err(
            "uniformResourceIdentifier \"urn:uuid:6e8bc430\" cannot be checked against the name \
             constraints of CA \"team-ca\": it has no host name (an IP literal or no authority)"
                .into()
        )
    );
}

#[test]
fn the_common_name_is_checked_as_a_hostname_when_there_is_no_dns_name() {
    let cn = |common_name: &str, dns_names: &[&str]| RequestedNames {
        common_name: Some(common_name.into()),
        ..names(dns_names)
    };
    assert_eq!(
        verdict(team_constraints(), &cn("x.other.svc", &[])),
        Err(
            "commonName (a hostname, and there is no dnsName) \"x.other.svc\" is outside the name \
             constraints of CA \"team-ca\" (permitted dnsDomains: team.svc)"
                .into()
        )
    );
    assert_eq!(verdict(team_constraints(), &cn("api.team.svc", &[])), Ok(()));
    // With a DNS SAN the common name is not a hostname to verifiers.
    assert_eq!(
        verdict(team_constraints(), &cn("x.other.svc", &["api.team.svc"])),
        Ok(())
    );
    // A common name that does not look like a hostname is not one.
    assert_eq!(verdict(team_constraints(), &cn("Team Workload", &[])), Ok(()));
    assert_eq!(verdict(team_constraints(), &cn("localhost", &[])), Ok(()));
}

#[test]
fn every_ca_of_the_chain_is_checked() {
    let root = constrained_root("team-ca", now(), team_constraints());
    let unconstrained = sub_ca(&root, now(), None);
    // The root's constraints reach a leaf signed by an intermediate without any.
    assert_eq!(
        unconstrained.name_constraints_refusal(&names(&["api.team.svc"])),
        None
    );
    assert_eq!(
        unconstrained.name_constraints_refusal(&names(&["api.other.svc"])),
        Some(
            "dnsName \"api.other.svc\" is outside the name constraints of CA \"team-ca\" \
             (permitted dnsDomains: team.svc)"
                .into()
        )
    );
    // An intermediate with constraints of its own narrows further, and says so first.
    let narrow = sub_ca(
        &root,
        now(),
        Some(constraints(dns(&["api.team.svc"]), NameSubtrees::default())),
    );
    assert_eq!(narrow.name_constraints_refusal(&names(&["api.team.svc"])), None);
    assert_eq!(
        narrow.name_constraints_refusal(&names(&["db.team.svc"])),
        Some(
            "dnsName \"db.team.svc\" is outside the name constraints of CA \"Team Sub CA\" \
             (permitted dnsDomains: api.team.svc)"
                .into()
        )
    );
    // The same through the public check, with the chain spelled out.
    let chain = [narrow.certificate().clone(), root.certificate().clone()];
    assert!(check_name_constraints(&chain, &names(&["secret.team.svc"])).is_err());
    // A CA without constraints allows everything.
    let plain = root_ca("Plain CA", now());
    assert_eq!(
        plain.name_constraints_refusal(&names(&["anything.example"])),
        None
    );
}

#[test]
fn a_sub_ca_must_ask_for_constraints_within_its_parents() {
    let root = constrained_root("team-ca", now(), team_constraints());
    let sub_ca_request = |nc: NameConstraints| RequestedNames {
        common_name: Some("Team Sub CA".into()),
        name_constraints: Some(nc),
        ..Default::default()
    };
    let within = constraints(
        NameSubtrees {
            ip_ranges: ranges(&["10.1.0.0/16"]),
            ..dns(&["api.team.svc", ".team.svc"])
        },
        dns(&["x.api.team.svc"]),
    );
    assert_eq!(root.name_constraints_refusal(&sub_ca_request(within)), None);
    assert_eq!(
        root.name_constraints_refusal(&sub_ca_request(constraints(
            dns(&["other.svc"]),
            NameSubtrees::default()
        ))),
        Some(
            "nameConstraints.permitted.dnsDomains entry \"other.svc\" is outside the name \
             constraints of CA \"team-ca\" (permitted dnsDomains: team.svc)"
                .into()
        )
    );
    let excluded = root
        .name_constraints_refusal(&sub_ca_request(constraints(
            dns(&["db.secret.team.svc"]),
            NameSubtrees::default(),
        )))
        .unwrap();
    assert!(
        excluded.contains("(excluded dnsDomains: secret.team.svc)"),
        "{excluded}"
    );
    let wider = NameSubtrees {
        ip_ranges: ranges(&["10.0.0.0/7"]),
        ..Default::default()
    };
    assert!(
        root.name_constraints_refusal(&sub_ca_request(constraints(wider, NameSubtrees::default())))
            .unwrap()
            .contains("ipRanges entry \"10.0.0.0/7\"")
    );
    // A sub-CA's own names are checked as a leaf's are.
    let named = RequestedNames {
        dns_names: vec!["ca.other.svc".into()],
        ..sub_ca_request(constraints(dns(&["api.team.svc"]), NameSubtrees::default()))
    };
    assert!(
        root.name_constraints_refusal(&named)
            .unwrap()
            .starts_with("dnsName \"ca.other.svc\"")
    );
}

#[test]
fn a_ca_whose_constraints_cannot_be_read_signs_nothing() {
    let mut root = constrained_root("team-ca", now(), team_constraints());
    if let Some(nc) = root.chain[0].name_constraints.as_mut() {
        nc.excluded.unreadable.push("an iPAddress of 5 octets".into());
    }
    assert_eq!(
        root.name_constraints_refusal(&names(&["api.team.svc"])),
        Some(
            "CA \"team-ca\" has name constraints certkeeper cannot read (an iPAddress of 5 \
             octets), so it signs nothing"
                .into()
        )
    );
}

/// An OpenSSL-made CA whose constraints permit the directoryName C=DE, O=Example Corp and
/// the DNS domain corp.example.
fn dirname_constrained_ca() -> CaKeyPair {
    CaKeyPair::from_pem(
        include_bytes!("../testdata/dirname-constrained-ca.crt"),
        include_bytes!("../testdata/ec-p256-pkcs8.key"),
        None,
        IssuerUrls::default(),
    )
    .unwrap()
}

fn corp_subject(organization: &str) -> RequestedNames {
    RequestedNames {
        common_name: Some("Corp Workload".into()),
        subject: SubjectFields {
            countries: vec!["DE".into()],
            organizations: vec![organization.into()],
            organizational_units: vec!["Payments".into()],
            ..Default::default()
        },
        ..names(&["pay.corp.example"])
    }
}

#[test]
fn a_directory_name_constraint_is_a_prefix_of_the_subject() {
    let ca = dirname_constrained_ca();
    let read = ca.certificate().name_constraints.clone().unwrap();
    assert!(read.critical);
    assert_eq!(read.permitted.dns_domains, ["corp.example"]);
    assert_eq!(read.permitted.directory_names.len(), 1);

    assert_eq!(ca.name_constraints_refusal(&corp_subject("Example Corp")), None);
    // Compared as RFC 5280 asks, not byte for byte: case and spacing do not matter.
    assert_eq!(ca.name_constraints_refusal(&corp_subject("example  CORP")), None);
    let refused = ca.name_constraints_refusal(&corp_subject("Other Corp")).unwrap();
    assert!(
        refused.starts_with("subject \"C=DE, O=Other Corp, OU=Payments, CN=Corp Workload\" is outside"),
        "{refused}"
    );
    assert!(
        refused.contains("(permitted directoryNames: C=DE, O=Example Corp)"),
        "{refused}"
    );
    // An empty subject is not checked (OpenSSL does not either).
    assert_eq!(ca.name_constraints_refusal(&names(&["pay.corp.example"])), None);
}

/// A leaf for `names` signed by `ca` without asking the check, as a careless CA would.
fn leaf_signed_anyway(ca: &CaKeyPair, from: jiff::Timestamp, request: &RequestedNames) -> Mounted {
    let template = CertificateTemplate {
        common_name: request.common_name.clone(),
        subject: request.subject.clone(),
        dns_names: request.dns_names.clone(),
        ip_addresses: request.ip_addresses.clone(),
        ..leaf_template(from)
    };
    let key = ecdsa_p256();
    let issued = sign_with_ca(&template, &key, ca).unwrap();
    Mounted {
        tls_crt: issued.chain_pem,
        tls_key: key.to_pem(KeyEncoding::Pkcs8).unwrap(),
        ca_crt: issued.ca_pem,
    }
}

#[test]
fn openssl_reads_the_name_constraints_we_write() {
    if !openssl_available("openssl_reads_the_name_constraints_we_write") {
        return;
    }
    let nc = constraints(
        NameSubtrees {
            ip_ranges: ranges(&["10.0.0.0/8", "fd00::/8"]),
            email_addresses: vec![".team.svc".into()],
            uri_domains: vec!["cluster.local".into()],
            ..dns(&["team.svc"])
        },
        dns(&["secret.team.svc"]),
    );
    let root = constrained_root("team-ca", now(), nc);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ca.pem", root.certificate().to_pem());
    let (ok, text) = openssl(dir.path(), &["x509", "-in", "ca.pem", "-noout", "-text"]).unwrap();
    assert!(ok, "{text}");
    let expected = "X509v3 Name Constraints: critical\n\
                    \x20               Permitted:\n\
                    \x20                 DNS:team.svc\n\
                    \x20                 IP:10.0.0.0/255.0.0.0\n\
                    \x20                 IP:FD00:0:0:0:0:0:0:0/FF00:0:0:0:0:0:0:0\n\
                    \x20                 email:.team.svc\n\
                    \x20                 URI:cluster.local\n\
                    \x20               Excluded:\n\
                    \x20                 DNS:secret.team.svc\n";
    assert!(text.contains(expected), "missing\n{expected}in\n{text}");
}

#[test]
fn openssl_refuses_a_leaf_outside_the_constraints_and_accepts_one_inside() {
    if !openssl_available("openssl_refuses_a_leaf_outside_the_constraints_and_accepts_one_inside") {
        return;
    }
    let from = jiff::Timestamp::now() - hours(1);
    let root = constrained_root("team-ca", from, team_constraints());
    let intermediate = sub_ca(&root, from, None);
    let dir = tempfile::tempdir().unwrap();
    let cn_only = |cn: &str| RequestedNames {
        common_name: Some(cn.into()),
        ..Default::default()
    };
    let cases = [
        ("inside", names(&["api.team.svc"]), None),
        (
            "outside",
            names(&["api.other.svc"]),
            Some("permitted subtree violation"),
        ),
        (
            "excluded",
            names(&["db.secret.team.svc"]),
            Some("excluded subtree violation"),
        ),
        (
            "cn-outside",
            cn_only("api.other.svc"),
            Some("permitted subtree violation"),
        ),
        (
            "ip-outside",
            RequestedNames {
                ip_addresses: vec![ip("192.168.0.1")],
                ..names(&["api.team.svc"])
            },
            Some("permitted subtree violation"),
        ),
    ];
    for (name, request, refusal) in cases {
        // Our check and OpenSSL agree.
        assert_eq!(
            intermediate.name_constraints_refusal(&request).is_some(),
            refusal.is_some(),
            "{name}"
        );
        let mounted = leaf_signed_anyway(&intermediate, from, &request);
        write(dir.path(), "ca.crt", &mounted.ca_crt);
        write(dir.path(), "tls.crt", &mounted.tls_crt);
        let (ok, out) = openssl(
            dir.path(),
            &["verify", "-CAfile", "ca.crt", "-untrusted", "tls.crt", "tls.crt"],
        )
        .unwrap();
        match refusal {
            None => assert!(ok && out.contains("tls.crt: OK"), "{name}: {out}"),
            Some(violation) => assert!(!ok && out.contains(violation), "{name}: {out}"),
        }
    }
}

#[test]
fn openssl_agrees_on_directory_name_constraints() {
    if !openssl_available("openssl_agrees_on_directory_name_constraints") {
        return;
    }
    let ca = dirname_constrained_ca();
    let dir = tempfile::tempdir().unwrap();
    for (organization, allowed) in [("Example Corp", true), ("Other Corp", false)] {
        let request = corp_subject(organization);
        assert_eq!(
            ca.name_constraints_refusal(&request).is_none(),
            allowed,
            "{organization}"
        );
        let mounted = leaf_signed_anyway(&ca, jiff::Timestamp::now() - hours(1), &request);
        write(dir.path(), "ca.crt", &mounted.ca_crt);
        write(dir.path(), "tls.crt", &mounted.tls_crt);
        let (ok, out) = openssl(dir.path(), &["verify", "-CAfile", "ca.crt", "tls.crt"]).unwrap();
        assert_eq!(ok, allowed, "{organization}: {out}");
        if !allowed {
            assert!(out.contains("permitted subtree violation"), "{out}");
        }
    }
}

#[test]
fn rustls_refuses_a_server_outside_the_constraints() {
    let from = jiff::Timestamp::now() - hours(1);
    let root = constrained_root("team-ca", from, team_constraints());
    let intermediate = sub_ca(&root, from, None);
    let client_secret = leaf_signed_anyway(&intermediate, from, &names(&["client.team.svc"]));

    let inside = leaf_signed_anyway(&intermediate, from, &names(&["api.team.svc"]));
    let mut tls_server = server(&inside);
    let mut tls_client = client(&client_secret, "api.team.svc");
    handshake(&mut tls_client, &mut tls_server).expect("a leaf inside the constraints is accepted");

    for outside in ["api.other.svc", "db.secret.team.svc"] {
        let mounted = leaf_signed_anyway(&intermediate, from, &names(&[outside]));
        let mut tls_server = server(&mounted);
        let mut tls_client = client(&client_secret, outside);
        match handshake(&mut tls_client, &mut tls_server) {
            Err(Refusal::ByClient(rustls::Error::InvalidCertificate(CertificateError::Other(e))))
                if format!("{e:?}").contains("NameConstraintViolation") => {}
            other => panic!("{outside}: expected a name constraint violation, got {other:?}"),
        }
    }
}
