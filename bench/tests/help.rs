//! `bench --help` prints the usage on standard output and exits with
//! status 0; an unknown argument fails with status 2 and the usage.

use std::process::Command;

#[test]
fn help_prints_the_usage_and_succeeds() {
    for flag in ["--help", "-h"] {
        let out = Command::new(env!("CARGO_BIN_EXE_bench"))
            .arg(flag)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert!(stdout.starts_with("usage: bench [--quick]"), "{stdout:?}");
        assert!(stdout.contains("or: bench --clients"), "{stdout:?}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .arg("--bogus")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        stderr.contains("\"--bogus\"") && stderr.contains("usage: bench"),
        "{stderr:?}"
    );
}
