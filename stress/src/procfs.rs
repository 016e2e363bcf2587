//! Readings from `/proc`: open descriptors of a process. (Its memory is
//! read by `gaio_testkit::memory`.)

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
