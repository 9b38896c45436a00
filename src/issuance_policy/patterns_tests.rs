use proptest::prelude::*;

use super::*;

fn pattern(kind: FieldKind, source: &str) -> Pattern {
    Pattern::compile(kind, source).unwrap()
}

fn allows(kind: FieldKind, source: &str, value: &str) -> bool {
    pattern(kind, source).matches(value, "team", "web")
}

fn compile_error(kind: FieldKind, source: &str) -> String {
    Pattern::compile(kind, source).unwrap_err().0
}

// ---- DNS names ----

#[test]
fn dns_star_matches_one_or_more_characters_inside_one_label() {
    assert!(allows(FieldKind::Dns, "*.team.svc", "api.team.svc"));
    assert!(allows(FieldKind::Dns, "web-*.team.svc", "web-1.team.svc"));
    assert!(!allows(FieldKind::Dns, "web-*.team.svc", "web-.team.svc"));
    assert!(!allows(FieldKind::Dns, "*.team.svc", ".team.svc"));
}

#[test]
fn dns_star_never_crosses_a_dot() {
    assert!(!allows(FieldKind::Dns, "*.team.svc", "a.b.team.svc"));
    assert!(!allows(FieldKind::Dns, "web-*.svc", "web-a.team.svc"));
    assert!(!allows(FieldKind::Dns, "*", "a.b"));
    assert!(!allows(FieldKind::Dns, "*.svc", "svc"));
}

#[test]
fn dns_allows_several_stars_in_one_label() {
    let p = pattern(FieldKind::Dns, "web-*-v*.team.svc");
    assert!(p.matches("web-blue-v2.team.svc", "team", "web"));
    assert!(p.matches("web-a-b-v-v2.team.svc", "team", "web"));
    assert!(!p.matches("web--v2.team.svc", "team", "web"));
    assert!(!p.matches("web-blue-v.team.svc", "team", "web"));
}

#[test]
fn dns_compares_pattern_and_value_lowercased() {
    assert!(allows(FieldKind::Dns, "API.Team.SVC", "api.team.svc"));
    assert!(allows(FieldKind::Dns, "*.team.svc", "API.TEAM.Svc"));
}

#[test]
fn dns_namespace_placeholder_does_not_allow_a_namespace_it_is_a_prefix_of() {
    let p = pattern(FieldKind::Dns, "*.{namespace}.svc");
    assert!(p.matches("x.team.svc", "team", "web"));
    assert!(!p.matches("x.team-b.svc", "team", "web"));
    assert!(!p.matches("x.b-team.svc", "team", "web"));
    assert!(p.matches("x.team-b.svc", "team-b", "web"));
}

#[test]
fn dns_name_placeholder_fills_one_label_and_a_dotted_name_never_matches() {
    let p = pattern(FieldKind::Dns, "{name}.{namespace}.svc.cluster.local");
    assert!(p.matches("web.team.svc.cluster.local", "team", "web"));
    assert!(!p.matches("api.team.svc.cluster.local", "team", "web"));
    // A Certificate name may hold dots; it can never fill a single label.
    assert!(!p.matches("a.b.team.svc.cluster.local", "team", "a.b"));
    // An empty namespace (never the case in a cluster) matches nothing.
    assert!(!p.matches("web..svc.cluster.local", "", "web"));
}

#[test]
fn dns_requested_wildcard_needs_a_bare_star_label() {
    assert!(allows(FieldKind::Dns, "*.team.svc", "*.team.svc"));
    assert!(!allows(FieldKind::Dns, "web-*.team.svc", "*.team.svc"));
    assert!(!allows(FieldKind::Dns, "api.team.svc", "*.team.svc"));
    assert!(!allows(FieldKind::Dns, "*.team.svc", "web*.team.svc"));
    // Only the leftmost label may be a wildcard.
    assert!(!allows(FieldKind::Dns, "*.*.svc", "a.*.svc"));
    assert!(!allows(FieldKind::Dns, "{namespace}.svc", "*.svc"));
}

#[test]
fn dns_label_counts_must_be_equal_and_empty_labels_never_match() {
    assert!(!allows(FieldKind::Dns, "api.team.svc", "api.team.svc."));
    assert!(!allows(FieldKind::Dns, "*.team.svc", "api..team.svc"));
    assert!(!allows(FieldKind::Dns, "*.team.svc", "team.svc"));
    assert!(!allows(FieldKind::Dns, "*.team.svc", ""));
}

#[test]
fn dns_matches_idn_a_labels_and_refuses_unicode() {
    assert!(allows(
        FieldKind::Dns,
        "xn--bcher-kva.example",
        "XN--BCHER-KVA.example"
    ));
    assert!(allows(FieldKind::Dns, "*.example", "xn--bcher-kva.example"));
    assert!(!allows(FieldKind::Dns, "*.example", "bücher.example"));
    assert!(!allows(FieldKind::Dns, "*.example", "ä.example"));
    let error = compile_error(FieldKind::Dns, "bücher.example");
    assert!(error.contains("xn--"), "{error}");
    assert!(error.contains("bücher.example"), "{error}");
}

#[test]
fn dns_values_with_characters_no_name_holds_do_not_match() {
    assert!(!allows(FieldKind::Dns, "*.team.svc", "a b.team.svc"));
    assert!(!allows(FieldKind::Dns, "*.team.svc", "a/b.team.svc"));
    assert!(allows(FieldKind::Dns, "*.team.svc", "_grpc.team.svc"));
}

#[test]
fn dns_pattern_compile_errors_name_the_pattern_and_the_fault() {
    let cases = [
        ("{namespace}-x.svc", "must fill the whole label"),
        ("*{namespace}.svc", "both a placeholder and '*'"),
        ("{namespace}*.svc", "both a placeholder and '*'"),
        ("{team}.svc", "unknown placeholder {team}"),
        ("**.svc", "'**'"),
        ("a.svc.", "empty label"),
        ("a..svc", "empty label"),
        ("", "is empty"),
        ("a b.svc", "holds ' '"),
    ];
    for (source, fault) in cases {
        let error = compile_error(FieldKind::Dns, source);
        assert!(error.contains(fault), "{source}: {error}");
        assert!(error.contains(&format!("{source:?}")), "{source}: {error}");
    }
}

// ---- URIs ----

const SPIFFE: &str = "spiffe://cluster.local/ns/{namespace}/sa/*";

#[test]
fn uri_spiffe_pattern_allows_service_accounts_of_the_certificates_namespace() {
    let p = pattern(FieldKind::Uri, SPIFFE);
    assert!(p.matches("spiffe://cluster.local/ns/team/sa/web", "team", "web"));
    assert!(!p.matches("spiffe://cluster.local/ns/team-b/sa/web", "team", "web"));
    assert!(!p.matches("spiffe://cluster.local/ns/other/sa/web", "team", "web"));
    assert!(!p.matches("spiffe://other.local/ns/team/sa/web", "team", "web"));
}

#[test]
fn uri_star_never_crosses_a_slash() {
    let p = pattern(FieldKind::Uri, SPIFFE);
    assert!(!p.matches("spiffe://cluster.local/ns/team/sa/web/extra", "team", "web"));
    assert!(!p.matches("spiffe://cluster.local/ns/team/sa/", "team", "web"));
    assert!(!p.matches("spiffe://cluster.local/ns/team/sa", "team", "web"));
    assert!(!p.matches("spiffe://cluster.local/ns/team/sa//", "team", "web"));
}

#[test]
fn uri_dot_segments_are_refused_unless_the_pattern_has_them() {
    let p = pattern(FieldKind::Uri, SPIFFE);
    for value in [
        "spiffe://cluster.local/ns/team/sa/..",
        "spiffe://cluster.local/ns/team/sa/.",
        "spiffe://cluster.local/ns/team/sa/%2e%2e",
        "spiffe://cluster.local/ns/team/sa/%2E.",
        "spiffe://cluster.local/ns/../sa/web",
    ] {
        assert!(!p.matches(value, "team", "web"), "{value}");
        assert!(!p.matches(value, "..", "web"), "{value}");
    }
    let with_dots = pattern(FieldKind::Uri, "https://h/a/../b");
    assert!(with_dots.matches("https://h/a/../b", "team", "web"));
    assert!(!with_dots.matches("https://h/a/%2e%2e/b", "team", "web"));
}

#[test]
fn uri_encoded_slash_in_a_segment_is_refused_unless_the_pattern_has_it() {
    let p = pattern(FieldKind::Uri, SPIFFE);
    assert!(!p.matches("spiffe://cluster.local/ns/team/sa/a%2Fb", "team", "web"));
    assert!(!p.matches("spiffe://cluster.local/ns/team/sa/a%2fb", "team", "web"));
    assert!(allows(FieldKind::Uri, "https://h/a%2Fb", "https://h/a%2Fb"));
    let error = compile_error(FieldKind::Uri, "https://h/*%2F*");
    assert!(error.contains("encoded '/'"), "{error}");
}

#[test]
fn uri_query_fragment_userinfo_and_port_are_refused_unless_the_pattern_has_them() {
    let p = pattern(FieldKind::Uri, SPIFFE);
    for value in [
        "spiffe://cluster.local/ns/team/sa/web?x=1",
        "spiffe://cluster.local/ns/team/sa/web?",
        "spiffe://cluster.local/ns/team/sa/web#frag",
        "spiffe://user@cluster.local/ns/team/sa/web",
        "spiffe://cluster.local:443/ns/team/sa/web",
        "spiffe://cluster.local:/ns/team/sa/web",
    ] {
        assert!(!p.matches(value, "team", "web"), "{value}");
    }
    assert!(allows(
        FieldKind::Uri,
        "https://h:8443/a?x=1#f",
        "https://h:8443/a?x=1#f"
    ));
    assert!(!allows(
        FieldKind::Uri,
        "https://h:8443/a?x=1#f",
        "https://h:8443/a?x=2#f"
    ));
    assert!(!allows(FieldKind::Uri, "https://h:8443/a", "https://h:9443/a"));
    assert!(allows(FieldKind::Uri, "https://u@h/a", "https://u@h/a"));
    assert!(!allows(FieldKind::Uri, "https://u@h/a", "https://v@h/a"));
}

#[test]
fn uri_scheme_is_case_insensitive_and_host_exact() {
    assert!(allows(
        FieldKind::Uri,
        "SPIFFE://cluster.local/a",
        "spiffe://cluster.local/a"
    ));
    assert!(allows(
        FieldKind::Uri,
        "spiffe://cluster.local/a",
        "Spiffe://cluster.local/a"
    ));
    assert!(!allows(
        FieldKind::Uri,
        "spiffe://cluster.local/a",
        "spiffe://Cluster.local/a"
    ));
    assert!(!allows(
        FieldKind::Uri,
        "spiffe://cluster.local/a",
        "spiffe://cluster.local/A"
    ));
}

#[test]
fn uri_path_counts_and_placeholders_fill_whole_segments() {
    let p = pattern(FieldKind::Uri, "spiffe://td/ns/{namespace}/name/{name}");
    assert!(p.matches("spiffe://td/ns/team/name/web", "team", "web"));
    assert!(!p.matches("spiffe://td/ns/team/name/web-2", "team", "web"));
    assert!(!p.matches("spiffe://td/ns/team/name/web/x", "team", "web"));
    // Without authority, and with none in the value.
    assert!(allows(FieldKind::Uri, "urn:uuid:*", "urn:uuid:1234"));
    assert!(!allows(FieldKind::Uri, "urn:uuid:*", "urn://uuid:1234"));
}

#[test]
fn uri_values_that_do_not_parse_never_match() {
    let p = pattern(FieldKind::Uri, SPIFFE);
    for value in [
        "",
        "cluster.local/ns/team/sa/web",
        "spiffe://cluster.local/ns/team/sa/w eb",
        "spiffe://cluster.local/ns/team/sa/w%zzb",
        "spiffe://cluster.local/ns/team/sa/w\\b",
        "spiffe://cluster.local/ns/team/sa/wé",
        "spiffe://a@b@cluster.local/ns/team/sa/web",
        "spiffe:///ns/team/sa/web",
    ] {
        assert!(!p.matches(value, "team", "web"), "{value:?}");
    }
}

#[test]
fn uri_pattern_compile_errors_name_the_pattern_and_the_fault() {
    let cases = [
        ("spiffe://*.local/ns/a", "host"),
        ("spiffe://{namespace}.local/ns/a", "host"),
        ("spiffe://td/ns/{namespace}-x", "must fill the whole path segment"),
        ("spiffe://td/ns/*{name}", "both a placeholder and '*'"),
        ("spiffe://td/ns/{foo}", "unknown placeholder {foo}"),
        ("spiffe://td/ns/a?q=*", "query"),
        ("spiffe://td/ns/**", "'**'"),
        ("no-scheme", "no scheme"),
        ("spiffe://td/a b", "holds ' '"),
        ("spiffe://td:x/a", "port"),
    ];
    for (source, fault) in cases {
        let error = compile_error(FieldKind::Uri, source);
        assert!(error.contains(fault), "{source}: {error}");
        assert!(error.contains(&format!("{source:?}")), "{source}: {error}");
    }
}

// ---- IP addresses ----

#[test]
fn ip_cidr_contains_addresses_of_its_family() {
    assert!(allows(FieldKind::Ip, "10.0.0.0/8", "10.200.3.4"));
    assert!(!allows(FieldKind::Ip, "10.0.0.0/8", "11.0.0.1"));
    assert!(allows(FieldKind::Ip, "10.1.2.3", "10.1.2.3"));
    assert!(!allows(FieldKind::Ip, "10.1.2.3", "10.1.2.4"));
    assert!(allows(FieldKind::Ip, "192.168.0.0/23", "192.168.1.255"));
    assert!(!allows(FieldKind::Ip, "192.168.0.0/23", "192.168.2.0"));
    assert!(allows(FieldKind::Ip, "0.0.0.0/0", "8.8.8.8"));
}

#[test]
fn ip_v6_compares_parsed_addresses() {
    assert!(allows(FieldKind::Ip, "fd00::/8", "fd12:3456::1"));
    assert!(allows(FieldKind::Ip, "fd00::/8", "FD12:3456:0:0:0:0:0:1"));
    assert!(!allows(FieldKind::Ip, "fd00::/8", "fe80::1"));
    assert!(allows(FieldKind::Ip, "2001:db8::1", "2001:0db8:0000::0001"));
    // `::/0` is every IPv6 address, not every IPv4 one.
    assert!(!allows(FieldKind::Ip, "::/0", "10.0.0.1"));
    assert!(!allows(FieldKind::Ip, "0.0.0.0/0", "::1"));
}

#[test]
fn ip_v4_mapped_v6_is_normalised_on_both_sides() {
    assert!(allows(FieldKind::Ip, "10.0.0.0/8", "::ffff:10.1.2.3"));
    assert!(allows(FieldKind::Ip, "::ffff:10.0.0.0/104", "10.1.2.3"));
    assert!(allows(FieldKind::Ip, "::ffff:10.0.0.0/104", "::ffff:10.1.2.3"));
    assert!(!allows(FieldKind::Ip, "::ffff:10.0.0.0/104", "11.1.2.3"));
    assert!(allows(FieldKind::Ip, "::ffff:10.1.2.3", "10.1.2.3"));
}

#[test]
fn ip_values_that_do_not_parse_never_match() {
    for value in [
        "10.1.2",
        "010.1.2.3",
        "10.1.2.3/32",
        "fe80::1%eth0",
        "",
        " 10.1.2.3",
    ] {
        assert!(!allows(FieldKind::Ip, "0.0.0.0/0", value), "{value:?}");
    }
}

#[test]
fn ip_pattern_compile_errors_name_the_pattern_and_the_fault() {
    let cases = [
        ("10.*.0.0", "'*' and placeholders"),
        ("{namespace}", "'*' and placeholders"),
        ("10.0.0.0/33", "prefix length"),
        ("fd00::/129", "prefix length"),
        ("10.0.0.0/+8", "prefix length"),
        ("10.0.0.1/8", "past its /8 prefix"),
        ("10.0.0/8", "not an IP address"),
    ];
    for (source, fault) in cases {
        let error = compile_error(FieldKind::Ip, source);
        assert!(error.contains(fault), "{source}: {error}");
        assert!(error.contains(&format!("{source:?}")), "{source}: {error}");
    }
}

// ---- Email addresses ----

#[test]
fn email_star_matches_inside_the_local_part_or_one_domain_label() {
    assert!(allows(FieldKind::Email, "*@example.com", "alice@example.com"));
    assert!(allows(
        FieldKind::Email,
        "ops-*@*.example.com",
        "ops-1@eu.example.com"
    ));
    assert!(!allows(
        FieldKind::Email,
        "ops-*@*.example.com",
        "ops-1@a.eu.example.com"
    ));
    assert!(!allows(FieldKind::Email, "*@example.com", "@example.com"));
    assert!(!allows(FieldKind::Email, "*@example.com", "a@b@example.com"));
}

#[test]
fn email_local_part_is_exact_and_domain_lowercased() {
    assert!(allows(FieldKind::Email, "Alice@Example.COM", "Alice@example.com"));
    assert!(!allows(
        FieldKind::Email,
        "alice@example.com",
        "Alice@example.com"
    ));
}

#[test]
fn email_placeholders_fill_the_local_part_or_a_domain_label() {
    let p = pattern(FieldKind::Email, "{name}@{namespace}.example.com");
    assert!(p.matches("web@team.example.com", "team", "web"));
    assert!(!p.matches("web@team-b.example.com", "team", "web"));
    assert!(!p.matches("web-2@team.example.com", "team", "web"));
    let error = compile_error(FieldKind::Email, "{name}-x@example.com");
    assert!(error.contains("must fill the whole local part"), "{error}");
    let error = compile_error(FieldKind::Email, "a@*{namespace}.example.com");
    assert!(error.contains("both a placeholder and '*'"), "{error}");
}

#[test]
fn email_pattern_compile_errors_name_the_pattern_and_the_fault() {
    let cases = [
        ("example.com", "no '@'"),
        ("a@b@example.com", "more than one '@'"),
        ("@example.com", "empty local part"),
        ("a@bücher.example", "xn--"),
        ("a@example..com", "empty label"),
    ];
    for (source, fault) in cases {
        let error = compile_error(FieldKind::Email, source);
        assert!(error.contains(fault), "{source}: {error}");
    }
}

// ---- Free text ----

#[test]
fn text_star_matches_any_run_including_none() {
    assert!(allows(FieldKind::Text, "ACME *", "ACME Corp. (EU/West)"));
    assert!(allows(FieldKind::Text, "ACME*", "ACME"));
    assert!(allows(FieldKind::Text, "*", ""));
    assert!(allows(FieldKind::Text, "a*b*c", "abc"));
    assert!(!allows(FieldKind::Text, "a*b*c", "acb"));
    assert!(!allows(FieldKind::Text, "ACME", "acme"));
}

#[test]
fn text_placeholders_substitute_literally_anywhere() {
    let p = pattern(FieldKind::Text, "team {namespace}/{name} *");
    assert!(p.matches("team team/web (prod)", "team", "web"));
    assert!(!p.matches("team team-b/web (prod)", "team", "web"));
    // A substituted value is literal text, never a wildcard.
    assert!(!pattern(FieldKind::Text, "{name}").matches("anything", "team", "*"));
    assert!(pattern(FieldKind::Text, "{name}").matches("*", "team", "*"));
}

#[test]
fn text_unknown_or_unbalanced_braces_do_not_compile() {
    assert!(compile_error(FieldKind::Text, "{team}").contains("unknown placeholder {team}"));
    assert!(compile_error(FieldKind::Text, "a {namespace").contains("without a closing"));
    assert!(compile_error(FieldKind::Text, "a }").contains("without an opening"));
}

#[test]
fn source_and_kind_are_kept() {
    let p = pattern(FieldKind::Uri, SPIFFE);
    assert_eq!(p.source(), SPIFFE);
    assert_eq!(p.kind(), FieldKind::Uri);
}

// ---- Properties ----

/// The obvious exponential matcher, as a reference for `glob_match`.
fn reference_glob(pieces: &[String], value: &[u8], min_per_star: usize) -> bool {
    match pieces {
        [] => value.is_empty(),
        [only] => value == only.as_bytes(),
        [first, rest @ ..] => {
            let Some(after) = value.strip_prefix(first.as_bytes()) else {
                return false;
            };
            (min_per_star..=after.len()).any(|skip| reference_glob(rest, &after[skip..], min_per_star))
        }
    }
}

proptest! {
    #[test]
    fn glob_match_agrees_with_the_reference_matcher(
        pieces in prop::collection::vec("[ab]{0,2}", 1..4),
        value in "[ab]{0,7}",
        min_per_star in 0usize..2,
    ) {
        prop_assert_eq!(
            glob_match(&pieces, &value, min_per_star),
            reference_glob(&pieces, value.as_bytes(), min_per_star)
        );
    }

    #[test]
    fn namespace_placeholder_matches_only_that_namespace(
        namespace in "[a-z][a-z0-9-]{0,8}",
        other in "[a-z][a-z0-9-]{0,8}",
        host in "[a-z0-9]{1,8}",
    ) {
        let p = pattern(FieldKind::Dns, "*.{namespace}.svc");
        let value = format!("{host}.{other}.svc");
        prop_assert_eq!(p.matches(&value, &namespace, "web"), namespace == other);
        let p = pattern(FieldKind::Uri, SPIFFE);
        let value = format!("spiffe://cluster.local/ns/{other}/sa/{host}");
        prop_assert_eq!(p.matches(&value, &namespace, "web"), namespace == other);
    }

    #[test]
    fn dns_star_label_never_spans_labels(labels in prop::collection::vec("[a-z*]{1,3}", 1..4)) {
        let value = format!("{}.team.svc", labels.join("."));
        let allowed = pattern(FieldKind::Dns, "*.team.svc").matches(&value, "team", "web");
        let one_label = labels.len() == 1 && (labels[0] == "*" || !labels[0].contains('*'));
        prop_assert_eq!(allowed, one_label);
    }
}
