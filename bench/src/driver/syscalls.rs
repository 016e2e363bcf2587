//! The server's system calls over a measured window, counted by the
//! kernel: `perf stat -e raw_syscalls:sys_enter -p PID` (a tracepoint,
//! so it needs no hardware counters, only permission to read
//! tracepoints). Unlike the callgrind cost scenario it runs at full speed
//! and counts io_uring servers too (valgrind cannot run a ring).

use std::process::{Child, Command, Stdio};

/// A `perf stat` attached to one process, counting its system calls.
#[derive(Debug)]
pub struct SyscallCount {
    perf: Child,
}

impl SyscallCount {
    /// Starts counting `pid`'s system calls; `None` if `perf` cannot be
    /// run here (not installed, or tracepoints not readable).
    pub fn start(pid: u32) -> Option<SyscallCount> {
        let perf = Command::new("perf")
            .args(["stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "-p"])
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

    /// Stops counting; the number of system calls, if perf reported one.
    pub fn finish(self) -> Option<u64> {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.perf.id()).ok()?)?;
        rustix::process::kill_process(pid, rustix::process::Signal::INT).ok()?;
        let out = self.perf.wait_with_output().ok()?;
        parse(&String::from_utf8_lossy(&out.stderr))
    }
}

/// The count in `perf stat -x,` output: the first field of the line that
/// names the event.
fn parse(text: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.contains("raw_syscalls:sys_enter"))
        .and_then(|l| l.split(',').next())
        .and_then(|n| n.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_count_is_read_from_perfs_csv_line() {
        let text = "# started on ...\n\n12345,,raw_syscalls:sys_enter,2001,100.00,,\n";
        assert_eq!(super::parse(text), Some(12345));
        assert_eq!(
            super::parse("<not counted>,,raw_syscalls:sys_enter,0,0.00,,\n"),
            None
        );
        assert_eq!(super::parse("nothing here"), None);
    }
}
