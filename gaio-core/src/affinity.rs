//! Pinning the thread that turns the engine to one CPU.

use crate::Error;

/// Pins thread `tid` (`None`: the calling thread) to `cpu`.
///
/// Refuses a CPU number the process may not run on (it does not exist, or
/// is outside the process's affinity mask) with [`Error::InvalidCpu`].
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn pin(tid: Option<i32>, cpu: usize) -> Result<(), Error> {
    use rustix::io::Errno;
    use rustix::thread::{sched_setaffinity, CpuSet};
    // The calling thread's own mask says nothing about what the process may
    // use (it may be pinned already), so let the kernel judge: it refuses a
    // CPU that is offline or outside the process's cpuset with EINVAL.
    if cpu >= CpuSet::MAX_CPU {
        return Err(Error::InvalidCpu { cpu });
    }
    let mut set = CpuSet::new();
    set.set(cpu);
    let pid = tid.and_then(rustix::thread::Pid::from_raw);
    match sched_setaffinity(pid, &set) {
        Ok(()) => Ok(()),
        Err(Errno::INVAL) => Err(Error::InvalidCpu { cpu }),
        Err(e) => Err(crate::error::errno(e)),
    }
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

/// The CPUs this process may run on, in increasing order (its affinity
/// mask; every CPU `available_parallelism` counts where there is none).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn usable_cpus() -> Vec<usize> {
    use rustix::thread::{sched_getaffinity, CpuSet};
    match sched_getaffinity(None) {
        Ok(set) => (0..CpuSet::MAX_CPU).filter(|&cpu| set.is_set(cpu)).collect(),
        Err(_) => (0..parallelism()).collect(),
    }
}

/// The CPUs this process may run on: as many as `available_parallelism`.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn usable_cpus() -> Vec<usize> {
    (0..parallelism()).collect()
}

/// What std says the process may use, at least 1.
fn parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// Whether this platform pins threads to CPUs.
pub(crate) const CAN_PIN: bool = cfg!(any(target_os = "linux", target_os = "android"));
