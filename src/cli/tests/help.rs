//! Help and usage: examples everywhere, 100 columns, the kubectl plugin name.

use std::ffi::OsStr;

use clap::CommandFactory;

use crate::cli::{Cli, command_for};

#[test]
fn as_a_kubectl_plugin_help_says_kubectl_certkeeper() {
    let mut command = command_for(OsStr::new("/usr/local/bin/kubectl-certkeeper"));
    let help = command
        .find_subcommand_mut("renew")
        .unwrap()
        .render_help()
        .to_string();
    assert!(help.contains("kubectl certkeeper renew"), "{help}");
    let help = command
        .find_subcommand_mut("convert")
        .unwrap()
        .render_help()
        .to_string();
    assert!(
        help.contains("-o yaml | kubectl certkeeper convert -f -"),
        "{help}"
    );
    let help = command
        .find_subcommand_mut("ca")
        .and_then(|ca| ca.find_subcommand_mut("init"))
        .unwrap()
        .render_help()
        .to_string();
    assert!(help.contains("Usage: kubectl certkeeper ca init --key"), "{help}");
    assert!(
        help.contains("  kubectl certkeeper ca init --key 'pkcs11:"),
        "{help}"
    );
    let mut command = command_for(OsStr::new("certkeeper"));
    let help = command.render_usage().to_string();
    assert!(help.contains("certkeeper") && !help.contains("kubectl"), "{help}");
}

#[test]
fn every_command_has_an_example_and_help_fits_in_100_columns() {
    fn walk(command: &mut clap::Command, path: &str) {
        let path = format!("{path} {}", command.get_name());
        if command.get_subcommands().next().is_none() || command.get_name() == "certkeeper" {
            let help = command.render_long_help().to_string();
            assert!(help.contains("Example"), "{path} --help has no example:\n{help}");
            for line in help.lines() {
                assert!(line.chars().count() <= 100, "{path} --help: {line:?}");
            }
        }
        for child in command.get_subcommands_mut() {
            if child.get_name() != "help" {
                walk(child, &path);
            }
        }
    }
    let mut command = Cli::command().term_width(100).max_term_width(100);
    command.build();
    walk(&mut command, "");
}

/// A kubeconfig with two contexts on one unreachable server, `shop` current.
fn kubeconfig(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("config");
    std::fs::write(
        &path,
        r#"
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:1"}}]
contexts:
  - {name: shop, context: {cluster: c, user: u, namespace: shop}}
  - {name: data, context: {cluster: c, user: u, namespace: data}}
current-context: shop
users: [{name: u, user: {token: not-a-secret}}]
"#,
    )
    .unwrap();
    path
}

#[tokio::test]
async fn the_default_namespace_is_the_kubeconfig_contexts_as_with_kubectl() {
    use crate::cli::{ClusterArgs, connect};
    let dir = tempfile::tempdir().unwrap();
    let cluster = |context: Option<&str>| ClusterArgs {
        kubeconfig: Some(kubeconfig(dir.path())),
        context: context.map(str::to_owned),
    };
    let client = connect(&cluster(None)).await.unwrap();
    assert_eq!(client.default_namespace(), "shop");
    let client = connect(&cluster(Some("data"))).await.unwrap();
    assert_eq!(client.default_namespace(), "data");
    let error = match connect(&cluster(Some("nope"))).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("an unknown context was accepted"),
    };
    assert!(
        error.starts_with("no cluster: ") && error.contains("nope"),
        "{error}"
    );
}

#[test]
fn kubeconfig_and_context_are_accepted_before_or_after_the_subcommand() {
    use clap::Parser;
    let parse = |args: &[&str]| Cli::try_parse_from(args).map(|c| c.command);
    for args in [
        &["certkeeper", "status", "--context", "data", "certificate", "web"][..],
        &["certkeeper", "status", "certificate", "web", "--context", "data"][..],
    ] {
        match parse(args) {
            Ok(crate::cli::Command::Status(s)) => assert_eq!(s.cluster.context.as_deref(), Some("data")),
            other => panic!("{args:?}: {other:?}"),
        }
    }
    assert!(parse(&["certkeeper", "renew", "web", "--kubeconfig", "/k"]).is_ok());
    assert!(parse(&["certkeeper", "check", "api", "--context", "ci"]).is_ok());
}
