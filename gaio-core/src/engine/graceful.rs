//! Closing gracefully (`Submit::close_gracefully`): listeners and datagram
//! sockets close at once; each stream connection is half-closed once the
//! writes queued on it are out, so its peer reads every response and then
//! end of stream; the watcher closes once every connection has been freed,
//! or when the deadline passes.
//!
//! Lingering, here and outside a graceful close: a stream connection freed
//! while closing gracefully, or freed after a `shutdown` request shut its
//! write side down, is not closed at once. Its socket is half-closed and
//! read (the bytes dropped) until its peer closes, and only then closed;
//! at the graceful close's deadline, or [`LINGER_TIME`] after the free, at
//! the latest. Closing a socket with bytes unread makes the kernel reset
//! the connection and discard what is still in its send buffer, so a loop
//! that frees a connection on its first error (a write refused after the
//! half-close, say, while the client still sends), or right after its
//! "send the response, then close" `shutdown`, would otherwise cut off the
//! responses on their way. This is what nginx calls a lingering close.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use super::conn_state::{DGRAM, LISTENER, STREAM};
use super::Engine;
use crate::{Conn, Error, FdKind, IoBuf, IoOutcome, Poller};

impl<P: Poller, C, B: IoBuf> Engine<P, C, B> {
    /// Begins closing gracefully, the watcher closing by `deadline` at the
    /// latest (the earlier deadline wins if called again).
    pub(crate) fn close_gracefully(&mut self, deadline: Instant) {
        if self.finished {
            return;
        }
        crate::diag::debug_event!(live = self.conns.len(), "closing gracefully");
        self.graceful_until = Some(self.graceful_until.map_or(deadline, |d| d.min(deadline)));
        // The scan below finds every stream connection again, those still
        // waiting from an earlier call included (one already half-closed by
        // it is half-closed once more, which does nothing).
        self.half_closing.clear();
        let owner = self.shared.id;
        let mut closing = Vec::new();
        for (fd, state) in self.conns.iter() {
            let conn = Conn {
                fd,
                gen: state.gen,
                owner,
            };
            if state.has(LISTENER) || state.has(DGRAM) {
                closing.push(conn);
            } else if state.has(STREAM) {
                self.half_closing.push(conn);
            }
        }
        for conn in closing {
            self.release(conn, || Error::ConnClosed);
        }
        self.end_of_turn_graceful(Instant::now());
    }

    /// While closing gracefully, at the end of each turn: half-closes the
    /// connections whose writes are all out, and closes the watcher once
    /// no connection is left or the deadline has passed.
    pub(super) fn end_of_turn_graceful(&mut self, now: Instant) {
        let Some(until) = self.graceful_until else {
            return;
        };
        let mut pending = std::mem::take(&mut self.half_closing);
        pending.retain(|&conn| {
            let Some(state) = self.conn_mut(conn) else {
                return false; // freed meanwhile
            };
            if !state.writes.is_empty() {
                return true;
            }
            // A peer that already went away makes this fail: nothing to do.
            let _ = crate::net::shutdown_write(state.fd.as_fd());
            false
        });
        self.half_closing = pending;
        if self.all_freed() || now >= until {
            crate::diag::debug_event!(live = self.conns.len(), "graceful close done; closing");
            self.shutdown_settled();
        }
    }
}

impl<P: Poller, C, B> Engine<P, C, B> {
    /// No connection left, and no socket lingering: a graceful close is
    /// done.
    pub(super) fn all_freed(&self) -> bool {
        self.conns.is_empty() && self.lingering.is_empty()
    }

    /// A stream socket just freed: it lingers if the watcher is closing
    /// gracefully (until the close's deadline at the latest), or if its
    /// write side was shut down (`shut_down`; [`LINGER_TIME`] at most, and
    /// only while fewer than [`most_lingering`] linger so: a flood of
    /// clients that never close must not take every descriptor, and if the
    /// process runs out all the same, accepting closes the lingering ones,
    /// [`end_lingering`](Self::end_lingering)). Otherwise, and always while
    /// the watcher closes, it closes at once.
    ///
    /// Lingering, it is half-closed (again, if it was already: that does
    /// nothing), what is there is read, and it is kept until its peer
    /// closes ([`drain_lingering`]) unless it has already.
    ///
    /// [`drain_lingering`]: Self::drain_lingering
    pub(super) fn linger(&mut self, fd: OwnedFd, shut_down: bool) {
        if self.shared.is_closed() {
            return;
        }
        let until = match self.graceful_until {
            Some(until) => until,
            None if shut_down && self.lingering.len() < most_lingering() => Instant::now() + LINGER_TIME,
            None => return,
        };
        // A peer that already went away makes this fail: nothing to do.
        let _ = crate::net::shutdown_write(fd.as_fd());
        if drain(fd.as_fd()) {
            self.lingering.push(Lingering { fd, until });
        }
    }

    /// Reads each lingering socket, closing those whose peers have closed
    /// (or failed) and those whose time is up; every [`LINGER_POLL`] at
    /// most while closing gracefully (the watcher closes as soon as the
    /// last peer has), every [`LINGER_POLL_IDLE`] otherwise, so that a busy
    /// engine turning thousands of times a second does not read them on
    /// every turn, and thousands of lingering sockets cost little.
    pub(super) fn drain_lingering(&mut self, now: Instant) {
        if self.lingering.is_empty() || now < self.next_drain {
            return;
        }
        let every = if self.graceful_until.is_some() {
            LINGER_POLL
        } else {
            LINGER_POLL_IDLE
        };
        self.next_drain = now + every;
        // What a socket still holds when its time is up is read first, so
        // that it too closes without a reset if its peer has gone quiet.
        self.lingering.retain(|l| drain(l.fd.as_fd()) && now < l.until);
    }

    /// Closes every lingering socket now, each read first so that most
    /// close without a reset: the process ran out of descriptors, and
    /// these can go without harm to a live connection.
    pub(super) fn end_lingering(&mut self) {
        for l in self.lingering.drain(..) {
            let _ = drain(l.fd.as_fd());
        }
    }

    /// When the engine should turn next for its lingering sockets, if any
    /// linger.
    pub(super) fn lingering_wake(&self) -> Option<Instant> {
        (!self.lingering.is_empty()).then_some(self.next_drain)
    }
}

/// A freed stream socket kept open until its peer closes (see
/// [`Engine::linger`]).
pub(super) struct Lingering {
    fd: OwnedFd,
    /// Closed then at the latest.
    until: Instant,
}

/// How often lingering sockets are read while closing gracefully: they
/// are not registered with the poller, which the engine no longer uses for
/// them.
pub(super) const LINGER_POLL: Duration = Duration::from_millis(5);

/// How often lingering sockets are read otherwise: their peers have had
/// the response and end of stream, and nothing waits for them but the
/// descriptor's release.
const LINGER_POLL_IDLE: Duration = Duration::from_millis(50);

/// Longest a socket freed outside a graceful close lingers: its peer has
/// had the response and end of stream for that long (a graceful close
/// lingers until its own deadline).
const LINGER_TIME: Duration = Duration::from_secs(2);

/// Most sockets lingering outside a graceful close, one freed past that
/// closed at once: a sixteenth of the process's descriptor limit (64 at
/// the usual 1,024), at least 16 and at most 4,096, read once.
fn most_lingering() -> usize {
    static MOST: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MOST.get_or_init(|| {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
        let limit = limit.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        (limit / 16).clamp(16, 4096)
    })
}

/// Most bytes dropped from one lingering socket per turn, so that a peer
/// sending without pause does not hold the turn.
const LINGER_DRAIN: usize = 256 * 1024;

/// Reads and drops what `fd` holds. True while its peer may still send
/// (nothing more to read now, or the turn's share read); false once it
/// has closed or the socket failed: the socket may then be closed without
/// a reset.
fn drain(fd: BorrowedFd<'_>) -> bool {
    let mut scratch = [0u8; 4096];
    let mut dropped = 0;
    while dropped < LINGER_DRAIN {
        // Watched sockets are non-blocking.
        match crate::sys::read(fd, FdKind::StreamSocket, &mut scratch) {
            IoOutcome::Done(0) | IoOutcome::Starved | IoOutcome::Failed(_) => return false,
            IoOutcome::Done(n) => dropped += n,
            IoOutcome::WouldBlock => return true,
        }
    }
    true
}
