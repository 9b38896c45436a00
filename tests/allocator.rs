//! The real binary's allocator: jemalloc with its options from `main.rs` in effect. A renamed
//! symbol (the crate building jemalloc under another prefix) would drop the options without a
//! word, and with them the memory they save (README "Memory").

use std::process::Command;

#[test]
fn the_binary_runs_on_jemalloc_returning_freed_pages_at_once() {
    let out = Command::new(env!("CARGO_BIN_EXE_certkeeper"))
        .arg("--version")
        // jemalloc's own report of its options, printed at exit (to stderr).
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .output()
        .expect("certkeeper --version");
    assert!(out.status.success());
    let report = String::from_utf8_lossy(&out.stderr);
    for option in ["opt.dirty_decay_ms: 0", "opt.muzzy_decay_ms: 0"] {
        assert!(
            report.contains(option),
            "{option} not in jemalloc's report:\n{report}"
        );
    }
}
