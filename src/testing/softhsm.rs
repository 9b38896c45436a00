//! SoftHSM2 tokens for tests. SoftHSM reads its configuration (`SOFTHSM2_CONF`) once per
//! process and a module re-initialisation affects the whole process, so each HSM test runs in
//! a child process of its own, with its own token directory: safe under `cargo nextest` and
//! `cargo test` alike, in parallel.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian's SoftHSM2 module.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
pub const LABEL: &str = "ca";
pub const PIN: &str = "1234";
pub const SO_PIN: &str = "5678";
const CHILD: &str = "CERTKEEPER_SOFTHSM_CHILD";

/// The test's own token: a directory, a configuration naming it, and a token labelled `ca`.
#[derive(Debug)]
pub struct Token {
    pub root: PathBuf,
    pub tokens: PathBuf,
    pub conf: PathBuf,
}

impl Token {
    /// `softhsm2-util` against this token directory.
    pub fn util(&self, args: &[&str]) -> std::process::Output {
        Command::new("softhsm2-util")
            .args(args)
            .env("SOFTHSM2_CONF", &self.conf)
            .output()
            .expect("softhsm2-util runs")
    }

    /// Imports a PKCS#8 PEM private key as `label` with `id` (hex).
    pub fn import(&self, pkcs8_pem: &str, label: &str, id_hex: &str) {
        let file = self.root.join(format!("{label}.pem"));
        std::fs::write(&file, pkcs8_pem).unwrap();
        let out = self.util(&[
            "--import",
            file.to_str().unwrap(),
            "--token",
            LABEL,
            "--label",
            label,
            "--id",
            id_hex,
            "--pin",
            PIN,
        ]);
        std::fs::remove_file(&file).unwrap();
        assert!(
            out.status.success(),
            "import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The directories of the tokens (one per token) inside the token directory.
    pub fn token_dirs(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.tokens)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect()
    }
}

fn available(test: &str) -> bool {
    if Path::new(MODULE).exists() && Command::new("softhsm2-util").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: SoftHSM2 is missing ({MODULE}); .ci/run installs Debian's softhsm2"
    );
    println!("{test}: skipped, SoftHSM2 is not installed (apt-get install softhsm2)");
    false
}

/// Makes a token directory with one token labelled `ca` (user PIN `1234`).
pub fn make_token() -> Token {
    let root = tempfile::Builder::new()
        .prefix("softhsm-")
        .tempdir()
        .unwrap()
        .keep();
    let tokens = root.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = root.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        ),
    )
    .unwrap();
    let token = Token { root, tokens, conf };
    let out = token.util(&[
        "--init-token",
        "--free",
        "--label",
        LABEL,
        "--pin",
        PIN,
        "--so-pin",
        SO_PIN,
    ]);
    assert!(
        out.status.success(),
        "init-token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    token
}

/// Runs the test `test` (its path in the crate, `pkcs11::tests::name`) in a child process with
/// a token of its own. In the child: Some(token), run the body. In the parent: None, after the
/// child passed (it panics with the child's output otherwise), or when SoftHSM2 is missing
/// outside CI.
pub fn isolated(test: &str) -> Option<Token> {
    if let Some(root) = std::env::var_os(CHILD) {
        let root = PathBuf::from(root);
        return Some(Token {
            tokens: root.join("tokens"),
            conf: root.join("softhsm2.conf"),
            root,
        });
    }
    if !available(test) {
        return None;
    }
    let token = make_token();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, &token.root)
        .env("SOFTHSM2_CONF", &token.conf)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ran = stdout.contains("1 passed");
    let _ = std::fs::remove_dir_all(&token.root);
    assert!(
        out.status.success() && ran,
        "{test} in its own process:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    None
}

/// `isolated` for the test function this is written in.
#[macro_export]
macro_rules! softhsm_token {
    ($name:ident) => {{
        let path = concat!(module_path!(), "::", stringify!($name));
        let path = path.split_once("::").map_or(path, |(_, rest)| rest);
        match $crate::testing::softhsm::isolated(path) {
            Some(token) => token,
            None => return,
        }
    }};
}
