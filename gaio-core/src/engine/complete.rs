//! Making completions: the one place a finished request, pending or never
//! stored, becomes a [`Completion`].

use std::os::fd::OwnedFd;

use bytes::Bytes;

use super::drive::unwritten;
use super::events::entry_is_live;
use super::slab::{List, Node};
use super::{Dir, Engine};
use crate::request::{Request, Target};
use crate::{Buffer, Completion, Conn, Error, IoBuf, Op, PeerAddr, Poller};

/// What a few operations add to their completion besides an error and a
/// swap slice: the peer (accept, datagrams, connect), the accepted
/// connection, the detached socket. It travels beside the hot path, in
/// [`IoState::extra`](super::attempt::IoState): whoever finishes such an
/// operation sets it just before completing it, and [`complete`] takes it,
/// so reads and writes carry nothing more than before.
#[derive(Debug, Default)]
pub(super) struct Extra {
    pub(super) peer: Option<PeerAddr>,
    pub(super) accepted: Option<Conn>,
    pub(super) detached: Option<OwnedFd>,
}

impl<P: Poller, C, B> Engine<P, C, B> {
    /// Takes node `idx` out of `list` (a list of `conn`, no longer in the
    /// table) and makes its completion ready.
    pub(super) fn finish(
        &mut self,
        conn: Conn,
        list: &mut List,
        idx: u32,
        error: Option<Error>,
        swap: Bytes,
    ) {
        let node = self.nodes.remove(list, idx);
        self.take_addr(idx, &node);
        self.complete(conn, node, error, swap);
    }

    /// A send-to's or a connect's address, kept beside the slab while its
    /// node was stored, goes into its completion.
    fn take_addr(&mut self, idx: u32, node: &Node<C, B>) {
        if matches!(node.op, Op::SendTo | Op::Connect) {
            if let Some(addr) = self.addrs.remove(&idx) {
                self.io.extra_mut().peer.get_or_insert(addr);
            }
        }
    }

    /// Makes the completion of `conn`'s node, taken out of the slab, ready,
    /// with the [`Extra`] set for it.
    pub(super) fn complete(&mut self, conn: Conn, node: Node<C, B>, error: Option<Error>, swap: Bytes) {
        if node.timer != 0 {
            let (nodes, sleeps) = (&self.nodes, &self.sleeps);
            self.timers.note_stale(|e| entry_is_live(nodes, sleeps, e));
        }
        let extra = self.io.take_extra();
        self.ready.push(completion(conn, node, error, swap, extra));
    }
}

impl<P: Poller, C, B: IoBuf> Engine<P, C, B> {
    /// Completes the head request of a connection's list.
    pub(super) fn finish_head(&mut self, conn: Conn, dir: Dir, error: Option<Error>, swap: Bytes) {
        self.finish_in(conn, dir, None, error, swap);
    }

    /// Completes request `idx` of a connection's list, wherever it stands
    /// (`None`: the head). A write's unwritten bytes leave the
    /// connection's queued count.
    pub(super) fn finish_in(
        &mut self,
        conn: Conn,
        dir: Dir,
        idx: Option<u32>,
        error: Option<Error>,
        swap: Bytes,
    ) {
        let Some(state) = self.conns.get_mut(conn.fd).filter(|s| {
            let list = if dir == Dir::Read { &s.reads } else { &s.writes };
            s.gen == conn.gen && !list.is_empty()
        }) else {
            // Nothing to complete: an extra set for it must not reach
            // another completion.
            let _ = self.io.take_extra();
            return;
        };
        let list = state.list(dir);
        let idx = idx.unwrap_or(list.head);
        let node = self.nodes.remove(list, idx);
        if dir == Dir::Write {
            let left = u32::try_from(unwritten(&node).len()).unwrap_or(u32::MAX);
            state.queued = state.queued.saturating_sub(left);
        }
        self.take_addr(idx, &node);
        self.complete(conn, node, error, swap);
    }
}

/// The completion of a request that ran: its progress, its buffer (or
/// the swap slice read), and how it ended.
#[inline]
pub(super) fn completion<C, B>(
    conn: Conn,
    node: Node<C, B>,
    error: Option<Error>,
    swap: Bytes,
    extra: Extra,
) -> Completion<C, B> {
    let buffer = match node.buf {
        Some(b) => Buffer::User(b),
        None if node.op.is_read() && node.op != Op::Accept => Buffer::Swap(swap),
        None => Buffer::None,
    };
    Completion {
        op: node.op,
        // A completion stays within 128 bytes, which the compiler moves
        // without a call to `memcpy`: an accept names its new connection
        // in `conn` rather than in a field of its own.
        conn: extra.accepted.unwrap_or(conn),
        context: node.context,
        bytes: node.done,
        buffer,
        error,
        peer: extra.peer,
        detached: extra.detached,
    }
}

/// The completion of a request that never reached a connection's list:
/// made by [`completion`] too, from a node that moved nothing.
pub(super) fn completion_of<C, B>(req: Request<C, B>, error: Error) -> Completion<C, B> {
    let (buf, peer) = match req.target {
        Target::User(b, _) | Target::Append(b, _) => (Some(b), None),
        Target::Dest(b, addr) => (Some(b), Some(addr)),
        Target::Swap | Target::None | Target::Timer(_) => (None, None),
        Target::Addr(addr) => (None, Some(addr)),
    };
    let extra = Extra {
        peer,
        ..Extra::default()
    };
    let node = Node::new(req.op, req.context, buf, 0);
    completion(req.conn, node, Some(error), Bytes::new(), extra)
}
