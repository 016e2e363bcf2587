//! Pinning the thread that turns the engine to one CPU.

use crate::Error;

/// Pins thread `tid` (`None`: the calling thread) to `cpu`.
///
/// Refuses a CPU number the process may not run on (it does not exist, or
/// is outside the process's affinity mask) with [`Error::InvalidCpu`].
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn pin(tid: Option<i32>, cpu: usize) -> Result<(), Error> {
    use rustix::thread::{sched_getaffinity, sched_setaffinity, CpuSet};
    let allowed = sched_getaffinity(None)?;
    if cpu >= CpuSet::MAX_CPU || !allowed.is_set(cpu) {
        return Err(Error::InvalidCpu { cpu });
    }
    let mut set = CpuSet::new();
    set.set(cpu);
    let pid = tid.and_then(rustix::thread::Pid::from_raw);
    sched_setaffinity(pid, &set)?;
    Ok(())
}

/// Thread affinity is not available on this platform.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn pin(_tid: Option<i32>, cpu: usize) -> Result<(), Error> {
    let _ = cpu;
    Err(Error::Io(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "thread CPU affinity is not supported on this platform",
    )))
}

/// The calling thread's id, for pinning it later from another thread.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn current_tid() -> i32 {
    rustix::thread::gettid().as_raw_nonzero().get()
}

/// The calling thread's id (unused where affinity is unsupported).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn current_tid() -> i32 {
    0
}
