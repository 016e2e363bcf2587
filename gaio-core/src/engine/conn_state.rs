//! What the engine keeps per connection: the descriptor, its generation,
//! its two request lists, the bytes its queued writes still hold, and
//! readiness and state bits.

use std::os::fd::{AsFd, OwnedFd};

use super::slab::List;
use super::Dir;
use crate::{Conn, FdKind, Poller};

/// A connection the engine owns.
pub(super) struct ConnState {
    pub(super) fd: OwnedFd,
    pub(super) gen: u32,
    pub(super) reads: List,
    pub(super) writes: List,
    /// Bytes of the writes stored in `writes` not yet written, for the
    /// write-queue cap (saturating at 4 GiB).
    pub(super) queued: u32,
    /// Readiness and state bits (see the constants below): with `queued`,
    /// a connection slot stays at 32 bytes.
    pub(super) flags: u32,
}

/// A read may make progress without waiting for an edge.
pub(super) const READABLE: u32 = 1;

/// A write may make progress without waiting for an edge.
pub(super) const WRITABLE: u32 = 2;

/// The peer hung up or the connection failed: reads never wait again.
pub(super) const HUP: u32 = 4;

/// A read returned end of stream: every read from now on gets `Eof`.
pub(super) const EOF: u32 = 8;

/// A stream socket (`recv`/`send` with `MSG_NOSIGNAL`; a short write
/// means its send buffer is full).
pub(super) const STREAM: u32 = 16;

/// A short read proves the receive queue empty (see `attempt::Io::read`):
/// a plain TCP socket on a poller that reports urgent data, or any stream
/// socket on a level-triggered poller.
pub(super) const SHORT_READ_DRAINS: u32 = 32;

/// Urgent data was announced: a short read may have stopped at its mark,
/// so only a read that would block proves the socket drained again.
pub(super) const URGENT: u32 = 64;

/// A datagram socket: one datagram per read and per write, never
/// gathered.
pub(super) const DGRAM: u32 = 128;

/// A listening socket: only accepts (and detach) run on it.
pub(super) const LISTENER: u32 = 256;

/// A plain TCP socket (see `FdInfo::plain_tcp`); on a listener, what its
/// accepted connections are.
pub(super) const PLAIN_TCP: u32 = 512;

/// A listener whose accepted sockets get `TCP_NODELAY`.
pub(super) const NODELAY: u32 = 1024;

/// A connect is in progress: the head of `writes` is its request.
pub(super) const CONNECTING: u32 = 2048;

/// A detach is queued: requests submitted after it complete with
/// `ConnClosed`; the detach completes once the requests before it have.
pub(super) const DETACHING: u32 = 4096;

/// The last accept on this listener failed for want of resources: pending
/// accepts retry on a timer, and one whose deadline passes reports the
/// error. Which error, with `SYSTEM_OUT_OF_FDS`: `OUT_OF_FDS` alone is the
/// process's descriptor limit (EMFILE), both are the system's (ENFILE),
/// `SYSTEM_OUT_OF_FDS` alone is kernel memory (ENOBUFS, also standing for
/// ENOMEM).
pub(super) const OUT_OF_FDS: u32 = 8192;

/// See [`OUT_OF_FDS`].
pub(super) const SYSTEM_OUT_OF_FDS: u32 = 16384;

/// A stream connection whose write side a `shutdown` request shut down:
/// freed, it lingers (see `graceful::linger`).
pub(super) const WRITE_SHUT: u32 = 1 << 15;

/// With `CONNECTING`: a Unix listener's queue was full (EAGAIN); the
/// connect is to be made again rather than waited for.
pub(super) const REDIAL: u32 = 1 << 16;

impl ConnState {
    pub(super) fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    pub(super) fn set(&mut self, flag: u32, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }

    pub(super) fn kind(&self) -> FdKind {
        if self.has(STREAM) {
            FdKind::StreamSocket
        } else if self.has(DGRAM) {
            FdKind::DatagramSocket
        } else {
            FdKind::Other
        }
    }

    /// Sets or clears the readiness bit of `dir` (`READABLE`, `WRITABLE`).
    pub(super) fn set_ready(&mut self, dir: Dir, ready: bool) {
        self.set(if dir == Dir::Read { READABLE } else { WRITABLE }, ready);
    }

    pub(super) fn list_ref(&self, dir: Dir) -> &List {
        match dir {
            Dir::Read => &self.reads,
            Dir::Write => &self.writes,
        }
    }

    pub(super) fn list(&mut self, dir: Dir) -> &mut List {
        match dir {
            Dir::Read => &mut self.reads,
            Dir::Write => &mut self.writes,
        }
    }
}

/// Tells the poller the engine now waits for `dir` on `state`'s descriptor.
/// A no-op for edge-triggered pollers; a level-triggered one resumes
/// watching the direction.
#[cfg_attr(not(feature = "tracing"), allow(unused_variables))] // an error only a diagnostic reads
pub(super) fn rearm<P: Poller>(poller: &P, state: &ConnState, conn: Conn, dir: Dir) {
    if let Err(e) = poller.rearm(state.fd.as_fd(), conn.token(), dir.interest()) {
        crate::diag::warn_event!(fd = conn.fd, error = %e, "poller failed to re-arm a connection");
    }
}
