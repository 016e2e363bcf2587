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

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::{Event, FdKind, IoOutcome, Poller};

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
    /// Outcomes the next reads return instead of touching `inbound`.
    pub read_script: VecDeque<Scripted>,
    /// Outcomes the next writes return.
    pub write_script: VecDeque<Scripted>,
    /// How many more bytes writes accept before they would block.
    pub write_room: usize,
    /// Everything written, in order.
    pub written: Vec<u8>,
    /// Read calls made.
    pub reads: usize,
    /// Write calls made, with the number of slices each gathered.
    pub writes: Vec<usize>,
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
}

/// An inert descriptor to hand over: the read end of a pipe whose write
/// end is closed at once (Miri supports pipes but not `/dev/null`).
pub fn dummy_fd() -> OwnedFd {
    let (read_end, _write_end) = rustix::pipe::pipe().expect("pipe");
    read_end
}

impl FakePoller {
    fn script(&self, fd: BorrowedFd<'_>, read: bool) -> Result<(), IoOutcome> {
        let mut s = lock(&self.state);
        let c = s
            .conns
            .get_mut(&fd.as_raw_fd())
            .expect("I/O on an unregistered fd");
        let next = if read {
            c.reads += 1;
            c.read_script.pop_front()
        } else {
            c.write_script.pop_front()
        };
        match next {
            None => Ok(()),
            Some(Scripted::WouldBlock) => Err(IoOutcome::WouldBlock),
            Some(Scripted::Starved) => Err(IoOutcome::Starved),
            Some(Scripted::Fail(errno)) => Err(IoOutcome::Failed(io::Error::from_raw_os_error(errno))),
        }
    }

    /// Takes up to `max` inbound bytes; `Err` is the outcome when none.
    fn take_inbound(&self, fd: BorrowedFd<'_>, max: usize) -> Result<Vec<u8>, IoOutcome> {
        let mut s = lock(&self.state);
        let c = s
            .conns
            .get_mut(&fd.as_raw_fd())
            .expect("I/O on an unregistered fd");
        if c.inbound.is_empty() {
            return Err(if c.eof {
                IoOutcome::Done(0)
            } else {
                IoOutcome::WouldBlock
            });
        }
        let n = max.min(c.inbound.len());
        Ok(c.inbound.drain(..n).collect())
    }
}

impl Poller for FakePoller {
    type Events = ();

    fn new() -> io::Result<Self> {
        let state = Arc::new(Mutex::new(FakeState::default()));
        LAST.with(|l| *l.borrow_mut() = Some(Arc::clone(&state)));
        Ok(FakePoller { state })
    }

    fn events(_capacity: usize) -> Self::Events {}

    fn register(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        lock(&self.state).conns.insert(
            fd.as_raw_fd(),
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
            },
        );
        Ok(())
    }

    fn deregister(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        lock(&self.state).conns.remove(&fd.as_raw_fd());
        Ok(())
    }

    fn reregister(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
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
                for (slot, b) in buf.iter_mut().zip(bytes) {
                    slot.write(b);
                }
                let filled = &mut buf[..n];
                // SAFETY: the loop above wrote each of the first `n` bytes,
                // and `MaybeUninit<u8>` has the layout of `u8`.
                let filled = unsafe { &mut *(filled as *mut [MaybeUninit<u8>] as *mut [u8]) };
                (IoOutcome::Done(n), filled)
            }
            Err(outcome) => (outcome, &mut []),
        }
    }

    fn write(&self, fd: BorrowedFd<'_>, _kind: FdKind, bufs: &[IoSlice<'_>]) -> IoOutcome {
        lock(&self.state)
            .conns
            .get_mut(&fd.as_raw_fd())
            .expect("I/O on an unregistered fd")
            .writes
            .push(bufs.len());
        if let Err(scripted) = self.script(fd, false) {
            return scripted;
        }
        let mut s = lock(&self.state);
        let c = s
            .conns
            .get_mut(&fd.as_raw_fd())
            .expect("I/O on an unregistered fd");
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
    }
}
