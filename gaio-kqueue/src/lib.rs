//! The kqueue poller for gaio: FreeBSD, macOS (and the other Apple
//! systems), NetBSD, OpenBSD and DragonFly.
//!
//! Each connection gets an `EVFILT_READ` and an `EVFILT_WRITE` filter with
//! `EV_CLEAR`, kqueue's edge-triggered mode: a filter reports again only
//! after its state changed. The engine tracks readiness itself, so nothing
//! is re-armed. A descriptor registered for reading only (a datagram
//! socket, see `Poller::register_for`) gets `EVFILT_READ` alone, and its
//! `EVFILT_WRITE` the first time a write on it has to wait: an
//! `EVFILT_WRITE` under `EV_CLEAR` would otherwise wake the watcher once
//! for every datagram sent, since each one frees send-buffer room again.
//!
//! Pitfalls handled here and in the engine:
//! * `EV_EOF` (peer closed, or the socket failed) is reported as a hang-up,
//!   which makes the engine try *both* directions, because under `EV_CLEAR`
//!   the other filter may never fire again. An `EV_ERROR` entry in the event
//!   list (a failed change) is handled the same way.
//! * ENOBUFS from a send under `EV_CLEAR` brings no new edge when buffers
//!   free up; the engine retries such a connection after a short timeout
//!   instead of waiting for an edge (see `IoOutcome::Starved` in
//!   gaio-core).
//! * Wake-ups use `EVFILT_USER` with `NOTE_TRIGGER` where the system has it
//!   (Apple, FreeBSD, DragonFly), else a non-blocking self-pipe. A trigger
//!   submission interrupted by a signal (EINTR) is retried: the trigger is
//!   idempotent, so retrying can never lose or double a wake-up.
//! * SIGPIPE: Apple has no `MSG_NOSIGNAL`; gaio-core sets `SO_NOSIGPIPE` on
//!   each stream socket at hand-over there instead.
// Set by build.rs on the kqueue targets (the one list of them).
#![cfg(gaio_kqueue)]
#![deny(missing_debug_implementations)]

#[cfg(not(target_pointer_width = "64"))]
compile_error!("gaio-kqueue stores 64-bit tokens in kevent udata and needs a 64-bit target");

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use gaio_core::{Event, FdSet, Interest, Poller};
use rustix::event::kqueue::{self, EventFilter, EventFlags};
use rustix::io::Errno;

/// The token of the wake-up source. Connection tokens are
/// `generation << 32 | fd` with `fd < 2^31`, so they never equal it.
const WAKE_TOKEN: u64 = u64::MAX;

/// The raw buffer `kevent` fills.
pub struct EventBuf(Vec<kqueue::Event>);

// SAFETY: a kevent is plain data. Its `udata` field has pointer type, but
// this crate only ever stores integer tokens there, never a pointer, so
// moving the buffer to another thread shares nothing.
unsafe impl Send for EventBuf {}

impl std::fmt::Debug for EventBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EventBuf(capacity {})", self.0.capacity())
    }
}

/// How a sleeping `kevent` is woken.
#[derive(Debug)]
enum Waker {
    /// `EVFILT_USER`, triggered with `NOTE_TRIGGER`.
    #[cfg(any(target_vendor = "apple", target_os = "freebsd", target_os = "dragonfly"))]
    User,
    /// A self-pipe whose read end is watched with `EVFILT_READ`.
    #[cfg(any(target_os = "netbsd", target_os = "openbsd"))]
    Pipe { rx: OwnedFd, tx: OwnedFd },
}

/// A kqueue instance with an edge-triggered filter pair per connection
/// (a descriptor registered for reading only gets its write filter once a
/// write on it has to wait).
///
/// System calls: [`kqueue(2)`](https://man.freebsd.org/cgi/man.cgi?query=kqueue&sektion=2)
/// when made, and [`kevent(2)`](https://man.freebsd.org/cgi/man.cgi?query=kevent&sektion=2)
/// to register (`EV_ADD | EV_CLEAR | EV_RECEIPT` for `EVFILT_READ` and
/// `EVFILT_WRITE`; `EV_ADD | EV_CLEAR` for `EVFILT_READ` alone when
/// registered for reading, and for `EVFILT_WRITE` when such a descriptor
/// is re-armed for writing), deregister (`EV_DELETE`), wait, and wake
/// (`EVFILT_USER` with `NOTE_TRIGGER`, or a self-pipe on NetBSD and
/// OpenBSD).
#[derive(Debug)]
#[doc(alias = "kqueue")]
#[doc(alias = "kevent")]
pub struct KqueuePoller {
    kq: OwnedFd,
    waker: Waker,
    /// The descriptors registered for reading only, which have no
    /// `EVFILT_WRITE` filter yet.
    read_only: FdSet,
}

fn token_ptr(token: u64) -> *mut std::ffi::c_void {
    token as usize as *mut std::ffi::c_void
}

impl KqueuePoller {
    /// Applies `changes` without collecting events, retrying on EINTR.
    fn apply(&self, changes: &[kqueue::Event]) -> io::Result<()> {
        let mut none: [kqueue::Event; 0] = [];
        loop {
            // SAFETY: every descriptor named in `changes` is open for this
            // call (the caller borrows it), and kqueue removes a
            // descriptor's filters when it is closed, so no filter ever
            // refers to a closed descriptor.
            match unsafe { kqueue::kevent(&self.kq, changes, &mut none[..], Some(Duration::ZERO)) } {
                Ok(_) => return Ok(()),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn wake_filter(&self) -> kqueue::Event {
        match &self.waker {
            #[cfg(any(target_vendor = "apple", target_os = "freebsd", target_os = "dragonfly"))]
            Waker::User => kqueue::Event::new(
                EventFilter::User {
                    ident: 0,
                    flags: kqueue::UserFlags::empty(),
                    user_flags: kqueue::UserDefinedFlags::new(0),
                },
                EventFlags::ADD | EventFlags::CLEAR,
                token_ptr(WAKE_TOKEN),
            ),
            #[cfg(any(target_os = "netbsd", target_os = "openbsd"))]
            Waker::Pipe { rx, .. } => kqueue::Event::new(
                EventFilter::Read(rx.as_raw_fd()),
                EventFlags::ADD | EventFlags::CLEAR,
                token_ptr(WAKE_TOKEN),
            ),
        }
    }

    fn new_waker() -> io::Result<Waker> {
        #[cfg(any(target_vendor = "apple", target_os = "freebsd", target_os = "dragonfly"))]
        {
            Ok(Waker::User)
        }
        #[cfg(any(target_os = "netbsd", target_os = "openbsd"))]
        {
            let (rx, tx) = rustix::pipe::pipe()?;
            for fd in [&rx, &tx] {
                rustix::io::ioctl_fionbio(fd, true)?;
                rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?;
            }
            Ok(Waker::Pipe { rx, tx })
        }
    }

    /// Empties the wake-up pipe so the next wake makes a new edge.
    fn reset_wake(&self) {
        #[cfg(any(target_os = "netbsd", target_os = "openbsd"))]
        {
            let Waker::Pipe { rx, .. } = &self.waker;
            let mut buf = [0u8; 64];
            while let Ok(n) = rustix::io::read(rx, &mut buf) {
                if n < buf.len() {
                    break;
                }
            }
        }
    }
}

impl Poller for KqueuePoller {
    type Events = EventBuf;

    /// False: on kqueue only a read that would block proves a socket
    /// drained, and a short read costs one more `recv` (it says EAGAIN).
    ///
    /// BSD's `soreceive` stops a read at the out-of-band mark
    /// (`so_oobmark`) with data still queued behind it, and `EV_CLEAR`
    /// brings no new `EVFILT_READ` event for data that was already there.
    /// Taking such a short read for "drained" would leave the rest unread
    /// until the peer sends more, as on Linux. Linux announces urgent data
    /// in every event taken while it is pending (`EPOLLPRI`). kqueue has no
    /// such report that every target shares: macOS, DragonFly and OpenBSD
    /// (since 2020) have a separate `EVFILT_EXCEPT` filter with
    /// `NOTE_OOB`, FreeBSD and NetBSD have no out-of-band notification at
    /// all, and none of them can be tested here. Until they can,
    /// correctness wins over the saved system call.
    const REPORTS_URGENT: bool = false;

    fn backend(&self) -> gaio_core::Backend {
        gaio_core::Backend::Kqueue
    }

    fn new() -> io::Result<Self> {
        let kq = kqueue::kqueue()?;
        rustix::io::fcntl_setfd(&kq, rustix::io::FdFlags::CLOEXEC)?;
        let poller = KqueuePoller {
            kq,
            waker: Self::new_waker()?,
            read_only: FdSet::default(),
        };
        poller.apply(&[poller.wake_filter()])?;
        Ok(poller)
    }

    fn events(capacity: usize) -> Self::Events {
        EventBuf(Vec::with_capacity(capacity))
    }

    /// Adds both filters in one `kevent` with `EV_RECEIPT`, which returns
    /// one receipt per change instead of stopping at the first failure, so
    /// each filter's outcome is known:
    /// * the read filter must be added: without it no data would ever be
    ///   reported;
    /// * the write filter may fail with EPIPE: FreeBSD refuses
    ///   `EVFILT_WRITE` on a pipe whose reader has gone, although data and
    ///   end of stream are still there to read. The descriptor is watched
    ///   for reading alone; a write on it is tried (the engine starts a
    ///   connection writable) and fails with EPIPE, as it must.
    ///
    /// A failure removes whichever filter was added, so a refused
    /// descriptor leaves nothing behind. A descriptor watched in both
    /// directions is not read-only: a mark left by an earlier descriptor
    /// of the same number goes.
    #[doc(alias = "kevent")]
    #[doc(alias = "EV_ADD")]
    unsafe fn register(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let raw = fd.as_raw_fd();
        let flags = EventFlags::ADD | EventFlags::CLEAR | EventFlags::RECEIPT;
        let changes = [
            kqueue::Event::new(EventFilter::Read(raw), flags, token_ptr(token)),
            kqueue::Event::new(EventFilter::Write(raw), flags, token_ptr(token)),
        ];
        let mut receipts = [std::mem::MaybeUninit::<kqueue::Event>::uninit(); 2];
        let receipts = loop {
            // SAFETY: `fd` is open for this call (borrowed), and kqueue
            // removes a descriptor's filters when it is closed, so no
            // filter ever refers to a closed descriptor. Adding a filter
            // again (after EINTR) only updates it.
            match unsafe { kqueue::kevent(&self.kq, &changes, &mut receipts[..], Some(Duration::ZERO)) } {
                Ok((got, _)) => break got,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        let (mut read, mut write) = (None, None);
        for receipt in receipts.iter() {
            // A receipt carries EV_ERROR, with 0 (success) or an errno in
            // `data`.
            let errno = receipt.data() as i32;
            match receipt.filter() {
                EventFilter::Read(_) => read = Some(errno),
                EventFilter::Write(_) => write = Some(errno),
                _ => {}
            }
        }
        let failure = match (read, write) {
            (Some(0), Some(0)) => None,
            (Some(0), Some(e)) if e == Errno::PIPE.raw_os_error() => None,
            (Some(0), Some(e)) | (Some(e), _) => Some(io::Error::from_raw_os_error(e)),
            // A change without its receipt: the kernel did not do what
            // EV_RECEIPT promises.
            _ => Some(io::Error::other("kevent returned no receipt for a filter")),
        };
        if let Some(failure) = failure {
            let _ = self.deregister(fd);
            return Err(failure);
        }
        self.read_only.remove(raw);
        Ok(())
    }

    /// For reading only: `EVFILT_READ` alone, `EVFILT_WRITE` being added
    /// when [`rearm`] asks for writing. One change, so a failure is the
    /// `kevent` call's own error and leaves nothing behind.
    ///
    /// [`rearm`]: Poller::rearm
    unsafe fn register_for(&self, fd: BorrowedFd<'_>, token: u64, wanted: Interest) -> io::Result<()> {
        if wanted.is_write() {
            // SAFETY: the caller promises what `register` asks.
            return unsafe { self.register(fd, token) };
        }
        let raw = fd.as_raw_fd();
        self.apply(&[kqueue::Event::new(
            EventFilter::Read(raw),
            EventFlags::ADD | EventFlags::CLEAR,
            token_ptr(token),
        )])?;
        self.read_only.insert(raw);
        Ok(())
    }

    fn deregister(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let raw = fd.as_raw_fd();
        let null = std::ptr::null_mut();
        let read_only = self.read_only.remove(raw);
        // Delete each filter on its own: a descriptor that never accepted
        // one of them (ENOENT) must not keep the other.
        let read = self.apply(&[kqueue::Event::new(
            EventFilter::Read(raw),
            EventFlags::DELETE,
            null,
        )]);
        let write = match self.apply(&[kqueue::Event::new(
            EventFilter::Write(raw),
            EventFlags::DELETE,
            null,
        )]) {
            // A descriptor registered for reading only has no write filter
            // (no write had to wait): its absence is no failure. The
            // delete is still tried, for a write filter left by an earlier
            // registration of the same descriptor in both directions
            // (`EV_ADD` of the read filter only updated that one).
            Err(e) if read_only && e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => Ok(()),
            write => write,
        };
        read.and(write)
    }

    /// Deregisters and registers again, in the same directions: a
    /// descriptor registered for reading only stays so.
    unsafe fn reregister(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let wanted = if self.read_only.contains(fd.as_raw_fd()) {
            Interest::READ
        } else {
            Interest::BOTH
        };
        let _ = self.deregister(fd);
        // SAFETY: the caller promises what `register` asks: `fd` stays
        // open until it is deregistered.
        unsafe { self.register_for(fd, token, wanted) }
    }

    /// Adds `EVFILT_WRITE` (`EV_ADD | EV_CLEAR`) to a descriptor
    /// registered for reading only, once a write on it has to wait: kqueue
    /// reports the new filter at once if the descriptor became writable
    /// meanwhile, so no edge is missed. The descriptor stops being
    /// read-only only once the filter is in: after a failure, the next
    /// write that waits tries again.
    fn rearm(&self, fd: BorrowedFd<'_>, token: u64, wanted: Interest) -> io::Result<()> {
        let raw = fd.as_raw_fd();
        // (`contains` takes no lock while none is read-only.)
        if !wanted.is_write() || !self.read_only.contains(raw) {
            return Ok(());
        }
        // The send that would block ran before this call, so room may have
        // freed in between, before any write filter was there to see the
        // change. It is not lost: adding a filter evaluates it at once and
        // queues an event if its condition already holds (here: room to
        // write), as it does for the write filter of a new connection,
        // which reports it writable right after registering: FreeBSD and
        // DragonFly call the filter's `f_event` at the end of
        // `kqueue_register`, NetBSD its `filter_event`, OpenBSD checks for
        // a pending event after attaching, and XNU's `f_attach` returns
        // whether the filter fired. Each later change is an edge, as for
        // any connection.
        self.apply(&[kqueue::Event::new(
            EventFilter::Write(raw),
            EventFlags::ADD | EventFlags::CLEAR,
            token_ptr(token),
        )])?;
        self.read_only.remove(raw);
        Ok(())
    }

    fn wait(
        &self,
        raw: &mut Self::Events,
        out: &mut Vec<Event>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let list = &mut raw.0;
        list.clear();
        // SAFETY: no changes are submitted, and kqueue drops the filters of
        // a descriptor when it is closed, so no event can name a closed
        // descriptor.
        let r = unsafe { kqueue::kevent(&self.kq, &[], rustix::buffer::spare_capacity(list), timeout) };
        match r {
            Ok(_) => {}
            Err(Errno::INTR) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        for ev in list.iter() {
            let token = ev.udata() as usize as u64;
            if token == WAKE_TOKEN {
                self.reset_wake();
                continue;
            }
            let flags = ev.flags();
            let hangup = flags.intersects(EventFlags::EOF | EventFlags::ERROR);
            let (readable, writable) = match ev.filter() {
                EventFilter::Read(_) => (true, false),
                EventFilter::Write(_) => (false, true),
                _ => (false, false),
            };
            // `urgent` stays false: see `REPORTS_URGENT` below.
            let mut event = Event::new(token);
            event.readable = readable;
            event.writable = writable;
            event.hangup = hangup;
            out.push(event);
        }
        Ok(())
    }

    fn wake(&self) -> io::Result<()> {
        match &self.waker {
            #[cfg(any(target_vendor = "apple", target_os = "freebsd", target_os = "dragonfly"))]
            Waker::User => self.apply(&[kqueue::Event::new(
                EventFilter::User {
                    ident: 0,
                    flags: kqueue::UserFlags::TRIGGER,
                    user_flags: kqueue::UserDefinedFlags::new(0),
                },
                EventFlags::empty(),
                token_ptr(WAKE_TOKEN),
            )]),
            #[cfg(any(target_os = "netbsd", target_os = "openbsd"))]
            Waker::Pipe { tx, .. } => match rustix::io::write(tx, &[1]) {
                // EAGAIN: the pipe is full, a wake-up is pending anyway.
                Ok(_) | Err(Errno::AGAIN) => Ok(()),
                Err(e) => Err(e.into()),
            },
        }
    }
}

impl AsFd for KqueuePoller {
    /// The kqueue descriptor.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.kq.as_fd()
    }
}
