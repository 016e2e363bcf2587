//! Where and how the thread that turns the engine is scheduled: pinned to
//! one CPU, and under Linux's batch policy ([`prefer_batch`]).

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

/// Whether this platform has the batch scheduling policy.
pub(crate) const CAN_BATCH: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// Puts the calling thread under `SCHED_BATCH` if it runs under the normal
/// policy (`SCHED_OTHER`), keeping its nice value and its reset-on-fork
/// flag. A thread under any other policy (real-time, idle, batch already)
/// is left as it is: that was someone's choice. Returns whether the thread
/// now runs under the batch policy.
///
/// A batch thread that wakes does not preempt the thread running on its
/// CPU: it runs once that one blocks or uses up its time slice, and then
/// serves what arrived meanwhile in one turn. Its share of the CPU is
/// unchanged.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn prefer_batch() -> std::io::Result<bool> {
    // SAFETY: sched_getscheduler takes a thread id by value (0: the calling
    // thread) and reads or writes no memory of ours.
    let current = unsafe { libc::sched_getscheduler(0) };
    if current == -1 {
        return Err(std::io::Error::last_os_error());
    }
    let reset_on_fork = current & libc::SCHED_RESET_ON_FORK;
    match current & !libc::SCHED_RESET_ON_FORK {
        libc::SCHED_BATCH => return Ok(true),
        libc::SCHED_OTHER => {}
        _ => return Ok(false),
    }
    // The normal and batch policies take priority 0 (the nice value is
    // kept apart from it, and unchanged).
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is an initialised sched_param living across the
    // call, which only reads it; thread id 0 is the calling thread. Moving
    // from the normal policy to the batch one needs no privilege.
    let set = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH | reset_on_fork, &param) };
    if set == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(true)
}

/// The batch policy is Linux's; elsewhere threads keep their policy.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn prefer_batch() -> std::io::Result<bool> {
    Ok(false)
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::prefer_batch;

    /// The calling thread's policy, without the reset-on-fork flag.
    fn policy() -> i32 {
        // SAFETY: as in `prefer_batch`.
        let p = unsafe { libc::sched_getscheduler(0) };
        assert_ne!(p, -1, "{}", std::io::Error::last_os_error());
        p & !libc::SCHED_RESET_ON_FORK
    }

    #[test]
    fn a_normal_thread_moves_to_the_batch_policy_and_keeps_its_nice_value() {
        std::thread::spawn(|| {
            assert_eq!(policy(), libc::SCHED_OTHER);
            let nice = rustix::process::getpriority_process(None).unwrap();
            assert!(prefer_batch().unwrap());
            assert_eq!(policy(), libc::SCHED_BATCH);
            assert_eq!(rustix::process::getpriority_process(None).unwrap(), nice);
            // Asked again, it stays.
            assert!(prefer_batch().unwrap());
            assert_eq!(policy(), libc::SCHED_BATCH);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_thread_under_another_policy_keeps_it() {
        std::thread::spawn(|| {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: as in `prefer_batch`; lowering to the idle policy
            // needs no privilege.
            let set = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
            assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
            assert!(!prefer_batch().unwrap());
            assert_eq!(policy(), libc::SCHED_IDLE);
        })
        .join()
        .unwrap();
    }
}
