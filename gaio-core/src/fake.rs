//! A deterministic fake poller for testing the engine without sockets.
//!
//! Readiness *and* I/O are scripted: a test pushes bytes into a
//! connection's inbound queue, queues the events the "kernel" reports, and
//! scripts outcomes (would block, ENOBUFS, errors) for the next reads and
//! writes. Descriptors are real but inert (pipe ends), so hand-over works
//! unchanged. Nothing blocks: a wait with no scripted event sleeps at most a
//! millisecond, so deadline and retry timers still fire.
//!
//! [`FakePoller::new`] (through the `Poller` trait) records its state in a
//! thread-local slot; [`last`] returns a [`FakeHandle`] to it on the same
//! thread, after the watcher was built.
//!
//! # Listeners, connects and datagrams
//!
//! Every per-descriptor system call the engine makes in steady state goes
//! through a [`Poller`] hook, and the fake scripts each of them: `read`,
//! `write`, `recv_from`, `recv_from_uninit`, `send_to`, `accept` and
//! `connect_result`. A few calls do not, because they happen once in a
//! descriptor's life and decide what it *is*:
//!
//! * at hand-over, `getsockopt(SO_TYPE)` (stream, datagram or other) and,
//!   for a listener, `getsockopt(SO_ACCEPTCONN)` and `getsockname` (TCP or
//!   not);
//! * for a connect, `socket` and `connect` (`Shared::dial`);
//! * for an accepted connection, `setsockopt(TCP_NODELAY)` when its
//!   listener asks for it.
//!
//! A shutdown goes through [`Poller::shutdown_write`], which the fake
//! scripts in part: the next outcome of [`FakeConn::shutdown_script`] if
//! there is one, else the call is passed on to the kernel (so the other end
//! of a socket pair sees end of stream) and, if the kernel agrees, the fake
//! socket's write side is shut ([`FakeConn::write_shut`]): every later
//! write fails with `EPIPE`, as the kernel's would.
//!
//! A pipe end is "other", so with pipes alone the engine would refuse
//! every operation that needs a socket kind. Rather than teach the engine
//! a test-only way to be lied to, tests that need a kind hand over a real
//! socket of that kind: a listening TCP socket on 127.0.0.1 (nobody
//! connects to it), a UDP socket bound to 127.0.0.1, one end of a Unix
//! stream socket pair, a socket dialled to a loopback listener. The kernel
//! then answers the few calls above truthfully (and a shutdown really
//! reaches the other end of the pair, which a test can check), while every
//! byte, datagram, accepted connection and connect outcome still comes from
//! the script: the fake never reads, writes, accepts or asks `SO_ERROR` on
//! those sockets, and nothing polls them but the fake.
//!
//! Connections a scripted accept hands out are inert descriptors made by
//! [`inert_stream`] (a [`dummy_fd`] pipe end, except on Apple systems; see
//! [`FakeHandle::push_incoming`]); the engine treats them as stream
//! sockets, as it does every accepted connection, and their I/O is
//! scripted like any other. A listener that asks for `TCP_NODELAY` (a TCP
//! one, by default) cannot set it on a pipe and drops the connection, so
//! tests hand such listeners real TCP sockets
//! ([`FakeHandle::push_incoming_fd`]) or turn the option off.
//!
//! The fake remembers every registration and deregistration
//! ([`FakeState::registered`], [`FakeState::deregistered`]), with the
//! connection's final scripted state, so a test can find the descriptor a
//! connect made and check what happened to a connection after the engine
//! let go of it.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::{Datagram, Event, FdKind, IoOutcome, PeerAddr, Poller};

/// A scripted outcome for the next I/O call on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scripted {
    /// EAGAIN.
    WouldBlock,
    /// ENOBUFS.
    Starved,
    /// A failure with this raw OS error number.
    Fail(i32),
}

/// One fake connection: what the peer sent and what we wrote.
#[derive(Debug)]
pub struct FakeConn {
    /// The token the engine registered.
    pub token: u64,
    /// Bytes waiting to be read.
    pub inbound: VecDeque<u8>,
    /// After `inbound` is empty, reads return end of stream.
    pub eof: bool,
    /// Outcomes the next reads (and datagram receives) return instead of
    /// touching `inbound` (`datagrams`).
    pub read_script: VecDeque<Scripted>,
    /// Outcomes the next writes (and send-tos) return.
    pub write_script: VecDeque<Scripted>,
    /// How many more bytes writes accept before they would block. A
    /// datagram (a write on a datagram socket, a send-to) is sent whole or
    /// not at all: one larger than the room would block.
    pub write_room: usize,
    /// Everything written to a stream (or other) descriptor, in order.
    /// Datagrams go to `sent` instead.
    pub written: Vec<u8>,
    /// Read calls made (datagram receives included).
    pub reads: usize,
    /// Write calls made, with the number of slices each gathered (a
    /// send-to counts as one call of one slice).
    pub writes: Vec<usize>,

    /// Datagrams waiting to be received, each with its sender. An empty
    /// queue would block (a datagram socket has no end of stream).
    pub datagrams: VecDeque<(Vec<u8>, Option<PeerAddr>)>,
    /// The room each datagram receive offered: the length of the buffer
    /// given to `recv_from`, or to `recv_from_uninit` (whose last byte
    /// only tells truncation).
    pub recv_room: Vec<usize>,
    /// Datagrams sent, in order: by `send_to` with its destination, by a
    /// write on a datagram socket with `None`.
    pub sent: Vec<(Vec<u8>, Option<PeerAddr>)>,

    /// Connections waiting in the listen queue, each with its peer's
    /// address: what the next accepts return, first in first out. An
    /// empty queue answers EAGAIN.
    pub incoming: VecDeque<(OwnedFd, Option<PeerAddr>)>,
    /// Raw OS errors the next accepts return, one each, before `incoming`
    /// is looked at (ECONNABORTED, EMFILE, ...).
    pub accept_script: VecDeque<i32>,
    /// While set, every accept fails with this raw OS error (EMFILE while
    /// the process is out of descriptors), before `accept_script`.
    pub accept_fail: Option<i32>,
    /// Accept calls made.
    pub accepts: usize,

    /// What `connect_result` reports: `None` connected, `Some(errno)`
    /// failed so.
    pub connect_error: Option<i32>,
    /// `connect_result` calls made.
    pub connect_checks: usize,

    /// Outcomes the next shutdowns return instead of shutting the write
    /// side (a readiness poller's `shutdown(2)` never blocks: a test
    /// scripts failures).
    pub shutdown_script: VecDeque<Scripted>,
    /// Set by the first shutdown that succeeded: the length `written` had
    /// then. Writes after it fail with `EPIPE` and move nothing.
    pub write_shut: Option<usize>,
    /// Shutdown calls made.
    pub shutdowns: usize,
}

impl FakeConn {
    /// A fresh connection registered under `token`: nothing inbound,
    /// nothing scripted, unlimited room for writes.
    pub fn new(token: u64) -> Self {
        FakeConn {
            token,
            inbound: VecDeque::new(),
            eof: false,
            read_script: VecDeque::new(),
            write_script: VecDeque::new(),
            write_room: usize::MAX,
            written: Vec::new(),
            reads: 0,
            writes: Vec::new(),
            datagrams: VecDeque::new(),
            recv_room: Vec::new(),
            sent: Vec::new(),
            incoming: VecDeque::new(),
            accept_script: VecDeque::new(),
            accept_fail: None,
            accepts: 0,
            connect_error: None,
            connect_checks: 0,
            shutdown_script: VecDeque::new(),
            write_shut: None,
            shutdowns: 0,
        }
    }
}

/// The state behind a [`FakePoller`].
#[derive(Debug, Default)]
pub struct FakeState {
    /// Registered connections by descriptor number.
    pub conns: HashMap<RawFd, FakeConn>,
    /// Events the next wait reports.
    pub pending: Vec<Event>,
    /// Wake-ups received.
    pub wakes: usize,
    /// Waits made.
    pub waits: usize,
    /// Every registration, in order: descriptor number and token.
    pub registered: Vec<(RawFd, u64)>,
    /// Every deregistration, in order: descriptor number and the
    /// connection's state at that moment (connections still waiting in a
    /// listen queue are closed, as the kernel would reset them).
    pub deregistered: Vec<(RawFd, FakeConn)>,
}

/// The fake poller.
#[derive(Debug)]
pub struct FakePoller {
    state: Arc<Mutex<FakeState>>,
}

thread_local! {
    static LAST: RefCell<Option<Arc<Mutex<FakeState>>>> = const { RefCell::new(None) };
}

/// The state of the fake poller most recently created on this thread.
pub fn last() -> FakeHandle {
    let state = LAST
        .with(|l| l.borrow().clone())
        .expect("no FakePoller created on this thread");
    FakeHandle { state }
}

/// A test's grip on a fake poller's state.
#[derive(Debug, Clone)]
pub struct FakeHandle {
    state: Arc<Mutex<FakeState>>,
}

fn lock(state: &Mutex<FakeState>) -> MutexGuard<'_, FakeState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeHandle {
    /// Runs `f` on the whole state.
    pub fn with<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        f(&mut lock(&self.state))
    }

    /// Runs `f` on connection `fd`.
    pub fn conn<R>(&self, fd: u32, f: impl FnOnce(&mut FakeConn) -> R) -> R {
        self.with(|s| f(s.conns.get_mut(&(fd as RawFd)).expect("fd not registered")))
    }

    /// The peer sends `bytes` (no event is reported; see [`event`](Self::event)).
    pub fn send(&self, fd: u32, bytes: &[u8]) {
        self.conn(fd, |c| c.inbound.extend(bytes));
    }

    /// Queues an event for connection `fd` with its current token.
    pub fn event(&self, fd: u32, readable: bool, writable: bool, hangup: bool) {
        let token = self.conn(fd, |c| c.token);
        self.event_token(token, readable, writable, hangup);
    }

    /// Queues an event carrying an arbitrary token (a stale one, say).
    pub fn event_token(&self, token: u64, readable: bool, writable: bool, hangup: bool) {
        self.with(|s| {
            s.pending.push(Event {
                token,
                readable,
                writable,
                hangup,
                urgent: false,
            })
        });
    }

    /// A client connects to listener `fd`: an inert descriptor (see
    /// [`inert_stream`]) joins its listen queue, with `peer` as the
    /// address the accept reports. Returns the descriptor's number, which
    /// the accepted connection will carry. No event is reported.
    pub fn push_incoming(&self, fd: u32, peer: Option<PeerAddr>) -> u32 {
        self.push_incoming_fd(fd, inert_stream(), peer)
    }

    /// Like [`push_incoming`](Self::push_incoming) with a descriptor of
    /// the test's choosing (a real TCP socket, to see the options the
    /// engine sets on accepted connections).
    pub fn push_incoming_fd(&self, fd: u32, incoming: OwnedFd, peer: Option<PeerAddr>) -> u32 {
        let number = incoming.as_raw_fd() as u32;
        self.conn(fd, |c| c.incoming.push_back((incoming, peer)));
        number
    }

    /// A datagram from `from` arrives at `fd` (no event is reported).
    pub fn push_datagram(&self, fd: u32, bytes: &[u8], from: Option<PeerAddr>) {
        self.conn(fd, |c| c.datagrams.push_back((bytes.to_vec(), from)));
    }

    /// The descriptor number of the latest registration (a connect's
    /// socket right after it was submitted, say).
    pub fn last_registered(&self) -> u32 {
        self.with(|s| s.registered.last().expect("nothing registered").0 as u32)
    }

    /// Runs `f` on the state connection `fd` had when it was last
    /// deregistered; `None` if it never was.
    pub fn deregistered<R>(&self, fd: u32, f: impl FnOnce(&FakeConn) -> R) -> Option<R> {
        self.with(|s| {
            s.deregistered
                .iter()
                .rev()
                .find(|(n, _)| *n == fd as RawFd)
                .map(|(_, c)| f(c))
        })
    }
}

/// An inert descriptor to hand over: the read end of a pipe whose write
/// end is closed at once (Miri supports pipes but not `/dev/null`).
pub fn dummy_fd() -> OwnedFd {
    let (read_end, _write_end) = rustix::pipe::pipe().expect("pipe");
    read_end
}

/// An inert descriptor for an accepted connection: [`dummy_fd`], except on
/// Apple systems, where the engine sets `SO_NOSIGPIPE` on every accepted
/// socket and a pipe would refuse it; there, one end of a Unix stream
/// socket pair whose other end is closed.
pub fn inert_stream() -> OwnedFd {
    #[cfg(target_vendor = "apple")]
    {
        use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
        let (one, _other) = socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::empty(),
            None,
        )
        .expect("socketpair");
        one
    }
    #[cfg(not(target_vendor = "apple"))]
    dummy_fd()
}

fn errno(raw: i32) -> io::Error {
    io::Error::from_raw_os_error(raw)
}

fn scripted(next: Option<Scripted>) -> Result<(), IoOutcome> {
    match next {
        None => Ok(()),
        Some(Scripted::WouldBlock) => Err(IoOutcome::WouldBlock),
        Some(Scripted::Starved) => Err(IoOutcome::Starved),
        Some(Scripted::Fail(errno)) => Err(IoOutcome::Failed(io::Error::from_raw_os_error(errno))),
    }
}

/// Copies `bytes` into the start of `buf` (as many as fit) and returns the
/// initialised prefix of `keep` bytes (`keep` <= the bytes copied).
fn fill_uninit<'a>(buf: &'a mut [MaybeUninit<u8>], bytes: &[u8], keep: usize) -> &'a mut [u8] {
    let copied = bytes.len().min(buf.len());
    assert!(keep <= copied);
    for (slot, &b) in buf.iter_mut().zip(&bytes[..copied]) {
        slot.write(b);
    }
    let filled = &mut buf[..keep];
    // SAFETY: the loop above wrote each of the first `copied >= keep`
    // bytes, and `MaybeUninit<u8>` has the layout of `u8`.
    unsafe { &mut *(filled as *mut [MaybeUninit<u8>] as *mut [u8]) }
}

impl FakePoller {
    /// The token `fd` is registered under, if it is.
    pub(crate) fn token_of(&self, fd: RawFd) -> Option<u64> {
        lock(&self.state).conns.get(&fd).map(|c| c.token)
    }

    /// Queues `ev` for the next wait.
    pub(crate) fn push_event(&self, ev: Event) {
        lock(&self.state).pending.push(ev);
    }

    fn with_conn<R>(&self, fd: BorrowedFd<'_>, f: impl FnOnce(&mut FakeConn) -> R) -> R {
        let mut s = lock(&self.state);
        let c = s
            .conns
            .get_mut(&fd.as_raw_fd())
            .expect("I/O on an unregistered fd");
        f(c)
    }

    fn script(&self, fd: BorrowedFd<'_>, read: bool) -> Result<(), IoOutcome> {
        self.with_conn(fd, |c| {
            scripted(if read {
                c.reads += 1;
                c.read_script.pop_front()
            } else {
                c.write_script.pop_front()
            })
        })
    }

    /// Takes up to `max` inbound bytes; `Err` is the outcome when none.
    fn take_inbound(&self, fd: BorrowedFd<'_>, max: usize) -> Result<Vec<u8>, IoOutcome> {
        self.with_conn(fd, |c| {
            if c.inbound.is_empty() {
                return Err(if c.eof {
                    IoOutcome::Done(0)
                } else {
                    IoOutcome::WouldBlock
                });
            }
            let n = max.min(c.inbound.len());
            Ok(c.inbound.drain(..n).collect())
        })
    }

    /// One datagram receive offering `room` bytes: the script, then the
    /// next datagram.
    fn take_datagram(
        &self,
        fd: BorrowedFd<'_>,
        room: usize,
    ) -> Result<(Vec<u8>, Option<PeerAddr>), IoOutcome> {
        self.with_conn(fd, |c| {
            c.reads += 1;
            c.recv_room.push(room);
            scripted(c.read_script.pop_front())?;
            c.datagrams.pop_front().ok_or(IoOutcome::WouldBlock)
        })
    }

    /// Sends one datagram of `bytes` (given in `slices` slices) to
    /// `dest`: the script, then the room.
    fn send_datagram(
        &self,
        fd: BorrowedFd<'_>,
        bytes: Vec<u8>,
        slices: usize,
        dest: Option<&PeerAddr>,
    ) -> IoOutcome {
        self.with_conn(fd, |c| {
            c.writes.push(slices);
            if let Err(outcome) = scripted(c.write_script.pop_front()) {
                return outcome;
            }
            if bytes.len() > c.write_room {
                return IoOutcome::WouldBlock;
            }
            c.write_room -= bytes.len();
            let n = bytes.len();
            c.sent.push((bytes, dest.cloned()));
            IoOutcome::Done(n)
        })
    }
}

impl Poller for FakePoller {
    type Events = ();

    fn backend(&self) -> crate::Backend {
        crate::Backend::Other
    }

    fn new() -> io::Result<Self> {
        let state = Arc::new(Mutex::new(FakeState::default()));
        LAST.with(|l| *l.borrow_mut() = Some(Arc::clone(&state)));
        Ok(FakePoller { state })
    }

    fn events(_capacity: usize) -> Self::Events {}

    /// Keeps only the number, as a real poller may: see `Poller::register`.
    unsafe fn register(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let mut s = lock(&self.state);
        s.registered.push((fd.as_raw_fd(), token));
        s.conns.insert(fd.as_raw_fd(), FakeConn::new(token));
        Ok(())
    }

    fn deregister(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let mut s = lock(&self.state);
        if let Some(mut c) = s.conns.remove(&fd.as_raw_fd()) {
            // Connections nobody accepted go with their listener.
            c.incoming.clear();
            s.deregistered.push((fd.as_raw_fd(), c));
        }
        Ok(())
    }

    unsafe fn reregister(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        if let Some(c) = lock(&self.state).conns.get_mut(&fd.as_raw_fd()) {
            c.token = token;
        }
        Ok(())
    }

    fn wait(&self, _raw: &mut (), out: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        let events = {
            let mut s = lock(&self.state);
            s.waits += 1;
            std::mem::take(&mut s.pending)
        };
        if events.is_empty() {
            std::thread::sleep(timeout.unwrap_or(Duration::MAX).min(Duration::from_millis(1)));
        }
        out.extend(events);
        Ok(())
    }

    fn wake(&self) -> io::Result<()> {
        lock(&self.state).wakes += 1;
        Ok(())
    }

    fn read(&self, fd: BorrowedFd<'_>, _kind: FdKind, buf: &mut [u8]) -> IoOutcome {
        if let Err(scripted) = self.script(fd, true) {
            return scripted;
        }
        match self.take_inbound(fd, buf.len()) {
            Ok(bytes) => {
                buf[..bytes.len()].copy_from_slice(&bytes);
                IoOutcome::Done(bytes.len())
            }
            Err(outcome) => outcome,
        }
    }

    fn read_uninit<'a>(
        &self,
        fd: BorrowedFd<'_>,
        _kind: FdKind,
        buf: &'a mut [MaybeUninit<u8>],
    ) -> (IoOutcome, &'a mut [u8]) {
        if let Err(scripted) = self.script(fd, true) {
            return (scripted, &mut []);
        }
        match self.take_inbound(fd, buf.len()) {
            Ok(bytes) => {
                let n = bytes.len();
                (IoOutcome::Done(n), fill_uninit(buf, &bytes, n))
            }
            Err(outcome) => (outcome, &mut []),
        }
    }

    fn write(&self, fd: BorrowedFd<'_>, kind: FdKind, bufs: &[IoSlice<'_>]) -> IoOutcome {
        if kind == FdKind::DatagramSocket {
            // One datagram of all the slices, as `sendmsg` sends it; the
            // slice count is still what the engine gathered.
            let bytes: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
            return self.send_datagram(fd, bytes, bufs.len(), None);
        }
        self.with_conn(fd, |c| c.writes.push(bufs.len()));
        if let Err(scripted) = self.script(fd, false) {
            return scripted;
        }
        self.with_conn(fd, |c| {
            if c.write_shut.is_some() {
                return IoOutcome::Failed(errno(rustix::io::Errno::PIPE.raw_os_error()));
            }
            if c.write_room == 0 {
                return IoOutcome::WouldBlock;
            }
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(c.write_room - n);
                c.written.extend_from_slice(&b[..take]);
                n += take;
                if n == c.write_room {
                    break;
                }
            }
            c.write_room -= n;
            IoOutcome::Done(n)
        })
    }

    /// The next datagram, as `recvmsg` with a one-byte scratch after `buf`
    /// would receive it: at most `buf.len()` bytes kept, `truncated` if it
    /// was longer.
    fn recv_from(&self, fd: BorrowedFd<'_>, buf: &mut [u8]) -> (IoOutcome, Datagram) {
        match self.take_datagram(fd, buf.len()) {
            Ok((bytes, from)) => {
                let n = bytes.len().min(buf.len());
                buf[..n].copy_from_slice(&bytes[..n]);
                let truncated = bytes.len() > buf.len();
                (IoOutcome::Done(n), Datagram { truncated, from })
            }
            Err(outcome) => (outcome, Datagram::default()),
        }
    }

    /// The next datagram, as `recvfrom` into all of `buf` would receive
    /// it: the kernel fills up to `buf.len()` bytes, the last of which only
    /// tells truncation and is neither counted nor in the returned slice.
    fn recv_from_uninit<'a>(
        &self,
        fd: BorrowedFd<'_>,
        buf: &'a mut [MaybeUninit<u8>],
    ) -> (IoOutcome, &'a mut [u8], Datagram) {
        match self.take_datagram(fd, buf.len()) {
            Ok((bytes, from)) => {
                let wanted = buf.len().saturating_sub(1);
                let n = bytes.len().min(wanted);
                let filled = fill_uninit(buf, &bytes, n);
                let truncated = bytes.len() > wanted;
                (IoOutcome::Done(n), filled, Datagram { truncated, from })
            }
            Err(outcome) => (outcome, &mut [], Datagram::default()),
        }
    }

    fn send_to(&self, fd: BorrowedFd<'_>, buf: &[u8], addr: &PeerAddr) -> IoOutcome {
        self.send_datagram(fd, buf.to_vec(), 1, Some(addr))
    }

    /// The accept script: `accept_fail`, then `accept_script`, then the
    /// next connection of `incoming`, else EAGAIN.
    fn accept(&self, fd: BorrowedFd<'_>) -> io::Result<(OwnedFd, Option<PeerAddr>)> {
        self.with_conn(fd, |c| {
            c.accepts += 1;
            if let Some(raw) = c.accept_fail {
                return Err(errno(raw));
            }
            if let Some(raw) = c.accept_script.pop_front() {
                return Err(errno(raw));
            }
            c.incoming
                .pop_front()
                .ok_or_else(|| errno(rustix::io::Errno::AGAIN.raw_os_error()))
        })
    }

    /// The shutdown script, else the kernel's `shutdown(SHUT_WR)` (see the
    /// module documentation); a success shuts the fake socket's write side.
    fn shutdown_write(&self, fd: BorrowedFd<'_>) -> IoOutcome {
        let next = self.with_conn(fd, |c| {
            c.shutdowns += 1;
            c.shutdown_script.pop_front()
        });
        if let Err(outcome) = scripted(next) {
            return outcome;
        }
        let outcome = crate::syscalls::shutdown_write(fd);
        if matches!(outcome, IoOutcome::Done(_)) {
            self.with_conn(fd, |c| {
                let at = c.written.len();
                c.write_shut.get_or_insert(at);
            });
        }
        outcome
    }

    fn connect_result(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.with_conn(fd, |c| {
            c.connect_checks += 1;
            match c.connect_error {
                None => Ok(()),
                Some(raw) => Err(errno(raw)),
            }
        })
    }
}
