//! Connecting: a socket made and its connect started by whoever submitted
//! the request (see `Shared::dial`; a completion poller's connect is
//! started here, through `Poller::connect`), then its request waits at the
//! head of the connection's writes until the socket is writable, when
//! `Poller::connect_result` (`SO_ERROR`) tells how the connect ended. A Unix listener with a full queue answers
//! EAGAIN: the connect is made again a moment later. A connect that fails
//! takes its socket with it: nobody had the connection yet.

use std::os::fd::{AsFd, OwnedFd};

use bytes::Bytes;

use super::conn_state::{CONNECTING, HUP, REDIAL, WRITABLE};
use super::slab::Node;
use super::timers::Entry;
use super::{to_ns, Dir, Engine};
use crate::net::{self, Dialled};
use crate::request::{Request, Target};
use crate::shared::Role;
use crate::sys::FdInfo;
use crate::{Error, IoBuf, Op, Poller};

impl<P: Poller, C, B: IoBuf> Engine<P, C, B> {
    /// Takes in a dialled socket and its connect request.
    pub(super) fn start_connect(&mut self, fd: OwnedFd, info: FdInfo, req: Request<C, B>, dialled: Dialled) {
        let conn = req.conn;
        let Target::Addr(addr) = req.target else {
            unreachable!("a connect request carries its address")
        };
        self.insert_conn(conn, fd, info, Role::Connection);
        let state = self.conn_mut(conn).expect("just inserted");
        // Writability, not the optimistic start, tells the connect ended.
        state.set(WRITABLE, false);
        state.set(CONNECTING, true);
        state.set(REDIAL, matches!(dialled, Dialled::Retry | Dialled::NotStarted));
        let timer = if req.deadline.is_some() {
            self.timers.next_identity()
        } else {
            0
        };
        let node = Node::new(Op::Connect, req.context, None, timer);
        let state = self.conns.get_mut(conn.fd).expect("just inserted");
        let idx = self.nodes.push_back(&mut state.writes, node);
        self.addrs.insert(idx, addr);
        if let Some(deadline) = req.deadline {
            self.timers.insert(Entry {
                at_ns: to_ns(deadline.saturating_duration_since(self.epoch)),
                timer,
                node: idx,
                fd: conn.fd,
            });
        }
        match dialled {
            Dialled::Connected => self.connect_ended(conn, Ok(())),
            Dialled::Failed(e) => self.connect_ended(conn, Err(e)),
            Dialled::Retry => self.io.starved.push((conn, Dir::Write)),
            // Writability will tell; a deadline already past fires at the
            // next turn.
            Dialled::InProgress => self.await_writable(conn),
            Dialled::NotStarted => {
                self.drive_connect(conn);
            }
        }
    }

    /// The connect at the head of `conn`'s writes: ended if the socket is
    /// writable (or hung up), made again after EAGAIN. Returns true if it
    /// ended and the writes behind it may run.
    pub(super) fn drive_connect(&mut self, conn: crate::Conn) -> bool {
        let Some(state) = self.conns.get_mut(conn.fd) else {
            return false;
        };
        let result = if state.has(REDIAL) {
            let Some(addr) = self.addrs.get(&state.writes.head) else {
                return false;
            };
            let answer = self.shared.poller.connect(state.fd.as_fd(), addr);
            match Dialled::from_poller(answer) {
                Dialled::Connected => Ok(()),
                Dialled::InProgress | Dialled::NotStarted => {
                    state.set(REDIAL, false);
                    self.await_writable(conn);
                    return false;
                }
                Dialled::Retry => {
                    self.io.starved.push((conn, Dir::Write));
                    return false;
                }
                Dialled::Failed(e) => Err(e),
            }
        } else if !state.has(WRITABLE | HUP) {
            return false;
        } else {
            match self.shared.poller.connect_result(state.fd.as_fd()) {
                // Ended too soon to connect (a completion poller's connect
                // met a full Unix queue): made again.
                Err(e) if net::is_retry(&e) => {
                    state.set(REDIAL, true);
                    self.io.starved.push((conn, Dir::Write));
                    return false;
                }
                result => result,
            }
        };
        let ok = result.is_ok();
        self.connect_ended(conn, result);
        ok
    }

    /// Tells the poller the connect waits for writability (a completion
    /// poller watches for it only when asked).
    fn await_writable(&mut self, conn: crate::Conn) {
        if let Some(state) = self.conns.get(conn.fd).filter(|s| s.gen == conn.gen) {
            super::conn_state::rearm(&self.shared.poller, state, conn, Dir::Write);
        }
    }

    /// Completes `conn`'s connect request: the connection is ready, or
    /// failed and is closed.
    fn connect_ended(&mut self, conn: crate::Conn, result: std::io::Result<()>) {
        match result {
            Ok(()) => {
                if let Some(state) = self.conn_mut(conn) {
                    state.set(CONNECTING | REDIAL, false);
                    state.set(WRITABLE, true);
                }
                self.finish_head(conn, Dir::Write, None, Bytes::new());
            }
            Err(e) => {
                self.finish_head(conn, Dir::Write, Some(Error::Io(e)), Bytes::new());
                self.release(conn, || Error::ConnClosed);
            }
        }
    }
}
