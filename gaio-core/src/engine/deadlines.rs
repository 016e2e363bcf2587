//! Deadlines firing: a request whose deadline passed completes with
//! `Error::Deadline` and its progress, wherever it stands in its list. An
//! accept waiting out a shortage of descriptors reports that shortage
//! instead; a connect that ran out of time takes its socket with it.

use std::io;

use std::os::fd::AsFd;

use super::conn_state::{ConnState, CONNECTING, OUT_OF_FDS, SYSTEM_OUT_OF_FDS};
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
        // Requests behind one that ended here may run, but only once every
        // deadline due now has fired: a request whose deadline has passed
        // must not start its I/O because the one before it ended first.
        let mut to_drive = std::mem::take(&mut self.timer_drives);
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
            let Some(state) = self.conns.get(entry.fd) else {
                continue;
            };
            let conn = Conn {
                fd: entry.fd,
                gen: state.gen,
                owner: self.shared.id,
            };
            // A completion poller may have this request's I/O in flight:
            // the head's, or a gathered write's. It ends first, and what it
            // moved before it ended counts.
            let settled = self.shared.poller.completes_io()
                && (state.list_ref(dir).head == entry.node || dir == Dir::Write);
            if settled && self.settle(conn, dir) && self.nodes.find_timer(entry.node, entry.timer).is_none() {
                // The I/O that ended completed the request: no deadline to
                // report. Its timer entry was the one just taken.
                self.timers.stale_dropped();
                to_drive.push((conn, dir));
                continue;
            }
            let Some(state) = self.conn_mut(conn) else {
                continue;
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
                self.release(conn, || Error::ConnClosed);
            } else if was_head || settled {
                // The next request in line may be able to run now (after a
                // settle, the I/O of those left is to be started again).
                to_drive.push((conn, dir));
            }
        }
        for &(conn, dir) in &to_drive {
            self.drive(conn, dir);
        }
        to_drive.clear();
        self.timer_drives = to_drive;
    }

    /// Ends a completion poller's I/O in flight on `conn` in `dir`. If
    /// some ended with a result first, the requests it was for take it
    /// (the poller held, so nothing new starts). Returns true in that
    /// case. Afterwards nothing is in flight in `dir`: the next attempt
    /// starts anew.
    pub(super) fn settle(&mut self, conn: Conn, dir: Dir) -> bool {
        let Some(state) = self.conns.get(conn.fd).filter(|s| s.gen == conn.gen) else {
            return false;
        };
        let landed = self.shared.poller.cancel(state.fd.as_fd(), dir.interest(), true);
        // Nothing is in flight any more: the next attempt (the one below,
        // which takes the result, or the next request's) goes to the
        // poller rather than wait for an event that will not come.
        self.mark_ready(conn, dir);
        if landed {
            self.shared.poller.hold(true);
            self.drive(conn, dir);
            self.shared.poller.hold(false);
            self.mark_ready(conn, dir);
        }
        landed
    }

    /// Frees `conn` as [`free_conn`](Self::free_conn) does, after ending
    /// a completion poller's I/O in flight with what it moved counted:
    /// bytes read are delivered, bytes written reported.
    pub(super) fn release(&mut self, conn: Conn, error: impl Fn() -> Error) {
        if self.shared.poller.completes_io() {
            self.settle_both(conn);
        }
        // Taking those results may have ended the connection (its detach).
        self.free_conn(conn, error);
    }

    /// [`settle`](Self::settle) in both directions.
    fn settle_both(&mut self, conn: Conn) {
        self.settle(conn, Dir::Read);
        self.settle(conn, Dir::Write);
    }

    /// [`shutdown`](Self::shutdown), after ending every connection's I/O
    /// in flight as [`release`](Self::release) does. Paths that may not
    /// run user code (a drop, after a panic) shut down without it: the
    /// results of I/O in flight are then dropped.
    pub(crate) fn shutdown_settled(&mut self) {
        if self.finished {
            return;
        }
        if self.shared.poller.completes_io() {
            // From here on nothing new is taken in.
            self.shared.close();
            let owner = self.shared.id;
            let conns: Vec<Conn> = self
                .conns
                .iter()
                .map(|(fd, state)| Conn {
                    fd,
                    gen: state.gen,
                    owner,
                })
                .collect();
            for conn in conns {
                self.settle_both(conn);
            }
        }
        self.shutdown();
    }

    /// Marks `conn` ready in `dir` (a connect in progress excepted: it
    /// waits for writability, not for I/O of its own).
    fn mark_ready(&mut self, conn: Conn, dir: Dir) {
        if let Some(state) = self.conn_mut(conn) {
            if !state.has(CONNECTING) {
                state.set_ready(dir, true);
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
