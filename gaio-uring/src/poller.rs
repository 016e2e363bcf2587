//! [`UringPoller`]: gaio's engine on an io_uring ring.
//!
//! The engine's logic (per-connection FIFO lists, deadlines, swap memory,
//! delivery) is the same on every backend; on the ring only its I/O step
//! differs. An attempt at a read, write or accept starts the request on
//! the ring and answers `WouldBlock`; the request's completion comes back
//! from [`wait`](Poller::wait) as an event for the descriptor, and the
//! engine's attempt made again then returns the completion's result. The
//! engine keeps its side of that bargain (see `Poller::completes_io`):
//! requests are stored before their I/O starts, so the memory given to
//! the kernel stays put, and a request that may be in flight leaves only
//! after [`cancel`](Poller::cancel), which returns once the kernel has let
//! go of its memory.
//!
//! Reads without a buffer (the swap memory) take a buffer the kernel picks
//! from a provided-buffer ring only when data arrives; the bytes are
//! copied into the engine's swap slab when the engine takes the result,
//! and the buffer goes straight back to the ring. A ring with no buffer
//! left answers `ENOBUFS`: the read is submitted again once buffers come
//! back, so an exhausted ring is back-pressure, never an error.
//!
//! Sends on stream sockets use `MSG_WAITALL`: the kernel finishes a
//! partial send itself, so a write completes whole (or with an error, or
//! cancelled with what it sent) in one completion. Datagrams go by
//! `recvmsg` and `sendmsg` on the ring (a receive without a buffer takes
//! one from the buffer rings, as a read does), and so do connects to IP
//! addresses and, on a busy ring, shutdowns. Anything else the ring does not carry uses the default
//! system calls, with one-shot readiness polls on the ring where it must
//! wait.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use gaio_core::{Backend, Datagram, Event, FdKind, Interest, IoOutcome, Mode, PeerAddr, Poller};
use io_uring::{opcode, squeue, types};

use crate::buf_ring::BufRing;
use crate::ops::{Kind, Ops, State, POLL_IN, POLL_OUT, READ, WRITE};
use crate::ring::{Ring, Waker};

/// Submission queue entries (the completion queue has twice as many).
const RING_ENTRIES: u32 = 1024;
/// The bytes of each buffer of the provided-buffer rings: many small
/// buffers, so that a thousand connections' short messages can land in one
/// turn (with 1,024 of them, reads at 1,024 connections found the ring
/// empty and waited a turn: p99.9 50 ms against epoll's 16), and a few
/// large ones for connections that stream (a read that filled a buffer
/// takes the next from the large ring). Their group is their index here.
/// How many of each there may be follows from the swap limit
/// ([`ring_shape`]); the default limit gives 2,048 small and 32 large.
const BUFFER_SIZES: [usize; 2] = [2 * 1024, 64 * 1024];
// An entry-less read keeps its size in its slot: every buffer fits.
const _: () = assert!(BUFFER_SIZES[LARGE] <= crate::ops::LIGHT_LEN as usize);
/// With fewer requests than this in flight the ring is quiet (a client or
/// two): a send is tried at once by a system call, and goes to the ring
/// only if the socket has no room (one client's answer then takes no
/// extra ring turn); a shutdown is the system call; a datagram receive is
/// the system call, and waits for readability on the ring if it found
/// nothing (a lone UDP socket's `recvmsg` on the ring measured 1–6 % more
/// CPU per datagram than the call and a poll).
const QUIET_BELOW: usize = 4;
/// Buffers each ring is made with: the rest are made as reads need them.
const FIRST_BUFFERS: [u16; 2] = [64, 2];
/// Index of the small and of the large ring.
const SMALL: usize = 0;
const LARGE: usize = 1;

/// A hint: the descriptor's last buffer-select read filled its buffer, so
/// the next one takes a large buffer.
const BULK: u8 = 1;
/// A hint: the descriptor's last `recv` left its socket empty
/// (`IORING_CQE_F_SOCK_NONEMPTY` was clear), so the next waits for bytes
/// before it tries ([`RECV_POLL_FIRST`]). For a datagram socket: its last
/// receive found it empty, so the next goes to the ring (which waits)
/// rather than to a system call.
const DRAINED: u8 = 2;
/// `IORING_RECVSEND_POLL_FIRST`, in a `recv`'s `ioprio`: wait for the
/// socket to be readable before the first attempt.
const RECV_POLL_FIRST: u16 = 1;
/// A token no descriptor has.
const NO_TOKEN: u64 = u64::MAX;
/// The user data of cancels sent for polls: their own completions are
/// dropped (a tag of all ones, an index no request has).
const CANCELLED_POLL: u64 = u64::MAX - 2;
/// Longest a cancelled request may take to post its completion before the
/// watcher gives up on the kernel (sync cancellation has already returned
/// by then: the wait is only for the completion to be posted).
const CANCEL_WAIT: Duration = Duration::from_secs(5);

/// A poller whose I/O the kernel does: see the module documentation.
pub struct UringPoller {
    /// The ring and its requests: locked by the thread turning the engine
    /// (the only one that calls the I/O methods, `wait`, `cancel`).
    ring: Mutex<Inner>,
    /// Tokens by descriptor number: registered and deregistered from any
    /// thread, read when events are made.
    tokens: Mutex<Vec<u64>>,
    waker: Waker,
}

struct Inner {
    ring: Ring,
    /// The provided-buffer rings, small and large (`BUFFER_SIZES`).
    bufs: [BufRing; 2],
    /// Per descriptor number, what its last reads taught ([`BULK`],
    /// [`DRAINED`]).
    hints: Vec<u8>,
    ops: Ops,
    /// Events posted and not yet handed to the engine: descriptor,
    /// readable, writable, hung up.
    ready: Vec<(RawFd, bool, bool, bool)>,
    /// Buffer-select reads to submit again once buffers come back.
    starved: Vec<u32>,
    /// `starved`'s spare vector, swapped in at each rearm (no allocation
    /// per turn).
    rearming: Vec<u32>,
    /// Per buffer ring: a read found it empty since the last rearm.
    ran_dry: [bool; 2],
    /// How many `Poller::hold(true)` are not yet ended (holds nest).
    held: u32,
}

impl std::fmt::Debug for UringPoller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringPoller").finish_non_exhaustive()
    }
}

/// Refuses what the readiness backends refuse, so the contract is the
/// same on every backend: the ring could read a regular file, a directory
/// or a device without a poll method (`/dev/null`, `/dev/zero`), but epoll
/// answers `EPERM` for each. Sockets and pipes, what watchers are handed
/// nearly always, cost one `fstat`; anything else (a terminal, an
/// eventfd, a device) is asked of a throwaway epoll instance.
fn refuse_unpollable(fd: BorrowedFd<'_>) -> io::Result<()> {
    use rustix::event::epoll;
    use rustix::fs::FileType;
    match FileType::from_raw_mode(rustix::fs::fstat(fd)?.st_mode) {
        FileType::Socket | FileType::Fifo => Ok(()),
        FileType::RegularFile | FileType::Directory => Err(io::Error::from_raw_os_error(libc::EPERM)),
        _ => {
            let probe = epoll::create(epoll::CreateFlags::CLOEXEC)?;
            epoll::add(&probe, fd, epoll::EventData::new_u64(0), epoll::EventFlags::IN)?;
            Ok(())
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while locked left nothing half-done that matters here: the
    // engine closes the watcher after a panic, and the state stays
    // consistent at every unlock point.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl UringPoller {
    /// Records `token` for `fd` (`register`, `reregister`): refuses a
    /// descriptor the readiness backends refuse too, and one registered
    /// already with `EEXIST` unless `replace`, as the trait says.
    fn set_token(&self, fd: BorrowedFd<'_>, token: u64, replace: bool) -> io::Result<()> {
        refuse_unpollable(fd)?;
        let number =
            usize::try_from(fd.as_raw_fd()).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
        let mut tokens = lock(&self.tokens);
        if tokens.len() <= number {
            // Only as far as the descriptor (pages touched as descriptors
            // are, not ahead of them).
            tokens.resize(number + 1, NO_TOKEN);
        }
        if tokens[number] != NO_TOKEN && !replace {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        tokens[number] = token;
        Ok(())
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        lock(&self.ring)
    }
}

impl Poller for UringPoller {
    type Events = ();

    fn new() -> io::Result<Self> {
        Self::open(Backend::Uring, Mode::Inline)
    }

    /// In [`Mode::Inline`] the ring belongs to the thread that first runs
    /// the watcher's I/O (`SINGLE_ISSUER`, `DEFER_TASKRUN`): the kernel
    /// finishes requests only when that thread enters the ring, so nothing
    /// of the ring's work reaches the thread between its calls (a ring
    /// shared by threads flags them for task work, which makes their
    /// blocking calls with timeouts fail with `EINTR`). In
    /// [`Mode::Background`] both threads enter the ring (`COOP_TASKRUN`).
    fn open(backend: Backend, mode: Mode) -> io::Result<Self> {
        if !matches!(backend, Backend::Auto | Backend::Uring) {
            return Err(Backend::unsupported(backend, Backend::Uring));
        }
        let ring = Ring::new(RING_ENTRIES, mode == Mode::Inline)?;
        let bufs = buffer_rings(&ring, gaio_core::DEFAULT_SWAP_LIMIT)?;
        let waker = ring.waker();
        Ok(UringPoller {
            ring: Mutex::new(Inner {
                ring,
                bufs,
                hints: Vec::new(),
                ops: Ops::default(),
                ready: Vec::new(),
                starved: Vec::new(),
                rearming: Vec::new(),
                ran_dry: [false; 2],
                held: 0,
            }),
            tokens: Mutex::new(Vec::new()),
            waker,
        })
    }

    fn backend(&self) -> Backend {
        Backend::Uring
    }

    fn events(_capacity: usize) -> Self::Events {}

    fn completes_io(&self) -> bool {
        true
    }

    /// A read into a small buffer is copied into the engine's swap memory
    /// (a large one is lent as it is): the copy must find room for the
    /// whole buffer, or the rest would wait in the poller, lost if the
    /// connection were detached first.
    fn swap_read_room(&self) -> usize {
        BUFFER_SIZES[SMALL]
    }

    /// The buffer rings are made again for `bytes`: a third of it in
    /// 64 KiB buffers, the rest in 2 KiB ones (each ring holds at most
    /// 32,768). Buffers are made as reads need them, so the limit is what
    /// a flood may take, not what a quiet watcher holds.
    fn limit_swap(&self, bytes: usize) -> io::Result<()> {
        let mut inner = self.inner();
        let inner = &mut *inner;
        let shape = ring_shape(bytes);
        if inner.bufs.iter().map(|b| b.made().1 as u16).eq(shape) {
            return Ok(());
        }
        if inner.bufs.iter().any(|b| b.available() < b.made().0) || inner.ops.in_flight() > 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the swap limit is set before the first read",
            ));
        }
        for bufs in &mut inner.bufs {
            bufs.unregister(inner.ring.uring())?;
        }
        inner.bufs = buffer_rings(&inner.ring, bytes)?;
        Ok(())
    }

    unsafe fn register(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        self.set_token(fd, token, false)
    }

    fn deregister(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let mut tokens = lock(&self.tokens);
        match usize::try_from(fd.as_raw_fd())
            .ok()
            .and_then(|n| tokens.get_mut(n))
        {
            Some(t) if *t != NO_TOKEN => {
                *t = NO_TOKEN;
                Ok(())
            }
            _ => Err(io::Error::from_raw_os_error(libc::ENOENT)),
        }
    }

    unsafe fn reregister(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        // Nothing to report anew: the ring reports the end of each request,
        // and requests start only when the engine knows the connection.
        self.set_token(fd, token, true)
    }

    fn wait(&self, _raw: &mut (), out: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        let mut inner = self.inner();
        inner.rearm_starved()?;
        let timeout = if inner.ready.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        // A wait is for one completion, whatever comes with it. Waiting
        // for a batch (up to 50 µs for twice the last turn's, sessions
        // 8-13) saved entries into the kernel where they are dear, but
        // cost 12-16 % more CPU per round trip at 1,024 connections where
        // they are cheap, and gained nothing from 16 to 512 (BENCHMARKS.md).
        let entered = inner.ring.enter(timeout);
        inner.reap();
        if inner.ready.is_empty() {
            return entered;
        }
        let tokens = lock(&self.tokens);
        for (fd, readable, writable, hangup) in inner.ready.drain(..) {
            let token = usize::try_from(fd).ok().and_then(|n| tokens.get(n)).copied();
            let Some(token) = token.filter(|t| *t != NO_TOKEN) else {
                continue;
            };
            let mut ev = Event::new(token);
            ev.readable = readable;
            ev.writable = writable;
            ev.hangup = hangup;
            out.push(ev);
        }
        entered
    }

    fn wake(&self) -> io::Result<()> {
        self.waker.wake()
    }

    fn rearm(&self, fd: BorrowedFd<'_>, _token: u64, interest: Interest) -> io::Result<()> {
        let mut inner = self.inner();
        if inner.held > 0 {
            return Ok(());
        }
        let fd = fd.as_raw_fd();
        for (wanted, io_slot, poll_slot, events) in [
            (interest.is_read(), READ, POLL_IN, libc::POLLIN | libc::POLLRDHUP),
            (interest.is_write(), WRITE, POLL_OUT, libc::POLLOUT),
        ] {
            // A request in flight in that direction tells by its end.
            if !wanted || inner.ops.occupied(fd, io_slot) || inner.ops.occupied(fd, poll_slot) {
                continue;
            }
            let idx = inner.ops.start(fd, poll_slot, Kind::Poll, 0, 0);
            // A poll points to no memory; the descriptor stays open until
            // `cancel` ended the poll (the engine cancels before it closes).
            // One that cannot be queued leaves no entry behind (`submit`).
            let sqe = opcode::PollAdd::new(types::Fd(fd), events as u32).build();
            if let IoOutcome::Failed(e) = inner.submit(idx, sqe) {
                return Err(e);
            }
        }
        Ok(())
    }

    fn read(&self, fd: BorrowedFd<'_>, kind: FdKind, buf: &mut [u8]) -> IoOutcome {
        let mut inner = self.inner();
        let fd = fd.as_raw_fd();
        if let Some(idx) = inner.ops.find(fd, READ) {
            return match inner.ops.get(idx).kind {
                Kind::Direct => inner.take_direct(idx, buf.as_ptr() as usize, buf.len()),
                // Bytes a buffer-select read brought, before the engine
                // switched to a buffer of its own: copied, as for swap.
                _ => {
                    // SAFETY: viewing initialised bytes as possibly
                    // uninitialised ones; only initialised bytes are
                    // written through the view.
                    let uninit = unsafe { &mut *(std::ptr::from_mut(buf) as *mut [MaybeUninit<u8>]) };
                    inner.take_selected(idx, uninit).0
                }
            };
        }
        if inner.held > 0 {
            return IoOutcome::WouldBlock;
        }
        // A longer buffer is offered its first `MAX_IO` bytes (the ring
        // refuses a longer request); the entry keeps the whole length,
        // which the call taking the result offers again.
        let len = io_len(buf.len());
        let idx = inner
            .ops
            .start(fd, READ, Kind::Direct, buf.as_ptr() as usize, buf.len());
        inner.ops.get_mut(idx).stream = kind == FdKind::StreamSocket;
        let sqe = match kind {
            FdKind::StreamSocket => opcode::Recv::new(types::Fd(fd), buf.as_mut_ptr(), len)
                .ioprio(inner.recv_priority(fd))
                .build(),
            _ => opcode::Read::new(types::Fd(fd), buf.as_mut_ptr(), len)
                .offset(u64::MAX)
                .build(),
        };
        // SAFETY: `buf` is the engine's request buffer, stored before its
        // I/O starts; the engine ends the request only after the result
        // was taken or `cancel` returned (`Poller::completes_io`).
        inner.submit(idx, sqe)
    }

    /// In [`Mode::Inline`], only the thread that first ran the ring's I/O
    /// (or none yet), and none once the ring was given up.
    fn usable_here(&self) -> bool {
        self.inner().ring.usable_here()
    }

    /// A `recv`, `read` or `recvmsg` into the engine's memory that has not
    /// landed yet: in flight, or waiting to be submitted again (it will
    /// write where it was first told). Buffer-select reads write into the
    /// ring's buffers, not the engine's.
    fn read_in_flight(&self, fd: BorrowedFd<'_>) -> bool {
        let mut inner = self.inner();
        inner.ops.find(fd.as_raw_fd(), READ).is_some_and(|idx| {
            let op = inner.ops.get(idx);
            matches!(op.kind, Kind::Direct | Kind::RecvMsg) && !matches!(op.state, State::Landed { .. })
        })
    }

    fn read_uninit<'a>(
        &self,
        fd: BorrowedFd<'_>,
        kind: FdKind,
        buf: &'a mut [MaybeUninit<u8>],
    ) -> (IoOutcome, &'a mut [u8]) {
        let mut inner = self.inner();
        let fd = fd.as_raw_fd();
        if let Some(idx) = inner.ops.find(fd, READ) {
            assert!(
                inner.ops.get(idx).kind == Kind::Select,
                "a read into the engine's own buffer was taken by a swap read"
            );
            return inner.take_selected(idx, buf);
        }
        if inner.held > 0 {
            return (IoOutcome::WouldBlock, &mut []);
        }
        let group = inner.group_for(fd);
        let len = buf.len().min(BUFFER_SIZES[group]);
        let stream = kind == FdKind::StreamSocket;
        // No entry in the table until the kernel answers: an idle
        // connection's read costs only its slot.
        let user_data = inner.ops.start_light(fd, group as u8, stream, len);
        let sqe = select_read(fd, stream, len, group as u16, inner.recv_priority(fd)).user_data(user_data);
        // SAFETY: a buffer-select read points to no memory of ours; the
        // kernel picks a ring buffer.
        if let Err(e) = unsafe { inner.ring.push(&sqe) } {
            let idx = inner.ops.find(fd, READ).expect("the read just started");
            inner.ops.end(idx);
            return (IoOutcome::Failed(e), &mut []);
        }
        (IoOutcome::WouldBlock, &mut [])
    }

    /// A read that landed in a large buffer (a streaming connection's) is
    /// lent as it is: the user's slice is the kernel's buffer, which goes
    /// back to the ring once every slice of it is dropped. Short messages,
    /// in small buffers, are copied (`read_uninit`): their buffers return
    /// at once, so a thousand connections never hold the small ring empty.
    fn read_lent(&self, fd: BorrowedFd<'_>) -> Option<(IoOutcome, bytes::Bytes)> {
        let mut inner = self.inner();
        let fd = fd.as_raw_fd();
        let idx = inner.ops.find(fd, READ)?;
        let op = inner.ops.get(idx);
        if op.kind != Kind::Select || usize::from(op.group) != LARGE {
            return None;
        }
        let State::Landed { res, flags } = op.state else {
            return None;
        };
        if res <= 0 {
            inner.ops.end(idx);
            return Some((outcome(res), bytes::Bytes::new()));
        }
        let bid =
            io_uring::cqueue::buffer_select(flags).expect("a buffer-select read with data names its buffer");
        inner.note_bulk(fd, res as usize, LARGE);
        let lent = inner.bufs[LARGE].take(bid, res as usize);
        inner.ops.end(idx);
        Some((IoOutcome::Done(res as usize), lent))
    }

    fn write(&self, fd: BorrowedFd<'_>, kind: FdKind, bufs: &[IoSlice<'_>]) -> IoOutcome {
        let mut inner = self.inner();
        let socket = fd;
        let fd = fd.as_raw_fd();
        let first = bufs.first().map_or(0, |b| b.as_ptr() as usize);
        if let Some(idx) = inner.ops.find(fd, WRITE) {
            return inner.take_direct(idx, first, usize::MAX);
        }
        if inner.held > 0 {
            return IoOutcome::WouldBlock;
        }
        let stream = kind == FdKind::StreamSocket;
        if stream && inner.quiet() {
            // A quiet ring (a client or two): the bytes are offered to the
            // socket at once, as a readiness backend would, so the write
            // usually ends within this call and the engine needs no turn
            // of the ring for it (a partial send makes the engine wait for
            // writability, a poll on the ring). Several connections share
            // a turn's single entry instead.
            match gaio_core::syscalls::write(socket, kind, bufs) {
                IoOutcome::WouldBlock => {}
                done_or_failed => return done_or_failed,
            }
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let idx = inner.ops.start(fd, WRITE, Kind::Write, first, total);
        let flags = libc::MSG_NOSIGNAL | libc::MSG_WAITALL;
        let sqe = if bufs.len() == 1 {
            // One buffer is given at most `MAX_IO` bytes, as a read is (a
            // gathered write's total the kernel caps itself).
            let len = io_len(bufs[0].len());
            let ptr = bufs[0].as_ptr();
            if stream {
                opcode::Send::new(types::Fd(fd), ptr, len).flags(flags).build()
            } else {
                opcode::Write::new(types::Fd(fd), ptr, len)
                    .offset(u64::MAX)
                    .build()
            }
        } else {
            let mem = inner.ops.mem_mut(idx);
            let msg = mem.message(bufs.iter().map(|b| (b.as_ptr().cast_mut(), b.len())));
            if stream {
                opcode::SendMsg::new(types::Fd(fd), msg)
                    .flags(flags as u32)
                    .build()
            } else {
                let count = u32::try_from(mem.iov.len()).unwrap_or(u32::MAX);
                opcode::Writev::new(types::Fd(fd), mem.iov.as_ptr().cast(), count)
                    .offset(u64::MAX)
                    .build()
            }
        };
        // SAFETY: the slices are the engine's stored write requests, kept
        // until the result is taken or `cancel` returned; the gather array
        // and message header live in the request's box.
        inner.submit(idx, sqe)
    }

    /// On a busy ring, a datagram is received by a system call while the
    /// socket's last receive got one (more may be queued: the kernel does
    /// not say, for datagrams), and on the ring once a receive found the
    /// socket empty: the ring's receive waits for the next datagram and
    /// takes it in the turn that wakes the watcher, with the turn's other
    /// requests. On a quiet ring (fewer than 4 requests in flight), by a
    /// system call, with a poll on the ring when there is nothing.
    fn recv_from(&self, fd: BorrowedFd<'_>, buf: &mut [u8]) -> (IoOutcome, Datagram) {
        let socket = fd;
        let mut inner = self.inner();
        let fd = fd.as_raw_fd();
        if let Some(idx) = inner.ops.find(fd, READ) {
            return inner.take_datagram(idx, buf.as_ptr() as usize, buf.len());
        }
        if inner.held > 0 {
            return (IoOutcome::WouldBlock, Datagram::default());
        }
        let quiet = inner.quiet();
        if quiet || inner.expects_datagram(fd) {
            let got = gaio_core::syscalls::recv_from(socket, buf);
            if quiet || !matches!(got.0, IoOutcome::WouldBlock) {
                return got;
            }
            inner.set_hint(fd, DRAINED, true);
        }
        let idx = inner
            .ops
            .start(fd, READ, Kind::RecvMsg, buf.as_ptr() as usize, buf.len());
        let msg = inner
            .ops
            .mem_mut(idx)
            .datagram_receive(buf.as_mut_ptr(), buf.len());
        let sqe = opcode::RecvMsg::new(types::Fd(fd), msg)
            .ioprio(RECV_POLL_FIRST)
            .build();
        // SAFETY: `buf` is the engine's request buffer, stored before its
        // I/O starts and kept until the result is taken or `cancel`
        // returned; the header, its gather array and the room for the
        // sender live in the request's box, kept as long.
        (inner.submit(idx, sqe), Datagram::default())
    }

    /// As [`recv_from`](Poller::recv_from); on the ring, a datagram up to
    /// a buffer's size is received into a buffer the kernel picks when it
    /// arrives (the small ring's if the engine keeps no more than a small
    /// buffer holds, else the large ring's), then copied. A larger one (a
    /// swap size past 64 KiB, for Unix datagrams) is received by a system
    /// call only, after a readiness poll on the ring.
    fn recv_from_uninit<'a>(
        &self,
        fd: BorrowedFd<'_>,
        buf: &'a mut [MaybeUninit<u8>],
    ) -> (IoOutcome, &'a mut [u8], Datagram) {
        let socket = fd;
        let mut inner = self.inner();
        let fd = fd.as_raw_fd();
        if let Some(idx) = inner.ops.find(fd, READ) {
            return inner.take_selected_datagram(idx, buf);
        }
        if inner.held > 0 {
            return (IoOutcome::WouldBlock, &mut [], Datagram::default());
        }
        // The engine offers one byte more than it keeps.
        let offered = buf.len();
        let kept = offered.saturating_sub(1);
        let group = [SMALL, LARGE].into_iter().find(|&g| kept <= BUFFER_SIZES[g]);
        let by_call_only = group.is_none() || inner.quiet();
        if by_call_only || inner.expects_datagram(fd) {
            let got = gaio_core::syscalls::recv_from_uninit(socket, buf);
            if by_call_only || !matches!(got.0, IoOutcome::WouldBlock) {
                return got;
            }
            inner.set_hint(fd, DRAINED, true);
        }
        let group = group.expect("a ring's buffer holds the datagram");
        let idx = inner.ops.start(fd, READ, Kind::SelectMsg, 0, offered);
        inner.ops.get_mut(idx).group = group as u8;
        let sqe = select_datagram(fd, inner.ops.mem_mut(idx), offered, group as u16);
        // SAFETY: the kernel picks a ring buffer for the bytes; the header,
        // its one-entry array and the room for the sender live in the
        // request's box, kept until the result is taken or `cancel`
        // returned.
        let outcome = inner.submit(idx, sqe);
        (outcome, &mut [], Datagram::default())
    }

    fn send_to(&self, fd: BorrowedFd<'_>, buf: &[u8], addr: &PeerAddr) -> IoOutcome {
        let socket = fd;
        let mut inner = self.inner();
        let fd = fd.as_raw_fd();
        if let Some(idx) = inner.ops.find(fd, WRITE) {
            return inner.take_direct(idx, buf.as_ptr() as usize, usize::MAX);
        }
        if inner.held > 0 {
            return IoOutcome::WouldBlock;
        }
        if inner.quiet() {
            // A quiet ring: sent at once, as for a stream (see `write`).
            match gaio_core::syscalls::send_to(socket, buf, addr) {
                IoOutcome::WouldBlock => {}
                other => return other,
            }
        }
        let to = match gaio_core::syscalls::socket_addr(addr) {
            Ok(to) => to,
            Err(e) => return IoOutcome::Failed(e),
        };
        let idx = inner
            .ops
            .start(fd, WRITE, Kind::Write, buf.as_ptr() as usize, buf.len());
        let msg = inner.ops.mem_mut(idx).datagram_send(buf.as_ptr(), buf.len(), &to);
        let sqe = opcode::SendMsg::new(types::Fd(fd), msg)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build();
        // SAFETY: `buf` is the engine's stored request's, kept until the
        // result is taken or `cancel` returned; the header, its array and
        // the address live in the request's box, kept as long.
        inner.submit(idx, sqe)
    }

    fn accept(&self, fd: BorrowedFd<'_>) -> io::Result<(OwnedFd, Option<PeerAddr>)> {
        let mut inner = self.inner();
        let fd = fd.as_raw_fd();
        if let Some(idx) = inner.ops.find(fd, READ) {
            return inner.take_accept(idx);
        }
        if inner.held > 0 {
            return Err(io::Error::from_raw_os_error(libc::EAGAIN));
        }
        let idx = inner.ops.start(fd, READ, Kind::Accept, 0, 0);
        let mem = inner.ops.mem_mut(idx);
        mem.peer_len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let sqe = opcode::Accept::new(
            types::Fd(fd),
            std::ptr::from_mut(&mut mem.peer).cast(),
            &mut mem.peer_len,
        )
        .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
        .build();
        // SAFETY: the address and its length live in the request's box,
        // which stays until the request ends.
        match inner.submit(idx, sqe) {
            IoOutcome::Failed(e) => Err(e),
            _ => Err(io::Error::from_raw_os_error(libc::EAGAIN)),
        }
    }

    /// On a busy ring (as for sends, see `write`) the shutdown goes on
    /// the ring with the turn's other requests; on a quiet one it is the
    /// system call, which never waits.
    fn shutdown_write(&self, fd: BorrowedFd<'_>) -> IoOutcome {
        let socket = fd;
        let mut inner = self.inner();
        let fd = fd.as_raw_fd();
        if let Some(idx) = inner.ops.find(fd, WRITE) {
            let op = inner.ops.get(idx);
            assert!(
                op.kind == Kind::Shutdown,
                "a shutdown's result was asked of another request"
            );
            return inner.take_direct(idx, 0, usize::MAX);
        }
        if inner.held > 0 {
            return IoOutcome::WouldBlock;
        }
        if inner.quiet() {
            return gaio_core::syscalls::shutdown_write(socket);
        }
        let idx = inner.ops.start(fd, WRITE, Kind::Shutdown, 0, 0);
        let sqe = opcode::Shutdown::new(types::Fd(fd), libc::SHUT_WR).build();
        // SAFETY: a shutdown points to no memory.
        inner.submit(idx, sqe)
    }

    /// A connect to an IP address goes on the ring (no `connect` and no
    /// `SO_ERROR` query: the completion says how it ended); a Unix
    /// socket's connect never waits, and is the system call.
    fn connect(&self, fd: BorrowedFd<'_>, addr: &PeerAddr) -> io::Result<bool> {
        let Some(ip) = addr.as_inet() else {
            return gaio_core::syscalls::connect(fd, addr);
        };
        let mut inner = self.inner();
        let fd = fd.as_raw_fd();
        if inner.ops.find(fd, WRITE).is_some() {
            // Under way (the engine asks again only after an event).
            return Ok(false);
        }
        if inner.held > 0 {
            return Err(io::Error::from_raw_os_error(libc::EAGAIN));
        }
        let to = rustix::net::addr::SocketAddrArg::as_any(&ip);
        let idx = inner.ops.start(fd, WRITE, Kind::Connect, 0, 0);
        let (to, len) = inner.ops.mem_mut(idx).address(&to);
        let sqe = opcode::Connect::new(types::Fd(fd), to, len).build();
        // SAFETY: the address lives in the request's box, kept until the
        // result is taken or `cancel` returned.
        match inner.submit(idx, sqe) {
            IoOutcome::Failed(e) => Err(e),
            _ => Ok(false),
        }
    }

    fn connect_result(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let mut inner = self.inner();
        let Some(idx) = inner.ops.find(fd.as_raw_fd(), WRITE) else {
            drop(inner);
            return gaio_core::syscalls::connect_result(fd);
        };
        let op = inner.ops.get(idx);
        assert!(
            op.kind == Kind::Connect,
            "a connect's result was asked of another request"
        );
        let State::Landed { res, .. } = op.state else {
            return Err(io::Error::from_raw_os_error(libc::EINPROGRESS));
        };
        inner.ops.end(idx);
        match res {
            0 => Ok(()),
            // Connected by an earlier attempt.
            _ if res == -libc::EISCONN => Ok(()),
            _ => Err(io::Error::from_raw_os_error(-res)),
        }
    }

    fn cancel(&self, fd: BorrowedFd<'_>, interest: Interest, keep: bool) -> bool {
        let mut inner = self.inner();
        let fd = fd.as_raw_fd();
        let mut kept = false;
        for (wanted, io_slot, poll_slot) in [
            (interest.is_read(), READ, POLL_IN),
            (interest.is_write(), WRITE, POLL_OUT),
        ] {
            if !wanted {
                continue;
            }
            if let Some(idx) = inner.ops.find(fd, poll_slot) {
                inner.end_poll_now(idx);
            }
            if let Some(idx) = inner.ops.find(fd, io_slot) {
                kept |= inner.settle(idx, keep);
            }
        }
        kept
    }

    fn hold(&self, held: bool) {
        let mut inner = self.inner();
        inner.held = if held {
            inner.held + 1
        } else {
            inner
                .held
                .checked_sub(1)
                .expect("a hold ended that was not begun")
        };
    }
}

impl Inner {
    /// Queues request `idx`'s entry; `WouldBlock` (the result comes as an
    /// event), or the error if it cannot be queued.
    fn submit(&mut self, idx: u32, sqe: squeue::Entry) -> IoOutcome {
        let sqe = sqe.user_data(self.ops.user_data(idx));
        // SAFETY: each caller argues for the memory its entry points to;
        // the user data is a request's, never the ring's wake-up.
        match unsafe { self.ring.push(&sqe) } {
            Ok(()) => IoOutcome::WouldBlock,
            Err(e) => {
                self.ops.end(idx);
                IoOutcome::Failed(e)
            }
        }
    }

    /// The result of a read into the caller's memory or of a write, for
    /// a call offering memory starting at `addr` (and `len` bytes, for a
    /// read).
    fn take_direct(&mut self, idx: u32, addr: usize, len: usize) -> IoOutcome {
        let op = self.ops.get(idx);
        let (res, _) = match op.state {
            State::Landed { res, flags } => (res, flags),
            _ => return IoOutcome::WouldBlock,
        };
        // The kernel wrote (or read) the memory it was given: a call
        // offering other memory would be handed bytes that are not in it.
        assert!(
            op.addr == addr && (len == usize::MAX || op.len == len),
            "a ring request's result was asked for with other memory than it was given"
        );
        self.ops.end(idx);
        outcome(res)
    }

    /// The result of a buffer-select read, copied into `buf`; what does
    /// not fit stays for the next call (and an event says so).
    fn take_selected<'a>(&mut self, idx: u32, buf: &'a mut [MaybeUninit<u8>]) -> (IoOutcome, &'a mut [u8]) {
        let op = self.ops.get_mut(idx);
        let (fd, group) = (op.fd, usize::from(op.group));
        let bytes = match std::mem::replace(&mut op.state, State::InFlight) {
            State::Leftover => self.ops.take_leftover(idx).expect("leftover bytes are kept"),
            State::Landed { res, flags } => {
                if res <= 0 {
                    self.ops.end(idx);
                    return (outcome(res), &mut []);
                }
                let bid = io_uring::cqueue::buffer_select(flags)
                    .expect("a buffer-select read with data names its buffer");
                self.note_bulk(fd, res as usize, group);
                self.bufs[group].take(bid, res as usize)
            }
            other => {
                op.state = other;
                return (IoOutcome::WouldBlock, &mut []);
            }
        };
        let n = bytes.len().min(buf.len());
        let filled = copy_into(&bytes[..n], buf);
        if n < bytes.len() {
            // Not with gaio's engine, which offers at least
            // `swap_read_room` (a whole small buffer): kept for the
            // connection's next read rather than dropped.
            self.ops.set_leftover(idx, bytes.slice(n..));
            self.ready.push((fd, true, false, false));
        } else {
            self.ops.end(idx);
            // The buffer goes back to the ring at the next turn.
            drop(bytes);
        }
        (IoOutcome::Done(n), filled)
    }

    /// The result of a datagram receive into the caller's memory, for a
    /// call offering `len` bytes at `addr`.
    fn take_datagram(&mut self, idx: u32, addr: usize, len: usize) -> (IoOutcome, Datagram) {
        let op = self.ops.get(idx);
        assert!(
            op.kind == Kind::RecvMsg,
            "a datagram receive was asked for the result of another kind of request"
        );
        if !matches!(op.state, State::Landed { .. }) {
            return (IoOutcome::WouldBlock, Datagram::default());
        }
        // The kernel wrote the memory it was given.
        assert!(
            op.addr == addr && op.len == len,
            "a ring request's result was asked for with other memory than it was given"
        );
        let (res, datagram) = self.take_received(idx);
        self.ops.end(idx);
        (res.map_or_else(|failed| failed, IoOutcome::Done), datagram)
    }

    /// The result of a buffer-select datagram receive, copied into `buf`
    /// (whose last byte the engine does not keep: a longer datagram is
    /// cut, and said so).
    fn take_selected_datagram<'a>(
        &mut self,
        idx: u32,
        buf: &'a mut [MaybeUninit<u8>],
    ) -> (IoOutcome, &'a mut [u8], Datagram) {
        let op = self.ops.get(idx);
        assert!(
            op.kind == Kind::SelectMsg,
            "a swap datagram receive was asked for the result of another kind of request"
        );
        let State::Landed { flags, .. } = op.state else {
            return (IoOutcome::WouldBlock, &mut [], Datagram::default());
        };
        let group = usize::from(op.group);
        let (res, mut datagram) = self.take_received(idx);
        self.ops.end(idx);
        let filled: &'a mut [u8] = match res {
            Ok(0) => &mut [],
            Ok(n) => {
                let bid = io_uring::cqueue::buffer_select(flags)
                    .expect("a buffer-select receive with data names its buffer");
                let bytes = self.bufs[group].take(bid, n);
                let kept = n.min(buf.len().saturating_sub(1));
                datagram.truncated |= kept < n;
                copy_into(&bytes[..kept], buf)
            }
            Err(e) => return (e, &mut [], Datagram::default()),
        };
        (IoOutcome::Done(filled.len()), filled, datagram)
    }

    /// A landed datagram receive's byte count (or the failure as an
    /// outcome) and what the kernel wrote in its header.
    fn take_received(&self, idx: u32) -> (Result<usize, IoOutcome>, Datagram) {
        let State::Landed { res, .. } = self.ops.get(idx).state else {
            unreachable!("asked only of a landed request")
        };
        if res < 0 {
            return (Err(outcome(res)), Datagram::default());
        }
        let mem = self.ops.mem(idx).expect("a datagram receive has its header");
        let (truncated, name_len) = mem.received();
        let datagram = Datagram {
            truncated,
            from: peer_addr(&mem.peer, name_len),
        };
        (Ok(res as usize), datagram)
    }

    fn take_accept(&mut self, idx: u32) -> io::Result<(OwnedFd, Option<PeerAddr>)> {
        let op = self.ops.get(idx);
        let State::Landed { res, .. } = op.state else {
            return Err(io::Error::from_raw_os_error(libc::EAGAIN));
        };
        let peer = self.ops.mem(idx).and_then(|m| peer_addr(&m.peer, m.peer_len));
        self.ops.end(idx);
        if res < 0 {
            return Err(io::Error::from_raw_os_error(-res));
        }
        // SAFETY: the kernel returned a new descriptor, owned by nobody
        // else yet.
        Ok((unsafe { OwnedFd::from_raw_fd(res) }, peer))
    }

    /// What `fd`'s last reads taught ([`BULK`], [`DRAINED`]).
    fn hints(&self, fd: RawFd) -> u8 {
        let hint = usize::try_from(fd).ok().and_then(|n| self.hints.get(n));
        hint.copied().unwrap_or(0)
    }

    /// Sets (`on`) or clears `hint` for `fd`.
    fn set_hint(&mut self, fd: RawFd, hint: u8, on: bool) {
        let Ok(number) = usize::try_from(fd) else {
            return;
        };
        if number >= self.hints.len() {
            if !on {
                return;
            }
            // Only as far as the descriptor: the table's pages are touched
            // as descriptors are, not ahead of them.
            self.hints.resize(number + 1, 0);
        }
        if on {
            self.hints[number] |= hint;
        } else {
            self.hints[number] &= !hint;
        }
    }

    /// The buffer ring a buffer-select read on `fd` takes from.
    fn group_for(&self, fd: RawFd) -> usize {
        if self.hints(fd) & BULK != 0 {
            LARGE
        } else {
            SMALL
        }
    }

    /// Learns from a buffer-select read of `n` bytes from `group` on `fd`:
    /// one that filled its buffer makes the next take a large buffer; one
    /// a small buffer would have held makes it small again.
    fn note_bulk(&mut self, fd: RawFd, n: usize, group: usize) {
        if n >= BUFFER_SIZES[group] {
            self.set_hint(fd, BULK, true);
        } else if n < BUFFER_SIZES[SMALL] {
            self.set_hint(fd, BULK, false);
        }
    }

    /// Whether the ring is quiet ([`QUIET_BELOW`]).
    fn quiet(&self) -> bool {
        self.ops.in_flight() < QUIET_BELOW
    }

    /// Whether a datagram is expected on `fd` (its last receive got one)
    /// rather than waited for (its last receive found it empty).
    fn expects_datagram(&self, fd: RawFd) -> bool {
        self.hints(fd) & DRAINED == 0
    }

    /// The `ioprio` of a `recv` on `fd`: [`RECV_POLL_FIRST`] when its last
    /// `recv` left the socket empty. A request–response peer sends the
    /// next message only after the answer, so the read that follows finds
    /// nothing: asking the socket first would be a failed attempt, then
    /// the wait; this goes to the wait at once (which still ends at once
    /// if bytes came in meanwhile).
    fn recv_priority(&self, fd: RawFd) -> u16 {
        if self.hints(fd) & DRAINED != 0 {
            RECV_POLL_FIRST
        } else {
            0
        }
    }

    /// Ends a poll before this returns: a poll holds its file, so a
    /// descriptor closed after `Poller::cancel` would otherwise stay open
    /// (its peer seeing no end of stream) until the ring's next turn,
    /// which a closed watcher never has. With deferred task running the
    /// poll's end is work for this thread, run here. A poll points to no
    /// memory of ours, so where this thread may not cancel synchronously
    /// (a ring bound to another), an asynchronous cancel does.
    fn end_poll_now(&mut self, idx: u32) {
        let target = self.ops.user_data(idx);
        // Its completion will not match any more.
        self.ops.end(idx);
        if self.ring.cancel_sync(target).is_ok() {
            let _ = self.ring.run_deferred();
            return;
        }
        let sqe = opcode::AsyncCancel::new(target).build().user_data(CANCELLED_POLL);
        // SAFETY: a cancel points to no memory. If it cannot be queued the
        // poll ends by itself at the descriptor's close.
        let _ = unsafe { self.ring.push(&sqe) };
    }

    /// Ends request `idx`: once the kernel is done with it, its result is
    /// kept (with `keep`, returning true) or dropped.
    fn settle(&mut self, idx: u32, keep: bool) -> bool {
        if !self.ring.usable_here() {
            // A ring bound to another thread (the watcher moved, or is
            // dropped or closed elsewhere): it cannot be entered from
            // here, and its requests make no progress unless that thread
            // enters it (a bound ring always defers its task run:
            // `Ring::new`). The request's memory is about to be handed
            // back, so no thread may enter again (the watcher's thread
            // might come back to it): the ring is given up, and closing it
            // ends the requests without their I/O.
            self.ring.abandon();
            self.drop_result(idx);
            return false;
        }
        if matches!(self.ops.get(idx).state, State::InFlight) {
            let target = self.ops.user_data(idx);
            if let Err(e) = self.ring.cancel_sync(target) {
                panic!("io_uring: cancelling a request failed ({e}); its memory cannot be released safely");
            }
            let until = Instant::now() + CANCEL_WAIT;
            while matches!(self.ops.get(idx).state, State::InFlight) {
                assert!(
                    Instant::now() < until,
                    "io_uring: a cancelled request posted no completion within {CANCEL_WAIT:?}"
                );
                let _ = self.ring.enter(Some(Duration::from_millis(10)));
                self.reap();
            }
        }
        if matches!(self.ops.get(idx).state, State::Starved) {
            // Not in the kernel: nothing to wait for.
            self.starved.retain(|&s| s != idx);
            self.ops.end(idx);
            return false;
        }
        let op = self.ops.get(idx);
        let landed_data = match op.state {
            // A connect that ended as it was cancelled (its deadline, a
            // `free`) is not taken: the request ends as asked.
            State::Landed { .. } if op.kind == Kind::Connect => false,
            State::Landed { res, .. } => res != -libc::ECANCELED,
            State::Leftover => true,
            _ => false,
        };
        if keep && landed_data {
            return true;
        }
        self.drop_result(idx);
        false
    }

    /// Drops request `idx` and its result: a buffer goes back to the ring,
    /// an accepted descriptor is closed.
    fn drop_result(&mut self, idx: u32) {
        let op = self.ops.get(idx);
        if let State::Landed { res, flags } = op.state {
            match op.kind {
                Kind::Select | Kind::SelectMsg if res > 0 => {
                    if let Some(bid) = io_uring::cqueue::buffer_select(flags) {
                        drop(self.bufs[usize::from(op.group)].take(bid, 0));
                    }
                }
                Kind::Accept if res >= 0 => {
                    // SAFETY: a descriptor the kernel just made for us.
                    drop(unsafe { OwnedFd::from_raw_fd(res) });
                }
                _ => {}
            }
        }
        self.ops.end(idx);
    }

    /// Takes every posted completion: results wait in their requests, and
    /// their descriptors get events.
    fn reap(&mut self) -> u32 {
        let mut reaped = 0;
        while let Some(cqe) = self.ring.next_completion() {
            reaped += 1;
            let (user_data, res, flags) = (cqe.user_data(), cqe.result(), cqe.flags());
            let Some(idx) = self.ops.resolve(user_data) else {
                // A cancelled request's late word: give its buffer back.
                if let Some(bid) = io_uring::cqueue::buffer_select(flags) {
                    drop(self.bufs[crate::ops::group_of(user_data)].take(bid, 0));
                }
                continue;
            };
            let op = self.ops.get_mut(idx);
            let fd = op.fd;
            match op.kind {
                Kind::Poll => {
                    let ev = if res < 0 { libc::POLLERR as i32 } else { res };
                    let hangup = ev & i32::from(libc::POLLHUP | libc::POLLERR | libc::POLLRDHUP) != 0;
                    let readable = ev & i32::from(libc::POLLIN) != 0 || hangup;
                    let writable = ev & i32::from(libc::POLLOUT) != 0 || hangup;
                    self.ops.end(idx);
                    self.ready.push((fd, readable, writable, hangup));
                }
                Kind::Select | Kind::SelectMsg if res == -libc::ENOBUFS => {
                    if usize::from(op.group) == LARGE && op.kind == Kind::Select {
                        // Every large buffer is lent (users hold slices,
                        // slow writes carry them): the read takes a small
                        // one, copied and back at once, rather than wait
                        // for someone else's slowness.
                        op.group = SMALL as u8;
                        op.len = op.len.min(BUFFER_SIZES[SMALL]);
                    }
                    self.ran_dry[usize::from(op.group)] = true;
                    op.state = State::Starved;
                    self.starved.push(idx);
                }
                _ if (res == -libc::EINTR || res == -libc::EAGAIN) && op.kind != Kind::Connect => {
                    // Not an answer: ask again.
                    op.state = State::Starved;
                    self.starved.push(idx);
                }
                _ => {
                    let (slot, kind, recv) = (
                        op.slot,
                        op.kind,
                        op.stream && matches!(op.kind, Kind::Direct | Kind::Select),
                    );
                    op.state = State::Landed { res, flags };
                    if recv && res > 0 {
                        self.set_hint(fd, DRAINED, !io_uring::cqueue::sock_nonempty(flags));
                    } else if matches!(kind, Kind::RecvMsg | Kind::SelectMsg) && res >= 0 {
                        // Another may follow: the next receive asks first.
                        self.set_hint(fd, DRAINED, false);
                    }
                    self.ready.push((fd, slot == READ, slot == WRITE, false));
                }
            }
        }
        reaped
    }

    /// Gives buffers back to the ring and submits again the reads that
    /// found it empty (and requests interrupted before they began).
    fn rearm_starved(&mut self) -> io::Result<()> {
        // What each ring can give the reads submitted again here.
        let mut budget = [0usize; 2];
        for (group, bufs) in self.bufs.iter_mut().enumerate() {
            bufs.recycle();
            // Up to its most; past it, reads wait for buffers to come back.
            bufs.grow_if_short(std::mem::take(&mut self.ran_dry[group]));
            budget[group] = bufs.available();
        }
        if self.starved.is_empty() {
            return Ok(());
        }
        let mut waiting = std::mem::replace(&mut self.starved, std::mem::take(&mut self.rearming));
        for at in 0..waiting.len() {
            let idx = waiting[at];
            let op = self.ops.get_mut(idx);
            let (fd, kind, len, group, stream) = (op.fd, op.kind, op.len, usize::from(op.group), op.stream);
            if matches!(kind, Kind::Select | Kind::SelectMsg) {
                if budget[group] == 0 {
                    // No buffer for it yet: one comes back once the engine
                    // has copied its bytes out (a later turn), or a user
                    // drops the slices of a lent one. The read waits, in
                    // its place: no more reads are sent to find the ring
                    // empty than it has buffers.
                    self.starved.push(idx);
                    continue;
                }
                budget[group] -= 1;
            }
            let op = self.ops.get_mut(idx);
            op.state = State::InFlight;
            let sqe = match kind {
                Kind::Select => select_read(fd, stream, len, group as u16, self.recv_priority(fd)),
                // An interrupted request, or a datagram receive that
                // found no buffer: its memory is still the caller's
                // stored buffer (or none); the engine tries again.
                _ => {
                    let slot = op.slot;
                    self.ops.end(idx);
                    self.ready.push((fd, slot == READ, slot == WRITE, false));
                    continue;
                }
            };
            let sqe = sqe.user_data(self.ops.user_data(idx));
            // SAFETY: a buffer-select read points to no memory of ours;
            // the kernel picks a ring buffer.
            if let Err(e) = unsafe { self.ring.push(&sqe) } {
                // Not queued: it stays to be submitted again, as do the
                // ones after it.
                self.ops.get_mut(idx).state = State::Starved;
                self.starved.extend_from_slice(&waiting[at..]);
                waiting.clear();
                self.rearming = waiting;
                return Err(e);
            }
        }
        waiting.clear();
        self.rearming = waiting;
        Ok(())
    }
}

impl Drop for UringPoller {
    fn drop(&mut self) {
        let inner = self.ring.get_mut().unwrap_or_else(PoisonError::into_inner);
        if !inner.ring.usable_here() {
            // Bound to another thread: unregistering is refused from here,
            // and the buffers stay with the kernel until the ring is gone,
            // so they are leaked (`BufRing`'s drop).
            return;
        }
        // The engine cancels every request before it lets go of a buffer;
        // what is left (polls) points to no memory of ours. The buffer
        // ring is unregistered so that its memory can be freed.
        for bufs in &mut inner.bufs {
            if bufs.unregister(inner.ring.uring()).is_err() {
                // Left registered: `BufRing`'s drop leaks the buffers.
            }
        }
    }
}

/// How many buffers of each size ([`BUFFER_SIZES`]) a swap limit of
/// `bytes` allows: a third of it in large buffers (at least one), the rest
/// in small ones (at least one); each ring holds at most 32,768.
fn ring_shape(bytes: usize) -> [u16; 2] {
    let most = |bytes: usize, size: usize| (bytes / size).clamp(1, 1 << 15) as u16;
    let large = most(bytes / 3, BUFFER_SIZES[LARGE]);
    let small = most(
        bytes.saturating_sub(usize::from(large) * BUFFER_SIZES[LARGE]),
        BUFFER_SIZES[SMALL],
    );
    [small, large]
}

/// The provided-buffer rings for a swap limit of `bytes`, registered with
/// `ring`.
fn buffer_rings(ring: &Ring, bytes: usize) -> io::Result<[BufRing; 2]> {
    let shape = ring_shape(bytes);
    let ring_of = |group: usize| {
        let most = shape[group];
        BufRing::new(
            ring.uring(),
            group as u16,
            most,
            BUFFER_SIZES[group],
            FIRST_BUFFERS[group].min(most),
        )
    };
    Ok([ring_of(SMALL)?, ring_of(LARGE)?])
}

/// A buffer-select read of at most `len` bytes: `recv` on a stream
/// socket, `read` otherwise.
fn select_read(fd: RawFd, stream: bool, len: usize, group: u16, priority: u16) -> squeue::Entry {
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    let read = if stream {
        opcode::Recv::new(types::Fd(fd), std::ptr::null_mut(), len)
            .ioprio(priority)
            .buf_group(group)
            .build()
    } else {
        opcode::Read::new(types::Fd(fd), std::ptr::null_mut(), len)
            .offset(u64::MAX)
            .buf_group(group)
            .build()
    };
    read.flags(squeue::Flags::BUFFER_SELECT)
}

/// A buffer-select receive of one datagram of at most `len` bytes from
/// ring `group`, with its header in `mem`.
fn select_datagram(fd: RawFd, mem: &mut crate::ops::Mem, len: usize, group: u16) -> squeue::Entry {
    // The kernel takes the size from the one entry; its address is the
    // buffer it picks.
    let msg = mem.datagram_receive(std::ptr::null_mut(), len);
    opcode::RecvMsg::new(types::Fd(fd), msg)
        .ioprio(RECV_POLL_FIRST)
        .buf_group(group)
        .build()
        .flags(squeue::Flags::BUFFER_SELECT)
}

/// Copies `bytes` to the start of `buf`; returns the part filled.
///
/// # Panics
///
/// If `buf` is shorter than `bytes`.
fn copy_into<'a>(bytes: &[u8], buf: &'a mut [MaybeUninit<u8>]) -> &'a mut [u8] {
    let room = &mut buf[..bytes.len()];
    // SAFETY: `room` has exactly `bytes.len()` bytes, all written here,
    // so viewing them as initialised `u8` (the same layout) is sound; the
    // two do not overlap (`bytes` is borrowed shared, `buf` exclusively).
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), room.as_mut_ptr().cast::<u8>(), bytes.len());
        &mut *(std::ptr::from_mut(room) as *mut [u8])
    }
}

/// The most bytes one request on the ring is given: Linux's
/// `MAX_RW_COUNT` (`INT_MAX` rounded down to a page), the most one
/// `read`, `recv` or `send` moves. A longer one is refused with `EINVAL`
/// (its result would not fit the completion's `i32`), where the system
/// call moves what it can: longer buffers are offered this much.
const MAX_IO: u32 = 0x7fff_f000;

/// The length a request on the ring is given for `len` bytes.
fn io_len(len: usize) -> u32 {
    u32::try_from(len).map_or(MAX_IO, |len| len.min(MAX_IO))
}

/// A completion's result as the engine's outcome.
fn outcome(res: i32) -> IoOutcome {
    if res >= 0 {
        IoOutcome::Done(res as usize)
    } else if res == -libc::EAGAIN {
        IoOutcome::WouldBlock
    } else if res == -libc::ENOBUFS {
        IoOutcome::Starved
    } else {
        IoOutcome::Failed(io::Error::from_raw_os_error(-res))
    }
}

/// The peer address an accept wrote, if it is one gaio names.
fn peer_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<PeerAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    let len = len as usize;
    match i32::from(storage.ss_family) {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a `sockaddr_in`,
            // and the kernel wrote all of it (length checked).
            let sin = unsafe { &*std::ptr::from_ref(storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddrV4::new(ip, u16::from_be(sin.sin_port)).into())
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for `sockaddr_in6`.
            let sin6 = unsafe { &*std::ptr::from_ref(storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(
                SocketAddrV6::new(
                    ip,
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                )
                .into(),
            )
        }
        libc::AF_UNIX => {
            // SAFETY: as above, for `sockaddr_un`; only the `len` bytes the
            // kernel wrote are read below.
            let sun = unsafe { &*std::ptr::from_ref(storage).cast::<libc::sockaddr_un>() };
            let offset = std::mem::offset_of!(libc::sockaddr_un, sun_path);
            let path_len = len.saturating_sub(offset).min(sun.sun_path.len());
            let path: Vec<u8> = sun.sun_path[..path_len].iter().map(|&c| c as u8).collect();
            Some(PeerAddr::Unix(match path.split_first() {
                None => gaio_core::UnixAddr::unnamed(),
                Some((0, name)) => gaio_core::UnixAddr::from_abstract_name(name),
                Some(_) => {
                    let end = path.iter().position(|&c| c == 0).unwrap_or(path.len());
                    let path = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&path[..end]);
                    gaio_core::UnixAddr::from_path(path)
                }
            }))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::os::fd::AsFd as _;

    use super::*;

    /// Makes `attempt` until it ends (`Some`; bounded in time), waiting
    /// for the ring between attempts.
    fn until_ended<T>(poller: &UringPoller, mut attempt: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut events = Vec::new();
        loop {
            if let Some(ended) = attempt() {
                return ended;
            }
            assert!(Instant::now() < deadline, "the request did not end within 5 s");
            events.clear();
            poller
                .wait(&mut (), &mut events, Some(Duration::from_millis(100)))
                .unwrap();
        }
    }

    /// Reads on `fd` until one ends.
    fn read_until_done(poller: &UringPoller, fd: BorrowedFd<'_>, buf: &mut [u8]) -> usize {
        until_ended(poller, || match poller.read(fd, FdKind::StreamSocket, buf) {
            IoOutcome::Done(n) => Some(n),
            IoOutcome::WouldBlock => None,
            other => panic!("read failed: {other:?}"),
        })
    }

    /// A UDP socket on loopback, registered with `poller`.
    fn udp_registered(poller: &UringPoller) -> std::net::UdpSocket {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        // SAFETY: every test deregisters its sockets before dropping them.
        unsafe { poller.register(socket.as_fd(), socket.as_raw_fd() as u64) }.unwrap();
        socket
    }

    /// A poll the ring could not queue leaves no entry behind: the next
    /// `rearm` arms it, and the readiness it waits for is reported. (The
    /// entry used to stay: every later `rearm` took the direction for
    /// armed, and no event came.)
    #[test]
    fn a_poll_the_ring_could_not_queue_is_armed_by_the_next_rearm() {
        let Some(poller) = poller_here() else {
            return;
        };
        let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        // SAFETY: deregistered below, before `a` is dropped.
        unsafe { poller.register(a.as_fd(), 7) }.unwrap();
        crate::ring::FAIL_PUSHES.with(|left| left.set(1));
        let refused = poller.rearm(a.as_fd(), 7, Interest::READ).unwrap_err();
        assert_eq!(refused.raw_os_error(), Some(libc::ENOMEM));
        assert_eq!(
            kind_in(&poller, a.as_raw_fd(), POLL_IN),
            None,
            "the refused poll's entry"
        );
        poller.rearm(a.as_fd(), 7, Interest::READ).unwrap();
        assert_eq!(kind_in(&poller, a.as_raw_fd(), POLL_IN), Some(Kind::Poll));
        b.write_all(b"x").unwrap();
        let event = until_ended(&poller, || {
            let mut events = Vec::new();
            poller.wait(&mut (), &mut events, Some(Duration::ZERO)).unwrap();
            events.into_iter().find(|e| e.token == 7)
        });
        assert!(event.readable, "{event:?}");
        poller.deregister(a.as_fd()).unwrap();
    }

    /// A second `register` of a descriptor is refused with `EEXIST` and
    /// changes nothing, as the trait says (it used to replace the token);
    /// `reregister` replaces it, and `deregister` then forgets it.
    #[test]
    fn a_second_register_is_refused_and_reregister_replaces() {
        let Some(poller) = poller_here() else {
            return;
        };
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let token = |poller: &UringPoller| lock(&poller.tokens)[a.as_raw_fd() as usize];
        // SAFETY: deregistered below, before `a` is dropped.
        unsafe { poller.register(a.as_fd(), 7) }.unwrap();
        // SAFETY: as above.
        let again = unsafe { poller.register(a.as_fd(), 8) }.unwrap_err();
        assert_eq!(again.raw_os_error(), Some(libc::EEXIST));
        assert_eq!(token(&poller), 7);
        // SAFETY: as above.
        unsafe { poller.reregister(a.as_fd(), 9) }.unwrap();
        assert_eq!(token(&poller), 9);
        poller.deregister(a.as_fd()).unwrap();
        assert_eq!(token(&poller), NO_TOKEN);
        assert_eq!(
            poller.deregister(a.as_fd()).unwrap_err().raw_os_error(),
            Some(libc::ENOENT)
        );
    }

    /// The kind of request in `fd`'s `slot`, if one is there.
    fn kind_in(poller: &UringPoller, fd: RawFd, slot: usize) -> Option<Kind> {
        let mut inner = poller.inner();
        let idx = inner.ops.find(fd, slot)?;
        Some(inner.ops.get(idx).kind)
    }

    #[test]
    fn a_datagram_awaited_on_the_ring_comes_with_its_sender_and_truncation() {
        let Some(poller) = poller_here() else {
            return;
        };
        let rx = udp_registered(&poller);
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (fd, to) = (rx.as_raw_fd(), rx.local_addr().unwrap());
        let mut buf = [0u8; 4];

        // A quiet ring: the system call, and nothing on the ring (the
        // engine then waits for readability).
        let (outcome, _) = poller.recv_from(rx.as_fd(), &mut buf);
        assert!(matches!(outcome, IoOutcome::WouldBlock), "{outcome:?}");
        assert_eq!(kind_in(&poller, fd, READ), None);

        // A busy one. Nothing queued: the system call finds the socket
        // empty, and the receive waits on the ring.
        let pairs = make_busy(&poller);
        let (outcome, _) = poller.recv_from(rx.as_fd(), &mut buf);
        assert!(matches!(outcome, IoOutcome::WouldBlock), "{outcome:?}");
        assert_eq!(kind_in(&poller, fd, READ), Some(Kind::RecvMsg));
        tx.send_to(b"0123456789", to).unwrap();
        let (n, datagram) = until_ended(&poller, || match poller.recv_from(rx.as_fd(), &mut buf) {
            (IoOutcome::Done(n), datagram) => Some((n, datagram)),
            (IoOutcome::WouldBlock, _) => None,
            (other, _) => panic!("receive failed: {other:?}"),
        });
        assert_eq!((n, &buf), (4, b"0123"));
        assert!(datagram.truncated, "10 bytes into 4");
        assert_eq!(
            datagram.from.and_then(|a| a.as_inet()),
            Some(tx.local_addr().unwrap())
        );

        // A datagram came, so the next receive asks the socket first: one
        // already queued (loopback queues it before `send_to` returns) is
        // taken at once, whole.
        tx.send_to(b"ab", to).unwrap();
        let (outcome, datagram) = poller.recv_from(rx.as_fd(), &mut buf);
        assert!(matches!(outcome, IoOutcome::Done(2)), "{outcome:?}");
        assert_eq!((&buf[..2], datagram.truncated), (&b"ab"[..], false));
        assert_eq!(kind_in(&poller, fd, READ), None, "no request on the ring");
        end_busy(&poller, pairs);
        poller.deregister(rx.as_fd()).unwrap();
    }

    #[test]
    fn an_unnamed_unix_sender_is_reported_as_the_system_call_reports_it() {
        let Some(poller) = poller_here() else {
            return;
        };
        let (ours, peer) = std::os::unix::net::UnixDatagram::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        // SAFETY: deregistered below, before `ours` is dropped.
        unsafe { poller.register(ours.as_fd(), 1) }.unwrap();
        peer.send(b"by syscall").unwrap();
        let mut buf = [0u8; 32];
        let (outcome, by_syscall) = gaio_core::syscalls::recv_from(ours.as_fd(), &mut buf);
        assert!(matches!(outcome, IoOutcome::Done(10)), "{outcome:?}");
        poller.inner().set_hint(ours.as_raw_fd(), DRAINED, true);
        let pairs = make_busy(&poller);
        let (outcome, _) = poller.recv_from(ours.as_fd(), &mut buf);
        assert!(matches!(outcome, IoOutcome::WouldBlock), "{outcome:?}");
        assert_eq!(kind_in(&poller, ours.as_raw_fd(), READ), Some(Kind::RecvMsg));
        peer.send(b"by ring").unwrap();
        let (n, by_ring) = until_ended(&poller, || match poller.recv_from(ours.as_fd(), &mut buf) {
            (IoOutcome::Done(n), datagram) => Some((n, datagram)),
            (IoOutcome::WouldBlock, _) => None,
            (other, _) => panic!("receive failed: {other:?}"),
        });
        assert_eq!(&buf[..n], b"by ring");
        assert_eq!(by_ring.from, by_syscall.from);
        end_busy(&poller, pairs);
        poller.deregister(ours.as_fd()).unwrap();
    }

    /// A non-blocking TCP socket, registered with `poller`.
    fn tcp_socket_registered(poller: &UringPoller) -> OwnedFd {
        use rustix::net::{socket_with, AddressFamily, SocketFlags, SocketType};
        let fd = socket_with(
            AddressFamily::INET,
            SocketType::STREAM,
            SocketFlags::NONBLOCK,
            None,
        )
        .unwrap();
        // SAFETY: every test deregisters it before dropping it.
        unsafe { poller.register(fd.as_fd(), 1) }.unwrap();
        fd
    }

    /// Waits for the connect on `fd` to end; its result.
    fn connect_ended(poller: &UringPoller, fd: BorrowedFd<'_>) -> io::Result<()> {
        let mut events = Vec::new();
        until_ended(poller, || {
            let ended = events.iter().any(|e: &Event| e.writable);
            events.clear();
            if ended {
                return Some(poller.connect_result(fd));
            }
            poller
                .wait(&mut (), &mut events, Some(Duration::from_millis(100)))
                .unwrap();
            None
        })
    }

    #[test]
    fn a_tcp_connect_goes_on_the_ring_and_its_completion_says_how_it_ended() {
        let Some(poller) = poller_here() else {
            return;
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let to = PeerAddr::from(listener.local_addr().unwrap());
        let socket = tcp_socket_registered(&poller);
        let fd = socket.as_raw_fd();
        assert!(!poller.connect(socket.as_fd(), &to).unwrap(), "in progress");
        assert_eq!(kind_in(&poller, fd, WRITE), Some(Kind::Connect));
        assert!(
            !poller.connect(socket.as_fd(), &to).unwrap(),
            "asked again: still"
        );
        connect_ended(&poller, socket.as_fd()).expect("connected");
        assert_eq!(kind_in(&poller, fd, WRITE), None, "the result was taken");
        let (_, from) = listener.accept().unwrap();
        let ours = rustix::net::getsockname(&socket).unwrap();
        assert_eq!(
            PeerAddr::from(from),
            PeerAddr::from(std::net::SocketAddr::try_from(ours).unwrap())
        );
        poller.deregister(socket.as_fd()).unwrap();

        // Nobody listens: refused, as the completion says.
        let closed = listener.local_addr().unwrap();
        drop(listener);
        let socket = tcp_socket_registered(&poller);
        assert!(!poller.connect(socket.as_fd(), &PeerAddr::from(closed)).unwrap());
        let e = connect_ended(&poller, socket.as_fd()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
        poller.deregister(socket.as_fd()).unwrap();
    }

    #[test]
    fn a_cancelled_connect_leaves_nothing_behind() {
        let Some(poller) = poller_here() else {
            return;
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let to = PeerAddr::from(listener.local_addr().unwrap());
        let socket = tcp_socket_registered(&poller);
        assert!(!poller.connect(socket.as_fd(), &to).unwrap());
        // Cancelled at once (it may have ended meanwhile: loopback is
        // quick): nothing is kept, the slot is free, and the socket can be
        // closed.
        assert!(
            !poller.cancel(socket.as_fd(), Interest::WRITE, true),
            "a connect is not kept"
        );
        assert_eq!(kind_in(&poller, socket.as_raw_fd(), WRITE), None);
        assert_eq!(poller.inner().ops.in_flight(), 0);
        poller.deregister(socket.as_fd()).unwrap();
        drop(socket);
    }

    #[test]
    fn a_swap_datagram_takes_a_ring_buffer_only_when_it_arrives() {
        let Some(poller) = poller_here() else {
            return;
        };
        let rx = udp_registered(&poller);
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (fd, to) = (rx.as_raw_fd(), rx.local_addr().unwrap());
        let free = |group: usize| poller.inner().bufs[group].available();
        let (small, large) = (free(SMALL), free(LARGE));
        // Busy: receives wait on the ring (the busy reads take no buffer).
        let pairs = make_busy(&poller);
        // (kept bytes, datagram bytes, the ring whose buffer it lands in)
        for (kept, sent, group) in [(2048, 2048, SMALL), (2048, 2049, SMALL), (2999, 3000, LARGE)] {
            let mut room = vec![MaybeUninit::uninit(); kept + 1];
            let (outcome, _, _) = poller.recv_from_uninit(rx.as_fd(), &mut room);
            assert!(matches!(outcome, IoOutcome::WouldBlock), "{outcome:?}");
            assert_eq!(kind_in(&poller, fd, READ), Some(Kind::SelectMsg));
            assert_eq!(
                (free(SMALL), free(LARGE)),
                (small, large),
                "no buffer while it waits"
            );
            let bytes: Vec<u8> = (0..sent).map(|i| (i * 7 % 251) as u8).collect();
            tx.send_to(&bytes, to).unwrap();
            let (got, datagram) =
                until_ended(&poller, || match poller.recv_from_uninit(rx.as_fd(), &mut room) {
                    (IoOutcome::Done(_), filled, datagram) => Some((filled.to_vec(), datagram)),
                    (IoOutcome::WouldBlock, ..) => None,
                    (other, ..) => panic!("receive failed: {other:?}"),
                });
            assert_eq!(got, bytes[..kept.min(sent)], "{kept} kept of {sent} ({group})");
            assert_eq!(datagram.truncated, sent > kept, "{kept} kept of {sent}");
            assert_eq!(
                datagram.from.and_then(|a| a.as_inet()),
                Some(tx.local_addr().unwrap())
            );
            // The buffer goes back at the next turn.
            poller.inner().rearm_starved().unwrap();
            assert_eq!((free(SMALL), free(LARGE)), (small, large), "the buffer came back");
            // The next receive would ask the socket first: make it wait.
            poller.inner().set_hint(fd, DRAINED, true);
        }
        end_busy(&poller, pairs);
        poller.deregister(rx.as_fd()).unwrap();
    }

    #[test]
    fn a_busy_ring_sends_datagrams_on_the_ring() {
        let Some(poller) = poller_here() else {
            return;
        };
        let pairs = make_busy(&poller);
        let tx = udp_registered(&poller);
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let to = PeerAddr::from(rx.local_addr().unwrap());
        let bytes = b"a datagram sent on the ring";
        let outcome = poller.send_to(tx.as_fd(), bytes, &to);
        assert!(matches!(outcome, IoOutcome::WouldBlock), "{outcome:?}");
        assert_eq!(kind_in(&poller, tx.as_raw_fd(), WRITE), Some(Kind::Write));
        let sent = until_ended(&poller, || match poller.send_to(tx.as_fd(), bytes, &to) {
            IoOutcome::Done(n) => Some(n),
            IoOutcome::WouldBlock => None,
            other => panic!("send failed: {other:?}"),
        });
        assert_eq!(sent, bytes.len());
        let mut got = [0u8; 64];
        let (n, from) = rx.recv_from(&mut got).unwrap();
        assert_eq!((&got[..n], from), (&bytes[..], tx.local_addr().unwrap()));

        // An address that names no socket fails before anything starts.
        let nobody = PeerAddr::Unix(gaio_core::UnixAddr::unnamed());
        let IoOutcome::Failed(e) = poller.send_to(tx.as_fd(), bytes, &nobody) else {
            panic!("an unnamed address was sent to")
        };
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(kind_in(&poller, tx.as_raw_fd(), WRITE), None);

        end_busy(&poller, pairs);
        poller.deregister(tx.as_fd()).unwrap();
    }

    type Pair = (std::os::unix::net::UnixStream, std::os::unix::net::UnixStream);

    /// Reads pending on socket pairs: the ring is no longer quiet.
    fn make_busy(poller: &UringPoller) -> Vec<Pair> {
        let pairs: Vec<Pair> = (0..QUIET_BELOW)
            .map(|_| std::os::unix::net::UnixStream::pair().unwrap())
            .collect();
        for (ours, _) in &pairs {
            // SAFETY: deregistered by `end_busy`, before the pairs are
            // dropped.
            unsafe { poller.register(ours.as_fd(), 0) }.unwrap();
            let mut room = [MaybeUninit::uninit(); 16];
            let (outcome, _) = poller.read_uninit(ours.as_fd(), FdKind::StreamSocket, &mut room);
            assert!(matches!(outcome, IoOutcome::WouldBlock));
        }
        pairs
    }

    /// Ends [`make_busy`]'s reads.
    fn end_busy(poller: &UringPoller, pairs: Vec<Pair>) {
        for (ours, _) in &pairs {
            let _ = poller.cancel(ours.as_fd(), Interest::READ, false);
            poller.deregister(ours.as_fd()).unwrap();
        }
    }

    #[test]
    fn a_busy_ring_shuts_down_on_the_ring_and_a_quiet_one_at_once() {
        use std::io::Read as _;
        let Some(poller) = poller_here() else {
            return;
        };
        let (ours, mut peer) = std::os::unix::net::UnixStream::pair().unwrap();
        // SAFETY: deregistered below, before `ours` is dropped.
        unsafe { poller.register(ours.as_fd(), 1) }.unwrap();
        let pairs = make_busy(&poller);
        let outcome = poller.shutdown_write(ours.as_fd());
        assert!(matches!(outcome, IoOutcome::WouldBlock), "{outcome:?}");
        assert_eq!(kind_in(&poller, ours.as_raw_fd(), WRITE), Some(Kind::Shutdown));
        let done = until_ended(&poller, || match poller.shutdown_write(ours.as_fd()) {
            IoOutcome::WouldBlock => None,
            other => Some(other),
        });
        assert!(matches!(done, IoOutcome::Done(0)), "{done:?}");
        let mut rest = Vec::new();
        assert_eq!(peer.read_to_end(&mut rest).unwrap(), 0, "end of stream");
        end_busy(&poller, pairs);

        // Quiet: the system call, at once (and its error, on a socket
        // that is not connected).
        let lone = tcp_socket_registered(&poller);
        let IoOutcome::Failed(e) = poller.shutdown_write(lone.as_fd()) else {
            panic!("a socket that never connected was shut down")
        };
        assert_eq!(e.raw_os_error(), Some(libc::ENOTCONN));
        assert_eq!(kind_in(&poller, lone.as_raw_fd(), WRITE), None);
        poller.deregister(lone.as_fd()).unwrap();
        poller.deregister(ours.as_fd()).unwrap();
    }

    /// A poller, or `None` where the kernel refuses rings (the probe's own
    /// test checks that refusal is what this machine should give).
    fn poller_here() -> Option<UringPoller> {
        if let Err(why) = crate::probe() {
            println!("io_uring is not available here, so the ring is not tested: {why}");
            return None;
        }
        Some(UringPoller::new().unwrap())
    }

    #[test]
    fn a_read_after_one_that_drained_the_socket_waits_first_and_still_gets_bytes_already_there() {
        let Some(poller) = poller_here() else {
            return;
        };
        let (ours, mut peer) = std::os::unix::net::UnixStream::pair().unwrap();
        // SAFETY: `ours` outlives its registration (deregistered below).
        unsafe { poller.register(ours.as_fd(), 1) }.unwrap();
        let fd = ours.as_raw_fd();
        let mut buf = [0u8; 4];

        peer.write_all(b"0123456789").unwrap();
        assert_eq!(read_until_done(&poller, ours.as_fd(), &mut buf), 4);
        assert_eq!(&buf, b"0123");
        assert_eq!(
            poller.inner().hints(fd) & DRAINED,
            0,
            "bytes were left: no wait first"
        );

        assert_eq!(read_until_done(&poller, ours.as_fd(), &mut buf), 4);
        assert_eq!(read_until_done(&poller, ours.as_fd(), &mut buf), 2);
        assert_eq!(&buf[..2], b"89");
        assert_eq!(
            poller.inner().hints(fd) & DRAINED,
            DRAINED,
            "the socket was left empty"
        );

        // Bytes that arrive before the next read is submitted: the read
        // waits for readability first, which it already has.
        peer.write_all(b"ab").unwrap();
        assert_eq!(read_until_done(&poller, ours.as_fd(), &mut buf), 2);
        assert_eq!(&buf[..2], b"ab");
        // And bytes that arrive after it was submitted.
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            peer.write_all(b"xyz").unwrap();
            peer
        });
        assert_eq!(read_until_done(&poller, ours.as_fd(), &mut buf), 3);
        assert_eq!(&buf[..3], b"xyz");
        drop(sender.join().unwrap());
        poller.deregister(ours.as_fd()).unwrap();
    }

    /// A read into the engine's memory is in flight from its start until
    /// its result lands (the engine then leaves that memory alone); a
    /// buffer-select read, into the ring's own buffers, never is.
    #[test]
    fn a_read_into_the_engines_memory_is_in_flight_until_it_lands() {
        let Some(poller) = poller_here() else {
            return;
        };
        let (ours, mut peer) = std::os::unix::net::UnixStream::pair().unwrap();
        // SAFETY: `ours` outlives its registration (deregistered below).
        unsafe { poller.register(ours.as_fd(), 1) }.unwrap();
        let mut buf = [0u8; 4];
        assert!(!poller.read_in_flight(ours.as_fd()), "no read yet");
        assert!(matches!(
            poller.read(ours.as_fd(), FdKind::StreamSocket, &mut buf),
            IoOutcome::WouldBlock
        ));
        assert!(poller.read_in_flight(ours.as_fd()), "submitted, nothing to read");
        let mut events = Vec::new();
        poller.wait(&mut (), &mut events, Some(Duration::ZERO)).unwrap();
        assert!(
            poller.read_in_flight(ours.as_fd()),
            "in the kernel, waiting for bytes"
        );
        peer.write_all(b"ok").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while poller.read_in_flight(ours.as_fd()) {
            assert!(Instant::now() < deadline, "the read did not land within 5 s");
            poller
                .wait(&mut (), &mut events, Some(Duration::from_millis(100)))
                .unwrap();
        }
        assert!(matches!(
            poller.read(ours.as_fd(), FdKind::StreamSocket, &mut buf),
            IoOutcome::Done(2)
        ));
        assert_eq!(&buf[..2], b"ok");
        assert!(!poller.read_in_flight(ours.as_fd()), "taken");

        let mut room = [MaybeUninit::uninit(); 64];
        assert!(matches!(
            poller
                .read_uninit(ours.as_fd(), FdKind::StreamSocket, &mut room)
                .0,
            IoOutcome::WouldBlock
        ));
        assert!(
            !poller.read_in_flight(ours.as_fd()),
            "a buffer-select read holds no memory of the engine's"
        );
        // Nothing came for it: the cancel ends it in flight (no result).
        assert!(
            !poller.cancel(ours.as_fd(), Interest::READ, false),
            "no bytes were sent for it"
        );
        poller.deregister(ours.as_fd()).unwrap();
    }

    /// Holds nest: a hold ended inside another (taking a result can free
    /// a connection, which settles its I/O under a hold of its own) leaves
    /// the ring held, starting nothing, until the outer one ends.
    #[test]
    fn holds_nest_and_nothing_starts_until_the_outer_one_ends() {
        let Some(poller) = poller_here() else {
            return;
        };
        let (ours, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        // SAFETY: `ours` outlives its registration (deregistered below).
        unsafe { poller.register(ours.as_fd(), 1) }.unwrap();
        let mut buf = [0u8; 4];
        poller.hold(true);
        poller.hold(true);
        poller.hold(false);
        assert!(matches!(
            poller.read(ours.as_fd(), FdKind::StreamSocket, &mut buf),
            IoOutcome::WouldBlock
        ));
        assert!(!poller.read_in_flight(ours.as_fd()), "held: nothing started");
        poller.hold(false);
        assert!(matches!(
            poller.read(ours.as_fd(), FdKind::StreamSocket, &mut buf),
            IoOutcome::WouldBlock
        ));
        assert!(poller.read_in_flight(ours.as_fd()), "no longer held: started");
        assert!(!poller.cancel(ours.as_fd(), Interest::READ, false));
        poller.deregister(ours.as_fd()).unwrap();
    }

    #[test]
    fn a_swap_limit_is_shared_between_the_rings_and_never_passed() {
        use gaio_core::{DEFAULT_SWAP_LIMIT, MAX_SWAP_LIMIT, MIN_SWAP_LIMIT};
        assert_eq!(ring_shape(DEFAULT_SWAP_LIMIT), [2048, 32]);
        assert_eq!(ring_shape(4 << 20), [1376, 21]);
        assert_eq!(ring_shape(MIN_SWAP_LIMIT), [96, 1]);
        assert_eq!(ring_shape(MAX_SWAP_LIMIT), [32768, 5461]);
        for limit in [
            MIN_SWAP_LIMIT,
            300_000,
            4 << 20,
            5_000_000,
            DEFAULT_SWAP_LIMIT,
            MAX_SWAP_LIMIT,
        ] {
            let [small, large] = ring_shape(limit).map(usize::from);
            assert!(
                small * BUFFER_SIZES[SMALL] + large * BUFFER_SIZES[LARGE] <= limit,
                "{limit}"
            );
        }
    }

    #[test]
    fn the_swap_limit_is_set_before_the_first_read_only() {
        let Some(poller) = poller_here() else {
            return;
        };
        poller.limit_swap(1 << 20).unwrap();
        assert_eq!(poller.inner().bufs.each_ref().map(|b| b.made().1), [352, 5]);
        let (ours, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        // SAFETY: `ours` outlives its registration (deregistered below).
        unsafe { poller.register(ours.as_fd(), 1) }.unwrap();
        let mut room = [MaybeUninit::uninit(); 64];
        let (outcome, _) = poller.read_uninit(ours.as_fd(), FdKind::StreamSocket, &mut room);
        assert!(matches!(outcome, IoOutcome::WouldBlock), "{outcome:?}");
        let e = poller.limit_swap(2 << 20).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        poller
            .limit_swap(1 << 20)
            .expect("the same limit again changes nothing");
        // The read ends here (it points to no memory of ours either way).
        let _ = poller.cancel(ours.as_fd(), Interest::READ, false);
        poller.deregister(ours.as_fd()).unwrap();
    }

    #[test]
    fn an_accepted_peer_address_is_read_as_the_kernel_wrote_it() {
        // SAFETY: all-zero is a valid `sockaddr_storage`.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let addr: std::net::SocketAddr = "127.0.0.1:4242".parse().unwrap();
        {
            // SAFETY: the storage is large enough for a `sockaddr_in`.
            let sin = unsafe { &mut *std::ptr::from_mut(&mut storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = 4242u16.to_be();
            sin.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        }
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(peer_addr(&storage, len), Some(addr.into()));
        assert_eq!(peer_addr(&storage, 2), None, "a short address is not read");
    }
}
