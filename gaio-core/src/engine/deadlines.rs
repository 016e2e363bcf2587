//! Deadlines firing: a request whose deadline passed completes with
//! `Error::Deadline` and its progress, wherever it stands in its list. An
//! accept waiting out a shortage of descriptors reports that shortage
//! instead; a connect that ran out of time takes its socket with it.

use std::io;

use super::conn_state::{ConnState, OUT_OF_FDS, SYSTEM_OUT_OF_FDS};
use super::events::SLEEP_FD;
use super::Dir;
use super::Engine;
use crate::{Conn, Error, IoBuf, Op, Poller};

impl<P: Poller, C, B: IoBuf> Engine<P, C, B> {
    pub(super) fn fire_timers(&mut self) {
        if self.timers.earliest().is_none() {
            return;
        }
        let now = self.now_ns();
        while let Some(entry) = self.timers.pop_due(now) {
            if entry.fd == SLEEP_FD {
                self.fire_sleep(entry);
                continue;
            }
            let Some(node) = self.nodes.find_timer(entry.node, entry.timer) else {
                self.timers.stale_dropped();
                continue;
            };
            let op = node.op;
            let dir = Dir::of(op);
            // A pending node is in a list of the connection now at its
            // descriptor: freeing a connection takes all its nodes out.
            let Some(state) = self.conns.get_mut(entry.fd) else {
                continue;
            };
            let conn = Conn {
                fd: entry.fd,
                gen: state.gen,
                owner: self.shared.id,
            };
            let was_head = state.list(dir).head == entry.node;
            let error = match (op, shortage(state)) {
                (Op::Accept, Some(errno)) => Error::Io(io::Error::from_raw_os_error(errno.raw_os_error())),
                _ => Error::Deadline,
            };
            // The timer is the reason this request ends: do not count it
            // as stale.
            self.nodes.get_mut(entry.node).timer = 0;
            self.finish_in(conn, dir, Some(entry.node), Some(error), bytes::Bytes::new());
            if op == Op::Connect {
                // Nobody has the connection yet: it goes with its request.
                self.free_conn(conn, || Error::ConnClosed);
            } else if was_head {
                // The next request in line may be able to run now.
                self.drive(conn, dir);
            }
        }
    }
}

/// The shortage that holds a listener's accepts up, if one does (see
/// `OUT_OF_FDS`).
fn shortage(state: &ConnState) -> Option<rustix::io::Errno> {
    use rustix::io::Errno;
    match (state.has(OUT_OF_FDS), state.has(SYSTEM_OUT_OF_FDS)) {
        (true, false) => Some(Errno::MFILE),
        (true, true) => Some(Errno::NFILE),
        (false, true) => Some(Errno::NOBUFS),
        (false, false) => None,
    }
}
