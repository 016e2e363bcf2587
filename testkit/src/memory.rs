//! A process's resident memory, as Linux reports it in `/proc/PID/status`:
//! the resident set size now (`VmRSS`) and its peak so far (`VmHWM`, the
//! "high water mark"), or any other `kB` field of that file.
//!
//! A process is named by `Option<u32>`: `Some(pid)` for another process
//! (a server under test), `None` for this one (`/proc/self`).
//!
//! Only Linux (and Android) have this file. Elsewhere every reading fails
//! with [`io::ErrorKind::Unsupported`], so a tool that reports memory
//! where it can (`.ok()`, `unwrap_or(0)`) still builds and runs there.
//! [`parse_status_kib`], which reads the text, works everywhere.

use std::io;

/// The `kB` field `field` (`"VmRSS"`, `"VmHWM"`, ...) of
/// `/proc/PID/status`, in KiB.
///
/// # Errors
/// The status file cannot be read (no such process, or not Linux:
/// [`io::ErrorKind::Unsupported`]), or it has no such field
/// ([`io::ErrorKind::InvalidData`]).
pub fn status_kib(pid: Option<u32>, field: &str) -> io::Result<u64> {
    let status = read_status(pid)?;
    parse_status_kib(&status, field).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no {field} in {}", status_path(pid)),
        )
    })
}

/// Resident set size (`VmRSS`) of process `pid` (`None`: this process), in
/// KiB. See [`status_kib`] for the errors.
pub fn rss_kib(pid: Option<u32>) -> io::Result<u64> {
    status_kib(pid, "VmRSS")
}

/// Peak resident set size (`VmHWM`) of process `pid` (`None`: this
/// process), in KiB. See [`status_kib`] for the errors.
pub fn peak_rss_kib(pid: Option<u32>) -> io::Result<u64> {
    status_kib(pid, "VmHWM")
}

/// Resident set size (`VmRSS`) of process `pid` (`None`: this process), in
/// bytes (the kernel counts KiB, so this is a multiple of 1024).
pub fn rss_bytes(pid: Option<u32>) -> io::Result<u64> {
    rss_kib(pid).map(|kib| kib * 1024)
}

/// Peak resident set size (`VmHWM`) of process `pid` (`None`: this
/// process), in bytes (a multiple of 1024).
pub fn peak_rss_bytes(pid: Option<u32>) -> io::Result<u64> {
    peak_rss_kib(pid).map(|kib| kib * 1024)
}

/// The value of the `kB` field `field` in the text of a
/// `/proc/PID/status` file (lines such as `VmRSS:\t    2212 kB`), in
/// KiB; `None` if there is no such field or its value is not a number.
/// The field name must match whole: `"VmRSS"` does not match `VmRSSx:`.
pub fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        value.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// The status file of `pid` (`None`: this process).
fn status_path(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".into(),
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn read_status(pid: Option<u32>) -> io::Result<String> {
    let path = status_path(pid);
    std::fs::read_to_string(&path).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn read_status(pid: Option<u32>) -> io::Result<String> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "{}: process memory is read from /proc, which only Linux has",
            status_path(pid)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tcat\nVmPeak:\t    8032 kB\nVmHWM:\t    1100 kB\n\
                          VmRSS:\t    1024 kB\nVmRSSx:\t 7 kB\nThreads:\t1\n";

    #[test]
    fn fields_parse_by_whole_name() {
        assert_eq!(parse_status_kib(STATUS, "VmRSS"), Some(1024));
        assert_eq!(parse_status_kib(STATUS, "VmHWM"), Some(1100));
        assert_eq!(parse_status_kib(STATUS, "VmRSSx"), Some(7));
        assert_eq!(parse_status_kib(STATUS, "VmRS"), None);
        assert_eq!(parse_status_kib(STATUS, "VmSwap"), None);
        // Not a number.
        assert_eq!(parse_status_kib(STATUS, "Name"), None);
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn this_process_reads_the_same_by_pid_and_as_self() {
        let rss = rss_kib(None).unwrap();
        assert!(rss > 0);
        assert!(peak_rss_kib(None).unwrap() >= rss);
        assert_eq!(rss_bytes(None).unwrap() % 1024, 0);
        // The same process by its pid: the peak only grows, so a later
        // reading through /proc/self is at least as high.
        let by_pid = peak_rss_bytes(Some(std::process::id())).unwrap();
        assert!(by_pid >= rss * 1024);
        assert!(peak_rss_bytes(None).unwrap() >= by_pid);
        let missing = status_kib(None, "NoSuchField").unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::InvalidData);
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn a_process_that_does_not_exist_is_an_error() {
        // Above the largest pid Linux hands out (2^22).
        let err = rss_kib(Some(u32::MAX)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    #[test]
    fn elsewhere_readings_are_unsupported() {
        assert_eq!(rss_kib(None).unwrap_err().kind(), io::ErrorKind::Unsupported);
        assert_eq!(
            peak_rss_bytes(Some(1)).unwrap_err().kind(),
            io::ErrorKind::Unsupported
        );
    }
}
