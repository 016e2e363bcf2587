//! What the engine keeps per connection: the descriptor, its generation,
//! its two request lists, and readiness and state bits in one byte.

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
    /// Readiness and state bits, one byte (see the `ConnState` methods):
    /// a connection slot stays at 28 bytes.
    pub(super) flags: u8,
}

/// A read may make progress without waiting for an edge.
pub(super) const READABLE: u8 = 1;

/// A write may make progress without waiting for an edge.
pub(super) const WRITABLE: u8 = 2;

/// The peer hung up or the connection failed: reads never wait again.
pub(super) const HUP: u8 = 4;

/// A read returned end of stream: every read from now on gets `Eof`.
pub(super) const EOF: u8 = 8;

/// A stream socket (`recv`/`send` with `MSG_NOSIGNAL`; a short write
/// means its send buffer is full).
pub(super) const STREAM: u8 = 16;

/// A short read proves the receive queue empty (see `attempt::Io::read`):
/// a plain TCP socket on a poller that reports urgent data, or any stream
/// socket on a level-triggered poller.
pub(super) const SHORT_READ_DRAINS: u8 = 32;

/// Urgent data was announced: a short read may have stopped at its mark,
/// so only a read that would block proves the socket drained again.
pub(super) const URGENT: u8 = 64;

impl ConnState {
    pub(super) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    pub(super) fn set(&mut self, flag: u8, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }

    pub(super) fn kind(&self) -> FdKind {
        if self.has(STREAM) {
            FdKind::StreamSocket
        } else {
            FdKind::Other
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
pub(super) fn rearm<P: Poller>(poller: &P, state: &ConnState, conn: Conn, dir: Dir) {
    let (read, write) = (dir == Dir::Read, dir == Dir::Write);
    if let Err(e) = poller.rearm(state.fd.as_fd(), conn.token(), read, write) {
        tracing::warn!(fd = conn.fd, error = %e, "poller failed to re-arm a connection");
    }
}
