//! The demo's command line refuses what it cannot run, before it binds anything.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_web-demo");

#[test]
fn member_counts_outside_one_to_32_are_refused() {
    for bad in ["0", "33", "many"] {
        let out = Command::new(BIN)
            .args(["--members", bad, "--port", "0"])
            .output()
            .expect("web-demo starts");
        assert!(!out.status.success(), "--members {bad} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--members"), "--members {bad}: {err}");
    }
}

#[test]
fn help_names_every_option() {
    let out = Command::new(BIN)
        .arg("--help")
        .output()
        .expect("web-demo starts");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--port", "--bind", "--members", "--pkg-dir"] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}
