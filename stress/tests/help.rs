//! `soak --help` and `abuse --help` print their options on standard
//! output and exit with status 0; an unknown option fails with the usage.

use std::process::Command;

#[test]
fn help_prints_the_options_and_succeeds() {
    for (exe, name) in [
        (env!("CARGO_BIN_EXE_soak"), "soak"),
        (env!("CARGO_BIN_EXE_abuse"), "abuse"),
    ] {
        let out = Command::new(exe).arg("--help").output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{name}: {out:?}");
        assert!(
            stdout.starts_with(&format!("usage: {name}\n  --")),
            "{name}: {stdout:?}"
        );
        let out = Command::new(exe).arg("--bogus").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{name}: {out:?}");
        assert!(stderr.contains("unknown option --bogus"), "{name}: {stderr:?}");
        assert!(out.stdout.is_empty(), "{name} ran: {out:?}");
    }
}
