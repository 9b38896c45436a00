use serde_json::json;

use super::*;

fn request() -> serde_json::Value {
    json!({
        "commonName": "web",
        "dnsNames": ["web.team.svc", "api.team.svc"],
        "ipAddresses": ["10.1.2.3"],
        "usages": ["digital signature", "server auth"],
        "duration": "2160h",
    })
}

fn evaluate(rule: &str, request: &serde_json::Value) -> Result<bool, String> {
    Rule::compile(rule).unwrap().evaluate(request, "team", "web")
}

#[test]
fn a_true_rule_allows_and_a_false_rule_denies() {
    assert_eq!(evaluate("true", &request()), Ok(true));
    assert_eq!(evaluate("self.commonName == 'other'", &request()), Ok(false));
}

#[test]
fn dns_names_must_end_in_the_certificates_namespace() {
    let rule = Rule::compile("self.dnsNames.all(n, n.endsWith('.' + cr.namespace + '.svc'))").unwrap();
    assert_eq!(rule.evaluate(&request(), "team", "web"), Ok(true));
    assert_eq!(rule.evaluate(&request(), "other", "web"), Ok(false));
    let prefixed = json!({"dnsNames": ["web.team-b.svc"]});
    assert_eq!(rule.evaluate(&prefixed, "team", "web"), Ok(false));
    let suffixed = json!({"dnsNames": ["web.b-team.svc"]});
    assert_eq!(rule.evaluate(&suffixed, "team", "web"), Ok(false));
}

#[test]
fn cr_name_and_has_are_available() {
    assert_eq!(evaluate("self.commonName == cr.name", &request()), Ok(true));
    assert_eq!(evaluate("!has(self.uris)", &request()), Ok(true));
    assert_eq!(
        evaluate("has(self.uris) && self.uris.size() > 0", &request()),
        Ok(false)
    );
}

#[test]
fn a_non_bool_result_denies_with_a_message() {
    let why = evaluate("self.dnsNames", &request()).unwrap_err();
    assert!(why.contains("instead of a bool"), "{why}");
    assert!(why.contains("web.team.svc"), "{why}");
    let why = evaluate("1 + 1", &request()).unwrap_err();
    assert!(why.contains("Int(2) instead of a bool"), "{why}");
}

#[test]
fn a_missing_field_denies_with_the_error() {
    let why = evaluate("self.uris.all(u, u.startsWith('spiffe://'))", &request()).unwrap_err();
    assert!(why.contains("evaluation failed"), "{why}");
    assert!(why.contains("uris"), "{why}");
}

#[test]
fn a_rule_that_does_not_parse_does_not_compile() {
    let why = Rule::compile("self.dnsNames.all(n,").unwrap_err();
    assert!(why.contains("does not parse"), "{why}");
    assert!(why.contains("self.dnsNames.all(n,"), "{why}");
    assert!(Rule::compile("").unwrap_err().contains("does not parse"));
}

#[test]
fn message_literals_do_not_compile_since_the_interpreter_panics_on_them() {
    for rule in ["Foo{a: 1} == 1", "a.b.Message{} == self", "[Foo{}].size() == 1"] {
        let why = Rule::compile(rule).unwrap_err();
        assert!(why.contains("message literals"), "{rule}: {why}");
    }
}

#[test]
fn functions_the_bound_cannot_size_do_not_compile() {
    for (rule, function) in [
        ("lists.range(100000000).size() > 0", "lists.range()"),
        ("'%.9999999f'.format([1.0]) != ''", "format()"),
        ("isURL('https://x')", "isURL()"),
        ("nosuch(self) == 1", "nosuch()"),
    ] {
        let why = Rule::compile(rule).unwrap_err();
        assert!(why.contains(function), "{rule}: {why}");
        assert!(why.contains("not available"), "{rule}: {why}");
    }
}

#[test]
fn a_rule_longer_than_the_limit_does_not_compile() {
    let rule = format!("self.commonName == '{}'", "a".repeat(MAX_RULE_BYTES));
    let why = Rule::compile(&rule).unwrap_err();
    assert!(why.contains("bytes long"), "{why}");
}

#[test]
fn kubernetes_string_set_regex_and_ip_functions_are_available() {
    for rule in [
        "self.commonName.upperAscii() == 'WEB'",
        "self.dnsNames[0].split('.')[1] == cr.namespace",
        "self.dnsNames.all(n, n.matches('^[a-z]+\\\\.team\\\\.svc$'))",
        "self.dnsNames[0].find('[a-z]+') == 'web'",
        "sets.contains(['digital signature', 'server auth', 'client auth'], self.usages)",
        "self.ipAddresses.all(a, cidr('10.0.0.0/8').containsIP(a))",
        "isIP(self.ipAddresses[0]) && ip(self.ipAddresses[0]).family() == 4",
        "self.dnsNames.map(n, n.replace('.svc', '')).join(',') == 'web.team,api.team'",
        "self.dnsNames.filter(n, n.startsWith('api')).size() == 1",
        "self.dnsNames.exists_one(n, n.startsWith('api'))",
        "duration(self.duration) <= duration('2160h')",
        "string(size(self.dnsNames)) == '2'",
    ] {
        assert_eq!(evaluate(rule, &request()), Ok(true), "{rule}");
    }
}

#[test]
fn deep_nesting_is_evaluated_on_a_stack_large_enough_for_it() {
    // Debug builds overflow a 2 MiB stack at about 15 nested parentheses.
    let nested = format!("{}true{}", "(".repeat(90), ")".repeat(90));
    assert_eq!(evaluate(&nested, &request()), Ok(true));
    let chain = format!("self.commonName{} == 'web'", ".trim()".repeat(250));
    assert_eq!(evaluate(&chain, &request()), Ok(true));
    let why = Rule::compile(&format!("{}true{}", "(".repeat(200), ")".repeat(200))).unwrap_err();
    assert!(why.contains("does not parse"), "{why}");
}

#[test]
fn a_rule_whose_values_grow_exponentially_is_denied_before_it_runs() {
    let doubling = format!("['x']{}.size() > 0", ".map(a, a + a)".repeat(60));
    let why = evaluate(&doubling, &request()).unwrap_err();
    assert!(why.contains("limit"), "{why}");
    let replacing = format!(
        "self.commonName{}.size() > 0",
        ".replace('', self.commonName)".repeat(20)
    );
    let why = evaluate(&replacing, &request()).unwrap_err();
    assert!(why.contains("limit"), "{why}");
}

#[test]
fn a_quadratic_rule_runs_on_a_small_request_and_is_denied_on_a_huge_one() {
    let unique = "self.dnsNames.all(n, self.dnsNames.exists_one(m, m == n))";
    assert_eq!(evaluate(unique, &request()), Ok(true));
    let names: Vec<String> = (0..1000).map(|i| format!("{i:0>200}.team.svc")).collect();
    let huge = json!({ "dnsNames": names });
    let why = evaluate(unique, &huge).unwrap_err();
    assert!(why.contains("exceeds its cost limit"), "{why}");
}

#[test]
fn a_linear_rule_fits_the_limit_on_the_largest_certificate_the_crd_accepts() {
    // 1000 names of 253 characters is the most the Certificate CRD lets through.
    let names: Vec<String> = (0..1000).map(|i| format!("{i:0>244}.team.svc")).collect();
    let largest = json!({ "dnsNames": names });
    let rule = "self.dnsNames.all(n, n.endsWith('.' + cr.namespace + '.svc'))";
    assert_eq!(evaluate(rule, &largest), Ok(true));
}

#[test]
fn the_bound_charges_each_iteration_and_each_copy() {
    let request = request();
    let cr = json!({"namespace": "team", "name": "web"});
    let bound = |rule: &str| {
        let rule = Rule::compile(rule).unwrap();
        Estimator::bound(&rule.program.expression().expr, &request, &cr)
    };
    let once = bound("self.dnsNames.all(n, n.endsWith('.svc'))");
    let nested = bound("self.dnsNames.all(n, self.dnsNames.all(m, m.endsWith('.svc')))");
    assert!(nested.cost > once.cost * 2, "{once:?} {nested:?}");
    let mapped = bound("self.dnsNames.map(n, n + n).size() > 0");
    // Two names of 12 bytes doubled, plus the list's own two elements.
    assert!(mapped.largest >= 2 * 24 + 2, "{mapped:?}");
}

#[test]
fn a_panic_on_the_cel_thread_becomes_an_error() {
    let outcome = on_cel_thread(|| -> bool { panic!("boom") });
    assert!(outcome.unwrap_err().contains("panicked"));
}

#[test]
fn source_is_kept() {
    let rule = Rule::compile("self.commonName == cr.name").unwrap();
    assert_eq!(rule.source(), "self.commonName == cr.name");
}
