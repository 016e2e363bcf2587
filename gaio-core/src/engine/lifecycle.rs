//! Connections coming and going: hand-over into the table, `free`, detach,
//! a descriptor number handed over again while the table still holds it,
//! and shutdown of the whole engine.
//!
//! None of this runs user code (no buffer is looked at, no context
//! dropped: completions carry them out), so it needs no buffer bound and
//! is safe to run after a panic elsewhere in the engine.

use std::os::fd::{AsFd, IntoRawFd, OwnedFd};

use super::complete::completion_of;
use super::conn_state::{
    ConnState, DETACHING, DGRAM, LISTENER, NODELAY, PLAIN_TCP, READABLE, SHORT_READ_DRAINS, STREAM, WRITABLE,
    WRITE_SHUT,
};
use super::conn_table::ConnTable;
use super::events::bare_completion;
use super::slab::List;
use super::{Dir, Engine};
use crate::shared::{Command, Role};
use crate::sys::FdInfo;
use crate::{Conn, Error, FdKind, Interest, Op, Poller};

impl<P: Poller, C, B> Engine<P, C, B> {
    /// Requests pending on connections (not counting queued commands).
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))] // read by a diagnostic
    pub(super) fn nodes_pending(&self) -> usize {
        self.nodes.len()
    }

    /// Puts a registered descriptor in the table under `conn`.
    pub(super) fn insert_conn(&mut self, conn: Conn, fd: OwnedFd, info: FdInfo, role: Role) {
        if let Some(stale) = self.conns.remove(conn.fd) {
            self.count_out(&stale);
            self.forget_stale(conn.fd, stale);
        }
        crate::diag::trace_event!(fd = conn.fd, gen = conn.gen, ?info, "connection watched");
        let mut kind = match info.kind {
            FdKind::StreamSocket => {
                let poller = &self.shared.poller;
                let drains = poller.level_triggered() || (poller.reports_urgent() && info.plain_tcp);
                STREAM | if drains { SHORT_READ_DRAINS } else { 0 }
            }
            FdKind::DatagramSocket => DGRAM,
            FdKind::Other => 0,
        };
        if let Role::Listener(options) = role {
            // A listener itself is never read; what it knows of TCP is
            // what its accepted connections get.
            kind = LISTENER | if info.plain_tcp { PLAIN_TCP } else { 0 };
            // Where accepted sockets inherit the listener's TCP_NODELAY,
            // it was set on the listener (`Shared::register_listener`).
            if options.nodelay && info.tcp && !crate::net::NODELAY_INHERITED {
                kind |= NODELAY;
            }
        }
        let state = ConnState {
            fd,
            gen: conn.gen,
            reads: List::EMPTY,
            writes: List::EMPTY,
            queued: 0,
            // Readiness is unknown until tried: an edge may have been
            // reported before the engine knew the connection.
            flags: READABLE | WRITABLE | kind,
        };
        self.conns.insert(conn.fd, state);
        self.listeners += usize::from(matches!(role, Role::Listener(_)));
        self.publish_load();
    }

    /// Retires a connection found in the table at a descriptor number that
    /// was just handed over again.
    ///
    /// The OS hands a number out again only after its holder was closed,
    /// so the user closed this descriptor behind the watcher's back (or
    /// made a second `OwnedFd` for one descriptor). Its requests complete
    /// with [`Error::ConnClosed`]. Its `OwnedFd` is forgotten, not closed
    /// and not deregistered: the number now names the descriptor just
    /// handed over, and closing or deregistering by number would hit that
    /// one. The old registration went away with its file; if the file
    /// lives on elsewhere (a `dup` the user kept), its events carry the old
    /// generation and are ignored.
    fn forget_stale(&mut self, fd: u32, mut stale: ConnState) {
        let conn = Conn {
            fd,
            gen: stale.gen,
            owner: self.shared.id,
        };
        crate::diag::warn_event!(
            fd,
            gen = stale.gen,
            "descriptor handed over again while watched: it was closed behind the watcher's back"
        );
        // By number: a completion poller's I/O in flight for the old
        // descriptor ends before its buffers go back.
        self.shared.poller.cancel(stale.fd.as_fd(), Interest::BOTH, false);
        self.complete_all(conn, &mut stale, || Error::ConnClosed);
        let _forgotten = stale.fd.into_raw_fd();
    }

    /// A connection left the table: it no longer counts.
    fn count_out(&mut self, state: &ConnState) {
        self.listeners -= usize::from(state.has(LISTENER));
        self.publish_load();
    }

    /// Tells a group spreading connections how many this watcher holds
    /// (a plain store: no other thread writes it).
    fn publish_load(&self) {
        self.shared.conns.store(
            self.conns.len() - self.listeners,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    pub(super) fn conn_mut(&mut self, conn: Conn) -> Option<&mut ConnState> {
        self.conns.get_mut(conn.fd).filter(|s| s.gen == conn.gen)
    }

    /// Closes a connection and completes each of its requests with
    /// `error()`, reads then writes, each in submission order. A stream
    /// socket freed while the watcher closes gracefully, or after its
    /// write side was shut down, lingers instead of closing at once (see
    /// `graceful::linger`).
    pub(super) fn free_conn(&mut self, conn: Conn, error: impl Fn() -> Error) {
        if self.conn_mut(conn).is_none() {
            return;
        }
        let mut state = self.conns.remove(conn.fd).expect("checked above");
        self.count_out(&state);
        crate::diag::trace_event!(fd = conn.fd, gen = conn.gen, "connection freed");
        // Whatever a completion poller still has in flight ends before the
        // buffers go back, its results dropped (`release` took them first
        // where user code may run).
        self.shared.poller.cancel(state.fd.as_fd(), Interest::BOTH, false);
        self.complete_all(conn, &mut state, error);
        // Closing the descriptor would also drop the registration unless it
        // was duplicated; deregistering makes sure no event for it arrives.
        let _ = self.shared.poller.deregister(state.fd.as_fd());
        if state.has(STREAM) {
            let shut_down = state.has(WRITE_SHUT);
            self.linger(state.fd, shut_down);
        }
    }

    /// Completes every request of `state` (taken out of the table) with
    /// `error()`, reads then writes, each in submission order.
    fn complete_all(&mut self, conn: Conn, state: &mut ConnState, error: impl Fn() -> Error) {
        for dir in [Dir::Read, Dir::Write] {
            while !state.list(dir).is_empty() {
                let head = state.list(dir).head;
                self.finish(conn, state.list(dir), head, Some(error()), bytes::Bytes::new());
            }
        }
    }

    /// Ends a command the engine will never apply (it is closing): a
    /// descriptor in it is deregistered and closed, a request or an
    /// adopted connection's accept completes with `WatcherClosed`.
    pub(super) fn discard(&mut self, cmd: Command<C, B>) {
        match cmd {
            Command::Watch { fd, .. } => {
                // Registered but never known to the engine: deregister
                // before closing, as for every other connection.
                let _ = self.shared.poller.deregister(fd.as_fd());
                drop(fd);
            }
            Command::Connect { fd, request, .. } => {
                let _ = self.shared.poller.deregister(fd.as_fd());
                drop(fd);
                self.ready.push(completion_of(request, Error::WatcherClosed));
            }
            Command::Adopt {
                conn,
                fd,
                context,
                peer,
                ..
            } => {
                let _ = self.shared.poller.deregister(fd.as_fd());
                drop(fd);
                self.shared
                    .adopting
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                // The handle this watcher gave the connection, closed now:
                // freeing it (as a loop does on an error) is harmless.
                let closed = Some(Error::WatcherClosed);
                self.ready
                    .push(bare_completion(Op::Accept, conn, context, closed, peer));
            }
            Command::Submit(req) => self.ready.push(completion_of(req, Error::WatcherClosed)),
            Command::Free(_) | Command::CloseGracefully(_) | Command::CancelTimer(_) => {}
        }
    }

    /// Stops everything: each pending request completes with
    /// `WatcherClosed`, queued commands are completed or dropped, every
    /// descriptor is closed.
    pub(crate) fn shutdown(&mut self) {
        if self.finished {
            return;
        }
        crate::diag::debug_event!(pending = self.nodes_pending(), "watcher shutting down");
        // Closing now: connections freed below close at once (nothing
        // lingers once the shared state is closed), and so do the sockets
        // left lingering.
        self.graceful_until = None;
        self.lingering.clear();
        // From here on the command queue refuses pushes, so the one look at
        // it below sees every command ever accepted.
        self.shared.close();
        while let Some(fd) = self.conns.any_fd() {
            let gen = self.conns.get(fd).expect("held").gen;
            let conn = Conn {
                fd,
                gen,
                owner: self.shared.id,
            };
            self.free_conn(conn, || Error::WatcherClosed);
        }
        let mut commands = std::mem::take(&mut self.commands);
        self.shared.queue.take_into(&mut commands);
        for cmd in commands.drain(..) {
            self.discard(cmd);
        }
        self.commands = commands;
        self.end_sleeps(|| Error::WatcherClosed);
        self.conns = ConnTable::new();
        self.listeners = 0;
        self.publish_load();
        self.half_closing = Vec::new();
        // Every request has completed: the slab is empty and gives back
        // all its memory.
        self.nodes.trim();
        self.timers.clear();
        self.io.starved.clear();
        self.finished = true;
    }
}

impl<P: Poller, C, B> Engine<P, C, B> {
    /// Whether `conn`'s detach is at the head of its writes, and if so
    /// whether reads are still pending.
    fn detach_at_head(&self, conn: Conn) -> Option<bool> {
        let s = self.conns.get(conn.fd)?;
        let at_head = s.gen == conn.gen
            && s.has(DETACHING)
            && !s.writes.is_empty()
            && self.nodes.get(s.writes.head).op == Op::Detach;
        at_head.then_some(!s.reads.is_empty())
    }
}

// Detaching may take a read that landed in a completion poller, which
// needs the buffer's methods.
impl<P: Poller, C, B: crate::IoBuf> Engine<P, C, B> {
    /// Hands `conn`'s socket back once its detach is at the head of its
    /// writes (everything written before it done). The socket leaves the
    /// table and the poller, still open; the detach completes carrying
    /// it. Reads (accepts) still waiting do not hold it back: nothing is
    /// in flight for them (a completion poller's read ends first, and one
    /// that landed completes with its bytes), so they complete after the
    /// detach with `ConnClosed` and their progress (a `read_full`'s bytes
    /// so far), as requests submitted after it do, and the bytes they
    /// waited for stay in the socket. Completing after the detach, a loop
    /// that frees on an error frees a stale handle, which does nothing.
    pub(super) fn try_detach(&mut self, conn: Conn) {
        let Some(reads_pending) = self.detach_at_head(conn) else {
            return;
        };
        if reads_pending && self.shared.poller.completes_io() {
            // Taking a landed result may complete the reads, and the
            // detach with them (through `drive_reads`): then it is done.
            self.settle(conn, Dir::Read);
            if self.detach_at_head(conn).is_none() {
                return;
            }
        }
        let mut state = self.conns.remove(conn.fd).expect("checked above");
        self.count_out(&state);
        // No I/O is in flight (no read pending, the writes before the
        // detach done); a completion poller's readiness polls end here.
        self.shared.poller.cancel(state.fd.as_fd(), Interest::BOTH, false);
        let _ = self.shared.poller.deregister(state.fd.as_fd());
        crate::diag::trace_event!(fd = conn.fd, gen = conn.gen, "connection detached");
        let head = state.writes.head;
        self.io.extra_mut().detached = Some(state.fd);
        self.finish(conn, &mut state.writes, head, None, bytes::Bytes::new());
        // The reads (`complete_all`'s loop, on a state whose descriptor
        // went with the detach).
        while !state.reads.is_empty() {
            let head = state.reads.head;
            self.finish(
                conn,
                &mut state.reads,
                head,
                Some(Error::ConnClosed),
                bytes::Bytes::new(),
            );
        }
    }
}
