//! Making completions: the one place a finished request, pending or never
//! stored, becomes a [`Completion`].

use std::os::fd::OwnedFd;

use bytes::Bytes;

use super::drive::unwritten;
use super::slab::{List, Node};
use super::{Dir, Engine};
use crate::request::{Request, Target};
use crate::{Buffer, Completion, Conn, Error, IoBuf, Op, PeerAddr, Poller};

/// How a request ended, besides what its node records (its progress and
/// its buffer): everything [`completion`] puts into the completion.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    /// `None`: success.
    pub(super) error: Option<Error>,
    /// For a swap read: the slice read.
    pub(super) swap: Bytes,
    /// The peer of an accepted connection, the sender of a datagram, the
    /// address a connect dialled.
    pub(super) peer: Option<PeerAddr>,
    /// The connection an accept made.
    pub(super) accepted: Option<Conn>,
    /// The socket a detach hands back.
    pub(super) detached: Option<OwnedFd>,
}

impl Outcome {
    /// Success, nothing more to say.
    #[inline]
    pub(super) fn ok() -> Self {
        Outcome::default()
    }

    /// Failure with `error`.
    #[inline]
    pub(super) fn failed(error: Error) -> Self {
        Outcome {
            error: Some(error),
            ..Outcome::default()
        }
    }

    /// A read's end: its error if any, and the swap slice it filled.
    #[inline]
    pub(super) fn read(error: Option<Error>, swap: Bytes) -> Self {
        Outcome {
            error,
            swap,
            ..Outcome::default()
        }
    }
}

impl<P: Poller, C, B> Engine<P, C, B> {
    /// Takes node `idx` out of `list` (a list of `conn`, no longer in the
    /// table) and makes its completion ready.
    pub(super) fn finish(&mut self, conn: Conn, list: &mut List, idx: u32, outcome: Outcome) {
        let node = self.nodes.remove(list, idx);
        let outcome = self.with_addr(idx, &node, outcome);
        self.complete(conn, node, outcome);
    }

    /// A send-to's or a connect's address, kept beside the slab while its
    /// node was stored, goes into its completion.
    fn with_addr(&mut self, idx: u32, node: &Node<C, B>, mut outcome: Outcome) -> Outcome {
        if matches!(node.op, Op::SendTo | Op::Connect) {
            if let Some(addr) = self.addrs.remove(&idx) {
                outcome.peer.get_or_insert(addr);
            }
        }
        outcome
    }

    /// Makes the completion of `conn`'s node, taken out of the slab, ready.
    pub(super) fn complete(&mut self, conn: Conn, node: Node<C, B>, outcome: Outcome) {
        if node.timer != 0 {
            let nodes = &self.nodes;
            self.timers
                .note_stale(|e| nodes.find_timer(e.node, e.timer).is_some());
        }
        self.ready.push(completion(conn, node, outcome));
    }
}

impl<P: Poller, C, B: IoBuf> Engine<P, C, B> {
    /// Completes the head request of a connection's list.
    pub(super) fn finish_head(&mut self, conn: Conn, dir: Dir, outcome: Outcome) {
        self.finish_in(conn, dir, None, outcome);
    }

    /// Completes request `idx` of a connection's list, wherever it stands
    /// (`None`: the head). A write's unwritten bytes leave the
    /// connection's queued count.
    pub(super) fn finish_in(&mut self, conn: Conn, dir: Dir, idx: Option<u32>, outcome: Outcome) {
        let Some(state) = self.conns.get_mut(conn.fd as usize).and_then(Option::as_mut) else {
            return;
        };
        if state.gen != conn.gen {
            return;
        }
        let list = state.list(dir);
        if list.is_empty() {
            return;
        }
        let idx = idx.unwrap_or(list.head);
        let node = self.nodes.remove(list, idx);
        if dir == Dir::Write {
            let left = u32::try_from(unwritten(&node).len()).unwrap_or(u32::MAX);
            state.queued = state.queued.saturating_sub(left);
        }
        let outcome = self.with_addr(idx, &node, outcome);
        self.complete(conn, node, outcome);
    }
}

/// The completion of a request that ran: its progress, its buffer (or
/// the swap slice read), and how it ended.
#[inline]
pub(super) fn completion<C, B>(conn: Conn, node: Node<C, B>, outcome: Outcome) -> Completion<C, B> {
    let buffer = match node.buf {
        Some(b) => Buffer::User(b),
        None if node.op.is_read() && node.op != Op::Accept => Buffer::Swap(outcome.swap),
        None => Buffer::None,
    };
    Completion {
        op: node.op,
        conn,
        context: node.context,
        bytes: node.done,
        buffer,
        error: outcome.error,
        peer: outcome.peer,
        accepted: outcome.accepted,
        detached: outcome.detached,
    }
}

/// The completion of a request that never reached a connection's list.
pub(super) fn completion_of<C, B>(req: Request<C, B>, error: Error) -> Completion<C, B> {
    let (buffer, peer) = match req.target {
        Target::User(b, _) => (Buffer::User(b), None),
        Target::Dest(b, addr) => (Buffer::User(b), Some(addr)),
        Target::Swap => (Buffer::Swap(Bytes::new()), None),
        Target::None => (Buffer::None, None),
        Target::Addr(addr) => (Buffer::None, Some(addr)),
    };
    Completion {
        op: req.op,
        conn: req.conn,
        context: req.context,
        bytes: 0,
        buffer,
        error: Some(error),
        peer,
        accepted: None,
        detached: None,
    }
}
