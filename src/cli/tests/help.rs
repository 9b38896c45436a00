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
