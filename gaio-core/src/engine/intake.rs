//! Command intake: requests and hand-overs from the shared queue, and each
//! request's way into its connection's list: refused if the connection
//! cannot run it, tried at once when it would be at the head (the common
//! read or write then never touches the slab), else stored behind the
//! others.

use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use super::attempt::Attempt;
use super::complete::{completion, completion_of};
use super::conn_state::{ConnState, DETACHING, DGRAM, LISTENER, STREAM};
use super::memory::{trim, IDLE_KEEP_CAPACITY};
use super::slab::Node;
use super::timers::Entry;
use super::{to_ns, Dir, Engine};
use crate::request::{Request, Target};
use crate::shared::{Command, Role};
use crate::sys::FdInfo;
use crate::{Conn, Error, IoBuf, Op, Poller};

/// A request the engine refused, with why: the owning thread's submission
/// hands it back ([`Rejected`](crate::Rejected)); one from the queue
/// completes with the error.
pub(super) type Refused<C, B> = (Request<C, B>, Error);

impl<P: Poller, C, B: IoBuf> Engine<P, C, B> {
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))] // an error only a diagnostic reads
    pub(crate) fn drain_commands(&mut self) {
        if !self.shared.queue.is_pending() {
            return;
        }
        let mut commands = std::mem::take(&mut self.commands);
        self.shared.queue.take_into(&mut commands);
        let used = commands.len();
        for cmd in commands.drain(..) {
            match cmd {
                Command::Watch { conn, fd, info, role } => self.take_in(conn, fd, info, role),
                Command::Connect {
                    fd,
                    info,
                    request,
                    dialled,
                } => {
                    // As for a hand-over: the connect may have ended before
                    // the engine knew the socket.
                    // SAFETY: as for a hand-over: `start_connect` puts
                    // `fd` in the connection table.
                    let reregistered =
                        unsafe { self.shared.poller.reregister(fd.as_fd(), request.conn.token()) };
                    if let Err(e) = reregistered {
                        crate::diag::warn_event!(fd = request.conn.fd, error = %e, "re-registering a dialled socket failed");
                    }
                    self.start_connect(fd, info, request, dialled);
                }
                Command::Submit(req) if req.is_connless() => self.apply_connless(req),
                Command::Submit(req) => {
                    if let Err((req, error)) = self.apply_request(req) {
                        self.ready.push(completion_of(req, error));
                    }
                }
                Command::Free(conn) => self.release(conn, || Error::ConnClosed),
                Command::CloseGracefully(deadline) => self.close_gracefully(deadline),
                Command::CancelTimer(timer) => self.cancel_timer(timer),
                Command::Adopt {
                    conn,
                    fd,
                    info,
                    context,
                    peer,
                } => self.adopt(conn, fd, info, context, peer),
            }
        }
        self.commands = commands;
        trim(&mut self.commands, used);
        // The queue's vector and this one trade places: both hold about
        // this much.
        self.burst_memory |= self.commands.capacity() > IDLE_KEEP_CAPACITY;
    }

    /// Takes in a descriptor registered on another thread (a hand-over
    /// through a `Submitter`, a connection another watcher of a group
    /// accepted).
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))] // an error only a diagnostic reads
    pub(super) fn take_in(&mut self, conn: Conn, fd: OwnedFd, info: FdInfo, role: Role) {
        // Events reported before now named an unknown connection and were
        // dropped, a hang-up among them, and an edge is not repeated. Have
        // the poller report the current readiness again.
        // SAFETY: `fd` goes into the connection table just below, which
        // deregisters every descriptor before it closes it (`free_conn`,
        // `try_detach`, `shutdown`).
        let reregistered = unsafe { self.shared.poller.reregister(fd.as_fd(), conn.token()) };
        if let Err(e) = reregistered {
            crate::diag::warn_event!(fd = conn.fd, error = %e, "re-registering a handed-over connection failed");
        }
        self.insert_conn(conn, fd, info, role);
    }

    /// Adds a request to its connection. A read or write first in its list
    /// is tried at once, before it is stored: one that completes never
    /// touches the slab or the timer heap. A request the connection cannot
    /// run (the wrong kind of socket, a full write queue) is refused.
    pub(super) fn apply_request(&mut self, req: Request<C, B>) -> Result<(), Refused<C, B>> {
        let max_queued = self.config.max_queued_write_bytes;
        let Some(state) = self.conn_mut(req.conn) else {
            self.ready.push(completion_of(req, Error::ConnClosed));
            return Ok(());
        };
        if state.has(DETACHING) {
            // Requests after a detach never run: the socket is leaving.
            self.ready.push(completion_of(req, Error::ConnClosed));
            return Ok(());
        }
        if let Some(error) = refusal(state, &req, max_queued) {
            return Err((req, error));
        }
        if req.deadline.is_some_and(|d| d <= Instant::now()) {
            self.ready.push(completion_of(req, Error::Deadline));
            return Ok(());
        }
        let op = req.op;
        let dir = Dir::of(op);
        let conn = req.conn;
        let deadline = req.deadline;
        if req.repeat.is_some() {
            self.clone_context = req.repeat;
        }
        let (buf, dest) = match req.target {
            Target::User(buf, view) => {
                if view.is_some() {
                    self.io.read_view = view;
                }
                (Some(buf), None)
            }
            Target::Dest(buf, addr) => (Some(buf), Some(addr)),
            Target::Append(buf, view) => {
                self.io.append_view = Some(view);
                (Some(buf), None)
            }
            Target::Swap | Target::None | Target::Addr(_) | Target::Timer(_) => (None, None),
        };
        let mut node = Node::new(op, req.context, buf, 0);
        node.multishot = req.repeat.is_some();
        let state = self.conns.get_mut(conn.fd).expect("checked above");
        if op == Op::Detach {
            state.set(DETACHING, true);
        }
        let data = matches!(
            op,
            Op::Read | Op::ReadFull | Op::ReadAppend | Op::RecvFrom | Op::Write | Op::SendTo
        );
        // A completion poller's I/O may outlive this call: the request is
        // stored first, so its buffer stays where the kernel was told.
        let completes = self.shared.poller.completes_io();
        if data && state.list(dir).is_empty() && !completes {
            let mut io = self.io.with(&self.shared.poller);
            let attempt = match dir {
                Dir::Read => io.read(state, conn, &mut node),
                Dir::Write => io.write_one(state, conn, &mut node, dest.as_ref()),
            };
            if let Attempt::Done(error, swap) = attempt {
                let extra = self.io.take_extra();
                self.ready.push(completion(conn, node, error, swap, extra));
                return Ok(());
            }
        }
        let timer = if deadline.is_some() {
            self.timers.next_identity()
        } else {
            0
        };
        node.timer = timer;
        if dir == Dir::Write {
            let left = u32::try_from(super::drive::unwritten(&node).len()).unwrap_or(u32::MAX);
            state.queued = state.queued.saturating_add(left);
        }
        let idx = self.nodes.push_back(state.list(dir), node);
        if let Some(addr) = dest {
            self.addrs.insert(idx, addr);
        }
        if let Some(deadline) = deadline {
            self.timers.insert(Entry {
                at_ns: to_ns(deadline.saturating_duration_since(self.epoch)),
                timer,
                node: idx,
                fd: conn.fd,
            });
        }
        if !data || completes {
            // Accepts, shutdowns and detaches run by their own rules, which
            // the drivers know; at the head, they may run now (and so does
            // a read or write for a completion poller, stored first).
            let state = self.conns.get_mut(conn.fd).expect("checked above");
            if state.list(dir).head == idx {
                self.drive(conn, dir);
            }
        }
        Ok(())
    }
}

/// Why `state` cannot run `req`, if it cannot: an operation its kind of
/// socket does not have, or a write that would take its queue past the
/// limit.
fn refusal<C, B: IoBuf>(state: &ConnState, req: &Request<C, B>, max_queued: Option<usize>) -> Option<Error> {
    let op = req.op;
    let supported = if state.has(LISTENER) {
        matches!(op, Op::Accept | Op::Detach)
    } else if state.has(DGRAM) {
        matches!(op, Op::Read | Op::Write | Op::RecvFrom | Op::SendTo | Op::Detach)
    } else if state.has(STREAM) {
        matches!(
            op,
            Op::Read | Op::ReadFull | Op::ReadAppend | Op::Write | Op::Shutdown | Op::Detach
        )
    } else {
        // Pipes and the like.
        matches!(
            op,
            Op::Read | Op::ReadFull | Op::ReadAppend | Op::Write | Op::Detach
        )
    };
    if !supported {
        return Some(Error::NotSupported { op });
    }
    if let (Some(limit), Op::Write | Op::SendTo) = (max_queued, op) {
        let len = match &req.target {
            Target::User(b, _) | Target::Dest(b, _) => b.as_bytes().len(),
            _ => 0,
        };
        let queued = state.queued as usize;
        if queued.saturating_add(len) > limit {
            return Some(Error::WriteQueueFull { queued, limit });
        }
    }
    None
}
