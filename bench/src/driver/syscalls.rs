//! The server's system calls and socket receives over a measured window,
//! counted by the kernel: `perf stat -e raw_syscalls:sys_enter -e
//! sock:sock_recv_length -p PID` (tracepoints, so no hardware counters
//! are needed, only permission to read tracepoints). Unlike the callgrind
//! cost scenario it runs at full speed and counts io_uring servers too
//! (valgrind cannot run a ring). A receive is counted whether a system
//! call or the ring made it, and whether it found bytes or not, so the
//! second count shows attempts that found the socket empty.

use std::process::{Child, Command, Stdio};

/// The system-call tracepoint.
const SYSCALLS: &str = "raw_syscalls:sys_enter";
/// The tracepoint of every socket receive (`sock_recvmsg`), by system
/// call or by the ring.
const RECEIVES: &str = "sock:sock_recv_length";

/// What was counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// System calls.
    pub syscalls: u64,
    /// Socket receives, if the kernel has the tracepoint (Linux 6.3).
    pub receives: Option<u64>,
}

/// A `perf stat` attached to one process, counting its system calls.
#[derive(Debug)]
pub struct SyscallCount {
    perf: Child,
}

impl SyscallCount {
    /// Starts counting `pid`'s system calls (and receives, where the
    /// kernel has that tracepoint); `None` if `perf` cannot be run here
    /// (not installed, or tracepoints not readable).
    pub fn start(pid: u32) -> Option<SyscallCount> {
        let receives = std::path::Path::new("/sys/kernel/tracing/events/sock/sock_recv_length").exists()
            || std::path::Path::new("/sys/kernel/debug/tracing/events/sock/sock_recv_length").exists();
        let mut perf = Command::new("perf");
        perf.args(["stat", "-x", ",", "-e", SYSCALLS]);
        if receives {
            perf.args(["-e", RECEIVES]);
        }
        let perf = perf
            .arg("-p")
            .arg(pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        // perf attaches within milliseconds; give it that before the
        // window opens.
        std::thread::sleep(std::time::Duration::from_millis(100));
        Some(SyscallCount { perf })
    }

    /// Stops counting; the counts, if perf reported the system calls.
    pub fn finish(self) -> Option<Counts> {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.perf.id()).ok()?)?;
        rustix::process::kill_process(pid, rustix::process::Signal::INT).ok()?;
        let out = self.perf.wait_with_output().ok()?;
        parse(&String::from_utf8_lossy(&out.stderr))
    }
}

/// The counts in `perf stat -x,` output.
fn parse(text: &str) -> Option<Counts> {
    Some(Counts {
        syscalls: count(text, SYSCALLS)?,
        receives: count(text, RECEIVES),
    })
}

/// The first field of the line that names `event`.
fn count(text: &str, event: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.contains(event))
        .and_then(|l| l.split(',').next())
        .and_then(|n| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_count_is_read_from_perfs_csv_line() {
        let text = "# started on ...\n\n12345,,raw_syscalls:sys_enter,2001,100.00,,\n";
        let counts = |syscalls, receives| Some(super::Counts { syscalls, receives });
        assert_eq!(super::parse(text), counts(12345, None));
        let both = format!("{text}678,,sock:sock_recv_length,2001,100.00,,\n");
        assert_eq!(super::parse(&both), counts(12345, Some(678)));
        assert_eq!(
            super::parse("<not counted>,,raw_syscalls:sys_enter,0,0.00,,\n"),
            None
        );
        assert_eq!(super::parse("nothing here"), None);
    }
}
