//! `cargo xtask help` says what each command does, with status 0; an
//! unknown command fails with status 2 and the usage.

use std::process::Command;

#[test]
fn help_lists_every_command_and_succeeds() {
    for flag in ["help", "--help", "-h"] {
        let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .arg(flag)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert!(stdout.starts_with("usage: cargo xtask <"), "{stdout:?}");
        for command in ["test", "cross", "ci", "demo", "bench", "soak", "abuse"] {
            assert!(
                stdout.contains(&format!("\n  {command} ")),
                "{command} missing: {stdout}"
            );
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("usage: cargo xtask <"),
        "{out:?}"
    );
}
