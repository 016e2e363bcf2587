//! Readiness into I/O: events mark connections ready and run the heads of
//! their lists (reads one by one, writes gathered into one call; accepts,
//! connects, shutdowns and detaches by their own rules), and connections
//! starved of kernel buffers are retried.

use std::io::IoSlice;
use std::os::fd::AsFd;

use bytes::Bytes;

use super::attempt::Attempt;
use super::conn_state::{DETACHING, DGRAM, HUP, LISTENER, READABLE, STREAM, URGENT, WRITABLE, WRITE_SHUT};
use super::slab::{Node, NIL};
use super::{Dir, Engine, MAX_GATHER};
use crate::{Conn, Event, IoBuf, IoOutcome, Op, Poller};

impl<P: Poller, C, B: IoBuf> Engine<P, C, B> {
    pub(super) fn on_event(&mut self, ev: Event) {
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

    pub(super) fn drive(&mut self, conn: Conn, dir: Dir) {
        match dir {
            Dir::Read => self.drive_reads(conn),
            Dir::Write => self.drive_writes(conn),
        }
    }

    /// Runs the connection's reads (accepts, on a listener), head first,
    /// until one would block. A detach at the head of the writes goes once
    /// they are done (a read that landed as the detach ended it is taken
    /// here first).
    pub(super) fn drive_reads(&mut self, conn: Conn) {
        loop {
            let Some(state) = self.conns.get_mut(conn.fd) else {
                return;
            };
            if state.gen != conn.gen {
                return;
            }
            if state.reads.is_empty() {
                if state.has(DETACHING) {
                    self.drive_writes(conn);
                }
                return;
            }
            if state.has(LISTENER) {
                self.drive_accepts(conn);
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
    /// call, until they are done or the descriptor would block. A connect,
    /// a shutdown or a detach at the head runs by its own rule.
    pub(super) fn drive_writes(&mut self, conn: Conn) {
        loop {
            let Some(state) = self.conns.get_mut(conn.fd) else {
                return;
            };
            if state.gen != conn.gen || state.writes.is_empty() {
                return;
            }
            let head_idx = state.writes.head;
            let (head_op, next) = {
                let head = self.nodes.get(head_idx);
                (head.op, head.next())
            };
            match head_op {
                Op::Connect => {
                    if !self.drive_connect(conn) {
                        return;
                    }
                    continue;
                }
                Op::Shutdown if state.has(WRITE_SHUT) => {
                    // The write side is shut already (an earlier shutdown
                    // completed): nothing to ask the kernel, whose answer
                    // would depend on what the peer did since (`ENOTCONN`
                    // once both sides closed). On a ring each repeat would
                    // also cost a turn of its own.
                    self.finish_head(conn, Dir::Write, None, Bytes::new());
                    continue;
                }
                Op::Shutdown => {
                    let error = match self.shared.poller.shutdown_write(state.fd.as_fd()) {
                        IoOutcome::Done(_) => {
                            state.set(WRITE_SHUT, true);
                            None
                        }
                        // On the ring: its end comes as an event for
                        // writing, which drives this head again.
                        IoOutcome::WouldBlock => return,
                        IoOutcome::Starved => {
                            self.io.starved.push((conn, Dir::Write));
                            return;
                        }
                        IoOutcome::Failed(e) => Some(crate::Error::Io(e)),
                    };
                    self.finish_head(conn, Dir::Write, error, Bytes::new());
                    continue;
                }
                Op::Detach => {
                    self.try_detach(conn);
                    return;
                }
                _ => {}
            }
            if !state.has(WRITABLE) {
                return;
            }
            let next_is_write = next != NIL && self.nodes.get(next).op == Op::Write;
            if !next_is_write || state.has(DGRAM) {
                // One write to make, the common case: no gather array. A
                // datagram is always sent alone.
                let head = self.nodes.get_mut(head_idx);
                let before = head.done;
                let dest = if head.op == Op::SendTo {
                    self.addrs.get(&head_idx)
                } else {
                    None
                };
                let mut io = self.io.with(&self.shared.poller);
                let attempt = io.write_one(state, conn, head, dest);
                let moved = u32::try_from(head.done - before).unwrap_or(u32::MAX);
                state.queued = state.queued.saturating_sub(moved);
                match attempt {
                    Attempt::Done(error, _) => self.finish_head(conn, Dir::Write, error, Bytes::new()),
                    Attempt::Wait => return,
                }
                continue;
            }
            let (outcome, offered) = {
                let mut iov = [IoSlice::new(&[]); MAX_GATHER];
                let mut count = 0;
                let mut offered = 0;
                let mut idx = head_idx;
                while idx != NIL && count < MAX_GATHER {
                    let node = self.nodes.get(idx);
                    if node.op != Op::Write {
                        break;
                    }
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
    pub(super) fn account_written(&mut self, conn: Conn, mut n: usize) {
        if let Some(state) = self.conn_mut(conn) {
            state.queued = state.queued.saturating_sub(u32::try_from(n).unwrap_or(u32::MAX));
        }
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

    pub(super) fn retry_starved(&mut self) {
        if self.io.starved.is_empty() {
            return;
        }
        for (conn, dir) in std::mem::take(&mut self.io.starved) {
            self.drive(conn, dir);
        }
    }
}

/// The bytes of a write request not yet written.
pub(super) fn unwritten<C, B: IoBuf>(node: &Node<C, B>) -> &[u8] {
    match &node.buf {
        Some(b) => b.as_bytes().get(node.done..).unwrap_or(&[]),
        None => &[],
    }
}
