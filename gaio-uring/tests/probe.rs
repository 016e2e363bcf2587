//! What the probe says, here and where io_uring is blocked.
//!
//! * On this machine the answer follows from what the machine is: the
//!   `kernel.io_uring_disabled` sysctl and the kernel's release.
//! * Where a seccomp filter blocks `io_uring_setup` with `EPERM` (as
//!   Docker's default profile does) or `ENOSYS`, the probe says so. The
//!   filter is installed in a child process (this test binary run again),
//!   so this process keeps its io_uring.
#![cfg(target_os = "linux")]

use std::collections::BTreeMap;
use std::process::Command;

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

/// `io_uring_setup`'s number: one table for every architecture since
/// Linux 5.1 (system calls from 403 up are numbered alike).
const SYS_IO_URING_SETUP: i64 = 425;

/// Set in the child: the errno the filter answers `io_uring_setup` with.
const CHILD: &str = "GAIO_URING_PROBE_CHILD";

/// `(major, minor)` of the running kernel.
fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("kernel release");
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let mut next = || parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (next(), next())
}

#[test]
fn the_probe_agrees_with_this_machine() {
    let disabled: Option<u8> = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let version = kernel_version();
    let answer = gaio_uring::probe();
    match (disabled, answer) {
        (Some(2), Err(why)) => assert!(matches!(why, gaio_uring::Unavailable::Disabled(2)), "{why:?}"),
        (Some(2), Ok(s)) => panic!("io_uring_disabled = 2, yet the probe found a ring: {s}"),
        (_, Ok(support)) => {
            assert!(version >= (5, 19), "a buffer ring on Linux {version:?}");
            // Deferred task running came with 6.1, and the probe takes
            // the best flags the kernel has.
            assert_eq!(support.defer_taskrun, version >= (6, 1), "{support:?}");
            assert_eq!(support.single_issuer, support.defer_taskrun, "{support:?}");
            let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
            assert_eq!(support.kernel, release.trim());
            // The same answer every time.
            assert!(std::ptr::eq(support, gaio_uring::probe().unwrap()));
        }
        (_, Err(why)) if version >= (6, 1) && disabled == Some(0) => {
            // Only a filter or a security module can say no on such a
            // kernel.
            assert!(matches!(why, gaio_uring::Unavailable::NotPermitted), "{why:?}");
        }
        (_, Err(why)) => println!("io_uring is not available here, so only the reason is checked: {why}"),
    }
}

/// Installs a filter answering `io_uring_setup` with `errno`, then prints
/// the probe's answer.
fn child(errno: u32) {
    let arch = TargetArch::try_from(std::env::consts::ARCH).expect("an architecture seccompiler knows");
    let rules = BTreeMap::from([(SYS_IO_URING_SETUP, vec![])]);
    let filter =
        SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(errno), arch).expect("filter");
    let program: BpfProgram = filter.try_into().expect("compile the filter");
    seccompiler::apply_filter(&program).expect("install the filter");
    match gaio_uring::probe() {
        Ok(support) => println!("probe: Ok {support:?}"),
        Err(why) => println!("probe: Err {why:?} / {why}"),
    }
}

#[test]
fn a_blocked_io_uring_is_reported_as_blocked() {
    if let Ok(errno) = std::env::var(CHILD) {
        child(errno.parse().expect("an errno"));
        return;
    }
    let me = std::env::current_exe().expect("this test binary");
    for (errno, expect) in [(1, "Err NotPermitted"), (38, "Err NoSyscall")] {
        let out = Command::new(&me)
            .args([
                "--exact",
                "a_blocked_io_uring_is_reported_as_blocked",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, errno.to_string())
            .output()
            .expect("run the child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child for errno {errno}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The harness prints the test's name on the same line, before it.
        let answer = stdout
            .lines()
            .find_map(|l| l.find("probe: ").map(|at| &l[at..]))
            .unwrap_or_else(|| panic!("no answer from the child: {stdout}"));
        assert!(
            answer.starts_with(&format!("probe: {expect}")),
            "errno {errno}: {answer}"
        );
    }
}
