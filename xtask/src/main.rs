//! `cargo xtask <command>`: developer commands for the gaio workspace.
//!
//! * `test`: the whole test suite, one test per process (nextest), then the
//!   documentation examples. Falls back to `cargo test --test-threads=1`
//!   where nextest is not installed, so descriptor counting stays exact.
//!   On Linux the workspace runs on io_uring where the kernel lets it
//!   (epoll otherwise), and the `gaio` suite runs again on epoll
//!   (`GAIO_BACKEND=epoll`) and once more with io_uring blocked by a
//!   seccomp filter (the automatic choice must fall back to epoll). The
//!   `gaio` suite then runs built with `--cfg gaio_force_poll`, against
//!   the portable poll(2) poller, in a target directory of its own
//!   (`target/force-poll`). Each run tells gaio's `backend` test what the
//!   default watcher must run on (`GAIO_EXPECT_BACKEND`).
//! * `cross`: `cargo check` and `cargo clippy -D warnings` of the whole
//!   workspace (tests and examples included) for the BSD and Apple targets.
//! * `ci`: what `.ci/run` checks: formatting, clippy with warnings denied,
//!   `cross`, then `test`.
//! * `soak`, `abuse`: the stress tools of `stress/` in release mode: a
//!   long echo run with every byte checked and descriptors and memory
//!   watched, and a hostile client mix against the echo server example.
//! * `demo`: the echo demo in release mode (`cargo run --release -p gaio
//!   --example demo`).
//! * `bench [--quick]`: gaio against mio, tokio and std thread-per-
//!   connection, side by side, then gaio's `CoresBuilder` on 1 to N
//!   threads (the `scaling` scenario); report, JSON and plots in
//!   `target/bench/`. Arguments go to the driver as they are:
//!   `cargo xtask bench --quick --scenarios scaling`, `--reps N`,
//!   `--scaling-threads 1,2,4`, `--spread reuseport`, `--no-pin` (see
//!   `gaio_bench::driver::USAGE`).
//! * `bench --clients [--reps N] [--duration SECS] [--out DIR]`: the HTTP
//!   and RESP example servers against their tokio twins, nginx and
//!   redis-server, loaded by wrk and redis-benchmark (installed separately:
//!   `apt-get install wrk nginx-light redis-tools redis-server`); report
//!   and JSON in `target/bench/clients/`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "usage: cargo xtask <test|cross|ci|demo|bench|soak|abuse> [args]";

/// What `cargo xtask help` prints after the usage line.
const COMMANDS: &str =
    "  test    the whole test suite: every backend this system has, then poll(2), then doc tests
  cross   cargo check and clippy -D warnings for the BSD and Apple targets
  ci      what .ci/run checks: formatting, clippy, cross, then test
  demo    the echo demo in release mode (arguments go to it: --conns N --rounds N --size BYTES)
  bench   gaio against mio, tokio and std, side by side (bench --help for its arguments)
  soak    a long echo run, every byte checked, descriptors and memory watched (--help)
  abuse   a hostile client mix against the echo server example (--help)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("ci") => ci(),
        Some("cross") => cross(),
        Some("demo") => demo(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("soak") => stress("soak", &args[1..]),
        Some("abuse") => stress("abuse", &args[1..]),
        #[cfg(target_os = "linux")]
        Some(WITHOUT_IO_URING) => without_io_uring(&args[1..]),
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}\n{COMMANDS}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE} (`cargo xtask help` says what each does)");
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
    run(Command::new(env_cargo()).args(args), args)
}

/// The cfg that makes gaio use the poll(2) poller everywhere (gaio's
/// crate docs, "Backends and cfgs").
const FORCE_POLL_CFG: &str = "gaio_force_poll";

/// Runs `cargo` with `args`, built with `--cfg gaio_force_poll` added to
/// the caller's rustflags, in `target/force-poll`: a change of rustflags
/// rebuilds everything, so the forced build keeps a target directory of
/// its own and the two never invalidate each other. The rustflags go in
/// `CARGO_ENCODED_RUSTFLAGS`, which outranks `RUSTFLAGS` and the config
/// files, so the cfg cannot be lost (rustflags set only in a config file
/// are, for this run). `GAIO_EXPECT_POLLER` has gaio's `backend` test
/// check the result.
fn cargo_force_poll(args: &[&str]) -> Result<(), String> {
    let target_dir = force_poll_target_dir();
    eprintln!(
        "xtask: RUSTFLAGS+='--cfg {FORCE_POLL_CFG}' CARGO_TARGET_DIR={} cargo {}",
        target_dir.display(),
        args.join(" ")
    );
    let mut flags: Vec<String> = match std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        Ok(encoded) => encoded.split('\x1f').map(String::from).collect(),
        Err(_) => std::env::var("RUSTFLAGS")
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect(),
    };
    flags.retain(|f| !f.is_empty());
    flags.extend(["--cfg".into(), FORCE_POLL_CFG.into()]);
    run(
        Command::new(env_cargo())
            .args(args)
            .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\x1f"))
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("GAIO_EXPECT_POLLER", "PollPoller")
            .env("GAIO_EXPECT_BACKEND", "poll"),
        args,
    )
}

/// `force-poll` under the target directory: `$CARGO_TARGET_DIR`, else the
/// workspace's `target/`.
fn force_poll_target_dir() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || {
            let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
            xtask.parent().unwrap_or(xtask).join("target")
        },
        PathBuf::from,
    );
    base.join("force-poll")
}

fn run(command: &mut Command, args: &[&str]) -> Result<(), String> {
    let status = command.status().map_err(|e| {
        let program = command.get_program().to_string_lossy().into_owned();
        format!("cannot run {program}: {e}")
    })?;
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

/// How one pass of the test suite runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// The default backend (on Linux: io_uring where it can be used).
    Default,
    /// `GAIO_BACKEND=epoll`.
    Epoll,
    /// io_uring blocked by a seccomp filter: the default falls back.
    Blocked,
    /// Built with `--cfg gaio_force_poll`.
    ForcePoll,
}

fn test(extra: &[String]) -> Result<(), String> {
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let nextest = has_nextest();
    if !nextest {
        eprintln!("xtask: cargo-nextest not found; running tests one at a time");
    }
    // Every poller of this target, then gaio's suite on the portable
    // poll(2) one.
    let mut failed = Vec::new();
    let mut runs: Vec<(&[&str], Pass)> = vec![(&["--workspace"], Pass::Default)];
    if cfg!(target_os = "linux") {
        runs.push((&["-p", "gaio"], Pass::Epoll));
        runs.push((&["-p", "gaio"], Pass::Blocked));
    }
    runs.push((&["-p", "gaio"], Pass::ForcePoll));
    for (packages, pass) in runs {
        let mut args = if nextest {
            vec!["nextest", "run", "--no-fail-fast"]
        } else {
            vec!["test", "--all-targets", "--no-fail-fast"]
        };
        args.extend(packages);
        args.extend(&extra);
        if !nextest {
            args.extend(["--", "--test-threads=1"]);
        }
        let result = match pass {
            Pass::ForcePoll => cargo_force_poll(&args),
            Pass::Default => cargo_expecting(&args, default_backend(), &[]),
            Pass::Epoll => cargo_expecting(&args, "epoll", &[("GAIO_BACKEND", "epoll")]),
            Pass::Blocked => cargo_without_io_uring(&args),
        };
        if let Err(e) = result {
            failed.push(e);
        }
    }
    if let Err(e) = cargo(&["test", "--workspace", "--doc"]) {
        failed.push(e);
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join("; "))
    }
}

/// What a default watcher runs on here: io_uring where the probe finds a
/// usable ring, else the target's readiness backend.
fn default_backend() -> &'static str {
    #[cfg(target_os = "linux")]
    {
        if gaio_uring::probe().is_ok() {
            "uring"
        } else {
            "epoll"
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        // The same split as gaio-kqueue's build script: kqueue on the BSDs
        // and Apple's systems, epoll on Android, poll(2) elsewhere.
        let kqueue = cfg!(any(
            target_os = "freebsd",
            target_os = "dragonfly",
            target_os = "netbsd",
            target_os = "openbsd",
            target_vendor = "apple"
        ));
        if kqueue {
            "kqueue"
        } else if cfg!(target_os = "android") {
            "epoll"
        } else {
            "poll"
        }
    }
}

/// Runs `cargo` with `args` and `env`, telling gaio's `backend` test what a
/// default watcher must run on.
fn cargo_expecting(args: &[&str], backend: &str, env: &[(&str, &str)]) -> Result<(), String> {
    let shown: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
    eprintln!("xtask: {}cargo {}", shown.concat(), args.join(" "));
    let mut command = Command::new(env_cargo());
    command.args(args).env("GAIO_EXPECT_BACKEND", backend);
    for (k, v) in env {
        command.env(k, v);
    }
    run(&mut command, args)
}

/// The hidden subcommand that runs a command with io_uring blocked.
#[cfg(target_os = "linux")]
const WITHOUT_IO_URING: &str = "without-io-uring";

/// Runs `cargo` with `args` under a seccomp filter that answers
/// `io_uring_setup` with `EPERM`, as Docker's default profile does: the
/// default watcher must fall back to epoll, and every test pass.
#[cfg(not(target_os = "linux"))]
fn cargo_without_io_uring(_args: &[&str]) -> Result<(), String> {
    Err("io_uring exists on Linux only".into())
}

/// See the other `cargo_without_io_uring`.
#[cfg(target_os = "linux")]
fn cargo_without_io_uring(args: &[&str]) -> Result<(), String> {
    let me = std::env::current_exe().map_err(|e| format!("cannot find xtask itself: {e}"))?;
    eprintln!("xtask: (io_uring blocked by seccomp) cargo {}", args.join(" "));
    run(
        Command::new(me)
            .arg(WITHOUT_IO_URING)
            .arg(env_cargo())
            .args(args)
            .env("GAIO_EXPECT_BACKEND", "epoll"),
        args,
    )
}

/// `io_uring_setup`'s number: one table for every architecture since
/// Linux 5.1.
#[cfg(target_os = "linux")]
const SYS_IO_URING_SETUP: i64 = 425;

/// Installs the filter (`EPERM` for `io_uring_setup`, everything else
/// allowed; inherited by every child) and becomes `command`.
#[cfg(target_os = "linux")]
fn without_io_uring(command: &[String]) -> Result<(), String> {
    use std::os::unix::process::CommandExt;

    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
    let (program, args) = command
        .split_first()
        .ok_or("usage: xtask without-io-uring <command> [args]")?;
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| format!("{e:?}"))?;
    let rules = std::collections::BTreeMap::from([(SYS_IO_URING_SETUP, vec![])]);
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(1), arch)
        .map_err(|e| format!("seccomp filter: {e}"))?;
    let bpf: BpfProgram = filter.try_into().map_err(|e| format!("seccomp filter: {e:?}"))?;
    seccompiler::apply_filter(&bpf).map_err(|e| format!("installing the seccomp filter: {e}"))?;
    let e = Command::new(program).args(args).exec();
    Err(format!("cannot run {program}: {e}"))
}

/// Targets checked (not run) here: the kqueue systems.
const CROSS_TARGETS: [&str; 4] = [
    "x86_64-unknown-freebsd",
    "aarch64-apple-darwin",
    "x86_64-apple-darwin",
    "x86_64-unknown-netbsd",
];

fn cross() -> Result<(), String> {
    let status = Command::new("rustup")
        .args(["target", "add"])
        .args(CROSS_TARGETS)
        .status()
        .map_err(|e| format!("cannot run rustup: {e}"))?;
    if !status.success() {
        return Err("rustup target add failed".into());
    }
    for target in CROSS_TARGETS {
        // The benchmark's peers (tokio, mio) say nothing about gaio's
        // portability and would double the time: left out.
        let common = [
            "--workspace",
            "--exclude",
            "gaio-bench",
            "--all-targets",
            "--target",
            target,
        ];
        cargo(&[&["check"][..], &common].concat())?;
        cargo(&[&["clippy"][..], &common, &["--", "-D", "warnings"]].concat())?;
    }
    Ok(())
}

fn ci() -> Result<(), String> {
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    cross()?;
    test(&[])
}

fn demo(extra: &[String]) -> Result<(), String> {
    let mut args = vec!["run", "--release", "-p", "gaio", "--example", "demo", "--"];
    args.extend(extra.iter().map(String::as_str));
    cargo(&args)
}

/// `cargo xtask bench [--quick] [--scenarios ...]`: builds both benchmark
/// binaries in release mode, then runs the driver (`gaio-bench`'s
/// `bench`) with the arguments as given, which writes its report to
/// `target/bench/` (`$CARGO_TARGET_DIR/bench` when that is set). With `--clients`, the four
/// example servers it measures are built first (release mode, in
/// `target/release/examples/`), and the report goes to
/// `target/bench/clients/`.
fn bench(extra: &[String]) -> Result<(), String> {
    cargo(&["build", "--release", "-p", "gaio-bench", "--bins"])?;
    if extra.iter().any(|a| a == "--clients") {
        cargo(&[
            "build",
            "--release",
            "-p",
            "gaio",
            "--example",
            "http_server",
            "--example",
            "resp_server",
        ])?;
        cargo(&[
            "build",
            "--release",
            "-p",
            "gaio-twins",
            "--example",
            "tokio_http_server",
            "--example",
            "tokio_resp_server",
        ])?;
    }
    let mut args = vec!["run", "--release", "-p", "gaio-bench", "--bin", "bench", "--"];
    args.extend(extra.iter().map(String::as_str));
    cargo(&args)
}

/// `soak` and `abuse`: the `gaio-stress` binaries in release mode
/// (`cargo xtask soak --secs 30`, `cargo xtask abuse --secs 20`; `--help`
/// lists their options).
fn stress(bin: &str, extra: &[String]) -> Result<(), String> {
    let mut args = vec!["run", "--release", "-p", "gaio-stress", "--bin", bin, "--"];
    args.extend(extra.iter().map(String::as_str));
    cargo(&args)
}

// (Not an integration test that runs the binary: building that would
// replace target/debug/xtask while `cargo xtask test` runs it, and its
// seccomp pass re-executes it.)
#[cfg(test)]
mod tests {
    /// `cargo xtask help` names every command `main` takes.
    #[test]
    fn help_names_every_command() {
        let main = include_str!("main.rs");
        let dispatch = &main[main.find("let result = match").expect("main's dispatch")..];
        let dispatch = &dispatch[..dispatch.find("_ => {").expect("the fallback arm")];
        let mut commands = 0;
        for arm in dispatch.lines().filter_map(|l| l.trim().strip_prefix("Some(\"")) {
            let command = &arm[..arm.find('"').expect("a quoted command")];
            if command != "help" {
                commands += 1;
                assert!(super::USAGE.contains(command), "usage lacks {command}");
                assert!(
                    super::COMMANDS.contains(&format!("\n  {command} "))
                        || super::COMMANDS.starts_with(&format!("  {command} ")),
                    "help lacks {command}"
                );
            }
        }
        assert_eq!(commands, 7, "commands found: the dispatch changed?");
    }
}
