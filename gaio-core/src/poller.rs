//! The `Poller` trait: the only thing an OS backend implements.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use crate::net::{self, Datagram};
use crate::sys::{self, FdKind, IoOutcome};
use crate::{Backend, Mode, PeerAddr};

/// Directions of I/O: what a descriptor is watched for, or what the engine
/// waits for after finding a descriptor not ready.
///
/// ```
/// use gaio_core::Interest;
///
/// let both = Interest::READ | Interest::WRITE;
/// assert_eq!(both, Interest::BOTH);
/// assert!(both.is_read() && both.is_write());
/// assert!(!Interest::NONE.is_read());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Interest {
    read: bool,
    write: bool,
}

impl Interest {
    /// No direction.
    pub const NONE: Interest = Interest {
        read: false,
        write: false,
    };
    /// Reading (for a listener: accepting).
    pub const READ: Interest = Interest {
        read: true,
        write: false,
    };
    /// Writing (for a connecting socket: the connect's end).
    pub const WRITE: Interest = Interest {
        read: false,
        write: true,
    };
    /// Both directions.
    pub const BOTH: Interest = Interest {
        read: true,
        write: true,
    };

    /// True if reading is among the directions.
    pub const fn is_read(self) -> bool {
        self.read
    }

    /// True if writing is among the directions.
    pub const fn is_write(self) -> bool {
        self.write
    }
}

impl std::ops::BitOr for Interest {
    type Output = Interest;
    fn bitor(self, other: Interest) -> Interest {
        Interest {
            read: self.read || other.read,
            write: self.write || other.write,
        }
    }
}

/// Readiness of one registered descriptor, as reported by a poller.
///
/// Errors and hang-ups are reported through `hangup`: the engine then tries
/// the I/O in both directions and the system call reports what happened.
/// Pollers make one with [`Event::new`] and set what they saw; the struct
/// may gain fields, so it cannot be built with a struct literal outside
/// this crate.
///
/// ```
/// let mut ev = gaio_core::Event::new(7);
/// ev.readable = true;
/// assert!(ev.readable && !ev.writable && !ev.hangup && !ev.urgent);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Event {
    /// The token the descriptor was registered with.
    pub token: u64,
    /// A read may make progress (data, end of stream or error).
    pub readable: bool,
    /// A write may make progress (room, or error).
    pub writable: bool,
    /// The peer hung up or the connection failed (`EPOLLRDHUP`,
    /// `EPOLLHUP`, `EPOLLERR`, `EV_EOF`): from now on reads and writes never
    /// wait for another edge, since none may come.
    pub hangup: bool,
    /// Urgent (out-of-band) data is pending (`EPOLLPRI`): a read may stop
    /// short at its mark with data still queued behind it, so until a read
    /// would block the engine does not take a short read as drained. Only
    /// pollers with [`Poller::REPORTS_URGENT`] set it.
    pub urgent: bool,
}

impl Event {
    /// An event for `token` with nothing ready: set the fields that apply.
    pub const fn new(token: u64) -> Event {
        Event {
            token,
            readable: false,
            writable: false,
            hangup: false,
            urgent: false,
        }
    }
}

/// An edge-triggered readiness source.
///
/// A poller registers descriptors for both directions at once, reports each
/// change of readiness at least once (edge-triggered: `EPOLLET`,
/// `EV_CLEAR`), and can be woken from any thread. The engine keeps track of
/// readiness itself, so a poller never needs re-arming.
///
/// `register`, `deregister` and `wake` may be called from any thread while
/// another thread is inside `wait`; `wait` is only ever called by one thread
/// at a time.
pub trait Poller: Send + Sync + Sized + 'static {
    /// The raw event buffer `wait` fills, owned by the waiting thread.
    type Events: Send;

    /// True if the poller reports a direction again, after the engine
    /// [re-armed](Poller::rearm) it, for as long as the descriptor stays
    /// ready in it (poll(2) emulating edges on a level-triggered wait).
    /// The engine may then take any short read as "drained": if data was
    /// left behind, the next wait reports it. Edge-triggered pollers
    /// (epoll, kqueue) leave it false.
    const LEVEL_TRIGGERED: bool = false;

    /// True if every event that follows the arrival of urgent data on a
    /// TCP socket, or is taken while such data is pending, carries
    /// [`Event::urgent`]. With it, the engine takes a short read from a
    /// plain TCP socket as drained unless urgent data was announced (and
    /// saves a `recv` that would only say `EAGAIN`); without it, only a
    /// read that would block proves a socket drained.
    const REPORTS_URGENT: bool = false;

    /// Creates a poller with its wake-up mechanism.
    ///
    /// # Errors
    ///
    /// What the system reports while making them (`EMFILE` when out of
    /// descriptors, for one).
    fn new() -> io::Result<Self>;

    /// Creates a poller on `backend` for a watcher in `mode`:
    /// [`Backend::Auto`] lets the poller choose. In [`Mode::Inline`] the
    /// engine is turned by the thread that waits, so a poller may bind
    /// itself to the first thread that waits; in [`Mode::Background`] two
    /// threads take turns. The default answers `Auto` and the poller's own
    /// backend with [`new`](Poller::new), and refuses any other with
    /// `Unsupported`; a poller that can run on several backends (Linux's
    /// io_uring or epoll) chooses here.
    ///
    /// # Errors
    ///
    /// As [`new`](Poller::new); `Unsupported` for a backend this poller
    /// cannot run on, or one the system refuses (io_uring blocked by
    /// seccomp, say), saying why.
    fn open(backend: Backend, mode: Mode) -> io::Result<Self> {
        let _ = mode;
        let poller = Self::new()?;
        if backend == Backend::Auto || backend == poller.backend() {
            Ok(poller)
        } else {
            Err(Backend::unsupported(backend, poller.backend()))
        }
    }

    /// The kernel interface this poller runs on.
    fn backend(&self) -> Backend;

    /// [`Self::LEVEL_TRIGGERED`], asked of this poller: a poller whose
    /// backend is chosen at run time answers for the one it runs on.
    fn level_triggered(&self) -> bool {
        Self::LEVEL_TRIGGERED
    }

    /// [`Self::REPORTS_URGENT`], asked of this poller (see
    /// [`level_triggered`](Poller::level_triggered)).
    fn reports_urgent(&self) -> bool {
        Self::REPORTS_URGENT
    }

    /// True if the I/O methods ([`read`](Poller::read),
    /// [`read_uninit`](Poller::read_uninit), [`write`](Poller::write),
    /// [`accept`](Poller::accept)) may *start* the I/O and answer
    /// `WouldBlock`, the kernel finishing it later on its own (a
    /// completion ring). The I/O's end comes as an [`Event`] for the
    /// descriptor, and the same call made again then returns its result.
    ///
    /// The engine then keeps three rules, so the kernel never touches
    /// memory that moved or went back to the user: a request is stored
    /// before its I/O is tried (its buffer no longer moves); a request
    /// whose I/O may be in flight leaves its list only after
    /// [`cancel`](Poller::cancel); and the retry after the event offers the
    /// same memory as the first call. A fourth keeps the user's code away
    /// from that memory: while [`read_in_flight`](Poller::read_in_flight)
    /// says the kernel may still write into a read's buffer, the engine
    /// does not ask the buffer for its bytes (`IoBufMut::as_bytes_mut` is
    /// safe code the user writes, and could move them). Readiness pollers
    /// answer false.
    fn completes_io(&self) -> bool {
        false
    }

    /// Completion pollers: true while a read started on `fd` by
    /// [`read`](Poller::read) or [`recv_from`](Poller::recv_from), into
    /// the engine's memory, may still be written by the kernel (it is in
    /// flight, or waits to be started again); false once its result has
    /// landed, and when there is none. The engine then leaves the
    /// request's buffer alone and waits for the read's end, as if the
    /// call had answered `WouldBlock`. The default, for pollers whose I/O
    /// ends within the call, is false.
    fn read_in_flight(&self, fd: BorrowedFd<'_>) -> bool {
        let _ = fd;
        false
    }

    /// False if the calling thread may not run this poller's I/O: a
    /// poller bound to the thread that first ran it (io_uring in
    /// [`Mode::Inline`], whose ring the kernel lets only that thread
    /// enter), or one that gave up its I/O for every thread (a request
    /// that had to be ended from another thread left its memory to the
    /// kernel: entering again could write into it once handed back). An
    /// inline watcher then refuses to wait with
    /// [`Error::WrongThread`](crate::Error::WrongThread). The default is
    /// true: any thread may, one at a time.
    fn usable_here(&self) -> bool {
        true
    }

    /// Completion pollers that read into memory of their own (io_uring's
    /// provided buffers, for reads without a buffer): the most of it they
    /// may hold, in bytes. Called once, right after
    /// [`open`](Poller::open), before any I/O, with the builder's
    /// [`swap_limit`](crate::Builder::swap_limit). Readiness pollers read
    /// into the engine's swap memory and have none; the default does
    /// nothing.
    fn limit_swap(&self, bytes: usize) -> io::Result<()> {
        let _ = bytes;
        Ok(())
    }

    /// Completion pollers that copy a read's result out of memory of
    /// their own into the engine's swap memory (io_uring's small provided
    /// buffers): the most bytes one such result can hold. The engine then
    /// offers every [`read_uninit`](Poller::read_uninit) at least this
    /// much room (the whole swap size, if that is smaller), so the call
    /// that takes a result always has room for all of it. A poller left
    /// holding part of a result would have to keep it for the connection's
    /// next read, and a connection detached before that read would lose
    /// it. The default, 0, asks for nothing beyond the engine's own
    /// minimum (a quarter of the swap size).
    fn swap_read_room(&self) -> usize {
        0
    }

    /// Completion pollers: ends the I/O in flight on `fd` (only its number
    /// is used) in the directions of `interest`. When it returns, the
    /// kernel no longer uses the memory the I/O was given, and no event
    /// comes for it any more.
    ///
    /// An I/O that ended before it could be stopped has a result: with
    /// `keep`, the result is kept for the next call in that direction
    /// (which returns it, as after an event) and `true` is returned; else
    /// it is dropped (an accepted descriptor closed). The default, for
    /// readiness pollers, has nothing in flight and returns false.
    fn cancel(&self, fd: BorrowedFd<'_>, interest: Interest, keep: bool) -> bool {
        let _ = (fd, interest, keep);
        false
    }

    /// Completion pollers: the result of a buffer-less read that ended in
    /// memory of the poller's own (a provided-buffer ring), lent as it is
    /// rather than copied into the swap memory: `Some((Done(n), bytes))`
    /// with `bytes` the `n` bytes read, or another outcome with no bytes.
    /// `None` when the poller has no such result for `fd` (then
    /// [`read_uninit`](Poller::read_uninit) is called, which starts the
    /// read or copies its result). The default answers `None`.
    fn read_lent(&self, fd: BorrowedFd<'_>) -> Option<(IoOutcome, bytes::Bytes)> {
        let _ = fd;
        None
    }

    /// Completion pollers: while held, the I/O methods only hand out
    /// results that have ended (kept by [`cancel`](Poller::cancel) or
    /// announced by an event) and answer `WouldBlock` otherwise, starting
    /// nothing. The engine holds the poller while it takes a cancelled
    /// request's last result. Holds nest: the poller is held until every
    /// `hold(true)` has had its `hold(false)` (taking a result can free a
    /// connection, which settles its I/O in turn). The default does
    /// nothing.
    fn hold(&self, held: bool) {
        let _ = held;
    }

    /// Allocates a raw event buffer for up to `capacity` events per wait.
    fn events(capacity: usize) -> Self::Events;

    /// Starts watching `fd` for readability and writability, edge-triggered,
    /// reporting `token` in its events.
    ///
    /// # Errors
    ///
    /// What the system reports (epoll refuses a regular file with `EPERM`,
    /// for one); `EEXIST` if `fd` is registered already, which changes
    /// nothing.
    ///
    /// # Safety
    ///
    /// `fd` must stay open until it is [deregistered](Poller::deregister)
    /// (or the poller is dropped). A poller may keep the descriptor's
    /// number, not a borrow: if the descriptor were closed first, the
    /// number could name another descriptor opened later, which the poller
    /// would then watch, report and act on (poll(2) polls it by number).
    /// The engine keeps this promise for every descriptor it registers: it
    /// owns each one and deregisters it before closing it.
    unsafe fn register(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()>;

    /// Starts watching `fd` as [`register`](Poller::register) does, for
    /// the directions of `interest` where the poller can leave the others
    /// out: a direction left out is reported only after the engine
    /// [re-arms](Poller::rearm) it, which it does each time it finds `fd`
    /// not ready in that direction. The engine registers datagram sockets
    /// for reading: every datagram sent frees room in the socket's send
    /// buffer, and a poller watching for writability would report an edge
    /// (a wake-up) for each, though a datagram send seldom has to wait.
    /// The default watches both directions.
    ///
    /// # Errors
    ///
    /// As [`register`](Poller::register).
    ///
    /// # Safety
    ///
    /// As [`register`](Poller::register).
    unsafe fn register_for(&self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()> {
        let _ = interest;
        // SAFETY: the caller promises what `register` asks.
        unsafe { self.register(fd, token) }
    }

    /// Stops watching `fd`.
    ///
    /// # Errors
    ///
    /// `ENOENT` if `fd` is not registered; otherwise what the system
    /// reports.
    fn deregister(&self, fd: BorrowedFd<'_>) -> io::Result<()>;

    /// Registers `fd` again so that its *current* readiness is reported
    /// anew. The engine calls it for descriptors registered on another
    /// thread: events reported before the engine knew the connection were
    /// dropped, and an edge-triggered poller would not repeat them (a
    /// hang-up in particular). The default deregisters and registers.
    ///
    /// # Errors
    ///
    /// As [`register`](Poller::register).
    ///
    /// # Safety
    ///
    /// As [`register`](Poller::register): `fd` stays open until it is
    /// deregistered.
    unsafe fn reregister(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let _ = self.deregister(fd);
        // SAFETY: the caller promises what `register` asks: `fd` stays
        // open until it is deregistered.
        unsafe { self.register(fd, token) }
    }

    /// Waits until at least one event arrives, `wake` is called, or
    /// `timeout` passes (`None`: no limit), then appends the events to
    /// `out`. Wake-ups are consumed here and not reported. An interrupted
    /// wait (EINTR) returns `Ok` with whatever it has.
    ///
    /// # Errors
    ///
    /// A failure of the wait itself (`epoll_wait`, `kevent`, `poll`): the
    /// engine then closes the watcher.
    fn wait(&self, raw: &mut Self::Events, out: &mut Vec<Event>, timeout: Option<Duration>)
        -> io::Result<()>;

    /// Makes a current or the next `wait` return. Several wakes before a
    /// wait may coalesce into one.
    ///
    /// # Errors
    ///
    /// A failure to signal (writing the eventfd or pipe, triggering the
    /// user event); a wake-up already pending is not an error.
    fn wake(&self) -> io::Result<()>;

    /// Tells the poller the engine found `fd` not ready in the directions
    /// of `interest` (it would block) and now waits for them.
    ///
    /// Edge-triggered pollers need nothing here (except to start watching
    /// a direction left out at [`register_for`](Poller::register_for)),
    /// and the default does nothing. A level-triggered poller (poll(2))
    /// emulates edges with it:
    /// it stops watching a direction once it has reported it, and starts
    /// again when the engine re-arms it, so a ready descriptor nobody reads
    /// does not make it spin. Called only from the thread that calls
    /// `wait`.
    ///
    /// # Errors
    ///
    /// `ENOENT` if `fd` is not registered under `token`.
    fn rearm(&self, fd: BorrowedFd<'_>, token: u64, interest: Interest) -> io::Result<()> {
        let _ = (fd, token, interest);
        Ok(())
    }

    /// One non-blocking read into `buf`. The default is `recv` for stream
    /// sockets and `read(2)` otherwise, retried on EINTR; a test poller
    /// overrides the three I/O methods to script what the "kernel" does.
    fn read(&self, fd: BorrowedFd<'_>, kind: FdKind, buf: &mut [u8]) -> IoOutcome {
        sys::read(fd, kind, buf)
    }

    /// One non-blocking read into uninitialised memory (the swap slab).
    /// Returns the outcome and the filled prefix of `buf`; the engine
    /// only trusts bytes of `buf` that the returned slice covers.
    fn read_uninit<'a>(
        &self,
        fd: BorrowedFd<'_>,
        kind: FdKind,
        buf: &'a mut [MaybeUninit<u8>],
    ) -> (IoOutcome, &'a mut [u8]) {
        sys::read_uninit(fd, kind, buf)
    }

    /// One non-blocking gathered write. The default is `send` (one slice)
    /// or `sendmsg` (several) with `MSG_NOSIGNAL` for stream sockets, and
    /// `writev` otherwise.
    fn write(&self, fd: BorrowedFd<'_>, kind: FdKind, bufs: &[IoSlice<'_>]) -> IoOutcome {
        crate::syscalls::write(fd, kind, bufs)
    }

    /// Receives one datagram into `buf`: the outcome (`Done(n)`: `n` bytes
    /// kept) and what the receive learnt (sender, truncation). The default
    /// is `recvmsg`, retried on EINTR.
    fn recv_from(&self, fd: BorrowedFd<'_>, buf: &mut [u8]) -> (IoOutcome, Datagram) {
        net::recv_from(fd, buf)
    }

    /// Receives one datagram into uninitialised memory (the swap slab). The
    /// engine gives one byte more than it keeps: a datagram that reaches
    /// that byte is truncated, and the returned slice (a prefix of `buf`,
    /// which the engine checks) stops before it. The default is
    /// `recvfrom`, retried on EINTR.
    fn recv_from_uninit<'a>(
        &self,
        fd: BorrowedFd<'_>,
        buf: &'a mut [MaybeUninit<u8>],
    ) -> (IoOutcome, &'a mut [u8], Datagram) {
        net::recv_from_uninit(fd, buf)
    }

    /// Sends `buf` as one datagram to `addr`. The default is `sendto` with
    /// `MSG_NOSIGNAL`, retried on EINTR.
    fn send_to(&self, fd: BorrowedFd<'_>, buf: &[u8], addr: &PeerAddr) -> IoOutcome {
        net::send_to(fd, buf, addr)
    }

    /// Accepts one connection on listening socket `fd`, non-blocking and
    /// close-on-exec, with its peer's address. The default is `accept4`
    /// (or `accept` and `fcntl` where the system has no `accept4`),
    /// retried on EINTR; errors come back as the OS reported them.
    fn accept(&self, fd: BorrowedFd<'_>) -> io::Result<(OwnedFd, Option<PeerAddr>)> {
        net::accept(fd).map_err(io::Error::from)
    }

    /// Shuts down the writing half of stream socket `fd` (the peer reads
    /// end of stream after the bytes already sent): `Done(0)`, or the
    /// error. A completion poller may start it and answer `WouldBlock`:
    /// its end comes as an event for writing, and the same call made
    /// again returns the result. The default is `shutdown(SHUT_WR)`.
    fn shutdown_write(&self, fd: BorrowedFd<'_>) -> IoOutcome {
        crate::syscalls::shutdown_write(fd)
    }

    /// Starts connecting stream socket `fd` to `addr`, or makes the
    /// connect again after it was to be retried: `Ok(true)` connected
    /// already, `Ok(false)` in progress (the socket's writability, or a
    /// completion poller's event for writing, tells when it ended:
    /// [`connect_result`](Poller::connect_result) then says how), or the
    /// error. An error of kind `WouldBlock` (a Unix listener's full queue)
    /// or `Interrupted` makes the engine try again shortly. The default is
    /// `connect(2)`; the engine calls this only on completion pollers
    /// (readiness pollers' sockets are connected by the thread that
    /// submitted the request) and to retry.
    fn connect(&self, fd: BorrowedFd<'_>, addr: &PeerAddr) -> io::Result<bool> {
        crate::syscalls::connect(fd, addr)
    }

    /// How a non-blocking connect on `fd` ended, once the socket is
    /// writable (`SO_ERROR`). An error of kind `WouldBlock` or
    /// `Interrupted` makes the engine connect again
    /// ([`connect`](Poller::connect)).
    fn connect_result(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        net::connect_result(fd)
    }
}
