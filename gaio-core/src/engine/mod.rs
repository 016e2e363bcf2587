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
//!
//! One job per file: this one holds the engine, its submission entry
//! points and its loop. `conn_state` is what a connection holds, `intake`
//! takes commands and requests in, `attempt` tries one request's I/O,
//! `drive` turns readiness into attempts, `deadlines` fires timers,
//! `events` runs notifications and sleeps, `complete` makes every
//! completion, `lifecycle` brings connections in and out, `spread` hands
//! accepted connections to the other watchers of a group, `graceful`
//! closes gracefully, `memory` is the memory policy, `panic` what happens
//! after a panic; `conn_table`, `slab`, `chunked`, `timers` and `swap` are
//! the data structures.

mod accept;
mod attempt;
mod chunked;
mod complete;
mod conn_state;
mod conn_table;
mod connect;
mod datagram;
mod deadlines;
mod drive;
mod events;
mod graceful;
mod intake;
mod lifecycle;
mod memory;
mod panic;
mod slab;
mod spread;
mod swap;
mod timers;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_events;
#[cfg(test)]
mod tests_ops;
#[cfg(test)]
mod tests_ring;

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::HashMap;

use crate::request::{Request, Target};
use crate::shared::{Command, Role, Shared};
use crate::{AcceptOptions, Completion, Conn, Error, Event, IoBuf, Listener, Op, PeerAddr, Poller, Rejected};

use attempt::IoState;
use conn_table::ConnTable;
pub(crate) use memory::hand_over;
use memory::KEEP_CAPACITY;
use slab::Slab;
pub(crate) use spread::Group;
use timers::Timers;

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

    /// The poller's name for this direction.
    fn interest(self) -> crate::Interest {
        match self {
            Dir::Read => crate::Interest::READ,
            Dir::Write => crate::Interest::WRITE,
        }
    }
}

/// Tuning fixed at construction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    pub(crate) swap_size: usize,
    pub(crate) max_events: usize,
    /// Most bytes queued for writing on one connection; `None`: no limit.
    pub(crate) max_queued_write_bytes: Option<usize>,
}

/// Whether a turn may sleep in the poller when nothing is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sleep {
    /// Until the nearest deadline, the caller's limit, or an event.
    UpTo,
    /// Not at all: look at the poller and go on.
    Never,
}

/// The engine. See the module documentation.
pub(crate) struct Engine<P: Poller, C, B> {
    shared: Arc<Shared<P, C, B>>,
    /// Connections, found by file descriptor number.
    conns: ConnTable,
    nodes: Slab<C, B>,
    timers: Timers,
    /// Swap memory, the read view and the starved list: what an I/O
    /// attempt needs besides the connection and the request.
    io: IoState<B>,
    /// The addresses of stored send-to and connect requests, by slab
    /// index: kept beside the slab so that a pending request stays small.
    addrs: HashMap<u32, PeerAddr>,
    /// Pending sleeps' timer identities and contexts by the sequence
    /// number their heap entries carry, and that number by timer identity
    /// (see `events`).
    sleeps: HashMap<u64, (u64, C)>,
    /// See `sleeps`.
    sleep_ids: HashMap<u64, u64>,
    /// This watcher's seat in a group that spreads one listener's
    /// connections (see `spread`).
    spread: Option<spread::Seat<P, C, B>>,
    /// `C::clone`, known once a multishot accept has been submitted: each
    /// connection it accepts completes with a copy of its context.
    clone_context: Option<fn(&C) -> C>,
    /// Listeners out of descriptors, retried at `fd_retry_at` (see
    /// `accept`).
    fd_retry: Vec<Conn>,
    fd_retry_at: Option<Instant>,
    config: Config,
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
    /// Listeners in the table.
    listeners: usize,
    /// Closing gracefully: the watcher closes by then at the latest.
    graceful_until: Option<Instant>,
    /// Closing gracefully: stream connections to half-close once their
    /// writes are out.
    half_closing: Vec<Conn>,
    /// Stream sockets freed while their peers may still send (closing
    /// gracefully, or after a `shutdown`), read and dropped until the
    /// peers close (see `graceful::linger`).
    lingering: Vec<graceful::Lingering>,
    /// When the lingering sockets are read next.
    next_drain: Instant,
    /// Connections to drive once every due deadline has fired (see
    /// `fire_timers`), kept for its capacity.
    timer_drives: Vec<(Conn, Dir)>,
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
            conns: ConnTable::new(),
            nodes: Slab::new(),
            timers: Timers::new(),
            io: IoState::new(config.swap_size),
            addrs: HashMap::new(),
            sleeps: HashMap::new(),
            sleep_ids: HashMap::new(),
            spread: None,
            clone_context: None,
            fd_retry: Vec::new(),
            fd_retry_at: None,
            config,
            raw: P::events(config.max_events.max(1)),
            events: Vec::with_capacity(config.max_events.max(1)),
            ready: Vec::new(),
            commands: Vec::new(),
            epoch: clock_start(),
            last_poll: Instant::now(),
            unpolled_batches: 0,
            burst_memory: false,
            tables_mark: 0,
            idle_since: None,
            listeners: 0,
            graceful_until: None,
            half_closing: Vec::new(),
            lingering: Vec::new(),
            next_drain: Instant::now(),
            timer_drives: Vec::new(),
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
        self.insert_conn(conn, fd, info, Role::Connection);
        Ok(conn)
    }

    /// Hands a listening socket over from the owning thread.
    pub(crate) fn watch_listener(&mut self, fd: OwnedFd, options: AcceptOptions) -> Result<Listener, Error> {
        let (conn, fd, info) = self.shared.register_listener(fd, options)?;
        self.insert_conn(conn, fd, info, Role::Listener(options));
        Ok(Listener(conn))
    }

    /// The bytes queued for writing on `conn` and not yet written.
    pub(crate) fn queued_write_bytes(&self, conn: Conn) -> Option<usize> {
        match self.conns.get(conn.fd) {
            Some(s) if s.gen == conn.gen && conn.owner == self.shared.id => Some(s.queued as usize),
            _ => None,
        }
    }

    /// `conn`'s descriptor, if this engine holds it.
    pub(crate) fn socket(&self, conn: Conn) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        match self.conns.get(conn.fd) {
            Some(s) if s.gen == conn.gen && conn.owner == self.shared.id => Some(s.fd.as_fd()),
            _ => None,
        }
    }

    /// Submits from the owning thread: the I/O is tried at once when the
    /// request is first in its list and the descriptor is known ready.
    /// A request the connection's state refuses (a read on a listener, a
    /// stale handle) is refused here, at once.
    #[inline]
    pub(crate) fn submit(&mut self, req: Request<C, B>) -> Result<(), Rejected<C, B>> {
        self.submit_refusing(req, true)
    }

    /// [`submit`](Self::submit) for a background-mode watcher's owner,
    /// whose requests may travel through the command queue: a request the
    /// connection's state refuses completes with the error, as a queued
    /// one does, so the answer does not depend on who held the engine.
    #[inline]
    pub(crate) fn submit_as_queued(&mut self, req: Request<C, B>) -> Result<(), Rejected<C, B>> {
        self.submit_refusing(req, false)
    }

    #[inline]
    fn submit_refusing(&mut self, mut req: Request<C, B>, refuse: bool) -> Result<(), Rejected<C, B>> {
        if self.finished || self.shared.is_closed() {
            return Err(req.reject(Error::WatcherClosed));
        }
        if req.op == Op::Connect {
            return self.connect(req);
        }
        if req.is_connless() {
            self.drain_commands();
            self.apply_connless(req);
            return Ok(());
        }
        if let Err(e) = self.shared.check_owner(req.conn) {
            return Err(req.reject(e));
        }
        if let Err(e) = req.check() {
            return Err(req.reject(e));
        }
        // Commands queued by other threads may have happened before this
        // call (a `Watch` of this very connection, say): apply them first.
        self.drain_commands();
        match self.apply_request(req) {
            Ok(()) => Ok(()),
            Err((req, error)) if refuse => Err(req.reject(error)),
            Err((req, error)) => {
                self.ready.push(complete::completion_of(req, error));
                Ok(())
            }
        }
    }

    /// A connect from the owning thread: dialled here, taken in at once.
    fn connect(&mut self, mut req: Request<C, B>) -> Result<(), Rejected<C, B>> {
        let addr = match &req.target {
            Target::Addr(addr) => addr.clone(),
            _ => unreachable!("a connect request carries its address"),
        };
        match self.shared.dial(&addr) {
            Ok((conn, fd, info, dialled)) => {
                req.conn = conn;
                self.drain_commands();
                self.start_connect(fd, info, req, dialled);
                Ok(())
            }
            Err(e) => Err(req.reject(e)),
        }
    }

    /// Frees a connection from the owning thread.
    pub(crate) fn free(&mut self, conn: Conn) -> Result<(), Error> {
        if !self.shared.check_free(conn)? {
            return Ok(());
        }
        if self.finished || self.shared.is_closed() {
            // Closed: every connection is (or is being) closed already.
            return Ok(());
        }
        self.drain_commands();
        self.release(conn, || Error::ConnClosed);
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
                self.shutdown_settled();
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
            let sleep = if self.ready.is_empty() && !expired {
                Sleep::UpTo
            } else {
                Sleep::Never
            };
            self.turn(sleep, limit)?;
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

    /// Appends the completions already made to `out`, without a turn:
    /// for a thread that may not run the poller.
    pub(crate) fn hand_out_ready(&mut self, out: &mut Vec<Completion<C, B>>) -> usize {
        let n = self.ready.len();
        hand_over(&mut self.ready, out);
        n
    }

    /// One turn: poll (sleeping as `sleep` allows), apply commands, run the
    /// I/O events allow, fire deadlines.
    pub(crate) fn turn(&mut self, sleep: Sleep, limit: Option<Instant>) -> std::io::Result<()> {
        let mut timeout = match sleep {
            Sleep::UpTo => self.sleep_time(limit),
            Sleep::Never => Some(Duration::ZERO),
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
        self.retry_out_of_fds(now);
        self.fire_timers();
        self.drain_lingering(now);
        self.end_of_turn_graceful(now);
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
        if let Some(at) = self.fd_retry_at {
            cap(at.saturating_duration_since(Instant::now()));
        }
        if let Some(at) = self.graceful_until {
            // Closing gracefully and every connection freed: close now.
            let left = if self.all_freed() {
                Duration::ZERO
            } else {
                at.saturating_duration_since(Instant::now())
            };
            cap(left);
        }
        if let Some(at) = self.lingering_wake() {
            cap(at.saturating_duration_since(Instant::now()));
        }
        Some(sleep.map_or(MAX_SLEEP, |s| s.min(MAX_SLEEP)))
    }

    fn now_ns(&self) -> u64 {
        to_ns(self.epoch.elapsed())
    }

    // ----- commands ----------------------------------------------------------

    // ----- readiness and I/O ---------------------------------------------
}

/// Where the engine's clock starts: deadlines are nanoseconds since then,
/// and deadlines earlier than it all count as equal. A day back (an hour,
/// a minute, on a machine up for less), so that deadlines in the recent
/// past keep their order.
fn clock_start() -> Instant {
    let now = Instant::now();
    [86_400, 3_600, 60]
        .into_iter()
        .find_map(|secs| now.checked_sub(Duration::from_secs(secs)))
        .unwrap_or(now)
}

fn to_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
