//! The Linux poller for gaio: epoll, edge-triggered, woken by an eventfd.
//!
//! Each connection is registered once for `EPOLLIN | EPOLLOUT | EPOLLRDHUP`
//! with `EPOLLET`; the engine tracks readiness itself, so nothing is ever
//! re-armed. A descriptor registered for reading only (a datagram socket,
//! see `Poller::register_for`) gains `EPOLLOUT` the first time a write on
//! it has to wait. `EPOLLRDHUP`, `EPOLLHUP` and `EPOLLERR` are reported as a
//! hang-up, which makes the engine try both directions and learn the actual
//! error (or end of stream) from the system call.
//!
//! Wake-ups write to an eventfd registered under a reserved token; the
//! waiting thread resets the counter when it sees that token, so a wake-up
//! that happens before the wait is never lost (the counter stays non-zero).
#![cfg(any(target_os = "linux", target_os = "android"))]
#![deny(missing_debug_implementations)]

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use gaio_core::{Event, FdSet, Interest, Poller};
use rustix::event::{epoll, eventfd, EventfdFlags, Timespec};
use rustix::io::Errno;

/// The token of the wake-up eventfd. Connection tokens are
/// `generation << 32 | fd` with `fd < 2^31`, so they never equal it.
const WAKE_TOKEN: u64 = u64::MAX;

/// The raw buffer `epoll_wait` fills.
pub struct EventBuf(Vec<epoll::Event>);

// SAFETY: an `epoll::Event` is plain data: flags and a 64-bit `EventData`
// union that may hold a pointer. This crate only ever registers `u64`
// tokens (never pointers), so the buffer holds no pointer and moving it to
// another thread shares nothing.
unsafe impl Send for EventBuf {}

impl std::fmt::Debug for EventBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EventBuf(capacity {})", self.0.capacity())
    }
}

/// An edge-triggered epoll instance with an eventfd for wake-ups.
///
/// System calls: [`epoll_create1(2)`](https://man7.org/linux/man-pages/man2/epoll_create1.2.html)
/// and [`eventfd(2)`](https://man7.org/linux/man-pages/man2/eventfd.2.html)
/// when made, [`epoll_ctl(2)`](https://man7.org/linux/man-pages/man2/epoll_ctl.2.html)
/// to register (`EPOLL_CTL_ADD`, `_MOD`, `_DEL`),
/// [`epoll_wait(2)`](https://man7.org/linux/man-pages/man2/epoll_wait.2.html)
/// to wait, and a `write(2)` to the eventfd to wake; see
/// [`epoll(7)`](https://man7.org/linux/man-pages/man7/epoll.7.html) for
/// edge-triggered semantics.
#[derive(Debug)]
#[doc(alias = "epoll")]
#[doc(alias = "epoll_wait")]
pub struct EpollPoller {
    epoll: OwnedFd,
    wake: OwnedFd,
    /// Descriptors registered for reading only (a write that has to wait
    /// on a poller with none takes no lock).
    read_only: FdSet,
}

impl Poller for EpollPoller {
    type Events = EventBuf;

    /// Every connection is registered for `EPOLLPRI`, and epoll computes an
    /// event's flags from the socket's state when the event is taken
    /// (`tcp_poll` reports `EPOLLPRI` while urgent data is pending). Urgent
    /// data arriving after an event was taken makes a new event. So the
    /// last event taken before a read that stopped at an urgent mark says
    /// `urgent`.
    const REPORTS_URGENT: bool = true;

    fn backend(&self) -> gaio_core::Backend {
        gaio_core::Backend::Epoll
    }

    fn new() -> io::Result<Self> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(
            &epoll,
            &wake,
            epoll::EventData::new_u64(WAKE_TOKEN),
            epoll::EventFlags::IN | epoll::EventFlags::ET,
        )?;
        Ok(EpollPoller {
            epoll,
            wake,
            read_only: FdSet::default(),
        })
    }

    fn events(capacity: usize) -> Self::Events {
        EventBuf(Vec::with_capacity(capacity))
    }

    #[doc(alias = "epoll_ctl")]
    #[doc(alias = "EPOLL_CTL_ADD")]
    unsafe fn register(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        epoll::add(&self.epoll, fd, epoll::EventData::new_u64(token), interest())?;
        // Watched for writing: no read-only mark may linger from an earlier
        // descriptor of this number (no lock while none is read-only).
        self.read_only.remove(fd.as_raw_fd());
        Ok(())
    }

    /// For reading only: `EPOLLOUT` is left out until [`rearm`] asks for
    /// writing.
    ///
    /// [`rearm`]: Poller::rearm
    unsafe fn register_for(&self, fd: BorrowedFd<'_>, token: u64, wanted: Interest) -> io::Result<()> {
        if wanted.is_write() {
            // SAFETY: the caller promises what `register` asks.
            return unsafe { self.register(fd, token) };
        }
        epoll::add(&self.epoll, fd, epoll::EventData::new_u64(token), reading())?;
        self.read_only.insert(fd.as_raw_fd());
        Ok(())
    }

    fn deregister(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        // Forgotten even if the delete fails (a descriptor closed behind
        // the watcher's back): the mark must not pass to the next
        // descriptor of that number.
        self.read_only.remove(fd.as_raw_fd());
        epoll::delete(&self.epoll, fd)?;
        Ok(())
    }

    /// `EPOLL_CTL_MOD` with the same interest: epoll re-evaluates the
    /// descriptor and queues an event if it is ready now (one system call).
    #[doc(alias = "EPOLL_CTL_MOD")]
    unsafe fn reregister(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let flags = if self.read_only.contains(fd.as_raw_fd()) {
            reading()
        } else {
            interest()
        };
        epoll::modify(&self.epoll, fd, epoll::EventData::new_u64(token), flags)?;
        Ok(())
    }

    /// Adds `EPOLLOUT` to a descriptor registered for reading only, once
    /// a write on it has to wait: the `EPOLL_CTL_MOD` queues an event at
    /// once if it became writable meanwhile, so no edge is missed.
    fn rearm(&self, fd: BorrowedFd<'_>, token: u64, wanted: Interest) -> io::Result<()> {
        // (`forget_read_only` takes no lock while none is read-only.)
        if !wanted.is_write() || !self.read_only.remove(fd.as_raw_fd()) {
            return Ok(());
        }
        epoll::modify(&self.epoll, fd, epoll::EventData::new_u64(token), interest())?;
        Ok(())
    }

    fn wait(
        &self,
        raw: &mut Self::Events,
        out: &mut Vec<Event>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        use epoll::EventFlags as F;
        let raw = &mut raw.0;
        raw.clear();
        let timeout = timeout.map(|t| Timespec {
            tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(t.subsec_nanos()),
        });
        match epoll::wait(&self.epoll, rustix::buffer::spare_capacity(raw), timeout.as_ref()) {
            Ok(_) => {}
            // A signal interrupted the wait: report nothing, the engine
            // simply turns again.
            Err(Errno::INTR) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        for ev in raw.iter() {
            let token = ev.data.u64();
            let flags = ev.flags;
            if token == WAKE_TOKEN {
                self.reset_wake();
                continue;
            }
            let mut event = Event::new(token);
            event.readable = flags.intersects(F::IN | F::PRI);
            event.writable = flags.contains(F::OUT);
            event.hangup = flags.intersects(F::RDHUP | F::HUP | F::ERR);
            event.urgent = flags.contains(F::PRI);
            out.push(event);
        }
        Ok(())
    }

    fn wake(&self) -> io::Result<()> {
        match rustix::io::write(&self.wake, &1u64.to_ne_bytes()) {
            // EAGAIN: the counter is saturated, so a wake-up is pending
            // anyway.
            Ok(_) | Err(Errno::AGAIN) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// What every connection is registered for: both directions, urgent data
/// and the peer's half-close, edge-triggered.
fn interest() -> epoll::EventFlags {
    use epoll::EventFlags as F;
    F::IN | F::PRI | F::OUT | F::RDHUP | F::ET
}

/// What a descriptor registered for reading only is registered for:
/// [`interest`] without `EPOLLOUT`.
fn reading() -> epoll::EventFlags {
    interest() - epoll::EventFlags::OUT
}

impl EpollPoller {
    /// Resets the eventfd counter so the next wake-up makes a new edge.
    fn reset_wake(&self) {
        let mut buf = [0u8; 8];
        // EAGAIN means it was already reset; nothing else can fail on a
        // valid eventfd with an 8-byte buffer.
        let _ = rustix::io::read(self.wake.as_fd(), &mut buf);
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::{AsFd, AsRawFd};

    use super::*;

    /// A descriptor registered for reading only whose epoll entry is gone
    /// (closed behind the poller's back: the kernel drops it by itself, and
    /// `EPOLL_CTL_DEL` then fails) keeps no read-only mark, neither after
    /// the failed `deregister` nor once its number is registered again for
    /// both directions: the mark would keep `EPOLLOUT` from the next socket
    /// of that number at its re-registration.
    #[test]
    fn a_read_only_mark_goes_with_its_descriptor() {
        let poller = EpollPoller::new().unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let number = udp.as_raw_fd();
        // SAFETY: `udp` outlives its registrations (dropped at the end).
        unsafe { poller.register_for(udp.as_fd(), 1, Interest::READ) }.unwrap();
        assert!(poller.read_only.contains(number));
        epoll::delete(&poller.epoll, udp.as_fd()).unwrap();
        let err = poller
            .deregister(udp.as_fd())
            .expect_err("no longer in the epoll set");
        assert_eq!(err.raw_os_error(), Some(Errno::NOENT.raw_os_error()), "{err}");
        assert!(
            !poller.read_only.contains(number),
            "the mark outlived a failed deregister"
        );

        // SAFETY: as above.
        unsafe { poller.register_for(udp.as_fd(), 1, Interest::READ) }.unwrap();
        epoll::delete(&poller.epoll, udp.as_fd()).unwrap();
        // SAFETY: as above.
        unsafe { poller.register(udp.as_fd(), 2) }.unwrap();
        assert!(
            !poller.read_only.contains(number),
            "registered for both, yet marked read-only"
        );
        poller.deregister(udp.as_fd()).unwrap();
    }
}
