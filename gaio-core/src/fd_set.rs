//! [`FdSet`]: a set of descriptor numbers for pollers, which costs nothing
//! to ask while it is empty.

use std::collections::HashSet;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Descriptor numbers a poller marks for later: the readiness pollers keep
/// the sockets registered for reading only (datagram sockets, until a send
/// has to wait) in one. Shared between threads (`&self` everywhere); its
/// size is kept beside the lock, so on a set that is empty, which is the
/// common case, every call returns without taking the lock.
///
/// ```
/// use gaio_core::FdSet;
///
/// let read_only = FdSet::default();
/// assert!(!read_only.contains(7));
/// read_only.insert(7);
/// assert!(read_only.contains(7));
/// assert!(read_only.remove(7));
/// assert!(!read_only.remove(7));
/// ```
#[derive(Debug, Default)]
pub struct FdSet {
    fds: Mutex<HashSet<RawFd>>,
    len: AtomicUsize,
}

impl FdSet {
    /// Adds `fd`.
    pub fn insert(&self, fd: RawFd) {
        let mut fds = self.lock();
        fds.insert(fd);
        self.len.store(fds.len(), Ordering::Release);
    }

    /// Whether `fd` is in the set.
    pub fn contains(&self, fd: RawFd) -> bool {
        self.len.load(Ordering::Acquire) != 0 && self.lock().contains(&fd)
    }

    /// Takes `fd` out; returns whether it was in the set.
    pub fn remove(&self, fd: RawFd) -> bool {
        if self.len.load(Ordering::Acquire) == 0 {
            return false;
        }
        let mut fds = self.lock();
        let was = fds.remove(&fd);
        self.len.store(fds.len(), Ordering::Release);
        was
    }

    fn lock(&self) -> MutexGuard<'_, HashSet<RawFd>> {
        // The set is consistent at every unlock: a panic while it was held
        // left nothing half-done.
        self.fds.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::FdSet;

    #[test]
    fn the_size_follows_every_change() {
        let set = FdSet::default();
        assert!(!set.remove(3));
        set.insert(3);
        set.insert(3);
        set.insert(4);
        assert_eq!(set.len.load(std::sync::atomic::Ordering::Relaxed), 2);
        assert!(set.remove(3));
        assert!(!set.contains(3));
        assert!(set.contains(4));
        assert!(set.remove(4));
        assert_eq!(set.len.load(std::sync::atomic::Ordering::Relaxed), 0);
        assert!(!set.contains(4));
    }
}
