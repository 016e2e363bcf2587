//! A portable poller for gaio on poll(2): the fallback for unixes with
//! neither epoll nor kqueue, and a second, independent implementation that
//! the conformance suite runs against on Linux so the engine cannot lean on
//! epoll's quirks.
//!
//! poll(2) is level-triggered; the engine expects edges. The poller
//! emulates them: each registered descriptor has an *armed* set of
//! directions. A direction is reported once and then disarmed; the engine
//! re-arms it (through [`Poller::rearm`]) when it finds the descriptor would
//! block. A ready descriptor that nobody reads therefore costs nothing, and
//! a hang-up, which poll(2) reports whether asked or not, is reported once
//! and then the descriptor is left out until re-armed.
//!
//! Every wait walks every armed descriptor (O(n) per wait): fine for a
//! fallback, not for a million connections.
#![cfg(unix)]
#![deny(missing_debug_implementations)]

use std::collections::hash_map::Entry as Slot;
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use gaio_core::{Event, Interest, Poller};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::fs::FileType;
use rustix::io::Errno;

/// Directions a descriptor is watched for.
#[derive(Debug, Clone, Copy, Default)]
struct Armed {
    read: bool,
    write: bool,
}

#[derive(Debug)]
struct Entry {
    token: u64,
    armed: Armed,
}

/// The registered descriptors, and whether a wait is polling them.
#[derive(Debug, Default)]
struct Registry {
    entries: HashMap<RawFd, Entry>,
    /// A wait is in poll(2), over the descriptors registered when it
    /// began: `deregister` must not return while it may still hold one.
    polling: bool,
    /// Polls begun, so that `deregister` waits for the poll it saw, not
    /// for a later one.
    polls: u64,
}

/// A poll(2) poller with a self-pipe for wake-ups.
///
/// System calls: [`pipe2(2)`](https://man7.org/linux/man-pages/man2/pipe.2.html)
/// when made, [`poll(2)`](https://pubs.opengroup.org/onlinepubs/9799919799/functions/poll.html)
/// to wait (over every registered descriptor, whose numbers it keeps:
/// see [`Poller::register`]'s safety contract), `fstat(2)` to refuse
/// regular files at registration, and a `write(2)` to the pipe to wake.
#[derive(Debug)]
#[doc(alias = "poll")]
pub struct PollPoller {
    registry: Mutex<Registry>,
    /// Signalled when a poll ends (`Registry::polling` cleared).
    poll_ended: Condvar,
    wake_rx: OwnedFd,
    wake_tx: OwnedFd,
    /// A wake-up byte is in the pipe and not yet drained: later wakes skip
    /// the write.
    wake_pending: AtomicBool,
}

/// The descriptors and interests of one wait, rebuilt each time.
#[derive(Debug, Default)]
pub struct PollSet {
    fds: Vec<(RawFd, PollFlags, u64)>,
    /// The array handed to poll(2), kept between waits for its capacity
    /// (a wait allocates nothing once it has grown). Empty outside `wait`:
    /// the descriptors it names are borrowed for one call only.
    pollfds: Vec<PollFd<'static>>,
}

impl PollPoller {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        // The map is consistent after every statement; a panic elsewhere
        // while holding the lock cannot break it.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the wake-ups written so far, then clears the flag. A `wake`
    /// between the two finds the flag set and writes nothing, which is
    /// right: it lands inside this wait, which is returning, and the
    /// engine takes in its commands after that. Clearing the flag first
    /// would be wrong: a `wake` then writes a byte this drain may take,
    /// leaving the flag set with the pipe empty, and every later `wake`
    /// would write nothing until the next drain.
    fn drain_wake(&self) {
        let mut buf = [0u8; 64];
        while let Ok(n) = rustix::io::read(&self.wake_rx, &mut buf) {
            if n < buf.len() {
                break;
            }
        }
        self.wake_pending.store(false, Ordering::Release);
    }
}

impl Poller for PollPoller {
    type Events = PollSet;

    /// A direction the engine re-arms is polled again and reported while
    /// ready: data a short read left behind is never missed.
    const LEVEL_TRIGGERED: bool = true;

    fn backend(&self) -> gaio_core::Backend {
        gaio_core::Backend::Poll
    }

    fn new() -> io::Result<Self> {
        let (wake_rx, wake_tx) = rustix::pipe::pipe()?;
        for fd in [&wake_rx, &wake_tx] {
            rustix::io::ioctl_fionbio(fd, true)?;
            rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
        }
        Ok(PollPoller {
            registry: Mutex::new(Registry::default()),
            poll_ended: Condvar::new(),
            wake_rx,
            wake_tx,
            wake_pending: AtomicBool::new(false),
        })
    }

    fn events(capacity: usize) -> Self::Events {
        PollSet {
            fds: Vec::with_capacity(capacity),
            pollfds: Vec::with_capacity(capacity + 1),
        }
    }

    /// Keeps `fd`'s number for later polls: the caller's promise that it
    /// stays open until deregistered ([`Poller::register`]'s contract) is
    /// what makes polling that number later sound.
    unsafe fn register(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        // poll(2) accepts anything, but regular files and directories are
        // always "ready" and never block: refuse them as epoll does, so
        // every backend behaves alike.
        let stat = rustix::fs::fstat(fd)?;
        if matches!(
            FileType::from_raw_mode(stat.st_mode),
            FileType::RegularFile | FileType::Directory
        ) {
            return Err(Errno::PERM.into());
        }
        let entry = Entry {
            token,
            armed: Armed {
                read: true,
                write: true,
            },
        };
        // An entry already there stays as it is (as epoll leaves an
        // existing registration alone on EEXIST): the engine relies on a
        // failed register changing nothing.
        match self.registry().entries.entry(fd.as_raw_fd()) {
            Slot::Occupied(_) => Err(Errno::EXIST.into()),
            Slot::Vacant(slot) => {
                slot.insert(entry);
                Ok(())
            }
        }
    }

    /// Forgets `fd`. If a wait is polling meanwhile (its poll(2) may hold
    /// the number: a deregistration from another thread, such as a
    /// hand-over refused by a watcher that has just closed), this wakes it
    /// and returns only once that poll has ended, so the caller may close
    /// the descriptor as soon as this returns.
    fn deregister(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let mut registry = self.registry();
        if registry.entries.remove(&fd.as_raw_fd()).is_none() {
            return Err(Errno::NOENT.into());
        }
        if registry.polling {
            let seen = registry.polls;
            let _ = self.wake();
            while registry.polling && registry.polls == seen {
                registry = self.poll_ended.wait(registry).unwrap_or_else(|p| p.into_inner());
            }
        }
        Ok(())
    }

    fn rearm(&self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()> {
        let mut registry = self.registry();
        match registry.entries.get_mut(&fd.as_raw_fd()) {
            Some(e) if e.token == token => {
                e.armed.read |= interest.is_read();
                e.armed.write |= interest.is_write();
                Ok(())
            }
            _ => Err(Errno::NOENT.into()),
        }
    }

    fn wait(
        &self,
        set: &mut Self::Events,
        out: &mut Vec<Event>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        set.fds.clear();
        let mut registry = self.registry();
        for (&fd, e) in registry.entries.iter() {
            let mut flags = PollFlags::empty();
            if e.armed.read {
                flags |= PollFlags::IN;
            }
            if e.armed.write {
                flags |= PollFlags::OUT;
            }
            if !flags.is_empty() {
                set.fds.push((fd, flags, e.token));
            }
        }
        registry.polling = true;
        registry.polls += 1;
        drop(registry);
        let result = self.poll_set(set, out, timeout);
        // The borrowed descriptors must not outlive this call.
        set.pollfds.clear();
        self.registry().polling = false;
        self.poll_ended.notify_all();
        result
    }

    fn wake(&self) -> io::Result<()> {
        if self.wake_pending.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        match rustix::io::write(&self.wake_tx, &[1]) {
            // EAGAIN: the pipe is full, so the poller is already due to wake.
            Ok(_) | Err(Errno::AGAIN) => Ok(()),
            Err(e) => {
                self.wake_pending.store(false, Ordering::Release);
                Err(e.into())
            }
        }
    }
}

impl PollPoller {
    /// One poll(2) over `set.fds` (and the wake-up pipe), its results
    /// turned into events.
    fn poll_set(&self, set: &mut PollSet, out: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        let pollfds = &mut set.pollfds;
        pollfds.clear();
        // SAFETY: the wake-up pipe is owned by `self`, which outlives this
        // call, and `wait` clears the array before it returns: the
        // descriptor is open for as long as it is borrowed.
        let wake = unsafe { BorrowedFd::borrow_raw(self.wake_rx.as_raw_fd()) };
        pollfds.push(PollFd::from_borrowed_fd(wake, PollFlags::IN));
        for &(fd, flags, _) in &set.fds {
            // SAFETY: `fd` was registered when this wait began, and its
            // owner keeps it open until `deregister` returns
            // (`Poller::register`'s contract). `deregister` returns only
            // once no wait is polling (`Registry::polling`, cleared after
            // `wait` has cleared this array), so the descriptor stays open
            // for as long as it is borrowed here.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            pollfds.push(PollFd::from_borrowed_fd(fd, flags));
        }
        let timeout = timeout.map(|t| Timespec {
            tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(t.subsec_nanos()),
        });
        match poll(pollfds, timeout.as_ref()) {
            Ok(_) => {}
            Err(Errno::INTR) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        if !pollfds[0].revents().is_empty() {
            self.drain_wake();
        }
        let mut registry = self.registry();
        for (pfd, &(fd, _, token)) in pollfds[1..].iter().zip(&set.fds) {
            let r = pfd.revents();
            if r.is_empty() {
                continue;
            }
            let hangup = r.intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL);
            // Level-triggered: data left behind a short read is reported
            // again once the engine re-arms, urgent or not (`urgent` stays
            // false).
            let mut ev = Event::new(token);
            ev.readable = r.contains(PollFlags::IN);
            ev.writable = r.contains(PollFlags::OUT);
            ev.hangup = hangup;
            if let Some(e) = registry.entries.get_mut(&fd).filter(|e| e.token == token) {
                // Report once, then wait for the engine to re-arm.
                if ev.readable || hangup {
                    e.armed.read = false;
                }
                if ev.writable || hangup {
                    e.armed.write = false;
                }
            }
            out.push(ev);
        }
        Ok(())
    }
}

impl AsFd for PollPoller {
    /// The read end of the wake-up pipe.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.wake_rx.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::time::Duration;

    use gaio_core::{Event, Poller};
    use rustix::io::Errno;

    use super::PollPoller;

    /// `deregister` from another thread while a wait polls: it returns only
    /// after that poll has ended (the caller may close the descriptor
    /// then), and the poll ends at once rather than at its timeout.
    #[test]
    fn deregistering_during_a_poll_returns_once_the_poll_has_ended() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        use std::time::Instant;

        let poller = Arc::new(PollPoller::new().unwrap());
        let (rx, _tx) = rustix::pipe::pipe().unwrap();
        // SAFETY: `rx` stays open until after it is deregistered below.
        unsafe { poller.register(rx.as_fd(), 1) }.unwrap();
        let waiting = Arc::new(AtomicBool::new(true));
        let waiter = {
            let (poller, waiting) = (Arc::clone(&poller), Arc::clone(&waiting));
            std::thread::spawn(move || {
                let mut set = PollPoller::events(8);
                let mut events = Vec::new();
                let started = Instant::now();
                // Nothing is ready on an empty pipe's read end: only a
                // wake-up ends this poll before 10 s.
                poller
                    .wait(&mut set, &mut events, Some(Duration::from_secs(10)))
                    .unwrap();
                waiting.store(false, Ordering::SeqCst);
                (started.elapsed(), events)
            })
        };
        // Until the waiter is in poll(2) (bounded: 5 s).
        let deadline = Instant::now() + Duration::from_secs(5);
        while !poller.registry().polling {
            assert!(Instant::now() < deadline, "the waiter never polled");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        poller.deregister(rx.as_fd()).unwrap();
        assert!(
            !poller.registry().polling,
            "deregister returned while the poll could still hold the descriptor"
        );
        drop(rx);
        let (took, events) = waiter.join().unwrap();
        assert!(!waiting.load(Ordering::SeqCst));
        assert!(
            took < Duration::from_secs(5),
            "the poll ran to its timeout: {took:?}"
        );
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn registering_a_registered_descriptor_fails_and_changes_nothing() {
        let poller = PollPoller::new().unwrap();
        let (rx, tx) = rustix::pipe::pipe().unwrap();
        // SAFETY: `rx` stays open until after it is deregistered below.
        unsafe { poller.register(rx.as_fd(), 1) }.unwrap();
        // SAFETY: as above.
        let again = unsafe { poller.register(rx.as_fd(), 2) }.unwrap_err();
        assert_eq!(again.raw_os_error(), Some(Errno::EXIST.raw_os_error()));
        rustix::io::write(&tx, b"x").unwrap();
        let mut set = PollPoller::events(8);
        let mut events = Vec::new();
        poller
            .wait(&mut set, &mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(
            events,
            vec![{
                let mut ev = Event::new(1);
                ev.readable = true;
                ev
            }],
            "the first registration must be intact"
        );
        // And deregistering removes it: nothing more is reported.
        poller.deregister(rx.as_fd()).unwrap();
        events.clear();
        poller
            .wait(&mut set, &mut events, Some(Duration::from_millis(10)))
            .unwrap();
        assert!(events.is_empty(), "{events:?}");
    }
}
