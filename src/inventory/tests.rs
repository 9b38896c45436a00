//! The inventory's pure parts: reading certificates out of any data (chains, bundles, DER,
//! garbage, keys), who manages an object, the compact store, and which warning is due.

use std::collections::HashSet;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde_json::json;

use super::facts::{MAX_CERTIFICATES_PER_OBJECT, read_object};
use super::store::{LABELLED_CONFIGMAPS, LABELLED_SECRETS, TLS_SECRETS};
use super::*;
use crate::certificate::expiry::{DEFAULT_THRESHOLDS, Warning};
use crate::testing::{ca_secret, ts};

const H: fn(i64) -> SignedDuration = SignedDuration::from_hours;

fn now() -> Timestamp {
    ts("2026-06-01T00:00:00Z")
}

/// A TLS Secret whose certificate (CN `cn`) is valid from `days_before` days before now for
/// `days` days.
fn tls_secret(name: &str, cn: &str, days_before: i64, days: i64) -> Secret {
    ca_secret(name, "apps", cn, now() - H(24 * days_before), days)
}

fn data<'a>(secret: &'a Secret, key: &str) -> &'a [u8] {
    secret.data.as_ref().unwrap()[key].0.as_slice()
}

fn pem_of(cn: &str) -> String {
    String::from_utf8(data(&tls_secret("x", cn, 1, 30), "tls.crt").to_vec()).unwrap()
}

#[test]
fn a_tls_secret_gives_the_facts_of_each_certificate_and_never_its_key() {
    let secret = tls_secret("web-tls", "web.apps.svc", 28, 30);
    let facts = read_secret(&secret);
    assert!(facts.unreadable.is_empty(), "{:?}", facts.unreadable);
    let keys: Vec<&str> = facts.certificates.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(
        keys,
        ["ca.crt", "tls.crt"],
        "data in key order; tls.key is not a certificate"
    );
    let leaf = &facts.certificates[1];
    assert_eq!(leaf.subject_cn, "web.apps.svc");
    assert_eq!(leaf.issuer_cn, "web.apps.svc");
    assert_eq!(leaf.subject, "CN=web.apps.svc");
    assert_eq!(leaf.not_after, now() + H(48));
    assert_eq!(leaf.fingerprint.len(), 64);
    assert!(leaf.is_ca);
    let debug = format!("{facts:?}");
    assert!(!debug.contains("PRIVATE KEY"));
}

#[test]
fn bundles_chains_and_der_are_read_and_garbage_is_counted_with_a_reason() {
    let bundle = format!("{}\n{}{}", pem_of("a"), pem_of("b"), pem_of("c"));
    let der = pem::parse(pem_of("d")).unwrap().into_contents();
    let key = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\n-----END PRIVATE KEY-----\n";
    let broken = "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
    let facts = read_object(
        [
            ("bundle.pem", bundle.as_bytes()),
            ("root.der", der.as_slice()),
            ("tls.key", key.as_bytes()),
            ("key.der", &[0x30, 0x03, 0x02, 0x01, 0x00][..]),
            ("broken.pem", broken.as_bytes()),
            ("cut.pem", b"-----BEGIN CERTIFICATE-----\nMIIB".as_slice()),
            ("notes.txt", b"hello".as_slice()),
        ],
        false,
    );
    let cns: Vec<(&str, usize, &str)> = facts
        .certificates
        .iter()
        .map(|c| (c.key.as_str(), c.index, c.subject_cn.as_str()))
        .collect();
    assert_eq!(
        cns,
        [
            ("bundle.pem", 0, "a"),
            ("bundle.pem", 1, "b"),
            ("bundle.pem", 2, "c"),
            ("root.der", 0, "d")
        ]
    );
    let unreadable: Vec<&str> = facts.unreadable.iter().map(|u| u.key.as_str()).collect();
    assert_eq!(unreadable, ["broken.pem", "cut.pem"]);
    for u in &facts.unreadable {
        assert!(
            !u.reason.contains("MIIB") && !u.reason.contains("bm90"),
            "{}",
            u.reason
        );
    }
}

#[test]
fn a_key_without_a_certificate_is_unreadable_and_so_is_a_labelled_object_with_none() {
    let mut secret = tls_secret("half", "half", 1, 30);
    secret.data.as_mut().unwrap().remove("tls.crt");
    secret.data.as_mut().unwrap().remove("ca.crt");
    let facts = read_secret(&secret);
    assert!(facts.certificates.is_empty());
    assert_eq!(facts.unreadable.len(), 1);
    assert_eq!(facts.unreadable[0].key, "tls.crt");
    assert_eq!(facts.unreadable[0].reason, "no certificate found");

    // The key beside a CA certificate but with no certificate of its own: the CA is read, the
    // missing leaf is unreadable.
    let mut secret = tls_secret("half-ca", "half-ca", 1, 30);
    secret.data.as_mut().unwrap().remove("tls.crt");
    let facts = read_secret(&secret);
    assert_eq!(facts.certificates.len(), 1);
    assert_eq!(facts.certificates[0].key, "ca.crt");
    assert_eq!(facts.unreadable.len(), 1);
    assert_eq!(facts.unreadable[0].key, "tls.crt");
    assert_eq!(facts.unreadable[0].reason, "no certificate found");
    let mut secret = tls_secret("empty-crt", "empty-crt", 1, 30);
    let data = secret.data.as_mut().unwrap();
    data.insert("tls.crt".into(), k8s_openapi::ByteString(Vec::new()));
    assert_eq!(read_secret(&secret).unreadable.len(), 1);

    let map: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "settings", "namespace": "apps"},
        "data": {"config.yaml": "a: b"}
    }))
    .unwrap();
    assert_eq!(read_configmap(&map).unreadable.len(), 1);
}

#[test]
fn thousands_of_certificates_in_one_bundle_and_a_mebibyte_of_garbage_neither_crash_nor_grow() {
    let one = pem_of("many");
    let bundle = one.repeat(3000);
    let facts = read_object([("ca-bundle.crt", bundle.as_bytes())], false);
    assert_eq!(facts.certificates.len(), MAX_CERTIFICATES_PER_OBJECT);
    assert_eq!(facts.omitted, 3000 - MAX_CERTIFICATES_PER_OBJECT);

    let garbage: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let facts = read_object([("tls.crt", garbage.as_slice())], true);
    assert!(facts.certificates.is_empty());
    assert_eq!(facts.unreadable.len(), 1);
    let mut pem_garbage = b"-----BEGIN CERTIFICATE-----\n".to_vec();
    pem_garbage.extend(std::iter::repeat_n(b'A', 1 << 20));
    let facts = read_object([("tls.crt", pem_garbage.as_slice())], true);
    assert_eq!(facts.unreadable.len(), 1, "{:?}", facts.unreadable);
}

#[test]
fn who_manages_an_object_comes_from_its_labels_and_annotations() {
    let of = |labels: &[&str], annotations: &[&str]| {
        ManagedBy::of(|k| labels.contains(&k), |k| annotations.contains(&k))
    };
    assert_eq!(
        of(&["certkeeper.io/certificate-name"], &[]),
        ManagedBy::Certkeeper
    );
    assert_eq!(of(&["certkeeper.io/bundle"], &[]), ManagedBy::Certkeeper);
    assert_eq!(
        of(
            &["controller.cert-manager.io/fao"],
            &["cert-manager.io/certificate-name"]
        ),
        ManagedBy::CertManager
    );
    assert_eq!(
        of(
            &["certkeeper.io/certificate-name"],
            &["cert-manager.io/certificate-name"]
        ),
        ManagedBy::Certkeeper,
        "certkeeper's own first"
    );
    assert_eq!(of(&[], &[]), ManagedBy::None);
}

fn key(kind: Kind, name: &str) -> ObjectKey {
    ObjectKey {
        kind,
        namespace: "apps".into(),
        name: name.into(),
    }
}

fn seen(version: &str) -> Seen {
    Seen {
        uid: "uid-1".into(),
        version: version.into(),
        managed_by: ManagedBy::None,
    }
}

#[test]
fn the_store_reads_an_object_once_per_version_and_forgets_it_when_no_watch_shows_it() {
    let inventory = Inventory::default();
    let web = key(Kind::Secret, "web-tls");
    assert!(inventory.seen(&web, TLS_SECRETS, &seen("1")), "new: read it");
    inventory.record(
        &web,
        &seen("1"),
        &read_secret(&tls_secret("web-tls", "web", 28, 30)),
    );
    assert!(
        !inventory.seen(&web, TLS_SECRETS, &seen("1")),
        "unchanged: no read"
    );
    assert!(
        inventory.seen(&web, LABELLED_SECRETS, &seen("2")),
        "changed: read it"
    );
    assert_eq!(inventory.rows().len(), 2);

    // Relabelled: gone from the labelled watch, still a TLS Secret.
    inventory.gone(&web, LABELLED_SECRETS);
    assert_eq!(inventory.rows().len(), 2);
    inventory.gone(&web, TLS_SECRETS);
    assert!(inventory.rows().is_empty());
    assert_eq!(inventory.objects(), (0, 0));

    // A list after a watch expired: what it no longer holds is gone.
    let map = key(Kind::ConfigMap, "bundle");
    inventory.seen(&map, LABELLED_CONFIGMAPS, &seen("3"));
    inventory.seen(&web, TLS_SECRETS, &seen("4"));
    inventory.listed(LABELLED_CONFIGMAPS, &HashSet::new());
    inventory.listed(TLS_SECRETS, &HashSet::from([web.clone()]));
    assert_eq!(inventory.objects(), (1, 0));
}

#[test]
fn a_certificate_in_many_objects_is_kept_once() {
    let inventory = Inventory::default();
    let ca = tls_secret("ca", "shared-ca", 1, 365);
    for i in 0..10 {
        let object = key(Kind::Secret, &format!("s{i}"));
        inventory.found(&object, TLS_SECRETS, &seen("1"), &read_secret(&ca));
    }
    let rows = inventory.rows();
    assert_eq!(rows.len(), 20);
    assert!(
        rows.windows(2)
            .all(|w| std::sync::Arc::ptr_eq(&w[0].certificate, &w[1].certificate))
    );
}

#[test]
fn certkeepers_own_facts_come_from_its_writes_whichever_arrives_first() {
    let inventory = Inventory::default();
    let own = key(Kind::Secret, "api-tls");
    let secret = tls_secret("api-tls", "api", 1, 30);
    let facts = own_facts(data(&secret, "tls.crt"), data(&secret, "ca.crt"));
    inventory.record_own(&own, "7", &facts);
    assert!(inventory.holds(&own, "7"));
    let mut meta = seen("7");
    meta.managed_by = ManagedBy::Certkeeper;
    assert!(
        !inventory.seen(&own, TLS_SECRETS, &meta),
        "told before the watch showed it"
    );
    assert_eq!(inventory.rows().len(), 2);
    assert!(
        inventory
            .due_warnings(&DEFAULT_THRESHOLDS, now() + H(24 * 29))
            .is_empty(),
        "its Certificate warns"
    );
    inventory.gone(&own, TLS_SECRETS);
    assert_eq!(inventory.objects(), (0, 0));
}

#[test]
fn the_warning_due_is_the_shortest_threshold_crossed_among_those_shorter_than_the_lifetime() {
    let facts = read_secret(&tls_secret("w", "w", 28, 30));
    let inventory = Inventory::default();
    let object = key(Kind::Secret, "w");
    inventory.found(&object, TLS_SECRETS, &seen("1"), &facts);
    let cert = inventory.rows()[0].certificate.clone();
    let due = |at| warnings::due(&cert, &DEFAULT_THRESHOLDS, at);
    assert_eq!(
        due(now()),
        Some(Warning::ExpiringSoon { threshold: H(72) }),
        "2 days left"
    );
    assert_eq!(
        due(now() + H(36)),
        Some(Warning::ExpiringSoon { threshold: H(24) })
    );
    assert_eq!(due(now() + H(48)), Some(Warning::Expired));
    assert_eq!(due(now() - H(24 * 10)), None);
    // A 2-day certificate is never warned at 7 or 3 days.
    let short = read_secret(&tls_secret("s", "s", 1, 2));
    let object = key(Kind::Secret, "s");
    inventory.found(&object, TLS_SECRETS, &seen("1"), &short);
    let cert = inventory
        .rows()
        .into_iter()
        .find(|r| r.object.name == "s")
        .unwrap()
        .certificate;
    assert_eq!(
        warnings::due(&cert, &DEFAULT_THRESHOLDS, now() + H(1)),
        Some(Warning::ExpiringSoon { threshold: H(24) })
    );
    assert_eq!(warnings::due(&cert, &DEFAULT_THRESHOLDS, now() - H(12)), None);
}

#[test]
fn a_warning_has_one_name_so_that_a_restarted_controller_cannot_send_it_twice() {
    let secret = tls_secret("web-tls", "web", 28, 30);
    let make = || {
        let inventory = Inventory::default();
        let object = key(Kind::Secret, "web-tls");
        inventory.found(&object, TLS_SECRETS, &seen("1"), &read_secret(&secret));
        inventory
    };
    let first = make().due_warnings(&DEFAULT_THRESHOLDS, now());
    let again = make().due_warnings(&DEFAULT_THRESHOLDS, now() + H(1));
    assert_eq!(
        first.len(),
        1,
        "tls.crt and ca.crt hold the one certificate: one warning"
    );
    assert_eq!(first, again);
    assert!(first[0].event_name.starts_with("web-tls."));
    assert_eq!(first[0].reason, "ExpiringSoon");
    assert!(first[0].note.contains("less than 72h0m0s"), "{}", first[0].note);
    // The next threshold is another Event.
    let later = make().due_warnings(&DEFAULT_THRESHOLDS, now() + H(30));
    assert_ne!(first[0].event_name, later[0].event_name);
    // Sent: not due again.
    let inventory = make();
    for w in inventory.due_warnings(&DEFAULT_THRESHOLDS, now()) {
        inventory.sent(&w);
    }
    assert!(inventory.due_warnings(&DEFAULT_THRESHOLDS, now()).is_empty());
    let event = first[0].event(now(), "certkeeper");
    assert_eq!(event.regarding.as_ref().unwrap().kind.as_deref(), Some("Secret"));
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    // A long object name still makes a valid Event name.
    let long = ObjectKey {
        kind: Kind::ConfigMap,
        namespace: "apps".into(),
        name: "n".repeat(253),
    };
    let cert = make().rows()[0].certificate.clone();
    let w = warnings::PendingWarning::new(&long, "uid", "ca.crt", &cert, Warning::Expired);
    assert!(w.event_name.len() <= 253);
}

#[test]
fn counts_by_state_include_unreadable_values() {
    let inventory = Inventory::default();
    for (name, days_before, days) in [("valid", 1, 365), ("soon", 28, 30), ("gone", 40, 30)] {
        let object = key(Kind::Secret, name);
        inventory.seen(&object, TLS_SECRETS, &seen("1"));
        let mut secret = tls_secret(name, name, days_before, days);
        secret.data.as_mut().unwrap().remove("ca.crt");
        inventory.record(&object, &seen("1"), &read_secret(&secret));
    }
    let broken = key(Kind::Secret, "broken");
    inventory.seen(&broken, TLS_SECRETS, &seen("1"));
    let facts = read_object([("tls.crt", b"junk".as_slice())], true);
    inventory.record(&broken, &seen("1"), &facts);
    let (counts, omitted) = inventory.counts(now(), H(168));
    assert_eq!(counts[&State::Valid], 1);
    assert_eq!(counts[&State::Expiring], 1);
    assert_eq!(counts[&State::Expired], 1);
    assert_eq!(counts[&State::Unreadable], 1);
    assert_eq!(omitted, 0);
}

#[test]
fn a_relist_of_any_watch_keeps_what_certkeeper_told_before_the_watch_showed_it() {
    let inventory = Inventory::default();
    let own = key(Kind::Secret, "api-tls");
    let secret = tls_secret("api-tls", "api", 1, 30);
    inventory.record_own(
        &own,
        "9",
        &own_facts(data(&secret, "tls.crt"), data(&secret, "ca.crt")),
    );
    inventory.listed(LABELLED_CONFIGMAPS, &HashSet::new());
    inventory.listed(TLS_SECRETS, &HashSet::new());
    assert!(inventory.holds(&own, "9"), "written after the list was taken");
}

#[test]
fn an_object_made_again_under_its_name_loses_the_old_facts_and_warnings() {
    let inventory = Inventory::default();
    let web = key(Kind::Secret, "web-tls");
    inventory.found(
        &web,
        TLS_SECRETS,
        &seen("1"),
        &read_secret(&tls_secret("web-tls", "web", 28, 30)),
    );
    for w in inventory.due_warnings(&DEFAULT_THRESHOLDS, now()) {
        inventory.sent(&w);
    }
    let again = Seen {
        uid: "uid-2".into(),
        version: "5".into(),
        managed_by: ManagedBy::None,
    };
    assert!(inventory.seen(&web, TLS_SECRETS, &again));
    assert!(
        inventory.rows().is_empty(),
        "the old certificate is not the new object's"
    );
    assert!(inventory.due_warnings(&DEFAULT_THRESHOLDS, now()).is_empty());
}

#[test]
fn objects_outside_the_watched_namespaces_keep_no_facts() {
    let inventory = Inventory::default();
    let web = key(Kind::Secret, "web-tls");
    let facts = read_secret(&tls_secret("web-tls", "web", 1, 30));
    inventory.seen(&web, TLS_SECRETS, &seen("1"));
    assert!(
        inventory
            .watch_namespaces(Some(HashSet::from(["shop".to_owned()])))
            .is_empty()
    );
    // A read that finished after its namespace stopped being watched.
    inventory.record(&web, &seen("1"), &facts);
    inventory.record_own(&key(Kind::Secret, "own-tls"), "2", &facts);
    assert!(inventory.rows().is_empty());
    assert_eq!(inventory.watch_namespaces(None), vec![web.clone()], "to read now");
    inventory.record(&web, &seen("1"), &facts);
    assert_eq!(inventory.rows().len(), 2);
    inventory.watch_namespaces(Some(HashSet::new()));
    assert!(inventory.rows().is_empty());
}

#[test]
fn an_event_name_cut_short_is_still_a_dns_subdomain() {
    let inventory = Inventory::default();
    let object = ObjectKey {
        kind: Kind::Secret,
        namespace: "apps".into(),
        name: format!("{}-{}", "a".repeat(199), "b".repeat(40)),
    };
    inventory.found(
        &object,
        TLS_SECRETS,
        &seen("1"),
        &read_secret(&tls_secret("x", "x", 28, 30)),
    );
    let warning = &inventory.due_warnings(&DEFAULT_THRESHOLDS, now())[0];
    let (prefix, hash) = warning.event_name.rsplit_once('.').unwrap();
    assert_eq!(prefix, "a".repeat(199), "cut at 200, then the dash trimmed");
    assert_eq!(hash.len(), 16);
}

#[test]
fn an_object_unread_at_two_sweeps_in_a_row_is_due_for_a_read() {
    let inventory = Inventory::default();
    let own = key(Kind::Secret, "api-tls");
    let mut meta = seen("3");
    meta.managed_by = ManagedBy::Certkeeper;
    inventory.seen(&own, TLS_SECRETS, &meta);
    assert!(inventory.sweep_unread().is_empty(), "one grace to tell about it");
    assert_eq!(inventory.sweep_unread(), vec![own.clone()]);
    // Told about in time: never read.
    let told = key(Kind::Secret, "web-tls");
    inventory.seen(&told, TLS_SECRETS, &meta);
    assert!(inventory.sweep_unread().is_empty());
    let secret = tls_secret("web-tls", "web", 1, 30);
    inventory.record_own(
        &told,
        "3",
        &own_facts(data(&secret, "tls.crt"), data(&secret, "ca.crt")),
    );
    assert!(inventory.sweep_unread().iter().all(|k| *k != told));
}
