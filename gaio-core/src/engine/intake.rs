//! Command intake: requests and hand-overs from the shared queue, and each
//! request's way into its connection's list (tried first when it would be
//! at the head).

use std::os::fd::AsFd;
use std::time::Instant;

use super::attempt::Attempt;
use super::complete::{completion, completion_of};
use super::memory::{trim, IDLE_KEEP_CAPACITY};
use super::slab::Node;
use super::timers::Entry;
use super::{to_ns, Dir, Engine};
use crate::request::{Request, Target};
use crate::shared::Command;
use crate::{Error, IoBuf, Poller};

impl<P: Poller, C, B: IoBuf> Engine<P, C, B> {
    pub(super) fn drain_commands(&mut self) {
        if !self.shared.queue.is_pending() {
            return;
        }
        let mut commands = std::mem::take(&mut self.commands);
        self.shared.queue.take_into(&mut commands);
        let used = commands.len();
        for cmd in commands.drain(..) {
            match cmd {
                Command::Watch { conn, fd, info } => {
                    // Registered on another thread: events reported before
                    // now named an unknown connection and were dropped, a
                    // hang-up among them, and an edge is not repeated. Have
                    // the poller report the current readiness again.
                    if let Err(e) = self.shared.poller.reregister(fd.as_fd(), conn.token()) {
                        tracing::warn!(fd = conn.fd, error = %e, "re-registering a handed-over connection failed");
                    }
                    self.insert_conn(conn, fd, info);
                }
                Command::Submit(req) => self.apply_request(req),
                Command::Free(conn) => self.free_conn(conn, || Error::ConnClosed),
            }
        }
        self.commands = commands;
        trim(&mut self.commands, used);
        // The queue's vector and this one trade places: both hold about
        // this much.
        self.burst_memory |= self.commands.capacity() > IDLE_KEEP_CAPACITY;
    }

    /// Adds a request to its connection. A request first in its list is
    /// tried at once, before it is stored: one that completes never
    /// touches the slab or the timer heap.
    pub(super) fn apply_request(&mut self, req: Request<C, B>) {
        if self.conn_mut(req.conn).is_none() {
            self.ready.push(completion_of(req, Error::ConnClosed));
            return;
        }
        if req.deadline.is_some_and(|d| d <= Instant::now()) {
            self.ready.push(completion_of(req, Error::Deadline));
            return;
        }
        let dir = Dir::of(req.op);
        let conn = req.conn;
        let deadline = req.deadline;
        let buf = match req.target {
            Target::User(buf, view) => {
                if view.is_some() {
                    self.io.read_view = view;
                }
                Some(buf)
            }
            Target::Swap => None,
        };
        let mut node = Node::new(req.op, req.context, buf, 0);
        let state = self.conns[conn.fd as usize].as_mut().expect("checked above");
        if state.list(dir).is_empty() {
            let mut io = self.io.with(&self.shared.poller);
            let attempt = match dir {
                Dir::Read => io.read(state, conn, &mut node),
                Dir::Write => io.write_one(state, conn, &mut node),
            };
            if let Attempt::Done(error, swap) = attempt {
                self.ready.push(completion(conn, node, error, swap));
                return;
            }
        }
        let timer = if deadline.is_some() {
            self.timers.next_identity()
        } else {
            0
        };
        node.timer = timer;
        let idx = self.nodes.push_back(state.list(dir), node);
        if let Some(deadline) = deadline {
            self.timers.insert(Entry {
                at_ns: to_ns(deadline.saturating_duration_since(self.epoch)),
                timer,
                node: idx,
                fd: conn.fd,
            });
        }
    }
}
