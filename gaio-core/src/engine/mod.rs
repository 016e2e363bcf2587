//! The readiness-to-completion engine: a single-threaded state machine,
//! generic over the [`Poller`].
//!
//! One turn: apply queued commands, wait for readiness (no longer than the
//! nearest deadline), run the I/O that became possible, fire due deadlines.
//! Whoever owns the engine turns it: the thread calling `wait_io` (inline
//! mode) or a background thread.
//!
//! Per connection, reads and writes each have a FIFO list of pending
//! requests. Only the head of a list does I/O; it runs until it completes
//! or the descriptor would block. The engine remembers readiness itself
//! (edge-triggered pollers report each change once), so it never makes a
//! system call it knows would block. A request that arrives first in its
//! list is tried at once, before it is stored (see `attempt`).
//!
//! Memory follows use: work vectors keep the capacity steady traffic needs,
//! and what a burst grew is given back once the engine has been idle for
//! [`IDLE_TRIM`].

mod attempt;
mod chunked;
mod lifecycle;
mod panic;
mod slab;
mod swap;
mod timers;

#[cfg(test)]
mod tests;

use std::io::IoSlice;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::request::{Request, Target};
use crate::shared::{Command, Shared};
use crate::{Buffer, Completion, Conn, Error, Event, IoBuf, Op, Poller, Rejected};
use crate::{FdKind, IoOutcome};

use attempt::{Attempt, IoState};
use chunked::Chunked;
use slab::{List, Node, Slab, NIL};
use timers::{Entry, Timers};

/// Most requests gathered into one `writev`/`sendmsg`.
const MAX_GATHER: usize = 64;
/// Longest single sleep in the poller; the engine re-evaluates after it.
const MAX_SLEEP: Duration = Duration::from_secs(3600);
/// Longest the engine hands out completions made at submission without
/// looking at the poller: how long a connection may wait to be seen while
/// another keeps completing its requests at once (a bulk transfer).
const MAX_POLL_GAP: Duration = Duration::from_micros(200);
/// Most batches handed out in a row without looking at the poller.
const MAX_UNPOLLED_BATCHES: u32 = 16;
/// How long the engine must have been idle before it gives back the memory
/// of work vectors a burst grew (see `give_back_burst_memory`).
const IDLE_TRIM: Duration = Duration::from_millis(50);
/// How soon a connection starved of kernel buffers (ENOBUFS) is retried.
const STARVED_RETRY: Duration = Duration::from_millis(1);

/// Which of a connection's two lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    Read,
    Write,
}

impl Dir {
    fn of(op: Op) -> Dir {
        if op.is_read() {
            Dir::Read
        } else {
            Dir::Write
        }
    }
}

/// A connection the engine owns.
struct ConnState {
    fd: OwnedFd,
    gen: u32,
    reads: List,
    writes: List,
    /// Readiness and state bits, one byte (see the `ConnState` methods):
    /// a connection slot stays at 28 bytes.
    flags: u8,
}

/// A read may make progress without waiting for an edge.
const READABLE: u8 = 1;
/// A write may make progress without waiting for an edge.
const WRITABLE: u8 = 2;
/// The peer hung up or the connection failed: reads never wait again.
const HUP: u8 = 4;
/// A read returned end of stream: every read from now on gets `Eof`.
const EOF: u8 = 8;
/// A stream socket (`recv`/`send` with `MSG_NOSIGNAL`; a short write
/// means its send buffer is full).
const STREAM: u8 = 16;
/// A short read proves the receive queue empty (see `attempt::Io::read`):
/// a plain TCP socket on a poller that reports urgent data, or any stream
/// socket on a level-triggered poller.
const SHORT_READ_DRAINS: u8 = 32;
/// Urgent data was announced: a short read may have stopped at its mark,
/// so only a read that would block proves the socket drained again.
const URGENT: u8 = 64;

impl ConnState {
    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    fn set(&mut self, flag: u8, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }

    fn kind(&self) -> FdKind {
        if self.has(STREAM) {
            FdKind::StreamSocket
        } else {
            FdKind::Other
        }
    }

    fn list(&mut self, dir: Dir) -> &mut List {
        match dir {
            Dir::Read => &mut self.reads,
            Dir::Write => &mut self.writes,
        }
    }
}

/// Tuning fixed at construction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    pub(crate) swap_size: usize,
    pub(crate) max_events: usize,
}

/// The engine. See the module documentation.
pub(crate) struct Engine<P: Poller, C, B> {
    shared: Arc<Shared<P, C, B>>,
    /// Connections indexed by file descriptor number.
    conns: Chunked<Option<ConnState>>,
    nodes: Slab<C, B>,
    timers: Timers,
    /// Swap memory, the read view and the starved list: what an I/O
    /// attempt needs besides the connection and the request.
    io: IoState<B>,
    raw: P::Events,
    events: Vec<Event>,
    /// Completions not yet handed out.
    ready: Vec<Completion<C, B>>,
    /// Commands taken from the shared queue, kept for its capacity.
    commands: Vec<Command<C, B>>,
    epoch: Instant,
    /// When the poller was last looked at, and how many batches of
    /// completions made at submission were handed out since (see `wait`).
    last_poll: Instant,
    unpolled_batches: u32,
    /// A work vector holds more than it needs when idle: give the memory
    /// back once the engine has been idle for [`IDLE_TRIM`].
    burst_memory: bool,
    /// Slots the request slab, the connection table and the timer heap
    /// held together when memory was last given back: growing past it is
    /// a burst, whose memory the next idle period gives back.
    tables_mark: usize,
    /// Since when the engine has had nothing to do (tracked only while it
    /// holds burst memory).
    idle_since: Option<Instant>,
    /// Shut down: every connection closed, every request completed.
    finished: bool,
    /// Inside a call from the owning thread (inline mode); still set at
    /// the next call only if a panic unwound out of the last one (see
    /// `panic`).
    in_call: bool,
    /// A panic unwound out of a call and the watcher closed because of it.
    panicked: bool,
}

impl<P: Poller, C, B: IoBuf> Engine<P, C, B> {
    pub(crate) fn new(shared: Arc<Shared<P, C, B>>, config: Config) -> Self {
        Engine {
            shared,
            conns: Chunked::new(),
            nodes: Slab::new(),
            timers: Timers::new(),
            io: IoState::new(config.swap_size),
            raw: P::events(config.max_events.max(1)),
            events: Vec::with_capacity(config.max_events.max(1)),
            ready: Vec::new(),
            commands: Vec::new(),
            epoch: Instant::now(),
            last_poll: Instant::now(),
            unpolled_batches: 0,
            burst_memory: false,
            tables_mark: 0,
            idle_since: None,
            finished: false,
            in_call: false,
            panicked: false,
        }
    }

    /// Someone asked the watcher to close.
    pub(crate) fn close_requested(&self) -> bool {
        self.shared.is_closed()
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    /// Completions not yet handed out, for the background driver.
    pub(crate) fn ready_mut(&mut self) -> &mut Vec<Completion<C, B>> {
        &mut self.ready
    }

    // ----- submission on the owning thread --------------------------------

    /// Hands a descriptor over from the owning thread.
    pub(crate) fn watch(&mut self, fd: OwnedFd) -> Result<Conn, Error> {
        let (conn, fd, info) = self.shared.register(fd)?;
        self.insert_conn(conn, fd, info);
        Ok(conn)
    }

    /// Submits from the owning thread: the I/O is tried at once when the
    /// request is first in its list and the descriptor is known ready.
    pub(crate) fn submit(&mut self, req: Request<C, B>) -> Result<(), Rejected<C, B>> {
        if self.finished || self.shared.is_closed() {
            return Err(req.reject(Error::WatcherClosed));
        }
        if let Err(e) = self.shared.check_owner(req.conn) {
            return Err(req.reject(e));
        }
        let req = req.validate()?;
        // Commands queued by other threads may have happened before this
        // call (a `Watch` of this very connection, say): apply them first.
        self.drain_commands();
        self.apply_request(req);
        Ok(())
    }

    /// Frees a connection from the owning thread.
    pub(crate) fn free(&mut self, conn: Conn) -> Result<(), Error> {
        if self.finished || self.shared.is_closed() {
            return Err(Error::WatcherClosed);
        }
        self.shared.check_owner(conn)?;
        self.drain_commands();
        self.free_conn(conn, || Error::ConnClosed);
        Ok(())
    }

    // ----- the loop --------------------------------------------------------

    /// Turns the engine until at least one completion is ready or `limit`
    /// passes, then appends the ready completions to `out`.
    ///
    /// Returns `Err(WatcherClosed)` once the watcher is closed and every
    /// completion has been handed out.
    pub(crate) fn wait(
        &mut self,
        out: &mut Vec<Completion<C, B>>,
        limit: Option<Instant>,
    ) -> Result<usize, Error> {
        loop {
            if !self.finished && self.shared.is_closed() {
                self.shutdown();
            }
            if self.finished {
                break;
            }
            self.drain_commands();
            if !self.ready.is_empty() && self.may_skip_poll() {
                // Completions made at submission are ready and the poller
                // was looked at a moment ago: return them without a system
                // call. A bulk transfer that completes every request at
                // submission thus polls once per several chunks, and no
                // connection waits more than MAX_POLL_GAP to be seen.
                self.unpolled_batches += 1;
                break;
            }
            let expired = limit.is_some_and(|l| Instant::now() >= l);
            let block = self.ready.is_empty() && !expired;
            self.turn(block, limit)?;
            if !self.ready.is_empty() || expired {
                break;
            }
        }
        if self.finished && self.ready.is_empty() {
            return Err(self.closed_error());
        }
        let n = self.ready.len();
        self.burst_memory |= n > KEEP_CAPACITY;
        hand_over(&mut self.ready, out);
        Ok(n)
    }

    /// One turn: poll (blocking up to the nearest deadline and `limit` if
    /// `block`), apply commands, run the I/O events allow, fire deadlines.
    pub(crate) fn turn(&mut self, block: bool, limit: Option<Instant>) -> std::io::Result<()> {
        let mut timeout = if block {
            self.sleep_time(limit)
        } else {
            Some(Duration::ZERO)
        };
        let sleeping = timeout != Some(Duration::ZERO) && self.shared.prepare_sleep();
        if !sleeping {
            timeout = Some(Duration::ZERO);
        }
        // Holding memory from a burst: sleep no longer than IDLE_TRIM, so
        // an engine that went idle notices and gives it back.
        if sleeping && self.burst_memory {
            timeout = Some(timeout.map_or(IDLE_TRIM, |t| t.min(IDLE_TRIM)));
        }
        let mut events = std::mem::take(&mut self.events);
        let waited = self.shared.poller.wait(&mut self.raw, &mut events, timeout);
        if sleeping {
            self.shared.woke();
        }
        let now = Instant::now();
        if self.burst_memory {
            self.note_idleness(events.is_empty() && !self.shared.queue.is_pending(), now);
        }
        self.last_poll = now;
        self.unpolled_batches = 0;
        self.drain_commands();
        for ev in events.drain(..) {
            self.on_event(ev);
        }
        self.events = events;
        self.burst_memory |= self.io.swap.holds_retired() || self.tables_slots() > self.tables_mark;
        self.retry_starved();
        self.fire_timers();
        waited
    }

    /// True if completions made at submission may be handed out without
    /// looking at the poller first: it was looked at less than
    /// [`MAX_POLL_GAP`] and fewer than [`MAX_UNPOLLED_BATCHES`] batches ago.
    fn may_skip_poll(&self) -> bool {
        self.unpolled_batches < MAX_UNPOLLED_BATCHES && self.last_poll.elapsed() < MAX_POLL_GAP
    }

    /// Capacity of the engine's command vector and of the shared queue's.
    #[cfg(test)]
    pub(crate) fn command_capacity(&self) -> (usize, usize) {
        (self.commands.capacity(), self.shared.queue.capacity())
    }

    /// True while the engine holds memory it will give back when idle.
    #[cfg(test)]
    pub(crate) fn holds_burst_memory(&self) -> bool {
        self.burst_memory
    }

    /// Slots held by the request slab, the connection table and the timer
    /// heap.
    #[cfg(test)]
    pub(crate) fn table_capacities(&self) -> (usize, usize, usize) {
        (
            self.nodes.capacity(),
            self.conns.capacity(),
            self.timers.capacity(),
        )
    }

    /// Tracks how long the engine has had nothing to do while holding
    /// burst memory, and gives the memory back after [`IDLE_TRIM`].
    fn note_idleness(&mut self, idle: bool, now: Instant) {
        if !idle {
            self.idle_since = None;
            return;
        }
        let since = *self.idle_since.get_or_insert(now);
        if now.duration_since(since) >= IDLE_TRIM {
            self.give_back_burst_memory();
            self.idle_since = None;
        }
    }

    /// The engine went idle: shrink the work vectors a burst grew and drop
    /// the retired swap slabs. The next burst grows them again: a few
    /// allocations per idle period.
    fn give_back_burst_memory(&mut self) {
        tracing::trace!(
            commands = self.commands.capacity(),
            ready = self.ready.capacity(),
            "idle: giving back burst memory"
        );
        if self.commands.is_empty() {
            self.commands.shrink_to(IDLE_KEEP_CAPACITY);
        }
        if self.ready.is_empty() {
            self.ready.shrink_to(KEEP_CAPACITY);
        }
        self.shared.queue.shrink_to(IDLE_KEEP_CAPACITY);
        self.io.swap.drop_retired();
        // The tables give back what lies past their last entry in use; see
        // `Chunked` for what must stay (a connection on a high descriptor
        // number keeps the table up to its chunk).
        self.conns.trim_trailing(Option::is_none);
        self.nodes.trim();
        let nodes = &self.nodes;
        self.timers.trim(|e| nodes.find_timer(e.node, e.timer).is_some());
        self.tables_mark = self.tables_slots();
        self.burst_memory = false;
    }

    /// Slots the request slab, the connection table and the timer heap
    /// hold (used or not).
    fn tables_slots(&self) -> usize {
        self.nodes.capacity() + self.conns.capacity() + self.timers.capacity()
    }

    /// How long the poller may sleep: until the nearest deadline, `limit`,
    /// or a retry of a starved connection.
    fn sleep_time(&self, limit: Option<Instant>) -> Option<Duration> {
        let mut sleep = None::<Duration>;
        let mut cap = |d: Duration| sleep = Some(sleep.map_or(d, |s| s.min(d)));
        if let Some(at) = self.timers.earliest() {
            cap(Duration::from_nanos(at.saturating_sub(self.now_ns())));
        }
        if let Some(l) = limit {
            cap(l.saturating_duration_since(Instant::now()));
        }
        if !self.io.starved.is_empty() {
            cap(STARVED_RETRY);
        }
        Some(sleep.map_or(MAX_SLEEP, |s| s.min(MAX_SLEEP)))
    }

    fn now_ns(&self) -> u64 {
        to_ns(self.epoch.elapsed())
    }

    // ----- commands ----------------------------------------------------------

    fn drain_commands(&mut self) {
        if !self.shared.queue.is_pending() {
            return;
        }
        let mut commands = std::mem::take(&mut self.commands);
        self.shared.queue.take_into(&mut commands);
        let used = commands.len();
        for cmd in commands.drain(..) {
            match cmd {
                Command::Watch { conn, fd, info } => {
                    // Registered on another thread: events reported before
                    // now named an unknown connection and were dropped, a
                    // hang-up among them, and an edge is not repeated. Have
                    // the poller report the current readiness again.
                    if let Err(e) = self.shared.poller.reregister(fd.as_fd(), conn.token()) {
                        tracing::warn!(fd = conn.fd, error = %e, "re-registering a handed-over connection failed");
                    }
                    self.insert_conn(conn, fd, info);
                }
                Command::Submit(req) => self.apply_request(req),
                Command::Free(conn) => self.free_conn(conn, || Error::ConnClosed),
            }
        }
        self.commands = commands;
        trim(&mut self.commands, used);
        // The queue's vector and this one trade places: both hold about
        // this much.
        self.burst_memory |= self.commands.capacity() > IDLE_KEEP_CAPACITY;
    }

    /// Adds a request to its connection. A request first in its list is
    /// tried at once, before it is stored: one that completes never
    /// touches the slab or the timer heap.
    fn apply_request(&mut self, req: Request<C, B>) {
        if self.conn_mut(req.conn).is_none() {
            self.ready.push(completion_of(req, Error::ConnClosed));
            return;
        }
        if req.deadline.is_some_and(|d| d <= Instant::now()) {
            self.ready.push(completion_of(req, Error::Deadline));
            return;
        }
        let dir = Dir::of(req.op);
        let conn = req.conn;
        let deadline = req.deadline;
        let buf = match req.target {
            Target::User(buf, view) => {
                if view.is_some() {
                    self.io.read_view = view;
                }
                Some(buf)
            }
            Target::Swap => None,
        };
        let mut node = Node::new(req.op, req.context, buf, 0);
        let state = self.conns[conn.fd as usize].as_mut().expect("checked above");
        if state.list(dir).is_empty() {
            let mut io = self.io.with(&self.shared.poller);
            let attempt = match dir {
                Dir::Read => io.read(state, conn, &mut node),
                Dir::Write => io.write_one(state, conn, &mut node),
            };
            if let Attempt::Done(error, swap) = attempt {
                self.ready.push(completion(conn, node, error, swap));
                return;
            }
        }
        let timer = if deadline.is_some() {
            self.timers.next_identity()
        } else {
            0
        };
        node.timer = timer;
        let idx = self.nodes.push_back(state.list(dir), node);
        if let Some(deadline) = deadline {
            self.timers.insert(Entry {
                at_ns: to_ns(deadline.saturating_duration_since(self.epoch)),
                timer,
                node: idx,
                fd: conn.fd,
            });
        }
    }

    // ----- readiness and I/O ---------------------------------------------

    fn on_event(&mut self, ev: Event) {
        let conn = Conn::from_token(ev.token, self.shared.id);
        let Some(state) = self.conn_mut(conn) else {
            return;
        };
        if ev.readable {
            state.set(READABLE, true);
        }
        if ev.writable {
            state.set(WRITABLE, true);
        }
        if ev.hangup {
            state.set(HUP | READABLE | WRITABLE, true);
        }
        if ev.urgent {
            state.set(URGENT, true);
        }
        if ev.readable || ev.hangup {
            self.drive(conn, Dir::Read);
        }
        if ev.writable || ev.hangup {
            self.drive(conn, Dir::Write);
        }
    }

    fn drive(&mut self, conn: Conn, dir: Dir) {
        match dir {
            Dir::Read => self.drive_reads(conn),
            Dir::Write => self.drive_writes(conn),
        }
    }

    /// Runs the connection's reads, head first, until one would block.
    fn drive_reads(&mut self, conn: Conn) {
        loop {
            let Some(state) = self.conns.get_mut(conn.fd as usize).and_then(Option::as_mut) else {
                return;
            };
            if state.gen != conn.gen || state.reads.is_empty() {
                return;
            }
            let node = self.nodes.get_mut(state.reads.head);
            let mut io = self.io.with(&self.shared.poller);
            match io.read(state, conn, node) {
                Attempt::Done(error, swap) => self.finish_head(conn, Dir::Read, error, swap),
                Attempt::Wait => return,
            }
        }
    }

    /// Runs the connection's writes, gathering queued ones into one system
    /// call, until they are done or the descriptor would block.
    fn drive_writes(&mut self, conn: Conn) {
        loop {
            let Some(state) = self.conns.get_mut(conn.fd as usize).and_then(Option::as_mut) else {
                return;
            };
            if state.gen != conn.gen || state.writes.is_empty() || !state.has(WRITABLE) {
                return;
            }
            let head = self.nodes.get_mut(state.writes.head);
            if head.next() == NIL {
                // One request pending, the common case: no gather array.
                let mut io = self.io.with(&self.shared.poller);
                match io.write_one(state, conn, head) {
                    Attempt::Done(error, _) => self.finish_head(conn, Dir::Write, error, Bytes::new()),
                    Attempt::Wait => return,
                }
                continue;
            }
            let (outcome, offered) = {
                let mut iov = [IoSlice::new(&[]); MAX_GATHER];
                let mut count = 0;
                let mut offered = 0;
                let mut idx = state.writes.head;
                while idx != NIL && count < MAX_GATHER {
                    let node = self.nodes.get(idx);
                    let bytes = unwritten(node);
                    iov[count] = IoSlice::new(bytes);
                    offered += bytes.len();
                    count += 1;
                    idx = node.next();
                }
                let outcome = (offered > 0).then(|| {
                    self.shared
                        .poller
                        .write(state.fd.as_fd(), state.kind(), &iov[..count])
                });
                (outcome, offered)
            };
            let Some(outcome) = outcome else {
                // Only buffers that changed under the watcher can be empty
                // here: complete them rather than send nothing forever.
                self.finish_head(conn, Dir::Write, None, Bytes::new());
                continue;
            };
            let mut io = self.io.with(&self.shared.poller);
            match outcome {
                IoOutcome::Done(n) => {
                    if n < offered && state.has(STREAM) {
                        io.not_ready(state, conn, Dir::Write);
                    }
                    self.account_written(conn, n);
                }
                other => match io.stopped(state, conn, Dir::Write, other) {
                    // A failed gathered write fails the first request; the
                    // next loop tries the rest, which fail the same way.
                    Attempt::Done(error, _) => self.finish_head(conn, Dir::Write, error, Bytes::new()),
                    Attempt::Wait => return,
                },
            }
        }
    }

    /// Spreads `n` written bytes over the connection's writes, head first,
    /// completing each one that is now fully written.
    fn account_written(&mut self, conn: Conn, mut n: usize) {
        while n > 0 {
            let Some(state) = self.conn_mut(conn) else {
                return;
            };
            let head = state.writes.head;
            if head == NIL {
                return;
            }
            let node = self.nodes.get_mut(head);
            let len = match &node.buf {
                Some(b) => b.as_bytes().len(),
                None => 0,
            };
            let left = len.saturating_sub(node.done);
            if n < left {
                node.done += n;
                return;
            }
            node.done = len;
            n -= left;
            self.finish_head(conn, Dir::Write, None, Bytes::new());
        }
    }

    fn retry_starved(&mut self) {
        if self.io.starved.is_empty() {
            return;
        }
        for (conn, dir) in std::mem::take(&mut self.io.starved) {
            self.drive(conn, dir);
        }
    }

    fn fire_timers(&mut self) {
        if self.timers.earliest().is_none() {
            return;
        }
        let now = self.now_ns();
        while let Some(entry) = self.timers.pop_due(now) {
            let Some(node) = self.nodes.find_timer(entry.node, entry.timer) else {
                self.timers.stale_dropped();
                continue;
            };
            let dir = Dir::of(node.op);
            // A pending node is in a list of the connection now at its
            // descriptor: freeing a connection takes all its nodes out.
            let Some(state) = self.conns.get_mut(entry.fd as usize).and_then(Option::as_mut) else {
                continue;
            };
            let conn = Conn {
                fd: entry.fd,
                gen: state.gen,
                owner: self.shared.id,
            };
            let was_head = state.list(dir).head == entry.node;
            // The timer is the reason this request ends: do not count it
            // as stale.
            self.nodes.get_mut(entry.node).timer = 0;
            self.finish_in(conn, dir, Some(entry.node), Some(Error::Deadline), Bytes::new());
            if was_head {
                // The next request in line may be able to run now.
                self.drive(conn, dir);
            }
        }
    }
}

/// The completion of a request that ran: its progress, its buffer (or
/// the swap slice read), and how it ended.
fn completion<C, B>(conn: Conn, node: Node<C, B>, error: Option<Error>, swap: Bytes) -> Completion<C, B> {
    Completion {
        op: node.op,
        conn,
        context: node.context,
        bytes: node.done,
        buffer: match node.buf {
            Some(b) => Buffer::User(b),
            None => Buffer::Swap(swap),
        },
        error,
    }
}

/// The bytes of a write request not yet written.
fn unwritten<C, B: IoBuf>(node: &Node<C, B>) -> &[u8] {
    match &node.buf {
        Some(b) => b.as_bytes().get(node.done..).unwrap_or(&[]),
        None => &[],
    }
}

/// Tells the poller the engine now waits for `dir` on `state`'s descriptor.
/// A no-op for edge-triggered pollers; a level-triggered one resumes
/// watching the direction.
fn rearm<P: Poller>(poller: &P, state: &ConnState, conn: Conn, dir: Dir) {
    let (read, write) = (dir == Dir::Read, dir == Dir::Write);
    if let Err(e) = poller.rearm(state.fd.as_fd(), conn.token(), read, write) {
        tracing::warn!(fd = conn.fd, error = %e, "poller failed to re-arm a connection");
    }
}

/// The completion of a request that never reached a connection's list.
fn completion_of<C, B>(req: Request<C, B>, error: Error) -> Completion<C, B> {
    Completion {
        op: req.op,
        conn: req.conn,
        context: req.context,
        bytes: 0,
        buffer: match req.target {
            Target::User(b, _) => Buffer::User(b),
            Target::Swap => Buffer::Swap(Bytes::new()),
        },
        error: Some(error),
    }
}

/// Moves every entry of `from` to the end of `to`. When `to` is empty the
/// two vectors trade places instead of copying entries (a batch of a
/// thousand completions is tens of kilobytes); `from` is then trimmed.
pub(crate) fn hand_over<T>(from: &mut Vec<T>, to: &mut Vec<T>) {
    let used = from.len();
    if to.is_empty() {
        std::mem::swap(from, to);
    } else {
        to.append(from);
    }
    trim(from, used);
}

/// Entries the command vectors keep room for once the engine has been idle
/// for [`IDLE_TRIM`]: a thousand connections handed over at once grow them
/// to thousands of entries of about 70 bytes, and an idle server should
/// not keep that.
const IDLE_KEEP_CAPACITY: usize = 64;

/// Entries an emptied work vector always keeps room for while busy.
const KEEP_CAPACITY: usize = 1024;
/// Above this many entries an emptied work vector is always shrunk, so a
/// burst (ten thousand connections handed over at once) does not pin its
/// peak memory for ever. Growing back costs a few allocations per this
/// many requests.
const BURST_CAPACITY: usize = 8 * KEEP_CAPACITY;

/// Gives back the memory of a work vector that was just emptied after
/// holding `used` entries, when it is far larger than that: past
/// [`BURST_CAPACITY`], or more than four times `used`. Steady traffic that
/// needs between [`KEEP_CAPACITY`] and [`BURST_CAPACITY`] entries per turn
/// (a thousand busy connections) keeps its vector and allocates nothing.
pub(crate) fn trim<T>(v: &mut Vec<T>, used: usize) {
    let cap = v.capacity();
    if v.is_empty() && cap > KEEP_CAPACITY && (cap > BURST_CAPACITY || used <= cap / 4) {
        v.shrink_to(KEEP_CAPACITY);
    }
}

fn to_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
