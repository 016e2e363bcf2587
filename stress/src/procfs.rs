//! Readings from `/proc`: open descriptors and memory of a process.

use std::io;

fn dir(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".into(),
    }
}

/// Number of open descriptors of process `pid` (`None`: this process; the
/// directory handle used to count is not included).
pub fn fd_count(pid: Option<u32>) -> io::Result<usize> {
    let n = std::fs::read_dir(format!("{}/fd", dir(pid)))?.count();
    Ok(if pid.is_none() { n.saturating_sub(1) } else { n })
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`, ...), in KiB.
pub fn status_kib(pid: Option<u32>, field: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("{}/status", dir(pid)))?;
    status
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix(field)?.strip_prefix(':')?;
            rest.trim().trim_end_matches("kB").trim().parse().ok()
        })
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{field} not in status")))
}

/// Resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: Option<u32>) -> io::Result<u64> {
    status_kib(pid, "VmRSS")
}

/// Peak resident memory of process `pid`, in KiB.
pub fn peak_rss_kib(pid: Option<u32>) -> io::Result<u64> {
    status_kib(pid, "VmHWM")
}
