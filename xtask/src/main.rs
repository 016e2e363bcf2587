//! `cargo xtask <command>`: developer commands for the gaio workspace.
//!
//! * `test`: the whole test suite, one test per process (nextest), then the
//!   documentation examples. Falls back to `cargo test --test-threads=1`
//!   where nextest is not installed, so descriptor counting stays exact.
//! * `ci`: what `.ci/run` checks: formatting, clippy with warnings denied,
//!   then `test`.
//! * `demo`: the echo demo in release mode (`cargo run --release -p gaio
//!   --example demo`).

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("ci") => ci(),
        Some("demo") => demo(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask <test|ci|demo> [args]");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `cargo` with `args`, failing if it fails.
fn cargo(args: &[&str]) -> Result<(), String> {
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = Command::new(env_cargo())
        .args(args)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo {} failed ({status})", args.join(" ")))
    }
}

fn env_cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn has_nextest() -> bool {
    Command::new(env_cargo())
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn test(extra: &[String]) -> Result<(), String> {
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    if has_nextest() {
        let mut args = vec!["nextest", "run", "--workspace", "--no-fail-fast"];
        args.extend(&extra);
        cargo(&args)?;
    } else {
        eprintln!("xtask: cargo-nextest not found; running tests one at a time");
        let mut args = vec!["test", "--workspace", "--all-targets", "--no-fail-fast"];
        args.extend(&extra);
        args.extend(["--", "--test-threads=1"]);
        cargo(&args)?;
    }
    cargo(&["test", "--workspace", "--doc"])
}

fn ci() -> Result<(), String> {
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    test(&[])
}

fn demo(extra: &[String]) -> Result<(), String> {
    let mut args = vec!["run", "--release", "-p", "gaio", "--example", "demo", "--"];
    args.extend(extra.iter().map(String::as_str));
    cargo(&args)
}
