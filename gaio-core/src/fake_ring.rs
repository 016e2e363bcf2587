//! A deterministic fake *completion* poller: the [`fake`](crate::fake)
//! poller's scripted kernel, driven the way an io_uring ring drives it.
//!
//! An I/O call starts a request and answers `WouldBlock`; the fake kernel
//! runs the requests in flight when the engine waits (unless paused) and
//! reports each one that ended as an event; the same call made again takes
//! the result. A read or write request keeps the address of the engine's
//! buffer and the fake kernel reads or writes it there, later, as a ring
//! does, so a test of the engine's cancel-before-free rule is a real one:
//! an engine that gave a buffer back while its request was in flight would
//! have the fake write into freed memory (which Miri reports).
//!
//! Races are scripted too: with [`RingState::land_on_cancel`], a cancel
//! finds the request ended just before it (its bytes moved), which is the
//! race a deadline, `free` or `close` has with a kernel that is faster.
//! Buffer-less reads copy, as `gaio-uring`'s do from its provided-buffer
//! ring; a scripted `Starved` stands for that ring found empty.
//!
//! A shutdown is a request too (as on a busy `gaio-uring` ring): it starts
//! and answers `WouldBlock`, the fake kernel runs it (the fake poller's
//! scripted `shutdown_write`) when the engine waits, and its end comes as
//! an event for writing. It shares the writing direction with writes: a
//! write's result asked for while a shutdown is in flight, or the other
//! way round, is a broken engine rule and panics, as `gaio-uring` asserts.
//!
//! Build it through a watcher (`Watcher<FakeRing, ..>`); [`last_ring`]
//! returns its handle on the same thread, and [`crate::fake::last`] the scripted
//! kernel's.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::fake::FakePoller;
use crate::{Backend, Event, FdKind, Interest, IoOutcome, PeerAddr, Poller};

/// What a request in flight was given.
#[derive(Debug)]
enum Request {
    /// A read into the engine's buffer at this address.
    Read { at: *mut u8, len: usize },
    /// A buffer-less read of at most `len` bytes (the fake kernel's own
    /// buffer, copied out when taken).
    Select { len: usize },
    /// A gathered write from the engine's buffers.
    Write { slices: Vec<(*const u8, usize)> },
    /// An accept.
    Accept,
    /// A `shutdown(SHUT_WR)`.
    Shutdown,
}

/// A request's result, once the fake kernel ran it.
#[derive(Debug)]
enum Landed {
    Io(IoOutcome),
    Bytes(IoOutcome, Vec<u8>),
    Accepted(io::Result<(OwnedFd, Option<PeerAddr>)>),
}

#[derive(Debug)]
struct Op {
    kind: FdKind,
    request: Request,
    landed: Option<Landed>,
}

// SAFETY: the pointers in a request are addresses the engine handed over
// with the request; they are dereferenced only by the fake kernel, under
// the ring's lock, while the engine's contract keeps the memory valid
// (`Poller::completes_io`), on whichever thread turns the engine.
unsafe impl Send for Op {}

/// What a test scripts and reads of the fake ring.
#[derive(Debug)]
pub struct RingState {
    /// Requests by descriptor and direction (`true`: write).
    ops: HashMap<(RawFd, bool), Op>,
    /// The fake kernel runs no request while paused.
    pub paused: bool,
    /// A cancel finds the request ended just before it (see the module
    /// documentation).
    pub land_on_cancel: bool,
    /// Requests cancelled while in flight, and results dropped.
    pub cancelled: usize,
    /// Results a cancel kept for the engine to take.
    pub kept: usize,
    /// What [`Poller::swap_read_room`] answers: `usize::MAX` (the default),
    /// a whole slab, so a buffer-less read's result always fits, as with
    /// `gaio-uring`; 0, the engine's least, lets a result land in less
    /// room than it brought, the rest waiting for the next read.
    pub swap_read_room: usize,
    /// How many holds are not yet ended (`Poller::hold`; they nest).
    held: u32,
}

impl Default for RingState {
    fn default() -> Self {
        RingState {
            ops: HashMap::new(),
            paused: false,
            land_on_cancel: false,
            cancelled: 0,
            kept: 0,
            swap_read_room: usize::MAX,
            held: 0,
        }
    }
}

/// The fake completion poller.
#[derive(Debug)]
pub struct FakeRing {
    kernel: FakePoller,
    ring: Arc<Mutex<RingState>>,
}

thread_local! {
    static LAST_RING: RefCell<Option<Arc<Mutex<RingState>>>> = const { RefCell::new(None) };
}

/// The handle of the fake ring most recently created on this thread.
pub fn last_ring() -> RingHandle {
    let ring = LAST_RING
        .with(|l| l.borrow().clone())
        .expect("no FakeRing created on this thread");
    RingHandle { ring }
}

/// A test's grip on a fake ring.
#[derive(Debug, Clone)]
pub struct RingHandle {
    ring: Arc<Mutex<RingState>>,
}

fn lock(m: &Mutex<RingState>) -> MutexGuard<'_, RingState> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RingHandle {
    /// Runs `f` on the ring's state.
    pub fn with<R>(&self, f: impl FnOnce(&mut RingState) -> R) -> R {
        f(&mut lock(&self.ring))
    }

    /// Requests in flight or ended and not yet taken.
    pub fn requests(&self) -> usize {
        self.with(|r| r.ops.len())
    }
}

impl FakeRing {
    /// Runs request `op` of `fd` against the scripted kernel; true if it
    /// ended (its result is kept in the request).
    fn run(&self, fd: RawFd, op: &mut Op) -> bool {
        if op.landed.is_some() {
            return true;
        }
        // SAFETY: `fd` is registered, so open (the engine deregisters a
        // descriptor only after cancelling its requests); only its number is
        // used by the scripted kernel.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let landed = match &op.request {
            Request::Read { at, len } => {
                // SAFETY: the engine promises (`Poller::completes_io`) that
                // the buffer it gave stays where it is, and its own, until
                // the result is taken or the request cancelled: this is
                // that promise being relied on, as a ring relies on it.
                let buf = unsafe { std::slice::from_raw_parts_mut(*at, *len) };
                Landed::Io(self.kernel.read(fd, op.kind, buf))
            }
            Request::Select { len } => {
                let mut scratch = vec![MaybeUninit::uninit(); *len];
                let (outcome, filled) = self.kernel.read_uninit(fd, op.kind, &mut scratch);
                let bytes = filled.to_vec();
                Landed::Bytes(outcome, bytes)
            }
            Request::Write { slices } => {
                let bufs: Vec<IoSlice<'_>> = slices
                    .iter()
                    // SAFETY: as for a read: the engine's stored writes
                    // stay put until the result is taken or cancelled.
                    .map(|&(at, len)| IoSlice::new(unsafe { std::slice::from_raw_parts(at, len) }))
                    .collect();
                Landed::Io(self.kernel.write(fd, op.kind, &bufs))
            }
            Request::Accept => Landed::Accepted(self.kernel.accept(fd)),
            Request::Shutdown => Landed::Io(self.kernel.shutdown_write(fd)),
        };
        let would_block = match &landed {
            Landed::Io(IoOutcome::WouldBlock) | Landed::Bytes(IoOutcome::WouldBlock, _) => true,
            Landed::Accepted(Err(e)) => e.kind() == io::ErrorKind::WouldBlock,
            _ => false,
        };
        if would_block {
            // A ring request waits in the kernel for readiness.
            return false;
        }
        op.landed = Some(landed);
        true
    }

    /// Starts a request unless one is in flight for `fd` and `write`; the
    /// result if one ended, else `None` (the caller answers would block).
    fn start_or_take(&self, fd: RawFd, write: bool, kind: FdKind, request: Request) -> Option<Landed> {
        let mut ring = lock(&self.ring);
        if let Some(op) = ring.ops.get(&(fd, write)) {
            if op.landed.is_some() {
                return ring.ops.remove(&(fd, write)).and_then(|op| op.landed);
            }
            return None;
        }
        if ring.held == 0 {
            ring.ops.insert(
                (fd, write),
                Op {
                    kind,
                    request,
                    landed: None,
                },
            );
        }
        None
    }
}

impl Poller for FakeRing {
    type Events = ();

    fn new() -> io::Result<Self> {
        let ring = Arc::new(Mutex::new(RingState::default()));
        LAST_RING.with(|l| *l.borrow_mut() = Some(Arc::clone(&ring)));
        Ok(FakeRing {
            kernel: FakePoller::new()?,
            ring,
        })
    }

    fn backend(&self) -> Backend {
        Backend::Other
    }

    fn completes_io(&self) -> bool {
        true
    }

    fn swap_read_room(&self) -> usize {
        lock(&self.ring).swap_read_room
    }

    fn events(_capacity: usize) -> Self::Events {}

    unsafe fn register(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        // SAFETY: the caller's promise, passed on.
        unsafe { self.kernel.register(fd, token) }
    }

    fn deregister(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let number = fd.as_raw_fd();
        let left = lock(&self.ring).ops.keys().any(|(f, _)| *f == number);
        assert!(!left, "fd {number} deregistered with a request in flight");
        self.kernel.deregister(fd)
    }

    unsafe fn reregister(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        // SAFETY: the caller's promise, passed on.
        unsafe { self.kernel.reregister(fd, token) }
    }

    fn wait(&self, raw: &mut (), out: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        let mut ring = lock(&self.ring);
        let mut ended = Vec::new();
        if !ring.paused {
            let keys: Vec<(RawFd, bool)> = ring.ops.keys().copied().collect();
            for key in keys {
                let mut op = ring.ops.remove(&key).expect("listed");
                let was_landed = op.landed.is_some();
                if self.run(key.0, &mut op) && !was_landed {
                    ended.push(key);
                }
                ring.ops.insert(key, op);
            }
        }
        drop(ring);
        // Scripted readiness events still come (they only make the engine
        // try, which a ring tolerates); the ring's own are the ends.
        self.kernel.wait(
            raw,
            out,
            if ended.is_empty() {
                timeout
            } else {
                Some(Duration::ZERO)
            },
        )?;
        for (fd, write) in ended {
            if let Some(token) = self.kernel.token_of(fd) {
                let mut ev = Event::new(token);
                ev.readable = !write;
                ev.writable = write;
                out.push(ev);
            }
        }
        Ok(())
    }

    fn wake(&self) -> io::Result<()> {
        self.kernel.wake()
    }

    fn read(&self, fd: BorrowedFd<'_>, kind: FdKind, buf: &mut [u8]) -> IoOutcome {
        let at = buf.as_mut_ptr();
        if let Some(op) = lock(&self.ring).ops.get(&(fd.as_raw_fd(), false)) {
            // A ring wrote where it was told: a retry offering other memory
            // means the engine moved or swapped the buffer under it.
            if let Request::Read { at: started, .. } = op.request {
                assert_eq!(
                    started, at,
                    "a read retried with other memory than it started with"
                );
            }
        }
        let request = Request::Read { at, len: buf.len() };
        match self.start_or_take(fd.as_raw_fd(), false, kind, request) {
            Some(Landed::Io(outcome)) => outcome,
            Some(other) => panic!("a read's result taken as another kind: {other:?}"),
            None => IoOutcome::WouldBlock,
        }
    }

    fn read_in_flight(&self, fd: BorrowedFd<'_>) -> bool {
        lock(&self.ring)
            .ops
            .get(&(fd.as_raw_fd(), false))
            .is_some_and(|op| matches!(op.request, Request::Read { .. }) && op.landed.is_none())
    }

    fn read_uninit<'a>(
        &self,
        fd: BorrowedFd<'_>,
        kind: FdKind,
        buf: &'a mut [MaybeUninit<u8>],
    ) -> (IoOutcome, &'a mut [u8]) {
        let request = Request::Select { len: buf.len() };
        match self.start_or_take(fd.as_raw_fd(), false, kind, request) {
            Some(Landed::Bytes(IoOutcome::Done(n), mut bytes)) => {
                // Less room than the read brought (the swap memory ran
                // low meanwhile): the rest waits for the next read, and an
                // event says so, as in `gaio-uring`.
                let n = n.min(buf.len());
                if n < bytes.len() {
                    let rest = bytes.split_off(n);
                    let op = Op {
                        kind,
                        request: Request::Select { len: rest.len() },
                        landed: Some(Landed::Bytes(IoOutcome::Done(rest.len()), rest)),
                    };
                    lock(&self.ring).ops.insert((fd.as_raw_fd(), false), op);
                    if let Some(token) = self.kernel.token_of(fd.as_raw_fd()) {
                        let mut ev = Event::new(token);
                        ev.readable = true;
                        self.kernel.push_event(ev);
                    }
                }
                for (slot, &b) in buf.iter_mut().zip(&bytes) {
                    slot.write(b);
                }
                let filled = &mut buf[..n];
                // SAFETY: the loop above wrote the first `n` bytes (`n` is
                // the count of `bytes`), and `MaybeUninit<u8>` has `u8`'s
                // layout.
                let filled = unsafe { &mut *(filled as *mut [MaybeUninit<u8>] as *mut [u8]) };
                (IoOutcome::Done(n), filled)
            }
            Some(Landed::Bytes(outcome, _)) => (outcome, &mut []),
            Some(other) => panic!("a buffer-less read's result taken as another kind: {other:?}"),
            None => (IoOutcome::WouldBlock, &mut []),
        }
    }

    fn write(&self, fd: BorrowedFd<'_>, kind: FdKind, bufs: &[IoSlice<'_>]) -> IoOutcome {
        if let (Some(op), Some(first)) = (lock(&self.ring).ops.get(&(fd.as_raw_fd(), true)), bufs.first()) {
            match &op.request {
                Request::Write { slices } => assert_eq!(
                    slices.first().map(|s| s.0),
                    Some(first.as_ptr()),
                    "a write retried with other memory than it started with"
                ),
                other => panic!("a write's result was asked of another request: {other:?}"),
            }
        }
        let request = Request::Write {
            slices: bufs.iter().map(|b| (b.as_ptr(), b.len())).collect(),
        };
        match self.start_or_take(fd.as_raw_fd(), true, kind, request) {
            Some(Landed::Io(outcome)) => outcome,
            Some(other) => panic!("a write's result taken as another kind: {other:?}"),
            None => IoOutcome::WouldBlock,
        }
    }

    fn accept(&self, fd: BorrowedFd<'_>) -> io::Result<(OwnedFd, Option<PeerAddr>)> {
        match self.start_or_take(fd.as_raw_fd(), false, FdKind::StreamSocket, Request::Accept) {
            Some(Landed::Accepted(result)) => result,
            Some(other) => panic!("an accept's result taken as another kind: {other:?}"),
            None => Err(io::Error::from_raw_os_error(
                rustix::io::Errno::AGAIN.raw_os_error(),
            )),
        }
    }

    fn connect_result(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.kernel.connect_result(fd)
    }

    /// A request of its own (see the module documentation).
    fn shutdown_write(&self, fd: BorrowedFd<'_>) -> IoOutcome {
        if let Some(op) = lock(&self.ring).ops.get(&(fd.as_raw_fd(), true)) {
            assert!(
                matches!(op.request, Request::Shutdown),
                "a shutdown's result was asked of another request: {:?}",
                op.request
            );
        }
        match self.start_or_take(fd.as_raw_fd(), true, FdKind::StreamSocket, Request::Shutdown) {
            Some(Landed::Io(outcome)) => outcome,
            Some(other) => panic!("a shutdown's result taken as another kind: {other:?}"),
            None => IoOutcome::WouldBlock,
        }
    }

    fn cancel(&self, fd: BorrowedFd<'_>, interest: Interest, keep: bool) -> bool {
        let number = fd.as_raw_fd();
        let mut ring = lock(&self.ring);
        let mut kept = false;
        for (wanted, write) in [(interest.is_read(), false), (interest.is_write(), true)] {
            if !wanted {
                continue;
            }
            let Some(mut op) = ring.ops.remove(&(number, write)) else {
                continue;
            };
            if ring.land_on_cancel {
                self.run(number, &mut op);
            }
            if op.landed.is_some() && keep {
                ring.kept += 1;
                kept = true;
                ring.ops.insert((number, write), op);
            } else {
                ring.cancelled += 1;
            }
        }
        kept
    }

    fn hold(&self, held: bool) {
        let mut ring = lock(&self.ring);
        ring.held = if held {
            ring.held + 1
        } else {
            ring.held.checked_sub(1).expect("a hold ended that was not begun")
        };
    }
}
