//! Op-sequence model checking of the gaio engine on the deterministic fake
//! poller (`gaio_core::fake`, feature `fake-poller`).
//!
//! [`run`] decodes a byte string into a sequence of operations — watch
//! (directly or through a `Submitter`), `read` / `read_swap` /
//! `read_full` / `write` of various sizes with or without deadlines (none,
//! already past, a millisecond or two, an hour), `free`, `close`, the peer
//! sending bytes or closing, scripted `EAGAIN` / `ENOBUFS` / errors for the
//! next reads and writes, the socket's room for writes, readiness events
//! (with hang-ups, and with stale or made-up tokens), and
//! `wait_io_timeout` with zero or very short timeouts; and, on op bytes
//! 240 to 255 (see [`Harness::step_more`]), stream sockets (one end of a
//! Unix socket pair) beside the pipes, `shutdown` (with scripted
//! failures, and right behind a write), `detach`, `notify`, `sleep_until`
//! (deadlines past, now, within a millisecond or two, equal to the last
//! one's, an hour away; two built first and submitted in the other order)
//! and `cancel_timer` (of a pending sleep, of a finished one, of one never
//! submitted) — runs them against an inline-mode watcher, and checks after
//! every step:
//!
//! * every accepted request completes exactly once, and a refused one is
//!   refused for a reason that holds (empty buffer, closed watcher) with
//!   its context and buffer handed back;
//! * per connection and direction, completions come in submission order
//!   (a request ended by its deadline may overtake, nothing else);
//! * the bytes every read delivers (on success and on error alike) are the
//!   next bytes of what the peer sent, and the bytes every write reports
//!   are the next bytes the fake socket received, so nothing is lost,
//!   duplicated or reordered; buffers come back unchanged in size;
//! * errors are explained: `Eof` only after the peer closed and everything
//!   it sent was read, `Deadline` only with a deadline, `ConnClosed` only
//!   for a freed or detached connection or a request submitted after a
//!   detach, `WatcherClosed` only after `close`, OS errors only those
//!   scripted (`EPIPE` for writes after a shutdown), `NotSupported` only
//!   for a shutdown of a pipe, `Cancelled` only for a cancelled sleep;
//! * a shutdown is ordered with the writes and completes with no buffer
//!   and no bytes; when it succeeds, the fake socket's write side was shut
//!   after exactly the bytes the writes before it reported, and no write
//!   submitted after it moves a byte;
//! * a detach completes after every write (and shutdown) submitted before
//!   it, without waiting for reads: reads still pending complete after it,
//!   in order, with `ConnClosed` and nothing taken; requests submitted
//!   after it complete with `ConnClosed` (out of turn); when it succeeds it hands back the connection's own
//!   descriptor (same number, same open file, still non-blocking), which
//!   the fake poller no longer has registered, and nothing was lost: the
//!   fake socket still holds every byte the peer sent that no read took,
//!   and every byte written to it was reported; it stays open and
//!   unregistered until the end (no later I/O on it: the fake poller
//!   panics on I/O to a descriptor it does not have);
//! * notifications complete exactly once, in submission order, as
//!   `Op::Notify` on no connection with no buffer, successfully (or with
//!   `WatcherClosed` once closed);
//! * sleeps complete exactly once as `Op::Sleep` on no connection with no
//!   buffer: fired never before their deadline (against the instant the
//!   wait returned) and in deadline order, equal deadlines in submission
//!   order (no sleep fires while one pending before it in that order has
//!   not completed); a sleep cancelled while pending completes with
//!   `Cancelled` in the next batch, never fires; `WatcherClosed` only
//!   after `close`;
//! * liveness, at "settle" steps and at the end: once every connection is
//!   reported readable and writable with no scripted failure and unlimited
//!   room, no write, shutdown or detach is pending, and no read is pending
//!   while bytes or end of stream wait for it;
//! * after `close`, waiting drains every pending request and then reports
//!   the watcher closed; no descriptor is left open after the watcher is
//!   dropped (optional, see [`Checks`]); nothing panics.
//!
//! The same function serves the libFuzzer target (`fuzz_targets/`) and the
//! plain tests in `tests/`, which run a few hundred fixed inputs on stable.

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use gaio_core::fake::{self, dummy_fd, FakeConn, FakeHandle, FakePoller, Scripted};
use gaio_core::fake_ring::FakeRing;
use gaio_core::{
    Buffer, Builder, Completion, Conn, Error, Op, Poller, Rejected, Request, Submit, Submitter, Timer,
    Watcher,
};

type W<P> = Watcher<P, u64, Vec<u8>>;
type S<P> = Submitter<P, u64, Vec<u8>>;

/// Most connections alive at once (descriptor numbers get reused a lot).
const MAX_LIVE: usize = 6;
/// Most short waits (which may sleep up to a millisecond) per input.
const MAX_SHORT_WAITS: u32 = 4;
/// OS errors the fuzzer scripts: ECONNRESET, EPIPE, EIO.
const ERRNOS: [i32; 3] = [104, 32, 5];
/// A sleep this far off never fires during an input.
const FAR: Duration = Duration::from_secs(3600);

/// Optional checks.
#[derive(Debug, Clone, Copy)]
pub struct Checks {
    /// Compare the open descriptors of the process before and after each
    /// input. Only exact when nothing else in the process opens or closes
    /// descriptors meanwhile (libFuzzer, or one test thread).
    pub fds: bool,
}

impl Checks {
    /// Every check.
    pub const ALL: Checks = Checks { fds: true };
    /// Every check that holds with other threads opening descriptors.
    pub const SHARED_PROCESS: Checks = Checks { fds: false };
}

/// What one input exercised, for tests that make sure the inputs reach
/// the interesting paths.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Completions checked.
    pub completions: u64,
    /// ... of which successful.
    pub ok: u64,
    /// ... ended by end of stream, deadline, a freed connection, a closed
    /// watcher, a (scripted) OS error.
    pub eof: u64,
    /// See `eof`.
    pub deadline: u64,
    /// See `eof`.
    pub conn_closed: u64,
    /// See `eof`.
    pub watcher_closed: u64,
    /// See `eof`.
    pub io_error: u64,
    /// Submissions refused (empty buffer, closed watcher).
    pub refused: u64,
    /// Bytes of reads and of writes checked against the streams.
    pub read_bytes: u64,
    /// See `read_bytes`.
    pub write_bytes: u64,
    /// Liveness checks passed.
    pub settles: u64,
    /// Shutdowns that succeeded.
    pub shutdowns: u64,
    /// Writes submitted after a successful shutdown, checked to have moved
    /// nothing.
    pub writes_after_shutdown: u64,
    /// Detaches that handed a descriptor back.
    pub detaches: u64,
    /// Requests completed with `ConnClosed` because a detach came before.
    pub after_detach: u64,
    /// Notifications delivered.
    pub notifies: u64,
    /// Sleeps that fired, and that were cancelled.
    pub sleeps_fired: u64,
    /// See `sleeps_fired`.
    pub sleeps_cancelled: u64,
}

impl Summary {
    /// Adds another input's counts.
    pub fn add(&mut self, o: &Summary) {
        self.completions += o.completions;
        self.ok += o.ok;
        self.eof += o.eof;
        self.deadline += o.deadline;
        self.conn_closed += o.conn_closed;
        self.watcher_closed += o.watcher_closed;
        self.io_error += o.io_error;
        self.refused += o.refused;
        self.read_bytes += o.read_bytes;
        self.write_bytes += o.write_bytes;
        self.settles += o.settles;
        self.shutdowns += o.shutdowns;
        self.writes_after_shutdown += o.writes_after_shutdown;
        self.detaches += o.detaches;
        self.after_detach += o.after_detach;
        self.notifies += o.notifies;
        self.sleeps_fired += o.sleeps_fired;
        self.sleeps_cancelled += o.sleeps_cancelled;
    }
}

/// Reads the input a byte at a time; past its end every byte is 0.
struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn below(&mut self, n: usize) -> usize {
        usize::from(self.byte()) % n
    }

    fn exhausted(&self) -> bool {
        self.pos >= self.data.len()
    }
}

/// What the model knows about one connection ever watched.
struct ConnModel {
    conn: Conn,
    token: u64,
    /// Not freed (by this harness) and the watcher not closed.
    live: bool,
    /// Everything the peer sent, and how much of it reads delivered.
    peer_sent: Vec<u8>,
    peer_eof: bool,
    read_cursor: usize,
    /// What the fake socket received, mirrored while it is registered, and
    /// how much of it write completions reported.
    written: Vec<u8>,
    write_cursor: usize,
    /// Pending requests per direction, in submission order (shutdowns and
    /// detaches with the writes).
    reads: VecDeque<u64>,
    writes: VecDeque<u64>,
    /// A stream socket (shuts down), not a pipe.
    stream: bool,
    /// The open file behind the descriptor (`/proc/self/fd`), where known.
    file: Option<PathBuf>,
    /// The first shutdown that succeeded: later writes move nothing.
    shut: Option<u64>,
    /// The first detach accepted: requests after it never run.
    detaching: Option<u64>,
    /// The descriptor a detach handed back, kept open to the end.
    detached: Option<OwnedFd>,
    /// At a successful detach: the bytes left in the socket and the bytes
    /// the peer had sent. Reads pending before the detach complete right
    /// after it, with the bytes they took so far (a partly filled
    /// `read_full`); once they have, every byte sent must be read or still
    /// in the socket.
    detach_unread: Option<(usize, usize)>,
    /// The last context submitted when the harness first freed it: a
    /// detach submitted before may still win (a free through the
    /// submitter is queued behind it).
    freed_after: Option<u64>,
}

/// A request that was accepted and has not completed yet.
struct Pending {
    conn: usize,
    op: Op,
    swap: bool,
    deadline: bool,
    /// For reads the buffer's length, for writes its bytes.
    len: usize,
    data: Vec<u8>,
    /// Submitted after a detach on its connection: completes with
    /// `ConnClosed`, out of turn.
    after_detach: bool,
}

/// A sleep that was accepted and has not completed yet.
struct SleepModel {
    deadline: Instant,
    /// `cancel_timer` was called while it was pending and the watcher
    /// open: it completes with `Cancelled` by the end of the next wait.
    must_cancel: bool,
}

struct Harness<P: Poller> {
    w: W<P>,
    s: S<P>,
    f: FakeHandle,
    swap_size: usize,
    conns: Vec<ConnModel>,
    pending: HashMap<u64, Pending>,
    next_ctx: u64,
    closed: bool,
    short_waits: u32,
    /// Commands were queued through the submitter since the last wait.
    queued: bool,
    summary: Summary,
    /// Pending notifications, in submission order.
    notifies: VecDeque<u64>,
    /// Pending sleeps by context (contexts grow in submission order).
    sleeps: HashMap<u64, SleepModel>,
    /// Every sleep accepted, pending or not, for `cancel_timer`.
    timers: Vec<(u64, Timer)>,
    last_sleep: Option<Instant>,
}

/// How a request names its deadline.
#[derive(Clone, Copy)]
enum DeadlineKind {
    None,
    Past,
    Short(u64),
    Far,
}

impl DeadlineKind {
    fn decode(b: u8) -> DeadlineKind {
        match b % 8 {
            5 => DeadlineKind::Past,
            6 => DeadlineKind::Short(u64::from(b / 8) % 3),
            7 => DeadlineKind::Far,
            _ => DeadlineKind::None,
        }
    }

    fn instant(self) -> Option<Instant> {
        let now = Instant::now();
        match self {
            DeadlineKind::None => None,
            DeadlineKind::Past => Some(now.checked_sub(Duration::from_millis(1)).unwrap_or(now)),
            DeadlineKind::Short(ms) => Some(now + Duration::from_millis(ms)),
            DeadlineKind::Far => Some(now + Duration::from_secs(3600)),
        }
    }
}

/// Runs one input and tells what it exercised. Panics if an invariant
/// does not hold.
pub fn run(data: &[u8], checks: Checks) -> Summary {
    let [readiness, ring] = run_each(data, checks);
    let mut summary = readiness;
    summary.add(&ring);
    summary
}

/// Runs one input twice, with the same invariants: on the readiness
/// engine's fake poller, then on the fake completion ring (requests in
/// flight, results taken later, cancels); what each run exercised.
pub fn run_each(data: &[u8], checks: Checks) -> [Summary; 2] {
    [
        run_on::<FakePoller>(data, checks),
        run_on::<FakeRing>(data, checks),
    ]
}

fn run_on<P: Poller>(data: &[u8], checks: Checks) -> Summary {
    let fds_before = checks.fds.then(open_fds);
    let summary = {
        let mut input = Input { data, pos: 0 };
        let swap_size = [64, 100, 256, 4096][input.below(4)];
        let w: W<P> = Builder::new()
            .swap_size(swap_size)
            .max_events(1 + input.below(4))
            .build()
            .expect("build a watcher on the fake poller");
        let f = fake::last();
        let s = w.submitter();
        let mut h = Harness {
            w,
            s,
            f,
            swap_size,
            conns: Vec::new(),
            pending: HashMap::new(),
            next_ctx: 1,
            closed: false,
            short_waits: 0,
            queued: false,
            summary: Summary::default(),
            notifies: VecDeque::new(),
            sleeps: HashMap::new(),
            timers: Vec::new(),
            last_sleep: None,
        };
        while !input.exhausted() {
            h.step(&mut input);
            h.mirror_written();
        }
        h.finish();
        h.summary
    };
    if let Some(before) = fds_before {
        let after = open_fds();
        assert_eq!(
            after, before,
            "descriptors open before the input {before}, after {after}"
        );
    }
    summary
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// The open file descriptor `fd` names (`socket:[inode]`, `pipe:[inode]`),
/// where `/proc` tells.
fn file_of(fd: i32) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()
}

/// Whether descriptor `fd` is in non-blocking mode, where `/proc` tells
/// (`O_NONBLOCK` is octal 4000 on Linux).
fn nonblocking(fd: i32) -> Option<bool> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    let flags = info.lines().find_map(|l| l.strip_prefix("flags:"))?;
    let flags = u32::from_str_radix(flags.trim(), 8).ok()?;
    Some(flags & 0o4000 != 0)
}

impl<P: Poller> Harness<P> {
    fn step(&mut self, inp: &mut Input<'_>) {
        let op = inp.byte();
        if op >= 240 {
            self.step_more(op, inp);
            return;
        }
        match op % 24 {
            0 => self.watch(false),
            1 => self.watch(true),
            2..=5 => {
                let (idx, kind, size, dl) = self.request_args(inp);
                self.submit(idx, kind, size, dl, false);
            }
            6 => {
                let (idx, kind, size, dl) = self.request_args(inp);
                self.submit(idx, kind, size, dl, true);
            }
            7 | 8 => {
                if let Some(idx) = self.pick(inp) {
                    self.free(idx, inp.byte() % 2 == 1);
                }
            }
            9 => {
                let (idx, n, event) = (self.pick(inp), 1 + inp.below(64), inp.byte() % 2 == 1);
                if let Some(idx) = idx {
                    self.peer_send(idx, n, event);
                }
            }
            10 | 11 => {
                let (idx, what) = (self.pick(inp), inp.byte());
                if let Some(idx) = idx {
                    let scripted = match what % 4 {
                        0 | 1 => Scripted::WouldBlock,
                        2 => Scripted::Starved,
                        _ => Scripted::Fail(ERRNOS[usize::from(what / 4) % ERRNOS.len()]),
                    };
                    let read = inp.byte().is_multiple_of(2);
                    self.with_fake(idx, |c| {
                        if read {
                            c.read_script.push_back(scripted);
                        } else {
                            c.write_script.push_back(scripted);
                        }
                    });
                }
            }
            12 => {
                let (idx, room, event) = (self.pick(inp), inp.byte(), inp.byte() % 2 == 1);
                if let Some(idx) = idx {
                    let room = match room % 4 {
                        0 => 0,
                        3 => usize::MAX,
                        _ => usize::from(room / 4),
                    };
                    if self.with_fake(idx, |c| c.write_room = room).is_some() && event {
                        self.event(idx, false, true, false);
                    }
                }
            }
            13 => {
                let (idx, bits) = (self.pick(inp), inp.byte());
                if let Some(idx) = idx {
                    self.event(idx, bits & 1 != 0, bits & 2 != 0, false);
                }
            }
            14 => {
                let (idx, bits) = (self.pick(inp), inp.byte());
                if let Some(idx) = idx {
                    self.hang_up(idx, bits);
                }
            }
            15 => {
                let (idx, bits) = (self.pick(inp), inp.byte());
                let token = match idx {
                    // A connection's token, live or long freed: stale if it
                    // was freed, even when its descriptor number is reused.
                    Some(idx) if bits & 4 != 0 => self.conns[idx].token,
                    _ => u64::from(bits) << 40 | u64::from(inp.byte()),
                };
                if !self.closed {
                    self.f
                        .event_token(token, bits & 1 != 0, bits & 2 != 0, bits & 8 != 0);
                }
            }
            16 | 17 => self.wait(Duration::ZERO),
            18 => {
                if self.short_waits < MAX_SHORT_WAITS {
                    self.short_waits += 1;
                    let us = 100 * u64::from(inp.byte() % 11);
                    self.wait(Duration::from_micros(us));
                } else {
                    self.wait(Duration::ZERO);
                }
            }
            19 => {
                let (idx, bits) = (self.pick(inp), inp.byte());
                if let Some(idx) = idx {
                    self.submit_empty(idx, bits);
                }
            }
            20 => {
                if let Some(idx) = self.pick(inp) {
                    self.peer_close(idx);
                }
            }
            21 => {
                if !self.closed {
                    self.settle();
                }
            }
            22 => {
                // Rare, so most inputs exercise an open watcher.
                if inp.byte().is_multiple_of(8) {
                    self.close();
                }
            }
            _ => {
                for _ in 0..3 {
                    self.wait(Duration::ZERO);
                }
            }
        }
    }

    /// Connection, request kind, size and deadline for a submission.
    fn request_args(&mut self, inp: &mut Input<'_>) -> (Option<usize>, u8, usize, DeadlineKind) {
        let idx = self.pick(inp);
        let kind = inp.byte();
        let size = 1 + inp.below(64);
        let dl = DeadlineKind::decode(inp.byte());
        (idx, kind, size, dl)
    }

    /// Any connection ever watched, freed ones included (stale handles).
    fn pick(&self, inp: &mut Input<'_>) -> Option<usize> {
        let b = inp.below(256);
        (!self.conns.is_empty()).then(|| b % self.conns.len())
    }

    /// Runs `f` on the fake socket of connection `idx` if it is still
    /// registered (with this connection's token, not a successor's).
    fn with_fake<R>(&self, idx: usize, f: impl FnOnce(&mut fake::FakeConn) -> R) -> Option<R> {
        let (fd, token) = (self.conns[idx].conn.fd() as i32, self.conns[idx].token);
        self.f
            .with(|s| s.conns.get_mut(&fd).filter(|c| c.token == token).map(f))
    }

    fn ctx(&mut self) -> u64 {
        self.next_ctx += 1;
        self.next_ctx
    }

    // ----- operations --------------------------------------------------------

    fn watch(&mut self, via_submitter: bool) {
        self.watch_fd(dummy_fd(), false, via_submitter);
    }

    /// Hands over one end of a Unix stream socket pair (the other end
    /// closed at once): the engine takes it for the stream socket it is,
    /// which shuts down; its I/O is the fake's, as a pipe's is.
    fn watch_stream(&mut self, via_submitter: bool) {
        let (ours, _theirs) = UnixStream::pair().expect("socketpair");
        self.watch_fd(ours.into(), true, via_submitter);
    }

    fn watch_fd(&mut self, fd: OwnedFd, stream: bool, via_submitter: bool) {
        if self.conns.iter().filter(|c| c.live).count() >= MAX_LIVE {
            return;
        }
        let file = file_of(fd.as_raw_fd());
        let r = if via_submitter {
            self.s.watch(fd)
        } else {
            self.w.watch(fd)
        };
        match r {
            Ok(conn) => {
                assert!(!self.closed, "watch succeeded on a closed watcher");
                self.queued |= via_submitter;
                let token = self.f.conn(conn.fd(), |c| c.token);
                assert!(
                    self.conns.iter().all(|m| m.conn != conn),
                    "handle {conn:?} handed out twice"
                );
                self.conns.push(ConnModel {
                    conn,
                    token,
                    live: true,
                    peer_sent: Vec::new(),
                    peer_eof: false,
                    read_cursor: 0,
                    written: Vec::new(),
                    write_cursor: 0,
                    reads: VecDeque::new(),
                    writes: VecDeque::new(),
                    stream,
                    file,
                    shut: None,
                    detaching: None,
                    detached: None,
                    detach_unread: None,
                    freed_after: None,
                });
            }
            Err(Error::WatcherClosed) if self.closed => {}
            Err(e) => panic!("watch failed: {e:?}"),
        }
    }

    fn submit(&mut self, idx: Option<usize>, kind: u8, size: usize, dl: DeadlineKind, via_submitter: bool) {
        let Some(idx) = idx else { return };
        let conn = self.conns[idx].conn;
        let ctx = self.ctx();
        let deadline = dl.instant();
        let (op, swap, buf) = match kind % 4 {
            0 => (Op::Read, false, vec![0u8; size]),
            1 => (Op::Read, true, Vec::new()),
            2 => (Op::ReadFull, false, vec![0u8; size]),
            _ => {
                // One write in sixteen is empty: it completes, with 0
                // bytes, in its place in the queue.
                let size = if kind >= 0xF0 { 0 } else { size };
                let data: Vec<u8> = (0..size)
                    .map(|i| (ctx as u8).wrapping_mul(31).wrapping_add(i as u8))
                    .collect();
                (Op::Write, false, data)
            }
        };
        let len = buf.len();
        let data = if op == Op::Write { buf.clone() } else { Vec::new() };
        let req = match (op, swap) {
            (Op::Read, true) => gaio_core::Request::read_swap(conn, ctx),
            (Op::Read, false) => gaio_core::Request::read(conn, ctx, buf),
            (Op::ReadFull, _) => gaio_core::Request::read_full(conn, ctx, buf),
            (Op::Write, _) => gaio_core::Request::write(conn, ctx, buf),
            (other, _) => unreachable!("the fuzzer only makes reads and writes, not {other:?}"),
        };
        let req = match deadline {
            Some(d) => req.deadline(d),
            None => req,
        };
        let p = Pending {
            conn: idx,
            op,
            swap,
            deadline: deadline.is_some(),
            len,
            data,
            after_detach: false,
        };
        self.submit_request(idx, ctx, p, req, via_submitter, Error::WatcherClosed);
    }

    /// Queues `req` in the model, then submits it; `refusal` is the one
    /// reason besides a closed watcher it may be refused for.
    fn submit_request(
        &mut self,
        idx: usize,
        ctx: u64,
        mut p: Pending,
        req: Request<u64, Vec<u8>>,
        via_submitter: bool,
        refusal: Error,
    ) {
        // Queue it in the model first: a submission from this thread can
        // complete at once, and the completion is checked when delivered.
        let op = p.op;
        let m = &mut self.conns[idx];
        p.after_detach = m.detaching.is_some();
        if op.is_read() {
            m.reads.push_back(ctx);
        } else {
            m.writes.push_back(ctx);
        }
        self.pending.insert(ctx, p);
        let r = if via_submitter {
            self.s.submit(req)
        } else {
            self.w.submit(req)
        };
        self.queued |= via_submitter && r.is_ok();
        match r {
            Ok(()) => {
                let m = &mut self.conns[idx];
                if op == Op::Detach && m.detaching.is_none() && m.live {
                    m.detaching = Some(ctx);
                }
            }
            Err(rej) => self.rejected(idx, ctx, rej, Some(refusal)),
        }
    }

    /// A submission was refused: only for the reason `expected`, with the
    /// context and buffer handed back.
    fn rejected(&mut self, idx: usize, ctx: u64, rej: Rejected<u64, Vec<u8>>, expected: Option<Error>) {
        let p = self.pending.remove(&ctx).expect("refused request is known");
        self.summary.refused += 1;
        let m = &mut self.conns[idx];
        m.reads.retain(|&c| c != ctx);
        m.writes.retain(|&c| c != ctx);
        let ok = match (&rej.error, expected) {
            // Whatever else is wrong with it (an empty buffer, say).
            (Error::WatcherClosed, _) => self.closed,
            (Error::EmptyBuffer, Some(Error::EmptyBuffer)) => true,
            // From the owning thread, a shutdown of a live pipe (after a
            // detach it would complete with `ConnClosed` instead).
            (Error::NotSupported { op: Op::Shutdown }, Some(Error::NotSupported { .. })) => {
                p.op == Op::Shutdown && !self.conns[idx].stream && self.conns[idx].live && !p.after_detach
            }
            _ => false,
        };
        assert!(
            ok,
            "request refused with {:?} (closed: {})",
            rej.error, self.closed
        );
        assert_eq!(rej.context, ctx, "a refusal handed back another context");
        if matches!(p.op, Op::Shutdown | Op::Detach) {
            assert!(rej.buffer.is_none(), "a refusal made up a buffer");
        } else if !p.swap {
            let buf = rej.buffer.expect("a refusal handed back no buffer");
            assert_eq!(buf.len(), p.len, "a refusal changed the buffer's size");
            if p.op == Op::Write {
                assert_eq!(buf, p.data, "a refusal changed the buffer");
            }
        }
    }

    fn submit_empty(&mut self, idx: usize, bits: u8) {
        let conn = self.conns[idx].conn;
        let ctx = self.ctx();
        let req = match bits % 3 {
            0 => gaio_core::Request::read(conn, ctx, Vec::new()),
            1 => gaio_core::Request::read_full(conn, ctx, Vec::new()),
            // A read_append with no spare capacity (an empty write is a
            // write, and completes).
            _ => gaio_core::Request::read_append(conn, ctx, Vec::new()),
        };
        self.pending.insert(
            ctx,
            Pending {
                conn: idx,
                op: req.op(),
                swap: false,
                deadline: false,
                len: 0,
                data: Vec::new(),
                after_detach: false,
            },
        );
        let r = if bits & 4 != 0 {
            self.s.submit(req)
        } else {
            self.w.submit(req)
        };
        match r {
            Ok(()) => panic!("an empty buffer was accepted"),
            Err(rej) => self.rejected(idx, ctx, rej, Some(Error::EmptyBuffer)),
        }
    }

    fn free(&mut self, idx: usize, via_submitter: bool) {
        // The fake forgets a socket when it is deregistered, so the model
        // mirrors what each one received after every step. Freeing applies
        // queued commands first, and their I/O would happen after the last
        // mirror: apply them with a wait of their own first.
        if self.queued && !self.closed {
            self.wait(Duration::ZERO);
            self.mirror_written();
        }
        let conn = self.conns[idx].conn;
        let r = if via_submitter {
            self.s.free(conn)
        } else {
            self.w.free(conn)
        };
        // Freeing after `close` does nothing and succeeds (close already
        // closed every connection), so a completion loop may free with `?`.
        match r {
            Ok(()) => {
                self.queued |= via_submitter && !self.closed;
                let m = &mut self.conns[idx];
                m.live = false;
                m.freed_after.get_or_insert(self.next_ctx);
            }
            Err(e) => panic!("free failed: {e:?}"),
        }
    }

    fn peer_send(&mut self, idx: usize, n: usize, event: bool) {
        let m = &self.conns[idx];
        if m.peer_eof {
            return;
        }
        let start = m.peer_sent.len();
        let salt = idx as u32;
        let bytes: Vec<u8> = (start..start + n)
            .map(|i| ((i as u32 ^ salt).wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        if self.with_fake(idx, |c| c.inbound.extend(&bytes)).is_some() {
            self.conns[idx].peer_sent.extend_from_slice(&bytes);
            if event {
                self.event(idx, true, false, false);
            }
        }
    }

    fn peer_close(&mut self, idx: usize) {
        if self.with_fake(idx, |c| c.eof = true).is_some() {
            self.conns[idx].peer_eof = true;
        }
    }

    /// The peer hangs up: end of stream after what it sent, optionally a
    /// reset for the next read and write, and a hang-up event.
    fn hang_up(&mut self, idx: usize, bits: u8) {
        let reset = bits & 1 != 0;
        let found = self.with_fake(idx, |c| {
            c.eof = true;
            if reset {
                c.read_script.push_back(Scripted::Fail(104));
                c.write_script.push_back(Scripted::Fail(104));
            }
        });
        if found.is_some() {
            self.conns[idx].peer_eof = true;
            self.event(idx, bits & 2 != 0, bits & 4 != 0, true);
        }
    }

    fn event(&mut self, idx: usize, readable: bool, writable: bool, hangup: bool) {
        if self.with_fake(idx, |_| ()).is_some() {
            let token = self.conns[idx].token;
            self.f.event_token(token, readable, writable, hangup);
        }
    }

    /// Op bytes 240 to 255: the newer operations. Bytes below 240 decode
    /// as they always did, so older inputs keep most of their meaning.
    fn step_more(&mut self, op: u8, inp: &mut Input<'_>) {
        let via_submitter = op % 2 == 1;
        match op {
            240 | 241 => self.watch_stream(via_submitter),
            242 | 243 => {
                if let Some(idx) = self.pick(inp) {
                    self.shutdown(idx, via_submitter);
                }
            }
            244 | 245 => self.notify(via_submitter),
            246 | 247 => {
                let kind = inp.byte();
                self.sleep(kind, via_submitter);
            }
            248 | 249 => {
                let which = inp.byte();
                self.cancel_timer(which, via_submitter);
            }
            250 | 251 => {
                if let Some(idx) = self.pick(inp) {
                    self.detach(idx, via_submitter);
                }
            }
            252 => {
                let (idx, what) = (self.pick(inp), inp.byte());
                if let Some(idx) = idx {
                    let errno = ERRNOS[usize::from(what) % ERRNOS.len()];
                    self.with_fake(idx, |c| c.shutdown_script.push_back(Scripted::Fail(errno)));
                }
            }
            253 => {
                let kind = inp.byte();
                self.sleep_pair(kind);
            }
            _ => {
                // A write (empty one time in sixteen), then a shutdown
                // right behind it.
                let (idx, kind, size, dl) = self.request_args(inp);
                if let Some(idx) = idx {
                    self.submit(Some(idx), kind | 3, size, dl, via_submitter);
                    self.shutdown(idx, via_submitter);
                }
            }
        }
    }

    fn shutdown(&mut self, idx: usize, via_submitter: bool) {
        let (conn, ctx) = (self.conns[idx].conn, self.ctx());
        let p = Pending {
            conn: idx,
            op: Op::Shutdown,
            swap: false,
            deadline: false,
            len: 0,
            data: Vec::new(),
            after_detach: false,
        };
        let refusal = Error::NotSupported { op: Op::Shutdown };
        self.submit_request(idx, ctx, p, Request::shutdown(conn, ctx), via_submitter, refusal);
    }

    fn detach(&mut self, idx: usize, via_submitter: bool) {
        let (conn, ctx) = (self.conns[idx].conn, self.ctx());
        let p = Pending {
            conn: idx,
            op: Op::Detach,
            swap: false,
            deadline: false,
            len: 0,
            data: Vec::new(),
            after_detach: false,
        };
        let refusal = Error::WatcherClosed;
        self.submit_request(idx, ctx, p, Request::detach(conn, ctx), via_submitter, refusal);
    }

    fn notify(&mut self, via_submitter: bool) {
        let ctx = self.ctx();
        self.notifies.push_back(ctx);
        let r = if via_submitter {
            self.s.notify(ctx)
        } else {
            self.w.notify(ctx)
        };
        match r {
            Ok(()) => self.queued |= via_submitter,
            Err(rej) => {
                self.connless_refused(ctx, rej);
                assert_eq!(self.notifies.pop_back(), Some(ctx));
            }
        }
    }

    /// A notification or sleep was refused: only because the watcher is
    /// closed, with its context and no buffer handed back.
    fn connless_refused(&mut self, ctx: u64, rej: Rejected<u64, Vec<u8>>) {
        assert!(
            self.closed && matches!(rej.error, Error::WatcherClosed),
            "notification or sleep refused with {:?} (closed: {})",
            rej.error,
            self.closed
        );
        assert_eq!(rej.context, ctx, "a refusal handed back another context");
        assert!(rej.buffer.is_none(), "a refusal made up a buffer");
        self.summary.refused += 1;
    }

    fn sleep_deadline(&self, kind: u8) -> Instant {
        let now = Instant::now();
        match kind % 6 {
            0 => now.checked_sub(Duration::from_millis(1)).unwrap_or(now),
            1 => now,
            2 => now + Duration::from_micros(200),
            3 => now + Duration::from_millis(1 + u64::from(kind / 8) % 2),
            // Equal deadlines: they fire in submission order.
            4 => self.last_sleep.unwrap_or(now),
            _ => now + FAR,
        }
    }

    fn sleep(&mut self, kind: u8, via_submitter: bool) {
        let deadline = self.sleep_deadline(kind);
        let ctx = self.ctx();
        self.submit_sleep(ctx, Request::sleep_until(deadline, ctx), deadline, via_submitter);
    }

    /// Two sleeps for one deadline, built first and submitted in the
    /// other order (requests may be built ahead): they fire in submission
    /// order.
    fn sleep_pair(&mut self, kind: u8) {
        let deadline = self.sleep_deadline(kind);
        let (first, second) = (self.ctx(), self.ctx());
        let built_first = Request::sleep_until(deadline, second);
        let built_second = Request::sleep_until(deadline, first);
        self.submit_sleep(first, built_second, deadline, kind & 0x40 != 0);
        self.submit_sleep(second, built_first, deadline, kind & 0x80 != 0);
    }

    fn submit_sleep(&mut self, ctx: u64, req: Request<u64, Vec<u8>>, deadline: Instant, via_submitter: bool) {
        let timer = req.timer().expect("a sleep has a timer");
        self.sleeps.insert(
            ctx,
            SleepModel {
                deadline,
                must_cancel: false,
            },
        );
        let r = if via_submitter {
            self.s.submit(req)
        } else {
            self.w.submit(req)
        };
        match r {
            Ok(()) => {
                self.queued |= via_submitter;
                self.timers.push((ctx, timer));
                self.last_sleep = Some(deadline);
            }
            Err(rej) => {
                self.connless_refused(ctx, rej);
                self.sleeps.remove(&ctx);
            }
        }
    }

    /// Cancels a sleep accepted earlier (pending or not), or one never
    /// submitted, which names none of this watcher's.
    fn cancel_timer(&mut self, which: u8, via_submitter: bool) {
        let timer = if self.timers.is_empty() || which % 8 == 7 {
            let never: Request<u64, Vec<u8>> = Request::sleep_until(Instant::now(), 0);
            never.timer().expect("a sleep has a timer")
        } else {
            let (ctx, timer) = self.timers[usize::from(which) % self.timers.len()];
            if !self.closed {
                if let Some(sleep) = self.sleeps.get_mut(&ctx) {
                    sleep.must_cancel = true;
                }
            }
            timer
        };
        let r = if via_submitter {
            self.s.cancel_timer(timer)
        } else {
            self.w.cancel_timer(timer)
        };
        assert!(r.is_ok(), "cancel_timer failed: {r:?}");
        self.queued |= via_submitter && !self.closed;
    }

    fn close(&mut self) {
        self.w.close();
        self.closed = true;
        for m in &mut self.conns {
            m.live = false;
        }
        assert!(self.w.is_closed() && self.s.is_closed());
    }

    /// One `wait_io_timeout`, every completion checked.
    fn wait(&mut self, timeout: Duration) {
        // Every wait applies the queued commands first.
        self.queued = false;
        let mut out = Vec::new();
        match self.w.wait_io_timeout(&mut out, timeout) {
            Ok(n) => assert_eq!(n, out.len(), "wait_io's count disagrees with the batch"),
            Err(Error::WatcherClosed) => {
                assert!(self.closed, "wait_io reported a closed watcher that is open");
                assert!(out.is_empty());
            }
            Err(e) => panic!("wait_io failed: {e:?}"),
        }
        let returned = Instant::now();
        for c in out {
            self.check(c, returned);
        }
        // A cancel reaches its sleep in the next batch (a cancel through
        // the submitter is applied as the wait starts).
        if !self.closed {
            if let Some((ctx, _)) = self.sleeps.iter().find(|(_, s)| s.must_cancel) {
                panic!("sleep {ctx} was cancelled while pending and did not complete in the next batch");
            }
        }
    }

    // ----- invariants ----------------------------------------------------------

    /// Runs `f` on the fake socket of connection `idx`: registered, or as
    /// it was when the engine deregistered it (freed, detached).
    fn fake_state<R>(&self, idx: usize, f: impl FnOnce(&FakeConn) -> R) -> Option<R> {
        let (fd, token) = (self.conns[idx].conn.fd() as i32, self.conns[idx].token);
        self.f
            .with(|s| match s.conns.get(&fd).filter(|c| c.token == token) {
                Some(c) => Some(f(c)),
                None => s
                    .deregistered
                    .iter()
                    .rev()
                    .find(|(n, c)| *n == fd && c.token == token)
                    .map(|(_, c)| f(c)),
            })
    }

    /// Copies what each fake socket received since last time (up to its
    /// deregistration: a write may complete in the wait that detaches).
    fn mirror_written(&mut self) {
        for idx in 0..self.conns.len() {
            let have = self.conns[idx].written.len();
            if let Some(new) = self.fake_state(idx, |c| {
                assert!(c.written.len() >= have, "bytes written to a socket disappeared");
                c.written[have..].to_vec()
            }) {
                self.conns[idx].written.extend_from_slice(&new);
            }
        }
    }

    fn check(&mut self, mut c: Completion<u64, Vec<u8>>, returned: Instant) {
        let ctx = c.context;
        if matches!(c.op, Op::Notify | Op::Sleep) {
            self.check_connless(c, returned);
            return;
        }
        let detached = c.detached.take();
        assert!(
            detached.is_none() || c.op == Op::Detach,
            "a {:?} handed a descriptor back",
            c.op
        );
        let Some(p) = self.pending.remove(&ctx) else {
            panic!(
                "completion for unknown or already completed request {ctx} ({:?})",
                c.op
            );
        };
        let idx = p.conn;
        let n = &mut self.summary;
        n.completions += 1;
        match c.error {
            None => n.ok += 1,
            Some(Error::Eof) => n.eof += 1,
            Some(Error::Deadline) => n.deadline += 1,
            Some(Error::ConnClosed) => n.conn_closed += 1,
            Some(Error::WatcherClosed) => n.watcher_closed += 1,
            Some(Error::Io(_)) => n.io_error += 1,
            _ => {}
        }
        assert_eq!(
            c.conn, self.conns[idx].conn,
            "completion names another connection"
        );
        assert_eq!(c.op, p.op, "completion names another operation");
        // Order: per direction, completions follow submission order; only
        // a deadline may end a request out of turn, a request submitted
        // after a detach, which never runs, and one the connection cannot
        // run (queued through the submitter, it completes at once).
        let deadline_hit =
            matches!(c.error, Some(Error::Deadline | Error::NotSupported { .. })) || p.after_detach;
        if p.after_detach {
            assert!(
                matches!(c.error, Some(Error::ConnClosed | Error::WatcherClosed)),
                "{:?} {ctx} submitted after a detach ended with {:?}",
                p.op,
                c.error
            );
            n.after_detach += 1;
        }
        let m = &mut self.conns[idx];
        let queue = if p.op.is_read() {
            &mut m.reads
        } else {
            &mut m.writes
        };
        if deadline_hit {
            let at = queue.iter().position(|&x| x == ctx).expect("queued");
            queue.remove(at);
        } else {
            let head = queue.pop_front();
            assert_eq!(
                head,
                Some(ctx),
                "{:?} {ctx} on {:?} completed out of order ({:?})",
                p.op,
                c.conn,
                c.error
            );
        }
        // Errors must be explained by what happened.
        match &c.error {
            None => {}
            Some(Error::Deadline) => assert!(p.deadline, "Deadline on a request without one"),
            Some(Error::ConnClosed) => assert!(
                !self.conns[idx].live || self.closed || p.after_detach,
                "ConnClosed on a live connection {:?}",
                c.conn
            ),
            Some(Error::NotSupported { op }) => assert!(
                *op == Op::Shutdown && p.op == Op::Shutdown && !self.conns[idx].stream,
                "{:?} on a {} refused as not supported for {op:?}",
                p.op,
                if self.conns[idx].stream {
                    "stream socket"
                } else {
                    "pipe"
                }
            ),
            Some(Error::WatcherClosed) => assert!(self.closed, "WatcherClosed on an open watcher"),
            Some(Error::Eof) => {
                let m = &self.conns[idx];
                assert!(p.op.is_read(), "Eof on a write");
                assert!(m.peer_eof, "Eof although the peer did not close");
                assert_eq!(
                    m.read_cursor + c.bytes,
                    m.peer_sent.len(),
                    "Eof before every byte the peer sent was read"
                );
            }
            Some(Error::Io(e)) => {
                let errno = e.raw_os_error().unwrap_or(0);
                assert!(ERRNOS.contains(&errno), "unscripted OS error {e}");
            }
            Some(e) => panic!("unexpected error in a completion: {e:?}"),
        }
        match p.op {
            Op::Shutdown => self.check_shutdown(&p, &c, ctx),
            Op::Detach => self.check_detach(&p, &c, ctx, detached),
            Op::Write => self.check_write(&p, &c, ctx),
            _ => self.check_read(&p, &c),
        }
    }

    /// A notification's or a sleep's completion.
    fn check_connless(&mut self, c: Completion<u64, Vec<u8>>, returned: Instant) {
        let ctx = c.context;
        let none = Request::<u64, Vec<u8>>::notify(0).conn();
        assert_eq!(c.conn, none, "{:?} {ctx} names a connection", c.op);
        assert_eq!(
            (c.bytes, &c.buffer),
            (0, &Buffer::None),
            "{:?} {ctx} moved bytes or made up a buffer",
            c.op
        );
        assert!(c.detached.is_none() && c.peer.is_none());
        let n = &mut self.summary;
        n.completions += 1;
        match &c.error {
            None => n.ok += 1,
            Some(Error::WatcherClosed) => {
                assert!(self.closed, "WatcherClosed on an open watcher");
                n.watcher_closed += 1;
            }
            Some(Error::Cancelled) if c.op == Op::Sleep => n.sleeps_cancelled += 1,
            Some(e) => panic!("{:?} {ctx} ended with {e:?}", c.op),
        }
        if c.op == Op::Notify {
            let head = self.notifies.pop_front();
            assert_eq!(
                head,
                Some(ctx),
                "notification {ctx} is unknown, done already or out of order"
            );
            n.notifies += 1;
            return;
        }
        let Some(sleep) = self.sleeps.remove(&ctx) else {
            panic!("completion for unknown or already completed sleep {ctx}");
        };
        match c.error {
            None => {
                assert!(!sleep.must_cancel, "sleep {ctx} fired after it was cancelled");
                assert!(
                    sleep.deadline <= returned,
                    "sleep {ctx} fired {:?} before its deadline",
                    sleep.deadline - returned
                );
                // Deadline order, equal deadlines in submission order
                // (contexts grow with submissions): nothing before it in
                // that order may still be pending.
                let earlier = self
                    .sleeps
                    .iter()
                    .filter(|(&o, s)| (s.deadline, o) < (sleep.deadline, ctx))
                    .map(|(&o, s)| (o, s.deadline == sleep.deadline))
                    .min();
                if let Some((other, same)) = earlier {
                    panic!(
                        "sleep {ctx} fired while sleep {other}, due {}, was pending",
                        if same {
                            "at the same instant and submitted before it"
                        } else {
                            "earlier"
                        }
                    );
                }
                n.sleeps_fired += 1;
            }
            Some(Error::Cancelled) => assert!(
                sleep.must_cancel,
                "sleep {ctx} cancelled, but nobody cancelled it"
            ),
            _ => {}
        }
    }

    fn check_shutdown(&mut self, p: &Pending, c: &Completion<u64, Vec<u8>>, ctx: u64) {
        assert_eq!(
            (c.bytes, &c.buffer),
            (0, &Buffer::None),
            "a shutdown moved bytes or made up a buffer"
        );
        if c.error.is_some() {
            return;
        }
        assert!(self.conns[p.conn].stream, "a pipe was shut down");
        self.mirror_written();
        let shut = self.fake_state(p.conn, |k| k.write_shut).flatten();
        let m = &mut self.conns[p.conn];
        assert_eq!(
            shut,
            Some(m.write_cursor),
            "the write side was shut after {shut:?} bytes, the writes before the shutdown reported {}",
            m.write_cursor
        );
        assert_eq!(
            m.written.len(),
            m.write_cursor,
            "the socket received bytes no write reported before the shutdown"
        );
        m.shut.get_or_insert(ctx);
        self.summary.shutdowns += 1;
    }

    fn check_detach(&mut self, p: &Pending, c: &Completion<u64, Vec<u8>>, ctx: u64, fd: Option<OwnedFd>) {
        assert_eq!(
            (c.bytes, &c.buffer),
            (0, &Buffer::None),
            "a detach moved bytes or made up a buffer"
        );
        let Some(fd) = fd else {
            assert!(c.error.is_some(), "a detach succeeded without the descriptor");
            return;
        };
        assert!(c.error.is_none(), "a failed detach handed a descriptor back");
        let idx = p.conn;
        let m = &self.conns[idx];
        assert!(
            m.freed_after.is_none_or(|f| f >= ctx),
            "a connection freed before the detach was submitted was detached"
        );
        assert_eq!(m.detaching, Some(ctx), "a detach behind another succeeded");
        let raw = fd.as_raw_fd();
        assert_eq!(raw as u32, m.conn.fd(), "a detach handed back another descriptor");
        if m.file.is_some() {
            assert_eq!(file_of(raw), m.file, "a detach handed back another open file");
        }
        assert_ne!(nonblocking(raw), Some(false), "a detached descriptor is blocking");
        assert!(
            m.writes.iter().all(|&r| r > ctx),
            "detached with a write submitted before the detach pending"
        );
        // Reads before it that are still pending complete after it with
        // `ConnClosed` (the connection is no longer live) and the bytes
        // they took so far; the bytes they waited for stay in the socket.
        assert!(
            self.f.with(|s| !s.conns.contains_key(&raw)),
            "a detached descriptor is still registered"
        );
        self.mirror_written();
        let (inbound, written) = self
            .fake_state(idx, |k| (k.inbound.len(), k.written.len()))
            .expect("the fake socket was deregistered");
        let m = &mut self.conns[idx];
        assert_eq!(
            m.write_cursor, written,
            "the socket received bytes no write reported before the detach"
        );
        m.live = false;
        m.detached = Some(fd);
        m.detach_unread = Some((inbound, m.peer_sent.len()));
        self.summary.detaches += 1;
        self.check_detach_unread(idx);
    }

    /// Once the reads pending before `idx`'s detach have completed (right
    /// after it, with what they took): every byte the peer sent before the
    /// detach was read or is still in the socket handed back.
    fn check_detach_unread(&mut self, idx: usize) {
        let m = &mut self.conns[idx];
        let (Some((inbound, sent)), Some(detach)) = (m.detach_unread, m.detaching) else {
            return;
        };
        if m.reads.iter().any(|&r| r < detach) {
            return;
        }
        assert_eq!(
            m.read_cursor + inbound,
            sent,
            "bytes the peer sent were lost at the detach of {:?}",
            m.conn
        );
        m.detach_unread = None;
    }

    fn check_read(&mut self, p: &Pending, c: &Completion<u64, Vec<u8>>) {
        let m = &mut self.conns[p.conn];
        match (&c.buffer, p.swap) {
            (Buffer::Swap(b), true) => {
                assert_eq!(b.len(), c.bytes, "swap slice length differs from the byte count");
                assert!(b.len() <= self.swap_size, "swap read larger than the swap memory");
            }
            (Buffer::User(b), false) => {
                assert_eq!(b.len(), p.len, "read buffer came back with another size");
                assert!(c.bytes <= b.len());
            }
            _ => panic!("read came back with the wrong kind of buffer"),
        }
        if c.error.is_none() {
            assert!(c.bytes > 0, "successful read of 0 bytes");
            if p.op == Op::ReadFull {
                assert_eq!(c.bytes, p.len, "read_full succeeded without filling its buffer");
            }
        }
        if p.swap {
            assert!(
                c.error.is_none() || c.bytes == 0,
                "failed swap read reported bytes"
            );
        }
        let data = c.data();
        let want = m
            .peer_sent
            .get(m.read_cursor..m.read_cursor + data.len())
            .unwrap_or_else(|| panic!("read returned {} bytes the peer never sent", data.len()));
        assert_eq!(
            data, want,
            "read bytes differ from what the peer sent at offset {}",
            m.read_cursor
        );
        m.read_cursor += data.len();
        self.summary.read_bytes += data.len() as u64;
        self.check_detach_unread(p.conn);
    }

    fn check_write(&mut self, p: &Pending, c: &Completion<u64, Vec<u8>>, ctx: u64) {
        let Buffer::User(b) = &c.buffer else {
            panic!("write came back with a swap buffer")
        };
        assert_eq!(b, &p.data, "write buffer came back changed");
        assert!(c.bytes <= b.len(), "write reported more bytes than it had");
        if c.error.is_none() {
            assert_eq!(c.bytes, b.len(), "write succeeded without writing everything");
        }
        // Submitted after a shutdown that succeeded: nothing moves.
        if self.conns[p.conn].shut.is_some_and(|s| ctx > s) {
            assert_eq!(c.bytes, 0, "a write submitted after a shutdown moved bytes");
            if !b.is_empty() {
                assert!(c.error.is_some(), "a write after a shutdown succeeded");
            }
            self.summary.writes_after_shutdown += 1;
        }
        // What it reports written is the next part of what the socket got.
        self.mirror_written();
        let m = &mut self.conns[p.conn];
        let got = m
            .written
            .get(m.write_cursor..m.write_cursor + c.bytes)
            .unwrap_or_else(|| {
                panic!(
                    "write reports {} bytes the socket never received ({} of {} accounted)",
                    c.bytes,
                    m.write_cursor,
                    m.written.len()
                )
            });
        assert_eq!(
            got,
            &b[..c.bytes],
            "bytes written differ at offset {}",
            m.write_cursor
        );
        m.write_cursor += c.bytes;
        self.summary.write_bytes += c.bytes as u64;
    }

    /// Lets every connection make all the progress it can, then checks
    /// nothing is stuck and every byte is accounted for.
    fn settle(&mut self) {
        for idx in 0..self.conns.len() {
            if !self.conns[idx].live {
                continue;
            }
            let found = self.with_fake(idx, |c| {
                c.read_script.clear();
                c.write_script.clear();
                c.shutdown_script.clear();
                c.write_room = usize::MAX;
            });
            if found.is_some() {
                self.event(idx, true, true, false);
            }
        }
        // Each turn either completes something or counts as quiet: the
        // bound only ends a loop that would not (a ring completes one
        // request per connection and direction per turn, so a hundred
        // reads queued on one connection take a hundred turns).
        let mut quiet = 0;
        for _ in 0..100 + self.pending.len() {
            let before = self.pending.len();
            self.wait(Duration::ZERO);
            self.mirror_written();
            quiet = if self.pending.len() == before {
                quiet + 1
            } else {
                0
            };
            if quiet >= 3 {
                break;
            }
        }
        for idx in 0..self.conns.len() {
            let m = &self.conns[idx];
            if !m.live {
                continue;
            }
            let Some((inbound, eof)) = self.with_fake(idx, |c| (c.inbound.len(), c.eof)) else {
                continue;
            };
            // A detach does not wait for reads: nothing on the writing
            // side may be left.
            assert!(
                m.writes.is_empty(),
                "{} writes stuck on {:?} although it is writable with room",
                m.writes.len(),
                m.conn
            );
            if !m.reads.is_empty() {
                assert!(
                    inbound == 0 && !eof,
                    "a read is stuck on {:?} with {inbound} bytes waiting (eof: {eof})",
                    m.conn
                );
            } else {
                assert_eq!(
                    m.read_cursor + inbound,
                    m.peer_sent.len(),
                    "bytes the peer sent were lost or duplicated on {:?}",
                    m.conn
                );
            }
            assert_eq!(
                m.write_cursor,
                m.written.len(),
                "the socket received bytes no write reported on {:?}",
                m.conn
            );
        }
        self.summary.settles += 1;
    }

    /// The end of every input: settle, close, and drain everything.
    fn finish(&mut self) {
        if !self.closed {
            self.settle();
            self.close();
        }
        let mut closed_reported = false;
        for _ in 0..1000 {
            let mut out = Vec::new();
            match self.w.wait_io_timeout(&mut out, Duration::ZERO) {
                Ok(_) => {
                    let returned = Instant::now();
                    for c in out {
                        self.check(c, returned);
                    }
                }
                Err(Error::WatcherClosed) => {
                    closed_reported = true;
                    break;
                }
                Err(e) => panic!("wait_io failed after close: {e:?}"),
            }
        }
        assert!(closed_reported, "wait_io never reported the watcher closed");
        assert!(
            self.pending.is_empty(),
            "{} requests never completed (first: {:?})",
            self.pending.len(),
            self.pending.values().next().map(|p| p.op)
        );
        assert!(
            self.notifies.is_empty() && self.sleeps.is_empty(),
            "notifications {:?} or sleeps {:?} never completed",
            self.notifies,
            self.sleeps.keys().collect::<Vec<_>>()
        );
        for m in &self.conns {
            assert!(
                m.detach_unread.is_none(),
                "the bytes at the detach of {:?} were never accounted for",
                m.conn
            );
            // A detached descriptor stays open, the same file, and the
            // engine never registers it again.
            if let Some(fd) = &m.detached {
                let raw = fd.as_raw_fd();
                assert!(
                    self.f.with(|s| !s.conns.contains_key(&raw)),
                    "a detached descriptor was registered again"
                );
                if m.file.is_some() {
                    assert_eq!(file_of(raw), m.file, "a detached descriptor was replaced");
                }
            }
            assert!(m.reads.is_empty() && m.writes.is_empty());
            assert_eq!(
                m.write_cursor,
                m.written.len(),
                "the socket received bytes no write reported on {:?}",
                m.conn
            );
        }
        // Later submissions are refused, and waiting stays closed.
        if let Some(m) = self.conns.first() {
            let conn = m.conn;
            match self.w.read(conn, 0, vec![0; 1]) {
                Err(r) => assert!(matches!(r.error, Error::WatcherClosed)),
                Ok(()) => panic!("a read was accepted after close"),
            }
        }
        let mut out = Vec::new();
        assert!(matches!(
            self.w.wait_io_timeout(&mut out, Duration::ZERO),
            Err(Error::WatcherClosed)
        ));
    }
}
