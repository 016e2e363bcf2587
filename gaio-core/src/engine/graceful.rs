//! Closing gracefully (`Submit::close_gracefully`): listeners and datagram
//! sockets close at once; each stream connection is half-closed once the
//! writes queued on it are out, so its peer reads every response and then
//! end of stream; the watcher closes once every connection has been freed,
//! or when the deadline passes.

use std::os::fd::AsFd;
use std::time::Instant;

use super::conn_state::{DGRAM, LISTENER, STREAM};
use super::Engine;
use crate::{Conn, Error, IoBuf, Poller};

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
        if self.conns.is_empty() || now >= until {
            crate::diag::debug_event!(live = self.conns.len(), "graceful close done; closing");
            self.shutdown_settled();
        }
    }
}
